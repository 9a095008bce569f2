"""The Anthropic Messages front (``POST /v1/messages``, ``/v1/messages/count_tokens``) end to
end, over real sockets on both backends, with the official ``anthropic`` SDK as the client, in
front of four fake upstreams (``tests/fakes/llm_vendors.py``): an OpenAI-compatible one and a
Gemini one (the request is translated to chat and back), an Anthropic one and a Bedrock one
(native passthrough: the client's body goes up as it came, the answer comes back byte for byte
but the model name). The suite's autouse validator (tests/conftest.py) holds every answer to
Anthropic's grammar, the failures' included.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.fakes import llm_vendors as fake
from tests.fakes.upstream import FakeUpstream
from tests.harness import RunningGateway, run_gateway

KEY = "sk-messages-e2e"
VENDORS = ["openai", "gemini", "anthropic", "bedrock"]
TRANSLATED = ["openai", "gemini"]
HANDLERS = {"openai": fake.openai_handler, "gemini": fake.gemini_handler,
            "anthropic": fake.anthropic_handler, "bedrock": fake.bedrock_handler}
BEDROCK_MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
USER = [{"role": "user", "content": "Hello?"}]
TOOLS = [{"name": "get_weather", "description": "The weather of a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]}}]
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(40))).decode()


def config(u: dict[str, FakeUpstream]) -> str:
    oai = u["openai"].url
    return f"""
providers:
  - provider: oai
    base_url: {oai}/v1/chat/completions
    api: sk-oai
    model: [gpt]
  - provider: gem
    engine: gemini
    base_url: {u["gemini"].url}/v1beta
    api: AIza-test
    model:
      - gemini-2.5-flash: gem
  - provider: ant
    engine: claude
    base_url: {u["anthropic"].url}/v1/messages
    api: sk-ant-up
    model:
      - {fake.ANTHROPIC_MODEL}: claude
  - provider: bdr
    engine: aws
    base_url: {u["bedrock"].url}
    aws_access_key: AKIDEXAMPLE
    aws_secret_key: wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
    aws_region: us-east-1
    model:
      - {BEDROCK_MODEL}: bedrock
  - {{provider: fail500, base_url: "{oai}/e500/v1/chat/completions", api: k5, model: [fail500]}}
  - {{provider: fail429, base_url: "{oai}/e429/v1/chat/completions", api: k4, model: [fail429]}}
  - {{provider: cut, base_url: "{oai}/cut/v1/chat/completions", api: kc, model: [cut]}}
  - {{provider: r1, base_url: "{oai}/e500/v1/chat/completions", api: kr1, model: [retry]}}
  - {{provider: r2, base_url: "{oai}/v1/chat/completions", api: kr2, model: [retry]}}
api_keys:
  - api: {KEY}
