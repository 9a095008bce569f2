"""Cohere v2 chat (``engine: cohere``): OpenAI chat request in, OpenAI answer out.

The protocol rules are in docs/vendor-rules.md, "Cohere".

Theory of operation
-------------------
``build_exchange`` is a pure function of the OpenAI request and the ``ChatContext``
(docs/vendor-rules.md, CO-1 and "Cohere request body"). It builds from the request model
(``uniapi_core/request.py``; a dict is parsed first), which has sorted every JSON type; each
400 keeps the text, code and order of checks of the former dict builder, and so do three
readings of its: a text/refusal part's ``text`` key is read before ``refusal``, a user
``content: []`` is sent as ``[]`` (null as ``""``), and a named ``tool_choice`` needs
``"type": "function"``.

* URL (CO-1, decided here): ``<base>/v2/chat``, default base ``https://api.cohere.com``. A
  ``base_url`` whose path ends in ``/v2/chat`` is used verbatim; one ending in ``/v1/chat``
  (the original's v1 endpoint, common in old configs) is rewritten to ``/v2/chat`` on the same
  origin and path prefix; one ending in ``/v1`` or ``/v2`` gets ``/chat`` after ``/v2``; any
  other path gets ``/v2/chat`` appended. The query is kept. ``Authorization: Bearer <key>``.
* Messages: ``system``/``developer`` → ``system`` (text flattened), ``user`` → ``user``
  (a string, or ``text``/``image_url`` parts; ``detail`` dropped; a text ``file`` part goes to
  the top-level ``documents`` as ``{"data": {"title", "text"}}``, and so does a PDF's text
  layer, extracted with pypdf (``_pdf_text``: pages joined with a blank line; a type of
  ``application/octet-stream`` or none is sniffed, ``%PDF-``) within ``MAX_PDF_BYTES`` (2 MiB),
  ``MAX_PDF_PAGES`` (100), ``MAX_PDF_TOKENS`` (100,000 content-stream tokens) and
  ``MAX_PDF_CHARS`` (1,000,000), else a 413 ``document_too_large``; a PDF pypdf cannot read is
  a 400 ``invalid_request``; one with no text layer or a password, any other file type, a
  ``file_id`` and ``input_audio`` are 400 ``unsupported_content`` (a channel mismatch: the
  router tries the next channel); a ``file_url`` is read from ``ctx.images``, else
  ``ImagesNeeded`` names every one not fetched yet), ``assistant`` with tool calls
  → ``{"role":"assistant","tool_plan":<text>,"tool_calls":[…]}`` (every call kept, arguments
  as the client's JSON text, ``""`` → ``"{}"``), ``assistant`` text → ``content``, ``tool`` →
  ``{"role":"tool","tool_call_id","content"}``. Tool-call ids are sanitised injectively
  (TC-5) and every tool result must answer an earlier call (REQ-2). Assistant turns with
  neither text nor calls are dropped (Cohere refuses empty turns).
* Fields: only ``MAPPED`` fields are read (REQ-3), ``DROPPED`` documents the rest. ``top_p``/
  ``top_k`` → ``p``/``k``, ``stop`` → ``stop_sequences`` (at most 5), ``max_completion_tokens``
  wins over ``max_tokens``, ``tool_choice`` ``required``/``none`` → ``REQUIRED``/``NONE``, a
  named function → ``REQUIRED`` with ``tools`` filtered to it (approximation), ``n`` > 1 is
  refused, ``response_format`` json_object/json_schema → ``{"type":"json_object"[,
  "json_schema"]}``.

``CohereExchange.parse_body`` (docs/vendor-rules.md, "Cohere answers and streams")
concatenates ``text`` items (``thinking`` items become ``reasoning_content``), shows
``tool_plan`` as content when there are calls and no text, keeps tool calls as given and maps
the finish reason (``FINISH_REASONS``, docs/contracts.md, "Finish reasons"; ``ERROR``/
``ERROR_LIMIT`` are errors) and usage (docs/contracts.md, "Usage figures", U-5: ``tokens``
first, ``billed_units`` as fallback and kept as they are, ``cached_tokens`` as the prompt's
cached part). ``parse_error`` (docs/vendor-rules.md, "Errors from Cohere")
keeps Cohere's ``message`` verbatim; Cohere's non-standard 498 (invalid token) and 499 (client
closed) are normalised to 401 and 502 so the retry policy treats them as a bad key and a
transient failure, with the original status kept as ``code``.

``CohereStreamDecoder`` (docs/vendor-rules.md, "Cohere answers and streams") is an
``SSEVendorDecoder``: the items completed before a framing/JSON error are returned and the
error is raised by the next call, so items and errors never depend on how the bytes were cut
(DEC-1, DEC-2). Events are decoded
by their JSON ``type`` (SSE-11); output goes only through ``ChunkWriter`` (S-1..S-8).
Tool calls are keyed by Cohere's tool-call ``index`` (separate from content indexes) and get
OpenAI indexes 0, 1, … in first-appearance order (TC-1, S-3); argument fragments are relayed
verbatim (TC-2) and a call that ended without arguments gets ``"{}"`` (TC-3). ``message-end``
is terminal (DEC-4): a finish chunk + ``StreamDone``, or ``StreamFailed`` for ``ERROR``/
``ERROR_LIMIT``; anything after it, ``[DONE]`` included, is ignored. EOF before it is a
``truncated`` failure (DEC-5).
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
from collections.abc import Sequence
from typing import Any, TypeGuard
from urllib.parse import urlsplit, urlunsplit

from ..errors import ClientError, DecodeError, UpstreamError
from ..jsonutil import dumps, loads_strict
from ..request import ChatRequest, Message, Part, chat_request, parse_openai_chat
from ..streams import SSEEvent
from .base import (
    ChatContext,
    ImagesNeeded,
    SSEVendorDecoder,
    StreamDone,
    StreamFailed,
    StreamItem,
    UpstreamRequest,
    error_from_body,
)
from .chunks import ChunkWriter, completion, token_count, token_counts, usage_object
from .openai import merge_headers
from .toolkit import (
    ID_OK,
    call_id,
    clean_id,
    data_url,
    retry_after,
    sniff,
    status_error,
    status_type,
)
from .toolkit import as_dict as _dict
from .toolkit import as_str as _str
from .toolkit import bad as _bad
from .toolkit import count as _count

__all__ = [
    "DEFAULT_BASE",
    "DROPPED",
    "FINISH_REASONS",
    "MAPPED",
    "MAX_STOP_SEQUENCES",
    "CohereExchange",
    "CohereStreamDecoder",
    "build_exchange",
    "chat_url",
]

DEFAULT_BASE = "https://api.cohere.com"
MAX_STOP_SEQUENCES = 5

#: OpenAI field -> Cohere v2 field for plain numbers/values (docs/vendor-rules.md,
#: "Cohere request body"), in the order their types are checked and the body is written; the
#: request model has sorted their JSON types (numbers, integers for top_k/seed, a bool for
#: logprobs)
_SAMPLING: dict[str, str] = {
    "temperature": "temperature", "top_p": "p", "top_k": "k", "seed": "seed",
    "frequency_penalty": "frequency_penalty", "presence_penalty": "presence_penalty",
    "logprobs": "logprobs",
}
#: every OpenAI field this translator reads (REQ-3)
MAPPED = frozenset({"model", "messages", "tools", "tool_choice", "max_tokens",
                    "max_completion_tokens", "stop", "response_format", "stream", "n",
                    *_SAMPLING})
#: fields left out on purpose, with the reason (any other field is dropped too)
DROPPED: dict[str, str] = {
    "stream_options": "include_usage is the gateway's; Cohere always reports usage",
    "logit_bias": "no Cohere field", "user": "no Cohere field",
    "parallel_tool_calls": "Cohere decides", "top_logprobs": "no Cohere field",
    "store": "OpenAI only", "metadata": "OpenAI only", "service_tier": "OpenAI only",
    "reasoning_effort": "Cohere's thinking config is not mapped",
}
#: Cohere finish_reason (upper-cased) -> OpenAI; ERROR/ERROR_LIMIT are errors
#: (docs/contracts.md, "Finish reasons")
FINISH_REASONS: dict[str, str] = {"COMPLETE": "stop", "STOP_SEQUENCE": "stop",
                                  "MAX_TOKENS": "length", "TOOL_CALL": "tool_calls",
                                  "CONTENT_BLOCKED": "content_filter"}
_ERROR_FINISH = frozenset({"ERROR", "ERROR_LIMIT"})
_TOOL_CHOICE: dict[str, str | None] = {"auto": None, "required": "REQUIRED", "none": "NONE"}
#: Cohere's non-standard statuses -> the standard status the retry table (routing/retry.py)
#: understands
#: (docs/vendor-rules.md, "Errors from Cohere")
_STATUS_ALIASES: dict[int, int] = {498: 401, 499: 502}
_NAME_OK = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")  # TC-6 (OpenAI's rule; Cohere's is looser)


# -- request -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)  # pure, and called with one provider's base_url per attempt
def chat_url(base_url: str | None) -> str:
    """The v2 chat URL for any accepted ``base_url`` form (CO-1; see the module docstring)."""
    if not base_url:
        return DEFAULT_BASE + "/v2/chat"
    try:
        parts = urlsplit(base_url)
    except ValueError:  # not a URL at all: the transport will say so
        return base_url
    path = parts.path.rstrip("/")
    if path.endswith("/v2/chat"):
        return base_url
    if path.endswith("/v1/chat"):
        path = path[: -len("/v1/chat")] + "/v2/chat"
    elif path.endswith(("/v1", "/v2")):
        path = path[:-3] + "/v2/chat"
    else:
        path += "/v2/chat"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _part_text(p: Part) -> str | None:
    """A text/refusal part's text as Cohere reads it (O-6), None when it is not one. A ``text``
    key is read first whatever the part's type says, then ``refusal`` (so a refusal part with
    a ``text`` key gives that text, a text part with only ``refusal`` the refusal): a quirk
    kept byte for byte, read from ``raw`` on that rare path only."""
    kind = p.kind
    if kind == "text" and p.ok:
        return None if p.bare else p.text
    if kind != "text" and kind != "refusal":
        return None
    raw = p.raw
    text = raw.get("text", raw.get("refusal"))
    return text if type(text) is str else None


def _texts(m: Message, where: str) -> str:
    """A system/assistant/tool content (string or text parts) as one string (O-6)."""
    if m.text is not None:
        return m.text
    if "content" in m.invalid:
        raise _bad(f"{where}.content must be a string or a list of parts")
    out = []
    for p in m.parts:
        text = _part_text(p)
        if text is None:
            raise _bad(f"{where}.content may only hold text parts here")
        out.append(text)
    return "".join(out)


#: PDF bounds (docs/vendor-rules.md, "Cohere PDF text"), for all the PDFs of one request
#: together, each checked before or while pypdf works, so a hostile request cannot hold the
#: event loop for long (pypdf is pure Python and this runs synchronously; the texts are kept
#: in ``ChatRequest.memo``, so a retry does not extract again). Measured with pypdf 7.1
#: (CPython 3.11): a text-heavy page extracts in ~5 ms (100 such pages, ~54,000 tokens:
#: ~0.67 s); content-stream parsing costs ~5 µs a token, so the token budget bounds the worst
#: cases (one huge content stream, one operator with 40,000 operands on each page, a form
#: XObject invoked 1,000 times) to ~0.65 s; opening a file of garbage or of xref-less objects
#: costs ~0.2 s a MiB (0.83 s at 4 MiB), hence 2 MiB; and a file of a hundred bytes can cost
#: ~0.35 s (pypdf looking for a missing root among up to 10,000 objects), hence 3 files.
MAX_PDF_BYTES = 2 * 1024 * 1024
MAX_PDF_FILES = 3
MAX_PDF_PAGES = 100
#: content-stream tokens (operators and operands, array items counted) over all pages and forms
MAX_PDF_TOKENS = 100_000
#: pypdf's own cap on one stream's tokens, so a single stream is never parsed past the budget
_STREAM_TOKENS = 50_000
MAX_PDF_CHARS = 1_000_000
_TOO_LARGE = "document_too_large"
_MEMO = "cohere.pdf"


class _PdfBudget(Exception):
    """Raised from pypdf's operator visitor when the token budget is spent (caught below)."""


