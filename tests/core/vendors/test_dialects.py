"""The OpenAI-compatible dialects (issue 18), one recorded-style fixture per host family in
tests/data/dialects (its README says which vendor docs each was written from).

For every stream fixture the decoder is built as the gateway builds it (the provider's real
``base_url`` picks the dialect); the items must not depend on how the bytes are cut (DEC-1),
the client bytes must pass ``check_chat_stream``, and the openai SDK's own stream accumulator
must assemble the answer the fixture's ``.expected.json`` states: content as one string,
reasoning in ``reasoning_content`` whatever field the host used, tool calls numbered 0, 1, …
with their ids, a finish reason from OpenAI's set, usage with counts only. Whole bodies go
through the exchange's ``parse_body`` and must give the same.
"""

from __future__ import annotations

import json
import random
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai import LengthFinishReasonError
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from uniapi_core.config.model import Provider, ProviderPreferences
from uniapi_core.errors import DecodeError
from uniapi_core.streams import DONE, SSEDecoder
from uniapi_core.streams.check import check_chat_body, check_chat_stream
from uniapi_core.vendors import TRANSLATORS, detect_engine
from uniapi_core.vendors.base import ChatContext, StreamChunk, StreamDone, StreamFailed
from uniapi_core.vendors.dialects import DIALECTS, dialect_for

DATA = Path(__file__).resolve().parents[2] / "data" / "dialects"

#: each dialect's real base URL (the local servers at their default ports; llama.cpp's
#: llama-server, on 8080, is the host no dialect names)
BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "azure": "https://contoso-eastus2.openai.azure.com",
    "deepseek": "https://api.deepseek.com",
    "xai": "https://api.x.ai/v1",
    "groq": "https://api.groq.com/openai/v1",
    "mistral": "https://api.mistral.ai/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "together": "https://api.together.xyz/v1",
    "fireworks": "https://api.fireworks.ai/inference/v1",
    "cerebras": "https://api.cerebras.ai/v1",
    "siliconflow": "https://api.siliconflow.cn/v1",
    "ollama": "http://localhost:11434/v1",
    "vllm": "http://localhost:8000/v1",
    "lmstudio": "http://localhost:1234/v1",
    "generic": "http://localhost:8080/v1",
}

#: the cases whose host leaves ``<think>…</think>`` in the content: run with ``think_tags: true``
THINK_TAGS = {"together", "fireworks", "vllm_think", "lmstudio"}

STREAMS = sorted(p.name[: -len("_stream.sse")] for p in DATA.glob("*_stream.sse"))
BODIES = sorted(p.name[: -len("_body.json")] for p in DATA.glob("*_body.json"))
CLIENT_MODEL = "m"


def dialect_of(case: str) -> str:
    """``mistral_thinking`` -> ``mistral``: a case is its dialect, maybe with a suffix."""
    return case.split("_")[0]


def provider(case: str) -> Provider:
    prefs = ProviderPreferences(think_tags=True) if case in THINK_TAGS else ProviderPreferences()
    return Provider(provider="p", base_url=BASE_URLS[dialect_of(case)], api=("sk-up",),
                    preferences=prefs)


