"""What every vendor translator provides, and the values passed between it and the relay.

A translator turns one OpenAI chat request into one *exchange* per attempt: the exact upstream
request (method, URL, headers, body bytes), a whole-body parser and an incremental stream
decoder. The relay never looks inside vendor formats; it only sees the client-ready bytes and
the outcome markers defined here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs

from ..errors import DecodeError, UniapiError, UpstreamError
from ..streams import SSEDecoder, SSEEvent

__all__ = [
    "UpstreamRequest",
    "ChatContext",
    "ImagesNeeded",
    "StreamChunk",
    "StreamDone",
    "StreamFailed",
    "StreamItem",
    "StreamDecoder",
    "Framer",
    "VendorDecoder",
    "SSEVendorDecoder",
    "Exchange",
    "error_from_body",
    "client_status_for",
    "implied_status",
    "retry_after",
    "GOOGLE_STATUS_TYPES",
    "STATUS_TYPES",
]


@attrs.frozen
class UpstreamRequest:
    """An HTTP request to send upstream, byte-exact (``body`` is what goes on the wire)."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""


@attrs.frozen(kw_only=True)
class ChatContext:
    """Everything a translator needs besides the request body, decided by the gateway."""

    client_model: str  # the name the client asked for (O-3)
    upstream_model: str
    provider: Any  # uniapi_core.config.Provider
    api_key: str | None  # the provider key chosen for this attempt
    stream: bool
    include_usage: bool
    response_id: str  # chatcmpl-… from the injected entropy (O-1)
    created: int  # from the injected wall clock (O-2)
    #: remote image and document URLs already fetched by the transport: url -> (media type,
    #: bytes)
    images: Mapping[str, tuple[str, bytes]] = attrs.field(factory=dict)
    #: opaque ids from the injected entropy for synthesized tool-call ids (TC-4)
    entropy: Any = None
    #: Vertex: the region this attempt goes to (its routing slot) and the OAuth2 access token
    region: str | None = None
    access_token: str | None = attrs.field(default=None, repr=False)
    #: OpenAI-compatible hosts: the provider's ``dialects.Dialect``, decided once per provider
    #: by the gateway (None: the exchange asks ``dialect_for`` itself)
    dialect: Any = None


class ImagesNeeded(UniapiError):
    """A translator needs these remote images (or documents: ``file_url``) inline; the
    transport fetches them (within the SSRF policy and size caps) and the exchange is built
    again with ``ChatContext.images``."""

    status = 400
    type = "invalid_request_error"
    code = "image_fetch_required"

    def __init__(self, urls: Sequence[str]) -> None:
        super().__init__("this provider needs images and documents inline: their remote URLs "
                         "are fetched first (https only, public addresses, size-capped), then "
                         "the request is built again")
        self.urls = tuple(urls)


@attrs.frozen
class StreamChunk:
    """One client-ready SSE event (``data: …\\n\\n`` bytes) carrying content or metadata."""

    data: bytes


@attrs.frozen
class StreamDone:
    """The upstream ended its stream properly; ``usage`` is the last usage seen, if any."""

    usage: dict[str, Any] | None = None


@attrs.frozen
class StreamFailed:
    """The upstream reported an error inside the stream."""

    error: UpstreamError


StreamItem = StreamChunk | StreamDone | StreamFailed


class StreamDecoder(Protocol):
    """Vendor bytes in, stream items out; any split of the input gives the same items."""

    def feed(self, data: bytes) -> list[StreamItem]: ...

    def close(self) -> list[StreamItem]: ...


class Framer(Protocol):
    """The framing layer under a vendor decoder: bytes in, whole units (SSE events, AWS
    event-stream messages…) out. ``feed`` returns the units completed before a framing error
    and raises that error on the next call (its own DEC-1); ``close`` returns the pending
    units (or None) and raises ``DecodeError("truncated")`` for a cut unit."""

    def feed(self, data: bytes) -> list[Any]: ...

    def close(self) -> list[Any] | None: ...


