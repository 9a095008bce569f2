"""Cohere v2 chat (``engine: cohere``): OpenAI chat request in, OpenAI answer out.

The protocol rules are in docs/vendor-rules.md, "Cohere".

Theory of operation
-------------------
``build_exchange`` is a pure function of the OpenAI request and the ``ChatContext``
(docs/vendor-rules.md, CO-1 and "Cohere request body"):

* URL (CO-1, decided here): ``<base>/v2/chat``, default base ``https://api.cohere.com``. A
  ``base_url`` whose path ends in ``/v2/chat`` is used verbatim; one ending in ``/v1/chat``
  (the original's v1 endpoint, common in old configs) is rewritten to ``/v2/chat`` on the same
  origin and path prefix; one ending in ``/v1`` or ``/v2`` gets ``/chat`` after ``/v2``; any
  other path gets ``/v2/chat`` appended. The query is kept. ``Authorization: Bearer <key>``.
* Messages: ``system``/``developer`` → ``system`` (text flattened), ``user`` → ``user``
  (a string, or ``text``/``image_url`` parts; ``detail`` dropped), ``assistant`` with tool calls
  → ``{"role":"assistant","tool_plan":<text>,"tool_calls":[…]}`` (every call kept, arguments
  as the client's JSON text, ``""`` → ``"{}"``), ``assistant`` text → ``content``, ``tool`` →
  ``{"role":"tool","tool_call_id","content"}``. Tool-call ids are sanitised injectively
  (TC-5) and every tool result must answer an earlier call (REQ-2). Assistant turns with
  neither text nor calls are dropped (Cohere refuses empty turns).
* Fields: only ``MAPPED`` fields are read (REQ-3), ``DROPPED`` documents the rest. ``top_p``/
  ``top_k`` → ``p``/``k``, ``stop`` → ``stop_sequences`` (at most 5), ``max_completion_tokens``
  wins over ``max_tokens``, ``tool_choice`` ``required``/``none`` → ``REQUIRED``/``NONE``, a
  named function → ``REQUIRED`` with ``tools`` filtered to it (approximation), ``n`` > 1 is
  refused, ``response_format`` json_object/json_schema → ``{"type":"json_object"[,
  "json_schema"]}``.

``CohereExchange.parse_body`` (docs/vendor-rules.md, "Cohere answers and streams")
concatenates ``text`` items (``thinking`` items become ``reasoning_content``), shows
``tool_plan`` as content when there are calls and no text, keeps tool calls as given and maps
the finish reason (``FINISH_REASONS``, docs/contracts.md, "Finish reasons"; ``ERROR``/
``ERROR_LIMIT`` are errors) and usage (docs/contracts.md, "Usage figures": ``tokens`` first,
``billed_units`` as fallback). ``parse_error`` (docs/vendor-rules.md, "Errors from Cohere")
keeps Cohere's ``message`` verbatim; Cohere's non-standard 498 (invalid token) and 499 (client
closed) are normalised to 401 and 502 so the retry policy treats them as a bad key and a
transient failure, with the original status kept as ``code``.

``CohereStreamDecoder`` (docs/vendor-rules.md, "Cohere answers and streams") is an
``SSEVendorDecoder``: the items completed before a framing/JSON error are returned and the
error is raised by the next call, so items and errors never depend on how the bytes were cut
(DEC-1, DEC-2). Events are decoded
by their JSON ``type`` (SSE-11); output goes only through ``ChunkWriter`` (S-1..S-8).
Tool calls are keyed by Cohere's tool-call ``index`` (separate from content indexes) and get
OpenAI indexes 0, 1, … in first-appearance order (TC-1, S-3); argument fragments are relayed
verbatim (TC-2) and a call that ended without arguments gets ``"{}"`` (TC-3). ``message-end``
is terminal (DEC-4): a finish chunk + ``StreamDone``, or ``StreamFailed`` for ``ERROR``/
``ERROR_LIMIT``; anything after it, ``[DONE]`` included, is ignored. EOF before it is a
``truncated`` failure (DEC-5).
"""

from __future__ import annotations

import re
from typing import Any, TypeGuard
from urllib.parse import urlsplit, urlunsplit

