"""The OpenAI Responses front (``POST /v1/responses``) end to end, over real sockets on both
backends, with the official ``openai`` SDK as the client, in front of four fake upstreams
(``tests/fakes/llm_vendors.py``): an OpenAI-compatible one, a Gemini one and an Anthropic one
(the request is translated to chat, then by each vendor's translator, and the answer back), and
a Responses one (a provider whose ``base_url`` ends in ``/responses``: native passthrough, the
client's body goes up as it came, the answer comes back byte for byte but the model name). The
suite's autouse validator (tests/conftest.py) holds every answer to the Responses grammar and
every whole answer to the SDK's ``Response`` model, the failures' included.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.fakes import llm_vendors as fake
from tests.fakes.upstream import FakeUpstream
from tests.harness import RunningGateway, run_gateway

KEY = "sk-responses-e2e"
VENDORS = ["openai", "gemini", "anthropic", "native"]
HANDLERS = {"openai": fake.openai_handler, "gemini": fake.gemini_handler,
            "anthropic": fake.anthropic_handler, "native": fake.responses_handler}
MODEL = {"openai": "gpt", "gemini": "gem", "anthropic": "claude", "native": "native"}
TOOLS = [{"type": "function", "name": "get_weather", "description": "The weather of a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                         "required": ["city"]}, "strict": False}]


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
  - provider: rsp
    base_url: {u["native"].url}/v1/responses
    api: sk-native-up
    model:
      - {fake.RESPONSES_MODEL}: native
  - {{provider: fail500, base_url: "{oai}/e500/v1/chat/completions", api: k5, model: [fail500]}}
  - {{provider: fail429, base_url: "{oai}/e429/v1/chat/completions", api: k4, model: [fail429]}}
  - {{provider: cut, base_url: "{oai}/cut/v1/chat/completions", api: kc, model: [cut]}}
  - {{provider: r1, base_url: "{oai}/e500/v1/chat/completions", api: kr1, model: [retry]}}
  - {{provider: r2, base_url: "{oai}/v1/chat/completions", api: kr2, model: [retry]}}
api_keys:
  - api: {KEY}
"""


class World:
    """A gateway in front of the four fakes; ``sdk`` an ``openai.OpenAI`` client of it."""

    def __init__(self, gw: RunningGateway, ups: dict[str, FakeUpstream]) -> None:
        self.gw, self.ups = gw, ups
        self.sdk = gw.openai(KEY, timeout=10)

    def seen(self, vendor: str) -> list[Any]:
        return self.ups[vendor].seen

    def sent(self, vendor: str, i: int = -1) -> dict[str, Any]:
        return self.ups[vendor].seen[i].json()

    def post(self, body: dict[str, Any], key: str = KEY) -> httpx.Response:
        return httpx.post(self.gw.url + "/v1/responses", content=json.dumps(body).encode(),
                          timeout=10, headers={"content-type": "application/json",
                                               "authorization": f"Bearer {key}"})


@pytest.fixture
def world(backend: str) -> Iterator[World]:
    ups = {name: FakeUpstream(handler=h) for name, h in HANDLERS.items()}
    try:
        with run_gateway(config(ups), backend=backend) as gw:
            yield World(gw, ups)
    finally:
        for u in ups.values():
            u.close()


def sse_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in raw.decode().split("\n\n"):
        if block.strip():
            lines = dict(line.split(": ", 1) for line in block.split("\n"))
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def create_or_stream(sdk: openai.OpenAI, stream: bool, **ask: Any) -> Any:
    """The final ``Response``: from ``responses.create`` or the ``responses.stream`` helper."""
    if not stream:
        return sdk.responses.create(**ask)
    with sdk.responses.stream(**ask) as s:
        for _ in s:
            pass
        return s.get_final_response()


# -- text, whole and streamed ----------------------------------------------------------------

