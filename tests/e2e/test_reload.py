"""Hot reload over real sockets, on both backends: ``uniapi serve`` as a process, its config
file rewritten, then ``POST /v1/reload`` or SIGHUP (to the supervisor under ``--workers 2``).

A reload applies a change (a new model answers), refuses a broken file (the old config still
answers; the error names the line, in the 400 and in the log), keeps a key's rate-limit window,
and loses no stream in flight. Chat answers are read through ``checked_chat`` or
``check_chat_stream`` (the gateway runs in another process)."""

from __future__ import annotations

import http.client
import json
import signal
import sys
import threading
import time

import openai
import pytest

from tests.e2e.test_cli import _wait_for_workers, free_port, process
from tests.fakes.upstream import FakeUpstream, Reply, Seen
from tests.harness import BACKENDS
from uniapi_core.streams import check_chat_stream

CLI = [sys.executable, "-m", "uniapi_trio.cli"]


def answer_for(seen: Seen) -> Reply:
    """The fake vendor: says which model it was asked for (whole, or as a stream)."""
    req = seen.json()
    model = req["model"]
    if req.get("stream"):
        chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": model,
                 "choices": [{"index": 0, "delta": {"content": model}, "finish_reason": None}]}
        end = {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        pieces = [b"data: " + json.dumps(x).encode() + b"\n\n" for x in (chunk, end)]
        return Reply(headers=[("content-type", "text/event-stream")],
                     pieces=pieces + [b"data: [DONE]\n\n"])
    return Reply(pieces=[json.dumps({
        "id": "x", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": model},
                     "finish_reason": "stop"}]}).encode()], chunked=False)


def config(url: str, models: str = "[m1]", user: str = "sk-user", limit: str = "") -> str:
    prefs = f"\n    preferences: {{rate_limit: {limit}}}" if limit else ""
    return (f"providers:\n  - provider: up\n    base_url: {url}/v1/chat/completions\n"
            f"    api: sk-up\n    model: {models}\n"
            f"api_keys:\n  - api: sk-admin\n    role: admin\n  - api: {user}{prefs}\n")


