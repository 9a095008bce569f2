"""Vertex AI in the core: URLs and bodies per model family, the service-account JWT (checked with
the matching public key), the token cache, and single-flight token fetching across exchanges
driven by an injected clock."""

from __future__ import annotations

import base64
import json
import random
from urllib.parse import parse_qs

import attrs
import pytest

from uniapi_core.config import load_config
from uniapi_core.errors import ClientError, GatewayError
from uniapi_core.request_machine import (TOKEN_TIMEOUT, Notified, Notify, RequestMachine,
                                         StartUpstream, StopUpstream, Watch)
from uniapi_core.gateway import ChatCall, Gateway, Routed
from uniapi_core.http.server import RequestReceived
from uniapi_core.relay import ClientGone, DeadlineReached, SendData, SendHead
from uniapi_core.relay.events import UpstreamData, UpstreamEnded, UpstreamFailed, UpstreamHead
from uniapi_core.errors import UpstreamError
from uniapi_core.routing.plan import Attempt
from uniapi_core.routing.regions import vertex_regions
from uniapi_core.routing.router import Need
from uniapi_core.vendors import detect_engine, gauth, vertex
from uniapi_core.vendors.base import ChatContext
from uniapi_core.vendors.gauth import service_account

from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding, rsa  # noqa: E402

_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = _KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                         serialization.NoEncryption()).decode()
EMAIL = "svc@proj.iam.gserviceaccount.com"
TOKEN_URI = "https://oauth2.example/token"
KEY = "sk-core-vertex"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def config_text(extra: str = "", base_url: str = "") -> str:
    key = PEM.replace("\n", "\\n")
    base = f"    base_url: {base_url}\n" if base_url else ""
    return f"""
providers:
  - provider: vtx
    project_id: proj-1
    client_email: {EMAIL}
    private_key: '{key}'
    token_uri: {TOKEN_URI}
{base}{extra}    model:
      - gemini-2.5-pro: gem
      - claude-sonnet-4@20250514: claude
      - claude-3-5-haiku@20241022: haiku
api_keys:
  - api: {KEY}
"""


def provider(extra: str = "", base_url: str = ""):
    return load_config(config_text(extra, base_url)).config.providers[0]


def ctx(p, model: str, *, stream: bool = False, region: str = "us-east5",
        token: str | None = "tok") -> ChatContext:
    return ChatContext(client_model="m", upstream_model=model, provider=p, api_key=None,
                       stream=stream, include_usage=False, response_id="chatcmpl-x",
                       created=1700000000, entropy=random.Random(0), region=region,
                       access_token=token)


# -- URLs and bodies ------------------------------------------------------------------------------

def test_a_provider_with_project_id_and_no_base_url_is_vertex():
    assert detect_engine(provider()) == "vertex"


@pytest.mark.parametrize("model,stream,region,url", [
    ("gemini-2.5-pro", False, "us-central1",
     "https://us-central1-aiplatform.googleapis.com/v1/projects/proj-1/locations/us-central1/"
     "publishers/google/models/gemini-2.5-pro:generateContent"),
    ("gemini-2.5-pro", True, "europe-west1",
     "https://europe-west1-aiplatform.googleapis.com/v1/projects/proj-1/locations/europe-west1/"
     "publishers/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse"),
    ("gemini-3-pro-preview", False, "global",
     "https://aiplatform.googleapis.com/v1/projects/proj-1/locations/global/"
     "publishers/google/models/gemini-3-pro-preview:generateContent"),
    ("claude-sonnet-4@20250514", False, "us-east5",
     "https://us-east5-aiplatform.googleapis.com/v1/projects/proj-1/locations/us-east5/"
     "publishers/anthropic/models/claude-sonnet-4@20250514:rawPredict"),
    ("claude-sonnet-4@20250514", True, "us-east5",
     "https://us-east5-aiplatform.googleapis.com/v1/projects/proj-1/locations/us-east5/"
     "publishers/anthropic/models/claude-sonnet-4@20250514:streamRawPredict"),
])
def test_urls_per_family(model, stream, region, url):
    ex = vertex.build_exchange({"model": "m", "messages": MESSAGES},
                               ctx(provider(), model, stream=stream, region=region))
    assert ex.request.url == url
    assert ("authorization", "Bearer tok") in ex.request.headers
    assert not any(k in ("x-goog-api-key", "x-api-key", "anthropic-version")
                   for k, _ in ex.request.headers)


