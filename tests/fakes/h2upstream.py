"""A fake HTTP/2 chat-completions upstream on 127.0.0.1 for end-to-end tests (test-only I/O).

Plain sockets, ``threading``, ``ssl`` and the ``h2`` library: independent of trio and asyncio.
One thread accepts, one thread serves each connection (at most ``max_connections`` at once).

* Plain TCP: HTTP/2 with prior knowledge (h2c) when the client starts with the HTTP/2
  preface, HTTP/1.1 (h11) otherwise.
* ``tls=True``: a self-signed certificate for ``127.0.0.1``/``localhost`` is generated into
  ``cert_dir`` (a temporary directory by default); ALPN offers ``alpn`` (``h2``,
  ``http/1.1``) and the protocol the handshake picks is served. ``ca_path`` is the file a
  client trusts; ``client_ssl_context()`` builds such a context.

``POST /v1/chat/completions`` gets ``reply`` (or ``handler(seen)``): a JSON chat completion, or
an SSE stream of ``chunks`` chunks ``delay`` seconds apart whose texts join to ``content``.
Streams on one HTTP/2 connection are served concurrently (one thread runs a small scheduler),
respecting the client's flow-control windows. Other paths get a JSON 404.

Recorded: ``connections`` (accepted), ``closed`` (of those, ended), ``max_concurrent_streams``
(the most streams open at once on one connection), ``requests`` (``Seen``: method, path,
headers, body, protocol), ``resets`` (streams the client reset), ``alpn`` (protocol picked per
TLS connection). ``Seen.sent`` counts the response body bytes sent so far on an HTTP/2
stream (as the client's flow-control windows allow).

``handshake_delay`` (a constructor argument and an attribute, read as each connection is
accepted): seconds the connection's thread waits before the TLS handshake (or, plain, before
its first read), an upstream slow to come up. ``frames`` logs, per HTTP/2 connection and in the
order they were read, ``(time.monotonic(), connection number, kind, stream id)`` with ``kind``
``"headers"`` (a request's HEADERS), ``"end"`` (its END_STREAM: the request is whole) and
``"reset"`` (the client's RST_STREAM).

``end_connections("goaway" | "eof")`` ends every open HTTP/2 connection mid-way: a GOAWAY
(``last_stream_id``, default the highest stream seen; ``error`` code) and then the close, or
just the close.

Scripted bodies (HTTP/2 only; the fault-injection upstream, ``tests/fakes/faults.py``): an
``H2Reply`` with ``pieces`` sends exactly those body pieces (its ``headers`` all the headers),
``piece_delays[i]`` seconds before piece ``i`` (a huge one: a stall), then ends the stream, or
after ``cut_after`` pieces (once they are on the wire) ``cut`` it: ``"rst"`` resets the stream
(``cut_error``), ``"goaway"`` sends a GOAWAY (``cut_error``, the highest stream seen) and
closes the connection, cutting every stream still open on it; ``on_cut(seens)`` (a constructor
argument) hears which other requests' streams (their ``Seen``) that cut. ``Seen.tag`` is free
for a handler's own bookkeeping.

    with FakeH2Upstream(H2Reply(stream=True, chunks=5, delay=0.05)) as fake:
        ... fake.url ... fake.requests ... fake.max_concurrent_streams
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h11

from tests.fakes.poll import ready
from tests.fakes.tls import make_cert

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_BODY = 8 * 1024 * 1024
CHAT_PATH = "/v1/chat/completions"


@dataclass
class H2Reply:
    status: int = 200
    #: SSE (True), JSON (False), or whatever the request's ``"stream"`` flag asks (None)
    stream: bool | None = None
    chunks: int = 3
    #: seconds between SSE chunks (also before the first); for JSON: before the answer
    delay: float = 0.0
    content: str = "Hello from the fake h2 upstream"
    model: str = "fake-model"
    headers: list[tuple[str, str]] = field(default_factory=list)
    #: send this JSON body instead of a generated completion (JSON replies only)
    body: Any = None
    #: HTTP/2, scripted: exactly these body pieces, ``headers`` being all the headers
    pieces: list[bytes] | None = None
    #: HTTP/2, scripted: seconds before piece i (key), after ``delay`` before the head
    piece_delays: dict[int, float] = field(default_factory=dict)
    #: HTTP/2, scripted: after this many pieces, ``cut`` instead of ending the stream
    cut_after: int | None = None
    cut: str = "rst"  # "rst" (RST_STREAM) or "goaway" (GOAWAY, then the connection closed)
    cut_error: int = 2  # the error code of the RST_STREAM or GOAWAY (INTERNAL_ERROR)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    protocol: str  # "h2" or "http/1.1"
    sent: int = 0  # HTTP/2: response body bytes sent so far
    tag: Any = None  # a handler's own (the fault table's attempt)

    def json(self) -> Any:
        return json.loads(self.body)



def _completion(reply: H2Reply) -> bytes:
    if reply.body is not None:
        return json.dumps(reply.body).encode()
    return json.dumps({
        "id": "chatcmpl-fakeh2", "object": "chat.completion", "created": 0,
        "model": reply.model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": reply.content}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }).encode()


def _sse_pieces(reply: H2Reply) -> list[bytes]:
    n = max(1, reply.chunks)
    text = reply.content
    cuts = [len(text) * i // n for i in range(n + 1)]
    pieces = []
    for i in range(n):
        delta: dict[str, Any] = {"content": text[cuts[i]:cuts[i + 1]]}
        if i == 0:
            delta["role"] = "assistant"
        pieces.append({"index": 0, "delta": delta, "finish_reason": None})
    pieces[-1]["finish_reason"] = "stop"
    out = [b"data: " + json.dumps({
        "id": "chatcmpl-fakeh2", "object": "chat.completion.chunk", "created": 0,
        "model": reply.model, "choices": [choice]}).encode() + b"\n\n" for choice in pieces]
    out[-1] += b"data: [DONE]\n\n"
    return out


class _Stream:
    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.headers = headers
        self.seen: Seen | None = None
        self.body = bytearray()
        self.actions: list[tuple[float, str, Any]] = []  # (due, "head"|"data"|"end", payload)
        self.outbuf = bytearray()
        self.ending = False


class FakeH2Upstream:
    """See the module docstring. Use as a context manager (or call ``close()``)."""

    def __init__(self, reply: H2Reply | None = None, *, tls: bool = False,
                 cert_dir: str | Path | None = None,
                 alpn: tuple[str, ...] = ("h2", "http/1.1"),
                 handler: Callable[[Seen], H2Reply] | None = None,
                 max_concurrent_streams: int = 100, max_connections: int = 32,
                 on_cut: Callable[[list[Seen]], None] | None = None,
                 handshake_delay: float = 0.0) -> None:
        self.handshake_delay = handshake_delay
        self.frames: list[tuple[float, int, str, int]] = []
        self.reply = reply or H2Reply()
        self.handler = handler
        self.on_cut = on_cut
        self.tls = tls
        self.max_streams_setting = max_concurrent_streams
        self.max_connections = max_connections
        self.connections = 0
        self.closed = 0
        self.max_concurrent_streams = 0
        self.requests: list[Seen] = []
        self.resets = 0
        self.alpn: list[str | None] = []
        self._ending: tuple[int, str, int | None, int] = (0, "", None, 0)  # (generation, …)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socks: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._tmpdir: str | None = None
        self.cert_path: str | None = None
        self.key_path: str | None = None
        self._ssl: ssl.SSLContext | None = None
        if tls:
            if cert_dir is None:
                self._tmpdir = tempfile.mkdtemp(prefix="fake-h2-")
                cert_dir = self._tmpdir
            self.cert_path, self.key_path = make_cert(cert_dir)
            self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._ssl.load_cert_chain(self.cert_path, self.key_path)
            self._ssl.set_alpn_protocols(list(alpn))
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.05)  # accept() wakes up to notice close()
        self.port = self._listener.getsockname()[1]
        self._start(self._accept)

    # -- public ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ca_path(self) -> str | None:
        """The PEM file a client should trust (the self-signed certificate), if TLS."""
        return str(self.cert_path) if self.cert_path else None

    def client_ssl_context(self, alpn: tuple[str, ...] = ("h2", "http/1.1")) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_path)
        ctx.set_alpn_protocols(list(alpn))
        return ctx

    def end_connections(self, how: str = "eof", *, last_stream_id: int | None = None,
                        error: int = 0) -> None:
        """End every open HTTP/2 connection within ~50 ms (see the module docstring)."""
        if how not in ("goaway", "eof"):
            raise ValueError(how)
        with self._lock:
            self._ending = (self._ending[0] + 1, how, last_stream_id, error)

    def __enter__(self) -> FakeH2Upstream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            if t is not threading.current_thread():
                t.join(timeout=2.0)
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    # -- plumbing ----------------------------------------------------------------------------

    def _start(self, target: Callable[..., None], *args: Any) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
        t.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                if len(self._socks) >= self.max_connections or self._stop.is_set():
                    sock.close()
                    continue
                self.connections += 1
                number = self.connections
                self._socks.add(sock)
            self._start(self._serve, sock, number)

    def _serve(self, sock: socket.socket, number: int = 0) -> None:
        conn: socket.socket = sock
        try:
            if self.handshake_delay > 0:
                self._stop.wait(self.handshake_delay)
            sock.settimeout(5.0)
            if self._ssl is not None:
                conn = self._ssl.wrap_socket(sock, server_side=True)
                with self._lock:
                    self._socks.add(conn)
                proto = conn.selected_alpn_protocol()
                with self._lock:
                    self.alpn.append(proto)
                first = b""
            else:
                first = conn.recv(65536)
                proto = "h2" if first[:3] == PREFACE[:3] else "http/1.1"
            if proto == "h2":
                self._serve_h2(conn, first, number)
            else:
                self._serve_h1(conn, first)
        # ValueError: select() on a socket that close() shut meanwhile
        except (OSError, ssl.SSLError, ValueError, h2.exceptions.H2Error, h11.ProtocolError):
            pass
        finally:
            for s in (conn, sock):
                try:
                    s.close()
                except OSError:
                    pass
            with self._lock:
                self._socks.discard(sock)
                self._socks.discard(conn)
                self.closed += 1

    def _reply_for(self, seen: Seen) -> H2Reply:
        with self._lock:
            self.requests.append(seen)
        if self.handler is not None:
            return self.handler(seen)
        if seen.method != "POST" or seen.path != CHAT_PATH:
            return H2Reply(status=404, stream=False, body={"error": {
                "message": f"no route for {seen.method} {seen.path}", "type": "not_found",
                "code": None}})
        return self.reply

    @staticmethod
    def _wants_stream(reply: H2Reply, seen: Seen) -> bool:
        if reply.stream is not None:
            return reply.stream
        try:
            return bool(seen.json().get("stream"))
        except (ValueError, AttributeError):
            return False

    # -- HTTP/2 ------------------------------------------------------------------------------

    def _serve_h2(self, sock: socket.socket, first: bytes, number: int = 0) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        conn = h2.connection.H2Connection(config=config)
        conn.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams_setting,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65536,
        })
        conn.initiate_connection()
        streams: dict[int, _Stream] = {}
        sock.settimeout(None)
        pending = first
        generation = self._ending[0]
        while not self._stop.is_set():
            if self._ending[0] != generation:
                self._end_h2(conn, sock)
                return
            if pending:
                for ev in conn.receive_data(pending):
                    self._log_frame(number, ev)
                    self._on_h2_event(conn, streams, ev)
                pending = b""
            goaway = self._run_h2_actions(conn, streams)
            out = conn.data_to_send()
            if out:
                sock.sendall(out)
            if goaway is not None:
                self._cut_connection(conn, sock, streams, goaway)
                return
            if conn.state_machine.state is h2.connection.ConnectionState.CLOSED:
                return
            dues = [a[0] for s in streams.values() for a in s.actions[:1]]
            wait = max(0.0, min(dues) - time.monotonic()) if dues else 0.5
            if isinstance(sock, ssl.SSLSocket) and sock.pending():
                wait = 0.0
            readable, _ = ready([sock], min(wait, 0.05))
            if readable or (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                try:
                    pending = sock.recv(65536)
                except ssl.SSLWantReadError:
                    continue
                if not pending:
                    return

    def _log_frame(self, number: int, ev: h2.events.Event) -> None:
        kind = ("headers" if isinstance(ev, h2.events.RequestReceived)
                else "end" if isinstance(ev, h2.events.StreamEnded)
                else "reset" if isinstance(ev, h2.events.StreamReset) else None)
        if kind is not None:
            with self._lock:
                self.frames.append((time.monotonic(), number, kind, int(ev.stream_id)))

    def _end_h2(self, conn: h2.connection.H2Connection, sock: socket.socket) -> None:
        _, how, last, error = self._ending
        if how == "goaway":
            conn.close_connection(error, last_stream_id=last)
            sock.sendall(conn.data_to_send())
            sock.settimeout(2.0)  # closing with unread bytes would send RST, losing the GOAWAY
            while sock.recv(65536):
                pass

    def _cut_connection(self, conn: h2.connection.H2Connection, sock: socket.socket,
                        streams: dict[int, _Stream], error: int) -> None:
        """A scripted ``goaway`` cut: GOAWAY, the end of our side, and every open stream cut."""
        cut = [st.seen for st in streams.values() if st.seen is not None]
        if self.on_cut is not None and cut:
            self.on_cut(cut)  # before the client can see the connection end
        conn.close_connection(error)
        sock.sendall(conn.data_to_send())
        sock.shutdown(socket.SHUT_WR)  # the GOAWAY, then EOF; unread bytes are drained
        sock.settimeout(2.0)
        while sock.recv(65536):
            pass

    def _on_h2_event(self, conn: h2.connection.H2Connection, streams: dict[int, _Stream],
                     ev: h2.events.Event) -> None:
        if isinstance(ev, h2.events.RequestReceived):
            streams[ev.stream_id] = _Stream(list(ev.headers or []))
            with self._lock:
                self.max_concurrent_streams = max(self.max_concurrent_streams, len(streams))
        elif isinstance(ev, h2.events.DataReceived):
            conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            st = streams.get(ev.stream_id)
            if st is not None:
                st.body += ev.data
                if len(st.body) > MAX_BODY:
                    conn.reset_stream(ev.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                    del streams[ev.stream_id]
        elif isinstance(ev, h2.events.StreamEnded):
            st = streams.get(ev.stream_id)
            if st is not None and not st.actions:
                self._schedule_h2(st)
        elif isinstance(ev, h2.events.StreamReset):
            if streams.pop(ev.stream_id, None) is not None:
                with self._lock:
                    self.resets += 1

    def _schedule_h2(self, st: _Stream) -> None:
        pseudo = {k: v for k, v in st.headers if k.startswith(b":")}
        seen = Seen(pseudo.get(b":method", b"").decode("latin-1"),
                    pseudo.get(b":path", b"").decode("latin-1"),
                    {k.decode("latin-1"): v.decode("latin-1")
                     for k, v in st.headers if not k.startswith(b":")},
                    bytes(st.body), "h2")
        st.seen = seen
        reply = self._reply_for(seen)
        now = time.monotonic()
        if reply.pieces is not None:
            due = now + reply.delay
            st.actions.append((due, "head", (reply.status, list(reply.headers))))
            for i, piece in enumerate(reply.pieces):
                if reply.cut_after is not None and i >= reply.cut_after:
                    break
                due += reply.piece_delays.get(i, 0.0)
                st.actions.append((due, "data", piece))
            if reply.cut_after is not None:
                st.actions.append((due, reply.cut, reply.cut_error))
                return
        elif self._wants_stream(reply, seen):
            head = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]
            st.actions.append((now, "head", (reply.status, head + reply.headers)))
            for i, piece in enumerate(_sse_pieces(reply)):
                st.actions.append((now + (i + 1) * reply.delay, "data", piece))
        else:
            body = _completion(reply)
            head = [("content-type", "application/json"), ("content-length", str(len(body)))]
            st.actions.append((now + reply.delay, "head", (reply.status, head + reply.headers)))
            st.actions.append((now + reply.delay, "data", body))
        st.actions.append((st.actions[-1][0], "end", None))

    def _run_h2_actions(self, conn: h2.connection.H2Connection,
                        streams: dict[int, _Stream]) -> int | None:
        """Run what is due; the error code of a scripted GOAWAY cut, if one is due."""
        now = time.monotonic()
        for sid, st in list(streams.items()):
            while st.actions and st.actions[0][0] <= now:
                if st.actions[0][1] in ("rst", "goaway"):
                    if st.outbuf:  # a cut comes once the pieces before it are on the wire
                        break
                    _, kind, payload = st.actions.pop(0)
                    if kind == "goaway":
                        del streams[sid]
                        return int(payload)
                    conn.reset_stream(sid, payload)
                    del streams[sid]
                    break
                _, kind, payload = st.actions.pop(0)
                if kind == "head":
                    status, headers = payload
                    conn.send_headers(sid, [(":status", str(status))] + headers)
                elif kind == "data":
                    st.outbuf += payload
                else:
                    st.ending = True
            while st.outbuf:
                n = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size,
                        len(st.outbuf))
                if n <= 0:
                    break
                conn.send_data(sid, bytes(st.outbuf[:n]))
                del st.outbuf[:n]
                if st.seen is not None:
                    st.seen.sent += n
            if st.ending and not st.outbuf:
                conn.end_stream(sid)
                del streams[sid]
        return None

    # -- HTTP/1.1 (fallback) -----------------------------------------------------------------

    def _serve_h1(self, sock: socket.socket, first: bytes) -> None:
        conn = h11.Connection(h11.SERVER)
        if first:
            conn.receive_data(first)
        sock.settimeout(10.0)
        while not self._stop.is_set():
            req = None
            body = bytearray()
            while True:
                ev = conn.next_event()
                if ev is h11.NEED_DATA:
                    data = sock.recv(65536)
                    conn.receive_data(data)
                    if not data and conn.their_state is not h11.DONE:
                        return
                elif isinstance(ev, h11.Request):
                    req = ev
                elif isinstance(ev, h11.Data):
                    body += ev.data
                    if len(body) > MAX_BODY:
                        return
                elif isinstance(ev, h11.EndOfMessage):
                    break
                else:  # ConnectionClosed
                    return
            assert req is not None
            seen = Seen(req.method.decode(), req.target.decode("latin-1"),
                        {k.decode("latin-1"): v.decode("latin-1") for k, v in req.headers},
                        bytes(body), "http/1.1")
            reply = self._reply_for(seen)
            if self._wants_stream(reply, seen):
                sock.sendall(conn.send(h11.Response(status_code=reply.status, headers=[
                    ("content-type", "text/event-stream")] + reply.headers)))
                for piece in _sse_pieces(reply):
                    if reply.delay:
                        time.sleep(reply.delay)
                    sock.sendall(conn.send(h11.Data(data=piece)))
            else:
                if reply.delay:
                    time.sleep(reply.delay)
                payload = _completion(reply)
                sock.sendall(conn.send(h11.Response(status_code=reply.status, headers=[
                    ("content-type", "application/json"),
                    ("content-length", str(len(payload)))] + reply.headers)))
                sock.sendall(conn.send(h11.Data(data=payload)))
            sock.sendall(conn.send(h11.EndOfMessage()))
            if conn.our_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
