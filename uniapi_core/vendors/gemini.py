"""Gemini (Google AI Studio ``generateContent`` / ``streamGenerateContent?alt=sse``).

The protocol rules are in docs/vendor-rules.md, "Gemini" (tags GEM-…).

Theory of operation
-------------------
``build_exchange`` turns one OpenAI chat request, read from the request model
(``uniapi_core/request.py``: the shapes are sorted there, the 400 texts stay here), into one Gemini
request. The URL is the provider's ``base_url`` cut after its API version (GEM-1, GEM-2, GEM-4); the
key travels in ``x-goog-api-key`` only (GEM-3). Messages are converted in order (``_History``):
``system``/``developer`` text becomes ``systemInstruction``; ``user`` parts become text and
``inlineData`` parts (data URLs are decoded and re-encoded; remote URLs come from ``ctx.images`` or
raise ``ImagesNeeded`` naming every missing one: REQ-4). A ``file`` part's ``file_data`` data URL,
and the bytes the gateway fetched for its ``file_url`` (from ``ctx.images`` like a remote image,
its media type as fetched, ``%PDF-`` read as a PDF; missing ones join the images in
``ImagesNeeded``), become ``inlineData`` counted in the 20 MiB inline limit (a 413 past it); a
``file_id`` the host can read becomes ``fileData`` (a Files API name ``files/<id>`` or its URI on
the Gemini API, a ``gs://`` object on Vertex; ``mimeType`` from the filename's extension, else
PDF), any other ``file_id`` is a 400 ``unsupported_content`` (docs/vendor-rules.md, "Gemini
reads documents and audio inline", "Gemini fetched documents", "Gemini file ids"); an
``assistant`` message becomes one
``model`` content, its text then one ``functionCall`` per tool call; a run of ``tool`` messages
becomes ONE user content of ``functionResponse`` parts whose names come from the assistant's calls
(GEM-R2, GEM-R4, REQ-2, TC-6). Consecutive plain contents of one role are merged (GEM-R2); a
function-response turn stays on its own so Gemini's call/response part counts match. Empty text is
dropped (GEM-R3). Tool schemas go through ``_Schema`` (docs/vendor-rules.md, "Tool schemas cleaned
for Gemini": allow-list of Schema keywords, ``$ref`` inlining under a node budget, nullable types,
``const``, ``default`` into the description). A ``json_schema`` response format goes whole
into ``responseJsonSchema`` on Gemini 2.5 and later, else through ``_Schema`` into
``responseSchema`` with the constraints it cannot hold written into descriptions
(``_RESPONSE_SCHEMA_FIELD``; docs/vendors.md, "Structured outputs"). Fields are mapped through
``MAPPED``; ``DROPPED`` and every unknown field are never copied (REQ-3, GEM-R1). Thinking
follows the per-model ``_THINKING`` table (docs/vendor-rules.md, "Gemini thinking
configuration"); ``-search`` aliases add Google Search and safetySettings are fixed
(docs/vendor-rules.md, "Gemini -search aliases and safety settings").

Thought signatures (GEM-R4) make a round trip without server state: a ``functionCall`` part's
``thoughtSignature`` goes to the client as the tool call's
``extra_content.google.thought_signature`` (the form Google's own OpenAI endpoint uses; a
Gemini ``functionCall.id`` rides along as ``function_call_id``), and comes back from there into
the replayed part. A caller-owned store can fill in for clients that drop ``extra_content``
(``signatures=`` in, ``thought_signatures`` out); Gemini 3 gets the documented placeholder when
neither knows the signature. Tool-call ids stay ``call_`` + 24 characters (TC-4).

``GeminiExchange.parse_body`` reads every candidate (GEM-N1..N3). ``GeminiStreamDecoder`` is an
``SSEVendorDecoder`` (SSE framing, LF/CRLF/CR): any error is met in stream order, what was
completed before it is returned and the error is raised by the next call, so every split of the
bytes gives identical items and errors (DEC-1, DEC-2); an error object or a blocked prompt is
terminal and nothing after it is read (DEC-4). Each
``GenerateContentResponse`` goes through ``ChunkWriter`` (S-1..S-8): text, ``thought`` parts as
reasoning, each ``functionCall`` as one complete tool call, indexes continuing across chunks
(GEM-S1, GEM-S2, TC-1..TC-4). A call whose arguments come in pieces
(``streamFunctionCallArguments``: a named part with ``willContinue``, then ``partialArgs`` items
addressed by RFC 9535 paths) is assembled by ``_Pieces`` and goes out whole when it ends, with
its first part's name (GEM-S3); whole bodies read parts the same way. ``usageMetadata`` is kept, never summed (U-3). A
``finishReason`` ends the content (DEC-4), but the finish chunk, the usage chunk and
``StreamDone`` wait for EOF, so a trailing usage-only object still counts (GEM-S6); EOF after
the finish, even inside a line, is a complete answer, EOF before it a truncation (DEC-5).
A one-part text chunk in Gemini's own layout is recognised by one regex and mapped without
being parsed (its ``usageMetadata`` is parsed only when its text changes); the items are the
ones the general way gives (tests/core/vendors/test_fastpaths.py).
Errors follow docs/contracts.md, "Error status mapping", and GEM-S7, with
``RetryInfo.retryDelay`` as ``retry-after`` (ERR-2); a blocked prompt is a 400
``content_filter`` (GEM-N3, ERR-4).
"""

from __future__ import annotations

import base64
import binascii
import functools
import itertools
import json
import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from ..errors import ClientError, DecodeError, UpstreamError
from ..jsonutil import MAX_DEPTH, dumps, loads_strict
from ..request import ChatRequest, Message, chat_request
from .base import (GOOGLE_STATUS_TYPES, ChatContext, ImagesNeeded, SSEVendorDecoder, StreamChunk,
                   StreamDone, StreamFailed, StreamItem, UpstreamRequest, error_from_body,
                   implied_status)
from .chunks import ChunkWriter, completion, usage_object
from .openai import merge_headers
from .toolkit import STATUS_TYPES_NO_409, b64decode_loose, bad as _bad, call_id, data_url
from .toolkit import positive_int, retry_after, sniff, status_error, status_type, typed

__all__ = ["DEFAULT_BASE", "SIGNATURE_PLACEHOLDER", "MAX_INLINE_BYTES", "FILES_URI",
           "FILE_TYPES", "MAPPED", "DROPPED", "file_uri",
           "gemini_base", "build_exchange", "GeminiExchange", "GeminiStreamDecoder"]

DEFAULT_BASE = "https://generativelanguage.googleapis.com/v1beta"
SIGNATURE_PLACEHOLDER = "skip_thought_signature_validator"
#: AI Studio's inline-data request limit (docs/vendor-rules.md, "Gemini images are sent inline")
MAX_INLINE_BYTES = 20 * 1024 * 1024
_SCHEMA_BUDGET = 10_000  # schema nodes after $ref inlining
#: where a Gemini API Files API name (``files/<id>``) lives: its ``fileUri``
#: (docs/vendor-rules.md, "Gemini file ids", as the file-id rules below)
FILES_URI = "https://generativelanguage.googleapis.com/v1beta/files/"
#: a ``file_id`` the Gemini API reads: a Files API name or its full URI; an id is up to 40
#: lowercase letters, digits and dashes, not starting or ending with a dash
_GEMINI_FILE = re.compile(r"(?:files/|" + re.escape(FILES_URI) +
                          r")([a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?)")
#: a ``file_id`` Vertex reads: a Cloud Storage object ``gs://<bucket>/<object>``
_GCS_OBJECT = re.compile(r"gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]/[^\s]+")
#: file extension -> the ``mimeType`` of a ``fileData`` part: a fixed table, because
#: ``mimetypes`` reads the system's tables on first use; anything else is sent as a PDF
FILE_TYPES = {
    "pdf": "application/pdf", "txt": "text/plain", "text": "text/plain",
    "md": "text/markdown", "markdown": "text/markdown", "csv": "text/csv",
    "html": "text/html", "htm": "text/html", "json": "application/json",
    "xml": "text/xml", "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
    "gif": "image/gif", "webp": "image/webp", "heic": "image/heic", "heif": "image/heif",
}

