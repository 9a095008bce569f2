"""The Anthropic Messages front (``POST /v1/messages``), translation only: no I/O.

A Messages request becomes an OpenAI chat request (``chat_request_from_messages``), which the
gateway routes like any other; the OpenAI answer comes back as an Anthropic ``message``
(``messages_response_from_chat``) or, streamed, as Anthropic's event stream
(``MessagesStream``, fed the ``StreamChunk`` bytes the vendors' decoders produce).

What does not survive the trip (the native Anthropic path keeps all of it):

- ``cache_control`` anywhere is dropped.
- ``thinking`` and ``redacted_thinking`` blocks of assistant history are dropped: their
  signatures only mean something to Anthropic itself. An assistant turn left with neither
  text nor tool calls is left out.
- ``top_k`` is passed as ``top_k`` (the request model knows it; OpenAI-compatible upstreams
  receive it as sent, and some of them refuse unknown fields).
- A ``document`` with a ``url`` source becomes a chat ``file`` part with uniapi's
  ``file_url`` (the gateway fetches it for upstreams that need the bytes; Anthropic takes the
  URL itself), one with a ``file`` source a ``file`` part with its ``file_id`` (only an
  upstream whose Files API issued the id can read it). A ``content`` source or a base64
  source that is not a PDF, server tools (``web_search_…``, ``bash_…``, ``text_editor_…``, any ``type`` but
  ``custom``), server-tool blocks (``server_tool_use``, ``web_search_tool_result``…),
  ``search_result`` and ``container_upload`` blocks and ``mcp_servers`` are refused with a
  400 naming the JSON path: OpenAI chat has no way to say them.
- Several text blocks of one user turn (or of one system prompt, or of one tool result) are
  joined with a blank line into one string; ``citations`` and a document's ``context`` are
  dropped.
- A ``tool_result`` becomes an OpenAI ``tool`` message placed before the rest of its user
  turn; ``is_error: true`` prefixes its text with ``"Error: "``. Images inside tool results
  travel in one user message after the tool messages, ahead of the turn's own content.
- ``thinking.budget_tokens`` becomes a ``reasoning_effort`` (< 4096 low, < 16384 medium,
  else high; ``adaptive`` medium); ``output_config.effort`` wins (``max`` → high).
- Unknown top-level fields (``service_tier``, ``container``, ``context_management``…) are
  ignored.
- A last assistant turn (Anthropic's prefill) is sent as the last assistant message; whether
  the answer continues it depends on the upstream.

On the answer side: the model name is the one the client asked for; ``stop_reason`` is
``end_turn`` for every OpenAI ``stop`` (OpenAI does not say whether a stop sequence ended the
answer, so ``stop_sequence`` is always null), ``tool_use`` also when tool calls came with a
``stop``; thinking blocks carry an empty ``signature`` (and the stream sends no
``signature_delta``: the SDK keeps the block's empty signature); a tool call whose arguments
are not a JSON object has ``input: {}`` in a whole answer (the stream forwards the text as
it came); only the first choice is translated.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from ..errors import ClientError
from ..jsonutil import dumps
from .chatstream import chat_chunks
from .common import url_filename
from .common import arguments_object as _input, bad as _bad, digest62 as _digest, \
    first_choice, is_num as _is_num, obj as _obj, reasoning_of as _reasoning, string as _str

__all__ = [
    "MessagesCall",
    "MessagesStream",
    "anthropic_error_body",
    "chat_request_from_messages",
    "error_type_for",
    "estimate_input_tokens",
    "message_id",
    "messages_response_from_chat",
]


# -- request -----------------------------------------------------------------------------------

@attrs.frozen
class MessagesCall:
    """A translated Messages request: ``chat`` is the OpenAI chat request to route, ``model``
    the name the client asked for (what the answer says), ``stream`` whether it streams."""

    chat: dict[str, Any]
    model: str
    stream: bool


def _texts(content: Any, path: str) -> str:
    """A string, or a list of text blocks joined with a blank line."""
    if type(content) is str:
        return content
    if type(content) is not list:
        raise _bad(path, "expected a string or a list of text blocks")
    out = []
    for i, block in enumerate(content):
        where = f"{path}[{i}]"
        block = _obj(block, where)
        if block.get("type") != "text":
            raise _bad(f"{where}.type", f"expected 'text', got {block.get('type')!r}")
        out.append(_str(block, "text", where) or "")
    return "\n\n".join(out)


def _image(block: dict[str, Any], path: str) -> dict[str, Any]:
    source = _obj(block.get("source"), f"{path}.source")
    kind = source.get("type")
    if kind == "base64":
        media = _str(source, "media_type", f"{path}.source")
        data = _str(source, "data", f"{path}.source")
        return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}
    if kind == "url":
        return {"type": "image_url", "image_url": {"url": _str(source, "url",
                                                               f"{path}.source")}}
    raise _bad(f"{path}.source.type", f"image source {kind!r} is not supported here "
               "(use 'base64' or 'url')")


def _document(block: dict[str, Any], path: str) -> dict[str, Any]:
    source = _obj(block.get("source"), f"{path}.source")
    kind = source.get("type")
    title = _str(block, "title", path, required=False)
    if kind == "base64":
        media = _str(source, "media_type", f"{path}.source")
        if media != "application/pdf":
            raise _bad(f"{path}.source.media_type",
                       f"base64 documents must be application/pdf, got {media!r}")
        data = _str(source, "data", f"{path}.source")
        return {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{data}",
                                         "filename": title or "document.pdf"}}
    if kind == "text":
        data = _str(source, "data", f"{path}.source") or ""
        return {"type": "text", "text": f"{title}\n\n{data}" if title else data}
    if kind == "url":
        url = _str(source, "url", f"{path}.source") or ""
        if not url.lower().startswith(("http://", "https://")):
            raise _bad(f"{path}.source.url", "expected an http(s) URL")
        return {"type": "file", "file": {"file_url": url,
                                         "filename": title or url_filename(url)}}
    if kind == "file":
        file_id = _str(source, "file_id", f"{path}.source") or ""
        spec = {"file_id": file_id}
        if title:
            spec["filename"] = title
        return {"type": "file", "file": spec}
    raise _bad(f"{path}.source.type", f"document source {kind!r} is not supported here")


def _tool_result(block: dict[str, Any], path: str) -> tuple[dict[str, Any],
                                                             list[dict[str, Any]]]:
    """The ``tool`` message and the image parts the result carried."""
    tid = _str(block, "tool_use_id", path) or ""
    content = block.get("content")
    images: list[dict[str, Any]] = []
    if content is None:
        text = ""
    elif type(content) is str:
        text = content
    elif type(content) is list:
        texts = []
        for j, item in enumerate(content):
            where = f"{path}.content[{j}]"
            item = _obj(item, where)
            kind = item.get("type")
            if kind == "text":
                texts.append(_str(item, "text", where) or "")
            elif kind == "image":
                images.append(_image(item, where))
            else:
                raise _bad(f"{where}.type", f"block type {kind!r} is not supported in a "
                           "tool_result here")
        text = "\n\n".join(texts)
    else:
        raise _bad(f"{path}.content", "expected a string or a list of blocks")
    is_error = block.get("is_error")
    if is_error is not None and type(is_error) is not bool:
        raise _bad(f"{path}.is_error", "expected a boolean")
    if is_error:
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": tid, "content": text}, images


def _user_turn(content: Any, path: str) -> list[dict[str, Any]]:
    if type(content) is str:
        return [{"role": "user", "content": content}]
    if type(content) is not list:
        raise _bad(f"{path}.content", "expected a string or a list of content blocks")
    tools: list[dict[str, Any]] = []
    tool_images: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(content):
        where = f"{path}.content[{i}]"
        block = _obj(block, where)
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": _str(block, "text", where)})
        elif kind == "image":
            parts.append(_image(block, where))
        elif kind == "document":
            parts.append(_document(block, where))
        elif kind == "tool_result":
            message, images = _tool_result(block, where)
            tools.append(message)
            tool_images.extend(images)
        else:
            raise _bad(f"{where}.type", f"block type {kind!r} is not supported in a user "
                       "turn here")
    out = tools
    parts = tool_images + parts
    if parts:
        if all(p["type"] == "text" for p in parts):
            out.append({"role": "user", "content": "\n\n".join(p["text"] for p in parts)})
        else:
            out.append({"role": "user", "content": parts})
    elif not tools:
        out.append({"role": "user", "content": ""})
    return out


def _assistant_turn(content: Any, path: str) -> list[dict[str, Any]]:
    if type(content) is str:
        return [{"role": "assistant", "content": content}]
    if type(content) is not list:
        raise _bad(f"{path}.content", "expected a string or a list of content blocks")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for i, block in enumerate(content):
        where = f"{path}.content[{i}]"
        block = _obj(block, where)
        kind = block.get("type")
        if kind == "text":
            texts.append(_str(block, "text", where) or "")
        elif kind == "tool_use":
            tid = _str(block, "id", where)
            name = _str(block, "name", where)
            args = block.get("input", {})
            if type(args) is not dict:
                raise _bad(f"{where}.input", "expected an object")
            calls.append({"id": tid, "type": "function",
                          "function": {"name": name, "arguments": dumps(args).decode("utf-8")}})
        elif kind in ("thinking", "redacted_thinking"):
            continue  # signed for Anthropic only (module docstring)
        else:
            raise _bad(f"{where}.type", f"block type {kind!r} is not supported in an "
                       "assistant turn here")
    if not texts and not calls:
        return []
    message: dict[str, Any] = {"role": "assistant", "content": "\n\n".join(texts)
                               if texts else None}
    if calls:
        message["tool_calls"] = calls
    return [message]


def _tools(raw: Any) -> list[dict[str, Any]]:
    if type(raw) is not list:
        raise _bad("tools", "expected a list")
    out = []
    for i, tool in enumerate(raw):
        where = f"tools[{i}]"
        tool = _obj(tool, where)
        kind = tool.get("type")
        if kind is not None and kind != "custom":
            raise _bad(f"{where}.type", f"server tool {kind!r} is not supported here (only "
                       "client tools with an input_schema)")
        fn: dict[str, Any] = {"name": _str(tool, "name", where)}
        desc = _str(tool, "description", where, required=False)
        if desc is not None:
            fn["description"] = desc
        fn["parameters"] = _obj(tool.get("input_schema"), f"{where}.input_schema")
        out.append({"type": "function", "function": fn})
    return out


_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "max": "high"}


def _tool_choice(raw: Any, chat: dict[str, Any]) -> None:
    choice = _obj(raw, "tool_choice")
    kind = choice.get("type")
    if kind == "auto":
        chat["tool_choice"] = "auto"
    elif kind == "any":
        chat["tool_choice"] = "required"
    elif kind == "none":
        chat["tool_choice"] = "none"
    elif kind == "tool":
        chat["tool_choice"] = {"type": "function",
                               "function": {"name": _str(choice, "name", "tool_choice")}}
    else:
        raise _bad("tool_choice.type", f"expected 'auto', 'any', 'tool' or 'none', got {kind!r}")
    parallel = choice.get("disable_parallel_tool_use")
    if parallel is not None and type(parallel) is not bool:
        raise _bad("tool_choice.disable_parallel_tool_use", "expected a boolean")
    if parallel and kind != "none":
        chat["parallel_tool_calls"] = False


def _effort(body: dict[str, Any]) -> str | None:
    effort = None
    thinking = body.get("thinking")
    if thinking is not None:
        thinking = _obj(thinking, "thinking")
        kind = thinking.get("type")
        if kind == "enabled":
            budget = thinking.get("budget_tokens")
            if type(budget) is not int or budget < 1:
                raise _bad("thinking.budget_tokens", "expected a positive integer")
            effort = "low" if budget < 4096 else "medium" if budget < 16384 else "high"
        elif kind == "adaptive":
            effort = "medium"
        elif kind != "disabled":
            raise _bad("thinking.type", f"expected 'enabled', 'adaptive' or 'disabled', got "
                       f"{kind!r}")
    config = body.get("output_config")
    if config is not None:
        config = _obj(config, "output_config")
        chosen = config.get("effort")
        if chosen is not None:
            if type(chosen) is not str or chosen not in _EFFORTS:  # a dict is unhashable
                raise _bad("output_config.effort", f"expected 'low', 'medium', 'high' or "
                           f"'max', got {chosen!r}")
            effort = _EFFORTS[chosen]
    return effort


def _response_format(body: dict[str, Any]) -> dict[str, Any] | None:
    config = body.get("output_config")
    fmt = config.get("format") if type(config) is dict else None
    if fmt is None:
        return None
    fmt = _obj(fmt, "output_config.format")
    if fmt.get("type") != "json_schema":
        raise _bad("output_config.format.type", f"expected 'json_schema', got "
                   f"{fmt.get('type')!r}")
    schema = _obj(fmt.get("schema"), "output_config.format.schema")
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": schema,
                                                   "strict": True}}


def chat_request_from_messages(body: Any) -> MessagesCall:
    """A decoded Messages request as an OpenAI chat request (module docstring for what is
    dropped). Raises ``ClientError`` (400, ``invalid_request_error``) naming the JSON path of
    the first value it cannot translate."""
    if type(body) is not dict:
        raise ClientError("request body must be a JSON object", code="invalid_json")
    model = body.get("model")
    if type(model) is not str or not model:
        raise _bad("model", "expected a non-empty string" if "model" in body
                   else "field required")
    limit = body.get("max_tokens")
    if type(limit) is not int or limit < 1:
        raise _bad("max_tokens", "expected a positive integer" if "max_tokens" in body
                   else "field required")
    turns = body.get("messages")
    if type(turns) is not list:
        raise _bad("messages", "expected a list" if "messages" in body else "field required")
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system is not None:
        text = _texts(system, "system")
        if text:
            messages.append({"role": "system", "content": text})
    for i, turn in enumerate(turns):
        where = f"messages[{i}]"
        turn = _obj(turn, where)
        role = turn.get("role")
        if "content" not in turn:
            raise _bad(f"{where}.content", "field required")
        content = turn["content"]
        if role == "user":
            messages.extend(_user_turn(content, where))
        elif role == "assistant":
            messages.extend(_assistant_turn(content, where))
        elif role == "system":
            messages.append({"role": "system", "content": _texts(content,
                                                                 f"{where}.content")})
        else:
            raise _bad(f"{where}.role", f"expected 'user', 'assistant' or 'system', got "
                       f"{role!r}")
    chat: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": limit}
    if body.get("mcp_servers"):
        raise _bad("mcp_servers", "MCP servers are not supported here")
    tools = body.get("tools")
    if tools is not None:
        chat["tools"] = _tools(tools)
    if body.get("tool_choice") is not None:
        _tool_choice(body["tool_choice"], chat)
    stops = body.get("stop_sequences")
    if stops is not None:
        if type(stops) is not list or not all(type(s) is str for s in stops):
            raise _bad("stop_sequences", "expected a list of strings")
        if stops:
            chat["stop"] = list(stops)
    for key in ("temperature", "top_p"):
        value = body.get(key)
        if value is not None:
            if not _is_num(value):
                raise _bad(key, "expected a number")
            chat[key] = value
    top_k = body.get("top_k")
    if top_k is not None:
        if type(top_k) is not int:
            raise _bad("top_k", "expected an integer")
        chat["top_k"] = top_k
    metadata = body.get("metadata")
    if metadata is not None:
        user = _str(_obj(metadata, "metadata"), "user_id", "metadata", required=False)
        if user is not None:
            chat["user"] = user
    effort = _effort(body)
    if effort is not None:
        chat["reasoning_effort"] = effort
    fmt = _response_format(body)
    if fmt is not None:
        chat["response_format"] = fmt
    stream = body.get("stream")
    if stream is not None and type(stream) is not bool:
        raise _bad("stream", "expected a boolean")
    if stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return MessagesCall(chat=chat, model=model, stream=bool(stream))


# -- ids, errors ---------------------------------------------------------------------------------

def message_id(seed: str) -> str:
    """``msg_01…`` (Anthropic's shape) derived from ``seed`` (the chat completion's id)."""
    return "msg_01" + _digest("msg", seed)


def _tool_id(seed: str, index: int) -> str:
    return "toolu_01" + _digest("toolu", seed, str(index))


_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                429: "rate_limit_error", 503: "overloaded_error", 529: "overloaded_error"}


def error_type_for(status: int) -> str:
    """Anthropic's error ``type`` for an HTTP status (other 4xx: invalid_request_error)."""
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def _error_object(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def anthropic_error_body(status: int, message: str) -> bytes:
    """The body of an Anthropic error answer: ``{"type": "error", "error": {type, message}}``."""
    return dumps(_error_object(error_type_for(status), message))


# -- whole answers -------------------------------------------------------------------------------

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                 "function_call": "tool_use", "content_filter": "refusal"}


