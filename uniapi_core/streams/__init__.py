"""Stream framing for vendor byte streams: line splitting and server-sent events.

Pure and incremental: bytes in, lines or events out, ``DecodeError`` for malformed input
(docs/contracts.md: the decoder contract, SSE framing).
"""

from __future__ import annotations

from .lines import LineSplitter
from .sse import DONE, SSEDecoder, SSEEvent, encode_event

__all__ = ["LineSplitter", "SSEDecoder", "SSEEvent", "encode_event", "DONE"]
