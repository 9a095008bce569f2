"""ClientConnection: requests out, response events in, and every way an upstream can break it.

In-memory bytes only. Requests are checked with an independent h11 server connection.
"""

from __future__ import annotations

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uniapi_core.errors import UpstreamError
from uniapi_core.http import (
    ClientConnection,
    ResponseData,
    ResponseEnd,
    ResponseHead,
    UpstreamProtocolError,
)

# -- helpers -----------------------------------------------------------------------------------


def sent(conn: ClientConnection, method: str = "POST", body: bytes = b"{}",
         headers: list[tuple[str, str]] | None = None) -> bytes:
    return conn.send_request(method, "/v1/chat/completions",
                             [("host", "api.test"), *(headers or [])], body)


def parse_request(raw: bytes) -> tuple[h11.Request, bytes]:
    server = h11.Connection(h11.SERVER)
    server.receive_data(raw)
    req = server.next_event()
    body = b""
    while True:
        ev = server.next_event()
        if isinstance(ev, h11.Data):
            body += ev.data
        else:
            assert isinstance(ev, h11.EndOfMessage), ev
            return req, body


def collect(events: list) -> tuple[ResponseHead | None, bytes, bool]:
    heads = [e for e in events if isinstance(e, ResponseHead)]
    assert len(heads) <= 1
    body = b"".join(e.data for e in events if isinstance(e, ResponseData))
    ends = [e for e in events if isinstance(e, ResponseEnd)]
    assert len(ends) <= 1 and (not ends or events[-1] == ResponseEnd())
    return (heads[0] if heads else None), body, bool(ends)


def response(status: int = 200, headers: list[tuple[str, str]] | None = None,
             body: bytes = b"", *, framing: str = "length", reason: str = "OK") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{n}: {v}" for n, v in headers or [])]
    if framing == "length":
        lines.append(f"content-length: {len(body)}")
        payload = body
    elif framing == "chunked":
        lines.append("transfer-encoding: chunked")
        payload = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 5]), body[i:i + 5])
                           for i in range(0, len(body), 5)) + b"0\r\n\r\n"
    else:  # close-delimited
        payload = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


# -- sending -----------------------------------------------------------------------------------


def test_send_request_sets_content_length_and_cleans_headers() -> None:
    conn = ClientConnection()
    raw = sent(conn, body=b'{"a":1}', headers=[
        ("authorization", "Bearer k"), ("x-evil", "a\r\nx-injected: 1"), ("x-nul", "a\x00"),
        ("content-length", "999"), ("transfer-encoding", "chunked"), ("x-latin", "caf\xe9"),
    ])
    req, body = parse_request(raw)
    assert (req.method, req.target, body) == (b"POST", b"/v1/chat/completions", b'{"a":1}')
    assert list(req.headers) == [(b"host", b"api.test"), (b"authorization", b"Bearer k"),
                                 (b"x-latin", b"caf\xe9"), (b"content-length", b"7"),
                                 (b"accept-encoding", b"identity")]
    assert b"injected" not in raw


def test_accept_encoding_is_identity_unless_the_caller_sets_one() -> None:
    """RFC 9110: no Accept-Encoding lets a server gzip; the relay forwards bodies as sent."""
    req, _ = parse_request(sent(ClientConnection()))
    assert (b"accept-encoding", b"identity") in list(req.headers)
    req, _ = parse_request(sent(ClientConnection(), headers=[("Accept-Encoding", "br")]))
    assert [v for n, v in req.headers if n == b"accept-encoding"] == [b"br"]


def test_get_without_body_has_no_content_length() -> None:
    req, _ = parse_request(sent(ClientConnection(), "GET", b""))
    assert [n for n, _ in req.headers] == [b"host", b"accept-encoding"]
    req, _ = parse_request(sent(ClientConnection(), "POST", b""))
    assert (b"content-length", b"0") in list(req.headers)


@pytest.mark.parametrize("method,target,headers", [
    ("GET", "/", []),                              # no Host
    ("GET", "/", [("host", "a\r\nb")]),            # Host dropped by cleaning → missing
    ("G T", "/", [("host", "a")]),                 # bad method
    ("GET", "/a b", [("host", "a")]),              # space in target
    ("GET", "", [("host", "a")]),                  # empty target
])
def test_send_request_rejects_bad_input(method: str, target: str, headers: list) -> None:
    conn = ClientConnection()
    with pytest.raises(ValueError):
        conn.send_request(method, target, headers, b"")
    sent(conn)  # the connection is still usable


def test_send_twice_without_cycle_is_misuse() -> None:
    conn = ClientConnection()
    sent(conn)
    with pytest.raises(RuntimeError):
        sent(conn)
    with pytest.raises(RuntimeError):
        conn.start_next_cycle()


