"""The request machine: one request's life once its head and body are in.

Theory of operation
-------------------
A ``RequestMachine`` is what both client protocols share: the HTTP/1.1 connection runs one at a
time, the HTTP/2 connection one per stream. It never touches framing: it says *what* to
answer with ``SendHead``/``SendData``/``EndResponse`` and the connection turns those into bytes
for its protocol (h11 or h2).

It has one door, ``handle(event, now, wall)``, and ``next_deadline()``. Its steps are the
``Step`` enum; which events each step takes is the table ``_TABLE`` (an event a step does not
list is ignored: late events of stopped fetches, anything after the end)::

    ROUTING ─ Respond ──────────────────────────────────────────────────────────────▶ DONE
       │    ─ DbCall (/v1/stats, /v1/token_usage) ────────────────────────▶ QUERYING ─▶ DONE
       │    ─ ReloadCall (/v1/reload) ───────────────────────────────────▶ RELOADING ─▶ DONE
       │    ─ ScrapeCall (/metrics, --workers) ──────────────────────────▶ SCRAPING ─▶ DONE
       │    ─ Relay (endpoints, uploads) ─────────────────────────────────▶ RELAYING ─▶ DONE
       └─ ChatCall ─▶ [MODERATING] ─▶ [FETCHING] ─▶ [AWAITING_TOKEN] ─▶ RELAYING ─▶ DONE
                      flagged, or an image refused, or not routable ────────────────▶ DONE

``start`` asks the gateway (``Gateway.handle``) for the answer: a whole ``Respond``, a ready
``Relay``, or a ``ChatCall`` (a validated chat request, as data) that the machine takes through
the optional steps, each a named gateway call with the call as its argument:

* ``MODERATING`` (``ENABLE_MODERATION``): ``Gateway.moderation_check`` gives a /v1/moderations
  relay, run here with its answer kept from the client; ``moderation_verdict`` reads it.
* ``FETCHING``: ``Gateway.images_needed`` and ``documents_needed`` name the remote images and
  documents a vendor needs inline; each is a ``Fetch`` (redirects followed here, within
  ``ssrf.url_refusal``; images capped at ``MAX_IMAGE_BYTES``, documents at
  ``MAX_DOCUMENT_BYTES``, past which a document is a 413), reported by ``FetchDone``.
* ``AWAITING_TOKEN``: ``Gateway.route_chat`` gave a relay and the Vertex service accounts whose
  access token ``Gateway.tokens`` (``vendors/gauth.TokenCache``) holds no fresh copy of. Per
  account, the cache's state says: ``IDLE`` → this request claims the one fetch (``begin``),
  signs the JWT and runs the token POST as a ``StartUpstream`` of its own, bounded by
  ``TOKEN_TIMEOUT`` and ``gauth.MAX_TOKEN_ANSWER``, then records the answer (``succeed`` /
  ``fail``) and says ``Notify(account key)``; ``FLYING`` → another request (on any connection)
  is fetching it: this one says ``Watch(ref, account key)`` and the transport reports
  ``Notified(ref)`` when that key is next notified (a request that gives up its fetch says
  ``Notify`` too, so a waiter takes it over). ``TOKEN_TIMEOUT`` also bounds a wait, so a lost
  notification costs time, never a hang. Once no account is pending the relay starts; an
  attempt whose token is missing is skipped by routing with the token error. With shared
  state (``--redis-url``) an ``IDLE`` account is first asked of the fleet (``RunShared``, the
  ``token`` mode of redis/script.py, reported by ``SharedDone``): the stored token is adopted,
  a granted claim means this request fetches and stores it (``TellShared``; the claim, which
  names its owner, is freed however the fetch ends or the request goes away), and ``wait``
  means asking again every ``TOKEN_POLL`` seconds; no answer in time means fetching here.
* ``RELAYING``: the relay (``relay/machine.py``) runs; a 401 to an attempt carrying a Vertex
  token (``TokenRefused``) drops that token from the cache (VTX-T4).
* ``QUERYING``: a ``DbCall``'s work runs on the stats store (``Query``, reported by
  ``QueryDone``); the answer is 200 with its rows shaped, or 503 when the store failed.
* ``RELOADING``: the transport hot-reloads the process's config (``Reload``, reported by
  ``Reloaded``); ``ReloadCall.answer`` words the 200, or the 400 naming why it was refused.
  Every request holds the gateway that was current when it arrived, so a reload never
  changes the config of one in flight.

When the request is over its ``ServedRecord`` goes to the access log (``Served``), the metrics
and, when there is a stats store, the stats queue (``Gateway.stats``), which the transport
flushes in batches off the request path.

Refs: the connection hands out one id space (``refs``): relay attempts, image fetches, token
POSTs and watches all get a ref from it, and every event names its ref. ``finished`` means
nothing of the request runs any more; ``client_closed`` then tells whether it ended because
the client went away.

A gateway bug costs one 500 response, never the connection: every call into the gateway is
guarded.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urljoin

import attrs

from .fronts.front import error_for_path

from .errors import ClientError, GatewayError, UniapiError
from .gateway import ChatCall, DbCall, Gateway, ReloadCall, Respond, Routed, ScrapeCall
from .http.server import RequestReceived
from .http.url import Url
from .relay import (
    AttemptRecord,
    ClientGone,
    DeadlineReached,
    EndResponse,
    Relay,
    RelayAction,
    RunShared,
    SendData,
    SendHead,
    SharedDone,
    StartUpstream,
    StopUpstream,
    TellShared,
    TokenRefused,
)
from .relay.events import UpstreamData, UpstreamEnded, UpstreamFailed, UpstreamHead
from .ssrf import FETCH_TIMEOUT, MAX_DOCUMENT_BYTES, MAX_IMAGE_BYTES, MAX_REDIRECTS, url_refusal
from .routing.shared import token_name
from .vendors import gauth

__all__ = ["RequestMachine", "Step", "StartUpstream", "StopUpstream", "Fetch", "FetchResult",
           "FetchDone", "Watch", "Notify", "Notified", "Query", "QueryDone", "Reload",
           "Reloaded", "Scrape", "Scraped", "Served",
           "ServedRecord", "AttemptRecord",
           "MachineAction", "MachineEvent", "UpstreamEvent", "TOKEN_TIMEOUT"]


@attrs.frozen
class Fetch:
    """GET a remote image: resolve, connect only to an address ``ssrf.pick_address`` allows,
    read at most ``max_bytes``; report ``FetchDone(ref, result)``."""

    ref: int
    url: Url
    allow_private: bool = False
    max_bytes: int = MAX_IMAGE_BYTES
    timeout: float = FETCH_TIMEOUT


@attrs.frozen
class FetchResult:
    """What a ``Fetch`` got: a response (``body`` cut at ``max_bytes``: ``truncated``), or
    ``error`` when there was none (refused address, DNS, connection, timeout)."""

    status: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    truncated: bool = False
    error: str | None = None


@attrs.frozen
class FetchDone:
    """The outcome of ``Fetch`` ``ref``."""

    ref: int
    result: FetchResult


@attrs.frozen
class Watch:
    """Report ``Notified(ref)`` once ``Notify(key)`` is next said, by any connection of this
    process (``StopUpstream(ref)`` ends the watch). A transport performs it before anything
    that could let another connection run (it comes first in a list of actions)."""

    ref: int
    key: object


@attrs.frozen
class Notify:
    """Wake every ``Watch`` on ``key``."""

    key: object


@attrs.frozen
class Notified:
    """A ``Watch`` fired."""

    ref: int


@attrs.frozen
class Query:
    """Run ``work`` (an ``ops.stats.DbWork``) on the process's stats store: ``work.apply(conn)``
    in a worker thread, on the one DB-API connection the transport keeps; report
    ``QueryDone(ref, result)``."""

    ref: int
    work: Any


@attrs.frozen
class QueryDone:
    """The outcome of ``Query`` ``ref``: each statement's rows, or the error's text."""

    ref: int
    result: list | str


@attrs.frozen
class Scrape:
    """Read the other workers' metrics snapshots in ``directory`` (``ops/metrics.
    read_snapshots``, in a worker thread, this worker's own file left out); report
    ``Scraped(ref, files)``."""

    ref: int
    directory: str


@attrs.frozen
class Scraped:
    """The snapshot files ``Scrape`` ``ref`` read: file name -> its bytes."""

    ref: int
    files: Mapping[str, bytes]


@attrs.frozen
class Reload:
    """Hot-reload the process's config (``POST /v1/reload``): read it again from where it came
    from, discover models, make it current; report ``Reloaded(ref, error)``."""

    ref: int


@attrs.frozen
class Reloaded:
    """The outcome of ``Reload`` ``ref``: None when the new config serves, else why it was
    refused (the old one serves on)."""

    ref: int
    error: str | None


@attrs.frozen
class ServedRecord:
    """One client request, when it is over: what the access log, the stats rows and the
    metrics are made of. Never a secret: keys appear as digest labels (``k-`` + 12 hex digits
    of their SHA-256)."""

    method: str
    path: str  # without the query
    status: int  # what the client got (499: it left before any answer)
    duration: float  # seconds from arrival to the end
    attempts: tuple[tuple[str, str, str], ...] = ()  # (provider, model, outcome) per attempt
    client_closed: bool = False
    #: the answer's usage in OpenAI's shape, as the vendor reported it (None: none reported)
    usage: dict | None = attrs.field(default=None, eq=False)
    wall: float = 0.0  # the wall clock when the request arrived
    key: str | None = None  # the client key's digest label; None: no valid key
    model: str | None = None  # the model the client asked for
    ttft: float | None = None  # seconds from arrival to the answer's first body byte
    client_ip: str | None = None
    error: str | None = None  # the error message the client got (status >= 400)
    tries: tuple[AttemptRecord, ...] = ()  # every upstream attempt, in order

    def log_line(self) -> str:
        """The access log's text for this request."""
        return (f"{self.method} {self.path} {self.status} {self.duration * 1000:.1f}ms"
                f"{' client_closed' if self.client_closed else ''}")

    def log_text(self, log_format: str = "text") -> str:
        """The access log's entry in ``log_format``: ``log_line()``, or with "json" one JSON
        object holding every field of the record (keys as digest labels; no prompt, no
        completion, no secret)."""
        if log_format != "json":
            return self.log_line()
        fields = {  # attrs.asdict's order, built by hand: it is on every request's path
            "method": self.method, "path": self.path, "status": self.status,
            "duration": round(self.duration, 6), "client_closed": self.client_closed,
            "usage": self.usage, "wall": self.wall, "key": self.key, "model": self.model,
            "ttft": None if self.ttft is None else round(self.ttft, 6),
            "client_ip": self.client_ip, "error": self.error,
            "tries": [{"provider": t.provider, "model": t.model, "outcome": t.outcome,
                       "key": t.key, "latency": round(t.latency, 6)} for t in self.tries]}
        return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def _error_of(body: bytes) -> tuple[str | None, str | None]:
    """The message and code of an OpenAI-shaped error body (None for what it lacks)."""
    try:
        error = json.loads(body)["error"]
        message, code = error.get("message"), error.get("code")
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None, None
    return (message if isinstance(message, str) else None,
            code if isinstance(code, str) else None)