@pytest.mark.parametrize("base,origin", [
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("http://127.0.0.1:8080/v1/", "http://127.0.0.1:8080"),
    ("https://gateway.ai.cloudflare.com/v1/acct/gw/google-vertex-ai",
     "https://gateway.ai.cloudflare.com/v1/acct/gw/google-vertex-ai"),
    ("https://aiplatform.googleapis.com/", "https://us-east5-aiplatform.googleapis.com"),
])
def test_base_url_replaces_the_origin(base, origin):
    p = provider(base_url=base)
    ex = vertex.build_exchange({"messages": MESSAGES}, ctx(p, "claude-sonnet-4@20250514"))
    assert ex.request.url == (origin + "/v1/projects/proj-1/locations/us-east5/publishers/"
                              "anthropic/models/claude-sonnet-4@20250514:rawPredict")


def test_gemini_body_is_geminis():
    from uniapi_core.vendors import gemini

    p = provider()
    req = {"model": "m", "messages": MESSAGES, "temperature": 0.5, "max_tokens": 9}
    ex = vertex.build_exchange(req, ctx(p, "gemini-2.5-pro"))
    direct = gemini.build_exchange(req, attrs.evolve(ctx(p, "gemini-2.5-pro"), api_key="k"))
    assert ex.request.body == direct.request.body
    body = json.loads(ex.request.body)
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert all("role" in c for c in body["contents"])


def test_gemini_arguments_streamed_in_pieces_become_whole_calls():
    """Issue 18: Vertex's streamFunctionCallArguments pieces are one tool call per real call
    (docs/vendor-rules.md, GEM-S3), however the bytes are cut."""
    from pathlib import Path

    from uniapi_core.vendors.base import StreamChunk, StreamDone

    data = (Path(__file__).resolve().parents[2] / "data" / "gemini"
            / "stream_partial_args.sse").read_bytes()
    outputs = []
    for size in (len(data), 1, 7):
        ex = vertex.build_exchange({"messages": MESSAGES},
                                   ctx(provider(), "gemini-3-pro-preview", stream=True))
        assert isinstance(ex, vertex.VertexGeminiExchange)
        decoder = ex.stream_decoder()
        items = [i for k in range(0, len(data), size) for i in decoder.feed(data[k:k + size])]
        items += decoder.close()
        assert isinstance(items[-1], StreamDone)
        outputs.append([i.data for i in items if isinstance(i, StreamChunk)])
    assert outputs[0] == outputs[1] == outputs[2]
    deltas = [json.loads(c[6:])["choices"][0] for c in outputs[0]]
    calls = [call for d in deltas for call in d["delta"].get("tool_calls", [])]
    assert [(c["index"], c["function"]["name"], json.loads(c["function"]["arguments"]))
            for c in calls] == [
        (0, "get_weather", {"location": "Boston, MA", "unit": "fahrenheit", "days": 3}),
        (1, "set_thermostat", {"room": "living room", "target": 21.5, "eco": True, "note": None,
                               "schedule": [{"day": "mon", "hour": 7},
                                            {"day": "tue", "hour": 8}]}),
        (2, "get_time", {"tz": "America/New_York"})]
    assert len({c["id"] for c in calls}) == 3 and all(c["id"].startswith("call_") for c in calls)
    assert deltas[-1]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("stream", [False, True])
def test_claude_body_has_vertex_version_and_no_model(stream):
    req = {"model": "m", "messages": MESSAGES, "max_tokens": 100}
    ex = vertex.build_exchange(req, ctx(provider(), "claude-sonnet-4@20250514", stream=stream))
    body = json.loads(ex.request.body)
    assert list(body)[0] == "anthropic_version"
    assert body["anthropic_version"] == "vertex-2023-10-16"
    assert "model" not in body
    assert body["system"] == "Be brief." and body["max_tokens"] == 100
    assert body.get("stream") is (True if stream else None)


