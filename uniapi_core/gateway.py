"""The gateway: one object that owns the routing state and answers requests.

``Gateway.handle(...)`` takes a complete client request and returns either a ``Respond``
(a whole answer the transport writes as is) or a ``Relay`` (a state machine the transport
drives until it is finished). Everything a transport would otherwise have to decide — paths,
auth, JSON validation, routing, which vendor protocol, timeouts, ids — is decided here, from
the ``now``/``wall`` values and the ``entropy`` the caller passes in. No I/O, no clock.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import random
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote
from functools import partial

import attrs

from .config.model import ApiKey, Config, ModelEntry, Provider
from .errors import ClientError, GatewayError, UniapiError, to_openai_error
from .jsonutil import dumps, parse_request_json
from .relay.machine import JSON_HEADERS, Relay
from .routing.explain import explain_route
from .routing.plan import Attempt
from .routing.resolve import Catalog, Channel, key_models, resolve
from .routing.router import Need, Router
from .routing.shared import SharedState, fleet_of
from .routing.timeouts import model_timeout
from .moderation import (DEFAULT_MODERATION_MODEL, flagged_categories, last_user_text,
                         moderation_model)
from .multipart import parse_form
from .request import ChatRequest, parse_openai_chat
from .vendors import (ENDPOINTS, TRANSLATORS, UPLOADS, detect_engine, discovery_request,
                      parse_discovery)
from .vendors.openai import Upload
from .vendors.base import ChatContext, ImagesNeeded, UpstreamRequest
from .ops.metrics import Metrics, summed
from .ops.stats import CLOSE_STORE, StatsQuery, StatsQueryError, StatsQueue, StoreConfig, \
    TokenUsageQuery, migrate_work, new_instance_id
from .vendors.dialects import dialect_for
from .vendors.gauth import ServiceAccount, TokenCache, service_account
from .vendors.messages_native import build_count_tokens_exchange
from .fronts.front import MESSAGES_PATHS, FrontCall, MessagesFront, is_gemini_path, \
    native_exchange, reads_own_urls, writer
from .fronts.common import url_filename
from .fronts.messages import chat_request_from_messages, estimate_input_tokens
from .fronts.responses import chat_request_from_responses, output_items_of
from .ops.responses_store import StoredResponse, conversation, delete_work, deleted, \
    expire_work, load_work, loaded, save_work
from .fronts.gemini import chat_request_from_gemini, count_tokens_response, estimate_tokens, \
    model_entry, models_list, parse_model_path

__all__ = ["Settings", "Respond", "ChatCall", "ReloadCall", "Routed", "Gateway",
           "ADMIN_ONLY", "INLINE_IMAGE_ENGINES", "INLINE_DOCUMENT_ENGINES"]

#: the Prometheus scrape path, and its text exposition format
METRICS = "/metrics"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ADMIN_ONLY = frozenset({"/v1/stats", "/v1/generate-api-key", "/v1/reload"})
#: the longest the transport's stats flush loop sleeps (seconds)
STATS_POLL = 1.0
#: how often stored responses past their TTL are deleted (seconds; each time at most
#: ``responses_store.expire_work``'s limit, again sooner while more remain)
EXPIRE_EVERY = 3600.0
#: stored responses also kept in memory, so that a continuation right after never misses:
#: at most this many, each at most ``RECENT_BYTES / RECENT_RESPONSES`` of JSON (a larger one is
#: read back from the store)
RECENT_RESPONSES = 256
RECENT_BYTES = 64 << 20
#: ``GET``/``DELETE /v1/responses/{id}``
RESPONSES_PREFIX = "/v1/responses/"
#: GET endpoints whose handler reads the query string (``params``) rather than a body
QUERY_PATHS = frozenset({"/v1/stats", "/v1/token_usage"})
#: engines that speak the OpenAI chat protocol: they get the client's dict as it came; every
#: other engine builds from the request model (``request.py``), parsed once per request
PASSTHROUGH_ENGINES = frozenset({"gpt", "openrouter", "azure"})
#: engines that need image bytes inline: remote image URLs are fetched for them (REQ-4)
INLINE_IMAGE_ENGINES = frozenset({"claude", "gemini", "vertex", "aws"})
#: engines that need a remote document's bytes (a ``file`` part's ``file_url``): fetched for
#: them like images; first-party Anthropic takes the URL itself (a ``url`` document source),
#: and Cloudflare reads no documents
INLINE_DOCUMENT_ENGINES = frozenset({"gpt", "openrouter", "azure", "gemini", "vertex", "aws",
                                     "cohere"})
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


@attrs.frozen(kw_only=True)
class Settings:
    """Values from the environment and command line, read by the transport's CLI."""

    #: env ``TIMEOUT``: the last fallback of the per-model timeout chain
    env_timeout: float | None = None
    #: biggest upstream body read whole (non-streamed answers)
    max_upstream_body: int = 64 << 20
    #: remote image fetching (R11): private/loopback addresses and any port (tests only),
    #: plain-http image URLs
    fetch_allow_private: bool = False
    fetch_allow_http: bool = False
    #: ``--workers N``: the directory where every worker publishes its metrics snapshot, so that
    #: a scrape answers with the sum (None: one process)
    metrics_dir: str | None = None
    #: where request rows go (``ops/stats.StoreConfig``, from ``DB_*`` env); None or disabled:
    #: no stats store (``/v1/stats`` answers ``{"stats": {}}``, ``/v1/token_usage`` 503)
    stats_store: StoreConfig | None = None
    #: ``--no-metrics``: nothing is counted for ``GET /metrics``, which answers 404
    metrics: bool = True
    #: ``--log-format off``: no access log (no ``Served`` action)
    access_log: bool = True
    #: ``--redis-url`` / ``REDIS_URL``: where the fleet's shared routing state lives
    #: (``redis/url.RedisTarget``; docs/scale-out.md); None: this process's own state
    redis: Any = None


