"""H2ClientConnection: requests out, per-stream response events in, flow control, and every way
an HTTP/2 upstream can fail a stream or the connection.

In-memory bytes against an independent h2 server connection; at the end, the threaded fake
upstream (tests/fakes/h2upstream.py) over real sockets, h2c and TLS/ALPN.
"""

from __future__ import annotations

import json
import socket
import ssl

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes.h2upstream import FakeH2Upstream, H2Reply
from uniapi_core.http import ResponseData, ResponseEnd, ResponseHead
from uniapi_core.http.h2client import H2ClientConnection, StreamFailed

CHAT = "/v1/chat/completions"

# -- helpers -----------------------------------------------------------------------------------


class Pair:
    """A client and an in-memory h2 server; ``pump`` moves bytes until both are quiet."""

    def __init__(self, server_settings: dict | None = None, **client_kw) -> None:
        self.client = H2ClientConnection(**client_kw)
        self.server = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None))
        if server_settings:
            self.server.local_settings = h2.settings.Settings(
                client=False, initial_values=server_settings)
        self.server.initiate_connection()
        self.server_events: list = []
        self.requests: dict[int, dict] = {}
        self.events: list[tuple[int, object]] = []
        self.auto_ack_server = True
        self.to_server(self.client.initiate())
        self.pump()

    def to_server(self, data: bytes) -> None:
        if not data:
            return
        for ev in self.server.receive_data(data):
            self.server_events.append(ev)
            if isinstance(ev, h2.events.RequestReceived):
                self.requests[ev.stream_id] = {"headers": list(ev.headers), "body": b"",
                                               "ended": False}
            elif isinstance(ev, h2.events.DataReceived):
                self.requests[ev.stream_id]["body"] += ev.data
                if self.auto_ack_server:
                    self.server.acknowledge_received_data(ev.flow_controlled_length,
                                                          ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                self.requests[ev.stream_id]["ended"] = True

    def to_client(self, data: bytes) -> list[tuple[int, object]]:
        evs = self.client.receive_data(data)
        self.events += evs
        return evs

    def pump(self) -> list[tuple[int, object]]:
        got: list[tuple[int, object]] = []
        for _ in range(1000):
            s2c = self.server.data_to_send()
            if s2c:
                got += self.to_client(s2c)
            c2s = self.client.data_to_send()
            if c2s:
                self.to_server(c2s)
            if not s2c and not c2s:
                return got
        raise AssertionError("pump did not settle")

    def request(self, body: bytes = b'{"model":"m"}', headers=(), method="POST",
                target=CHAT) -> int:
        sid, out = self.client.send_request(method, target, "api.test", "https",
                                            [("content-type", "application/json"),
                                             *headers], body)
        self.to_server(out)
        self.pump()
        return sid

    def respond(self, sid: int, body: bytes = b"", status: int = 200, headers=(),
                end: bool = True) -> None:
        self.server.send_headers(sid, [(b":status", str(status).encode()), *headers],
                                 end_stream=end and not body)
        if body:
            self.send(sid, body, end=end)

    def send(self, sid: int, data: bytes, end: bool = False) -> None:
        """DATA frames of at most 16 KiB (the client's max frame size)."""
        for i in range(0, len(data), 16384):
            self.server.send_data(sid, data[i:i + 16384],
                                  end_stream=end and i + 16384 >= len(data))


def per_stream(events) -> dict[int, tuple]:
    """Per stream: (head, joined body, terminal event) with ordering checked."""
    out: dict[int, list] = {}
    for sid, ev in events:
        rec = out.setdefault(sid, [None, b"", None])
        assert rec[2] is None, f"event after the end on stream {sid}: {ev}"
        if isinstance(ev, ResponseHead):
            assert rec[0] is None and not rec[1]
            rec[0] = ev
        elif isinstance(ev, ResponseData):
            assert rec[0] is not None and ev.data
            rec[1] += ev.data
        else:
            assert isinstance(ev, (ResponseEnd, StreamFailed))
            rec[2] = ev
    return {sid: tuple(rec) for sid, rec in out.items()}


def h(headers) -> dict[bytes, bytes]:
    return {bytes(n): bytes(v) for n, v in headers}


# -- connection setup --------------------------------------------------------------------------


def test_initiate_sends_our_settings_and_opens_the_connection_window():
    p = Pair(max_inbound_window=1 << 20, stream_window=32768)
    changed = [e for e in p.server_events if isinstance(e, h2.events.RemoteSettingsChanged)]
    values = {k: v.new_value for k, v in changed[0].changed_settings.items()}
    assert values[h2.settings.SettingCodes.ENABLE_PUSH] == 0
    assert values[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] == 32768
    assert h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL not in values
    assert p.server.outbound_flow_control_window == 1 << 20
    assert p.client.can_open and p.client.available_streams == 100
    assert p.client.open_streams == 0 and not p.client.closed


def test_constructor_and_call_order_are_checked():
    with pytest.raises(ValueError):
        H2ClientConnection(max_inbound_window=1000)
    with pytest.raises(ValueError):
        H2ClientConnection(stream_window=0)
    c = H2ClientConnection()
    assert not c.can_open
    with pytest.raises(RuntimeError):
        c.send_request("GET", "/", "a.test", "https", [], b"")
    c.initiate()
    with pytest.raises(RuntimeError):
        c.initiate()


# -- request / response --------------------------------------------------------------------------


def test_request_and_response():
    p = Pair()
    sid = p.request(b'{"model":"m"}', headers=[("authorization", "Bearer k"),
                                              ("x-latin", "caf\xe9")])
    assert sid == 1 and p.client.open_streams == 1
    req = p.requests[1]
    assert req["ended"] and req["body"] == b'{"model":"m"}'
    assert req["headers"][:4] == [(b":method", b"POST"), (b":scheme", b"https"),
                                  (b":authority", b"api.test"), (b":path", CHAT.encode())]
    hd = h(req["headers"])
    assert hd[b"content-length"] == b"13" and hd[b"authorization"] == b"Bearer k"
    assert hd[b"x-latin"] == "caf\xe9".encode("latin-1")

    p.respond(1, b'{"ok":true}', headers=[(b"content-type", b"application/json"),
                                          (b"x-v", b"\xe9t\xe9")])
    evs = p.pump()
    head, body, end = per_stream(evs)[1]
    assert head == ResponseHead(200, (("content-type", "application/json"),
                                      ("x-v", "\xe9t\xe9")), "")
    assert head.header("Content-Type") == "application/json"
    assert body == b'{"ok":true}' and end == ResponseEnd()
    assert p.client.open_streams == 0 and p.client.can_open and not p.client.closed


def test_get_without_body_ends_with_the_headers_and_has_no_content_length():
    p = Pair()
    p.request(b"", method="GET", target="/v1/models")
    hd = h(p.requests[1]["headers"])
    assert p.requests[1]["ended"] and b"content-length" not in hd
    p.respond(1, b"[]")
    assert per_stream(p.pump())[1][1:] == (b"[]", ResponseEnd())


def test_post_with_empty_body_sends_content_length_zero():
    p = Pair()
    p.request(b"")
    assert h(p.requests[1]["headers"])[b"content-length"] == b"0"
    assert p.requests[1]["ended"]


def test_headers_are_cleaned_and_connection_specific_ones_dropped():
    p = Pair()
    sid, out = p.client.send_request("POST", CHAT, "", "http", [
        ("Host", "origin.test:8443"),
        ("X-Ok", "  fine  "),
        ("x-crlf", "a\r\nx-injected: 1"),
        ("x-lf", "a\nb"),
        ("x-nul", "a\x00b"),
        ("x-ctl", "a\x01b"),
        ("x-uni", "\u2603"),
        ("bad name", "v"),
        ("Connection", "keep-alive, X-Hop"),
        ("x-hop", "1"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "h2c"),
        ("content-length", "999"),
        ("te", "gzip"),
        ("TE", "trailers"),
    ], b"{}")
    p.to_server(out)
    req = p.requests[sid]["headers"]
    names = [n for n, _ in req]
    assert req[:4] == [(b":method", b"POST"), (b":scheme", b"http"),
                       (b":authority", b"origin.test:8443"), (b":path", CHAT.encode())]
    assert h(req)[b"x-ok"] == b"fine"
    assert h(req)[b"content-length"] == b"2"
    assert h(req)[b"te"] == b"trailers"
    assert h(req)[b"accept-encoding"] == b"identity"  # as over HTTP/1.1 (RFC 9110 §12.5.3)
    for gone in (b"host", b"x-crlf", b"x-lf", b"x-nul", b"x-ctl", b"x-uni", b"connection",
                 b"x-hop", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                 b"upgrade", b"x-injected", b"bad name"):
        assert gone not in names
    assert names.count(b"te") == 1 and names.count(b"content-length") == 1


@pytest.mark.parametrize("args", [
    ("GE T", CHAT, "a.test", "https"),
    ("CONNECT", CHAT, "a.test", "https"),
    ("POST", "/a b", "a.test", "https"),
    ("POST", "", "a.test", "https"),
    ("POST", CHAT, "a.test", "ftp"),
    ("POST", CHAT, "a test", "https"),
    ("POST", CHAT, "user@a.test", "https"),
    ("POST", CHAT, "", "https"),  # and no Host header either
])
def test_bad_request_arguments_raise_value_error(args):
    p = Pair()
    with pytest.raises(ValueError):
        p.client.send_request(*args, [], b"")
    assert p.client.can_open and p.client.open_streams == 0


def test_response_headers_with_control_characters_are_dropped_like_h1():
    p = Pair()
    p.request()
    p.respond(1, b"x", headers=[(b"x-ctl", b"a\x01b"), (b"x-good", b"v")])
    head = per_stream(p.pump())[1][0]
    assert head.headers == (("x-good", "v"),)


def test_interim_responses_are_skipped_and_trailers_dropped():
    p = Pair()
    p.request()
    p.server.send_headers(1, [(b":status", b"100")])
    p.server.send_headers(1, [(b":status", b"103"), (b"link", b"</a>")])
    p.server.send_headers(1, [(b":status", b"200")])
    p.server.send_data(1, b"body")
    p.server.send_headers(1, [(b"x-trailer", b"1")], end_stream=True)
    evs = p.pump()
    assert [type(e) for _, e in evs] == [ResponseHead, ResponseData, ResponseEnd]
    assert evs[0][1].status == 200


def test_concurrent_streams_interleaved():
    p = Pair()
    sids = [p.request(json.dumps({"n": i}).encode()) for i in range(5)]
    assert sids == [1, 3, 5, 7, 9] and p.client.open_streams == 5
    assert p.client.available_streams == 95
    for sid in reversed(sids):
        p.server.send_headers(sid, [(b":status", b"200")])
    for piece in range(3):
        for sid in sids:
            p.server.send_data(sid, f"{sid}:{piece};".encode())
    for sid in sids[1:]:
        p.server.end_stream(sid)
    got = per_stream(p.pump())
    assert set(got) == set(sids)
    for sid in sids:
        assert got[sid][1] == f"{sid}:0;{sid}:1;{sid}:2;".encode()
    assert got[1][2] is None and all(got[s][2] == ResponseEnd() for s in sids[1:])
    assert p.client.open_streams == 1
    p.server.end_stream(1)
    assert p.pump() == [(1, ResponseEnd())]
    assert p.client.open_streams == 0


# -- flow control --------------------------------------------------------------------------------


def test_big_request_body_waits_for_window_updates():
    p = Pair()
    body = bytes(range(256)) * 1200  # 300 KiB > the server's 64 KiB windows
    sid, out = p.client.send_request("POST", CHAT, "api.test", "https", [], body)
    p.auto_ack_server = False
    p.to_server(out)
    assert len(p.requests[sid]["body"]) == 65535 and not p.requests[sid]["ended"]
    assert p.client.data_to_send() == b""  # nothing more until the server opens the window
    p.auto_ack_server = True
    p.server.acknowledge_received_data(65535, sid)
    p.pump()
    assert p.requests[sid]["body"] == body and p.requests[sid]["ended"]
    p.respond(sid, b"ok")
    assert per_stream(p.pump())[sid][1:] == (b"ok", ResponseEnd())


def test_response_data_is_not_acknowledged_until_the_caller_says_so():
    p = Pair(stream_window=65536)
    sid = p.request()
    p.respond(sid, end=False)
    p.pump()
    assert p.server.local_flow_control_window(sid) == 65536
    p.send(sid, b"x" * 65536)
    evs = p.pump()
    assert sum(len(e.data) for _, e in evs if isinstance(e, ResponseData)) == 65536
    # The slow consumer has acknowledged nothing: the server must stop.
    assert p.server.local_flow_control_window(sid) == 0
    p.to_server(p.client.acknowledge(sid, 40000))
    assert p.server.local_flow_control_window(sid) == 40000
    # Acknowledging more than was received is clamped (h2 batches small updates: the rest
    # goes out with the next big enough acknowledgement); unknown streams are fine.
    p.to_server(p.client.acknowledge(sid, 10**9))
    p.send(sid, b"y" * 40000)
    p.pump()
    p.to_server(p.client.acknowledge(sid, 10**9))
    assert p.server.local_flow_control_window(sid) == 65536
    assert p.client.acknowledge(99, 5) == b""
    assert p.client.acknowledge(sid, 1) == b""


def test_connection_window_bounds_many_slow_streams():
    p = Pair(max_inbound_window=100_000, stream_window=65536)
    a, b = p.request(), p.request()
    for sid in (a, b):
        p.respond(sid, end=False)
    p.pump()
    p.send(a, b"a" * 65536)
    p.pump()
    assert p.server.local_flow_control_window(b) == 100_000 - 65536
    p.to_server(p.client.acknowledge(a, 65536))
    assert p.server.local_flow_control_window(b) == 65536


def test_padding_is_acknowledged_automatically():
    p = Pair(stream_window=65536)
    sid = p.request()
    p.respond(sid, end=False)
    for _ in range(200):
        p.server.send_data(sid, b"", pad_length=255)
    evs = p.pump()
    assert not [e for _, e in evs if isinstance(e, ResponseData)]
    # 51200 flow-controlled bytes, all padding: without the automatic acknowledgement the
    # server would be down to 14336; h2 sends the update once half the window is processed.
    assert p.server.local_flow_control_window(sid) == 65536 - 51200 + 32768


def test_early_response_stops_the_request_body():
    p = Pair()
    body = b"z" * 200_000
    sid, out = p.client.send_request("POST", CHAT, "api.test", "https", [], body)
    p.auto_ack_server = False
    p.to_server(out)
    p.respond(sid, b"too big", status=413)
    evs = p.pump()
    assert per_stream(evs)[sid][0].status == 413 and per_stream(evs)[sid][2] == ResponseEnd()
    resets = [e for e in p.server_events if isinstance(e, h2.events.StreamReset)]
    assert resets and resets[-1].error_code == h2.errors.ErrorCodes.NO_ERROR
    p.server.acknowledge_received_data(65535, sid)
    p.pump()
    assert len(p.requests[sid]["body"]) == 65535  # nothing more was sent


# -- failures ------------------------------------------------------------------------------------


def test_server_reset_fails_only_that_stream():
    p = Pair()
    a, b = p.request(), p.request()
    p.respond(a, end=False)
    p.server.send_data(a, b"partial")
    p.server.reset_stream(a, h2.errors.ErrorCodes.INTERNAL_ERROR)
    p.server.reset_stream(b, h2.errors.ErrorCodes.REFUSED_STREAM)
    got = per_stream(p.pump())
    assert got[a][1] == b"partial"
    assert got[a][2] == StreamFailed("reset", "upstream reset the stream (INTERNAL_ERROR)")
    assert got[b][2].kind == "reset" and got[b][2].unprocessed
    assert not p.client.closed and p.client.can_open and p.client.open_streams == 0
    # A later request on the same connection works.
    c = p.request()
    p.respond(c, b"ok")
    assert per_stream(p.pump())[c][1:] == (b"ok", ResponseEnd())


def test_graceful_goaway_lets_lower_streams_finish():
    p = Pair()
    s1, s3, s5 = p.request(), p.request(), p.request()
    p.respond(s1, end=False)
    p.pump()
    p.server.close_connection(last_stream_id=s3)  # NO_ERROR: streams 1 and 3 still served
    evs = p.pump()
    assert evs == [(s5, StreamFailed("reset", evs[0][1].message, True))]
    assert not p.client.can_open and p.client.available_streams == 0
    with pytest.raises(RuntimeError):
        p.client.send_request("POST", CHAT, "api.test", "https", [], b"")
    # h2 (the server side) refuses to send after its own GOAWAY: hand-craft the frames.
    p.to_client(_frame(0x1, 0x4, s3, _hpack_status_200()))  # HEADERS :status 200
    p.to_client(_frame(0x0, 0x0, s1, b"one"))
    p.to_client(_frame(0x0, 0x1, s1, b"!"))  # DATA END_STREAM
    assert not p.client.closed
    p.to_client(_frame(0x0, 0x1, s3, b"three"))
    got = per_stream(p.events)
    assert got[s1][1:] == (b"one!", ResponseEnd())
    assert got[s3][1:] == (b"three", ResponseEnd())
    assert p.client.closed


def test_goaway_with_error_fails_every_stream():
    p = Pair()
    s1, s3 = p.request(), p.request()
    p.server.close_connection(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, last_stream_id=s1)
    got = per_stream(p.pump())
    assert got[s1][2] == StreamFailed(
        "reset", "upstream closed the connection (ENHANCE_YOUR_CALM)", False)
    assert got[s3][2].unprocessed
    assert p.client.closed and not p.client.can_open
    assert p.client.receive_data(b"more") == []


def test_eof_fails_every_open_stream():
    p = Pair()
    s1, s3 = p.request(), p.request()
    p.respond(s1, b"done")
    p.pump()
    evs = p.to_client(b"")
    assert evs == [(s3, StreamFailed("eof", "upstream closed the connection"))]
    assert p.client.closed and not p.client.can_open and p.client.open_streams == 0
    assert p.client.receive_data(b"") == []


@pytest.mark.parametrize("garbage", [
    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
    b"\x00" * 64,
    b"\x00\x00\x08\x07\x00\x00\x00\x00\x01" + b"\x00" * 8,  # GOAWAY on a stream
    b"\xff\xff\xff\x07\x00\x00\x00\x00\x00",  # oversize GOAWAY
    b"\x00\x00\x04\x00\x00\x00\x00\x00\x07abcd",  # DATA on an idle stream
])
def test_garbage_fails_all_streams_without_raising(garbage):
    p = Pair()
    s1, s3 = p.request(), p.request()
    p.respond(s1, end=False)
    p.pump()
    evs = p.to_client(garbage)
    got = per_stream(p.events)
    assert {sid for sid, _ in evs} == {s1, s3}
    assert all(got[s][2].kind == "protocol" for s in (s1, s3))
    assert p.client.closed and not p.client.can_open
    assert 0x7 in _frame_types(p.client.data_to_send())  # a GOAWAY for the server
    assert p.client.receive_data(b"anything") == []


def test_push_promise_is_a_protocol_error():
    p = Pair()
    s1 = p.request()
    # h2 will not push to a peer that disabled push: craft PUSH_PROMISE by hand.
    p.to_client(_frame(0x5, 0x4, s1, b"\x00\x00\x00\x02" + _hpack_status_200()))
    assert per_stream(p.events)[s1][2].kind == "protocol" and p.client.closed


def test_cancel_resets_and_releases_the_window():
    p = Pair(max_inbound_window=65535 * 2, stream_window=65535)
    a, b = p.request(), p.request()
    p.respond(a, end=False)
    p.pump()
    p.send(a, b"a" * 65535)
    p.pump()  # nothing acknowledged: half the connection window is held by stream a
    seen = len(p.events)
    out = p.client.cancel(a)
    p.to_server(out)
    resets = [e for e in p.server_events if isinstance(e, h2.events.StreamReset)]
    assert resets[-1].stream_id == a and resets[-1].error_code == h2.errors.ErrorCodes.CANCEL
    assert p.client.open_streams == 1
    # Frames the server had in flight for a are dropped, and their window comes back too.
    p.to_client(_frame(0x0, 0x0, a, b"late"))
    p.pump()
    assert [sid for sid, _ in p.events[seen:] if sid == a] == []
    assert p.server.outbound_flow_control_window == 65535 * 2  # (late bytes: not counted there)
    p.respond(b, b"b")
    got = per_stream(p.pump())
    assert a not in got and got[b][1:] == (b"b", ResponseEnd())
    # Safe on finished, cancelled and unknown streams.
    assert p.client.cancel(b) == b""
    assert p.client.cancel(a) == b""
    assert p.client.cancel(12345) == b""


def test_cancel_after_end_releases_unacknowledged_data():
    p = Pair(max_inbound_window=65535, stream_window=65535)
    a = p.request()
    p.respond(a, b"x" * 65535)
    p.pump()
    assert p.server.outbound_flow_control_window == 0
    p.to_server(p.client.cancel(a))  # done with it without acknowledging: window returns
    assert p.server.outbound_flow_control_window == 65535


def test_server_max_concurrent_streams_is_respected():
    p = Pair(server_settings={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 2})
    assert p.client.available_streams == 2
    a, b = p.request(), p.request()
    assert not p.client.can_open and p.client.available_streams == 0
    with pytest.raises(RuntimeError):
        p.client.send_request("POST", CHAT, "api.test", "https", [], b"")
    p.respond(a, b"ok")
    p.pump()
    assert p.client.can_open and p.client.available_streams == 1
    p.to_server(p.client.cancel(b))
    assert p.client.available_streams == 2


def test_ping_is_answered():
    p = Pair()
    p.server.ping(b"12345678")
    p.pump()
    acks = [e for e in p.server_events if isinstance(e, h2.events.PingAckReceived)]
    assert acks and acks[0].ping_data == b"12345678"


def test_close_sends_goaway():
    p = Pair()
    p.request()
    p.to_server(p.client.close())
    assert any(isinstance(e, h2.events.ConnectionTerminated) for e in p.server_events)
    assert p.client.closed and p.client.open_streams == 0


# -- hand-made frames (for what the h2 server object refuses to send) --------------------------


def _frame(ftype: int, flags: int, sid: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + \
        payload


def _frame_types(data: bytes) -> list[int]:
    types = []
    while len(data) >= 9:
        types.append(data[3])
        data = data[9 + int.from_bytes(data[:3], "big"):]
    return types


def _hpack_status_200() -> bytes:
    return b"\x88"  # static table index 8: :status 200


# -- byte-split invariance -----------------------------------------------------------------------


def _scenario() -> tuple[list[int], bytes]:
    """Stream ids and the server's whole byte stream for a busy connection (the requests are
    the ones ``_fresh_client`` sends)."""
    p = Pair(stream_window=65536)
    sids = [p.request(json.dumps({"i": i}).encode()) for i in range(4)]
    p.server.ping(b"pingpong")
    p.server.send_headers(sids[0], [(b":status", b"100")])
    for i, sid in enumerate(sids):
        p.server.send_headers(sid, [(b":status", b"200"), (b"x-i", str(i).encode())])
    for piece in range(6):
        for sid in sids:
            p.server.send_data(sid, bytes([65 + piece]) * (sid * 300 + piece),
                               pad_length=piece if piece % 2 else None)
    p.server.reset_stream(sids[1], h2.errors.ErrorCodes.INTERNAL_ERROR)
    p.server.end_stream(sids[0])
    p.server.send_headers(sids[2], [(b"grpc-status", b"0")], end_stream=True)
    p.server.close_connection(last_stream_id=sids[3])
    return sids, p.server.data_to_send()


def _fresh_client() -> H2ClientConnection:
    c = H2ClientConnection(stream_window=65536)
    c.initiate()
    for i in range(4):
        c.send_request("POST", CHAT, "api.test", "https",
                       [("content-type", "application/json")], json.dumps({"i": i}).encode())
    return c


_SIDS, _SERVER_BYTES = _scenario()


def _reference() -> dict[int, tuple]:
    c = _fresh_client()
    return per_stream(c.receive_data(_SERVER_BYTES) + c.receive_data(b""))


def test_scenario_reference_outcome():
    got = _reference()
    s0, s1, s2, s3 = _SIDS
    assert got[s0][2] == ResponseEnd() and got[s2][2] == ResponseEnd()
    assert got[s1][2].kind == "reset"
    assert got[s3][2] == StreamFailed("eof", "upstream closed the connection")
    assert got[s0][0].headers == (("x-i", "0"),)
    assert len(got[s0][1]) == sum(s0 * 300 + k for k in range(6))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=1, max_value=len(_SERVER_BYTES) - 1), max_size=40))
