"""Native Responses passthrough (``uniapi_core.vendors.responses_native``): a ``POST
/v1/responses`` request to a provider that speaks the Responses API, and its answers given back
byte for byte except the model name.

The oracles are independent of the module: expected upstream bodies are the client's dict
edited by hand and encoded with ``json.dumps``; expected streams are built from the same event
list the upstream bytes are built from (OpenAI's documented event shapes).
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uniapi_core.config.model import Provider, ProviderPreferences
from uniapi_core.errors import ClientError, DecodeError, UpstreamError
from uniapi_core.vendors.base import ChatContext, StreamChunk, StreamDone, StreamFailed
from uniapi_core.vendors.responses_native import (
    ResponsesNativeExchange,
    build_responses_native_exchange,
    responses_url,
    responses_usage,
    speaks_responses,
)

CLIENT_MODEL = "gpt-5-codex"
UPSTREAM_MODEL = "gpt-5-codex-2025-09-15"
KEY = "sk-proj-TESTKEY"
BASE = "https://api.openai.com/v1/responses"


def provider(base_url: str | None = BASE, *, headers: tuple[tuple[str, str], ...] = (),
             **kw: Any) -> Provider:
    return Provider(provider="oai", base_url=base_url, api=(KEY,),
                    preferences=ProviderPreferences(headers=headers), **kw)


def ctx_for(*, stream: bool = True, p: Provider | None = None) -> ChatContext:
    return ChatContext(client_model=CLIENT_MODEL, upstream_model=UPSTREAM_MODEL,
                       provider=p or provider(), api_key=KEY, stream=stream,
                       include_usage=False, response_id="chatcmpl-rnative01",
                       created=1735689600, entropy=random.Random(1))


def exchange(*, stream: bool = True, body: dict[str, Any] | None = None,
             p: Provider | None = None,
             client_model: str = CLIENT_MODEL) -> ResponsesNativeExchange:
    return build_responses_native_exchange(CLIENT_BODY if body is None else body,
                                           ctx_for(stream=stream, p=p),
                                           client_model=client_model)


def compact(obj: Any) -> bytes:
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()


# A Responses request with what chat would lose: a reasoning item with encrypted content
# replayed, a function call and its output, built-in tools, include, text.format, a
# previous_response_id, a field the gateway does not know; model not first on purpose.
CLIENT_BODY: dict[str, Any] = {
    "instructions": "You are a coding agent.\u2028Be terse.",
    "model": CLIENT_MODEL,
    "input": [
        {"type": "message", "role": "user",
         "content": [{"type": "input_text", "text": "List the files."}]},
        {"type": "reasoning", "id": "rs_68af2e7c5f1c8190", "summary": [],
         "encrypted_content": "gAAAAABor2-8BEXAMPLE=="},
        {"type": "function_call", "id": "fc_68af2e7d", "call_id": "call_Zs2Y9EXAMPLE",
         "name": "shell", "arguments": "{\"command\":[\"ls\"]}"},
        {"type": "function_call_output", "call_id": "call_Zs2Y9EXAMPLE",
         "output": "a.txt\nb.txt"}],
    "tools": [{"type": "function", "name": "shell", "description": "Run a command",
               "strict": False,
               "parameters": {"type": "object",
                              "properties": {"command": {"type": "array",
                                                         "items": {"type": "string"}}}}},
              {"type": "web_search"}],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "reasoning": {"effort": "medium", "summary": "auto"},
    "store": False,
    "include": ["reasoning.encrypted_content"],
    "text": {"format": {"type": "text"}, "verbosity": "low"},
    "prompt_cache_key": "019a-session",
    "stream": True,
    "future_field": {"x": [1, 2.5, None]},
}


def hdrs(ex: ResponsesNativeExchange) -> dict[str, str]:
    return {k.lower(): v for k, v in ex.request.headers}


# -- which providers, which URL --------------------------------------------------------------

def test_speaks_responses_is_a_base_url_ending_in_responses():
    assert speaks_responses(provider())
    assert speaks_responses(provider("https://api.openai.com/v1/responses/"))
    assert speaks_responses(provider("https://gw.example/openai/v1/responses?tier=flex"))
    assert speaks_responses(provider("https://openrouter.ai/api/v1/responses"))
    assert speaks_responses(provider("https://host.example/v1/responses", engine="openai"))
    assert not speaks_responses(provider("https://api.openai.com/v1"))
    assert not speaks_responses(provider("https://api.openai.com/v1/chat/completions"))
    assert not speaks_responses(provider("https://host.example/responses-api/v1"))
    assert not speaks_responses(provider(None))
    # engines that are not OpenAI-compatible, whatever the path
    assert not speaks_responses(provider("https://host.example/v1/responses", engine="claude"))
    assert not speaks_responses(provider("https://res.openai.azure.com/openai/v1/responses"))


def test_responses_url():
    assert responses_url(BASE) == BASE
    assert responses_url(BASE + "?a=1") == BASE + "?a=1"
    assert responses_url("https://api.openai.com/v1") == BASE
    assert responses_url("https://api.openai.com/v1/") == BASE
    assert responses_url("https://api.openai.com/v1/chat/completions?x=2") == BASE + "?x=2"


# -- requests --------------------------------------------------------------------------------

def test_request_is_the_clients_body_with_the_upstream_model():
    before = copy.deepcopy(CLIENT_BODY)
    ex = exchange()
    want = dict(CLIENT_BODY)
    want["model"] = UPSTREAM_MODEL
    assert ex.request.method == "POST" and ex.request.url == BASE
    assert ex.request.body == compact(want)  # key order kept, U+2028 escaped
    assert b"\\u2028" in ex.request.body
    assert CLIENT_BODY == before
    assert hdrs(ex) == {"content-type": "application/json", "accept": "text/event-stream",
                        "authorization": f"Bearer {KEY}"}


def test_request_stream_model_and_headers():
    ex = exchange(stream=False)  # the gateway decided not to stream: true becomes false
    assert json.loads(ex.request.body)["stream"] is False
    assert hdrs(ex)["accept"] == "application/json"
    body = {"input": "hi"}
    ex = exchange(body=body)
    assert ex.request.body == compact({"model": UPSTREAM_MODEL, "input": "hi", "stream": True})
    ex = exchange(stream=False, body=body)
    assert ex.request.body == compact({"model": UPSTREAM_MODEL, "input": "hi"})
    p = provider(headers=(("Authorization", "Bearer other"), ("OpenAI-Beta", "responses=v1")))
    ex = exchange(p=p)
    assert hdrs(ex)["authorization"] == "Bearer other"
    assert hdrs(ex)["openai-beta"] == "responses=v1"
    assert sum(k.lower() == "authorization" for k, _ in ex.request.headers) == 1
    ex = exchange(p=provider("https://api.openai.com/v1"))
    assert ex.request.url == BASE


def test_a_body_that_cannot_be_encoded_is_a_client_error():
    with pytest.raises(ClientError):
        exchange(body={"input": "hi", "temperature": float("nan")})


# -- whole answers ---------------------------------------------------------------------------

WHOLE = """{
  "id": "resp_68af2e7b9c30819c",
  "object": "response",
  "created_at": 1756311163,
  "status": "completed",
  "background": false,
  "error": null,
  "incomplete_details": null,
  "instructions": "You are a coding agent.",
  "max_output_tokens": null,
  "model": "gpt-5-codex-2025-09-15",
  "output": [
    {
      "id": "rs_68af2e7c5f1c8190",
      "type": "reasoning",
      "encrypted_content": "gAAAAABor2-8BEXAMPLE==",
      "summary": []
    },
    {
      "id": "msg_68af2e7d0e2c8190",
      "type": "message",
      "status": "completed",
      "content": [
        {
          "type": "output_text",
          "annotations": [],
          "logprobs": [],
          "text": "Two files: a.txt and b.txt \u2014 done."
        }
      ],
      "role": "assistant"
    }
  ],
  "parallel_tool_calls": false,
  "previous_response_id": null,
  "reasoning": {"effort": "medium", "summary": null},
  "store": false,
  "text": {"format": {"type": "text"}, "verbosity": "low"},
  "usage": {
    "input_tokens": 1203,
    "input_tokens_details": {"cached_tokens": 1024},
    "output_tokens": 87,
    "output_tokens_details": {"reasoning_tokens": 64},
    "total_tokens": 1290
  },
  "metadata": {"model": "not this one"}
}
"""


def test_whole_answer_comes_back_byte_for_byte_but_the_model():
    ex = exchange(stream=False)
    out = ex.parse_body(200, (), WHOLE.encode())
    assert out == WHOLE.replace('"model": "gpt-5-codex-2025-09-15"',
                                f'"model": "{CLIENT_MODEL}"').encode()
    assert b'"metadata": {"model": "not this one"}' in out  # only the top-level key
    assert ex.usage == {"prompt_tokens": 1203, "completion_tokens": 87, "total_tokens": 1290,
                        "prompt_tokens_details": {"cached_tokens": 1024},
                        "completion_tokens_details": {"reasoning_tokens": 64}}


def test_whole_answer_model_details():
    same = WHOLE.replace("gpt-5-codex-2025-09-15", CLIENT_MODEL).encode()
    assert exchange(stream=False).parse_body(200, (), same) is same
    nomodel = b'{"object":"response","output":[]}'
    ex = exchange(stream=False)
    assert ex.parse_body(200, (), nomodel) is nomodel
    assert ex.usage is None
    escaped = b'{"model":"gpt\\u002d5","output":[],"usage":{"prompt_tokens":5,' \
              b'"completion_tokens":2}}'
    ex = exchange(stream=False, client_model='a "quoted" name')
    assert ex.parse_body(200, (), escaped) == \
        b'{"model":"a \\"quoted\\" name","output":[],"usage":{"prompt_tokens":5,' \
        b'"completion_tokens":2}}'
    assert ex.usage is not None and ex.usage["prompt_tokens"] == 5  # chat-named usage read


@pytest.mark.parametrize("body,kind", [
    (b"<html>", "decode"), (b"\xff", "decode"), (b"[1]", "decode"), (b"null", "decode"),
    (b'{"object": "response", "status": "completed"}', "protocol"),
    (b'{"output": {}}', "protocol")])
def test_a_body_that_is_not_a_response_is_an_upstream_error(body, kind):
    with pytest.raises(UpstreamError) as info:
        exchange(stream=False).parse_body(200, (), body)
    assert info.value.kind.value == kind


def test_an_error_in_a_2xx_body_is_raised_err4():
    body = json.dumps({"id": "resp_1", "object": "response", "status": "failed",
                       "error": {"code": "server_error", "message": "The model failed."},
                       "output": []}).encode()
    with pytest.raises(UpstreamError) as info:
        exchange(stream=False).parse_body(200, (), body)
    assert str(info.value) == "The model failed." and info.value.code == "server_error"
    assert info.value.status == 502


def test_errors_use_openais_mapping():
    ex = exchange()
    body = json.dumps({"error": {"message": "Rate limit reached for gpt-5-codex",
                                 "type": "requests", "param": None,
                                 "code": "rate_limit_exceeded"}}).encode()
    err = ex.parse_error(429, (("Retry-After", "20"),), body)
    assert (err.status, err.code, str(err)) == (429, "rate_limit_exceeded",
                                                "Rate limit reached for gpt-5-codex")
    assert err.headers == (("Retry-After", "20"),)
    err = ex.parse_error(400, (), json.dumps({"error": {
        "message": "Unsupported parameter: 'temperature'", "type": "invalid_request_error",
        "param": "temperature", "code": "unsupported_parameter"}}).encode())
    assert (err.status, err.type) == (400, "invalid_request_error")
    assert ex.parse_error(500, (), b"boom").status == 502


def test_responses_usage():
    assert responses_usage(None) is None
    assert responses_usage({"input_tokens": 3, "output_tokens": 4})["total_tokens"] == 7
    assert responses_usage({"input_tokens": "x", "output_tokens": -1})["total_tokens"] == 0


# -- streams ---------------------------------------------------------------------------------

def response_obj(status: str, *, output: list[Any] | None = None,
                 usage: dict[str, Any] | None = None,
                 model: str = UPSTREAM_MODEL) -> dict[str, Any]:
    return {"id": "resp_68af2e7b9c30819c", "object": "response", "created_at": 1756311163,
            "status": status, "background": False, "error": None, "incomplete_details": None,
            "instructions": "You are a coding agent.", "max_output_tokens": None,
            "model": model, "output": output or [], "parallel_tool_calls": False,
            "previous_response_id": None, "store": False,
            "text": {"format": {"type": "text"}}, "usage": usage, "metadata": {}}


USAGE = {"input_tokens": 1203, "input_tokens_details": {"cached_tokens": 1024},
         "output_tokens": 87, "output_tokens_details": {"reasoning_tokens": 64},
         "total_tokens": 1290}
MSG = {"id": "msg_68af", "type": "message", "status": "completed", "role": "assistant",
       "content": [{"type": "output_text", "annotations": [], "logprobs": [],
                    "text": "Two files \u2028done."}]}
REASONING = {"id": "rs_68af", "type": "reasoning", "summary": [],
             "encrypted_content": "gAAAAABor2-8BEXAMPLE=="}


def events(terminal: str = "response.completed") -> list[dict[str, Any]]:
    seq = iter(range(100))
    evs: list[dict[str, Any]] = [
        {"type": "response.created", "sequence_number": 0,
         "response": response_obj("in_progress")},
        {"type": "response.in_progress", "response": response_obj("in_progress")},
        {"type": "response.output_item.added", "output_index": 0,
         "item": {**REASONING, "encrypted_content": None}},
        {"type": "response.output_item.done", "output_index": 0, "item": REASONING},
        {"type": "response.output_item.added", "output_index": 1,
         "item": {**MSG, "status": "in_progress", "content": []}},
        {"type": "response.content_part.added", "item_id": "msg_68af", "output_index": 1,
         "content_index": 0, "part": {"type": "output_text", "annotations": [], "text": ""}},
        {"type": "response.output_text.delta", "item_id": "msg_68af", "output_index": 1,
         "content_index": 0, "delta": "Two files ", "logprobs": [], "obfuscation": "a1"},
        {"type": "response.output_text.delta", "item_id": "msg_68af", "output_index": 1,
         "content_index": 0, "delta": "\u2028done.", "logprobs": []},
        {"type": "response.output_text.done", "item_id": "msg_68af", "output_index": 1,
         "content_index": 0, "text": "Two files \u2028done.", "logprobs": []},
        {"type": "response.output_item.done", "output_index": 1, "item": MSG},
        {"type": terminal, "response": response_obj(
            "completed" if terminal == "response.completed" else "incomplete",
            output=[REASONING, MSG], usage=USAGE)},
    ]
    for e in evs:
        e["sequence_number"] = next(seq)
    return evs


EVENTS = events()


def sse(evs: list[dict[str, Any]], *, crlf: bool = False) -> bytes:
    nl = "\r\n" if crlf else "\n"
    return "".join(f"event: {e['type']}{nl}data: {json.dumps(e, ensure_ascii=False)}{nl}{nl}"
                   for e in evs).encode()


def expected_chunks(evs: list[dict[str, Any]], model: str = CLIENT_MODEL) -> list[bytes]:
    out = []
    for e in evs:
        text = json.dumps(e, ensure_ascii=False)
        if e["type"] in ("response.created", "response.in_progress", "response.completed",
                         "response.incomplete"):
            text = text.replace(f'"model": "{UPSTREAM_MODEL}"', json.dumps("model") + ": "
                                + json.dumps(model))
        text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        out.append(f"event: {e['type']}\ndata: {text}\n\n".encode())
    return out


def run(dec: Any, pieces: list[bytes]) -> list[Any]:
    items: list[Any] = []
    for p in pieces:
        items += dec.feed(p)
    return items + dec.close()


def decoder(client_model: str = CLIENT_MODEL) -> Any:
    return exchange(client_model=client_model).stream_decoder()


def chunks(items: list[Any]) -> list[bytes]:
    return [i.data for i in items if isinstance(i, StreamChunk)]


def check_usage(usage: dict[str, Any] | None) -> None:
    assert usage == {"prompt_tokens": 1203, "completion_tokens": 87, "total_tokens": 1290,
                     "prompt_tokens_details": {"cached_tokens": 1024},
                     "completion_tokens_details": {"reasoning_tokens": 64}}


@pytest.mark.parametrize("crlf", [False, True])
@pytest.mark.parametrize("terminal", ["response.completed", "response.incomplete"])
def test_stream_is_re_emitted_byte_for_byte_but_the_model(crlf, terminal):
    evs = events(terminal)
    dec = decoder()
    items = run(dec, [sse(evs, crlf=crlf)])
    assert chunks(items) == expected_chunks(evs)
    assert isinstance(items[-1], StreamDone)
    check_usage(items[-1].usage)
    check_usage(dec.usage)
    assert f'"model": "{CLIENT_MODEL}"'.encode() in chunks(items)[0]
    assert UPSTREAM_MODEL.encode() not in b"".join(chunks(items))


def test_the_model_is_left_alone_when_it_is_the_clients():
    items = run(decoder(UPSTREAM_MODEL), [sse(EVENTS)])
    assert chunks(items) == expected_chunks(EVENTS, UPSTREAM_MODEL)


def test_event_names_come_from_the_json_type_and_unknown_events_pass():
    odd = {"type": "response.custom_tool_call_input.delta", "delta": "x", "sequence_number": 3}
    data = (b"event: something.else\ndata: " + json.dumps(odd).encode() + b"\n\n"
            + b'event: named.only\ndata: {"a": 1}\n\n'
            + b'data: {"no": "name"}\n\n'
            + b'event: bad name\ndata: {"a": 2}\n\n'
            + b"data: [DONE]\n\n" + sse(EVENTS))
    items = run(decoder(), [data])
    assert chunks(items)[:2] == [
        b"event: response.custom_tool_call_input.delta\ndata: " + json.dumps(odd).encode()
        + b"\n\n", b'event: named.only\ndata: {"a": 1}\n\n']
    assert chunks(items)[2:] == expected_chunks(EVENTS)


def test_response_failed_is_a_failure_with_the_upstreams_message_and_code():
    failed = {"type": "response.failed", "sequence_number": 5,
              "response": {**response_obj("failed"),
                           "error": {"code": "server_error",
                                     "message": "The model produced invalid content."}}}
    items = run(decoder(), [sse(EVENTS[:4] + [failed] + EVENTS[4:])])
    assert chunks(items) == expected_chunks(EVENTS[:4])
    err = items[-1].error
    assert isinstance(items[-1], StreamFailed)
    assert (str(err), err.code, err.status) == ("The model produced invalid content.",
                                                "server_error", 502)
    assert err.type == "server_error"
    items = run(decoder(), [b'data: {"type": "response.failed"}\n\n'])
    assert [str(items[0].error)] == ["upstream reported response.failed"] and len(items) == 1


@pytest.mark.parametrize("event,status,code,message", [
    ({"type": "error", "code": "rate_limit_exceeded", "message": "Slow down.", "param": None,
      "sequence_number": 2}, 429, "rate_limit_exceeded", "Slow down."),
    ({"type": "error", "error": {"type": "invalid_request_error", "code": "context_too_long",
                                 "message": "Too long.", "param": "input"},
      "sequence_number": 2}, 400, "context_too_long", "Too long."),
    ({"type": "error", "code": "ERR_SOMETHING", "message": "Something went wrong",
      "param": None, "sequence_number": 1}, 502, "ERR_SOMETHING", "Something went wrong"),
    ({"type": "error", "sequence_number": 1}, 502, "502",
     "upstream reported an error in the stream")])
def test_an_error_event_is_a_failure(event, status, code, message):
    items = run(decoder(), [sse(EVENTS[:2] + [event] + EVENTS[2:])])
    assert chunks(items) == expected_chunks(EVENTS[:2])
    err = items[-1].error
    assert (err.status, err.code, str(err)) == (status, code, message)
    assert err.kind.value == "status"


def test_nothing_is_read_after_the_terminal_event():
    dec = decoder()
    items = dec.feed(sse(EVENTS) + b"data: {broken\n\n")
    assert isinstance(items[-1], StreamDone)
    assert dec.feed(b"data: more\n\n") == [] and dec.close() == []


@pytest.mark.parametrize("cut", [
    sse(EVENTS[:-1]),
    sse(EVENTS[:-1]) + sse(EVENTS[-1:])[:-3],
    sse(EVENTS[:3]) + b"event: response.output_text.delta\ndata: {\"type\"",
    b""])
def test_a_stream_cut_before_the_terminal_event_is_truncated(cut):
    items = run(decoder(), [cut])
    assert isinstance(items[-1], StreamFailed)
    assert items[-1].error.kind.value == "truncated"
    assert all(isinstance(i, StreamChunk) for i in items[:-1])


def test_invalid_json_is_a_decode_error_after_the_items_before_it():
    dec = decoder()
    items = dec.feed(sse(EVENTS[:3]) + b"data: {nope\n\n" + sse(EVENTS[3:]))
    assert chunks(items) == expected_chunks(EVENTS[:3])
    with pytest.raises(DecodeError):
        dec.feed(b"")
    with pytest.raises(DecodeError):
        decoder().feed(b"data: [1, 2]\n\n")


def test_multi_line_data_becomes_one_line():
    e = EVENTS[6]
    pretty = json.dumps(e, indent=2)
    items = decoder().feed(b"data: " + pretty.replace("\n", "\ndata: ").encode() + b"\n\n")
    (out,) = chunks(items)
    assert out.count(b"\n") == 3 and json.loads(out.split(b"data: ", 1)[1]) == e


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


STREAMS = [sse(EVENTS), sse(EVENTS, crlf=True), sse(EVENTS[:7]),
           sse(EVENTS[:5]) + b"data: {bad\n\n" + sse(EVENTS[5:]),
           sse(EVENTS[:3] + [{"type": "error", "code": "server_error", "message": "x"}]),
           sse(events("response.incomplete"), crlf=True)]


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(STREAMS))), st.lists(st.integers(0, 10**6), max_size=12))
def test_split_invariance(which, cuts):
    data = STREAMS[which]

    def outcome(pieces: list[bytes]) -> tuple[list[Any], str | None]:
        dec, items = decoder(), []
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
    data = sse(EVENTS, crlf=True)
    assert _same(run(decoder(), [data[i:i + 1] for i in range(len(data))]),
                 run(decoder(), [data]))
