"""Fuzz target for the client fronts' request translation (``uniapi_core.fronts``): Anthropic
Messages, OpenAI Responses and Gemini ``generateContent`` bodies into OpenAI chat requests.

Run it (needs ``pip install atheris``)::

    python fuzz/fuzz_fronts.py -max_total_time=60 fuzz/corpus/fronts

``check(data)`` is the whole oracle; ``tests/core/test_fuzz_corpora.py`` replays
``fuzz/corpus/fronts/`` through it without atheris. The first byte picks the front (its value
modulo 3: Messages, Responses, Gemini) and, for Gemini, whether the call streams; the rest is
the request body. It asserts:

* the body goes through ``parse_request_json`` as the gateway does, and the front's
  ``chat_request_from_*`` is given the parsed JSON (and, when the body is not JSON, the bytes
  and the text as they are): the only refusal is ``ClientError`` with status 400 and type
  ``invalid_request_error`` (each function's documented failure), anything else is a finding;
* a translation is deterministic, leaves the client's body as it was (the gateway keeps it to
  send a channel that speaks the front's protocol), and is a chat request the relay can use:
  a JSON object that ``dumps``/``loads_strict`` round-trips, the client's model, a list of
  message objects with a known role, ``stream`` as the call says;
* the token estimates of ``count_tokens``/``countTokens`` take any JSON and give an ``int`` ≥ 0;
* a short chat answer streamed back through the front's writer (``MessagesStream``,
  ``ResponsesStream``, ``GeminiStream``) for that call passes the front's grammar checker
  (``messages_check``, ``responses_check``, ``gemini_check``).
"""

from __future__ import annotations

import copy
import json
import sys
from typing import Any

if __name__ == "__main__":  # run as a script: make the repository importable
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz._oracle import fuzz  # noqa: E402
from uniapi_core.errors import ClientError
from uniapi_core.fronts.gemini import (
    GeminiStream,
    chat_request_from_gemini,
    estimate_tokens,
)
from uniapi_core.fronts.gemini_check import check_gemini_stream
from uniapi_core.fronts.messages import (
    MessagesStream,
    chat_request_from_messages,
    estimate_input_tokens,
)
from uniapi_core.fronts.messages_check import check_messages_stream
from uniapi_core.fronts.responses import ResponsesStream, chat_request_from_responses
from uniapi_core.fronts.responses_check import check_responses_stream
from uniapi_core.jsonutil import dumps, loads_strict, parse_request_json

FRONTS = ("messages", "responses", "gemini")
ROLES = {"system", "developer", "user", "assistant", "tool"}
GEMINI_MODEL = "gemini-2.5-flash"


def _translate(front: str, body: Any, stream: bool) -> Any:
    if front == "messages":
        return chat_request_from_messages(body)
    if front == "responses":
        return chat_request_from_responses(body)
    return chat_request_from_gemini(body, GEMINI_MODEL, stream)


def _refused(exc: ClientError) -> None:
    assert exc.status == 400 and exc.type == "invalid_request_error", \
        (exc.status, exc.type, exc.message)
    assert isinstance(exc.message, str) and exc.message


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    obj = {"id": "chatcmpl-fuzz", "object": "chat.completion.chunk", "created": 1,
           "model": "upstream", "choices": [{"index": 0, "delta": delta,
                                             "finish_reason": finish}]}
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _answer(chat: dict[str, Any]) -> list[bytes]:
    """A short streamed chat answer: text, then a call of the first declared tool (if any)."""
    chunks = [_chunk({"role": "assistant", "content": ""}), _chunk({"content": "Hi."})]
    tools = chat.get("tools") or []
    if tools:
        name = tools[0]["function"]["name"]
        chunks.append(_chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                              "function": {"name": name, "arguments": ""}}]}))
        chunks.append(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}))
    chunks.append(_chunk({}, "tool_calls" if tools else "stop"))
    return chunks


def _stream_back(front: str, call: Any, sse: bool) -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    chunks = _answer(call.chat)
    if front == "messages":
        m = MessagesStream(call.model, "req-fuzz")
        out = b"".join(m.feed(c) for c in chunks) + m.end(usage)
        check_messages_stream(out)
    elif front == "responses":
        r = ResponsesStream(call, "resp_fuzz", 1)
        out = b"".join(r.feed(c) for c in chunks) + r.end(usage)
        check_responses_stream(out)
    else:
        g = GeminiStream(call.model, call.include_thoughts, sse, "req-fuzz")
        out = b"".join(g.feed(c) for c in chunks) + g.end(usage)
        check_gemini_stream(out, sse)


def _translated(front: str, body: Any, call: Any, stream: bool) -> None:
    chat = call.chat
    assert type(chat) is dict, type(chat)
    assert loads_strict(dumps(chat)) == chat, "the chat request is plain JSON"
    assert type(call.model) is str and call.model and chat.get("model") == call.model
    if front == "gemini":
        assert call.model == GEMINI_MODEL and call.stream == stream
    assert type(call.stream) is bool and bool(chat.get("stream", False)) == call.stream
    messages = chat.get("messages")
    assert type(messages) is list, messages
    for m in messages:
        assert type(m) is dict and m.get("role") in ROLES, m
    for tool in chat.get("tools", ()):
        assert type(tool) is dict and tool.get("type") == "function", tool
        assert type(tool["function"]["name"]) is str, tool
    _stream_back(front, call, bool(stream))


def check(data: bytes) -> None:
    """The fuzz oracle: raise ``AssertionError`` (or anything unexpected) on a finding."""
    if not data:
        return
    front = FRONTS[data[0] % 3]
    stream = bool(data[0] // 3 % 2)
    body = data[1:]
    try:
        raw = parse_request_json(body)
    except ClientError as exc:
        _refused(exc)
        raws: list[Any] = [body, body.decode("utf-8", "replace")]
    else:
        raws = [raw]
        tokens = estimate_input_tokens(raw) if front == "messages" else estimate_tokens(raw)
        assert type(tokens) is int and tokens >= 0, tokens
    for value in raws:
        before = copy.deepcopy(value)
        try:
            call = _translate(front, value, stream)
        except ClientError as exc:
            _refused(exc)
            assert value == before, "a refusal leaves the body as it was"
            continue
        assert value == before, "the translation leaves the client's body as it was"
        assert _translate(front, copy.deepcopy(value), stream) == call, "deterministic"
        _translated(front, value, call, stream)


if __name__ == "__main__":
    fuzz(check)
