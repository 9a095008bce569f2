"""The openai SDK through the gateway to fake Anthropic, Gemini and Azure upstreams: the same
text, tool calls and usage as the vendor sent, in OpenAI's shape."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest

from tests.fakes.upstream import FakeUpstream, Reply, json_reply
from tests.harness import run_gateway

DATA = Path(__file__).resolve().parent.parent / "data"
KEY = "sk-vendor-test"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]
MESSAGES = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"}]




def config(up: FakeUpstream, kind: str) -> str:
    provider = {
        "anthropic": f"base_url: {up.url}/v1/messages\n    api: sk-ant-test",
        "gemini": f"base_url: {up.url}/v1beta\n    api: AIza-test",
        "azure": f"base_url: {up.url}\n    engine: azure\n    api: az-key",
        "cohere": f"base_url: {up.url}/v2/chat\n    engine: cohere\n    api: co-key",
        "cloudflare": f"base_url: {up.url}\n    cf_account_id: acct1\n    api: cf-key",
    }[kind]
    return f"""
providers:
  - provider: {kind}
    {provider}
    model:
      - vendor-model: m
api_keys:
  - api: {KEY}
"""


def fixture_reply(path: str, stream: bool) -> Reply:
    body = (DATA / path).read_bytes()
    if stream:
        return Reply(headers=[("content-type", "text/event-stream")],
                     pieces=[body[i:i + 97] for i in range(0, len(body), 97)])
    return Reply(pieces=[body], chunked=False)


def collect(chunks):
    text, reasoning, calls, finish, usage = "", "", {}, None, None
    for c in chunks:
        if c.usage:
            usage = c.usage
        for ch in c.choices:
            text += ch.delta.content or ""
            reasoning += getattr(ch.delta, "reasoning_content", None) or ""
            for tc in ch.delta.tool_calls or []:
                entry = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
                if tc.id:
                    entry["id"], entry["name"] = tc.id, tc.function.name
                entry["arguments"] += tc.function.arguments or ""
            finish = ch.finish_reason or finish
    return text, reasoning, calls, finish, usage


def test_anthropic_stream(backend, up):
    up.replies.append(fixture_reply("anthropic/tools_stream.sse", stream=True))
    with run_gateway(config(up, "anthropic"), backend=backend) as gw:
        chunks = list(gw.openai(KEY).chat.completions.create(
            model="m", messages=MESSAGES, tools=TOOLS, stream=True,
            stream_options={"include_usage": True}))
    text, _, calls, finish, usage = collect(chunks)
    assert text == "I'll check both for you."
    assert [calls[i]["name"] for i in sorted(calls)] == [
        "get_weather", "get_local_time", "get_date"]
    assert calls[0]["id"] == "toolu_01FmK2wYdQ8cR4vLp7Xn3TsB"
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris", "unit": "celsius"}
    assert json.loads(calls[1]["arguments"])["label"] == "café \"noir\""
    assert calls[2]["arguments"] == "{}"
    assert finish == "tool_calls"
    assert usage.prompt_tokens == 412 and usage.completion_tokens == 96
    sent = up.seen[0]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == "sk-ant-test"
    body = sent.json()
    assert body["model"] == "vendor-model" and body["system"] and body["stream"] is True
    assert body["tools"][0]["name"] == "get_weather"


def test_anthropic_whole_body(backend, up):
    up.replies.append(fixture_reply("anthropic/message_tool_use.json", stream=False))
    with run_gateway(config(up, "anthropic"), backend=backend) as gw:
        resp = gw.openai(KEY).chat.completions.create(model="m", messages=MESSAGES, tools=TOOLS)
    msg = resp.choices[0].message
    assert msg.content == "I'll check the weather and the time."
    assert [t.function.name for t in msg.tool_calls] == ["get_weather", "get_time"]
    assert json.loads(msg.tool_calls[0].function.arguments)["note"] == "café \"noir\""
    assert resp.choices[0].finish_reason == "tool_calls"
    assert resp.usage.prompt_tokens == 472 + 1200 + 3000
    assert resp.usage.prompt_tokens_details.cached_tokens == 3000
    assert resp.model == "m"


def test_anthropic_error_is_mapped(backend, up):
    up.replies.append(json_reply(json.loads((DATA / "anthropic/error_400.json").read_text()),
                                 status=400))
    with run_gateway(config(up, "anthropic"), backend=backend) as gw:
        with pytest.raises(openai.BadRequestError) as exc:
            gw.openai(KEY).chat.completions.create(model="m", messages=MESSAGES)
    assert exc.value.body["type"] == "invalid_request_error"


def test_gemini_stream(backend, up):
    up.replies.append(fixture_reply("gemini/stream_parallel_calls.sse", stream=True))
    with run_gateway(config(up, "gemini"), backend=backend) as gw:
        chunks = list(gw.openai(KEY).chat.completions.create(
            model="m", messages=MESSAGES, tools=TOOLS, stream=True,
            stream_options={"include_usage": True}))
    _, reasoning, calls, finish, usage = collect(chunks)
    assert reasoning.startswith("The user wants the weather")
    assert [json.loads(calls[i]["arguments"])["city"] for i in sorted(calls)] == [
        "Paris", "Tokyo"]
    assert len({calls[i]["id"] for i in calls}) == 2
    assert finish == "tool_calls"
    assert usage.prompt_tokens == 88 and usage.completion_tokens == 36 + 51
    sent = up.seen[0]
    assert sent.path == "/v1beta/models/vendor-model:streamGenerateContent?alt=sse"
    assert sent.headers["x-goog-api-key"] == "AIza-test"
    assert "key=" not in sent.path
    assert sent.json()["systemInstruction"]


def test_gemini_whole_body(backend, up):
    up.replies.append(fixture_reply("gemini/body_function_calls.json", stream=False))
    with run_gateway(config(up, "gemini"), backend=backend) as gw:
        resp = gw.openai(KEY).chat.completions.create(model="m", messages=MESSAGES, tools=TOOLS)
    msg = resp.choices[0].message
    assert msg.content == "Let me check."
    assert [t.function.name for t in msg.tool_calls] == ["get_weather", "get_time", "list_alerts"]
    assert json.loads(msg.tool_calls[1].function.arguments) == {"tz": "Asia/Tokyo"}
    assert resp.usage.prompt_tokens == 130
    assert up.seen[0].path == "/v1beta/models/vendor-model:generateContent"


def test_azure_url_header_and_filter_chunk(backend, up):
    events = [
        {"choices": [], "created": 0, "id": "", "model": "", "object": "",
         "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]},
        {"id": "chatcmpl-az", "object": "chat.completion.chunk", "created": 1,
         "model": "gpt-4o", "choices": [{"index": 0, "delta": {"role": "assistant",
                                                              "content": "Azure"},
                                         "finish_reason": None, "content_filter_results": {}}]},
        {"id": "chatcmpl-az", "object": "chat.completion.chunk", "created": 1,
         "model": "gpt-4o", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    up.replies.append(Reply(headers=[("content-type", "text/event-stream")],
                            pieces=[body, b"data: [DONE]\n\n"]))
    with run_gateway(config(up, "azure"), backend=backend) as gw:
        chunks = list(gw.openai(KEY).chat.completions.create(model="m", messages=MESSAGES,
                                                             stream=True))
    assert collect(chunks)[0] == "Azure"
    sent = up.seen[0]
    assert sent.path == "/openai/deployments/vendor-model/chat/completions?api-version=2024-10-21"
    assert sent.headers["api-key"] == "az-key" and "authorization" not in sent.headers


def test_anthropic_overloaded_right_after_start_is_retried(backend):
    """S-9 (docs/contracts.md): nothing has reached the client, so the next channel answers."""
    first, second = FakeUpstream(), FakeUpstream()
    start = {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "x", "content": [],
        "stop_reason": None, "usage": {"input_tokens": 5, "output_tokens": 1}}}
    overloaded = {"type": "error", "error": {"type": "overloaded_error",
                                             "message": "Overloaded"}}
    body = (b"event: message_start\ndata: " + json.dumps(start).encode() + b"\n\n"
            b"event: error\ndata: " + json.dumps(overloaded).encode() + b"\n\n")
    first.replies.append(Reply(headers=[("content-type", "text/event-stream")], pieces=[body]))
    second.replies.append(fixture_reply("anthropic/tools_stream.sse", stream=True))
    conf = f"""
