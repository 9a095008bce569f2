"""The OpenAI Responses front (uniapi_core/fronts/responses.py): requests to OpenAI chat,
OpenAI chat answers (whole and streamed) back to Responses shapes.

Every translated request is parsed by the request model and must come out with nothing
``invalid`` and no ``extras``; every whole answer is validated by the ``openai`` SDK's
``Response`` model; every stream goes through the grammar checker (``responses_check``), each
event through the SDK's ``ResponseStreamEvent`` union and the SDK's own accumulator
(``ResponseStreamState``), so the tests use OpenAI's client as the oracle.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from uniapi_core.errors import ClientError, UniapiError
from uniapi_core.fronts.responses import (
    ResponsesCall,
    ResponsesStream,
    chat_messages_from_items,
    chat_request_from_responses,
    output_items_of,
    response_id,
    responses_error_body,
    responses_error_type,
    responses_response_from_chat,
)
from uniapi_core.fronts.responses_check import check_responses_stream
from uniapi_core.request import parse_openai_chat

EVENT = TypeAdapter(ResponseStreamEvent)
RID = "resp_test"

# -- requests ------------------------------------------------------------------------------------


def body(**over: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"model": "gpt-x", "input": "hi"}
    out.update(over)
    return out


def parsed_ok(chat_body: dict[str, Any]) -> None:
    parsed = parse_openai_chat(chat_body)
    assert parsed.invalid == frozenset(), parsed.invalid
    assert all(m.obj and not m.invalid for m in parsed.messages)
    assert all(p.ok for m in parsed.messages for p in m.parts)
    assert all(t.type == "function" and t.name for t in parsed.tools)
    assert all(c.ok for m in parsed.messages for c in m.tool_calls)
    assert parsed.extras == {}


def translate(**over: Any) -> ResponsesCall:
    call = chat_request_from_responses(body(**over))
    parsed_ok(call.chat)
    return call


def chat(**over: Any) -> dict[str, Any]:
    return translate(**over).chat


def msgs(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return chat(input=items)["messages"]


def test_minimal_request() -> None:
    call = chat_request_from_responses(body())
    assert call == ResponsesCall(
        chat={"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}]},
        model="gpt-x", stream=False, store=True, previous_response_id=None,
        input_items=[{"type": "message", "role": "user", "content": "hi"}])


def test_stream_store_and_previous_response() -> None:
    call = translate(stream=True, store=False, previous_response_id="resp_prev")
    assert call.stream is True and call.store is False
    assert call.previous_response_id == "resp_prev"
    assert call.chat["stream"] is True and call.chat["stream_options"] == {"include_usage": True}
    assert parse_openai_chat(call.chat).include_usage
    assert "stream" not in chat(stream=False)


def test_instructions_lead_and_roles() -> None:
    out = chat(instructions="be brief", input=[
        {"role": "developer", "content": "dev rules"},
        {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "a"},
                                                          {"type": "input_text", "text": "b"}]},
        {"role": "user", "content": [{"type": "input_text", "text": "q"}]},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "A", "annotations": []},
                     {"type": "output_text", "text": "B", "annotations": []}]},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
        {"role": "assistant", "content": "plain"}])
    assert out["messages"] == [
        {"role": "system", "content": "be brief"}, {"role": "system", "content": "dev rules"},
        {"role": "system", "content": "a\n\nb"}, {"role": "user", "content": "q"},
        {"role": "assistant", "content": "AB"}, {"role": "assistant", "content": "no"},
        {"role": "assistant", "content": "plain"}]
    assert chat(instructions="")["messages"] == [{"role": "user", "content": "hi"}]


def test_images_and_files() -> None:
    out = msgs([{"role": "user", "content": [
        {"type": "input_text", "text": "look"},
        {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "high"},
        {"type": "input_image", "image_url": "data:image/png;base64,iVBO"},
        {"type": "input_file", "filename": "q.pdf", "file_data": "data:application/pdf;base64,JV"},
        {"type": "input_file", "file_data": "data:application/pdf;base64,JW"}]}])
    assert out == [{"role": "user", "content": [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JV",
                                  "filename": "q.pdf"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JW"}}]}]


def test_files_by_url_and_id() -> None:
    out = msgs([{"role": "user", "content": [
        {"type": "input_file", "file_url": "https://x.test/a/r.pdf"},
        {"type": "input_file", "file_url": "https://x.test/a/r.pdf", "filename": "R"},
        {"type": "input_file", "file_id": "file-abc"}]}])
    assert out == [{"role": "user", "content": [
        {"type": "file", "file": {"file_url": "https://x.test/a/r.pdf", "filename": "r.pdf"}},
        {"type": "file", "file": {"file_url": "https://x.test/a/r.pdf", "filename": "R"}},
        {"type": "file", "file": {"file_id": "file-abc"}}]}]


def fc(call_id: str, name: str, args: str = "{}", **extra: Any) -> dict[str, Any]:
    return {"type": "function_call", "call_id": call_id, "name": name, "arguments": args,
            **extra}


def fco(call_id: str, output: Any) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": output}


def test_function_calls_merge_and_outputs() -> None:
    out = msgs([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "Checking."},
        fc("call_1", "get_weather", '{"city":"Paris"}', id="fc_1", status="completed"),
        fc("call_2", "now"),
        fco("call_1", "sunny"),
        fco("call_2", [{"type": "input_text", "text": "12:00"},
                       {"type": "input_text", "text": "UTC"}]),
        {"role": "user", "content": "and tomorrow?"}])
    assert out == [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "12:00\n\nUTC"},
        {"role": "user", "content": "and tomorrow?"}]


def test_function_call_without_text_and_calls_split_by_outputs() -> None:
    out = msgs([{"role": "user", "content": "x"}, fc("a", "f"), fco("a", "1"), fc("b", "g"),
                fco("b", "2")])
    assert out[1:] == [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "a", "content": "1"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "b", "content": "2"}]


def test_tool_output_images_follow_the_tool_messages() -> None:
    img = {"type": "input_image", "image_url": "data:image/png;base64,AAA"}
    out = msgs([{"role": "user", "content": "x"}, fc("a", "f"), fc("b", "g"),
                fco("a", [{"type": "input_text", "text": "shot"}, img]), fco("b", "ok"),
                {"role": "user", "content": "go on"}])
    assert out[2:] == [
        {"role": "tool", "tool_call_id": "a", "content": "shot"},
        {"role": "tool", "tool_call_id": "b", "content": "ok"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {
            "url": "data:image/png;base64,AAA"}}]},
        {"role": "user", "content": "go on"}]


def test_reasoning_items_go_to_the_next_assistant_message() -> None:
    out = msgs([
        {"role": "user", "content": "x"},
        {"type": "reasoning", "id": "rs_1", "encrypted_content": "gAAA",
         "summary": [{"type": "summary_text", "text": "plan"},
                     {"type": "summary_text", "text": "more"}]},
        fc("a", "f"), fco("a", "1"),
        {"type": "reasoning", "id": "rs_2", "summary": [],
         "content": [{"type": "reasoning_text", "text": "raw"}]},
        {"role": "assistant", "content": "done"},
        {"type": "reasoning", "id": "rs_3", "summary": [], "encrypted_content": "gBBB"},
        {"role": "assistant", "content": "again"},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "lost"}]}])
    assert out[1] == {"role": "assistant", "content": None, "reasoning_content": "plan\n\nmore",
                      "tool_calls": [{"id": "a", "type": "function",
                                      "function": {"name": "f", "arguments": "{}"}}]}
    assert out[3] == {"role": "assistant", "content": "done", "reasoning_content": "raw"}
    assert out[4] == {"role": "assistant", "content": "again"}
    assert len(out) == 5


SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}


def test_tools_namespaces_and_dropped_ones() -> None:
    call = translate(tools=[
        {"type": "function", "name": "get_weather", "description": "Weather.",
         "parameters": SCHEMA, "strict": True},
        {"type": "function", "name": "bare"},
        {"type": "namespace", "name": "mcp__node", "description": "JS kernel.", "tools": [
            {"type": "function", "name": "js", "description": "Run JS.", "parameters": SCHEMA},
            {"type": "custom", "name": "raw"}]},
        {"type": "web_search"}, {"type": "web_search_preview"},
        {"type": "file_search", "vector_store_ids": ["vs"]}, {"type": "code_interpreter"},
        {"type": "mcp", "server_label": "deepwiki", "server_url": "https://m"},
        {"type": "custom", "name": "apply_patch", "format": {"type": "grammar"}},
        {"type": "local_shell"}, {"type": "image_generation"}, {"type": "something_new"}])
    assert call.chat["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "description": "Weather.",
                                          "parameters": SCHEMA, "strict": True}},
        {"type": "function", "function": {"name": "bare"}},
        {"type": "function", "function": {"name": "mcp__node__js", "description": "Run JS.",
                                          "parameters": SCHEMA}}]
    assert call.dropped_tools == ("mcp__node__raw", "web_search", "web_search_preview",
                                  "file_search", "code_interpreter", "deepwiki", "apply_patch",
                                  "local_shell", "image_generation", "something_new")
    assert call.namespaces == {"mcp__node__js": ("mcp__node", "js")}
    assert call.split_name("mcp__node__js") == ("js", "mcp__node")
    assert call.split_name("js") == ("js", "mcp__node")  # an upstream that dropped the prefix
    assert call.split_name("get_weather") == ("get_weather", None)


def test_only_hosted_tools_send_no_tools() -> None:
    call = translate(tools=[{"type": "web_search"}], tool_choice="auto",
                     parallel_tool_calls=False)
    assert "tools" not in call.chat and "tool_choice" not in call.chat
    assert "parallel_tool_calls" not in call.chat and call.dropped_tools == ("web_search",)


def test_namespaced_history_is_flattened() -> None:
    out = msgs([{"role": "user", "content": "x"},
                fc("a", "js", namespace="mcp__node"), fco("a", "1")])
    assert out[1]["tool_calls"][0]["function"]["name"] == "mcp__node__js"


F = [{"type": "function", "name": "f"},
     {"type": "namespace", "name": "ns", "description": "", "tools": [
         {"type": "function", "name": "g"}]}]


@pytest.mark.parametrize("choice, expected", [
    ("auto", "auto"), ("none", "none"), ("required", "required"),
    ({"type": "function", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
    ({"type": "function", "name": "g"}, {"type": "function", "function": {"name": "ns__g"}}),
    ({"type": "function", "name": "g", "namespace": "ns"},
     {"type": "function", "function": {"name": "ns__g"}}),
    ({"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "f"}]},
     "required"),
    ({"type": "web_search_preview"}, "auto"), ({"type": "mcp", "server_label": "x"}, "auto"),
])
def test_tool_choice(choice: Any, expected: Any) -> None:
    out = chat(tools=F, tool_choice=choice, parallel_tool_calls=False)
    assert out["tool_choice"] == expected and out["parallel_tool_calls"] is False


@pytest.mark.parametrize("fmt, expected", [
    ({"type": "text"}, None), ({"type": "json_object"}, {"type": "json_object"}),
    ({"type": "json_schema", "name": "out", "schema": SCHEMA, "strict": True,
      "description": "d"},
     {"type": "json_schema", "json_schema": {"name": "out", "schema": SCHEMA,
                                             "description": "d", "strict": True}}),
])
def test_text_format(fmt: dict[str, Any], expected: Any) -> None:
    assert chat(text={"format": fmt, "verbosity": "low"}).get("response_format") == expected


@pytest.mark.parametrize("effort, expected", [
    ("none", "none"), ("minimal", "minimal"), ("low", "low"), ("medium", "medium"),
    ("high", "high"), ("xhigh", "high"), ("max", "high")])
def test_reasoning_effort(effort: str, expected: str) -> None:
    out = chat(reasoning={"effort": effort, "summary": "auto"})
    assert out["reasoning_effort"] == expected
    assert "reasoning_effort" not in chat(reasoning={"summary": "detailed"})


def test_sampling_user_and_fields_not_sent_upstream() -> None:
    call = translate(max_output_tokens=256, temperature=0.5, top_p=0.9, user="u-1",
                     metadata={"k": "v"}, truncation="auto", include=["reasoning.encrypted_content"],
                     service_tier="flex", prompt_cache_key="thread-1", safety_identifier="s",
                     background=False, conversation=None, unknown_field=1)
    assert {k: call.chat[k] for k in ("max_completion_tokens", "temperature", "top_p", "user")} \
        == {"max_completion_tokens": 256, "temperature": 0.5, "top_p": 0.9, "user": "u-1"}
    assert parse_openai_chat(call.chat).sampling.max_tokens == 256
    assert call.echo["metadata"] == {"k": "v"} and call.echo["prompt_cache_key"] == "thread-1"
    assert "include" not in call.echo and "unknown_field" not in call.echo


#: a Codex CLI turn, as Codex builds it (codex-rs: instructions, developer/user context
#: messages, replayed reasoning with encrypted content, namespaced MCP calls, hosted and
#: freeform tools, store false, prompt_cache_key, include encrypted reasoning)
CODEX: dict[str, Any] = {
    "model": "gpt-5-codex",
    "instructions": "You are Codex, based on GPT-5. You are running as a coding agent…",
    "input": [
        {"type": "message", "role": "developer", "content": [
            {"type": "input_text", "text": "<permissions instructions>sandbox…"}]},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "<environment_context><cwd>/repo</cwd>"
                                           "</environment_context>"}]},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "list the files"}]},
        {"type": "reasoning", "id": "rs_a", "summary": [
            {"type": "summary_text", "text": "**Listing files**"}],
         "content": None, "encrypted_content": "gAAAAB…"},
        {"type": "function_call", "id": "fc_a", "name": "shell",
         "arguments": '{"command":["ls"],"workdir":"/repo"}', "call_id": "call_a"},
        {"type": "function_call_output", "call_id": "call_a",
         "output": "Exit code: 0\nOutput:\nREADME.md\n"},
        {"type": "function_call", "name": "js", "namespace": "mcp__node_repl",
         "arguments": '{"code":"1+1"}', "call_id": "call_b"},
        {"type": "function_call_output", "call_id": "call_b", "output": "2"},
        {"type": "message", "role": "assistant", "id": "msg_a", "content": [
            {"type": "output_text", "text": "There is README.md.", "annotations": []}]},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "thanks"}]},
    ],
    "tools": [
        {"type": "function", "name": "shell", "description": "Runs a shell command",
         "strict": False, "parameters": {"type": "object", "properties": {
             "command": {"type": "array", "items": {"type": "string"}},
             "workdir": {"type": "string"}}, "required": ["command"],
             "additionalProperties": False}},
        {"type": "custom", "name": "apply_patch", "description": "Use apply_patch to edit",
         "format": {"type": "grammar", "syntax": "lark", "definition": "start: patch"}},
        {"type": "web_search"},
        {"type": "namespace", "name": "mcp__node_repl", "description": "Use js to run JS.",
         "tools": [{"type": "function", "name": "js", "description": "Run JS",
                    "strict": False, "parameters": {"type": "object", "properties": {
                        "code": {"type": "string"}}}}]},
    ],
    "tool_choice": "auto", "parallel_tool_calls": False,
    "reasoning": {"effort": "medium", "summary": "auto"}, "store": False, "stream": True,
    "include": ["reasoning.encrypted_content"], "prompt_cache_key": "019a-thread",
    "text": {"verbosity": "low"},
}


def test_a_codex_turn() -> None:
    call = chat_request_from_responses(CODEX)
    parsed_ok(call.chat)
    assert call.stream and not call.store and call.dropped_tools == ("apply_patch",
                                                                     "web_search")
    assert call.input_items == CODEX["input"]
    assert [m["role"] for m in call.chat["messages"]] == [
        "system", "system", "user", "user", "assistant", "tool", "assistant", "tool",
        "assistant", "user"]
    first = call.chat["messages"][4]
    assert first["reasoning_content"] == "**Listing files**"
    assert first["tool_calls"][0]["function"]["name"] == "shell"
    assert call.chat["messages"][6]["tool_calls"][0]["function"]["name"] == \
        "mcp__node_repl__js"
    assert [t["function"]["name"] for t in call.chat["tools"]] == ["shell",
                                                                   "mcp__node_repl__js"]
    assert call.chat["reasoning_effort"] == "medium" and call.chat["tool_choice"] == "auto"
    assert call.chat["parallel_tool_calls"] is False
    out = responses_response_from_chat(completion({"tool_calls": [
        {"id": "call_c", "type": "function",
         "function": {"name": "mcp__node_repl__js", "arguments": "{}"}}]}, "tool_calls"),
        call, RID, 1)
    Response.model_validate(out)
    assert out["output"][0]["name"] == "js" and out["output"][0]["namespace"] == \
        "mcp__node_repl"
    assert out["store"] is False and out["prompt_cache_key"] == "019a-thread"
    assert out["text"] == {"verbosity": "low"}


BAD: list[tuple[Any, str]] = [
    ([], "request body must be a JSON object"),
    ({"input": "x"}, "model: field required"),
    (body(model=""), "model: expected a non-empty string"),
    ({"model": "m"}, "input: field required"),
    (body(input=5), "input: expected a string or a list of items"),
    (body(input=["x"]), "input[0]: expected an object"),
    (body(input=[{"role": "user"}]), "input[0].content: field required"),
    (body(input=[{"role": "tool", "content": "x"}]), "input[0].role: expected"),
    (body(input=[{"role": "user", "content": 3}]), "input[0].content: expected"),
    (body(input=[{"type": "item_reference", "id": "msg_1"}]),
     "input[0].type: item references are not supported"),
    (body(input=[{"role": "user", "content": "a"}, {"type": "custom_tool_call", "call_id": "c",
                                                    "name": "apply_patch", "input": "x"}]),
     "input[1].type: item type 'custom_tool_call'"),
    (body(input=[{"type": "web_search_call", "id": "ws"}]),
     "input[0].type: item type 'web_search_call'"),
    (body(input=[{"content": "x"}]), "input[0].type: item type None"),
    (body(input=[{"role": "user", "content": [{"type": "input_audio"}]}]),
     "input[0].content[0].type: content part 'input_audio'"),
    (body(input=[{"role": "user", "content": [{"type": "input_text"}]}]),
     "input[0].content[0].text: field required"),
    (body(input=[{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]),
     "input[0].content[0].file_id: uploaded files cannot be forwarded"),
    (body(input=[{"role": "user", "content": [{"type": "input_image"}]}]),
     "input[0].content[0].image_url: field required"),
    (body(input=[{"role": "user", "content": [{"type": "input_image", "image_url": "u",
                                                "detail": "max"}]}]),
     "input[0].content[0].detail: expected"),
    (body(input=[{"role": "user", "content": [{"type": "input_file", "file_id": "file-1",
                                                "file_url": "https://x/a.pdf"}]}]),
     "input[0].content[0]: expected exactly one of file_data, file_url and file_id, got "
     "file_url and file_id"),
    (body(input=[{"role": "user", "content": [{"type": "input_file"}]}]),
     "input[0].content[0]: expected exactly one of file_data, file_url and file_id"),
    (body(input=[{"role": "user", "content": [{"type": "input_file",
                                                "file_url": "file:///etc/passwd"}]}]),
     "input[0].content[0].file_url: expected an http(s) URL"),
    (body(input=[{"role": "user", "content": [{"type": "input_file", "file_data": "JVBE"}]}]),
     "input[0].content[0].file_data: expected a data URL"),
    (body(input=[{"role": "system", "content": [{"type": "input_image", "image_url": "u"}]}]),
     "input[0].content[0].type: content part 'input_image'"),
    (body(input=[{"role": "assistant", "content": [{"type": "input_image"}]}]),
     "input[0].content[0].type: content part 'input_image'"),
    (body(input=[fc("a", "f", args={})]), "input[0].arguments: expected a string"),
    (body(input=[{"type": "function_call", "name": "f", "arguments": "{}"}]),
     "input[0].call_id: field required"),
    (body(input=[{"type": "function_call_output", "call_id": "a"}]),
     "input[0].output: field required"),
    (body(input=[fco("a", 5)]), "input[0].output: expected"),
    (body(input=[fco("a", [{"type": "output_text", "text": "x"}])]),
     "input[0].output[0].type: content part 'output_text'"),
    (body(input=[{"type": "reasoning", "summary": [{"type": "text", "text": "x"}]}]),
     "input[0].summary[0].type: expected 'summary_text'"),
    (body(input=[{"type": "reasoning", "summary": "x"}]), "input[0].summary: expected a list"),
    (body(instructions=5), "body.instructions: expected a string"),
    (body(tools={}), "tools: expected a list"),
    (body(tools=["x"]), "tools[0]: expected an object"),
    (body(tools=[{"type": "function"}]), "tools[0].name: field required"),
    (body(tools=[{"type": "function", "name": "f", "parameters": "x"}]),
     "tools[0].parameters: expected an object"),
    (body(tools=[{"type": "function", "name": "f", "strict": "yes"}]),
     "tools[0].strict: expected a boolean"),
    (body(tools=[{"type": "namespace", "tools": []}]), "tools[0].name: field required"),
    (body(tools=[{"type": "namespace", "name": "n", "tools": {}}]),
     "tools[0].tools: expected a list"),
    (body(tools=[{"type": "namespace", "name": "n", "tools": [{"type": "function"}]}]),
     "tools[0].tools[0].name: field required"),
    (body(tool_choice="any"), "tool_choice: expected 'auto'"),
    (body(tool_choice=3), "tool_choice: expected an object"),
    (body(tool_choice={"type": "function"}), "tool_choice.name: field required"),
    (body(tool_choice={"type": "allowed_tools", "mode": "none"}), "tool_choice.mode: expected"),
    (body(tool_choice={}), "tool_choice.type: field required"),
    (body(parallel_tool_calls="no"), "parallel_tool_calls: expected a boolean"),
    (body(max_output_tokens=0), "max_output_tokens: expected a positive integer"),
    (body(max_output_tokens=True), "max_output_tokens: expected a positive integer"),
    (body(temperature="hot"), "temperature: expected a number"),
    (body(top_p=True), "top_p: expected a number"),
    (body(reasoning="high"), "reasoning: expected an object"),
    (body(reasoning={"effort": "extreme"}), "reasoning.effort: expected one of"),
    (body(text="json"), "text: expected an object"),
    (body(text={"format": {"type": "xml"}}), "text.format.type: expected"),
    (body(text={"format": {"type": "json_schema", "schema": {}}}),
     "text.format.name: field required"),
    (body(text={"format": {"type": "json_schema", "name": "n"}}),
     "text.format.schema: expected an object"),
    (body(text={"format": {"type": "json_schema", "name": "n", "schema": {}, "strict": 1}}),
     "text.format.strict: expected a boolean"),
    (body(metadata=[]), "metadata: expected an object"),
    (body(user=5), "body.user: expected a string"),
    (body(stream="yes"), "stream: expected a boolean"),
    (body(store="no"), "store: expected a boolean"),
    (body(previous_response_id=5), "body.previous_response_id: expected a string"),
]


@pytest.mark.parametrize("request_body, message", BAD)
def test_bad_requests_name_the_path(request_body: Any, message: str) -> None:
    with pytest.raises(ClientError) as info:
        chat_request_from_responses(request_body)
    assert isinstance(info.value, UniapiError)
    assert info.value.status == 400 and info.value.type == "invalid_request_error"
    assert info.value.message.startswith(message), info.value.message


def test_chat_messages_from_items_names_its_path() -> None:
    with pytest.raises(ClientError, match=r"^stored\[1\]\.type: item type 'x'"):
        chat_messages_from_items([{"role": "user", "content": "a"}, {"type": "x"}], "stored")


# -- whole answers -------------------------------------------------------------------------------

def completion(message: dict[str, Any], finish: str | None = "stop",
               usage: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-abc", "object": "chat.completion", "created": 1,
            "model": "upstream-model",
            "choices": [{"index": 0, "message": {"role": "assistant", **message},
                         "finish_reason": finish}],
            "usage": usage if usage is not None else {"prompt_tokens": 10,
                                                      "completion_tokens": 5,
                                                      "total_tokens": 15}}


def answer(chat_body: dict[str, Any], call: ResponsesCall | None = None) -> dict[str, Any]:
    out = responses_response_from_chat(chat_body, call or translate(), RID, 1700000000)
    Response.model_validate(out)  # the SDK's own model accepts it
    return out


def test_text_answer() -> None:
    out = answer(completion({"content": "Hello"}))
    msg_id = out["output"][0]["id"]
    assert msg_id.startswith("msg_") and len(msg_id) == 52
    assert out["output"] == [{"id": msg_id, "type": "message", "status": "completed",
                              "role": "assistant", "content": [
                                  {"type": "output_text", "text": "Hello", "annotations": []}]}]
    assert (out["id"], out["object"], out["created_at"], out["status"], out["model"]) == (
        RID, "response", 1700000000, "completed", "gpt-x")
    assert out["usage"] == {"input_tokens": 10, "input_tokens_details": {
        "cached_tokens": 0, "cache_write_tokens": 0}, "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 15}
    assert out["error"] is None and out["incomplete_details"] is None
    sdk = Response.model_validate(out)
    assert sdk.output_text == "Hello"
    assert answer(completion({"content": "Hello"}))["output"][0]["id"] == msg_id


def test_reasoning_tools_and_refusal() -> None:
    call = translate(tools=F)
    out = answer(completion({
        "content": "Let me check.", "reasoning_content": "think", "refusal": "partly not",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "", "type": "function", "function": {"name": "ns__g", "arguments": "[1]"}},
            {"id": "call_3", "type": "function", "function": {"name": "g",
                                                             "arguments": {"a": 1}}}]},
        "tool_calls"), call)
    kinds = [(o["type"], o["id"][:3]) for o in out["output"]]
    assert kinds == [("reasoning", "rs_"), ("message", "msg"), ("function_call", "fc_"),
                     ("function_call", "fc_"), ("function_call", "fc_")]
    assert out["output"][0]["summary"] == [{"type": "summary_text", "text": "think"}]
    assert out["output"][1]["content"][1] == {"type": "refusal", "refusal": "partly not"}
    f, g, g2 = out["output"][2:]
    assert (f["call_id"], f["name"], f["arguments"], "namespace" in f) == (
        "call_1", "f", "{}", False)
    assert g["call_id"].startswith("call_") and (g["name"], g["namespace"]) == ("g", "ns")
    assert (g2["name"], g2["namespace"], g2["arguments"]) == ("g", "ns", '{"a":1}')
    assert len({o["id"] for o in out["output"]}) == 5


@pytest.mark.parametrize("finish, status, reason", [
    ("stop", "completed", None), ("tool_calls", "completed", None), (None, "completed", None),
    ("length", "incomplete", "max_output_tokens"),
    ("content_filter", "incomplete", "content_filter")])
def test_status(finish: str | None, status: str, reason: str | None) -> None:
    out = answer(completion({"content": "x"}, finish))
    assert out["status"] == status
    assert out["incomplete_details"] == (None if reason is None else {"reason": reason})
    assert out["output"][-1]["status"] == ("incomplete" if reason else "completed")


def test_usage_details() -> None:
    out = answer(completion({"content": "x"}, usage={
        "prompt_tokens": 100, "completion_tokens": 30,
        "prompt_tokens_details": {"cached_tokens": 60},
        "completion_tokens_details": {"reasoning_tokens": 20}}))
    assert out["usage"] == {"input_tokens": 100, "input_tokens_details": {
        "cached_tokens": 60, "cache_write_tokens": 0}, "output_tokens": 30,
        "output_tokens_details": {"reasoning_tokens": 20}, "total_tokens": 130}
    assert answer({"id": "c"})["usage"]["total_tokens"] == 0


def test_echoed_request_fields() -> None:
    call = translate(instructions="be brief", tools=[{"type": "function", "name": "f",
                                                      "parameters": {"type": "object"}}],
                     tool_choice="required", parallel_tool_calls=False, temperature=0.2,
                     top_p=0.5, max_output_tokens=99, metadata={"a": "b"},
                     text={"format": {"type": "json_object"}},
                     reasoning={"effort": "low", "summary": "auto"}, store=False,
                     previous_response_id="resp_0", user="u", truncation="auto",
                     service_tier="flex", safety_identifier="sid")
    out = answer(completion({"content": "{}"}), call)
    assert {k: out[k] for k in ("instructions", "tool_choice", "parallel_tool_calls",
                                "temperature", "top_p", "max_output_tokens", "metadata", "text",
                                "reasoning", "store", "previous_response_id", "user",
                                "truncation", "service_tier", "safety_identifier")} == {
        "instructions": "be brief", "tool_choice": "required", "parallel_tool_calls": False,
        "temperature": 0.2, "top_p": 0.5, "max_output_tokens": 99, "metadata": {"a": "b"},
        "text": {"format": {"type": "json_object"}},
        "reasoning": {"effort": "low", "summary": "auto"}, "store": False,
        "previous_response_id": "resp_0", "user": "u", "truncation": "auto",
        "service_tier": "flex", "safety_identifier": "sid"}
    assert out["tools"] == call.echo["tools"]


def test_stored_items_rebuild_the_conversation() -> None:
    call = translate(tools=F, input=[{"role": "user", "content": "x"}])
    out = answer(completion({"content": "calling", "reasoning_content": "r", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "ns__g", "arguments": "{}"}}]},
        "tool_calls"), call)
    items = call.input_items + output_items_of(out) + [fco("call_1", "42")]
    rebuilt = chat_messages_from_items(items)
    parsed_ok({"model": "m", "messages": rebuilt})
    assert rebuilt == [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": "calling", "reasoning_content": "r", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "ns__g",
                                                             "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "42"}]
    assert output_items_of({"output": [1, {"type": "x"}]}) == [{"type": "x"}]
    assert output_items_of({}) == []


# -- streams -------------------------------------------------------------------------------------

def chunk(delta: dict[str, Any] | None = None, finish: str | None = None,
          usage: dict[str, Any] | None = None, choices: bool = True) -> bytes:
    obj: dict[str, Any] = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1,
                           "model": "up", "choices": [], "usage": usage}
    if choices:
        obj["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def tcall(index: int, cid: str | None = None, name: str | None = None,
          args: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"index": index}
    if cid is not None:
        out.update(id=cid, type="function")
    fn: dict[str, Any] = {}
    if name is not None:
        fn["name"] = name
    if args is not None:
        fn["arguments"] = args
    out["function"] = fn
    return out


USAGE = {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29,
         "prompt_tokens_details": {"cached_tokens": 5}}


def sdk_final(events: list[dict[str, Any]]) -> Any:
    """Each event validated by the SDK's union, all fed to the SDK's accumulator; the
    response it ends with (None for a failed one)."""
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    for event in events:
        state.handle_event(EVENT.validate_python(event))  # type: ignore[arg-type]
    return state._completed_response


def run(chunks: list[bytes], usage: dict[str, Any] | None = None,
        call: ResponsesCall | None = None) -> list[dict[str, Any]]:
    stream = ResponsesStream(call or translate(stream=True), RID, 7)
    data = b"".join(stream.feed(c) for c in chunks) + stream.end(usage)
    assert stream.closed
    events = check_responses_stream(data)
    final = sdk_final(events)
    if events[-1]["type"] == "response.completed":
        assert final is not None and final.id == RID
    Response.model_validate(events[-1]["response"])
    return events


def shape(events: list[dict[str, Any]]) -> list[Any]:
    """(type, the event's distinguishing payload) pairs, ids left out."""
    out: list[Any] = []
    for e in events:
        t = e["type"].removeprefix("response.")
        if "delta" in e:
            out.append((t, e["delta"]))
        elif t in ("output_item.added", "output_item.done"):
            out.append((t, e["output_index"], e["item"]["type"], e["item"].get("status")))
        elif t.endswith(("part.added", "part.done")):
            out.append((t, e["part"]))
        elif t.endswith(".done"):
            out.append((t, e.get("text", e.get("refusal", e.get("arguments")))))
        else:
            out.append((t,))
    return out


TEXT = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}),
        chunk({"content": "lo"}), chunk(finish="stop"), chunk(usage=USAGE, choices=False),
        b"data: [DONE]\n\n"]


