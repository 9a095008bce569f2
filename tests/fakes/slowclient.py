"""Misbehaving clients and a flow-accounting SSE upstream for the reliability tests (R4–R6).

Everything here is blocking, thread-based test I/O on 127.0.0.1, every loop bounded by a count
and a wall-clock limit. ``SSEUpstream`` is an OpenAI-compatible upstream that streams
``chat.completion.chunk`` events and records, per request, how many bytes the kernel accepted
from it and when it saw the gateway close the connection: the figures R5 and R6 assert on.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import h11

from tests.fakes.poll import ready

__all__ = ["rss_kib", "SSEUpstream", "UpConn", "sse_chunk", "chat_body", "slowloris",
           "Loris", "connect", "read_head"]


def rss_kib() -> int:
    """This process's resident set size in KiB (the gateway runs in a thread of it)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def sse_chunk(content: str) -> bytes:
    """One OpenAI ``chat.completion.chunk`` SSE event."""
    obj = {"id": "chatcmpl-rel", "object": "chat.completion.chunk", "created": 1735689600,
           "model": "gpt-4o", "choices": [{"index": 0, "delta": {"content": content},
                                           "logprobs": None, "finish_reason": None}]}
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def chat_body(tag: str, stream: bool = True) -> bytes:
    """A chat request whose user message is ``tag`` (how ``SSEUpstream`` tells requests
    apart)."""
    return json.dumps({"model": "gpt-4o", "stream": stream,
                       "messages": [{"role": "user", "content": tag}]}).encode()


