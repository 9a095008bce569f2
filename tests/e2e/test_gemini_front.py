"""The Gemini-native front (``…/models/{model}:generateContent``, ``:streamGenerateContent``,
``:countTokens``, the model list) end to end, over real sockets on both backends, with the
official ``google-genai`` SDK as the client, in front of three fake upstreams: an
OpenAI-compatible one and an Anthropic one (``tests/fakes/llm_vendors.py``: the request is
translated to chat and on), and a Gemini one (``tests/fakes/gemini_front.py``: native
passthrough, the client's body goes up unchanged and the answer comes back byte for byte). The
suite's autouse validator (tests/conftest.py) holds every answer to Gemini's stream grammar and
to google-genai's ``GenerateContentResponse``, the failures' included.

google-genai given a ``base_url`` speaks ``/v1/models/…``; the raw tests use ``/v1beta``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import errors, types

from tests.fakes import gemini_front as gfake
from tests.fakes import llm_vendors as fake
from tests.fakes.upstream import FakeUpstream
from tests.harness import RunningGateway, run_gateway

KEY = "sk-gemini-e2e"
VENDORS = ["openai", "anthropic", "gemini"]
HANDLERS = {"openai": fake.openai_handler, "anthropic": fake.anthropic_handler,
            "gemini": gfake.gemini_handler}
MODEL = {"openai": "gpt", "anthropic": "claude", "gemini": "gem"}
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + bytes(range(40))
PNG = base64.b64encode(PNG_BYTES).decode()
NO_AFC = types.AutomaticFunctionCallingConfig(disable=True)
WEATHER = types.Tool(function_declarations=[types.FunctionDeclaration(
    name="get_weather", description="The weather of a city",
    parameters=types.Schema(type="OBJECT", properties={"city": types.Schema(type="STRING")},
                            required=["city"]))])


def config(u: dict[str, FakeUpstream]) -> str:
    oai = u["openai"].url
    return f"""
providers:
  - provider: oai
    base_url: {oai}/v1/chat/completions
    api: sk-oai
    model: [gpt]
  - provider: ant
    engine: claude
    base_url: {u["anthropic"].url}/v1/messages
    api: sk-ant-up
    model:
      - {fake.ANTHROPIC_MODEL}: claude
  - provider: gem
    engine: gemini
    base_url: {u["gemini"].url}/v1beta
    api: AIza-test
    model:
      - {gfake.UPSTREAM_MODEL}: gem
  - {{provider: fail500, base_url: "{oai}/e500/v1/chat/completions", api: k5, model: [fail500]}}
  - {{provider: fail429, base_url: "{oai}/e429/v1/chat/completions", api: k4, model: [fail429]}}
  - {{provider: cut, base_url: "{oai}/cut/v1/chat/completions", api: kc, model: [cut]}}
  - {{provider: r1, base_url: "{oai}/e500/v1/chat/completions", api: kr1, model: [retry]}}
  - {{provider: r2, base_url: "{oai}/v1/chat/completions", api: kr2, model: [retry]}}
api_keys:
  - api: {KEY}
