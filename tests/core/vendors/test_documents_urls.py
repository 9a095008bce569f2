"""Remote documents (``file.file_url``, uniapi's extension) and vendor file ids (``file_id``) in
the Claude and Gemini translators (issue 20; docs/vendor-rules.md, ANT-D4..D6, "Gemini fetched
documents", "Gemini file ids").

Anthropic's own API takes a URL source and its Files API ids; Bedrock and Vertex Claude, Gemini
and Vertex Gemini take the bytes the gateway fetched into ``ctx.images`` (missing ones are asked
for with ``ImagesNeeded``, together with remote images, in request order); the Gemini API takes
its Files API names and Vertex Gemini Cloud Storage objects as ``fileData``."""

from __future__ import annotations

import base64
import json
import random
import string
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uniapi_core.config.model import Provider, ProviderPreferences
from uniapi_core.errors import ClientError
from uniapi_core.vendors import anthropic, bedrock, gemini, vertex
from uniapi_core.vendors.base import ChatContext, ImagesNeeded

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + random.Random(7).randbytes(3000) + b"\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
DOC_URL = "https://docs.example.com/report.pdf"
NOTES_URL = "https://docs.example.com/notes.txt"
IMG_URL = "https://img.example.com/a.png"
ANT_ID = "file_011CNha8iCJcU1wXNR6q4V8w"
CLAUDE = ("anthropic", "bedrock", "vertex-claude")
FETCHING = ("bedrock", "vertex-claude", "gemini", "vertex-gemini")
VENDORS = ("anthropic", *FETCHING)

Images = dict[str, tuple[str, bytes]]
Headers = tuple[tuple[str, str], ...]


def file_part(**spec: Any) -> dict[str, Any]:
    return {"type": "file", "file": spec}


