"""The Gemini translator: request building, whole bodies, streams, errors (docs/vendor-rules.md).

Rule ids: docs/contracts.md (shared), docs/vendor-rules.md (GEM-*). Fixtures in
``tests/data/gemini/`` are realistic Gemini payloads written for these tests from
Google's documented examples and shapes (CRLF framing as Google sends it). Every emitted stream
is parsed back and checked against the OpenAI chunk grammar by ``openai_grammar`` from the fuzz
target, so the grammar (S-1..S-8) is asserted on every stream test.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uniapi_core.config.model import Provider, ProviderPreferences
from uniapi_core.errors import ClientError, DecodeError, UpstreamError
from uniapi_core.jsonutil import dumps
from uniapi_core.request import parse_openai_chat
from uniapi_core.routing.retry import verdict
from uniapi_core.vendors.base import ChatContext, ImagesNeeded, StreamChunk, StreamDone, \
    StreamFailed
from uniapi_core.vendors.gemini import (
    DEFAULT_BASE,
    DROPPED,
    MAPPED,
    SIGNATURE_PLACEHOLDER,
    GeminiExchange,
    GeminiStreamDecoder,
    build_exchange,
    gemini_base,
)
from uniapi_core.vendors.toolkit import call_id

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data" / "gemini"
STREAMS = sorted(p.name for p in DATA.glob("stream_*.sse"))
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 24
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 16
KEY = "AIzaSyTESTKEY"


def _load_fuzz_target():
    spec = importlib.util.spec_from_file_location("fuzz_gemini", ROOT / "fuzz" / "fuzz_gemini.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz = _load_fuzz_target()
normalize = fuzz.normalize
openai_grammar = fuzz.openai_grammar


def fixture(name: str) -> bytes:
    return (DATA / name).read_bytes()


def make_ctx(*, stream: bool = False, include_usage: bool = False, client_model: str = "gem",
             upstream_model: str = "gemini-2.5-flash", base_url: str | None = None,
             headers: tuple[tuple[str, str], ...] = (),
             images: dict[str, tuple[str, bytes]] | None = None, seed: int = 7) -> ChatContext:
    provider = Provider(provider="gemini", base_url=base_url, api=(KEY,),
                        preferences=ProviderPreferences(headers=headers))
    return ChatContext(client_model=client_model, upstream_model=upstream_model,
                       provider=provider, api_key=KEY, stream=stream,
                       include_usage=include_usage, response_id="chatcmpl-test0123456789",
                       created=1735689600, images=images or {}, entropy=random.Random(seed))


def user(content: Any = "Hi") -> dict[str, Any]:
    return {"role": "user", "content": content}


def exchange(messages: list[dict[str, Any]] | None = None, *, ctx: ChatContext | None = None,
             **fields: Any) -> GeminiExchange:
    req = {"model": "gem", "messages": messages or [user()], **fields}
    return build_exchange(req, ctx or make_ctx())


def build(messages: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    """The Gemini body for an OpenAI request."""
    return json.loads(exchange(messages, **fields).request.body)


def refused(messages: list[dict[str, Any]] | None = None, **fields: Any) -> ClientError:
    with pytest.raises(ClientError) as e:
        build(messages, **fields)
    assert e.value.status == 400 and e.value.type == "invalid_request_error"
    return e.value


def call(cid: str, name: str = "get_weather", args: str = '{"city":"Paris"}',
         **extra: Any) -> dict[str, Any]:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": args},
            **extra}


def tool(name: str = "get_weather", parameters: Any = None) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": name, "description": f"The {name} tool"}
    if parameters is not None:
        fn["parameters"] = parameters
    return {"type": "function", "function": fn}


def run(pieces: list[bytes], ctx: ChatContext | None = None) -> tuple[list, str | None]:
    """Feed then close: (normalized items, DecodeError kind or None)."""
    decoder = GeminiStreamDecoder(ctx or make_ctx(stream=True))
    items: list = []
    try:
        for piece in pieces:
            items += decoder.feed(piece)
        items += decoder.close()
    except DecodeError as e:
        return normalize(items), e.kind
    return normalize(items), None


def stream(data: bytes, include_usage: bool = False, **ctx_kw: Any) -> dict[str, Any]:
    """Decode ``data`` whole; check the grammar; return the assembled result and the end."""
    items, kind = run([data], make_ctx(stream=True, include_usage=include_usage, **ctx_kw))
    assert kind is None, kind
    result = openai_grammar(items, include_usage)
    result["end"] = items[-1]
    result["chunks"] = [i[1] for i in items if i[0] == "chunk"]
    return result


def sse(*objects: Any, nl: str = "\r\n") -> bytes:
    return b"".join(b"data: " + json.dumps(o, ensure_ascii=False).encode() + (nl * 2).encode()
                    for o in objects)


def cand(*parts: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"content": {"parts": list(parts), "role": "model"}, "index": 0}
    if finish:
        c["finishReason"] = finish
    return {"candidates": [c], **extra}


def cut(data: bytes, positions: list[int]) -> list[bytes]:
    bounds = [0, *sorted(positions), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


# -- URL and headers (GEM-1..GEM-4) ------------------------------------------------------------


@pytest.mark.parametrize("base, expected", [
    (None, DEFAULT_BASE),
    ("", DEFAULT_BASE),
    ("https://generativelanguage.googleapis.com/v1beta", DEFAULT_BASE),
    ("https://generativelanguage.googleapis.com/v1beta/", DEFAULT_BASE),
    ("https://generativelanguage.googleapis.com", DEFAULT_BASE),
    ("https://generativelanguage.googleapis.com/v1",
     "https://generativelanguage.googleapis.com/v1"),
    ("https://mirror.example/gemini/v1beta/models/gemini-pro:generateContent?key=leak",
     "https://mirror.example/gemini/v1beta"),
    ("http://127.0.0.1:8080/v1beta/models", "http://127.0.0.1:8080/v1beta"),
    ("https://proxy.example/v1/google/v1beta", "https://proxy.example/v1/google/v1beta"),
    ("https://proxy.example/custom", "https://proxy.example/custom/v1beta"),
])
def test_base_url_forms_gem_1(base, expected):
    assert gemini_base(base) == expected


def test_urls_for_whole_and_streamed_requests_gem_2_gem_4():
    whole = exchange(ctx=make_ctx()).request
    assert whole.method == "POST"
    assert whole.url == f"{DEFAULT_BASE}/models/gemini-2.5-flash:generateContent"
    streamed = exchange(ctx=make_ctx(stream=True, upstream_model="models/gemini-2.0-flash",
                                     base_url="http://127.0.0.1:9/v1beta/")).request
    assert streamed.url == \
        "http://127.0.0.1:9/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"


def test_key_goes_in_a_header_never_in_the_url_gem_3():
    req = exchange(ctx=make_ctx(base_url="https://m.example/v1beta?key=other")).request
    headers = dict(req.headers)
    assert headers["x-goog-api-key"] == KEY
    assert headers["content-type"] == "application/json"
    assert KEY not in req.url and "key=" not in req.url


def test_preference_headers_are_added_and_replace_same_named_ones():
    ctx = make_ctx(headers=(("Content-Type", "application/json; charset=utf-8"),
                            ("x-trace", "1")))
    headers = exchange(ctx=ctx).request.headers
    assert ("x-trace", "1") in headers
    assert [v for k, v in headers if k.lower() == "content-type"] == \
        ["application/json; charset=utf-8"]


def test_body_bytes_are_compact_json():
    req = exchange(ctx=make_ctx()).request
    assert req.body == dumps(json.loads(req.body))


# -- messages (docs/vendor-rules.md, GEM-R1..R3) ---------------------------------------------------


def test_plain_text_request_and_safety_settings_4_2_6():
    body = build([user("Hello, Gemini — naïve?")])
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Hello, Gemini — naïve?"}]}]
    assert body["safetySettings"] == [
        {"category": c, "threshold": "BLOCK_NONE"}
        for c in ("HARM_CATEGORY_HARASSMENT", "HARM_CATEGORY_HATE_SPEECH",
                  "HARM_CATEGORY_SEXUALLY_EXPLICIT", "HARM_CATEGORY_DANGEROUS_CONTENT")]
    assert "systemInstruction" not in body and "tools" not in body


def test_system_developer_and_mid_conversation_system_become_system_instruction():
    body = build([{"role": "system", "content": "Be brief."},
                  {"role": "developer", "content": [{"type": "text", "text": "Use metric."}]},
                  user("Hi"), {"role": "assistant", "content": "Hello!"},
                  {"role": "system", "content": ""},
                  {"role": "system", "content": "Now in French."}, user("Again")])
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Use metric."},
                                                   {"text": "Now in French."}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]


def test_multi_turn_roles_and_merging_gem_r2():
    body = build([user("one"), user([{"type": "text", "text": "two"}]),
                  {"role": "assistant", "content": "three"},
                  {"role": "assistant", "content": [{"type": "text", "text": "four"}]},
                  user("five")])
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "one"}, {"text": "two"}]},
        {"role": "model", "parts": [{"text": "three"}, {"text": "four"}]},
        {"role": "user", "parts": [{"text": "five"}]}]


def test_assistant_first_and_text_kept_verbatim():
    body = build([{"role": "assistant", "content": "  spaced \n"}, user(" x ")])
    assert body["contents"][0] == {"role": "model", "parts": [{"text": "  spaced \n"}]}
    assert body["contents"][1]["parts"] == [{"text": " x "}]


def test_empty_texts_are_dropped_and_nothing_left_is_refused_gem_r3():
    body = build([user(""), user([{"type": "text", "text": ""}]), user("x")])
    assert body["contents"] == [{"role": "user", "parts": [{"text": "x"}]}]
    refused([{"role": "system", "content": "only system"}])
    refused([user("")])


@pytest.mark.parametrize("messages", [
    [{"role": "narrator", "content": "x"}],
    ["not an object"],
    [user(42)],
    [user([{"type": "video", "video": {}}])],
    [user([{"type": "file", "file": {"file_id": "file-abc"}}])],
    [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "data:,x"}}]}],
])
def test_unsupported_messages_are_refused(messages):
    refused(messages)


def test_numbers_json_cannot_carry_are_a_client_error():
    refused(temperature=float("inf"))
    refused([user(), {"role": "assistant", "tool_calls": [
        {"id": "c", "function": {"name": "f", "arguments": {"x": float("inf")}}}]}])


def test_request_must_have_messages():
    for req in ({"model": "gem"}, {"model": "gem", "messages": []}, []):
        with pytest.raises(ClientError):
            build_exchange(req, make_ctx())  # type: ignore[arg-type]


@pytest.mark.parametrize("req, message", [
    ([], "the request must be a JSON object"),
    ({"model": "gem"}, "'messages' must be a non-empty list"),
    ({"messages": {}}, "'messages' must be a non-empty list"),
    ({"messages": []}, "'messages' must be a non-empty list"),
    ({"messages": [user()], "n": True}, "'n' must be a positive integer"),
    ({"messages": [user(), 5]}, "messages[1] must be an object"),
    ({"messages": [{"role": 7, "content": "x"}]}, "messages[0].role 7 is not supported"),
    ({"messages": [user(), {"role": "tool", "tool_call_id": 3, "content": "x"}]},
     "messages[1].tool_call_id 3 does not name an earlier assistant tool call"),
    ({"messages": [user()], "reasoning_effort": 1},
     "'reasoning_effort' must be none, minimal, low, medium or high"),
])
def test_request_shape_errors_keep_their_texts(req, message):
    """The model sorts the shapes; the texts are still gemini's own, from the dict or the model."""
    for given_req in (req, parse_openai_chat(req)) if isinstance(req, dict) else (req,):
        with pytest.raises(ClientError) as e:
            build_exchange(given_req, make_ctx())
        assert e.value.message == message and e.value.status == 400


