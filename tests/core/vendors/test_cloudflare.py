"""The Cloudflare Workers AI translator: requests, envelopes, streams, errors.

Rule ids: docs/contracts.md (shared), docs/vendor-rules.md (CF-*). Fixtures in
``tests/data/cloudflare/`` are realistic Workers AI payloads written for these tests from
Cloudflare's documented envelope and examples. Every emitted stream is parsed back and
checked against the OpenAI chunk grammar (``openai_grammar`` from the fuzz targets).
"""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uniapi_core.config.model import Provider, ProviderPreferences
from uniapi_core.errors import ClientError, DecodeError, GatewayError, UpstreamError
from uniapi_core.jsonutil import dumps
from uniapi_core.request import parse_openai_chat
from uniapi_core.routing.retry import verdict
from uniapi_core.vendors.base import ChatContext, StreamDone
from uniapi_core.vendors.cloudflare import (DROPPED, MAPPED, CloudflareExchange,
                                            CloudflareStreamDecoder, build_exchange, run_url)
from uniapi_core.vendors.openai import OpenAIExchange

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data" / "cloudflare"
STREAMS = sorted(p.name for p in DATA.glob("stream_*.sse"))
KEY = "cf-TESTTOKEN"
ACCOUNT = "023e105f4ecef8ad9ca31a8372d0c353"
MODEL = "@cf/meta/llama-3.1-8b-instruct"


def _load_fuzz_target():
    spec = importlib.util.spec_from_file_location("fuzz_cloudflare",
                                                  ROOT / "fuzz" / "fuzz_cloudflare.py")
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
             account: str | None = ACCOUNT, headers: tuple[tuple[str, str], ...] = (),
             seed: int = 7) -> ChatContext:
    provider = Provider(provider="cf", base_url=base_url, api=(KEY,), cf_account_id=account,
                        preferences=ProviderPreferences(headers=headers))
    return ChatContext(client_model="llama", upstream_model=MODEL, provider=provider,
                       api_key=KEY, stream=stream, include_usage=include_usage,
                       response_id="chatcmpl-test0123456789", created=1735689600,
                       entropy=random.Random(seed))


def user(content: Any = "Hi") -> dict[str, Any]:
    return {"role": "user", "content": content}


def call(cid: str, name: str = "get_weather", args: Any = '{"city":"Paris"}') -> dict[str, Any]:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}


def exchange(messages: list[dict[str, Any]] | None = None, *, ctx: ChatContext | None = None,
             **fields: Any) -> Any:
    return build_exchange({"model": "llama", "messages": messages or [user()], **fields},
                          ctx or make_ctx())