def _too_large(message: str) -> ClientError:
    return ClientError(message, status=413, code=_TOO_LARGE)


class _Pdfs:
    """The PDFs of one request: what is left of the request's bounds, and each PDF's outcome
    (its text, or the ``ClientError`` it gave) kept in ``memo`` by its bytes, so that the
    request's next attempt answers the same without extracting again."""

    def __init__(self, memo: dict[str, Any]) -> None:
        #: SHA-256 of a PDF's bytes -> its outcome
        self.done: dict[bytes, str | ClientError] = memo.setdefault(_MEMO, {})
        self.files = self.bytes = self.pages = self.tokens = self.chars = 0

    def text(self, raw: bytes, where: str) -> str:
        key = hashlib.sha256(raw).digest()
        got = self.done.get(key)
        if got is None:
            try:
                got = self._extract(raw, where)
            except ClientError as exc:
                got = exc
            self.done[key] = got
        if isinstance(got, ClientError):
            raise got
        return got

    def _extract(self, raw: bytes, where: str) -> str:
        """``raw``'s text layer, page by page, pages joined with a blank line (``"\\n\\n"``),
        within what is left of the bounds (413 ``document_too_large``). A PDF pypdf cannot read
        is a 400 ``invalid_request``; one with no text layer, or encrypted with a password, a
        400 ``unsupported_content`` (the router tries a channel that reads PDFs). pypdf logs
        what it repairs to the ``pypdf`` logger, which the command line mutes
        (``startup.QUIET_LOGGERS``; an embedder's logging config decides)."""
        self.files += 1
        self.bytes += len(raw)
        if self.files > MAX_PDF_FILES:
            raise _too_large(f"{where}: more than {MAX_PDF_FILES} PDFs in one request; cohere "
                             f"reads PDFs as text, extracted by the gateway from at most "
                             f"{MAX_PDF_FILES}")
        if self.bytes > MAX_PDF_BYTES:
            raise _too_large(f"{where}: the request's PDFs have {self.bytes} bytes; cohere "
                             f"reads PDFs as text, extracted by the gateway from at most "
                             f"{MAX_PDF_BYTES} bytes (2 MiB)")
        # imported on the first PDF for Cohere, not at start-up: pypdf costs ~70 ms and ~10 MB
        # per process, which a gateway that never sends a PDF to Cohere should not pay
        import pypdf
        from pypdf.errors import LimitReachedError

        def count(operator: Any, operands: Any, cm: Any, tm: Any) -> None:
            self.tokens += 1 + sum(len(o) if isinstance(o, list) else 1 for o in operands)
            if self.tokens > MAX_PDF_TOKENS:
                raise _PdfBudget

        pages: list[str] = []
        try:
            # pypdf's own limits, through its context-local configuration (no global state)
            with pypdf.apply_configuration(stream_parsing_work_maximum_count=_STREAM_TOKENS,
                                           page_tree_maximum_entries=4 * MAX_PDF_PAGES,
                                           xform_maximum_invocations_per_extraction=200):
                reader = pypdf.PdfReader(io.BytesIO(raw))
                if reader.is_encrypted and not reader.decrypt(""):
                    raise _bad(f"{where}: the PDF is encrypted with a password; cohere reads "
                               "text only", "unsupported_content")
                self.pages += len(reader.pages)
                if self.pages > MAX_PDF_PAGES:
                    raise _too_large(f"{where}: the request's PDFs have {self.pages} pages; "
                                     "cohere reads PDFs as text, extracted from at most "
                                     f"{MAX_PDF_PAGES} pages")
                for page in reader.pages:
                    text = page.extract_text(visitor_operand_before=count)
                    self.chars += len(text)
                    if self.chars > MAX_PDF_CHARS:
                        raise _too_large(f"{where}: the request's PDFs hold over "
                                         f"{MAX_PDF_CHARS} characters of text, the most the "
                                         "gateway extracts for cohere")
                    pages.append(text)
        except ClientError:
            raise
        except (_PdfBudget, LimitReachedError):
            raise _too_large(f"{where}: the request's PDFs hold more than {MAX_PDF_TOKENS} "
                             "content tokens (or more pages than the gateway reads), the most "
                             "the gateway extracts text from for cohere") from None
        except Exception as exc:  # noqa: BLE001 - pypdf raises many types on a malformed file
            why = " ".join(str(exc).split())[:120]  # one line, whatever pypdf wrote
            raise _bad(f"{where}: the PDF could not be read: {type(exc).__name__}: "
                       f"{why}") from None
        text = "\n\n".join(pages)
        if not text.strip():
            raise _bad(f"{where}: the PDF has no text layer (a scan?); cohere reads text only",
                       "unsupported_content")
        return text


