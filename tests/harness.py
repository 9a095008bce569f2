"""Run a real gateway on 127.0.0.1:0 in a background thread, for end-to-end tests.

Each backend gets its own loop in its own thread, so test bodies are plain synchronous code
driving the official ``openai`` SDK or raw sockets. ``BACKENDS`` lists what can be started.
"""

from __future__ import annotations

import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

from uniapi_core.config import load_config
from uniapi_core.gateway import Gateway, Settings
from uniapi_core.http.server import ServerLimits
from uniapi_core.startup import FrontOptions

BACKENDS = ["trio", "asyncio"]


def real_wall() -> float:
    """``time.time()`` looked up at each call, so tests/replay's patched ``time.time`` applies."""
    return time.time()


class RunningGateway:
    def __init__(self, gateway: Gateway, port: int,
                 tasks: Callable[[], int] | None = None) -> None:
        self.gateway = gateway
        self.port = port
        self._tasks = tasks

    def tasks(self) -> int:
        """How many tasks the gateway's event loop runs now (asked from the test's thread)."""
        assert self._tasks is not None
        return self._tasks()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def openai(self, key: str, **kw):  # type: ignore[no-untyped-def]
        import openai

        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0,
                             timeout=kw.pop("timeout", 15), **kw)

    def raw(self, data: bytes, *, read_timeout: float = 5.0) -> bytes:
        """Send raw bytes on a fresh connection; return everything until the server closes
        or ``read_timeout`` of silence."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=read_timeout) as s:
            s.sendall(data)
            out = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    out += chunk
            except TimeoutError:
                pass
            return out


@contextmanager
def run_gateway(config_text: str, *, backend: str = "trio", env_timeout: float | None = None,
                limits: ServerLimits | None = None, discover: bool = True,
                options: FrontOptions | None = None, upstream_ssl: ssl.SSLContext | None = None,
                wall: Callable[[], float] = real_wall, seed: int = 1,
                **settings: object) -> Iterator[RunningGateway]:
    """Serve ``config_text`` on 127.0.0.1 in a thread; ``options`` (or just ``limits``)
    set the front; ``upstream_ssl`` is the pool's TLS context for upstreams; ``wall`` is the
    wall clock the backend's ``serve`` hands the core (a fixed one makes ``created`` fixed);
    ``seed``: the gateway's entropy (two gateways on one stats store need two, as two processes
    have: it makes the instance id of their rows)."""
    if options is None:
        options = FrontOptions(limits=limits or ServerLimits())
    loaded = load_config(config_text, "test.yaml")
    gateway = Gateway(loaded.config, settings=Settings(env_timeout=env_timeout, **settings),
                      entropy=random.Random(seed))
    if backend not in BACKENDS:
        raise NotImplementedError(backend)
    ready = threading.Event()
    state: dict = {}
    start = _start_trio if backend == "trio" else _start_asyncio
    main, stop = start(gateway, options, discover, ready, state, upstream_ssl, wall)

    def thread() -> None:
        try:
            main()
        except BaseException as exc:  # surfaced to the test below
            state["error"] = exc
            ready.set()

    t = threading.Thread(target=thread, daemon=True)
    t.start()
    ready.wait(20)
    if "error" in state:
        raise state["error"]
    try:
        yield RunningGateway(gateway, state["port"], partial(_count_tasks, backend, state))
    finally:
        stop()
        t.join(10)
        if "error" in state:
            raise state["error"]


def _count_tasks(backend: str, state: dict) -> int:
    """The live tasks of the gateway's loop: trio's task tree from its root (system tasks
    included), or asyncio's ``all_tasks`` (the counting task itself left out)."""
    if backend == "trio":
        import trio

        def count() -> int:
            todo, n = [trio.lowlevel.current_root_task()], 0
            while todo:
                task = todo.pop()
                n += 1
                todo += [t for nursery in task.child_nurseries for t in nursery.child_tasks]
            return n
        return int(trio.from_thread.run_sync(count, trio_token=state["token"]))
    import asyncio

    async def count_asyncio() -> int:
        return len(asyncio.all_tasks()) - 1
    return int(asyncio.run_coroutine_threadsafe(count_asyncio(), state["loop"]).result(5))


Start = tuple[Callable[[], None], Callable[[], None]]  # (thread body, stop from another thread)


def _start_trio(gateway: Gateway, options: FrontOptions, discover: bool,
                ready: threading.Event, state: dict,
                upstream_ssl: ssl.SSLContext | None,
                wall: Callable[[], float]) -> Start:
    import trio

    from uniapi_trio.runtime import discover as run_discovery
    from uniapi_trio.server import serve
    from uniapi_trio.upstream import UpstreamPool

    async def main() -> None:
        pool = UpstreamPool(upstream_ssl)
        if discover:
            await run_discovery(gateway, pool)
        async with trio.open_nursery() as nursery:
            state["cancel"] = nursery.cancel_scope
            state["token"] = trio.lowlevel.current_trio_token()
            state["port"] = await nursery.start(
                lambda task_status: serve(lambda: gateway, "127.0.0.1", 0, options=options,
                                          pool=pool, wall=wall, task_status=task_status))
            ready.set()
        await pool.aclose()

    def stop() -> None:
        trio.from_thread.run_sync(state["cancel"].cancel, trio_token=state["token"])

    return lambda: trio.run(main), stop


def _start_asyncio(gateway: Gateway, options: FrontOptions, discover: bool,
                   ready: threading.Event, state: dict,
                   upstream_ssl: ssl.SSLContext | None,
                   wall: Callable[[], float]) -> Start:
    import asyncio

    from uniapi_asyncio.runtime import discover as run_discovery
    from uniapi_asyncio.server import serve
    from uniapi_asyncio.upstream import UpstreamPool

    async def main() -> None:
        state["loop"], state["task"] = asyncio.get_running_loop(), asyncio.current_task()
        pool = UpstreamPool(upstream_ssl)
        try:
            if discover:
                await run_discovery(gateway, pool)

            def started(port: int) -> None:
                state["port"] = port
                ready.set()

            await serve(lambda: gateway, "127.0.0.1", 0, options=options, pool=pool,
                        wall=wall, ready=started)
        finally:
            await pool.aclose()

    def run() -> None:
        try:
            asyncio.run(main())
        except asyncio.CancelledError:  # stopped below
            pass

    def stop() -> None:
        state["loop"].call_soon_threadsafe(state["task"].cancel)

    return run, stop
