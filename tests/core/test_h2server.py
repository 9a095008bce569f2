"""The sans-IO HTTP/2 server connection (uniapi_core.http.h2server) and the protocol sniffing
of Connection, against an in-memory h2 client. R7 (abuse) and R8 (header injection) cases."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from hypothesis import given, settings
from hypothesis import strategies as st

from uniapi_core.http.h2server import (
    PREFACE,
    ConnectionOver,
    H2Limits,
    H2ServerConnection,
    StreamFailure,
    StreamGone,
    StreamRequest,
)
from uniapi_core.http.server import ServerLimits


def client() -> h2.connection.H2Connection:
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                             header_encoding=None))
    c.initiate_connection()
    return c


def request(c: h2.connection.H2Connection, body: bytes | None = b"{}",
            extra: list[tuple[bytes, bytes]] | None = None) -> int:
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, [(b":method", b"POST"), (b":path", b"/v1/chat/completions?x=1"),
                         (b":scheme", b"http"), (b":authority", b"gw.example"),
                         (b"authorization", b"Bearer sk-1")] + (extra or []),
                   end_stream=body is None)
    if body is not None:
        c.send_data(sid, body, end_stream=True)
    return sid


def pump(server: H2ServerConnection, c: h2.connection.H2Connection, now: float = 0.0) -> list:
    """Client bytes to the server; server bytes back to the client. Server events out."""
    data = c.data_to_send()
    events = server.receive_data(data, now) if data else []
    back = server.data_to_send()
    if back:
        try:
            c.receive_data(back)
        except h2.exceptions.ProtocolError:
            pass
    return events


def test_request_is_delivered_with_authority_as_host():
    c, s = client(), H2ServerConnection()
    sid = request(c, b'{"model": "m"}')
    [ev] = pump(s, c)
    assert isinstance(ev, StreamRequest) and ev.stream_id == sid
    req = ev.request
    assert (req.method, req.target, req.body, req.http_version) == \
        ("POST", "/v1/chat/completions?x=1", b'{"model": "m"}', "2")
    assert req.header("host") == "gw.example" and req.header("authorization") == "Bearer sk-1"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=300), max_size=20),
       st.integers(min_value=1, max_value=4))
def test_any_split_of_the_client_bytes_gives_the_same_requests(cuts, n):
    c = client()
    for i in range(n):
        request(c, b'{"i": %d}' % i + b" " * (i * 5000))
    wire = c.data_to_send()
    whole = [(e.stream_id, e.request) for e in H2ServerConnection().receive_data(wire, 0.0)]
    s, got, pos = H2ServerConnection(), [], 0
    for cut in cuts:
        if wire[pos:pos + cut]:
            got += s.receive_data(wire[pos:pos + cut], 0.0)
        pos += cut
    got += s.receive_data(wire[pos:], 0.0) if pos < len(wire) else []
    assert [(e.stream_id, e.request) for e in got] == whole
    assert len(whole) == n


def test_response_headers_with_cr_lf_nul_or_non_ascii_are_dropped():
    c, s = client(), H2ServerConnection()
    sid = request(c)
    pump(s, c)
    s.start_response(sid, 200, [("x-ok", "fine"), ("x-bad", "a\r\nset-cookie: x=1"),
                                ("x-nul", "a\x00b"), ("x-utf", "é"), ("bad name", "v"),
                                ("connection", "keep-alive")], content_length=2)
    s.send_data(sid, b"ok")
    s.end_response(sid, 0.0)
    evs = c.receive_data(s.data_to_send())
    [resp] = [e for e in evs if isinstance(e, h2.events.ResponseReceived)]
    names = [n for n, _ in resp.headers]
    assert (b"x-ok", b"fine") in resp.headers
    assert not {b"x-bad", b"x-nul", b"x-utf", b"bad name", b"connection", b"set-cookie"} & \
        set(names)
    assert any(isinstance(e, h2.events.StreamEnded) for e in evs)


def test_body_over_the_limit_is_a_413_stream_failure():
    c, s = client(), H2ServerConnection(ServerLimits(max_body=100))
    sid = request(c, b"x" * 1000)
    [ev] = pump(s, c)
    assert ev == StreamFailure(sid, 413, "request body too large")


def test_too_many_headers_is_431():
    c, s = client(), H2ServerConnection(ServerLimits(max_headers=5))
    sid = request(c, extra=[(b"x-%d" % i, b"v") for i in range(10)])
    [ev] = pump(s, c)
    assert isinstance(ev, StreamFailure) and (ev.stream_id, ev.status) == (sid, 431)


def test_rapid_reset_closes_after_exactly_the_sample_of_premature_resets():
    c, s = client(), H2ServerConnection()
    pump(s, c)
    for i in range(1, 200):
        sid = request(c, None)
        c.reset_stream(sid)
        evs = pump(s, c, now=i * 0.001)
        assert not [e for e in evs if isinstance(e, StreamRequest)]  # never delivered
        if evs:
            assert evs == [ConnectionOver("too many streams reset by the client (rapid reset)")]
            assert i == 100
            break
    else:
        raise AssertionError("never closed")
    assert s.closed


def test_resets_of_answered_streams_do_not_count():
    c, s = client(), H2ServerConnection()
    for i in range(300):
        sid = request(c)
        [ev] = pump(s, c, now=i * 0.01)
        s.start_response(sid, 200, [], content_length=None)
        s.send_data(sid, b"x")
        s.flush(i * 0.01)
        pump(s, c)
        c.reset_stream(sid)
        evs = pump(s, c, now=i * 0.01)
        assert evs == [StreamGone(sid)]
    assert not s.closed


def test_empty_data_frame_flood_closes():
    c, s = client(), H2ServerConnection(h2limits=H2Limits(max_empty_data=16))
    sid = request(c, b"")
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, [(b":method", b"POST"), (b":path", b"/"), (b":scheme", b"http"),
                         (b":authority", b"x")])
    pump(s, c)
    for _ in range(17):
        c.send_data(sid, b"")
    evs = pump(s, c)
    assert evs == [ConnectionOver("too many empty DATA frames")]


def test_ping_flood_closes():
    c, s = client(), H2ServerConnection(h2limits=H2Limits(max_control_per_s=50))
    pump(s, c)
    for i in range(60):
        c.ping(b"%08d" % i)
    evs = pump(s, c)
    assert evs == [ConnectionOver("control frame flood")]


def test_window_update_overflow_is_a_flow_control_error():
    c, s = client(), H2ServerConnection()
    pump(s, c)
    # a raw WINDOW_UPDATE that overflows our send window (65,535 + 2^31 - 1 > 2^31 - 1)
    from hyperframe.frame import WindowUpdateFrame

    frame = WindowUpdateFrame(0)
    frame.window_increment = 2**31 - 1
    evs = s.receive_data(frame.serialize(), 0.0)
    assert len(evs) == 1 and isinstance(evs[0], ConnectionOver)
    ended = [e for e in c.receive_data(s.data_to_send())
             if isinstance(e, h2.events.ConnectionTerminated)]
    assert ended and ended[0].error_code == h2.errors.ErrorCodes.FLOW_CONTROL_ERROR


def test_response_waits_for_window_and_stalls_out():
    c, s = client(), H2ServerConnection(h2limits=H2Limits(stall_timeout=5.0))
    sid = request(c)
    pump(s, c)
    s.start_response(sid, 200, [("content-type", "text/event-stream")])
    s.send_data(sid, b"x" * 200_000)
    s.flush(1.0)
    got = sum(len(e.data) for e in c.receive_data(s.data_to_send())
              if isinstance(e, h2.events.DataReceived))
    assert got == 65535 and s.backlog(sid) == 200_000 - 65535
    assert s.next_deadline() == 6.0
    assert s.deadline_reached(5.9) == []
    assert s.deadline_reached(6.0) == [StreamGone(sid)]
    resets = [e for e in c.receive_data(s.data_to_send()) if isinstance(e, h2.events.StreamReset)]
    assert resets and resets[0].error_code == h2.errors.ErrorCodes.CANCEL


def test_eof_and_goaway_end_the_connection():
    c, s = client(), H2ServerConnection()
    pump(s, c)
    assert s.receive_data(b"", 1.0) == [ConnectionOver("the client closed the connection")]
    s2 = H2ServerConnection()
    assert [type(e) for e in s2.receive_data(b"garbage that is not a preface", 0.0)] == \
        [ConnectionOver]


def test_idle_connection_times_out():
    s = H2ServerConnection(ServerLimits(head_timeout=2.0, keepalive_timeout=9.0), now=0.0)
    assert s.next_deadline() == 2.0
    assert s.deadline_reached(2.0) == [ConnectionOver("idle connection closed")]


def test_preface_constant():
    assert PREFACE == h2.connection.H2Connection().data_to_send()[:24] or \
        client().data_to_send().startswith(PREFACE)


def test_header_list_over_64k_closes_with_a_protocol_error():
    c, s = client(), H2ServerConnection()
    request(c, extra=[(b"x-big", b"a" * 70000)])
    assert pump(s, c) == [ConnectionOver("HTTP/2 protocol error: DenialOfServiceError")]


def test_continuation_flood_closes():
    import hyperframe.frame as frames

    c, s = client(), H2ServerConnection()
    pump(s, c)
    wire = frames.HeadersFrame(1).serialize()  # no END_HEADERS: CONTINUATION must follow
    wire += b"".join(frames.ContinuationFrame(1).serialize() for _ in range(100))
    [over] = s.receive_data(wire, 0.0)
    assert isinstance(over, ConnectionOver) and s.closed
