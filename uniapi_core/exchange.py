"""One request's life once its head and body are in: gateway, image fetches, moderation, relay.

Theory of operation
-------------------
An ``Exchange`` is what both client protocols share. The HTTP/1.1 session runs one at a time
per connection; the HTTP/2 session runs one per stream. The exchange never touches framing:
it says *what* to answer with the relay's ``SendHead``/``SendData``/``EndResponse`` and the
session turns those into bytes for its protocol (h11 or h2).

Inputs mirror the session's (``upstream_event``, ``fetch_done``, ``timer``, ``client_gone``);
outputs are the session actions ``StartUpstream``, ``StopUpstream``, ``Fetch`` and ``Served``
plus the three response actions. ``refs`` is the connection's ref allocator, so refs stay
unique across every exchange of one connection. The exchange is ``finished`` when nothing of
it runs any more (its relay, if any, is final and every upstream it opened is stopped);
``client_closed`` then tells whether it ended because the client went away.

A gateway bug costs one 500 response, never the connection: every call into the gateway
(``handle``, and the ``resume`` of a fetch or a moderation check) is guarded.

Vertex access tokens (``TokenFirst``)
-------------------------------------
When the gateway answers ``TokenFirst`` the relay is ready but some service account has no
fresh token in the gateway's ``TokenCache``. For each such account the exchange reads the
cache's state: ``IDLE`` → it claims the one fetch (``begin``), signs the JWT and runs the token
POST as a plain ``StartUpstream`` of its own (not a relay attempt; bounded by
``TOKEN_TIMEOUT`` and ``gauth.MAX_TOKEN_ANSWER``), then records the answer (``succeed`` /
``fail``); ``FLYING`` → another request (on this connection or any other) is fetching it, so
this one waits, re-reading the cache every ``TOKEN_POLL`` seconds through ``next_deadline``
— the only way to be woken without a transport change, since a session runs only on its own
connection's inputs; ``FRESH``/``BACKOFF`` → nothing to do. Once no account is pending the
relay starts; an attempt whose token is missing is skipped by routing with the token error.
The cache holds no references to waiters, so a waiter that goes away costs nothing; a fetcher
that goes away ``abandon``s its flight and the next waiter to look takes it over.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urljoin

import attrs

from .errors import ClientError, GatewayError, UniapiError
from .gateway import FetchFirst, Gateway, ModerateFirst, Respond, TokenFirst
from .http.server import RequestReceived
from .http.url import Url
from .relay import (
    CancelUpstream,
    ClientGone,
    DeadlineReached,
    EndResponse,
    OpenUpstream,
    Relay,
    RelayAction,
    SendData,
    SendHead,
)
from .relay.events import UpstreamData, UpstreamEnded, UpstreamFailed, UpstreamHead
from .ssrf import FETCH_TIMEOUT, MAX_IMAGE_BYTES, MAX_REDIRECTS, url_refusal
from .vendors import gauth
from .vendors.base import UpstreamRequest

__all__ = ["Exchange", "StartUpstream", "StopUpstream", "Fetch", "FetchResult", "Served",
           "ServedRecord", "ExchangeAction", "UpstreamEvent"]


@attrs.frozen
class StartUpstream:
    ref: int
    request: UpstreamRequest
    proxy: str | None = None


@attrs.frozen
class StopUpstream:
    ref: int


@attrs.frozen
class Fetch:
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
class ServedRecord:
    method: str
    path: str
    status: int
    duration: float
    attempts: tuple[tuple[str, str, str], ...] = ()
    client_closed: bool = False


@attrs.frozen
class Served:
    record: ServedRecord


ExchangeAction = (StartUpstream | StopUpstream | Fetch | Served | SendHead | SendData
                  | EndResponse)
UpstreamEvent = UpstreamHead | UpstreamData | UpstreamEnded | UpstreamFailed
Reply = Respond | Relay | FetchFirst | ModerateFirst | TokenFirst

#: how often a request waiting for another request's token fetch looks at the cache (seconds)
TOKEN_POLL = 0.01
#: the longest a token POST may take, head to end (seconds)
TOKEN_TIMEOUT = 30.0


@attrs.define
class _TokenFetch:
    """One token POST this exchange runs."""

    account: gauth.ServiceAccount
    flight: int
    deadline: float
    status: int = 0
    body: bytearray = attrs.Factory(bytearray)


def _as_attempt(event: UpstreamEvent, attempt: int) -> UpstreamEvent:
    """``event`` renumbered for the relay (``attrs.evolve`` costs ~1.7 µs, this ~0.4)."""
    cls = type(event)
    if cls is UpstreamData:
        return UpstreamData(attempt, event.data)  # type: ignore[union-attr]
    if cls is UpstreamHead:
        return UpstreamHead(attempt, event.status, event.headers)  # type: ignore[union-attr]
    if cls is UpstreamEnded:
        return UpstreamEnded(attempt)
    return attrs.evolve(event, attempt=attempt)


class Exchange:
    """One request, from ``start`` until ``finished`` (see the module docstring)."""

    def __init__(self, gateway: Callable[[], Gateway], request: RequestReceived,
                 refs: Callable[[], int], now: float) -> None:
        self._gateway = gateway
        self.request = request
        self._new_ref = refs
        self._started = now
        self.finished = False
        self.client_closed = False
        self._relay: Relay | None = None
        self._refs: dict[int, int] = {}  # ref -> relay attempt number
        self._by_attempt: dict[int, int] = {}  # relay attempt number -> ref
        self._fetch: FetchFirst | None = None  # remote images being fetched
        self._fetching: dict[int, tuple[str, str, int]] = {}  # ref -> (url, current, hops)
        self._images: dict[str, tuple[str, bytes]] = {}
        self._fetch_error: str | None = None
        self._check: ModerateFirst | None = None  # a moderation relay running first
        self._check_status = 0
        self._check_body = bytearray()
        self._token: TokenFirst | None = None  # Vertex tokens being fetched or awaited
        self._token_refs: dict[int, _TokenFetch] = {}
        self._token_poll: float | None = None

    # -- inputs -------------------------------------------------------------------------------

    def start(self, now: float, wall: float) -> list[ExchangeAction]:
        req = self.request
        try:
            reply = self._gateway().handle(req.method, req.target, req.headers, req.body,
                                           now=now, wall=wall)
        except Exception:  # a bug must cost one 500, never the connection or a hang
            reply = _internal_error()
        out: list[ExchangeAction] = []
        self._answer(reply, now, wall, out)
        return out

    def owns(self, ref: int) -> bool:
        return ref in self._refs or ref in self._fetching or ref in self._token_refs

    def upstream_event(self, ref: int, event: UpstreamEvent, now: float,
                       wall: float) -> list[ExchangeAction]:
        if ref in self._token_refs:
            return [] if self.finished else self._token_event(ref, event, now, wall)
        attempt = self._refs.get(ref)
        if self.finished or self._relay is None or attempt is None:
            return []
        if isinstance(event, (UpstreamEnded, UpstreamFailed)):
            self._forget(ref)
        out: list[ExchangeAction] = []
        self._relay_actions(self._relay.handle(_as_attempt(event, attempt), now),
                            now, wall, out)
        return out

    def fetch_done(self, ref: int, result: FetchResult, now: float,
                   wall: float) -> list[ExchangeAction]:
        if self.finished or ref not in self._fetching:
            return []
        out: list[ExchangeAction] = []
        url, current, hops = self._fetching.pop(ref)
        location = dict(result.headers).get("location")
        if result.error is not None:
            self._fetch_error = self._fetch_error or f"{url}: {result.error}"
        elif result.status in (301, 302, 303, 307, 308) and location:
            if hops >= MAX_REDIRECTS:
                self._fetch_error = self._fetch_error or f"{url}: too many redirects"
            else:
                self._start_fetch(url, urljoin(current, location), hops + 1, out)
        elif result.status != 200:
            self._fetch_error = self._fetch_error or f"{url}: HTTP {result.status}"
        elif result.truncated:
            self._fetch_error = self._fetch_error or f"{url}: larger than {MAX_IMAGE_BYTES} bytes"
        else:
            media = dict(result.headers).get("content-type", "").split(";")[0].strip().lower()
            self._images[url] = (media, result.body)  # the vendor sniffs the bytes too
        if not self._fetching and self._fetch is not None:
            self._fetched(now, wall, out)
        return out

    def timer(self, now: float, wall: float) -> list[ExchangeAction]:
        out: list[ExchangeAction] = []
        if self._token is not None and not self.finished:
            self._token_timer(now, wall, out)
            return out
        deadline = self.next_deadline()
        if self._relay is not None and deadline is not None and now >= deadline:
            self._relay_actions(self._relay.handle(DeadlineReached(), now), now, wall, out)
        return out

    def client_gone(self, now: float, wall: float) -> list[ExchangeAction]:
        """The client left (EOF, failed write, stream reset): stop everything."""
        if self.finished:
            return []
        out: list[ExchangeAction] = []
        self.client_closed = True
        if self._relay is not None:
            self._relay_actions(self._relay.handle(ClientGone(), now), now, wall, out)
        if not self.finished:  # still fetching images, or a relay that would not end
            self._served(499, (), True, now, out)
            self._finish(out)
        return out

    def next_deadline(self) -> float | None:
        if self.finished:
            return None
        if self._token is not None:
            times = [f.deadline for f in self._token_refs.values()]
            if self._token_poll is not None:
                times.append(self._token_poll)
            return min(times) if times else None
        if self._relay is None:
            return None
        return self._relay.next_deadline()

    # -- internals ----------------------------------------------------------------------------

    def _answer(self, reply: Reply, now: float, wall: float, out: list[ExchangeAction]) -> None:
        if isinstance(reply, Respond):
            out.append(SendHead(reply.status, reply.headers, len(reply.body)))
            out.append(SendData(reply.body))
            out.append(EndResponse())
            self._served(reply.status, (), False, now, out)
            self._finish(out)
        elif isinstance(reply, ModerateFirst):
            self._check, self._check_status, self._check_body = reply, 0, bytearray()
            self._relay = reply.relay
            self._relay_actions(reply.relay.start(now), now, wall, out)
        elif isinstance(reply, TokenFirst):
            self._token, self._token_refs, self._token_poll = reply, {}, None
            self._token_step(now, wall, out)
        elif isinstance(reply, FetchFirst):
            self._fetch, self._images, self._fetch_error = reply, {}, None
            for url in reply.urls:
                self._start_fetch(url, url, 0, out)
            if not self._fetching:  # every URL refused before fetching
                self._fetched(now, wall, out)
        else:
            self._relay = reply
            self._relay_actions(reply.start(now), now, wall, out)

    def _token_step(self, now: float, wall: float, out: list[ExchangeAction]) -> None:
        """Fetch or wait for every token ``TokenFirst`` needs; start the relay when none is
        pending any more (see the module docstring)."""
        tf = self._token
        assert tf is not None
        cache = tf.tokens
        mine = {f.account.key for f in self._token_refs.values()}
        waiting = False
        for account, proxy in tf.accounts:
            key = account.key
            if key in mine:
                continue
            state, _ = cache.state(key, now)
            if state == gauth.FLYING:
                waiting = True
            elif state == gauth.IDLE:
                flight = cache.begin(key, now)
                try:
                    request = gauth.token_request(account, wall)
                except UniapiError as exc:
                    cache.fail(key, flight, exc, now)
                    continue
                except Exception:  # a signing bug must cost this provider, not the connection
                    cache.fail(key, flight, GatewayError(
                        "internal error while signing the Vertex token request", status=500,
                        code="internal_error"), now)
                    continue
                ref = self._new_ref()
                self._token_refs[ref] = _TokenFetch(account, flight, now + TOKEN_TIMEOUT)
                mine.add(key)
                out.append(StartUpstream(ref, request, proxy))
        if self._token_refs or waiting:
            self._token_poll = now + TOKEN_POLL if waiting else None
            return
        self._token, self._token_poll = None, None
        self._answer(tf.relay, now, wall, out)

    def _token_event(self, ref: int, event: UpstreamEvent, now: float,
                     wall: float) -> list[ExchangeAction]:
        tf = self._token
        fetch = self._token_refs[ref]
        assert tf is not None
        out: list[ExchangeAction] = []
        account = fetch.account
        if isinstance(event, UpstreamHead):
            fetch.status = event.status
            return out
        if isinstance(event, UpstreamData):
            fetch.body += event.data
            if len(fetch.body) <= gauth.MAX_TOKEN_ANSWER:
                return out
            out.append(StopUpstream(ref))
            tf.tokens.fail(account.key, fetch.flight, gauth.token_failure(
                account, f"an answer larger than {gauth.MAX_TOKEN_ANSWER} bytes"), now)
        elif isinstance(event, UpstreamEnded):
            try:
                token, expires_in = gauth.parse_token_answer(account, fetch.status,
                                                             bytes(fetch.body))
            except UniapiError as exc:
                tf.tokens.fail(account.key, fetch.flight, exc, now)
            else:
                tf.tokens.succeed(account.key, fetch.flight, token, expires_in, now)
        else:  # UpstreamFailed
            tf.tokens.fail(account.key, fetch.flight, gauth.token_failure(
                account, f"{event.message}"), now)
        del self._token_refs[ref]
        self._token_step(now, wall, out)
        return out

    def _token_timer(self, now: float, wall: float, out: list[ExchangeAction]) -> None:
        tf = self._token
        assert tf is not None
        changed = False
        for ref, fetch in list(self._token_refs.items()):
            if now >= fetch.deadline:
                del self._token_refs[ref]
                out.append(StopUpstream(ref))
                tf.tokens.fail(fetch.account.key, fetch.flight, gauth.token_failure(
                    fetch.account, f"no answer within {TOKEN_TIMEOUT:g} s"), now)
                changed = True
        if changed or (self._token_poll is not None and now >= self._token_poll):
            self._token_step(now, wall, out)

    def _start_fetch(self, url: str, current: str, hops: int,
                     out: list[ExchangeAction]) -> None:
        settings = self._gateway().settings
        parsed, why = url_refusal(current, allow_http=settings.fetch_allow_http,
                                  allow_any_port=settings.fetch_allow_private)
        if parsed is None:
            self._fetch_error = self._fetch_error or f"{url}: {why}"
            return
        ref = self._new_ref()
        self._fetching[ref] = (url, current, hops)
        out.append(Fetch(ref, parsed, settings.fetch_allow_private))

    def _fetched(self, now: float, wall: float, out: list[ExchangeAction]) -> None:
        """Every image is in (or one failed): go on with the request."""
        fetch, self._fetch = self._fetch, None
        assert fetch is not None
        for ref in list(self._fetching):
            out.append(StopUpstream(ref))
        self._fetching.clear()
        if self._fetch_error is not None:
            reply: Reply = Respond.error(ClientError(
                f"image URL could not be fetched: {self._fetch_error}",
                code="image_fetch_failed"), fetch.headers)
        else:
            try:
                reply = fetch.resume(self._images, now, wall)
            except Exception:
                reply = _internal_error()
        self._answer(reply, now, wall, out)

    def _relay_actions(self, actions: list[RelayAction], now: float, wall: float,
                       out: list[ExchangeAction]) -> None:
        ref: int | None
        for action in actions:
            if isinstance(action, OpenUpstream):
                ref = self._new_ref()
                self._refs[ref] = action.attempt
                self._by_attempt[action.attempt] = ref
                out.append(StartUpstream(ref, action.request, action.proxy))
            elif isinstance(action, CancelUpstream):
                ref = self._by_attempt.get(action.attempt)
                if ref is not None:
                    self._forget(ref)
                    out.append(StopUpstream(ref))
            elif self._check is not None:  # a moderation check: its answer is ours, not sent
                if isinstance(action, SendHead):
                    self._check_status = action.status
                elif isinstance(action, SendData):
                    self._check_body += action.data
            else:
                out.append(action)
        relay = self._relay
        if relay is None or not relay.finished:
            return
        for ref in list(self._refs):  # whatever is still open belongs to nobody now
            self._forget(ref)
            out.append(StopUpstream(ref))
        self._relay = None
        check = self._check
        if check is not None:
            self._check = None
            if relay.outcome.client_closed:
                self.client_closed = True
                self._served(499, tuple(relay.outcome.attempts), True, now, out)
                self._finish(out)
                return
            try:
                reply = check.resume(self._check_status, bytes(self._check_body), now, wall)
            except Exception:
                reply = _internal_error()
            self._answer(reply, now, wall, out)
            return
        o = relay.outcome
        self.client_closed = self.client_closed or o.client_closed
        self._served(o.status, tuple(o.attempts), o.client_closed, now, out)
        self._finish(out)

    def _served(self, status: int, attempts: tuple, client_closed: bool, now: float,
                out: list[ExchangeAction]) -> None:
        if self.finished:
            return
        req = self.request
        out.append(Served(ServedRecord(req.method, req.target.split("?", 1)[0], status,
                                       now - self._started, attempts, client_closed)))

    def _finish(self, out: list[ExchangeAction]) -> None:
        for ref, fetch in list(self._token_refs.items()):  # let a waiter take the fetch over
            if self._token is not None:
                self._token.tokens.abandon(fetch.account.key, fetch.flight)
            out.append(StopUpstream(ref))
        self._token_refs.clear()
        self._token = self._token_poll = None
        for ref in list(self._fetching):
            out.append(StopUpstream(ref))
        self._fetching.clear()
        for ref in list(self._refs):
            self._forget(ref)
            out.append(StopUpstream(ref))
        self.finished = True

    def _forget(self, ref: int) -> None:
        attempt = self._refs.pop(ref, None)
        if attempt is not None:
            self._by_attempt.pop(attempt, None)


def _internal_error() -> Respond:
    return Respond.error(GatewayError("internal error", status=500, code="internal_error"))