@attrs.frozen
class Respond:
    """A complete response."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @classmethod
    def json(cls, status: int, obj: Any, headers: tuple[tuple[str, str], ...] = ()) -> "Respond":
        return cls(status, JSON_HEADERS + headers, dumps(obj))

    @classmethod
    def error(cls, exc: UniapiError, headers: tuple[tuple[str, str], ...] = ()) -> "Respond":
        return cls(exc.status, JSON_HEADERS + exc.headers + headers, to_openai_error(exc))


@attrs.frozen
class ScrapeCall:
    """``GET /metrics`` under ``--workers``: the request machine has the snapshot files of
    ``directory`` read (``Scrape``) and answers with ``answer(files)``, the sum."""

    directory: str
    answer: Callable[[Mapping[str, bytes]], Respond]


@attrs.frozen
class DbCall:
    """An answer that needs the stats store first: the request machine has ``work`` run
    (``Query``) and answers 200 with ``answer(results)``, or 503 when the store failed."""

    work: Any  # ops.stats.DbWork
    answer: Callable[[Any], Any]
    extra: tuple[tuple[str, str], ...] = ()


@attrs.frozen
class ReloadCall:
    """``POST /v1/reload``: the request machine has the process's config hot-reloaded
    (``Reload``) and answers with ``answer(error)``."""

    extra: tuple[tuple[str, str], ...] = ()

    def answer(self, error: str | None) -> Respond:
        """200 ``{"status": "reloaded"}``; else 400 in OpenAI's error shape, its message the
        reason (a broken config's line-numbered problems), the old config serving on."""
        if error is None:
            return Respond.json(200, {"status": "reloaded"}, self.extra)
        return Respond.error(ClientError(f"the config was not reloaded: {error.strip()}",
                                         code="config_refused"), self.extra)


@attrs.frozen(kw_only=True)
class ChatCall:
    """A chat request that passed dispatch, auth and validation, as data. The request machine
    (``request_machine.py``) takes it through its steps, each a call back into the gateway with it:
    ``moderation_check``/``moderation_verdict`` (``ENABLE_MODERATION``), ``images_needed``
    (remote images a vendor needs inline), ``route_chat`` (the relay, and the Vertex tokens
    it needs first)."""

    key: ApiKey
    req: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool
    #: response headers every answer to this request carries (``x-request-id``)
    extra: tuple[tuple[str, str], ...]
    moderate: bool
    #: a request that came in on another front (``/v1/messages``): the client's own body,
    #: sent as it is to a channel that speaks the same protocol, and what the front's writer
    #: needs (``fronts/front.py``); None: an OpenAI chat request
    front: FrontCall | None = None


@attrs.frozen
class Routed:
    """A chat relay, ready; ``accounts`` are the Vertex service accounts (with the proxy to
    reach their token endpoint) whose access token ``Gateway.tokens`` does not hold fresh: the
    request machine fetches them, or waits for another request's fetch, before the relay
    starts. An attempt whose token could not be had is skipped with the token endpoint's
    error (502), so another channel may still answer."""

    relay: "Relay"
    accounts: tuple[tuple[ServiceAccount, str | None], ...] = ()


def _alnum(entropy: random.Random, n: int) -> str:
    """``n`` characters drawn uniformly from ``_ALNUM``: one ``randrange`` written in base 62
    (24 ``choice`` calls cost ~15 µs a request)."""
    x = entropy.randrange(62 ** n)
    out = []
    for _ in range(n):
        x, r = divmod(x, 62)
        out.append(_ALNUM[r])
    return "".join(out)


T = TypeVar("T")


def _per_provider(compute: Callable[[Provider], T]) -> Callable[[Provider], T]:
    """``compute`` remembered per provider object (a config's providers are immutable;
    ``detect_engine`` and ``dialect_for`` parse the base URL, and a request asks up to five
    times)."""
    memo: dict[int, tuple[Provider, T]] = {}

    def remembered(provider: Provider) -> T:
        hit = memo.get(id(provider))
        if hit is not None and hit[0] is provider:
            return hit[1]
        value = compute(provider)
        if len(memo) >= 4096:  # providers made on the fly (never in practice): stay bounded
            memo.clear()
        memo[id(provider)] = (provider, value)
        return value

    return remembered


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class Gateway:
    """Routing state plus request dispatch for one loaded config."""

    def __init__(self, config: Config, *, settings: Settings | None = None,
                 entropy: random.Random | None = None,
                 discovered: Mapping[str, tuple[ModelEntry, ...]] | None = None) -> None:
        self.config = config
        self.settings = settings or Settings()
        self.entropy = entropy if entropy is not None else random.Random(0)
        self.catalog = Catalog(config, discovered)
        # R10: only digests of client keys are kept for lookup
        self._keys: dict[bytes, ApiKey] = {_digest(k.api): k for k in config.api_keys}
        admins = [k for k in config.api_keys if k.role and "admin" in k.role]
        self._admins = {_digest(k.api) for k in (admins or config.api_keys[:1])}
        self._engine = _per_provider(detect_engine)
        self._labels: dict[str, str] = {}  # key -> its digest label (keys come from the config)
        #: the Prometheus metrics (``GET /metrics``); fed by the request machine's records
        self.metrics = Metrics()
        store = self.settings.stats_store
        #: the stats rows waiting for the store (None: no store); the transport flushes it
        self.stats: StatsQueue | None = None
        if store is not None and store.enabled:
            self.stats = StatsQueue(store.dialect, new_instance_id(self.entropy))
        #: a finished request is recorded (``ServedRecord``): for the access log, the metrics
        #: or the stats store; with all three off nothing is built for it
        self.log_requests = (self.settings.access_log or self.settings.metrics
                             or self.stats is not None)
        self._reported = (0, 0)  # stats rows written and dropped, as last given to metrics
        #: the responses stored last (``/v1/responses``), answered from here until their row
        #: is surely written: a client continuing at once must not miss its own response
        self._recent: collections.OrderedDict[str, StoredResponse] = collections.OrderedDict()
        self._expire_at = 0.0  # when expired stored responses are next deleted
        #: (now, wall) of the last request: the wall clock the expiry compares with
        self._wall_seen: tuple[float, float] | None = None
        self._migration: Any = None  # the start-up schema work, once asked for
        self._schema_ready = False
        self._store_closed = False  # CLOSE_STORE given (at shutdown)
        self._dialect = _per_provider(dialect_for)
        self.router = Router(config, self.catalog, self._engine)
        if self.settings.redis is not None:  # the fleet's routing state (routing/shared.py)
            self.router.shared = SharedState(fleet_of([k.api for k in config.api_keys]),
                                             config.preferences.redis_timeout)
        #: Vertex service-account access tokens (single-flight refresh; gauth.TokenCache)
        self.tokens = TokenCache()
        # error_triggers as they appear inside JSON text (escaped, without the quotes)
        self._triggers = tuple(dumps(t)[1:-1] for t in config.preferences.error_triggers if t)

    # -- hot reload ----------------------------------------------------------------------------

    def reloaded(self, config: Config) -> "Gateway":
        """A gateway for ``config`` (a hot reload) that goes on where this one is.

        Carried over, as the same objects: the routing state (the scheduler's rotations, the
        channel cooldowns, the provider key pools with their windows, benches and cursors, the
        client keys' rate-limit windows, the routing counters), the metrics, the stats queue
        (no queued row is lost; the transport flushes it whichever gateway is current), the
        Vertex token cache, the key labels and the entropy. The state is keyed by provider
        name and by the digest of a client key, so whatever is unchanged finds its state
        again; a provider whose ``api`` list changed starts its pool afresh (``KeyPools``).
        Models discovered for a provider that is unchanged and still has no ``model`` list are
        kept until discovery runs again for the new gateway (a failed discovery then loses
        nothing). Auth, routing and every answer use ``config``: a removed key is refused at
        once. This gateway is left as it was, so the requests that started on it finish on
        it."""
        new = Gateway(config, settings=self.settings, entropy=self.entropy,
                      discovered=self._rediscovered(config))
        old, router = self.router, new.router
        router.scheduler, router.cooldowns, router.keys = old.scheduler, old.cooldowns, old.keys
        router.limiter, router.stats = old.limiter, old.stats
        if old.shared is not None and router.shared is not None:  # the fallback counts go on
            router.shared.degraded, router.shared.fallbacks = (old.shared.degraded,
                                                               old.shared.fallbacks)
        new.metrics, new.stats, new.tokens = self.metrics, self.stats, self.tokens
        new._labels, new._reported, new._migration = self._labels, self._reported, self._migration
        new._schema_ready = self._schema_ready
        new._recent, new._expire_at = self._recent, self._expire_at
        new._wall_seen = self._wall_seen
        return new

    def _rediscovered(self, config: Config) -> dict[str, tuple[ModelEntry, ...]]:
        """The discovered models still true of ``config``: its providers without a model
        list that are defined exactly as before."""
        before = self.catalog.providers
        return {p.provider: self.catalog.discovered[p.provider] for p in config.providers
                if p.model is None and before.get(p.provider) == p
                and p.provider in self.catalog.discovered}

    # -- model discovery (the transport fetches; the core decides what and reads the answer) --

    def discovery_requests(self) -> list[tuple[str, UpstreamRequest, str | None]]:
        """What to fetch before serving: one request per provider without a model list, with
        the proxy its chat requests would use."""
        out = []
        for p in self.config.providers:
            if p.model is None:
                req = discovery_request(p)
                if req is not None:
                    out.append((p.provider, req,
                                p.preferences.proxy or self.config.preferences.proxy))
        return out

    def discovered(self, results: Mapping[str, tuple[int, bytes] | str]) -> list[str]:
        """Take discovery answers (status and body, or an error text) and rebuild the catalog.

        Returns warnings for the providers that found nothing."""
        found: dict[str, tuple[ModelEntry, ...]] = dict(self.catalog.discovered)
        warnings = []
        for name, result in results.items():
            if isinstance(result, str):
                warnings.append(f"provider {name}: model discovery failed: {result}")
                continue
            status, body = result
            provider = self.catalog.providers[name]
            try:
                ids = parse_discovery(provider, status, body)
            except ValueError as exc:
                warnings.append(f"provider {name}: model discovery failed: {exc}")
                continue
            found[name] = tuple(ModelEntry(upstream=i, alias=i) for i in ids)
        self.catalog = self.router.catalog = Catalog(self.config, found)
        return warnings

    # -- route explanation (``uniapi route``) ------------------------------------------------

    def key_label(self, key: str) -> str:
        """A key's name in logs, stats and metrics: ``k-`` + 12 hex digits of its SHA-256."""
        label = self._labels.get(key)
        if label is None:
            label = "k-" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]
            if len(self._labels) < 65536:  # bounded, whatever is asked
                self._labels[key] = label
        return label

    def explain_route(self, token: str, model: str, *, requests: int, now: float,
                      tools: bool = False) -> str:
        """``routing/explain.py``'s text for the key ``token`` (found by digest, as a request
        would be)."""
        key = self._keys.get(_digest(token))
        if key is None:
            return "no api key in the config matches the given key\n"
        return explain_route(self.router, key, _digest(key.api), model, requests=requests,
                             now=now, entropy=self.entropy, tools=tools,
                             engines=frozenset(TRANSLATORS))

    # -- request dispatch --------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: tuple[tuple[str, str], ...],
               body: bytes, *, now: float, wall: float) -> Any:
        request_id = f"{self.entropy.getrandbits(128):032x}"
        extra = (("x-request-id", request_id),)
        self._wall_seen = (now, wall)
        try:
            return self._dispatch(method, target, headers, body, now, wall, extra)
        except UniapiError as exc:
            return Respond.error(exc, extra)

    def _dispatch(self, method: str, target: str, headers: tuple[tuple[str, str], ...],
                  body: bytes, now: float, wall: float,
                  extra: tuple[tuple[str, str], ...]) -> Any:
        path = target.split("?", 1)[0]
        if len(path) > 1:
            path = path.rstrip("/")
        route = _ROUTES.get(path)
        if path.startswith("/v1/models") and method == "GET" and any(
                name.startswith("x-goog-") for name, _ in headers):
            # google-genai lists and gets models under /v1 (its default with a base_url):
            # a Google client gets Google's shapes there, an OpenAI client OpenAI's
            return self._gemini(method, path, target, headers, body, now, wall, extra)
        if route is None and path.startswith(RESPONSES_PREFIX) and len(path) > len(
                RESPONSES_PREFIX):
            return self._stored_response(method, path, self._authenticate(headers), now, wall,
                                         extra)
        if route is None and is_gemini_path(path):
            return self._gemini(method, path, target, headers, body, now, wall, extra)
        if route is None:
            raise ClientError(f"Unknown path {path!r}", status=404, code="unknown_url")
        methods, needs_key, handler = route
        if method not in methods:
            raise ClientError(f"Method {method} is not allowed on {path}", status=405,
                              code="method_not_allowed",
                              headers=(("allow", ", ".join(sorted(methods))),))
        guarded = path in ADMIN_ONLY or (path == METRICS
                                         and not self.config.preferences.metrics_public)
        key = self._authenticate(headers) if needs_key or guarded else None
        if guarded and _digest(key.api) not in self._admins:  # type: ignore[union-attr]
            raise ClientError("This endpoint is for admin keys only", status=403,
                              type="permission_error", code="admin_only")
        if path in UPLOADS:
            return self._upload(path, key, headers, body, now, wall, extra)  # type: ignore
        if path in JSON_BODIES:
            _check_json_media_type(headers)
        if path in QUERY_PATHS:
            return handler(self, key, _params(target), now, wall, extra)
        if path in FRONT_PATHS:
            return handler(self, key, body, headers, now, wall, extra)
        return handler(self, key, body, now, wall, extra)

    def _authenticate(self, headers: tuple[tuple[str, str], ...],
                      query_key: str | None = None) -> ApiKey:
        """The key of ``Authorization: Bearer``, else ``x-api-key`` (Anthropic's clients),
        else ``x-goog-api-key`` or ``query_key`` (``?key=``: Google's clients)."""
        token = None
        for name, value in headers:
            if name == "authorization":
                scheme, _, rest = value.strip().partition(" ")
                if scheme.lower() == "bearer" and rest.strip():
                    token = rest.strip()
                break
        if token is None:
            for name, value in headers:
                if name in ("x-api-key", "x-goog-api-key") and value.strip():
                    token = value.strip()
                    break
        if token is None and query_key:
            token = query_key
        if token is None:
            raise ClientError("Missing API key: send 'Authorization: Bearer <key>'",
                              status=401, code="missing_api_key")
        presented = _digest(token)
        found = self._keys.get(presented)
        if found is None or not hmac.compare_digest(_digest(found.api), presented):
            raise ClientError("Invalid API key", status=401, code="invalid_api_key")
        return found

    # -- endpoints ---------------------------------------------------------------------------

    def _healthz(self, key: ApiKey | None, body: bytes, now: float, wall: float,
                 extra: tuple[tuple[str, str], ...]) -> Respond:
        return Respond.json(200, {"status": "ok"}, extra)

    def _metrics(self, key: ApiKey | None, body: bytes, now: float, wall: float,
                 extra: tuple[tuple[str, str], ...]) -> Respond | ScrapeCall:
        """This process's metrics; under ``--workers``, summed with the other workers'
        published snapshots (a ``ScrapeCall``: the transport reads them first)."""
        if not self.settings.metrics:
            return Respond.error(UniapiError("metrics are off (--no-metrics)", status=404,
                                             type="invalid_request_error", code="not_found"),
                                 extra)
        self._gauges_now(now)
        if self.settings.metrics_dir is None:
            return self._render({}, extra)
        return ScrapeCall(self.settings.metrics_dir, partial(self._render, extra=extra))

    def _render(self, others: Mapping[str, bytes], extra: tuple[tuple[str, str], ...]
                ) -> Respond:
        return Respond(200, (("content-type", METRICS_TYPE),) + extra,
                       summed(self.metrics, others).render().encode())

    def metrics_snapshot(self, now: float) -> bytes:
        """This worker's metrics as published for the others' scrapes (``--workers``)."""
        self._gauges_now(now)
        return dumps(self.metrics.snapshot())

    def _gauges_now(self, now: float) -> None:
        """The gauges read from state at a scrape: cooldowns, stats rows, shared state."""
        self.metrics.set_cooldowns(self.router.cooldowns.active(now))
        self.stats_counts()
        if (shared := self.router.shared) is not None:
            self.metrics.shared_state(shared.degraded, shared.fallbacks)

    def _models(self, key: ApiKey, body: bytes, now: float, wall: float,
                extra: tuple[tuple[str, str], ...]) -> Respond:
        data = [{"id": name, "object": "model", "created": int(wall), "owned_by": "uniapi"}
                for name in key_models(self.catalog, key)]
        return Respond.json(200, {"object": "list", "data": data}, extra)

    def _generate_key(self, key: ApiKey, body: bytes, now: float, wall: float,
                      extra: tuple[tuple[str, str], ...]) -> Respond:
        token = "sk-" + "".join(self.entropy.choice(_ALNUM) for _ in range(48))
        return Respond.json(200, {"api_key": token}, extra)

    def _stats(self, key: ApiKey, params: Mapping[str, str], now: float, wall: float,
               extra: tuple[tuple[str, str], ...]) -> Respond | DbCall:
        """``GET /v1/stats?hours=N`` from the store; without one, uni-api's ``{"stats": {}}``."""
        if self.stats is None:
            return Respond.json(200, {"stats": {}}, extra)
        try:
            query = StatsQuery.from_params(params, wall)
        except StatsQueryError as exc:
            raise ClientError(exc.message, status=exc.status, code="invalid_query") from None
        return DbCall(query.work(self.stats.dialect), query.answer, extra)

    def _token_usage(self, key: ApiKey, params: Mapping[str, str], now: float, wall: float,
                     extra: tuple[tuple[str, str], ...]) -> DbCall:
        """``GET /v1/token_usage``: a key's own tokens per model; an admin's, every key's (or
        ``api_key_param``'s). Keys are shown by their digest labels, never themselves."""
        if self.stats is None:
            raise GatewayError("token usage needs the stats database, which is off "
                               "(DISABLE_DATABASE)", status=503, code="stats_disabled")
        try:
            query = TokenUsageQuery.from_params(
                params, wall, own_key=self.key_label(key.api),
                admin=_digest(key.api) in self._admins, digest=self.key_label)
        except StatsQueryError as exc:
            raise ClientError(exc.message, status=exc.status, code="invalid_query") from None
        return DbCall(query.work(self.stats.dialect), query.answer, extra)

    def stats_start(self, wall: float) -> Any:
        """The work a transport runs on its stats store before anything else: the schema at
        its newest version (``ops/stats.migrate_work``); None without a store."""
        if self.stats is None:
            return None
        self._migration = migrate_work(self.stats.dialect, wall)
        return self._migration

    def stats_next(self, now: float, stopping: bool) -> Any:
        """The next batch of stats rows for the store, or None (``stopping``: at shutdown,
        whatever is left, ignoring batch sizes and waits)."""
        if self.stats is None:
            return None
        if not self._schema_ready and self._migration is not None and not stopping \
                and self.stats.due(now):  # the store was down at start: the schema first
            return self._migration
        if self._schema_ready and not stopping and now >= self._expire_at \
                and self._wall_seen is not None:  # stored responses past their TTL
            self._expire_at = now + EXPIRE_EVERY
            mono, wall = self._wall_seen  # the wall clock, from the last request's pair
            self.stats.add_work(expire_work(self.stats.dialect, wall + (now - mono)))
        work = self.stats.take(now, flush=stopping)
        if work is None and stopping and not self._store_closed:
            self._store_closed = True
            return CLOSE_STORE  # all written: the session lets go of its connection
        return work

    def stats_done(self, work: Any, result: list | str, now: float) -> None:
        """The transport ran ``work`` (``stats_start``'s or ``stats_next``'s): its rows, or
        the error's text."""
        failed = result if isinstance(result, str) else None
        if self.stats is None or work is CLOSE_STORE:
            return
        if work is self._migration:  # the schema: tried again before the next batch
            self._schema_ready = failed is None
            self.stats.last_error = failed or self.stats.last_error
        else:
            self.stats.done(work, failed is None, failed, now)

    def stats_deadline(self, now: float) -> float:
        """When the transport's flush loop should next look at ``stats``: a batch's deadline,
        else a second from ``now`` (rows added since are due by then)."""
        due = self.stats.next_deadline() if self.stats is not None else None
        return min(due, now + STATS_POLL) if due is not None else now + STATS_POLL

    def stats_counts(self) -> None:
        """Give the metrics the stats rows written and dropped since the last call."""
        if self.stats is not None:
            written, dropped = self.stats.written, self.stats.dropped + self.stats.failed
            self.metrics.stats_rows(written - self._reported[0], dropped - self._reported[1])
            self._reported = (written, dropped)

    def _reload(self, key: ApiKey, body: bytes, now: float, wall: float,
                extra: tuple[tuple[str, str], ...]) -> ReloadCall:
        return ReloadCall(extra)

    def _chat(self, key: ApiKey, body: bytes, now: float, wall: float,
              extra: tuple[tuple[str, str], ...]) -> ChatCall:
        req = parse_request_json(body)
        if not isinstance(req, dict):
            raise ClientError("request body must be a JSON object", code="invalid_json")
        model = req.get("model")
        if not isinstance(model, str) or not model:
            raise ClientError("'model' is required and must be a string", code="invalid_model",
                              status=400)
        messages = req.get("messages")
        if not isinstance(messages, list) or not messages or not all(
                isinstance(m, dict) for m in messages):
            raise ClientError("'messages' must be a non-empty list of message objects",
                              code="invalid_messages")
        stream = req.get("stream", False)
        if stream is None:
            stream = False
        if not isinstance(stream, bool):
            raise ClientError("'stream' must be a boolean", code="invalid_stream")
        options = req.get("stream_options")
        include_usage = bool(isinstance(options, dict) and options.get("include_usage") is True)
        return ChatCall(key=key, req=req, model=model, stream=stream,
                        include_usage=include_usage, extra=extra,
                        moderate=bool(key.preferences.ENABLE_MODERATION))

    def _messages(self, key: ApiKey, body: bytes, headers: tuple[tuple[str, str], ...],
                  now: float, wall: float, extra: tuple[tuple[str, str], ...]) -> ChatCall:
        """``POST /v1/messages`` (Anthropic Messages): translated to an OpenAI chat request
        and routed as one; a channel that speaks Messages gets the client's body instead."""
        raw = parse_request_json(body)
        call = chat_request_from_messages(raw)  # a 400 naming the JSON path when it is bad
        return _front_call(key, call, extra,
                           FrontCall(kind="messages", body=raw, beta=_betas(headers)))

    def _responses(self, key: ApiKey, body: bytes, headers: tuple[tuple[str, str], ...],
                   now: float, wall: float, extra: tuple[tuple[str, str], ...]
                   ) -> ChatCall | DbCall:
        """``POST /v1/responses`` (OpenAI Responses): translated to an OpenAI chat request and
        routed as one; a channel that speaks Responses gets the client's body instead. With
        ``previous_response_id`` the stored response is read first (``_continued``)."""
        raw = parse_request_json(body)
        call = chat_request_from_responses(raw)  # a 400 naming the JSON path when it is bad
        previous = call.previous_response_id
        if previous is None:
            return self._responses_call(key, raw, call, wall, extra)
        if self.stats is None:
            raise ClientError("'previous_response_id' needs the stats store, which is off "
                              "(DISABLE_DATABASE): send the whole conversation in 'input'",
                              code="previous_response_not_supported", status=400)
        label = self.key_label(key.api)
        recent = self._recent.get(previous)
        if recent is not None and recent.client_key == label and recent.expires > wall:
            return self._continued(key, raw, call, extra, wall, recent)
        return DbCall(load_work(self.stats.dialect, previous, label, wall),
                      lambda rows: self._continued(key, raw, call, extra, wall, loaded(rows)),
                      extra)

    def _continued(self, key: ApiKey, raw: dict[str, Any], first: Any,
                   extra: tuple[tuple[str, str], ...], wall: float,
                   stored: StoredResponse | None) -> ChatCall:
        """A request continuing ``stored``: its conversation, then the request's own input
        (``first``: the request parsed alone)."""
        previous = first.previous_response_id
        if stored is None:
            raise ClientError(f"Previous response with id '{previous}' not found.",
                              status=404, code="previous_response_not_found")
        body = {k: v for k, v in raw.items() if k != "previous_response_id"}
        body["input"] = conversation(stored) + first.input_items
        call = attrs.evolve(chat_request_from_responses(body), previous_response_id=previous)
        return self._responses_call(key, body, call, wall, extra)

    def _responses_call(self, key: ApiKey, body: dict[str, Any], call: Any, wall: float,
                        extra: tuple[tuple[str, str], ...]) -> ChatCall:
        return _front_call(key, call, extra, FrontCall(kind="responses", body=body, call=call,
                                                       created=int(wall)))

    def response_finished(self, call: ChatCall, final: dict[str, Any] | None,
                          wall: float) -> None:
        """A ``/v1/responses`` answer is over: store it for ``previous_response_id`` (with
        the stats store on and ``store`` not false); too large or unstorable: not kept."""
        front = call.front
        if final is None or front is None or front.kind != "responses" or self.stats is None \
                or not front.call.store:
            return
        label = self.key_label(call.key.api)
        ttl = self.config.preferences.responses_ttl
        try:
            work = save_work(self.stats.dialect, response_id=final["id"], client_key=label,
                             created=wall, ttl=ttl, model=call.model,
                             status=str(final.get("status")), input_items=front.call.input_items,
                             output_items=output_items_of(final), response=final,
                             previous_id=front.call.previous_response_id)
        except (ValueError, TypeError, KeyError):
            return
        size = sum(len(v) for st in work.statements if isinstance(st.params, tuple)
                   for v in st.params if isinstance(v, str))
        if self.stats.add_work(work) and size <= RECENT_BYTES // RECENT_RESPONSES:
            self._recent[final["id"]] = StoredResponse(
                id=final["id"], client_key=label, created=wall, expires=wall + ttl,
                model=call.model, status=str(final.get("status")),
                input_items=list(front.call.input_items), output_items=output_items_of(final),
                response=final, previous_id=front.call.previous_response_id)
            while len(self._recent) > RECENT_RESPONSES:
                self._recent.popitem(last=False)

    def _stored_response(self, method: str, path: str, key: ApiKey, now: float, wall: float,
                         extra: tuple[tuple[str, str], ...]) -> Respond | DbCall:
        """``GET`` or ``DELETE /v1/responses/{id}``: one of this key's stored responses."""
        response_id = unquote(path[len(RESPONSES_PREFIX):])
        missing = ClientError(f"Response with id '{response_id}' not found.", status=404,
                              code="response_not_found")
        if self.stats is None:
            raise missing
        label = self.key_label(key.api)
        recent = self._recent.get(response_id)
        if method == "GET":
            if recent is not None and recent.client_key == label and recent.expires > wall:
                return Respond.json(200, recent.response, extra)

            def found(rows: Any) -> Any:
                stored = loaded(rows)
                if stored is None:
                    raise missing
                return stored.response
            return DbCall(load_work(self.stats.dialect, response_id, label, wall), found, extra)
        if method != "DELETE":
            raise ClientError(f"Method {method} is not allowed on {path}", status=405,
                              code="method_not_allowed", headers=(("allow", "DELETE, GET"),))
        if recent is not None and recent.client_key == label:
            self._recent.pop(response_id, None)

        def gone(rows: Any) -> Any:
            if not deleted(rows) and not (recent is not None and recent.client_key == label):
                raise missing
            return {"id": response_id, "object": "response", "deleted": True}
        return DbCall(delete_work(self.stats.dialect, response_id, label, now=wall), gone,
                      extra)

    def _gemini(self, method: str, path: str, target: str,
                headers: tuple[tuple[str, str], ...], body: bytes, now: float, wall: float,
                extra: tuple[tuple[str, str], ...]) -> Any:
        """The Gemini-native front: ``POST …/models/{model}:generateContent``,
        ``:streamGenerateContent`` (``?alt=sse``, else one JSON array) and ``:countTokens``,
        ``GET …/models`` and ``GET …/models/{model}``, under ``/v1beta`` or ``/v1``."""
        params = _params(target)
        key = self._authenticate(headers, params.get("key"))
        parsed = parse_model_path(path)
        if parsed is None:
            if path.rstrip("/") in ("/v1beta/models", "/v1/models") and method == "GET":
                return Respond.json(200, models_list(key_models(self.catalog, key)), extra)
            raise ClientError(f"Unknown path {path!r}", status=404, code="unknown_url")
        model, verb = parsed
        if verb == "":
            if method != "GET":
                raise ClientError(f"Method {method} is not allowed on {path}", status=405,
                                  code="method_not_allowed", headers=(("allow", "GET"),))
            if model not in key_models(self.catalog, key):
                raise ClientError(f"The model '{model}' does not exist or you do not have "
                                  "access to it", status=404, code="model_not_found")
            return Respond.json(200, model_entry(model), extra)
        if method != "POST":
            raise ClientError(f"Method {method} is not allowed on {path}", status=405,
                              code="method_not_allowed", headers=(("allow", "POST"),))
        _check_json_media_type(headers)
        raw = parse_request_json(body)
        if verb == "countTokens":
            if isinstance(raw, dict) and isinstance(raw.get("generateContentRequest"), dict):
                raw = raw["generateContentRequest"]  # the SDK's wrapped form
            if not resolve(self.catalog, key, model):
                raise ClientError(f"The model '{model}' does not exist or you do not have "
                                  "access to it", status=404, code="model_not_found")
            return Respond.json(200, count_tokens_response(estimate_tokens(raw)),
                                extra + (("x-uniapi-token-count", "estimated"),))
        stream = verb == "streamGenerateContent"
        call = chat_request_from_gemini(raw, model, stream)  # a 400 naming the JSON path
        return _front_call(key, call, extra, FrontCall(kind="gemini", body=raw, call=call,
                                                       sse=params.get("alt") == "sse"))

    def _count_tokens(self, key: ApiKey, body: bytes, headers: tuple[tuple[str, str], ...],
                      now: float, wall: float, extra: tuple[tuple[str, str], ...]
                      ) -> Relay | Respond:
        """``POST /v1/messages/count_tokens``: asked of an Anthropic channel of the model when
        there is one, else estimated (``x-uniapi-token-count: estimated``)."""
        raw = parse_request_json(body)
        if isinstance(raw, dict) and "max_tokens" not in raw:
            raw = {**raw, "max_tokens": 1}  # count_tokens has none; the check wants one
        call = chat_request_from_messages(raw)
        if any(self._engine(c.provider) == "claude"
               for c in resolve(self.catalog, key, call.model)):
            relay = self._routed({"claude": partial(build_count_tokens_exchange,
                                                    beta=_betas(headers))},
                                 raw, key, call.model, now, wall, extra)
            relay._front = MessagesFront(call.model, "")  # its errors in Anthropic's shape
            return relay
        if not resolve(self.catalog, key, call.model):
            raise ClientError(f"The model '{call.model}' does not exist or you do not have "
                              "access to it", status=404, code="model_not_found")
        return Respond.json(200, {"input_tokens": estimate_input_tokens(raw)},
                            extra + (("x-uniapi-token-count", "estimated"),))

    def moderation_check(self, call: ChatCall, now: float, wall: float) -> Relay | None:
        """The moderation check of docs/routing.md §12: a /v1/moderations relay for the last
        user text with the key's moderation model, or None when there is nothing to check or
        the key cannot reach a moderation model (fail open)."""
        text = last_user_text(call.req.get("messages") or [])
        if not text:
            return None
        model = moderation_model(key_models(self.catalog, call.key))
        try:
            return self._endpoint("/v1/moderations", call.key,
                                  dumps({"model": model, "input": text}), now, wall, call.extra)
        except UniapiError:
            return None

    def moderation_verdict(self, call: ChatCall, status: int, body: bytes) -> Respond | None:
        """The check's answer: flagged → the 400 to send; else None (the check failing, too:
        fail open)."""
        flagged = flagged_categories(body) if status == 200 else []
        if not flagged:
            return None
        return Respond.error(ClientError(
            "The request was flagged by moderation: " + ", ".join(flagged),
            code="moderation_flagged"), call.extra)

    def images_needed(self, call: ChatCall) -> tuple[str, ...]:
        """The remote image URLs to fetch first: those of the request, when some candidate
        channel's vendor needs images inline (REQ-4); else none."""
        remote = _remote_images(call.req["messages"])
        return remote if remote and self._needs_bytes(call, INLINE_IMAGE_ENGINES) else ()

    def documents_needed(self, call: ChatCall) -> tuple[str, ...]:
        """The remote document URLs (``file`` parts' ``file_url``) to fetch first: those of
        the request, when some candidate channel's vendor needs the bytes; else none."""
        remote = _remote_files(call.req["messages"])
        return remote if remote and self._needs_bytes(call, INLINE_DOCUMENT_ENGINES) else ()

    def _needs_bytes(self, call: ChatCall, engines: frozenset[str]) -> bool:
        """Some candidate channel of ``call`` needs remote URLs' bytes inline: its engine is
        one of ``engines`` and it is not sent the client's own body, whose URLs it reads
        itself (``reads_own_urls``)."""
        front = call.front
        for c in resolve(self.catalog, call.key, call.model):
            engine = self._engine(c.provider)
            if engine in engines and (front is None or not reads_own_urls(
                    front, engine, c.upstream_model, c.provider)):
                return True
        return False

    def route_chat(self, call: ChatCall, images: Mapping[str, tuple[str, bytes]], now: float,
                   wall: float) -> Routed | Respond:
        """The relay for ``call`` (``images``: the fetched remote images, url -> (media type,
        bytes)), or the error to answer when it cannot be routed."""
        try:
            return self._chat_relay(call, images, now, wall)
        except UniapiError as exc:
            return Respond.error(exc, call.extra)

    def _chat_relay(self, call: ChatCall, images: Mapping[str, tuple[str, bytes]], now: float,
                    wall: float) -> Routed:
        req, model, stream = call.req, call.model, call.stream
        response_id = "chatcmpl-" + _alnum(self.entropy, 24)
        parsed: list[ChatRequest] = []  # the request model, parsed once if a vendor needs it

        def request_for(engine: str) -> ChatRequest | dict[str, Any]:
            if engine in PASSTHROUGH_ENGINES:  # the client's own protocol: sent as it came,
                return inline_files(req, images)  # remote documents as data URLs
            if not parsed:
                parsed.append(parse_openai_chat(req))
            return parsed[0]

        def build(channel: Channel, key_index: int | None, number: int) -> Attempt:
            provider = channel.provider
            engine = self._engine(provider)
            region = token = account = None
            if engine == "vertex":
                region, account, token = self._vertex_slot(channel, key_index)
                api_key = None
            else:
                api_key = None if key_index is None else provider.api[key_index]
            ctx = ChatContext(client_model=model, upstream_model=channel.upstream_model,
                              provider=provider, api_key=api_key,
                              stream=stream, include_usage=call.include_usage,
                              response_id=response_id, created=int(wall),
                              entropy=self.entropy, images=images, region=region,
                              access_token=token, dialect=self._dialect(provider))
            exchange = None if call.front is None else native_exchange(call.front, engine, ctx)
            if exchange is None:  # the chat translation (a front's native channel: its body)
                exchange = TRANSLATORS[engine](request_for(engine), ctx)
            timeout = model_timeout(provider, self.config.preferences, channel.alias,
                                    channel.upstream_model, self.settings.env_timeout)
            proxy = provider.preferences.proxy or self.config.preferences.proxy
            return Attempt(number=number, provider=provider.provider,
                           upstream_model=channel.upstream_model, key_index=key_index,
                           exchange=exchange, timeout=timeout, proxy=proxy,
                           credential=None if account is None or token is None
                           else (account.key, token),
                           key=None if api_key is None else self.key_label(api_key))

        need = Need(tools=bool(req.get("tools")), engines=frozenset(TRANSLATORS))
        plan = self.router.plan(call.key, _digest(call.key.api), model, need, now,
                                self.entropy, build)
        relay = Relay(plan, stream=stream, headers=call.extra,
                      max_body=self.settings.max_upstream_body, triggers=self._triggers,
                      labels=(self.key_label(call.key.api), model),
                      front=None if call.front is None else writer(call.front, model,
                                                                   response_id))
        return Routed(relay, self._tokens_needed(plan.channels, now))

    # -- Vertex --------------------------------------------------------------------------------

    def _tokens_needed(self, channels: list[Channel], now: float
                       ) -> tuple[tuple[ServiceAccount, str | None], ...]:
        """The service accounts of the Vertex channels whose token is not fresh at ``now``."""
        found: dict[tuple[str, str, str], tuple[ServiceAccount, str | None]] = {}
        for c in channels:
            if self._engine(c.provider) != "vertex":
                continue
            try:
                account = service_account(c.provider)
            except UniapiError:
                continue  # the attempt's build says what is missing
            if account.key not in found and not self.tokens.fresh(account.key, now):
                proxy = c.provider.preferences.proxy or self.config.preferences.proxy
                found[account.key] = (account, proxy)
        return tuple(found.values())

    def _vertex_slot(self, channel: Channel, key_index: int | None
                     ) -> tuple[str, ServiceAccount, str]:
        """(region, account, access token) of a Vertex attempt, or the reason it cannot be
        made (the token endpoint's failure: 502; a misconfigured provider: 500)."""
        slots = self.router.slots(channel) or ()
        if key_index is None or not 0 <= key_index < len(slots):
            raise GatewayError("no Vertex region for this attempt", status=500,
                               code="vertex_region_missing")
        account = service_account(channel.provider)
        token = self.tokens.current(account.key)
        if isinstance(token, UniapiError):  # a fresh copy: never re-raise a stored exception
            raise type(token)(token.message, status=token.status, type=token.type,
                              code=token.code)
        if token is None:
            raise GatewayError(f"no Vertex access token for {account.client_email} could be "
                               f"had from {account.token_uri}", status=502,
                               code="vertex_token_failed")
        return slots[key_index], account, token

    def _endpoint(self, path: str, key: ApiKey, body: bytes, now: float, wall: float,
                  extra: tuple[tuple[str, str], ...]) -> Relay:
        """Embeddings, moderations, images: whole-body passthroughs routed by ``model`` with
        the same keys, permissions, scheduling, retries and limits as chat."""
        req = parse_request_json(body)
        if not isinstance(req, dict):
            raise ClientError("request body must be a JSON object", code="invalid_json")
        if path == "/v1/moderations" and req.get("model") is None:
            req["model"] = DEFAULT_MODERATION_MODEL
        model = req.get("model")
        if not isinstance(model, str) or not model:
            raise ClientError("'model' is required and must be a string", code="invalid_model")
        if req.get("stream"):
            raise ClientError(f"{path} does not stream", code="stream_not_supported")
        return self._routed(ENDPOINTS[path], req, key, model, now, wall, extra)

    def _routed(self, builders: Any, payload: Any, key: ApiKey, model: str, now: float,
                wall: float, extra: tuple[tuple[str, str], ...]) -> Relay:
        """A non-streaming relay for ``model``, routed like chat, each attempt's exchange
        made by ``builders[engine](payload, ctx)``."""

        def build(channel: Channel, key_index: int | None, number: int) -> Attempt:
            provider = channel.provider
            ctx = ChatContext(client_model=model, upstream_model=channel.upstream_model,
                              provider=provider,
                              api_key=None if key_index is None else provider.api[key_index],
                              stream=False, include_usage=False, response_id="",
                              created=int(wall), entropy=self.entropy)
            exchange = builders[self._engine(provider)](payload, ctx)
            timeout = model_timeout(provider, self.config.preferences, channel.alias,
                                    channel.upstream_model, self.settings.env_timeout)
            return Attempt(number=number, provider=provider.provider,
                           upstream_model=channel.upstream_model, key_index=key_index,
                           exchange=exchange, timeout=timeout,
                           proxy=provider.preferences.proxy or self.config.preferences.proxy,
                           key=None if key_index is None
                           else self.key_label(provider.api[key_index]))

        plan = self.router.plan(key, _digest(key.api), model, Need(engines=frozenset(builders)),
                                now, self.entropy, build)
        return Relay(plan, stream=False, headers=extra, max_body=self.settings.max_upstream_body,
                     labels=(self.key_label(key.api), model))

    def _upload(self, path: str, key: ApiKey, headers: tuple[tuple[str, str], ...], body: bytes,
                now: float, wall: float, extra: tuple[tuple[str, str], ...]) -> Relay:
        """``/v1/audio/transcriptions``: a ``multipart/form-data`` upload routed by its
        ``model`` field like chat (keys, permissions, scheduling, retries, limits); the body
        goes upstream as it came unless the model is renamed (``openai.upload_request``)."""
        content_type = next((v for k, v in headers if k == "content-type"), "")
        form = parse_form(content_type, body)
        if form.get("file") is None:
            raise ClientError("the form has no 'file' part", code="missing_file")
        model = _form_text(form, "model")
        if not model:
            raise ClientError("'model' is required", code="invalid_model")
        if (_form_text(form, "stream") or "").lower() == "true":
            raise ClientError(f"{path} does not stream", code="stream_not_supported")
        upload = Upload(body, content_type, form, model)
        return self._routed(UPLOADS[path], upload, key, model, now, wall, extra)


