"""The chat stream validator: what any ``/v1/chat/completions`` answer the gateway sends must
satisfy, checked on the bytes a client receives.

Theory of operation
-------------------
:class:`ChatStreamChecker` is an incremental state machine over the SSE body of a streamed
chat completion: ``feed(bytes)`` any number of times, then ``close()`` at the end of the body;
``problems`` lists what broke, each naming its rule and the event it was seen at (events are
numbered from 1 in the order they are dispatched; comments do not count). Framing is
:class:`~uniapi_core.streams.sse.SSEDecoder`'s, which is split-invariant (DEC-1), so any cut of
the same bytes gives the same problems. :func:`check_chat_stream` is feed-then-close on one
buffer; :func:`check_chat_body` applies the rules that make sense to a whole (non-streamed)
``chat.completion`` body (4, 5, 6, 7, on ``choices[].message``).

The rules:

1. Every data payload is ``[DONE]`` or a JSON object. Nothing may follow ``[DONE]``.
2. An object with a truthy ``"error"`` is an error event: it ends the stream (only an optional
   ``[DONE]`` may follow) and rule 6's end-of-stream check does not apply.
3. Otherwise it is a chunk: ``"choices"`` is a list (``[]`` for a usage-only chunk); each choice
   is an object with an integer ``"index"`` >= 0 and a ``"delta"`` object.
4. ``delta.content``, ``delta.reasoning_content`` and ``delta.refusal``, when present, are a
   string or null.
5. ``delta.tool_calls``, when present, is a list of objects, each with an integer ``"index"``
   >= 0. The first delta of a (choice index, tool index) carries a non-empty string ``"id"``
   and a ``"function"`` object whose ``"name"`` is a string; ``function.arguments``, when
   present, is a string.
6. Per choice index, ``finish_reason`` is null until exactly one chunk carries one of
   :data:`FINISH_REASONS`; after it that choice gets no content, reasoning or tool-call delta.
   A stream that ends with ``[DONE]`` (not an error) has a finish reason for every choice
   index it mentioned.
7. ``"usage"``, when present and not null, is an object whose numbers (recursively) are all
   integers >= 0; ``true``/``false`` are not numbers and not allowed.
8. The stream ends with ``[DONE]`` or an error event; anything else is *unfinished*, reported
   by ``close()``. An event not closed by its blank line never reached a client's event
   parser, so it counts as unfinished too.

Pure: no I/O, no clock, no global state; only ``DecodeError`` from the SSE framing is caught.
"""

from __future__ import annotations

import json
from typing import Any, TypeGuard

from ..errors import DecodeError
from .sse import SSEDecoder

__all__ = ["FINISH_REASONS", "ChatStreamChecker", "check_chat_body", "check_chat_stream"]

#: the finish reasons a client may receive (rule 6)
FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})

#: the SSE decoder's per-event limit here: far above anything the gateway relays (64 MiB
#: bodies), so that only a broken framing, never a large answer, is a problem
_MAX_EVENT = 1 << 30