@attrs.frozen
class Served:
    """One request is over: log it."""

    record: ServedRecord


MachineAction = (StartUpstream | StopUpstream | Fetch | Watch | Notify | Query | Reload | Scrape
                 | Served | SendHead | SendData | EndResponse | RunShared | TellShared)
UpstreamEvent = UpstreamHead | UpstreamData | UpstreamEnded | UpstreamFailed
MachineEvent = (UpstreamEvent | FetchDone | Notified | QueryDone | Reloaded | Scraped
                | DeadlineReached | ClientGone | SharedDone)

#: the longest a token POST may take, head to end, and a wait for another's (seconds)
TOKEN_TIMEOUT = 30.0
#: the longest a stats query (``/v1/stats``, ``/v1/token_usage``) may take (seconds)
QUERY_TIMEOUT = 30.0
#: the longest a hot reload asked by ``POST /v1/reload`` may take (a ``CONFIG_URL`` fetch and
#: model discovery, each bounded by ``UpstreamTimeouts``) before it is cancelled (seconds)
RELOAD_TIMEOUT = 60.0
#: the longest reading the other workers' metrics snapshots may take; after it, this worker
#: answers the scrape with what it has (seconds)
SCRAPE_TIMEOUT = 5.0


class Step(enum.Enum):
    ROUTING = "routing"
    MODERATING = "moderating"
    FETCHING = "fetching"
    AWAITING_TOKEN = "awaiting_token"
    RELAYING = "relaying"
    QUERYING = "querying"
    RELOADING = "reloading"
    SCRAPING = "scraping"
    DONE = "done"

    # members are singletons: hash by identity, in C (the table is looked up on every event)
    __hash__ = object.__hash__