def _check_json_media_type(headers: tuple[tuple[str, str], ...]) -> None:
    """A JSON endpoint's body: ``Content-Type`` absent, ``application/json`` or ``*/*+json``
    (any parameters); anything else is 415 before the body is parsed."""
    value = next((v for k, v in headers if k == "content-type"), None)
    if value is None:
        return
    media = value.split(";", 1)[0].strip().lower()
    if media == "application/json" or (media.endswith("+json") and "/" in media):
        return
    raise ClientError(f"Content-Type {value[:100]!r} is not supported here: send the body as "
                      f"JSON with 'Content-Type: application/json'", status=415,
                      code="unsupported_media_type")


def _form_text(form: Any, name: str) -> str | None:
    part = form.get(name)
    return None if part is None else part.text().strip()


def _content_parts(messages: Any) -> Iterator[Any]:
    """Every item of every list ``content`` among a chat request's messages, in order."""
    for m in messages if isinstance(messages, list) else ():
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):
            yield from content


def _file_url(part: Any) -> Any:
    """A ``file`` part's ``file_url`` as sent (None when there is none)."""
    spec = part.get("file") if isinstance(part, dict) and part.get("type") == "file" else None
    return spec.get("file_url") if isinstance(spec, dict) else None


def _image_url(part: Any) -> Any:
    """An ``image_url`` part's URL as sent (None when it is not one)."""
    if not isinstance(part, dict) or part.get("type") != "image_url":
        return None
    image = part.get("image_url")
    return image.get("url") if isinstance(image, dict) else image


