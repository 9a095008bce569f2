"""A fake upstream that plays Claude on Anthropic (``/v1/messages``), Bedrock InvokeModel
(``/model/…/invoke[-with-response-stream]``) and Vertex (``/v1/projects/…:rawPredict`` /
``:streamRawPredict``, with a token endpoint at ``/token``), plus an OpenAI-compatible host
(``/v1/chat/completions``, whole or streamed), for ``tests/e2e/test_documents_claude.py``.

Each Claude request must carry, in its last user turn, a ``document`` block whose base64 data
decodes to ``expected`` (and whose ``title`` is ``title``, unless that is None), or, when
``document_url`` is given, a ``url`` source naming it; what is wrong is recorded in
``problems`` (checked by the test; a handler thread cannot fail it) and answered with a 400.
The answer says how many bytes the fake decoded (``answer_for``), whole or streamed in the
vendor's own framing. The ``file`` objects of OpenAI-host requests are kept in
``openai_files`` for the test to check.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.llm_vendors import anthropic_sse, bedrock_fx, compact
from tests.fakes.upstream import FakeUpstream, Reply, Seen, json_reply, sse_reply

TOKEN = "ya29.fake-documents-token"
BEDROCK_MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
PEM = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
    serialization.NoEncryption()).decode()


def gemini_reply(answer: str, stream: bool) -> Reply:
    """A Gemini answer of ``answer``: whole, or streamed as SSE in two pieces."""
    def response(text: str, last: bool) -> dict[str, Any]:
        cand: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"},
                                "index": 0}
        if last:
            cand["finishReason"] = "STOP"
        return {"candidates": [cand], "modelVersion": "gemini-2.5-flash",
                "usageMetadata": {"promptTokenCount": 300, "candidatesTokenCount": 6,
                                  "totalTokenCount": 306}}
    if not stream:
        return json_reply(response(answer, True))
    pieces = [answer[:10], answer[10:]]
    return Reply(headers=[("content-type", "text/event-stream")],
                 pieces=[b"data: " + compact(response(p, i == 1)) + b"\r\n\r\n"
                         for i, p in enumerate(pieces)])


def claude_providers(url: str, anthropic: tuple[str, ...] = ("anthropic",)) -> str:
    """``api.yaml`` provider blocks for the fake at ``url``: Anthropic (serving the aliases
    ``anthropic``), Bedrock (``bedrock``) and Vertex Claude (``vertex``, its token at
    ``/token``)."""
    key = PEM.replace("\n", "\\n")
    aliases = "".join(f"      - claude-sonnet-4-5-20250929: {a}\n" for a in anthropic)
    return f"""  - provider: ant
    engine: claude
    base_url: {url}/v1/messages
    api: sk-ant-up
    model:
{aliases}  - provider: bdr
    engine: aws
    base_url: {url}
    aws_access_key: AKIDEXAMPLE
    aws_secret_key: wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
    aws_region: us-east-1
    model:
      - {BEDROCK_MODEL}: bedrock
  - provider: vtx
    engine: vertex
    base_url: {url}
    project_id: proj-1
    client_email: svc@proj-1.iam.gserviceaccount.com
    private_key: '{key}'
    token_uri: {url}/token
    model:
      - claude-sonnet-4@20250514: vertex
