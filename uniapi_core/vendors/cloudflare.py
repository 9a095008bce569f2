"""Cloudflare Workers AI (``engine: cloudflare``): the native ``ai/run`` API.

The protocol rules are in docs/vendor-rules.md, "Cloudflare Workers AI" (tags CF-…).

Theory of operation
-------------------
``build_exchange`` is a pure function of the OpenAI request and the ``ChatContext``; it builds
from the request model (``uniapi_core/request.py``; a dict is parsed first), whose shape
sorting it relies on, and words its own 400s from the model's ``invalid`` markers:

* URL (CF-1): ``https://api.cloudflare.com/client/v4/accounts/<cf_account_id>/ai/run/<model>``
  with ``@`` and ``/`` of the model kept literally. When the provider has a ``base_url``, its
  origin (scheme and host[:port]) replaces ``https://api.cloudflare.com`` so a test double or a
  proxy can stand in; the path is always the documented one. Exception (CF-3): a ``base_url``
  whose path contains ``/ai/v1`` is Cloudflare's OpenAI-compatible endpoint, and the request
  is handed to the OpenAI-compatible translator (``openai.build_exchange``) unchanged.
  ``Authorization: Bearer <api token>``. A provider without ``cf_account_id`` (and no
  ``/ai/v1`` base_url) is a configuration error (``GatewayError``).
* Body (CF-2): ``messages`` with string ``content`` (text parts are concatenated verbatim,
  O-6; image parts are refused with 400: this path takes no images), ``stream``, and the
  numbers in ``_SAMPLING`` (``max_completion_tokens`` wins over ``max_tokens``). ``tools`` go
  in the OpenAI function shape; an assistant's tool calls and the tool results are sent as
  ``tool_calls`` (OpenAI shape, arguments as text) and ``{"role":"tool","tool_call_id",
  "content"}`` (unverified against Cloudflare's per-model schemas; models without tool
  support ignore them). Every tool result must answer an earlier call (REQ-2).
  ``response_format`` becomes Workers AI JSON Mode on the models of ``JSON_MODE_MODELS``
  (``{"type": "json_schema", "json_schema": <the bare schema>}`` or ``{"type":
  "json_object"}``), not streamed; elsewhere it is a 400 naming the model (docs/vendors.md,
  "Structured outputs"). Nothing else is copied (REQ-3; ``DROPPED`` says why).

``CloudflareExchange.parse_body`` (docs/vendor-rules.md, "Cloudflare answers and streams")
reads the envelope ``{"result", "success", "errors", "messages"}``: ``success: false`` or a
non-empty ``errors`` list is an error even with HTTP 200 (ERR-4). ``result.response`` is the
content (a non-string ``response``, as JSON-mode models send, is serialised),
``result.tool_calls`` — ``{"name","arguments"}`` or the OpenAI shape — become tool calls with
synthesized ids (TC-4) and arguments serialised compactly (TC-2); the finish reason is
``tool_calls`` when there are calls, else ``stop`` (docs/contracts.md, "Finish reasons"). Models
that answer in the OpenAI ``choices`` shape inside ``result`` are read from
``choices[0].message``. ``parse_error`` (docs/vendor-rules.md, "Errors from Cloudflare") takes
the first ``errors[].message`` verbatim (all of them joined by ``"; "``) and keeps its numeric
``code``; the type comes from the HTTP status (docs/contracts.md, "Error status mapping").

``CloudflareStreamDecoder`` (docs/vendor-rules.md, "Cloudflare answers and streams") is an
``SSEVendorDecoder`` (items before an error are returned, the error is raised by the next call:
DEC-1, DEC-2). Each ``data:``
object's ``response`` is a text chunk, ``usage`` is kept (last one wins, U-3), ``tool_calls``
(whole ``{"name","arguments"}`` calls, or OpenAI-style indexed fragments) go through
``ChunkWriter``; an OpenAI-shaped chunk (``choices[0].delta``) is read the same way. An error
object (``{"errors":[…]}``/``success:false``/``{"error":…}``) is a ``StreamFailed``. ``[DONE]``
is terminal (DEC-4): finish chunk (``tool_calls`` if calls were produced, else ``stop``, or the
OpenAI-shaped ``finish_reason`` when one was given) and ``StreamDone``. EOF without ``[DONE]``
after the final usage object (the object Cloudflare sends last) synthesizes the ending; EOF
before it is a ``truncated`` failure (DEC-5).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from ..errors import DecodeError, GatewayError, UpstreamError
from ..jsonutil import dumps, loads_strict
from ..request import ChatRequest, Message, chat_request
from ..streams import SSEEvent
from . import openai
from .base import (ChatContext, SSEVendorDecoder, StreamDone, StreamFailed, StreamItem,
                   UpstreamRequest, error_from_body)
from .chunks import ChunkWriter, completion, token_count, token_counts, usage_object
from .openai import merge_headers
from .toolkit import as_dict as _dict, as_list as _list, as_str as _str, bad as _bad, call_id
from .toolkit import retry_after, status_error, status_type, typed as _is

__all__ = ["DEFAULT_ORIGIN", "MAPPED", "DROPPED", "JSON_MODE_MODELS", "run_url", "build_exchange",
           "CloudflareExchange", "CloudflareStreamDecoder"]

DEFAULT_ORIGIN = "https://api.cloudflare.com"

#: the numbers copied under their own name, in this order (CF-2; ``_sampling``)
_SAMPLING = ("temperature", "top_p", "top_k", "seed", "repetition_penalty",
             "frequency_penalty", "presence_penalty")
#: every OpenAI field this translator reads (REQ-3)
MAPPED = frozenset({"model", "messages", "stream", "max_tokens", "max_completion_tokens",
                    "tools", "n", "response_format", *_SAMPLING})
#: fields left out on purpose, with the reason (any other field is dropped too)
DROPPED: dict[str, str] = {
    "stream_options": "include_usage is the gateway's", "stop": "no ai/run field",
    "tool_choice": "no ai/run field", "parallel_tool_calls": "no ai/run field",
    "logit_bias": "no ai/run field",
    "logprobs": "no ai/run field", "top_logprobs": "no ai/run field", "user": "no ai/run field",
    "store": "OpenAI only", "metadata": "OpenAI only", "service_tier": "OpenAI only",
}
#: OpenAI-shaped finish reasons kept when a model reports one (docs/contracts.md, "Finish
#: reasons")
_FINISH_KEEP = frozenset({"stop", "length", "tool_calls", "content_filter"})
_OPENAI_MODE = re.compile(r"/ai/v1(?:/|$)")
#: the models Workers AI documents as having JSON Mode (developers.cloudflare.com/workers-ai/
#: features/json-mode/, "Supported Models"); ``response_format`` json_object / json_schema is
#: sent to these and refused with a 400 for any other (docs/vendors.md, "Structured outputs")
JSON_MODE_MODELS = frozenset({
    "@cf/meta/llama-3.3-70b-instruct-fp8-fast", "@cf/meta/llama-3-8b-instruct",
    "@cf/meta/llama-3.1-8b-instruct", "@hf/nousresearch/hermes-2-pro-mistral-7b",
    "@hf/thebloke/deepseek-coder-6.7b-instruct-awq", "@cf/deepseek-ai/deepseek-r1-distill-qwen-32b",
})
_FORMAT_ERROR = "'response_format' must be text, json_object or json_schema"


# -- small helpers -----------------------------------------------------------------------------








def _json_text(value: Any) -> str:
    """Arguments as text: strings verbatim, objects serialised compactly (TC-2)."""
    if isinstance(value, str):
        return value
    return "" if value is None else dumps(value).decode()


# -- request -----------------------------------------------------------------------------------


def run_url(base_url: str | None, account_id: str, model: str) -> str:
    """``<origin>/client/v4/accounts/<account>/ai/run/<model>`` (CF-1); the origin is
    ``base_url``'s when one is given."""
    origin = DEFAULT_ORIGIN
    if base_url:
        try:
            parts = urlsplit(base_url)
        except ValueError:
            parts = None
        if parts is not None and parts.scheme and parts.netloc:
            origin = f"{parts.scheme}://{parts.netloc}"
    return f"{origin}/client/v4/accounts/{account_id}/ai/run/{model}"


