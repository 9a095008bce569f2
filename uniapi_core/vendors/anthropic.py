"""Anthropic Messages (``engine: claude``): OpenAI chat request in, OpenAI answer out.

The protocol rules are in docs/vendor-rules.md, "Anthropic Messages" (tags ANT-…).

Theory of operation
-------------------
``build_exchange`` is a pure function of the OpenAI request and the ``ChatContext``. It reads
only the fields in ``MAPPED`` (REQ-3: nothing else is copied; ``DROPPED`` documents why the rest
are left out) and builds the Messages body in three steps:

1. *Messages* (ANT-R1..R8): system/developer text goes to ``system``; every other message
   becomes a ``(role, blocks)`` turn (tool results are user turns, every assistant tool call a
   ``tool_use`` block); empty text is dropped, consecutive same-role turns are merged with the
   ``tool_result`` blocks first, every ``tool_use`` must be answered in the next turn, the
   first turn is a user turn and a final assistant turn (prefill) is right-stripped. Tool-call
   ids are mapped injectively onto Anthropic's alphabet (TC-5). Images become base64 blocks
   (REQ-4); remote images come from ``ctx.images`` or raise ``ImagesNeeded`` with every
   missing URL. A user message's ``file`` parts become ``document`` blocks: PDFs as base64,
   plain text as text, the filename as ``title``; other types are 400s, and documents over the
   32 MB request limit a 413 (ANT-D1..D3). A ``file_url`` (uniapi's extension) is a ``url``
   source on Anthropic's own API, which fetches it; on Bedrock and Vertex
   (``first_party=False``) its bytes come from ``ctx.images`` like a remote image's (missing
   ones join the images in ``ImagesNeeded``) and make the block a data URL would, counted in
   the 32 MB (ANT-D5). A ``file_id`` of Anthropic's Files API form (``file_…``) is a ``file``
   source on Anthropic's own API, with ``files-api-2025-04-14`` merged into the
   ``anthropic-beta`` header; any other id, and every id on Bedrock and Vertex, is a 400
   (ANT-D4, ANT-D6).
2. *Tools* (ANT-T1..T3, TC-6): OpenAI functions become ``{name, description, input_schema}``;
   ``tool_choice`` and ``parallel_tool_calls`` map to Anthropic's tool choice. A history that
   holds tool blocks but no ``tools`` gets placeholder definitions and ``tool_choice: none``.
3. *Sampling and thinking* (ANT-K1..K4): an explicit ``thinking`` object, else ``-think-N`` in
   the alias, else ``reasoning_effort``, else ``think`` in the alias enables extended thinking;
   the budget and ``max_tokens`` are made consistent, temperature/top_k/top_p are trimmed, and
   thinking is switched off when the last tool turn cannot be replayed with its signature.
   Signed thinking comes back from history through an assistant message's ``thinking_blocks``
   (``{"type":"thinking","thinking","signature"}`` / ``{"type":"redacted_thinking","data"}``,
   LiteLLM's convention) or ``reasoning_content`` with ``reasoning_signature``; reasoning
   without a signature is dropped (Anthropic refuses unsigned thinking blocks).
4. *Structured output* (ANT-J1..J4): ``response_format`` ``json_schema`` becomes
   ``output_config.format`` (the schema put in Claude's form by ``claude_schema``) on the models
   of ``STRUCTURED_MODELS``; on other models, and for ``json_object`` always, a forced tool
   ``ANSWER_TOOL`` whose input is the answer. Strict function tools keep ``strict: true`` on
   those models. The exchange and its decoders remember which way was used (``structured``):
   the answer tool's input comes back as ``content``, and a ``refusal`` stop as
   ``message.refusal`` / ``delta.refusal`` (ANT-J5, ANT-J6).

``AnthropicExchange.parse_body`` walks the content blocks in order (ANT-N1); ``parse_error``
maps Anthropic's error JSON by HTTP status first and ``error.type`` second (docs/contracts.md,
"Error status mapping"; docs/vendor-rules.md, "Errors from Anthropic").
``AnthropicStreamDecoder`` frames with ``SSEDecoder`` and emits through ``ChunkWriter`` (ANT-S3,
S-1..S-7, TC-1..TC-3, U-3). Framing, the terminal state and the error contract (items before
an error come out, the error on the next call: DEC-1, DEC-2) are ``SSEVendorDecoder``'s.
After ``message_stop`` or ``error`` every byte is ignored (DEC-4); EOF without them is a
``truncated`` failure (DEC-5).
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Iterable

# typeshed's json.decoder stub does not declare ``scanstring``; the module has it at runtime
from json.decoder import scanstring  # type: ignore[attr-defined]
from typing import Any
from urllib.parse import urlsplit

from ..errors import ClientError, DecodeError, UpstreamError
from ..jsonutil import dumps, loads_strict
from ..request import ChatRequest, Message, Part, ToolCall, chat_request
from ..streams import SSEEvent
from .base import (ChatContext, ImagesNeeded, SSEVendorDecoder, StreamChunk, StreamDone,
                   StreamFailed, StreamItem, UpstreamRequest, error_from_body)
from .chunks import ChunkWriter, completion, token_count, token_counts, usage_object
from .openai import merge_headers
from .toolkit import ALNUM_LOWER_FIRST, ID_BAD, as_dict as _dict
from .toolkit import as_str as _str, bad as _fail, call_id, clean_id, data_url
from .toolkit import positive_int as _int, retry_after, sniff, status_error, status_type

__all__ = ["DEFAULT_URL", "API_VERSION", "MAPPED", "DROPPED", "FINISH_REASONS", "ERROR_TYPES",
           "EFFORT_BUDGETS", "STRUCTURED_MODELS", "ANSWER_TOOL", "STRING_FORMATS", "FILES_BETA",
           "split_betas", "provider_betas", "without_beta",
           "structured_outputs", "claude_schema", "messages_url", "build_exchange",
           "AnthropicExchange", "AnthropicStreamDecoder"]

DEFAULT_URL = "https://api.anthropic.com/v1/messages"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096  # docs/vendor-rules.md, ANT-K2: default, and answer room above a budget
DEFAULT_BUDGET = 4096  # ANT-K1
MIN_BUDGET = 1024  # ANT-K2
MAX_IMAGE_BYTES = 5 * 1024 * 1024  # Anthropic's documented per-image cap
#: Anthropic's documented request-size cap, which PDF support names as the documents' limit
#: (ANT-D3): the documents' bytes as sent (base64 for PDFs) may not exceed it
MAX_DOCUMENT_BYTES = 32 * 1024 * 1024
#: the media types a ``file`` part may carry (ANT-D1, ANT-D2)
DOCUMENT_TYPES = ("application/pdf", "text/plain")
PREFILL_PLACEHOLDER = "."  # ANT-R6
#: the beta a Files API document source needs on Anthropic's own API (ANT-D6)
FILES_BETA = "files-api-2025-04-14"
#: an Anthropic Files API id (``file_011CNha8iCJcU1wXNR6q4V8w``); OpenAI's are ``file-…``
_FILE_ID = re.compile(r"file_[A-Za-z0-9]+")
_BETA = "anthropic-beta"


def split_betas(values: Iterable[str]) -> list[str]:
    """``anthropic-beta`` values as sent (comma lists allowed), one beta each."""
    return [b.strip() for v in values for b in str(v).split(",") if b.strip()]


def provider_betas(prefs: tuple[tuple[str, str], ...]) -> list[str]:
    """The betas of a provider's ``anthropic-beta`` preference header."""
    return split_betas(v for k, v in prefs if k.lower() == _BETA)


