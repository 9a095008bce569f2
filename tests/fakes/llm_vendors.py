"""Fake OpenAI-compatible, Gemini, Anthropic and Bedrock upstreams that answer what a request
asks for, in each vendor's own wire shape (for ``FakeUpstream(handler=...)``).

Every fake tells the same story: a request whose history holds a tool result is answered with
``TOOL_TEXT``; a request with tools is answered with one call of ``get_weather`` for Paris; a
request asking for reasoning is answered with ``THOUGHT`` then ``ANSWER``; any other with
``TEXT`` (streamed in ``PIECES``); the OpenAI fake answers a text request asking for a
``json_schema`` response format with ``JSON_TEXT``. The path of the OpenAI fake can say how to
fail instead: ``/e500/…`` answers 500, ``/e429/…`` 429, ``/cut/…`` streams two pieces of text
and closes the connection. Bedrock frames come from the fixture encoder of
``tests/data/bedrock``. The Responses fake (``responses_handler``, an OpenAI Responses API
upstream) tells the same story in Responses objects and events; its stream is cut after the
first text delta when the request's input says "cut".
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from tests.fakes.upstream import Reply, Seen, json_reply

PIECES = ["Hello", " there", "!"]
TEXT = "".join(PIECES)
TOOL_TEXT = "Sunny in Paris, 21 °C."
THOUGHT = "The user wants the answer; it is 42."
ANSWER = "42"
ARGS = {"city": "Paris"}
SIGNATURE = "EqQBCkgIARABGAIiQL2x+/sig=="
JSON_ANSWER = {"city": "Paris", "celsius": 21}
JSON_TEXT = json.dumps(JSON_ANSWER)

_spec = importlib.util.spec_from_file_location(
    "bedrock_fixtures", Path(__file__).resolve().parents[1] / "data" / "bedrock"
    / "make_fixtures.py")
assert _spec is not None and _spec.loader is not None
bedrock_fx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bedrock_fx)


def compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _kind(has_result: bool, has_tools: bool, thinks: bool) -> str:
    return "result" if has_result else "tools" if has_tools else "think" if thinks else "text"


# -- OpenAI ----------------------------------------------------------------------------------

def openai_kind(req: dict[str, Any]) -> str:
    return _kind(any(m.get("role") == "tool" for m in req["messages"]), bool(req.get("tools")),
                 "reasoning_effort" in req)


def openai_handler(seen: Seen) -> Reply:
    if seen.path.startswith("/e500/"):
        return json_reply({"error": {"message": "upstream exploded", "type": "server_error",
                                     "code": None}}, status=500)
    if seen.path.startswith("/e429/"):
        return json_reply({"error": {"message": "Rate limit reached", "type": "requests",
                                     "code": "rate_limit_exceeded"}}, status=429)
    req = seen.json()
    kind = openai_kind(req)
    call = {"id": "call_W1", "type": "function",
            "function": {"name": "get_weather", "arguments": json.dumps(ARGS)}}
    head = {"id": "chatcmpl-fake", "created": 17, "model": req["model"]}
    asks_json = (req.get("response_format") or {}).get("type") == "json_schema"
    text = JSON_TEXT if asks_json else TEXT
    usage = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
    if not req.get("stream"):
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if kind == "tools":
            message["tool_calls"] = [call]
        elif kind == "think":
            message.update(content=ANSWER, reasoning_content=THOUGHT)
        else:
            message["content"] = TOOL_TEXT if kind == "result" else text
        return json_reply(dict(head, object="chat.completion", usage=usage, choices=[{
            "index": 0, "message": message,
            "finish_reason": "tool_calls" if kind == "tools" else "stop"}]))
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    if kind == "tools":
        deltas.append({"tool_calls": [dict(call, index=0)]})
    elif kind == "think":
        deltas += [{"reasoning_content": THOUGHT[:10]}, {"reasoning_content": THOUGHT[10:]},
                   {"content": ANSWER}]
    else:
        deltas += [{"content": p} for p in ([TOOL_TEXT] if kind == "result" else
                                            [text] if asks_json else PIECES)]
    finish = "tool_calls" if kind == "tools" else "stop"
    chunks = [dict(head, object="chat.completion.chunk",
                   choices=[{"index": 0, "delta": d, "finish_reason": None}]) for d in deltas]
    chunks.append(dict(head, object="chat.completion.chunk",
                       choices=[{"index": 0, "delta": {}, "finish_reason": finish}]))
    pieces = [b"data: " + compact(c) + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]
    return Reply(headers=[("content-type", "text/event-stream")], pieces=pieces,
                 cut_after=3 if seen.path.startswith("/cut/") else None)


# -- Gemini ----------------------------------------------------------------------------------

def gemini_kind(req: dict[str, Any]) -> str:
    parts = [p for c in req["contents"] for p in c["parts"]]
    return _kind(any("functionResponse" in p for p in parts), bool(req.get("tools")),
                 "thinkingBudget" in req.get("generationConfig", {}).get("thinkingConfig", {}))


def gemini_handler(seen: Seen) -> Reply:
    req = seen.json()
    kind = gemini_kind(req)
    if kind == "tools":
        batches = [[{"functionCall": {"name": "get_weather", "args": ARGS}}]]
    elif kind == "think":
        batches = [[{"text": THOUGHT[:10], "thought": True}],
                   [{"text": THOUGHT[10:], "thought": True}, {"text": ANSWER}]]
    else:
        batches = [[{"text": p}] for p in ([TOOL_TEXT] if kind == "result" else PIECES)]
    usage = {"promptTokenCount": 12, "candidatesTokenCount": 6, "totalTokenCount": 18}

    def response(parts: list[dict[str, Any]], last: bool) -> dict[str, Any]:
        cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if last:
            cand["finishReason"] = "STOP"
        return {"candidates": [cand], "usageMetadata": usage, "modelVersion": "gemini-2.5-flash",
                "responseId": "resp-gem-1"}

    if ":streamGenerateContent" not in seen.path:
        return json_reply(response([p for b in batches for p in b], True))
    pieces = [b"data: " + compact(response(b, i == len(batches) - 1)) + b"\r\n\r\n"
              for i, b in enumerate(batches)]
    return Reply(headers=[("content-type", "text/event-stream")], pieces=pieces)


# -- Anthropic and Bedrock -------------------------------------------------------------------

def anthropic_kind(req: dict[str, Any]) -> str:
    blocks = [b for m in req["messages"] if isinstance(m["content"], list) for b in m["content"]]
    return _kind(any(b.get("type") == "tool_result" for b in blocks), bool(req.get("tools")),
                 (req.get("thinking") or {}).get("type") == "enabled")


def anthropic_events(req: dict[str, Any], model: str) -> list[dict[str, Any]]:
    """The Anthropic stream events that answer ``req``."""
    kind = anthropic_kind(req)
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {
            "id": "msg_fake01", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 21, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 7, "output_tokens": 1}}},
        {"type": "ping"}]

    def block(index: int, start: dict[str, Any], *deltas: dict[str, Any]) -> None:
        events.append({"type": "content_block_start", "index": index, "content_block": start})
        events.extend({"type": "content_block_delta", "index": index, "delta": d}
                      for d in deltas)
        events.append({"type": "content_block_stop", "index": index})

    if kind == "tools":
        block(0, {"type": "tool_use", "id": "toolu_fake01", "name": "get_weather", "input": {}},
              {"type": "input_json_delta", "partial_json": ""},
              {"type": "input_json_delta", "partial_json": json.dumps(ARGS)})
    elif kind == "think":
        block(0, {"type": "thinking", "thinking": "", "signature": ""},
              {"type": "thinking_delta", "thinking": THOUGHT},
              {"type": "signature_delta", "signature": SIGNATURE})
        block(1, {"type": "text", "text": ""}, {"type": "text_delta", "text": ANSWER})
    else:
        block(0, {"type": "text", "text": ""},
              *({"type": "text_delta", "text": p}
                for p in ([TOOL_TEXT] if kind == "result" else PIECES)))
    events += [{"type": "message_delta",
                "delta": {"stop_reason": "tool_use" if kind == "tools" else "end_turn",
                          "stop_sequence": None}, "usage": {"output_tokens": 9}},
               {"type": "message_stop"}]
    return events


def anthropic_message(req: dict[str, Any], model: str) -> dict[str, Any]:
    """The whole answer to ``req`` (what its events add up to)."""
    kind = anthropic_kind(req)
    content: list[dict[str, Any]]
    if kind == "tools":
        content = [{"type": "tool_use", "id": "toolu_fake01", "name": "get_weather",
                    "input": ARGS}]
    elif kind == "think":
        content = [{"type": "thinking", "thinking": THOUGHT, "signature": SIGNATURE},
                   {"type": "text", "text": ANSWER}]
    else:
        content = [{"type": "text", "text": TOOL_TEXT if kind == "result" else TEXT}]
    return {"id": "msg_fake01", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": "tool_use" if kind == "tools" else "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": 21, "output_tokens": 9}}


ANTHROPIC_MODEL = "claude-sonnet-4-5-20250929"


def anthropic_sse(events: list[dict[str, Any]]) -> list[bytes]:
    return [b"event: " + e["type"].encode() + b"\ndata: " + compact(e) + b"\n\n"
            for e in events]


def anthropic_handler(seen: Seen) -> Reply:
    req = seen.json()
    if seen.path.endswith("/count_tokens"):
        return json_reply({"input_tokens": 37})
    if not req.get("stream"):
        return json_reply(anthropic_message(req, ANTHROPIC_MODEL))
    return Reply(headers=[("content-type", "text/event-stream")],
                 pieces=anthropic_sse(anthropic_events(req, ANTHROPIC_MODEL)),
                 cut_after=4 if "cut" in json.dumps(req["messages"]) else None)


def bedrock_handler(seen: Seen) -> Reply:
    req = seen.json()
    if seen.path.endswith("/invoke"):
        return json_reply(anthropic_message(req, ANTHROPIC_MODEL))
    events = anthropic_events(req, ANTHROPIC_MODEL)
    events[-1]["amazon-bedrock-invocationMetrics"] = {
        "inputTokenCount": 21, "outputTokenCount": 9, "invocationLatency": 120,
        "firstByteLatency": 40}
    body = bedrock_fx.stream(events)
    return Reply(headers=[("content-type", "application/vnd.amazon.eventstream")],
                 pieces=[body[i:i + 61] for i in range(0, len(body), 61)])


# -- OpenAI Responses ------------------------------------------------------------------------

RESPONSES_MODEL = "gpt-5-native-2025-08-07"
ENCRYPTED = "gAAAAABfakeEncryptedReasoning=="


def responses_kind(req: dict[str, Any]) -> str:
    items = req["input"] if isinstance(req["input"], list) else []
    return _kind(any(i.get("type") == "function_call_output" for i in items),
                 bool(req.get("tools")), bool((req.get("reasoning") or {}).get("effort")))


def _response(req: dict[str, Any], model: str, status: str,
              output: list[dict[str, Any]]) -> dict[str, Any]:
    usage = {"input_tokens": 21,
             "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
             "output_tokens": 9, "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": 30}
    return {"id": "resp_fake01", "object": "response", "created_at": 1700000000,
            "status": status, "error": None, "incomplete_details": None,
            "instructions": req.get("instructions"), "max_output_tokens": None,
            "model": model, "output": output, "parallel_tool_calls": True,
            "previous_response_id": None, "reasoning": req.get("reasoning"),
            "temperature": 1.0, "text": req.get("text", {"format": {"type": "text"}}),
            "tool_choice": "auto", "tools": req.get("tools", []), "top_p": 1.0,
            "metadata": {}, "usage": usage if status == "completed" else None}


def responses_events(req: dict[str, Any], model: str,
                     pieces: list[str] | None = None) -> list[dict[str, Any]]:
    """The Responses stream events that answer ``req`` (``sequence_number`` in order); given
    ``pieces``, a text answer of those pieces whatever ``req`` asks."""
    kind = "text" if pieces is not None else responses_kind(req)
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": _response(req, model, "in_progress", [])},
        {"type": "response.in_progress", "response": _response(req, model, "in_progress", [])}]
    done: list[dict[str, Any]] = []

    def item(start: dict[str, Any], final: dict[str, Any], *middle: dict[str, Any]) -> None:
        at = {"output_index": len(done)}
        events.append({"type": "response.output_item.added", **at, "item": start})
        events.extend(dict(e, item_id=start["id"], **at) for e in middle)
        events.append({"type": "response.output_item.done", **at, "item": final})
        done.append(final)

    def message(mid: str, pieces: list[str]) -> None:
        text = "".join(pieces)
        head = {"id": mid, "type": "message", "role": "assistant"}
        part = {"type": "output_text", "annotations": [], "text": ""}
        at = {"content_index": 0}
        item(dict(head, status="in_progress", content=[]),
             dict(head, status="completed", content=[dict(part, text=text)]),
             {"type": "response.content_part.added", **at, "part": part},
             *({"type": "response.output_text.delta", **at, "delta": p, "logprobs": []}
               for p in pieces),
             {"type": "response.output_text.done", **at, "text": text, "logprobs": []},
             {"type": "response.content_part.done", **at, "part": dict(part, text=text)})

    if kind == "tools":
        head = {"id": "fc_fake01", "type": "function_call", "call_id": "call_fake01",
                "name": "get_weather"}
        args = json.dumps(ARGS)
        item(dict(head, status="in_progress", arguments=""),
             dict(head, status="completed", arguments=args),
             {"type": "response.function_call_arguments.delta", "delta": args[:5]},
             {"type": "response.function_call_arguments.delta", "delta": args[5:]},
             {"type": "response.function_call_arguments.done", "arguments": args})
    elif kind == "think":
        head = {"id": "rs_fake01", "type": "reasoning", "encrypted_content": ENCRYPTED}
        part = {"type": "summary_text", "text": ""}
        at = {"summary_index": 0}
        item(dict(head, summary=[]),
             dict(head, summary=[dict(part, text=THOUGHT)], status="completed"),
             {"type": "response.reasoning_summary_part.added", **at, "part": part},
             {"type": "response.reasoning_summary_text.delta", **at, "delta": THOUGHT},
             {"type": "response.reasoning_summary_text.done", **at, "text": THOUGHT},
             {"type": "response.reasoning_summary_part.done", **at,
              "part": dict(part, text=THOUGHT)})
        message("msg_fake02", [ANSWER])
    else:
        message("msg_fake01", [TOOL_TEXT] if kind == "result" else pieces or PIECES)
    events.append({"type": "response.completed",
                   "response": _response(req, model, "completed", done)})
    return [dict(e, sequence_number=i) for i, e in enumerate(events)]


def responses_object(req: dict[str, Any], model: str) -> dict[str, Any]:
    """The whole answer to ``req`` (what its events add up to)."""
    return responses_events(req, model)[-1]["response"]


def responses_sse(events: list[dict[str, Any]]) -> list[bytes]:
    return [b"event: " + e["type"].encode() + b"\ndata: " + compact(e) + b"\n\n"
            for e in events]


def responses_handler(seen: Seen) -> Reply:
    req = seen.json()
    if not req.get("stream"):
        return json_reply(responses_object(req, RESPONSES_MODEL))
    events = responses_events(req, RESPONSES_MODEL)
    return Reply(headers=[("content-type", "text/event-stream")], pieces=responses_sse(events),
                 cut_after=5 if "cut" in json.dumps(req["input"]) else None)