from ..errors import DecodeError, UpstreamError
from ..jsonutil import dumps, loads_strict
from ..request import ChatRequest, original_of
from ..streams import SSEEvent
from .base import (ChatContext, SSEVendorDecoder, StreamDone, StreamFailed, StreamItem,
                   UpstreamRequest, error_from_body)
from .chunks import ChunkWriter, completion, usage_object
from .openai import merge_headers
from .toolkit import ID_OK, as_dict as _dict, as_str as _str, bad as _bad, call_id, clean_id
from .toolkit import count as _count, retry_after, status_error, status_type, typed as _is

__all__ = ["DEFAULT_BASE", "MAPPED", "DROPPED", "FINISH_REASONS", "MAX_STOP_SEQUENCES",
           "chat_url", "build_exchange", "CohereExchange", "CohereStreamDecoder"]

DEFAULT_BASE = "https://api.cohere.com"
MAX_STOP_SEQUENCES = 5

#: OpenAI field -> Cohere v2 field for plain numbers/values (docs/vendor-rules.md,
#: "Cohere request body")
_SAMPLING: dict[str, tuple[str, tuple[type, ...]]] = {
    "temperature": ("temperature", (int, float)), "top_p": ("p", (int, float)),
    "top_k": ("k", (int,)), "seed": ("seed", (int,)),
    "frequency_penalty": ("frequency_penalty", (int, float)),
    "presence_penalty": ("presence_penalty", (int, float)),
    "logprobs": ("logprobs", (bool,)),
}
#: every OpenAI field this translator reads (REQ-3)
MAPPED = frozenset({"model", "messages", "tools", "tool_choice", "max_tokens",
                    "max_completion_tokens", "stop", "response_format", "stream", "n",
                    *_SAMPLING})
#: fields left out on purpose, with the reason (any other field is dropped too)
DROPPED: dict[str, str] = {
    "stream_options": "include_usage is the gateway's; Cohere always reports usage",
    "logit_bias": "no Cohere field", "user": "no Cohere field",
    "parallel_tool_calls": "Cohere decides", "top_logprobs": "no Cohere field",
    "store": "OpenAI only", "metadata": "OpenAI only", "service_tier": "OpenAI only",
    "reasoning_effort": "Cohere's thinking config is not mapped",
}
#: Cohere finish_reason (upper-cased) -> OpenAI; ERROR/ERROR_LIMIT are errors
#: (docs/contracts.md, "Finish reasons")
FINISH_REASONS: dict[str, str] = {"COMPLETE": "stop", "STOP_SEQUENCE": "stop",
                                  "MAX_TOKENS": "length", "TOOL_CALL": "tool_calls",
                                  "CONTENT_BLOCKED": "content_filter"}
_ERROR_FINISH = frozenset({"ERROR", "ERROR_LIMIT"})
_TOOL_CHOICE: dict[str, str | None] = {"auto": None, "required": "REQUIRED", "none": "NONE"}
#: Cohere's non-standard statuses -> the standard status the retry table (routing/retry.py)
#: understands
#: (docs/vendor-rules.md, "Errors from Cohere")
_STATUS_ALIASES: dict[int, int] = {498: 401, 499: 502}
_NAME_OK = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")  # TC-6 (OpenAI's rule; Cohere's is looser)


# -- small helpers -----------------------------------------------------------------------------








# -- request -----------------------------------------------------------------------------------


