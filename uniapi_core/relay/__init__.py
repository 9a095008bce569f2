"""The per-request relay state machine: events in, actions out, ``now`` alongside."""

from .actions import CancelUpstream, EndResponse, OpenUpstream, RelayAction, SendData, SendHead
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
from .machine import Outcome, Relay, State

__all__ = [
    "Attempt", "AttemptSource", "CancelUpstream", "ClientGone", "DeadlineReached",
    "EndResponse", "OpenUpstream", "Outcome", "Relay", "RelayAction", "RelayEvent", "SendData",
    "SendHead", "State", "UpstreamData", "UpstreamEnded", "UpstreamFailed", "UpstreamHead",
]
