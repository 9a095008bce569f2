"""Fast paths of the stream decoders against their general ways: byte-identical output.

Each fast path (a text delta written from precomputed bytes, an event recognised by its byte
layout instead of parsed) must give exactly the items the general path gives, for any input,
including escapes, U+2028/U+2029, lone surrogates and non-ASCII model names.
"""

from __future__ import annotations

import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from uniapi_core.config.model import Provider
from uniapi_core.errors import DecodeError
from uniapi_core.vendors.anthropic import AnthropicStreamDecoder
from uniapi_core.vendors.base import ChatContext, SSEVendorDecoder, StreamChunk, StreamFailed
from uniapi_core.vendors.chunks import ChunkWriter
from uniapi_core.vendors.gemini import GeminiStreamDecoder
from uniapi_core.vendors.openai import OpenAIStreamDecoder

texts = st.text(max_size=30) | st.text(alphabet='ab"\\/\n\r\t\x00\x1f\x7f\u2028\u2029é🐈\ud800',
                                        max_size=12)
models = st.sampled_from(["gpt-4o", "modèle-\u2028", "m\"x"])


def ctx(model: str, include_usage: bool) -> ChatContext:
    provider = Provider(provider="anthropic", base_url=None, api=("k",))
    return ChatContext(client_model=model, upstream_model="claude", provider=provider,
                       api_key="k", stream=True, include_usage=include_usage,
                       response_id="chatcmpl-x", created=1, entropy=random.Random(0))


@settings(max_examples=300, deadline=None)
@given(text=texts, model=models, include_usage=st.booleans(), reasoning=st.booleans())
def test_chunk_writer_text_template_is_the_general_chunk(text, model, include_usage, reasoning):
    w = ChunkWriter(ctx(model, include_usage))
    w.text("first")  # the role chunk went out: the template path from here on
    key = "reasoning_content" if reasoning else "content"
    got = (w.reasoning if reasoning else w.text)(text)
    assert got == ([w._chunk({key: text})] if text else [])
    if text and not reasoning:
        before, after = w.text_parts
        try:
            assert got == [StreamChunk(before + json.dumps(text, ensure_ascii=False).replace(
                "\u2028", "\\u2028").replace("\u2029", "\\u2029").encode() + after)]
        except UnicodeEncodeError:
            pass  # lone surrogate: the general (ASCII-escaped) chunk, checked above


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet='ab"\\/u\n\b\f\t\r\x00\x7f\u2028\u2029é🐈\ud800', max_size=8) | texts,
       escape_all=st.booleans(), model=models, started=st.booleans())
def test_chunk_writer_json_text_is_text_of_the_decoded_string(text, escape_all, model, started):
    literal = json.dumps(text, ensure_ascii=escape_all or any(
        "\ud800" <= c <= "\udfff" for c in text))
    source = "xy" + literal + "z"
    a, b = ChunkWriter(ctx(model, True)), ChunkWriter(ctx(model, True))
    if started:
        a.text("first"), b.text("first")
    assert a.json_text(literal[1:-1], source, 3) == b.text(text)
    assert a.started == b.started


class GeneralAnthropic(AnthropicStreamDecoder):
    """Every event parsed and dispatched: the general path."""

    _events = SSEVendorDecoder._events


def json_string(text: str, escape_all: bool) -> str:
    """``text`` as Anthropic might write it: raw UTF-8 or all escaped (a lone surrogate can
    only come escaped)."""
    surrogate = any("\ud800" <= c <= "\udfff" for c in text)
    return json.dumps(text, ensure_ascii=escape_all or surrogate)


delta_texts = st.text(alphabet='ab"\\/u\n\b\f\t\r\x00\x7f\u2028\u2029é🐈\ud800',
                      max_size=8) | texts


delta_events = st.lists(st.one_of(
    st.tuples(delta_texts, st.booleans(), st.sampled_from(["0", "1", "-0", "12"])).map(
        lambda t: '{"type":"content_block_delta","index":%s,"delta":{"type":"text_delta",'
                  '"text":%s}}' % (t[2], json_string(t[0], t[1]))),
    st.sampled_from([
        '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a\tb"}}',
        '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a\\/"}}',
        '{"type":"content_block_delta","index":01,"delta":{"type":"text_delta","text":"x"}}',
        '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"\\x"}}',
        '{"type":"content_block_delta", "index":0,"delta":{"type":"text_delta","text":"s"}}',
        '{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"t"}}',
        '{"type":"content_block_start","index":1,"content_block":{"type":"text","text":"s"}}',
        '{"type":"ping"}', "[DONE]", "", "nope",
    ]),
), max_size=12)

