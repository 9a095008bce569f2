"""The OpenAI Responses front (``POST /v1/responses``), translation only: no I/O.

A Responses request becomes an OpenAI chat request (``chat_request_from_responses``), which the
gateway routes like any other; the OpenAI answer comes back as a Responses ``response`` object
(``responses_response_from_chat``) or, streamed, as the Responses event stream
(``ResponsesStream``, fed the ``StreamChunk`` bytes the vendors' decoders produce). Ids are
derived from the ``response_id`` the caller passes (``response_id(seed)`` makes one), never
drawn at random; ``created`` is the caller's clock.

What does not survive the trip:

- ``developer`` messages become ``system`` messages (every upstream knows ``system``);
  ``instructions`` is a leading system message.
- Several text parts of one user, system or developer message are joined with a blank line;
  the text parts of one assistant message are concatenated; an assistant ``refusal`` part is
  sent as text. Message ``id``, ``status`` and ``phase`` are dropped.
- ``input_file`` becomes a chat ``file`` part: ``file_data`` as it is, ``file_url`` as
  uniapi's ``file_url`` (fetched by the gateway for upstreams that need the bytes; the
  filename defaults to the URL's last path segment), ``file_id`` as the chat ``file_id`` (only
  an upstream whose Files API issued it can read it; elsewhere the channel is skipped).
- ``input_image`` with ``file_id``, ``item_reference`` items and item types other than ``message``, ``function_call``,
  ``function_call_output`` and ``reasoning`` (``custom_tool_call``, ``web_search_call``,
  ``computer_call``, ``compaction``…) are refused with a 400 naming the JSON path.
- A ``reasoning`` item's text (its ``content`` reasoning text, else its ``summary`` texts, joined
  with a blank line) becomes ``reasoning_content`` of the next assistant message (the next
  assistant ``message`` or ``function_call``); ``encrypted_content`` is dropped (it only means
  something to OpenAI); a reasoning item with no assistant message after it is dropped.
- Consecutive ``function_call`` items (and an assistant message right before them) make one
  assistant message with ``tool_calls``; ``call_id`` is the tool-call id. A
  ``function_call_output`` is a ``tool`` message (its text parts joined with a blank line);
  images and files inside it travel in one user message after the run of tool messages.
- ``function`` tools become chat function tools; a ``namespace`` tool (Codex sends its MCP
  servers' tools so) is flattened: each inner function becomes ``<namespace>__<name>`` (for
  Codex's ``mcp__server`` namespaces that is Codex's own ``mcp__server__tool`` spelling), the
  namespace's description is dropped, and calls of it come back as ``name`` + ``namespace``.
  Every other tool (``web_search``, ``web_search_preview``, ``file_search``,
  ``code_interpreter``, ``computer_use_preview``, ``image_generation``, ``mcp``,
  ``local_shell``, ``shell``, ``apply_patch``, ``custom``, ``tool_search``…, and ``custom``
  tools inside a namespace) is dropped and named in ``ResponsesCall.dropped_tools``; never a
  400. A ``tool_choice`` naming a hosted tool becomes ``auto``; ``allowed_tools`` becomes its
  ``mode`` (the allowed subset is not enforced).
- ``max_output_tokens`` is sent as ``max_completion_tokens`` (what OpenAI's reasoning models
  require); ``reasoning.effort`` as ``reasoning_effort`` (``xhigh`` and ``max`` → ``high``);
  ``text.format`` as ``response_format``. ``reasoning.summary``, ``text.verbosity``,
  ``metadata``, ``store``, ``previous_response_id``, ``truncation``, ``include``,
  ``service_tier``, ``prompt_cache_key``, ``prompt_cache_retention``, ``safety_identifier``,
  ``background``, ``max_tool_calls``, ``top_logprobs`` and ``conversation`` are not sent
  upstream (the answer echoes the ones the ``response`` object has); ``user`` is sent as
  ``user``. Other unknown top-level fields are ignored.

On the answer side: ``model`` is the name the client asked for; only the first choice is
translated; reasoning (``reasoning_content`` or ``reasoning``) becomes one ``reasoning`` item
with one summary part per run of reasoning text (shown whatever ``reasoning.summary`` says;
``encrypted_content`` is null even when ``include`` asks for it); ``finish_reason`` ``length``
is status ``incomplete`` with reason ``max_output_tokens``, ``content_filter`` reason
``content_filter``, and the item cut there has status ``incomplete``; annotations are always
empty and no ``logprobs`` are given; ``completed_at`` is not set (the core has no clock).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import attrs

from ..errors import ClientError
from ..jsonutil import dumps
from .chatstream import chat_chunks
from .common import bad as _bad, first_choice, is_num as _is_num, obj as _obj, \
    reasoning_of as _reasoning, string as _str, url_filename
from ..vendors.base import STATUS_TYPES

__all__ = [
    "ResponsesCall",
    "ResponsesStream",
    "chat_messages_from_items",
    "chat_request_from_responses",
    "output_items_of",
    "response_id",
    "responses_error_body",
    "responses_error_type",
    "responses_response_from_chat",
]

#: the separator of a flattened namespace tool name: ``<namespace>__<name>``
NAMESPACE_SEPARATOR = "__"


# -- request -----------------------------------------------------------------------------------

@attrs.frozen
class ResponsesCall:
    """A translated Responses request.

    ``chat`` is the OpenAI chat request to route; ``model`` the name the client asked for (what
    the answer says); ``stream``, ``store`` (default true) and ``previous_response_id`` as
    sent; ``input_items`` the request's ``input`` as a list of typed items (a string input is
    one user message; an item with a ``role`` and no ``type`` gets ``type: message``), for
    whoever stores conversations; ``dropped_tools`` the names (else the types) of the tools
    that were not sent upstream; ``namespaces`` each flattened tool name's
    ``(namespace, name)``; ``echo`` the request fields the ``response`` object repeats.
    """

    chat: dict[str, Any]
    model: str
    stream: bool
    store: bool = True
    previous_response_id: str | None = None
    input_items: list[dict[str, Any]] = attrs.field(factory=list)
    dropped_tools: tuple[str, ...] = ()
    namespaces: Mapping[str, tuple[str, str]] = attrs.field(factory=dict)
    echo: dict[str, Any] = attrs.field(factory=dict)

    def split_name(self, name: str) -> tuple[str, str | None]:
        """A chat tool-call name as the Responses ``(name, namespace)``: a flattened namespace
        tool's own name and namespace; a bare inner name that belongs to exactly one namespace
        (and to no top-level function: some upstreams drop the prefix) gets that namespace."""
        hit = self.namespaces.get(name)
        if hit is not None:
            return hit[1], hit[0]
        functions = {t["function"]["name"] for t in self.chat.get("tools", ())}
        if name not in functions:
            owners = {ns for ns, inner in self.namespaces.values() if inner == name}
            if len(owners) == 1:
                return name, owners.pop()
        return name, None


def _flat(namespace: str | None, name: str) -> str:
    return f"{namespace}{NAMESPACE_SEPARATOR}{name}" if namespace else name


def _image(part: dict[str, Any], path: str) -> dict[str, Any]:
    url = part.get("image_url")
    if url is None:
        if part.get("file_id") is not None:
            raise _bad(f"{path}.file_id", "uploaded files cannot be forwarded to this model "
                       "(send the image as image_url, a URL or a data URL)")
        raise _bad(f"{path}.image_url", "field required")
    if type(url) is not str:
        raise _bad(f"{path}.image_url", "expected a string")
    image: dict[str, Any] = {"url": url}
    detail = part.get("detail")
    if detail is not None:
        if detail not in ("low", "high", "auto"):
            raise _bad(f"{path}.detail", f"expected 'low', 'high' or 'auto', got {detail!r}")
        image["detail"] = detail
    return {"type": "image_url", "image_url": image}


def _file(part: dict[str, Any], path: str) -> dict[str, Any]:
    """An ``input_file`` → a chat ``file`` part: ``file_data`` (a data URL) as it is,
    ``file_url`` as uniapi's ``file_url`` (fetched by the gateway for upstreams that need the
    bytes), ``file_id`` as the chat ``file_id`` (only an upstream that issued it reads it)."""
    given = [k for k in ("file_data", "file_url", "file_id") if part.get(k) is not None]
    if len(given) != 1:
        raise _bad(path, "expected exactly one of file_data, file_url and file_id"
                   + (f", got {' and '.join(given)}" if given else ""))
    key = given[0]
    value = _str(part, key, path) or ""
    name = _str(part, "filename", path, required=False)
    if key == "file_data" and not value.startswith("data:"):
        raise _bad(f"{path}.file_data", "expected a data URL (data:<media type>;base64,…)")
    if key == "file_url":
        if not value.lower().startswith(("http://", "https://")):
            raise _bad(f"{path}.file_url", "expected an http(s) URL")
        name = name or url_filename(value)
    spec: dict[str, Any] = {key: value}
    if name is not None:
        spec["filename"] = name
    return {"type": "file", "file": spec}


def _parts(content: Any, path: str, kinds: frozenset[str]) -> list[dict[str, Any]]:
    """Chat parts of a Responses content list (``kinds``: the part types allowed here)."""
    if type(content) is not list:
        raise _bad(path, "expected a string or a list of content parts")
    out: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        where = f"{path}[{i}]"
        part = _obj(part, where)
        kind = part.get("type")
        if type(kind) is not str or kind not in kinds:  # a list or dict is unhashable
            raise _bad(f"{where}.type", f"content part {kind!r} is not supported here")
        if kind in ("input_text", "output_text"):
            out.append({"type": "text", "text": _str(part, "text", where)})
        elif kind == "refusal":
            out.append({"type": "text", "text": _str(part, "refusal", where)})
        elif kind == "input_image":
            out.append(_image(part, where))
        else:
            out.append(_file(part, where))
    return out


_USER_PARTS = frozenset({"input_text", "input_image", "input_file"})
_SYSTEM_PARTS = frozenset({"input_text"})
_ASSISTANT_PARTS = frozenset({"output_text", "refusal", "input_text"})
_OUTPUT_PARTS = frozenset({"input_text", "input_image", "input_file"})


def _user_content(content: Any, path: str, kinds: frozenset[str]) -> Any:
    if type(content) is str:
        return content
    parts = _parts(content, path, kinds)
    if all(p["type"] == "text" for p in parts):
        return "\n\n".join(p["text"] for p in parts)
    return parts


def _reasoning_text(item: dict[str, Any], path: str) -> str:
    texts: list[str] = []
    for key, kind in (("content", "reasoning_text"), ("summary", "summary_text")):
        value = item.get(key)
        if value is None:
            continue
        if type(value) is not list:
            raise _bad(f"{path}.{key}", "expected a list")
        for j, part in enumerate(value):
            where = f"{path}.{key}[{j}]"
            part = _obj(part, where)
            if part.get("type") != kind:
                raise _bad(f"{where}.type", f"expected {kind!r}, got {part.get('type')!r}")
            texts.append(_str(part, "text", where) or "")
        if texts:
            break  # the raw reasoning text wins over its summary
    return "\n\n".join(t for t in texts if t)


class _Builder:
    """The chat messages of an item list, built in order (module docstring)."""

    def __init__(self) -> None:
        self.out: list[dict[str, Any]] = []
        self.assistant: dict[str, Any] | None = None  # open: function calls may join it
        self.reasoning = ""  # for the next assistant message
        self.tool_parts: list[dict[str, Any]] = []  # images and files of tool outputs

    def flush_tools(self) -> None:
        if self.tool_parts:
            self.out.append({"role": "user", "content": self.tool_parts})
            self.tool_parts = []

    def close(self) -> None:
        self.assistant = None

    def add(self, message: dict[str, Any]) -> None:
        self.flush_tools()
        self.close()
        self.out.append(message)

    def new_assistant(self, content: Any) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if self.reasoning:
            message["reasoning_content"] = self.reasoning
            self.reasoning = ""
        self.add(message)
        self.assistant = message
        return message


def _message(item: dict[str, Any], path: str, b: _Builder) -> None:
    role = item.get("role")
    if "content" not in item:
        raise _bad(f"{path}.content", "field required")
    content = item["content"]
    if role == "user":
        b.add({"role": "user", "content": _user_content(content, f"{path}.content",
                                                         _USER_PARTS)})
    elif role in ("system", "developer"):
        b.add({"role": "system", "content": _user_content(content, f"{path}.content",
                                                           _SYSTEM_PARTS)})
    elif role == "assistant":
        if type(content) is str:
            text = content
        else:
            text = "".join(p["text"] for p in _parts(content, f"{path}.content",
                                                     _ASSISTANT_PARTS))
        b.new_assistant(text)
    else:
        raise _bad(f"{path}.role", f"expected 'user', 'assistant', 'system' or 'developer', "
                   f"got {role!r}")


def _function_call(item: dict[str, Any], path: str, b: _Builder) -> None:
    call_id = _str(item, "call_id", path) or ""
    name = _str(item, "name", path) or ""
    namespace = _str(item, "namespace", path, required=False)
    arguments = item.get("arguments", "")
    if type(arguments) is not str:
        raise _bad(f"{path}.arguments", "expected a string (JSON text)")
    message = b.assistant
    if message is None or b.tool_parts:
        message = b.new_assistant(None)
    message.setdefault("tool_calls", []).append(
        {"id": call_id, "type": "function",
         "function": {"name": _flat(namespace, name), "arguments": arguments}})


def _function_output(item: dict[str, Any], path: str, b: _Builder) -> None:
    call_id = _str(item, "call_id", path) or ""
    output = item.get("output")
    if type(output) is str:
        text = output
    elif type(output) is list:
        texts = []
        for part in _parts(output, f"{path}.output", _OUTPUT_PARTS):
            if part["type"] == "text":
                texts.append(part["text"])
            else:
                b.tool_parts.append(part)
        text = "\n\n".join(texts)
    else:
        raise _bad(f"{path}.output", "expected a string or a list of content parts"
                   if "output" in item else "field required")
    b.close()
    b.out.append({"role": "tool", "tool_call_id": call_id, "content": text})


def _typed(item: dict[str, Any]) -> str | None:
    kind = item.get("type")
    if kind is None and "role" in item:
        return "message"
    return kind if type(kind) is str else None


def chat_messages_from_items(items: list[dict[str, Any]],
                             path: str = "input") -> list[dict[str, Any]]:
    """OpenAI chat messages of Responses items: a request's ``input`` items, or stored input
    and output items put together to rebuild a conversation (``previous_response_id``). Raises
    ``ClientError`` naming ``path[i]…`` for an item it cannot translate."""
    if type(items) is not list:
        raise _bad(path, "expected a string or a list of items")
    b = _Builder()
    for i, item in enumerate(items):
        where = f"{path}[{i}]"
        item = _obj(item, where)
        kind = _typed(item)
        if kind != "function_call_output":
            b.flush_tools()
        if kind == "message":
            _message(item, where, b)
        elif kind == "function_call":
            _function_call(item, where, b)
        elif kind == "function_call_output":
            _function_output(item, where, b)
        elif kind == "reasoning":
            b.close()
            text = _reasoning_text(item, where)
            if text:
                b.reasoning = f"{b.reasoning}\n\n{text}" if b.reasoning else text
        elif kind == "item_reference":
            raise _bad(f"{where}.type", "item references are not supported here (send the "
                       "items themselves)")
        else:
            raise _bad(f"{where}.type", f"item type {item.get('type')!r} is not supported "
                       "here")
    b.flush_tools()
    return b.out


def _input_items(raw: Any) -> list[dict[str, Any]]:
    if type(raw) is str:
        return [{"type": "message", "role": "user", "content": raw}]
    if type(raw) is not list:
        raise _bad("input", "expected a string or a list of items")
    out = []
    for i, item in enumerate(raw):
        item = _obj(item, f"input[{i}]")
        if "type" not in item and "role" in item:
            item = {"type": "message", **item}
        out.append(item)
    return out


def _function_tool(tool: dict[str, Any], path: str, namespace: str | None) -> dict[str, Any]:
    name = _str(tool, "name", path) or ""
    fn: dict[str, Any] = {"name": _flat(namespace, name)}
    desc = _str(tool, "description", path, required=False)
    if desc is not None:
        fn["description"] = desc
    params = tool.get("parameters")
    if params is not None:
        fn["parameters"] = _obj(params, f"{path}.parameters")
    strict = tool.get("strict")
    if strict is not None:
        if type(strict) is not bool:
            raise _bad(f"{path}.strict", "expected a boolean")
        fn["strict"] = strict
    return {"type": "function", "function": fn}


def _tools(raw: Any) -> tuple[list[dict[str, Any]], list[str], dict[str, tuple[str, str]]]:
    """(chat tools, dropped names, flattened name → (namespace, name))."""
    if type(raw) is not list:
        raise _bad("tools", "expected a list")
    tools: list[dict[str, Any]] = []
    dropped: list[str] = []
    namespaces: dict[str, tuple[str, str]] = {}
    for i, tool in enumerate(raw):
        where = f"tools[{i}]"
        tool = _obj(tool, where)
        kind = tool.get("type")
        if kind == "function":
            tools.append(_function_tool(tool, where, None))
        elif kind == "namespace":
            ns = _str(tool, "name", where) or ""
            inner = tool.get("tools", [])
            if type(inner) is not list:
                raise _bad(f"{where}.tools", "expected a list")
            for j, sub in enumerate(inner):
                sub_where = f"{where}.tools[{j}]"
                sub = _obj(sub, sub_where)
                name = sub.get("name")
                if sub.get("type") == "function":
                    fn = _function_tool(sub, sub_where, ns)
                    tools.append(fn)
                    namespaces[fn["function"]["name"]] = (ns, sub["name"])
                else:
                    dropped.append(_flat(ns, name if type(name) is str else
                                         str(sub.get("type"))))
        else:
            label = next((tool[k] for k in ("name", "server_label")
                          if type(tool.get(k)) is str), None)
            dropped.append(label if label is not None else str(kind))
    return tools, dropped, namespaces


def _tool_choice(raw: Any, namespaces: Mapping[str, tuple[str, str]]) -> Any:
    if type(raw) is str:
        if raw not in ("auto", "none", "required"):
            raise _bad("tool_choice", f"expected 'auto', 'none', 'required' or an object, got "
                       f"{raw!r}")
        return raw
    choice = _obj(raw, "tool_choice")
    kind = choice.get("type")
    if kind == "function":
        name = _str(choice, "name", "tool_choice") or ""
        namespace = _str(choice, "namespace", "tool_choice", required=False)
        if namespace is None:
            owners = [flat for flat, (_, inner) in namespaces.items() if inner == name]
            if len(owners) == 1 and name not in namespaces:
                name = owners[0]
        else:
            name = _flat(namespace, name)
        return {"type": "function", "function": {"name": name}}
    if kind == "allowed_tools":
        mode = choice.get("mode")
        if mode not in ("auto", "required"):
            raise _bad("tool_choice.mode", f"expected 'auto' or 'required', got {mode!r}")
        return mode
    if type(kind) is not str:
        raise _bad("tool_choice.type", "expected a string" if "type" in choice
                   else "field required")
    return "auto"  # a hosted tool (dropped): the model chooses among the rest


_EFFORTS = {"none": "none", "minimal": "minimal", "low": "low", "medium": "medium",
            "high": "high", "xhigh": "high", "max": "high"}


def _response_format(text: dict[str, Any]) -> dict[str, Any] | None:
    fmt = text.get("format")
    if fmt is None:
        return None
    fmt = _obj(fmt, "text.format")
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        spec: dict[str, Any] = {"name": _str(fmt, "name", "text.format"),
                                "schema": _obj(fmt.get("schema"), "text.format.schema")}
        desc = _str(fmt, "description", "text.format", required=False)
        if desc is not None:
            spec["description"] = desc
        strict = fmt.get("strict")
        if strict is not None:
            if type(strict) is not bool:
                raise _bad("text.format.strict", "expected a boolean")
            spec["strict"] = strict
        return {"type": "json_schema", "json_schema": spec}
    raise _bad("text.format.type", f"expected 'text', 'json_object' or 'json_schema', got "
               f"{kind!r}")


#: the request fields a ``response`` object repeats as they were sent
_ECHOED = ("instructions", "tools", "tool_choice", "parallel_tool_calls", "temperature", "top_p",
           "max_output_tokens", "metadata", "text", "reasoning", "previous_response_id",
           "user", "truncation", "service_tier", "prompt_cache_key", "prompt_cache_retention",
           "safety_identifier", "background", "max_tool_calls", "top_logprobs")


def chat_request_from_responses(body: Any) -> ResponsesCall:
    """A decoded Responses request as an OpenAI chat request (module docstring for what is
    dropped). Raises ``ClientError`` (400, ``invalid_request_error``) naming the JSON path of
    the first value it cannot translate."""
    if type(body) is not dict:
        raise ClientError("request body must be a JSON object", code="invalid_json")
    model = body.get("model")
    if type(model) is not str or not model:
        raise _bad("model", "expected a non-empty string" if "model" in body
                   else "field required")
    if "input" not in body or body["input"] is None:
        raise _bad("input", "field required")
    items = _input_items(body["input"])
    messages: list[dict[str, Any]] = []
    instructions = _str(body, "instructions", "body", required=False)
    if instructions:
        messages.append({"role": "system", "content": instructions})
    messages.extend(chat_messages_from_items(items))
    chat: dict[str, Any] = {"model": model, "messages": messages}
    dropped: list[str] = []
    namespaces: dict[str, tuple[str, str]] = {}
    if body.get("tools") is not None:
        tools, dropped, namespaces = _tools(body["tools"])
        if tools:
            chat["tools"] = tools
    if body.get("tool_choice") is not None:
        choice = _tool_choice(body["tool_choice"], namespaces)
        if "tools" in chat or choice == "none":
            chat["tool_choice"] = choice
    parallel = body.get("parallel_tool_calls")
    if parallel is not None:
        if type(parallel) is not bool:
            raise _bad("parallel_tool_calls", "expected a boolean")
        if "tools" in chat:
            chat["parallel_tool_calls"] = parallel
    limit = body.get("max_output_tokens")
    if limit is not None:
        if type(limit) is not int or limit < 1:
            raise _bad("max_output_tokens", "expected a positive integer")
        chat["max_completion_tokens"] = limit
    for key in ("temperature", "top_p"):
        value = body.get(key)
        if value is not None:
            if not _is_num(value):
                raise _bad(key, "expected a number")
            chat[key] = value
    reasoning = body.get("reasoning")
    if reasoning is not None:
        reasoning = _obj(reasoning, "reasoning")
        effort = reasoning.get("effort")
        if effort is not None:
            if type(effort) is not str or effort not in _EFFORTS:  # a dict is unhashable
                raise _bad("reasoning.effort", f"expected one of {', '.join(_EFFORTS)}, got "
                           f"{effort!r}")
            chat["reasoning_effort"] = _EFFORTS[effort]
    text = body.get("text")
    if text is not None:
        fmt = _response_format(_obj(text, "text"))
        if fmt is not None:
            chat["response_format"] = fmt
    metadata = body.get("metadata")
    if metadata is not None:
        _obj(metadata, "metadata")
    user = _str(body, "user", "body", required=False)
    if user is not None:
        chat["user"] = user
    stream = body.get("stream")
    if stream is not None and type(stream) is not bool:
        raise _bad("stream", "expected a boolean")
    if stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    store = body.get("store")
    if store is not None and type(store) is not bool:
        raise _bad("store", "expected a boolean")
    previous = _str(body, "previous_response_id", "body", required=False)
    echo = {k: body[k] for k in _ECHOED if body.get(k) is not None}
    return ResponsesCall(chat=chat, model=model, stream=bool(stream), store=store is not False,
                         previous_response_id=previous, input_items=items,
                         dropped_tools=tuple(dropped), namespaces=namespaces, echo=echo)


# -- ids, errors ---------------------------------------------------------------------------------

def _digest(*parts: str, length: int = 48) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[
        :length]


def response_id(seed: str) -> str:
    """``resp_…`` (OpenAI's shape) derived from ``seed`` (the gateway's request id)."""
    return "resp_" + _digest("resp", seed)


def _item_id(prefix: str, response: str, index: int) -> str:
    return f"{prefix}_{_digest(prefix, response, str(index))}"


def responses_error_type(status: int) -> str:
    """OpenAI's error ``type`` for an HTTP status (the vendors' table; other 4xx
    ``invalid_request_error``, 5xx ``server_error``)."""
    if status in STATUS_TYPES:
        return STATUS_TYPES[status]
    return "invalid_request_error" if 400 <= status < 500 else "server_error"


def responses_error_body(status: int, message: str, code: str | int | None = None,
                         error_type: str | None = None) -> bytes:
    """The body of an error answer: OpenAI's ``{"error": {message, type, param, code}}``,
    ``type`` by ``status`` unless given."""
    return dumps({"error": {"message": message,
                            "type": error_type or responses_error_type(status),
                            "param": None, "code": code}})


def _failure_code(status: int, code: Any) -> str:
    """The ``error.code`` of a failed response: the error's own string code, else by status."""
    if type(code) is str and code:
        return code
    if status == 429:
        return "rate_limit_exceeded"
    return "invalid_prompt" if 400 <= status < 500 else "server_error"


