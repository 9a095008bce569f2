"""The per-request relay state machine: events in, actions out, ``now`` alongside."""

from .actions import (EndResponse, RelayAction, RunShared, SendData, SendHead, StartUpstream,
                      StopUpstream, TellShared, TokenRefused)
from .events import (
    ClientGone,
    DeadlineReached,
    RelayEvent,
    SharedDone,
    UpstreamData,
    UpstreamEnded,
    UpstreamFailed,
    UpstreamHead,
)
from ..routing.plan import Attempt, AttemptSource, Consult
from .machine import AttemptRecord, Outcome, Relay, State

__all__ = [
    "Attempt", "AttemptRecord", "AttemptSource", "ClientGone", "Consult", "DeadlineReached",
    "EndResponse", "Outcome", "RunShared", "SharedDone", "TellShared",
    "Relay", "RelayAction", "RelayEvent", "SendData", "SendHead", "StartUpstream", "State",
    "StopUpstream", "TokenRefused", "UpstreamData", "UpstreamEnded", "UpstreamFailed",
    "UpstreamHead",
]