COMPLETION = json.dumps({
    "id": "chatcmpl-rel", "object": "chat.completion", "created": 1735689600, "model": "gpt-4o",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()


@dataclass
class UpConn:
    """What the upstream saw of one streaming request."""

    tag: str
    opened: float
    #: bytes the kernel accepted from us for this response (head and framing included)
    sent: int = 0
    #: events sent
    chunks: int = 0
    #: ``time.monotonic()`` when we saw the gateway close the connection mid-response
    closed_at: float | None = None
    #: the response went out whole (``[DONE]`` and the chunked terminator)
    finished: bool = False


class SSEUpstream:
    """Streams ``event`` ``max_chunks`` times (or until ``max_bytes``), ``interval`` seconds
    apart, then ``data: [DONE]``; before event ``gate_at`` (a number, or a function of the
    request's tag) it waits for ``gate``. Watches the
    socket between and during sends, so a close by the gateway is seen at once. Non-streaming
    requests get a small completion."""

    def __init__(self, *, event: bytes = sse_chunk("x"), interval: float = 0.0,
                 max_chunks: int = 1_000_000, max_bytes: int = 50_000_000,
                 gate_at: int | Callable[[str], int | None] | None = None,
                 time_limit: float = 20.0) -> None:
        self.event = event
        self.interval = interval
        self.max_chunks = max_chunks
        self.max_bytes = max_bytes
        self.gate_at = gate_at
        self.gate = threading.Event()
        self.time_limit = time_limit
        self.conns: dict[str, UpConn] = {}
        self.connections = 0
        self._stop = False
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stop = True
        self.gate.set()
        try:
            self._sock.close()
        except OSError:
            pass

    def wait_closed(self, tag: str, limit: float) -> float | None:
        """``closed_at`` of request ``tag``, waiting up to ``limit`` seconds for it."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            rec = self.conns.get(tag)
            if rec is not None and rec.closed_at is not None:
                return rec.closed_at
            time.sleep(0.001)
        return None

    # -- internals ------------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _gone(sock: socket.socket) -> bool:
        """The socket is readable: True if that is EOF or a reset (the gateway sends nothing
        while a response is in flight)."""
        try:
            return sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _closed(self, rec: UpConn) -> bool:
        rec.closed_at = time.monotonic()
        return False

    def _send(self, sock: socket.socket, data: bytes, rec: UpConn) -> bool:
        view = memoryview(data)
        while view:
            if self._stop:
                return False
            readable, writable = ready([sock], 0.05, write=True)
            if readable and self._gone(sock):
                return self._closed(rec)
            if writable:
                try:
                    n = sock.send(view)
                except OSError:
                    return self._closed(rec)
                rec.sent += n
                view = view[n:]
        return True

    def _pause(self, sock: socket.socket, rec: UpConn, seconds: float,
               until: threading.Event | None = None) -> bool:
        deadline = time.monotonic() + seconds
        while not self._stop:
            left = deadline - time.monotonic()
            if left <= 0 or (until is not None and until.is_set()):
                return True
            readable, _ = ready([sock], min(left, 0.01))
            if readable and self._gone(sock):
                return self._closed(rec)
        return False

    def _serve(self, sock: socket.socket) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while not self._stop:
                req, body = None, b""
                while True:
                    ev = conn.next_event()
                    if ev is h11.NEED_DATA:
                        data = sock.recv(65536)
                        conn.receive_data(data)
                        if not data:
                            return
                        continue
                    if isinstance(ev, h11.Request):
                        req = ev
                    elif isinstance(ev, h11.Data):
                        body += ev.data
                    elif isinstance(ev, (h11.EndOfMessage, h11.ConnectionClosed)):
                        break
                if req is None:
                    return
                payload = json.loads(body)
                tag = payload["messages"][-1]["content"]
                rec = UpConn(tag, time.monotonic())
                self.conns[tag] = rec
                if not payload.get("stream"):
                    head = h11.Response(status_code=200, headers=[
                        ("content-type", "application/json"),
                        ("content-length", str(len(COMPLETION)))])
                    ok = self._send(sock, conn.send(head) + conn.send(h11.Data(COMPLETION))
                                    + conn.send(h11.EndOfMessage()), rec)
                else:
                    ok = self._stream(sock, conn, rec)
                if not ok or conn.our_state is h11.MUST_CLOSE:
                    return
                rec.finished = True
                conn.start_next_cycle()
        except (OSError, h11.ProtocolError, ValueError, KeyError):
            return
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def _stream(self, sock: socket.socket, conn: h11.Connection, rec: UpConn) -> bool:
        head = h11.Response(status_code=200, headers=[("content-type", "text/event-stream")])
        if not self._send(sock, conn.send(head), rec):
            return False
        framed = conn.send(h11.Data(self.event))
        give_up = time.monotonic() + self.time_limit
        gate_at = self.gate_at(rec.tag) if callable(self.gate_at) else self.gate_at
        while rec.chunks < self.max_chunks and rec.sent < self.max_bytes:
            if time.monotonic() > give_up:
                return False
            if rec.chunks == gate_at and not self._pause(sock, rec, self.time_limit,
                                                          until=self.gate):
                return False
            if self.interval and rec.chunks and not self._pause(sock, rec, self.interval):
                return False
            if not self._send(sock, framed, rec):
                return False
            rec.chunks += 1
        tail = conn.send(h11.Data(b"data: [DONE]\n\n")) + conn.send(h11.EndOfMessage())
        return self._send(sock, tail, rec)


# -- clients ------------------------------------------------------------------------------------

def connect(port: int, *, rcvbuf: int | None = None, timeout: float = 5.0) -> socket.socket:
    """A TCP connection to the gateway; ``rcvbuf`` is set before connecting (so the window the
    kernel advertises stays small). ``TCP_NODELAY`` as real clients set it: otherwise a small
    frame (an RST_STREAM right after a WINDOW_UPDATE) waits ~40 ms for a delayed ACK."""
    s = socket.socket()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    return s


def read_head(sock: socket.socket, buf: bytes = b"") -> tuple[bytes, bytes]:
    """Read an HTTP/1.1 response head: (head, what came after it)."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"EOF before a response head: {buf[:200]!r}")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


@dataclass
class Loris:
    """One slowloris connection's outcome."""

    sock: socket.socket
    sent: int = 0
    first_byte: float = 0.0
    #: when the server answered or closed (None: still open when we gave up)
    ended: float | None = None
    response: bytes = b""
    reset: bool = False

    @property
    def status(self) -> int | None:
        if self.response.startswith(b"HTTP/1.1 "):
            return int(self.response[9:12])
        return None


def slowloris(port: int, n: int, *, head: bytes, interval: float = 0.1,
              limit: float = 6.0) -> list[Loris]:
    """Open ``n`` connections and send ``head`` one byte per ``interval`` on each, until every
    connection was answered or closed, or ``limit`` seconds passed. A connection stops sending
    once the server's answer starts arriving."""
    conns = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setblocking(False)
        conns.append(Loris(s))
    start = time.monotonic()
    next_tick = start
    try:
        while time.monotonic() - start < limit:
            live = [c for c in conns if c.ended is None]
            if not live:
                break
            now = time.monotonic()
            if now >= next_tick:
                for c in live:
                    if c.response or c.sent >= len(head):
                        continue
                    try:
                        c.sock.send(head[c.sent:c.sent + 1])
                    except BlockingIOError:
                        continue
                    except OSError:
                        c.ended, c.reset = time.monotonic(), True
                        continue
                    if c.sent == 0:
                        c.first_byte = time.monotonic()
                    c.sent += 1
                next_tick += interval
            wait = max(0.0, min(next_tick - time.monotonic(), 0.02))
            readable, _ = ready([c.sock for c in live], wait)
            by_sock = {c.sock: c for c in live}
            for s in readable:
                c = by_sock[s]
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    c.ended, c.reset = time.monotonic(), True
                    continue
                if not data:
                    c.ended = time.monotonic()
                else:
                    c.response += data
    finally:
        for c in conns:
            c.sock.close()
    return conns