def test_text_parts_read_a_text_key_first_whatever_their_type():
    """A quirk kept byte for byte (Cohere reads them the same way): in system, assistant and
    tool content a ``text`` key is read before ``refusal``, whatever the part's type."""
    parts = [{"type": "refusal", "text": "T", "refusal": "R"}, {"type": "text", "refusal": "S"},
             {"type": "refusal", "refusal": "U"}]
    body = build([{"role": "system", "content": parts}, user()])
    assert body["systemInstruction"] == {"parts": [{"text": "T"}, {"text": "S"}, {"text": "U"}]}
    assert refused([{"role": "system", "content": [{"type": "refusal", "text": 5}]}, user()]
                   ).message == "messages[0].content may only hold text parts here"
    assert refused([user([{"type": "refusal", "refusal": "R"}])]).message == \
        "messages[0].content[0]: part type 'refusal' is not supported by gemini"


def test_the_request_model_builds_the_same_bytes_as_the_dict():
    """build_exchange reads the typed model (docs/architecture.md, "The request model"); a dict
    is parsed first, so both give the same request, signature store included."""
    req = {"model": "gem", "messages": [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        user([{"type": "text", "text": "Look:"},
              {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
              {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "WAV"}}]),
        {"role": "assistant", "content": "", "tool_calls": [
            call("c1", extra_content={"google": {"thought_signature": "S1",
                                                 "function_call_id": "g1"}}),
            call("c2", name="lookup", args="")]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"t": 21}'},
        {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "ok"}]}],
        "tools": [tool(parameters={"type": "object", "properties": {"city": {"type": "string"}}}),
                  tool("lookup")],
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
        "temperature": 0.2, "top_k": 3, "max_completion_tokens": 50, "stop": "END", "n": 2,
        "reasoning_effort": "low", "response_format": {"type": "json_schema", "json_schema": {
            "name": "x", "schema": {"type": "object", "properties": {"a": {"const": "b"}}}}}}
    ctx = make_ctx(upstream_model="gemini-3-pro-preview", client_model="gem-search",
                   images={"https://x.test/a.png": ("image/png", PNG)})
    from_dict = build_exchange(req, ctx, signatures={"c2": "S2"}).request
    from_model = build_exchange(parse_openai_chat(req), ctx, signatures={"c2": "S2"}).request
    assert from_dict == from_model
    parts = json.loads(from_model.body)["contents"][1]["parts"]
    assert [p.get("thoughtSignature") for p in parts] == ["S1", "S2"]


# -- tools and tool_choice (docs/vendor-rules.md, GEM-R1, GEM-R2, GEM-R4; TC-6) --------------------


def test_function_declarations_and_tool_without_parameters():
    params = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    body = build(tools=[tool("get_weather", params), tool("now"),
                        tool("noop", {"type": "object", "properties": {}})])
    assert body["tools"] == [{"functionDeclarations": [
        {"name": "get_weather", "description": "The get_weather tool", "parameters": params},
        {"name": "now", "description": "The now tool"},
        {"name": "noop", "description": "The noop tool"}]}]
    assert "toolConfig" not in body


@pytest.mark.parametrize("choice, expected", [
    ("auto", {"mode": "AUTO"}),
    ("none", {"mode": "NONE"}),
    ("required", {"mode": "ANY"}),
    ({"type": "function", "function": {"name": "now"}},
     {"mode": "ANY", "allowedFunctionNames": ["now"]}),
])
def test_tool_choice_mapping(choice, expected):
    body = build(tools=[tool("get_weather"), tool("now")], tool_choice=choice)
    assert body["toolConfig"] == {"functionCallingConfig": expected}


@pytest.mark.parametrize("fields", [
    {"tool_choice": {"type": "function", "function": {"name": "missing"}}, "tools": [tool()]},
    {"tool_choice": "sometimes", "tools": [tool()]},
    {"tool_choice": ["auto"], "tools": [tool()]},
    {"tool_choice": "required"},
    {"tool_choice": {"type": "function", "function": {"name": "now"}}},
    {"tools": [{"type": "code_interpreter"}]},
    {"tools": {"type": "function"}},
    {"tools": [tool("get_weather", parameters="not a schema")]},
])
def test_invalid_tools_and_tool_choice_are_refused(fields):
    refused(**fields)


def test_tool_choice_auto_or_none_without_tools_is_harmless():
    assert "toolConfig" not in build(tool_choice="none")
    assert "toolConfig" not in build(tool_choice="auto")


@pytest.mark.parametrize("name", ["1starts_with_digit", "has space", "a" * 65, "naïve", "",
                                  "semi;colon", None])
def test_tool_names_gemini_refuses_are_a_400_tc_6(name):
    err = refused(tools=[tool(name)])
    assert err.code == "invalid_tool_name" and "not accepted by gemini" in err.message


@pytest.mark.parametrize("name", ["ns.tool:v1-x", "_private", "a" * 64, "A-b_c.d:e"])
def test_tool_names_gemini_accepts(name):
    assert build(tools=[tool(name)])["tools"][0]["functionDeclarations"][0]["name"] == name


def test_invalid_name_in_history_is_refused_tc_6():
    refused([user(), {"role": "assistant", "content": None,
                      "tool_calls": [call("c1", name="bad name")]}])


def test_parallel_tool_call_history_and_results_4_2_1_4_2_2():
    body = build([
        user("Weather in Paris and Tokyo?"),
        {"role": "assistant", "content": "Checking.",
         "tool_calls": [call("call_a"), call("call_b", args='{"city":"Tokyo"}'),
                        call("call_c", name="now", args="")]},
        {"role": "tool", "tool_call_id": "call_b", "content": '{"temp": 25, "sky": "clear"}'},
        {"role": "tool", "tool_call_id": "call_a", "content": "18 degrees"},
        {"role": "tool", "tool_call_id": "call_c",
         "content": [{"type": "text", "text": "[1, 2]"}]},
        user("Thanks"),
    ], tools=[tool()])
    model, results, last = body["contents"][1:]
    assert model == {"role": "model", "parts": [
        {"text": "Checking."},
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
        {"functionCall": {"name": "get_weather", "args": {"city": "Tokyo"}}},
        {"functionCall": {"name": "now", "args": {}}}]}
    assert results == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"temp": 25, "sky": "clear"}}},
        {"functionResponse": {"name": "get_weather", "response": {"result": "18 degrees"}}},
        {"functionResponse": {"name": "now", "response": {"result": [1, 2]}}}]}
    assert last == {"role": "user", "parts": [{"text": "Thanks"}]}


def test_tool_result_for_an_unknown_call_is_refused_req_2():
    err = refused([user(), {"role": "tool", "tool_call_id": "call_x", "content": "1"}])
    assert "messages[1]" in err.message


@pytest.mark.parametrize("args", ["[1, 2]", "not json", '"text"', "NaN", "{\"a\": NaN}", 5,
                                  '{"a": 1e999}', "{" * 100])
def test_tool_call_arguments_must_be_a_json_object_req_2(args):
    refused([user(), {"role": "assistant", "tool_calls": [call("c1", args=args)]}])


def test_tool_result_text_that_is_not_plain_json_is_wrapped():
    deep = "[" * 200 + "]" * 200
    body = build([user(), {"role": "assistant", "tool_calls": [call("c1"), call("c2")]},
                  {"role": "tool", "tool_call_id": "c1", "content": deep},
                  {"role": "tool", "tool_call_id": "c2", "content": "NaN"}])
    parts = body["contents"][2]["parts"]
    assert parts[0]["functionResponse"]["response"] == {"result": deep}
    assert parts[1]["functionResponse"]["response"] == {"result": "NaN"}


def test_legacy_function_messages_are_refused_not_guessed_req_1():
    """REQ-1 converts legacy ``functions``/``function_call`` before any translator runs."""
    refused([user(), {"role": "function", "name": "now", "content": "noon"}])
    assert "tools" not in build(functions=[{"name": "now"}])


# -- thought signatures (GEM-R4) ------------------------------------------------------------------


def test_thought_signature_round_trip_through_a_whole_body_gem_r4():
    answer = json.loads(exchange().parse_body(200, (), fixture("body_function_calls.json")))
    message = answer["choices"][0]["message"]
    calls = message["tool_calls"]
    sig = json.loads(fixture("body_function_calls.json"))["candidates"][0]["content"][
        "parts"][1]["thoughtSignature"]
    assert calls[0]["extra_content"] == {"google": {"thought_signature": sig}}
    assert calls[1]["extra_content"] == {"google": {"function_call_id": "fc-7b2e91"}}
    assert "extra_content" not in calls[2]
    history = [user("Weather?"), message] + [
        {"role": "tool", "tool_call_id": c["id"], "content": "ok"} for c in calls]
    body = build(history, ctx=make_ctx(upstream_model="gemini-2.5-pro"))
    parts = body["contents"][1]["parts"]
    assert parts[1] == {"functionCall": {"name": "get_weather",
                                         "args": {"city": "Paris", "unit": "celsius"}},
                        "thoughtSignature": sig}
    assert parts[2] == {"functionCall": {"name": "get_time", "args": {"tz": "Asia/Tokyo"},
                                         "id": "fc-7b2e91"}}
    assert parts[3] == {"functionCall": {"name": "list_alerts", "args": {}}}
    responses = [p["functionResponse"] for p in body["contents"][2]["parts"]]
    assert [r["name"] for r in responses] == ["get_weather", "get_time", "list_alerts"]
    assert responses[1]["id"] == "fc-7b2e91" and "id" not in responses[0]