def chat_url(base_url: str | None) -> str:
    """The v2 chat URL for any accepted ``base_url`` form (CO-1; see the module docstring)."""
    if not base_url:
        return DEFAULT_BASE + "/v2/chat"
    try:
        parts = urlsplit(base_url)
    except ValueError:  # not a URL at all: the transport will say so
        return base_url
    path = parts.path.rstrip("/")
    if path.endswith("/v2/chat"):
        return base_url
    if path.endswith("/v1/chat"):
        path = path[: -len("/v1/chat")] + "/v2/chat"
    elif path.endswith(("/v1", "/v2")):
        path = path[:-3] + "/v2/chat"
    else:
        path += "/v2/chat"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _texts(content: Any, where: str) -> str:
    """A system/assistant/tool content (string or text parts) as one string (O-6)."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise _bad(f"{where}.content must be a string or a list of parts")
    out = []
    for p in content:
        text = p.get("text", p.get("refusal")) if isinstance(p, dict) else None
        if not isinstance(text, str) or p.get("type") not in ("text", "refusal"):
            raise _bad(f"{where}.content may only hold text parts here")
        out.append(text)
    return "".join(out)


def _user_content(content: Any, where: str) -> str | list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise _bad(f"{where}.content must be a string or a list of parts")
    parts: list[dict[str, Any]] = []
    for j, p in enumerate(content):
        kind = p.get("type") if isinstance(p, dict) else None
        if kind == "text" and isinstance(p.get("text"), str):
            if p["text"]:
                parts.append({"type": "text", "text": p["text"]})
        elif kind == "image_url":
            image = p.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str) or not url:
                raise _bad(f"{where}.content[{j}].image_url.url must be a string")
            parts.append({"type": "image_url", "image_url": {"url": url}})  # detail dropped
        else:
            raise _bad(f"{where}.content[{j}]: part type {kind!r} is not supported by cohere")
    return parts


class _Ids:
    """Injective history id map (TC-5): valid ids stay, others are cleaned (+hash on clash)."""

    def __init__(self, messages: list[Any]) -> None:
        raw = [c["id"] for m in messages if isinstance(m, dict)
               for c in (m["tool_calls"] if isinstance(m.get("tool_calls"), list) else [])
               if isinstance(c, dict) and isinstance(c.get("id"), str)]
        self.used = {i for i in raw if ID_OK.match(i)}
        self.map: dict[str, str] = {}

    def __call__(self, vid: str) -> str:
        if vid in self.map:
            return self.map[vid]
        if vid in self.used:
            self.map[vid] = vid
            return vid
        clean = self.map[vid] = clean_id(vid, self.used, limit=40, errors="replace")
        return clean


def _arguments(raw: Any, where: str) -> str:
    """The client's arguments text, checked to be a JSON object (REQ-2); ``""`` -> ``{}``."""
    if raw is None or raw == "":
        return "{}"
    if isinstance(raw, dict):
        return dumps(raw).decode()
    if not isinstance(raw, str):
        raise _bad(f"{where}.function.arguments must be a JSON object text")
    try:
        value = loads_strict(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise _bad(f"{where}.function.arguments must be a JSON object text", "invalid_arguments")
    return raw


def _messages(messages: list[Any]) -> list[dict[str, Any]]:
    """OpenAI messages -> Cohere v2 messages (docs/vendor-rules.md, "Cohere request body";
    REQ-2, TC-5)."""
    ids = _Ids(messages)
    calls: set[str] = set()
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _bad(f"{where} must be an object")
        role = m.get("role")
        if role in ("system", "developer"):
            out.append({"role": "system", "content": _texts(m.get("content"), where)})
        elif role == "user":
            out.append({"role": "user", "content": _user_content(m.get("content"), where)})
        elif role == "assistant":
            text = _texts(m.get("content"), where)
            tcs = m.get("tool_calls")
            if tcs is not None and not isinstance(tcs, list):
                raise _bad(f"{where}.tool_calls must be a list")
            converted = []
            for j, tc in enumerate(tcs or []):
                w = f"{where}.tool_calls[{j}]"
                fn = tc.get("function") if isinstance(tc, dict) else None
                if not isinstance(fn, dict) or not isinstance(tc.get("id"), str) or not tc["id"]:
                    raise _bad(f"{w} needs an 'id' and a 'function'")
                name = fn.get("name")
                if not isinstance(name, str) or not _NAME_OK.match(name):
                    raise _bad(f"{w}: tool name {name!r} is not accepted by cohere",
                               "invalid_tool_name")
                calls.add(tc["id"])
                converted.append({"id": ids(tc["id"]), "type": "function",
                                  "function": {"name": name,
                                               "arguments": _arguments(fn.get("arguments"), w)}})
            if converted:
                msg: dict[str, Any] = {"role": "assistant"}
                if text:
                    msg["tool_plan"] = text
                msg["tool_calls"] = converted
                out.append(msg)
            elif text:
                out.append({"role": "assistant", "content": text})
        elif role == "tool":
            tid = m.get("tool_call_id")
            if not isinstance(tid, str) or tid not in calls:
                raise _bad(f"{where}.tool_call_id {tid!r} does not name an earlier assistant "
                           "tool call", "invalid_tool_call_id")
            out.append({"role": "tool", "tool_call_id": ids(tid),
                        "content": _texts(m.get("content"), where)})
        else:
            raise _bad(f"{where}.role {role!r} is not supported")
    if not any(m["role"] != "system" for m in out):
        raise _bad("the request has no user, assistant or tool message for cohere")
    return out


def _tools(req: dict[str, Any]) -> list[dict[str, Any]]:
    tools = req.get("tools")
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise _bad("'tools' must be a list")
    out = []
    for j, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) and t.get("type", "function") == "function" \
            else None
        if not isinstance(fn, dict):
            raise _bad(f"tools[{j}] must be a function tool")
        name = fn.get("name")
        if not isinstance(name, str) or not _NAME_OK.match(name):
            raise _bad(f"tools[{j}]: tool name {name!r} is not accepted by cohere",
                       "invalid_tool_name")
        f: dict[str, Any] = {"name": name}
        if isinstance(fn.get("description"), str):
            f["description"] = fn["description"]
        params = fn.get("parameters")
        f["parameters"] = params if isinstance(params, dict) else \
            {"type": "object", "properties": {}}
        out.append({"type": "function", "function": f})
    return out


