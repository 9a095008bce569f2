"""The Anthropic Messages front (uniapi_core/fronts/messages.py): requests to OpenAI chat,
OpenAI answers (whole and streamed) back to Anthropic's shapes.

Every translated request is parsed by the request model and must come out with nothing
``invalid``; every whole answer is validated by the ``anthropic`` SDK's ``Message`` model;
every stream goes through the grammar checker (``messages_check``) and the SDK's own
accumulator (``accumulate_event``), so the tests use Anthropic's client as the oracle.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from uniapi_core.errors import ClientError, UniapiError
from uniapi_core.fronts import (
    MessagesCall,
    MessagesStream,
    anthropic_error_body,
    chat_request_from_messages,
    error_type_for,
    estimate_input_tokens,
    messages_response_from_chat,
)
from uniapi_core.fronts.messages import IMAGE_TOKENS, MESSAGE_OVERHEAD, TOOL_OVERHEAD
from uniapi_core.fronts.messages_check import check_messages_stream
from uniapi_core.request import parse_openai_chat

# -- requests ------------------------------------------------------------------------------------


def body(**over: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"model": "claude-x", "max_tokens": 100,
                           "messages": [{"role": "user", "content": "hi"}]}
    out.update(over)
    return out


def chat(**over: Any) -> dict[str, Any]:
    call = chat_request_from_messages(body(**over))
    parsed = parse_openai_chat(call.chat)
    assert parsed.invalid == frozenset(), parsed.invalid
    assert all(m.obj and not m.invalid for m in parsed.messages)
    assert all(p.ok for m in parsed.messages for p in m.parts)
    assert parsed.extras == {}
    return call.chat


def user(*blocks: Any) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


def assistant(*blocks: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": list(blocks)}


def test_minimal_request_and_what_the_answer_needs() -> None:
    call = chat_request_from_messages(body())
    assert call == MessagesCall(chat={"model": "claude-x", "max_tokens": 100, "messages": [
        {"role": "user", "content": "hi"}]}, model="claude-x", stream=False)


def test_stream_asks_for_usage() -> None:
    call = chat_request_from_messages(body(stream=True))
    assert call.stream is True
    assert call.chat["stream"] is True and call.chat["stream_options"] == {"include_usage": True}
    assert parse_openai_chat(call.chat).include_usage
    assert "stream" not in chat(stream=False)


@pytest.mark.parametrize("system, expected", [
    ("be brief", "be brief"),
    ([{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}},
      {"type": "text", "text": "b"}], "a\n\nb"),
])
def test_system_prompt_leads(system: Any, expected: str) -> None:
    assert chat(system=system)["messages"][0] == {"role": "system", "content": expected}


def test_empty_system_is_left_out() -> None:
    assert chat(system="")["messages"] == [{"role": "user", "content": "hi"}]


def test_system_turn_among_messages_stays_in_place() -> None:
    messages = [{"role": "user", "content": "hi"},
                {"role": "system", "content": [{"type": "text", "text": "reminder"}]},
                {"role": "assistant", "content": "ok"}]
    assert chat(messages=messages)["messages"] == [
        {"role": "user", "content": "hi"}, {"role": "system", "content": "reminder"},
        {"role": "assistant", "content": "ok"}]


def test_user_text_blocks_join_and_cache_control_is_dropped() -> None:
    out = chat(messages=[user({"type": "text", "text": "a",
                               "cache_control": {"type": "ephemeral"}},
                              {"type": "text", "text": "b"})])
    assert out["messages"] == [{"role": "user", "content": "a\n\nb"}]


def test_images() -> None:
    out = chat(messages=[user(
        {"type": "text", "text": "look"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": "iVBORw0K"}},
        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}})])
    assert out["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}}]}]


def test_documents() -> None:
    out = chat(messages=[user(
        {"type": "document", "title": "Q3.pdf",
         "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                        "data": "JVBERi0y"}},
        {"type": "document", "title": "Notes", "context": "dropped",
         "source": {"type": "text", "media_type": "text/plain", "data": "body"}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                        "data": "plain"}})])
    assert out["messages"][0]["content"] == [
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0x",
                                  "filename": "Q3.pdf"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0y",
                                  "filename": "document.pdf"}},
        {"type": "text", "text": "Notes\n\nbody"},
        {"type": "text", "text": "plain"}]


def test_documents_by_url_and_file_id() -> None:
    """A url source is uniapi's file_url (the gateway fetches it where the bytes are needed),
    a file source the chat file_id; the title is the filename, else the URL's last segment."""
    out = chat(messages=[user(
        {"type": "document", "source": {"type": "url", "url": "https://x.test/r/Q3%20v2.pdf"}},
        {"type": "document", "title": "Q4", "source": {"type": "url", "url": "https://x.test/"}},
        {"type": "document", "source": {"type": "file", "file_id": "file_011CN"}},
        {"type": "document", "title": "T", "source": {"type": "file", "file_id": "file_2"}})])
    assert out["messages"][0]["content"] == [
        {"type": "file", "file": {"file_url": "https://x.test/r/Q3%20v2.pdf",
                                  "filename": "Q3 v2.pdf"}},
        {"type": "file", "file": {"file_url": "https://x.test/", "filename": "Q4"}},
        {"type": "file", "file": {"file_id": "file_011CN"}},
        {"type": "file", "file": {"file_id": "file_2", "filename": "T"}}]


