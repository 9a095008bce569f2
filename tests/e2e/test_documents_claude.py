"""PDFs to Claude end to end (issue 20; docs/vendor-rules.md ANT-D1..D4): the openai SDK sends
a ``file`` part holding a PDF data URL through the gateway, on both backends, to fakes of
Anthropic, Bedrock Claude (InvokeModel) and Vertex Claude (``tests/fakes/documents.py``); each
fake decodes the ``document`` block's base64 and compares the bytes with those sent, and
answers with their count, whole and streamed. Refusals: an unsupported file type is a 400
naming it, and a ``file_id`` moves on to a channel that can take it.
"""

from __future__ import annotations

import base64
import random

import openai
import pytest

from tests.fakes.documents import DocumentsFake, answer_for, claude_providers
from tests.harness import run_gateway

KEY = "sk-documents-e2e"
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + random.Random(20).randbytes(6000) + b"\n%%EOF\n"
TITLE = "a.pdf"
VENDORS = {
    "anthropic": "/v1/messages",
    "bedrock": "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke",
    "vertex": "/v1/projects/proj-1/locations/",
}


def config(url: str) -> str:
    return f"""
providers:
{claude_providers(url, ("anthropic", "mixed"))}  - provider: oai
    base_url: {url}/v1/chat/completions
    api: sk-oai
    model:
      - gpt-4o: mixed
api_keys:
  - api: {KEY}
"""


@pytest.fixture
def fake():
    f = DocumentsFake(PDF, TITLE)
    yield f
    f.close()


def messages(file: dict[str, str]) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": "Summarize"},
                                         {"type": "file", "file": file}]}]


PDF_FILE = {"filename": TITLE,
            "file_data": "data:application/pdf;base64," + base64.b64encode(PDF).decode()}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("vendor", list(VENDORS))
def test_pdf_reaches_claude_as_a_document_with_its_bytes_intact(backend, fake, vendor,
                                                                 stream):
    with run_gateway(config(fake.url), backend=backend, discover=False) as gw:
        client = gw.openai(KEY)
        if stream:
            chunks = list(client.chat.completions.create(
                model=vendor, messages=messages(PDF_FILE), stream=True))
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            finish = [c.choices[0].finish_reason for c in chunks
                      if c.choices and c.choices[0].finish_reason]
            assert finish == ["stop"]
        else:
            resp = client.chat.completions.create(model=vendor, messages=messages(PDF_FILE))
            text = resp.choices[0].message.content
            assert resp.choices[0].finish_reason == "stop"
    assert fake.problems == []
    assert len(fake.calls) == 1 and fake.calls[0].path.startswith(VENDORS[vendor])
    if stream:
        assert fake.calls[0].path.endswith({"bedrock": "-with-response-stream",
                                            "vertex": ":streamRawPredict"}.get(vendor, ""))
    assert text == answer_for(len(PDF))


@pytest.mark.parametrize("vendor", list(VENDORS))
def test_unsupported_file_type_is_a_400_naming_it(backend, fake, vendor):
    zip_file = {"filename": "a.zip",
                "file_data": "data:application/zip;base64," + base64.b64encode(b"PK\3\4").decode()}
    with run_gateway(config(fake.url), backend=backend, discover=False) as gw, \
            pytest.raises(openai.BadRequestError) as info:
        gw.openai(KEY).chat.completions.create(model=vendor, messages=messages(zip_file))
    assert "application/zip" in str(info.value) and "Anthropic" in str(info.value)
    assert fake.calls == []


def test_file_id_moves_on_to_a_channel_that_can_take_it(backend, fake):
    with run_gateway(config(fake.url), backend=backend, discover=False) as gw:
        client = gw.openai(KEY)
        resp = client.chat.completions.create(model="mixed",
                                              messages=messages({"file_id": "file-abc123"}))
        assert resp.choices[0].message.content == "openai here"
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="anthropic",
                                           messages=messages({"file_id": "file-abc123"}))
    assert "file_id is not supported by Anthropic channels" in str(info.value)
    assert [s.path for s in fake.calls] == ["/v1/chat/completions"]