def test_any_split_of_the_server_bytes_gives_the_same_events(cuts):
    reference = _reference()
    c = _fresh_client()
    events = []
    bounds = [0, *sorted(set(cuts)), len(_SERVER_BYTES)]
    for lo, hi in zip(bounds, bounds[1:]):
        events += c.receive_data(_SERVER_BYTES[lo:hi])
        c.data_to_send()
    events += c.receive_data(b"")
    assert per_stream(events) == reference


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(1, 299), max_size=5))
def test_random_bytes_never_raise(junk, cuts):
    p = Pair()
    p.request()
    p.request()
    bounds = [0, *sorted({c for c in cuts if c < len(junk)}), len(junk)]
    for lo, hi in zip(bounds, bounds[1:]):
        p.client.receive_data(junk[lo:hi])
        p.client.data_to_send()
    p.client.receive_data(b"")
    assert p.client.closed and p.client.open_streams == 0


# -- over real sockets: the fake upstream --------------------------------------------------------


def _drive(sock: socket.socket, client: H2ClientConnection, bodies: list[bytes],
           authority: str, scheme: str) -> dict[int, tuple]:
    sock.sendall(client.initiate())
    sids = []
    for body in bodies:
        sid, out = client.send_request("POST", CHAT, authority, scheme,
                                       [("content-type", "application/json")], body)
        sids.append(sid)
        sock.sendall(out)
    events = []
    done: set[int] = set()
    while len(done) < len(sids):
        data = sock.recv(65536)
        for sid, ev in client.receive_data(data):
            events.append((sid, ev))
            if isinstance(ev, ResponseData):
                sock.sendall(client.acknowledge(sid, len(ev.data)))
            elif isinstance(ev, (ResponseEnd, StreamFailed)):
                done.add(sid)
                sock.sendall(client.cancel(sid))
        sock.sendall(client.data_to_send())
        if not data:
            break
    return per_stream(events)