@pytest.mark.parametrize("vendor", VENDORS)
def test_create_returns_the_text(world, vendor, chat_stream_validator):
    r = world.sdk.responses.create(model=MODEL[vendor], input="Hello?")
    assert chat_stream_validator.bodies == 1  # the validator read the answer
    assert r.object == "response" and r.status == "completed" and r.model == MODEL[vendor]
    assert r.output_text == fake.TEXT
    assert [i.type for i in r.output] == ["message"] and r.output[0].role == "assistant"
    assert r.usage is not None and r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    [seen] = world.seen(vendor)
    sent = seen.json()
    if vendor == "openai":
        assert sent["messages"] == [{"role": "user", "content": "Hello?"}]
        assert sent["model"] == "gpt" and not sent.get("stream")
    elif vendor == "gemini":
        assert seen.path == "/v1beta/models/gemini-2.5-flash:generateContent"
        assert sent["contents"] == [{"role": "user", "parts": [{"text": "Hello?"}]}]
    elif vendor == "anthropic":
        assert seen.path == "/v1/messages" and seen.headers["x-api-key"] == "sk-ant-up"
        assert sent["model"] == fake.ANTHROPIC_MODEL
        assert sent["messages"] == [{"role": "user",
                                     "content": [{"type": "text", "text": "Hello?"}]}]
    else:
        assert seen.path == "/v1/responses"
        assert seen.headers["authorization"] == "Bearer sk-native-up"
        assert sent == {"input": "Hello?", "model": fake.RESPONSES_MODEL}


@pytest.mark.parametrize("vendor", VENDORS)
def test_create_stream_gives_the_event_stream(world, vendor, chat_stream_validator):
    events = list(world.sdk.responses.create(model=MODEL[vendor], input="Hello?", stream=True))
    assert chat_stream_validator.streams == 1
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == fake.TEXT and len(deltas) >= 1
    final = events[-1].response
    assert final.output_text == fake.TEXT and final.model == MODEL[vendor]
    assert final.usage is not None
    if vendor != "openai":  # the OpenAI fake sends no usage chunk
        assert final.usage.output_tokens > 0
    seen = world.seen(vendor)[0]
    if vendor == "gemini":
        assert seen.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    else:
        assert seen.json()["stream"] is True


@pytest.mark.parametrize("vendor", VENDORS)
def test_the_stream_helper_gives_text_deltas_and_the_final_response(world, vendor):
    with world.sdk.responses.stream(model=MODEL[vendor], input="Hello?",
                                    instructions="Be brief.") as s:
        text = "".join(e.delta for e in s if e.type == "response.output_text.delta")
        final = s.get_final_response()
    assert text == fake.TEXT and final.output_text == fake.TEXT
    assert final.status == "completed" and final.instructions == "Be brief."
    sent = world.sent(vendor)
    if vendor == "openai":
        assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    elif vendor == "anthropic":
        assert "Be brief." in json.dumps(sent["system"])
    elif vendor == "native":
        assert sent["instructions"] == "Be brief." and sent["stream"] is True


# -- a function-tool round trip --------------------------------------------------------------

