"""Process plumbing on trio: discovery, ``uniapi demo``'s upstream, serving, hot reload
(SIGHUP, ``POST /v1/reload``), ``CONFIG_URL``."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import trio

from uniapi_core.demo import DEMO_HOST, DemoUpstream, demo_url
from uniapi_core.gateway import Gateway
from uniapi_core.shell import Current, Discover, FetchConfig, ReadFile
from uniapi_core.startup import Launch, discovery_text, draining_text
from uniapi_core.vendors.base import UpstreamRequest

from .server import serve
from .upstream import UpstreamPool

__all__ = ["run", "discover", "fetch", "reload"]


async def discover(gateway: Gateway, pool: UpstreamPool) -> list[str]:
    """Fetch the model lists the core asks for, all at once, and hand the answers back."""
    results: dict[str, tuple[int, bytes] | str] = {}

    async def one(name: str, request: UpstreamRequest, proxy: str | None) -> None:
        results[name] = await pool.fetch(request, proxy)

    async with trio.open_nursery() as nursery:
        for name, request, proxy in gateway.discovery_requests():
            nursery.start_soon(one, name, request, proxy)
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
            result = await trio.to_thread.run_sync(current.read, effect.path)  # type: ignore
        elif isinstance(effect, FetchConfig):
            result = await pool.fetch(effect.request)
        elif isinstance(effect, Discover):
            result = await discover(effect.gateway, pool)
        else:
            say(effect.text)
            result = None


async def _signals(stop: trio.Event, cancel: trio.CancelScope, say: Callable[[str], None],
                   nursery: trio.Nursery, reloading: Callable[[], Any]) -> None:
    """SIGTERM/SIGINT: drain gracefully; a second one: stop at once. SIGHUP: hot reload."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            if signum == signal.SIGHUP:
                nursery.start_soon(reloading)
            elif stop.is_set():
                cancel.cancel()
                return
            else:
                say(draining_text(signal.Signals(signum).name))
                stop.set()


async def _main(launch: Launch, make_gateway: Callable[[str | None], Gateway],
                say: Callable[[str], None], wall: Callable[[], float], current: Current) -> None:
    pool = UpstreamPool()
    stop, lock = trio.Event(), trio.Lock()

    async def reloading() -> str | None:
        """The process's hot reload, one at a time: the new gateway serves once discovered."""
        async with lock:
            return await reload(current, pool, say)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_signals, stop, nursery.cancel_scope, say, nursery, reloading)
        upstream = partial(serve, DemoUpstream, DEMO_HOST, 0, wall=wall)
        current.gateway = make_gateway(demo_url(await nursery.start(upstream))
                                       if launch.demo else None)
        say(discovery_text(await discover(current.current(), pool)))

        async def serving(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
            await serve(current.current, launch.host, launch.port, options=launch.options,
                        pool=pool, stop=stop, wall=wall, task_status=task_status,
                        reload=reloading)
            nursery.cancel_scope.cancel()  # drained: end the demo upstream and signal watcher

        say(launch.serving_text(await nursery.start(serving), "trio"))


def run(launch: Launch, make_gateway: Callable[[str | None], Gateway], *,
        say: Callable[[str], None], wall: Callable[[], float] = time.time,
        current: Current | None = None) -> None:
    """Serve; ``current``: the process's gateway, swapped by hot reloads (none without)."""
    trio.run(_main, launch, make_gateway, say, wall, current or Current())


def fetch(request: UpstreamRequest) -> tuple[int, bytes] | str:
    """One request before the server starts (``CONFIG_URL``): the answer, or why none came."""

    async def go() -> tuple[int, bytes] | str:
        pool = UpstreamPool()
        try:
            return await pool.fetch(request)
        finally:
            await pool.aclose()

    return trio.run(go)
