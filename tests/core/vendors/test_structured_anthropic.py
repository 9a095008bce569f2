"""Structured outputs through Claude (issue 19): ``response_format`` and strict tools on the
Messages API, Bedrock and Vertex; fallback answers and refusals decoded whole and streamed.

Rule ids: docs/vendor-rules.md, ANT-J1..ANT-J6.
"""

from __future__ import annotations

import json
import random
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uniapi_core.config.model import Provider, ProviderPreferences
from uniapi_core.vendors import bedrock, vertex
from uniapi_core.vendors.anthropic import (
    ANSWER_TOOL,
    STRUCTURED_MODELS,
    AnthropicExchange,
    build_exchange,
    claude_schema,
    structured_outputs,
)
from uniapi_core.vendors.base import ChatContext, StreamChunk, StreamDone

from .test_anthropic import (
    START,
    STOP,
    block_start,
    block_stop,
    cut,
    delta,
    make_ctx,
    message_delta,
    refused,
    sse,
    summarize,
    tool,
    user,
)

NEW = "claude-sonnet-4-5-20250929"  # enforces output_config.format (ANT-J2)
OLD = "claude-sonnet-4-20250514"  # does not: the answer-tool fallback (ANT-J3)
SCHEMA = {"type": "object",
          "properties": {"city": {"type": "string", "minLength": 2, "description": "City"},
                         "celsius": {"type": "integer", "minimum": -90, "maximum": 60}},
          "required": ["city", "celsius"], "additionalProperties": False}
FORMAT = {"type": "json_schema", "json_schema": {"name": "weather", "schema": SCHEMA,
                                                 "strict": True}}


def ctx_for(model: str, *, stream: bool = False) -> ChatContext:
    return attrs.evolve(make_ctx(stream=stream), upstream_model=model)


def exchange(model: str, *, stream: bool = False, **fields: Any) -> AnthropicExchange:
    req = {"model": "claude-sonnet", "messages": fields.pop("messages", [user()]), **fields}
    return build_exchange(req, ctx_for(model, stream=stream))


def body_of(model: str, **fields: Any) -> dict[str, Any]:
    return json.loads(exchange(model, **fields).request.body)


# == the model table (ANT-J2) ===================================================================


@pytest.mark.parametrize("model, native", [
    ("claude-sonnet-4-5-20250929", True), ("claude-sonnet-4-5", True),
    ("claude-opus-4-5-20251101", True), ("claude-haiku-4-5-20251001", True),
    ("claude-opus-4-6", True), ("claude-sonnet-5", True),
    ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", True),
    ("anthropic.claude-haiku-4-5-20251001-v1:0", True), ("claude-sonnet-4-5@20250929", True),
    ("claude-sonnet-4-20250514", False), ("claude-opus-4-1-20250805", False),
    ("claude-opus-4-20250514", False), ("claude-3-7-sonnet-20250219", False),
    ("claude-3-5-haiku-20241022", False), ("anthropic.claude-3-5-sonnet-20240620-v1:0", False),
    ("claude-sonnet-4@20250514", False), ("some-proxy-model", False),
])
def test_model_table_ant_j2(model, native):
    assert structured_outputs(model) is native
    assert set(STRUCTURED_MODELS) == {"opus", "sonnet", "haiku"}


# == the schema transform (ANT-J1) ==============================================================


def test_unsupported_constraints_move_into_the_description_ant_j1():
    assert claude_schema(SCHEMA) == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "City\n\n{minLength: 2}"},
            "celsius": {"type": "integer", "description": "{minimum: -90, maximum: 60}"}},
        "required": ["city", "celsius"], "additionalProperties": False}


