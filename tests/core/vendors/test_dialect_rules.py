"""The dialect normalizer's rules one by one (uniapi_core/vendors/dialects.py): tool-call
numbering, content lists, reasoning fields, think tags, usage, finish reasons, and which
dialect a provider gets. The realistic per-host streams are in test_dialects.py."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uniapi_core.config.load import DIALECTS as CONFIG_DIALECTS
from uniapi_core.config.model import Provider, ProviderPreferences
from uniapi_core.vendors.base import StreamChunk, StreamDone, StreamFailed
from uniapi_core.vendors.dialects import (
    DIALECTS,
    GENERIC,
    ChunkNormalizer,
    ThinkSplitter,
    dialect_for,
    map_finish,
    normalize_body,
    normalize_usage,
)
from uniapi_core.vendors.openai import OpenAIStreamDecoder


def chunk(delta: dict[str, Any] | None = None, finish: Any = None, **extra: Any) -> dict[str, Any]:
    obj = {"id": "x", "object": "chat.completion.chunk", "created": 5, "model": "m",
           "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}]}
    obj.update(extra)
    return obj


def calls_of(objs: list[dict[str, Any]], think: bool = False) -> list[list[dict[str, Any]]]:
    norm = ChunkNormalizer(GENERIC, think_tags=think)
    out = []
    for obj in objs:
        norm.chunk(obj)
        out.append(obj["choices"][0]["delta"].get("tool_calls", []))
    return out


def assemble(objs: list[dict[str, Any]]) -> dict[int, dict[str, str]]:
    calls: dict[int, dict[str, str]] = {}
    for deltas in calls_of(objs):
        for tc in deltas:
            if tc["index"] not in calls:
                calls[tc["index"]] = {"id": tc["id"], "name": "", "arguments": ""}
            call = calls[tc["index"]]
            call["name"] += tc.get("function", {}).get("name", "")
            call["arguments"] += tc.get("function", {}).get("arguments", "")
    return calls


def tc(**kw: Any) -> dict[str, Any]:
    fn = {k: kw.pop(k) for k in ("name", "arguments") if k in kw}
    return {**kw, "function": fn}


# -- tool-call indexes -----------------------------------------------------------------------

def test_mistral_calls_without_index_are_numbered_by_first_appearance_ids_kept():
    got = assemble([chunk({"tool_calls": [tc(id="a1", name="f", arguments='{"x":1}')]}),
                    chunk({"tool_calls": [tc(id="b2", name="g", arguments='{"y":2}')]})])
    assert got == {0: {"id": "a1", "name": "f", "arguments": '{"x":1}'},
                   1: {"id": "b2", "name": "g", "arguments": '{"y":2}'}}


def test_restarting_indexes_with_new_ids_are_new_calls():
    got = assemble([chunk({"tool_calls": [tc(index=0, id="a", name="f", arguments="{")]}),
                    chunk({"tool_calls": [tc(index=0, arguments="}")]}),
                    chunk({"tool_calls": [tc(index=0, id="b", name="g", arguments="{")]}),
                    chunk({"tool_calls": [tc(index=0, arguments="}")]})])
    assert got == {0: {"id": "a", "name": "f", "arguments": "{}"},
                   1: {"id": "b", "name": "g", "arguments": "{}"}}


def test_indexes_starting_at_one_start_at_zero():
    got = assemble([chunk({"tool_calls": [tc(index=1, id="a", name="f", arguments="")]}),
                    chunk({"tool_calls": [tc(index=1, arguments="{}")]}),
                    chunk({"tool_calls": [tc(index=2, id="b", name="g", arguments="{}")]})])
    assert sorted(got) == [0, 1] and got[0]["arguments"] == "{}" and got[1]["name"] == "g"


def test_pieces_with_neither_index_nor_id_continue_the_current_call():
    got = assemble([chunk({"tool_calls": [tc(id="a", name="f", arguments='{"q":')]}),
                    chunk({"tool_calls": [tc(arguments='"v"}')]})])
    assert got == {0: {"id": "a", "name": "f", "arguments": '{"q":"v"}'}}


def test_a_call_without_id_gets_one_and_the_same_on_every_split():
    objs = [chunk({"tool_calls": [tc(name="f", arguments={"a": 1})]})]
    (deltas,) = calls_of(objs)
    (call,) = deltas
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"] == {"name": "f", "arguments": '{"a":1}'}
    assert calls_of([chunk({"tool_calls": [tc(name="f", arguments={"a": 1})]})])[0][0]["id"] \
        == call["id"]


def test_openai_shaped_calls_are_left_as_they_came():
    norm = ChunkNormalizer(DIALECTS["openai"])
    first = chunk({"tool_calls": [{"index": 0, "id": "c", "type": "function",
                                   "function": {"name": "f", "arguments": ""}}]})
    assert norm.chunk(first) is False
    assert norm.chunk(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]})) \
        is False


# -- content and reasoning -------------------------------------------------------------------

def test_mistral_content_list_is_flattened_and_thinking_becomes_reasoning():
    obj = chunk({"role": "assistant", "content": [
        {"type": "thinking", "thinking": [{"type": "text", "text": "hmm "}, {"type": "text",
                                                                             "text": "ok"}]},
        {"type": "text", "text": "Answer"}]})
    norm = ChunkNormalizer(DIALECTS["mistral"])
    assert norm.chunk(obj) is True
    assert obj["choices"][0]["delta"] == {"role": "assistant", "content": "Answer",
                                          "reasoning_content": "hmm ok"}


def test_a_thinking_only_list_leaves_no_content_key():
    obj = chunk({"content": [{"type": "thinking", "thinking": "t"}]})
    ChunkNormalizer().chunk(obj)
    assert obj["choices"][0]["delta"] == {"reasoning_content": "t"}


@pytest.mark.parametrize("delta, reasoning", [
    ({"reasoning": "r"}, "r"),  # Groq, Cerebras, Ollama, vLLM
    ({"reasoning": "r", "reasoning_details": [{"type": "reasoning.text", "text": "r"}]}, "r"),
    ({"reasoning_details": [{"type": "reasoning.summary", "summary": "s"},
                            {"type": "reasoning.encrypted", "data": "zz"}]}, "s"),
    ({"reasoning_content": "d", "reasoning": "d"}, "d"),  # never doubled
])
def test_reasoning_field_names_become_reasoning_content(delta, reasoning):
    obj = chunk(dict(delta))
    ChunkNormalizer().chunk(obj)
    out = obj["choices"][0]["delta"]
    assert out["reasoning_content"] == reasoning and "reasoning" not in out


def test_reasoning_content_as_sent_by_deepseek_is_untouched():
    obj = chunk({"reasoning_content": "r", "content": None})
    assert ChunkNormalizer(DIALECTS["deepseek"]).chunk(obj) is False


# -- think tags ------------------------------------------------------------------------------

def _split_all(pieces: list[str]) -> tuple[str, str]:
    sp = ThinkSplitter()
    r = c = ""
    for p in pieces:
        a, b = sp.feed(p)
        r, c = r + a, c + b
    a, b = sp.flush()
    return r + a, c + b


@pytest.mark.parametrize("text, want", [
    ("<think>why</think>\n\nAnswer", ("why", "Answer")),
    ("  <think>a</think>b", ("a", "b")),
    ("no tags <think>x</think>", ("", "no tags <think>x</think>")),  # only a leading block
    ("<think>unfinished", ("unfinished", "")),
    ("<thi", ("", "<thi")),
    ("", ("", "")),
])
def test_think_splitter_examples(text, want):
    assert _split_all([text]) == want


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="<>/thinkab \n", max_size=40), st.data())
def test_think_splitter_is_split_invariant(text, data):
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
    bounds = [0, *cuts, len(text)]
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    assert _split_all(pieces) == _split_all([text])


def test_think_tags_in_a_stream_split_across_chunks():
    wire = "".join(f"data: {json.dumps(chunk({'content': p}))}\n\n"
                   for p in ["<thi", "nk>plan", " more</th", "ink>\n\nHi", " there"])
    wire += f"data: {json.dumps(chunk(finish='stop'))}\n\ndata: [DONE]\n\n"
    dec = OpenAIStreamDecoder("m", DIALECTS["vllm"])
    items = dec.feed(wire.encode()) + dec.close()
    reasoning = content = ""
    for item in items:
        if isinstance(item, StreamChunk):
            delta = json.loads(item.data[6:])["choices"][0]["delta"]
            reasoning += delta.get("reasoning_content") or ""
            content += delta.get("content") or ""
    assert (reasoning, content) == ("plan more", "Hi there")


def test_think_tags_off_by_default_for_openai_and_overridable():
    assert not DIALECTS["openai"].think_tags and DIALECTS["vllm"].think_tags
    obj = chunk({"content": "<think>x</think>y"})
    ChunkNormalizer(DIALECTS["vllm"], think_tags=False).chunk(obj)
    assert obj["choices"][0]["delta"] == {"content": "<think>x</think>y"}


# -- usage -----------------------------------------------------------------------------------

def test_deepseek_cache_hits_become_cached_tokens():
    u = normalize_usage({"prompt_tokens": 90, "completion_tokens": 10, "total_tokens": 100,
                         "prompt_cache_hit_tokens": 64, "prompt_cache_miss_tokens": 26})
    assert u["prompt_tokens_details"] == {"cached_tokens": 64}
    assert u["prompt_cache_miss_tokens"] == 26


def test_usage_keeps_counts_only_and_fills_the_total():
    u = normalize_usage({"prompt_tokens": 3, "completion_tokens": 4.0, "queue_time": 0.02,
                         "cost": 0.0012, "is_byok": False, "model": "x", "neg": -1,
                         "completion_tokens_details": {"reasoning_tokens": 2}})
    assert u == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
                 "completion_tokens_details": {"reasoning_tokens": 2}}


def test_usage_already_in_openai_shape_is_the_same_object():
    u = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
         "prompt_tokens_details": {"cached_tokens": 1}}
    assert normalize_usage(u) is u
    assert normalize_usage({"prompt_tokens": 3, "total_tokens": 3, "x": True}) == {
        "prompt_tokens": 3, "total_tokens": 3}


def test_groq_usage_in_x_groq_moves_to_usage():
    obj = chunk(finish="stop", x_groq={"id": "req_1", "usage": {
        "prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7, "total_time": 0.1}})
    norm = ChunkNormalizer(DIALECTS["groq"])
    assert norm.chunk(obj) is True
    assert obj["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    assert norm.usage == obj["usage"]


# -- finish reasons --------------------------------------------------------------------------

@pytest.mark.parametrize("raw, calls, want", [
    ("stop", False, "stop"), ("eos", False, "stop"), ("model_length", False, "length"),
    ("MAX_TOKENS", False, "length"), ("tool_use", False, "tool_calls"),
    ("stop", True, "tool_calls"), ("weird", False, "stop"), (7, False, "stop"),
    (["stop"], False, "stop"), ({"a": 1}, True, "tool_calls"), (None, False, "stop"),
    ("content_filter", True, "content_filter"),
])
def test_finish_reasons_are_mapped(raw, calls, want):
    assert map_finish(raw, calls) == want


def test_only_the_first_finish_counts_and_nothing_follows_it():
    norm = ChunkNormalizer()
    first, again = chunk({"content": "a"}, finish="stop"), chunk({"content": "b"}, finish="stop")
    norm.chunk(first)
    norm.chunk(again)
    assert again["choices"] == [{"index": 0, "delta": {}, "finish_reason": None}]


def test_a_stream_without_a_finish_gets_one_before_done():
    wire = f"data: {json.dumps(chunk({'content': 'hi'}))}\n\ndata: [DONE]\n\n".encode()
    dec = OpenAIStreamDecoder("m")
    items = dec.feed(wire) + dec.close()
    assert isinstance(items[-1], StreamDone)
    last = json.loads(items[-2].data[6:])
    assert last["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert (last["id"], last["created"]) == ("x", 5)


def test_finish_reason_error_fails_the_stream():
    wire = f"data: {json.dumps(chunk({'content': 'a'}, finish='error'))}\n\n".encode()
    dec = OpenAIStreamDecoder("m", DIALECTS["mistral"])
    items = dec.feed(wire)
    assert isinstance(items[-1], StreamFailed) and items[-1].error.kind == "truncated"


# -- whole bodies ----------------------------------------------------------------------------

def test_body_normalization_matches_the_stream_rules():
    body = {"id": "r", "object": "chat.completion", "model": "m", "choices": [{
        "index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "reasoning": "why",
                    "content": [{"type": "text", "text": "A"}],
                    "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "prompt_cache_hit_tokens": 1}}
    assert normalize_body(body) is True
    msg = body["choices"][0]["message"]
    assert msg["content"] == "A" and msg["reasoning_content"] == "why" and "reasoning" not in msg
    (call,) = msg["tool_calls"]
    assert call["id"].startswith("call_") and call["function"]["arguments"] == '{"a":1}'
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 1}
    assert body["usage"]["total_tokens"] == 3


def test_an_openai_body_is_unchanged():
    body = {"id": "r", "object": "chat.completion", "model": "m", "choices": [{
        "index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "A"}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}
    assert normalize_body(body, DIALECTS["openai"]) is False


# -- which dialect ---------------------------------------------------------------------------

@pytest.mark.parametrize("url, engine, name", [
    ("https://api.openai.com/v1/chat/completions", None, "openai"),
    ("https://api.mistral.ai/v1/chat/completions", None, "mistral"),
    ("https://api.groq.com/openai/v1/chat/completions", None, "groq"),
    ("https://api.deepseek.com/chat/completions", None, "deepseek"),
    ("https://api.x.ai/v1/chat/completions", None, "xai"),
    ("https://openrouter.ai/api/v1/chat/completions", None, "openrouter"),
    ("https://api.together.xyz/v1/chat/completions", None, "together"),
    ("https://api.fireworks.ai/inference/v1/chat/completions", None, "fireworks"),
    ("https://api.cerebras.ai/v1/chat/completions", None, "cerebras"),
    ("https://api.siliconflow.cn/v1/chat/completions", None, "siliconflow"),
    ("http://localhost:11434/v1/chat/completions", None, "ollama"),
    ("http://127.0.0.1:8000/v1/chat/completions", None, "vllm"),
    ("http://localhost:1234/v1/chat/completions", None, "lmstudio"),
    ("https://my.openai.azure.com/openai/deployments/x", "azure", "azure"),
    ("https://gateway.example/v1", "openrouter", "openrouter"),
    ("https://gateway.example/v1", None, "generic"),
    ("http://[::1", None, "generic"),
])
def test_dialect_from_engine_and_base_url(url, engine, name):
    assert dialect_for(Provider(provider="p", base_url=url, engine=engine)).name == name


def test_the_preference_overrides_the_url():
    prefs = ProviderPreferences(dialect="mistral")
    p = Provider(provider="p", base_url="https://api.openai.com/v1", preferences=prefs)
    assert dialect_for(p).name == "mistral"


def test_config_accepts_exactly_the_dialects():
    assert set(CONFIG_DIALECTS) == set(DIALECTS) | {"generic"}


# -- odd input, found by a structure-aware generator against the validator --------------------

def _stream(*events: str) -> list[Any]:
    dec = OpenAIStreamDecoder("m")
    wire = "".join(f"data: {e}\n\n" for e in events).encode()
    return dec.feed(wire) + dec.close()


def test_integral_floats_in_usage_become_ints_on_the_wire():
    items = _stream('{"usage": {"prompt_tokens": 1.0, "cost": 0.0}}', "[DONE]")
    sent = [json.loads(i.data[6:]) for i in items if isinstance(i, StreamChunk)]
    assert sent[0]["usage"] == {"prompt_tokens": 1, "cost": 0}
    assert type(sent[0]["usage"]["prompt_tokens"]) is int


def test_usage_with_objects_for_counts_does_not_crash():
    items = _stream('{"usage": {"prompt_tokens": {}, "completion_tokens": 0}}', "[DONE]")
    assert isinstance(items[-1], StreamDone)
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": {"a": 1}, "completion_tokens": 1}}
    normalize_body(body)
    assert "total_tokens" not in body["usage"]


@pytest.mark.parametrize("body, check", [
    ({"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}]},
     lambda b: b["choices"][0]["finish_reason"] == "stop"),
    ({"choices": [{"index": -1, "message": {"content": "hi"}, "finish_reason": "stop"}]},
     lambda b: b["choices"][0]["index"] == 0),
    ({"choices": [False, {"message": {"content": "a"}, "finish_reason": "stop"}]},
     lambda b: len(b["choices"]) == 1 and b["choices"][0]["index"] == 0),
    ({"choices": [{"message": {"content": "a"}}], "usage": [1]},
     lambda b: b["usage"] is None),
    ({"choices": [{"message": {"content": "a"}}], "usage": {"prompt_tokens": 1.0}},
     lambda b: type(b["usage"]["prompt_tokens"]) is int),
])
def test_odd_whole_bodies_come_out_clean(body, check):
    assert normalize_body(body) is True
    assert check(body)


def test_a_body_whose_choices_are_all_junk_is_an_empty_answer():
    from uniapi_core.errors import UpstreamError
    from uniapi_core.vendors.base import ChatContext
    from uniapi_core.vendors.openai import build_exchange

    ctx = ChatContext(client_model="m", upstream_model="m",
                      provider=Provider(provider="p", base_url="https://h/v1"), api_key="k",
                      stream=False, include_usage=False, response_id="x", created=0)
    ex = build_exchange({"model": "m", "messages": []}, ctx)
    with pytest.raises(UpstreamError) as err:
        ex.parse_body(200, (), b'{"choices":[false]}')
    assert err.value.kind == "empty"


# -- any chunk-shaped input comes out as a clean stream ----------------------------------------

_scalar = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(-2, 2),
                    st.sampled_from(["", "x", "stop", "eos", "error", "tool_calls"]))


def _mostly(good: Any, junk: Any = _scalar) -> Any:
    """``good`` three times in four, else ``junk``: plausible shapes, with odd ones among."""
    return st.one_of(good, good, good, junk)


_text = _mostly(st.one_of(st.text(alphabet="ab<>/thinkx ", max_size=12), st.none(),
                          st.lists(st.one_of(
                              st.fixed_dictionaries({"type": st.just("text"),
                                                     "text": st.text(max_size=4)}),
                              st.fixed_dictionaries({"type": st.just("thinking"),
                                                     "thinking": st.text(max_size=4)}),
                              _scalar), max_size=3)))
_call = st.fixed_dictionaries({}, optional={
    "index": _mostly(st.integers(-1, 3)), "id": _mostly(st.sampled_from(["a", "b", ""])),
    "type": st.just("function"),
    "function": _mostly(st.fixed_dictionaries({}, optional={
        "name": _mostly(st.sampled_from(["f", "g", ""])),
        "arguments": _mostly(st.one_of(st.text(max_size=4), st.just({"a": 1})))}))})
_delta = _mostly(st.fixed_dictionaries({}, optional={
    "role": st.just("assistant"), "content": _text, "reasoning": _text,
    "reasoning_content": _text, "refusal": _text,
    "reasoning_details": st.lists(st.fixed_dictionaries({"type": st.just("reasoning.text"),
                                                         "text": st.text(max_size=3)}),
                                  max_size=2),
    "tool_calls": _mostly(st.lists(_mostly(_call), max_size=3))}))
_usage = _mostly(st.dictionaries(
    st.sampled_from(["prompt_tokens", "completion_tokens", "total_tokens", "cost",
                     "prompt_cache_hit_tokens", "prompt_tokens_details", "reasoning_tokens"]),
    _mostly(st.one_of(st.integers(0, 9), st.dictionaries(
        st.sampled_from(["cached_tokens", "x"]), _mostly(st.integers(0, 9)), max_size=2))),
    max_size=4))
_choice = _mostly(st.fixed_dictionaries({}, optional={
    "index": _mostly(st.integers(-1, 2)), "delta": _delta, "text": _text,
    "finish_reason": st.one_of(st.none(), st.none(), _scalar)}))
_chunk = st.fixed_dictionaries({"choices": _mostly(st.lists(_choice, max_size=2))}, optional={
    "id": _mostly(st.just("r")), "created": _scalar, "object": _scalar, "model": _scalar,
    "usage": _usage, "x_groq": st.fixed_dictionaries({"usage": _usage})})


@settings(max_examples=400, deadline=None)
@given(chunks=st.lists(_chunk, max_size=6), done=st.booleans())
def test_any_chunk_shaped_input_reaches_the_client_as_a_clean_stream(chunks, done):
    """The normalizer's promise: whatever an OpenAI-compatible host sends, the client gets a
    stream that passes streams.check (the fuzz oracle's relay framing)."""
    from fuzz._oracle import client_problems

    events = [json.dumps(c) for c in chunks] + (["[DONE]"] if done else [])
    dec = OpenAIStreamDecoder("m")
    wire = "".join(f"data: {e}\n\n" for e in events).encode()
    items = dec.feed(wire) + dec.close()
    assert client_problems(items) == []


@settings(max_examples=300, deadline=None)
@given(choices=st.lists(st.one_of(_scalar, st.fixed_dictionaries({}, optional={
    "index": _mostly(st.integers(-1, 2)), "finish_reason": _scalar,
    "message": _mostly(st.fixed_dictionaries({}, optional={
        "content": _text, "reasoning": _text,
        "tool_calls": _mostly(st.lists(_mostly(_call), max_size=2))}))})),
    min_size=1, max_size=2), usage=_usage)
def test_any_body_shaped_input_reaches_the_client_clean(choices, usage):
    from uniapi_core.errors import UpstreamError
    from uniapi_core.streams import check_chat_body
    from uniapi_core.vendors.base import ChatContext
    from uniapi_core.vendors.openai import build_exchange

    ctx = ChatContext(client_model="m", upstream_model="m",
                      provider=Provider(provider="p", base_url="https://h/v1"), api_key="k",
                      stream=False, include_usage=False, response_id="x", created=0)
    ex = build_exchange({"model": "m", "messages": []}, ctx)
    body = json.dumps({"id": "r", "choices": choices, "usage": usage}).encode()
    try:
        out = ex.parse_body(200, (), body)
    except UpstreamError as err:
        assert err.kind == "empty"
        return
    assert check_chat_body(json.loads(out)) == []
