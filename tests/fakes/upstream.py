"""A scriptable fake upstream on 127.0.0.1 for end-to-end tests (test-only I/O).

It runs in its own thread with blocking sockets and h11, so tests can script exactly what an
upstream does: statuses, bodies, streams piece by piece, stalls, cut connections. Each request is
recorded. ``handler(request) -> Reply`` decides; the default replays ``replies`` in order.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import h11

from tests.fakes.poll import ready


@dataclass
class Reply:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=lambda: [
        ("content-type", "application/json")])
    pieces: list[bytes] = field(default_factory=list)
    #: before sending piece i (key), wait for this event (test-controlled pacing)
    gates: dict[int, threading.Event] = field(default_factory=dict)
    #: seconds to sleep before the head
    delay: float = 0.0
    #: close the socket after sending this many pieces (None: send all and end properly)
    cut_after: int | None = None
    #: close without any response
    drop: bool = False
    chunked: bool = True


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def json_reply(obj: Any, status: int = 200, headers: list[tuple[str, str]] | None = None
               ) -> Reply:
    return Reply(status=status, headers=[("content-type", "application/json")] + (headers or []),
                 pieces=[json.dumps(obj).encode()], chunked=False)


def sse_reply(events: list[Any], done: bool = True) -> Reply:
    pieces = [b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n"
              for e in events]
    if done:
        pieces.append(b"data: [DONE]\n\n")
    return Reply(headers=[("content-type", "text/event-stream")], pieces=pieces)


class FakeUpstream:
    def __init__(self, handler: Callable[[Seen], Reply] | None = None) -> None:
        self.replies: list[Reply] = []
        self.seen: list[Seen] = []
        self.handler = handler
        self.connections = 0
        self.closed_by_peer = threading.Event()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._stop = False
        self._threads: list[threading.Thread] = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stop = True
        try:
            self._sock.close()
        except OSError:
            pass

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()

    def _next_reply(self, seen: Seen) -> Reply:
        if self.handler is not None:
            return self.handler(seen)
        if self.replies:
            return self.replies.pop(0)
        return json_reply({"error": {"message": "no scripted reply", "type": "x", "code": None}},
                          status=500)

    @staticmethod
    def _wait_gate(sock: socket.socket, gate: threading.Event, limit: float = 10.0) -> bool:
        """Wait for the test to open ``gate``; False if the peer closed meanwhile."""
        deadline = time.monotonic() + limit
        while not gate.wait(0.01):
            if time.monotonic() > deadline:
                return True
            readable, _ = ready([sock], 0)
            if readable:
                try:
                    if sock.recv(1, socket.MSG_PEEK) == b"":
                        return False
                except OSError:
                    return False
        return True

    def _serve(self, sock: socket.socket) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                req = None
                body = b""
                while True:
                    ev = conn.next_event()
                    if ev is h11.NEED_DATA:
                        data = sock.recv(65536)
                        conn.receive_data(data)
                        if not data and conn.their_state is not h11.DONE:
                            self.closed_by_peer.set()
                            return
                        continue
                    if isinstance(ev, h11.Request):
                        req = ev
                    elif isinstance(ev, h11.Data):
                        body += ev.data
                    elif isinstance(ev, h11.EndOfMessage):
                        break
                    elif isinstance(ev, h11.ConnectionClosed):
                        return
                assert req is not None
                seen = Seen(req.method.decode(), req.target.decode(),
                            {k.decode().lower(): v.decode() for k, v in req.headers}, body)
                self.seen.append(seen)
                reply = self._next_reply(seen)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.drop:
                    return
                headers = list(reply.headers)
                if not reply.chunked:
                    headers.append(("content-length", str(sum(map(len, reply.pieces)))))
                sock.sendall(conn.send(h11.Response(status_code=reply.status, headers=headers)))
                for i, piece in enumerate(reply.pieces):
                    if reply.cut_after is not None and i >= reply.cut_after:
                        return
                    gate = reply.gates.get(i)
                    if gate is not None and not self._wait_gate(sock, gate):
                        self.closed_by_peer.set()
                        return
                    sock.sendall(conn.send(h11.Data(data=piece)))
                if reply.cut_after is not None:
                    return
                sock.sendall(conn.send(h11.EndOfMessage()))
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (OSError, h11.ProtocolError):
            self.closed_by_peer.set()
            return
        finally:
            try:
                sock.close()
            except OSError:
                pass