"""


class World:
    """A gateway in front of the four fakes; ``sdk`` an ``anthropic.Anthropic`` client of it."""

    def __init__(self, gw: RunningGateway, ups: dict[str, FakeUpstream]) -> None:
        self.gw, self.ups = gw, ups
        self.sdk = anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0, timeout=10)

    def seen(self, vendor: str) -> list[Any]:
        return self.ups[vendor].seen

    def sent(self, vendor: str, i: int = -1) -> dict[str, Any]:
        return self.ups[vendor].seen[i].json()

    def post(self, body: dict[str, Any], path: str = "/v1/messages",
             headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(self.gw.url + path, content=json.dumps(body).encode(), timeout=10,
                          headers={"content-type": "application/json", "x-api-key": KEY,
                                   "anthropic-version": "2023-06-01"} if headers is None
                          else headers)


@pytest.fixture
def world(backend: str) -> Iterator[World]:
    ups = {name: FakeUpstream(handler=h) for name, h in HANDLERS.items()}
    try:
        with run_gateway(config(ups), backend=backend) as gw:
            yield World(gw, ups)
    finally:
        for u in ups.values():
            u.close()


MODEL = {"openai": "gpt", "gemini": "gem", "anthropic": "claude", "bedrock": "bedrock"}


def text_of(message: Any) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


def sse_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        out.append((lines["event"], json.loads(lines["data"])))
    return out


# -- text, streamed and not ------------------------------------------------------------------

@pytest.mark.parametrize("vendor", VENDORS)
def test_create_returns_the_text(world, vendor, chat_stream_validator):
    msg = world.sdk.messages.create(model=MODEL[vendor], max_tokens=100, messages=USER)
    assert chat_stream_validator.bodies == 1  # the validator read the answer
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.model == MODEL[vendor]
    assert text_of(msg) == fake.TEXT and msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    [seen] = world.seen(vendor)
    if vendor == "openai":
        assert seen.json()["messages"] == [{"role": "user", "content": "Hello?"}]
        assert not seen.json().get("stream")
    elif vendor == "gemini":
        assert seen.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    elif vendor == "anthropic":
        assert seen.json() == {"max_tokens": 100, "messages": USER,
                               "model": fake.ANTHROPIC_MODEL}
    else:
        assert seen.path.endswith("/invoke")
        assert seen.json() == {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100,
                               "messages": USER}


@pytest.mark.parametrize("vendor", VENDORS)
def test_stream_gives_events_and_the_final_message(world, vendor, chat_stream_validator):
    with world.sdk.messages.stream(model=MODEL[vendor], max_tokens=100, messages=USER) as s:
        types = [e.type for e in s]
        final = s.get_final_message()
    assert chat_stream_validator.streams == 1
    assert types[0] == "message_start" and types[-1] == "message_stop"
    assert "content_block_start" in types and "message_delta" in types
    assert text_of(final) == fake.TEXT and final.stop_reason == "end_turn"
    assert final.model == MODEL[vendor]
    seen = world.seen(vendor)[0]
    if vendor == "gemini":
        assert seen.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    elif vendor == "bedrock":
        assert seen.path.endswith("/invoke-with-response-stream")
    else:
        assert seen.json()["stream"] is True


# -- a tools turn ----------------------------------------------------------------------------

QUESTION = {"role": "user", "content": "Weather in Paris?"}


def native_body(vendor: str, client: dict[str, Any]) -> dict[str, Any]:
    """What a native upstream is sent for the client's ``client`` body (no stream)."""
    if vendor == "anthropic":
        return dict(client, model=fake.ANTHROPIC_MODEL)
    return {"anthropic_version": "bedrock-2023-05-31",
            **{k: v for k, v in client.items() if k not in ("model", "stream")}}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("vendor", VENDORS)
def test_tools_turn(world, vendor, stream):
    ask = {"model": MODEL[vendor], "max_tokens": 200, "tools": TOOLS, "messages": [QUESTION]}
    if stream:
        with world.sdk.messages.stream(**ask) as s:
            first = s.get_final_message()
    else:
        first = world.sdk.messages.create(**ask)
    assert first.stop_reason == "tool_use"
    [call] = [b for b in first.content if b.type == "tool_use"]
    assert call.name == "get_weather" and call.input == fake.ARGS
    assert isinstance(call.id, str) and call.id
    if vendor in ("anthropic", "bedrock"):
        assert call.id == "toolu_fake01"

    history = [QUESTION,
               {"role": "assistant", "content": [c.model_dump(exclude_none=True)
                                                 for c in first.content]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                             "content": "21 °C, sunny"}]}]
    second = world.sdk.messages.create(model=MODEL[vendor], max_tokens=200, tools=TOOLS,
                                       messages=history)
    assert text_of(second) == fake.TOOL_TEXT and second.stop_reason == "end_turn"

    sent = world.sent(vendor)
    if vendor == "openai":
        assert sent["tools"][0]["function"]["name"] == "get_weather"
        assert sent["tools"][0]["function"]["parameters"] == TOOLS[0]["input_schema"]
        assistant = sent["messages"][1]
        assert assistant["role"] == "assistant"
        [tc] = assistant["tool_calls"]
        assert tc["id"] == call.id and tc["function"]["name"] == "get_weather"
        assert json.loads(tc["function"]["arguments"]) == fake.ARGS
        assert sent["messages"][2] == {"role": "tool", "tool_call_id": call.id,
                                       "content": "21 °C, sunny"}
    elif vendor == "gemini":
        assert sent["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
        assert sent["contents"][1]["role"] == "model"
        assert sent["contents"][1]["parts"][0]["functionCall"] == {"name": "get_weather",
                                                                   "args": fake.ARGS}
        [part] = sent["contents"][2]["parts"]
        assert sent["contents"][2]["role"] == "user"
        assert part["functionResponse"]["name"] == "get_weather"
        assert "21 °C, sunny" in json.dumps(part["functionResponse"]["response"],
                                            ensure_ascii=False)
    else:
        client = {"model": MODEL[vendor], "max_tokens": 200, "tools": TOOLS, "messages": history}
        assert sent == native_body(vendor, client)


# -- images and thinking ---------------------------------------------------------------------

IMAGE_TURN = [{"role": "user", "content": [
    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
    {"type": "text", "text": "What is it?"}]}]


@pytest.mark.parametrize("vendor", VENDORS)
def test_an_image_reaches_the_upstream_in_its_shape(world, vendor):
    msg = world.sdk.messages.create(model=MODEL[vendor], max_tokens=50, messages=IMAGE_TURN)
    assert text_of(msg) == fake.TEXT
    sent = world.sent(vendor)
    if vendor == "openai":
        assert sent["messages"] == [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}},
            {"type": "text", "text": "What is it?"}]}]
    elif vendor == "gemini":
        assert sent["contents"] == [{"role": "user", "parts": [
            {"inlineData": {"mimeType": "image/png", "data": PNG}}, {"text": "What is it?"}]}]
    else:
        assert sent == native_body(vendor, {"model": MODEL[vendor], "max_tokens": 50,
                                            "messages": IMAGE_TURN})