class VendorDecoder:
    """The part every vendor stream decoder shares, whatever its framing: the terminal
    state and the error contract. A subclass passes its ``Framer`` (``SSEDecoder``,
    ``eventstream.EventStreamDecoder``…), sets up its own state, then implements
    ``_event(unit)`` (one unit → items; may set ``self._done``) and ``_eof()`` (the items when
    the body ends before the vendor's terminal condition: a truncation, or a synthesized
    ending). A subclass may replace ``_events`` with a faster loop that gives the same items.

    - DEC-1: items completed before a ``DecodeError`` come out first and the error is raised
      by the next call, so how the bytes were cut never changes the output;
    - DEC-2: only ``DecodeError`` escapes, and any call after ``close`` raises
      ``DecodeError("closed")``; DEC-4: once ``_done``, nothing more is framed or looked at;
    - DEC-5: at EOF the pending unit counts (a unit cut by EOF is a truncation, not an
      error), then ``_eof()`` decides.
    """

    def __init__(self, framer: Framer) -> None:
        self._framer = framer
        self._done = self._closed = False
        self._error: DecodeError | None = None

    def feed(self, data: bytes) -> list[StreamItem]:
        """Consume ``data``; return the items it completes."""
        self._check()
        out: list[StreamItem] = []
        if self._done:
            return out
        try:
            self._events(self._framer.feed(data), out)
        except DecodeError as exc:
            self._error = exc
            if not out:
                raise
        return out

    def close(self) -> list[StreamItem]:
        """The upstream body ended: the pending unit, then ``_eof()`` if not yet done."""
        self._check()
        self._closed = True
        out: list[StreamItem] = []
        if self._done:
            return out
        try:
            self._events(self._framer.close() or (), out)
            if self._done:
                return out
        except DecodeError as exc:
            if exc.kind != "truncated":  # a cut inside a line or frame is a truncation: _eof
                raise
        if not self._done:
            out += self._eof()
            self._done = True
        return out

    def _check(self) -> None:
        if self._error is not None:
            raise DecodeError(self._error.kind, self._error.detail)
        if self._closed:
            raise DecodeError("closed", "the decoder was already closed")

    def _events(self, events: Any, out: list[StreamItem]) -> None:
        """Append the items of ``events`` (framed units) to ``out``, in order, stopping once
        done (DEC-4). A subclass may replace it with a faster loop that gives the same items."""
        for ev in events:
            out += self._event(ev)
            if self._done:
                return

    def _event(self, ev: Any) -> list[StreamItem]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _eof(self) -> list[StreamItem]:  # pragma: no cover - abstract
        raise NotImplementedError


class SSEVendorDecoder(VendorDecoder):
    """``VendorDecoder`` over SSE framing (``SSEDecoder``, docs/contracts.md "SSE framing"):
    ``_event`` gets one ``SSEEvent``; ``self._sse`` is the framer."""

    def __init__(self) -> None:
        self._sse = SSEDecoder()
        super().__init__(self._sse)

    def _event(self, ev: SSEEvent) -> list[StreamItem]:  # pragma: no cover - abstract
        raise NotImplementedError


