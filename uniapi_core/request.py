"""The request model: one OpenAI chat-completions request, parsed once into frozen classes
(issue 12; docs/architecture.md, "The request model").

``parse_openai_chat(obj)`` reads the JSON object a client sent to ``/v1/chat/completions``
and sorts every value it knows by JSON shape, once: the conversation (``Message`` with its
content ``Part``s, ``ToolCall``s, tool results and replayed reasoning), the tool definitions
(``Tool``, ``ToolChoice``), the sampling knobs (``Sampling``), the reasoning knobs
(``Reasoning``), ``stream``/``stream_options``, and ``extras`` (every field the model does not
know, as sent). ``original`` is the dict itself, so a vendor that speaks the front's protocol
(OpenAI-compatible, Azure) passes the request through untouched.

The parser is *total*: any dict parses, and nothing but a non-dict raises (the gateway's
``ClientError`` "request body must be a JSON object"). A value of the wrong JSON type is not an
error here, because whether it is one depends on the vendor: OpenAI-compatible upstreams get
the request as sent, and when one translating vendor cannot build a request the router skips
its channel and tries the next (docs/routing.md §7), so a 400 raised at the edge would change
which requests are served. Instead the wrong value is recorded (``invalid``: the names of the
fields that had the wrong type; a ``Part``/``ToolCall``/``Tool`` with ``ok`` false; a
``Message`` with ``obj`` false) and kept as sent (``raw``), and each vendor raises its own 400
with its own text at its own point (tests pin those texts). ``raw`` is read only to word such
an error or for a vendor-specific extension; a vendor builds its payload from the typed fields.

Normalisations every vendor shares (docs/contracts.md, REQ-1): a JSON ``null`` is an absent
field; ``max_completion_tokens`` wins over ``max_tokens``; ``stop`` is a tuple whatever was
sent; a string ``content`` is ``Message.text``, a list is ``Message.parts``.

The parser does no I/O, no JSON decoding (tool-call ``arguments`` stay the text the client
sent: the vendors differ on what they accept there) and no copying of big strings; a small
request takes a few microseconds (benchmarks/bench_translators.py, ``parse_openai_chat``).
The classes are frozen attrs classes written by hand-rolled parsing rather than
``cattrs.structure``: the parser must never raise on a shape, and it runs on the hot path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from .errors import ClientError

__all__ = [
    "KNOWN_FIELDS",
    "ChatRequest",
    "Message",
    "Part",
    "Reasoning",
    "Sampling",
    "ThinkingBlock",
    "Tool",
    "ToolCall",
    "ToolChoice",
    "chat_request",
    "original_of",
    "parse_openai_chat",
]

_NONE: frozenset[str] = frozenset()


@attrs.frozen(kw_only=True, slots=False)
class Part:
    """One item of a list ``content``.

    ``kind`` is the part's ``type`` as sent (``"text"``, ``"refusal"``, ``"image_url"``,
    ``"input_audio"``, ``"file"``, or anything else; None when the part is not an object).
    ``ok`` says the part has its kind's shape: ``text`` (the ``text``, or for a refusal the
    ``refusal``) is a string; ``image_url`` is a string or an object; ``input_audio`` and
    ``file`` are objects. A bare string in a parts list is a text part with ``bare`` set
    (Anthropic reads it as text, Gemini refuses it).
    """

    kind: object
    ok: bool
    #: false for an item that is not an object (nor a string)
    obj: bool = True
    text: str = ""
    #: image_url: its ``url`` (or the bare string); file: ``file_url`` (uniapi's extension: a
    #: remote document the gateway fetches, docs/vendors.md "Input parts"); None when not a
    #: string
    url: str | None = None
    detail: str | None = None
    #: input_audio: ``data`` and ``format``; file: ``file_data``, ``file_id``, ``filename``
    data: str | None = None
    format: str | None = None
    file_id: str | None = None
    filename: str | None = None
    cache_control: dict[str, Any] | None = None
    bare: bool = False
    raw: Any = None


@attrs.frozen(kw_only=True, slots=False)
class ToolCall:
    """One ``tool_calls`` item of an assistant message.

    ``ok``: the item is an object whose ``function`` is an object. ``id`` and ``name`` are the
    strings sent (None when absent or not a string); ``arguments`` is the value sent (normally
    the JSON text; ``""``/None mean no arguments; each vendor decides what else it accepts).
    ``thought_signature`` and ``vendor_call_id`` come from ``extra_content.google`` (the form
    Google's OpenAI endpoint uses: docs/vendor-rules.md, GEM-R4).
    """

    ok: bool
    id: str | None = None
    name: str | None = None
    arguments: Any = None
    thought_signature: str | None = None
    vendor_call_id: str | None = None
    raw: Any = None


@attrs.frozen(kw_only=True, slots=False)
class ThinkingBlock:
    """A signed reasoning block replayed from history (docs/vendor-rules.md, ANT-K4):
    ``{"type": "thinking", "thinking", "signature"}`` or ``{"type": "redacted_thinking",
    "data"}`` (LiteLLM's ``thinking_blocks`` convention). Unsigned blocks are not kept."""

    type: str
    thinking: str = ""
    signature: str = ""
    data: str = ""


@attrs.frozen(kw_only=True, slots=False)
class Message:
    """One ``messages`` item.

    ``obj`` is false for an item that is not an object (every other field is then empty).
    ``role`` is the role string (None when absent or not a string; ``raw`` has what was sent).
    The content is ``text`` when it was a string, ``parts`` when it was a list; None and empty
    for ``null``/absent; ``"content"`` in ``invalid`` for any other type. ``tool_calls`` (assistant)
    and ``tool_call_id`` (tool) likewise, ``"tool_calls"``/``"tool_call_id"`` in ``invalid``
    when of the wrong type. ``reasoning_content``, ``reasoning_signature`` and
    ``thinking_blocks`` carry reasoning replayed from an earlier answer.
    """

    obj: bool
    role: str | None = None
    text: str | None = None
    parts: tuple[Part, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    cache_control: dict[str, Any] | None = None
    reasoning_content: str | None = None
    reasoning_signature: str | None = None
    thinking_blocks: tuple[ThinkingBlock, ...] = ()
    invalid: frozenset[str] = _NONE
    raw: Any = None


@attrs.frozen(kw_only=True, slots=False)
class Tool:
    """One ``tools`` item. ``type`` is the type sent (``"function"`` when absent);
    ``function`` the function object when it is one (None otherwise), with its ``name`` and
    ``description`` when strings, and ``parameters`` when an object (``"parameters"`` in
    ``invalid`` when present and not an object)."""

    type: object
    function: dict[str, Any] | None = None
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    cache_control: dict[str, Any] | None = None
    invalid: frozenset[str] = _NONE
    raw: Any = None


@attrs.frozen(kw_only=True, slots=False)
class ToolChoice:
    """``tool_choice``: ``mode`` is ``"auto"``, ``"none"``, ``"required"``, ``"function"`` (a
    named function: ``name``) or None when the value is none of these (``raw`` as sent).
    ``type`` is an object choice's ``type`` as sent (None for a string, or when absent): a
    named choice is ``"function"`` mode whatever its ``type`` says, and Cohere requires
    ``"function"`` there."""

    mode: str | None
    name: str | None = None
    type: object = None
    raw: Any = None


@attrs.frozen(kw_only=True, slots=False)
class Sampling:
    """The sampling knobs, each None when absent (or of the wrong type: the request's
    ``invalid`` then names it). Numbers are never bools. ``max_tokens`` is
    ``max_completion_tokens`` when given, else ``max_tokens`` (REQ-1; its range is each
    vendor's check); ``stop`` a tuple of strings."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    n: int | None = None
    #: ``response_format``: the object as sent, and its ``type``
    response_format: dict[str, Any] | None = None
    response_format_type: object = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, Any] | None = None


@attrs.frozen(kw_only=True, slots=False)
class Reasoning:
    """The reasoning knobs: OpenAI's ``reasoning_effort`` and an Anthropic-shaped ``thinking``
    object (``{"type": "enabled", "budget_tokens": N}`` …), each as sent when of the right
    JSON type."""

    effort: str | None = None
    thinking: dict[str, Any] | None = None


@attrs.frozen(kw_only=True, slots=False)
class ChatRequest:
    """One OpenAI chat-completions request, parsed (``parse_openai_chat``).

    ``original`` is the dict the client sent, for passthrough; ``extras`` its fields the model
    does not know; ``invalid`` the known top-level fields whose value had the wrong JSON type
    (``"messages"`` also when it is absent or an item is not an object; ``"max_tokens"`` for
    the winner of ``max_completion_tokens``/``max_tokens``).
    """

    original: dict[str, Any]
    model: str | None = None
    messages: tuple[Message, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    sampling: Sampling = Sampling()
    reasoning: Reasoning = Reasoning()
    stream: bool = False
    include_usage: bool = False
    user: str | None = None
    extras: Mapping[str, Any] = attrs.field(factory=dict)
    invalid: frozenset[str] = _NONE
    #: work a translator did for this request that every attempt would do again, kept for the
    #: next attempt (Cohere's PDF texts); the request's own, gone with it
    memo: dict[str, Any] = attrs.field(factory=dict, eq=False, repr=False)


#: the top-level fields the model types; every other one is in ``extras``
KNOWN_FIELDS = frozenset({
    "model", "messages", "tools", "tool_choice", "parallel_tool_calls", "temperature", "top_p",
    "top_k", "max_tokens", "max_completion_tokens", "stop", "seed", "presence_penalty",
    "frequency_penalty", "n", "response_format", "logprobs", "top_logprobs", "logit_bias",
    "reasoning_effort", "thinking", "stream", "stream_options", "user"})


# -- parsing -----------------------------------------------------------------------------------

def _part(p: Any) -> Part:
    if type(p) is str:
        return Part(kind="text", ok=True, text=p, bare=True, raw=p)
    if type(p) is not dict:
        return Part(kind=None, ok=False, obj=False, raw=p)
    kind = p.get("type")
    cache = p.get("cache_control")
    cache = cache if type(cache) is dict else None
    if kind == "text" or kind == "refusal":
        text = p.get(kind)
        if type(text) is str:
            return Part(kind=kind, ok=True, text=text, cache_control=cache, raw=p)
        return Part(kind=kind, ok=False, cache_control=cache, raw=p)
    if kind == "image_url":
        spec = p.get("image_url")
        if type(spec) is str:
            return Part(kind=kind, ok=True, url=spec, cache_control=cache, raw=p)
        if type(spec) is dict:
            url, detail = spec.get("url"), spec.get("detail")
            return Part(kind=kind, ok=True, url=url if type(url) is str else None,
                        detail=detail if type(detail) is str else None, cache_control=cache,
                        raw=p)
        return Part(kind=kind, ok=False, cache_control=cache, raw=p)
    if kind == "input_audio":
        spec = p.get("input_audio")
        if type(spec) is dict:
            data, fmt = spec.get("data"), spec.get("format")
            return Part(kind=kind, ok=True, data=data if type(data) is str else None,
                        format=fmt if type(fmt) is str else None, cache_control=cache, raw=p)
        return Part(kind=kind, ok=False, cache_control=cache, raw=p)
    if kind == "file":
        spec = p.get("file")
        if type(spec) is dict:
            data, fid, name = spec.get("file_data"), spec.get("file_id"), spec.get("filename")
            url = spec.get("file_url")
            return Part(kind=kind, ok=True, data=data if type(data) is str else None,
                        url=url if type(url) is str else None,
                        file_id=fid if type(fid) is str else None,
                        filename=name if type(name) is str else None, cache_control=cache,
                        raw=p)
        return Part(kind=kind, ok=False, cache_control=cache, raw=p)
    return Part(kind=kind, ok=False, cache_control=cache, raw=p)


def _tool_call(c: Any) -> ToolCall:
    if type(c) is not dict:
        return ToolCall(ok=False, raw=c)
    fn = c.get("function")
    cid = c.get("id")
    cid = cid if type(cid) is str else None
    if type(fn) is not dict:
        return ToolCall(ok=False, id=cid, raw=c)
    name = fn.get("name")
    sig = gid = None
    extra = c.get("extra_content")
    if extra is not None:
        google = extra.get("google") if type(extra) is dict else None
        if type(google) is dict:
            sig, gid = google.get("thought_signature"), google.get("function_call_id")
            sig = sig if type(sig) is str and sig else None
            gid = gid if type(gid) is str and gid else None
    return ToolCall(ok=True, id=cid, name=name if type(name) is str else None,
                    arguments=fn.get("arguments"), thought_signature=sig, vendor_call_id=gid,
                    raw=c)


def _thinking_blocks(raw: Any) -> tuple[ThinkingBlock, ...]:
    out = []
    for b in raw:
        if type(b) is not dict:
            continue
        kind = b.get("type")
        if kind == "thinking":
            text, sig = b.get("thinking"), b.get("signature")
            if type(text) is str and type(sig) is str and sig:
                out.append(ThinkingBlock(type=kind, thinking=text, signature=sig))
        elif kind == "redacted_thinking":
            data = b.get("data")
            if type(data) is str and data:
                out.append(ThinkingBlock(type=kind, data=data))
    return tuple(out)


_PLAIN = frozenset({"role", "content", "name"})


def _message(m: Any) -> Message:
    if type(m) is not dict:
        return Message(obj=False, raw=m)
    invalid: list[str] = []
    role = m.get("role")
    content = m.get("content")
    text: str | None = None
    parts: tuple[Part, ...] = ()
    if type(content) is str:
        text = content
    elif type(content) is list:
        parts = tuple([_part(p) for p in content])
    elif content is not None:
        invalid.append("content")
    calls: tuple[ToolCall, ...] = ()
    raw_calls = m.get("tool_calls")
    if type(raw_calls) is list:
        calls = tuple([_tool_call(c) for c in raw_calls])
    elif raw_calls is not None:
        invalid.append("tool_calls")
    tid = m.get("tool_call_id")
    if tid is not None and type(tid) is not str:
        invalid.append("tool_call_id")
        tid = None
    if m.keys() <= _PLAIN:  # the common case: role and content only
        name = m.get("name")
        return Message(obj=True, role=role if type(role) is str else None, text=text,
                       parts=parts, tool_call_id=tid, name=name if type(name) is str else None,
                       invalid=frozenset(invalid) if invalid else _NONE, raw=m)
    name, cache = m.get("name"), m.get("cache_control")
    reasoning, signature = m.get("reasoning_content"), m.get("reasoning_signature")
    blocks = m.get("thinking_blocks")
    return Message(obj=True, role=role if type(role) is str else None, text=text, parts=parts,
                   tool_calls=calls, tool_call_id=tid, name=name if type(name) is str else None,
                   cache_control=cache if type(cache) is dict else None,
                   reasoning_content=reasoning if type(reasoning) is str else None,
                   reasoning_signature=signature if type(signature) is str and signature
                   else None,
                   thinking_blocks=_thinking_blocks(blocks) if type(blocks) is list else (),
                   invalid=frozenset(invalid) if invalid else _NONE, raw=m)


def _tool(t: Any) -> Tool:
    if type(t) is not dict:
        return Tool(type=None, raw=t)
    kind = t.get("type", "function")
    fn = t.get("function")
    cache = t.get("cache_control")
    cache = cache if type(cache) is dict else None
    if type(fn) is not dict:
        return Tool(type=kind, cache_control=cache, raw=t)
    name, desc, params, strict = (fn.get("name"), fn.get("description"), fn.get("parameters"),
                                  fn.get("strict"))
    return Tool(type=kind, function=fn, name=name if type(name) is str else None,
                description=desc if type(desc) is str else None,
                parameters=params if type(params) is dict else None,
                strict=strict if type(strict) is bool else None, cache_control=cache,
                invalid=frozenset(("parameters",)) if params is not None
                and type(params) is not dict else _NONE,
                raw=t)


def _tool_choice(c: Any) -> ToolChoice:
    if c == "auto" or c == "none" or c == "required":
        return ToolChoice(mode=c, raw=c)
    if type(c) is dict:
        fn = c.get("function")
        name = fn.get("name") if type(fn) is dict else None
        if type(name) is str:
            return ToolChoice(mode="function", name=name, type=c.get("type"), raw=c)
        return ToolChoice(mode=None, type=c.get("type"), raw=c)
    return ToolChoice(mode=None, raw=c)


_FLOATS = frozenset({"temperature", "top_p", "presence_penalty", "frequency_penalty"})
_INTS = frozenset({"top_k", "seed", "n", "top_logprobs"})
_SAMPLING_FIELDS = _FLOATS | _INTS | {"max_tokens", "max_completion_tokens", "stop",
                                      "response_format", "logprobs", "logit_bias"}


def _sampling(obj: dict[str, Any], invalid: list[str]) -> Sampling:
    present = _SAMPLING_FIELDS.intersection(obj)
    if not present:
        return _NO_SAMPLING
    values: dict[str, Any] = {}
    for key in present:
        v = obj[key]
        if v is None:
            continue
        if key in _FLOATS:
            if type(v) is float or type(v) is int:
                values[key] = v
            else:
                invalid.append(key)
        elif key in _INTS:
            if type(v) is int:
                values[key] = v
            else:
                invalid.append(key)
        elif key == "stop":
            if type(v) is str:
                values["stop"] = (v,)
            elif type(v) is list and all(type(s) is str for s in v):
                values["stop"] = tuple(v)
            else:
                invalid.append("stop")
        elif key == "response_format":
            if type(v) is dict:
                values["response_format"] = v
                values["response_format_type"] = v.get("type")
            else:
                invalid.append("response_format")
        elif key == "logprobs":
            if type(v) is bool:
                values["logprobs"] = v
            else:
                invalid.append("logprobs")
        elif key == "logit_bias":
            if type(v) is dict:
                values["logit_bias"] = v
            else:
                invalid.append("logit_bias")
    limit = obj.get("max_completion_tokens")
    if limit is None:
        limit = obj.get("max_tokens")
    if limit is not None:
        if type(limit) is int:
            values["max_tokens"] = limit
        else:
            invalid.append("max_tokens")
    return Sampling(**values) if values else _NO_SAMPLING


_NO_SAMPLING = Sampling()
_NO_REASONING = Reasoning()


def parse_openai_chat(obj: Any) -> ChatRequest:
    """``obj`` (a decoded OpenAI chat-completions body) as a ``ChatRequest``.

    Total on dicts: a value of the wrong type is recorded, never raised (module docstring).
    ``ClientError`` only when ``obj`` is not a dict.
    """
    if type(obj) is not dict:
        raise ClientError("request body must be a JSON object", code="invalid_json")
    invalid: list[str] = []
    get = obj.get
    model = get("model")
    raw_messages = get("messages")
    messages: tuple[Message, ...] = ()
    if type(raw_messages) is list:
        messages = tuple([_message(m) for m in raw_messages])
        if not all(m.obj for m in messages):
            invalid.append("messages")
    else:
        invalid.append("messages")
    tools: tuple[Tool, ...] = ()
    raw_tools = get("tools")
    if type(raw_tools) is list:
        tools = tuple([_tool(t) for t in raw_tools])
    elif raw_tools is not None:
        invalid.append("tools")
    choice = get("tool_choice")
    parallel = get("parallel_tool_calls")
    if parallel is not None and type(parallel) is not bool:
        invalid.append("parallel_tool_calls")
        parallel = None
    effort, thinking = get("reasoning_effort"), get("thinking")
    if effort is not None and type(effort) is not str:
        invalid.append("reasoning_effort")
        effort = None
    if thinking is not None and type(thinking) is not dict:
        invalid.append("thinking")
        thinking = None
    stream = get("stream")
    if stream is not None and type(stream) is not bool:
        invalid.append("stream")
    options = get("stream_options")
    user = get("user")
    extras = {k: v for k, v in obj.items() if k not in KNOWN_FIELDS}
    return ChatRequest(
        original=obj, model=model if type(model) is str else None, messages=messages,
        tools=tools, tool_choice=None if choice is None else _tool_choice(choice),
        parallel_tool_calls=parallel, sampling=_sampling(obj, invalid),
        reasoning=Reasoning(effort=effort, thinking=thinking)
        if effort is not None or thinking is not None else _NO_REASONING,
        stream=stream is True,
        include_usage=type(options) is dict and options.get("include_usage") is True,
        user=user if type(user) is str else None, extras=extras,
        invalid=frozenset(invalid) if invalid else _NONE)


def original_of(req: ChatRequest | dict[str, Any]) -> dict[str, Any]:
    """The dict the client sent: what a passthrough vendor (or one not yet building from the
    model) reads."""
    if type(req) is ChatRequest:
        return req.original
    return req  # type: ignore[return-value]


def chat_request(req: ChatRequest | dict[str, Any]) -> ChatRequest:
    """``req`` parsed, unless it already is a ``ChatRequest`` (what a vendor builder calls
    first, so that ``TRANSLATORS[engine](dict, ctx)`` keeps working)."""
    if type(req) is ChatRequest:
        return req
    return parse_openai_chat(req)