def test_text_stream() -> None:
    events = run(TEXT)
    assert shape(events) == [
        ("created",), ("in_progress",),
        ("output_item.added", 0, "message", "in_progress"),
        ("content_part.added", {"type": "output_text", "text": "", "annotations": []}),
        ("output_text.delta", "Hel"), ("output_text.delta", "lo"),
        ("output_text.done", "Hello"),
        ("content_part.done", {"type": "output_text", "text": "Hello", "annotations": []}),
        ("output_item.done", 0, "message", "completed"), ("completed",)]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    first, last = events[0]["response"], events[-1]["response"]
    assert (first["id"], first["status"], first["output"], first["usage"]) == (
        RID, "in_progress", [], None)
    assert last["usage"]["input_tokens"] == 20 and \
        last["usage"]["input_tokens_details"]["cached_tokens"] == 5
    item_id = events[2]["item"]["id"]
    assert all(e["item_id"] == item_id for e in events[3:8])
    assert all(e["output_index"] == 0 and e["content_index"] == 0 for e in events[3:8])


def test_stream_wire_format_and_ids() -> None:
    stream = ResponsesStream(translate(stream=True), RID, 7)
    out = stream.feed(chunk({"content": "Hi"}))
    assert out.startswith(b'event: response.created\ndata: {"type":"response.created",')
    assert out.endswith(b',"content_index":0,"delta":"Hi","logprobs":[],"sequence_number":4}\n\n')
    again = ResponsesStream(translate(stream=True), RID, 7).feed(chunk({"content": "Hi"}))
    assert again == out
    assert ResponsesStream(translate(stream=True), "resp_other", 7).feed(
        chunk({"content": "Hi"})) != out
    assert response_id("r1") == response_id("r1") != response_id("r2")
    assert response_id("r1").startswith("resp_")


