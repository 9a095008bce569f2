"""Fault injection (issue 17, the first reliability rule): fake vendor upstreams driven by a
seeded fault table.

``FaultTable`` draws, for every upstream attempt, either a clean answer or one fault from a
seeded ``random.Random``; ``FaultyVendor(table, vendor)`` is a ``FakeUpstream`` handler that
speaks one vendor protocol (``openai`` chat completions, ``anthropic`` Messages, ``gemini``,
``bedrock`` InvokeModel with its event stream) and answers every attempt with a text that is
unique to that attempt: ``ans-<request token>-<attempt number>``, streamed in several pieces.
The request token (``rq-NNNNNN``) is whatever the client put in its prompt; the fake finds it in
the raw body whatever the vendor shape, and records each attempt (token, marker, vendor, fault)
in the order it came, so a test can tell which attempt an assembled answer came from.

The faults: ``drop`` (connection closed before the head), ``500``, ``429`` (``Retry-After:
0``), ``400`` (a request error, not retried), ``slow`` (first byte after ``SLOW`` seconds,
under the gateway's timeout), ``stall`` (the body stops mid-way for longer than the idle
timeout), ``truncate`` (the connection closed mid-body, before the end of the answer),
``garbage`` (a body that is no JSON, or a stream event that is no JSON / no frame), and for
Bedrock streams ``crc`` (an event-stream frame whose message CRC is wrong).

The fifth vendor, ``h2``: ``FaultyH2Vendor(table)`` is a ``FakeH2Upstream`` handler (TLS, ALPN
``h2``) speaking OpenAI chat completions, its answers multiplexed on one HTTP/2 connection. It
draws ``rst`` (RST_STREAM mid-body, after some of the pieces) and ``goaway`` (GOAWAY mid-body,
then the connection closed) at ``H2_RATE`` each, and otherwise the faults above at the table's
rate, but for ``drop`` and ``truncate`` (one connection carries every stream: the ``goaway``
fault is its drop and its truncation). A ``goaway`` cuts every other stream still open on that
connection too: ``FaultyH2Vendor.cut`` marks their attempts ``cut`` (``table.collateral``
counts them), faulty like the others. Test-only I/O.
"""

from __future__ import annotations

import json
import random
import re
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from tests.fakes import h2upstream
from tests.fakes.llm_vendors import ANTHROPIC_MODEL, bedrock_fx, compact
from tests.fakes.upstream import Reply, Seen, json_reply

FAULTS = ("drop", "500", "429", "400", "slow", "stall", "truncate", "garbage")
BEDROCK_STREAM_FAULTS = FAULTS + ("crc",)
#: the h2 vendor's faults besides ``rst`` and ``goaway`` (drawn at ``H2_RATE`` each)
H2_FAULTS = ("500", "429", "400", "slow", "stall", "garbage")
H2_RATE = 0.03
#: a stall on the h2 vendor: this long before the held piece (the gateway resets the stream)
H2_STALL = 3600.0
SLOW = 0.3
TOKEN = re.compile(rb"rq-[0-9]{6}")
#: never set: a gate on it holds a piece until the gateway closes the connection
NEVER = threading.Event()
GARBAGE_JSON = b"<html>\x00\xff not json at all"
GARBAGE_EVENT = b"data: {\"choices\": [{\"delta\": {\"content\": \n\n"


@dataclass
class Attempt:
    token: str
    marker: str
    vendor: str
    stream: bool
    kind: str


