"""The Gemini-native front (``POST /v1beta/models/{model}:generateContent``,
``:streamGenerateContent``, ``:countTokens``; ``/v1/`` likewise), translation only: no I/O.

This is what the google-genai SDKs and Gemini CLI speak. A ``GenerateContentRequest`` becomes
an OpenAI chat request (``chat_request_from_gemini``), which the gateway routes like any
other; the OpenAI answer comes back as a ``GenerateContentResponse``
(``gemini_response_from_chat``) or, streamed, as Gemini's stream (``GeminiStream``: SSE with
``?alt=sse``, else a JSON array sent piece by piece), fed the ``StreamChunk`` bytes the
vendors' decoders produce.

Field names are read in both spellings protobuf JSON accepts: ``mimeType`` and ``mime_type``
(the Python SDK sends nested objects in snake_case, e.g. ``thinkingConfig.include_thoughts``).
Errors name the JSON path in camelCase.

What does not survive the trip (a native Gemini path would keep all of it):

- ``thought: true`` parts of the history are dropped (OpenAI chat has no way to replay
  them); ``thoughtSignature`` on text and thought parts is dropped. A ``functionCall`` part's
  ``thoughtSignature`` rides on its tool call as ``extra_content.google.thought_signature``,
  the form the gateway's Gemini translator reads back (and answers with), so Gemini 3 keeps
  its signatures through a translated round trip.
- A ``functionCall`` without ``id`` gets a deterministic ``call_…`` id; a
  ``functionResponse`` is matched to the calls of the model turn before it by ``id``, else by
  name in order, and becomes a ``tool`` message whose text is its ``response`` as compact
  JSON. Media in ``functionResponse.parts`` travel in one user message after the tool
  messages, ahead of the turn's own parts. A ``functionResponse`` with no call to answer is a
  400.
- One text part of a user turn is sent as a string, several parts as a list of chat parts;
  the text parts of a model turn are joined with nothing between them.
- ``inlineData``: images become ``image_url`` data URLs, ``audio/*`` an ``input_audio`` part
  (format from the subtype: ``mpeg`` is ``mp3``, ``x-wav``/``wave`` are ``wav``), video is a
  400, anything else (PDF, text…) a chat ``file`` part with a data URL (filename
  ``displayName``, else ``document.pdf`` or ``document``). ``fileData``: an ``image/*`` file at
  an http(s) URI becomes an ``image_url``, any other http(s) file but audio and video a chat
  ``file`` part with uniapi's ``file_url`` (the gateway fetches it for upstreams that need the
  bytes); a Gemini Files API or ``gs://`` URI becomes a ``file`` part with that ``file_id``
  (only Gemini channels read it; elsewhere the channel is skipped); anything else is a 400. ``videoMetadata``, ``mediaResolution`` and ``partMetadata`` are
  ignored.
- ``executableCode``, ``codeExecutionResult``, ``toolCall`` and ``toolResponse`` parts
  (server-side tools) are a 400, as are media in a model turn and ``cachedContent``.
- Tools other than ``functionDeclarations`` (``googleSearch``, ``googleSearchRetrieval``,
  ``codeExecution``, ``urlContext``, ``googleMaps``, ``fileSearch``, ``computerUse``…) are
  dropped and named in ``GeminiCall.dropped_tools``: the model answers without them.
  ``parameters`` (Gemini's OpenAPI subset) become JSON Schema (type names lower-cased,
  ``nullable`` as a ``"null"`` type, ``propertyOrdering`` and ``example`` dropped);
  ``parametersJsonSchema`` is passed as it is; a declaration without either takes an empty
  object schema. ``response``/``responseJsonSchema`` and ``behavior`` are dropped.
- ``toolConfig.functionCallingConfig.mode``: AUTO, VALIDATED and MODE_UNSPECIFIED are
  ``auto``, NONE ``none``, ANY ``required``, or that function when ``allowedFunctionNames``
  names exactly one (several names: ``required``, any declared function may be called). No
  ``tool_choice`` is sent when no function is declared.
- ``generationConfig``: ``temperature``, ``topP``, ``topK``, ``presencePenalty``,
  ``frequencyPenalty``, ``seed``, ``maxOutputTokens`` (``max_tokens``), ``stopSequences``
  (``stop``) and ``candidateCount`` (``n`` when above 1) are mapped; ``responseMimeType``
  ``application/json`` is a ``json_object`` response format, or ``json_schema`` named
  ``response`` (not strict) with ``responseSchema`` (converted as above) or
  ``responseJsonSchema`` (as it is), which also imply JSON when no mime type is given.
  ``responseModalities`` other than TEXT and a ``responseMimeType`` other than JSON or
  ``text/plain`` are a 400; every other field (``responseLogprobs``, ``mediaResolution``,
  ``speechConfig``…) is ignored.
- ``thinkingConfig``: ``thinkingLevel`` (minimal, low, medium, high) is the
  ``reasoning_effort``; else ``thinkingBudget`` 0 is ``none``, -1 (dynamic) ``medium``,
  < 4096 ``low``, < 16384 ``medium``, else ``high``. Thoughts come back only with
  ``includeThoughts: true``.
- ``safetySettings`` are dropped (the upstream's own filtering applies); unknown top-level
  fields (``labels``, ``sessionId``…) are ignored.

On the answer side: ``modelVersion`` is the name the client asked for and ``responseId`` a
digest of the chat id (or the request id); ``finishReason`` is STOP for ``stop``, tool calls
and anything unknown, MAX_TOKENS for ``length``, SAFETY for ``content_filter``; tool calls are
``functionCall`` parts with their chat id as ``id`` and their arguments parsed (``{}`` when
they are not a JSON object); ``usageMetadata`` splits OpenAI's completion tokens into
``candidatesTokenCount`` and ``thoughtsTokenCount`` (reasoning tokens) and reports cached
prompt tokens as ``cachedContentTokenCount``. A whole answer has one candidate per choice; a
stream follows the first choice only. ``safetyRatings``, ``citationMetadata`` and
``groundingMetadata`` are never produced.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any
from urllib.parse import unquote

import attrs

from ..errors import ClientError
from ..jsonutil import dumps
from .chatstream import chat_chunks
from .common import arguments_object as _args, bad as _bad, digest62 as _digest, \
    first_choice, is_num as _is_num, obj as _obj, reasoning_of as _reasoning, url_filename

__all__ = [
    "GENERATION_METHODS",
    "GeminiCall",
    "GeminiStream",
    "chat_request_from_gemini",
    "count_tokens_response",
    "estimate_tokens",
    "gemini_response_from_chat",
    "google_error_body",
    "google_status_for",
    "model_entry",
    "models_list",
    "parse_model_path",
    "response_id",
    "usage_metadata",
]


# -- request -----------------------------------------------------------------------------------

@attrs.frozen
class GeminiCall:
    """A translated ``GenerateContentRequest``: ``chat`` is the OpenAI chat request to route,
    ``model`` the name the client asked for (the answers' ``modelVersion``), ``stream``
    whether it streams, ``include_thoughts`` whether thoughts go back to the client
    (``thinkingConfig.includeThoughts``), ``dropped_tools`` the non-function tools left out
    (``googleSearch``…, in the order first met)."""

    chat: dict[str, Any]
    model: str
    stream: bool
    include_thoughts: bool = False
    dropped_tools: tuple[str, ...] = ()


@functools.lru_cache(maxsize=256)  # pure; called with the module's field names only
def _snake(name: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "_" + m.group().lower(), name)


def _camel(name: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)


def _get(obj: dict[str, Any], key: str) -> Any:
    """``obj[key]`` in either protobuf JSON spelling (``mimeType`` or ``mime_type``)."""
    value = obj.get(key)
    if value is None:
        snake = _snake(key)
        if snake != key:
            value = obj.get(snake)
    return value


def _int(v: Any) -> int | None:
    """An integer, or an integral float (the Python SDK types ``topK`` as a float)."""
    if type(v) is int:
        return v
    if type(v) is float and v.is_integer():
        return int(v)
    return None


def _list(v: Any, path: str) -> list[Any]:
    if type(v) is not list:
        raise _bad(path, "expected a list")
    return v


def _str(obj: dict[str, Any], key: str, path: str, *, required: bool = True) -> str | None:
    v = _get(obj, key)
    if v is None and not required:
        return None
    if type(v) is not str:
        raise _bad(f"{path}.{key}", "field required" if v is None else "expected a string")
    return v


#: the keys that make a part what it is (a part has one of them)
_DATA_KEYS = ("text", "inlineData", "fileData", "functionCall", "functionResponse",
              "executableCode", "codeExecutionResult", "toolCall", "toolResponse")
#: data keys OpenAI chat cannot carry (server-side tools)
_REFUSED = {"executableCode": "code execution", "codeExecutionResult": "code execution",
            "toolCall": "server-side tools", "toolResponse": "server-side tools"}
#: keys a part may carry beside its data, ignored here
_PART_META = frozenset({"thought", "thoughtSignature", "partMetadata", "videoMetadata",
                        "mediaResolution"})


def _kind(part: dict[str, Any], path: str) -> str | None:
    """Which data key ``part`` has; None for a part of metadata only (dropped)."""
    for key in _DATA_KEYS:
        if _get(part, key) is not None:
            if key in _REFUSED:
                raise _bad(f"{path}.{key}", f"{key} parts ({_REFUSED[key]}) cannot be "
                           "forwarded to this model")
            return key
    for key, value in part.items():
        if value is not None and _camel(key) not in _PART_META:
            raise _bad(f"{path}.{_camel(key)}", "unknown part field")
    return None


_AUDIO_FORMATS = {"mpeg": "mp3", "mp3": "mp3", "x-wav": "wav", "wave": "wav", "wav": "wav",
                  "x-flac": "flac"}
#: Gemini Files API uploads: readable only with the uploader's key, at Google
_FILES_API = re.compile(r"https?://generativelanguage\.googleapis\.com/", re.IGNORECASE)


def _inline(data: Any, path: str) -> dict[str, Any]:
    data = _obj(data, path)
    mime = _str(data, "mimeType", path) or ""
    b64 = _str(data, "data", path) or ""
    kind, _, sub = mime.lower().partition("/")
    if kind == "image":
        return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{b64}"}}
    if kind == "audio":
        sub = sub.split(";")[0]
        return {"type": "input_audio", "input_audio": {"data": b64,
                                                       "format": _AUDIO_FORMATS.get(sub, sub)}}
    if kind == "video":
        raise _bad(f"{path}.mimeType", f"video ({mime!r}) cannot be forwarded to this model")
    name = _str(data, "displayName", path, required=False)
    if not name:
        name = "document.pdf" if mime.lower() == "application/pdf" else "document"
    return {"type": "file", "file": {"file_data": f"data:{mime};base64,{b64}",
                                     "filename": name}}


def _file_data(data: Any, path: str) -> dict[str, Any]:
    data = _obj(data, path)
    uri = _str(data, "fileUri", path) or ""
    mime = (_str(data, "mimeType", path, required=False) or "").lower()
    name = _str(data, "displayName", path, required=False)
    if _FILES_API.match(uri) or uri.lower().startswith("gs://"):  # an upload: only its
        spec: dict[str, Any] = {"file_id": uri}  # issuer reads it (a Gemini channel)
        if name:
            spec["filename"] = name
        return {"type": "file", "file": spec}
    if not uri.lower().startswith(("http://", "https://")):
        raise _bad(f"{path}.fileUri", f"expected an http(s), gs:// or Gemini Files API URI, "
                   f"got {uri[:100]!r}")
    if mime.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": uri}}
    if mime.startswith(("audio/", "video/")):
        raise _bad(f"{path}.mimeType", f"{mime!r} files cannot be forwarded by URL to this "
                   "model; send the bytes as inlineData")
    return {"type": "file", "file": {"file_url": uri, "filename": name or url_filename(uri)}}


def _media(part: dict[str, Any], kind: str, path: str) -> dict[str, Any]:
    if kind == "inlineData":
        return _inline(_get(part, kind), f"{path}.inlineData")
    return _file_data(_get(part, kind), f"{path}.fileData")


def _user_content(items: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if len(items) == 1 and items[0]["type"] == "text":
        return str(items[0]["text"])
    return items


class _History:
    """``contents`` → chat messages, keeping the calls of the last model turn for the
    function responses that answer them."""

    def __init__(self, out: list[dict[str, Any]]) -> None:
        self.out = out
        self.pending: list[tuple[str, str]] = []  # (chat id, name) of unanswered calls

    def turn(self, i: int, content: Any) -> None:
        where = f"contents[{i}]"
        content = _obj(content, where)
        role = _get(content, "role")
        if role is not None and type(role) is not str:
            raise _bad(f"{where}.role", "expected a string")
        parts = _get(content, "parts")
        parts = [] if parts is None else _list(parts, f"{where}.parts")
        if role is None or role == "" or role == "user" or role == "function":
            self.user(parts, where)
        elif role == "model":
            self.model(parts, where, i)
        else:
            raise _bad(f"{where}.role", f"expected 'user' or 'model', got {role!r}")

    def user(self, parts: list[Any], where: str) -> None:
        tools: list[dict[str, Any]] = []
        tool_media: list[dict[str, Any]] = []
        items: list[dict[str, Any]] = []
        for j, part in enumerate(parts):
            pw = f"{where}.parts[{j}]"
            part = _obj(part, pw)
            kind = _kind(part, pw)
            if kind is None or _get(part, "thought") is True:
                continue
            if kind == "text":
                text = _str(part, "text", pw)
                if text:
                    items.append({"type": "text", "text": text})
            elif kind in ("inlineData", "fileData"):
                items.append(_media(part, kind, pw))
            elif kind == "functionResponse":
                message, media = self.response(_get(part, kind), f"{pw}.functionResponse")
                tools.append(message)
                tool_media.extend(media)
            else:
                raise _bad(f"{pw}.{kind}", "a functionCall belongs in a model turn")
        self.out.extend(tools)
        items = tool_media + items
        if items:
            self.out.append({"role": "user", "content": _user_content(items)})
        elif not tools:
            self.out.append({"role": "user", "content": ""})

    def response(self, fr: Any, path: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        fr = _obj(fr, path)
        name = _str(fr, "name", path) or ""
        result = _get(fr, "response")
        if result is None:
            result = {}
        elif type(result) is not dict:
            raise _bad(f"{path}.response", "expected an object")
        vid = _get(fr, "id")
        cid = self.match(vid if type(vid) is str else None, name, path)
        media: list[dict[str, Any]] = []
        extra = _get(fr, "parts")
        for k, sub in enumerate(_list(extra, f"{path}.parts") if extra is not None else ()):
            sw = f"{path}.parts[{k}]"
            sub = _obj(sub, sw)
            kind = _kind(sub, sw)
            if kind in ("inlineData", "fileData"):
                media.append(_media(sub, kind, sw))
            elif kind is not None:
                raise _bad(f"{sw}.{kind}", "only inlineData and fileData can be forwarded in "
                           "a functionResponse")
        return {"role": "tool", "tool_call_id": cid,
                "content": dumps(result).decode("utf-8")}, media

    def match(self, vid: str | None, name: str, path: str) -> str:
        if vid:
            for k, (cid, _) in enumerate(self.pending):
                if cid == vid:
                    return self.pending.pop(k)[0]
        for k, (_, n) in enumerate(self.pending):
            if n == name:
                return self.pending.pop(k)[0]
        raise _bad(path, f"no functionCall named {name!r} in the model turn before it is "
                   "left to answer")

    def model(self, parts: list[Any], where: str, i: int) -> None:
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        self.pending = []
        for j, part in enumerate(parts):
            pw = f"{where}.parts[{j}]"
            part = _obj(part, pw)
            kind = _kind(part, pw)
            if kind is None or _get(part, "thought") is True:
                continue  # thoughts of the history are dropped
            if kind == "text":
                texts.append(_str(part, "text", pw) or "")
            elif kind == "functionCall":
                calls.append(self.call(part, f"{pw}.functionCall", i, j))
            else:
                raise _bad(f"{pw}.{kind}", f"{kind} parts in a model turn cannot be "
                           "forwarded to this model")
        text = "".join(texts)
        if text or calls:
            message: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                message["tool_calls"] = calls
            self.out.append(message)

    def call(self, part: dict[str, Any], path: str, i: int, j: int) -> dict[str, Any]:
        fc = _obj(_get(part, "functionCall"), path)
        name = _str(fc, "name", path) or ""
        args = _get(fc, "args")
        if args is None:
            args = {}
        elif type(args) is not dict:
            raise _bad(f"{path}.args", "expected an object")
        vid = _get(fc, "id")
        cid = vid if type(vid) is str and vid else call_id(f"{i}:{j}", name)
        call: dict[str, Any] = {"id": cid, "type": "function",
                                "function": {"name": name,
                                             "arguments": dumps(args).decode("utf-8")}}
        sig = _get(part, "thoughtSignature")
        if type(sig) is str and sig:
            call["extra_content"] = {"google": {"thought_signature": sig}}
        self.pending.append((cid, name))
        return call


def _system(value: Any, path: str) -> str:
    """``systemInstruction``: a Content (its text parts joined with a blank line), or a
    plain string."""
    if type(value) is str:
        return value
    value = _obj(value, path)
    parts = _get(value, "parts")
    texts = []
    for j, part in enumerate(_list(parts, f"{path}.parts") if parts is not None else ()):
        pw = f"{path}.parts[{j}]"
        part = _obj(part, pw)
        kind = _kind(part, pw)
        if kind is None:
            continue
        if kind != "text":
            raise _bad(f"{pw}.{kind}", "a system instruction can only hold text")
        text = _str(part, "text", pw)
        if text:
            texts.append(text)
    return "\n\n".join(texts)


# -- schemas and tools

_SCHEMA_TYPES = {"STRING": "string", "NUMBER": "number", "INTEGER": "integer",
                 "BOOLEAN": "boolean", "ARRAY": "array", "OBJECT": "object", "NULL": "null"}
_SCHEMA_COUNTS = frozenset({"minItems", "maxItems", "minLength", "maxLength", "minProperties",
                            "maxProperties"})
_SCHEMA_KEEP = frozenset({"description", "title", "minimum", "maximum", "pattern", "default"})


def gemini_schema_to_json_schema(node: Any, path: str) -> dict[str, Any]:
    """Gemini's ``Schema`` (an OpenAPI 3.0 subset: upper-case type names, ``nullable``) as
    JSON Schema. Raises ``ClientError`` naming the path of a value of the wrong shape."""
    node = _obj(node, path)
    out: dict[str, Any] = {}
    kind = _get(node, "type")
    if kind is not None:
        if type(kind) is not str:
            raise _bad(f"{path}.type", "expected a string")
        if kind.upper() in _SCHEMA_TYPES:
            out["type"] = _SCHEMA_TYPES[kind.upper()]
        elif kind.upper() != "TYPE_UNSPECIFIED":
            raise _bad(f"{path}.type", f"unknown type {kind!r}")
    for key, value in node.items():
        name = _camel(key)
        if value is None:
            continue
        if name == "properties":
            props = _obj(value, f"{path}.properties")
            out["properties"] = {k: gemini_schema_to_json_schema(v, f"{path}.properties.{k}")
                                 for k, v in props.items()}
        elif name == "items":
            out["items"] = gemini_schema_to_json_schema(value, f"{path}.items")
        elif name == "anyOf":
            out["anyOf"] = [gemini_schema_to_json_schema(v, f"{path}.anyOf[{k}]")
                            for k, v in enumerate(_list(value, f"{path}.anyOf"))]
        elif name == "enum" or name == "required":
            out[name] = list(_list(value, f"{path}.{name}"))
        elif name == "format":
            if value != "enum":
                out["format"] = value
        elif name in _SCHEMA_COUNTS:
            count = int(value) if type(value) is str and value.isdigit() else _int(value)
            if count is None:
                raise _bad(f"{path}.{name}", "expected an integer")
            out[name] = count
        elif name in _SCHEMA_KEEP:
            out[name] = value
    if _get(node, "nullable") is True:
        current = out.get("type")
        if type(current) is str and current != "null":
            out["type"] = [current, "null"]
        elif "anyOf" in out:
            out["anyOf"].append({"type": "null"})
        if "enum" in out and None not in out["enum"]:
            out["enum"].append(None)
    return out


def _declaration(decl: Any, path: str) -> dict[str, Any]:
    decl = _obj(decl, path)
    name = _str(decl, "name", path)
    if not name:
        raise _bad(f"{path}.name", "expected a non-empty string")
    description = _str(decl, "description", path, required=False)
    params, raw = _get(decl, "parameters"), _get(decl, "parametersJsonSchema")
    if params is not None and raw is not None:
        raise _bad(path, "give parameters or parametersJsonSchema, not both")
    if raw is not None:
        schema = _obj(raw, f"{path}.parametersJsonSchema")
    elif params is not None:
        schema = gemini_schema_to_json_schema(params, f"{path}.parameters")
    else:
        schema = {"type": "object", "properties": {}}
    fn: dict[str, Any] = {"name": name}
    if description:
        fn["description"] = description
    fn["parameters"] = schema
    return {"type": "function", "function": fn}


def _tools(tools: Any) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    if tools is None:
        return [], ()
    out: list[dict[str, Any]] = []
    dropped: list[str] = []
    for k, tool in enumerate(_list(tools, "tools")):
        where = f"tools[{k}]"
        for key, value in _obj(tool, where).items():
            name = _camel(key)
            if value is None:
                continue
            if name == "functionDeclarations":
                for d, decl in enumerate(_list(value, f"{where}.functionDeclarations")):
                    out.append(_declaration(decl, f"{where}.functionDeclarations[{d}]"))
            elif name not in dropped:
                dropped.append(name)
    return out, tuple(dropped)


_MODES = {"AUTO": "auto", "VALIDATED": "auto", "MODE_UNSPECIFIED": "auto", "NONE": "none",
          "ANY": "required"}


def _tool_choice(config: Any, declared: list[str]) -> Any:
    config = _obj(config, "toolConfig")
    fcc = _get(config, "functionCallingConfig")
    if fcc is None:
        return None
    path = "toolConfig.functionCallingConfig"
    fcc = _obj(fcc, path)
    mode = _get(fcc, "mode")
    if mode is None:
        mode = "AUTO"
    if type(mode) is not str or mode.upper() not in _MODES:
        raise _bad(f"{path}.mode", f"expected AUTO, ANY, NONE or VALIDATED, got {mode!r}")
    names = _get(fcc, "allowedFunctionNames")
    if names is not None and (type(names) is not list or
                              not all(type(n) is str for n in names)):
        raise _bad(f"{path}.allowedFunctionNames", "expected a list of strings")
    for n in names or ():
        if n not in declared:
            raise _bad(f"{path}.allowedFunctionNames", f"{n!r} is not a declared function")
    choice = _MODES[mode.upper()]
    if choice == "required" and names is not None and len(names) == 1:
        return {"type": "function", "function": {"name": names[0]}}
    return choice


# -- generationConfig

_NUMBERS = (("temperature", "temperature"), ("topP", "top_p"),
            ("presencePenalty", "presence_penalty"), ("frequencyPenalty", "frequency_penalty"))


def _effort(config: Any) -> tuple[str | None, bool]:
    """(reasoning_effort, includeThoughts) from ``thinkingConfig``."""
    path = "generationConfig.thinkingConfig"
    config = _obj(config, path)
    include = _get(config, "includeThoughts")
    if include is not None and type(include) is not bool:
        raise _bad(f"{path}.includeThoughts", "expected a boolean")
    level = _get(config, "thinkingLevel")
    if level is not None:
        if type(level) is not str or level.lower() not in (
                "minimal", "low", "medium", "high", "thinking_level_unspecified"):
            raise _bad(f"{path}.thinkingLevel", f"expected MINIMAL, LOW, MEDIUM or HIGH, got "
                       f"{level!r}")
        low = level.lower()
        return (None if low == "thinking_level_unspecified" else low), include is True
    budget = _get(config, "thinkingBudget")
    if budget is None:
        return None, include is True
    n = _int(budget)
    if n is None or n < -1:
        raise _bad(f"{path}.thinkingBudget", "expected an integer ≥ -1")
    effort = "none" if n == 0 else "medium" if n == -1 else "low" if n < 4096 else \
        "medium" if n < 16384 else "high"
    return effort, include is True


def _response_format(config: dict[str, Any]) -> dict[str, Any] | None:
    mime = _get(config, "responseMimeType")
    schema, raw = _get(config, "responseSchema"), _get(config, "responseJsonSchema")
    if mime is not None and type(mime) is not str:
        raise _bad("generationConfig.responseMimeType", "expected a string")
    if mime not in (None, "", "text/plain", "application/json"):
        raise _bad("generationConfig.responseMimeType", f"{mime!r} cannot be served here "
                   "(use application/json or text/plain)")
    if raw is not None:
        converted = _obj(raw, "generationConfig.responseJsonSchema")
    elif schema is not None:
        converted = gemini_schema_to_json_schema(schema, "generationConfig.responseSchema")
    elif mime == "application/json":
        return {"type": "json_object"}
    else:
        return None
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": converted}}


def _generation(config: Any, chat: dict[str, Any]) -> bool:
    """Maps ``generationConfig`` into ``chat``; returns whether thoughts are wanted."""
    config = _obj(config, "generationConfig")
    path = "generationConfig"
    for key, target in _NUMBERS:
        value = _get(config, key)
        if value is not None:
            if not _is_num(value):
                raise _bad(f"{path}.{key}", "expected a number")
            chat[target] = value
    for key, target, low in (("topK", "top_k", 0), ("seed", "seed", None),
                             ("maxOutputTokens", "max_tokens", 1),
                             ("candidateCount", "n", 1)):
        value = _get(config, key)
        if value is None:
            continue
        n = _int(value)
        if n is None or (low is not None and n < low):
            raise _bad(f"{path}.{key}", "expected an integer" if low is None else
                       "expected a positive integer" if low else "expected an integer ≥ 0")
        if key != "candidateCount" or n > 1:
            chat[target] = n
    stops = _get(config, "stopSequences")
    if stops is not None:
        if type(stops) is not list or not all(type(s) is str for s in stops):
            raise _bad(f"{path}.stopSequences", "expected a list of strings")
        if stops:
            chat["stop"] = list(stops)
    modalities = _get(config, "responseModalities")
    if modalities is not None and (type(modalities) is not list or any(
            type(m) is not str or m.upper() != "TEXT" for m in modalities)):
        raise _bad(f"{path}.responseModalities", "only TEXT can be served here")
    fmt = _response_format(config)
    if fmt is not None:
        chat["response_format"] = fmt
    thinking = _get(config, "thinkingConfig")
    if thinking is None:
        return False
    effort, include = _effort(thinking)
    if effort is not None:
        chat["reasoning_effort"] = effort
    return include


def chat_request_from_gemini(body: Any, model: str, stream: bool) -> GeminiCall:
    """A decoded ``GenerateContentRequest`` for ``model`` (from the URL path) as an OpenAI
    chat request (module docstring for what is dropped). Raises ``ClientError`` (400,
    ``invalid_request_error``) naming the JSON path of the first value it cannot
    translate."""
    if type(body) is not dict:
        raise ClientError("request body must be a JSON object", code="invalid_json")
    if type(model) is not str or not model:
        raise _bad("model", "expected a model name in the path")
    if _get(body, "cachedContent") is not None:
        raise _bad("cachedContent", "cached contents live at Google and cannot be used here; "
                   "send the contents themselves")
    messages: list[dict[str, Any]] = []
    system = _get(body, "systemInstruction")
    if system is not None:
        text = _system(system, "systemInstruction")
        if text:
            messages.append({"role": "system", "content": text})
    contents = _get(body, "contents")
    if contents is None:
        raise _bad("contents", "field required")
    if type(contents) is not list or not contents:
        raise _bad("contents", "expected a non-empty list")
    history = _History(messages)
    for i, content in enumerate(contents):
        history.turn(i, content)
    chat: dict[str, Any] = {"model": model, "messages": messages}
    tools, dropped = _tools(_get(body, "tools"))
    if tools:
        chat["tools"] = tools
    tool_config = _get(body, "toolConfig")
    if tool_config is not None:
        choice = _tool_choice(tool_config, [t["function"]["name"] for t in tools])
        if choice is not None and tools:
            chat["tool_choice"] = choice
    config = _get(body, "generationConfig")
    include = _generation(config, chat) if config is not None else False
    if stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return GeminiCall(chat=chat, model=model, stream=bool(stream), include_thoughts=include,
                      dropped_tools=dropped)


# -- ids, errors ---------------------------------------------------------------------------------

def call_id(seed: str, name: str) -> str:
    """``call_`` + 24 characters derived from ``seed`` (where the call is) and its name."""
    return "call_" + _digest("call", seed, name, length=24)


def response_id(seed: str) -> str:
    """A ``responseId`` (22 characters, Gemini's length) derived from ``seed``."""
    return _digest("gemini-response", seed)


_STATUSES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
             404: "NOT_FOUND", 408: "DEADLINE_EXCEEDED", 409: "ABORTED",
             429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL",
             501: "UNIMPLEMENTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE",
             504: "DEADLINE_EXCEEDED", 529: "UNAVAILABLE"}


def google_status_for(status: int) -> str:
    """The ``google.rpc.Code`` name Google pairs with an HTTP status (other 4xx:
    INVALID_ARGUMENT, other 5xx: INTERNAL)."""
    if status in _STATUSES:
        return _STATUSES[status]
    return "INVALID_ARGUMENT" if 400 <= status < 500 else "INTERNAL"


def _error_object(status: int, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": message,
                      "status": google_status_for(status)}}