def test_reasoning_text_then_tools() -> None:
    call = translate(stream=True, tools=F)
    events = run([chunk({"role": "assistant", "reasoning_content": "Let me "}),
                  chunk({"reasoning": "think."}), chunk({"content": "Checking."}),
                  chunk({"tool_calls": [tcall(0, "call_a", "f", "")]}),
                  chunk({"tool_calls": [tcall(0, args='{"city"')]}),
                  chunk({"tool_calls": [tcall(0, args=': "Paris"}')]}),
                  chunk({"tool_calls": [tcall(1, "call_b", "ns__g", '{}')]}),
                  chunk(finish="tool_calls"), chunk(usage=USAGE, choices=False)], call=call)
    assert shape(events)[2:] == [
        ("output_item.added", 0, "reasoning", None),
        ("reasoning_summary_part.added", {"type": "summary_text", "text": ""}),
        ("reasoning_summary_text.delta", "Let me "), ("reasoning_summary_text.delta", "think."),
        ("reasoning_summary_text.done", "Let me think."),
        ("reasoning_summary_part.done", {"type": "summary_text", "text": "Let me think."}),
        ("output_item.done", 0, "reasoning", "completed"),
        ("output_item.added", 1, "message", "in_progress"),
        ("content_part.added", {"type": "output_text", "text": "", "annotations": []}),
        ("output_text.delta", "Checking."), ("output_text.done", "Checking."),
        ("content_part.done", {"type": "output_text", "text": "Checking.", "annotations": []}),
        ("output_item.done", 1, "message", "completed"),
        ("output_item.added", 2, "function_call", "in_progress"),
        ("function_call_arguments.delta", '{"city"'),
        ("function_call_arguments.delta", ': "Paris"}'),
        ("function_call_arguments.done", '{"city": "Paris"}'),
        ("output_item.done", 2, "function_call", "completed"),
        ("output_item.added", 3, "function_call", "in_progress"),
        ("function_call_arguments.delta", "{}"), ("function_call_arguments.done", "{}"),
        ("output_item.done", 3, "function_call", "completed"), ("completed",)]
    calls = events[-1]["response"]["output"][2:]
    assert [(c["call_id"], c["name"], c.get("namespace")) for c in calls] == [
        ("call_a", "f", None), ("call_b", "g", "ns")]
    final = sdk_final(events)
    assert [o.type for o in final.output] == ["reasoning", "message", "function_call",
                                              "function_call"]
    assert final.output[3].namespace == "ns"


