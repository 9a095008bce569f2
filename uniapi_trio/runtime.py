"""Process-level plumbing on trio: start-up (model discovery, the demo upstream), serving, and
the one-shot fetch of ``CONFIG_URL``."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable

import trio

from uniapi_core.demo import DEMO_KEY, demo_answer
from uniapi_core.gateway import Gateway
from uniapi_core.http import ClientClosed, ProtocolFailure, RequestReceived, ServerConnection
from uniapi_core.startup import FrontOptions
from uniapi_core.upstream import config_url_text
from uniapi_core.vendors.base import UpstreamRequest

from .server import serve
from .upstream import UpstreamPool

__all__ = ["run", "discover", "fetch_text", "serve_demo_upstream"]


async def discover(gateway: Gateway, pool: UpstreamPool) -> list[str]:
    """Fetch the model lists the core asks for, all at once, and hand the answers back."""
    results: dict[str, tuple[int, bytes] | str] = {}

    async def one(name: str, request: UpstreamRequest, proxy: str | None) -> None:
        results[name] = await pool.fetch(request, proxy)

    async with trio.open_nursery() as nursery:
        for name, request, proxy in gateway.discovery_requests():
            nursery.start_soon(one, name, request, proxy)
    return gateway.discovered(results) if results else []


async def serve_demo_upstream(host: str, port: int, wall: Callable[[], float] = time.time, *,
                              task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                              ) -> None:
    """The demo's fake OpenAI-compatible upstream (answers from ``uniapi_core.demo``)."""

    async def handler(stream: trio.SocketStream) -> None:
        conn = ServerConnection(now=trio.current_time())
        try:
            while True:
                data = await stream.receive_some(16384)
                for ev in conn.receive_data(data, trio.current_time()):
                    if isinstance(ev, (ClientClosed, ProtocolFailure)):
                        return
                    if isinstance(ev, RequestReceived):
                        status, headers, pieces = demo_answer(ev.target, ev.body,
                                                              int(wall()))
                        await stream.send_all(conn.start_response(status, headers))
                        for piece in pieces:
                            await stream.send_all(conn.send_data(piece))
                        await stream.send_all(conn.end_response(trio.current_time()))
                        if conn.must_close:
                            return
                        conn.next_request(trio.current_time())
        except (trio.BrokenResourceError, OSError):
            return
        finally:
            await trio.aclose_forcefully(stream)

    listeners = await trio.open_tcp_listeners(port, host=host)
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handler, listeners)


async def _signals(stop: trio.Event, cancel: trio.CancelScope) -> None:
    """SIGTERM/SIGINT: drain gracefully; a second one: stop at once."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            if stop.is_set():
                cancel.cancel()
                return
            print(f"uniapi: {signal.Signals(signum).name}: draining (again to stop now)",
                  file=sys.stderr, flush=True)
            stop.set()


async def _main(make_gateway: Callable[[str | None], Gateway], host: str, port: int,
                demo: bool, options: FrontOptions, wall: Callable[[], float]) -> None:
    pool = UpstreamPool()
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_signals, stop, nursery.cancel_scope)
        demo_url = None
        if demo:
            demo_port = await nursery.start(serve_demo_upstream, "127.0.0.1", 0, wall)
            demo_url = f"http://127.0.0.1:{demo_port}"
        gateway = make_gateway(demo_url)
        for warning in await discover(gateway, pool):
            print(f"uniapi: warning: {warning}", file=sys.stderr)
        async def serving(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
            await serve(lambda: gateway, host, port, options=options, pool=pool, stop=stop,
                        wall=wall, task_status=task_status)
            nursery.cancel_scope.cancel()  # drained: end the demo upstream and signal watcher

        bound = await nursery.start(serving)
        scheme = "https" if options.certfile else "http"
        print(f"uniapi: serving on {scheme}://{host}:{bound} (trio) HTTP/1.1 and HTTP/2",
              file=sys.stderr, flush=True)
        if demo:
            print(f"""uniapi demo: try
  curl http://{host}:{bound}/v1/chat/completions -H 'Authorization: Bearer {DEMO_KEY}' \\
       -H 'Content-Type: application/json' \\
       -d '{{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": "Hello"}}]}}'
""", file=sys.stderr, flush=True)


def run(make_gateway: Callable[[str | None], Gateway], host: str, port: int, *,
        demo: bool = False, options: FrontOptions = FrontOptions(),
        wall: Callable[[], float] = time.time) -> None:
    trio.run(_main, make_gateway, host, port, demo, options, wall)


def fetch_text(url: str) -> str:
    """Fetch ``CONFIG_URL`` once, before the server starts."""

    async def go() -> tuple[int, bytes] | str:
        pool = UpstreamPool()
        try:
            return await pool.fetch(UpstreamRequest("GET", url, (("accept", "*/*"),)))
        finally:
            await pool.aclose()

    try:
        return config_url_text(url, trio.run(go))
    except ValueError as exc:
        raise SystemExit(f"uniapi: {exc}") from None
