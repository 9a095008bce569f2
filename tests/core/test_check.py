"""The chat stream validator (``uniapi_core/streams/check.py``): every rule by example, passing
and failing; the properties (any split gives the same problems, a valid stream from the
strategy passes, each single rule-breaking mutation is reported); and the suite-wide fixture
of tests/conftest.py that runs it on every chat answer an in-process gateway sends."""

from __future__ import annotations

import copy
import json
import types
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes.upstream import FakeUpstream, json_reply, sse_reply
from tests.harness import BACKENDS, run_gateway
from uniapi_core.config.model import Provider
from uniapi_core.errors import GatewayError, UpstreamError
from uniapi_core.relay import (
    Attempt,
    ClientGone,
    Relay,
    UpstreamData,
    UpstreamEnded,
    UpstreamHead,
)
from uniapi_core.streams import ChatStreamChecker, check_chat_body, check_chat_stream
from uniapi_core.streams.check import FINISH_REASONS
from uniapi_core.vendors.base import ChatContext, StreamChunk, StreamDone, StreamFailed
from uniapi_core.vendors.openai import build_exchange

DONE = b"data: [DONE]\n\n"


def ev(obj: Any, event: str | None = None) -> bytes:
    head = b"" if event is None else b"event: " + event.encode() + b"\n"
    data = obj.encode() if isinstance(obj, str) else json.dumps(obj).encode()
    return head + b"data: " + data + b"\n\n"


def chunk(*choices: dict[str, Any], **extra: Any) -> bytes:
    return ev({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
               "model": "m", "choices": list(choices), **extra})


def choice(delta: dict[str, Any] | None = None, finish: Any = None, index: int = 0
           ) -> dict[str, Any]:
    return {"index": index, "delta": {} if delta is None else delta, "finish_reason": finish}


ROLE = chunk(choice({"role": "assistant", "content": ""}))
STOP = chunk(choice(finish="stop"))
ERROR = ev({"error": {"message": "upstream failed", "type": "server_error", "code": None}},
           "error")
TOOL_START = {"index": 0, "id": "call_1", "type": "function",
              "function": {"name": "get", "arguments": ""}}


def rules(problems: list[str]) -> list[int]:
    """The rule numbers of ``problems``, in order."""
    return [int(p.split(",")[0].split(":")[0].removeprefix("rule ")) for p in problems]


def test_a_full_valid_stream_has_no_problem():
    stream = (b": keep-alive\n\n" + ROLE
              + chunk(choice({"reasoning_content": "think"}))
              + chunk(choice({"content": "Hello"}))
              + chunk(choice({"refusal": None, "content": None}))
              + chunk(choice({"tool_calls": [TOOL_START]}))
              + chunk(choice({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}))
              + chunk(choice(finish="tool_calls"), usage=None)
              + chunk(usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5,
                             "prompt_tokens_details": {"cached_tokens": 0}})
              + DONE)
    assert check_chat_stream(stream) == []


# -- every rule, by example ----------------------------------------------------------------

PASSING = {
    "comments and CRLF framing": b": hi\r\n\r\n" + ROLE.replace(b"\n", b"\r\n") + STOP + DONE,
    "data: without its space, and a multi-line data event":
        b'data:{"choices":[]}\n\n' + b'data: {"choices":\ndata: []}\n\n' + DONE,
    "usage-only chunk": chunk(usage={"prompt_tokens": 1}) + DONE,
    "[DONE] alone": DONE,
    "an error event ends the stream": ROLE + ERROR,
    "an error event, then [DONE]": ROLE + ERROR + DONE,
    "an error event without a name": ROLE + ev({"error": {"message": "x"}}),
    "a falsy error key is a chunk": chunk(choice(finish="stop"), error=None) + DONE,
    "content, reasoning and refusal null": chunk(choice(
        {"content": None, "reasoning_content": None, "refusal": None}, "stop")) + DONE,
    "refusal text": chunk(choice({"refusal": "no"}, "stop")) + DONE,
    "later tool deltas without id or name": chunk(choice({"tool_calls": [TOOL_START]}))
        + chunk(choice({"tool_calls": [{"index": 0, "function": {"arguments": "{"}}]}))
        + chunk(choice({"tool_calls": [{"index": 0}]})) + chunk(choice(finish="tool_calls"))
        + DONE,
    "the same tool index in two choices, each with its id":
        chunk(choice({"tool_calls": [TOOL_START]}), choice({"tool_calls": [TOOL_START]}, index=1))
        + chunk(choice(finish="tool_calls"), choice(finish="tool_calls", index=1)) + DONE,
    "an empty tool name": chunk(choice({"tool_calls": [
        {"index": 3, "id": "c", "function": {"name": ""}}]}, "tool_calls")) + DONE,
    "content and finish in one chunk": chunk(choice({"content": "a"}, "length")) + DONE,
    "empty or null content after the finish": STOP + chunk(choice({"content": ""}))
        + chunk(choice({"content": None, "tool_calls": []})) + DONE,
    "every finish reason": b"".join(chunk(choice(finish=r, index=i))
                                    for i, r in enumerate(sorted(FINISH_REASONS))) + DONE,
    "finish_reason left out until the end": chunk({"index": 0, "delta": {"content": "a"}})
        + STOP + DONE,
    "an error-ended stream needs no finish": chunk(choice({"content": "a"})) + ERROR,
    "usage null, nested and zero": chunk(choice(finish="stop"), usage=None)
        + chunk(usage={"a": 0, "b": {"c": 1, "d": {"e": 2}}, "model": "m", "f": [3]}) + DONE,
    "a BOM before the first line": b"\xef\xbb\xbf" + STOP + DONE,
}

