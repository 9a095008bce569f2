"""The upstream connection manager, sans I/O: which connection an attempt uses, when one is
kept, closed or retried, the Host rule and the failure texts. The deadlines
(``UpstreamTimeouts``) and the keep-alive pool (``IdlePool``) are in ``http/pool.py``.

Theory of operation
-------------------
A transport's ``UpstreamPool`` owns one ``ConnectionManager`` and does only I/O: connect,
start TLS, read, write, close, sleep until a deadline, spawn and cancel. Connections are keyed
by ``(proxy, origin)``: tunnelled connections never mix with direct ones.

For each upstream exchange the transport calls ``target(request, proxy)`` (the URL and proxy
parsed, the ``Host`` header set: an ``UpstreamFailed`` when either is bad), then, per attempt,
``route(key, now, avoid, retried)``, which answers with one of:

- a connection to use: an ``H2Link`` that can open a stream (https origins not known to be
  HTTP/1.1-only), or an idle HTTP/1.1 connection from ``IdlePool``;
- ``Wait(pending)``: another request is connecting to this https origin; wait for
  ``pending.waiter`` (made by the transport's ``new_waiter``), then report ``pending.failure``
  if it is set, else route again. Concurrent first requests thus share one connect and its
  failure;
- ``Connect(pending)``: open a connection (within ``timeouts.connect``: TCP, the proxy
  handshake and TLS together), hand it to ``adopt`` (ALPN ``h2`` makes it an HTTP/2 link;
  anything else marks an https key HTTP/1.1-only), and call ``connect_over`` whatever happens.
  A failure is ``connect_failure(key, stage, kind, exc)``, where ``kind`` comes from the
  transport's one exception table (``failure_kind``).

``attempt(conn, target, fresh, retried)`` gives the attempt's sans-IO driver (``H1Attempt`` or
``H2Attempt``); the transport loops: ``start(sink)`` (bytes to write), then post every event
of ``take()`` (calling ``posted`` after each), stop once ``outcome`` is set, else ``feed`` what
it read (bytes, or the link's next stream event); an I/O exception goes to ``lost``; at the end
``finish()``. Outcomes: ``DONE`` (response complete), ``FAILED`` (an ``UpstreamFailed`` was
posted) and ``RETRY``, the two retry rules:

- stale: a reused keep-alive connection that fails (EOF or error) before any response byte is
  tried once more on a fresh connection;
- refused: an HTTP/2 stream the server did not process (REFUSED_STREAM, or above a GOAWAY's last
  stream id) and that produced no response head is tried once more on another connection.

``release(conn, outcome, now)`` then says which HTTP/1.1 connections to close: the attempt's own
unless it completed and may be kept (keep-alive agreed, room in the pool), plus any idle ones
that expired. An abandoned attempt (cancelled, outcome None) is never pooled.

Whole-body fetches (model discovery, ``CONFIG_URL``, images) post into a ``Collector``; the
texts they report are composed here too (``no_answer``, ``fetch_failure``, ``config_url_text``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar, cast

import attrs

from .errors import describe_os_error
from .request_machine import FetchResult
from .http import pool as _pool
from .http.client import (
    ClientConnection,
    ResponseData,
    ResponseEnd,
    ResponseHead,
    UpstreamProtocolError,
)
from .http.h2client import H2Link, H2Pool, StreamFailed
from .http.pool import IdlePool, UpstreamTimeouts
from .http.proxy import ProxyError, ProxySpec, parse_proxy
from .http.url import Url, parse_url
from .relay.events import UpstreamData, UpstreamEnded, UpstreamFailed, UpstreamHead

__all__ = [
    "TIMEOUT", "PROXY", "LOST", "ORIGIN", "PROXY_TCP", "HANDSHAKE", "failure_kind", "H1Conn",
    "Target", "Pending", "Connect", "Wait", "ConnectionManager", "Attempt", "H1Attempt",
    "H2Attempt", "DONE", "FAILED", "RETRY", "Collector", "Full", "no_answer", "fetch_failure",
    "image_request", "config_url_text", "tunnel_open", "SHUTTING_DOWN", "ADDRESS_REFUSED",
]

#: Said to requests still waiting on an HTTP/2 link when the gateway shuts down.
SHUTTING_DOWN = "the gateway is shutting down"

# Failure kinds a transport's exception table maps to (``failure_kind``).
TIMEOUT = "timeout"  #: the connect (or fetch) deadline passed
PROXY = "proxy"  #: the core's proxy handshake refused (``ProxyError``)
LOST = "lost"  #: the OS, TLS or the runtime reported a broken connection

# Where a connect was when it failed (``connect_failure``).
ORIGIN, PROXY_TCP, HANDSHAKE = "origin", "proxy tcp", "handshake"

Key = Hashable  # (ProxySpec | None, (scheme, host, port))
C = TypeVar("C")
W = TypeVar("W")
FailureTable = tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...]


def failure_kind(exc: BaseException, table: FailureTable) -> str | None:
    """The kind the transport's ``table`` (``((exception types, kind), …)``, first match wins)
    gives ``exc``; None: not a failure (cancellation, a bug), to be re-raised."""
    if isinstance(exc, ProxyError):
        return PROXY
    for types, kind in table:
        if isinstance(exc, types):
            return kind
    return None


def _timed_out(kind: str | None, exc: BaseException) -> bool:
    """The deadline passed (an OS error that happens to be ETIMEDOUT is an OS error)."""
    return kind == TIMEOUT and not isinstance(getattr(exc, "errno", None), int)


def no_answer(timeout: float) -> str:
    return f"no answer within {timeout:g} s"


# -- routing ------------------------------------------------------------------------------------


class H1Conn:
    """An HTTP/1.1 upstream connection's sans-IO side (a transport subclasses it)."""

    def __init__(self, key: Key) -> None:
        self.key = key
        self.h11 = ClientConnection()


