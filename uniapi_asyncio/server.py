"""The asyncio front: accept connections (TCP, or TLS with ALPN) and run each as a
``uniapi_core.connection.Connection`` (HTTP/1.1 or HTTP/2, decided by the core).

Per connection: one reader task feeding client bytes, one task per upstream exchange, fetch
or watch, and the loop below, which hands every event to ``Connection.handle`` and performs
the actions it returns. Clocks: ``loop.time()`` (monotonic) for deadlines, ``serve``'s
``wall()`` for wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import os
import ssl
import sys
from socket import IPPROTO_TCP, TCP_INFO
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from uniapi_core.connection import ALPN, INBOX, LISTEN_BACKLOG, Connection
from uniapi_core.events import (LINGER_BYTES, LINGER_TIME, ClientData, Close, DeadlineReached,
                                DrainStarted, Fetch, FetchDone,
                                Notified, Notify, PauseUpstream, Query, QueryDone, Reload, Reloaded,
                                ResumeUpstream, RunShared, Scrape, Scraped, Served,
                                SharedDone, StartUpstream, StopUpstream, TellShared, Watch, Write,
                                WriteFailed)
from uniapi_core.gateway import Gateway
from uniapi_core.ops.accesslog import AccessLog
from uniapi_core.ops.metrics import PUBLISH_EVERY, read_snapshots, snapshot_file, write_snapshot
from uniapi_core.ops.stats import StoreConfig, StoreSession
from uniapi_core.http.occupancy import TRIM_AFTER, Occupancy
from uniapi_core.http.pool import READ_SIZE
from uniapi_core.http.stall import TCP_INFO_SIZE, WriteWatch, bytes_acked
from uniapi_core.redis.script import SOURCE
from uniapi_core.routing.shared import RELOAD_POLL, ReloadFollower
from uniapi_core.startup import NO_RELOAD, FrontOptions, shared_state_text

from .redis import SharedRedis
from .upstream import UpstreamPool

__all__ = ["serve", "handle_connection"]


TIMER = DeadlineReached()

#: the process's hot reload (``runtime.py``): why the config was refused, or None
Reloader = Callable[[], Awaitable[str | None]]


async def handle_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            get_gateway: Callable[[], Gateway], pool: UpstreamPool,
                            options: FrontOptions, draining: asyncio.Event | None = None,
                            wall: Callable[[], float] = time.time,
                            watches: dict[object, asyncio.Event] | None = None,
                            store: Store | None = None, reload: Reloader | None = None,
                            fleet: SharedRedis | None = None,
                            tracked: tuple[Occupancy, int] | None = None) -> None:
    """Serve one client connection until the core closes it; ``draining`` set means shut
    down gracefully; ``watches``: the process's ``Watch`` keys (shared by connections);
    ``reload``: the process's hot reload (the error text, or None); ``fleet``: its link to
    the shared-state Redis."""
    loop = asyncio.get_running_loop()
    tls = writer.get_extra_info("ssl_object")
    peer = writer.get_extra_info("peername")
    inbox: asyncio.Queue[object] = asyncio.Queue(INBOX)
    conn = Connection(get_gateway, options.limits, options.h2, now=loop.time(),
                      alpn=tls.selected_alpn_protocol() if tls is not None else None,
                      peer=str(peer[0]) if isinstance(peer, tuple) and peer else None,
                      occupancy=tracked, post=partial(_post_nowait, inbox))
    paused: dict[int, asyncio.Event] = {}  # PauseUpstream refs -> set at ResumeUpstream
    watches = {} if watches is None else watches
    watch = WriteWatch(options.write_stall_timeout)
    access = AccessLog(options.log_format)
    raw = writer.get_extra_info("socket")

    async def watch_writes() -> None:
        """Give up on a client whose queued bytes stop going down (uniapi_core.http.stall)."""
        while True:
            await asyncio.sleep(watch.interval)
            if watch.stalled(loop.time(), acked(raw)):
                writer.transport.abort()  # the pending drain() then fails

    async def write(data: bytes) -> bool:
        watch.begin(loop.time())
        try:
            writer.write(data)
            await writer.drain()
            return True
        except OSError:
            return False
        finally:
            watch.end()
    tasks: dict[int, asyncio.Task] = {}  # by ref; -1..-3: reader, drain and write watchers
    # a drained write buffer means the bytes reached the kernel, as a finished send_all does
    # (not under TLS: asyncio's SSL transport then never resumes a paused writer)
    if tls is None:
        writer.transport.set_write_buffer_limits(0)

    async def read_client() -> None:
        while True:
            try:
                data = await reader.read(READ_SIZE)
            except OSError:
                data = b""
            await inbox.put(ClientData(data))
            if not data:
                return

    async def post_upstream(event: object) -> None:
        await inbox.put(event)
        while (resumed := paused.get(event.ref)) is not None:  # type: ignore[attr-defined]
            await resumed.wait()

    async def run_task(ref: int, work: Callable[[], Awaitable[object]]) -> None:
        try:
            if (event := await work()) is not None:
                await inbox.put(event)
        finally:  # refs are never reused: a keep-alive connection must not collect tasks
            tasks.pop(ref, None)

    async def fetch_image(action: Fetch) -> FetchDone:
        return FetchDone(action.ref, await pool.fetch_image(action))

    async def notified(ref: int, woken: asyncio.Event) -> Notified:
        await woken.wait()
        return Notified(ref)

    async def reloaded(ref: int) -> Reloaded:
        return Reloaded(ref, NO_RELOAD if reload is None else await reload())

    def shared_done(ref: int, replies: list | None) -> None:
        """The fleet's answer, from its reader: into the inbox, not through a task."""
        try:
            inbox.put_nowait(SharedDone(ref, replies))
        except asyncio.QueueFull:
            with contextlib.suppress(RuntimeError):  # the connection is over
                tasks[ref] = nursery.create_task(run_task(ref, partial(
                    asyncio.sleep, 0, SharedDone(ref, replies))))

    async def perform(actions: list) -> bool:
        """Carry out the core's actions; False once the connection is to be closed."""
        for action in actions:  # consecutive writes come merged
            cls = type(action)
            if cls is Write:
                if not await write(action.data):
                    return await perform(conn.handle(WriteFailed(), loop.time(), wall()))
            elif cls is StartUpstream:
                tasks[action.ref] = nursery.create_task(run_task(action.ref, partial(
                    pool.run, action.request, action.proxy, post_upstream, action.ref)))
            elif cls is Fetch:
                tasks[action.ref] = nursery.create_task(run_task(action.ref,
                                                                 partial(fetch_image, action)))
            elif cls is Query:
                tasks[action.ref] = nursery.create_task(run_task(action.ref, partial(
                    store.query, action)))  # type: ignore[union-attr]
            elif cls is Reload:
                tasks[action.ref] = nursery.create_task(run_task(action.ref, partial(
                    reloaded, action.ref)))
            elif cls is Scrape:
                tasks[action.ref] = nursery.create_task(run_task(action.ref, partial(
                    scrape, action)))
            elif cls is RunShared:
                if fleet is None:
                    shared_done(action.ref, None)
                else:
                    fleet.ask(action.commands, action.timeout, partial(shared_done, action.ref))
            elif cls is TellShared:
                if fleet is not None:
                    fleet.tell(action.commands)
            elif cls is Watch:
                woken = watches.setdefault(action.key, asyncio.Event())  # registered now, not later
                tasks[action.ref] = nursery.create_task(run_task(action.ref, partial(
                    notified, action.ref, woken)))
            elif cls is Notify:
                if (event := watches.pop(action.key, None)) is not None:
                    event.set()
            elif cls is StopUpstream:
                if (task := tasks.pop(action.ref, None)) is not None:
                    task.cancel()
            elif cls is PauseUpstream:
                paused[action.ref] = asyncio.Event()
            elif cls is ResumeUpstream:
                paused.pop(action.ref, asyncio.Event()).set()
            elif cls is Served:
                sys.stderr.write(access.line(action.record))  # accesslog.py
            elif cls is Close:
                closing.append(action.linger)
                return False
        return True

    async def watch_drain() -> None:
        assert draining is not None
        await draining.wait()
        await inbox.put(DrainStarted())

    closing: list[bool] = []  # Close's linger, once said
    try:
        async with asyncio.TaskGroup() as nursery:
            tasks[-1] = nursery.create_task(read_client())
            tasks[-3] = nursery.create_task(watch_writes())
            if draining is not None:
                tasks[-2] = nursery.create_task(watch_drain())
            try:
                while True:
                    try:  # events first: they may make a passed deadline moot
                        event = inbox.get_nowait()
                    except asyncio.QueueEmpty:
                        event = TIMER
                        try:
                            async with asyncio.timeout_at(conn.next_deadline()):
                                event = await inbox.get()
                        except TimeoutError:
                            pass
                    if not await perform(conn.handle(event, loop.time(), wall())):  # type: ignore
                        break
            finally:
                for task in tasks.values():
                    task.cancel()
        if closing and closing[0]:
            await linger(reader, writer)
    finally:
        writer.transport.abort()