FAILING = {
    # rule 1
    "data that is not JSON": (ROLE + ev("hello") + STOP + DONE, 1),
    "a JSON list": (ev("[1, 2]") + DONE, 1),
    "a JSON string": (ev('"[DONE]"') + DONE, 1),
    "NaN is not JSON": (ev('{"choices": NaN}') + DONE, 1),
    "an event with a name and no data": (b"event: ping\n\n" + DONE, 1),
    "a chunk after [DONE]": (STOP + DONE + STOP, 1),
    "a second [DONE]": (STOP + DONE + DONE, 1),
    "a comment then a partial line after [DONE]": (STOP + DONE + b": ok\n\ndata: {", 1),
    "invalid UTF-8": (b'data: {"choices": [], "x": "\xff"}\n\n' + DONE, 1),
    # rule 2
    "a chunk after the error event": (ROLE + ERROR + STOP + DONE, 2),
    "a second error event": (ROLE + ERROR + ERROR, 2),
    "a chunk after error and [DONE]": (ERROR + DONE + STOP, 1),
    # rule 3
    "no choices": (ev({"id": "x"}) + DONE, 3),
    "choices is an object": (ev({"choices": {"0": {}}}) + DONE, 3),
    "choices is null": (ev({"choices": None}) + DONE, 3),
    "a choice that is a list": (ev({"choices": [[]]}) + DONE, 3),
    "a negative choice index": (chunk(choice(finish="stop", index=-1)) + DONE, 3),
    "a string choice index": (chunk({"index": "0", "delta": {}, "finish_reason": "stop"})
                              + DONE, 3),
    "a boolean choice index": (chunk({"index": False, "delta": {}, "finish_reason": "stop"})
                               + DONE, 3),
    "a float choice index": (chunk({"index": 0.0, "delta": {}, "finish_reason": "stop"})
                             + DONE, 3),
    "no delta": (chunk({"index": 0, "finish_reason": "stop"}) + DONE, 3),
    "a message instead of a delta": (chunk({"index": 0, "message": {"content": "a"},
                                            "finish_reason": "stop"}) + DONE, 3),
    "a null delta": (chunk({"index": 0, "delta": None, "finish_reason": "stop"}) + DONE, 3),
    # rule 4
    "numeric content": (chunk(choice({"content": 5}, "stop")) + DONE, 4),
    "content parts": (chunk(choice({"content": [{"type": "text", "text": "a"}]}, "stop"))
                      + DONE, 4),
    "object reasoning": (chunk(choice({"reasoning_content": {"text": "a"}}, "stop")) + DONE, 4),
    "boolean refusal": (chunk(choice({"refusal": True}, "stop")) + DONE, 4),
    # rule 5
    "tool_calls is an object": (chunk(choice({"tool_calls": TOOL_START}, "stop")) + DONE, 5),
    "tool_calls is null": (chunk(choice({"tool_calls": None}, "stop")) + DONE, 5),
    "a tool call that is a string": (chunk(choice({"tool_calls": ["x"]}, "stop")) + DONE, 5),
    "a tool call without index": (chunk(choice({"tool_calls": [
        {k: v for k, v in TOOL_START.items() if k != "index"}]}, "stop")) + DONE, 5),
    "a negative tool index": (chunk(choice({"tool_calls": [dict(TOOL_START, index=-1)]},
                                           "stop")) + DONE, 5),
    "a first tool delta without id": (chunk(choice({"tool_calls": [
        {"index": 0, "function": {"name": "get", "arguments": ""}}]}, "stop")) + DONE, 5),
    "an empty tool id": (chunk(choice({"tool_calls": [dict(TOOL_START, id="")]}, "stop"))
                         + DONE, 5),
    "a numeric tool id": (chunk(choice({"tool_calls": [dict(TOOL_START, id=7)]}, "stop"))
                          + DONE, 5),
    "a first tool delta without function": (chunk(choice({"tool_calls": [
        {"index": 0, "id": "c"}]}, "stop")) + DONE, 5),
    "a null tool name": (chunk(choice({"tool_calls": [
        dict(TOOL_START, function={"name": None})]}, "stop")) + DONE, 5),
    "a function that is a string": (chunk(choice({"tool_calls": [
        dict(TOOL_START, function="get")]}, "stop")) + DONE, 5),
    "object arguments": (chunk(choice({"tool_calls": [TOOL_START]}))
                         + chunk(choice({"tool_calls": [
                             {"index": 0, "function": {"arguments": {"a": 1}}}]}))
                         + chunk(choice(finish="tool_calls")) + DONE, 5),
    "a second tool index without its id": (chunk(choice({"tool_calls": [TOOL_START]}))
                                           + chunk(choice({"tool_calls": [{
                                               "index": 1, "function": {"arguments": "{}"}}]}))
                                           + chunk(choice(finish="tool_calls")) + DONE, 5),
    "the other choice's tool without its id": (chunk(choice({"tool_calls": [TOOL_START]}))
                                               + chunk(choice({"tool_calls": [{
                                                   "index": 0, "function": {"arguments": "{"}}]},
                                                   index=1))
                                               + chunk(choice(finish="stop"),
                                                       choice(finish="stop", index=1))
                                               + DONE, 5),
    # rule 6
    "[DONE] without a finish": (ROLE + DONE, 6),
    "[DONE] without the second choice's finish": (chunk(choice(), choice(index=1)) + STOP
                                                  + DONE, 6),
    "two finish chunks": (STOP + STOP + DONE, 6),
    "two finish reasons in one chunk": (chunk(choice(finish="stop"), choice(finish="stop"))
                                        + DONE, 6),
    "an Anthropic finish reason": (chunk(choice(finish="end_turn")) + DONE, 6),
    "an upper-case finish reason": (chunk(choice(finish="STOP")) + DONE, 6),
    "an empty finish reason": (chunk(choice(finish="")) + DONE, 6),
    "a numeric finish reason": (chunk(choice(finish=1)) + DONE, 6),
    "content after the finish": (STOP + chunk(choice({"content": "late"})) + DONE, 6),
    "reasoning after the finish": (STOP + chunk(choice({"reasoning_content": "hm"})) + DONE, 6),
    "a tool call after the finish": (STOP + chunk(choice({"tool_calls": [TOOL_START]})) + DONE,
                                     6),
    # rule 7
    "negative usage": (STOP + chunk(usage={"prompt_tokens": -1}) + DONE, 7),
    "fractional usage": (STOP + chunk(usage={"prompt_tokens": 1.5}) + DONE, 7),
    "integral float usage": (STOP + chunk(usage={"prompt_tokens": 1.0}) + DONE, 7),
    "boolean usage": (STOP + chunk(usage={"is_byok": False}) + DONE, 7),
    "nested negative usage": (STOP + chunk(usage={"details": {"cached_tokens": -3}}) + DONE, 7),
    "a number in a list in usage": (STOP + chunk(usage={"a": [{"b": -1}]}) + DONE, 7),
    "usage that is a number": (STOP + chunk(usage=5) + DONE, 7),
    "usage on a content chunk": (chunk(choice({"content": "a"}, "stop"), usage={"x": -1})
                                 + DONE, 7),
    # rule 8
    "no [DONE]": (ROLE + STOP, 8),
    "nothing at all": (b"", 8),
    "only comments": (b": keep-alive\n\n: again\n\n", 8),
    "cut inside a line": (ROLE + STOP + b'data: {"cho', 8),
    "[DONE] without its blank line": (STOP + b"data: [DONE]\n", 8),
}


