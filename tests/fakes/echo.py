"""Fakes that quote back what they were sent, for the R9 secrets test (test-only I/O).

* ``EchoProxy``: an HTTP ``CONNECT`` proxy that refuses every tunnel with a 407 whose reason
  phrase and body quote what it got: the ``Proxy-Authorization`` value and the user name and
  password it decodes from it.
* ``EchoRedis``: a Redis server that answers every command with an error quoting the command's
  arguments (``AUTH``'s password included), as a badly behaved server or a proxy in front of
  one might.
* ``event_frame``: one AWS event-stream frame (``application/vnd.amazon.eventstream``), so a
  fake Bedrock can stream chunks, or an exception frame, back.

Plain blocking sockets and daemon threads, so they serve a gateway on either backend; each is
a context manager and ``close()`` closes every socket it opened.
"""

from __future__ import annotations

import base64
import binascii
import socket
import struct
import threading
from types import TracebackType
from typing import Self

from tests.fakes.proxy import MAX_HEAD, HttpConnectProxy, _Refused

__all__ = ["EchoProxy", "EchoRedis", "event_frame"]


class EchoProxy(HttpConnectProxy):
    """Refuses every ``CONNECT`` with 407, quoting the credentials it was offered."""

    def _handshake(self, client: socket.socket) -> socket.socket:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk or len(head) > MAX_HEAD:
                raise _Refused("no head")
            head += chunk
        head = head.partition(b"\r\n\r\n")[0]
        text = head.decode("latin-1")
        offered = ""
        for line in text.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "proxy-authorization":
                offered = value.strip()
        decoded = ""
        scheme, _, token = offered.partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(token).decode("latin-1")
            except (ValueError, binascii.Error):
                decoded = "?"
        self.auth.append(tuple(decoded.partition(":")[::2]) if decoded else None)  # type: ignore[arg-type]
        reason = f"Denied {decoded} ({offered})".replace("\r", " ").replace("\n", " ")
        body = b"you sent:\n" + head
        client.sendall(f"HTTP/1.1 407 {reason}\r\n".encode("latin-1")
                       + b"Proxy-Authenticate: Basic realm=\"echo\"\r\n"
                       + b"Content-Type: text/plain\r\n"
                       + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        raise _Refused("auth")


def _resp_commands(buf: bytearray) -> list[list[bytes]]:
    """Cut complete RESP arrays of bulk strings off the front of ``buf``."""
    out: list[list[bytes]] = []
    while True:
        if not buf.startswith(b"*"):
            end = buf.find(b"\r\n")  # an inline command
            if end < 0:
                return out
            out.append(bytes(buf[:end]).split())
            del buf[:end + 2]
            continue
        end = buf.find(b"\r\n")
        if end < 0:
            return out
        count = int(buf[1:end])
        pos, args = end + 2, []
        for _ in range(count):
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                return out
            size = int(buf[pos + 1:line_end])
            if len(buf) < line_end + 2 + size + 2:
                return out
            args.append(bytes(buf[line_end + 2:line_end + 2 + size]))
            pos = line_end + 2 + size + 2
        out.append(args)
        del buf[:pos]


class EchoRedis:
    """Answers every command with ``-ERR`` quoting its arguments (``received`` keeps them)."""

    def __init__(self) -> None:
        self.received: list[list[bytes]] = []
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self._closed = False
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            socks = list(self._socks) + [self._listener]
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self._closed:
                    conn.close()
                    return
                self._socks.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = bytearray()
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                for args in _resp_commands(buf):
                    with self._lock:
                        self.received.append(args)
                    quoted = b" ".join(args).decode("latin-1")
                    quoted = quoted.replace("\r", "\\r").replace("\n", "\\n")[:400]
                    name = args[0].upper() if args else b""
                    kind = "WRONGPASS" if name in (b"AUTH", b"HELLO") else "ERR"
                    conn.sendall(f"-{kind} you sent: {quoted}\r\n".encode("latin-1"))
        except (OSError, ValueError):
            return
        finally:
            with self._lock:
                self._socks.discard(conn)
            conn.close()


def event_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream frame: string headers (type 7) and ``payload``, with both CRCs."""
    head = b"".join(struct.pack("!B", len(k)) + k.encode() + b"\x07"
                    + struct.pack("!H", len(v.encode())) + v.encode()
                    for k, v in headers.items())
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack("!II", total, len(head))
    prelude += struct.pack("!I", binascii.crc32(prelude))
    message = prelude + head + payload
    return message + struct.pack("!I", binascii.crc32(message))