# -- receiving ---------------------------------------------------------------------------------


def test_content_length_response_and_keep_alive_reuse() -> None:
    conn = ClientConnection()
    sent(conn)
    events = conn.receive_data(response(200, [("content-type", "application/json")], b'{"x":1}'))
    assert events == [
        ResponseHead(200, (("content-type", "application/json"), ("content-length", "7")), "OK"),
        ResponseData(b'{"x":1}'),
        ResponseEnd(),
    ]
    assert events[0].header("Content-Type") == "application/json"
    assert events[0].header("x") is None
    assert conn.reusable
    conn.start_next_cycle()
    assert not conn.reusable
    sent(conn, "GET", b"")
    head, body, ended = collect(conn.receive_data(response(404, body=b"nf", reason="Not Found")))
    assert (head.status, head.reason, body, ended) == (404, "Not Found", b"nf", True)


def test_chunked_streaming_response_in_pieces() -> None:
    conn = ClientConnection()
    sent(conn)
    raw = response(200, [("content-type", "text/event-stream")], b"data: 1\n\ndata: 2\n\n",
                   framing="chunked")
    events = []
    for i in range(0, len(raw), 3):
        events += conn.receive_data(raw[i:i + 3])
    head, body, ended = collect(events)
    assert head.status == 200 and body == b"data: 1\n\ndata: 2\n\n" and ended
    assert conn.reusable


def test_close_delimited_body_ends_at_eof() -> None:
    conn = ClientConnection()
    sent(conn)
    events = conn.receive_data(response(200, body=b"abc", framing="close"))
    assert collect(events)[1:] == (b"abc", False)
    events += conn.receive_data(b"")
    assert collect(events)[1:] == (b"abc", True)
    assert not conn.reusable


def test_interim_responses_are_skipped() -> None:
    conn = ClientConnection()
    sent(conn)
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: x\r\n\r\n" + response(
        201, body=b"ok")
    head, body, ended = collect(conn.receive_data(raw))
    assert (head.status, body, ended) == (201, b"ok", True)


