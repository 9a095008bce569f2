"""R9: secrets never leave in answers or logs.

Canary secrets — the gateway key, and upstream keys in every vendor position (OpenAI and
Anthropic headers, Azure's ``api-key``, Gemini's ``?key=`` in the URL) — are run through the
failures most likely to quote them: upstream errors, unreachable upstreams, upstream
timeouts, a broken proxy with a password, malformed requests. Neither a response body nor a
log record (``uniapi`` logger) may contain any of them.
"""

from __future__ import annotations

import json
import logging
import random
import socket

import pytest

from tests.fakes.upstream import FakeUpstream, Reply, json_reply
from tests.harness import BACKENDS, run_gateway

RNG = random.Random()
TAG = f"{RNG.getrandbits(48):012x}"
GATEWAY_KEY = f"sk-canary-gw-{TAG}"
OPENAI_KEY = f"sk-canary-openai-{TAG}"
ANTHROPIC_KEY = f"sk-ant-canary-{TAG}"
AZURE_KEY = f"canary-azure-{TAG}"
GEMINI_KEY = f"AIza-canary-{TAG}"
PROXY_PASSWORD = f"canary-proxy-{TAG}"
SECRETS = [GATEWAY_KEY, OPENAI_KEY, ANTHROPIC_KEY, AZURE_KEY, GEMINI_KEY, PROXY_PASSWORD]


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(up: FakeUpstream) -> str:
    dead = f"http://127.0.0.1:{dead_port()}"
    return f"""
providers:
  - provider: openai
    base_url: {up.url}/v1/chat/completions
    api: {OPENAI_KEY}
    model: [m-openai]
  - provider: anthropic
    base_url: {up.url}/v1/messages
    api: {ANTHROPIC_KEY}
    model: [m-anthropic]
  - provider: azure
    base_url: {up.url}
    engine: azure
    api: {AZURE_KEY}
    model: [m-azure]
  - provider: gemini
    base_url: {up.url}/v1beta
    api: {GEMINI_KEY}
    model: [m-gemini]
  - provider: gone
    base_url: {dead}/v1beta
    api: {GEMINI_KEY}
    model: [m-gone]
  - provider: proxied
    base_url: {up.url}/v1/chat/completions
    api: {OPENAI_KEY}
    model: [m-proxied]
    preferences:
      proxy: http://user:{PROXY_PASSWORD}@127.0.0.1:{dead_port()}
api_keys:
  - api: {GATEWAY_KEY}
"""


def echoing(seen) -> Reply:  # type: ignore[no-untyped-def]
    """An upstream that quotes everything it got back in its error, as some do."""
    quoted = json.dumps({"path": seen.path, "headers": seen.headers})
    return json_reply({"error": {"message": f"Incorrect API key provided: {quoted}",
                                 "type": "invalid_request_error", "code": "invalid_api_key"}},
                      status=401)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_secret_in_any_answer_or_log(backend, caplog):
    up = FakeUpstream(echoing)
    bodies: list[bytes] = []
    try:
        with caplog.at_level(logging.DEBUG), run_gateway(config(up), backend=backend) as gw:
            client = gw.openai(GATEWAY_KEY)
            for model in ("m-openai", "m-anthropic", "m-azure", "m-gemini", "m-gone",
                          "m-proxied", "no-such-model"):
                for stream in (False, True):
                    raw = client.chat.completions.with_raw_response
                    try:
                        r = raw.create(model=model, stream=stream,
                                       messages=[{"role": "user", "content": "hi"}])
                        bodies.append(r.http_response.read())
                    except Exception as exc:  # noqa: BLE001 — the body is what we check
                        response = getattr(exc, "response", None)
                        bodies.append(response.content if response is not None else
                                      str(exc).encode())
            for junk in (b"{not json", GATEWAY_KEY.encode(), b'{"model": "' +
                         GATEWAY_KEY.encode() + b'"}'):
                bodies.append(gw.raw(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                     b"Connection: close\r\nAuthorization: Bearer "
                                     + GATEWAY_KEY.encode() + b"x\r\n"
                                     b"Content-Length: %d\r\n\r\n" % len(junk) + junk))
    finally:
        up.close()
    assert len(up.seen) >= 4  # the echoing upstream was reached by each vendor
    assert any(b"***" + OPENAI_KEY[-4:].encode() in b for b in bodies)  # masked, not dropped
    logs = "\n".join(r.getMessage() for r in caplog.records)
    for secret in SECRETS:
        # the raw requests sent the gateway key + "x" as a wrong key: not quoted back either
        for body in bodies:
            assert secret.encode() not in body, (secret, body[:400])
        assert secret not in logs, secret