providers:
  - {{provider: a1, base_url: "{first.url}/v1/messages", api: k1, model: [m]}}
  - {{provider: a2, base_url: "{second.url}/v1/messages", api: k2, model: [m]}}
api_keys:
  - api: {KEY}
"""
    try:
        with run_gateway(conf, backend=backend) as gw:
            chunks = list(gw.openai(KEY).chat.completions.create(
                model="m", messages=MESSAGES, stream=True))
        assert collect(chunks)[0] == "I'll check both for you."
        assert len(first.seen) == len(second.seen) == 1
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("kind,fixture,text", [
    ("cohere", "cohere/stream_text.sse", "Cohere streams événements in order."),
    ("cloudflare", "cloudflare/stream_text.sse", "Workers AI says hello!"),
])
def test_cohere_and_cloudflare_streams(backend, up, kind, fixture, text):
    up.replies.append(fixture_reply(fixture, stream=True))
    with run_gateway(config(up, kind), backend=backend) as gw:
        chunks = list(gw.openai(KEY).chat.completions.create(
            model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
    got, _, _, finish, usage = collect(chunks)
    assert got == text and finish == "stop" and usage.total_tokens > 0
    sent = up.seen[0]
    if kind == "cohere":
        assert sent.path == "/v2/chat" and sent.headers["authorization"] == "Bearer co-key"
    else:
        assert sent.path == "/client/v4/accounts/acct1/ai/run/vendor-model"
        assert sent.headers["authorization"] == "Bearer cf-key"


def test_bedrock_stream_signed_and_decoded(backend, up):
    body = (DATA / "bedrock/text_stream.bin").read_bytes()
    up.replies.append(Reply(headers=[("content-type", "application/vnd.amazon.eventstream")],
                            pieces=[body[i:i + 50] for i in range(0, len(body), 50)]))
    conf = f"""
