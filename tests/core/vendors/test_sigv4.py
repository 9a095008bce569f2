"""AWS Signature Version 4 (``uniapi_core.vendors.sigv4``; docs/vendor-rules.md).

The vectors are AWS's published SigV4 test suite (credentials ``AKIDEXAMPLE``, region
``us-east-1``, service ``service``, ``20150830T123600Z``). botocore's ``SigV4Auth`` is the
oracle for Bedrock URLs (skipped when botocore is not installed; it is never a runtime
dependency).
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uniapi_core.vendors.sigv4 import (amz_date, canonical_query, canonical_request,
                                       canonical_uri, sign, signing_key)

SUITE = dict(access_key="AKIDEXAMPLE", secret_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
             region="us-east-1", service="service", amz_date="20150830T123600Z")
HOST = "https://example.amazonaws.com"
SCOPE = "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"
EMPTY = hashlib.sha256(b"").hexdigest()

# (name, method, path+query, headers, body, canonical-request sha256 or None, signed, signature)
VECTORS = [
    ("get-vanilla", "GET", "/", [], b"",
     "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63", "host;x-amz-date",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
    ("get-vanilla-query-order-key-case", "GET", "/?Param2=value2&Param1=value1", [], b"",
     "816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0", "host;x-amz-date",
     "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
    ("post-vanilla", "POST", "/", [], b"",
     "553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87", "host;x-amz-date",
     "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
    ("post-vanilla-query", "POST", "/?Param1=value1", [], b"",
     "9d659678c1756bb3113e2ce898845a0a79dbbc57b740555917687f1b3340fbbd", "host;x-amz-date",
     "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"),
    ("post-x-www-form-urlencoded", "POST", "/",
     [("Content-Type", "application/x-www-form-urlencoded")], b"Param1=value1",
     "42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281",
     "content-type;host;x-amz-date",
     "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"),
    ("post-header-key-case", "post", "/", [("MY-HEADER1", "value1")], b"",
     "9368318c2967cf6de74404b30c65a91e8f6253e0a8659d6d5319f1a812f87d65",
     "host;my-header1;x-amz-date",
     "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c"),
    ("post-header-value-case", "POST", "/", [("My-Header1", "VALUE1")], b"", None,
     "host;my-header1;x-amz-date",
     "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d"),
    ("get-header-key-duplicate", "GET", "/",
     [("My-Header1", "value2"), ("My-Header1", "value2"), ("My-Header1", "value1")], b"", None,
     "host;my-header1;x-amz-date",
     "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"),
]


def test_signing_key_matches_the_published_value():
    key = signing_key(SUITE["secret_key"], "20150830", "us-east-1", "service")
    assert key.hex() == "938127b5336810ddb6a5d6af445fcac9e371f9ed418ed386b022aed82901be75"


@pytest.mark.parametrize("name,method,target,headers,body,creq_hash,signed,signature", VECTORS,
                         ids=[v[0] for v in VECTORS])
def test_aws_test_suite(name, method, target, headers, body, creq_hash, signed, signature):
    added = sign(method, HOST + target, headers, body, **SUITE)
    assert added[0] == ("x-amz-date", "20150830T123600Z")
    assert added[-1] == ("authorization", f"AWS4-HMAC-SHA256 Credential={SCOPE}, "
                                          f"SignedHeaders={signed}, Signature={signature}")
    if creq_hash:
        creq, _ = canonical_request(method, HOST + target,
                                    headers + [("X-Amz-Date", SUITE["amz_date"])],
                                    hashlib.sha256(body).hexdigest())
        assert hashlib.sha256(creq.encode()).hexdigest() == creq_hash


def test_session_token_is_sent_and_signed():
    added = dict(sign("GET", HOST + "/", [], b"", session_token="TOKEN/+=", **SUITE))
    assert added["x-amz-security-token"] == "TOKEN/+="
    assert "SignedHeaders=host;x-amz-date;x-amz-security-token," in added["authorization"]


def test_content_sha256_is_optional():
    added = dict(sign("POST", HOST + "/", [], b"abc", content_sha256=True, **SUITE))
    assert added["x-amz-content-sha256"] == hashlib.sha256(b"abc").hexdigest()
    assert "x-amz-content-sha256;x-amz-date" in added["authorization"]
    assert "x-amz-content-sha256" not in dict(sign("POST", HOST + "/", [], b"abc", **SUITE))


def test_caller_headers_named_like_signer_headers_do_not_duplicate():
    added = sign("GET", HOST + "/", [("X-Amz-Date", "19990101T000000Z")], b"", **SUITE)
    assert [k for k, _ in added] == ["x-amz-date", "authorization"]
    assert added == sign("GET", HOST + "/", [], b"", **SUITE)


def test_unsigned_and_host_headers():
    plain = sign("GET", HOST + "/", [], b"", **SUITE)
    noisy = sign("GET", HOST + "/", [("User-Agent", "x/1"), ("Connection", "close"),
                                     ("Host", "evil.example")], b"", **SUITE)
    assert plain == noisy  # unsigned headers ignored; host always from the URL


def test_host_keeps_a_non_default_port_and_drops_the_default_one():
    creq, _ = canonical_request("GET", "http://localhost:8080/x", [], EMPTY)
    assert "\nhost:localhost:8080\n" in creq
    creq, _ = canonical_request("GET", "https://Example.AmazonAWS.com:443/x", [], EMPTY)
    assert "\nhost:example.amazonaws.com\n" in creq


def test_canonical_uri_double_encodes_wire_escapes():
    assert canonical_uri("/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/invoke") == \
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/invoke"
    assert canonical_uri("/model/a:b/invoke") == "/model/a%3Ab/invoke"
    assert canonical_uri("/a/./b/../c//d/") == "/a/c/d/"
    assert canonical_uri("") == "/"


def test_canonical_query_sorts_and_encodes():
    assert canonical_query("b=2&a=2&a=1&c") == "a=1&a=2&b=2&c="
    assert canonical_query("k=a b&x=%7e") == "k=a%20b&x=~"


def test_header_values_are_trimmed_and_collapsed():
    creq, signed = canonical_request("GET", HOST + "/", [("My-Header2", '  "a   b   c" ')], EMPTY)
    assert '\nmy-header2:"a b c"\n' in creq and signed == "host;my-header2"


def test_amz_date():
    assert amz_date(1440938160) == "20150830T123600Z"
    assert amz_date(0) == "19700101T000000Z"
    assert amz_date(1735689600) == "20250101T000000Z"


# -- botocore as an oracle ---------------------------------------------------------------------

BEDROCK_CASES = [
    ("https://bedrock-runtime.us-east-1.amazonaws.com/model/"
     "anthropic.claude-3-5-sonnet-20240620-v1%3A0/invoke", "us-east-1", None),
    ("https://bedrock-runtime.eu-west-3.amazonaws.com/model/"
     "eu.anthropic.claude-3-7-sonnet-20250219-v1%3A0/invoke-with-response-stream", "eu-west-3",
     "FwoGZXIvYXdzEBYaDH/token+with/slashes=="),
    ("http://localhost:4566/model/arn%3Aaws%3Abedrock%3Aus-west-2%3A123456789012%3A"
     "inference-profile%2Fus.anthropic.claude-sonnet-4-20250514-v1%3A0/invoke", "us-west-2",
     None),
]


def _botocore_sign(url, region, token, headers, body, date):
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    request.headers["X-Amz-Date"] = date
    if token:
        request.headers["X-Amz-Security-Token"] = token
    request.context["timestamp"] = date
    auth = SigV4Auth(Credentials("AKIAEXAMPLEBEDROCK", "s3cr3t/Key+EXAMPLE", token), "bedrock",
                     region)
    creq = auth.canonical_request(request)
    signature = auth.signature(auth.string_to_sign(request, creq), request)
    return creq, auth.signed_headers(auth.headers_to_sign(request)), signature


@pytest.mark.parametrize("url,region,token", BEDROCK_CASES, ids=["colon", "token", "arn-port"])
def test_bedrock_urls_match_botocore(url, region, token):
    headers = [("Content-Type", "application/json"), ("Accept", "application/json"),
               ("User-Agent", "uniapi/1"), ("X-Custom", "  a   b ")]
    body = b'{"anthropic_version":"bedrock-2023-05-31","max_tokens":64,"messages":[]}'
    date = "20250101T000000Z"
    creq, signed, signature = _botocore_sign(url, region, token, headers, body, date)
    mine, mine_signed = canonical_request("POST", url, headers + [("x-amz-date", date)] + (
        [("x-amz-security-token", token)] if token else []), hashlib.sha256(body).hexdigest())
    assert mine == creq and mine_signed == signed
    added = dict(sign("POST", url, headers, body, access_key="AKIAEXAMPLEBEDROCK",
                      secret_key="s3cr3t/Key+EXAMPLE", session_token=token, region=region,
                      amz_date=date))
    assert added["authorization"].endswith(f"SignedHeaders={signed}, Signature={signature}")


_SEGMENT = st.text(st.characters(codec="utf-8", exclude_characters="/?#%"), min_size=1,
                   max_size=12)


@settings(max_examples=60, deadline=None)
@given(st.lists(_SEGMENT, min_size=1, max_size=4), st.sampled_from(["us-east-1", "ap-south-1"]))
def test_random_paths_match_botocore(segments, region):
    from urllib.parse import quote

    url = "https://bedrock-runtime.%s.amazonaws.com/%s" % (
        region, "/".join(quote(s, safe="") for s in segments))
    date = "20240229T235959Z"
    creq, signed, signature = _botocore_sign(url, region, None, [], b"", date)
    mine, _ = canonical_request("POST", url, [("x-amz-date", date)], EMPTY)
    assert mine == creq