def test_thought_signature_round_trip_through_a_stream_gem_r4():
    result = stream(fixture("stream_parallel_calls.sse"))
    calls = result["tool_calls"]
    assert calls[0]["extra_content"]["google"]["thought_signature"].startswith("CiQBVKhc")
    assert "extra_content" not in calls[1]  # only the first parallel call carries one
    message = {"role": "assistant", "content": None,
               "tool_calls": [{"id": c["id"], "type": "function",
                               "function": {"name": c["name"], "arguments": c["arguments"]},
                               **({"extra_content": c["extra_content"]}
                                  if c.get("extra_content") else {})} for c in calls]}
    body = build([user(), message], ctx=make_ctx(upstream_model="gemini-3-pro-preview"))
    parts = body["contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] == calls[0]["extra_content"]["google"][
        "thought_signature"]
    assert "thoughtSignature" not in parts[1]


def test_decoder_and_exchange_report_signatures_for_a_caller_store_gem_r4():
    ex = exchange(ctx=make_ctx(stream=True))
    decoder = ex.stream_decoder()
    decoder.feed(fixture("stream_parallel_calls.sse"))
    decoder.close()
    [(call_id, sig)] = decoder.thought_signatures
    assert call_id.startswith("call_") and sig.startswith("CiQBVKhc")
    # a client that dropped extra_content: the caller-owned store fills the signature in
    history = [user(), {"role": "assistant", "tool_calls": [call(call_id)]}]
    body = json.loads(build_exchange({"model": "gem", "messages": history}, make_ctx(),
                                     signatures={call_id: sig}).request.body)
    assert body["contents"][1]["parts"][0]["thoughtSignature"] == sig
    whole = exchange()
    whole.parse_body(200, (), fixture("body_function_calls.json"))
    assert len(whole.thought_signatures) == 1


def test_gemini_3_gets_the_placeholder_when_no_signature_is_known_gem_r4():
    history = [user(), {"role": "assistant", "tool_calls": [call("a"), call("b")]}]
    parts = build(history, ctx=make_ctx(upstream_model="gemini-3-flash-preview"))[
        "contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] == SIGNATURE_PLACEHOLDER
    assert "thoughtSignature" not in parts[1]
    older = build(history, ctx=make_ctx(upstream_model="gemini-2.5-flash"))["contents"][1]
    assert all("thoughtSignature" not in p for p in older["parts"])


# -- images and audio (REQ-4) ----------------------------------------------------------------------


def image(url: Any) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, "detail": "high"}}


def inline(body: dict[str, Any], n: int = 0) -> dict[str, Any]:
    return [p for p in body["contents"][0]["parts"] if "inlineData" in p][n]["inlineData"]


def test_base64_data_url_becomes_inline_data():
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    body = build([user([{"type": "text", "text": "What is this?"}, image(url)])])
    assert body["contents"][0]["parts"][0] == {"text": "What is this?"}
    assert inline(body) == {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}


def test_base64_with_whitespace_missing_padding_and_urlsafe_alphabet_is_normalised():
    raw = bytes(range(250, 256)) + JPEG
    b64 = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    body = build([user([image("data:image/jpeg;base64," + b64[:8] + "\n " + b64[8:])])])
    assert base64.b64decode(inline(body)["data"]) == raw


def test_percent_encoded_data_url_and_sniffed_media_type():
    body = build([user([image("data:image/svg+xml,%3Csvg%2F%3E"),
                        image("data:;base64," + base64.b64encode(WEBP).decode()),
                        image("data:application/octet-stream;base64,"
                              + base64.b64encode(JPEG).decode())])])
    assert inline(body, 0) == {"mimeType": "image/svg+xml",
                               "data": base64.b64encode(b"<svg/>").decode()}
    assert inline(body, 1)["mimeType"] == "image/webp"
    assert inline(body, 2)["mimeType"] == "image/jpeg"


def test_remote_images_come_from_ctx_images_or_raise_images_needed():
    a, b = "https://img.example/a.png", "http://img.example/b"
    messages = [user([image(a), image(b), image(a)]), user([image("https://img.example/c")])]
    with pytest.raises(ImagesNeeded) as e:
        build(messages)
    assert e.value.urls == (a, b, "https://img.example/c")
    with pytest.raises(ImagesNeeded) as e:
        build(messages, ctx=make_ctx(images={a: ("image/png", PNG)}))
    assert e.value.urls == (b, "https://img.example/c")
    ctx = make_ctx(images={a: ("image/png", PNG), b: ("application/octet-stream", JPEG),
                           "https://img.example/c": ("image/webp", WEBP)})
    body = build(messages, ctx=ctx)
    assert [inline(body, i)["mimeType"] for i in range(3)] == \
        ["image/png", "image/jpeg", "image/png"]
    assert body["contents"][0]["parts"][1]["inlineData"]["data"] == \
        base64.b64encode(JPEG).decode()


@pytest.mark.parametrize("url", ["ftp://x.example/a.png", "file:///etc/passwd",
                                 "data:image/png;base64,@@@@", "data:image/png;base64",
                                 "data:,unknown-type", 42])
def test_bad_image_urls_are_refused(url):
    refused([user([image(url)])])


def test_input_audio_and_file_data_become_inline_data():
    wav = base64.b64encode(b"RIFF\x00\x00\x00\x00WAVE").decode()
    pdf = "data:application/pdf;base64," + base64.b64encode(b"%PDF-1.7").decode()
    body = build([user([{"type": "input_audio", "input_audio": {"data": wav, "format": "wav"}},
                        {"type": "file", "file": {"file_data": pdf, "filename": "a.pdf"}}])])
    assert inline(body, 0) == {"mimeType": "audio/wav", "data": wav}
    assert inline(body, 1)["mimeType"] == "application/pdf"


def test_oversized_inline_data_is_refused():
    big = "data:image/png;base64," + base64.b64encode(PNG + b"\x00" * (20 << 20)).decode()
    assert refused([user([image(big)])]).code == "request_too_large"


# -- aliases, thinking and generation config (docs/vendor-rules.md, Gemini) ------------------------


def test_search_alias_adds_google_search_4_2_5():
    body = build(ctx=make_ctx(client_model="gemini-flash-search"), tools=[tool()])
    assert body["tools"] == [{"functionDeclarations": [{"name": "get_weather",
                                                        "description": "The get_weather tool"}]},
                             {"googleSearch": {}}]
    old = build(ctx=make_ctx(client_model="g-search", upstream_model="gemini-1.5-pro"))
    assert old["tools"] == [{"googleSearchRetrieval": {}}]
    assert "tools" not in build(ctx=make_ctx(client_model="search-me"))


@pytest.mark.parametrize("model, effort, expected", [
    ("gemini-2.5-flash", None, {"includeThoughts": True}),
    ("gemini-2.5-flash", "low", {"includeThoughts": True, "thinkingBudget": 1024}),
    ("gemini-2.5-flash", "medium", {"includeThoughts": True, "thinkingBudget": 8192}),
    ("gemini-2.5-flash", "high", {"includeThoughts": True, "thinkingBudget": 24576}),
    ("gemini-2.5-flash", "none", {"thinkingBudget": 0}),
    ("gemini-2.5-pro", "none", {"includeThoughts": True, "thinkingBudget": 128}),
    ("gemini-2.5-flash-lite", "minimal", {"includeThoughts": True, "thinkingBudget": 512}),
    ("gemini-3-pro-preview", "medium", {"includeThoughts": True, "thinkingLevel": "high"}),
    ("gemini-3-pro-preview", "none", {"includeThoughts": True, "thinkingLevel": "low"}),
    ("gemini-3-flash-preview", "minimal", {"includeThoughts": True, "thinkingLevel": "minimal"}),
    ("gemini-3-flash-preview", None, {"includeThoughts": True}),
    ("gemini-2.0-flash", "high", None),
    ("gemma-3-27b-it", None, None),
])
def test_reasoning_effort_per_model_table_4_2_4(model, effort, expected):
    fields = {"reasoning_effort": effort} if effort else {}
    body = build(ctx=make_ctx(upstream_model=model), **fields)
    assert body.get("generationConfig", {}).get("thinkingConfig") == expected


@pytest.mark.parametrize("alias, model, expected", [
    ("gem-think-16000", "gemini-2.5-flash", {"includeThoughts": True, "thinkingBudget": 16000}),
    ("gem-think-99999", "gemini-2.5-flash", {"includeThoughts": True, "thinkingBudget": 24576}),
    ("gem-think-0", "gemini-2.5-flash", {"thinkingBudget": 0}),
    ("gem-think-0", "gemini-2.5-pro", {"includeThoughts": True, "thinkingBudget": 128}),
    ("gem-think-4096-search", "gemini-2.5-pro",
     {"includeThoughts": True, "thinkingBudget": 4096}),
    ("gem-think-2000", "gemini-3-flash-preview",
     {"includeThoughts": True, "thinkingLevel": "medium"}),
])
def test_think_budget_alias_4_2_4(alias, model, expected):
    body = build(ctx=make_ctx(client_model=alias, upstream_model=model), reasoning_effort="low")
    assert body["generationConfig"]["thinkingConfig"] == expected


def test_invalid_reasoning_effort_is_refused():
    refused(reasoning_effort="extreme")
    refused(reasoning_effort=["low"])


def test_generation_config_mapping():
    body = build(temperature=1.7, top_p=0.9, top_k=40, presence_penalty=0.5,
                 frequency_penalty=-0.5, seed=42, max_tokens=100, max_completion_tokens=200,
                 stop="END", n=1, ctx=make_ctx(upstream_model="gemini-2.0-flash"))
    assert body["generationConfig"] == {
        "temperature": 1.7, "topP": 0.9, "topK": 40, "presencePenalty": 0.5,
        "frequencyPenalty": -0.5, "seed": 42, "maxOutputTokens": 200, "stopSequences": ["END"]}


def test_max_tokens_stop_list_and_candidate_count():
    config = build(max_tokens=50, stop=["a", "b"], n=3,
                   ctx=make_ctx(upstream_model="gemini-2.0-flash"))["generationConfig"]
    assert config == {"maxOutputTokens": 50, "stopSequences": ["a", "b"], "candidateCount": 3}
    assert "generationConfig" not in build(stop=[], ctx=make_ctx(upstream_model="x"))


@pytest.mark.parametrize("fields", [
    {"stop": ["1", "2", "3", "4", "5", "6"]}, {"stop": [1]}, {"stop": 5},
    {"temperature": "hot"}, {"temperature": True}, {"seed": 1.5}, {"max_tokens": 0},
    {"max_completion_tokens": "10"}, {"n": 0}, {"n": "2"},
    {"response_format": {"type": "yaml"}}, {"response_format": "json"},
])
def test_invalid_generation_fields_are_refused(fields):
    refused(**fields)


def test_n_above_one_cannot_be_streamed():
    refused(n=2, ctx=make_ctx(stream=True))