QUESTION = {"role": "user", "content": "Weather in Paris?"}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("vendor", VENDORS)
def test_function_tool_round_trip(world, vendor, stream):
    first = create_or_stream(world.sdk, stream, model=MODEL[vendor], tools=TOOLS,
                             input=[QUESTION])
    [call] = [i for i in first.output if i.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == fake.ARGS
    assert isinstance(call.call_id, str) and call.call_id
    if vendor == "anthropic":
        assert call.call_id == "toolu_fake01"
    elif vendor in ("openai", "native"):
        assert call.call_id == ("call_W1" if vendor == "openai" else "call_fake01")
    sent = world.sent(vendor)
    if vendor == "openai":
        assert sent["tools"] == [{"type": "function", "function": {
            "name": "get_weather", "description": "The weather of a city",
            "parameters": TOOLS[0]["parameters"], "strict": False}}]
    elif vendor == "gemini":
        assert sent["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    elif vendor == "anthropic":
        assert sent["tools"][0]["name"] == "get_weather"
        assert sent["tools"][0]["input_schema"] == TOOLS[0]["parameters"]

    history = [QUESTION, call.model_dump(exclude_none=True),
               {"type": "function_call_output", "call_id": call.call_id,
                "output": "21 °C, sunny"}]
    second = create_or_stream(world.sdk, stream, model=MODEL[vendor], tools=TOOLS,
                              input=history)
    assert second.output_text == fake.TOOL_TEXT and second.status == "completed"
    assert [i.type for i in second.output] == ["message"]

    sent = world.sent(vendor)
    if vendor == "openai":
        assistant, result = sent["messages"][1:]
        [tc] = assistant["tool_calls"]
        assert assistant["role"] == "assistant" and tc["id"] == call.call_id
        assert tc["function"] == {"name": "get_weather", "arguments": call.arguments}
        assert result == {"role": "tool", "tool_call_id": call.call_id,
                          "content": "21 °C, sunny"}
    elif vendor == "gemini":
        assert sent["contents"][1]["role"] == "model"
        assert sent["contents"][1]["parts"][0]["functionCall"] == {"name": "get_weather",
                                                                   "args": fake.ARGS}
        [part] = sent["contents"][2]["parts"]
        assert part["functionResponse"]["name"] == "get_weather"
        assert "21 °C, sunny" in json.dumps(part["functionResponse"]["response"],
                                            ensure_ascii=False)
    elif vendor == "anthropic":
        assistant, result = sent["messages"][1:]
        assert assistant["role"] == "assistant"
        assert assistant["content"][-1] == {"type": "tool_use", "id": call.call_id,
                                            "name": "get_weather", "input": fake.ARGS}
        [block] = result["content"]
        assert result["role"] == "user" and block["type"] == "tool_result"
        assert block["tool_use_id"] == call.call_id
        assert "21 °C, sunny" in json.dumps(block["content"], ensure_ascii=False)
    else:  # the client's items, as they were sent
        assert sent["input"] == history and sent["tools"] == TOOLS
        assert sent["model"] == fake.RESPONSES_MODEL


# -- structured output and reasoning ---------------------------------------------------------

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"},
                                           "celsius": {"type": "integer"}},
          "required": ["city", "celsius"], "additionalProperties": False}
JSON_FORMAT = {"format": {"type": "json_schema", "name": "weather", "schema": SCHEMA,
                          "strict": True}}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_json_schema_text_format_is_a_response_format(world, stream):
    r = create_or_stream(world.sdk, stream, model="gpt", input="Weather as JSON", text=JSON_FORMAT)
    assert json.loads(r.output_text) == fake.JSON_ANSWER
    assert r.text.format.type == "json_schema" and r.text.format.name == "weather"
    assert world.sent("openai")["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "weather", "schema": SCHEMA,
                                               "strict": True}}


REASONING = {"effort": "low", "summary": "auto"}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("vendor", VENDORS)
def test_reasoning_is_asked_for_and_comes_back_as_a_reasoning_item(world, vendor, stream):
    ask = {"model": MODEL[vendor], "input": "6 × 7?", "reasoning": REASONING}
    if stream:
        with world.sdk.responses.stream(**ask) as s:
            events = list(s)
            r = s.get_final_response()
        types = [e.type for e in events]
        assert "response.reasoning_summary_part.added" in types
        summary = "".join(e.delta for e in events
                          if e.type == "response.reasoning_summary_text.delta")
        assert summary == fake.THOUGHT
        assert types.index("response.reasoning_summary_text.done") < types.index(
            "response.output_text.delta")
    else:
        r = world.sdk.responses.create(**ask)
    assert [i.type for i in r.output] == ["reasoning", "message"]
    reasoning = r.output[0]
    assert [p.text for p in reasoning.summary] == [fake.THOUGHT]
    assert r.output_text == fake.ANSWER
    assert r.reasoning is not None and r.reasoning.effort == "low"
    sent = world.sent(vendor)
    if vendor == "openai":
        assert sent["reasoning_effort"] == "low" and "reasoning" not in sent
    elif vendor == "gemini":
        assert sent["generationConfig"]["thinkingConfig"]["includeThoughts"] is True
    elif vendor == "anthropic":
        assert sent["thinking"]["type"] == "enabled"
    else:  # what chat cannot carry comes back as it was
        assert sent["reasoning"] == REASONING
        assert reasoning.encrypted_content == fake.ENCRYPTED
    if vendor != "native":
        assert reasoning.encrypted_content is None


# -- native passthrough, byte for byte -------------------------------------------------------