def test_refusal_and_text_parts_and_content_filter() -> None:
    events = run([chunk({"content": "I"}), chunk({"refusal": "No."}), chunk({"content": "!"}),
                  chunk(finish="content_filter")])
    last = events[-1]
    assert last["type"] == "response.incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "content_filter"}
    message = last["response"]["output"][0]
    assert message["status"] == "incomplete"
    assert message["content"] == [
        {"type": "output_text", "text": "I", "annotations": []},
        {"type": "refusal", "refusal": "No."},
        {"type": "output_text", "text": "!", "annotations": []}]
    assert [e["content_index"] for e in events if e["type"].endswith("delta")] == [0, 1, 2]


def test_length_is_incomplete_and_usage_from_end_wins() -> None:
    events = run([chunk({"content": "abc"}), chunk(finish="length", usage=USAGE)],
                 usage={"prompt_tokens": 3, "completion_tokens": 4})
    last = events[-1]["response"]
    assert events[-1]["type"] == "response.incomplete" and last["status"] == "incomplete"
    assert last["incomplete_details"] == {"reason": "max_output_tokens"}
    assert (last["usage"]["input_tokens"], last["usage"]["output_tokens"]) == (3, 4)


def test_tool_calls_in_one_chunk_and_late_fragments() -> None:
    events = run([chunk({"tool_calls": [tcall(0, "a", "f", "{}"), tcall(1, "b", "g", "{}")]}),
                  chunk({"tool_calls": [tcall(0, args="ignored")]}),  # its item is closed
                  chunk({"tool_calls": [tcall(0, "c", "h", '{"x":1}')]}),  # a new call
                  chunk({"tool_calls": [{"index": 2, "function": {"arguments": "{}"}}]})])
    calls = events[-1]["response"]["output"]
    assert [(c["call_id"], c["name"]) for c in calls[:3]] == [("a", "f"), ("b", "g"),
                                                             ("c", "h")]
    assert calls[3]["call_id"].startswith("call_") and calls[3]["name"] == ""
    assert "ignored" not in json.dumps(events)