@pytest.mark.parametrize("stream", list(PASSING.values()), ids=list(PASSING))
def test_passing_examples(stream: bytes) -> None:
    assert check_chat_stream(stream) == []


@pytest.mark.parametrize("stream,rule", list(FAILING.values()), ids=list(FAILING))
def test_failing_examples(stream: bytes, rule: int) -> None:
    problems = check_chat_stream(stream)
    assert rule in rules(problems), problems
    # one break is one rule: no other rule is blamed (rule 8's cut is the one exception
    # that may come with the problem of what was cut)
    assert set(rules(problems)) == {rule}, problems


def test_problems_name_the_rule_and_the_event() -> None:
    stream = ROLE + b": comments are not events\n\n" + chunk(choice({"content": 5})) + DONE
    assert check_chat_stream(stream) == [
        "rule 4, event 2: choices[0].delta.content is the number 5, not a string or null",
        "rule 6, event 3: [DONE] but choice 0 has no finish_reason"]
    assert check_chat_stream(ROLE + STOP) == [
        "rule 8, after event 2: unfinished: the stream ended without [DONE] or an error event"]


def test_only_the_first_thing_after_the_end_is_reported() -> None:
    assert rules(check_chat_stream(STOP + DONE + STOP + ev("x") + DONE)) == [1]
    assert rules(check_chat_stream(ERROR + STOP + STOP)) == [2]


