"""Outbound proxies, sans-IO: proxy URL parsing and the CONNECT and SOCKS5 handshakes.

In-memory bytes only. The CONNECT request is checked with an independent h11 server; every
handshake outcome must be the same however the proxy's reply is cut.
"""

from __future__ import annotations

import base64

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uniapi_core.errors import UpstreamError
from uniapi_core.http import (
    ConnectHandshake,
    ProxyError,
    ProxySpec,
    Socks5Handshake,
    handshake_for,
    parse_proxy,
)
from uniapi_core.http.proxy import MAX_HEAD

USER, PASSWORD = "alice", "s3cr3t-Pa55"
TOKEN = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
HTTP = ProxySpec("http", "127.0.0.1", 8080)
HTTP_AUTH = ProxySpec("http", "127.0.0.1", 8080, USER, PASSWORD)
SOCKS = ProxySpec("socks5", "127.0.0.1", 1080)
SOCKS_AUTH = ProxySpec("socks5", "127.0.0.1", 1080, USER, PASSWORD)


def no_secrets(text: str) -> None:
    assert PASSWORD not in text and TOKEN not in text


# -- parse_proxy -------------------------------------------------------------------------------


@pytest.mark.parametrize("url, spec", [
    ("http://127.0.0.1:8080", ProxySpec("http", "127.0.0.1", 8080)),
    ("http://proxy.corp", ProxySpec("http", "proxy.corp", 80)),
    ("HTTP://Proxy.Corp:3128/", ProxySpec("http", "proxy.corp", 3128)),
    ("http://proxy.corp:", ProxySpec("http", "proxy.corp", 80)),
    ("socks5://127.0.0.1", ProxySpec("socks5", "127.0.0.1", 1080)),
    ("socks5h://127.0.0.1:9050", ProxySpec("socks5", "127.0.0.1", 9050)),
    ("socks5://[::1]:1081", ProxySpec("socks5", "::1", 1081)),
    ("http://[2001:DB8::1]", ProxySpec("http", "2001:db8::1", 80)),
    ("http://user:pass@host:3128", ProxySpec("http", "host", 3128, "user", "pass")),
    ("socks5://u%40x:p%3Ass%2F%25@h", ProxySpec("socks5", "h", 1080, "u@x", "p:ss/%")),
    ("http://user:p@ss@host", ProxySpec("http", "host", 80, "user", "p@ss")),
    ("http://user:a/b?c#d:e@host/", ProxySpec("http", "host", 80, "user", "a/b?c#d:e")),
    ("http://user@host", ProxySpec("http", "host", 80, "user", "")),
    ("http://:pw@host", ProxySpec("http", "host", 80, "", "pw")),
    ("socks5://%C3%A9l%C3%A8ve:mot@h", ProxySpec("socks5", "h", 1080, "élève", "mot")),
])
def test_parse_proxy(url, spec):
    assert parse_proxy(url) == spec


@pytest.mark.parametrize("url, fragment", [
    ("https://proxy:443", "https:// proxies"),
    ("socks4://proxy:1080", "unsupported proxy scheme 'socks4'"),
    ("socks4a://proxy", "unsupported proxy scheme 'socks4a'"),
    ("ftp://proxy", "unsupported proxy scheme"),
    ("127.0.0.1:8080", "expected scheme://"),
    ("proxy.corp", "expected scheme://"),
    ("http://", "no proxy host"),
    ("http://:8080", "no proxy host"),
    ("http://alice:s3cr3t-Pa55@", "no proxy host"),
    ("http://alice:s3cr3t-Pa55@:3128", "no proxy host"),
    ("http://host:0", "port must be"),
    ("http://host:65536", "port must be"),
    ("http://alice:s3cr3t-Pa55@host:99999", "port must be"),
    ("http://host:80a", "port must be"),
    ("http://host:８０", "port must be"),
    ("http://host/path", "no path, query or fragment"),
    ("http://host?x=1", "no path, query or fragment"),
    ("http://host#x", "no path, query or fragment"),
    ("http://host//", "no path, query or fragment"),
    ("http://ho st", "whitespace"),
    ("http://alice:s3cr3t Pa55@host", "whitespace"),
    ("http://host\r\n", "whitespace"),
    ("http://[::1", "unterminated"),
    ("http://[::1]x", "unexpected characters"),
    ("http://[nope]", "bad IPv6"),
    ("http://[fe80::1%25eth0]", "zone"),
    ("http://bad_host!:1", "not a valid domain name"),
    ("http://a%3Ab:c@host", "must not contain ':'"),
    ("socks5://:s3cr3t-Pa55@host", "SOCKS5 user name"),
    ("socks5://" + "u" * 256 + ":p@host", "SOCKS5 user name"),
    ("http://alice:%FF%FE@host", "percent-encoded UTF-8"),
    ("socks5://[用户名]:[密码]@[IP地址]:[端口]", ""),  # uni-api's documentation placeholder
])
def test_parse_proxy_refuses(url, fragment):
    with pytest.raises(ValueError) as exc:
        parse_proxy(url)
    assert fragment in str(exc.value)
    no_secrets(str(exc.value))
    assert "alice" not in str(exc.value)