def without_beta(prefs: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """A provider's preference headers but ``anthropic-beta`` (sent merged, once)."""
    return tuple((k, v) for k, v in prefs if k.lower() != _BETA)

#: request fields this translator reads (REQ-3); everything else never reaches Anthropic
MAPPED = frozenset({"model", "messages", "max_tokens", "max_completion_tokens", "stop",
                    "temperature", "top_p", "top_k", "stream", "tools", "tool_choice",
                    "parallel_tool_calls", "user", "n", "response_format", "thinking",
                    "reasoning_effort"})
#: fields left out on purpose, with the reason (documented in docs/)
DROPPED = {
    "stream_options": "Anthropic streams always carry usage; include_usage is the gateway's",
    "presence_penalty": "no Anthropic equivalent", "frequency_penalty": "no Anthropic equivalent",
    "logit_bias": "no Anthropic equivalent", "logprobs": "no Anthropic equivalent",
    "top_logprobs": "no Anthropic equivalent", "seed": "no Anthropic equivalent",
    "service_tier": "OpenAI-only", "store": "OpenAI-only", "metadata": "OpenAI-only shape",
    "modalities": "text only", "audio": "text only", "prediction": "OpenAI-only",
}
#: Anthropic ``stop_reason`` -> OpenAI ``finish_reason``; unknown values -> ``stop``
#: (docs/contracts.md, "Finish reasons"; docs/vendor-rules.md, ANT-N2)
FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop",
                  "max_tokens": "length", "model_context_window_exceeded": "length",
                  "tool_use": "tool_calls", "refusal": "content_filter"}
#: Anthropic ``error.type`` -> (OpenAI ``type``, the HTTP status Anthropic pairs it with)
#: (docs/vendor-rules.md, "Errors from Anthropic")
ERROR_TYPES = {
    "invalid_request_error": ("invalid_request_error", 400),
    "authentication_error": ("authentication_error", 401),
    "billing_error": ("insufficient_quota", 402),
    "permission_error": ("permission_error", 403),
    "not_found_error": ("not_found_error", 404),
    "conflict_error": ("invalid_request_error", 409),
    "request_too_large": ("invalid_request_error", 413),
    "rate_limit_error": ("rate_limit_error", 429),
    "api_error": ("server_error", 500),
    "timeout_error": ("timeout_error", 504),
    "overloaded_error": ("server_error", 529),
}
#: ``reasoning_effort`` -> thinking budget (docs/vendor-rules.md, ANT-K1); ``none``: off
EFFORT_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}
_TOOL_CHOICES = {"auto": {"type": "auto"}, "required": {"type": "any"},
                 "none": {"type": "none"}}
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")  # TC-6
_THINK_N = re.compile(r"-think-(\d+)$", re.I)
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})

#: Claude models whose Messages API enforces ``output_config.format`` and ``strict`` tools
#: (docs/vendor-rules.md, ANT-J2): family -> lowest (major, minor) version that has them.
#: The upstream model id is read as ``claude-<family>-<major>[-<minor>]`` anywhere in it, so
#: Anthropic (``claude-sonnet-4-5-20250929``), Bedrock (``us.anthropic.claude-haiku-4-5-…``) and
#: Vertex (``claude-opus-4-5@20251101``) ids all match; older names (``claude-3-7-sonnet-…``,
#: ``claude-sonnet-4-…``, ``claude-opus-4-1-…``) do not, and get the tool fallback (ANT-J3).
STRUCTURED_MODELS = {"opus": (4, 5), "sonnet": (4, 5), "haiku": (4, 5)}
#: the tool the fallback forces (ANT-J3); a client tool of this name is refused
ANSWER_TOOL = "uniapi_json_answer"
#: string formats Claude's structured outputs accept (ANT-J1); others move to the description
STRING_FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname", "uri",
                           "ipv4", "ipv6", "uuid"})
_MODEL_VERSION = re.compile(r"claude-(opus|sonnet|haiku)-(\d+)(?:[-.](\d)(?!\d))?")
#: keywords kept as they are in every schema node (ANT-J1); the rest is per type or described
_KEPT = ("title", "description", "enum", "const", "$ref")


def structured_outputs(upstream_model: str) -> bool:
    """Whether the model enforces ``output_config.format`` and strict tools (ANT-J2)."""
    m = _MODEL_VERSION.search(upstream_model.lower())
    if m is None:
        return False
    version = (int(m.group(2)), int(m.group(3) or 0))
    return version >= STRUCTURED_MODELS[m.group(1)]


def claude_schema(schema: Any) -> Any:
    """A JSON Schema in the form Claude's structured outputs accept (docs/vendor-rules.md,
    ANT-J1), as the official Anthropic SDKs transform it: every object gets
    ``additionalProperties: false``; ``oneOf`` becomes ``anyOf``; an array keeps ``minItems``
    only when it is 0 or 1; a string keeps ``format`` only when Claude knows it; any other
    keyword (``minLength``, ``pattern``, ``minimum``, ``maxItems``, an ``additionalProperties``
    schema…) is removed and written into the node's ``description`` as ``{key: value, …}``, so
    the constraint still reaches the model as text. Sub-schemas (``properties``, ``items``,
    ``anyOf``, ``allOf``, ``$defs``/``definitions``) are transformed the same way."""
    if not isinstance(schema, dict):
        return schema
    rest = dict(schema)
    out: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        defs = rest.pop(key, None)
        if isinstance(defs, dict):
            out[key] = {k: claude_schema(v) for k, v in defs.items()}
        elif defs is not None:
            rest[key] = defs
    kind = rest.pop("type", None)
    if kind is not None:
        out["type"] = kind
    for key in _KEPT:
        if key in rest:
            out[key] = rest.pop(key)
    for key, new in (("anyOf", "anyOf"), ("oneOf", "anyOf"), ("allOf", "allOf")):
        if isinstance(rest.get(key), list):
            out.setdefault(new, []).extend(claude_schema(v) for v in rest.pop(key))
    kinds = kind if isinstance(kind, list) else [kind]
    if "object" in kinds or isinstance(rest.get("properties"), dict):
        props = rest.pop("properties", None)
        if isinstance(props, dict):
            out["properties"] = {k: claude_schema(v) for k, v in props.items()}
        if isinstance(rest.get("required"), list):
            out["required"] = rest.pop("required")
        if rest.get("additionalProperties") is False:
            del rest["additionalProperties"]
        out["additionalProperties"] = False
    if "array" in kinds or "items" in rest:
        if isinstance(rest.get("items"), dict):
            out["items"] = claude_schema(rest.pop("items"))
        if rest.get("minItems") in (0, 1) and type(rest["minItems"]) is int:
            out["minItems"] = rest.pop("minItems")
    if "string" in kinds and rest.get("format") in STRING_FORMATS:
        out["format"] = rest.pop("format")
    if rest:  # what Claude does not enforce: kept as text for the model (never dropped)
        note = "{" + ", ".join(f"{k}: {dumps(v).decode()}" for k, v in rest.items()) + "}"
        desc = out.get("description")
        out["description"] = (desc + "\n\n" if isinstance(desc, str) and desc else "") + note
    return out