def test_empty_stream() -> None:
    stream = ResponsesStream(translate(stream=True), RID, 7)
    data = stream.feed(b"\n\n: comment\n\ndata: [DONE]\n\n") + stream.end()
    events = check_responses_stream(data)
    assert [e["type"] for e in events] == ["response.created", "response.in_progress",
                                           "response.completed"]
    assert events[-1]["response"]["output"] == []


def test_nothing_after_the_end() -> None:
    stream = ResponsesStream(translate(stream=True), RID, 7)
    stream.feed(TEXT[1])
    stream.end()
    assert stream.feed(TEXT[2]) == stream.end() == stream.fail(500, "late") == b""


def test_fail_mid_item_closes_it() -> None:
    stream = ResponsesStream(translate(stream=True), RID, 7)
    data = stream.feed(TEXT[1]) + stream.fail(503, "Overloaded")
    events = check_responses_stream(data)
    assert [e["type"].removeprefix("response.") for e in events] == [
        "created", "in_progress", "output_item.added", "content_part.added",
        "output_text.delta", "output_text.done", "content_part.done", "output_item.done",
        "failed"]
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"] == {"code": "server_error",
                                                                "message": "Overloaded"}
    assert failed["output"][0]["status"] == "incomplete"
    Response.model_validate(failed)
    assert sdk_final(events) is None
    assert stream.closed and stream.feed(TEXT[2]) == stream.end() == b""