def test_response_format_json_object_and_json_schema():
    config = build(response_format={"type": "json_object"},
                   ctx=make_ctx(upstream_model="x"))["generationConfig"]
    assert config == {"responseMimeType": "application/json"}
    schema = {"type": "object", "title": "Answer", "additionalProperties": False,
              "properties": {"answer": {"type": "string"}, "score": {"type": ["number", "null"]}},
              "required": ["answer", "score"]}
    config = build(response_format={"type": "json_schema", "json_schema": {
        "name": "answer", "strict": True, "schema": schema}},
        ctx=make_ctx(upstream_model="x"))["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseSchema": {
        "type": "object", "properties": {"answer": {"type": "string"},
                                         "score": {"type": "number", "nullable": True}},
        "required": ["answer", "score"]}}
    assert "generationConfig" not in build(response_format={"type": "text"},
                                           ctx=make_ctx(upstream_model="x"))


def test_unmapped_fields_are_never_copied_req_3_gem_r1():
    fields = {k: "x" for k in DROPPED} | {"foo": 1, "logprobs": True, "top_logprobs": 3,
                                          "stream_options": {"include_usage": True},
                                          "parallel_tool_calls": False, "modalities": ["text"]}
    assert not set(fields) & MAPPED
    body = build(ctx=make_ctx(upstream_model="gemini-2.0-flash"), **fields)
    assert set(body) == {"contents", "safetySettings"}
    text = json.dumps(body)
    for name in fields:
        assert f'"{name}":' not in text


# -- schema cleanup (docs/vendor-rules.md, "Tool schemas cleaned for Gemini") -------------------


def declared(parameters: Any) -> dict[str, Any]:
    return build(tools=[tool("f", parameters)])["tools"][0]["functionDeclarations"][0][
        "parameters"]


def test_schema_cleanup_4_2_3():
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "urn:x",
        "title": "Args", "type": "object", "additionalProperties": False, "strict": True,
        "$defs": {"Unit": {"type": "string", "enum": ["c", "f"], "description": "Unit"}},
        "properties": {
            "city": {"type": "string", "examples": ["Paris"], "default": "Paris",
                     "description": "The city"},
            "unit": {"$ref": "#/$defs/Unit", "default": "c"},
            "when": {"type": "string", "format": "date-time"},
            "id": {"type": "string", "format": "uuid", "minLength": 3},
            "count": {"type": "integer", "format": "int32", "minimum": 0},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "tags": {"type": ["array", "null"], "items": {"const": "x"}},
            "either": {"oneOf": [{"type": "integer"}, {"type": "boolean"}]},
            "merged": {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}},
                                  "required": ["a"]},
                                 {"properties": {"b": {"type": "integer"}}}]},
            "properties": {"type": "string"},
        },
        "required": ["city", "ghost", "properties"],
    }
    assert declared(schema) == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "The city Default: \"Paris\""},
            "unit": {"type": "string", "enum": ["c", "f"], "description": "Unit Default: \"c\""},
            "when": {"type": "string", "format": "date-time"},
            "id": {"type": "string", "minLength": 3},
            "count": {"type": "integer", "format": "int32", "minimum": 0},
            "note": {"type": "string", "nullable": True},
            "tags": {"type": "array", "nullable": True,
                     "items": {"enum": ["x"], "type": "string"}},
            "either": {"anyOf": [{"type": "integer"}, {"type": "boolean"}]},
            "merged": {"type": "object", "properties": {"a": {"type": "string"},
                                                        "b": {"type": "integer"}},
                       "required": ["a"]},
            "properties": {"type": "string"},
        },
        "required": ["city", "properties"],
    }


def test_recursive_ref_is_cut_and_definitions_are_read():
    schema = {"type": "object", "definitions": {
        "Node": {"type": "object", "properties": {"next": {"$ref": "#/definitions/Node"},
                                                  "v": {"type": "integer"}}}},
        "properties": {"head": {"$ref": "#/definitions/Node"},
                       "lost": {"$ref": "#/definitions/Missing"}}}
    assert declared(schema) == {"type": "object", "properties": {
        "head": {"type": "object", "properties": {"next": {"type": "object"},
                                                  "v": {"type": "integer"}}},
        "lost": {"type": "object"}}}


def test_exponential_ref_expansion_is_refused():
    defs = {f"D{i}": {"type": "object", "properties": {"a": {"$ref": f"#/$defs/D{i + 1}"},
                                                       "b": {"$ref": f"#/$defs/D{i + 1}"}}}
            for i in range(30)}
    defs["D30"] = {"type": "string"}
    err = refused(tools=[tool("f", {"$defs": defs, "$ref": "#/$defs/D0"})])
    assert "too large" in err.message


# -- whole bodies (docs/vendor-rules.md, GEM-N1..N3) -----------------------------------------------


def parse(name_or_body: str | bytes | dict, ex: GeminiExchange | None = None) -> dict[str, Any]:
    if isinstance(name_or_body, dict):
        body = json.dumps(name_or_body).encode()
    elif isinstance(name_or_body, str):
        body = fixture(name_or_body)
    else:
        body = name_or_body
    return json.loads((ex or exchange()).parse_body(200, (), body))


def test_text_body():
    out = parse("body_text.json")
    assert out["id"] == "chatcmpl-test0123456789" and out["object"] == "chat.completion"
    assert out["created"] == 1735689600 and out["model"] == "gem"
    assert out["choices"] == [{"index": 0, "message": {
        "role": "assistant", "content": "Hello! How can I help you today? 😊", "refusal": None},
        "logprobs": None, "finish_reason": "stop"}]
    assert out["usage"] == {"prompt_tokens": 4, "completion_tokens": 10, "total_tokens": 14,
                            "prompt_tokens_details": {"cached_tokens": 0},
                            "completion_tokens_details": {"reasoning_tokens": 0}}


def test_thinking_body_splits_thoughts_and_counts_usage_gem_n2():
    out = parse("body_thinking.json")
    message = out["choices"][0]["message"]
    assert message["content"] == "Autumn moonlight—\na worm digs silently\ninto the chestnut."
    assert message["reasoning_content"] == "**Composing a haiku**\n\nAutumn imagery, 5-7-5…"
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"] == {"prompt_tokens": 1204, "completion_tokens": 86, "total_tokens": 1290,
                            "prompt_tokens_details": {"cached_tokens": 1024},
                            "completion_tokens_details": {"reasoning_tokens": 68}}


def test_function_call_body_gem_n1_tc_4():
    out = parse("body_function_calls.json")
    message = out["choices"][0]["message"]
    assert message["content"] == "Let me check."
    calls = message["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time", "list_alerts"]
    assert [c["function"]["arguments"] for c in calls] == \
        ['{"city":"Paris","unit":"celsius"}', '{"tz":"Asia/Tokyo"}', "{}"]
    assert calls[1]["id"] == "fc-7b2e91"
    for c in (calls[0], calls[2]):
        assert c["id"].startswith("call_") and len(c["id"]) == 29 and c["id"][5:].isalnum()
    assert calls[0]["id"] != calls[2]["id"]
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert out["usage"]["prompt_tokens"] == 130 and out["usage"]["completion_tokens"] == 85
    assert out["usage"]["total_tokens"] == 215
    assert out["usage"]["completion_tokens_details"] == {"reasoning_tokens": 40}


def test_ids_come_from_the_injected_entropy_o_1_tc_4():
    a = parse("body_function_calls.json", exchange(ctx=make_ctx(seed=1)))
    b = parse("body_function_calls.json", exchange(ctx=make_ctx(seed=1)))
    c = parse("body_function_calls.json", exchange(ctx=make_ctx(seed=2)))
    assert a == b and a != c


def test_tool_only_answer_has_null_content_o_4():
    out = parse(cand({"functionCall": {"name": "now", "args": {}}}, finish="STOP"))
    assert out["choices"][0]["message"]["content"] is None
    assert out["choices"][0]["finish_reason"] == "tool_calls"


def test_foreign_or_overlong_vendor_ids_are_replaced_but_kept_for_the_round_trip_tc_4():
    long_id = "x" * 41
    out = parse(cand({"functionCall": {"id": long_id, "name": "now"}}, finish="STOP"))
    tc = out["choices"][0]["message"]["tool_calls"][0]
    assert tc["id"].startswith("call_") and tc["extra_content"]["google"]["function_call_id"] \
        == long_id


def test_blocked_prompt_is_a_non_retryable_400_gem_n3():
    with pytest.raises(UpstreamError) as e:
        parse("body_prompt_blocked.json")
    err = e.value
    assert (err.status, err.upstream_status, err.kind, err.type, err.code) == \
        (400, 400, "status", "invalid_request_error", "content_filter")
    assert "SAFETY" in err.message and not verdict(err).retry


def test_safety_candidate_without_parts_is_an_empty_filtered_answer_gem_n3():
    out = parse("body_safety_candidate.json")
    assert out["choices"][0]["message"]["content"] == ""
    assert out["choices"][0]["finish_reason"] == "content_filter"


