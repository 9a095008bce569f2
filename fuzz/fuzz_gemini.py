"""Fuzz target for the Gemini translator (``uniapi_core.vendors.gemini``).

Run it (needs ``pip install atheris``)::

    python fuzz/fuzz_gemini.py -max_total_time=60 fuzz/corpus/gemini

``check(data)`` is the whole oracle; ``tests/core/test_fuzz_corpora.py`` replays
``fuzz/corpus/gemini/`` through it without atheris. Every input is used twice:

* as upstream stream bytes for ``GeminiStreamDecoder``: only ``DecodeError`` escapes (DEC-2);
  feeding the bytes one byte at a time, whole, in fixed strides and at cut points read from
  the data gives exactly the same items and the same error kind (DEC-1: the decoder returns
  what it completed before an error and raises on the next call, so even failing runs agree).
  The client chunks must follow the OpenAI stream grammar (``openai_grammar``: S-1..S-8),
  whether the stream ends with ``StreamDone``, ``StreamFailed`` or a ``DecodeError``;
* as a client request (a JSON object, or a JSON list used as ``messages``) for
  ``build_exchange``: it returns an exchange or raises ``ClientError``/``ImagesNeeded``, nothing
  else; a built request is deterministic, keeps the key out of the URL and has contents.
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
from uniapi_core.vendors.base import ChatContext, ImagesNeeded, StreamItem  # noqa: E402
from uniapi_core.vendors.gemini import GeminiStreamDecoder, build_exchange  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
KEY = "AIzaFUZZKEY"


def context(*, include_usage: bool = False, stream: bool = True, client_model: str = "gem",
            upstream_model: str = "gemini-2.5-flash", base_url: str | None = None,
            images: dict[str, tuple[str, bytes]] | None = None, seed: int = 0) -> ChatContext:
    """A fresh context (fresh entropy) so that runs are comparable."""
    return ChatContext(client_model=client_model, upstream_model=upstream_model,
                       provider=Provider(provider="gemini", base_url=base_url, api=(KEY,)),
                       api_key=KEY, stream=stream, include_usage=include_usage,
                       response_id="chatcmpl-fuzz", created=1735689600,
                       images=images or {}, entropy=random.Random(seed))


def run(pieces: list[bytes], include_usage: bool = False
        ) -> tuple[list[tuple[Any, ...]], str | None]:
    """Feed ``pieces`` then close: (normalized items before any error, error kind or None)."""
    decoder = GeminiStreamDecoder(context(include_usage=include_usage))
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
        obj = {"model": "gem", "messages": obj}
    if not isinstance(obj, dict):
        return
    h = sum(data) if data else 0
    ctx_args = {"stream": h % 2 == 0,
                "client_model": ("gem", "gem-search", "gem-think-2048")[h % 3],
                "upstream_model": ("gemini-2.5-pro", "gemini-3-pro-preview",
                                   "gemini-2.0-flash", "models/gemini-2.5-flash")[h % 4],
                "images": {"https://img.example/a.png": ("image/png", PNG)}}
    try:
        exchange = build_exchange(obj, context(**ctx_args))
    except (ClientError, ImagesNeeded):
        return
    request = exchange.request
    again = build_exchange(obj, context(**ctx_args)).request
    assert again == request, "builders are pure"
    assert KEY not in request.url and ("x-goog-api-key", KEY) in request.headers
    assert request.url.endswith((":generateContent", ":streamGenerateContent?alt=sse"))
    body = json.loads(request.body)
    assert isinstance(body["contents"], list) and body["contents"]
    assert all(c["role"] in ("user", "model") and c["parts"] for c in body["contents"])


def check(data: bytes) -> None:
    """The fuzz oracle: raise ``AssertionError`` (or anything unexpected) on a finding."""
    _check_stream(data)
    _check_request(data)


if __name__ == "__main__":
    fuzz(check)