def messages_url(base_url: str | None) -> str:
    """The Messages URL: ``…/v1/messages`` as given, an origin or ``…/v1`` completed (ANT-1)."""
    if not base_url:
        return DEFAULT_URL
    base, sep, query = base_url.partition("?")
    try:
        path = urlsplit(base).path.rstrip("/")
    except ValueError:  # not a URL at all: the transport will say so
        return base_url
    if path.endswith("/v1/messages"):
        return base_url
    if not path:
        return base.rstrip("/") + "/v1/messages" + sep + query
    if path.endswith("/v1"):
        return base.rstrip("/") + "/messages" + sep + query
    return base_url


# -- images (REQ-4; docs/vendor-rules.md, ANT-R2) ----------------------------------------------

def _image_block(raw: bytes, declared: str, where: str) -> dict[str, Any]:
    declared = declared.strip().lower().replace("image/jpg", "image/jpeg")
    media = sniff(raw) or (declared if declared in _IMAGE_TYPES else None)
    if media is None or not raw:
        raise _fail(f"{where}: image type {declared or 'unknown'!r} not accepted by Anthropic "
                    "(jpeg, png, gif, webp)", "unsupported_image")
    if len(raw) > MAX_IMAGE_BYTES:
        raise _fail(f"{where}: image of {len(raw)} bytes exceeds Anthropic's "
                    f"{MAX_IMAGE_BYTES}-byte limit", "image_too_large")
    return {"type": "image", "source": {"type": "base64", "media_type": media,
                                        "data": base64.b64encode(raw).decode("ascii")}}


# -- documents (docs/vendor-rules.md, ANT-D1..D4) ---------------------------------------------

def _document_block(part: Part, where: str) -> tuple[dict[str, Any], int]:
    """A ``file`` part's ``file_data`` → ``(document block, bytes it puts in the body)``;
    ClientError when Anthropic cannot take it (ANT-D1..D4)."""
    url = part.data
    if url is None or url[:5].lower() != "data:":
        raise _fail(f"{where}: file.file_data must be a data URL (data:<media type>;base64,…)")
    try:
        declared, raw = data_url(url, where, flavour="anthropic")
    except ClientError as exc:
        raise _fail(exc.message) from None
    return _document_bytes(declared, raw, part.filename, where)


def _document_bytes(declared: str, raw: bytes, filename: str | None, where: str
                    ) -> tuple[dict[str, Any], int]:
    """A document's media type and bytes (from a data URL, or fetched from a ``file_url``:
    ANT-D5) → ``(document block, bytes it puts in the body)`` (ANT-D1..D3)."""
    media = declared.split(";", 1)[0].strip().lower()
    if media in ("", "application/octet-stream") and raw.startswith(b"%PDF-"):
        media = "application/pdf"
    if media not in DOCUMENT_TYPES:
        raise _fail(f"{where}: file type {media or 'unknown'!r} is not supported by Anthropic "
                    "(application/pdf, text/plain)", "unsupported_content")
    if media == "application/pdf":
        data = base64.b64encode(raw).decode("ascii")
        source = {"type": "base64", "media_type": media, "data": data}
        size = len(data)
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _fail(f"{where}: text/plain file is not UTF-8 text") from None
        source = {"type": "text", "media_type": media, "data": text}
        size = len(raw)
    return _titled({"type": "document", "source": source}, filename), size


def _titled(block: dict[str, Any], filename: str | None) -> dict[str, Any]:
    if filename:
        block["title"] = filename
    return block


def _remote(url: str) -> bool:
    return url[:7].lower() == "http://" or url[:8].lower() == "https://"


# -- request building ------------------------------------------------------------------------

