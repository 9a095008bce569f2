"""Reliability plan R3–R6 and the graceful drain, end to end on both transports (and h1/h2c
where the test is about the front): slowloris and caps, malformed input over h2, slow SSE
readers, client disconnects, shutdown with a stream in flight.

Short test timeouts throughout (head 1 s, body idle 0.3 s, write stall 1 s); every loop is
bounded by a count and a wall-clock limit. Assertions are on counts and invariants, with
generous time bounds only; the measured figures are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import gc
import http.client
import json
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import h2.config
import h2.connection
import h2.events
import attrs
import pytest

from tests.e2e.test_chat import KEY, config
from tests.e2e.test_http2 import RawH2
from tests.fakes.slowclient import (
    SSEUpstream,
    chat_body,
    connect,
    read_head,
    rss_kib,
    slowloris,
    sse_chunk,
)
from tests.harness import run_gateway
from uniapi_core.config import load_config
from uniapi_core.gateway import Gateway, Settings
from uniapi_core.http.h2server import H2Limits
from uniapi_core.http.server import ServerLimits
from uniapi_core.startup import FrontOptions

LIMITS = ServerLimits(head_timeout=1.0, body_idle_timeout=0.3)
OPTIONS = FrontOptions(limits=LIMITS, write_stall_timeout=1.0,
                       h2=H2Limits(stall_timeout=1.0), drain_grace=10.0)



@pytest.fixture(params=["h1", "h2c"])
def proto(request):
    return request.param


def h1_request(body: bytes, path: str = "/v1/chat/completions", *, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            ).encode() + body


def h1_chat(port: int, tag: str) -> int:
    """One non-streaming chat request on a fresh connection; its status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", "/v1/chat/completions", body=chat_body(tag, stream=False),
                     headers={"Authorization": f"Bearer {KEY}",
                              "Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def h2_send(c: RawH2, method: str, path: str, body: bytes | None,
            headers: list[tuple[bytes, bytes]] | None = None) -> int:
    """Open a stream; send as much of ``body`` as the flow-control window allows (a body
    over it is cut there: the server is expected to answer before reading it all)."""
    sid = c.conn.get_next_available_stream_id()
    if headers is None:
        headers = [(b"authorization", f"Bearer {KEY}".encode()),
                   (b"content-type", b"application/json")]
    c.conn.send_headers(sid, [(b":method", method.encode()), (b":path", path.encode()),
                              (b":scheme", b"http"), (b":authority", b"127.0.0.1")] + headers,
                        end_stream=not body)
    sent = 0
    while body and sent < len(body):
        room = min(c.conn.local_flow_control_window(sid), c.conn.max_outbound_frame_size)
        if room <= 0:
            break
        piece = body[sent:sent + room]
        sent += len(piece)
        c.conn.send_data(sid, piece, end_stream=sent == len(body))
    c.flush()
    return sid


def h2_response(c: RawH2, sid: int, timeout: float = 5.0) -> tuple[int | None, bytes, list]:
    """Read until stream ``sid`` ends or is reset: (status, body, all events)."""
    status, body, seen = None, b"", []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        evs = c.events((h2.events.StreamEnded, h2.events.StreamReset,
                        h2.events.ConnectionTerminated), timeout=deadline - time.monotonic())
        seen += evs
        for e in evs:
            if isinstance(e, h2.events.ResponseReceived) and e.stream_id == sid:
                status = int(dict(e.headers)[b":status"])
            elif isinstance(e, h2.events.DataReceived) and e.stream_id == sid:
                body += e.data
        if any(isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset))
               and e.stream_id == sid for e in evs):
            return status, body, seen
        if any(e == "EOF" or isinstance(e, h2.events.ConnectionTerminated) for e in evs):
            break
    return status, body, seen


def raw_h2(port: int, *, rcvbuf: int | None = None) -> RawH2:
    """A ``RawH2`` client; ``rcvbuf`` sets SO_RCVBUF before connecting."""
    c = RawH2.__new__(RawH2)
    c.stalled = set()
    c.sock = connect(port, rcvbuf=rcvbuf, timeout=10)
    c.conn = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=True, header_encoding=None))
    c.conn.initiate_connection()
    c.flush()
    return c


# -- R4: slowloris, connection cap, body trickle ------------------------------------------------

