"""Translator micro-benchmarks (h11 ``bench/`` shape): plain ``time_*`` functions, a loop.

``python benchmarks/bench_translators.py [--quick] [--json OUT]`` prints:

* stream decoders, MB/s of upstream bytes fed in 4 KiB pieces: OpenAI (model name kept, and
  renamed so every event is re-encoded), Anthropic Messages and Gemini ``alt=sse``, each on a
  few MB of realistic events built from the shapes of ``tests/data/{anthropic,gemini}``;
* request building, µs per call, for the typical ~2 KB chat request: OpenAI, Azure,
  Anthropic, Gemini ``build_exchange``, streamed and not;
* core dispatch, µs per request: ``parse_request_json``; ``Gateway.handle`` + ``Relay.start``
  (auth, JSON, routing, request building) for a chat request; and the whole in-process hot
  path of ``hotpath.py`` (client bytes in, upstream bytes in, client bytes out; no I/O);
* the Anthropic Messages front (``fronts/messages.py``): a Messages request translated to chat
  (µs), a whole answer translated back (µs), the chunk stream turned into Anthropic events
  (MB/s of OpenAI chunks in).

Targets (issue #6): every decoder ≥ 50 MB/s; request building ≤ 50 µs.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from hotpath import HotPath, make_gateway  # noqa: E402
from payloads import (  # noqa: E402
    CLIENT_KEY,
    JSON_MODEL,
    chat_request,
    chat_request_bytes,
    completion_bytes,
    sse_body,
)
from uniapi_core.config.model import Provider  # noqa: E402
from uniapi_core.jsonutil import parse_request_json  # noqa: E402
from uniapi_core.vendors import anthropic, azure, gemini, openai  # noqa: E402
from uniapi_core.vendors.base import ChatContext, StreamChunk, StreamDone  # noqa: E402

DATA = ROOT / "tests" / "data"
TARGET = 4 * 1024 * 1024  # bytes of stream per decoder run
PIECE = 4096

PROVIDERS = {
    "openai": Provider(provider="openai", base_url="https://api.openai.com/v1/chat/completions",
                       api=("sk-x",)),
    "azure": Provider(provider="azure", base_url="https://r.openai.azure.com", api=("k",),
                      engine="azure"),
    "anthropic": Provider(provider="anthropic", base_url="https://api.anthropic.com/v1",
                          api=("sk-ant-x",)),
    "gemini": Provider(provider="gemini",
                       base_url="https://generativelanguage.googleapis.com/v1beta",
                       api=("AIza-x",)),
}
UPSTREAM_MODELS = {"openai": "gpt-4o", "azure": "gpt-4o", "anthropic": "claude-sonnet-4-20250514",
                   "gemini": "gemini-2.0-flash"}
BUILDERS = {"openai": openai.build_exchange, "azure": azure.build_exchange,
            "anthropic": anthropic.build_exchange, "gemini": gemini.build_exchange}


def context(vendor: str, stream: bool, client_model: str | None = None) -> ChatContext:
    return ChatContext(client_model=client_model or UPSTREAM_MODELS[vendor],
                       upstream_model=UPSTREAM_MODELS[vendor], provider=PROVIDERS[vendor],
                       api_key=PROVIDERS[vendor].api[0], stream=stream, include_usage=True,
                       response_id="chatcmpl-benchbenchbenchbench", created=1741570283,
                       entropy=random.Random(0))


# -- realistic streams, a few MB each ----------------------------------------------------------

def _events(raw: bytes) -> list[bytes]:
    """The events of an SSE fixture, each with its blank-line terminator."""
    sep = b"\r\n\r\n" if b"\r\n\r\n" in raw else b"\n\n"
    return [e + sep for e in raw.split(sep) if e.strip()]


def _grow(head: list[bytes], middle: list[bytes], tail: list[bytes]) -> bytes:
    fixed = sum(map(len, head)) + sum(map(len, tail))
    per = sum(map(len, middle))
    n = max(1, (TARGET - fixed) // per)
    return b"".join(head + middle * n + tail)


def anthropic_stream() -> bytes:
    """``tests/data/anthropic/text_stream.sse`` with its text deltas repeated to ~4 MB."""
    events = _events((DATA / "anthropic" / "text_stream.sse").read_bytes())
    deltas = [i for i, e in enumerate(events) if b"content_block_delta" in e]
    return _grow(events[:deltas[0]], [events[i] for i in deltas], events[deltas[-1] + 1:])


def gemini_stream() -> bytes:
    """``tests/data/gemini/stream_text_crlf.sse`` (CRLF framing) with its content chunks
    repeated to ~4 MB, the ``finishReason`` chunk last."""
    events = _events((DATA / "gemini" / "stream_text_crlf.sse").read_bytes())
    last = max(i for i, e in enumerate(events) if b"finishReason" in e)
    return _grow([], events[:last], events[last:])


def openai_stream() -> bytes:
    """The 52-event stream of the end-to-end benchmark, its content chunks repeated."""
    events = _events(sse_body(UPSTREAM_MODELS["openai"]))
    return _grow(events[:1], events[1:-2], events[-2:])


def pieces(data: bytes, n: int = PIECE) -> list[bytes]:
    return [data[i:i + n] for i in range(0, len(data), n)]


# -- the timed functions -------------------------------------------------------------------------

def time_decoder(make: Callable[[], Any], chunks: list[bytes]) -> int:
    """Feed every piece, then close; returns the number of client chunks."""
    d = make()
    n = 0
    done = False
    for c in chunks:
        for item in d.feed(c):
            n += isinstance(item, StreamChunk)
            done = done or isinstance(item, StreamDone)
    for item in d.close():
        n += isinstance(item, StreamChunk)
        done = done or isinstance(item, StreamDone)
    assert done, "the stream did not end properly"
    return n


def time_build(build: Callable[..., Any], req: dict[str, Any], ctx: ChatContext, n: int) -> int:
    size = 0
    for _ in range(n):
        size += len(build(req, ctx).request.body)
    return size


def time_parse_request(body: bytes, n: int) -> int:
    k = 0
    for _ in range(n):
        k += len(parse_request_json(body))
    return k


def time_dispatch(gateway: Any, headers: tuple[tuple[str, str], ...], body: bytes,
                  n: int) -> int:
    k = 0
    for i in range(n):
        call = gateway.handle("POST", "/v1/chat/completions", headers, body,
                              now=1000.0 + i, wall=1741570283.0 + i)
        routed = gateway.route_chat(call, {}, 1000.0 + i, 1741570283.0 + i)
        k += len(routed.relay.start(1000.0 + i))
    return k


def time_hotpath(hp: HotPath, n: int) -> int:
    return sum(hp.one() for _ in range(n))


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    result = None
    t = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        t = min(t, time.perf_counter() - t0)
    return t, result


def dispatch(results: dict[str, dict[str, Any]], calls: int, repeat: int) -> None:
    body = chat_request_bytes()
    t, _ = best(lambda: time_parse_request(body, calls), repeat)
    results["dispatch"]["parse_request_json"] = {"us": t / calls * 1e6}
    print(f"core    {'parse_request_json':<26}{t / calls * 1e6:8.1f} µs")
    gateway = make_gateway()
    headers = (("host", "127.0.0.1"), ("content-type", "application/json"),
               ("authorization", f"Bearer {CLIENT_KEY}"))
    t, _ = best(lambda: time_dispatch(gateway, headers, body, calls), repeat)
    results["dispatch"]["Gateway.handle + Relay.start"] = {"us": t / calls * 1e6}
    print(f"core    {'Gateway.handle + Relay.start':<26}{t / calls * 1e6:8.1f} µs")
    for stream in (False, True):
        hp = HotPath(stream)
        hp.check()
        t, _ = best(lambda: time_hotpath(hp, calls // 2), repeat)
        name = "hot path, stream×52" if stream else "hot path, JSON"
        results["dispatch"][name] = {"us": t / (calls // 2) * 1e6}
        print(f"core    {name:<26}{t / (calls // 2) * 1e6:8.1f} µs   (no I/O, no event loop)")


def messages_request() -> dict[str, Any]:
    """The ~2 KB chat request as an Anthropic Messages request (what Claude Code sends)."""
    req = chat_request()
    system = [m["content"] for m in req["messages"] if m["role"] == "system"]
    return {"model": req["model"], "max_tokens": req["max_tokens"],
            "system": [{"type": "text", "text": t} for t in system],
            "messages": [{"role": m["role"], "content": [{"type": "text", "text": m["content"]}]}
                         for m in req["messages"] if m["role"] != "system"],
            "temperature": req["temperature"], "metadata": {"user_id": req["user"]}}


def messages_front(results: dict[str, dict[str, Any]], calls: int, repeat: int) -> None:
    """The Anthropic Messages front's own work (fronts/messages.py): the request translated to
    chat, a whole answer translated back, and the stream state machine over the 52-event
    OpenAI stream (MB/s of OpenAI chunks in)."""
    from uniapi_core.fronts.messages import (MessagesStream, chat_request_from_messages,
                                             messages_response_from_chat)

    body = messages_request()
    t, _ = best(lambda: [chat_request_from_messages(body) for _ in range(calls)], repeat)
    results.setdefault("front", {})["messages request -> chat"] = {"us": t / calls * 1e6}
    print(f"front   {'messages request -> chat':<26}{t / calls * 1e6:8.1f} µs")
    answer = json.loads(completion_bytes())
    t, _ = best(lambda: [messages_response_from_chat(answer, "m") for _ in range(calls)],
                repeat)
    results["front"]["chat answer -> message"] = {"us": t / calls * 1e6}
    print(f"front   {'chat answer -> message':<26}{t / calls * 1e6:8.1f} µs")
    data = openai_stream()
    events = [e + b"\n\n" for e in data.split(b"\n\n") if e.strip()]

    def stream() -> int:
        s = MessagesStream("m", "r")
        return sum(len(s.feed(e)) for e in events) + len(s.end(None))

    t, out = best(stream, repeat)
    results["front"]["chat stream -> events"] = {"mb_s": len(data) / t / 1e6}
    print(f"front   {'chat stream -> events':<26}{len(data) / t / 1e6:8.1f} MB/s "
          f"({len(data) / 1e6:.1f} MB → {out / 1e6:.1f} MB)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="translator micro-benchmarks")
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    repeat = 3 if args.quick else 5
    calls = 500 if args.quick else 2000
    results: dict[str, dict[str, Any]] = {"decoders": {}, "builders": {}, "dispatch": {},
                                          "failed": {}}

    streams = {
        "openai (model kept)": (openai_stream(), lambda: openai.OpenAIStreamDecoder(
            UPSTREAM_MODELS["openai"])),
        "openai (model renamed)": (openai_stream(), lambda: openai.OpenAIStreamDecoder(
            "my-alias")),
        "anthropic": (anthropic_stream(), lambda: anthropic.build_exchange(
            chat_request(), context("anthropic", True)).stream_decoder()),
        "gemini (CRLF)": (gemini_stream(), lambda: gemini.build_exchange(
            chat_request(), context("gemini", True)).stream_decoder()),
    }
    for name, (data, make) in streams.items():
        chunks = pieces(data)
        try:
            t, n = best(lambda: time_decoder(make, chunks), repeat)
        except Exception as exc:  # a translator being rewritten must not stop the rest
            results["failed"][f"decode {name}"] = repr(exc)
            print(f"decode  {name:<26}  FAILED: {exc!r}")
            continue
        mbs = len(data) / t / 1e6
        results["decoders"][name] = {"mb_s": mbs, "bytes": len(data), "chunks_out": n}
        print(f"decode  {name:<26}{mbs:8.1f} MB/s   ({len(data) / 1e6:.1f} MB → {n} chunks)")

    req = chat_request()
    size = len(chat_request_bytes())
    for vendor, build in BUILDERS.items():
        for stream in (False, True):
            ctx = context(vendor, stream, client_model=JSON_MODEL)
            name = f"{vendor}{' stream' if stream else ''}"
            try:
                t, out = best(lambda: time_build(build, req, ctx, calls), repeat)
            except Exception as exc:
                results["failed"][f"build {name}"] = repr(exc)
                print(f"build   {name:<26}  FAILED: {exc!r}")
                continue
            us = t / calls * 1e6
            results["builders"][name] = {"us": us, "request_bytes": size,
                                         "upstream_bytes": out // calls}
            print(f"build   {name:<26}{us:8.1f} µs   ({size} B request → {out // calls} B)")

    try:
        dispatch(results, calls, repeat)
    except Exception as exc:
        results["failed"]["dispatch"] = repr(exc)
        print(f"core    FAILED: {exc!r}")
    try:
        messages_front(results, calls, repeat)
    except Exception as exc:
        results["failed"]["messages front"] = repr(exc)
        print(f"front   FAILED: {exc!r}")

    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