def test_an_unreadable_stream_stops_being_read() -> None:
    problems = check_chat_stream(b"data: \xff\n\n" + chunk(choice({"content": 5})))
    assert problems == ["rule 1, event 1: not a readable SSE event (invalid_utf8)"]


def test_every_problem_is_reported_not_only_the_first() -> None:
    stream = chunk(choice({"content": 1, "refusal": 2}), usage={"a": -1, "b": True}) + DONE
    assert rules(check_chat_stream(stream)) == [4, 4, 7, 7, 6]


def test_the_checker_is_incremental_and_closes_once() -> None:
    checker = ChatStreamChecker()
    checker.feed(ROLE[:7])
    assert checker.problems == []
    checker.feed(ROLE[7:] + chunk(choice({"content": 5})))
    assert rules(checker.problems) == [4]  # reported as soon as the event is whole
    checker.feed(STOP)
    checker.close()
    checker.close()
    assert rules(checker.problems) == [4, 8]
    with pytest.raises(ValueError):
        checker.feed(DONE)


def test_a_large_event_is_not_a_framing_problem() -> None:
    text = "x" * (9 << 20)  # over the SSE decoder's default 8 MiB event limit
    assert check_chat_stream(chunk(choice({"content": text}, "stop")) + DONE) == []


def test_deep_json_is_reported_not_raised() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    assert rules(check_chat_stream(ev(deep) + DONE)) == [1]
    deep_usage = '{"a":' * 500 + "-1" + "}" * 500  # walked without recursion
    assert rules(check_chat_stream(ev('{"choices": [], "usage": ' + deep_usage + "}")
                                   + DONE)) == [7]


# -- whole bodies ----------------------------------------------------------------------------

BODY = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None, "reasoning_content": "why",
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "get", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3,
                  "completion_tokens_details": {"reasoning_tokens": 1}}}


def body_with(path: str, value: Any) -> dict[str, Any]:
    """BODY with the value at ``path`` (dotted; digits index lists) replaced, or deleted when
    ``value`` is ``...``."""
    obj = copy.deepcopy(BODY)
    *parents, last = path.split(".")
    here: Any = obj
    for key in parents:
        here = here[int(key)] if key.isdigit() else here[key]
    key: Any = int(last) if last.isdigit() else last
    if value is ...:
        del here[key]
    else:
        here[key] = value
    return obj


def test_a_valid_body_has_no_problem() -> None:
    assert check_chat_body(BODY) == []
    assert check_chat_body(body_with("usage", ...)) == []
    assert check_chat_body(body_with("choices.0.message.tool_calls", ...)) == []
    assert check_chat_body(body_with("choices.0.message.content", "text")) == []
    assert check_chat_body(body_with("choices", [])) == []
    assert check_chat_body({"error": {"message": "x"}}) == []


BODY_FAILING = {
    "choices missing": ("choices", ..., 3),
    "choices an object": ("choices", {}, 3),
    "a choice that is a string": ("choices.0", "x", 3),
    "a negative index": ("choices.0.index", -1, 3),
    "no message": ("choices.0.message", ..., 3),
    "a delta instead of a message": ("choices.0", {"index": 0, "delta": {},
                                                   "finish_reason": "stop"}, 3),
    "numeric content": ("choices.0.message.content", 1, 4),
    "content parts": ("choices.0.message.content", [{"type": "text", "text": "a"}], 4),
    "object reasoning": ("choices.0.message.reasoning_content", {}, 4),
    "list refusal": ("choices.0.message.refusal", [], 4),
    "tool_calls null": ("choices.0.message.tool_calls", None, 5),
    "a tool call without id": ("choices.0.message.tool_calls.0.id", ..., 5),
    "an empty tool id": ("choices.0.message.tool_calls.0.id", "", 5),
    "a tool call without function": ("choices.0.message.tool_calls.0.function", ..., 5),
    "a tool call without name": ("choices.0.message.tool_calls.0.function.name", ..., 5),
    "a tool call without arguments": ("choices.0.message.tool_calls.0.function.arguments", ...,
                                      5),
    "object arguments": ("choices.0.message.tool_calls.0.function.arguments", {}, 5),
    "no finish reason": ("choices.0.finish_reason", None, 6),
    "an unknown finish reason": ("choices.0.finish_reason", "end_turn", 6),
    "negative usage": ("usage.prompt_tokens", -2, 7),
    "boolean usage": ("usage.completion_tokens_details.reasoning_tokens", True, 7),
    "float usage": ("usage.total_tokens", 3.0, 7),
    "usage a list": ("usage", [1], 7),
}


