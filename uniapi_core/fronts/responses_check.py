"""The grammar of an OpenAI Responses event stream, checked (what ``ResponsesStream`` must
produce and the ``openai`` SDK's ``ResponseStream`` accumulator relies on).

``ResponsesStreamChecker.feed(data)`` reads SSE bytes cut anywhere and raises
``ResponsesGrammarError`` (an ``AssertionError``) at the first event that breaks a rule;
``close()`` says whether the stream was left unfinished. ``check_responses_stream(data)`` does
both on a whole stream and returns the decoded events. The rules:

1. every event has an ``event:`` name and one JSON object in ``data:`` whose ``type`` is that
   name, and a ``sequence_number``: 0 for the first event, then one more each time;
2. the first event is ``response.created`` (a ``response`` object with status
   ``in_progress`` or ``queued`` and an empty ``output``), the second ``response.in_progress``
   (same id); or the first and only event is ``error``;
3. ``response.output_item.added`` only when no item is open, its ``output_index`` the number
   of items done so far, its item a ``message`` (role assistant, empty ``content``), a
   ``reasoning`` item (empty ``summary``) or a ``function_call`` (``call_id`` and ``name``
   strings, ``arguments`` empty) with a string ``id``;
4. ``response.content_part.added`` (messages) and ``response.reasoning_summary_part.added``
   (reasoning) only in the open item of that type, when no part is open, with the next
   ``content_index`` / ``summary_index``; a content part is ``output_text`` (empty text,
   ``annotations`` a list) or ``refusal`` (empty refusal);
5. deltas (``response.output_text.delta``, ``response.refusal.delta``,
   ``response.reasoning_summary_text.delta``, ``response.function_call_arguments.delta``) only
   for the open item (``item_id``, ``output_index``) and, for parts, the open part of their kind
   (``content_index``/``summary_index``), ``delta`` a string;
6. each ``….done`` of a text (``response.output_text.done``, ``response.refusal.done``,
   ``response.reasoning_summary_text.done``, ``response.function_call_arguments.done``) once,
   for the open part or call, its text the concatenated deltas; a part's ``….part.done`` after
   it, with the finished part; ``response.output_item.done`` when no part is open and the
   arguments are done, with the finished item (same id and type, status ``completed`` or
   ``incomplete``);
7. exactly one terminal event, ``response.completed`` (status completed),
   ``response.incomplete`` (status incomplete, ``incomplete_details.reason`` given) or
   ``response.failed`` (status failed, ``error`` with string ``code`` and ``message``), when no
   item is open; its response has the same id and its ``output`` equals the items the
   ``response.output_item.done`` events carried; a completed response has ``usage``;
8. an ``error`` event (string ``message``) may end the stream at any point; nothing follows a
   terminal event or an error.
"""

from __future__ import annotations

import json
from typing import Any

from .common import named_event

__all__ = ["ResponsesGrammarError", "ResponsesStreamChecker", "check_responses_stream"]

TERMINALS = {"response.completed": "completed", "response.incomplete": "incomplete",
             "response.failed": "failed"}
#: text-done event → (part type, payload key, delta event)
_TEXT_DONE = {"response.output_text.done": ("output_text", "text",
                                            "response.output_text.delta"),
              "response.refusal.done": ("refusal", "refusal", "response.refusal.delta")}
_TEXT_DELTAS = {"response.output_text.delta": "output_text", "response.refusal.delta": "refusal"}


class ResponsesGrammarError(AssertionError):
    """A Responses event stream broke a rule (module docstring); the message says which, at
    which event (counted from 0)."""


