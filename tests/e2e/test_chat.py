"""End to end: the official openai SDK → the gateway (real sockets) → fake OpenAI upstreams."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import types

import openai
import pytest

from tests.fakes.upstream import FakeUpstream, Reply, json_reply, sse_reply
from tests.harness import run_gateway

KEY = "sk-test-key-0001"
LIMITED = "sk-limited-key-0002"


def config(*upstreams: FakeUpstream, extra_provider: str = "", prefs: str = "") -> str:
    providers = ""
    for i, up in enumerate(upstreams):
        providers += f"""
  - provider: up{i}
    base_url: {up.url}/v1/chat/completions
    api: sk-upstream-{i}
    model:
      - gpt-4o
      - gpt-4o-2024-08-06: gpt4-alias
"""
    return f"""
providers:{providers}{extra_provider}
api_keys:
  - api: {KEY}
  - api: {LIMITED}
    model:
      - some-other-model
{prefs}
"""


COMPLETION = {
    "id": "chatcmpl-up", "object": "chat.completion", "created": 1735689600, "model": "gpt-4o",
    "choices": [{"index": 0, "message": {
        "role": "assistant", "content": None, "tool_calls": [
            {"id": "call_A", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_B", "type": "function",
             "function": {"name": "get_time", "arguments": "{\"tz\":\"Europe/Paris\"}"}}]},
        "logprobs": None, "finish_reason": "tool_calls"}],
    "usage": {"prompt_tokens": 82, "completion_tokens": 48, "total_tokens": 130,
              "prompt_tokens_details": {"cached_tokens": 10}},
}


def chunk(delta: dict, finish: str | None = None, **kw) -> dict:
    c = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1735689600,
         "model": "gpt-4o", "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                         "finish_reason": finish}]}
    c.update(kw)
    return c


STREAM = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Hel"}),
    chunk({"content": "lo ✓"}),
    chunk({"tool_calls": [{"index": 0, "id": "call_A", "type": "function",
                           "function": {"name": "get_weather", "arguments": ""}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
    chunk({"tool_calls": [{"index": 1, "id": "call_B", "type": "function",
                           "function": {"name": "get_time", "arguments": "{}"}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
    chunk({}, "tool_calls"),
    {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1735689600,
     "model": "gpt-4o", "choices": [],
     "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}},
]

MESSAGES = [{"role": "user", "content": "weather in Paris?"}]




def test_non_stream_relays_content_tool_calls_and_usage(backend, up):
    up.replies.append(json_reply(COMPLETION))
    with run_gateway(config(up), backend=backend) as gw:
        resp = gw.openai(KEY).chat.completions.create(model="gpt-4o", messages=MESSAGES,
                                                      temperature=0.2)
    msg = resp.choices[0].message
    assert [c.id for c in msg.tool_calls] == ["call_A", "call_B"]
    assert msg.tool_calls[1].function.arguments == "{\"tz\":\"Europe/Paris\"}"
    assert resp.choices[0].finish_reason == "tool_calls"
    assert resp.usage.total_tokens == 130
    assert resp.usage.prompt_tokens_details.cached_tokens == 10
    sent = up.seen[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-upstream-0"
    body = sent.json()
    assert body["model"] == "gpt-4o" and body["temperature"] == 0.2
    assert body["messages"] == MESSAGES


def test_stream_relays_chunks_tool_calls_and_usage(backend, up):
    up.replies.append(sse_reply(STREAM))
    with run_gateway(config(up), backend=backend) as gw:
        stream = gw.openai(KEY).chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True,
            stream_options={"include_usage": True})
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello ✓"
    args: dict[int, str] = {}
    ids: dict[int, str] = {}
    for c in chunks:
        for ch in c.choices:
            for tc in ch.delta.tool_calls or []:
                args[tc.index] = args.get(tc.index, "") + (tc.function.arguments or "")
                if tc.id:
                    ids[tc.index] = tc.id
    assert args == {0: "{\"city\":\"Paris\"}", 1: "{}"}
    assert ids == {0: "call_A", 1: "call_B"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage.total_tokens == 21
    assert up.seen[0].json()["stream_options"] == {"include_usage": True}


def test_rename_sends_upstream_name_and_answers_with_alias(backend, up):
    up.replies.append(json_reply(dict(COMPLETION, model="gpt-4o-2024-08-06")))
    up.replies.append(sse_reply([dict(c, model="gpt-4o-2024-08-06") for c in STREAM]))
    with run_gateway(config(up), backend=backend) as gw:
        client = gw.openai(KEY)
        resp = client.chat.completions.create(model="gpt4-alias", messages=MESSAGES)
        chunks = list(client.chat.completions.create(model="gpt4-alias", messages=MESSAGES,
                                                     stream=True))
    assert resp.model == "gpt4-alias"
    assert {c.model for c in chunks} == {"gpt4-alias"}
    assert [s.json()["model"] for s in up.seen] == ["gpt-4o-2024-08-06"] * 2


def test_models_lists_what_each_key_may_call(backend, up):
    with run_gateway(config(up), backend=backend) as gw:
        ids = [m.id for m in gw.openai(KEY).models.list()]
        limited = [m.id for m in gw.openai(LIMITED).models.list()]
    assert ids == ["gpt-4o", "gpt4-alias"]
    assert limited == []


def test_stream_reaches_client_before_upstream_finishes(backend, up):
    gate = threading.Event()
    reply = sse_reply(STREAM)
    reply.gates[3] = gate  # the upstream holds everything from the 4th event on
    up.replies.append(reply)
    with run_gateway(config(up), backend=backend) as gw:
        stream = gw.openai(KEY).chat.completions.create(model="gpt-4o", messages=MESSAGES,
                                                        stream=True)
        first = next(iter(stream))
        assert first.choices[0].delta.role == "assistant"
        second = next(stream)
        assert second.choices[0].delta.content == "Hel"
        assert not gate.is_set()  # the upstream has not sent the rest yet
        gate.set()
        rest = list(stream)
    assert [c for c in rest if c.choices][-1].choices[0].finish_reason == "tool_calls"


def test_failure_before_commit_moves_to_next_channel(backend):
    bad, good = FakeUpstream(), FakeUpstream()
    try:
        bad.replies.append(json_reply({"error": {"message": "overloaded", "type": "server_error",
                                                 "code": None}}, status=503))
        good.replies.append(sse_reply(STREAM))
        with run_gateway(config(bad, good), backend=backend) as gw:
            chunks = list(gw.openai(KEY).chat.completions.create(
                model="gpt-4o", messages=MESSAGES, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello ✓"
        assert len(bad.seen) == 1 and len(good.seen) == 1
    finally:
        bad.close()
        good.close()


def test_upstream_400_is_passed_on_and_not_retried(backend):
    a, b = FakeUpstream(), FakeUpstream()
    try:
        a.replies.append(json_reply({"error": {"message": "Invalid 'messages[0].role'",
                                               "type": "invalid_request_error",
                                               "code": "invalid_value"}}, status=400))
        with run_gateway(config(a, b), backend=backend) as gw:
            with pytest.raises(openai.BadRequestError) as exc:
                gw.openai(KEY).chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert exc.value.status_code == 400
        assert "Invalid 'messages[0].role'" in exc.value.message
        assert exc.value.body["code"] == "invalid_value"
        assert b.seen == []
    finally:
        a.close()
        b.close()


def test_cut_stream_after_commit_ends_with_error_event(backend, up):
    reply = sse_reply(STREAM, done=False)
    reply.cut_after = 3
    up.replies.append(reply)
    with run_gateway(config(up), backend=backend) as gw:
        stream = gw.openai(KEY).chat.completions.create(model="gpt-4o", messages=MESSAGES,
                                                        stream=True)
        got = []
        with pytest.raises(openai.APIError) as exc:
            for c in stream:
                got.append(c)
    assert len(got) == 3
    assert "upstream" in exc.value.message


def test_stream_without_done_after_finish_is_completed(backend, up):
    up.replies.append(sse_reply(STREAM[:-1], done=False))
    with run_gateway(config(up), backend=backend) as gw:
        chunks = list(gw.openai(KEY).chat.completions.create(model="gpt-4o", messages=MESSAGES,
                                                             stream=True))
    assert [c for c in chunks if c.choices][-1].choices[0].finish_reason == "tool_calls"


def test_client_disconnect_cancels_upstream(backend, up):
    gate = threading.Event()
    reply = sse_reply(STREAM)
    reply.gates[2] = gate  # never opened during the test
    up.replies.append(reply)
    with run_gateway(config(up), backend=backend) as gw:
        stream = gw.openai(KEY).chat.completions.create(model="gpt-4o", messages=MESSAGES,
                                                        stream=True)
        next(iter(stream))
        stream.close()
        assert up.closed_by_peer.wait(5), "the upstream request was not cancelled"
        gate.set()
        # and the gateway still serves
        up.replies.append(json_reply(COMPLETION))
        assert gw.openai(KEY).chat.completions.create(model="gpt-4o", messages=MESSAGES).id


# -- errors ---------------------------------------------------------------------------------

def _post(port: int, body: bytes, headers: dict[str, str] | None = None,
          path: str = "/v1/chat/completions", method: str = "POST") -> tuple[int, dict, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    h = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    h.update(headers or {})
    conn.request(method, path, body=body, headers={k: v for k, v in h.items() if v})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, dict(r.getheaders()), json.loads(data) if data else {}


def assert_openai_error(obj: dict) -> dict:
    err = obj["error"]
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str)
    assert "code" in err
    return err


BODY = json.dumps({"model": "gpt-4o", "messages": MESSAGES}).encode()


@pytest.mark.parametrize("body,status", [
    (b"{not json", 400),
    (b"[1, 2]", 400),
    (b"", 400),
    (b"{\"model\": \"gpt-4o\"}", 400),
    (b"{\"model\": 5, \"messages\": []}", 400),
    (b"{\"model\": \"gpt-4o\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], "
     b"\"stream\": \"yes\"}", 400),
    (b"[" * 100000, 400),
    (b"{\"model\": \"gpt-4o\", \"messages\": [], \"n\": NaN}", 400),
    (b"\xff\xfe{}", 400),
])
def test_bad_json_bodies(backend, up, body, status):
    with run_gateway(config(up), backend=backend) as gw:
        got, _, obj = _post(gw.port, body)
        assert got == status
        assert_openai_error(obj)
        up.replies.append(json_reply(COMPLETION))
        assert _post(gw.port, BODY)[0] == 200  # still serving
    assert len(up.seen) == 1


def test_wrong_content_type_is_415_and_none_is_accepted(backend, up):
    with run_gateway(config(up), backend=backend) as gw:
        status, _, obj = _post(gw.port, BODY, {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 415 and assert_openai_error(obj)["code"] == "unsupported_media_type"
        up.replies.append(json_reply(COMPLETION))
        assert _post(gw.port, BODY, {"Content-Type": ""})[0] == 200  # absent: read as JSON
    assert len(up.seen) == 1


def test_auth_errors(backend, up):
    with run_gateway(config(up), backend=backend) as gw:
        with pytest.raises(openai.AuthenticationError) as exc:
            gw.openai("sk-wrong").chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert exc.value.status_code == 401
        status, _, obj = _post(gw.port, BODY, {"Authorization": ""})
        assert status == 401 and assert_openai_error(obj)["code"] == "missing_api_key"
        # x-api-key is accepted too
        up.replies.append(json_reply(COMPLETION))
        status, _, obj = _post(gw.port, BODY, {"Authorization": "", "x-api-key": KEY})
        assert status == 200
    assert len(up.seen) == 1


def test_model_not_allowed_or_unknown_is_404_naming_it(backend, up):
    with run_gateway(config(up), backend=backend) as gw:
        with pytest.raises(openai.NotFoundError) as exc:
            gw.openai(LIMITED).chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert "gpt-4o" in exc.value.message
        with pytest.raises(openai.NotFoundError) as exc:
            gw.openai(KEY).chat.completions.create(model="no-such-model", messages=MESSAGES)
        assert "no-such-model" in exc.value.message
        assert exc.value.body["code"] == "model_not_found"
    assert up.seen == []


def test_body_over_limit_is_413(backend, up):
    with run_gateway(config(up), backend=backend) as gw:
        # refused from the Content-Length alone, before the body is read
        raw = gw.raw(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 40000000\r\nContent-Type: application/json\r\n\r\n{")
        assert raw.startswith(b"HTTP/1.1 413 ")
        assert_openai_error(json.loads(raw.split(b"\r\n\r\n", 1)[1]))
        up.replies.append(json_reply(COMPLETION))
        assert _post(gw.port, BODY)[0] == 200


def test_oversize_head_is_431_and_the_server_serves_the_next_request(backend, up):
    with run_gateway(config(up), backend=backend) as gw:
        big = b"X-Filler: " + b"a" * 70000 + b"\r\n"
        raw = gw.raw(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
        assert raw.startswith(b"HTTP/1.1 431 ")
        assert_openai_error(json.loads(raw.split(b"\r\n\r\n", 1)[1]))
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(150))
        raw = gw.raw(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        assert raw.startswith(b"HTTP/1.1 431 ") and b"too many header fields" in raw
        up.replies.append(json_reply(COMPLETION))
        assert _post(gw.port, BODY)[0] == 200


def test_unknown_path_and_method(backend, up):
    with run_gateway(config(up), backend=backend) as gw:
        status, _, obj = _post(gw.port, b"", path="/v1/nope", method="GET")
        assert status == 404 and assert_openai_error(obj)
        status, headers, obj = _post(gw.port, b"", path="/v1/chat/completions", method="GET")
        assert status == 405 and assert_openai_error(obj)
        status, _, obj = _post(gw.port, b"", path="/healthz", method="GET")
        assert status == 200 and obj == {"status": "ok"}


def test_upstream_unreachable_is_502(backend, up):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = types.SimpleNamespace(url=f"http://127.0.0.1:{s.getsockname()[1]}")
    with run_gateway(config(dead), backend=backend) as gw:
        with pytest.raises(openai.APIStatusError) as exc:
            gw.openai(KEY).chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert exc.value.status_code == 502
        assert exc.value.body["code"] == "upstream_unreachable"


def test_upstream_timeout_is_504(backend, up):
    up.replies.append(Reply(delay=3.0, pieces=[json.dumps(COMPLETION).encode()], chunked=False))
    prefs = "preferences:\n  model_timeout:\n    gpt-4o: 0.3\n"
    with run_gateway(config(up, prefs=prefs), backend=backend) as gw:
        with pytest.raises(openai.APIStatusError) as exc:
            gw.openai(KEY).chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert exc.value.status_code == 504  # the upstream had not answered yet
        assert exc.value.body["code"] == "upstream_timeout"


def test_upstream_dropping_connection_then_recovering(backend, up):
    up.replies.append(Reply(drop=True))
    with run_gateway(config(up), backend=backend) as gw:
        with pytest.raises(openai.APIStatusError) as exc:
            gw.openai(KEY).chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert exc.value.status_code == 502
        up.replies.append(json_reply(COMPLETION))
        assert gw.openai(KEY).chat.completions.create(model="gpt-4o", messages=MESSAGES).id
