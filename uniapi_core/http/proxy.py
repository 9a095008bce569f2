"""Outbound proxies, sans-IO: parse ``preferences.proxy`` and open a tunnel through it.

Theory of operation
-------------------
``parse_proxy`` (from ``uniapi_core.proxyurl``, re-exported here, so that the config loader
can use it from the lowest floor) turns an ``api.yaml`` proxy URL into a ``ProxySpec``:
``http://`` (HTTP ``CONNECT``) or ``socks5://``/``socks5h://`` (SOCKS5, RFC 1928), optional
``user:password@`` (percent-decoded), and the default port (80 for ``http``, 1080 for SOCKS5). ``https://``
proxies (TLS to the proxy itself), SOCKS4 and anything else are refused with a ``ValueError``.
Like ``url.py``, error messages never quote the URL: it may carry credentials. The password is
also kept out of ``ProxySpec``'s ``repr``; ``ProxySpec.display`` is the safe name for messages.

A transport that must reach an origin through a proxy connects TCP to ``spec.host:port``, then
drives a handshake object from ``handshake_for(spec, origin_host, origin_port)``:

.. code-block:: text

    send(hs.initial_bytes())
    loop:
        done = hs.receive_data(read())      # b"" = EOF
        send(hs.data_to_send())             # SOCKS5 answers the proxy mid-handshake
        if done: break                      # the tunnel is up; hs.leftover follows it

Constructing a handshake raises ``ProxyError`` for a target it cannot name (a host name over
255 bytes for SOCKS5); ``receive_data`` raises it when the proxy refuses or breaks the
protocol. Both handshakes keep every received byte in one buffer and consume whole messages
from its front, so the outcome — the tunnel with every byte sent and ``leftover``, or the
error — depends only on the bytes the proxy sent, never on how reads cut them (only how much
was sent before an error depends on when the bad bytes came). ``leftover`` is what came
after the proxy's reply: the origin's first bytes. A well-behaved proxy sends none (the
origin cannot speak before us: a TLS client and an HTTP client both speak first), so the
transports refuse a tunnel with leftover bytes rather than feed them to TLS.

The origin's name always goes to the proxy (``CONNECT host:port``, or SOCKS5 address type
``DOMAINNAME``): the gateway never resolves names itself for proxied traffic, so ``socks5://``
behaves like ``socks5h://``. IP literals go as IPv4/IPv6 addresses.

``ConnectHandshake`` sends ``CONNECT host:port HTTP/1.1`` with ``Host`` and, given
credentials, ``Proxy-Authorization: Basic``. It reads response heads up to ``\\r\\n\\r\\n``
(at most 16 KiB each, counted from the head's first byte, so the limit does not depend on the
cut either), skips interim ``1xx`` heads, and takes any ``2xx`` as the tunnel (a body or
framing headers on a ``2xx`` to ``CONNECT`` are meaningless, RFC 9110 §9.3.6). Anything else
is a ``ProxyError`` naming the status and reason.

``Socks5Handshake`` offers "no authentication" and, given credentials, "username/password"
(RFC 1929); then sends ``CONNECT``. The reply's code is checked as soon as its first two bytes
are in (a failing proxy often closes right after), then the bound address of any address type
is read (``bound``). Reply codes 0x01-0x08 have readable messages.

No message ever contains the credentials: they are not quoted by construction, and a reason
phrase from the proxy has the password and the ``Basic`` token masked should it echo them.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from typing import Union


from ..errors import UpstreamError
from ..proxyurl import ProxySpec, _bracket, parse_proxy

__all__ = [
    "ConnectHandshake",
    "Handshake",
    "MAX_HEAD",
    "ProxyError",
    "ProxySpec",
    "Socks5Handshake",
    "handshake_for",
    "parse_proxy",
]

MAX_HEAD = 16 * 1024
_TARGET_HOST = re.compile(r"[A-Za-z0-9._:-]+\Z")
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: ([^\r\n]*))?\Z")
_SOCKS_REPLIES = {
    0x01: "general SOCKS server failure",
    0x02: "connection not allowed by ruleset",
    0x03: "network unreachable",
    0x04: "host unreachable",
    0x05: "connection refused",
    0x06: "TTL expired",
    0x07: "command not supported",
    0x08: "address type not supported",
}


class ProxyError(UpstreamError):
    """The proxy refused the tunnel or broke its protocol. The message names no credentials."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="connect", code="upstream_unreachable")


