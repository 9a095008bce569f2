"""The shared Redis client of each transport (uniapi_trio/redis.py, uniapi_asyncio/redis.py)
against a real ``redis-server`` (tests/fakes/redis_server.py): round trips, scripts and the
NOSCRIPT reload, AUTH, a stopped, restarted and wedged server, concurrency, the pending cap, a
Unix socket and TLS. Skipped without ``redis-server`` on a developer's machine; FAILS under
``CI`` (install Debian's ``redis-server``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
import trio

from tests.fakes import redis_server
from tests.fakes.tls import make_cert
from uniapi_core.redis.link import MAX_PENDING, script_sha
from uniapi_core.redis.resp import RespError
from uniapi_core.redis.url import parse_redis_url

SCRIPT = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
PASSWORD = "s3cret/pw@x"


def _need_redis() -> None:
    why = redis_server.missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"{why}. CI is set, so the Redis client must be tested: install the "
                        f"Debian package {redis_server.DEBIAN_PACKAGE!r}.")
        pytest.skip(why)


@pytest.fixture
def server() -> Iterator[redis_server.RedisServer]:
    _need_redis()
    s = redis_server.start()
    yield s
    s.stop()


class Runtime:
    """What a scenario needs of its event loop, the same for both backends."""

    def __init__(self, backend: str) -> None:
        self.backend = backend

    async def sleep(self, seconds: float) -> None:
        if self.backend == "trio":
            await trio.sleep(seconds)
        else:
            await asyncio.sleep(seconds)

    async def gather(self, jobs: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
        if self.backend == "asyncio":
            return list(await asyncio.gather(*(job() for job in jobs)))
        out: list[Any] = [None] * len(jobs)

        async def one(i: int) -> None:
            out[i] = await jobs[i]()
        async with trio.open_nursery() as nursery:
            for i in range(len(jobs)):
                nursery.start_soon(one, i)
        return out

    async def until(self, condition: Callable[[], bool], timeout: float) -> float:
        """Wait until ``condition()``; the seconds it took (fails after ``timeout``)."""
        start = time.monotonic()
        while not condition():
            assert time.monotonic() - start < timeout, "condition not met in time"
            await self.sleep(0.005)
        return time.monotonic() - start


Scenario = Callable[[Any, Runtime], Awaitable[None]]


def drive(backend: str, url: str, scenario: Scenario, scripts: tuple[str, ...] = (),
          states: list[tuple[bool, str]] | None = None, wait_connected: bool = True) -> None:
    """Run ``scenario(client, runtime)`` with the backend's ``SharedRedis`` running."""
    if backend == "trio":
        from uniapi_trio.redis import SharedRedis
    else:
        from uniapi_asyncio.redis import SharedRedis  # type: ignore[assignment]
    client = SharedRedis(parse_redis_url(url), scripts)
    if states is not None:
        client.callers.on_state = lambda up, reason: states.append((up, reason))
    rt = Runtime(backend)

    async def body() -> None:
        if wait_connected:
            await rt.until(lambda: client.connected, 5)
        await scenario(client, rt)

    if backend == "trio":
        async def main_trio() -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.run)
                try:
                    await body()
                finally:
                    nursery.cancel_scope.cancel()
        trio.run(main_trio)
    else:
        async def main_asyncio() -> None:
            task = asyncio.ensure_future(client.run())
            try:
                await body()
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        asyncio.run(main_asyncio())
    assert not client.connected


def test_round_trips_pipelines_and_tell(backend, server):
    async def scenario(r: Any, rt: Runtime) -> None:
        assert await r.call([["PING"]], 1) == ["PONG"]
        assert await r.call([["SET", "k", b"v\x00\r\n"], ["GET", "k"], ["GET", "nope"],
                             ["INCR", "k"]], 1) == [
            "OK", b"v\x00\r\n", None, RespError("ERR value is not an integer or out of range")]
        r.tell([["SET", "told", 5], ["INCR", "told"]])
        assert await r.call([["GET", "told"]], 1) == [b"6"]
        assert await r.call([["RPUSH", "l", 1, 2], ["LRANGE", "l", 0, -1]], 1) == [
            2, [b"1", b"2"]]
    drive(backend, server.url, scenario)


