"""Fuzz target for the OpenAI-compatible stream decoder and request builder.

    python fuzz/fuzz_openai.py -max_total_time=60 fuzz/corpus/openai

``check(data)``: as upstream bytes, ``OpenAIStreamDecoder`` lets only ``DecodeError`` escape and
gives the same items and error kind whether fed whole, one byte at a time, or cut at points
read from the data (DEC-1, DEC-2), and what a client would receive from those items passes the
core's chat stream validator (``uniapi_core/streams/check.py``, through ``client_problems``); as
a whole upstream answer, ``parse_body`` gives a body that passes it too (``body_problems``) or
raises ``UpstreamError``; as a client request, ``build_exchange`` gives a request whose body is
the input with only ``model`` replaced and, as it is a stream, ``stream_options.include_usage``
set (OAI-4).
"""

from __future__ import annotations

import json
import sys
from typing import Any

if __name__ == "__main__":
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz._oracle import body_problems, client_problems, fuzz  # noqa: E402
from uniapi_core.config.model import Provider  # noqa: E402
from uniapi_core.errors import ClientError, DecodeError, UpstreamError  # noqa: E402
from uniapi_core.jsonutil import parse_request_json  # noqa: E402
from uniapi_core.vendors.base import ChatContext  # noqa: E402
from uniapi_core.vendors.openai import OpenAIStreamDecoder, build_exchange  # noqa: E402


def _items(pieces: list[bytes]) -> tuple[list[Any], str | None]:
    """The decoder's items for ``pieces`` (fed, then closed), and the kind of the
    ``DecodeError`` that stopped it, if one did."""
    dec = OpenAIStreamDecoder("client-model")
    items: list[Any] = []
    error = None
    try:
        for piece in pieces:
            items += dec.feed(piece)
        items += dec.close()
    except DecodeError as exc:
        error = exc.kind
    return items, error


def _run(pieces: list[bytes]) -> tuple[list[tuple[Any, ...]], str | None]:
    items, error = _items(pieces)
    return [(type(i).__name__, getattr(i, "data", None),
             getattr(getattr(i, "error", None), "kind", None)) for i in items], error


def _context(stream: bool) -> ChatContext:
    return ChatContext(client_model="c", upstream_model="u",
                       provider=Provider(provider="p", base_url="https://h/v1"), api_key="k",
                       stream=stream, include_usage=False, response_id="x", created=0)


def _check_body(data: bytes) -> None:
    """As a whole upstream answer: ``parse_body`` gives a body that passes the validator, or
    raises ``UpstreamError``."""
    exchange = build_exchange({"model": "c", "messages": [{"role": "user", "content": "hi"}]},
                              _context(stream=False))
    try:
        body = exchange.parse_body(200, (), data)
    except UpstreamError:
        return
    problems = body_problems(body)
    assert not problems, f"the chat stream validator: {problems}"


def check(data: bytes) -> None:
    whole = _run([data])
    assert _run([data[i:i + 1] for i in range(len(data))]) == whole
    step = (data[0] % 13 + 1) if data else 1
    assert _run([data[i:i + step] for i in range(0, len(data), step)]) == whole
    problems = client_problems(*_items([data]))
    assert not problems, f"the chat stream validator: {problems}"
    _check_body(data)
    try:
        req = parse_request_json(data)
    except ClientError:
        return
    if not isinstance(req, dict):
        return
    sent = json.loads(build_exchange(req, _context(stream=True)).request.body)
    want = dict(req, model="u")  # OAI-3, and OAI-4: a stream asks for usage
    options = req.get("stream_options")
    if options is None or isinstance(options, dict):
        want["stream_options"] = {**(options or {}), "include_usage": True}
    assert sent == want


if __name__ == "__main__":
    fuzz(check)