class _Builder:
    """One request's conversion state: id map, missing images, placeholders
    (docs/vendor-rules.md, ANT-R1..R8)."""

    def __init__(self, ctx: ChatContext, first_party: bool = True) -> None:
        self.ctx = ctx
        #: building for Anthropic's own API (URL and Files API sources: ANT-D5, ANT-D6), not
        #: for Bedrock or Vertex
        self.first_party = first_party
        self.missing: list[str] = []  # remote images and documents, in request order
        self.ids: dict[str, str] = {}
        self.tool_names: list[str] = []
        self.document_bytes = 0  # ANT-D3
        self.file_ids = False  # a Files API document was sent: the beta header (ANT-D6)

    # ids (TC-5): valid ids map to themselves, others to a cleaned form, hashed on collision
    def prepare_ids(self, messages: tuple[Message, ...]) -> None:
        raw = [c.id for m in messages for c in m.tool_calls if c.id]
        raw += [m.tool_call_id for m in messages if m.tool_call_id is not None]
        used = {i for i in raw if not ID_BAD.search(i) and 0 < len(i) <= 64}
        for i in raw:
            if i in self.ids:
                continue
            if i in used:
                self.ids[i] = i
                continue
            self.ids[i] = clean_id(i, used, limit=64)

    def image(self, part: Part, where: str) -> dict[str, Any] | None:
        url = part.url or ""
        if url[:5].lower() == "data:":
            declared, raw = data_url(url, where, flavour="anthropic")
            return _image_block(raw, declared, where)
        if _remote(url):
            got = self.fetched(url)
            return None if got is None else _image_block(got[1], got[0], where)
        raise _fail(f"{where}: image URL must be a data: or http(s) URL", "invalid_image")

    def fetched(self, url: str) -> tuple[str, bytes] | None:
        """A remote URL's (media type, bytes) from ``ctx.images``; None, and the URL noted for
        ``ImagesNeeded``, when the gateway has not fetched it yet."""
        got = self.ctx.images.get(url)
        if got is None and url not in self.missing:
            self.missing.append(url)
        return got

    def document(self, part: Part, where: str) -> dict[str, Any] | None:
        """A ``file`` part → a document block (ANT-D1..D6); None while its URL is unfetched.
        ``file_data`` wins over ``file_url``, which wins over ``file_id``."""
        if not part.ok:
            raise _fail(f"{where}: 'file' must be an object")
        if part.data is None and part.url is not None:
            url = part.url
            if not _remote(url):
                raise _fail(f"{where}: file.file_url must be an http(s) URL")
            if self.first_party:  # ANT-D5: Anthropic fetches the URL itself
                return _titled({"type": "document", "source": {"type": "url", "url": url}},
                               part.filename)
            got = self.fetched(url)
            if got is None:
                return None
            block, size = _document_bytes(got[0], got[1], part.filename, where)
        elif part.data is None and part.file_id is not None:
            fid = part.file_id
            if not (self.first_party and _FILE_ID.fullmatch(fid)):
                own = "; Anthropic's own API takes its Files API ids, file_…" \
                    if self.first_party else ""
                raise _fail(f"{where}: file_id is not supported by Anthropic channels (send "
                            f"the file as file_data, a data URL{own})", "unsupported_content")
            self.file_ids = True  # ANT-D6
            return _titled({"type": "document", "source": {"type": "file", "file_id": fid}},
                           part.filename)
        else:
            block, size = _document_block(part, where)
        self.document_bytes += size
        if self.document_bytes > MAX_DOCUMENT_BYTES:  # ANT-D3: before the upstream call
            raise ClientError(
                f"{where}: documents of {self.document_bytes} bytes exceed Anthropic's "
                f"{MAX_DOCUMENT_BYTES}-byte (32 MB) request size limit", status=413,
                code="document_too_large")
        return block

    def parts(self, m: Message, where: str, *, images: bool = True,
              documents: bool = False) -> list[dict[str, Any]]:
        """A message's content (string or parts) → Anthropic text/image/document blocks
        (documents only where ``documents``: user turns, ANT-D1)."""
        if m.text is not None:
            return [{"type": "text", "text": m.text}]
        if "content" in m.invalid:
            raise _fail(f"{where}: content must be a string or a list of parts")
        out: list[dict[str, Any]] = []
        for j, part in enumerate(m.parts):
            w = f"{where}.content[{j}]"
            if not part.obj:
                raise _fail(f"{w}: a content part must be an object")
            kind = part.kind
            if kind == "text" or kind == "refusal":
                if not part.ok:
                    raise _fail(f"{w}: '{kind}' must be a string")
                block: dict[str, Any] | None = {"type": "text", "text": part.text}
            elif kind == "image_url" and images:
                block = self.image(part, w)
            elif kind == "file" and documents:
                block = self.document(part, w)
            else:
                raise _fail(f"{w}: content part type {kind!r} is not supported here",
                            "unsupported_content")
            if block is not None:
                if part.cache_control is not None:
                    block["cache_control"] = part.cache_control
                out.append(block)
        return out

    def thinking(self, m: Message) -> list[dict[str, Any]]:
        """Signed thinking replayed from history (ANT-K4); unsigned reasoning is dropped (the
        model keeps signed blocks only)."""
        out: list[dict[str, Any]] = [
            {"type": "thinking", "thinking": b.thinking, "signature": b.signature}
            if b.type == "thinking" else {"type": "redacted_thinking", "data": b.data}
            for b in m.thinking_blocks]
        if not out and m.reasoning_content is not None and m.reasoning_signature:
            out.append({"type": "thinking", "thinking": m.reasoning_content,
                        "signature": m.reasoning_signature})
        return out

    def tool_use(self, call: ToolCall, where: str) -> dict[str, Any]:
        cid, name, args = call.id, call.name, call.arguments
        if not cid or name is None:
            raise _fail(f"{where}: a tool call needs an 'id' and a function 'name'")
        _check_name(name, where)
        if isinstance(args, str):
            try:
                args = loads_strict(args) if args.strip() else {}
            except (ValueError, RecursionError):
                raise _fail(f"{where}: tool call arguments are not valid JSON") from None
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise _fail(f"{where}: tool call arguments must be a JSON object")
        self.tool_names.append(name)
        return {"type": "tool_use", "id": self.ids[cid], "name": name, "input": args}

    def convert(self, messages: tuple[Message, ...], thinking_on: bool
                ) -> tuple[Any, list[dict[str, Any]]]:
        """ANT-R1..R8: (system, alternating turns)."""
        self.prepare_ids(messages)
        system: list[dict[str, Any]] = []
        turns: list[tuple[str, list[dict[str, Any]]]] = []
        calls: set[str] = set()
        for i, m in enumerate(messages):
            role, where = m.role, f"messages[{i}]"
            if role not in _ROLES:
                raise _fail(f"{where}: role {m.raw.get('role')!r} is not supported",
                            "invalid_role")
            if role == "system" or role == "developer":
                blocks = self.parts(m, where, images=False)
            elif role == "user":
                blocks = self.parts(m, where, documents=True)
            elif role == "assistant":
                blocks = self.thinking(m) if thinking_on else []
                blocks += [b for b in self.parts(m, where, images=False)
                           if b.get("type") != "text" or b["text"].strip()]
                for k, call in enumerate(m.tool_calls):
                    blocks.append(self.tool_use(call, f"{where}.tool_calls[{k}]"))
                    calls.add(call.id or "")
            else:  # tool
                cid = m.tool_call_id
                if cid is None or cid not in calls:
                    raise _fail(f"{where}: 'tool_call_id' does not name an earlier tool call")
                block: dict[str, Any] = {"type": "tool_result", "tool_use_id": self.ids[cid]}
                content: Any = m.text
                if content is None:
                    content = [b for b in self.parts(m, where) if b.get("text") != ""]
                if content:  # an empty result has no content at all (ANT-R2)
                    block["content"] = content
                blocks = [block]
            blocks = [b for b in blocks if b.get("type") != "text" or b["text"]]  # ANT-R3
            if blocks and m.cache_control is not None:
                blocks[-1]["cache_control"] = m.cache_control
            if role == "system" or role == "developer":
                system += blocks
            elif blocks:
                r = "assistant" if role == "assistant" else "user"
                if turns and turns[-1][0] == r:  # ANT-R4
                    turns[-1][1].extend(blocks)
                else:
                    turns.append((r, blocks))
        if self.missing:
            raise ImagesNeeded(self.missing)
        out: list[dict[str, Any]] = []
        for r, blocks in turns:
            if r == "user":
                blocks.sort(key=lambda b: b.get("type") != "tool_result")  # stable: results first
            out.append({"role": r, "content": blocks})
        for k, t in enumerate(out):  # ANT-R5
            if t["role"] == "assistant":
                after = out[k + 1]["content"] if k + 1 < len(out) else []
                answered = {b.get("tool_use_id") for b in after}
                for b in t["content"]:
                    if b["type"] == "tool_use" and b["id"] not in answered:
                        raise _fail(f"tool call {b['id']!r} has no tool result right after it")
        if out and out[0]["role"] == "assistant":  # ANT-R6
            out.insert(0, {"role": "user", "content": [{"type": "text",
                                                        "text": PREFILL_PLACEHOLDER}]})
        if out and out[-1]["role"] == "assistant":  # ANT-R7
            last = out[-1]["content"]
            if last[-1]["type"] == "text":
                last[-1]["text"] = last[-1]["text"].rstrip()
                if not last[-1]["text"]:
                    last.pop()
                if not last:
                    out.pop()
        if not out:  # ANT-R8
            raise _fail("at least one user message is required", "invalid_messages")
        if len(system) == 1 and set(system[0]) == {"type", "text"}:
            return system[0]["text"], out
        return (system or None), out


def _check_name(name: str, where: str) -> None:
    if not _TOOL_NAME.fullmatch(name):
        raise _fail(f"{where}: tool name {name!r} not accepted by Anthropic "
                    "(1-128 of A-Z a-z 0-9 _ -)", "invalid_tool_name")


