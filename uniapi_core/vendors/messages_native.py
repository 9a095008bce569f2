"""Native Messages passthrough: an Anthropic Messages request to a channel that speaks Messages.

A client of the ``POST /v1/messages`` front (Claude Code, the ``anthropic`` SDK) whose attempt
goes to Anthropic (``engine: claude``), Claude on Vertex (``engine: vertex``, a ``claude``
model) or Claude on Bedrock (``engine: aws``) is served without a round trip through the
OpenAI chat format, so nothing the chat model cannot hold is lost: ``cache_control``, signed
``thinking`` and ``redacted_thinking`` blocks, citations, server-tool blocks, new fields.

Theory of operation
-------------------
``build_native_exchange(body, ctx, engine, beta=…)`` is pure, like the chat builders.

* *Request*. The client's decoded body is sent as it came, key order kept, re-encoded with
  ``jsonutil.dumps`` (U+2028/U+2029 escaped), except:

  - Anthropic: ``model`` is the upstream model (in place; first when the client sent none);
    headers ``x-api-key``, ``anthropic-version`` (``anthropic.API_VERSION``), content type and
    accept, then the provider's ``preferences.headers`` (``openai.merge_headers``: same names
    replaced), URL ``anthropic.messages_url(base_url)``.
  - Vertex (VTX-B3): no ``model`` (it is in ``vertex.vertex_url``'s path, ``rawPredict`` /
    ``streamRawPredict``), ``"anthropic_version": "vertex-2023-10-16"`` first, bearer token
    from ``ChatContext.access_token`` (``vertex._auth``), provider headers as for chat.
  - Bedrock (BR-1..BR-3): no ``model`` and no ``stream`` (the URL's ``invoke`` /
    ``invoke-with-response-stream`` says it), ``"anthropic_version": "bedrock-2023-05-31"``
    first, signed with SigV4 exactly as ``bedrock.build_exchange`` signs.
  - Vertex and Bedrock take no ``url`` sources: an ``image`` or ``document`` block with one
    (in a turn or a ``tool_result``) gets the bytes the gateway fetched (``_inline_urls``).

  ``stream`` follows ``ctx.stream`` (the gateway's decision): ``true`` is set when it streams,
  a ``true`` the client sent is made ``false`` when it does not; otherwise it is the client's.
  Betas: the client's ``anthropic-beta`` header values (``beta``, comma lists allowed) and the
  provider's ``anthropic-beta`` preference header are merged (client first, duplicates
  dropped) into one ``anthropic-beta`` header for Anthropic, and into the body list
  ``anthropic_beta`` (appended to one the client already put there) for Vertex and Bedrock,
  which read betas from the body and not from a header.

* *Whole answers* (``NativeExchange.parse_body``): the upstream's bytes, with only the value of
  the first top-level ``"model"`` key replaced by the client's model name (a targeted splice:
  every other byte, whitespace included, is the upstream's; a body without ``model`` is
  returned as it came). The body is parsed first (``loads_strict``), so a body that is not a
  JSON object is ``UpstreamError`` ``decode`` and one without a ``content`` list ``protocol``,
  as for chat; an error sent with a 2xx (ERR-4) goes through ``parse_error``. ``usage`` is the
  OpenAI-shaped usage of the answer (U-1; Bedrock's token-count headers fill what the body
  lacks, BR-S6) for the stats, never written into the answer.

* *Errors*: the vendor's own mapping (``AnthropicExchange``, ``VertexClaudeExchange``,
  ``BedrockExchange``.``parse_error``): the front words them as Anthropic errors.

* *Streams*: every upstream Anthropic event becomes one ``StreamChunk`` holding
  ``event: <type>\\ndata: <json>\\n\\n``, ``<json>`` being the upstream's own text of the event
  (Anthropic and Vertex: the SSE ``data``; Bedrock: the base64-decoded ``bytes`` of an
  event-stream ``chunk``). The only changes: ``message_start``'s ``message.model`` is the
  client's model (same splice), CR/LF between JSON tokens become spaces (an SSE data line
  cannot hold them; JSON strings cannot either, so the value is the same) and U+2028/U+2029
  are written ``\\u2028``/``\\u2029`` (S-8). The event name is the JSON ``type`` (SSE-11; the
  SSE name when there is none). ``ping`` and unknown event types pass through; Vertex's own
  ``vertex_event`` is dropped, as is an event without a usable name. ``message_stop`` is
  followed by ``StreamDone(usage)``: usage in OpenAI's shape (U-1) from ``message_start``
  and ``message_delta`` (running totals, U-3; on Bedrock the final invocation metrics fill
  what the events left out, BR-S6), ``None`` when none was reported. An ``error`` event is
  ``StreamFailed`` (Anthropic's mapping), not passed through: the relay writes the front's
  error event. Bedrock ``exception``/``error`` frames are ``StreamFailed`` as in
  ``bedrock.py``. A body that ends before ``message_stop`` is a ``truncated`` failure (ANT-S3,
  DEC-5): a ``message_delta`` with a ``stop_reason`` does not make the ending synthesized.
  Framing, split invariance and the error contract (DEC-1..DEC-4) are the shared decoders':
  ``SSEVendorDecoder`` for Anthropic/Vertex, ``BedrockStreamDecoder`` (whose chunk handler
  this module replaces) for Bedrock. Every event's JSON is checked (``loads_strict``), except
  text deltas that match ``anthropic._TEXT_DELTA``, whose pattern only matches valid JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable

# typeshed's json.decoder stub does not declare ``scanstring``; the module has it at runtime
from json.decoder import scanstring  # type: ignore[attr-defined]
from typing import Any

import attrs

from ..errors import DecodeError, GatewayError, UpstreamError
from ..jsonutil import dumps, loads_strict
from ..streams import SSEEvent
from . import anthropic, bedrock, vertex
from .anthropic import _TEXT_DELTA, _upstream_error, _usage
from .base import (
    ChatContext,
    ImagesNeeded,
    SSEVendorDecoder,
    StreamChunk,
    StreamDone,
    StreamFailed,
    StreamItem,
    UpstreamRequest,
)
from .bedrock import (
    _HEADER_COUNTS,
    _METRIC_COUNTS,
    _SIGNER_OWNED,
    _error_class,
    _header_count,
    _message_of,
)
from .chunks import token_count
from .engine import _ALIASES
from .eventstream import MAX_FRAME
from .openai import merge_headers
from .sigv4 import amz_date, sign
from .toolkit import as_dict as _dict
from .toolkit import as_str as _str
from .toolkit import bad as _fail

__all__ = [
    "NATIVE_ENGINES",
    "NativeBedrockDecoder",
    "NativeExchange",
    "NativeSSEDecoder",
    "build_native_exchange",
    "native_engine",
]

#: the engines (canonical names, ``engine.ENGINES``) whose channels can take a Messages request
NATIVE_ENGINES = frozenset({"claude", "vertex", "aws"})
_BETA = "anthropic-beta"
#: an SSE event name this module writes: what Anthropic's types look like, nothing that could
#: break the framing
_EVENT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_DROPPED_EVENTS = frozenset({"vertex_event"})
#: skips one JSON value in text already checked by ``loads_strict``
_SKIP: Callable[[str, int], tuple[Any, int]]
_SKIP = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def native_engine(engine: str, upstream_model: str) -> str | None:
    """The canonical native engine (``claude``, ``vertex``, ``aws``) of a channel, or None
    when its upstream does not speak Messages (any other engine; a Vertex model that is not
    Claude's, VTX-B1). Engine aliases (``anthropic``, ``bedrock``, ``vertex-claude``) count."""
    name = _ALIASES.get(engine.lower(), engine.lower())
    if name not in NATIVE_ENGINES:
        return None
    if name == "vertex" and vertex.publisher(upstream_model) != "anthropic":
        return None
    return name


# -- request ---------------------------------------------------------------------------------

def _betas(beta: tuple[str, ...], prefs: tuple[tuple[str, str], ...]) -> list[str]:
    """The client's betas, then the provider's ``anthropic-beta`` preference, deduplicated."""
    return list(dict.fromkeys(anthropic.split_betas(beta) + anthropic.provider_betas(prefs)))


def _set_stream(out: dict[str, Any], stream: bool) -> None:
    """``stream`` as the gateway decided (in place, so the key order stays the client's)."""
    if stream:
        out["stream"] = True
    elif out.get("stream"):
        out["stream"] = False


def _cloud_body(body: dict[str, Any], version: str, betas: list[str],
                ctx: ChatContext) -> dict[str, Any]:
    """Vertex/Bedrock: ``anthropic_version`` first, no ``model``, betas in the body, and
    ``url`` sources inlined (``_inline_urls``)."""
    out = {"anthropic_version": version,
           **{k: v for k, v in body.items() if k not in ("model", "anthropic_version")}}
    if isinstance(out.get("messages"), list):
        out["messages"] = _inline_urls(out["messages"], ctx)
    if betas:
        sent = out.get("anthropic_beta")
        have = [b for b in sent if isinstance(b, str)] if isinstance(sent, list) else []
        out["anthropic_beta"] = list(dict.fromkeys(have + betas))
    return out


def _inline_urls(messages: list[Any], ctx: ChatContext) -> list[Any]:
    """Vertex and Bedrock take no ``url`` sources: each ``image`` or ``document`` block with
    one (in a turn, or in a ``tool_result``'s content) gets the bytes the gateway fetched
    (``ctx.images``) as a base64 source, a text document a text source, built as the chat
    path builds them (ANT-D1, ANT-D2, ANT-D5, REQ-4); ``ImagesNeeded`` names every URL not
    fetched yet. Blocks without one, and the messages holding none, are the client's objects
    as they came."""
    missing: list[str] = []

    def block(b: Any, where: str) -> Any:
        if not isinstance(b, dict):
            return b
        if b.get("type") == "tool_result" and isinstance(b.get("content"), list):
            content = blocks(b["content"], f"{where}.content")
            return b if content is b["content"] else {**b, "content": content}
        source = b.get("source")
        if b.get("type") not in ("image", "document") or not isinstance(source, dict) \
                or source.get("type") != "url" or not isinstance(source.get("url"), str):
            return b
        url = source["url"]
        got = ctx.images.get(url)
        if got is None:
            if url not in missing:
                missing.append(url)
            return b
        if b["type"] == "image":
            built = anthropic._image_block(got[1], got[0], where)
        else:
            built, _ = anthropic._document_bytes(got[0], got[1], None, where)
        return {**b, "source": built["source"]}

    def blocks(items: list[Any], where: str) -> list[Any]:
        out = [block(b, f"{where}[{i}]") for i, b in enumerate(items)]
        return items if all(a is b for a, b in zip(out, items)) else out

    result = []
    for i, m in enumerate(messages):
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):
            new = blocks(content, f"messages[{i}].content")
            m = m if new is content else {**m, "content": new}
        result.append(m)
    if missing:
        raise ImagesNeeded(missing)
    return result


