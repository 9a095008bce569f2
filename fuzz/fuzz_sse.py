"""Fuzz target for the SSE decoder (``uniapi_core.streams``): split invariance and error hygiene.

Run it (needs ``pip install atheris``)::

    python fuzz/fuzz_sse.py -max_total_time=60 fuzz/corpus/sse

``check(data)`` is the whole oracle; the test suite replays ``fuzz/corpus/sse/`` through it
without atheris (``tests/core/test_fuzz_corpora.py``). For each input and for two size
limits (the default and a tiny one, so the limit paths are reached) it asserts:

* only ``DecodeError`` escapes (DEC-2): anything else propagates and is a finding;
* feeding the bytes whole, one byte at a time, in fixed strides and at cut points derived from
  the data itself gives the same error kind, and the same events (DEC-1). One-byte feeding
  returns every event as early as possible, so it is the reference: on an error, each other
  run's events must be a prefix of it, because ``feed`` raises instead of returning the events
  it completed before the error;
* ``LineSplitter`` agrees with a one-line regular-expression splitter (SSE-1, SSE-2, DEC-3);
* decode → ``encode_event`` → decode gives the same ``(data, event)`` pairs.
"""

from __future__ import annotations

import re
import sys

if __name__ == "__main__":  # run as a script: make the repository importable
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz._oracle import fuzz  # noqa: E402
from uniapi_core.errors import DecodeError  # noqa: E402
from uniapi_core.streams import LineSplitter, SSEDecoder, SSEEvent, encode_event  # noqa: E402

LIMITS = (8 * 1024 * 1024, 24)
_TERMINATOR = re.compile(rb"\r\n|\r|\n")


def _run(pieces: list[bytes], limit: int) -> tuple[list[SSEEvent], str | None]:
    decoder = SSEDecoder(max_event_size=limit)
    events: list[SSEEvent] = []
    try:
        for piece in pieces:
            events += decoder.feed(piece)
        events += decoder.close()
    except DecodeError as exc:
        return events, exc.kind
    return events, None


def _cut(data: bytes, positions: list[int]) -> list[bytes]:
    bounds = [0, *positions, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def _splits(data: bytes) -> list[list[bytes]]:
    """Ways to cut ``data``, derived from the data so that the fuzzer can steer them."""
    n = len(data)
    out = [[data]]
    if n:
        stride = data[0] % 7 + 2
        out.append(_cut(data, list(range(stride, n, stride))))
        walk, pos, i = [], 0, 0
        while True:  # steps of 1..16 bytes, read from the data cyclically
            pos += data[i % n] % 16 + 1
            i += 1
            if pos >= n:
                break
            walk.append(pos)
        out.append(_cut(data, walk))
    return out


def _check_lines(data: bytes, limit: int) -> None:
    *lines, tail = _TERMINATOR.split(data)
    expected: tuple[list[bytes], bytes | None, str | None] = (lines, tail or None, None)
    for i, line in enumerate(lines + [tail]):
        if len(line) > limit:
            expected = (lines[:i], None, "line_too_long")
            break
    for pieces in ([data[i:i + 1] for i in range(len(data))], *_splits(data)):
        splitter = LineSplitter(max_line=limit)
        got: list[bytes] = []
        result = None
        for piece in pieces:
            new, error = splitter.feed_lines(piece)
            got += new
            if error is not None:
                result = (got, None, error.kind)
                break
        if result is None:
            result = (got, splitter.close(), None)
        assert result == expected, (pieces, result, expected)


def check(data: bytes) -> None:
    """The fuzz oracle: raise ``AssertionError`` (or anything unexpected) on a finding."""
    for limit in LIMITS:
        ref_events, ref_kind = _run([data[i:i + 1] for i in range(len(data))], limit)
        for pieces in _splits(data):
            events, kind = _run(pieces, limit)
            assert kind == ref_kind, (pieces, kind, ref_kind)
            if kind is None:
                assert events == ref_events, (pieces, events, ref_events)
            else:
                assert events == ref_events[:len(events)], (pieces, events, ref_events)
        _check_lines(data, limit)
        if ref_kind is None:
            wire = b"".join(encode_event(e.data, e.event) for e in ref_events)
            again, kind = _run([wire], 8 * 1024 * 1024)
            assert kind is None and [(e.data, e.event) for e in again] == \
                [(e.data, e.event) for e in ref_events], (wire, again)


if __name__ == "__main__":
    fuzz(check)
