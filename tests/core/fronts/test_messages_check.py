"""The Anthropic event-stream grammar checker (uniapi_core/fronts/messages_check.py): it
accepts what Anthropic sends and rejects each way of breaking the grammar."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uniapi_core.fronts.messages_check import (
    MessagesGrammarError,
    MessagesStreamChecker,
    check_messages_stream,
)


def ev(obj: dict[str, Any], name: str | None = None) -> bytes:
    return f"event: {name or obj['type']}\ndata: {json.dumps(obj)}\n\n".encode()


START = {"type": "message_start", "message": {
    "id": "msg_01", "type": "message", "role": "assistant", "model": "m", "content": [],
    "stop_reason": None, "stop_sequence": None,
    "usage": {"input_tokens": 5, "output_tokens": 1}}}


def block(index: int, content: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": content}


def delta(index: int, d: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": d}


def stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


MDELTA = {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
          "usage": {"output_tokens": 30}}
MSTOP = {"type": "message_stop"}
PING = {"type": "ping"}

#: a stream as Anthropic's documentation shows it: thinking, text, a tool call
GOOD: list[dict[str, Any]] = [
    START, PING,
    block(0, {"type": "thinking", "thinking": "", "signature": ""}),
    delta(0, {"type": "thinking_delta", "thinking": "Let me"}),
    delta(0, {"type": "signature_delta", "signature": "EqQB"}),
    stop(0),
    block(1, {"type": "text", "text": ""}),
    delta(1, {"type": "text_delta", "text": "Okay"}), PING,
    stop(1),
    block(2, {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}),
    delta(2, {"type": "input_json_delta", "partial_json": ""}),
    delta(2, {"type": "input_json_delta", "partial_json": '{"location": '}),
    delta(2, {"type": "input_json_delta", "partial_json": '"Paris"}'}),
    stop(2),
    MDELTA, MSTOP,
]


def stream(events: list[dict[str, Any]]) -> bytes:
    return b"".join(ev(e) for e in events)


def test_a_good_stream_passes_and_returns_its_events() -> None:
    assert check_messages_stream(stream(GOOD)) == GOOD


def test_minimal_streams() -> None:
    assert len(check_messages_stream(stream([START, MDELTA, MSTOP]))) == 3
    err = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert check_messages_stream(stream([err])) == [err]
    assert check_messages_stream(stream(GOOD[:8] + [err]))[-1] == err


def test_comments_crlf_and_multiline_data() -> None:
    text = stream(GOOD).replace(b"\n", b"\r\n")
    assert check_messages_stream(b": hello\r\n\r\n" + text) == GOOD
    split = b'event: ping\ndata: {"type":\ndata: "ping"}\n\n'
    assert check_messages_stream(stream([START]) + split + stream([MDELTA, MSTOP]))[1] == PING


def _replace(i: int, new: dict[str, Any] | None) -> list[dict[str, Any]]:
    out = list(GOOD)
    if new is None:
        del out[i]
    else:
        out[i] = new
    return out


BROKEN: list[tuple[str, bytes, str]] = [
    ("missing content_block_stop", stream(_replace(9, None)),
     "content_block_start while block 1 is open"),
    ("missing last content_block_stop", stream(_replace(14, None)),
     "message_delta while block 2 is open"),
    ("wrong start index", stream(_replace(6, block(2, {"type": "text", "text": ""}))),
     "content_block_start index 2, expected 1"),
    ("first index not 0", stream([START, block(1, {"type": "text", "text": ""})]),
     "content_block_start index 1, expected 0"),
    ("delta to another index", stream(_replace(7, delta(0, {"type": "text_delta",
                                                            "text": "x"}))),
     "content_block_delta for index 0, but the open block is 1"),
    ("delta after stop", stream(GOOD[:10] + [delta(1, {"type": "text_delta", "text": "x"})]),
     "content_block_delta for index 1, but the open block is None"),
    ("stop of a closed block", stream(GOOD[:10] + [stop(1)]), "content_block_stop for index 1"),
    ("wrong delta type", stream(_replace(7, delta(1, {"type": "input_json_delta",
                                                      "partial_json": "{}"}))),
     "'input_json_delta' delta in a text block"),
    ("thinking delta in text", stream(_replace(7, delta(1, {"type": "thinking_delta",
                                                            "thinking": "x"}))),
     "'thinking_delta' delta in a text block"),
    ("delta payload not a string", stream(_replace(7, delta(1, {"type": "text_delta",
                                                                "text": 1}))),
     "text_delta without a string text"),
    ("missing message_stop", stream(GOOD[:-1]), "unfinished"),
    ("missing message_delta", stream(GOOD[:-2] + [MSTOP]),
     "message_stop without a message_delta"),
    ("two message_deltas", stream(GOOD[:-1] + [MDELTA, MSTOP]),
     "message_delta after message_delta"),
    ("ping after the end", stream(GOOD + [PING]), "ping after the end of the stream"),
    ("anything after an error", stream([START, {"type": "error", "error": {
        "type": "api_error", "message": "x"}}, MDELTA]), "message_delta after the end"),
    ("mismatched event name", stream(GOOD[:6]) + ev(GOOD[6], "content_block_delta"),
     "event name 'content_block_delta' but data type 'content_block_start'"),
    ("not message_start first", stream(GOOD[1:]), "first event is ping"),
    ("second message_start", stream([START, START]), "a second message_start"),
    ("bad message_start", stream([{**START, "message": {**START["message"],
                                                       "content": [{"type": "text"}]}}]),
     "message_start without an empty assistant message"),
    ("tool json not an object", stream(GOOD[:11] + [
        delta(2, {"type": "input_json_delta", "partial_json": "[1]"}), stop(2)]),
     "partial_json does not make a JSON object"),
    ("tool json cut", stream(GOOD[:13] + [stop(2)]), "partial_json does not make"),
    ("tool start without id", stream(GOOD[:10] + [block(2, {"type": "tool_use", "id": "",
                                                            "name": "f", "input": {}})]),
     "tool_use start without id"),
    ("unknown block", stream([START, block(0, {"type": "video"})]),
     "content_block_start with an unknown block"),
    ("bad stop reason", stream([START, {**MDELTA, "delta": {"stop_reason": "done"}}]),
     "message_delta with a bad delta"),
    ("no output tokens", stream([START, {**MDELTA, "usage": {}}]),
     "message_delta without integer output_tokens"),
    ("no event line", b'data: {"type": "ping"}\n\n', "no 'event:' line"),
    ("data not JSON", stream([START]) + b"event: ping\ndata: {\n\n", "ping: data is not JSON"),
    ("data not an object", stream([START]) + b"event: ping\ndata: []\n\n",
     "ping: data is not a JSON object"),
    ("unknown event", stream([START, {"type": "surprise"}]), "unknown event 'surprise'"),
    ("bad error", stream([{"type": "error", "error": "x"}]), "error without an error object"),
    ("unterminated", stream(GOOD) + b"event: ping", "unterminated event"),
]


@pytest.mark.parametrize("data, message", [(d, m) for _, d, m in BROKEN],
                         ids=[name for name, _, _ in BROKEN])
def test_broken_streams_are_rejected(data: bytes, message: str) -> None:
    with pytest.raises(MessagesGrammarError, match="event \\d+: ") as info:
        check_messages_stream(data)
    assert message in str(info.value)
    assert isinstance(info.value, AssertionError)


@given(st.lists(st.integers(0, len(stream(GOOD))), max_size=8))
@settings(max_examples=100)
def test_any_cut_gives_the_same_events(cuts: list[int]) -> None:
    data = stream(GOOD)
    checker = MessagesStreamChecker()
    got: list[dict[str, Any]] = []
    points = sorted(set(cuts))
    for a, b in zip([0, *points], [*points, len(data)], strict=True):
        got.extend(checker.feed(data[a:b]))
    checker.close()
    assert got == GOOD == checker.events