def _remote(urls: Iterator[Any]) -> tuple[str, ...]:
    """The http(s) URLs among ``urls``, in order, once each."""
    return tuple(dict.fromkeys(u for u in urls if isinstance(u, str)
                               and u.lower().startswith(("http://", "https://"))))


def _remote_files(messages: Any) -> tuple[str, ...]:
    """The http(s) ``file_url`` of a chat request's ``file`` parts, in order, once each."""
    return _remote(_file_url(p) for p in _content_parts(messages))


def _remote_images(messages: Any) -> tuple[str, ...]:
    """The http(s) image URLs of a chat request, in order, once each."""
    return _remote(_image_url(p) for p in _content_parts(messages))


def inline_files(req: dict[str, Any], fetched: Mapping[str, tuple[str, bytes]]
                 ) -> dict[str, Any]:
    """``req`` for an OpenAI-protocol upstream, whose chat API has no file URLs: each ``file``
    part's ``file_url`` replaced by a ``file_data`` data URL of the fetched bytes (the request
    itself when it has none). A URL not fetched raises ``ImagesNeeded``."""
    if all(_file_url(p) is None for p in _content_parts(req.get("messages"))):
        return req  # the common case: nothing to replace, the client's dict as it came
    missing: list[str] = []

    def inlined(part: Any) -> Any:
        url = _file_url(part)
        if url is None:
            return part
        if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
            raise ClientError(f"file.file_url must be an http(s) URL, got {str(url)[:100]!r}",
                              code="invalid_file_url")
        got = fetched.get(url)
        if got is None:
            missing.append(url)
            return part
        media, raw = got
        if media in ("", "application/octet-stream") and raw.startswith(b"%PDF-"):
            media = "application/pdf"
        spec = {k: v for k, v in part["file"].items() if k != "file_url"}
        spec["file_data"] = f"data:{media or 'application/octet-stream'};base64," \
            + base64.b64encode(raw).decode("ascii")
        spec.setdefault("filename", url_filename(url))
        return {**part, "file": spec}

    messages = [{**m, "content": [inlined(p) for p in m["content"]]}
                if isinstance(m, dict) and isinstance(m.get("content"), list) else m
                for m in req["messages"]]
    if missing:
        raise ImagesNeeded(missing)
    return {**req, "messages": messages}


