"""The grammar of an Anthropic Messages event stream, checked (what ``MessagesStream`` must
produce and the ``anthropic`` SDK's accumulator relies on).

``MessagesStreamChecker.feed(data)`` reads SSE bytes cut anywhere and raises
``MessagesGrammarError`` (an ``AssertionError``) at the first event that breaks a rule;
``close()`` says whether the stream was left unfinished. ``check_messages_stream(data)`` does
both on a whole stream and returns the decoded events. The rules:

1. every event has an ``event:`` name and one JSON object in ``data:`` whose ``type`` is that
   name;
2. the first event is ``message_start`` (or ``error``), its message has ``type`` message,
   role assistant, empty ``content``, a null ``stop_reason`` and a ``usage`` object;
3. ``content_block_start`` indexes are 0, 1, 2… in order; a block starts only when none is
   open and is one of text, thinking, redacted_thinking, tool_use (id non-empty, a string name,
   ``input`` ``{}``), or a server-side block a native upstream streams (``server_tool_use``,
   ``mcp_…``, ``…_tool_result``, ``container_upload``);
4. ``content_block_delta`` only for the open block's index and of its type (``text_delta``
   or ``citations_delta`` text, ``input_json_delta`` tool_use and server tool use,
   ``thinking_delta``/``signature_delta`` thinking), its payload a string (a citation object
   for ``citations_delta``);
5. ``content_block_stop`` only for the open block; a tool_use block's concatenated
   ``partial_json`` is empty or parses as a JSON object;
6. exactly one ``message_delta`` (no block open, a known or null ``stop_reason``, integer
   ``output_tokens`` ≥ 0), then ``message_stop``, then nothing;
7. ``ping`` anywhere after ``message_start`` and before ``message_stop``;
8. an ``error`` event (``{"type": "error", "error": {"type", "message"}}``) may end the stream
   at any point; nothing follows it.
"""

from __future__ import annotations

import json
from typing import Any

from .common import named_event

__all__ = ["MessagesGrammarError", "MessagesStreamChecker", "check_messages_stream"]

STOP_REASONS = frozenset({"end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn",
                          "refusal", "model_context_window_exceeded"})
_DELTAS = {"text": ("text_delta", "citations_delta"), "tool_use": ("input_json_delta",),
           "thinking": ("thinking_delta", "signature_delta"), "redacted_thinking": ()}
#: the server-side tool blocks a native upstream streams (``server_tool_use`` takes
#: ``input_json_delta``; a result block such as ``web_search_tool_result`` comes whole)
_SERVER_BLOCK = ("input_json_delta",)
_PAYLOAD = {"text_delta": "text", "input_json_delta": "partial_json",
            "thinking_delta": "thinking", "signature_delta": "signature"}


class MessagesGrammarError(AssertionError):
    """An Anthropic event stream broke a rule (module docstring); the message says which,
    at which event (counted from 0)."""