def test_head_request_response_has_no_body() -> None:
    conn = ClientConnection()
    sent(conn, "HEAD", b"")
    events = conn.receive_data(b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n")
    assert collect(events)[1:] == (b"", True)
    assert conn.reusable


@pytest.mark.parametrize("raw", [
    response(200, [("connection", "close")], b"x"),
    response(200, body=b"x") + b"HTTP/1.1 200 OK\r\n",  # unsolicited bytes after the response
    response(200, body=b"x").replace(b"HTTP/1.1", b"HTTP/1.0"),
], ids=["connection-close", "trailing-bytes", "http-1.0"])
def test_not_reusable(raw: bytes) -> None:
    conn = ClientConnection()
    sent(conn)
    assert collect(conn.receive_data(raw))[2]
    assert not conn.reusable
    with pytest.raises(RuntimeError):
        conn.start_next_cycle()


def test_idle_connection_eof_or_stray_bytes_retire_it() -> None:
    conn = ClientConnection()
    sent(conn)
    conn.receive_data(response(200, body=b"x"))
    assert conn.reusable
    assert conn.receive_data(b"") == []
    assert not conn.reusable
    fresh = ClientConnection()
    assert fresh.receive_data(b"junk") == [] and not fresh.reusable


# -- failures: kind and status -----------------------------------------------------------------

BIG = "a" * 70_000
FAILURES = [
    # id, max_head, pieces, kind
    ("eof-before-response", 65536, [b""], "eof"),
    ("eof-mid-head", 65536, [b"HTTP/1.1 200 OK\r\ncontent-le", b""], "eof"),
    ("eof-mid-body", 65536, [response(200, body=b"0123456789")[:-4], b""], "eof"),
    ("eof-mid-chunked", 65536, [response(200, body=b"0123456789", framing="chunked")[:-5], b""],
     "eof"),
    ("garbage", 65536, [b"<html>502 Bad Gateway</html>\r\n\r\n"], "protocol"),
    ("bad-status-line", 65536, [b"HTTP/1.1 abc OK\r\n\r\n"], "protocol"),
    ("bad-chunk-size", 65536, [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"],
     "protocol"),
    ("conflicting-cl", 65536,
     [b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab"], "protocol"),
    ("te-gzip", 65536, [b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n"], "protocol"),
    ("unasked-101", 65536, [b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n"],
     "protocol"),
    ("head-70KB-one-read", 65536, [response(200, [("x-big", BIG)], b"x")], "head_too_large"),
    ("head-20KB-one-read-16KiB-limit", 16384,
     [response(200, [("x-big", "a" * 20_000)], b"x")], "head_too_large"),
    ("head-unfinished-in-pieces", 1000, [b"HTTP/1.1 200 OK\r\n"] + [b"x-a: b\r\n"] * 200,
     "head_too_large"),
    ("interim-heads-count-separately", 300,
     [b"HTTP/1.1 100 Continue\r\nx: " + b"a" * 200 + b"\r\n\r\nHTTP/1.1 200 OK\r\nx: "
      + b"a" * 300 + b"\r\n\r\n"], "head_too_large"),
]


@pytest.mark.parametrize("max_head,pieces,kind", [f[1:] for f in FAILURES],
                         ids=[f[0] for f in FAILURES])
def test_failures_raise_upstream_protocol_error(max_head: int, pieces: list[bytes],
                                                kind: str) -> None:
    conn = ClientConnection(max_head=max_head)
    sent(conn)
    with pytest.raises(UpstreamProtocolError) as info:
        for piece in pieces:
            conn.receive_data(piece)
    err = info.value
    assert err.kind == kind
    assert isinstance(err, UpstreamError) and err.status == 502 and err.code == "upstream_error"
    assert not conn.reusable
    with pytest.raises(UpstreamProtocolError):  # dead for good
        conn.receive_data(b"more")
    with pytest.raises(UpstreamProtocolError):
        sent(conn)


def test_interim_heads_within_limit_each() -> None:
    conn = ClientConnection(max_head=300)
    sent(conn)
    raw = (b"HTTP/1.1 100 Continue\r\nx: " + b"a" * 200 + b"\r\n\r\n"
           + response(200, [("x", "a" * 200)], b"ok"))
    assert collect(conn.receive_data(raw))[1:] == (b"ok", True)


def test_error_message_does_not_echo_upstream_bytes() -> None:
    conn = ClientConnection()
    sent(conn)
    with pytest.raises(UpstreamProtocolError) as info:
        conn.receive_data(b"HTTP/1.1 200 OK\r\nx-key: sk-canary\x00\r\n\r\n")
    assert "sk-canary" not in str(info.value)


# -- properties --------------------------------------------------------------------------------

_VALUE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12)


@st.composite
def responses(draw: st.DrawFn) -> tuple[bytes, int, tuple, bytes, str]:
    status = draw(st.sampled_from([200, 201, 400, 401, 404, 429, 500, 502, 503]))
    headers = draw(st.lists(st.tuples(
        st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=10).map(lambda s: "x-" + s),
        _VALUE), max_size=6))
    body = draw(st.binary(max_size=400))
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    raw = response(status, headers, body, framing=framing, reason="Reason Phrase")
    if draw(st.booleans()):
        raw = b"HTTP/1.1 100 Continue\r\n\r\n" + raw
    full = list(headers)
    if framing == "length":
        full.append(("content-length", str(len(body))))
    elif framing == "chunked":
        full.append(("transfer-encoding", "chunked"))
    return raw, status, tuple(full), body, framing


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), responses())
def test_responses_split_anywhere_parse_identically(data: st.DataObject, resp: tuple) -> None:
    raw, status, headers, body, framing = resp
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    bounds = [0, *cuts, len(raw)]
    conn = ClientConnection()
    sent(conn)
    events = []
    for a, b in zip(bounds, bounds[1:]):
        if b > a:
            events += conn.receive_data(raw[a:b])
    if framing == "close":
        events += conn.receive_data(b"")
    head, got_body, ended = collect(events)
    assert head == ResponseHead(status, headers, "Reason Phrase")
    assert (got_body, ended) == (body, True)
    assert conn.reusable == (framing != "close")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), responses(), st.binary(max_size=100), st.integers(0, 600), st.booleans())
def test_arbitrary_bytes_raise_only_upstream_protocol_error(
    data: st.DataObject, resp: tuple, junk: bytes, at: int, eof: bool
) -> None:
    raw = resp[0][:at] + junk + resp[0][at:]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=6)))
    bounds = [0, *cuts, len(raw)]
    conn = ClientConnection(max_head=200)
    sent(conn, data.draw(st.sampled_from(["GET", "HEAD", "POST"])))
    pieces = [raw[a:b] for a, b in zip(bounds, bounds[1:]) if b > a] + ([b""] if eof else [])
    try:
        for piece in pieces:
            for ev in conn.receive_data(piece):
                assert isinstance(ev, (ResponseHead, ResponseData, ResponseEnd))
    except UpstreamProtocolError as exc:
        assert exc.kind in ("protocol", "eof", "head_too_large")
