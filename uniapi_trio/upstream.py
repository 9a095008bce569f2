"""Upstream connections on trio: the I/O of the core's ``ConnectionManager``, which decides
everything (docs/architecture.md, Transports)."""

from __future__ import annotations

import math
import os
import ssl
from collections.abc import Awaitable, Callable
from functools import partial

import trio

from uniapi_core.http import handshake_for
from uniapi_core.http.h2client import H2Link
from uniapi_core.http.pool import IMAGE_ALPN, READ_SIZE, UPSTREAM_ALPN
from uniapi_core.events import Fetch, FetchResult, UpstreamFailed
from uniapi_core.ssrf import pick_address
from uniapi_core.upstream import (ADDRESS_REFUSED, HANDSHAKE, LOST, ORIGIN, PROXY_TCP, RETRY,
                                  TIMEOUT, Attempt, Collector, Connect, ConnectionManager, Full,
                                  H1Conn, Wait, failure_kind, fetch_failure, image_request,
                                  no_answer, tunnel_open)
from uniapi_core.vendors.base import UpstreamRequest

__all__ = ["UpstreamPool", "receive_some", "send_all", "plain_socket"]

Post = Callable[[object], Awaitable[None]]
#: trio's exceptions → the core's failure kinds (first match wins).
BROKEN = (OSError, ssl.SSLError, trio.BrokenResourceError)
FAILURES = ((trio.TooSlowError, TIMEOUT), (BROKEN, LOST))


async def receive_some(stream: trio.abc.Stream, sock: object | None) -> bytes:
    """``stream.receive_some``; on plain TCP (``sock``) the read itself, ~5 µs cheaper."""
    if sock is None:
        return await stream.receive_some(READ_SIZE)
    await trio.lowlevel.checkpoint_if_cancelled()
    try:
        data = os.read(sock.fileno(), READ_SIZE)  # type: ignore[attr-defined]
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
    """``stream.send_all(data)``; on plain TCP (``sock``) written directly."""
    if sock is None:
        await stream.send_all(data)
        return
    await trio.lowlevel.checkpoint_if_cancelled()
    view, sent, blocked = memoryview(data), 0, False
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


class _Conn(H1Conn):
    def __init__(self, stream: trio.abc.Stream, key: object) -> None:
        super().__init__(key)
        self.stream = stream
        self.sock = plain_socket(stream)


class _Link(H2Link):
    def __init__(self, stream: trio.abc.Stream, key: object) -> None:
        super().__init__(key)
        self.stream = stream
        self.wake = trio.Event()  # bytes to write, or the request count changed
        self.scope = trio.CancelScope()  # the writer's: cancelled by aclose()
        self.finished = trio.Event()


