"""The AWS binary event-stream decoder (``uniapi_core.vendors.eventstream``; docs/vendor-rules.md,
BR-S1..S7).

Frames are built by the small encoder below (independent of the decoder). botocore's
``EventStreamBuffer`` is the oracle over random splittings when it is installed.
"""

from __future__ import annotations

import random
import struct
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uniapi_core.errors import DecodeError
from uniapi_core.vendors.eventstream import (MAX_FRAME, EventStreamDecoder, Message,
                                             decode_headers)

# -- a tiny encoder (test side) ---------------------------------------------------------------

INT_TYPES = {2: ">b", 3: ">h", 4: ">i", 5: ">q", 8: ">q"}


def enc_header(name: str, kind: int, value: Any = None) -> bytes:
    raw = name.encode()
    out = bytes([len(raw)]) + raw + bytes([kind])
    if kind in (0, 1):
        return out
    if kind in INT_TYPES:
        return out + struct.pack(INT_TYPES[kind], value)
    if kind in (6, 7):
        data = value.encode() if kind == 7 else value
        return out + struct.pack(">H", len(data)) + data
    assert kind == 9 and len(value) == 16
    return out + value


def enc_frame(header_block: bytes, payload: bytes) -> bytes:
    total = 16 + len(header_block) + len(payload)
    prelude = struct.pack(">II", total, len(header_block))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + header_block + payload
    return body + struct.pack(">I", zlib.crc32(body))


def event(payload: bytes, **headers: str) -> bytes:
    return enc_frame(b"".join(enc_header(k, 7, v) for k, v in headers.items()), payload)


def decode_all(pieces: list[bytes]) -> tuple[list[Message], str | None]:
    dec = EventStreamDecoder()
    out: list[Message] = []
    try:
        for p in pieces:
            out += dec.feed(p)
        dec.close()
    except DecodeError as exc:
        return out, exc.kind
    return out, None


