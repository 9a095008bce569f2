"""The asyncio backend as a real process: ``python -m uniapi_asyncio`` and
``uniapi serve|demo --backend asyncio``, stopped by signals the way an orchestrator stops it.

The gateway runs in another process, out of reach of the suite's chat stream validator
fixture (tests/conftest.py): each chat answer read here goes through ``check_chat_stream`` /
``checked_chat`` instead."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import openai
import pytest

from tests.fakes.upstream import FakeUpstream, sse_reply
from uniapi_core.streams import ChatStreamChecker, check_chat_stream

KEY = "sk-asyncio-proc"
CHUNKS = [{"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1735689600,
           "model": "m",
           "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
          for word in ("one ", "two ", "three")]
STREAM_REQUEST = json.dumps({"model": "m", "stream": True,
                             "messages": [{"role": "user", "content": "count"}]}).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


@contextmanager
def process(args: list[str], port: int, tmp_path: Path) -> Iterator[subprocess.Popen]:
    """Start ``args`` (output to ``process.log``: a file never blocks the server as a full pipe
    would) and wait for /healthz; on the way out make sure it is gone."""
    with open(tmp_path / "process.log", "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not healthy(port):
            assert proc.poll() is None and time.monotonic() < deadline, output(tmp_path)
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)


def output(tmp_path: Path) -> str:
    return (tmp_path / "process.log").read_text()


@pytest.fixture
def gated_upstream() -> Iterator[tuple[FakeUpstream, threading.Event]]:
    """An upstream whose stream sends its first chunk, then waits for the gate."""
    up, gate = FakeUpstream(), threading.Event()
    reply = sse_reply(CHUNKS)
    reply.gates[1] = gate
    up.replies.append(reply)
    yield up, gate
    gate.set()
    up.close()


def module_args(up: FakeUpstream, tmp_path: Path, port: int) -> list[str]:
    conf = tmp_path / "api.yaml"
    conf.write_text(f"providers:\n  - provider: up\n    base_url: {up.url}/v1/chat/completions\n"
                    f"    api: sk-up\n    model: [m]\napi_keys:\n  - api: {KEY}\n")
    return [sys.executable, "-m", "uniapi_asyncio", "--config", str(conf), "--port", str(port)]


def start_stream(port: int) -> tuple[socket.socket, bytes]:
    """Send a streamed chat request; return the socket and what came before the gate."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer "
              + KEY.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: "
              + str(len(STREAM_REQUEST)).encode() + b"\r\n\r\n" + STREAM_REQUEST)
    got = b""
    while b"one " not in got:
        chunk = s.recv(65536)
        assert chunk, got
        got += chunk
    return s, got


def sse_body(response: bytes) -> bytes:
    """The body of an HTTP/1.1 response read off the socket, de-chunked (as far as it came)."""
    head, _, body = response.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" not in head.lower():
        return body
    out = b""
    while body:
        size, sep, rest = body.partition(b"\r\n")
        if not sep or not size.strip():
            break
        n = int(size.split(b";")[0], 16)
        if n == 0:
            break
        out += rest[:n]
        body = rest[n + 2:]
    return out


def read_to_close(s: socket.socket) -> bytes:
    got = b""
    with s:
        while chunk := s.recv(65536):
            got += chunk
    return got


def test_sigterm_drains_the_stream_in_flight_then_exits_0(gated_upstream, tmp_path):
    up, gate = gated_upstream
    port = free_port()
    with process(module_args(up, tmp_path, port), port, tmp_path) as proc:
        s, head = start_stream(port)
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while healthy(port):  # stops accepting at once …
            assert time.monotonic() < deadline, "still accepting after SIGTERM"
            time.sleep(0.02)
        assert proc.poll() is None  # … but waits for the stream in flight
        gate.set()
        rest = read_to_close(s)
        assert proc.wait(5) == 0, output(tmp_path)
    body = head + rest
    assert b"HTTP/1.1 200 " in body and b"three" in body
    assert body.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n"), body[-200:]
    assert check_chat_stream(sse_body(body)) == []
    assert "SIGTERM: draining" in output(tmp_path)
    assert "Exception in callback" not in output(tmp_path) and "Traceback" not in output(tmp_path)


def test_a_second_sigterm_stops_at_once(gated_upstream, tmp_path):
    up, _gate = gated_upstream  # never opened: only the second signal ends the stream
    port = free_port()
    with process(module_args(up, tmp_path, port), port, tmp_path) as proc:
        s, head = start_stream(port)
        proc.send_signal(signal.SIGTERM)
        while healthy(port):
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0, output(tmp_path)
        body = head + read_to_close(s)
        assert b"[DONE]" not in body
    checker = ChatStreamChecker()  # cut on purpose: valid as far as it came, not closed
    checker.feed(sse_body(body))
    assert b'"one "' in sse_body(body) and checker.problems == []
    assert up.closed_by_peer.wait(5), "the upstream exchange was not cancelled"
    assert "Exception in callback" not in output(tmp_path) and "Traceback" not in output(tmp_path)


def test_idle_process_exits_0_on_sigint(gated_upstream, tmp_path):
    up, _ = gated_upstream
    port = free_port()
    with process(module_args(up, tmp_path, port), port, tmp_path) as proc:
        idle = socket.create_connection(("127.0.0.1", port))  # an idle keep-alive client
        proc.send_signal(signal.SIGINT)
        assert proc.wait(5) == 0, output(tmp_path)
        assert read_to_close(idle) == b""
    assert "Traceback" not in output(tmp_path)


def test_uniapi_demo_backend_asyncio_answers_the_sdk(tmp_path, checked_chat):
    port = free_port()
    cli = [sys.executable, "-m", "uniapi_trio.cli", "demo", "--backend", "asyncio",
           "--port", str(port)]
    with process(cli, port, tmp_path) as proc:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-uniapi-demo",
                               max_retries=0)
        reply = checked_chat(client, model="gpt-4o-mini", messages=[
            {"role": "user", "content": "Hello"}])
        assert reply.choices[0].message.content == "You said: Hello"
        chunks = list(checked_chat(client, model="gpt-4o-mini", stream=True, messages=[
            {"role": "user", "content": "Hello there"}]))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
            "You said: Hello there"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0, output(tmp_path)
    assert "(asyncio)" in output(tmp_path) and "Traceback" not in output(tmp_path)