def test_r4_slowloris_heads_get_408_while_normal_clients_are_served(backend):
    up = SSEUpstream()
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"X-Padding: " + b"a" * 200 + b"\r\n\r\n")
    normal: list[int] = []

    def normal_client(port: int) -> None:
        for i in range(50):
            try:
                normal.append(h1_chat(port, f"normal-{i}"))
            except OSError as exc:
                normal.append(-1)
                print("normal client:", exc)
            time.sleep(0.02)

    try:
        with run_gateway(config(up), backend=backend, options=OPTIONS) as gw:
            t = threading.Thread(target=normal_client, args=(gw.port,), daemon=True)
            t.start()
            lorises = slowloris(gw.port, 100, head=head, interval=0.1, limit=6.0)
            t.join(20)
            assert h1_chat(gw.port, "after") == 200  # and the server is still fine
    finally:
        up.close()
    ended = [c for c in lorises if c.ended is not None]
    took = sorted(c.ended - c.first_byte for c in ended)
    answered = sum(c.status == 408 for c in lorises)
    print(f"\nR4 slowloris [{backend}]: {len(ended)}/100 ended, {answered} with 408, "
          f"{sum(c.reset for c in lorises)} reset; first byte→end max {took[-1]:.3f} s, "
          f"median {took[len(took) // 2]:.3f} s; bytes sent max "
          f"{max(c.sent for c in lorises)}; normal client {normal.count(200)}/50 ok")
    assert len(ended) == 100, "some slowloris connections were still open after 6 s"
    assert all(c.status in (408, None) for c in lorises), {c.status for c in lorises}
    assert all(c.response.startswith(b"HTTP/1.1 408") or not c.response for c in lorises)
    assert took[-1] < LIMITS.head_timeout + 1.5
    assert normal == [200] * 50


def test_r4_connection_cap_closes_the_extra_connection_when_none_is_idle(backend):
    """16 connections each mid-request (half a head sent) fill a cap of 16: none may be shed,
    so the 17th is closed at once; the 16 are still served, and once they are gone service
    goes on."""
    up = SSEUpstream()
    # head timeout 5 s here, so that the 16 busy connections outlive the test of the 17th
    options = FrontOptions(limits=ServerLimits(head_timeout=5.0), max_connections=16)
    try:
        with run_gateway(config(up), backend=backend, options=options) as gw:
            busy = [connect(gw.port) for _ in range(16)]
            for s in busy:
                s.sendall(b"GET /healthz HTTP/1.1\r\n")  # a request begun: not idle
            time.sleep(0.3)  # let the server accept (and count) all of them
            extra = connect(gw.port, timeout=3)
            t0 = time.monotonic()
            try:
                got = extra.recv(65536)
            except ConnectionResetError:
                got = b""
            refused_in = time.monotonic() - t0
            extra.close()
            assert got == b"", got[:200]
            # the 16 are still open and served
            for s in busy:
                s.setblocking(False)
                with pytest.raises(BlockingIOError):
                    s.recv(1)
                s.setblocking(True)
            busy[0].sendall(b"Host: x\r\n\r\n")
            head, _ = read_head(busy[0])
            assert head.startswith(b"HTTP/1.1 200")
            for s in busy:
                s.close()
            # after the flood ends, service goes on (the server notices the closes first)
            ok, deadline = 0, time.monotonic() + 5
            while ok < 20 and time.monotonic() < deadline:
                try:
                    if h1_chat(gw.port, f"after-{ok}") == 200:
                        ok += 1
                except OSError:
                    time.sleep(0.05)
            print(f"\nR4 cap [{backend}]: 17th connection closed after "
                  f"{refused_in * 1000:.1f} ms; {ok}/20 requests ok after the 16 closed")
            assert refused_in < 1.0
            assert ok == 20
            assert gw.gateway.metrics.counter("uniapi_connections_refused_total") >= 1
    finally:
        up.close()


def test_r4_a_flood_of_idle_sockets_never_locks_a_client_out(backend):
    """Twice the cap in sockets that send nothing: each newcomer makes room by shedding the
    connection idle the longest, so a legitimate client is served at once, every time, and
    the sheds are counted."""
    up = SSEUpstream()
    options = FrontOptions(limits=ServerLimits(head_timeout=30.0), max_connections=32)
    flood: list[socket.socket] = []
    try:
        with run_gateway(config(up), backend=backend, options=options) as gw:
            for _ in range(64):
                flood.append(connect(gw.port))
            time.sleep(0.3)  # all accepted; the head timeout (30 s) reaps none of them
            took = []
            for i in range(10):
                t0 = time.monotonic()
                assert h1_chat(gw.port, f"legit-{i}") == 200
                took.append(time.monotonic() - t0)
                flood.append(connect(gw.port))  # the attacker keeps reconnecting
            print(f"\nR4 idle flood [{backend}]: slowest legitimate request "
                  f"{max(took) * 1000:.1f} ms")
            assert max(took) < 1.0
            assert gw.gateway.metrics.counter("uniapi_connections_shed_total") >= 32
    finally:
        for s in flood:
            s.close()
        up.close()