def cut(data: bytes, positions: list[int]) -> list[bytes]:
    bounds = [0, *sorted(set(positions)), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


# -- examples ---------------------------------------------------------------------------------

def test_published_vector_no_headers():
    frame = enc_frame(b"", b'{"foo": "bar"}')
    assert frame[:12] == bytes.fromhex("0000001e00000000baf2f68a")
    assert frame[-4:] == bytes.fromhex("ae7258e4")
    assert EventStreamDecoder().feed(frame) == [Message({}, b'{"foo": "bar"}')]


def test_chunk_frame_bytes_and_crcs_are_exact():
    payload = (b'{"bytes":"eyJ0eXBlIjoiY29udGVudF9ibG9ja19kZWx0YSIsImluZGV4IjowLCJkZWx0YSI6eyJ0eX'
               b'BlIjoidGV4dF9kZWx0YSIsInRleHQiOiJIb2xhIn19","p":"abcdefghijklmnopqrs"}')
    frame = event(payload, **{":event-type": "chunk", ":content-type": "application/json",
                              ":message-type": "event"})
    assert len(frame) == 241 and frame[:12] == bytes.fromhex("000000f10000004bf1783e9c")
    assert frame[-4:] == bytes.fromhex("a99313d2")
    [msg] = EventStreamDecoder().feed(frame)
    assert msg.headers == {":event-type": "chunk", ":content-type": "application/json",
                           ":message-type": "event"}
    assert msg.payload == payload


def test_every_header_type():
    uid = bytes(range(16))
    block = b"".join([enc_header("t", 0), enc_header("f", 1), enc_header("i8", 2, -5),
                      enc_header("i16", 3, -300), enc_header("i32", 4, 2 ** 31 - 1),
                      enc_header("i64", 5, -(2 ** 63)), enc_header("b", 6, b"\x00\xff"),
                      enc_header("s", 7, "héllo"), enc_header("ts", 8, 1735689600123),
                      enc_header("u", 9, uid), enc_header("", 7, "")])
    [msg] = EventStreamDecoder().feed(enc_frame(block, b""))
    assert msg.headers == {"t": True, "f": False, "i8": -5, "i16": -300, "i32": 2 ** 31 - 1,
                           "i64": -(2 ** 63), "b": b"\x00\xff", "s": "héllo",
                           "ts": 1735689600123, "u": uid, "": ""}
    assert msg.payload == b""


def test_several_frames_in_one_read_and_one_byte_reads():
    data = event(b"1", a="x") + event(b"", b="y") + enc_frame(b"", b"3" * 1000)
    whole = EventStreamDecoder().feed(data)
    assert [m.payload for m in whole] == [b"1", b"", b"3" * 1000]
    dec = EventStreamDecoder()
    got = [m for i in range(len(data)) for m in dec.feed(data[i:i + 1])]
    dec.close()
    assert got == whole


def test_partial_frame_waits_then_truncates_at_close():
    data = event(b"payload", a="x")
    for k in (1, 11, 12, 13, len(data) - 1):
        dec = EventStreamDecoder()
        assert dec.feed(data[:k]) == [] and dec.buffered == k
        with pytest.raises(DecodeError) as e:
            dec.close()
        assert e.value.kind == "truncated"


def test_clean_close_and_feed_after_close():
    dec = EventStreamDecoder()
    dec.feed(event(b"x"))
    dec.close()
    with pytest.raises(DecodeError) as e:
        dec.feed(b"")
    assert e.value.kind == "closed"


def test_every_single_byte_corruption_is_detected():
    frame = event(b'{"k":"v"}', **{":message-type": "event", ":event-type": "chunk"})
    for i in range(len(frame)):
        for bit in (0x01, 0x80):
            bad = frame[:i] + bytes([frame[i] ^ bit]) + frame[i + 1:]
            dec = EventStreamDecoder()
            with pytest.raises(DecodeError) as e:
                dec.feed(bad)  # detected at once: never waits on a corrupt length (BR-S1)
            assert e.value.kind in ("crc_mismatch", "bad_length", "frame_too_large")


def _with_good_crcs(total: int, hlen: int, rest: bytes) -> bytes:
    prelude = struct.pack(">II", total, hlen)
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + rest
    return body + struct.pack(">I", zlib.crc32(body))


@pytest.mark.parametrize("total,hlen,kind", [
    (15, 0, "bad_length"), (0, 0, "bad_length"), (MAX_FRAME + 1, 0, "frame_too_large"),
    (2 ** 32 - 1, 0, "frame_too_large"), (20, 5, "bad_length"), (16, 1, "bad_length")])
def test_impossible_lengths(total, hlen, kind):
    with pytest.raises(DecodeError) as e:
        EventStreamDecoder().feed(_with_good_crcs(total, hlen, b"abcd"))
    assert e.value.kind == kind


def test_max_frame_is_configurable():
    frame = enc_frame(b"", b"x" * 100)
    assert EventStreamDecoder(max_frame=116).feed(frame)
    with pytest.raises(DecodeError) as e:
        EventStreamDecoder(max_frame=115).feed(frame)
    assert e.value.kind == "frame_too_large"


@pytest.mark.parametrize("block", [
    b"\x05ab",  # name longer than the block
    b"\x01a",  # no type byte
    b"\x01a\x0a",  # unknown type 10
    b"\x01a\x04\x00\x00",  # truncated int32
    b"\x01a\x07\x00\x05abc",  # string longer than the block
    b"\x01a\x06\x00",  # truncated length
    b"\x01a\x09" + b"\x00" * 15,  # short uuid
    b"\x01\xff\x00",  # name not UTF-8
    b"\x01a\x07\x00\x01\xff",  # string not UTF-8
    b"\x01a\x00\x01a\x01",  # the same name twice
])
def test_bad_headers(block):
    with pytest.raises(DecodeError) as e:
        decode_headers(block)
    assert e.value.kind == "bad_header"
    with pytest.raises(DecodeError):
        EventStreamDecoder().feed(enc_frame(block, b"{}"))


def test_items_before_an_error_come_first_then_the_error_sticks():
    good = event(b"ok", a="1")
    bad = bytearray(event(b"no", a="2"))
    bad[-1] ^= 0xFF
    dec = EventStreamDecoder()
    assert [m.payload for m in dec.feed(good + bytes(bad))] == [b"ok"]
    for call in (lambda: dec.feed(b""), dec.close):
        with pytest.raises(DecodeError) as e:
            call()
        assert e.value.kind == "crc_mismatch"


def test_no_resynchronisation_after_garbage():
    with pytest.raises(DecodeError):
        EventStreamDecoder().feed(b"\x00" * 3 + event(b"x"))


# -- hypothesis: split invariance and robustness (DEC-1, DEC-2) ------------------------------

_name = st.text(min_size=0, max_size=8)
_header = st.one_of(
    st.tuples(_name, st.sampled_from([0, 1]), st.none()),
    st.tuples(_name, st.just(2), st.integers(-128, 127)),
    st.tuples(_name, st.just(3), st.integers(-2 ** 15, 2 ** 15 - 1)),
    st.tuples(_name, st.just(4), st.integers(-2 ** 31, 2 ** 31 - 1)),
    st.tuples(_name, st.sampled_from([5, 8]), st.integers(-2 ** 63, 2 ** 63 - 1)),
    st.tuples(_name, st.just(6), st.binary(max_size=20)),
    st.tuples(_name, st.just(7), st.text(max_size=20)),
    st.tuples(_name, st.just(9), st.binary(min_size=16, max_size=16)),
)
_message = st.tuples(st.lists(_header, max_size=4, unique_by=lambda h: h[0]),
                     st.binary(max_size=200))


def _encode(messages: list[tuple[list[tuple[str, int, Any]], bytes]]) -> bytes:
    return b"".join(enc_frame(b"".join(enc_header(*h) for h in hs), p) for hs, p in messages)


def _expected(messages: list[tuple[list[tuple[str, int, Any]], bytes]]) -> list[Message]:
    out = []
    for hs, payload in messages:
        headers: dict[str, Any] = {}
        for name, kind, value in hs:
            headers[name] = {0: True, 1: False}.get(kind, value)
        out.append(Message(headers, payload))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_message, max_size=5), st.lists(st.integers(0, 2000), max_size=12))