def _tools(req: ChatRequest, strict: bool = False) -> tuple[list[dict[str, Any]], Any]:
    """ANT-T1/T2: (tools, tool_choice) in Anthropic form; ``strict``: the model takes strict
    tools (ANT-J4)."""
    tools = []
    for i, t in enumerate(req.tools):
        if t.type != "function" or not t.function:
            raise _fail(f"tools[{i}]: only function tools are supported", "invalid_tools")
        if t.name is None:
            raise _fail(f"tools[{i}]: tool name {t.function.get('name')!r} not accepted by "
                        "Anthropic (1-128 of A-Z a-z 0-9 _ -)", "invalid_tool_name")
        _check_name(t.name, f"tools[{i}]")
        tool: dict[str, Any] = {"name": t.name}
        if t.description is not None:
            tool["description"] = t.description
        tool["input_schema"] = t.parameters if t.parameters is not None else \
            {"type": "object", "properties": {}}
        if t.strict and strict:  # ANT-J4
            tool["input_schema"] = claude_schema(tool["input_schema"])
            tool["strict"] = True
        if t.cache_control is not None:
            tool["cache_control"] = t.cache_control
        tools.append(tool)
    choice = req.tool_choice
    if choice is None:
        return tools, None
    if choice.mode == "function":
        return tools, {"type": "tool", "name": choice.name}
    if choice.mode is not None:
        return tools, dict(_TOOL_CHOICES[choice.mode])
    raw = _dict(choice.raw)  # Anthropic's own shape {"name": …} is read too
    name = _dict(raw.get("function")).get("name", raw.get("name"))
    if isinstance(name, str):
        return tools, {"type": "tool", "name": name}
    raise _fail("'tool_choice' must be auto, none, required or a function", "invalid_value")


def _thinking(req: ChatRequest, alias: str) -> tuple[dict[str, Any] | None, bool]:
    """(thinking config, explicit?) per docs/vendor-rules.md, ANT-K1 (``reasoning_effort``
    included)."""
    explicit = req.reasoning.thinking
    if "thinking" in req.invalid or (explicit is not None and explicit.get("type") not in (
            "enabled", "disabled", "adaptive")):
        raise _fail("'thinking' must be an Anthropic thinking object", "invalid_value")
    if explicit is not None:
        if explicit["type"] == "enabled" and not _int(explicit.get("budget_tokens")):
            raise _fail("'thinking.budget_tokens' must be a positive integer", "invalid_value")
        return {k: explicit[k] for k in ("type", "budget_tokens") if k in explicit}, True
    m = _THINK_N.search(alias)
    if m:
        return {"type": "enabled", "budget_tokens": int(m.group(1))}, False
    effort = req.reasoning.effort
    if effort is not None or "reasoning_effort" in req.invalid:
        if effort == "none":
            return None, False
        if effort is None or effort not in EFFORT_BUDGETS:
            raise _fail(f"'reasoning_effort' {req.original.get('reasoning_effort')!r} is not "
                        f"one of {', '.join(['none', *EFFORT_BUDGETS])}", "invalid_value")
        return {"type": "enabled", "budget_tokens": EFFORT_BUDGETS[effort]}, False
    if "think" in alias.lower():
        return {"type": "enabled", "budget_tokens": DEFAULT_BUDGET}, False
    return None, False


def _num(req: ChatRequest, key: str, value: float | None) -> float | None:
    if key in req.invalid or (value is not None and math.isnan(value)):
        raise _fail(f"'{key}' must be a number", "invalid_value")
    return value


def build_exchange(req: ChatRequest | dict[str, Any], ctx: ChatContext, *,
                   first_party: bool = True) -> "AnthropicExchange":
    """The Anthropic Messages request for one attempt (docs/vendor-rules.md, ANT-1 to ANT-K4),
    built from the request model (a dict is parsed first); ``ClientError`` (400) for a request
    Anthropic cannot serve, ``ImagesNeeded`` when remote images or documents must be fetched
    first. ``first_party`` is false when Bedrock or Vertex build their body with it: those
    take no URL or Files API document sources (ANT-D5, ANT-D6)."""
    req = chat_request(req)
    sampling = req.sampling
    n = sampling.n
    if "n" in req.invalid or (n is not None and n != 1):
        raise _fail("'n' other than 1 is not supported by Anthropic", "unsupported_parameter")
    forced = ctx.provider.preferences.structured_output if ctx.provider is not None else None
    native = structured_outputs(ctx.upstream_model) if forced is None else forced == "native"
    schema, structured = _response_format(req, native)
    limit = sampling.max_tokens
    if "max_tokens" in req.invalid or (limit is not None and limit < 1):
        raise _fail("'max_tokens' must be a positive integer", "invalid_value")
    thinking, explicit = _thinking(req, ctx.client_model)
    tools, choice = _tools(req, native)
    ours = False  # the tool choice is the fallback's, not the client's (ANT-J3)
    if structured == "tool":  # ANT-J3: a forced answer tool whose input is the answer
        if any(t["name"] == ANSWER_TOOL for t in tools):
            raise _fail(f"tool name {ANSWER_TOOL!r} is reserved for structured output on this "
                        "model", "invalid_tool_name")
        ours = not tools or choice is None or choice["type"] in ("none", "auto")
        if not tools or choice is not None and choice["type"] == "none":
            choice = {"type": "tool", "name": ANSWER_TOOL}
        elif ours:
            choice = {"type": "any"}  # a client tool, or the answer through the answer tool
        tools.append({"name": ANSWER_TOOL, "description": _ANSWER_DESCRIPTION,
                      "input_schema": schema})
    if thinking and not explicit and tools and choice and choice["type"] in ("any", "tool"):
        thinking = None  # a forced tool cannot be combined with thinking (ANT-K3)
    if structured == "tool" and ours and thinking and thinking["type"] != "disabled":
        choice = {"type": "auto"}  # ANT-J3: explicit thinking, so the answer tool is offered
    if thinking and thinking["type"] == "enabled":  # ANT-K2
        budget = max(MIN_BUDGET, thinking["budget_tokens"])
        if limit is not None and limit <= budget:
            budget = limit - 1
        thinking = {**thinking, "budget_tokens": budget} if budget >= MIN_BUDGET else None
    if "messages" in req.invalid:
        raise _fail("'messages' must be a list of message objects", "invalid_messages")
    on = bool(thinking and thinking["type"] != "disabled")
    b = _Builder(ctx, first_party)
    system, turns = b.convert(req.messages, on)
    if on:
        last = next((t for t in reversed(turns) if t["role"] == "assistant"), None)
        if last is not None and last is turns[-1]:
            raise _fail("a final assistant message (prefill) cannot be used with thinking")
        if last and any(x["type"] == "tool_use" for x in last["content"]) and \
                last["content"][0]["type"] not in ("thinking", "redacted_thinking"):
            thinking, on = None, False  # ANT-K4: nothing to replay, so no thinking this time
            b = _Builder(ctx, first_party)
            system, turns = b.convert(req.messages, on)
    if limit is None:  # the default leaves room for an answer above the budget (ANT-K2)
        limit = DEFAULT_MAX_TOKENS + (thinking or {}).get("budget_tokens", 0)
    body: dict[str, Any] = {"model": ctx.upstream_model, "max_tokens": limit}
    if system is not None:
        body["system"] = system
    body["messages"] = turns
    if "stop" in req.invalid:
        raise _fail("'stop' must be a string or a list of strings", "invalid_value")
    stop = [s for s in sampling.stop or () if s]
    if stop:
        body["stop_sequences"] = stop
    temperature = _num(req, "temperature", sampling.temperature)
    top_p = _num(req, "top_p", sampling.top_p)
    top_k = sampling.top_k
    top_k_bad = "top_k" in req.invalid or (top_k is not None and top_k < 1)
    if on:  # ANT-K3
        temperature = top_k = None
        top_k_bad = False
        if top_p is not None and not 0.95 <= top_p <= 1:
            top_p = None
    elif temperature is not None:
        temperature = min(max(temperature, 0), 1)
        top_p = None  # newer models refuse both (docs/vendor-rules.md, ANT-K3)
    if temperature is not None:
        body["temperature"] = temperature
    if top_p is not None:
        body["top_p"] = top_p
    if top_k_bad:
        raise _fail("'top_k' must be a positive integer", "invalid_value")
    if top_k is not None:
        body["top_k"] = top_k
    answer = structured == "tool"
    if b.tool_names and len(tools) == answer:  # ANT-T3: history needs tools; never used
        tools = [{"name": t, "description": "(tool from the conversation history)",
                  "input_schema": {"type": "object", "properties": {}}}
                 for t in dict.fromkeys(b.tool_names)
                 if not (answer and t == ANSWER_TOOL)] + tools
        if not answer:
            choice = {"type": "none"}
    if tools:
        body["tools"] = tools
        if req.parallel_tool_calls is False and (choice or {}).get("type") != "none":
            choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
        if choice:
            body["tool_choice"] = choice
    if thinking:
        body["thinking"] = thinking
    if structured == "native":  # ANT-J1
        body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    if req.user:
        body["metadata"] = {"user_id": req.user}
    if ctx.stream:
        body["stream"] = True
    headers = [("anthropic-version", API_VERSION), ("content-type", "application/json"),
               ("accept", "text/event-stream" if ctx.stream else "application/json")]
    if ctx.api_key:
        headers.insert(0, ("x-api-key", ctx.api_key))
    prefs = ctx.provider.preferences.headers
    if b.file_ids:  # ANT-D6: the provider's betas, then the Files API's, as one header
        betas = dict.fromkeys([*provider_betas(prefs), FILES_BETA])
        headers.append((_BETA, ",".join(betas)))
        prefs = without_beta(prefs)
    try:
        data = dumps(body)
    except (ValueError, RecursionError):  # lone surrogates, 1e999 (inf) from the client's JSON
        raise _fail("the request holds text or numbers that cannot be sent as JSON") from None
    request = UpstreamRequest("POST", messages_url(ctx.provider.base_url),
                              merge_headers(headers, prefs), data)
    return AnthropicExchange(request, ctx, structured)


