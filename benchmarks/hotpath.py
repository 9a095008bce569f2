"""The gateway's per-request hot path, in process, with canned bytes and no I/O.

``HotPath(stream)`` holds one client connection (``uniapi_core.connection.Connection`` with a real
``Gateway`` for the benchmark ``api.yaml``) and one upstream ``ClientConnection``. ``one()``
drives a whole keep-alive cycle exactly as a transport does, minus sockets and the event loop:

1. the client's request bytes (the ~2 KB chat request) go to ``Connection.handle`` as ``ClientData``
   (``ServerConnection`` parsing, ``Gateway.handle``: auth, JSON, routing, request building,
   ``Relay.start``);
2. its ``StartUpstream`` is framed by ``ClientConnection.send_request`` (after ``parse_url``
   and the ``Host`` header, as the transports do);
3. the canned upstream answer (the nginx mock's bytes: head + JSON completion, or head + the
   52-event stream) goes through ``ClientConnection.receive_data`` and every event through
   ``Connection.handle`` (relay, decoder, response framing);
4. the ``Write`` bytes are counted; the cycle ends with the connection ready for the next one.

What is left out compared with a live gateway: the event loop (trio or asyncio), socket
syscalls, task and channel hand-offs, and the per-request log line. ``bench_translators.py``
times ``one()``; ``profile_hotpath.py`` profiles it.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from payloads import (  # noqa: E402
    CLIENT_KEY,
    JSON_MODEL,
    SSE_EVENTS,
    SSE_MODEL,
    api_yaml,
    chat_request_bytes,
    completion_bytes,
    sse_body,
)
from uniapi_core.config import load_config  # noqa: E402
from uniapi_core.gateway import Gateway  # noqa: E402
from uniapi_core.http import (  # noqa: E402
    ClientConnection,
    ResponseData,
    ResponseEnd,
    ResponseHead,
    parse_url,
)
from uniapi_core.connection import Connection  # noqa: E402
from uniapi_core.events import (ClientData, StartUpstream, UpstreamData, UpstreamEnded,  # noqa: E402
                                UpstreamHead, Write)

__all__ = ["HotPath", "client_request", "upstream_answer", "make_gateway"]

#: the port in the generated api.yaml; nothing connects to it here
PORT = 9


def make_gateway() -> Gateway:
    return Gateway(load_config(api_yaml(PORT), "bench api.yaml").config,
                   entropy=random.Random(0))


def client_request(stream: bool) -> bytes:
    body = chat_request_bytes(SSE_MODEL if stream else JSON_MODEL, stream)
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
            f"User-Agent: wrk\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {CLIENT_KEY}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


def upstream_answer(stream: bool) -> bytes:
    """What the nginx mock sends, byte for byte in shape."""
    body = sse_body() if stream else completion_bytes()
    ctype = "text/event-stream" if stream else "application/json"
    return (f"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sat, 01 Mar 2025 12:00:00 GMT\r\n"
            f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: keep-alive\r\n\r\n").encode() + body


class HotPath:
    """One client connection and one upstream connection, driven with canned bytes."""

    def __init__(self, stream: bool) -> None:
        self.stream = stream
        self.gateway = make_gateway()
        self.now = 1000.0
        self.session = Connection(lambda: self.gateway, now=self.now, alpn="http/1.1")
        self.upstream = ClientConnection()
        self.request = client_request(stream)
        self.answer = upstream_answer(stream)
        self.last_output = b""

    def one(self) -> int:
        """One request/response cycle; returns the bytes written to the client."""
        self.now += 0.001
        now, wall = self.now, 1_741_570_283.0 + self.now
        if self.session.closed:  # ServerLimits.max_requests (1000) per connection, as live
            self.session = Connection(lambda: self.gateway, now=now, alpn="http/1.1")
        session = self.session
        pending = session.handle(ClientData(self.request), now, wall)
        out: list[bytes] = []
        for _ in range(10_000):  # bounded; a cycle takes a few dozen actions
            if not pending:
                break
            action = pending.pop(0)
            if isinstance(action, Write):
                out.append(action.data)
            elif isinstance(action, StartUpstream):
                pending.extend(self._upstream(action, now, wall))
        self.last_output = b"".join(out)
        return len(self.last_output)

    def _upstream(self, action: StartUpstream, now: float, wall: float) -> list:
        req = action.request
        url = parse_url(req.url)
        headers = (("host", url.host_header),) + tuple(
            h for h in req.headers if h[0].lower() != "host")
        conn = self.upstream
        conn.send_request(req.method, url.target, headers, req.body)
        actions: list = []
        for ev in conn.receive_data(self.answer):
            if isinstance(ev, ResponseHead):
                actions += self.session.handle(
                    UpstreamHead(action.ref, ev.status, ev.headers), now, wall)
            elif isinstance(ev, ResponseData):
                actions += self.session.handle(UpstreamData(action.ref, ev.data), now, wall)
            elif isinstance(ev, ResponseEnd):
                actions += self.session.handle(UpstreamEnded(action.ref), now, wall)
        conn.start_next_cycle()
        return actions

    def check(self) -> None:
        """The cycle produces the right answer."""
        self.one()
        out = self.last_output
        assert out.startswith(b"HTTP/1.1 200"), out[:200]
        if self.stream:
            assert out.count(b"data: ") == SSE_EVENTS + 1, out.count(b"data: ")
            assert b"data: [DONE]" in out
        else:
            assert b'"chat.completion"' in out


if __name__ == "__main__":
    import time

    for stream in (False, True):
        hp = HotPath(stream)
        hp.check()
        n = 2000
        t0 = time.perf_counter()
        for _ in range(n):
            hp.one()
        dt = time.perf_counter() - t0
        what = f"stream of {SSE_EVENTS} events" if stream else "JSON completion"
        print(f"hot path, {what}: {dt / n * 1e6:.1f} µs per request ({n} requests)")
