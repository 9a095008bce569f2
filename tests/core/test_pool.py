"""The upstream connection manager (uniapi_core/upstream.py) and the keep-alive pool
(uniapi_core/http/pool.py), driven with an injected clock: no sockets, no sleeps."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uniapi_core.http.client import ResponseData, ResponseEnd, ResponseHead
from uniapi_core.http.h2client import H2Link, StreamFailed
from uniapi_core.http.pool import IdlePool, UpstreamTimeouts
from uniapi_core.http.proxy import ProxyError, parse_proxy
from uniapi_core.relay import UpstreamData, UpstreamEnded, UpstreamFailed, UpstreamHead
from uniapi_core.upstream import (DONE, FAILED, HANDSHAKE, LOST, MAX_PARSED, ORIGIN, PROXY_TCP,
                                  RETRY, TIMEOUT, Collector, Connect, ConnectionManager, Full,
                                  H1Conn, Target, Wait, config_url_text, failure_kind, tunnel_open)
from uniapi_core.vendors.base import UpstreamRequest

IDLE = 10.0
ORIGIN_A = (None, ("http", "a.test", 80))
HTTPS = (None, ("https", "b.test", 443))


class Waiter:
    def __init__(self) -> None:
        self.is_set = False

    def set(self) -> None:
        self.is_set = True


# -- IdlePool: the state machine under random interleavings ---------------------------------

ops = st.lists(st.one_of(
    st.tuples(st.just("checkin"), st.integers(0, 2), st.integers(0, 30)),  # key, conn
    st.tuples(st.just("checkout"), st.integers(0, 2), st.just(0)),
    st.tuples(st.just("expire"), st.just(0), st.just(0)),
    st.tuples(st.just("tick"), st.integers(0, 120), st.just(0)),  # tenths of a second
), max_size=120)


@settings(max_examples=300, deadline=None)
@given(ops, st.integers(1, 4))
def test_idle_pool_keeps_its_cap_hands_out_once_and_expires_exactly(script, cap):
    pool: IdlePool[str] = IdlePool(max_idle=cap, idle=IDLE)
    now = 0.0
    idle: dict[str, tuple[int, float]] = {}  # model: conn → (key, idle since)
    out: set[str] = set()  # handed out (or never pooled yet)
    closed: set[str] = set()  # expired (returned by expire), never seen again
    for op, a, b in script:
        if op == "tick":
            now += a / 10
        elif op == "checkin":
            conn = f"c{b}"
            if conn in idle or conn in closed:
                continue  # a transport checks in only what it holds
            kept = pool.checkin(a, conn, now)
            live = [c for c, (k, t) in idle.items() if k == a and now < t + IDLE]
            assert kept == (len(live) < cap)
            if kept:
                idle[conn] = (a, now)
                out.discard(conn)
        elif op == "checkout":
            conn = pool.checkout(a, now)
            live = {c: t for c, (k, t) in idle.items() if k == a and now < t + IDLE}
            if conn is None:
                assert not live
            else:
                assert conn in live, "expired, foreign or already handed out"
                assert live[conn] == max(live.values())  # LIFO: the most recently idle
                assert conn not in out
                del idle[conn]
                out.add(conn)
        else:
            gone = pool.expire(now)
            assert len(gone) == len(set(gone))
            assert not set(gone) & closed
            for conn in gone:
                key, since = idle.pop(conn)
                assert now >= since + IDLE
            closed |= set(gone)
            assert all(now < t + IDLE for _, t in idle.values()), "expiry is exact"
        for key in range(3):  # the cap: never more than ``cap`` usable idle per key
            assert sum(1 for k, t in idle.values() if k == key and now < t + IDLE) <= cap
        assert len(pool) <= len(idle)
        # the next deadline: the oldest idle connection's expiry (due already if not yet
        # collected by expire)
        deadline = pool.next_deadline()
        assert deadline == (min(t for _, t in idle.values()) + IDLE if idle else None)
    # whatever is left comes back once on clear
    left = pool.clear()
    assert len(left) == len(set(left)) and set(left) == set(idle)


def test_idle_pool_expiry_boundary():
    pool: IdlePool[str] = IdlePool(max_idle=2, idle=IDLE)
    assert pool.checkin("k", "c", 5.0)
    assert pool.next_deadline() == 15.0
    assert pool.checkout("k", 14.999) == "c"
    assert pool.checkin("k", "c", 20.0)
    assert pool.checkout("k", 30.0) is None  # exactly idle seconds later: expired
    assert pool.expire(30.0) == ["c"] and pool.expire(30.0) == []


def test_idle_pool_refuses_past_its_cap_and_a_double_checkin():
    pool: IdlePool[str] = IdlePool(max_idle=1, idle=IDLE)
    assert pool.checkin("k", "a", 0.0)
    assert not pool.checkin("k", "b", 0.0)
    assert not pool.checkin("k", "a", 1.0)
    assert pool.checkin("other", "b", 0.0)


# -- routing -----------------------------------------------------------------------------------


def manager(**kw: float) -> ConnectionManager:
    return ConnectionManager(Waiter, UpstreamTimeouts(**kw) if kw else None)


def test_target_puts_the_urls_host_first_and_drops_the_callers():
    req = UpstreamRequest("POST", "https://api.test:8443/v1/x?q=1",
                          (("Host", "evil"), ("x-a", "1")), b"{}")
    t = manager().target(req, "http://u:secret@proxy.test:3128")
    assert isinstance(t, Target)
    assert t.headers == (("host", "api.test:8443"), ("x-a", "1"))
    assert t.key == (parse_proxy("http://u:secret@proxy.test:3128"), ("https", "api.test", 8443))
    assert t.url.target == "/v1/x?q=1" and t.body == b"{}"


def test_target_reports_bad_urls_without_the_proxy_credentials():
    bad = manager().target(UpstreamRequest("GET", "ftp://x", ()), None)
    assert isinstance(bad, UpstreamFailed) and bad.message.startswith("bad upstream URL: ")
    bad = manager().target(UpstreamRequest("GET", "http://x/", ()),
                                   "gopher://u:hunter2@p")
    assert isinstance(bad, UpstreamFailed) and bad.message.startswith("bad proxy URL: ")
    assert "hunter2" not in bad.message and bad.kind == "connect"


def test_concurrent_first_requests_share_one_connect_and_its_failure():
    m = manager()
    first = m.route(HTTPS, 0.0)
    assert isinstance(first, Connect) and first.pending is not None
    second = m.route(HTTPS, 0.0)
    assert isinstance(second, Wait) and second.pending is first.pending
    failure = m.connect_failure(HTTPS, ORIGIN, LOST, ConnectionRefusedError(
        errno.ECONNREFUSED, "refused"))
    waiter = m.connect_over(HTTPS, first, failure)
    assert waiter is first.pending.waiter and second.pending.failure == failure
    assert failure.message == "cannot connect to b.test: connection refused"
    assert isinstance(m.route(HTTPS, 0.0), Connect)  # the next request tries again


def test_an_abandoned_connect_lets_the_waiters_connect_themselves():
    m = manager()
    first = m.route(HTTPS, 0.0)
    m.connect_over(HTTPS, first, None)
    assert first.pending.failure is None
    assert isinstance(m.route(HTTPS, 0.0), Connect)


def test_an_https_origin_without_h2_goes_to_the_keep_alive_pool():
    m = manager()
    assert not m.adopt(HTTPS, "http/1.1")
    assert m.route(HTTPS, 0.0) == Connect(None)
    assert m.adopt(HTTPS, "h2")
    assert not m.adopt(ORIGIN_A, None) and ORIGIN_A not in m.h2.h1_only


def test_http2_links_are_picked_while_they_can_open_a_stream():
    m = manager()
    link = H2Link(HTTPS)
    m.h2.add(link)
    assert m.route(HTTPS, 0.0) is link
    assert isinstance(m.route(HTTPS, 0.0, avoid=link), Connect)  # a retry avoids it


def complete(conn: H1Conn) -> None:
    conn.h11.send_request("GET", "/", (("host", "a.test"),), b"")
    conn.h11.receive_data(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")


def test_release_pools_a_completed_keep_alive_connection_and_closes_the_rest():
    m = manager(idle=IDLE)
    done, failed = H1Conn(ORIGIN_A), H1Conn(ORIGIN_A)
    complete(done)
    assert m.release(done, DONE, 0.0) == []
    assert m.release(failed, FAILED, 0.0) == [failed]
    assert m.release(H1Conn(ORIGIN_A), None, 0.0)  # abandoned: never pooled
    assert m.route(ORIGIN_A, 1.0) is done
    assert m.route(ORIGIN_A, 1.0) == Connect(None)
    complete(done)
    m.release(done, DONE, 2.0)
    assert m.route(ORIGIN_A, 3.0, retried=True) == Connect(None)  # a retry takes a fresh one
    assert m.release(H2Link(HTTPS), DONE, 2.0 + IDLE) == [done]  # expired meanwhile


# -- attempts: the two retry rules ------------------------------------------------------------


def h1_attempt(m: ConnectionManager, fresh: bool, retried: bool = False):
    conn = H1Conn(ORIGIN_A)
    target = manager().target(UpstreamRequest("GET", "http://a.test/x", ()), None)
    attempt = m.attempt(conn, target, fresh, retried)
    assert attempt.start().startswith(b"GET /x HTTP/1.1\r\nhost: a.test\r\n")
    return attempt


def test_a_reused_connection_closed_before_any_byte_is_retried_once():
    m = manager()
    eof = h1_attempt(m, fresh=False)
    eof.feed(b"")
    assert eof.outcome == RETRY and eof.take() == []
    reset = h1_attempt(m, fresh=False)
    reset.lost(ConnectionResetError(errno.ECONNRESET, "reset"))
    assert reset.outcome == RETRY
    for fresh, retried in ((True, False), (False, True)):  # a fresh or second try: reported
        a = h1_attempt(m, fresh, retried)
        a.lost(ConnectionResetError(errno.ECONNRESET, "reset"))
        assert a.outcome == FAILED
        assert a.take() == [UpstreamFailed(0, "reset", "connection lost: connection reset")]


def test_a_connection_lost_after_the_first_byte_is_not_retried():
    a = h1_attempt(manager(), fresh=False)
    a.feed(b"HTTP/1.1 200 OK\r\ncontent-le")
    a.lost(BrokenPipeError(errno.EPIPE, "pipe"))
    assert a.outcome == FAILED
    assert a.take() == [UpstreamFailed(0, "reset", "connection lost: broken pipe")]


def test_an_h1_response_becomes_relay_events():
    a = h1_attempt(manager(), fresh=True)
    a.feed(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi")
    assert a.outcome == DONE
    assert a.take() == [UpstreamHead(0, 200, (("content-length", "2"),)),
                        UpstreamData(0, b"hi"), UpstreamEnded(0)]


def h2_attempt(retried: bool):
    m = manager()
    link = H2Link(HTTPS)
    target = manager().target(UpstreamRequest("GET", "https://b.test/x", ()), None)
    attempt = m.attempt(link, target, True, retried)
    attempt.start(object())
    return attempt


def test_a_refused_stream_is_retried_once_if_nothing_came_back():
    refused = StreamFailed("reset", "upstream reset the stream (REFUSED_STREAM)", True)
    a = h2_attempt(retried=False)
    a.feed(refused)
    assert a.outcome == RETRY and a.take() == []
    a = h2_attempt(retried=True)
    a.feed(refused)
    assert a.outcome == FAILED and a.take() == [UpstreamFailed(0, "reset", refused.message)]
    a = h2_attempt(retried=False)
    a.feed(ResponseHead(200, (), ""))
    a.feed(refused)
    assert a.outcome == FAILED
    a = h2_attempt(retried=False)
    a.feed(StreamFailed("reset", "upstream reset the stream (CANCEL)"))
    assert a.outcome == FAILED


def test_an_h2_stream_becomes_relay_events():
    a = h2_attempt(retried=False)
    for ev in (ResponseHead(200, (), ""), ResponseData(b"x"), ResponseEnd()):
        a.feed(ev)
    assert a.outcome == DONE
    assert a.take() == [UpstreamHead(0, 200, ()), UpstreamData(0, b"x"), UpstreamEnded(0)]


# -- failure text ------------------------------------------------------------------------------


def test_connect_failure_texts():
    m = manager()
    proxy = parse_proxy("socks5://u:pw@127.0.0.1:1080")
    key = (proxy, ("https", "api.test", 443))
    reset = ConnectionResetError(errno.ECONNRESET, "x")
    via = " through proxy socks5://127.0.0.1:1080"
    assert m.connect_failure(key, HANDSHAKE, TIMEOUT, TimeoutError()).message == (
        f"connecting to api.test{via} timed out")
    assert m.connect_failure(key, PROXY_TCP, LOST, reset).message == (
        "proxy socks5://127.0.0.1:1080: cannot connect: connection reset")
    assert m.connect_failure(key, HANDSHAKE, LOST, reset).message == (
        "proxy socks5://127.0.0.1:1080: connection lost during the handshake: "
        "connection reset")
    refused = ProxyError("the proxy rejected the user name and password")
    assert m.connect_failure(key, HANDSHAKE, failure_kind(refused, ()), refused).message == (
        "proxy socks5://127.0.0.1:1080: the proxy rejected the user name and password")
    assert m.connect_failure(key, ORIGIN, LOST, reset).message == (
        f"cannot connect to api.test{via}: connection reset")
    # an OS-level ETIMEDOUT is an OS error, not the deadline
    os_timeout = TimeoutError(errno.ETIMEDOUT, "timed out")
    assert m.connect_failure(key[:1] + ((("http", "a", 80)),), ORIGIN, TIMEOUT,
                             os_timeout).message.startswith("cannot connect to a")
    assert "pw" not in repr([m.connect_failure(key, s, LOST, reset)
                             for s in (ORIGIN, PROXY_TCP, HANDSHAKE)])


def test_failure_kind_reads_the_transports_table_in_order():
    table = ((TimeoutError, TIMEOUT), ((OSError,), LOST))
    assert failure_kind(TimeoutError(), table) == TIMEOUT
    assert failure_kind(ConnectionResetError(), table) == LOST
    assert failure_kind(KeyError(), table) is None


def test_tunnel_with_leftover_bytes_is_refused():
    class Hs:
        leftover = b"\x16\x03"

    with pytest.raises(ProxyError, match="unexpected bytes"):
        tunnel_open(Hs())


def test_collector_and_config_url_text():
    got = Collector(max_bytes=3)
    got.add(UpstreamHead(0, 200, ()))
    with pytest.raises(Full):
        got.add(UpstreamData(0, b"abcd"))
    assert got.image(None).truncated
    whole = Collector()
    whole.add(UpstreamHead(0, 200, ()))
    whole.add(UpstreamData(0, "é".encode()))
    assert config_url_text("u", whole.result()) == "é"
    whole.add(UpstreamFailed(0, "reset", "connection lost: connection reset"))
    with pytest.raises(ValueError, match="^cannot fetch CONFIG_URL u: connection lost"):
        config_url_text("u", whole.result())
    with pytest.raises(ValueError, match="answered HTTP 404"):
        config_url_text("u", (404, b""))
    with pytest.raises(ValueError, match="not UTF-8"):
        config_url_text("u", (200, b"\xff"))


def test_busy_reuse_keeps_the_pool_bookkeeping_bounded():
    """A connection checked in and out 100,000 times inside one idle period leaves one entry,
    not one per check-in (at 2,000 requests/s that was 120,000 entries, about 11 MB)."""
    pool: IdlePool[object] = IdlePool(idle=60.0)
    conn, now = object(), 0.0
    for _ in range(100_000):
        assert pool.checkin("k", conn, now)
        assert pool.checkout("k", now) is conn
        now += 0.0005
    assert pool.checkin("k", conn, now)
    assert len(pool._order) == 1 and len(pool) == 1
    assert pool.next_deadline() == now + 60.0


def test_target_parses_each_url_once_and_stays_bounded():
    m = manager()
    a = m.target(UpstreamRequest("GET", "http://a.test/x", (), b""), None, ref=3)
    b = m.target(UpstreamRequest("GET", "http://a.test/x", (), b""), None, ref=4)
    assert isinstance(a, Target) and isinstance(b, Target)
    assert a.url is b.url and (a.ref, b.ref) == (3, 4)  # parsed once, events keep their ref
    bad = m.target(UpstreamRequest("GET", "ftp://x", ()), None, ref=5)
    assert isinstance(bad, UpstreamFailed) and bad.ref == 5
    for i in range(MAX_PARSED + 10):
        m.target(UpstreamRequest("GET", f"http://h{i}.test/", ()), None)
    assert len(m._parsed) <= MAX_PARSED