def test_parse_proxy_refuses_non_strings():
    with pytest.raises(ValueError):
        parse_proxy(None)  # type: ignore[arg-type]


def test_spec_repr_and_display_hide_the_password():
    spec = parse_proxy(f"socks5h://{USER}:{PASSWORD}@[::1]:1080")
    no_secrets(repr(spec))
    assert spec.display == "socks5://[::1]:1080"
    assert spec.address == "[::1]:1080"
    no_secrets(spec.display)


def test_handshake_for_picks_by_scheme():
    assert isinstance(handshake_for(HTTP, "a.test", 443), ConnectHandshake)
    assert isinstance(handshake_for(SOCKS, "a.test", 443), Socks5Handshake)


def test_proxy_error_is_an_upstream_connect_error():
    err = ProxyError("x")
    assert isinstance(err, UpstreamError) and err.kind == "connect" and err.status == 502


# -- HTTP CONNECT ------------------------------------------------------------------------------


def parse_connect(raw: bytes) -> h11.Request:
    server = h11.Connection(h11.SERVER)
    server.receive_data(raw)
    req = server.next_event()
    assert isinstance(req, h11.Request)
    assert isinstance(server.next_event(), h11.EndOfMessage)
    return req


def test_connect_request_bytes():
    hs = ConnectHandshake(HTTP, "api.openai.com", 443)
    assert hs.initial_bytes() == (b"CONNECT api.openai.com:443 HTTP/1.1\r\n"
                                  b"Host: api.openai.com:443\r\n\r\n")
    req = parse_connect(hs.initial_bytes())
    assert req.method == b"CONNECT" and req.target == b"api.openai.com:443"