def build(messages: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    return json.loads(exchange(messages, **fields).request.body)


def refused(messages: list[dict[str, Any]] | None = None, **fields: Any) -> ClientError:
    with pytest.raises(ClientError) as e:
        build(messages, **fields)
    assert e.value.status == 400
    return e.value


def run(pieces: list[bytes], ctx: ChatContext | None = None) -> tuple[list, str | None]:
    decoder = CloudflareStreamDecoder(ctx or make_ctx(stream=True))
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


def sse(*objects: Any, nl: str = "\n") -> bytes:
    return b"".join(b"data: " + (o if isinstance(o, bytes) else json.dumps(
        o, ensure_ascii=False).encode()) + (nl * 2).encode() for o in objects)


def cut(data: bytes, positions: list[int]) -> list[bytes]:
    bounds = [0, *sorted(positions), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def usage(p: int, c: int, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning}}


# -- URL and headers (CF-1, CF-3) --------------------------------------------------------------


@pytest.mark.parametrize("base, expected_origin", [
    (None, "https://api.cloudflare.com"),
    ("", "https://api.cloudflare.com"),
    ("https://api.cloudflare.com/client/v4", "https://api.cloudflare.com"),
    ("http://127.0.0.1:8787", "http://127.0.0.1:8787"),
    ("http://127.0.0.1:8787/some/prefix?x=1", "http://127.0.0.1:8787"),
    ("not a url", "https://api.cloudflare.com"),
])
def test_run_url_cf_1(base, expected_origin):
    assert run_url(base, ACCOUNT, MODEL) == \
        f"{expected_origin}/client/v4/accounts/{ACCOUNT}/ai/run/@cf/meta/llama-3.1-8b-instruct"


def test_request_line_and_headers():
    req = exchange(ctx=make_ctx(base_url="http://127.0.0.1:8787")).request
    assert req.method == "POST"
    assert req.url == f"http://127.0.0.1:8787/client/v4/accounts/{ACCOUNT}/ai/run/{MODEL}"
    headers = dict(req.headers)
    assert headers["authorization"] == f"Bearer {KEY}"
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "application/json"
    assert dict(exchange(ctx=make_ctx(stream=True)).request.headers)["accept"] == \
        "text/event-stream"
    headers = exchange(ctx=make_ctx(headers=(("cf-aig-cache-ttl", "60"),))).request.headers
    assert ("cf-aig-cache-ttl", "60") in headers


def test_openai_compatible_base_url_uses_the_openai_translator_cf_3():
    base = f"https://api.cloudflare.com/client/v4/accounts/{ACCOUNT}/ai/v1"
    ex = exchange(ctx=make_ctx(base_url=base), temperature=0.5, logit_bias={"1": 1})
    assert isinstance(ex, OpenAIExchange)
    assert ex.request.url == base + "/chat/completions"
    body = json.loads(ex.request.body)
    assert body["model"] == MODEL and body["logit_bias"] == {"1": 1}


def test_missing_account_id_is_a_configuration_error():
    with pytest.raises(GatewayError):
        exchange(ctx=make_ctx(account=None))


# -- body (CF-2) -------------------------------------------------------------------------------


def test_whole_history_is_sent_not_just_the_last_message():
    body = build([
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use "},
                                          {"type": "text", "text": "metric."}]},
        user([{"type": "text", "text": "Weather "}, {"type": "text", "text": "in Paris?"}]),
        {"role": "assistant", "content": None,
         "tool_calls": [call("call_1"), call("call_2", "get_time", "")]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18°C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "9:00"}]},
        {"role": "assistant", "content": "18°C, 9:00."},
        user("Thanks"),
    ])
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Use metric."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_2", "type": "function",
             "function": {"name": "get_time", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18°C"},
        {"role": "tool", "tool_call_id": "call_2", "content": "9:00"},
        {"role": "assistant", "content": "18°C, 9:00."},
        {"role": "user", "content": "Thanks"},
    ]
    assert "stream" not in body


def test_sampling_and_stream():
    body = json.loads(exchange(ctx=make_ctx(stream=True), max_tokens=10,
                               max_completion_tokens=64, temperature=0.6, top_p=0.9, top_k=20,
                               seed=3, repetition_penalty=1.1, frequency_penalty=0.2,
                               presence_penalty=0.1).request.body)
    assert {k: v for k, v in body.items() if k != "messages"} == {
        "stream": True, "max_tokens": 64, "temperature": 0.6, "top_p": 0.9, "top_k": 20,
        "seed": 3, "repetition_penalty": 1.1, "frequency_penalty": 0.2,
        "presence_penalty": 0.1}


def test_tools_in_openai_function_shape():
    body = build(tools=[{"type": "function", "function": {
        "name": "get_weather", "description": "Weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}}}},
        {"type": "function", "function": {"name": "noop"}}])
    assert body["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                          "parameters": {"type": "object", "properties": {
                                              "city": {"type": "string"}}}}},
        {"type": "function", "function": {"name": "noop", "parameters": {
            "type": "object", "properties": {}}}}]


def test_unmapped_fields_are_never_copied_req_3():
    body = build(stop=["x"], tool_choice="auto", logprobs=True,
                 logit_bias={"1": 1}, user="u", stream_options={"include_usage": True},
                 frobnicate=True, n=1)
    assert set(body) == {"messages"}
    assert set(DROPPED).isdisjoint(MAPPED)


@pytest.mark.parametrize("messages, fields", [
    ([user([{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}])], {}),
    ([user([{"type": "input_audio", "input_audio": {}}])], {}),
    ([user(42)], {}),
    ([{"role": "tool", "tool_call_id": "c1", "content": "x"}], {}),
    ([user(), {"role": "assistant", "tool_calls": [{"id": "c1"}]}], {}),
    ([{"role": "wizard", "content": "x"}], {}),
    (["x"], {}),
    ([user()], {"max_tokens": 0}),
    ([user()], {"temperature": "hot"}),
    ([user()], {"top_k": 2.5}),
    ([user()], {"n": 3}),
    ([user()], {"tools": [{"type": "function", "function": {}}]}),
    ([user()], {"tools": {}}),
    ([user()], {"temperature": 1e999}),
])
def test_requests_ai_run_cannot_take_are_400(messages, fields):
    refused(messages, **fields)


