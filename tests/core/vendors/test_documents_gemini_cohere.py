"""Issue 20: ``file`` and ``input_audio`` parts on Gemini and Cohere, as each vendor reads them
(the gateway builds the request; no sockets)."""

from __future__ import annotations

import base64

from tests.core.test_failover_parts import (
    AUDIO_PART,
    ID_PART,
    PDF,
    PDF_PART,
    TEXT_PART,
    error_of,
    first_channel,
    gateway,
    send,
)


def test_gemini_reads_pdf_and_text_files_as_inline_data():
    _, body = first_channel(send(gateway("gemini"), [PDF_PART, TEXT_PART]))
    parts = body["contents"][0]["parts"]
    assert parts[1]["inlineData"]["mimeType"] == "application/pdf"
    assert base64.b64decode(parts[1]["inlineData"]["data"]) == PDF
    assert parts[2]["inlineData"] == {"mimeType": "text/plain",
                                      "data": base64.b64encode(b"hello notes").decode()}


def test_gemini_reads_an_untyped_pdf_data_url_as_a_pdf():
    untyped = {"type": "file", "file": {
        "file_data": "data:application/octet-stream;base64," + base64.b64encode(PDF).decode()}}
    _, body = first_channel(send(gateway("gemini"), [untyped]))
    assert body["contents"][0]["parts"][1]["inlineData"]["mimeType"] == "application/pdf"


def test_gemini_reads_audio_as_inline_data_with_its_mime_type():
    mp3 = {"type": "input_audio", "input_audio": {"data": "SUQz", "format": "mp3"}}
    _, body = first_channel(send(gateway("gemini"), [AUDIO_PART, mp3]))
    parts = body["contents"][0]["parts"]
    assert [p["inlineData"]["mimeType"] for p in parts[1:]] == ["audio/wav", "audio/mp3"]


def test_gemini_refuses_a_file_id_naming_itself():
    status, err = error_of(send(gateway("gemini"), [ID_PART]))
    assert (status, err["code"]) == (400, "unsupported_content")
    assert "file_id" in err["message"] and "gemini" in err["message"]


def test_gemini_images_over_the_limit_keep_their_400():
    big = {"type": "image_url", "image_url": {
        "url": "data:image/png;base64," + base64.b64encode(b"\0" * (21 * 1024 * 1024)).decode()}}
    status, err = error_of(send(gateway("gemini"), [big]))
    assert (status, err["code"]) == (400, "request_too_large")


def test_cohere_sends_text_files_as_documents_and_keeps_the_text():
    untitled = {"type": "file", "file": {"file_data": "data:text/markdown,%23%20Title"}}
    _, body = first_channel(send(gateway("cohere"), [TEXT_PART, untitled]))
    assert body["documents"] == [{"data": {"title": "notes.txt", "text": "hello notes"}},
                                 {"data": {"text": "# Title"}}]
    assert body["messages"] == [{"role": "user",
                                 "content": [{"type": "text", "text": "what is in it?"}]}]


def test_cohere_sends_no_documents_without_files():
    _, body = first_channel(send(gateway("cohere")))
    assert "documents" not in body


def test_cohere_refuses_a_textless_pdf_file_id_and_audio_naming_itself():
    for part, code, words in ((PDF_PART, "unsupported_content", "no text layer"),
                              (ID_PART, "unsupported_content", "file_id"),
                              (AUDIO_PART, "unsupported_content", "input_audio")):
        status, err = error_of(send(gateway("cohere"), [part]))
        assert (status, err["code"]) == (400, code)
        assert words in err["message"] and "cohere" in err["message"]


def test_cohere_refuses_an_image_file_as_unsupported_content():
    png = {"type": "file", "file": {"file_data": "data:image/png;base64,"
                                    + base64.b64encode(b"\x89PNG\r\n").decode()}}
    status, err = error_of(send(gateway("cohere"), [png]))
    assert (status, err["code"]) == (400, "unsupported_content")
    assert "image/png" in err["message"]


def test_cohere_refuses_a_text_file_that_is_not_utf8():
    bad = {"type": "file", "file": {"file_data": "data:text/plain;base64,"
                                    + base64.b64encode(b"\xff\xfe\xfa").decode()}}
    status, err = error_of(send(gateway("cohere"), [bad]))
    assert status == 400 and "UTF-8" in err["message"]
