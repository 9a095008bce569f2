"""uniapi on plain asyncio streams, from uniapi_core's public API only (docs/embedding.md).

    python docs/examples/asyncio_proxy.py api.yaml --port 8000

Teaching material, not ``uniapi_asyncio``: no TLS, no HTTP/2 or proxied upstreams (plain
``http://`` only), no image fetches, no model discovery (list each provider's models), no
write stall timeout, connection cap or graceful shutdown.
"""

# ruff: noqa: I001 - the names are wrapped as elsewhere in the repository, not one a line
import argparse
import asyncio
import contextlib
import random
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

from uniapi_core import (LOST, ORIGIN, READ_SIZE, RETRY, TIMEOUT, Action, ClientData, Close,
                         ConfigError, Connect, Connection, ConnectionManager, DeadlineReached,
                         Event, Fetch, FetchDone, FetchResult, Gateway, H1Conn, H2Link, Notified,
                         Notify, PauseUpstream, ResumeUpstream, Served, StartUpstream,
                         StopUpstream, UpstreamEvent, UpstreamFailed, Watch, Write, WriteFailed,
                         failure_kind, load_config)

FAILURES = ((TimeoutError, TIMEOUT), (OSError, LOST))  # our exceptions -> the core's kinds


class Upstream(H1Conn):
    """An HTTP/1.1 upstream connection: the core's sans-IO side, plus our streams."""

    def __init__(self, key: object, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        super().__init__(key)
        self.reader, self.writer = reader, writer


Manager = ConnectionManager[Upstream, H2Link]


async def exchange(manager: Manager, action: StartUpstream,
                   post: Callable[[UpstreamEvent], Awaitable[None]]) -> None:
    """Perform one ``StartUpstream``: the manager picks the connection (a kept one or a new
    one), its attempt driver turns bytes into events; a stale kept one is retried once."""
    loop = asyncio.get_running_loop()
    target = manager.target(action.request, None, action.ref)
    if not isinstance(target, UpstreamFailed) and (action.proxy or target.url.scheme != "http"):
        target = UpstreamFailed(action.ref, "connect", "this example speaks plain http:// only")
    if isinstance(target, UpstreamFailed):
        return await post(target)
    retried = False
    while True:
        conn = manager.route(target.key, loop.time(), None, retried)  # kept one, or Connect
        if fresh := isinstance(conn, Connect):
            try:
                async with asyncio.timeout(manager.timeouts.connect):
                    streams = await asyncio.open_connection(target.url.host, target.url.port)
            except OSError as exc:  # TimeoutError is one too
                kind = failure_kind(exc, FAILURES) or LOST
                return await post(target.failed(
                    manager.connect_failure(target.key, ORIGIN, kind, exc)))
            conn = Upstream(target.key, *streams)
        assert isinstance(conn, Upstream)  # never an HTTP/2 link for http://
        attempt = manager.attempt(conn, target, fresh, retried)
        try:
            if data := attempt.start():
                conn.writer.write(data)
                await conn.writer.drain()
            while True:
                for event in attempt.take():
                    await post(cast(UpstreamEvent, event))
                if attempt.outcome:
                    break
                attempt.feed(await conn.reader.read(READ_SIZE))
        except OSError as exc:  # the core decides: retry, or an UpstreamFailed to post
            attempt.lost(exc)
            for event in attempt.take():
                await post(cast(UpstreamEvent, event))
        finally:  # kept for the next request, or closed (always when we were cancelled)
            for done in manager.release(conn, attempt.outcome, loop.time()):
                done.writer.close()
        if attempt.outcome != RETRY:
            return
        retried = True


async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       gateway: Gateway, manager: Manager,
                       watches: dict[object, asyncio.Event]) -> None:
    """One client connection: one ``Connection``, fed events until it says ``Close``."""
    loop = asyncio.get_running_loop()
    conn = Connection(lambda: gateway, now=loop.time())
    inbox: asyncio.Queue[Event] = asyncio.Queue(16)  # full: upstream reads wait (backpressure)
    tasks: dict[int, asyncio.Task[None]] = {}  # by ref: what StopUpstream cancels
    paused: dict[int, asyncio.Event] = {}  # PauseUpstream refs (HTTP/2 clients only)

    def spawn(ref: int, job: Coroutine[Any, Any, None]) -> None:
        tasks[ref] = task = asyncio.create_task(job)
        task.add_done_callback(lambda _: tasks.pop(ref, None))

    async def read_client() -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(READ_SIZE):
                await inbox.put(ClientData(data))
        await inbox.put(ClientData(b""))  # EOF (or a reset)

    async def post(event: UpstreamEvent) -> None:  # then wait while its ref is paused
        await inbox.put(event)
        while (resumed := paused.get(event.ref)) is not None:
            await resumed.wait()

    async def notified(ref: int, woken: asyncio.Event) -> None:
        await woken.wait()
        await inbox.put(Notified(ref))

    async def perform(actions: list[Action]) -> bool:
        """Carry out the core's actions in order; False once the connection is over."""
        for action in actions:
            match action:
                case Write(data):
                    try:
                        writer.write(data)
                        await writer.drain()
                    except OSError:  # the client is gone: tell the core, do what it says
                        return await perform(conn.handle(WriteFailed(), loop.time(), time.time()))
                case StartUpstream(ref):
                    spawn(ref, exchange(manager, action, post))
                case StopUpstream(ref) if ref in tasks:
                    tasks.pop(ref).cancel()
                case PauseUpstream(ref):
                    paused[ref] = asyncio.Event()
                case ResumeUpstream(ref) if ref in paused:
                    paused.pop(ref).set()
                case Fetch(ref):  # no image fetching here: answer with a failure
                    spawn(ref, inbox.put(FetchDone(ref, FetchResult(error="not supported"))))
                case Watch(ref, key):  # registered now, before another connection can Notify
                    spawn(ref, notified(ref, watches.setdefault(key, asyncio.Event())))
                case Notify(key) if key in watches:
                    watches.pop(key).set()
                case Served(r):
                    print(r.method, r.path, r.status, f"{r.duration:.3f}s", file=sys.stderr)
                case Close():
                    return False
        return True

    spawn(-1, read_client())
    try:
        while True:  # the next event, or DeadlineReached once next_deadline() has passed
            event: Event = DeadlineReached()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(conn.next_deadline()):
                    event = await inbox.get()
            if not await perform(conn.handle(event, loop.time(), time.time())):
                break
    finally:
        for task in list(tasks.values()):
            task.cancel()
        writer.close()


async def serve(gateway: Gateway, host: str, port: int) -> None:
    manager: Manager = ConnectionManager(asyncio.Event)  # one per process: it pools
    watches: dict[object, asyncio.Event] = {}  # Watch keys, shared by every connection
    server = await asyncio.start_server(
        lambda r, w: serve_client(r, w, gateway, manager, watches), host, port)
    print(f"serving on http://{host}:{server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description="uniapi_core on plain asyncio streams")
    cli.add_argument("config", help="the api.yaml to serve")
    cli.add_argument("--host", default="127.0.0.1")
    cli.add_argument("--port", type=int, default=8000)
    args = cli.parse_args()
    with open(args.config, encoding="utf-8") as f:
        try:
            loaded = load_config(f.read(), args.config)
        except ConfigError as exc:
            sys.exit("\n".join(exc.problems))
    for warning in loaded.warnings:
        print(warning, file=sys.stderr)
    gateway = Gateway(loaded.config, entropy=random.Random())  # ids, random scheduling
    asyncio.run(serve(gateway, args.host, args.port))