def _sse_text(body: bytes) -> str:
    text = ""
    for line in body.decode().splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:])["choices"]:
                text += choice["delta"].get("content", "")
    return text


def test_fake_h2c_multiplexes_streams_on_one_connection():
    reply = H2Reply(stream=True, chunks=4, delay=0.03, content="abcdefghij" * 3)
    with FakeH2Upstream(reply) as fake:
        sock = socket.create_connection(("127.0.0.1", fake.port), timeout=5)
        try:
            got = _drive(sock, H2ClientConnection(), [b'{"stream":true}'] * 5,
                         f"127.0.0.1:{fake.port}", "http")
        finally:
            sock.close()
        assert fake.connections == 1 and fake.max_concurrent_streams == 5
        assert [r.protocol for r in fake.requests] == ["h2"] * 5
        assert fake.requests[0].path == CHAT and fake.requests[0].json() == {"stream": True}
    for head, body, end in got.values():
        assert head.status == 200 and head.header("content-type") == "text/event-stream"
        assert end == ResponseEnd()
        assert _sse_text(body) == "abcdefghij" * 3 and body.endswith(b"data: [DONE]\n\n")


def test_fake_tls_alpn_h2_with_big_json(tmp_path):
    reply = H2Reply(stream=False, content="y" * 300_000)  # beyond every window
    with FakeH2Upstream(reply, tls=True, cert_dir=tmp_path) as fake:
        raw = socket.create_connection(("127.0.0.1", fake.port), timeout=5)
        sock = fake.client_ssl_context().wrap_socket(raw, server_hostname="127.0.0.1")
        try:
            assert sock.selected_alpn_protocol() == "h2"
            got = _drive(sock, H2ClientConnection(stream_window=65536), [b"{}"] * 3,
                         f"127.0.0.1:{fake.port}", "https")
        finally:
            sock.close()
        assert fake.alpn == ["h2"]
    for head, body, end in got.values():
        assert head.status == 200 and end == ResponseEnd()
        assert json.loads(body)["choices"][0]["message"]["content"] == "y" * 300_000


