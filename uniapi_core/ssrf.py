"""Which URLs and addresses the gateway may fetch on a client's behalf (R11, docs/contracts.md).

Remote image and document URLs in a chat request are fetched by the transport when a vendor
needs their bytes inline. The decisions are here, as pure functions of the URL, the *resolved* addresses and the
settings: the transport resolves the name, asks ``pick_address`` which address it may
connect to, and connects to exactly that address (the name stays in SNI and Host), which
closes DNS rebinding. Every redirect is checked again.

Python 3.11's ``ipaddress`` calls several spellings of loopback "global" (``::127.0.0.1``,
``64:ff9b::7f00:1``, ``2002:7f00:1::1``), so embedded IPv4 addresses are unwrapped first and
both the address and what it wraps must be global; CGNAT, link-local/metadata addresses and
``fd00:ec2::254`` are refused explicitly.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from .http.url import Url, parse_url

__all__ = ["address_refusal", "pick_address", "url_refusal", "MAX_IMAGE_BYTES",
           "MAX_DOCUMENT_BYTES", "MAX_REDIRECTS", "FETCH_TIMEOUT"]

MAX_IMAGE_BYTES = 20 * 1024 * 1024
#: a remote document (a ``file`` part's ``file_url``): Anthropic's 32 MB request limit, the
#: largest any vendor takes inline (each vendor's own smaller limit is checked when its
#: request is built)
MAX_DOCUMENT_BYTES = 32 * 1024 * 1024
MAX_REDIRECTS = 3
FETCH_TIMEOUT = 10.0

_DENIED = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4",
    "240.0.0.0/4", "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8",
    "fd00:ec2::254/128")]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPAT = ipaddress.ip_network("::/96")


def _embedded(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]
    if addr in _NAT64 or addr in _COMPAT:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def address_refusal(address: str) -> str | None:
    """Why ``address`` (a resolved IP, as text) may not be fetched, or None if it may."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded(ip)
        if inner is not None:
            candidates.append(inner)
    for candidate in candidates:
        if any(candidate in net for net in _DENIED if net.version == candidate.version):
            return "a private, loopback or link-local address"
        if not candidate.is_global:
            return "not a public address"
    return None


def pick_address(addresses: Iterable[str], *, allow_private: bool = False) -> str | None:
    """The first address that may be connected to — only if *every* address is allowed
    (a name that also resolves to a private address is refused as a whole)."""
    addresses = list(addresses)
    if not addresses:
        return None
    if not allow_private and any(address_refusal(a) for a in addresses):
        return None
    return addresses[0]


def url_refusal(url: str, *, allow_http: bool = False, allow_any_port: bool = False
                ) -> tuple[Url | None, str | None]:
    """(parsed URL, None) when ``url`` may be fetched, else (None, why): https only (and http
    when allowed), on the scheme's default port unless any port is allowed."""
    try:
        parsed = parse_url(url)
    except ValueError as exc:
        return None, str(exc)
    if parsed.scheme == "http" and not allow_http:
        return None, "only https image URLs are fetched"
    if not allow_any_port and parsed.port != (443 if parsed.scheme == "https" else 80):
        return None, "image URLs must use the default port"
    return parsed, None
