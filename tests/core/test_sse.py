"""SSEDecoder and encode_event: every framing rule by example, then split invariance by property.

Rule ids refer to docs/contracts.md (DEC-*, SSE-*).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uniapi_core.errors import DecodeError
from uniapi_core.streams import DONE, SSEDecoder, SSEEvent, encode_event

# -- helpers -----------------------------------------------------------------------------------


def run(pieces: list[bytes], max_event_size: int = 8 * 1024 * 1024
        ) -> tuple[list[SSEEvent], str | None]:
    """Feed ``pieces`` then close: (events returned before any error, error kind or None).

    Anything but ``DecodeError`` propagates and fails the test (DEC-2).
    """
    d = SSEDecoder(max_event_size)
    events: list[SSEEvent] = []
    try:
        for piece in pieces:
            events += d.feed(piece)
        events += d.close()
    except DecodeError as e:
        return events, e.kind
    return events, None


def decode(data: bytes, **kw: int) -> list[SSEEvent]:
    events, kind = run([data], **kw)
    assert kind is None, kind
    return events


def error_kind(data: bytes, **kw: int) -> str | None:
    return run([data], **kw)[1]


def cut(data: bytes, positions: list[int]) -> list[bytes]:
    bounds = [0, *sorted(positions), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def one_byte(data: bytes) -> list[bytes]:
    return [data[i:i + 1] for i in range(len(data))]


def assert_split_invariant(payload: bytes, positions: list[int], max_event_size: int) -> None:
    """DEC-1: whole, cut and one-byte feeds agree.

    Byte-at-a-time feeding returns every event as early as possible, so it is the reference.
    Without an error all three give identical events; with one, all give the same error kind,
    and the events each returned before it are a prefix of the reference's (``feed`` raises,
    so the events completed earlier in the failing call are not returned).
    """
    ref_events, ref_kind = run(one_byte(payload), max_event_size)
    for pieces in ([payload], cut(payload, positions)):
        events, kind = run(pieces, max_event_size)
        assert kind == ref_kind
        if kind is None:
            assert events == ref_events
        else:
            assert events == ref_events[:len(events)]


def normalise(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


# -- SSE-1, SSE-2, SSE-3: line splitting -------------------------------------------------------


def test_lf_crlf_and_lone_cr_framings_decode_alike_sse_1():
    lf = b"event: a\ndata: 1\ndata: 2\n\ndata: 3\n\n"
    expected = [SSEEvent("1\n2", "a"), SSEEvent("3")]
    assert decode(lf) == expected
    assert decode(lf.replace(b"\n", b"\r\n")) == expected
    assert decode(lf.replace(b"\n", b"\r")) == expected


def test_crlf_split_across_feeds_is_one_terminator_sse_2():
    d = SSEDecoder()
    # per-chunk CRLF normalisation would see "\r" + "\n" as two terminators and dispatch
    # an event with data "1" right here (eventsource-parser#17)
    assert d.feed(b"data: 1\r") == []
    assert d.feed(b"\ndata: 2\r") == []
    assert d.feed(b"\n\r") == [SSEEvent("1\n2")]
    assert d.feed(b"\n") == []
    assert d.close() == []


def test_lone_cr_terminates_lines_sse_1():
    assert decode(b"data: a\rdata: b\r\rdata: c\r\r") == [SSEEvent("a\nb"), SSEEvent("c")]


@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d",
                                  "\x1e"])
def test_unicode_line_separators_inside_data_do_not_split_sse_3(char):
    text = f'{{"content":"a{char}b"}}'
    assert decode(f"data: {text}\n\n".encode()) == [SSEEvent(text)]


# -- SSE-4: UTF-8 and BOM ----------------------------------------------------------------------


def test_multibyte_utf8_split_across_feeds_sse_4():
    wire = "data: é猫🐈\n\n".encode()
    events, kind = run(one_byte(wire))
    assert (events, kind) == ([SSEEvent("é猫🐈")], None)


@pytest.mark.parametrize("bad", [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf",
                                 b"\xf4\x90\x80\x80"])
def test_invalid_utf8_in_a_complete_line_raises_sse_4(bad):
    d = SSEDecoder()
    with pytest.raises(DecodeError) as e:
        d.feed(b"data: x" + bad + b"\n")  # raised as soon as the line is complete
    assert e.value.kind == "invalid_utf8"


def test_invalid_utf8_in_a_comment_raises_too_sse_4():
    assert error_kind(b": \xff\n") == "invalid_utf8"


def test_invalid_utf8_in_partial_line_is_not_decoded_until_complete_sse_4():
    d = SSEDecoder()
    assert d.feed(b"data: \xe7\x8c") == []  # a partial character, fine so far
    assert d.feed(b"\xab\n\n") == [SSEEvent("猫")]


def test_leading_bom_is_stripped_from_the_first_line_sse_4():
    assert decode(b"\xef\xbb\xbfdata: a\n\n") == [SSEEvent("a")]


def test_bom_split_across_feeds_sse_4():
    events, kind = run([b"\xef", b"\xbb", b"\xbf", b"data: a\n\n"])
    assert (events, kind) == ([SSEEvent("a")], None)


def test_bom_is_stripped_only_once_and_only_from_the_first_line_sse_4():
    # the second BOM makes "\ufeffdata" an unknown field: the event has no data
    assert decode(b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\n") == []
    assert decode(b"data: a\n\n\xef\xbb\xbfdata: b\n\n") == [SSEEvent("a")]
    # a BOM line of its own is a blank line
    assert decode(b"\xef\xbb\xbf\ndata: a\n\n") == [SSEEvent("a")]


# -- SSE-5: comments ---------------------------------------------------------------------------


def test_comments_are_ignored_and_counted_sse_5():
    d = SSEDecoder()
    assert d.feed(b": keep-alive\n\n:\n: OPENROUTER PROCESSING\n\n") == []
    assert d.comments == 3
    assert d.feed(b"data: a\n: inside an event\ndata: b\n\n") == [SSEEvent("a\nb")]
    assert d.comments == 4


# -- SSE-6: fields -----------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "value"), [
    (b"data:x", "x"),
    (b"data: x", "x"),
    (b"data:  x", " x"),  # exactly one space is removed
    (b"data: x  ", "x  "),  # never stripped
    (b"data:", ""),
    (b"data: ", ""),
    (b"data", ""),  # no colon: a field with an empty value
    (b"data: a:b: c", "a:b: c"),  # only the first colon separates
    (b"data:\tx", "\tx"),  # only a space is removed
])
def test_field_value_parsing_sse_6(line, value):
    assert decode(line + b"\n\n") == [SSEEvent(value)]


def test_unknown_fields_and_retry_are_ignored_sse_6_sse_12():
    assert decode(b"retry: 1000\nfoo: bar\nDATA: no\ndata : no\ndata: yes\n\n") == \
        [SSEEvent("yes")]


def test_id_is_recorded_per_event_sse_12():
    assert decode(b"id: 7\ndata: a\n\ndata: b\n\nid: 1\nid: 2\ndata: c\n\n") == [
        SSEEvent("a", id="7"), SSEEvent("b"), SSEEvent("c", id="2")]


def test_last_event_line_wins_sse_6():
    assert decode(b"event: a\nevent: b\ndata: x\n\n") == [SSEEvent("x", "b")]


# -- SSE-7, SSE-8: dispatch --------------------------------------------------------------------


def test_multiple_data_lines_join_with_newline_sse_7():
    assert decode(b'data: {"a":\ndata: 1}\n\n') == [SSEEvent('{"a":\n1}')]
    assert decode(b"data:\ndata:\n\n") == [SSEEvent("\n")]


def test_event_without_data_dispatches_with_empty_data_sse_8():
    assert decode(b"event: ping\n\n") == [SSEEvent("", "ping")]


def test_blank_lines_without_data_or_event_dispatch_nothing_sse_8():
    assert decode(b"\n\n\r\n\r\rid: 3\n\nretry: 5\n\n") == []


def test_anthropic_style_stream_sse_7_sse_8():
    wire = (b"event: message_start\n"
            b'data: {"type":"message_start","message":{"id":"msg_1"}}\n\n'
            b"event: ping\n"
            b'data: {"type": "ping"}\n\n'
            b"event: content_block_delta\n"
            b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
            b'"text":"Hi"}}\n\n'
            b"event: message_stop\n"
            b'data: {"type":"message_stop"}\n\n')
    events = decode(wire)
    assert [e.event for e in events] == ["message_start", "ping", "content_block_delta",
                                         "message_stop"]
    assert events[2].data.endswith('"text":"Hi"}}')


# -- SSE-9: [DONE] -----------------------------------------------------------------------------


def test_done_constant_and_both_spellings_decode_to_done_data_sse_9():
    assert DONE == b"data: [DONE]\n\n"
    assert decode(DONE) == [SSEEvent("[DONE]")]
    assert decode(b"data:[DONE]\n\n") == [SSEEvent("[DONE]")]
    assert decode(b"data:  [DONE]\n\n") == [SSEEvent(" [DONE]")]  # not the terminator


# -- SSE-10: end of input ----------------------------------------------------------------------


def test_trailing_event_without_blank_line_is_dispatched_at_close_sse_10():
    d = SSEDecoder()
    assert d.feed(b"data: a\n\ndata: b\n") == [SSEEvent("a")]
    assert d.close() == [SSEEvent("b")]
    assert decode(b"event: x\r") == [SSEEvent("", "x")]


def test_partial_line_at_eof_is_truncation_sse_10():
    d = SSEDecoder()
    assert d.feed(b'data: {"a":1}\n\ndata: {"b"') == [SSEEvent('{"a":1}')]
    with pytest.raises(DecodeError) as e:
        d.close()
    assert e.value.kind == "truncated"
    assert error_kind(b"data: [DONE]") == "truncated"
    assert error_kind(b": comment") == "truncated"


@pytest.mark.parametrize("tail", [b" ", b"  \t", b"\x0c"])
def test_whitespace_partial_line_at_eof_is_fine_sse_10(tail):
    assert decode(b"data: a\n" + tail) == [SSEEvent("a")]
    assert decode(b"data: a\n\n" + tail) == [SSEEvent("a")]
    assert decode(tail) == []


def test_bom_then_whitespace_as_the_whole_stream_is_fine_sse_4_sse_10():
    assert decode(b"\xef\xbb\xbf ") == []
    assert error_kind(b"data: a\n\xef\xbb\xbf ") == "truncated"  # not the first line


def test_empty_stream_closes_cleanly():
    assert decode(b"") == []


def test_feed_or_close_after_close_raises_closed():
    d = SSEDecoder()
    d.close()
    for call in (lambda: d.feed(b"data: x\n\n"), d.close):
        with pytest.raises(DecodeError) as e:
            call()
        assert e.value.kind == "closed"


def test_decoder_stays_failed_after_an_error_dec_2():
    d = SSEDecoder()
    with pytest.raises(DecodeError):
        d.feed(b"data: \xff\n")
    with pytest.raises(DecodeError) as e:
        d.feed(b"data: fine\n\n")
    assert e.value.kind == "invalid_utf8"
    with pytest.raises(DecodeError) as e:
        d.close()
    assert e.value.kind == "invalid_utf8"


# -- DEC-3: bounded memory ---------------------------------------------------------------------


def test_oversize_line_raises_line_too_long_dec_3():
    d = SSEDecoder(max_event_size=32)
    d.feed(b"data: " + b"x" * 20)
    with pytest.raises(DecodeError) as e:
        d.feed(b"y" * 20)  # still no terminator: refused before it is buffered
    assert e.value.kind == "line_too_long"
    assert error_kind(b": " + b"c" * 40 + b"\n", max_event_size=32) == "line_too_long"


def test_oversize_event_raises_event_too_large_dec_3():
    # each data line counts its bytes plus one for its terminator: 10 + 11 + 11 > 30
    assert decode(b"data: 1234\ndata: 12345\n\n", max_event_size=30) == [SSEEvent("1234\n12345")]
    assert error_kind(b"data: 1234\ndata: 12345\ndata: 12345\n\n", max_event_size=30) == \
        "event_too_large"


def test_event_size_resets_after_dispatch_dec_3():
    wire = b"data: 123456789\n\n" * 100
    assert len(decode(wire, max_event_size=16)) == 100


def test_other_fields_and_comments_do_not_accumulate_dec_3():
    wire = b": ping\nevent: x\nid: 1\nretry: 2\n" * 1000 + b"data: a\n\n"
    assert decode(wire, max_event_size=16) == [SSEEvent("a", "x", "1")]


def test_errors_surface_in_stream_order_dec_1():
    # an invalid line followed, in the same feed, by an oversize one: invalid_utf8 comes first,
    # as it does when the bytes arrive one at a time
    wire = b"data: \xff\n" + b"data: " + b"x" * 100 + b"\n"
    assert error_kind(wire, max_event_size=32) == "invalid_utf8"
    assert run(one_byte(wire), max_event_size=32)[1] == "invalid_utf8"


# -- encode_event ------------------------------------------------------------------------------


def test_encode_event_wire_form():
    assert encode_event("x") == b"data: x\n\n"
    assert encode_event(b'{"a":1}') == b'data: {"a":1}\n\n'
    assert encode_event("a\nb", "delta") == b"event: delta\ndata: a\ndata: b\n\n"
    assert encode_event("") == b"data: \n\n"
    assert encode_event("[DONE]") == DONE
    assert encode_event("猫") == "data: 猫\n\n".encode()


def test_encode_event_splits_cr_and_crlf_too():
    assert encode_event("a\r\nb\rc\n") == b"data: a\ndata: b\ndata: c\ndata: \n\n"
    assert encode_event(b"a\r\nb") == b"data: a\ndata: b\n\n"


def test_encode_event_bytes_fast_path_is_passed_through():
    raw = '{"content":"caf\u00e9 \u2028"}'.encode()
    assert encode_event(raw) == b"data: " + raw + b"\n\n"


def test_encode_event_rejects_line_terminator_in_event_name():
    for bad in ("a\nb", "a\r", "\r\n"):
        with pytest.raises(ValueError):
            encode_event("x", bad)


# -- properties --------------------------------------------------------------------------------

event_names = st.none() | st.text(max_size=12).filter(lambda s: "\r" not in s and "\n" not in s)
event_data = st.text(max_size=40) | st.text(alphabet="ab \r\n\u2028é🐈:", max_size=20)
event_lists = st.lists(st.tuples(event_data, event_names), max_size=8)

# SSE-shaped lines: a field-ish prefix, a short value (sometimes not UTF-8), a terminator
sse_lines = st.lists(st.tuples(
    st.sampled_from([b"", b"", b"data:", b"data: ", b"data:  ", b"data", b"event: ", b"event",
                     b"id: ", b"retry: ", b":", b"\xef\xbb\xbf", b"x: "]),
    st.sampled_from([b"", b"", b"[DONE]", b"{}", b"abcdefghij", b"abcdefghij",
                     "é猫\u2028".encode(), b" ", b'{"a": 1}', b"x", b"\xff", b"\xc3"]),
    st.sampled_from([b"\n", b"\n", b"\r\n", b"\r", b"\r\r", b"\n\n", b"\r\n\r\n"]),
), max_size=20).map(lambda lines: b"".join(p + v + t for p, v, t in lines))

junk_bytes = st.one_of(
    st.binary(max_size=80),
    st.lists(st.sampled_from([
        b"data:", b"data: ", b"event: e", b"id: 1", b"retry: 9", b":", b" ", b"x", b"[DONE]",
        b"\r", b"\n", b"\r\n", b"\xef\xbb\xbf", b"\xc3", b"\xa9", b"\xff", b"\xe2\x80\xa8",
    ]), max_size=40).map(b"".join),
    st.tuples(sse_lines, st.sampled_from([b"", b"", b" ", b"data: partial"])).map(b"".join),
)


def encode_all(events: list[tuple[str, str | None]], as_bytes: bool) -> bytes:
    return b"".join(encode_event(d.encode() if as_bytes else d, e) for d, e in events)


@settings(max_examples=200, deadline=None)
@given(events=event_lists, as_bytes=st.booleans(),
       framing=st.sampled_from([b"\n", b"\r\n", b"\r"]), comments=st.booleans())
def test_encode_event_round_trips_through_the_decoder(events, as_bytes, framing, comments):
    wire = encode_all(events, as_bytes)
    if comments:
        wire = b": keep-alive\n\n" + wire.replace(b"\n\n", b"\n: ping\n\n")
    wire = wire.replace(b"\n", framing)  # encode_event itself emits LF only
    assert decode(wire) == [SSEEvent(normalise(d), e) for d, e in events]


@settings(max_examples=200, deadline=None)
@given(events=event_lists, framing=st.sampled_from([b"\n", b"\r\n", b"\r"]),
       max_event_size=st.sampled_from([24, 8 * 1024 * 1024]), data=st.data())
def test_encoded_events_are_split_invariant_dec_1(events, framing, max_event_size, data):
    wire = encode_all(events, False).replace(b"\n", framing)
    positions = data.draw(st.lists(st.integers(0, len(wire)), max_size=16))
    assert_split_invariant(wire, positions, max_event_size)


@settings(max_examples=400, deadline=None)
@given(payload=junk_bytes, max_event_size=st.sampled_from([8, 24, 64, 8 * 1024 * 1024]),
       data=st.data())
def test_arbitrary_bytes_are_split_invariant_and_raise_only_decode_error_dec_1_dec_2(
        payload, max_event_size, data):
    positions = data.draw(st.lists(st.integers(0, len(payload)), max_size=16))
    assert_split_invariant(payload, positions, max_event_size)


@settings(max_examples=200, deadline=None)
@given(payload=junk_bytes)
def test_decode_encode_decode_is_stable(payload):
    events, kind = run([payload])
    again = b"".join(encode_event(e.data, e.event) for e in events)
    assert decode(again) == [SSEEvent(e.data, e.event) for e in events]


# -- the fast path (whole stretches of simple events) against the line-by-line reading ---------

class LineByLine(SSEDecoder):
    """The general reading only: every line through ``_process_lines``."""

    __slots__ = ()

    def _process(self, lines, out):
        self._process_lines(lines, out)


def run_with(cls: type[SSEDecoder], pieces: list[bytes], max_event_size: int
             ) -> tuple[list[SSEEvent], str | None, int]:
    d = cls(max_event_size)
    events: list[SSEEvent] = []
    kind = None
    try:
        for piece in pieces:
            events += d.feed(piece)
        events += d.close()
    except DecodeError as e:
        kind = e.kind
    return events, kind, d.comments


simple_events = st.lists(st.tuples(
    st.sampled_from([b"", b"event: content_block_delta\n", b"event:x\n", b"event: \n",
                     b"event:  two\n", b"id: 7\n", b": ping\n", b"retry: 1\n"]),
    st.sampled_from([b"data: ", b"data:", b"data:  ", b"data: a\ndata: ", b"data"]),
    st.sampled_from([b'{"type":"ping"}', b"", "é猫🐈 \u2028".encode(), b"[DONE]", b":x",
                     b"\xff", b"event: y"]),
    st.sampled_from([b"\n\n", b"\n\n", b"\n\n", b"\r\n\r\n", b"\n\n\n", b"\n", b"\r\r"]),
), min_size=1, max_size=60).map(lambda evs: b"".join(a + b + c + d for a, b, c, d in evs))


@settings(max_examples=300, deadline=None)
@given(payload=st.one_of(simple_events, st.tuples(simple_events, junk_bytes).map(b"".join)),
       max_event_size=st.sampled_from([24, 64, 8 * 1024 * 1024]), data=st.data())
def test_fast_path_matches_the_line_by_line_reading(payload, max_event_size, data):
    positions = data.draw(st.lists(st.integers(0, len(payload)), max_size=4))
    pieces = cut(payload, positions)
    assert run_with(SSEDecoder, pieces, max_event_size) == \
        run_with(LineByLine, pieces, max_event_size)
