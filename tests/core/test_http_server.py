"""ServerConnection: limits, framing, keep-alive, pipelining, deadlines and header hygiene.

Everything is in-memory bytes and explicit ``now`` values: no sockets, no sleeps. Responses
are checked by parsing them with a separate h11 client connection (the oracle).
Rule ids refer to docs/contracts.md (R3, R8); the defaults are in docs/architecture.md.
"""

from __future__ import annotations

import json

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uniapi_core.http import (
    ClientClosed,
    ProtocolFailure,
    RequestReceived,
    ServerConnection,
    ServerLimits,
    clean_headers,
)

# -- helpers -----------------------------------------------------------------------------------


def request(
    method: str = "POST",
    target: str = "/v1/chat/completions",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    *,
    version: str = "1.1",
    host: bool = True,
    length: bool = True,
) -> bytes:
    """Raw request bytes (Content-Length added for a body unless ``length=False``)."""
    lines = [f"{method} {target} HTTP/{version}"]
    if host:
        lines.append("Host: gw.test")
    lines += [f"{n}: {v}" for n, v in headers or []]
    if body and length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(body: bytes, size: int = 7) -> bytes:
    out = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size])
        for i in range(0, len(body), size)
    )
    return out + b"0\r\n\r\n"


def parse_responses(data: bytes, methods: tuple[bytes, ...] = (b"GET",)) -> list[dict]:
    """Parse response bytes with an independent h11 client: one dict per response."""
    client = h11.Connection(h11.CLIENT)
    client.receive_data(data)
    out = []
    for i, method in enumerate(methods):
        if i:
            client.start_next_cycle()
        client.send(h11.Request(method=method, target="/", headers=[("host", "x")]))
        client.send(h11.EndOfMessage())
        resp: dict = {"body": b""}
        while True:
            ev = client.next_event()
            if isinstance(ev, h11.InformationalResponse):
                resp.setdefault("interim", []).append(ev.status_code)
            elif isinstance(ev, h11.Response):
                resp["status"] = ev.status_code
                resp["headers"] = [(k.decode(), v.decode("latin-1")) for k, v in ev.headers]
            elif isinstance(ev, h11.Data):
                resp["body"] += ev.data
            elif isinstance(ev, h11.EndOfMessage):
                break
            elif ev is h11.NEED_DATA:
                client.receive_data(b"")  # close-delimited body: the end is EOF
            else:  # pragma: no cover - an unexpected event fails the test below
                raise AssertionError(ev)
        out.append(resp)
    return out


def header_values(resp: dict, name: str) -> list[str]:
    return [v for k, v in resp["headers"] if k == name]


def assert_error_response(conn: ServerConnection, failure: ProtocolFailure, status: int) -> None:
    """``failure`` has ``status``; its error response is OpenAI JSON with Connection: close."""
    assert isinstance(failure, ProtocolFailure), failure
    assert failure.status == status, failure
    assert conn.must_close
    assert conn.next_deadline() is None
    out = conn.error_response(failure.status, failure.message, now=100.0)
    (resp,) = parse_responses(out)
    assert resp["status"] == status
    assert header_values(resp, "content-type") == ["application/json"]
    assert "close" in header_values(resp, "connection")
    err = json.loads(resp["body"])["error"]
    assert {"message", "type", "code"} <= err.keys()
    assert err["message"] == failure.message and err["type"] == "invalid_request_error"
    assert conn.closed
    # the connection is finished: a second request on it is never answered (R8)
    assert conn.receive_data(request("GET", "/", body=b""), 101.0) == []


def only(events: list) -> object:
    assert len(events) == 1, events
    return events[0]


# -- limits and malformed input: exact status + OpenAI error JSON (R3, R8) ---------------------

SMALL = ServerLimits(max_head=16384, max_body=1000)

