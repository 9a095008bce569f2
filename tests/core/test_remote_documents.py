"""Issue 20: remote documents. A ``file`` part's ``file_url`` (uniapi's extension; the Messages
front's ``document`` url source and the Responses front's ``input_file.file_url`` become it)
is fetched like a remote image, within the SSRF policy and its own cap
(``ssrf.MAX_DOCUMENT_BYTES``), when a candidate channel needs the bytes; first-party Anthropic
takes the URL itself. One connection driven by hand, no sockets."""

from __future__ import annotations

import base64
import json
import random

import pytest

from tests.core.test_session import of, request, written
from uniapi_core.config import load_config
from uniapi_core.connection import Connection
from uniapi_core.events import ClientData, Fetch, FetchDone, FetchResult, StartUpstream
from uniapi_core.gateway import Gateway, Settings
from uniapi_core.session import Session
from uniapi_core.ssrf import MAX_DOCUMENT_BYTES, MAX_IMAGE_BYTES

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
URL = "http://docs.test/reports/Q3%20final.pdf"


def config(*providers: str) -> str:
    known = {
        "oa": '{provider: oa, base_url: "http://u/v1/chat/completions", api: k, model: [m]}',
        "an": '{provider: an, base_url: "http://a/v1/messages", api: k, '
              'model: [{claude-sonnet-4-5: m}]}',
        "rs": '{provider: rs, base_url: "http://r/v1/responses", api: k, model: [m]}',
        "gm": '{provider: gm, base_url: "http://g/v1beta", engine: gemini, api: k, '
              'model: [{gemini-2.5-flash: m}]}',
    }
    return ("providers:\n" + "".join(f"  - {known[p]}\n" for p in providers)
            + "api_keys:\n  - api: sk-s\n")


def session(*providers: str, **settings) -> Session:
    settings = {"fetch_allow_http": True, "fetch_allow_private": True, **settings}
    gw = Gateway(load_config(config(*providers)).config, settings=Settings(**settings),
                 entropy=random.Random(0))
    return Connection(lambda: gw, now=0.0, alpn="http/1.1")


def chat(*parts: dict, **fields) -> dict:
    return {"model": "m", "max_tokens": 16, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "summarize"}, *parts]}], **fields}


def file_url(url: str = URL, **extra) -> dict:
    return {"type": "file", "file": {"file_url": url, **extra}}


def error(actions) -> tuple[int, dict]:
    out = written(actions)
    assert not of(actions, StartUpstream), "nothing may reach an upstream"
    head, _, body = out.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)["error"]


def fetched(s: Session, actions, media: str, body: bytes):
    (fetch,) = of(actions, Fetch)
    return s.handle(FetchDone(fetch.ref, FetchResult(200, (("content-type", media),), body)),
                    0.1, 0.1)


def test_an_openai_channel_gets_the_fetched_bytes_as_file_data():
    s = session("oa")
    acts = s.handle(ClientData(request(chat(file_url()))), 0.0, 0.0)
    (fetch,) = of(acts, Fetch)
    assert fetch.url.host == "docs.test" and fetch.max_bytes == MAX_DOCUMENT_BYTES
    (start,) = of(fetched(s, acts, "application/octet-stream", PDF), StartUpstream)
    part = json.loads(start.request.body)["messages"][0]["content"][1]
    assert part == {"type": "file", "file": {
        "file_data": "data:application/pdf;base64," + base64.b64encode(PDF).decode(),
        "filename": "Q3 final.pdf"}}


def test_the_clients_filename_and_media_type_are_kept():
    s = session("oa")
    acts = s.handle(ClientData(request(chat(file_url(filename="notes")))), 0.0, 0.0)
    (start,) = of(fetched(s, acts, "text/plain; charset=utf-8", b"hello"), StartUpstream)
    part = json.loads(start.request.body)["messages"][0]["content"][1]
    assert part["file"] == {"filename": "notes", "file_data": "data:text/plain;base64,aGVsbG8="}


def test_first_party_anthropic_takes_the_url_itself():
    s = session("an")
    acts = s.handle(ClientData(request(chat(file_url()))), 0.0, 0.0)
    assert not of(acts, Fetch)
    (start,) = of(acts, StartUpstream)
    block = json.loads(start.request.body)["messages"][0]["content"][1]
    assert block["type"] == "document"
    assert block["source"] == {"type": "url", "url": URL}


def test_images_and_documents_are_fetched_with_their_own_caps():
    s = session("oa", "an")
    body = chat(file_url(), {"type": "image_url", "image_url": {"url": "http://img.test/a.png"}})
    caps = {f.url.host: f.max_bytes for f in of(s.handle(ClientData(request(body)), 0.0, 0.0),
                                                  Fetch)}
    assert caps == {"docs.test": MAX_DOCUMENT_BYTES, "img.test": MAX_IMAGE_BYTES}


