"""The Gemini stream grammar checker (uniapi_core/fronts/gemini_check.py): it accepts what
Gemini sends (recorded streams) in both framings and rejects each broken rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from uniapi_core.fronts.gemini_check import (
    GeminiGrammarError,
    GeminiStreamChecker,
    check_gemini_stream,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "gemini"


def text(t: str, **extra: Any) -> dict[str, Any]:
    return {"candidates": [{"content": {"role": "model", "parts": [{"text": t}]}, "index": 0,
                            **extra}], "responseId": "r", "modelVersion": "m"}


LAST = text("", finishReason="STOP")
LAST["usageMetadata"] = {"promptTokenCount": 1, "candidatesTokenCount": 2,
                         "totalTokenCount": 3}
ERROR = {"error": {"code": 503, "message": "busy", "status": "UNAVAILABLE"}}


def sse(*objs: Any) -> bytes:
    return b"".join(b"data: " + json.dumps(o).encode() + b"\r\n\r\n" for o in objs)


def array(*objs: Any) -> bytes:
    return b"[" + b",\r\n".join(json.dumps(o).encode() for o in objs) + b"]"


@pytest.mark.parametrize("name", ["stream_text_crlf.sse", "stream_thinking.sse",
                                  "stream_parallel_calls.sse", "stream_error_midstream.sse",
                                  "stream_safety_finish.sse"])
def test_recorded_gemini_streams_pass(name: str) -> None:
    events = check_gemini_stream((DATA / name).read_bytes(), sse=True)
    assert events


def test_both_framings_and_any_cut() -> None:
    objs = [text("a"), text("b"), LAST]
    for framing, data in ((True, sse(*objs)), (False, array(*objs)),
                          (True, sse(*objs).replace(b"\r\n", b"\n")),
                          (False, b" [\n" + b" ,\n".join(json.dumps(o).encode()
                                                         for o in objs) + b"\n]\n")):
        assert check_gemini_stream(data, framing) == objs
        for size in (1, 2, 7):
            checker = GeminiStreamChecker(framing)
            got = []
            for k in range(0, len(data), size):
                got += checker.feed(data[k:k + size])
            checker.close()
            assert got == objs
    assert check_gemini_stream(array(text("é"), LAST), False)[0] == text("é")


def test_empty_array_is_unfinished() -> None:
    with pytest.raises(GeminiGrammarError, match="unfinished"):
        check_gemini_stream(b"[]", False)


def test_errors_end_streams() -> None:
    assert check_gemini_stream(sse(text("a"), ERROR), True)[-1] == ERROR
    assert check_gemini_stream(array(ERROR), False) == [ERROR]


def _with(obj: dict[str, Any], **candidate: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(obj))
    out["candidates"][0].update(candidate)
    return out


BAD: list[tuple[list[Any], str]] = [
    ([[1]], "not a JSON object"),
    ([text("a")], "unfinished"),
    ([LAST, text("a")], "a candidate after the finishing response"),
    ([ERROR, text("a")], "after the end of the stream"),
    ([{"error": {"message": "x"}}], "an error without code"),
    ([{"candidates": []}], "candidates is not a non-empty list"),
    ([{"modelVersion": "m"}], "no candidates, usage or prompt feedback"),
    ([_with(LAST, index=1)], "the first candidate has index 1"),
    ([_with(LAST, finishReason="DONE")], "unknown finishReason"),
    ([{"candidates": [{"index": 0}]}], "without content or finishReason"),
    ([_with(LAST, content={"role": "user", "parts": []})], "content is not a model content"),
    ([_with(LAST, content={"role": "model", "parts": [{"text": "a", "functionCall": {}}]})],
     "has ['text', 'functionCall']"),
    ([_with(LAST, content={"role": "model", "parts": [{}]})], "has none"),
    ([_with(LAST, content={"role": "model", "parts": [{"text": 1}]})], "text is not a string"),
    ([_with(LAST, content={"role": "model", "parts": [{"text": "", "thought": "y"}]})],
     "thought is not a boolean"),
    ([_with(LAST, content={"role": "model", "parts": [{"functionCall": {"name": "f",
                                                                        "args": "{}"}}]})],
     "a functionCall needs"),
    ([_with(LAST, content={"role": "model", "parts": [{"functionCall": {"args": {}}}]})],
     "a functionCall needs"),
    ([{**LAST, "usageMetadata": {"promptTokenCount": -1}}], "promptTokenCount is not"),
    ([{**LAST, "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 1}}],
     "totalTokenCount 1 is less"),
    ([text("a"), {**LAST, "responseId": "other"}], "responseId changed"),
]


@pytest.mark.parametrize("objs, message", BAD)
@pytest.mark.parametrize("framing", [True, False])
def test_broken_rules_are_caught(objs: list[Any], message: str, framing: bool) -> None:
    data = sse(*objs) if framing else array(*objs)
    with pytest.raises(GeminiGrammarError, match=message.replace("[", r"\[")):
        check_gemini_stream(data, framing)


@pytest.mark.parametrize("data, framing, message", [
    (b"data: {not json\r\n\r\n", True, "data is not JSON"),
    (sse(LAST) + b"data: {", True, "unterminated event"),
    (b"weird: x\n\n", True, "unknown SSE field"),
    (b"{" + array(LAST)[1:], False, "does not open a JSON array"),
    (array(LAST)[:-1], False, "the JSON array is not complete"),
    (array(LAST) + b"[", False, "text after the end of the array"),
    (array(text("a"), LAST).replace(b",\r\n", b" "), False, "expected ',' or ']'"),
    (array(LAST)[:-3], False, "the JSON array is not complete"),
])
def test_broken_framing_is_caught(data: bytes, framing: bool, message: str) -> None:
    with pytest.raises(GeminiGrammarError, match=message):
        check_gemini_stream(data, framing)
