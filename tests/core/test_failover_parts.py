"""Issue 20: a request refused only because *this channel's vendor* cannot take one of its
parts (or ``n`` > 1, or a ``response_format``) is a channel mismatch. The router tries the next
channel; when none can take it the client gets the first refusal's 400, its message extended
with every provider tried (``RoutePlan.refusal``). No sockets: the gateway builds the plan and
the relay's first action says which channel was picked."""

from __future__ import annotations

import base64
import io
import json
import random

import pytest
from pypdf import PdfWriter

from uniapi_core.config import load_config
from uniapi_core.gateway import ChatCall, Gateway, Respond, Routed
from uniapi_core.relay import Relay, StartUpstream
from uniapi_core.relay.actions import SendData, SendHead

#: one provider block per vendor kind, all serving the alias ``m``
PROVIDERS = {
    "anthropic": "base_url: http://127.0.0.1:9/v1/messages\n    api: sk-ant\n"
                 "    model: [{claude-sonnet-4-5: m}]",
    "gemini": "base_url: http://127.0.0.1:9/v1beta\n    api: AIza-k\n"
              "    model: [{gemini-2.5-flash: m}]",
    "cohere": "base_url: http://127.0.0.1:9/v2/chat\n    engine: cohere\n    api: co-k\n"
              "    model: [{command-a-03-2025: m}]",
    "cloudflare": "base_url: http://127.0.0.1:9\n    cf_account_id: acct1\n    api: cf-k\n"
                  "    model: [{'@cf/mistral/mistral-7b-instruct-v0.1': m}]",
    "openai": "base_url: http://127.0.0.1:9/v1/chat/completions\n    api: sk-o\n"
              "    model: [{gpt-4o: m}]",
}



def blank_pdf() -> bytes:
    """A valid one-page PDF with no text layer (a scan, as far as Cohere goes)."""
    w = PdfWriter()
    w.add_blank_page(612, 792)
    out = io.BytesIO()
    w.write(out)
    return out.getvalue()


#: Cohere reads a PDF's text layer; this one has none, so Cohere refuses it (issue 20)
PDF = blank_pdf()
PDF_PART = {"type": "file", "file": {
    "file_data": "data:application/pdf;base64," + base64.b64encode(PDF).decode(),
    "filename": "a.pdf"}}
TEXT_PART = {"type": "file", "file": {
    "file_data": "data:text/plain;base64," + base64.b64encode(b"hello notes").decode(),
    "filename": "notes.txt"}}
ID_PART = {"type": "file", "file": {"file_id": "file-abc123"}}
AUDIO_PART = {"type": "input_audio", "input_audio": {
    "data": base64.b64encode(b"RIFF\0\0\0\0WAVE").decode(), "format": "wav"}}


def gateway(*vendors: str) -> Gateway:
    blocks = "".join(f"  - provider: {v}\n    {PROVIDERS[v]}\n" for v in vendors)
    text = ("providers:\n" + blocks + "api_keys:\n  - api: sk-user\n    model: [m]\n"
            "    preferences: {SCHEDULING_ALGORITHM: fixed_priority}\n")
    return Gateway(load_config(text).config, entropy=random.Random(7))


def send(g: Gateway, parts: list | None = None, **fields) -> Relay | Respond:
    content = [{"type": "text", "text": "what is in it?"}] + (parts or [])
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": content}],
                       **fields}).encode()
    reply = g.handle("POST", "/v1/chat/completions", (("authorization", "Bearer sk-user"),),
                     body, now=0.0, wall=1700000000.0)
    if isinstance(reply, ChatCall):
        assert not reply.moderate and not g.images_needed(reply)
        reply = g.route_chat(reply, {}, 0.0, 1700000000.0)
        if isinstance(reply, Routed):
            reply = reply.relay
    return reply


def first_channel(reply) -> tuple[str | None, dict]:
    assert isinstance(reply, Relay), reply
    start = reply.start(0.0)[0]
    assert isinstance(start, StartUpstream)
    return start.channel, json.loads(start.request.body)


def error_of(reply) -> tuple[int, dict]:
    """The error answered without any upstream call: by the gateway, or by the relay's
    first actions (the plan's refusal)."""
    if isinstance(reply, Respond):
        return reply.status, json.loads(reply.body)["error"]
    assert isinstance(reply, Relay), reply
    actions = reply.start(0.0)
    assert not any(isinstance(a, StartUpstream) for a in actions)
    head, data = actions[0], actions[1]
    assert isinstance(head, SendHead) and isinstance(data, SendData)
    return head.status, json.loads(data.data)["error"]