def test_claude_google_shaped_error_keeps_googles_message():
    ex = vertex.build_exchange({"messages": MESSAGES}, ctx(provider(), "claude-sonnet-4@x"))
    body = json.dumps([{"error": {"code": 400, "status": "FAILED_PRECONDITION", "message":
                                  "Project proj-1 is not allowed to use Publisher Model"}}])
    err = ex.parse_error(400, (), body.encode())
    assert err.status == 400 and err.code == "FAILED_PRECONDITION"
    assert err.message.startswith("Project proj-1 is not allowed")
    anthropic_shaped = json.dumps({"type": "error", "error": {"type": "overloaded_error",
                                                              "message": "Overloaded"}})
    err = ex.parse_error(529, (), anthropic_shaped.encode())
    assert err.code == "overloaded_error" and err.message == "Overloaded"


def test_a_401_drops_the_token_it_was_sent_with():
    """VTX-T4: the relay says ``TokenRefused`` for a 401 to an attempt carrying a token, and
    the request machine drops that token from the cache (a 403 keeps it)."""
    for status, dropped in ((403, False), (401, True)):
        g, refs = gateway(), Refs()
        key = service_account(g.config.providers[0]).key
        g.tokens.succeed(key, g.tokens.begin(key, 0.0), "ya29.old", 3599, 0.0)
        ex = exchange(g, refs, 0.0)
        (call,) = starts(ex.start(0.0, 1e9))
        assert ("authorization", "Bearer ya29.old") in call.request.headers
        ex.handle(UpstreamHead(call.ref, status, (("content-type", "application/json"),)),
                  0.1, 1e9)
        ex.handle(UpstreamData(call.ref, b'{"error": {"code": 401, "status": "x"}}'), 0.1, 1e9)
        ex.handle(UpstreamEnded(call.ref), 0.1, 1e9)
        assert (g.tokens.current(key) is None) is dropped


def test_client_errors_come_from_the_inner_builders():
    with pytest.raises(ClientError):
        vertex.build_exchange({"messages": MESSAGES, "n": 2},
                              ctx(provider(), "claude-sonnet-4@x"))
    with pytest.raises(GatewayError):
        vertex.build_exchange({"messages": MESSAGES}, ctx(provider(), "gemini-2.5-pro",
                                                          token=None))


@pytest.mark.parametrize("model,regions", [
    ("claude-3-5-sonnet@20240620", ("us-east5", "europe-west1")),
    ("claude-3-7-sonnet@20250219", ("us-east5", "europe-west1")),
    ("claude-sonnet-4@20250514", ("us-east5", "europe-west1", "asia-east1")),
    ("claude-opus-4-1@20250805", ("us-east5", "europe-west1", "asia-east1")),
    ("claude-3-opus@20240229", ("us-east5",)),
    ("claude-3-sonnet@20240229", ("us-east5", "us-central1", "asia-southeast1")),
    ("claude-3-haiku@20240307", ("us-east5", "us-central1", "europe-west1", "europe-west4")),
    ("claude-3-5-haiku@20241022", ("us-east5",)),  # unknown family: uni-api crashes here
    ("gemini-1.5-pro", ("us-central1", "us-east4", "us-west1", "us-west4", "europe-west1",
                        "europe-west2")),
    ("gemini-2.0-flash", ("us-central1",)),
    ("gemini-3-pro-preview", ("global",)),
    ("text-bison", ("global",)),
])
def test_default_regions_per_family(model, regions):
    assert vertex_regions(provider(), model) == regions


def test_configured_regions_win():
    p = provider("    regions: [asia-east1, us-east5, asia-east1]\n")
    assert vertex_regions(p, "gemini-2.5-pro") == ("asia-east1", "us-east5")
    p = provider("    region: europe-west4\n")
    assert vertex_regions(p, "claude-sonnet-4@x") == ("europe-west4",)


# -- the JWT grant --------------------------------------------------------------------------------

def account() -> gauth.ServiceAccount:
    return gauth.service_account(provider())


def test_jwt_verifies_with_the_public_key():
    token = gauth.jwt(account(), 1_700_000_000)
    head, claims, sig = token.split(".")
    _KEY.public_key().verify(_unb64(sig), f"{head}.{claims}".encode("ascii"),
                             padding.PKCS1v15(), hashes.SHA256())
    assert json.loads(_unb64(head)) == {"alg": "RS256", "typ": "JWT"}
    assert json.loads(_unb64(claims)) == {
        "iss": EMAIL, "scope": "https://www.googleapis.com/auth/cloud-platform",
        "aud": TOKEN_URI, "iat": 1_700_000_000, "exp": 1_700_003_600}
    assert "=" not in token


