"""OpenAI-compatible exchange: request passthrough, relay without re-encoding, stream decoder
split-invariance (DEC-1), errors (OAI-9, ERR-4), usage asked for in streams and hidden from a
client that did not ask (OAI-4, S-5), and the Azure URL forms (AZ-1, AZ-2)."""

from __future__ import annotations

import json
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core.vendors.test_fastpaths import openai_events
from uniapi_core.config.model import Provider, ProviderPreferences
from uniapi_core.errors import DecodeError, UpstreamError
from uniapi_core.vendors.azure import azure_url
from uniapi_core.vendors.base import ChatContext, StreamChunk, StreamDone, StreamFailed
from uniapi_core.vendors.openai import (
    OpenAIStreamDecoder,
    build_exchange,
    chat_url,
    models_url,
    sibling_url,
)


def ctx(client="alias", upstream="gpt-4o", stream=True, base="https://h/v1/chat/completions",
        headers=(), include_usage=False, stream_usage=None):
    prefs = ProviderPreferences(headers=headers, stream_usage=stream_usage)
    return ChatContext(client_model=client, upstream_model=upstream,
                       provider=Provider(provider="p", base_url=base, api=("sk-up",),
                                         preferences=prefs),
                       api_key="sk-up", stream=stream, include_usage=include_usage,
                       response_id="chatcmpl-x", created=1, entropy=random.Random(0))