def test_messages_must_be_a_non_empty_list():
    for bad in (None, [], "hi"):
        with pytest.raises(ClientError):
            build_exchange({"model": "x", "messages": bad}, make_ctx())


TOOL_TURN = {"role": "assistant", "content": None, "tool_calls": [call("c1", "f", "{}")]}


@pytest.mark.parametrize("fields, message, code", [
    ({"messages": "hi"}, "'messages' must be a non-empty list", "invalid_request"),
    ({"messages": []}, "'messages' must be a non-empty list", "invalid_request"),
    ({"messages": None}, "'messages' must be a non-empty list", "invalid_request"),
    ({"messages": [user(), 3]}, "messages[1] must be an object", "invalid_request"),
    ({"n": 2}, "'n' other than 1 is not supported by cloudflare", "unsupported_parameter"),
    ({"n": True}, "'n' other than 1 is not supported by cloudflare", "unsupported_parameter"),
    ({"messages": [{"role": 7, "content": "x"}]}, "messages[0].role 7 is not supported",
     "invalid_request"),
    ({"messages": [user({"a": 1})]},
     "messages[0].content must be a string or a list of parts", "invalid_request"),
    ({"messages": [user([{"type": "text", "text": "a"}, {"type": "image_url", "image_url": "u"}])]},
     "messages[0].content[1]: images are not supported by cloudflare ai/run",
     "unsupported_content"),
    ({"messages": [user(["bare"])]},
     "messages[0].content[0]: part type None is not supported by cloudflare",
     "unsupported_content"),
    ({"messages": [user([{"type": "text", "text": 5}])]},
     "messages[0].content[0]: part type 'text' is not supported by cloudflare",
     "unsupported_content"),
    ({"messages": [user([{"type": "input_audio", "input_audio": {}}])]},
     "messages[0].content[0]: part type 'input_audio' is not supported by cloudflare",
     "unsupported_content"),
    ({"messages": [{"role": "assistant", "content": "x", "tool_calls": {}}]},
     "messages[0].tool_calls must be a list", "invalid_request"),
    ({"messages": [{"role": "assistant", "content": "x",
                    "tool_calls": [{"id": 5, "function": {"name": "f"}}]}]},
     "messages[0].tool_calls[0] needs an 'id' and a function 'name'", "invalid_request"),
    ({"messages": [user(), TOOL_TURN, {"role": "tool", "tool_call_id": 5, "content": "x"}]},
     "messages[2].tool_call_id 5 does not name an earlier assistant tool call",
     "invalid_tool_call_id"),
    ({"messages": [user(), TOOL_TURN, {"role": "tool", "tool_call_id": "c2", "content": "x"}]},
     "messages[2].tool_call_id 'c2' does not name an earlier assistant tool call",
     "invalid_tool_call_id"),
    ({"max_tokens": 0}, "'max_tokens' must be a positive integer", "invalid_value"),
    ({"max_completion_tokens": "5", "max_tokens": 5}, "'max_tokens' must be a positive integer",
     "invalid_value"),
    # the first number of the wrong type in CF-2's order is named
    ({"top_k": 2.5, "temperature": "hot"}, "'temperature' must be a number", "invalid_value"),
    ({"repetition_penalty": "x", "frequency_penalty": True},
     "'repetition_penalty' must be a number", "invalid_value"),
    ({"presence_penalty": [1], "frequency_penalty": True}, "'frequency_penalty' must be a number",
     "invalid_value"),
    ({"tools": {}}, "'tools' must be a list", "invalid_request"),
    ({"tools": [{"type": "function", "function": {"name": ""}}]},
     "tools[0] must be a function tool with a name", "invalid_request"),
    ({"temperature": 1e999}, "the request holds numbers or nesting that cannot be sent as JSON",
     "invalid_request"),
])
def test_refusals_keep_their_text_and_code(fields, message, code):
    req = {"model": "llama", "messages": [user()], **fields}
    for given_ in (req, parse_openai_chat(req)):  # the dict and the request model alike
        with pytest.raises(ClientError) as e:
            build_exchange(given_, make_ctx())
        assert (e.value.message, e.value.code, e.value.status) == (message, code, 400)


