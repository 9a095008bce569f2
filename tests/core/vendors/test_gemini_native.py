"""Native Gemini passthrough (``uniapi_core.vendors.gemini_native``): a ``generateContent``
request to Gemini or a Gemini model on Vertex without a trip through the chat format, and its
answers given back to the Gemini client byte for byte.

The oracles are independent of the module: expected upstream bodies are the client's dict
encoded with ``json.dumps``; upstream streams are written the way Google writes them
(``data: {"candidates": [...]}\\r\\n\\r\\n``, ``", "``/``": "`` spacing) and the expected client
bytes are built from the same texts; the JSON-array framing is checked by parsing it.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uniapi_core.config.model import Provider, ProviderPreferences
from uniapi_core.errors import ClientError, DecodeError, GatewayError, UpstreamError
from uniapi_core.vendors import gemini_native
from uniapi_core.vendors.base import ChatContext, StreamChunk, StreamDone, StreamFailed
from uniapi_core.vendors.gemini_native import (
    GeminiNativeExchange,
    array_error_tail,
    build_gemini_native_exchange,
    native_gemini,
)

CLIENT_MODEL = "gemini-flash"  # an alias the gateway maps
UPSTREAM_MODEL = "gemini-2.5-flash"
KEY = "AIzaSyTESTKEY"


def ctx_for(engine: str = "gemini", *, stream: bool = True,
            headers: tuple[tuple[str, str], ...] = (), model: str = UPSTREAM_MODEL,
            **provider: Any) -> ChatContext:
    prefs = ProviderPreferences(headers=headers)
    extra: dict[str, Any] = {}
    if engine == "gemini":
        p = Provider(provider="gem", preferences=prefs, api=(KEY,),
                     **({"base_url": "https://generativelanguage.googleapis.com/v1beta"}
                        | provider))
        key: str | None = KEY
    else:
        p = Provider(provider="vtx", preferences=prefs, **({"project_id": "proj-1"} | provider))
        key = None
        extra = {"region": "us-central1", "access_token": "ya29.token"}
    return ChatContext(client_model=CLIENT_MODEL, upstream_model=model, provider=p,
                       api_key=key, stream=stream, include_usage=False,
                       response_id="chatcmpl-gnative01", created=1735689600,
                       entropy=random.Random(1), **extra)


def exchange(engine: str = "gemini", *, stream: bool = True, sse: bool = True,
             body: dict[str, Any] | None = None, **kw: Any) -> GeminiNativeExchange:
    return build_gemini_native_exchange(CLIENT_BODY if body is None else body,
                                        ctx_for(engine, stream=stream, **kw), engine,
                                        stream=stream, sse=sse, client_model=CLIENT_MODEL)


# A generateContent request with what the chat format would lose: a replayed thought signature
# on a function call, a functionResponse, fileData, code execution and Google Search tools,
# thinking config with thoughts, cachedContent, a field the gateway does not know; camelCase
# and odd key order as a client writes them.
CLIENT_BODY: dict[str, Any] = {
    "contents": [
        {"role": "user", "parts": [
            {"text": "What's the weather in Paris? \u2028Also read this."},
            {"fileData": {
                "mimeType": "application/pdf",
                "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc"}}]},
        {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
             "thoughtSignature": "CiQBcsjafJ3mB0a+sig/EXAMPLE=="}]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather",
                                  "response": {"temp_c": 21, "sky": "clear"}}}]}],
    "systemInstruction": {"parts": [{"text": "Be brief."}]},
    "tools": [{"functionDeclarations": [
        {"name": "get_weather", "description": "Weather for a city",
         "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}},
                        "required": ["city"]}}]},
        {"codeExecution": {}}, {"googleSearch": {}}],
    "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
    "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT",
                        "threshold": "BLOCK_ONLY_HIGH"}],
    "generationConfig": {"temperature": 0.2, "maxOutputTokens": 2048,
                         "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True},
                         "responseModalities": ["TEXT"]},
    "cachedContent": "cachedContents/xyz123",
    "labels": {"team": "a"},
    "futureField": {"nested": [1, 2.5, None, True]},
}


def compact(obj: Any) -> bytes:
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()


def google(obj: Any) -> str:
    """JSON the way Google's servers write stream events."""
    return json.dumps(obj, separators=(",", ": "), ensure_ascii=False)


