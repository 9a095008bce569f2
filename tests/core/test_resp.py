"""The RESP2 codec (uniapi_core/redis/resp.py): round trips under any split of the input,
commands, every malformed-input rule, the limits, and the failed state."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uniapi_core.redis import Reply, RespError, RespParser, RespProtocolError, encode_command


def encode_reply(value: Reply) -> bytes:
    """The test side's encoder, for every reply type (the core encodes commands only)."""
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, RespError):
        return b"-" + value.message.encode() + b"\r\n"
    if isinstance(value, str):
        return b"+" + value.encode() + b"\r\n"
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    return b"*%d\r\n" % len(value) + b"".join(encode_reply(v) for v in value)


def null_array() -> bytes:
    return b"*-1\r\n"


_line_text = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
                     max_size=20)
_scalars = st.one_of(
    _line_text,
    _line_text.map(RespError),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.binary(max_size=40),
    st.none(),
)
replies = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=5), max_leaves=30)


def feed_split(parser: RespParser, data: bytes, cuts: list[int]) -> list[Reply]:
    out: list[Reply] = []
    last = 0
    for cut in sorted(set(cuts)) + [len(data)]:
        out += parser.feed(data[last:cut])
        last = cut
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(replies, max_size=6), st.data())
def test_round_trip_under_any_split(values, data):
    wire = b"".join(encode_reply(v) for v in values)
    assert RespParser().feed(wire) == values
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=10))
    assert feed_split(RespParser(), wire, cuts) == values


@settings(max_examples=100, deadline=None)
@given(st.lists(replies, max_size=4))
def test_round_trip_byte_by_byte(values):
    wire = b"".join(encode_reply(v) for v in values)
    parser = RespParser()
    out: list[Reply] = []
    for i in range(len(wire)):
        out += parser.feed(wire[i:i + 1])
    assert out == values


def test_every_reply_type():
    wire = (b"+OK\r\n-ERR unknown command\r\n:-5\r\n$3\r\nf\x00o\r\n$0\r\n\r\n$-1\r\n"
            b"*2\r\n*1\r\n:1\r\n$1\r\nx\r\n*0\r\n*-1\r\n")
    assert RespParser().feed(wire) == [
        "OK", RespError("ERR unknown command"), -5, b"f\x00o", b"", None,
        [[1], b"x"], [], None]
    assert RespError("WRONGTYPE Operation against a key").kind == "WRONGTYPE"


def test_a_null_array_is_none():
    assert RespParser().feed(null_array()) == [None]


def test_a_reply_split_across_feeds_is_returned_once_complete():
    parser = RespParser()
    assert parser.feed(b"*2\r\n$5\r\nhel") == []
    assert parser.feed(b"lo\r") == []
    assert parser.feed(b"\n:4") == []
    assert parser.feed(b"2\r") == []
    assert parser.feed(b"\n+next") == [[b"hello", 42]]
    assert parser.feed(b"\r\n") == ["next"]
    assert parser.feed(b"") == []


def test_a_bulk_payload_may_hold_crlf():
    assert RespParser().feed(b"$4\r\n\r\n\r\n\r\n") == [b"\r\n\r\n"]


args_st = st.lists(st.one_of(st.binary(max_size=30), st.text(max_size=20),
                             st.integers(min_value=-(10**30), max_value=10**30)),
                   min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(args_st, st.data())
def test_encode_command_parses_as_an_array_of_bulk_strings(args, data):
    wire = encode_command(*args)
    expected = [a if isinstance(a, bytes) else a.encode() if isinstance(a, str)
                else str(a).encode() for a in args]
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=6))
    assert feed_split(RespParser(), wire, cuts) == [expected]


def test_encode_command_exact_bytes():
    assert encode_command("SET", "ké", 10, b"\x00") == \
        b"*4\r\n$3\r\nSET\r\n$3\r\nk\xc3\xa9\r\n$2\r\n10\r\n$1\r\n\x00\r\n"


@pytest.mark.parametrize("bad", [1.5, None, True, bytearray(b"x"), ["x"], object()])
def test_encode_command_refuses_other_types(bad):
    with pytest.raises(TypeError):
        encode_command("SET", bad)


def test_encode_command_needs_a_name():
    with pytest.raises(ValueError):
        encode_command()