def _text(m: Message, i: int) -> str:
    """Message ``i``'s content as one string (CF-2): text parts concatenated, images refused."""
    if m.text is not None:
        return m.text
    if "content" in m.invalid:
        raise _bad(f"messages[{i}].content must be a string or a list of parts")
    out = []
    for j, p in enumerate(m.parts):
        kind = p.kind
        if kind == "text" and p.ok and not p.bare:
            out.append(p.text)
            continue
        if kind == "text" or kind == "refusal":
            # a quirk kept byte for byte, read from ``raw`` on this rare path only: the
            # ``text`` key is read first whatever the type says, then ``refusal`` (a refusal
            # part with a ``text`` key gives that text, a text part with only ``refusal`` the
            # refusal); a bare string in a parts list is not a text part here
            text = None if p.bare else p.raw.get("text", p.raw.get("refusal"))
            if type(text) is str:
                out.append(text)
                continue
        if kind == "image_url":
            raise _bad(f"messages[{i}].content[{j}]: images are not supported by cloudflare ai/run",
                       "unsupported_content")
        raise _bad(f"messages[{i}].content[{j}]: part type {None if p.bare else kind!r} is "
                   "not supported by cloudflare", "unsupported_content")
    return "".join(out)


def _messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    calls: set[str] = set()
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):  # the error texts are formatted only when raised
        if not m.obj:
            raise _bad(f"messages[{i}] must be an object")
        role = m.role
        if role == "system" or role == "developer":
            out.append({"role": "system", "content": _text(m, i)})
        elif role == "user":
            out.append({"role": "user", "content": _text(m, i)})
        elif role == "assistant":
            msg: dict[str, Any] = {"role": "assistant", "content": _text(m, i)}
            if "tool_calls" in m.invalid:
                raise _bad(f"messages[{i}].tool_calls must be a list")
            converted = []
            for j, tc in enumerate(m.tool_calls):
                if not tc.ok or tc.id is None or not tc.name:
                    raise _bad(f"messages[{i}].tool_calls[{j}] needs an 'id' and a function "
                               "'name'")
                calls.add(tc.id)
                converted.append({"id": tc.id, "type": "function",
                                  "function": {"name": tc.name,
                                               "arguments": _json_text(tc.arguments) or "{}"}})
            if converted:
                msg["tool_calls"] = converted
            out.append(msg)
        elif role == "tool":
            tid = m.tool_call_id
            if tid is None or tid not in calls:
                raise _bad(f"messages[{i}].tool_call_id {m.raw.get('tool_call_id')!r} does not "
                           "name an earlier assistant tool call", "invalid_tool_call_id")
            out.append({"role": "tool", "tool_call_id": tid, "content": _text(m, i)})
        else:
            raise _bad(f"messages[{i}].role {m.raw.get('role')!r} is not supported")
    return out