@pytest.mark.parametrize("reason, expected", [
    ("STOP", "stop"), ("FINISH_REASON_UNSPECIFIED", "stop"), ("OTHER", "stop"),
    ("LANGUAGE", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"),
    ("RECITATION", "content_filter"), ("BLOCKLIST", "content_filter"),
    ("PROHIBITED_CONTENT", "content_filter"), ("SPII", "content_filter"),
    ("IMAGE_SAFETY", "content_filter"), ("IMAGE_PROHIBITED_CONTENT", "content_filter"),
    ("IMAGE_RECITATION", "content_filter"), ("MALFORMED_FUNCTION_CALL", "stop"),
    ("UNEXPECTED_TOOL_CALL", "stop"), ("TOO_MANY_TOOL_CALLS", "stop"), ("max_tokens", "length"),
    ("SOMETHING_NEW", "stop"), (None, "stop"),
])
def test_finish_reason_table_0_4(reason, expected):
    out = parse(cand({"text": "x"}, finish=reason))
    assert out["choices"][0]["finish_reason"] == expected
    result = stream(sse(cand({"text": "x"}, finish=reason or "STOP")))
    assert result["finish"] == (expected if reason else "stop")


def test_several_candidates_become_several_choices():
    body = {"candidates": [
        {"content": {"parts": [{"text": "B"}]}, "finishReason": "MAX_TOKENS", "index": 1},
        {"content": {"parts": [{"text": "A"}]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2}}
    out = parse(body, exchange(n=2))
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in out["choices"]] \
        == [(0, "A", "stop"), (1, "B", "length")]
    assert out["usage"]["total_tokens"] == 5


def test_inline_image_answer_becomes_a_markdown_data_url_gem_n1():
    out = parse(cand({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                     finish="STOP"))
    assert out["choices"][0]["message"]["content"] == "![image](data:image/png;base64,iVBORw0KGgo=)"


@pytest.mark.parametrize("body, kind", [
    (b"<html>502 Bad Gateway</html>", "decode"), (b"", "decode"), (b"[1, 2]", "decode"),
    (b"\xff\xfe", "decode"), (b"[" * 100000, "decode"),
    (b'{"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", '
     b'"args": {"x": 1e999}}}]}}]}', "decode"),
    (b'{"candidates": []}', "empty"), (b'{"usageMetadata": {}}', "empty"),
])
def test_malformed_2xx_bodies_are_upstream_errors(body, kind):
    with pytest.raises(UpstreamError) as e:
        exchange().parse_body(200, (), body)
    assert e.value.kind == kind


def test_error_object_with_status_200_is_an_error_err_4():
    body = json.dumps({"error": {"code": 429, "message": "Slow down", "status":
                                 "RESOURCE_EXHAUSTED"}}).encode()
    with pytest.raises(UpstreamError) as e:
        exchange().parse_body(200, (), body)
    assert (e.value.upstream_status, e.value.type, e.value.code) == \
        (429, "rate_limit_error", "RESOURCE_EXHAUSTED")
    assert verdict(e.value).retry


# -- errors (docs/contracts.md, "Error status mapping"; docs/vendor-rules.md, GEM-S7) -------------


@pytest.mark.parametrize("name, status, client, etype, code, retry_after, retryable", [
    ("error_400.json", 400, 400, "invalid_request_error", "INVALID_ARGUMENT", None, False),
    ("error_400_key.json", 401, 401, "authentication_error", "API_KEY_INVALID", None, True),
    ("error_403.json", 403, 403, "permission_error", "PERMISSION_DENIED", None, True),
    ("error_429.json", 429, 429, "rate_limit_error", "RESOURCE_EXHAUSTED", "27", True),
    ("error_500.json", 500, 502, "server_error", "INTERNAL", None, True),
])
def test_google_error_bodies(name, status, client, etype, code, retry_after, retryable):
    http = int(name[6:9])
    err = exchange().parse_error(http, (("content-type", "application/json"),), fixture(name))
    raw = json.loads(fixture(name))
    raw = raw[0] if isinstance(raw, list) else raw
    assert err.message == raw["error"]["message"]
    assert (err.kind, err.upstream_status, err.status, err.type, err.code) == \
        ("status", status, client, etype, code)
    assert dict(err.headers).get("retry-after") == retry_after
    assert verdict(err).retry is retryable


def test_upstream_retry_after_header_wins_and_plain_text_errors_err_3():
    err = exchange().parse_error(503, (("Retry-After", "5"),), fixture("error_429.json"))
    assert err.headers == (("Retry-After", "5"),)
    text = exchange().parse_error(502, (), b"<html>bad gateway</html>")
    assert (text.message, text.code, text.type) == ("<html>bad gateway</html>", "502",
                                                    "server_error")
    empty = exchange().parse_error(404, (), b"")
    assert empty.type == "not_found_error" and empty.status == 404


@pytest.mark.parametrize("delay, expected", [("27s", "27"), ("0.2s", "1"), ("3.000s", "3"),
                                             ("soon", None), ("1e9s", None)])
def test_retry_delay_forms_err_2(delay, expected):
    body = json.dumps({"error": {"code": 429, "message": "m", "status": "RESOURCE_EXHAUSTED",
                                 "details": [{"@type": "x.RetryInfo", "retryDelay": delay}]}})
    err = exchange().parse_error(429, (), body.encode())
    assert dict(err.headers).get("retry-after") == expected


# -- streams (docs/vendor-rules.md, GEM-S1, GEM-S2, GEM-S6, GEM-S7) --------------------------------


def test_crlf_text_stream_gives_text_stop_and_usage_gem_s1():
    result = stream(fixture("stream_text_crlf.sse"), include_usage=True)
    assert result["content"] == "Hello from Gemini — naïve café 🚀 done."
    assert result["finish"] == "stop" and result["reasoning"] == ""
    assert result["usage"] == {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21,
                               "prompt_tokens_details": {"cached_tokens": 0},
                               "completion_tokens_details": {"reasoning_tokens": 0}}
    assert result["end"] == ("done", json.dumps(result["usage"], sort_keys=True))
    # one role chunk, three text chunks, finish, usage
    assert len(result["chunks"]) == 6


def test_thinking_stream_reasoning_then_text_in_part_order_gem_s5():
    result = stream(fixture("stream_thinking.sse"), include_usage=True)
    assert result["reasoning"] == ("**Weighing the primes**\n\nI need the primes below 20 — "
                                   "2, 3, 5, 7… then sum them.")
    assert result["content"] == "The primes below 20 sum to **77** (日本語でも 77)."
    kinds = [next(iter(json.loads(c[6:])["choices"][0]["delta"]), None)
             for c in result["chunks"][1:-2]]
    assert kinds == ["reasoning_content", "reasoning_content", "content", "content"]
    assert result["usage"]["prompt_tokens_details"] == {"cached_tokens": 1024}
    assert result["usage"]["completion_tokens"] == 86
    assert result["usage"]["completion_tokens_details"] == {"reasoning_tokens": 68}


def test_parallel_function_calls_stream_with_distinct_ids_gem_s1_s2():
    result = stream(fixture("stream_parallel_calls.sse"), include_usage=True)
    calls = result["tool_calls"]
    assert [(c["name"], c["arguments"]) for c in calls] == [
        ("get_weather", '{"city":"Paris","unit":"celsius"}'),
        ("get_weather", '{"city":"Tokyo","unit":"celsius"}')]
    assert calls[0]["id"] != calls[1]["id"]
    assert result["finish"] == "tool_calls"
    assert result["reasoning"].startswith("The user wants")
    assert (result["usage"]["prompt_tokens"], result["usage"]["completion_tokens"],
            result["usage"]["total_tokens"]) == (88, 87, 175)
    assert result["usage"]["completion_tokens_details"] == {"reasoning_tokens": 51}


def test_calls_across_chunks_continue_indexes_and_empty_text_is_silent_s_3_s_7():
    result = stream(fixture("stream_calls_across_chunks.sse"))
    assert result["content"] == "Checking both."
    assert [c["name"] for c in result["tool_calls"]] == ["lookup", "lookup", "now"]
    assert result["tool_calls"][2]["arguments"] == "{}"
    assert json.loads(result["tool_calls"][0]["arguments"]) == {
        "q": 'naïve "quotes" \\ back', "n": 3, "nested": {"z": [1, 2.5, None, True], "a": "日本"}}
    assert len({c["id"] for c in result["tool_calls"]}) == 3
    assert result["finish"] == "tool_calls" and result["usage"] is None


def test_trailing_usage_only_object_updates_the_usage_chunk_gem_s6_dec_4():
    result = stream(fixture("stream_trailing_usage.sse"), include_usage=True)
    assert result["content"] == "Short answer." and result["finish"] == "stop"
    assert result["usage"]["total_tokens"] == 20
    assert result["usage"]["completion_tokens_details"] == {"reasoning_tokens": 12}
    assert json.loads(result["end"][1]) == result["usage"]


def test_finish_chunk_waits_for_eof_and_later_content_is_ignored_gem_s6():
    decoder = GeminiStreamDecoder(make_ctx(stream=True))
    first = decoder.feed(sse(cand({"text": "a"}, finish="STOP")))
    assert [json.loads(i.data[6:])["choices"][0]["delta"] for i in first] == \
        [{"role": "assistant", "content": ""}, {"content": "a"}]
    assert decoder.feed(sse(cand({"text": "ignored"}), {"error": {"code": 500}}, "junk")) == []
    items = decoder.close()
    assert json.loads(items[0].data[6:])["choices"][0]["finish_reason"] == "stop"
    assert isinstance(items[1], StreamDone) and len(items) == 2


def test_usage_is_the_last_seen_not_a_sum_u_3():
    data = sse(cand({"text": "a"}, usageMetadata={"promptTokenCount": 9, "totalTokenCount": 9}),
               cand({"text": "b"}, finish="STOP",
                    usageMetadata={"promptTokenCount": 9, "candidatesTokenCount": 2}))
    decoder = GeminiStreamDecoder(make_ctx(stream=True))
    decoder.feed(data)
    items = decoder.close()
    assert decoder.usage == items[-1].usage and decoder.usage["total_tokens"] == 11


def test_usage_chunk_only_when_asked_s_5():
    without = stream(fixture("stream_text_crlf.sse"), include_usage=False)
    assert without["usage"] is None and all(b'"usage"' not in c for c in without["chunks"])
    assert json.loads(without["end"][1])["total_tokens"] == 21  # stats still get it


def test_prompt_blocked_before_content_is_a_400_failure_gem_n3():
    items, kind = run([fixture("stream_prompt_blocked.sse")])
    assert kind is None and len(items) == 1
    assert items[0][:8] == ("failed", "gemini blocked the prompt (PROHIBITED_CONTENT)",
                            "status", 400, 400, "invalid_request_error", "content_filter", ())


def test_block_after_content_is_a_content_filter_finish():
    result = stream(sse(cand({"text": "Hi"}),
                        {"promptFeedback": {"blockReason": "OTHER"}}))
    assert result["content"] == "Hi" and result["finish"] == "content_filter"


def test_safety_finish_after_content():
    result = stream(fixture("stream_safety_finish.sse"))
    assert result["content"] == "Here is how you" and result["finish"] == "content_filter"
    assert result["end"][0] == "done"


def test_max_tokens_spent_on_thinking_is_not_an_error():
    result = stream(fixture("stream_max_tokens_thinking.sse"), include_usage=True)
    assert result["content"] == "" and result["finish"] == "length"
    assert result["usage"]["completion_tokens"] == 256


def test_error_object_mid_stream_gem_s7():
    items, kind = run([fixture("stream_error_midstream.sse")])
    assert kind is None
    openai_grammar(items, False)
    assert [i[0] for i in items] == ["chunk", "chunk", "failed"]
    assert items[-1][1:7] == ("The model is overloaded. Please try again later.", "status",
                              502, 503, "server_error", "UNAVAILABLE")


def test_cut_stream_is_truncated_dec_5():
    items, kind = run([fixture("stream_cut.sse")])
    assert kind is None and items[-1][0] == "failed" and items[-1][2] == "truncated"
    assert run([b""])[0][-1][2] == "truncated"  # nothing at all
    # a cut inside a trailing object after the finish: the answer is whole
    items, kind = run([fixture("stream_trailing_usage.sse")[:-30]])
    assert kind is None and items[-1][0] == "done"


def test_lf_cr_and_crlf_framing_give_the_same_items_sse_1():
    crlf = fixture("stream_text_crlf.sse")
    reference = run([crlf])
    assert run([crlf.replace(b"\r\n", b"\n")]) == reference
    assert run([crlf.replace(b"\r\n", b"\r")]) == reference
    assert run([b"\xef\xbb\xbf: keep-alive\n" + crlf.replace(b"data: ", b"data:")]) == reference


def test_done_marker_and_empty_events_are_ignored():
    data = b"data:\n\ndata: [DONE]\n\n" + sse(cand({"text": "x"}, finish="STOP"))
    assert stream(data)["content"] == "x"


@pytest.mark.parametrize("data, kind", [
    (b"data: {not json}\n\n", "invalid_json"),
    (b"data: 42\n\n", "invalid_json"),
    (b"data: [1]\n\n", "invalid_json"),
    (b"data: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": "
     b"{\"name\": \"f\", \"args\": {\"x\": -1e999}}}]}}]}\n\n", "invalid_json"),
    (b"data: " + b"[" * 70 + b"]" * 70 + b"\n\n", "invalid_json"),
    (b"data: \xff\n\n", "invalid_utf8"),
])
def test_malformed_events_raise_decode_error_dec_2(data, kind):
    decoder = GeminiStreamDecoder(make_ctx(stream=True))
    with pytest.raises(DecodeError) as e:
        decoder.feed(data)
    assert e.value.kind == kind
    with pytest.raises(DecodeError):  # stays failed
        decoder.close()


def test_items_before_an_error_are_returned_and_the_error_comes_next_dec_1():
    decoder = GeminiStreamDecoder(make_ctx(stream=True))
    items = decoder.feed(sse(cand({"text": "ok"})) + b"data: {oops}\n\n")
    assert len(items) == 2
    with pytest.raises(DecodeError) as e:
        decoder.feed(b"")
    assert e.value.kind == "invalid_json"


def test_feed_after_close_is_a_decode_error():
    decoder = GeminiStreamDecoder(make_ctx(stream=True))
    decoder.feed(fixture("stream_text_crlf.sse"))
    decoder.close()
    with pytest.raises(DecodeError):
        decoder.feed(b"data: {}\n\n")


def test_list_wrapped_objects_are_accepted():
    assert stream(b"data: [" + json.dumps(cand({"text": "x"}, finish="STOP")).encode()
                  + b"]\n\n")["content"] == "x"


def test_exchange_stream_decoder_uses_the_context():
    ex = exchange(ctx=make_ctx(stream=True, include_usage=True, client_model="alias"))
    decoder = ex.stream_decoder()
    items = decoder.feed(fixture("stream_text_crlf.sse")) + decoder.close()
    chunks = [i for i in items if isinstance(i, StreamChunk)]
    assert all(json.loads(c.data[6:])["model"] == "alias" for c in chunks)
    assert isinstance(items[-1], StreamDone) and not any(isinstance(i, StreamFailed)
                                                        for i in items)


# -- properties (DEC-1, DEC-2, TC-2) ---------------------------------------------------------------


@pytest.mark.parametrize("name", STREAMS)
def test_every_single_cut_and_one_byte_feeds_agree_dec_1(name):
    data = fixture(name)
    reference = run([data])
    assert run([data[i:i + 1] for i in range(len(data))]) == reference
    for i in range(1, len(data)):
        assert run([data[:i], data[i:]]) == reference, i


@pytest.mark.parametrize("name", STREAMS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_split_of_a_fixture_gives_identical_output_dec_1(name, data):
    payload = fixture(name)
    positions = data.draw(st.lists(st.integers(0, len(payload)), max_size=30))
    include_usage = data.draw(st.booleans())
    ctx = make_ctx(stream=True, include_usage=include_usage)
    whole = run([payload], make_ctx(stream=True, include_usage=include_usage))
    assert run(cut(payload, positions), ctx) == whole


_LINES = sorted({line for name in STREAMS for line in fixture(name).splitlines(keepends=True)})


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_LINES), st.binary(max_size=40),
                          st.sampled_from([b"\r", b"\n", b"\r\n", b"data: ", b"{", b"}", b"\xff",
                                           b'"', b"data: {}\n\n", b"data: []\n\n"])),
                max_size=25),
       st.lists(st.integers(0, 4000), max_size=8))