@pytest.mark.parametrize("status, code, expected", [
    (429, None, "rate_limit_exceeded"), (500, None, "server_error"),
    (400, None, "invalid_prompt"), (400, "context_length_exceeded", "context_length_exceeded"),
    (502, 7, "server_error")])
def test_fail_before_anything_and_codes(status: int, code: Any, expected: str) -> None:
    stream = ResponsesStream(translate(stream=True), RID, 7)
    events = check_responses_stream(stream.fail(status, "m", code))
    assert [e["type"] for e in events] == ["response.created", "response.in_progress",
                                           "response.failed"]
    assert events[-1]["response"]["error"] == {"code": expected, "message": "m"}


def test_error_chunk_ends_the_stream() -> None:
    stream = ResponsesStream(translate(stream=True), RID, 7)
    err = b'data: {"error": {"message": "slow down", "type": "x", "code": 429}}\n\n'
    data = stream.feed(TEXT[1] + err + TEXT[2]) + stream.end()
    events = check_responses_stream(data)
    assert events[-1]["response"]["error"] == {"code": "rate_limit_exceeded",
                                               "message": "slow down"}
    assert "lo" not in [e.get("delta") for e in events]


def test_garbage_and_other_choices_are_ignored() -> None:
    other = b'data: {"id": "c", "choices": [{"index": 1, "delta": {"content": "B"}}]}\n\n'
    events = run([b"data: {not json\n\ndata: [1]\n\nevent: x\n\n", other, TEXT[1]])
    assert [e["delta"] for e in events if "delta" in e] == ["Hel"]


