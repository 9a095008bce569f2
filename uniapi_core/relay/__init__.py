"""The per-request relay state machine: events in, actions out, ``now`` alongside."""

from .actions import (EndResponse, RelayAction, SendData, SendHead, StartUpstream, StopUpstream,
                      TokenRefused)
from .events import (
    ClientGone,
    DeadlineReached,
    RelayEvent,
    UpstreamData,
    UpstreamEnded,
    UpstreamFailed,
    UpstreamHead,
)
from ..routing.plan import Attempt, AttemptSource
from .machine import AttemptRecord, Outcome, Relay, State

__all__ = [
    "Attempt", "AttemptRecord", "AttemptSource", "ClientGone", "DeadlineReached", "EndResponse",
    "Outcome",
    "Relay", "RelayAction", "RelayEvent", "SendData", "SendHead", "StartUpstream", "State",
    "StopUpstream", "TokenRefused", "UpstreamData", "UpstreamEnded", "UpstreamFailed",
    "UpstreamHead",
]
