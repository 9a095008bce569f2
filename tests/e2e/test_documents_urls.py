"""Remote document URLs end to end (issue 20), on both backends, over real sockets on
127.0.0.1: a client names a PDF by URL (a chat ``file`` part's ``file_url``, a Messages
``document`` url source, a Responses ``input_file`` ``file_url``, a Gemini ``fileData``
``fileUri``), a second fake upstream serves it (behind a redirect), and the gateway fetches
it for every channel that needs the bytes: the OpenAI-compatible fake receives a ``file_data`` data URL (filename from the URL),
Bedrock and Vertex Claude a base64 ``document`` block, Gemini ``inlineData``, each compared
byte for byte with what the document server sent. First-party Anthropic takes the URL itself
(a ``url`` source; the document server is never contacted). Failures never reach a model
upstream: a loopback URL under the default fetch policy and a 404 are a 400
``document_fetch_failed``, a document past ``MAX_DOCUMENT_BYTES`` a 413
``document_too_large``, in the OpenAI shape and, on the Messages front, Anthropic's.
"""

from __future__ import annotations

import base64
import binascii
import random
from typing import Any

import anthropic
import openai
import pytest

from tests.fakes.documents import DocumentsFake, answer_for, claude_providers, gemini_reply
from tests.fakes.upstream import FakeUpstream, Reply, Seen, json_reply
from tests.harness import run_gateway
from uniapi_core.ssrf import MAX_DOCUMENT_BYTES

KEY = "sk-documents-urls-e2e"
#: every byte value, so a re-encoding slip shows
PDF = (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + bytes(range(256)) * 8
       + random.Random(2020).randbytes(5000) + b"\n%%EOF\n")
#: one byte past the cap, allocated once
TOO_BIG = b"%PDF-1.4\n" + bytes(MAX_DOCUMENT_BYTES + 1 - 9)
#: the document's URL path (redirected to /store/blob-7) and the name the gateway derives
DOC_PATH = "/docs/annual%20report.pdf"
FILENAME = "annual report.pdf"
ANSWER = "Gemini read the document."
ALLOW: dict[str, Any] = {"fetch_allow_http": True, "fetch_allow_private": True}
#: model name -> the path prefix of its call on the Claude/OpenAI fake
PATHS = {
    "openai": "/v1/chat/completions",
    "anthropic": "/v1/messages",
    "bedrock": "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke",
    "vertex": "/v1/projects/proj-1/locations/",
}
WAYS = pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])


def serve_document(seen: Seen) -> Reply:
    if seen.path == DOC_PATH:
        return Reply(status=302, headers=[("location", "/store/blob-7")], pieces=[],
                     chunked=False)
    if seen.path == "/store/blob-7":
        return Reply(headers=[("content-type", "application/pdf")], pieces=[PDF],
                     chunked=False)
    if seen.path == "/raw/report.pdf":  # no useful media type: the bytes say PDF
        return Reply(headers=[("content-type", "application/octet-stream")], pieces=[PDF],
                     chunked=False)
    if seen.path == "/big.pdf":
        return Reply(headers=[("content-type", "application/pdf")], pieces=[TOO_BIG],
                     chunked=False)
    return json_reply({"error": "no such document"}, status=404)


class GeminiFake:
    """Gemini (``/v1beta/models/…:generateContent`` / ``:streamGenerateContent``): the
    ``inlineData`` parts of the last user turn are kept in ``inline``."""

    def __init__(self) -> None:
        self.inline: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.up = FakeUpstream(self.handle)

    def handle(self, seen: Seen) -> Reply:
        if not seen.path.startswith("/v1beta/models/"):
            self.problems.append(f"no route {seen.path}")
            return json_reply({"error": {"code": 404, "message": "fake: no route"}}, 404)
        contents = seen.json().get("contents") or [{}]
        self.inline += [p["inlineData"] for p in contents[-1].get("parts") or []
                        if "inlineData" in p]

        return gemini_reply(ANSWER, ":streamGenerateContent" in seen.path)


