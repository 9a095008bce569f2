"""Incremental decoder for the AWS binary event stream (``application/vnd.amazon.eventstream``).

Theory of operation
-------------------
A stream is a sequence of frames (docs/vendor-rules.md; big-endian, CRC-32 = zlib's)::

    u32 total_length | u32 headers_length | u32 prelude_crc | headers | payload | u32 message_crc

``EventStreamDecoder.feed`` appends bytes to one buffer and decodes every complete frame in it.
The buffer is consumed through a read offset and compacted once per call, so no byte is
scanned twice however the input is cut (no quadratic re-parsing, DEC-2), and nothing is ever
resynchronised: a bad frame is an error, never skipped (BR-S3).

* BR-S1: the 12-byte prelude is checked *before* ``total_length`` is trusted: prelude CRC,
  then ``16 <= total_length <= max_frame`` and ``headers_length <= total_length - 16``, so a
  corrupt length cannot make the decoder wait for gigabytes (DEC-3).
* BR-S2: a frame (prelude included) may be split anywhere across ``feed`` calls.
* BR-S3: the message CRC covers every byte before it; a mismatch is ``DecodeError``.
* BR-S4: headers are ``name_len:u8 | name | type:u8 | value``; the ten value types are decoded
  like botocore does (bool, int8/16/32/64, bytes, UTF-8 string, timestamp as int milliseconds,
  uuid as 16 bytes); an unknown type, a truncated header, invalid UTF-8 or a repeated name
  is ``DecodeError`` (botocore refuses duplicates too).
* BR-S7: ``close`` with a partial frame buffered raises ``DecodeError("truncated")``.

Errors follow the convention of the SSE-based decoders (``anthropic.py``): a call that decodes
some frames and then meets a bad one returns the good frames and raises the error on the next
call (and on every call after it), so the messages and the error are the same however the bytes
were split (DEC-1). ``feed`` after ``close`` is ``DecodeError("closed")``.
"""

from __future__ import annotations

import struct
import zlib
from typing import Union

import attrs

from ..errors import DecodeError

__all__ = ["MAX_FRAME", "MAX_HEADERS", "HeaderValue", "Message", "EventStreamDecoder",
           "decode_headers"]

MAX_FRAME = 16 * 1024 * 1024  # AWS documents 16 MiB (DEC-3)
MAX_HEADERS = 128 * 1024  # AWS's documented header-block limit (botocore enforces it too)
_PRELUDE = 12
_OVERHEAD = 16

HeaderValue = Union[bool, int, bytes, str]

_U32 = struct.Struct(">I")
_PRELUDE_FMT = struct.Struct(">III")
_INTS = {2: struct.Struct(">b"), 3: struct.Struct(">h"), 4: struct.Struct(">i"),
         5: struct.Struct(">q"), 8: struct.Struct(">q")}


@attrs.frozen
class Message:
    """One decoded frame: its headers (name → value; names are unique) and raw payload."""

    headers: dict[str, HeaderValue]
    payload: bytes


def decode_headers(block: bytes) -> dict[str, HeaderValue]:
    """Decode a header block (BR-S4); ``DecodeError("bad_header")`` if it is malformed."""
    out: dict[str, HeaderValue] = {}
    i, n = 0, len(block)
    try:
        while i < n:
            name_len = block[i]
            i += 1
            if i + name_len + 1 > n:
                raise DecodeError("bad_header", "truncated header name")
            name = block[i:i + name_len].decode("utf-8")
            i += name_len
            kind = block[i]
            i += 1
            value: HeaderValue
            if kind == 0:
                value = True
            elif kind == 1:
                value = False
            elif kind in _INTS:
                fmt = _INTS[kind]
                if i + fmt.size > n:
                    raise DecodeError("bad_header", "truncated integer header value")
                value = fmt.unpack_from(block, i)[0]
                i += fmt.size
            elif kind in (6, 7):
                if i + 2 > n:
                    raise DecodeError("bad_header", "truncated header value length")
                size = (block[i] << 8) | block[i + 1]
                i += 2
                if i + size > n:
                    raise DecodeError("bad_header", "truncated header value")
                raw = block[i:i + size]
                i += size
                value = raw.decode("utf-8") if kind == 7 else bytes(raw)
            elif kind == 9:
                if i + 16 > n:
                    raise DecodeError("bad_header", "truncated uuid header value")
                value = bytes(block[i:i + 16])
                i += 16
            else:
                raise DecodeError("bad_header", f"unknown header value type {kind}")
            if name in out:
                raise DecodeError("bad_header", "duplicate header name")
            out[name] = value
    except UnicodeDecodeError:
        raise DecodeError("bad_header", "header name or string value is not UTF-8") from None
    return out


class EventStreamDecoder:
    """Binary event-stream bytes in, ``Message`` objects out; split-invariant (see above)."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._error: DecodeError | None = None
        self._closed = False

    def feed(self, data: bytes) -> list[Message]:
        """Consume ``data``; return the frames it completes (``DecodeError`` on a bad frame)."""
        self._check()
        self._buf += data
        out: list[Message] = []
        pos = 0
        try:
            while True:
                msg, size = self._frame(pos)
                if msg is None:
                    break
                out.append(msg)
                pos += size
        except DecodeError as exc:
            self._error = exc
            self._buf = bytearray()
            if not out:
                raise
            return out  # the error is raised by the next call
        if pos:
            del self._buf[:pos]
        return out

    def close(self) -> None:
        """EOF: ``DecodeError("truncated")`` if a partial frame is buffered (BR-S7)."""
        self._check()
        self._closed = True
        if self._buf:
            raise DecodeError("truncated", f"stream ended inside a frame ({len(self._buf)} "
                                           "bytes buffered)")

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame waiting for more input."""
        return len(self._buf)

    def _check(self) -> None:
        if self._error is not None:
            raise DecodeError(self._error.kind, self._error.detail)
        if self._closed:
            raise DecodeError("closed", "the decoder was already closed")

    def _frame(self, pos: int) -> tuple[Message | None, int]:
        buf = self._buf
        avail = len(buf) - pos
        if avail < _PRELUDE:
            return None, 0
        total, hlen, crc = _PRELUDE_FMT.unpack_from(buf, pos)
        prelude = bytes(buf[pos:pos + 8])
        if zlib.crc32(prelude) != crc:  # BR-S1: before trusting any length
            raise DecodeError("crc_mismatch", "prelude CRC does not match")
        if total < _OVERHEAD:
            raise DecodeError("bad_length", f"frame length {total} is below the minimum")
        if total > self.max_frame:
            raise DecodeError("frame_too_large", f"frame of {total} bytes exceeds "
                                                 f"{self.max_frame}")
        if hlen > total - _OVERHEAD or hlen > MAX_HEADERS:
            raise DecodeError("bad_length", f"header length {hlen} does not fit the frame")
        if avail < total:
            return None, 0
        frame = bytes(buf[pos:pos + total])
        (expected,) = _U32.unpack_from(frame, total - 4)
        if zlib.crc32(frame[:-4]) != expected:  # BR-S3
            raise DecodeError("crc_mismatch", "message CRC does not match")
        headers = decode_headers(frame[_PRELUDE:_PRELUDE + hlen])
        return Message(headers, frame[_PRELUDE + hlen:total - 4]), total
