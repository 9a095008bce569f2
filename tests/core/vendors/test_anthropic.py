"""The Anthropic Messages translator: request building, whole bodies, streams, errors.

Rule ids: docs/contracts.md (shared), docs/vendor-rules.md (ANT-*). Fixtures in
``tests/data/anthropic/`` are realistic vendor payloads written from Anthropic's documented
shapes. Every emitted stream is parsed back as JSON and checked against the OpenAI chunk grammar
(``summarize``), so the grammar rules are asserted on every stream test, not only in one place.
"""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uniapi_core.config.model import Provider, ProviderPreferences
from uniapi_core.errors import ClientError, DecodeError, UpstreamError
from uniapi_core.vendors.anthropic import (
    DEFAULT_URL,
    EFFORT_BUDGETS,
    FINISH_REASONS,
    MAPPED,
    AnthropicExchange,
    build_exchange,
    messages_url,
)
from uniapi_core.vendors.base import (
    ChatContext,
    ImagesNeeded,
    StreamChunk,
    StreamDone,
    StreamFailed,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "anthropic"
STREAMS = ["text_stream.sse", "thinking_stream.sse", "tools_stream.sse", "error_stream.sse",
           "cut_stream.sse"]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 24
GIF = b"GIF89a\x01\x00\x01\x00\x00\xff\x00,"
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 16


def fixture(name: str) -> bytes:
    return (DATA / name).read_bytes()


def make_ctx(*, stream: bool = True, include_usage: bool = False,
             client_model: str = "claude-sonnet", base_url: str | None = None,
             headers: tuple[tuple[str, str], ...] = (),
             images: dict[str, tuple[str, bytes]] | None = None) -> ChatContext:
    provider = Provider(provider="anthropic", base_url=base_url, api=("sk-ant-test",),
                        preferences=ProviderPreferences(headers=headers))
    return ChatContext(client_model=client_model, upstream_model="claude-sonnet-4-20250514",
                       provider=provider, api_key="sk-ant-test", stream=stream,
                       include_usage=include_usage, response_id="chatcmpl-test0123456789",
                       created=1735689600, images=images or {}, entropy=random.Random(7))


def user(content: Any = "Hi") -> dict[str, Any]:
    return {"role": "user", "content": content}


def build(messages: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    """The Anthropic body for an OpenAI request (non-streamed unless ``ctx`` says so)."""
    ctx = fields.pop("ctx", None) or make_ctx(stream=False)
    req = {"model": "claude-sonnet", "messages": messages or [user()], **fields}
    return json.loads(build_exchange(req, ctx).request.body)


def refused(messages: list[dict[str, Any]] | None = None, **fields: Any) -> ClientError:
    with pytest.raises(ClientError) as e:
        build(messages, **fields)
    assert e.value.status == 400
    return e.value


def text_blocks(*texts: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": t} for t in texts]


def call(cid: str, name: str = "get_weather", args: str = '{"city":"Paris"}') -> dict[str, Any]:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}


def tool(name: str = "get_weather", **extra: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, **extra}}


# -- stream helpers -----------------------------------------------------------------------------


def run(pieces: list[bytes], ctx: ChatContext | None = None) -> tuple[list, str | None]:
    """Feed ``pieces`` then close: (items, DecodeError kind or None). Nothing else may escape."""
    dec = AnthropicExchange(None, ctx or make_ctx()).stream_decoder()  # type: ignore[arg-type]
    items: list = []
    try:
        for piece in pieces:
            items += dec.feed(piece)
        items += dec.close()
    except DecodeError as e:
        return items, e.kind
    return items, None


def decode(data: bytes, **ctx_kw: Any) -> list:
    items, kind = run([data], make_ctx(**ctx_kw))
    assert kind is None, kind
    return items


def comparable(items: list) -> list:
    """Items with the failure's fields spelled out (exceptions compare by identity)."""
    out = []
    for it in items:
        if isinstance(it, StreamFailed):
            e = it.error
            out.append(("failed", e.kind, e.type, e.code, e.upstream_status, e.status, e.message))
        else:
            out.append(it)
    return out


def cut(data: bytes, positions: list[int]) -> list[bytes]:
    bounds = [0, *sorted(positions), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def summarize(items: list, include_usage: bool = False) -> dict[str, Any]:
    """Parse the chunks back and check the OpenAI stream grammar (docs/contracts.md, "The
    stream grammar", S-1..S-8)."""
    chunks, end = [], None
    for it in items:
        assert end is None, "nothing may follow StreamDone/StreamFailed"
        if isinstance(it, StreamChunk):
            raw = it.data
            assert raw.startswith(b"data: ") and raw.endswith(b"\n\n") and raw.count(b"\n") == 2
            assert "\u2028".encode() not in raw and "\u2029".encode() not in raw  # S-8
            chunks.append(json.loads(raw[6:-2]))
        else:
            end = it
    assert chunks, "S-1: a role chunk at least"
    first = chunks[0]
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}  # S-1
    for c in chunks:
        assert (c["id"], c["object"], c["created"], c["model"]) == (
            "chatcmpl-test0123456789", "chat.completion.chunk", 1735689600, "claude-sonnet")
        assert ("usage" in c) == include_usage  # S-5
    usage_chunks = [c for c in chunks if c["choices"] == []]
    body = [c for c in chunks if c["choices"]]
    finishes = [i for i, c in enumerate(body) if c["choices"][0]["finish_reason"] is not None]
    out: dict[str, Any] = {"content": "", "reasoning": "", "tools": [], "finish": None,
                           "usage": None, "end": end}
    tools: list[dict[str, Any]] = out["tools"]
    for i, c in enumerate(body):
        choice = c["choices"][0]
        delta = choice["delta"]
        if include_usage:
            assert c["usage"] is None
        if i == 0:
            continue
        assert "role" not in delta  # S-1: exactly one role chunk
        if choice["finish_reason"] is not None:
            assert delta == {}  # S-4
            continue
        assert len(delta) == 1, delta
        if "content" in delta:
            assert delta["content"] != ""  # S-7
            out["content"] += delta["content"]
        elif "reasoning_content" in delta:
            assert delta["reasoning_content"] != ""
            out["reasoning"] += delta["reasoning_content"]
        else:
            (tc,) = delta["tool_calls"]
            if "id" in tc:  # tool_start (S-2): new index, in order (S-3)
                assert tc["index"] == len(tools) and tc["type"] == "function"
                assert set(tc) == {"index", "id", "type", "function"}
                tools.append({"id": tc["id"], "name": tc["function"]["name"],
                              "arguments": tc["function"]["arguments"]})
            else:  # tool_args: index and arguments only
                assert tc == {"index": tc["index"],
                              "function": {"arguments": tc["function"]["arguments"]}}
                assert tc["index"] < len(tools) and tc["function"]["arguments"] != ""
                tools[tc["index"]]["arguments"] += tc["function"]["arguments"]
    if isinstance(end, StreamDone):
        assert finishes == [len(body) - 1]  # S-4: one finish chunk, last of the body chunks
        out["finish"] = body[-1]["choices"][0]["finish_reason"]
        assert len(usage_chunks) == (1 if include_usage else 0)
        if include_usage:
            assert chunks[-1] is usage_chunks[0]
            out["usage"] = usage_chunks[0]["usage"]
    else:
        assert finishes == [] and usage_chunks == []
    return out


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


START = {"type": "message_start", "message": {"id": "msg_1", "type": "message",
                                             "role": "assistant", "content": [],
                                             "usage": {"input_tokens": 5, "output_tokens": 1}}}
STOP = {"type": "message_stop"}


def block_start(i: int, **block: Any) -> dict[str, Any]:
    return {"type": "content_block_start", "index": i, "content_block": block}


def delta(i: int, **d: Any) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": i, "delta": d}


def block_stop(i: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": i}


def message_delta(reason: str | None, **usage: Any) -> dict[str, Any]:
    return {"type": "message_delta", "delta": {"stop_reason": reason}, "usage": usage}


# == request building (docs/vendor-rules.md, ANT-1 to ANT-K4)  --------------------------------


def test_plain_text_request_url_headers_and_body_ant_1_ant_2():
    ex = build_exchange({"model": "claude-sonnet", "messages": [user()], "stream": True},
                        make_ctx())
    req = ex.request
    assert (req.method, req.url) == ("POST", DEFAULT_URL)
    assert req.headers == (("x-api-key", "sk-ant-test"), ("anthropic-version", "2023-06-01"),
                           ("content-type", "application/json"),
                           ("accept", "text/event-stream"))
    assert req.body == (b'{"model":"claude-sonnet-4-20250514","max_tokens":4096,'
                        b'"messages":[{"role":"user","content":[{"type":"text","text":"Hi"}]}],'
                        b'"stream":true}')


def test_non_streamed_request_has_no_stream_field_and_accepts_json():
    ex = build_exchange({"model": "m", "messages": [user()], "stream": True},
                        make_ctx(stream=False))  # ctx.stream decides
    assert "stream" not in json.loads(ex.request.body)
    assert ("accept", "application/json") in ex.request.headers


@pytest.mark.parametrize("base, url", [
    (None, DEFAULT_URL),
    ("", DEFAULT_URL),
    ("https://api.anthropic.com", "https://api.anthropic.com/v1/messages"),
    ("https://api.anthropic.com/", "https://api.anthropic.com/v1/messages"),
    ("https://proxy.example/v1", "https://proxy.example/v1/messages"),
    ("https://proxy.example/claude/v1/", "https://proxy.example/claude/v1/messages"),
    ("https://gw.example/anthropic/v1/messages", "https://gw.example/anthropic/v1/messages"),
    ("https://gw.example/v1/messages?beta=true", "https://gw.example/v1/messages?beta=true"),
    ("https://gw.example/custom/path", "https://gw.example/custom/path"),
])
def test_url_forms_ant_1(base, url):
    assert messages_url(base) == url
    ex = build_exchange({"model": "m", "messages": [user()]}, make_ctx(base_url=base))
    assert ex.request.url == url


def test_preference_headers_replace_same_named_ones_ant_2():
    ctx = make_ctx(headers=(("Anthropic-Version", "2024-01-01"), ("anthropic-beta", "x-1,y-2")))
    headers = build_exchange({"model": "m", "messages": [user()]}, ctx).request.headers
    names = [k.lower() for k, _ in headers]
    assert names.count("anthropic-version") == 1
    assert ("Anthropic-Version", "2024-01-01") in headers
    assert ("anthropic-beta", "x-1,y-2") in headers
    assert not any(k == "anthropic-beta" for k, _ in headers[:-2])  # no default beta (D-8)


def test_documented_anthropic_example_translates_exactly():
    """System text, an image, parallel tool calls and their results give exactly this
    Messages body (docs/vendor-rules.md, ANT-R1..R8, ANT-T1, ANT-T2)."""
    req = {"model": "claude-3-5-sonnet", "max_tokens": 512, "stop": "\n\nHuman:",
           "messages": [
               {"role": "system", "content": "Be terse."},
               {"role": "user", "content": [
                   {"type": "text", "text": "Weather and time in Paris?"},
                   {"type": "image_url",
                    "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
               {"role": "assistant", "content": "Checking.", "tool_calls": [
                   call("toolu_01A"), call("toolu_01B", "get_time", "")]},
               {"role": "tool", "tool_call_id": "toolu_01A", "content": "18°C"},
               {"role": "tool", "tool_call_id": "toolu_01B", "content": "14:05"},
               {"role": "user", "content": "Thanks — summarise."}],
           "tools": [tool("get_weather", parameters={
               "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
               tool("get_time", description="Local time")],
           "tool_choice": "auto"}
    body = json.loads(build_exchange(req, make_ctx(stream=False)).request.body)
    assert body == {
        "model": "claude-sonnet-4-20250514", "max_tokens": 512, "system": "Be terse.",
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather and time in Paris?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": "iVBORw0KGgo="}}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_01A", "name": "get_weather",
                 "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_01B", "name": "get_time", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18°C"},
                {"type": "tool_result", "tool_use_id": "toolu_01B", "content": "14:05"},
                {"type": "text", "text": "Thanks — summarise."}]}],
        "stop_sequences": ["\n\nHuman:"],
        "tools": [{"name": "get_weather", "input_schema": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
            {"name": "get_time", "description": "Local time",
             "input_schema": {"type": "object", "properties": {}}}],
        "tool_choice": {"type": "auto"}}


# -- system and roles (ANT-R1..R8) --


def test_system_string_is_kept_as_a_string_ant_r1():
    body = build([{"role": "system", "content": "Be terse."}, user()])
    assert body["system"] == "Be terse."
    assert body["messages"] == [{"role": "user", "content": text_blocks("Hi")}]


def test_system_parts_developer_role_and_mid_conversation_system_ant_r1():
    body = build([
        {"role": "system", "content": [{"type": "text", "text": "A"},
                                       {"type": "text", "text": "B",
                                        "cache_control": {"type": "ephemeral"}}]},
        user("q1"),
        {"role": "developer", "content": "C"},
        {"role": "assistant", "content": "a1"},
        {"role": "system", "content": ""},  # empty text is dropped (ANT-R3)
        user("q2")])
    assert body["system"] == [{"type": "text", "text": "A"},
                              {"type": "text", "text": "B", "cache_control": {"type": "ephemeral"}},
                              {"type": "text", "text": "C"}]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]


def test_several_plain_system_messages_become_a_block_list():
    body = build([{"role": "system", "content": "A"}, {"role": "developer", "content": "B"},
                  user()])
    assert body["system"] == text_blocks("A", "B")


def test_image_in_system_message_is_refused_ant_r1():
    refused([{"role": "system", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
        user()])


def test_consecutive_same_role_messages_are_merged_ant_r3_r4():
    body = build([user("one"), user(""), user([{"type": "text", "text": "two"}]),
                  {"role": "assistant", "content": "a"},
                  {"role": "assistant", "content": "   "},  # whitespace-only assistant text
                  {"role": "assistant", "content": [{"type": "text", "text": "b"}]},
                  user("three")])
    assert body["messages"] == [
        {"role": "user", "content": text_blocks("one", "two")},
        {"role": "assistant", "content": text_blocks("a", "b")},
        {"role": "user", "content": text_blocks("three")}]


def test_history_starting_with_assistant_gets_a_placeholder_user_turn_ant_r6():
    body = build([{"role": "assistant", "content": "Hello!"}, user()])
    assert body["messages"][0] == {"role": "user", "content": text_blocks(".")}
    assert body["messages"][1]["role"] == "assistant"


def test_final_assistant_prefill_is_right_stripped_ant_r7():
    body = build([user(), {"role": "assistant", "content": "The answer is: \n"}])
    assert body["messages"][-1] == {"role": "assistant",
                                    "content": text_blocks("The answer is:")}


def test_no_message_left_is_refused_ant_r8():
    assert "at least one user message" in refused([{"role": "system", "content": "x"}]).message
    refused([user("")])


@pytest.mark.parametrize("message", [
    {"role": "wizard", "content": "x"},
    {"role": "user", "content": 42},
    {"role": "user", "content": [{"type": "input_audio",
                                  "input_audio": {"data": "", "format": "wav"}}]},
    {"role": "user", "content": [{"type": "text", "text": None}]},
    {"role": "user", "content": [7]},
])
def test_unsupported_messages_are_refused(message):
    refused([message])


# -- tools (ANT-T1..T3, TC-5, TC-6) --


@pytest.mark.parametrize("choice, expected", [
    ("auto", {"type": "auto"}),
    ("none", {"type": "none"}),
    ("required", {"type": "any"}),
    ({"type": "function", "function": {"name": "get_weather"}},
     {"type": "tool", "name": "get_weather"}),
])
def test_tool_choice_mapping_ant_t2(choice, expected):
    body = build(tools=[tool()], tool_choice=choice)
    assert body["tool_choice"] == expected
    assert body["tools"] == [{"name": "get_weather",
                              "input_schema": {"type": "object", "properties": {}}}]


def test_tool_without_tool_choice_sends_none_and_strict_is_dropped_ant_t1():
    body = build(tools=[tool(parameters={"type": "object"}, strict=True, description="d")])
    assert "tool_choice" not in body
    assert body["tools"] == [{"name": "get_weather", "description": "d",
                              "input_schema": {"type": "object"}}]


@pytest.mark.parametrize("choice, expected", [
    (None, {"type": "auto", "disable_parallel_tool_use": True}),
    ("required", {"type": "any", "disable_parallel_tool_use": True}),
    ("none", {"type": "none"}),
])
def test_parallel_tool_calls_false_disables_parallel_use(choice, expected):
    fields = {"tools": [tool()], "parallel_tool_calls": False}
    if choice:
        fields["tool_choice"] = choice
    assert build(**fields)["tool_choice"] == expected


@pytest.mark.parametrize("name", ["get weather", "fn.name", "", "x" * 129, "naïve", None])
def test_tool_names_anthropic_refuses_are_a_400_tc_6(name):
    err = refused(tools=[tool(name)])
    assert err.code == "invalid_tool_name"


def test_invalid_tool_choice_and_non_function_tools_are_refused():
    refused(tools=[tool()], tool_choice="sometimes")
    refused(tools=[{"type": "web_search"}])


def test_parallel_tool_call_history_becomes_one_result_turn_ant_r2_r4():
    body = build([user("Paris?"),
                  {"role": "assistant", "content": None,
                   "tool_calls": [call("toolu_1"), call("toolu_2", "get_time", "")]},
                  {"role": "tool", "tool_call_id": "toolu_2", "content": "14:05"},
                  {"role": "tool", "tool_call_id": "toolu_1",
                   "content": [{"type": "text", "text": "18°C"}]},
                  user("thanks")], tools=[tool(), tool("get_time")])
    assert body["messages"][1] == {"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}}]}
    assert body["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "14:05"},
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": text_blocks("18°C")},
        {"type": "text", "text": "thanks"}]}


def test_empty_tool_result_has_no_content_ant_r2():
    body = build([user(), {"role": "assistant", "tool_calls": [call("c1")]},
                  {"role": "tool", "tool_call_id": "c1", "content": ""}], tools=[tool()])
    assert body["messages"][-1]["content"] == [{"type": "tool_result", "tool_use_id": "c1"}]


def test_foreign_tool_ids_are_sanitized_injectively_tc_5():
    ids = ["functions.get_weather:0", "functions_get_weather_0", "call/é"]
    body = build([user(), {"role": "assistant", "tool_calls": [call(i) for i in ids]},
                  *[{"role": "tool", "tool_call_id": i, "content": "ok"} for i in ids]],
                 tools=[tool()])
    uses = [b["id"] for b in body["messages"][1]["content"]]
    results = [b["tool_use_id"] for b in body["messages"][2]["content"]]
    assert uses == results
    assert len(set(uses)) == 3
    assert uses[1] == "functions_get_weather_0"  # a valid id is kept as is
    assert all(len(u) <= 64 and all(c.isascii() and (c.isalnum() or c in "_-") for c in u)
               for u in uses)


def test_tool_result_for_an_unknown_call_is_refused_req_2():
    assert "messages[1]" in refused([user(), {"role": "tool", "tool_call_id": "nope",
                                              "content": "x"}]).message


def test_tool_call_without_its_result_is_refused_ant_r5():
    err = refused([user(), {"role": "assistant", "tool_calls": [call("toolu_9")]},
                   user("never mind")], tools=[tool()])
    assert "toolu_9" in err.message


@pytest.mark.parametrize("args", ["[1]", "{not json", '"s"'])
def test_tool_call_arguments_must_be_a_json_object_req_2(args):
    refused([user(), {"role": "assistant", "tool_calls": [call("c1", args=args)]},
             {"role": "tool", "tool_call_id": "c1", "content": "x"}], tools=[tool()])


def test_tool_history_without_tools_gets_placeholder_definitions_ant_t3():
    body = build([user(), {"role": "assistant", "tool_calls": [call("c1")]},
                  {"role": "tool", "tool_call_id": "c1", "content": "x"}])
    assert [t["name"] for t in body["tools"]] == ["get_weather"]
    assert body["tool_choice"] == {"type": "none"}


# -- images (REQ-4; docs/vendor-rules.md, ANT-R2) ---


def image_part(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, "detail": "high"}, **extra}


def image_of(body: dict[str, Any], n: int = 0) -> dict[str, Any]:
    return [b for b in body["messages"][0]["content"] if b["type"] == "image"][n]


def test_base64_data_url_becomes_an_image_block_and_detail_is_dropped():
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    body = build([user([{"type": "text", "text": "look"}, image_part(url)])])
    assert image_of(body) == {"type": "image", "source": {
        "type": "base64", "media_type": "image/png", "data": base64.b64encode(PNG).decode()}}


def test_media_type_is_sniffed_from_magic_bytes_req_4():
    url = "data:image/png;base64," + base64.b64encode(JPEG).decode()
    assert image_of(build([user([image_part(url)])]))["source"]["media_type"] == "image/jpeg"


def test_percent_encoded_data_url_is_decoded_and_reencoded_req_4():
    url = "data:image/gif," + "".join(f"%{b:02X}" for b in GIF)
    src = image_of(build([user([image_part(url)])]))["source"]
    assert src == {"type": "base64", "media_type": "image/gif",
                   "data": base64.b64encode(GIF).decode()}


def test_base64_with_whitespace_and_missing_padding_is_normalised_req_4():
    b64 = base64.b64encode(WEBP).decode().rstrip("=")
    messy = "\n".join(b64[i:i + 8] for i in range(0, len(b64), 8)) + " \r\n"
    src = image_of(build([user([image_part("data:image/webp;base64," + messy)])]))["source"]
    assert src == {"type": "base64", "media_type": "image/webp",
                   "data": base64.b64encode(WEBP).decode()}


def test_remote_images_come_from_ctx_images_req_4():
    url = "https://img.example/cat"
    ctx = make_ctx(stream=False, images={url: ("application/octet-stream", WEBP)})
    body = build([user([image_part(url, cache_control={"type": "ephemeral"})])], ctx=ctx)
    assert image_of(body) == {"type": "image", "cache_control": {"type": "ephemeral"},
                              "source": {"type": "base64", "media_type": "image/webp",
                                         "data": base64.b64encode(WEBP).decode()}}


def test_missing_remote_images_are_all_requested_at_once():
    urls = ["https://img.example/a.png", "http://img.example/b.jpg"]
    ctx = make_ctx(stream=False, images={"https://img.example/known": ("image/png", PNG)})
    with pytest.raises(ImagesNeeded) as e:
        build([user([image_part(urls[0]), image_part("https://img.example/known")]),
               {"role": "assistant", "content": "ok"},
               user([image_part(urls[1]), image_part(urls[0])])], ctx=ctx)
    assert e.value.urls == tuple(urls)


@pytest.mark.parametrize("url", [
    "data:image/bmp;base64," + base64.b64encode(b"BM\x00\x00").decode(),  # unsupported type
    "data:image/png;base64,***",  # not base64
    "data:image/png;base64",  # no comma
    "ftp://img.example/a.png",
    "file:///etc/passwd",
    "data:image/png;base64," + base64.b64encode(PNG + b"\x00" * (5 * 1024 * 1024)).decode(),
])
def test_bad_images_are_refused(url):
    refused([user([image_part(url)])])


# -- sampling, limits, unmapped fields (docs/vendor-rules.md, ANT-K1..K3; REQ-3) ---


def test_max_completion_tokens_wins_over_max_tokens():
    assert build(max_tokens=100, max_completion_tokens=200)["max_tokens"] == 200
    assert build(max_tokens=100)["max_tokens"] == 100
    refused(max_tokens=0)
    refused(max_tokens="100")


@pytest.mark.parametrize("stop, expected", [
    ("END", ["END"]), (["a", "", "b"], ["a", "b"]), ("", None), ([], None)])
def test_stop_becomes_stop_sequences(stop, expected):
    body = build(stop=stop)
    assert body.get("stop_sequences") == expected
    assert "stop" not in body


def test_invalid_stop_is_refused():
    refused(stop=5)
    refused(stop=["a", 3])


def test_temperature_is_clamped_and_top_p_dropped_when_both_are_set():
    assert build(temperature=1.7)["temperature"] == 1
    assert build(temperature=-1)["temperature"] == 0
    body = build(temperature=0.3, top_p=0.9, top_k=40)
    assert (body["temperature"], "top_p" in body, body["top_k"]) == (0.3, False, 40)
    assert build(top_p=0.9)["top_p"] == 0.9
    refused(temperature="hot")
    refused(top_k=0)


def test_unmapped_fields_are_not_copied_req_3():
    body = build(presence_penalty=1, frequency_penalty=1, logit_bias={"1": 2}, logprobs=True,
                 top_logprobs=2, seed=7, stream_options={"include_usage": True},
                 response_format={"type": "text"}, service_tier="auto", n=1,
                 parallel_tool_calls=True, foo="bar", max_completion_tokens=10)
    assert set(body) == {"model", "max_tokens", "messages"}


def test_user_becomes_metadata_user_id():
    assert build(user="u-42")["metadata"] == {"user_id": "u-42"}


@pytest.mark.parametrize("n", [2, 5, "2", True])
def test_n_other_than_one_is_refused(n):
    assert refused(n=n).code == "unsupported_parameter"


def test_cache_control_reaches_anthropic_on_parts_messages_and_tools():
    body = build([
        {"role": "system", "content": "sys", "cache_control": {"type": "ephemeral"}},
        user([{"type": "text", "text": "doc", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
              {"type": "text", "text": "q"}]),
        {"role": "assistant", "tool_calls": [call("c1")]},
        {"role": "tool", "tool_call_id": "c1", "content": "r",
         "cache_control": {"type": "ephemeral"}},
        {"role": "user", "content": "more", "cache_control": {"type": "ephemeral"}}],
        tools=[dict(tool(), cache_control={"type": "ephemeral"})])
    assert body["system"] == [{"type": "text", "text": "sys",
                               "cache_control": {"type": "ephemeral"}}]
    assert body["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "c1", "content": "r",
         "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "more", "cache_control": {"type": "ephemeral"}}]
    assert body["tools"][0]["cache_control"] == {"type": "ephemeral"}


# -- thinking (ANT-K1..K4) --


def think_ctx(alias: str) -> ChatContext:
    return make_ctx(stream=False, client_model=alias)


@pytest.mark.parametrize("alias, budget", [
    ("claude-sonnet-think", 4096), ("Claude-Sonnet-THINKING", 4096),
    ("claude-sonnet-think-8000", 8000), ("claude-sonnet-think-500", 1024)])
def test_think_aliases_enable_extended_thinking_ant_k1_k2(alias, budget):
    body = build(ctx=think_ctx(alias), temperature=0.5, top_k=5)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert body["max_tokens"] == budget + 4096
    assert "temperature" not in body and "top_k" not in body  # ANT-K3


def test_a_small_max_tokens_lowers_the_budget_or_turns_thinking_off_ant_k2():
    body = build(ctx=think_ctx("claude-think-8000"), max_tokens=5000)
    assert (body["max_tokens"], body["thinking"]["budget_tokens"]) == (5000, 4999)
    body = build(ctx=think_ctx("claude-think"), max_tokens=1000)
    assert body["max_tokens"] == 1000 and "thinking" not in body


def test_top_p_with_thinking_is_kept_only_between_0_95_and_1_ant_k3():
    assert build(ctx=think_ctx("x-think"), top_p=0.97)["top_p"] == 0.97
    assert "top_p" not in build(ctx=think_ctx("x-think"), top_p=0.5)


@pytest.mark.parametrize("effort", sorted(EFFORT_BUDGETS))
def test_reasoning_effort_maps_to_a_budget(effort):
    body = build(reasoning_effort=effort)
    assert body["thinking"] == {"type": "enabled",
                                "budget_tokens": max(1024, EFFORT_BUDGETS[effort])}
    assert "reasoning_effort" not in body


def test_reasoning_effort_none_and_invalid():
    assert "thinking" not in build(ctx=think_ctx("claude-think"), reasoning_effort="none")
    refused(reasoning_effort="extreme")


def test_explicit_thinking_object_wins_over_the_alias():
    body = build(ctx=think_ctx("claude-think-9000"),
                 thinking={"type": "enabled", "budget_tokens": 2048})
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert "thinking" in build(thinking={"type": "disabled"})
    refused(thinking={"type": "sometimes"})


def test_forced_tool_choice_turns_alias_thinking_off_ant_k3():
    body = build(ctx=think_ctx("claude-think"), tools=[tool()], tool_choice="required")
    assert "thinking" not in body and body["tool_choice"] == {"type": "any"}


def test_prefill_with_thinking_is_refused_ant_r7():
    with pytest.raises(ClientError):
        build([user(), {"role": "assistant", "content": "Sure"}], ctx=think_ctx("c-think"))


def tool_turn(**assistant_extra: Any) -> list[dict[str, Any]]:
    return [user(), {"role": "assistant", "content": "", "tool_calls": [call("toolu_1")],
                     **assistant_extra},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18°C"}]


def test_tool_turn_without_signed_thinking_turns_thinking_off_ant_k4():
    body = build(tool_turn(reasoning_content="unsigned"), ctx=think_ctx("c-think"),
                 tools=[tool()])
    assert "thinking" not in body
    assert all(b["type"] != "thinking" for m in body["messages"] for b in m["content"])


def test_signed_thinking_blocks_are_replayed_first_ant_k4():
    blocks = [{"type": "thinking", "thinking": "Need weather.", "signature": "EqQBsig"},
              {"type": "redacted_thinking", "data": "EmwKAh"}, {"type": "thinking"}]
    body = build(tool_turn(thinking_blocks=blocks), ctx=think_ctx("c-think"), tools=[tool()])
    assert body["thinking"]["type"] == "enabled"
    assert body["messages"][1]["content"][:3] == [
        {"type": "thinking", "thinking": "Need weather.", "signature": "EqQBsig"},
        {"type": "redacted_thinking", "data": "EmwKAh"},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]
    # without thinking, history thinking is not sent
    body = build(tool_turn(thinking_blocks=blocks), tools=[tool()])
    assert body["messages"][1]["content"][0]["type"] == "tool_use"


# == whole bodies (docs/vendor-rules.md, ANT-N1, ANT-N2) ---------------------------------------


def parse(name_or_body: str | bytes, status: int = 200, **ctx_kw: Any) -> dict[str, Any]:
    body = fixture(name_or_body) if isinstance(name_or_body, str) else name_or_body
    ex = AnthropicExchange(None, make_ctx(stream=False, **ctx_kw))  # type: ignore[arg-type]
    out = json.loads(ex.parse_body(status, (), body))
    assert (out["id"], out["object"], out["created"], out["model"]) == (
        "chatcmpl-test0123456789", "chat.completion", 1735689600, "claude-sonnet")
    out["_exchange"] = ex
    return out


def test_text_body_concatenates_blocks_o_6():
    out = parse("message_text.json")
    msg = out["choices"][0]["message"]
    assert msg == {"role": "assistant", "refusal": None,
                   "content": "Hi! My name is Claude — nice to meet you. 🚀"}
    assert out["choices"][0]["finish_reason"] == "stop"
    # U-1: cache_creation_input_tokens is reported (0), so cache_write_tokens is there
    assert out["usage"] == {"prompt_tokens": 2095, "completion_tokens": 503,
                            "total_tokens": 2598,
                            "prompt_tokens_details": {"cached_tokens": 0,
                                                      "cache_write_tokens": 0},
                            "completion_tokens_details": {"reasoning_tokens": 0}}


def test_tool_use_body_gives_every_call_with_compact_arguments_ant_n1():
    out = parse("message_tool_use.json")
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "I'll check the weather and the time."
    vendor = json.loads(fixture("message_tool_use.json"))["content"]
    assert choice["message"]["tool_calls"] == [
        {"id": "toolu_01A09q90qw90lq917835lq9", "type": "function",
         "function": {"name": "get_weather", "arguments": json.dumps(
             vendor[1]["input"], ensure_ascii=False, separators=(",", ":"))}},
        {"id": "toolu_01B7kHr2Xw5Jp3Lq8Nm4Vt6Y", "type": "function",
         "function": {"name": "get_time", "arguments": "{}"}}]
    # U-1: cache reads and writes are part of the prompt; the writes and their split by
    # lifetime are kept; service_tier is not a count
    assert out["usage"] == {"prompt_tokens": 472 + 1200 + 3000, "completion_tokens": 91,
                            "total_tokens": 472 + 1200 + 3000 + 91,
                            "prompt_tokens_details": {"cached_tokens": 3000,
                                                      "cache_write_tokens": 1200,
                                                      "ephemeral_5m_input_tokens": 1200,
                                                      "ephemeral_1h_input_tokens": 0},
                            "completion_tokens_details": {"reasoning_tokens": 0}}


def test_thinking_body_gives_reasoning_content_and_keeps_signatures_ant_n1():
    out = parse("message_thinking.json")
    msg = out["choices"][0]["message"]
    assert msg["reasoning_content"] == "The user asks for 17 × 24. 340 + 68 = 408."
    assert msg["content"] == "17 × 24 = **408**."
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"]["completion_tokens_details"] == {"reasoning_tokens": 96}
    assert out["usage"]["prompt_tokens"] == 64
    assert out["usage"]["prompt_tokens_details"] == {"cached_tokens": 16, "cache_write_tokens": 0}
    blocks = out["_exchange"].thinking_blocks
    assert [b["type"] for b in blocks] == ["thinking", "redacted_thinking"]
    assert blocks[0]["signature"].startswith("EqQB")
    assert "EqQB" not in json.dumps(out["choices"])


def message(content: list, stop_reason: Any = "end_turn", **extra: Any) -> bytes:
    return json.dumps({"id": "msg_x", "type": "message", "role": "assistant",
                       "content": content, "stop_reason": stop_reason,
                       "usage": {"input_tokens": 3, "output_tokens": 4}, **extra}).encode()


def test_tool_only_answer_has_null_content_and_empty_answer_empty_string_o_4():
    out = parse(message([{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}],
                        "tool_use"))
    assert out["choices"][0]["message"]["content"] is None
    out = parse(message([]))
    assert out["choices"][0]["message"]["content"] == ""
    assert "tool_calls" not in out["choices"][0]["message"]


def test_server_tool_blocks_and_unknown_blocks_are_not_tool_calls():
    out = parse(message([{"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
                          "input": {"query": "x"}},
                         {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1",
                          "content": []},
                         {"type": "text", "text": "Found."}]))
    assert out["choices"][0]["message"] == {"role": "assistant", "content": "Found.",
                                            "refusal": None}


def test_a_bad_tool_id_is_replaced_by_a_call_id_tc_4():
    out = parse(message([{"type": "tool_use", "id": "x" * 50, "name": "f", "input": {}}]))
    cid = out["choices"][0]["message"]["tool_calls"][0]["id"]
    assert cid.startswith("call_") and len(cid) == 29


@pytest.mark.parametrize("reason, finish", [*FINISH_REASONS.items(), ("brand_new", "stop"),
                                            ("END_TURN", "stop")])
def test_finish_reasons_in_bodies(reason, finish):
    assert parse(message([{"type": "text", "text": "x"}], reason))[
        "choices"][0]["finish_reason"] == finish


def test_missing_stop_reason_with_tools_is_tool_calls():
    out = parse(message([{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}], None))
    assert out["choices"][0]["finish_reason"] == "tool_calls"


def test_error_shaped_2xx_body_is_an_upstream_error_err_4():
    ex = AnthropicExchange(None, make_ctx())  # type: ignore[arg-type]
    with pytest.raises(UpstreamError) as e:
        ex.parse_body(200, (), fixture("error_529.json"))
    err = e.value
    assert (err.kind, err.upstream_status, err.type, err.code) == (
        "status", 529, "server_error", "overloaded_error")


@pytest.mark.parametrize("body", [b"<html>502 Bad Gateway</html>", b"", b"[1,2]",
                                  b'{"id":"msg_x","type":"message"}', b'{"content":[NaN]}'])
def test_unusable_2xx_bodies_are_upstream_errors(body):
    ex = AnthropicExchange(None, make_ctx())  # type: ignore[arg-type]
    with pytest.raises(UpstreamError) as e:
        ex.parse_body(200, (), body)
    assert e.value.kind in ("decode", "protocol")


# == errors (docs/contracts.md, "Error status mapping"; docs/vendor-rules.md, Anthropic) -------


@pytest.mark.parametrize("name, status, client, otype, code", [
    ("error_400.json", 400, 400, "invalid_request_error", "invalid_request_error"),
    ("error_401.json", 401, 401, "authentication_error", "authentication_error"),
    ("error_429.json", 429, 429, "rate_limit_error", "rate_limit_error"),
    ("error_529.json", 529, 502, "server_error", "overloaded_error"),  # issue 11: never a 529
])
def test_error_bodies_map_to_openai_types(name, status, client, otype, code):
    ex = AnthropicExchange(None, make_ctx())  # type: ignore[arg-type]
    headers = (("Retry-After", "17"), ("request-id", "req_1"))
    err = ex.parse_error(status, headers, fixture(name))
    assert isinstance(err, UpstreamError)
    assert (err.kind, err.upstream_status, err.status, err.type, err.code) == (
        "status", status, client, otype, code)
    assert err.message == json.loads(fixture(name))["error"]["message"]
    assert err.headers == (("Retry-After", "17"),)


def test_status_decides_before_the_error_type():
    ex = AnthropicExchange(None, make_ctx())  # type: ignore[arg-type]
    err = ex.parse_error(503, (), fixture("error_400.json"))
    assert (err.type, err.code) == ("server_error", "invalid_request_error")
    err = ex.parse_error(402, (), b'{"type":"error","error":{"type":"billing_error",'
                                  b'"message":"Your credit balance is too low"}}')
    assert (err.type, err.upstream_status) == ("insufficient_quota", 402)


def test_non_anthropic_error_bodies_fall_back_to_text_err_3():
    ex = AnthropicExchange(None, make_ctx())  # type: ignore[arg-type]
    err = ex.parse_error(502, (), b"<html>bad gateway</html>")
    assert (err.type, err.code, err.message) == ("server_error", "502", "<html>bad gateway</html>")


# == streams (docs/vendor-rules.md, ANT-S3) ----------------------------------------------------


def test_text_stream_ant_s():
    items = decode(fixture("text_stream.sse"))
    s = summarize(items)
    assert s["content"] == "Hello, wörld — 日本 🚀 and \u2028 lines end. "
    assert (s["reasoning"], s["tools"], s["finish"]) == ("", [], "stop")
    assert s["end"] == StreamDone({"prompt_tokens": 135, "completion_tokens": 15,
                                   "total_tokens": 150,
                                   "prompt_tokens_details": {"cached_tokens": 100,
                                                             "cache_write_tokens": 10,
                                                             "ephemeral_5m_input_tokens": 10,
                                                             "ephemeral_1h_input_tokens": 0},
                                   "completion_tokens_details": {"reasoning_tokens": 0}})


def test_include_usage_adds_the_usage_chunk_s_5():
    items = decode(fixture("text_stream.sse"), include_usage=True)
    s = summarize(items, include_usage=True)
    assert s["usage"] == s["end"].usage
    assert s["usage"]["prompt_tokens_details"]["cached_tokens"] == 100


#: web_search_stream.sse's usage as the client gets it: message_delta's running totals (U-3)
#: replace message_start's, the server tool requests are kept (U-1)
WEB_SEARCH_STREAM_USAGE = {
    "prompt_tokens": 10682 + 1024, "completion_tokens": 510, "total_tokens": 10682 + 1024 + 510,
    "prompt_tokens_details": {"cached_tokens": 1024, "cache_write_tokens": 0,
                              "ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0},
    "server_tool_use": {"web_search_requests": 1, "web_fetch_requests": 0}}


def test_web_search_stream_reports_every_usage_figure_u_1():
    data = fixture("web_search_stream.sse")
    items = decode(data, include_usage=True)
    s = summarize(items, include_usage=True)
    # the server tool's blocks are Anthropic's business: no tool call, no text of theirs
    assert s["content"] == "Sunny on Saturday, showers on Sunday." and s["tools"] == []
    assert s["finish"] == "stop"
    assert s["usage"] == WEB_SEARCH_STREAM_USAGE and s["end"].usage == WEB_SEARCH_STREAM_USAGE
    byte_by_byte, kind = run([data[i:i + 1] for i in range(len(data))],
                             make_ctx(include_usage=True))
    assert kind is None and byte_by_byte == items  # DEC-1


def test_web_search_body_reports_every_usage_figure_u_1():
    out = parse("message_web_search.json")
    assert out["choices"][0]["message"] == {
        "role": "assistant", "refusal": None,
        "content": "This weekend in Lyon: sunny, 24 °C on Saturday and showers on Sunday."}
    assert out["choices"][0]["finish_reason"] == "stop"
    # a one-hour cache write of 2051 tokens, one web search
    assert out["usage"] == {"prompt_tokens": 10682 + 2051, "completion_tokens": 510,
                            "total_tokens": 10682 + 2051 + 510,
                            "prompt_tokens_details": {"cached_tokens": 0,
                                                      "cache_write_tokens": 2051,
                                                      "ephemeral_5m_input_tokens": 0,
                                                      "ephemeral_1h_input_tokens": 2051},
                            "completion_tokens_details": {"reasoning_tokens": 0},
                            "server_tool_use": {"web_search_requests": 1,
                                                "web_fetch_requests": 0}}


def test_usage_without_cache_fields_has_no_cache_write_u_1():
    out = parse(message([{"type": "text", "text": "ok"}]))
    assert out["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
                            "prompt_tokens_details": {"cached_tokens": 0},
                            "completion_tokens_details": {"reasoning_tokens": 0}}


def test_a_cache_split_without_its_total_gives_the_total_u_1():
    usage = {"input_tokens": 3, "output_tokens": 4,
             "cache_creation": {"ephemeral_5m_input_tokens": 700,
                                "ephemeral_1h_input_tokens": 300}}
    out = parse(json.dumps({"content": [], "usage": usage}).encode())
    assert out["usage"]["prompt_tokens"] == 1003
    assert out["usage"]["prompt_tokens_details"] == {
        "cached_tokens": 0, "cache_write_tokens": 1000, "ephemeral_5m_input_tokens": 700,
        "ephemeral_1h_input_tokens": 300}


def test_usage_counts_are_integers_whatever_the_vendor_wrote_u_4():
    usage = {"input_tokens": 1200.0, "output_tokens": True, "cache_read_input_tokens": -5,
             "cache_creation_input_tokens": 2.5, "service_tier": "priority", "speed": "fast",
             "cache_creation": {"ephemeral_5m_input_tokens": "9", "ephemeral_1h_input_tokens": 0},
             "output_tokens_details": {"thinking_tokens": 64.0},
             "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": None,
                                 "Bad-Key": 1, "code_execution_requests": 3}}
    out = parse(json.dumps({"content": [], "usage": usage}).encode())
    # 2.5 is no count, so the writes are the split's total (0)
    assert out["usage"] == {"prompt_tokens": 1200, "completion_tokens": 0, "total_tokens": 1200,
                            "prompt_tokens_details": {"cached_tokens": 0,
                                                      "cache_write_tokens": 0,
                                                      "ephemeral_1h_input_tokens": 0},
                            "completion_tokens_details": {"reasoning_tokens": 64},
                            "server_tool_use": {"web_search_requests": 2,
                                                "code_execution_requests": 3}}

    def numbers(v: Any) -> list[Any]:
        return [x for w in v.values() for x in numbers(w)] if isinstance(v, dict) else [v]
    assert all(type(n) is int and n >= 0 for n in numbers(out["usage"]))


def test_decoder_usage_attribute_follows_the_stream_u_3():
    dec = AnthropicExchange(None, make_ctx()).stream_decoder()  # type: ignore[arg-type]
    assert dec.usage is None
    dec.feed(sse(START))
    assert dec.usage["completion_tokens"] == 1
    dec.feed(sse(message_delta(None, output_tokens=10), message_delta("end_turn", output_tokens=30,
                                                                      input_tokens=7)))
    assert (dec.usage["prompt_tokens"], dec.usage["completion_tokens"]) == (7, 30)  # not summed


def test_thinking_stream_gives_reasoning_and_keeps_the_signature():
    dec = AnthropicExchange(None, make_ctx()).stream_decoder()  # type: ignore[arg-type]
    items = dec.feed(fixture("thinking_stream.sse")) + dec.close()
    s = summarize(items)
    assert s["reasoning"] == ("The user asks for 17 × 24. 17 × 20 = 340, 17 × 4 = 68; "
                              "340 + 68 = 408.")
    assert s["content"] == "17 × 24 = **408**."
    assert all(b"EqQB" not in it.data for it in items if isinstance(it, StreamChunk))
    assert dec.thinking_blocks == [{"type": "thinking", "thinking": s["reasoning"],
                                    "signature": "EqQBCkgIBBABGAIiQL2nT8mXq9kR4vZ+ZbWc1oJ3sYdLh0a"
                                                 "7fNpQeTgVwXcKsM5uHyD2rF6jA=="}]


def vendor_arguments(data: bytes) -> dict[int, str]:
    """Anthropic block index -> concatenated partial_json, read straight from the fixture."""
    out: dict[int, str] = {}
    for line in data.decode().split("\n"):
        if line.startswith("data: ") and "input_json_delta" in line:
            obj = json.loads(line[6:])
            out[obj["index"]] = out.get(obj["index"], "") + obj["delta"]["partial_json"]
    return out


def test_parallel_tool_stream_indexes_ids_and_exact_arguments_s_3_tc_2():
    data = fixture("tools_stream.sse")
    s = summarize(decode(data))
    assert s["content"] == "I'll check both for you."
    vendor = vendor_arguments(data)
    assert s["tools"] == [
        {"id": "toolu_01FmK2wYdQ8cR4vLp7Xn3TsB", "name": "get_weather",
         "arguments": vendor[1]},
        {"id": "toolu_01Ab9XcVq3LmN7pR2sT5wYz8", "name": "get_local_time",
         "arguments": vendor[2]},
        {"id": "toolu_01Wd3EnNr5QbT8yHc2KfLx4M", "name": "get_date", "arguments": "{}"}]  # TC-3
    assert vendor[1] == '{"city": "Paris", "unit": "celsius"}'
    assert vendor[2] == r'{"timezone": "Europe/Paris", "label": "caf\u00e9 \"noir\""}'
    assert s["finish"] == "tool_calls"
    assert (s["end"].usage["prompt_tokens"], s["end"].usage["completion_tokens"],
            s["end"].usage["total_tokens"]) == (412, 96, 508)


def test_interleaved_tool_blocks_are_routed_by_block_index_ant_s1():
    data = sse(START, block_start(1, type="tool_use", id="toolu_a", name="a", input={}),
               block_start(4, type="tool_use", id="toolu_b", name="b", input={}),
               delta(4, type="input_json_delta", partial_json='{"y":'),
               delta(1, type="input_json_delta", partial_json='{"x":'),
               delta(1, type="input_json_delta", partial_json="1}"),
               delta(4, type="input_json_delta", partial_json="2}"),
               block_stop(4), block_stop(1), message_delta("tool_use", output_tokens=9), STOP)
    s = summarize(decode(data))
    assert [(t["id"], t["arguments"]) for t in s["tools"]] == [("toolu_a", '{"x":1}'),
                                                              ("toolu_b", '{"y":2}')]


def test_error_event_mid_stream_fails_the_stream_and_ends_it_dec_4():
    items = decode(fixture("error_stream.sse"))
    s = summarize(items)
    assert s["content"] == "Partial ans"
    assert isinstance(s["end"], StreamFailed)
    err = s["end"].error
    assert (err.kind, err.upstream_status, err.type, err.code, err.message) == (
        "status", 529, "server_error", "overloaded_error", "Overloaded")


@pytest.mark.parametrize("etype, status, otype", [
    ("api_error", 500, "server_error"), ("rate_limit_error", 429, "rate_limit_error"),
    ("invalid_request_error", 400, "invalid_request_error"), ("mystery", 500, "server_error")])
def test_error_event_types_map_to_statuses(etype, status, otype):
    items = decode(sse(START, {"type": "error", "error": {"type": etype, "message": "m"}}))
    err = items[-1].error
    assert (err.upstream_status, err.type, err.code) == (status, otype, etype)


def test_cut_stream_is_truncated_dec_5():
    items = decode(fixture("cut_stream.sse"))
    s = summarize(items)
    assert s["content"] == "This answer will be cut "
    assert isinstance(s["end"], StreamFailed) and s["end"].error.kind == "truncated"


def test_stream_of_whole_events_without_message_stop_is_truncated_dec_5():
    items = decode(sse(START, message_delta("end_turn", output_tokens=3)))
    assert isinstance(items[-1], StreamFailed) and items[-1].error.kind == "truncated"
    items = decode(b"")
    assert len(items) == 1 and items[0].error.kind == "truncated"


def test_everything_after_message_stop_is_ignored_dec_4():
    data = fixture("text_stream.sse") + b"data: {broken\n\n\xff\xfe garbage\npartial"
    assert comparable(decode(data)) == comparable(decode(fixture("text_stream.sse")))


@pytest.mark.parametrize("bad", [b"data: {not json}\n\n", b"data: [1,2]\n\n",
                                 b'data: {"type":"ping","x":NaN}\n\n', b"data: \xff\n\n"])
def test_malformed_events_raise_decode_error_dec_2(bad):
    items, kind = run([sse(START) + bad])
    assert kind in ("invalid_json", "invalid_utf8")
    assert items == []  # the role chunk waits for content, so nothing came out before the error


def test_decode_error_is_sticky_and_feed_after_close_raises():
    dec = AnthropicExchange(None, make_ctx()).stream_decoder()  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        dec.feed(b"data: nope\n\n")
    with pytest.raises(DecodeError):
        dec.feed(sse(START))
    dec = AnthropicExchange(None, make_ctx()).stream_decoder()  # type: ignore[arg-type]
    dec.feed(fixture("text_stream.sse"))
    assert dec.close() == []
    with pytest.raises(DecodeError) as e:
        dec.feed(b"")
    assert e.value.kind == "closed"


def test_unknown_events_pings_and_empty_deltas_produce_nothing_s_7():
    data = sse(START, {"type": "ping"}, {"type": "vertex_event", "x": 1},
               block_start(0, type="text", text=""), delta(0, type="text_delta", text=""),
               delta(0, type="citations_delta", citation={}), block_stop(0),
               block_start(1, type="server_tool_use", id="srvtoolu_1", name="web_search"),
               block_stop(1), message_delta("end_turn", output_tokens=1), STOP)
    items = decode(data)
    assert len(items) == 3  # role, finish, done
    assert summarize(items)["content"] == ""


def test_content_before_message_start_still_starts_with_the_role_chunk_s_1():
    items = decode(sse(block_start(0, type="text", text="Hi"), message_delta("end_turn"), STOP))
    assert summarize(items)["content"] == "Hi"


def test_last_stop_reason_wins_and_usage_is_not_summed_ant_s3_u_3():
    items = decode(sse(START, block_start(0, type="text", text="x"),
                       message_delta("tool_use", output_tokens=5),
                       message_delta("max_tokens", output_tokens=8), STOP))
    s = summarize(items)
    assert s["finish"] == "length" and s["end"].usage["completion_tokens"] == 8


@pytest.mark.parametrize("reason, finish", [*FINISH_REASONS.items(), (None, "stop")])
def test_finish_reasons_in_streams(reason, finish):
    items = decode(sse(START, message_delta(reason, output_tokens=1), STOP))
    assert summarize(items)["finish"] == finish


def test_event_name_and_json_type_disagreeing_trusts_the_json_sse_11():
    data = b'event: ping\ndata: {"type":"message_start","message":{}}\n\n' + sse(STOP)
    assert len(decode(data)) == 3


# -- split invariance (DEC-1) and error hygiene (DEC-2), by property --


def framings(data: bytes) -> list[bytes]:
    return [data, data.replace(b"\n", b"\r\n"), data.replace(b"\n", b"\r")]


@pytest.mark.parametrize("name", STREAMS)
def test_one_byte_feeds_equal_whole_feeds_for_every_fixture_dec_1(name):
    for data in framings(fixture(name)):
        whole = comparable(run([data])[0])
        assert comparable(run([data[i:i + 1] for i in range(len(data))])[0]) == whole


@pytest.mark.parametrize("name", STREAMS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_split_of_a_fixture_gives_identical_items_dec_1(name, data):
    payload = data.draw(st.sampled_from(framings(fixture(name))))
    positions = data.draw(st.lists(st.integers(0, len(payload)), max_size=30))
    assert comparable(run(cut(payload, positions))[0]) == comparable(run([payload])[0])


def test_crlf_framing_decodes_like_lf():
    for name in STREAMS:
        lf, crlf, cr = (comparable(run([d])[0]) for d in framings(fixture(name)))
        assert lf == crlf == cr


def mutated() -> st.SearchStrategy[bytes]:
    """Fixtures with a slice replaced by arbitrary bytes, and plain arbitrary bytes."""
    @st.composite
    def mutate(draw):
        data = fixture(draw(st.sampled_from(STREAMS)))
        a = draw(st.integers(0, len(data)))
        b = draw(st.integers(a, min(len(data), a + 40)))
        return data[:a] + draw(st.binary(max_size=20)) + data[b:]
    return st.one_of(st.binary(max_size=300), mutate())


@settings(max_examples=150, deadline=None)
@given(payload=mutated(), data=st.data())
def test_arbitrary_bytes_raise_only_decode_error_and_split_alike_dec_1_dec_2(payload, data):
    positions = data.draw(st.lists(st.integers(0, len(payload)), max_size=10))
    whole_items, whole_kind = run([payload])  # anything but DecodeError fails the test
    items, kind = run(cut(payload, positions))
    assert kind == whole_kind
    assert comparable(items) == comparable(whole_items)


JSON_LEAVES = (st.none() | st.booleans() | st.integers(-10**12, 10**12)
               | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda c: st.lists(c, max_size=3)
                           | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=10)


@settings(max_examples=80, deadline=None)
@given(obj=st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=4),
       ascii_only=st.booleans(), data=st.data())
def test_assembled_tool_arguments_equal_the_vendor_input_json_tc_2(obj, ascii_only, data):
    text = json.dumps(obj, ensure_ascii=ascii_only)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=12)))
    bounds = [0, *cuts, len(text)]
    fragments = ["", *(text[a:b] for a, b in zip(bounds, bounds[1:]))]
    wire = sse(START, block_start(0, type="text", text="t"),
               block_start(1, type="tool_use", id="toolu_x", name="f", input={}),
               *[delta(1, type="input_json_delta", partial_json=f) for f in fragments],
               block_stop(1), message_delta("tool_use", output_tokens=1), STOP)
    positions = data.draw(st.lists(st.integers(0, len(wire)), max_size=12))
    items, kind = run(cut(wire, positions))
    assert kind is None
    (call_,) = summarize(items)["tools"]
    assert call_["arguments"] == (text or "{}")
    assert json.loads(call_["arguments"]) == obj


# -- request builder robustness, by property --


ROLES = st.sampled_from(["system", "developer", "user", "assistant", "tool", "function", 3])
PARTS = st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "refusal", "x"])},
                              optional={"text": JSON_LEAVES, "image_url": JSON_VALUES,
                                        "cache_control": JSON_VALUES})
