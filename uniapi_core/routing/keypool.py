"""Provider-key pools: which of a provider's ``api`` keys an attempt uses.

Theory of operation
-------------------
One pool per provider name (docs/routing.md §6 "Provider keys", §3 "Rate limits"). Each
``pick`` walks the provider's keys in an order set by ``preferences.api_key_schedule_algorithm``
and returns the first *usable* one:

- ``round_robin`` (default): from a cursor shared by every model and client key of the provider;
  the cursor then moves just past the key handed out;
- ``fixed_priority``: from key 0, so always the first usable key;
- ``random``: a uniform shuffle with the caller's ``rng``, i.e. a uniformly random usable key.

A key is skipped when it is in ``exclude`` (already tried in this request), *benched*, or over
its ``api_key_rate_limit``. Rate limits use an exact sliding-window ``Limiter``; ``pick`` calls
``admit``, which records a request only for the key it returns (a refused key records nothing).
Subjects:

- a single rule set (``"15/min,1000/day"``) limits each key across all its requests:
  subject ``(provider, index)``;
- a per-model map is matched against the *upstream* model with ``modelmatch.lookup`` (exact,
  longest prefix, longest contained): each entry has its own window per key, shared by every
  model the entry matches: subject ``(provider, index, entry)``; a model no entry matches uses
  ``default`` with a window of its own: subject ``(provider, index, "default", model)``; with no
  ``default`` such a model is not limited.

When no key is usable the answer is ``KeyPick(None, retry_after)``: ``retry_after`` is the
smallest ``Refused.retry_after`` among the keys refused by their rate limit (whole seconds until
the earliest of them frees a slot), or ``None`` when every key was benched or excluded.

A provider without keys (AWS, ...) is one implicit credential: ``pick``
gives ``KeyPick(None, None, usable=True)`` (send without a provider key), still subject to
``api_key_rate_limit`` if one is configured (with ``None`` in place of the index) and unusable
for that reason only.

Benching: ``record_failure`` with status 429, 401 or 403 (the statuses the retry table of
``routing/retry.py`` blames on the key) benches the key for
``api_key_cooldown_period`` seconds (default 0 = off): skipped while ``now < failure + period``,
usable again from ``failure + period``. As the seed README says, this applies only to a provider
with at least two keys; a lone key is never benched (the channel cooldown handles the channel).

*Slots other than keys* (Vertex regions, ``routing/regions.py``): every method takes an optional
``slots`` tuple; when given, the pool's entries are those slots instead of ``provider.api``
(one pool per provider and slot list, so each region list keeps its own cursor, windows and
benches), ``KeyPick.index`` indexes ``slots``, and a slot is benched by 429 only (a 401/403 is
about the credential, the same in every region) for ``api_key_cooldown_period`` seconds, or
``REGION_BENCH`` when that is not set (``0`` turns it off).

A pool remembers the key list it was built for. When it is asked for a provider whose ``api``
list differs from that one, it starts afresh (cursor, benches, windows), since indexes no longer
name the same keys; an unchanged list keeps everything. This is what lets a hot reload
(``Gateway.reloaded``, which hands the new gateway this same object) keep the state of
unchanged providers. At most ``max_providers``
pools are kept (least recently used dropped). Time is only the ``now`` argument; randomness
only ``rng``.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Collection, Hashable, Sequence

import attrs

from ..config.model import Provider, RateLimit, RateRule
from ..ratelimit.limiter import Admitted, Limiter
from ..ratelimit.scope import limit_scope
from .retry import benches

__all__ = ["KEY_ALGORITHMS", "REGION_BENCH", "KeyPick", "KeyPools", "key_windows"]

#: every value ``api_key_schedule_algorithm`` may take (``None`` means ``round_robin``)
KEY_ALGORITHMS = ("round_robin", "random", "fixed_priority")

#: seconds a slot answering 429 is benched when ``api_key_cooldown_period`` is not set
REGION_BENCH = 60.0


def _usable_default(self: KeyPick) -> bool:
    return self.index is not None


@attrs.frozen
class KeyPick:
    """The outcome of ``KeyPools.pick``.

    - ``KeyPick(i)``: use key ``i`` of ``provider.api`` (``usable`` is True);
    - ``KeyPick(None, None, usable=True)``: the provider has no keys; send without one;
    - ``KeyPick(None, retry_after)``: no key usable now; ``retry_after`` = whole seconds until
      the earliest rate-limited key frees a slot, ``None`` if the keys are only benched/excluded.
    """

    index: int | None
    retry_after: int | None = None
    usable: bool = attrs.field(default=attrs.Factory(_usable_default, takes_self=True))

    def __attrs_post_init__(self) -> None:
        if self.index is not None and not self.usable:
            raise ValueError("a pick with a key index is usable")
        if self.usable and self.retry_after is not None:
            raise ValueError("retry_after only goes with an unusable pick")


@attrs.define
class _Pool:
    keys: tuple[str, ...]
    limiter: Limiter = attrs.Factory(Limiter)
    cursor: int = 0
    #: key index -> end of its bench
    benched: dict[int, float] = attrs.Factory(dict)

    def is_benched(self, index: int, now: float) -> bool:
        end = self.benched.get(index)
        if end is None:
            return False
        if now >= end:
            del self.benched[index]
            return False
        return True


def key_windows(limit: RateLimit | None, provider: str, index: int | None, model: str
             ) -> tuple[Hashable, Sequence[RateRule]] | None:
    """(limiter subject, windows) for one key and upstream model, or ``None``: no limit."""
    found = limit_scope(limit, model)
    if found is None:
        return None
    scope, rules = found
    return (provider, index, *scope), rules


class KeyPools:
    """Provider-key selection, rate limits and benches, for every provider."""

    def __init__(self, *, max_providers: int = 10_000) -> None:
        if max_providers < 1:
            raise ValueError("max_providers must be at least 1")
        self._max = max_providers
        self._pools: OrderedDict[Hashable, _Pool] = OrderedDict()

    def _pool(self, provider: Provider, slots: tuple[str, ...] | None = None) -> _Pool:
        name: Hashable = provider.provider if slots is None else (provider.provider, slots)
        keys = provider.api if slots is None else slots
        pool = self._pools.get(name)
        if pool is None or pool.keys != keys:
            pool = _Pool(keys)
            self._pools[name] = pool
        self._pools.move_to_end(name)
        while len(self._pools) > self._max:
            self._pools.popitem(last=False)
        return pool

    def pick(self, provider: Provider, upstream_model: str, now: float, rng: random.Random,
             exclude: Collection[int] = (), slots: tuple[str, ...] | None = None) -> KeyPick:
        """The key (or slot) for one attempt of ``provider`` serving ``upstream_model``; see
        ``KeyPick``.

        A returned key is recorded in its rate-limit windows; nothing else is. Raises
        ``ValueError`` for an ``api_key_schedule_algorithm`` outside ``KEY_ALGORITHMS``.
        """
        prefs = provider.preferences
        algo = prefs.api_key_schedule_algorithm or "round_robin"
        if algo not in KEY_ALGORITHMS:
            raise ValueError(f"unknown api_key_schedule_algorithm {algo!r}; "
                             f"expected one of {', '.join(KEY_ALGORITHMS)}")
        pool = self._pool(provider, slots)
        name = provider.provider
        n = len(pool.keys)
        if n == 0:
            limited = key_windows(prefs.api_key_rate_limit, name, None, upstream_model)
            if limited is not None:
                verdict = pool.limiter.admit(limited[0], limited[1], now)
                if not isinstance(verdict, Admitted):
                    return KeyPick(None, verdict.retry_after)
            return KeyPick(None, None, usable=True)

        if algo == "fixed_priority":
            order: list[int] = list(range(n))
        elif algo == "random":
            order = list(range(n))
            rng.shuffle(order)
        else:
            start = pool.cursor % n
            order = [(start + k) % n for k in range(n)]

        retry_after: int | None = None
        for i in order:
            if i in exclude or pool.is_benched(i, now):
                continue
            limited = key_windows(prefs.api_key_rate_limit, name, i, upstream_model)
            if limited is not None:
                verdict = pool.limiter.admit(limited[0], limited[1], now)
                if not isinstance(verdict, Admitted):
                    if retry_after is None or verdict.retry_after < retry_after:
                        retry_after = verdict.retry_after
                    continue
            if algo == "round_robin":
                pool.cursor = (i + 1) % n
            return KeyPick(i)
        return KeyPick(None, retry_after)

    def record_failure(self, provider: Provider, index: int | None, status: int | None,
                       now: float, slots: tuple[str, ...] | None = None) -> None:
        """An attempt with key ``index`` failed with ``status`` (``None``: no HTTP status).

        429, 401 and 403 bench the key for ``api_key_cooldown_period`` seconds when that is
        positive and the provider has at least two keys; anything else does nothing. With
        ``slots``: 429 benches the slot (see the module docstring).
        """
        period = self.bench_period(provider, index, status, slots)
        if period is None or index is None:
            return
        pool = self._pool(provider, slots)
        end = now + period
        old = pool.benched.get(index)
        if old is None or end > old:
            pool.benched[index] = end

    @staticmethod
    def bench_period(provider: Provider, index: int | None, status: int | None,
                     slots: tuple[str, ...] | None = None) -> float | None:
        """The seconds a failure with ``status`` benches key (or slot) ``index`` for, or None
        when it benches nothing (the rules of ``record_failure``)."""
        period = provider.preferences.api_key_cooldown_period
        if slots is None:
            period = period or 0.0
        else:
            period = REGION_BENCH if period is None else period
        # which statuses are the key's (or region's) fault: the table of routing/retry.py
        if not benches(status, regions=slots is not None) or not period > 0 or index is None:
            return None
        keys = provider.api if slots is None else slots
        if len(keys) < 2 or not 0 <= index < len(keys):
            return None
        return period

    def benched(self, now: float
                ) -> list[tuple[str, tuple[str, ...] | None, tuple[str, ...], int, float]]:
        """(provider name, slots or None, the pool's keys or slots, index, end) of every key
        or slot benched at ``now``."""
        found = []
        for name, pool in self._pools.items():
            provider, slots = name if isinstance(name, tuple) else (name, None)
            found += [(provider, slots, pool.keys, i, end) for i, end in pool.benched.items()
                      if end > now]
        return found

    def benched_until(self, provider: Provider, index: int, now: float,
                      slots: tuple[str, ...] | None = None) -> float | None:
        """When key ``index``'s bench ends, if it is benched at ``now``; else ``None``."""
        pool = self._pool(provider, slots)
        return pool.benched[index] if pool.is_benched(index, now) else None