def test_connect_request_with_basic_auth_exact():
    hs = ConnectHandshake(ProxySpec("http", "p", 80, "Aladdin", "open sesame"), "h.test", 80)
    assert hs.initial_bytes() == (
        b"CONNECT h.test:80 HTTP/1.1\r\nHost: h.test:80\r\n"
        b"Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n")
    req = parse_connect(hs.initial_bytes())
    assert (b"proxy-authorization", b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==") in req.headers


def test_connect_basic_auth_is_utf8():
    hs = ConnectHandshake(ProxySpec("http", "p", 80, "élève", "π"), "h", 80)
    token = base64.b64encode("élève:π".encode()).decode()
    assert f"Proxy-Authorization: Basic {token}\r\n".encode() in hs.initial_bytes()


def test_connect_ipv6_target_is_bracketed():
    hs = ConnectHandshake(HTTP, "2001:db8::1", 8443)
    assert hs.initial_bytes().startswith(b"CONNECT [2001:db8::1]:8443 HTTP/1.1\r\n"
                                         b"Host: [2001:db8::1]:8443\r\n")
    assert parse_connect(hs.initial_bytes()).target == b"[2001:db8::1]:8443"


@pytest.mark.parametrize("host, port", [("a\r\nX-Evil: 1", 443), ("a b", 443), ("", 443),
                                        ("h", 0), ("h", 65536)])
def test_connect_refuses_bad_targets(host, port):
    with pytest.raises(ProxyError):
        ConnectHandshake(HTTP, host, port)


@pytest.mark.parametrize("reply", [
    b"HTTP/1.1 200 Connection established\r\n\r\n",
    b"HTTP/1.0 200 Connection established\r\nProxy-Agent: x\r\n\r\n",
    b"HTTP/1.1 200\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",  # framing on a 2xx to CONNECT: ignored
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
])
def test_connect_established(reply):
    hs = ConnectHandshake(HTTP, "h", 443)
    assert hs.receive_data(reply) is True
    assert hs.established and hs.leftover == b"" and hs.data_to_send() == b""


def test_connect_needs_more_data_then_keeps_leftover():
    hs = ConnectHandshake(HTTP, "h", 443)
    assert hs.receive_data(b"HTTP/1.1 200 OK\r\n") is False
    assert not hs.established
    assert hs.receive_data(b"\r\n\x16\x03\x01") is True
    assert hs.leftover == b"\x16\x03\x01"
    assert hs.receive_data(b"more") is True
    assert hs.leftover == b"\x16\x03\x01more"


@pytest.mark.parametrize("reply, fragment", [
    (b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n"
     b"Content-Length: 0\r\n\r\n", "refused the tunnel to h:443: 407 Proxy Authentication "
                                   "Required"),
    (b"HTTP/1.1 403 Forbidden\r\n\r\n", "403 Forbidden"),
    (b"HTTP/1.0 502 Bad Gateway\r\n\r\n", "502 Bad Gateway"),
    (b"HTTP/1.1 503\r\n\r\n", "h:443: 503"),
    (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "101"),
    (b"HTTP/1.1 301 Moved\r\nLocation: http://x/\r\n\r\n", "301 Moved"),
    (b"HTTP/1.1 400 Bad\x01Req\r\n\r\n", "400 Bad?Req"),
    (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "malformed response"),
    (b"HTTP/2 200\r\n\r\n", "malformed response"),
    (b"HTTP/1.1 20 OK\r\n\r\n", "malformed response"),
    (b"\x05\x00", "closed the connection"),  # a SOCKS5 answer, then EOF
    (b"", "closed the connection during the handshake"),
])
def test_connect_failures(reply, fragment):
    hs = ConnectHandshake(HTTP_AUTH, "h", 443)
    with pytest.raises(ProxyError) as exc:
        hs.receive_data(reply)
        hs.receive_data(b"")
    assert fragment in str(exc.value)
    no_secrets(str(exc.value))
    with pytest.raises(ProxyError) as again:  # a failed handshake stays failed
        hs.receive_data(b"HTTP/1.1 200 OK\r\n\r\n")
    assert again.value is exc.value


def test_connect_masks_credentials_echoed_in_the_reason():
    hs = ConnectHandshake(HTTP_AUTH, "h", 443)
    with pytest.raises(ProxyError) as exc:
        hs.receive_data(f"HTTP/1.1 407 bad {TOKEN} or {PASSWORD}\r\n\r\n".encode())
    assert "407 bad *** or ***" in str(exc.value)
    no_secrets(str(exc.value))


def test_connect_head_limit():
    pad = b"X-Pad: " + b"a" * (MAX_HEAD - 200) + b"\r\n"
    ok = b"HTTP/1.1 200 OK\r\n" + pad
    ok += b"Y: " + b"b" * (MAX_HEAD - len(ok) - 7) + b"\r\n\r\n"
    assert len(ok) == MAX_HEAD
    assert ConnectHandshake(HTTP, "h", 443).receive_data(ok) is True
    too_big = ok[:-4] + b"b\r\n\r\n"
    for hs_feed in (lambda hs: hs.receive_data(too_big),
                    lambda hs: [hs.receive_data(too_big[i:i + 1000])
                                for i in range(0, len(too_big), 1000)]):
        with pytest.raises(ProxyError, match="over 16 KiB"):
            hs_feed(ConnectHandshake(HTTP, "h", 443))


def test_connect_head_limit_applies_without_the_end():
    hs = ConnectHandshake(HTTP, "h", 443)
    assert hs.receive_data(b"HTTP/1.1 200 OK\r\n" + b"x" * (MAX_HEAD - 100)) is False
    with pytest.raises(ProxyError, match="over 16 KiB"):
        hs.receive_data(b"x" * 100)


# -- SOCKS5 ------------------------------------------------------------------------------------


def socks_request(host_part: bytes, port: int) -> bytes:
    return b"\x05\x01\x00" + host_part + port.to_bytes(2, "big")


def test_socks5_no_auth_exact_bytes():
    hs = Socks5Handshake(SOCKS, "api.openai.com", 443)
    assert hs.initial_bytes() == b"\x05\x01\x00"
    assert hs.data_to_send() == b""
    assert hs.receive_data(b"\x05\x00") is False
    assert hs.data_to_send() == socks_request(b"\x03\x0eapi.openai.com", 443)
    assert hs.data_to_send() == b""
    assert hs.receive_data(b"\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38") is True
    assert hs.bound == ("127.0.0.1", 1080) and hs.leftover == b""


def test_socks5_username_password_exact_bytes():
    hs = Socks5Handshake(SOCKS_AUTH, "upstream.test", 8080)
    assert hs.initial_bytes() == b"\x05\x02\x00\x02"
    assert hs.receive_data(b"\x05\x02") is False
    assert hs.data_to_send() == b"\x01\x05alice\x0bs3cr3t-Pa55"
    assert hs.receive_data(b"\x01\x00") is False
    assert hs.data_to_send() == socks_request(b"\x03\x0dupstream.test", 8080)
    assert hs.receive_data(b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00") is True


def test_socks5_utf8_credentials():
    hs = Socks5Handshake(ProxySpec("socks5", "p", 1, "élève", ""), "h", 1)
    hs.receive_data(b"\x05\x02")
    assert hs.data_to_send() == b"\x01\x07" + "élève".encode() + b"\x00"


def test_socks5_proxy_may_skip_auth_we_offered():
    hs = Socks5Handshake(SOCKS_AUTH, "h", 80)
    hs.receive_data(b"\x05\x00")
    assert hs.data_to_send() == socks_request(b"\x03\x01h", 80)


@pytest.mark.parametrize("host, part", [
    ("10.1.2.3", b"\x01\x0a\x01\x02\x03"),
    ("2001:db8::1", b"\x04" + bytes.fromhex("20010db8000000000000000000000001")),
    ("localhost", b"\x03\x09localhost"),
    ("a" * 255, b"\x03\xff" + b"a" * 255),
])
def test_socks5_address_types(host, part):
    hs = Socks5Handshake(SOCKS, host, 443)
    hs.receive_data(b"\x05\x00")
    assert hs.data_to_send() == socks_request(part, 443)


def test_socks5_refuses_names_over_255_bytes():
    with pytest.raises(ProxyError, match="255"):
        Socks5Handshake(SOCKS, "a" * 256, 443)


@pytest.mark.parametrize("bound, expected", [
    (b"\x01\xc0\xa8\x00\x01\x1f\x90", ("192.168.0.1", 8080)),
    (b"\x04" + bytes(15) + b"\x01\x00\x50", ("::1", 80)),
    (b"\x03\x0bproxy.local\x00\x01", ("proxy.local", 1)),
    (b"\x03\x00\x00\x00", ("", 0)),
])
def test_socks5_reply_bound_address_every_type(bound, expected):
    hs = Socks5Handshake(SOCKS, "h", 443)
    reply = b"\x05\x00" + b"\x05\x00\x00" + bound + b"tail"
    assert hs.receive_data(reply) is True
    assert hs.bound == expected and hs.leftover == b"tail"


REPLY_MESSAGES = {
    1: "general SOCKS server failure", 2: "connection not allowed by ruleset",
    3: "network unreachable", 4: "host unreachable", 5: "connection refused",
    6: "TTL expired", 7: "command not supported", 8: "address type not supported",
    9: "unknown reply code", 0xFF: "unknown reply code",
}


@pytest.mark.parametrize("code", sorted(REPLY_MESSAGES))
def test_socks5_reply_codes(code):
    hs = Socks5Handshake(SOCKS_AUTH, "upstream.test", 443)
    hs.receive_data(b"\x05\x02\x01\x00")
    with pytest.raises(ProxyError) as exc:  # the code is read before the address
        hs.receive_data(bytes([5, code]))
    assert str(exc.value) == (f"the proxy could not connect to upstream.test:443: "
                              f"{REPLY_MESSAGES[code]} (0x{code:02x})")
    no_secrets(str(exc.value))


@pytest.mark.parametrize("spec, reply, fragment", [
    (SOCKS, b"\x05\xff", "accepts none of our authentication methods (it wants credentials)"),
    (SOCKS_AUTH, b"\x05\xff", "accepts none of our authentication methods"),
    (SOCKS, b"\x05\x02", "did not offer (0x02)"),
    (SOCKS_AUTH, b"\x05\x01", "did not offer (0x01)"),
    (SOCKS, b"HTTP/1.1 400 Bad Request\r\n\r\n", "not a SOCKS5 proxy"),
    (SOCKS, b"\x04\x5a", "not a SOCKS5 proxy"),
    (SOCKS_AUTH, b"\x05\x02\x01\x01", "rejected the user name and password"),
    (SOCKS_AUTH, b"\x05\x02\x01\xff", "rejected the user name and password"),
    (SOCKS_AUTH, b"\x05\x02\x07\x00", "malformed authentication reply"),
    (SOCKS, b"\x05\x00\x04\x00", "malformed reply (bad version)"),
    (SOCKS, b"\x05\x00\x05\x00\x00\x02\x00", "unknown address type (0x02)"),
    (SOCKS, b"\x05\x00\x05\x00\x00\x01\x7f\x00", "closed the connection"),
    (SOCKS, b"\x05", "closed the connection"),
    (SOCKS_AUTH, b"", "closed the connection during the handshake"),
])
def test_socks5_failures(spec, reply, fragment):
    hs = Socks5Handshake(spec, "h", 443)
    with pytest.raises(ProxyError) as exc:
        hs.receive_data(reply)
        hs.receive_data(b"")
    assert fragment in str(exc.value)
    no_secrets(str(exc.value))
    assert hs.data_to_send() == b""
    with pytest.raises(ProxyError):
        hs.receive_data(b"\x05\x00")


# -- any split of the proxy's reply gives the same outcome --------------------------------------


def run(hs, pieces: list[bytes], eof: bool) -> tuple:
    """Feed ``pieces`` (then EOF if asked) and describe the outcome: the error, or the state,
    leftover, bound address and every byte sent. (What was sent before an error depends on
    when the bad bytes arrived, so it is not part of an error's outcome.)"""
    sent = [hs.initial_bytes()]
    for piece in pieces + ([b""] if eof else []):
        if hs.established and not piece:
            break
        try:
            done = hs.receive_data(piece)
        except ProxyError as exc:
            return ("error", str(exc))
        sent.append(hs.data_to_send())
        assert done == hs.established
    bound = getattr(hs, "bound", None)
    return ("up" if hs.established else "waiting", hs.leftover, bound, b"".join(sent))


def cut(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({p % (len(data) + 1) for p in points})
    edges = [0, *marks, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:]) if b > a]


CUTS = st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=40)

