"""HTTP/2 to upstreams, end to end on both backends: client → gateway → FakeH2Upstream over TLS.

When the origin's ALPN picks ``h2`` the pool multiplexes requests over one connection per
origin; ``http/1.1`` (or no ALPN) falls back to pooled HTTP/1.1 connections. A client that goes
away resets its upstream stream only; a connection the upstream ends fails (or, when the server
says it did not process them, retries) its streams, and the next request opens a new one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager

import anyio
import httpx
import pytest

from tests.fakes.h2upstream import FakeH2Upstream, H2Reply
from tests.harness import RunningGateway, run_gateway
from uniapi_core.relay import UpstreamData, UpstreamEnded
from uniapi_core.vendors.base import UpstreamRequest

KEY = "sk-test-key-0001"
MODEL = "fake-model"
MESSAGES = [{"role": "user", "content": "hello"}]
CONTENT = "Hello from the fake h2 upstream"


def config(url: str) -> str:
    return f"""providers:
  - provider: h2
    base_url: {url}/v1/chat/completions
    api: sk-upstream-h2
    model:
      - {MODEL}
api_keys:
  - api: {KEY}
"""


@contextmanager
def gateway(fake: FakeH2Upstream, backend: str) -> Iterator[RunningGateway]:
    with run_gateway(config(fake.url), backend=backend, discover=False,
                     upstream_ssl=fake.client_ssl_context()) as gw:
        yield gw


def ask(gw: RunningGateway, stream: bool) -> str:
    """One chat completion through the openai SDK; the answer's text."""
    client = gw.openai(KEY)
    if not stream:
        return client.chat.completions.create(model=MODEL, messages=MESSAGES).choices[0] \
            .message.content
    chunks = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def wait_for(condition, timeout: float = 5.0) -> float:  # type: ignore[no-untyped-def]
    """Poll until ``condition()``; the seconds it took (fails after ``timeout``)."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "condition not met in time"
        time.sleep(0.01)
    return time.monotonic() - start


class SseReader:
    """A streamed chat completion over its own client connection, read line by line."""

    def __init__(self, gw: RunningGateway, stack: ExitStack) -> None:
        self.client = stack.enter_context(httpx.Client(timeout=15))
        self.response = stack.enter_context(self.client.stream(
            "POST", f"{gw.url}/v1/chat/completions",
            headers={"authorization": f"Bearer {KEY}"},
            json={"model": MODEL, "messages": MESSAGES, "stream": True}))
        assert self.response.status_code == 200
        self.lines = self.response.iter_lines()
        self.seen: list[str] = []

    def first_chunk(self) -> str:
        for line in self.lines:
            self.seen.append(line)
            if line.startswith("data: "):
                return line
        raise AssertionError("the stream ended before its first chunk")

    def rest(self) -> list[str]:
        self.seen += list(self.lines)
        return self.seen

    def text(self) -> str:
        datas = [line[6:] for line in self.seen if line.startswith("data: {")]
        return "".join(json.loads(d)["choices"][0]["delta"].get("content") or "" for d in datas)

    def disconnect(self) -> None:
        self.response.close()
        self.client.close()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_concurrent_requests_share_one_h2_connection(backend, stream):
    with FakeH2Upstream(H2Reply(chunks=5, delay=0.1), tls=True) as fake, \
            gateway(fake, backend) as gw, ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: ask(gw, stream), range(20)))
        assert answers == [CONTENT] * 20
        assert ask(gw, stream) == CONTENT  # and the connection is reused afterwards
    assert fake.connections == 1 and fake.alpn == ["h2"]
    assert len(fake.requests) == 21 and {r.protocol for r in fake.requests} == {"h2"}
    assert fake.max_concurrent_streams >= 2, fake.max_concurrent_streams
    seen = fake.requests[0]
    assert seen.path == "/v1/chat/completions" and seen.json()["model"] == MODEL
    assert seen.headers["authorization"] == "Bearer sk-upstream-h2"
    assert "host" not in seen.headers  # HTTP/2: the authority is a pseudo-header


@pytest.mark.parametrize("alpn", [("http/1.1",), ()], ids=["http1.1", "no-alpn"])
def test_origin_without_h2_is_served_over_pooled_http11(backend, alpn):
    with FakeH2Upstream(H2Reply(chunks=3), tls=True, alpn=alpn) as fake, \
            gateway(fake, backend) as gw:
        for stream in (False, True, False, True):  # one pooled connection, no new h2 attempt
            assert ask(gw, stream) == CONTENT
        assert fake.connections == 1
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(lambda i: ask(gw, bool(i % 2)), range(4))) == [CONTENT] * 4
    assert {r.protocol for r in fake.requests} == {"http/1.1"} and len(fake.requests) == 8
    assert fake.alpn == [alpn[0] if alpn else None] * fake.connections


def test_client_disconnect_resets_only_its_upstream_stream(backend):
    reply = H2Reply(stream=True, chunks=40, delay=0.05, content="x" * 40)
    with FakeH2Upstream(reply, tls=True) as fake, gateway(fake, backend) as gw, \
            ExitStack() as stack:
        readers = [SseReader(gw, stack) for _ in range(3)]
        for r in readers:
            r.first_chunk()
        assert fake.resets == 0 and fake.max_concurrent_streams == 3
        readers[0].disconnect()
        wait_for(lambda: fake.resets == 1, timeout=2.0)  # the reset is what is asserted
        for r in readers[1:]:  # the other streams on that connection go on to the end
            assert "data: [DONE]" in r.rest() and r.text() == "x" * 40
        assert fake.resets == 1 and fake.connections == 1


@pytest.mark.parametrize("how", ["eof", "goaway"])
def test_upstream_ending_the_connection_fails_streams_and_reconnects(backend, how):
    reply = H2Reply(stream=True, chunks=40, delay=0.05)
    with FakeH2Upstream(reply, tls=True) as fake, gateway(fake, backend) as gw, \
            ExitStack() as stack:
        readers = [SseReader(gw, stack) for _ in range(3)]
        for r in readers:
            r.first_chunk()  # committed: the failure can only be reported
        fake.end_connections(how, error=2)  # GOAWAY(INTERNAL_ERROR) or a plain close
        for r in readers:
            lines = r.rest()
            assert "event: error" in lines and "data: [DONE]" not in lines, lines
            error = json.loads(lines[lines.index("event: error") + 1][6:])["error"]
            assert error["message"]
        fake.reply = H2Reply()
        assert ask(gw, False) == CONTENT and ask(gw, True) == CONTENT
    assert fake.connections == 2 and fake.alpn == ["h2", "h2"]


def test_goaway_before_any_answer_retries_on_a_new_connection(backend):
    with FakeH2Upstream(H2Reply(stream=False, delay=1.0), tls=True) as fake, \
            gateway(fake, backend) as gw, ThreadPoolExecutor(4) as pool:
        answers = [pool.submit(ask, gw, bool(i % 2)) for i in range(4)]
        wait_for(lambda: len(fake.requests) == 4)
        fake.reply = H2Reply()
        fake.end_connections("goaway", last_stream_id=0)  # "none of them was processed"
        assert [a.result() for a in answers] == [CONTENT] * 4
        assert ask(gw, False) == CONTENT  # on the new connection
    assert fake.connections == 2 and len(fake.requests) == 9


def test_a_stream_not_passed_on_holds_only_its_upstream_stream(backend):
    """Backpressure, at the pool: the window of a stream is reopened only as its events are
    posted; while one request's ``post`` blocks, the upstream can send it no more than the
    64 KiB stream window, and another request on the same connection completes."""
    big = "y" * 1_000_000

    def handler(seen):  # type: ignore[no-untyped-def]
        return H2Reply(stream=True, chunks=20, content=big if "big" in seen.path else CONTENT)

    def request(path: str) -> UpstreamRequest:
        return UpstreamRequest("POST", f"{fake.url}{path}", (), b'{"stream": true}')

    async def scenario() -> None:
        module = __import__(f"uniapi_{backend}.upstream", fromlist=["UpstreamPool"])
        pool = module.UpstreamPool(fake.client_ssl_context())
        held: list[object] = []
        fast: list[object] = []
        release = anyio.Event()

        async def post_held(ev: object) -> None:
            held.append(ev)
            if isinstance(ev, UpstreamData):
                await release.wait()

        async def post_fast(ev: object) -> None:
            fast.append(ev)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(pool.run, request("/big"), None, post_held)
            while not fake.requests or not fake.requests[0].sent:
                await anyio.sleep(0.01)
            await pool.run(request("/small"), None, post_fast)
            assert isinstance(fast[-1], UpstreamEnded)
            sent = -1
            while sent != fake.requests[0].sent:  # until the upstream stream stalls
                sent = fake.requests[0].sent
                await anyio.sleep(0.2)
            assert 0 < sent <= 65536 and len(held) == 2, sent
            release.set()
        await pool.aclose()
        data = b"".join(ev.data for ev in held if isinstance(ev, UpstreamData))
        assert data.count(b"data: ") == 21 and isinstance(held[-1], UpstreamEnded)

    with FakeH2Upstream(tls=True, handler=handler) as fake:
        anyio.run(scenario, backend=backend)
    assert fake.connections == 1
    assert fake.requests[0].sent > len(big)


def test_idle_h2_connection_is_retired(backend, monkeypatch):
    from uniapi_core.http import pool

    monkeypatch.setattr(pool, "UPSTREAM_TIMEOUTS", pool.UpstreamTimeouts(idle=0.3))
    with FakeH2Upstream(tls=True) as fake, gateway(fake, backend) as gw:
        assert ask(gw, True) == CONTENT and ask(gw, False) == CONTENT
        assert fake.connections == 1
        wait_for(lambda: fake.closed == 1, timeout=3)  # GOAWAY and close, no request open
        assert ask(gw, False) == CONTENT
        assert fake.connections == 2