# -- stream properties ---------------------------------------------------------------------------

def _group(items: list[bytes], cuts: list[bool]) -> list[bytes]:
    out: list[bytes] = []
    for item, cut in zip(items, cuts, strict=True):
        if cut or not out:
            out.append(item)
        else:
            out[-1] += item
    return out


def _feed_all(parts: list[bytes]) -> bytes:
    stream = ResponsesStream(translate(stream=True), RID, 7)
    return b"".join(stream.feed(p) for p in parts) + stream.end()


TOOLS = [chunk({"reasoning_content": "r"}), chunk({"content": "Checking."}),
         chunk({"tool_calls": [tcall(0, "call_a", "f", '{"a"')]}),
         chunk({"tool_calls": [tcall(0, args=":1}")]}),
         chunk({"tool_calls": [tcall(1, "call_b", "g", "{}")]}), chunk(finish="tool_calls"),
         chunk(usage=USAGE, choices=False)]


@pytest.mark.parametrize("chunks", [TEXT, TOOLS], ids=["text", "tools"])
@given(cuts=st.lists(st.booleans(), min_size=10, max_size=10))
@settings(max_examples=50, deadline=None)
def test_any_grouping_of_whole_events_gives_the_same_output(chunks: list[bytes],
                                                           cuts: list[bool]) -> None:
    assert _feed_all(_group(chunks, cuts[:len(chunks)])) == _feed_all(chunks)


_JSON_OBJECTS = st.dictionaries(st.text("abcxyz", min_size=1, max_size=3),
                                st.one_of(st.integers(), st.text(max_size=5), st.booleans()),
                                max_size=3)
_TEXTS = st.text(min_size=0, max_size=6)