def hdrs(ex: GeminiNativeExchange) -> dict[str, str]:
    return {k.lower(): v for k, v in ex.request.headers}


# -- engines and requests --------------------------------------------------------------------

def test_native_gemini_engines_and_aliases():
    assert native_gemini("gemini", "gemini-2.5-pro") == "gemini"
    assert native_gemini("GEMINI", "anything") == "gemini"
    assert native_gemini("vertex", "gemini-2.5-pro") == "vertex"
    assert native_gemini("vertex-gemini", "gemini-2.0-flash-001") == "vertex"
    assert native_gemini("vertex", "claude-sonnet-4-5@20250929") is None
    assert native_gemini("vertex-claude", "claude-opus-4") is None
    for engine in ("gpt", "claude", "aws", "openrouter", "azure", "cohere", "cloudflare"):
        assert native_gemini(engine, "gemini-2.5-pro") is None


def test_a_channel_that_does_not_speak_gemini_is_refused():
    ctx = ctx_for("vertex", model="claude-sonnet-4-5@20250929")
    with pytest.raises(ValueError):
        build_gemini_native_exchange(CLIENT_BODY, ctx, "vertex", stream=True, sse=True,
                                     client_model=CLIENT_MODEL)
    with pytest.raises(ValueError):
        build_gemini_native_exchange(CLIENT_BODY, ctx_for(), "gpt", stream=True, sse=True,
                                     client_model=CLIENT_MODEL)


@pytest.mark.parametrize("stream,sse,op", [
    (False, True, "generateContent"),
    (True, True, "streamGenerateContent?alt=sse"),
    (True, False, "streamGenerateContent?alt=sse")])  # the JSON-array client: SSE upstream
def test_gemini_request_is_the_clients_body_unchanged(stream, sse, op):
    before = json.dumps(CLIENT_BODY)
    ex = exchange(stream=stream, sse=sse)
    assert ex.request.method == "POST"
    assert ex.request.url == ("https://generativelanguage.googleapis.com/v1beta/models/"
                              f"gemini-2.5-flash:{op}")
    assert ex.request.body == compact(CLIENT_BODY)
    assert b"\\u2028" in ex.request.body  # S-8
    assert list(json.loads(ex.request.body)) == list(CLIENT_BODY)  # key order kept
    assert b'"thoughtSignature":"CiQBcsjafJ3mB0a+sig/EXAMPLE=="' in ex.request.body
    assert json.dumps(CLIENT_BODY) == before  # the client's dict is left alone
    assert hdrs(ex) == {"content-type": "application/json", "x-goog-api-key": KEY}
    assert "key=" not in ex.request.url  # GEM-3: the key only in the header


def test_gemini_request_url_and_headers_follow_the_provider():
    ex = exchange(stream=False, base_url="https://proxy.example/google/v1beta/models",
                  headers=(("X-Goog-Api-Key", "override"), ("x-extra", "1")),
                  model="models/gemini-2.5-pro")
    assert ex.request.url == ("https://proxy.example/google/v1beta/models/"
                              "gemini-2.5-pro:generateContent")
    assert hdrs(ex) == {"content-type": "application/json", "x-goog-api-key": "override",
                        "x-extra": "1"}
    assert sum(k.lower() == "x-goog-api-key" for k, _ in ex.request.headers) == 1