def test_arbitrary_bytes_raise_only_decode_error_and_stay_split_invariant(pieces, positions):
    payload = b"".join(pieces)
    items, kind = run([payload])  # anything but DecodeError fails the test
    assert run(cut(payload, [p for p in positions if p <= len(payload)])) == (items, kind)
    openai_grammar(items, False)


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                       st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
_json = st.recursive(_json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=10), _json, max_size=5), min_size=1,
                max_size=4),
       st.lists(st.integers(0, 3000), max_size=6))
def test_assembled_arguments_equal_the_serialization_of_args_tc_2(args_list, positions):
    parts = [{"functionCall": {"name": f"f{i}", "args": a}} for i, a in enumerate(args_list)]
    payload = sse(cand(*parts[:1]), cand(*parts[1:], finish="STOP"))
    items, kind = run(cut(payload, [p for p in positions if p <= len(payload)]))
    result = openai_grammar(items, False)
    assert kind is None and result["finish"] == "tool_calls"
    assert [c["arguments"] for c in result["tool_calls"]] == \
        [dumps(a).decode() for a in args_list]
    for c, a in zip(result["tool_calls"], args_list):
        assert json.loads(c["arguments"], object_pairs_hook=list) == \
            json.loads(json.dumps(a), object_pairs_hook=list)  # key order preserved
    whole = json.loads(exchange().parse_body(200, (), json.dumps(
        cand(*parts, finish="STOP")).encode()))
    assert [c["function"]["arguments"] for c in whole["choices"][0]["message"]["tool_calls"]] \
        == [dumps(a).decode() for a in args_list]


# -- function-call arguments streamed in pieces (docs/vendor-rules.md, GEM-S3) ---------------------


def fcall(name: str | None = None, *pieces: dict[str, Any], more: bool | None = None,
          **fields: Any) -> dict[str, Any]:
    """A ``functionCall`` part: ``name``, ``partialArgs`` ``pieces``, ``willContinue`` ``more``."""
    fc: dict[str, Any] = {} if name is None else {"name": name}
    fc.update(fields)
    if pieces:
        fc["partialArgs"] = list(pieces)
    if more is not None:
        fc["willContinue"] = more
    return {"functionCall": fc}


def arg(path: Any, more: bool = False, **value: Any) -> dict[str, Any]:
    """One PartialArg: ``arg("$.a", stringValue="x", more=True)``."""
    piece = {"jsonPath": path, **value}
    if more:
        piece["willContinue"] = True
    return piece


def generated_ids(vendor_ids: list[str | None]) -> list[str]:
    """The ids TC-4 gives calls with these vendor ids, in order, with make_ctx's entropy."""
    ctx = make_ctx(stream=True)
    return [call_id(ctx, vid, n, sep=":") for n, vid in enumerate(vendor_ids)]


def calls_of(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(c["id"], c["name"], c["arguments"]) for c in result["tool_calls"]]


def kinds_of(result: dict[str, Any]) -> list[str]:
    """What each chunk after the role chunk carries: content, reasoning_content, tool_calls."""
    return [next(iter(json.loads(c[6:])["choices"][0]["delta"]), "finish")
            for c in result["chunks"][1:] if json.loads(c[6:])["choices"]]


def streamed(*parts: dict[str, Any], finish: str = "STOP") -> dict[str, Any]:
    """Each part in its own chunk, the finish on the last one."""
    return stream(sse(*[cand(p) for p in parts[:-1]], cand(parts[-1], finish=finish)))


_WEATHER = '{"location":"Boston, MA","unit":"fahrenheit","days":3}'
_THERMOSTAT = ('{"room":"living room","target":21.5,"eco":true,"note":null,'
               '"schedule":[{"day":"mon","hour":7},{"day":"tue","hour":8}]}')


def test_vertex_pieces_become_one_whole_call_each_gem_s3():
    data = fixture("stream_partial_args.sse")
    result = stream(data, include_usage=True)
    assert calls_of(result) == list(zip(generated_ids([None, None, None]),
                                        ["get_weather", "set_thermostat", "get_time"],
                                        [_WEATHER, _THERMOSTAT, '{"tz":"America/New_York"}']))
    signature = json.loads(data.split(b"\r\n\r\n")[1][6:])["candidates"][0]["content"][
        "parts"][0]["thoughtSignature"]
    assert [c.get("extra_content") for c in result["tool_calls"]] == [
        {"google": {"thought_signature": signature}}, None, None]
    assert result["reasoning"].startswith("**Checking the forecast first**")
    assert result["content"] == "" and result["finish"] == "tool_calls"
    assert (result["usage"]["prompt_tokens"], result["usage"]["completion_tokens"]) == (142, 249)
    # each call is one chunk holding its id, name and whole arguments (GEM-S1)
    assert kinds_of(result) == ["reasoning_content", "tool_calls", "tool_calls", "tool_calls",
                                "finish"]


def test_pieces_interleaved_with_text_and_thoughts_gem_s3():
    result = stream(fixture("stream_partial_args_interleaved.sse"))
    search = {"query": 'stream "partial" args — naïve\\café\n日本',
              "filters": {"lang": "en", "tags": ["vertex", "gemini"]}, "max results": 5,
              "exact": False}
    assert calls_of(result) == [
        ("fc_7a1b2c3d", "search_docs", dumps(search).decode()),
        ("fc_9d8e7f60", "open_page",  # ended by the finishReason alone
         '{"url":"https://cloud.example/docs/function-calling#streaming"}')]
    assert result["tool_calls"][0]["extra_content"]["google"]["function_call_id"] == "fc_7a1b2c3d"
    assert result["tool_calls"][1]["extra_content"] == {
        "google": {"function_call_id": "fc_9d8e7f60"}}
    assert result["content"] == ("Let me look that up in the docs. Searching… "
                                 "Then I'll open the first hit.")
    assert result["reasoning"] == "The query should mention both products."
    # text goes out as it comes; a call when its last piece is in
    assert kinds_of(result) == ["content", "content", "reasoning_content", "tool_calls",
                                "content", "tool_calls", "finish"]
    assert result["finish"] == "tool_calls"


@pytest.mark.parametrize("name", ["stream_partial_args.sse", "stream_partial_args_interleaved.sse"])
def test_pieces_fed_one_byte_at_a_time_give_the_same_calls_gem_s3_dec_1(name):
    data = fixture(name)
    items, kind = run([data[i:i + 1] for i in range(len(data))])
    assert kind is None and items == run([data])[0]
    assert calls_of(openai_grammar(items, False)) == calls_of(stream(data))


def test_stream_cut_in_the_middle_of_a_call_is_truncated_gem_s3_dec_5():
    items, kind = run([fixture("stream_partial_args_cut.sse")])
    assert kind is None
    result = openai_grammar(items, False)
    assert result["content"] == "Setting it now." and result["tool_calls"] == []
    assert items[-1][:3] == ("failed", "gemini stream ended before a finishReason", "truncated")
    # cut between two events, the call still open: the same
    items, kind = run([sse(cand(fcall("f", more=True)),
                           cand(fcall(None, arg("$.a", stringValue="x", more=True), more=True)))])
    assert kind is None and [i[0] for i in items] == ["failed"] and items[0][2] == "truncated"