LIMIT_CASES = [
    # id, limits, raw bytes (one receive_data call), status
    ("head-20KB-one-read-16KiB-limit", SMALL,
     request("GET", "/", [("X-Big", "a" * 20_000)]), 431),
    ("head-70KB-one-read-default", ServerLimits(),
     request("GET", "/", [("X-Big", "a" * 70_000)]), 431),
    ("head-70KB-many-headers-unfinished", ServerLimits(),
     b"GET / HTTP/1.1\r\n" + b"X-A: bbbbbbbbbbbbbbbbbbbbbbbbb\r\n" * 2500, 431),
    ("101-headers", ServerLimits(),
     request("GET", "/", [(f"X-H{i}", "v") for i in range(100)]), 431),
    ("request-line-9KiB", ServerLimits(), request("GET", "/" + "a" * 9 * 1024), 414),
    ("request-line-9KiB-unfinished", ServerLimits(), b"GET /" + b"a" * 9 * 1024, 414),
    ("content-length-over-max-body", SMALL,
     request("POST", "/", [("Content-Length", "1001")], length=False), 413),
    ("content-length-32MiB-plus-1", ServerLimits(),
     request("POST", "/", [("Content-Length", str(32 * 1024 * 1024 + 1))], length=False), 413),
    ("chunked-over-max-body", SMALL,
     request("POST", "/", [("Transfer-Encoding", "chunked")], length=False)
     + chunked(b"x" * 1001, 100),
     413),
    ("cl-and-te", ServerLimits(),
     request("POST", "/", [("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
             length=False) + chunked(b"hello"), 400),
    ("duplicate-differing-cl", ServerLimits(),
     request("POST", "/", [("Content-Length", "5"), ("Content-Length", "6")], length=False)
     + b"hello!", 400),
    ("comma-differing-cl", ServerLimits(),
     request("POST", "/", [("Content-Length", "5, 6")], length=False) + b"hello!", 400),
    ("bad-cl", ServerLimits(),
     request("POST", "/", [("Content-Length", "abc")], length=False), 400),
    ("te-gzip", ServerLimits(),
     request("POST", "/", [("Transfer-Encoding", "gzip")], length=False), 501),
    ("te-gzip-chunked", ServerLimits(),
     request("POST", "/", [("Transfer-Encoding", "gzip, chunked")], length=False), 501),
    ("missing-host", ServerLimits(), request("GET", "/", host=False), 400),
    ("nul-in-header", ServerLimits(), request("GET", "/", [("X-A", "a\x00b")]), 400),
    ("bare-cr-in-header", ServerLimits(), request("GET", "/", [("X-A", "a\rb")]), 400),
    ("space-in-header-name", ServerLimits(), request("GET", "/", [("X A", "b")]), 400),
    ("garbage-request-line", ServerLimits(), b"HELLO\r\n\r\n", 400),
    ("tls-client-hello", ServerLimits(), b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
    ("leading-blank-line", ServerLimits(), b"\r\n" + request("GET", "/"), 400),
    ("h2-prior-knowledge-preface", ServerLimits(), b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    ("http-1.2", ServerLimits(), request("GET", "/", version="1.2"), 505),
    ("connect", ServerLimits(), request("CONNECT", "example.com:443"), 501),
]


@pytest.mark.parametrize("limits,raw,status", [c[1:] for c in LIMIT_CASES],
                         ids=[c[0] for c in LIMIT_CASES])
def test_limits_and_malformed_requests(limits: ServerLimits, raw: bytes, status: int) -> None:
    conn = ServerConnection(limits)
    assert_error_response(conn, only(conn.receive_data(raw, 1.0)), status)


@pytest.mark.parametrize("limits,raw,status", [c[1:] for c in LIMIT_CASES],
                         ids=[c[0] for c in LIMIT_CASES])
def test_limits_hold_when_fed_in_small_pieces(limits: ServerLimits, raw: bytes,
                                              status: int) -> None:
    conn = ServerConnection(limits)
    events: list = []
    for i in range(0, len(raw), 997):
        events += conn.receive_data(raw[i : i + 997], 1.0)
    assert_error_response(conn, only(events), status)


def test_413_is_immediate_and_reads_no_body() -> None:
    conn = ServerConnection(SMALL)
    head = request("POST", "/", [("Content-Length", "5000"), ("Expect", "100-continue")],
                   length=False)
    failure = only(conn.receive_data(head, 1.0))
    assert conn.data_to_send() == b""  # no 100 Continue for a body we refuse
    assert_error_response(conn, failure, 413)


def test_boundaries_are_accepted() -> None:
    # exactly 100 headers (Host + 99), a request line of exactly 8192 bytes, a head of exactly
    # max_head bytes, a body of exactly max_body bytes
    conn = ServerConnection(ServerLimits())
    ev = only(conn.receive_data(request("GET", "/", [(f"X-H{i}", "v") for i in range(99)]), 0))
    assert isinstance(ev, RequestReceived) and len(ev.headers) == 100

    target = "/" + "a" * (8192 - len("GET  HTTP/1.1") - 1)
    assert len(f"GET {target} HTTP/1.1") == 8192
    conn = ServerConnection()
    assert isinstance(only(conn.receive_data(request("GET", target), 0)), RequestReceived)

    base = request("GET", "/", [("X-Pad", "")])
    raw = request("GET", "/", [("X-Pad", "p" * (16384 - len(base)))])
    assert len(raw) == 16384
    conn = ServerConnection(SMALL)
    assert isinstance(only(conn.receive_data(raw, 0)), RequestReceived)
    raw = request("GET", "/", [("X-Pad", "p" * (16385 - len(base)))])
    conn = ServerConnection(SMALL)
    assert only(conn.receive_data(raw, 0)) == ProtocolFailure(431, "request header block too large")

    conn = ServerConnection(SMALL)
    ev = only(conn.receive_data(request("POST", "/", body=b"b" * 1000), 0))
    assert isinstance(ev, RequestReceived) and len(ev.body) == 1000


def test_failure_messages_do_not_echo_client_bytes() -> None:
    conn = ServerConnection()
    raw = request("GET", "/", [("Authorization", "Bearer sk-canary-123\x00")])
    failure = only(conn.receive_data(raw, 0))
    assert failure.status == 400 and "sk-canary" not in failure.message


# -- requests, keep-alive, pipelining ----------------------------------------------------------


def test_request_fields() -> None:
    conn = ServerConnection()
    ev = only(conn.receive_data(request("POST", "/v1/x?a=1", [("X-Name", "caf\xe9")],
                                        b'{"a":1}'), 0))
    assert ev == RequestReceived(
        method="POST",
        target="/v1/x?a=1",
        headers=(("host", "gw.test"), ("x-name", "caf\xe9"), ("content-length", "7")),
        body=b'{"a":1}',
        http_version="1.1",
    )
    assert ev.header("X-NAME") == "caf\xe9" and ev.header("missing") is None
    assert not conn.must_close and not conn.response_started and not conn.closed


def test_chunked_request_body() -> None:
    conn = ServerConnection()
    body = b'{"messages": [' + b"x" * 100 + b"]}"
    raw = request("POST", "/", [("Transfer-Encoding", "chunked")], length=False) + chunked(body)
    ev = only(conn.receive_data(raw, 0))
    assert isinstance(ev, RequestReceived) and ev.body == body


def test_keep_alive_two_sequential_requests() -> None:
    conn = ServerConnection()
    first = only(conn.receive_data(request("POST", "/a", body=b"1"), 1.0))
    assert first.target == "/a" and conn.next_deadline() is None
    out = conn.respond(200, [("content-type", "text/plain")], b"one", 2.0)
    assert conn.next_request(2.0) == []
    assert conn.next_deadline() == 2.0 + 75.0
    second = only(conn.receive_data(request("GET", "/b"), 3.0))
    assert second.target == "/b"
    out += conn.respond(200, [], b"two", 4.0)
    r1, r2 = parse_responses(out, (b"POST", b"GET"))
    assert (r1["status"], r1["body"], r2["body"]) == (200, b"one", b"two")
    assert not conn.must_close and not conn.closed


def test_pipelined_second_request_surfaces_from_next_request() -> None:
    conn = ServerConnection()
    raw = request("POST", "/a", body=b"first") + request("GET", "/b")
    ev = only(conn.receive_data(raw, 0))
    assert ev.target == "/a" and ev.body == b"first"
    conn.respond(200, [], b"ok", 1.0)
    ev = only(conn.next_request(1.0))
    assert ev.target == "/b"


def test_pipelined_bytes_arriving_during_response_are_buffered() -> None:
    conn = ServerConnection()
    only(conn.receive_data(request("GET", "/a"), 0))
    head = conn.start_response(200, [])
    second = request("POST", "/b", body=b"xyz")
    assert conn.receive_data(second[:10], 0.5) == []
    assert conn.receive_data(second[10:], 0.6) == []
    body = conn.send_data(b"data") + conn.end_response(1.0)
    ev = only(conn.next_request(1.0))
    assert (ev.target, ev.body) == ("/b", b"xyz")
    assert parse_responses(head + body)[0]["body"] == b"data"


def test_pipelined_overflow_closes_after_the_response() -> None:
    conn = ServerConnection(ServerLimits(max_pipelined=100))
    only(conn.receive_data(request("GET", "/a"), 0))
    assert conn.receive_data(request("GET", "/b", [("X-Pad", "p" * 200)]), 0.1) == []
    assert conn.must_close
    assert conn.receive_data(b"more bytes", 0.2) == []
    out = conn.respond(200, [], b"ok", 1.0)
    assert "close" in header_values(parse_responses(out)[0], "connection")
    assert conn.closed
    assert conn.next_request(1.0) == [ClientClosed()]


def test_eof_during_response_is_client_closed() -> None:
    conn = ServerConnection()
    only(conn.receive_data(request("POST", "/", body=b"{}"), 0))
    conn.start_response(200, [("content-type", "text/event-stream")])
    conn.send_data(b"data: 1\n\n")
    assert conn.receive_data(b"", 1.0) == [ClientClosed()]
    assert conn.closed
    assert conn.receive_data(b"", 1.1) == []


@pytest.mark.parametrize("raw", [b"", b"GET / HT", request("POST", "/", body=b"abc")[:-1]],
                         ids=["idle", "mid-head", "mid-body"])
def test_eof_while_reading_is_client_closed(raw: bytes) -> None:
    conn = ServerConnection()
    if raw:
        assert conn.receive_data(raw, 0) == []
    assert conn.receive_data(b"", 1.0) == [ClientClosed()]
    assert conn.closed and conn.next_deadline() is None


def test_request_and_eof_in_one_read() -> None:
    conn = ServerConnection()
    ev, closed = conn.receive_data(request("GET", "/"), 0) + conn.receive_data(b"", 0)
    assert isinstance(ev, RequestReceived) and closed == ClientClosed()


def test_max_requests_closes_on_the_last() -> None:
    conn = ServerConnection(ServerLimits(max_requests=2))
    only(conn.receive_data(request("GET", "/1"), 0))
    assert not conn.must_close
    out = conn.respond(200, [], b"", 1)
    assert conn.next_request(1) == []
    only(conn.receive_data(request("GET", "/2"), 2))
    assert conn.must_close
    out += conn.respond(200, [], b"", 3)
    r1, r2 = parse_responses(out, (b"GET", b"GET"))
    assert header_values(r1, "connection") == [] and header_values(r2, "connection") == ["close"]
    assert conn.closed and conn.next_request(3) == [ClientClosed()]


@pytest.mark.parametrize("raw", [request("GET", "/", [("Connection", "close")]),
                                 request("GET", "/", version="1.0", host=False)],
                         ids=["connection-close", "http-1.0"])
def test_client_asked_close(raw: bytes) -> None:
    conn = ServerConnection()
    only(conn.receive_data(raw, 0))
    assert conn.must_close
    out = conn.start_response(200, []) + conn.send_data(b"abc") + conn.end_response(1)
    resp = parse_responses(out)[0]
    assert resp["body"] == b"abc" and "close" in header_values(resp, "connection")
    assert conn.closed


def test_http10_streaming_response_is_close_delimited() -> None:
    conn = ServerConnection()
    only(conn.receive_data(request("GET", "/", version="1.0", host=False), 0))
    out = conn.start_response(200, [])
    assert b"transfer-encoding" not in out.lower()
    assert conn.send_data(b"abc") == b"abc"


def test_unknown_status_has_empty_reason() -> None:
    conn = ServerConnection()
    only(conn.receive_data(request("GET", "/"), 0))
    assert conn.respond(599, [], b"", 1).startswith(b"HTTP/1.1 599 \r\n")


def test_head_response_has_no_body() -> None:
    conn = ServerConnection()
    only(conn.receive_data(request("HEAD", "/"), 0))
    out = conn.respond(200, [], b"hello", 1)
    assert out.endswith(b"\r\n\r\n") and b"content-length: 5" in out
    assert parse_responses(out, (b"HEAD",))[0]["body"] == b""
    assert conn.next_request(1) == []


def test_chunked_response_roundtrip() -> None:
    conn = ServerConnection()
    only(conn.receive_data(request("POST", "/", body=b"{}"), 0))
    out = conn.start_response(200, [("content-type", "text/event-stream")])
    assert conn.response_started
    out += conn.send_data(b"data: a\n\n") + conn.send_data(b"") + conn.send_data(b"data: b\n\n")
    out += conn.end_response(1)
    resp = parse_responses(out, (b"POST",))[0]
    assert resp["body"] == b"data: a\n\ndata: b\n\n"
    assert header_values(resp, "transfer-encoding") == ["chunked"]


def test_caller_framing_headers_are_ignored_and_connection_close_is_honoured() -> None:
    conn = ServerConnection()
    only(conn.receive_data(request("GET", "/"), 0))
    out = conn.respond(200, [("Content-Length", "999"), ("Transfer-Encoding", "gzip"),
                             ("Connection", "close")], b"ok", 1)
    resp = parse_responses(out)[0]
    assert header_values(resp, "content-length") == ["2"]
    assert header_values(resp, "transfer-encoding") == []
    assert conn.must_close and conn.closed


def test_expect_100_continue() -> None:
    conn = ServerConnection()
    raw = request("POST", "/", [("Expect", "100-continue")], b"hello")
    head, body = raw[:-5], raw[-5:]
    assert conn.receive_data(head, 0) == []
    assert conn.data_to_send() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert conn.data_to_send() == b""
    ev = only(conn.receive_data(body, 1))
    assert ev.body == b"hello"


def test_undrained_100_continue_precedes_the_final_response() -> None:
    conn = ServerConnection()
    raw = request("POST", "/", [("Expect", "100-continue")], b"hello")
    conn.receive_data(raw[:-5], 0)
    only(conn.receive_data(raw[-5:], 0))
    resp = parse_responses(conn.respond(200, [], b"ok", 1), (b"POST",))[0]
    assert resp["interim"] == [100] and resp["status"] == 200


def test_response_misuse_raises() -> None:
    conn = ServerConnection()
    with pytest.raises(RuntimeError):
        conn.start_response(200, [])
    with pytest.raises(RuntimeError):
        conn.send_data(b"x")
    with pytest.raises(RuntimeError):
        conn.end_response(0)
    only(conn.receive_data(request("GET", "/"), 0))
    with pytest.raises(RuntimeError):
        conn.next_request(0)
    with pytest.raises(ValueError):
        conn.start_response(101, [])
    conn.start_response(200, [], content_length=3)
    with pytest.raises(RuntimeError):
        conn.start_response(200, [])
    with pytest.raises(ValueError):
        conn.send_data(b"abcd")


def test_short_content_length_response_forces_close() -> None:
    conn = ServerConnection()
    only(conn.receive_data(request("GET", "/"), 0))
    conn.start_response(200, [], content_length=10)
    conn.send_data(b"abc")
    assert conn.end_response(1) == b""
    assert conn.must_close and conn.closed


# -- deadlines (explicit now values) -----------------------------------------------------------


def test_head_timeout_is_408_from_the_first_byte() -> None:
    conn = ServerConnection(now=0.0)
    assert conn.next_deadline() == 10.0  # nothing yet: head_timeout from accept
    assert conn.receive_data(b"GET / HT", 5.0) == []
    assert conn.next_deadline() == 15.0
    assert conn.receive_data(b"TP/1.1\r\n", 14.0) == []  # trickling does not extend it
    assert conn.next_deadline() == 15.0
    assert conn.deadline_reached(14.9) == []
    assert_error_response(conn, only(conn.deadline_reached(15.0)), 408)


def test_body_idle_timeout_is_408_since_the_last_bytes() -> None:
    conn = ServerConnection(ServerLimits(min_body_rate=0))  # idle time only
    raw = request("POST", "/", body=b"0123456789")
    assert conn.receive_data(raw[:-5], 1.0) == []
    assert conn.next_deadline() == 31.0
    assert conn.receive_data(raw[-5:-3], 20.0) == []
    assert conn.next_deadline() == 50.0
    assert conn.deadline_reached(49.0) == []
    failure = only(conn.deadline_reached(50.0))
    assert failure.message == "timed out reading the request body"
    assert_error_response(conn, failure, 408)


def test_a_body_trickling_under_the_minimum_rate_is_408() -> None:
    limits = ServerLimits(body_idle_timeout=0.3, min_body_rate=100)
    conn = ServerConnection(limits)
    raw = request("POST", "/", body=b"x" * 1000)
    head, body = raw.split(b"\r\n\r\n", 1)
    assert conn.receive_data(head + b"\r\n\r\n", 0.0) == []
    assert conn.receive_data(body[:1], 0.1) == []
    assert conn.receive_data(body[1:2], 0.2) == []
    # never idle for 0.3 s (that alone would end at 0.5), but 2 bytes in the 0.3 s grace is
    # under 100 B/s
    assert conn.next_deadline() == 0.3
    assert conn.deadline_reached(0.29) == []
    assert_error_response(conn, only(conn.deadline_reached(0.3)), 408)


def test_a_body_at_the_minimum_rate_is_not_cut() -> None:
    limits = ServerLimits(body_idle_timeout=0.3, min_body_rate=100)
    conn = ServerConnection(limits)
    raw = request("POST", "/", body=b"x" * 100)
    head, body = raw.split(b"\r\n\r\n", 1)
    conn.receive_data(head + b"\r\n\r\n", 0.0)
    for i in range(50):  # 200 B/s in 20-byte pieces every 0.1 s
        now = 0.1 * (i + 1)
        assert conn.deadline_reached(now) == []
        events = conn.receive_data(body[i * 20:(i + 1) * 20], now)
        if events:
            assert isinstance(only(events), RequestReceived)
            break
    else:
        raise AssertionError("the body never completed")


def test_keepalive_idle_closes_silently() -> None:
    conn = ServerConnection()
    only(conn.receive_data(request("GET", "/"), 1.0))
    assert conn.next_deadline() is None  # the relay owns time while responding
    assert conn.deadline_reached(1e9) == []
    conn.respond(200, [], b"", 2.0)
    assert conn.next_deadline() is None  # until next_request
    conn.next_request(2.0)
    assert conn.next_deadline() == 77.0
    assert conn.deadline_reached(76.0) == []
    assert conn.deadline_reached(77.0) == [ClientClosed()]
    assert conn.closed and conn.next_deadline() is None


def test_idle_connection_that_never_speaks_closes_after_head_timeout() -> None:
    conn = ServerConnection(ServerLimits(head_timeout=1.0), now=3.0)
    assert conn.deadline_reached(4.0) == [ClientClosed()]


def test_pipelined_partial_head_starts_head_timer_at_next_request() -> None:
    conn = ServerConnection()
    conn.receive_data(request("GET", "/a") + b"GET /b HTTP/1.1\r\n", 0.0)
    conn.respond(200, [], b"", 50.0)
    assert conn.next_request(50.0) == []
    assert conn.next_deadline() == 60.0
    assert only(conn.deadline_reached(60.0)).status == 408


# -- header hygiene (R8) -----------------------------------------------------------------------


def test_header_injection_is_dropped() -> None:
    conn = ServerConnection()
    only(conn.receive_data(request("GET", "/"), 0))
    out = conn.respond(200, [
        ("x-request-id", "abc\r\nSet-Cookie: evil=1"),
        ("x-lf", "a\nb"),
        ("x-nul", "a\x00b"),
        ("x-esc", "a\x1bb"),
        ("x-accent", "caf\xe9"),
        ("x-emoji", "\U0001f600"),
        ("bad name", "v"),
        ("x-colon:", "v"),
        ("x-ok", "  fine  "),
    ], b"", 1)
    assert b"evil" not in out and b"Set-Cookie" not in out
    resp = parse_responses(out)[0]
    assert [k for k, _ in resp["headers"]] == ["x-ok", "content-length"]
    assert header_values(resp, "x-ok") == ["fine"]


def test_clean_headers_obs_text_option() -> None:
    assert clean_headers([("X-A", "caf\xe9")]) == []
    assert clean_headers([("X-A", "caf\xe9")], allow_obs_text=True) == [(b"x-a", b"caf\xe9")]
    assert clean_headers([("X-A", "\u20ac")], allow_obs_text=True) == []
    assert clean_headers([(b"X-B", b"v w")]) == [(b"x-b", b"v w")]
    assert clean_headers([("x-empty", "")]) == [(b"x-empty", b"")]


# -- properties --------------------------------------------------------------------------------

_TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-"
_RESERVED = {"host", "content-length", "transfer-encoding", "connection", "expect", "upgrade"}
_VALUE_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0x7E)

header_names = st.text(_TOKEN_CHARS, min_size=1, max_size=12).map(lambda s: "x-" + s)
header_values_st = st.builds(
    lambda words: " ".join(words), st.lists(st.text(_VALUE_CHARS, min_size=1, max_size=10),
                                            max_size=3)
)
targets = st.text("abcdefghijklmnopqrstuvwxyz0123456789/-_.~%?=&", max_size=40).map(
    lambda s: "/" + s
)


@st.composite
def valid_requests(draw: st.DrawFn) -> tuple[bytes, RequestReceived]:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
    target = draw(targets)
    headers = draw(st.lists(st.tuples(header_names, header_values_st), max_size=8))
    body = draw(st.binary(max_size=300))
    use_chunked = draw(st.booleans())
    head = [("host", "gw.test")] + headers
    if use_chunked:
        head.append(("transfer-encoding", "chunked"))
        payload = chunked(body, draw(st.integers(1, 64))) if body else b"0\r\n\r\n"
    else:
        if body or draw(st.booleans()):
            head.append(("content-length", str(len(body))))
        payload = body
    raw = (f"{method} {target} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in head)
           + "\r\n").encode("latin-1") + payload
    expected = RequestReceived(method=method, target=target, headers=tuple(head), body=body,
                               http_version="1.1")
    return raw, expected


def split(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]  # b"" would mean EOF


def drive(conn: ServerConnection, pieces: list[bytes]) -> tuple[list, bytes]:
    """Feed pieces; answer every request (respond + next_request) and every failure."""
    events: list = []
    out = b""
    now = 0.0

    def handle(new: list) -> None:
        nonlocal out
        queue = list(new)
        while queue:
            ev = queue.pop(0)
            events.append(ev)
            if isinstance(ev, RequestReceived) and not conn.closed:
                out += conn.respond(200, [("x-n", str(len(events)))], b"ok", now)
                queue += conn.next_request(now)
            elif isinstance(ev, ProtocolFailure):
                out += conn.error_response(ev.status, ev.message, now=now)

    for piece in pieces:
        now += 0.5
        handle(conn.receive_data(piece, now))
        out += conn.data_to_send()
    return events, out


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.lists(valid_requests(), min_size=1, max_size=3))
def test_valid_requests_split_anywhere_parse_identically(data: st.DataObject,
                                                         reqs: list) -> None:
    stream = b"".join(raw for raw, _ in reqs)
    pieces = split(data.draw, stream)
    events, out = drive(ServerConnection(), pieces)
    assert events == [exp for _, exp in reqs]
    responses = parse_responses(out, tuple(exp.method.encode() for _, exp in reqs))
    assert [r["status"] for r in responses] == [200] * len(reqs)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), valid_requests(), st.binary(max_size=200), st.integers(0, 400),
       st.booleans(), st.booleans())