def test_r4_idle_timeouts_shrink_as_the_cap_nears(backend):
    """Five idle sockets in a cap of 20 keep the whole 6 s head timeout; when 14 more come (95 %
    of the cap, where idle time is cut to 0.145 of itself: 0.87 s) the rising load wakes the
    five to look again. Idle for 1.5 s by then, two close at once; each close relieves the
    pressure and lengthens the others' time (85 %: 2 s, 80 %: 2.6 s, 75 %: 3.15 s from when
    they became idle), so the five close oldest first at about 0, 0, 0.5, 1.1 and 1.65 s,
    not at 4.5 s, and count as shed, while the 14 newer ones stay open: shrinking frees room,
    it does not empty the server."""
    up = SSEUpstream()
    options = FrontOptions(limits=ServerLimits(head_timeout=6.0), max_connections=20)
    first: list[socket.socket] = []
    later: list[socket.socket] = []
    try:
        with run_gateway(config(up), backend=backend, options=options) as gw:
            for _ in range(5):
                first.append(connect(gw.port, timeout=10))
            time.sleep(1.5)  # a quarter of the cap: nothing shrinks
            for s in first:
                s.setblocking(False)
                with pytest.raises(BlockingIOError):
                    s.recv(1)  # still open
                s.setblocking(True)
            t0 = time.monotonic()
            for _ in range(14):
                later.append(connect(gw.port, timeout=10))
            closed_after = []
            for s in first:
                try:
                    got = s.recv(1)
                except ConnectionResetError:
                    got = b""
                assert got == b""
                closed_after.append(time.monotonic() - t0)
            time.sleep(0.5)
            still_open = 0
            for s in later:
                s.setblocking(False)
                try:
                    still_open += s.recv(1) != b""
                except BlockingIOError:
                    still_open += 1
                except OSError:
                    pass
            print(f"\nR4 shrinking [{backend}]: the five oldest idle closed after "
                  f"{[round(t, 2) for t in closed_after]} s, the load at 95 % (head timeout 6 s); "
                  f"{still_open} of the 14 newer still open")
            assert max(closed_after) < 3.0  # not at 4.5 s, their own timeout
            assert still_open == 14
            assert gw.gateway.metrics.counter("uniapi_connections_shed_total") == 5
            assert h1_chat(gw.port, "after") == 200  # service goes on
    finally:
        for s in first + later:
            s.close()
        up.close()


def _trickle_body(port: int, period: float, limit: float = 3.0) -> tuple[bytes, int, float]:
    """Send a head announcing 1,000 body bytes, then one byte per ``period`` until the server
    answers or ``limit`` s pass: (what the server sent, bytes trickled, seconds)."""
    s = connect(port, timeout=limit + 2)
    s.sendall(h1_request(b"x" * 1000)[:-1000])
    t0 = time.monotonic()
    sent, got = 0, b""
    try:
        while time.monotonic() - t0 < limit:
            s.settimeout(max(0.001, t0 + sent * period - time.monotonic()))
            try:
                data = s.recv(65536)
                got += data
                if not data or b"\r\n\r\n" in got:
                    break
                continue
            except TimeoutError:
                pass
            s.sendall(b"{")
            sent += 1
    except OSError:
        pass
    finally:
        s.close()
    return got, sent, time.monotonic() - t0


def test_r4_body_that_stops_gets_408_json(backend):
    up = SSEUpstream()
    try:
        with run_gateway(config(up), backend=backend, options=OPTIONS) as gw:
            # one byte, then nothing for longer than the 0.3 s body idle timeout
            got, sent, took = _trickle_body(gw.port, period=1.0)
    finally:
        up.close()
    print(f"\nR4 body stall [{backend}]: 408 after {took:.3f} s, {sent} body bytes")
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), got[:300]
    assert took < LIMITS.body_idle_timeout + 1.5


def test_r4_body_trickle_gets_408_json(backend):
    up = SSEUpstream()
    try:
        with run_gateway(config(up), backend=backend, options=OPTIONS) as gw:
            got, sent, took = _trickle_body(gw.port, period=0.2, limit=2.0)
    finally:
        up.close()
    print(f"\nR4 body trickle [{backend}]: after {took:.2f} s and {sent} bytes the server sent "
          f"{got[:12]!r}")
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), got[:300]
    assert json.loads(body[body.index(b"{"):])["error"]["message"]


# -- R3 over h2c: malformed input, each followed by a good request on the same connection ----