@attrs.frozen
class Target:
    """One upstream request, ready to route: ``headers`` has ``Host`` first (the URL's
    authority; any ``Host`` the request carried is dropped)."""

    url: Url
    key: Key
    method: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    ref: int = 0  #: the ``StartUpstream`` ref every event of this request carries

    def failed(self, failure: UpstreamFailed) -> UpstreamFailed:
        """A connect failure (shared by the requests that waited on one connect) as this
        request's event."""
        return UpstreamFailed(self.ref, failure.kind, failure.message)


class Pending(Generic[W]):
    """A connect that concurrent first requests for an https key wait for."""

    def __init__(self, waiter: W) -> None:
        self.waiter = waiter
        self.failure: UpstreamFailed | None = None


@attrs.frozen
class Connect:
    """Open a new connection (``pending``: others wait for it)."""

    pending: Pending | None


@attrs.frozen
class Wait:
    """Wait for another request's connect, then route again."""

    pending: Pending


L = TypeVar("L", bound=H2Link)


class ConnectionManager(Generic[C, L]):
    """Routing, pooling and failure text for a transport's upstream connections (see the module
    docstring). ``new_waiter()`` makes the transport's event (``wait()``/``set()``)."""

    def __init__(self, new_waiter: Callable[[], object],
                 timeouts: UpstreamTimeouts | None = None) -> None:
        self.timeouts = timeouts or _pool.UPSTREAM_TIMEOUTS
        self.idle: IdlePool[C] = IdlePool(idle=self.timeouts.idle)
        self.h2: H2Pool[L] = H2Pool()
        self._connecting: dict[Key, Pending] = {}
        self._new_waiter = new_waiter
        self._parsed: dict[tuple[str, str | None], tuple[Url, Key] | str] = {}

    def target(self, req: object, proxy: str | None, ref: int = 0) -> Target | UpstreamFailed:
        """``req`` (an ``UpstreamRequest``) parsed and keyed, or the failure to report; its
        events carry ``ref``. A config has few distinct upstream and proxy URLs: each is
        parsed once (``_parsed``, cleared past ``MAX_PARSED`` entries)."""
        url_text: str = req.url  # type: ignore[attr-defined]
        parsed = self._parsed.get((url_text, proxy))
        if parsed is None:
            parsed = self._parse(url_text, proxy)
            if len(self._parsed) >= MAX_PARSED:
                self._parsed.clear()
            self._parsed[(url_text, proxy)] = parsed
        if isinstance(parsed, str):
            return UpstreamFailed(ref, "connect", parsed)
        url, key = parsed
        headers = (("host", url.host_header), *[
            h for h in req.headers if h[0].lower() != "host"])  # type: ignore[attr-defined]
        return Target(url, key, req.method, headers, req.body, ref)  # type: ignore[attr-defined]

    @staticmethod
    def _parse(url_text: str, proxy: str | None) -> tuple[Url, Key] | str:
        """The URL and the pool key, or the failure text."""
        try:
            url = parse_url(url_text)
        except ValueError as exc:
            return f"bad upstream URL: {exc}"
        try:
            spec = parse_proxy(proxy) if proxy else None
        except ValueError as exc:  # the message never quotes the URL (credentials)
            return f"bad proxy URL: {exc}"
        return url, (spec, url.origin)

    def route(self, key: Key, now: float, avoid: object = None,
              retried: bool = False) -> C | L | Connect | Wait:
        """The connection for the next attempt, or what to do to get one. ``avoid``: the
        connection a retry must not use; ``retried``: never an idle HTTP/1.1 one then."""
        if key[1][0] == "https" and key not in self.h2.h1_only:  # type: ignore[index]
            link = self.h2.pick(key, avoid)
            if link is not None:
                return link
            if (pending := self._connecting.get(key)) is not None:
                return Wait(pending)
            pending = self._connecting[key] = Pending(self._new_waiter())
            return Connect(pending)
        conn = None if retried else self.idle.checkout(key, now)
        return conn if conn is not None else Connect(None)

    def adopt(self, key: Key, alpn: str | None) -> bool:
        """A connection to ``key`` is up, TLS having picked ``alpn``: True for HTTP/2 (the
        transport makes a link and ``h2.add``s it); an https key that did not pick ``h2`` goes
        to the HTTP/1.1 pool from now on."""
        if alpn == "h2":
            return True
        if key[1][0] == "https":  # type: ignore[index]
            self.h2.h1_only.add(key)
        return False

    def connect_over(self, key: Key, connect: Connect, result: object) -> object | None:
        """The connect ``route`` asked for ended with ``result`` (the connection, the
        ``UpstreamFailed``, or None when abandoned: the waiters then route again): the waiter
        to set, if any."""
        if connect.pending is None:
            return None
        self._connecting.pop(key, None)
        if isinstance(result, UpstreamFailed):
            connect.pending.failure = result
        return connect.pending.waiter

    def connect_failure(self, key: Key, stage: str, kind: str, exc: BaseException
                        ) -> UpstreamFailed:
        """What a failed connect reports (never the proxy's credentials)."""
        proxy, (_, host, _) = cast("tuple[ProxySpec | None, tuple[str, str, int]]", key)
        via = f" through proxy {proxy.display}" if proxy else ""
        if _timed_out(kind, exc):
            text = f"connecting to {host}{via} timed out"
        elif proxy is not None and kind == PROXY:
            text = f"proxy {proxy.display}: {exc}"
        elif proxy is not None and stage == PROXY_TCP:
            text = f"proxy {proxy.display}: cannot connect: {describe_os_error(exc)}"
        elif proxy is not None and stage == HANDSHAKE:
            text = (f"proxy {proxy.display}: connection lost during the handshake: "
                    f"{describe_os_error(exc)}")
        else:
            text = f"cannot connect to {host}{via}: {describe_os_error(exc)}"
        return UpstreamFailed(0, "connect", text)

    def attempt(self, conn: object, target: Target, fresh: bool, retried: bool) -> Attempt:
        """The driver of one attempt of ``target`` on ``conn`` (``fresh``: just connected)."""
        if isinstance(conn, H2Link):
            return H2Attempt(conn, target, may_retry=not retried)
        assert isinstance(conn, H1Conn)
        return H1Attempt(conn, target.method, target.url.target, target.headers, target.body,
                         may_retry=not fresh and not retried, ref=target.ref)

    def release(self, conn: object, outcome: str | None, now: float) -> list[C]:
        """After an attempt on ``conn``: the HTTP/1.1 connections to close now."""
        if isinstance(conn, H2Link):
            return self.idle.expire(now)
        assert isinstance(conn, H1Conn)
        if outcome == DONE and conn.h11.reusable:
            conn.h11.start_next_cycle()
            if self.idle.checkin(conn.key, conn, now):  # type: ignore[arg-type]
                return self.idle.expire(now)
        return [cast(C, conn), *self.idle.expire(now)]

    def shutdown(self) -> tuple[list[L], list[tuple[object, object]], list[C]]:
        """Closing the pool: the HTTP/2 links (GOAWAY queued: wake their writers, give them
        ``timeouts.close_grace``, then cancel them), the events to deliver to requests still on
        them, and the HTTP/1.1 connections to close."""
        links = self.h2.all()
        deliveries: list[tuple[object, object]] = [
            pair for link in links for pair in link.retire(SHUTTING_DOWN)]
        return links, deliveries, self.idle.clear()


