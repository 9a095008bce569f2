"""Process-level plumbing on asyncio: start-up (model discovery, the demo upstream), serving, and
the one-shot fetch of ``CONFIG_URL``. ``uvloop`` is used when it is installed."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from uniapi_core.demo import DEMO_KEY, demo_answer
from uniapi_core.gateway import Gateway
from uniapi_core.http import ClientClosed, ProtocolFailure, RequestReceived, ServerConnection
from uniapi_core.startup import FrontOptions
from uniapi_core.upstream import config_url_text
from uniapi_core.vendors.base import UpstreamRequest

from .server import cancel_all, listen, serve
from .upstream import UpstreamPool

__all__ = ["run", "discover", "fetch_text", "serve_demo_upstream"]

T = TypeVar("T")


async def discover(gateway: Gateway, pool: UpstreamPool) -> list[str]:
    """Fetch the model lists the core asks for, all at once, and hand the answers back."""
    results: dict[str, tuple[int, bytes] | str] = {}

    async def one(name: str, request: UpstreamRequest, proxy: str | None) -> None:
        results[name] = await pool.fetch(request, proxy)

    async with asyncio.TaskGroup() as nursery:
        for name, request, proxy in gateway.discovery_requests():
            nursery.create_task(one(name, request, proxy))
    return gateway.discovered(results) if results else []


async def serve_demo_upstream(host: str, port: int, *, wall: Callable[[], float] = time.time,
                              ready: Callable[[int], None] | None = None) -> None:
    """The demo's fake OpenAI-compatible upstream (answers from ``uniapi_core.demo``)."""
    loop = asyncio.get_running_loop()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = ServerConnection(now=loop.time())

        async def send_all(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        try:
            while True:
                data = await reader.read(16384)
                for ev in conn.receive_data(data, loop.time()):
                    if isinstance(ev, (ClientClosed, ProtocolFailure)):
                        return
                    if isinstance(ev, RequestReceived):
                        status, headers, pieces = demo_answer(ev.target, ev.body,
                                                              int(wall()))
                        await send_all(conn.start_response(status, headers))
                        for piece in pieces:
                            await send_all(conn.send_data(piece))
                        await send_all(conn.end_response(loop.time()))
                        if conn.must_close:
                            return
                        conn.next_request(loop.time())
        except OSError:
            return
        finally:
            writer.transport.abort()

    handlers: set[asyncio.Task] = set()
    server = await listen(handler, host, port, handlers)
    try:
        if ready is not None:
            ready(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()
    finally:
        server.close()
        await cancel_all(handlers)


def _signals(stop: asyncio.Event, cancel: Callable[[], object]) -> None:
    """SIGTERM/SIGINT: drain gracefully; a second one: stop at once."""

    def received(signum: int) -> None:
        if stop.is_set():
            cancel()
            return
        print(f"uniapi: {signal.Signals(signum).name}: draining (again to stop now)",
              file=sys.stderr, flush=True)
        stop.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, received, signum)


async def _main(make_gateway: Callable[[str | None], Gateway], host: str, port: int,
                demo: bool, options: FrontOptions, wall: Callable[[], float]) -> None:
    pool = UpstreamPool()
    stop = asyncio.Event()
    _signals(stop, asyncio.current_task().cancel)  # type: ignore[union-attr]
    background: set[asyncio.Task] = set()
    try:
        demo_url = None
        if demo:
            started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            background.add(asyncio.create_task(
                serve_demo_upstream("127.0.0.1", 0, wall=wall, ready=started.set_result)))
            demo_url = f"http://127.0.0.1:{await started}"
        gateway = make_gateway(demo_url)
        for warning in await discover(gateway, pool):
            print(f"uniapi: warning: {warning}", file=sys.stderr)

        def serving(bound: int) -> None:
            scheme = "https" if options.certfile else "http"
            print(f"uniapi: serving on {scheme}://{host}:{bound} (asyncio) "
                  f"HTTP/1.1 and HTTP/2", file=sys.stderr, flush=True)
            if demo:
                print(f"""uniapi demo: try
  curl http://{host}:{bound}/v1/chat/completions -H 'Authorization: Bearer {DEMO_KEY}' \\
       -H 'Content-Type: application/json' \\
       -d '{{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": "Hello"}}]}}'
""", file=sys.stderr, flush=True)

        await serve(lambda: gateway, host, port, options=options, pool=pool, stop=stop,
                    wall=wall, ready=serving)
    finally:  # drained (or stopped at once): end the demo upstream, close pooled connections
        await cancel_all(background)
        await pool.aclose()


def _run(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def run(make_gateway: Callable[[str | None], Gateway], host: str, port: int, *,
        demo: bool = False, options: FrontOptions = FrontOptions(),
        wall: Callable[[], float] = time.time) -> None:
    try:
        _run(_main(make_gateway, host, port, demo, options, wall))
    except asyncio.CancelledError:  # a second signal: stopped at once
        pass


def fetch_text(url: str) -> str:
    """Fetch ``CONFIG_URL`` once, before the server starts."""

    async def go() -> tuple[int, bytes] | str:
        pool = UpstreamPool()
        try:
            return await pool.fetch(UpstreamRequest("GET", url, (("accept", "*/*"),)))
        finally:
            await pool.aclose()

    try:
        return config_url_text(url, _run(go()))
    except ValueError as exc:
        raise SystemExit(f"uniapi: {exc}") from None