def exchange(case: str, *, stream: bool) -> Any:
    """The exchange the gateway would build for this provider: its engine's translator, with
    the provider's dialect in the context."""
    prov = provider(case)
    ctx = ChatContext(client_model=CLIENT_MODEL, upstream_model="vendor-model", provider=prov,
                      api_key="sk-up", stream=stream, include_usage=True,
                      response_id="chatcmpl-dialects", created=1754650000,
                      entropy=random.Random(0), dialect=dialect_for(prov))
    body = {"model": CLIENT_MODEL, "messages": [{"role": "user", "content": "hi"}],
            "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    return TRANSLATORS[detect_engine(prov)](body, ctx)


def expected(case: str) -> dict[str, Any]:
    return json.loads((DATA / f"{case}.expected.json").read_text(encoding="utf-8"))


def run(case: str, pieces: list[bytes]) -> list[tuple[Any, ...]]:
    """The decoder's items for ``pieces`` fed in order, then closed, as comparable tuples (a
    ``DecodeError`` is the last item)."""
    decoder = exchange(case, stream=True).stream_decoder()
    items: list[Any] = []
    try:
        for piece in pieces:
            items += decoder.feed(piece)
        items += decoder.close()
    except DecodeError as exc:
        items.append(exc)
    return [_comparable(item) for item in items]


def _comparable(item: Any) -> tuple[Any, ...]:
    if isinstance(item, StreamChunk):
        return ("chunk", item.data)
    if isinstance(item, StreamDone):
        return ("done", json.dumps(item.usage, sort_keys=True))
    if isinstance(item, StreamFailed):
        return ("failed", item.error.kind, item.error.message)
    return ("decode_error", item.kind, item.detail)


def client_bytes(items: list[tuple[Any, ...]]) -> bytes:
    """What the relay writes to the client for these items (a chunk's bytes as they are,
    ``[DONE]`` at the end); the stream must have ended properly."""
    out = b""
    for item in items:
        if item[0] == "chunk":
            out += item[1]
        elif item[0] == "done":
            out += DONE
        else:
            pytest.fail(f"the stream did not end properly: {item}")
    return out


def chunks_of(data: bytes) -> list[dict[str, Any]]:
    decoder = SSEDecoder()
    events = decoder.feed(data) + decoder.close()
    return [json.loads(ev.data) for ev in events if ev.data != "[DONE]"]


def final_completion(state: ChatCompletionStreamState) -> Any:
    """``get_final_completion()``, or for an answer cut at its length limit (which the helper
    raises on) the completion it carries."""
    try:
        return state.get_final_completion()
    except LengthFinishReasonError as exc:
        return exc.completion


def summary(message: Any, finish_reason: Any, usage: Any) -> dict[str, Any]:
    """The fields an ``.expected.json`` states, from an openai SDK message."""
    return {"content": message.content or "",
            "reasoning_content": getattr(message, "reasoning_content", None) or "",
            "tool_calls": [{"id": call.id, "name": call.function.name,
                            "arguments": call.function.arguments}
                           for call in message.tool_calls or []],
            "finish_reason": finish_reason,
            "usage": usage.to_dict() if usage is not None else None}


# -- the table ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(BASE_URLS))
def test_the_dialect_is_picked_from_the_real_base_url(name):
    assert dialect_for(Provider(provider="p", base_url=BASE_URLS[name],
                                preferences=ProviderPreferences())).name == name


@pytest.mark.parametrize("name", sorted(BASE_URLS))
def test_the_dialect_preference_wins_over_the_url(name):
    prefs = ProviderPreferences(dialect=name)
    assert dialect_for(Provider(provider="p", base_url="https://llm.example.net/v1",
                                preferences=prefs)).name == name


def test_every_dialect_has_a_stream_a_body_and_their_expectations():
    names = set(DIALECTS) | {"generic"}
    assert names == set(BASE_URLS)
    assert {dialect_of(case) for case in STREAMS} == names
    assert set(BODIES) == names
    for case in set(STREAMS) | set(BODIES):
        parts = expected(case)
        assert ("stream" in parts) == (case in STREAMS), case
        assert ("body" in parts) == (case in BODIES), case


# -- streams -----------------------------------------------------------------------------------

@pytest.mark.parametrize("case", STREAMS)
def test_stream_items_do_not_depend_on_the_cuts(case):
    raw = (DATA / f"{case}_stream.sse").read_bytes()
    whole = run(case, [raw])
    assert run(case, [raw[i:i + 1] for i in range(len(raw))]) == whole


@pytest.mark.parametrize("case", STREAMS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_stream_items_at_any_cut_points(case, data):
    raw = (DATA / f"{case}_stream.sse").read_bytes()
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(raw) - 1), max_size=24))))
    bounds = [0, *cuts, len(raw)]
    pieces = [raw[a:b] for a, b in pairwise(bounds)]
    assert run(case, pieces) == run(case, [raw])


@pytest.mark.parametrize("case", STREAMS)
def test_stream_is_a_clean_openai_stream(case):
    data = client_bytes(run(case, [(DATA / f"{case}_stream.sse").read_bytes()]))
    assert check_chat_stream(data) == []
    assert {chunk["model"] for chunk in chunks_of(data)} == {CLIENT_MODEL}


@pytest.mark.parametrize("case", STREAMS)
def test_stream_assembles_to_the_expected_answer(case):
    data = client_bytes(run(case, [(DATA / f"{case}_stream.sse").read_bytes()]))
    state = ChatCompletionStreamState()
    for chunk in chunks_of(data):
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    completion = final_completion(state)
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert summary(choice.message, choice.finish_reason, completion.usage) == \
        expected(case)["stream"]


# -- whole bodies ------------------------------------------------------------------------------

@pytest.mark.parametrize("case", BODIES)
def test_body_is_normalized_to_the_expected_answer(case):
    raw = (DATA / f"{case}_body.json").read_bytes()
    out = json.loads(exchange(case, stream=False).parse_body(
        200, (("content-type", "application/json"),), raw))
    assert check_chat_body(out) == []
    assert out["model"] == CLIENT_MODEL
    completion = ChatCompletion.construct(**out)  # as the SDK reads a response: no validation
    choice = completion.choices[0]
    assert summary(choice.message, choice.finish_reason, completion.usage) == \
        expected(case)["body"]