@attrs.define
class _TokenFetch:
    """One token POST this request runs."""

    account: gauth.ServiceAccount
    flight: int
    deadline: float
    status: int = 0
    body: bytearray = attrs.Factory(bytearray)
    #: ``--redis-url``: the owner id of the fleet's claim on this fetch (None: no claim)
    owner: str | None = None


@attrs.define
class _TokenAsk:
    """``--redis-url``: a token this request asks the fleet for before fetching it (the
    ``token`` mode of redis/script.py): ``ref`` is the ask in flight (None: waiting until
    ``until`` to ask again, another process is fetching); ``give_up``: then fetch here."""

    account: gauth.ServiceAccount
    proxy: str | None
    flight: int
    until: float
    give_up: float
    owner: str  # who the fleet's claim names, if it is granted
    ref: int | None = None


#: seconds between two asks while another process of the fleet fetches a token
TOKEN_POLL = 0.1


class RequestMachine:
    """One request, from ``start`` until ``finished`` (see the module docstring)."""

    def __init__(self, gateway: Callable[[], Gateway], request: RequestReceived,
                 refs: Callable[[], int], now: float, *, peer: str | None = None) -> None:
        #: the gateway current when the request arrived: the request finishes on it, whatever
        #: a hot reload makes current meanwhile
        self._gw = gateway()
        self.request = request
        self._new_ref = refs
        self._started = now
        self._wall = 0.0  # the wall clock at start()
        self._peer = peer
        self._query: DbCall | None = None  # QUERYING: the call whose work runs
        self._reload: ReloadCall | None = None  # RELOADING: the call being answered
        self._scrape: ScrapeCall | None = None  # SCRAPING: the call being answered
        self._query_ref = 0
        self._query_deadline = 0.0
        self.step = Step.ROUTING
        self.finished = False  #: the step is DONE: nothing of the request runs any more
        self.client_closed = False
        self._call: ChatCall | None = None
        self._relay: Relay | None = None
        self._relay_refs: set[int] = set()  # refs of relay attempts still open
        self._check_status = 0  # MODERATING: the check's answer, kept from the client
        self._check_body = bytearray()
        self._fetching: dict[int, tuple[str, str, int]] = {}  # ref -> (url, current, hops)
        self._images: dict[str, tuple[str, bytes]] = {}  # images and documents, by URL
        self._documents: frozenset[str] = frozenset()  # the URLs fetched as documents
        #: the first failed fetch: its URL, why, and whether it was past its cap
        self._fetch_failed: tuple[str, str, bool] | None = None
        self._routed: Routed | None = None  # AWAITING_TOKEN
        self._tokens: dict[int, _TokenFetch] = {}  # ref -> a token POST of ours
        self._watches: dict[int, object] = {}  # ref -> the account key watched
        self._asks: dict[tuple[str, str, str], _TokenAsk] = {}  # account key -> fleet ask
        self._wait_until: float | None = None

    # -- the door -----------------------------------------------------------------------------

    def start(self, now: float, wall: float) -> list[MachineAction]:
        self._wall = wall
        if self._gw.log_requests and self._gw.settings.metrics:
            self._gw.metrics.in_flight(1)
        req = self.request
        out: list[MachineAction] = []
        try:
            reply = self._gw.handle(req.method, req.target, req.headers, req.body,
                                           now=now, wall=wall)
        except Exception:  # a bug must cost one 500, never the connection or a hang
            reply = _internal_error()
        if isinstance(reply, ChatCall):
            self._call = reply
            self._guarded(self._moderate, now, wall, out)
        else:
            self._answer(reply, now, wall, out)
        return out

    def handle(self, event: MachineEvent, now: float, wall: float) -> list[MachineAction]:
        handler = _TABLE.get((self.step, type(event)))
        if handler is None:
            return []
        out: list[MachineAction] = []
        handler(self, event, now, wall, out)
        return out

    def next_deadline(self) -> float | None:
        step = self.step
        if step is Step.RELAYING or step is Step.MODERATING:
            return self._relay.next_deadline()  # type: ignore[union-attr]
        if step is Step.QUERYING or step is Step.RELOADING or step is Step.SCRAPING:
            return self._query_deadline
        if step is Step.AWAITING_TOKEN:
            times = [f.deadline for f in self._tokens.values()]
            times += [a.until for a in self._asks.values()]
            if self._wait_until is not None:
                times.append(self._wait_until)
            return min(times) if times else None
        return None

    # -- steps ----------------------------------------------------------------------------------

    def _guarded(self, step: Callable[[float, float, list[MachineAction]], None], now: float,
                 wall: float, out: list[MachineAction]) -> None:
        try:
            step(now, wall, out)
        except Exception:
            if not self.finished:
                self._answer(_internal_error(), now, wall, out)

    def _moderate(self, now: float, wall: float, out: list[MachineAction]) -> None:
        call = self._call
        assert call is not None
        check = self._gw.moderation_check(call, now, wall) if call.moderate else None
        if check is None:
            self._fetch_images(now, wall, out)
            return
        self.step, self._relay = Step.MODERATING, check
        self._relay_actions(check.start(now, self._new_ref), now, wall, out)

    def _fetch_images(self, now: float, wall: float, out: list[MachineAction]) -> None:
        assert self._call is not None
        documents = self._gw.documents_needed(self._call)
        urls = dict.fromkeys(self._gw.images_needed(self._call) + documents)
        if not urls:
            self._route(now, wall, out)
            return
        self.step, self._documents = Step.FETCHING, frozenset(documents)
        for url in urls:
            self._start_fetch(url, url, 0, out)
        if not self._fetching:  # every URL refused before fetching
            self._fetched(now, wall, out)

    def _route(self, now: float, wall: float, out: list[MachineAction]) -> None:
        assert self._call is not None
        routed = self._gw.route_chat(self._call, self._images, now, wall)
        if isinstance(routed, Routed) and routed.accounts:
            self.step, self._routed = Step.AWAITING_TOKEN, routed
            self._tokens_step(now, wall, out)
        else:
            self._answer(routed.relay if isinstance(routed, Routed) else routed, now, wall, out)

    def _answer(self, reply: Respond | Relay | Any, now: float, wall: float,
                out: list[MachineAction]) -> None:
        if isinstance(reply, Relay):
            self.step, self._relay = Step.RELAYING, reply
            self._relay_actions(reply.start(now, self._new_ref), now, wall, out)
            return
        if isinstance(reply, DbCall):
            self.step, self._query = Step.QUERYING, reply
            self._query_ref = self._new_ref()
            self._query_deadline = now + QUERY_TIMEOUT
            out.append(Query(self._query_ref, reply.work))
            return
        if isinstance(reply, ScrapeCall):
            self.step, self._scrape = Step.SCRAPING, reply
            self._query_ref = self._new_ref()
            self._query_deadline = now + SCRAPE_TIMEOUT
            out.append(Scrape(self._query_ref, reply.directory))
            return
        if isinstance(reply, ReloadCall):
            self.step, self._reload = Step.RELOADING, reply
            self._query_ref = self._new_ref()
            self._query_deadline = now + RELOAD_TIMEOUT
            out.append(Reload(self._query_ref))
            return
        if not isinstance(reply, Respond):
            reply = _internal_error()
        if reply.status >= 400:  # in the shape of the request's front (/v1/messages: Anthropic)
            body = error_for_path(self.request.target.split("?", 1)[0].rstrip("/"),
                                  reply.status, reply.body)
            if body is not None:
                reply = attrs.evolve(reply, body=body)
        out.append(SendHead(reply.status, reply.headers, len(reply.body)))
        out.append(SendData(reply.body))
        out.append(EndResponse())
        self._done(reply.status, (), now, out,
                   error=_error_of(reply.body) if reply.status >= 400 else None)

    # -- events ---------------------------------------------------------------------------------

    def _on_upstream(self, event: UpstreamEvent | SharedDone, now: float, wall: float,
                     out: list[MachineAction]) -> None:
        ref = event.ref
        if ref not in self._relay_refs:
            return
        if type(event) is UpstreamEnded or type(event) is UpstreamFailed \
                or type(event) is SharedDone:
            self._relay_refs.discard(ref)
        self._relay_actions(self._relay.handle(event, now), now, wall, out)  # type: ignore

    def _on_deadline(self, event: DeadlineReached, now: float, wall: float,
                     out: list[MachineAction]) -> None:
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return
        if self.step is Step.AWAITING_TOKEN:
            self._token_deadline(now, wall, out)
        else:
            self._relay_actions(self._relay.handle(event, now), now, wall, out)  # type: ignore

    def _on_client_gone(self, event: ClientGone, now: float, wall: float,
                        out: list[MachineAction]) -> None:
        """The client left (EOF, failed write, stream reset): stop everything."""
        self.client_closed = True
        if self._relay is not None:
            self._relay_actions(self._relay.handle(event, now), now, wall, out)
        if not self.finished:  # fetching, moderating or awaiting a token
            self._done(499, (), now, out)

    def _on_fetch_done(self, event: FetchDone, now: float, wall: float,
                       out: list[MachineAction]) -> None:
        if event.ref not in self._fetching:
            return
        result = event.result
        url, current, hops = self._fetching.pop(event.ref)
        location = dict(result.headers).get("location")
        if result.error is not None:
            self._fail_fetch(url, result.error)
        elif result.status in (301, 302, 303, 307, 308) and location:
            if hops >= MAX_REDIRECTS:
                self._fail_fetch(url, "too many redirects")
            else:
                self._start_fetch(url, urljoin(current, location), hops + 1, out)
        elif result.status != 200:
            self._fail_fetch(url, f"HTTP {result.status}")
        elif result.truncated:
            self._fail_fetch(url, f"larger than {self._cap(url)} bytes", too_large=True)
        else:
            media = dict(result.headers).get("content-type", "").split(";")[0].strip().lower()
            self._images[url] = (media, result.body)  # the vendor sniffs the bytes too
        if not self._fetching:
            self._fetched(now, wall, out)

    def _on_token_upstream(self, event: UpstreamEvent, now: float, wall: float,
                           out: list[MachineAction]) -> None:
        fetch = self._tokens.get(event.ref)
        if fetch is None:
            return
        cache, account = self._gw.tokens, fetch.account
        if isinstance(event, UpstreamHead):
            fetch.status = event.status
            return
        if isinstance(event, UpstreamData):
            fetch.body += event.data
            if len(fetch.body) <= gauth.MAX_TOKEN_ANSWER:
                return
            out.append(StopUpstream(event.ref))
            cache.fail(account.key, fetch.flight, gauth.token_failure(
                account, f"an answer larger than {gauth.MAX_TOKEN_ANSWER} bytes"), now)
        elif isinstance(event, UpstreamEnded):
            try:
                token, expires_in = gauth.parse_token_answer(account, fetch.status,
                                                             bytes(fetch.body))
            except UniapiError as exc:
                cache.fail(account.key, fetch.flight, exc, now)
            else:
                cache.succeed(account.key, fetch.flight, token, expires_in, now)
                self._share_token(account, fetch.owner, token, expires_in - min(
                    gauth.MAX_MARGIN, expires_in / 2), now, out)
        else:  # UpstreamFailed
            cache.fail(account.key, fetch.flight, gauth.token_failure(
                account, f"{event.message}"), now)
        del self._tokens[event.ref]
        if not cache.fresh(account.key, now):  # failed: the fleet's claim is freed
            self._share_token(account, fetch.owner, None, 0.0, now, out)
        out.append(Notify(account.key))
        self._guarded(self._tokens_step, now, wall, out)

    def _share_token(self, account: gauth.ServiceAccount, owner: str | None, token: str | None,
                     fresh_for: float, now: float, out: list[MachineAction]) -> None:
        """Tell the fleet a token this process fetched, or free its claim (``owner``) when
        the fetch failed or its request went away."""
        shared = self._gw.router.shared
        if shared is not None and owner is not None:
            request: dict[str, object] = {"a": token_name(account.key), "o": owner,
                                          "s": fresh_for}
            if token is not None:
                request["t"] = token
            out.append(TellShared((shared.command("token_put", request, now),)))

    def _on_token_shared(self, event: SharedDone, now: float, wall: float,
                         out: list[MachineAction]) -> None:
        """The fleet's answer about a token: it, a claim on its fetch, or wait."""
        found = [(k, a) for k, a in self._asks.items() if a.ref == event.ref]
        if not found:
            return
        key, ask = found[0]
        shared = self._gw.router.shared
        answer = None if shared is None else shared.answer(event.replies)
        fresh_for = None if answer is None else answer.get("s")
        if answer is not None and isinstance(answer.get("t"), str) \
                and isinstance(fresh_for, (int, float)) and not isinstance(fresh_for, bool):
            del self._asks[key]
            self._gw.tokens.adopt(key, ask.flight, answer["t"], float(fresh_for), now)
            out.append(Notify(key))
        elif answer is not None and answer.get("wait") and now < ask.give_up:
            ask.ref, ask.until = None, now + TOKEN_POLL
        else:  # the claim is ours, or Redis did not answer: fetch it here
            del self._asks[key]
            self._fetch_token(ask.account, ask.proxy, ask.flight, now, wall, out,
                              ask.owner if answer is not None and answer.get("claim") else None)
        self._guarded(self._tokens_step, now, wall, out)

    def _on_query_late(self, event: DeadlineReached, now: float, wall: float,
                       out: list[MachineAction]) -> None:
        if now >= self._query_deadline:
            out.append(StopUpstream(self._query_ref))
            self._on_query_done(QueryDone(self._query_ref, "no answer within "
                                          f"{QUERY_TIMEOUT:g} s"), now, wall, out)

    def _on_query_done(self, event: QueryDone, now: float, wall: float,
                       out: list[MachineAction]) -> None:
        if event.ref != self._query_ref or self._query is None:
            return
        call, self._query = self._query, None
        assert call is not None
        if isinstance(event.result, str):
            reply = Respond.error(GatewayError(f"the stats database failed: {event.result}",
                                               status=503, code="stats_unavailable"), call.extra)
        else:
            try:
                answered = call.answer(event.result)
            except UniapiError as exc:  # e.g. a stored response that is not there: 404
                reply = Respond.error(exc, call.extra)
            except Exception:  # rows of an unexpected shape: one 500, never the connection
                reply = _internal_error()
            else:
                if isinstance(answered, ChatCall):  # a request that needed the store first
                    self._call = answered
                    self._guarded(self._moderate, now, wall, out)
                    return
                reply = (answered if isinstance(answered, Respond)
                         else Respond.json(200, answered, call.extra))
        self._answer(reply, now, wall, out)

    def _on_reload_late(self, event: DeadlineReached, now: float, wall: float,
                        out: list[MachineAction]) -> None:
        if now >= self._query_deadline:
            out.append(StopUpstream(self._query_ref))
            self._on_reloaded(Reloaded(self._query_ref, f"no outcome within {RELOAD_TIMEOUT:g} "
                                       "s; the reload was cancelled"), now, wall, out)

    def _on_scraped(self, event: Scraped | DeadlineReached, now: float, wall: float,
                    out: list[MachineAction]) -> None:
        if self._scrape is None or (isinstance(event, Scraped) and event.ref != self._query_ref):
            return
        if isinstance(event, DeadlineReached):
            if now < self._query_deadline:
                return
            out.append(StopUpstream(self._query_ref))  # too slow: this worker's own figures
        call, self._scrape = self._scrape, None
        self._answer(call.answer(event.files if isinstance(event, Scraped) else {}),
                     now, wall, out)

    def _on_reloaded(self, event: Reloaded, now: float, wall: float,
                     out: list[MachineAction]) -> None:
        if event.ref != self._query_ref or self._reload is None:
            return
        call, self._reload = self._reload, None
        self._answer(call.answer(event.error), now, wall, out)

    def _on_notified(self, event: Notified, now: float, wall: float,
                     out: list[MachineAction]) -> None:
        if self._watches.pop(event.ref, None) is not None:
            self._guarded(self._tokens_step, now, wall, out)

    # -- internals ------------------------------------------------------------------------------

    def _tokens_step(self, now: float, wall: float, out: list[MachineAction]) -> None:
        """Fetch or wait for every token the relay needs; start it once none is pending."""
        routed = self._routed
        assert routed is not None
        cache = self._gw.tokens
        shared = self._gw.router.shared
        busy = ({f.account.key for f in self._tokens.values()} | set(self._watches.values())
                | set(self._asks))
        for key, ask in self._asks.items():  # another process fetches: ask again when due
            if ask.ref is None and now >= ask.until:
                self._ask_fleet(ask, now, out)
        for account, proxy in routed.accounts:
            key = account.key
            if key in busy:
                continue
            state, _ = cache.state(key, now)
            if state == gauth.FLYING:
                ref = self._new_ref()
                self._watches[ref] = key
                out.append(Watch(ref, key))
                self._wait_until = now + TOKEN_TIMEOUT
            elif state == gauth.IDLE:
                flight = cache.begin(key, now)
                if shared is not None:  # one fetch for the fleet: ask it first
                    ask = self._asks[key] = _TokenAsk(
                        account, proxy, flight, now, now + TOKEN_TIMEOUT,
                        f"{self._gw.entropy.getrandbits(64):016x}")
                    self._ask_fleet(ask, now, out)
                else:
                    self._fetch_token(account, proxy, flight, now, wall, out)
        if self._tokens or self._watches or self._asks:
            return
        self._routed = self._wait_until = None
        self._answer(routed.relay, now, wall, out)

    def _ask_fleet(self, ask: _TokenAsk, now: float, out: list[MachineAction]) -> None:
        shared = self._gw.router.shared
        assert shared is not None
        ask.ref, ask.until = self._new_ref(), now + shared.timeout
        out.append(RunShared(ask.ref, (shared.command("token", {
            "a": token_name(ask.account.key), "l": int(TOKEN_TIMEOUT * 1000),
            "o": ask.owner}, now),), shared.timeout))

    def _fetch_token(self, account: gauth.ServiceAccount, proxy: str | None, flight: int,
                     now: float, wall: float, out: list[MachineAction],
                     owner: str | None = None) -> None:
        """Run the token POST of ``flight`` (claimed with ``TokenCache.begin``; ``owner``:
        the fleet's claim on it, freed whatever the outcome)."""
        cache = self._gw.tokens
        try:
            request = gauth.token_request(account, wall)
        except UniapiError as exc:
            cache.fail(account.key, flight, exc, now)
            self._share_token(account, owner, None, 0.0, now, out)
            return
        except Exception:  # a signing bug must cost this provider, not the connection
            cache.fail(account.key, flight, GatewayError(
                "internal error while signing the Vertex token request", status=500,
                code="internal_error"), now)
            self._share_token(account, owner, None, 0.0, now, out)
            return
        ref = self._new_ref()
        self._tokens[ref] = _TokenFetch(account, flight, now + TOKEN_TIMEOUT, owner=owner)
        out.append(StartUpstream(ref, request, proxy))

    def _token_deadline(self, now: float, wall: float, out: list[MachineAction]) -> None:
        cache = self._gw.tokens
        for ref, fetch in list(self._tokens.items()):
            if now >= fetch.deadline:
                del self._tokens[ref]
                out.append(StopUpstream(ref))
                cache.fail(fetch.account.key, fetch.flight, gauth.token_failure(
                    fetch.account, f"no answer within {TOKEN_TIMEOUT:g} s"), now)
                self._share_token(fetch.account, fetch.owner, None, 0.0, now, out)
                out.append(Notify(fetch.account.key))
        for key, ask in list(self._asks.items()):
            if ask.ref is not None and now >= ask.until:  # the fleet did not answer in time
                out.append(StopUpstream(ask.ref))
                del self._asks[key]
                shared = self._gw.router.shared
                if shared is not None:
                    shared.lost()
                self._fetch_token(ask.account, ask.proxy, ask.flight, now, wall, out)
            elif ask.ref is None and now >= ask.give_up:  # waited long enough: fetch here
                del self._asks[key]
                self._fetch_token(ask.account, ask.proxy, ask.flight, now, wall, out)
        if self._wait_until is not None and now >= self._wait_until:
            for ref in self._watches:  # look again: the flight may have gone stale
                out.append(StopUpstream(ref))
            self._watches.clear()
            self._wait_until = None
        self._guarded(self._tokens_step, now, wall, out)

    def _start_fetch(self, url: str, current: str, hops: int,
                     out: list[MachineAction]) -> None:
        settings = self._gw.settings
        parsed, why = url_refusal(current, allow_http=settings.fetch_allow_http,
                                  allow_any_port=settings.fetch_allow_private)
        if parsed is None:
            self._fail_fetch(url, why or "refused")
            return
        ref = self._new_ref()
        self._fetching[ref] = (url, current, hops)
        out.append(Fetch(ref, parsed, settings.fetch_allow_private, self._cap(url)))

    def _cap(self, url: str) -> int:
        return MAX_DOCUMENT_BYTES if url in self._documents else MAX_IMAGE_BYTES

    def _fail_fetch(self, url: str, why: str, too_large: bool = False) -> None:
        if self._fetch_failed is None:  # the first failure is the one answered
            self._fetch_failed = (url, why, too_large)

    def _fetched(self, now: float, wall: float, out: list[MachineAction]) -> None:
        """Every image is in (or one failed): go on with the request."""
        for ref in list(self._fetching):
            out.append(StopUpstream(ref))
        self._fetching.clear()
        if self._fetch_failed is not None:
            assert self._call is not None
            url, why, too_large = self._fetch_failed
            if url not in self._documents:
                error = ClientError(f"image URL could not be fetched: {url}: {why}",
                                    code="image_fetch_failed")
            elif too_large:
                error = ClientError(f"document URL: {url}: {why} (the gateway's "
                                    "remote-document cap)", status=413,
                                    code="document_too_large")
            else:
                error = ClientError(f"document URL could not be fetched: {url}: {why}",
                                    code="document_fetch_failed")
            self._answer(Respond.error(error, self._call.extra), now, wall, out)
            return
        self._guarded(self._route, now, wall, out)

    def _relay_actions(self, actions: list[RelayAction], now: float, wall: float,
                       out: list[MachineAction]) -> None:
        checking = self.step is Step.MODERATING  # the check's answer is ours, not sent
        for action in actions:
            cls = type(action)
            if cls is StartUpstream or cls is RunShared:
                self._relay_refs.add(action.ref)  # type: ignore[union-attr]
                out.append(action)  # type: ignore[arg-type]
            elif cls is StopUpstream:
                if action.ref in self._relay_refs:  # type: ignore[union-attr]
                    self._relay_refs.discard(action.ref)  # type: ignore[union-attr]
                    out.append(action)  # type: ignore[arg-type]
            elif cls is TokenRefused:
                self._gw.tokens.invalidate(*action.credential)  # type: ignore
                if (shared := self._gw.router.shared) is not None:  # and the fleet's copy
                    key, token = action.credential  # type: ignore[union-attr]
                    out.append(TellShared((shared.command("token_drop", {
                        "a": token_name(key), "t": token}, now),)))
            elif checking:
                if cls is SendHead:
                    self._check_status = action.status  # type: ignore[union-attr]
                elif cls is SendData:
                    self._check_body += action.data  # type: ignore[union-attr]
            else:
                out.append(action)  # type: ignore[arg-type]
        relay = self._relay
        if relay is None or not relay.finished:
            return
        for ref in self._relay_refs:  # whatever is still open belongs to nobody now
            out.append(StopUpstream(ref))
        self._relay_refs.clear()
        self._relay = None
        o = relay.outcome
        if checking and not o.client_closed:
            assert self._call is not None
            flagged = self._gw.moderation_verdict(
                self._call, self._check_status, bytes(self._check_body))
            if flagged is not None:
                self._answer(flagged, now, wall, out)
            else:
                self._guarded(self._fetch_images, now, wall, out)
            return
        self.client_closed = self.client_closed or o.client_closed
        self._done(o.status if not checking else 499, tuple(o.attempts), now, out, relay)

    def _done(self, status: int, attempts: tuple, now: float,
              out: list[MachineAction], relay: Relay | None = None,
              error: tuple[str | None, str | None] | None = None) -> None:
        """The request is over: record it (log, metrics), stop whatever still runs for it."""
        if self.finished:
            return
        req = self.request
        gateway = self._gw
        if relay is not None and status == 200 and self._call is not None \
                and self._call.front is not None:  # a /v1/responses answer: kept for later
            gateway.response_finished(self._call, getattr(relay._front, "final", None),
                                      self._wall + (now - self._started))
        if gateway.log_requests:
            call, o = self._call, relay.outcome if relay is not None else None
            key, model = relay.labels if relay is not None else (None, None)
            if call is not None:
                key, model = key or gateway.key_label(call.key.api), model or call.model
            message, code = error or (None, None)
            if o is not None and o.error is not None and status >= 400:
                message = o.error.message
                code = o.error.code if isinstance(o.error.code, str) else None
            record = ServedRecord(
                req.method, req.target.split("?", 1)[0], status, now - self._started, attempts,
                self.client_closed, o.usage if o is not None else None, self._wall, key, model,
                None if o is None or o.first_byte is None else o.first_byte - self._started,
                self._peer, message, tuple(o.tries) if o is not None else ())
            settings = gateway.settings
            if settings.metrics:
                metrics = gateway.metrics
                metrics.in_flight(-1)
                metrics.observe(record)
                if code == "rate_limit_exceeded":  # the client key's own limit (router.py)
                    metrics.rate_limited("key")
            if gateway.stats is not None:
                gateway.stats.add(record, now)  # never raises; a full queue counts a drop
            if settings.access_log:
                out.append(Served(record))
        if self._tokens:
            cache = self._gw.tokens
            for ref, fetch in self._tokens.items():  # let a waiter take the fetch over
                cache.abandon(fetch.account.key, fetch.flight)
                self._share_token(fetch.account, fetch.owner, None, 0.0, now, out)
                out.append(StopUpstream(ref))
                out.append(Notify(fetch.account.key))
        for account, ask in self._asks.items():  # let a waiter of this process take over
            self._gw.tokens.abandon(account, ask.flight)
            out.append(Notify(account))
            if ask.ref is not None:  # the claim may have been granted unseen: free it
                out.append(StopUpstream(ask.ref))
                self._share_token(ask.account, ask.owner, None, 0.0, now, out)
        self._asks.clear()
        for ref in [*self._watches, *self._fetching, *self._relay_refs]:
            out.append(StopUpstream(ref))
        if self._query is not None:  # the client left: its query's answer is not wanted
            out.append(StopUpstream(self._query_ref))
            self._query = None
        if self._reload is not None:  # the client left: the reload is cancelled
            out.append(StopUpstream(self._query_ref))
            self._reload = None
        self._tokens.clear()
        self._watches.clear()
        self._fetching.clear()
        self._relay_refs.clear()
        self._routed = self._wait_until = None
        self.step = Step.DONE
        self.finished = True