def _stop_reason(finish: Any, tools: bool) -> str:
    reason = _STOP_REASONS.get(finish, "end_turn") if type(finish) is str else "end_turn"
    return "tool_use" if tools and reason == "end_turn" else reason


def _count(v: Any) -> int:
    return v if type(v) is int and v >= 0 else 0


def _usage(usage: Any) -> dict[str, int]:
    """OpenAI usage → Anthropic usage. The prompt counts cache reads and cache writes
    (``prompt_tokens_details.cache_write_tokens``, or a top-level ``cache_write_tokens``);
    ``input_tokens`` is what is left."""
    if type(usage) is not dict:
        usage = {}
    details = usage.get("prompt_tokens_details")
    details = details if type(details) is dict else {}
    read = _count(details.get("cached_tokens"))
    write = _count(details.get("cache_write_tokens", usage.get("cache_write_tokens")))
    prompt = _count(usage.get("prompt_tokens"))
    return {"input_tokens": max(prompt - read - write, 0),
            "output_tokens": _count(usage.get("completion_tokens")),
            "cache_read_input_tokens": read, "cache_creation_input_tokens": write}


def messages_response_from_chat(chat: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` as an Anthropic ``message`` (first choice only)."""
    choices = chat.get("choices")
    choice = choices[0] if type(choices) is list and choices and \
        type(choices[0]) is dict else {}
    message = choice.get("message")
    message = message if type(message) is dict else {}
    seed = chat.get("id")
    seed = seed if type(seed) is str else ""
    content: list[dict[str, Any]] = []
    reasoning = _reasoning(message)
    if type(reasoning) is str and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    for key in ("content", "refusal"):
        text = message.get(key)
        if type(text) is str and text:
            content.append({"type": "text", "text": text})
    calls = message.get("tool_calls")
    for i, call in enumerate(calls if type(calls) is list else ()):
        if type(call) is not dict:
            continue
        fn = call.get("function")
        fn = fn if type(fn) is dict else {}
        cid, name = call.get("id"), fn.get("name")
        content.append({"type": "tool_use",
                        "id": cid if type(cid) is str and cid else _tool_id(seed, i),
                        "name": name if type(name) is str else "",
                        "input": _input(fn.get("arguments"))})
    tools = any(b["type"] == "tool_use" for b in content)
    return {"id": message_id(seed), "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": _stop_reason(choice.get("finish_reason"), tools),
            "stop_sequence": None, "usage": _usage(chat.get("usage"))}


# -- streams -------------------------------------------------------------------------------------

def _event(obj: dict[str, Any]) -> bytes:
    return b"event: " + obj["type"].encode() + b"\ndata: " + dumps(obj) + b"\n\n"


_PING = _event({"type": "ping"})


class MessagesStream:
    """OpenAI chat-completion chunks in, Anthropic Messages events out, incrementally.

    ``feed(data)`` takes one ``StreamChunk``'s bytes (``data: {…}\\n\\n``, one or more whole
    events; blank lines, ``[DONE]``, other SSE fields and payloads that are not JSON objects
    are ignored) and returns the events they make; ``end(usage)`` closes the message,
    ``fail(status, error_type, message)`` ends it with an ``error`` event instead, ``ping()``
    is a keep-alive. Nothing comes out after ``message_stop`` or an error. ``message_start``
    goes out with the first chunk (or the first ping, or the end); its id is ``message_id`` of
    ``request_id`` when given, else of the first chunk's ``id``. Blocks follow in the order
    their content comes: thinking (``reasoning_content``, or ``reasoning``), text (``content``
    and ``refusal``), one tool_use block per tool-call index (a fragment for an index whose
    block is closed is dropped; a new ``id`` on an index already seen starts a new block).
    The last ``usage`` seen wins, ``end``'s over any chunk's. A chunk with an ``error`` object
    ends the stream like ``fail`` (its status from ``error.code`` when it is an HTTP status,
    else 500). Only the first choice is read.
    """

    def __init__(self, model: str, request_id: str | None = None) -> None:
        self.model = model
        self._request_id = request_id
        self._started = False
        self._closed = False
        self._id = ""
        self._index = -1  # the index of the open block, or of the last one
        self._open: str | None = None  # "thinking", "text", "tool" or None
        self._tool_key: tuple[int, str] | None = None  # (OpenAI index, id) of the open tool
        self._tools_seen: dict[int, str] = {}  # OpenAI tool index → its last id
        self._any_tool = False
        self._finish: Any = None
        self._usage: dict[str, Any] | None = None

    @property
    def closed(self) -> bool:
        """Whether ``message_stop`` or an error went out."""
        return self._closed

    # -- the door

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        if self._closed:
            return b""
        for chunk in chat_chunks(data):
            self._chunk(chunk, out)
            if self._closed:
                break
        return b"".join(out)

    def end(self, usage: dict[str, Any] | None = None) -> bytes:
        if self._closed:
            return b""
        out: list[bytes] = []
        if type(usage) is dict:
            self._usage = usage
        self._start(out)
        self._close_block(out)
        stop = _stop_reason(self._finish, self._any_tool)
        out.append(_event({"type": "message_delta",
                           "delta": {"stop_reason": stop, "stop_sequence": None},
                           "usage": _usage(self._usage)}))
        out.append(_event({"type": "message_stop"}))
        self._closed = True
        return b"".join(out)

    def fail(self, status: int, error_type: str, message: str) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        return _event(_error_object(error_type or error_type_for(status), message))

    def ping(self) -> bytes:
        if self._closed:
            return b""
        out: list[bytes] = []
        self._start(out)
        out.append(_PING)
        return b"".join(out)

    # -- the machine

    def _start(self, out: list[bytes], seed: Any = None) -> None:
        if self._started:
            return
        self._started = True
        if self._request_id is not None:
            seed = self._request_id
        self._id = message_id(seed if type(seed) is str else self.model)
        out.append(_event({"type": "message_start", "message": {
            "id": self._id, "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {**_usage(self._usage), "output_tokens": 0}}}))

    def _close_block(self, out: list[bytes]) -> None:
        if self._open is not None:
            out.append(_event({"type": "content_block_stop", "index": self._index}))
            self._open = None
            self._tool_key = None

    def _open_block(self, out: list[bytes], kind: str, block: dict[str, Any]) -> None:
        self._close_block(out)
        self._index += 1
        self._open = kind
        out.append(_event({"type": "content_block_start", "index": self._index,
                           "content_block": block}))

    def _delta(self, out: list[bytes], delta: dict[str, Any]) -> None:
        out.append(_event({"type": "content_block_delta", "index": self._index,
                           "delta": delta}))

    def _chunk(self, chunk: dict[str, Any], out: list[bytes]) -> None:
        error = chunk.get("error")
        if error:
            err = error if type(error) is dict else {}
            code, text = err.get("code"), err.get("message")
            status = code if type(code) is int and 400 <= code < 600 else 500
            out.append(self.fail(status, error_type_for(status),
                                 text if type(text) is str else str(error)))
            return
        usage = chunk.get("usage")
        if type(usage) is dict:
            self._usage = usage
        self._start(out, chunk.get("id"))
        for delta, finish in first_choice(chunk):
            if delta is not None:
                self._content(delta, out)
            if finish is not None:
                self._finish = finish

    def _content(self, delta: dict[str, Any], out: list[bytes]) -> None:
        reasoning = _reasoning(delta)
        if type(reasoning) is str and reasoning:
            if self._open != "thinking":
                self._open_block(out, "thinking", {"type": "thinking", "thinking": "",
                                                   "signature": ""})
            self._delta(out, {"type": "thinking_delta", "thinking": reasoning})
        for key in ("content", "refusal"):
            text = delta.get(key)
            if type(text) is str and text:
                if self._open != "text":
                    self._open_block(out, "text", {"type": "text", "text": ""})
                self._delta(out, {"type": "text_delta", "text": text})
        calls = delta.get("tool_calls")
        if type(calls) is list:
            for call in calls:
                if type(call) is dict:
                    self._tool(call, out)

    def _tool(self, call: dict[str, Any], out: list[bytes]) -> None:
        index = call.get("index", 0)
        if type(index) is not int:
            return
        cid = call.get("id")
        cid = cid if type(cid) is str and cid else None
        fn = call.get("function")
        fn = fn if type(fn) is dict else {}
        args = fn.get("arguments")
        current = self._tool_key if self._open == "tool" else None
        if current is not None and current[0] == index and (cid is None or cid == current[1]):
            pass  # more of the open call
        elif index in self._tools_seen and (cid is None or cid == self._tools_seen[index]):
            return  # a fragment of a call whose block is closed: dropped
        else:
            name = fn.get("name")
            tid = cid or _tool_id(self._id, self._index + 1)
            self._open_block(out, "tool", {"type": "tool_use", "id": tid,
                                           "name": name if type(name) is str else "",
                                           "input": {}})
            self._tool_key = (index, tid)
            self._tools_seen[index] = tid
            self._any_tool = True
        if type(args) is str and args:
            self._delta(out, {"type": "input_json_delta", "partial_json": args})


# -- count_tokens ------------------------------------------------------------------------------

#: the estimate's fixed costs, in tokens
MESSAGE_OVERHEAD = 4
TOOL_OVERHEAD = 16
IMAGE_TOKENS = 1600
DOCUMENT_TOKENS = 1600


def _chars(value: Any) -> tuple[int, int]:
    """(characters of text, fixed tokens) in a content value, tolerant of any shape."""
    if type(value) is str:
        return len(value), 0
    if type(value) is list:
        chars = fixed = 0
        for item in value:
            c, f = _chars(item)
            chars, fixed = chars + c, fixed + f
        return chars, fixed
    if type(value) is not dict:
        return 0, 0
    kind = value.get("type")
    if kind == "image":
        return 0, IMAGE_TOKENS
    if kind == "document":
        source = value.get("source")
        if type(source) is dict and source.get("type") == "text":
            return _chars(source.get("data"))[0], 0
        return 0, DOCUMENT_TOKENS
    if kind == "tool_use":
        return len(dumps(value.get("input", {}))) + len(str(value.get("name", ""))), 0
    if kind == "tool_result":
        return _chars(value.get("content"))
    if kind == "redacted_thinking":
        return 0, 0
    for key in ("text", "thinking"):
        if type(value.get(key)) is str:
            return len(value[key]), 0
    return 0, 0


def estimate_input_tokens(body: Any) -> int:
    """A deterministic estimate of a Messages request's input tokens, for
    ``/v1/messages/count_tokens``: the characters of every text (system, messages, tool
    inputs and results, text documents, tools' names, descriptions and schemas as JSON)
    divided by 4 and rounded up, plus ``MESSAGE_OVERHEAD`` per message (and for the system
    prompt), ``TOOL_OVERHEAD`` per tool, ``IMAGE_TOKENS`` per image and ``DOCUMENT_TOKENS``
    per PDF or URL document. Any shape is accepted (what it does not know counts 0)."""
    if type(body) is not dict:
        return 0
    chars = fixed = 0
    system = body.get("system")
    if system:
        c, f = _chars(system)
        chars, fixed = chars + c, fixed + f + MESSAGE_OVERHEAD
    turns = body.get("messages")
    for turn in turns if type(turns) is list else ():
        fixed += MESSAGE_OVERHEAD
        if type(turn) is dict:
            c, f = _chars(turn.get("content"))
            chars, fixed = chars + c, fixed + f
    tools = body.get("tools")
    for tool in tools if type(tools) is list else ():
        fixed += TOOL_OVERHEAD
        if type(tool) is dict:
            for key in ("name", "description"):
                if type(tool.get(key)) is str:
                    chars += len(tool[key])
            if tool.get("input_schema") is not None:
                chars += len(dumps(tool["input_schema"]))
    return math.ceil(chars / 4) + fixed