def _encode(body: dict[str, Any]) -> bytes:
    try:
        return dumps(body)
    except (ValueError, RecursionError):  # 1e999 (inf), nesting beyond the encoder
        raise _fail("the request holds text or numbers that cannot be sent as JSON") from None


def _anthropic_request(body: dict[str, Any], ctx: ChatContext,
                       beta: tuple[str, ...]) -> UpstreamRequest:
    out = dict(body) if "model" in body else {"model": None, **body}
    out["model"] = ctx.upstream_model
    _set_stream(out, ctx.stream)
    prefs = ctx.provider.preferences.headers
    headers = [("anthropic-version", anthropic.API_VERSION), ("content-type", "application/json"),
               ("accept", "text/event-stream" if ctx.stream else "application/json")]
    if ctx.api_key:
        headers.insert(0, ("x-api-key", ctx.api_key))
    betas = _betas(beta, prefs)
    if betas:
        headers.append((_BETA, ",".join(betas)))
    return UpstreamRequest("POST", anthropic.messages_url(ctx.provider.base_url),
                           merge_headers(headers, anthropic.without_beta(prefs)), _encode(out))


def _vertex_request(body: dict[str, Any], ctx: ChatContext,
                    beta: tuple[str, ...]) -> UpstreamRequest:
    p = ctx.provider
    if not (isinstance(p.project_id, str) and p.project_id.strip()):
        raise vertex._config_error(ctx, "is a Vertex provider without project_id")
    if not ctx.region or not ctx.access_token:
        raise GatewayError(f"provider {p.provider!r}: no Vertex region or access token for "
                           "this attempt", status=500, code="vertex_token_missing")
    prefs = p.preferences.headers
    out = _cloud_body(body, vertex.ANTHROPIC_VERSION, _betas(beta, prefs), ctx)
    _set_stream(out, ctx.stream)
    url = vertex.vertex_url(p.base_url, p.project_id.strip(), ctx.region, ctx.upstream_model,
                            ctx.stream)
    extra = tuple((k, v) for k, v in anthropic.without_beta(prefs)
                  if k.lower() not in vertex._AUTH_OWNED)
    headers = [("content-type", "application/json"),
               ("accept", "text/event-stream" if ctx.stream else "application/json")]
    return UpstreamRequest("POST", url, vertex._auth(headers, extra, ctx.access_token),
                           _encode(out))