def trim_memory() -> None:
    """Hand the heap's freed memory back to the system (glibc's ``malloc_trim``; elsewhere
    nothing): ``Occupancy.trim_due`` said a burst is over."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def _post_nowait(inbox: asyncio.Queue[object], event: object) -> None:
    with contextlib.suppress(asyncio.QueueFull):  # a full inbox: busy, not to be shed anyway
        inbox.put_nowait(event)


async def linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A lingering close (``events.Close``): half-close once what was written is sent, then
    read and drop what the client still sends, for at most ``LINGER_TIME`` s and
    ``LINGER_BYTES``."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(LINGER_TIME):
            if writer.can_write_eof():
                writer.write_eof()
            left = LINGER_BYTES
            while left > 0 and (data := await reader.read(READ_SIZE)):
                left -= len(data)


def acked(sock: object) -> int | None:
    """Bytes the peer has acknowledged on this TCP connection (Linux tcpi_bytes_acked)."""
    with contextlib.suppress(OSError, AttributeError):
        return bytes_acked(sock.getsockopt(IPPROTO_TCP, TCP_INFO, TCP_INFO_SIZE))  # type: ignore[attr-defined]
    return None


async def listen(handler: Callable[..., Awaitable[None]], host: str, port: int,
                 tasks: set[asyncio.Task], *, context: ssl.SSLContext | None = None,
                 handshake_timeout: float | None = None, occupancy: Occupancy | None = None,
                 reuse_port: bool = False) -> asyncio.Server:
    """``asyncio.start_server``, keeping every running handler task in ``tasks`` so that
    shutdown can cancel and await them (none may outlive the loop). ``occupancy`` admits each
    connection (``handler(reader, writer, (occupancy, id))``), or refuses it at the cap, none
    being idle: it is closed at once. A TLS handshake gets ``handshake_timeout``."""

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn_id = None
        if occupancy is not None:
            if (conn_id := occupancy.opened(asyncio.get_running_loop().time())) is None:
                writer.transport.abort()
                return
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer, None if conn_id is None else (occupancy, conn_id))
        except asyncio.CancelledError:  # by cancel_all: asyncio logs cancelled handler tasks
            pass
        finally:
            tasks.discard(task)
            if conn_id is not None:
                occupancy.closed(conn_id)  # type: ignore[union-attr]
                if occupancy.trim_due(asyncio.get_running_loop().time()):  # type: ignore
                    asyncio.get_running_loop().call_later(TRIM_AFTER, trim_memory)

    return await asyncio.start_server(tracked, host, port, ssl=context,
                                      ssl_handshake_timeout=handshake_timeout if context else None,
                                      reuse_port=reuse_port or None, backlog=LISTEN_BACKLOG)


def tls_context(options: FrontOptions) -> ssl.SSLContext | None:
    """The server TLS context (ALPN ``h2``, ``http/1.1``), or None for cleartext."""
    if not options.certfile:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(options.certfile, options.keyfile)
    ctx.set_alpn_protocols(list(ALPN))
    return ctx


class Store:
    """The stats store's worker thread: the core's ``StoreSession`` in it, one work at a time
    (what to run and when: ``Gateway.stats_*``, ``ops/stats.py``)."""

    def __init__(self, config: StoreConfig) -> None:
        self.session = StoreSession(config, importlib.import_module, os.makedirs)
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="uniapi-stats")

    async def run(self, work: object) -> list | str:
        return await asyncio.get_running_loop().run_in_executor(self.thread, self.session.run,
                                                                work)

    async def query(self, action: Query) -> QueryDone:
        return QueryDone(action.ref, await self.run(action.work))

    async def flush(self, get_gateway: Callable[[], Gateway], stopped: asyncio.Event,
                    wall: Callable[[], float]) -> None:
        """The schema, then the rows in batches off the request path; the rest once stopped."""
        loop, work = asyncio.get_running_loop(), get_gateway().stats_start(wall())
        while work is not None or not stopped.is_set():
            if work is not None:
                get_gateway().stats_done(work, await self.run(work), loop.time())
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopped.wait(), max(
                        0.0, get_gateway().stats_deadline(loop.time()) - loop.time()))
            work = get_gateway().stats_next(loop.time(), stopped.is_set())
        self.thread.shutdown(wait=False)


async def scrape(action: Scrape) -> Scraped:
    """The other workers' metrics snapshots (``--workers``), read in a worker thread."""
    return Scraped(action.ref, await asyncio.to_thread(
        read_snapshots, action.directory, os.listdir, lambda p: Path(p).read_bytes(),
        snapshot_file(str(os.getpid()))))


