"""The helpers every vendor translator shares: request checks, tool-call ids, data URLs and
media sniffing, usage counts, error envelopes.

Each was once written in every vendor module, and the copies had drifted apart.
Where a drift changes what a client sees (an id, an accepted input, an error), the helper
takes the difference as a parameter and its docstring names which vendor passes what, so
every vendor's output stays byte for byte what it was. Nothing here keeps state; nothing here
is called per stream chunk except the id helper (once per tool call).

Request checks (the OpenAI body is JSON: a ``bool`` is never a number):

* ``bad(message, code)`` — the ``ClientError`` (400) a translator raises;
* ``as_str`` / ``as_dict`` / ``as_list`` — the value if it has that JSON type, else empty;
* ``typed(value, types, bools=True)`` — ``isinstance`` where a bool counts only as a bool;
* ``positive_int(v)`` → int > 0 or 0; ``count(v)`` → int ≥ 0 or None.

Ids (docs/contracts.md, TC-4, TC-5): ``ID_OK``, ``ID_BAD``, ``ALNUM``, ``ALNUM_LOWER_FIRST``,
``new_call_id``, ``call_id``, ``clean_id``.

Media (REQ-4): ``sniff`` (the image type from the magic bytes), ``b64decode_loose``,
``data_url`` → ``(media type, bytes)``.

Errors (docs/contracts.md, "Error status mapping"): ``STATUS_TYPES``,
``STATUS_TYPES_NO_409``, ``status_type``, ``retry_after``, ``status_error``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any
from urllib.parse import unquote_to_bytes

from ..errors import ClientError, UpstreamError
from .base import STATUS_TYPES, ChatContext, client_status_for, retry_after

__all__ = ["bad", "as_str", "as_dict", "as_list", "typed", "positive_int", "count",
           "ID_OK", "ID_BAD", "ALNUM", "ALNUM_LOWER_FIRST", "new_call_id", "call_id",
           "clean_id", "sniff", "b64decode_loose", "data_url", "STATUS_TYPES",
           "STATUS_TYPES_NO_409", "status_type", "retry_after", "status_error"]


# -- request checks ----------------------------------------------------------------------------

def bad(message: str, code: str = "invalid_request") -> ClientError:
    """The 400 a translator raises for a request its vendor cannot take."""
    return ClientError(message, code=code)


def as_str(v: Any) -> str:
    """``v`` if it is a string, else ``""``."""
    return v if isinstance(v, str) else ""


def as_dict(v: Any) -> dict[str, Any]:
    """``v`` if it is an object, else ``{}`` (a fresh one: callers may fill it)."""
    return v if isinstance(v, dict) else {}


def as_list(v: Any) -> list[Any]:
    """``v`` if it is a list, else ``[]``."""
    return v if isinstance(v, list) else []


def typed(value: Any, types: tuple[type, ...], *, bools: bool = True) -> bool:
    """``isinstance(value, types)``, except that a JSON ``true``/``false`` is not a number.

    With ``bools=True`` a bool counts when ``bool`` is one of ``types`` (Cohere's
    ``logprobs``). Drift kept: Gemini's copy never counted a bool, not even for ``(bool,)``,
    so its schema cleaner drops a ``nullable: true`` keyword (nullable comes from the type
    list instead); Gemini passes ``bools=False``. Cloudflare never asks for ``bool``, so either
    way is the same for it.
    """
    if bools and bool in types:
        return isinstance(value, bool)
    return isinstance(value, types) and not isinstance(value, bool)


def positive_int(v: Any) -> int:
    """An integer count > 0, else 0 (a bool, a float, a negative or a missing value)."""
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0


def count(v: Any) -> int | None:
    """An integer count ≥ 0, else None (so that a fallback can tell 0 from missing)."""
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


# -- tool-call ids (TC-4, TC-5) ----------------------------------------------------------------

#: an id every vendor accepts and keeps (TC-4)
ID_OK = re.compile(r"[A-Za-z0-9_-]{1,40}\Z")
#: the characters a history id must lose (TC-5)
ID_BAD = re.compile(r"[^A-Za-z0-9_-]")
#: the alphabet of generated ids: Gemini, Cohere, Cloudflare
ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
#: the same letters lower case first: Anthropic (and so Bedrock and Vertex Claude)
ALNUM_LOWER_FIRST = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def new_call_id(ctx: ChatContext, n: int, *, sep: str = "/", alphabet: str = ALNUM) -> str:
    """``call_`` + 24 characters drawn from ``ctx.entropy`` (TC-4); without an entropy source,
    24 hex digits of ``sha256(f"{ctx.response_id}{sep}{n}")``.

    The copies drifted and clients hold ids made by each, so both differences are kept:
    ``sep`` is ``"/"`` for Anthropic, Cohere and Cloudflare and ``":"`` for Gemini;
    ``alphabet`` (which character a random draw picks) is ``ALNUM`` for Gemini, Cohere and
    Cloudflare and ``ALNUM_LOWER_FIRST`` for Anthropic.
    """
    if ctx.entropy is not None:
        choice = ctx.entropy.choice
        return "call_" + "".join(choice(alphabet) for _ in range(24))
    return "call_" + hashlib.sha256(f"{ctx.response_id}{sep}{n}".encode()).hexdigest()[:24]


def call_id(ctx: ChatContext, vendor_id: Any, n: int, *, sep: str = "/",
            alphabet: str = ALNUM) -> str:
    """TC-4: the vendor's id when it fits ``[A-Za-z0-9_-]{1,40}``, else ``new_call_id`` (the
    ``n``-th call of the response; ``sep``/``alphabet`` as there)."""
    if isinstance(vendor_id, str) and ID_OK.match(vendor_id):
        return vendor_id
    return new_call_id(ctx, n, sep=sep, alphabet=alphabet)


def clean_id(vid: str, used: set[str], *, limit: int, errors: str = "strict") -> str:
    """TC-5: a history id the vendor would reject, cleaned (``[^A-Za-z0-9_-]`` → ``_``, cut
    to ``limit``, ``"_"`` when nothing is left); on a clash with ``used`` the cleaned form is
    cut to ``limit - 9`` and gets ``_`` + 8 hex digits of the id's SHA-256. The result is
    added to ``used``.

    Drift kept: Anthropic uses ``limit=64`` and encodes the id strictly (``errors="strict"``:
    a lone surrogate raises ``UnicodeEncodeError``, as it always did); Cohere uses
    ``limit=40`` and ``errors="replace"``.
    """
    clean = ID_BAD.sub("_", vid)[:limit] or "_"
    if clean in used:
        digest = hashlib.sha256(vid.encode("utf-8", errors)).hexdigest()[:8]
        clean = clean[:limit - 9] + "_" + digest
    used.add(clean)
    return clean


# -- media (REQ-4) -----------------------------------------------------------------------------

def sniff(data: bytes) -> str | None:
    """The image type its magic bytes say (png, jpeg, gif, webp), else None."""
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"GIF8"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


_SPACE = re.compile(r"\s+")


def b64decode_loose(text: str, *, urlsafe: bool = True, strip_padding: bool = False) -> bytes:
    """Base64 as clients write it: whitespace anywhere, padding missing; anything else is
    ``binascii.Error``/``ValueError``. ``urlsafe`` also reads ``-``/``_`` as ``+``/``/``
    (Gemini; Anthropic passes False); ``strip_padding`` drops the ``=`` given before padding
    again, so excess ``=`` is accepted (Anthropic; Gemini passes False)."""
    raw = _SPACE.sub("", text)
    if strip_padding:
        raw = raw.rstrip("=")
    if urlsafe:
        raw = raw.replace("-", "+").replace("_", "/")
    return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)


def data_url(url: str, where: str, *, flavour: str) -> tuple[str, bytes]:
    """``data:<mime>[;params][;base64],<payload>`` → ``(media type, bytes)`` (REQ-4);
    ``ClientError`` naming ``where`` when it cannot be read.

    The two readers had drifted; ``flavour`` keeps each one exactly:

    * ``"anthropic"``: base64 only when it is the *last* parameter; the payload is always
      percent-decoded (as Latin-1 text) before base64, excess ``=`` is accepted, ``-``/``_``
      are not base64; the media type is returned as written (the caller normalises it and
      sniffs); errors have the code ``invalid_image``;
    * ``"gemini"``: base64 when it is *any* parameter after the type; the payload is
      percent-decoded only when it holds a ``%``; the URL-safe alphabet is read too; the media
      type is stripped and lower-cased, sniffed when empty or ``application/octet-stream``
      (an image by its magic bytes, a PDF by ``%PDF-``), and must hold a ``/``; errors have the code ``invalid_request``.
    """
    anthropic = flavour == "anthropic"
    code = "invalid_image" if anthropic else "invalid_request"
    head, comma, payload = url[5:].partition(",")
    if not comma:
        raise bad(f"{where}: malformed data URL", code)
    if anthropic:
        params = head.split(";")
        is_b64 = params[-1].strip().lower() == "base64"
    else:
        params = [p.strip().lower() for p in head.split(";")]
        is_b64 = "base64" in params[1:]
    if is_b64:
        text = unquote_to_bytes(payload).decode("latin-1") \
            if anthropic or "%" in payload else payload
        try:
            data = b64decode_loose(text, urlsafe=not anthropic, strip_padding=anthropic)
        except (binascii.Error, ValueError):
            raise bad(f"{where}: data URL payload is not valid base64" if anthropic
                      else f"{where}: invalid base64 data", code) from None
    else:
        data = unquote_to_bytes(payload)
    media = params[0]
    if anthropic:
        return media, data
    if not media or media == "application/octet-stream":
        media = sniff(data) or ("application/pdf" if data.startswith(b"%PDF-") else "")
    if "/" not in media:
        raise bad(f"{where}: cannot tell the media type of the data URL")
    return media, data


# -- error envelopes (docs/contracts.md, "Error status mapping") --------------------------------

#: ``STATUS_TYPES`` (from ``base``: HTTP status → OpenAI ``type``, consulted before the vendor's
#: own type) without 409, as Gemini's and Bedrock's copies have it (drift kept: a 409 from them
#: takes the vendor's own type, else ``upstream_error``)
STATUS_TYPES_NO_409: dict[int, str] = {k: v for k, v in STATUS_TYPES.items() if k != 409}


def status_type(status: int, vendor_type: str | None = None,
                table: dict[int, str] = STATUS_TYPES) -> str:
    """The OpenAI ``type`` of an upstream error: the status's (``table``), else
    ``server_error`` for ≥ 500, else the type the vendor named, else ``upstream_error``."""
    return table.get(status) or ("server_error" if status >= 500 else None) \
        or vendor_type or "upstream_error"


def status_error(message: str, status: int, etype: str, code: Any,
                 headers: tuple[tuple[str, str], ...] = ()) -> UpstreamError:
    """The ``UpstreamError`` of a vendor error with HTTP ``status``: the client status by the
    one table (``client_status_for``), ``headers`` the ones to pass on (``retry_after``)."""
    return UpstreamError(message, kind="status", upstream_status=status,
                         status=client_status_for(status), type=etype, code=code,
                         headers=headers)