def _internal_error() -> Respond:
    return Respond.error(GatewayError("internal error", status=500, code="internal_error"))


# The event argument is ``Any`` (as in relay/machine.py): each handler takes the one event
# type its key names.
Handler = Callable[[RequestMachine, Any, float, float, list[MachineAction]], None]

#: (step, event type) -> handler; pairs not listed are ignored
_TABLE: dict[tuple[Step, type], Handler] = {}
for _step in (Step.MODERATING, Step.RELAYING):
    for _ev in (UpstreamHead, UpstreamData, UpstreamEnded, UpstreamFailed, SharedDone):
        _TABLE[(_step, _ev)] = RequestMachine._on_upstream
    _TABLE[(_step, DeadlineReached)] = RequestMachine._on_deadline
for _ev in (UpstreamHead, UpstreamData, UpstreamEnded, UpstreamFailed):
    _TABLE[(Step.AWAITING_TOKEN, _ev)] = RequestMachine._on_token_upstream
_TABLE[(Step.AWAITING_TOKEN, Notified)] = RequestMachine._on_notified
_TABLE[(Step.AWAITING_TOKEN, SharedDone)] = RequestMachine._on_token_shared
_TABLE[(Step.AWAITING_TOKEN, DeadlineReached)] = RequestMachine._on_deadline
_TABLE[(Step.FETCHING, FetchDone)] = RequestMachine._on_fetch_done
_TABLE[(Step.QUERYING, QueryDone)] = RequestMachine._on_query_done
_TABLE[(Step.QUERYING, DeadlineReached)] = RequestMachine._on_query_late
_TABLE[(Step.RELOADING, Reloaded)] = RequestMachine._on_reloaded
_TABLE[(Step.SCRAPING, Scraped)] = RequestMachine._on_scraped
_TABLE[(Step.SCRAPING, DeadlineReached)] = RequestMachine._on_scraped
_TABLE[(Step.RELOADING, DeadlineReached)] = RequestMachine._on_reload_late
for _step in (Step.MODERATING, Step.FETCHING, Step.AWAITING_TOKEN, Step.RELAYING,
              Step.QUERYING, Step.RELOADING, Step.SCRAPING):
    _TABLE[(_step, ClientGone)] = RequestMachine._on_client_gone
del _step, _ev
