"""What every front reads of the relay's stream: the ``chat.completion.chunk`` objects of a
batch of client-ready OpenAI SSE events (a ``StreamChunk``'s ``data``, possibly several events).
``data:`` lines only; ``[DONE]``, blank payloads, comments, other fields, text that is not JSON
and JSON that is not an object are skipped (the decoders upstream of it have checked them)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..jsonutil import loads_upstream

__all__ = ["chat_chunks"]


def chat_chunks(data: bytes) -> Iterator[dict[str, Any]]:
    """The chunk objects in ``data``, in order (module docstring)."""
    for line in data.split(b"\n"):
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if not payload or payload == b"[DONE]":
            continue
        try:
            chunk = loads_upstream(payload)
        except ValueError:
            continue
        if type(chunk) is dict:
            yield chunk
