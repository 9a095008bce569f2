"""Routing on the fleet's shared state: the requests of ``redis/script.py`` and their answers.

Theory of operation
-------------------
With ``--redis-url`` (``REDIS_URL``) every gateway process sharing the Redis makes its routing
decisions there, one atomic script call each (docs/scale-out.md): a client key's rate limit,
the rotation, the channel cooldowns and the provider-key pick of a request's first attempt
are *one* call (``route``), so the hot path costs one Redis round trip; a retry's key pick is
another (``pick``); a failure's cooldown or bench is told without waiting for an answer
(``note``). The decisions are the single-node ones rule for rule (``ratelimit/limiter.py``,
``routing/schedule.py``, ``routing/cooldown.py``, ``routing/keypool.py``); this module only
names the state (digests of what it belongs to, under the fleet's prefix) and turns the
script's JSON answers back into the values routing already uses.

The attempt source asks with a ``Consult`` (routing/plan.py); the relay runs it as an action
and hands the replies back, or ``None`` when Redis did not answer within ``timeout``. ``None``
(or an answer that is not the script's) makes the request decide on this process's own state
from then on (``SharedState.lost``): Redis is never the cause of an error answer.

Where the shared flavour differs from the single-node one, by design: a rotation whose
candidate list changed starts afresh at position 0 (single node: carries on from the channel
due next); the clock is Redis's own (``TIME``), so cooldown and window ends do not depend on
any one machine's clock.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Hashable, Sequence
from typing import Any

import attrs

from ..config.model import ApiKey, Provider, RateRule
from ..ratelimit.scope import limit_scope
from ..redis.resp import RespError
from ..redis.script import SHA
from .keypool import key_windows
from .plan import Consult
from .resolve import Channel
from .schedule import weight_of

__all__ = ["SharedState", "DEFAULT_REDIS_TIMEOUT", "fleet_of", "route_request", "pool_spec",
           "cool_name", "token_name", "Note", "ReloadFollower", "RELOAD_POLL"]

#: seconds a shared decision may take before this process decides on its own state
DEFAULT_REDIS_TIMEOUT = 0.05

#: one failure's consequence to tell the fleet: ("cool", channel name, seconds) or
#: ("bench", "<pool name>:<key index>", seconds)
Note = tuple[str, str, float]


def _d(*parts: Hashable) -> str:
    """A short stable name for what some shared state belongs to (never the secret itself)."""
    return hashlib.sha256(repr(parts).encode("utf-8", "surrogatepass")).hexdigest()[:20]


def fleet_of(client_keys: Sequence[str]) -> str:
    """The fleet's name: a digest of its client keys, so that gateways serving one config share
    their state and two configs sharing one Redis do not mix (a reload that keeps the keys
    keeps the state)."""
    return _d("fleet", *sorted(client_keys))[:12]


def windows(subject: Hashable, rules: Sequence[RateRule]) -> list[dict[str, Any]]:
    """One limiter subject's windows, as the script takes them."""
    return [{"k": _d(subject, r.count, r.period), "n": r.count, "s": r.period} for r in rules]


def token_name(account: Hashable) -> str:
    """The shared name of a Vertex service account's access token."""
    return _d("token", account)


def cool_name(provider: str, alias: str) -> str:
    """The shared name of a (provider, requested model) channel's cooldown."""
    return _d("cool", provider, alias)


def pool_name(provider: Provider, slots: tuple[str, ...] | None) -> str:
    """The shared name of a provider's key pool (or of one of its Vertex region lists); a
    changed key list is another pool, as ``KeyPools`` starts afresh."""
    return pool_name_of(provider.provider, slots, provider.api if slots is None else slots)


def pool_name_of(provider: str, slots: tuple[str, ...] | None, keys: tuple[str, ...]) -> str:
    return _d("pool", provider, slots is not None, keys)


def pool_spec(provider: Provider, upstream_model: str, slots: tuple[str, ...] | None,
              rng: random.Random) -> dict[str, Any]:
    """What the script's key pick needs of one channel's pool (``KeyPools.pick``'s inputs)."""
    limit, name = provider.preferences.api_key_rate_limit, provider.provider
    keys = provider.api if slots is None else slots
    n = len(keys)
    spec: dict[str, Any] = {"k": pool_name(provider, slots), "n": n}
    if n == 0:
        found = key_windows(limit, name, None, upstream_model)
        spec["l0"] = None if found is None else windows(*found)
        return spec
    algo = provider.preferences.api_key_schedule_algorithm or "round_robin"
    spec["a"] = {"round_robin": "rr", "fixed_priority": "fixed"}.get(algo, algo)
    if algo == "random":
        order = list(range(n))
        rng.shuffle(order)
        spec["o"] = order
    if limit is not None:
        found_all = [key_windows(limit, name, i, upstream_model) for i in range(n)]
        spec["l"] = [None if f is None else windows(*f) for f in found_all]
    return spec


def route_request(key: ApiKey, key_id: Hashable, model: str, channels: Sequence[Channel],
                  specs: Sequence[dict[str, Any]], algorithm: str | None) -> dict[str, Any]:
    """The ``route`` request: the client key's windows, the rotation (``rr``/``wrr``; other
    algorithms arrive already ordered), and each channel's cooldown and pool."""
    request: dict[str, Any] = {"ch": [{"c": cool_name(c.provider.provider, c.alias), "pool": s}
                                      for c, s in zip(channels, specs)]}
    found = limit_scope(key.preferences.rate_limit, model)
    if found is not None:
        scope, rules = found
        request["lim"] = windows(("key", key_id, *scope), rules)
    idents = tuple((c.provider.provider, c.upstream_model, c.alias) for c in channels)
    if algorithm == "round_robin":
        request["sched"] = {"a": "rr", "k": _d("rr", key_id, model, idents)}
    elif algorithm == "weighted_round_robin":
        weights = [weight_of(c) for c in channels]
        request["sched"] = {"a": "wrr", "k": _d("wrr", key_id, model, idents, tuple(weights)),
                            "w": weights}
    return request