def test_vertex_request_has_the_vertex_url_and_a_bearer_token():
    ex = exchange("vertex", stream=True, sse=False,
                  headers=(("authorization", "Bearer stolen"), ("x-goog-user-project", "p2")))
    assert ex.engine == "vertex"
    assert ex.request.url == ("https://us-central1-aiplatform.googleapis.com/v1/projects/proj-1/"
                              "locations/us-central1/publishers/google/models/"
                              "gemini-2.5-flash:streamGenerateContent?alt=sse")
    assert hdrs(ex) == {"content-type": "application/json", "x-goog-user-project": "p2",
                        "authorization": "Bearer ya29.token"}
    assert ex.request.body == compact(CLIENT_BODY)
    ex = exchange("vertex", stream=False)
    assert ex.request.url.endswith("/models/gemini-2.5-flash:generateContent")


def test_vertex_misconfiguration_is_a_gateway_error():
    with pytest.raises(GatewayError):
        exchange("vertex", project_id="")
    ctx = ctx_for("vertex")
    with pytest.raises(GatewayError):
        build_gemini_native_exchange(CLIENT_BODY, attrs.evolve(ctx, access_token=None),
                                     "vertex", stream=False, sse=True, client_model="m")


def test_a_body_that_cannot_be_encoded_is_a_client_error():
    with pytest.raises(ClientError):
        exchange(body={"contents": [], "generationConfig": {"temperature": float("inf")}})


# -- whole answers ---------------------------------------------------------------------------

WHOLE = """{
  "candidates": [
    {
      "content": {
        "parts": [
          {
            "text": "**Considering the weather**\\n\\nIt is clear.",
            "thought": true
          },
          {
            "text": "It's 21\u00b0C and clear in Paris.",
            "thoughtSignature": "EqYDCqMDAdHtim9+sig=="
          }
        ],
        "role": "model"
      },
      "finishReason": "STOP",
      "index": 0,
      "groundingMetadata": {"webSearchQueries": ["paris weather"]}
    }
  ],
  "usageMetadata": {
    "promptTokenCount": 120,
    "candidatesTokenCount": 12,
    "totalTokenCount": 180,
    "cachedContentTokenCount": 64,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 100},
                            {"modality": "DOCUMENT", "tokenCount": 20}],
    "thoughtsTokenCount": 48
  },
  "modelVersion": "gemini-2.5-flash",
  "responseId": "mRFzaLzHKr6Bz7IPmOGz8Qs"
}
"""


@pytest.mark.parametrize("engine", ["gemini", "vertex"])
def test_whole_answer_comes_back_byte_for_byte(engine):
    ex = exchange(engine, stream=False)
    body = WHOLE.encode()
    assert ex.parse_body(200, (), body) is body  # modelVersion stays the upstream's
    assert ex.usage is not None
    assert ex.usage["prompt_tokens"] == 120
    assert ex.usage["completion_tokens"] == 60  # U-2: thoughts are completion
    assert ex.usage["total_tokens"] == 180
    assert ex.usage["prompt_tokens_details"]["cached_tokens"] == 64
    assert ex.usage["prompt_tokens_details"]["document_tokens"] == 20
    assert ex.usage["completion_tokens_details"]["reasoning_tokens"] == 48


def test_whole_answer_details():
    ex = exchange(stream=False)
    listed = ("[" + WHOLE + "]").encode()  # a list-wrapped answer is relayed as it came
    assert ex.parse_body(200, (), listed) is listed
    bare = b'{"candidates":[{"content":{"parts":[{"text":"hi"}],"role":"model"}}]}'
    assert ex.parse_body(200, (), bare) is bare
    assert ex.usage is None  # no usageMetadata
    blocked = (b'{"promptFeedback": {"blockReason": "SAFETY"}, '
               b'"usageMetadata": {"promptTokenCount": 7}}')
    assert ex.parse_body(200, (), blocked) is blocked  # a Gemini client reads a block itself
    assert ex.usage is not None and ex.usage["prompt_tokens"] == 7


@pytest.mark.parametrize("body,kind", [
    (b"<html>oops</html>", "decode"), (b"\xff\xfe", "decode"), (b"[1, 2]", "decode"),
    (b'"text"', "decode"), (b"[]", "decode"), (b'{"candidates": []}', "empty"),
    (b'{"usageMetadata": {"promptTokenCount": 3}}', "empty"),
    (b'{"candidates": [1, "x"]}', "empty")])