def test_objects_are_closed_and_sub_schemas_transformed_ant_j1():
    schema = {
        "type": "object", "title": "T",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string", "pattern": "^a"},
                     "minItems": 1, "maxItems": 5},
            "more": {"type": "array", "items": {"type": "integer"}, "minItems": 3},
            "when": {"type": "string", "format": "date-time"},
            "color": {"type": "string", "format": "hex-color"},
            "pick": {"oneOf": [{"type": "string"}, {"$ref": "#/$defs/P"}]},
            "map": {"type": "object", "additionalProperties": {"type": "integer"}},
            "kind": {"type": "string", "enum": ["a", "b"]}, "k": {"const": 1}},
        "$defs": {"P": {"type": "object", "properties": {"x": {"type": "number",
                                                               "multipleOf": 0.5}}}}}
    out = claude_schema(schema)
    assert out["$defs"] == {"P": {"type": "object", "properties": {
        "x": {"type": "number", "description": "{multipleOf: 0.5}"}},
        "additionalProperties": False}}
    p = out["properties"]
    assert p["tags"] == {"type": "array", "items": {"type": "string",
                                                    "description": '{pattern: "^a"}'},
                         "minItems": 1, "description": "{maxItems: 5}"}
    assert p["more"] == {"type": "array", "items": {"type": "integer"},
                         "description": "{minItems: 3}"}
    assert p["when"] == {"type": "string", "format": "date-time"}
    assert p["color"] == {"type": "string", "description": '{format: "hex-color"}'}
    assert p["pick"] == {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/P"}]}
    assert p["map"] == {"type": "object", "additionalProperties": False,
                        "description": '{additionalProperties: {"type":"integer"}}'}
    assert p["kind"] == {"type": "string", "enum": ["a", "b"]}
    assert p["k"] == {"const": 1}
    assert out["title"] == "T" and out["additionalProperties"] is False


# == request bodies ==============================================================================


def test_json_schema_on_a_new_model_is_output_config_format_ant_j1():
    body = body_of(NEW, response_format=FORMAT)
    assert body["output_config"] == {"format": {"type": "json_schema",
                                                "schema": claude_schema(SCHEMA)}}
    assert "tools" not in body and "tool_choice" not in body
    assert "anthropic-beta" not in dict(exchange(NEW, response_format=FORMAT).request.headers)
    assert exchange(NEW, response_format=FORMAT).structured == "native"


def test_json_schema_on_an_old_model_is_a_forced_answer_tool_ant_j3():
    ex = exchange(OLD, response_format=FORMAT)
    body = json.loads(ex.request.body)
    assert ex.structured == "tool" and "output_config" not in body
    (answer,) = body["tools"]
    assert answer["name"] == ANSWER_TOOL and answer["input_schema"] == SCHEMA  # as sent
    assert body["tool_choice"] == {"type": "tool", "name": ANSWER_TOOL}


@pytest.mark.parametrize("model", [NEW, OLD])
def test_json_object_is_the_answer_tool_with_any_object_ant_j3(model):
    body = body_of(model, response_format={"type": "json_object"})
    assert "output_config" not in body
    assert body["tools"][-1]["input_schema"] == {"type": "object"}
    assert body["tool_choice"] == {"type": "tool", "name": ANSWER_TOOL}


def test_answer_tool_beside_client_tools_ant_j3():
    body = body_of(OLD, response_format=FORMAT, tools=[tool()])
    assert [t["name"] for t in body["tools"]] == ["get_weather", ANSWER_TOOL]
    assert body["tool_choice"] == {"type": "any"}
    body = body_of(OLD, response_format=FORMAT, tools=[tool()], tool_choice="none")
    assert body["tool_choice"] == {"type": "tool", "name": ANSWER_TOOL}
    forced = {"type": "function", "function": {"name": "get_weather"}}
    body = body_of(OLD, response_format=FORMAT, tools=[tool()], tool_choice=forced)
    assert body["tool_choice"] == {"type": "tool", "name": "get_weather"}
    body = body_of(OLD, response_format=FORMAT, tools=[tool()], parallel_tool_calls=False)
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


def test_answer_tool_name_clash_is_refused_ant_j3():
    e = refused(response_format=FORMAT, tools=[tool(ANSWER_TOOL)])
    assert e.code == "invalid_tool_name"


def test_answer_tool_with_thinking_ant_j3_ant_k3():
    # thinking from reasoning_effort is switched off for the forced tool (as ANT-K3 does)
    body = body_of(OLD, response_format=FORMAT, reasoning_effort="low")
    assert "thinking" not in body
    assert body["tool_choice"] == {"type": "tool", "name": ANSWER_TOOL}
    # an explicit thinking object is kept, and the answer tool is only offered
    body = body_of(OLD, response_format=FORMAT,
                   thinking={"type": "enabled", "budget_tokens": 2048})
    assert body["thinking"]["type"] == "enabled"
    assert body["tool_choice"] == {"type": "auto"}


def test_tool_history_without_client_tools_keeps_placeholders_and_answer_ant_t3():
    messages = [user(), {"role": "assistant", "tool_calls": [
        {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "ok"}]
    body = body_of(OLD, response_format=FORMAT, messages=messages)
    assert [t["name"] for t in body["tools"]] == ["f", ANSWER_TOOL]
    assert body["tool_choice"] == {"type": "tool", "name": ANSWER_TOOL}


def test_bad_response_formats_are_refused():
    refused(response_format={"type": "xml"})
    refused(response_format={"type": "json_schema"})
    refused(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": 3}})
    with pytest.raises(Exception) as e:  # a tool's input is an object
        exchange(OLD, response_format={"type": "json_schema", "json_schema": {
            "name": "x", "schema": {"type": "array", "items": {"type": "string"}}}})
    assert getattr(e.value, "status", None) == 400
    assert body_of(NEW, response_format={"type": "text"}).get("output_config") is None


def test_strict_tools_on_a_new_model_ant_j4():
    t = tool(parameters=SCHEMA, strict=True)
    (sent,) = body_of(NEW, tools=[t])["tools"]
    assert sent == {"name": "get_weather", "input_schema": claude_schema(SCHEMA),
                    "strict": True}
    (sent,) = body_of(OLD, tools=[t])["tools"]  # an older model: strict is dropped
    assert sent == {"name": "get_weather", "input_schema": SCHEMA}
    (sent,) = body_of(NEW, tools=[tool(parameters=SCHEMA)])["tools"]  # not asked for
    assert sent == {"name": "get_weather", "input_schema": SCHEMA}


# -- Bedrock and Vertex carry it too -----------------------------------------------------------


def bedrock_ctx(model: str, stream: bool = False) -> ChatContext:
    p = Provider(provider="br", aws_access_key="AKIAEXAMPLE", aws_secret_key="secret",
                 aws_region="us-east-1", preferences=ProviderPreferences())
    return ChatContext(client_model="claude-sonnet", upstream_model=model, provider=p,
                       api_key=None, stream=stream, include_usage=False,
                       response_id="chatcmpl-test0123456789", created=1735689600,
                       entropy=random.Random(3))


def vertex_ctx(model: str, stream: bool = False) -> ChatContext:
    p = Provider(provider="vx", project_id="proj-1", preferences=ProviderPreferences())
    return ChatContext(client_model="claude-sonnet", upstream_model=model, provider=p,
                       api_key=None, stream=stream, include_usage=False,
                       response_id="chatcmpl-test0123456789", created=1735689600,
                       entropy=random.Random(3), region="us-east5", access_token="tok")


REQ = {"model": "claude-sonnet", "messages": [user()], "response_format": FORMAT}


def test_bedrock_body_carries_output_config_and_the_fallback():
    ex = bedrock.build_exchange(REQ, bedrock_ctx("us.anthropic.claude-sonnet-4-5-20250929-v1:0"))
    body = json.loads(ex.request.body)
    assert body["anthropic_version"] == bedrock.BEDROCK_VERSION
    assert body["output_config"]["format"]["schema"] == claude_schema(SCHEMA)
    ex = bedrock.build_exchange(REQ, bedrock_ctx("anthropic.claude-3-5-sonnet-20240620-v1:0",
                                                 stream=True))
    body = json.loads(ex.request.body)
    assert body["tool_choice"] == {"type": "tool", "name": ANSWER_TOOL}
    assert ex.stream_decoder()._inner.structured == "tool"
    answer = {"id": "msg_1", "type": "message", "role": "assistant", "stop_reason": "tool_use",
              "content": [{"type": "tool_use", "id": "toolu_1", "name": ANSWER_TOOL,
                           "input": {"city": "Paris", "celsius": 21}}],
              "usage": {"input_tokens": 3, "output_tokens": 4}}
    out = json.loads(ex.parse_body(200, (), json.dumps(answer).encode()))
    assert out["choices"][0]["message"]["content"] == '{"city":"Paris","celsius":21}'


def test_vertex_claude_body_carries_output_config_and_the_fallback():
    ex = vertex.build_exchange(REQ, vertex_ctx("claude-sonnet-4-5@20250929"))
    body = json.loads(ex.request.body)
    assert body["anthropic_version"] == vertex.ANTHROPIC_VERSION
    assert body["output_config"]["format"]["schema"] == claude_schema(SCHEMA)
    assert ex.structured == "native"
    ex = vertex.build_exchange(REQ, vertex_ctx("claude-3-5-haiku@20241022", stream=True))
    body = json.loads(ex.request.body)
    assert body["tools"][-1]["name"] == ANSWER_TOOL
    assert ex.stream_decoder().structured == "tool"


# == whole answers (ANT-J5, ANT-J6) ============================================================


def message(stop: str, *content: dict[str, Any]) -> bytes:
    return json.dumps({"id": "msg_1", "type": "message", "role": "assistant",
                       "content": list(content), "stop_reason": stop,
                       "usage": {"input_tokens": 3, "output_tokens": 4}}).encode()


def whole(ex: AnthropicExchange, body: bytes) -> dict[str, Any]:
    return json.loads(ex.parse_body(200, (), body))["choices"][0]


ANSWER = {"city": "Paris", "celsius": 21}


def test_fallback_answer_becomes_the_content_ant_j5():
    ex = exchange(OLD, response_format=FORMAT)
    choice = whole(ex, message("tool_use", {"type": "tool_use", "id": "toolu_1",
                                            "name": ANSWER_TOOL, "input": ANSWER}))
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == json.dumps(ANSWER, separators=(",", ":"))
    assert "tool_calls" not in choice["message"] and choice["message"]["refusal"] is None


def test_fallback_answer_cut_by_max_tokens_is_length_ant_j5():
    ex = exchange(OLD, response_format=FORMAT)
    choice = whole(ex, message("max_tokens", {"type": "tool_use", "id": "toolu_1",
                                              "name": ANSWER_TOOL, "input": {}}))
    assert (choice["message"]["content"], choice["finish_reason"]) == ("{}", "length")
    wire = sse(START, block_start(0, type="tool_use", id="toolu_1", name=ANSWER_TOOL, input={}),
               delta(0, type="input_json_delta", partial_json='{"city": "Pa'),
               block_stop(0), message_delta("max_tokens", output_tokens=4), STOP)
    out = summarize(decode_stream(exchange(OLD, stream=True, response_format=FORMAT), [wire]))
    assert (out["content"], out["finish"]) == ('{"city": "Pa', "length")


def test_fallback_answer_beside_a_client_tool_call_ant_j5():
    ex = exchange(OLD, response_format=FORMAT, tools=[tool()])
    choice = whole(ex, message("tool_use",
                               {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                "input": {"city": "Paris"}},
                               {"type": "tool_use", "id": "toolu_2", "name": ANSWER_TOOL,
                                "input": ANSWER}))
    assert choice["finish_reason"] == "tool_calls"
    assert json.loads(choice["message"]["content"]) == ANSWER
    assert [c["function"]["name"] for c in choice["message"]["tool_calls"]] == ["get_weather"]


def test_fallback_without_the_answer_tool_gives_the_text():
    ex = exchange(OLD, response_format=FORMAT, thinking={"type": "enabled",
                                                         "budget_tokens": 2048})
    choice = whole(ex, message("end_turn", {"type": "text", "text": '{"a":1}'}))
    assert (choice["message"]["content"], choice["finish_reason"]) == ('{"a":1}', "stop")


def test_answer_tool_is_a_tool_call_without_structured_output():
    choice = whole(exchange(OLD), message("tool_use", {"type": "tool_use", "id": "toolu_1",
                                                       "name": ANSWER_TOOL, "input": {}}))
    assert choice["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("model", [NEW, OLD])
def test_refusal_under_structured_output_is_message_refusal_ant_j6(model):
    ex = exchange(model, response_format=FORMAT)
    choice = whole(ex, message("refusal", {"type": "text", "text": "I can't help with that."}))
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"] is None
    assert choice["message"]["refusal"] == "I can't help with that."


def test_refusal_without_structured_output_is_unchanged_ant_n2():
    choice = whole(exchange(NEW), message("refusal", {"type": "text", "text": "No."}))
    assert choice["finish_reason"] == "content_filter"
    assert (choice["message"]["content"], choice["message"]["refusal"]) == ("No.", None)


# == streams (ANT-J5, ANT-J6) ===================================================================


def decode_stream(ex: AnthropicExchange, pieces: list[bytes]) -> list:
    dec = ex.stream_decoder()
    items: list = []
    for p in pieces:
        items += dec.feed(p)
    return items + dec.close()


def refusal_summary(items: list) -> tuple[str, str | None, str]:
    """(refusal text, finish reason, content) of a stream with ``delta.refusal`` pieces."""
    refusal, content, finish = "", "", None
    chunks = [json.loads(i.data[6:-2]) for i in items if isinstance(i, StreamChunk)]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    for c in chunks[1:]:
        d = c["choices"][0]["delta"]
        assert "role" not in d
        if c["choices"][0]["finish_reason"] is not None:
            assert d == {} and finish is None
            finish = c["choices"][0]["finish_reason"]
            continue
        assert finish is None and len(d) == 1
        if "refusal" in d:
            assert d["refusal"]
            refusal += d["refusal"]
        else:
            content += d["content"]
    assert isinstance(items[-1], StreamDone)
    return refusal, finish, content


def answer_stream(fragments: list[str]) -> bytes:
    return sse(START, block_start(0, type="tool_use", id="toolu_1", name=ANSWER_TOOL, input={}),
               *[delta(0, type="input_json_delta", partial_json=f) for f in fragments],
               block_stop(0), message_delta("tool_use", output_tokens=4), STOP)


JSON_LEAVES = (st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=6))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda c: st.lists(c, max_size=3)
                           | st.dictionaries(st.text(max_size=4), c, max_size=3), max_leaves=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=4), data=st.data())
def test_streamed_fallback_answer_is_content_at_any_split_ant_j5(obj, data):
    text = json.dumps(obj, ensure_ascii=data.draw(st.booleans()))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=10)))
    bounds = [0, *cuts, len(text)]
    fragments = ["", *(text[a:b] for a, b in zip(bounds, bounds[1:]))]
    wire = answer_stream(fragments)
    positions = data.draw(st.lists(st.integers(0, len(wire)), max_size=12))
    ex = exchange(OLD, stream=True, response_format=FORMAT)
    items = decode_stream(ex, cut(wire, positions))
    assert items == decode_stream(ex, [wire])
    out = summarize(items)
    assert out["tools"] == [] and out["finish"] == "stop"
    assert out["content"] == (text or "{}")