def _bedrock_request(body: dict[str, Any], ctx: ChatContext,
                     beta: tuple[str, ...]) -> UpstreamRequest:
    p = ctx.provider
    region = bedrock.region_of(p)
    if region is None:
        raise bedrock._config_error(ctx, "has no AWS region (set aws_region, or a base_url "
                                         "https://bedrock-runtime.<region>.amazonaws.com)")
    if not p.aws_access_key or not p.aws_secret_key:
        raise bedrock._config_error(ctx, "has no AWS credentials (aws_access_key, "
                                         "aws_secret_key)")
    prefs = p.preferences.headers
    out = _cloud_body(body, bedrock.BEDROCK_VERSION, _betas(beta, prefs), ctx)
    out.pop("stream", None)  # BR-1: the URL says whether it streams
    data = _encode(out)
    # the header order and the signing of bedrock.build_exchange (BR-3)
    headers: list[tuple[str, str]] = [("content-type", "application/json")]
    if ctx.stream:
        headers += [("accept", bedrock.STREAM_CONTENT_TYPE),
                    ("x-amzn-bedrock-accept", "application/json")]
    else:
        headers.append(("accept", "application/json"))
    extra = [(k, v) for k, v in anthropic.without_beta(prefs) if k.lower() not in _SIGNER_OWNED]
    names = {k.lower() for k, _ in extra}
    headers = [h for h in headers if h[0] not in names] + extra
    url = bedrock.invoke_url(bedrock.endpoint(p, region), ctx.upstream_model, ctx.stream)
    try:
        signed = sign("POST", url, headers, data, access_key=p.aws_access_key,
                      secret_key=p.aws_secret_key, session_token=p.aws_session_token or None,
                      region=region, service=bedrock.SERVICE, amz_date=amz_date(ctx.created))
    except ValueError:  # parse_url refused the base_url; never quote it (it may hold secrets)
        raise bedrock._config_error(ctx, "has a base_url that is not a usable http(s) "
                                         "URL") from None
    return UpstreamRequest("POST", url, tuple(headers + signed), data)