def _tools(req: ChatRequest) -> list[dict[str, Any]]:
    if "tools" in req.invalid:
        raise _bad("'tools' must be a list")
    out = []
    for j, t in enumerate(req.tools):
        if t.function is None or not t.name:  # the tool's ``type`` is not checked
            raise _bad(f"tools[{j}] must be a function tool with a name")
        f: dict[str, Any] = {"name": t.name}
        if t.description is not None:
            f["description"] = t.description
        f["parameters"] = t.parameters if t.parameters is not None else \
            {"type": "object", "properties": {}}
        out.append({"type": "function", "function": f})
    return out


def _sampling(req: ChatRequest, body: dict[str, Any]) -> None:
    """The numbers of ``_SAMPLING`` into ``body`` (CF-2); the first of them, in that order,
    that is not a number is refused. ``repetition_penalty`` is not an OpenAI field: the model
    keeps it in ``extras``, as sent."""
    s, invalid = req.sampling, req.invalid
    rep = req.extras.get("repetition_penalty") if req.extras else None
    rep_bad = rep is not None and not _is(rep, (int, float))
    if invalid or rep_bad:
        for key in _SAMPLING:
            if key in invalid or (rep_bad and key == "repetition_penalty"):
                raise _bad(f"'{key}' must be a number", "invalid_value")
    for key, value in (("temperature", s.temperature), ("top_p", s.top_p), ("top_k", s.top_k),
                       ("seed", s.seed), ("repetition_penalty", rep),
                       ("frequency_penalty", s.frequency_penalty),
                       ("presence_penalty", s.presence_penalty)):
        if value is not None:
            body[key] = value


