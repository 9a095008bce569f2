"""Credentials an attempt sent are masked in upstream error messages (R9)."""

from __future__ import annotations

from uniapi_core.relay.redact import credentials, redact
from uniapi_core.vendors.base import UpstreamRequest


def test_credentials_from_headers_and_query():
    req = UpstreamRequest("POST", "https://g.example/v1beta/models/m:gen?alt=sse&key=AIzaSECRET123",
                          (("Authorization", "Bearer sk-live-abcdef123456"),
                           ("x-api-key", "sk-ant-zzzzzzzz9999"), ("api-key", "short"),
                           ("content-type", "application/json")))
    found = credentials(req)
    assert set(found) == {"sk-ant-zzzzzzzz9999", "sk-live-abcdef123456", "AIzaSECRET123"}
    assert [len(s) for s in found] == sorted((len(s) for s in found), reverse=True)
    assert "short" not in credentials(req)  # too short to mask safely


def test_redact_keeps_the_last_four():
    secrets = ["sk-live-abcdef123456"]
    assert redact("bad key sk-live-abcdef123456 (sk-live-abcdef123456)", secrets) == \
        "bad key ***3456 (***3456)"
    assert redact("nothing here", secrets) == "nothing here"
