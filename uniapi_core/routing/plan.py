"""The attempts one request may make: candidates in order, within the retry budget.

``AttemptPlan`` is the ``AttemptSource`` the relay pulls from. It hands out each candidate
channel at most once, in the order routing produced, until the ``AUTO_RETRY`` budget is spent
(semantics.md: ``true`` = every distinct candidate once, at most 10 attempts; ``false`` = one
attempt; a number N = at most N retries after the first). What to do with the outcome of each
attempt (cooldowns, key benches, stats) is the ``on_finished`` callback's business.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import attrs

from ..errors import UpstreamError
from ..vendors.base import Exchange
from .resolve import Channel

__all__ = ["Attempt", "AttemptSource", "AttemptPlan", "attempt_budget", "MAX_ATTEMPTS"]

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


def attempt_budget(auto_retry: bool | int | None, candidates: int) -> int:
    """How many attempts a request may make over ``candidates`` channels."""
    if auto_retry is None or auto_retry is True:
        return min(candidates, MAX_ATTEMPTS)
    if auto_retry is False:
        return min(candidates, 1)
    return min(candidates, 1 + max(0, int(auto_retry)), MAX_ATTEMPTS)


class AttemptPlan:
    """Hands out ``channels`` in order, building each attempt with ``build``."""

    def __init__(self, channels: Sequence[Channel], budget: int,
                 build: Callable[[Channel, int], Attempt],
                 on_finished: Callable[[Attempt, float, UpstreamError | None], None]) -> None:
        self._channels = list(channels)
        self._budget = budget
        self._build = build
        self._on_finished = on_finished
        self._made = 0

    def next_attempt(self, now: float, failure: UpstreamError | None) -> Attempt | None:
        if self._made >= self._budget or self._made >= len(self._channels):
            return None
        channel = self._channels[self._made]
        self._made += 1
        return self._build(channel, self._made)

    def attempt_finished(self, attempt: Attempt, now: float,
                         error: UpstreamError | None) -> None:
        self._on_finished(attempt, now, error)
