"""Native Responses passthrough: an OpenAI Responses request to a channel that speaks Responses.

A client of the ``POST /v1/responses`` front (the ``openai`` SDK's ``responses.create``, Codex)
whose attempt goes to a provider that speaks the Responses API is served without a round trip
through the chat format, so nothing chat cannot hold is lost: reasoning items and their
``encrypted_content``, built-in tools (web search, file search, code interpreter),
``previous_response_id``, ``include``, ``text.format``, new fields.

Theory of operation
-------------------
* *Which providers* (``speaks_responses``): uni-api's rule, a provider whose ``base_url`` path
  ends in ``/responses`` (``https://api.openai.com/v1/responses``), when its engine
  (``engine.detect_engine``) is an OpenAI-compatible one (``gpt``, ``openrouter``). Azure is
  left out: its Responses endpoint takes an ``api-key`` header and an ``api-version`` query,
  which this module does not write. ``engine.py`` does not know this rule: a Responses
  provider's engine stays ``gpt`` for chat, whose translator would post chat bodies to the
  ``/responses`` URL; the front decides with ``speaks_responses``.
* *Request* (``build_responses_native_exchange``, pure): the client's decoded body, key order
  kept, re-encoded with ``jsonutil.dumps`` (U+2028/U+2029 escaped), with ``model`` the
  upstream model (in place; first when the client sent none) and ``stream`` as the gateway
  decided (``ctx.stream``: ``true`` set when it streams, a ``true`` the client sent made
  ``false`` when it does not). Headers are ``openai.auth_headers`` (content type, accept,
  ``authorization: Bearer <key>``) then the provider's ``preferences.headers``
  (``openai.merge_headers``: same names replaced), as for chat. The URL is
  ``responses_url(base_url)``: the base_url as it is for a Responses provider (query kept);
  for any other base_url the ``/responses`` sibling of its chat URL (``openai.sibling_url``).
* *Whole answers* (``parse_body``): the upstream's bytes with only the value of the first
  top-level ``"model"`` key replaced by the client's model (``messages_native._with_model``:
  every other byte is the upstream's; a body whose model is already the client's, or not a
  string, is returned as it came). The body is parsed first (``loads_strict``): not a JSON
  object is ``UpstreamError`` ``decode``; an ``error`` object that is not null (a 2xx
  ``status: failed`` answer, ERR-4) goes through ``error_from_body`` with the status it implies;
  no ``output`` list is ``protocol``. ``usage`` is the answer's usage in OpenAI chat's shape
  for the stats (``input_tokens`` → ``prompt_tokens``, ``output_tokens`` →
  ``completion_tokens``, ``input_tokens_details.cached_tokens``,
  ``output_tokens_details.reasoning_tokens``; a host that writes chat's names is read as well),
  never written into the answer; None when the answer has none.
* *Errors*: ``openai.py``'s mapping (``error_from_body``, ERR-2, ERR-3).
* *Streams* (``ResponsesNativeDecoder``): every upstream event becomes one ``StreamChunk``
  holding ``event: <type>\\ndata: <json>\\n\\n`` (``messages_native._frame``), ``<json>`` the
  upstream's own text of the event; ``<type>`` is the JSON ``type`` (the SSE name when there is
  none; an event without a usable name is dropped, as are empty data and ``[DONE]``). The only
  changes: ``response.model`` is the client's model in ``response.queued``/``created``/
  ``in_progress``/``completed``/``incomplete`` (same splice), CR/LF between JSON tokens become
  spaces and U+2028/U+2029 are written ``\\u2028``/``\\u2029`` (S-8). ``response.completed``
  and ``response.incomplete`` are followed by ``StreamDone(usage)`` (usage as for whole
  answers, from the terminal event's ``response.usage``, else the last one seen; None when
  none was reported) and nothing after them is read (DEC-4). ``response.failed`` (its
  ``response.error``) and an ``error`` event (its ``code``/``message``, top level or under
  ``error``) are ``StreamFailed`` with the upstream's message and code, not passed through:
  the relay writes the front's error event. A known ``code`` (``server_error``,
  ``rate_limit_exceeded``, ``invalid_prompt``…) gives the status the error implies, otherwise
  502. A body that ends before the terminal event is a ``truncated`` failure (DEC-5: a
  Responses stream has no finish reason outside its terminal event, so no ending is
  synthesized). Framing, split invariance and the error contract (DEC-1..DEC-4) are
  ``SSEVendorDecoder``'s; every event's JSON is checked (``loads_strict``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..errors import DecodeError, UpstreamError
from ..jsonutil import loads_strict
from ..streams import SSEEvent
from .base import (
    ChatContext,
    SSEVendorDecoder,
    StreamDone,
    StreamFailed,
    StreamItem,
    UpstreamRequest,
    error_from_body,
)
from .chunks import token_count, usage_object
from .engine import detect_engine
from .messages_native import _EVENT_NAME, _encode, _frame, _set_stream, _with_model
from .openai import auth_headers, merge_headers, sibling_url
from .toolkit import as_dict as _dict

__all__ = [
    "RESPONSES_ENGINES",
    "ResponsesNativeDecoder",
    "ResponsesNativeExchange",
    "build_responses_native_exchange",
    "responses_url",
    "responses_usage",
    "speaks_responses",
]

#: the engines whose providers may speak Responses (with a ``…/responses`` base_url)
RESPONSES_ENGINES = frozenset({"gpt", "openrouter"})
_SUFFIX = "/responses"
#: events whose ``response.model`` is the client's
_MODEL_EVENTS = frozenset({"response.queued", "response.created", "response.in_progress",
                           "response.completed", "response.incomplete"})
_DONE_EVENTS = frozenset({"response.completed", "response.incomplete"})
#: a Responses error ``code`` -> the error type whose status it implies (others: 502)
_CODE_TYPES = {"server_error": "server_error", "rate_limit_exceeded": "rate_limit_error",
               "insufficient_quota": "insufficient_quota",
               "invalid_prompt": "invalid_request_error",
               "invalid_request_error": "invalid_request_error",
               "context_length_exceeded": "invalid_request_error"}


def _path_ends_in_responses(base_url: str) -> bool:
    try:
        path = urlsplit(base_url).path
    except ValueError:
        return False
    return path.rstrip("/").endswith(_SUFFIX)


def speaks_responses(provider: Any) -> bool:
    """Whether ``provider`` (a ``config.Provider``) speaks the Responses API: its ``base_url``
    path ends in ``/responses`` and its engine is OpenAI-compatible (``RESPONSES_ENGINES``)."""
    base = provider.base_url
    return bool(base) and _path_ends_in_responses(base) \
        and detect_engine(provider) in RESPONSES_ENGINES


def responses_url(base_url: str) -> str:
    """The Responses URL of ``base_url``: itself when its path ends in ``/responses``, else the
    ``/responses`` sibling of its chat URL (``…/v1`` → ``…/v1/responses``), query kept."""
    if _path_ends_in_responses(base_url):
        return base_url
    return sibling_url(base_url, _SUFFIX)


def build_responses_native_exchange(body: dict[str, Any], ctx: ChatContext, *,
                                    client_model: str) -> ResponsesNativeExchange:
    """The upstream exchange for one attempt of a Responses request (module docstring):
    ``body`` is the client's decoded request, ``client_model`` the name the answers carry.
    ``ClientError`` for a body that cannot be encoded."""
    out = dict(body) if "model" in body else {"model": None, **body}
    out["model"] = ctx.upstream_model
    _set_stream(out, ctx.stream)
    headers = merge_headers(auth_headers(ctx.api_key, stream=ctx.stream),
                            ctx.provider.preferences.headers)
    request = UpstreamRequest("POST", responses_url(ctx.provider.base_url or ""), headers,
                              _encode(out))
    return ResponsesNativeExchange(request, ctx, client_model)


def responses_usage(raw: Any) -> dict[str, Any] | None:
    """A Responses ``usage`` object in OpenAI chat's shape (None when it is not an object)."""
    if not isinstance(raw, dict):
        return None
    names = ("input_tokens", "output_tokens", "input_tokens_details", "output_tokens_details")
    if "input_tokens" not in raw and "output_tokens" not in raw and (
            "prompt_tokens" in raw or "completion_tokens" in raw):  # a host writing chat's names
        names = ("prompt_tokens", "completion_tokens", "prompt_tokens_details",
                 "completion_tokens_details")
    prompt, completion, pdetails, cdetails = names

    def n(obj: Any, key: str) -> int:
        return token_count(_dict(obj).get(key)) or 0
    return usage_object(n(raw, prompt), n(raw, completion), n(raw.get(pdetails), "cached_tokens"),
                        n(raw.get(cdetails), "reasoning_tokens"))


