"""Upstream connections on asyncio: the I/O of ``uniapi_core.upstream.ConnectionManager``,
which decides everything (routing, pooling, retries, Host, deadlines, failure text). This
connects (TCP, a proxy tunnel, TLS with system roots and SNI), reads, writes, closes, and runs
two tracked tasks per HTTP/2 link: a reader delivering each stream's events to its request's
unbounded queue, and the one writer (which also retires the link once idle)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from functools import partial

from uniapi_core.http import handshake_for
from uniapi_core.http.h2client import H2Link
from uniapi_core.http.pool import IMAGE_ALPN, READ_SIZE, UPSTREAM_ALPN
from uniapi_core.relay import UpstreamFailed
from uniapi_core.events import Fetch, FetchResult
from uniapi_core.ssrf import pick_address
from uniapi_core.upstream import (ADDRESS_REFUSED, HANDSHAKE, LOST, ORIGIN, PROXY_TCP, RETRY,
                                  TIMEOUT, Attempt, Collector, Connect, ConnectionManager, Full,
                                  H1Conn, Wait, failure_kind, fetch_failure, image_request,
                                  no_answer, tunnel_open)
from uniapi_core.vendors.base import UpstreamRequest

__all__ = ["UpstreamPool"]

Post = Callable[[object], Awaitable[None]]
#: asyncio's exceptions → the core's failure kinds (first match wins: TimeoutError is an
#: OSError).
BROKEN = (OSError, ssl.SSLError)
FAILURES = ((TimeoutError, TIMEOUT), (BROKEN, LOST))


class _Conn(H1Conn):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 key: object) -> None:
        super().__init__(key)
        self.reader = reader
        self.writer = writer


class _Link(H2Link):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 key: object) -> None:
        super().__init__(key)
        self.reader = reader
        self.writer = writer
        self.wake = asyncio.Event()  # bytes to write, or the request count changed
        self.finished = asyncio.Event()


class UpstreamPool:
    """Upstream connections, pooled by the core; TLS verified against the system roots, or
    against ``ssl_context`` (its ALPN is set here)."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._core: ConnectionManager[_Conn, _Link] = ConnectionManager(asyncio.Event)
        self._tasks: set[asyncio.Task] = set()  # the links' readers and writers
        self._ssl = ssl_context or ssl.create_default_context()
        self._ssl.set_alpn_protocols(list(UPSTREAM_ALPN))
        self._image_ssl = ssl.create_default_context()
        self._image_ssl.set_alpn_protocols(list(IMAGE_ALPN))

    async def _connect(self, key: tuple) -> _Conn | _Link | UpstreamFailed:
        """A new connection (HTTP/2: a running, pooled link), or the failure to report."""
        proxy, (scheme, host, port) = key
        stage, writer = ORIGIN, None
        try:
            async with asyncio.timeout(self._core.timeouts.connect):
                if proxy is not None:
                    hs, stage = handshake_for(proxy, host, port), PROXY_TCP
                    reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
                    stage = HANDSHAKE
                    writer.write(hs.initial_bytes())
                    await writer.drain()
                    done = False
                    while not done:
                        done = hs.receive_data(await reader.read(READ_SIZE))
                        if out := hs.data_to_send():
                            writer.write(out)
                            await writer.drain()
                    tunnel_open(hs)
                    stage = ORIGIN
                else:
                    reader, writer = await asyncio.open_connection(host, port)
                if scheme == "https":
                    await writer.start_tls(self._ssl, server_hostname=host)
        except BaseException as exc:
            if writer is not None:
                writer.transport.abort()
            if (kind := failure_kind(exc, FAILURES)) is None:
                raise
            return self._core.connect_failure(key, stage, kind, exc)
        tls = writer.get_extra_info("ssl_object")
        if not self._core.adopt(key, tls.selected_alpn_protocol() if tls else None):
            return _Conn(reader, writer, key)
        link = _Link(reader, writer, key)
        self._core.h2.add(link)
        for job in (self._read_link(link), self._write_link(link)):
            task = asyncio.create_task(job)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return link

    async def _route(self, key: tuple, avoid: object, retried: bool
                     ) -> tuple[_Conn | _Link | UpstreamFailed, bool]:
        """The connection for one attempt and whether it is new, or the failure to report."""
        while True:
            got = self._core.route(key, asyncio.get_running_loop().time(), avoid, retried)
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
            sink.put_nowait(event)

    async def _read_link(self, link: _Link) -> None:
        """Deliver each stream's events; ends at EOF (or once the writer closed the stream)."""
        while not link.conn.closed:
            try:
                data = await link.reader.read(READ_SIZE)
            except Exception:  # noqa: BLE001 - any read failure ends the link
                data = b""
            self._deliver(link.feed(data))
            link.wake.set()

    async def _write_link(self, link: _Link) -> None:
        """The link's only writer; it closes the connection once the link is closed."""
        try:
            while True:
                link.wake.clear()
                if data := link.take():
                    link.writer.write(data)
                    await link.writer.drain()
                elif link.conn.closed:
                    break
                else:
                    try:
                        async with asyncio.timeout(self._core.timeouts.idle if link.idle
                                                   else None):
                            await link.wake.wait()
                    except TimeoutError:
                        self._deliver(link.retire())
        except Exception:  # noqa: BLE001 - the write failed
            pass
        finally:
            self._core.h2.discard(link)
            self._deliver(link.feed(b"") + link.retire())
            link.writer.transport.abort()
            link.finished.set()

    @staticmethod
    def _close(conns: list[_Conn]) -> None:
        for conn in conns:
            conn.writer.transport.abort()

    async def aclose(self) -> None:
        links, deliveries, idle = self._core.shutdown()  # GOAWAY, then close
        self._deliver(deliveries)
        for link in links:
            link.wake.set()
        if tasks := list(self._tasks):
            await asyncio.wait(tasks, timeout=self._core.timeouts.close_grace)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self._close(idle)
        await asyncio.sleep(0)  # let the transports finish closing

    async def fetch(self, request: UpstreamRequest, proxy: str | None = None
                    ) -> tuple[int, bytes] | str:
        """One whole request (model discovery, CONFIG_URL): status and body, or the error."""
        got, timeout = Collector(), self._core.timeouts.discovery
        try:
            async with asyncio.timeout(timeout):
                await self.run(request, proxy, partial(_add, got))
        except TimeoutError:
            return no_answer(timeout)
        return got.result()

    async def fetch_image(self, action: Fetch) -> FetchResult:
        """GET a remote image for the core: resolve, connect only to the address the core's
        policy allows (pinned; the name stays in SNI and Host), read at most ``max_bytes``."""
        url, got, attempt = action.url, Collector(action.max_bytes), None
        try:
            async with asyncio.timeout(action.timeout):
                infos = await asyncio.get_running_loop().getaddrinfo(
                    url.host, url.port, type=socket.SOCK_STREAM)
                address = pick_address([i[4][0] for i in infos],
                                       allow_private=action.allow_private)
                if address is None:
                    return FetchResult(error=ADDRESS_REFUSED)
                tls = self._image_ssl if url.scheme == "https" else None
                reader, writer = await asyncio.open_connection(
                    address, url.port, ssl=tls, server_hostname=url.host if tls else None)
                conn = _Conn(reader, writer, (None, url.origin))
                attempt = image_request(conn, url)
                try:
                    await self._attempt(conn, attempt, partial(_add, got))
                finally:
                    writer.transport.abort()
        except Full:
            pass
        except BROKEN as exc:
            return fetch_failure(failure_kind(exc, FAILURES), exc, action.timeout)
        return got.image(attempt)

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
            try:
                attempt = self._core.attempt(conn, target, fresh, retried)
                outcome = await self._attempt(conn, attempt, post)
            finally:  # also on cancellation: an abandoned exchange never returns to the pool
                self._close(self._core.release(conn, outcome, asyncio.get_running_loop().time()))
            if outcome != RETRY:
                return
            retried, avoid = True, conn  # stale or refused: once more on another connection

    async def _attempt(self, conn: _Conn | _Link, attempt: Attempt, post: Post) -> str | None:
        """Run one attempt; its outcome once every event is posted."""
        link = conn if isinstance(conn, _Link) else None
        sink: asyncio.Queue | None = asyncio.Queue() if link is not None else None
        read = sink.get if sink is not None else partial(conn.reader.read, READ_SIZE)
        try:
            if data := attempt.start(sink):
                conn.writer.write(data)
                await conn.writer.drain()
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
