"""Channel order per request: ``SCHEDULING_ALGORITHM`` (docs/routing.md §4 "Scheduling").

Theory of operation
-------------------
``Scheduler.order`` takes the resolved candidate channels of one request and returns the order in
which they are tried. Only the *first* place is decided by the algorithm; for every algorithm but
``round_robin`` and ``random`` the remaining candidates follow in list order (they are retries).

- ``fixed_priority`` (also ``None``): the list as is.
- ``round_robin``: the list rotated so that each request starts one further than the last
  (first request: position 0). The others follow in rotated list order.
- ``weighted_round_robin``: nginx's *smooth* weighted round robin. Each channel keeps a
  ``current`` counter; on each request every ``current`` grows by its weight, the largest
  (ties: earlier in the list) is picked and loses the total weight. The counters sum to zero
  after every pick and return to all zeros after Σw picks, so the picks repeat with period Σw:
  over *any* Σw consecutive requests each channel comes first exactly ``weight`` times, and the
  heavy channel is spread out (5/3/2 gives ``a b c a a b a c b a``) instead of coming in a burst.
- ``lottery``: the first channel drawn with probability ``weight / total`` (an integer draw
  ``rng.randrange(total)``, so the odds are exact), the rest in list order.
- ``random``: a uniform shuffle of the whole list with ``rng``.

A channel's weight is ``Channel.weight``; ``None`` (or anything below 1, which the reference
ignores) counts as 1.

State. ``round_robin`` and ``weighted_round_robin`` keep state per ``state_key`` (the caller
passes (api key, requested model)). The state remembers the candidate list it was built for, as
identities (provider name, upstream model, alias; plus the weights for the weighted cycle). When
a request brings a different list (another length, other channels, other weights, or another
algorithm) the state is reset:

- ``round_robin`` carries on where it was: the channel that was due next, or if it is gone the
  first channel after it (in the old list's circular order) that is still present, starts the
  new rotation; when none of the old channels is left the rotation starts at position 0.
- ``weighted_round_robin`` starts a fresh cycle (all counters zero), since counters built for
  other weights would no longer add up to an exact cycle.

Memory is bounded: at most ``max_keys`` (default 10,000) state keys are kept; using a key makes
it the most recent, and a new key beyond the bound drops the least recently used one (which then
simply starts afresh if it comes back). Stateless algorithms store nothing. No clock, no global
randomness: the ``rng`` is the caller's.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Hashable, Sequence

import attrs

from .resolve import Channel

__all__ = ["ALGORITHMS", "Scheduler", "weight_of", "DEFAULT_MAX_KEYS"]

#: every value ``SCHEDULING_ALGORITHM`` may take (``None`` means ``fixed_priority``)
ALGORITHMS = ("fixed_priority", "round_robin", "weighted_round_robin", "lottery", "random")

#: the default bound on remembered (api key, model) states
DEFAULT_MAX_KEYS = 10_000

_Ident = tuple[str, str, str]


def weight_of(channel: Channel) -> int:
    """The weight scheduling uses: ``Channel.weight``, or 1 when unset (or below 1)."""
    w = channel.weight
    return w if w is not None and w >= 1 else 1


def _ident(channel: Channel) -> _Ident:
    return (channel.provider.provider, channel.upstream_model, channel.alias)


@attrs.define
class _Rotation:
    """``round_robin`` state: the list it was built for and the position due next."""

    idents: tuple[_Ident, ...]
    next: int


@attrs.define
class _Smooth:
    """``weighted_round_robin`` state: the list and weights it was built for, the counters."""

    idents: tuple[_Ident, ...]
    weights: tuple[int, ...]
    current: list[int]


class Scheduler:
    """Channel order per request; owns the per-(api key, requested model) state."""

    def __init__(self, *, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._max_keys = max_keys
        self._states: OrderedDict[Hashable, _Rotation | _Smooth] = OrderedDict()

    def __len__(self) -> int:
        """How many state keys are remembered (at most ``max_keys``)."""
        return len(self._states)

    def order(self, algorithm: str | None, channels: Sequence[Channel], state_key: Hashable,
              rng: random.Random) -> list[Channel]:
        """The order in which ``channels`` are tried for one request.

        ``algorithm`` is one of ``ALGORITHMS`` or ``None`` (``fixed_priority``); any other name
        raises ``ValueError`` (the config loader is expected to have refused it). ``state_key``
        names the rotation this request advances; ``rng`` is used by ``lottery`` and ``random``.
        The result is a new list holding every channel exactly once.
        """
        algo = "fixed_priority" if algorithm is None else algorithm
        if algo not in ALGORITHMS:
            raise ValueError(f"unknown scheduling algorithm {algorithm!r}; "
                             f"expected one of {', '.join(ALGORITHMS)}")
        chans = list(channels)
        if algo == "fixed_priority" or len(chans) <= 1:
            return chans
        if algo == "random":
            rng.shuffle(chans)
            return chans
        if algo == "lottery":
            return _first_then_rest(chans, _draw(chans, rng))
        if algo == "round_robin":
            start = self._rotate(chans, state_key)
            return chans[start:] + chans[:start]
        return _first_then_rest(chans, self._smooth(chans, state_key))

    # -- state ------------------------------------------------------------------------------

    def _get(self, key: Hashable) -> _Rotation | _Smooth | None:
        state = self._states.get(key)
        if state is not None:
            self._states.move_to_end(key)
        return state

    def _put(self, key: Hashable, state: _Rotation | _Smooth) -> None:
        self._states[key] = state
        self._states.move_to_end(key)
        while len(self._states) > self._max_keys:
            self._states.popitem(last=False)

    def _rotate(self, chans: list[Channel], key: Hashable) -> int:
        idents = tuple(_ident(c) for c in chans)
        n = len(chans)
        state = self._get(key)
        if isinstance(state, _Rotation) and state.idents == idents:
            start = state.next % n
        elif isinstance(state, _Rotation):
            start = _carry_on(state, idents)
        else:
            start = 0
        self._put(key, _Rotation(idents, (start + 1) % n))
        return start

    def _smooth(self, chans: list[Channel], key: Hashable) -> int:
        idents = tuple(_ident(c) for c in chans)
        weights = tuple(weight_of(c) for c in chans)
        state = self._get(key)
        if not (isinstance(state, _Smooth) and state.idents == idents
                and state.weights == weights):
            state = _Smooth(idents, weights, [0] * len(chans))
            self._put(key, state)
        current = state.current
        best = 0
        for i, w in enumerate(weights):
            current[i] += w
            if current[i] > current[best]:  # strict: ties go to the earlier channel
                best = i
        current[best] -= sum(weights)
        return best


def _carry_on(old: _Rotation, idents: tuple[_Ident, ...]) -> int:
    """Where a rotation resumes on a changed list: the old due channel, or the next survivor."""
    position = {ident: i for i, ident in reversed(list(enumerate(idents)))}
    m = len(old.idents)
    for k in range(m):
        found = position.get(old.idents[(old.next + k) % m])
        if found is not None:
            return found
    return 0


def _draw(chans: list[Channel], rng: random.Random) -> int:
    """A position drawn with probability weight / total."""
    weights = [weight_of(c) for c in chans]
    x = rng.randrange(sum(weights))
    for i, w in enumerate(weights):
        if x < w:
            return i
        x -= w
    raise AssertionError("unreachable: x < total")


def _first_then_rest(chans: list[Channel], first: int) -> list[Channel]:
    return [chans[first]] + chans[:first] + chans[first + 1:]