def _pdf_text(raw: bytes, where: str) -> str:
    """One PDF's text, as for a request holding only it (``_Pdfs``)."""
    return _Pdfs({}).text(raw, where)


def _file_bytes(p: Part, where: str, ctx: ChatContext | None, missing: list[str]
                ) -> tuple[str, bytes] | None:
    """A ``file`` part's (media type, bytes): a ``file_data`` data URL decoded, or a
    ``file_url`` the gateway fetched into ``ctx.images`` (None, the URL noted in ``missing``,
    when it is not fetched yet). A declared ``application/octet-stream`` or empty type is
    sniffed: ``%PDF-`` is a PDF."""
    if p.data is None and p.url is not None and ctx is not None:
        got = ctx.images.get(p.url)
        if got is None:
            if p.url not in missing:
                missing.append(p.url)
            return None
        media = got[0].split(";")[0].strip().lower()
        if not media or media == "application/octet-stream":
            media = "application/pdf" if got[1].startswith(b"%PDF-") else (sniff(got[1]) or "")
        return media, got[1]
    if p.data is None or not p.data.startswith("data:"):
        what = "'file_id' file parts" if p.file_id is not None else "file parts without a " \
            "'file_data' data: URL"
        raise _bad(f"{where}: {what} are not supported by cohere", "unsupported_content")
    return data_url(p.data, where, flavour="gemini")  # it sniffs %PDF- and images too