def test_a_body_that_is_not_an_object_is_refused_in_cloudflares_words():
    with pytest.raises(ClientError) as e:
        build_exchange(["x"], make_ctx())  # type: ignore[arg-type]
    assert (e.value.message, e.value.code) == ("the request must be a JSON object",
                                               "invalid_request")


def test_text_and_refusal_parts_read_the_text_key_first():
    """A quirk kept byte for byte: ``text`` is read first whatever the part's type says."""
    body = build([user([{"type": "refusal", "text": "a", "refusal": "b"},
                        {"type": "refusal", "refusal": "c"}, {"type": "text", "refusal": "d"},
                        {"type": "refusal", "text": "e"}])])
    assert body["messages"] == [{"role": "user", "content": "acde"}]
    assert refused([user([{"type": "refusal", "text": 5, "refusal": "b"}])]).message == \
        "messages[0].content[0]: part type 'refusal' is not supported by cloudflare"


def test_the_model_and_the_dict_build_the_same_bytes():
    req = {"model": "llama", "messages": [
        {"role": "developer", "content": [{"type": "text", "text": "be brief"}]}, user("Hi"),
        {"role": "assistant", "content": "", "tool_calls": [call("c1", args={"a": [1]}),
                                                            call("c2", args=None)]},
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "ok"}]},
        {"role": "tool", "tool_call_id": "c2"}],
        "tools": [{"type": "retrieval", "function": {"name": "f", "parameters": "x"}}],
        "max_completion_tokens": 9, "max_tokens": 3, "temperature": 0, "top_p": 1.0,
        "repetition_penalty": 1, "seed": -1, "stop": "x", "stream": True}
    for stream in (False, True):
        ctx = make_ctx(stream=stream)
        assert build_exchange(req, ctx).request == \
            build_exchange(parse_openai_chat(req), make_ctx(stream=stream)).request
    body = json.loads(build_exchange(parse_openai_chat(req), make_ctx()).request.body)
    assert body == {
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Hi"},
                     {"role": "assistant", "content": "", "tool_calls": [
                         {"id": "c1", "type": "function",
                          "function": {"name": "get_weather", "arguments": '{"a":[1]}'}},
                         {"id": "c2", "type": "function",
                          "function": {"name": "get_weather", "arguments": "{}"}}]},
                     {"role": "tool", "tool_call_id": "c1", "content": "ok"},
                     {"role": "tool", "tool_call_id": "c2", "content": ""}],
        "max_tokens": 9, "temperature": 0, "top_p": 1.0, "seed": -1, "repetition_penalty": 1,
        "tools": [{"type": "function", "function": {
            "name": "f", "parameters": {"type": "object", "properties": {}}}}]}


def test_the_openai_endpoint_gets_the_model_passed_through_cf_3():
    req = {"model": "llama", "messages": [user()], "n": 3, "frobnicate": True}
    ctx = make_ctx(base_url="https://gateway.ai.cloudflare.com/v1/acct/gw/workers-ai/ai/v1")
    ex = build_exchange(parse_openai_chat(req), ctx)
    assert isinstance(ex, OpenAIExchange)
    assert json.loads(ex.request.body) == {**req, "model": MODEL}


def test_builders_are_pure():
    req = {"model": "x", "messages": [user("é"), {"role": "assistant", "tool_calls": [
        call("c1", args={"a": 1})]}, {"role": "tool", "tool_call_id": "c1", "content": "ok"}]}
    first = build_exchange(req, make_ctx()).request
    assert first == build_exchange(req, make_ctx()).request
    assert json.loads(first.body)["messages"][1]["tool_calls"][0]["function"]["arguments"] == \
        '{"a":1}'


# -- whole bodies (docs/vendor-rules.md, "Cloudflare answers and streams"; ERR-4) --------------


def parse(body: bytes, status: int = 200) -> dict[str, Any]:
    return json.loads(CloudflareExchange(exchange().request, make_ctx()).parse_body(
        status, (), body))


