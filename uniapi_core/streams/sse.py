"""Server-sent events: an incremental decoder (bytes → :class:`SSEEvent`) and the encoder.

Theory of operation
-------------------
Decoding is two layers, each pure and incremental:

1. :class:`~uniapi_core.streams.lines.LineSplitter` cuts the byte stream into complete lines
   (``\\n``, ``\\r\\n``, lone ``\\r``; a CRLF split across feeds is one terminator: SSE-1,
   SSE-2, SSE-3). Bytes are never decoded before a line is complete, so a multi-byte UTF-8
   character split across feeds is harmless.
2. :class:`SSEDecoder` interprets each complete line, strictly in stream order
   (docs/contracts.md, "SSE framing"):

   * the line is decoded as strict UTF-8, else ``DecodeError("invalid_utf8")``; one leading
     U+FEFF is stripped from the very first line of the stream only (SSE-4);
   * ``:…`` is a comment: counted in :attr:`SSEDecoder.comments`, never dispatched (SSE-5);
   * ``field:value`` drops exactly one leading space from ``value``; a line without ``:`` is a
     field with an empty value; ``data`` lines accumulate, ``event`` and ``id`` are recorded,
     ``retry`` and unknown fields are ignored; nothing is ``.strip()``-ed (SSE-6, SSE-12);
   * a blank line dispatches the pending event if it has data or an event name, the data
     lines joined with ``\\n``; an event with a name and no data has ``data=""`` (SSE-7, SSE-8);
   * at :meth:`SSEDecoder.close` (EOF) a pending event whose lines were all complete is
     dispatched (SSE-10, lenient); bytes after the last terminator are a truncation,
     ``DecodeError("truncated")``, unless they are only whitespace.

``[DONE]`` (SSE-9) is *not* special here: it is an ordinary ``data`` event, and the vendor
decoders decide what it means. :data:`DONE` is its wire form, for the encoding side.

Memory is bounded (DEC-3): one line may hold at most ``max_event_size`` bytes
(``DecodeError("line_too_long")``), and the ``data`` lines of one event at most
``max_event_size`` bytes counted as received, each terminator as one byte
(``DecodeError("event_too_large")``). Errors surface at the same stream position whatever the
feed boundaries, so the events returned before an error, and the error's kind, depend only on
the bytes (DEC-1). The only exception that escapes is ``DecodeError`` (DEC-2); after one, the
decoder stays failed and raises an error of the same kind on every later call.
"""

from __future__ import annotations

import re
from functools import partial
from itertools import repeat
from typing import NamedTuple

from ..errors import DecodeError
from .lines import LineSplitter

__all__ = ["SSEEvent", "SSEDecoder", "encode_event", "DONE"]

#: The OpenAI-family stream terminator, as sent to clients (SSE-9).
DONE = b"data: [DONE]\n\n"

_BOM = b"\xef\xbb\xbf"  # U+FEFF in UTF-8


class SSEEvent(NamedTuple):
    """One dispatched server-sent event.

    ``data`` is the event's ``data`` lines joined with ``\\n`` (``""`` for an event that had
    only an ``event:`` line); ``event`` the last ``event:`` value, ``id`` the last ``id:``
    value seen in this event (``None`` when absent; ``id`` is informational only, SSE-12).
    Immutable; a named tuple because a stream makes one per event and attrs' frozen
    ``__init__`` costs several times more.
    """

    data: str
    event: str | None = None
    id: str | None = None


# The events of a stretch of lines with nothing pending (see SSEDecoder._process): each one an
# optional "event:" line and one "data:" line, then a blank line (SSE-6: at most one space
# dropped after ":"). ``split`` gives [between, event value or None, data value, between…]:
# when every "between" is empty, the stretch is nothing but such events.
_SIMPLE_EVENTS = re.compile(r"(?:event: ?([^\n]*)\n)?data: ?([^\n]*)\n\n").split
_make_event = partial(tuple.__new__, SSEEvent)