@pytest.fixture
def docs():
    up = FakeUpstream(serve_document)
    yield up
    up.close()


@pytest.fixture
def fake(docs):
    f = DocumentsFake(PDF, None, document_url=docs.url + DOC_PATH)
    yield f
    f.close()


@pytest.fixture
def gemini():
    g = GeminiFake()
    yield g
    g.up.close()


def config(fake: DocumentsFake, gemini: GeminiFake) -> str:
    url = fake.url
    return f"""
providers:
{claude_providers(url)}  - provider: oai
    base_url: {url}/v1/chat/completions
    api: sk-oai
    model:
      - gpt-4o: openai
  - provider: gem
    engine: gemini
    base_url: {gemini.up.url}/v1beta
    api: AIza-test
    model:
      - gemini-2.5-flash: gemini
api_keys:
  - api: {KEY}
"""


def file_url_part(url: str) -> dict[str, Any]:
    return {"type": "file", "file": {"file_url": url}}


def chat(client: openai.OpenAI, model: str, part: dict[str, Any], stream: bool) -> str:
    messages: Any = [{"role": "user", "content": [{"type": "text", "text": "Summarize"}, part]}]
    if not stream:
        done = client.chat.completions.create(model=model, messages=messages)
        assert done.choices[0].finish_reason == "stop"
        return done.choices[0].message.content or ""
    chunks = list(client.chat.completions.create(model=model, messages=messages, stream=True))
    assert [c.choices[0].finish_reason for c in chunks
            if c.choices and c.choices[0].finish_reason] == ["stop"]
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def decoded_data_url(url: str, media: str) -> bytes:
    prefix = f"data:{media};base64,"
    assert url.startswith(prefix), url[:80]
    try:
        return base64.b64decode(url[len(prefix):], validate=True)
    except (binascii.Error, ValueError):
        pytest.fail("the data URL is not base64")


def assert_openai_got_the_pdf(fake: DocumentsFake) -> None:
    """The OpenAI-compatible fake got one ``file`` part: the exact bytes as a PDF data URL,
    named after the URL's last path segment."""
    (got,) = fake.openai_files
    assert sorted(got) == ["file_data", "filename"]
    assert got["filename"] == FILENAME
    assert decoded_data_url(got["file_data"], "application/pdf") == PDF


# -- 1. the openai SDK's chat.completions with a file_url part --------------------------------

@WAYS
@pytest.mark.parametrize("vendor", ["openai", "bedrock", "vertex"])
def test_chat_file_url_is_fetched_and_its_bytes_reach_the_channel(backend, docs, fake, gemini,
                                                                 vendor, stream):
    with run_gateway(config(fake, gemini), backend=backend, discover=False, **ALLOW) as gw:
        text = chat(gw.openai(KEY), vendor, file_url_part(docs.url + DOC_PATH), stream)
    assert fake.problems == []
    assert [s.path for s in docs.seen] == [DOC_PATH, "/store/blob-7"]  # one fetch, one hop
    assert len(fake.calls) == 1 and fake.calls[0].path.startswith(PATHS[vendor])
    if vendor == "openai":
        assert_openai_got_the_pdf(fake)
        assert text == "openai here"
    else:  # the Claude fake compared the document block's bytes with PDF
        assert text == answer_for(len(PDF))
        (doc,) = [b for b in fake.calls[0].json()["messages"][-1]["content"]
                  if b["type"] == "document"]
        assert doc["source"]["type"] == "base64"
        assert base64.b64decode(doc["source"]["data"]) == PDF
    if stream and vendor != "openai":
        assert fake.calls[0].path.endswith({"bedrock": "-with-response-stream",
                                            "vertex": ":streamRawPredict"}[vendor])