_BUILDERS = {"claude": _anthropic_request, "vertex": _vertex_request, "aws": _bedrock_request}


def build_native_exchange(body: dict[str, Any], ctx: ChatContext, engine: str, *,
                          beta: tuple[str, ...] = (),
                          client_model: str | None = None) -> NativeExchange:
    """The upstream exchange for one attempt of a Messages request (see the module docstring).

    ``body`` is the client's decoded request, ``beta`` the values of its ``anthropic-beta``
    headers, ``client_model`` the name the answers carry (default ``ctx.client_model``).
    ``ValueError`` when the channel does not speak Messages (``native_engine`` is None: the
    caller must translate instead); ``GatewayError`` (500) for a misconfigured provider, as
    the chat builders; ``ClientError`` for a body that cannot be encoded.
    """
    name = native_engine(engine, ctx.upstream_model)
    if name is None:
        raise ValueError(f"engine {engine!r} with model {ctx.upstream_model!r} does not speak "
                         "Anthropic Messages")
    request = _BUILDERS[name](body, ctx, beta)
    return NativeExchange(request, ctx, name,
                          ctx.client_model if client_model is None else client_model)


# -- the model name in an answer -------------------------------------------------------------

def _ws(text: str, i: int) -> int:
    """The index of the first non-whitespace character (JSON's whitespace) from ``i``."""
    while i < len(text) and text[i] in " \t\n\r":
        i += 1
    return i