def tunnel_open(hs: object) -> None:
    """After the proxy handshake ``hs`` completed: ``ProxyError`` when the proxy already sent
    bytes of the tunnel (they would be fed to TLS)."""
    if hs.leftover:  # type: ignore[attr-defined]
        raise ProxyError("the proxy sent unexpected bytes after opening the tunnel")


# -- attempts -----------------------------------------------------------------------------------

DONE, FAILED, RETRY = "done", "failed", "retry"
#: distinct (upstream URL, proxy) pairs ``ConnectionManager.target`` keeps parsed
MAX_PARSED = 1024


class Attempt:
    """One exchange on one connection, sans I/O: the relay events to post (each carrying
    ``ref``) and the outcome (see the module docstring)."""

    def __init__(self, may_retry: bool, ref: int = 0) -> None:
        self.ref = ref
        self.outcome: str | None = None
        self.detail = ""  #: a failure's short cause (an image fetch reports it)
        self._may_retry = may_retry
        self._got_any = False
        self._out: list[object] = []

    def start(self, sink: object = None) -> bytes:
        raise NotImplementedError

    def feed(self, data: object) -> None:
        raise NotImplementedError

    def take(self) -> list[object]:
        """The events to post now, in order."""
        out, self._out = self._out, []
        return out

    def posted(self, event: object) -> None:
        """``event`` was posted (HTTP/2: its body bytes may now reopen the window)."""

    def finish(self) -> None:
        """The attempt is over, done or abandoned."""

    def lost(self, exc: BaseException) -> None:
        """Reading or writing failed (an exception the table calls ``LOST``)."""
        if self._may_retry and not self._got_any:
            self.outcome = RETRY
        else:
            cause = describe_os_error(exc)
            self._fail("reset", f"connection lost: {cause}", cause)

    def _fail(self, kind: str, message: str, detail: str | None = None) -> None:
        self.outcome = FAILED
        self.detail = detail or message
        self._out.append(UpstreamFailed(self.ref, kind, message))

    def _relay(self, ev: object) -> None:
        if isinstance(ev, ResponseHead):
            self._out.append(UpstreamHead(self.ref, ev.status, ev.headers))
        elif isinstance(ev, ResponseData):
            self._out.append(UpstreamData(self.ref, ev.data))
        elif isinstance(ev, ResponseEnd):
            self._out.append(UpstreamEnded(self.ref))
            self.outcome = DONE


