"""R9: secrets never leave — not in answers, logs, stats, metrics, config errors or crash output.

Canary secrets, random per run, sit in every credential position: the client keys (sent as
``Authorization: Bearer``, ``x-api-key``, ``x-goog-api-key`` and ``?key=``, valid and not), the
OpenAI-compatible, Anthropic, Azure and Gemini ``api`` keys, a Vertex service account's
``private_key`` (a real RSA PEM made here) and the access token its token endpoint hands out,
Bedrock's ``aws_access_key``/``aws_secret_key``/``aws_session_token``, proxy passwords (a
working authenticating CONNECT proxy, one that quotes what it was offered, a SOCKS5 one that
refuses them, a dead one) and the shared-state Redis password (a dead port, and a server that
quotes every command back).

The upstreams echo what they received (method, path with its query, every header, the body):
in their errors, whole or streamed, as vendors do ("Incorrect API key provided: …"), and in
their successful answers, so that anything passed through would show. A successful answer
leaves out only the upstream's own credential (no vendor quotes your key in a completion);
what every upstream received is checked on its own: nothing but its own credential.

Debug logging is on for every logger, and the process's stdout/stderr are captured (access
log, shared-state lines). After the traffic ``/v1/stats``, ``/metrics`` and friends are read
with the admin key and the SQLite stats file is read whole. Config mistakes that carry a
canary go through ``load_checked`` and ``launch``; ``uniapi check``/``route`` and serves that
fail to start run as processes, their output searched.

Each canary is looked for in every place as itself, its base64 (standard and URL-safe, padded
and not, also of ``user:password`` for basic auth), its URL-encoded forms and its prefix (the
first 12 characters of its random part). Every hit is reported with where it was found; the
count must be 0.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, quote_plus

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.fakes.echo import EchoProxy, EchoRedis, event_frame
from tests.fakes.proxy import HttpConnectProxy, Socks5Proxy
from tests.fakes.upstream import FakeUpstream, Reply, Seen, json_reply
from tests.harness import run_gateway
from uniapi_core.cmdline import module_parser
from uniapi_core.ops.stats import StoreConfig
from uniapi_core.redis.url import parse_redis_url
from uniapi_core.startup import launch, load_checked
from uniapi_core.summary import render_summary

# -- the canaries ---------------------------------------------------------------------------


def _tail() -> str:
    """A canary's random part: 24 hex digits, so its 12-character prefix is unique."""
    return secrets.token_hex(12)


@dataclass(frozen=True)
class Canary:
    position: str  # where it is configured or sent
    value: str
    secret: str  # the random part after any fixed prefix (its first 12 characters: "prefix")
    users: tuple[str, ...] = ()  # also sent as HTTP basic auth "user:value"
    pieces: tuple[str, ...] = ()  # further raw pieces of it (a PEM's base64 lines)

    def forms(self) -> list[tuple[str, str]]:
        """(form name, text) of every form searched for."""
        out = [("raw", self.value)]
        for user in ("", *self.users):
            plain = f"{user}:{self.value}" if user else self.value
            named = f"'{user}:…'" if user else "it"
            std = base64.b64encode(plain.encode()).decode()
            url = base64.urlsafe_b64encode(plain.encode()).decode()
            out += [(f"base64 of {named}", std), (f"unpadded base64 of {named}", std.rstrip("=")),
                    (f"urlsafe base64 of {named}", url),
                    (f"unpadded urlsafe base64 of {named}", url.rstrip("="))]
        out += [("url-encoded", quote(self.value, safe="")),
                ("url-encoded (form)", quote_plus(self.value)),
                ("prefix", self.secret[:12])]
        out += [(f"PEM line {i}", piece) for i, piece in enumerate(self.pieces, 1)]
        seen: set[str] = set()
        unique = []
        for name, text in out:
            if text not in seen:
                seen.add(text)
                unique.append((name, text))
        return unique


def _canary(position: str, prefix: str, suffix: str = "", **kw) -> Canary:  # type: ignore[no-untyped-def]
    tail = _tail()
    return Canary(position, f"{prefix}{tail}{suffix}", tail, **kw)


USER_KEY = _canary("client key", "sk-canary-user-")
ADMIN_KEY = _canary("admin client key", "sk-canary-admin-")
WRONG_KEY = _canary("unknown client key", "sk-canary-wrong-")
OPENAI_KEY = _canary("OpenAI-compatible api", "sk-canary-openai-")
ANTHROPIC_KEY = _canary("Anthropic api", "sk-ant-canary-")
AZURE_KEY = _canary("Azure api", "canary-azure-")
GEMINI_KEY = _canary("Gemini api", "AIza-canary-")
VERTEX_TOKEN = _canary("Vertex access token", "ya29.canary-")
_AWS = secrets.token_hex(8).upper()
AWS_ACCESS = Canary("aws_access_key", f"AKIA{_AWS}", _AWS)
AWS_SECRET = _canary("aws_secret_key", "canary/aws+")
AWS_SESSION = _canary("aws_session_token", "canary-session-")
PROXY_USER = "canaryuser"
PROXY_PASSWORD = _canary("proxy password", "pw/", ":@", users=(PROXY_USER,))
REDIS_USER = "redisuser"
REDIS_PASSWORD = _canary("Redis password", "rp/", ":@", users=("", REDIS_USER))

_PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = _PRIVATE.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()
_PEM_LINES = tuple(PEM.strip().splitlines()[1:-1])
# its random part: the first body line's opening bytes are the fixed PKCS#8 header
VERTEX_PEM = Canary("Vertex private_key", PEM, _PEM_LINES[1], pieces=_PEM_LINES)

CANARIES = [USER_KEY, ADMIN_KEY, WRONG_KEY, OPENAI_KEY, ANTHROPIC_KEY, AZURE_KEY, GEMINI_KEY,
            VERTEX_TOKEN, VERTEX_PEM, AWS_ACCESS, AWS_SECRET, AWS_SESSION, PROXY_PASSWORD,
            REDIS_PASSWORD]
EMAIL = "svc@canary-proj.iam.gserviceaccount.com"
#: the credentials each upstream (by the first segment of its path) is given, and may see
OWN = {"openai": [OPENAI_KEY], "proxied": [OPENAI_KEY], "anthropic": [ANTHROPIC_KEY],
       "azure": [AZURE_KEY], "gemini": [GEMINI_KEY], "vertex": [VERTEX_TOKEN],
       "aws": [AWS_ACCESS, AWS_SESSION]}


def find(where: str, blob: bytes | str, canaries: list[Canary] = CANARIES) -> list[str]:
    """Every canary form in ``blob``, each as ``where: position (form) …context…``."""
    data = blob.encode("utf-8", "surrogateescape") if isinstance(blob, str) else blob
    hits = []
    for canary in canaries:
        for form, text in canary.forms():
            at = data.find(text.encode())
            if at >= 0:
                context = data[max(0, at - 80):at + len(text) + 40]
                hits.append(f"{where}: {canary.position} ({form}) in …{context!r}…")
    return hits


def report(hits: list[str]) -> str:
    return f"{len(hits)} canary hit(s):\n" + "\n".join(hits)


#: the test's own HTTP client logs the URLs it requests (``?key=`` included): not the gateway's
CLIENT_LOGGERS = ("httpx", "httpcore")


def gateway_logs(caplog: pytest.LogCaptureFixture) -> str:
    """Every log record but the test client's, formatted with its exception if any."""
    handler = logging.Handler()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    return "\n".join(handler.format(r) for r in caplog.records
                     if not r.name.split(".")[0] in CLIENT_LOGGERS)


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- upstreams that echo ----------------------------------------------------------------------

MESSAGES = [{"role": "user", "content": "hi"}]
_ERROR_STATUSES = [401, 400, 403, 429, 500, 503]


def _echo(seen: Seen, leave_out: list[Canary]) -> str:
    headers = {k: v for k, v in seen.headers.items()
               if not any(c.value in v for c in leave_out)}
    return json.dumps({"method": seen.method, "path": seen.path, "headers": headers,
                       "body": seen.body.decode("utf-8", "replace")})


def _offered_key(seen: Seen) -> str:
    """The credential as a vendor's "Incorrect API key provided: …" quotes it."""
    for name in ("authorization", "x-api-key", "api-key", "x-goog-api-key"):
        value = seen.headers.get(name, "")
        if value:
            return value.split(" ", 1)[-1]
    query = parse_qs(seen.path.partition("?")[2])
    return (query.get("key") or [""])[0]


def _sse(events: list[tuple[str | None, dict]], done: bool = False) -> Reply:
    pieces = [(f"event: {name}\n" if name else "").encode() + b"data: "
              + json.dumps(data).encode() + b"\n\n" for name, data in events]
    if done:
        pieces.append(b"data: [DONE]\n\n")
    return Reply(headers=[("content-type", "text/event-stream")], pieces=pieces)


def _anthropic_message(text: str) -> dict:
    return {"id": "msg_echo", "type": "message", "role": "assistant", "model": "m",
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 5}}


def _anthropic_events(text: str) -> list[tuple[str, dict]]:
    start = _anthropic_message("")
    start.update(content=[], stop_reason=None)
    return [("message_start", {"type": "message_start", "message": start}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": text}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                                  "stop_sequence": None},
                               "usage": {"output_tokens": 5}}),
            ("message_stop", {"type": "message_stop"})]


def _gemini_body(text: str) -> dict:
    return {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 5,
                              "totalTokenCount": 8}, "modelVersion": "m"}


def _bedrock_frames(frames: list[bytes]) -> Reply:
    return Reply(headers=[("content-type", "application/vnd.amazon.eventstream")],
                 pieces=frames)