GOOD = chat_body("good", stream=False)
R3_H2_CASES = [
    # (name, method, path, body, headers or None, status, error code or None)
    ("bad json", "POST", "/v1/chat/completions", b"{nope", None, 400, "invalid_json"),
    ("not an object", "POST", "/v1/chat/completions", b"[1]", None, 400, "invalid_json"),
    ("messages not a list", "POST", "/v1/chat/completions",
     b'{"model": "gpt-4o", "messages": "x"}', None, 400, None),
    ("NaN", "POST", "/v1/chat/completions",
     b'{"model": "gpt-4o", "messages": [], "temperature": NaN}', None, 400, "invalid_json"),
    ("deep nesting", "POST", "/v1/chat/completions", b"[" * 900, None, 400, "invalid_json"),
    ("invalid utf-8", "POST", "/v1/chat/completions", b"\xff\xfe{}", None, 400,
     "invalid_json"),
    ("empty body", "POST", "/v1/chat/completions", b"", None, 400, "invalid_json"),
    ("over the limit", "POST", "/v1/chat/completions", b"x" * 5000, None, 413, None),
    ("over the limit and the window", "POST", "/v1/chat/completions", b"x" * 200_000, None,
     413, None),
    ("unknown model", "POST", "/v1/chat/completions",
     b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}', None, 404,
     "model_not_found"),
    ("unknown path", "GET", "/v1/nothing-here", None, None, 404, None),
    ("unknown path, POST", "POST", "/nothing", GOOD, None, 404, None),
    ("wrong method", "GET", "/v1/chat/completions", None, None, 405, None),
    ("wrong method on models", "DELETE", "/v1/models", None, None, 405, None),
    ("wrong content type", "POST", "/v1/chat/completions", GOOD,
     [(b"authorization", b"Bearer " + KEY.encode()), (b"content-type", b"text/plain")], 415,
     "unsupported_media_type"),
    ("missing key", "POST", "/v1/chat/completions", GOOD,
     [(b"content-type", b"application/json")], 401, None),
    ("wrong key", "POST", "/v1/chat/completions", GOOD,
     [(b"authorization", b"Bearer sk-wrong"), (b"content-type", b"application/json")], 401,
     None),
]


def test_r3_malformed_input_over_h2c_keeps_the_connection(backend):
    up = SSEUpstream()
    options = FrontOptions(limits=ServerLimits(head_timeout=1.0, body_idle_timeout=0.3,
                                               max_body=1000))
    failures = []
    try:
        with run_gateway(config(up), backend=backend, options=options) as gw:
            c = raw_h2(gw.port)
            try:
                for name, method, path, body, headers, status, code in R3_H2_CASES:
                    sid = h2_send(c, method, path, body, headers)
                    got, data, evs = h2_response(c, sid)
                    if got != status:
                        failures.append((name, got, data[:200]))
                        continue
                    err = json.loads(data)["error"]
                    assert err["message"] and "type" in err, (name, err)
                    if code is not None:
                        assert err["code"] == code, (name, err)
                    assert not any(isinstance(e, h2.events.ConnectionTerminated) or e == "EOF"
                                   for e in evs), (name, evs)
                    sid = h2_send(c, "POST", "/v1/chat/completions", GOOD)
                    got, data, evs = h2_response(c, sid)
                    assert got == 200, (name, got, data[:200], evs)
                    assert json.loads(data)["choices"][0]["message"]["content"] == "ok"
            finally:
                c.close()
    finally:
        up.close()
    print(f"\nR3 h2c [{backend}]: {len(R3_H2_CASES) - len(failures)}/{len(R3_H2_CASES)} "
          "cases with the exact status, each followed by a 200 on the same connection")
    assert not failures, failures


# -- R5: slow SSE reader, backpressure, write stall ----------------------------------------------

BIG_EVENT = sse_chunk("x" * 16000)


def _stream_h1(port: int, tag: str, rcvbuf: int) -> socket.socket:
    s = connect(port, rcvbuf=rcvbuf)
    s.sendall(h1_request(chat_body(tag)))
    return s


def _stream_h2(port: int, tag: str, rcvbuf: int) -> tuple[RawH2, int]:
    c = raw_h2(port, rcvbuf=rcvbuf)
    sid = h2_send(c, "POST", "/v1/chat/completions", chat_body(tag))
    return c, sid