@pytest.mark.parametrize("path,value,rule", list(BODY_FAILING.values()), ids=list(BODY_FAILING))
def test_failing_bodies(path: str, value: Any, rule: int) -> None:
    problems = check_chat_body(body_with(path, value))
    assert problems and set(rules(problems)) == {rule}, problems


# -- properties ------------------------------------------------------------------------------

TEXT = st.text(min_size=1, max_size=8)


@st.composite
def choice_deltas(draw: st.DrawFn, index: int) -> list[dict[str, Any]]:
    """One choice's deltas, in order (without its finish)."""
    out: list[dict[str, Any]] = []
    tool_numbers = draw(st.lists(st.integers(0, 20), unique=True, max_size=3))
    for number in tool_numbers:
        start: dict[str, Any] = {"index": number, "id": draw(TEXT), "type": "function",
                                 "function": {"name": draw(st.text(max_size=5))}}
        if draw(st.booleans()):
            start["function"]["arguments"] = draw(st.text(max_size=5))
        out.append({"tool_calls": [start]})
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["content", "reasoning_content", "refusal", "args"]))
        if kind == "args" and tool_numbers:
            out.append({"tool_calls": [{"index": draw(st.sampled_from(tool_numbers)),
                                        "function": {"arguments": draw(TEXT)}}]})
        elif kind != "args":
            out.append({kind: draw(st.none() | TEXT)})
    if draw(st.booleans()):
        out.insert(0, {"role": "assistant", "content": ""})
    return out


@st.composite
def valid_events(draw: st.DrawFn, *, error: bool | None = None) -> list[Any]:
    """A valid stream as events: dicts (chunks, error objects) and "[DONE]"."""
    n = draw(st.integers(1, 3))
    queues = {i: draw(choice_deltas(i)) for i in range(n)}
    events: list[Any] = []
    usage = st.none() | st.dictionaries(st.sampled_from(["prompt_tokens", "completion_tokens"]),
                                        st.integers(0, 10**6))
    while any(queues.values()):  # interleave the choices, each in its own order
        i = draw(st.sampled_from(sorted(k for k, q in queues.items() if q)))
        obj: dict[str, Any] = {"id": "c", "object": "chat.completion.chunk",
                               "choices": [{"index": i, "delta": queues[i].pop(0),
                                            "finish_reason": None}]}
        if draw(st.booleans()):
            obj["usage"] = None
        events.append(obj)
    order = draw(st.permutations(list(range(n))))
    for i in order:  # each choice's finish, alone or riding on its last chunk
        reason = draw(st.sampled_from(sorted(FINISH_REASONS)))
        last = next((e for e in reversed(events) if e["choices"] and
                     e["choices"][0]["index"] == i), None)
        if last is not None and last is events[-1] and draw(st.booleans()):
            last["choices"][0]["finish_reason"] = reason
        else:
            events.append({"choices": [{"index": i, "delta": {}, "finish_reason": reason}]})
    if draw(st.booleans()):
        events.append({"choices": [], "usage": draw(usage)})
    if error is None:
        error = draw(st.booleans())
    if error:
        events = events[:draw(st.integers(0, len(events)))]
        events.append({"error": {"message": draw(TEXT), "type": "server_error"}})
        if draw(st.booleans()):
            events.append("[DONE]")
    else:
        events.append("[DONE]")
    return events


@st.composite
def framed(draw: st.DrawFn, events: list[Any]) -> bytes:
    """``events`` as SSE bytes, framed any way a client must accept."""
    out = bytearray()
    for e in events:
        nl = draw(st.sampled_from(["\n", "\r\n", "\r"]))
        if draw(st.integers(0, 4)) == 0:
            out += f": {draw(st.text(alphabet='abc ', max_size=4))}{nl}{nl}".encode()
        if isinstance(e, dict) and "error" in e and draw(st.booleans()):
            out += f"event: error{nl}".encode()
        text = e if isinstance(e, str) else json.dumps(e, ensure_ascii=draw(st.booleans()))
        out += f"data:{draw(st.sampled_from(['', ' ']))}{text}{nl}{nl}".encode()
    return bytes(out)


