"""Issue 20: a PDF sent to a Cohere v2 channel becomes a text document. The gateway extracts the
text layer with pypdf (pages joined with a blank line) within byte, page, token and character
caps (413 ``document_too_large``); a malformed PDF is a 400 ``invalid_request``, a scan (no text
layer) or a password-protected PDF a 400 ``unsupported_content`` (the router tries the next
channel). A ``file_url`` is read from ``ctx.images`` or asked for with ``ImagesNeeded``."""

from __future__ import annotations

import base64
import io
import json

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from tests.core.test_failover_parts import AUDIO_PART, error_of, first_channel, gateway, send
from tests.core.vendors.test_cohere import make_ctx
from uniapi_core.errors import ClientError
from uniapi_core.vendors import cohere
from uniapi_core.vendors.base import ChatContext, ImagesNeeded


def make_pdf(*pages: bytes, password: str | None = None) -> bytes:
    """A PDF whose pages have these content streams (Helvetica as /F1)."""
    w = PdfWriter()
    font = w._add_object(DictionaryObject({
        NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica")}))
    for content in pages:
        page = w.add_blank_page(612, 792)
        page[NameObject("/Resources")] = DictionaryObject({
            NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})
        stream = DecodedStreamObject()
        stream.set_data(content)
        page[NameObject("/Contents")] = w._add_object(stream)
    if password is not None:
        w.encrypt(password, algorithm="AES-128")
    out = io.BytesIO()
    w.write(out)
    return out.getvalue()


def text(s: str) -> bytes:
    return b"BT /F1 12 Tf 72 700 Td (" + s.encode() + b") Tj ET"


HELLO = make_pdf(text("Hello"))


def part(data: bytes, media: str = "application/pdf", filename: str | None = "a.pdf") -> dict:
    f = {"file_data": f"data:{media};base64," + base64.b64encode(data).decode()}
    if filename is not None:
        f["filename"] = filename
    return {"type": "file", "file": f}


def documents(*parts) -> list:
    _, body = first_channel(send(gateway("cohere"), list(parts)))
    return body["documents"]


def refusal(*parts) -> tuple[int, dict]:
    return error_of(send(gateway("cohere"), list(parts)))


def test_the_text_is_sent_as_a_document_with_the_filename_as_title():
    assert documents(part(HELLO)) == [{"data": {"title": "a.pdf", "text": "Hello"}}]


def test_without_a_filename_there_is_no_title():
    assert documents(part(HELLO, filename=None)) == [{"data": {"text": "Hello"}}]


def test_pages_are_joined_with_a_blank_line():
    pdf = make_pdf(text("One"), text("Two"), text("Three"))
    assert documents(part(pdf))[0]["data"]["text"] == "One\n\nTwo\n\nThree"


@pytest.mark.parametrize("media", ["application/octet-stream", ""])
def test_an_untyped_file_is_sniffed_as_a_pdf(media):
    assert documents(part(HELLO, media)) == [{"data": {"title": "a.pdf", "text": "Hello"}}]


def test_untyped_bytes_that_are_neither_pdf_nor_image_keep_their_400():
    status, err = refusal(part(b"plain bytes", "application/octet-stream"))
    assert status == 400 and "cannot tell the media type" in err["message"]


def test_a_pdf_next_to_a_text_file_keeps_the_order():
    notes = part(b"hello notes", "text/plain", "notes.txt")
    assert documents(part(HELLO), notes) == [
        {"data": {"title": "a.pdf", "text": "Hello"}},
        {"data": {"title": "notes.txt", "text": "hello notes"}}]


def test_too_many_bytes_is_413_naming_the_limit():
    big = HELLO + b"%" * cohere.MAX_PDF_BYTES
    status, err = refusal(part(big))
    assert (status, err["code"]) == (413, "document_too_large")
    assert str(cohere.MAX_PDF_BYTES) in err["message"]


def test_too_many_pages_is_413_naming_the_limit():
    pdf = make_pdf(*[text("p")] * (cohere.MAX_PDF_PAGES + 1))
    status, err = refusal(part(pdf))
    assert (status, err["code"]) == (413, "document_too_large")
    assert str(cohere.MAX_PDF_PAGES) in err["message"]


def test_the_bounds_are_for_the_whole_request():
    pages = [text("p")] * (cohere.MAX_PDF_PAGES // 2 + 1)
    status, err = refusal(part(make_pdf(*pages)), part(make_pdf(*pages, text("q"))))
    assert (status, err["code"]) == (413, "document_too_large")
    assert "the request's PDFs have" in err["message"]
    pdfs = [part(make_pdf(text(f"file {i}"))) for i in range(cohere.MAX_PDF_FILES + 1)]
    status, err = refusal(*pdfs)
    assert (status, err["code"]) == (413, "document_too_large")
    assert f"more than {cohere.MAX_PDF_FILES} PDFs" in err["message"]
    assert len(documents(*pdfs[:-1])) == cohere.MAX_PDF_FILES


def test_a_retry_reuses_the_text_and_the_refusal(monkeypatch):
    """The request's next attempt (the same parsed request) does not extract again: the
    outcome of each PDF, text or refusal, is kept in the request's memo."""
    import pypdf

    from uniapi_core.request import parse_openai_chat
    opened = []
    real = pypdf.PdfReader
    monkeypatch.setattr(pypdf, "PdfReader", lambda *a, **k: opened.append(1) or real(*a, **k))
    req = parse_openai_chat({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "read"}, part(HELLO)]}]})
    first = cohere.build_exchange(req, make_ctx()).request.body
    assert cohere.build_exchange(req, make_ctx()).request.body == first
    assert len(opened) == 1
    locked = parse_openai_chat({"model": "m", "messages": [{"role": "user", "content": [
        part(make_pdf(text("x"), password="pw"))]}]})
    for _ in range(2):
        with pytest.raises(ClientError, match="encrypted with a password"):
            cohere.build_exchange(locked, make_ctx())
    assert len(opened) == 2


