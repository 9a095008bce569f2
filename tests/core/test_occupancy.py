"""http/occupancy.py: at the cap, the connection idle the longest makes room; a busy one
never does; counts and bounds hold under any order of events (hypothesis); past half the cap,
idle connections' timeouts shrink, and a connection closes when its shrunk time is up."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from uniapi_core.connection import Connection
from uniapi_core.demo import DemoUpstream
from uniapi_core.events import ClientData, Close, DeadlineReached, Shed, Write
from uniapi_core.http.occupancy import SHRINK_FROM, SHRINK_TO, TRIM_EVERY, TRIM_PEAK, Occupancy
from uniapi_core.http.server import ServerLimits


def test_at_the_cap_the_longest_idle_is_shed_and_a_busy_one_never():
    shed: list[int] = []
    occ = Occupancy(3)
    ids = [occ.opened(float(t)) for t in range(3)]
    for i in ids:
        occ.shedders[i] = lambda i=i: shed.append(i)  # type: ignore[misc]
    occ.busy(ids[0])
    new = occ.opened(10.0)  # at the cap: ids[1] is idle the longest
    assert new is not None and shed == [ids[1]] and occ.shed == 1
    occ.closed(ids[1])
    occ.busy(ids[2])
    occ.busy(new)
    assert occ.opened(11.0) is None and occ.refused == 1  # none idle: refused
    occ.idle(ids[0], 12.0)  # idle again: it can make room now
    assert occ.opened(13.0) is not None and shed == [ids[1], ids[0]]


def test_a_shed_connection_that_got_a_request_meanwhile_stays():
    occ = Occupancy(1)
    first = occ.opened(0.0)
    assert occ.opened(1.0) is not None and occ.shed == 1
    occ.kept(first)  # a request came before the Shed was handled
    assert occ.shed == 0 and len(occ) == 2


events = st.lists(st.tuples(st.sampled_from(["open", "idle", "busy", "close", "keep"]),
                            st.integers(0, 40)), max_size=200)


@settings(max_examples=500, deadline=None)
@given(st.integers(1, 8), events)
@example(1, [("open", 0), ("open", 0), ("keep", 0), ("open", 0)])  # a kept victim counts again
def test_bounds_hold_under_any_order(cap, steps):
    occ = Occupancy(cap)
    told: set[int] = set()
    opened: list[int] = []
    busy: set[int] = set()
    for t, (what, n) in enumerate(steps):
        if what == "open":
            before = set(told)
            conn = occ.opened(float(t))
            if conn is not None:
                opened.append(conn)
                occ.shedders[conn] = lambda conn=conn: told.add(conn)  # type: ignore[misc]
            assert not (told - before) & busy  # a busy connection is never shed
        elif opened:
            conn = opened[n % len(opened)]
            if what == "idle":
                occ.idle(conn, float(t))
                busy.discard(conn)
            elif what == "busy":
                occ.busy(conn)
                busy.add(conn)
            elif what == "keep":
                occ.kept(conn)
            else:
                occ.closed(conn)
                opened.remove(conn)
                busy.discard(conn)
        assert len(occ) <= 2 * cap
        assert occ.shed >= 0 and occ.refused >= 0


def test_a_connection_closes_at_shed_only_while_idle_and_never_lingers():
    occ = Occupancy(4)
    conn_id = occ.opened(0.0)
    assert conn_id is not None
    conn = Connection(DemoUpstream, occupancy=(occ, conn_id))
    assert conn.handle(Shed(), 0.0, 0.0) == [Close(linger=False)]  # idle: closes at once
    assert len(occ) == 0
    other_id = occ.opened(1.0)
    other = Connection(DemoUpstream, occupancy=(occ, other_id))
    other.handle(ClientData(b"GET /healthz HTTP/1.1\r\n"), 1.0, 1.0)  # a head begun: busy
    assert other.handle(Shed(), 1.0, 1.0) == [] and len(occ) == 1


def test_a_trim_is_due_once_a_burst_is_over_and_not_more_often_than_trim_every():
    occ = Occupancy(1000)
    ids = [occ.opened(0.0) for _ in range(TRIM_PEAK)]
    assert not occ.trim_due(0.0)  # the burst goes on
    for conn in ids[:-3]:
        occ.closed(conn)
    assert occ.trim_due(1.0)  # down to a sixteenth of the peak: trim
    assert not occ.trim_due(1.5)  # once per burst
    more = [occ.opened(1.6) for _ in range(TRIM_PEAK)]
    for conn in more:
        occ.closed(conn)
    assert not occ.trim_due(1.7)  # another burst, but within TRIM_EVERY of the last trim
    assert occ.trim_due(1.0 + TRIM_EVERY)
    small = Occupancy(1000)
    for conn in [small.opened(0.0) for _ in range(TRIM_PEAK - 1)]:
        small.closed(conn)
    assert not small.trim_due(10.0)  # too small a peak to be worth a trim


def test_the_scale_is_one_up_to_half_the_cap_then_falls_linearly_to_shrink_to():
    occ = Occupancy(100)
    scales = []
    for _ in range(100):
        occ.opened(0.0)
        scales.append(occ.scale())
    assert scales[: int(100 * SHRINK_FROM)] == [1.0] * int(100 * SHRINK_FROM)
    assert scales[-1] == SHRINK_TO
    assert all(a >= b for a, b in zip(scales, scales[1:]))  # never grows as load rises
    assert abs(scales[74] - (1 + SHRINK_TO) / 2) < 1e-9  # three quarters full: half way


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 64), st.integers(0, 128), st.floats(0, 100), st.floats(0.001, 100))
def test_an_idle_deadline_only_ever_comes_sooner_and_never_before_idle_began(cap, load, since,
                                                                              wait):
    occ = Occupancy(cap)
    conn = occ.opened(since)
    assert conn is not None
    for _ in range(load):
        occ.opened(since)
    shrunk = occ.idle_deadline(conn, since + wait)
    assert since <= shrunk <= since + wait
    occ.busy(conn)
    assert occ.idle_deadline(conn, since + wait) == since + wait  # busy: its own deadline


def _crowded(cap: int, open_: int) -> tuple[Occupancy, int]:
    occ = Occupancy(cap)
    conn = occ.opened(0.0)
    assert conn is not None
    for _ in range(open_ - 1):
        occ.opened(0.0)
    return occ, conn


def test_an_idle_connection_near_the_cap_closes_when_its_shrunk_time_is_up():
    limits = ServerLimits(head_timeout=10.0, keepalive_timeout=75.0)
    occ, conn_id = _crowded(10, 10)  # at the cap: 10 s → 0.5 s
    conn = Connection(DemoUpstream, limits, occupancy=(occ, conn_id))
    assert conn.next_deadline() == 10.0 * SHRINK_TO
    assert conn.handle(DeadlineReached(), 0.4, 0.4) == []  # not yet
    assert conn.handle(DeadlineReached(), 0.5, 0.5) == [Close(linger=False)]
    assert len(occ) == 9

    quiet, quiet_id = _crowded(10, 5)  # half full: its own timeout
    calm = Connection(DemoUpstream, limits, occupancy=(quiet, quiet_id))
    assert calm.next_deadline() == 10.0
    assert calm.handle(DeadlineReached(), 5.0, 5.0) == []


def test_a_keep_alive_wait_shrinks_from_when_the_response_ended_and_a_head_begun_does_not():
    limits = ServerLimits(head_timeout=10.0, keepalive_timeout=75.0)
    occ, conn_id = _crowded(10, 10)
    conn = Connection(DemoUpstream, limits, occupancy=(occ, conn_id))
    out = conn.handle(ClientData(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"), 0.1, 0.1)
    assert any(type(a) is Write for a in out) and not conn.closed
    assert conn.next_deadline() == pytest.approx(0.1 + 75.0 * SHRINK_TO)  # idle from 0.1
    assert conn.handle(ClientData(b"GET /hea"), 1.0, 1.0) == []  # a head begun: busy
    assert conn.next_deadline() == 1.0 + 10.0  # its own head timeout, not shrunk
    assert conn.handle(DeadlineReached(), 4.0, 4.0) == [] and not conn.closed


def test_the_idle_are_woken_when_the_load_rises_into_a_higher_band_and_not_more_often():
    occ = Occupancy(32)  # eight bands between 16 and 32 open: 17 → 0, 18-19 → 1, 20-21 → 2
    woken: list[int] = []
    ids = []
    for t in range(16):  # half the cap: no band yet
        conn = occ.opened(float(t))
        assert conn is not None
        ids.append(conn)
        occ.wakers[conn] = lambda conn=conn: woken.append(conn)  # type: ignore[misc]
    assert woken == []
    occ.busy(ids[0])
    occ.opened(16.0)  # 17: the first band; the idle are woken, not the busy one
    assert sorted(woken) == ids[1:]
    woken.clear()
    occ.opened(16.1)  # 18: the next band
    assert sorted(woken) == ids[1:]
    woken.clear()
    occ.opened(16.2)  # 19: the same band
    assert woken == []
    for conn in ids[-2:]:
        occ.closed(conn)
    occ.opened(16.3)
    occ.opened(16.4)  # down a band and up again within WAKE_EVERY: no new round
    assert woken == []
    occ.opened(16.5)  # 20: a band higher than any woken for
    assert sorted(woken) == ids[1:-2]
