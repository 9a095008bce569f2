"""Both transports, one config, one seed, the same raw requests: the same raw response bytes.

The transports decide nothing, so every byte a client sees (status line, header order and case,
chunk framing, request ids drawn from the seeded entropy, error JSON) must come from the core.
Nothing is masked: a difference here is a transport doing something the core did not ask for.
Both get the same fixed wall clock through ``serve(wall=...)``, so answers whose ``created`` the
gateway writes (a translated completion and stream, ``/v1/models``) are compared whole too: a
backend that read the wall clock itself would differ.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fakes.upstream import FakeUpstream, Reply, Seen, json_reply, sse_reply
from tests.harness import BACKENDS, run_gateway

KEY = "sk-identical-0001"
#: the wall clock both backends are given; ``created`` is its whole seconds (O-2)
WALL = 1234567890.75
CREATED = b'"created":1234567890'
ANTHROPIC = Path(__file__).resolve().parent.parent / "data" / "anthropic"
CONFIG = """
providers:
  - provider: up
    base_url: {url}/v1/chat/completions
    api: sk-upstream
    model:
      - gpt-4o
  - provider: ant
    base_url: {url}/v1/messages
    api: sk-ant-upstream
    model:
      - claude
api_keys:
  - api: {key}
"""
COMPLETION = {"id": "chatcmpl-up", "object": "chat.completion", "created": 1735689600,
              "model": "gpt-4o", "choices": [{"index": 0, "message": {
                  "role": "assistant", "content": "Bonjour ✓"}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}
CHUNKS = [{"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1735689600,
           "model": "gpt-4o", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
          for delta, finish in (({"role": "assistant", "content": ""}, None),
                                ({"content": "Bon"}, None), ({"content": "jour ✓"}, None),
                                ({}, "stop"))]


def chat(body: bytes, *, key: str | None = KEY, close: bool = True,
         path: str = "/v1/chat/completions", length: int | None = None) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
    if key is not None:
        head += f"Authorization: Bearer {key}\r\n"
    if close:
        head += "Connection: close\r\n"
    head += f"Content-Length: {len(body) if length is None else length}\r\n\r\n"
    return head.encode() + body


def body(**extra: object) -> bytes:
    return json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "Salut"}],
                       **extra}).encode()


#: name -> (raw request bytes, expected status line prefix)
CASES = {
    "completion": (chat(body()), b"HTTP/1.1 200 "),
    "stream": (chat(body(stream=True)), b"HTTP/1.1 200 "),
    "keep-alive then close": (chat(body(), close=False) + chat(body(stream=True)),
                              b"HTTP/1.1 200 "),
    # the gateway writes these answers' ``created`` from the wall clock it is handed
    "translated completion": (chat(body(model="claude")), b"HTTP/1.1 200 "),
    "translated stream": (chat(body(model="claude", stream=True)), b"HTTP/1.1 200 "),
    "models": (f"GET /v1/models HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {KEY}\r\n"
               "Connection: close\r\n\r\n".encode(), b"HTTP/1.1 200 "),
    "unknown path": (chat(body(), path="/v1/nowhere"), b"HTTP/1.1 404 "),
    "unknown model": (chat(body(model="no-such-model")), b"HTTP/1.1 404 "),
    "wrong key": (chat(body(), key="sk-wrong"), b"HTTP/1.1 401 "),
    "no key": (chat(body(), key=None), b"HTTP/1.1 401 "),
    "malformed JSON": (chat(b"{not json"), b"HTTP/1.1 400 "),
    "413 by Content-Length": (chat(b"", length=100_000_000, close=False), b"HTTP/1.1 413 "),
}


def upstream_answer(seen: Seen):  # type: ignore[no-untyped-def]
    stream = seen.json().get("stream")
    if seen.path == "/v1/messages":
        if stream:
            return Reply(headers=[("content-type", "text/event-stream")],
                         pieces=[(ANTHROPIC / "text_stream.sse").read_bytes()])
        return Reply(pieces=[(ANTHROPIC / "message_text.json").read_bytes()], chunked=False)
    return sse_reply(CHUNKS) if stream else json_reply(COMPLETION)


@pytest.mark.skipif(len(BACKENDS) < 2, reason="needs two backends")
def test_every_backend_answers_the_same_bytes():
    up = FakeUpstream(upstream_answer)
    try:
        answers: dict[str, dict[str, bytes]] = {}
        for backend in BACKENDS:  # each starts from the harness's random.Random(1)
            with run_gateway(CONFIG.format(url=up.url, key=KEY), backend=backend,
                             wall=lambda: WALL) as gw:
                answers[backend] = {name: gw.raw(data) for name, (data, _) in CASES.items()}
    finally:
        up.close()
    first, *others = BACKENDS
    for name, (_, status) in CASES.items():
        assert answers[first][name].startswith(status), (name, answers[first][name][:200])
        for other in others:
            assert answers[other][name] == answers[first][name], \
                f"{name}: {first} and {other} differ:\n{answers[first][name]!r}\n" \
                f"{answers[other][name]!r}"
    assert answers[first]["stream"].endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")
    assert answers[first]["keep-alive then close"].count(b"HTTP/1.1 200 ") == 2
    # the injected clock is what the answers carry (so a backend ignoring it differs above)
    assert answers[first]["translated completion"].count(CREATED) == 1
    assert answers[first]["translated stream"].count(CREATED) > 2  # in every chunk
    assert answers[first]["models"].count(CREATED) == 2
    assert len(up.seen) == 6 * len(BACKENDS)  # the completions and streams, each time
