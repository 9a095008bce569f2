"""OpenAI-compatible upstreams (OpenAI, DeepSeek, Groq, xAI, OpenRouter, any /chat/completions).

The request passes through untouched except the model name (OAI-2/OAI-3, docs/vendor-rules.md).
Responses are relayed event by event: each upstream ``data:`` event is re-framed as
``data: …\\n\\n`` from its original text, and only re-encoded when something must change: the
model name, when the client asked for an alias (O-3), or what the host's dialect does
differently from OpenAI (``dialects.py``, OAI-7: tool-call indexes, content lists, reasoning fields,
usage, finish reasons). The decoder recognises ``[DONE]``, in-stream error objects (OAI-9) and
a stream cut before its end (DEC-5).

A stream the client did not ask usage for is still asked for it upstream
(``stream_options.include_usage``, OAI-4) so that the gateway's statistics get every stream's
token counts; the decoder then keeps the usage and hides it from the client (S-5).
"""

from __future__ import annotations

import json
import re
from typing import Any

import attrs

from ..errors import DecodeError, UpstreamError
from ..jsonutil import dumps
from ..multipart import Form
from ..request import ChatRequest, original_of
from ..streams import encode_event
from .base import (
    ChatContext,
    SSEVendorDecoder,
    StreamChunk,
    StreamDone,
    StreamFailed,
    StreamItem,
    UpstreamRequest,
    error_from_body,
)
from .dialects import GENERIC, ChunkNormalizer, Dialect, dialect_for, normalize_body

__all__ = ["chat_url", "models_url", "sibling_url", "build_exchange", "OpenAIExchange",
           "asks_usage", "with_usage_asked",
           "OpenAIStreamDecoder", "parse_models_list", "PassthroughExchange", "build_passthrough",
           "passthrough_request", "Upload", "UploadExchange", "upload_request",
           "build_upload"]

_SUFFIXES = ("/chat/completions", "/images/generations", "/audio/transcriptions",
             "/moderations", "/embeddings", "/models")


def _split_query(url: str) -> tuple[str, str]:
    base, sep, query = url.partition("?")
    return base, (sep + query)


def chat_url(base_url: str) -> str:
    """The chat-completions URL: ``base_url`` as given; a bare ``…/v1`` gets the path (OAI-1)."""
    base, query = _split_query(base_url)
    if base.rstrip("/").endswith("/v1"):
        return base.rstrip("/") + "/chat/completions" + query
    return base_url


def sibling_url(base_url: str, endpoint: str) -> str:
    """Another OpenAI endpoint (``/models``, ``/embeddings``…) derived from the chat URL."""
    base, query = _split_query(chat_url(base_url))
    base = base.rstrip("/")
    for suffix in _SUFFIXES:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base + endpoint + query


def models_url(base_url: str) -> str:
    return sibling_url(base_url, "/models")


def parse_models_list(body: bytes) -> list[str]:
    """Model ids from an OpenAI ``/v1/models`` answer, in order, without duplicates."""
    obj = json.loads(body)
    data = obj.get("data") if isinstance(obj, dict) else None
    if not isinstance(data, list):
        raise ValueError("no 'data' list in the models answer")
    seen: dict[str, None] = {}
    for item in data:
        if isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"]:
            seen.setdefault(item["id"], None)
    return list(seen)


def auth_headers(api_key: str | None, *, stream: bool) -> list[tuple[str, str]]:
    headers = [("content-type", "application/json"),
               ("accept", "text/event-stream" if stream else "application/json")]
    if api_key:
        headers.append(("authorization", f"Bearer {api_key}"))
    return headers