def _document(p: Part, where: str, ctx: ChatContext | None = None,
              missing: list[str] | None = None, pdfs: _Pdfs | None = None
              ) -> dict[str, Any] | None:
    """A ``file`` part as a Cohere v2 ``documents`` entry (issue 20), ``{"data": {"title":
    filename, "text": text}}``: a text file's UTF-8 text, or a PDF's text layer (``_pdf_text``).
    Cohere reads no other type and no OpenAI file ids: those are 400 ``unsupported_content`` (a
    channel mismatch: the router tries the next channel). None when a ``file_url`` is still to
    be fetched (noted in ``missing``)."""
    got = _file_bytes(p, where, ctx, missing if missing is not None else [])
    if got is None:
        return None
    media, data = got
    if media == "application/pdf":
        text = (pdfs or _Pdfs({})).text(data, where)
    elif media.startswith("text/"):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad(f"{where}: the text file is not valid UTF-8", "invalid_request") from None
    else:
        raise _bad(f"{where}: file parts of type {media or 'unknown'!r} are not supported by "
                   "cohere (only text files and PDFs with text, sent as documents)",
                   "unsupported_content")
    fields: dict[str, Any] = {"title": p.filename} if p.filename else {}
    fields["text"] = text
    return {"data": fields}


def _user_content(m: Message, where: str, documents: list[dict[str, Any]] | None = None,
                  ctx: ChatContext | None = None, missing: list[str] | None = None,
                  pdfs: _Pdfs | None = None) -> str | list[dict[str, Any]]:
    if m.text is not None:
        return m.text
    if "content" in m.invalid:
        raise _bad(f"{where}.content must be a string or a list of parts")
    if not m.parts:  # null/absent is "", an empty list stays one
        return "" if m.raw.get("content") is None else []
    parts: list[dict[str, Any]] = []
    for j, p in enumerate(m.parts):
        kind = p.kind
        if kind == "text" and p.ok and not p.bare:
            if p.text:
                parts.append({"type": "text", "text": p.text})
        elif kind == "image_url":
            if not p.url:
                raise _bad(f"{where}.content[{j}].image_url.url must be a string")
            parts.append({"type": "image_url", "image_url": {"url": p.url}})  # detail dropped
        elif kind == "file" and not p.bare and documents is not None:
            doc = _document(p, f"{where}.content[{j}]", ctx, missing, pdfs)
            if doc is not None:
                documents.append(doc)
        elif kind == "text" or not p.obj:  # a malformed text part or item
            raise _bad(f"{where}.content[{j}]: part type {None if p.bare else kind!r} is not "
                       "supported by cohere")
        else:  # a part type Cohere cannot take (input_audio, …): a channel mismatch
            raise _bad(f"{where}.content[{j}]: part type {None if p.bare else kind!r} is not "
                       "supported by cohere", "unsupported_content")
    return parts