@WAYS
def test_chat_file_url_reaches_gemini_as_inline_data(backend, docs, fake, gemini, stream):
    url = docs.url + "/raw/report.pdf"  # served as application/octet-stream
    with run_gateway(config(fake, gemini), backend=backend, discover=False, **ALLOW) as gw:
        text = chat(gw.openai(KEY), "gemini", file_url_part(url), stream)
    assert text == ANSWER
    assert gemini.problems == [] and len(gemini.up.seen) == 1
    assert [s.path for s in docs.seen] == ["/raw/report.pdf"]
    (inline,) = gemini.inline
    assert inline["mimeType"] == "application/pdf"
    assert base64.b64decode(inline["data"], validate=True) == PDF
    assert fake.calls == []


# -- 2. the anthropic SDK's messages.create with a document url source ------------------------

def ask_messages(gw, model: str, url: str):
    sdk = anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0, timeout=15)
    return sdk.messages.create(model=model, max_tokens=64, messages=[{"role": "user", "content": [
        {"type": "text", "text": "Summarize"},
        {"type": "document", "source": {"type": "url", "url": url}}]}])


def test_messages_document_url_goes_to_first_party_anthropic_as_the_url(backend, docs, fake,
                                                                        gemini):
    url = docs.url + DOC_PATH
    with run_gateway(config(fake, gemini), backend=backend, discover=False, **ALLOW) as gw:
        msg = ask_messages(gw, "anthropic", url)
    assert fake.problems == []
    assert [s.path for s in fake.calls] == ["/v1/messages"]
    (doc,) = [b for b in fake.calls[0].json()["messages"][-1]["content"]
              if b["type"] == "document"]
    assert doc["source"] == {"type": "url", "url": url}
    assert docs.seen == []  # Anthropic fetches it, not the gateway
    assert msg.content[0].text == answer_for(len(PDF))


def test_messages_document_url_reaches_an_openai_channel_as_file_data(backend, docs, fake,
                                                                      gemini):
    with run_gateway(config(fake, gemini), backend=backend, discover=False, **ALLOW) as gw:
        msg = ask_messages(gw, "openai", docs.url + DOC_PATH)
    assert msg.content[0].text == "openai here"
    assert [s.path for s in fake.calls] == ["/v1/chat/completions"]
    assert_openai_got_the_pdf(fake)


@pytest.mark.parametrize("vendor", ["bedrock", "vertex"])
def test_messages_document_url_reaches_native_bedrock_and_vertex_inline(backend, docs, fake,
                                                                       gemini, vendor):
    """The Messages front's native path: Bedrock and Vertex take no url sources, so the
    gateway fetches the document and the client's block gets a base64 source."""
    with run_gateway(config(fake, gemini), backend=backend, discover=False, **ALLOW) as gw:
        msg = ask_messages(gw, vendor, docs.url + DOC_PATH)
    assert fake.problems == []
    assert msg.content[0].text == answer_for(len(PDF))
    assert [s.path for s in docs.seen] == [DOC_PATH, "/store/blob-7"]
    (call,) = fake.calls
    assert call.path.startswith(PATHS[vendor])
    (doc,) = [b for b in call.json()["messages"][-1]["content"] if b["type"] == "document"]
    assert doc["source"]["type"] == "base64"
    assert base64.b64decode(doc["source"]["data"]) == PDF


# -- 3. the openai SDK's responses.create with an input_file file_url ------------------------

@pytest.mark.parametrize("vendor", ["openai", "bedrock"])
def test_responses_input_file_url_reaches_the_channel(backend, docs, fake, gemini, vendor):
    with run_gateway(config(fake, gemini), backend=backend, discover=False, **ALLOW) as gw:
        resp = gw.openai(KEY).responses.create(model=vendor, input=[{"role": "user", "content": [
            {"type": "input_text", "text": "Summarize"},
            {"type": "input_file", "file_url": docs.url + DOC_PATH}]}])
    assert fake.problems == []
    assert len(fake.calls) == 1 and fake.calls[0].path.startswith(PATHS[vendor])
    if vendor == "openai":
        assert_openai_got_the_pdf(fake)
        assert resp.output_text == "openai here"
    else:
        assert resp.output_text == answer_for(len(PDF))