class FaultTable:
    """Seeded fault draws; every attempt recorded by request token."""

    def __init__(self, seed: int, rate: float = 0.12) -> None:
        self.rng = random.Random(seed)
        self.rate = rate
        self.lock = threading.Lock()
        self.counter = 0
        self.attempts: dict[str, list[Attempt]] = {}
        self.counts: Counter[str] = Counter()
        self.unknown = 0  # attempts without a request token (none expected)
        self.collateral = 0  # h2: attempts cut by another attempt's ``goaway``

    def draw(self, token: str, vendor: str, stream: bool) -> tuple[Attempt, random.Random]:
        with self.lock:
            self.counter += 1
            if vendor == "h2":
                roll = self.rng.random()
                kind = ("rst" if roll < H2_RATE else "goaway" if roll < 2 * H2_RATE
                        else self.rng.choice(H2_FAULTS) if roll < 2 * H2_RATE + self.rate
                        else "ok")
            else:
                faults = BEDROCK_STREAM_FAULTS if vendor == "bedrock" and stream else FAULTS
                kind = self.rng.choice(faults) if self.rng.random() < self.rate else "ok"
            # each attempt its own RNG (seeded from the table's), so where a piece is cut does
            # not depend on which thread got there first once the draw is made
            own = random.Random(self.rng.getrandbits(64))
            attempt = Attempt(token, f"ans-{token}-{self.counter}", vendor, stream, kind)
            self.attempts.setdefault(token, []).append(attempt)
            self.counts[kind] += 1
        return attempt, own


