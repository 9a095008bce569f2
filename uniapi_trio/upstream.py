"""Upstream connections on trio: connect (TCP, or a tunnel through an outbound proxy; TLS with
system roots and SNI), pool per (proxy, origin), and run one attempt, reporting what happens as
relay events. It decides nothing."""

from __future__ import annotations

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
    handshake_for,
    parse_proxy,
    parse_url,
)
from uniapi_core.http.client import UpstreamProtocolError
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


class _TooBig(Exception):
    """An image went past its size cap."""


class _Conn:
    def __init__(self, stream: trio.abc.Stream, origin: Origin,
                 proxy: ProxySpec | None = None) -> None:
        self.stream = stream
        self.key: Key = (proxy, origin)
        self.h11 = ClientConnection()
        self.idle_since = 0.0


class UpstreamPool:
    """Keep-alive connections per origin; TLS verified against the system roots."""

    def __init__(self) -> None:
        self._idle: dict[Key, list[_Conn]] = {}
        self._ssl = ssl.create_default_context()
        self._ssl.set_alpn_protocols(["http/1.1"])

    async def _connect(self, origin: Origin, proxy: ProxySpec | None) -> _Conn:
        scheme, host, port = origin
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
        return _Conn(stream, origin, proxy)

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
        for conns in self._idle.values():
            for conn in conns:
                await trio.aclose_forcefully(conn.stream)
        self._idle.clear()

    async def fetch(self, request: UpstreamRequest, timeout: float) -> tuple[int, bytes]:
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
            await self.run(request, None, post)
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
                    stream = trio.SSLStream(tcp, self._ssl, server_hostname=url.host,
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
        shown = spec.display if spec else ""
        via = f" through proxy {shown}" if spec else ""
        headers = (("host", url.host_header),) + tuple(
            h for h in req.headers if h[0].lower() != "host")
        conn = self._take_idle((spec, url.origin))
        while True:
            fresh = conn is None
            if conn is None:
                try:
                    conn = await self._connect(url.origin, spec)
                except trio.TooSlowError:
                    await post(UpstreamFailed(0, "connect",
                                              f"connecting to {url.host}{via} timed out"))
                    return
                except ProxyError as exc:
                    await post(UpstreamFailed(0, "connect", f"proxy {shown}: {exc}"))
                    return
                except (OSError, ssl.SSLError, trio.BrokenResourceError) as exc:
                    await post(UpstreamFailed(0, "connect", f"cannot connect to {url.host}{via}: "
                                                            f"{describe_os_error(exc)}"))
                    return
            result: bool | None = False
            try:
                result = await self._exchange(conn, req.method, url.target, headers, req.body,
                                              post, retry_stale=not fresh)
            finally:  # also on cancellation: an abandoned exchange never returns to the pool
                if result is True:
                    self._release(conn)
                else:
                    await trio.aclose_forcefully(conn.stream)
            if result is not None:
                return
            conn = None  # a stale pooled connection: try once more on a fresh one

    async def _exchange(self, conn: _Conn, method: str, target: str,
                        headers: tuple[tuple[str, str], ...], body: bytes, post: Post, *,
                        retry_stale: bool) -> bool | None:
        """True: response complete (reusable); False: failed and reported; None: a stale
        pooled connection failed before any byte came back — try a fresh one."""
        got_any = False
        try:
            await conn.stream.send_all(conn.h11.send_request(method, target, headers, body))
            while True:
                data = await conn.stream.receive_some(READ_SIZE)
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
