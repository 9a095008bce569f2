"""End to end through outbound proxies: client → gateway → HTTP CONNECT or SOCKS5 proxy → fake
upstream, on both backends.

The upstream's name (``upstream.test``) resolves nowhere but inside the fake proxies, so every
passing request also proves the gateway sent the name to the proxy instead of resolving it.
"""

from __future__ import annotations

import json
import socket
import ssl
from urllib.parse import quote

import httpx
import pytest

from tests.fakes.proxy import HttpConnectProxy, Socks5Proxy
from tests.fakes.tls import make_cert
from tests.fakes.upstream import FakeUpstream, json_reply, sse_reply
from tests.harness import run_gateway
from uniapi_core.relay import UpstreamData, UpstreamEnded, UpstreamFailed, UpstreamHead
from uniapi_core.vendors.base import UpstreamRequest

KEY = "sk-test-key-0001"
NAME = "upstream.test"
PASSWORD = "p@ss:w/rd%20!"
COMPLETION = {
    "id": "chatcmpl-up", "object": "chat.completion", "created": 1735689600, "model": "gpt-4o",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
MESSAGES = [{"role": "user", "content": "hello"}]




def provider(name: str, url: str, model: str, proxy: str | None = None) -> str:
    prefs = f"\n    preferences:\n      proxy: {json.dumps(proxy)}" if proxy else ""
    return f"""
  - provider: {name}
    base_url: {url}/v1/chat/completions
    api: sk-upstream-{name}
    model:
      - {model}{prefs}
"""


def config(*providers: str, global_proxy: str | None = None) -> str:
    prefs = f"\npreferences:\n  proxy: {json.dumps(global_proxy)}\n" if global_proxy else ""
    return f"providers:{''.join(providers)}\napi_keys:\n  - api: {KEY}\n{prefs}"


def named(up: FakeUpstream) -> str:
    return f"http://{NAME}:{up.port}"


def chat(gw, model: str = "gpt-4o", **extra) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.post(f"{gw.url}/v1/chat/completions", timeout=15,
                      headers={"authorization": f"Bearer {KEY}"},
                      json={"model": model, "messages": MESSAGES, **extra})


def creds_url(proxy, user: str, password: str) -> str:  # type: ignore[no-untyped-def]
    return proxy.url(quote(user, safe=""), quote(password, safe=""))


def test_http_connect_proxy_carries_requests_on_one_tunnel(backend, up):
    up.replies += [json_reply(COMPLETION), sse_reply([{
        "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
        "choices": [{"index": 0, "delta": {"content": "streamed"}, "finish_reason": "stop"}]}])]
    with HttpConnectProxy(hosts={NAME: "127.0.0.1"}) as proxy, run_gateway(
            config(provider("p", named(up), "gpt-4o", proxy.url())), backend=backend) as gw:
        client = gw.openai(KEY)
        resp = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert resp.choices[0].message.content == "hi"
        chunks = list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES,
                                                     stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
            "streamed"
        assert proxy.tunnels == 1  # the tunnelled connection was pooled and reused
        assert proxy.targets == [f"{NAME}:{up.port}"] and proxy.auth == [None]
    assert len(up.seen) == 2 and up.connections == 1
    assert up.seen[0].headers["host"] == f"{NAME}:{up.port}"
    assert up.seen[0].path == "/v1/chat/completions"
    assert up.seen[0].headers["authorization"] == "Bearer sk-upstream-p"


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
def test_socks5_proxy_with_username_and_password(backend, up, scheme):
    up.replies.append(json_reply(COMPLETION))
    with Socks5Proxy(username="alice", password=PASSWORD, hosts={NAME: "127.0.0.1"}) as proxy:
        url = creds_url(proxy, "alice", PASSWORD).replace("socks5://", f"{scheme}://")
        with run_gateway(config(provider("p", named(up), "gpt-4o", url)),
                         backend=backend) as gw:
            resp = chat(gw)
            assert resp.status_code == 200, resp.text
            assert resp.json()["choices"][0]["message"]["content"] == "hi"
        assert proxy.auth == [("alice", PASSWORD)]
        assert proxy.targets == [f"{NAME}:{up.port}"] and proxy.tunnels == 1
    assert up.seen[0].json()["model"] == "gpt-4o"


def test_socks5_proxy_sends_ip_literals_as_addresses(backend, up):
    up.replies.append(json_reply(COMPLETION))
    with Socks5Proxy() as proxy, run_gateway(
            config(provider("p", up.url, "gpt-4o", proxy.url())), backend=backend) as gw:
        assert chat(gw).status_code == 200
        assert proxy.targets == [f"127.0.0.1:{up.port}"] and proxy.auth == [None]


def test_global_proxy_and_a_provider_override(backend, up):
    up.replies += [json_reply(COMPLETION), json_reply(COMPLETION)]
    with HttpConnectProxy(hosts={NAME: "127.0.0.1"}) as http_proxy, \
            Socks5Proxy(hosts={NAME: "127.0.0.1"}) as socks_proxy:
        text = config(provider("inherits", named(up), "gpt-4o"),
                      provider("own", named(up), "gpt-4o-mini", socks_proxy.url()),
                      global_proxy=http_proxy.url())
        with run_gateway(text, backend=backend) as gw:
            assert chat(gw, "gpt-4o").status_code == 200
            assert (http_proxy.tunnels, socks_proxy.tunnels) == (1, 0)
            assert chat(gw, "gpt-4o-mini").status_code == 200
            assert (http_proxy.tunnels, socks_proxy.tunnels) == (1, 1)
    assert [s.headers["authorization"] for s in up.seen] == [
        "Bearer sk-upstream-inherits", "Bearer sk-upstream-own"]


@pytest.mark.parametrize("kind", ["http", "socks5"])
def test_proxy_refusing_credentials_is_a_502_without_the_password(backend, up, kind):
    fake = HttpConnectProxy if kind == "http" else Socks5Proxy
    with fake(username="alice", password="right", hosts={NAME: "127.0.0.1"}) as proxy, \
            run_gateway(config(provider("p", named(up), "gpt-4o",
                                        creds_url(proxy, "alice", PASSWORD))),
                        backend=backend) as gw:
        resp = chat(gw)
        assert proxy.tunnels == 0 and proxy.auth and proxy.auth[0] == ("alice", PASSWORD)
    assert resp.status_code == 502
    err = resp.json()["error"]
    assert err["code"] == "upstream_unreachable"
    assert f"proxy {kind}://127.0.0.1:{proxy.port}: " in err["message"]
    assert ("407 Proxy Authentication Required" if kind == "http"
            else "rejected the user name and password") in err["message"]
    assert PASSWORD not in resp.text and quote(PASSWORD, safe="") not in resp.text
    assert up.seen == []


def test_dead_proxy_fails_cleanly_and_the_server_keeps_serving(backend, up):
    up.replies.append(json_reply(COMPLETION))
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"socks5://alice:{quote(PASSWORD, safe='')}@127.0.0.1:{s.getsockname()[1]}"
    text = config(provider("dead", named(up), "gpt-4o", dead),
                  provider("direct", up.url, "other-model"))
    with run_gateway(text, backend=backend) as gw:
        for _ in range(2):
            resp = chat(gw, "gpt-4o")
            assert resp.status_code == 502
            err = resp.json()["error"]
            assert err["code"] == "upstream_unreachable"
            assert "proxy socks5://127.0.0.1:" in err["message"]
            assert "cannot connect: connection refused" in err["message"]
            assert PASSWORD not in resp.text and "alice" not in resp.text
            if not up.seen:
                ok = chat(gw, "other-model")
                assert ok.status_code == 200, ok.text
        assert httpx.get(f"{gw.url}/healthz").status_code == 200
    assert len(up.seen) == 1


@pytest.mark.parametrize("bad, fragment", [
    ("socks4://alice:" + PASSWORD + "@127.0.0.1:1080", "unsupported proxy scheme 'socks4'"),
    ("https://alice:secret@127.0.0.1:3128", "https:// proxies"),
    ("http://alice:secret@", "no proxy host"),
])
def test_bad_proxy_url_is_a_502(backend, up, bad, fragment):
    with run_gateway(config(provider("p", up.url, "gpt-4o", bad)), backend=backend) as gw:
        resp = chat(gw)
    assert resp.status_code == 502
    assert f"bad proxy URL: {fragment}" in resp.json()["error"]["message"]
    assert "secret" not in resp.text and PASSWORD not in resp.text and "alice" not in resp.text
    assert up.seen == []


# -- TLS to the origin inside the tunnel (the pool on its own: it must trust a test CA) ----------


class TlsUpstream(FakeUpstream):
    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__()

    def _serve(self, sock: socket.socket) -> None:
        try:
            sock.settimeout(5)
            tls = self._context.wrap_socket(sock, server_side=True)
            tls.settimeout(None)
        except (OSError, ssl.SSLError):
            sock.close()
            return
        super()._serve(tls)


def run_pool(backend: str, request: UpstreamRequest, proxy: str,
             client_context: ssl.SSLContext) -> list[object]:
    events: list[object] = []

    async def post(ev: object) -> None:
        events.append(ev)

    if backend == "trio":
        import trio

        from uniapi_trio.upstream import UpstreamPool as TrioPool

        async def trio_main() -> None:
            pool = TrioPool()
            pool._ssl = client_context
            await pool.run(request, proxy, post)
            await pool.aclose()

        trio.run(trio_main)
    else:
        import asyncio

        from uniapi_asyncio.upstream import UpstreamPool as AsyncioPool

        async def asyncio_main() -> None:
            pool = AsyncioPool()
            pool._ssl = client_context
            await pool.run(request, proxy, post)
            await pool.aclose()

        asyncio.run(asyncio_main())
    return events


@pytest.mark.parametrize("kind", ["http", "socks5"])
def test_tls_origin_through_the_tunnel(backend, kind, tmp_path):
    cert, key = make_cert(tmp_path)  # for localhost and 127.0.0.1 only
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=cert)
    client_context.set_alpn_protocols(["http/1.1"])
    body = json.dumps(COMPLETION).encode() * 4000  # ~1 MB: many TLS records, flow control
    up = TlsUpstream(server_context)
    up.handler = lambda seen: json_reply({"echo": seen.json(), "pad": body.decode()})
    fake = HttpConnectProxy if kind == "http" else Socks5Proxy
    try:
        with fake(hosts={"localhost": "127.0.0.1", NAME: "127.0.0.1"}) as proxy:
            request = UpstreamRequest("POST", f"https://localhost:{up.port}/v1/x",
                                      (("content-type", "application/json"),), b'{"a": 1}')
            events = run_pool(backend, request, proxy.url(), client_context)
            wrong_name = UpstreamRequest("POST", f"https://{NAME}:{up.port}/v1/x", (), b"{}")
            refused = run_pool(backend, wrong_name, proxy.url(), client_context)
            assert proxy.targets == [f"localhost:{up.port}", f"{NAME}:{up.port}"]
    finally:
        up.close()
    assert not [e for e in events if isinstance(e, UpstreamFailed)], events
    heads = [e for e in events if isinstance(e, UpstreamHead)]
    assert heads[0].status == 200 and isinstance(events[-1], UpstreamEnded)
    data = b"".join(e.data for e in events if isinstance(e, UpstreamData))
    assert json.loads(data)["echo"] == {"a": 1}
    assert up.seen[0].headers["host"] == f"localhost:{up.port}"
    # SNI and verification use the origin's name: the certificate does not cover upstream.test
    assert len(refused) == 1 and isinstance(refused[0], UpstreamFailed)
    assert refused[0].kind == "connect"
    assert refused[0].message.startswith(f"cannot connect to {NAME} through proxy {kind}://")


