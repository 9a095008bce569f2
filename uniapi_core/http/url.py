"""Upstream URLs: a strict parser for ``http``/``https`` and the helpers built on it.

Theory of operation
-------------------
Upstream base URLs come from ``api.yaml`` and end up in a request line and a ``Host`` header,
so the parser is strict where ``urllib.parse`` is lenient: any whitespace or control character
(including CR, LF, NUL and TAB, which ``urlsplit`` silently strips) is an error, as is
``userinfo`` (credentials belong in headers), an empty host, a host with characters outside
a DNS/IP name, and a port outside 1-65535. Error messages never quote the URL, because URLs
may carry keys (Gemini's ``?key=``).

The result is a ``Url``: lower-case ``scheme`` and ``host`` (IPv6 without brackets, IDN hosts as
punycode), the effective ``port`` and the request ``target`` (path plus ``?query``, at least
``/``; non-ASCII characters percent-encoded; the fragment dropped). ``origin`` is the
connection-pool key and ``host_header`` the ``Host`` value (default port omitted, IPv6
bracketed).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import quote

import attrs

__all__ = ["Url", "parse_url", "replace_path_suffix"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_SHAPE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)([^#]*)(?:#.*)?\Z", re.S)
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f\s]")  # \s: Unicode whitespace too
_REG_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?\Z")


@attrs.frozen
class Url:
    """A parsed ``http``/``https`` URL (see ``parse_url``)."""

    scheme: str
    host: str
    port: int
    target: str

    @property
    def origin(self) -> tuple[str, str, int]:
        """``(scheme, host, port)``: what identifies a reusable connection."""
        return (self.scheme, self.host, self.port)

    @property
    def host_header(self) -> str:
        """The ``Host`` header value: default port omitted, IPv6 literal bracketed."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == _DEFAULT_PORTS[self.scheme]:
            return host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host_header}{self.target}"


def _parse_host(raw: str) -> str:
    if raw.startswith("["):
        if "%" in raw:
            raise ValueError("invalid URL: IPv6 zone identifiers are not supported")
        try:
            return str(ipaddress.IPv6Address(raw[1:-1]))
        except ValueError:
            raise ValueError("invalid URL: bad IPv6 address literal") from None
    host = raw.lower()
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError("invalid URL: host is not a valid domain name") from None
    if not _REG_NAME.match(host):
        raise ValueError("invalid URL: host is not a valid domain name or IP address")
    return host


def parse_url(url: str) -> Url:
    """Parse an absolute ``http``/``https`` URL strictly; ``ValueError`` says what is wrong."""
    if not isinstance(url, str):
        raise ValueError("invalid URL: not a string")
    if _FORBIDDEN.search(url):
        raise ValueError("invalid URL: contains whitespace or control characters")
    m = _SHAPE.match(url)
    if m is None:
        raise ValueError("invalid URL: expected scheme://host[:port][/path][?query]")
    scheme, authority, rest = m.group(1).lower(), m.group(2), m.group(3)
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("invalid URL: scheme must be http or https")
    if "@" in authority:
        raise ValueError("invalid URL: userinfo (user:password@) is not allowed")
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise ValueError("invalid URL: unterminated IPv6 address literal")
        raw_host, after = authority[: end + 1], authority[end + 1 :]
        if after and not after.startswith(":"):
            raise ValueError("invalid URL: unexpected characters after IPv6 address")
        port_text = after[1:] if after else None
    else:
        raw_host, sep, port_text_ = authority.partition(":")
        port_text = port_text_ if sep else None
    if not raw_host:
        raise ValueError("invalid URL: no host")
    host = _parse_host(raw_host)
    if port_text is None or port_text == "":
        port = _DEFAULT_PORTS[scheme]
    else:
        if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5:
            raise ValueError("invalid URL: port must be a number from 1 to 65535")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ValueError("invalid URL: port must be a number from 1 to 65535")
    target = rest if rest.startswith("/") else "/" + rest
    if not target.isascii():
        target = quote(target, safe="".join(chr(c) for c in range(0x21, 0x7F)))
    return Url(scheme=scheme, host=host, port=port, target=target)


def replace_path_suffix(url: str, suffix: str, new: str) -> str:
    """Replace the trailing ``suffix`` of ``url``'s path by ``new``, keeping query and fragment.

    ``replace_path_suffix("https://h/v1/chat/completions?x=1", "/chat/completions", "/models")``
    is ``"https://h/v1/models?x=1"``. One trailing ``/`` after the suffix is tolerated (and
    dropped). ``ValueError`` if the path does not end with ``suffix``.
    """
    m = _SHAPE.match(url)
    if m is None:
        raise ValueError("invalid URL: expected scheme://host[:port][/path][?query]")
    path_start = m.start(3)
    rest_end = m.end(3)
    q = url.find("?", path_start, rest_end)
    path_end = q if q >= 0 else rest_end
    path = url[path_start:path_end]
    if suffix and not path.endswith(suffix) and path.endswith(suffix + "/"):
        path = path[:-1]
    if not path.endswith(suffix):
        raise ValueError("URL path does not end with the expected suffix")
    new_path = path[: len(path) - len(suffix)] + new
    return url[:path_start] + new_path + url[path_end:]
