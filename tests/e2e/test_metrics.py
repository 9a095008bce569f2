"""GET /metrics over real sockets, on both backends: it parses with prometheus_client's text
parser (the one Prometheus users run), and its counters equal the requests made."""

from __future__ import annotations

import urllib.error
import urllib.request

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.upstream import FakeUpstream, json_reply, sse_reply
from tests.harness import run_gateway

ADMIN, USER = "sk-admin", "sk-user"


def config(up: FakeUpstream, public: bool = False) -> str:
    prefs = "preferences:\n  metrics_public: true\n" if public else ""
    return f"""
providers:
  - provider: up
    base_url: {up.url}/v1/chat/completions
    api: sk-upstream
    model: [m]
  - provider: up2
    base_url: {up.url}/v1/chat/completions
    api: sk-upstream-2
    model: [m]
api_keys:
  - api: {ADMIN}
    role: admin
    preferences: {{SCHEDULING_ALGORITHM: fixed_priority}}
  - api: {USER}
    preferences: {{rate_limit: 2/min, SCHEDULING_ALGORITHM: fixed_priority}}
{prefs}"""


def answer(text: str) -> dict:
    return {"id": "x", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10,
                      "prompt_tokens_details": {"cached_tokens": 4}}}


def scrape(url: str, key: str | None) -> tuple[int, str]:
    req = urllib.request.Request(url + "/metrics",
                                 headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict, name: str, **labels: str) -> float:
    """The sum over the series of ``name`` whose labels include ``labels``."""
    return sum(v for (n, have), v in found.items()
               if n == name and set(labels.items()) <= set(have))


def test_counters_equal_the_requests_made(backend):
    up = FakeUpstream()
    up.replies = [json_reply(answer("a")), json_reply({"error": {"message": "x"}}, status=500),
                  json_reply(answer("b")),
                  sse_reply([{"id": "s", "object": "chat.completion.chunk", "created": 1,
                              "model": "m", "choices": [{"index": 0, "delta": {"content": "c"},
                                                         "finish_reason": "stop"}]}]),
                  json_reply(answer("d"))]
    try:
        with run_gateway(config(up), backend=backend) as gw:
            admin, user = gw.openai(ADMIN), gw.openai(USER)
            admin.chat.completions.create(model="m", messages=[{"role": "user", "content": "1"}])
            # a 500 from "up" (cooled from then on), then a retry on "up2": two attempts
            admin.chat.completions.create(model="m", messages=[{"role": "user", "content": "2"}])
            list(user.chat.completions.create(model="m", stream=True,
                                              messages=[{"role": "user", "content": "3"}]))
            with pytest.raises(openai.RateLimitError):  # rate_limit 2/min: the third is refused
                for _ in range(2):
                    user.chat.completions.create(model="m", messages=[{"role": "user",
                                                                       "content": "5"}])
            assert scrape(gw.url, USER)[0] == 403
            status, text = scrape(gw.url, ADMIN)
    finally:
        up.close()
    assert status == 200
    found = samples(text)
    chat = {"endpoint": "/v1/chat/completions", "model": "m"}
    assert value(found, "uniapi_requests_total", **chat, status_class="2xx") == 4
    assert value(found, "uniapi_requests_total", **chat, status_class="4xx") == 1
    assert value(found, "uniapi_upstream_attempts_total", provider="up", outcome="ok") == 1
    assert value(found, "uniapi_upstream_attempts_total", provider="up2", outcome="ok") == 3
    assert value(found, "uniapi_upstream_attempts_total", provider="up", outcome="status") == 1
    assert value(found, "uniapi_upstream_retries_total") == 1
    assert value(found, "uniapi_rate_limited_total", scope="key") == 1
    assert value(found, "uniapi_cooldowns_active") == 1  # "up" after its 500
    assert value(found, "uniapi_tokens_total", model="m", kind="prompt") == 21
    assert value(found, "uniapi_tokens_total", model="m", kind="cached") == 12
    assert value(found, "uniapi_request_duration_seconds_count", **chat) == 5
    # the scrape itself is in flight while it renders; the 403 scrape was counted when it ended
    assert value(found, "uniapi_requests_in_flight") == 1
    assert "sk-admin" not in text and "sk-user" not in text and "sk-upstream" not in text


def test_metrics_public_needs_no_key(backend):
    up = FakeUpstream()
    try:
        with run_gateway(config(up, public=True), backend=backend) as gw:
            status, text = scrape(gw.url, None)
    finally:
        up.close()
    assert status == 200 and "uniapi_requests_in_flight" in text


def test_open_connections_are_counted_while_open(backend):
    """The gauge goes up with each client connection and back down when it closes."""
    import socket
    import time

    up = FakeUpstream()
    try:
        with run_gateway(config(up, public=True), backend=backend) as gw:
            metrics = gw.gateway.metrics
            held = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(3)]
            deadline = time.monotonic() + 5
            while metrics.gauge("uniapi_client_connections_open") < 3 \
                    and time.monotonic() < deadline:
                time.sleep(0.02)
            assert metrics.gauge("uniapi_client_connections_open") == 3
            for s in held:
                s.close()
            deadline = time.monotonic() + 5
            while metrics.gauge("uniapi_client_connections_open") > 0 \
                    and time.monotonic() < deadline:
                time.sleep(0.02)
            assert metrics.gauge("uniapi_client_connections_open") == 0
    finally:
        up.close()


@pytest.mark.parametrize("workers_backend", ["trio", "asyncio"])
def test_a_scrape_under_workers_is_the_sum_over_every_worker(workers_backend, tmp_path):
    """--workers 2: requests land on both workers (fresh connections, SO_REUSEPORT); every
    scrape, whichever worker answers it, counts all of them."""
    import http.client
    import json as _json
    import sys
    import time

    from tests.e2e.test_cli import _wait_for_workers, free_port, process

    up = FakeUpstream(lambda seen: json_reply(answer("w")))
    conf = tmp_path / "api.yaml"
    conf.write_text(config(up, public=True))
    port = free_port()
    requests = 12
    try:
        with process([sys.executable, "-m", "uniapi_trio.cli", "serve", "--config", str(conf),
                      "--port", str(port), "--workers", "2", "--backend", workers_backend],
                     port, env={"DISABLE_DATABASE": "true"}) as proc:
            _wait_for_workers(proc.pid, 2)
            body = _json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}]})
            for _ in range(requests):  # a fresh connection each: the kernel spreads them
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("POST", "/v1/chat/completions", body,
                             {"Authorization": f"Bearer {ADMIN}",
                              "Content-Type": "application/json"})
                assert conn.getresponse().status == 200
                conn.close()
            time.sleep(2.5)  # every worker has published since (once a second)
            for _ in range(8):
                status, text = scrape(f"http://127.0.0.1:{port}", None)
                assert status == 200
                found = samples(text)
                assert value(found, "uniapi_requests_total",
                             endpoint="/v1/chat/completions", status_class="2xx") == requests
    finally:
        up.close()