"""


def answer_for(size: int) -> str:
    return f"The PDF holds {size} bytes."


class DocumentsFake:
    def __init__(self, expected: bytes, title: str | None,
                 document_url: str | None = None) -> None:
        self.expected = expected
        self.title = title  # None: not checked
        self.document_url = document_url  # a url source naming it is taken too
        self.openai_files: list[dict[str, Any]] = []  # the OpenAI host's file parts' objects
        self.problems: list[str] = []
        self.up = FakeUpstream(self.handle)

    @property
    def url(self) -> str:
        return self.up.url

    @property
    def calls(self) -> list[Seen]:
        """The model calls (token posts left out)."""
        return [s for s in self.up.seen if s.path != "/token"]

    def close(self) -> None:
        self.up.close()

    def bad(self, why: str) -> Reply:
        self.problems.append(why)
        return json_reply({"type": "error", "error": {"type": "invalid_request_error",
                                                      "message": f"fake: {why}"}}, status=400)

    def handle(self, seen: Seen) -> Reply:
        path = seen.path
        if path == "/token":
            return json_reply({"access_token": TOKEN, "expires_in": 3599,
                               "token_type": "Bearer"})
        try:
            req = seen.json()
            if path == "/v1/chat/completions":
                self.openai_files += [
                    p["file"] for m in req.get("messages") or [] if isinstance(m, dict)
                    and isinstance(m.get("content"), list) for p in m["content"]
                    if isinstance(p, dict) and p.get("type") == "file"]
                if req.get("stream"):
                    return sse_reply([{"id": "chatcmpl-doc", "object": "chat.completion.chunk",
                                       "created": 1, "model": "gpt-4o", "choices": [{
                                           "index": 0, "delta": {"role": "assistant",
                                                                 "content": "openai here"},
                                           "finish_reason": None}]},
                                      {"id": "chatcmpl-doc", "object": "chat.completion.chunk",
                                       "created": 1, "model": "gpt-4o", "choices": [{
                                           "index": 0, "delta": {}, "finish_reason": "stop"}]}])
                return json_reply({"id": "chatcmpl-doc", "object": "chat.completion",
                                   "created": 1, "model": "gpt-4o",
                                   "choices": [{"index": 0, "finish_reason": "stop",
                                                "message": {"role": "assistant",
                                                            "content": "openai here"}}],
                                   "usage": {"prompt_tokens": 1, "completion_tokens": 2,
                                             "total_tokens": 3}})
            if path == "/v1/messages":
                return self.claude(req, bool(req.get("stream")), "anthropic")
            if path.startswith("/model/"):
                if req.get("anthropic_version") != "bedrock-2023-05-31" or "stream" in req:
                    self.problems.append(f"bedrock body {sorted(req)}")
                return self.claude(req, path.endswith("/invoke-with-response-stream"),
                                   "bedrock")
            if "/publishers/anthropic/models/" in path:
                if seen.headers.get("authorization") != f"Bearer {TOKEN}":
                    return self.bad(f"vertex authorization {seen.headers.get('authorization')}")
                if req.get("anthropic_version") != "vertex-2023-10-16" or "model" in req:
                    self.problems.append(f"vertex body {sorted(req)}")
                stream = path.endswith(":streamRawPredict")
                if stream != bool(req.get("stream")):
                    self.problems.append(f"vertex stream flag {req.get('stream')!r} on {path}")
                return self.claude(req, stream, "vertex")
            return self.bad(f"no route {path}")
        except Exception as exc:  # noqa: BLE001 - reported by the test
            return self.bad(f"fake crashed: {exc!r}")

    def document_size(self, req: dict[str, Any]) -> int | None:
        """The decoded size of the checked document, None (and a problem) when it is wrong."""
        turns = req.get("messages") or []
        if not turns or turns[-1].get("role") != "user":
            self.problems.append(f"no final user turn: {turns!r:.200}")
            return None
        docs = [b for b in turns[-1].get("content") or [] if isinstance(b, dict)
                and b.get("type") == "document"]
        if len(docs) != 1:
            self.problems.append(f"{len(docs)} document blocks in the user turn")
            return None
        doc = docs[0]
        source = doc.get("source") or {}
        if self.document_url is not None and source.get("type") == "url":
            if source.get("url") != self.document_url:
                self.problems.append(f"document url {source.get('url')!r}")
                return None
            return len(self.expected)  # the vendor would fetch it
        if source.get("type") != "base64" or source.get("media_type") != "application/pdf":
            self.problems.append(f"document source {dict(source, data='…')!r}")
            return None
        if self.title is not None and doc.get("title") != self.title:
            self.problems.append(f"document title {doc.get('title')!r}")
        try:
            raw = base64.b64decode(source.get("data") or "", validate=True)
        except (binascii.Error, ValueError):
            self.problems.append("document data is not base64")
            return None
        if raw != self.expected:
            self.problems.append(f"document bytes differ ({len(raw)} received, "
                                 f"{len(self.expected)} sent)")
            return None
        return len(raw)

    def claude(self, req: dict[str, Any], stream: bool, vendor: str) -> Reply:
        size = self.document_size(req)
        if size is None:
            return self.bad(f"{vendor}: the document did not arrive intact")
        text = answer_for(size)
        usage = {"input_tokens": 1500, "output_tokens": 9}
        if not stream:
            return json_reply({"id": "msg_doc01", "type": "message", "role": "assistant",
                               "model": "claude-fake", "content": [{"type": "text",
                                                                    "text": text}],
                               "stop_reason": "end_turn", "stop_sequence": None,
                               "usage": usage})
        half = len(text) // 2
        events: list[dict[str, Any]] = [
            {"type": "message_start", "message": {
                "id": "msg_doc01", "type": "message", "role": "assistant",
                "model": "claude-fake", "content": [], "stop_reason": None,
                "stop_sequence": None, "usage": {"input_tokens": 1500, "output_tokens": 1}}},
            {"type": "content_block_start", "index": 0,
             "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0,
             "delta": {"type": "text_delta", "text": text[:half]}},
            {"type": "content_block_delta", "index": 0,
             "delta": {"type": "text_delta", "text": text[half:]}},
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                "stop_sequence": None},
             "usage": {"output_tokens": 9}},
            {"type": "message_stop"}]
        if vendor != "bedrock":
            return Reply(headers=[("content-type", "text/event-stream")],
                         pieces=anthropic_sse(events))
        events[-1]["amazon-bedrock-invocationMetrics"] = {
            "inputTokenCount": 1500, "outputTokenCount": 9, "invocationLatency": 100,
            "firstByteLatency": 30}
        body = bedrock_fx.stream(events)
        return Reply(headers=[("content-type", "application/vnd.amazon.eventstream")],
                     pieces=[body[i:i + 61] for i in range(0, len(body), 61)])
