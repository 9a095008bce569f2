"""The trio front: each accepted connection is a ``uniapi_core.connection.Connection``, driven
by the loop of docs/architecture.md ("The door")."""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import math
import os
import ssl
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import trio

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
from .upstream import UpstreamPool, plain_socket, receive_some, send_all

__all__ = ["serve", "handle_connection"]


TIMER = DeadlineReached()
#: the process's hot reload (``runtime.py``): why the config was refused, or None
Reloader = Callable[[], Awaitable[str | None]]


async def handle_connection(stream: trio.abc.Stream, get_gateway: Callable[[], Gateway],
                            pool: UpstreamPool, options: FrontOptions,
                            draining: trio.Event | None = None,
                            wall: Callable[[], float] = time.time,
                            watches: dict[object, trio.Event] | None = None,
                            peer: str | None = None, store: Store | None = None,
                            reload: Reloader | None = None,
                            fleet: SharedRedis | None = None,
                            tracked: tuple[Occupancy, int] | None = None) -> None:
    """Serve one client connection until the core closes it (``watches``: the process's;
    ``reload``: the process's hot reload, the error text or None; ``fleet``: its link to the
    shared-state Redis)."""
    alpn = None
    access = AccessLog(options.log_format)
    if isinstance(stream, trio.SSLStream):
        try:
            with trio.fail_after(options.limits.head_timeout):
                await stream.do_handshake()
        except (trio.BrokenResourceError, trio.TooSlowError, OSError):
            await trio.aclose_forcefully(stream)
            return
        alpn = stream.selected_alpn_protocol()
    send, inbox = trio.open_memory_channel[object](INBOX)
    conn = Connection(get_gateway, options.limits, options.h2, now=trio.current_time(),
                      alpn=alpn, peer=peer, occupancy=tracked, post=partial(_post_nowait, send))
    scopes: dict[int, trio.CancelScope] = {}
    paused: dict[int, trio.Event] = {}  # PauseUpstream refs -> set at ResumeUpstream
    watches = {} if watches is None else watches
    watch = WriteWatch(options.write_stall_timeout)
    writing = trio.CancelScope()
    plain = plain_socket(stream)  # reads and writes without SocketStream's wrappers

    async def watch_writes() -> None:
        """Give up on a client whose queued bytes stop going down (uniapi_core.http.stall)."""
        while True:
            await trio.sleep(watch.interval)
            if watch.stalled(trio.current_time(), acked(stream)):
                writing.cancel()

    async def write(data: bytes) -> bool:
        nonlocal writing
        writing = trio.CancelScope()
        watch.begin(trio.current_time())
        try:
            with writing:
                await send_all(stream, plain, data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return False
        finally:
            watch.end()
        return not writing.cancelled_caught

    async def post(event: object) -> None:
        try:  # no task switch per event while the inbox has room: the loop drains it in turn
            send.send_nowait(event)
        except trio.WouldBlock:
            await send.send(event)

    async def read_client() -> None:
        while True:
            try:
                data = await receive_some(stream, plain)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                data = b""
            await post(ClientData(data))
            if not data:
                return

    async def post_upstream(event: object) -> None:
        await post(event)
        while (resumed := paused.get(event.ref)) is not None:  # type: ignore[attr-defined]
            await resumed.wait()

    def spawn(ref: int, work: Callable[[], Awaitable[object]]) -> None:
        scopes[ref] = trio.CancelScope()
        nursery.start_soon(run_task, ref, work, scopes[ref])

    async def run_task(ref: int, work: Callable[[], Awaitable[object]],
                       scope: trio.CancelScope) -> None:
        try:
            with scope:
                if (event := await work()) is not None:
                    await post(event)
        finally:  # refs are never reused: a keep-alive connection must not collect scopes
            scopes.pop(ref, None)

    async def fetch_image(action: Fetch) -> FetchDone:
        return FetchDone(action.ref, await pool.fetch_image(action))

    async def notified(ref: int, woken: trio.Event) -> Notified:
        await woken.wait()
        return Notified(ref)

    async def reloaded(ref: int) -> Reloaded:
        return Reloaded(ref, NO_RELOAD if reload is None else await reload())

    def shared_done(ref: int, replies: list | None) -> None:
        """The fleet's answer, from its reader: into the inbox, not through a task."""
        try:
            send.send_nowait(SharedDone(ref, replies))
        except trio.WouldBlock:
            with contextlib.suppress(RuntimeError):  # the connection is over
                nursery.start_soon(post, SharedDone(ref, replies))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    async def perform(actions: list) -> bool:
        """Carry out the core's actions; False once the connection is to be closed."""
        for action in actions:  # consecutive writes come merged
            cls = type(action)
            if cls is Write:
                if not await write(action.data):
                    return await perform(conn.handle(WriteFailed(), trio.current_time(), wall()))
            elif cls is StartUpstream:
                spawn(action.ref, partial(pool.run, action.request, action.proxy,
                                          post_upstream, action.ref))
            elif cls is Fetch:
                spawn(action.ref, partial(fetch_image, action))
            elif cls is Query:
                spawn(action.ref, partial(store.query, action))  # type: ignore[union-attr]
            elif cls is Reload:
                spawn(action.ref, partial(reloaded, action.ref))
            elif cls is Scrape:
                spawn(action.ref, partial(scrape, action))
            elif cls is RunShared:
                if fleet is None:
                    shared_done(action.ref, None)
                else:
                    fleet.ask(action.commands, action.timeout, partial(shared_done, action.ref))
            elif cls is TellShared:
                if fleet is not None:
                    fleet.tell(action.commands)
            elif cls is Watch:
                woken = watches.setdefault(action.key, trio.Event())  # registered now, not later
                spawn(action.ref, partial(notified, action.ref, woken))
            elif cls is Notify:
                if (event := watches.pop(action.key, None)) is not None:
                    event.set()
            elif cls is StopUpstream:
                scopes.pop(action.ref, trio.CancelScope()).cancel()
            elif cls is PauseUpstream:
                paused[action.ref] = trio.Event()
            elif cls is ResumeUpstream:
                paused.pop(action.ref, trio.Event()).set()
            elif cls is Served:
                sys.stderr.write(access.line(action.record))  # accesslog.py
            elif cls is Close:
                closing.append(action.linger)
                return False
        return True

    async def watch_drain(draining: trio.Event) -> None:
        await draining.wait()
        await send.send(DrainStarted())

    closing: list[bool] = []  # Close's linger, once said
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_client)
            nursery.start_soon(watch_writes)
            if draining is not None:
                nursery.start_soon(watch_drain, draining)
            try:
                while True:
                    try:  # events first: they may make a passed deadline moot
                        event = inbox.receive_nowait()
                    except trio.WouldBlock:
                        deadline = conn.next_deadline()
                        event = TIMER
                        with trio.move_on_at(deadline if deadline is not None else math.inf):
                            event = await inbox.receive()
                    if not await perform(conn.handle(event, trio.current_time(), wall())):
                        break
            finally:
                nursery.cancel_scope.cancel()
        if closing and closing[0]:
            await linger(stream)
    finally:
        await trio.aclose_forcefully(stream)