def test_token_request_is_a_form_post():
    req = gauth.token_request(account(), 1_700_000_000.7)
    assert (req.method, req.url) == ("POST", TOKEN_URI)
    assert dict(req.headers)["content-type"] == "application/x-www-form-urlencoded"
    form = parse_qs(req.body.decode())
    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    claims = json.loads(_unb64(form["assertion"][0].split(".")[1]))
    assert claims["iat"] == 1_700_000_000  # the injected wall clock, never skewed forward


def test_default_token_uri_and_missing_fields():
    p = attrs.evolve(provider(), token_uri=None)
    assert gauth.service_account(p).token_uri == "https://oauth2.googleapis.com/token"
    with pytest.raises(GatewayError, match="client_email"):
        gauth.service_account(attrs.evolve(p, client_email=None))


def test_a_bad_key_is_a_clear_error():
    bad = attrs.evolve(account(), private_key="-----BEGIN PRIVATE KEY-----\nxxxxx\n-----END")
    with pytest.raises(GatewayError) as exc:
        gauth.jwt(bad, 0)
    assert exc.value.status == 500 and "private_key" in exc.value.message



@pytest.mark.parametrize("status,body,detail", [
    (400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."},
     "HTTP 400 invalid_grant Invalid JWT Signature."),
    (401, {"error": "invalid_client"}, "HTTP 401 invalid_client"),
    (200, {"token_type": "Bearer"}, "HTTP 200 without an access_token"),
    (500, None, "HTTP 500"),
])
def test_token_answer_failures(status, body, detail):
    raw = b"" if body is None else json.dumps(body).encode()
    with pytest.raises(GatewayError) as exc:
        gauth.parse_token_answer(account(), status, raw)
    assert exc.value.status == 502 and exc.value.code == "vertex_token_failed"
    assert exc.value.message.endswith(detail) and TOKEN_URI in exc.value.message


def test_token_answer():
    assert gauth.parse_token_answer(account(), 200, b'{"access_token":"ya29.a","expires_in":'
                                                    b'3599}') == ("ya29.a", 3599.0)
    assert gauth.parse_token_answer(account(), 200, b'{"access_token":"ya29.a"}')[1] == 3600


# -- the cache ------------------------------------------------------------------------------------

K = ("a@b", TOKEN_URI, gauth.CLOUD_PLATFORM)


def test_cache_margin_is_five_minutes_or_half_the_lifetime():
    c = gauth.TokenCache()
    assert c.state(K, 0.0) == (gauth.IDLE, 0)
    f = c.begin(K, 0.0)
    assert c.state(K, 1.0) == (gauth.FLYING, f)
    c.succeed(K, f, "t1", 3599, 10.0)
    assert c.state(K, 10.0 + 3599 - 300 - 0.001)[0] == gauth.FRESH
    assert c.state(K, 10.0 + 3599 - 300)[0] == gauth.IDLE
    assert c.current(K) == "t1"  # still usable while a refresh runs or fails
    f = c.begin(K, 5000.0)
    c.succeed(K, f, "t2", 10, 5000.0)  # expires_in 10: margin 5
    assert c.state(K, 5004.9)[0] == gauth.FRESH
    assert c.state(K, 5005.0)[0] == gauth.IDLE


def test_cache_failure_backoff_lost_flights_and_invalidation():
    c = gauth.TokenCache(backoff=5.0, flight_timeout=40.0)
    f = c.begin(K, 0.0)
    c.fail(K, f, GatewayError("boom", status=502), 1.0)
    assert c.state(K, 5.9)[0] == gauth.BACKOFF
    assert isinstance(c.current(K), GatewayError)
    assert c.state(K, 6.0)[0] == gauth.IDLE
    f = c.begin(K, 10.0)
    assert c.state(K, 49.9) == (gauth.FLYING, f)
    assert c.state(K, 50.0)[0] == gauth.IDLE  # the owner never reported: lost
    g = c.begin(K, 50.0)
    c.fail(K, f, GatewayError("late"), 51.0)  # the lost flight reporting late changes nothing
    assert c.state(K, 51.0) == (gauth.FLYING, g)
    c.abandon(K, g)
    assert c.state(K, 51.0)[0] == gauth.IDLE
    h = c.begin(K, 52.0)
    c.succeed(K, h, "tok", 3600, 52.0)
    c.invalidate(K, "other")
    assert c.current(K) == "tok"
    c.invalidate(K, "tok")
    assert c.current(K) is None and c.state(K, 53.0)[0] == gauth.IDLE