def cuts(data: bytes) -> st.SearchStrategy[list[bytes]]:
    return st.lists(st.integers(0, len(data)), max_size=12).map(
        lambda points: [data[a:b] for a, b in zip([0, *sorted(points)],
                                                  [*sorted(points), len(data)])])


def fed(pieces: list[bytes]) -> list[str]:
    checker = ChatStreamChecker()
    for piece in pieces:
        checker.feed(piece)
    checker.close()
    return checker.problems


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_valid_stream_passes(data: st.DataObject) -> None:
    stream = data.draw(framed(data.draw(valid_events())))
    assert check_chat_stream(stream) == []


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_split_gives_the_same_problems(data: st.DataObject) -> None:
    source = data.draw(st.sampled_from(["valid", "mutated", "bytes"]))
    if source == "bytes":
        stream = data.draw(st.binary(max_size=200) | st.lists(
            st.sampled_from([ROLE, STOP, DONE, ERROR, b"data: x\n\n", b"\r", b"\n", b"\xff",
                             b"data: [DONE]", b": c\n", b'data: {"choices":[{"index":0,',
                             chunk(choice({"content": 5}))]), max_size=8).map(b"".join))
    else:
        events = data.draw(valid_events(error=False if source == "mutated" else None))
        if source == "mutated":
            events, _ = data.draw(st.sampled_from(MUTATIONS))(data, events)
        stream = data.draw(framed(events))
    whole = check_chat_stream(stream)
    assert fed(data.draw(cuts(stream))) == whole
    assert fed([stream[i:i + 1] for i in range(len(stream))]) == whole


# Each mutation breaks one rule of a valid stream ending with [DONE]: (events, rule).

def _chunk_positions(events: list[Any]) -> list[int]:
    return [k for k, e in enumerate(events) if isinstance(e, dict) and e.get("choices")]


def _not_json(data: st.DataObject, events: list[Any]) -> tuple[list[Any], int]:
    k = data.draw(st.integers(0, len(events) - 1))
    return events[:k] + [data.draw(st.sampled_from(["hello", "[1]", "null", '{"a":'])),
                         *events[k:]], 1


def _after_done(data: st.DataObject, events: list[Any]) -> tuple[list[Any], int]:
    return events + [data.draw(st.sampled_from(["[DONE]", {"choices": []}, events[0]]))], 1


def _after_error(data: st.DataObject, events: list[Any]) -> tuple[list[Any], int]:
    k = data.draw(st.integers(0, len(events) - 1))
    return events[:k] + [{"error": {"message": "x"}}, {"choices": []}, "[DONE]"], 2


def _choices_broken(data: st.DataObject, events: list[Any]) -> tuple[list[Any], int]:
    k = data.draw(st.sampled_from(_chunk_positions(events)))
    e = events[k]
    how = data.draw(st.sampled_from(["choices", "index", "delta", "choice"]))
    if how == "choices":
        e["choices"] = data.draw(st.sampled_from([None, {}, "x", 1]))
    elif how == "choice":
        e["choices"][0] = data.draw(st.sampled_from([None, [], "x"]))
    elif how == "index":
        e["choices"][0]["index"] = data.draw(st.sampled_from([-1, "0", None, True, 1.0]))
    else:
        e["choices"][0]["delta"] = data.draw(st.sampled_from([None, [], "x"]))
    return events, 3


def _text_broken(data: st.DataObject, events: list[Any]) -> tuple[list[Any], int]:
    k = data.draw(st.sampled_from(_chunk_positions(events)))
    field = data.draw(st.sampled_from(["content", "reasoning_content", "refusal"]))
    events[k]["choices"][0]["delta"][field] = data.draw(st.sampled_from(
        [0, 1.5, True, [], [{"type": "text", "text": "a"}], {}]))
    return events, 4