def test_text_envelope():
    out = parse(fixture("body_text.json"))
    assert out["object"] == "chat.completion" and out["model"] == "llama"
    assert out["id"] == "chatcmpl-test0123456789" and out["created"] == 1735689600
    choice = out["choices"][0]
    assert choice["message"]["content"] == "Hello! How can I help you today? 😊"
    assert choice["finish_reason"] == "stop" and out["usage"] == usage(30, 12)


def test_tool_envelope_synthesizes_ids_and_serialises_arguments_tc_2_tc_4():
    out = parse(fixture("body_tools.json"))
    msg = out["choices"][0]["message"]
    assert msg["content"] is None and out["choices"][0]["finish_reason"] == "tool_calls"
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in msg["tool_calls"]] == \
        [("get_weather", '{"city":"Lisboa","days":3}'), ("get_time", "{}")]
    ids = [c["id"] for c in msg["tool_calls"]]
    assert len(set(ids)) == 2 and all(i.startswith("call_") and len(i) == 29 for i in ids)
    assert out["usage"] == usage(210, 40, cached=192)  # U-7: a prefix-cache hit


def test_openai_shaped_result_and_non_string_response():
    body = json.dumps({"result": {"choices": [{"index": 0, "finish_reason": "length",
                                               "message": {"role": "assistant",
                                                           "content": "cut",
                                                           "reasoning_content": "hmm"}}],
                                  "usage": {"prompt_tokens": 3, "completion_tokens": 4}},
                       "success": True, "errors": []}).encode()
    out = parse(body)
    assert out["choices"][0]["message"]["content"] == "cut"
    assert out["choices"][0]["message"]["reasoning_content"] == "hmm"
    assert out["choices"][0]["finish_reason"] == "length" and out["usage"] == usage(3, 4)
    out = parse(b'{"result":{"response":{"answer":42}},"success":true}')
    assert out["choices"][0]["message"]["content"] == '{"answer":42}'
    out = parse(b'{"response":"unwrapped"}')
    assert out["choices"][0]["message"]["content"] == "unwrapped"


def test_success_false_with_200_is_an_error_err_4():
    ex = CloudflareExchange(exchange().request, make_ctx())
    with pytest.raises(UpstreamError) as e:
        ex.parse_body(200, (), fixture("body_success_false.json"))
    assert e.value.code == 5006 and e.value.status == 502 and e.value.message.startswith("Error")
    with pytest.raises(UpstreamError) as e:
        ex.parse_body(200, (), b'{"result":{"response":"x"},"errors":[{"code":1,"message":"m"}]}')
    assert e.value.message == "m"
    for bad, kind in ((b"nope", "decode"), (b"[]", "decode"), (b'{"result":null}', "protocol"),
                      (b'{"result":{"response":Infinity}}', "decode")):
        with pytest.raises(UpstreamError) as e:
            ex.parse_body(200, (), bad)
        assert e.value.kind == kind


# -- errors (docs/vendor-rules.md, "Errors from Cloudflare") -----------------------------------


@pytest.mark.parametrize("status, name, otype, code, retry", [
    (400, "error_400.json", "invalid_request_error", 5006, False),
    (401, "error_401.json", "authentication_error", 10000, True),
    (404, "error_404.json", "not_found_error", 7003, False),
    (429, "error_429.json", "rate_limit_error", 3040, True),
])
def test_error_envelopes(status, name, otype, code, retry):
    ex = CloudflareExchange(exchange().request, make_ctx())
    err = ex.parse_error(status, (("retry-after", "3"),), fixture(name))
    assert (err.type, err.code, err.status, err.upstream_status) == (otype, code, status, status)
    assert verdict(err).retry is retry and err.headers == (("retry-after", "3"),)
    messages = [e["message"] for e in json.loads(fixture(name))["errors"]]
    assert err.message == "; ".join(messages)


def test_non_envelope_errors_fall_back_to_the_base():
    ex = CloudflareExchange(exchange().request, make_ctx())
    err = ex.parse_error(502, (), b"<html>Bad gateway</html>")
    assert err.type == "server_error" and err.code == "502" and "Bad gateway" in err.message
    err = ex.parse_error(500, (), b'{"errors":[],"success":false}')
    assert (err.upstream_status, err.status) == (500, 502) and verdict(err).retry


