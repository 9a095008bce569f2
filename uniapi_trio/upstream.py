"""Upstream connections on trio: connect (TCP, or a tunnel through an outbound proxy; TLS with
system roots and SNI), pool per (proxy, origin), and run one attempt, reporting what happens as
relay events. It decides nothing.

HTTP/2: when an https origin's ALPN picks ``h2``, requests share one connection per (proxy,
origin) (``uniapi_core.http.h2client.H2Link``), served by two system tasks: a reader that
delivers each stream's events to its request's unbounded channel, and the one writer (which
also retires the connection after ``IDLE_KEEPALIVE`` without requests). Other origins use the
HTTP/1.1 keep-alive pool."""

from __future__ import annotations

import math
import os
import ssl
from collections.abc import Awaitable, Callable

import trio

from uniapi_core.errors import describe_os_error
from uniapi_core.http import (
    ClientConnection,
    ProxyError,
    ProxySpec,
    ResponseData,
    ResponseEnd,
    ResponseHead,
    Url,
    handshake_for,
    parse_proxy,
    parse_url,
)
from uniapi_core.http.client import UpstreamProtocolError
from uniapi_core.http.h2client import H2Link, H2Pool, StreamFailed
from uniapi_core.relay import UpstreamData, UpstreamEnded, UpstreamFailed, UpstreamHead
from uniapi_core.session import Fetch, FetchResult
from uniapi_core.ssrf import pick_address
from uniapi_core.vendors.base import UpstreamRequest

__all__ = ["UpstreamPool", "CONNECT_TIMEOUT"]

CONNECT_TIMEOUT = 5.0
IDLE_KEEPALIVE = 60.0
MAX_IDLE_PER_ORIGIN = 256  # ≥ the busiest concurrency we serve, or streams reconnect
READ_SIZE = 65536

Origin = tuple[str, str, int]
Key = tuple[ProxySpec | None, Origin]  # proxied connections never mix with direct ones
Post = Callable[[object], Awaitable[None]]


async def receive_some(stream: trio.abc.Stream, sock: object | None) -> bytes:
    """``stream.receive_some(READ_SIZE)``; on a plain TCP stream (``sock``, its trio socket)
    the read itself, without ``SocketStream``'s two generator-based context managers per call
    (~5 µs). Errors are ``OSError`` or ``trio.ClosedResourceError``, as callers expect."""
    if sock is None:
        return await stream.receive_some(READ_SIZE)
    await trio.lowlevel.checkpoint_if_cancelled()
    fd = sock.fileno()  # type: ignore[attr-defined]
    try:
        data = os.read(fd, READ_SIZE)
    except BlockingIOError:
        while True:
            await trio.lowlevel.wait_readable(sock)  # type: ignore[arg-type]
            try:
                return os.read(sock.fileno(), READ_SIZE)  # type: ignore[attr-defined]
            except BlockingIOError:
                pass
    await trio.lowlevel.cancel_shielded_checkpoint()
    return data


async def send_all(stream: trio.abc.Stream, sock: object | None, data: bytes) -> None:
    """``stream.send_all(data)``; on a plain TCP stream written directly (see
    ``receive_some``)."""
    if sock is None:
        await stream.send_all(data)
        return
    await trio.lowlevel.checkpoint_if_cancelled()
    view = memoryview(data)
    sent = 0
    blocked = False
    while sent < len(view):
        try:
            sent += os.write(sock.fileno(), view[sent:])  # type: ignore[attr-defined]
        except BlockingIOError:
            blocked = True
            await trio.lowlevel.wait_writable(sock)  # type: ignore[arg-type]
    if not blocked:
        await trio.lowlevel.cancel_shielded_checkpoint()


def plain_socket(stream: trio.abc.Stream) -> object | None:
    """The trio socket of a plain TCP ``SocketStream`` (not TLS), else None."""
    return stream.socket if type(stream) is trio.SocketStream else None


class _TooBig(Exception):
    """An image went past its size cap."""


class _ConnectFailed(Exception):
    """A connect failure, as the message to report."""


class _Conn:
    def __init__(self, stream: trio.abc.Stream, origin: Origin,
                 proxy: ProxySpec | None = None) -> None:
        self.stream = stream
        self.sock = plain_socket(stream)
        self.key: Key = (proxy, origin)
        self.h11 = ClientConnection()
        self.idle_since = 0.0


class _Link(H2Link):
    def __init__(self, stream: trio.abc.Stream, key: Key) -> None:
        super().__init__(key)
        self.stream = stream
        self.wake = trio.Event()  # bytes to write, or the request count changed
        self.scope = trio.CancelScope()  # the writer's: cancelled by aclose()
        self.finished = trio.Event()