def test_an_oversized_document_is_a_413_before_any_upstream_call():
    s = session("oa")
    (fetch,) = of(s.handle(ClientData(request(chat(file_url()))), 0.0, 0.0), Fetch)
    acts = s.handle(FetchDone(fetch.ref, FetchResult(200, (), PDF, truncated=True)), 0.1, 0.1)
    status, err = error(acts)
    assert status == 413 and err["code"] == "document_too_large"
    assert str(MAX_DOCUMENT_BYTES) in err["message"] and URL in err["message"]


@pytest.mark.parametrize("result, why", [
    (FetchResult(404), "HTTP 404"),
    (FetchResult(error="connection refused"), "connection refused"),
])
def test_a_document_that_cannot_be_fetched_is_a_400(result, why):
    s = session("oa")
    (fetch,) = of(s.handle(ClientData(request(chat(file_url()))), 0.0, 0.0), Fetch)
    status, err = error(s.handle(FetchDone(fetch.ref, result), 0.1, 0.1))
    assert status == 400 and err["code"] == "document_fetch_failed"
    assert err["message"] == f"document URL could not be fetched: {URL}: {why}"


def test_plain_http_is_refused_by_default():
    s = session("oa", fetch_allow_http=False, fetch_allow_private=False)
    acts = s.handle(ClientData(request(chat(file_url()))), 0.0, 0.0)
    assert not of(acts, Fetch)
    status, err = error(acts)
    assert status == 400 and err["code"] == "document_fetch_failed"


def test_a_file_url_that_is_not_http_is_a_400():
    s = session("oa")
    status, err = error(s.handle(ClientData(request(chat(file_url("file:///etc/passwd")))),
                                 0.0, 0.0))
    assert status == 400 and "file_url must be an http(s) URL" in err["message"]


def test_the_messages_front_url_document_reaches_an_openai_channel_inline():
    s = session("oa")
    body = {"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "url", "url": URL}},
        {"type": "text", "text": "summarize"}]}]}
    acts = s.handle(ClientData(request(body, "/v1/messages")), 0.0, 0.0)
    (start,) = of(fetched(s, acts, "application/pdf", PDF), StartUpstream)
    part = json.loads(start.request.body)["messages"][0]["content"][0]
    assert part["file"]["file_data"].endswith(base64.b64encode(PDF).decode())
    assert part["file"]["filename"] == "Q3 final.pdf"


def test_the_responses_front_file_url_reaches_an_openai_channel_inline():
    s = session("oa")
    body = {"model": "m", "input": [{"role": "user", "content": [
        {"type": "input_file", "file_url": URL}, {"type": "input_text", "text": "summarize"}]}]}
    acts = s.handle(ClientData(request(body, "/v1/responses")), 0.0, 0.0)
    (start,) = of(fetched(s, acts, "application/pdf", PDF), StartUpstream)
    part = json.loads(start.request.body)["messages"][0]["content"][0]
    assert part["file"]["file_data"].endswith(base64.b64encode(PDF).decode())


# -- a channel sent the client's own body reads its URLs itself: nothing is fetched for it --

def test_a_messages_url_image_to_anthropic_is_not_fetched():
    s = session("an")
    body = {"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "http://img.test/a.png"}},
        {"type": "document", "source": {"type": "url", "url": URL}}]}]}
    acts = s.handle(ClientData(request(body, "/v1/messages")), 0.0, 0.0)
    assert not of(acts, Fetch)
    (start,) = of(acts, StartUpstream)
    assert json.loads(start.request.body)["messages"] == body["messages"]


def test_a_responses_file_url_to_a_responses_upstream_is_not_fetched():
    s = session("rs")
    body = {"model": "m", "input": [{"role": "user", "content": [
        {"type": "input_file", "file_url": URL}]}]}
    acts = s.handle(ClientData(request(body, "/v1/responses")), 0.0, 0.0)
    assert not of(acts, Fetch)
    (start,) = of(acts, StartUpstream)
    assert json.loads(start.request.body)["input"] == body["input"]


def test_a_gemini_file_data_url_to_gemini_is_not_fetched():
    s = session("gm")
    contents = [{"role": "user", "parts": [
        {"fileData": {"mimeType": "application/pdf", "fileUri": URL}},
        {"fileData": {"mimeType": "image/png", "fileUri": "http://img.test/a.png"}}]}]
    acts = s.handle(ClientData(request({"contents": contents},
                                       "/v1beta/models/m:generateContent")), 0.0, 0.0)
    assert not of(acts, Fetch)
    (start,) = of(acts, StartUpstream)
    assert json.loads(start.request.body)["contents"] == contents


def test_the_same_request_is_fetched_when_another_candidate_needs_the_bytes():
    s = session("rs", "oa")
    body = {"model": "m", "input": [{"role": "user", "content": [
        {"type": "input_file", "file_url": URL}]}]}
    (fetch,) = of(s.handle(ClientData(request(body, "/v1/responses")), 0.0, 0.0), Fetch)
    assert fetch.max_bytes == MAX_DOCUMENT_BYTES
