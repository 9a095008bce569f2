"""The Responses event-stream grammar checker (uniapi_core/fronts/responses_check.py): it
accepts what OpenAI sends and rejects each way of breaking the grammar."""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uniapi_core.fronts.responses_check import (
    ResponsesGrammarError,
    ResponsesStreamChecker,
    check_responses_stream,
)


def resp(status: str, output: list[dict[str, Any]] | None = None,
         **extra: Any) -> dict[str, Any]:
    return {"id": "resp_1", "object": "response", "status": status, "output": output or [],
            **extra}


RS = {"id": "rs_1", "type": "reasoning", "summary": []}
MSG = {"id": "msg_1", "type": "message", "status": "in_progress", "role": "assistant",
       "content": []}
FC = {"id": "fc_1", "type": "function_call", "status": "in_progress", "arguments": "",
      "call_id": "call_1", "name": "f"}
RS_DONE = {**RS, "summary": [{"type": "summary_text", "text": "ab"}]}
TEXT_PART = {"type": "output_text", "text": "Hi", "annotations": []}
MSG_DONE = {**MSG, "status": "completed", "content": [TEXT_PART]}
FC_DONE = {**FC, "status": "completed", "arguments": '{"a":1}'}
USAGE = {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3}


def e(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": f"response.{kind}", **fields}


def at(index: int, item: str) -> dict[str, Any]:
    return {"item_id": item, "output_index": index}


#: a stream as OpenAI's documentation shows it: reasoning summary, text, a function call
GOOD: list[dict[str, Any]] = [
    e("created", response=resp("in_progress")),
    e("in_progress", response=resp("in_progress")),
    e("output_item.added", output_index=0, item=RS),
    e("reasoning_summary_part.added", **at(0, "rs_1"), summary_index=0,
      part={"type": "summary_text", "text": ""}),
    e("reasoning_summary_text.delta", **at(0, "rs_1"), summary_index=0, delta="a"),
    e("reasoning_summary_text.delta", **at(0, "rs_1"), summary_index=0, delta="b"),
    e("reasoning_summary_text.done", **at(0, "rs_1"), summary_index=0, text="ab"),
    e("reasoning_summary_part.done", **at(0, "rs_1"), summary_index=0,
      part={"type": "summary_text", "text": "ab"}),
    e("output_item.done", output_index=0, item=RS_DONE),
    e("output_item.added", output_index=1, item=MSG),
    e("content_part.added", **at(1, "msg_1"), content_index=0,
      part={"type": "output_text", "text": "", "annotations": []}),
    e("output_text.delta", **at(1, "msg_1"), content_index=0, delta="Hi", logprobs=[]),
    e("output_text.done", **at(1, "msg_1"), content_index=0, text="Hi", logprobs=[]),
    e("content_part.done", **at(1, "msg_1"), content_index=0, part=TEXT_PART),
    e("output_item.done", output_index=1, item=MSG_DONE),
    e("output_item.added", output_index=2, item=FC),
    e("function_call_arguments.delta", **at(2, "fc_1"), delta='{"a":'),
    e("function_call_arguments.delta", **at(2, "fc_1"), delta="1}"),
    e("function_call_arguments.done", **at(2, "fc_1"), arguments='{"a":1}'),
    e("output_item.done", output_index=2, item=FC_DONE),
    e("completed", response=resp("completed", [RS_DONE, MSG_DONE, FC_DONE], usage=USAGE)),
]


def stream(events: list[dict[str, Any]], renumber: bool = True) -> bytes:
    out = []
    for i, ev in enumerate(events):
        if renumber:
            ev = {**ev, "sequence_number": i}
        out.append(f"event: {ev['type']}\ndata: {json.dumps(ev)}\n\n".encode())
    return b"".join(out)


def test_a_good_stream_passes_and_returns_its_events() -> None:
    events = check_responses_stream(stream(GOOD))
    assert [ev["type"] for ev in events] == [ev["type"] for ev in GOOD]


def test_minimal_and_other_terminal_streams() -> None:
    assert len(check_responses_stream(stream(GOOD[:2] + [
        e("completed", response=resp("completed", usage=USAGE))]))) == 3
    failed = e("failed", response=resp("failed", [RS_DONE], error={
        "code": "server_error", "message": "boom"}))
    assert check_responses_stream(stream(GOOD[:9] + [failed]))[-1]["type"] == "response.failed"
    incomplete = e("incomplete", response=resp("incomplete", incomplete_details={
        "reason": "max_output_tokens"}))
    assert len(check_responses_stream(stream(GOOD[:2] + [incomplete]))) == 3
    err = {"type": "error", "message": "bad", "code": None, "param": None}
    assert len(check_responses_stream(stream([err]))) == 1
    assert len(check_responses_stream(stream(GOOD[:12] + [err]))) == 13


@given(cuts=st.lists(st.integers(0, 4000), max_size=8))
@settings(max_examples=30, deadline=None)
def test_bytes_cut_anywhere(cuts: list[int]) -> None:
    data = stream(GOOD)
    checker = ResponsesStreamChecker()
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    for a, b in itertools.pairwise(bounds):
        checker.feed(data[a:b])
    checker.close()
    assert len(checker.events) == len(GOOD)


def _edit(index: int, **changes: Any) -> list[dict[str, Any]]:
    events = copy.deepcopy(GOOD)
    events[index].update(changes)
    return events


BROKEN: list[tuple[list[dict[str, Any]], str]] = [
    (GOOD[1:], "first event is response.in_progress"),
    ([GOOD[0], GOOD[2]], "response.in_progress must follow"),
    (GOOD[:2] + [GOOD[1]], "a second response.in_progress"),
    (_edit(0, response=resp("completed")), "response.created without a response object"),
    (_edit(0, response=resp("in_progress", [MSG])), "response.created with output items"),
    (_edit(1, response={**resp("in_progress"), "id": "other"}), "response id 'other'"),
    (_edit(2, output_index=1), "output_item.added output_index 1"),
    (_edit(2, item={"type": "reasoning", "summary": []}), "without an item with an id"),
    (_edit(2, item={**RS, "type": "web_search_call"}), "unknown item type"),
    (_edit(9, item={**MSG, "content": [TEXT_PART]}), "does not start empty"),
    (_edit(15, item={**FC, "arguments": "{}"}), "does not start empty"),
    (GOOD[:3] + [GOOD[9]], "output_item.added while item 0 is open"),
    (_edit(3, summary_index=1), "summary_index 1, expected 0"),
    (_edit(3, item_id="rs_x"), "for item 'rs_x'"),
    (_edit(4, delta=5), "without a string delta"),
    (_edit(6, text="abc"), "is not the deltas'"),
    (GOOD[:6] + GOOD[7:], "before its text was done"),
    (_edit(7, part={"type": "summary_text", "text": "a"}), "is not the accumulated"),
    (GOOD[:7] + GOOD[8:], "output_item.done while a part is open"),
    (_edit(8, item={**RS_DONE, "summary": []}), "is not the accumulated one"),
    (_edit(8, item={**RS_DONE, "status": "in_progress"}), "without a completed or incomplete"),
    (_edit(10, part={"type": "output_text", "text": "x", "annotations": []}),
     "not an empty summary_text"),
    (_edit(10, content_index=1), "content_index 1, expected 0"),
    (_edit(11, content_index=1), "the open part is 'output_text' at 0"),
    (_edit(11, type="response.refusal.delta"), "the open part is 'output_text'"),
    (GOOD[:10] + GOOD[11:], "but the open part is None"),
    (GOOD[:10] + GOOD[13:], "with no part open"),
    (_edit(16, output_index=1), "but the open item is"),
    (_edit(18, arguments="{}"), "not the deltas'"),
    (GOOD[:18] + GOOD[19:], "output_item.done before function_call_arguments.done"),
    (GOOD[:19] + [GOOD[20]], "while item 2 is open"),
    (_edit(20, response=resp("completed", [RS_DONE, MSG_DONE], usage=USAGE)),
     "output is not the items"),
    (_edit(20, response=resp("completed", [RS_DONE, MSG_DONE, FC_DONE])), "without usage"),
    (_edit(20, response=resp("failed", [RS_DONE, MSG_DONE, FC_DONE])),
     "without a response object of status completed"),
    (GOOD[:2] + [e("incomplete", response=resp("incomplete"))], "without incomplete_details"),
    (GOOD[:2] + [e("failed", response=resp("failed", error={"message": "x"}))],
     "without an error of code and message"),
    (GOOD + [GOOD[2]], "after the end of the stream"),
    (GOOD[:2] + [e("output_text.annotation.added")], "unknown event"),
    ([{"type": "error"}], "error event without a message"),
]


@pytest.mark.parametrize("events, message", BROKEN)
def test_broken_streams_are_rejected(events: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ResponsesGrammarError) as info:
        check_responses_stream(stream(events))
    assert message in str(info.value), str(info.value)
    assert isinstance(info.value, AssertionError)


def test_framing_and_numbering_rules() -> None:
    def fails(data: bytes, message: str) -> None:
        with pytest.raises(ResponsesGrammarError) as info:
            check_responses_stream(data)
        assert message in str(info.value), str(info.value)
    good = stream(GOOD)
    fails(good[:-1], "unterminated event")
    fails(stream(GOOD[:5]), "unfinished")
    fails(b"data: {}\n\n", "no 'event:' line")
    fails(b"event: x\ndata: {nope\n\n", "data is not JSON")
    fails(b"event: x\ndata: [1]\n\n", "not a JSON object")
    fails(b'event: x\ndata: {"type": "y"}\n\n', "event name 'x' but data type 'y'")
    fails(stream([{**GOOD[0], "sequence_number": 1}], renumber=False), "sequence_number 1")
    fails(stream([GOOD[0]], renumber=False), "sequence_number None")
    numbered = [{**ev, "sequence_number": i} for i, ev in enumerate(GOOD)]
    numbered[5]["sequence_number"] = 6
    fails(stream(numbered, renumber=False), "expected 5")
    assert len(check_responses_stream(b": keep-alive\n\n" + good)) == len(GOOD)