def _value_span(text: str, keys: tuple[str, ...]) -> tuple[int, int] | None:
    """Where the value at ``keys`` (object keys from the top) is in ``text``, JSON already
    checked by ``loads_strict``; the first occurrence of each key counts. None if absent."""
    i = 0
    for depth, key in enumerate(keys):
        i = _ws(text, i)
        if text[i:i + 1] != "{":
            return None
        i += 1
        while True:
            i = _ws(text, i)
            if text[i] != '"':  # "}": the key is not there
                return None
            name, i = scanstring(text, i + 1)
            i = _ws(text, _ws(text, i) + 1)  # past ':'
            if name == key:
                if depth == len(keys) - 1:
                    return i, _SKIP(text, i)[1]
                break  # descend into this value
            i = _ws(text, _SKIP(text, i)[1])
            if text[i] == ",":
                i += 1
    return None  # pragma: no cover - keys is never empty


def _with_model(text: str, keys: tuple[str, ...], current: Any, model: str) -> str:
    """``text`` with the string at ``keys`` replaced by ``model`` (``current`` is its parsed
    value: nothing to do when it is already ``model`` or not a string)."""
    if not isinstance(current, str) or current == model:
        return text
    span = _value_span(text, keys)
    if span is None:  # pragma: no cover - the parsed value says it is there
        return text
    return text[:span[0]] + dumps(model).decode("utf-8") + text[span[1]:]


# -- whole answers ---------------------------------------------------------------------------