class _Pending:
    """A connect that concurrent first requests for a key wait for."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.error = ""


class UpstreamPool:
    """Keep-alive connections per origin (HTTP/2 multiplexed where ALPN picks it); TLS verified
    against the system roots, or against ``ssl_context`` (its ALPN is set here)."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._idle: dict[Key, list[_Conn]] = {}
        self._h2: H2Pool[_Link] = H2Pool()
        self._connecting: dict[Key, _Pending] = {}
        self._ssl = ssl_context or ssl.create_default_context()
        self._ssl.set_alpn_protocols(["h2", "http/1.1"])
        self._image_ssl = ssl.create_default_context()
        self._image_ssl.set_alpn_protocols(["http/1.1"])

    async def _connect(self, key: Key) -> _Conn | _Link:
        """A new connection: an HTTP/2 link (pooled, running) when ALPN picks h2; raises
        ``_ConnectFailed``."""
        proxy, (scheme, host, port) = key
        via = f" through proxy {proxy.display}" if proxy else ""
        try:
            with trio.fail_after(CONNECT_TIMEOUT):  # proxy connect, handshake and TLS included
                if proxy is not None:
                    stream: trio.abc.Stream = await self._tunnel(proxy, host, port)
                    if scheme == "https":
                        stream = trio.SSLStream(stream, self._ssl, server_hostname=host,
                                                https_compatible=True)
                        try:
                            await stream.do_handshake()
                        except BaseException:
                            await trio.aclose_forcefully(stream)
                            raise
                elif scheme == "https":
                    stream = await trio.open_ssl_over_tcp_stream(
                        host, port, ssl_context=self._ssl, https_compatible=True)
                    await stream.do_handshake()
                else:
                    stream = await trio.open_tcp_stream(host, port)
        except trio.TooSlowError:
            raise _ConnectFailed(f"connecting to {host}{via} timed out") from None
        except ProxyError as exc:
            raise _ConnectFailed(f"proxy {proxy.display if proxy else ''}: {exc}") from None
        except (OSError, ssl.SSLError, trio.BrokenResourceError) as exc:
            raise _ConnectFailed(f"cannot connect to {host}{via}: "
                                 f"{describe_os_error(exc)}") from None
        if isinstance(stream, trio.SSLStream):
            if stream.selected_alpn_protocol() == "h2":
                link = _Link(stream, key)
                self._h2.add(link)
                trio.lowlevel.spawn_system_task(self._read_link, link)
                trio.lowlevel.spawn_system_task(self._write_link, link)
                return link
            self._h2.h1_only.add(key)
        return _Conn(stream, key[1], proxy)

    async def _route(self, key: Key, avoid: object, retried: bool
                     ) -> tuple[_Conn | _Link, bool]:
        """The connection for one attempt and whether it is new. Concurrent first requests
        for an https origin share one connect (and its failure)."""
        while key[1][0] == "https" and key not in self._h2.h1_only:
            link = self._h2.pick(key, avoid)
            if link is not None:
                return link, False
            pending = self._connecting.get(key)
            if pending is None:
                pending = self._connecting[key] = _Pending()
                try:
                    return await self._connect(key), True
                except _ConnectFailed as exc:
                    pending.error = str(exc)
                    raise
                finally:
                    del self._connecting[key]
                    pending.done.set()
            await pending.done.wait()
            if pending.error:
                raise _ConnectFailed(pending.error)
        conn = None if retried else self._take_idle(key)
        return (conn, False) if conn is not None else (await self._connect(key), True)

    @staticmethod
    def _deliver(pairs: list) -> None:
        for sink, event in pairs:
            sink.send_nowait(event)

    async def _read_link(self, link: _Link) -> None:
        """Deliver each stream's events; ends at EOF (or once the writer closed the stream)."""
        while not link.conn.closed:
            try:
                data = await link.stream.receive_some(READ_SIZE)
            except Exception:  # noqa: BLE001 - any read failure ends the link, never the run
                data = b""
            self._deliver(link.feed(data))
            link.wake.set()

    async def _write_link(self, link: _Link) -> None:
        """The link's only writer; it closes the connection once the link is closed."""
        try:
            with link.scope:
                while True:
                    link.wake = trio.Event()
                    if data := link.take():
                        await link.stream.send_all(data)
                    elif link.conn.closed:
                        break
                    else:
                        with trio.move_on_after(IDLE_KEEPALIVE if link.idle else math.inf
                                                ) as idle:
                            await link.wake.wait()
                        if idle.cancelled_caught:
                            self._deliver(link.retire())
        except Exception:  # noqa: BLE001 - a system task must not raise (write failed)
            pass
        finally:
            self._h2.discard(link)
            self._deliver(link.feed(b"") + link.retire())
            await trio.aclose_forcefully(link.stream)
            link.finished.set()

    @staticmethod
    async def _tunnel(proxy: ProxySpec, host: str, port: int) -> trio.abc.Stream:
        """A TCP stream to ``proxy`` carrying a tunnel to ``host:port``; ``ProxyError``."""
        hs = handshake_for(proxy, host, port)
        try:
            tcp = await trio.open_tcp_stream(proxy.host, proxy.port)
        except OSError as exc:
            raise ProxyError(f"cannot connect: {describe_os_error(exc)}") from None
        try:
            await tcp.send_all(hs.initial_bytes())
            done = False
            while not done:
                done = hs.receive_data(await tcp.receive_some(READ_SIZE))
                if out := hs.data_to_send():
                    await tcp.send_all(out)
        except BaseException as exc:
            await trio.aclose_forcefully(tcp)
            if isinstance(exc, (OSError, trio.BrokenResourceError)):
                raise ProxyError("connection lost during the handshake: "
                                 f"{describe_os_error(exc)}") from None
            raise
        if hs.leftover:
            await trio.aclose_forcefully(tcp)
            raise ProxyError("the proxy sent unexpected bytes after opening the tunnel")
        return tcp

    def _take_idle(self, key: Key) -> _Conn | None:
        conns = self._idle.get(key)
        now = trio.current_time()
        while conns:
            conn = conns.pop()
            if now - conn.idle_since < IDLE_KEEPALIVE:
                return conn
            trio.lowlevel.spawn_system_task(trio.aclose_forcefully, conn.stream)
        return None

    def _release(self, conn: _Conn) -> None:
        conns = self._idle.setdefault(conn.key, [])
        if conn.h11.reusable and len(conns) < MAX_IDLE_PER_ORIGIN:
            conn.h11.start_next_cycle()
            conn.idle_since = trio.current_time()
            conns.append(conn)
        else:
            trio.lowlevel.spawn_system_task(trio.aclose_forcefully, conn.stream)

    async def aclose(self) -> None:
        links = self._h2.all()
        for link in links:  # GOAWAY, then close
            self._deliver(link.retire("the gateway is shutting down"))
            link.wake.set()
        with trio.move_on_after(1.0):
            for link in links:
                await link.finished.wait()
        for link in links:
            link.scope.cancel()
            await link.finished.wait()
        for conns in self._idle.values():
            for conn in conns:
                await trio.aclose_forcefully(conn.stream)
        self._idle.clear()

    async def fetch(self, request: UpstreamRequest, timeout: float,
                    proxy: str | None = None) -> tuple[int, bytes]:
        """One whole request (model discovery, CONFIG_URL): status and body."""
        parts: list[bytes] = []
        status = 0

        async def post(ev: object) -> None:
            nonlocal status
            if isinstance(ev, UpstreamHead):
                status = ev.status
            elif isinstance(ev, UpstreamData):
                parts.append(ev.data)
            elif isinstance(ev, UpstreamFailed):
                raise OSError(ev.message)

        with trio.fail_after(timeout):
            await self.run(request, proxy, post)
        return status, b"".join(parts)

    async def fetch_image(self, action: Fetch) -> FetchResult:
        """GET a remote image for the core: resolve, connect only to the address the core's
        policy allows (pinned; the name stays in SNI and Host), read at most ``max_bytes``."""
        url = action.url
        parts: list[bytes] = []
        head: list[UpstreamHead] = []
        size = 0

        async def post(ev: object) -> None:
            nonlocal size
            if isinstance(ev, UpstreamHead):
                head.append(ev)
            elif isinstance(ev, UpstreamData):
                size += len(ev.data)
                parts.append(ev.data)
                if size > action.max_bytes:
                    raise _TooBig()
            elif isinstance(ev, UpstreamFailed):
                raise OSError(ev.message)

        with trio.move_on_after(action.timeout):
            try:
                infos = await trio.socket.getaddrinfo(url.host, url.port,
                                                      type=trio.socket.SOCK_STREAM)
                address = pick_address([i[4][0] for i in infos],
                                       allow_private=action.allow_private)
                if address is None:
                    return FetchResult(error="the address is not allowed (private or local)")
                tcp = await trio.open_tcp_stream(address, url.port)
                stream: trio.abc.Stream = tcp
                if url.scheme == "https":
                    stream = trio.SSLStream(tcp, self._image_ssl, server_hostname=url.host,
                                            https_compatible=True)
                conn = _Conn(stream, url.origin)
                try:
                    await self._exchange(conn, "GET", url.target, (
                        ("host", url.host_header), ("accept", "image/*")), b"", post,
                        retry_stale=False)
                finally:
                    await trio.aclose_forcefully(stream)
            except _TooBig:
                return FetchResult(head[0].status, head[0].headers, b"".join(parts),
                                   truncated=True)
            except (OSError, ssl.SSLError, trio.BrokenResourceError) as exc:
                return FetchResult(error=f"cannot fetch: {describe_os_error(exc)}")
            if not head:
                return FetchResult(error="no answer")
            return FetchResult(head[0].status, head[0].headers, b"".join(parts))
        return FetchResult(error=f"no answer within {action.timeout:g} s")

    async def run(self, req: UpstreamRequest, proxy: str | None, post: Post) -> None:
        """Perform one exchange, posting UpstreamHead/Data/Ended/Failed events (attempt 0:
        the session knows whose exchange it is)."""
        try:
            url = parse_url(req.url)
        except ValueError as exc:
            await post(UpstreamFailed(0, "connect", f"bad upstream URL: {exc}"))
            return
        try:
            spec = parse_proxy(proxy) if proxy else None
        except ValueError as exc:  # the message never quotes the URL (credentials)
            await post(UpstreamFailed(0, "connect", f"bad proxy URL: {exc}"))
            return
        headers = (("host", url.host_header),) + tuple(
            h for h in req.headers if h[0].lower() != "host")
        key: Key = (spec, url.origin)
        retried, avoid = False, None
        while True:
            try:
                conn, fresh = await self._route(key, avoid, retried)
            except _ConnectFailed as exc:
                await post(UpstreamFailed(0, "connect", str(exc)))
                return
            if isinstance(conn, _Link):
                result = await self._exchange_h2(conn, url, req, post, retry=not retried)
            else:
                result = False
                try:
                    result = await self._exchange(conn, req.method, url.target, headers,
                                                  req.body, post,
                                                  retry_stale=not fresh and not retried)
                finally:  # also on cancellation: an abandoned exchange never returns to the pool
                    if result is True:
                        self._release(conn)
                    else:
                        await trio.aclose_forcefully(conn.stream)
            if result is not None:
                return
            retried, avoid = True, conn  # stale or refused: once more on another connection

    async def _exchange_h2(self, link: _Link, url: Url, req: UpstreamRequest, post: Post, *,
                           retry: bool) -> bool | None:
        """One stream on ``link``; None: the server did not process it and nothing came back
        (``retry``) — try another connection."""
        send, receive = trio.open_memory_channel[object](math.inf)
        try:
            sid = link.open(req.method, url, req.headers, req.body, send)
        except ValueError as exc:  # a request the HTTP layer refuses to send
            await post(UpstreamFailed(0, "protocol", f"cannot send the request: {exc}"))
            return False
        link.wake.set()
        got_any = False
        try:
            while True:
                ev = await receive.receive()
                if isinstance(ev, ResponseHead):
                    got_any = True
                    await post(UpstreamHead(0, ev.status, ev.headers))
                elif isinstance(ev, ResponseData):
                    await post(UpstreamData(0, ev.data))
                    link.acknowledge(sid, len(ev.data))  # only now: a slow client stops it
                    link.wake.set()
                elif isinstance(ev, ResponseEnd):
                    await post(UpstreamEnded(0))
                    return True
                elif isinstance(ev, StreamFailed):
                    if ev.unprocessed and retry and not got_any:
                        return None
                    await post(UpstreamFailed(0, ev.kind, ev.message))
                    return False
        finally:  # also on cancellation: resets the stream if still open
            link.finish(sid)
            link.wake.set()

    async def _exchange(self, conn: _Conn, method: str, target: str,
                        headers: tuple[tuple[str, str], ...], body: bytes, post: Post, *,
                        retry_stale: bool) -> bool | None:
        """True: response complete (reusable); False: failed and reported; None: a stale
        pooled connection failed before any byte came back — try a fresh one."""
        got_any = False
        try:
            stream, sock = conn.stream, conn.sock
            await send_all(stream, sock, conn.h11.send_request(method, target, headers, body))
            while True:
                data = await receive_some(stream, sock)
                if not data and retry_stale and not got_any:
                    return None
                got_any = True
                for ev in conn.h11.receive_data(data):
                    if isinstance(ev, ResponseHead):
                        await post(UpstreamHead(0, ev.status, ev.headers))
                    elif isinstance(ev, ResponseData):
                        await post(UpstreamData(0, ev.data))
                    elif isinstance(ev, ResponseEnd):
                        await post(UpstreamEnded(0))
                        return True
        except UpstreamProtocolError as exc:
            await post(UpstreamFailed(0, exc.kind, str(exc)))
        except ValueError as exc:  # a request the HTTP layer refuses to send
            await post(UpstreamFailed(0, "protocol", f"cannot send the request: {exc}"))
        except (OSError, ssl.SSLError, trio.BrokenResourceError) as exc:
            if retry_stale and not got_any:
                return None
            await post(UpstreamFailed(0, "reset", f"connection lost: {describe_os_error(exc)}"))
        return False
