"""The fixed payloads every benchmark here uses: one place, so the figures stay comparable.

* ``chat_request(model, stream)``: a typical ~2 KB OpenAI chat request (system prompt, a few
  turns, sampling parameters), as a dict; ``chat_request_bytes`` its JSON bytes.
* ``COMPLETION``: the fixed ``chat.completion`` the mock upstream answers (~0.6 KB).
* ``sse_body(model)``: the 52-event ``chat.completion.chunk`` stream (a role chunk, 50 content
  chunks, a finish chunk) followed by ``data: [DONE]``, as OpenAI sends it (~13 KB).

Pure data, no I/O. The model names match the names the gateway's clients ask for, so the
gateway relays events without re-encoding them (its common path); a renamed model would make
it re-encode every event.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["JSON_MODEL", "SSE_MODEL", "SSE_EVENTS", "CLIENT_KEY", "UPSTREAM_KEY", "api_yaml",
           "chat_request", "chat_request_bytes", "completion_bytes", "sse_body"]

JSON_MODEL = "bench"
SSE_MODEL = "bench-sse"
#: content events in the stream, ``data: [DONE]`` not counted
SSE_EVENTS = 52
CLIENT_KEY = "sk-bench-client-0123456789abcdef"
UPSTREAM_KEY = "sk-bench-upstream-0123456789abcdef"

_SYSTEM = (
    "You are a careful assistant for an engineering team. Answer concisely, cite the file "
    "and line when you refer to code, prefer standard-library solutions, and say so plainly "
    "when you are not sure. Format code blocks with the language name. When the user asks for "
    "a command, give the command first and the explanation after it. Never invent APIs: if a "
    "function does not exist in the version the user names, say which version added it. Keep "
    "answers under three hundred words unless the user asks for more detail. If the question "
    "involves production systems, mention how to verify the change safely first, and which "
    "metric would show that it worked."
)
_TURNS = [
    ("user", "We run a Python service behind nginx and see p99 latency spikes every few "
             "minutes. CPU is low, memory is flat. What should we look at first?"),
    ("assistant", "Start with what happens every few minutes: log rotation, garbage collection "
                  "of large heaps, connection pool recycling, DNS re-resolution, or a cron job "
                  "on the same host. Correlate the spike timestamps with the nginx error log, "
                  "the service's GC log (gc.callbacks) and `journalctl --since`."),
    ("user", "GC looks innocent. The spikes line up with upstream connection pool refreshes. "
             "How do I confirm that and how do I keep connections warm without leaking them? "
             "We use keep-alive with a 60 s idle timeout and at most 32 idle connections."),
    ("assistant", "Log every pool open and close with a monotonic timestamp and the origin, then "
                  "plot them against the p99 series. If each spike follows a burst of closes, "
                  "the refresh is on the request path. Keep the idle timeout below the "
                  "upstream's own keep-alive timeout so the upstream never closes first."),
    ("user", "Good, the closes match. Write a short checklist we can paste into the runbook."),
]


def chat_request(model: str = JSON_MODEL, stream: bool = False) -> dict[str, Any]:
    """A typical chat request of about 2 KB of JSON."""
    req: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "system", "content": _SYSTEM}]
        + [{"role": r, "content": c} for r, c in _TURNS],
        "temperature": 0.2,
        "top_p": 0.95,
        "max_tokens": 512,
        "user": "bench-user-42",
    }
    if stream:
        req["stream"] = True
    return req


def chat_request_bytes(model: str = JSON_MODEL, stream: bool = False) -> bytes:
    return json.dumps(chat_request(model, stream), separators=(",", ":")).encode()


def completion_bytes(model: str = JSON_MODEL) -> bytes:
    """The fixed non-streamed answer of the mock upstream."""
    obj = {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion",
        "created": 1741570283,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Log the pool's open/close events with timestamps and compare them "
                           "with the spike times; if they match, lower the idle timeout below "
                           "the upstream's own keep-alive timeout and pre-open a few "
                           "connections so a refresh never happens on a request's path.",
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": 412, "completion_tokens": 58, "total_tokens": 470,
                  "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                "accepted_prediction_tokens": 0,
                                                "rejected_prediction_tokens": 0}},
        "service_tier": "default",
        "system_fingerprint": "fp_f9f4fb6dbf",
    }
    return json.dumps(obj, separators=(",", ":")).encode()


_WORDS = ("Log", " the", " pool", "'s", " open", " and", " close", " events", " with",
          " timestamps", ",", " then", " compare", " them", " to", " the", " spike", " times",
          ".", " If", " they", " line", " up", ",", " lower", " the", " idle", " timeout",
          " below", " the", " upstream", "'s", " keep", "-alive", " timeout", " and", " keep",
          " a", " few", " connections", " warm", " so", " a", " refresh", " never", " lands",
          " on", " a", " request", "'s", " path", ".")


def _chunk(model: str, delta: dict[str, Any], finish: str | None) -> bytes:
    obj = {"id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object": "chat.completion.chunk",
           "created": 1741570283, "model": model, "system_fingerprint": "fp_f9f4fb6dbf",
           "choices": [{"index": 0, "delta": delta, "logprobs": None,
                        "finish_reason": finish}]}
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def sse_body(model: str = SSE_MODEL, events: int = SSE_EVENTS) -> bytes:
    """``events`` data events (role, content…, finish) and ``data: [DONE]``."""
    assert events >= 3
    out = [_chunk(model, {"role": "assistant", "content": "", "refusal": None}, None)]
    for i in range(events - 2):
        out.append(_chunk(model, {"content": _WORDS[i % len(_WORDS)]}, None))
    out.append(_chunk(model, {}, "stop"))
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


def api_yaml(upstream_port: int) -> str:
    return f"""\
# generated by benchmarks/run.py: two providers on the mock upstream
providers:
  - provider: bench-json
    base_url: http://127.0.0.1:{upstream_port}/v1/chat/completions
    api: {UPSTREAM_KEY}
    model:
      - {JSON_MODEL}
  - provider: bench-sse
    base_url: http://127.0.0.1:{upstream_port}/sse/chat/completions
    api: {UPSTREAM_KEY}
    model:
      - {SSE_MODEL}

api_keys:
  - api: {CLIENT_KEY}
    model:
      - bench-json/*
      - bench-sse/*
"""


if __name__ == "__main__":
    print(f"chat request: {len(chat_request_bytes())} bytes")
    print(f"completion:   {len(completion_bytes())} bytes")
    body = sse_body()
    print(f"sse body:     {len(body)} bytes, {body.count(b'data: ')} data lines")