_ANSWER_DESCRIPTION = ("Give your final answer by calling this tool: its input is the answer, "
                       "a JSON value that follows this input schema.")
#: ``json_object`` under the fallback (ANT-J3): any JSON object
_ANY_OBJECT = {"type": "object"}


def _response_format(req: ChatRequest, native: bool) -> tuple[Any, str | None]:
    """``response_format`` → (schema, ``"native"`` / ``"tool"`` / None) per ANT-J1..J3: a
    ``json_schema`` schema is sent as ``output_config.format`` when the model enforces it
    (transformed by ``claude_schema``) and as the answer tool's ``input_schema`` otherwise
    (as sent: tool input schemas take any JSON Schema); ``json_object`` always takes the
    answer tool with a schema that admits any object, because ``output_config.format``
    requires ``additionalProperties: false`` on every object and so cannot say "any object"."""
    fmt = req.sampling.response_format_type
    if "response_format" in req.invalid:
        raise _fail("'response_format' must be an object", "invalid_value")
    if fmt is None or fmt == "text":
        return None, None
    if fmt == "json_object":
        return dict(_ANY_OBJECT), "tool"
    if fmt != "json_schema":
        raise _fail(f"response_format {fmt!r} is not supported by Anthropic",
                    "unsupported_parameter")
    spec = (req.sampling.response_format or {}).get("json_schema")
    if not isinstance(spec, dict):
        raise _fail("response_format 'json_schema' needs a 'json_schema' object",
                    "invalid_value")
    schema = spec.get("schema")
    if schema is None:  # OpenAI allows it: no schema is any JSON object
        return dict(_ANY_OBJECT), "tool"
    if not isinstance(schema, dict):
        raise _fail("'response_format.json_schema.schema' must be an object", "invalid_value")
    if native:
        return claude_schema(schema), "native"
    if schema.get("type") != "object":  # a tool's input is an object (ANT-J3)
        raise _fail("this Claude model cannot enforce a JSON schema whose root is not an "
                    "object", "unsupported_parameter")
    return schema, "tool"


# -- responses -------------------------------------------------------------------------------

#: ``usage.cache_creation`` counts kept in ``prompt_tokens_details`` under their own names (U-1)
_CACHE_TTLS = ("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")


def _usage(raw: dict[str, Any]) -> dict[str, Any]:
    """Anthropic usage → OpenAI usage (docs/contracts.md, "Usage figures", U-1, U-4): the
    prompt is input + cache reads + cache writes; the writes, their split by TTL and the
    server tool requests are kept too."""
    read = token_count(raw.get("cache_read_input_tokens")) or 0
    write = token_count(raw.get("cache_creation_input_tokens"))
    split = _dict(raw.get("cache_creation"))
    ttls = {k: n for k in _CACHE_TTLS if (n := token_count(split.get(k))) is not None}
    if write is None and ttls:  # the split without its total
        write = sum(ttls.values())
    prompt = (token_count(raw.get("input_tokens")) or 0) + read + (write or 0)
    thinking = token_count(_dict(raw.get("output_tokens_details")).get("thinking_tokens"))
    tools = token_counts(raw.get("server_tool_use"))
    return usage_object(prompt, token_count(raw.get("output_tokens")) or 0, read, thinking or 0,
                        cache_write=write, prompt_details=ttls,
                        vendor={"server_tool_use": tools} if tools else None)


def _finish(stop_reason: Any, tools: bool) -> str:
    if not isinstance(stop_reason, str):
        return "tool_calls" if tools else "stop"
    return FINISH_REASONS.get(stop_reason.lower(), "stop")


def _answer_finish(stop_reason: Any, calls: bool) -> str:
    """The finish reason of an answer given through the answer tool (ANT-J5): ``stop_reason:
    tool_use`` is ``stop`` unless client tools were called too; ``max_tokens`` stays
    ``length`` (the answer may be cut)."""
    reason = _finish(stop_reason, calls)
    return "stop" if reason == "tool_calls" and not calls else reason


def _upstream_error(status: int, headers: tuple[tuple[str, str], ...], message: str,
                    etype: Any) -> UpstreamError:
    vendor = ERROR_TYPES.get(etype) if isinstance(etype, str) else None
    if status < 400:  # an error sent with a 2xx status or inside a stream: its usual status
        status = vendor[1] if vendor else 500
    return status_error(message, status, status_type(status, vendor[0] if vendor else None),
                        etype if isinstance(etype, str) and etype else str(status),
                        retry_after(headers))


