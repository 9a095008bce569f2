"""Fuzz target for the RESP2 reply parser (``uniapi_core.redis.resp``).

Run it (needs ``pip install atheris``)::

    python fuzz/fuzz_resp.py -max_total_time=60 fuzz/corpus/resp

``check(data)`` is the whole oracle; ``tests/core/test_fuzz_corpora.py`` replays
``fuzz/corpus/resp/`` through it without atheris. The input is a stream of replies as Redis
would send them. For the default limits and for small ones (16-byte bulk strings, 4-element
arrays, nesting depth 3, so every limit is reached) it asserts:

* only ``RespProtocolError`` escapes ``feed`` (the module docstring's one failure), and after
  it ``failed`` is true and every further ``feed`` raises it again, even of no bytes;
* feeding the bytes one at a time, whole, in fixed strides and at cut points read from the
  data gives the same replies, each returned by the feed holding its last byte, and fails in
  the same feed: one-byte feeding finds every reply and the error as early as possible, so it
  is the reference;
* the replies are RESP2 values (``str`` without CR/LF, ``RespError``, a signed 64-bit ``int``,
  ``bytes``, ``None``, lists of them), and a canonical re-encoding of them parses back equal;
* ``encode_command`` of any array of bulk strings that came out, and of the input cut into
  arguments, parses back to exactly those arguments.
"""

from __future__ import annotations

import sys
from typing import Any

if __name__ == "__main__":  # run as a script: make the repository importable
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz._oracle import _splits, fuzz
from uniapi_core.redis.resp import (
    RespError,
    RespParser,
    RespProtocolError,
    encode_command,
)

#: the parser's defaults, and small limits so that each refusal is reached
LIMITS = ({}, {"max_bulk": 16, "max_elements": 4, "max_depth": 3})
_INT64 = (-(2**63), 2**63 - 1)


def _reference(data: bytes, limits: dict[str, int]) -> tuple[list[tuple[int, Any]], int | None]:
    """One byte at a time: each reply with the offset of its last byte, and the offset of the
    byte whose feed raised (None: no error)."""
    parser = RespParser(**limits)
    out: list[tuple[int, Any]] = []
    for i in range(len(data)):
        try:
            replies = parser.feed(data[i:i + 1])
        except RespProtocolError:
            _still_failed(parser)
            return out, i
        assert not parser.failed
        out += [(i, r) for r in replies]
    return out, None


def _still_failed(parser: RespParser) -> None:
    assert parser.failed, "failed is true after a RespProtocolError"
    for again in (b"", b"+OK\r\n"):
        try:
            parser.feed(again)
        except RespProtocolError:
            pass
        else:
            raise AssertionError("a failed parser must keep raising")
        assert parser.failed


def _split_agrees(pieces: list[bytes], limits: dict[str, int], ref: list[tuple[int, Any]],
                  error_at: int | None) -> None:
    parser = RespParser(**limits)
    start = 0
    for piece in pieces:
        end = start + len(piece)
        expected = [r for i, r in ref if start <= i < end]
        try:
            got = parser.feed(piece)
        except RespProtocolError:
            assert error_at is not None and start <= error_at < end, \
                ("raised in the wrong feed", start, end, error_at)
            _still_failed(parser)
            return
        assert error_at is None or not start <= error_at < end, \
            ("no error in the feed holding the reference's error", start, end, error_at)
        assert got == expected, ("replies differ", start, end, got, expected)
        start = end
    assert error_at is None, "the error is found whatever the split"


def _valid(reply: Any, depth: int, limits: dict[str, int]) -> None:
    if isinstance(reply, list):
        assert depth < limits.get("max_depth", 32), "nesting over max_depth"
        assert 0 <= len(reply) <= limits.get("max_elements", 1_000_000)
        for item in reply:
            _valid(item, depth + 1, limits)
    elif isinstance(reply, str):
        assert "\r" not in reply and "\n" not in reply, reply
    elif isinstance(reply, RespError):
        assert isinstance(reply.message, str) and "\r" not in reply.message
        assert "\n" not in reply.message
        assert isinstance(reply.kind, str)
    elif isinstance(reply, bytes):
        assert len(reply) <= limits.get("max_bulk", 512 * 1024 * 1024)
    elif isinstance(reply, int):
        assert type(reply) is int and _INT64[0] <= reply <= _INT64[1]
    else:
        assert reply is None, type(reply)


def encode(reply: Any) -> bytes:
    """A reply as canonical RESP2 (what a server would send for it)."""
    if reply is None:
        return b"$-1\r\n"
    if isinstance(reply, list):
        return b"*%d\r\n" % len(reply) + b"".join(encode(r) for r in reply)
    if isinstance(reply, str):
        return b"+" + reply.encode("utf-8") + b"\r\n"
    if isinstance(reply, RespError):
        return b"-" + reply.message.encode("utf-8") + b"\r\n"
    if isinstance(reply, bytes):
        return b"$%d\r\n" % len(reply) + reply + b"\r\n"
    return b":%d\r\n" % reply


def _parse_all(data: bytes) -> list[Any]:
    return RespParser().feed(data)


def _commands(data: bytes) -> list[list[bytes]]:
    """Argument lists read from the input: cut at spaces (the input as an inline command)."""
    args = [a for a in data.split(b" ") if a] or [b"PING"]
    return [args, [data], args[:1] + [data]]


def check(data: bytes) -> None:
    """The fuzz oracle: raise ``AssertionError`` (or anything unexpected) on a finding."""
    for limits in LIMITS:
        ref, error_at = _reference(data, limits)
        replies = [r for _, r in ref]
        for pieces in _splits(data):
            _split_agrees(pieces, limits, ref, error_at)
        for reply in replies:
            _valid(reply, 0, limits)
        wire = b"".join(encode(r) for r in replies)
        assert _parse_all(wire) == replies, ("re-encoding round trip", wire, replies)
        for reply in replies:
            if isinstance(reply, list) and reply and all(isinstance(a, bytes) for a in reply):
                assert _parse_all(encode_command(*reply)) == [reply], reply
    for args in _commands(data):
        wire = encode_command(*args)
        assert _parse_all(wire) == [args], ("encode_command round trip", args)
        text = [a.decode("utf-8", "replace") for a in args]
        assert _parse_all(encode_command(*text)) == [[t.encode("utf-8") for t in text]]


if __name__ == "__main__":
    fuzz(check)