def test_arbitrary_bytes_only_produce_events(data: st.DataObject, req: tuple, junk: bytes,
                                             at: int, eof: bool, timeout: bool) -> None:
    raw, _ = req
    stream = raw[:at] + junk + raw[at:]
    conn = ServerConnection(ServerLimits(max_head=256, max_body=64, max_request_line=40,
                                         max_headers=5, max_pipelined=50))
    pieces = split(data.draw, stream) + ([b""] if eof else [])
    events, out = drive(conn, pieces)
    if timeout:
        events += conn.deadline_reached(1e6)
    for ev in events:
        assert isinstance(ev, (RequestReceived, ProtocolFailure, ClientClosed))
        if isinstance(ev, ProtocolFailure):
            assert ev.status in (400, 408, 413, 414, 431, 501, 505)
    # after a failure nothing more is produced
    if any(isinstance(ev, ProtocolFailure) for ev in events):
        assert isinstance([e for e in events if not isinstance(e, ClientClosed)][-1],
                          ProtocolFailure)


@settings(max_examples=100)
@given(st.binary(max_size=2000), st.integers(1, 64))
def test_pure_noise_never_raises(noise: bytes, step: int) -> None:
    conn = ServerConnection(ServerLimits(max_head=512))
    events: list = []
    for i in range(0, len(noise), step):
        events += conn.receive_data(noise[i : i + step], 0)
    events += conn.receive_data(b"", 1)
    assert all(isinstance(e, (RequestReceived, ProtocolFailure, ClientClosed)) for e in events)
