"""An HTTP/2 upstream attempt the gateway gave up on (the model timeout, StopUpstream) is never
sent to that upstream afterwards, on both backends.

Found while explaining a rare failure of ``tests/e2e/test_faults.py`` under CPU load: a request
answered by its first attempt's fallback channel (``openai``) had the h2 fake record an attempt
for it *after* that one. The h2 fake records an attempt when its request is whole (END_STREAM
read), so either the gateway sent the request after it had moved on, or the fake read bytes
sent earlier late (its one thread per connection starved). These scenarios pin each way an
abandoned attempt could still reach an h2 upstream:

* the TLS handshake is slower than the model timeout (the attempt is cancelled while it
  connects; so are the requests waiting for that connect): no HEADERS ever arrives, even once
  the upstream finishes its handshake;
* the only stream of an up connection is taken (``SETTINGS_MAX_CONCURRENT_STREAMS`` 1): a
  second connection is opened (streams are not queued); abandoned while it connects, nothing
  is sent on it either;
* the race under load (deterministic here, on the pool directly): a request waiting for another
  request's connect is woken (the connect is up) and, before it runs, its attempt is stopped
  (``StopUpstream``: the relay's deadline passed in the same scheduling round). It must not
  open its stream. asyncio holds (a cancelled task gets ``CancelledError`` at the ``await`` it
  was woken from); trio held only once ``UpstreamPool.run`` checked for cancellation before
  starting the attempt. Before, with no checkpoint between ``_route`` returning and
  ``H2Link.open`` queueing HEADERS and DATA for the link's writer, the cancel took effect
  after the request was queued: the upstream got the whole request, then RST_STREAM (this
  test found it).

Not a bug, and not asserted: when the gateway's thread is starved past the model timeout just
as a connect completes, both backends may open the stream before the relay has handled its
deadline (asyncio then always does: the connect's wake-up is ahead of the timer in the ready
queue), and the fallback request follows within milliseconds; which fake records its attempt
first is then a race (the h2 fake's thread decrypts and parses more).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from tests.fakes.h2upstream import FakeH2Upstream, H2Reply
from tests.fakes.upstream import FakeUpstream, json_reply
from tests.harness import RunningGateway, run_gateway
from uniapi_core.relay import UpstreamEnded
from uniapi_core.vendors.base import UpstreamRequest

KEY = "sk-abandoned-0001"
MODEL = "m"
TIMEOUT = 0.5  # the model timeout
SLOW_HANDSHAKE = 1.2  # > TIMEOUT
AFTER = 1.0  # how long to watch the h2 upstream after the handshake could have completed


def config(h2_url: str, plain_url: str) -> str:
    return f"""providers:
  - provider: h2
    base_url: {h2_url}/v1/chat/completions
    api: sk-up-h2
    model:
      - {MODEL}
  - provider: plain
    base_url: {plain_url}/v1/chat/completions
    api: sk-up-plain
    model:
      - {MODEL}
api_keys:
  - api: {KEY}
    preferences:
      SCHEDULING_ALGORITHM: fixed_priority
preferences:
  cooldown_period: 0
  model_timeout:
    default: {TIMEOUT:g}