class MessagesStreamChecker:
    """The rules, incrementally: ``feed`` bytes cut anywhere, then ``close``."""

    def __init__(self) -> None:
        self._buffer = b""
        self.events: list[dict[str, Any]] = []
        self._state = "start"  # start, message, delta, done
        self._index = -1
        self._open: str | None = None
        self._json = ""

    def _fail(self, message: str) -> MessagesGrammarError:
        return MessagesGrammarError(f"event {len(self.events)}: {message}")

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """The events completed by ``data``; raises ``MessagesGrammarError``."""
        self._buffer += data.replace(b"\r\n", b"\n")
        out = []
        while b"\n\n" in self._buffer:
            raw, self._buffer = self._buffer.split(b"\n\n", 1)
            event = self._event(raw)
            if event is not None:
                out.append(event)
        return out

    def close(self) -> None:
        """Raises unless the stream ended with ``message_stop`` or an error."""
        if self._buffer.strip():
            raise self._fail(f"unterminated event {self._buffer[:80]!r}")
        if self._state != "done":
            raise self._fail("unfinished: no message_stop or error at the end")

    def _event(self, raw: bytes) -> dict[str, Any] | None:
        """The event ``raw`` holds, None for one of comments only (or blank)."""
        obj = named_event(raw, self._fail)
        if obj is None:
            return None
        name = obj["type"]
        self._rule(name, obj)
        self.events.append(obj)
        return obj

    def _rule(self, name: str, obj: dict[str, Any]) -> None:
        if self._state == "done":
            raise self._fail(f"{name} after the end of the stream")
        if name == "error":
            error = obj.get("error")
            if type(error) is not dict or type(error.get("type")) is not str or \
                    type(error.get("message")) is not str:
                raise self._fail("error without an error object of type and message")
            self._state = "done"
            return
        if self._state == "start":
            if name != "message_start":
                raise self._fail(f"first event is {name}, not message_start")
            message = obj.get("message")
            if type(message) is not dict or message.get("type") != "message" or \
                    message.get("role") != "assistant" or message.get("content") != [] or \
                    message.get("stop_reason") is not None or \
                    type(message.get("usage")) is not dict or \
                    type(message.get("id")) is not str:
                raise self._fail("message_start without an empty assistant message")
            self._state = "message"
            return
        if name == "message_start":
            raise self._fail("a second message_start")
        if name == "ping":
            return
        if self._state == "delta":
            if name != "message_stop":
                raise self._fail(f"{name} after message_delta (only message_stop may follow)")
            self._state = "done"
            return
        if name == "content_block_start":
            self._start(obj)
        elif name == "content_block_delta":
            self._delta(obj)
        elif name == "content_block_stop":
            if self._open is None or obj.get("index") != self._index:
                raise self._fail(f"content_block_stop for index {obj.get('index')!r}, but the "
                                 f"open block is {self._index if self._open else None!r}")
            if self._open == "tool_use" and self._json:
                try:
                    value = json.loads(self._json)
                except ValueError:
                    value = None
                if type(value) is not dict:
                    raise self._fail(f"tool_use block {self._index}: partial_json does not "
                                     f"make a JSON object: {self._json[:80]!r}")
            self._open = None
        elif name == "message_delta":
            if self._open is not None:
                raise self._fail(f"message_delta while block {self._index} is open")
            delta, usage = obj.get("delta"), obj.get("usage")
            if type(delta) is not dict or (delta.get("stop_reason") is not None and
                                           delta.get("stop_reason") not in STOP_REASONS):
                raise self._fail(f"message_delta with a bad delta {delta!r}")
            tokens = usage.get("output_tokens") if type(usage) is dict else None
            if type(tokens) is not int or tokens < 0:
                raise self._fail(f"message_delta without integer output_tokens: {usage!r}")
            self._state = "delta"
        elif name == "message_stop":
            raise self._fail("message_stop without a message_delta before it")
        else:
            raise self._fail(f"unknown event {name!r}")

    def _start(self, obj: dict[str, Any]) -> None:
        if self._open is not None:
            raise self._fail(f"content_block_start while block {self._index} is open")
        if obj.get("index") != self._index + 1:
            raise self._fail(f"content_block_start index {obj.get('index')!r}, expected "
                             f"{self._index + 1}")
        block = obj.get("content_block")
        kind = block.get("type") if type(block) is dict else None
        if type(block) is not dict or type(kind) is not str or not (
                kind in _DELTAS or kind.startswith(("server_tool_use", "mcp_")) or
                kind.endswith("_tool_result") or kind == "container_upload"):
            raise self._fail(f"content_block_start with an unknown block {block!r}")
        if kind == "tool_use" and (type(block.get("id")) is not str or not block["id"] or
                                   type(block.get("name")) is not str or
                                   block.get("input") != {}):
            raise self._fail(f"tool_use start without id, name and empty input: {block!r}")
        if kind == "text" and type(block.get("text")) is not str:
            raise self._fail("text block start without text")
        if kind == "thinking" and type(block.get("thinking")) is not str:
            raise self._fail("thinking block start without thinking")
        self._index += 1
        self._open = kind
        self._json = ""

    def _delta(self, obj: dict[str, Any]) -> None:
        if self._open is None or obj.get("index") != self._index:
            raise self._fail(f"content_block_delta for index {obj.get('index')!r}, but the "
                             f"open block is {self._index if self._open else None!r}")
        delta = obj.get("delta")
        kind = delta.get("type") if type(delta) is dict else None
        if type(delta) is not dict or kind not in _DELTAS.get(self._open, _SERVER_BLOCK):
            raise self._fail(f"{kind!r} delta in a {self._open} block")
        if kind == "citations_delta":
            if type(delta.get("citation")) is not dict:
                raise self._fail("citations_delta without a citation object")
            return
        payload = delta.get(_PAYLOAD[kind])
        if type(payload) is not str:
            raise self._fail(f"{kind} without a string {_PAYLOAD[kind]}")
        if kind == "input_json_delta":
            self._json += payload


def check_messages_stream(data: bytes) -> list[dict[str, Any]]:
    """The events of a whole Anthropic SSE stream; raises ``MessagesGrammarError`` if it
    breaks the grammar (module docstring) or is unfinished."""
    checker = MessagesStreamChecker()
    checker.feed(data)
    checker.close()
    return checker.events