def merge_headers(base: list[tuple[str, str]],
                  extra: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """``extra`` (the provider's ``preferences.headers``) replaces same-named headers."""
    names = {k.lower() for k, _ in extra}
    return tuple([h for h in base if h[0].lower() not in names] + list(extra))


def asks_usage(ctx: ChatContext) -> bool:
    """Whether this attempt adds ``stream_options.include_usage: true`` to the client's
    request (OAI-4): a stream the client did not ask usage for, unless the provider turned it
    off (``preferences.stream_usage: false``, for hosts that reject ``stream_options``)."""
    if not ctx.stream or ctx.include_usage:
        return False
    prefs = getattr(ctx.provider, "preferences", None)
    return getattr(prefs, "stream_usage", None) is not False


def with_usage_asked(out: dict[str, Any]) -> None:
    """``out`` (a copy of the client's request) with ``stream_options.include_usage: true``,
    the client's other ``stream_options`` keys kept (OAI-4). A ``stream_options`` that is not an
    object (nor null) is the client's mistake and is left for the host to refuse."""
    options = out.get("stream_options")
    if options is None:
        out["stream_options"] = {"include_usage": True}
    elif isinstance(options, dict):
        out["stream_options"] = {**options, "include_usage": True}


def build_exchange(body: ChatRequest | dict[str, Any], ctx: ChatContext) -> "OpenAIExchange":
    """The upstream request for an OpenAI-compatible provider: the request as the client sent
    it (the model's ``original``: OAI-3), with ``model`` replaced and, for a stream, usage
    asked for (OAI-4)."""
    out = dict(original_of(body))
    out["model"] = ctx.upstream_model
    if asks_usage(ctx):
        with_usage_asked(out)
    headers = merge_headers(auth_headers(ctx.api_key, stream=ctx.stream),
                            ctx.provider.preferences.headers)
    request = UpstreamRequest("POST", chat_url(ctx.provider.base_url or ""), headers, dumps(out))
    return OpenAIExchange(request, ctx)


class OpenAIExchange:
    """One attempt against an OpenAI-compatible upstream."""

    def __init__(self, request: UpstreamRequest, ctx: ChatContext) -> None:
        self.request = request
        self.ctx = ctx
        self.dialect = ctx.dialect or dialect_for(ctx.provider)
        prefs = getattr(ctx.provider, "preferences", None)
        self.think_tags: bool | None = getattr(prefs, "think_tags", None)
        #: the usage of the whole answer ``parse_body`` read, normalized (for stats)
        self.usage: dict[str, Any] | None = None

    def parse_body(self, status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> bytes:
        try:
            obj = json.loads(body)
        except (ValueError, RecursionError):
            raise UpstreamError("upstream answered with a body that is not JSON",
                                kind="decode", upstream_status=status) from None
        if not isinstance(obj, dict):
            raise UpstreamError("upstream answered with JSON that is not an object",
                                kind="decode", upstream_status=status)
        if obj.get("error"):  # ERR-4: an error object with a 2xx status
            raise error_from_body(status, headers, body, obj)
        choices = obj.get("choices")
        if not isinstance(choices, list) or not choices:
            raise UpstreamError("upstream answered with no choices", kind="empty",
                                upstream_status=status)
        changed = normalize_body(obj, self.dialect, think_tags=self.think_tags)
        if not obj["choices"]:  # none of them was an object
            raise UpstreamError("upstream answered with no choices", kind="empty",
                                upstream_status=status)
        if isinstance(obj.get("usage"), dict):
            self.usage = obj["usage"]
        if obj.get("model") != self.ctx.client_model:
            obj["model"] = self.ctx.client_model
            changed = True
        return dumps(obj) if changed else body

    def parse_error(self, status: int, headers: tuple[tuple[str, str], ...],
                    body: bytes) -> UpstreamError:
        return error_from_body(status, headers, body)

    def stream_decoder(self) -> "OpenAIStreamDecoder":
        return OpenAIStreamDecoder(self.ctx.client_model, self.dialect,
                                   think_tags=self.think_tags,
                                   hide_usage=not self.ctx.include_usage)


# A JSON string as dumps writes it: no \\u or \\/ escapes, no raw U+2028/U+2029. Matched as an
# unrolled loop (runs of plain characters between escapes), several times faster in `re`.
_STR = r'"[^"\\\x00-\x1f\u2028\u2029]*(?:\\["\\bfnrt][^"\\\x00-\x1f\u2028\u2029]*)*"'
_INT = r"(?:0|-?[1-9][0-9]*)"
# An OpenAI content chunk, field by field as OpenAI sends them. Groups: the text before the
# model's string, the model (no escapes at all, so the text is the value), the text after it up
# to the choices' end, the ``"usage":null`` that include_usage puts on every chunk (or
# nothing), the rest.
_PLAIN_CHUNK = re.compile(
    r'(\{"id":' + _STR + r',"object":"chat\.completion\.chunk","created":' + _INT
    + r',"model":)"([^"\\\x00-\x1f\u2028\u2029]*)"((?:,"service_tier":' + _STR
    + r')?(?:,"system_fingerprint":(?:null|' + _STR + r'))?,"choices":\[\{"index":0'
    + r',"delta":\{"content":' + _STR + r'\},"logprobs":null,"finish_reason":null\}\])'
    r'((?:,"usage":null)?)((?:,"obfuscation":' + _STR + r')?\})')


class OpenAIStreamDecoder(SSEVendorDecoder):
    """OpenAI-compatible SSE bytes → client-ready chunks, relayed without re-encoding when
    possible.

    Framing, the terminal state and the error contract are ``SSEVendorDecoder``'s: split-
    invariant even on bad input (DEC-1: chunks completed before a ``DecodeError`` come out
    first and the error is raised by the next call), nothing after ``[DONE]`` or an error
    object (DEC-4). Every chunk that is not a plain content chunk goes through the dialect's
    ``ChunkNormalizer``; a stream that ends without a finish reason for a choice gets one, in a
    last chunk of its own. ``_events`` is the whole per-event loop, fast path included.

    ``usage`` is the last usage the host reported, normalized, whatever the client asked. With
    ``hide_usage`` (the client did not ask for it: S-5, OAI-4) no chunk the client gets
    mentions usage: a chunk without choices (the usage chunk) is dropped and the ``usage`` key
    of the others is removed, as OpenAI sends them without include_usage.
    """

    #: the fast-path matcher (a test swaps it for one that never matches)
    _plain = _PLAIN_CHUNK.fullmatch  # a bound builtin: not rebound as a method

    def __init__(self, client_model: str, dialect: Dialect = GENERIC, *,
                 think_tags: bool | None = None, hide_usage: bool = False) -> None:
        super().__init__()
        self._model = client_model
        self._hide = hide_usage
        try:  # the client's model as dumps writes it inside a chunk (None: take the long way)
            self._model_json: bytes | None = dumps(client_model)
            client_model.encode("utf-8")
        except UnicodeEncodeError:
            self._model_json = None
        self._norm = ChunkNormalizer(dialect, think_tags=think_tags)
        #: no fast-path chunk yet (the first one is parsed once, for the stream's id)
        self._fresh = True
        #: True when a plain chunk may need the normalizer (think tags on, or a choice finished)
        self._gated = self._norm.gated
        self._finished = False  # a finish_reason was seen
        self.usage: dict[str, Any] | None = None

    def _eof(self) -> list[StreamItem]:
        if self._finished:  # DEC-5: some hosts end without [DONE]
            return self._end()
        return [StreamFailed(UpstreamError("upstream stream ended before it was complete",
                                           kind="truncated"))]

    def _end(self) -> list[StreamItem]:
        """A proper end: the finish chunk the host left out, if any, then done."""
        out: list[StreamItem] = []
        last = self._norm.finish(self._model)
        if last is not None:
            out.append(StreamChunk(b"data: " + dumps(last) + b"\n\n"))
        out.append(StreamDone(self.usage))
        return out

    def _events(self, events: list[Any], out: list[StreamItem]) -> None:
        plain = self._plain
        norm = self._norm
        hide = self._hide
        for ev in events:
            if self._done:
                return  # DEC-4: nothing after the terminal condition
            text = ev.data
            m = plain(text)
            if m is not None and (not self._gated or norm.plain_ok(0)):
                # a plain content chunk of choice 0 in OpenAI's compact layout: valid JSON with
                # no error, no usage and no finish_reason, every string and number already in
                # the form dumps writes, so the general way's output is the text itself, or the
                # text with the model's JSON string swapped (and, when the client did not ask
                # for usage, its "usage":null cut out); nothing in it for the dialect to fix
                if self._fresh:  # the first one: its id and created, for a finish we may add
                    self._fresh = False
                    if norm.needs_head:
                        norm.note_head(json.loads(text))
                    norm.seen_plain(0)
                if m.group(2) == self._model:
                    if hide:
                        cut, end = m.span(4)
                        if cut != end:
                            out.append(StreamChunk(b"data: " + text[:cut].encode("utf-8")
                                                   + text[end:].encode("utf-8") + b"\n\n"))
                            continue
                    out.append(StreamChunk(b"data: " + text.encode("utf-8") + b"\n\n"))
                    continue
                if self._model_json is not None:
                    rest = m.group(3) + m.group(5) if hide else text[m.end(2) + 1:]
                    out.append(StreamChunk(b"data: " + m.group(1).encode("utf-8")
                                           + self._model_json + rest.encode("utf-8")
                                           + b"\n\n"))
                    continue
            if text == "[DONE]":
                self._done = True
                out += self._end()
                continue
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except (ValueError, RecursionError):
                raise DecodeError("invalid_json", "an upstream event is not JSON") from None
            if not isinstance(obj, dict):
                raise DecodeError("invalid_json", "an upstream event is not a JSON object")
            if obj.get("error"):  # OAI-9
                self._done = True
                out.append(StreamFailed(error_from_body(0, (), b"", obj)))  # status from the error
                continue
            changed = norm.chunk(obj)
            if norm.failed is not None:  # a finish reason that says the host failed
                self._done = True
                out.append(StreamFailed(UpstreamError(norm.failed, kind="truncated")))
                continue
            if norm.usage is not None:
                self.usage = norm.usage
            if hide:  # S-5, OAI-4: the usage is ours, not the client's
                if not obj["choices"]:
                    continue  # the usage chunk, Azure's prompt-filter chunk (AZ-5), keep-alives
                if "usage" in obj:
                    del obj["usage"]
                    changed = True
            elif not obj["choices"] and obj.get("usage") is None:
                continue  # nothing for the client: Azure's prompt-filter chunk (AZ-5), keep-alives
            if norm.any_finished:
                self._finished = True
            self._gated = norm.gated
            if obj.get("model") != self._model:
                obj["model"] = self._model
                changed = True
            if changed:
                out.append(StreamChunk(b"data: " + dumps(obj) + b"\n\n"))
            else:
                out.append(StreamChunk(encode_event(text)))


class PassthroughExchange:
    """A whole-body OpenAI endpoint (embeddings, moderations, images): the upstream's JSON
    answer is relayed as it came (docs/routing.md §9), after checking it is not an error."""

    def __init__(self, request: UpstreamRequest) -> None:
        self.request = request

    def parse_body(self, status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> bytes:
        try:
            obj = json.loads(body)
        except (ValueError, RecursionError):
            raise UpstreamError("upstream answered with a body that is not JSON",
                                kind="decode", upstream_status=status) from None
        if isinstance(obj, dict) and obj.get("error"):
            raise error_from_body(status, headers, body, obj)
        return body

    def parse_error(self, status: int, headers: tuple[tuple[str, str], ...],
                    body: bytes) -> UpstreamError:
        return error_from_body(status, headers, body)

    def stream_decoder(self) -> OpenAIStreamDecoder:  # pragma: no cover - never streamed
        raise UpstreamError("this endpoint does not stream", kind="protocol")


def passthrough_request(body: dict[str, Any], ctx: ChatContext, url: str,
                        auth: list[tuple[str, str]]) -> PassthroughExchange:
    out = dict(body)
    out["model"] = ctx.upstream_model
    headers = merge_headers([("content-type", "application/json"),
                             ("accept", "application/json")] + auth,
                            ctx.provider.preferences.headers)
    return PassthroughExchange(UpstreamRequest("POST", url, headers, dumps(out)))


def build_passthrough(endpoint: str) -> Any:
    """An exchange builder for the OpenAI endpoint ``endpoint`` (``/embeddings``…)."""
    def build(body: dict[str, Any], ctx: ChatContext) -> PassthroughExchange:
        auth = [("authorization", f"Bearer {ctx.api_key}")] if ctx.api_key else []
        return passthrough_request(body, ctx, sibling_url(ctx.provider.base_url or "", endpoint),
                                   auth)
    return build



@attrs.frozen
class Upload:
    """A ``multipart/form-data`` request (``/v1/audio/transcriptions``): the client's exact
    bytes and ``Content-Type``, the parsed form, and the ``model`` it names."""

    body: bytes = attrs.field(repr=False)
    content_type: str
    form: Form = attrs.field(repr=False)
    model: str


class UploadExchange:
    """A multipart endpoint: the answer is relayed as it came, JSON or text (the client's
    ``response_format`` decides), with the upstream's ``Content-Type``."""

    def __init__(self, request: UpstreamRequest) -> None:
        self.request = request

    def parse_body(self, status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> bytes:
        if "json" in self.response_content_type(headers):
            try:
                obj = json.loads(body)
            except (ValueError, RecursionError):
                raise UpstreamError("upstream answered with a body that is not JSON",
                                    kind="decode", upstream_status=status) from None
            if isinstance(obj, dict) and obj.get("error"):  # ERR-4
                raise error_from_body(status, headers, body, obj)
        return body

    def response_content_type(self, headers: tuple[tuple[str, str], ...]) -> str:
        """The ``Content-Type`` the client gets: the upstream's (JSON when it sent none)."""
        for k, v in headers:
            if k.lower() == "content-type" and v.strip():
                return v.strip()
        return "application/json"

    def parse_error(self, status: int, headers: tuple[tuple[str, str], ...],
                    body: bytes) -> UpstreamError:
        return error_from_body(status, headers, body)

    def stream_decoder(self) -> OpenAIStreamDecoder:  # pragma: no cover - never streamed
        raise UpstreamError("this endpoint does not stream", kind="protocol")


def upload_request(upload: Upload, ctx: ChatContext, url: str,
                   auth: list[tuple[str, str]]) -> UploadExchange:
    """The upstream request: the client's bytes as they came, unless the model must be renamed
    for this provider — then the form is written again (same boundary) with that name."""
    body = upload.body
    if ctx.upstream_model != upload.model:
        body = upload.form.with_field("model", ctx.upstream_model).encode()
    headers = merge_headers([("content-type", upload.content_type)] + auth,
                            ctx.provider.preferences.headers)
    return UploadExchange(UpstreamRequest("POST", url, headers, body))


def build_upload(endpoint: str) -> Any:
    """An exchange builder for the multipart OpenAI endpoint ``endpoint``."""
    def build(upload: Upload, ctx: ChatContext) -> UploadExchange:
        auth = [("authorization", f"Bearer {ctx.api_key}")] if ctx.api_key else []
        return upload_request(upload, ctx, sibling_url(ctx.provider.base_url or "", endpoint),
                              auth)
    return build
