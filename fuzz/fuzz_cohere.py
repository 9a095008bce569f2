"""Fuzz target for the Cohere v2 translator (``uniapi_core.vendors.cohere``).

Run it (needs ``pip install atheris``)::

    python fuzz/fuzz_cohere.py -max_total_time=60 fuzz/corpus/cohere

``check(data)`` is the whole oracle; ``tests/core/vendors/test_fuzz_corpus_cohere.py`` replays
``fuzz/corpus/cohere/`` through it without atheris. Every input is used twice:

* as upstream stream bytes for ``CohereStreamDecoder``: only ``DecodeError`` escapes (DEC-2);
  feeding the bytes one byte at a time, whole, in fixed strides and at cut points read from
  the data gives exactly the same items and the same error kind (DEC-1). The client chunks
  must follow the OpenAI stream grammar (``openai_grammar``: S-1..S-8, TC-3), whether the
  stream ends with ``StreamDone``, ``StreamFailed`` or a ``DecodeError``;
* as a client request (a JSON object, or a JSON list used as ``messages``) for
  ``build_exchange``: it returns an exchange or raises ``ClientError``, nothing else; a built
  request is deterministic, goes to ``/v2/chat`` with a Bearer key and has messages.

``fuzz/fuzz_cloudflare.py`` reuses ``normalize``/``openai_grammar``/``_splits`` from here.
"""

from __future__ import annotations

import json
import random
import sys
from typing import Any

if __name__ == "__main__":  # run as a script: make the repository importable
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from uniapi_core.config.model import Provider  # noqa: E402
from uniapi_core.errors import ClientError, DecodeError  # noqa: E402
from uniapi_core.jsonutil import parse_request_json  # noqa: E402
from uniapi_core.vendors.base import (ChatContext, StreamChunk, StreamDone,  # noqa: E402
                                      StreamItem)
from uniapi_core.vendors.cohere import CohereStreamDecoder, build_exchange  # noqa: E402

KEY = "co-FUZZKEY"
DECODER = CohereStreamDecoder


def context(*, include_usage: bool = False, stream: bool = True, client_model: str = "co",
            upstream_model: str = "command-a-03-2025", base_url: str | None = None,
            seed: int = 0) -> ChatContext:
    """A fresh context (fresh entropy) so that runs are comparable."""
    return ChatContext(client_model=client_model, upstream_model=upstream_model,
                       provider=Provider(provider="cohere", base_url=base_url, api=(KEY,)),
                       api_key=KEY, stream=stream, include_usage=include_usage,
                       response_id="chatcmpl-fuzz", created=1735689600,
                       entropy=random.Random(seed))


def normalize(items: list[StreamItem]) -> list[tuple[Any, ...]]:
    """Stream items as comparable tuples (exceptions do not compare by value)."""
    out: list[tuple[Any, ...]] = []
    for item in items:
        if isinstance(item, StreamChunk):
            out.append(("chunk", item.data))
        elif isinstance(item, StreamDone):
            out.append(("done", json.dumps(item.usage, sort_keys=True)))
        else:
            e = item.error
            out.append(("failed", e.message, e.kind, e.status, e.upstream_status, e.type,
                        e.code, e.headers))
    return out


def run(pieces: list[bytes], include_usage: bool = False
        ) -> tuple[list[tuple[Any, ...]], str | None]:
    """Feed ``pieces`` then close: (normalized items before any error, error kind or None)."""
    decoder = DECODER(context(include_usage=include_usage))
    items: list[StreamItem] = []
    try:
        for piece in pieces:
            items += decoder.feed(piece)
        items += decoder.close()
    except DecodeError as exc:
        return normalize(items), exc.kind
    return normalize(items), None