def test_fake_tls_serves_http11_when_alpn_does_not_pick_h2(tmp_path):
    with FakeH2Upstream(tls=True, cert_dir=tmp_path) as fake:
        raw = socket.create_connection(("127.0.0.1", fake.port), timeout=5)
        sock = fake.client_ssl_context(alpn=("http/1.1",)).wrap_socket(
            raw, server_hostname="localhost")
        try:
            assert sock.selected_alpn_protocol() == "http/1.1"
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                         b"content-length: 2\r\n\r\n{}")
            data = b""
            while b'"usage"' not in data:
                chunk = sock.recv(65536)
                assert chunk
                data += chunk
        finally:
            sock.close()
        assert data.startswith(b"HTTP/1.1 200 ") and fake.requests[0].protocol == "http/1.1"


def _httpx():
    import httpx as mod  # the test extra installs httpx[http2]

    return mod


def test_fake_smoke_with_httpx_h2c_and_tls(tmp_path):
    hx = _httpx()
    with FakeH2Upstream(H2Reply(chunks=3, content="hi there")) as fake:
        with hx.Client(http1=False, http2=True) as client:
            r = client.post(fake.url + CHAT, json={"model": "m", "stream": True})
            assert r.http_version == "HTTP/2" and r.status_code == 200
            assert _sse_text(r.content) == "hi there"
            r = client.post(fake.url + CHAT, json={"model": "m"})
            assert r.json()["choices"][0]["message"]["content"] == "hi there"
            assert client.get(fake.url + "/nope").status_code == 404
        assert fake.connections == 1
        assert fake.requests[0].headers["content-type"] == "application/json"
    with FakeH2Upstream(tls=True, cert_dir=tmp_path) as fake:
        with hx.Client(http2=True, verify=fake.client_ssl_context()) as client:
            r = client.post(fake.url + CHAT, json={"model": "m"})
            assert r.http_version == "HTTP/2" and r.status_code == 200
        with hx.Client(http2=False, verify=ssl.create_default_context(cafile=fake.ca_path)
                       ) as client:
            r = client.post(fake.url + CHAT, json={"model": "m"})
            assert r.http_version == "HTTP/1.1" and r.status_code == 200
        assert fake.alpn == ["h2", "http/1.1"]