_NAME_OK = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}\Z")  # TC-6, Gemini's rule
_VERSION = re.compile(r"/v1(?:beta)?(?=/|$)")
_MODELS = re.compile(r"/models(?:[/:]|$)")
_DELAY = re.compile(r"\d{1,9}(?:\.\d{1,9})?s\Z")
_SIGNATURE_REQUIRED = re.compile(r"gemini-3")  # models that 400 on unsigned replayed calls
_THINK_ALIAS = re.compile(r"-think-(\d{1,7})(?=-|$)")

#: OpenAI field (a ``Sampling`` attribute) -> generationConfig field, in the order they are
#: checked and written (docs/vendor-rules.md, GEM-R1)
_GENERATION: tuple[tuple[str, str], ...] = (
    ("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK"),
    ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty"),
    ("seed", "seed"),
)
#: every OpenAI field this translator maps (REQ-3); ``DROPPED`` lists the ones dropped on
#: purpose, and any other field is dropped too: nothing is copied into the body unmapped
MAPPED = frozenset({"model", "messages", "tools", "tool_choice", "max_tokens", "stop", "n",
                    "max_completion_tokens", "response_format", "reasoning_effort",
                    *(field for field, _ in _GENERATION)})
DROPPED: dict[str, str] = {
    "stream": "the URL decides", "stream_options": "include_usage is handled by the gateway",
    "user": "no Gemini field", "logit_bias": "no Gemini field",
    "parallel_tool_calls": "Gemini decides", "logprobs": "logprobs are not relayed",
    "top_logprobs": "logprobs are not relayed", "store": "OpenAI only",
    "metadata": "OpenAI only", "service_tier": "OpenAI only",
}
#: Gemini finishReason -> OpenAI; STOP with calls becomes tool_calls (docs/contracts.md,
#: "Finish reasons"; docs/vendor-rules.md, GEM-N2)
_FINISH: dict[str, str] = {
    "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter", "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter", "IMAGE_RECITATION": "content_filter",
}
#: google.rpc status -> OpenAI error type (docs/contracts.md, "Error status mapping";
#: docs/vendor-rules.md, GEM-S7)
_ERROR_TYPES: dict[str, str] = GOOGLE_STATUS_TYPES
_SAFETY_CATEGORIES = ("HARM_CATEGORY_HARASSMENT", "HARM_CATEGORY_HATE_SPEECH",
                      "HARM_CATEGORY_SEXUALLY_EXPLICIT", "HARM_CATEGORY_DANGEROUS_CONTENT")
_SAFETY_THRESHOLD = "BLOCK_NONE"
_TOOL_CHOICE: dict[str, str] = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
_FORMAT_ERROR = "'response_format' must be text, json_object or json_schema"
_EFFORT_ERROR = "'reasoning_effort' must be none, minimal, low, medium or high"
#: upstream model pattern -> ("budget", min, max, 0 disables) or ("level", effort -> level)
_THINKING: tuple[tuple[re.Pattern[str], tuple[Any, ...]], ...] = (
    (re.compile(r"gemini-3[.\d]*-pro"), ("level", {"none": "low", "minimal": "low", "low": "low",
                                                   "medium": "high", "high": "high"})),
    (re.compile(r"gemini-3"), ("level", {"none": "minimal", "minimal": "minimal", "low": "low",
                                         "medium": "medium", "high": "high"})),
    (re.compile(r"gemini-2\.5-pro"), ("budget", 128, 32768, False)),
    (re.compile(r"gemini-2\.5-flash-lite"), ("budget", 512, 24576, True)),
    (re.compile(r"gemini-2\.5|gemini-(?:flash|pro)(?:-lite)?-latest|thinking"),
     ("budget", 1, 24576, True)),
)
_EFFORT_BUDGET: dict[str, int] = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192,
                                  "high": 24576}
#: Schema keywords Gemini accepts, with the value types kept (the allow-list of
#: docs/vendor-rules.md, "Tool schemas cleaned for Gemini")
_SCHEMA_SCALARS: dict[str, tuple[type, ...]] = {
    "description": (str,), "nullable": (bool,), "pattern": (str,),
    "minItems": (int,), "maxItems": (int,), "minLength": (int,), "maxLength": (int,),
    "minProperties": (int,), "maxProperties": (int,), "minimum": (int, float),
    "maximum": (int, float), "propertyOrdering": (list,),
}
#: Which generationConfig field a ``json_schema`` response format goes in, by upstream model
#: (docs/vendors.md, "Structured outputs"; first pattern that matches the lower-cased model).
#: Gemini 2.5 and later (and the ``-latest`` aliases, which point at them) take
#: ``responseJsonSchema``: JSON Schema sent whole ($ref/$defs, anyOf, prefixItems, bounds…).
#: Any other model (1.x, 2.0, Gemma, tuned or unknown names) gets ``responseSchema``, the
#: OpenAPI-subset Schema object made by ``_Schema`` with ``notes=True``.
_RESPONSE_SCHEMA_FIELD: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"gemini-(?:2\.[5-9]|[3-9](?![\d])|[1-9]\d)"), "responseJsonSchema"),
    (re.compile(r"gemini-(?:flash|pro)(?:-lite)?-latest"), "responseJsonSchema"),
)
#: JSON Schema constraints the Schema object cannot hold. In a response schema bound for
#: ``responseSchema`` they are not dropped but written into the node's ``description`` as
#: ``Constraints: <json>`` (with a string ``format`` other than enum/date-time), so the model
#: still reads them; tool schemas drop them as before (docs/vendor-rules.md, "Tool schemas
#: cleaned for Gemini"). ``additionalProperties: false`` needs no note: Gemini only writes the
#: properties the schema declares.
_NOTED_KEYWORDS = ("exclusiveMinimum", "exclusiveMaximum", "multipleOf", "uniqueItems",
                   "contains", "minContains", "maxContains", "prefixItems",
                   "additionalProperties", "patternProperties", "propertyNames",
                   "dependentRequired", "dependentSchemas", "unevaluatedProperties",
                   "unevaluatedItems", "not", "if", "then", "else")


# -- request -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)  # pure, and called with one provider's base_url per attempt
def gemini_base(base_url: str | None) -> str:
    """``scheme://host/<prefix>/v1beta`` (or ``/v1``) from any base_url form (GEM-1)."""
    if not base_url:
        return DEFAULT_BASE
    parts = urlsplit(base_url)
    path = parts.path
    cut = _MODELS.search(path)
    if cut:
        path = path[:cut.start()]
    versions = list(_VERSION.finditer(path))
    path = path[:versions[-1].end()] if versions else path.rstrip("/") + "/v1beta"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def build_exchange(chat: ChatRequest | dict[str, Any], ctx: ChatContext, *,
                   signatures: Mapping[str, str] | None = None,
                   vertex: bool = False) -> GeminiExchange:
    """The Gemini request for one attempt, built from the request model (a dict is parsed
    first; docs/architecture.md, "The request model"). ``signatures`` is an optional
    caller-owned store ``tool_call_id -> thoughtSignature`` (GEM-R4) used when the history lacks
    ``extra_content``. ``vertex``: the body is for Vertex, whose ``file_id``s are Cloud
    Storage objects ("Gemini file ids"). Raises ``ClientError`` (400) for requests Gemini
    cannot take, ``ImagesNeeded`` for remote images and documents not yet in
    ``ctx.images``."""
    if type(chat) is not ChatRequest and not isinstance(chat, dict):
        raise _bad("the request must be a JSON object")
    req = chat_request(chat)
    if not req.messages:  # absent, not a list, or empty
        raise _bad("'messages' must be a non-empty list")
    n = req.sampling.n
    if "n" in req.invalid or (n is not None and n < 1):
        raise _bad("'n' must be a positive integer")
    if n and n > 1 and ctx.stream:
        raise _bad("'n' > 1 cannot be streamed from gemini", "unsupported_parameter")
    system, contents = _History(ctx, signatures, vertex).convert(req.messages)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    declarations = _declarations(req)
    tools: list[dict[str, Any]] = [{"functionDeclarations": declarations}] if declarations else []
    if ctx.client_model.endswith("-search"):  # docs/vendor-rules.md, Gemini -search
        tools.append({"googleSearchRetrieval": {}} if "gemini-1.5" in ctx.upstream_model
                     else {"googleSearch": {}})
    if tools:
        body["tools"] = tools
    tool_config = _tool_config(req, declarations)
    if tool_config:
        body["toolConfig"] = {"functionCallingConfig": tool_config}
    body["safetySettings"] = [{"category": c, "threshold": _SAFETY_THRESHOLD}
                              for c in _SAFETY_CATEGORIES]
    config = _generation_config(req, ctx)
    if config:
        body["generationConfig"] = config
    model = quote(ctx.upstream_model.removeprefix("models/"), safe="-._~@")
    url = f"{gemini_base(ctx.provider.base_url)}/models/{model}:" + (
        "streamGenerateContent?alt=sse" if ctx.stream else "generateContent")
    headers = [("content-type", "application/json")]
    if ctx.api_key:
        headers.append(("x-goog-api-key", ctx.api_key))
    try:
        data = dumps(body)
    except ValueError:  # a float the client sent that JSON cannot carry (1e999)
        raise _bad("the request holds a number out of JSON's range") from None
    request = UpstreamRequest("POST", url, merge_headers(headers, ctx.provider.preferences.headers),
                              data)
    return GeminiExchange(request, ctx)


