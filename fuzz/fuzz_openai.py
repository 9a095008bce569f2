"""Fuzz target for the OpenAI-compatible stream decoder and request builder.

    python fuzz/fuzz_openai.py -max_total_time=60 fuzz/corpus/openai

``check(data)``: as upstream bytes, ``OpenAIStreamDecoder`` lets only ``DecodeError`` escape and
gives the same items and error kind whether fed whole, one byte at a time, or cut at points
read from the data (DEC-1, DEC-2); as a client request, ``build_exchange`` gives a request whose
body is the input with only ``model`` replaced.
"""

from __future__ import annotations

import json
import sys
from typing import Any

if __name__ == "__main__":
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from uniapi_core.config.model import Provider  # noqa: E402
from uniapi_core.errors import ClientError, DecodeError  # noqa: E402
from uniapi_core.jsonutil import parse_request_json  # noqa: E402
from uniapi_core.vendors.base import ChatContext  # noqa: E402
from uniapi_core.vendors.openai import OpenAIStreamDecoder, build_exchange  # noqa: E402


def _run(pieces: list[bytes]) -> tuple[list[tuple[Any, ...]], str | None]:
    dec = OpenAIStreamDecoder("client-model")
    items: list[Any] = []
    error = None
    try:
        for piece in pieces:
            items += dec.feed(piece)
        items += dec.close()
    except DecodeError as exc:
        error = exc.kind
    return [(type(i).__name__, getattr(i, "data", None),
             getattr(getattr(i, "error", None), "kind", None)) for i in items], error


def check(data: bytes) -> None:
    whole = _run([data])
    assert _run([data[i:i + 1] for i in range(len(data))]) == whole
    step = (data[0] % 13 + 1) if data else 1
    assert _run([data[i:i + step] for i in range(0, len(data), step)]) == whole
    try:
        req = parse_request_json(data)
    except ClientError:
        return
    if not isinstance(req, dict):
        return
    ctx = ChatContext(client_model="c", upstream_model="u",
                      provider=Provider(provider="p", base_url="https://h/v1"), api_key="k",
                      stream=True, include_usage=False, response_id="x", created=0)
    sent = json.loads(build_exchange(req, ctx).request.body)
    assert sent == dict(req, model="u")


def main() -> None:  # pragma: no cover - needs atheris
    import atheris

    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