HTTP_PARTS = st.sampled_from([
    b"HTTP/1.1 200 Connection established\r\n", b"HTTP/1.0 407 Proxy Auth\r\n",
    b"HTTP/1.1 100 Continue\r\n", b"HTTP/1.1 502 Bad Gateway\r\n", b"X-A: b\r\n", b"\r\n",
    b"\r", b"\n", b"junk", b"\x16\x03\x01\x00", b"H" * 5000,
])
SOCKS_PARTS = st.sampled_from([
    b"\x05\x00", b"\x05\x02", b"\x05\xff", b"\x01\x00", b"\x01\x01", b"\x05\x00\x00\x01",
    b"\x05\x05\x00\x01", b"\x05\x00\x00\x03\x05", b"\x05\x00\x00\x04", b"\x7f\x00\x00\x01",
    b"abcde", b"\x00\x50", bytes(16), b"\x09",
])


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(HTTP_PARTS | st.binary(max_size=8), max_size=12), points=CUTS,
       eof=st.booleans(), auth=st.booleans())
def test_connect_outcome_does_not_depend_on_the_cut(parts, points, eof, auth):
    data = b"".join(parts)
    spec = HTTP_AUTH if auth else HTTP
    whole = run(ConnectHandshake(spec, "h.test", 443), [data] if data else [], eof)
    split = run(ConnectHandshake(spec, "h.test", 443), cut(data, points), eof)
    single = run(ConnectHandshake(spec, "h.test", 443), [bytes([b]) for b in data], eof)
    assert whole == split == single
    if whole[0] == "error":
        no_secrets(whole[1])


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(SOCKS_PARTS | st.binary(max_size=6), max_size=10), points=CUTS,
       eof=st.booleans(), auth=st.booleans(),
       host=st.sampled_from(["h.test", "10.0.0.1", "::1"]))
