"""The Anthropic Messages front through the one door, with canned upstream bytes: the relay's
keep-alive pings on a silent stream, Anthropic-shaped errors before any relay, count_tokens
estimated. tests/e2e/test_messages.py drives it with the anthropic SDK over real sockets."""

from __future__ import annotations

import json
import random

from uniapi_core.config import load_config
from uniapi_core.connection import Connection
from uniapi_core.events import ClientData, DeadlineReached, StartUpstream, UpstreamData, \
    UpstreamHead, Write
from uniapi_core.fronts.front import PING
from uniapi_core.fronts.messages_check import MessagesStreamChecker
from uniapi_core.gateway import Gateway
from uniapi_core.relay.machine import PING_EVERY

CONFIG = """
providers:
  - {provider: oa, base_url: "http://u/v1/chat/completions", api: k1, model: [m]}
api_keys:
  - {api: sk-user}
"""


def gateway() -> Gateway:
    return Gateway(load_config(CONFIG).config, entropy=random.Random(0))


def post(path: str, body: object, key: str | None = "sk-user") -> bytes:
    data = json.dumps(body).encode()
    auth = f"x-api-key: {key}\r\n" if key else ""
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\n{auth}anthropic-version: 2023-06-01\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
            ).encode() + data


def written(actions) -> bytes:
    return b"".join(a.data for a in actions if isinstance(a, Write))


def answer(actions) -> tuple[int, dict[str, str], dict]:
    head, _, body = written(actions).partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


REQUEST = {"model": "m", "max_tokens": 64, "stream": True,
           "messages": [{"role": "user", "content": "hi"}]}
CHUNK = (b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
         b'"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},'
         b'"finish_reason":null}]}\n\n')


def test_a_silent_committed_stream_gets_pings_and_the_grammar_holds():
    gw = gateway()
    conn = Connection(lambda: gw, now=0.0, alpn="http/1.1")
    acts = conn.handle(ClientData(post("/v1/messages", REQUEST)), 0.0, 0.0)
    (start,) = [a for a in acts if isinstance(a, StartUpstream)]
    conn.handle(UpstreamHead(start.ref, 200, (("content-type", "text/event-stream"),)), 0.5, 0.0)
    first = written(conn.handle(UpstreamData(start.ref, CHUNK), 1.0, 0.0))
    assert b"event: message_start" in first and b"Hel" in first
    assert conn.next_deadline() == 1.0 + PING_EVERY
    assert written(conn.handle(DeadlineReached(), 1.0 + PING_EVERY - 0.1, 0.0)) == b""
    ping = written(conn.handle(DeadlineReached(), 1.0 + PING_EVERY, 0.0))
    assert PING in ping
    assert conn.next_deadline() == 1.0 + 2 * PING_EVERY  # the next one, unless bytes come
    more = written(conn.handle(UpstreamData(start.ref, CHUNK.replace(b'"Hel"', b'"lo"')),
                               15.0, 0.0))
    assert conn.next_deadline() == 15.0 + PING_EVERY
    checker = MessagesStreamChecker()
    body = first.partition(b"\r\n\r\n")[2] + ping + more
    checker.feed(body.replace(b"\r\n", b"\n"))  # chunked framing aside, events in order
    assert [e["type"] for e in checker.events].count("ping") == 1


def test_a_chat_stream_gets_no_pings():
    gw = gateway()
    conn = Connection(lambda: gw, now=0.0, alpn="http/1.1")
    body = json.dumps({"model": "m", "stream": True,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    acts = conn.handle(ClientData(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-user\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body), 0.0, 0.0)
    (start,) = [a for a in acts if isinstance(a, StartUpstream)]
    conn.handle(UpstreamHead(start.ref, 200, (("content-type", "text/event-stream"),)), 0.5, 0.0)
    conn.handle(UpstreamData(start.ref, CHUNK), 1.0, 0.0)
    assert conn.next_deadline() != 1.0 + PING_EVERY
    assert b"ping" not in written(conn.handle(DeadlineReached(), 1.0 + PING_EVERY, 0.0))


def test_errors_before_any_relay_are_in_anthropic_shape():
    gw = gateway()
    for data, status, kind in [
            (post("/v1/messages", REQUEST, key=None), 401, "authentication_error"),
            (post("/v1/messages", REQUEST, key="sk-wrong"), 401, "authentication_error"),
            (post("/v1/messages", {**REQUEST, "model": "nope"}), 404, "not_found_error"),
            (post("/v1/messages", {"model": "m", "messages": []}), 400,
             "invalid_request_error"),
            (post("/v1/messages/count_tokens", {"model": "nope", "messages": []}), 404,
             "not_found_error")]:
        conn = Connection(lambda: gw, now=0.0, alpn="http/1.1")
        got_status, _, body = answer(conn.handle(ClientData(data), 0.0, 0.0))
        assert (got_status, body["type"], body["error"]["type"]) == (status, "error", kind), body
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def test_count_tokens_without_an_anthropic_channel_is_an_estimate_and_says_so():
    gw = gateway()
    conn = Connection(lambda: gw, now=0.0, alpn="http/1.1")
    status, headers, body = answer(conn.handle(ClientData(post(
        "/v1/messages/count_tokens",
        {"model": "m", "messages": [{"role": "user", "content": "x" * 400}]})), 0.0, 0.0))
    assert status == 200 and headers["x-uniapi-token-count"] == "estimated"
    assert 100 <= body["input_tokens"] <= 120