def test_a_body_that_is_not_an_answer_is_an_upstream_error(body, kind):
    with pytest.raises(UpstreamError) as info:
        exchange(stream=False).parse_body(200, (), body)
    assert info.value.kind.value == kind


def test_an_error_in_a_2xx_body_is_raised_err4():
    body = json.dumps({"error": {"code": 429, "message": "Resource has been exhausted",
                                 "status": "RESOURCE_EXHAUSTED"}}).encode()
    with pytest.raises(UpstreamError) as info:
        exchange(stream=False).parse_body(200, (), body)
    assert info.value.status == 429 and info.value.type == "rate_limit_error"
    assert str(info.value) == "Resource has been exhausted"


@pytest.mark.parametrize("engine", ["gemini", "vertex"])
def test_errors_use_gemini_s_mapping(engine):
    ex = exchange(engine, stream=False)
    body = json.dumps([{"error": {
        "code": 429, "message": "You exceeded your current quota.",
        "status": "RESOURCE_EXHAUSTED",
        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                     "retryDelay": "37s"}]}}]).encode()
    err = ex.parse_error(429, (), body)
    assert (err.status, err.type, err.code) == (429, "rate_limit_error", "RESOURCE_EXHAUSTED")
    assert err.headers == (("retry-after", "37"),)
    bad_key = json.dumps({"error": {
        "code": 400, "message": "API key not valid. Please pass a valid API key.",
        "status": "INVALID_ARGUMENT",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                     "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}}).encode()
    err = ex.parse_error(400, (), bad_key)
    assert (err.status, err.code) == (401, "API_KEY_INVALID")
    err = ex.parse_error(503, (), b"upstream connect error")
    assert err.status == 502


# -- streams ---------------------------------------------------------------------------------

def chunk(text: str | None = None, *, thought: bool = False, finish: str | None = None,
          usage: dict[str, Any] | None = None, parts: list[Any] | None = None) -> dict[str, Any]:
    if parts is None:
        part: dict[str, Any] = {"text": text}
        if thought:
            part["thought"] = True
        parts = [part]
    cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
    if finish:
        cand["finishReason"] = finish
    cand["index"] = 0
    out: dict[str, Any] = {"candidates": [cand]}
    if usage is not None:
        out["usageMetadata"] = usage
    out["modelVersion"] = UPSTREAM_MODEL
    out["responseId"] = "mRFzaLzHKr6Bz7IPmOGz8Qs"
    return out


U1 = {"promptTokenCount": 120, "totalTokenCount": 120,
      "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 120}]}
U2 = {"promptTokenCount": 120, "candidatesTokenCount": 9, "totalTokenCount": 177,
      "thoughtsTokenCount": 48}
U3 = {"promptTokenCount": 120, "candidatesTokenCount": 12, "totalTokenCount": 180,
      "thoughtsTokenCount": 48, "cachedContentTokenCount": 64}

EVENTS: list[dict[str, Any]] = [
    chunk("**Planning**\n\nThe user wants weather.", thought=True, usage=U1),
    chunk(parts=[{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                  "thoughtSignature": "CiQBcsjafJ3mB0a+sig/EXAMPLE=="}], usage=U1),
    chunk("It's 21\u00b0C ", usage=U2),  # the fast path's layout
    chunk("and clear \u2028in \"Paris\".", usage=U2),
    chunk("", finish="STOP", usage=U3),
]
TEXTS = [google(e) for e in EVENTS]


def sse(texts: list[str], *, nl: str = "\r\n") -> bytes:
    return "".join(f"data: {t}{nl}{nl}" for t in texts).encode()


def client_sse(texts: list[str]) -> list[bytes]:
    return [b"data: " + t.replace("\u2028", "\\u2028").encode() + b"\r\n\r\n" for t in texts]


def run(dec: Any, pieces: list[bytes]) -> list[Any]:
    items: list[Any] = []
    for p in pieces:
        items += dec.feed(p)
    return items + dec.close()


def chunks(items: list[Any]) -> list[bytes]:
    return [i.data for i in items if isinstance(i, StreamChunk)]


def decoder(sse_out: bool = True, engine: str = "gemini") -> Any:
    return exchange(engine, sse=sse_out).stream_decoder()


def check_final_usage(usage: dict[str, Any] | None) -> None:
    assert usage is not None
    assert usage["prompt_tokens"] == 120 and usage["completion_tokens"] == 60
    assert usage["prompt_tokens_details"]["cached_tokens"] == 64
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 48


@pytest.mark.parametrize("engine", ["gemini", "vertex"])
@pytest.mark.parametrize("nl", ["\r\n", "\n"])
def test_stream_is_re_emitted_byte_for_byte(engine, nl):
    items = run(decoder(engine=engine), [sse(TEXTS, nl=nl)])
    assert chunks(items) == client_sse(TEXTS)
    assert isinstance(items[-1], StreamDone)
    check_final_usage(items[-1].usage)
    assert b'"thoughtSignature": "CiQBcsjafJ3mB0a+sig/EXAMPLE=="' in chunks(items)[1]


def test_the_fast_path_gives_what_the_long_way_gives(monkeypatch):
    data = sse(TEXTS)
    fast = run(decoder(), [data])
    assert gemini_native._PLAIN_TEXT.fullmatch(TEXTS[2]) is not None  # the path is taken
    monkeypatch.setattr(gemini_native, "_PLAIN_TEXT", re.compile(r"(?!x)x"))
    slow = run(decoder(), [data])
    assert _same(fast, slow)


def test_a_trailing_usage_only_object_after_the_finish_is_passed_and_counted():
    tail = {"candidates": [{"content": {"parts": [{"text": ""}], "role": "model"}, "index": 0}],
            "usageMetadata": {**U3, "candidatesTokenCount": 30}, "modelVersion": UPSTREAM_MODEL}
    texts = TEXTS + [google(tail)]
    items = run(decoder(), [sse(texts) + b"data: not json\r\n\r\n"
                            + b'data: {"error": {"code": 500, "message": "late"}}\r\n\r\n'])
    assert chunks(items) == client_sse(texts)  # after the finish: bad JSON and errors dropped
    assert isinstance(items[-1], StreamDone)
    assert items[-1].usage["completion_tokens"] == 78


def test_json_array_framing_for_a_client_without_alt_sse():
    dec = decoder(sse_out=False)
    items = run(dec, [sse(TEXTS)])
    body = b"".join(chunks(items))
    assert json.loads(body) == [json.loads(t) for t in TEXTS]
    assert body.startswith(b"[" + TEXTS[0].encode())
    assert chunks(items)[1].startswith(b",\r\n")
    assert chunks(items)[-1] == b"]"
    assert isinstance(items[-1], StreamDone) and dec.opened
    # after a failure the front closes the array with the error as its last element
    dec = decoder(sse_out=False)
    items = run(dec, [sse(TEXTS[:2]) + b'data: {"error": {"code": 500, "message": "x", '
                                       b'"status": "INTERNAL"}}\r\n\r\n'])
    assert isinstance(items[-1], StreamFailed) and dec.opened
    body = b"".join(chunks(items)) + array_error_tail(b'{"error":{"code":500}}', dec.opened)
    assert json.loads(body)[-1] == {"error": {"code": 500}}
    assert array_error_tail(b"{}", False) == b"[{}]"


def test_an_error_object_in_the_stream_is_a_failure_after_the_items_before_it():
    err = {"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).",
                     "status": "RESOURCE_EXHAUSTED"}}
    items = run(decoder(), [sse(TEXTS[:2] + [google(err)] + TEXTS[2:])])
    assert chunks(items) == client_sse(TEXTS[:2])
    assert isinstance(items[-1], StreamFailed)
    assert items[-1].error.status == 429 and items[-1].error.code == "RESOURCE_EXHAUSTED"
    assert str(items[-1].error) == err["error"]["message"]


def test_a_blocked_prompt_stream_is_passed_through_and_ends_properly():
    text = google({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                   "usageMetadata": {"promptTokenCount": 11, "totalTokenCount": 11},
                   "modelVersion": UPSTREAM_MODEL})
    items = run(decoder(), [sse([text])])
    assert chunks(items) == client_sse([text])
    assert isinstance(items[-1], StreamDone) and items[-1].usage["prompt_tokens"] == 11


@pytest.mark.parametrize("cut", [
    sse(TEXTS[:4]),  # no finishReason
    sse(TEXTS[:4]) + TEXTS[4].encode()[:40],
    sse(TEXTS[:1]) + b"data: ",
    b""])
def test_a_stream_cut_before_a_finish_reason_is_truncated(cut):
    items = run(decoder(), [cut])
    assert isinstance(items[-1], StreamFailed)
    assert items[-1].error.kind.value == "truncated"
    assert all(isinstance(i, StreamChunk) for i in items[:-1])


def test_eof_inside_a_line_after_the_finish_is_a_complete_answer():
    items = run(decoder(), [sse(TEXTS) + b'data: {"usageMeta'])
    assert chunks(items) == client_sse(TEXTS)
    assert isinstance(items[-1], StreamDone)
    check_final_usage(items[-1].usage)


def test_multi_line_data_and_lists_of_objects():
    two = [chunk("a"), chunk("b", finish="STOP")]
    pretty = json.dumps(two[0], indent=2)
    listed = "[" + google(two[0]) + " ,\n " + google(two[1]) + "]"
    data = ("data: " + pretty.replace("\n", "\ndata: ") + "\r\n\r\n").encode() + \
        ("data: " + listed.replace("\n", "\ndata: ") + "\r\n\r\n").encode()
    items = run(decoder(), [data])
    out = chunks(items)
    assert len(out) == 3 and all(b"\n" not in c[:-4] for c in out)
    assert [json.loads(c[6:]) for c in out] == [two[0], *two]
    assert out[1] == b"data: " + google(two[0]).encode() + b"\r\n\r\n"  # each element's text
    assert isinstance(items[-1], StreamDone)


def test_invalid_json_before_the_finish_is_a_decode_error_after_the_items_before_it():
    dec = decoder()
    items = dec.feed(sse(TEXTS[:2]) + b"data: {nope\r\n\r\n" + sse(TEXTS[2:]))
    assert chunks(items) == client_sse(TEXTS[:2])
    with pytest.raises(DecodeError):
        dec.feed(b"")
    for bad in (b"data: [1, 2]\r\n\r\n", b'data: "x"\r\n\r\n', b"data: []\r\n\r\n"):
        with pytest.raises(DecodeError):
            decoder().feed(bad)


def test_keep_alives_and_done_markers_are_ignored():
    items = run(decoder(), [b": keep-alive\r\n\r\ndata: \r\n\r\n" + sse(TEXTS)
                            + b"data: [DONE]\r\n\r\n"])
    assert chunks(items) == client_sse(TEXTS)


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


STREAMS = [sse(TEXTS), sse(TEXTS, nl="\n"), sse(TEXTS[:3]),
           sse(TEXTS[:2]) + b"data: {bad\r\n\r\n" + sse(TEXTS[2:]),
           sse(TEXTS[:2] + [google({"error": {"code": 500, "message": "x"}})]),
           sse(TEXTS) + b"data: {bad\r\n\r\n" + sse(TEXTS[2:3])]


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(STREAMS))), st.booleans(),
       st.lists(st.integers(0, 10**6), max_size=12))
def test_split_invariance(which, sse_out, cuts):
    data = STREAMS[which]

    def outcome(pieces: list[bytes]) -> tuple[list[Any], str | None]:
        dec, items = decoder(sse_out), []
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


def test_byte_by_byte_is_the_same_as_whole():
    data = sse(TEXTS)
    assert _same(run(decoder(), [data[i:i + 1] for i in range(len(data))]),
                 run(decoder(), [data]))