def _response_format(req: ChatRequest, ctx: ChatContext) -> dict[str, Any] | None:
    """Workers AI JSON Mode (docs/vendors.md, "Structured outputs"): ``json_schema`` carries
    the bare schema (not OpenAI's ``{name, schema, strict}`` wrapper; ``strict`` has no
    counterpart), ``json_object`` or a ``json_schema`` without a schema is ``json_object``.
    Only ``JSON_MODE_MODELS`` take it, and never streamed (JSON Mode does not stream)."""
    if "response_format" in req.invalid:
        raise _bad(_FORMAT_ERROR, "invalid_value")
    fmt = req.sampling.response_format
    kind = req.sampling.response_format_type
    if fmt is None or kind == "text":
        return None
    if kind != "json_object" and kind != "json_schema":
        raise _bad(_FORMAT_ERROR, "invalid_value")
    model = ctx.upstream_model
    if model.lower() not in JSON_MODE_MODELS:
        raise _bad(f"'response_format' {kind} is not supported by cloudflare model {model!r}: "
                   "Workers AI JSON Mode is documented only for "
                   + ", ".join(sorted(JSON_MODE_MODELS)), "unsupported_parameter")
    if ctx.stream:
        raise _bad(f"'response_format' {kind} cannot be streamed from cloudflare model "
                   f"{model!r}: Workers AI JSON Mode does not stream", "unsupported_parameter")
    spec = fmt.get("json_schema")
    schema = spec.get("schema") if type(spec) is dict else None
    if kind == "json_schema" and type(schema) is dict:
        return {"type": "json_schema", "json_schema": schema}
    return {"type": "json_object"}


def build_exchange(chat: ChatRequest | dict[str, Any], ctx: ChatContext
                   ) -> CloudflareExchange | openai.OpenAIExchange:
    """The Workers AI request for one attempt (CF-1..CF-3), built from the request model (a
    dict is parsed first; docs/architecture.md, "The request model"). Raises ``ClientError``
    (400) for requests ai/run cannot take, ``GatewayError`` when the provider has no account
    id."""
    provider = ctx.provider
    base_url = provider.base_url or ""
    try:
        path = urlsplit(base_url).path
    except ValueError:
        path = ""
    if _OPENAI_MODE.search(path):  # CF-3: the OpenAI-compatible endpoint
        return openai.build_exchange(chat, ctx)
    if type(chat) is not ChatRequest and not isinstance(chat, dict):
        raise _bad("the request must be a JSON object")
    account = provider.cf_account_id
    if not account:
        raise GatewayError(f"cloudflare provider {provider.provider!r} has no cf_account_id",
                           code="provider_misconfigured")
    req = chat_request(chat)
    if not req.messages:  # absent, not a list, or empty
        raise _bad("'messages' must be a non-empty list")
    n = req.sampling.n
    if "n" in req.invalid or (n is not None and n != 1):
        raise _bad("'n' other than 1 is not supported by cloudflare", "unsupported_parameter")
    body: dict[str, Any] = {"messages": _messages(req.messages)}
    if ctx.stream:
        body["stream"] = True
    max_tokens = req.sampling.max_tokens
    if "max_tokens" in req.invalid or (max_tokens is not None and max_tokens < 1):
        raise _bad("'max_tokens' must be a positive integer", "invalid_value")
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    _sampling(req, body)
    tools = _tools(req)
    if tools:
        body["tools"] = tools
    fmt = _response_format(req, ctx)
    if fmt is not None:
        body["response_format"] = fmt
    headers = [("content-type", "application/json"),
               ("accept", "text/event-stream" if ctx.stream else "application/json")]
    if ctx.api_key:
        headers.insert(0, ("authorization", f"Bearer {ctx.api_key}"))
    try:
        data = dumps(body)
    except (ValueError, RecursionError):
        raise _bad("the request holds numbers or nesting that cannot be sent as JSON") from None
    request = UpstreamRequest("POST", run_url(provider.base_url, account, ctx.upstream_model),
                              merge_headers(headers, provider.preferences.headers), data)
    return CloudflareExchange(request, ctx)


# -- responses ---------------------------------------------------------------------------------


