"""The Cohere v2 translator: request building, whole bodies, streams, errors (docs/vendor-rules.md).

Rule ids: docs/contracts.md (shared), docs/vendor-rules.md (CO-*). Fixtures in
``tests/data/cohere/`` are realistic Cohere v2 payloads written for these tests from
Cohere's documented examples and event shapes. Every emitted stream is parsed back and checked
against the OpenAI chunk grammar by ``openai_grammar`` from the fuzz target (S-1..S-8, TC-3).
"""

from __future__ import annotations

import importlib.util
import json
import random
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uniapi_core.config.model import Provider, ProviderPreferences
from uniapi_core.errors import ClientError, DecodeError, UpstreamError
from uniapi_core.request import parse_openai_chat
from uniapi_core.routing.retry import verdict
from uniapi_core.vendors.base import ChatContext, StreamDone, StreamFailed
from uniapi_core.vendors.cohere import (
    DROPPED,
    FINISH_REASONS,
    MAPPED,
    CohereExchange,
    CohereStreamDecoder,
    build_exchange,
    chat_url,
)

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data" / "cohere"
STREAMS = sorted(p.name for p in DATA.glob("stream_*.sse"))
KEY = "co-TESTKEY"


def _load_fuzz_target():
    spec = importlib.util.spec_from_file_location("fuzz_cohere", ROOT / "fuzz" / "fuzz_cohere.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz = _load_fuzz_target()
normalize = fuzz.normalize
openai_grammar = fuzz.openai_grammar


def fixture(name: str) -> bytes:
    return (DATA / name).read_bytes()


def make_ctx(*, stream: bool = False, include_usage: bool = False, base_url: str | None = None,
             headers: tuple[tuple[str, str], ...] = (), seed: int = 7,
             api_key: str | None = KEY) -> ChatContext:
    provider = Provider(provider="cohere", base_url=base_url, api=(KEY,),
                        preferences=ProviderPreferences(headers=headers))
    return ChatContext(client_model="co-alias", upstream_model="command-a-03-2025",
                       provider=provider, api_key=api_key, stream=stream,
                       include_usage=include_usage, response_id="chatcmpl-test0123456789",
                       created=1735689600, entropy=random.Random(seed))


def user(content: Any = "Hi") -> dict[str, Any]:
    return {"role": "user", "content": content}


def call(cid: str, name: str = "get_weather", args: str = '{"city":"Paris"}') -> dict[str, Any]:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}


def tool(name: str = "get_weather", parameters: Any = None) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": name, "description": f"The {name} tool"}
    if parameters is not None:
        fn["parameters"] = parameters
    return {"type": "function", "function": fn}


def exchange(messages: list[dict[str, Any]] | None = None, *, ctx: ChatContext | None = None,
             **fields: Any) -> CohereExchange:
    return build_exchange({"model": "co-alias", "messages": messages or [user()], **fields},
                          ctx or make_ctx())


