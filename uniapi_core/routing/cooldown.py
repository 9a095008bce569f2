"""Channel cooldown: a failed (provider, requested model) steps back for a while.

Theory of operation
-------------------
docs/routing.md §5 "Cooldowns": after a failure the gateway calls
``Cooldowns.cool(provider, alias, now, period)`` with the effective ``cooldown_period`` (provider
preference, else global, default 300; ``0`` = off, so ``period <= 0`` does nothing). The key is
the provider *name* and the *requested* model alias (as the seed did; keying by the upstream name
would let renamed models escape).

A pair is cooling while ``now < end`` with ``end = now_of_failure + period``: at ``end - ε`` it is
still cooling, at ``end`` it is available again. Cooling again while cooling keeps the later end.
A later success does not shorten a cooldown.

A cooldown never refuses a request by itself: ``arrange`` puts the available channels first (in
their scheduled order) and the cooling ones after them, soonest end first (ties keep list
order). When every candidate is cooling, the request therefore still goes out, to the one whose
cooldown ends first. The caller decides what ``split``'s second half is for (e.g. to skip cooling
channels only when others exist).

Memory: an expired entry is dropped when it is looked at; besides, ``cool`` sweeps out every
expired entry whenever the table has doubled since the last sweep, so entries that are never
looked at again cannot pile up (amortised O(1) per call). Time is only the ``now`` argument.
"""

from __future__ import annotations

from collections.abc import Sequence

from .resolve import Channel

__all__ = ["Cooldowns"]

#: the table size below which ``cool`` does not bother sweeping
_SWEEP_FLOOR = 1024


class Cooldowns:
    """End times of the (provider name, requested model) pairs cooling down."""

    def __init__(self) -> None:
        self._until: dict[tuple[str, str], float] = {}
        self._sweep_at = _SWEEP_FLOOR

    def __len__(self) -> int:
        """Entries held (some may have expired and not been swept yet)."""
        return len(self._until)

    def cool(self, provider: str, model: str, now: float, period: float) -> None:
        """Cool (``provider``, ``model``) until ``now + period``; ``period <= 0`` does nothing."""
        if not period > 0:  # also refuses NaN
            return
        key = (provider, model)
        end = now + period
        old = self._until.get(key)
        if old is None or end > old:
            self._until[key] = end
        if len(self._until) >= self._sweep_at:
            self._sweep(now)

    def active(self, now: float) -> int:
        """How many pairs are cooling at ``now`` (for the metrics gauge)."""
        return sum(1 for end in self._until.values() if end > now)

    def cooling(self, now: float) -> list[tuple[str, str, float]]:
        """(provider, model, end) of every pair cooling at ``now``."""
        return [(p, m, end) for (p, m), end in self._until.items() if end > now]

    def until(self, provider: str, model: str, now: float) -> float | None:
        """When the pair's cooldown ends, if it is cooling at ``now``; else ``None``."""
        key = (provider, model)
        end = self._until.get(key)
        if end is None:
            return None
        if now >= end:
            del self._until[key]
            return None
        return end

    def split(self, channels: Sequence[Channel], now: float
              ) -> tuple[list[Channel], list[Channel]]:
        """(available channels in their order, cooling channels soonest end first)."""
        available: list[Channel] = []
        cooling: list[tuple[float, int, Channel]] = []
        for i, c in enumerate(channels):
            end = self.until(c.provider.provider, c.alias, now)
            if end is None:
                available.append(c)
            else:
                cooling.append((end, i, c))
        cooling.sort(key=lambda t: (t[0], t[1]))
        return available, [c for _, _, c in cooling]

    def arrange(self, channels: Sequence[Channel], now: float) -> list[Channel]:
        """Available channels (order kept), then cooling ones (soonest end first)."""
        available, cooling = self.split(channels, now)
        return available + cooling

    def _sweep(self, now: float) -> None:
        self._until = {k: end for k, end in self._until.items() if now < end}
        self._sweep_at = max(_SWEEP_FLOOR, 2 * len(self._until))