def _usage(raw: Any) -> dict[str, Any]:
    """Workers AI usage (OpenAI-shaped) -> OpenAI usage (docs/contracts.md, "Usage figures",
    U-4, U-7): the two totals, and every count of the two detail objects (``cached_tokens``,
    ``reasoning_tokens``…) under its own name."""
    raw = _dict(raw)
    pdetails = token_counts(raw.get("prompt_tokens_details"))
    cdetails = token_counts(raw.get("completion_tokens_details"))
    return usage_object(token_count(raw.get("prompt_tokens")) or 0,
                        token_count(raw.get("completion_tokens")) or 0,
                        pdetails.get("cached_tokens", 0), cdetails.get("reasoning_tokens", 0),
                        prompt_details=pdetails, completion_details=cdetails)


def _is_error(obj: dict[str, Any]) -> bool:
    """ERR-4: the envelope says it failed, or carries errors, or is an ``{"error":…}``."""
    return obj.get("success") is False or bool(_list(obj.get("errors"))) or bool(obj.get("error"))


def _cf_error(status: int, headers: tuple[tuple[str, str], ...], body: bytes,
              obj: Any) -> UpstreamError:
    """``{"errors":[{"code","message"}]}`` -> ``UpstreamError`` (docs/vendor-rules.md, "Errors
    from Cloudflare"; docs/contracts.md, "Error status mapping")."""
    errors = [e for e in _list(_dict(obj).get("errors")) if isinstance(e, dict)]
    messages = [e["message"] for e in errors if isinstance(e.get("message"), str)
                and e["message"]]
    if not messages:
        return error_from_body(status, headers, body, obj)
    code = errors[0].get("code")
    code = code if isinstance(code, (str, int)) and not isinstance(code, bool) else str(status)
    return status_error("; ".join(messages), status, status_type(status), code,
                        retry_after(headers))


def _whole_call(tc: dict[str, Any]) -> tuple[Any, str, str]:
    """(vendor id, name, arguments text) of a native or OpenAI-shaped tool call."""
    fn = f if isinstance(f := tc.get("function"), dict) else tc
    return tc.get("id"), _str(fn.get("name")), _json_text(fn.get("arguments"))