def _front_call(key: ApiKey, call: Any, extra: tuple[tuple[str, str], ...],
                front: FrontCall) -> ChatCall:
    """The ``ChatCall`` of a request on another front: ``call`` is the front's translation
    (its ``chat`` request, ``model`` and ``stream``)."""
    return ChatCall(key=key, req=call.chat, model=call.model, stream=call.stream,
                    include_usage=False, extra=extra,
                    moderate=bool(key.preferences.ENABLE_MODERATION), front=front)


def _betas(headers: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """The values of a request's ``anthropic-beta`` headers."""
    return tuple(v for k, v in headers if k == "anthropic-beta")


def _params(target: str) -> dict[str, str]:
    """A request target's query parameters (the first value of each name)."""
    out: dict[str, str] = {}
    for name, value in parse_qsl(target.partition("?")[2], keep_blank_values=True):
        out.setdefault(name, value)
    return out


def _endpoint_handler(path: str) -> Any:
    def handler(self: Gateway, key: ApiKey, body: bytes, now: float, wall: float,
                extra: tuple[tuple[str, str], ...]) -> Relay:
        return self._endpoint(path, key, body, now, wall, extra)
    return handler


#: the fronts' paths, whose handlers are given the request's headers too
FRONT_PATHS = frozenset({*MESSAGES_PATHS, "/v1/responses"})
#: POST bodies parsed as JSON
JSON_BODIES = frozenset({"/v1/chat/completions", *ENDPOINTS, *FRONT_PATHS})

_ROUTES: dict[str, tuple[frozenset[str], bool, Any]] = {
    "/healthz": (frozenset({"GET", "HEAD"}), False, Gateway._healthz),
    METRICS: (frozenset({"GET"}), False, Gateway._metrics),  # an admin key unless public
    "/v1/models": (frozenset({"GET"}), True, Gateway._models),
    "/v1/chat/completions": (frozenset({"POST"}), True, Gateway._chat),
    "/v1/messages": (frozenset({"POST"}), True, Gateway._messages),
    "/v1/messages/count_tokens": (frozenset({"POST"}), True, Gateway._count_tokens),
    "/v1/responses": (frozenset({"POST"}), True, Gateway._responses),
    "/v1/generate-api-key": (frozenset({"GET", "POST"}), True, Gateway._generate_key),
    "/v1/stats": (frozenset({"GET"}), True, Gateway._stats),
    "/v1/token_usage": (frozenset({"GET"}), True, Gateway._token_usage),
    "/v1/reload": (frozenset({"POST"}), True, Gateway._reload),  # an admin key
    **{path: (frozenset({"POST"}), True, _endpoint_handler(path)) for path in ENDPOINTS},
    **{path: (frozenset({"POST"}), True, None) for path in UPLOADS},  # Gateway._upload
}
