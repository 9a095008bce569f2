"""RESP2, the Redis serialization protocol: commands out, replies in, no I/O.

``encode_command(*args)`` is one command as an array of bulk strings. ``RespParser`` is the
incremental reply parser: ``feed(data)`` returns every reply completed by the bytes fed so far,
in order, whatever the split of the input. Replies are Python values:

==================  =======================  ==========================================
first byte          RESP2 type               value
==================  =======================  ==========================================
``+``               simple string            ``str`` (UTF-8, undecodable bytes replaced)
``-``               error                    ``RespError(message)`` (returned, not raised)
``:``               integer                  ``int`` (signed 64-bit)
``$``               bulk string              ``bytes``; ``$-1`` is ``None``
``*``               array                    ``list`` of replies; ``*-1`` is ``None``
==================  =======================  ==========================================

Anything else (a RESP3 type, a malformed length or integer, a line without its CRLF, a
length over the parser's limits, nesting deeper than ``max_depth``) raises
``RespProtocolError``, and the parser stays failed: the stream cannot be resynchronised, so
the connection is to be dropped.

The parser is linear in the bytes fed, however small the feeds: it keeps an offset into one
``bytearray`` (compacted once the consumed prefix is large), remembers how far it has already
searched for the end of a line, and keeps the arrays under construction as a stack, so a
partial reply is never parsed twice.
"""

from __future__ import annotations

import re
from typing import TypeAlias

import attrs

__all__ = ["Reply", "RespError", "RespParser", "RespProtocolError", "encode_command"]


class RespProtocolError(ValueError):
    """The bytes are not a RESP2 reply stream (or exceed the parser's limits)."""


@attrs.frozen
class RespError:
    """An error reply (``-ERR message``): a value the caller inspects, not an exception."""

    message: str

    @property
    def kind(self) -> str:
        """The error's first word by Redis convention (``ERR``, ``WRONGTYPE``, ``MOVED`` …)."""
        return self.message.split(" ", 1)[0]


Reply: TypeAlias = "str | int | bytes | None | RespError | list[Reply]"

_CRLF = b"\r\n"
_LENGTH = re.compile(rb"(?:0|[1-9][0-9]*|-1)")
_INTEGER = re.compile(rb"-?[0-9]{1,19}")
_INT64 = (-(2**63), 2**63 - 1)
#: The longest header line (``$``, ``*``, ``:``) kept while waiting for its CRLF.
_MAX_HEADER = 32
#: Compact the buffer once this much of it has been consumed (and it is over half of it).
_COMPACT_AT = 64 * 1024


def _arg(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value).encode("ascii")
    raise TypeError(f"a RESP command argument is bytes, str or int, not {type(value).__name__}")


def encode_command(*args: bytes | str | int) -> bytes:
    """One command as a RESP2 array of bulk strings: ``*N\\r\\n`` then ``$len\\r\\narg\\r\\n``
    per argument (``str`` as UTF-8, ``int`` as its decimal text; anything else, ``bool``
    included, is a ``TypeError``)."""
    if not args:
        raise ValueError("a RESP command needs at least its name")
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = _arg(arg)
        parts.append(b"$%d\r\n" % len(data))
        parts.append(data)
        parts.append(_CRLF)
    return b"".join(parts)


