"""AWS Bedrock (``engine: aws``): Claude via ``InvokeModel`` / ``InvokeModelWithResponseStream``.

Theory of operation
-------------------
Bedrock carries the Anthropic Messages protocol inside AWS framing (docs/vendor-rules.md), so
this module only adds the AWS layer around ``anthropic.py``:

* *Request* (BR-1..BR-3). ``build_exchange`` lets ``anthropic.build_exchange`` build the
  Messages body (every rule of docs/vendor-rules.md, "Anthropic Messages": message
  conversion, tools, thinking, images; with ``first_party=False``, so a ``file_url`` document
  is inlined from the bytes the gateway fetched and no ``file_id`` is taken: ANT-D5, ANT-D6),
  then removes
  ``model`` and ``stream``, adds ``"anthropic_version": "bedrock-2023-05-31"`` and moves any
  ``anthropic-beta`` header from the provider's ``preferences.headers`` into the body list
  ``anthropic_beta`` (BR-2). The URL is ``<base_url>/model/<model id>/invoke`` or
  ``…/invoke-with-response-stream``, the model id percent-encoded as one path segment (``:``
  → ``%3A``, ``/`` of an ARN → ``%2F``; BR-1). The region is the provider's ``aws_region``,
  else the region label of a ``bedrock-runtime[-fips].<region>.amazonaws.com`` host (VPC
  endpoint names included); without one the request is a gateway configuration error
  (``GatewayError`` 500), as are missing credentials.
* *Signing* (BR-3; docs/vendor-rules.md, "SigV4 canonical request"). Headers are
  ``content-type``, ``accept``
  (``application/vnd.amazon.eventstream`` for the stream, whose inference body type goes in
  ``x-amzn-bedrock-accept``), then the
  provider's ``preferences.headers`` — merged **before** signing, so every header the core
  emits is covered by the signature and none can break it (the transport adds ``host``,
  which is signed from the URL, and ``content-length``, which is not signed). Headers the
  signer owns (``authorization``, ``x-amz-date``, ``x-amz-security-token``,
  ``x-amz-content-sha256``) and ``host`` are not taken from preferences. ``sigv4.sign`` then
  signs the exact body bytes at ``ctx.created`` (the injected wall clock; AWS refuses a skew
  of more than 5 minutes).
* *Whole bodies*: a 2xx body is an Anthropic message and goes to ``AnthropicExchange``
  (the usage fields it lacks come from the ``x-amzn-bedrock-*-token-count`` headers). Errors
  (docs/vendor-rules.md, "Errors from Bedrock") are ``{"message": …}`` with the class in
  ``x-amzn-errortype`` (or the body's ``__type``); the status picks the OpenAI type, the class
  is the ``code``. A 424 model error becomes 502 for
  the client and a 408 model timeout 504 (docs/contracts.md, "Error status mapping").
* *Streams* (BR-S1..S7): ``eventstream.EventStreamDecoder`` cuts frames; an ``event`` frame
  with ``:event-type: chunk`` carries ``{"bytes": <base64>}`` whose decoded bytes are one
  Anthropic stream event, handed to an ``AnthropicStreamDecoder`` as one SSE event (the JSON is
  validated first, so replacing its CR/LF — legal only as whitespace between tokens — by spaces
  cannot change it). Other event types are ignored (BR-S4). ``exception`` frames
  (``throttlingException`` → 429, ``modelStreamErrorException`` → 424 → client 502, …) and
  generic ``error`` frames are ``StreamFailed``. The ``amazon-bedrock-invocationMetrics`` of
  the final chunk stand in for the usage the Anthropic events did not report: every count when
  the events counted nothing, else the fields they left out (BR-S6; docs/contracts.md, "Usage
  figures", U-6). EOF inside a frame or before ``message_stop`` is a ``truncated`` failure
  (BR-S7, DEC-5); a bad frame, bad base64 or bad JSON is ``DecodeError`` with the usual "items
  first, error on the next call" convention (DEC-1, DEC-2), and after a terminal item every
  byte is ignored (DEC-4).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any
from urllib.parse import quote

from ..errors import DecodeError, GatewayError, UpstreamError
from ..jsonutil import dumps, loads_strict
from ..request import ChatRequest
from . import anthropic
from .base import (ChatContext, StreamDone, StreamFailed, StreamItem, UpstreamRequest,
                   VendorDecoder, error_from_body)
from .chunks import token_count
from .eventstream import MAX_FRAME, EventStreamDecoder, Message
from .sigv4 import amz_date, sign
from .toolkit import STATUS_TYPES_NO_409, retry_after, status_error, status_type

__all__ = ["BEDROCK_VERSION", "SERVICE", "EXCEPTIONS", "STREAM_CONTENT_TYPE", "region_of",
           "endpoint", "invoke_url", "build_exchange", "BedrockExchange",
           "BedrockStreamDecoder"]

BEDROCK_VERSION = "bedrock-2023-05-31"  # BR-2
SERVICE = "bedrock"
STREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"
#: Bedrock error class (lower-cased; HTTP ``x-amzn-errortype`` or stream ``:exception-type``)
#: -> (HTTP status Bedrock pairs it with, OpenAI ``type``) (BR-S4; docs/vendor-rules.md,
#: "Errors from Bedrock"; docs/contracts.md, "Error status mapping")
EXCEPTIONS: dict[str, tuple[int, str]] = {
    "validationexception": (400, "invalid_request_error"),
    "accessdeniedexception": (403, "permission_error"),
    "unrecognizedclientexception": (403, "permission_error"),
    "invalidsignatureexception": (403, "permission_error"),
    "resourcenotfoundexception": (404, "not_found_error"),
    "modeltimeoutexception": (408, "timeout_error"),
    "modelerrorexception": (424, "server_error"),
    "modelstreamerrorexception": (424, "server_error"),
    "throttlingexception": (429, "rate_limit_error"),
    "servicequotaexceededexception": (429, "rate_limit_error"),
    "internalserverexception": (500, "server_error"),
    "serviceunavailableexception": (503, "server_error"),
    "modelnotreadyexception": (503, "server_error"),
}
_HOST_REGION = re.compile(r"(?:^|\.)bedrock-runtime(?:-fips)?\.([a-z0-9-]+)\.(?:vpce\.)?"
                          r"amazonaws\.com(?:\.cn)?\.?$")
_SIGNER_OWNED = frozenset({"authorization", "x-amz-date", "x-amz-security-token",
                           "x-amz-content-sha256", "host"})
#: Bedrock's own counts -> the Anthropic usage field each stands for (BR-S6; docs/contracts.md,
#: "Usage figures", U-6): the stream's final ``amazon-bedrock-invocationMetrics`` and a whole
#: answer's ``x-amzn-bedrock-*-token-count`` headers. Bedrock's input count, like Anthropic's
#: ``input_tokens``, leaves out the cache reads and writes.
_METRIC_COUNTS = (("inputTokenCount", "input_tokens"), ("outputTokenCount", "output_tokens"),
                  ("cacheReadInputTokenCount", "cache_read_input_tokens"),
                  ("cacheWriteInputTokenCount", "cache_creation_input_tokens"))
_HEADER_COUNTS = (("x-amzn-bedrock-input-token-count", "input_tokens"),
                  ("x-amzn-bedrock-output-token-count", "output_tokens"),
                  ("x-amzn-bedrock-cache-read-input-token-count", "cache_read_input_tokens"),
                  ("x-amzn-bedrock-cache-write-input-token-count", "cache_creation_input_tokens"))
_DIGITS = re.compile(r"[ \t]*([0-9]{1,18})[ \t]*")


# -- request ---------------------------------------------------------------------------------

def _host(url: str) -> str:
    m = re.match(r"[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/?#]*@)?([^/?#:]*)", url)
    return m.group(1).lower() if m else ""


def region_of(provider: Any) -> str | None:
    """The provider's AWS region: ``aws_region``, else parsed from a Bedrock host, else None."""
    if isinstance(provider.aws_region, str) and provider.aws_region.strip():
        return provider.aws_region.strip()
    if provider.base_url:
        m = _HOST_REGION.search(_host(provider.base_url))
        if m:
            return m.group(1)
    return None


