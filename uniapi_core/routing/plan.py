"""What the relay pulls attempts from, and the retry budget (docs/routing.md §7).

``AUTO_RETRY: true`` (the default) lets every distinct candidate channel be tried once, at
most 10 attempts in all (a key-level failure may also try the channel's other keys within
that); ``false`` makes one attempt; a number N allows at most N retries after the first.
"""

from __future__ import annotations

from typing import Protocol

import attrs

from ..errors import UniapiError, UpstreamError
from ..vendors.base import Exchange

__all__ = ["Attempt", "AttemptSource", "attempt_budget", "MAX_ATTEMPTS"]

#: the most attempts one request makes, whatever the config says
MAX_ATTEMPTS = 10


@attrs.frozen(kw_only=True)
class Attempt:
    """One try of one channel with one provider key."""

    number: int
    provider: str
    upstream_model: str
    key_index: int | None
    exchange: Exchange
    timeout: float
    proxy: str | None = None


class AttemptSource(Protocol):
    """What the relay needs from routing."""

    def next_attempt(self, now: float, failure: UpstreamError | None) -> Attempt | None:
        """The next attempt to make, or ``None`` when none is left (or allowed)."""
        ...

    def attempt_finished(self, attempt: Attempt, now: float,
                         error: UpstreamError | None) -> None:
        """``attempt`` ended: ``error`` None means success."""
        ...

    def refusal(self) -> UniapiError:
        """The error to answer when not even a first attempt could be made."""
        ...


def attempt_budget(auto_retry: bool | int | None) -> int:
    """How many attempts one request may make in all."""
    if auto_retry is None or auto_retry is True:
        return MAX_ATTEMPTS
    if auto_retry is False:
        return 1
    return min(1 + max(0, int(auto_retry)), MAX_ATTEMPTS)
