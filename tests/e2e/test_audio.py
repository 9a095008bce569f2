"""/v1/audio/transcriptions end to end: the openai SDK uploads a file through the gateway to a
fake OpenAI-compatible or Azure upstream, which checks it got the file bytes intact."""

from __future__ import annotations

import email
import email.policy
import json

import httpx
import openai
import pytest

from tests.fakes.upstream import FakeUpstream, Reply, Seen, json_reply
from tests.harness import run_gateway

KEY = "sk-audio-test"
#: bytes that look like multipart framing, so a parser that cuts at the wrong place shows it
AUDIO = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 64 + b"\r\n--boundary\r\n\r\n--"



class FakeWhisper:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.forms: list[dict] = []
        self.up = FakeUpstream(self.handle)

    def handle(self, seen: Seen) -> Reply:
        try:  # the stdlib's MIME parser as the oracle, not the library the gateway uses
            head = f"Content-Type: {seen.headers['content-type']}\r\n\r\n".encode()
            msg = email.message_from_bytes(head + seen.body, policy=email.policy.HTTP)
            assert msg.is_multipart() and not msg.defects, msg.defects
            fields, files = {}, {}
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                data = part.get_payload(decode=True)
                if part.get_filename():
                    files[name] = (part.get_filename(), data, part.get_content_type())
                else:
                    fields[name] = data.decode()
            self.forms.append({"path": seen.path, "fields": fields, "headers": seen.headers})
            if files.get("file", (None, None))[1] != AUDIO:
                self.problems.append("file bytes changed")
        except Exception as exc:  # reported by the test
            self.problems.append(repr(exc))
            return json_reply({"error": {"message": "bad form", "type": "x"}}, 400)
        fmt = fields.get("response_format", "json")
        if fmt == "text":
            return Reply(headers=[("content-type", "text/plain; charset=utf-8")],
                         pieces=[b"hello from the fake whisper\n"], chunked=False)
        return json_reply({"text": f"hello from {fields.get('model')}"})


@pytest.fixture
def whisper():
    w = FakeWhisper()
    yield w
    w.up.close()


def config(url: str) -> str:
    return f"""
providers:
  - provider: oa
    base_url: {url}/v1/chat/completions
    api: sk-up
    model:
      - whisper-1
      - whisper-1: whisper
  - provider: az
    base_url: {url}
    engine: azure
    api: az-key
    model:
      - whisper-dep: whisper-az
api_keys:
  - api: {KEY}
"""


def test_sdk_transcription_json_text_and_renamed(backend, whisper):
    with run_gateway(config(whisper.up.url), backend=backend) as gw:
        client = gw.openai(KEY)
        got = client.audio.transcriptions.create(model="whisper-1",
                                                 file=("a.wav", AUDIO, "audio/wav"))
        assert got.text == "hello from whisper-1"
        text = client.audio.transcriptions.create(model="whisper", response_format="text",
                                                  language="en",
                                                  file=("a.wav", AUDIO, "audio/wav"))
        assert text.strip() == "hello from the fake whisper"
        raw = httpx.post(gw.url + "/v1/audio/transcriptions",
                         headers={"authorization": f"Bearer {KEY}"},
                         data={"model": "whisper-1", "response_format": "text"},
                         files={"file": ("a.wav", AUDIO, "audio/wav")})
        assert raw.status_code == 200
        assert raw.headers["content-type"] == "text/plain; charset=utf-8"
    assert whisper.problems == []
    first, second, _ = whisper.forms
    assert first["path"] == "/v1/audio/transcriptions"
    assert first["headers"]["authorization"] == "Bearer sk-up"
    assert first["fields"]["model"] == "whisper-1"
    assert second["fields"] == {"model": "whisper-1", "response_format": "text",
                                "language": "en"}  # renamed for the upstream


def test_azure_transcription(backend, whisper):
    with run_gateway(config(whisper.up.url), backend=backend) as gw:
        got = gw.openai(KEY).audio.transcriptions.create(model="whisper-az",
                                                         file=("a.wav", AUDIO, "audio/wav"))
    assert got.text == "hello from whisper-dep"
    assert whisper.problems == []
    (form,) = whisper.forms
    assert form["path"] == ("/openai/deployments/whisper-dep/audio/transcriptions"
                            "?api-version=2024-10-21")
    assert form["headers"]["api-key"] == "az-key"


def test_retry_on_the_next_channel_and_errors(backend):
    down = FakeUpstream(lambda seen: json_reply({"error": {"message": "overloaded",
                                                           "type": "server_error"}}, 503))
    ok = FakeWhisper()
    conf = f"""
providers:
  - {{provider: a, base_url: "{down.url}/v1", api: k1, model: [whisper-1]}}
  - {{provider: b, base_url: "{ok.up.url}/v1", api: k2, model: [whisper-1]}}
api_keys:
  - api: {KEY}
"""
    try:
        with run_gateway(conf, backend=backend) as gw:
            client = gw.openai(KEY)
            got = client.audio.transcriptions.create(model="whisper-1",
                                                     file=("a.wav", AUDIO, "audio/wav"))
            assert got.text == "hello from whisper-1"
            assert len(down.seen) == 1 and down.seen[0].body.count(AUDIO) == 1
            with pytest.raises(openai.BadRequestError) as exc:
                client.audio.transcriptions.create(model="", file=("a.wav", AUDIO))
            assert exc.value.body["code"] == "invalid_model"
            raw = httpx.post(gw.url + "/v1/audio/transcriptions",
                             headers={"authorization": f"Bearer {KEY}"},
                             data={"model": "whisper-1"})
            assert raw.status_code == 400
            assert json.loads(raw.content)["error"]["code"] in ("missing_file",
                                                                "invalid_multipart")
            with pytest.raises(openai.NotFoundError):
                client.audio.transcriptions.create(model="nope", file=("a.wav", AUDIO))
        assert ok.problems == []
    finally:
        down.close()
        ok.up.close()