def chunk(content=None, finish=None, model="gpt-4o", **extra):
    delta = {} if content is None else {"content": content}
    obj = {"id": "c", "object": "chat.completion.chunk", "model": model,
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    obj.update(extra)
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\r\n\r\n"


STREAM = (b": keep-alive\n\n" + chunk("Hé") + chunk("llo ✓") + chunk(finish="stop")
          + chunk(model="gpt-4o", usage={"prompt_tokens": 1}).replace(b'"choices": [{"index": 0, "delta": {}, "finish_reason": null}]', b'"choices": []')
          + b"data: [DONE]\n\n")


def run(pieces, client="gpt-4o"):
    dec = OpenAIStreamDecoder(client)
    items, error = [], None
    try:
        for p in pieces:
            items += dec.feed(p)
        items += dec.close()
    except DecodeError as exc:
        error = exc.kind
    return items, error


def norm(result):
    items, error = result
    return [(type(i).__name__, getattr(i, "data", None),
             getattr(getattr(i, "error", None), "message", None)) for i in items], error


def test_request_passes_through_with_only_the_model_renamed():
    body = {"model": "alias", "messages": [{"role": "user", "content": "x"}], "temperature": 0.3,
            "vendor_extension": {"a": [1, 2]}, "stream": True}
    ex = build_exchange(body, ctx(headers=(("X-Custom", "v"), ("authorization", "Bearer other"))))
    sent = json.loads(ex.request.body)
    # a stream the client asked no usage for asks for it upstream (OAI-4)
    assert sent == dict(body, model="gpt-4o", stream_options={"include_usage": True})
    sent = json.loads(build_exchange(dict(body, stream=False), ctx(stream=False)).request.body)
    assert sent == dict(body, model="gpt-4o", stream=False)
    headers = dict(ex.request.headers)
    assert headers["authorization"] == "Bearer other"  # provider headers win
    assert headers["X-Custom"] == "v" and headers["accept"] == "text/event-stream"


def test_urls():
    assert chat_url("https://h/v1") == "https://h/v1/chat/completions"
    assert chat_url("https://h/v1/") == "https://h/v1/chat/completions"
    assert chat_url("https://h/api/paas/v4/chat/completions") == \
        "https://h/api/paas/v4/chat/completions"
    assert models_url("https://h/v1/chat/completions") == "https://h/v1/models"
    assert sibling_url("https://h/v1/chat/completions?x=1", "/embeddings") == \
        "https://h/v1/embeddings?x=1"
    assert azure_url("https://r.openai.azure.com", "dep") == \
        "https://r.openai.azure.com/openai/deployments/dep/chat/completions?api-version=2024-10-21"


def test_stream_is_relayed_byte_for_byte_when_nothing_changes():
    items, error = run([STREAM])
    assert error is None
    chunks = [i.data for i in items if isinstance(i, StreamChunk)]
    assert chunks[0] == chunk("Hé").replace(b"\r\n\r\n", b"\n\n")
    assert isinstance(items[-1], StreamDone) and items[-1].usage == {"prompt_tokens": 1}


def test_alias_rewrites_model_in_every_chunk():
    items, _ = run([STREAM], client="alias")
    models = {json.loads(i.data[6:])["model"] for i in items if isinstance(i, StreamChunk)}
    assert models == {"alias"}


def test_error_object_mid_stream_oai_9():
    items, _ = run([chunk("a") + b'data: {"error": {"message": "boom", "code": 500}}\n\n'])
    assert isinstance(items[-1], StreamFailed) and items[-1].error.message == "boom"


def test_missing_done_after_finish_is_completed_dec_5_and_cut_is_truncated():
    items, _ = run([chunk("a") + chunk(finish="stop")])
    assert isinstance(items[-1], StreamDone)
    items, _ = run([chunk("a")])
    assert isinstance(items[-1], StreamFailed) and items[-1].error.kind == "truncated"


def test_azure_filter_chunk_is_skipped_az_5():
    first = b'data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[]}\n\n'
    items, _ = run([first + chunk("a") + b"data: [DONE]\n\n"])
    sent = [i.data for i in items if isinstance(i, StreamChunk)]
    # the content chunk, then the finish the stream left out (synthesized); no filter chunk
    assert len(sent) == 2 and not any(b"prompt_filter_results" in d for d in sent)
    assert json.loads(sent[1][6:])["choices"] == [{"index": 0, "delta": {},
                                                   "finish_reason": "stop"}]


def test_non_stream_body_error_with_200_is_a_failure_err_4():
    ex = build_exchange({"model": "alias", "messages": []}, ctx(stream=False))
    with pytest.raises(UpstreamError):
        ex.parse_body(200, (), b'{"error": {"message": "quota"}}')
    with pytest.raises(UpstreamError) as exc:
        ex.parse_body(200, (), b'{"id": "x", "choices": []}')
    assert exc.value.kind == "empty"
    body = b'{"id":"x","model":"gpt-4o","choices":[{"index":0,"message":{"content":"hi"}}]}'
    assert json.loads(ex.parse_body(200, (), body))["model"] == "alias"


def test_garbage_after_done_is_ignored_dec_4():
    items, error = run([chunk("a") + b"data: [DONE]\n\ndata: {not json\n\n"])
    assert error is None and isinstance(items[-1], StreamDone)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_split_gives_the_same_items_dec_1(data):
    payload = data.draw(st.sampled_from([
        STREAM, STREAM.replace(b"\n", b"\r\n"), chunk("x") + b"data: {bad\n\n" + chunk("y"),
        chunk("a") + b"data: \xff\xfe\n\n", chunk("ab")[:-3]]))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(payload)), max_size=8)))
    pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)])]
    whole = norm(run([payload]))
    assert norm(run(pieces)) == whole
    assert norm(run([payload[i:i + 1] for i in range(len(payload))])) == whole


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_decode_error(data):
    run([data[:len(data) // 2], data[len(data) // 2:]])


# -- OAI-4, S-5: usage asked for in every stream, shown only to a client that asked ------------

BODY = {"model": "alias", "messages": [{"role": "user", "content": "x"}], "stream": True}


def sent_body(body, context, build=build_exchange):
    return json.loads(build(body, context).request.body)


@pytest.mark.parametrize("options, upstream", [
    (None, {"include_usage": True}),
    ({}, {"include_usage": True}),
    ({"include_usage": False}, {"include_usage": True}),
    ({"include_obfuscation": False}, {"include_obfuscation": False, "include_usage": True}),
])
def test_a_stream_without_usage_asks_for_it_upstream_oai_4(options, upstream):
    body = dict(BODY) if options is None else dict(BODY, stream_options=options)
    assert sent_body(body, ctx()) == dict(BODY, model="gpt-4o", stream_options=upstream)
    assert body == (dict(BODY) if options is None else dict(BODY, stream_options=options))
    raw = dict(BODY, stream_options=None)  # null counts as absent
    assert sent_body(raw, ctx())["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("body, context", [
    # the client asked: its request as it sent it
    (dict(BODY, stream_options={"include_usage": True, "x": 1}), ctx(include_usage=True)),
    # not a stream: nothing to ask
    (dict(BODY, stream=False), ctx(stream=False)),
    (dict(BODY, stream=False, stream_options={"include_usage": False}), ctx(stream=False)),
    # a host that rejects stream_options (preferences.stream_usage: false)
    (BODY, ctx(stream_usage=False)),
    (dict(BODY, stream_options={"include_usage": False}), ctx(stream_usage=False)),
    # not an object: the client's mistake, for the host to refuse
    (dict(BODY, stream_options="yes"), ctx()),
])
def test_the_request_is_untouched_otherwise_oai_3(body, context):
    assert sent_body(body, context) == dict(body, model="gpt-4o")
    assert sent_body(body, ctx(stream_usage=True, stream=context.stream,
                               include_usage=context.include_usage)) == \
        sent_body(body, ctx(stream=context.stream, include_usage=context.include_usage))


USAGE = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12,
         "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
         "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                       "accepted_prediction_tokens": 0,
                                       "rejected_prediction_tokens": 0}}