class H1Attempt(Attempt):
    """An exchange on an HTTP/1.1 connection: ``start`` gives the request bytes, ``feed``
    takes each read (``b""`` at EOF)."""

    def __init__(self, conn: H1Conn, method: str, target: str,
                 headers: tuple[tuple[str, str], ...], body: bytes, *, may_retry: bool,
                 ref: int = 0) -> None:
        super().__init__(may_retry, ref)
        self._h11 = conn.h11
        self._request = (method, target, headers, body)

    def start(self, sink: object = None) -> bytes:
        try:
            return self._h11.send_request(*self._request)
        except UpstreamProtocolError as exc:
            self._fail(exc.kind, str(exc))
        except ValueError as exc:  # a request the HTTP layer refuses to send
            self._fail("protocol", f"cannot send the request: {exc}")
        return b""

    def feed(self, data: object) -> None:
        assert isinstance(data, bytes)
        if not data and self._may_retry and not self._got_any:
            self.outcome = RETRY  # stale: the server closed the idle connection
            return
        self._got_any = True
        try:
            events = self._h11.receive_data(data)
        except UpstreamProtocolError as exc:
            self._fail(exc.kind, str(exc))
            return
        for ev in events:
            self._relay(ev)
            if self.outcome:
                return


class H2Attempt(Attempt):
    """A stream on an HTTP/2 link: ``start(sink)`` opens it (the link's writer sends),
    ``feed`` takes each event the link delivered to ``sink``."""

    def __init__(self, link: H2Link, target: Target, *, may_retry: bool) -> None:
        super().__init__(may_retry, target.ref)
        self._link = link
        self._target = target
        self._sid: int | None = None

    def start(self, sink: object = None) -> bytes:
        t = self._target
        try:
            self._sid = self._link.open(t.method, t.url, t.headers, t.body, sink)
        except ValueError as exc:  # a request the HTTP layer refuses to send
            self._fail("protocol", f"cannot send the request: {exc}")
        return b""

    def feed(self, data: object) -> None:
        if isinstance(data, StreamFailed):
            if data.unprocessed and self._may_retry and not self._got_any:
                self.outcome = RETRY  # refused: the server did not act on it
            else:
                self._fail(data.kind, data.message)
            return
        self._got_any = self._got_any or isinstance(data, ResponseHead)
        self._relay(data)

    def posted(self, event: object) -> None:
        if isinstance(event, UpstreamData) and self._sid is not None:
            self._link.acknowledge(self._sid, len(event.data))  # only now: backpressure

    def finish(self) -> None:
        if self._sid is not None:  # resets the stream if still open
            self._link.finish(self._sid)


