"""http/occupancy.py: at the cap, the connection idle the longest makes room; a busy one
never does; counts and bounds hold under any order of events (hypothesis)."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from uniapi_core.connection import Connection
from uniapi_core.demo import DemoUpstream
from uniapi_core.events import ClientData, Close, Shed
from uniapi_core.http.occupancy import TRIM_EVERY, TRIM_PEAK, Occupancy


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