def endpoint(provider: Any, region: str) -> str:
    """The Bedrock runtime origin: ``base_url`` (trailing ``/`` dropped) or the regional one."""
    if provider.base_url:
        return provider.base_url.rstrip("/")
    return f"https://bedrock-runtime.{region}.amazonaws.com"


def invoke_url(base: str, model_id: str, stream: bool) -> str:
    """``<base>/model/<id>/invoke[-with-response-stream]``, the id one encoded segment (BR-1)."""
    action = "invoke-with-response-stream" if stream else "invoke"
    return f"{base}/model/{quote(model_id, safe='')}/{action}"


def _config_error(ctx: ChatContext, what: str) -> GatewayError:
    return GatewayError(f"provider {ctx.provider.provider!r} {what}", status=500,
                        code="provider_misconfigured")


def build_exchange(req: ChatRequest | dict[str, Any], ctx: ChatContext) -> "BedrockExchange":
    """The signed Bedrock request for one attempt (docs/vendor-rules.md, BR-1..BR-3).

    ``ClientError`` / ``ImagesNeeded`` come from the Anthropic body builder; ``GatewayError``
    (500) when the provider has no region, no credentials or an unusable ``base_url``.
    """
    p = ctx.provider
    region = region_of(p)
    if region is None:
        raise _config_error(ctx, "has no AWS region (set aws_region, or a base_url "
                                 "https://bedrock-runtime.<region>.amazonaws.com)")
    if not p.aws_access_key or not p.aws_secret_key:
        raise _config_error(ctx, "has no AWS credentials (aws_access_key, aws_secret_key)")
    inner = anthropic.build_exchange(req, ctx, first_party=False)
    body = json.loads(inner.request.body)
    body.pop("model", None)
    body.pop("stream", None)
    prefs = list(p.preferences.headers)
    betas = [b.strip() for k, v in prefs if k.lower() == "anthropic-beta"
             for b in str(v).split(",") if b.strip()]
    body = {"anthropic_version": BEDROCK_VERSION, **body}
    if betas:
        body["anthropic_beta"] = list(dict.fromkeys(betas))
    data = dumps(body)
    headers: list[tuple[str, str]] = [("content-type", "application/json")]
    if ctx.stream:
        headers += [("accept", STREAM_CONTENT_TYPE), ("x-amzn-bedrock-accept", "application/json")]
    else:
        headers.append(("accept", "application/json"))
    extra = [(k, v) for k, v in prefs
             if k.lower() not in _SIGNER_OWNED and k.lower() != "anthropic-beta"]
    names = {k.lower() for k, _ in extra}
    headers = [h for h in headers if h[0] not in names] + extra
    url = invoke_url(endpoint(p, region), ctx.upstream_model, ctx.stream)
    try:
        signed = sign("POST", url, headers, data, access_key=p.aws_access_key,
                      secret_key=p.aws_secret_key, session_token=p.aws_session_token or None,
                      region=region, service=SERVICE, amz_date=amz_date(ctx.created))
    except ValueError:  # parse_url refused the base_url; never quote it (it may hold secrets)
        raise _config_error(ctx, "has a base_url that is not a usable http(s) URL") from None
    request = UpstreamRequest("POST", url, tuple(headers + signed), data)
    return BedrockExchange(request, ctx, inner)


