"""Native Messages passthrough (``uniapi_core.vendors.messages_native``): a Messages request to
Anthropic, Vertex-Claude and Bedrock without a trip through the chat format, and its answers
given back to the Messages client byte for byte (except the model name).

The oracles are independent of the module: expected upstream bodies are the client's dict
edited by hand and encoded with ``json.dumps``; expected streams are built from the same event
list the upstream bytes are built from; Bedrock frames come from the fixture encoder in
``tests/data/bedrock/make_fixtures.py``; signatures are recomputed with ``sigv4``.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import random
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uniapi_core.config.model import Provider, ProviderPreferences
from uniapi_core.errors import ClientError, DecodeError, GatewayError, UpstreamError
from uniapi_core.vendors import sigv4
from uniapi_core.vendors.base import (
    ChatContext,
    ImagesNeeded,
    StreamChunk,
    StreamDone,
    StreamFailed,
)
from uniapi_core.vendors.messages_native import (
    NativeBedrockDecoder,
    NativeExchange,
    NativeSSEDecoder,
    build_native_exchange,
    native_engine,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "bedrock"
CLIENT_MODEL = "claude-sonnet-4-5"
CREATED = 1735689600  # 2025-01-01T00:00:00Z
AWS_KEY, AWS_SECRET = "AKIAEXAMPLEBEDROCK", "s3cr3t/Key+EXAMPLE"


def _load_fixtures():
    spec = importlib.util.spec_from_file_location("bedrock_fixtures", DATA / "make_fixtures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fx = _load_fixtures()


def compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


# -- contexts --------------------------------------------------------------------------------

def ctx_for(engine: str, *, stream: bool = True, headers: tuple[tuple[str, str], ...] = (),
            **provider: Any) -> ChatContext:
    prefs = ProviderPreferences(headers=headers)
    extra: dict[str, Any] = {}
    if engine == "claude":
        p = Provider(provider="ant", api=("sk-ant-test",), preferences=prefs, **provider)
        upstream, key = "claude-sonnet-4-5-20250929", "sk-ant-test"
    elif engine == "vertex":
        p = Provider(provider="vtx", preferences=prefs, **({"project_id": "proj-1"} | provider))
        upstream, key = "claude-sonnet-4-5@20250929", None
        extra = {"region": "us-east5", "access_token": "ya29.token"}
    else:
        base = {"aws_access_key": AWS_KEY, "aws_secret_key": AWS_SECRET,
                "aws_region": "us-east-1"} | provider
        p = Provider(provider="bdr", preferences=prefs, **base)
        upstream, key = "us.anthropic.claude-sonnet-4-5-20250929-v1:0", None
    return ChatContext(client_model=CLIENT_MODEL, upstream_model=upstream, provider=p,
                       api_key=key, stream=stream, include_usage=False,
                       response_id="chatcmpl-native0123", created=CREATED,
                       entropy=random.Random(1), **extra)


# A Messages request with everything the chat format would lose: cache_control everywhere,
# signed thinking and redacted thinking replayed, a server tool and its result, a document
# with citations on, fields the gateway does not know; odd key order on purpose.
CLIENT_BODY: dict[str, Any] = {
    "max_tokens": 32000,
    "model": CLIENT_MODEL,
    "system": [{"type": "text", "text": "You are Claude Code.",
                "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
    "messages": [
        {"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                            "data": "The grass is green."},
             "citations": {"enabled": True}, "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "What colour is grass? Also search the web."}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "The user asks about grass…",
             "signature": "EqQBCkgIARABGAIiQL2x+/sig=="},
            {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIw"},
            {"type": "server_tool_use", "id": "srvtoolu_014hJH82Qum7Td6UV8gDXThB",
             "name": "web_search", "input": {"query": "grass colour"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_014hJH82Qum7Td6UV8gDXThB",
             "content": [{"type": "web_search_result", "url": "https://example.org/grass",
                          "title": "Grass", "encrypted_content": "EqgfCioIARgBIiQ3",
                          "page_age": None}]},
            {"type": "text", "text": "Green.", "citations": [
                {"type": "char_location", "cited_text": "The grass is green.",
                 "document_index": 0, "start_char_index": 0, "end_char_index": 19}]},
            {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "Bash",
             "input": {"command": "ls"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9",
             "content": "a.txt\n", "cache_control": {"type": "ephemeral"}}]}],
    "tools": [{"name": "Bash", "description": "Run a command",
               "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
               "cache_control": {"type": "ephemeral"}},
              {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}],
    "thinking": {"type": "enabled", "budget_tokens": 31999},
    "metadata": {"user_id": "user_abc"},
    "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
    "stream": True,
}


def body_of(ex: NativeExchange) -> dict[str, Any]:
    return json.loads(ex.request.body)


def hdrs(ex: NativeExchange) -> dict[str, str]:
    return {k.lower(): v for k, v in ex.request.headers}


# -- engines ---------------------------------------------------------------------------------

def test_native_engines_and_aliases():
    assert native_engine("claude", "claude-x") == "claude"
    assert native_engine("anthropic", "claude-x") == "claude"
    assert native_engine("aws", "anthropic.claude-3") == "aws"
    assert native_engine("bedrock", "anthropic.claude-3") == "aws"
    assert native_engine("vertex", "claude-sonnet-4@20250514") == "vertex"
    assert native_engine("vertex-claude", "claude-sonnet-4@20250514") == "vertex"
    assert native_engine("vertex", "gemini-2.5-pro") is None  # VTX-B1: Google's model
    assert native_engine("gpt", "claude-x") is None
    assert native_engine("openrouter", "anthropic/claude") is None


def test_a_channel_that_does_not_speak_messages_is_refused():
    ctx = ctx_for("vertex")
    gemini = ChatContext(**{**{a: getattr(ctx, a) for a in (
        "client_model", "provider", "api_key", "stream", "include_usage", "response_id",
        "created", "entropy", "region", "access_token")}, "upstream_model": "gemini-2.5-pro"})
    with pytest.raises(ValueError):
        build_native_exchange(CLIENT_BODY, gemini, "vertex")
    with pytest.raises(ValueError):
        build_native_exchange(CLIENT_BODY, ctx_for("claude"), "gpt")


# -- requests --------------------------------------------------------------------------------

def test_anthropic_request_is_the_clients_body_with_the_upstream_model():
    ctx = ctx_for("claude", headers=(("anthropic-beta", "context-1m-2025-08-07, oauth-x"),
                                     ("x-extra", "1")))
    ex = build_native_exchange(CLIENT_BODY, ctx, "claude",
                               beta=("interleaved-thinking-2025-05-14,context-1m-2025-08-07",
                                     "fine-grained-tool-streaming-2025-05-14"))
    assert ex.request.method == "POST"
    assert ex.request.url == "https://api.anthropic.com/v1/messages"
    expected = dict(CLIENT_BODY, model=ctx.upstream_model)
    assert ex.request.body == json.dumps(expected, separators=(",", ":"),
                                         ensure_ascii=False).encode()
    assert list(body_of(ex)) == list(CLIENT_BODY)  # key order kept
    h = hdrs(ex)
    assert h["x-api-key"] == "sk-ant-test"
    assert h["anthropic-version"] == "2023-06-01"
    assert h["accept"] == "text/event-stream"
    assert h["anthropic-beta"] == ("interleaved-thinking-2025-05-14,context-1m-2025-08-07,"
                                   "fine-grained-tool-streaming-2025-05-14,oauth-x")
    assert h["x-extra"] == "1"
    assert [k for k, _ in ex.request.headers].count("anthropic-beta") == 1


def test_anthropic_request_details():
    ctx = ctx_for("claude", stream=False, base_url="https://proxy.example/v1",
                  headers=(("anthropic-version", "2024-01-01"),))
    body = {k: v for k, v in CLIENT_BODY.items() if k not in ("model", "stream")}
    ex = build_native_exchange(body, ctx, "claude")
    assert ex.request.url == "https://proxy.example/v1/messages"
    assert list(body_of(ex)) == ["model", *body]  # a missing model goes first
    assert "stream" not in body_of(ex)
    h = hdrs(ex)
    assert h["anthropic-version"] == "2024-01-01"  # the provider's preference wins
    assert h["accept"] == "application/json"
    assert "anthropic-beta" not in h  # D-8: no beta of our own
    # the gateway decides streaming: a client's stream:true on a whole-body attempt is false
    ex = build_native_exchange(CLIENT_BODY, ctx, "claude")
    assert body_of(ex)["stream"] is False and list(body_of(ex)) == list(CLIENT_BODY)
    ex = build_native_exchange(body, ctx_for("claude"), "claude")
    assert body_of(ex)["stream"] is True


def test_vertex_request_has_the_model_in_the_url_and_the_version_and_betas_in_the_body():
    ctx = ctx_for("vertex", headers=(("anthropic-beta", "context-1m-2025-08-07"),
                                     ("x-api-key", "never"), ("x-goog-user-project", "p2")))
    ex = build_native_exchange(CLIENT_BODY, ctx, "vertex",
                               beta=("interleaved-thinking-2025-05-14",))
    assert ex.request.url == ("https://us-east5-aiplatform.googleapis.com/v1/projects/proj-1/"
                              "locations/us-east5/publishers/anthropic/models/"
                              "claude-sonnet-4-5@20250929:streamRawPredict")
    expected = {"anthropic_version": "vertex-2023-10-16",
                **{k: v for k, v in CLIENT_BODY.items() if k != "model"},
                "anthropic_beta": ["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"]}
    assert ex.request.body == json.dumps(expected, separators=(",", ":"),
                                         ensure_ascii=False).encode()
    h = hdrs(ex)
    assert h["authorization"] == "Bearer ya29.token"
    assert h["x-goog-user-project"] == "p2"
    assert "x-api-key" not in h and "anthropic-version" not in h and "anthropic-beta" not in h
    whole = build_native_exchange(CLIENT_BODY, ctx_for("vertex", stream=False), "vertex")
    assert whole.request.url.endswith(":rawPredict")
    assert body_of(whole)["stream"] is False
    assert "anthropic_beta" not in body_of(whole)


def test_vertex_request_merges_betas_the_client_put_in_the_body():
    body = {**CLIENT_BODY, "anthropic_version": "x", "anthropic_beta": ["a", 3]}
    ex = build_native_exchange(body, ctx_for("vertex"), "vertex", beta=("a,b",))
    got = body_of(ex)
    assert next(iter(got)) == "anthropic_version" and got["anthropic_version"] == "vertex-2023-10-16"
    assert got["anthropic_beta"] == ["a", "b"]


def test_vertex_misconfiguration_is_a_gateway_error():
    with pytest.raises(GatewayError):
        build_native_exchange(CLIENT_BODY, ctx_for("vertex", project_id=" "), "vertex")
    ctx = ctx_for("vertex")
    no_token = ChatContext(**{**{a: getattr(ctx, a) for a in (
        "client_model", "upstream_model", "provider", "api_key", "stream", "include_usage",
        "response_id", "created", "entropy", "region")}, "access_token": None})
    with pytest.raises(GatewayError):
        build_native_exchange(CLIENT_BODY, no_token, "vertex")


def _verify_signature(ex: NativeExchange, region: str) -> None:
    h = hdrs(ex)
    sent = [(k, v) for k, v in ex.request.headers if k.lower() not in (
        "authorization", "x-amz-date", "x-amz-security-token")]
    again = dict(sigv4.sign("POST", ex.request.url, sent, ex.request.body,
                            access_key=AWS_KEY, secret_key=AWS_SECRET, session_token=None,
                            region=region, amz_date=h["x-amz-date"]))
    assert again["authorization"] == h["authorization"]


def test_bedrock_request_is_signed_without_model_and_stream():
    ctx = ctx_for("aws", headers=(("anthropic-beta", "token-efficient-tools-2025-02-19"),
                                  ("x-amz-date", "forged"), ("x-custom", "y")))
    ex = build_native_exchange(CLIENT_BODY, ctx, "bedrock", beta=("context-1m-2025-08-07",))
    assert ex.request.url == ("https://bedrock-runtime.us-east-1.amazonaws.com/model/"
                              "us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/"
                              "invoke-with-response-stream")
    expected = {"anthropic_version": "bedrock-2023-05-31",
                **{k: v for k, v in CLIENT_BODY.items() if k not in ("model", "stream")},
                "anthropic_beta": ["context-1m-2025-08-07", "token-efficient-tools-2025-02-19"]}
    assert ex.request.body == json.dumps(expected, separators=(",", ":"),
                                         ensure_ascii=False).encode()
    h = hdrs(ex)
    assert h["accept"] == "application/vnd.amazon.eventstream"
    assert h["x-amzn-bedrock-accept"] == "application/json"
    assert h["x-custom"] == "y" and h["x-amz-date"] == "20250101T000000Z"
    assert "anthropic-beta" not in h
    _verify_signature(ex, "us-east-1")
    whole = build_native_exchange(CLIENT_BODY, ctx_for("aws", stream=False), "aws")
    assert whole.request.url.endswith("/invoke")
    assert "stream" not in body_of(whole) and hdrs(whole)["accept"] == "application/json"
    _verify_signature(whole, "us-east-1")


def test_bedrock_misconfiguration_is_a_gateway_error():
    with pytest.raises(GatewayError):
        build_native_exchange(CLIENT_BODY, ctx_for("aws", aws_region=None), "aws")
    with pytest.raises(GatewayError):
        build_native_exchange(CLIENT_BODY, ctx_for("aws", aws_secret_key=None), "aws")


def test_the_builders_are_pure_and_leave_the_clients_body_alone():
    snapshot = json.dumps(CLIENT_BODY)
    for engine in ("claude", "vertex", "aws"):
        a = build_native_exchange(CLIENT_BODY, ctx_for(engine), engine, beta=("x",))
        b = build_native_exchange(CLIENT_BODY, ctx_for(engine), engine, beta=("x",))
        assert a.request == b.request
    assert json.dumps(CLIENT_BODY) == snapshot


# -- url sources on Vertex and Bedrock (issue 20) ----------------------------------------------

PDF = b"%PDF-1.4\n" + bytes(range(256)) + b"\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(32)
URL_BODY = {"model": CLIENT_MODEL, "max_tokens": 64, "messages": [
    {"role": "user", "content": [
        {"type": "document", "title": "R", "cache_control": {"type": "ephemeral"},
         "source": {"type": "url", "url": "https://d.test/r.pdf"}},
        {"type": "text", "text": "and this?"}]},
    {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f",
                                       "input": {}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://d.test/a.png"}}]}]}]}


@pytest.mark.parametrize("engine", ["vertex", "aws"])
def test_vertex_and_bedrock_get_url_sources_inline(engine):
    snapshot = json.dumps(URL_BODY)
    with pytest.raises(ImagesNeeded) as info:
        build_native_exchange(URL_BODY, ctx_for(engine), engine)
    assert info.value.urls == ("https://d.test/r.pdf", "https://d.test/a.png")
    fetched = {"https://d.test/r.pdf": ("application/octet-stream", PDF),
               "https://d.test/a.png": ("image/png", PNG)}
    ctx = attrs.evolve(ctx_for(engine), images=fetched)
    sent = json.loads(build_native_exchange(URL_BODY, ctx, engine).request.body)
    assert sent["messages"][0]["content"][0] == {
        "type": "document", "title": "R", "cache_control": {"type": "ephemeral"},
        "source": {"type": "base64", "media_type": "application/pdf",
                   "data": base64.b64encode(PDF).decode()}}
    assert sent["messages"][0]["content"][1] == URL_BODY["messages"][0]["content"][1]
    assert sent["messages"][2]["content"][0]["content"][0]["source"] == {
        "type": "base64", "media_type": "image/png", "data": base64.b64encode(PNG).decode()}
    assert json.dumps(URL_BODY) == snapshot  # the client's objects are left alone


def test_anthropic_keeps_url_sources_as_sent():
    sent = json.loads(build_native_exchange(URL_BODY, ctx_for("claude"), "claude").request.body)
    assert sent["messages"] == URL_BODY["messages"]


def test_a_fetched_document_anthropic_cannot_read_is_unsupported_content():
    ctx = attrs.evolve(ctx_for("aws"), images={"https://d.test/r.pdf": ("text/html", b"<p>"),
                                               "https://d.test/a.png": ("image/png", PNG)})
    with pytest.raises(ClientError) as info:
        build_native_exchange(URL_BODY, ctx, "aws")
    assert info.value.code == "unsupported_content" and "text/html" in info.value.message


# -- whole answers ---------------------------------------------------------------------------

# An answer as an upstream might lay it out: spacing, escapes and key order are its own.
ANSWER = (
    '{\n  "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",\n'
    '  "model" : "claude-sonnet-4-5-20250929",\n'
    '  "content": [\n'
    '    {"type": "thinking", "thinking": "Let me think \\u2014 carefully.", '
    '"signature": "EqQBCkgIARABGAIiQL2x"},\n'
    '    {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},\n'
    '    {"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search", '
    '"input": {"query": "grass"}},\n'
    '    {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01", "content": []},\n'
    '    {"type": "text", "text": "Green \u00e9\u2028.", "citations": [{"type": "char_location", '
    '"cited_text": "The grass is green.", "document_index": 0, "start_char_index": 0, '
    '"end_char_index": 19}]},\n'
    '    {"type": "tool_use", "id": "toolu_01", "name": "Bash", "input": {"command": "ls"}}\n'
    '  ],\n'
    '  "stop_reason": "tool_use", "stop_sequence": null, "container": null,\n'
    '  "usage": {"input_tokens": 10, "cache_creation_input_tokens": 20, '
    '"cache_read_input_tokens": 30, "output_tokens": 40, "service_tier": "standard"}\n'
    '}\n').encode()


@pytest.mark.parametrize("engine", ["claude", "vertex", "aws"])
def test_whole_answer_comes_back_byte_for_byte_but_the_model(engine):
    ex = build_native_exchange(CLIENT_BODY, ctx_for(engine, stream=False), engine)
    out = ex.parse_body(200, (), ANSWER)
    assert out == ANSWER.replace(b'"model" : "claude-sonnet-4-5-20250929"',
                                 b'"model" : "claude-sonnet-4-5"')
    assert json.loads(out)["model"] == CLIENT_MODEL
    assert ex.usage is not None
    assert ex.usage["prompt_tokens"] == 60 and ex.usage["completion_tokens"] == 40
    assert ex.usage["prompt_tokens_details"]["cached_tokens"] == 30
    assert ex.usage["prompt_tokens_details"]["cache_write_tokens"] == 20


def test_whole_answer_model_details():
    ex = build_native_exchange(CLIENT_BODY, ctx_for("claude", stream=False), "claude",
                               client_model='my "model"\u2028')
    out = ex.parse_body(200, (), ANSWER)
    assert json.loads(out)["model"] == 'my "model"\u2028'
    assert b'"model" : "my \\"model\\"\\u2028"' in out
    same = ANSWER.replace(b"claude-sonnet-4-5-20250929", CLIENT_MODEL.encode())
    plain = build_native_exchange(CLIENT_BODY, ctx_for("claude", stream=False), "claude")
    assert plain.parse_body(200, (), same) is same  # nothing to change: the very bytes
    nomodel = b'{"type":"message","content":[],"usage":{}}'
    assert plain.parse_body(200, (), nomodel) is nomodel
    # a nested "model" (inside content) is not the answer's model
    nested = (b'{"content":[{"type":"text","text":"x","model":"inner"}],'
              b'"id":"m","model":"up"}')
    assert plain.parse_body(200, (), nested) == nested.replace(b'"up"', b'"claude-sonnet-4-5"')


@pytest.mark.parametrize("engine", ["claude", "vertex", "aws"])
@pytest.mark.parametrize("body,kind", [(b"", "decode"), (b"not json", "decode"),
                                       (b"[1]", "decode"), (b'{"id":"x"}', "protocol"),
                                       (b"\xff{}", "decode")])
def test_a_body_that_is_not_a_message_is_an_upstream_error(engine, body, kind):
    ex = build_native_exchange(CLIENT_BODY, ctx_for(engine, stream=False), engine)
    with pytest.raises(UpstreamError) as info:
        ex.parse_body(200, (), body)
    assert info.value.kind.value == kind


def test_an_error_in_a_2xx_body_is_raised_err4():
    ex = build_native_exchange(CLIENT_BODY, ctx_for("claude", stream=False), "claude")
    with pytest.raises(UpstreamError) as info:
        ex.parse_body(200, (), b'{"type":"error","error":{"type":"overloaded_error",'
                               b'"message":"Overloaded"}}')
    assert info.value.status == 502 and str(info.value) == "Overloaded"
    br = build_native_exchange(CLIENT_BODY, ctx_for("aws", stream=False), "aws")
    with pytest.raises(UpstreamError) as info:
        br.parse_body(200, (("x-amzn-errortype", "ThrottlingException:http://x"),),
                      b'{"message":"Too many requests"}')
    assert info.value.status == 429 and info.value.code == "ThrottlingException"


def test_bedrock_token_count_headers_fill_the_usage_for_stats_only():
    ex = build_native_exchange(CLIENT_BODY, ctx_for("aws", stream=False), "aws")
    body = b'{"model":"m","content":[],"usage":{"output_tokens":5}}'
    out = ex.parse_body(200, (("X-Amzn-Bedrock-Input-Token-Count", "12"),
                              ("x-amzn-bedrock-output-token-count", "99")), body)
    assert out == body.replace(b'"m"', b'"claude-sonnet-4-5"')  # the answer is untouched
    assert ex.usage is not None
    assert ex.usage["prompt_tokens"] == 12 and ex.usage["completion_tokens"] == 5


def test_errors_use_each_vendors_mapping():
    ant = build_native_exchange(CLIENT_BODY, ctx_for("claude"), "claude")
    err = ant.parse_error(429, (("retry-after", "7"),),
                          b'{"type":"error","error":{"type":"rate_limit_error","message":"slow"}}')
    assert (err.status, err.type, err.code, str(err)) == (429, "rate_limit_error",
                                                          "rate_limit_error", "slow")
    assert err.headers == (("retry-after", "7"),)
    vtx = build_native_exchange(CLIENT_BODY, ctx_for("vertex"), "vertex")
    err = vtx.parse_error(429, (), b'[{"error":{"code":429,"message":"Quota exceeded",'
                                   b'"status":"RESOURCE_EXHAUSTED"}}]')
    assert (err.status, str(err)) == (429, "Quota exceeded")
    br = build_native_exchange(CLIENT_BODY, ctx_for("aws"), "aws")
    err = br.parse_error(424, (("x-amzn-errortype", "ModelErrorException"),),
                         b'{"message":"model failed"}')
    assert (err.status, err.code) == (502, "ModelErrorException")


# -- streams ---------------------------------------------------------------------------------

UPSTREAM_MODEL = "claude-sonnet-4-5-20250929"


def start(model: str = UPSTREAM_MODEL, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"id": "msg_01", "type": "message", "role": "assistant",
                               "model": model, "content": [], "stop_reason": None,
                               "stop_sequence": None}
    message["usage"] = usage if usage is not None else {
        "input_tokens": 10, "cache_creation_input_tokens": 20, "cache_read_input_tokens": 30,
        "output_tokens": 1, "service_tier": "standard"}
    return {"type": "message_start", "message": message}


def delta(index: int, **d: Any) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": d}


def block(index: int, content_block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": content_block}


def stop_block(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


END = [{"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 321, "cache_read_input_tokens": 35}},
       {"type": "message_stop"}]

EVENTS: list[dict[str, Any]] = [
    start(),
    {"type": "ping"},
    block(0, {"type": "thinking", "thinking": "", "signature": ""}),
    delta(0, type="thinking_delta", thinking="Let me check \"grass\"\n…"),
    delta(0, type="signature_delta", signature="EqQBCkgIARABGAIiQL2x+/sig=="),
    stop_block(0),
    block(1, {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"}),
    stop_block(1),
    block(2, {"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search",
              "input": {}}),
    delta(2, type="input_json_delta", partial_json='{"query": "gra'),
    delta(2, type="input_json_delta", partial_json='ss colour"}'),
    stop_block(2),
    block(3, {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01",
              "content": [{"type": "web_search_result", "url": "https://example.org/g",
                           "title": "Grass", "encrypted_content": "Eqgf", "page_age": None}]}),
    stop_block(3),
    block(4, {"type": "text", "text": ""}),
    delta(4, type="text_delta", text="Grass is "),
    delta(4, type="citations_delta", citation={
        "type": "web_search_result_location", "url": "https://example.org/g", "title": "Grass",
        "encrypted_index": "Eo8BCioIAhgB", "cited_text": "grass is green"}),
    delta(4, type="text_delta", text="green 🌱 \\ \"quoted\"\tand\u2028 a line sep."),
    stop_block(4),
    block(5, {"type": "tool_use", "id": "toolu_01", "name": "Bash", "input": {}}),
    delta(5, type="input_json_delta", partial_json=""),
    delta(5, type="input_json_delta", partial_json='{"command": "ls -la"}'),
    stop_block(5),
    {"type": "future_event", "payload": [1, 2]},
    *END,
]


def sse(events: list[dict[str, Any]], *, crlf: bool = False) -> bytes:
    nl = "\r\n" if crlf else "\n"
    return "".join(f"event: {e['type']}{nl}data: {compact(e)}{nl}{nl}"
                   for e in events).encode()


def expected_chunks(events: list[dict[str, Any]], model: str = CLIENT_MODEL) -> list[bytes]:
    out = []
    for e in events:
        if e["type"] == "message_start":
            e = {**e, "message": {**e["message"], "model": model}}
        data = compact(e).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        out.append(f"event: {e['type']}\ndata: {data}\n\n".encode())
    return out


def run(dec: Any, pieces: list[bytes]) -> list[Any]:
    items: list[Any] = []
    for p in pieces:
        items += dec.feed(p)
    return items + dec.close()


def sse_decoder(engine: str = "claude", client_model: str | None = None) -> Any:
    ex = build_native_exchange(CLIENT_BODY, ctx_for(engine), engine, client_model=client_model)
    return ex.stream_decoder()


def chunks(items: list[Any]) -> list[bytes]:
    return [i.data for i in items if isinstance(i, StreamChunk)]


EXPECTED_USAGE = {"prompt_tokens": 65, "completion_tokens": 321, "cached": 35, "written": 20}


def check_usage(usage: dict[str, Any] | None, want: dict[str, int] = EXPECTED_USAGE) -> None:
    assert usage is not None
    assert usage["prompt_tokens"] == want["prompt_tokens"]
    assert usage["completion_tokens"] == want["completion_tokens"]
    assert usage["total_tokens"] == want["prompt_tokens"] + want["completion_tokens"]
    details = usage["prompt_tokens_details"]
    assert details["cached_tokens"] == want["cached"]
    assert details["cache_write_tokens"] == want["written"]


@pytest.mark.parametrize("engine", ["claude", "vertex"])
def test_stream_is_re_emitted_byte_for_byte_but_the_model(engine):
    dec = sse_decoder(engine)
    assert isinstance(dec, NativeSSEDecoder)
    items = run(dec, [sse(EVENTS)])
    assert chunks(items) == expected_chunks(EVENTS)
    assert all(isinstance(i, StreamChunk) for i in items[:-1])
    assert isinstance(items[-1], StreamDone)
    check_usage(items[-1].usage)
    # what a Messages client reads back is what the upstream sent, model aside
    back = [json.loads(c.split(b"\ndata: ", 1)[1]) for c in chunks(items)]
    assert back[0]["message"]["model"] == CLIENT_MODEL
    assert back[1:] == EVENTS[1:]


def test_the_upstreams_own_bytes_are_kept_per_event():
    # Vertex writes spaces inside its JSON and CRLF line ends; the data is kept as written
    raw = (b'event: message_start\r\ndata: {"type":"message_start","message":{"model":'
           b'"claude-3-7-sonnet-20250219","id":"msg_vrtx_01","type":"message","role":'
           b'"assistant","content":[],"usage":{"input_tokens":16,"output_tokens":5}}  }\r\n\r\n'
           b'event: ping\r\ndata: {"type": "ping"}\r\n\r\n'
           b'event: vertex_event\r\ndata: {"type": "vertex_event", "x": 1}\r\n\r\n'
           b'event: content_block_delta\r\ndata: {"type":"content_block_delta","index":0,'
           b'"delta":{"type":"text_delta","text":"Ol\xc3\xa1!"}      }\r\n\r\n'
           b': a comment\r\n'
           b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},\r\n'
           b'data: "usage":{"output_tokens":7} }\r\n\r\n'
           b'event: message_stop\r\ndata: {"type":"message_stop"          }\r\n\r\n')
    items = run(sse_decoder("vertex"), [raw])
    assert chunks(items) == [
        (b'event: message_start\ndata: {"type":"message_start","message":{"model":'
        b'"claude-sonnet-4-5","id":"msg_vrtx_01","type":"message","role":"assistant",'
        b'"content":[],"usage":{"input_tokens":16,"output_tokens":5}}  }\n\n'),
        b'event: ping\ndata: {"type": "ping"}\n\n',
        (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"Ol\xc3\xa1!"}      }\n\n'),
        # two data lines join with a newline, whitespace between tokens: a space here
        (b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":'
        b'"end_turn"}, "usage":{"output_tokens":7} }\n\n'),
        b'event: message_stop\ndata: {"type":"message_stop"          }\n\n']
    assert items[-1] == StreamDone(items[-1].usage)
    assert items[-1].usage["prompt_tokens"] == 16 and items[-1].usage["completion_tokens"] == 7


def test_stream_event_names_come_from_the_json_type():
    raw = (b'event: wrong\ndata: {"type":"ping"}\n\n'
           b'event: named_only\ndata: {"a":1}\n\n'
           b'data: {"b":2}\n\n'
           b'data: {"type":"bad\\nname"}\n\n'
           b'data: [DONE]\n\n' + sse([start(), *END]))
    got = chunks(run(sse_decoder(), [raw]))
    assert got[:2] == [b'event: ping\ndata: {"type":"ping"}\n\n',
                       b'event: named_only\ndata: {"a":1}\n\n']
    assert got[2:] == expected_chunks([start(), *END])


def test_message_start_model_is_left_alone_when_it_is_the_clients_or_absent():
    events = [start(CLIENT_MODEL), *END]
    assert chunks(run(sse_decoder(), [sse(events)])) == expected_chunks(events)
    bare = {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 3}}}
    assert chunks(run(sse_decoder(), [sse([bare, *END])]))[0] == sse([bare])


def test_stream_usage_is_none_when_nothing_was_reported():
    events = [{"type": "message_start", "message": {"id": "m", "model": "x"}},
              {"type": "message_stop"}]
    items = run(sse_decoder(), [sse(events)])
    assert items[-1] == StreamDone(None)


def test_an_error_event_is_a_failure_after_the_items_before_it():
    events = [start(), block(0, {"type": "text", "text": ""}),
              delta(0, type="text_delta", text="Hi")]
    err = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    dec = sse_decoder()
    items = run(dec, [sse([*events, err, *END])])
    assert chunks(items) == expected_chunks(events)
    failed = items[-1]
    assert isinstance(failed, StreamFailed)
    assert str(failed.error) == "Overloaded" and failed.error.status == 502
    assert failed.error.upstream_status == 529
    assert dec.usage is not None and dec.usage["prompt_tokens"] == 60


def test_nothing_is_read_after_message_stop():
    dec = sse_decoder()
    items = dec.feed(sse([start(), *END]))
    assert isinstance(items[-1], StreamDone)
    assert dec.feed(b"data: not json\n\n" + sse([start()])) == []
    assert dec.close() == []
    with pytest.raises(DecodeError):
        dec.feed(b"")


@pytest.mark.parametrize("cut", [
    sse([start(), {"type": "ping"}]),
    sse([start(), *END[:1]]),  # a stop_reason without message_stop is still a truncation
    sse([start()]) + b'event: ping\ndata: {"type":"pi',
    b""])
def test_a_stream_cut_before_message_stop_is_truncated(cut):
    items = run(sse_decoder(), [cut])
    assert isinstance(items[-1], StreamFailed)
    assert items[-1].error.kind.value == "truncated"
    assert all(isinstance(i, StreamChunk) for i in items[:-1])


def test_invalid_json_is_a_decode_error_after_the_items_before_it():
    dec = sse_decoder()
    items = dec.feed(sse([start()]) + b"data: {nope\n\n" + sse(END))
    assert chunks(items) == expected_chunks([start()])
    with pytest.raises(DecodeError):
        dec.feed(b"")
    dec = sse_decoder()
    with pytest.raises(DecodeError):
        dec.feed(b'data: [1, 2]\n\n')


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points:
        out.append(data[last:p])
        last = p
    return out + [data[last:]]


def _same(a: list[Any], b: list[Any]) -> bool:
    def norm(items: list[Any]) -> list[Any]:
        return [(type(i).__name__, i.data if isinstance(i, StreamChunk) else
                 i.usage if isinstance(i, StreamDone) else (i.error.kind, str(i.error)))
                for i in items]
    return norm(a) == norm(b)


STREAMS = [sse(EVENTS), sse(EVENTS, crlf=True), sse(EVENTS[:9]),
           sse(EVENTS[:5]) + b"data: {bad\n\n" + sse(END),
           sse(EVENTS[:3] + [{"type": "error", "error": {"type": "api_error", "message": "x"}}])]


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(STREAMS))), st.lists(st.integers(0, 10**6), max_size=12))
def test_sse_split_invariance(which, cuts):
    data = STREAMS[which]

    def outcome(pieces: list[bytes]) -> tuple[list[Any], str | None]:
        dec, items = sse_decoder(), []
        try:
            for p in pieces:
                items += dec.feed(p)
            items += dec.close()
        except DecodeError as exc:
            return items, exc.kind
        return items, None

    whole_items, whole_err = outcome([data])
    items, err = outcome(_pieces(data, cuts))
    assert err == whole_err and _same(items, whole_items)


def test_sse_byte_by_byte_is_the_same_as_whole():
    data = sse(EVENTS, crlf=True)
    assert _same(run(sse_decoder(), [data[i:i + 1] for i in range(len(data))]),
                 run(sse_decoder(), [data]))


# -- Bedrock streams -------------------------------------------------------------------------

def bedrock_decoder(client_model: str | None = None) -> Any:
    ex = build_native_exchange(CLIENT_BODY, ctx_for("aws"), "aws", client_model=client_model)
    dec = ex.stream_decoder()
    assert isinstance(dec, NativeBedrockDecoder)
    return dec


def test_bedrock_chunks_become_sse_events():
    events = [e for e in EVENTS if e["type"] != "future_event"]
    items = run(bedrock_decoder(), [fx.stream(events)])
    assert chunks(items) == expected_chunks(events)
    assert isinstance(items[-1], StreamDone)
    check_usage(items[-1].usage)


def test_bedrock_passes_the_invocation_metrics_through_and_fills_missing_usage():
    events = [start(usage={"input_tokens": 0, "output_tokens": 0}),
              *fx.text_block(0, "Hi"), *fx.stop("end_turn", None, (25, 9), cache=(4, 6))]
    items = run(bedrock_decoder(), [fx.stream(events)])
    assert chunks(items) == expected_chunks(events)  # metrics and all
    check_usage(items[-1].usage, {"prompt_tokens": 35, "completion_tokens": 9, "cached": 4,
                                  "written": 6})
    # counted by the events: the metrics only fill the fields the events left out
    events = [start(usage={"input_tokens": 3, "output_tokens": 1}),
              *fx.stop("end_turn", 2, (25, 9), cache=(4, 6))]
    items = run(bedrock_decoder(), [fx.stream(events)])
    check_usage(items[-1].usage, {"prompt_tokens": 13, "completion_tokens": 2, "cached": 4,
                                  "written": 6})


def test_bedrock_event_json_with_line_breaks_stays_one_data_line():
    raw_start = json.dumps(start(), indent=2).encode()
    payload = fx.compact({"bytes": base64.b64encode(raw_start).decode()})
    frame = fx.frame([(":event-type", "chunk"), (":content-type", "application/json"),
                      (":message-type", "event")], payload)
    items = run(bedrock_decoder(), [frame + fx.stream(END)])
    first = chunks(items)[0]
    assert first.count(b"\n") == 3 and first.endswith(b"\n\n")
    assert json.loads(first.split(b"data: ", 1)[1])["message"]["model"] == CLIENT_MODEL
    assert first.split(b"data: ", 1)[1] == (
        json.dumps({**start(), "message": {**start()["message"], "model": CLIENT_MODEL}},
                   indent=2).replace("\n", " ").encode() + b"\n\n")


@pytest.mark.parametrize("kind,status,code", [
    ("throttlingException", 429, "throttlingException"),
    ("modelStreamErrorException", 502, "modelStreamErrorException"),
    ("internalServerException", 502, "internalServerException")])
def test_bedrock_exceptions_are_failures(kind, status, code):
    head = [start(), *fx.text_block(0, "Hi")]
    items = run(bedrock_decoder(), [fx.stream(head) + fx.exception(kind, "boom")
                                    + fx.stream(END)])
    assert chunks(items) == expected_chunks(head)
    assert isinstance(items[-1], StreamFailed)
    assert (items[-1].error.status, items[-1].error.code, str(items[-1].error)) == \
        (status, code, "boom")


def test_bedrock_anthropic_error_event_is_a_failure():
    err = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    items = run(bedrock_decoder(), [fx.stream([start(), err, *END])])
    assert isinstance(items[-1], StreamFailed) and str(items[-1].error) == "Overloaded"
    assert len(chunks(items)) == 1


@pytest.mark.parametrize("cut", [fx.stream([start()]), fx.stream([start(), *END])[:-5],
                                 fx.stream([start(), END[0]])])
def test_bedrock_cut_is_truncated(cut):
    items = run(bedrock_decoder(), [cut])
    assert isinstance(items[-1], StreamFailed) and items[-1].error.kind.value == "truncated"


def test_bedrock_bad_chunks_are_decode_errors():
    bad_b64 = fx.frame([(":event-type", "chunk"), (":message-type", "event")],
                       b'{"bytes":"!!!"}')
    not_obj = fx.frame([(":event-type", "chunk"), (":message-type", "event")],
                       fx.compact({"bytes": base64.b64encode(b"[1]").decode()}))
    no_bytes = fx.frame([(":event-type", "chunk"), (":message-type", "event")], b'{"x":1}')
    for bad in (bad_b64, not_obj, no_bytes, fx.frame([(":event-type", "chunk"),
                                                      (":message-type", "event")], b"\xff")):
        dec = bedrock_decoder()
        items = dec.feed(fx.stream([start()]) + bad)
        assert chunks(items) == expected_chunks([start()])
        with pytest.raises(DecodeError):
            dec.feed(b"")


BEDROCK_STREAMS = [fx.stream([e for e in EVENTS if e["type"] != "future_event"]),
                   fx.stream(EVENTS[:4]) + fx.exception("throttlingException", "slow"),
                   fx.stream(EVENTS[:6])]


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(BEDROCK_STREAMS))),
       st.lists(st.integers(0, 10**6), max_size=12))
def test_bedrock_split_invariance(which, cuts):
    data = BEDROCK_STREAMS[which]
    assert _same(run(bedrock_decoder(), _pieces(data, cuts)), run(bedrock_decoder(), [data]))
