"""Fake outbound proxies on 127.0.0.1 for end-to-end tests (test-only I/O).

Plain blocking sockets and daemon threads, so they serve a gateway on either backend:
``HttpConnectProxy`` (HTTP ``CONNECT``) and ``Socks5Proxy`` (RFC 1928 ``CONNECT``, RFC 1929
username/password). Both are context managers; given ``username``/``password`` they require
them. They record each tunnel they open (``tunnels``, ``targets`` as ``"host:port"``) and the
credentials each client offered (``auth``), then pipe bytes both ways until either side closes.
``hosts`` maps names to addresses for the proxy's own lookups, so a test can prove the gateway
resolves nothing itself for proxied traffic. Bounded: at most ``max_connections`` at once,
heads of at most 16 KiB, 5 s socket timeouts during handshakes; ``close()`` (or leaving the
``with``) closes every socket.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
import threading
from types import TracebackType

from tests.fakes.poll import ready

MAX_HEAD = 16 * 1024
HANDSHAKE_TIMEOUT = 5.0


class _Refused(Exception):
    """End this client's connection (the reply, if any, was sent)."""


class _FakeProxy:
    scheme = ""

    def __init__(self, *, username: str | None = None, password: str | None = None,
                 hosts: dict[str, str] | None = None, max_connections: int = 64) -> None:
        self.username = username
        self.password = password
        self.hosts = dict(hosts or {})
        self.connections = 0
        self.tunnels = 0
        self.targets: list[str] = []
        self.auth: list[tuple[str, str] | None] = []
        self._slots = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._start(self._accept)

    def url(self, username: str | None = None, password: str | None = None) -> str:
        """The proxy's URL, with the given credentials (quote them yourself)."""
        cred = "" if username is None else f"{username}:{password or ''}@"
        return f"{self.scheme}://{cred}127.0.0.1:{self.port}"

    def __enter__(self) -> _FakeProxy:
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
            try:
                s.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(2)

    # -- plumbing ------------------------------------------------------------------------------

    def _start(self, target, *args) -> None:  # type: ignore[no-untyped-def]
        t = threading.Thread(target=target, args=args, daemon=True)
        self._threads = [x for x in self._threads if x.is_alive()] + [t]
        t.start()

    def _track(self, s: socket.socket) -> bool:
        with self._lock:
            if self._closed:
                s.close()
                return False
            self._socks.add(s)
            return True

    def _forget(self, s: socket.socket) -> None:
        with self._lock:
            self._socks.discard(s)
        try:
            s.close()
        except OSError:
            pass

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._slots.acquire(timeout=HANDSHAKE_TIMEOUT) or not self._track(client):
                client.close()
                continue
            self.connections += 1
            self._start(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        upstream = None
        try:
            client.settimeout(HANDSHAKE_TIMEOUT)
            upstream = self._handshake(client)
            client.settimeout(None)
            self._pipe(client, upstream)
        except (OSError, ValueError, _Refused):
            pass
        finally:
            self._forget(client)
            if upstream is not None:
                self._forget(upstream)
            self._slots.release()

    def _open(self, host: str, port: int) -> socket.socket:
        """Connect to the tunnel's target (the proxy resolves names, through ``hosts`` first)."""
        s = socket.create_connection((self.hosts.get(host, host), port), timeout=HANDSHAKE_TIMEOUT)
        if not self._track(s):
            raise OSError("proxy closed")
        s.settimeout(None)
        with self._lock:
            self.tunnels += 1
        return s

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        while True:
            readable, _ = ready([a, b], 0.5)
            if self._closed:
                return
            for s in readable:
                data = s.recv(65536)
                if not data:
                    return
                peers[s].sendall(data)

    def _handshake(self, client: socket.socket) -> socket.socket:
        raise NotImplementedError

    def _authorized(self, auth: tuple[str, str] | None) -> bool:
        self.auth.append(auth)
        if self.username is None:
            return True
        return auth == (self.username, self.password or "")


def _recv_exact(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise _Refused("EOF")
        out += chunk
    return out


class HttpConnectProxy(_FakeProxy):
    """An HTTP ``CONNECT`` proxy; 407 without the right ``Proxy-Authorization: Basic``."""

    scheme = "http"

    def _handshake(self, client: socket.socket) -> socket.socket:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk or len(head) > MAX_HEAD:
                raise _Refused("no head")
            head += chunk
        head, _, early = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if method != "CONNECT":
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            raise _Refused("not CONNECT")
        auth = None
        scheme, _, token = headers.get("proxy-authorization", "").partition(" ")
        if scheme.lower() == "basic":
            user, _, password = base64.b64decode(token).decode().partition(":")
            auth = (user, password)
        if not self._authorized(auth):
            client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                           b"Proxy-Authenticate: Basic realm=\"fake\"\r\n"
                           b"Content-Length: 0\r\n\r\n")
            raise _Refused("auth")
        host, _, port = target.rpartition(":")
        self.targets.append(target)
        try:
            upstream = self._open(host.strip("[]"), int(port))
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            raise _Refused("connect") from None
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        if early:
            upstream.sendall(early)
        return upstream


class Socks5Proxy(_FakeProxy):
    """A SOCKS5 proxy (``CONNECT`` only); username/password required when configured."""

    scheme = "socks5"

    def _handshake(self, client: socket.socket) -> socket.socket:
        version, n = _recv_exact(client, 2)
        methods = _recv_exact(client, n)
        if version != 5:
            raise _Refused("version")
        want = 0x02 if self.username is not None else 0x00
        if want not in methods:
            client.sendall(b"\x05\xff")
            self.auth.append(None)
            raise _Refused("no acceptable method")
        client.sendall(bytes([5, want]))
        auth = None
        if want == 0x02:
            _ver, ulen = _recv_exact(client, 2)
            user = _recv_exact(client, ulen).decode()
            plen = _recv_exact(client, 1)[0]
            auth = (user, _recv_exact(client, plen).decode())
        if not self._authorized(auth):
            client.sendall(b"\x01\x01")
            raise _Refused("auth")
        if want == 0x02:
            client.sendall(b"\x01\x00")
        _ver, cmd, _rsv, atyp = _recv_exact(client, 4)
        if atyp == 0x01:
            host = str(ipaddress.IPv4Address(_recv_exact(client, 4)))
        elif atyp == 0x04:
            host = str(ipaddress.IPv6Address(_recv_exact(client, 16)))
        elif atyp == 0x03:
            host = _recv_exact(client, _recv_exact(client, 1)[0]).decode("ascii")
        else:
            client.sendall(b"\x05\x08\x00\x01\x00\x00\x00\x00\x00\x00")
            raise _Refused("address type")
        port = int.from_bytes(_recv_exact(client, 2), "big")
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.targets.append(target)
        if cmd != 0x01:
            client.sendall(b"\x05\x07\x00\x01\x00\x00\x00\x00\x00\x00")
            raise _Refused("command")
        try:
            upstream = self._open(host, port)
        except OSError:
            client.sendall(b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")
            raise _Refused("connect") from None
        bound_host, bound_port = upstream.getsockname()[:2]
        bound = ipaddress.ip_address(bound_host)
        client.sendall(bytes([5, 0, 0, 1 if bound.version == 4 else 4]) + bound.packed
                       + bound_port.to_bytes(2, "big"))
        return upstream