class _Handshake:
    """Shared buffering, failure and output bookkeeping; subclasses implement ``_advance``."""

    def __init__(self, spec: ProxySpec, target_host: str, target_port: int) -> None:
        if not _TARGET_HOST.match(target_host) or not 1 <= target_port <= 65535:
            raise ProxyError("cannot tunnel to this host and port")
        self.spec = spec
        self.target = f"{_bracket(target_host)}:{target_port}"
        self.leftover = b""
        self._buf = bytearray()
        self._out = bytearray()
        self._done = False
        self._error: ProxyError | None = None

    @property
    def established(self) -> bool:
        return self._done

    def initial_bytes(self) -> bytes:
        raise NotImplementedError

    def data_to_send(self) -> bytes:
        """Bytes to send to the proxy now (empty when there is nothing)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> bool:
        """Take bytes read from the proxy (``b""`` = EOF); True once the tunnel is up.
        Raises ``ProxyError``; once failed, every later call raises it again."""
        if self._error is not None:
            raise self._error
        if self._done:
            self.leftover += data
            return True
        if not data:
            raise self._fail("the proxy closed the connection during the handshake")
        self._buf += data
        try:
            done = self._advance()
        except ProxyError as exc:
            raise self._fail(str(exc)) from None
        if done:
            self._done = True
            self.leftover = bytes(self._buf)
            self._buf.clear()
        return done

    def _advance(self) -> bool:
        raise NotImplementedError

    def _fail(self, message: str) -> ProxyError:
        self._error = ProxyError(message)
        self._buf.clear()
        self._out.clear()
        return self._error


class ConnectHandshake(_Handshake):
    """An HTTP ``CONNECT`` tunnel (see the module docstring)."""

    def __init__(self, spec: ProxySpec, target_host: str, target_port: int) -> None:
        super().__init__(spec, target_host, target_port)
        self._token: str | None = None
        if spec.username is not None:
            self._token = base64.b64encode(
                f"{spec.username}:{spec.password or ''}".encode()).decode("ascii")
        self._scanned = 0  # bytes of the current head already searched for its end

    def initial_bytes(self) -> bytes:
        lines = [f"CONNECT {self.target} HTTP/1.1", f"Host: {self.target}"]
        if self._token is not None:
            lines.append(f"Proxy-Authorization: Basic {self._token}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")

    def _advance(self) -> bool:
        while True:
            end = self._buf.find(b"\r\n\r\n", max(0, self._scanned - 3), MAX_HEAD)
            if end < 0:
                if len(self._buf) >= MAX_HEAD:
                    raise ProxyError(f"the proxy's response head is over {MAX_HEAD // 1024} KiB")
                self._scanned = len(self._buf)
                return False
            line = bytes(self._buf[:end]).split(b"\r\n", 1)[0]
            del self._buf[:end + 4]
            self._scanned = 0
            m = _STATUS_LINE.match(line)
            if m is None:
                raise ProxyError("the proxy sent a malformed response to CONNECT")
            status = int(m.group(1))
            if 200 <= status < 300:
                return True
            if 100 <= status < 200 and status != 101:
                continue
            reason = self._safe_reason(m.group(2) or b"")
            raise ProxyError(f"the proxy refused the tunnel to {self.target}: "
                             f"{status} {reason}".rstrip())

    def _safe_reason(self, raw: bytes) -> str:
        text = "".join(c if c.isprintable() else "?" for c in raw.decode("latin-1"))[:100]
        for secret in (self.spec.password, self._token):
            if secret:
                text = text.replace(secret, "***")
        return text.strip()


class Socks5Handshake(_Handshake):
    """A SOCKS5 ``CONNECT`` (RFC 1928, RFC 1929 authentication; see the module docstring)."""

    def __init__(self, spec: ProxySpec, target_host: str, target_port: int) -> None:
        super().__init__(spec, target_host, target_port)
        try:
            ip = ipaddress.ip_address(target_host)
        except ValueError:
            name = target_host.encode("ascii")
            if len(name) > 255:
                raise ProxyError("cannot tunnel to a host name over 255 bytes") from None
            address = b"\x03" + bytes([len(name)]) + name
        else:
            address = (b"\x01" if ip.version == 4 else b"\x04") + ip.packed
        self._request = b"\x05\x01\x00" + address + target_port.to_bytes(2, "big")
        self._auth: bytes | None = None
        if spec.username is not None:
            user, password = spec.username.encode(), (spec.password or "").encode()
            self._auth = b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password
        self._state = "method"
        #: the proxy's bound address and port, from its reply
        self.bound: tuple[str, int] | None = None

    def initial_bytes(self) -> bytes:
        return b"\x05\x02\x00\x02" if self._auth is not None else b"\x05\x01\x00"

    def _advance(self) -> bool:
        buf = self._buf
        while True:
            if self._state == "method":
                if len(buf) < 2:
                    return False
                version, method = buf[0], buf[1]
                del buf[:2]
                if version != 5:
                    raise ProxyError("not a SOCKS5 proxy (bad version in its reply)")
                if method == 0x00:
                    self._out += self._request
                    self._state = "reply"
                elif method == 0x02 and self._auth is not None:
                    self._out += self._auth
                    self._state = "auth"
                elif method == 0xFF:
                    raise ProxyError("the proxy accepts none of our authentication methods" + (
                        "" if self._auth is not None else " (it wants credentials)"))
                else:
                    raise ProxyError(f"the proxy chose an authentication method we did not "
                                     f"offer (0x{method:02x})")
            elif self._state == "auth":
                if len(buf) < 2:
                    return False
                version, status = buf[0], buf[1]
                del buf[:2]
                if version not in (1, 5):
                    raise ProxyError("the proxy sent a malformed authentication reply")
                if status != 0:
                    raise ProxyError("the proxy rejected the user name and password")
                self._out += self._request
                self._state = "reply"
            else:
                return self._reply()

    def _reply(self) -> bool:
        buf = self._buf
        if len(buf) < 2:
            return False
        if buf[0] != 5:
            raise ProxyError("the proxy sent a malformed reply (bad version)")
        if buf[1] != 0:
            code = buf[1]
            what = _SOCKS_REPLIES.get(code, "unknown reply code")
            raise ProxyError(f"the proxy could not connect to {self.target}: "
                             f"{what} (0x{code:02x})")
        if len(buf) < 5:
            return False
        atyp = buf[3]
        if atyp == 0x01:
            size = 4
        elif atyp == 0x04:
            size = 16
        elif atyp == 0x03:
            size = 1 + buf[4]
        else:
            raise ProxyError(f"the proxy sent a reply with an unknown address type "
                             f"(0x{atyp:02x})")
        if len(buf) < 4 + size + 2:
            return False
        raw = bytes(buf[4:4 + size])
        port = int.from_bytes(buf[4 + size:4 + size + 2], "big")
        del buf[:4 + size + 2]
        if atyp == 0x03:
            host = raw[1:].decode("ascii", errors="replace")
        else:
            host = str(ipaddress.ip_address(raw))
        self.bound = (host, port)
        return True


Handshake = Union[ConnectHandshake, Socks5Handshake]


def handshake_for(spec: ProxySpec, target_host: str, target_port: int) -> Handshake:
    """The handshake that opens a tunnel to ``target_host:target_port`` through ``spec``."""
    if spec.scheme == "http":
        return ConnectHandshake(spec, target_host, target_port)
    return Socks5Handshake(spec, target_host, target_port)