class ResponsesStreamChecker:
    """The rules, incrementally: ``feed`` bytes cut anywhere, then ``close``."""

    def __init__(self) -> None:
        self._buffer = b""
        self.events: list[dict[str, Any]] = []
        self._state = "start"  # start, created, open, done
        self._id: Any = None
        self.items: list[dict[str, Any]] = []  # the items output_item.done carried
        self._item: dict[str, Any] | None = None  # the open item, as accumulated
        self._part: dict[str, Any] | None = None  # its open part
        self._part_text_done = False
        self._args_done = False

    def _fail(self, message: str) -> ResponsesGrammarError:
        return ResponsesGrammarError(f"event {len(self.events)}: {message}")

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """The events completed by ``data``; raises ``ResponsesGrammarError``."""
        self._buffer += data.replace(b"\r\n", b"\n")
        out = []
        while b"\n\n" in self._buffer:
            raw, self._buffer = self._buffer.split(b"\n\n", 1)
            event = self._event(raw)
            if event is not None:
                out.append(event)
        return out

    def close(self) -> None:
        """Raises unless the stream ended with a terminal event or an error."""
        if self._buffer.strip():
            raise self._fail(f"unterminated event {self._buffer[:80]!r}")
        if self._state != "done":
            raise self._fail("unfinished: no response.completed, .incomplete, .failed or "
                             "error at the end")

    def _event(self, raw: bytes) -> dict[str, Any] | None:
        obj = named_event(raw, self._fail)
        if obj is None:
            return None
        name = obj["type"]
        if obj.get("sequence_number") != len(self.events) or \
                type(obj.get("sequence_number")) is not int:
            raise self._fail(f"{name}: sequence_number {obj.get('sequence_number')!r}, "
                             f"expected {len(self.events)}")
        self._rule(name, obj)
        self.events.append(obj)
        return obj

    # -- rules

    def _response(self, name: str, obj: dict[str, Any], statuses: tuple[str, ...]
                  ) -> dict[str, Any]:
        response = obj.get("response")
        if type(response) is not dict or response.get("object") != "response" or \
                type(response.get("id")) is not str or response.get("status") not in statuses \
                or type(response.get("output")) is not list:
            raise self._fail(f"{name} without a response object of status "
                             f"{' or '.join(statuses)}")
        if self._id is not None and response["id"] != self._id:
            raise self._fail(f"{name}: response id {response['id']!r}, expected {self._id!r}")
        return response

    def _rule(self, name: str, obj: dict[str, Any]) -> None:
        if self._state == "done":
            raise self._fail(f"{name} after the end of the stream")
        if name == "error":
            if type(obj.get("message")) is not str:
                raise self._fail("error event without a message")
            self._state = "done"
            return
        if self._state == "start":
            if name != "response.created":
                raise self._fail(f"first event is {name}, not response.created")
            response = self._response(name, obj, ("in_progress", "queued"))
            if response["output"]:
                raise self._fail("response.created with output items")
            self._id = response["id"]
            self._state = "created"
            return
        if self._state == "created":
            if name != "response.in_progress":
                raise self._fail(f"{name} where response.in_progress must follow "
                                 "response.created")
            self._response(name, obj, ("in_progress",))
            self._state = "open"
            return
        if name in ("response.created", "response.in_progress"):
            raise self._fail(f"a second {name}")
        if name in TERMINALS:
            self._terminal(name, obj)
        elif name == "response.output_item.added":
            self._added(obj)
        elif name == "response.output_item.done":
            self._item_done(obj)
        elif name in ("response.content_part.added", "response.reasoning_summary_part.added"):
            self._part_added(name, obj)
        elif name in ("response.content_part.done", "response.reasoning_summary_part.done"):
            self._part_done(name, obj)
        elif name in _TEXT_DELTAS or name == "response.reasoning_summary_text.delta":
            self._text_delta(name, obj)
        elif name in _TEXT_DONE or name == "response.reasoning_summary_text.done":
            self._text_done(name, obj)
        elif name == "response.function_call_arguments.delta":
            item = self._in_item(name, obj, "function_call")
            if self._args_done or type(obj.get("delta")) is not str:
                raise self._fail(f"{name} after the arguments were done, or without a string "
                                 "delta")
            item["arguments"] += obj["delta"]
        elif name == "response.function_call_arguments.done":
            item = self._in_item(name, obj, "function_call")
            if self._args_done or obj.get("arguments") != item["arguments"]:
                raise self._fail(f"{name} twice, or its arguments {obj.get('arguments')!r} are "
                                 f"not the deltas' {item['arguments']!r}")
            self._args_done = True
        else:
            raise self._fail(f"unknown event {name!r}")

    def _terminal(self, name: str, obj: dict[str, Any]) -> None:
        if self._item is not None:
            raise self._fail(f"{name} while item {len(self.items)} is open")
        response = self._response(name, obj, (TERMINALS[name],))
        if response["output"] != self.items:
            raise self._fail(f"{name}: output is not the items the output_item.done events "
                             f"carried:\n{response['output']!r}\n{self.items!r}")
        if name == "response.completed" and type(response.get("usage")) is not dict:
            raise self._fail("response.completed without usage")
        if name == "response.incomplete":
            details = response.get("incomplete_details")
            if type(details) is not dict or type(details.get("reason")) is not str:
                raise self._fail("response.incomplete without incomplete_details.reason")
        if name == "response.failed":
            error = response.get("error")
            if type(error) is not dict or type(error.get("code")) is not str or \
                    type(error.get("message")) is not str:
                raise self._fail("response.failed without an error of code and message")
        self._state = "done"

    def _added(self, obj: dict[str, Any]) -> None:
        if self._item is not None:
            raise self._fail(f"output_item.added while item {len(self.items)} is open")
        if obj.get("output_index") != len(self.items):
            raise self._fail(f"output_item.added output_index {obj.get('output_index')!r}, "
                             f"expected {len(self.items)}")
        item = obj.get("item")
        kind = item.get("type") if type(item) is dict else None
        if type(item) is not dict or type(item.get("id")) is not str or not item["id"]:
            raise self._fail(f"output_item.added without an item with an id: {item!r}")
        if kind == "message":
            ok = item.get("role") == "assistant" and item.get("content") == []
        elif kind == "reasoning":
            ok = item.get("summary") == []
        elif kind == "function_call":
            ok = type(item.get("call_id")) is str and bool(item["call_id"]) and \
                type(item.get("name")) is str and item.get("arguments") == ""
        else:
            raise self._fail(f"output_item.added with an unknown item type {kind!r}")
        if not ok:
            raise self._fail(f"output_item.added with a {kind} item that does not start "
                             f"empty: {item!r}")
        self._item = json.loads(json.dumps(item))
        self._part = None
        self._args_done = False

    def _in_item(self, name: str, obj: dict[str, Any], kind: str) -> dict[str, Any]:
        item = self._item
        if item is None or item["type"] != kind or obj.get("item_id") != item["id"] or \
                obj.get("output_index") != len(self.items):
            raise self._fail(f"{name} for item {obj.get('item_id')!r} at "
                             f"{obj.get('output_index')!r}, but the open item is "
                             f"{None if item is None else (item['type'], item['id'])!r} at "
                             f"{len(self.items)}")
        return item

    def _part_added(self, name: str, obj: dict[str, Any]) -> None:
        reasoning = name == "response.reasoning_summary_part.added"
        item = self._in_item(name, obj, "reasoning" if reasoning else "message")
        key, index_key = ("summary", "summary_index") if reasoning else \
            ("content", "content_index")
        if self._part is not None:
            raise self._fail(f"{name} while a part is open")
        if obj.get(index_key) != len(item[key]):
            raise self._fail(f"{name} {index_key} {obj.get(index_key)!r}, expected "
                             f"{len(item[key])}")
        part = obj.get("part")
        if type(part) is not dict:
            raise self._fail(f"{name} without a part object")
        kind = part.get("type")
        if reasoning:
            ok = kind == "summary_text" and part.get("text") == ""
        elif kind == "output_text":
            ok = part.get("text") == "" and type(part.get("annotations")) is list
        else:
            ok = kind == "refusal" and part.get("refusal") == ""
        if not ok:
            raise self._fail(f"{name} with a part that is not an empty summary_text, "
                             f"output_text or refusal: {part!r}")
        self._part = json.loads(json.dumps(part))
        item[key].append(self._part)
        self._part_text_done = False

    def _open_part(self, name: str, obj: dict[str, Any], kind: str) -> dict[str, Any]:
        reasoning = kind == "summary_text"
        item = self._in_item(name, obj, "reasoning" if reasoning else "message")
        key, index_key = ("summary", "summary_index") if reasoning else \
            ("content", "content_index")
        part = self._part
        if part is None or part["type"] != kind or obj.get(index_key) != len(item[key]) - 1:
            raise self._fail(f"{name} at {index_key} {obj.get(index_key)!r}, but the open part "
                             f"is {None if part is None else part['type']!r} at "
                             f"{len(item[key]) - 1}")
        return part

    def _text_delta(self, name: str, obj: dict[str, Any]) -> None:
        kind = _TEXT_DELTAS.get(name, "summary_text")
        part = self._open_part(name, obj, kind)
        if self._part_text_done or type(obj.get("delta")) is not str:
            raise self._fail(f"{name} after its text was done, or without a string delta")
        part["refusal" if kind == "refusal" else "text"] += obj["delta"]

    def _text_done(self, name: str, obj: dict[str, Any]) -> None:
        kind, key, _ = _TEXT_DONE.get(name, ("summary_text", "text", ""))
        part = self._open_part(name, obj, kind)
        if self._part_text_done or obj.get(key) != part[key]:
            raise self._fail(f"{name} twice, or its {key} {obj.get(key)!r} is not the deltas' "
                             f"{part[key]!r}")
        self._part_text_done = True

    def _part_done(self, name: str, obj: dict[str, Any]) -> None:
        if self._part is None:
            raise self._fail(f"{name} with no part open")
        part = self._open_part(name, obj, self._part["type"])
        reasoning = name == "response.reasoning_summary_part.done"
        if reasoning != (part["type"] == "summary_text"):
            raise self._fail(f"{name} for a {part['type']} part")
        if not self._part_text_done:
            raise self._fail(f"{name} before its text was done")
        if obj.get("part") != part:
            raise self._fail(f"{name} part {obj.get('part')!r} is not the accumulated {part!r}")
        self._part = None

    def _item_done(self, obj: dict[str, Any]) -> None:
        item = self._item
        if item is None:
            raise self._fail("output_item.done with no item open")
        if obj.get("output_index") != len(self.items):
            raise self._fail(f"output_item.done output_index {obj.get('output_index')!r}, "
                             f"expected {len(self.items)}")
        if self._part is not None:
            raise self._fail("output_item.done while a part is open")
        if item["type"] == "function_call" and not self._args_done:
            raise self._fail("output_item.done before function_call_arguments.done")
        done = obj.get("item")
        # a reasoning item may come without a status (OpenAI's own do)
        if type(done) is not dict or done.get("status") not in ("completed", "incomplete") and \
                not (item["type"] == "reasoning" and "status" not in done):
            raise self._fail(f"output_item.done without a completed or incomplete item: "
                             f"{done!r}")
        expected = dict(item)
        expected.pop("status", None)
        if "status" in done:
            expected["status"] = done["status"]
        if done != expected:
            raise self._fail(f"output_item.done item is not the accumulated one:\n{done!r}\n"
                             f"{expected!r}")
        self.items.append(done)
        self._item = None


def check_responses_stream(data: bytes) -> list[dict[str, Any]]:
    """The events of a whole Responses SSE stream; raises ``ResponsesGrammarError`` if it
    breaks the grammar (module docstring) or is unfinished."""
    checker = ResponsesStreamChecker()
    checker.feed(data)
    checker.close()
    return checker.events