# -- whole answers -------------------------------------------------------------------------------

def _count(v: Any) -> int:
    return v if type(v) is int and v >= 0 else 0


def _usage(usage: Any) -> dict[str, Any]:
    """OpenAI chat usage → Responses usage (absent counts are 0)."""
    if type(usage) is not dict:
        usage = {}
    pdetails = usage.get("prompt_tokens_details")
    pdetails = pdetails if type(pdetails) is dict else {}
    cdetails = usage.get("completion_tokens_details")
    cdetails = cdetails if type(cdetails) is dict else {}
    prompt, completion = _count(usage.get("prompt_tokens")), _count(
        usage.get("completion_tokens"))
    total = usage.get("total_tokens")
    return {"input_tokens": prompt,
            "input_tokens_details": {
                "cached_tokens": _count(pdetails.get("cached_tokens")),
                "cache_write_tokens": _count(pdetails.get("cache_write_tokens",
                                                          usage.get("cache_write_tokens")))},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": _count(
                cdetails.get("reasoning_tokens"))},
            "total_tokens": total if type(total) is int and total >= 0 else prompt + completion}


_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _response(call: ResponsesCall, rid: str, created: int, status: str,
              output: list[dict[str, Any]], usage: dict[str, Any] | None,
              reason: str | None = None, error: dict[str, Any] | None = None) -> dict[str, Any]:
    echo = call.echo
    reasoning = echo.get("reasoning")
    return {
        "id": rid, "object": "response", "created_at": created, "status": status,
        "background": echo.get("background", False), "error": error,
        "incomplete_details": {"reason": reason} if reason is not None else None,
        "instructions": echo.get("instructions"),
        "max_output_tokens": echo.get("max_output_tokens"),
        "max_tool_calls": echo.get("max_tool_calls"), "model": call.model, "output": output,
        "parallel_tool_calls": echo.get("parallel_tool_calls", True),
        "previous_response_id": call.previous_response_id,
        "prompt_cache_key": echo.get("prompt_cache_key"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")}
        if type(reasoning) is dict else {"effort": None, "summary": None},
        "safety_identifier": echo.get("safety_identifier"),
        "service_tier": echo.get("service_tier", "default"), "store": call.store,
        "temperature": echo.get("temperature"),
        "text": echo.get("text", {"format": {"type": "text"}}),
        "tool_choice": echo.get("tool_choice", "auto"), "tools": echo.get("tools", []),
        "top_logprobs": echo.get("top_logprobs"), "top_p": echo.get("top_p"),
        "truncation": echo.get("truncation", "disabled"), "usage": usage,
        "user": echo.get("user"), "metadata": echo.get("metadata", {}),
    }


def _call_item(call: ResponsesCall, item_id: str, call_id: str, name: str, arguments: str,
               status: str) -> dict[str, Any]:
    bare, namespace = call.split_name(name)
    item = {"id": item_id, "type": "function_call", "status": status, "arguments": arguments,
            "call_id": call_id, "name": bare}
    if namespace is not None:
        item["namespace"] = namespace
    return item


def responses_response_from_chat(chat: dict[str, Any], call: ResponsesCall, response_id: str,
                                 created: int) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` as a Responses ``response`` (first choice only)."""
    choices = chat.get("choices")
    choice = choices[0] if type(choices) is list and choices and \
        type(choices[0]) is dict else {}
    message = choice.get("message")
    message = message if type(message) is dict else {}
    output: list[dict[str, Any]] = []
    reasoning = _reasoning(message)
    if type(reasoning) is str and reasoning:
        output.append({"id": _item_id("rs", response_id, len(output)), "type": "reasoning",
                       "summary": [{"type": "summary_text", "text": reasoning}],
                       "status": "completed"})
    parts: list[dict[str, Any]] = []
    text = message.get("content")
    if type(text) is str and text:
        parts.append({"type": "output_text", "text": text, "annotations": []})
    refusal = message.get("refusal")
    if type(refusal) is str and refusal:
        parts.append({"type": "refusal", "refusal": refusal})
    if parts:
        output.append({"id": _item_id("msg", response_id, len(output)), "type": "message",
                       "status": "completed", "role": "assistant", "content": parts})
    calls = message.get("tool_calls")
    for tc in calls if type(calls) is list else ():
        if type(tc) is not dict:
            continue
        fn = tc.get("function")
        fn = fn if type(fn) is dict else {}
        cid, name, args = tc.get("id"), fn.get("name"), fn.get("arguments")
        index = len(output)
        if type(args) is not str:
            args = dumps(args).decode("utf-8") if type(args) is dict else ""
        output.append(_call_item(call, _item_id("fc", response_id, index),
                                 cid if type(cid) is str and cid else
                                 _item_id("call", response_id, index),
                                 name if type(name) is str else "", args, "completed"))
    finish = choice.get("finish_reason")
    reason = _INCOMPLETE.get(finish) if type(finish) is str else None
    if reason is not None and output:
        output[-1]["status"] = "incomplete"
    return _response(call, response_id, created, "incomplete" if reason else "completed",
                     output, _usage(chat.get("usage")), reason)


def output_items_of(response: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``output`` items of a ``response`` object (stored by whoever keeps conversations,
    to be put after its input items for ``chat_messages_from_items``); [] when it has none."""
    output = response.get("output") if type(response) is dict else None
    return [item for item in output if type(item) is dict] if type(output) is list else []


# -- streams -------------------------------------------------------------------------------------

class ResponsesStream:
    """OpenAI chat-completion chunks in, the Responses event stream out, incrementally.

    ``feed(data)`` takes one ``StreamChunk``'s bytes (``data: {…}\\n\\n``, one or more whole
    events; blank lines, ``[DONE]``, other SSE fields and payloads that are not JSON objects
    are ignored) and returns the events they make; ``end(usage)`` closes the response
    (``response.completed``, or ``response.incomplete`` when the finish reason was ``length`` or
    ``content_filter``); ``fail(status, message, code)`` ends it with ``response.failed``.
    ``response.created`` and ``response.in_progress`` go out with the first call. Every event
    carries ``sequence_number``, 0, 1, 2… Output items follow the order their content comes:
    reasoning (``reasoning_content`` or ``reasoning``: one summary part), a message (text in an
    ``output_text`` part, ``refusal`` in a ``refusal`` part; a switch between them starts a
    new part), one ``function_call`` per tool-call index (a fragment for an index whose item is
    closed is dropped; a new ``id`` on an index already seen starts a new item); any other kind
    of content closes the open item. Open parts and items are closed (``….done``) before the
    terminal event, which carries every item. The last ``usage`` seen wins, ``end``'s over any
    chunk's. A chunk with an ``error`` object ends the stream like ``fail`` (its status from
    ``error.code`` when it is an HTTP status, else 500). Only the first choice is read; nothing
    comes out after the terminal event.
    """

    def __init__(self, call: ResponsesCall, response_id: str, created: int) -> None:
        self.call = call
        self.response_id = response_id
        self.created = created
        self._seq = 0
        self._started = False
        self._closed = False
        self._items: list[dict[str, Any]] = []  # the finished items
        self._open: dict[str, Any] | None = None  # the open item
        self._part: dict[str, Any] | None = None  # its open part (message, reasoning)
        self._tool_key: tuple[int, str] | None = None  # (chat index, call id) of the open call
        self._tools_seen: dict[int, str] = {}  # chat tool index → its last call id
        self._finish: Any = None
        self._usage: dict[str, Any] | None = None
        #: the finished response object (what ``response.completed`` carries), for storage
        self.final: dict[str, Any] | None = None

    @property
    def closed(self) -> bool:
        """Whether the terminal event went out."""
        return self._closed

    # -- the door

    def feed(self, data: bytes) -> bytes:
        if self._closed:
            return b""
        out: list[bytes] = []
        self._start(out)
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
        reason = _INCOMPLETE.get(self._finish) if type(self._finish) is str else None
        self._close_item(out, "incomplete" if reason else "completed")
        status = "incomplete" if reason else "completed"
        self.final = _response(self.call, self.response_id, self.created, status,
                               list(self._items), _usage(self._usage), reason)
        self._emit(out, {"type": f"response.{status}", "response": self.final})
        self._closed = True
        return b"".join(out)

    def fail(self, status: int, message: str, code: str | int | None = None) -> bytes:
        if self._closed:
            return b""
        out: list[bytes] = []
        self._start(out)
        self._close_item(out, "incomplete")
        self._emit(out, {"type": "response.failed", "response": _response(
            self.call, self.response_id, self.created, "failed", list(self._items),
            _usage(self._usage) if self._usage is not None else None,
            error={"code": _failure_code(status, code), "message": message})})
        self._closed = True
        return b"".join(out)

    # -- the machine

    def _emit(self, out: list[bytes], event: dict[str, Any]) -> None:
        event["sequence_number"] = self._seq
        self._seq += 1
        out.append(b"event: " + event["type"].encode() + b"\ndata: " + dumps(event) + b"\n\n")

    def _start(self, out: list[bytes]) -> None:
        if self._started:
            return
        self._started = True
        for kind in ("created", "in_progress"):
            self._emit(out, {"type": f"response.{kind}", "response": _response(
                self.call, self.response_id, self.created, "in_progress", [], None)})

    def _index(self) -> int:
        return len(self._items)

    def _close_part(self, out: list[bytes]) -> None:
        part, item = self._part, self._open
        if part is None or item is None:
            return
        self._part = None
        base = {"item_id": item["id"], "output_index": self._index()}
        if item["type"] == "reasoning":
            index = len(item["summary"]) - 1
            self._emit(out, {"type": "response.reasoning_summary_text.done", **base,
                             "summary_index": index, "text": part["text"]})
            self._emit(out, {"type": "response.reasoning_summary_part.done", **base,
                             "summary_index": index, "part": dict(part)})
            return
        index = len(item["content"]) - 1
        if part["type"] == "output_text":
            self._emit(out, {"type": "response.output_text.done", **base,
                             "content_index": index, "text": part["text"], "logprobs": []})
        else:
            self._emit(out, {"type": "response.refusal.done", **base, "content_index": index,
                             "refusal": part["refusal"]})
        self._emit(out, {"type": "response.content_part.done", **base, "content_index": index,
                         "part": dict(part)})

    def _close_item(self, out: list[bytes], status: str = "completed") -> None:
        self._close_part(out)
        item = self._open
        if item is None:
            return
        self._open = None
        self._tool_key = None
        if item["type"] == "function_call":
            self._emit(out, {"type": "response.function_call_arguments.done",
                             "item_id": item["id"], "output_index": self._index(),
                             "arguments": item["arguments"]})
        item["status"] = status
        done = _copy(item)
        self._emit(out, {"type": "response.output_item.done", "output_index": self._index(),
                         "item": done})
        self._items.append(done)

    def _open_item(self, out: list[bytes], item: dict[str, Any]) -> None:
        self._close_item(out)
        self._open = item
        self._emit(out, {"type": "response.output_item.added", "output_index": self._index(),
                         "item": _copy(item)})

    def _chunk(self, chunk: dict[str, Any], out: list[bytes]) -> None:
        error = chunk.get("error")
        if error:
            err = error if type(error) is dict else {}
            code, text = err.get("code"), err.get("message")
            status = code if type(code) is int and 400 <= code < 600 else 500
            out.append(self.fail(status, text if type(text) is str else str(error),
                                 code if type(code) is str else None))
            return
        usage = chunk.get("usage")
        if type(usage) is dict:
            self._usage = usage
        for delta, finish in first_choice(chunk):
            if delta is not None:
                self._content(delta, out)
            if finish is not None:
                self._finish = finish

    def _content(self, delta: dict[str, Any], out: list[bytes]) -> None:
        reasoning = _reasoning(delta)
        if type(reasoning) is str and reasoning:
            self._reasoning(reasoning, out)
        for key, kind in (("content", "output_text"), ("refusal", "refusal")):
            text = delta.get(key)
            if type(text) is str and text:
                self._text(kind, key if kind == "refusal" else "text", text, out)
        calls = delta.get("tool_calls")
        if type(calls) is list:
            for call in calls:
                if type(call) is dict:
                    self._tool(call, out)

    def _reasoning(self, text: str, out: list[bytes]) -> None:
        item = self._open
        if item is None or item["type"] != "reasoning":
            item = {"id": _item_id("rs", self.response_id, self._index() + (
                self._open is not None)), "type": "reasoning", "summary": []}
            self._open_item(out, item)
        base = {"item_id": item["id"], "output_index": self._index()}
        if self._part is None:
            self._part = {"type": "summary_text", "text": ""}
            item["summary"].append(self._part)
            self._emit(out, {"type": "response.reasoning_summary_part.added", **base,
                             "summary_index": len(item["summary"]) - 1,
                             "part": {"type": "summary_text", "text": ""}})
        self._part["text"] += text
        self._emit(out, {"type": "response.reasoning_summary_text.delta", **base,
                         "summary_index": len(item["summary"]) - 1, "delta": text})

    def _text(self, kind: str, field: str, text: str, out: list[bytes]) -> None:
        item = self._open
        if item is None or item["type"] != "message":
            item = {"id": _item_id("msg", self.response_id, self._index() + (
                self._open is not None)), "type": "message", "status": "in_progress",
                    "role": "assistant", "content": []}
            self._open_item(out, item)
        base = {"item_id": item["id"], "output_index": self._index()}
        if self._part is None or self._part["type"] != kind:
            self._close_part(out)
            self._part = {"type": kind, field: ""}
            if kind == "output_text":
                self._part["annotations"] = []
            item["content"].append(self._part)
            self._emit(out, {"type": "response.content_part.added", **base,
                             "content_index": len(item["content"]) - 1,
                             "part": dict(self._part, **{field: ""})})
        self._part[field] += text
        event = {"type": "response.output_text.delta" if kind == "output_text" else
                 "response.refusal.delta", **base, "content_index": len(item["content"]) - 1,
                 "delta": text}
        if kind == "output_text":
            event["logprobs"] = []
        self._emit(out, event)

    def _tool(self, tc: dict[str, Any], out: list[bytes]) -> None:
        index = tc.get("index", 0)
        if type(index) is not int:
            return
        cid = tc.get("id")
        cid = cid if type(cid) is str and cid else None
        fn = tc.get("function")
        fn = fn if type(fn) is dict else {}
        args = fn.get("arguments")
        current = self._tool_key if self._open is not None and \
            self._open["type"] == "function_call" else None
        if current is not None and current[0] == index and (cid is None or cid == current[1]):
            item = self._open
            assert item is not None
        elif index in self._tools_seen and (cid is None or cid == self._tools_seen[index]):
            return  # a fragment of a call whose item is closed: dropped
        else:
            name = fn.get("name")
            position = self._index() + (self._open is not None)
            call_id = cid or _item_id("call", self.response_id, position)
            item = _call_item(self.call, _item_id("fc", self.response_id, position), call_id,
                              name if type(name) is str else "", "", "in_progress")
            self._open_item(out, item)
            self._tool_key = (index, call_id)
            self._tools_seen[index] = call_id
        if type(args) is str and args:
            item["arguments"] += args
            self._emit(out, {"type": "response.function_call_arguments.delta",
                             "item_id": item["id"], "output_index": self._index(),
                             "delta": args})


def _copy(item: dict[str, Any]) -> dict[str, Any]:
    """A copy of an item deep enough that later deltas do not change what was emitted."""
    out = dict(item)
    for key in ("content", "summary"):
        if key in out:
            out[key] = [dict(p) for p in out[key]]
    return out