class SlowRead:
    """A streaming request read 1 KiB every ``period`` (SO_RCVBUF 4 KiB; over h2 the window
    is given back for what was read) for ``seconds``, or until the upstream sees its
    connection closed when ``until_dropped``. The client is left open."""

    def __init__(self, proto: str, port: int, up: SSEUpstream, tag: str, *, period: float,
                 seconds: float, until_dropped: bool = False) -> None:
        self.client: RawH2 | None = None
        if proto == "h1":
            self.sock = _stream_h1(port, tag, 4096)
        else:
            self.client, self.sid = _stream_h2(port, tag, 4096)
            self.sock = self.client.sock
        self.sock.settimeout(2)
        self.rss0 = self.peak = rss_kib()
        self.got = 0
        self.eof: float | None = None
        self.reset = False  # h2: the stream was reset
        self.samples: list[tuple[float, int]] = []  # (s since start, upstream bytes sent)
        self.t0 = time.monotonic()
        while time.monotonic() - self.t0 < seconds:
            rec = up.conns.get(tag)
            if until_dropped and rec is not None and rec.closed_at is not None:
                break
            try:
                data = self.sock.recv(1024)
            except OSError:
                data = b""
            if not data:
                self.eof = time.monotonic()
                break
            self.got += len(data)
            self.feed(data)
            self.peak = max(self.peak, rss_kib())
            self.samples.append((time.monotonic() - self.t0, rec.sent if rec else 0))
            time.sleep(period)
        self.stopped = time.monotonic()

    def feed(self, data: bytes) -> None:
        c = self.client
        if c is None:
            return
        for e in c.conn.receive_data(data):
            if isinstance(e, h2.events.DataReceived):
                c._ack(e)  # the connection's and the stream's window
            elif isinstance(e, h2.events.StreamReset) and e.stream_id == self.sid:
                self.reset = True
        c.flush()

    def sent_at(self, t: float) -> int:
        return max((s for at, s in self.samples if at <= t), default=0)

    def drain(self, limit: float = 5.0) -> tuple[bool, int]:
        """Read fast what the gateway had queued: (EOF or reset seen, bytes)."""
        n, deadline = 0, time.monotonic() + limit
        self.sock.settimeout(0.5)
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                if self.reset:
                    break  # h2: the stream is reset, the connection may stay
                continue
            except OSError:
                data = b""
            if not data:
                return True, n
            n += len(data)
            self.feed(data)
        return self.reset, n

    def close(self) -> None:
        self.sock.close()


def test_r5_slow_reader_bounded_memory_and_upstream_plateau(backend, proto):
    """A reader taking 1 KiB every 20 ms from a ~50 MB stream: the gateway holds back the
    upstream (its sent bytes plateau far below 50 MB), its memory stays flat, and the reader,
    slow but never stalled, keeps its stream under the 1 s stall timeouts."""
    up = SSEUpstream(event=BIG_EVENT, max_bytes=50_000_000)
    try:
        with run_gateway(config(up), backend=backend, options=OPTIONS) as gw:
            assert h1_chat(gw.port, "warm-up") == 200
            gc.collect()
            r = SlowRead(proto, gw.port, up, "slow", period=0.02, seconds=2.5)
            r.close()
            rec = up.conns["slow"]
            dropped = rec.closed_at is not None and rec.closed_at < r.stopped
    finally:
        up.close()
    growth_mb = (r.peak - r.rss0) / 1024
    early, end = r.sent_at(1.0), r.sent_at(2.5)
    print(f"\nR5 slow reader [{backend}/{proto}]: RSS growth {growth_mb:.2f} MB; upstream sent "
          f"{early / 1e6:.2f} MB at 1 s, {end / 1e6:.2f} MB at 2.5 s (of 50 MB), "
          f"{rec.chunks} events of 16 KB; client read {r.got / 1024:.0f} KiB")
    assert r.eof is None and not dropped, "the slow reader was dropped"
    assert growth_mb < 5.0
    assert end < 25_000_000, "the upstream was not held back"
    assert end - early < 2_000_000, "the upstream's sent bytes did not plateau"


def test_r5_reader_that_stops_is_dropped_and_the_upstream_closed(backend, proto):
    """Write-stall timeout 1 s (h2: stream stall timeout 1 s): once the client reads nothing,
    the gateway closes it (h2: resets the stream) and closes the upstream."""
    up = SSEUpstream(event=BIG_EVENT, max_bytes=50_000_000)
    try:
        with run_gateway(config(up), backend=backend, options=OPTIONS) as gw:
            r = SlowRead(proto, gw.port, up, "stops", period=0.02, seconds=0.3)
            closed_at = up.wait_closed("stops", 5.0)  # the client reads nothing meanwhile
            gone, tail = r.drain()
            how = "EOF"
            if proto == "h2c" and r.reset:
                # only the stream was reset (stall timeout): the connection still serves
                how = "stream reset"
                sid = h2_send(r.client, "POST", "/v1/chat/completions", GOOD)
                assert h2_response(r.client, sid)[0] == 200
            r.close()
    finally:
        up.close()
    after = None if closed_at is None else closed_at - r.stopped
    print(f"\nR5 stopped reader [{backend}/{proto}]: upstream closed "
          f"{'never' if after is None else f'{after:.3f} s'} after the client stopped reading "
          f"(write stall 1 s); client then drained {tail / 1e6:.2f} MB queued before "
          f"the {how}: {gone}")
    assert closed_at is not None, "the upstream was not closed"
    assert after < OPTIONS.write_stall_timeout + 2.0
    assert gone


