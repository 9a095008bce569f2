"""Vertex AI end to end: the openai SDK through the gateway to a fake Vertex that also plays
Google's token endpoint, on both backends. The token endpoint checks the service-account JWT
with the public key of a key pair made here; model calls must carry its access token."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path
from urllib.parse import parse_qs

import openai
import pytest

from tests.fakes.upstream import FakeUpstream, Reply, Seen, json_reply
from tests.harness import run_gateway

from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding, rsa  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "data"
KEY = "sk-vertex-test"
EMAIL = "svc@proj-1.iam.gserviceaccount.com"
TOKEN = "ya29.fake-access-token"
MESSAGES = [{"role": "user", "content": "Hello?"}]
_PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = _PRIVATE.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FakeVertex:
    """Token endpoint at /token, Gemini and Claude models under /v1/projects/…"""

    def __init__(self, token_delay: float = 0.0, token_status: int = 200) -> None:
        self.token_delay = token_delay
        self.token_status = token_status
        self.token_posts = 0
        self.problems: list[str] = []
        self.lock = threading.Lock()
        self.up = FakeUpstream(self.handle)

    @property
    def url(self) -> str:
        return self.up.url

    def close(self) -> None:
        self.up.close()

    def check_jwt(self, seen: Seen) -> None:
        form = parse_qs(seen.body.decode())
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            self.problems.append(f"grant_type {form.get('grant_type')}")
        if seen.headers.get("content-type") != "application/x-www-form-urlencoded":
            self.problems.append("content-type " + seen.headers.get("content-type", ""))
        head, claims, sig = form["assertion"][0].split(".")
        _PRIVATE.public_key().verify(_unb64(sig), f"{head}.{claims}".encode(),
                                     padding.PKCS1v15(), hashes.SHA256())
        header, body = json.loads(_unb64(head)), json.loads(_unb64(claims))
        if header != {"alg": "RS256", "typ": "JWT"}:
            self.problems.append(f"header {header}")
        if body["iss"] != EMAIL or body["aud"] != self.url + "/token" or \
                body["scope"] != "https://www.googleapis.com/auth/cloud-platform" or \
                not 0 < body["exp"] - body["iat"] <= 3600:
            self.problems.append(f"claims {body}")

    def handle(self, seen: Seen) -> Reply:
        if seen.path == "/token":
            with self.lock:
                self.token_posts += 1
            try:
                self.check_jwt(seen)
            except Exception as exc:  # reported by the test, not lost in this thread
                self.problems.append(f"jwt: {exc!r}")
                return json_reply({"error": "invalid_grant",
                                   "error_description": "Invalid JWT Signature."}, 400)
            if self.token_status != 200:
                return json_reply({"error": "invalid_grant",
                                   "error_description": "Invalid JWT Signature."},
                                  self.token_status)
            reply = json_reply({"access_token": TOKEN, "expires_in": 3599,
                                "token_type": "Bearer"})
            reply.delay = self.token_delay
            return reply
        if seen.headers.get("authorization") != f"Bearer {TOKEN}":
            self.problems.append(f"{seen.path}: authorization "
                                 f"{seen.headers.get('authorization')!r}")
            return json_reply({"error": {"code": 401, "message": "no", "status":
                                         "UNAUTHENTICATED"}}, 401)
        path = seen.path
        if path.endswith(":generateContent"):
            return json_reply(json.loads((DATA / "gemini/body_text.json").read_text()))
        if path.endswith(":streamGenerateContent?alt=sse"):
            body = (DATA / "gemini/stream_text_crlf.sse").read_bytes()
            return Reply(headers=[("content-type", "text/event-stream")],
                         pieces=[body[i:i + 61] for i in range(0, len(body), 61)])
        if path.endswith(":rawPredict"):
            return json_reply(json.loads((DATA / "anthropic/message_text.json").read_text()))
        if path.endswith(":streamRawPredict"):
            body = (DATA / "anthropic/text_stream.sse").read_bytes()
            return Reply(headers=[("content-type", "text/event-stream")],
                         pieces=[body[i:i + 61] for i in range(0, len(body), 61)])
        return json_reply({"error": {"code": 404, "message": f"no route {path}",
                                     "status": "NOT_FOUND"}}, 404)



@pytest.fixture
def vertex():
    v = FakeVertex()
    yield v
    v.close()


def config(v: FakeVertex, regions: str = "") -> str:
    key = PEM.replace("\n", "\\n")  # the literal \n form api.yaml files usually carry
    return f"""
providers:
  - provider: vertex
    engine: vertex
    base_url: {v.url}
    project_id: proj-1
    client_email: {EMAIL}
    private_key: '{key}'
    token_uri: {v.url}/token
{regions}    model:
      - gemini-2.0-flash: gem
      - claude-sonnet-4@20250514: claude
api_keys:
  - api: {KEY}
