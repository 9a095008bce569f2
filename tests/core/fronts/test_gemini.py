"""The Gemini-native front (uniapi_core/fronts/gemini.py): generateContent requests to OpenAI
chat, OpenAI answers (whole and streamed, SSE and JSON array) back to Gemini's shapes.

Every translated request is parsed by the request model and must come out with nothing
``invalid``; every stream goes through the grammar checker (``gemini_check``). When the
google-genai SDK is installed, whole answers and stream responses are validated by its
pydantic ``GenerateContentResponse`` and the SDK itself is driven over an in-memory httpx
transport (no socket), so Google's client is the oracle.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uniapi_core.errors import ClientError, UniapiError
from uniapi_core.fronts.gemini import (
    CONTENT_OVERHEAD,
    MEDIA_TOKENS,
    TOOL_OVERHEAD,
    GeminiCall,
    GeminiStream,
    chat_request_from_gemini,
    count_tokens_response,
    estimate_tokens,
    gemini_response_from_chat,
    google_error_body,
    google_status_for,
    models_list,
    parse_model_path,
    usage_metadata,
)
from uniapi_core.fronts.gemini_check import check_gemini_stream
from uniapi_core.request import parse_openai_chat

import google.genai as genai  # noqa: E402 - a declared test dependency (pyproject.toml)
import httpx  # noqa: E402
from google.genai import types as genai_types  # noqa: E402


# -- requests ------------------------------------------------------------------------------------

def body(**over: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    out.update(over)
    return out


def call(**over: Any) -> GeminiCall:
    return chat_request_from_gemini(body(**over), "gemini-x", False)


def chat(**over: Any) -> dict[str, Any]:
    out = call(**over).chat
    parsed = parse_openai_chat(out)
    assert parsed.invalid == frozenset(), parsed.invalid
    assert all(m.obj and not m.invalid for m in parsed.messages)
    assert all(p.ok for m in parsed.messages for p in m.parts)
    assert all(c.ok for m in parsed.messages for c in m.tool_calls)
    assert all(t.function is not None and t.name and not t.invalid for t in parsed.tools)
    assert parsed.tool_choice is None or parsed.tool_choice.mode is not None
    assert parsed.extras == {}
    return out


def user(*parts: Any) -> dict[str, Any]:
    return {"role": "user", "parts": list(parts)}


def model(*parts: Any) -> dict[str, Any]:
    return {"role": "model", "parts": list(parts)}


def test_minimal_request() -> None:
    assert call() == GeminiCall(chat={"model": "gemini-x", "messages": [
        {"role": "user", "content": "hi"}]}, model="gemini-x", stream=False)


def test_stream_asks_for_usage() -> None:
    got = chat_request_from_gemini(body(), "m", True)
    assert got.stream is True
    assert got.chat["stream"] is True and got.chat["stream_options"] == {"include_usage": True}
    assert parse_openai_chat(got.chat).include_usage


def test_role_defaults_to_user_and_function_role_is_user() -> None:
    out = chat(contents=[{"parts": [{"text": "a"}]}])
    assert out["messages"] == [{"role": "user", "content": "a"}]


@pytest.mark.parametrize("system, expected", [
    ({"parts": [{"text": "be brief"}]}, "be brief"),
    ({"role": "user", "parts": [{"text": "a"}, {"text": "b"}]}, "a\n\nb"),
    ("plain", "plain"),
])
def test_system_instruction_leads(system: Any, expected: str) -> None:
    assert chat(systemInstruction=system)["messages"][0] == {"role": "system",
                                                              "content": expected}


def test_snake_case_fields_are_read_too() -> None:
    out = chat(system_instruction={"parts": [{"text": "s"}]},
               contents=[user({"inline_data": {"mime_type": "image/png", "data": "AAA"}})],
               generation_config={"max_output_tokens": 7,
                                  "thinking_config": {"include_thoughts": True,
                                                      "thinking_budget": 1024}})
    assert out["messages"][0] == {"role": "system", "content": "s"}
    assert out["messages"][1]["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}}]
    assert out["max_tokens"] == 7 and out["reasoning_effort"] == "low"


def test_user_parts_media() -> None:
    out = chat(contents=[user(
        {"text": "look"},
        {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/"}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBE"}},
        {"inlineData": {"mimeType": "text/plain", "data": "aGk=", "displayName": "a.txt"}},
        {"inlineData": {"mimeType": "audio/mpeg", "data": "SUQz"}},
        {"inlineData": {"mimeType": "audio/wav", "data": "UklG"}},
        {"fileData": {"mimeType": "image/png", "fileUri": "https://x.test/a.png"}},
        {"text": "", "thoughtSignature": "sig"},
        {"thoughtSignature": "only metadata"})])
    assert out["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE",
                                  "filename": "document.pdf"}},
        {"type": "file", "file": {"file_data": "data:text/plain;base64,aGk=",
                                  "filename": "a.txt"}},
        {"type": "input_audio", "input_audio": {"data": "SUQz", "format": "mp3"}},
        {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]}]


def test_several_text_parts_stay_parts() -> None:
    out = chat(contents=[user({"text": "a"}, {"text": "b"})])
    assert out["messages"][0]["content"] == [{"type": "text", "text": "a"},
                                             {"type": "text", "text": "b"}]


def test_function_call_round_trip_with_ids_signatures_and_thoughts() -> None:
    out = chat(contents=[
        user({"text": "weather?"}),
        model({"text": "hmm", "thought": True, "thoughtSignature": "t-sig"},
              {"text": "Checking"}, {"text": "."},
              {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
               "thoughtSignature": "fc-sig"},
              {"functionCall": {"id": "own-id", "name": "now"}},
              {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}),
        user({"functionResponse": {"name": "get_weather", "response": {"t": 20}}},
             {"functionResponse": {"id": "own-id", "name": "now", "response": {"h": 12}}},
             {"functionResponse": {"name": "get_weather", "response": {"t": 25},
                                   "parts": [{"inlineData": {"mimeType": "image/png",
                                                             "data": "AAA"}}]}},
             {"text": "and tomorrow?"})])
    messages = out["messages"]
    calls = messages[1]["tool_calls"]
    assert messages[1]["content"] == "Checking."
    assert [c["function"] for c in calls] == [
        {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"name": "now", "arguments": "{}"},
        {"name": "get_weather", "arguments": '{"city":"Rome"}'}]
    assert calls[0]["extra_content"] == {"google": {"thought_signature": "fc-sig"}}
    assert "extra_content" not in calls[1]
    assert calls[1]["id"] == "own-id"
    assert calls[0]["id"].startswith("call_") and len(calls[0]["id"]) == 29
    assert calls[0]["id"] != calls[2]["id"]
    assert messages[2:] == [
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": '{"t":20}'},
        {"role": "tool", "tool_call_id": "own-id", "content": '{"h":12}'},
        {"role": "tool", "tool_call_id": calls[2]["id"], "content": '{"t":25}'},
        {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}},
            {"type": "text", "text": "and tomorrow?"}]}]
    parsed = parse_openai_chat(out)
    assert parsed.messages[1].tool_calls[0].thought_signature == "fc-sig"


def test_generated_call_ids_are_deterministic() -> None:
    contents = [user({"text": "x"}), model({"functionCall": {"name": "f"}}),
                user({"functionResponse": {"name": "f", "response": {}}})]
    a, b = chat(contents=contents), chat(contents=contents)
    assert a == b
    assert a["messages"][2]["tool_call_id"] == a["messages"][1]["tool_calls"][0]["id"]


def test_model_turn_of_only_thoughts_is_left_out_and_role_function_works() -> None:
    out = chat(contents=[user({"text": "x"}), model({"text": "t", "thought": True}),
                         {"role": "function", "parts": [{"text": "y"}]}])
    assert [m["role"] for m in out["messages"]] == ["user", "user"]


def test_tools_schema_conversion_and_dropped_tools() -> None:
    got = call(tools=[
        {"googleSearch": {}},
        {"functionDeclarations": [
            {"name": "get_weather", "description": "Weather.", "parameters": {
                "type": "OBJECT", "propertyOrdering": ["city"],
                "properties": {"city": {"type": "STRING", "nullable": True, "example": "x"},
                               "unit": {"type": "STRING", "enum": ["C", "F"],
                                        "format": "enum"},
                               "days": {"type": "ARRAY", "minItems": "1",
                                        "items": {"type": "INTEGER", "minimum": 0}},
                               "any": {"anyOf": [{"type": "NUMBER"}, {"type": "BOOLEAN"}],
                                       "nullable": True}},
                "required": ["city"]}},
            {"name": "raw", "parametersJsonSchema": {"type": "object",
                                                     "additionalProperties": False}},
            {"name": "bare"}]},
        {"code_execution": {}}, {"urlContext": {}}, {"googleSearch": {}}])
    assert got.dropped_tools == ("googleSearch", "codeExecution", "urlContext")
    tools = got.chat["tools"]
    assert tools[0] == {"type": "function", "function": {
        "name": "get_weather", "description": "Weather.", "parameters": {
            "type": "object",
            "properties": {"city": {"type": ["string", "null"]},
                           "unit": {"type": "string", "enum": ["C", "F"]},
                           "days": {"type": "array", "minItems": 1,
                                    "items": {"type": "integer", "minimum": 0}},
                           "any": {"anyOf": [{"type": "number"}, {"type": "boolean"},
                                             {"type": "null"}]}},
            "required": ["city"]}}}
    assert tools[1]["function"]["parameters"] == {"type": "object",
                                                  "additionalProperties": False}
    assert tools[2]["function"] == {"name": "bare", "parameters": {"type": "object",
                                                                   "properties": {}}}
    chat(tools=[{"functionDeclarations": [{"name": "f"}]}])  # parses clean


def test_only_dropped_tools_means_no_tools_and_no_tool_choice() -> None:
    got = call(tools=[{"googleSearch": {}}],
               toolConfig={"functionCallingConfig": {"mode": "ANY"}})
    assert "tools" not in got.chat and "tool_choice" not in got.chat
    assert got.dropped_tools == ("googleSearch",)


@pytest.mark.parametrize("config, expected", [
    ({"mode": "AUTO"}, "auto"), ({"mode": "any"}, "required"), ({"mode": "NONE"}, "none"),
    ({"mode": "VALIDATED"}, "auto"), ({}, "auto"),
    ({"mode": "ANY", "allowedFunctionNames": ["g"]},
     {"type": "function", "function": {"name": "g"}}),
    ({"mode": "ANY", "allowedFunctionNames": ["f", "g"]}, "required"),
])
def test_tool_config(config: dict[str, Any], expected: Any) -> None:
    out = chat(tools=[{"functionDeclarations": [{"name": "f"}, {"name": "g"}]}],
               toolConfig={"functionCallingConfig": config})
    assert out["tool_choice"] == expected


def test_generation_config() -> None:
    out = chat(generationConfig={
        "temperature": 0.5, "topP": 0.9, "topK": 40.0, "maxOutputTokens": 100,
        "stopSequences": ["###"], "candidateCount": 2, "presencePenalty": 0.1,
        "frequencyPenalty": -0.2, "seed": 7, "responseLogprobs": True,
        "responseModalities": ["TEXT"]}, safetySettings=[{"category": "x"}], labels={"a": "b"})
    assert {k: out[k] for k in ("temperature", "top_p", "top_k", "max_tokens", "stop", "n",
                                "presence_penalty", "frequency_penalty", "seed")} == {
        "temperature": 0.5, "top_p": 0.9, "top_k": 40, "max_tokens": 100, "stop": ["###"],
        "n": 2, "presence_penalty": 0.1, "frequency_penalty": -0.2, "seed": 7}
    assert type(out["top_k"]) is int
    assert "n" not in chat(generationConfig={"candidateCount": 1})
    assert "stop" not in chat(generationConfig={"stopSequences": []})


@pytest.mark.parametrize("config, fmt", [
    ({"responseMimeType": "application/json"}, {"type": "json_object"}),
    ({"responseMimeType": "text/plain"}, None),
    ({"responseMimeType": "application/json",
      "responseSchema": {"type": "OBJECT", "properties": {"a": {"type": "INTEGER"}}}},
     {"type": "json_schema", "json_schema": {"name": "response", "schema": {
         "type": "object", "properties": {"a": {"type": "integer"}}}}}),
    ({"responseJsonSchema": {"type": "object", "$defs": {}}},
     {"type": "json_schema", "json_schema": {"name": "response", "schema": {
         "type": "object", "$defs": {}}}}),
])
def test_response_format(config: dict[str, Any], fmt: Any) -> None:
    assert chat(generationConfig=config).get("response_format") == fmt


@pytest.mark.parametrize("thinking, effort, include", [
    ({"thinkingBudget": 0}, "none", False),
    ({"thinkingBudget": 1024, "includeThoughts": True}, "low", True),
    ({"thinkingBudget": 4095}, "low", False),
    ({"thinkingBudget": 4096}, "medium", False),
    ({"thinkingBudget": 16383}, "medium", False),
    ({"thinkingBudget": 16384}, "high", False),
    ({"thinkingBudget": -1, "includeThoughts": True}, "medium", True),
    ({"thinkingLevel": "HIGH"}, "high", False),
    ({"thinkingLevel": "low", "thinkingBudget": 99999}, "low", False),
    ({"thinkingLevel": "minimal"}, "minimal", False),
    ({"includeThoughts": True}, None, True),
    ({"thinkingLevel": "THINKING_LEVEL_UNSPECIFIED"}, None, False),
])
def test_thinking(thinking: dict[str, Any], effort: str | None, include: bool) -> None:
    got = call(generationConfig={"thinkingConfig": thinking})
    assert got.chat.get("reasoning_effort") == effort
    assert got.include_thoughts is include
    chat(generationConfig={"thinkingConfig": thinking})


BAD: list[tuple[Any, str]] = [
    ([], "request body must be a JSON object"),
    ({}, "contents: field required"),
    (body(contents=[]), "contents: expected a non-empty list"),
    (body(contents={}), "contents: expected a non-empty list"),
    (body(contents=["x"]), "contents[0]: expected an object"),
    (body(contents=[{"role": "system", "parts": []}]), "contents[0].role: expected"),
    (body(contents=[{"role": 1, "parts": []}]), "contents[0].role: expected a string"),
    (body(contents=[{"role": "user", "parts": {}}]), "contents[0].parts: expected a list"),
    (body(contents=[user("x")]), "contents[0].parts[0]: expected an object"),
    (body(contents=[user({"text": 3})]), "contents[0].parts[0].text: expected a string"),
    (body(contents=[user({"video": {}})]), "contents[0].parts[0].video: unknown part field"),
    (body(contents=[user({"executableCode": {"code": "1"}})]),
     "contents[0].parts[0].executableCode: executableCode parts (code execution)"),
    (body(contents=[model({"codeExecutionResult": {"output": "1"}})]),
     "contents[0].parts[0].codeExecutionResult: codeExecutionResult parts"),
    (body(contents=[user({"toolCall": {}})]), "contents[0].parts[0].toolCall: toolCall parts"),
    (body(contents=[user({"inlineData": {"data": "x"}})]),
     "contents[0].parts[0].inlineData.mimeType: field required"),
    (body(contents=[user({"inlineData": {"mimeType": "image/png"}})]),
     "contents[0].parts[0].inlineData.data: field required"),
    (body(contents=[user({"inlineData": {"mimeType": "video/mp4", "data": "x"}})]),
     "contents[0].parts[0].inlineData.mimeType: video"),
    (body(contents=[user({"fileData": {"mimeType": "application/pdf",
                                       "fileUri": "ftp://x.test/a.pdf"}})]),
     "contents[0].parts[0].fileData.fileUri: expected an http(s), gs:// or Gemini Files API"),
    (body(contents=[user({"fileData": {"mimeType": "video/mp4",
                                       "fileUri": "https://x.test/a.mp4"}})]),
     "contents[0].parts[0].fileData.mimeType: 'video/mp4' files cannot be forwarded by URL"),
    (body(contents=[user({"fileData": {}})]), "contents[0].parts[0].fileData.fileUri: field"),
    (body(contents=[user({"functionCall": {"name": "f"}})]),
     "contents[0].parts[0].functionCall: a functionCall belongs in a model turn"),
    (body(contents=[model({"functionResponse": {"name": "f"}})]),
     "contents[0].parts[0].functionResponse: functionResponse parts in a model turn"),
    (body(contents=[model({"inlineData": {"mimeType": "image/png", "data": "x"}})]),
     "contents[0].parts[0].inlineData: inlineData parts in a model turn"),
    (body(contents=[model({"functionCall": {"args": {}}})]),
     "contents[0].parts[0].functionCall.name: field required"),
    (body(contents=[model({"functionCall": {"name": "f", "args": "{}"}})]),
     "contents[0].parts[0].functionCall.args: expected an object"),
    (body(contents=[user({"functionResponse": {"name": "f", "response": {}}})]),
     "contents[0].parts[0].functionResponse: no functionCall named 'f'"),
    (body(contents=[model({"functionCall": {"name": "f"}}),
                    user({"functionResponse": {"name": "f", "response": {}}},
                         {"functionResponse": {"name": "f", "response": {}}})]),
     "contents[1].parts[1].functionResponse: no functionCall named 'f'"),
    (body(contents=[model({"functionCall": {"name": "f"}}),
                    user({"functionResponse": {"name": "f", "response": "ok"}})]),
     "contents[1].parts[0].functionResponse.response: expected an object"),
    (body(contents=[model({"functionCall": {"name": "f"}}),
                    user({"functionResponse": {"name": "f", "parts": [{"text": "x"}]}})]),
     "contents[1].parts[0].functionResponse.parts[0].text: only inlineData and fileData"),
    (body(systemInstruction=5), "systemInstruction: expected an object"),
    (body(systemInstruction={"parts": [{"inlineData": {}}]}),
     "systemInstruction.parts[0].inlineData: a system instruction can only hold text"),
    (body(cachedContent="cachedContents/abc"), "cachedContent: cached contents live at Google"),
    (body(tools={}), "tools: expected a list"),
    (body(tools=[5]), "tools[0]: expected an object"),
    (body(tools=[{"functionDeclarations": {}}]), "tools[0].functionDeclarations: expected"),
    (body(tools=[{"functionDeclarations": [{"description": "d"}]}]),
     "tools[0].functionDeclarations[0].name: field required"),
    (body(tools=[{"functionDeclarations": [{"name": ""}]}]),
     "tools[0].functionDeclarations[0].name: expected a non-empty string"),
    (body(tools=[{"functionDeclarations": [{"name": "f", "parameters": {},
                                             "parametersJsonSchema": {}}]}]),
     "tools[0].functionDeclarations[0]: give parameters or parametersJsonSchema"),
    (body(tools=[{"functionDeclarations": [{"name": "f", "parameters": {"type": "WHAT"}}]}]),
     "tools[0].functionDeclarations[0].parameters.type: unknown type 'WHAT'"),
    (body(tools=[{"functionDeclarations": [{"name": "f", "parameters": {
        "type": "OBJECT", "properties": {"a": {"type": 1}}}}]}]),
     "tools[0].functionDeclarations[0].parameters.properties.a.type: expected a string"),
    (body(tools=[{"functionDeclarations": [{"name": "f", "parameters": {
        "type": "ARRAY", "items": [], "minItems": "x"}}]}]),
     "tools[0].functionDeclarations[0].parameters.items: expected an object"),
    (body(tools=[{"functionDeclarations": [{"name": "f", "parametersJsonSchema": True}]}]),
     "tools[0].functionDeclarations[0].parametersJsonSchema: expected an object"),
    (body(toolConfig=[]), "toolConfig: expected an object"),
    (body(toolConfig={"functionCallingConfig": {"mode": "SOMETIMES"}}),
     "toolConfig.functionCallingConfig.mode: expected AUTO, ANY, NONE or VALIDATED"),
    (body(tools=[{"functionDeclarations": [{"name": "f"}]}],
          toolConfig={"functionCallingConfig": {"mode": "ANY",
                                                "allowedFunctionNames": ["g"]}}),
     "toolConfig.functionCallingConfig.allowedFunctionNames: 'g' is not a declared"),
    (body(toolConfig={"functionCallingConfig": {"allowedFunctionNames": "f"}}),
     "toolConfig.functionCallingConfig.allowedFunctionNames: expected a list of strings"),
    (body(generationConfig=[]), "generationConfig: expected an object"),
    (body(generationConfig={"temperature": "hot"}),
     "generationConfig.temperature: expected a number"),
    (body(generationConfig={"topK": 1.5}), "generationConfig.topK: expected an integer ≥ 0"),
    (body(generationConfig={"maxOutputTokens": 0}),
     "generationConfig.maxOutputTokens: expected a positive integer"),
    (body(generationConfig={"seed": "1"}), "generationConfig.seed: expected an integer"),
    (body(generationConfig={"candidateCount": 0}),
     "generationConfig.candidateCount: expected a positive integer"),
    (body(generationConfig={"stopSequences": "###"}),
     "generationConfig.stopSequences: expected a list of strings"),
    (body(generationConfig={"responseMimeType": "text/x.enum"}),
     "generationConfig.responseMimeType: 'text/x.enum' cannot be served here"),
    (body(generationConfig={"responseMimeType": 1}),
     "generationConfig.responseMimeType: expected a string"),
    (body(generationConfig={"responseModalities": ["TEXT", "IMAGE"]}),
     "generationConfig.responseModalities: only TEXT"),
    (body(generationConfig={"responseSchema": "x"}),
     "generationConfig.responseSchema: expected an object"),
    (body(generationConfig={"thinkingConfig": {"thinkingBudget": -2}}),
     "generationConfig.thinkingConfig.thinkingBudget: expected an integer ≥ -1"),
    (body(generationConfig={"thinkingConfig": {"thinkingLevel": "max"}}),
     "generationConfig.thinkingConfig.thinkingLevel: expected MINIMAL"),
    (body(generationConfig={"thinkingConfig": {"includeThoughts": "yes"}}),
     "generationConfig.thinkingConfig.includeThoughts: expected a boolean"),
    (body(generationConfig={"thinkingConfig": 5}),
     "generationConfig.thinkingConfig: expected an object"),
]


@pytest.mark.parametrize("request_body, message", BAD)
def test_bad_requests_name_the_path(request_body: Any, message: str) -> None:
    with pytest.raises(ClientError) as info:
        chat_request_from_gemini(request_body, "m", False)
    assert isinstance(info.value, UniapiError)
    assert info.value.status == 400 and info.value.type == "invalid_request_error"
    assert info.value.message.startswith(message), info.value.message


def test_model_name_is_required() -> None:
    with pytest.raises(ClientError, match="model: expected a model name"):
        chat_request_from_gemini(body(), "", False)


# -- whole answers -------------------------------------------------------------------------------

def completion(message: dict[str, Any], finish: str | None = "stop",
               usage: dict[str, Any] | None = None, cid: str = "chatcmpl-abc") -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion", "created": 1, "model": "upstream",
            "choices": [{"index": 0, "message": {"role": "assistant", **message},
                         "finish_reason": finish}],
            "usage": usage if usage is not None else {"prompt_tokens": 10,
                                                      "completion_tokens": 5,
                                                      "total_tokens": 15}}


def answer(chat_body: dict[str, Any], include_thoughts: bool = True) -> dict[str, Any]:
    out = gemini_response_from_chat(chat_body, "gemini-x", include_thoughts)
    # Google's own model accepts it
    genai_types.GenerateContentResponse.model_validate(out)
    return out


def test_text_answer() -> None:
    out = answer(completion({"content": "Hello"}))
    assert out == {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hello"}]},
                                   "finishReason": "STOP", "index": 0}],
                   "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5,
                                     "totalTokenCount": 15},
                   "modelVersion": "gemini-x", "responseId": out["responseId"]}
    assert len(out["responseId"]) == 22
    assert answer(completion({"content": "Hello"}))["responseId"] == out["responseId"]
    assert answer(completion({"content": "x"}, cid="other"))["responseId"] != out["responseId"]


@pytest.mark.parametrize("finish, reason", [
    ("stop", "STOP"), ("length", "MAX_TOKENS"), ("content_filter", "SAFETY"),
    ("tool_calls", "STOP"), ("function_call", "STOP"), (None, "STOP"), ("new", "STOP"),
])
def test_finish_reasons(finish: str | None, reason: str) -> None:
    assert answer(completion({"content": "x"}, finish))["candidates"][0]["finishReason"] == \
        reason


def test_parts_in_order_thoughts_and_calls() -> None:
    message = {"content": "Let me check.", "reasoning_content": "think", "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
         "extra_content": {"google": {"thought_signature": "sig"}}},
        {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "{oops"}},
        {"id": "", "type": "function", "function": {"name": "h", "arguments": "[1]"}}]}
    parts = answer(completion(message, "tool_calls"))["candidates"][0]["content"]["parts"]
    assert parts[:4] == [
        {"text": "think", "thought": True}, {"text": "Let me check."},
        {"functionCall": {"id": "call_1", "name": "get_weather", "args": {"city": "Paris"}},
         "thoughtSignature": "sig"},
        {"functionCall": {"id": "call_2", "name": "g", "args": {}}}]
    assert parts[4]["functionCall"]["id"].startswith("call_")
    assert parts[4]["functionCall"]["args"] == {}
    hidden = answer(completion(message), include_thoughts=False)
    assert hidden["candidates"][0]["content"]["parts"][0] == {"text": "Let me check."}


def test_several_choices_and_none() -> None:
    two = completion({"content": "a"})
    two["choices"].append({"index": 1, "message": {"role": "assistant", "content": "b"},
                           "finish_reason": "length"})
    out = answer(two)
    assert [(c["index"], c["content"]["parts"], c["finishReason"]) for c in
            out["candidates"]] == [(0, [{"text": "a"}], "STOP"),
                                   (1, [{"text": "b"}], "MAX_TOKENS")]
    empty = answer({"id": "c"})
    assert empty["candidates"] == [{"content": {"role": "model", "parts": []},
                                    "finishReason": "STOP", "index": 0}]
    assert empty["usageMetadata"]["totalTokenCount"] == 0


@pytest.mark.parametrize("usage, expected", [
    ({"prompt_tokens": 100, "completion_tokens": 30,
      "completion_tokens_details": {"reasoning_tokens": 20},
      "prompt_tokens_details": {"cached_tokens": 60}},
     {"promptTokenCount": 100, "candidatesTokenCount": 10, "totalTokenCount": 130,
      "cachedContentTokenCount": 60, "thoughtsTokenCount": 20}),
    ({"prompt_tokens": 5, "completion_tokens": 3,
      "completion_tokens_details": {"reasoning_tokens": 9}},
     {"promptTokenCount": 5, "candidatesTokenCount": 0, "totalTokenCount": 8,
      "thoughtsTokenCount": 3}),
    ({"prompt_tokens": "x", "completion_tokens": -1},
     {"promptTokenCount": 0, "candidatesTokenCount": 0, "totalTokenCount": 0}),
    (None, {"promptTokenCount": 0, "candidatesTokenCount": 0, "totalTokenCount": 0}),
])
def test_usage_metadata(usage: Any, expected: dict[str, int]) -> None:
    assert usage_metadata(usage) == expected


# -- streams -------------------------------------------------------------------------------------

CID = "chatcmpl-stream"


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None,
          usage: dict[str, Any] | None = None, choices: bool = True) -> bytes:
    obj: dict[str, Any] = {"id": CID, "object": "chat.completion.chunk", "created": 1,
                           "model": "up", "choices": [], "usage": usage}
    if choices:
        obj["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def tc(index: int, cid: str | None = None, name: str | None = None,
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
TEXT = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}),
        chunk({"content": "lo"}), chunk(finish="stop"), chunk(usage=USAGE, choices=False),
        b"data: [DONE]\n\n"]
TOOLS = [
    chunk({"role": "assistant", "reasoning_content": "hmm"}),
    chunk({"content": "Checking."}),
    chunk({"tool_calls": [tc(0, "call_a", "get_weather", "")]}),
    chunk({"tool_calls": [tc(0, args='{"city"')]}),
    chunk({"tool_calls": [tc(0, args=': "Paris"}')]}),
    chunk({"tool_calls": [tc(1, "call_b", "get_time", '{"tz":')]}),
    chunk({"tool_calls": [tc(1, args=' "UTC"}')]}),
    chunk(finish="tool_calls"),
    chunk(usage=USAGE, choices=False),
]


def run(chunks: list[bytes], sse: bool = True, usage: dict[str, Any] | None = None,
        include_thoughts: bool = True) -> list[dict[str, Any]]:
    stream = GeminiStream("gemini-x", include_thoughts, sse)
    data = b"".join(stream.feed(c) for c in chunks) + stream.end(usage)
    assert stream.closed
    events = check_gemini_stream(data, sse)
    for event in events:
        genai_types.GenerateContentResponse.model_validate(event)
    return events


def parts_of(events: list[dict[str, Any]]) -> list[Any]:
    return [e["candidates"][0]["content"]["parts"] for e in events]


@pytest.mark.parametrize("sse", [True, False])
def test_text_stream(sse: bool) -> None:
    events = run(TEXT, sse)
    assert parts_of(events) == [[{"text": "Hel"}], [{"text": "lo"}], [{"text": ""}]]
    last = events[-1]
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert last["usageMetadata"] == {"promptTokenCount": 20, "candidatesTokenCount": 9,
                                     "totalTokenCount": 29, "cachedContentTokenCount": 5}
    assert all("finishReason" not in e["candidates"][0] and "usageMetadata" not in e
               for e in events[:-1])
    assert {e["responseId"] for e in events} == {events[0]["responseId"]}
    assert {e["modelVersion"] for e in events} == {"gemini-x"}


def test_wire_format_sse_and_array() -> None:
    stream = GeminiStream("g", False, sse=True, request_id="r1")
    out = stream.feed(chunk({"content": "Hi"}))
    assert out.startswith(b'data: {"candidates":[{"content":{"role":"model","parts":'
                          b'[{"text":"Hi"}]},"index":0}],"modelVersion":"g","responseId":"')
    assert out.endswith(b'"}\r\n\r\n') and out.count(b"\r\n\r\n") == 1
    array = GeminiStream("g", False, sse=False, request_id="r1")
    first = array.feed(chunk({"content": "Hi"}))
    second = array.feed(chunk({"content": "!"}))
    last = array.end()
    assert first.startswith(b'[{"candidates"') and second.startswith(b',\r\n{"candidates"')
    assert last.startswith(b",\r\n{") and last.endswith(b"}]")
    assert len(json.loads(first + second + last)) == 3
    assert first[1:] == out[len(b"data: "):-4]


def test_empty_array_stream_and_end_only() -> None:
    for sse in (True, False):
        events = run([b"data: [DONE]\n\n", b": comment\n\n"], sse)
        assert parts_of(events) == [[{"text": ""}]]


def test_tool_calls_are_sent_whole() -> None:
    events = run(TOOLS)
    assert parts_of(events) == [
        [{"text": "hmm", "thought": True}],
        [{"text": "Checking."}],
        [{"functionCall": {"id": "call_a", "name": "get_weather", "args": {"city": "Paris"}}}],
        [{"functionCall": {"id": "call_b", "name": "get_time", "args": {"tz": "UTC"}}}]]
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"


def test_thoughts_hidden_without_include_thoughts() -> None:
    events = run(TOOLS, include_thoughts=False)
    assert parts_of(events)[0] == [{"text": "Checking."}]


def test_calls_in_one_chunk_late_fragments_and_signatures() -> None:
    sig = {"index": 0, "id": "a", "type": "function", "function": {"name": "f",
                                                                  "arguments": "{}"},
           "extra_content": {"google": {"thought_signature": "c2lnMQ=="}}}
    events = run([chunk({"tool_calls": [sig, tc(1, "b", "g", "{}")]}),
                  chunk({"tool_calls": [tc(0, args="ignored")]}),  # its call was sent
                  chunk({"tool_calls": [tc(0, "c", "h", '{"x":1}')]}),  # a new call
                  chunk({"tool_calls": [{"index": 2, "function": {"arguments": "nope"}}]}),
                  chunk({"content": "after"})])
    parts = [p for ps in parts_of(events) for p in ps]
    assert parts[0] == {"functionCall": {"id": "a", "name": "f", "args": {}},
                        "thoughtSignature": "c2lnMQ=="}
    assert [p["functionCall"]["id"] for p in parts[1:3]] == ["b", "c"]
    # a call that came without id or name still goes out, whole, with a generated id
    assert parts[3]["functionCall"]["args"] == {} and parts[3]["functionCall"]["name"] == ""
    assert parts[3]["functionCall"]["id"].startswith("call_")
    assert parts[4] == {"text": "after"}


def test_usage_from_end_wins_and_length() -> None:
    events = run([chunk({"content": "abc"}), chunk(finish="length", usage=USAGE)],
                 usage={"prompt_tokens": 3, "completion_tokens": 4})
    assert events[-1]["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert events[-1]["usageMetadata"] == {"promptTokenCount": 3, "candidatesTokenCount": 4,
                                           "totalTokenCount": 7}


@pytest.mark.parametrize("sse", [True, False])
def test_fail_mid_stream(sse: bool) -> None:
    stream = GeminiStream("g", True, sse)
    data = stream.feed(TEXT[1]) + stream.feed(TOOLS[2]) + stream.fail(503, "Overloaded")
    events = check_gemini_stream(data, sse)
    assert events[-1] == {"error": {"code": 503, "message": "Overloaded",
                                    "status": "UNAVAILABLE"}}
    assert len(events) == 2  # the unfinished call is not sent
    assert stream.closed and stream.feed(TEXT[2]) == stream.end() == stream.fail(500, "x") \
        == b""


@pytest.mark.parametrize("sse", [True, False])
def test_fail_before_anything(sse: bool) -> None:
    data = GeminiStream("g", True, sse).fail(429, "slow down")
    assert check_gemini_stream(data, sse) == [{"error": {
        "code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}}]
    if not sse:
        assert json.loads(data) == [{"error": {"code": 429, "message": "slow down",
                                               "status": "RESOURCE_EXHAUSTED"}}]


def test_error_chunk_ends_the_stream() -> None:
    stream = GeminiStream("g", True, True)
    err = b'data: {"error": {"message": "quota", "type": "x", "code": 429}}\n\n'
    data = stream.feed(TEXT[1] + err + TEXT[2]) + stream.end()
    events = check_gemini_stream(data, True)
    assert events[-1]["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert parts_of(events[:-1]) == [[{"text": "Hel"}]]


def test_garbage_and_other_choices_are_ignored() -> None:
    other = b'data: {"id": "c", "choices": [{"index": 1, "delta": {"content": "B"}}]}\n\n'
    events = run([b"data: {not json\n\ndata: [1]\n\nevent: x\n\n", other, TEXT[1]])
    assert parts_of(events) == [[{"text": "Hel"}], [{"text": ""}]]


def test_response_id_from_request_id_or_first_chunk() -> None:
    def rid(stream: GeminiStream) -> str:
        return check_gemini_stream(stream.feed(TEXT[1]) + stream.end(), True)[0]["responseId"]
    a, b = rid(GeminiStream("m", True, True)), rid(GeminiStream("m", True, True))
    assert a == b
    assert rid(GeminiStream("m", True, True, request_id="r")) != a
    assert rid(GeminiStream("m", True, True, request_id="r")) == \
        rid(GeminiStream("other", True, True, request_id="r"))


# -- stream properties ---------------------------------------------------------------------------

def _group(items: list[bytes], cuts: list[bool]) -> list[bytes]:
    out: list[bytes] = []
    for item, cut in zip(items, cuts, strict=True):
        if cut or not out:
            out.append(item)
        else:
            out[-1] += item
    return out


def _feed_all(parts: list[bytes], sse: bool) -> bytes:
    stream = GeminiStream("g", True, sse)
    return b"".join(stream.feed(p) for p in parts) + stream.end()


@pytest.mark.parametrize("chunks", [TEXT, TOOLS], ids=["text", "tools"])
@pytest.mark.parametrize("sse", [True, False])
@given(cuts=st.lists(st.booleans(), min_size=len(TOOLS) + 1, max_size=len(TOOLS) + 1))
@settings(max_examples=50, deadline=None)
def test_any_grouping_of_whole_events_gives_the_same_output(chunks: list[bytes], sse: bool,
                                                           cuts: list[bool]) -> None:
    assert _feed_all(_group(chunks, cuts[:len(chunks)]), sse) == _feed_all(chunks, sse)


_JSON_OBJECTS = st.dictionaries(st.text("abcxyz", min_size=1, max_size=3),
                                st.one_of(st.integers(), st.text(max_size=5), st.booleans()),
                                max_size=3)
_TEXTS = st.text(min_size=0, max_size=6)


@st.composite
def segments(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """A plausible answer: runs of reasoning, text, refusal and tool calls (arguments a JSON
    object cut anywhere), in any order."""
    out: list[tuple[str, Any]] = []
    index = 0
    for kind in draw(st.lists(st.sampled_from(["reasoning_content", "content", "refusal",
                                               "tool"]), max_size=6)):
        if kind == "tool":
            args = json.dumps(draw(_JSON_OBJECTS))
            cuts = sorted(draw(st.sets(st.integers(0, len(args)), max_size=4)))
            pieces = [args[a:b] for a, b in zip([0, *cuts], [*cuts, len(args)], strict=True)]
            out.append(("tool", (index, pieces)))
            index += draw(st.sampled_from([0, 1]))  # an index reused by a new id, or not
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
            out.append(chunk({"tool_calls": [tc(index, f"call_{n}", f"fn{n}", pieces[0])]}))
            out.extend(chunk({"tool_calls": [tc(index, args=p)]}) for p in pieces[1:])
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
       ending=st.sampled_from(["end", "fail"]), cut=st.integers(0, 40), sse=st.booleans(),
       thoughts=st.booleans(), split=st.integers(1, 7))
@settings(max_examples=150, deadline=None)
def test_any_plausible_answer_is_a_valid_stream(segs: list[tuple[str, Any]], finish: str | None,
                                                usage: dict[str, Any] | None, ending: str,
                                                cut: int, sse: bool, thoughts: bool,
                                                split: int) -> None:
    chunks = _chunks_of(segs, finish, usage)
    if ending == "fail":
        chunks = chunks[:cut]
    stream = GeminiStream("g", thoughts, sse)
    data = b"".join(stream.feed(c) for c in chunks)
    data += stream.end() if ending == "end" else stream.fail(500, "cut")
    # the checker reads the bytes cut anywhere
    checker_events = check_gemini_stream(data, sse)
    from uniapi_core.fronts.gemini_check import GeminiStreamChecker
    checker = GeminiStreamChecker(sse)
    for k in range(0, len(data), split):
        checker.feed(data[k:k + split])
    checker.close()
    assert checker.events == checker_events
    if ending == "fail":
        assert "error" in checker_events[-1]
        return
    for event in checker_events:
        genai_types.GenerateContentResponse.model_validate(event)
    parts = [p for e in checker_events for p in e["candidates"][0]["content"]["parts"]]
    texts = "".join(t for kind, v in segs if kind in ("content", "refusal") for t in v)
    reasoning = "".join(t for kind, v in segs if kind == "reasoning_content" for t in v)
    assert "".join(p["text"] for p in parts if "text" in p and not p.get("thought")) == texts
    assert "".join(p["text"] for p in parts if p.get("thought")) == \
        (reasoning if thoughts else "")
    tools = [v for kind, v in segs if kind == "tool"]
    assert [p["functionCall"]["args"] for p in parts if "functionCall" in p] == \
        [json.loads("".join(pieces)) for _, pieces in tools]
    assert [p["functionCall"]["name"] for p in parts if "functionCall" in p] == \
        [f"fn{n}" for n in range(1, len(tools) + 1)]
    reason = checker_events[-1]["candidates"][0]["finishReason"]
    assert reason == {"length": "MAX_TOKENS", "content_filter": "SAFETY"}.get(finish or "",
                                                                             "STOP")


# -- errors, countTokens, models, paths ----------------------------------------------------------

@pytest.mark.parametrize("status, name", [
    (400, "INVALID_ARGUMENT"), (401, "UNAUTHENTICATED"), (403, "PERMISSION_DENIED"),
    (404, "NOT_FOUND"), (429, "RESOURCE_EXHAUSTED"), (500, "INTERNAL"), (503, "UNAVAILABLE"),
    (504, "DEADLINE_EXCEEDED"), (413, "INVALID_ARGUMENT"), (502, "UNAVAILABLE"),
    (520, "INTERNAL"), (408, "DEADLINE_EXCEEDED"),
])
def test_google_error_body(status: int, name: str) -> None:
    assert google_status_for(status) == name
    assert json.loads(google_error_body(status, "m é")) == {
        "error": {"code": status, "message": "m é", "status": name}}


def test_estimate_tokens() -> None:
    assert estimate_tokens(body(contents=[user({"text": "abcd" * 10})])) == \
        10 + CONTENT_OVERHEAD
    full = body(systemInstruction={"parts": [{"text": "s" * 8}]}, contents=[
        user({"text": "x" * 4}, {"inlineData": {"mimeType": "image/png", "data": "A"}}),
        model({"functionCall": {"name": "ab", "args": {}}}),
        user({"functionResponse": {"name": "ab", "response": {}}})],
        tools=[{"functionDeclarations": [{"name": "f"}]}, {"googleSearch": {}}])
    # chars: 8 + 4 + (2 + 2) + (2 + 2) + len('{"name":"f"}') 12 = 32 → 8 tokens
    assert estimate_tokens(full) == 8 + 4 * CONTENT_OVERHEAD + MEDIA_TOKENS + TOOL_OVERHEAD
    wrapped = {"generateContentRequest": {"model": "models/x", "contents": [
        user({"text": "abcd"})]}}
    assert estimate_tokens(wrapped) == 1 + CONTENT_OVERHEAD
    assert estimate_tokens("nonsense") == 0
    assert estimate_tokens({"contents": [5, {"parts": "x"}, {"parts": [7, {"odd": 1}]}]}) == \
        3 * CONTENT_OVERHEAD
    assert count_tokens_response(7) == {"totalTokens": 7}


@given(st.text(max_size=50), st.text(max_size=50))
def test_estimate_grows_with_text(a: str, b: str) -> None:
    small = estimate_tokens(body(contents=[user({"text": a})]))
    assert small <= estimate_tokens(body(contents=[user({"text": a + b})]))


def test_models_list() -> None:
    out = models_list(["gemini-x", "openai/gpt-4o"])
    assert [m["name"] for m in out["models"]] == ["models/gemini-x", "models/openai/gpt-4o"]
    assert out["models"][0]["supportedGenerationMethods"] == [
        "generateContent", "streamGenerateContent", "countTokens"]
    for m in out["models"]:
        genai_types.Model._from_response(response=m, kwargs={})


@pytest.mark.parametrize("path, expected", [
    ("/v1beta/models/gemini-2.5-flash:generateContent", ("gemini-2.5-flash", "generateContent")),
    ("/v1/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
     ("gemini-2.5-flash", "streamGenerateContent")),
    ("/v1beta/models/openai/gpt-4o:countTokens", ("openai/gpt-4o", "countTokens")),
    ("/v1beta/models/llama3:8b:generateContent", ("llama3:8b", "generateContent")),
    ("/v1beta/models/my%20model%3Av2:generateContent", ("my model:v2", "generateContent")),
    ("/v1beta/models/gemini-x%3AgenerateContent", ("gemini-x", "generateContent")),
    ("/v1beta/models/llama3:8b", ("llama3:8b", "")),
    ("/v1beta/models/gemini-x", ("gemini-x", "")),
    ("/v1beta/models/", None), ("/v1beta/models/:generateContent", None),
    ("/v1beta/models", None), ("/v1/chat/completions", None), ("/v1beta/tunedModels/x", None),
])
def test_parse_model_path(path: str, expected: tuple[str, str] | None) -> None:
    assert parse_model_path(path) == expected


# -- the google-genai SDK end to end (an in-memory transport: no socket) ------------------------

def _sdk(answer_chunks: list[bytes], seen: list[tuple[str, GeminiCall | None]],
         fail: bool = False) -> Any:

    def handler(request: Any) -> Any:
        if request.method == "GET" and request.url.path in ("/v1/models", "/v1beta/models"):
            seen.append(("list", None))
            return httpx.Response(200, json=models_list(["gemini-x"]))
        parsed = parse_model_path(request.url.path)
        assert parsed is not None, request.url.path
        name, method = parsed
        payload = json.loads(request.content)
        if method == "countTokens":
            seen.append((method, None))
            return httpx.Response(200, json=count_tokens_response(estimate_tokens(payload)))
        sse = request.url.params.get("alt") == "sse"
        call = chat_request_from_gemini(payload, name, method == "streamGenerateContent")
        seen.append((method, call))
        if not call.stream:
            body = completion({"content": "Hello", "reasoning_content": "think", "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
                "tool_calls", usage={"prompt_tokens": 10, "completion_tokens": 7,
                                     "completion_tokens_details": {"reasoning_tokens": 2}})
            return httpx.Response(200, json=gemini_response_from_chat(body, call.model,
                                                                      call.include_thoughts))
        stream = GeminiStream(call.model, call.include_thoughts, sse)
        data = b"".join(stream.feed(c) for c in answer_chunks)
        data += stream.fail(503, "The model is overloaded.") if fail else stream.end()
        return httpx.Response(200, content=data, headers={
            "content-type": "text/event-stream" if sse else "application/json"})

    return genai.Client(api_key="k", http_options=genai_types.HttpOptions(
        base_url="http://gateway.test",
        httpx_client=httpx.Client(transport=httpx.MockTransport(handler))))


def _config() -> Any:
    t = genai_types
    return t.GenerateContentConfig(
        system_instruction="be brief", temperature=0.2, max_output_tokens=512,
        thinking_config=t.ThinkingConfig(include_thoughts=True, thinking_budget=2048),
        tools=[t.Tool(function_declarations=[t.FunctionDeclaration(
            name="get_weather", description="Weather.", parameters=t.Schema(
                type="OBJECT", properties={"city": t.Schema(type="STRING")},
                required=["city"]))]),
            t.Tool(google_search=t.GoogleSearch())],
        automatic_function_calling=t.AutomaticFunctionCallingConfig(disable=True))


def test_the_sdk_reads_the_whole_answer() -> None:
    seen: list[tuple[str, GeminiCall | None]] = []
    client = _sdk([], seen)
    response = client.models.generate_content(model="gemini-x", contents="Weather in Paris?",
                                              config=_config())
    method, call = seen[0]
    assert method == "generateContent" and call is not None
    assert call.chat["reasoning_effort"] == "low" and call.include_thoughts
    assert call.chat["messages"][0] == {"role": "system", "content": "be brief"}
    assert call.dropped_tools == ("googleSearch",)
    assert call.chat["tools"][0]["function"]["parameters"]["properties"] == {
        "city": {"type": "string"}}
    assert response.text == "Hello"
    assert response.function_calls[0].name == "get_weather"
    assert response.function_calls[0].args == {"city": "Paris"}
    assert response.function_calls[0].id == "call_1"
    parts = response.candidates[0].content.parts
    assert parts[0].thought is True and parts[0].text == "think"
    assert response.usage_metadata.thoughts_token_count == 2
    assert response.usage_metadata.candidates_token_count == 5
    assert response.model_version == "gemini-x"


def test_the_sdk_streams_through_the_front() -> None:
    seen: list[tuple[str, GeminiCall | None]] = []
    client = _sdk(TOOLS, seen)
    chunks = list(client.models.generate_content_stream(
        model="openai/gpt-4o", contents="Weather in Paris?", config=_config()))
    method, call = seen[0]
    assert method == "streamGenerateContent" and call is not None and call.stream
    assert call.model == "openai/gpt-4o"
    calls = [fc for c in chunks for fc in (c.function_calls or [])]
    assert [(fc.name, fc.args) for fc in calls] == [("get_weather", {"city": "Paris"}),
                                                    ("get_time", {"tz": "UTC"})]
    text = "".join(p.text for c in chunks for p in c.candidates[0].content.parts
                   if p.text and not p.thought)
    assert text == "Checking."
    assert chunks[-1].candidates[0].finish_reason == genai_types.FinishReason.STOP
    assert chunks[-1].usage_metadata.prompt_token_count == 20


def test_the_sdk_raises_on_the_in_stream_error() -> None:
    from google.genai import errors
    client = _sdk(TEXT[:3], [], fail=True)
    with pytest.raises(errors.APIError, match="overloaded") as info:
        for _ in client.models.generate_content_stream(model="gemini-x", contents="hi"):
            pass
    assert info.value.code == 503


def test_the_sdk_counts_tokens_and_lists_models() -> None:
    seen: list[tuple[str, GeminiCall | None]] = []
    client = _sdk([], seen)
    assert client.models.count_tokens(model="gemini-x", contents="abcd" * 4).total_tokens == \
        4 + CONTENT_OVERHEAD
    models = list(client.models.list())
    assert [m.name for m in models] == ["models/gemini-x"]
    assert "generateContent" in (models[0].supported_actions or [])


def test_the_sdk_history_round_trips() -> None:
    """A multi-turn chat as the SDK sends it (snake_case nested fields, function call and
    response parts, thought parts) translates and parses clean."""
    t = genai_types
    seen: list[tuple[str, GeminiCall | None]] = []
    client = _sdk([], seen)
    history = [
        t.Content(role="user", parts=[t.Part.from_text(text="Weather?"),
                                      t.Part.from_bytes(data=b"\x89PNG", mime_type="image/png")]),
        t.Content(role="model", parts=[
            t.Part(text="thinking", thought=True),
            t.Part(function_call=t.FunctionCall(name="get_weather", args={"city": "Paris"}),
                   thought_signature=b"sig")]),
        t.Content(role="user", parts=[t.Part.from_function_response(
            name="get_weather", response={"output": "sunny"})]),
    ]
    client.models.generate_content(model="gemini-x", contents=history, config=_config())
    _, call = seen[0]
    assert call is not None
    parsed = parse_openai_chat(call.chat)
    assert parsed.invalid == frozenset()
    roles = [m["role"] for m in call.chat["messages"]]
    assert roles == ["system", "user", "assistant", "tool"]
    tool_call = call.chat["messages"][2]["tool_calls"][0]
    assert call.chat["messages"][3]["tool_call_id"] == tool_call["id"]
    assert call.chat["messages"][3]["content"] == '{"output":"sunny"}'
    assert tool_call["extra_content"]["google"]["thought_signature"] == "c2ln"
    assert call.chat["messages"][1]["content"][1]["image_url"]["url"] == \
        "data:image/png;base64,iVBORw=="


def test_file_data_documents_and_uploads() -> None:
    """An http(s) document becomes uniapi's file_url; an upload (Files API, gs://) its file_id,
    which only a Gemini channel reads."""
    files = "https://generativelanguage.googleapis.com/v1beta/files/abc"
    out = chat(contents=[user(
        {"fileData": {"mimeType": "application/pdf", "fileUri": "https://x.test/d/a%20b.pdf"}},
        {"fileData": {"mimeType": "text/plain", "fileUri": "https://x.test/n.txt",
                      "displayName": "notes"}},
        {"fileData": {"mimeType": "application/pdf", "fileUri": files}},
        {"fileData": {"mimeType": "image/png", "fileUri": "gs://b/a.png",
                      "displayName": "a.png"}})])
    assert out["messages"][0]["content"] == [
        {"type": "file", "file": {"file_url": "https://x.test/d/a%20b.pdf",
                                  "filename": "a b.pdf"}},
        {"type": "file", "file": {"file_url": "https://x.test/n.txt", "filename": "notes"}},
        {"type": "file", "file": {"file_id": files}},
        {"type": "file", "file": {"file_id": "gs://b/a.png", "filename": "a.png"}}]