def test_streamed_fallback_holds_text_and_keeps_client_tool_calls_ant_j5():
    wire = sse(START, block_start(0, type="text", text=""), delta(0, type="text_delta",
                                                                   text="Let me answer."),
               block_stop(0),
               block_start(1, type="tool_use", id="toolu_1", name="get_weather", input={}),
               delta(1, type="input_json_delta", partial_json='{"city":"Paris"}'), block_stop(1),
               block_start(2, type="tool_use", id="toolu_2", name=ANSWER_TOOL, input={}),
               block_stop(2), message_delta("tool_use", output_tokens=4), STOP)
    out = summarize(decode_stream(exchange(OLD, stream=True, response_format=FORMAT,
                                           tools=[tool()]), [wire]))
    assert out["content"] == "{}" and out["finish"] == "tool_calls"
    assert [t["name"] for t in out["tools"]] == ["get_weather"]


def text_stream(pieces: list[str], stop: str) -> bytes:
    return sse(START, block_start(0, type="text", text=""),
               *[delta(0, type="text_delta", text=p) for p in pieces], block_stop(0),
               message_delta(stop, output_tokens=4), STOP)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_streamed_native_json_is_content_at_any_split_ant_j5(data):
    pieces = ["", " \n", '{"city": "Pa', 'ris", "celsius": 21}']
    wire = text_stream(pieces, "end_turn")
    positions = data.draw(st.lists(st.integers(0, len(wire)), max_size=12))
    ex = exchange(NEW, stream=True, response_format=FORMAT)
    items = decode_stream(ex, cut(wire, positions))
    assert items == decode_stream(ex, [wire])
    out = summarize(items)
    assert out["content"] == ' \n{"city": "Paris", "celsius": 21}' and out["finish"] == "stop"


