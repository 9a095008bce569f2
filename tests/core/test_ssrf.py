"""The fetch policy for remote image URLs (R11, docs/contracts.md), decided on resolved
addresses."""

from __future__ import annotations

import pytest

from uniapi_core.ssrf import address_refusal, pick_address, url_refusal


@pytest.mark.parametrize("address", [
    "127.0.0.1", "::1", "::ffff:127.0.0.1", "::127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::1",
    "100.64.0.1", "169.254.169.254", "fd00:ec2::254", "10.1.2.3", "192.168.0.10",
    "172.16.5.4", "0.0.0.0", "fe80::1%eth0", "224.0.0.1", "::", "2001::7f00:1",
    "not-an-ip",
])
def test_refused_addresses(address):
    assert address_refusal(address) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946",
                                     "8.8.8.8", "::ffff:8.8.8.8"])
def test_public_addresses(address):
    assert address_refusal(address) is None


def test_every_resolved_address_must_pass():
    assert pick_address(["8.8.8.8", "127.0.0.1"]) is None  # a rebinding-style mix
    assert pick_address(["8.8.8.8", "1.1.1.1"]) == "8.8.8.8"
    assert pick_address([]) is None
    assert pick_address(["127.0.0.1"], allow_private=True) == "127.0.0.1"


@pytest.mark.parametrize("url,kw,ok", [
    ("https://img.example/cat.png", {}, True),
    ("http://img.example/cat.png", {}, False),
    ("http://img.example/cat.png", {"allow_http": True}, True),
    ("https://img.example:8443/cat.png", {}, False),
    ("https://img.example:8443/cat.png", {"allow_any_port": True}, True),
    ("ftp://img.example/cat.png", {}, False),
    ("https://user:pw@img.example/cat.png", {}, False),
    ("file:///etc/passwd", {}, False),
])
def test_urls(url, kw, ok):
    parsed, why = url_refusal(url, **kw)
    assert (parsed is not None) == ok and (why is None) == ok


# R11's table (docs/contracts.md): every address a name may resolve to, decided on the
# resolved address with embedded IPv4 unwrapped; the names are what getaddrinfo turns into
# them (spellings ipaddress rejects but the resolver accepts), served here by a fake resolver.
FAKE_DNS = {
    "2130706433": ["127.0.0.1"], "0x7f.1": ["127.0.0.1"], "017700000001": ["127.0.0.1"],
    "127.1": ["127.0.0.1"], "mapped.example": ["::ffff:127.0.0.1"],
    "compat.example": ["::127.0.0.1"], "nat64.example": ["64:ff9b::7f00:1"],
    "sixtofour.example": ["2002:7f00:1::1"], "cgnat.example": ["100.64.0.1"],
    "metadata.example": ["169.254.169.254"], "metadata6.example": ["fd00:ec2::254"],
    "mapped-metadata.example": ["::ffff:169.254.169.254"],
    "nat64-metadata.example": ["64:ff9b::a9fe:a9fe"],
    "teredo.example": ["2001:0:4136:e378:8000:63bf:80ff:fffe"],  # embeds 127.0.0.1
    "rebind.example": ["93.184.216.34", "10.0.0.1"],
}


@pytest.mark.parametrize("name", sorted(FAKE_DNS))
def test_r11_every_name_of_the_table_is_refused_after_resolution(name):
    parsed, why = url_refusal(f"https://{name}/cat.png")
    assert why is None and parsed is not None  # the URL itself is fine: the address decides
    assert pick_address(FAKE_DNS[name]) is None, FAKE_DNS[name]
    assert pick_address(FAKE_DNS[name], allow_private=True) is not None  # the tests' opt-in