# -- single flight across exchanges ---------------------------------------------------------------

BODY = json.dumps({"model": "gem", "messages": MESSAGES}).encode()
GEM_ANSWER = json.dumps({"candidates": [{"content": {"role": "model", "parts": [
    {"text": "hey"}]}, "finishReason": "STOP"}]}).encode()


def gateway(**kw) -> Gateway:
    return Gateway(load_config(config_text(**kw)).config, entropy=random.Random(3))


class Refs:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        self.n += 1
        return self.n


def exchange(g: Gateway, refs: Refs, now: float, model: str = "gem") -> RequestMachine:
    body = json.dumps({"model": model, "messages": MESSAGES}).encode()
    req = RequestReceived("POST", "/v1/chat/completions",
                          (("authorization", f"Bearer {KEY}"),
                           ("content-type", "application/json")), body, "1.1")
    return RequestMachine(lambda: g, req, refs, now)


def fetch_key(g: Gateway) -> tuple[str, str, str]:
    return service_account(g.config.providers[0]).key


def starts(actions) -> list[StartUpstream]:
    return [a for a in actions if isinstance(a, StartUpstream)]


def answer_token(ex: RequestMachine, ref: int, now: float, body: bytes, status: int = 200):
    out = ex.handle(UpstreamHead(ref, status, (("content-type", "application/json"),)), now,
                    now)
    out += ex.handle(UpstreamData(ref, body), now, now)
    return out + ex.handle(UpstreamEnded(ref), now, now)


def watch_of(actions) -> Watch:
    (watch,) = [a for a in actions if isinstance(a, Watch)]
    return watch


def token_body(token: str = "ya29.one", expires: int = 3599) -> bytes:
    return json.dumps({"access_token": token, "expires_in": expires}).encode()


def test_gateway_asks_for_the_token_first_and_only_when_not_fresh():
    g = gateway()
    call = g.handle("POST", "/v1/chat/completions", (("authorization", f"Bearer {KEY}"),),
                    BODY, now=0.0, wall=1e9)
    assert isinstance(call, ChatCall)
    routed = g.route_chat(call, {}, 0.0, 1e9)
    assert isinstance(routed, Routed)
    assert [a.client_email for a, _ in routed.accounts] == [EMAIL]
    key = routed.accounts[0][0].key
    g.tokens.succeed(key, g.tokens.begin(key, 0.0), "tok", 3599, 0.0)
    routed = g.route_chat(call, {}, 1.0, 1e9)
    assert isinstance(routed, Routed) and routed.accounts == ()


def test_one_token_fetch_for_many_requests_and_refresh_after_expiry():
    g, refs = gateway(), Refs()
    first = exchange(g, refs, 0.0)
    out = first.start(0.0, 1e9)
    (fetch,) = starts(out)
    assert fetch.request.url == TOKEN_URI
    others = [exchange(g, refs, 0.01 * i) for i in range(1, 5)]
    watches = []
    for ex in others:
        out = ex.start(0.05, 1e9)
        assert starts(out) == []  # waiting on the same flight: no poll, a watch
        watches.append(watch_of(out))
        assert watches[-1].key == fetch_key(g)
        assert ex.next_deadline() == pytest.approx(0.05 + TOKEN_TIMEOUT)
    out = answer_token(first, fetch.ref, 0.2, token_body())
    assert Notify(fetch_key(g)) in out
    (model_call,) = starts(out)
    assert model_call.request.url.endswith(":generateContent")
    assert ("authorization", "Bearer ya29.one") in model_call.request.headers
    for ex, watch in zip(others, watches):
        out = ex.handle(Notified(watch.ref), 0.21, 1e9)
        (call,) = starts(out)
        assert ("authorization", "Bearer ya29.one") in call.request.headers
    # cached until 5 minutes before expiry
    late = exchange(g, refs, 3000.0)
    (call,) = starts(late.start(3000.0, 1e9))
    assert call.request.url.endswith(":generateContent")
    stale = exchange(g, refs, 0.2 + 3599 - 300)
    (refresh,) = starts(stale.start(0.2 + 3599 - 300, 1e9))
    assert refresh.request.url == TOKEN_URI