MESSAGES = st.lists(st.fixed_dictionaries(
    {"role": ROLES},
    optional={"content": st.one_of(JSON_LEAVES, st.lists(PARTS | JSON_LEAVES, max_size=3)),
              "tool_calls": st.lists(st.fixed_dictionaries(
                  {"id": st.sampled_from(["c1", "c.2", "toolu_3"]) | JSON_LEAVES,
                   "function": st.fixed_dictionaries(
                       {"name": st.sampled_from(["f", "g h"]) | JSON_LEAVES},
                       optional={"arguments": st.sampled_from(["", "{}", '{"a":1}', "[]"])
                                 | JSON_VALUES})}), max_size=2),
              "tool_call_id": st.sampled_from(["c1", "c.2", "toolu_3"]) | JSON_LEAVES,
              "thinking_blocks": JSON_VALUES, "cache_control": JSON_VALUES}),
    min_size=1, max_size=5)


@settings(max_examples=200, deadline=None)
@given(messages=MESSAGES,
       fields=st.dictionaries(st.sampled_from(sorted(MAPPED - {"model", "messages"})),
                              JSON_VALUES, max_size=4),
       alias=st.sampled_from(["claude", "claude-think", "claude-think-2000"]))
def test_arbitrary_requests_give_an_exchange_or_a_client_error(messages, fields, alias):
    ctx = make_ctx(client_model=alias)
    try:
        ex = build_exchange({"model": alias, "messages": messages, **fields}, ctx)
    except (ClientError, ImagesNeeded):
        return
    body = json.loads(ex.request.body)
    turns = body["messages"]
    assert turns and turns[0]["role"] == "user"
    assert all(a["role"] != b["role"] for a, b in zip(turns, turns[1:]))  # ANT-R4
    for t in turns:
        assert t["content"]
        assert all(b.get("text") != "" for b in t["content"])  # ANT-R3
    assert set(body) <= {"model", "max_tokens", "system", "messages", "stop_sequences",
                         "temperature", "top_p", "top_k", "tools", "tool_choice", "thinking",
                         "metadata", "stream"}