class RespParser:
    """Incremental RESP2 reply parser; see the module docstring.

    ``max_bulk`` bounds a bulk string's length (and a simple line's), ``max_elements`` an
    array's element count, ``max_depth`` the nesting of arrays (a top-level array is depth 1).
    """

    def __init__(self, *, max_bulk: int = 512 * 1024 * 1024, max_elements: int = 1_000_000,
                 max_depth: int = 32) -> None:
        self.max_bulk = max_bulk
        self.max_elements = max_elements
        self.max_depth = max_depth
        self._buf = bytearray()
        self._pos = 0  # start of the unconsumed bytes
        self._scan = 0  # where the search for the current line's LF resumes
        #: Arrays under construction, innermost last: (elements so far, expected count).
        self._stack: list[tuple[list[Reply], int]] = []
        self._bulk = -1  # the length of the bulk string whose header was taken, else -1
        self._failed: str | None = None

    @property
    def failed(self) -> bool:
        """True once a protocol error was raised: every further ``feed`` raises."""
        return self._failed is not None

    def feed(self, data: bytes | bytearray | memoryview) -> list[Reply]:
        """Every reply completed by the bytes fed so far, in order."""
        if self._failed is not None:
            raise RespProtocolError(f"the parser failed earlier: {self._failed}")
        self._buf += data
        out: list[Reply] = []
        try:
            self._parse(out)
        except RespProtocolError as exc:
            self._failed = str(exc)
            self._buf.clear()
            self._stack.clear()
            self._pos = self._scan = 0
            self._bulk = -1
            raise
        self._compact()
        return out

    # -- internals -------------------------------------------------------------------------

    def _compact(self) -> None:
        pos = self._pos
        if pos == len(self._buf):
            self._buf.clear()
            self._pos = self._scan = 0
        elif pos >= _COMPACT_AT and pos * 2 >= len(self._buf):
            del self._buf[:pos]
            self._pos = 0
            self._scan -= pos

    def _line(self) -> bytes | None:
        """The line at ``_pos`` (without its CRLF; consumed), or None while it is incomplete."""
        buf, pos = self._buf, self._pos
        if pos == len(buf):
            return None
        start = max(self._scan, pos)
        lf = buf.find(b"\n", start)
        if lf < 0:
            # a simple string or error may be long; a length or an integer never is
            limit = self.max_bulk + 2 if buf[pos] in b"+-" else _MAX_HEADER
            if len(buf) - pos > limit:
                raise RespProtocolError("a RESP line is longer than the limit")
            self._scan = len(buf)
            return None
        if lf == pos or buf[lf - 1] != 13:  # 13 is CR
            raise RespProtocolError("a RESP line ends in LF without CR")
        if buf.find(b"\r", pos, lf - 1) >= 0:
            raise RespProtocolError("a RESP line holds a CR that is not its end")
        if lf - 1 - pos > self.max_bulk + 1:
            raise RespProtocolError("a RESP line is longer than the limit")
        line = bytes(buf[pos:lf - 1])
        self._pos = self._scan = lf + 1
        return line

    @staticmethod
    def _length(text: bytes, what: str) -> int:
        if _LENGTH.fullmatch(text) is None:
            raise RespProtocolError(f"malformed RESP {what} length {text[:32]!r}")
        return int(text)

    def _parse(self, out: list[Reply]) -> None:
        buf = self._buf
        value: Reply
        while True:
            if self._bulk >= 0:  # a bulk header was taken: wait for its payload and CRLF
                start, n = self._pos, self._bulk
                if len(buf) - start < n + 2:
                    return
                if buf[start + n:start + n + 2] != _CRLF:
                    raise RespProtocolError("RESP bulk string not followed by CRLF")
                value = bytes(buf[start:start + n])
                self._pos = self._scan = start + n + 2
                self._bulk = -1
                self._complete(value, out)
                continue
            line = self._line()
            if line is None:
                return
            tag, rest = line[:1], line[1:]
            if tag == b"$":
                n = self._length(rest, "bulk")
                if n > self.max_bulk:
                    raise RespProtocolError(f"RESP bulk string of {n} bytes is over the limit")
                if n >= 0:
                    self._bulk = n
                    continue
                value = None
            elif tag == b"+":
                value = rest.decode("utf-8", "replace")
            elif tag == b"-":
                value = RespError(rest.decode("utf-8", "replace"))
            elif tag == b":":
                if _INTEGER.fullmatch(rest) is None:
                    raise RespProtocolError(f"malformed RESP integer {rest[:32]!r}")
                value = int(rest)
                if not _INT64[0] <= value <= _INT64[1]:
                    raise RespProtocolError("RESP integer out of the signed 64-bit range")
            elif tag == b"*":
                n = self._length(rest, "array")
                if n > self.max_elements:
                    raise RespProtocolError(f"RESP array of {n} elements is over the limit")
                if len(self._stack) >= self.max_depth:
                    raise RespProtocolError("RESP arrays nested deeper than the limit")
                if n > 0:
                    self._stack.append(([], n))
                    continue
                value = None if n < 0 else []
            else:
                raise RespProtocolError(f"unknown RESP type byte {tag!r}")
            self._complete(value, out)

    def _complete(self, value: Reply, out: list[Reply]) -> None:
        """Append a finished value to the innermost open array, closing arrays it fills."""
        stack = self._stack
        while stack:
            items, n = stack[-1]
            items.append(value)
            if len(items) < n:
                return
            stack.pop()
            value = items
        out.append(value)
