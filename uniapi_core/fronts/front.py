"""How a front protocol writes a relayed answer: the relay's one seam for fronts other than
OpenAI chat completions.

The relay (``relay/machine.py``) speaks OpenAI chat on its own: vendor decoders emit OpenAI
chunks, whole answers are OpenAI JSON, errors are OpenAI's shape. A request that came in on
another front carries a ``Front`` object; the relay hands it what it would have sent and
sends what it gets back, at four points:

* ``error_body(err)``: the answer to a request that failed before the commit point;
* ``whole(payload, exchange)``: a whole answer (``parse_body``'s bytes);
* ``open_stream(exchange)`` at the commit point, then ``chunk(data)`` per batch of stream
  chunks, then ``done(usage)`` or ``failed(err)``.

The fronts are Anthropic Messages (``MessagesFront``), OpenAI Responses (``ResponsesFront``)
and Gemini (``GeminiFront``); ``writer`` picks one for a ``FrontCall`` and ``native_exchange``
decides, per attempt, whether the channel is sent the client's own body. The exchange is
passed to the writer because a front may be served two ways: translated (the attempt's
exchange speaks OpenAI chat) or natively (the exchange speaks the front's own protocol:
``vendors/messages_native.py``, ``responses_native.py``, ``gemini_native.py``), and the retries
of one request may use both. What reaches
the client is decided by the attempt that committed.

``error_for_path`` renders the errors answered before any relay (auth, a bad body, routing)
in the shape of the front the request path belongs to.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import attrs

from ..errors import UniapiError
from ..jsonutil import dumps, loads_strict
from ..vendors.base import ChatContext
from ..vendors.gemini_native import GeminiNativeExchange, array_error_tail, \
    build_gemini_native_exchange, native_gemini
from ..vendors.messages_native import CountTokensExchange, NativeExchange, \
    build_native_exchange, native_engine
from ..vendors.responses_native import ResponsesNativeExchange, \
    build_responses_native_exchange, speaks_responses
from .gemini import GeminiCall, GeminiStream, gemini_response_from_chat, google_error_body, \
    parse_model_path
from .messages import MessagesStream, anthropic_error_body, error_type_for, \
    messages_response_from_chat
from .responses import ResponsesCall, ResponsesStream, response_id, responses_error_body, \
    responses_error_type, responses_response_from_chat

__all__ = ["FrontCall", "GeminiFront", "MESSAGES_PATHS", "MessagesFront", "ResponsesFront",
           "error_for_path", "is_gemini_path", "native_exchange", "reads_own_urls", "writer"]


@attrs.frozen(kw_only=True)
class FrontCall:
    """What a request that came in on another front carries beside its chat translation
    (``gateway.ChatCall.front``): which front, the client's own body (sent as it is to a
    channel that speaks the same protocol) and what that front's writer needs."""

    kind: str  # "messages", "responses", "gemini"
    body: dict[str, Any]
    #: Messages: the values of the client's ``anthropic-beta`` headers
    beta: tuple[str, ...] = ()
    #: the front's own parse of the request (Responses: ``ResponsesCall``), for its writer
    call: Any = None
    #: the wall clock the request arrived at (Responses' ``created_at``)
    created: int = 0
    #: Gemini: a stream in SSE (``?alt=sse``), else one JSON array
    sse: bool = True


def native_exchange(front: FrontCall, engine: str, ctx: ChatContext) -> Any:
    """The exchange of an attempt whose channel speaks the front's own protocol (the client's
    body as it is); None when the channel must be sent the chat translation."""
    if front.kind == "messages" and native_engine(engine, ctx.upstream_model):
        return build_native_exchange(front.body, ctx, engine, beta=front.beta,
                                     client_model=ctx.client_model)
    if front.kind == "responses" and speaks_responses(ctx.provider):
        return build_responses_native_exchange(front.body, ctx, client_model=ctx.client_model)
    if front.kind == "gemini" and native_gemini(engine, ctx.upstream_model):
        return build_gemini_native_exchange(front.body, ctx, engine, stream=ctx.stream,
                                            sse=front.sse, client_model=ctx.client_model)
    return None