def google_error_body(status: int, message: str) -> bytes:
    """The body of a Google API error: ``{"error": {"code", "message", "status"}}``."""
    return dumps(_error_object(status, message))


# -- whole answers -------------------------------------------------------------------------------

_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "content_filter": "SAFETY",
           "tool_calls": "STOP", "function_call": "STOP"}


def _finish(reason: Any) -> str:
    return _FINISH.get(reason, "STOP") if type(reason) is str else "STOP"


def _count(v: Any) -> int:
    return v if type(v) is int and v >= 0 else 0


def usage_metadata(usage: Any) -> dict[str, int]:
    """OpenAI usage → ``usageMetadata``: ``candidatesTokenCount`` is the completion less its
    reasoning tokens (``thoughtsTokenCount``, present when not 0); cached prompt tokens are
    ``cachedContentTokenCount`` (present when not 0); the total is prompt + completion."""
    if type(usage) is not dict:
        usage = {}
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    details = usage.get("completion_tokens_details")
    thoughts = min(_count(details.get("reasoning_tokens")) if type(details) is dict else 0,
                   completion)
    pdetails = usage.get("prompt_tokens_details")
    cached = _count(pdetails.get("cached_tokens")) if type(pdetails) is dict else 0
    out = {"promptTokenCount": prompt, "candidatesTokenCount": completion - thoughts,
           "totalTokenCount": prompt + completion}
    if cached:
        out["cachedContentTokenCount"] = cached
    if thoughts:
        out["thoughtsTokenCount"] = thoughts
    return out


