"""``uniapi_core.demo``: the fake upstream is gateway-shaped, so a transport serves it with the
same ``serve`` as the gateway (issue 12); ``uniapi demo`` end to end: tests/e2e/test_cli.py."""

from __future__ import annotations

import json

from uniapi_core.demo import DemoUpstream, demo_answer, demo_config, demo_url
from uniapi_core.gateway import Respond

CHAT = "/v1/chat/completions"


def _handle(target: str, body: bytes, wall: float = 1735689600.7) -> Respond:
    return DemoUpstream().handle("POST", target, (("content-type", "application/json"),),
                                 body, now=5.0, wall=wall)


def test_a_chat_is_answered_whole_with_the_wall_clock_as_created():
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi you"}]})
    got = _handle(CHAT, body.encode())
    assert isinstance(got, Respond) and got.status == 200
    assert got.headers == (("content-type", "application/json"),)
    answer = json.loads(got.body)
    assert answer["created"] == 1735689600
    assert answer["choices"][0]["message"]["content"] == "You said: hi you"


def test_a_stream_is_one_body_of_the_same_events():
    body = json.dumps({"model": "m", "stream": True, "stream_options": {"include_usage": True},
                       "messages": [{"role": "user", "content": "a b"}]}).encode()
    got = _handle(CHAT, body, wall=7.0)
    status, headers, pieces = demo_answer(CHAT, body, 7)
    assert (got.status, got.headers, got.body) == (status, headers, b"".join(pieces))
    assert got.headers == (("content-type", "text/event-stream"),)
    assert got.body.endswith(b"data: [DONE]\n\n") and got.body.count(b"data: ") == len(pieces)


def test_models_and_bad_json():
    assert json.loads(_handle("/v1/models", b"").body)["data"][0]["id"] == "demo-echo"
    bad = _handle(CHAT, b"{nope")
    assert bad.status == 400 and json.loads(bad.body)["error"]["message"] == "bad JSON"


def test_the_demo_config_points_at_the_upstream_url():
    assert demo_url(4321) == "http://127.0.0.1:4321"
    assert "base_url: http://127.0.0.1:4321/v1/chat/completions" in demo_config(demo_url(4321))