def _tool_broken(data: st.DataObject, events: list[Any]) -> tuple[list[Any], int]:
    k = _chunk_positions(events)[0]  # the first chunk of its choice: not after its finish
    call: dict[str, Any] = {"index": 99, "id": "call_x", "function": {"name": "f"}}
    how = data.draw(st.sampled_from(["id", "empty id", "function", "name", "index", "args",
                                     "list", "entry"]))
    tool_calls: Any = [call]
    if how == "id":
        del call["id"]
    elif how == "empty id":
        call["id"] = ""
    elif how == "function":
        del call["function"]
    elif how == "name":
        call["function"] = {"name": None}
    elif how == "index":
        call["index"] = data.draw(st.sampled_from([-1, None, "0"]))
    elif how == "args":
        call["function"]["arguments"] = data.draw(st.sampled_from([{}, 1, None]))
    elif how == "list":
        tool_calls = data.draw(st.sampled_from([None, call, "x"]))
    else:
        tool_calls = [data.draw(st.sampled_from([None, 1, "x"]))]
    events[k]["choices"][0]["delta"]["tool_calls"] = tool_calls
    return events, 5


def _finish_dropped(data: st.DataObject, events: list[Any]) -> tuple[list[Any], int]:
    finishes = [c for e in events if isinstance(e, dict) for c in e.get("choices") or ()
                if c["finish_reason"] is not None]
    data.draw(st.sampled_from(finishes))["finish_reason"] = None
    return events, 6


def _finish_twice(data: st.DataObject, events: list[Any]) -> tuple[list[Any], int]:
    i = events[_chunk_positions(events)[0]]["choices"][0]["index"]
    late = {"choices": [{"index": i, "delta": {}, "finish_reason":
                         data.draw(st.sampled_from(sorted(FINISH_REASONS)))}]}
    return events[:-1] + [late, events[-1]], 6


def _finish_unknown(data: st.DataObject, events: list[Any]) -> tuple[list[Any], int]:
    finishes = [c for e in events if isinstance(e, dict) for c in e.get("choices") or ()
                if c["finish_reason"] is not None]
    data.draw(st.sampled_from(finishes))["finish_reason"] = data.draw(st.sampled_from(
        ["end_turn", "STOP", "", 0, True, {}, "tool_use"]))
    return events, 6


def _late_output(data: st.DataObject, events: list[Any]) -> tuple[list[Any], int]:
    i = events[_chunk_positions(events)[0]]["choices"][0]["index"]
    delta = data.draw(st.sampled_from([{"content": "late"}, {"reasoning_content": "hm"}, {
        "tool_calls": [{"index": 50, "id": "c", "function": {"name": "f"}}]}]))
    late = {"choices": [{"index": i, "delta": delta, "finish_reason": None}]}
    return events[:-1] + [late, events[-1]], 6


def _usage_broken(data: st.DataObject, events: list[Any]) -> tuple[list[Any], int]:
    k = data.draw(st.integers(0, len(events) - 2))  # any chunk, [DONE] last
    bad = data.draw(st.sampled_from([-1, 1.5, 2.0, True, False]))
    usage = data.draw(st.sampled_from([{"prompt_tokens": bad}, {"details": {"x": bad}},
                                       {"list": [bad]}, bad, "x", []]))
    events[k]["usage"] = usage
    return events, 7


def _done_dropped(data: st.DataObject, events: list[Any]) -> tuple[list[Any], int]:
    return events[:-1], 8


MUTATIONS = [_not_json, _after_done, _after_error, _choices_broken, _text_broken, _tool_broken,
             _finish_dropped, _finish_twice, _finish_unknown, _late_output, _usage_broken,
             _done_dropped]


@settings(max_examples=600, deadline=None)
@given(st.data())
def test_each_single_mutation_is_reported(data: st.DataObject) -> None:
    events = data.draw(valid_events(error=False))
    mutate = data.draw(st.sampled_from(MUTATIONS))
    mutated, rule = mutate(data, copy.deepcopy(events))
    stream = data.draw(framed(mutated))
    assert rule in rules(check_chat_stream(stream)), (mutate.__name__, mutated)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_a_stream_cut_before_its_done_is_unfinished(data: st.DataObject) -> None:
    stream = data.draw(framed(data.draw(valid_events(error=False))))
    end = stream.rindex(b"[DONE]")
    cut = data.draw(st.integers(0, end))
    assert 8 in rules(check_chat_stream(stream[:cut]))


# -- the suite-wide fixture (tests/conftest.py) -----------------------------------------------

class _RawDecoder:
    """A decoder that hands each upstream event to the client as it came ([DONE] ends; an end
    before it is a cut stream)."""

    def __init__(self) -> None:
        self.done = False

    def feed(self, data: bytes) -> list[Any]:
        self.done = self.done or data == DONE
        return [StreamDone() if data == DONE else StreamChunk(data)]

    def close(self) -> list[Any]:
        return [] if self.done else [StreamFailed(UpstreamError("cut", kind="truncated"))]