def _signature(call: dict[str, Any]) -> str | None:
    extra = call.get("extra_content")
    google = extra.get("google") if type(extra) is dict else None
    sig = google.get("thought_signature") if type(google) is dict else None
    return sig if type(sig) is str and sig else None


def _call_part(cid: str, name: str, args: dict[str, Any], sig: str | None) -> dict[str, Any]:
    part: dict[str, Any] = {"functionCall": {"id": cid, "name": name, "args": args}}
    if sig:
        part["thoughtSignature"] = sig
    return part


def _answer_parts(message: dict[str, Any], include_thoughts: bool,
                  seed: str) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    reasoning = _reasoning(message)
    if include_thoughts and type(reasoning) is str and reasoning:
        parts.append({"text": reasoning, "thought": True})
    for key in ("content", "refusal"):
        text = message.get(key)
        if type(text) is str and text:
            parts.append({"text": text})
    calls = message.get("tool_calls")
    for i, call in enumerate(calls if type(calls) is list else ()):
        if type(call) is not dict:
            continue
        fn = call.get("function")
        fn = fn if type(fn) is dict else {}
        cid, name = call.get("id"), fn.get("name")
        name = name if type(name) is str else ""
        parts.append(_call_part(cid if type(cid) is str and cid else call_id(f"{seed}:{i}",
                                                                                name),
                                name, _args(fn.get("arguments")), _signature(call)))
    return parts