def openai_stream(with_usage: bool, *, obfuscation: bool = False, model: str = "gpt-4o") -> bytes:
    """What OpenAI streams, in its compact layout, with ``stream_options.include_usage`` or
    without: the same chunks, the former with ``"usage":null`` on each and a usage chunk."""
    head = ('{"id":"chatcmpl-1","object":"chat.completion.chunk","created":17,"model":"%s",'
            '"service_tier":"default","system_fingerprint":"fp_1","choices":' % model)
    tail = ',"usage":null' if with_usage else ""
    obf = ',"obfuscation":"k3"' if obfuscation else ""
    choices = ['[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},'
               '"logprobs":null,"finish_reason":null}]']
    choices += ['[{"index":0,"delta":{"content":%s},"logprobs":null,"finish_reason":null}]'
                % json.dumps(t, ensure_ascii=False) for t in ("Hé", " \\\"x\\\"", " ✓")]
    choices += ['[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]']
    events = [head + c + tail + obf + "}" for c in choices]
    if with_usage:
        events.append(head + "[],\"usage\":" + json.dumps(USAGE, separators=(",", ":"))
                      + obf + "}")
    return "".join(f"data: {e}\n\n" for e in events + ["[DONE]"]).encode()


def decode(pieces, client="gpt-4o", hide=True, cls=OpenAIStreamDecoder, **kw):
    dec = cls(client, hide_usage=hide, **kw)
    items = []
    for p in pieces:
        items += dec.feed(p)
    items += dec.close()
    return items, dec


def splits(wire):
    return [[wire], [wire[i:i + 1] for i in range(len(wire))]]


@pytest.mark.parametrize("client", ["gpt-4o", "alias"])
@pytest.mark.parametrize("obfuscation", [False, True])
def test_a_client_that_did_not_ask_sees_the_stream_it_would_have_got_s_5(client, obfuscation):
    unasked = openai_stream(False, obfuscation=obfuscation)
    asked = openai_stream(True, obfuscation=obfuscation)
    expected, _ = decode([unasked], client, hide=False)
    assert isinstance(expected[-1], StreamDone) and expected[-1].usage is None
    for pieces in splits(asked):  # whole and byte by byte (DEC-1)
        items, dec = decode(pieces, client)
        assert items[:-1] == expected[:-1]  # the same chunks, byte for byte
        assert not any(b"usage" in i.data for i in items[:-1])
        assert items[-1] == StreamDone(USAGE) and dec.usage == USAGE  # kept for the stats
    if client == "gpt-4o":  # nothing to change: relayed as OpenAI wrote it without usage
        assert [i.data for i in expected[:-1]] == [
            b"data: " + line[6:] + b"\n\n" for line in unasked.split(b"\n\n")[:-2]]


def test_a_client_that_asked_gets_the_usage_chunk_s_5():
    wire = openai_stream(True)
    context = ctx(client="gpt-4o", include_usage=True)
    exchange = build_exchange(dict(BODY, stream_options={"include_usage": True}), context)
    for pieces in splits(wire):
        dec = exchange.stream_decoder()
        items = [item for p in pieces for item in dec.feed(p)] + dec.close()
        assert [i.data for i in items[:-1]] == [
            b"data: " + line[6:] + b"\n\n" for line in wire.split(b"\n\n")[:-2]]
        assert items[-1] == StreamDone(USAGE)


def test_the_exchange_hides_usage_unless_the_client_asked():
    wire = openai_stream(True)
    for include_usage, hidden in ((False, True), (True, False)):
        exchange = build_exchange(BODY, ctx(client="gpt-4o", include_usage=include_usage))
        dec = exchange.stream_decoder()
        items = dec.feed(wire) + dec.close()
        assert any(b'"usage"' in i.data for i in items[:-1]) is not hidden
        assert items[-1] == StreamDone(USAGE)