class _RawSource:
    """One attempt whose exchange relays the upstream's events untouched."""

    def __init__(self) -> None:
        self.made = False

    def next_attempt(self, now: float, failure: Any) -> Attempt | None:
        if self.made:
            return None
        self.made = True
        provider = Provider(provider="p", base_url="http://u/v1/chat/completions", api=("k",))
        ctx = ChatContext(client_model="m", upstream_model="m", provider=provider, api_key="k",
                          stream=True, include_usage=False, response_id="chatcmpl-x", created=1)
        real = build_exchange({"model": "m", "messages": [], "stream": True}, ctx)
        exchange = types.SimpleNamespace(request=real.request, stream_decoder=_RawDecoder,
                                         parse_body=real.parse_body,
                                         parse_error=real.parse_error)
        return Attempt(number=1, provider="p", upstream_model="m", key_index=0,
                       exchange=exchange, timeout=10.0)  # type: ignore[arg-type]

    def attempt_finished(self, attempt: Attempt, now: float, error: Any) -> None:
        pass

    def refusal(self) -> GatewayError:
        return GatewayError("none", status=503)


SSE = (("content-type", "text/event-stream"),)


def _relay(chat_stream_validator: Any, *events: bytes, end: bool = True) -> Relay:
    relay = Relay(_RawSource(), stream=True)
    chat_stream_validator.watch(relay, "hand-driven relay")
    relay.start(0.0)
    relay.handle(UpstreamHead(1, 200, SSE), 0.0)
    for e in events:
        relay.handle(UpstreamData(1, e), 0.0)
    if end:
        relay.handle(UpstreamEnded(1), 0.0)
    return relay


def test_the_fixture_reports_what_a_relay_sends(chat_stream_validator: Any) -> None:
    _relay(chat_stream_validator, chunk(choice({"content": 5})), DONE)
    problems = chat_stream_validator.take()
    assert any("rule 4, event 1" in p for p in problems), problems
    assert any("rule 6, event 2" in p for p in problems), problems
    assert any("the answer began b'data: " in p for p in problems), problems
    _relay(chat_stream_validator, chunk(choice({"content": "ok"}, "stop")), DONE)
    assert chat_stream_validator.take() == []
    assert chat_stream_validator.streams == 2


def test_the_fixture_holds_a_cut_stream_to_rule_8_unless_the_client_left(
        chat_stream_validator: Any) -> None:
    # the relay ends a stream cut after the commit point with an error event: not unfinished
    relay = _relay(chat_stream_validator, chunk(choice({"content": "a"})))
    assert relay.finished and chat_stream_validator.take() == []
    relay = _relay(chat_stream_validator, chunk(choice({"content": "a"})), end=False)
    relay.handle(ClientGone(), 0.0)
    assert relay.finished and relay.outcome.client_closed
    assert chat_stream_validator.take() == []
    _relay(chat_stream_validator, chunk(choice({"content": "a"})), end=False)  # still open
    assert chat_stream_validator.finish() == []


GOOD_STREAM = [{"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": d, "finish_reason": f}]}
               for d, f in (({"role": "assistant", "content": ""}, None),
                            ({"content": "hi"}, None), ({}, "stop"))]
GOOD_BODY = {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
             "choices": [{"index": 0, "finish_reason": "stop",
                          "message": {"role": "assistant", "content": "hi"}}],
             "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_fixture_sees_chat_answers_of_both_transports(backend: str,
                                                          chat_stream_validator: Any) -> None:
    up = FakeUpstream()
    up.replies += [sse_reply(GOOD_STREAM), json_reply(GOOD_BODY),
                   json_reply({"object": "list", "data": [{"embedding": [0.5], "index": 0}]})]
    config = (f"providers:\n  - provider: up\n    base_url: {up.url}/v1/chat/completions\n"
              "    api: sk-up\n    model: [m]\napi_keys:\n  - api: sk-user\n")
    headers = {"authorization": "Bearer sk-user"}
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    try:
        with run_gateway(config, backend=backend) as gw, \
                httpx.Client(base_url=gw.url, headers=headers, timeout=10) as client:
            streamed = client.post("/v1/chat/completions", json=dict(request, stream=True))
            whole = client.post("/v1/chat/completions", json=request)
            embedded = client.post("/v1/embeddings", json={"model": "m", "input": "x"})
    finally:
        up.close()
    assert streamed.status_code == whole.status_code == embedded.status_code == 200
    assert check_chat_stream(streamed.content) == []
    assert (chat_stream_validator.streams, chat_stream_validator.bodies) == (1, 1)
    assert chat_stream_validator.take() == []