# -- 4. failures: nothing reaches a model upstream --------------------------------------------

def test_default_policy_refuses_a_loopback_document_url(backend, docs, fake, gemini):
    with run_gateway(config(fake, gemini), backend=backend, discover=False) as gw, \
            pytest.raises(openai.BadRequestError) as exc:
        chat(gw.openai(KEY), "openai", file_url_part(docs.url + DOC_PATH), False)
    assert exc.value.status_code == 400
    assert exc.value.body["code"] == "document_fetch_failed"
    assert docs.seen == [] and fake.calls == [] and gemini.up.seen == []


@pytest.mark.parametrize("vendor", ["openai", "bedrock", "gemini"])
def test_a_missing_document_is_a_400_before_any_model_call(backend, docs, fake, gemini, vendor):
    with run_gateway(config(fake, gemini), backend=backend, discover=False, **ALLOW) as gw, \
            pytest.raises(openai.BadRequestError) as exc:
        chat(gw.openai(KEY), vendor, file_url_part(docs.url + "/missing.pdf"), False)
    assert exc.value.body["code"] == "document_fetch_failed"
    assert "404" in exc.value.body["message"]
    assert [s.path for s in docs.seen] == ["/missing.pdf"]
    assert fake.calls == [] and gemini.up.seen == []


def test_a_document_past_the_cap_is_a_413_before_any_model_call(backend, docs, fake, gemini):
    with run_gateway(config(fake, gemini), backend=backend, discover=False, **ALLOW) as gw, \
            pytest.raises(openai.APIStatusError) as exc:
        chat(gw.openai(KEY), "openai", file_url_part(docs.url + "/big.pdf"), False)
    assert exc.value.status_code == 413
    assert exc.value.body["code"] == "document_too_large"
    assert [s.path for s in docs.seen] == ["/big.pdf"]
    assert fake.calls == [] and gemini.up.seen == []


def test_messages_front_answers_a_failed_fetch_in_anthropics_shape(backend, docs, fake, gemini):
    with run_gateway(config(fake, gemini), backend=backend, discover=False, **ALLOW) as gw:
        with pytest.raises(anthropic.BadRequestError) as missing:
            ask_messages(gw, "openai", docs.url + "/missing.pdf")
        with pytest.raises(anthropic.APIStatusError) as big:
            ask_messages(gw, "bedrock", docs.url + "/big.pdf")
    body = missing.value.body
    assert missing.value.status_code == 400
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "document URL could not be fetched" in body["error"]["message"]
    assert big.value.status_code == 413
    assert big.value.body["type"] == "error"
    assert big.value.body["error"]["type"] == "request_too_large"
    assert [s.path for s in docs.seen] == ["/missing.pdf", "/big.pdf"]
    assert fake.calls == [] and gemini.up.seen == []


# -- the Gemini front: google-genai's fileData with an http(s) document URI ------------------

@pytest.mark.parametrize("vendor", ["openai", "bedrock"])
def test_gemini_front_file_data_url_reaches_the_channel(backend, docs, fake, gemini, vendor):
    from google import genai
    from google.genai import types

    with run_gateway(config(fake, gemini), backend=backend, discover=False, **ALLOW) as gw:
        sdk = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=gw.url))
        resp = sdk.models.generate_content(model=vendor, contents=[types.Content(
            role="user", parts=[types.Part(text="Summarize"), types.Part(
                file_data=types.FileData(file_uri=docs.url + DOC_PATH,
                                         mime_type="application/pdf"))])])
    assert fake.problems == []
    assert len(fake.calls) == 1 and fake.calls[0].path.startswith(PATHS[vendor])
    if vendor == "openai":
        assert_openai_got_the_pdf(fake)
        assert resp.text == "openai here"
    else:
        assert resp.text == answer_for(len(PDF))