def test_a_waiter_takes_over_when_the_fetcher_leaves():
    g, refs = gateway(), Refs()
    first, second = exchange(g, refs, 0.0), exchange(g, refs, 0.0)
    (fetch,) = starts(first.start(0.0, 1e9))
    watch = watch_of(second.start(0.0, 1e9))
    out = first.handle(ClientGone(), 0.1, 1e9)
    assert StopUpstream(fetch.ref) in out and Notify(watch.key) in out and first.finished
    (again,) = starts(second.handle(Notified(watch.ref), 0.1, 1e9))
    assert again.request.url == TOKEN_URI
    (call,) = starts(answer_token(second, again.ref, 0.3, token_body()))
    assert call.request.url.endswith(":generateContent")
    # events for the gone fetcher's ref change nothing
    assert first.handle(UpstreamEnded(fetch.ref), 0.4, 1e9) == []


def test_a_lost_notification_costs_time_never_a_hang():
    """A waiter whose Notify never comes looks again at TOKEN_TIMEOUT: by then the flight is
    over (or stale) and it fetches itself."""
    g, refs = gateway(), Refs()
    first, second = exchange(g, refs, 0.0), exchange(g, refs, 0.0)
    (fetch,) = starts(first.start(0.0, 1e9))
    watch = watch_of(second.start(0.0, 1e9))
    out = first.handle(UpstreamFailed(fetch.ref, "connect", "refused"), 0.1, 1e9)
    assert Notify(watch.key) in out  # ... which the transport loses
    assert second.next_deadline() == TOKEN_TIMEOUT
    out = second.handle(DeadlineReached(), TOKEN_TIMEOUT, 1e9)
    assert StopUpstream(watch.ref) in out
    (again,) = starts(out)  # the backoff is over: a new fetch
    assert again.request.url == TOKEN_URI


def test_a_waiter_leaving_changes_nothing():
    g, refs = gateway(), Refs()
    first, second = exchange(g, refs, 0.0), exchange(g, refs, 0.0)
    (fetch,) = starts(first.start(0.0, 1e9))
    watch = watch_of(second.start(0.0, 1e9))
    assert StopUpstream(watch.ref) in second.handle(ClientGone(), 0.05, 1e9)
    assert second.finished and second.next_deadline() is None
    (call,) = starts(answer_token(first, fetch.ref, 0.1, token_body()))
    assert call.request.url.endswith(":generateContent")


def error_of(actions) -> tuple[int, dict]:
    head = next(a for a in actions if isinstance(a, SendHead))
    data = b"".join(a.data for a in actions if isinstance(a, SendData))
    return head.status, json.loads(data)


def test_failed_fetch_fails_every_waiter_with_a_502_then_backs_off():
    g, refs = gateway(), Refs()
    first, second = exchange(g, refs, 0.0), exchange(g, refs, 0.0)
    (fetch,) = starts(first.start(0.0, 1e9))
    watch = watch_of(second.start(0.0, 1e9))
    out = answer_token(first, fetch.ref, 0.1, json.dumps(
        {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}).encode(),
        status=400)
    status, body = error_of(out)
    assert status == 502 and body["error"]["code"] == "vertex_token_failed"
    assert TOKEN_URI in body["error"]["message"]
    assert "Invalid JWT Signature." in body["error"]["message"]
    status, body = error_of(second.handle(Notified(watch.ref), 0.1, 1e9))
    assert status == 502 and body["error"]["code"] == "vertex_token_failed"
    # within the backoff: no new fetch, the same answer at once
    third = exchange(g, refs, 1.0)
    out = third.start(1.0, 1e9)
    assert starts(out) == [] and error_of(out)[0] == 502
    # after it: a new fetch
    fourth = exchange(g, refs, 10.0)
    (again,) = starts(fourth.start(10.0, 1e9))
    assert again.request.url == TOKEN_URI