@pytest.mark.parametrize("model", [NEW, OLD])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_streamed_refusal_is_delta_refusal_at_any_split_ant_j6(model, data):
    pieces = ["I can", "'t help", " with that."]
    wire = text_stream(pieces, "refusal")
    positions = data.draw(st.lists(st.integers(0, len(wire)), max_size=12))
    ex = exchange(model, stream=True, response_format=FORMAT)
    items = decode_stream(ex, cut(wire, positions))
    assert items == decode_stream(ex, [wire])
    assert refusal_summary(items) == ("I can't help with that.", "stop", "")


def test_streamed_prose_that_is_not_a_refusal_comes_out_at_the_end_ant_j6():
    items = decode_stream(exchange(NEW, stream=True, response_format=FORMAT),
                          [text_stream(["Sorry, ", "no JSON"], "max_tokens")])
    out = summarize(items)
    assert (out["content"], out["finish"]) == ("Sorry, no JSON", "length")


def test_streamed_refusal_after_json_content_is_content_filter_ant_j6():
    items = decode_stream(exchange(NEW, stream=True, response_format=FORMAT),
                          [text_stream(['{"city": ', '"Pa'], "refusal")])
    out = summarize(items)
    assert (out["content"], out["finish"]) == ('{"city": "Pa', "content_filter")