def image_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def req(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"model": "m", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Summarize"}, *parts]}]}


def ctx_for(vendor: str, images: Images | None = None, headers: Headers = ()) -> ChatContext:
    prefs = ProviderPreferences(headers=headers)
    common: dict[str, Any] = {"client_model": "m", "stream": False, "include_usage": False,
                              "response_id": "chatcmpl-doc0123456789", "created": 1735689600,
                              "entropy": random.Random(3), "images": images or {}}
    if vendor == "anthropic":
        return ChatContext(upstream_model="claude-sonnet-4-20250514", api_key="k",
                           provider=Provider(provider="ant", preferences=prefs), **common)
    if vendor == "bedrock":
        p = Provider(provider="br", aws_access_key="AKIAEXAMPLE", aws_secret_key="secret",
                     aws_region="us-east-1", preferences=prefs)
        return ChatContext(upstream_model="anthropic.claude-3-5-sonnet-20240620-v1:0",
                           api_key=None, provider=p, **common)
    if vendor == "gemini":
        return ChatContext(upstream_model="gemini-2.5-flash", api_key="AIzaKEY",
                           provider=Provider(provider="gem", preferences=prefs), **common)
    model = "claude-sonnet-4@20250514" if vendor == "vertex-claude" else "gemini-2.5-pro"
    return ChatContext(upstream_model=model, api_key=None,
                       provider=Provider(provider="vx", project_id="proj-1", preferences=prefs),
                       region="us-east5", access_token="tok", **common)


def build(vendor: str, r: dict[str, Any], images: Images | None = None,
          headers: Headers = ()) -> Any:
    c = ctx_for(vendor, images, headers)
    if vendor == "anthropic":
        return anthropic.build_exchange(r, c)
    if vendor == "bedrock":
        return bedrock.build_exchange(r, c)
    if vendor == "gemini":
        return gemini.build_exchange(r, c)
    return vertex.build_exchange(r, c)


def body(vendor: str, r: dict[str, Any], images: Images | None = None,
         headers: Headers = ()) -> dict[str, Any]:
    return json.loads(build(vendor, r, images, headers).request.body)


def content(vendor: str, r: dict[str, Any], images: Images | None = None) -> list[Any]:
    b = body(vendor, r, images)
    if vendor in CLAUDE:
        return b["messages"][0]["content"]
    return b["contents"][0]["parts"]


def refusal(vendor: str, r: dict[str, Any], images: Images | None = None) -> ClientError:
    with pytest.raises(ClientError) as info:
        build(vendor, r, images)
    return info.value


def beta_headers(exchange: Any) -> list[str]:
    return [v for k, v in exchange.request.headers if k.lower() == "anthropic-beta"]


def pdf_block(raw: bytes = PDF, title: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "document", "source": {
        "type": "base64", "media_type": "application/pdf",
        "data": base64.b64encode(raw).decode()}}
    if title:
        block["title"] = title
    return block


def inline(media: str, raw: bytes) -> dict[str, Any]:
    return {"inlineData": {"mimeType": media, "data": base64.b64encode(raw).decode()}}


# -- file_url on Anthropic's own API: a url source, nothing fetched (ANT-D5) -----------------------

def test_anthropic_sends_a_url_source_titled_with_the_filename():
    got = content("anthropic", req(file_part(file_url=DOC_URL, filename="report.pdf")))
    assert got[1] == {"type": "document", "title": "report.pdf",
                      "source": {"type": "url", "url": DOC_URL}}


def test_anthropic_url_source_without_filename_has_no_title_and_keeps_cache_control():
    part = file_part(file_url=DOC_URL)
    part["cache_control"] = {"type": "ephemeral"}
    got = content("anthropic", req(part))
    assert got[1] == {"type": "document", "source": {"type": "url", "url": DOC_URL},
                      "cache_control": {"type": "ephemeral"}}


def test_anthropic_asks_only_for_images_and_ignores_fetched_document_bytes():
    r = req(image_part(IMG_URL), file_part(file_url=DOC_URL))
    with pytest.raises(ImagesNeeded) as info:
        build("anthropic", r)
    assert info.value.urls == (IMG_URL,)
    got = content("anthropic", r, {IMG_URL: ("image/png", PNG),
                                   DOC_URL: ("application/pdf", PDF)})
    assert got[2] == {"type": "document", "source": {"type": "url", "url": DOC_URL}}


def test_anthropic_url_sources_do_not_count_towards_the_32_mb(monkeypatch):
    monkeypatch.setattr(anthropic, "MAX_DOCUMENT_BYTES", 10)
    content("anthropic", req(file_part(file_url=DOC_URL), file_part(file_url=NOTES_URL)))


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("url", ["ftp://docs.example.com/a.pdf", "file:///etc/passwd",
                                 "docs.example.com/a.pdf"])
def test_a_file_url_that_is_not_http_is_a_400(vendor, url):
    err = refusal(vendor, req(file_part(file_url=url)))
    assert err.status == 400 and "file_url must be an http(s) URL" in err.message


@pytest.mark.parametrize("vendor", VENDORS)
def test_file_data_wins_over_file_url(vendor):
    data = "data:application/pdf;base64," + base64.b64encode(PDF).decode()
    got = content(vendor, req(file_part(file_data=data, file_url=DOC_URL)))
    assert got[1] == (pdf_block() if vendor in CLAUDE else inline("application/pdf", PDF))


# -- file_url on Bedrock and Vertex Claude: the fetched bytes, as a data URL's (ANT-D5) ---------

@pytest.mark.parametrize("vendor", ["bedrock", "vertex-claude"])
@pytest.mark.parametrize("media", ["application/pdf", "application/octet-stream", ""])
def test_cloud_claude_inlines_a_fetched_pdf(vendor, media):
    got = content(vendor, req(file_part(file_url=DOC_URL, filename="report.pdf")),
                  {DOC_URL: (media, PDF)})
    assert got[1] == pdf_block(title="report.pdf")


@pytest.mark.parametrize("vendor", ["bedrock", "vertex-claude"])
def test_cloud_claude_inlines_fetched_text_as_a_text_document(vendor):
    text = "Zeile eins: äöü €\n"
    got = content(vendor, req(file_part(file_url=NOTES_URL)),
                  {NOTES_URL: ("text/plain", text.encode())})
    assert got[1] == {"type": "document",
                      "source": {"type": "text", "media_type": "text/plain", "data": text}}


@pytest.mark.parametrize("vendor", ["bedrock", "vertex-claude"])
@pytest.mark.parametrize("media, raw", [("text/html", b"<html></html>"), ("image/png", PNG),
                                        ("application/octet-stream", b"PK\x03\x04 zip")])
def test_cloud_claude_refuses_other_fetched_types(vendor, media, raw):
    err = refusal(vendor, req(file_part(file_url=DOC_URL)), {DOC_URL: (media, raw)})
    assert err.status == 400 and err.code == "unsupported_content"
    assert "Anthropic" in err.message and "messages[0].content[1]" in err.message


@pytest.mark.parametrize("vendor", ["bedrock", "vertex-claude"])
def test_cloud_claude_fetched_text_must_be_utf8(vendor):
    err = refusal(vendor, req(file_part(file_url=NOTES_URL)),
                  {NOTES_URL: ("text/plain", b"\xff\xfe bad")})
    assert err.status == 400 and "not UTF-8" in err.message


@pytest.mark.parametrize("vendor", ["bedrock", "vertex-claude"])
def test_cloud_claude_counts_fetched_documents_in_the_32_mb(vendor, monkeypatch):
    size = len(base64.b64encode(PDF))
    monkeypatch.setattr(anthropic, "MAX_DOCUMENT_BYTES", size + size // 2)
    data = "data:application/pdf;base64," + base64.b64encode(PDF).decode()
    images = {DOC_URL: ("application/pdf", PDF)}
    content(vendor, req(file_part(file_url=DOC_URL)), images)
    err = refusal(vendor, req(file_part(file_data=data), file_part(file_url=DOC_URL)), images)
    assert err.status == 413 and err.code == "document_too_large"
    assert "content[2]" in err.message


# -- missing bytes: ImagesNeeded with every URL, images and documents in order ------------------

@pytest.mark.parametrize("vendor", FETCHING)
def test_missing_documents_and_images_are_asked_for_together_in_order(vendor):
    img2 = "https://img.example.com/b.png"
    r = req(image_part(IMG_URL), file_part(file_url=DOC_URL), image_part(img2),
            file_part(file_url=NOTES_URL), file_part(file_url=DOC_URL), image_part(IMG_URL))
    with pytest.raises(ImagesNeeded) as info:
        build(vendor, r)
    assert info.value.urls == (IMG_URL, DOC_URL, img2, NOTES_URL)
    with pytest.raises(ImagesNeeded) as info:
        build(vendor, r, {IMG_URL: ("image/png", PNG), NOTES_URL: ("text/plain", b"hi")})
    assert info.value.urls == (DOC_URL, img2)


@pytest.mark.parametrize("vendor", FETCHING)
def test_everything_fetched_builds(vendor):
    r = req(image_part(IMG_URL), file_part(file_url=DOC_URL))
    got = content(vendor, r, {IMG_URL: ("image/png", PNG), DOC_URL: ("application/pdf", PDF)})
    assert len(got) == 3


# -- file_url on Gemini and Vertex Gemini: inlineData from the fetched bytes ----------------------

@pytest.mark.parametrize("vendor", ["gemini", "vertex-gemini"])
@pytest.mark.parametrize("media, raw, sent", [
    ("application/pdf", PDF, "application/pdf"),
    ("application/octet-stream", PDF, "application/pdf"),
    ("", PDF, "application/pdf"),
    ("text/plain", b"hello notes", "text/plain"),
    ("text/csv", b"a,b\n1,2\n", "text/csv"),
    ("application/octet-stream", PNG, "image/png"),
])
def test_gemini_inlines_fetched_documents(vendor, media, raw, sent):
    got = content(vendor, req(file_part(file_url=DOC_URL, filename="x")), {DOC_URL: (media, raw)})
    assert got[1] == inline(sent, raw)


@pytest.mark.parametrize("vendor", ["gemini", "vertex-gemini"])
def test_gemini_refuses_fetched_bytes_of_no_known_type(vendor):
    err = refusal(vendor, req(file_part(file_url=DOC_URL)),
                  {DOC_URL: ("application/octet-stream", b"PK\x03\x04")})
    assert err.status == 400 and err.code == "unsupported_content"
    assert "file_url" in err.message


@pytest.mark.parametrize("vendor", ["gemini", "vertex-gemini"])
def test_gemini_counts_fetched_documents_in_the_20_mib(vendor, monkeypatch):
    monkeypatch.setattr(gemini, "MAX_INLINE_BYTES", len(PDF) + len(PNG))
    images = {DOC_URL: ("application/pdf", PDF), IMG_URL: ("image/png", PNG)}
    content(vendor, req(image_part(IMG_URL), file_part(file_url=DOC_URL)), images)
    err = refusal(vendor, req(image_part(IMG_URL), file_part(file_url=DOC_URL),
                              file_part(file_url=DOC_URL)), images)
    assert err.status == 413 and err.code == "document_too_large"
    assert "20 MiB" in err.message


# -- file_id: Anthropic's Files API on its own API only (ANT-D4, ANT-D6) --------------------------

def test_anthropic_file_id_is_a_file_source_with_the_files_beta():
    ex = build("anthropic", req(file_part(file_id=ANT_ID, filename="spec.pdf")))
    got = json.loads(ex.request.body)["messages"][0]["content"][1]
    assert got == {"type": "document", "title": "spec.pdf",
                   "source": {"type": "file", "file_id": ANT_ID}}
    assert beta_headers(ex) == [anthropic.FILES_BETA] == ["files-api-2025-04-14"]


@pytest.mark.parametrize("provider_betas, sent", [
    ((("anthropic-beta", "prompt-caching-2024-07-31"),),
     "prompt-caching-2024-07-31,files-api-2025-04-14"),
    ((("Anthropic-Beta", "a, files-api-2025-04-14 ,b"), ("anthropic-beta", "a,c")),
     "a,files-api-2025-04-14,b,c"),
    ((("x-other", "1"),), "files-api-2025-04-14"),
])
def test_the_files_beta_merges_with_the_providers_betas(provider_betas, sent):
    ex = build("anthropic", req(file_part(file_id=ANT_ID), file_part(file_id=ANT_ID + "x")),
               headers=provider_betas)
    assert beta_headers(ex) == [sent]
    names = [k.lower() for k, _ in ex.request.headers]
    assert names.count("anthropic-beta") == 1
    others = [h for h in provider_betas if h[0].lower() != "anthropic-beta"]
    assert all(h in ex.request.headers for h in others)


@pytest.mark.parametrize("parts", [
    (),
    (file_part(file_url=DOC_URL),),
    (file_part(file_data="data:application/pdf;base64," + base64.b64encode(PDF).decode()),),
])
def test_no_files_beta_without_a_file_id_document(parts):
    assert beta_headers(build("anthropic", req(*parts))) == []
    ex = build("anthropic", req(*parts), headers=(("anthropic-beta", "x-1"),))
    assert beta_headers(ex) == ["x-1"]


@pytest.mark.parametrize("vendor", CLAUDE)
@pytest.mark.parametrize("file_id", ["file-abc123", "file_", "file_abc-def", "files/abc",
                                     "FILE_abc", " file_abc", "file_abc\n"])
def test_other_file_ids_stay_refused_on_every_claude_channel(vendor, file_id):
    err = refusal(vendor, req(file_part(file_id=file_id)))
    assert err.status == 400 and err.code == "unsupported_content"
    assert "file_id is not supported by Anthropic channels" in err.message


@pytest.mark.parametrize("vendor", ["bedrock", "vertex-claude"])
def test_anthropic_file_ids_are_refused_on_bedrock_and_vertex(vendor):
    err = refusal(vendor, req(file_part(file_id=ANT_ID)))
    assert err.status == 400 and err.code == "unsupported_content"


def test_bedrock_never_gets_the_files_beta():
    b = body("bedrock", req(file_part(file_url=DOC_URL)), {DOC_URL: ("application/pdf", PDF)},
             headers=(("anthropic-beta", "x-1"),))
    assert b["anthropic_beta"] == ["x-1"]


@given(st.text(string.ascii_letters + string.digits, min_size=1, max_size=40))
def test_every_anthropic_shaped_id_is_sent(tail):
    got = content("anthropic", req(file_part(file_id="file_" + tail)))
    assert got[1]["source"] == {"type": "file", "file_id": "file_" + tail}


@given(st.text(max_size=30))
def test_an_id_is_sent_exactly_when_it_has_anthropics_form(file_id):
    shaped = file_id.startswith("file_") and len(file_id) > 5 and file_id[5:].isascii() \
        and file_id[5:].isalnum()
    try:
        ex = build("anthropic", req(file_part(file_id=file_id)))
    except ClientError as exc:
        assert not shaped and exc.code == "unsupported_content"
    else:
        assert shaped and beta_headers(ex) == [anthropic.FILES_BETA]


# -- file_id on Gemini: Files API names; on Vertex Gemini: gs:// objects --------------------------

@pytest.mark.parametrize("file_id", ["files/abc-123", gemini.FILES_URI + "abc-123"])
@pytest.mark.parametrize("filename, mime", [
    (None, "application/pdf"), ("spec.pdf", "application/pdf"), ("notes.TXT", "text/plain"),
    ("readme.md", "text/markdown"), ("t.csv", "text/csv"), ("p.html", "text/html"),
    ("d.json", "application/json"), ("a.png", "image/png"), ("b.jpeg", "image/jpeg"),
    ("archive.tar.gz", "application/pdf"), ("noext", "application/pdf"),
])
def test_gemini_reads_its_files_api_names_as_file_data(file_id, filename, mime):
    spec = {"file_id": file_id, **({"filename": filename} if filename else {})}
    got = content("gemini", req(file_part(**spec)))
    assert got[1] == {"fileData": {"mimeType": mime,
                                   "fileUri": gemini.FILES_URI + "abc-123"}}


@pytest.mark.parametrize("file_id", [
    "file-abc123", ANT_ID, "gs://bucket/doc.pdf", "files/", "files/-abc", "files/abc-",
    "files/ABC", "files/a/b", "files/" + "a" * 41, "https://example.com/v1beta/files/abc",
    "http://generativelanguage.googleapis.com/v1beta/files/abc",
    gemini.FILES_URI + "abc?alt=media"])
def test_gemini_refuses_other_file_ids(file_id):
    err = refusal("gemini", req(file_part(file_id=file_id)))
    assert err.status == 400 and err.code == "unsupported_content"
    assert "file_id" in err.message and "gemini" in err.message


@pytest.mark.parametrize("file_id, filename, mime", [
    ("gs://my-bucket/docs/report.pdf", None, "application/pdf"),
    ("gs://my-bucket/docs/notes.txt", None, "text/plain"),
    ("gs://my-bucket/docs/blob", "notes.md", "text/markdown"),
    ("gs://my.bucket_1/x", None, "application/pdf"),
])
def test_vertex_gemini_reads_cloud_storage_objects_as_file_data(file_id, filename, mime):
    spec = {"file_id": file_id, **({"filename": filename} if filename else {})}
    got = content("vertex-gemini", req(file_part(**spec)))
    assert got[1] == {"fileData": {"mimeType": mime, "fileUri": file_id}}


@pytest.mark.parametrize("file_id", ["files/abc-123", gemini.FILES_URI + "abc", "file-abc",
                                     "gs://bucket", "gs://bucket/", "gs://B/x", "gs:/b/x",
                                     "gs://bucket/a b"])
def test_vertex_gemini_refuses_other_file_ids(file_id):
    err = refusal("vertex-gemini", req(file_part(file_id=file_id)))
    assert err.status == 400 and err.code == "unsupported_content"


@given(st.text(string.ascii_lowercase + string.digits + "-", max_size=45))
def test_files_api_names_and_uris_agree(name):
    by_name = gemini.file_uri("files/" + name)
    assert by_name == gemini.file_uri(gemini.FILES_URI + name)
    valid = 0 < len(name) <= 40 and not name.startswith("-") and not name.endswith("-")
    assert by_name == (gemini.FILES_URI + name if valid else None)
    assert gemini.file_uri("files/" + name, vertex=True) is None


def test_file_data_parts_do_not_count_in_the_inline_limit(monkeypatch):
    monkeypatch.setattr(gemini, "MAX_INLINE_BYTES", 0)
    content("gemini", req(file_part(file_id="files/abc")))
    content("vertex-gemini", req(file_part(file_id="gs://b-1/x.pdf")))
