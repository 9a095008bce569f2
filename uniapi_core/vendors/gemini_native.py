"""Native Gemini passthrough: a ``generateContent`` request to a channel that speaks Gemini.

A client of the Gemini front (``POST /v1beta/models/{model}:generateContent``,
``:streamGenerateContent?alt=sse`` or ``:streamGenerateContent`` as a JSON array) whose attempt
goes to Gemini (``engine: gemini``) or a Gemini model on Vertex (``engine: vertex``, a model
that is not Claude's, VTX-B1) is served without a round trip through the OpenAI chat format,
so nothing the chat model cannot hold is lost: ``thoughtSignature`` parts, ``fileData``,
``executableCode``, safety settings, cached content, fields the gateway does not know.

Theory of operation
-------------------
``build_gemini_native_exchange(body, ctx, engine, stream=…, sse=…, client_model=…)`` is pure,
like the chat builders.

* *Request*. The client's decoded body is sent unchanged (key order kept, re-encoded with
  ``jsonutil.dumps``: compact, U+2028/U+2029 escaped), nothing added or dropped.

  - Gemini: ``{gemini.gemini_base(base_url)}/models/{upstream_model}:generateContent`` or
    ``:streamGenerateContent?alt=sse``, ``content-type`` and ``x-goog-api-key`` (GEM-3: the
    key never goes in the query), then the provider's ``preferences.headers``
    (``openai.merge_headers``), exactly as ``gemini.build_exchange``.
  - Vertex: ``vertex.vertex_url`` (``publishers/google``), ``content-type``, the provider's
    headers without the auth ones, ``authorization: Bearer`` with ``ChatContext.access_token``
    (``vertex._auth``), exactly as ``vertex.build_exchange`` for a Gemini model.

  A stream always asks the upstream for SSE (``alt=sse``), whatever framing the client asked
  for (``sse``); the decoder writes the client's framing (below).

* *Whole answers* (``GeminiNativeExchange.parse_body``): the upstream's bytes as they came, not
  one byte changed: ``modelVersion`` stays the upstream's (the Gemini client named its model in
  the URL, and ``modelVersion`` is the serving version, not that name). The body is parsed
  first (``loads_strict``): not JSON (or JSON that is not an object, or a one-object list)
  is ``UpstreamError`` ``decode`` as in ``gemini.py``; an error object sent with a 2xx
  (ERR-4) is raised through Gemini's mapping with the status it implies; an answer with no
  candidates and no ``promptFeedback.blockReason`` is ``empty`` (retryable, as in
  ``gemini.py``). A blocked prompt is a valid Gemini answer and is passed through (``gemini.py``
  turns it into a 400 ``content_filter`` because a chat client could not read it).
  ``usage`` is the OpenAI-shaped usage (U-2, ``gemini._usage``) for the stats, None when the
  answer has no ``usageMetadata``.

* *Errors*: Gemini's mapping (``GeminiExchange``/``VertexGeminiExchange.parse_error``,
  GEM-S7, ``RetryInfo.retryDelay`` as ``retry-after``); the front words them as Google errors.

* *Streams*: every upstream SSE event whose data is a JSON object becomes one ``StreamChunk``
  holding ``data: <json>\\r\\n\\r\\n`` (Google's own framing), ``<json>`` being the upstream's
  own text of the event. The only changes: CR/LF between JSON tokens become spaces (an SSE data
  line cannot hold them; JSON strings cannot either) and U+2028/U+2029 are written
  ``\\u2028``/``\\u2029`` (S-8). A data that is a JSON list of objects is one event per element
  (each element's own text). For a client that asked for the JSON array (``sse=False``) the
  decoder writes the array itself: ``[`` before the first object, ``,\\r\\n`` before each
  further one, and ``]`` as the last chunk before ``StreamDone`` (``[]`` when no object came,
  which cannot happen after a finish). Re-framing is the decoder's job, not the front's; after
  a ``StreamFailed`` the front closes the array itself (``GeminiNativeDecoder.opened`` says
  whether ``[`` was written; ``array_error_tail`` gives the bytes).

  End of stream, following ``GeminiStreamDecoder`` (GEM-S6, DEC-4, DEC-5): a candidate's
  ``finishReason`` (or a ``promptFeedback.blockReason``, which ends a stream Google blocked)
  ends the content, but the stream is read until EOF so a trailing usage-only object still
  reaches the client and the stats; EOF after it (even inside a line) is ``StreamDone(usage)``,
  EOF before it a ``truncated`` failure. After the finish an event that is not JSON, and an
  error object, are dropped, as ``gemini.py`` ignores them. Before it, an error object
  (``{"error": {...}}``) is ``StreamFailed`` (Gemini's mapping, GEM-S7), not passed through;
  the relay writes the front's error. ``usage`` is the last ``usageMetadata`` seen, OpenAI's
  shape (U-2, U-3: kept, never summed), None before any. Framing, split invariance and the
  error contract (DEC-1..DEC-4) are ``SSEVendorDecoder``'s. A one-part text chunk in Gemini's
  own layout (``gemini._PLAIN_TEXT``, which matches only valid JSON) is framed without being
  parsed (its ``usageMetadata`` is parsed when it changes); every other event is checked
  (``loads_strict``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from ..errors import DecodeError, GatewayError, UpstreamError
from ..jsonutil import loads_strict
from ..streams import SSEEvent
from . import gemini, vertex
from .base import (
    ChatContext,
    SSEVendorDecoder,
    StreamChunk,
    StreamDone,
    StreamFailed,
    StreamItem,
    UpstreamRequest,
)
from .engine import _ALIASES
from .gemini import _PLAIN_TEXT, _error_status, _google_error, _usage
from .messages_native import _SKIP, _encode, _ws
from .openai import merge_headers

__all__ = [
    "GeminiNativeDecoder",
    "GeminiNativeExchange",
    "array_error_tail",
    "build_gemini_native_exchange",
    "native_gemini",
]

_TERM = b"\r\n\r\n"


def native_gemini(engine: str, upstream_model: str) -> str | None:
    """``gemini`` or ``vertex`` when the channel speaks Gemini's ``generateContent``, else None
    (any other engine; a Vertex model that is Claude's, VTX-B1). Engine aliases count."""
    name = _ALIASES.get(engine.lower(), engine.lower())
    if name == "gemini":
        return name
    if name == "vertex" and vertex.publisher(upstream_model) == "google":
        return name
    return None


# -- request ---------------------------------------------------------------------------------

def _gemini_request(data: bytes, ctx: ChatContext, stream: bool) -> UpstreamRequest:
    model = quote(ctx.upstream_model.removeprefix("models/"), safe="-._~@")
    url = f"{gemini.gemini_base(ctx.provider.base_url)}/models/{model}:" + (
        "streamGenerateContent?alt=sse" if stream else "generateContent")
    headers = [("content-type", "application/json")]
    if ctx.api_key:
        headers.append(("x-goog-api-key", ctx.api_key))
    return UpstreamRequest("POST", url, merge_headers(headers, ctx.provider.preferences.headers),
                           data)


def _vertex_request(data: bytes, ctx: ChatContext, stream: bool) -> UpstreamRequest:
    p = ctx.provider
    if not (isinstance(p.project_id, str) and p.project_id.strip()):
        raise vertex._config_error(ctx, "is a Vertex provider without project_id")
    if not ctx.region or not ctx.access_token:
        raise GatewayError(f"provider {p.provider!r}: no Vertex region or access token for "
                           "this attempt", status=500, code="vertex_token_missing")
    url = vertex.vertex_url(p.base_url, p.project_id.strip(), ctx.region, ctx.upstream_model,
                            stream)
    prefs = tuple((k, v) for k, v in p.preferences.headers
                  if k.lower() not in vertex._AUTH_OWNED)
    headers = [("content-type", "application/json")]
    return UpstreamRequest("POST", url, vertex._auth(headers, prefs, ctx.access_token), data)


def build_gemini_native_exchange(body: dict[str, Any], ctx: ChatContext, engine: str, *,
                                 stream: bool, sse: bool,
                                 client_model: str) -> GeminiNativeExchange:
    """The upstream exchange for one attempt of a Gemini-native request (module docstring).

    ``body`` is the client's decoded ``generateContent`` body; ``stream`` whether the client
    called ``streamGenerateContent`` (the same as ``ctx.stream``); ``sse`` whether it asked for
    ``alt=sse`` (False: the JSON-array stream); ``client_model`` the model of the client's
    URL. ``ValueError`` when the channel does not speak Gemini
    (``native_gemini`` is None: the caller must translate); ``GatewayError`` (500) for a
    misconfigured Vertex provider; ``ClientError`` for a body that cannot be encoded.
    """
    name = native_gemini(engine, ctx.upstream_model)
    if name is None:
        raise ValueError(f"engine {engine!r} with model {ctx.upstream_model!r} does not speak "
                         "Gemini generateContent")
    data = _encode(body)
    build = _gemini_request if name == "gemini" else _vertex_request
    return GeminiNativeExchange(build(data, ctx, stream), ctx, name, client_model, sse=sse)


# -- whole answers ---------------------------------------------------------------------------

class GeminiNativeExchange:
    """One attempt of a Gemini request to a Gemini upstream: the request and how to read its
    answers (the ``Exchange`` protocol of ``base.py``)."""

    def __init__(self, request: UpstreamRequest, ctx: ChatContext, engine: str,
                 client_model: str, *, sse: bool = True) -> None:
        self.request = request
        self.ctx = ctx
        #: ``gemini`` or ``vertex``
        self.engine = engine
        #: the model the client named (not written into answers: ``modelVersion`` is kept)
        self.client_model = client_model
        #: the client's stream framing: SSE (True) or one JSON array (False)
        self.sse = sse
        #: the OpenAI-shaped usage of the answer ``parse_body`` read (for stats)
        self.usage: dict[str, Any] | None = None
        self._vendor: gemini.GeminiExchange = (
            vertex.VertexGeminiExchange(request, ctx) if engine == "vertex"
            else gemini.GeminiExchange(request, ctx))

    def parse_body(self, status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> bytes:
        """The upstream's bytes, unchanged, once checked (see the module docstring)."""
        try:
            obj = loads_strict(body)
        except ValueError:  # UnicodeDecodeError and too deep nesting are ValueErrors
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
        feedback = obj.get("promptFeedback")
        blocked = isinstance(feedback, dict) and bool(feedback.get("blockReason"))
        if not (isinstance(candidates, list) and any(isinstance(c, dict) for c in candidates)) \
                and not blocked:
            raise UpstreamError("gemini answered with no candidates", kind="empty",
                                upstream_status=status)
        meta = obj.get("usageMetadata")
        self.usage = _usage(meta) if isinstance(meta, dict) else None
        return body

    def parse_error(self, status: int, headers: tuple[tuple[str, str], ...],
                    body: bytes) -> UpstreamError:
        """Gemini's error mapping (GEM-S7; Vertex's is the same)."""
        return self._vendor.parse_error(status, headers, body)

    def stream_decoder(self) -> GeminiNativeDecoder:
        return GeminiNativeDecoder(sse=self.sse)


# -- streams ---------------------------------------------------------------------------------

def _one_line(data: str) -> bytes:
    """Checked JSON text as one SSE data line (CR/LF are whitespace there; S-8)."""
    if "\n" in data or "\r" in data:
        data = data.replace("\r", " ").replace("\n", " ")
    if "\u2028" in data or "\u2029" in data:
        data = data.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    try:
        return data.encode("utf-8")
    except UnicodeEncodeError:  # pragma: no cover - decoded UTF-8 holds no lone surrogate
        raise DecodeError("invalid_text", "a gemini event has a lone surrogate") from None


def _elements(text: str) -> list[str]:
    """The text of each element of the JSON array ``text`` (already checked)."""
    out: list[str] = []
    i = _ws(text, _ws(text, 0) + 1)  # past '['
    while text[i] != "]":
        end = _SKIP(text, i)[1]
        out.append(text[i:end])
        i = _ws(text, end)
        if text[i] == ",":
            i = _ws(text, i + 1)
    return out


def array_error_tail(error: bytes, opened: bool) -> bytes:
    """What closes a JSON-array stream with ``error`` (a Google error object's JSON) as its
    last element: ``,\\r\\n<error>]`` after an opened array, ``[<error>]`` otherwise."""
    return (b",\r\n" if opened else b"[") + error + b"]"


class GeminiNativeDecoder(SSEVendorDecoder):
    """``streamGenerateContent?alt=sse`` in, the same objects out for a Gemini client (SSE, or
    one JSON array when ``sse`` is False), split-invariant; ``usage`` is the OpenAI usage of the
    last ``usageMetadata`` seen (None before any)."""

    def __init__(self, *, sse: bool = True) -> None:
        super().__init__()
        self._sse_out = sse
        #: JSON-array framing: whether ``[`` was written
        self.opened = False
        self.usage: dict[str, Any] | None = None
        self._usage_text: str | None = None
        self._finished = False  # a finishReason (or blockReason) was seen

    def _eof(self) -> list[StreamItem]:
        if not self._finished:
            return [StreamFailed(UpstreamError("gemini stream ended before a finishReason",
                                               kind="truncated"))]
        out: list[StreamItem] = []
        if not self._sse_out:
            out.append(StreamChunk(b"]" if self.opened else b"[]"))
        out.append(StreamDone(self.usage))
        return out

    def _chunk(self, data: str) -> StreamChunk:
        raw = _one_line(data)
        if self._sse_out:
            return StreamChunk(b"data: " + raw + _TERM)
        head = b",\r\n" if self.opened else b"["
        self.opened = True
        return StreamChunk(head + raw)

    def _events(self, events: list[SSEEvent], out: list[StreamItem]) -> None:
        plain = _PLAIN_TEXT.fullmatch
        for ev in events:
            if self._done:
                return  # DEC-4: nothing after a failure
            data = ev.data
            m = plain(data)
            if m is not None:
                usage_text = m.group(2)
                if usage_text is None or usage_text == self._usage_text:
                    out.append(self._chunk(data))
                    continue
                try:
                    meta = loads_strict(usage_text)
                except ValueError:
                    meta = None
                if isinstance(meta, dict):
                    self.usage, self._usage_text = _usage(meta), usage_text
                    out.append(self._chunk(data))
                    continue
            out += self._event(ev)

    def _event(self, ev: SSEEvent) -> list[StreamItem]:
        data = ev.data
        if not data.strip() or data == "[DONE]":
            return []
        try:
            obj = loads_strict(data)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            texts, objs = [data], [obj]
        elif isinstance(obj, list) and obj and all(isinstance(o, dict) for o in obj):
            texts, objs = _elements(data), obj
        else:
            if self._finished:
                return []  # nothing after the finish matters but usage (DEC-4)
            raise DecodeError("invalid_json", "a gemini event is not a JSON object")
        out: list[StreamItem] = []
        for text, o in zip(texts, objs):
            if o.get("error"):  # GEM-S7
                if self._finished:
                    continue
                self._done = True
                out.append(StreamFailed(_google_error(_error_status(o), (), b"", o)))
                return out
            meta = o.get("usageMetadata")
            if isinstance(meta, dict):
                self.usage, self._usage_text = _usage(meta), None
            if not self._finished:
                candidates = o.get("candidates")
                feedback = o.get("promptFeedback")
                if (isinstance(candidates, list)
                        and any(isinstance(c, dict) and c.get("finishReason")
                                for c in candidates)) \
                        or (isinstance(feedback, dict) and feedback.get("blockReason")):
                    self._finished = True
            out.append(self._chunk(text))
        return out

