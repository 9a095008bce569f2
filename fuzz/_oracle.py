"""What every decoder fuzz target checks, in one place (imported by the ``fuzz_*.py`` scripts).

``normalize`` makes stream items comparable, ``_cut``/``_splits`` produce the feed splits whose
outputs must agree (DEC-1), ``openai_grammar`` checks the client chunks against
docs/contracts.md (S-1..S-8, O-1..O-3, TC-3), and ``client_problems`` runs the bytes a client
would receive through the core's chat stream validator (``uniapi_core/streams/check.py``),
which ``openai_grammar`` calls too; ``body_problems`` does the same for a whole answer.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from uniapi_core.streams import DONE, ChatStreamChecker, check_chat_body, encode_event
from uniapi_core.vendors.base import StreamChunk, StreamDone, StreamFailed, StreamItem

__all__ = ["_cut", "_splits", "body_problems", "client_problems", "client_stream", "normalize",
           "openai_grammar"]


def normalize(items: list[StreamItem]) -> list[tuple[Any, ...]]:
    """Stream items as comparable tuples (exceptions do not compare by value)."""
    out: list[tuple[Any, ...]] = []
    for item in items:
        if isinstance(item, StreamChunk):
            out.append(("chunk", item.data))
        elif isinstance(item, StreamDone):
            out.append(("done", json.dumps(item.usage, sort_keys=True)))
        else:
            e = item.error
            out.append(("failed", e.message, e.kind, e.status, e.upstream_status, e.type,
                        e.code, e.headers))
    return out


def _error_event(message: Any, type_: Any, code: Any) -> bytes:
    return encode_event(json.dumps({"error": {"message": message, "type": type_, "code": code}}),
                        "error")


def client_stream(items: list[Any], error: str | None = None) -> tuple[bytes, bool]:
    """What the relay sends a client for a decoder's ``items`` (stream items, or ``normalize``d
    tuples), and whether that ends the stream: each chunk as it is, ``[DONE]`` for
    ``StreamDone``, an error event for ``StreamFailed`` or for ``error`` (the kind of the
    ``DecodeError`` the decoder raised after them; docs/architecture.md, the relay)."""
    out = bytearray()
    for item in items:
        if isinstance(item, tuple):
            if item[0] == "chunk":
                out += item[1]
                continue
            if item[0] == "done":
                return bytes(out + DONE), True
            _, message, _kind, _status, _upstream, type_, code, _headers = item
            return bytes(out + _error_event(message, type_, code)), True
        if isinstance(item, StreamChunk):
            out += item.data
        elif isinstance(item, StreamDone):
            return bytes(out + DONE), True
        elif isinstance(item, StreamFailed):
            e = item.error
            return bytes(out + _error_event(e.message, e.type, e.code)), True
    if error is not None:
        return bytes(out + _error_event(f"decode error ({error})", "server_error",
                                        "upstream_decode_error")), True
    return bytes(out), False


def client_problems(items: list[Any], error: str | None = None) -> list[str]:
    """The chat stream validator's problems with ``client_stream(items, error)``; a stream that
    has not ended (a prefix of one) is not held to rule 8."""
    data, ended = client_stream(items, error)
    checker = ChatStreamChecker()
    checker.feed(data)
    if ended:
        checker.close()
    return checker.problems


def body_problems(body: bytes) -> list[str]:
    """The chat validator's problems with a whole answer a client would receive (the bytes
    ``parse_body`` returned)."""
    obj = json.loads(body)
    return check_chat_body(obj) if isinstance(obj, dict) else ["the body is not a JSON object"]


def _cut(data: bytes, positions: list[int]) -> list[bytes]:
    bounds = [0, *positions, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def _splits(data: bytes) -> list[list[bytes]]:
    """Ways to cut ``data``, derived from the data so that the fuzzer can steer them."""
    n = len(data)
    out = [[data]]
    if n:
        stride = data[0] % 7 + 2
        out.append(_cut(data, list(range(stride, n, stride))))
        walk, pos, i = [], 0, 0
        while True:  # steps of 1..16 bytes, read from the data cyclically
            pos += data[i % n] % 16 + 1
            i += 1
            if pos >= n:
                break
            walk.append(pos)
        out.append(_cut(data, walk))
    return out


def openai_grammar(items: list[tuple[Any, ...]], include_usage: bool) -> dict[str, Any]:
    """Check the client chunks against docs/contracts.md and the core's chat stream validator
    (``client_problems``), and assemble the message.

    ``items`` are normalized; the stream may be unfinished (an error, or fewer items). Returns
    ``{"content", "reasoning", "tool_calls", "finish", "usage"}``.
    """
    problems = client_problems(items)
    assert not problems, f"the chat stream validator: {problems}"
    out: dict[str, Any] = {"content": "", "reasoning": "", "tool_calls": [], "finish": None,
                           "usage": None}
    head: tuple[Any, ...] | None = None
    ended = False
    for n, item in enumerate(items):
        assert not ended, "nothing may follow StreamDone/StreamFailed"
        if item[0] != "chunk":
            ended = True
            if item[0] == "done":
                assert out["finish"] is not None, "StreamDone without a finish chunk"
                assert (out["usage"] is not None) == include_usage
            continue
        data: bytes = item[1]
        assert data.startswith(b"data: ") and data.endswith(b"\n\n"), data
        assert b"\n" not in data[:-2] and b"\r" not in data, "one line per chunk (S-8)"
        text = data[6:-2].decode("utf-8")
        assert "\u2028" not in text and "\u2029" not in text, "S-8"
        obj = json.loads(text)
        assert obj["object"] == "chat.completion.chunk"
        key = (obj["id"], obj["created"], obj["model"])
        assert head is None or key == head, "one id/created/model per stream (O-1..O-3)"
        head = key
        assert ("usage" in obj) == include_usage, "S-5"
        if obj["choices"] == []:
            assert include_usage and out["finish"] is not None and out["usage"] is None
            out["usage"] = obj["usage"]
            continue
        assert out["finish"] is None, "no content after the finish chunk (S-4)"
        assert obj.get("usage") is None
        (choice,) = obj["choices"]
        assert choice["index"] == 0
        delta = choice["delta"]
        if n == 0:
            assert delta == {"role": "assistant", "content": ""} and \
                choice["finish_reason"] is None, "role chunk first (S-1)"
            continue
        assert "role" not in delta, "exactly one role chunk (S-1)"
        if choice["finish_reason"] is not None:
            assert delta == {}, "S-4"
            assert choice["finish_reason"] in ("stop", "length", "tool_calls", "content_filter")
            out["finish"] = choice["finish_reason"]
            continue
        assert len(delta) == 1, delta
        if "content" in delta:
            assert isinstance(delta["content"], str) and delta["content"], "S-7"
            out["content"] += delta["content"]
        elif "reasoning_content" in delta:
            assert delta["reasoning_content"], "S-7"
            out["reasoning"] += delta["reasoning_content"]
        else:
            (call,) = delta["tool_calls"]
            calls = out["tool_calls"]
            if "id" in call:  # tool_start (S-2, S-3)
                assert call["index"] == len(calls), "indexes 0..n-1 in order (S-3)"
                assert call["type"] == "function" and isinstance(call["function"]["name"], str)
                assert set(call) <= {"index", "id", "type", "function", "extra_content"}
                assert isinstance(call["id"], str) and call["id"]
                calls.append({"id": call["id"], "name": call["function"]["name"],
                              "arguments": call["function"]["arguments"]})
                if "extra_content" in call:  # Gemini's thought signature (GEM-R4)
                    calls[-1]["extra_content"] = call["extra_content"]
            else:
                assert set(call) == {"index", "function"} and call["index"] < len(calls)
                assert call["function"]["arguments"], "S-7"
                calls[call["index"]]["arguments"] += call["function"]["arguments"]
    if out["finish"] is not None or items and items[-1][0] == "done":
        assert items[0][0] == "chunk", "a finished stream starts with the role chunk"
    if out["finish"] is not None:
        assert all(c["arguments"] for c in out["tool_calls"]), "TC-3: at least {}"
    return out


def fuzz(check: Callable[[bytes], None]) -> None:  # pragma: no cover - needs atheris
    """Run a target's ``check`` under atheris (libFuzzer), every module instrumented so the
    fuzzer is steered by coverage; the command line is libFuzzer's (fuzz/README.md)."""
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()