def _tool_choice(req: dict[str, Any], tools: list[dict[str, Any]]
                 ) -> tuple[str | None, list[dict[str, Any]]]:
    choice = req.get("tool_choice")
    if choice is None:
        return None, tools
    if isinstance(choice, str) and choice in _TOOL_CHOICE:
        return _TOOL_CHOICE[choice], tools
    fn = _dict(_dict(choice).get("function"))
    name = fn.get("name")
    if _dict(choice).get("type") == "function" and isinstance(name, str):
        kept = [t for t in tools if t["function"]["name"] == name]
        if not kept:
            raise _bad(f"tool_choice names {name!r}, which is not in 'tools'", "invalid_value")
        return "REQUIRED", kept  # approximation (docs/vendor-rules.md, "Cohere request body")
    raise _bad("'tool_choice' must be 'auto', 'none', 'required' or a named function",
               "invalid_value")


def _response_format(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    kind = _dict(value).get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = _dict(_dict(value).get("json_schema")).get("schema")
        out: dict[str, Any] = {"type": "json_object"}
        if isinstance(schema, dict):
            out["json_schema"] = schema
        return out
    raise _bad("'response_format.type' must be text, json_object or json_schema",
               "invalid_value")


def build_exchange(chat: ChatRequest | dict[str, Any], ctx: ChatContext) -> CohereExchange:
    """The Cohere v2 chat request for one attempt (docs/vendor-rules.md, CO-1 and "Cohere
    request body"). Raises ``ClientError`` (400) for requests Cohere cannot take. Not yet built
    from the request model: a ``ChatRequest`` is read through its ``original`` dict
    (docs/architecture.md, "The request model")."""
    req = original_of(chat)
    if not isinstance(req, dict):
        raise _bad("the request must be a JSON object")
    messages = req.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty list")
    n = req.get("n")
    if n is not None and (not _is(n, (int,)) or n != 1):
        raise _bad("'n' other than 1 is not supported by cohere", "unsupported_parameter")
    body: dict[str, Any] = {"model": ctx.upstream_model, "messages": _messages(messages)}
    tools = _tools(req)
    choice, tools = _tool_choice(req, tools)
    if tools:
        body["tools"] = tools
    if choice is not None:
        body["tool_choice"] = choice
    for key, (name, types) in _SAMPLING.items():
        value = req.get(key)
        if value is None:
            continue
        if not _is(value, types):
            raise _bad(f"'{key}' has the wrong type", "invalid_value")
        body[name] = value
    max_tokens = req.get("max_completion_tokens", req.get("max_tokens"))
    if max_tokens is None:
        max_tokens = req.get("max_tokens")
    if max_tokens is not None:
        if not _is(max_tokens, (int,)) or max_tokens < 1:
            raise _bad("'max_tokens' must be a positive integer", "invalid_value")
        body["max_tokens"] = max_tokens
    stop = req.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _bad("'stop' must be a string or a list of strings", "invalid_value")
        if len(stops) > MAX_STOP_SEQUENCES:
            raise _bad(f"cohere accepts at most {MAX_STOP_SEQUENCES} stop sequences",
                       "invalid_value")
        if stops:
            body["stop_sequences"] = stops
    fmt = _response_format(req.get("response_format"))
    if fmt is not None:
        body["response_format"] = fmt
    body["stream"] = bool(ctx.stream)
    headers = [("content-type", "application/json"),
               ("accept", "text/event-stream" if ctx.stream else "application/json")]
    if ctx.api_key:
        headers.insert(0, ("authorization", f"Bearer {ctx.api_key}"))
    try:
        data = dumps(body)
    except (ValueError, RecursionError):  # 1e999 or nesting from the client's JSON
        raise _bad("the request holds numbers or nesting that cannot be sent as JSON") from None
    request = UpstreamRequest("POST", chat_url(ctx.provider.base_url),
                              merge_headers(headers, ctx.provider.preferences.headers), data)
    return CohereExchange(request, ctx)


# -- responses ---------------------------------------------------------------------------------


def _usage(raw: Any) -> dict[str, Any]:
    """Cohere usage -> OpenAI usage (docs/contracts.md, "Usage figures"): ``tokens`` first,
    ``billed_units`` as fallback."""
    tokens, billed = _dict(_dict(raw).get("tokens")), _dict(_dict(raw).get("billed_units"))

    def pick(key: str) -> int:
        v = _count(tokens.get(key))
        if v is None:
            v = _count(billed.get(key))
        return v or 0
    return usage_object(pick("input_tokens"), pick("output_tokens"))


def _finish(value: Any, tools: bool) -> str:
    """docs/contracts.md, "Finish reasons", case-insensitive; unknown/missing -> stop, and
    stop with calls -> tool_calls."""
    reason = FINISH_REASONS.get(value.upper(), "stop") if isinstance(value, str) else "stop"
    return "tool_calls" if reason == "stop" and tools else reason


def _is_error_finish(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and value.upper() in _ERROR_FINISH


def _error(status: int, headers: tuple[tuple[str, str], ...], message: str) -> UpstreamError:
    """A Cohere error (docs/vendor-rules.md, "Errors from Cohere"; docs/contracts.md, "Error
    status mapping"): status normalised, message verbatim, code = status."""
    code = str(status)
    status = _STATUS_ALIASES.get(status, status)
    return status_error(message, status, status_type(status), code, retry_after(headers))


def _finish_error(reason: str) -> UpstreamError:
    """``finish_reason`` ERROR/ERROR_LIMIT (docs/contracts.md, "Finish reasons";
    docs/vendor-rules.md, "Errors from Cohere")."""
    limit = reason.upper() == "ERROR_LIMIT"
    return status_error(f"cohere ended the answer with finish_reason {reason}",
                        429 if limit else 500, "rate_limit_error" if limit else "server_error",
                        reason.upper())


class CohereExchange:
    """One attempt against Cohere v2 chat: the request and how to read its answers."""

    def __init__(self, request: UpstreamRequest, ctx: ChatContext) -> None:
        self.request = request
        self.ctx = ctx

    def parse_body(self, status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> bytes:
        """A v2 chat response -> ``chat.completion`` bytes (docs/vendor-rules.md, "Cohere
        answers and streams"); error bodies raise (ERR-4)."""
        try:
            obj = loads_strict(body)
        except ValueError:
            raise UpstreamError("cohere answered with a body that is not JSON", kind="decode",
                                upstream_status=status) from None
        if not isinstance(obj, dict):
            raise UpstreamError("cohere answered with JSON that is not an object",
                                kind="decode", upstream_status=status)
        if isinstance(obj.get("message"), str) or obj.get("error"):  # an error object
            raise self.parse_error(status if status >= 400 else 502, headers, body)
        message = obj.get("message")
        if not isinstance(message, dict):
            raise UpstreamError("cohere answered without a message", kind="protocol",
                                upstream_status=status)
        if _is_error_finish(obj.get("finish_reason")):
            raise _finish_error(obj["finish_reason"])
        texts, thoughts = [], []
        content = message.get("content")
        for item in content if isinstance(content, list) else []:
            item = _dict(item)
            if item.get("type") == "text":
                texts.append(_str(item.get("text")))
            elif item.get("type") == "thinking":
                thoughts.append(_str(item.get("thinking")))
        if isinstance(content, str):
            texts.append(content)
        calls: list[dict[str, Any]] = []
        raw_calls = message.get("tool_calls")
        for tc in raw_calls if isinstance(raw_calls, list) else []:
            tc = _dict(tc)
            fn = _dict(tc.get("function"))
            args = fn.get("arguments")
            if not isinstance(args, str):
                args = "" if args is None else dumps(args).decode()
            calls.append({"id": call_id(self.ctx, tc.get("id"), len(calls)),
                          "name": _str(fn.get("name")), "arguments": args or "{}"})
        text = "".join(texts)
        if calls and not text:
            text = _str(message.get("tool_plan"))
        return completion(self.ctx, content=text, reasoning="".join(thoughts),
                          tool_calls=calls or None,
                          finish_reason=_finish(obj.get("finish_reason"), bool(calls)),
                          usage=_usage(obj.get("usage")))

    def parse_error(self, status: int, headers: tuple[tuple[str, str], ...],
                    body: bytes) -> UpstreamError:
        """Cohere ``{"id", "message"}`` -> ``UpstreamError`` (docs/vendor-rules.md, "Errors
        from Cohere"); other shapes via the base."""
        try:
            obj = loads_strict(body[:65536]) if body else None
        except ValueError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("message"), str) and obj["message"]:
            return _error(status, headers, obj["message"])
        base = error_from_body(_STATUS_ALIASES.get(status, status), headers, body, obj)
        if status in _STATUS_ALIASES:
            base.code = str(status)
        return base

    def stream_decoder(self) -> CohereStreamDecoder:
        """A fresh decoder for this attempt's SSE body."""
        return CohereStreamDecoder(self.ctx)


class _Call:
    __slots__ = ("args", "ended")

    def __init__(self) -> None:
        self.args = False
        self.ended = False


class CohereStreamDecoder(SSEVendorDecoder):
    """Cohere v2 SSE bytes -> OpenAI chunks, split-invariant (docs/vendor-rules.md, "Cohere
    answers and streams"; see the module docstring).

    ``usage`` is the OpenAI usage from ``message-end`` (``None`` until then).
    """

    def __init__(self, ctx: ChatContext) -> None:
        super().__init__()
        self.ctx = ctx
        self._writer = ChunkWriter(ctx)
        self._kinds: dict[int, str] = {}  # content index -> "text" | "thinking"
        self._calls: dict[Any, _Call] = {}  # Cohere tool-call key -> state
        self.usage: dict[str, Any] | None = None

    def _eof(self) -> list[StreamItem]:
        return [StreamFailed(UpstreamError("cohere stream ended before message-end",
                                           kind="truncated"))]

    def _event(self, ev: SSEEvent) -> list[StreamItem]:
        if not ev.data.strip() or ev.data == "[DONE]":
            return []  # [DONE] is tolerated, never required (docs/vendor-rules.md, Cohere)
        try:
            obj = loads_strict(ev.data)
        except ValueError:
            raise DecodeError("invalid_json", "a cohere event is not JSON") from None
        if not isinstance(obj, dict):
            raise DecodeError("invalid_json", "a cohere event is not a JSON object")
        kind = obj.get("type", ev.event)  # SSE-11: trust the JSON type
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        return handler(self, obj) if handler is not None else []  # debug, citations, new

    @staticmethod
    def _delta(obj: dict[str, Any]) -> dict[str, Any]:
        return _dict(_dict(obj.get("delta")).get("message"))

    def _message_start(self, obj: dict[str, Any]) -> list[StreamItem]:
        return list(self._writer.start())  # S-1: the role chunk goes with the first body

    def _content_start(self, obj: dict[str, Any]) -> list[StreamItem]:
        content = _dict(self._delta(obj).get("content"))
        kind = "thinking" if content.get("type") == "thinking" else "text"
        index = _count(obj.get("index"))
        if index is not None:
            self._kinds[index] = kind
        return self._content(content, kind)

    def _content_delta(self, obj: dict[str, Any]) -> list[StreamItem]:
        index = _count(obj.get("index"))
        kind = self._kinds.get(index, "text") if index is not None else "text"
        return self._content(_dict(self._delta(obj).get("content")), kind)

    def _content(self, content: dict[str, Any], kind: str) -> list[StreamItem]:
        if isinstance(content.get("thinking"), str):
            return list(self._writer.reasoning(content["thinking"]))
        text = _str(content.get("text"))
        emit = self._writer.reasoning if kind == "thinking" else self._writer.text
        return list(emit(text))  # S-7: "" gives nothing

    def _tool_plan(self, obj: dict[str, Any]) -> list[StreamItem]:
        return list(self._writer.text(_str(self._delta(obj).get("tool_plan"))))

    def _key(self, obj: dict[str, Any]) -> Any:
        index = obj.get("index")
        return index if _count(index) is not None else None

    def _tool_start(self, obj: dict[str, Any]) -> list[StreamItem]:
        key = self._key(obj)
        if key is None:
            key = ("unindexed", len(self._calls))
        if key in self._calls:
            return []  # a repeated start would break S-2; its deltas still count
        tc = _dict(self._delta(obj).get("tool_calls"))
        fn = _dict(tc.get("function"))
        args = _str(fn.get("arguments"))
        state = self._calls[key] = _Call()
        state.args = bool(args)
        cid = call_id(self.ctx, tc.get("id"), self._writer.tool_count)
        return list(self._writer.tool_start(key, cid, _str(fn.get("name")), args))

    def _tool_delta(self, obj: dict[str, Any]) -> list[StreamItem]:
        key = self._key(obj)
        state = self._calls.get(key)
        if state is None or state.ended:
            return []
        fragment = _str(_dict(_dict(self._delta(obj).get("tool_calls")).get("function"))
                        .get("arguments"))
        state.args = state.args or bool(fragment)
        return list(self._writer.tool_args(key, fragment))

    def _tool_end(self, obj: dict[str, Any]) -> list[StreamItem]:
        key = self._key(obj)
        state = self._calls.get(key)
        return self._end_call(key, state) if state is not None else []

    def _end_call(self, key: Any, state: _Call) -> list[StreamItem]:
        if state.ended:
            return []
        state.ended = True
        return [] if state.args else list(self._writer.tool_args(key, "{}"))  # TC-3

    def _message_end(self, obj: dict[str, Any]) -> list[StreamItem]:
        self._done = True
        delta = _dict(obj.get("delta"))
        reason = delta.get("finish_reason")
        if isinstance(delta.get("usage"), dict):
            self.usage = _usage(delta["usage"])
        if _is_error_finish(reason):
            return [StreamFailed(_finish_error(reason))]
        out: list[StreamItem] = []
        for key, state in self._calls.items():  # calls never ended: TC-3 still applies
            out += self._end_call(key, state)
        out += self._writer.finish(_finish(reason, self._writer.tool_count > 0), self.usage)
        out.append(StreamDone(self.usage))
        return out


_HANDLERS = {
    "message-start": CohereStreamDecoder._message_start,
    "content-start": CohereStreamDecoder._content_start,
    "content-delta": CohereStreamDecoder._content_delta,
    "tool-plan-delta": CohereStreamDecoder._tool_plan,
    "tool-call-start": CohereStreamDecoder._tool_start,
    "tool-call-delta": CohereStreamDecoder._tool_delta,
    "tool-call-end": CohereStreamDecoder._tool_end,
    "message-end": CohereStreamDecoder._message_end,
    # content-end, citation-start/end, debug and unknown types: nothing to do
    # (docs/vendor-rules.md, "Cohere answers and streams")
}