def test_split_invariance_on_valid_streams(messages, positions):
    data = _encode(messages)
    expected = _expected(messages)
    assert decode_all([data]) == (expected, None)
    assert decode_all(cut(data, [p for p in positions if p <= len(data)])) == (expected, None)
    # every cut inside the first prelude
    for k in range(1, min(12, len(data))):
        assert decode_all([data[:k], data[k:]]) == (expected, None)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=8))
def test_arbitrary_bytes_only_raise_decode_error_and_are_split_invariant(data, positions):
    ref = decode_all([data])
    assert decode_all(cut(data, [p for p in positions if p <= len(data)])) == ref
    assert decode_all([data[i:i + 1] for i in range(len(data))]) == ref


@settings(max_examples=200, deadline=None)
@given(st.lists(_message, min_size=1, max_size=3), st.data())
def test_mutated_streams_are_split_invariant(messages, data):
    raw = bytearray(_encode(messages))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] = data.draw(st.integers(0, 255))
    raw = bytes(raw)
    ref = decode_all([raw])
    positions = data.draw(st.lists(st.integers(0, len(raw)), max_size=6))
    assert decode_all(cut(raw, positions)) == ref
    if raw != _encode(messages):
        assert ref[1] is not None  # one changed byte never goes unnoticed


# -- botocore as an oracle --------------------------------------------------------------------

def _botocore(pieces: list[bytes]) -> list[Message]:
    from botocore.eventstream import EventStreamBuffer

    buf = EventStreamBuffer()
    out = []
    for p in pieces:
        buf.add_data(p)
        out += [Message(dict(m.headers), bytes(m.payload)) for m in buf]
    return out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_message, max_size=5), st.randoms(use_true_random=False))
def test_matches_botocore_over_random_splittings(messages, rnd):
    data = _encode(messages)
    ref = _botocore([data])
    assert decode_all([data]) == (ref, None)
    for _ in range(10):
        positions = [rnd.randrange(len(data) + 1) for _ in range(rnd.randrange(8))]
        pieces = cut(data, positions)
        assert decode_all(pieces) == (_botocore(pieces), None)


def test_matches_botocore_on_the_fixtures():
    from pathlib import Path

    rnd = random.Random(2024)
    data_dir = Path(__file__).resolve().parents[2] / "data" / "bedrock"
    for path in sorted(data_dir.glob("*_stream.bin")):
        if path.name == "cut_stream.bin":
            continue
        data = path.read_bytes()
        for _ in range(40):
            pieces = cut(data, [rnd.randrange(len(data) + 1) for _ in range(rnd.randrange(20))])
            assert decode_all(pieces) == (_botocore(pieces), None), path.name
