"""OpenAI-compatible exchange: request passthrough, relay without re-encoding, stream decoder
split-invariance (DEC-1), errors (OAI-9, ERR-4), and the Azure URL forms (AZ-1, AZ-2)."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
        headers=()):
    return ChatContext(client_model=client, upstream_model=upstream,
                       provider=Provider(provider="p", base_url=base, api=("sk-up",),
                                         preferences=ProviderPreferences(headers=headers)),
                       api_key="sk-up", stream=stream, include_usage=False,
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
    assert sent == dict(body, model="gpt-4o")
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