def _steady_reader(backend: str, proto: str) -> None:
    up = SSEUpstream(event=BIG_EVENT, max_bytes=50_000_000)
    options = OPTIONS
    if proto == "h2c":
        # an h2 client gives window back per whole DATA frame (16 KiB = 1.6 s at 10 KiB/s):
        # a stream is stalled only when no frame's worth could be taken within the timeout
        options = attrs.evolve(OPTIONS, h2=H2Limits(stall_timeout=2.5))
    try:
        with run_gateway(config(up), backend=backend, options=options) as gw:
            r = SlowRead(proto, gw.port, up, "steady", period=0.1, seconds=3.0,
                         until_dropped=True)
            r.close()
            rec = up.conns["steady"]
    finally:
        up.close()
    dropped = None if rec.closed_at is None else rec.closed_at - r.t0
    print(f"\nR5 steady reader [{backend}/{proto}]: read {r.got / 1024:.0f} KiB at 10 KiB/s; "
          f"upstream closed by the gateway {dropped} s into the stream; eof {r.eof}, "
          f"reset {r.reset}")
    assert r.eof is None and not r.reset
    assert rec.closed_at is None or rec.closed_at >= r.stopped


def test_r5_steady_slow_reader_is_not_dropped_h1(backend):
    """R5 (docs/contracts.md): a client reading 1 KiB every 100 ms is slow, not stalled: with the
    write-stall timeout at 1 s it keeps its stream."""
    _steady_reader(backend, "h1")


def test_r5_steady_slow_reader_is_not_reset_h2(backend):
    """The h2 form: the client reads 1 KiB every 100 ms and gives the window back for each
    whole DATA frame; the stream is slow, not stalled (stall timeout 2.5 s, see above)."""
    _steady_reader(backend, "h2c")


# -- R6: client disconnect cancels the upstream --------------------------------------------------