"""


def model_calls(v: FakeVertex) -> list[Seen]:
    return [s for s in v.up.seen if s.path != "/token"]


def test_gemini_and_claude_whole_and_streamed(backend, vertex):
    with run_gateway(config(vertex), backend=backend) as gw:
        client = gw.openai(KEY)
        resp = client.chat.completions.create(model="gem", messages=MESSAGES)
        assert resp.choices[0].message.content == "Hello! How can I help you today? 😊"
        assert resp.model == "gem" and resp.usage.total_tokens == 14
        chunks = list(client.chat.completions.create(model="gem", messages=MESSAGES,
                                                     stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "Hello from Gemini — naïve café 🚀 done."
        resp = client.chat.completions.create(model="claude", messages=MESSAGES)
        assert resp.choices[0].message.content == \
            "Hi! My name is Claude — nice to meet you. 🚀"
        chunks = list(client.chat.completions.create(model="claude", messages=MESSAGES,
                                                     stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text.startswith("Hello, wörld — 日本 🚀")
    assert vertex.problems == []
    assert vertex.token_posts == 1  # cached for the three later requests
    calls = model_calls(vertex)
    base = "/v1/projects/proj-1/locations"
    assert [c.path for c in calls] == [
        f"{base}/us-central1/publishers/google/models/gemini-2.0-flash:generateContent",
        f"{base}/us-central1/publishers/google/models/gemini-2.0-flash:"
        "streamGenerateContent?alt=sse",
        f"{base}/us-east5/publishers/anthropic/models/claude-sonnet-4@20250514:rawPredict",
        f"{base}/europe-west1/publishers/anthropic/models/claude-sonnet-4@20250514:"
        "streamRawPredict",  # round robin over the Claude 4 regions
    ]
    gem = calls[0].json()
    assert gem["contents"] == [{"role": "user", "parts": [{"text": "Hello?"}]}]
    claude = calls[3].json()
    assert claude["anthropic_version"] == "vertex-2023-10-16" and "model" not in claude
    assert claude["stream"] is True
    assert "x-goog-api-key" not in calls[0].headers and "x-api-key" not in calls[2].headers


def test_concurrent_first_requests_share_one_token_fetch(backend):
    vertex = FakeVertex(token_delay=0.4)
    try:
        with run_gateway(config(vertex), backend=backend) as gw:
            results: list[str] = []
            errors: list[BaseException] = []

            def one(model: str) -> None:
                try:
                    resp = gw.openai(KEY).chat.completions.create(model=model,
                                                                  messages=MESSAGES)
                    results.append(resp.choices[0].message.content)
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

            threads = [threading.Thread(target=one, args=(m,))
                       for m in ("gem", "claude", "gem", "claude", "gem")]
            for t in threads:
                t.start()
            for t in threads:
                t.join(20)
        assert errors == []
        assert len(results) == 5
        assert vertex.token_posts == 1
        assert vertex.problems == []
        assert len(model_calls(vertex)) == 5
    finally:
        vertex.close()


def test_token_endpoint_failure_is_a_502_naming_it(backend):
    vertex = FakeVertex(token_status=400)
    try:
        with run_gateway(config(vertex), backend=backend) as gw:
            with pytest.raises(openai.APIStatusError) as exc:
                gw.openai(KEY).chat.completions.create(model="gem", messages=MESSAGES)
        assert exc.value.status_code == 502
        err = exc.value.body
        assert err["code"] == "vertex_token_failed"
        assert f"{vertex.url}/token" in err["message"]
        assert "invalid_grant" in err["message"] and "Invalid JWT Signature." in err["message"]
        assert model_calls(vertex) == []
    finally:
        vertex.close()


def test_token_failure_falls_back_to_the_next_channel(backend, up_openai):
    vertex = FakeVertex(token_status=401)
    try:
        conf = config(vertex).replace("api_keys:", f"""  - provider: backup
    base_url: {up_openai.url}/v1
    api: sk-backup
    model:
      - gemini-2.0-flash: gem
api_keys:""")
        with run_gateway(conf, backend=backend) as gw:
            resp = gw.openai(KEY).chat.completions.create(model="gem", messages=MESSAGES)
        assert resp.choices[0].message.content == "from backup"
        assert vertex.token_posts == 1 and model_calls(vertex) == []
    finally:
        vertex.close()


def test_configured_regions_rotate_and_429_moves_to_the_next(backend):
    seen_regions: list[str] = []
    vertex = FakeVertex()
    inner = vertex.handle

    def handle(seen: Seen) -> Reply:
        if seen.path != "/token":
            region = seen.path.split("/locations/")[1].split("/")[0]
            seen_regions.append(region)
            if region == "europe-west4":
                return json_reply({"error": {"code": 429, "message": "Quota exceeded",
                                             "status": "RESOURCE_EXHAUSTED"}}, 429)
        return inner(seen)

    vertex.up.handler = handle
    try:
        regions = "    regions: [us-central1, europe-west4, asia-east1]\n"
        with run_gateway(config(vertex, regions), backend=backend) as gw:
            client = gw.openai(KEY)
            for _ in range(4):
                resp = client.chat.completions.create(model="gem", messages=MESSAGES)
                assert resp.choices[0].message.content.startswith("Hello!")
        # 1: us-central1; 2: europe-west4 → 429 → asia-east1 (same request); 3: us-central1;
        # 4: europe-west4 is benched after its 429, so asia-east1
        assert seen_regions == ["us-central1", "europe-west4", "asia-east1", "us-central1",
                                "asia-east1"]
        assert vertex.token_posts == 1
    finally:
        vertex.close()


@pytest.fixture
def up_openai():
    reply = {"id": "chatcmpl-b", "object": "chat.completion", "created": 1, "model": "x",
             "choices": [{"index": 0, "message": {"role": "assistant", "content": "from backup"},
                          "finish_reason": "stop"}]}
    u = FakeUpstream(lambda seen: json_reply(reply))
    yield u
    u.close()