class Exchange(Protocol):
    """One attempt's translation: the request to send and how to read its answer."""

    request: UpstreamRequest

    def parse_body(self, status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> bytes:
        """A 2xx body → client JSON bytes; raises ``UpstreamError`` if it is an error."""
        ...

    def parse_error(
        self, status: int, headers: tuple[tuple[str, str], ...], body: bytes
    ) -> UpstreamError: ...

    def stream_decoder(self) -> StreamDecoder: ...


#: HTTP status -> OpenAI error ``type`` for an upstream error (docs/contracts.md, "Error status
#: mapping"); the vendors' tables are ``toolkit.STATUS_TYPES`` (this one) and its variant
STATUS_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


#: google.rpc status -> OpenAI error type (docs/contracts.md, Error status mapping): Gemini's
#: and Vertex's errors, and Google-shaped errors from an OpenAI-compatible host
GOOGLE_STATUS_TYPES: dict[str, str] = {
    "INVALID_ARGUMENT": "invalid_request_error", "FAILED_PRECONDITION": "invalid_request_error",
    "OUT_OF_RANGE": "invalid_request_error", "UNAUTHENTICATED": "authentication_error",
    "PERMISSION_DENIED": "permission_error", "NOT_FOUND": "not_found_error",
    "RESOURCE_EXHAUSTED": "rate_limit_error", "DEADLINE_EXCEEDED": "timeout_error",
    "INTERNAL": "server_error", "UNAVAILABLE": "server_error", "UNKNOWN": "server_error",
}

#: an error's type (OpenAI's, or a google.rpc status) -> the HTTP status it comes with, for an
#: error that arrives without one (in a 2xx body, ERR-4, or inside a stream)
_STATUS_FOR_TYPE: dict[str, int] = {
    "invalid_request_error": 400, "authentication_error": 401, "permission_error": 403,
    "not_found_error": 404, "timeout_error": 408, "rate_limit_error": 429,
    "insufficient_quota": 429, "server_error": 500, "api_error": 500, "overloaded_error": 529,
    "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429, "INTERNAL": 500, "UNKNOWN": 500, "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}

#: 4xx statuses the client sees as another status (docs/contracts.md): an upstream's 408
#: is a timeout (504, like the gateway's own read timeout); 424 is Bedrock's
#: ``ModelErrorException``/``ModelStreamErrorException``, a failure of the model (502)
_CLIENT_STATUS = {408: 504, 424: 502}


def client_status_for(upstream_status: int) -> int:
    """The status the client sees for an upstream error, the one rule for every vendor.

    A 4xx is kept (the request or the key is at fault, and which matters to the client; an
    unknown one such as 409 or 418 too), except 408 → 504 and 424 → 502. Every 5xx, 529
    included, is 502: the upstream failed, not the gateway, and clients and proxies in front
    of it do not know 529. Anything outside 400–599 is 502. ``UpstreamError.upstream_status``
    keeps the upstream's own status for the retry policy.
    """
    if 400 <= upstream_status <= 499:
        return _CLIENT_STATUS.get(upstream_status, upstream_status)
    return 502


def implied_status(err: Any) -> int:
    """The HTTP status of an error object that came without one (in a 2xx body or a stream),
    so it maps like the same error sent with its status: a numeric ``code``/``status`` in
    400–599, else the status its ``type`` (or google.rpc ``status``) comes with, else 502."""
    if not isinstance(err, dict):
        return 502
    for key in ("code", "status"):
        v = err.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and 400 <= v <= 599:
            return v
    for key in ("type", "status"):
        v = err.get(key)
        if isinstance(v, str) and v in _STATUS_FOR_TYPE:
            return _STATUS_FOR_TYPE[v]
    return 502


def retry_after(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """The first ``retry-after`` header of an upstream answer, kept for the client (ERR-2)."""
    return tuple((k, v) for k, v in headers if k.lower() == "retry-after")[:1]


def error_from_body(status: int, headers: tuple[tuple[str, str], ...], body: bytes,
                    parsed: Any = None) -> UpstreamError:
    """Normalise a vendor error body into an ``UpstreamError`` (docs/contracts.md, ERR-3).

    Understands ``{"error": {"message", "type", "code"}}``, ``{"error": "text"}``,
    ``{"message": …}``, ``{"detail": …}`` and plain text; the vendor's message is kept
    verbatim, the vendor's code is kept, the HTTP status fills in what is missing. A
    ``status`` below 400 (an error in a 2xx body or in a stream) is replaced by the status the
    error implies (``implied_status``), so the client status follows the same table.
    """
    message: str | None = None
    etype: str | None = None
    code: Any = None
    obj = parsed
    if obj is None:
        try:
            obj = json.loads(body[:65536]) if body else None
        except (ValueError, RecursionError):
            obj = None
    if isinstance(obj, list) and obj and isinstance(obj[0], dict):
        obj = obj[0]  # Google sometimes wraps the error in a list
    if isinstance(obj, dict):
        err = obj.get("error", obj)
        if isinstance(err, dict):
            m = err.get("message") or err.get("detail") or err.get("msg")
            message = m if isinstance(m, str) else (None if m is None else str(m))
            t = err.get("type") or err.get("status")
            etype = t if isinstance(t, str) else None
            c = err.get("code")
            code = c if isinstance(c, (str, int)) and not isinstance(c, bool) else None
            if not err.get("type") and etype in GOOGLE_STATUS_TYPES:  # Google-shaped
                etype, code = GOOGLE_STATUS_TYPES[etype], etype
            if status < 400:
                status = implied_status(err)
        elif isinstance(err, str):
            message = err
        if message is None and isinstance(obj.get("detail"), (str, list, dict)):
            d = obj["detail"]
            message = d if isinstance(d, str) else str(d)
    if status < 400:
        status = 502  # an error with no status and nothing that implies one
    if message is None:
        text = body[:1024].decode("utf-8", "replace").strip()
        message = text or f"upstream answered HTTP {status}"
    if etype is None:
        etype = STATUS_TYPES.get(status, "server_error" if status >= 500 else "upstream_error")
    if code is None:
        code = str(status)
    return UpstreamError(message, kind="status", upstream_status=status,
                         status=client_status_for(status), type=etype, code=code,
                         headers=retry_after(headers))
