"""The grammar of a Gemini ``streamGenerateContent`` answer, checked (what ``GeminiStream``
must produce and the google-genai SDK and Gemini CLI read), in both framings: SSE
(``?alt=sse``: ``data: {…}`` events separated by a blank line, CRLF or LF) and the JSON array
the API sends without ``alt`` (``[{…},{…}]``, any whitespace between elements).

``GeminiStreamChecker(sse).feed(data)`` reads bytes cut anywhere and raises
``GeminiGrammarError`` (an ``AssertionError``) at the first response that breaks a rule;
``close()`` says whether the stream was left unfinished. ``check_gemini_stream(data, sse)``
does both on a whole stream and returns the decoded responses. The rules:

1. every element is a JSON object: a ``GenerateContentResponse`` or an error;
2. a response's ``candidates`` is a non-empty list; the first candidate has ``index`` 0 (or
   none), and a ``content`` (optional on the finishing response) with ``role`` ``model`` and
   a list of ``parts``;
3. every part has exactly one of ``text``, ``inlineData``, ``fileData``, ``functionCall``,
   ``functionResponse``, ``executableCode``, ``codeExecutionResult``: text a string,
   ``thought`` a boolean, ``thoughtSignature`` a string, a ``functionCall`` a string ``name``,
   ``args`` an object and ``id`` a string when present;
4. exactly one response carries a ``finishReason`` (a known one), and no response with
   candidates comes after it;
5. ``usageMetadata``, when present, is an object whose ``…Count`` fields are integers ≥ 0,
   ``totalTokenCount`` at least ``promptTokenCount`` + ``candidatesTokenCount``;
6. ``responseId`` and ``modelVersion``, when present, are strings, the same in every response;
7. an error (``{"error": {"code": int, "message": str, "status": str}}``) may end the stream
   at any point; nothing follows it;
8. the stream ends with the finishing response or an error, and the array framing is a
   complete JSON array.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["FINISH_REASONS", "GeminiGrammarError", "GeminiStreamChecker",
           "check_gemini_stream"]

FINISH_REASONS = frozenset({
    "FINISH_REASON_UNSPECIFIED", "STOP", "MAX_TOKENS", "SAFETY", "RECITATION", "LANGUAGE",
    "OTHER", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "MALFORMED_FUNCTION_CALL",
    "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_OTHER", "NO_IMAGE", "IMAGE_RECITATION",
    "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS", "MISSING_THOUGHT_SIGNATURE"})
_DATA_KEYS = ("text", "inlineData", "fileData", "functionCall", "functionResponse",
              "executableCode", "codeExecutionResult")
_BLANK = re.compile(rb"(?:\r\n|\n)(?:\r\n|\n)")


class GeminiGrammarError(AssertionError):
    """A Gemini stream broke a rule (module docstring); the message says which, at which
    response (counted from 0)."""


class GeminiStreamChecker:
    """The rules, incrementally: ``feed`` bytes cut anywhere, then ``close``."""

    def __init__(self, sse: bool) -> None:
        self.sse = sse
        self._buffer = b""
        self._text = ""  # the array framing's undecoded text
        self._array = "start"  # start, element (one expected), next ("," or "]"), closed
        self._decoder = json.JSONDecoder()
        self.events: list[dict[str, Any]] = []
        self._state = "open"  # open, finished, done (error or closed after the finish)
        self._ids: dict[str, Any] = {}

    def _fail(self, message: str) -> GeminiGrammarError:
        return GeminiGrammarError(f"response {len(self.events)}: {message}")

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """The responses completed by ``data``; raises ``GeminiGrammarError``."""
        self._buffer += data
        return self._sse() if self.sse else self._json_array()

    def close(self) -> None:
        """Raises unless the stream ended with its finishing response or an error."""
        if self.sse:
            if self._buffer.strip():
                raise self._fail(f"unterminated event {self._buffer[:80]!r}")
        else:
            try:
                self._text += self._buffer.decode("utf-8")
            except UnicodeDecodeError:
                raise self._fail("the stream ends inside a UTF-8 character") from None
            self._buffer = b""
            if self._array != "closed" or self._text.strip():
                raise self._fail(f"the JSON array is not complete: {self._text[:80]!r}")
        if self._state == "open":
            raise self._fail("unfinished: no finishReason and no error at the end")

    # -- framings

    def _sse(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            m = _BLANK.search(self._buffer)
            if m is None:
                return out
            raw, self._buffer = self._buffer[:m.start()], self._buffer[m.end():]
            data: list[str] = []
            for line in raw.decode("utf-8").replace("\r\n", "\n").split("\n"):
                if line.startswith(":"):
                    continue
                field, _, value = line.partition(":")
                if field == "data":
                    data.append(value.removeprefix(" "))
                elif field not in ("event", "id", "retry", ""):
                    raise self._fail(f"unknown SSE field in {raw[:80]!r}")
            if not data:
                continue
            try:
                obj = json.loads("\n".join(data))
            except ValueError:
                raise self._fail(f"data is not JSON: {raw[:80]!r}") from None
            out.append(self._element(obj))

    def _json_array(self) -> list[dict[str, Any]]:
        try:
            self._text += self._buffer.decode("utf-8")
            self._buffer = b""
        except UnicodeDecodeError as exc:  # a character cut by the feed: keep its bytes
            self._text += self._buffer[:exc.start].decode("utf-8")
            self._buffer = self._buffer[exc.start:]
        out: list[dict[str, Any]] = []
        while True:
            text = self._text.lstrip()
            if not text:
                self._text = ""
                return out
            if self._array == "closed":
                raise self._fail(f"text after the end of the array: {text[:80]!r}")
            if self._array == "start":
                if text[0] != "[":
                    raise self._fail(f"the stream does not open a JSON array: {text[:80]!r}")
                self._text, self._array = text[1:], "element"
                continue
            if self._array == "next":
                if text[0] == ",":
                    self._text, self._array = text[1:], "element"
                elif text[0] == "]":
                    self._text, self._array = text[1:], "closed"
                    if self._state == "finished":
                        self._state = "done"
                else:
                    raise self._fail(f"expected ',' or ']' between elements: {text[:80]!r}")
                continue
            if text[0] == "]" and not self.events:
                self._text, self._array = text[1:], "closed"
                continue
            try:
                obj, end = self._decoder.raw_decode(text)
            except ValueError:
                self._text = text
                return out  # not complete yet (close() says if it never is)
            self._text, self._array = text[end:], "next"
            out.append(self._element(obj))

    # -- the rules

    def _element(self, obj: Any) -> dict[str, Any]:
        if type(obj) is not dict:
            raise self._fail(f"not a JSON object: {obj!r:.80}")
        if self._state == "done":
            raise self._fail("a response after the end of the stream")
        if "error" in obj:
            error = obj["error"]
            if type(error) is not dict or type(error.get("code")) is not int or \
                    type(error.get("message")) is not str or \
                    type(error.get("status")) is not str:
                raise self._fail(f"an error without code, message and status: {obj!r:.120}")
            self._state = "done"
        else:
            self._response(obj)
        self.events.append(obj)
        return obj

    def _response(self, obj: dict[str, Any]) -> None:
        for key in ("responseId", "modelVersion"):
            if key in obj:
                if type(obj[key]) is not str:
                    raise self._fail(f"{key} is not a string")
                if self._ids.setdefault(key, obj[key]) != obj[key]:
                    raise self._fail(f"{key} changed from {self._ids[key]!r} to {obj[key]!r}")
        if "usageMetadata" in obj:
            self._usage(obj["usageMetadata"])
        candidates = obj.get("candidates")
        if candidates is None:
            if "usageMetadata" not in obj and "promptFeedback" not in obj:
                raise self._fail("a response with no candidates, usage or prompt feedback")
            return
        if type(candidates) is not list or not candidates or type(candidates[0]) is not dict:
            raise self._fail("candidates is not a non-empty list of objects")
        if self._state == "finished":
            raise self._fail("a candidate after the finishing response")
        candidate = candidates[0]
        if candidate.get("index", 0) != 0:
            raise self._fail(f"the first candidate has index {candidate.get('index')!r}")
        finish = candidate.get("finishReason")
        if finish is not None and finish not in FINISH_REASONS:
            raise self._fail(f"unknown finishReason {finish!r}")
        content = candidate.get("content")
        if content is None and finish is None:
            raise self._fail("a candidate without content or finishReason")
        if content is not None:
            if type(content) is not dict or content.get("role") != "model" or \
                    type(content.get("parts")) is not list:
                raise self._fail(f"content is not a model content with parts: {content!r:.120}")
            for j, part in enumerate(content["parts"]):
                self._part(part, j)
        if finish is not None:
            self._state = "finished"

    def _part(self, part: Any, j: int) -> None:
        if type(part) is not dict:
            raise self._fail(f"part {j} is not an object")
        keys = [k for k in _DATA_KEYS if k in part]
        if len(keys) != 1:
            raise self._fail(f"part {j} has {keys or 'none'} of {_DATA_KEYS}")
        if "text" in part and type(part["text"]) is not str:
            raise self._fail(f"part {j}: text is not a string")
        if "thought" in part and type(part["thought"]) is not bool:
            raise self._fail(f"part {j}: thought is not a boolean")
        if "thoughtSignature" in part and type(part["thoughtSignature"]) is not str:
            raise self._fail(f"part {j}: thoughtSignature is not a string")
        call = part.get("functionCall")
        if call is not None and (type(call) is not dict or type(call.get("name")) is not str or
                                 type(call.get("args", {})) is not dict or
                                 type(call.get("id", "")) is not str):
            raise self._fail(f"part {j}: a functionCall needs a name, object args and a "
                             f"string id: {call!r:.120}")

    def _usage(self, usage: Any) -> None:
        if type(usage) is not dict:
            raise self._fail("usageMetadata is not an object")
        for key, value in usage.items():
            if key.endswith("Count") and (type(value) is not int or value < 0):
                raise self._fail(f"usageMetadata.{key} is not an integer ≥ 0: {value!r}")
        total = usage.get("totalTokenCount")
        if total is not None and total < usage.get("promptTokenCount", 0) + \
                usage.get("candidatesTokenCount", 0):
            raise self._fail(f"totalTokenCount {total} is less than prompt + candidates")


def check_gemini_stream(data: bytes, sse: bool) -> list[dict[str, Any]]:
    """The responses (and any error) of a whole Gemini stream; raises
    ``GeminiGrammarError`` if it breaks the grammar (module docstring) or is unfinished."""
    checker = GeminiStreamChecker(sse)
    checker.feed(data)
    checker.close()
    return checker.events