def test_two_streamed_calls_in_a_row_and_then_a_whole_one_gem_s3():
    result = streamed(fcall("f", more=True), fcall(None, arg("$.a", numberValue=1), more=True),
                      {"functionCall": {}},
                      fcall("f", arg("$.a", numberValue=2), more=True),
                      fcall(None, arg("$.b", boolValue=True)),
                      fcall("g", args={"z": None}))
    assert calls_of(result) == list(zip(generated_ids([None] * 3), ["f", "f", "g"],
                                        ['{"a":1}', '{"a":2,"b":true}', '{"z":null}']))


def test_a_call_left_open_ends_when_another_starts_gem_s3():
    result = streamed(fcall("f", arg("$.a", stringValue="x", more=True), more=True),
                      fcall("g", more=True), fcall(None, arg("$.b", numberValue=2)),
                      fcall("g", arg("$.c", numberValue=3), more=True),  # a second g: same name
                      fcall("g", args={"d": 4}))  # ... but whole, with args: a new call
    assert [(c["name"], c["arguments"]) for c in result["tool_calls"]] == [
        ("f", '{"a":"x"}'), ("g", '{"b":2}'), ("g", '{"c":3}'), ("g", '{"d":4}')]


def test_a_streamed_call_with_an_id_ends_when_another_id_starts_gem_s3():
    result = streamed(fcall("f", more=True, id="one"), fcall("f", arg("$.a", numberValue=1),
                                                             more=True, id="one"),
                      fcall("f", more=True, id="two"), fcall(None, arg("$.a", numberValue=2)))
    assert [(c["id"], c["arguments"]) for c in result["tool_calls"]] == [
        ("one", '{"a":1}'), ("two", '{"a":2}')]


def test_open_call_at_the_finish_is_sent_with_what_came_gem_s3():
    result = streamed(fcall("f", more=True),
                      fcall(None, arg("$.a", stringValue="half", more=True), more=True),
                      {"text": ""}, finish="MAX_TOKENS")
    assert [(c["name"], c["arguments"]) for c in result["tool_calls"]] == [("f", '{"a":"half"}')]
    assert result["finish"] == "length"
    blocked = stream(sse(cand({"text": "Hi"}), cand(fcall("f", more=True)),
                         {"promptFeedback": {"blockReason": "OTHER"}}))
    assert [(c["name"], c["arguments"]) for c in blocked["tool_calls"]] == [("f", "{}")]
    assert blocked["finish"] == "content_filter"


def test_an_error_while_a_call_is_open_drops_it_gem_s3_gem_s7():
    items, kind = run([sse(cand({"text": "a"}), cand(fcall("f", more=True)),
                           {"error": {"code": 503, "status": "UNAVAILABLE", "message": "busy"}})])
    assert kind is None and openai_grammar(items, False)["tool_calls"] == []
    assert items[-1][0] == "failed" and items[-1][1] == "busy"


def test_pieces_without_a_call_and_bare_ends_are_no_calls_gem_s3():
    result = streamed(fcall(None, arg("$.a", stringValue="x"), more=True), {"functionCall": {}},
                      fcall(None, arg("$.b", numberValue=1)), {"text": "done"})
    assert result["tool_calls"] == [] and result["content"] == "done"
    assert result["finish"] == "stop"


def test_id_and_signature_may_come_on_a_later_part_and_a_name_may_repeat_gem_s3_gem_r4():
    result = streamed(fcall("f", more=True),
                      {**fcall("f", arg("$.a", numberValue=1), more=True, id="fc-1"),
                       "thoughtSignature": "sig1"},
                      {**fcall(None, arg("$.b", numberValue=2), id="fc-other"),
                       "thoughtSignature": "sig2"})
    (only,) = result["tool_calls"]
    assert (only["id"], only["arguments"]) == ("fc-1", '{"a":1,"b":2}')
    assert only["extra_content"] == {"google": {"thought_signature": "sig1",
                                                "function_call_id": "fc-1"}}
    foreign = streamed(fcall("f", more=True, id="fc/1"), fcall(None))
    assert foreign["tool_calls"][0]["id"] == generated_ids([None])[0]  # TC-4
    assert foreign["tool_calls"][0]["extra_content"] == {"google": {"function_call_id": "fc/1"}}


@pytest.mark.parametrize("pieces, args", [
    # a string that goes on is appended to; one that does not is replaced
    ([arg("$.a", stringValue="x", more=True), arg("$.a", stringValue="y", more=True),
      arg("$.a", stringValue="z"), arg("$.b", stringValue="1"), arg("$.b", stringValue="2")],
     {"a": "xyz", "b": "2"}),
    # a piece without a value ends a string; another kind of value replaces it
    ([arg("$.a", stringValue="x", more=True), arg("$.a"), arg("$.a", stringValue="y"),
      arg("$.b", stringValue="x", more=True), arg("$.b", numberValue=-0.5)],
     {"a": "y", "b": -0.5}),
    # pieces of several strings interleaved
    ([arg("$.a", stringValue="a1", more=True), arg("$.b", stringValue="b1", more=True),
      arg("$.a", stringValue="a2"), arg("$.b", stringValue="b2")], {"a": "a1a2", "b": "b1b2"}),
    # nested objects and arrays, in the order of their first paths; nulls in every form
    ([arg("$.o.p[0].q", numberValue=1), arg("$.o.p[0].r[0][0]", boolValue=False),
      arg("$.o.s", nullValue="NULL_VALUE"), arg("$.o.p[1]", nullValue=None),
      arg("$.t", stringValue="")],
     {"o": {"p": [{"q": 1, "r": [[False]]}, None], "s": None}, "t": ""}),
    # an index past the end pads with nulls, and a null slot takes an object later
    ([arg("$.a[2]", stringValue="x"), arg("$.b[1].c", numberValue=1),
      arg("$.b[0].d", numberValue=2)], {"a": [None, None, "x"], "b": [{"d": 2}, {"c": 1}]}),
    # RFC 9535 bracket names and their escapes
    ([arg("$['it\\'s']", numberValue=1), arg('$["say \\"hi\\""]', numberValue=2),
      arg("$['caf\\u00e9']['a.b']", numberValue=3), arg("$.naïve", numberValue=4),
      arg("$['\"']", numberValue=5), arg("$['']", numberValue=6)],
     {"it's": 1, 'say "hi"': 2, "café": {"a.b": 3}, "naïve": 4, '"': 5, "": 6}),
    # the same member by two spellings is one member
    ([arg("$.a", stringValue="x", more=True), arg("$['a']", stringValue="y")], {"a": "xy"}),
])
def test_arguments_are_assembled_from_the_paths_gem_s3(pieces, args):
    result = streamed(fcall("f", more=True), fcall(None, *pieces))
    assert result["tool_calls"][0]["arguments"] == dumps(args).decode()
    assert json.loads(result["tool_calls"][0]["arguments"], object_pairs_hook=list) == \
        json.loads(json.dumps(args), object_pairs_hook=list)  # key order kept


def test_args_on_a_streamed_call_are_its_start_gem_s3():
    result = streamed(fcall("f", more=True, args={"k": [1], "m": "x"}),
                      fcall(None, arg("$.k[1]", numberValue=2), arg("$.n", numberValue=3)))
    assert result["tool_calls"][0]["arguments"] == '{"k":[1,2],"m":"x","n":3}'


def test_a_long_string_in_many_pieces_is_joined_once_gem_s3():
    words = [f"w{i:05d} " for i in range(20000)]
    pieces = [arg("$.text", stringValue=w, more=True) for w in words]
    result = streamed(fcall("f", more=True), fcall(None, *pieces, more=True), fcall(None))
    assert json.loads(result["tool_calls"][0]["arguments"]) == {"text": "".join(words)}


_BAD_PIECES = [
    # paths
    [arg("location", stringValue="x")], [arg("$", stringValue="x")], [arg("$[0]", numberValue=1)],
    [arg("$.a[-1]", numberValue=1)], [arg("$.a[01]", numberValue=1)], [arg("$..a", numberValue=1)],
    [arg("$.a[*]", numberValue=1)], [arg("$.a.", numberValue=1)], [arg("$['open", numberValue=1)],
    [arg("$['bad\\q']", numberValue=1)], [arg("$.a b", numberValue=1)],
    [arg("$.a[1000000000]", numberValue=1)], [arg("$" + ".a" * 65, numberValue=1)],
    [arg(5, numberValue=1)], [{"stringValue": "no path"}], ["not an object"],
    # values
    [arg("$.a", numberValue="1")], [arg("$.a", numberValue=True)], [arg("$.a", boolValue="true")],
    [arg("$.a", stringValue=5)], [arg("$.a", stringValue="x", numberValue=1)],
    # shapes that contradict each other
    [arg("$.a", stringValue="s"), arg("$.a.b", numberValue=1)],
    [arg("$.a", stringValue="s", more=True), arg("$.a[0]", numberValue=1)],
    [arg("$.a.b", numberValue=1), arg("$.a", numberValue=2)],
    [arg("$.a.b", numberValue=1), arg("$.a[0]", numberValue=1)],
    [arg("$.a[0]", numberValue=1), arg("$.a.b", numberValue=1)],
    [arg("$.a[0]", numberValue=1), arg("$.a", numberValue=1)],
    [arg("$.a[99999]", numberValue=1)],
]


@pytest.mark.parametrize("pieces", _BAD_PIECES)
def test_malformed_pieces_are_a_decode_error_after_what_came_before_gem_s3_dec_1(pieces):
    data = sse(cand({"text": "ok"}), cand(fcall("f", more=True)), cand(fcall(None, *pieces)),
               cand({"text": "never"}, finish="STOP"))
    items, kind = run([data])
    assert kind == "invalid_partial_args"
    assert openai_grammar(items, False)["content"] == "ok"
    assert run([data[i:i + 1] for i in range(len(data))]) == (items, kind)  # DEC-1
    body = cand(fcall("f", more=True), fcall(None, *pieces), finish="STOP")
    with pytest.raises(UpstreamError) as e:
        parse(body)
    assert e.value.kind == "decode" and "malformed function call" in e.value.message


@pytest.mark.parametrize("partial", [{"jsonPath": "$.a"}, "x", 5])
def test_partial_args_that_is_not_a_list_is_a_decode_error_gem_s3(partial):
    _, kind = run([sse(cand(fcall("f", more=True)),
                       cand({"functionCall": {"partialArgs": partial}}))])
    assert kind == "invalid_partial_args"


