"""Issue 20 end to end, on both backends: OpenAI ``file`` parts sent with the openai SDK reach
Gemini as ``inlineData`` (bytes intact, whole and streamed) and Cohere v2 as ``documents``; an
inline document over Gemini's limit is a 413 before any upstream call; a key whose first
channel (Cohere) cannot read a PDF (no text layer) gets it answered by the next one (Gemini); a
PDF with text reaches Cohere as a ``documents`` entry holding the text the gateway extracted."""

from __future__ import annotations

import base64
import json
from typing import Any

import openai
import pytest

from tests.core.vendors.test_documents_cohere_pdf import make_pdf, text
from tests.fakes import documents
from tests.fakes.llm_vendors import compact
from tests.fakes.upstream import FakeUpstream, Reply, Seen, json_reply
from tests.harness import run_gateway

KEY = "sk-documents-e2e"
#: a small PDF with every byte value in it, so a re-encoding slip shows
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4 + b"\n%%EOF\n"
NOTES = "Meeting notes: ship on Friday. Ünïcödé kept."
ANSWER = "It is a short document."
WAYS = pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])


def real_pdf(*texts: str) -> bytes:
    """A valid PDF, one page per text (a page with ``""`` has no text layer: a scan)."""
    return make_pdf(*(text(t) if t else b"" for t in texts))


#: a PDF Cohere cannot read: no text layer
SCAN = real_pdf("")


def pdf_part(data: bytes = PDF) -> dict[str, Any]:
    return {"type": "file", "file": {
        "file_data": "data:application/pdf;base64," + base64.b64encode(data).decode(),
        "filename": "report.pdf"}}


TEXT_PART = {"type": "file", "file": {
    "file_data": "data:text/plain;base64," + base64.b64encode(NOTES.encode()).decode(),
    "filename": "notes.txt"}}


def gemini_reply(stream: bool) -> Reply:
    return documents.gemini_reply(ANSWER, stream)


def cohere_reply(stream: bool) -> Reply:
    usage = {"billed_units": {"input_tokens": 20, "output_tokens": 6},
             "tokens": {"input_tokens": 40, "output_tokens": 6}}
    if not stream:
        return json_reply({"id": "co-doc-1", "finish_reason": "COMPLETE", "usage": usage,
                           "message": {"role": "assistant", "content": [
                               {"type": "text", "text": ANSWER}]}})
    events: list[dict[str, Any]] = [
        {"id": "co-doc-1", "type": "message-start", "delta": {"message": {
            "role": "assistant", "content": [], "tool_plan": "", "tool_calls": [],
            "citations": []}}},
        {"type": "content-start", "index": 0,
         "delta": {"message": {"content": {"type": "text", "text": ""}}}},
        {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": ANSWER}}}},
        {"type": "content-end", "index": 0},
        {"type": "message-end", "delta": {"finish_reason": "COMPLETE", "usage": usage}}]
    return Reply(headers=[("content-type", "text/event-stream")],
                 pieces=[b"event: " + e["type"].encode() + b"\ndata: " + compact(e) + b"\n\n"
                         for e in events])


def handle(seen: Seen) -> Reply:
    stream = ":streamGenerateContent" in seen.path or bool(seen.json().get("stream"))
    if seen.path.startswith("/v1beta/models/"):
        return gemini_reply(stream)
    if seen.path == "/v2/chat":
        return cohere_reply(stream)
    return json_reply({"error": {"message": f"fake: no route {seen.path}"}}, status=404)


@pytest.fixture
def fake():
    f = FakeUpstream(handle)
    yield f
    f.close()


def config(url: str) -> str:
    return f"""
providers:
  - provider: co
    engine: cohere
    base_url: {url}/v2/chat
    api: co-key
    model:
      - command-a-03-2025: cohere
      - command-a-03-2025: doc
  - provider: gem
    engine: gemini
    base_url: {url}/v1beta
    api: AIza-test
    model:
      - gemini-2.5-flash: gemini
      - gemini-2.5-flash: doc
api_keys:
  - api: {KEY}
    preferences: {{SCHEDULING_ALGORITHM: fixed_priority}}
"""


def ask(client, model: str, part: dict[str, Any], stream: bool) -> str:
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, part]}]
    if not stream:
        done = client.chat.completions.create(model=model, messages=messages)
        return done.choices[0].message.content
    out = client.chat.completions.create(model=model, messages=messages, stream=True)
    return "".join(c.choices[0].delta.content or "" for c in out if c.choices)