THINKING = {"type": "enabled", "budget_tokens": 2048}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("vendor", VENDORS)
def test_thinking_is_asked_for_and_comes_back_as_a_thinking_block(world, vendor, stream):
    ask = {"model": MODEL[vendor], "max_tokens": 4096, "thinking": THINKING, "messages": USER}
    if stream:
        with world.sdk.messages.stream(**ask) as s:
            kinds = [(e.type, getattr(getattr(e, "delta", None), "type", None)) for e in s]
            msg = s.get_final_message()
        native = vendor in ("anthropic", "bedrock")
        assert ("content_block_delta", "thinking_delta") in kinds
        assert (("content_block_delta", "signature_delta") in kinds) is native
    else:
        msg = world.sdk.messages.create(**ask)
    assert [b.type for b in msg.content] == ["thinking", "text"]
    assert msg.content[0].thinking == fake.THOUGHT and msg.content[1].text == fake.ANSWER
    sent = world.sent(vendor)
    if vendor == "openai":
        assert sent["reasoning_effort"] == "low"
        assert msg.content[0].signature == ""
    elif vendor == "gemini":
        assert sent["generationConfig"]["thinkingConfig"] == {"includeThoughts": True,
                                                              "thinkingBudget": 1024}
        assert msg.content[0].signature == ""
    else:
        assert sent["thinking"] == THINKING
        assert msg.content[0].signature == fake.SIGNATURE


# -- native passthrough, byte for byte -------------------------------------------------------

