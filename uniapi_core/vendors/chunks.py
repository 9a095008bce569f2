"""The OpenAI objects translators produce: ``chat.completion`` and ``chat.completion.chunk``.

Every translating vendor (Anthropic, Gemini, Bedrock, Cohere…) writes its output through
``ChunkWriter`` (streams) or ``completion`` (whole bodies), so the stream grammar of
docs/contracts.md ("The stream grammar") is enforced in one place:

- exactly one role chunk, first (S-1). It goes out together with the first body, tool or
  finish chunk, not on its own: a vendor that opens its stream and then fails (Anthropic's
  ``overloaded_error`` right after ``message_start``) has then sent the client nothing, and
  the relay may still retry on the next channel (S-9);
- one ``tool_start`` per tool call carrying id/type/name, before its ``tool_args`` (S-2), with
  indexes 0, 1, 2… in order of first appearance (S-3), argument fragments verbatim (TC-2);
- exactly one finish chunk with an empty delta, after every body chunk (S-4);
- a usage chunk (``choices: []``) only when the client asked for it, every other chunk with
  ``"usage": null`` in that case (S-5); then ``[DONE]`` is the relay's business;
- never an empty body delta (S-7); compact UTF-8 JSON with U+2028/9 escaped (S-8).
"""

from __future__ import annotations

# typeshed's json.decoder stub does not declare ``scanstring``; the module has it at runtime
from json.decoder import scanstring  # type: ignore[attr-defined]
from json.encoder import encode_basestring
from typing import Any

from ..jsonutil import dumps
from .base import ChatContext, StreamChunk

__all__ = ["ChunkWriter", "completion", "usage_object"]


def usage_object(prompt: int = 0, completion: int = 0, cached: int = 0,
                 reasoning: int = 0) -> dict[str, Any]:
    """OpenAI usage with details (docs/contracts.md, "Usage figures")."""
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning}}


def completion(ctx: ChatContext, *, content: str, reasoning: str = "",
               tool_calls: list[dict[str, Any]] | None = None, finish_reason: str = "stop",
               usage: dict[str, Any] | None = None) -> bytes:
    """A whole ``chat.completion`` body (O-1..O-6). ``tool_calls`` items are
    ``{"id", "name", "arguments"}``."""
    message: dict[str, Any] = {"role": "assistant",
                               "content": None if (tool_calls and not content) else content,
                               "refusal": None}
    if reasoning:
        message["reasoning_content"] = reasoning
    if tool_calls:
        message["tool_calls"] = [{"id": t["id"], "type": "function",
                                  "function": {"name": t["name"], "arguments": t["arguments"]}}
                                 for t in tool_calls]
    return dumps({"id": ctx.response_id, "object": "chat.completion", "created": ctx.created,
                  "model": ctx.client_model,
                  "choices": [{"index": 0, "message": message, "logprobs": None,
                               "finish_reason": finish_reason}],
                  "usage": usage or usage_object()})


