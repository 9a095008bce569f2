"""LineSplitter: byte-level line splitting on LF, CRLF and lone CR, across arbitrary feeds.

Rule ids refer to docs/contracts.md (DEC-*, SSE-*).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uniapi_core.errors import DecodeError
from uniapi_core.streams import LineSplitter

# -- helpers -----------------------------------------------------------------------------------


def reference(data: bytes, max_line: int) -> tuple[list[bytes], bytes | None, str | None]:
    """The obvious, non-incremental splitter: (lines before any error, tail, error kind)."""
    *lines, tail = re.split(rb"\r\n|\r|\n", data)
    for i, line in enumerate(lines):
        if len(line) > max_line:
            return lines[:i], None, "line_too_long"
    if len(tail) > max_line:
        return lines, None, "line_too_long"
    return lines, (tail or None), None


def run(pieces: list[bytes], max_line: int) -> tuple[list[bytes], bytes | None, str | None]:
    """Feed ``pieces`` with ``feed_lines``: (lines before any error, tail, error kind)."""
    s = LineSplitter(max_line)
    out: list[bytes] = []
    for piece in pieces:
        lines, error = s.feed_lines(piece)
        out += lines
        if error is not None:
            return out, None, error.kind
    return out, s.close(), None


def cut(data: bytes, positions: list[int]) -> list[bytes]:
    bounds = [0, *sorted(positions), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def one_byte(data: bytes) -> list[bytes]:
    return [data[i:i + 1] for i in range(len(data))]


# bytes rich in terminators and near-terminators
line_bytes = st.one_of(
    st.binary(max_size=64),
    st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"\n\r", b"a", b"bc", b"  ", b"\xe2\x80\xa8",
                              b"\x0b", b"\x0c", b"\x85", b"\xff"]), max_size=40).map(b"".join),
)


# -- examples ----------------------------------------------------------------------------------


def test_lf_crlf_and_lone_cr_all_end_lines_sse_1():
    s = LineSplitter()
    assert s.feed(b"a\nb\r\nc\rd\r\n\re") == [b"a", b"b", b"c", b"d", b""]
    assert s.close() == b"e"


def test_crlf_split_across_feeds_is_one_terminator_sse_2():
    s = LineSplitter()
    assert s.feed(b"data: x\r") == [b"data: x"]
    assert s.feed(b"\n") == []
    assert s.feed(b"\r") == [b""]
    assert s.feed(b"\nnext\n") == [b"next"]
    assert s.close() is None


def test_empty_feed_keeps_the_cr_flag_sse_2():
    s = LineSplitter()
    assert s.feed(b"a\r") == [b"a"]
    assert s.feed(b"") == []
    assert s.feed(b"\nb\n") == [b"b"]


def test_cr_then_cr_across_feeds_is_two_terminators_sse_1():
    s = LineSplitter()
    assert s.feed(b"a\r") == [b"a"]
    assert s.feed(b"\rb") == [b""]
    assert s.close() == b"b"


def test_cr_followed_by_other_byte_in_next_feed_sse_1():
    s = LineSplitter()
    assert s.feed(b"a\r") == [b"a"]
    assert s.feed(b"b\n") == [b"b"]


def test_only_cr_and_lf_split_sse_3():
    odd = "a\u2028b\u2029c\x85d\x0be\x0cf\x1cg\x1dh\x1ei".encode()
    s = LineSplitter()
    assert s.feed(odd + b"\n") == [odd]


def test_partial_line_accumulates_and_close_returns_it():
    s = LineSplitter()
    assert s.feed(b"da") == []
    assert s.feed(b"ta: ") == []
    assert s.pending == 6
    assert s.feed(b"x\nrest") == [b"data: x"]
    assert s.close() == b"rest"


def test_close_without_partial_line_returns_none():
    s = LineSplitter()
    s.feed(b"a\n")
    assert s.close() is None
    assert LineSplitter().close() is None


def test_feed_and_close_after_close_raise_closed():
    s = LineSplitter()
    s.close()
    with pytest.raises(DecodeError) as e:
        s.feed(b"x")
    assert e.value.kind == "closed"
    with pytest.raises(DecodeError) as e:
        s.close()
    assert e.value.kind == "closed"


def test_accepts_bytearray_and_memoryview():
    s = LineSplitter()
    assert s.feed(bytearray(b"a\nb")) == [b"a"]
    lines = s.feed(memoryview(b"c\n"))
    assert lines == [b"bc"] and type(lines[0]) is bytes


def test_line_of_exactly_max_line_is_accepted_dec_3():
    s = LineSplitter(max_line=4)
    assert s.feed(b"abcd\n") == [b"abcd"]
    assert s.feed(b"ab") == []
    assert s.feed(b"cd\r\n") == [b"abcd"]


def test_pending_partial_line_over_limit_raises_dec_3():
    s = LineSplitter(max_line=4)
    s.feed(b"abc")
    with pytest.raises(DecodeError) as e:
        s.feed(b"de")
    assert e.value.kind == "line_too_long"


def test_complete_line_over_limit_raises_too_dec_1_dec_3():
    # same outcome as the partial-line case, so the result does not depend on the cuts
    s = LineSplitter(max_line=4)
    lines, error = s.feed_lines(b"ok\ntoolong\nlater\n")
    assert lines == [b"ok"]
    assert error is not None and error.kind == "line_too_long"


def test_splitter_stays_failed_after_an_error():
    s = LineSplitter(max_line=2)
    with pytest.raises(DecodeError):
        s.feed(b"abc")
    with pytest.raises(DecodeError) as e:
        s.feed(b"\n")
    assert e.value.kind == "line_too_long"
    with pytest.raises(DecodeError) as e:
        s.close()
    assert e.value.kind == "line_too_long"


def test_long_line_in_tiny_pieces_is_linear_dec_2():
    # a quadratic buffer (bytes += ...) would copy ~64 GiB here and time out
    s = LineSplitter()
    piece = b"x" * 8
    for _ in range(128 * 1024):
        assert s.feed(piece) == []
    assert s.feed(b"\n") == [b"x" * (1024 * 1024)]


# -- properties --------------------------------------------------------------------------------


# CRLF framing throughout, sometimes with one lone CR or LF: the splitter's CRLF shortcut
crlf_bytes = st.tuples(
    st.lists(st.sampled_from([b"\r\n", b"\r\n\r\n", b"a", b"bc", b"\xe2\x80\xa8"]), max_size=30),
    st.sampled_from([b"", b"", b"\r", b"\n", b"x\ry", b"\n\r"]), st.integers(0, 30),
).map(lambda t: b"".join(t[0][:t[2]]) + t[1] + b"".join(t[0][t[2]:]))


@settings(max_examples=300, deadline=None)
@given(payload=line_bytes | crlf_bytes, max_line=st.sampled_from([3, 16, 1 << 20]),
       data=st.data())
def test_any_cuts_match_the_reference_dec_1(payload, max_line, data):
    positions = data.draw(st.lists(st.integers(0, len(payload)), max_size=12))
    expected = reference(payload, max_line)
    assert run([payload], max_line) == expected
    assert run(cut(payload, positions), max_line) == expected
    assert run(one_byte(payload), max_line) == expected


@settings(max_examples=100, deadline=None)
@given(payload=line_bytes)
def test_feed_raises_only_decode_error_dec_2(payload):
    s = LineSplitter(max_line=5)
    try:
        for piece in one_byte(payload):
            s.feed(piece)
        s.close()
    except DecodeError as e:
        assert e.kind == "line_too_long"
