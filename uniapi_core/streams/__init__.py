"""Stream framing for vendor byte streams: line splitting and server-sent events; and the
validator of the chat streams the gateway sends (``check``, docs/architecture.md).

Pure and incremental: bytes in, lines or events out, ``DecodeError`` for malformed input
(docs/contracts.md: the decoder contract, SSE framing).
"""

from __future__ import annotations

from .check import ChatStreamChecker, check_chat_body, check_chat_stream
from .lines import LineSplitter
from .sse import DONE, SSEDecoder, SSEEvent, encode_event

__all__ = ["DONE", "ChatStreamChecker", "LineSplitter", "SSEDecoder", "SSEEvent", "check_chat_body",
           "check_chat_stream", "encode_event"]