def openai_grammar(items: list[tuple[Any, ...]], include_usage: bool) -> dict[str, Any]:
    """Check the client chunks against vendor-protocols §0.1 and assemble the message.

    ``items`` are normalized; the stream may be unfinished (an error, or fewer items). Returns
    ``{"content", "reasoning", "tool_calls", "finish", "usage"}``.
    """
    out: dict[str, Any] = {"content": "", "reasoning": "", "tool_calls": [], "finish": None,
                           "usage": None}
    head: tuple[Any, ...] | None = None
    ended = False
    for n, item in enumerate(items):
        assert not ended, "nothing may follow StreamDone/StreamFailed"
        if item[0] != "chunk":
            ended = True
            if item[0] == "done":
                assert out["finish"] is not None, "StreamDone without a finish chunk"
                assert (out["usage"] is not None) == include_usage
            continue
        data: bytes = item[1]
        assert data.startswith(b"data: ") and data.endswith(b"\n\n"), data
        assert b"\n" not in data[:-2] and b"\r" not in data, "one line per chunk (S-8)"
        text = data[6:-2].decode("utf-8")
        assert "\u2028" not in text and "\u2029" not in text, "S-8"
        obj = json.loads(text)
        assert obj["object"] == "chat.completion.chunk"
        key = (obj["id"], obj["created"], obj["model"])
        assert head is None or key == head, "one id/created/model per stream (O-1..O-3)"
        head = key
        assert ("usage" in obj) == include_usage, "S-5"
        if obj["choices"] == []:
            assert include_usage and out["finish"] is not None and out["usage"] is None
            out["usage"] = obj["usage"]
            continue
        assert out["finish"] is None, "no content after the finish chunk (S-4)"
        assert obj.get("usage") is None
        (choice,) = obj["choices"]
        assert choice["index"] == 0
        delta = choice["delta"]
        if n == 0:
            assert delta == {"role": "assistant", "content": ""} and \
                choice["finish_reason"] is None, "role chunk first (S-1)"
            continue
        assert "role" not in delta, "exactly one role chunk (S-1)"
        if choice["finish_reason"] is not None:
            assert delta == {}, "S-4"
            assert choice["finish_reason"] in ("stop", "length", "tool_calls", "content_filter")
            out["finish"] = choice["finish_reason"]
            continue
        assert len(delta) == 1, delta
        if "content" in delta:
            assert isinstance(delta["content"], str) and delta["content"], "S-7"
            out["content"] += delta["content"]
        elif "reasoning_content" in delta:
            assert delta["reasoning_content"], "S-7"
            out["reasoning"] += delta["reasoning_content"]
        else:
            (call,) = delta["tool_calls"]
            calls = out["tool_calls"]
            if "id" in call:  # tool_start (S-2, S-3)
                assert call["index"] == len(calls), "indexes 0..n-1 in order (S-3)"
                assert call["type"] == "function" and isinstance(call["function"]["name"], str)
                assert set(call) == {"index", "id", "type", "function"}
                assert isinstance(call["id"], str) and call["id"]
                calls.append({"id": call["id"], "name": call["function"]["name"],
                              "arguments": call["function"]["arguments"]})
            else:
                assert set(call) == {"index", "function"} and call["index"] < len(calls)
                assert call["function"]["arguments"], "S-7"
                calls[call["index"]]["arguments"] += call["function"]["arguments"]
    if out["finish"] is not None or items and items[-1][0] == "done":
        assert items[0][0] == "chunk", "a finished stream starts with the role chunk"
    if out["finish"] is not None:
        assert all(c["arguments"] for c in out["tool_calls"]), "TC-3: at least {}"
    return out


def _cut(data: bytes, positions: list[int]) -> list[bytes]:
    bounds = [0, *positions, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def _splits(data: bytes) -> list[list[bytes]]:
    """Ways to cut ``data``, derived from the data so that the fuzzer can steer them."""
    n = len(data)
    out = [[data]]
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


def _check_stream(data: bytes) -> None:
    include_usage = bool(data) and data[-1] % 2 == 1
    ref, ref_kind = run([data[i:i + 1] for i in range(len(data))], include_usage)
    for pieces in _splits(data):
        items, kind = run(pieces, include_usage)
        assert kind == ref_kind and items == ref, (pieces, kind, ref_kind, items, ref)
    openai_grammar(ref, include_usage)
    if ref_kind is None:
        assert ref and ref[-1][0] in ("done", "failed"), "close() always ends the stream"


def _check_request(data: bytes) -> None:
    try:
        obj = parse_request_json(data)
    except ClientError:
        return
    if isinstance(obj, list):
        obj = {"model": "co", "messages": obj}
    if not isinstance(obj, dict):
        return
    h = sum(data) if data else 0
    ctx_args = {"stream": h % 2 == 0,
                "base_url": (None, "https://api.cohere.com/v1/chat", "http://127.0.0.1:9/x")[h % 3]}
    try:
        exchange = build_exchange(obj, context(**ctx_args))
    except ClientError:
        return
    request = exchange.request
    assert build_exchange(obj, context(**ctx_args)).request == request, "builders are pure"
    assert request.url.endswith("/v2/chat") and ("authorization", f"Bearer {KEY}") in \
        request.headers
    body = json.loads(request.body)
    assert body["model"] == "command-a-03-2025" and body["stream"] is ctx_args["stream"]
    assert isinstance(body["messages"], list) and body["messages"]
    assert all(m["role"] in ("system", "user", "assistant", "tool") for m in body["messages"])


def check(data: bytes) -> None:
    """The fuzz oracle: raise ``AssertionError`` (or anything unexpected) on a finding."""
    _check_stream(data)
    _check_request(data)


def main() -> None:
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