def test_thinking_switched_off_for_a_tool_turn_keeps_the_default_max_tokens():
    body = build(tool_turn(), ctx=think_ctx("c-think-9000"), tools=[tool()])
    assert "thinking" not in body and body["max_tokens"] == 4096


def test_fixtures_validate_against_the_anthropic_sdk_types():
    """The hand-written fixtures have the SDK's shapes (``anthropic`` is in the test extra)."""
    from anthropic.types import Message, RawMessageStreamEvent
    from anthropic.types.shared import ErrorResponse
    from pydantic import TypeAdapter

    for name in ("message_text.json", "message_tool_use.json", "message_thinking.json"):
        Message.model_validate_json(fixture(name))
    for name in ("error_400.json", "error_401.json", "error_429.json", "error_529.json"):
        ErrorResponse.model_validate_json(fixture(name))
    events = TypeAdapter(RawMessageStreamEvent)
    for name in STREAMS:
        for line in fixture(name).decode().split("\n"):
            if line.startswith("data: ") and line.endswith("}"):
                obj = json.loads(line[6:])
                if obj["type"] == "error":
                    ErrorResponse.model_validate(obj)
                elif obj["type"] != "ping":
                    events.validate_python(obj)


def test_reasoning_content_with_a_signature_is_replayed_as_thinking_ant_k4():
    body = build(tool_turn(reasoning_content="Need weather.", reasoning_signature="EqQBsig"),
                 ctx=think_ctx("c-think"), tools=[tool()])
    assert body["messages"][1]["content"][0] == {"type": "thinking", "thinking": "Need weather.",
                                                 "signature": "EqQBsig"}
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 4096}