HEAD = ('event: message_start\ndata: {"type":"message_start","message":{"usage":'
        '{"input_tokens":3,"output_tokens":1}}}\n\n'
        'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}'
        '\n\n')
TAIL = 'data: {"type":"message_stop"}\n\n'


def run(cls: type, context: object, pieces: list[bytes]) -> tuple[list, str | None]:
    d = cls(context)
    items: list = []
    try:
        for p in pieces:
            items += d.feed(p)
        items += d.close()
    except DecodeError as e:
        return norm(items), e.kind
    return norm(items), None


def norm(items: list) -> list:
    """Items comparable by value (exceptions compare by identity)."""
    return [(type(i).__name__, i.error.__class__, str(i.error), i.error.kind, i.error.status,
             i.error.type, i.error.code) if isinstance(i, StreamFailed) else i for i in items]


@settings(max_examples=300, deadline=None)
@given(events=delta_events, model=models, include_usage=st.booleans(),
       started=st.sampled_from([True, True, True, False]), data=st.data())
def test_anthropic_text_delta_fast_path_is_the_general_path(events, model, include_usage,
                                                             started, data):
    body = "".join(f"event: content_block_delta\ndata: {e}\n\n" for e in events)
    if started:
        body = HEAD + 'data: {"type":"content_block_delta","index":0,"delta":{"type":' \
            '"text_delta","text":"go"}}\n\n' + body
    wire = (body + TAIL).encode("utf-8", "surrogatepass")
    positions = data.draw(st.lists(st.integers(0, len(wire)), max_size=4))
    bounds = [0, *sorted(positions), len(wire)]
    pieces = [wire[a:b] for a, b in zip(bounds, bounds[1:])]
    context = ctx(model, include_usage)
    assert run(AnthropicStreamDecoder, context, pieces) == run(GeneralAnthropic, context, pieces)


# -- OpenAI: plain content chunks relayed (or renamed) without parsing -------------------------

class GeneralOpenAI(OpenAIStreamDecoder):
    """Every event parsed: the general path."""

    _plain = staticmethod(lambda text: None)


def openai_chunk(content: str, escape_all: bool, model: str, extra: str, fingerprint: str,
                 finish: str) -> str:
    return ('{"id":"chatcmpl-1","object":"chat.completion.chunk","created":17,"model":%s%s%s,'
            '"choices":[{"index":0,"delta":{"content":%s},"logprobs":null,"finish_reason":%s}]'
            '%s}' % (json.dumps(model), fingerprint, "",
                     json_string(content, escape_all), finish, extra))


openai_events = st.lists(st.one_of(
    st.builds(openai_chunk, delta_texts, st.booleans(),
              st.sampled_from(["gpt-4o", "alias", "modèle", "a\\u00e9", "m\u2028"]),
              st.sampled_from(["", ',"usage":null', ',"obfuscation":"x\\"y"', ',"usage":{}',
                               ',"error":null', ',"model":"alias"']),
              st.sampled_from(["", ',"system_fingerprint":null', ',"system_fingerprint":"fp"',
                               ',"service_tier":"default","system_fingerprint":"fp_1"']),
              st.sampled_from(["null", "null", "null", '"stop"'])),
    st.sampled_from([
        '{"id":"c","object":"chat.completion.chunk","created":01,"model":"gpt-4o","choices":'
        '[{"index":0,"delta":{"content":"x"},"logprobs":null,"finish_reason":null}]}',
        '{"id":"c","object":"chat.completion.chunk","created":-0,"model":"gpt-4o","choices":'
        '[{"index":0,"delta":{"content":"x"},"logprobs":null,"finish_reason":null}]}',
        '{"id":"c\\/","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":'
        '[{"index":0,"delta":{"content":"x"},"logprobs":null,"finish_reason":null}]}',
        '{"error":{"message":"boom"}}', "[DONE]", "nope", '{"choices":[]}',
    ]),
), max_size=10)