"""


def plain_answer(seen) -> object:  # type: ignore[no-untyped-def]
    text = "plain:" + seen.json()["messages"][0]["content"]
    return json_reply({"id": "x", "object": "chat.completion", "created": 1, "model": MODEL,
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": text}}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                 "total_tokens": 2}})


@contextmanager
def setup(backend: str, fake: FakeH2Upstream) -> Iterator[tuple[RunningGateway, FakeUpstream]]:
    plain = FakeUpstream(handler=plain_answer)
    try:
        with run_gateway(config(fake.url, plain.url), backend=backend, discover=False,
                         upstream_ssl=fake.client_ssl_context()) as gw:
            yield gw, plain
    finally:
        plain.close()


def ask(gw: RunningGateway, text: str, stream: bool = False) -> tuple[str, float]:
    """One chat completion: its text and when it was answered (``time.monotonic()``)."""
    client = gw.openai(KEY)
    messages = [{"role": "user", "content": text}]
    if stream:
        chunks = client.chat.completions.create(model=MODEL, messages=messages, stream=True)
        got = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        got = client.chat.completions.create(model=MODEL, messages=messages) \
            .choices[0].message.content or ""
    return got, time.monotonic()


def timeline(fake: FakeH2Upstream, t0: float) -> list[tuple[float, int, str, int]]:
    return [(round(t - t0, 3), conn, kind, sid) for t, conn, kind, sid in fake.frames]


@pytest.mark.parametrize("n", [1, 3], ids=["alone", "with-waiters"])
def test_attempt_abandoned_while_connecting_is_never_sent(backend, n):
    """The handshake outlasts the model timeout: each request moves on to the plain channel
    (after ~1 s) and the h2 upstream, once its handshake is done, never sees a request."""
    with FakeH2Upstream(H2Reply(stream=False), tls=True,
                        handshake_delay=SLOW_HANDSHAKE) as fake:
        with setup(backend, fake) as (gw, plain), ThreadPoolExecutor(n) as pool:
            t0 = time.monotonic()
            answers = list(pool.map(lambda i: ask(gw, f"q{i}"), range(n)))
            assert sorted(a for a, _ in answers) == [f"plain:q{i}" for i in range(n)]
            took = [round(t - t0, 2) for _, t in answers]
            assert all(TIMEOUT * 0.9 <= t < SLOW_HANDSHAKE for t in took), took
            time.sleep(max(0.0, SLOW_HANDSHAKE - (time.monotonic() - t0) + AFTER))
            frames = timeline(fake, t0)
        assert fake.connections >= 1
        assert not any(kind == "headers" for _, _, kind, _ in frames), (took, frames)
        assert fake.requests == []
        assert len(plain.seen) == n


def test_attempt_abandoned_while_a_second_connection_connects_is_never_sent(backend):
    """SETTINGS_MAX_CONCURRENT_STREAMS 1 and its one stream busy: the next request's h2
    attempt opens a second connection (no queueing on the first); that handshake outlasts the
    model timeout, the request moves on, and nothing is ever sent on either connection for
    it."""
    reply = H2Reply(stream=True, chunks=8, delay=0.2)  # ~1.6 s, a chunk every 0.2 s
    with FakeH2Upstream(reply, tls=True, max_concurrent_streams=1) as fake:
        with setup(backend, fake) as (gw, _plain), ThreadPoolExecutor(1) as pool:
            long = pool.submit(ask, gw, "long", True)
            deadline = time.monotonic() + 5
            while not any(k == "headers" for _, _, k, _ in fake.frames):
                assert time.monotonic() < deadline
                time.sleep(0.01)
            time.sleep(0.4)  # the server's SETTINGS (1 stream) are in; the stream is busy
            fake.handshake_delay = SLOW_HANDSHAKE  # for any further connection
            t0 = time.monotonic()
            got, at = ask(gw, "second")
            assert got == "plain:second", got
            took = round(at - t0, 2)
            assert TIMEOUT * 0.9 <= took < SLOW_HANDSHAKE, took
            assert long.result()[0] == "Hello from the fake h2 upstream"
            time.sleep(max(0.0, SLOW_HANDSHAKE - (time.monotonic() - t0) + AFTER))
            frames = timeline(fake, t0)
        heads = [f for f in frames if f[2] == "headers" and f[0] >= 0]  # after "long"'s
        assert fake.connections == 2, (fake.connections, frames)
        assert heads == [], (took, frames)
        assert [json.loads(r.body)["messages"][0]["content"] for r in fake.requests] == ["long"]


class _Waiter:
    """The pool's connect waiter, wrapped: right after ``set()`` (the connect is up and the
    waiting request was woken), ``on_set()`` runs: the waiting request's StopUpstream, given
    before that request got to run again (one scheduling round, as under load)."""

    def __init__(self, inner: object, on_set: Callable[[], None]) -> None:
        self._inner = inner
        self._on_set = on_set

    async def wait(self) -> None:
        await self._inner.wait()  # type: ignore[attr-defined]

    def set(self) -> None:
        self._inner.set()  # type: ignore[attr-defined]
        self._on_set()


def _race(backend: str, fake: FakeH2Upstream) -> dict:
    """Request A connects (slow handshake) and B waits for that connect; when the connect is
    up, B is woken and at once stopped (cancelled as StopUpstream does on this backend). What
    the pool did: A's events, whether B ran to its end, B's events."""
    import anyio

    module = __import__(f"uniapi_{backend}.upstream", fromlist=["UpstreamPool"])
    seen: dict = {"a": [], "b": [], "b_done": False}

    def request(path: str) -> UpstreamRequest:
        return UpstreamRequest("POST", f"{fake.url}{path}", (), b'{"stream": false}')

    async def post_a(ev: object) -> None:
        seen["a"].append(ev)

    async def post_b(ev: object) -> None:
        seen["b"].append(ev)

    async def trio_scenario() -> None:
        import trio

        pool = module.UpstreamPool(fake.client_ssl_context())
        scope = trio.CancelScope()
        original = pool._core._new_waiter
        pool._core._new_waiter = lambda: _Waiter(original(), scope.cancel)

        async def b() -> None:
            with scope:
                await pool.run(request("/b"), None, post_b)
                seen["b_done"] = True

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pool.run, request("/a"), None, post_a)
            while not pool._core._connecting:
                await trio.sleep(0.01)
            nursery.start_soon(b)
        await pool.aclose()

    async def asyncio_scenario() -> None:
        import asyncio

        pool = module.UpstreamPool(fake.client_ssl_context())
        tasks: dict = {}
        original = pool._core._new_waiter
        pool._core._new_waiter = lambda: _Waiter(original(), lambda: tasks["b"].cancel())

        async def b() -> None:
            await pool.run(request("/b"), None, post_b)
            seen["b_done"] = True

        a = asyncio.create_task(pool.run(request("/a"), None, post_a))
        while not pool._core._connecting:
            await asyncio.sleep(0.01)
        tasks["b"] = asyncio.create_task(b())
        await asyncio.gather(a, tasks["b"], return_exceptions=True)
        await pool.aclose()

    anyio.run(trio_scenario if backend == "trio" else asyncio_scenario, backend=backend)
    return seen


@pytest.mark.parametrize("backend", [
    "trio", "asyncio"])
def test_waiting_attempt_stopped_as_the_connect_completes_is_never_sent(backend):
    """Deterministic form of the race under load (see the module docstring): B's stream must
    not be opened once B was stopped; only A's request reaches the upstream."""
    with FakeH2Upstream(H2Reply(stream=False), tls=True, handshake_delay=0.5) as fake:
        seen = _race(backend, fake)
        time.sleep(0.5)
        frames = timeline(fake, 0.0)
    assert isinstance(seen["a"][-1], UpstreamEnded), seen["a"]
    assert not seen["b_done"] and seen["b"] == [], seen
    heads = [f for f in frames if f[2] == "headers"]
    assert [r.path for r in fake.requests] == ["/a"] and len(heads) == 1, frames
