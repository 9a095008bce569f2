"""Redis URLs (uniapi_core/redis/url.py): every accepted form, every refusal, and that no
message or redacted URL ever shows the password."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uniapi_core.redis.url import RedisTarget, parse_redis_url


def test_plain_host_gets_the_defaults():
    t = parse_redis_url("redis://localhost")
    assert t == RedisTarget("tcp", host="localhost", port=6379, db=0)
    assert (t.path, t.username, t.password, t.verify, t.ca_file) == ("", None, None, True, None)
    assert t.where == "localhost:6379"


def test_full_tcp_url():
    t = parse_redis_url("redis://alice:s%3Acr%40t@Redis.Example:6380/3")
    assert t == RedisTarget("tcp", host="redis.example", port=6380, db=3, username="alice",
                            password="s:cr@t")


def test_password_only_and_raw_at_sign():
    assert parse_redis_url("redis://:pw@h").password == "pw"
    assert parse_redis_url("redis://:pw@h").username is None
    assert parse_redis_url("redis://:p@ss@h:1").password == "p@ss"  # the last '@' ends it


def test_db_in_the_query_and_trailing_slash():
    assert parse_redis_url("redis://h/?db=4").db == 4
    assert parse_redis_url("redis://h/").db == 0
    with pytest.raises(ValueError, match="db is given twice"):
        parse_redis_url("redis://h/1?db=2")


def test_ipv6_host():
    t = parse_redis_url("redis://[::1]:7000/2")
    assert (t.host, t.port, t.db) == ("::1", 7000, 2)
    assert t.where == "[::1]:7000"
    assert parse_redis_url("redis://[::1]").port == 6379
    assert t.redacted() == "redis://[::1]:7000/2"


def test_tls_options():
    t = parse_redis_url("rediss://h:6390?ssl_cert_reqs=none")
    assert (t.kind, t.verify, t.ca_file) == ("tls", False, None)
    t = parse_redis_url("rediss://h?ssl_ca_certs=%2Fetc%2Fca.pem&ssl_cert_reqs=required")
    assert (t.verify, t.ca_file) == (True, "/etc/ca.pem")
    assert parse_redis_url("rediss://h").verify is True


@pytest.mark.parametrize("scheme", ["unix", "redis+unix", "UNIX"])
def test_unix_socket(scheme):
    t = parse_redis_url(f"{scheme}:///run/redis/redis.sock?db=5&password=p%26w")
    assert t == RedisTarget("unix", path="/run/redis/redis.sock", db=5, password="p&w")
    assert t.where == "/run/redis/redis.sock"
    assert parse_redis_url("unix:///tmp/r.sock") == RedisTarget("unix", path="/tmp/r.sock")
    t = parse_redis_url("unix://u:pw@/tmp/r.sock")
    assert (t.username, t.password, t.path) == ("u", "pw", "/tmp/r.sock")


@pytest.mark.parametrize("url, message", [
    ("http://h", "unsupported scheme 'http'"),
    ("localhost:6379", "expected redis://"),
    ("redis://", "no host"),
    ("redis://:6379", "no host"),
    ("redis://h:0", "the port is not a number from 1 to 65535"),
    ("redis://h:65536", "the port is not a number"),
    ("redis://h:http", "the port is not a number"),
    ("redis://h:", "the port is not a number"),
    ("redis://h/x", "the db is not a non-negative integer"),
    ("redis://h/-1", "the db is not"),
    ("redis://h?db=one", "the db is not"),
    # a URL that lost its host reads the password as the port: never quoted
    ("redis://user:hunter2secret", "the port is not a number"),
    ("redis://h?timeout=3", "unknown query parameter 'timeout'"),
    ("redis://h?ssl_cert_reqs=none", "unknown query parameter 'ssl_cert_reqs'"),
    ("rediss://h?ssl_cert_reqs=maybe", "ssl_cert_reqs 'maybe'"),
    ("rediss://h?db=1&db=2", "'db' is given twice"),
    ("redis://h#frag", "fragment"),
    ("redis://[::1", "closing ']'"),
    ("redis://[nothex]", "not an IPv6 address"),
    ("redis://ho st", "whitespace"),
    ("redis://h_!x", "not a host name"),
    ("unix://", "socket's path"),
    ("unix://host/x.sock", "no host"),
    ("unix:///x.sock?verify=no", "unknown query parameter 'verify'"),
    ("redis://user@h", "user name without a password"),
])
def test_refusals(url, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("?", r"\?")):
        parse_redis_url(url)


SECRET = "Zq9-secret"


@pytest.mark.parametrize("url", [
    f"redis://u:{SECRET}@h:99999",
    f"redis://u:{SECRET}@h/notadb",
    f"redis://u:{SECRET}@h?bogus=1",
    f"redis://u:{SECRET}@",
    f"redis://u:{SECRET}/x@h",  # a raw '/' in the password
    f"redis://u:{SECRET}?x@h",  # a raw '?'
    f"redis://u:{SECRET}#x@h",  # a raw '#'
    f"redis://u:{SECRET[:4]}:{SECRET[4:]}@h:port",
    f"unix:///s.sock?password={SECRET}&bogus=1",
    f"unix:///s.sock?password={SECRET}&password=x",
    f"unix://:{SECRET}@/s.sock?password=x",
    f"ftp://u:{SECRET}@h",
    f"rediss://u:{SECRET}@h?ssl_cert_reqs=bad",
])
def test_no_message_quotes_the_password(url):
    with pytest.raises(ValueError) as info:
        parse_redis_url(url)
    text = str(info.value)
    assert SECRET not in text and SECRET[:4] not in text and SECRET[4:] not in text
    assert "\n" not in text


def test_the_password_stays_out_of_repr_and_redacted():
    t = parse_redis_url(f"rediss://bob:{SECRET}@h:1/2?ssl_cert_reqs=none")
    assert SECRET not in repr(t)
    assert t.redacted() == "rediss://bob:***@h:1/2?ssl_cert_reqs=none"
    u = parse_redis_url(f"unix:///a%20b.sock?password={SECRET}&db=1")
    assert u.path == "/a b.sock"
    assert u.redacted() == "unix:///a%20b.sock?db=1&password=***"


_name = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
_hosts = st.sampled_from(["h", "redis.example", "10.0.0.7", "::1", "fe80::1"])


@st.composite
def targets(draw) -> RedisTarget:
    kind = draw(st.sampled_from(["tcp", "tls", "unix"]))
    password = draw(st.none() | _name)
    username = draw(st.none() | _name) if password is not None else None
    db = draw(st.integers(0, 10**6))
    if kind == "unix":
        path = "/" + draw(st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs")),
                                  min_size=1, max_size=20)).replace("?", "").replace("#", "")
        return RedisTarget("unix", path=path.rstrip("/") or "/s", db=db, username=username,
                           password=password)
    tls = kind == "tls"
    return RedisTarget(kind, host=draw(_hosts), port=draw(st.integers(1, 65535)), db=db,
                       username=username, password=password,
                       verify=draw(st.booleans()) if tls else True,
                       ca_file=draw(st.none() | st.just("/etc/ssl/c a.pem")) if tls else None)


@settings(max_examples=300, deadline=None)
@given(targets())
def test_redacted_parses_back(t):
    back = parse_redis_url(t.redacted())
    expected = t if t.password is None else RedisTarget(
        t.kind, t.host, t.port, t.path, t.db, t.username, "***", t.verify, t.ca_file)
    assert back == expected
    if t.password is not None:  # the text does not depend on the password at all
        assert t.redacted() == attrs.evolve(t, password="other").redacted()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_text_parses_or_raises_value_error(text):
    try:
        parse_redis_url(text)
    except ValueError:
        pass