def _bedrock_chunk(event: dict) -> bytes:
    payload = json.dumps({"bytes": base64.b64encode(json.dumps(event).encode()).decode()})
    return event_frame({":event-type": "chunk", ":content-type": "application/json",
                        ":message-type": "event"}, payload.encode())


def _token_reply(seen: Seen) -> Reply:
    """Google's token endpoint: the JWT must be signed with the canary key."""
    assertion = parse_qs(seen.body.decode())["assertion"][0]
    head, claims, sig = assertion.split(".")
    _PRIVATE.public_key().verify(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)),
                                 f"{head}.{claims}".encode(), padding.PKCS1v15(),
                                 hashes.SHA256())
    return json_reply({"access_token": VERTEX_TOKEN.value, "expires_in": 3599,
                       "token_type": "Bearer"})


def success(seen: Seen) -> Reply:
    """A vendor-shaped answer whose text is everything received, the own credential left out."""
    vendor = seen.path.split("/")[1]
    if seen.path.endswith("/token"):
        return _token_reply(seen)
    text = "you sent: " + _echo(seen, OWN.get(vendor, []))
    path = seen.path.partition("?")[0]
    streamed = "stream" in path.rsplit("/", 1)[-1].lower() or (
        seen.body[:1] == b"{" and json.loads(seen.body).get("stream") is True)
    if "/chat/completions" in path:
        if streamed:
            chunk = {"id": "chatcmpl-echo", "object": "chat.completion.chunk", "created": 1,
                     "model": "m", "choices": [{"index": 0, "delta": {
                         "role": "assistant", "content": text}, "finish_reason": None}]}
            end = {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            return _sse([(None, chunk), (None, end)], done=True)
        return json_reply({"id": "chatcmpl-echo", "object": "chat.completion", "created": 1,
                           "model": "m", "choices": [{"index": 0, "message": {
                               "role": "assistant", "content": text}, "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 3, "completion_tokens": 5,
                                     "total_tokens": 8}})
    if path.endswith(("/messages", ":rawPredict", "/invoke")):
        return json_reply(_anthropic_message(text))
    if path.endswith(":streamRawPredict"):
        return _sse(_anthropic_events(text))
    if path.endswith("/invoke-with-response-stream"):
        return _bedrock_frames([_bedrock_chunk(e) for _, e in _anthropic_events(text)])
    if path.endswith(":generateContent"):
        return json_reply(_gemini_body(text))
    if path.endswith(":streamGenerateContent"):
        return _sse([(None, _gemini_body(text))])
    return json_reply({"error": {"message": f"no route: {text}", "type": "x"}}, 404)


class Failing:
    """Errors quoting everything received, the own credential included: HTTP errors in each
    vendor's shape (and as plain text), and errors inside a 200 stream."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, seen: Seen) -> Reply:
        self.count += 1
        n = self.count
        vendor = seen.path.split("/")[1]
        if seen.path.endswith("/token"):
            if n % 2:  # Vertex's token endpoint refusing, quoting the assertion
                return json_reply({"error": "invalid_grant", "error_description":
                                   f"Invalid JWT: {_echo(seen, [])}"}, 400)
            return _token_reply(seen)
        text = f"Incorrect API key provided: {_offered_key(seen)}. You sent: {_echo(seen, [])}"
        path = seen.path.partition("?")[0]
        streamed = "stream" in path.rsplit("/", 1)[-1].lower() or (
            seen.body[:1] == b"{" and json.loads(seen.body).get("stream") is True)
        if streamed and n % 3 == 0:  # a 200 stream that fails at once
            if path.endswith("/invoke-with-response-stream"):
                return _bedrock_frames([event_frame({
                    ":message-type": "exception", ":exception-type": "validationException",
                    ":content-type": "application/json"},
                    json.dumps({"message": text}).encode())])
            if vendor == "anthropic" or path.endswith(":streamRawPredict"):
                return _sse([("error", {"type": "error", "error": {
                    "type": "authentication_error", "message": text}})])
            if ":stream" in path:
                return _sse([(None, {"error": {"code": 401, "message": text,
                                               "status": "UNAUTHENTICATED"}})])
            return _sse([(None, {"error": {"message": text, "type": "invalid_request_error",
                                           "code": "invalid_api_key"}})])
        status = _ERROR_STATUSES[n % len(_ERROR_STATUSES)]
        if n % 4 == 1:
            return Reply(status=status, headers=[("content-type", "text/plain")],
                         pieces=[text.encode()], chunked=False)
        if vendor == "anthropic" or path.endswith(("RawPredict", "/invoke")):
            body = {"type": "error", "error": {"type": "authentication_error", "message": text}}
        elif vendor in ("gemini",) or ":" in path.rsplit("/", 1)[-1]:
            body = {"error": {"code": status, "message": text, "status": "UNAUTHENTICATED"}}
        elif vendor == "aws":
            body = {"message": text}
        else:
            body = {"error": {"message": text, "type": "invalid_request_error",
                              "code": "invalid_api_key"}}
        return json_reply(body, status=status)


# -- the traffic ------------------------------------------------------------------------------

def _providers(up: str, tag: str, token_up: str | None = None) -> str:
    pem = PEM.replace("\n", "\\n")
    token_uri = f"{token_up or up}/vertex/token"
    return f"""
  - provider: openai-{tag}
    base_url: {up}/openai/v1/chat/completions
    api: {OPENAI_KEY.value}
    model: [m-openai-{tag}]
  - provider: anthropic-{tag}
    base_url: {up}/anthropic/v1/messages
    api: {ANTHROPIC_KEY.value}
    model: [m-anthropic-{tag}]
  - provider: azure-{tag}
    base_url: {up}/azure
    engine: azure
    api: {AZURE_KEY.value}
    model: [m-azure-{tag}]
  - provider: gemini-{tag}
    base_url: {up}/gemini/v1beta
    api: {GEMINI_KEY.value}
    model: [m-gemini-{tag}]
  - provider: vertex-{tag}
    engine: vertex
    base_url: {up}/vertex
    project_id: canary-proj
    client_email: {EMAIL}
    private_key: '{pem}'
    token_uri: {token_uri}
    model:
      - gemini-2.0-flash: m-vertex-gemini-{tag}
      - claude-sonnet-4@20250514: m-vertex-claude-{tag}
  - provider: aws-{tag}
    engine: aws
    base_url: {up}/aws
    aws_access_key: {AWS_ACCESS.value}
    aws_secret_key: {AWS_SECRET.value}
    aws_session_token: {AWS_SESSION.value}
    aws_region: us-east-1
    model:
      - anthropic.claude-3-5-sonnet-20240620-v1:0: m-aws-{tag}
"""


def _proxied(name: str, up: str, proxy_url: str) -> str:
    return f"""
  - provider: {name}
    base_url: {up}/proxied/v1/chat/completions
    api: {OPENAI_KEY.value}
    model: [m-{name}]
    preferences:
      proxy: {json.dumps(proxy_url)}
"""


def traffic_config(ok: FakeUpstream, bad: FakeUpstream, proxies: dict[str, str]) -> str:
    return ("providers:" + _providers(ok.url, "ok") + _providers(bad.url, "err")
            + _providers(bad.url, "mixed", token_up=ok.url)
            + "".join(_proxied(name, ok.url, url) for name, url in proxies.items())
            + f"""  - provider: gone
    base_url: http://127.0.0.1:{dead_port()}/gemini/v1beta
    api: {GEMINI_KEY.value}
    model: [m-gone]
api_keys:
  - api: {ADMIN_KEY.value}
    role: admin
  - api: {USER_KEY.value}
""")


def _models() -> list[str]:
    out = []
    for tag in ("ok", "err"):
        out += [f"m-{v}-{tag}" for v in ("openai", "anthropic", "azure", "gemini",
                                          "vertex-gemini", "vertex-claude", "aws")]
    out += ["m-vertex-gemini-mixed", "m-vertex-claude-mixed", "m-proxied-ok", "m-proxied-echo",
            "m-proxied-socks", "m-proxied-dead", "m-gone", "no-such-model"]
    return out


def _requests(model: str, stream: bool) -> list[tuple[str, str, dict, dict]]:
    """(method, target, headers, JSON body) of the same question through every front, the
    client key in each of its positions."""
    user = USER_KEY.value
    bearer = {"authorization": f"Bearer {user}"}
    gemini = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    verb = "streamGenerateContent?alt=sse" if stream else "generateContent"
    by_query = f"{verb}{'&' if stream else '?'}key={quote(user)}"
    return [
        ("POST", "/v1/chat/completions", bearer,
         {"model": model, "stream": stream, "messages": MESSAGES}),
        ("POST", "/v1/messages", {"x-api-key": user, "anthropic-version": "2023-06-01"},
         {"model": model, "max_tokens": 32, "stream": stream, "messages": MESSAGES}),
        ("POST", f"/v1beta/models/{model}:{by_query}", {}, gemini),
        ("POST", f"/v1beta/models/{model}:{verb}", {"x-goog-api-key": user}, gemini),
        ("POST", "/v1/responses", bearer, {"model": model, "input": "hi", "stream": stream}),
    ]


def _wrong_and_malformed() -> list[tuple[str, str, dict, bytes]]:
    wrong, user = WRONG_KEY.value, USER_KEY.value
    chat = json.dumps({"model": "m-openai-ok", "messages": MESSAGES}).encode()
    gemini = b'{"contents": [{"parts": [{"text": "hi"}]}]}'
    return [
        ("POST", "/v1/chat/completions", {"authorization": f"Bearer {wrong}"}, chat),
        ("POST", "/v1/chat/completions", {"authorization": f"Basic {wrong}"}, chat),
        ("POST", "/v1/messages", {"x-api-key": wrong}, chat),
        ("POST", f"/v1beta/models/m-gemini-ok:generateContent?key={wrong}", {}, gemini),
        ("POST", "/v1beta/models/m-gemini-ok:generateContent", {"x-goog-api-key": wrong},
         gemini),
        ("GET", f"/v1beta/models?key={wrong}", {}, b""),
        ("GET", "/v1/models", {"authorization": f"Bearer {wrong}"}, b""),
        ("GET", "/v1/stats", {"authorization": f"Bearer {user}"}, b""),  # not an admin
        ("POST", "/v1/chat/completions", {"authorization": f"Bearer {user}"}, b"{not json"),
        ("POST", "/v1/chat/completions", {"authorization": f"Bearer {user}"},
         json.dumps({"model": "m-openai-ok", "messages": wrong}).encode()),
        ("POST", f"/v1/chat/completions?key={user}", {"authorization": f"Bearer {user}"},
         json.dumps({"model": "m-openai-ok", "messages": MESSAGES}).encode()),
        ("POST", f"/v1/nowhere?key={user}", {"authorization": f"Bearer {user}"}, b"{}"),
        ("POST", "/v1beta/models/m-gemini-ok:nonsense", {"x-goog-api-key": user}, gemini),
    ]


def _settled(gw, limit: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    queue = gw.gateway.stats
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and (
            queue.added == 0 or queue.written + queue.dropped + queue.failed < queue.added):
        time.sleep(0.05)


def _wait_for(capfd, captured: list[str], text: str, limit: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while True:
        out, err = capfd.readouterr()
        captured += [out, err]
        if text in "".join(captured) or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def test_no_canary_anywhere_after_traffic(backend, caplog, capfd, tmp_path):
    caplog.set_level(logging.DEBUG)  # the root logger: every logger, debug on
    places: list[tuple[str, bytes | str]] = []
    captured: list[str] = []
    failing = Failing()
    ok, bad = FakeUpstream(success), FakeUpstream(failing)
    password = quote(PROXY_PASSWORD.value, safe="")
    good = HttpConnectProxy(username=PROXY_USER, password=PROXY_PASSWORD.value)
    echo = EchoProxy()
    socks = Socks5Proxy(username=PROXY_USER, password="not-the-canary")
    redis_password = quote(REDIS_PASSWORD.value, safe="")
    try:
        proxies = {"proxied-ok": f"http://{PROXY_USER}:{password}@127.0.0.1:{good.port}",
                   "proxied-echo": f"http://{PROXY_USER}:{password}@127.0.0.1:{echo.port}",
                   "proxied-socks": f"socks5://{PROXY_USER}:{password}@127.0.0.1:{socks.port}",
                   "proxied-dead": f"http://{PROXY_USER}:{password}@127.0.0.1:{dead_port()}"}
        conf = traffic_config(ok, bad, proxies)
        dead_redis = parse_redis_url(f"redis://:{redis_password}@127.0.0.1:{dead_port()}")
        with run_gateway(conf, backend=backend, redis=dead_redis,
                         stats_store=StoreConfig(path=str(tmp_path / "s.db"))) as gw, \
                httpx.Client(base_url=gw.url, timeout=30) as client:
            answered = 0
            for model in _models():
                for stream in (False, True):
                    for method, target, headers, body in _requests(model, stream):
                        r = client.request(method, target, headers=headers, json=body)
                        where = (f"answer to {method} {target.split('?')[0]} "
                                 f"({model}, stream={stream}): {r.status_code}")
                        places.append((where, str(r.headers).encode() + r.content))
                        answered += r.status_code == 200
            for method, target, headers, body in _wrong_and_malformed():
                r = client.request(method, target, headers=headers, content=body)
                where = (f"answer to {method} {target.split('?')[0]} (wrong key or "
                         f"malformed): {r.status_code}")
                places.append((where, r.content))
            for junk in (b"{not json", USER_KEY.value.encode()):
                places.append(("answer to a raw request with junk", gw.raw(
                    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    b"Authorization: Bearer " + WRONG_KEY.value.encode() + b"\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(junk) + junk)))
            _wait_for(capfd, captured, "shared state")
            _settled(gw)
            admin = {"authorization": f"Bearer {ADMIN_KEY.value}"}
            for target in ("/v1/stats", "/metrics", "/v1/token_usage", "/v1/models",
                           "/v1beta/models", "/healthz"):
                r = client.get(target, headers=admin)
                assert r.status_code == 200, (target, r.text)
                places.append((f"GET {target} (admin)", r.content))
        for name in os.listdir(tmp_path):
            if name.startswith("s.db"):
                places.append((f"stats store file {name}", (tmp_path / name).read_bytes()))
    finally:
        for fake in (ok, bad, good, echo, socks):
            fake.close()
    out, err = capfd.readouterr()
    captured += [out, err]
    places.append(("stdout/stderr", "".join(captured)))
    places.append(("log records", gateway_logs(caplog)))

    # the traffic reached every position, and was answered as the fakes meant
    assert answered >= 40, answered
    reached = {s.path.split("/")[1] for s in ok.seen + bad.seen}
    assert reached >= {"openai", "anthropic", "azure", "gemini", "vertex", "aws", "proxied"}
    assert any(s.path.endswith("/token") for s in ok.seen)  # the canary key signed a JWT
    assert any(s.headers.get("authorization") == f"Bearer {VERTEX_TOKEN.value}"
               for s in ok.seen + bad.seen)
    assert good.tunnels >= 1 and (PROXY_USER, PROXY_PASSWORD.value) in echo.auth
    assert socks.auth and socks.auth[0] == (PROXY_USER, PROXY_PASSWORD.value)
    assert "shared state" in "".join(captured)  # the dead Redis was said, without its password
    assert any(b"***" + OPENAI_KEY.value[-4:].encode() in blob  # masked, not dropped
               for _, blob in places if isinstance(blob, bytes))

    hits = [h for where, blob in places for h in find(where, blob)]
    # what each upstream received: its own credential, nothing else
    for s in ok.seen + bad.seen:
        foreign = [c for c in CANARIES if c not in OWN.get(s.path.split("/")[1], [])]
        received = f"{s.method} {s.path}\n{json.dumps(s.headers)}\n".encode() + s.body
        hits += find(f"what the upstream received for {s.method} {s.path}", received, foreign)
    assert hits == [], report(hits)


def test_no_canary_when_redis_quotes_the_password_back(backend, caplog, capfd):
    """The shared-state server answers every command with an error quoting it (AUTH's
    password too): the link's lines on stderr and the answers stay clean."""
    caplog.set_level(logging.DEBUG)
    captured: list[str] = []
    ok = FakeUpstream(success)
    password = quote(REDIS_PASSWORD.value, safe="")
    places: list[tuple[str, bytes | str]] = []
    try:
        with EchoRedis() as redis:
            conf = ("providers:" + _providers(ok.url, "ok")
                    + f"api_keys:\n  - api: {USER_KEY.value}\n")
            target = parse_redis_url(f"redis://{REDIS_USER}:{password}@127.0.0.1:{redis.port}/3")
            with run_gateway(conf, backend=backend, redis=target) as gw:
                for model in ("m-openai-ok", "m-gemini-ok"):
                    r = httpx.post(gw.url + "/v1/chat/completions", timeout=30,
                                   headers={"authorization": f"Bearer {USER_KEY.value}"},
                                   json={"model": model, "messages": MESSAGES})
                    assert r.status_code == 200, r.text
                    places.append((f"answer for {model}", r.content))
                _wait_for(capfd, captured, "shared state")
            assert any(REDIS_PASSWORD.value.encode() in b" ".join(args)
                       for args in redis.received)  # the password was sent, and quoted back
    finally:
        ok.close()
    captured += list(capfd.readouterr())
    assert "shared state" in "".join(captured)
    places += [("stdout/stderr", "".join(captured)), ("log records", gateway_logs(caplog))]
    hits = [h for where, blob in places for h in find(where, blob)]
    assert hits == [], report(hits)


# -- config errors ------------------------------------------------------------------------------

def _bad_configs(port: int) -> dict[str, str]:
    """api.yaml mistakes, each with canaries where they do not belong (or do, but broken)."""
    key, user, pem = OPENAI_KEY.value, USER_KEY.value, PEM.replace("\n", "\\n")
    pw = quote(PROXY_PASSWORD.value, safe="")
    base = f"http://127.0.0.1:{port}/v1/chat/completions"
    return {
        "api as a mapping": f"providers:\n  - provider: a\n    base_url: {base}\n"
                            f"    api: {{{key}: 1}}\n    model: [m]\napi_keys:\n  - api: {user}\n",
        "api with a missing space": f"providers:\n  - provider: a\n    base_url: {base}\n"
                                    f"    api:{key}\n    model: [m]\napi_keys:\n  - api: {user}\n",
        "the key as a list item": f"providers:\n  - provider: a\n    base_url: {base}\n"
                                  f"    api: [{key}, [x]]\n    model: [m]\n"
                                  f"api_keys:\n  - {user}\n",
        "the key as a YAML key": f"providers:\n  - provider: a\n    base_url: {base}\n"
                                 f"    {key}: true\n    model: [m]\n"
                                 f"api_keys:\n  - {user}: x\n",
        "an unterminated quote": f"providers:\n  - provider: a\n    base_url: {base}\n"
                                 f"    api: \"{key}\n    model: [m]\napi_keys:\n  - api: {user}\n",
        "a tab": f"providers:\n  - provider: a\n\tapi: {key}\napi_keys:\n  - api: {user}\n",
        "bad indentation": f"providers:\n  - provider: a\n    api: {key}\n   model: [m]\n"
                           f"api_keys:\n  - api: {user}\n",
        "a bad private_key": f"providers:\n  - provider: v\n    engine: vertex\n"
                             f"    project_id: p\n    client_email: {EMAIL}\n"
                             f"    private_key: '{pem[:-60]}{GEMINI_KEY.value}'\n"
                             f"    model: [m]\napi_keys:\n  - api: {user}\n",
        "bad proxy URLs": f"providers:\n  - provider: a\n    base_url: {base}\n    api: {key}\n"
                          f"    model: [m]\n    preferences:\n"
                          f"      proxy: https://{PROXY_USER}:{pw}@127.0.0.1:3128\n"
                          f"  - provider: b\n    base_url: {base}\n    api: {key}\n"
                          f"    model: [m]\n    preferences:\n"
                          f"      proxy: http://{PROXY_USER}:{pw}@127.0.0.1:notaport\n"
                          f"  - provider: c\n    base_url: {base}\n    api: {key}\n"
                          f"    model: [m]\n    preferences:\n"
                          f"      proxy: socks4://{PROXY_USER}:{pw}@127.0.0.1\n"
                          f"  - provider: d\n    base_url: {base}\n    api: {key}\n"
                          f"    model: [m]\n    preferences:\n"
                          f"      proxy: http://{PROXY_USER}:{pw}\n"
                          f"  - provider: e\n    base_url: {base}\n    api: {key}\n"
                          f"    model: [m]\n    preferences:\n"
                          f"      proxy: http://{PROXY_USER}:{pw}@127.0.0.1/path\n"
                          f"api_keys:\n  - api: {user}\n",
        "bad aws keys": f"providers:\n  - provider: aws\n    engine: aws\n    base_url: {base}\n"
                        f"    aws_access_key: [{AWS_ACCESS.value}]\n"
                        f"    aws_secret_key: {{{AWS_SECRET.value}: 1}}\n"
                        f"    aws_session_token: {AWS_SESSION.value}\n    model: [m]\n"
                        f"api_keys:\n  - api: {user}\n",
        "a rate limit holding the key": f"providers:\n  - provider: a\n    base_url: {base}\n"
                                        f"    api: {key}\n    model: [m]\napi_keys:\n"
                                        f"  - api: {user}\n    preferences:\n"
                                        f"      rate_limit: {ADMIN_KEY.value}\n",
        "bad weights naming a key": f"providers:\n  - provider: a\n    base_url: {base}\n"
                                    f"    api: {key}\n    model: [m]\napi_keys:\n"
                                    f"  - api: {user}\n    model:\n"
                                    f"      - {ADMIN_KEY.value}: many\n",
    }


def _bad_redis_urls() -> dict[str, str]:
    pw, raw = quote(REDIS_PASSWORD.value, safe=""), REDIS_PASSWORD.value
    return {
        "a bad port": f"redis://:{pw}@127.0.0.1:notaport",
        "a bad db": f"redis://{REDIS_USER}:{pw}@127.0.0.1:6379/x",
        "a raw '/' in the password": f"redis://:{raw}@127.0.0.1:6379",
        "an unknown scheme": f"http://:{pw}@127.0.0.1:6379",
        "whitespace": f"redis://:{pw}@127.0.0.1 :6379",
        "an unclosed IPv6 host": f"redis://:{pw}@[::1:6379",
        "a fragment": f"redis://:{pw}@127.0.0.1:6379#x",
        "an unknown query parameter": f"redis://:{pw}@127.0.0.1:6379?password={pw}",
        "a unix password twice": f"unix:///tmp/redis.sock?password={pw}&password={pw}",
        "a unix URL with a host and password": f"unix://:{pw}@host/tmp/redis.sock",
        "the host forgotten": f"redis://{REDIS_USER}:{pw}",
    }


def test_no_canary_in_config_errors(tmp_path):
    texts: list[tuple[str, str]] = []
    for name, text in _bad_configs(dead_port()).items():
        loaded, message = load_checked(text, "api.yaml")
        assert message, name
        texts.append((f"load_checked, {name}{' (loaded)' if loaded else ''}", message))
        if loaded is not None:
            texts.append((f"uniapi check's summary, {name}",
                          render_summary(loaded.config, loaded.warnings)))
    parser = module_parser("trio")
    for name, url in _bad_redis_urls().items():
        for how, argv, env in (("--redis-url", ["--redis-url", url], {}),
                               ("REDIS_URL", [], {"REDIS_URL": url})):
            args = parser.parse_args(["--config", "api.yaml", *argv])
            with pytest.raises(ValueError) as exc:
                launch(args, env)
            texts.append((f"launch with {how}, {name}", str(exc.value)))
    hits = [h for where, text in texts for h in find(where, text)]
    assert hits == [], report(hits)


# -- crash output --------------------------------------------------------------------------------

def _good_config(port: int) -> str:
    return ("providers:" + _providers(f"http://127.0.0.1:{port}", "ok")
            + _proxied("proxied", f"http://127.0.0.1:{port}",
                       f"http://{PROXY_USER}:{quote(PROXY_PASSWORD.value, safe='')}@127.0.0.1:1")
            + f"api_keys:\n  - api: {ADMIN_KEY.value}\n    role: admin\n"
            f"  - api: {USER_KEY.value}\n")


def _run(args: list[str], env: dict[str, str] | None = None, timeout: float = 60
         ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, check=False,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("module", ["uniapi_trio", "uniapi_asyncio"])
def test_no_canary_in_command_output(module, tmp_path):
    port = dead_port()
    good, broken = tmp_path / "good.yaml", tmp_path / "broken.yaml"
    good.write_text(_good_config(port))
    broken.write_text("\n\n".join(_bad_configs(port).values()).replace(
        "\napi_keys:", "\nx_api_keys:"))
    bad_yaml = tmp_path / "bad_yaml.yaml"
    bad_yaml.write_text(_bad_configs(port)["an unterminated quote"])
    pw = quote(REDIS_PASSWORD.value, safe="")
    outputs: list[tuple[str, subprocess.CompletedProcess]] = []
    cli = f"{module}.cli" if module == "uniapi_trio" else "uniapi_trio.cli"
    outputs.append(("check (good)", _run([cli, "check", str(good)])))
    outputs.append(("check (broken)", _run([cli, "check", str(broken)])))
    outputs.append(("check (bad YAML)", _run([cli, "check", str(bad_yaml)])))
    for key in (USER_KEY.value, WRONG_KEY.value):
        outputs.append(("route --key …", _run([cli, "route", "--config", str(good), "--key", key,
                                                "--model", "m-openai-ok", "--requests", "2"])))
    serve = [module, "--host", "127.0.0.1", "--port", str(dead_port())]
    outputs.append(("serve (broken config)", _run([*serve, "--config", str(broken)])))
    outputs.append(("serve (bad YAML)", _run([*serve, "--config", str(bad_yaml)])))
    for name, url in _bad_redis_urls().items():
        if name not in ("a bad db", "a raw '/' in the password", "the host forgotten"):
            continue  # launch() sees them all in test_no_canary_in_config_errors
        outputs.append((f"serve (REDIS_URL: {name})",
                        _run([*serve, "--config", str(good)], {"REDIS_URL": url})))
    outputs.append(("serve (--redis-url: a bad port)",
                    _run([*serve, "--config", str(good), "--redis-url",
                          f"redis://:{pw}@127.0.0.1:notaport"])))
    with socket.socket() as taken:  # the port in use: a start-up failure
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        outputs.append(("serve (port taken)", _run([
            module, "--host", "127.0.0.1", "--port", str(taken.getsockname()[1]),
            "--config", str(good)], {"REDIS_URL": f"redis://:{pw}@127.0.0.1:{port}"})))
    outputs.append(("serve (a missing config)", _run([*serve, "--config",
                                                      str(tmp_path / "missing.yaml")])))
    # a serve that starts (dead Redis with a password, debug-level access log) and is stopped
    serving_port = dead_port()
    proc = subprocess.Popen([sys.executable, "-m", module, "--host", "127.0.0.1", "--port",
                             str(serving_port), "--config", str(good), "--log-format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "REDIS_URL": f"redis://:{pw}@127.0.0.1:{port}",
                                 "DB_PATH": str(tmp_path / "serve.db")})
    answers = b""
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"http://127.0.0.1:{serving_port}/healthz", timeout=1)
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        for model in ("m-openai-ok", "m-proxied", "m-vertex-gemini-ok"):
            r = httpx.post(f"http://127.0.0.1:{serving_port}/v1/chat/completions?key="
                           f"{USER_KEY.value}", timeout=30,
                           headers={"authorization": f"Bearer {USER_KEY.value}"},
                           json={"model": model, "messages": MESSAGES})
            answers += r.content
        r = httpx.get(f"http://127.0.0.1:{serving_port}/v1/stats", timeout=10,
                      headers={"authorization": f"Bearer {ADMIN_KEY.value}"})
        answers += r.content
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=5)
    assert "shared state" in err, err
    assert proc.returncode is not None
    hits = find(f"{module} serving: stdout+stderr", out + err) + find(
        f"{module} serving: answers", answers)
    for name, done in outputs:
        assert done.returncode != 0 or name.startswith(("check (good)", "route")), (name, done)
        hits += find(f"{name}: stdout (exit {done.returncode})", done.stdout)
        hits += find(f"{name}: stderr (exit {done.returncode})", done.stderr)
    assert "providers: 7" in outputs[0][1].stdout, outputs[0][1]
    assert hits == [], report(hits)