@attrs.define
class SharedState:
    """One gateway's view of the fleet: where its state lives, how long a decision may take,
    and whether the last one had to fall back to this process's own state."""

    fleet: str
    timeout: float = DEFAULT_REDIS_TIMEOUT
    #: the last shared decision fell back to local state (``uniapi_shared_state_degraded``)
    degraded: bool = False
    #: decisions that fell back since start (``uniapi_shared_state_fallbacks_total``)
    fallbacks: int = 0
    #: decide at the caller's ``now`` instead of Redis's clock: for tests on a virtual clock
    #: (every process of the fleet must then share one clock)
    own_clock: bool = False

    @property
    def prefix(self) -> str:
        return f"uniapi:{self.fleet}:"

    def consult(self, mode: str, request: dict[str, Any] | str, now: float) -> Consult:
        """The script call for one decision at ``now`` (the caller's clock, used only with
        ``own_clock``: else Redis's); ``request`` as a dict, or as ``encode`` made it."""
        return Consult(self.command(mode, request, now), self.timeout)

    def encode(self, request: dict[str, Any]) -> str:
        """A request's JSON text, the fleet's prefix in it (what ``command`` sends)."""
        return json.dumps({"p": self.prefix, **request}, separators=(",", ":"))

    def command(self, mode: str, request: dict[str, Any] | str, now: float) -> tuple[str, ...]:
        text = request if isinstance(request, str) else self.encode(request)
        return ("EVALSHA", SHA, "0", mode, text, repr(float(now)) if self.own_clock else "")

    def answer(self, replies: Sequence[Any] | None) -> dict[str, Any] | None:
        """The script's answer, or None when there is none to trust (no reply in time, an
        error reply such as NOSCRIPT, or a shape the script never writes)."""
        found: Any = None
        if replies and len(replies) == 1 and isinstance(replies[0], (bytes, str)):
            try:
                found = json.loads(replies[0])
            except ValueError:
                found = None
        if not isinstance(found, dict):  # None, an error reply (NOSCRIPT…) or not the script's
            self.lost()
            return None
        self.degraded = False
        return found

    def lost(self) -> None:
        """A decision falls back to this process's state."""
        self.degraded = True
        self.fallbacks += 1


def as_list(value: Any) -> list[Any]:
    """A JSON array of the script's answer (an empty Lua table is encoded as ``{}``)."""
    return value if isinstance(value, list) else []


#: seconds between two looks at the fleet's reload generation
RELOAD_POLL = 0.5


@attrs.define
class ReloadFollower:
    """The fleet's hot reloads: a reload on one instance is followed by all within a second.

    Each process with shared state runs one loop (the transport's): every ``RELOAD_POLL``
    seconds ``ask`` gives the command to run (None: no shared state) and ``told`` reads its
    replies, True meaning another instance reloaded, so this one reloads too, then says
    ``followed``. The generation is a counter, ``<prefix>reload``. When this process's own
    gateway changed since the last look (SIGHUP, ``POST /v1/reload``), ``ask`` announces it
    instead (INCR, under the fleet's old name too when the client keys, and so the fleet's
    name, changed: the others still watch that one). A counter that went down (Redis
    restarted, flushed) is only re-read; no reload follows from it.

    The looks also tell whether Redis answers (``SharedState.degraded`` between requests), and
    the first look after Redis came back carries the resync (``Router.resync``): the channels
    this process cooled and the keys it benched alone are told to the fleet."""

    _gateway: Any = None
    _seen: int | None = None
    _announcing: bool = False
    _shared: SharedState | None = None
    _was_degraded: bool = False

    def ask(self, gateway: Any, now: float) -> tuple[tuple[str, ...], ...] | None:
        shared: SharedState | None = gateway.router.shared
        if shared is None:
            return None
        back = self._shared is shared and self._was_degraded and not shared.degraded
        self._shared, self._was_degraded = shared, shared.degraded
        old, self._gateway = self._gateway, gateway
        self._announcing = old is not None and old is not gateway
        if not self._announcing:
            resync = gateway.router.resync(now) if back else None
            return (("GET", shared.prefix + "reload"),) + ((resync,) if resync else ())
        before: SharedState | None = old.router.shared
        commands = [("INCR", shared.prefix + "reload")]
        if before is not None and before.prefix != shared.prefix:
            commands.append(("INCR", before.prefix + "reload"))
        return tuple(commands)

    def told(self, replies: Sequence[Any] | None) -> bool:
        """Read the replies of ``ask``'s command (None: none). They also say whether Redis
        answers, which is what ``uniapi_shared_state_degraded`` shows between requests."""
        first: Any = replies[0] if replies else RespError("no answer")
        try:
            value = int(first) if first is not None else 0
        except (TypeError, ValueError):  # no answer, or an error reply: look again next time
            if self._shared is not None:
                self._shared.degraded = True
            return False
        if self._shared is not None:
            self._shared.degraded = False
        seen, self._seen = self._seen, value
        return not self._announcing and seen is not None and value > seen

    def followed(self, gateway: Any) -> None:
        """This process reloaded because the fleet did: nothing to announce."""
        old, self._gateway = self._gateway, gateway
        before = None if old is None else old.router.shared
        after = gateway.router.shared
        if before is None or after is None or before.prefix != after.prefix:
            self._seen = None  # another counter: read it afresh
