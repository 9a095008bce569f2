"""The router: every routing rule of api.yaml, as one object that owns the routing state.

Theory of operation
-------------------
For one request (api key, requested model, what the request needs) the router:

1. resolves the key's rules into candidate channels (``resolve``);
2. drops channels that cannot serve the request at all (capability pre-flight: an engine
   uniapi does not speak yet, ``tools: false`` with tools in the request) — stated in the
   explanation, never counted as failures;
3. applies the key's ``rate_limit`` (429 with ``Retry-After`` when over it);
4. orders the rest by the key's ``SCHEDULING_ALGORITHM`` (``Scheduler``), then moves channels
   in cooldown behind the available ones (``Cooldowns``: never a refusal by itself);
5. returns a ``RoutePlan``, the ``AttemptSource`` the relay pulls attempts from. The plan picks
   a provider key for each attempt (``KeyPools``: rotation, per-key limits, benches); a
   key-level failure (401/403/429) tries the channel's next key before the next channel; a
   channel whose keys are all over their limits is skipped, and when every channel is skipped
   that way the client gets 429 with ``Retry-After`` and nothing is sent upstream.

A Vertex channel's slots are its regions (``routing/regions.py``) instead of provider keys:
the same ``KeyPools`` rotation picks the region of each attempt, and a 429 (only: 401/403 are
the credential's, the same everywhere) tries the channel's next region before the next channel
and benches the region.

With shared state (``--redis-url``, ``routing/shared.py``) steps 3 to 5 are the fleet's: the
plan's first attempt is a ``Consult`` of one Redis script call (the key's limit, the order, the
cooldowns, the first key pick) and a retry's key pick another; failures are told to the fleet
as well as kept here. Without an answer in time the request decides on this object's state.

Attempts never exceed the ``AUTO_RETRY`` budget and never repeat a channel before all were
tried. What a failure means — the key's fault (bench it, try the channel's next key), the
channel's (cool it) or the request's (nothing) — is the one table of ``routing/retry.py``.
Failures cool the (provider, requested model) channel for ``cooldown_period`` (provider
preference, else global, else 300 s; 0 = off) and bench keys (``api_key_cooldown_period``).
Everything is a function of the ``now`` and ``random.Random`` passed in.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable

import attrs

from ..config.model import ApiKey, Config, Provider
from ..errors import ClientError, GatewayError, UniapiError, UpstreamError
from ..ratelimit import Admitted, Limiter, limit_scope
from .cooldown import Cooldowns
from .keypool import KeyPick, KeyPools
from .plan import Attempt, Consult
from .regions import vertex_regions
from .resolve import Catalog, Channel, resolve
from .retry import attempt_budget, verdict
from .schedule import Scheduler
from .shared import (Note, SharedState, as_list, cool_name, pool_name, pool_name_of, pool_spec,
                     route_request)

__all__ = ["Router", "RoutePlan", "Need", "Decision", "DEFAULT_COOLDOWN"]

#: seconds a failed channel is skipped when api.yaml does not say (docs/routing.md §5)
DEFAULT_COOLDOWN = 300.0
#: encoded ``route`` requests a Router keeps (all dropped when full)
ROUTE_REQUESTS = 4096


@attrs.frozen(kw_only=True)
class Need:
    """What a request needs from a channel (capability pre-flight)."""

    tools: bool = False
    engines: frozenset[str] | None = None  # engines able to serve this endpoint; None = any


@attrs.frozen
class Decision:
    """One line of a route explanation."""

    provider: str
    upstream_model: str
    verdict: str  # "attempt", "skipped", "cooling", "over limit", "failed"
    detail: str = ""
    key_index: int | None = None
    #: the Vertex region of the attempt (its slot), when the channel has regions
    region: str | None = None


BuildAttempt = Callable[[Channel, int | None, int], Attempt]


class Router:
    """Routing state for one gateway: schedules, key pools, cooldowns and rate windows."""

    def __init__(self, config: Config, catalog: Catalog,
                 engine_of: Callable[[Provider], str]) -> None:
        self.config = config
        self.catalog = catalog
        self.engine_of = engine_of
        self.scheduler = Scheduler()
        self.cooldowns = Cooldowns()
        self.keys = KeyPools()
        self.limiter = Limiter()
        #: the fleet's shared state (``--redis-url``): decisions are made there, and on the
        #: objects above only when it does not answer (``routing/shared.py``); None: here
        self.shared: SharedState | None = None
        #: the ``route`` requests already encoded, by (key, model, ordered channels): the same
        #: for every request of one rule until the config changes (a reload makes a new
        #: Router); none is kept for a pool with random key order, drawn per request
        self.route_requests: dict[tuple, str] = {}
        #: (provider, upstream model) -> [successes, failures]
        self.stats: dict[tuple[str, str], list[int]] = {}

    def plan(self, key: ApiKey, key_id: Hashable, model: str, need: Need, now: float,
             rng: random.Random, build: BuildAttempt) -> "RoutePlan":
        """The attempts for one request; raises ``ClientError`` (404/429) when none may run."""
        explained: list[Decision] = []
        channels = []
        for c in resolve(self.catalog, key, model):
            reason = self._cannot_serve(c, need)
            if reason:
                explained.append(Decision(c.provider.provider, c.upstream_model, "skipped",
                                          reason))
            else:
                channels.append(c)
        if not channels:
            detail = "; ".join(f"{d.provider}: {d.detail}" for d in explained)
            raise ClientError(
                f"The model '{model}' does not exist or you do not have access to it"
                + (f" ({detail})" if detail else ""), status=404, code="model_not_found")
        budget = attempt_budget(key.preferences.AUTO_RETRY)
        if self.shared is not None:  # the fleet decides, at the first attempt (RoutePlan)
            return RoutePlan(self, channels, budget, rng, build, explained,
                             pending=(key, key_id, model))
        return RoutePlan(self, self.arrange(key, key_id, model, channels, now, rng, explained),
                         budget, rng, build, explained)

    def arrange(self, key: ApiKey, key_id: Hashable, model: str, channels: list[Channel],
                now: float, rng: random.Random, explained: list[Decision]) -> list[Channel]:
        """This process's decisions before the first attempt: the key's rate limit (raises
        ``ClientError`` 429), the scheduled order, cooling channels last."""
        self._admit_key(key, key_id, model, now)
        ordered = self.scheduler.order(key.preferences.SCHEDULING_ALGORITHM, channels,
                                       (key_id, model), rng)
        available, cooling = self.cooldowns.split(ordered, now)
        for c in cooling:
            until = self.cooldowns.until(c.provider.provider, c.alias, now)
            explained.append(Decision(c.provider.provider, c.upstream_model, "cooling",
                                      f"for {max(0.0, (until or now) - now):.0f} s more"))
        return available + cooling

    def _cannot_serve(self, channel: Channel, need: Need) -> str:
        engine = self.engine_of(channel.provider)
        if need.engines is not None and engine not in need.engines:
            return f"engine {engine!r} is not served yet"
        if need.tools and not channel.provider.tools:
            return "the provider has tools: false and the request has tools"
        return ""

    def _admit_key(self, key: ApiKey, key_id: Hashable, model: str, now: float) -> None:
        found = limit_scope(key.preferences.rate_limit, model)
        if found is None:
            return
        scope, rules = found
        verdict = self.limiter.admit(("key", key_id, *scope), rules, now)
        if not isinstance(verdict, Admitted):
            raise key_limited(verdict.window.text, verdict.retry_after)

    def slots(self, channel: Channel) -> tuple[str, ...] | None:
        """The channel's slots when they are not provider keys: a Vertex channel's regions."""
        if self.engine_of(channel.provider) != "vertex":
            return None
        return vertex_regions(channel.provider, channel.upstream_model)

    def cooldown_period(self, provider: Provider) -> float:
        own = provider.preferences.cooldown_period
        if own is not None:
            return own
        glob = self.config.preferences.cooldown_period
        return DEFAULT_COOLDOWN if glob is None else glob

    def resync(self, now: float) -> tuple[str, ...] | None:
        """Once Redis is back: the ``note`` telling the fleet of the channels this process
        cooled and the keys it benched while deciding alone (None: none, or no fleet)."""
        if self.shared is None:
            return None
        cool = [[cool_name(p, alias), end - now]
                for p, alias, end in self.cooldowns.cooling(now)]
        bench = [[f"{pool_name_of(p, slots, keys)}:{i}", end - now]
                 for p, slots, keys, i, end in self.keys.benched(now)]
        if not cool and not bench:
            return None
        return self.shared.command("note", {"cool": cool, "bench": bench}, now)

    def finished(self, channel: Channel, key_index: int | None, now: float,
                 error: UpstreamError | None, other_keys_left: bool) -> list[Note]:
        """Learn from one attempt's outcome; gives what the fleet is to be told of it (with
        shared state: the same bench and cooldown, which this process also keeps)."""
        row = self.stats.setdefault((channel.provider.provider, channel.upstream_model), [0, 0])
        row[0 if error is None else 1] += 1
        notes: list[Note] = []
        if error is None:
            return notes
        slots = self.slots(channel)
        seen = verdict(error, regions=slots is not None)  # routing/retry.py
        tell = self.shared is not None
        if seen.bench_key:
            self.keys.record_failure(channel.provider, key_index, error.upstream_status, now,
                                     slots)
            bench = self.keys.bench_period(channel.provider, key_index,
                                           error.upstream_status, slots) if tell else None
            if bench is not None:
                notes.append(("bench", f"{pool_name(channel.provider, slots)}:{key_index}",
                              bench))
            if other_keys_left:
                return notes  # the key is at fault, not the channel
        if seen.cool_channel:
            period = self.cooldown_period(channel.provider)
            self.cooldowns.cool(channel.provider.provider, channel.alias, now, period)
            if tell and period > 0:
                notes.append(("cool", cool_name(channel.provider.provider, channel.alias),
                              period))
        return notes


def key_limited(window: str, retry_after: int) -> ClientError:
    """The 429 of a client key over its ``rate_limit``."""
    return ClientError(
        f"Rate limit exceeded for this API key ({window or 'rate_limit'}); "
        f"retry in {retry_after} s", status=429, type="rate_limit_error",
        code="rate_limit_exceeded", headers=(("retry-after", str(retry_after)),))


def _decision(channel: Channel, verdict: str, detail: str, index: int | None,
              slots: tuple[str, ...] | None) -> Decision:
    """A decision naming the key index, or the region when the channel's slots are regions."""
    if slots is not None and index is not None and 0 <= index < len(slots):
        return Decision(channel.provider.provider, channel.upstream_model, verdict, detail,
                        None, slots[index])
    return Decision(channel.provider.provider, channel.upstream_model, verdict, detail, index)