def test_assistant_tool_use_and_thinking_dropped() -> None:
    out = chat(messages=[
        {"role": "user", "content": "weather?"},
        assistant({"type": "thinking", "thinking": "hmm", "signature": "sig"},
                  {"type": "redacted_thinking", "data": "xx"},
                  {"type": "text", "text": "Checking."},
                  {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                   "input": {"city": "Paris", "n": 1}},
                  {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}}),
        user({"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
             {"type": "tool_result", "tool_use_id": "toolu_2",
              "content": [{"type": "text", "text": "12:00"}, {"type": "text", "text": "UTC"}]},
             {"type": "text", "text": "and tomorrow?"})])
    assert out["messages"] == [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "toolu_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris","n":1}'}},
            {"id": "toolu_2", "type": "function",
             "function": {"name": "now", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "12:00\n\nUTC"},
        {"role": "user", "content": "and tomorrow?"}]


def test_assistant_tool_use_without_text_has_null_content() -> None:
    out = chat(messages=[{"role": "user", "content": "x"}, assistant(
        {"type": "tool_use", "id": "t", "name": "f", "input": {}})])
    assert out["messages"][1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}


def test_assistant_turn_of_only_thinking_is_left_out() -> None:
    out = chat(messages=[{"role": "user", "content": "x"},
                         assistant({"type": "thinking", "thinking": "t", "signature": "s"}),
                         {"role": "user", "content": "y"}])
    assert [m["role"] for m in out["messages"]] == ["user", "user"]


def test_tool_result_error_and_images() -> None:
    png = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                       "data": "AAA"}}
    out = chat(messages=[{"role": "user", "content": "x"},
                         assistant({"type": "tool_use", "id": "a", "name": "f", "input": {}},
                                   {"type": "tool_use", "id": "b", "name": "g", "input": {}}),
                         user({"type": "tool_result", "tool_use_id": "a", "is_error": True,
                               "content": "boom"},
                              {"type": "tool_result", "tool_use_id": "b",
                               "content": [{"type": "text", "text": "shot"}, png]},
                              {"type": "text", "text": "go on"})])
    assert out["messages"][2:] == [
        {"role": "tool", "tool_call_id": "a", "content": "Error: boom"},
        {"role": "tool", "tool_call_id": "b", "content": "shot"},
        {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}},
            {"type": "text", "text": "go on"}]}]


def test_tool_result_alone_makes_no_empty_user_message() -> None:
    out = chat(messages=[{"role": "user", "content": "x"},
                         assistant({"type": "tool_use", "id": "a", "name": "f", "input": {}}),
                         user({"type": "tool_result", "tool_use_id": "a"})])
    assert out["messages"][-1] == {"role": "tool", "tool_call_id": "a", "content": ""}


def test_tools_and_tool_choice() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    out = chat(tools=[{"name": "get_weather", "description": "Weather.", "input_schema": schema,
                       "cache_control": {"type": "ephemeral"}},
                      {"type": "custom", "name": "f", "input_schema": {"type": "object"}}],
               tool_choice={"type": "any", "disable_parallel_tool_use": True})
    assert out["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "description": "Weather.",
                                          "parameters": schema}},
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert out["tool_choice"] == "required" and out["parallel_tool_calls"] is False