class _Ids:
    """Injective history id map (TC-5): valid ids stay, others are cleaned (+hash on clash)."""

    def __init__(self, messages: Sequence[Any]) -> None:
        history: Sequence[Message] = messages
        if messages and type(messages[0]) is not Message:  # dicts (test_toolkit.py): parse
            history = parse_openai_chat({"messages": list(messages)}).messages
        self.used = {c.id for m in history for c in m.tool_calls
                     if c.id is not None and ID_OK.match(c.id)}
        self.map: dict[str, str] = {}

    def __call__(self, vid: str) -> str:
        if vid in self.map:
            return self.map[vid]
        if vid in self.used:
            self.map[vid] = vid
            return vid
        clean = self.map[vid] = clean_id(vid, self.used, limit=40, errors="replace")
        return clean


def _arguments(raw: Any, where: str) -> str:
    """The client's arguments text, checked to be a JSON object (REQ-2); ``""`` -> ``{}``."""
    if raw is None or raw == "":
        return "{}"
    if type(raw) is dict:
        return dumps(raw).decode()
    if type(raw) is not str:
        raise _bad(f"{where}.function.arguments must be a JSON object text")
    try:
        value = loads_strict(raw)
    except ValueError:
        value = None
    if type(value) is not dict:
        raise _bad(f"{where}.function.arguments must be a JSON object text", "invalid_arguments")
    return raw


def _messages(messages: tuple[Message, ...], documents: list[dict[str, Any]] | None = None,
              ctx: ChatContext | None = None, pdfs: _Pdfs | None = None
              ) -> list[dict[str, Any]]:
    """OpenAI messages -> Cohere v2 messages (docs/vendor-rules.md, "Cohere request body";
    REQ-2, TC-5). User ``file`` parts go to ``documents`` (``_document``); ``ImagesNeeded``
    names every ``file_url`` not yet in ``ctx.images``."""
    ids = _Ids(messages)
    missing: list[str] = []
    calls: set[str] = set()
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not m.obj:
            raise _bad(f"{where} must be an object")
        role = m.role
        if role == "system" or role == "developer":
            out.append({"role": "system", "content": _texts(m, where)})
        elif role == "user":
            out.append({"role": "user",
                        "content": _user_content(m, where, documents, ctx, missing, pdfs)})
        elif role == "assistant":
            text = _texts(m, where)
            if "tool_calls" in m.invalid:
                raise _bad(f"{where}.tool_calls must be a list")
            converted = []
            for j, tc in enumerate(m.tool_calls):
                w = f"{where}.tool_calls[{j}]"
                cid, name = tc.id, tc.name
                if not tc.ok or not cid:
                    raise _bad(f"{w} needs an 'id' and a 'function'")
                if name is None or not _NAME_OK.match(name):
                    raise _bad(f"{w}: tool name {tc.raw['function'].get('name')!r} is not "
                               "accepted by cohere", "invalid_tool_name")
                calls.add(cid)
                converted.append({"id": ids(cid), "type": "function",
                                  "function": {"name": name,
                                               "arguments": _arguments(tc.arguments, w)}})
            if converted:
                msg: dict[str, Any] = {"role": "assistant"}
                if text:
                    msg["tool_plan"] = text
                msg["tool_calls"] = converted
                out.append(msg)
            elif text:
                out.append({"role": "assistant", "content": text})
        elif role == "tool":
            tid = m.tool_call_id
            if tid is None or tid not in calls:
                raise _bad(f"{where}.tool_call_id {m.raw.get('tool_call_id')!r} does not name an "
                           "earlier assistant tool call", "invalid_tool_call_id")
            out.append({"role": "tool", "tool_call_id": ids(tid), "content": _texts(m, where)})
        else:
            raise _bad(f"{where}.role {m.raw.get('role')!r} is not supported")
    if missing:
        raise ImagesNeeded(missing)
    if not any(m["role"] != "system" for m in out):
        raise _bad("the request has no user, assistant or tool message for cohere")
    return out


def _tools(req: ChatRequest) -> list[dict[str, Any]]:
    if "tools" in req.invalid:
        raise _bad("'tools' must be a list")
    out = []
    for j, t in enumerate(req.tools):
        if t.type != "function" or t.function is None:
            raise _bad(f"tools[{j}] must be a function tool")
        name = t.name
        if name is None or not _NAME_OK.match(name):
            raise _bad(f"tools[{j}]: tool name {t.function.get('name')!r} is not accepted by "
                       "cohere", "invalid_tool_name")
        f: dict[str, Any] = {"name": name}
        if t.description is not None:
            f["description"] = t.description
        f["parameters"] = t.parameters if t.parameters is not None else \
            {"type": "object", "properties": {}}
        out.append({"type": "function", "function": f})
    return out


