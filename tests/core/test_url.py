"""parse_url / Url / replace_path_suffix: strict upstream URLs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uniapi_core.http import Url, parse_url, replace_path_suffix

VALID = [
    # url, (scheme, host, port, target), host_header
    ("https://api.openai.com/v1/chat/completions",
     ("https", "api.openai.com", 443, "/v1/chat/completions"), "api.openai.com"),
    ("http://localhost:8000", ("http", "localhost", 8000, "/"), "localhost:8000"),
    ("HTTPS://API.Example.COM:443/v1?x=1&y=2#frag",
     ("https", "api.example.com", 443, "/v1?x=1&y=2"), "api.example.com"),
    ("http://127.0.0.1:80/", ("http", "127.0.0.1", 80, "/"), "127.0.0.1"),
    ("http://[::1]:8080/v1", ("http", "::1", 8080, "/v1"), "[::1]:8080"),
    ("https://[2001:DB8::1]/", ("https", "2001:db8::1", 443, "/"), "[2001:db8::1]"),
    ("https://host?key=abc", ("https", "host", 443, "/?key=abc"), "host"),
    ("https://host:/p", ("https", "host", 443, "/p"), "host"),
    ("https://my_internal-host.svc.local/p", ("https", "my_internal-host.svc.local", 443, "/p"),
     "my_internal-host.svc.local"),
    ("https://bücher.example/ä?q=ü",
     ("https", "xn--bcher-kva.example", 443, "/%C3%A4?q=%C3%BC"), "xn--bcher-kva.example"),
]


@pytest.mark.parametrize("url,parts,host_header", VALID, ids=[v[0] for v in VALID])
def test_parse_valid(url: str, parts: tuple, host_header: str) -> None:
    u = parse_url(url)
    assert (u.scheme, u.host, u.port, u.target) == parts
    assert u.origin == parts[:3]
    assert u.host_header == host_header
    assert parse_url(str(u)) == u


INVALID = [
    ("ftp://host/", "scheme"),
    ("file:///etc/passwd", "scheme"),
    ("host/path", "expected"),
    ("//host/path", "expected"),
    ("https:///path", "no host"),
    ("https://", "no host"),
    ("https://:443/", "no host"),
    ("https://user:canarypw@host/", "userinfo"),
    ("https://sk-canary@host/", "userinfo"),
    ("https://host:0/", "port"),
    ("https://host:65536/", "port"),
    ("https://host:12ab/", "port"),
    ("https://host:-1/", "port"),
    ("https://host:٣/", "port"),
    ("https://host:1:2/", "port"),
    ("https://host /", "whitespace"),
    ("https://host/a b", "whitespace"),
    ("https://host/\r\nX-Injected: 1", "whitespace"),
    ("https://host/\x00", "whitespace"),
    ("https://ho\tst/", "whitespace"),
    (" https://host/", "whitespace"),
    ("https://host/a\u00a0b", "whitespace"),
    ("https://host/\x85", "whitespace"),
    ("https://[::1/", "IPv6"),
    ("https://[::1]x/", "IPv6"),
    ("https://[not-ip]/", "IPv6"),
    ("https://[fe80::1%25eth0]/", "zone"),
    ("https://ho%st/", "domain"),
    ("https://ho\\st/", "domain"),
    ("https://a..b/", "domain"),
]


@pytest.mark.parametrize("url,fragment", INVALID, ids=[i[0] for i in INVALID])
def test_parse_invalid(url: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_url(url)
    message = str(info.value)
    assert fragment.lower() in message.lower()
    assert "canary" not in message  # never echo the URL (it may hold keys)


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(ValueError):
        parse_url(b"https://host/")  # type: ignore[arg-type]


def test_url_is_frozen_value() -> None:
    u = parse_url("https://h/")
    assert u == Url("https", "h", 443, "/") and hash(u) == hash(Url("https", "h", 443, "/"))
    with pytest.raises(AttributeError):
        u.port = 1  # type: ignore[misc]


@pytest.mark.parametrize("url,suffix,new,expected", [
    ("https://api.openai.com/v1/chat/completions", "/chat/completions", "/models",
     "https://api.openai.com/v1/models"),
    ("https://h/v1/chat/completions?api-version=2024-02&x=1", "/chat/completions", "/models",
     "https://h/v1/models?api-version=2024-02&x=1"),
    ("https://h/v1/chat/completions/", "/chat/completions", "/models", "https://h/v1/models"),
    ("https://h:8443/chat/completions#f", "/chat/completions", "/models",
     "https://h:8443/models#f"),
    ("https://h/openai/deployments/gpt/chat/completions?v=1", "/chat/completions",
     "/embeddings", "https://h/openai/deployments/gpt/embeddings?v=1"),
])
def test_replace_path_suffix(url: str, suffix: str, new: str, expected: str) -> None:
    assert replace_path_suffix(url, suffix, new) == expected


@pytest.mark.parametrize("url", [
    "https://h/v1/messages",
    "https://chat/completions.example/v1",   # the suffix is in the host, not the path
    "https://h/v1?next=/chat/completions",   # ...or in the query
    "not a url",
])
def test_replace_path_suffix_requires_the_suffix_in_the_path(url: str) -> None:
    with pytest.raises(ValueError):
        replace_path_suffix(url, "/chat/completions", "/models")


_HOSTS = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z0-9]{1,8}){0,3}", fullmatch=True)
_PATHS = st.text("abcdefghijklmnopqrstuvwxyz0123456789/-_.~%", max_size=30)


@given(st.sampled_from(["http", "https"]), _HOSTS, st.one_of(st.none(), st.integers(1, 65535)),
       _PATHS, st.one_of(st.none(), st.text("abc=&123", max_size=10)))
def test_parse_roundtrip(scheme: str, host: str, port: int | None, path: str,
                         query: str | None) -> None:
    url = f"{scheme}://{host}" + (f":{port}" if port else "") + "/" + path
    if query is not None:
        url += "?" + query
    u = parse_url(url)
    assert (u.scheme, u.host) == (scheme, host)
    assert u.port == (port or {"http": 80, "https": 443}[scheme])
    assert u.target == "/" + path + ("" if query is None else "?" + query)
    assert parse_url(str(u)) == u


@given(st.text(max_size=40))
def test_parse_never_raises_anything_but_value_error(text: str) -> None:
    for candidate in (text, "https://" + text, "http://h/" + text):
        try:
            u = parse_url(candidate)
        except ValueError:
            continue
        assert u.scheme in ("http", "https") and u.host and u.target.startswith("/")
        assert all(0x21 <= ord(c) < 0x7F for c in u.target)