class CloudflareExchange:
    """One attempt against Workers AI ``ai/run``: the request and how to read its answers."""

    def __init__(self, request: UpstreamRequest, ctx: ChatContext) -> None:
        self.request = request
        #: the usage of the whole answer ``parse_body`` read (for stats)
        self.usage: dict[str, Any] | None = None
        self.ctx = ctx

    def parse_body(self, status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> bytes:
        """The ai/run envelope -> ``chat.completion`` bytes (docs/vendor-rules.md,
        "Cloudflare answers and streams"); errors raise (ERR-4)."""
        try:
            obj = loads_strict(body)
        except ValueError:
            raise UpstreamError("cloudflare answered with a body that is not JSON",
                                kind="decode", upstream_status=status) from None
        if not isinstance(obj, dict):
            raise UpstreamError("cloudflare answered with JSON that is not an object",
                                kind="decode", upstream_status=status)
        if _is_error(obj):
            raise _cf_error(status if status >= 400 else 502, headers, body, obj)
        result = obj.get("result", obj if "response" in obj else None)
        if not isinstance(result, dict):
            raise UpstreamError("cloudflare answered without a result", kind="protocol",
                                upstream_status=status)
        choices = _list(result.get("choices"))
        finish = None
        if choices and isinstance(choices[0], dict):  # an OpenAI-shaped result
            message = _dict(choices[0].get("message"))
            content: Any = message.get("content")
            reasoning = _str(message.get("reasoning_content"))
            raw_calls = _list(message.get("tool_calls"))
            finish = choices[0].get("finish_reason")
        else:
            content, reasoning = result.get("response"), ""
            raw_calls = _list(result.get("tool_calls"))
        text = content if isinstance(content, str) else _json_text(content)
        calls: list[dict[str, Any]] = []
        for tc in raw_calls:
            if isinstance(tc, dict):
                vid, name, args = _whole_call(tc)
                calls.append({"id": call_id(self.ctx, vid, len(calls)), "name": name,
                              "arguments": args or "{}"})
        reason = finish if finish in _FINISH_KEEP else ("tool_calls" if calls else "stop")
        if reason == "stop" and calls:
            reason = "tool_calls"
        self.usage = _usage(result.get("usage"))
        return completion(self.ctx, content=text, reasoning=reasoning,
                          tool_calls=calls or None, finish_reason=reason,
                          usage=self.usage)

    def parse_error(self, status: int, headers: tuple[tuple[str, str], ...],
                    body: bytes) -> UpstreamError:
        """A Cloudflare error envelope -> ``UpstreamError`` (docs/vendor-rules.md, "Errors from
        Cloudflare"); other shapes via the base."""
        try:
            obj = loads_strict(body[:65536]) if body else None
        except ValueError:
            obj = None
        return _cf_error(status, headers, body, obj)

    def stream_decoder(self) -> CloudflareStreamDecoder:
        """A fresh decoder for this attempt's SSE body."""
        return CloudflareStreamDecoder(self.ctx)


class CloudflareStreamDecoder(SSEVendorDecoder):
    """Workers AI SSE bytes -> OpenAI chunks, split-invariant (docs/vendor-rules.md,
    "Cloudflare answers and streams"; see the module docstring).

    ``usage`` is the last usage seen, OpenAI-shaped (``None`` until one arrives).
    """

    def __init__(self, ctx: ChatContext) -> None:
        super().__init__()
        self.ctx = ctx
        self._writer = ChunkWriter(ctx)
        self._args: dict[Any, bool] = {}  # tool-call key -> arguments seen
        self._whole = 0  # un-indexed (whole) calls seen
        self._finish: str | None = None  # an OpenAI-shaped finish_reason, if any
        self._final = False  # the final (usage) object was seen
        self.usage: dict[str, Any] | None = None

    def _eof(self) -> list[StreamItem]:
        if self._final:  # even if cut inside a line after it: the answer was complete
            return self._end()
        return [StreamFailed(UpstreamError("cloudflare stream ended before [DONE]",
                                           kind="truncated"))]

    def _end(self) -> list[StreamItem]:
        self._done = True
        out: list[StreamItem] = []
        for key, seen in self._args.items():  # TC-3
            if not seen:
                out += self._writer.tool_args(key, "{}")
        reason = self._finish or ("tool_calls" if self._writer.tool_count else "stop")
        if reason == "stop" and self._writer.tool_count:
            reason = "tool_calls"
        out += self._writer.finish(reason, self.usage)
        out.append(StreamDone(self.usage))
        return out

    def _event(self, ev: SSEEvent) -> list[StreamItem]:
        data = ev.data
        if data.strip() == "[DONE]":
            return self._end()
        if not data.strip():
            return []
        try:
            obj = loads_strict(data)
        except ValueError:
            raise DecodeError("invalid_json", "a cloudflare event is not JSON") from None
        if not isinstance(obj, dict):
            raise DecodeError("invalid_json", "a cloudflare event is not a JSON object")
        if _is_error(obj):
            self._done = True
            return [StreamFailed(_cf_error(502, (), b"", obj))]
        if isinstance(obj.get("usage"), dict):
            self.usage = _usage(obj["usage"])  # U-3: keep the last
            self._final = True
        out: list[StreamItem] = list(self._writer.start())
        choices = _list(obj.get("choices"))
        if choices and isinstance(choices[0], dict):  # an OpenAI-shaped chunk
            delta = _dict(choices[0].get("delta"))
            out += self._writer.reasoning(_str(delta.get("reasoning_content")))
            out += self._writer.text(_str(delta.get("content")))
            out += self._tool_calls(_list(delta.get("tool_calls")))
            finish = choices[0].get("finish_reason")
            if isinstance(finish, str) and finish:
                self._finish = finish if finish in _FINISH_KEEP else "stop"
                self._final = True
            return out
        response = obj.get("response")
        out += self._writer.text(response if isinstance(response, str)
                                 else _json_text(response))
        out += self._tool_calls(_list(obj.get("tool_calls")))
        return out

    def _tool_calls(self, calls: list[Any]) -> list[StreamItem]:
        out: list[StreamItem] = []
        for tc in calls:
            if not isinstance(tc, dict):
                continue
            vid, name, args = _whole_call(tc)
            index = tc.get("index")
            if isinstance(index, int) and not isinstance(index, bool):
                key: Any = ("i", index)  # OpenAI-style fragments of one call
            else:
                key = ("w", self._whole)  # a whole call per object
                self._whole += 1
            if key not in self._args:
                self._args[key] = bool(args)
                cid = call_id(self.ctx, vid, self._writer.tool_count)
                out += self._writer.tool_start(key, cid, name, args)
            else:
                self._args[key] = self._args[key] or bool(args)
                out += self._writer.tool_args(key, args)
        return out
