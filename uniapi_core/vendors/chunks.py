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

import re

# typeshed's json.decoder stub does not declare ``scanstring``; the module has it at runtime
from json.decoder import scanstring  # type: ignore[attr-defined]
from json.encoder import encode_basestring
from typing import Any

from ..jsonutil import dumps
from .base import ChatContext, StreamChunk

__all__ = ["ChunkWriter", "completion", "token_count", "token_counts", "usage_object"]

_COUNT_NAME = re.compile(r"[a-z0-9_]{1,64}")


def token_count(v: Any) -> int | None:
    """A vendor's count as an integer ≥ 0, else None (missing, a bool, a negative, a string, a
    fraction, NaN). An integral float (``512.0``: Cohere's SDKs type counts as numbers) is that
    integer, so every count in a usage object is an ``int`` (U-4)."""
    if type(v) is int:
        return v if v >= 0 else None
    if type(v) is float and v.is_integer() and 0 <= v < 2 ** 63:
        return int(v)
    return None


def token_counts(obj: Any, skip: frozenset[str] = frozenset()) -> dict[str, int]:
    """The counts of a vendor's usage sub-object (``server_tool_use``, ``billed_units``,
    ``prompt_tokens_details``…) under their own names, in the vendor's order: every key of
    the form ``[a-z0-9_]{1,64}`` not in ``skip`` whose value is a count (``token_count``);
    anything else is left out (U-4)."""
    if not isinstance(obj, dict):
        return {}
    out: dict[str, int] = {}
    for key, value in obj.items():
        n = token_count(value)
        if n is not None and key not in skip and _COUNT_NAME.fullmatch(key):
            out[key] = n
    return out


def usage_object(prompt: int = 0, completion: int = 0, cached: int = 0,
                 reasoning: int = 0, *, cache_write: int | None = None,
                 prompt_details: dict[str, int] | None = None,
                 completion_details: dict[str, int] | None = None,
                 vendor: dict[str, dict[str, int]] | None = None) -> dict[str, Any]:
    """OpenAI usage with details (docs/contracts.md, "Usage figures"; U-4).

    ``total_tokens`` is ``prompt + completion``. ``cache_write`` (tokens written to the prompt
    cache, a part of ``prompt``) becomes ``prompt_tokens_details.cache_write_tokens``, OpenRouter's
    name, and is left out when ``None`` (the vendor reports no cache writes). ``prompt_details``
    and ``completion_details`` add further counts to the two detail objects (``cached_tokens``,
    ``cache_write_tokens`` and ``reasoning_tokens`` are the arguments' own); ``vendor`` adds
    top-level objects of counts that have no OpenAI field (Anthropic's ``server_tool_use``,
    Cohere's ``billed_units``). Every number is an ``int`` ≥ 0: anything else counts as 0."""
    prompt, completion = token_count(prompt) or 0, token_count(completion) or 0
    pdetails: dict[str, int] = {"cached_tokens": token_count(cached) or 0}
    if cache_write is not None:
        pdetails["cache_write_tokens"] = token_count(cache_write) or 0
    if prompt_details:
        for key, value in prompt_details.items():
            pdetails.setdefault(key, token_count(value) or 0)
    cdetails: dict[str, int] = {"reasoning_tokens": token_count(reasoning) or 0}
    if completion_details:
        for key, value in completion_details.items():
            cdetails.setdefault(key, token_count(value) or 0)
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                             "total_tokens": prompt + completion,
                             "prompt_tokens_details": pdetails,
                             "completion_tokens_details": cdetails}
    for name, counts in (vendor or {}).items():
        if counts and name not in usage:
            usage[name] = {k: token_count(v) or 0 for k, v in counts.items()}
    return usage


def completion(ctx: ChatContext, *, content: str, reasoning: str = "",
               tool_calls: list[dict[str, Any]] | None = None, finish_reason: str = "stop",
               usage: dict[str, Any] | None = None, refusal: str | None = None) -> bytes:
    """A whole ``chat.completion`` body (O-1..O-6). ``tool_calls`` items are
    ``{"id", "name", "arguments"}``. ``refusal``: the model refused, in these words (OpenAI's
    ``message.refusal``; ``content`` is then null)."""
    message: dict[str, Any] = {"role": "assistant",
                               "content": None if (refusal is not None or (tool_calls and
                                                                          not content))
                               else content,
                               "refusal": refusal}
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

    def refusal(self, text: str) -> list[StreamChunk]:
        """A piece of a refusal (OpenAI's ``delta.refusal``), the role chunk first if due."""
        if not text:
            return []
        return self._role() + [self._chunk({"refusal": text})]

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