def test_select_db_from_the_url(backend, server):
    async def in_db3(r: Any, rt: Runtime) -> None:
        assert await r.call([["SET", "where", "three"]], 1) == ["OK"]
    drive(backend, server.url + "/3", in_db3)

    async def in_db0(r: Any, rt: Runtime) -> None:
        assert await r.call([["GET", "where"], ["SELECT", 3], ["GET", "where"]], 1) == [
            None, "OK", b"three"]
    drive(backend, server.url, in_db0)


def test_evalsha_and_the_noscript_reload(backend, server):
    sha = script_sha(SCRIPT)

    async def scenario(r: Any, rt: Runtime) -> None:
        assert await r.call([["EVALSHA", sha, 1, "n", 5]], 1) == [5]  # loaded by the greeting
        assert await r.call([["SCRIPT", "FLUSH"]], 1) == ["OK"]
        replies = await r.call([["EVALSHA", sha, 1, "n", 1]], 1)
        assert isinstance(replies[0], RespError) and replies[0].kind == "NOSCRIPT"
        assert await r.call([["EVALSHA", sha, 1, "n", 2]], 1) == [7]  # reloaded first
        assert await r.call([["SCRIPT", "EXISTS", sha]], 1) == [[1]]
    drive(backend, server.url, scenario, scripts=(SCRIPT,))


def test_password_right_and_wrong(backend):
    _need_redis()
    s = redis_server.start(password=PASSWORD)
    try:
        async def works(r: Any, rt: Runtime) -> None:
            assert await r.call([["PING"]], 1) == ["PONG"]
        states: list[tuple[bool, str]] = []
        drive(backend, s.url, works, states=states)
        assert states == [(True, "")]

        async def refused(r: Any, rt: Runtime) -> None:
            await rt.until(lambda: len(states) >= 2, 5)
            assert not r.connected
            assert await r.call([["PING"]], 1) is None
        states = []
        wrong = s.url.replace("s3cret", "wrong")
        drive(backend, wrong, refused, states=states, wait_connected=False)
        assert states and all(not up for up, _ in states)
        assert states[0] == (False, f"127.0.0.1:{s.port}: Redis refused AUTH: WRONGPASS invalid "
                             "username-password pair or user is disabled.")
        assert all("wrong" not in reason and "s3cret" not in reason for _, reason in states)
    finally:
        s.stop()


def test_refused_connect_is_reported_and_calls_fail_at_once(backend):
    port = redis_server._free_port()
    states: list[tuple[bool, str]] = []

    async def scenario(r: Any, rt: Runtime) -> None:
        await rt.until(lambda: len(states) >= 3, 5)  # retried with backoff
        start = time.monotonic()
        assert await r.call([["PING"]], 5) is None
        assert time.monotonic() - start < 0.05
        r.tell([["PING"]])  # nothing happens
    drive(backend, f"redis://:{quote(PASSWORD, safe='')}@127.0.0.1:{port}", scenario, states=states,
          wait_connected=False)
    assert states[0] == (False, f"127.0.0.1:{port}: connection refused")
    assert all(PASSWORD not in reason for _, reason in states)


def test_stop_then_restart_on_the_same_port(backend, server):
    states: list[tuple[bool, str]] = []
    sha = script_sha(SCRIPT)

    async def scenario(r: Any, rt: Runtime) -> None:
        assert await r.call([["SET", "k", 1]], 1) == ["OK"]

        async def blocked() -> Any:
            return await r.call([["BLPOP", "never", 0]], 10)  # waits on the server

        async def stop_soon() -> float:
            await rt.sleep(0.1)
            await asyncio.to_thread(server.stop) if rt.backend == "asyncio" else \
                await trio.to_thread.run_sync(server.stop)
            return time.monotonic()

        start = time.monotonic()
        result, stopped = await rt.gather([blocked, stop_soon])
        assert result is None
        assert time.monotonic() - stopped < 0.2  # the pending call failed at once
        assert time.monotonic() - start < 5
        await rt.until(lambda: not r.connected, 0.2)
        t0 = time.monotonic()
        assert await r.call([["PING"]], 1) is None
        assert time.monotonic() - t0 < 0.05
        if rt.backend == "asyncio":
            await asyncio.to_thread(server.restart)
        else:
            await trio.to_thread.run_sync(server.restart)
        assert await rt.until(lambda: r.connected, 2) < 2
        assert await r.call([["GET", "k"]], 1) == [None]  # a fresh server
        assert await r.call([["EVALSHA", sha, 1, "n", 3]], 1) == [3]  # greeted again
    drive(backend, server.url, scenario, scripts=(SCRIPT,), states=states)
    ups = [up for up, _ in states]
    assert ups[0] is True and ups[-1] is True and False in ups
    assert all(reason == "" for up, reason in states if up)
    assert all(reason.startswith(f"127.0.0.1:{server.port}: ") for up, reason in states
               if not up)