# -- errors ----------------------------------------------------------------------------------

def _error_class(headers: tuple[tuple[str, str], ...], obj: Any) -> str | None:
    for k, v in headers:
        if k.lower() == "x-amzn-errortype" and v:
            return v.split(":", 1)[0].strip() or None
    if isinstance(obj, dict):
        t = obj.get("__type") or obj.get("code")
        if isinstance(t, str) and t:
            return t.rsplit("#", 1)[-1]
    return None


def _make_error(status: int, message: str, cls: str | None,
                headers: tuple[tuple[str, str], ...] = ()) -> UpstreamError:
    """A Bedrock error → ``UpstreamError``: type by status first, class second
    (docs/contracts.md, "Error status mapping"; docs/vendor-rules.md, "Errors from Bedrock").
    ``status`` 0 (a stream exception) takes the class's documented status."""
    known = EXCEPTIONS.get(cls.lower()) if cls else None
    if status < 400:
        status = known[0] if known else 500
    otype = status_type(status, known[1] if known else None, STATUS_TYPES_NO_409)
    return status_error(message, status, otype, cls or str(status), retry_after(headers))


def _header_count(value: str | None) -> int | None:
    """A token-count header's value: ASCII digits (blanks around them allowed), else None."""
    m = _DIGITS.fullmatch(value) if value is not None else None
    return int(m.group(1)) if m else None