@st.composite
def segments(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """A plausible answer: runs of reasoning, text, refusal and tool calls (arguments a JSON
    object cut anywhere), in any order."""
    out: list[tuple[str, Any]] = []
    tool_index = 0
    for kind in draw(st.lists(st.sampled_from(["reasoning_content", "content", "refusal",
                                               "tool"]), max_size=6)):
        if kind == "tool":
            args = json.dumps(draw(_JSON_OBJECTS))
            cuts = sorted(draw(st.sets(st.integers(0, len(args)), max_size=4)))
            pieces = [args[a:b] for a, b in zip([0, *cuts], [*cuts, len(args)], strict=True)]
            out.append(("tool", (tool_index, pieces)))
            tool_index += draw(st.sampled_from([0, 1]))  # an index reused by a new id, or not
        else:
            out.append((kind, draw(st.lists(_TEXTS, min_size=1, max_size=3))))
    return out


def _chunks_of(segs: list[tuple[str, Any]], finish: str | None,
               usage: dict[str, Any] | None) -> list[bytes]:
    out = [chunk({"role": "assistant"})]
    n = 0
    for kind, value in segs:
        if kind == "tool":
            index, pieces = value
            n += 1
            out.append(chunk({"tool_calls": [tcall(index, f"call_{n}", f"fn{n}", pieces[0])]}))
            out.extend(chunk({"tool_calls": [tcall(index, args=p)]}) for p in pieces[1:])
        else:
            out.extend(chunk({kind: t}) for t in value)
    out.append(chunk(finish=finish))
    if usage is not None:
        out.append(chunk(usage=usage, choices=False))
    return out


@given(segs=segments(), finish=st.sampled_from([None, "stop", "length", "tool_calls",
                                                "content_filter"]),
       usage=st.one_of(st.none(), st.fixed_dictionaries({
           "prompt_tokens": st.integers(0, 99), "completion_tokens": st.integers(0, 99)})),
       ending=st.sampled_from(["end", "fail"]), cut=st.integers(0, 40))
@settings(max_examples=150, deadline=None)
def test_any_plausible_answer_is_a_valid_stream(segs: list[tuple[str, Any]], finish: str | None,
                                                usage: dict[str, Any] | None, ending: str,
                                                cut: int) -> None:
    chunks = _chunks_of(segs, finish, usage)
    stream = ResponsesStream(translate(stream=True), RID, 7)
    if ending == "fail":
        chunks = chunks[:cut]
    data = b"".join(stream.feed(c) for c in chunks)
    data += stream.end() if ending == "end" else stream.fail(500, "cut")
    events = check_responses_stream(data)
    final = sdk_final(events)
    Response.model_validate(events[-1]["response"])
    if ending == "fail":
        assert events[-1]["type"] == "response.failed" and final is None
        return
    output = events[-1]["response"]["output"]
    texts = "".join(t for kind, v in segs if kind == "content" for t in v)
    refusals = "".join(t for kind, v in segs if kind == "refusal" for t in v)
    thoughts = "".join(t for kind, v in segs if kind == "reasoning_content" for t in v)
    parts = [p for o in output if o["type"] == "message" for p in o["content"]]
    assert "".join(p.get("text", "") for p in parts) == texts
    assert "".join(p.get("refusal", "") for p in parts) == refusals
    assert "".join(s["text"] for o in output if o["type"] == "reasoning"
                   for s in o["summary"]) == thoughts
    tools = [v for kind, v in segs if kind == "tool"]
    assert [json.loads(o["arguments"]) for o in output if o["type"] == "function_call"] == \
        [json.loads("".join(pieces)) for _, pieces in tools]
    incomplete = finish in ("length", "content_filter")
    assert events[-1]["type"] == ("response.incomplete" if incomplete else "response.completed")
    if not incomplete:
        assert final is not None and final.output_text == texts


# -- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("status, kind", [
    (400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"),
    (404, "not_found_error"), (422, "invalid_request_error"), (429, "rate_limit_error"),
    (418, "invalid_request_error"), (500, "server_error"), (503, "server_error")])
def test_error_bodies(status: int, kind: str) -> None:
    assert responses_error_type(status) == kind
    assert json.loads(responses_error_body(status, "m é", "some_code")) == {
        "error": {"message": "m é", "type": kind, "param": None, "code": "some_code"}}
    assert json.loads(responses_error_body(status, "m", error_type="x"))["error"]["type"] == "x"


# -- the openai SDK end to end (an in-memory transport: no socket) ------------------------------

def _sdk(answer_chunks: list[bytes], seen: list[ResponsesCall], fail: bool = False) -> Any:
    import sys

    import openai
    # the SDK's own HTTP library (``httpx2``, its dependency)
    httpx = sys.modules["httpx2"]

    def handler(request: Any) -> Any:
        call = chat_request_from_responses(json.loads(request.content))
        seen.append(call)
        if not call.stream:
            chat_body = completion({"content": "Hello", "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
                "tool_calls")
            return httpx.Response(200, json=responses_response_from_chat(chat_body, call, RID,
                                                                         1))
        stream = ResponsesStream(call, RID, 1)
        data = b"".join(stream.feed(c) for c in answer_chunks)
        data += stream.fail(503, "Overloaded") if fail else stream.end()
        return httpx.Response(200, content=data, headers={"content-type": "text/event-stream"})

    return openai.OpenAI(api_key="k", base_url="http://gateway.test/v1", max_retries=0,
                         http_client=openai.DefaultHttpxClient(
                             transport=httpx.MockTransport(handler)))


SDK_REQUEST: dict[str, Any] = {
    "model": "gpt-x", "instructions": "be brief", "input": "Weather in Paris?",
    "reasoning": {"effort": "low", "summary": "auto"},
    "tools": [{"type": "function", "name": "f", "description": "Weather.", "strict": False,
               "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}},
              {"type": "function", "name": "g", "strict": False,
               "parameters": {"type": "object", "properties": {}}}],
}


def test_the_sdk_streams_through_the_front() -> None:
    seen: list[ResponsesCall] = []
    client = _sdk(TOOLS, seen)
    with client.responses.stream(**SDK_REQUEST) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert seen[0].chat["reasoning_effort"] == "low" and seen[0].chat["stream"] is True
    assert seen[0].chat["messages"][0] == {"role": "system", "content": "be brief"}
    assert deltas == ["Checking."] and final.output_text == "Checking."
    assert [o.type for o in final.output] == ["reasoning", "message", "function_call",
                                              "function_call"]
    assert json.loads(final.output[2].arguments) == {"a": 1}
    assert final.usage.input_tokens == 20 and final.model == "gpt-x"


def test_the_sdk_sees_the_failed_response() -> None:
    client = _sdk(TEXT[:3], [], fail=True)
    with client.responses.stream(**SDK_REQUEST) as stream:
        events = list(stream)
        assert events[-1].type == "response.failed"
        assert events[-1].response.error.message == "Overloaded"
        with pytest.raises(RuntimeError):
            stream.get_final_response()


def test_the_sdk_reads_the_whole_answer_and_raw_stream() -> None:
    seen: list[ResponsesCall] = []
    client = _sdk(TEXT, seen)
    response = client.responses.create(**SDK_REQUEST)
    assert seen[0].stream is False
    assert response.output_text == "Hello" and response.output[1].name == "get_weather"
    assert response.status == "completed" and response.usage.input_tokens == 10
    events = list(client.responses.create(**SDK_REQUEST, stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].type == "response.completed"