def test_many_concurrent_calls_get_their_own_replies(backend, server):
    async def scenario(r: Any, rt: Runtime) -> None:
        def job(i: int) -> Callable[[], Awaitable[Any]]:
            async def one() -> Any:
                return await r.call([["SET", f"k{i}", i], ["INCRBY", f"k{i}", i],
                                     ["GET", f"k{i}"]], 5)
            return one
        results = await rt.gather([job(i) for i in range(200)])
        assert results == [["OK", 2 * i, str(2 * i).encode()] for i in range(200)]
    drive(backend, server.url, scenario)


def test_a_wedged_server_is_dropped_and_the_pending_cap_holds(backend, server):
    assert server.proc is not None
    pid = server.proc.pid

    async def scenario(r: Any, rt: Runtime) -> None:
        os.kill(pid, signal.SIGSTOP)
        try:
            async def flood() -> list[Any]:
                return await rt.gather([lambda: r.call([["PING"]], 0.3)] * MAX_PENDING)

            async def over_the_cap() -> float:
                await rt.until(lambda: r.callers.link is not None and r.callers.link.full, 5)
                start = time.monotonic()
                assert await r.call([["PING"]], 5) is None
                return time.monotonic() - start

            flooded_at = time.monotonic()  # the first calls are due 0.3 s after this
            flooded, waited = await rt.gather([flood, over_the_cap])
            # refused at once, not after the call's 5 s (generous: CI runs other tests beside)
            assert flooded == [None] * MAX_PENDING and waited < 0.5
            await rt.until(lambda: not r.connected, 6)
            # dropped once the earliest reply is overdue by 2 s: 2.3 s after the flood began
            # (not before; the upper bound is generous for a loaded machine)
            assert 2.2 < time.monotonic() - flooded_at < 8
        finally:
            os.kill(pid, signal.SIGCONT)
        await rt.until(lambda: r.connected, 3)
        assert await r.call([["PING"]], 1) == ["PONG"]
    drive(backend, server.url, scenario)


def test_unix_socket(backend, tmp_path):
    _need_redis()
    sock = str(tmp_path / "redis.sock")
    s = redis_server.start(unix=sock, password=PASSWORD)
    try:
        async def scenario(r: Any, rt: Runtime) -> None:
            assert await r.call([["SET", "u", "x"], ["GET", "u"]], 1) == ["OK", b"x"]
        drive(backend, s.unix_url + "&db=2", scenario)
    finally:
        s.stop()


def test_tls(backend, tmp_path):
    _need_redis()
    cert, key = make_cert(tmp_path)
    s = redis_server.start(tls=(cert, key), password=PASSWORD)
    try:
        async def scenario(r: Any, rt: Runtime) -> None:
            assert await r.call([["PING"], ["SET", "t", 1], ["GET", "t"]], 1) == [
                "PONG", "OK", b"1"]
        drive(backend, s.url, scenario)  # verified against the test certificate
        unverified = s.url.split("?")[0] + "?ssl_cert_reqs=none"
        drive(backend, unverified, scenario)

        states: list[tuple[bool, str]] = []

        async def untrusted(r: Any, rt: Runtime) -> None:
            await rt.until(lambda: bool(states), 5)
            assert not r.connected
        drive(backend, s.url.split("?")[0], untrusted, states=states, wait_connected=False)
        assert states[0] == (False, f"127.0.0.1:{s.port}: TLS failed: self-signed certificate")
    finally:
        s.stop()
