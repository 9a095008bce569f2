"""One client connection as one sans-IO machine: HTTP framing + gateway + relays.

Theory of operation
-------------------
A transport owns sockets, tasks and clocks; everything else about a client connection is here.
It feeds the session four kinds of input and performs the actions that come back, in order:

=================================  ==========================================================
input                              when
=================================  ==========================================================
``data_received(data, now, wall)`` bytes read from the client (``b""`` at EOF)
``upstream_event(ref, ev, now…)``  an event of the upstream exchange the transport runs for
                                   ``ref`` (``UpstreamHead/Data/Ended/Failed``)
``timer(now, wall)``               ``next_deadline()`` has passed
``write_failed(now, wall)``        writing to the client failed (it went away)
``drain(now, wall)``               shutting down: finish what is in flight, take no more
``fetch_done(ref, result, now…)``  the outcome of a ``Fetch`` (an image URL)
=================================  ==========================================================

=====================================  ======================================================
action                                 the transport…
=====================================  ======================================================
``Write(data)``                        writes the bytes to the client (a stalled write is a
                                       failed write)
``StartUpstream(ref, request, proxy)`` runs an upstream exchange, reporting its events with
                                       ``ref``
``StopUpstream(ref)``                  cancels that exchange and closes its connection
``Fetch(ref, url, allow_private, …)``  GETs a remote image for a vendor that needs it inline:
                                       resolves the name, connects only to the address
                                       ``ssrf.pick_address`` allows, reads at most
                                       ``max_bytes``, reports a ``FetchResult`` with ``ref``
``Close()``                            closes the client connection; the session is over
``Served(record)``                     logs one finished request
=====================================  ======================================================

The transport reads the client continuously, so a client that leaves mid-stream is noticed at
once and its upstream cancelled (R6). HTTP/1.1 requests on one connection are served one
after another; a relay must finish before the next request is looked at.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urljoin

import attrs

from .errors import ClientError, GatewayError
from .gateway import FetchFirst, Gateway, ModerateFirst, Respond
from .http.url import Url
from .ssrf import FETCH_TIMEOUT, MAX_IMAGE_BYTES, MAX_REDIRECTS, url_refusal
from .http.server import (
    ClientClosed,
    ProtocolFailure,
    RequestReceived,
    ServerConnection,
    ServerLimits,
)
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
from .vendors.base import UpstreamRequest

__all__ = ["Session", "Write", "StartUpstream", "StopUpstream", "Close", "Served",
           "ServedRecord", "SessionAction", "Fetch", "FetchResult"]


@attrs.frozen
class Write:
    data: bytes


@attrs.frozen
class StartUpstream:
    ref: int
    request: UpstreamRequest
    proxy: str | None = None


@attrs.frozen
class StopUpstream:
    ref: int


@attrs.frozen
class Close:
    pass


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


SessionAction = Write | StartUpstream | StopUpstream | Close | Served | Fetch
UpstreamEvent = UpstreamHead | UpstreamData | UpstreamEnded | UpstreamFailed


class Session:
    """One HTTP/1.1 client connection (see the module docstring)."""

    def __init__(self, gateway: Callable[[], Gateway], limits: ServerLimits = ServerLimits(),
                 *, now: float = 0.0) -> None:
        self._gateway = gateway
        self.conn = ServerConnection(limits, now=now)
        self.closed = False
        self._relay: Relay | None = None
        self._request: RequestReceived | None = None
        self._started = 0.0
        self._next_ref = 0
        self._refs: dict[int, int] = {}  # ref -> relay attempt number
        self._by_attempt: dict[int, int] = {}  # relay attempt number -> ref
        self._fetch: FetchFirst | None = None  # remote images being fetched for a request
        self._fetching: dict[int, tuple[str, str, int]] = {}  # ref -> (url, current, hops)
        self._images: dict[str, tuple[str, bytes]] = {}
        self._fetch_error: str | None = None
        self._check: ModerateFirst | None = None  # a moderation relay running for a request
        self._check_status = 0
        self._check_body = bytearray()

    # -- inputs -------------------------------------------------------------------------------

    def data_received(self, data: bytes, now: float, wall: float) -> list[SessionAction]:
        if self.closed:
            return []
        out: list[SessionAction] = []
        events = self.conn.receive_data(data, now)
        pending = self.conn.data_to_send()  # e.g. 100 Continue
        if pending:
            out.append(Write(pending))
        self._connection_events(events, now, wall, out)
        return out

    def upstream_event(self, ref: int, event: UpstreamEvent, now: float,
                       wall: float) -> list[SessionAction]:
        attempt = self._refs.get(ref)
        if self.closed or self._relay is None or attempt is None:
            return []
        if isinstance(event, (UpstreamEnded, UpstreamFailed)):
            self._forget(ref)
        out: list[SessionAction] = []
        self._relay_actions(self._relay.handle(attrs.evolve(event, attempt=attempt), now),
                            now, wall, out)
        return out

    def timer(self, now: float, wall: float) -> list[SessionAction]:
        if self.closed:
            return []
        out: list[SessionAction] = []
        if self._relay is not None:
            deadline = self._relay.next_deadline()
            if deadline is not None and now >= deadline:
                self._relay_actions(self._relay.handle(DeadlineReached(), now), now, wall, out)
            return out
        self._connection_events(self.conn.deadline_reached(now), now, wall, out)
        return out

    def write_failed(self, now: float, wall: float) -> list[SessionAction]:
        if self.closed:
            return []
        out: list[SessionAction] = []
        if self._relay is not None:
            self._relay_actions(self._relay.handle(ClientGone(), now), now, wall, out)
        self._close(out)
        return out

    def fetch_done(self, ref: int, result: FetchResult, now: float,
                   wall: float) -> list[SessionAction]:
        if self.closed or ref not in self._fetching:
            return []
        out: list[SessionAction] = []
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
        if not self._fetching and self._fetch is not None and not self.closed:
            self._fetched(now, wall, out)
        return out

    def drain(self, now: float, wall: float) -> list[SessionAction]:
        """Graceful shutdown: an idle connection closes now; a busy one after its response."""
        if self.closed:
            return []
        out: list[SessionAction] = []
        self.conn.close_after_response()
        if self._relay is None and self._fetch is None and not self.conn.busy:
            self._close(out)
        return out

    def next_deadline(self) -> float | None:
        if self.closed:
            return None
        if self._relay is not None:
            return self._relay.next_deadline()
        return self.conn.next_deadline()

    # -- internals ----------------------------------------------------------------------------

    def _connection_events(self, events: list, now: float, wall: float,
                           out: list[SessionAction]) -> None:
        queue = list(events)
        while queue and not self.closed:
            event = queue.pop(0)
            if isinstance(event, ClientClosed):
                if self._relay is not None:
                    self._relay_actions(self._relay.handle(ClientGone(), now), now, wall, out)
                self._close(out)
            elif isinstance(event, ProtocolFailure):
                out.append(Write(self.conn.error_response(event.status, event.message, now=now)))
                self._close(out)
            elif isinstance(event, RequestReceived):
                if self._relay is not None or self._fetch is not None:
                    continue  # cannot happen: requests wait for the one in progress
                self._request, self._started = event, now
                try:
                    reply = self._gateway().handle(event.method, event.target, event.headers,
                                                   event.body, now=now, wall=wall)
                except Exception:  # a bug must cost one 500, never the connection or a hang
                    reply = _internal_error()
                self._answer(reply, now, wall, out, queue)

    def _answer(self, reply: "Respond | Relay | FetchFirst | ModerateFirst", now: float,
                wall: float,
                out: list[SessionAction], queue: list) -> None:
        if isinstance(reply, Respond):
            out.append(Write(self.conn.respond(reply.status, reply.headers, reply.body, now=now)))
            self._served(reply.status, (), False, now, out)
            queue.extend(self._after_response(now, out))
        elif isinstance(reply, ModerateFirst):
            self._check, self._check_status, self._check_body = reply, 0, bytearray()
            self._relay = reply.relay
            self._relay_actions(reply.relay.start(now), now, wall, out, drain_into=queue)
        elif isinstance(reply, FetchFirst):
            self._fetch, self._images, self._fetch_error = reply, {}, None
            for url in reply.urls:
                self._start_fetch(url, url, 0, out)
            if not self._fetching:  # every URL refused before fetching
                self._fetched(now, wall, out, queue)
        else:
            self._relay = reply
            self._relay_actions(reply.start(now), now, wall, out, drain_into=queue)

    def _start_fetch(self, url: str, current: str, hops: int, out: list[SessionAction]) -> None:
        settings = self._gateway().settings
        parsed, why = url_refusal(current, allow_http=settings.fetch_allow_http,
                                  allow_any_port=settings.fetch_allow_private)
        if parsed is None:
            self._fetch_error = self._fetch_error or f"{url}: {why}"
            return
        self._next_ref += 1
        self._fetching[self._next_ref] = (url, current, hops)
        out.append(Fetch(self._next_ref, parsed, settings.fetch_allow_private))

    def _fetched(self, now: float, wall: float, out: list[SessionAction],
                 queue: list | None = None) -> None:
        """Every image is in (or one failed): go on with the request."""
        fetch, self._fetch = self._fetch, None
        assert fetch is not None
        for ref in list(self._fetching):
            out.append(StopUpstream(ref))
        self._fetching.clear()
        if self._fetch_error is not None:
            reply: Respond | Relay | FetchFirst = Respond.error(ClientError(
                f"image URL could not be fetched: {self._fetch_error}",
                code="image_fetch_failed"), fetch.headers)
        else:
            try:
                reply = fetch.resume(self._images, now, wall)
            except Exception:
                reply = _internal_error()
        pending: list = [] if queue is None else queue
        self._answer(reply, now, wall, out, pending)
        if queue is None and pending:
            self._connection_events(pending, now, wall, out)

    def _relay_actions(self, actions: list[RelayAction], now: float, wall: float,
                       out: list[SessionAction], drain_into: list | None = None) -> None:
        for action in actions:
            if isinstance(action, OpenUpstream):
                self._next_ref += 1
                self._refs[self._next_ref] = action.attempt
                self._by_attempt[action.attempt] = self._next_ref
                out.append(StartUpstream(self._next_ref, action.request, action.proxy))
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
            elif isinstance(action, SendHead):
                out.append(Write(self.conn.start_response(
                    action.status, action.headers, content_length=action.content_length)))
            elif isinstance(action, SendData):
                out.append(Write(self.conn.send_data(action.data)))
            elif isinstance(action, EndResponse):
                out.append(Write(self.conn.end_response(now)))
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
                self._close(out)
                return
            try:
                reply = check.resume(self._check_status, bytes(self._check_body), now, wall)
            except Exception:
                reply = _internal_error()
            pending: list = []
            self._answer(reply, now, wall, out, pending)
            if pending:
                if drain_into is not None:
                    drain_into.extend(pending)
                else:
                    self._connection_events(pending, now, wall, out)
            return
        o = relay.outcome
        self._served(o.status, tuple(o.attempts), o.client_closed, now, out)
        if o.client_closed:
            self._close(out)
            return
        more = self._after_response(now, out)
        if drain_into is not None:
            drain_into.extend(more)
        elif more:
            self._connection_events(more, now, wall, out)

    def _after_response(self, now: float, out: list[SessionAction]) -> list:
        if self.conn.must_close:
            self._close(out)
            return []
        return self.conn.next_request(now)

    def _served(self, status: int, attempts: tuple, client_closed: bool, now: float,
                out: list[SessionAction]) -> None:
        req = self._request
        if req is None:
            return
        out.append(Served(ServedRecord(req.method, req.target.split("?", 1)[0], status,
                                       now - self._started, attempts, client_closed)))
        self._request = None

    def _forget(self, ref: int) -> None:
        attempt = self._refs.pop(ref, None)
        if attempt is not None:
            self._by_attempt.pop(attempt, None)

    def _close(self, out: list[SessionAction]) -> None:
        if not self.closed:
            for ref in list(self._fetching):
                out.append(StopUpstream(ref))
            self._fetching.clear()
            self.closed = True
            out.append(Close())


def _internal_error() -> Respond:
    return Respond.error(GatewayError("internal error", status=500, code="internal_error"))