# -- streams (docs/vendor-rules.md, "Cloudflare answers and streams") --------------------------


def test_text_stream_gives_text_stop_and_the_last_usage():
    r = stream(fixture("stream_text.sse"), include_usage=True)
    assert r["content"] == "Workers AI says hello!" and r["finish"] == "stop"
    assert r["usage"] == usage(18, 6)
    assert r["end"] == ("done", json.dumps(usage(18, 6), sort_keys=True))
    assert stream(fixture("stream_text.sse"))["usage"] is None


def test_final_usage_object_then_eof_is_complete_dec_5():
    r = stream(fixture("stream_crlf_no_done.sse"), include_usage=True)
    assert r["content"] == "Grüße aus 東京 🚀\u2028ok" and r["finish"] == "stop"
    assert r["usage"] == usage(11, 5)


def test_native_tool_calls_tc_3_tc_4():
    r = stream(fixture("stream_tool_calls.sse"))
    assert [(c["name"], c["arguments"]) for c in r["tool_calls"]] == [
        ("get_weather", '{"city":"Paris","unit":"°C"}'), ("get_time", "{}"),
        ("ping", '{"host":"1.1.1.1"}')]
    assert r["finish"] == "tool_calls" and r["content"] == ""


def test_openai_shaped_chunks_with_fragments():
    r = stream(fixture("stream_openai_shape.sse"), include_usage=True)
    assert r["reasoning"] == "Need the weather tool." and r["content"] == "Checking…"
    assert r["tool_calls"] == [{"id": "chatcmpl-tool-8f2a9c", "name": "get_weather",
                                "arguments": '{"city":"München"}'}]
    assert r["finish"] == "tool_calls" and r["usage"] == usage(1064, 22, cached=1024)
    assert r["end"] == ("done", json.dumps(usage(1064, 22, cached=1024), sort_keys=True))


def test_every_detail_count_is_kept_u_7():
    details = {"prompt_tokens": 2100, "completion_tokens": 300, "total_tokens": 2400,
               "prompt_tokens_details": {"cached_tokens": 2048, "audio_tokens": 0},
               "completion_tokens_details": {"reasoning_tokens": 120, "audio_tokens": 0,
                                             "accepted_prediction_tokens": 0}}
    want = {"prompt_tokens": 2100, "completion_tokens": 300, "total_tokens": 2400,
            "prompt_tokens_details": {"cached_tokens": 2048, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 120, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0}}
    body = json.dumps({"result": {"response": "ok", "usage": details}, "success": True})
    assert parse(body.encode())["usage"] == want
    chunk = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": details}
    r = stream(sse({"response": "ok"}, chunk) + b"data: [DONE]\n\n", include_usage=True)
    assert r["usage"] == want and r["end"] == ("done", json.dumps(want, sort_keys=True))


def test_usage_garbage_is_no_count_u_4():
    bad = {"prompt_tokens": 12.0, "completion_tokens": -1, "total_tokens": "13",
           "prompt_tokens_details": {"cached_tokens": True, "text_tokens": 12.5},
           "completion_tokens_details": None}
    out = parse(json.dumps({"result": {"response": "ok", "usage": bad}}).encode())
    assert out["usage"] == usage(12, 0)


def test_error_object_mid_stream_is_a_failure():
    r = stream(fixture("stream_error.sse"))
    assert r["content"] == "Hello" and r["finish"] is None
    assert r["end"][0] == "failed" and r["end"][6] == 3040 and r["end"][3] == 502
    items, _ = run([sse({"error": {"message": "boom", "type": "x"}})])
    assert [i[0] for i in items] == ["failed"]


def test_truncated_streams():
    r = stream(fixture("stream_cut.sse"))
    assert r["content"] == "Once upon a time" and r["end"][2] == "truncated"
    assert run([b""])[0][-1][2] == "truncated"
    assert run([sse({"response": "a"})])[0][-1][2] == "truncated"