def test_a_content_stream_over_the_token_budget_is_413():
    pdf = make_pdf(b"BT /F1 1 Tf " + b"(a) Tj " * cohere.MAX_PDF_TOKENS + b"ET")
    status, err = refusal(part(pdf))
    assert (status, err["code"]) == (413, "document_too_large")
    assert str(cohere.MAX_PDF_TOKENS) in err["message"]


def test_text_over_the_character_cap_is_413(monkeypatch):
    monkeypatch.setattr(cohere, "MAX_PDF_CHARS", 7)
    status, err = refusal(part(make_pdf(text("Hello"), text("World"))))
    assert (status, err["code"]) == (413, "document_too_large")
    assert "7 characters" in err["message"]


def test_a_scan_with_no_text_layer_is_unsupported_content():
    status, err = refusal(part(make_pdf(b"", b"0 0 m 10 10 l S")))
    assert (status, err["code"]) == (400, "unsupported_content")
    assert "no text layer" in err["message"] and "cohere" in err["message"]


def test_a_scan_falls_over_to_gemini_with_its_bytes():
    scan = make_pdf(b"")
    channel, body = first_channel(send(gateway("cohere", "gemini"), [part(scan)]))
    assert channel == "gemini"
    assert base64.b64decode(body["contents"][0]["parts"][1]["inlineData"]["data"]) == scan


def test_an_encrypted_pdf_with_the_empty_password_is_read():
    assert documents(part(make_pdf(text("Secret"), password="")))[0]["data"]["text"] == "Secret"


def test_a_pdf_locked_with_a_password_is_unsupported_content():
    status, err = refusal(part(make_pdf(text("Secret"), password="pw")))
    assert (status, err["code"]) == (400, "unsupported_content")
    assert "encrypted" in err["message"]


def test_malformed_pdf_is_400_invalid_request_with_a_short_message():
    status, err = refusal(part(b"%PDF-1.4\nnot really\n%%EOF\n"))
    assert (status, err["code"]) == (400, "invalid_request")
    assert "the PDF could not be read" in err["message"]
    assert "Traceback" not in err["message"] and len(err["message"]) < 400


def test_audio_is_unsupported_content():
    status, err = refusal(AUDIO_PART)
    assert (status, err["code"]) == (400, "unsupported_content")
    assert "input_audio" in err["message"] and "cohere" in err["message"]


def _check_never_crashes(data: bytes) -> None:
    try:
        cohere._pdf_text(data, "doc")
    except ClientError as exc:
        assert exc.status in (400, 413)
        assert exc.code in ("invalid_request", "unsupported_content", "document_too_large")


FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.binary(max_size=400))
def test_arbitrary_bytes_after_the_magic_are_only_ever_client_errors(tail):
    _check_never_crashes(b"%PDF-" + tail)


VALID = make_pdf(text("Hello"), text("World"))


@FAST
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1,
                max_size=8),
       st.integers(0, len(VALID)))
def test_mutations_of_a_valid_pdf_are_only_ever_client_errors(flips, cut):
    data = bytearray(VALID)
    for at, value in flips:
        data[at] = value
    _check_never_crashes(bytes(data[:max(cut, 5)]))


# -- file_url: fetched by the gateway into ctx.images ------------------------------------------

URL = "https://docs.example.com/report.pdf"


def context(images: dict) -> ChatContext:
    return attrs.evolve(make_ctx(), images=images)


def url_request(*urls: str) -> dict:
    content = [{"type": "text", "text": "read"}] + [
        {"type": "file", "file": {"file_url": u, "filename": "report.pdf"}} for u in urls]
    return {"model": "m", "messages": [{"role": "user", "content": content}]}


def body_of(exchange) -> dict:
    return json.loads(exchange.request.body)


@pytest.mark.parametrize("media", ["application/pdf", "application/octet-stream", ""])
def test_a_fetched_file_url_is_a_document(media):
    ex = cohere.build_exchange(url_request(URL), context({URL: (media, HELLO)}))
    assert body_of(ex)["documents"] == [{"data": {"title": "report.pdf", "text": "Hello"}}]


def test_a_fetched_text_file_url_is_a_document():
    ex = cohere.build_exchange(url_request(URL), context({URL: ("text/plain", b"notes")}))
    assert body_of(ex)["documents"] == [{"data": {"title": "report.pdf", "text": "notes"}}]


def test_missing_file_urls_are_asked_for_all_at_once():
    other = "https://docs.example.com/b.pdf"
    with pytest.raises(ImagesNeeded) as exc:
        cohere.build_exchange(url_request(URL, other, URL), context({}))
    assert exc.value.urls == (URL, other)
