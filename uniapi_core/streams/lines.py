"""Incremental byte line splitter: the bottom layer of every SSE decoder.

Theory of operation
-------------------
Bytes arrive in arbitrary pieces. A line ends at ``\\n``, ``\\r\\n`` or a lone ``\\r``
(SSE-1, docs/contracts.md); nothing else ends a line (SSE-3: no ``splitlines``). The splitter
keeps exactly two pieces of state between feeds:

* ``_buf``: the pending partial line, i.e. the bytes after the last terminator. Only *new*
  bytes are ever searched for terminators; the pending bytes were searched when they arrived
  and are only appended to (a ``bytearray``, so a long line fed in tiny pieces costs O(n), not
  O(n²)). Total work is O(total bytes) however the input is cut (DEC-2).
* ``_cr``: "the last byte consumed was a ``\\r`` terminator". A ``\\n`` at the start of the next
  feed is then the second half of a CRLF and is dropped, so a CRLF split across two feeds is
  one terminator, not two (SSE-2).

Within one feed the work is done by C-level ``bytes`` methods: when the piece holds no ``\\r``
(the usual case) it is just ``split(b"\\n")``; when every ``\\r`` is part of a CRLF it is the
same split after dropping the ``\\r`` bytes (checked by joining the lines with CRLF again);
otherwise CRLF and then lone CR are rewritten to LF first. Rewriting *inside one piece* is
safe because a CRLF pair can never straddle the rewrite: the only pair that can straddle two
pieces is handled by ``_cr``.

A line (complete, or still pending) longer than ``max_line`` bytes is refused with
``DecodeError("line_too_long")`` (DEC-3). Complete lines are checked too, so the outcome does
not depend on how the input was cut (DEC-1). After an error the splitter stays failed; after
``close()`` it accepts nothing more.
"""

from __future__ import annotations

from ..errors import DecodeError

__all__ = ["LineSplitter"]

_LF = 0x0A
_CR = 0x0D


class LineSplitter:
    """Split a byte stream into lines, incrementally, on ``\\n``, ``\\r\\n`` and lone ``\\r``.

    ``feed(data)`` returns the lines completed by ``data`` (without their terminators);
    ``close()`` returns the bytes after the last terminator, if any. Lines longer than
    ``max_line`` bytes raise ``DecodeError("line_too_long")``.
    """

    __slots__ = ("_max", "_buf", "_cr", "_closed", "_error")

    def __init__(self, max_line: int = 8 * 1024 * 1024) -> None:
        if max_line < 0:
            raise ValueError("max_line must be >= 0")
        self._max = max_line
        self._buf = bytearray()
        self._cr = False
        self._closed = False
        self._error: DecodeError | None = None

    @property
    def pending(self) -> int:
        """Number of bytes in the pending partial line."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Consume ``data``; return the lines it completes, without terminators.

        Raises ``DecodeError("line_too_long")`` if a line exceeds ``max_line`` (the lines
        completed before it in this call are then lost: use :meth:`feed_lines` to keep them)
        and ``DecodeError("closed")`` after :meth:`close`.
        """
        lines, error = self.feed_lines(data)
        if error is not None:
            raise error
        return lines

    def feed_lines(self, data: bytes) -> tuple[list[bytes], DecodeError | None]:
        """Like :meth:`feed`, but return ``(lines, error)`` instead of raising.

        ``lines`` are the lines completed *before* the failure point, so a consumer can handle
        them strictly in stream order and only then raise ``error``. That keeps the first
        error reported the same whatever the feed boundaries (DEC-1).
        """
        if self._closed:
            return [], DecodeError("closed", "feed() after close()")
        if self._error is not None:
            return [], DecodeError(self._error.kind, self._error.detail)
        if type(data) is not bytes:
            data = bytes(data)
        if not data:
            return [], None
        if self._cr:
            # SSE-2: a CR that ended the previous feed and an LF that starts this one are one
            # terminator.
            self._cr = False
            if data[0] == _LF:
                data = data[1:]
                if not data:
                    return [], None
        if b"\r" in data:
            # CRLF framing throughout (Gemini's): dropping every CR leaves the lines, which
            # joined with CRLF give the piece back; a lone CR or one at the end does not
            lines = data.replace(b"\r", b"").split(b"\n")
            if b"\r\n".join(lines) != data:
                self._cr = data[-1] == _CR
                lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        else:
            lines = data.split(b"\n")
        tail = lines.pop()
        buf = self._buf
        if lines:
            if buf:
                buf += lines[0]
                lines[0] = bytes(buf)
                buf.clear()
            if max(map(len, lines)) > self._max:
                for i, line in enumerate(lines):
                    if len(line) > self._max:
                        return lines[:i], self._fail(len(line))
        buf += tail
        if len(buf) > self._max:
            return lines, self._fail(len(buf))
        return lines, None

    def close(self) -> bytes | None:
        """End of input: return the pending partial line, or ``None`` when there is none.

        Raises ``DecodeError("closed")`` if already closed, or the earlier error again if the
        splitter had failed.
        """
        if self._closed:
            raise DecodeError("closed", "close() after close()")
        self._closed = True
        if self._error is not None:
            raise DecodeError(self._error.kind, self._error.detail)
        tail = bytes(self._buf) if self._buf else None
        self._buf = bytearray()
        return tail

    def _fail(self, size: int) -> DecodeError:
        self._buf = bytearray()  # release the memory; the splitter is unusable from here on
        self._error = DecodeError(
            "line_too_long", f"a line of at least {size} bytes exceeds the {self._max}-byte limit")
        return self._error