async def publish(get_gateway: Callable[[], Gateway], directory: str) -> None:
    """``--workers``: this worker's metrics, for the others' scrapes, every second."""
    path = os.path.join(directory, snapshot_file(str(os.getpid())))
    loop = asyncio.get_running_loop()
    while True:
        data = get_gateway().metrics_snapshot(loop.time())
        await asyncio.to_thread(write_snapshot, path, data, lambda p, d: Path(p).write_bytes(d),
                                os.replace)
        await asyncio.sleep(PUBLISH_EVERY)


async def cancel_all(tasks: set[asyncio.Task]) -> None:
    """Cancel ``tasks`` and wait until every one has finished."""
    for task in list(tasks):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def follow_reloads(fleet: SharedRedis, get_gateway: Callable[[], Gateway],
                         reload: Reloader) -> None:
    """The fleet's reload generation, looked at every ``RELOAD_POLL`` s (``ReloadFollower``)."""
    follower = ReloadFollower()
    while True:
        await asyncio.sleep(RELOAD_POLL)
        commands = follower.ask(get_gateway(), asyncio.get_running_loop().time())
        if commands is not None and follower.told(await fleet.call(commands, RELOAD_POLL)):
            await reload()
            follower.followed(get_gateway())


async def serve(get_gateway: Callable[[], Gateway], host: str, port: int, *,
                options: FrontOptions = FrontOptions(), pool: UpstreamPool | None = None,
                stop: asyncio.Event | None = None, wall: Callable[[], float] = time.time,
                ready: Callable[[int], None] | None = None,
                reload: Reloader | None = None) -> None:
    """Listen on ``host:port`` until ``stop`` is set (or forever), then drain: accept no
    more, let requests in flight finish for up to ``options.drain_grace`` seconds, then cut
    the rest. Over ``options.max_connections`` a new connection is closed at once.
    ``wall`` is the wall clock (of ``created``): ``time.time``, or a test's fixed one."""
    pool = pool or UpstreamPool()
    connections: set[asyncio.Task] = set()
    draining, drained = asyncio.Event(), asyncio.Event()
    watches: dict[object, asyncio.Event] = {}
    gateway = get_gateway()  # the demo's upstream has no stats: a gateway-shaped object
    queue = getattr(gateway, "stats", None)  # a StatsQueue is falsy while empty: "is None"
    store = None if queue is None else Store(gateway.settings.stats_store)
    flushing = store and asyncio.create_task(store.flush(get_gateway, drained, wall))
    shared = getattr(getattr(gateway, "settings", None), "metrics_dir", None)
    publishing = shared and asyncio.create_task(publish(get_gateway, shared))
    redis = getattr(getattr(gateway, "settings", None), "redis", None)
    fleet = None if redis is None else SharedRedis(redis, (SOURCE,))
    if fleet is not None:
        fleet.callers.on_state = shared_state_text(redis, sys.stderr.write)
    linking = fleet and asyncio.create_task(fleet.run())
    following = fleet and reload and asyncio.create_task(follow_reloads(fleet, get_gateway,
                                                                        reload))

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      tracked: tuple[Occupancy, int] | None) -> None:
        await handle_connection(reader, writer, get_gateway, pool, options, draining, wall,
                                watches, store, reload, fleet, tracked)

    occupancy = Occupancy(options.max_connections,
                          lambda: getattr(get_gateway(), "metrics", None))
    server = await listen(handler, host, port, connections, context=tls_context(options),
                          handshake_timeout=options.limits.head_timeout, occupancy=occupancy,
                          reuse_port=options.reuse_port)
    bound = server.sockets[0].getsockname()[1]
    try:
        if ready is not None:
            ready(bound)
        await (stop if stop is not None else asyncio.Event()).wait()
        server.close()
        draining.set()
        if connections:
            await asyncio.wait(set(connections), timeout=options.drain_grace)
    finally:
        server.close()
        await cancel_all(connections)
        drained.set()
        if publishing:
            await cancel_all({publishing})
        if linking:
            await cancel_all({linking, *([following] if following else [])})
        if flushing:
            await flushing