def gemini_response_from_chat(chat: dict[str, Any], model: str,
                              include_thoughts: bool) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` as a ``GenerateContentResponse``, one candidate per
    choice (one candidate with no parts when there is no choice)."""
    seed = chat.get("id")
    seed = seed if type(seed) is str else ""
    candidates: list[dict[str, Any]] = []
    choices = chat.get("choices")
    for k, choice in enumerate(choices if type(choices) is list else ()):
        if type(choice) is not dict:
            continue
        message = choice.get("message")
        message = message if type(message) is dict else {}
        index = choice.get("index")
        index = index if type(index) is int and index >= 0 else k
        candidates.append({"content": {"role": "model",
                                       "parts": _answer_parts(message, include_thoughts,
                                                              f"{seed}:{index}")},
                           "finishReason": _finish(choice.get("finish_reason")),
                           "index": index})
    if not candidates:
        candidates.append({"content": {"role": "model", "parts": []}, "finishReason": "STOP",
                           "index": 0})
    return {"candidates": candidates, "usageMetadata": usage_metadata(chat.get("usage")),
            "modelVersion": model, "responseId": response_id(seed)}


# -- streams -------------------------------------------------------------------------------------

class _Call:
    """A streamed tool call whose arguments are still coming."""

    __slots__ = ("args", "id", "index", "name", "sig")

    def __init__(self, index: int, cid: str, name: str, sig: str | None) -> None:
        self.index = index
        self.id = cid
        self.name = name
        self.args: list[str] = []
        self.sig = sig


class GeminiStream:
    """OpenAI chat-completion chunks in, Gemini's ``streamGenerateContent`` stream out.

    ``sse=True`` (``?alt=sse``): each ``GenerateContentResponse`` is one
    ``data: {…}\\r\\n\\r\\n`` event (Google's framing). ``sse=False``: a JSON array written
    piece by piece, ``[`` before the first object, ``,\\r\\n`` between objects, ``]`` at the
    end (what the API sends without ``alt``).

    ``feed(data)`` takes one ``StreamChunk``'s bytes (``data: {…}\\n\\n``, one or more whole
    events; blank lines, ``[DONE]``, other SSE fields and payloads that are not JSON objects
    are ignored) and returns one ``GenerateContentResponse`` per chunk that carried content:
    text (``content``, ``refusal``) as text parts, reasoning (``reasoning_content`` or
    ``reasoning``) as ``thought: true`` parts when ``include_thoughts``, tool calls as one
    ``functionCall`` part each, sent once its arguments are complete: when another call,
    text or thought comes, or at the end (a fragment for an index whose call was sent is
    dropped; a new ``id`` on an index already seen starts a new call). ``end(usage)`` sends
    the last response, with what is still held, ``finishReason`` and ``usageMetadata`` (the
    last usage seen, ``end``'s over any chunk's; its parts are ``[{"text": ""}]`` when nothing
    is held, as Gemini's own last chunk often is). ``fail(status, message)`` ends the stream
    with a Google error object instead (an SSE event, or the array's last element). A chunk
    with an ``error`` object ends the stream like ``fail`` (its status from ``error.code``
    when it is an HTTP status, else 500). Nothing comes out after the end. Only the first
    choice is read. ``responseId`` is ``response_id`` of ``request_id`` when given, else of
    the first chunk's ``id``; ``modelVersion`` is ``model``.
    """

    def __init__(self, model: str, include_thoughts: bool, sse: bool,
                 request_id: str | None = None) -> None:
        self.model = model
        self.include_thoughts = include_thoughts
        self.sse = sse
        self._request_id = request_id
        self._id: str | None = None
        self._wrote = False  # an object (and, in an array, the "[") went out
        self._closed = False
        self._call: _Call | None = None
        self._seen: dict[int, str] = {}  # OpenAI tool index → the id of its last call
        self._calls = 0
        self._finish: Any = None
        self._usage: dict[str, Any] | None = None

    @property
    def closed(self) -> bool:
        """Whether the last response or an error went out."""
        return self._closed

    # -- the door

    def feed(self, data: bytes) -> bytes:
        if self._closed:
            return b""
        out: list[bytes] = []
        for chunk in chat_chunks(data):
            self._chunk(chunk, out)
            if self._closed:
                break
        return b"".join(out)

    def end(self, usage: dict[str, Any] | None = None) -> bytes:
        if self._closed:
            return b""
        if type(usage) is dict:
            self._usage = usage
        self._start(None)
        parts: list[dict[str, Any]] = []
        self._flush(parts)
        out = self._frame(self._response(parts or [{"text": ""}], last=True))
        self._closed = True
        return out + (b"" if self.sse else b"]")

    def fail(self, status: int, message: str) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        out = self._frame(_error_object(status, message))
        return out + (b"" if self.sse else b"]")

    # -- the machine

    def _start(self, seed: Any) -> None:
        if self._id is None:
            if self._request_id is not None:
                seed = self._request_id
            self._id = response_id(seed if type(seed) is str else self.model)

    def _frame(self, obj: dict[str, Any]) -> bytes:
        if self.sse:
            return b"data: " + dumps(obj) + b"\r\n\r\n"
        head = b",\r\n" if self._wrote else b"["
        self._wrote = True
        return head + dumps(obj)

    def _response(self, parts: list[dict[str, Any]], last: bool = False) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}}
        if last:
            candidate["finishReason"] = _finish(self._finish)
        candidate["index"] = 0
        obj: dict[str, Any] = {"candidates": [candidate]}
        if last:
            obj["usageMetadata"] = usage_metadata(self._usage)
        obj["modelVersion"] = self.model
        obj["responseId"] = self._id
        return obj

    def _flush(self, parts: list[dict[str, Any]]) -> None:
        call = self._call
        if call is not None:
            self._call = None
            parts.append(_call_part(call.id, call.name, _args("".join(call.args)), call.sig))

    def _chunk(self, chunk: dict[str, Any], out: list[bytes]) -> None:
        error = chunk.get("error")
        if error:
            err = error if type(error) is dict else {}
            code, text = err.get("code"), err.get("message")
            status = code if type(code) is int and 400 <= code < 600 else 500
            out.append(self.fail(status, text if type(text) is str else str(error)))
            return
        usage = chunk.get("usage")
        if type(usage) is dict:
            self._usage = usage
        self._start(chunk.get("id"))
        parts: list[dict[str, Any]] = []
        for delta, finish in first_choice(chunk):
            if delta is not None:
                self._content(delta, parts)
            if finish is not None:
                self._finish = finish
        if parts:
            out.append(self._frame(self._response(parts)))

    def _content(self, delta: dict[str, Any], parts: list[dict[str, Any]]) -> None:
        reasoning = _reasoning(delta)
        if self.include_thoughts and type(reasoning) is str and reasoning:
            self._flush(parts)
            parts.append({"text": reasoning, "thought": True})
        for key in ("content", "refusal"):
            text = delta.get(key)
            if type(text) is str and text:
                self._flush(parts)
                parts.append({"text": text})
        calls = delta.get("tool_calls")
        if type(calls) is list:
            for call in calls:
                if type(call) is dict:
                    self._tool(call, parts)

    def _tool(self, call: dict[str, Any], parts: list[dict[str, Any]]) -> None:
        index = call.get("index", 0)
        if type(index) is not int:
            return
        cid = call.get("id")
        cid = cid if type(cid) is str and cid else None
        fn = call.get("function")
        fn = fn if type(fn) is dict else {}
        args = fn.get("arguments")
        current = self._call
        if current is not None and current.index == index and cid in (None, current.id):
            pass  # more of the open call
        elif index in self._seen and cid in (None, self._seen[index]):
            return  # a fragment of a call already sent: dropped
        else:
            self._flush(parts)
            name = fn.get("name")
            name = name if type(name) is str else ""
            tid = cid or call_id(f"{self._id}:{self._calls}", name)
            self._calls += 1
            current = self._call = _Call(index, tid, name, _signature(call))
            self._seen[index] = tid
        if type(args) is str and args:
            current.args.append(args)


# -- countTokens and models ----------------------------------------------------------------------

#: the estimate's fixed costs, in tokens: per content (and for the system instruction), per
#: function declaration, per media part (Gemini's cost of one image up to 384 px)
CONTENT_OVERHEAD = 4
TOOL_OVERHEAD = 16
MEDIA_TOKENS = 258


def _part_cost(part: Any) -> tuple[int, int]:
    """(characters, fixed tokens) of one part, tolerant of any shape."""
    if type(part) is not dict:
        return 0, 0
    text = _get(part, "text")
    if type(text) is str:
        return len(text), 0
    if _get(part, "inlineData") is not None or _get(part, "fileData") is not None:
        return 0, MEDIA_TOKENS
    for key, inner in (("functionCall", "args"), ("functionResponse", "response")):
        value = _get(part, key)
        if type(value) is dict:
            name = _get(value, "name")
            return (len(name) if type(name) is str else 0) + \
                len(dumps(_get(value, inner) or {})), 0
    return 0, 0


def _content_cost(content: Any) -> tuple[int, int]:
    if type(content) is str:
        return len(content), CONTENT_OVERHEAD
    if type(content) is not dict:
        return 0, CONTENT_OVERHEAD
    chars, fixed = 0, CONTENT_OVERHEAD
    parts = _get(content, "parts")
    for part in parts if type(parts) is list else ():
        c, f = _part_cost(part)
        chars, fixed = chars + c, fixed + f
    return chars, fixed


def estimate_tokens(body: Any) -> int:
    """A deterministic estimate of a ``countTokens`` request's tokens (its ``contents``, or
    those of its ``generateContentRequest``, with that request's system instruction and
    tools): the characters of every text (function calls' names and arguments and function
    responses as JSON included; each function declaration as JSON) divided by 4 and rounded
    up, plus ``CONTENT_OVERHEAD`` per content and for the system instruction,
    ``TOOL_OVERHEAD`` per declaration and ``MEDIA_TOKENS`` per inline or file part. Any shape
    is accepted (what it does not know counts 0)."""
    if type(body) is not dict:
        return 0
    sources = [body]
    inner = _get(body, "generateContentRequest")
    if type(inner) is dict:
        sources.append(inner)
    chars = fixed = 0
    for source in sources:
        system = _get(source, "systemInstruction")
        if system is not None:
            c, f = _content_cost(system)
            chars, fixed = chars + c, fixed + f
        contents = _get(source, "contents")
        for content in contents if type(contents) is list else ():
            c, f = _content_cost(content)
            chars, fixed = chars + c, fixed + f
        tools = _get(source, "tools")
        for tool in tools if type(tools) is list else ():
            decls = _get(tool, "functionDeclarations") if type(tool) is dict else None
            for decl in decls if type(decls) is list else ():
                fixed += TOOL_OVERHEAD
                chars += len(dumps(decl))
    return math.ceil(chars / 4) + fixed


def count_tokens_response(n: int) -> dict[str, Any]:
    """The ``countTokens`` answer."""
    return {"totalTokens": n}


#: what every model listed here supports
GENERATION_METHODS = ("generateContent", "streamGenerateContent", "countTokens")


def model_entry(name: str) -> dict[str, Any]:
    """One ``Model`` resource (``GET /v1beta/models/{name}``)."""
    return {"name": f"models/{name}", "baseModelId": name, "version": "001",
            "displayName": name, "description": f"{name}, served by the gateway",
            "supportedGenerationMethods": list(GENERATION_METHODS)}


def models_list(names: list[str]) -> dict[str, Any]:
    """The ``GET /v1beta/models`` answer (one page: no ``nextPageToken``)."""
    return {"models": [model_entry(n) for n in names]}


#: the methods ``parse_model_path`` splits off (any other text after a colon is part of the
#: model name, as in ``llama3:8b``)
_METHODS = frozenset({"generateContent", "streamGenerateContent", "countTokens",
                      "embedContent", "batchEmbedContents", "batchGenerateContent",
                      "predict", "predictLongRunning"})
_PREFIXES = ("/v1beta/models/", "/v1/models/", "/v1alpha/models/")


def parse_model_path(path: str) -> tuple[str, str] | None:
    """``/v1beta/models/{model}:{method}`` (or ``/v1/``, ``/v1alpha/``; any query string is
    ignored) → ``(model, method)``, the model URL-decoded; the model may hold slashes (the
    google-genai SDK sends ``models/openai/gpt-4o:generateContent`` for ``openai/gpt-4o``) and
    colons (the method is the text after the last one, when it is a known method). A path
    naming a model and no known method gives ``(model, "")``: the model resource itself.
    None when the path is not under ``models/`` or names no model."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    for prefix in _PREFIXES:
        if path.startswith(prefix):
            rest = unquote(path[len(prefix):])
            break
    else:
        return None
    model, sep, method = rest.rpartition(":")
    if not sep or method not in _METHODS:
        model, method = rest, ""
    if not model or model.endswith("/"):
        return None
    return model, method