class RoutePlan:
    """The ``AttemptSource`` for one request (see the module docstring).

    With shared state (``Router.shared``) the decisions are the fleet's: the first
    ``next_attempt`` is a ``Consult`` of the ``route`` script (the key's limit, the order,
    the cooldowns and the first key pick in one round trip), and each later key pick a
    ``Consult`` of ``pick``; ``resume`` applies the answers. A missing answer makes the rest
    of the request decide on this process's state (``_local``)."""

    def __init__(self, router: Router, channels: list[Channel], budget: int, rng: random.Random,
                 build: BuildAttempt, explained: list[Decision],
                 pending: tuple[ApiKey, Hashable, str] | None = None) -> None:
        self._router = router
        self.channels = channels
        self._budget = budget
        self._rng = rng
        self._build = build
        self.explained = explained
        self._pos = 0  # index of the channel being tried
        self._tried_keys: dict[int, set[int]] = {}
        self._made = 0
        self._retry_after: int | None = None
        self._current: tuple[int, int | None] | None = None
        self._unbuildable: UniapiError | None = None
        #: "provider (engine)" of every channel skipped as unbuildable, in order (``refusal``)
        self._unbuildable_at: list[str] = []
        #: shared state: (key, key id, model) until the ``route`` decision is made
        self._pending = pending
        self._shared = router.shared if pending is not None else None
        self._refused: ClientError | None = None  # the key's own rate limit (shared)

    def next_attempt(self, now: float, failure: UpstreamError | None
                     ) -> Attempt | Consult | None:
        if self._made >= self._budget:
            return None
        if self._pending is not None:
            return self._route_consult(now)
        # the key's fault: the channel's next key, if the attempt had one (a channel without
        # keys, such as Bedrock's AWS credentials, has no other to try: the next channel)
        stay = (failure is not None and self._current is not None
                and self._current[1] is not None
                and verdict(failure, regions=self._router.slots(
                    self.channels[self._current[0]]) is not None).bench_key)
        if self._current is not None and not stay:
            self._pos += 1
        return self._walk(now)

    def _walk(self, now: float) -> Attempt | Consult | None:
        while self._pos < len(self.channels):
            if self._shared is not None:
                return self._pick_consult(now)
            channel = self.channels[self._pos]
            tried = self._tried_keys.setdefault(self._pos, set())
            pick = self._router.keys.pick(channel.provider, channel.upstream_model, now,
                                          self._rng, exclude=tried,
                                          slots=self._router.slots(channel))
            attempt = self._use(pick)
            if attempt is not None:
                return attempt
        return None

    def _use(self, pick: KeyPick) -> Attempt | None:
        """The attempt of the current channel with ``pick``, or None having moved past the
        channel (no usable key, or its vendor cannot take the request)."""
        channel = self.channels[self._pos]
        tried = self._tried_keys.setdefault(self._pos, set())
        slots = self._router.slots(channel)
        if pick.usable:
            try:
                attempt = self._build(channel, pick.index, self._made + 1)
            except UniapiError as exc:  # this vendor cannot take this request
                self._skip_unbuildable(channel, exc, exc.message)
                return None
            except Exception as exc:  # a translator bug must not take the server down
                self._skip_unbuildable(channel, GatewayError(
                    "internal error while translating the request", status=500,
                    code="translation_error"), f"{type(exc).__name__}")
                return None
            if pick.index is not None:
                tried.add(pick.index)
            self._made += 1
            self._current = (self._pos, pick.index)
            self.explained.append(_decision(channel, "attempt", f"#{self._made}",
                                            pick.index, slots))
            return attempt
        if pick.retry_after is not None:
            self._retry_after = min(self._retry_after or pick.retry_after, pick.retry_after)
            self.explained.append(Decision(channel.provider.provider, channel.upstream_model,
                                           "over limit",
                                           f"every key is over api_key_rate_limit; "
                                           f"frees in {pick.retry_after} s"))
        elif not tried:
            self.explained.append(Decision(channel.provider.provider, channel.upstream_model,
                                           "skipped", "every region is benched" if slots
                                           else "every key is benched"))
        self._pos += 1
        self._current = None
        return None

    # -- shared state ---------------------------------------------------------------------------

    def _route_consult(self, now: float) -> Consult:
        assert self._pending is not None and self._shared is not None
        key, key_id, model = self._pending
        algorithm = key.preferences.SCHEDULING_ALGORITHM
        if algorithm not in ("round_robin", "weighted_round_robin"):  # stateless: ordered here
            self.channels = self._router.scheduler.order(algorithm, self.channels,
                                                         (key_id, model), self._rng)
        cache = self._router.route_requests
        ident = (key_id, model, tuple((c.provider.provider, c.upstream_model, c.alias)
                                      for c in self.channels))
        text = cache.get(ident)
        if text is None:
            specs = [self._spec(c) for c in self.channels]
            text = self._shared.encode(route_request(key, key_id, model, self.channels, specs,
                                                     algorithm))
            if not any("o" in spec for spec in specs):  # the same for every request
                if len(cache) >= ROUTE_REQUESTS:
                    cache.clear()
                cache[ident] = text
        return self._shared.consult("route", text, now)

    def _pick_consult(self, now: float) -> Consult:
        assert self._shared is not None
        tried = sorted(self._tried_keys.get(self._pos, ()))
        specs = [{"pool": self._spec(c)} for c in self.channels[self._pos:]]
        return self._shared.consult("pick", {"ch": specs, "ex": tried}, now)

    def _spec(self, channel: Channel) -> dict:
        return pool_spec(channel.provider, channel.upstream_model, self._router.slots(channel),
                         self._rng)

    def resume(self, replies: list | None, now: float) -> Attempt | Consult | None:
        assert self._shared is not None
        answer = self._shared.answer(replies)
        if answer is None:  # Redis is away or slow: this request decides here from now on
            self._shared = None
            if self._pending is not None:
                key, key_id, model = self._pending
                self._pending = None
                try:
                    self.channels = self._router.arrange(key, key_id, model, self.channels,
                                                         now, self._rng, self.explained)
                except ClientError as exc:
                    self._refused = exc
                    return None
            return self._walk(now)
        if self._pending is not None:
            key, _, model = self._pending
            self._pending = None
            if "rl" in answer:
                found = limit_scope(key.preferences.rate_limit, model)
                rules = found[1] if found is not None else ()
                at = int(answer.get("wi", 0))
                self._refused = key_limited(rules[at].text if 0 <= at < len(rules) else "",
                                            int(answer["rl"]))
                return None
            base = self.channels
            self.channels = [base[int(i)] for i in as_list(answer.get("o"))]
            for c, left in zip(self.channels, as_list(answer.get("cl"))):
                if left:
                    self.explained.append(Decision(c.provider.provider, c.upstream_model,
                                                   "cooling", f"for {max(0.0, left):.0f} s more"))
        for wait in as_list(answer.get("sk")):  # channels whose keys are all over or benched
            self._use(KeyPick(None, int(wait)) if wait else KeyPick(None))
        position = answer.get("p")
        if position is None or self._pos >= len(self.channels):
            self._pos = len(self.channels)
            return None
        index = answer.get("i")
        attempt = self._use(KeyPick(int(index)) if index is not None
                            else KeyPick(None, None, usable=True))
        return attempt if attempt is not None else self._walk(now)

    def _skip_unbuildable(self, channel: Channel, error: UniapiError, detail: str) -> None:
        self.explained.append(Decision(channel.provider.provider, channel.upstream_model,
                                       "skipped", f"cannot translate the request: {detail}"))
        self._unbuildable = self._unbuildable or error
        name = f"{channel.provider.provider} ({self._router.engine_of(channel.provider)})"
        if name not in self._unbuildable_at:
            self._unbuildable_at.append(name)
        self._pos += 1
        self._current = None

    def _unbuildable_refusal(self, first: UniapiError) -> UniapiError:
        """The first unbuildable error (a channel mismatch: its status, type and code), its
        message extended with every channel tried (issue 20). Not a ``ClientError`` (a
        translator bug's 500) or without a channel named: ``first`` as it is."""
        if type(first) is not ClientError or not self._unbuildable_at:
            return first
        return ClientError(f"{first.message} — no channel can take this request; tried: "
                           f"{', '.join(self._unbuildable_at)}", status=first.status,
                           type=first.type, code=first.code, headers=first.headers)

    def attempt_finished(self, attempt: Attempt, now: float, error: UpstreamError | None
                         ) -> tuple[tuple[str, ...], ...]:
        assert self._current is not None
        pos, key_index = self._current
        channel = self.channels[pos]
        slots = self._router.slots(channel)
        total = len(channel.provider.api) if slots is None else len(slots)
        others = total - len(self._tried_keys.get(pos, ())) > 0
        if error is not None:
            self.explained.append(_decision(
                channel, "failed", f"{error.kind} {error.upstream_status or ''}".strip(),
                key_index, slots))
        notes = self._router.finished(channel, key_index, now, error, others)
        shared = self._router.shared
        if not notes or shared is None:
            return ()
        return (shared.command("note", {
            "cool": [[name, period] for kind, name, period in notes if kind == "cool"],
            "bench": [[name, period] for kind, name, period in notes if kind == "bench"]},
            now),)

    def refusal(self) -> UniapiError:
        """Why no attempt could be made at all."""
        if self._refused is not None:
            return self._refused
        if self._unbuildable is not None:
            return self._unbuildable_refusal(self._unbuildable)
        if self._retry_after is not None:
            return ClientError(
                f"All upstream keys are over their rate limits; retry in {self._retry_after} s",
                status=429, type="rate_limit_error", code="upstream_keys_rate_limited",
                headers=(("retry-after", str(self._retry_after)),))
        return GatewayError("No upstream channel is available right now", status=503,
                            code="no_channel_available")
