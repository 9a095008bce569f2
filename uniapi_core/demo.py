"""The built-in demo: a config and a fake OpenAI-compatible upstream.

``uniapi demo`` serves a real gateway in front of a real (local) upstream so a new user can
try the whole path with no vendor key. The upstream's behaviour lives here, pure: given a chat
request body it returns the response to send. ``DemoUpstream`` has the gateway's ``handle``,
so a transport serves it on ``DEMO_HOST`` with the same ``serve`` it runs the gateway with.
"""

from __future__ import annotations

import json
from typing import Any

from .gateway import Respond
from .jsonutil import dumps

__all__ = ["DEMO_KEY", "DEMO_SOURCE", "DEMO_HOST", "demo_config", "demo_url", "demo_hint",
           "demo_answer", "DemoUpstream"]

DEMO_KEY = "sk-uniapi-demo"
#: how the demo's config is named in its warnings
DEMO_SOURCE = "demo api.yaml"
#: where the fake upstream listens (on a port the system picks)
DEMO_HOST = "127.0.0.1"


def demo_url(port: int) -> str:
    """The fake upstream's base URL once it listens on ``port`` (for ``demo_config``)."""
    return f"http://{DEMO_HOST}:{port}"


def demo_hint(host: str, port: int) -> str:
    """How to try the demo gateway serving on ``host:port``, for stderr."""
    return f"""uniapi demo: try
  curl http://{host}:{port}/v1/chat/completions -H 'Authorization: Bearer {DEMO_KEY}' \\
       -H 'Content-Type: application/json' \\
       -d '{{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": "Hello"}}]}}'

"""


def demo_config(upstream_url: str) -> str:
    """api.yaml text for the demo: one provider (the local fake), one key, two models."""
    return f"""\
providers:
  - provider: demo-upstream
    base_url: {upstream_url}/v1/chat/completions
    api: sk-upstream-demo
    model:
      - demo-echo
      - demo-echo: gpt-4o-mini    # a rename: clients ask for gpt-4o-mini

api_keys:
  - api: {DEMO_KEY}
    role: admin
"""


def _last_user_text(req: dict[str, Any]) -> str:
    for msg in reversed(req.get("messages") or []):
        if isinstance(msg, dict) and msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content
                                if isinstance(p, dict) and p.get("type") == "text")
    return ""


def demo_answer(path: str, body: bytes, created: int = 0
                ) -> tuple[int, tuple[tuple[str, str], ...], list[bytes]]:
    """(status, headers, body pieces) for one request to the fake upstream."""
    if path.endswith("/models"):
        data = {"object": "list", "data": [{"id": "demo-echo", "object": "model",
                                            "created": created, "owned_by": "demo"}]}
        return 200, (("content-type", "application/json"),), [dumps(data)]
    try:
        req = json.loads(body)
        assert isinstance(req, dict)
    except (ValueError, AssertionError):
        err = {"error": {"message": "bad JSON", "type": "invalid_request_error", "code": None}}
        return 400, (("content-type", "application/json"),), [dumps(err)]
    text = "You said: " + _last_user_text(req)
    model = req.get("model", "demo-echo")
    words = text.split(" ")
    usage = {"prompt_tokens": len(_last_user_text(req).split()), "completion_tokens": len(words),
             "total_tokens": len(_last_user_text(req).split()) + len(words)}
    base = {"id": "chatcmpl-demo", "created": created, "model": model}
    if not req.get("stream"):
        obj = dict(base, object="chat.completion", choices=[{
            "index": 0, "message": {"role": "assistant", "content": text},
            "logprobs": None, "finish_reason": "stop"}], usage=usage)
        return 200, (("content-type", "application/json"),), [dumps(obj)]
    include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
    chunk = dict(base, object="chat.completion.chunk")
    pieces = [dict(chunk, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""},
                                    "finish_reason": None}])]
    for i, w in enumerate(words):
        pieces.append(dict(chunk, choices=[{"index": 0, "delta": {
            "content": w if i == 0 else " " + w}, "finish_reason": None}]))
    pieces.append(dict(chunk, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    if include_usage:
        pieces.append(dict(chunk, choices=[], usage=usage))
    out = [b"data: " + dumps(p) + b"\n\n" for p in pieces] + [b"data: [DONE]\n\n"]
    return 200, (("content-type", "text/event-stream"),), out


class DemoUpstream:
    """The fake upstream, gateway-shaped: ``serve(DemoUpstream, DEMO_HOST, 0, ...)`` runs it.
    A stream is answered in one body; the gateway's SSE decoder does not care how it is cut.
    Its requests are not access-logged: the gateway in front logs each one already."""

    log_requests = False

    def handle(self, method: str, target: str, headers: tuple[tuple[str, str], ...],
               body: bytes, *, now: float, wall: float) -> Respond:
        status, head, pieces = demo_answer(target, body, int(wall))
        return Respond(status, head, b"".join(pieces))
