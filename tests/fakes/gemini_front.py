"""Fakes for the Gemini-native front's tests (``FakeUpstream(handler=...)``): a Gemini
upstream, and ``ChatScript``, an OpenAI chat upstream for Gemini CLI that logs what it is asked.

The Gemini upstream tells the story of ``tests/fakes/llm_vendors.py`` (a tool result is
answered with ``TOOL_TEXT``, tools with one ``get_weather`` call for Paris, thinking with
``THOUGHT`` then ``ANSWER``, anything else with ``TEXT`` in ``PIECES``), in Gemini's wire
shape, with what only a native passthrough keeps: a ``thoughtSignature`` on the function call and on the answer's last
text part. ``gemini_answers`` gives the objects an answer is made of, so a test can rebuild the
exact bytes the fake sent (``gemini_sse``).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from tests.fakes import llm_vendors as fake
from tests.fakes.upstream import Reply, Seen, json_reply

#: the signatures the fake puts on its function call and on its last text part
CALL_SIGNATURE = "Q2FsbFNpZy1nZW1pbmktMw=="
TEXT_SIGNATURE = "VGV4dFNpZy1nZW1pbmktMw=="
UPSTREAM_MODEL = "gemini-2.5-flash"


def gemini_kind(req: dict[str, Any]) -> str:
    """``llm_vendors.gemini_kind``, reading the thinking config in both spellings protobuf JSON
    accepts (google-genai sends ``thinkingConfig`` with snake_case fields)."""
    config = req.get("generationConfig") or {}
    thinking = config.get("thinkingConfig") or config.get("thinking_config") or {}
    if "thinking_budget" in thinking:
        return fake.gemini_kind(dict(req, generationConfig={
            "thinkingConfig": {"thinkingBudget": thinking["thinking_budget"]}}))
    return fake.gemini_kind(req)


def gemini_answers(req: dict[str, Any], stream: bool) -> list[dict[str, Any]]:
    """The ``GenerateContentResponse`` objects that answer ``req``: one when not streamed,
    else one per stream event."""
    kind = gemini_kind(req)
    if kind == "tools":
        batches = [[{"functionCall": {"name": "get_weather", "args": fake.ARGS},
                     "thoughtSignature": CALL_SIGNATURE}]]
    elif kind == "think":
        batches = [[{"text": fake.THOUGHT[:10], "thought": True}],
                   [{"text": fake.THOUGHT[10:], "thought": True}, {"text": fake.ANSWER}]]
    else:
        batches = [[{"text": p}] for p in ([fake.TOOL_TEXT] if kind == "result"
                                           else fake.PIECES)]
    if kind != "tools":
        batches[-1][-1] = dict(batches[-1][-1], thoughtSignature=TEXT_SIGNATURE)
    if not stream:
        batches = [[p for b in batches for p in b]]
    out = []
    for i, parts in enumerate(batches):
        cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if i == len(batches) - 1:
            cand["finishReason"] = "STOP"
        out.append({"candidates": [cand],
                    "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 6,
                                      "totalTokenCount": 18},
                    "modelVersion": UPSTREAM_MODEL, "responseId": "resp-gem-1"})
    return out


def gemini_sse(objs: list[dict[str, Any]]) -> bytes:
    """Google's SSE framing of ``objs``, as the fake sends them."""
    return b"".join(b"data: " + fake.compact(o) + b"\r\n\r\n" for o in objs)


def gemini_handler(seen: Seen) -> Reply:
    stream = ":streamGenerateContent" in seen.path
    objs = gemini_answers(seen.json(), stream)
    if not stream:
        return json_reply(objs[0])
    return Reply(headers=[("content-type", "text/event-stream")],
                 pieces=[gemini_sse([o]) for o in objs])


@dataclass
class ChatScript:
    """An OpenAI chat upstream answering ``text``, or, when ``tool_call`` is set, that call to
    a request with tools and no tool result yet. Every request is logged in ``log`` (path,
    model, stream, tool count, roles) so a failure says what the client asked for; the chat
    bodies are kept in ``chats``."""
    text: str
    tool_call: tuple[str, dict[str, Any]] | None = None
    log: list[str] = field(default_factory=list)
    chats: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, seen: Seen) -> Reply:
        if seen.method != "POST" or not seen.path.endswith("/chat/completions"):
            with self.lock:
                self.log.append(f"{seen.method} {seen.path} -> 404")
            return json_reply({"error": {"message": "not here", "type": "invalid_request_error",
                                         "code": None}}, status=404)
        req = seen.json()
        messages = req.get("messages") or []
        answered = any(m.get("role") == "tool" for m in messages)
        call = self.tool_call if req.get("tools") and not answered else None
        with self.lock:
            self.chats.append(req)
            self.log.append(
                f"POST {seen.path} model={req.get('model')} stream={req.get('stream')} "
                f"tools={len(req.get('tools') or [])} roles={[m.get('role') for m in messages]}"
                f" -> {'tool call ' + call[0] if call else repr(self.text)}")
        return chat_answer(req, None if call else self.text, call)


def chat_answer(req: dict[str, Any], text: str | None,
                call: tuple[str, dict[str, Any]] | None) -> Reply:
    """An OpenAI chat answer of ``text`` or ``call``, streamed (with a usage chunk when
    asked) when ``req`` asks for a stream."""
    usage = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
    finish = "tool_calls" if call else "stop"
    head = {"id": "chatcmpl-gcli", "created": 1, "model": req.get("model")}
    calls = [] if call is None else [{"id": "call_gcli1", "type": "function", "function": {
        "name": call[0], "arguments": json.dumps(call[1])}}]
    if not req.get("stream"):
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if calls:
            message["tool_calls"] = calls
        return json_reply(dict(head, object="chat.completion", usage=usage, choices=[
            {"index": 0, "message": message, "finish_reason": finish}]))
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    if text is not None:
        deltas += [{"content": text[:len(text) // 2]}, {"content": text[len(text) // 2:]}]
    if calls:
        deltas.append({"tool_calls": [dict(calls[0], index=0)]})
    events = [dict(head, object="chat.completion.chunk",
                   choices=[{"index": 0, "delta": d, "finish_reason": None}]) for d in deltas]
    events.append(dict(head, object="chat.completion.chunk",
                       choices=[{"index": 0, "delta": {}, "finish_reason": finish}]))
    options = req.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        events.append(dict(head, object="chat.completion.chunk", choices=[], usage=usage))
    pieces = [b"data: " + fake.compact(e) + b"\n\n" for e in events]
    return Reply(headers=[("content-type", "text/event-stream")],
                 pieces=pieces + [b"data: [DONE]\n\n"])
