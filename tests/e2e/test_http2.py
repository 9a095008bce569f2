"""End to end over HTTP/2: h2c prior knowledge on the HTTP/1.1 port, TLS with ALPN, and the
R7 abuse cases, on both backends, with httpx (http2) / the openai SDK / raw h2 frames."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import httpx
import openai

from tests.e2e.test_chat import COMPLETION, KEY, MESSAGES, STREAM, config
from tests.fakes.tls import make_cert
from tests.fakes.upstream import json_reply, sse_reply
from tests.harness import run_gateway
from uniapi_core.http.h2server import H2Limits
from uniapi_core.http.server import ServerLimits
from uniapi_core.startup import FrontOptions

BODY = json.dumps({"model": "gpt-4o", "messages": MESSAGES}).encode()
STREAM_BODY = json.dumps({"model": "gpt-4o", "messages": MESSAGES, "stream": True}).encode()
HEADERS = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}




def h2c_client(**kw) -> httpx.Client:
    return httpx.Client(http1=False, http2=True, timeout=15, **kw)


def test_h2c_prior_knowledge_non_stream_and_stream_with_the_sdk(backend, up):
    up.replies += [json_reply(COMPLETION), sse_reply(STREAM)]
    with run_gateway(config(up), backend=backend) as gw, h2c_client() as http:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key=KEY, max_retries=0,
                               http_client=http)
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o",
                                                               messages=MESSAGES)
        assert raw.http_response.http_version == "HTTP/2"
        assert raw.parse().choices[0].message.tool_calls[0].id == "call_A"
        chunks = list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES,
                                                     stream=True,
                                                     stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "Hello ✓"
        assert chunks[-1].usage.total_tokens == 21  # the usage chunk: asked for (S-5)
        # and HTTP/1.1 still works on the same port
        assert httpx.get(gw.url + "/healthz").status_code == 200


def test_tls_alpn_offers_h2_and_http11(backend, up, tmp_path):
    cert, key = make_cert(tmp_path)
    up.replies += [json_reply(COMPLETION), sse_reply(STREAM), json_reply(COMPLETION)]
    options = FrontOptions(certfile=cert, keyfile=key)
    with run_gateway(config(up), backend=backend, options=options) as gw:
        base = f"https://localhost:{gw.port}/v1"
        verify = ssl.create_default_context(cafile=cert)
        with httpx.Client(http2=True, verify=verify, timeout=15) as http:
            client = openai.OpenAI(base_url=base, api_key=KEY, max_retries=0, http_client=http)
            raw = client.chat.completions.with_raw_response.create(model="gpt-4o",
                                                                   messages=MESSAGES)
            assert raw.http_response.http_version == "HTTP/2"
            assert raw.parse().id
            chunks = list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES,
                                                         stream=True))
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) \
                == "Hello ✓"
        with httpx.Client(verify=ssl.create_default_context(cafile=cert), timeout=15) as http1:
            r = http1.post(base + "/chat/completions", content=BODY, headers=HEADERS)
            assert r.http_version == "HTTP/1.1" and r.status_code == 200
        # a client that never finishes TLS does not stop the server
        with socket.create_connection(("127.0.0.1", gw.port)) as s:
            s.sendall(b"GET / HTTP/1.1\r\n\r\n")
            with httpx.Client(verify=ssl.create_default_context(cafile=cert), timeout=15) as http1:
                assert http1.get(f"https://localhost:{gw.port}/healthz").status_code == 200


def test_many_concurrent_streams_on_one_connection(backend, up):
    # A hand-driven client: httpx's h2 pool picks stream ids outside its lock, so threads
    # sharing one httpx connection can open streams out of order, which h2 (rightly) answers
    # with a connection PROTOCOL_ERROR.  Here all 20 requests go out before any answer is read.
    up.handler = lambda seen: json_reply(COMPLETION)
    with run_gateway(config(up), backend=backend) as gw:
        c = RawH2(gw.port)
        sids = [c.request() for _ in range(20)]
        c.flush()
        status: dict[int, bytes] = {}
        bodies: dict[int, bytes] = {sid: b"" for sid in sids}
        ended: set[int] = set()
        deadline = time.monotonic() + 20
        while len(ended) < len(sids) and time.monotonic() < deadline:
            evs = c.events(h2.events.StreamEnded, timeout=max(0.1, deadline - time.monotonic()))
            assert "EOF" not in evs and not any(
                isinstance(e, (h2.events.ConnectionTerminated, h2.events.StreamReset))
                for e in evs), evs
            for e in evs:
                if isinstance(e, h2.events.ResponseReceived):
                    status[e.stream_id] = dict(e.headers)[b":status"]
                elif isinstance(e, h2.events.DataReceived):
                    bodies[e.stream_id] += e.data
                elif isinstance(e, h2.events.StreamEnded):
                    ended.add(e.stream_id)
        c.close()
        assert ended == set(sids)
        assert all(status[sid] == b"200" for sid in sids), status
        assert all(json.loads(bodies[sid])["choices"][0]["message"]["content"]
                   == COMPLETION["choices"][0]["message"]["content"] for sid in sids)
        assert len(up.seen) == 20


def test_errors_are_openai_json_over_h2(backend, up):
    with run_gateway(config(up), backend=backend,
                     limits=ServerLimits(max_body=1000)) as gw, h2c_client() as http:
        r = http.post(gw.url + "/v1/chat/completions", content=b"{nope", headers=HEADERS)
        assert r.status_code == 400 and r.json()["error"]["type"]
        r = http.post(gw.url + "/v1/chat/completions", content=b"x" * 5000, headers=HEADERS)
        assert r.status_code == 413 and "too large" in r.json()["error"]["message"]
        r = http.get(gw.url + "/v1/nothing-here", headers=HEADERS)
        assert r.status_code == 404
        up.replies.append(json_reply(COMPLETION))
        r = http.post(gw.url + "/v1/chat/completions", content=BODY, headers=HEADERS)
        assert r.status_code == 200  # the same connection keeps serving


# -- raw frames ---------------------------------------------------------------------------------

class RawH2:
    """A hand-driven h2 client on a plain socket, for the abuse cases."""

    def __init__(self, port: int) -> None:
        self.stalled: set[int] = set()  # streams whose window the client never reopens
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None))
        self.conn.initiate_connection()
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)


    def request(self, body: bytes | None = BODY) -> int:
        """A chat request; ``body=None`` sends HEADERS with END_STREAM only."""
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(b":method", b"POST"), (b":path", b"/v1/chat/completions"),
                                     (b":scheme", b"http"), (b":authority", b"127.0.0.1"),
                                     (b"authorization", f"Bearer {KEY}".encode()),
                                     (b"content-type", b"application/json")],
                               end_stream=body is None)
        if body is not None:
            self.conn.send_data(sid, body, end_stream=True)
        return sid

    def _ack(self, ev: h2.events.DataReceived) -> None:
        n = ev.flow_controlled_length
        if n and self.conn.state_machine.state != h2.connection.ConnectionState.CLOSED:
            self.conn.increment_flow_control_window(n)
            if ev.stream_id not in self.stalled:
                try:
                    self.conn.increment_flow_control_window(n, stream_id=ev.stream_id)
                except h2.exceptions.ProtocolError:  # stream (or, after GOAWAY, all) closed
                    pass

    def events(self, until: type, timeout: float = 10.0) -> list:
        """Read until an event of type ``until`` (or EOF); return everything seen."""
        seen: list = []
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.5)
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            if not data:
                seen.append("EOF")
                return seen
            evs = self.conn.receive_data(data)
            for e in evs:
                if isinstance(e, h2.events.DataReceived):
                    self._ack(e)
            try:
                self.flush()
            except OSError:  # the server already closed (after a GOAWAY): what came in counts
                pass
            seen += evs
            if any(isinstance(e, until) for e in evs):
                return seen
        return seen

    def close(self) -> None:
        self.sock.close()


def test_client_reset_cancels_the_upstream(backend, up):
    gate = threading.Event()
    reply = sse_reply(STREAM)
    reply.gates[2] = gate  # never opened during the test
    up.replies.append(reply)
    with run_gateway(config(up), backend=backend) as gw:
        c = RawH2(gw.port)
        sid = c.request(STREAM_BODY)
        c.flush()
        evs = c.events(h2.events.DataReceived)
        assert any(isinstance(e, h2.events.ResponseReceived) and (b":status", b"200")
                   in e.headers for e in evs)
        c.conn.reset_stream(sid)
        c.flush()
        assert up.closed_by_peer.wait(5), "the upstream request was not cancelled"
        gate.set()
        up.replies.append(json_reply(COMPLETION))
        sid2 = c.request()  # the connection itself goes on
        c.flush()
        evs = c.events(h2.events.StreamEnded)
        assert any(isinstance(e, h2.events.ResponseReceived) and e.stream_id == sid2
                   and (b":status", b"200") in e.headers for e in evs), evs
        c.close()


def test_rapid_reset_closes_that_connection_only(backend, up):
    up.handler = lambda seen: json_reply(COMPLETION)
    with run_gateway(config(up), backend=backend) as gw, h2c_client() as http:
        bystander = http.post(gw.url + "/v1/chat/completions", content=BODY, headers=HEADERS)
        assert bystander.status_code == 200
        c = RawH2(gw.port)
        sent = 0
        try:
            for _ in range(1000):
                sid = c.request(None)
                c.conn.reset_stream(sid)
                sent += 1
                if sent % 20 == 0:
                    c.flush()
            c.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        evs = c.events(h2.events.ConnectionTerminated)
        ended = [e for e in evs if isinstance(e, h2.events.ConnectionTerminated)]
        assert ended and ended[0].error_code == 0xB  # ENHANCE_YOUR_CALM
        # requests reset in the read they came in are never served: the upstream saw only
        # the bystander (the exact count of 100 is asserted on the sans-IO connection)
        assert len(up.seen) == 1
        c.close()
        # the other connection is unaffected
        again = http.post(gw.url + "/v1/chat/completions", content=BODY, headers=HEADERS)
        assert again.status_code == 200


def test_too_many_concurrent_streams_is_refused(backend, up):
    gate = threading.Event()

    def slow(seen):
        r = sse_reply(STREAM)
        r.gates[1] = gate
        return r

    up.handler = slow
    options = FrontOptions(h2=H2Limits(max_concurrent_streams=4))
    with run_gateway(config(up), backend=backend, options=options) as gw:
        c = RawH2(gw.port)
        for _ in range(5):  # before the server's SETTINGS arrive: the client knows no limit
            c.request()
        c.flush()
        evs = c.events(h2.events.ConnectionTerminated)
        gate.set()
        refused = [e for e in evs if isinstance(e, (h2.events.ConnectionTerminated,
                                                   h2.events.StreamReset))]
        assert refused, evs
        c.close()
        up.handler = lambda seen: json_reply(COMPLETION)
        with h2c_client() as http:
            r = http.post(gw.url + "/v1/chat/completions", content=BODY, headers=HEADERS)
            assert r.status_code == 200


def test_stalled_h2_reader_is_reset_and_others_go_on(backend, up):
    big = [{"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "delta": {"content": "x" * 4000}, "finish_reason": None}]}
           ] * 200
    up.handler = lambda seen: sse_reply(big) if seen.json().get("stream") else \
        json_reply(COMPLETION)
    options = FrontOptions(h2=H2Limits(stall_timeout=0.5), write_stall_timeout=0.5)
    with run_gateway(config(up), backend=backend, options=options) as gw:
        c = RawH2(gw.port)
        sid = c.request(STREAM_BODY)
        c.flush()
        c.stalled.add(sid)  # read, but never reopen the stream's window (64 KiB)
        evs = c.events(h2.events.StreamReset, timeout=10)
        resets = [e for e in evs if isinstance(e, h2.events.StreamReset)]
        assert resets and resets[0].stream_id == sid
        got = sum(len(e.data) for e in evs if isinstance(e, h2.events.DataReceived))
        assert got <= 70000  # no more than the window was sent
        sid2 = c.request()  # the connection still serves
        c.flush()
        evs = c.events(h2.events.StreamEnded)
        assert any(isinstance(e, h2.events.StreamEnded) and e.stream_id == sid2 for e in evs)
        c.close()