class ChunkWriter:
    """Builds the client's SSE chunks for one streamed response."""

    def __init__(self, ctx: ChatContext) -> None:
        self.ctx = ctx
        self._started = False
        self._finished = False
        self._tools: dict[Any, int] = {}  # vendor key -> openai index (TC-1)
        self._prefix = (b'{"id":' + dumps(ctx.response_id)
                        + b',"object":"chat.completion.chunk","created":'
                        + str(int(ctx.created)).encode() + b',"model":'
                        + dumps(ctx.client_model) + b',"choices":')
        self._suffix = b',"usage":null}' if ctx.include_usage else b"}"
        # the bytes around the JSON string of a plain text / reasoning delta: what _chunk
        # writes for {"content": text} and {"reasoning_content": text}, precomputed
        tail = b'},"logprobs":null,"finish_reason":null}]' + self._suffix + b"\n\n"
        self._text_parts = (b"data: " + self._prefix + b'[{"index":0,"delta":{"content":', tail)
        self._reasoning_parts = (
            b"data: " + self._prefix + b'[{"index":0,"delta":{"reasoning_content":', tail)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> StreamChunk:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return StreamChunk(b"data: " + self._prefix + dumps([choice]) + self._suffix + b"\n\n")

    @property
    def text_parts(self) -> tuple[bytes, bytes]:
        """What goes before and after the JSON string (quotes included) of a text delta once
        the role chunk went out: ``text(t)`` is ``[StreamChunk(before + dumps(t) + after)]``
        for any ``t`` UTF-8 can hold."""
        return self._text_parts

    @property
    def started(self) -> bool:
        """The role chunk went out."""
        return self._started

    def start(self) -> list[StreamChunk]:
        """The stream opened; the role chunk waits for the first real chunk (see above)."""
        return []

    def _role(self) -> list[StreamChunk]:
        if self._started:
            return []
        self._started = True
        return [self._chunk({"role": "assistant", "content": ""})]

    def _delta(self, parts: tuple[bytes, bytes], key: str, text: str) -> StreamChunk:
        """``_chunk({key: text})`` from the precomputed ``parts``: the same bytes, with only
        the string encoded (``dumps`` would write the whole chunk in ASCII escapes for text
        that UTF-8 cannot hold, so that case takes the general way)."""
        body = encode_basestring(text)
        if "\u2028" in body or "\u2029" in body:  # S-8, as dumps does
            body = body.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        try:
            return StreamChunk(parts[0] + body.encode("utf-8") + parts[1])
        except UnicodeEncodeError:  # a lone surrogate
            return self._chunk({key: text})

    def text(self, text: str) -> list[StreamChunk]:
        if not text:
            return []
        if not self._started:
            return self._role() + [self._chunk({"content": text})]
        return [self._delta(self._text_parts, "content", text)]

    def json_text(self, body: str, source: str, start: int) -> list[StreamChunk]:
        """``text(t)`` where ``t`` is the value of a valid JSON string whose body (between the
        quotes) is ``body``, found at ``source[start:]``. Without \\u or \\/ escapes the body
        is already what JSON-escaping ``t`` gives (quotes, backslashes and controls have one
        escape each), save U+2028/U+2029, so it is copied instead of decoded and encoded."""
        if not body:
            return []
        if "\\" in body:
            if not self._started or "\\u" in body or "\\/" in body:
                return self.text(scanstring(source, start)[0])
        elif not self._started:
            return self.text(body)
        if "\u2028" in body or "\u2029" in body:  # S-8, as dumps does
            body = body.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        head, tail = self._text_parts
        return [StreamChunk(head + b'"' + body.encode("utf-8") + b'"' + tail)]

    def reasoning(self, text: str) -> list[StreamChunk]:
        if not text:
            return []
        if not self._started:
            return self._role() + [self._chunk({"reasoning_content": text})]
        return [self._delta(self._reasoning_parts, "reasoning_content", text)]

    def tool_start(self, vendor_key: Any, call_id: str, name: str,
                   arguments: str = "") -> list[StreamChunk]:
        """A new tool call (S-2); ``vendor_key`` identifies it in later ``tool_args``."""
        index = self._tools.setdefault(vendor_key, len(self._tools))
        call = {"index": index, "id": call_id, "type": "function",
                "function": {"name": name, "arguments": arguments}}
        return self._role() + [self._chunk({"tool_calls": [call]})]

    def tool_args(self, vendor_key: Any, fragment: str) -> list[StreamChunk]:
        if not fragment or vendor_key not in self._tools:
            return []
        call = {"index": self._tools[vendor_key], "function": {"arguments": fragment}}
        return [self._chunk({"tool_calls": [call]})]

    @property
    def tool_count(self) -> int:
        return len(self._tools)

    def finish(self, reason: str, usage: dict[str, Any] | None) -> list[StreamChunk]:
        """The finish chunk (S-4) and, if asked for, the usage chunk (S-5)."""
        if self._finished:
            return []
        self._finished = True
        out = self._role() + [self._chunk({}, reason)]
        if self.ctx.include_usage:
            out.append(StreamChunk(b"data: " + self._prefix + b"[]" + b',"usage":'
                                   + dumps(usage or usage_object()) + b"}\n\n"))
        return out