def test_token_fetch_connection_failure_and_timeout():
    g, refs = gateway(), Refs()
    first = exchange(g, refs, 0.0)
    (fetch,) = starts(first.start(0.0, 1e9))
    out = first.handle(UpstreamFailed(fetch.ref, "connect", "connection refused"), 0.1, 1e9)
    status, body = error_of(out)
    assert status == 502 and "connection refused" in body["error"]["message"]
    g, refs = gateway(), Refs()
    first = exchange(g, refs, 0.0)
    (fetch,) = starts(first.start(0.0, 1e9))
    assert first.next_deadline() == TOKEN_TIMEOUT
    out = first.handle(DeadlineReached(), TOKEN_TIMEOUT, 1e9)
    assert StopUpstream(fetch.ref) in out
    status, body = error_of(out)
    assert status == 502 and f"no answer within {TOKEN_TIMEOUT:g} s" in body["error"]["message"]


def test_bad_private_key_is_a_500_without_any_fetch():
    text = config_text().replace(PEM.replace("\n", "\\n"), "-----BEGIN PRIVATE KEY-----")
    g = Gateway(load_config(text).config, entropy=random.Random(0))
    ex = exchange(g, Refs(), 0.0)
    out = ex.start(0.0, 1e9)
    assert starts(out) == []
    status, body = error_of(out)
    assert status == 500 and "private_key" in body["error"]["message"]


def test_explain_route_names_regions():
    g = gateway()
    text = g.explain_route(KEY, "claude", requests=2, now=0.0)
    assert "vtx → claude-sonnet-4@20250514 region us-east5" in text
    assert "vtx → claude-sonnet-4@20250514 region europe-west1" in text


# -- regions as routing slots ---------------------------------------------------------------------

def run_plan(g: Gateway, model: str, now: float, statuses: list[int | None]):
    """One request: each attempt fails with the next status (None: succeeds)."""
    key = g.config.api_keys[0]
    def build(c, i, n):
        return Attempt(number=n, provider=c.provider.provider, upstream_model=c.upstream_model,
                       key_index=i, exchange=None, timeout=1.0)

    plan = g.router.plan(key, "k", model, Need(), now, random.Random(0), build)
    regions, failure = [], None
    for status in statuses:
        a = plan.next_attempt(now, failure)
        if a is None:
            break
        regions.append(vertex_regions(plan.channels[0].provider, a.upstream_model)[a.key_index])
        failure = None if status is None else UpstreamError("x", upstream_status=status)
        plan.attempt_finished(a, now, failure)
        if failure is None:
            break
    return regions


def test_429_tries_the_next_region_and_benches_it_for_60_s():
    g = gateway()
    assert run_plan(g, "claude", 0.0, [None]) == ["us-east5"]
    assert run_plan(g, "claude", 0.0, [429, None]) == ["europe-west1", "asia-east1"]
    # europe-west1 is benched: the rotation skips it until 60 s later
    assert run_plan(g, "claude", 1.0, [None]) == ["us-east5"]
    assert run_plan(g, "claude", 2.0, [None]) == ["asia-east1"]
    assert run_plan(g, "claude", 3.0, [None]) == ["us-east5"]
    assert run_plan(g, "claude", 60.0, [None]) == ["europe-west1"]


def test_403_is_the_credentials_and_cools_the_channel():
    g = gateway()
    assert run_plan(g, "claude", 0.0, [403, None]) == ["us-east5"]  # no other channel
    assert g.router.cooldowns.until("vtx", "claude", 1.0) is not None


def test_api_key_cooldown_period_zero_turns_region_benches_off():
    g = gateway(extra="    preferences:\n      api_key_cooldown_period: 0\n")
    assert run_plan(g, "claude", 0.0, [429, None]) == ["us-east5", "europe-west1"]
    assert run_plan(g, "claude", 1.0, [None]) == ["asia-east1"]
    assert run_plan(g, "claude", 2.0, [None]) == ["us-east5"]


def test_cryptography_is_loaded_only_when_a_vertex_key_is():
    """Its OpenSSL bindings cost ~7 MB of RSS: a gateway without Vertex must not load them."""
    import subprocess
    import sys

    code = ("import sys, uniapi_core.gateway, uniapi_core.config, uniapi_core.demo as d\n"
            "uniapi_core.config.load_config(d.demo_config('http://127.0.0.1:1'))\n"
            "assert 'cryptography' not in sys.modules, 'loaded without a Vertex provider'\n"
            "from uniapi_core.pemkey import load_private_key\n"
            "try:\n    load_private_key('x')\nexcept Exception:\n    pass\n"
            "assert 'cryptography' in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