def test_socks5_outcome_does_not_depend_on_the_cut(parts, points, eof, auth, host):
    data = b"".join(parts)
    spec = SOCKS_AUTH if auth else SOCKS
    whole = run(Socks5Handshake(spec, host, 443), [data] if data else [], eof)
    split = run(Socks5Handshake(spec, host, 443), cut(data, points), eof)
    single = run(Socks5Handshake(spec, host, 443), [bytes([b]) for b in data], eof)
    assert whole == split == single
    if whole[0] == "error":
        no_secrets(whole[1])


@settings(max_examples=100, deadline=None)
@given(points=CUTS, atyp=st.sampled_from([1, 3, 4]), tail=st.binary(max_size=20),
       name=st.binary(max_size=40))
def test_socks5_successful_reply_any_cut(points, atyp, tail, name):
    address = {1: b"\x01\x0a\x00\x00\x01", 4: b"\x04" + bytes(range(16)),
               3: b"\x03" + bytes([len(name)]) + name}[atyp]
    data = b"\x05\x02" + b"\x01\x00" + b"\x05\x00\x00" + address + b"\x01\xbb" + tail
    outcome = run(Socks5Handshake(SOCKS_AUTH, "h.test", 443), cut(data, points), False)
    assert outcome[0] == "up" and outcome[1] == tail and outcome[2][1] == 443
    assert outcome[3] == (b"\x05\x02\x00\x02" + b"\x01\x05alice\x0bs3cr3t-Pa55"
                          + socks_request(b"\x03\x06h.test", 443))
