"""Fuzz target for the Bedrock translator (``eventstream`` + ``bedrock``; docs/vendor-rules.md).

Run it (needs ``pip install atheris``)::

    python fuzz/fuzz_bedrock.py -max_total_time=60 fuzz/corpus/bedrock

``check(data)`` is the whole oracle; the test suite replays ``fuzz/corpus/bedrock/`` through it
without atheris (``tests/core/test_fuzz_corpora.py``). The seeds are written by
``tests/data/bedrock/make_fixtures.py``. For each input it asserts:

* event-stream decoder: only ``DecodeError`` escapes (DEC-2, BR-S3); whole, one-byte, strided
  and data-derived splits give identical messages and the same error kind (DEC-1, BR-S2,
  including cuts inside the 12-byte prelude); a partial frame at EOF is ``truncated`` (BR-S7);
* Bedrock stream decoder: the same invariance for the OpenAI items; every chunk is one
  ``data: <json>\\n\\n`` event, nothing follows ``StreamDone``/``StreamFailed``, a
  ``StreamFailed`` carries a client status between 400 and 599, and what a client would
  receive passes the core's chat stream validator (``client_problems``);
* whole bodies: ``parse_body`` returns a JSON body that passes the core's validator
  (``body_problems``) or raises ``UpstreamError``; ``parse_error`` returns an ``UpstreamError``
  with and without an ``x-amzn-errortype`` header (ERR-3, ERR-4).
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
from uniapi_core.errors import DecodeError, UpstreamError  # noqa: E402
from uniapi_core.vendors.base import (  # noqa: E402
    ChatContext,
    StreamChunk,
    StreamDone,
    StreamFailed,
)
from uniapi_core.vendors.bedrock import BedrockExchange  # noqa: E402
from uniapi_core.vendors.eventstream import EventStreamDecoder  # noqa: E402

_PROVIDER = Provider(provider="fuzz", aws_access_key="AKID", aws_secret_key="secret",
                     aws_region="us-east-1")


def _ctx(stream: bool = True) -> ChatContext:
    return ChatContext(client_model="claude-bedrock",
                       upstream_model="anthropic.claude-3-5-sonnet-20240620-v1:0",
                       provider=_PROVIDER, api_key=None, stream=stream, include_usage=True,
                       response_id="chatcmpl-fuzz", created=1, entropy=random.Random(0))


def _cut(data: bytes, positions: list[int]) -> list[bytes]:
    bounds = [0, *positions, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def _splits(data: bytes) -> list[list[bytes]]:
    """Ways to cut ``data``, derived from the data so that the fuzzer can steer them."""
    n = len(data)
    out = [[data[i:i + 1] for i in range(n)]]
    if n:
        stride = data[0] % 13 + 2
        out.append(_cut(data, list(range(stride, n, stride))))
        walk, pos, i = [], 0, 0
        while True:  # steps of 1..16 bytes, read from the data cyclically
            pos += data[i % n] % 16 + 1
            i += 1
            if pos >= n:
                break
            walk.append(pos)
        out.append(_cut(data, walk))
        out.append(_cut(data, [k for k in (5, 11, 12, 13) if k < n]))  # inside the prelude
    return out


def _frames(pieces: list[bytes]) -> tuple[list[Any], str | None]:
    dec = EventStreamDecoder()
    out: list[Any] = []
    try:
        for p in pieces:
            out += dec.feed(p)
        dec.close()
    except DecodeError as exc:
        return out, exc.kind
    return out, None


def _items(pieces: list[bytes]) -> tuple[list[Any], str | None]:
    decoder = BedrockExchange(None, _ctx()).stream_decoder()  # type: ignore[arg-type]
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
            out.append(("failed", e.kind, e.type, e.code, e.status, e.upstream_status, e.message))
        else:
            out.append(it)
    return out


def _check_items(items: list[Any]) -> None:
    for k, it in enumerate(items):
        if isinstance(it, StreamChunk):
            assert it.data.startswith(b"data: ") and it.data.endswith(b"\n\n"), it
            json.loads(it.data[6:-2])
        else:
            assert isinstance(it, (StreamDone, StreamFailed)) and k == len(items) - 1, items
            if isinstance(it, StreamFailed):
                assert 400 <= it.error.status <= 599, it.error.status


def _check_streams(data: bytes) -> None:
    ref_frames = _frames([data])
    ref_items, ref_kind = _items([data])
    _check_items(ref_items)
    problems = client_problems(ref_items, ref_kind)
    assert not problems, f"the chat stream validator: {problems}"
    ref = _comparable(ref_items)
    for pieces in _splits(data):
        assert _frames(pieces) == ref_frames, pieces
        items, kind = _items(pieces)
        assert kind == ref_kind, (pieces, kind, ref_kind)
        assert _comparable(items) == ref, (pieces, items, ref_items)


def _check_bodies(data: bytes) -> None:
    ex = BedrockExchange(None, _ctx(stream=False))  # type: ignore[arg-type]
    for headers in ((), (("x-amzn-bedrock-input-token-count", "3"),
                         ("x-amzn-bedrock-output-token-count", "x"))):
        try:
            body = ex.parse_body(200, headers, data)
        except UpstreamError:
            continue
        problems = body_problems(body)
        assert not problems, f"the chat stream validator: {problems}"
    for status, headers in ((400, (("x-amzn-ErrorType", "ValidationException:http://x"),)),
                            (429, (("retry-after", "1"),)), (424, ()), (503, ())):
        assert isinstance(ex.parse_error(status, headers, data), UpstreamError)


def check(data: bytes) -> None:
    """The fuzz oracle: raise ``AssertionError`` (or anything unexpected) on a finding."""
    _check_streams(data)
    _check_bodies(data)


if __name__ == "__main__":
    fuzz(check)