PASSTHROUGH = {
    "model": "native",
    "instructions": "You are a coding agent.\u2028Be terse.",
    "input": [
        {"type": "message", "role": "user",
         "content": [{"type": "input_text", "text": "List the files."}]},
        {"type": "reasoning", "id": "rs_prev", "summary": [],
         "encrypted_content": "gAAAAABprevious=="},
        {"type": "function_call", "id": "fc_prev", "call_id": "call_prev", "name": "shell",
         "arguments": "{\"command\":[\"ls\"]}"},
        {"type": "function_call_output", "call_id": "call_prev", "output": "a.txt\nb.txt"}],
    "tools": [{"type": "web_search"},
              {"type": "custom", "name": "apply_patch", "format": {"type": "text"}}],
    "reasoning": {"effort": "high", "summary": "auto"},
    "include": ["reasoning.encrypted_content"],
    "store": False,
    "prompt_cache_key": "thread-1",
    "a_field_from_the_future": {"x": 1},
    "stream": True,
}


def test_native_stream_is_passed_through_byte_for_byte(world, chat_stream_validator):
    body = json.dumps(PASSTHROUGH, indent=1).encode()
    with httpx.stream("POST", world.gw.url + "/v1/responses", content=body, timeout=10,
                      headers={"authorization": f"Bearer {KEY}",
                               "content-type": "application/json"}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read()
    upstream = dict(PASSTHROUGH, model=fake.RESPONSES_MODEL)
    events = fake.responses_events(upstream, fake.RESPONSES_MODEL)
    for e in events:
        if "response" in e:
            e["response"]["model"] = "native"
    want = b"".join(fake.responses_sse(events)).replace(b"\xe2\x80\xa8", b"\\u2028")
    assert raw == want
    assert chat_stream_validator.streams == 1
    [seen] = world.seen("native")
    # the items and tools chat cannot hold went up as they were, model replaced in place
    assert seen.body == fake.compact(upstream).replace(b"\xe2\x80\xa8", b"\\u2028")


def test_native_whole_answer_is_passed_through_byte_for_byte(world):
    ask = {k: v for k, v in PASSTHROUGH.items() if k not in ("stream", "a_field_from_the_future")}
    raw = world.sdk.responses.with_raw_response.create(
        **ask, extra_body={"a_field_from_the_future": {"x": 1}})
    ask["a_field_from_the_future"] = {"x": 1}
    got = raw.http_response.read()
    want = json.dumps(fake.responses_object(ask, fake.RESPONSES_MODEL)).encode()  # json_reply
    assert got == want.replace(f'"model": "{fake.RESPONSES_MODEL}"'.encode(), b'"model": "native"')
    assert raw.parse().output_text == fake.TOOL_TEXT  # the history ends with a tool output
    assert world.sent("native") == dict(ask, model=fake.RESPONSES_MODEL)


CUSTOM_TOOL_TURN = [{"type": "custom_tool_call", "call_id": "ct_1", "name": "apply_patch",
                     "input": "*** Begin Patch"},
                    {"type": "custom_tool_call_output", "call_id": "ct_1", "output": "done"}]


def test_the_translated_path_refuses_an_item_chat_cannot_hold(world):
    body = dict(PASSTHROUGH, model="gpt", stream=False,
                input=PASSTHROUGH["input"] + CUSTOM_TOOL_TURN)
    r = world.post(body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and "input[4].type" in err["message"]
    assert not world.seen("native") and not world.seen("openai")


@pytest.mark.xfail(strict=True, reason="Gateway._responses translates every body to chat "
                   "before routing, so an item chat cannot hold is a 400 even when the "
                   "channel speaks Responses (Codex's apply_patch custom_tool_call history "
                   "against a native OpenAI channel)")
def test_a_native_channel_gets_items_chat_cannot_hold(world):
    body = dict(PASSTHROUGH, stream=False, input=PASSTHROUGH["input"] + CUSTOM_TOOL_TURN)
    r = world.post(body)
    assert r.status_code == 200, r.text
    assert world.sent("native")["input"] == body["input"]


# -- failures --------------------------------------------------------------------------------

def error_of(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.body
    assert isinstance(body, dict), body  # the SDK hands over the "error" object
    assert isinstance(body["message"], str) and body["message"] and "type" in body
    return body


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_upstream_500_is_an_internal_server_error(world, stream):
    with pytest.raises(openai.InternalServerError) as exc:
        create_or_stream(world.sdk, stream, model="fail500", input="Hello?")
    assert exc.value.status_code >= 500
    error_of(exc.value)
    assert all(s.path == "/e500/v1/chat/completions" for s in world.seen("openai"))


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_upstream_429_is_a_rate_limit_error(world, stream):
    with pytest.raises(openai.RateLimitError) as exc:
        create_or_stream(world.sdk, stream, model="fail429", input="Hello?")
    assert exc.value.status_code == 429
    error_of(exc.value)


@pytest.mark.parametrize("vendor", ["openai", "native"])
def test_a_stream_cut_mid_answer_ends_with_a_failure(world, vendor, chat_stream_validator):
    body = {"model": "cut", "input": "Hello?", "stream": True} if vendor == "openai" else \
        {"model": "native", "input": "cut here", "stream": True}
    r = world.post(body)
    assert r.status_code == 200
    events = sse_events(r.content)
    names = [name for name, _ in events]
    assert names[0] == "response.created" and "response.output_text.delta" in names
    assert "response.completed" not in names
    if vendor == "openai":  # translated: the response fails, its open item closed
        assert names[-1] == "response.failed"
        failed = events[-1][1]["response"]
        assert failed["status"] == "failed" and failed["error"]["message"]
        assert failed["output"][0]["status"] == "incomplete"
    else:  # native: the upstream's events, then Responses' own error event
        assert names[-1] == "error"
        assert events[-1][1]["message"] and events[-1][1]["code"]
        assert events[-1][1]["sequence_number"] == events[-2][1]["sequence_number"] + 1
    # the SDK: the raw event stream says failed; the stream helper has no final response
    ask = {k: v for k, v in body.items() if k != "stream"}
    seen_types = [e.type for e in world.sdk.responses.create(**ask, stream=True)]
    assert seen_types[-1] == names[-1]
    with pytest.raises((RuntimeError, openai.APIError)), world.sdk.responses.stream(**ask) as s:
        for _ in s:
            pass
        s.get_final_response()
    assert chat_stream_validator.streams == 3  # all three were held to the grammar


def test_unknown_model_is_not_found(world):
    with pytest.raises(openai.NotFoundError) as exc:
        world.sdk.responses.create(model="no-such-model", input="Hello?")
    assert "no-such-model" in error_of(exc.value)["message"]
    assert all(not u.seen for u in world.ups.values())


@pytest.mark.parametrize("body, path", [
    ({"model": "gpt", "input": 42}, "input"),
    ({"model": "gpt"}, "input"),
    ({"model": "gpt", "input": [{"type": "message", "role": "robot", "content": "x"}]},
     "input[0].role"),
    ({"model": "gpt", "input": "x", "tools": [{"type": "function"}]}, "tools[0].name"),
    ({"model": "gpt", "input": "x", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
])
def test_a_bad_body_is_a_400_naming_the_path(world, body, path):
    r = world.post(body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["message"].startswith(path + ":")
    assert not world.seen("openai")
    with pytest.raises(openai.BadRequestError):
        world.sdk.responses.create(**body)


@pytest.mark.parametrize("model", ["gpt", "native"])
def test_previous_response_id_without_the_stats_store_is_refused(world, model):
    # these gateways run without the stats store (tests/e2e/test_responses_store.py has it)
    with pytest.raises(openai.BadRequestError) as exc:
        world.sdk.responses.create(model=model, input="And then?",
                                   previous_response_id="resp_earlier")
    assert "previous_response_id" in error_of(exc.value)["message"]
    assert all(not u.seen for u in world.ups.values())


def test_a_wrong_key_is_an_authentication_error(world):
    r = world.post({"model": "gpt", "input": "x"}, key="sk-wrong")
    assert r.status_code == 401 and r.json()["error"]["message"]
    with pytest.raises(openai.AuthenticationError):
        world.gw.openai("sk-wrong").responses.create(model="gpt", input="x")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_500_from_the_first_channel_is_retried_on_the_second(world, stream):
    r = create_or_stream(world.sdk, stream, model="retry", input="Hello?")
    assert r.output_text == fake.TEXT and r.model == "retry"
    assert [s.path for s in world.seen("openai")] == ["/e500/v1/chat/completions",
                                                      "/v1/chat/completions"]