providers:
  - provider: aws
    base_url: {up.url}
    engine: aws
    aws_access_key: AKIDEXAMPLE
    aws_secret_key: wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
    aws_region: us-east-1
    model:
      - anthropic.claude-3-5-sonnet-20240620-v1:0: m
api_keys:
  - api: {KEY}
"""
    with run_gateway(conf, backend=backend) as gw:
        chunks = list(gw.openai(KEY).chat.completions.create(model="m", messages=MESSAGES,
                                                             stream=True))
    assert collect(chunks)[0] == "¡Hola, mundo! 👋"
    sent = up.seen[0]
    assert sent.path == ("/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0"
                         "/invoke-with-response-stream")
    assert sent.headers["authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert sent.json()["anthropic_version"] == "bedrock-2023-05-31"


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


def test_remote_image_is_fetched_and_inlined_for_anthropic(backend, up):
    images = FakeUpstream()
    images.handler = lambda seen: (
        Reply(status=302, headers=[("location", "/real.png")], pieces=[], chunked=False)
        if seen.path == "/cat.png" else
        Reply(headers=[("content-type", "image/png")], pieces=[PNG], chunked=False))
    up.replies.append(fixture_reply("anthropic/message_tool_use.json", stream=False))
    messages = [{"role": "user", "content": [
        {"type": "text", "text": "what is it?"},
        {"type": "image_url", "image_url": {"url": f"{images.url}/cat.png"}}]}]
    try:
        with run_gateway(config(up, "anthropic"), backend=backend, fetch_allow_http=True,
                         fetch_allow_private=True) as gw:
            gw.openai(KEY).chat.completions.create(model="m", messages=messages)
        with run_gateway(config(up, "anthropic"), backend=backend) as gw:  # default policy
            with pytest.raises(openai.BadRequestError) as exc:
                gw.openai(KEY).chat.completions.create(model="m", messages=messages)
            assert exc.value.body["code"] == "image_fetch_failed"
    finally:
        images.close()
    assert [s.path for s in images.seen] == ["/cat.png", "/real.png"]
    block = up.seen[0].json()["messages"][0]["content"][1]
    assert block["source"]["media_type"] == "image/png"
    assert len(up.seen) == 1  # the refused request never reached the upstream


# -- issue 11: an upstream 529 is a 502 for the client (docs/contracts.md, Error status mapping)

OVERLOADED = (DATA / "anthropic/error_529.json").read_bytes()


def overloaded_reply() -> Reply:
    return Reply(status=529, headers=[("content-type", "application/json")],
                 pieces=[OVERLOADED], chunked=False)


def two_anthropic_channels(first: FakeUpstream, second: FakeUpstream) -> str:
    return f"""
providers:
  - {{provider: a1, base_url: "{first.url}/v1/messages", api: k1, model: [m]}}
  - {{provider: a2, base_url: "{second.url}/v1/messages", api: k2, model: [m]}}
api_keys:
  - api: {KEY}
"""


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_anthropic_529_reaches_the_client_as_502(backend, up, stream):
    up.replies.append(overloaded_reply())
    with run_gateway(config(up, "anthropic"), backend=backend) as gw:
        resp = httpx.post(gw.url + "/v1/chat/completions", timeout=15,
                          headers={"authorization": f"Bearer {KEY}"},
                          json={"model": "m", "messages": MESSAGES, "stream": stream})
    assert resp.status_code == 502
    assert resp.json()["error"] == {"message": "Overloaded", "type": "server_error",
                                    "param": None, "code": "overloaded_error"}
    assert len(up.seen) == 1  # one channel, one key: nothing else to try


def test_anthropic_529_tries_the_next_channel_first(backend):
    first, second = FakeUpstream(), FakeUpstream()
    first.replies.append(overloaded_reply())
    second.replies.append(fixture_reply("anthropic/message_tool_use.json", stream=False))
    try:
        with run_gateway(two_anthropic_channels(first, second), backend=backend) as gw:
            resp = gw.openai(KEY).chat.completions.create(model="m", messages=MESSAGES)
        assert resp.choices[0].message.content == "I'll check the weather and the time."
        assert len(first.seen) == len(second.seen) == 1
    finally:
        first.close()
        second.close()


def test_anthropic_529_on_every_channel_is_a_502_after_trying_them_all(backend):
    first, second = FakeUpstream(), FakeUpstream()
    first.replies.append(overloaded_reply())
    second.replies.append(overloaded_reply())
    try:
        with run_gateway(two_anthropic_channels(first, second), backend=backend) as gw:
            with pytest.raises(openai.InternalServerError) as exc:
                gw.openai(KEY).chat.completions.create(model="m", messages=MESSAGES)
        assert exc.value.status_code == 502
        assert exc.value.body["type"] == "server_error"
        assert exc.value.body["code"] == "overloaded_error"
        assert exc.value.body["message"] == "Overloaded"
        assert len(first.seen) == len(second.seen) == 1
    finally:
        first.close()
        second.close()
