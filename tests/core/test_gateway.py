"""Gateway dispatch without sockets: auth, paths, validation, what a relay is built from."""

from __future__ import annotations

import hmac
import json
import random

import pytest

from uniapi_core.config.model import ApiKey, Config, ModelEntry, ModelRule, Provider
from uniapi_core.gateway import ChatCall, Gateway, Respond, Routed
from uniapi_core.relay import StartUpstream, Relay

PROVIDER = Provider(provider="up", base_url="http://127.0.0.1:9/v1/chat/completions",
                    api=("sk-a", "sk-b"),
                    model=(ModelEntry(upstream="gpt-4o", alias="gpt-4o"),
                           ModelEntry(upstream="gpt-4o-2024", alias="four")))
CONFIG = Config(providers=(PROVIDER,), api_keys=(
    ApiKey(api="sk-admin", role="admin"),
    ApiKey(api="sk-user", model=(ModelRule(rule="four"),)),
))
BODY = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).encode()


def gw() -> Gateway:
    return Gateway(CONFIG, entropy=random.Random(7))


def call(g, method="POST", path="/v1/chat/completions", body=BODY, key="sk-admin",
         headers=()):
    """The gateway's answer; a ``ChatCall`` is taken on to its route, as the request machine
    does when there is nothing to moderate or fetch first."""
    h = tuple(headers) + ((("authorization", f"Bearer {key}"),) if key else ())
    reply = g.handle(method, path, h, body, now=0.0, wall=1700000000.0)
    if isinstance(reply, ChatCall):
        assert not reply.moderate and not g.images_needed(reply)
        reply = g.route_chat(reply, {}, 0.0, 1700000000.0)
        if isinstance(reply, Routed):
            assert not reply.accounts
            reply = reply.relay
    return reply


def error_of(resp: Respond) -> dict:
    assert isinstance(resp, Respond)
    return json.loads(resp.body)["error"]


@pytest.mark.parametrize("key,headers,code", [
    (None, (), "missing_api_key"),
    ("sk-nope", (), "invalid_api_key"),
    (None, (("authorization", "Basic abc"),), "missing_api_key"),
    (None, (("authorization", "Bearer    "),), "missing_api_key"),
    ("sk-admin-but-longer", (), "invalid_api_key"),  # no prefix matches (uni-api's old bug)
])
def test_auth_failures_are_401(key, headers, code):
    resp = call(gw(), key=key, headers=headers)
    assert resp.status == 401 and error_of(resp)["code"] == code


def test_x_api_key_header_is_accepted():
    resp = call(gw(), key=None, headers=(("x-api-key", "sk-admin"),))
    assert isinstance(resp, Relay)


def test_key_check_uses_constant_time_compare(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    call(gw())
    assert calls


def test_key_table_holds_no_plaintext():
    g = gw()
    assert all(isinstance(k, bytes) and len(k) == 32 for k in g._keys)
    assert b"sk-admin" not in b"".join(g._keys)


def test_paths_and_methods():
    g = gw()
    assert call(g, "GET", "/healthz", key=None).status == 200
    assert call(g, "GET", "/v1/nothing").status == 404
    resp = call(g, "GET", "/v1/chat/completions")
    assert resp.status == 405 and ("allow", "POST") in resp.headers


def test_admin_only_endpoints():
    g = gw()
    assert call(g, "GET", "/v1/stats", key="sk-user").status == 403
    assert call(g, "GET", "/v1/stats").status == 200
    resp = call(g, "GET", "/v1/generate-api-key")
    token = json.loads(resp.body)["api_key"]
    assert token.startswith("sk-") and len(token) == 51


def test_models_per_key():
    g = gw()
    ids = [m["id"] for m in json.loads(call(g, "GET", "/v1/models").body)["data"]]
    assert ids == ["gpt-4o", "four"]
    ids = [m["id"] for m in json.loads(call(g, "GET", "/v1/models", key="sk-user").body)["data"]]
    assert ids == ["four"]


def test_model_not_allowed_is_404_naming_it():
    resp = call(gw(), key="sk-user")
    assert resp.status == 404
    err = error_of(resp)
    assert "gpt-4o" in err["message"] and err["code"] == "model_not_found"


def test_relay_sends_upstream_name_with_rotating_provider_keys():
    g = gw()
    body = json.dumps({"model": "four", "messages": [{"role": "user", "content": "x"}]}).encode()
    auths = []
    for _ in range(3):
        relay = call(g, body=body)
        open_ = relay.start(0.0)[0]
        assert isinstance(open_, StartUpstream)
        sent = json.loads(open_.request.body)
        assert sent["model"] == "gpt-4o-2024"
        auths.append(dict(open_.request.headers)["authorization"])
    assert auths == ["Bearer sk-a", "Bearer sk-b", "Bearer sk-a"]


def test_same_entropy_same_ids():
    a = call(Gateway(CONFIG, entropy=random.Random(3)), "GET", "/healthz", key=None)
    b = call(Gateway(CONFIG, entropy=random.Random(3)), "GET", "/healthz", key=None)
    assert a.headers == b.headers


def test_network_errors_read_the_same_on_every_runtime():
    import errno as e
    import socket

    from uniapi_core.errors import describe_os_error

    refused = ConnectionRefusedError(e.ECONNREFUSED, "Connect call failed ('127.0.0.1', 9)")
    wrapped = OSError("all attempts to connect to 127.0.0.1:9 failed")
    wrapped.__cause__ = refused
    assert describe_os_error(refused) == describe_os_error(wrapped) == "connection refused"
    assert describe_os_error(socket.gaierror(-2, "Name or service not known")) == \
        "name not resolved"
    assert describe_os_error(ExceptionGroup("g", [OSError(e.EADDRINUSE, "x")])) == \
        "address already in use"
    assert describe_os_error(TimeoutError()) == "TimeoutError"


def test_startup_decisions():
    from uniapi_core.startup import config_source, env_timeout

    assert config_source("a.yaml", {"CONFIG_URL": "https://x/c.yaml"}) == ("file", "a.yaml")
    assert config_source(None, {"CONFIG_URL": "https://x/c.yaml"}) == ("url", "https://x/c.yaml")
    assert config_source(None, {"CONFIG_URL": "/etc/u.yaml"}) == ("file", "/etc/u.yaml")
    assert config_source(None, {}) == ("file", "api.yaml")
    assert env_timeout({}) is None and env_timeout({"TIMEOUT": " 30 "}) == 30.0
    for bad in ("x", "0", "-1", "inf", "nan"):
        with pytest.raises(ValueError):
            env_timeout({"TIMEOUT": bad})


@pytest.mark.parametrize("content_type,ok", [
    (None, True), ("application/json", True), ("Application/JSON; charset=utf-8", True),
    ("application/vnd.api+json", True), ("text/plain", False),
    ("application/x-www-form-urlencoded", False), ("multipart/form-data; boundary=x", False),
    ("+json", False),
])
def test_json_endpoints_refuse_other_media_types_with_415(content_type, ok):
    headers = () if content_type is None else (("content-type", content_type),)
    for path in ("/v1/chat/completions", "/v1/embeddings"):
        resp = call(gw(), path=path, headers=headers)
        if ok:
            assert not (isinstance(resp, Respond) and resp.status == 415)
        else:
            assert resp.status == 415 and error_of(resp)["code"] == "unsupported_media_type"