@pytest.mark.parametrize("vendors, parts, fields, picked", [
    # Anthropic takes no audio: Gemini gets it as inlineData
    (("anthropic", "gemini"), [AUDIO_PART], {}, "gemini"),
    # Cohere reads no PDF without a text layer: Gemini gets it
    (("cohere", "gemini"), [PDF_PART], {}, "gemini"),
    # Cloudflare takes no file and no audio: Gemini gets them
    (("cloudflare", "gemini"), [PDF_PART], {}, "gemini"),
    (("cloudflare", "gemini"), [AUDIO_PART], {}, "gemini"),
    # Gemini cannot read an OpenAI file id: an OpenAI channel can
    (("gemini", "openai"), [ID_PART], {}, "openai"),
    # n > 1: Cohere, Cloudflare and Anthropic refuse it, Gemini takes it (not streamed)
    (("cohere", "gemini"), [], {"n": 2}, "gemini"),
    (("cloudflare", "gemini"), [], {"n": 2}, "gemini"),
    (("anthropic", "gemini"), [], {"n": 2}, "gemini"),
    # n > 1 streamed: Gemini refuses it, OpenAI takes it
    (("gemini", "openai"), [], {"n": 2, "stream": True}, "openai"),
    # JSON mode on a Cloudflare model without it: the next channel
    (("cloudflare", "gemini"), [], {"response_format": {"type": "json_object"}}, "gemini"),
])
def test_a_channel_that_cannot_take_the_request_falls_over(vendors, parts, fields, picked):
    channel, _ = first_channel(send(gateway(*vendors), parts, **fields))
    assert channel == picked


def test_cohere_takes_a_text_file_as_a_document():
    channel, body = first_channel(send(gateway("cohere", "gemini"), [TEXT_PART]))
    assert channel == "cohere"
    assert body["documents"] == [{"data": {"title": "notes.txt", "text": "hello notes"}}]
    assert body["messages"][0]["content"] == [{"type": "text", "text": "what is in it?"}]


def test_gemini_gets_the_pdf_bytes_intact():
    _, body = first_channel(send(gateway("cohere", "gemini"), [PDF_PART]))
    inline = body["contents"][0]["parts"][1]["inlineData"]
    assert inline["mimeType"] == "application/pdf"
    assert base64.b64decode(inline["data"]) == PDF


@pytest.mark.parametrize("vendors, parts, fields, kind, names", [
    (("cohere", "cloudflare"), [PDF_PART], {}, "no text layer",
     ["cohere (cohere)", "cloudflare (cloudflare)"]),
    (("anthropic", "cohere", "cloudflare"), [AUDIO_PART], {}, "input_audio",
     ["anthropic (claude)", "cohere (cohere)", "cloudflare (cloudflare)"]),
    (("gemini", "cohere"), [ID_PART], {}, "file_id", ["gemini (gemini)", "cohere (cohere)"]),
    (("cohere", "cloudflare"), [], {"n": 2}, "'n'",
     ["cohere (cohere)", "cloudflare (cloudflare)"]),
])
def test_when_no_channel_can_take_it_the_400_names_the_part_and_every_provider(
        vendors, parts, fields, kind, names):
    status, err = error_of(send(gateway(*vendors), parts, **fields))
    assert status == 400
    assert err["type"] == "invalid_request_error"
    message = err["message"]
    assert kind in message
    assert "no channel can take this request; tried: " + ", ".join(names) in message


def test_the_refusal_keeps_the_first_errors_status_type_and_code():
    status, err = error_of(send(gateway("cohere", "cloudflare"), [PDF_PART]))
    assert (status, err["code"]) == (400, "unsupported_content")
    assert err["message"].startswith("messages[0].content[1]: the PDF has no text layer")


def test_a_single_unbuildable_channel_is_named_too():
    status, err = error_of(send(gateway("cohere"), [AUDIO_PART]))
    assert (status, err["code"]) == (400, "unsupported_content")
    assert "input_audio" in err["message"]
    assert err["message"].endswith("tried: cohere (cohere)")


def test_an_oversized_document_for_gemini_is_413_before_any_upstream_call():
    big = {"type": "file", "file": {
        "file_data": "data:application/pdf;base64,"
                     + base64.b64encode(b"%PDF" + b"\0" * (20 * 1024 * 1024)).decode(),
        "filename": "big.pdf"}}
    status, err = error_of(send(gateway("gemini"), [big]))
    assert status == 413 and err["code"] == "document_too_large"
    assert "gemini" in err["message"] and "20 MiB" in err["message"]
