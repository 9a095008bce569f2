"""Exact sliding windows: at most N admissions in any period of the window's length.

Theory of operation
-------------------
Each (subject, window) keeps the times of its admissions still inside the window, oldest
first. A request at ``now`` is admitted when *every* window of its rule set has fewer than N
admissions after ``now - period``; then ``now`` is recorded in all of them (all or nothing).
There are no fixed buckets, so no burst of 2N at a boundary.

Time never runs backwards here: a ``now`` earlier than one already seen is taken as the latest
seen (``effective_now``), so a clock that jumps back cannot re-open slots, and no interval of a
window's length ever holds more than N admissions in effective time. Forward jumps simply
empty the windows. A refusal says when the earliest window frees a slot: ``retry_after`` =
oldest counted admission + period - now, in whole seconds, at least 1.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Hashable, Sequence

import attrs

from ..config.model import RateRule

__all__ = ["Window", "Admitted", "Refused", "Limiter"]

#: a window is a parsed rate rule: at most ``count`` admissions per ``period`` seconds
Window = RateRule


@attrs.frozen
class Admitted:
    pass


@attrs.frozen
class Refused:
    """``retry_after``: seconds until a slot frees (≥ the exact figure, whole seconds ≥ 1)."""

    retry_after: int
    window: Window


class Limiter:
    """Sliding windows per subject. The caller owns the object and passes ``now``."""

    def __init__(self) -> None:
        self._stamps: dict[tuple[Hashable, Window], list[float]] = {}
        self._latest = -math.inf

    def effective_now(self, now: float) -> float:
        """``now``, or the latest time already seen if the clock went back."""
        return now if now > self._latest else self._latest

    def _counted(self, key: tuple[Hashable, Window], now: float) -> list[float]:
        stamps = self._stamps.get(key)
        if stamps is None:
            return []
        # drop what left the window (stamps are appended in effective-time order)
        cut = bisect.bisect_right(stamps, now - key[1].period)
        if cut:
            del stamps[:cut]
        if not stamps:
            del self._stamps[key]
        return stamps

    def check(self, subject: Hashable, windows: Sequence[Window], now: float
              ) -> Admitted | Refused:
        """Would a request be admitted now? Records nothing."""
        now = self.effective_now(now)
        worst: Refused | None = None
        for w in windows:
            stamps = self._counted((subject, w), now)
            if len(stamps) >= w.count:
                # the slot frees when the (len - count + 1)-th oldest leaves the window
                frees_at = stamps[len(stamps) - w.count] + w.period
                wait = max(1, math.ceil(frees_at - now))
                if worst is None or wait > worst.retry_after:
                    worst = Refused(wait, w)
        return worst if worst is not None else Admitted()

    def admit(self, subject: Hashable, windows: Sequence[Window], now: float
              ) -> Admitted | Refused:
        """Admit and record, or refuse and record nothing."""
        now = self.effective_now(now)
        self._latest = now
        verdict = self.check(subject, windows, now)
        if isinstance(verdict, Admitted):
            for w in windows:
                self._stamps.setdefault((subject, w), []).append(now)  # stays sorted
        return verdict
