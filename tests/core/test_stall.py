"""The write-stall rule (uniapi_core.http.stall): progress, not write duration, counts."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from uniapi_core.http.stall import WriteWatch


def test_a_write_whose_queue_never_shrinks_stalls_after_the_timeout():
    w = WriteWatch(1.0)
    w.begin(10.0)
    assert not w.stalled(10.25, 5000)
    assert not w.stalled(10.75, 5000)
    assert w.stalled(11.0, 5000)


def test_a_slow_steady_reader_never_stalls():
    w = WriteWatch(1.0)
    w.begin(0.0)
    acked = 0
    for i in range(1, 400):  # 10 KiB/s for 100 s, sampled every 0.25 s
        acked += 2560
        assert not w.stalled(i * 0.25, acked)


def test_progress_restarts_the_clock_and_end_stops_it():
    w = WriteWatch(1.0)
    w.begin(0.0)
    assert not w.stalled(0.5, 100)
    assert not w.stalled(0.9, 110)  # progress at 0.9
    assert not w.stalled(1.8, 110)
    assert w.stalled(1.95, 105)  # a counter never goes down; a smaller sample is no progress
    w.end()
    assert not w.stalled(5.0, 110)
    w.begin(6.0)
    assert not w.stalled(6.5, 110) and w.stalled(7.0, 110)


def test_unknown_queue_falls_back_to_write_duration():
    w = WriteWatch(2.0)
    w.begin(0.0)
    assert not w.stalled(1.9, None) and w.stalled(2.0, None)


@given(st.lists(st.tuples(st.floats(0.01, 0.5), st.integers(0, 100)), max_size=60))
def test_stalled_exactly_when_no_new_byte_was_taken_for_the_timeout(steps):
    w = WriteWatch(1.0)
    w.begin(0.0)
    now, high, since = 0.0, None, 0.0
    for dt, d in steps:
        now += dt
        if high is not None and d > high:
            since = now
        high = d if high is None else max(high, d)
        assert w.stalled(now, d) == (now - since >= 1.0)


def test_bytes_acked_reads_tcpi_bytes_acked_and_refuses_short_answers():
    import struct

    from uniapi_core.http.stall import TCP_INFO_SIZE, bytes_acked

    info = bytearray(TCP_INFO_SIZE)
    struct.pack_into("Q", info, 120, 123456789)
    assert bytes_acked(bytes(info)) == 123456789
    assert bytes_acked(bytes(info[:127])) is None
    assert bytes_acked(b"") is None
