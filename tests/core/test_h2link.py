"""H2Link and H2Pool: the sans-IO pooling helpers both transports' upstream pools use."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.settings

from uniapi_core.http import ResponseData, ResponseEnd, ResponseHead, parse_url
from uniapi_core.http.h2client import H2Link, H2Pool, StreamFailed

URL = parse_url("https://api.example:8443/v1/chat/completions?x=1")


class Server:
    def __init__(self, max_streams: int = 100) -> None:
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_streams})
        self.h2.initiate_connection()
        self.requests: dict[int, list] = {}
        self.resets: list[int] = []

    def receive(self, data: bytes) -> None:
        for ev in self.h2.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                self.requests[ev.stream_id] = list(ev.headers)
            elif isinstance(ev, h2.events.StreamReset):
                self.resets.append(ev.stream_id)


def connected(max_streams: int = 100) -> tuple[H2Link, Server]:
    link, server = H2Link(("proxy", "origin")), Server(max_streams)
    server.receive(link.take())
    assert link.feed(server.h2.data_to_send()) == []
    server.receive(link.take())
    return link, server


def test_open_routes_each_streams_events_to_its_sink_and_keeps_output_in_order():
    link, server = connected()
    assert link.idle
    a = link.open("POST", URL, [("Host", "ignored"), ("x-a", "1")], b"{}", "sink-a")
    b = link.open("GET", URL, [], b"", "sink-b")
    assert not link.idle
    server.receive(link.take())  # both header blocks, in the order made: HPACK decodes
    headers = dict(server.requests[a])
    assert headers[b":authority"] == b"api.example:8443" and headers[b":path"] == \
        b"/v1/chat/completions?x=1" and headers[b"x-a"] == b"1" and b"host" not in headers
    server.h2.send_headers(b, [(":status", "200")])
    server.h2.send_data(b, b"hello", end_stream=True)
    server.h2.send_headers(a, [(":status", "201")])
    got = link.feed(server.h2.data_to_send())
    assert [(sink, type(ev)) for sink, ev in got] == [
        ("sink-b", ResponseHead), ("sink-b", ResponseData), ("sink-b", ResponseEnd),
        ("sink-a", ResponseHead)]
    link.acknowledge(b, 5)
    link.finish(b)
    link.finish(a)  # still open: reset
    assert link.idle
    server.receive(link.take())
    assert server.resets == [a]


def test_retire_fails_only_requests_still_waiting_and_says_goodbye():
    link, server = connected()
    a = link.open("GET", URL, [], b"", "a")
    link.open("GET", URL, [], b"", "b")
    server.receive(link.take())
    server.h2.send_headers(a, [(":status", "200")], end_stream=True)
    link.feed(server.h2.data_to_send())
    failed = link.retire("bye")
    assert failed == [("b", StreamFailed("eof", "bye"))]
    assert link.conn.closed and not link.conn.can_open
    events = server.h2.receive_data(link.take())
    assert any(isinstance(ev, h2.events.ConnectionTerminated) for ev in events)
    assert link.retire() == [] and link.feed(b"") == []


def test_eof_fails_open_streams_once():
    link, server = connected()
    a = link.open("GET", URL, [], b"", "a")
    assert link.feed(b"") == [("a", StreamFailed("eof", "upstream closed the connection"))]
    assert link.retire() == []  # already settled
    link.finish(a)
    assert link.idle


def test_pool_picks_a_link_that_can_open_and_remembers_http11_origins():
    pool: H2Pool[H2Link] = H2Pool()
    key = ("proxy", "origin")
    assert pool.pick(key) is None
    pool.h1_only.add(key)
    first, server = connected(max_streams=1)
    second = H2Link(key)
    pool.add(first)
    pool.add(second)
    assert key not in pool.h1_only  # an h2 connection to it after all
    assert pool.pick(key) is first and pool.pick(key, avoid=first) is second
    first.open("GET", URL, [], b"", "s")  # the server allows one stream
    assert pool.pick(key) is second
    second.retire()
    assert pool.pick(key) is None
    pool.discard(first)
    pool.discard(first)
    assert pool.all() == [second]
    pool.discard(second)
    assert pool.all() == [] and pool.pick(key) is None