PASSTHROUGH = {
    "model": "claude",
    "max_tokens": 4096,
    "system": [{"type": "text", "text": "You are terse.",
                "cache_control": {"type": "ephemeral"}}],
    "thinking": {"type": "enabled", "budget_tokens": 2048},
    "messages": [
        {"role": "user", "content": "What is 6 × 7?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "6 × 7 = 42.", "signature": "EqQBSIG+/prev=="},
            {"type": "text", "text": "42"}]},
        {"role": "user", "content": [{"type": "text", "text": "Sure?",
                                      "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}],
    "stream": True,
    "metadata": {"user_id": "u-1"},
}


def expected_stream(body: dict[str, Any]) -> bytes:
    """The fake's own SSE bytes for ``body``, the model name aside."""
    events = fake.anthropic_events(body, fake.ANTHROPIC_MODEL)
    events[0]["message"]["model"] = "claude"
    return b"".join(fake.anthropic_sse(events))


def test_anthropic_passthrough_is_byte_for_byte(world):
    with httpx.stream("POST", world.gw.url + "/v1/messages", timeout=10,
                      content=json.dumps(PASSTHROUGH, indent=1).encode(),
                      headers={"x-api-key": KEY, "anthropic-version": "2023-06-01",
                               "anthropic-beta": "interleaved-thinking-2025-05-14",
                               "content-type": "application/json"}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read()
    assert raw == expected_stream(PASSTHROUGH)
    assert b"signature_delta" in raw and b"event: ping" in raw
    [seen] = world.seen("anthropic")
    assert seen.path == "/v1/messages"
    assert seen.body == fake.compact(dict(PASSTHROUGH, model=fake.ANTHROPIC_MODEL))
    assert seen.headers["x-api-key"] == "sk-ant-up"
    assert seen.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"


def test_anthropic_passthrough_whole_answer_with_the_sdk(world):
    body = {k: v for k, v in PASSTHROUGH.items() if k != "stream"}
    raw = world.sdk.messages.with_raw_response.create(**body)
    got = raw.http_response.read()
    want = json.dumps(fake.anthropic_message(body, fake.ANTHROPIC_MODEL)).encode()  # json_reply
    assert got == want.replace(f'"model": "{fake.ANTHROPIC_MODEL}"'.encode(), b'"model": "claude"')
    assert raw.parse().content[0].signature == fake.SIGNATURE
    # the SDK orders the keys its own way: the byte-for-byte request is the raw test's
    assert world.sent("anthropic") == dict(body, model=fake.ANTHROPIC_MODEL)


def test_bedrock_event_stream_is_reframed_as_sse(world):
    body = dict(PASSTHROUGH, model="bedrock")
    with httpx.stream("POST", world.gw.url + "/v1/messages", timeout=10,
                      content=json.dumps(body).encode(),
                      headers={"x-api-key": KEY, "content-type": "application/json"}) as r:
        raw = r.read()
    events = fake.anthropic_events(body, fake.ANTHROPIC_MODEL)
    events[0]["message"]["model"] = "bedrock"
    events[-1]["amazon-bedrock-invocationMetrics"] = {
        "inputTokenCount": 21, "outputTokenCount": 9, "invocationLatency": 120,
        "firstByteLatency": 40}
    assert raw == b"".join(fake.anthropic_sse(events))
    [seen] = world.seen("bedrock")
    assert seen.path == "/model/" + BEDROCK_MODEL.replace(":", "%3A") \
        + "/invoke-with-response-stream"
    assert seen.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    with world.sdk.messages.stream(model="bedrock", max_tokens=100, messages=USER) as s:
        assert "".join(s.text_stream) == fake.TEXT


# -- failures --------------------------------------------------------------------------------

def error_of(exc: anthropic.APIStatusError) -> dict[str, Any]:
    body = exc.body
    assert isinstance(body, dict) and body["type"] == "error", body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def create_or_stream(sdk: anthropic.Anthropic, stream: bool, **ask: Any) -> Any:
    if not stream:
        return sdk.messages.create(**ask)
    with sdk.messages.stream(**ask) as s:
        return s.get_final_message()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_upstream_500_is_an_anthropic_api_error(world, stream):
    with pytest.raises(anthropic.InternalServerError) as exc:
        create_or_stream(world.sdk, stream, model="fail500", max_tokens=10, messages=USER)
    assert error_of(exc.value)["type"] == "api_error"
    assert exc.value.status_code >= 500
    assert all(s.path == "/e500/v1/chat/completions" for s in world.seen("openai"))


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_upstream_429_is_a_rate_limit_error(world, stream):
    with pytest.raises(anthropic.RateLimitError) as exc:
        create_or_stream(world.sdk, stream, model="fail429", max_tokens=10, messages=USER)
    assert error_of(exc.value)["type"] == "rate_limit_error"


CUT_BODY = {"model": "cut", "max_tokens": 10, "stream": True, "messages": USER}


@pytest.mark.parametrize("vendor", ["openai", "anthropic"])
def test_a_stream_cut_mid_answer_ends_with_an_error_event(world, vendor, chat_stream_validator):
    body = CUT_BODY if vendor == "openai" else dict(
        CUT_BODY, model="claude", messages=[{"role": "user", "content": "cut here"}])
    raw = world.post(body).content
    events = sse_events(raw)
    names = [name for name, _ in events]
    assert names[0] == "message_start" and "content_block_delta" in names
    assert names[-1] == "error" and "message_stop" not in names
    assert events[-1][1]["type"] == "error"
    assert events[-1][1]["error"]["type"] == "api_error"
    texts: list[str] = []
    ask = {k: v for k, v in body.items() if k != "stream"}
    with pytest.raises(anthropic.APIStatusError) as exc, world.sdk.messages.stream(**ask) as s:
        texts.extend(s.text_stream)
    assert error_of(exc.value)["type"] == "api_error"
    assert "".join(texts) == ("Hello there" if vendor == "openai" else "Hello")
    assert chat_stream_validator.streams == 2  # both were held to the grammar


def test_unknown_model_is_not_found(world):
    with pytest.raises(anthropic.NotFoundError) as exc:
        world.sdk.messages.create(model="no-such-model", max_tokens=10, messages=USER)
    assert error_of(exc.value)["type"] == "not_found_error"
    assert "no-such-model" in exc.value.body["error"]["message"]
    assert all(not u.seen for u in world.ups.values())


@pytest.mark.parametrize("body, field", [
    ({"model": "gpt", "messages": USER}, "max_tokens"),
    ({"model": "gpt", "max_tokens": 10, "messages": [{"role": "robot", "content": "x"}]},
     "messages[0].role"),
])
def test_a_bad_body_is_an_invalid_request_error_naming_the_field(world, body, field):
    r = world.post(body)
    assert r.status_code == 400
    err = r.json()
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    assert field in err["error"]["message"]
    assert not world.seen("openai")


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "sk-wrong"}], ids=["none", "wrong"])
def test_a_missing_or_wrong_key_is_an_authentication_error(world, headers):
    r = world.post({"model": "gpt", "max_tokens": 10, "messages": USER},
                   headers={"content-type": "application/json", **headers})
    assert r.status_code == 401
    assert r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=world.gw.url, api_key="sk-wrong", max_retries=0
                            ).messages.create(model="gpt", max_tokens=10, messages=USER)


