"""The operations' off switches (``--no-metrics``, ``--log-format off``, ``DISABLE_DATABASE``)
and the access log's JSON object, through the one door with a canned upstream answer."""

from __future__ import annotations

import json
import random

import attrs

from uniapi_core.cmdline import build_parser
from uniapi_core.config import load_config
from uniapi_core.connection import Connection
from uniapi_core.events import (ClientData, Served, StartUpstream, UpstreamData, UpstreamEnded,
                                UpstreamHead, Write)
from uniapi_core.gateway import Gateway, Settings
from uniapi_core.ops.stats import StoreConfig
from uniapi_core.relay.machine import AttemptRecord
from uniapi_core.request_machine import ServedRecord
from uniapi_core.startup import launch

CONFIG = """
providers:
  - {provider: oa, base_url: "http://u/v1/chat/completions", api: k1, model: [m]}
api_keys:
  - {api: sk-admin, role: admin}
"""
ANSWER = json.dumps({"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                                  "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 3, "completion_tokens": 1,
                               "total_tokens": 4}}).encode()


def gateway(**settings) -> Gateway:
    return Gateway(load_config(CONFIG).config, settings=Settings(**settings),
                   entropy=random.Random(0))


def request(path: str, body: bytes = b"", method: str = "POST") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-admin\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


def chat(gw: Gateway) -> list:
    """One whole chat request answered by the canned upstream: every action of the cycle."""
    conn = Connection(lambda: gw, now=0.0, alpn="http/1.1")
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}]}).encode()
    acts = conn.handle(ClientData(request("/v1/chat/completions", body)), 0.0, 0.0)
    (start,) = [a for a in acts if isinstance(a, StartUpstream)]
    acts += conn.handle(UpstreamHead(start.ref, 200, (("content-type", "application/json"),)),
                        0.1, 0.0)
    acts += conn.handle(UpstreamData(start.ref, ANSWER), 0.1, 0.0)
    acts += conn.handle(UpstreamEnded(start.ref), 0.1, 0.0)
    assert b"".join(a.data for a in acts if isinstance(a, Write)).startswith(b"HTTP/1.1 200")
    return acts


def metrics_text(gw: Gateway) -> tuple[int, str]:
    conn = Connection(lambda: gw, now=0.0, alpn="http/1.1")
    data = b"".join(a.data for a in conn.handle(ClientData(request("/metrics", method="GET")),
                                                1.0, 0.0) if isinstance(a, Write))
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def test_by_default_a_request_is_logged_and_counted():
    gw = gateway()
    assert [a.record.status for a in chat(gw) if isinstance(a, Served)] == [200]
    status, text = metrics_text(gw)
    assert status == 200
    assert 'uniapi_requests_total{endpoint="/v1/chat/completions",model="m",provider="oa",' \
        'status_class="2xx"} 1' in text


def test_no_metrics_counts_nothing_and_metrics_answers_404():
    gw = gateway(metrics=False)
    assert [a.record.status for a in chat(gw) if isinstance(a, Served)] == [200]  # still logged
    counted, fresh = gw.metrics.snapshot(), gateway().metrics.snapshot()
    counted.pop("gauges"), fresh.pop("gauges")  # the connections gauge is the connection's
    assert counted == fresh  # nothing counted
    status, text = metrics_text(gw)
    assert status == 404 and json.loads(text)["error"]["message"].startswith("metrics are off")


def test_log_format_off_emits_no_served_action_but_still_counts():
    gw = gateway(access_log=False)
    assert not any(isinstance(a, Served) for a in chat(gw))
    assert "status_class=\"2xx\"} 1" in metrics_text(gw)[1]


def test_with_everything_off_no_record_is_built():
    gw = gateway(access_log=False, metrics=False)
    assert gw.log_requests is False
    assert not any(isinstance(a, Served) for a in chat(gw))
    gw = gateway(access_log=False, metrics=False,
                 stats_store=StoreConfig.from_env({"DB_PATH": "/nonexistent/x.db"}))
    assert gw.log_requests is True and gw.stats is not None  # the stats store still wants it
    chat(gw)
    assert gw.stats.added == 1


def test_the_flags_reach_the_settings():
    args = build_parser().parse_args(["serve", "--config", "a.yaml", "--no-metrics",
                                      "--log-format", "off"])
    settings = launch(args, {"DISABLE_DATABASE": "true"}).settings
    assert (settings.metrics, settings.access_log) == (False, False)
    assert settings.stats_store is not None and not settings.stats_store.enabled
    args = build_parser().parse_args(["serve", "--config", "a.yaml"])
    settings = launch(args, {}).settings
    assert (settings.metrics, settings.access_log) == (True, True)


def test_the_json_log_line_holds_every_field_of_the_record():
    record = ServedRecord(
        "POST", "/v1/chat/completions", 502, 1.25, (("oa", "m", "status:502"),), True,
        {"prompt_tokens": 3}, 1700000000.5, "k-0123456789ab", "m", 0.5, "10.0.0.1", "bad",
        (AttemptRecord("oa", "m", "status:502", "k-ba9876543210", 1.0000004),))
    logged = json.loads(record.log_text("json"))
    expected = attrs.asdict(record)
    expected.pop("attempts")  # the same as "tries", in an older shape
    expected["tries"] = [dict(expected["tries"][0], latency=1.0)]
    assert logged == expected and list(logged) == list(expected)
    assert record.log_text("text") == record.log_line()


def test_the_access_log_text_line_is_what_logging_would_print_in_utc():
    import logging
    import time

    from uniapi_core.ops.accesslog import AccessLog
    from uniapi_core.startup import LOG_LINES

    record = ServedRecord("POST", "/v1/chat/completions", 200, 0.25, wall=1765004512.5)
    formatter = logging.Formatter(LOG_LINES["text"])
    formatter.converter = time.gmtime
    logged = logging.LogRecord("uniapi", logging.INFO, __file__, 0, record.log_line(), (), None)
    logged.created, logged.msecs = 1765004512.75, 750.0
    access = AccessLog("text")
    assert access.line(record) == formatter.format(logged) + "\n"
    assert access.line(record) == "2025-12-06 07:01:52,750 INFO POST /v1/chat/completions 200 " \
                                  "250.0ms\n"
    later = attrs.evolve(record, wall=1765004513.0)  # the next second: a new date part
    assert access.line(later).startswith("2025-12-06 07:01:53,250 INFO ")
    assert AccessLog("json").line(record) == record.log_text("json") + "\n"