def reads_own_urls(front: FrontCall, engine: str, upstream_model: str, provider: Any) -> bool:
    """Whether a channel is sent the client's own body (``native_exchange``) and reads the
    remote image and document URLs in it itself, so the gateway need not fetch them: Anthropic
    (not Vertex or Bedrock, which take no ``url`` sources and get the fetched bytes), a
    Responses upstream, a Gemini upstream."""
    if front.kind == "messages":
        return native_engine(engine, upstream_model) == "claude"
    if front.kind == "responses":
        return speaks_responses(provider)
    if front.kind == "gemini":
        return native_gemini(engine, upstream_model) is not None
    return False


def writer(front: FrontCall, model: str, response_id: str) -> Any:
    """The relay's writer of a request on ``front`` (``Relay(front=…)``)."""
    if front.kind == "responses":
        return ResponsesFront(front.call, response_id, front.created)
    if front.kind == "gemini":
        return GeminiFront(front.call, front.sse, response_id)
    return MessagesFront(model, response_id)


class GeminiFront:
    """The relay's writer for one Gemini-native request (``generateContent``,
    ``streamGenerateContent``): translated answers through ``fronts/gemini.py``; a Gemini or
    Vertex-Gemini channel (``vendors/gemini_native.py``) is relayed as it is. Errors are
    Google's shape. A stream without ``?alt=sse`` is one JSON array, sent as JSON."""

    def __init__(self, call: GeminiCall, sse: bool, request_id: str) -> None:
        self.call = call
        self.sse = sse
        self.request_id = request_id
        #: the head of a stream when it is one JSON array (None: the relay's SSE head)
        self.stream_headers = (None if sse else
                               (("content-type", "application/json; charset=utf-8"),))
        self._stream: GeminiStream | None = None  # a translated stream; None: native
        self._opened = False  # native array: "[" went out

    def error_body(self, err: UniapiError) -> bytes:
        return google_error_body(err.status, err.message)

    def whole(self, payload: bytes, exchange: Any) -> bytes:
        if isinstance(exchange, GeminiNativeExchange):
            return payload
        return dumps(gemini_response_from_chat(loads_strict(payload), self.call.model,
                                               self.call.include_thoughts))

    def open_stream(self, exchange: Any) -> None:
        self._stream = (None if isinstance(exchange, GeminiNativeExchange) else
                        GeminiStream(self.call.model, self.call.include_thoughts, self.sse,
                                     self.request_id))

    def chunk(self, data: bytes) -> bytes:
        if self._stream is not None:
            return self._stream.feed(data)
        self._opened = self._opened or bool(data)
        return data

    def done(self, usage: dict[str, Any] | None) -> bytes:
        return b"" if self._stream is None else self._stream.end(usage)

    def failed(self, err: UniapiError) -> bytes:
        if self._stream is not None:
            return self._stream.fail(err.status, err.message)
        error = google_error_body(err.status, err.message)
        if self.sse:
            return b"data: " + error + b"\r\n\r\n"
        return array_error_tail(error, self._opened)


_SEQUENCE = re.compile(rb'"sequence_number":\s*(\d+)')


def _finished(response: Any) -> dict[str, Any] | None:
    """``response`` when it is a finished Responses object (completed or incomplete)."""
    if isinstance(response, dict) and response.get("status") in ("completed", "incomplete") \
            and isinstance(response.get("id"), str):
        return response
    return None