class SSEDecoder:
    """Incremental, split-invariant SSE decoder (SSE-1 … SSE-10, SSE-12 in docs/contracts.md).

    ``feed(bytes)`` returns the events completed so far; ``close()`` signals EOF and returns
    the last, unterminated event if there is one. Any framing problem raises ``DecodeError``
    with ``kind`` in ``invalid_utf8``, ``line_too_long``, ``event_too_large``, ``truncated``,
    ``closed``.
    """

    __slots__ = ("_lines", "_max", "_data", "_size", "_event", "_id", "_first", "_closed",
                 "_error", "comments")

    def __init__(self, max_event_size: int = 8 * 1024 * 1024) -> None:
        if max_event_size < 1:
            raise ValueError("max_event_size must be >= 1")
        self._lines = LineSplitter(max_line=max_event_size)
        self._max = max_event_size
        self._data: list[str] = []  # data lines of the pending event
        self._size = 0  # their size as received (line bytes + 1 per terminator)
        self._event: str | None = None
        self._id: str | None = None
        self._first = True  # no line seen yet: strip a BOM from the next one (SSE-4)
        self._closed = False
        self._error: DecodeError | None = None
        #: comment lines seen so far (keep-alives, SSE-5)
        self.comments = 0

    def feed(self, data: bytes) -> list[SSEEvent]:
        """Consume ``data``; return the events it completes, in order. A ``DecodeError`` is
        raised once no complete event precedes it (possibly on the next call)."""
        self._check_usable()
        lines, error = self._lines.feed_lines(data)
        out: list[SSEEvent] = []
        if lines:
            if self._first:
                self._first = False
                if lines[0].startswith(_BOM):
                    lines[0] = lines[0][3:]
            try:
                self._process(lines, out)
            except DecodeError as exc:
                error = exc
        if error is not None:
            # events completed before the error come out now and the error on the next call,
            # so that how the input was cut never changes what comes out (DEC-1)
            self._error = error
            if not out:
                raise error
        return out

    def close(self) -> list[SSEEvent]:
        """End of input (EOF): return the pending event, if its lines were all complete.

        Raises ``DecodeError("truncated")`` when the input ended inside a line that is not
        just whitespace (SSE-10), ``DecodeError("closed")`` when called twice.
        """
        self._check_usable()
        self._closed = True
        tail = self._lines.close()
        if tail is not None:
            if self._first and tail.startswith(_BOM):
                tail = tail[3:]
            if tail.strip():
                self._error = DecodeError(
                    "truncated",
                    f"the stream ended inside a line ({len(tail)} bytes after the last "
                    "line terminator)")
                raise self._error
        out: list[SSEEvent] = []
        if self._data or self._event is not None:
            out.append(SSEEvent("\n".join(self._data), self._event, self._id))
        self._data = []
        self._event = self._id = None
        return out

    def _check_usable(self) -> None:
        if self._closed:
            raise DecodeError("closed", "the decoder was already closed")
        if self._error is not None:
            raise DecodeError(self._error.kind, self._error.detail)

    def _process(self, lines: list[bytes], out: list[SSEEvent]) -> None:
        """Interpret complete lines in order, appending dispatched events to ``out``.

        The lines up to the first blank line (they may continue the event pending from the
        previous feed) and after the last one go through :meth:`_process_lines`, line by
        line. Between them every event starts and ends inside this feed with nothing
        pending, so that stretch is decoded at once and cut at blank lines with C-level
        ``str`` methods (:meth:`_process_events`); anything unusual there falls back to the
        line-by-line reading, so the events and errors are the same either way.
        """
        if len(lines) < 8 or b"" not in lines:
            self._process_lines(lines, out)
            return
        first = lines.index(b"")
        last = len(lines) - 1 - lines[::-1].index(b"")
        self._process_lines(lines[:first + 1], out)
        if last > first + 1:
            self._process_events(lines[first + 1:last + 1], out)
        if last + 1 < len(lines):
            self._process_lines(lines[last + 1:], out)

    def _process_events(self, lines: list[bytes], out: list[SSEEvent]) -> None:
        """Lines that start with nothing pending and end with a blank line (see _process)."""
        raw = b"\n".join(lines)
        if len(raw) >= self._max:  # a data line might reach the size limit: count exactly
            self._process_lines(lines, out)
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:  # the line-by-line reading says where
            self._process_lines(lines, out)
            return
        parts = _SIMPLE_EVENTS(text + "\n")  # each line with its "\n", the last one blank
        if not any(parts[::3]):  # the usual stream: one regex pass, events made in C
            out += map(_make_event, zip(parts[2::3], parts[1::3], repeat(None)))
            return
        append = out.append
        for block in text.split("\n\n"):
            # a maximal run of non-blank lines, each run dispatched by the blank line after it;
            # the "\n" left at either end are blank lines with nothing pending (no-ops)
            if block[:1] == "\n" or block[-1:] == "\n":
                block = block.strip("\n")
                if not block:
                    continue
            if block[:5] == "data:":
                if "\n" not in block:  # one data line: SSE-6 drops one space
                    append(SSEEvent(block[6:] if block[5:6] == " " else block[5:]))
                    continue
            elif block[:6] == "event:":
                head, sep, rest = block.partition("\n")
                if rest[:5] == "data:" and "\n" not in rest:
                    append(SSEEvent(rest[6:] if rest[5:6] == " " else rest[5:],
                                    head[7:] if head[6:7] == " " else head[6:]))
                    continue
            self._process_lines([line.encode("utf-8") for line in block.split("\n")] + [b""],
                                out)

    def _process_lines(self, lines: list[bytes], out: list[SSEEvent]) -> None:
        """Interpret complete lines in order, one by one (the general reading).

        The pending event lives in locals for speed and is written back at the end; on an
        error the decoder is failed for good, so the write-back does not matter then.
        """
        data = self._data
        size = self._size
        event = self._event
        id_ = self._id
        limit = self._max
        for raw in lines:
            if not raw:  # blank line: dispatch (SSE-8)
                if data or event is not None:
                    out.append(SSEEvent("\n".join(data), event, id_))
                    data = []
                    size = 0
                event = id_ = None
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:  # SSE-4
                raise DecodeError(
                    "invalid_utf8",
                    f"invalid UTF-8 at byte {exc.start} of a {len(raw)}-byte line") from None
            if line[0] == ":":  # SSE-5 (counted at once: the count never depends on the cuts)
                self.comments += 1
                continue
            name, _, value = line.partition(":")
            if value and value[0] == " ":  # SSE-6: exactly one optional space
                value = value[1:]
            if name == "data":
                size += len(raw) + 1
                if size > limit:
                    raise DecodeError(
                        "event_too_large",
                        f"an event's data lines exceed the {limit}-byte limit")
                data.append(value)
            elif name == "event":
                event = value
            elif name == "id":
                id_ = value
            # "retry" and unknown fields are ignored (SSE-6, SSE-12)
        self._data = data
        self._size = size
        self._event = event
        self._id = id_


def encode_event(data: str | bytes, event: str | None = None) -> bytes:
    """The SSE wire form of one event: ``event: X`` (if given), ``data: …`` lines, blank line.

    ``data`` is cut into one ``data:`` line per line (at ``\\n``, ``\\r\\n`` or lone ``\\r``), so
    :class:`SSEDecoder` gives back ``data`` with its line terminators normalised to ``\\n``.
    ``bytes`` must be UTF-8 and are never decoded (one-line data is copied straight through).
    An ``event`` name containing a line terminator is a ``ValueError``.
    """
    body = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if b"\r" in body:
        body = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if b"\n" in body:
        body = body.replace(b"\n", b"\ndata: ")
    if event is None:
        return b"data: " + body + b"\n\n"
    if "\n" in event or "\r" in event:
        raise ValueError(f"an SSE event name cannot contain a line terminator: {event!r}")
    return b"event: " + event.encode("utf-8") + b"\ndata: " + body + b"\n\n"
