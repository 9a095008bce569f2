"""Throughput of LineSplitter + SSEDecoder on realistic OpenAI stream chunks.

Plain script (h11 ``bench/`` shape): ``python benchmarks/bench_sse.py`` prints MB/s for
~10 MB of ``chat.completion.chunk`` events fed in 4 KiB pieces, with LF and CRLF framing,
and for the encoder.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from uniapi_core.streams import LineSplitter, SSEDecoder, encode_event  # noqa: E402

TARGET = 10 * 1024 * 1024
PIECE = 4096
WORDS = ["Hello", " world", ",", " the", " quick", " brown", " fox", " jumps", " über", " 猫",
         " over", " lazy", " dogs", ".\n"]


def openai_stream(crlf: bool = False) -> bytes:
    """~TARGET bytes of OpenAI chat-completion chunks, as an upstream sends them."""
    events = []
    size = 0
    i = 0
    while size < TARGET:
        chunk = {
            "id": "chatcmpl-9XfZk3ZLq0w8cYb2mT4bVhQ1rJx7N",
            "object": "chat.completion.chunk",
            "created": 1718000000,
            "model": "gpt-4o-2024-05-13",
            "system_fingerprint": "fp_319be4768e",
            "choices": [{"index": 0, "delta": {"content": WORDS[i % len(WORDS)] * (1 + i % 5)},
                         "logprobs": None, "finish_reason": None}],
        }
        ev = encode_event(json.dumps(chunk, ensure_ascii=False, separators=(",", ":")))
        if crlf:
            ev = ev.replace(b"\n", b"\r\n")
        events.append(ev)
        size += len(ev)
        i += 1
        if i % 50 == 0:
            events.append(b": keep-alive\r\n\r\n" if crlf else b": keep-alive\n\n")
    return b"".join(events)


def pieces(data: bytes, n: int = PIECE) -> list[bytes]:
    return [data[i:i + n] for i in range(0, len(data), n)]


def time_lines(chunks: list[bytes]) -> int:
    s = LineSplitter()
    n = 0
    for c in chunks:
        n += len(s.feed(c))
    s.close()
    return n


def time_sse(chunks: list[bytes]) -> int:
    d = SSEDecoder()
    n = 0
    for c in chunks:
        n += len(d.feed(c))
    n += len(d.close())
    return n


def time_encode(payloads: list[str]) -> int:
    return sum(len(encode_event(p)) for p in payloads)


def rate(fn, arg, nbytes: int, repeat: int = 5) -> tuple[float, int]:
    best = float("inf")
    result = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn(arg)
        best = min(best, time.perf_counter() - t0)
    return nbytes / best / 1e6, result


def main() -> None:
    for label, crlf in (("LF", False), ("CRLF", True)):
        data = openai_stream(crlf)
        chunks = pieces(data)
        mbs, n = rate(time_lines, chunks, len(data))
        print(f"LineSplitter  {label:4}: {mbs:7.1f} MB/s  ({len(data) / 1e6:.1f} MB, {n} lines)")
        mbs, n = rate(time_sse, chunks, len(data))
        print(f"SSEDecoder    {label:4}: {mbs:7.1f} MB/s  ({len(data) / 1e6:.1f} MB, {n} events)")
    data = openai_stream()
    payloads = [e.data for e in SSEDecoder().feed(data)]
    mbs, n = rate(time_encode, payloads, len(data))
    print(f"encode_event     : {mbs:7.1f} MB/s  ({len(payloads)} events)")


if __name__ == "__main__":
    main()