class ResponsesFront:
    """The relay's writer for one ``/v1/responses`` request: translated answers through
    ``fronts/responses.py``; a channel that speaks Responses (``vendors/responses_native.py``)
    is relayed as it is. Errors are OpenAI's shape, which is the Responses shape too."""

    def __init__(self, call: ResponsesCall, request_id: str, created: int) -> None:
        self.call = call
        self.response_id = response_id(request_id)
        self.created = created
        self._stream: ResponsesStream | None = None  # a translated stream; None: native
        self._seq = -1  # native: the last sequence_number relayed
        #: the finished response object (completed or incomplete), to be stored for
        #: ``previous_response_id``; None until the answer is over, or when it failed
        self.final: dict[str, Any] | None = None

    def error_body(self, err: UniapiError) -> bytes:
        return responses_error_body(err.status, err.message, err.code, err.type)

    def whole(self, payload: bytes, exchange: Any) -> bytes:
        if isinstance(exchange, ResponsesNativeExchange):
            self.final = _finished(loads_strict(payload))
            return payload
        self.final = responses_response_from_chat(loads_strict(payload), self.call,
                                                  self.response_id, self.created)
        return dumps(self.final)

    def open_stream(self, exchange: Any) -> None:
        self._stream = (None if isinstance(exchange, ResponsesNativeExchange)
                        else ResponsesStream(self.call, self.response_id, self.created))

    def chunk(self, data: bytes) -> bytes:
        if self._stream is not None:
            return self._stream.feed(data)
        numbers = _SEQUENCE.findall(data)
        if numbers:
            self._seq = int(numbers[-1])
        if b'"response.completed"' in data or b'"response.incomplete"' in data:
            for line in data.split(b"\n"):  # the native stream's finished response
                if line.startswith(b"data:") and b'"response.' in line:
                    with contextlib.suppress(ValueError, RecursionError):
                        event = loads_strict(line[5:])
                        if isinstance(event, dict):
                            self.final = _finished(event.get("response")) or self.final
        return data

    def done(self, usage: dict[str, Any] | None) -> bytes:
        if self._stream is None:
            return b""
        out = self._stream.end(usage)
        self.final = self._stream.final
        return out

    def failed(self, err: UniapiError) -> bytes:
        code = err.code if isinstance(err.code, str) else None
        if self._stream is not None:
            return self._stream.fail(err.status, err.message, code)
        # native: the upstream's numbering goes on; its response events are not ours to
        # finish, so the stream ends with Responses' own ``error`` event
        event = {"type": "error", "code": code or responses_error_type(err.status),
                 "message": err.message, "param": None, "sequence_number": self._seq + 1}
        return b"event: error\ndata: " + dumps(event) + b"\n\n"

#: Anthropic's keep-alive event
PING = b'event: ping\ndata: {"type":"ping"}\n\n'

#: the paths whose errors are written in Anthropic's shape
MESSAGES_PATHS = frozenset({"/v1/messages", "/v1/messages/count_tokens"})


class MessagesFront:
    """The relay's writer for one ``/v1/messages`` request (see the module docstring).
    ``model``: the name the client asked for, echoed in answers; ``request_id``: the seed of
    the message id of a translated answer."""

    def __init__(self, model: str, request_id: str) -> None:
        self.model = model
        self.request_id = request_id
        self._stream: MessagesStream | None = None  # a translated stream; None: native

    def error_body(self, err: UniapiError) -> bytes:
        return anthropic_error_body(err.status, err.message)

    def whole(self, payload: bytes, exchange: Any) -> bytes:
        if isinstance(exchange, (NativeExchange, CountTokensExchange)):
            return payload  # the upstream's own message (model already the client's) or count
        return dumps(messages_response_from_chat(loads_strict(payload), self.model))

    def open_stream(self, exchange: Any) -> None:
        self._stream = (None if isinstance(exchange, NativeExchange)
                        else MessagesStream(self.model, self.request_id))

    def chunk(self, data: bytes) -> bytes:
        return data if self._stream is None else self._stream.feed(data)

    def done(self, usage: dict[str, Any] | None) -> bytes:
        # native: the upstream's message_stop has been relayed already
        return b"" if self._stream is None else self._stream.end(usage)

    def ping(self) -> bytes:
        """A keep-alive while the upstream is silent (the relay's ``PING_EVERY``)."""
        return PING

    def failed(self, err: UniapiError) -> bytes:
        if self._stream is not None:
            return self._stream.fail(err.status, error_type_for(err.status), err.message)
        return b"event: error\ndata: " + anthropic_error_body(err.status, err.message) + b"\n\n"


def is_gemini_path(path: str) -> bool:
    """A Gemini-native path: ``/v1beta/…``, or ``/v1/models/{model}:{method}``."""
    return path.startswith("/v1beta/") or path == "/v1beta" or (
        path.startswith("/v1/models/") and parse_model_path(path) is not None
        and ":" in path.rpartition("/")[2])


def error_for_path(path: str, status: int, body: bytes) -> bytes | None:
    """An OpenAI-shaped error ``body`` (``errors.to_openai_error``) rewritten for the front of
    ``path``; None when the path is OpenAI's own (or the body is not an OpenAI error)."""
    render = (anthropic_error_body if path in MESSAGES_PATHS
              else google_error_body if is_gemini_path(path) else None)
    if render is None:
        return None
    try:
        message = loads_strict(body)["error"]["message"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    return render(status, message if isinstance(message, str) else str(message))