def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def test_r6_client_disconnect_cancels_the_upstream(backend, proto):
    """The client leaves after k events (k random in 0..5); the upstream has sent exactly those
    k and then holds, so only the gateway's cancellation can close its connection."""
    seed = int(os.environ.get("UNIAPI_R6_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    up = SSEUpstream(event=sse_chunk("token "),
                     gate_at=lambda tag: int(tag.rsplit("-", 1)[1]))  # gate never opened
    latencies: list[float] = []
    missing: list[str] = []
    try:
        with run_gateway(config(up), backend=backend, options=OPTIONS) as gw:
            c = raw_h2(gw.port) if proto == "h2c" else None
            try:
                for i in range(50):
                    want = rng.randint(0, 5)
                    tag = f"r6-{i}-{want}"
                    if c is None:
                        closed = _h1_read_then_close(gw.port, up, tag, want)
                    else:
                        closed = _h2_read_then_reset(c, up, tag, want)
                    at = up.wait_closed(tag, 3.0)
                    if at is None:
                        missing.append(tag)
                    else:
                        latencies.append(at - closed)
                if c is not None:  # the connection itself still serves
                    sid = h2_send(c, "POST", "/v1/chat/completions", GOOD)
                    assert h2_response(c, sid)[0] == 200
            finally:
                if c is not None:
                    c.close()
    finally:
        up.close()
    sent = {t: rec.chunks for t, rec in up.conns.items() if t.startswith("r6-")}
    p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
    print(f"\nR6 [{backend}/{proto}] seed {seed}: p99 disconnect→upstream close: "
          f"{p99 * 1000:.1f} ms (p50 {p50 * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms, "
          f"target 100 ms); {len(missing)}/50 not closed within 3 s")
    assert not missing, missing
    assert all(n == int(t.rsplit("-", 1)[1]) for t, n in sent.items())  # none sent after
    assert p99 < 1.0


def _upstream_started(up: SSEUpstream, tag: str, limit: float = 5.0) -> None:
    """Wait until the upstream has sent its response head for ``tag`` (with no event yet the
    gateway has nothing to send: it may still retry elsewhere)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        rec = up.conns.get(tag)
        if rec is not None and rec.sent:
            return
        time.sleep(0.001)
    raise AssertionError(f"the upstream never saw {tag}")


def _h1_read_then_close(port: int, up: SSEUpstream, tag: str, events: int) -> float:
    s = _stream_h1(port, tag, 65536)
    s.settimeout(5)
    if events == 0:
        _upstream_started(up, tag)
    else:
        head, buf = read_head(s)
        assert head.startswith(b"HTTP/1.1 200"), head
        while buf.count(b"data: ") < events:
            data = s.recv(65536)
            assert data, "EOF mid-stream"
            buf += data
    closed = time.monotonic()
    s.close()
    return closed


def _h2_read_then_reset(c: RawH2, up: SSEUpstream, tag: str, events: int) -> float:
    sid = h2_send(c, "POST", "/v1/chat/completions", chat_body(tag))
    if events == 0:
        _upstream_started(up, tag)
    else:
        status, buf = None, b""
        deadline = time.monotonic() + 5
        while (status is None or buf.count(b"data: ") < events) and \
                time.monotonic() < deadline:
            for e in c.events((h2.events.ResponseReceived, h2.events.DataReceived), timeout=1):
                if isinstance(e, h2.events.ResponseReceived) and e.stream_id == sid:
                    status = int(dict(e.headers)[b":status"])
                elif isinstance(e, h2.events.DataReceived) and e.stream_id == sid:
                    buf += e.data
        assert status == 200, (status, buf[:200])
    c.conn.reset_stream(sid, error_code=8)  # CANCEL
    c.flush()
    return time.monotonic()


# -- graceful drain -------------------------------------------------------------------------------

class Stoppable:
    def __init__(self, port: int, stop, thread: threading.Thread) -> None:
        self.port, self.stop, self.thread = port, stop, thread


@contextmanager
def serve_stoppable(config_text: str, backend: str, options: FrontOptions
                    ) -> Iterator[Stoppable]:
    """Like ``tests.harness.run_gateway`` but stopped through ``serve(..., stop=event)``:
    the graceful path (stop accepting, let requests in flight finish)."""
    gateway = Gateway(load_config(config_text, "test.yaml").config, settings=Settings(),
                      entropy=random.Random(1))
    ready, state = threading.Event(), {}
    main = _trio_main if backend == "trio" else _asyncio_main

    def run() -> None:
        try:
            main(gateway, options, ready, state)
        except BaseException as exc:
            state["error"] = exc
            ready.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert ready.wait(20)
    if "error" in state:
        raise state["error"]
    try:
        yield Stoppable(state["port"], state["stop"], t)
    finally:
        state["stop"]()
        t.join(options.drain_grace + 5)
        if "error" in state:
            raise state["error"]


def _trio_main(gateway: Gateway, options: FrontOptions, ready: threading.Event,
               state: dict) -> None:
    import trio

    from uniapi_trio.server import serve
    from uniapi_trio.upstream import UpstreamPool

    async def main() -> None:
        stop, pool = trio.Event(), UpstreamPool()
        token = trio.lowlevel.current_trio_token()

        def stop_soon() -> None:
            try:
                trio.from_thread.run_sync(stop.set, trio_token=token)
            except trio.RunFinishedError:  # already drained and returned
                pass

        state["stop"] = stop_soon
        try:
            async with trio.open_nursery() as nursery:
                state["port"] = await nursery.start(partial(
                    serve, lambda: gateway, "127.0.0.1", 0, options=options, pool=pool,
                    stop=stop))
                ready.set()
        finally:
            await pool.aclose()

    trio.run(main)


def _asyncio_main(gateway: Gateway, options: FrontOptions, ready: threading.Event,
                  state: dict) -> None:
    import asyncio

    from uniapi_asyncio.server import serve
    from uniapi_asyncio.upstream import UpstreamPool

    async def main() -> None:
        loop, stop, pool = asyncio.get_running_loop(), asyncio.Event(), UpstreamPool()

        def stop_soon() -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(stop.set)

        state["stop"] = stop_soon

        def started(port: int) -> None:
            state["port"] = port
            ready.set()

        try:
            await serve(lambda: gateway, "127.0.0.1", 0, options=options, pool=pool,
                        stop=stop, ready=started)
        finally:
            await pool.aclose()

    asyncio.run(main())


def _refused_after_stop(port: int, limit: float = 3.0) -> tuple[bool, int]:
    """Try new connections until one is refused: (refused, attempts that still connected,
    or were reset while the listener closed)."""
    connected, deadline = 0, time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=1)
        except ConnectionRefusedError:
            return True, connected
        except ConnectionResetError:  # in the backlog as the listener closed
            connected += 1
        else:
            connected += 1
            s.close()
        time.sleep(0.02)
    return False, connected


class GoawayTolerant:
    """Reads an h2 connection, taking GOAWAY frames out before h2 sees them: h2 (as a client
    too) treats a received GOAWAY as the end of the connection and raises on the DATA that a
    graceful shutdown still sends for the streams it keeps."""

    def __init__(self, c: RawH2) -> None:
        self.c = c
        self.buf = b""
        self.goaways: list[tuple[int, int]] = []  # (last stream id, error code)

    def _frames(self, data: bytes) -> bytes:
        self.buf += data
        out = b""
        while len(self.buf) >= 9:
            n = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + n:
                break
            frame, self.buf = self.buf[:9 + n], self.buf[9 + n:]
            if frame[3] == 0x7:  # GOAWAY
                self.goaways.append((int.from_bytes(frame[9:13], "big") & 0x7FFFFFFF,
                                     int.from_bytes(frame[13:17], "big")))
            else:
                out += frame
        return out

    def read(self, timeout: float = 5.0) -> list:
        """One read's events (DATA acknowledged); ``["EOF"]`` at the end."""
        self.c.sock.settimeout(timeout)
        try:
            data = self.c.sock.recv(65536)
        except TimeoutError:
            return []
        except OSError:
            data = b""
        if not data:
            return ["EOF"]
        evs = self.c.conn.receive_data(self._frames(data))
        for e in evs:
            if isinstance(e, h2.events.DataReceived):
                self.c._ack(e)
        try:
            self.c.flush()
        except OSError:  # our WINDOW_UPDATE raced the server's close after its last bytes
            evs.append("EOF")
        return evs


def _drain(backend: str, proto: str) -> None:
    up = SSEUpstream(event=sse_chunk("tok "), max_chunks=6, gate_at=2)
    ended = False
    try:
        with serve_stoppable(config(up), backend, OPTIONS) as srv:
            if proto == "h1":
                s = _stream_h1(srv.port, "drain", 65536)
                s.settimeout(5)
                head, buf = read_head(s)
                assert head.startswith(b"HTTP/1.1 200")
                while buf.count(b"data: ") < 2:
                    data = s.recv(65536)
                    assert data
                    buf += data
            else:
                c = raw_h2(srv.port)
                reader = GoawayTolerant(c)
                sid = h2_send(c, "POST", "/v1/chat/completions", chat_body("drain"))
                buf, deadline = b"", time.monotonic() + 5
                while buf.count(b"data: ") < 2 and time.monotonic() < deadline:
                    evs = reader.read()
                    assert "EOF" not in evs
                    buf += b"".join(e.data for e in evs
                                    if isinstance(e, h2.events.DataReceived))
            t_stop = time.monotonic()
            srv.stop()
            refused, connected = _refused_after_stop(srv.port)
            refused_in = time.monotonic() - t_stop
            assert not up.conns["drain"].finished
            up.gate.set()  # only now does the upstream send the rest
            if proto == "h1":
                while True:
                    data = s.recv(65536)
                    if not data:
                        break
                    buf += data
                s.close()
                ended = buf.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")
                how = "EOF after the chunked end"
            else:
                seen: list = []
                deadline = time.monotonic() + 5
                while not ended and time.monotonic() < deadline:
                    evs = reader.read(1.0)
                    seen += evs
                    buf += b"".join(e.data for e in evs
                                    if isinstance(e, h2.events.DataReceived))
                    ended = any(isinstance(e, h2.events.StreamEnded) and e.stream_id == sid
                                for e in evs)
                    if "EOF" in evs:
                        break
                c.close()
                how = (f"GOAWAY (last stream, code) {reader.goaways}, "
                       f"{len(seen)} h2 events after the stop")
            srv.thread.join(5)
            drained = not srv.thread.is_alive()
    finally:
        up.close()
    print(f"\ndrain [{backend}/{proto}]: new connections refused {refused_in * 1000:.0f} ms "
          f"after the stop ({connected} still connected before that); the stream in flight "
          f"got {buf.count(b'data: ')}/8 events, ended {ended} ({how}); "
          f"server returned: {drained}")
    assert refused
    # 6 events, the finish chunk the upstream left out (added by the gateway), and [DONE]
    assert ended and buf.count(b"data: ") == 8, buf[-200:]
    if proto == "h2c":
        assert buf.endswith(b"data: [DONE]\n\n"), buf[-80:]
        assert reader.goaways and all(code == 0 for _, code in reader.goaways)
    assert drained


def test_drain_lets_the_h1_stream_in_flight_finish_and_refuses_new_connections(backend):
    _drain(backend, "h1")


def test_drain_lets_the_h2_stream_in_flight_finish_and_refuses_new_connections(backend):
    _drain(backend, "h2c")


def _oversize_head(port: int, size: int) -> bytes | str:
    """Send a request whose head is ``size`` bytes, all of it, then read to the end: the
    answer's bytes, or "reset" when the connection was reset before it was read."""
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size
            + b"\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        try:
            s.sendall(head)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading: its answer may still be there to read
        got = b""
        try:
            while chunk := s.recv(65536):
                got += chunk
        except ConnectionResetError:
            return "reset"
        return got


def test_r4_every_oversize_head_is_answered_before_the_close(backend):
    """A refused request is answered and the socket half-closed and drained (lingering
    close), so the client reads its 431 instead of a reset: 100 of 100 heads of 1 MB (before
    the lingering close, every one of them was reset on both backends: the server closed with
    the rest of the head unread)."""
    up = SSEUpstream()
    try:
        with run_gateway(config(up), backend=backend, options=OPTIONS) as gw:
            got = [_oversize_head(gw.port, 1_000_000) for _ in range(100)]
            statuses = [g if isinstance(g, str) else g.split(b" ", 2)[1].decode()
                        if g.startswith(b"HTTP/1.1 ") else repr(g[:40]) for g in got]
            assert statuses == ["431"] * 100, sorted(set(statuses))
            assert all(b'"error"' in g for g in got if isinstance(g, bytes))
            assert h1_chat(gw.port, "after") == 200  # and the server serves on
    finally:
        up.close()