def build(messages: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    return json.loads(exchange(messages, **fields).request.body)


def refused(messages: list[dict[str, Any]] | None = None, **fields: Any) -> ClientError:
    with pytest.raises(ClientError) as e:
        build(messages, **fields)
    assert e.value.status == 400 and e.value.type == "invalid_request_error"
    return e.value


def run(pieces: list[bytes], ctx: ChatContext | None = None) -> tuple[list, str | None]:
    decoder = CohereStreamDecoder(ctx or make_ctx(stream=True))
    items: list = []
    try:
        for piece in pieces:
            items += decoder.feed(piece)
        items += decoder.close()
    except DecodeError as e:
        return normalize(items), e.kind
    return normalize(items), None


def stream(data: bytes, include_usage: bool = False) -> dict[str, Any]:
    items, kind = run([data], make_ctx(stream=True, include_usage=include_usage))
    assert kind is None, kind
    result = openai_grammar(items, include_usage)
    result["end"] = items[-1]
    return result


def sse(*objects: dict[str, Any], nl: str = "\n") -> bytes:
    return b"".join(f"event: {o['type']}{nl}".encode() + b"data: "
                    + json.dumps(o, ensure_ascii=False).encode() + (nl * 2).encode()
                    for o in objects)


def cut(data: bytes, positions: list[int]) -> list[bytes]:
    bounds = [0, *sorted(positions), len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]


START = {"type": "message-start", "id": "m1", "delta": {"message": {"role": "assistant"}}}


def end(reason: str = "COMPLETE", usage: Any = None) -> dict[str, Any]:
    delta: dict[str, Any] = {"finish_reason": reason}
    if usage is not None:
        delta["usage"] = usage
    return {"type": "message-end", "delta": delta}


def text(t: str, index: int = 0) -> dict[str, Any]:
    return {"type": "content-delta", "index": index,
            "delta": {"message": {"content": {"text": t}}}}


def tc_start(i: int, cid: str, name: str, args: str = "") -> dict[str, Any]:
    return {"type": "tool-call-start", "index": i, "delta": {"message": {"tool_calls": {
        "id": cid, "type": "function", "function": {"name": name, "arguments": args}}}}}


def tc_delta(i: int, frag: str) -> dict[str, Any]:
    return {"type": "tool-call-delta", "index": i,
            "delta": {"message": {"tool_calls": {"function": {"arguments": frag}}}}}


def tc_end(i: int) -> dict[str, Any]:
    return {"type": "tool-call-end", "index": i}


# -- URL and headers (CO-1) --------------------------------------------------------------------


@pytest.mark.parametrize("base, expected", [
    (None, "https://api.cohere.com/v2/chat"),
    ("", "https://api.cohere.com/v2/chat"),
    ("https://api.cohere.com", "https://api.cohere.com/v2/chat"),
    ("https://api.cohere.com/", "https://api.cohere.com/v2/chat"),
    ("https://api.cohere.com/v2/chat", "https://api.cohere.com/v2/chat"),
    ("https://api.cohere.com/v1/chat", "https://api.cohere.com/v2/chat"),
    ("https://api.cohere.com/v1", "https://api.cohere.com/v2/chat"),
    ("https://api.cohere.com/v2", "https://api.cohere.com/v2/chat"),
    ("https://proxy.example/cohere/v1/chat/", "https://proxy.example/cohere/v2/chat"),
    ("http://127.0.0.1:9/compat", "http://127.0.0.1:9/compat/v2/chat"),
    ("https://gw.example/v2/chat?tenant=a", "https://gw.example/v2/chat?tenant=a"),
    ("https://gw.example/v1/chat?tenant=a", "https://gw.example/v2/chat?tenant=a"),
])
def test_chat_url_forms_co_1(base, expected):
    assert chat_url(base) == expected


def test_request_line_and_headers_co_1():
    req = exchange(ctx=make_ctx(base_url="http://127.0.0.1:9")).request
    assert req.method == "POST" and req.url == "http://127.0.0.1:9/v2/chat"
    headers = dict(req.headers)
    assert headers["authorization"] == f"Bearer {KEY}"
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "application/json"
    assert dict(exchange(ctx=make_ctx(stream=True)).request.headers)["accept"] == \
        "text/event-stream"
    assert "authorization" not in dict(exchange(ctx=make_ctx(api_key=None)).request.headers)


def test_preference_headers_replace_same_named_ones():
    ctx = make_ctx(headers=(("Accept", "application/json; q=1"), ("X-Client-Name", "uniapi")))
    headers = exchange(ctx=ctx).request.headers
    assert ("X-Client-Name", "uniapi") in headers
    assert [v for k, v in headers if k.lower() == "accept"] == ["application/json; q=1"]


def test_body_is_compact_json_with_model_and_stream():
    req = exchange(ctx=make_ctx(stream=True)).request
    assert b", " not in req.body and b": " not in req.body
    body = json.loads(req.body)
    assert body["model"] == "command-a-03-2025" and body["stream"] is True
    assert build()["stream"] is False


# -- messages (docs/vendor-rules.md, "Cohere request body"; REQ-2, TC-5) -----------------------


def test_full_history_mapping():
    body = build([
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use "},
                                          {"type": "text", "text": "metric."}]},
        user([{"type": "text", "text": "Weather?"},
              {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA",
                                                  "detail": "high"}}]),
        {"role": "assistant", "content": "Let me check.",
         "tool_calls": [call("call_a"), call("call_b", "get_time", "")]},
        {"role": "tool", "tool_call_id": "call_a", "content": "18°C"},
        {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "9:00"}]},
        {"role": "assistant", "content": "It is 18°C."},
        user("Thanks"),
    ])
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Use metric."},
        {"role": "user", "content": [
            {"type": "text", "text": "Weather?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
        {"role": "assistant", "tool_plan": "Let me check.", "tool_calls": [
            {"id": "call_a", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_b", "type": "function",
             "function": {"name": "get_time", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "18°C"},
        {"role": "tool", "tool_call_id": "call_b", "content": "9:00"},
        {"role": "assistant", "content": "It is 18°C."},
        {"role": "user", "content": "Thanks"},
    ]


def test_assistant_tool_calls_without_text_have_no_tool_plan_and_arguments_are_verbatim():
    args = '{ "q" : "caf\\u00e9",  "n": 1 }'
    body = build([user(), {"role": "assistant", "content": None,
                           "tool_calls": [call("c1", "search", args)]},
                  {"role": "tool", "tool_call_id": "c1", "content": "[]"}])
    assert body["messages"][1] == {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "search", "arguments": args}}]}


def test_empty_assistant_turns_are_dropped():
    body = build([user(), {"role": "assistant", "content": ""}, user("again")])
    assert [m["role"] for m in body["messages"]] == ["user", "user"]


def test_foreign_tool_ids_are_sanitised_injectively_tc_5():
    body = build([user(), {"role": "assistant", "content": None, "tool_calls": [
        call("functions.get:0"), call("functions_get_0"), call("x" * 60)]},
        {"role": "tool", "tool_call_id": "functions.get:0", "content": "a"},
        {"role": "tool", "tool_call_id": "functions_get_0", "content": "b"},
        {"role": "tool", "tool_call_id": "x" * 60, "content": "c"}])
    ids = [c["id"] for c in body["messages"][1]["tool_calls"]]
    assert len(set(ids)) == 3 and ids[1] == "functions_get_0"
    assert all(0 < len(i) <= 40 and i.replace("_", "a").replace("-", "a").isalnum()
               for i in ids)
    assert [m["tool_call_id"] for m in body["messages"][2:]] == ids


@pytest.mark.parametrize("messages, code", [
    ([user(), {"role": "tool", "tool_call_id": "nope", "content": "x"}], "invalid_tool_call_id"),
    ([{"role": "tool", "tool_call_id": "c1", "content": "x"}], "invalid_tool_call_id"),
    ([user(), {"role": "assistant", "tool_calls": [call("c1", args="[1]")]}],
     "invalid_arguments"),
    ([user(), {"role": "assistant", "tool_calls": [call("c1", args="{bad")]}],
     "invalid_arguments"),
    ([user(), {"role": "assistant", "tool_calls": [call("c1", name="bad name")]}],
     "invalid_tool_name"),
    ([user(), {"role": "assistant", "tool_calls": [{"id": "c1"}]}], "invalid_request"),
    ([{"role": "function", "content": "x"}], "invalid_request"),
    ([user([{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}])],
     "unsupported_content"),  # Cohere takes no audio: a channel mismatch (issue 20)
    ([{"role": "system", "content": "only a system prompt"}], "invalid_request"),
    (["not an object"], "invalid_request"),
])
def test_invalid_histories_are_400_req_2(messages, code):
    assert refused(messages).code == code


def test_messages_must_be_a_non_empty_list():
    for bad in (None, [], "hi"):
        with pytest.raises(ClientError):
            build_exchange({"model": "x", "messages": bad}, make_ctx())
    with pytest.raises(ClientError):
        build_exchange([], make_ctx())  # type: ignore[arg-type]


# -- tools, sampling, unmapped fields (docs/vendor-rules.md, "Cohere request body"; REQ-3) ------


def test_tools_keep_the_openai_function_shape():
    body = build(tools=[tool("get_weather", {"type": "object", "properties": {
        "city": {"type": "string"}}, "required": ["city"]}), tool("noop")])
    assert body["tools"] == [
        {"type": "function", "function": {"name": "get_weather",
                                          "description": "The get_weather tool",
                                          "parameters": {"type": "object", "properties": {
                                              "city": {"type": "string"}},
                                              "required": ["city"]}}},
        {"type": "function", "function": {"name": "noop", "description": "The noop tool",
                                          "parameters": {"type": "object", "properties": {}}}}]
    assert "tool_choice" not in body


@pytest.mark.parametrize("choice, expected", [("auto", None), ("required", "REQUIRED"),
                                              ("none", "NONE")])
def test_tool_choice_strings(choice, expected):
    body = build(tools=[tool()], tool_choice=choice)
    assert body.get("tool_choice") == expected and len(body["tools"]) == 1


def test_named_tool_choice_is_required_with_tools_filtered():
    body = build(tools=[tool("a"), tool("b")],
                 tool_choice={"type": "function", "function": {"name": "b"}})
    assert body["tool_choice"] == "REQUIRED"
    assert [t["function"]["name"] for t in body["tools"]] == ["b"]
    refused(tools=[tool("a")], tool_choice={"type": "function", "function": {"name": "zz"}})
    refused(tools=[tool("a")], tool_choice="sometimes")


def test_sampling_fields_are_renamed():
    body = build(temperature=0.2, top_p=0.8, top_k=40, seed=11, frequency_penalty=0.1,
                 presence_penalty=0.3, max_tokens=50, max_completion_tokens=70,
                 stop=["a", "b"], logprobs=True)
    assert {k: body[k] for k in ("temperature", "p", "k", "seed", "frequency_penalty",
                                 "presence_penalty", "max_tokens", "stop_sequences",
                                 "logprobs")} == {
        "temperature": 0.2, "p": 0.8, "k": 40, "seed": 11, "frequency_penalty": 0.1,
        "presence_penalty": 0.3, "max_tokens": 70, "stop_sequences": ["a", "b"],
        "logprobs": True}
    assert "top_p" not in body and "top_k" not in body and "stop" not in body
    assert build(stop="END")["stop_sequences"] == ["END"]
    assert build(max_tokens=5)["max_tokens"] == 5


@pytest.mark.parametrize("fields", [
    {"stop": ["1", "2", "3", "4", "5", "6"]}, {"stop": [1]}, {"temperature": "hot"},
    {"top_k": 1.5}, {"max_tokens": 0}, {"max_tokens": True}, {"n": 2}, {"n": "1"},
    {"response_format": {"type": "yaml"}}, {"tools": "x"}, {"tools": [{"type": "function"}]},
    {"tools": [tool("bad name!")]}, {"temperature": 1e999},
])
def test_values_cohere_cannot_take_are_400(fields):
    refused(**fields)


def test_response_format_mapping():
    assert build(response_format={"type": "json_object"})["response_format"] == \
        {"type": "json_object"}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert build(response_format={"type": "json_schema", "json_schema": {
        "name": "x", "schema": schema}})["response_format"] == \
        {"type": "json_object", "json_schema": schema}
    assert "response_format" not in build(response_format={"type": "text"})


def test_unmapped_fields_are_never_copied_req_3():
    body = build(n=1, logit_bias={"1": 2}, user="u", stream_options={"include_usage": True},
                 parallel_tool_calls=False, top_logprobs=2, store=True, metadata={"a": "b"},
                 frobnicate=1, reasoning_effort="high")
    assert set(body) <= {"model", "messages", "stream"}
    assert set(DROPPED).isdisjoint(MAPPED)


def test_builders_are_pure():
    req = {"model": "x", "messages": [user(), {"role": "assistant", "tool_calls": [
        call("weird id/1")]}, {"role": "tool", "tool_call_id": "weird id/1", "content": "ok"}]}
    assert build_exchange(req, make_ctx()).request == build_exchange(req, make_ctx()).request


def test_the_request_model_builds_the_same_request():
    """The builder reads the request model (docs/architecture.md, "The request model"): a dict
    is parsed first, so the dict and its ``ChatRequest`` give the same bytes and errors."""
    req = {"model": "x", "messages": [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        user([{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": "https://x/a.png"}]),
        {"role": "assistant", "content": "Checking.", "tool_calls": [call("functions.get:0")]},
        {"role": "tool", "tool_call_id": "functions.get:0", "content": "18"}],
        "tools": [tool()], "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "temperature": 0.5, "top_k": 3, "stop": "END", "max_completion_tokens": 9,
        "response_format": {"type": "json_object"}, "logprobs": False}
    assert build_exchange(parse_openai_chat(req), make_ctx()).request == \
        build_exchange(req, make_ctx()).request
    brokens: list[dict[str, Any]] = [{"temperature": "hot"}, {"tools": {}}, {"n": 2},
                                     {"stop": [1]}]
    for broken in brokens:
        errors = []
        for r in ({**req, **broken}, parse_openai_chat({**req, **broken})):
            with pytest.raises(ClientError) as e:
                build_exchange(r, make_ctx())
            errors.append((e.value.message, e.value.code))
        assert errors[0] == errors[1]


def test_readings_kept_from_the_dict_builder():
    """Byte for byte what the dict builder sent: a ``text`` key is read before ``refusal``
    whatever the part's type, ``content: []`` stays a list (null is ""), and a named
    ``tool_choice`` must say ``"type": "function"``."""
    body = build([user(), {"role": "assistant", "content": [
        {"type": "refusal", "text": "a", "refusal": "b"}, {"type": "text", "refusal": "c"}]}])
    assert body["messages"][1] == {"role": "assistant", "content": "ac"}
    assert build([user([])])["messages"] == [{"role": "user", "content": []}]
    assert build([user(None)])["messages"] == [{"role": "user", "content": ""}]
    assert refused(tools=[tool()], tool_choice={"function": {"name": "get_weather"}}).code == \
        "invalid_value"
    assert refused([user(["bare"])]).message == \
        "messages[0].content[0]: part type None is not supported by cohere"
    with pytest.raises(ClientError, match="the request must be a JSON object"):
        build_exchange([], make_ctx())  # type: ignore[arg-type]


# -- whole bodies (docs/vendor-rules.md, "Cohere answers and streams") -------------------------


def parse(name: str, ctx: ChatContext | None = None) -> dict[str, Any]:
    return json.loads(CohereExchange(exchange().request, ctx or make_ctx()).parse_body(
        200, (), fixture(name)))


def test_text_body():
    out = parse("body_text.json")
    assert out["id"] == "chatcmpl-test0123456789" and out["object"] == "chat.completion"
    assert out["model"] == "co-alias" and out["created"] == 1735689600
    (choice,) = out["choices"]
    assert choice["message"] == {"role": "assistant", "content": "Bonjour, le monde — ça va ?",
                                 "refusal": None}
    assert choice["finish_reason"] == "stop"
    # U-5: tokens are the counts, cached_tokens the cached part, billed_units kept as given
    assert out["usage"] == {"prompt_tokens": 671, "completion_tokens": 9, "total_tokens": 680,
                            "prompt_tokens_details": {"cached_tokens": 640},
                            "completion_tokens_details": {"reasoning_tokens": 0},
                            "billed_units": {"input_tokens": 5, "output_tokens": 9}}


def test_tool_body_shows_the_plan_and_keeps_calls_verbatim():
    out = parse("body_tools.json")
    msg = out["choices"][0]["message"]
    assert msg["content"] == "I will check the weather in Toronto and Paris."
    assert msg["tool_calls"] == [
        {"id": "get_weather_1byjy32y4hvq", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"location":"Toronto"}'}},
        {"id": "get_weather_qvzt1f3ye3a5", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'}}]
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert out["usage"] == {"prompt_tokens": 1390, "completion_tokens": 62, "total_tokens": 1452,
                            "prompt_tokens_details": {"cached_tokens": 1152},
                            "completion_tokens_details": {"reasoning_tokens": 0},
                            "billed_units": {"input_tokens": 37, "output_tokens": 28}}


def test_thinking_body_and_billed_units_fallback():
    out = parse("body_thinking.json")
    msg = out["choices"][0]["message"]
    assert msg["content"] == "There are 3" and msg["reasoning_content"] == "Count the r's: three."
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"] == {"prompt_tokens": 8, "completion_tokens": 50, "total_tokens": 58,
                            "prompt_tokens_details": {"cached_tokens": 0},
                            "completion_tokens_details": {"reasoning_tokens": 0},
                            "billed_units": {"input_tokens": 8, "output_tokens": 50}}


def test_body_tool_calls_with_bad_ids_and_object_arguments():
    body = json.dumps({"finish_reason": "complete", "message": {"role": "assistant",
                       "tool_calls": [{"id": "has space", "function": {"name": "f",
                                                                       "arguments": {"a": 1}}},
                                      {"function": {"name": "g", "arguments": ""}}]}}).encode()
    out = json.loads(CohereExchange(exchange().request, make_ctx()).parse_body(200, (), body))
    msg = out["choices"][0]["message"]
    assert msg["content"] is None and out["choices"][0]["finish_reason"] == "tool_calls"
    assert [c["function"]["arguments"] for c in msg["tool_calls"]] == ['{"a":1}', "{}"]
    assert all(c["id"].startswith("call_") and len(c["id"]) == 29 for c in msg["tool_calls"])
    assert out["usage"]["total_tokens"] == 0


def test_error_shaped_bodies_with_200_are_errors_err_4():
    ex = CohereExchange(exchange().request, make_ctx())
    with pytest.raises(UpstreamError) as e:
        ex.parse_body(200, (), fixture("error_400.json"))
    assert e.value.status == 502 and e.value.message.startswith("invalid request")
    with pytest.raises(UpstreamError) as e:
        ex.parse_body(200, (), b'{"finish_reason":"ERROR","message":{"content":[]}}')
    assert e.value.code == "ERROR" and verdict(e.value).retry
    for bad, kind in ((b"<html>", "decode"), (b"[1]", "decode"), (b"{}", "protocol"),
                      (b'{"a": NaN}', "decode")):
        with pytest.raises(UpstreamError) as e:
            ex.parse_body(200, (), bad)
        assert e.value.kind == kind


# -- errors (docs/vendor-rules.md, "Errors from Cohere"; docs/contracts.md) --------------------


@pytest.mark.parametrize("status, body, otype, client, retry", [
    (400, "error_400.json", "invalid_request_error", 400, False),
    (401, "error_401.json", "authentication_error", 401, True),
    (429, "error_429.json", "rate_limit_error", 429, True),
    (503, "error_503.html", "server_error", 502, True),  # 5xx: 502 (docs/contracts.md)
])
def test_error_bodies(status, body, otype, client, retry):
    ex = CohereExchange(exchange().request, make_ctx())
    err = ex.parse_error(status, (("Retry-After", "7"),), fixture(body))
    assert err.type == otype and err.status == client and err.upstream_status == status
    assert err.code == str(status) and verdict(err).retry is retry
    assert err.headers == (("Retry-After", "7"),)
    if body.endswith(".json"):
        assert err.message == json.loads(fixture(body))["message"]
    else:
        assert "503" in err.message


def test_non_standard_statuses_are_normalised():
    ex = CohereExchange(exchange().request, make_ctx())
    err = ex.parse_error(498, (), b'{"message":"invalid api token"}')
    assert (err.status, err.type, err.code, err.message) == \
        (401, "authentication_error", "498", "invalid api token")
    assert verdict(err).retry
    err = ex.parse_error(499, (), b"")
    assert err.status == 502 and err.type == "server_error" and err.code == "499"
    assert verdict(err).retry


# -- streams (docs/vendor-rules.md, "Cohere answers and streams") ------------------------------


#: stream_text.sse's message-end usage as the client gets it (U-5)
USAGE_727 = {"prompt_tokens": 727, "completion_tokens": 8, "total_tokens": 735,
             "prompt_tokens_details": {"cached_tokens": 704},
             "completion_tokens_details": {"reasoning_tokens": 0},
             "billed_units": {"input_tokens": 7, "output_tokens": 6}}


def test_text_stream_gives_text_stop_and_usage():
    r = stream(fixture("stream_text.sse"), include_usage=True)
    assert r["content"] == "Cohere streams événements in order."
    assert r["finish"] == "stop" and r["usage"] == USAGE_727
    assert r["end"] == ("done", json.dumps(USAGE_727, sort_keys=True))


def test_usage_chunk_only_when_asked_s_5():
    r = stream(fixture("stream_text.sse"), include_usage=False)
    assert r["usage"] is None and r["end"][0] == "done"


def test_tool_stream_plan_two_calls_tc_2():
    r = stream(fixture("stream_tools.sse"), include_usage=True)
    assert r["usage"] == {"prompt_tokens": 1390, "completion_tokens": 62, "total_tokens": 1452,
                          "prompt_tokens_details": {"cached_tokens": 1280},
                          "completion_tokens_details": {"reasoning_tokens": 0},
                          "billed_units": {"input_tokens": 37, "output_tokens": 28}}
    assert r["content"] == "I will look up the weather in Toronto and Tōkyō."
    assert r["finish"] == "tool_calls"
    assert r["tool_calls"] == [
        {"id": "get_weather_1byjy32y4hvq", "name": "get_weather",
         "arguments": '{"location":"Toronto, Canada","unit":"°C"}'},
        {"id": "get_weather_qvzt1f3ye3a5", "name": "get_weather",
         "arguments": '{"location":"日本 Tōkyō","note":"say \\"hi\\" 🚀\\\\"}'}]
    vendor = "".join(json.loads(line[6:])["delta"]["message"]["tool_calls"]["function"]
                     ["arguments"] for line in fixture("stream_tools.sse").decode().splitlines()
                     if line.startswith("data: ") and '"tool-call-delta"' in line
                     and '"index":1' in line)
    assert r["tool_calls"][1]["arguments"] == vendor


def test_thinking_citations_debug_and_crlf():
    r = stream(fixture("stream_thinking_crlf.sse"), include_usage=True)
    assert r["reasoning"] == "The user asks for 2+2; that is 4 — easy."
    assert r["content"] == "2 + 2 = 4 🌍" and r["finish"] == "stop"
    assert r["usage"] == {"prompt_tokens": 1036, "completion_tokens": 30, "total_tokens": 1066,
                          "prompt_tokens_details": {"cached_tokens": 1024},
                          "completion_tokens_details": {"reasoning_tokens": 0},
                          "billed_units": {"input_tokens": 12, "output_tokens": 30}}


def test_data_only_events_max_tokens_and_done():
    r = stream(fixture("stream_max_tokens_done.sse"), include_usage=True)
    assert r["content"] == "A long answer that gets cut —" and r["finish"] == "length"
    assert r["usage"] == {"prompt_tokens": 9, "completion_tokens": 10, "total_tokens": 19,
                          "prompt_tokens_details": {"cached_tokens": 0},
                          "completion_tokens_details": {"reasoning_tokens": 0},
                          "billed_units": {"input_tokens": 9, "output_tokens": 10}}


def test_tool_without_arguments_gets_braces_tc_3_and_lone_cr():
    r = stream(fixture("stream_tool_no_args_cr.sse"), include_usage=True)
    assert [(c["name"], c["arguments"]) for c in r["tool_calls"]] == \
        [("list_files", "{}"), ("get_time", '{"tz":"UTC"}')]
    assert (r["usage"]["prompt_tokens"], r["usage"]["completion_tokens"]) == (612, 20)
    assert r["usage"]["prompt_tokens_details"] == {"cached_tokens": 576}
    assert r["content"] == "" and r["finish"] == "tool_calls"


def test_content_blocked_and_empty_deltas_s_7():
    r = stream(fixture("stream_content_blocked.sse"), include_usage=True)
    assert r["content"] == "I can" and r["finish"] == "content_filter"
    assert r["usage"] == USAGE_727  # usage is counted for a blocked answer too


def test_error_finish_is_a_stream_failure():
    r = stream(fixture("stream_error_finish.sse"))
    assert r["content"] == "Partial answer" and r["finish"] is None
    assert r["end"][0] == "failed" and r["end"][6] == "ERROR"
    data = sse(START, text("x"), end("ERROR_LIMIT"))
    items, _ = run([data])
    assert items[-1][0] == "failed" and items[-1][3] == 429 and items[-1][5] == \
        "rate_limit_error"


def test_error_before_any_content_sends_nothing_to_the_client_s_9():
    items, kind = run([sse(START, end("ERROR"))])
    assert kind is None and [i[0] for i in items] == ["failed"]


def test_truncated_stream():
    r = stream(fixture("stream_cut.sse"))
    assert r["content"] == "This answer will be " and r["finish"] is None
    assert r["end"][0] == "failed" and r["end"][2] == "truncated"
    assert run([sse(START, text("a"))])[0][-1][2] == "truncated"
    assert [i[0] for i in run([b""])[0]] == ["failed"]


@pytest.mark.parametrize("reason, expected", [
    *((k, v) for k, v in FINISH_REASONS.items()), ("complete", "stop"), ("Max_Tokens", "length"),
    ("SOMETHING_NEW", "stop"), (None, "stop")])
def test_finish_reason_table(reason, expected):
    r = stream(sse(START, text("a"), end(reason)))
    assert r["finish"] == expected


def test_stop_with_calls_is_tool_calls_and_unfinished_calls_get_braces():
    r = stream(sse(START, tc_start(0, "c1", "f"), end("COMPLETE")))
    assert r["finish"] == "tool_calls" and r["tool_calls"][0]["arguments"] == "{}"


def test_tool_index_mapping_is_first_appearance_s_3():
    data = sse(START, tc_start(5, "c5", "five"), tc_start(2, "c2", "two", '{"x"'),
               tc_delta(5, '{"a":1}'), tc_delta(2, ":1}"), tc_end(2), tc_end(5),
               tc_delta(5, "ignored after end"), tc_start(2, "dup", "dup"),
               tc_delta(9, "unknown index"), end("TOOL_CALL"))
    r = stream(data)
    assert r["tool_calls"] == [{"id": "c5", "name": "five", "arguments": '{"a":1}'},
                               {"id": "c2", "name": "two", "arguments": '{"x":1}'}]


def test_vendor_ids_that_are_not_openai_safe_are_replaced_tc_4():
    r = stream(sse(START, tc_start(0, "id with spaces", "f"), tc_start(1, "x" * 41, "g"),
                   end("TOOL_CALL")))
    assert all(c["id"].startswith("call_") and len(c["id"]) == 29 for c in r["tool_calls"])


def test_events_after_message_end_are_ignored_dec_4():
    data = sse(START, text("a"), end()) + b"data: [DONE]\n\ndata: {broken\n\n\xff\xfe"
    items, kind = run([data])
    assert kind is None and items[-1][0] == "done"
    assert run([data[i:i + 1] for i in range(len(data))]) == (items, kind)


def test_unknown_events_and_type_from_event_line_sse_11():
    data = (b"event: content-delta\ndata: {\"index\":0,\"delta\":{\"message\":{\"content\":"
            b"{\"text\":\"by event name\"}}}}\n\n"
            + sse({"type": "brand-new", "delta": {}}, text(" ok")) + sse(end()))
    assert stream(data)["content"] == "by event name ok"


def test_usage_garbage_is_zero_u_4():
    data = sse(START, text("a"), end("COMPLETE", {"tokens": {"input_tokens": True,
                                                             "output_tokens": -1},
                                                  "billed_units": {"output_tokens": 4,
                                                                   "input_tokens": "9",
                                                                   "search_units": 1.5},
                                                  "cached_tokens": -3}))
    r = stream(data, include_usage=True)
    assert r["usage"] == {"prompt_tokens": 0, "completion_tokens": 4, "total_tokens": 4,
                          "prompt_tokens_details": {"cached_tokens": 0},
                          "completion_tokens_details": {"reasoning_tokens": 0},
                          "billed_units": {"output_tokens": 4}}
    r = stream(sse(START, text("a"), end()), include_usage=True)
    assert r["usage"]["total_tokens"] == 0 and r["end"] == ("done", "null")
    assert "billed_units" not in r["usage"]


def test_usage_counts_written_as_numbers_with_a_point_are_integers_u_4():
    # Cohere's SDKs type every count as a number: 1024.0 is the count 1024, an int
    usage = {"tokens": {"input_tokens": 1100.0, "output_tokens": 12.0}, "cached_tokens": 1024.0,
             "billed_units": {"input_tokens": 76.0, "output_tokens": 12, "search_units": 0.5,
                              "classifications": False}}
    r = stream(sse(START, text("a"), end("COMPLETE", usage)), include_usage=True)
    assert r["usage"] == {"prompt_tokens": 1100, "completion_tokens": 12, "total_tokens": 1112,
                          "prompt_tokens_details": {"cached_tokens": 1024},
                          "completion_tokens_details": {"reasoning_tokens": 0},
                          "billed_units": {"input_tokens": 76, "output_tokens": 12}}
    numbers = [r["usage"]["total_tokens"], r["usage"]["prompt_tokens_details"]["cached_tokens"],
               *r["usage"]["billed_units"].values()]
    assert all(type(n) is int for n in numbers)


def test_malformed_json_is_a_decode_error_after_earlier_items_dec_2():
    data = sse(START, text("kept")) + b"data: {nope}\n\n"
    items, kind = run([data])
    assert kind == "invalid_json" and openai_grammar(items, False)["content"] == "kept"
    assert run([b"data: [1,2]\n\n"]) == ([], "invalid_json")
    assert run([b"data: \xff\n\n"]) == ([], "invalid_utf8")


def test_feed_after_close_is_a_decode_error():
    decoder = CohereStreamDecoder(make_ctx(stream=True))
    decoder.feed(sse(START, text("a"), end()))
    decoder.close()
    with pytest.raises(DecodeError):
        decoder.feed(b"x")


def test_stream_decoder_comes_from_the_exchange():
    ex = exchange(ctx=make_ctx(stream=True))
    items = ex.stream_decoder().feed(fixture("stream_text.sse"))
    assert isinstance(items[-1], StreamDone) and not any(isinstance(i, StreamFailed)
                                                        for i in items)


# -- properties (DEC-1, DEC-2, TC-2) -----------------------------------------------------------


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
    whole = run([payload], make_ctx(stream=True, include_usage=include_usage))
    assert run(cut(payload, positions), make_ctx(stream=True, include_usage=include_usage)) \
        == whole
    openai_grammar(whole[0], include_usage)


_LINES = sorted({line for name in STREAMS for line in fixture(name).splitlines(keepends=True)})


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_LINES), st.binary(max_size=40),
                          st.sampled_from([b"\r", b"\n", b"\r\n", b"data: ", b"{", b"}", b"\xff",
                                           b'"', b"data: {}\n\n", b"data: []\n\n",
                                           b"event: message-end\n",
                                           b'data: {"type":"tool-call-start"}\n\n'])),
                max_size=25),
       st.lists(st.integers(0, 4000), max_size=8), st.booleans())
def test_arbitrary_bytes_raise_only_decode_error_and_stay_split_invariant(pieces, positions,
                                                                          include_usage):
    payload = b"".join(pieces)
    ctx = make_ctx(stream=True, include_usage=include_usage)
    items, kind = run([payload], ctx)  # anything but DecodeError fails the test
    again = run(cut(payload, [p for p in positions if p <= len(payload)]),
                make_ctx(stream=True, include_usage=include_usage))
    assert again == (items, kind)
    openai_grammar(items, include_usage)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=30), min_size=1, max_size=3),
       st.lists(st.integers(0, 20), max_size=10), st.lists(st.integers(0, 5000), max_size=8))
def test_assembled_arguments_equal_the_vendor_text_tc_2(arg_texts, sizes, positions):
    events: list[dict[str, Any]] = [START, {"type": "tool-plan-delta",
                                            "delta": {"message": {"tool_plan": "plan"}}}]
    for i, args in enumerate(arg_texts):
        events.append(tc_start(i, f"c{i}", f"f{i}"))
        pos = 0
        for n in sizes or [len(args)]:
            if pos >= len(args):
                break
            events.append(tc_delta(i, args[pos:pos + n + 1]))
            pos += n + 1
        if pos < len(args):
            events.append(tc_delta(i, args[pos:]))
        events.append(tc_end(i))
    events.append(end("TOOL_CALL"))
    payload = sse(*events, nl="\r\n")
    items, kind = run(cut(payload, [p for p in positions if p <= len(payload)]))
    assert kind is None
    r = openai_grammar(items, False)
    assert [c["arguments"] for c in r["tool_calls"]] == [a or "{}" for a in arg_texts]
    assert r["content"] == "plan" and r["finish"] == "tool_calls"
