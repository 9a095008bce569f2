"""Process plumbing on trio: discovery, ``uniapi demo``'s upstream, serving, ``CONFIG_URL``."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from functools import partial

import trio

from uniapi_core.demo import DEMO_HOST, DemoUpstream, demo_url
from uniapi_core.gateway import Gateway
from uniapi_core.startup import Launch, discovery_text, draining_text
from uniapi_core.vendors.base import UpstreamRequest

from .server import serve
from .upstream import UpstreamPool

__all__ = ["run", "discover", "fetch"]


async def discover(gateway: Gateway, pool: UpstreamPool) -> list[str]:
    """Fetch the model lists the core asks for, all at once, and hand the answers back."""
    results: dict[str, tuple[int, bytes] | str] = {}

    async def one(name: str, request: UpstreamRequest, proxy: str | None) -> None:
        results[name] = await pool.fetch(request, proxy)

    async with trio.open_nursery() as nursery:
        for name, request, proxy in gateway.discovery_requests():
            nursery.start_soon(one, name, request, proxy)
    return gateway.discovered(results) if results else []


async def _signals(stop: trio.Event, cancel: trio.CancelScope, say: Callable[[str], None]) -> None:
    """SIGTERM/SIGINT: drain gracefully; a second one: stop at once."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            if stop.is_set():
                cancel.cancel()
                return
            say(draining_text(signal.Signals(signum).name))
            stop.set()


async def _main(launch: Launch, make_gateway: Callable[[str | None], Gateway],
                say: Callable[[str], None], wall: Callable[[], float]) -> None:
    pool = UpstreamPool()
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_signals, stop, nursery.cancel_scope, say)
        upstream = partial(serve, DemoUpstream, DEMO_HOST, 0, wall=wall)
        gateway = make_gateway(demo_url(await nursery.start(upstream)) if launch.demo else None)
        say(discovery_text(await discover(gateway, pool)))

        async def serving(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
            await serve(lambda: gateway, launch.host, launch.port, options=launch.options,
                        pool=pool, stop=stop, wall=wall, task_status=task_status)
            nursery.cancel_scope.cancel()  # drained: end the demo upstream and signal watcher

        say(launch.serving_text(await nursery.start(serving), "trio"))


def run(launch: Launch, make_gateway: Callable[[str | None], Gateway], *,
        say: Callable[[str], None], wall: Callable[[], float] = time.time) -> None:
    trio.run(_main, launch, make_gateway, say, wall)


def fetch(request: UpstreamRequest) -> tuple[int, bytes] | str:
    """One request before the server starts (``CONFIG_URL``): the answer, or why none came."""

    async def go() -> tuple[int, bytes] | str:
        pool = UpstreamPool()
        try:
            return await pool.fetch(request)
        finally:
            await pool.aclose()

    return trio.run(go)