@pytest.mark.parametrize("choice, expected", [
    ({"type": "auto"}, "auto"), ({"type": "any"}, "required"), ({"type": "none"}, "none"),
    ({"type": "tool", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
])
def test_tool_choice(choice: dict[str, Any], expected: Any) -> None:
    out = chat(tools=[{"name": "f", "input_schema": {"type": "object"}}], tool_choice=choice)
    assert out["tool_choice"] == expected
    assert "parallel_tool_calls" not in out


def test_sampling_metadata_and_stops() -> None:
    out = chat(stop_sequences=["###", "END"], temperature=0.5, top_p=0.9, top_k=40,
               metadata={"user_id": "u-1"})
    assert {k: out[k] for k in ("stop", "temperature", "top_p", "top_k", "user")} == {
        "stop": ["###", "END"], "temperature": 0.5, "top_p": 0.9, "top_k": 40, "user": "u-1"}
    parsed = parse_openai_chat(out)
    assert parsed.sampling.top_k == 40 and parsed.sampling.stop == ("###", "END")
    assert "stop" not in chat(stop_sequences=[])
    assert "user" not in chat(metadata={})


@pytest.mark.parametrize("thinking, effort", [
    ({"type": "enabled", "budget_tokens": 1024}, "low"),
    ({"type": "enabled", "budget_tokens": 4095}, "low"),
    ({"type": "enabled", "budget_tokens": 4096}, "medium"),
    ({"type": "enabled", "budget_tokens": 16383}, "medium"),
    ({"type": "enabled", "budget_tokens": 16384}, "high"),
    ({"type": "adaptive"}, "medium"),
    ({"type": "disabled"}, None),
])
def test_thinking_becomes_reasoning_effort(thinking: dict[str, Any], effort: str | None) -> None:
    assert chat(thinking=thinking).get("reasoning_effort") == effort


@pytest.mark.parametrize("given_effort, effort", [
    ("low", "low"), ("medium", "medium"), ("high", "high"), ("max", "high")])
def test_output_config_effort_wins(given_effort: str, effort: str) -> None:
    out = chat(thinking={"type": "enabled", "budget_tokens": 1024},
               output_config={"effort": given_effort})
    assert out["reasoning_effort"] == effort


def test_output_config_format_becomes_json_schema() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    out = chat(output_config={"format": {"type": "json_schema", "schema": schema}})
    assert out["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "output", "schema": schema, "strict": True}}


def test_unknown_top_level_fields_are_ignored() -> None:
    assert "service_tier" not in chat(service_tier="auto", container=None)


_TOOL_USE = {"type": "tool_use", "id": "t", "name": "f", "input": {}}

BAD: list[tuple[Any, str]] = [
    ([], "request body must be a JSON object"),
    ({"max_tokens": 1, "messages": []}, "model: field required"),
    (body(model=3), "model: expected a non-empty string"),
    (body(model=""), "model: expected a non-empty string"),
    ({"model": "m", "messages": []}, "max_tokens: field required"),
    (body(max_tokens=0), "max_tokens: expected a positive integer"),
    (body(max_tokens=True), "max_tokens: expected a positive integer"),
    (body(max_tokens="9"), "max_tokens: expected a positive integer"),
    ({"model": "m", "max_tokens": 1}, "messages: field required"),
    (body(messages={}), "messages: expected a list"),
    (body(messages=["x"]), "messages[0]: expected an object"),
    (body(messages=[{"role": "user"}]), "messages[0].content: field required"),
    (body(messages=[{"role": "tool", "content": "x"}]), "messages[0].role: expected"),
    (body(messages=[{"role": "user", "content": 3}]), "messages[0].content: expected"),
    (body(messages=[{"role": "user", "content": "a"}, user({"type": "text", "text": "a"},
                                                           {"type": "video"})]),
     "messages[1].content[1].type: block type 'video'"),
    (body(messages=[user({"type": "text"})]), "messages[0].content[0].text: field required"),
    (body(messages=[user({"type": "text", "text": 1})]),
     "messages[0].content[0].text: expected a string"),
    (body(messages=[user({"type": "image", "source": {"type": "file", "file_id": "f"}})]),
     "messages[0].content[0].source.type: image source 'file'"),
    (body(messages=[user({"type": "image", "source": {"type": "base64", "data": "x"}})]),
     "messages[0].content[0].source.media_type: field required"),
    (body(messages=[user({"type": "image"})]), "messages[0].content[0].source: expected"),
    (body(messages=[user({"type": "document", "source": {"type": "url", "url": "x.pdf"}})]),
     "messages[0].content[0].source.url: expected an http(s) URL"),
    (body(messages=[user({"type": "document", "source": {"type": "content", "content": []}})]),
     "messages[0].content[0].source.type: document source 'content'"),
    (body(messages=[user({"type": "document", "source": {"type": "base64", "data": "x",
                                                         "media_type": "image/png"}})]),
     "messages[0].content[0].source.media_type: base64 documents must be application/pdf"),
    (body(messages=[user({"type": "document", "source": {"type": "content", "content": []}})]),
     "messages[0].content[0].source.type: document source 'content'"),
    (body(messages=[user({"type": "tool_result"})]),
     "messages[0].content[0].tool_use_id: field required"),
    (body(messages=[user({"type": "tool_result", "tool_use_id": "t",
                          "content": [{"type": "document"}]})]),
     "messages[0].content[0].content[0].type: block type 'document'"),
    (body(messages=[user({"type": "tool_result", "tool_use_id": "t", "is_error": "yes"})]),
     "messages[0].content[0].is_error: expected a boolean"),
    (body(messages=[user({"type": "tool_result", "tool_use_id": "t", "content": 5})]),
     "messages[0].content[0].content: expected"),
    (body(messages=[user(_TOOL_USE)]), "messages[0].content[0].type: block type 'tool_use'"),
    (body(messages=[assistant({"type": "image", "source": {}})]),
     "messages[0].content[0].type: block type 'image'"),
    (body(messages=[assistant({"type": "server_tool_use", "id": "s", "name": "web_search",
                               "input": {}})]),
     "messages[0].content[0].type: block type 'server_tool_use'"),
    (body(messages=[user({"type": "web_search_tool_result", "tool_use_id": "s"})]),
     "messages[0].content[0].type: block type 'web_search_tool_result'"),
    (body(messages=[assistant({**_TOOL_USE, "input": "{}"})]),
     "messages[0].content[0].input: expected an object"),
    (body(messages=[assistant({"type": "tool_use", "name": "f", "input": {}})]),
     "messages[0].content[0].id: field required"),
    (body(system=5), "system: expected a string or a list of text blocks"),
    (body(system=[{"type": "image"}]), "system[0].type: expected 'text', got 'image'"),
    (body(messages=[{"role": "system", "content": [{"type": "text", "text": 2}]}]),
     "messages[0].content[0].text: expected a string"),
    (body(tools={}), "tools: expected a list"),
    (body(tools=[{"type": "web_search_20250305", "name": "web_search"}]),
     "tools[0].type: server tool 'web_search_20250305'"),
    (body(tools=[{"name": "f"}, {"type": "bash_20250124", "name": "bash"}]),
     "tools[0].input_schema: expected an object"),
    (body(tools=[{"name": "f", "input_schema": {}}, {"type": "bash_20250124", "name": "bash"}]),
     "tools[1].type: server tool 'bash_20250124'"),
    (body(tools=[{"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"}]),
     "tools[0].type: server tool 'text_editor_20250728'"),
    (body(tools=[{"input_schema": {}}]), "tools[0].name: field required"),
    (body(tool_choice="auto"), "tool_choice: expected an object"),
    (body(tool_choice={"type": "whatever"}), "tool_choice.type: expected"),
    (body(tool_choice={"type": "tool"}), "tool_choice.name: field required"),
    (body(tool_choice={"type": "auto", "disable_parallel_tool_use": 1}),
     "tool_choice.disable_parallel_tool_use: expected a boolean"),
    (body(stop_sequences="###"), "stop_sequences: expected a list of strings"),
    (body(temperature="hot"), "temperature: expected a number"),
    (body(top_p=True), "top_p: expected a number"),
    (body(top_k=1.5), "top_k: expected an integer"),
    (body(metadata="u"), "metadata: expected an object"),
    (body(metadata={"user_id": 5}), "metadata.user_id: expected a string"),
    (body(stream="yes"), "stream: expected a boolean"),
    (body(thinking={"type": "enabled"}), "thinking.budget_tokens: expected a positive integer"),
    (body(thinking={"type": "on"}), "thinking.type: expected"),
    (body(thinking=True), "thinking: expected an object"),
    (body(output_config={"effort": "extreme"}), "output_config.effort: expected"),
    (body(output_config={"format": {"type": "xml"}}), "output_config.format.type: expected"),
    (body(mcp_servers=[{"type": "url", "url": "https://m"}]), "mcp_servers: MCP servers"),
]


@pytest.mark.parametrize("request_body, message", BAD)
def test_bad_requests_name_the_path(request_body: Any, message: str) -> None:
    with pytest.raises(ClientError) as info:
        chat_request_from_messages(request_body)
    assert isinstance(info.value, UniapiError)
    assert info.value.status == 400 and info.value.type == "invalid_request_error"
    assert info.value.message.startswith(message), info.value.message


# -- whole answers -------------------------------------------------------------------------------

def completion(message: dict[str, Any], finish: str | None = "stop",
               usage: dict[str, Any] | None = None, cid: str = "chatcmpl-abc") -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion", "created": 1, "model": "upstream-model",
            "choices": [{"index": 0, "message": {"role": "assistant", **message},
                         "finish_reason": finish}],
            "usage": usage if usage is not None else {"prompt_tokens": 10,
                                                      "completion_tokens": 5,
                                                      "total_tokens": 15}}


def answer(chat_body: dict[str, Any]) -> dict[str, Any]:
    out = messages_response_from_chat(chat_body, "claude-x")
    Message.model_validate(out)  # the SDK's own model accepts it
    return out


def test_text_answer() -> None:
    out = answer(completion({"content": "Hello"}))
    assert out == {"id": out["id"], "type": "message", "role": "assistant", "model": "claude-x",
                   "content": [{"type": "text", "text": "Hello"}], "stop_reason": "end_turn",
                   "stop_sequence": None,
                   "usage": {"input_tokens": 10, "output_tokens": 5,
                             "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}}
    assert out["id"].startswith("msg_01") and len(out["id"]) == 28
    assert answer(completion({"content": "Hello"}))["id"] == out["id"]
    assert answer(completion({"content": "Hello"}, cid="other"))["id"] != out["id"]


@pytest.mark.parametrize("finish, tools, reason", [
    ("stop", False, "end_turn"), ("length", False, "max_tokens"),
    ("tool_calls", True, "tool_use"), ("function_call", True, "tool_use"),
    ("content_filter", False, "refusal"), (None, False, "end_turn"),
    ("something_new", False, "end_turn"), ("stop", True, "tool_use"),
    ("length", True, "max_tokens"),
])
def test_stop_reasons(finish: str | None, tools: bool, reason: str) -> None:
    message: dict[str, Any] = {"content": "x"}
    if tools:
        message["tool_calls"] = [{"id": "call_1", "type": "function",
                                  "function": {"name": "f", "arguments": "{}"}}]
    assert answer(completion(message, finish))["stop_reason"] == reason


def test_blocks_in_order_with_tool_inputs() -> None:
    out = answer(completion({
        "content": "Let me check.", "reasoning_content": "think",
        "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "{oops"}},
            {"id": "", "type": "function", "function": {"name": "h", "arguments": "[1]"}},
        ]}, "tool_calls"))
    assert out["content"][:4] == [
        {"type": "thinking", "thinking": "think", "signature": ""},
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "g", "input": {}}]
    last = out["content"][4]
    assert last["input"] == {} and last["id"].startswith("toolu_01") and last["name"] == "h"
    assert out["stop_reason"] == "tool_use"


def test_reasoning_field_and_refusal_and_empty_content() -> None:
    out = answer(completion({"content": "", "reasoning": "r", "refusal": "I can't."},
                            "content_filter"))
    assert out["content"] == [{"type": "thinking", "thinking": "r", "signature": ""},
                              {"type": "text", "text": "I can't."}]
    assert out["stop_reason"] == "refusal"
    assert answer(completion({"content": None}))["content"] == []


@pytest.mark.parametrize("usage, expected", [
    ({"prompt_tokens": 100, "completion_tokens": 7,
      "prompt_tokens_details": {"cached_tokens": 60}}, (40, 7, 60, 0)),
    ({"prompt_tokens": 100, "completion_tokens": 7,
      "prompt_tokens_details": {"cached_tokens": 60, "cache_write_tokens": 30}}, (10, 7, 60, 30)),
    ({"prompt_tokens": 100, "completion_tokens": 7, "cache_write_tokens": 30}, (70, 7, 0, 30)),
    ({"prompt_tokens": "x", "completion_tokens": -1}, (0, 0, 0, 0)),
    ({}, (0, 0, 0, 0)),
])
def test_usage(usage: dict[str, Any], expected: tuple[int, int, int, int]) -> None:
    got = answer(completion({"content": "x"}, usage=usage))["usage"]
    assert (got["input_tokens"], got["output_tokens"], got["cache_read_input_tokens"],
            got["cache_creation_input_tokens"]) == expected


def test_no_usage_and_no_choices() -> None:
    out = answer({"id": "c"})
    assert out["content"] == [] and out["usage"]["input_tokens"] == 0


# -- streams -------------------------------------------------------------------------------------

CID = "chatcmpl-stream"


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None,
          usage: dict[str, Any] | None = None, choices: bool = True) -> bytes:
    obj: dict[str, Any] = {"id": CID, "object": "chat.completion.chunk", "created": 1,
                           "model": "up", "choices": [], "usage": usage}
    if choices:
        obj["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def call(index: int, cid: str | None = None, name: str | None = None,
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


def run(chunks: list[bytes], usage: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    stream = MessagesStream("claude-x")
    data = b"".join(stream.feed(c) for c in chunks) + stream.end(usage)
    assert stream.closed
    events = check_messages_stream(data)
    snapshot = None
    bufs: dict[int, bytes] = {}
    for event in events:  # the anthropic SDK's accumulator accepts the stream
        snapshot = accumulate_event(event=event, current_snapshot=snapshot,  # type: ignore
                                    json_bufs=bufs)
    assert snapshot is not None
    return events


def body_events(events: list[dict[str, Any]]) -> list[Any]:
    """Events without message_start's id: (type, index, block or delta) tuples."""
    out: list[Any] = []
    for e in events:
        if e["type"] == "content_block_start":
            out.append(("start", e["index"], e["content_block"]))
        elif e["type"] == "content_block_delta":
            out.append(("delta", e["index"], e["delta"]))
        elif e["type"] == "content_block_stop":
            out.append(("stop", e["index"]))
        elif e["type"] == "message_delta":
            out.append(("message_delta", e["delta"], e["usage"]))
        else:
            out.append((e["type"],))
    return out


ZERO = {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0}
TEXT = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}),
        chunk({"content": "lo"}), chunk(finish="stop"), chunk(usage=USAGE, choices=False),
        b"data: [DONE]\n\n"]


def test_text_stream() -> None:
    events = run(TEXT)
    start = events[0]["message"]
    assert start == {"id": start["id"], "type": "message", "role": "assistant",
                     "model": "claude-x", "content": [], "stop_reason": None,
                     "stop_sequence": None, "usage": ZERO}
    assert body_events(events) == [
        ("message_start",),
        ("start", 0, {"type": "text", "text": ""}),
        ("delta", 0, {"type": "text_delta", "text": "Hel"}),
        ("delta", 0, {"type": "text_delta", "text": "lo"}),
        ("stop", 0),
        ("message_delta", {"stop_reason": "end_turn", "stop_sequence": None},
         {"input_tokens": 15, "output_tokens": 9, "cache_read_input_tokens": 5,
          "cache_creation_input_tokens": 0}),
        ("message_stop",)]


def test_stream_wire_format() -> None:
    stream = MessagesStream("claude-x")
    out = stream.feed(chunk({"content": "Hi"}))
    assert out.startswith(b"event: message_start\ndata: {\"type\":\"message_start\"")
    assert out.endswith(b'event: content_block_delta\ndata: {"type":"content_block_delta",'
                        b'"index":0,"delta":{"type":"text_delta","text":"Hi"}}\n\n')
    assert stream.ping() == b'event: ping\ndata: {"type":"ping"}\n\n'


def test_message_id_is_derived_from_the_chunk_id_or_the_request_id() -> None:
    def first_id(stream: MessagesStream) -> str:
        return check_messages_stream(stream.feed(TEXT[1]) + stream.end())[0]["message"]["id"]
    a, b = first_id(MessagesStream("m")), first_id(MessagesStream("m"))
    assert a == b and a.startswith("msg_01")
    assert first_id(MessagesStream("m", request_id="r1")) != a
    assert first_id(MessagesStream("m", request_id="r1")) == \
        first_id(MessagesStream("other", request_id="r1"))


def test_reasoning_then_text() -> None:
    events = run([chunk({"role": "assistant", "reasoning_content": "Let me "}),
                  chunk({"reasoning_content": "think."}),
                  chunk({"content": "Answer"}), chunk({"content": "."}, finish="stop")])
    assert body_events(events)[1:8] == [
        ("start", 0, {"type": "thinking", "thinking": "", "signature": ""}),
        ("delta", 0, {"type": "thinking_delta", "thinking": "Let me "}),
        ("delta", 0, {"type": "thinking_delta", "thinking": "think."}),
        ("stop", 0),
        ("start", 1, {"type": "text", "text": ""}),
        ("delta", 1, {"type": "text_delta", "text": "Answer"}),
        ("delta", 1, {"type": "text_delta", "text": "."})]
    assert body_events(events)[-2] == ("message_delta", {"stop_reason": "end_turn",
                                                         "stop_sequence": None}, ZERO)


def test_reasoning_field_in_chunks() -> None:
    events = run([chunk({"reasoning": "r"}), chunk({"content": "t"})])
    assert [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"] \
        == ["thinking", "text"]


TOOLS = [
    chunk({"role": "assistant", "content": "Checking."}),
    chunk({"tool_calls": [call(0, "call_a", "get_weather", "")]}),
    chunk({"tool_calls": [call(0, args='{"city"')]}),
    chunk({"tool_calls": [call(0, args=': "Paris"}')]}),
    chunk({"tool_calls": [call(1, "call_b", "get_time", '{"tz":')]}),
    chunk({"tool_calls": [call(1, args=' "UTC"}')]}),
    chunk(finish="tool_calls"),
    chunk(usage=USAGE, choices=False),
]


def test_two_tool_calls_with_split_arguments() -> None:
    events = run(TOOLS)
    assert body_events(events)[1:] == [
        ("start", 0, {"type": "text", "text": ""}),
        ("delta", 0, {"type": "text_delta", "text": "Checking."}),
        ("stop", 0),
        ("start", 1, {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {}}),
        ("delta", 1, {"type": "input_json_delta", "partial_json": '{"city"'}),
        ("delta", 1, {"type": "input_json_delta", "partial_json": ': "Paris"}'}),
        ("stop", 1),
        ("start", 2, {"type": "tool_use", "id": "call_b", "name": "get_time", "input": {}}),
        ("delta", 2, {"type": "input_json_delta", "partial_json": '{"tz":'}),
        ("delta", 2, {"type": "input_json_delta", "partial_json": ' "UTC"}'}),
        ("stop", 2),
        ("message_delta", {"stop_reason": "tool_use", "stop_sequence": None},
         {"input_tokens": 15, "output_tokens": 9, "cache_read_input_tokens": 5,
          "cache_creation_input_tokens": 0}),
        ("message_stop",)]


def test_tool_calls_in_one_chunk_and_late_fragments() -> None:
    events = run([chunk({"tool_calls": [call(0, "a", "f", "{}"), call(1, "b", "g", "{}")]}),
                  chunk({"tool_calls": [call(0, args="ignored")]}),  # its block is closed
                  chunk({"tool_calls": [call(0, "c", "h", '{"x":1}')]}),  # a new call
                  chunk({"tool_calls": [{"index": 2, "function": {"arguments": "{}"}}]})])
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert [(b["id"], b["name"]) for b in starts[:3]] == [("a", "f"), ("b", "g"), ("c", "h")]
    assert starts[3]["id"].startswith("toolu_01") and starts[3]["name"] == ""
    assert all(e["delta"]["partial_json"] != "ignored" for e in events
               if e["type"] == "content_block_delta")
    assert events[-2]["delta"]["stop_reason"] == "tool_use"


def test_usage_from_end_wins_and_length_is_max_tokens() -> None:
    events = run([chunk({"content": "abc"}), chunk(finish="length", usage=USAGE)],
                 usage={"prompt_tokens": 3, "completion_tokens": 4})
    assert body_events(events)[-2] == ("message_delta", {"stop_reason": "max_tokens",
                                                         "stop_sequence": None},
                                       {"input_tokens": 3, "output_tokens": 4,
                                        "cache_read_input_tokens": 0,
                                        "cache_creation_input_tokens": 0})


def test_usage_seen_before_content_is_in_message_start() -> None:
    events = run([chunk({"content": "x"}, usage={"prompt_tokens": 8, "completion_tokens": 0})])
    assert events[0]["message"]["usage"]["input_tokens"] == 8


def test_refusal_and_content_filter() -> None:
    events = run([chunk({"refusal": "No."}, finish="content_filter")])
    assert body_events(events)[1:3] == [("start", 0, {"type": "text", "text": ""}),
                                        ("delta", 0, {"type": "text_delta", "text": "No."})]
    assert events[-2]["delta"]["stop_reason"] == "refusal"


def test_empty_stream_and_ping_first() -> None:
    stream = MessagesStream("claude-x")
    data = stream.ping() + stream.feed(b"\n\n: comment\n\ndata: [DONE]\n\n") + stream.end()
    assert [e["type"] for e in check_messages_stream(data)] == [
        "message_start", "ping", "message_delta", "message_stop"]


def test_nothing_after_the_end() -> None:
    stream = MessagesStream("claude-x")
    stream.feed(TEXT[1])
    stream.end()
    assert stream.feed(TEXT[2]) == stream.end() == stream.ping() == b""
    assert stream.fail(500, "api_error", "late") == b""


def test_fail_mid_block() -> None:
    stream = MessagesStream("claude-x")
    data = stream.feed(TEXT[1]) + stream.fail(529, "overloaded_error", "Overloaded")
    events = check_messages_stream(data)
    assert events[-1] == {"type": "error", "error": {"type": "overloaded_error",
                                                     "message": "Overloaded"}}
    assert [e["type"] for e in events] == ["message_start", "content_block_start",
                                           "content_block_delta", "error"]
    assert stream.closed and stream.feed(TEXT[2]) == stream.end() == b""


def test_fail_before_anything_and_default_type() -> None:
    stream = MessagesStream("claude-x")
    events = check_messages_stream(stream.fail(503, "", "busy"))
    assert events == [{"type": "error", "error": {"type": "overloaded_error",
                                                  "message": "busy"}}]


def test_error_chunk_ends_the_stream() -> None:
    stream = MessagesStream("claude-x")
    err = b'data: {"error": {"message": "slow down", "type": "x", "code": 429}}\n\n'
    data = stream.feed(TEXT[1] + err + TEXT[2]) + stream.end()
    events = check_messages_stream(data)
    assert events[-1] == {"type": "error", "error": {"type": "rate_limit_error",
                                                     "message": "slow down"}}
    assert not any(e.get("delta", {}).get("text") == "lo" for e in events)


def test_garbage_payloads_are_ignored() -> None:
    stream = MessagesStream("claude-x")
    data = stream.feed(b"data: {not json\n\ndata: [1]\n\nevent: x\n\n") + stream.feed(TEXT[1])
    assert [e["type"] for e in check_messages_stream(data + stream.end())][:2] == [
        "message_start", "content_block_start"]


def test_other_choices_are_ignored() -> None:
    other = b'data: {"id": "c", "choices": [{"index": 1, "delta": {"content": "B"}}]}\n\n'
    events = run([other, TEXT[1]])
    assert [e["delta"]["text"] for e in events if e["type"] == "content_block_delta"] == ["Hel"]


# -- stream properties ---------------------------------------------------------------------------

def _splits(items: list[bytes]) -> st.SearchStrategy[list[bytes]]:
    """``items`` grouped into consecutive feed() inputs, every grouping possible."""
    return st.lists(st.booleans(), min_size=len(items), max_size=len(items)).map(
        lambda cuts: _group(items, cuts))


def _group(items: list[bytes], cuts: list[bool]) -> list[bytes]:
    out: list[bytes] = []
    for item, cut in zip(items, cuts, strict=True):
        if cut or not out:
            out.append(item)
        else:
            out[-1] += item
    return out


def _feed_all(parts: list[bytes]) -> bytes:
    stream = MessagesStream("claude-x")
    return b"".join(stream.feed(p) for p in parts) + stream.end()


@pytest.mark.parametrize("chunks", [TEXT, TOOLS], ids=["text", "tools"])
@given(data=st.data())
@settings(max_examples=50, deadline=None)
def test_any_grouping_of_whole_events_gives_the_same_output(chunks: list[bytes],
                                                           data: st.DataObject) -> None:
    expected = _feed_all(chunks)
    assert _feed_all(data.draw(_splits(chunks))) == expected


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
            out.append(("tool", (tool_index, f"call_{tool_index}", pieces)))
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
            index, _, pieces = value
            n += 1
            out.append(chunk({"tool_calls": [call(index, f"call_{n}", f"fn{n}", pieces[0])]}))
            out.extend(chunk({"tool_calls": [call(index, args=p)]}) for p in pieces[1:])
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
       ending=st.sampled_from(["end", "fail"]), cut=st.integers(0, 40), pings=st.data())
@settings(max_examples=150, deadline=None)
def test_any_plausible_answer_is_a_valid_stream(segs: list[tuple[str, Any]], finish: str | None,
                                                usage: dict[str, Any] | None, ending: str,
                                                cut: int, pings: st.DataObject) -> None:
    chunks = _chunks_of(segs, finish, usage)
    stream = MessagesStream("claude-x")
    data = b""
    if ending == "fail":
        chunks = chunks[:cut]
    for c in chunks:
        data += stream.feed(c)
        if pings.draw(st.booleans()):
            data += stream.ping()
    data += stream.end() if ending == "end" else stream.fail(500, "api_error", "cut")
    events = check_messages_stream(data)
    if ending == "fail":
        assert events[-1]["type"] == "error"
        return
    snapshot = None
    bufs: dict[int, bytes] = {}
    for event in events:
        snapshot = accumulate_event(event=event, current_snapshot=snapshot,  # type: ignore
                                    json_bufs=bufs)
    assert snapshot is not None
    texts = "".join(t for kind, v in segs if kind in ("content", "refusal") for t in v)
    thoughts = "".join(t for kind, v in segs if kind == "reasoning_content" for t in v)
    blocks = snapshot.content
    assert "".join(b.text for b in blocks if b.type == "text") == texts
    assert "".join(b.thinking for b in blocks if b.type == "thinking") == thoughts
    tools = [v for kind, v in segs if kind == "tool"]
    assert [b.input for b in blocks if b.type == "tool_use"] == \
        [json.loads("".join(pieces)) for _, _, pieces in tools]
    reason = snapshot.stop_reason
    if finish in (None, "stop"):
        assert reason == ("tool_use" if tools else "end_turn")
    else:
        assert reason == {"length": "max_tokens", "tool_calls": "tool_use",
                          "content_filter": "refusal"}[finish]


# -- errors and count_tokens ---------------------------------------------------------------------

@pytest.mark.parametrize("status, kind", [
    (400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"),
    (404, "not_found_error"), (413, "request_too_large"), (429, "rate_limit_error"),
    (529, "overloaded_error"), (503, "overloaded_error"), (500, "api_error"),
    (502, "api_error"), (504, "api_error"), (422, "invalid_request_error"),
])
def test_error_types(status: int, kind: str) -> None:
    assert error_type_for(status) == kind
    assert json.loads(anthropic_error_body(status, "m é")) == {
        "type": "error", "error": {"type": kind, "message": "m é"}}


def test_estimate_input_tokens() -> None:
    assert estimate_input_tokens(body(messages=[{"role": "user", "content": "abcd" * 10}])) == \
        10 + MESSAGE_OVERHEAD
    full = body(system="s" * 8, messages=[
        user({"type": "text", "text": "x" * 4},
             {"type": "image", "source": {"type": "url", "url": "u"}}),
        assistant({"type": "tool_use", "id": "t", "name": "ab", "input": {}}),
        user({"type": "tool_result", "tool_use_id": "t", "content": "y" * 3})],
        tools=[{"name": "f", "input_schema": {}}])
    # chars: 8 + 4 + (2 + 2) + 3 + (1 + 2) = 22 → 6 tokens
    assert estimate_input_tokens(full) == 6 + 4 * MESSAGE_OVERHEAD + IMAGE_TOKENS + TOOL_OVERHEAD
    assert estimate_input_tokens("nonsense") == 0
    assert estimate_input_tokens({"messages": [5, {"content": {"type": "odd"}}]}) == \
        2 * MESSAGE_OVERHEAD


@given(st.text(max_size=50), st.text(max_size=50))
def test_estimate_grows_with_text(a: str, b: str) -> None:
    small = estimate_input_tokens(body(messages=[{"role": "user", "content": a}]))
    large = estimate_input_tokens(body(messages=[{"role": "user", "content": a + b}]))
    assert small <= large


# -- the anthropic SDK end to end (an in-memory transport: no socket) ---------------------------

def _sdk(answer_chunks: list[bytes], seen: list[MessagesCall],
         fail: bool = False) -> Any:
    import sys

    import anthropic
    # the SDK's own HTTP library (``httpx2``, its dependency; importing it by name here would
    # be an undeclared dependency of the tests)
    httpx = sys.modules["httpx2"]

    def handler(request: Any) -> Any:
        call = chat_request_from_messages(json.loads(request.content))
        seen.append(call)
        if not call.stream:
            chat_body = completion({"content": "Hello", "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
                "tool_calls")
            return httpx.Response(200, json=messages_response_from_chat(chat_body, call.model))
        stream = MessagesStream(call.model)
        data = b"".join(stream.feed(c) for c in answer_chunks)
        data += stream.fail(529, "overloaded_error", "Overloaded") if fail else stream.end()
        return httpx.Response(200, content=data, headers={"content-type": "text/event-stream"})

    return anthropic.Anthropic(api_key="k", base_url="http://gateway.test", max_retries=0,
                               http_client=anthropic.DefaultHttpxClient(
                                   transport=httpx.MockTransport(handler)))


SDK_REQUEST: dict[str, Any] = {
    "model": "claude-x", "max_tokens": 512, "system": "be brief",
    "thinking": {"type": "enabled", "budget_tokens": 2048},
    "tools": [{"name": "get_weather", "description": "Weather.",
               "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
    "messages": [{"role": "user", "content": "Weather in Paris?"}],
}


def test_the_sdk_streams_through_the_front() -> None:
    seen: list[MessagesCall] = []
    client = _sdk(TOOLS, seen)
    with client.messages.stream(**SDK_REQUEST) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert seen[0].chat["reasoning_effort"] == "low" and seen[0].chat["stream"] is True
    assert seen[0].chat["messages"][0] == {"role": "system", "content": "be brief"}
    assert text == "Checking."
    assert [b.type for b in final.content] == ["text", "tool_use", "tool_use"]
    assert final.content[1].input == {"city": "Paris"} and final.content[2].input == {"tz": "UTC"}
    assert final.stop_reason == "tool_use" and final.model == "claude-x"
    assert (final.usage.input_tokens, final.usage.output_tokens,
            final.usage.cache_read_input_tokens) == (15, 9, 5)


def test_the_sdk_raises_on_the_in_stream_error() -> None:
    import anthropic
    client = _sdk(TEXT[:3], [], fail=True)
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"), \
            client.messages.stream(**SDK_REQUEST) as stream:
        stream.get_final_message()


def test_the_sdk_reads_the_whole_answer() -> None:
    seen: list[MessagesCall] = []
    message = _sdk([], seen).messages.create(**SDK_REQUEST)
    assert seen[0].stream is False
    assert message.content[0].text == "Hello"  # type: ignore[union-attr]
    assert message.content[1].input == {"city": "Paris"}  # type: ignore[union-attr]
    assert message.stop_reason == "tool_use" and message.usage.input_tokens == 10
