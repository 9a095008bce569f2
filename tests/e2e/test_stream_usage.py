"""Usage asked for in every stream (issue 13; docs/vendor-rules.md OAI-4, docs/contracts.md S-5),
over real sockets on both backends: an OpenAI-compatible or Azure upstream is sent
``stream_options.include_usage: true`` when the client streams without asking for usage, the
client (the official openai SDK, and the raw bytes) sees no usage it did not ask for, and the
gateway's record of the request (its metrics' token counters) has the tokens. A provider with
``preferences.stream_usage: false`` gets the client's request untouched.

The fake upstream answers as OpenAI does: ``"usage": null`` on every chunk and a last usage chunk
with ``choices: []`` when asked, neither otherwise; the strict one refuses ``stream_options``.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.upstream import FakeUpstream, Reply, Seen, json_reply
from tests.harness import RunningGateway, run_gateway

KEY = "sk-stream-usage"
USAGE = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12,
         "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0},
         "completion_tokens_details": {"reasoning_tokens": 1, "audio_tokens": 0}}
TEXTS = ["Hel", "lo", " there"]
MESSAGES = [{"role": "user", "content": "Hello"}]


def openai_like(seen: Seen) -> Reply:
    """A stream in OpenAI's compact layout, with usage exactly when the request asks for it."""
    req = seen.json()
    options = req.get("stream_options")
    if options is not None and "strict" in seen.path:
        return json_reply({"error": {"message": "Unrecognized request argument supplied: "
                                                "stream_options", "type": "invalid_request_error",
                                     "code": None}}, status=400)
    asked = isinstance(options, dict) and options.get("include_usage") is True
    head = {"id": "chatcmpl-u", "object": "chat.completion.chunk", "created": 17,
            "model": req["model"], "system_fingerprint": "fp_1"}
    deltas: list[tuple[dict[str, Any], str | None]] = [
        ({"role": "assistant", "content": "", "refusal": None}, None)]
    deltas += [({"content": t}, None) for t in TEXTS] + [({}, "stop")]
    events = []
    for delta, finish in deltas:
        chunk = dict(head, choices=[{"index": 0, "delta": delta, "logprobs": None,
                                     "finish_reason": finish}])
        if asked:
            chunk["usage"] = None
        events.append(chunk)
    if asked:
        events.append(dict(head, choices=[], usage=USAGE))
    pieces = [b"data: " + json.dumps(e, separators=(",", ":")).encode() + b"\n\n"
              for e in events] + [b"data: [DONE]\n\n"]
    return Reply(headers=[("content-type", "text/event-stream")], pieces=pieces)


def config(url: str) -> str:
    return f"""
providers:
  - provider: oai
    base_url: {url}/v1/chat/completions
    api: sk-up
    model: [m]
  - provider: az
    engine: azure
    base_url: {url}
    api: sk-az
    model: [az]
  - provider: strict
    base_url: {url}/strict/v1
    api: sk-strict
    model: [s]
    preferences:
      stream_usage: false
api_keys:
  - api: {KEY}
"""


@pytest.fixture
def gw(backend: str) -> Iterator[tuple[RunningGateway, FakeUpstream]]:
    up = FakeUpstream(handler=openai_like)
    try:
        with run_gateway(config(up.url), backend=backend) as running:
            yield running, up
    finally:
        up.close()


def tokens(gw: RunningGateway, provider: str, model: str) -> dict[str, int]:
    metrics = gw.gateway.metrics
    return {kind: metrics.counter("uniapi_tokens_total", provider=provider, model=model,
                                  kind=kind)
            for kind in ("prompt", "completion", "reasoning", "cached")}


def settled(gw: RunningGateway, provider: str, model: str, want: dict[str, int]
            ) -> dict[str, int]:
    """The token counters once the request's record is in (it is counted as it ends)."""
    deadline = time.monotonic() + 5
    while (got := tokens(gw, provider, model)) != want and time.monotonic() < deadline:
        time.sleep(0.01)
    return got


ONE = {"prompt": 9, "completion": 3, "reasoning": 1, "cached": 4}


def times(n: int) -> dict[str, int]:
    return {kind: n * count for kind, count in ONE.items()}


def raw_stream(gw: RunningGateway, body: dict[str, Any]) -> bytes:
    req = urllib.request.Request(gw.url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {KEY}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


def events(raw: bytes) -> list[Any]:
    return [line[6:] if line == b"data: [DONE]" else json.loads(line[6:])
            for line in raw.split(b"\n\n") if line.startswith(b"data: ")]


@pytest.mark.parametrize("model, provider", [("m", "oai"), ("az", "az")])
def test_a_stream_that_did_not_ask_gets_no_usage_and_the_gateway_counts_it(gw, model, provider):
    running, up = gw
    client = running.openai(KEY)
    chunks = list(client.chat.completions.create(model=model, messages=MESSAGES, stream=True))
    sent = up.seen[-1].json()
    assert sent["stream_options"] == {"include_usage": True}  # asked upstream
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "".join(TEXTS)
    assert all(c.choices and c.usage is None for c in chunks)  # the SDK sees none
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert settled(running, provider, model, times(1)) == times(1)

    # the client's other stream_options are kept, and include_usage false is overridden
    raw = raw_stream(running, {"model": model, "messages": MESSAGES, "stream": True,
                               "stream_options": {"include_usage": False,
                                                  "include_obfuscation": False}})
    assert up.seen[-1].json()["stream_options"] == {"include_usage": True,
                                                    "include_obfuscation": False}
    assert b"usage" not in raw  # no chunk mentions usage (S-5)
    got = events(raw)
    assert got[-1] == b"[DONE]" and all(e["choices"] for e in got[:-1])
    assert settled(running, provider, model, times(2)) == times(2)


def test_a_stream_that_asked_gets_the_usage_chunk(gw):
    running, up = gw
    client = running.openai(KEY)
    chunks = list(client.chat.completions.create(
        model="m", messages=MESSAGES, stream=True,
        stream_options={"include_usage": True}))
    assert up.seen[-1].json()["stream_options"] == {"include_usage": True}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 9 and chunks[-1].usage.completion_tokens == 3
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == 4
    assert all(c.usage is None for c in chunks[:-1])
    raw = raw_stream(running, {"model": "m", "messages": MESSAGES, "stream": True,
                               "stream_options": {"include_usage": True}})
    got = events(raw)
    assert all("usage" in e and e["usage"] is None for e in got[:-2])
    assert got[-2]["choices"] == [] and got[-2]["usage"]["total_tokens"] == 12
    assert settled(running, "oai", "m", times(2)) == times(2)


def test_a_whole_answer_is_sent_as_the_client_wrote_it(gw):
    running, up = gw
    up.handler = lambda seen: json_reply({
        "id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                     "finish_reason": "stop"}], "usage": USAGE})
    reply = running.openai(KEY).chat.completions.create(model="m", messages=MESSAGES)
    assert reply.usage is not None and reply.usage.total_tokens == 12
    assert "stream_options" not in up.seen[-1].json()
    assert settled(running, "oai", "m", times(1)) == times(1)


def test_stream_usage_false_leaves_the_request_untouched(gw):
    """A host that refuses ``stream_options`` still serves streams; their tokens stay unknown
    (absent, never a silent zero)."""
    running, up = gw
    client = running.openai(KEY)
    chunks = list(client.chat.completions.create(model="s", messages=MESSAGES, stream=True))
    assert "stream_options" not in up.seen[-1].json()
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "".join(TEXTS)
    assert all(c.usage is None for c in chunks)
    time.sleep(0.1)
    assert tokens(running, "strict", "s") == times(0)