def _split(text: str, n: int = 4) -> list[str]:
    step = max(1, -(-len(text) // n))
    return [text[i:i + step] for i in range(0, len(text), step)]


# -- clean answers, per vendor ---------------------------------------------------------------

def _openai(req: dict[str, Any], stream: bool, text: str) -> Reply:
    head = {"id": "chatcmpl-fault", "created": 17, "model": req.get("model", "gpt-4o")}
    usage = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
    if not stream:
        return json_reply(dict(head, object="chat.completion", usage=usage, choices=[{
            "index": 0, "message": {"role": "assistant", "content": text},
            "finish_reason": "stop"}]))
    deltas = [{"role": "assistant", "content": ""}] + [{"content": p} for p in _split(text)]
    chunks = [dict(head, object="chat.completion.chunk",
                   choices=[{"index": 0, "delta": d, "finish_reason": None}]) for d in deltas]
    chunks.append(dict(head, object="chat.completion.chunk",
                       choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    return _sse([b"data: " + compact(c) + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"])


def _sse(pieces: list[bytes]) -> Reply:
    return Reply(headers=[("content-type", "text/event-stream")], pieces=pieces)


def _anthropic_message(text: str) -> dict[str, Any]:
    return {"id": "msg_fault01", "type": "message", "role": "assistant",
            "model": ANTHROPIC_MODEL, "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 21, "output_tokens": 9}}


def _anthropic_events(text: str) -> list[dict[str, Any]]:
    return [
        {"type": "message_start", "message": {
            "id": "msg_fault01", "type": "message", "role": "assistant",
            "model": ANTHROPIC_MODEL, "content": [], "stop_reason": None,
            "stop_sequence": None, "usage": {"input_tokens": 21, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text",
                                                                       "text": ""}},
        *({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta",
                                                                "text": p}}
          for p in _split(text)),
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": 9}},
        {"type": "message_stop"}]


def _anthropic(stream: bool, text: str) -> Reply:
    if not stream:
        return json_reply(_anthropic_message(text))
    return _sse([b"event: " + e["type"].encode() + b"\ndata: " + compact(e) + b"\n\n"
                 for e in _anthropic_events(text)])


def _gemini(stream: bool, text: str) -> Reply:
    usage = {"promptTokenCount": 12, "candidatesTokenCount": 6, "totalTokenCount": 18}

    def response(parts: list[dict[str, Any]], last: bool) -> dict[str, Any]:
        cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if last:
            cand["finishReason"] = "STOP"
        return {"candidates": [cand], "usageMetadata": usage,
                "modelVersion": "gemini-2.5-flash", "responseId": "resp-fault"}

    if not stream:
        return json_reply(response([{"text": text}], True))
    pieces = _split(text)
    return _sse([b"data: " + compact(response([{"text": p}], False)) + b"\r\n\r\n"
                 for p in pieces]
                + [b"data: " + compact(response([{"text": ""}], True)) + b"\r\n\r\n"])


def bedrock_frames(text: str) -> bytes:
    events = _anthropic_events(text)
    events[-1]["amazon-bedrock-invocationMetrics"] = {
        "inputTokenCount": 21, "outputTokenCount": 9, "invocationLatency": 120,
        "firstByteLatency": 40}
    return bedrock_fx.stream(events)


def _bedrock(stream: bool, text: str) -> Reply:
    if not stream:
        return json_reply(_anthropic_message(text))
    body = bedrock_frames(text)
    return Reply(headers=[("content-type", "application/vnd.amazon.eventstream")],
                 pieces=[body[i:i + 61] for i in range(0, len(body), 61)])


def corrupt_crc(body: bytes, rng: random.Random) -> bytes:
    """``body`` (event-stream frames) with one payload byte of one frame flipped: that frame's
    message CRC no longer matches."""
    starts, at = [], 0
    while at < len(body):
        starts.append(at)
        at += int.from_bytes(body[at:at + 4], "big")
    start = rng.choice(starts)
    total = int.from_bytes(body[start:start + 4], "big")
    where = start + total - 5  # the last payload byte, just before the message CRC
    out = bytearray(body)
    out[where] ^= 0x5A
    return bytes(out)


def _error(vendor: str, status: int, message: str) -> Reply:
    headers = [("retry-after", "0")] if status == 429 else []
    if vendor == "openai":
        body: dict[str, Any] = {"error": {"message": message, "type": "server_error"
                                          if status >= 500 else "invalid_request_error",
                                          "code": None}}
    elif vendor == "anthropic":
        body = {"type": "error", "error": {"type": "api_error" if status >= 500 else
                                           "rate_limit_error" if status == 429 else
                                           "invalid_request_error", "message": message}}
    elif vendor == "gemini":
        body = {"error": {"code": status, "message": message, "status": "INTERNAL"
                          if status >= 500 else "RESOURCE_EXHAUSTED" if status == 429
                          else "INVALID_ARGUMENT"}}
    else:
        body = {"message": message}
    return json_reply(body, status=status, headers=headers)


class FaultyVendor:
    """``FakeUpstream`` handler for one vendor protocol, its faults from ``table``."""

    def __init__(self, table: FaultTable, vendor: str) -> None:
        assert vendor in ("openai", "anthropic", "gemini", "bedrock")
        self.table = table
        self.vendor = vendor

    def _stream(self, seen: Seen, req: dict[str, Any]) -> bool:
        if self.vendor == "gemini":
            return ":streamGenerateContent" in seen.path
        if self.vendor == "bedrock":
            return seen.path.endswith("/invoke-with-response-stream")
        return bool(req.get("stream"))

    def __call__(self, seen: Seen) -> Reply:
        try:
            req = json.loads(seen.body)
        except ValueError:
            req = {}
        stream = self._stream(seen, req)
        found = TOKEN.search(seen.body)
        if found is None:
            with self.table.lock:
                self.table.unknown += 1
            return _error(self.vendor, 400, "no request token")
        attempt, rng = self.table.draw(found.group().decode(), self.vendor, stream)
        text = attempt.marker
        ok = (_openai(req, stream, text) if self.vendor == "openai"
              else _anthropic(stream, text) if self.vendor == "anthropic"
              else _gemini(stream, text) if self.vendor == "gemini"
              else _bedrock(stream, text))
        kind = attempt.kind
        if kind == "ok":
            return ok
        if kind == "drop":
            return Reply(drop=True)
        if kind in ("500", "429", "400"):
            return _error(self.vendor, int(kind), f"injected {kind}")
        if kind == "slow":
            ok.delay = SLOW
            return ok
        if not stream:  # a whole body in two pieces (its length said up front)
            body = ok.pieces[0]
            ok.pieces = [body[:len(body) // 2], body[len(body) // 2:]]
        if kind == "stall":
            ok.gates = {rng.randrange(len(ok.pieces)): NEVER}
        elif kind == "truncate":  # before the end of the answer (its last two pieces)
            ok.cut_after = rng.randrange(max(1, len(ok.pieces) - 2)) if stream else 1
        elif kind == "garbage":
            if not stream:
                ok.pieces = [GARBAGE_JSON]
            elif self.vendor == "bedrock":
                ok.pieces = ok.pieces[:rng.randrange(len(ok.pieces) - 2)] + [GARBAGE_JSON * 3]
            else:
                ok.pieces = ok.pieces[:rng.randrange(len(ok.pieces) - 2)] + [GARBAGE_EVENT]
        elif kind == "crc":
            body = corrupt_crc(b"".join(ok.pieces), rng)
            ok.pieces = [body[i:i + 61] for i in range(0, len(body), 61)]
        return ok


class FaultyH2Vendor:
    """``FakeH2Upstream`` handler (and ``on_cut``) for the ``h2`` vendor: OpenAI chat
    completions over HTTP/2, its faults from ``table`` (see the module docstring)."""

    vendor = "h2"

    def __init__(self, table: FaultTable) -> None:
        self.table = table

    def upstream(self) -> h2upstream.FakeH2Upstream:
        """A TLS ``FakeH2Upstream`` (ALPN ``h2`` only) served by this handler."""
        return h2upstream.FakeH2Upstream(tls=True, alpn=("h2",), handler=self,
                                         on_cut=self.cut, max_connections=64)

    def cut(self, seens: list[h2upstream.Seen]) -> None:
        with self.table.lock:
            for seen in seens:
                if isinstance(seen.tag, Attempt) and seen.tag.kind != "cut":
                    seen.tag.kind = "cut"
                    self.table.collateral += 1

    def __call__(self, seen: h2upstream.Seen) -> h2upstream.H2Reply:
        try:
            req = json.loads(seen.body)
        except ValueError:
            req = {}
        stream = bool(req.get("stream"))
        found = TOKEN.search(seen.body)
        if found is None:
            with self.table.lock:
                self.table.unknown += 1
            return self._h2(_error("openai", 400, "no request token"), stream)
        attempt, rng = self.table.draw(found.group().decode(), self.vendor, stream)
        seen.tag = attempt
        kind = attempt.kind
        if kind in ("500", "429", "400"):
            return self._h2(_error("openai", int(kind), f"injected {kind}"), False)
        ok = _openai(req, stream, attempt.marker)
        if not stream:  # a whole body in two pieces (its length said up front)
            body = ok.pieces[0]
            ok.pieces = [body[:len(body) // 2], body[len(body) // 2:]]
        if kind == "garbage":
            ok.pieces = [GARBAGE_JSON] if not stream else \
                ok.pieces[:rng.randrange(len(ok.pieces) - 2)] + [GARBAGE_EVENT]
        reply = self._h2(ok, stream)
        if kind == "slow":
            reply.delay = SLOW
        elif kind == "stall":
            reply.piece_delays = {rng.randrange(len(ok.pieces)): H2_STALL}
        elif kind in ("rst", "goaway"):  # before the end of the answer (its last two pieces)
            reply.cut = kind
            reply.cut_after = rng.randrange(1, max(2, len(ok.pieces) - 1)) if stream else 1
        return reply

    @staticmethod
    def _h2(reply: Reply, stream: bool) -> h2upstream.H2Reply:
        headers = [(k, v) for k, v in reply.headers if k.lower() != "content-length"]
        if not stream:
            headers.append(("content-length", str(sum(len(p) for p in reply.pieces))))
        return h2upstream.H2Reply(status=reply.status, headers=headers,
                                  pieces=list(reply.pieces))