def _tool_choice(req: ChatRequest, tools: list[dict[str, Any]]
                 ) -> tuple[str | None, list[dict[str, Any]]]:
    choice = req.tool_choice
    if choice is None:
        return None, tools
    mode = choice.mode
    if mode is not None and mode != "function":
        return _TOOL_CHOICE[mode], tools
    name = choice.name
    if name is not None and choice.type == "function":
        kept = [t for t in tools if t["function"]["name"] == name]
        if not kept:
            raise _bad(f"tool_choice names {name!r}, which is not in 'tools'", "invalid_value")
        return "REQUIRED", kept  # approximation (docs/vendor-rules.md, "Cohere request body")
    raise _bad("'tool_choice' must be 'auto', 'none', 'required' or a named function",
               "invalid_value")


def _response_format(req: ChatRequest) -> dict[str, Any] | None:
    value = req.sampling.response_format
    if value is None and "response_format" not in req.invalid:
        return None
    kind = req.sampling.response_format_type
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = _dict(_dict(value).get("json_schema")).get("schema")
        out: dict[str, Any] = {"type": "json_object"}
        if type(schema) is dict:
            out["json_schema"] = schema
        return out
    raise _bad("'response_format.type' must be text, json_object or json_schema",
               "invalid_value")


def build_exchange(chat: ChatRequest | dict[str, Any], ctx: ChatContext) -> CohereExchange:
    """The Cohere v2 chat request for one attempt (docs/vendor-rules.md, CO-1 and "Cohere
    request body"), built from the request model (a dict is parsed first). Raises
    ``ClientError`` (400) for requests Cohere cannot take, each check at the point and with the
    text it always had (docs/architecture.md, "The request model")."""
    if type(chat) is not ChatRequest and type(chat) is not dict:
        raise _bad("the request must be a JSON object")
    req = chat_request(chat)
    if not req.messages:  # absent, not a list, or empty
        raise _bad("'messages' must be a non-empty list")
    invalid, s = req.invalid, req.sampling
    if "n" in invalid or (s.n is not None and s.n != 1):
        raise _bad("'n' other than 1 is not supported by cohere", "unsupported_parameter")
    documents: list[dict[str, Any]] = []
    body: dict[str, Any] = {"model": ctx.upstream_model,
                            "messages": _messages(req.messages, documents, ctx,
                                                  _Pdfs(req.memo))}
    if documents:
        body["documents"] = documents
    tools = _tools(req)
    choice, tools = _tool_choice(req, tools)
    if tools:
        body["tools"] = tools
    if choice is not None:
        body["tool_choice"] = choice
    if invalid:
        for key in _SAMPLING:  # the first one of the wrong type, in _SAMPLING's order
            if key in invalid:
                raise _bad(f"'{key}' has the wrong type", "invalid_value")
    for name, value in (("temperature", s.temperature), ("p", s.top_p), ("k", s.top_k),
                        ("seed", s.seed), ("frequency_penalty", s.frequency_penalty),
                        ("presence_penalty", s.presence_penalty), ("logprobs", s.logprobs)):
        if value is not None:  # _SAMPLING's names and order
            body[name] = value
    limit = s.max_tokens
    if "max_tokens" in invalid or (limit is not None and limit < 1):
        raise _bad("'max_tokens' must be a positive integer", "invalid_value")
    if limit is not None:
        body["max_tokens"] = limit
    if "stop" in invalid:
        raise _bad("'stop' must be a string or a list of strings", "invalid_value")
    stops = s.stop
    if stops is not None:
        if len(stops) > MAX_STOP_SEQUENCES:
            raise _bad(f"cohere accepts at most {MAX_STOP_SEQUENCES} stop sequences",
                       "invalid_value")
        if stops:
            body["stop_sequences"] = list(stops)
    fmt = _response_format(req)
    if fmt is not None:
        body["response_format"] = fmt
    body["stream"] = bool(ctx.stream)
    headers = [("content-type", "application/json"),
               ("accept", "text/event-stream" if ctx.stream else "application/json")]
    if ctx.api_key:
        headers.insert(0, ("authorization", f"Bearer {ctx.api_key}"))
    try:
        data = dumps(body)
    except (ValueError, RecursionError):  # 1e999 or nesting from the client's JSON
        raise _bad("the request holds numbers or nesting that cannot be sent as JSON") from None
    request = UpstreamRequest("POST", chat_url(ctx.provider.base_url),
                              merge_headers(headers, ctx.provider.preferences.headers), data)
    return CohereExchange(request, ctx)


# -- responses ---------------------------------------------------------------------------------


def _usage(raw: Any) -> dict[str, Any]:
    """Cohere usage -> OpenAI usage (docs/contracts.md, "Usage figures", U-4, U-5): ``tokens``
    first, ``billed_units`` as fallback, ``cached_tokens`` as the cached part of the prompt;
    the billed units are kept as they are."""
    raw = _dict(raw)
    tokens, billed = _dict(raw.get("tokens")), _dict(raw.get("billed_units"))

    def pick(key: str) -> int:
        v = token_count(tokens.get(key))
        if v is None:
            v = token_count(billed.get(key))
        return v or 0
    units = token_counts(billed)
    return usage_object(pick("input_tokens"), pick("output_tokens"),
                        token_count(raw.get("cached_tokens")) or 0,
                        vendor={"billed_units": units} if units else None)