def test_silent_proxy_times_out_within_the_connect_limit(backend, monkeypatch):
    from uniapi_core.http import pool

    monkeypatch.setattr(pool, "UPSTREAM_TIMEOUTS", pool.UpstreamTimeouts(connect=0.3))
    with socket.socket() as silent:  # accepts (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        proxy = f"http://alice:{quote(PASSWORD, safe='')}@127.0.0.1:{port}"
        request = UpstreamRequest("POST", f"http://{NAME}:1/v1/x", (), b"{}")
        events = run_pool(backend, request, proxy, ssl.create_default_context())
    assert len(events) == 1 and isinstance(events[0], UpstreamFailed)
    assert events[0].message == (f"connecting to {NAME} through proxy "
                                 f"http://127.0.0.1:{port} timed out")


def test_model_discovery_goes_through_the_providers_proxy(backend, up):
    """A provider without a model list is asked for /v1/models at start-up through the same
    proxy its requests use (``upstream.test`` resolves only inside the proxy)."""
    models = {"object": "list", "data": [{"id": "found-model", "object": "model"}]}
    up.handler = lambda seen: json_reply(models if seen.path.endswith("/models") else COMPLETION)
    text = config(f"""
  - provider: p
    base_url: {named(up)}/v1/chat/completions
    api: sk-upstream-p
""", global_proxy=None)
    with Socks5Proxy(hosts={NAME: "127.0.0.1"}) as proxy:
        text += f"preferences:\n  proxy: {json.dumps(proxy.url())}\n"
        with run_gateway(text, backend=backend) as gw:
            listed = httpx.get(f"{gw.url}/v1/models", headers={"authorization": f"Bearer {KEY}"})
            assert [m["id"] for m in listed.json()["data"]] == ["found-model"]
            assert chat(gw, "found-model").json()["choices"][0]["message"]["content"] == "hi"
        assert proxy.targets and all(t == f"{NAME}:{up.port}" for t in proxy.targets)
    assert [s.path for s in up.seen] == ["/v1/models", "/v1/chat/completions"]
