"""Fuzz target for the Cloudflare Workers AI translator (``uniapi_core.vendors.cloudflare``).

Run it (needs ``pip install atheris``)::

    python fuzz/fuzz_cloudflare.py -max_total_time=60 fuzz/corpus/cloudflare

``check(data)`` is the whole oracle; ``tests/core/test_fuzz_corpora.py``
replays ``fuzz/corpus/cloudflare/`` through it without atheris. Every input is used twice:

* as upstream stream bytes for ``CloudflareStreamDecoder``: only ``DecodeError`` escapes
  (DEC-2); every way of cutting the bytes (one byte at a time, whole, strides, cut points read
  from the data) gives the same items and error kind (DEC-1); the client chunks follow the
  OpenAI stream grammar (S-1..S-8, TC-3) — the checker is shared with ``fuzz_cohere.py``;
* as a client request for ``build_exchange``: an exchange or ``ClientError``, nothing else;
  a built request is deterministic, goes to ``…/accounts/<id>/ai/run/<model>`` on the
  base_url's origin with a Bearer token, and has string-content messages.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
if __name__ == "__main__":  # run as a script: make the repository importable
    sys.path.insert(0, str(_HERE.parent))

from fuzz._oracle import _splits, client_problems, fuzz, normalize, openai_grammar  # noqa: E402,F401
from uniapi_core.config.model import Provider  # noqa: E402
from uniapi_core.errors import ClientError, DecodeError  # noqa: E402
from uniapi_core.jsonutil import parse_request_json  # noqa: E402
from uniapi_core.vendors.base import ChatContext, StreamItem  # noqa: E402
from uniapi_core.vendors.cloudflare import CloudflareStreamDecoder, build_exchange  # noqa: E402

KEY = "cf-FUZZTOKEN"
ACCOUNT = "0123456789abcdef0123456789abcdef"
MODEL = "@cf/meta/llama-3.1-8b-instruct"


def context(*, include_usage: bool = False, stream: bool = True, client_model: str = "llama",
            upstream_model: str = MODEL, base_url: str | None = None,
            seed: int = 0) -> ChatContext:
    """A fresh context (fresh entropy) so that runs are comparable."""
    return ChatContext(client_model=client_model, upstream_model=upstream_model,
                       provider=Provider(provider="cf", base_url=base_url, api=(KEY,),
                                         cf_account_id=ACCOUNT),
                       api_key=KEY, stream=stream, include_usage=include_usage,
                       response_id="chatcmpl-fuzz", created=1735689600,
                       entropy=random.Random(seed))


def run(pieces: list[bytes], include_usage: bool = False
        ) -> tuple[list[tuple[Any, ...]], str | None]:
    """Feed ``pieces`` then close: (normalized items before any error, error kind or None)."""
    decoder = CloudflareStreamDecoder(context(include_usage=include_usage))
    items: list[StreamItem] = []
    try:
        for piece in pieces:
            items += decoder.feed(piece)
        items += decoder.close()
    except DecodeError as exc:
        return normalize(items), exc.kind
    return normalize(items), None


def _check_stream(data: bytes) -> None:
    include_usage = bool(data) and data[-1] % 2 == 1
    ref, ref_kind = run([data[i:i + 1] for i in range(len(data))], include_usage)
    for pieces in _splits(data):
        items, kind = run(pieces, include_usage)
        assert kind == ref_kind and items == ref, (pieces, kind, ref_kind, items, ref)
    openai_grammar(ref, include_usage)
    problems = client_problems(ref, ref_kind)  # the error the relay sends after a DecodeError too
    assert not problems, f"the chat stream validator: {problems}"
    if ref_kind is None:
        assert ref and ref[-1][0] in ("done", "failed"), "close() always ends the stream"


def _check_request(data: bytes) -> None:
    try:
        obj = parse_request_json(data)
    except ClientError:
        return
    if isinstance(obj, list):
        obj = {"model": "llama", "messages": obj}
    if not isinstance(obj, dict):
        return
    h = sum(data) if data else 0
    base = (None, "http://127.0.0.1:8787/anything?x=1")[h % 2]
    ctx_args = {"stream": h % 3 == 0, "base_url": base}
    try:
        exchange = build_exchange(obj, context(**ctx_args))
    except ClientError:
        return
    request = exchange.request
    assert build_exchange(obj, context(**ctx_args)).request == request, "builders are pure"
    origin = "http://127.0.0.1:8787" if base else "https://api.cloudflare.com"
    assert request.url == f"{origin}/client/v4/accounts/{ACCOUNT}/ai/run/{MODEL}"
    assert ("authorization", f"Bearer {KEY}") in request.headers
    body = json.loads(request.body)
    assert body["messages"] and all(isinstance(m["content"], str) for m in body["messages"])
    assert body.get("stream", False) is ctx_args["stream"]


def check(data: bytes) -> None:
    """The fuzz oracle: raise ``AssertionError`` (or anything unexpected) on a finding."""
    _check_stream(data)
    _check_request(data)


if __name__ == "__main__":
    fuzz(check)