class NativeExchange:
    """One attempt of a Messages request to a Messages upstream: the request and how to read
    its answers (the ``Exchange`` protocol of ``base.py``)."""

    def __init__(self, request: UpstreamRequest, ctx: ChatContext, engine: str,
                 client_model: str) -> None:
        self.request = request
        self.ctx = ctx
        #: ``claude``, ``vertex`` or ``aws``
        self.engine = engine
        self.client_model = client_model
        #: the OpenAI-shaped usage of the answer ``parse_body`` read (for stats)
        self.usage: dict[str, Any] | None = None
        self._vendor: anthropic.AnthropicExchange | bedrock.BedrockExchange
        if engine == "aws":
            self._vendor = bedrock.BedrockExchange(request, ctx)
        elif engine == "vertex":
            self._vendor = vertex.VertexClaudeExchange(request, ctx)
        else:
            self._vendor = anthropic.AnthropicExchange(request, ctx)

    def parse_body(self, status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> bytes:
        """The upstream's message bytes, ``model`` the client's (see the module docstring)."""
        try:
            text = body.decode("utf-8")
            obj = loads_strict(text)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise UpstreamError("upstream answered with a body that is not JSON", kind="decode",
                                upstream_status=status) from None
        if not isinstance(obj, dict):
            raise UpstreamError("upstream answered with JSON that is not an object",
                                kind="decode", upstream_status=status)
        if obj.get("type") == "error" or obj.get("error") or (  # ERR-4
                self.engine == "aws" and "content" not in obj
                and (_message_of(obj) is not None or _error_class(headers, obj))):
            raise self.parse_error(status if status >= 400 else 0, headers, body)
        if not isinstance(obj.get("content"), list):
            raise UpstreamError("upstream answered without a content list", kind="protocol",
                                upstream_status=status)
        raw = _dict(obj.get("usage"))
        if self.engine == "aws":  # BR-S6: the token-count headers fill what usage lacks
            values = {k.lower(): v for k, v in headers}
            raw = {**{field: n for name, field in _HEADER_COUNTS
                      if (n := _header_count(values.get(name))) is not None}, **raw}
        self.usage = _usage(raw) if raw else None
        current = obj.get("model")
        if not isinstance(current, str) or current == self.client_model:
            return body
        return _with_model(text, ("model",), current, self.client_model).encode("utf-8")

    def parse_error(self, status: int, headers: tuple[tuple[str, str], ...],
                    body: bytes) -> UpstreamError:
        """The vendor's own error mapping (Anthropic, Vertex-Claude or Bedrock)."""
        return self._vendor.parse_error(status, headers, body)

    def stream_decoder(self) -> NativeSSEDecoder | NativeBedrockDecoder:
        if self.engine == "aws":
            return NativeBedrockDecoder(self.ctx, self.client_model)
        return NativeSSEDecoder(self.client_model)


# -- streams ---------------------------------------------------------------------------------

def _frame(name: str, data: str) -> StreamChunk:
    """``event: <name>\\ndata: <data>\\n\\n`` (checked JSON: CR/LF are whitespace, S-8)."""
    if "\n" in data or "\r" in data:
        data = data.replace("\r", " ").replace("\n", " ")
    if "\u2028" in data or "\u2029" in data:
        data = data.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    try:
        raw = data.encode("utf-8")
    except UnicodeEncodeError:  # pragma: no cover - decoded UTF-8 holds no lone surrogate
        raise DecodeError("invalid_text", "an Anthropic event has a lone surrogate") from None
    return StreamChunk(b"event: " + name.encode("ascii") + b"\ndata: " + raw + b"\n\n")


class _Native:
    """What both native decoders do with one checked Anthropic event: re-emit it, keep the
    usage (U-3) and see the terminal events."""

    def __init__(self, client_model: str) -> None:
        self.client_model = client_model
        self.raw_usage: dict[str, Any] | None = None
        self.done = False

    @property
    def usage(self) -> dict[str, Any] | None:
        return None if self.raw_usage is None else _usage(self.raw_usage)

    def merge_usage(self, usage: dict[str, Any]) -> None:
        """U-3: later figures replace earlier ones field by field."""
        self.raw_usage = {**(self.raw_usage or {}),
                          **{k: v for k, v in usage.items() if v is not None}}

    def event(self, obj: dict[str, Any], sse_name: str | None, data: str) -> list[StreamItem]:
        kind = obj.get("type")
        if not isinstance(kind, str):
            kind = sse_name  # SSE-11: the name only when the JSON has no type
        if kind is None or kind in _DROPPED_EVENTS or not _EVENT_NAME.fullmatch(kind):
            return []
        if kind == "error":
            self.done = True
            err = _dict(obj.get("error"))
            text = _str(err.get("message")) or "upstream reported an error in the stream"
            return [StreamFailed(_upstream_error(0, (), text, err.get("type")))]
        if kind == "message_start":
            message = _dict(obj.get("message"))
            usage = message.get("usage")
            if isinstance(usage, dict) and self.raw_usage is None:
                self.raw_usage = dict(usage)
            model = message.get("model")
            if isinstance(model, str) and model != self.client_model:
                data = _with_model(data, ("message", "model"), model, self.client_model)
        elif kind == "message_delta":
            usage = obj.get("usage")
            if isinstance(usage, dict):
                self.merge_usage(usage)
        chunk = _frame(kind, data)
        if kind == "message_stop":
            self.done = True
            return [chunk, StreamDone(self.usage)]
        return [chunk]


def _checked(data: str) -> dict[str, Any]:
    try:
        obj = loads_strict(data)
    except (ValueError, RecursionError):
        raise DecodeError("invalid_json", "an Anthropic event is not JSON") from None
    if not isinstance(obj, dict):
        raise DecodeError("invalid_json", "an Anthropic event is not a JSON object")
    return obj


def _truncated() -> list[StreamItem]:
    return [StreamFailed(UpstreamError("upstream stream ended before message_stop",
                                       kind="truncated"))]


_TEXT_DELTA_HEAD = b"event: content_block_delta\ndata: "


class NativeSSEDecoder(SSEVendorDecoder):
    """Anthropic (or Vertex-Claude) SSE in, the same events out for a Messages client,
    split-invariant; ``usage`` is the OpenAI usage seen so far (None before any)."""

    def __init__(self, client_model: str) -> None:
        super().__init__()
        self._native = _Native(client_model)

    @property
    def usage(self) -> dict[str, Any] | None:
        return self._native.usage

    def _eof(self) -> list[StreamItem]:
        return _truncated()  # ANT-S3, DEC-5

    def _events(self, events: list[SSEEvent], out: list[StreamItem]) -> None:
        """``SSEVendorDecoder._events`` with text deltas written straight out: a data that
        matches ``_TEXT_DELTA`` is a valid JSON text delta, which only needs framing."""
        match = _TEXT_DELTA.fullmatch
        append = out.append
        for ev in events:
            data = ev.data
            if match(data) is not None:
                if "\u2028" in data or "\u2029" in data:
                    append(_frame("content_block_delta", data))
                else:
                    append(StreamChunk(_TEXT_DELTA_HEAD + data.encode("utf-8") + b"\n\n"))
                continue
            out += self._event(ev)
            if self._done:
                return

    def _event(self, ev: SSEEvent) -> list[StreamItem]:
        if not ev.data or ev.data == "[DONE]":
            return []
        items = self._native.event(_checked(ev.data), ev.event, ev.data)
        self._done = self._native.done
        return items


class NativeBedrockDecoder(bedrock.BedrockStreamDecoder):
    """Bedrock event-stream in, the Anthropic events of its ``chunk`` frames out as SSE for a
    Messages client. Framing, exception/error frames and EOF are ``BedrockStreamDecoder``'s;
    this class replaces its ``chunk`` handler."""

    def __init__(self, ctx: ChatContext, client_model: str, max_frame: int = MAX_FRAME) -> None:
        super().__init__(ctx, max_frame)
        self._native = _Native(client_model)

    @property
    def usage(self) -> dict[str, Any] | None:
        return self._native.usage

    def _chunk(self, payload: bytes) -> list[StreamItem]:
        try:
            wrapper = loads_strict(payload.decode("utf-8"))
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise DecodeError("invalid_json", "a Bedrock chunk payload is not JSON") from None
        encoded = wrapper.get("bytes") if isinstance(wrapper, dict) else None
        if not isinstance(encoded, str):
            raise DecodeError("invalid_chunk", "a Bedrock chunk has no base64 'bytes'")
        try:
            text = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise DecodeError("invalid_chunk", "a Bedrock chunk does not hold an Anthropic "
                                               "event as base64 JSON") from None
        event = _checked(text)
        native = self._native
        if event.get("type") == "message_stop":  # BR-S6: the metrics fill missing usage
            metrics = _dict(event.get("amazon-bedrock-invocationMetrics"))
            counts = {field: n for name, field in _METRIC_COUNTS
                      if (n := token_count(metrics.get(name))) is not None}
            usage, seen = native.usage, native.raw_usage or {}
            if usage is not None and (usage["prompt_tokens"] or usage["completion_tokens"]):
                counts = {k: v for k, v in counts.items() if token_count(seen.get(k)) is None}
            if counts:
                native.merge_usage(counts)
        items = native.event(event, None, text)
        self._done = native.done
        return items


# -- count_tokens ----------------------------------------------------------------------------

#: what a Messages request has that ``/v1/messages/count_tokens`` refuses (Anthropic's
#: count_tokens takes the prompt only: model, messages, system, tools, tool_choice, thinking…)
_NOT_COUNTED = ("max_tokens", "stream", "temperature", "top_p", "top_k", "stop_sequences",
                "metadata", "service_tier")


class CountTokensExchange:
    """``POST /v1/messages/count_tokens`` to an Anthropic channel: the answer
    (``{"input_tokens": N}``) is relayed as it came; errors are Anthropic's mapping."""

    usage = None

    def __init__(self, request: UpstreamRequest, ctx: ChatContext) -> None:
        self.request = request
        self._vendor = anthropic.AnthropicExchange(request, ctx)

    def parse_body(self, status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> bytes:
        try:
            obj = loads_strict(body.decode("utf-8"))
        except (ValueError, RecursionError):
            raise UpstreamError("upstream answered with a body that is not JSON", kind="decode",
                                upstream_status=status) from None
        if not isinstance(obj, dict) or type(obj.get("input_tokens")) is not int:
            if isinstance(obj, dict) and (obj.get("type") == "error" or obj.get("error")):
                raise self.parse_error(status if status >= 400 else 0, headers, body)
            raise UpstreamError("upstream answered count_tokens without input_tokens",
                                kind="protocol", upstream_status=status)
        return body

    def parse_error(self, status: int, headers: tuple[tuple[str, str], ...],
                    body: bytes) -> UpstreamError:
        return self._vendor.parse_error(status, headers, body)

    def stream_decoder(self) -> NativeSSEDecoder:  # never asked: count_tokens does not stream
        raise UpstreamError("count_tokens does not stream", kind="protocol")


def build_count_tokens_exchange(body: dict[str, Any], ctx: ChatContext, *,
                                beta: tuple[str, ...] = ()) -> CountTokensExchange:
    """The count_tokens request of a Messages body for an Anthropic channel: the body without
    what count_tokens refuses (``_NOT_COUNTED``), ``model`` the upstream's, sent to
    ``…/v1/messages/count_tokens`` with the same headers as a message."""
    counted = {k: v for k, v in body.items() if k not in _NOT_COUNTED}
    req = _anthropic_request(counted, attrs.evolve(ctx, stream=False), beta)
    base, sep, query = req.url.partition("?")
    return CountTokensExchange(attrs.evolve(req, url=base + "/count_tokens" + sep + query), ctx)