async def trim_memory_soon() -> None:
    """In ``TRIM_AFTER`` s, hand the heap's freed memory back to the system (glibc's
    ``malloc_trim``; elsewhere nothing): ``Occupancy.trim_due`` said a burst is over."""
    await trio.sleep(TRIM_AFTER)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def _post_nowait(send: trio.MemorySendChannel[object], event: object) -> None:
    with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
        send.send_nowait(event)  # a full inbox: busy, not to be shed anyway


async def linger(stream: trio.abc.Stream) -> None:
    """A lingering close (``events.Close``): half-close, then read and drop what the client
    still sends, for at most ``LINGER_TIME`` s and ``LINGER_BYTES``."""
    with trio.move_on_after(LINGER_TIME), contextlib.suppress(
            trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        if isinstance(stream, trio.abc.HalfCloseableStream):
            await stream.send_eof()
        left = LINGER_BYTES
        while left > 0 and (data := await stream.receive_some(READ_SIZE)):
            left -= len(data)


class Store:
    """The stats store's worker thread: the core's ``StoreSession`` in it, one work at a time
    (what to run and when: ``Gateway.stats_*``, ``ops/stats.py``)."""

    def __init__(self, config: StoreConfig) -> None:
        self.session, self.turn = StoreSession(config, importlib.import_module,
                                               os.makedirs), trio.CapacityLimiter(1)

    async def run(self, work: object) -> list | str:
        return await trio.to_thread.run_sync(self.session.run, work, limiter=self.turn)

    async def query(self, action: Query) -> QueryDone:
        return QueryDone(action.ref, await self.run(action.work))

    async def flush(self, get_gateway: Callable[[], Gateway], stopped: trio.Event,
                    wall: Callable[[], float]) -> None:
        """The schema, then the rows in batches off the request path; the rest once stopped."""
        work = get_gateway().stats_start(wall())
        with trio.CancelScope(shield=True):  # cancelled too: serve sets stopped (as asyncio)
            while work is not None or not stopped.is_set():
                if work is not None:
                    get_gateway().stats_done(work, await self.run(work), trio.current_time())
                else:
                    with trio.move_on_at(get_gateway().stats_deadline(trio.current_time())):
                        await stopped.wait()
                work = get_gateway().stats_next(trio.current_time(), stopped.is_set())


async def _until(scope: trio.CancelScope,
                 *runs: Callable[[], Awaitable[None]] | None) -> None:
    with scope:
        async with trio.open_nursery() as nursery:
            for run in runs:
                if run is not None:
                    nursery.start_soon(run)


async def follow_reloads(fleet: SharedRedis, get_gateway: Callable[[], Gateway],
                         reload: Reloader) -> None:
    """The fleet's reload generation, looked at every ``RELOAD_POLL`` s (``ReloadFollower``)."""
    follower = ReloadFollower()
    while True:
        await trio.sleep(RELOAD_POLL)
        commands = follower.ask(get_gateway(), trio.current_time())
        if commands is not None and follower.told(await fleet.call(commands, RELOAD_POLL)):
            await reload()
            follower.followed(get_gateway())


async def scrape(action: Scrape) -> Scraped:
    """The other workers' metrics snapshots (``--workers``), read in a worker thread."""
    return Scraped(action.ref, await trio.to_thread.run_sync(
        read_snapshots, action.directory, os.listdir, lambda p: Path(p).read_bytes(),
        snapshot_file(str(os.getpid()))))


async def publish(get_gateway: Callable[[], Gateway], directory: str,
                  stopped: trio.Event) -> None:
    """``--workers``: this worker's metrics, for the others' scrapes, every second."""
    path = os.path.join(directory, snapshot_file(str(os.getpid())))
    while not stopped.is_set():
        data = get_gateway().metrics_snapshot(trio.current_time())
        await trio.to_thread.run_sync(write_snapshot, path, data,
                                      lambda p, d: Path(p).write_bytes(d), os.replace)
        with trio.move_on_after(PUBLISH_EVERY):
            await stopped.wait()


def acked(stream: trio.abc.Stream) -> int | None:
    """Bytes the client has acknowledged on this TCP connection (Linux tcpi_bytes_acked)."""
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    with contextlib.suppress(OSError, AttributeError):
        return bytes_acked(stream.socket.getsockopt(  # type: ignore[attr-defined]
            socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_SIZE))
    return None


async def _listeners(host: str, port: int, reuse_port: bool) -> list[trio.SocketListener]:
    """``trio.open_tcp_listeners``, or one SO_REUSEPORT socket shared with sibling workers."""
    if not reuse_port:
        return await trio.open_tcp_listeners(port, host=host, backlog=LISTEN_BACKLOG)
    sock = socket.create_server((host, port), backlog=LISTEN_BACKLOG, reuse_port=True)
    return [trio.SocketListener(trio.socket.from_stdlib_socket(sock))]


def tls_context(options: FrontOptions) -> ssl.SSLContext | None:
    """The server TLS context, or None for cleartext."""
    if not options.certfile:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(options.certfile, options.keyfile)
    ctx.set_alpn_protocols(list(ALPN))
    return ctx


async def serve(get_gateway: Callable[[], Gateway], host: str, port: int, *,
                options: FrontOptions = FrontOptions(), pool: UpstreamPool | None = None,
                stop: trio.Event | None = None, wall: Callable[[], float] = time.time,
                task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
                reload: Reloader | None = None) -> None:
    """Listen until ``stop`` is set, then drain for up to ``options.drain_grace`` seconds;
    ``wall``: the wall clock (``time.time``, or a test's fixed one)."""
    pool = pool or UpstreamPool()
    context = tls_context(options)
    listeners = await _listeners(host, port, options.reuse_port)
    bound = listeners[0].socket.getsockname()[1]
    draining, drained = trio.Event(), trio.Event()
    watches: dict[object, trio.Event] = {}
    occupancy = Occupancy(options.max_connections,
                          lambda: getattr(get_gateway(), "metrics", None))
    gateway = get_gateway()  # the demo's upstream has no stats: a gateway-shaped object
    queue = getattr(gateway, "stats", None)  # a StatsQueue is falsy while empty: "is None"
    store = None if queue is None else Store(gateway.settings.stats_store)
    redis = getattr(getattr(gateway, "settings", None), "redis", None)
    fleet = None if redis is None else SharedRedis(redis, (SOURCE,))

    async def handler(tcp: trio.SocketStream, peer: str | None = None) -> None:
        if (conn_id := occupancy.opened(trio.current_time())) is None:  # at the cap, none idle
            await trio.aclose_forcefully(tcp)
            return
        with contextlib.suppress(OSError):  # a client already gone is nobody
            peer = str(tcp.socket.getpeername()[0])
        try:
            stream: trio.abc.Stream = tcp
            if context is not None:
                stream = trio.SSLStream(tcp, context, server_side=True, https_compatible=True)
            await handle_connection(stream, get_gateway, pool, options, draining, wall,
                                    watches, peer, store, reload, fleet, (occupancy, conn_id))
        finally:
            occupancy.closed(conn_id)
            if occupancy.trim_due(trio.current_time()):
                background.start_soon(trim_memory_soon)

    async with trio.open_nursery() as background:
        linked = trio.CancelScope()  # the fleet's link lives until the drain is over
        if fleet is not None:
            fleet.callers.on_state = shared_state_text(redis, sys.stderr.write)
            background.start_soon(_until, linked, fleet.run, None if reload is None else partial(
                follow_reloads, fleet, get_gateway, reload))  # a reload anywhere is followed
        if store is not None:
            background.start_soon(store.flush, get_gateway, drained, wall)
        if (shared := getattr(getattr(gateway, "settings", None), "metrics_dir", None)):
            background.start_soon(publish, get_gateway, shared, drained)
        try:
            async with trio.open_nursery() as connections:
                async with trio.open_nursery() as accepting:
                    await accepting.start(partial(trio.serve_listeners, handler, listeners,
                                                  handler_nursery=connections))
                    task_status.started(bound)
                    await (stop if stop is not None else trio.Event()).wait()
                    accepting.cancel_scope.cancel()
                draining.set()
                connections.cancel_scope.deadline = trio.current_time() + options.drain_grace
        finally:  # stopped or cancelled: the stats flush writes what is left, then ends
            drained.set()
            linked.cancel()
