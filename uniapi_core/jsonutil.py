"""JSON in and out, with the defences a gateway needs.

``parse_request_json`` is the single door for client JSON: a linear pre-scan refuses nesting
deeper than ``MAX_DEPTH`` before ``json.loads`` can recurse, ``NaN``/``Infinity`` and integers
too long to convert are refused, and every failure is a ``ClientError`` (400), never a
traceback. ``dumps`` is the single encoder for what we write: compact, UTF-8, with U+2028 and
U+2029 escaped (S-8, docs/contracts.md) so naive line splitters downstream do not break.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from .errors import ClientError

__all__ = ["MAX_DEPTH", "parse_request_json", "loads_strict", "loads_upstream", "dumps",
           "nesting_depth"]

MAX_DEPTH = 64

# A JSON string (with escapes) or one bracket. Strings are matched whole so brackets inside
# them are skipped; the regex engine does the scanning in C, so the pre-scan stays linear.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.S)
_OPEN = frozenset(b"[{")


def nesting_depth(data: bytes, limit: int = MAX_DEPTH) -> int:
    """Maximum bracket depth of ``data`` (strings skipped), scanning stops past ``limit``."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return 0  # too few brackets to exceed the limit: skip the scan
    depth = deepest = 0
    for m in _TOKENS.finditer(data):
        c = m.group()
        if len(c) != 1:
            continue
        if c[0] in _OPEN:
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        else:
            depth -= 1
    return deepest


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (_INF, -_INF):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


_INF = float("inf")

# One decoder for strict parsing, built once: ``json.loads`` with hooks builds a new decoder
# (and scanner) on every call. Its ``scan_once`` parses one value starting at an index.
# typeshed does not declare ``scan_once`` (``JSONDecoder.__init__`` sets it): hence the ignore.
_STRICT_SCAN: Callable[[str, int], tuple[Any, int]]
_STRICT_SCAN = json.JSONDecoder(parse_constant=_reject_constant,  # type: ignore[attr-defined]
                                parse_float=_finite_float).scan_once


def parse_request_json(body: bytes) -> Any:
    """Parse a client body; any problem is a ``ClientError`` with status 400."""
    if not body.strip():
        raise ClientError("request body is empty; expected a JSON object", code="invalid_json")
    if nesting_depth(body) > MAX_DEPTH:
        raise ClientError(f"JSON nested deeper than {MAX_DEPTH} levels", code="invalid_json")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ClientError(f"request body is not valid UTF-8 (byte {exc.start})",
                          code="invalid_json") from None
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise ClientError("JSON nested too deeply", code="invalid_json") from None
    except ValueError as exc:  # JSONDecodeError, NaN, int too long to convert
        raise ClientError(f"request body is not valid JSON: {exc}", code="invalid_json") from None


def loads_strict(text: bytes | str) -> Any:
    """JSON that can be written back out: no NaN/Infinity, no overflowing floats, nesting at
    most ``MAX_DEPTH``; any problem is a ``ValueError``. The one parser the vendor
    translators use for untrusted JSON (upstream bodies and events, tool arguments)."""
    if isinstance(text, str):
        # the bracket count works on text as well; encode only when a real scan is needed
        if text.count("[") + text.count("{") > MAX_DEPTH and \
                nesting_depth(text.encode("utf-8", "surrogatepass")) > MAX_DEPTH:
            raise ValueError("JSON nested too deeply")
        try:
            obj, end = _STRICT_SCAN(text, 0)
        except (StopIteration, ValueError, RecursionError):
            pass  # let json.loads give its own error (or succeed after leading whitespace)
        else:
            if end == len(text):  # the whole text was one value: what json.loads returns
                return obj
    elif nesting_depth(text) > MAX_DEPTH:
        raise ValueError("JSON nested too deeply")
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def loads_upstream(body: bytes | str) -> Any:
    """Parse upstream JSON; raises ``ValueError`` (callers turn it into an UpstreamError)."""
    try:
        return json.loads(body)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


_ASCII_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def _one_shot(encoder: json.JSONEncoder) -> Any:
    """``encoder.encode`` without its per-call set-up: ``JSONEncoder.iterencode`` builds a C
    encoder for every call; this builds it once (with the same settings, so the output is
    the same text). Stateless between calls: no circular-reference markers are kept, so a
    circular structure is a ``RecursionError`` (what we encode comes from parsed JSON or is
    built here, never circular). ``None`` when the C accelerator is missing."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has it
        return None
    c = make(None, encoder.default, json.encoder.encode_basestring, encoder.indent,
             encoder.key_separator, encoder.item_separator, encoder.sort_keys,
             encoder.skipkeys, encoder.allow_nan)
    strings = json.encoder.encode_basestring

    def encode(obj: Any) -> str:
        if isinstance(obj, str):
            return strings(obj)
        return "".join(c(obj, 0))
    return encode


_ENCODE = _one_shot(_ENCODER) or _ENCODER.encode


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON with U+2028/U+2029 escaped. Text holding lone surrogates (valid in
    JSON escapes, not in UTF-8) is written with ASCII escapes instead of failing."""
    text = _ENCODE(obj)
    if "\u2028" in text or "\u2029" in text:
        text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _ASCII_ENCODER.encode(obj).encode("ascii")