class AnthropicExchange:
    """One attempt against the Messages API: the request and how to read its answers."""

    def __init__(self, request: UpstreamRequest, ctx: ChatContext,
                 structured: str | None = None) -> None:
        self.request = request
        #: the usage of the whole answer ``parse_body`` read (for stats)
        self.usage: dict[str, Any] | None = None
        self.ctx = ctx
        #: structured output asked for: ``"native"`` (``output_config.format``), ``"tool"`` (the
        #: answer-tool fallback, ANT-J3) or None (docs/vendor-rules.md, ANT-J5, ANT-J6)
        self.structured = structured
        #: signed thinking / redacted blocks of the last parsed body, for replay (ANT-K4)
        self.thinking_blocks: list[dict[str, Any]] = []

    def parse_body(self, status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> bytes:
        """A Messages response → ``chat.completion`` bytes (ANT-N1, ANT-N2)."""
        try:
            obj = loads_strict(body)
        except (ValueError, RecursionError):
            raise UpstreamError("upstream answered with a body that is not JSON", kind="decode",
                                upstream_status=status) from None
        if not isinstance(obj, dict):
            raise UpstreamError("upstream answered with JSON that is not an object",
                                kind="decode", upstream_status=status)
        if obj.get("type") == "error" or obj.get("error"):  # ERR-4
            raise self.parse_error(status if status >= 400 else 0, headers, body)
        if not isinstance(obj.get("content"), list):
            raise UpstreamError("upstream answered without a content list", kind="protocol",
                                upstream_status=status)
        text: list[str]
        reasoning: list[str]
        calls: list[dict[str, Any]]
        blocks: list[dict[str, Any]]
        text, reasoning, calls, blocks = [], [], [], []
        answers: list[Any] = []
        for block in obj["content"]:
            block, kind = _dict(block), _dict(block).get("type")
            if kind == "text":
                text.append(_str(block.get("text")))
            elif kind == "thinking":
                reasoning.append(_str(block.get("thinking")))
                blocks.append({"type": "thinking", "thinking": _str(block.get("thinking")),
                               "signature": _str(block.get("signature"))})
            elif kind == "redacted_thinking":
                blocks.append({"type": "redacted_thinking", "data": _str(block.get("data"))})
            elif kind == "tool_use":
                args = block.get("input")
                if self.structured == "tool" and block.get("name") == ANSWER_TOOL:
                    answers.append({} if args is None else args)  # ANT-J5
                    continue
                calls.append({"id": call_id(self.ctx, block.get("id"), len(calls),
                                             alphabet=ALNUM_LOWER_FIRST),
                              "name": _str(block.get("name")),
                              "arguments": {} if args is None else args})
        self.thinking_blocks = blocks
        try:
            for c in calls:
                c["arguments"] = dumps(c["arguments"]).decode()
            self.usage = _usage(_dict(obj.get("usage")))
            stop = obj.get("stop_reason")
            if self.structured and stop == "refusal":  # ANT-J6
                return completion(self.ctx, content="", reasoning="".join(reasoning),
                                  tool_calls=calls, usage=self.usage, finish_reason="stop",
                                  refusal="".join(text))
            if answers:  # ANT-J5: the answer tool's input is the answer
                return completion(self.ctx, content=dumps(answers[0]).decode(),
                                  reasoning="".join(reasoning), tool_calls=calls,
                                  usage=self.usage,
                                  finish_reason=_answer_finish(stop, bool(calls)))
            return completion(self.ctx, content="".join(text), reasoning="".join(reasoning),
                              tool_calls=calls, usage=self.usage,
                              finish_reason=_finish(stop, bool(calls)))
        except (ValueError, RecursionError):  # lone surrogates, nesting beyond the encoder
            raise UpstreamError("upstream answer cannot be re-encoded", kind="decode",
                                upstream_status=status) from None

    def parse_error(self, status: int, headers: tuple[tuple[str, str], ...],
                    body: bytes) -> UpstreamError:
        """Anthropic error JSON → ``UpstreamError``; other shapes via the base (docs/contracts.md,
        "Error status mapping"; docs/vendor-rules.md, "Errors from Anthropic")."""
        try:
            obj = loads_strict(body[:65536])
        except (ValueError, RecursionError):
            obj = None
        err = _dict(_dict(obj).get("error"))
        if isinstance(err.get("message"), str):
            return _upstream_error(status, headers, err["message"], err.get("type"))
        return error_from_body(status or 502, headers, body)

    def stream_decoder(self) -> "AnthropicStreamDecoder":
        return AnthropicStreamDecoder(self.ctx, self.structured)


class AnthropicStreamDecoder(SSEVendorDecoder):
    """Anthropic SSE bytes → OpenAI chunks, split-invariant (ANT-S3; see the module docstring).

    ``usage`` is the OpenAI usage seen so far (``None`` before any); ``thinking_blocks`` the
    signed thinking and redacted blocks, kept for replay and never emitted (ANT-K4).
    """

    def __init__(self, ctx: ChatContext, structured: str | None = None) -> None:
        super().__init__()
        self.ctx = ctx
        self._writer = ChunkWriter(ctx)
        #: as ``AnthropicExchange.structured`` (ANT-J5, ANT-J6)
        self.structured = structured
        self._held: list[str] = []  # text held back until it is known to be content or refusal
        self._json_out = False  # native: the text began as JSON and streams as content
        self._answered = False  # fallback: the answer tool was called
        self._raw_usage: dict[str, Any] | None = None
        self._blocks: dict[int, dict[str, Any]] = {}  # Anthropic block index -> state
        self._stop_reason: Any = None
        self.thinking_blocks: list[dict[str, Any]] = []

    def _eof(self) -> list[StreamItem]:
        return [StreamFailed(UpstreamError("upstream stream ended before message_stop",
                                           kind="truncated"))]

    @property
    def usage(self) -> dict[str, Any] | None:
        return None if self._raw_usage is None else _usage(self._raw_usage)

    @property
    def raw_usage(self) -> dict[str, Any] | None:
        """Anthropic's usage fields seen so far, merged as U-3 says (a copy; ``None`` before
        any): Bedrock fills the ones missing from its invocation metrics (BR-S6)."""
        return None if self._raw_usage is None else dict(self._raw_usage)

    def _events(self, events: list[SSEEvent], out: list[StreamItem]) -> None:
        """``SSEVendorDecoder._events`` with text deltas written straight out: a delta in
        Anthropic's own byte layout needs neither the parsed object nor the block state (see
        ``_block_delta``), only its string. A string without \\u or \\/ escapes (and without
        U+2028/U+2029) is already in the form the writer gives it: JSON-escaping writes
        quotes, backslashes and controls with exactly the escapes JSON allows for them."""
        if self.structured is not None:  # text may be held back (ANT-J5, ANT-J6)
            super()._events(events, out)
            return
        writer = self._writer
        match = _TEXT_DELTA.fullmatch
        head, tail = writer.text_parts
        head += b'"'
        tail = b'"' + tail
        append = out.append
        for ev in events:
            data = ev.data
            m = match(data)
            if m is not None and writer.started:
                text = m.group(1)
                if not text:
                    continue  # S-7
                if "\\" in text and ("\\u" in text or "\\/" in text):
                    # escapes the writer would write otherwise: decode, let it encode
                    out += writer.text(scanstring(data, m.start(1))[0])
                    continue
                # the escapes left (\" \\ \b \f \n \r \t) are the ones the writer uses
                if "\u2028" in text or "\u2029" in text:  # S-8, as dumps does
                    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
                append(StreamChunk(head + text.encode("utf-8") + tail))
                continue
            out += self._event(ev)
            if self._done:
                return

    def _event(self, ev: SSEEvent) -> list[StreamItem]:
        if not ev.data or ev.data == "[DONE]":
            return []
        try:
            obj = loads_strict(ev.data)
        except (ValueError, RecursionError):
            raise DecodeError("invalid_json", "an Anthropic event is not JSON") from None
        if not isinstance(obj, dict):
            raise DecodeError("invalid_json", "an Anthropic event is not a JSON object")
        kind = obj.get("type", ev.event)  # SSE-11: trust the JSON type
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            return []  # ping, vertex_event, anything new
        try:
            return handler(self, obj)
        except UnicodeEncodeError:
            raise DecodeError("invalid_text", "an Anthropic event has a lone surrogate") from None

    def _message_start(self, obj: dict[str, Any]) -> list[StreamItem]:
        usage = _dict(_dict(obj.get("message")).get("usage"))
        if self._raw_usage is None:
            self._raw_usage = dict(usage)
        return list(self._writer.start())

    def _block_start(self, obj: dict[str, Any]) -> list[StreamItem]:
        index, block = obj.get("index"), _dict(obj.get("content_block"))
        if not isinstance(index, int) or index in self._blocks:
            return []
        kind = block.get("type")
        state = self._blocks[index] = {"type": kind, "args": False, "text": "", "sig": ""}
        w = self._writer
        if kind == "text":
            return self._text(_str(block.get("text")))
        if kind == "thinking":
            state["text"], state["sig"] = _str(block.get("thinking")), _str(block.get("signature"))
            return list(w.reasoning(state["text"]))
        if kind == "redacted_thinking":
            self.thinking_blocks.append({"type": "redacted_thinking",
                                         "data": _str(block.get("data"))})
        elif kind == "tool_use" and self.structured == "tool" and \
                block.get("name") == ANSWER_TOOL:
            state["type"], self._answered = "answer", True  # ANT-J5
        elif kind == "tool_use":
            call = call_id(self.ctx, block.get("id"), w.tool_count, alphabet=ALNUM_LOWER_FIRST)
            return list(w.tool_start(index, call, _str(block.get("name"))))
        return []

    def _block_delta(self, obj: dict[str, Any]) -> list[StreamItem]:
        index, delta = obj.get("index"), _dict(obj.get("delta"))
        state = self._blocks.get(index) if isinstance(index, int) else None
        kind = delta.get("type")
        if kind == "text_delta":
            return self._text(_str(delta.get("text")))
        if kind == "thinking_delta":
            if state is not None:
                state["text"] += _str(delta.get("thinking"))
            return list(self._writer.reasoning(_str(delta.get("thinking"))))
        if kind == "signature_delta" and state is not None:
            state["sig"] += _str(delta.get("signature"))
        elif kind == "input_json_delta" and state is not None and state["type"] == "answer":
            fragment = _str(delta.get("partial_json"))  # ANT-J5: the answer, as content
            state["args"] = state["args"] or bool(fragment)
            return list(self._writer.text(fragment))
        elif kind == "input_json_delta" and state is not None and state["type"] == "tool_use":
            fragment = _str(delta.get("partial_json"))  # S-7: "" gives nothing
            state["args"] = state["args"] or bool(fragment)
            return list(self._writer.tool_args(index, fragment))
        return []

    def _block_stop(self, obj: dict[str, Any]) -> list[StreamItem]:
        index = obj.get("index")
        state = self._blocks.get(index) if isinstance(index, int) else None
        if state is None or state.get("stopped"):
            return []
        state["stopped"] = True
        if state["type"] == "thinking" and state["sig"]:
            self.thinking_blocks.append({"type": "thinking", "thinking": state["text"],
                                         "signature": state["sig"]})
        if state["type"] == "tool_use" and not state["args"]:  # TC-3
            return list(self._writer.tool_args(index, "{}"))
        if state["type"] == "answer" and not state["args"]:
            return list(self._writer.text("{}"))
        return []

    def _text(self, text: str) -> list[StreamItem]:
        """Text to the client, or held back under structured output (ANT-J5, ANT-J6): with
        ``output_config.format`` until its first non-blank character shows whether it is the
        JSON answer (``{`` or ``[``: sent from then on) or not (held to the end); under the
        fallback always (the answer comes from the answer tool)."""
        if not text:
            return []
        if self.structured is None or self._json_out:
            return list(self._writer.text(text))
        self._held.append(text)
        if self.structured == "native":
            head = "".join(self._held).lstrip()
            if head and head[0] in "{[":
                self._json_out = True
                held, self._held = self._held, []
                return [c for t in held for c in self._writer.text(t)]
        return []

    def _message_delta(self, obj: dict[str, Any]) -> list[StreamItem]:
        stop = _dict(obj.get("delta")).get("stop_reason")
        if stop is not None:
            self._stop_reason = stop  # ANT-S3: the last one wins
        usage = obj.get("usage")
        if isinstance(usage, dict):  # U-3: running totals, overwrite
            self._raw_usage = {**(self._raw_usage or {}),
                               **{k: v for k, v in usage.items() if v is not None}}
        return []

    def _message_stop(self, obj: dict[str, Any]) -> list[StreamItem]:
        self._done = True
        reported = self.usage  # None when the host reported none: absent, not zero (stats)
        w = self._writer
        reason = _finish(self._stop_reason, w.tool_count > 0)
        out: list[StreamItem] = []
        if self.structured and self._stop_reason == "refusal" and not self._json_out:
            reason = "stop"  # ANT-J6: the held text is the refusal
            out += [c for t in self._held for c in w.refusal(t)]
        elif self._answered:  # ANT-J5
            reason = _answer_finish(self._stop_reason, w.tool_count > 0)
        else:
            out += [c for t in self._held for c in w.text(t)]
        self._held = []
        return [*out, *w.finish(reason, reported or usage_object()), StreamDone(reported)]

    def _error_event(self, obj: dict[str, Any]) -> list[StreamItem]:
        self._done = True
        err = _dict(obj.get("error"))
        message = _str(err.get("message")) or "upstream reported an error in the stream"
        return [StreamFailed(_upstream_error(0, (), message, err.get("type")))]


# A text delta exactly as Anthropic writes it: valid JSON whose parsed form would take
# _block_delta's text_delta branch (any integer index; the string may hold any JSON escape).
# Strings are matched as unrolled loops (runs of plain characters between escapes): several
# times faster in `re` than one alternation per character.
_TEXT_DELTA = re.compile(
    r'\{"type":"content_block_delta","index":-?(?:0|[1-9][0-9]*),'
    r'"delta":\{"type":"text_delta","text":"([^"\\\x00-\x1f]*'
    r'(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*)"\}\}')

_HANDLERS = {
    "message_start": AnthropicStreamDecoder._message_start,
    "content_block_start": AnthropicStreamDecoder._block_start,
    "content_block_delta": AnthropicStreamDecoder._block_delta,
    "content_block_stop": AnthropicStreamDecoder._block_stop,
    "message_delta": AnthropicStreamDecoder._message_delta,
    "message_stop": AnthropicStreamDecoder._message_stop,
    "error": AnthropicStreamDecoder._error_event,
}