def test_padding_past_the_end_is_bounded_per_response_gem_s3():
    ok = [arg(f"$.a{i}[4999]", numberValue=1) for i in range(2)]
    padded = json.loads(streamed(fcall("f", *ok))["tool_calls"][0]["arguments"])
    assert padded["a1"] == [None] * 4999 + [1]
    _, kind = run([sse(cand(fcall("f", *ok)), cand(fcall("g", arg("$.b[3]", numberValue=1))))])
    assert kind == "invalid_partial_args"


def test_whole_bodies_ignore_stray_pieces_and_assemble_streamed_calls_gem_s3_gem_n1():
    stray = parse(cand({"text": "Hi"}, fcall(None, arg("$.a", stringValue="x")),
                       {"functionCall": {}}, fcall(None, more=True), finish="STOP"))
    message = stray["choices"][0]["message"]
    assert message["content"] == "Hi" and "tool_calls" not in message
    assert stray["choices"][0]["finish_reason"] == "stop"
    whole = parse(cand(fcall("f", more=True, id="fc1"), {"text": "between"},
                       fcall(None, arg("$.a", stringValue="x", more=True), more=True),
                       fcall(None, arg("$.a", stringValue="y")), fcall("g", args={"b": 1}),
                       fcall("h", more=True), finish="STOP"))
    message = whole["choices"][0]["message"]
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"])
            for c in message["tool_calls"]] == list(zip(generated_ids(["fc1", None, None]),
                                                        ["f", "g", "h"],
                                                        ['{"a":"xy"}', '{"b":1}', "{}"]))
    assert message["content"] == "between" and whole["choices"][0]["finish_reason"] == "tool_calls"


def _path(path: str, key: str) -> str:
    """``path`` + the member ``key``, as shorthand when it can be, else bracketed."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"{path}.{key}"
    return f'{path}["{json.dumps(key, ensure_ascii=False)[1:-1]}"]'


def _leaves(value: Any, path: str = "$") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, _path(path, k))]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, f"{path}[{i}]")]
    return [(path, value)]


#: argument values Vertex can stream: every object and array holds a leaf
_streamable = st.recursive(_json_leaf, lambda inner: st.one_of(
    st.lists(inner, min_size=1, max_size=3),
    st.dictionaries(st.text(max_size=6), inner, min_size=1, max_size=3)), max_leaves=12)


@st.composite
def _streamed_answer(draw: Any) -> tuple[bytes, list[tuple[str, str]], str]:
    """Parts of 1-3 calls (streamed in pieces, some whole) with text between them, grouped
    into chunks: (SSE bytes, the expected (name, arguments), the expected text)."""
    parts: list[dict[str, Any]] = []
    expected: list[tuple[str, str]] = []
    text = ""
    n_calls = draw(st.integers(1, 3))
    for n in range(n_calls):
        args = draw(st.dictionaries(st.text(max_size=6), _streamable, max_size=4))
        name = f"fn_{n}"
        expected.append((name, dumps(args).decode()))
        if draw(st.booleans()):
            saying = draw(st.sampled_from(["Let me check. ", "ok ", "日本 "]))
            parts.append({"text": saying})
            text += saying
        if draw(st.integers(0, 4)) == 0:
            parts.append(fcall(name, args=args))
            continue
        pieces: list[dict[str, Any]] = []
        for path, value in _leaves(args):
            if isinstance(value, str):
                cuts = sorted(draw(st.lists(st.integers(0, len(value)), max_size=3)))
                bits = [value[a:b] for a, b in zip([0, *cuts], [*cuts, len(value)])]
                pieces += [arg(path, more=k < len(bits) - 1, stringValue=bit)
                           for k, bit in enumerate(bits)]
            elif value is None:
                pieces.append(arg(path, nullValue="NULL_VALUE"))
            else:
                pieces.append(arg(path, **{"boolValue" if isinstance(value, bool)
                                           else "numberValue": value}))
        groups: list[list[dict[str, Any]]] = []
        while pieces:
            size = draw(st.integers(1, 3))
            groups.append(pieces[:size])
            pieces = pieces[size:]
        start = groups.pop(0) if groups and draw(st.booleans()) else []
        parts.append(fcall(name, *start, more=True))
        end = draw(st.sampled_from(["bare", "last", "finish"] if n == n_calls - 1
                                   else ["bare", "last"]))
        for k, group in enumerate(groups):
            parts.append(fcall(None, *group, more=not (end == "last" and k == len(groups) - 1)))
            if draw(st.integers(0, 3)) == 0:
                parts.append({"text": "(thinking)", "thought": True})
        if end == "bare" or end == "last" and not groups:
            parts.append({"functionCall": {}})
    chunks: list[dict[str, Any]] = []
    while parts:
        size = draw(st.integers(1, 3))
        chunks.append(cand(*parts[:size]))
        parts = parts[size:]
    chunks.append(cand({"text": ""}, finish="STOP"))
    return sse(*chunks), expected, text


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_streamed_answer(), st.lists(st.integers(0, 6000), max_size=12))
def test_any_streamed_arguments_at_any_split_assemble_to_the_args_gem_s3_dec_1(answer, positions):
    data, expected, text = answer
    items, kind = run(cut(data, [p for p in positions if p <= len(data)]))
    assert kind is None and (items, kind) == run([data])
    result = openai_grammar(items, False)
    assert [(c["name"], c["arguments"]) for c in result["tool_calls"]] == expected
    assert len({c["id"] for c in result["tool_calls"]}) == len(expected)
    assert result["content"] == text and result["finish"] == "tool_calls"
    # the same parts as one whole body give the same calls
    parts = [p for line in data.split(b"\r\n\r\n") if line
             for p in json.loads(line[6:])["candidates"][0]["content"]["parts"]]
    message = parse(cand(*parts, finish="STOP"))["choices"][0]["message"]
    assert [(c["function"]["name"], c["function"]["arguments"])
            for c in message["tool_calls"]] == expected


_message = st.fixed_dictionaries({"role": st.sampled_from(
    ["user", "assistant", "system", "tool", "developer", "function", "x"])}, optional={
    "content": st.one_of(st.none(), st.text(max_size=20), st.lists(st.dictionaries(
        st.sampled_from(["type", "text", "image_url", "input_audio", "file"]),
        st.one_of(st.sampled_from(["text", "image_url", "input_audio", "file",
                                   "https://img.example/a.png", "data:image/png;base64,AAAA"]),
                  _json), max_size=3), max_size=3), _json),
    "tool_calls": st.one_of(_json, st.lists(st.fixed_dictionaries(
        {"id": st.sampled_from(["a", "b"]), "function": st.fixed_dictionaries(
            {"name": st.sampled_from(["f", "g h", "ns.f"])},
            optional={"arguments": st.sampled_from(["", "{}", '{"x":1}', "[]", "x"])})}),
        max_size=2)),
    "tool_call_id": st.sampled_from(["a", "b", "c"]), "name": st.sampled_from(["f", "1"])})


@st.composite
def _conversation(draw: Any) -> list[dict[str, Any]]:
    """A well-formed history: user turns, parallel tool calls, every result, in any order."""
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append({"role": draw(st.sampled_from(["system", "developer"])),
                         "content": draw(st.text(max_size=10))})
    for _ in range(draw(st.integers(1, 3))):
        messages.append(user(draw(st.one_of(st.text(min_size=1, max_size=20), st.lists(
            st.one_of(st.builds(lambda t: {"type": "text", "text": t},
                                st.text(min_size=1, max_size=8)),
                      st.just(image("https://img.example/a.png")),
                      st.just(image("data:image/png;base64,iVBORw0KGgo="))),
            min_size=1, max_size=3)))))
        if draw(st.booleans()):
            ids = draw(st.lists(st.text("abc_-.:", min_size=1, max_size=6), unique=True,
                                min_size=1, max_size=3))
            messages.append({"role": "assistant", "content": draw(st.none() | st.text(max_size=9)),
                             "tool_calls": [call(i, name=draw(st.sampled_from(["f", "ns.g:v1"])),
                                                 args=json.dumps(draw(st.dictionaries(
                                                     st.text(max_size=5), _json, max_size=3))))
                                            for i in ids]})
            messages += [{"role": "tool", "tool_call_id": i,
                          "content": draw(st.text(max_size=10) | _json.map(json.dumps))}
                         for i in draw(st.permutations(ids))]
    return messages


@settings(max_examples=100, deadline=None)
@given(_conversation(), st.sampled_from(["gemini-2.5-pro", "gemini-3-pro-preview"]))
def test_every_call_turn_is_answered_by_one_turn_of_as_many_responses_4_2_2(messages, model):
    body = build(messages, ctx=make_ctx(upstream_model=model,
                                        images={"https://img.example/a.png": ("image/png", PNG)}))
    contents = body["contents"]
    for k, content in enumerate(contents):
        assert content["parts"] and content["role"] in ("user", "model")
        calls = [p for p in content["parts"] if "functionCall" in p]
        if calls:
            responses = contents[k + 1]["parts"]
            assert len(responses) == len(calls) and all("functionResponse" in p
                                                        for p in responses)
            assert {r["functionResponse"]["name"] for r in responses} <= \
                {c["functionCall"]["name"] for c in calls}
            if model.startswith("gemini-3"):
                assert calls[0]["thoughtSignature"] == SIGNATURE_PLACEHOLDER


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.lists(_message, max_size=5), _conversation()), st.dictionaries(st.sampled_from(
    ["tools", "tool_choice", "stop", "n", "temperature", "max_tokens", "response_format",
     "reasoning_effort", "seed", "top_k"]), _json, max_size=4),
    st.booleans())
def test_builder_returns_an_exchange_or_a_client_error(messages, fields, streamed):
    req = {"model": "gem", "messages": messages, **fields}
    ctx = make_ctx(stream=streamed, images={"https://img.example/a.png": ("image/png", PNG)})
    try:
        ex = build_exchange(req, ctx)
    except (ClientError, ImagesNeeded):
        return
    body = json.loads(ex.request.body)
    assert body["contents"] and set(body) <= {"contents", "systemInstruction", "tools",
                                              "toolConfig", "safetySettings",
                                              "generationConfig"}


def test_usage_modality_details_reach_the_client():
    """Audio and image prompt counts, and audio answer counts, become OpenAI-style details;
    text is the rest of each count and gets none."""
    from uniapi_core.vendors.gemini import _usage

    usage = _usage({"promptTokenCount": 300, "candidatesTokenCount": 40,
                    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 100},
                                            {"modality": "AUDIO", "tokenCount": 150},
                                            {"modality": "IMAGE", "tokenCount": 50}],
                    "toolUsePromptTokenCount": 7,
                    "toolUsePromptTokensDetails": [{"modality": "AUDIO", "tokenCount": 7}],
                    "candidatesTokensDetails": [{"modality": "AUDIO", "tokenCount": 40}]})
    assert usage["prompt_tokens"] == 307
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0, "audio_tokens": 157,
                                              "image_tokens": 50}
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 0, "audio_tokens": 40}
