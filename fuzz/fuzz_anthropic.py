"""Fuzz target for the Anthropic translator (``uniapi_core.vendors.anthropic``).

Run it (needs ``pip install atheris``)::

    python fuzz/fuzz_anthropic.py -max_total_time=60 fuzz/corpus/anthropic

``check(data)`` is the whole oracle; the test suite replays ``fuzz/corpus/anthropic/`` through
it without atheris (``tests/core/test_fuzz_corpora.py``). For each input it
asserts:

* stream decoder: only ``DecodeError`` escapes (DEC-2); feeding the bytes whole, one byte at a
  time, in fixed strides and at cut points derived from the data gives *identical* items and
  the same error kind (DEC-1: the decoder returns the items completed before a bad line and
  raises on the next call, so even failing inputs compare exactly); every chunk is one
  ``data: <json>\\n\\n`` event and nothing follows ``StreamDone``/``StreamFailed``; what a
  client would receive passes the core's chat stream validator (``client_problems``);
* whole bodies: ``parse_body`` returns a JSON body that passes the core's validator
  (``body_problems``) or raises ``UpstreamError``; ``parse_error`` returns an ``UpstreamError``
  (ERR-3, ERR-4);
* request builder: when the input parses as JSON, the request made of it (as a request, or as a
  message, or as a message list) gives an exchange with a JSON body or raises ``ClientError`` /
  ``ImagesNeeded``, never anything else, for a plain and a ``-think`` alias.
"""

from __future__ import annotations

import json
import random
import sys
from typing import Any

if __name__ == "__main__":  # run as a script: make the repository importable
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz._oracle import body_problems, client_problems, fuzz  # noqa: E402
from uniapi_core.config.model import Provider  # noqa: E402
from uniapi_core.errors import ClientError, DecodeError, UpstreamError  # noqa: E402
from uniapi_core.vendors.anthropic import AnthropicExchange, build_exchange  # noqa: E402
from uniapi_core.vendors.base import (  # noqa: E402
    ChatContext,
    ImagesNeeded,
    StreamChunk,
    StreamDone,
    StreamFailed,
)

_PROVIDER = Provider(provider="fuzz", base_url="https://api.anthropic.com", api=("k",))


def _ctx(alias: str = "claude-sonnet", stream: bool = True) -> ChatContext:
    return ChatContext(client_model=alias, upstream_model="claude-sonnet-4-20250514",
                       provider=_PROVIDER, api_key="k", stream=stream, include_usage=True,
                       response_id="chatcmpl-fuzz", created=1, entropy=random.Random(0))


def _run(pieces: list[bytes]) -> tuple[list[Any], str | None]:
    decoder = AnthropicExchange(None, _ctx()).stream_decoder()  # type: ignore[arg-type]
    items: list[Any] = []
    try:
        for piece in pieces:
            items += decoder.feed(piece)
        items += decoder.close()
    except DecodeError as exc:
        return items, exc.kind
    return items, None


def _comparable(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for it in items:
        if isinstance(it, StreamFailed):
            e = it.error
            out.append(("failed", e.kind, e.type, e.code, e.upstream_status, e.message))
        else:
            out.append(it)
    return out


def _cut(data: bytes, positions: list[int]) -> list[bytes]:
    bounds = [0, *positions, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def _splits(data: bytes) -> list[list[bytes]]:
    """Ways to cut ``data``, derived from the data so that the fuzzer can steer them."""
    n = len(data)
    out = [[data[i:i + 1] for i in range(n)]]
    if n:
        stride = data[0] % 7 + 2
        out.append(_cut(data, list(range(stride, n, stride))))
        walk, pos, i = [], 0, 0
        while True:  # steps of 1..16 bytes, read from the data cyclically
            pos += data[i % n] % 16 + 1
            i += 1
            if pos >= n:
                break
            walk.append(pos)
        out.append(_cut(data, walk))
    return out


def _check_items(items: list[Any]) -> None:
    for k, it in enumerate(items):
        if isinstance(it, StreamChunk):
            assert it.data.startswith(b"data: ") and it.data.endswith(b"\n\n"), it
            json.loads(it.data[6:-2])
        else:
            assert isinstance(it, (StreamDone, StreamFailed)) and k == len(items) - 1, items


def _check_stream(data: bytes) -> None:
    ref_items, ref_kind = _run([data])
    _check_items(ref_items)
    problems = client_problems(ref_items, ref_kind)
    assert not problems, f"the chat stream validator: {problems}"
    ref = _comparable(ref_items)
    for pieces in _splits(data):
        items, kind = _run(pieces)
        assert kind == ref_kind, (pieces, kind, ref_kind)
        assert _comparable(items) == ref, (pieces, items, ref_items)


def _check_bodies(data: bytes) -> None:
    ex = AnthropicExchange(None, _ctx(stream=False))  # type: ignore[arg-type]
    try:
        body = ex.parse_body(200, (), data)
    except UpstreamError:
        pass
    else:
        problems = body_problems(body)
        assert not problems, f"the chat stream validator: {problems}"
    for status in (400, 429, 529):
        assert isinstance(ex.parse_error(status, (("retry-after", "1"),), data), UpstreamError)


def _requests(obj: Any) -> list[dict[str, Any]]:
    if isinstance(obj, dict):
        out = [{"model": "m", "messages": [obj]}]
        if isinstance(obj.get("messages"), list) and obj["messages"] and all(
                isinstance(m, dict) for m in obj["messages"]):
            out.append({**obj, "model": "m"})
        return out
    if isinstance(obj, list) and obj and all(isinstance(m, dict) for m in obj):
        return [{"model": "m", "messages": obj}]
    return [{"model": "m", "messages": [{"role": "user", "content": obj}]}]


def _check_requests(data: bytes) -> None:
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return
    for req in _requests(obj):
        for ctx in (_ctx(), _ctx("claude-sonnet-think-2048", stream=False)):
            try:
                ex = build_exchange(req, ctx)
            except (ClientError, ImagesNeeded):
                continue
            body = json.loads(ex.request.body)
            assert body["messages"] and body["messages"][0]["role"] == "user", body


def check(data: bytes) -> None:
    """The fuzz oracle: raise ``AssertionError`` (or anything unexpected) on a finding."""
    _check_stream(data)
    _check_bodies(data)
    _check_requests(data)


if __name__ == "__main__":
    fuzz(check)