# -- whole-body fetches (discovery, CONFIG_URL, images) ----------------------------------------


class Full(Exception):
    """A fetch went past its size cap (raised by ``Collector.add``: stop reading)."""


class Collector:
    """The events of one whole-body fetch, gathered (``max_bytes``: raise ``Full`` past it)."""

    def __init__(self, max_bytes: int | None = None) -> None:
        self.head: UpstreamHead | None = None
        self.parts: list[bytes] = []
        self.failure: UpstreamFailed | None = None
        self.full = False
        self._size = 0
        self._max = max_bytes

    def add(self, ev: object) -> None:
        if isinstance(ev, UpstreamHead):
            self.head = ev
        elif isinstance(ev, UpstreamData):
            self._size += len(ev.data)
            self.parts.append(ev.data)
            if self._max is not None and self._size > self._max:
                self.full = True
                raise Full()
        elif isinstance(ev, UpstreamFailed):
            self.failure = ev

    def result(self) -> tuple[int, bytes] | str:
        """Status and body, or the failure's message (discovery, CONFIG_URL)."""
        if self.failure is not None:
            return self.failure.message
        return (self.head.status if self.head else 0), b"".join(self.parts)

    def image(self, attempt: Attempt | None) -> FetchResult:
        """The ``FetchResult`` of an image fetch."""
        if self.head is not None and self.full:
            return FetchResult(self.head.status, self.head.headers, b"".join(self.parts),
                               truncated=True)
        if attempt is not None and attempt.outcome == FAILED:
            return FetchResult(error=f"cannot fetch: {attempt.detail}")
        if self.head is None or attempt is None or attempt.outcome != DONE:
            return FetchResult(error="no answer")
        return FetchResult(self.head.status, self.head.headers, b"".join(self.parts))


def fetch_failure(kind: str | None, exc: BaseException, timeout: float) -> FetchResult:
    """The ``FetchResult`` of an image fetch that failed before or around its exchange."""
    if _timed_out(kind, exc):
        return FetchResult(error=no_answer(timeout))
    return FetchResult(error=f"cannot fetch: {describe_os_error(exc)}")


#: An image URL whose every address the SSRF policy refuses.
ADDRESS_REFUSED = "the address is not allowed (private or local)"


def image_request(conn: H1Conn, url: Url) -> H1Attempt:
    """The attempt that GETs an image (never retried: a fresh connection)."""
    return H1Attempt(conn, "GET", url.target, (("host", url.host_header),
                                                ("accept", "image/*")), b"", may_retry=False)


def config_url_text(url: str, result: tuple[int, bytes] | str) -> str:
    """The text of ``CONFIG_URL`` from a fetch's result; ``ValueError`` with the message to
    exit with."""
    if isinstance(result, str):
        raise ValueError(f"cannot fetch CONFIG_URL {url}: {result}")
    status, body = result
    if status != 200:
        raise ValueError(f"CONFIG_URL {url} answered HTTP {status}")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"CONFIG_URL {url} is not UTF-8 text") from None