def test_done_variants_and_bytes_after_done_dec_4():
    data = b': c\r\ndata:{"response":"a"}\r\n\r\ndata: [DONE]  \r\n\r\ndata: {bad\n\n\xff'
    items, kind = run([data])
    assert kind is None and items[-1][0] == "done"
    assert openai_grammar(items, False)["content"] == "a"
    assert run([data[i:i + 1] for i in range(len(data))]) == (items, kind)
    assert stream(b"data: [DONE]\n\n")["content"] == ""


def test_eof_inside_a_line_after_the_final_object_is_complete():
    data = sse({"response": "x"}, {"response": "", "usage": {"prompt_tokens": 1}}) + b"data: [DO"
    r = stream(data)
    assert r["end"][0] == "done" and r["content"] == "x"


def test_openai_shaped_finish_reasons():
    for reason, expected in (("length", "length"), ("content_filter", "content_filter"),
                             ("eos", "stop")):
        data = sse({"choices": [{"delta": {"content": "a"}, "finish_reason": reason}]})
        assert stream(data)["finish"] == expected


def test_malformed_json_after_items_dec_2():
    items, kind = run([sse({"response": "kept"}) + b"data: {nope\n\n"])
    assert kind == "invalid_json" and openai_grammar(items, False)["content"] == "kept"
    assert run([b"data: 1\n\n"]) == ([], "invalid_json")
    assert run([b"data: \xc3(\n\n"]) == ([], "invalid_utf8")


def test_feed_after_close_is_a_decode_error():
    decoder = CloudflareStreamDecoder(make_ctx(stream=True))
    decoder.close()
    with pytest.raises(DecodeError):
        decoder.feed(b"data: [DONE]\n\n")


def test_stream_decoder_comes_from_the_exchange():
    items = exchange(ctx=make_ctx(stream=True)).stream_decoder().feed(fixture("stream_text.sse"))
    assert isinstance(items[-1], StreamDone)


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
                                           b"data: [DONE]\n\n",
                                           b'data: {"tool_calls":[{"index":0}]}\n\n'])),
                max_size=25),
       st.lists(st.integers(0, 4000), max_size=8), st.booleans())
def test_arbitrary_bytes_raise_only_decode_error_and_stay_split_invariant(pieces, positions,
                                                                          include_usage):
    payload = b"".join(pieces)
    items, kind = run([payload], make_ctx(stream=True, include_usage=include_usage))
    again = run(cut(payload, [p for p in positions if p <= len(payload)]),
                make_ctx(stream=True, include_usage=include_usage))
    assert again == (items, kind)
    openai_grammar(items, include_usage)


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                       st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
_json = st.recursive(_json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=10), _json, max_size=5), min_size=1,
                max_size=4),
       st.lists(st.integers(0, 3000), max_size=6))
def test_whole_call_arguments_equal_the_serialisation_tc_2(args_list, positions):
    calls = [{"name": f"f{i}", "arguments": a} for i, a in enumerate(args_list)]
    payload = sse({"response": "", "tool_calls": calls[:1]},
                  {"response": "", "tool_calls": calls[1:]}, b"[DONE]", nl="\r\n")
    items, kind = run(cut(payload, [p for p in positions if p <= len(payload)]))
    assert kind is None
    r = openai_grammar(items, False)
    expected = [dumps(a).decode() for a in args_list]  # compact, U+2028/9 escaped (S-8)
    assert [c["arguments"] for c in r["tool_calls"]] == expected
    assert [json.loads(c["arguments"]) for c in r["tool_calls"]] == args_list


@settings(max_examples=80, deadline=None)
@given(st.text(max_size=40), st.lists(st.integers(1, 8), max_size=10),
       st.lists(st.integers(0, 3000), max_size=6))
def test_fragment_arguments_are_relayed_verbatim_tc_2(args, sizes, positions):
    frags, pos = [], 0
    for n in sizes:
        if pos < len(args):
            frags.append(args[pos:pos + n])
            pos += n
    frags.append(args[pos:])
    events = [{"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "t1", "type": "function",
                                                      "function": {"name": "f",
                                                                   "arguments": ""}}]}}]}]
    events += [{"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {
        "arguments": f}}]}}]} for f in frags]
    payload = sse(*events, b"[DONE]")
    items, kind = run(cut(payload, [p for p in positions if p <= len(payload)]))
    assert kind is None
    assert openai_grammar(items, False)["tool_calls"][0]["arguments"] == (args or "{}")