def file_uri(file_id: str, *, vertex: bool = False) -> str | None:
    """The ``fileUri`` of a ``file_id`` the host can read, else None ("Gemini file ids"): on
    the Gemini API a Files API name ``files/<id>`` or its URI (both give the URI), on Vertex
    a ``gs://<bucket>/<object>`` URI (as given)."""
    if vertex:
        return file_id if _GCS_OBJECT.fullmatch(file_id) else None
    m = _GEMINI_FILE.fullmatch(file_id)
    return FILES_URI + m.group(1) if m else None


class _History:
    """OpenAI messages -> (systemInstruction parts, contents) (docs/vendor-rules.md,
    GEM-R1..R4)."""

    def __init__(self, ctx: ChatContext, signatures: Mapping[str, str] | None,
                 vertex: bool = False) -> None:
        self.ctx = ctx
        self.signatures = signatures or {}
        self.vertex = vertex  # file ids are Cloud Storage objects, not Files API names
        self.calls: dict[str, tuple[str, str | None]] = {}  # tool_call_id -> (name, gemini id)
        self.missing: list[str] = []  # remote images and documents, in request order
        self.inline = 0

    def convert(self, messages: tuple[Message, ...]
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        system: list[dict[str, Any]] = []
        contents: list[dict[str, Any]] = []
        for i, m in enumerate(messages):
            if not m.obj:
                raise _bad(f"messages[{i}] must be an object")
            role = m.role
            if role == "system" or role == "developer":
                system += [{"text": t} for t in _texts(m, i)]
            elif role == "user":
                _append(contents, "user", self.user_parts(m, i))
            elif role == "assistant":
                _append(contents, "model", self.model_parts(m, i))
            elif role == "tool":
                _append(contents, "user", [self.response_part(m, i)], results=True)
            else:
                raise _bad(f"messages[{i}].role {m.raw.get('role')!r} is not supported")
        if self.missing:
            raise ImagesNeeded(self.missing)
        if not contents:
            raise _bad("the request has no user, assistant or tool content for gemini")
        return system, contents

    def user_parts(self, m: Message, i: int) -> list[dict[str, Any]]:
        if m.text is not None:
            return [{"text": m.text}] if m.text else []
        if "content" in m.invalid:
            raise _bad(f"messages[{i}].content must be a string or a list of parts")
        parts: list[dict[str, Any]] = []
        for j, p in enumerate(m.parts):
            kind = None if p.bare else p.kind  # a bare string is no part to gemini
            if kind == "text" and p.ok:
                if p.text:
                    parts.append({"text": p.text})
                continue
            where = f"messages[{i}].content[{j}]"
            if kind == "image_url":
                if p.url is None:
                    raise _bad(f"{where}.image_url.url must be a string")
                parts += self.image(p.url, where)
            elif kind == "input_audio" and p.ok:
                fmt, data = p.format, p.data
                if fmt is None or not fmt.isalnum() or data is None:
                    raise _bad(f"{where}.input_audio needs 'data' and 'format'")
                parts.append(self.inline_part(f"audio/{fmt.lower()}", _b64(data, where)))
            elif kind == "file" and p.data is not None and p.data.startswith("data:"):
                parts.append(self.inline_part(*data_url(p.data, where, flavour="gemini"),
                                              document=True))
            elif kind == "file" and p.data is None and p.url is not None:
                parts += self.remote_document(p.url, where)
            elif kind == "file" and p.file_id is not None:
                parts.append(self.file_part(p.file_id, p.filename, where))
            else:
                raise _bad(f"{where}: part type {kind!r} is not supported by gemini")
        return parts

    def image(self, url: str, where: str) -> list[dict[str, Any]]:
        if url[:5].lower() == "data:":
            return [self.inline_part(*data_url(url, where, flavour="gemini"))]
        if url[:7].lower() == "http://" or url[:8].lower() == "https://":
            fetched = self.ctx.images.get(url)
            if fetched is None:
                if url not in self.missing:
                    self.missing.append(url)
                return []
            media, data = fetched
            return [self.inline_part(sniff(data) or media or "application/octet-stream", data)]
        raise _bad(f"{where}: image URLs must be data: or http(s): URLs")

    def remote_document(self, url: str, where: str) -> list[dict[str, Any]]:
        """A ``file_url`` → ``inlineData`` from the bytes the gateway fetched ("Gemini fetched
        documents"), or nothing yet (the URL is noted for ``ImagesNeeded``)."""
        if not (url[:7].lower() == "http://" or url[:8].lower() == "https://"):
            raise _bad(f"{where}: file.file_url must be an http(s) URL")
        fetched = self.ctx.images.get(url)
        if fetched is None:
            if url not in self.missing:
                self.missing.append(url)
            return []
        declared, data = fetched
        media = declared.split(";", 1)[0].strip().lower()
        if media in ("", "application/octet-stream"):
            media = "application/pdf" if data.startswith(b"%PDF-") else sniff(data) or ""
        if "/" not in media:
            raise _bad(f"{where}: cannot tell the media type of the document at file.file_url",
                       "unsupported_content")
        return [self.inline_part(media, data, document=True)]

    def file_part(self, file_id: str, filename: str | None, where: str) -> dict[str, Any]:
        """A ``file_id`` this host can read → ``fileData`` ("Gemini file ids"); any other is a
        400."""
        uri = file_uri(file_id, vertex=self.vertex)
        if uri is None:
            host = "Vertex (a gs:// Cloud Storage URI)" if self.vertex else \
                "the Gemini API (a Files API name files/… or its URI)"
            raise _bad(f"{where}: 'file_id' {file_id!r} is not a file gemini can read (it "
                       f"cannot read OpenAI file ids; send 'file_data' as a data: URL, or on "
                       f"{host})", "unsupported_content")
        name = filename or (uri if self.vertex else "")
        ext = name.rpartition("/")[2].rpartition(".")[2].lower() if "." in name else ""
        return {"fileData": {"mimeType": FILE_TYPES.get(ext, "application/pdf"),
                             "fileUri": uri}}

    def inline_part(self, media: str, data: bytes, *, document: bool = False
                    ) -> dict[str, Any]:
        self.inline += len(data)
        if self.inline > MAX_INLINE_BYTES:
            if document:  # a file part: 413 before any upstream call (issue 20)
                raise ClientError("inline documents/images/audio exceed gemini's 20 MiB "
                                  "inline request limit", status=413,
                                  code="document_too_large")
            raise _bad("inline images/audio exceed gemini's 20 MiB request limit",
                       "request_too_large")
        return {"inlineData": {"mimeType": media, "data": base64.b64encode(data).decode()}}

    def model_parts(self, m: Message, i: int) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = [{"text": t} for t in _texts(m, i)]
        if "tool_calls" in m.invalid:
            raise _bad(f"messages[{i}].tool_calls must be a list")
        for j, tc in enumerate(m.tool_calls):
            where = f"messages[{i}].tool_calls[{j}]"
            cid = tc.id
            if not tc.ok or cid is None:
                raise _bad(f"{where} needs an 'id' and a 'function'")
            name = tc.name
            if name is None or not _NAME_OK.match(name):
                raise _bad_name(tc.raw["function"].get("name"), where)
            gid = tc.vendor_call_id
            call: dict[str, Any] = {"name": name, "args": _arguments(tc.arguments, where)}
            if gid:
                call["id"] = gid
            part: dict[str, Any] = {"functionCall": call}
            sig = tc.thought_signature or self.signatures.get(cid)
            if sig:
                part["thoughtSignature"] = sig
            elif j == 0 and _SIGNATURE_REQUIRED.search(self.ctx.upstream_model):
                part["thoughtSignature"] = SIGNATURE_PLACEHOLDER  # GEM-R4
            parts.append(part)
            self.calls[cid] = (name, gid)
        return parts

    def response_part(self, m: Message, i: int) -> dict[str, Any]:
        tid = m.tool_call_id
        if tid is None or tid not in self.calls:  # REQ-2
            raise _bad(f"messages[{i}].tool_call_id {m.raw.get('tool_call_id')!r} does not "
                       "name an earlier assistant tool call", "invalid_tool_call_id")
        name, gid = self.calls[tid]
        text = "".join(_texts(m, i))
        try:
            value = loads_strict(text)
            response = value if isinstance(value, dict) else {"result": value}
        except ValueError:
            response = {"result": text}
        result: dict[str, Any] = {"name": name, "response": response}
        if gid:
            result["id"] = gid
        return {"functionResponse": result}


def _append(contents: list[dict[str, Any]], role: str, parts: list[dict[str, Any]], *,
            results: bool = False) -> None:
    """Merge into the previous content when role and kind match (GEM-R2); drop empty ones."""
    if not parts:
        return
    if contents and contents[-1]["role"] == role and \
            ("functionResponse" in contents[-1]["parts"][0]) == results:
        contents[-1]["parts"].extend(parts)
    else:
        contents.append({"role": role, "parts": parts})


def _texts(m: Message, i: int) -> list[str]:
    """The non-empty texts of a system/assistant/tool content (string or text parts)."""
    if m.text is not None:
        return [m.text] if m.text else []
    if "content" in m.invalid:
        raise _bad(f"messages[{i}].content must be a string or a list of parts")
    out = []
    for p in m.parts:
        kind = p.kind
        if kind == "text" and p.ok and not p.bare:
            text: Any = p.text
        elif (kind == "text" or kind == "refusal") and not p.bare:
            # a ``text`` key is read first whatever the type says, then ``refusal``: a quirk
            # kept byte for byte (Cohere's too), read from ``raw`` on this rare path only
            text = p.raw.get("text", p.raw.get("refusal"))
            if type(text) is not str:
                raise _bad(f"messages[{i}].content may only hold text parts here")
        else:
            raise _bad(f"messages[{i}].content may only hold text parts here")
        if text:
            out.append(text)
    return out


def _bad_name(name: Any, where: str) -> ClientError:
    return _bad(f"{where}: tool name {name!r} is not accepted by gemini (letters, digits, "
                "'_', '.', ':', '-', at most 64, starting with a letter or '_')",
                "invalid_tool_name")


def _arguments(raw: Any, where: str) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    if isinstance(raw, dict):
        return raw
    try:
        value = loads_strict(raw) if isinstance(raw, str) else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise _bad(f"{where}.function.arguments must be a JSON object text")
    return value


def _b64(text: str, where: str) -> bytes:
    try:
        return b64decode_loose(text)
    except (binascii.Error, ValueError):
        raise _bad(f"{where}: invalid base64 data") from None


def _declarations(req: ChatRequest) -> list[dict[str, Any]]:
    if "tools" in req.invalid:
        raise _bad("'tools' must be a list")
    out = []
    for k, tool in enumerate(req.tools):
        fn = tool.function
        if fn is None or tool.type != "function":
            raise _bad(f"tools[{k}]: only function tools are supported by gemini")
        name = tool.name
        if name is None or not _NAME_OK.match(name):
            raise _bad_name(fn.get("name"), f"tools[{k}]")
        decl: dict[str, Any] = {"name": name}
        if tool.description:
            decl["description"] = tool.description
        if "parameters" in tool.invalid:
            raise _bad(f"tools[{k}].function.parameters must be an object")
        params = tool.parameters
        if params is not None:
            schema = _Schema(params).clean(params, ())
            if schema.get("properties") or schema.get("type", "object") != "object":
                decl["parameters"] = schema
        out.append(decl)
    return out


class _Schema:
    """JSON Schema -> Gemini's OpenAPI-subset Schema, bounded by a node budget
    (docs/vendor-rules.md, "Tool schemas cleaned for Gemini")."""

    def __init__(self, root: dict[str, Any], *, notes: bool = False,
                 what: str = "a tool schema") -> None:
        self.defs: dict[str, Any] = {}
        for key in ("definitions", "$defs"):
            if isinstance(root.get(key), dict):
                self.defs.update(root[key])
        self.budget = _SCHEMA_BUDGET
        self.notes = notes  # keep what cannot be kept as text in descriptions
        self.what = what

    def clean(self, node: Any, stack: tuple[str, ...], depth: int = 0) -> dict[str, Any]:
        self.budget -= 1
        if self.budget < 0 or depth > 2 * MAX_DEPTH:
            raise _bad(f"{self.what} is too large after $ref expansion")
        if not isinstance(node, dict):
            return {}
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if name in stack or not isinstance(self.defs.get(name), dict):
                cut: dict[str, Any] = {"type": "object"}  # recursive or unresolvable: cut here
                if self.notes:
                    _describe(cut, f"Constraints: {_note({'$ref': ref})}")
                return cut
            merged = {**self.defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
            return self.clean(merged, stack + (name,), depth + 1)
        out: dict[str, Any] = {}
        kept: dict[str, Any] = {}  # constraints written into the description (``notes``)
        kind = node.get("type")
        if isinstance(kind, list):
            kinds = [k for k in kind if isinstance(k, str) and k != "null"]
            if len(kinds) == 1:
                out["type"] = kinds[0]
            elif kinds:
                out["anyOf"] = [{"type": k} for k in kinds]
            if "null" in kind:
                out["nullable"] = True
        elif kind == "null":
            out["nullable"] = True
        elif isinstance(kind, str):
            out["type"] = kind
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                out["properties"] = {str(k): self.clean(v, stack, depth + 1)
                                     for k, v in value.items()}
            elif key == "items":
                out["items"] = self.clean(value[0] if isinstance(value, list) and value
                                          else value, stack, depth + 1)
            elif key in ("anyOf", "oneOf") and isinstance(value, list):
                variants = [self.clean(v, stack, depth + 1) for v in value]
                if {"nullable": True} in variants:
                    out["nullable"] = True
                variants = [v for v in variants if v != {"nullable": True}]
                if len(variants) == 1:
                    out.update({k: v for k, v in variants[0].items() if k not in out})
                elif variants:
                    out["anyOf"] = variants
            elif key == "allOf" and isinstance(value, list):
                for sub in (self.clean(v, stack, depth + 1) for v in value):
                    props = {**out.get("properties", {}), **sub.pop("properties", {})}
                    out.update({k: v for k, v in sub.items() if k != "required"})
                    if props:
                        out["properties"] = props
                    out["required"] = [*out.get("required", []), *sub.get("required", [])]
            elif key == "const":
                out["enum"] = [value]
                if isinstance(value, str) and "type" not in out:
                    out["type"] = "string"
            elif key == "enum" and isinstance(value, list):
                out["enum"] = value
            elif key == "required" and isinstance(value, list):
                out["required"] = [*out.get("required", []), *value]
            elif key == "format" and isinstance(value, str):
                if out.get("type") != "string" or value in ("enum", "date-time"):
                    out["format"] = value
                elif self.notes:
                    kept["format"] = value
            elif key in _SCHEMA_SCALARS and typed(value, _SCHEMA_SCALARS[key], bools=False):
                out[key] = value
            elif self.notes and key in _NOTED_KEYWORDS and not (
                    key == "additionalProperties" and type(value) is bool):
                kept[key] = value
        if "default" in node:
            note = _note(node["default"])
            if note:
                _describe(out, f"Default: {note}")
        if kept:
            note = _note(kept)
            if note:
                _describe(out, f"Constraints: {note}")
        if "required" in out:
            props = out.get("properties", {})
            required = list(dict.fromkeys(r for r in out["required"]
                                          if isinstance(r, str) and r in props))
            if required:
                out["required"] = required
            else:
                del out["required"]
        return out


def _note(value: Any) -> str:
    """``value`` as compact JSON text for a description ('' if it cannot be written)."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return ""


def _describe(out: dict[str, Any], note: str) -> None:
    out["description"] = f"{out['description']} {note}" if out.get("description") else note


def _response_schema_field(upstream_model: str) -> str:
    """``responseJsonSchema`` or ``responseSchema`` for this model (``_RESPONSE_SCHEMA_FIELD``)."""
    model = upstream_model.lower()
    return next((field for pattern, field in _RESPONSE_SCHEMA_FIELD if pattern.search(model)),
                "responseSchema")


def _tool_config(req: ChatRequest, declarations: list[dict[str, Any]]) -> dict[str, Any]:
    choice = req.tool_choice
    if choice is None:
        return {}
    mode = choice.mode
    if not declarations:
        if mode == "function" or mode == "required" or type(choice.raw) is dict:
            raise _bad("'tool_choice' requires 'tools'")
        if mode is None:
            raise _bad(f"'tool_choice' {choice.raw!r} is not supported")
        return {}
    if mode == "function":
        if choice.name in {d["name"] for d in declarations}:
            return {"mode": "ANY", "allowedFunctionNames": [choice.name]}
    elif mode is not None:
        return {"mode": _TOOL_CHOICE[mode]}
    raise _bad("'tool_choice' must be auto, none, required or name a declared tool")


def _generation_config(req: ChatRequest, ctx: ChatContext) -> dict[str, Any]:
    config: dict[str, Any] = {}
    sampling = req.sampling
    invalid = req.invalid
    for field, target in _GENERATION:
        if field in invalid:
            raise _bad(f"'{field}' must be a number")
        value = getattr(sampling, field)
        if value is not None:
            config[target] = value
    limit = sampling.max_tokens  # REQ-1: max_completion_tokens wins
    if "max_tokens" in invalid or (limit is not None and limit < 1):
        raise _bad("'max_completion_tokens' must be a positive integer")
    if limit is not None:
        config["maxOutputTokens"] = limit
    stop = sampling.stop
    if "stop" in invalid or (stop is not None and len(stop) > 5):
        raise _bad("'stop' must be a string or a list of at most 5 strings")
    if stop:
        config["stopSequences"] = list(stop)
    n = sampling.n
    if n is not None and n > 1:
        config["candidateCount"] = n
    if "response_format" in invalid:
        raise _bad(_FORMAT_ERROR)
    fmt = sampling.response_format
    if fmt is not None:
        kind = sampling.response_format_type
        if kind == "json_object" or kind == "json_schema":
            config["responseMimeType"] = "application/json"
            spec = fmt.get("json_schema")
            if kind == "json_schema" and type(spec) is dict \
                    and type(schema := spec.get("schema")) is dict:
                field = _response_schema_field(ctx.upstream_model)
                if field == "responseJsonSchema":  # whole, as the client wrote it
                    config[field] = schema
                else:
                    config[field] = _Schema(schema, notes=True, what="the response_format "
                                            "schema").clean(schema, ())
        elif kind != "text":
            raise _bad(_FORMAT_ERROR)
    if "reasoning_effort" in invalid:
        raise _bad(_EFFORT_ERROR)
    thinking = _thinking(req.reasoning.effort, ctx)
    if thinking:
        config["thinkingConfig"] = thinking
    return config


def _thinking(effort: str | None, ctx: ChatContext) -> dict[str, Any] | None:
    """thinkingConfig from ``reasoning_effort`` or a ``-think-N`` alias
    (docs/vendor-rules.md, "Gemini thinking configuration")."""
    if effort is not None and effort not in _EFFORT_BUDGET:
        raise _bad(_EFFORT_ERROR)
    spec = next((s for pattern, s in _THINKING if pattern.search(ctx.upstream_model.lower())),
                None)
    if spec is None:
        return None  # not a thinking model: reasoning_effort is dropped
    alias = _THINK_ALIAS.search(ctx.client_model.lower())
    config: dict[str, Any] = {"includeThoughts": True}
    if spec[0] == "level":
        if alias:
            n = int(alias.group(1))
            effort = "minimal" if n == 0 else "low" if n <= 1024 else \
                "medium" if n <= 8192 else "high"
        if effort:
            config["thinkingLevel"] = spec[1][effort]
        return config
    budget = int(alias.group(1)) if alias else _EFFORT_BUDGET.get(effort or "")
    if budget is not None:
        _, low, high, can_disable = spec
        budget = 0 if budget == 0 and can_disable else min(max(budget, low), high)
        config["thinkingBudget"] = budget
        if budget == 0:
            del config["includeThoughts"]
    return config


# -- responses -----------------------------------------------------------------------------------


def _usage(meta: Any) -> dict[str, Any]:
    """usageMetadata -> OpenAI usage (docs/contracts.md, "Usage figures", U-2)."""
    meta = meta if isinstance(meta, dict) else {}

    def n(key: str) -> int:
        return positive_int(meta.get(key))

    thoughts = n("thoughtsTokenCount")
    prompt = _by_modality(meta.get("promptTokensDetails"), meta.get("toolUsePromptTokensDetails"))
    return usage_object(n("promptTokenCount") + n("toolUsePromptTokenCount"),
                        n("candidatesTokenCount") + thoughts, n("cachedContentTokenCount"),
                        thoughts, prompt_details=prompt,
                        completion_details=_by_modality(meta.get("candidatesTokensDetails")))


def _by_modality(*lists: Any) -> dict[str, int]:
    """Gemini's ``[{"modality": "AUDIO", "tokenCount": 12}, …]`` lists -> ``{"audio_tokens":
    12, …}`` (OpenAI's ``audio_tokens`` detail; image, video and document likewise), summed
    over the lists. Text is the rest of the count, so it gets no detail of its own."""
    out: dict[str, int] = {}
    for items in lists:
        for item in items if isinstance(items, list) else ():
            if isinstance(item, dict) and isinstance(item.get("modality"), str) \
                    and item["modality"].isalpha() and item["modality"].upper() != "TEXT":
                key = item["modality"].lower() + "_tokens"
                out[key] = out.get(key, 0) + positive_int(item.get("tokenCount"))
    return out


def _finish_reason(value: Any, has_calls: bool) -> str:
    reason = _FINISH.get(value.upper(), "stop") if isinstance(value, str) else "stop"
    return "tool_calls" if reason == "stop" and has_calls else reason


def _tool_call(part: dict[str, Any], fc: dict[str, Any], ctx: ChatContext, n: int
               ) -> dict[str, Any]:
    """One functionCall part -> ``{"id", "name", "arguments", "extra"}`` (TC-2, TC-4, GEM-R4)."""
    vid = fc.get("id")
    google: dict[str, Any] = {}
    if isinstance(part.get("thoughtSignature"), str) and part["thoughtSignature"]:
        google["thought_signature"] = part["thoughtSignature"]
    if isinstance(vid, str) and vid:
        google["function_call_id"] = vid
    args = fc.get("args")
    return {"id": call_id(ctx, vid, n, sep=":"),  # Gemini's digest input: "{id}:{n}"
            "name": fc.get("name") if isinstance(fc.get("name"), str) else "",
            "arguments": "{}" if args is None else dumps(args).decode(),
            "extra": {"google": google} if google else None}


# -- function-call arguments streamed in pieces (docs/vendor-rules.md, GEM-S3) ------------------

#: one step of a ``jsonPath`` after the ``$`` (RFC 9535 normalized paths, member names read
#: leniently): ``.name``, ``[index]``, ``['name']`` or ``["name"]``
_PATH_STEP = re.compile(r"""\.([^.\[\]'"\s]+)|\[(?:(0|[1-9][0-9]{0,8})"""
                        r"""|'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\]""", re.DOTALL)
_QUOTED = re.compile(r'\\(.)|"', re.DOTALL)  # an escape, or a bare double quote (in '...')
#: the value members of a PartialArg (a protobuf oneof: at most one is set)
_PIECE_VALUES = ("stringValue", "numberValue", "boolValue", "nullValue")
#: nulls an array index past the end may add, per response (an element Vertex sent no leaf
#: for, such as an empty object; the budget keeps a path like ``$.a[99999999]`` harmless)
_PAD_BUDGET = 10_000


def _bad_piece(detail: str) -> DecodeError:
    return DecodeError("invalid_partial_args", detail)


def _json_path(path: str) -> tuple[str | int, ...]:
    """``$.items[0]['a b']`` -> ``("items", 0, "a b")``; anything else is a DecodeError."""
    if path[:1] != "$":
        raise _bad_piece(f"jsonPath {path[:80]!r} does not start with '$'")
    steps: list[str | int] = []
    pos, end = 1, len(path)
    while pos < end:
        m = _PATH_STEP.match(path, pos)
        if m is None or len(steps) == MAX_DEPTH:
            raise _bad_piece(f"jsonPath {path[:80]!r} is not a path this gateway reads")
        name, index, single, double = m.groups()
        if name is not None:
            steps.append(name)
        elif index is not None:
            steps.append(int(index))
        else:
            steps.append(_unquote(single if single is not None else double))
        pos = m.end()
    if not steps or type(steps[0]) is not str:
        raise _bad_piece(f"jsonPath {path[:80]!r} does not name a member of the arguments")
    return tuple(steps)


def _unquote(body: str) -> str:
    """The member name inside ``'...'`` or ``"..."`` of a jsonPath (RFC 9535 escapes)."""
    if "\\" not in body and '"' not in body:
        return body

    def as_json(m: re.Match[str]) -> str:
        escaped = m.group(1)
        return '\\"' if escaped is None else "'" if escaped == "'" else m.group(0)

    try:
        name = loads_strict('"' + _QUOTED.sub(as_json, body) + '"')
    except ValueError:
        name = None
    if not isinstance(name, str):
        raise _bad_piece(f"jsonPath member {body[:80]!r} has a bad escape")
    return name


class _Text:
    """A string argument whose pieces are still coming; joined once, when its call ends."""

    __slots__ = ("parts",)

    def __init__(self, first: str) -> None:
        self.parts = [first]


class _Pieces:
    """``functionCall`` parts in stream order -> whole calls (GEM-S3).

    ``feed(part, fc)`` returns the parts that are whole calls now: an ordinary part as it
    came (GEM-S1), or, when a call streamed in pieces ends, one part made of its name, id
    and thought signature (from whichever of its parts had them first) and the arguments
    assembled from its ``args`` and ``partialArgs``. ``flush()`` ends the open call, if any
    (at the finish). A piece is read only once: the string values that go on are kept as
    ``_Text`` lists and joined at the end, so assembling is linear in the pieces. A malformed
    piece is ``DecodeError("invalid_partial_args")``."""

    def __init__(self) -> None:
        self._name: str | None = None  # the open call's name; None: no call is open
        self._id: str | None = None
        self._signature: str | None = None
        self._args: dict[str, Any] = {}
        self._texts: dict[tuple[str | int, ...], _Text] = {}  # path -> a string that goes on
        self._joins: list[tuple[Any, Any, _Text]] = []  # (container, key, text) to join
        self._pad = _PAD_BUDGET

    def feed(self, part: dict[str, Any], fc: dict[str, Any]) -> list[dict[str, Any]]:
        name = fc.get("name")
        named = isinstance(name, str) and name != ""
        out: list[dict[str, Any]] = []
        if self._name is not None and named and (
                name != self._name or "args" in fc
                or (isinstance(fc.get("id"), str) and fc["id"] and self._id is not None
                    and fc["id"] != self._id)):
            out += self.flush()  # another call starts: the open one ended without saying so
        more = fc.get("willContinue") is True
        if self._name is None:
            if not more and "partialArgs" not in fc:
                if named or "args" in fc:
                    out.append(part)  # an ordinary whole call
                return out  # a bare {} (the end of a call already ended) is no call
            if not named:
                return out  # a piece of a call that never started: nothing to assemble
            self._name = name
        self._add(part, fc)
        if not more:
            out += self.flush()
        return out

    def flush(self) -> list[dict[str, Any]]:
        """The open call as one whole ``functionCall`` part; [] when none is open."""
        if self._name is None:
            return []
        for container, key, text in self._joins:
            if container[key] is text:
                container[key] = "".join(text.parts)
        fc: dict[str, Any] = {"name": self._name, "args": self._args}
        if self._id is not None:
            fc["id"] = self._id
        part: dict[str, Any] = {"functionCall": fc}
        if self._signature is not None:
            part["thoughtSignature"] = self._signature
        self._name = self._id = self._signature = None
        self._args, self._texts, self._joins = {}, {}, []
        return [part]

    def _add(self, part: dict[str, Any], fc: dict[str, Any]) -> None:
        vid, sig = fc.get("id"), part.get("thoughtSignature")
        if self._id is None and isinstance(vid, str) and vid:
            self._id = vid
        if self._signature is None and isinstance(sig, str) and sig:
            self._signature = sig
        if isinstance(fc.get("args"), dict):
            self._args.update(fc["args"])
        pieces = fc.get("partialArgs")
        if pieces is None:
            return
        if not isinstance(pieces, list):
            raise _bad_piece("functionCall.partialArgs is not a list")
        for piece in pieces:
            self._piece(piece)

    def _piece(self, piece: Any) -> None:
        if not isinstance(piece, dict) or not isinstance(piece.get("jsonPath"), str):
            raise _bad_piece("a partialArgs item without a string jsonPath")
        path = _json_path(piece["jsonPath"])
        kinds = [k for k in _PIECE_VALUES if k in piece]
        if len(kinds) > 1:
            raise _bad_piece(f"a partialArgs item with {' and '.join(kinds)}")
        more = piece.get("willContinue") is True
        if not kinds:  # no value: at most the end of a string that went on
            if not more:
                self._texts.pop(path, None)
            return
        kind = kinds[0]
        value = None if kind == "nullValue" else piece[kind]
        if kind == "stringValue":
            if type(value) is not str:
                raise _bad_piece("a stringValue that is not a string")
            text = self._texts.get(path)
            if text is not None:  # the next piece of a string that goes on
                text.parts.append(value)
                if not more:
                    del self._texts[path]
                return
            if more:
                text = _Text(value)
                self._texts[path] = text
                value = text
        elif kind == "numberValue" and type(value) not in (int, float) \
                or kind == "boolValue" and type(value) is not bool:
            raise _bad_piece(f"a {kind} of the wrong type")
        else:
            self._texts.pop(path, None)
        self._set(path, value)

    def _set(self, path: tuple[str | int, ...], value: Any) -> None:
        node: Any = self._args
        for step, after in itertools.pairwise(path):
            node = self._slot(node, step, list if type(after) is int else dict)
        key = path[-1]
        if type(key) is int:
            if type(node) is not list:
                raise _bad_piece("an index into something that is not an array")
            self._reach(node, key)
            old = node[key] if key < len(node) else None
            if key == len(node):
                node.append(None)
        else:
            if type(node) is not dict:
                raise _bad_piece("a member of something that is not an object")
            old = node.get(key)
        if type(old) is dict or type(old) is list:
            raise _bad_piece("a value where an object or array was already built")
        node[key] = value
        if type(value) is _Text:
            self._joins.append((node, key, value))

    def _slot(self, node: Any, step: str | int, kind: type) -> Any:
        """The container at ``node[step]``, made when missing (or null)."""
        if type(step) is int:
            if type(node) is not list:
                raise _bad_piece("an index into something that is not an array")
            self._reach(node, step)
            if step == len(node):
                node.append(None)
        elif type(node) is not dict:
            raise _bad_piece("a member of something that is not an object")
        child = node[step] if type(step) is int else node.get(step)
        if child is None:
            child = node[step] = kind()
        elif type(child) is not kind:
            raise _bad_piece("a path through a value of another kind")
        return child

    def _reach(self, array: list[Any], index: int) -> None:
        """Pad ``array`` with nulls up to ``index`` (exclusive), within the budget."""
        gap = index - len(array)
        if gap > 0:
            self._pad -= gap
            if self._pad < 0:
                raise _bad_piece("array indexes far past the elements sent")
            array.extend([None] * gap)


def _image_text(part: dict[str, Any]) -> str:
    """An ``inlineData`` answer part (image models) as a markdown data URL (GEM-N1)."""
    data = part.get("inlineData")
    if isinstance(data, dict) and isinstance(data.get("data"), str) \
            and isinstance(data.get("mimeType"), str):
        return f"![image](data:{data['mimeType']};base64,{data['data']})"
    return ""


def _blocked(reason: Any) -> UpstreamError:
    return UpstreamError(f"gemini blocked the prompt ({reason})", kind="status",
                         upstream_status=400, status=400, type="invalid_request_error",
                         code="content_filter")


def _google_error(status: int, headers: tuple[tuple[str, str], ...], body: bytes,
                  obj: Any) -> UpstreamError:
    """Google's ``{"error": {code, message, status, details}}`` -> UpstreamError (GEM-S7)."""
    if isinstance(obj, list) and obj and isinstance(obj[0], dict):
        obj = obj[0]
    err = obj.get("error") if isinstance(obj, dict) else None
    if not isinstance(err, dict):
        return error_from_body(status, headers, body, obj)
    message = msg if isinstance(msg := err.get("message"), str) \
        else f"upstream answered HTTP {status}"
    gstatus = err.get("status") if isinstance(err.get("status"), str) else None
    # the HTTP status first (so a 504 DEADLINE_EXCEEDED is a server_error like any 5xx), the
    # google.rpc status for the other 4xx
    etype = status_type(status, _ERROR_TYPES.get(gstatus or ""), STATUS_TYPES_NO_409)
    code = gstatus or str(status)
    retry = list(retry_after(headers))
    details = listed if isinstance(listed := err.get("details"), list) else []
    for d in details:
        if not isinstance(d, dict):
            continue
        m = _DELAY.match(d["retryDelay"]) if isinstance(d.get("retryDelay"), str) else None
        if m and not retry:  # ERR-2
            retry = [("retry-after", str(math.ceil(float(d["retryDelay"][:-1]))))]
        if d.get("reason") == "API_KEY_INVALID":  # Google says 400; the key is what is bad
            status, etype, code = 401, "authentication_error", "API_KEY_INVALID"
    return status_error(message, status, etype, code, tuple(retry))


def _add_extra(data: bytes, extras: list[Any], path: str) -> bytes:
    """Add ``extra_content`` to the tool calls of a chunk or body (until ``chunks.py`` takes an
    ``extra`` argument): ``path`` is ``delta`` (stream) or ``message`` (body)."""
    prefix = b"data: " if data.startswith(b"data: ") else b""
    obj = json.loads(data[len(prefix):])
    for call, extra in zip(obj["choices"][0][path]["tool_calls"], extras):
        if extra:
            call["extra_content"] = extra
    return prefix + dumps(obj) + (b"\n\n" if prefix else b"")


class GeminiExchange:
    """One attempt against Gemini: the request and how to read its answer."""

    def __init__(self, request: UpstreamRequest, ctx: ChatContext) -> None:
        self.request = request
        #: the usage of the whole answer ``parse_body`` read (for stats)
        self.usage: dict[str, Any] | None = None
        self.ctx = ctx
        #: (tool_call_id, thoughtSignature) pairs seen in the whole-body answer (GEM-R4)
        self.thought_signatures: list[tuple[str, str]] = []

    def parse_body(self, status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> bytes:
        """A 2xx ``GenerateContentResponse`` -> ``chat.completion`` bytes (GEM-N1..N3)."""
        try:
            obj = loads_strict(body)
        except ValueError:
            raise UpstreamError("gemini answered with a body that is not JSON", kind="decode",
                                upstream_status=status) from None
        if isinstance(obj, list) and len(obj) == 1:
            obj = obj[0]
        if not isinstance(obj, dict):
            raise UpstreamError("gemini answered with JSON that is not an object",
                                kind="decode", upstream_status=status)
        if obj.get("error"):  # ERR-4
            raise _google_error(_error_status(obj), headers, body, obj)
        candidates = obj.get("candidates")
        candidates = [c for c in candidates if isinstance(c, dict)] \
            if isinstance(candidates, list) else []
        feedback = obj.get("promptFeedback")
        if not candidates:
            if isinstance(feedback, dict) and feedback.get("blockReason"):
                raise _blocked(feedback["blockReason"])
            raise UpstreamError("gemini answered with no candidates", kind="empty",
                                upstream_status=status)
        usage = self.usage = _usage(obj.get("usageMetadata"))
        choices: list[dict[str, Any]] = []
        count = 0
        for k, cand in enumerate(candidates):
            texts: list[str]
            thoughts: list[str]
            calls: list[dict[str, Any]]
            texts, thoughts, wholes = [], [], []
            pieces = _Pieces()  # GEM-S3: never asked for here, but read the same way
            content = cand.get("content")
            parts = content.get("parts") if isinstance(content, dict) else None
            try:
                for part in parts if isinstance(parts, list) else []:
                    if not isinstance(part, dict):
                        continue
                    if isinstance(part.get("functionCall"), dict):
                        wholes += pieces.feed(part, part["functionCall"])
                    elif isinstance(part.get("text"), str):
                        (thoughts if part.get("thought") is True else texts).append(part["text"])
                    else:
                        texts.append(_image_text(part))
                wholes += pieces.flush()
            except DecodeError as exc:
                raise UpstreamError(f"gemini answered with a malformed function call: "
                                    f"{exc.detail}", kind="decode",
                                    upstream_status=status) from None
            calls = [_tool_call(w, w["functionCall"], self.ctx, count + i)
                     for i, w in enumerate(wholes)]
            count += len(calls)
            self.thought_signatures += _signatures(calls)
            data = completion(self.ctx, content="".join(texts), reasoning="".join(thoughts),
                              tool_calls=calls or None,
                              finish_reason=_finish_reason(cand.get("finishReason"),
                                                           bool(calls)), usage=usage)
            if any(c["extra"] for c in calls):
                data = _add_extra(data, [c["extra"] for c in calls], "message")
            if len(candidates) == 1:
                return data
            choice = json.loads(data)["choices"][0]
            choice["index"] = cand["index"] if typed(cand.get("index"), (int,)) else k
            choices.append(choice)
        out = json.loads(completion(self.ctx, content="", usage=usage))
        out["choices"] = sorted(choices, key=lambda c: c["index"])
        return dumps(out)

    def parse_error(self, status: int, headers: tuple[tuple[str, str], ...],
                    body: bytes) -> UpstreamError:
        """A Google error body (maybe list-wrapped) -> UpstreamError (docs/contracts.md, "Error
        status mapping"; docs/vendor-rules.md, GEM-S7; ERR-2, ERR-3)."""
        try:
            obj = loads_strict(body[:65536]) if body else None
        except ValueError:
            obj = None
        return _google_error(status, headers, body, obj)

    def stream_decoder(self) -> GeminiStreamDecoder:
        """A fresh decoder for this attempt's ``streamGenerateContent`` body."""
        return GeminiStreamDecoder(self.ctx)


def _error_status(obj: dict[str, Any]) -> int:
    """The HTTP status of an error object sent inside a 2xx answer (ERR-4, GEM-S7)."""
    return implied_status(obj["error"])


def _signatures(calls: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(c["id"], c["extra"]["google"]["thought_signature"]) for c in calls
            if c["extra"] and "thought_signature" in c["extra"]["google"]]


# A content chunk as Gemini writes it: one candidate (index 0 or none) whose content is one
# text part, no finishReason, no promptFeedback, usageMetadata (an object; parsed when it
# changes), then modelVersion and responseId. Only valid JSON matches (the usage text is
# checked by parsing it). Groups: the text's string body, the usageMetadata text. Strings and
# objects are matched as unrolled loops (runs of plain characters between the parts that need
# care): several times faster in `re` than one alternation per character.
_G_CHARS = r'[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*'
_G_STR = '"' + _G_CHARS + '"'
_G_ANY_STR = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_G_FLAT = r'\{[^{}\[\]"]*(?:' + _G_ANY_STR + r'[^{}\[\]"]*)*\}'
_G_ARRAY = r'\[[^{}\[\]"]*(?:(?:' + _G_ANY_STR + '|' + _G_FLAT + r')[^{}\[\]"]*)*\]'
_G_USAGE = (r'\{[^{}\[\]"]*(?:(?:' + _G_ANY_STR + '|' + _G_FLAT + '|' + _G_ARRAY
            + r')[^{}\[\]"]*)*\}')
_PLAIN_TEXT = re.compile(
    r'\{"candidates": ?\[\{"content": ?\{"parts": ?\[\{"text": ?"(' + _G_CHARS
    + r')"\}\], ?"role": ?"model"\}(?:, ?"index": ?0)?\}\]'
    r'(?:, ?"usageMetadata": ?(' + _G_USAGE + r'))?(?:, ?"modelVersion": ?' + _G_STR
    + r')?(?:, ?"responseId": ?' + _G_STR + r')?\}')


class GeminiStreamDecoder(SSEVendorDecoder):
    """``streamGenerateContent?alt=sse`` bytes -> client chunks (GEM-S1, GEM-S2, GEM-S3,
    GEM-S6, GEM-S7, DEC-1..DEC-6).

    Framing, the terminal state and the error contract are ``SSEVendorDecoder``'s (DEC-1,
    DEC-2). ``_done`` is set only by a terminal failure (an error object, a blocked prompt);
    a ``finishReason`` ends the content (``_finish``) but usage is still read until EOF,
    where ``_eof`` writes the finish chunk, the usage chunk and ``StreamDone`` (GEM-S6), or
    a truncation when no finishReason came (DEC-5). ``_events`` is the whole per-event loop,
    fast path included."""

    def __init__(self, ctx: ChatContext) -> None:
        super().__init__()
        self._ctx = ctx
        self._writer = ChunkWriter(ctx)
        self._finish: str | None = None  # mapped finishReason once seen (terminal, DEC-4)
        self._started = False  # the role chunk went out (S-1)
        self._calls = 0
        self._pieces = _Pieces()  # calls whose arguments come in pieces (GEM-S3)
        #: the last usage seen, OpenAI-shaped (U-3); None until Gemini reports one
        self.usage: dict[str, Any] | None = None
        self._usage_text: str | None = None  # the usageMetadata text self.usage came from
        #: (tool_call_id, thoughtSignature) pairs seen so far (GEM-R4)
        self.thought_signatures: list[tuple[str, str]] = []

    def _eof(self) -> list[StreamItem]:
        """End of the upstream body: finish (GEM-S6, DEC-5) or report a truncation."""
        if self._finish is None:
            return [StreamFailed(UpstreamError("gemini stream ended before a finishReason",
                                               kind="truncated"))]
        return [*self._writer.finish(self._finish, self.usage), StreamDone(self.usage)]

    #: the fast-path matcher (a test swaps it for one that never matches)
    _plain = _PLAIN_TEXT.fullmatch  # a bound builtin: not rebound as a method

    def _events(self, events: list[Any], out: list[StreamItem]) -> None:
        """Append the items of ``events`` to ``out``; items before an error stay there."""
        plain = self._plain
        for ev in events:
            if self._done:
                return  # DEC-4: nothing after a terminal failure
            m = plain(ev.data)
            if m is not None and self._plain_text(ev.data, m, out):
                continue
            if not ev.data.strip() or ev.data == "[DONE]":
                continue
            try:
                obj = loads_strict(ev.data)
            except ValueError:
                obj = None
            objs = obj if isinstance(obj, list) else [obj]
            if not all(isinstance(o, dict) for o in objs):
                if self._finish is not None:
                    continue  # nothing after the finish matters but usage (DEC-4)
                raise DecodeError("invalid_json", "a gemini event is not a JSON object")
            for o in objs:
                out += self._object(o)

    def _plain_text(self, data: str, m: re.Match[str], out: list[StreamItem]) -> bool:
        """A one-part text chunk in Gemini's own layout (see _PLAIN_TEXT): what _object does
        with it, without parsing more than a changed usageMetadata. False: take the long way."""
        usage_text = m.group(2)
        if usage_text is not None and usage_text != self._usage_text:
            try:
                meta = loads_strict(usage_text)
            except ValueError:
                return False
            self.usage = _usage(meta)
            self._usage_text = usage_text
        if self._finish is None:  # DEC-4: only usage counts after the finish
            self._started = True
            out += self._writer.json_text(m.group(1), data, m.start(1))
        return True

    def _object(self, obj: dict[str, Any]) -> list[StreamItem]:
        if isinstance(obj.get("usageMetadata"), dict):
            self.usage = _usage(obj["usageMetadata"])
            self._usage_text = None  # no longer the usage of the last fast-path text
        if self._finish is not None or self._done:
            return []  # DEC-4: only usage counts after the finish
        if obj.get("error"):  # GEM-S7
            self._done = True
            return [StreamFailed(_google_error(_error_status(obj), (), b"", obj))]
        feedback = obj.get("promptFeedback")
        block = feedback.get("blockReason") if isinstance(feedback, dict) else None
        candidates = obj.get("candidates")
        candidates = [c for c in candidates if isinstance(c, dict)] \
            if isinstance(candidates, list) else []
        if block and not candidates:
            if not self._started:
                self._done = True
                return [StreamFailed(_blocked(block))]
            self._finish = "content_filter"
            return self._flush()
        self._started = True
        out: list[StreamItem] = list(self._writer.start())  # S-1
        for cand in candidates:
            if typed(cand.get("index"), (int,)) and cand["index"] != 0:
                continue
            content = cand.get("content")
            parts = content.get("parts") if isinstance(content, dict) else None
            for part in parts if isinstance(parts, list) else []:
                if not isinstance(part, dict):
                    continue
                if isinstance(part.get("functionCall"), dict):
                    for whole in self._pieces.feed(part, part["functionCall"]):
                        out += self._tool(whole)
                elif isinstance(part.get("text"), str):
                    emit = self._writer.reasoning if part.get("thought") is True \
                        else self._writer.text
                    out += emit(part["text"])  # S-7: empty text gives nothing
                else:
                    out += self._writer.text(_image_text(part))
            if cand.get("finishReason"):
                out += self._flush()  # a call still open ends with the content (GEM-S3)
                self._finish = _finish_reason(cand["finishReason"], self._calls > 0)
        return out

    def _flush(self) -> list[StreamItem]:
        return [chunk for whole in self._pieces.flush() for chunk in self._tool(whole)]

    def _tool(self, part: dict[str, Any]) -> list[StreamChunk]:
        call = _tool_call(part, part["functionCall"], self._ctx, self._calls)
        chunks = self._writer.tool_start(self._calls, call["id"], call["name"],
                                         call["arguments"])  # GEM-S1: whole call at once
        self._calls += 1
        if call["extra"]:
            chunks[-1] = StreamChunk(_add_extra(chunks[-1].data, [call["extra"]], "delta"))
            self.thought_signatures += _signatures([call])
        return chunks