def test_x_api_key_and_bearer_both_authenticate(world):
    body = {"model": "gpt", "max_tokens": 10, "messages": USER}
    for auth in ({"x-api-key": KEY}, {"authorization": f"Bearer {KEY}"}):
        r = world.post(body, headers={"content-type": "application/json", **auth})
        assert r.status_code == 200 and r.json()["content"][0]["text"] == fake.TEXT
    r = world.post(body, headers={"content-type": "application/json",
                                  "authorization": "Bearer sk-wrong"})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    # this SDK (2.x) sends its api_key as a bearer token; auth_token is the same header
    for sdk in (world.sdk, anthropic.Anthropic(base_url=world.gw.url, auth_token=KEY,
                                               api_key=None, max_retries=0)):
        raw = sdk.messages.with_raw_response.create(**body)
        assert raw.http_request.headers["authorization"] == f"Bearer {KEY}"
        assert text_of(raw.parse()) == fake.TEXT


# -- count_tokens ----------------------------------------------------------------------------

def test_count_tokens_is_asked_of_an_anthropic_channel(world):
    raw = world.sdk.messages.with_raw_response.count_tokens(
        model="claude", system="Be brief.", messages=USER, tools=TOOLS)
    assert raw.parse().input_tokens == 37
    assert "x-uniapi-token-count" not in raw.http_response.headers
    [seen] = world.seen("anthropic")
    assert seen.method == "POST" and seen.path == "/v1/messages/count_tokens"
    assert seen.json() == {"model": fake.ANTHROPIC_MODEL, "system": "Be brief.",
                           "messages": USER, "tools": TOOLS}


def test_count_tokens_is_estimated_for_other_channels(world):
    raw = world.sdk.messages.with_raw_response.count_tokens(
        model="gpt", system="Be brief.", messages=USER)
    assert raw.http_response.headers["x-uniapi-token-count"] == "estimated"
    assert raw.parse().input_tokens > 0
    assert not world.seen("openai")
    with pytest.raises(anthropic.NotFoundError) as exc:
        world.sdk.messages.count_tokens(model="no-such-model", messages=USER)
    assert error_of(exc.value)["type"] == "not_found_error"


# -- retries and HTTP/2 ----------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_500_from_the_first_channel_is_retried_on_the_second(world, stream):
    msg = create_or_stream(world.sdk, stream, model="retry", max_tokens=10, messages=USER)
    assert text_of(msg) == fake.TEXT and msg.model == "retry"
    assert [s.path for s in world.seen("openai")] == ["/e500/v1/chat/completions",
                                                      "/v1/chat/completions"]


def test_over_http2(world):
    with anthropic.DefaultHttpxClient(http1=False, http2=True, timeout=10) as http:
        sdk = anthropic.Anthropic(base_url=world.gw.url, api_key=KEY, max_retries=0,
                                  http_client=http)
        raw = sdk.messages.with_raw_response.create(model="gpt", max_tokens=10, messages=USER)
        assert raw.http_response.http_version == "HTTP/2"
        assert text_of(raw.parse()) == fake.TEXT
        with sdk.messages.stream(model="claude", max_tokens=10, messages=USER) as s:
            assert "".join(s.text_stream) == fake.TEXT
            assert s.response.http_version == "HTTP/2"
        with pytest.raises(anthropic.NotFoundError):
            sdk.messages.create(model="no-such-model", max_tokens=10, messages=USER)
