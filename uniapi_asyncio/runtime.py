"""Process-level plumbing on asyncio: start-up (model discovery; ``uniapi demo``'s upstream,
the core's ``DemoUpstream`` on the gateway's own ``serve``), serving and hot reload (SIGHUP,
``POST /v1/reload``). Every text is the
core's, written by the shell's ``say``. ``uvloop`` is used when it is installed."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from typing import Any

from uniapi_core.demo import DEMO_HOST, DemoUpstream, demo_url
from uniapi_core.gateway import Gateway
from uniapi_core.shell import Current, Discover, FetchConfig, ReadFile
from uniapi_core.startup import Launch, discovery_text, draining_text
from uniapi_core.vendors.base import UpstreamRequest

from .server import cancel_all, serve
from .upstream import UpstreamPool

__all__ = ["run", "discover", "reload"]


async def discover(gateway: Gateway, pool: UpstreamPool) -> list[str]:
    """Fetch the model lists the core asks for, all at once, and hand the answers back."""
    results: dict[str, tuple[int, bytes] | str] = {}

    async def one(name: str, request: UpstreamRequest, proxy: str | None) -> None:
        results[name] = await pool.fetch(request, proxy)

    async with asyncio.TaskGroup() as nursery:
        for name, request, proxy in gateway.discovery_requests():
            nursery.create_task(one(name, request, proxy))
    return gateway.discovered(results) if results else []


async def reload(current: Current, pool: UpstreamPool, say: Callable[[str], None]
                 ) -> str | None:
    """Perform a hot reload's effects while serving: None once the new gateway serves, or
    why the config was refused."""
    program, result = current.reload(), None
    while True:
        try:
            effect = program.send(result)
        except StopIteration as end:
            return end.value
        if isinstance(effect, ReadFile):
            result = await asyncio.to_thread(current.read, effect.path)  # type: ignore
        elif isinstance(effect, FetchConfig):
            result = await pool.fetch(effect.request)
        elif isinstance(effect, Discover):
            result = await discover(effect.gateway, pool)
        else:
            say(effect.text)
            result = None


def _signals(stop: asyncio.Event, cancel: Callable[[], object],
             say: Callable[[str], None], hup: Callable[[], object]) -> None:
    """SIGTERM/SIGINT: drain gracefully; a second one: stop at once. SIGHUP: ``hup``."""

    def received(signum: int) -> None:
        if stop.is_set():
            cancel()
            return
        say(draining_text(signal.Signals(signum).name))
        stop.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, received, signum)
    loop.add_signal_handler(signal.SIGHUP, hup)


async def _main(launch: Launch, make_gateway: Callable[[str | None], Gateway],
                say: Callable[[str], None], wall: Callable[[], float], current: Current) -> None:
    pool = UpstreamPool()
    stop, lock = asyncio.Event(), asyncio.Lock()
    background: set[asyncio.Task] = set()

    async def reloading() -> str | None:
        """The process's hot reload, one at a time: the new gateway serves once discovered."""
        async with lock:
            return await reload(current, pool, say)

    def hup() -> None:
        task = asyncio.create_task(reloading())
        background.add(task)
        task.add_done_callback(background.discard)

    _signals(stop, asyncio.current_task().cancel, say, hup)  # type: ignore[union-attr]
    try:
        upstream_url = None
        if launch.demo:
            started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            background.add(asyncio.create_task(serve(DemoUpstream, DEMO_HOST, 0, wall=wall,
                                                     ready=started.set_result)))
            upstream_url = demo_url(await started)
        current.gateway = make_gateway(upstream_url)
        say(discovery_text(await discover(current.current(), pool)))
        await serve(current.current, launch.host, launch.port, options=launch.options,
                    pool=pool, stop=stop, wall=wall, reload=reloading,
                    ready=lambda port: say(launch.serving_text(port, "asyncio")))
    finally:  # drained (or stopped at once): end the demo upstream, close pooled connections
        await cancel_all(background)
        await pool.aclose()


def run(launch: Launch, make_gateway: Callable[[str | None], Gateway], *,
        say: Callable[[str], None], wall: Callable[[], float] = time.time,
        current: Current | None = None) -> None:
    """Serve; ``current``: the process's gateway, swapped by hot reloads (none without)."""
    main = _main(launch, make_gateway, say, wall, current or Current())
    try:
        try:
            import uvloop
        except ImportError:
            asyncio.run(main)
            return
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main)
    except asyncio.CancelledError:  # a second signal: stopped at once
        pass
