"""A fake upstream that checks each vendor's native structured-output field and answers with
JSON text (or a refusal) in that vendor's own shape, whole and streamed (for
``tests/e2e/test_structured_outputs.py``).

One ``FakeUpstream`` plays five vendors, told apart by path: Anthropic (``/v1/messages``),
Gemini (``/v1beta/models/…``), Bedrock InvokeModel (``/model/…/invoke[-with-response-stream]``),
Cohere v2 (``/v2/chat``) and an OpenAI-compatible host (``/v1/chat/completions``). What a request
lacks is recorded in ``problems`` (checked by the test; a handler thread cannot fail it) and
answered with a 400, so the client sees it too.
"""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.llm_vendors import anthropic_sse, bedrock_fx, compact
from tests.fakes.upstream import FakeUpstream, Reply, Seen, json_reply

ANSWER_TOOL = "uniapi_json_answer"
REFUSAL = "I can't help with that request."


def pieces_of(text: str, n: int = 4) -> list[str]:
    """``text`` cut into ``n`` pieces of about equal length (a streamed answer)."""
    size = max(1, -(-len(text) // n))
    return [text[i:i + size] for i in range(0, len(text), size)]


def resolve(root: dict[str, Any], node: Any) -> Any:
    """``node`` with a local ``$ref`` (``#/$defs/X``) followed, once."""
    if isinstance(node, dict) and isinstance(node.get("$ref"), str):
        out: Any = root
        for part in node["$ref"].lstrip("#/").split("/"):
            out = out[part]
        return out
    return node


def object_nodes(node: Any) -> list[dict[str, Any]]:
    """Every schema node of ``node`` that describes an object (has ``properties``)."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict) or node.get("type") == "object":
            found.append(node)
        for v in node.values():
            found += object_nodes(v)
    elif isinstance(node, list):
        for v in node:
            found += object_nodes(v)
    return found


class StructuredFake:
    """``fields``: the top-level property names the schema must have; ``nested``: a property
    (by name) holding an object, and that object's property names; ``constrained``: a string
    property with ``minLength`` in the client's schema. ``refuse`` makes Claude answers stop
    with ``refusal``. ``answer`` is the JSON text every vendor answers with."""

    def __init__(self, answer: str, fields: set[str], nested: tuple[str, set[str]],
                 constrained: str) -> None:
        self.answer = answer
        self.fields = fields
        self.nested = nested
        self.constrained = constrained
        self.refuse = False
        self.problems: list[str] = []
        self.up = FakeUpstream(self.handle)

    @property
    def url(self) -> str:
        return self.up.url

    @property
    def seen(self) -> list[Seen]:
        return self.up.seen

    def close(self) -> None:
        self.up.close()

    # -- schema checks -------------------------------------------------------------------

    def check_schema(self, where: str, schema: Any, *, closed: bool, as_sent: bool) -> None:
        """Properties match the model's fields (the nested object's too, through ``$ref``);
        ``closed``: every object has ``additionalProperties: false``; ``as_sent``: the
        ``minLength`` constraint is still a keyword (else it must be in the description)."""
        if not isinstance(schema, dict):
            self.problems.append(f"{where}: schema is {schema!r}")
            return
        props = schema.get("properties")
        if not isinstance(props, dict) or set(props) != self.fields:
            self.problems.append(f"{where}: properties {sorted(props or {})} != "
                                 f"{sorted(self.fields)}")
            return
        name, inner_fields = self.nested
        try:
            inner = resolve(schema, props[name])
        except (KeyError, TypeError) as exc:
            self.problems.append(f"{where}: {name} does not resolve: {exc!r}")
            return
        if set((inner or {}).get("properties", {})) != inner_fields:
            self.problems.append(f"{where}: {name} properties {inner!r}")
        if closed:
            for node in object_nodes(schema):
                if node.get("additionalProperties") is not False:
                    self.problems.append(f"{where}: object without additionalProperties "
                                         f"false: {node!r}")
        c = props[self.constrained]
        if as_sent:
            if c.get("minLength") != 1:
                self.problems.append(f"{where}: minLength not kept as sent: {c!r}")
        elif "minLength" in c or "minLength" not in str(c.get("description", "")):
            self.problems.append(f"{where}: minLength not moved into the description: {c!r}")

    def bad(self, why: str) -> Reply:
        self.problems.append(why)
        return json_reply({"error": {"message": f"fake: {why}", "type": "invalid_request_error",
                                     "code": None}}, status=400)

    # -- dispatch ------------------------------------------------------------------------

    def handle(self, seen: Seen) -> Reply:
        n = len(self.problems)
        try:
            req = seen.json()
            path = seen.path
            if path == "/v1/messages":
                reply = self.claude(req, stream=bool(req.get("stream")), bedrock=False)
            elif path.startswith("/model/"):
                if req.get("anthropic_version") != "bedrock-2023-05-31" or "stream" in req:
                    self.problems.append(f"bedrock body {sorted(req)}")
                reply = self.claude(req, stream=path.endswith("/invoke-with-response-stream"),
                                    bedrock=True)
            elif path.startswith("/v1beta/models/"):
                reply = self.gemini(req, stream=":streamGenerateContent" in path)
            elif path == "/v2/chat":
                reply = self.cohere(req, stream=bool(req.get("stream")))
            elif path == "/v1/chat/completions":
                reply = self.openai(req, stream=bool(req.get("stream")))
            else:
                return self.bad(f"no route {path}")
        except Exception as exc:  # noqa: BLE001 - reported by the test
            return self.bad(f"fake crashed: {exc!r}")
        if len(self.problems) > n:
            return self.bad(f"{seen.path}: request lacks its structured-output field")
        return reply

    # -- Anthropic and Bedrock -----------------------------------------------------------

    def claude(self, req: dict[str, Any], stream: bool, bedrock: bool) -> Reply:
        tools = req.get("tools") or []
        if any(t.get("name") == ANSWER_TOOL for t in tools):  # the answer-tool fallback
            tool = next(t for t in tools if t.get("name") == ANSWER_TOOL)
            if req.get("tool_choice") != {"type": "tool", "name": ANSWER_TOOL}:
                self.problems.append(f"tool_choice {req.get('tool_choice')!r}")
            if "output_config" in req:
                self.problems.append("output_config beside the answer tool")
            self.check_schema("answer tool input_schema", tool.get("input_schema"),
                              closed=True, as_sent=True)
            by_tool = True
        else:
            fmt = (req.get("output_config") or {}).get("format") or {}
            if fmt.get("type") != "json_schema":
                self.problems.append(f"output_config {req.get('output_config')!r}")
                return Reply()
            self.check_schema("output_config.format.schema", fmt.get("schema"),
                              closed=True, as_sent=False)
            by_tool = False
        model = "claude-fake"
        stop = "refusal" if self.refuse else "tool_use" if by_tool else "end_turn"
        if self.refuse:
            block: dict[str, Any] = {"type": "text", "text": REFUSAL}
        elif by_tool:
            block = {"type": "tool_use", "id": "toolu_ans01", "name": ANSWER_TOOL,
                     "input": json.loads(self.answer)}
        else:
            block = {"type": "text", "text": self.answer}
        if not stream:
            return json_reply({"id": "msg_so01", "type": "message", "role": "assistant",
                               "model": model, "content": [block], "stop_reason": stop,
                               "stop_sequence": None,
                               "usage": {"input_tokens": 30, "output_tokens": 12}})
        events: list[dict[str, Any]] = [
            {"type": "message_start", "message": {
                "id": "msg_so01", "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": 30, "output_tokens": 1}}},
            {"type": "ping"}]
        if block["type"] == "tool_use":
            start = dict(block, input={})
            deltas = [{"type": "input_json_delta", "partial_json": p}
                      for p in [""] + pieces_of(self.answer)]
        else:
            start = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in pieces_of(block["text"])]
        events.append({"type": "content_block_start", "index": 0, "content_block": start})
        events += [{"type": "content_block_delta", "index": 0, "delta": d} for d in deltas]
        events += [{"type": "content_block_stop", "index": 0},
                   {"type": "message_delta", "delta": {"stop_reason": stop,
                                                       "stop_sequence": None},
                    "usage": {"output_tokens": 12}},
                   {"type": "message_stop"}]
        if not bedrock:
            return Reply(headers=[("content-type", "text/event-stream")],
                         pieces=anthropic_sse(events))
        events[-1]["amazon-bedrock-invocationMetrics"] = {
            "inputTokenCount": 30, "outputTokenCount": 12, "invocationLatency": 100,
            "firstByteLatency": 30}
        body = bedrock_fx.stream(events)
        return Reply(headers=[("content-type", "application/vnd.amazon.eventstream")],
                     pieces=[body[i:i + 61] for i in range(0, len(body), 61)])

    # -- Gemini --------------------------------------------------------------------------

    def gemini(self, req: dict[str, Any], stream: bool) -> Reply:
        config = req.get("generationConfig") or {}
        if config.get("responseMimeType") != "application/json":
            self.problems.append(f"generationConfig {config!r}")
        if "responseSchema" in config:
            self.problems.append("responseSchema sent to a Gemini 2.5 model")
        self.check_schema("generationConfig.responseJsonSchema",
                          config.get("responseJsonSchema"), closed=False, as_sent=True)
        usage = {"promptTokenCount": 12, "candidatesTokenCount": 6, "totalTokenCount": 18}

        def response(text: str, last: bool) -> dict[str, Any]:
            cand: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"},
                                    "index": 0}
            if last:
                cand["finishReason"] = "STOP"
            return {"candidates": [cand], "usageMetadata": usage,
                    "modelVersion": "gemini-2.5-flash", "responseId": "resp-so-1"}

        if not stream:
            return json_reply(response(self.answer, True))
        parts = pieces_of(self.answer)
        return Reply(headers=[("content-type", "text/event-stream")],
                     pieces=[b"data: " + compact(response(p, i == len(parts) - 1)) + b"\r\n\r\n"
                             for i, p in enumerate(parts)])

    # -- Cohere v2 -----------------------------------------------------------------------

    def cohere(self, req: dict[str, Any], stream: bool) -> Reply:
        fmt = req.get("response_format") or {}
        if fmt.get("type") != "json_object" or "json_schema" not in fmt:
            self.problems.append(f"cohere response_format {fmt!r}")
        else:
            self.check_schema("response_format.json_schema", fmt["json_schema"],
                              closed=False, as_sent=True)
        usage = {"billed_units": {"input_tokens": 7, "output_tokens": 9},
                 "tokens": {"input_tokens": 70, "output_tokens": 9}}
        if not stream:
            return json_reply({"id": "co-so-1", "finish_reason": "COMPLETE",
                               "message": {"role": "assistant", "content": [
                                   {"type": "text", "text": self.answer}], "citations": []},
                               "usage": usage})
        events: list[dict[str, Any]] = [
            {"id": "co-so-1", "type": "message-start", "delta": {"message": {
                "role": "assistant", "content": [], "tool_plan": "", "tool_calls": [],
                "citations": []}}},
            {"type": "content-start", "index": 0,
             "delta": {"message": {"content": {"type": "text", "text": ""}}}}]
        events += [{"type": "content-delta", "index": 0,
                    "delta": {"message": {"content": {"text": p}}}}
                   for p in pieces_of(self.answer)]
        events += [{"type": "content-end", "index": 0},
                   {"type": "message-end", "delta": {"finish_reason": "COMPLETE",
                                                     "usage": usage}}]
        return Reply(headers=[("content-type", "text/event-stream")],
                     pieces=[b"event: " + e["type"].encode() + b"\ndata: " + compact(e)
                             + b"\n\n" for e in events])

    # -- OpenAI-compatible ---------------------------------------------------------------

    def openai(self, req: dict[str, Any], stream: bool) -> Reply:
        fmt = req.get("response_format") or {}
        spec = fmt.get("json_schema") or {}
        if fmt.get("type") != "json_schema" or spec.get("strict") is not True:
            self.problems.append(f"openai response_format {fmt!r}")
        else:
            self.check_schema("response_format.json_schema.schema", spec.get("schema"),
                              closed=True, as_sent=True)
        head = {"id": "chatcmpl-so", "created": 17, "model": req.get("model")}
        if not stream:
            return json_reply(dict(head, object="chat.completion", choices=[{
                "index": 0, "message": {"role": "assistant", "content": self.answer,
                                        "refusal": None},
                "finish_reason": "stop"}],
                usage={"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}))
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        deltas += [{"content": p} for p in pieces_of(self.answer)]
        chunks = [dict(head, object="chat.completion.chunk",
                       choices=[{"index": 0, "delta": d, "finish_reason": None}])
                  for d in deltas]
        chunks.append(dict(head, object="chat.completion.chunk",
                           choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
        return Reply(headers=[("content-type", "text/event-stream")],
                     pieces=[b"data: " + compact(c) + b"\n\n" for c in chunks]
                     + [b"data: [DONE]\n\n"])