_DONE = "[DONE]"
_ABSENT = object()
_TEXT_FIELDS = ("content", "reasoning_content", "refusal")
#: the delta fields that count as "more output" after a choice's finish (rule 6)
_OUTPUT_FIELDS = ("content", "reasoning_content")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _kind(value: Any) -> str:
    """The JSON type of ``value``, worded for a problem."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__  # pragma: no cover - parsed JSON holds nothing else


def _is_index(value: Any) -> TypeGuard[int]:
    """An integer >= 0 (JSON true/false are not integers)."""
    return type(value) is int and value >= 0


def _usage_problems(usage: Any) -> list[str]:
    """Rule 7 on a usage value that is present and not null; problems without their prefix."""
    if not isinstance(usage, dict):
        return [f"usage is {_kind(usage)}, not an object"]
    out: list[str] = []
    stack: list[tuple[str, Any]] = [("usage", usage)]
    while stack:  # iterative: a deeply nested usage is no recursion hazard
        path, value = stack.pop()
        items = value.items() if isinstance(value, dict) else enumerate(value)
        found: list[tuple[str, Any]] = []
        for key, item in items:
            where = f"{path}.{key}" if isinstance(value, dict) else f"{path}[{key}]"
            if isinstance(item, (dict, list)):
                found.append((where, item))
            elif isinstance(item, bool) or (isinstance(item, (int, float)) and not (
                    type(item) is int and item >= 0)):
                out.append(f"{where} is {_kind(item)}, not an integer >= 0")
        stack.extend(reversed(found))
    return out


def _text_problems(where: str, message: dict[str, Any]) -> list[str]:
    """Rule 4 on a delta or a message; problems without their prefix."""
    return [f"{where}.{field} is {_kind(message[field])}, not a string or null"
            for field in _TEXT_FIELDS
            if field in message and message[field] is not None
            and not isinstance(message[field], str)]


class ChatStreamChecker:
    """Incremental validator of one chat-completions SSE body (see the module docstring).

    ``feed(data)`` takes the next bytes, ``close()`` says the body ended; ``problems`` holds
    every broken rule found so far, as ``"rule N, event K: …"``. ``feed`` after ``close`` is a
    ``ValueError``; a second ``close`` does nothing.
    """

    __slots__ = ("_broken", "_closed", "_end", "_events", "_finished", "_past_end", "_seen",
                 "_sse", "_tools", "problems")

    def __init__(self) -> None:
        self.problems: list[str] = []
        self._sse = SSEDecoder(max_event_size=_MAX_EVENT)
        self._events = 0  # events dispatched so far (the number of the last one)
        #: None while open; "done", "error", or "error+done" once the stream has ended
        self._end: str | None = None
        self._past_end = False  # something after the end was reported (once is enough)
        self._broken = False  # the SSE framing failed: nothing after it can be read
        self._closed = False
        self._seen: set[int] = set()  # choice indexes mentioned
        self._finished: dict[int, Any] = {}  # choice index -> its finish_reason
        self._tools: set[tuple[int, int]] = set()  # (choice index, tool index) started

    # -- the door -----------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """The next bytes of the body, cut anywhere."""
        if self._closed:
            raise ValueError("feed() after close()")
        if self._broken:
            return
        try:
            events = self._sse.feed(data)
        except DecodeError as exc:
            self._framing(exc)
            return
        for event in events:
            self._event(event.data)

    def close(self) -> None:
        """The body ended: report an unfinished stream (rule 8)."""
        if self._closed:
            return
        self._closed = True
        if self._broken:
            return
        try:
            pending = self._sse.close()
        except DecodeError as exc:
            self._framing(exc)
            return
        if pending:  # the last event's lines were complete, its blank line never came
            self._events += 1
            if self._end is None:
                self._problem(8, f"unfinished: event {self._events} is not closed by a blank "
                              "line, so no client sees it")
            else:
                self._after_end()
            return
        if self._end is None:
            self._problem(8, "unfinished: the stream ended without [DONE] or an error event",
                          after=True)

    # -- events -------------------------------------------------------------------------------

    def _problem(self, rule: int, text: str, *, after: bool = False) -> None:
        where = f"after event {self._events}" if after else f"event {self._events}"
        self.problems.append(f"rule {rule}, {where}: {text}")

    def _framing(self, exc: DecodeError) -> None:
        """The SSE framing failed (its error surfaces at the same byte however the input was
        cut, DEC-1); what comes after cannot be told apart."""
        self._broken = True
        if self._end is None and exc.kind == "truncated":
            self._problem(8, "unfinished: the stream ended inside a line", after=True)
            return
        self._events += 1
        if self._end is not None:
            self._after_end()
        else:
            self._problem(1, f"not a readable SSE event ({exc.kind})")

    def _after_end(self) -> None:
        """Something came after the end (reported once: the first thing is what matters)."""
        if self._past_end:
            return
        self._past_end = True
        if self._end == "error":
            self._problem(2, "something follows the error event (only a [DONE] event may)")
        else:
            self._problem(1, "something follows [DONE]")

    def _event(self, data: str) -> None:
        self._events += 1
        if self._end is not None:
            if self._end == "error" and data == _DONE:
                self._end = "error+done"
            else:
                self._after_end()
            return
        if data == _DONE:
            self._end = "done"
            for index in sorted(self._seen - self._finished.keys()):
                self._problem(6, f"[DONE] but choice {index} has no finish_reason")
            return
        try:
            obj = json.loads(data, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            self._problem(1, "the data is neither [DONE] nor JSON")
            return
        if not isinstance(obj, dict):
            self._problem(1, f"the data is {_kind(obj)}, not [DONE] or a JSON object")
            return
        if obj.get("error"):
            self._end = "error"
            return
        self._chunk(obj)

    def _chunk(self, obj: dict[str, Any]) -> None:
        choices = obj.get("choices")
        if not isinstance(choices, list):
            self._problem(3, f"choices is {_kind(choices) if 'choices' in obj else 'missing'}"
                          ", not a list")
        else:
            for k, choice in enumerate(choices):
                self._choice(f"choices[{k}]", choice)
        usage = obj.get("usage")
        if usage is not None:
            for text in _usage_problems(usage):
                self._problem(7, text)

    def _choice(self, where: str, choice: Any) -> None:
        if not isinstance(choice, dict):
            self._problem(3, f"{where} is {_kind(choice)}, not an object")
            return
        index = choice.get("index")
        if not _is_index(index):
            self._problem(3, f"{where}.index is {_kind(index) if 'index' in choice else 'missing'}"
                          ", not an integer >= 0")
            return
        self._seen.add(index)
        finished = index in self._finished
        delta = choice.get("delta")
        if isinstance(delta, dict):
            self._delta(f"{where}.delta", index, delta, finished)
        else:
            self._problem(3, f"{where}.delta is {_kind(delta) if 'delta' in choice else 'missing'}"
                          ", not an object")
        reason = choice.get("finish_reason")
        if reason is None:
            return
        if finished:
            self._problem(6, f"choice {index} gets a second finish_reason ({reason!r} after "
                          f"{self._finished[index]!r})")
            return
        self._finished[index] = reason
        if not isinstance(reason, str) or reason not in FINISH_REASONS:
            self._problem(6, f"{where}.finish_reason {reason!r} is not one of "
                          f"{', '.join(sorted(FINISH_REASONS))}")

    def _delta(self, where: str, index: int, delta: dict[str, Any], finished: bool) -> None:
        for text in _text_problems(where, delta):
            self._problem(4, text)
        calls = delta.get("tool_calls", _ABSENT)
        if finished:
            late = [f for f in _OUTPUT_FIELDS if isinstance(delta.get(f), str) and delta[f]]
            if isinstance(calls, list) and calls:
                late.append("tool_calls")
            if late:
                self._problem(6, f"choice {index} gets {' and '.join(late)} after its "
                              "finish_reason")
        if calls is _ABSENT:
            return
        if not isinstance(calls, list):
            self._problem(5, f"{where}.tool_calls is {_kind(calls)}, not a list")
            return
        for k, call in enumerate(calls):
            self._tool_call(f"{where}.tool_calls[{k}]", index, call)

    def _tool_call(self, where: str, index: int, call: Any) -> None:
        if not isinstance(call, dict):
            self._problem(5, f"{where} is {_kind(call)}, not an object")
            return
        number = call.get("index")
        if not _is_index(number):
            self._problem(5, f"{where}.index is {_kind(number) if 'index' in call else 'missing'}"
                          ", not an integer >= 0")
            return
        function = call.get("function")
        if "function" in call and not isinstance(function, dict):
            self._problem(5, f"{where}.function is {_kind(function)}, not an object")
        key = (index, number)
        if key not in self._tools:
            self._tools.add(key)
            ident = call.get("id")
            if not isinstance(ident, str) or not ident:
                self._problem(5, f"{where}: the first delta of tool call {number} of choice "
                              f"{index} has no non-empty string id")
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                self._problem(5, f"{where}: the first delta of tool call {number} of choice "
                              f"{index} has no function name string")
        if isinstance(function, dict) and "arguments" in function and \
                not isinstance(function["arguments"], str):
            self._problem(5, f"{where}.function.arguments is {_kind(function['arguments'])}, "
                          "not a string")


def check_chat_stream(data: bytes) -> list[str]:
    """The problems of a whole chat-completions SSE body (feed, then close)."""
    checker = ChatStreamChecker()
    checker.feed(data)
    checker.close()
    return checker.problems


def check_chat_body(obj: dict[str, Any]) -> list[str]:
    """The problems of a whole ``chat.completion`` body (rules 3 to 7 on ``choices[].message``;
    an error object, ``"error"`` truthy, has none)."""
    if not isinstance(obj, dict):
        return [f"rule 3: the body is {_kind(obj)}, not an object"]
    if obj.get("error"):
        return []
    out: list[str] = []
    choices = obj.get("choices")
    if not isinstance(choices, list):
        out.append(f"rule 3: choices is {_kind(choices) if 'choices' in obj else 'missing'}, "
                   "not a list")
        choices = []
    for k, choice in enumerate(choices):
        where = f"choices[{k}]"
        if not isinstance(choice, dict):
            out.append(f"rule 3: {where} is {_kind(choice)}, not an object")
            continue
        if not _is_index(choice.get("index")):
            index = choice.get("index")
            out.append(f"rule 3: {where}.index is "
                       f"{_kind(index) if 'index' in choice else 'missing'}, not an integer >= 0")
        reason = choice.get("finish_reason")
        if not isinstance(reason, str) or reason not in FINISH_REASONS:
            out.append(f"rule 6: {where}.finish_reason {reason!r} is not one of "
                       f"{', '.join(sorted(FINISH_REASONS))}")
        message = choice.get("message")
        if not isinstance(message, dict):
            out.append(f"rule 3: {where}.message is "
                       f"{_kind(message) if 'message' in choice else 'missing'}, not an object")
            continue
        out += ["rule 4: " + text for text in _text_problems(f"{where}.message", message)]
        if "tool_calls" in message:
            out += ["rule 5: " + text
                    for text in _body_tool_calls(f"{where}.message.tool_calls",
                                                 message["tool_calls"])]
    usage = obj.get("usage")
    if usage is not None:
        out += ["rule 7: " + text for text in _usage_problems(usage)]
    return out


def _body_tool_calls(where: str, calls: Any) -> list[str]:
    if not isinstance(calls, list):
        return [f"{where} is {_kind(calls)}, not a list"]
    out: list[str] = []
    for k, call in enumerate(calls):
        here = f"{where}[{k}]"
        if not isinstance(call, dict):
            out.append(f"{here} is {_kind(call)}, not an object")
            continue
        ident = call.get("id")
        if not isinstance(ident, str) or not ident:
            out.append(f"{here}.id is {_kind(ident) if 'id' in call else 'missing'}, not a "
                       "non-empty string")
        function = call.get("function")
        if not isinstance(function, dict):
            out.append(f"{here}.function is "
                       f"{_kind(function) if 'function' in call else 'missing'}, not an object")
            continue
        for field in ("name", "arguments"):
            value = function.get(field)
            if not isinstance(value, str):
                out.append(f"{here}.function.{field} is "
                           f"{_kind(value) if field in function else 'missing'}, not a string")
    return out