@settings(max_examples=300, deadline=None)
@given(events=openai_events, client_model=st.sampled_from(["gpt-4o", "alias", "modèle", "aé"]),
       data=st.data())
def test_openai_plain_chunk_fast_path_is_the_general_path(events, client_model, data):
    wire = "".join(f"data: {e}\n\n" for e in events).encode("utf-8", "surrogatepass")
    positions = data.draw(st.lists(st.integers(0, len(wire)), max_size=4))
    bounds = [0, *sorted(positions), len(wire)]
    pieces = [wire[a:b] for a, b in zip(bounds, bounds[1:])]
    assert run(OpenAIStreamDecoder, client_model, pieces) == \
        run(GeneralOpenAI, client_model, pieces)


# -- Gemini: one-part text chunks mapped without parsing ---------------------------------------

class GeneralGemini(GeminiStreamDecoder):
    """Every event parsed: the general path."""

    _plain = staticmethod(lambda text: None)


def gemini_chunk(text: str, escape_all: bool, sep: str, index: str, usage: str, tail: str) -> str:
    return ('{"candidates":%s[{"content":%s{"parts":%s[{"text":%s%s}],"role":%s"model"}%s}]%s%s}'
            % (sep, sep, sep, sep, json_string(text, escape_all), sep, index, usage, tail))


gemini_events = st.lists(st.one_of(
    st.builds(gemini_chunk, delta_texts, st.booleans(), st.sampled_from([" ", ""]),
              st.sampled_from(["", ', "index": 0', ',"index":0', ', "index": 1']),
              st.sampled_from(["", ', "usageMetadata": {"promptTokenCount": 9,"totalTokenCount": 9}',
                               ',"usageMetadata": {"promptTokenCount": 9,"candidatesTokenCount": 3}',
                               ',"usageMetadata":{"promptTokenCount":9,"promptTokensDetails":'
                               '[{"modality":"TEXT","tokenCount":9}],"thoughtsTokenCount":2}',
                               ',"usageMetadata": {"promptTokenCount": 9.0}',
                               ',"usageMetadata": {"promptTokenCount": true}',
                               ',"usageMetadata": {"promptTokenCount": NaN}',
                               ',"usageMetadata": {"a": "x\\\\"}',
                               ',"usageMetadata": {"promptTokenCount": 1,"promptTokenCount": 5}']),
              st.sampled_from(["", ',"modelVersion": "gemini-2.0-flash","responseId": "r1"',
                               ',"responseId": "r\\u00e9"', ',"modelVersion": "x"'])),
    st.sampled_from([
        '{"candidates": [{"content": {"parts": [{"text": "end"}],"role": "model"},'
        '"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 9,'
        '"candidatesTokenCount": 12,"totalTokenCount": 21}}',
        '{"candidates": [{"content": {"parts": [{"text": "t", "thought": true}],"role": "model"}}]}',
        '{"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": {}}}],'
        '"role": "model"}}]}',
        '{"promptFeedback": {"blockReason": "SAFETY"}}', '{"error": {"code": 429}}',
        '[{"candidates": []}]', "[DONE]", "nope", "",
    ]),
), max_size=10)


@settings(max_examples=300, deadline=None)
@given(events=gemini_events, model=models, include_usage=st.booleans(),
       framing=st.sampled_from(["\n", "\r\n"]), data=st.data())
def test_gemini_text_fast_path_is_the_general_path(events, model, include_usage, framing, data):
    wire = "".join(f"data: {e}{framing}{framing}" for e in events).encode("utf-8", "surrogatepass")
    positions = data.draw(st.lists(st.integers(0, len(wire)), max_size=4))
    bounds = [0, *sorted(positions), len(wire)]
    pieces = [wire[a:b] for a, b in zip(bounds, bounds[1:])]
    # each its own context: tool-call ids come from the context's entropy
    fast = GeminiStreamDecoder(ctx(model, include_usage))
    slow = GeneralGemini(ctx(model, include_usage))
    assert run(lambda c: fast, None, pieces) == run(lambda c: slow, None, pieces)
    assert (fast.usage, fast.thought_signatures) == (slow.usage, slow.thought_signatures)
