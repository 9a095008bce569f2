"""File parts as Claude ``document`` blocks (docs/vendor-rules.md, ANT-D1..D4): the bodies for
PDF and text files on Anthropic, Bedrock (InvokeModel) and Vertex, and the refusals (other media
types, an OpenAI ``file_id``, documents over the 32 MB request limit), all before any upstream
call. Remote documents (``file_url``) and Anthropic's own file ids are in test_documents_urls.py
(ANT-D5, ANT-D6)."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import pytest

from uniapi_core.config.model import Provider, ProviderPreferences
from uniapi_core.errors import ClientError
from uniapi_core.vendors import anthropic, bedrock, vertex
from uniapi_core.vendors.base import ChatContext

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + random.Random(7).randbytes(3000) + b"\n%%EOF\n"


def data_url(media: str, raw: bytes) -> str:
    return f"data:{media};base64,{base64.b64encode(raw).decode()}"


def file_part(**spec: Any) -> dict[str, Any]:
    return {"type": "file", "file": spec}


def req(*parts: dict[str, Any], role: str = "user") -> dict[str, Any]:
    return {"model": "claude", "messages": [
        {"role": role, "content": [{"type": "text", "text": "Summarize"}, *parts]}]}


def ant_ctx(stream: bool = False) -> ChatContext:
    p = Provider(provider="ant", preferences=ProviderPreferences())
    return ChatContext(client_model="claude", upstream_model="claude-sonnet-4-20250514",
                       provider=p, api_key="k", stream=stream, include_usage=False,
                       response_id="chatcmpl-doc0123456789", created=1735689600,
                       entropy=random.Random(3))


def bedrock_ctx(stream: bool = False) -> ChatContext:
    p = Provider(provider="br", aws_access_key="AKIAEXAMPLE", aws_secret_key="secret",
                 aws_region="us-east-1", preferences=ProviderPreferences())
    return ChatContext(client_model="claude",
                       upstream_model="anthropic.claude-3-5-sonnet-20240620-v1:0", provider=p,
                       api_key=None, stream=stream, include_usage=False,
                       response_id="chatcmpl-doc0123456789", created=1735689600,
                       entropy=random.Random(3))


def vertex_ctx(stream: bool = False) -> ChatContext:
    p = Provider(provider="vx", project_id="proj-1", preferences=ProviderPreferences())
    return ChatContext(client_model="claude", upstream_model="claude-sonnet-4@20250514",
                       provider=p, api_key=None, stream=stream, include_usage=False,
                       response_id="chatcmpl-doc0123456789", created=1735689600,
                       entropy=random.Random(3), region="us-east5", access_token="tok")


BUILDERS = {
    "anthropic": lambda r, s=False: anthropic.build_exchange(r, ant_ctx(s)),
    "bedrock": lambda r, s=False: bedrock.build_exchange(r, bedrock_ctx(s)),
    "vertex": lambda r, s=False: vertex.build_exchange(r, vertex_ctx(s)),
}


def body(vendor: str, r: dict[str, Any], stream: bool = False) -> dict[str, Any]:
    return json.loads(BUILDERS[vendor](r, stream).request.body)


def refusal(vendor: str, r: dict[str, Any]) -> ClientError:
    with pytest.raises(ClientError) as info:
        BUILDERS[vendor](r)
    return info.value


@pytest.mark.parametrize("vendor", sorted(BUILDERS))
@pytest.mark.parametrize("stream", [False, True])
def test_pdf_becomes_a_base64_document_with_its_filename_as_title(vendor, stream):
    b = body(vendor, req(file_part(file_data=data_url("application/pdf", PDF),
                                   filename="report.pdf")), stream)
    content = b["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "Summarize"}
    assert content[1] == {"type": "document", "title": "report.pdf",
                          "source": {"type": "base64", "media_type": "application/pdf",
                                     "data": base64.b64encode(PDF).decode()}}
    assert base64.b64decode(content[1]["source"]["data"]) == PDF


@pytest.mark.parametrize("vendor", sorted(BUILDERS))
def test_text_file_becomes_a_text_document(vendor):
    text = "Line one\nZeile zwei: äöü €\n"
    b = body(vendor, req(file_part(file_data=data_url("text/plain", text.encode()),
                                   filename="notes.txt")))
    assert b["messages"][0]["content"][1] == {
        "type": "document", "title": "notes.txt",
        "source": {"type": "text", "media_type": "text/plain", "data": text}}


def test_no_filename_no_title_and_media_type_parameters_and_case_are_read():
    b = body("anthropic", req(file_part(
        file_data="data:Text/Plain;charset=utf-8;base64," + base64.b64encode(b"hi").decode())))
    assert b["messages"][0]["content"][1] == {
        "type": "document", "source": {"type": "text", "media_type": "text/plain",
                                       "data": "hi"}}


def test_octet_stream_pdf_is_recognised_by_its_magic():
    b = body("anthropic", req(file_part(file_data=data_url("application/octet-stream", PDF))))
    assert b["messages"][0]["content"][1]["source"]["media_type"] == "application/pdf"


def test_cache_control_on_the_part_reaches_the_document():
    part = file_part(file_data=data_url("application/pdf", PDF))
    part["cache_control"] = {"type": "ephemeral"}
    b = body("anthropic", req(part))
    assert b["messages"][0]["content"][1]["cache_control"] == {"type": "ephemeral"}


@pytest.mark.parametrize("vendor", sorted(BUILDERS))
@pytest.mark.parametrize("media", ["image/png", "application/zip",
                                   ("application/vnd.openxmlformats-officedocument"
                                    ".wordprocessingml.document"), "text/csv"])
def test_other_media_types_are_a_400_naming_type_and_vendor(vendor, media):
    err = refusal(vendor, req(file_part(file_data=data_url(media, b"PK\x03\x04 data"),
                                        filename="x.bin")))
    assert err.status == 400 and err.code == "unsupported_content"
    assert media in err.message and "Anthropic" in err.message
    assert "messages[0].content[1]" in err.message


@pytest.mark.parametrize("vendor", sorted(BUILDERS))
def test_file_id_is_a_400_channel_mismatch(vendor):
    err = refusal(vendor, req(file_part(file_id="file-abc123")))
    assert err.status == 400 and err.code == "unsupported_content"
    assert "file_id is not supported by Anthropic channels" in err.message


def test_file_data_wins_over_file_id():
    b = body("anthropic", req(file_part(file_id="file-abc",
                                        file_data=data_url("application/pdf", PDF))))
    assert b["messages"][0]["content"][1]["source"]["type"] == "base64"


@pytest.mark.parametrize("spec, fragment", [
    ({}, "file_data must be a data URL"),
    ({"file_data": base64.b64encode(PDF).decode()}, "file_data must be a data URL"),
    ({"file_data": "data:application/pdf;base64,@@@"}, "not valid base64"),
    ({"file_data": data_url("text/plain", b"\xff\xfe bad")}, "not UTF-8"),
])
def test_malformed_file_parts_are_400s(spec, fragment):
    err = refusal("anthropic", req(file_part(**spec)))
    assert err.status == 400 and fragment in err.message
    assert err.code != "invalid_image"


def test_file_part_that_is_not_an_object_is_a_400():
    err = refusal("anthropic", req({"type": "file", "file": "x.pdf"}))
    assert err.status == 400 and "'file' must be an object" in err.message


@pytest.mark.parametrize("role", ["system", "assistant"])
def test_files_outside_user_messages_stay_refused(role):
    err = refusal("anthropic", req(file_part(file_data=data_url("application/pdf", PDF)),
                                   role=role))
    assert err.code == "unsupported_content" and "'file'" in err.message


@pytest.mark.parametrize("vendor", sorted(BUILDERS))
def test_oversized_pdf_is_a_413_naming_the_limit(vendor):
    raw = b"%PDF-1.7\n" + b"\0" * (anthropic.MAX_DOCUMENT_BYTES * 3 // 4 + 16)
    err = refusal(vendor, req(file_part(file_data=data_url("application/pdf", raw))))
    assert err.status == 413 and err.code == "document_too_large"
    assert "32 MB" in err.message and str(anthropic.MAX_DOCUMENT_BYTES) in err.message


def test_the_limit_counts_all_documents_of_the_request(monkeypatch):
    monkeypatch.setattr(anthropic, "MAX_DOCUMENT_BYTES", 6000)
    one = file_part(file_data=data_url("application/pdf", PDF))  # 4,040 base64 bytes
    body("anthropic", req(one))
    err = refusal("anthropic", req(one, one))
    assert err.status == 413 and "content[2]" in err.message


def test_a_pdf_just_under_the_limit_is_sent(monkeypatch):
    monkeypatch.setattr(anthropic, "MAX_DOCUMENT_BYTES", len(base64.b64encode(PDF)))
    body("anthropic", req(file_part(file_data=data_url("application/pdf", PDF))))