class UpstreamPool:
    """Upstream connections, pooled by the core; TLS against the system roots or
    ``ssl_context``."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._core: ConnectionManager[_Conn, _Link] = ConnectionManager(trio.Event)
        self._ssl = ssl_context or ssl.create_default_context()
        self._ssl.set_alpn_protocols(list(UPSTREAM_ALPN))
        self._image_ssl = ssl.create_default_context()
        self._image_ssl.set_alpn_protocols(list(IMAGE_ALPN))

    async def _connect(self, key: tuple) -> _Conn | _Link | UpstreamFailed:
        """A new connection (HTTP/2: a running, pooled link), or the failure to report."""
        proxy, (scheme, host, port) = key
        stage, stream = ORIGIN, None
        try:
            with trio.fail_after(self._core.timeouts.connect):
                if proxy is not None:
                    hs, stage = handshake_for(proxy, host, port), PROXY_TCP
                    stream = await trio.open_tcp_stream(proxy.host, proxy.port)
                    stage = HANDSHAKE
                    await stream.send_all(hs.initial_bytes())
                    done = False
                    while not done:
                        done = hs.receive_data(await stream.receive_some(READ_SIZE))
                        if out := hs.data_to_send():
                            await stream.send_all(out)
                    tunnel_open(hs)
                    stage = ORIGIN
                else:
                    stream = await trio.open_tcp_stream(host, port)
                if scheme == "https":
                    stream = trio.SSLStream(stream, self._ssl, server_hostname=host,
                                            https_compatible=True)
                    await stream.do_handshake()
        except BaseException as exc:
            if stream is not None:
                await trio.aclose_forcefully(stream)
            if (kind := failure_kind(exc, FAILURES)) is None:
                raise
            return self._core.connect_failure(key, stage, kind, exc)
        tls = isinstance(stream, trio.SSLStream)
        if not self._core.adopt(key, stream.selected_alpn_protocol() if tls else None):
            return _Conn(stream, key)
        link = _Link(stream, key)
        self._core.h2.add(link)
        trio.lowlevel.spawn_system_task(self._read_link, link)
        trio.lowlevel.spawn_system_task(self._write_link, link)
        return link

    async def _route(self, key: tuple, avoid: object, retried: bool
                     ) -> tuple[_Conn | _Link | UpstreamFailed, bool]:
        """The connection for one attempt and whether it is new, or the failure to report."""
        while True:
            got = self._core.route(key, trio.current_time(), avoid, retried)
            if isinstance(got, Wait):
                await got.pending.waiter.wait()
                if got.pending.failure is not None:
                    return got.pending.failure, False
            elif isinstance(got, Connect):
                conn = None
                try:
                    conn = await self._connect(key)
                    return conn, True
                finally:  # also on cancellation: the waiters then connect themselves
                    if (waiter := self._core.connect_over(key, got, conn)) is not None:
                        waiter.set()
            else:
                return got, False

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
                        with trio.move_on_after(self._core.timeouts.idle if link.idle
                                                else math.inf) as idle:
                            await link.wake.wait()
                        if idle.cancelled_caught:
                            self._deliver(link.retire())
        except Exception:  # noqa: BLE001 - a system task must not raise (write failed)
            pass
        finally:
            self._core.h2.discard(link)
            self._deliver(link.feed(b"") + link.retire())
            await trio.aclose_forcefully(link.stream)
            link.finished.set()

    @staticmethod
    async def _close(conns: list[_Conn]) -> None:
        for conn in conns:
            await trio.aclose_forcefully(conn.stream)

    async def aclose(self) -> None:
        links, deliveries, idle = self._core.shutdown()  # GOAWAY, then close
        self._deliver(deliveries)
        for link in links:
            link.wake.set()
        with trio.move_on_after(self._core.timeouts.close_grace):
            for link in links:
                await link.finished.wait()
        for link in links:
            link.scope.cancel()
            await link.finished.wait()
        await self._close(idle)

    async def fetch(self, request: UpstreamRequest, proxy: str | None = None
                    ) -> tuple[int, bytes] | str:
        """One whole request (model discovery, CONFIG_URL): status and body, or the error."""
        got, timeout = Collector(), self._core.timeouts.discovery
        with trio.move_on_after(timeout):
            await self.run(request, proxy, partial(_add, got))
            return got.result()
        return no_answer(timeout)

    async def fetch_image(self, action: Fetch) -> FetchResult:
        """GET an image, connected only to the address the core's policy allows (pinned)."""
        url, got, attempt = action.url, Collector(action.max_bytes), None
        with trio.move_on_after(action.timeout):
            try:
                infos = await trio.socket.getaddrinfo(url.host, url.port,
                                                      type=trio.socket.SOCK_STREAM)
                address = pick_address([i[4][0] for i in infos],
                                       allow_private=action.allow_private)
                if address is None:
                    return FetchResult(error=ADDRESS_REFUSED)
                stream: trio.abc.Stream = await trio.open_tcp_stream(address, url.port)
                if url.scheme == "https":
                    stream = trio.SSLStream(stream, self._image_ssl, server_hostname=url.host,
                                            https_compatible=True)
                conn = _Conn(stream, (None, url.origin))
                attempt = image_request(conn, url)
                try:
                    await self._attempt(conn, attempt, partial(_add, got))
                finally:
                    await trio.aclose_forcefully(stream)
            except Full:
                pass
            except BROKEN as exc:
                return fetch_failure(failure_kind(exc, FAILURES), exc, action.timeout)
            return got.image(attempt)
        return FetchResult(error=no_answer(action.timeout))

    async def run(self, req: UpstreamRequest, proxy: str | None, post: Post,
                  ref: int = 0) -> None:
        """Perform one exchange, posting its UpstreamHead/Data/Ended/Failed events (``ref``)."""
        target = self._core.target(req, proxy, ref)
        if isinstance(target, UpstreamFailed):
            await post(target)
            return
        retried, avoid = False, None
        while True:
            conn, fresh = await self._route(target.key, avoid, retried)
            if isinstance(conn, UpstreamFailed):
                await post(target.failed(conn))
                return
            outcome = None
            try:  # stopped while it waited for the connection: send nothing (asyncio's await)
                await trio.lowlevel.checkpoint_if_cancelled()
                attempt = self._core.attempt(conn, target, fresh, retried)
                outcome = await self._attempt(conn, attempt, post)
            finally:  # also on cancellation: an abandoned exchange never returns to the pool
                await self._close(self._core.release(conn, outcome, trio.current_time()))
            if outcome != RETRY:
                return
            retried, avoid = True, conn  # stale or refused: once more on another connection

    async def _attempt(self, conn: _Conn | _Link, attempt: Attempt, post: Post) -> str | None:
        """Run one attempt; its outcome once every event is posted."""
        link = conn if isinstance(conn, _Link) else None
        if link is not None:
            sink, receive = trio.open_memory_channel[object](math.inf)
            read: Callable[[], Awaitable[object]] = receive.receive
        else:
            sink, read = None, partial(receive_some, conn.stream, conn.sock)
        try:
            if data := attempt.start(sink):
                await send_all(conn.stream, conn.sock, data)  # type: ignore[union-attr]
            while True:
                if link is not None:
                    link.wake.set()
                for ev in attempt.take():
                    await post(ev)
                    attempt.posted(ev)
                if attempt.outcome:
                    return attempt.outcome
                attempt.feed(await read())
        except BROKEN as exc:
            attempt.lost(exc)
            for ev in attempt.take():
                await post(ev)
            return attempt.outcome
        finally:  # also on cancellation: resets an HTTP/2 stream if still open
            attempt.finish()
            if link is not None:
                link.wake.set()


async def _add(collector: Collector, ev: object) -> None:
    collector.add(ev)