def inline_parts(seen: Seen) -> list[dict[str, Any]]:
    return [p["inlineData"] for c in seen.json()["contents"] for p in c["parts"]
            if "inlineData" in p]


@WAYS
def test_a_pdf_reaches_gemini_as_inline_data_bytes_intact(backend, fake, stream):
    with run_gateway(config(fake.url), backend=backend, discover=False) as gw:
        assert ask(gw.openai(KEY), "gemini", pdf_part(), stream) == ANSWER
    assert len(fake.seen) == 1
    assert fake.seen[0].path.endswith(
        ":streamGenerateContent?alt=sse" if stream else ":generateContent")
    [inline] = inline_parts(fake.seen[0])
    assert inline["mimeType"] == "application/pdf"
    assert base64.b64decode(inline["data"]) == PDF


@WAYS
def test_a_text_file_reaches_cohere_as_a_document(backend, fake, stream):
    with run_gateway(config(fake.url), backend=backend, discover=False) as gw:
        assert ask(gw.openai(KEY), "cohere", TEXT_PART, stream) == ANSWER
    [seen] = fake.seen
    body = seen.json()
    assert seen.path == "/v2/chat"
    assert body["documents"] == [{"data": {"title": "notes.txt", "text": NOTES}}]
    assert body["messages"] == [{"role": "user",
                                 "content": [{"type": "text", "text": "What is this?"}]}]


def test_an_oversized_document_is_413_before_any_upstream_call(backend, fake):
    big = pdf_part(b"%PDF-1.4\n" + b"\0" * (20 * 1024 * 1024 + 1))
    with run_gateway(config(fake.url), backend=backend, discover=False) as gw, \
            pytest.raises(openai.APIStatusError) as exc:
        ask(gw.openai(KEY), "gemini", big, False)
    assert exc.value.status_code == 413
    err = exc.value.body
    assert err["code"] == "document_too_large" and "20 MiB" in err["message"]
    assert fake.seen == []


@WAYS
def test_a_text_pdf_reaches_cohere_as_a_document_of_its_text(backend, fake, stream):
    pdf = real_pdf("Ship on Friday.", "Budget approved.")
    with run_gateway(config(fake.url), backend=backend, discover=False) as gw:
        assert ask(gw.openai(KEY), "doc", pdf_part(pdf), stream) == ANSWER
    [seen] = fake.seen
    body = seen.json()
    assert seen.path == "/v2/chat" and body["stream"] is stream
    assert body["documents"] == [{"data": {"title": "report.pdf",
                                           "text": "Ship on Friday.\n\nBudget approved."}}]
    assert body["messages"] == [{"role": "user",
                                 "content": [{"type": "text", "text": "What is this?"}]}]


@WAYS
def test_a_pdf_without_text_for_a_cohere_first_key_is_answered_by_gemini(backend, fake, stream):
    with run_gateway(config(fake.url), backend=backend, discover=False) as gw:
        assert ask(gw.openai(KEY), "doc", pdf_part(SCAN), stream) == ANSWER
    assert [s.path.split(":")[0] for s in fake.seen] == ["/v1beta/models/gemini-2.5-flash"]
    assert base64.b64decode(inline_parts(fake.seen[0])[0]["data"]) == SCAN


def test_when_no_channel_takes_the_part_the_400_names_them(backend, fake):
    audio = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
    pdf_id = {"type": "file", "file": {"file_id": "file-abc"}}
    with run_gateway(config(fake.url), backend=backend, discover=False) as gw:
        with pytest.raises(openai.BadRequestError) as exc:
            ask(gw.openai(KEY), "doc", pdf_id, False)
        assert ask(gw.openai(KEY), "doc", audio, False) == ANSWER  # Gemini takes audio
    message = exc.value.body["message"]
    assert "file_id" in message
    assert message.endswith("tried: co (cohere), gem (gemini)")
    assert [s.path.split(":")[0] for s in fake.seen] == ["/v1beta/models/gemini-2.5-flash"]
    assert json.loads(fake.seen[0].body)["contents"][0]["parts"][1]["inlineData"][
        "mimeType"] == "audio/wav"