def _finish(value: Any, tools: bool) -> str:
    """docs/contracts.md, "Finish reasons", case-insensitive; unknown/missing -> stop, and
    stop with calls -> tool_calls."""
    reason = FINISH_REASONS.get(value.upper(), "stop") if isinstance(value, str) else "stop"
    return "tool_calls" if reason == "stop" and tools else reason


def _is_error_finish(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and value.upper() in _ERROR_FINISH


def _error(status: int, headers: tuple[tuple[str, str], ...], message: str) -> UpstreamError:
    """A Cohere error (docs/vendor-rules.md, "Errors from Cohere"; docs/contracts.md, "Error
    status mapping"): status normalised, message verbatim, code = status."""
    code = str(status)
    status = _STATUS_ALIASES.get(status, status)
    return status_error(message, status, status_type(status), code, retry_after(headers))


def _finish_error(reason: str) -> UpstreamError:
    """``finish_reason`` ERROR/ERROR_LIMIT (docs/contracts.md, "Finish reasons";
    docs/vendor-rules.md, "Errors from Cohere")."""
    limit = reason.upper() == "ERROR_LIMIT"
    return status_error(f"cohere ended the answer with finish_reason {reason}",
                        429 if limit else 500, "rate_limit_error" if limit else "server_error",
                        reason.upper())


class CohereExchange:
    """One attempt against Cohere v2 chat: the request and how to read its answers."""

    def __init__(self, request: UpstreamRequest, ctx: ChatContext) -> None:
        self.request = request
        #: the usage of the whole answer ``parse_body`` read (for stats)
        self.usage: dict[str, Any] | None = None
        self.ctx = ctx

    def parse_body(self, status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> bytes:
        """A v2 chat response -> ``chat.completion`` bytes (docs/vendor-rules.md, "Cohere
        answers and streams"); error bodies raise (ERR-4)."""
        try:
            obj = loads_strict(body)
        except ValueError:
            raise UpstreamError("cohere answered with a body that is not JSON", kind="decode",
                                upstream_status=status) from None
        if not isinstance(obj, dict):
            raise UpstreamError("cohere answered with JSON that is not an object",
                                kind="decode", upstream_status=status)
        if isinstance(obj.get("message"), str) or obj.get("error"):  # an error object
            raise self.parse_error(status if status >= 400 else 502, headers, body)
        message = obj.get("message")
        if not isinstance(message, dict):
            raise UpstreamError("cohere answered without a message", kind="protocol",
                                upstream_status=status)
        if _is_error_finish(obj.get("finish_reason")):
            raise _finish_error(obj["finish_reason"])
        texts, thoughts = [], []
        content = message.get("content")
        for item in content if isinstance(content, list) else []:
            item = _dict(item)
            if item.get("type") == "text":
                texts.append(_str(item.get("text")))
            elif item.get("type") == "thinking":
                thoughts.append(_str(item.get("thinking")))
        if isinstance(content, str):
            texts.append(content)
        calls: list[dict[str, Any]] = []
        raw_calls = message.get("tool_calls")
        for tc in raw_calls if isinstance(raw_calls, list) else []:
            tc = _dict(tc)
            fn = _dict(tc.get("function"))
            args = fn.get("arguments")
            if not isinstance(args, str):
                args = "" if args is None else dumps(args).decode()
            calls.append({"id": call_id(self.ctx, tc.get("id"), len(calls)),
                          "name": _str(fn.get("name")), "arguments": args or "{}"})
        text = "".join(texts)
        if calls and not text:
            text = _str(message.get("tool_plan"))
        self.usage = _usage(obj.get("usage"))
        return completion(self.ctx, content=text, reasoning="".join(thoughts),
                          tool_calls=calls or None,
                          finish_reason=_finish(obj.get("finish_reason"), bool(calls)),
                          usage=self.usage)

    def parse_error(self, status: int, headers: tuple[tuple[str, str], ...],
                    body: bytes) -> UpstreamError:
        """Cohere ``{"id", "message"}`` -> ``UpstreamError`` (docs/vendor-rules.md, "Errors
        from Cohere"); other shapes via the base."""
        try:
            obj = loads_strict(body[:65536]) if body else None
        except ValueError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("message"), str) and obj["message"]:
            return _error(status, headers, obj["message"])
        base = error_from_body(_STATUS_ALIASES.get(status, status), headers, body, obj)
        if status in _STATUS_ALIASES:
            base.code = str(status)
        return base

    def stream_decoder(self) -> CohereStreamDecoder:
        """A fresh decoder for this attempt's SSE body."""
        return CohereStreamDecoder(self.ctx)


class _Call:
    __slots__ = ("args", "ended")

    def __init__(self) -> None:
        self.args = False
        self.ended = False


class CohereStreamDecoder(SSEVendorDecoder):
    """Cohere v2 SSE bytes -> OpenAI chunks, split-invariant (docs/vendor-rules.md, "Cohere
    answers and streams"; see the module docstring).

    ``usage`` is the OpenAI usage from ``message-end`` (``None`` until then).
    """

    def __init__(self, ctx: ChatContext) -> None:
        super().__init__()
        self.ctx = ctx
        self._writer = ChunkWriter(ctx)
        self._kinds: dict[int, str] = {}  # content index -> "text" | "thinking"
        self._calls: dict[Any, _Call] = {}  # Cohere tool-call key -> state
        self.usage: dict[str, Any] | None = None

    def _eof(self) -> list[StreamItem]:
        return [StreamFailed(UpstreamError("cohere stream ended before message-end",
                                           kind="truncated"))]

    def _event(self, ev: SSEEvent) -> list[StreamItem]:
        if not ev.data.strip() or ev.data == "[DONE]":
            return []  # [DONE] is tolerated, never required (docs/vendor-rules.md, Cohere)
        try:
            obj = loads_strict(ev.data)
        except ValueError:
            raise DecodeError("invalid_json", "a cohere event is not JSON") from None
        if not isinstance(obj, dict):
            raise DecodeError("invalid_json", "a cohere event is not a JSON object")
        kind = obj.get("type", ev.event)  # SSE-11: trust the JSON type
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        return handler(self, obj) if handler is not None else []  # debug, citations, new

    @staticmethod
    def _delta(obj: dict[str, Any]) -> dict[str, Any]:
        return _dict(_dict(obj.get("delta")).get("message"))

    def _message_start(self, obj: dict[str, Any]) -> list[StreamItem]:
        return list(self._writer.start())  # S-1: the role chunk goes with the first body

    def _content_start(self, obj: dict[str, Any]) -> list[StreamItem]:
        content = _dict(self._delta(obj).get("content"))
        kind = "thinking" if content.get("type") == "thinking" else "text"
        index = _count(obj.get("index"))
        if index is not None:
            self._kinds[index] = kind
        return self._content(content, kind)

    def _content_delta(self, obj: dict[str, Any]) -> list[StreamItem]:
        index = _count(obj.get("index"))
        kind = self._kinds.get(index, "text") if index is not None else "text"
        return self._content(_dict(self._delta(obj).get("content")), kind)

    def _content(self, content: dict[str, Any], kind: str) -> list[StreamItem]:
        if isinstance(content.get("thinking"), str):
            return list(self._writer.reasoning(content["thinking"]))
        text = _str(content.get("text"))
        emit = self._writer.reasoning if kind == "thinking" else self._writer.text
        return list(emit(text))  # S-7: "" gives nothing

    def _tool_plan(self, obj: dict[str, Any]) -> list[StreamItem]:
        return list(self._writer.text(_str(self._delta(obj).get("tool_plan"))))

    def _key(self, obj: dict[str, Any]) -> Any:
        index = obj.get("index")
        return index if _count(index) is not None else None

    def _tool_start(self, obj: dict[str, Any]) -> list[StreamItem]:
        key = self._key(obj)
        if key is None:
            key = ("unindexed", len(self._calls))
        if key in self._calls:
            return []  # a repeated start would break S-2; its deltas still count
        tc = _dict(self._delta(obj).get("tool_calls"))
        fn = _dict(tc.get("function"))
        args = _str(fn.get("arguments"))
        state = self._calls[key] = _Call()
        state.args = bool(args)
        cid = call_id(self.ctx, tc.get("id"), self._writer.tool_count)
        return list(self._writer.tool_start(key, cid, _str(fn.get("name")), args))

    def _tool_delta(self, obj: dict[str, Any]) -> list[StreamItem]:
        key = self._key(obj)
        state = self._calls.get(key)
        if state is None or state.ended:
            return []
        fragment = _str(_dict(_dict(self._delta(obj).get("tool_calls")).get("function"))
                        .get("arguments"))
        state.args = state.args or bool(fragment)
        return list(self._writer.tool_args(key, fragment))

    def _tool_end(self, obj: dict[str, Any]) -> list[StreamItem]:
        key = self._key(obj)
        state = self._calls.get(key)
        return self._end_call(key, state) if state is not None else []

    def _end_call(self, key: Any, state: _Call) -> list[StreamItem]:
        if state.ended:
            return []
        state.ended = True
        return [] if state.args else list(self._writer.tool_args(key, "{}"))  # TC-3

    def _message_end(self, obj: dict[str, Any]) -> list[StreamItem]:
        self._done = True
        delta = _dict(obj.get("delta"))
        reason = delta.get("finish_reason")
        if isinstance(delta.get("usage"), dict):
            self.usage = _usage(delta["usage"])
        if _is_error_finish(reason):
            return [StreamFailed(_finish_error(reason))]
        out: list[StreamItem] = []
        for key, state in self._calls.items():  # calls never ended: TC-3 still applies
            out += self._end_call(key, state)
        out += self._writer.finish(_finish(reason, self._writer.tool_count > 0), self.usage)
        out.append(StreamDone(self.usage))
        return out


_HANDLERS = {
    "message-start": CohereStreamDecoder._message_start,
    "content-start": CohereStreamDecoder._content_start,
    "content-delta": CohereStreamDecoder._content_delta,
    "tool-plan-delta": CohereStreamDecoder._tool_plan,
    "tool-call-start": CohereStreamDecoder._tool_start,
    "tool-call-delta": CohereStreamDecoder._tool_delta,
    "tool-call-end": CohereStreamDecoder._tool_end,
    "message-end": CohereStreamDecoder._message_end,
    # content-end, citation-start/end, debug and unknown types: nothing to do
    # (docs/vendor-rules.md, "Cohere answers and streams")
}