MALFORMED = {
    "RESP3 map": b"%1\r\n+a\r\n+b\r\n",
    "RESP3 null": b"_\r\n",
    "RESP3 double": b",1.5\r\n",
    "inline command": b"PING\r\n",
    "empty line": b"\r\n",
    "bare LF": b"\n",
    "simple string with LF only": b"+OK\n",
    "CR inside a line": b"+O\rK\r\n",
    "bulk length not a number": b"$x\r\nab\r\n",
    "bulk length with a sign": b"$+2\r\nab\r\n",
    "bulk length with spaces": b"$ 2\r\nab\r\n",
    "bulk length with leading zero": b"$02\r\nab\r\n",
    "bulk length -2": b"$-2\r\n",
    "bulk length empty": b"$\r\n",
    "bulk length underscore": b"$1_0\r\n",
    "bulk payload without CRLF": b"$2\r\nabcd\r\n",
    "bulk payload with LF only": b"$2\r\nab\n\r\n",
    "array length not a number": b"*a\r\n",
    "array length -2": b"*-2\r\n",
    "integer empty": b":\r\n",
    "integer float": b":1.0\r\n",
    "integer with plus": b":+1\r\n",
    "integer over 64 bits": b":9223372036854775808\r\n",
    "integer too many digits": b":" + b"1" * 40 + b"\r\n",
    "header line never ending": b"$" + b"1" * 40,
    "array element malformed": b"*2\r\n:1\r\n?\r\n",
}


@pytest.mark.parametrize("wire", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_input_raises_whole_and_byte_by_byte(wire):
    with pytest.raises(RespProtocolError):
        RespParser().feed(wire)
    parser = RespParser()
    with pytest.raises(RespProtocolError):
        for i in range(len(wire)):
            parser.feed(wire[i:i + 1])


def test_integer_edges_are_accepted():
    wire = b":9223372036854775807\r\n:-9223372036854775808\r\n:0\r\n:-0\r\n"
    assert RespParser().feed(wire) == [2**63 - 1, -(2**63), 0, 0]


def test_the_parser_stays_failed():
    parser = RespParser()
    assert parser.feed(b"+OK\r\n") == ["OK"]
    with pytest.raises(RespProtocolError):
        parser.feed(b"%0\r\n")
    assert parser.failed
    with pytest.raises(RespProtocolError):
        parser.feed(b"+OK\r\n")
    with pytest.raises(RespProtocolError):
        parser.feed(b"")


def test_bulk_limit():
    parser = RespParser(max_bulk=4)
    assert parser.feed(b"$4\r\nabcd\r\n") == [b"abcd"]
    with pytest.raises(RespProtocolError):
        parser.feed(b"$5\r\n")  # refused on the header, before the payload arrives


def test_bulk_limit_default_is_512_mib():
    assert RespParser().feed(b"$536870912\r\n") == []
    with pytest.raises(RespProtocolError):
        RespParser().feed(b"$536870913\r\n")


def test_simple_string_line_is_bounded_by_the_bulk_limit():
    parser = RespParser(max_bulk=4)
    assert parser.feed(b"+abcd\r\n") == ["abcd"]
    assert parser.feed(b"+ab") == []
    with pytest.raises(RespProtocolError):
        parser.feed(b"cdefgh")


def test_element_limit():
    parser = RespParser(max_elements=2)
    assert parser.feed(b"*2\r\n:1\r\n:2\r\n") == [[1, 2]]
    with pytest.raises(RespProtocolError):
        parser.feed(b"*3\r\n")
    assert RespParser().feed(b"*1000000\r\n") == []
    with pytest.raises(RespProtocolError):
        RespParser().feed(b"*1000001\r\n")


def test_depth_limit():
    nested: Reply = [1]
    for _ in range(31):
        nested = [nested]
    assert RespParser().feed(encode_reply(nested)) == [nested]  # depth 32 is the default
    with pytest.raises(RespProtocolError):
        RespParser().feed(encode_reply([nested]))
    with pytest.raises(RespProtocolError):
        RespParser(max_depth=2).feed(b"*1\r\n*1\r\n*0\r\n")
    assert RespParser(max_depth=2).feed(b"*1\r\n*0\r\n") == [[[]]]


def test_many_small_feeds_keep_the_buffer_compact():
    """Not a timing test: the consumed prefix is dropped, so the buffer stays small."""
    parser = RespParser()
    wire = encode_reply([b"x" * 100] * 3) * 2000
    out: list[Reply] = []
    for i in range(0, len(wire), 7):
        out += parser.feed(wire[i:i + 7])
        assert len(parser._buf) < 200_000
    assert out == [[b"x" * 100] * 3] * 2000