def post(port: int, path: str, key: str, body: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=json.dumps(body or {}),
                     headers={"authorization": f"Bearer {key}",
                              "content-type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def chat(port: int, key: str, model: str) -> tuple[int, dict]:
    return post(port, "/v1/chat/completions", key,
                {"model": model, "messages": [{"role": "user", "content": "hi"}]})


@pytest.fixture
def upstream():
    up = FakeUpstream(answer_for)
    yield up
    up.close()


def serve(conf, port: int, backend: str, *more: str):
    return process([*CLI, "serve", "--config", str(conf), "--port", str(port), "--backend",
                    backend, *more], port)


def output(proc) -> str:
    """What the process wrote (stdout and stderr), once it has ended."""
    return proc.stdout.read().decode() if proc.stdout else ""


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_reload_applies_a_change_and_refuses_a_broken_file(backend, upstream, tmp_path,
                                                             checked_chat):
    conf = tmp_path / "api.yaml"
    conf.write_text(config(upstream.url))
    port = free_port()
    with serve(conf, port, backend) as proc:
        assert chat(port, "sk-user", "m2")[0] == 404
        status, body = post(port, "/v1/reload", "sk-user")
        assert status == 403 and body["error"]["code"] == "admin_only"
        conf.write_text(config(upstream.url, "[m1, m2]"))
        assert post(port, "/v1/reload", "sk-admin") == (200, {"status": "reloaded"})
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-user",
                               max_retries=0)
        got = checked_chat(client, model="m2", messages=[{"role": "user", "content": "hi"}])
        assert got.choices[0].message.content == "m2"
        # broken: line 4 holds a mapping where keys go; refused, the old config serves on
        conf.write_text(config(upstream.url, "[m1, m2]").replace("api: sk-up", "api: {a: 1}"))
        status, body = post(port, "/v1/reload", "sk-admin")
        assert status == 400 and body["error"]["code"] == "config_refused"
        assert "(line 4)" in body["error"]["message"] and str(conf) in body["error"]["message"]
        got = checked_chat(client, model="m2", messages=[{"role": "user", "content": "hi"}])
        assert got.choices[0].message.content == "m2"
        conf.unlink()  # gone: refused too
        status, body = post(port, "/v1/reload", "sk-admin")
        assert status == 400 and "not found" in body["error"]["message"]
        assert chat(port, "sk-user", "m1")[0] == 200
    log = output(proc)
    assert "reloaded the config from" in log
    assert "reload refused, the old config serves on" in log and "(line 4)" in log


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_key_rate_limit_window_and_removed_keys_across_a_reload(backend, upstream, tmp_path):
    conf = tmp_path / "api.yaml"
    conf.write_text(config(upstream.url, limit="2/min"))
    port = free_port()
    with serve(conf, port, backend):
        assert [chat(port, "sk-user", "m1")[0] for _ in range(2)] == [200, 200]
        conf.write_text(config(upstream.url, "[m1, m2]", limit="2/min"))
        assert post(port, "/v1/reload", "sk-admin")[0] == 200
        status, body = chat(port, "sk-user", "m2")
        assert status == 429 and body["error"]["code"] == "rate_limit_exceeded"
        # the key removed: refused at once
        conf.write_text(config(upstream.url, "[m1, m2]", user="sk-other"))
        assert post(port, "/v1/reload", "sk-admin")[0] == 200
        assert chat(port, "sk-user", "m1")[0] == 401
        assert chat(port, "sk-other", "m1")[0] == 200


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_stream_in_flight_finishes_on_its_config(backend, upstream, tmp_path):
    gate = threading.Event()

    def paced(seen: Seen) -> Reply:
        reply = answer_for(seen)
        reply.gates = {1: gate}  # the first chunk goes out, the rest waits for the test
        return reply

    upstream.handler = paced
    conf = tmp_path / "api.yaml"
    conf.write_text(config(upstream.url))
    port = free_port()
    with serve(conf, port, backend):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        body = json.dumps({"model": "m1", "stream": True,
                           "messages": [{"role": "user", "content": "hi"}]})
        conn.request("POST", "/v1/chat/completions", body=body,
                     headers={"authorization": "Bearer sk-user",
                              "content-type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200
        first = response.read1(65536)  # the first chunk is through: the stream is committed
        assert first
        # the new config drops the model and the key the stream runs on, and the provider
        conf.write_text(config("http://127.0.0.1:9", "[m9]", user="sk-new"))
        upstream.handler = answer_for
        assert post(port, "/v1/reload", "sk-admin")[0] == 200
        assert chat(port, "sk-user", "m1")[0] == 401
        gate.set()
        data = first + response.read()
        conn.close()
    assert check_chat_stream(data) == [], data
    assert data.rstrip().endswith(b"data: [DONE]") and b'"m1"' in data


@pytest.mark.parametrize("backend", BACKENDS)
def test_sighup_reloads_every_worker(backend, upstream, tmp_path):
    conf = tmp_path / "api.yaml"
    conf.write_text(config(upstream.url))
    port = free_port()
    with serve(conf, port, backend, "--workers", "2") as proc:
        _wait_for_workers(proc.pid, 2)
        seen = ""
        while seen.count("uniapi: serving on") < 2:  # each worker's banner: its handlers are in
            seen += proc.stdout.readline().decode()
        conf.write_text(config(upstream.url, "[m1, m2]"))
        proc.send_signal(signal.SIGHUP)
        deadline, streak = time.monotonic() + 15, 0
        while streak < 12 and time.monotonic() < deadline:  # fresh connections: both workers
            streak = streak + 1 if chat(port, "sk-user", "m2")[0] == 200 else 0
            time.sleep(0.02)
        assert streak == 12
    assert (seen + output(proc)).count("reloaded the config from") == 2