def _message_of(obj: Any) -> str | None:
    if isinstance(obj, dict):
        for key in ("message", "Message"):
            if isinstance(obj.get(key), str):
                return obj[key]
    return None




# -- exchange --------------------------------------------------------------------------------

class BedrockExchange:
    """One attempt against Bedrock: the signed request and how to read its answers."""

    def __init__(self, request: UpstreamRequest, ctx: ChatContext,
                 inner: "anthropic.AnthropicExchange | None" = None) -> None:
        self.request = request
        #: the usage of the whole answer ``parse_body`` read (for stats)
        self.usage: dict[str, Any] | None = None
        self.ctx = ctx
        self._inner = inner or anthropic.AnthropicExchange(request, ctx)

    @property
    def thinking_blocks(self) -> list[dict[str, Any]]:
        """Signed thinking of the last parsed body, for replay (ANT-K4)."""
        return self._inner.thinking_blocks

    def parse_body(self, status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> bytes:
        """An InvokeModel answer (an Anthropic message) → ``chat.completion`` bytes."""
        try:
            obj = loads_strict(body)
        except (ValueError, RecursionError):
            obj = None
        if isinstance(obj, dict) and "content" not in obj and (
                _message_of(obj) is not None or _error_class(headers, obj)):
            raise self.parse_error(status if status >= 400 else 0, headers, body)  # ERR-4
        if isinstance(obj, dict):  # BR-S6: the token-count headers fill what usage lacks
            values = {k.lower(): v for k, v in headers}
            counts = {field: n for name, field in _HEADER_COUNTS
                      if (n := _header_count(values.get(name))) is not None}
            usage = obj.get("usage")
            have = usage if isinstance(usage, dict) else {}
            missing = {k: v for k, v in counts.items() if token_count(have.get(k)) is None}
            if missing:
                try:
                    body = dumps({**obj, "usage": {**have, **missing}})
                except (ValueError, RecursionError):
                    pass
        out = self._inner.parse_body(status, headers, body)
        self.usage = getattr(self._inner, "usage", None)
        return out

    def parse_error(self, status: int, headers: tuple[tuple[str, str], ...],
                    body: bytes) -> UpstreamError:
        """Bedrock error JSON (``{"message"}`` + ``x-amzn-errortype``) → ``UpstreamError``."""
        try:
            obj = loads_strict(body[:65536])
        except (ValueError, RecursionError):
            obj = None
        message = _message_of(obj)
        cls = _error_class(headers, obj)
        if message is None and cls is None:
            return error_from_body(status or 502, headers, body)
        if message is None:
            message = body[:1024].decode("utf-8", "replace").strip() or cls or ""
        return _make_error(status, message, cls, headers)

    def stream_decoder(self) -> "BedrockStreamDecoder":
        return BedrockStreamDecoder(self.ctx, structured=self._inner.structured)


# -- stream ----------------------------------------------------------------------------------

def _text(v: Any) -> str | None:
    return v if isinstance(v, str) else None


class BedrockStreamDecoder(VendorDecoder):
    """Bedrock event-stream bytes → OpenAI chunks, split-invariant (see the module docstring):
    ``VendorDecoder`` over AWS event-stream framing, each message handled by ``_event``.

    ``usage`` is the OpenAI usage seen so far (``None`` before any), ``thinking_blocks`` the
    signed thinking kept for replay (ANT-K4), both from the inner Anthropic decoder.
    """

    def __init__(self, ctx: ChatContext, max_frame: int = MAX_FRAME, *,
                 structured: str | None = None) -> None:
        self._frames = EventStreamDecoder(max_frame)
        super().__init__(self._frames)
        self.ctx = ctx
        #: structured output of the request (ANT-J5, ANT-J6), read by the inner decoder
        self._inner = anthropic.AnthropicStreamDecoder(ctx, structured)

    @property
    def usage(self) -> dict[str, Any] | None:
        return self._inner.usage

    @property
    def thinking_blocks(self) -> list[dict[str, Any]]:
        return self._inner.thinking_blocks

    def _eof(self) -> list[StreamItem]:
        """EOF before a terminal item: ``truncated`` (BR-S7, DEC-5)."""
        if self._frames.buffered:
            return [StreamFailed(UpstreamError("upstream stream ended inside an event-stream "
                                               "frame", kind="truncated"))]
        return [StreamFailed(UpstreamError("upstream stream ended before message_stop",
                                           kind="truncated"))]

    def _event(self, msg: Message) -> list[StreamItem]:
        kind = msg.headers.get(":message-type")
        if kind == "event":
            if msg.headers.get(":event-type") != "chunk":
                return []  # BR-S4: unknown event types are ignored
            return self._chunk(msg.payload)
        if kind == "exception":
            cls = _text(msg.headers.get(":exception-type")) or "exception"
            try:
                obj = loads_strict(msg.payload)
            except (ValueError, RecursionError, UnicodeDecodeError):
                obj = None
            message = _message_of(obj) or msg.payload[:1024].decode("utf-8", "replace") \
                or f"upstream raised {cls} in the stream"
            return self._fail(_make_error(0, message, cls))
        if kind == "error":
            code = _text(msg.headers.get(":error-code")) or "error"
            message = _text(msg.headers.get(":error-message")) \
                or f"upstream reported event-stream error {code}"
            return self._fail(_make_error(0, message, code))
        return []  # an unknown message type: nothing to act on

    def _fail(self, error: UpstreamError) -> list[StreamItem]:
        self._done = True
        return [StreamFailed(error)]

    def _chunk(self, payload: bytes) -> list[StreamItem]:
        try:
            wrapper = loads_strict(payload.decode("utf-8"))
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise DecodeError("invalid_json", "a Bedrock chunk payload is not JSON") from None
        encoded = wrapper.get("bytes") if isinstance(wrapper, dict) else None
        if not isinstance(encoded, str):
            raise DecodeError("invalid_chunk", "a Bedrock chunk has no base64 'bytes'")
        try:
            raw = base64.b64decode(encoded, validate=True)
            event = loads_strict(raw.decode("utf-8"))
        except (binascii.Error, ValueError, RecursionError):
            raise DecodeError("invalid_chunk", "a Bedrock chunk does not hold an Anthropic "
                                               "event as base64 JSON") from None
        if not isinstance(event, dict):
            raise DecodeError("invalid_json", "an Anthropic event is not a JSON object")
        out: list[StreamItem] = []
        if event.get("type") == "message_stop":  # BR-S6: usage fallback
            metrics = event.get("amazon-bedrock-invocationMetrics")
            usage, seen = self._inner.usage, self._inner.raw_usage or {}
            counts = {field: n for name, field in _METRIC_COUNTS if isinstance(metrics, dict)
                      and (n := token_count(metrics.get(name))) is not None}
            if usage is not None and (usage["prompt_tokens"] or usage["completion_tokens"]):
                # the events counted: the metrics only fill the fields they left out
                counts = {k: v for k, v in counts.items() if token_count(seen.get(k)) is None}
            if counts:
                out += self._feed_event(dumps({"type": "message_delta", "delta": {},
                                               "usage": counts}))
        out += self._feed_event(raw.replace(b"\r", b" ").replace(b"\n", b" "))
        if out and isinstance(out[-1], (StreamDone, StreamFailed)):
            self._done = True
        return out

    def _feed_event(self, event_json: bytes) -> list[StreamItem]:
        return self._inner.feed(b"data: " + event_json + b"\n\n")