def test_streamed_refusal_without_structured_output_is_unchanged():
    out = summarize(decode_stream(exchange(NEW, stream=True), [text_stream(["No."], "refusal")]))
    assert (out["content"], out["finish"]) == ("No.", "content_filter")


def test_bedrock_stream_decodes_the_fallback_answer():
    from .test_bedrock import fx
    ex = bedrock.build_exchange(REQ, bedrock_ctx("anthropic.claude-3-5-sonnet-20240620-v1:0",
                                                 stream=True))
    data = fx.stream([fx.start({"input_tokens": 3, "output_tokens": 1}),
                      *fx.tool_block(0, "toolu_1", ANSWER_TOOL, '{"city":', '"Paris"}'),
                      *fx.stop("tool_use", 4, (3, 4))])
    dec = ex.stream_decoder()
    items = dec.feed(data) + dec.close()
    out = summarize(items)
    assert (out["content"], out["tools"], out["finish"]) == ('{"city":"Paris"}', [], "stop")


def test_the_provider_can_force_native_or_the_tool_whatever_the_model():
    """``preferences.structured_output`` decides instead of the model table (ANT-J2)."""
    from uniapi_core.config import load_config
    from uniapi_core.vendors.anthropic import ANSWER_TOOL, build_exchange
    from uniapi_core.vendors.base import ChatContext

    def body(model: str, pref: str | None) -> dict:
        prefs = f"\n    preferences:\n      structured_output: {pref}" if pref else ""
        provider = load_config(f"providers:\n  - provider: c\n    base_url: https://x/v1/messages"
                               f"\n    api: k\n    model: [{model}]{prefs}\n"
                               "api_keys:\n  - api: sk\n").config.providers[0]
        ctx = ChatContext(client_model=model, upstream_model=model, provider=provider,
                          api_key="k", stream=False, include_usage=False,
                          response_id="chatcmpl-x", created=0)
        req = {"model": model, "messages": [{"role": "user", "content": "hi"}],
               "response_format": {"type": "json_schema", "json_schema": {
                   "name": "a", "schema": {"type": "object", "properties": {
                       "x": {"type": "string"}}, "required": ["x"]}}}}
        return json.loads(build_exchange(req, ctx).request.body)

    assert "output_config" in body("claude-sonnet-4-5", None)
    assert "output_config" not in body("my-alias", None)  # the table cannot read an alias
    assert "output_config" in body("my-alias", "native")
    forced = body("claude-sonnet-4-5", "tool")
    assert "output_config" not in forced
    assert forced["tool_choice"] == {"type": "tool", "name": ANSWER_TOOL}