"""


class World:
    """A gateway in front of the three fakes; ``sdk`` a ``genai.Client`` of it whose requests
    are kept in ``sent`` (method, URL, body bytes)."""

    def __init__(self, gw: RunningGateway, ups: dict[str, FakeUpstream]) -> None:
        self.gw, self.ups = gw, ups
        self.sent: list[httpx.Request] = []
        self.http = httpx.Client(timeout=10, event_hooks={"request": [self._keep]})
        self.sdk = self.client()

    def _keep(self, request: httpx.Request) -> None:
        self.sent.append(request)

    def client(self, key: str = KEY, **options: Any) -> genai.Client:
        return genai.Client(api_key=key, http_options=types.HttpOptions(
            base_url=self.gw.url, httpx_client=self.http, **options))

    def seen(self, vendor: str) -> list[Any]:
        return self.ups[vendor].seen

    def upstream_body(self, vendor: str, i: int = -1) -> dict[str, Any]:
        return self.ups[vendor].seen[i].json()

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None
             ) -> httpx.Response:
        return httpx.post(self.gw.url + path, content=json.dumps(body).encode(), timeout=10,
                          headers={"content-type": "application/json", "x-goog-api-key": KEY}
                          if headers is None else headers)


@pytest.fixture
def world(backend: str) -> Iterator[World]:
    ups = {name: FakeUpstream(handler=h) for name, h in HANDLERS.items()}
    try:
        with run_gateway(config(ups), backend=backend) as gw:
            w = World(gw, ups)
            yield w
            w.http.close()
    finally:
        for u in ups.values():
            u.close()


def same_json(upstream: bytes, client: bytes) -> bool:
    """The native passthrough's promise for an SDK's body: the same JSON, keys in the same
    order, re-encoded compact (the raw tests below send compact JSON and compare bytes)."""
    return upstream == fake.compact(json.loads(client))


def sse_objects(raw: bytes) -> list[dict[str, Any]]:
    out = []
    for block in raw.decode().replace("\r\n", "\n").split("\n\n"):
        if block.strip():
            assert block.startswith("data: "), block
            out.append(json.loads(block[len("data: "):]))
    return out


def stream_path(model: str, sse: bool = True, version: str = "v1beta") -> str:
    return f"/{version}/models/{model}:streamGenerateContent" + ("?alt=sse" if sse else "")


USER = [{"role": "user", "parts": [{"text": "Hello?"}]}]


# -- text, whole and streamed ----------------------------------------------------------------

@pytest.mark.parametrize("vendor", VENDORS)
def test_generate_content_returns_the_text(world, vendor, chat_stream_validator):
    response = world.sdk.models.generate_content(model=MODEL[vendor], contents="Hello?")
    assert chat_stream_validator.bodies == 1  # the validator read the answer
    assert response.text == fake.TEXT
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.usage_metadata.prompt_token_count > 0
    [request] = world.sent
    assert request.url.path == f"/v1/models/{MODEL[vendor]}:generateContent"
    [seen] = world.seen(vendor)
    if vendor == "openai":
        assert seen.json()["messages"] == [{"role": "user", "content": "Hello?"}]
        assert response.model_version == "gpt"
    elif vendor == "anthropic":
        assert seen.json()["messages"] == [{"role": "user", "content": [
            {"type": "text", "text": "Hello?"}]}]
        assert seen.json()["model"] == fake.ANTHROPIC_MODEL
    else:
        assert seen.path == f"/v1beta/models/{gfake.UPSTREAM_MODEL}:generateContent"
        assert same_json(seen.body, request.content)
        assert seen.headers["x-goog-api-key"] == "AIza-test"
        assert response.model_version == gfake.UPSTREAM_MODEL  # the upstream's own answer
        assert response.candidates[0].content.parts[-1].thought_signature == \
            base64.b64decode(gfake.TEXT_SIGNATURE)


@pytest.mark.parametrize("vendor", VENDORS)
def test_generate_content_stream(world, vendor, chat_stream_validator):
    chunks = list(world.sdk.models.generate_content_stream(model=MODEL[vendor],
                                                           contents="Hello?"))
    assert chat_stream_validator.streams == 1
    assert "".join(c.text or "" for c in chunks) == fake.TEXT
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert world.sent[0].url.params["alt"] == "sse"
    seen = world.seen(vendor)[0]
    if vendor == "gemini":
        assert seen.path == f"/v1beta/models/{gfake.UPSTREAM_MODEL}:streamGenerateContent" \
            "?alt=sse"
        assert same_json(seen.body, world.sent[0].content)
    else:
        assert seen.json()["stream"] is True


# -- a function call round trip --------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("vendor", VENDORS)
def test_function_call_round_trip(world, vendor, stream):
    cfg = types.GenerateContentConfig(tools=[WEATHER], automatic_function_calling=NO_AFC)
    question = types.Content(role="user", parts=[types.Part(text="Weather in Paris?")])
    ask = {"model": MODEL[vendor], "contents": [question], "config": cfg}
    if stream:
        chunks = list(world.sdk.models.generate_content_stream(**ask))
        calls = [fc for c in chunks for fc in c.function_calls or []]
        turn = types.Content(role="model", parts=[p for c in chunks
                                                  for p in c.candidates[0].content.parts])
    else:
        first = world.sdk.models.generate_content(**ask)
        calls = first.function_calls or []
        turn = first.candidates[0].content
    [call] = calls
    assert call.name == "get_weather" and call.args == fake.ARGS
    if vendor == "openai":
        assert call.id == "call_W1"
    elif vendor == "anthropic":
        assert call.id == "toolu_fake01"
    else:
        assert call.id is None  # the fake's own part, passed as it is
        [part] = turn.parts
        assert part.thought_signature == base64.b64decode(gfake.CALL_SIGNATURE)
    reply = types.Content(role="user", parts=[types.Part(function_response=types.FunctionResponse(
        id=call.id, name="get_weather", response={"output": "21 °C, sunny"}))])
    second = world.sdk.models.generate_content(model=MODEL[vendor], config=cfg,
                                               contents=[question, turn, reply])
    assert second.text == fake.TOOL_TEXT
    sent = world.upstream_body(vendor)
    if vendor == "openai":
        assert sent["tools"][0]["function"]["name"] == "get_weather"
        assert sent["tools"][0]["function"]["parameters"]["properties"] == {
            "city": {"type": "string"}}
        [tc] = sent["messages"][1]["tool_calls"]
        assert tc["id"] == "call_W1" and json.loads(tc["function"]["arguments"]) == fake.ARGS
        assert sent["messages"][2] == {"role": "tool", "tool_call_id": "call_W1",
                                       "content": '{"output":"21 °C, sunny"}'}
    elif vendor == "anthropic":
        assert sent["tools"][0]["name"] == "get_weather"
        assert sent["messages"][1]["content"][-1]["type"] == "tool_use"
        [result] = sent["messages"][2]["content"]
        assert result["type"] == "tool_result" and result["tool_use_id"] == "toolu_fake01"
        assert "21 °C, sunny" in json.dumps(result["content"], ensure_ascii=False)
    else:
        assert same_json(world.seen(vendor)[-1].body, world.sent[-1].content)
        assert sent["contents"][1]["parts"][0]["thoughtSignature"] == gfake.CALL_SIGNATURE
        assert sent["contents"][2]["parts"][0]["functionResponse"]["name"] == "get_weather"


# -- native passthrough, byte for byte -------------------------------------------------------

PASSTHROUGH = {
    "contents": [
        {"role": "user", "parts": [{"text": "What is 6 × 7?"}]},
        {"role": "model", "parts": [{"text": "42", "thoughtSignature": "UHJldlRleHRTaWc="}]},
        {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": fake.ARGS},
                                     "thoughtSignature": "UHJldkNhbGxTaWc="}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather",
                                                         "response": {"t": "21 °C"}}}]}],
    "tools": [{"functionDeclarations": [{"name": "get_weather",
                                         "parameters": {"type": "OBJECT"}}]},
              {"googleSearch": {}}],
    "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
    "generationConfig": {"temperature": 0.1, "thinkingConfig": {"includeThoughts": True}},
    "someFieldTheGatewayDoesNotKnow": {"x": [1, 2]},
}


#: a thinking answer: two stream events, so the array's separators are seen too
THINKING_BODY = {"contents": [{"role": "user", "parts": [{"text": "6 × 7?"}]}],
                 "generationConfig": {"thinkingConfig": {"includeThoughts": True,
                                                         "thinkingBudget": 1024}}}


@pytest.mark.parametrize("body", [PASSTHROUGH, THINKING_BODY], ids=["history", "thinking"])
@pytest.mark.parametrize("sse", [True, False], ids=["sse", "array"])
def test_gemini_passthrough_stream_is_byte_for_byte(world, sse, body):
    sent = fake.compact(body)
    with httpx.stream("POST", world.gw.url + stream_path("gem", sse), content=sent, timeout=10,
                      headers={"x-goog-api-key": KEY, "content-type": "application/json"}) as r:
        assert r.status_code == 200
        raw = r.read()
    events = gfake.gemini_answers(body, True)
    assert len(events) == (1 if body is PASSTHROUGH else 2)
    if sse:
        assert r.headers["content-type"].startswith("text/event-stream")
        assert raw == gfake.gemini_sse(events)
    else:
        assert r.headers["content-type"].startswith("application/json")
        assert raw == b"[" + b",\r\n".join(fake.compact(e) for e in events) + b"]"
    assert gfake.TEXT_SIGNATURE.encode() in raw  # the answer's signature reached the client
    [seen] = world.seen("gemini")
    assert seen.path == f"/v1beta/models/{gfake.UPSTREAM_MODEL}:streamGenerateContent?alt=sse"
    assert seen.body == sent
    assert seen.headers["x-goog-api-key"] == "AIza-test" and "key=" not in seen.path
    assert KEY not in json.dumps(seen.headers)


def test_gemini_passthrough_whole_answer_is_byte_for_byte(world):
    r = world.post("/v1beta/models/gem:generateContent", PASSTHROUGH)
    assert r.status_code == 200
    assert r.content == json.dumps(gfake.gemini_answers(PASSTHROUGH, False)[0]).encode()
    assert world.seen("gemini")[0].body == fake.compact(PASSTHROUGH)


# -- images and thinking ---------------------------------------------------------------------

@pytest.mark.parametrize("vendor", VENDORS)
def test_an_image_reaches_the_upstream_in_its_shape(world, vendor):
    contents = [types.Content(role="user", parts=[
        types.Part.from_bytes(data=PNG_BYTES, mime_type="image/png"),
        types.Part(text="What is it?")])]
    assert world.sdk.models.generate_content(model=MODEL[vendor], contents=contents).text \
        == fake.TEXT
    sent = world.upstream_body(vendor)
    if vendor == "openai":
        assert sent["messages"] == [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}},
            {"type": "text", "text": "What is it?"}]}]
    elif vendor == "anthropic":
        assert sent["messages"] == [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG}},
            {"type": "text", "text": "What is it?"}]}]
    else:
        [part, _] = sent["contents"][0]["parts"]
        assert part["inlineData"]["data"] == PNG
        assert same_json(world.seen(vendor)[0].body, world.sent[0].content)


THINK = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(
    include_thoughts=True, thinking_budget=2048))


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("vendor", VENDORS)
def test_thinking_is_asked_for_and_comes_back_as_a_thought_part(world, vendor, stream):
    ask = {"model": MODEL[vendor], "contents": "6 × 7?", "config": THINK}
    if stream:
        parts = [p for c in world.sdk.models.generate_content_stream(**ask)
                 for p in c.candidates[0].content.parts]
    else:
        parts = world.sdk.models.generate_content(**ask).candidates[0].content.parts
    thought = "".join(p.text for p in parts if p.thought)
    text = "".join(p.text for p in parts if p.text and not p.thought)
    assert thought == fake.THOUGHT and text == fake.ANSWER
    assert parts[0].thought is True
    sent = world.upstream_body(vendor)
    if vendor == "openai":
        assert sent["reasoning_effort"] == "low"
    elif vendor == "anthropic":
        assert sent["thinking"]["type"] == "enabled" and sent["thinking"]["budget_tokens"] > 0
    else:
        assert sent["generationConfig"]["thinkingConfig"] == {"include_thoughts": True,
                                                              "thinking_budget": 2048}


# -- countTokens and the models ----------------------------------------------------------------

def test_count_tokens_is_estimated(world):
    counted = world.sdk.models.count_tokens(model="gpt", contents="abcd" * 20)
    assert counted.total_tokens > 20
    r = world.post("/v1beta/models/gem:countTokens", {"contents": USER})
    assert r.status_code == 200 and r.json()["totalTokens"] > 0
    assert r.headers["x-uniapi-token-count"] == "estimated"
    assert all(not u.seen for u in world.ups.values())  # never asked of an upstream
    r = world.post("/v1beta/models/nope:countTokens", {"contents": USER})
    assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"


def test_the_models_are_listed_and_read(world):
    # the SDK lists with its api_version: v1 with a base_url, where /v1/models is OpenAI's own
    # list; a Google client (x-goog-* headers) gets Google's list there, an OpenAI one OpenAI's
    for sdk in (world.sdk, world.client(api_version="v1beta")):
        names = [m.name for m in sdk.models.list()]
        assert {"models/gpt", "models/claude", "models/gem"} <= set(names)
        model = sdk.models.get(model="claude")
        assert model.name == "models/claude"
        assert "generateContent" in (model.supported_actions or [])
    assert [r.url.path for r in world.sent if r.method == "GET"][:2] == ["/v1/models",
                                                                          "/v1/models/claude"]
    with pytest.raises(errors.ClientError) as exc:
        world.client(api_version="v1beta").models.get(model="nope")
    assert exc.value.code == 404 and exc.value.status == "NOT_FOUND"
    openai_list = httpx.get(world.gw.url + "/v1/models", timeout=10,
                            headers={"authorization": f"Bearer {KEY}"})
    assert openai_list.json()["object"] == "list"  # an OpenAI client's list is unchanged


# -- raw HTTP: the JSON-array stream, the three ways to authenticate ---------------------------

def test_the_array_stream_is_one_json_array(world, chat_stream_validator):
    r = world.post(stream_path("gpt", sse=False, version="v1"), {"contents": USER})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    objs = r.json()
    assert isinstance(objs, list) and len(objs) >= 2
    assert "".join(p.get("text", "") for o in objs
                   for p in o["candidates"][0]["content"]["parts"]) == fake.TEXT
    assert objs[-1]["candidates"][0]["finishReason"] == "STOP"
    for o in objs:
        types.GenerateContentResponse.model_validate(o)
    assert chat_stream_validator.streams == 1


@pytest.mark.parametrize("how", ["query", "x-goog-api-key", "bearer"])
def test_each_way_to_send_the_key(world, how):
    path, headers = "/v1beta/models/gpt:generateContent", {"content-type": "application/json"}
    if how == "query":
        path += f"?key={KEY}"
    elif how == "bearer":
        headers["authorization"] = f"Bearer {KEY}"
    else:
        headers[how] = KEY
    r = world.post(path, {"contents": USER}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["candidates"][0]["content"]["parts"][0]["text"] == fake.TEXT
    r = world.post(path.replace(KEY, "sk-wrong"), {"contents": USER},
                   headers={k: v.replace(KEY, "sk-wrong") for k, v in headers.items()})
    assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"


# -- failures ----------------------------------------------------------------------------------

def call_sdk(sdk: genai.Client, stream: bool, model: str) -> Any:
    if not stream:
        return sdk.models.generate_content(model=model, contents="Hello?")
    return list(sdk.models.generate_content_stream(model=model, contents="Hello?"))


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_upstream_500_is_a_google_error(world, stream):
    with pytest.raises(errors.ServerError) as exc:
        call_sdk(world.sdk, stream, "fail500")
    # an upstream's 5xx is the gateway's 502, which Google calls UNAVAILABLE
    assert exc.value.code == 502 and exc.value.status == "UNAVAILABLE"
    assert exc.value.message == "upstream exploded"
    assert all(s.path == "/e500/v1/chat/completions" for s in world.seen("openai"))


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_upstream_429_is_resource_exhausted(world, stream):
    with pytest.raises(errors.ClientError) as exc:
        call_sdk(world.sdk, stream, "fail429")
    assert exc.value.code == 429 and exc.value.status == "RESOURCE_EXHAUSTED"


def test_a_stream_cut_mid_answer_ends_with_an_error_object(world, chat_stream_validator):
    sse = sse_objects(world.post(stream_path("cut"), {"contents": USER}).content)
    assert "".join(p["text"] for o in sse[:-1]
                   for p in o["candidates"][0]["content"]["parts"]) == "Hello there"
    assert set(sse[-1]) == {"error"}
    assert sse[-1]["error"]["code"] == 502 and sse[-1]["error"]["status"] == "UNAVAILABLE"
    r = world.post(stream_path("cut", sse=False), {"contents": USER})
    array = r.json()  # still one valid JSON array
    assert isinstance(array, list) and set(array[-1]) == {"error"}
    assert array[-1]["error"] == sse[-1]["error"]
    assert "finishReason" not in json.dumps(array)
    with pytest.raises(errors.ServerError) as exc:
        call_sdk(world.sdk, True, "cut")
    assert exc.value.code == 502
    assert chat_stream_validator.streams == 3


def test_unknown_model_is_not_found(world):
    with pytest.raises(errors.ClientError) as exc:
        world.sdk.models.generate_content(model="no-such-model", contents="Hello?")
    assert exc.value.code == 404 and exc.value.status == "NOT_FOUND"
    assert "no-such-model" in exc.value.message
    assert all(not u.seen for u in world.ups.values())


@pytest.mark.parametrize("body, where", [
    ({"contents": "Hello?"}, "contents"),
    ({"contents": [{"role": "user", "parts": [{"text": 5}]}]}, "contents[0].parts[0].text"),
])
def test_a_bad_body_is_invalid_argument_naming_the_path(world, body, where):
    r = world.post("/v1beta/models/gpt:generateContent", body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == 400 and err["status"] == "INVALID_ARGUMENT"
    assert where in err["message"]
    assert not world.seen("openai")


def test_a_missing_key_is_unauthenticated(world):
    r = world.post("/v1beta/models/gpt:generateContent", {"contents": USER},
                   headers={"content-type": "application/json"})
    assert r.status_code == 401
    assert r.json()["error"]["status"] == "UNAUTHENTICATED" and r.json()["error"]["code"] == 401
    with pytest.raises(errors.ClientError) as exc:
        world.client(key="sk-wrong").models.generate_content(model="gpt", contents="Hello?")
    assert exc.value.code == 401 and exc.value.status == "UNAUTHENTICATED"
    assert not world.seen("openai")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_500_from_the_first_channel_is_retried_on_the_second(world, stream):
    got = call_sdk(world.sdk, stream, "retry")
    text = got.text if not stream else "".join(c.text or "" for c in got)
    assert text == fake.TEXT
    assert [s.path for s in world.seen("openai")] == ["/e500/v1/chat/completions",
                                                      "/v1/chat/completions"]
