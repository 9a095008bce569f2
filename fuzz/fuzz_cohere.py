"""Fuzz target for the Cohere v2 translator (``uniapi_core.vendors.cohere``).

Run it (needs ``pip install atheris``)::

    python fuzz/fuzz_cohere.py -max_total_time=60 fuzz/corpus/cohere

``check(data)`` is the whole oracle; ``tests/core/test_fuzz_corpora.py`` replays
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

from fuzz._oracle import _splits, client_problems, fuzz, normalize, openai_grammar  # noqa: E402,F401
from uniapi_core.config.model import Provider  # noqa: E402
from uniapi_core.errors import ClientError, DecodeError  # noqa: E402
from uniapi_core.jsonutil import parse_request_json  # noqa: E402
from uniapi_core.vendors.base import ChatContext, StreamItem  # noqa: E402
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


if __name__ == "__main__":
    fuzz(check)
