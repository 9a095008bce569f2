"""Proxy URLs (``preferences.proxy``): parse and check, nothing else.

``parse_proxy`` turns an ``api.yaml`` proxy URL into a ``ProxySpec``: ``http://`` (HTTP
``CONNECT``) or ``socks5://``/``socks5h://`` (SOCKS5), optional ``user:password@``
(percent-decoded), and the default port (80 for ``http``, 1080 for SOCKS5). ``https://``
proxies, SOCKS4 and anything else are refused with a ``ValueError`` whose message never quotes
the URL (it may carry credentials); the password is kept out of ``ProxySpec``'s ``repr``.

It sits on the lowest floor so that the config loader can check proxy URLs at load time;
``http/proxy.py`` (the CONNECT and SOCKS5 handshakes) re-exports both names.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import unquote

import attrs

__all__ = ["ProxySpec", "parse_proxy"]

_DEFAULT_PORTS = {"http": 80, "socks5": 1080}
_SCHEMES = {"http": "http", "socks5": "socks5", "socks5h": "socks5"}
_SHAPE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)\Z", re.S)
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f\s]")
_REG_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?\Z")


@attrs.frozen
class ProxySpec:
    """A parsed proxy URL (see ``parse_proxy``). ``username`` is ``None`` without credentials."""

    scheme: str  # "http" or "socks5"
    host: str  # lower-case; IPv6 without brackets
    port: int
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)

    @property
    def address(self) -> str:
        """``host:port``, IPv6 bracketed."""
        return f"{_bracket(self.host)}:{self.port}"

    @property
    def display(self) -> str:
        """The proxy as messages name it: scheme, host and port, never the credentials."""
        return f"{self.scheme}://{self.address}"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def parse_proxy(url: str) -> ProxySpec:
    """Parse a proxy URL; ``ValueError`` says what is wrong without quoting the URL."""
    if not isinstance(url, str):
        raise ValueError("not a string")
    if _FORBIDDEN.search(url):
        raise ValueError("contains whitespace or control characters")
    m = _SHAPE.match(url)
    if m is None:
        raise ValueError("expected scheme://[user:password@]host[:port]")
    raw_scheme, authority = m.group(1).lower(), m.group(2).removesuffix("/")
    if raw_scheme == "https":
        raise ValueError("https:// proxies (TLS to the proxy) are not supported; "
                         "use http://, socks5:// or socks5h://")
    if raw_scheme not in _SCHEMES:
        raise ValueError(f"unsupported proxy scheme {raw_scheme!r}; "
                         "use http://, socks5:// or socks5h://")
    scheme = _SCHEMES[raw_scheme]
    userinfo, at, hostport = authority.rpartition("@")  # a raw "@" or "/" in a password is ok
    if any(c in hostport for c in "/?#"):
        raise ValueError("a proxy URL has no path, query or fragment")
    username = password = None
    if at:
        user_raw, _, pass_raw = userinfo.partition(":")
        try:
            username = unquote(user_raw, errors="strict")
            password = unquote(pass_raw, errors="strict")
        except UnicodeDecodeError:
            raise ValueError("credentials are not valid percent-encoded UTF-8") from None
        if scheme == "http" and ":" in username:
            raise ValueError("the user name must not contain ':'")
        if scheme == "socks5" and not (1 <= len(username.encode()) <= 255
                                       and len(password.encode()) <= 255):
            raise ValueError("SOCKS5 user name must be 1-255 bytes, password at most 255")
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise ValueError("unterminated IPv6 address literal")
        raw_host, after = hostport[1:end], hostport[end + 1:]
        if "%" in raw_host:
            raise ValueError("IPv6 zone identifiers are not supported")
        if after and not after.startswith(":"):
            raise ValueError("unexpected characters after the IPv6 address")
        try:
            host = str(ipaddress.IPv6Address(raw_host))
        except ValueError:
            raise ValueError("bad IPv6 address literal") from None
        port_text = after[1:]
    else:
        raw_host, _, port_text = hostport.partition(":")
        host = raw_host.lower()
        if not host:
            raise ValueError("no proxy host")
        if not _REG_NAME.match(host):
            raise ValueError("the proxy host is not a valid domain name or IP address")
    if port_text:
        if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
            raise ValueError("port must be a number from 1 to 65535")
        port = int(port_text)
    else:
        port = _DEFAULT_PORTS[scheme]
    return ProxySpec(scheme, host, port, username, password)
