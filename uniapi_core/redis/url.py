"""Redis URLs: parse and check, nothing else.

``parse_redis_url`` turns the text an operator writes into a ``RedisTarget``:

* ``redis://[user:password@]host[:port][/db]``: plain TCP (port 6379, db 0 by default);
* ``rediss://…``: the same over TLS; the query ``ssl_cert_reqs=none`` turns certificate
  verification off (``required``, the default, keeps it on) and ``ssl_ca_certs=/path`` names
  the CA bundle to trust;
* ``unix:///path/to.sock[?db=N][&password=…][&username=…]`` (or ``redis+unix://``): a Unix
  socket.

``db`` may also be given as a query parameter on every scheme (``?db=2``), but not twice. The
user name and password are percent-decoded, and so are query values; an IPv6 host is written in
brackets (``redis://[::1]:6380``) and kept without them. Any other scheme, a port outside
1–65535, a db that is not a non-negative integer, an empty host, an unknown or repeated query
parameter (named in the message) is a ``ValueError`` with a one-line message that never quotes
the password: the message names the part that is wrong, never the URL. A raw ``/``, ``?``,
``#`` in a password is refused with the advice to percent-encode it, since it would otherwise be
read as the start of a path, query or fragment and the pieces quoted as a host or port.

``RedisTarget.redacted()`` is the URL to show in logs: canonical, with the password written
``***``; it parses back to the same target (password ``***``). The password is kept out of the
target's ``repr``.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import quote, unquote

import attrs

__all__ = ["DEFAULT_PORT", "RedisTarget", "parse_redis_url"]

DEFAULT_PORT = 6379

Kind = Literal["tcp", "tls", "unix"]
_SCHEMES: dict[str, Kind] = {"redis": "tcp", "rediss": "tls", "unix": "unix",
                             "redis+unix": "unix"}
_SHAPE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)\Z", re.DOTALL)
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")
_REG_NAME = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?\Z")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?\Z")
_DIGITS = re.compile(r"[0-9]{1,10}\Z")
_QUERY = {
    "tcp": ("db",),
    "tls": ("db", "ssl_cert_reqs", "ssl_ca_certs"),
    "unix": ("db", "password", "username"),
}
_CERT_REQS = {"none": False, "required": True}


@attrs.frozen
class RedisTarget:
    """Where one Redis server is and how to log in to it (see ``parse_redis_url``)."""

    kind: Kind
    host: str = ""  # IPv6 without brackets; "" for a Unix socket
    port: int = DEFAULT_PORT
    path: str = ""  # the Unix socket's path, else ""
    db: int = 0
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    verify: bool = True  # TLS: verify the server's certificate (and its name, the host)
    ca_file: str | None = None  # TLS: the CA bundle to trust instead of the system's

    @property
    def where(self) -> str:
        """The server as messages name it: ``host:port`` (IPv6 bracketed) or the socket path."""
        if self.kind == "unix":
            return self.path
        return f"{_bracket(self.host)}:{self.port}"

    def redacted(self) -> str:
        """The URL with the password written ``***`` (for logs); it parses back."""
        secret = None if self.password is None else "***"
        query: list[tuple[str, str]] = []
        if self.kind == "unix":
            if self.db:
                query.append(("db", str(self.db)))
            if self.username is not None:
                query.append(("username", self.username))
            if secret is not None:
                query.append(("password", secret))
            return "unix://" + quote(self.path, safe="/") + _query(query)
        userinfo = ""
        if secret is not None:
            user = "" if self.username is None else quote(self.username, safe="")
            userinfo = f"{user}:{secret}@"
        scheme = "rediss" if self.kind == "tls" else "redis"
        if not self.verify:
            query.append(("ssl_cert_reqs", "none"))
        if self.ca_file is not None:
            query.append(("ssl_ca_certs", self.ca_file))
        db = f"/{self.db}" if self.db else ""
        return f"{scheme}://{userinfo}{self.where}{db}{_query(query)}"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _query(pairs: list[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    return "?" + "&".join(f"{k}={quote(v, safe='/*')}" for k, v in pairs)


def _decode(text: str, what: str) -> str:
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise ValueError(f"the {what} is not valid percent-encoded UTF-8") from None


def _db(text: str) -> int:
    if _DIGITS.fullmatch(text) is None:
        raise ValueError("the db is not a non-negative integer")  # never quoted: it may be
        # a password whose URL lost its host
    return int(text)


def _port(text: str) -> int:
    if _DIGITS.fullmatch(text) is None or not 1 <= int(text) <= 65535:
        raise ValueError("the port is not a number from 1 to 65535 (a URL without its host, "
                         "redis://user:password, reads the password as the port)")
    return int(text)


def _parse_query(text: str, kind: Kind) -> dict[str, str]:
    out: dict[str, str] = {}
    if not text:
        return out
    for item in text.split("&"):
        if not item:
            continue
        raw_name, eq, raw_value = item.partition("=")
        name = _decode(raw_name, "query parameter name")
        if name not in _QUERY[kind]:
            allowed = ", ".join(_QUERY[kind])
            raise ValueError(f"unknown query parameter {name[:40]!r} for this scheme "
                             f"(known: {allowed})")
        if name in out:
            raise ValueError(f"query parameter {name!r} is given twice")
        if not eq:
            raise ValueError(f"query parameter {name!r} has no value")
        out[name] = _decode(raw_value, f"{name} parameter")
    return out


def _host_port(hostport: str) -> tuple[str, int]:
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            raise ValueError("an IPv6 host is missing its closing ']'")
        host, rest = hostport[1:close], hostport[close + 1:]
        if _IPV6.fullmatch(host) is None or ":" not in host:
            raise ValueError(f"{host[:60]!r} in brackets is not an IPv6 address")
        if rest and not rest.startswith(":"):
            raise ValueError("expected ':port' after the IPv6 host")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_ = hostport.partition(":")
        port_text = port_text_ if colon else None
        if host and _REG_NAME.fullmatch(host) is None:
            raise ValueError(f"host {host[:60]!r} is not a host name or address")
    if not host:
        raise ValueError("the URL has no host")
    return host, DEFAULT_PORT if port_text is None else _port(port_text)


def parse_redis_url(text: str) -> RedisTarget:
    """Parse a Redis URL; ``ValueError`` says what is wrong, never quoting the password."""
    if not isinstance(text, str):
        raise ValueError("a Redis URL is a string")
    if _FORBIDDEN.search(text):
        raise ValueError("a Redis URL holds whitespace or control characters")
    m = _SHAPE.match(text)
    if m is None:
        raise ValueError("expected redis://, rediss:// or unix:// followed by the server")
    scheme, rest = m.group(1).lower(), m.group(2)
    kind = _SCHEMES.get(scheme)
    if kind is None:
        raise ValueError(f"unsupported scheme {scheme[:20]!r}: use redis://, rediss:// "
                         "or unix://")
    # The authority ends at the first '/', '?' or '#' after the last '@' (a raw '@' in a
    # password is fine); a '/', '?' or '#' before an '@' is a password that needs escaping.
    end = len(rest)
    for i, c in enumerate(rest):
        if c in "/?#":
            end = i
            break
    if "@" in rest[end:].split("?", 1)[0] or ("@" in rest[end:] and "@" not in rest[:end]):
        raise ValueError("'/', '?' or '#' in the user name or password: percent-encode "
                         "them (%2F, %3F, %23)")
    authority, tail = rest[:end], rest[end:]
    if "#" in tail:
        raise ValueError("a Redis URL has no fragment ('#')")
    path, _, query_text = tail.partition("?")
    userinfo, at, hostport = authority.rpartition("@")
    username: str | None = None
    password: str | None = None
    if at:
        user_raw, colon, pass_raw = userinfo.partition(":")
        username = _decode(user_raw, "user name") or None
        password = _decode(pass_raw, "password") if colon else None
        if username is not None and password is None:
            raise ValueError("a user name without a password: write user:password@")
    query = _parse_query(query_text, kind)
    db_query = _db(query["db"]) if "db" in query else None
    if kind == "unix":
        if hostport:
            raise ValueError("a unix:// URL has no host: write unix:///path/to.sock")
        if not path or path == "/":
            raise ValueError("a unix:// URL needs the socket's path")
        if "password" in query:
            if password is not None:
                raise ValueError("the password is given twice")
            password = query["password"]
        if "username" in query:
            if username is not None:
                raise ValueError("the user name is given twice")
            username = query["username"]
        if username is not None and password is None:
            raise ValueError("a user name without a password")
        return RedisTarget(kind, path=_decode(path, "socket path"),
                           db=db_query or 0, username=username, password=password)
    host, port = _host_port(hostport)
    db = 0
    if path not in ("", "/"):
        db = _db(path[1:])
        if db_query is not None:
            raise ValueError("db is given twice (path and query)")
    elif db_query is not None:
        db = db_query
    verify = True
    if "ssl_cert_reqs" in query:
        value = query["ssl_cert_reqs"].lower()
        if value not in _CERT_REQS:
            raise ValueError(f"ssl_cert_reqs {value[:20]!r} is not 'none' or 'required'")
        verify = _CERT_REQS[value]
    ca_file = query.get("ssl_ca_certs") or None
    return RedisTarget(kind, host=host.lower(), port=port, db=db, username=username,
                       password=password, verify=verify, ca_file=ca_file)
