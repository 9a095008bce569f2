"""Regenerate the Bedrock fixtures: ``python tests/data/bedrock/make_fixtures.py``.

The ``.bin`` files are AWS binary event streams (docs/vendor-rules.md) written with the small
encoder below from Anthropic stream events, shaped like what
``InvokeModelWithResponseStream`` sends for Claude: every ``chunk`` frame carries
``{"bytes": <base64 Anthropic event>, "p": <padding>}`` and the final ``message_stop`` event
carries ``amazon-bedrock-invocationMetrics``. The same files (plus a few corrupt variants)
seed the fuzz corpus ``fuzz/corpus/bedrock/``. The encoder is test code, independent of the
decoder under test; botocore's parser is the oracle for it in ``test_eventstream.py``.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parents[2] / "fuzz" / "corpus" / "bedrock"
PAD = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123"


def header(name: str, value: Any) -> bytes:
    """One header; ``str`` → type 7, ``bytes`` → 6, ``bool`` → 0/1, ``int`` → 4 (int32)."""
    raw = name.encode()
    out = bytes([len(raw)]) + raw
    if isinstance(value, bool):
        return out + bytes([0 if value else 1])
    if isinstance(value, int):
        return out + b"\x04" + struct.pack(">i", value)
    if isinstance(value, str):
        value = value.encode()
        return out + b"\x07" + struct.pack(">H", len(value)) + value
    return out + b"\x06" + struct.pack(">H", len(value)) + value


def frame(headers: list[tuple[str, Any]] | bytes, payload: bytes) -> bytes:
    """A complete frame: prelude, prelude CRC, headers, payload, message CRC."""
    block = headers if isinstance(headers, bytes) else b"".join(header(k, v) for k, v in headers)
    total = 16 + len(block) + len(payload)
    prelude = struct.pack(">II", total, len(block))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + block + payload
    return body + struct.pack(">I", zlib.crc32(body))


def compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def chunk(event: dict[str, Any], n: int = 0) -> bytes:
    """An ``event``/``chunk`` frame carrying one Anthropic event (BR-S5)."""
    payload = compact({"bytes": base64.b64encode(compact(event)).decode(),
                       "p": PAD[:(7 * n + 3) % len(PAD) + 1]})
    return frame([(":event-type", "chunk"), (":content-type", "application/json"),
                  (":message-type", "event")], payload)


def exception(kind: str, message: str) -> bytes:
    """An ``exception`` frame (``:exception-type`` ``kind``, payload ``{"message"}``)."""
    return frame([(":exception-type", kind), (":content-type", "application/json"),
                  (":message-type", "exception")], compact({"message": message}))


def stream(events: list[dict[str, Any]]) -> bytes:
    return b"".join(chunk(e, i) for i, e in enumerate(events))


def start(usage: dict[str, Any] | None = None) -> dict[str, Any]:
    message = {"id": "msg_bdrk_01XFDUDYJgAACzvnptvVoYEL", "type": "message",
               "role": "assistant", "model": "claude-3-5-sonnet-20240620", "content": [],
               "stop_reason": None, "stop_sequence": None}
    if usage is not None:
        message["usage"] = usage
    return {"type": "message_start", "message": message}


def text_block(index: int, *parts: str) -> list[dict[str, Any]]:
    return [{"type": "content_block_start", "index": index,
             "content_block": {"type": "text", "text": ""}},
            *({"type": "content_block_delta", "index": index,
               "delta": {"type": "text_delta", "text": p}} for p in parts),
            {"type": "content_block_stop", "index": index}]


def tool_block(index: int, call_id: str, name: str, *fragments: str) -> list[dict[str, Any]]:
    return [{"type": "content_block_start", "index": index,
             "content_block": {"type": "tool_use", "id": call_id, "name": name, "input": {}}},
            *({"type": "content_block_delta", "index": index,
               "delta": {"type": "input_json_delta", "partial_json": f}} for f in fragments),
            {"type": "content_block_stop", "index": index}]


def stop(reason: str, output_tokens: int | None, metrics: tuple[int, int],
         cache: tuple[int, int] | None = None) -> list[dict[str, Any]]:
    """``message_delta`` and the final ``message_stop`` with the invocation metrics: input and
    output counts and, for an answer that used the prompt cache, its reads and writes."""
    delta: dict[str, Any] = {"type": "message_delta",
                             "delta": {"stop_reason": reason, "stop_sequence": None}}
    if output_tokens is not None:
        delta["usage"] = {"output_tokens": output_tokens}
    counts: dict[str, int] = {"inputTokenCount": metrics[0], "outputTokenCount": metrics[1],
                              "invocationLatency": 1234, "firstByteLatency": 321}
    if cache is not None:
        counts |= {"cacheReadInputTokenCount": cache[0], "cacheWriteInputTokenCount": cache[1]}
    return [delta, {"type": "message_stop", "amazon-bedrock-invocationMetrics": counts}]


USAGE = {"input_tokens": 25, "output_tokens": 1}

TEXT = stream([start(USAGE), *text_block(0, "¡Hola", ", mundo!", " 👋"),
               *stop("end_turn", 9, (25, 9))])

TOOLS = stream([
    start({"input_tokens": 412, "cache_read_input_tokens": 100,
           "cache_creation_input_tokens": 0, "output_tokens": 2}),
    *text_block(0, "I'll check both for you."),
    {"type": "ping"},
    *tool_block(1, "toolu_bdrk_01FmK2wYdQ8cR4vLp7Xn3TsB", "get_weather",
                "", '{"ci', 'ty": "Par', 'is", "unit": "celsius"}'),
    *tool_block(2, "toolu_bdrk_01Ab9xQeRt5uVw3YzK7mNp2L", "get_local_time",
                '{"timezone": "Europe/Paris", "label": "caf\\u00', 'e9 \\"noir\\""}'),
    *tool_block(3, "toolu_bdrk_01NoArgsNoArgsNoArgsNoAr", "list_cities"),
    *stop("tool_use", 96, (512, 96))])

THINKING = stream([
    start(USAGE),
    {"type": "content_block_start", "index": 0,
     "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
    {"type": "content_block_delta", "index": 0,
     "delta": {"type": "thinking_delta", "thinking": "17 × 24 = 17 × 20 + 17 × 4"}},
    {"type": "content_block_delta", "index": 0,
     "delta": {"type": "thinking_delta", "thinking": " = 340 + 68 = 408."}},
    {"type": "content_block_delta", "index": 0,
     "delta": {"type": "signature_delta", "signature": "EqQBCkgIBBABGAIiQBEDROCK"}},
    {"type": "content_block_stop", "index": 0},
    *text_block(1, "408"),
    *stop("end_turn", 40, (25, 40))])

#: no Anthropic usage anywhere: the invocation metrics are the only count (BR-S6)
METRICS_ONLY = stream([start(None), *text_block(0, "ok"),
                       {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}},
                       {"type": "message_stop", "amazon-bedrock-invocationMetrics": {
                           "inputTokenCount": 31, "outputTokenCount": 4,
                           "invocationLatency": 80, "firstByteLatency": 50}}])

#: a prompt-cached answer as Claude on Bedrock gives it: reads, a one-hour write, and the
#: same counts again in the invocation metrics (U-1, U-6)
CACHE_USAGE = {"input_tokens": 14, "cache_creation_input_tokens": 2051,
               "cache_read_input_tokens": 18420,
               "cache_creation": {"ephemeral_5m_input_tokens": 0,
                                  "ephemeral_1h_input_tokens": 2051},
               "output_tokens": 1}
CACHE = stream([start(CACHE_USAGE), *text_block(0, "Le contrat court jusqu'au 31 mars."),
                *stop("end_turn", 137, (14, 137), cache=(18420, 2051))])

#: no Anthropic usage: the invocation metrics give every count, the cache's included (U-6)
CACHE_METRICS_ONLY = stream([start(None), *text_block(0, "ok"),
                             *stop("end_turn", None, (31, 4), cache=(1536, 0))])

#: throttled right after message_start: nothing was sent to the client, retryable
THROTTLED = stream([start(USAGE)]) + exception(
    "throttlingException", "Too many requests, please wait before trying again.")

#: the model failed mid-answer (424 modelStreamErrorException)
MODEL_ERROR = stream([start(USAGE), *text_block(0, "Partial answer")[:2]]) + exception(
    "modelStreamErrorException",
    "Model 'anthropic.claude-3-5-sonnet-20240620-v1:0' failed to process the request.")

#: the connection dropped inside the 4th frame
CUT = TEXT[: len(stream([start(USAGE), *text_block(0, "¡Hola", ", mundo!")[:2]])) + 37]

MESSAGE = {"id": "msg_bdrk_01Aq9w938a90dw8q", "type": "message", "role": "assistant",
           "model": "claude-3-5-sonnet-20240620",
           "content": [{"type": "text", "text": "Let me check."},
                       {"type": "tool_use", "id": "toolu_bdrk_01A09q90qw90lq917835lq9",
                        "name": "get_weather", "input": {"city": "Paris", "unit": "celsius"}}],
           "stop_reason": "tool_use", "stop_sequence": None,
           "usage": {"input_tokens": 380, "output_tokens": 67}}

#: a whole answer with the prompt cache's counts (U-1)
MESSAGE_CACHED = {"id": "msg_bdrk_01Kc4v8Wq2Lm6Tz9Rx3Yb7Hn", "type": "message",
                  "role": "assistant", "model": "claude-sonnet-4-20250514",
                  "content": [{"type": "text", "text": "Le contrat court jusqu'au 31 mars."}],
                  "stop_reason": "end_turn", "stop_sequence": None,
                  "usage": {"input_tokens": 22, "cache_creation_input_tokens": 0,
                            "cache_read_input_tokens": 20471,
                            "cache_creation": {"ephemeral_5m_input_tokens": 0,
                                               "ephemeral_1h_input_tokens": 0},
                            "output_tokens": 131}}

ERROR_VALIDATION = {"message": "messages.1.content.0.tool_result.tool_use_id: unexpected "
                               "`tool_use_id` found in `tool_result` blocks"}
ERROR_THROTTLING = {"message": "Too many requests, please wait before trying again. You have "
                               "sent too many requests.  Wait before trying again."}

FILES: dict[str, bytes] = {
    "text_stream.bin": TEXT,
    "tools_stream.bin": TOOLS,
    "thinking_stream.bin": THINKING,
    "metrics_only_stream.bin": METRICS_ONLY,
    "throttled_stream.bin": THROTTLED,
    "model_error_stream.bin": MODEL_ERROR,
    "cut_stream.bin": CUT,
    "cache_stream.bin": CACHE,
    "cache_metrics_only_stream.bin": CACHE_METRICS_ONLY,
    "message_tool_use.json": json.dumps(MESSAGE, indent=1).encode(),
    "message_cached.json": json.dumps(MESSAGE_CACHED, indent=1).encode(),
    "error_validation.json": compact(ERROR_VALIDATION),
    "error_throttling.json": compact(ERROR_THROTTLING),
}


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


#: the streams fuzz/corpus/bedrock/ is seeded with (the fixtures added since are not seeds:
#: the corpus is the fuzz targets' business)
SEEDS = ("text_stream.bin", "tools_stream.bin", "thinking_stream.bin", "metrics_only_stream.bin",
         "throttled_stream.bin", "model_error_stream.bin", "cut_stream.bin")

CORPUS_FILES: dict[str, bytes] = {
    **{k: FILES[k] for k in SEEDS},
    "bad_prelude_crc.bin": _flip(TEXT, 9),
    "bad_message_crc.bin": _flip(TEXT, len(chunk(start(USAGE))) - 2),
    "bad_length.bin": b"\xff\xff\xff\xff\x00\x00\x00\x00" + struct.pack(
        ">I", zlib.crc32(b"\xff\xff\xff\xff\x00\x00\x00\x00")) + b"x" * 8,
    "bad_header_type.bin": frame(b"\x03abc\x0b", b"{}"),
    "bad_base64.bin": frame([(":event-type", "chunk"), (":message-type", "event")],
                            b'{"bytes":"!!!not base64"}'),
    "error_frame.bin": frame([(":message-type", "error"), (":error-code", "InternalFailure"),
                              (":error-message", "An internal error occurred")], b""),
    "error_validation.json": FILES["error_validation.json"],
    "message_tool_use.json": FILES["message_tool_use.json"],
}


def main() -> None:
    for name, data in FILES.items():
        (HERE / name).write_bytes(data)
    CORPUS.mkdir(parents=True, exist_ok=True)
    for name, data in CORPUS_FILES.items():
        (CORPUS / name).write_bytes(data)


if __name__ == "__main__":
    main()