def test_the_fast_path_is_kept_when_usage_is_hidden():
    """Plain content chunks with ``"usage":null`` still skip the parser and the normalizer."""
    dec = OpenAIStreamDecoder("gpt-4o", hide_usage=True)
    parsed = []
    chunk_of = dec._norm.chunk
    dec._norm.chunk = lambda obj: parsed.append(obj) or chunk_of(obj)
    dec.feed(openai_stream(True))
    dec.close()
    assert len(parsed) == 3  # the role, finish and usage chunks; not the three content chunks


HOSTS = [
    # Mistral: finish and usage on the last chunk with choices
    [{"id": "m", "object": "chat.completion.chunk", "created": 1, "model": "mistral",
      "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"},
                   "finish_reason": None}]},
     {"id": "m", "object": "chat.completion.chunk", "created": 1, "model": "mistral",
      "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "stop"}],
      "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}],
    # SiliconFlow: running totals on every chunk, usage:null-free
    [{"id": "s", "object": "chat.completion.chunk", "created": 1, "model": "qwen",
      "choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": None}],
      "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}},
     {"id": "s", "object": "chat.completion.chunk", "created": 1, "model": "qwen",
      "choices": [{"index": 0, "delta": {"content": "b"}, "finish_reason": "stop"}],
      "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}],
    # Groq: x_groq.usage on the last chunk, then the usage chunk include_usage asked for
    [{"id": "g", "object": "chat.completion.chunk", "created": 1, "model": "llama",
      "choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": None}]},
     {"id": "g", "object": "chat.completion.chunk", "created": 1, "model": "llama",
      "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
      "x_groq": {"id": "req", "usage": {"prompt_tokens": 5, "completion_tokens": 2,
                                        "total_tokens": 7, "queue_time": 0.01}}},
     {"id": "g", "object": "chat.completion.chunk", "created": 1, "model": "llama",
      "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
      "x_groq": {"id": "req"}}],
    # DeepSeek: cache counts under its own names, in the usage chunk
    [{"id": "d", "object": "chat.completion.chunk", "created": 1, "model": "deepseek-chat",
      "choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": "stop"}],
      "usage": None},
     {"id": "d", "object": "chat.completion.chunk", "created": 1, "model": "deepseek-chat",
      "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7,
                               "prompt_cache_hit_tokens": 4, "prompt_cache_miss_tokens": 1}}],
]


@pytest.mark.parametrize("events", HOSTS, ids=["mistral", "siliconflow", "groq", "deepseek"])
def test_other_hosts_usage_is_kept_and_hidden(events):
    wire = "".join(f"data: {json.dumps(e)}\r\n\r\n" for e in events).encode() + b"data: [DONE]\n\n"
    shown, _ = decode([wire], "alias", hide=False)
    last = shown[-1].usage
    assert last is not None and last["total_tokens"] in (6, 7)
    for pieces in splits(wire):
        items, _ = decode(pieces, "alias")
        assert items[-1] == StreamDone(last)  # the same usage, normalized, for the stats
        chunks = [json.loads(i.data[6:]) for i in items[:-1]]
        assert chunks and all("usage" not in c and c["choices"] for c in chunks)
        # otherwise what the client would have been shown
        assert [dict(c, usage=None) for c in chunks] == [
            dict(json.loads(i.data[6:]), usage=None) for i in shown[:-1]
            if json.loads(i.data[6:])["choices"]]


class GeneralOpenAI(OpenAIStreamDecoder):
    """Every event parsed: the general path."""

    _plain = staticmethod(lambda text: None)


@settings(max_examples=300, deadline=None)
@given(events=openai_events, client=st.sampled_from(["gpt-4o", "alias", "modèle", "aé"]),
       data=st.data())
def test_the_fast_path_is_the_general_path_when_usage_is_hidden(events, client, data):
    wire = "".join(f"data: {e}\n\n" for e in events).encode("utf-8", "surrogatepass")
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=4)))
    pieces = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)])]

    def items(cls):
        dec, got, error = cls(client, hide_usage=True), [], None
        try:
            for p in pieces:
                got += dec.feed(p)
            got += dec.close()
        except DecodeError as exc:
            error = exc.kind
        return norm((got, error))

    fast = items(OpenAIStreamDecoder)
    assert fast == items(GeneralOpenAI)
    # no chunk has a usage key (a quote inside a JSON string is escaped, so a "usage": after
    # { or , is a key; the text "usage" in content is not)
    assert not any(data and re.search(rb'[{,]"usage":', data) for _, data, _ in fast[0])