def _stream_error(err: dict[str, Any], default: str) -> UpstreamError:
    """An error reported inside a stream (``response.error`` or an ``error`` event)."""
    message = err.get("message")
    code = err.get("code")
    shaped: dict[str, Any] = {"message": message if isinstance(message, str) and message
                              else default}
    if isinstance(code, (str, int)) and not isinstance(code, bool):
        shaped["code"] = code
    etype = err.get("type")
    if isinstance(etype, str) and etype and etype != "error":
        shaped["type"] = etype
    elif isinstance(code, str) and code in _CODE_TYPES:
        shaped["type"] = _CODE_TYPES[code]
    return error_from_body(0, (), b"", {"error": shaped})


class ResponsesNativeExchange:
    """One attempt of a Responses request to a Responses upstream: the request and how to read
    its answers (the ``Exchange`` protocol of ``base.py``)."""

    def __init__(self, request: UpstreamRequest, ctx: ChatContext, client_model: str) -> None:
        self.request = request
        self.ctx = ctx
        self.client_model = client_model
        #: the OpenAI-shaped usage of the answer ``parse_body`` read (for stats)
        self.usage: dict[str, Any] | None = None

    def parse_body(self, status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> bytes:
        """The upstream's response bytes, ``model`` the client's (see the module docstring)."""
        try:
            text = body.decode("utf-8")
            obj = loads_strict(text)
        except ValueError:  # UnicodeDecodeError, too deep nesting
            raise UpstreamError("upstream answered with a body that is not JSON", kind="decode",
                                upstream_status=status) from None
        if not isinstance(obj, dict):
            raise UpstreamError("upstream answered with JSON that is not an object",
                                kind="decode", upstream_status=status)
        if obj.get("error"):  # ERR-4 (a response's "error" is null when it did not fail)
            raise error_from_body(status, headers, body, obj)
        if not isinstance(obj.get("output"), list):
            raise UpstreamError("upstream answered without an output list", kind="protocol",
                                upstream_status=status)
        self.usage = responses_usage(obj.get("usage"))
        current = obj.get("model")
        if not isinstance(current, str) or current == self.client_model:
            return body
        return _with_model(text, ("model",), current, self.client_model).encode("utf-8")

    def parse_error(self, status: int, headers: tuple[tuple[str, str], ...],
                    body: bytes) -> UpstreamError:
        """``openai.py``'s mapping (``error_from_body``)."""
        return error_from_body(status, headers, body)

    def stream_decoder(self) -> ResponsesNativeDecoder:
        return ResponsesNativeDecoder(self.client_model)


class ResponsesNativeDecoder(SSEVendorDecoder):
    """Responses SSE in, the same events out for a Responses client, split-invariant;
    ``usage`` is the OpenAI usage seen so far (None before any)."""

    def __init__(self, client_model: str) -> None:
        super().__init__()
        self.client_model = client_model
        self.usage: dict[str, Any] | None = None

    def _eof(self) -> list[StreamItem]:
        return [StreamFailed(UpstreamError("upstream stream ended before response.completed",
                                           kind="truncated"))]  # DEC-5

    def _event(self, ev: SSEEvent) -> list[StreamItem]:
        data = ev.data
        if not data or data == "[DONE]":
            return []
        try:
            obj = loads_strict(data)
        except ValueError:
            raise DecodeError("invalid_json", "a Responses event is not JSON") from None
        if not isinstance(obj, dict):
            raise DecodeError("invalid_json", "a Responses event is not a JSON object")
        kind = obj.get("type")
        if not isinstance(kind, str):
            kind = ev.event  # the SSE name only when the JSON has no type
        if kind is None or not _EVENT_NAME.fullmatch(kind):
            return []
        if kind == "error":
            self._done = True
            err = obj["error"] if isinstance(obj.get("error"), dict) else obj
            return [StreamFailed(_stream_error(err, "upstream reported an error in the "
                                                    "stream"))]
        response = obj.get("response")
        if isinstance(response, dict):
            usage = responses_usage(response.get("usage"))
            if usage is not None:
                self.usage = usage
            if kind == "response.failed":
                self._done = True
                return [StreamFailed(_stream_error(_dict(response.get("error")),
                                                   "upstream reported response.failed"))]
            if kind in _MODEL_EVENTS:
                data = _with_model(data, ("response", "model"), response.get("model"),
                                   self.client_model)
        elif kind == "response.failed":
            self._done = True
            return [StreamFailed(_stream_error({}, "upstream reported response.failed"))]
        chunk = _frame(kind, data)
        if kind in _DONE_EVENTS:
            self._done = True
            return [chunk, StreamDone(self.usage)]
        return [chunk]
