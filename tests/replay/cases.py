"""The cases the recorder records: name -> inputs (see ``replay.py`` for the case format).

Upstream answers come from the vendor fixtures in ``tests/data/<vendor>/`` (Anthropic, Bedrock,
Cloudflare, Cohere, Gemini) and synthesized OpenAI-compatible / Azure / Vertex answers. Streams
are sent in 97-byte pieces, so events straddle reads. The recorder copies every input into the
corpus file, so later edits here or in ``tests/data`` do not change what an existing case replays.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.fakes.upstream import Reply, json_reply, sse_reply

from .replay import AWS_ACCESS_KEY, AWS_SECRET_KEY, enc, reply_to_json

DATA = Path(__file__).resolve().parent.parent / "data"
KEY = "sk-replay-client-0001"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                           "parameters": {"type": "object", "properties": {
                                               "city": {"type": "string"}},
                                               "required": ["city"]}}}]
MESSAGES = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris? Réponds en français ✓"}]

# -- client requests -----------------------------------------------------------------------------


def http(method: str, path: str, body: bytes = b"", *, key: str | None = KEY,
         ctype: str | None = "application/json") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: gateway\r\nUser-Agent: replay/1\r\n"
    if ctype and body:
        head += f"Content-Type: {ctype}\r\n"
    if key is not None:
        head += f"Authorization: Bearer {key}\r\n"
    head += "Connection: close\r\n"
    if body or method == "POST":
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def chat(model: str = "m", *, stream: bool = False, tools: bool = False, usage: bool = True,
         **extra: Any) -> bytes:
    req: dict[str, Any] = {"model": model, "messages": MESSAGES, "max_tokens": 256,
                           "temperature": 0.2}
    if tools:
        req["tools"] = TOOLS
        req["tool_choice"] = "auto"
    if stream:
        req["stream"] = True
        if usage:
            req["stream_options"] = {"include_usage": True}
    req.update(extra)
    return http("POST", "/v1/chat/completions", json.dumps(req).encode())


# -- upstream replies ----------------------------------------------------------------------------


def pieces(data: bytes, size: int = 97) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def whole(path: str, status: int = 200, ctype: str = "application/json",
          headers: list[tuple[str, str]] | None = None) -> Reply:
    return Reply(status=status, headers=[("content-type", ctype)] + (headers or []),
                 pieces=[(DATA / path).read_bytes()], chunked=False)


def stream(path: str, ctype: str = "text/event-stream", cut_after: int | None = None) -> Reply:
    body = (DATA / path).read_bytes()
    return Reply(headers=[("content-type", ctype)], pieces=pieces(body), cut_after=cut_after)


def cut(path: str, ctype: str = "text/event-stream") -> Reply:
    """The fixture's pieces, then the connection closes before the chunked body ends."""
    body = (DATA / path).read_bytes()
    return Reply(headers=[("content-type", ctype)], pieces=pieces(body),
                 cut_after=len(pieces(body)))


def eventstream(path: str) -> Reply:
    return stream(path, ctype="application/vnd.amazon.eventstream")


# -- provider blocks -----------------------------------------------------------------------------

PROVIDER = {
    "gpt": "base_url: {up}/v1/chat/completions\n    api: sk-upstream-gpt",
    "openrouter": "base_url: {up}/api/v1/chat/completions\n    engine: openrouter\n"
                  "    api: sk-or-upstream",
    "azure": "base_url: {up}\n    engine: azure\n    api: az-upstream-key",
    "claude": "base_url: {up}/v1/messages\n    api: sk-ant-upstream",
    "gemini": "base_url: {up}/v1beta\n    api: AIza-upstream",
    "cohere": "base_url: {up}/v2/chat\n    engine: cohere\n    api: co-upstream",
    "cloudflare": "base_url: {up}\n    cf_account_id: acct1\n    api: cf-upstream",
    "aws": "base_url: {up}\n    engine: aws\n"
           f"    aws_access_key: {AWS_ACCESS_KEY}\n    aws_secret_key: {AWS_SECRET_KEY}\n"
           "    aws_region: us-east-1",
    "vertex": "engine: vertex\n    base_url: {up}\n    project_id: proj-1\n"
              "    client_email: svc@proj-1.iam.gserviceaccount.com\n"
              "    private_key: '{vertex_private_key}'\n    token_uri: {up}/token",
}
UPSTREAM_MODEL = {"gpt": "gpt-4o", "openrouter": "openai/gpt-4o", "azure": "gpt4o-deploy",
                  "claude": "claude-sonnet-4-20250514", "gemini": "gemini-2.5-flash",
                  "cohere": "command-a-03-2025", "cloudflare": "@cf/meta/llama-3.1-8b-instruct",
                  "aws": "anthropic.claude-3-5-sonnet-20240620-v1:0",
                  "vertex": "gemini-2.0-flash"}


def config(engine: str, channels: int = 1, extra_models: str = "") -> str:
    blocks = []
    for i in range(channels):
        block = PROVIDER[engine].replace("{up}", "{up%d}" % i)
        blocks.append(f"  - provider: {engine}{i}\n    {block}\n    model:\n"
                      f"      - \"{UPSTREAM_MODEL[engine]}\": m\n{extra_models}")
    return ("providers:\n" + "".join(blocks) +
            f"api_keys:\n  - api: {KEY}\n")


# -- synthesized OpenAI-compatible answers ---------------------------------------------------------

CREATED = 1735000000


def completion(message: dict[str, Any], finish: str = "stop", model: str = "gpt-4o"
               ) -> dict[str, Any]:
    return {"id": "chatcmpl-upstream-1", "object": "chat.completion", "created": CREATED,
            "model": model, "system_fingerprint": "fp_replay",
            "choices": [{"index": 0, "message": {"role": "assistant", **message},
                         "logprobs": None, "finish_reason": finish}],
            "usage": {"prompt_tokens": 31, "completion_tokens": 9, "total_tokens": 40,
                      "prompt_tokens_details": {"cached_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 0}}}


def chunk(delta: dict[str, Any], finish: str | None = None, usage: Any = None,
          model: str = "gpt-4o") -> dict[str, Any]:
    c: dict[str, Any] = {"id": "chatcmpl-upstream-1", "object": "chat.completion.chunk",
                         "created": CREATED, "model": model,
                         "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        c["choices"] = []
        c["usage"] = usage
    return c


USAGE = {"prompt_tokens": 31, "completion_tokens": 9, "total_tokens": 40}
TEXT_CHUNKS = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Il fait "}),
               chunk({"content": "beau à Paris ✓"}), chunk({}, "stop"), chunk({}, usage=USAGE)]
TOOL_CALL = {"id": "call_upstream_A1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}
TOOL_CHUNKS = [
    chunk({"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "id": "call_upstream_A1", "type": "function",
         "function": {"name": "get_weather", "arguments": ""}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\""}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": \"Paris\"}"}}]}),
    chunk({}, "tool_calls"), chunk({}, usage=USAGE)]
REASONING_CHUNKS = [chunk({"role": "assistant", "reasoning_content": "Think: "}),
                    chunk({"reasoning_content": "Paris, weather."}),
                    chunk({"content": "Sunny."}), chunk({}, "stop"),
                    chunk({}, usage={**USAGE, "completion_tokens_details": {
                        "reasoning_tokens": 5}})]


def sse_pieces(events: list[Any], done: bool = True) -> Reply:
    r = sse_reply(events, done)
    r.pieces = pieces(b"".join(r.pieces))
    return r


def openai_error(status: int, message: str, etype: str, code: str | None) -> Reply:
    return json_reply({"error": {"message": message, "type": etype, "param": None,
                                 "code": code}}, status)


AZURE_FILTER = {"choices": [], "created": 0, "id": "", "model": "", "object": "",
                "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {
                    "hate": {"filtered": False, "severity": "safe"}}}]}

# -- the case table ------------------------------------------------------------------------------

CASES: dict[str, dict[str, Any]] = {}


def case(name: str, engine: str, request: bytes, *replies: Reply, channels: int = 1,
         second: list[Reply] | None = None, discover: bool = False,
         settings: dict[str, Any] | None = None, conf: str | None = None) -> None:
    assert name not in CASES, name
    upstreams = [[reply_to_json(r) for r in replies]]
    if channels > 1:
        upstreams.append([reply_to_json(r) for r in second or []])
    conf = conf or config(engine if engine in PROVIDER else "gpt", channels)
    CASES[name] = {"engine": engine, "config": conf,
                   "upstreams": upstreams, "client_request": enc(request),
                   "discover": discover, "settings": settings or {}}


# gpt: plain OpenAI-compatible
case("gpt-chat-whole", "gpt", chat(), json_reply(completion({"content": "Il fait beau ✓"})))
case("gpt-chat-stream", "gpt", chat(stream=True), sse_pieces(TEXT_CHUNKS))
case("gpt-tools-whole", "gpt", chat(tools=True),
     json_reply(completion({"content": None, "tool_calls": [TOOL_CALL]}, "tool_calls")))
case("gpt-tools-stream", "gpt", chat(stream=True, tools=True), sse_pieces(TOOL_CHUNKS))
case("gpt-reasoning-stream", "gpt", chat(stream=True), sse_pieces(REASONING_CHUNKS))
case("gpt-error-400", "gpt", chat(),
     openai_error(400, "Invalid 'messages[1].content'.", "invalid_request_error",
                  "invalid_value"))
case("gpt-error-429-stream", "gpt", chat(stream=True),
     openai_error(429, "Rate limit reached for gpt-4o.", "requests", "rate_limit_exceeded"))
case("gpt-error-500", "gpt", chat(),
     openai_error(500, "The server had an error.", "server_error", None))
case("gpt-stream-cut", "gpt", chat(stream=True),
     Reply(headers=[("content-type", "text/event-stream")],
           pieces=sse_reply(TEXT_CHUNKS).pieces, cut_after=2))
case("gpt-stream-error-event", "gpt", chat(stream=True),
     sse_pieces(TEXT_CHUNKS[:2] + [{"error": {"message": "upstream broke", "type":
                                              "server_error", "code": None}}], done=False))
case("gpt-500-then-next-channel", "gpt", chat(),
     openai_error(500, "The server had an error.", "server_error", None), channels=2,
     second=[json_reply(completion({"content": "second channel"}))])
case("gpt-embeddings", "gpt",
     http("POST", "/v1/embeddings", json.dumps({"model": "m", "input": ["a", "b"]}).encode()),
     json_reply({"object": "list", "data": [
         {"object": "embedding", "index": 0, "embedding": [0.1, -0.25, 0.5]},
         {"object": "embedding", "index": 1, "embedding": [0.0, 1e-05, -1.5]}],
         "model": "text-embedding-3-small", "usage": {"prompt_tokens": 2, "total_tokens": 2}}))
case("gpt-moderations", "gpt",
     http("POST", "/v1/moderations", json.dumps({"model": "m", "input": "hello"}).encode()),
     json_reply({"id": "modr-1", "model": "omni-moderation-latest", "results": [
         {"flagged": False, "categories": {"hate": False}, "category_scores": {
             "hate": 0.0001}}]}))
case("gpt-images", "gpt",
     http("POST", "/v1/images/generations", json.dumps(
         {"model": "m", "prompt": "a cat", "n": 1, "size": "256x256"}).encode()),
     json_reply({"created": CREATED, "data": [{"url": "https://img.example/cat.png",
                                               "revised_prompt": "a cat"}]}))
AUDIO_BOUNDARY = "replayboundary7MA4YWxk"
AUDIO_BODY = (f"--{AUDIO_BOUNDARY}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n"
              f"m\r\n--{AUDIO_BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
              f"filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF-not-really-audio\r\n"
              f"--{AUDIO_BOUNDARY}--\r\n").encode()
case("gpt-audio-transcription", "gpt",
     http("POST", "/v1/audio/transcriptions", AUDIO_BODY,
          ctype=f"multipart/form-data; boundary={AUDIO_BOUNDARY}"),
     json_reply({"text": "hello from the fake whisper"}))
case("gpt-models-listed", "gpt", http("GET", "/v1/models"))
case("gpt-models-discovered", "gpt", http("GET", "/v1/models"),
     json_reply({"object": "list", "data": [
         {"id": "gpt-4o", "object": "model", "created": CREATED, "owned_by": "openai"},
         {"id": "gpt-4o-mini", "object": "model", "created": CREATED, "owned_by": "openai"}]}),
     discover=True,
     conf=f"providers:\n  - provider: disc\n    base_url: {{up0}}/v1/chat/completions\n"
          f"    api: sk-upstream-gpt\napi_keys:\n  - api: {KEY}\n")
# the front: decided before any upstream
case("front-wrong-key", "front", chat().replace(KEY.encode(), b"sk-not-a-key-000000"))
case("front-no-key", "front", http("POST", "/v1/chat/completions",
                                   json.dumps({"model": "m", "messages": MESSAGES}).encode(),
                                   key=None))
case("front-bad-json", "front", http("POST", "/v1/chat/completions", b"{\"model\": \"m\", "))
case("front-unknown-model", "front", chat("no-such-model"))
case("front-unknown-path", "front", http("POST", "/v1/nowhere", b"{}"))
case("front-healthz", "front", http("GET", "/healthz", key=None))
# openrouter
case("openrouter-chat-whole", "openrouter", chat(),
     json_reply(completion({"content": "via OpenRouter"}, model="openai/gpt-4o")))
case("openrouter-chat-stream", "openrouter", chat(stream=True),
     Reply(headers=[("content-type", "text/event-stream")], pieces=pieces(
         b": OPENROUTER PROCESSING\n\n" + b"".join(sse_reply(TEXT_CHUNKS).pieces))))

# azure
case("azure-chat-whole", "azure", chat(),
     json_reply({**completion({"content": "Azure says hi"}),
                 "prompt_filter_results": AZURE_FILTER["prompt_filter_results"]}))
case("azure-chat-stream-filter-chunk", "azure", chat(stream=True),
     sse_pieces([AZURE_FILTER] + TEXT_CHUNKS))
case("azure-error-429", "azure", chat(),
     json_reply({"error": {"code": "429", "message": "Requests to the ChatCompletions_Create "
                           "Operation have exceeded call rate limit."}}, 429,
                [("retry-after", "7")]))
case("azure-embeddings", "azure",
     http("POST", "/v1/embeddings", json.dumps({"model": "m", "input": "x"}).encode()),
     json_reply({"object": "list", "data": [{"object": "embedding", "index": 0,
                                             "embedding": [0.5]}],
                 "model": "ada", "usage": {"prompt_tokens": 1, "total_tokens": 1}}))

# claude (Anthropic Messages)
case("claude-text-whole", "claude", chat(), whole("anthropic/message_text.json"))
case("claude-tools-whole", "claude", chat(tools=True), whole("anthropic/message_tool_use.json"))
case("claude-text-stream", "claude", chat(stream=True), stream("anthropic/text_stream.sse"))
case("claude-thinking-stream", "claude", chat(stream=True),
     stream("anthropic/thinking_stream.sse"))
case("claude-tools-stream", "claude", chat(stream=True, tools=True),
     stream("anthropic/tools_stream.sse"))
case("claude-error-400", "claude", chat(), whole("anthropic/error_400.json", 400))
case("claude-error-429", "claude", chat(stream=True),
     whole("anthropic/error_429.json", 429, headers=[("retry-after", "12")]))
case("claude-error-529", "claude", chat(), whole("anthropic/error_529.json", 529))
case("claude-error-529-stream", "claude", chat(stream=True),
     whole("anthropic/error_529.json", 529))
case("claude-midstream-error", "claude", chat(stream=True),
     stream("anthropic/error_stream.sse"))
case("claude-stream-cut", "claude", chat(stream=True), cut("anthropic/cut_stream.sse"))
case("claude-529-then-next-channel", "claude", chat(),
     whole("anthropic/error_529.json", 529), channels=2,
     second=[whole("anthropic/message_text.json")])

# gemini
case("gemini-text-whole", "gemini", chat(), whole("gemini/body_text.json"))
case("gemini-tools-whole", "gemini", chat(tools=True), whole("gemini/body_function_calls.json"))
case("gemini-prompt-blocked", "gemini", chat(), whole("gemini/body_prompt_blocked.json"))
case("gemini-text-stream-crlf", "gemini", chat(stream=True),
     stream("gemini/stream_text_crlf.sse"))
case("gemini-thinking-stream", "gemini", chat(stream=True), stream("gemini/stream_thinking.sse"))
case("gemini-parallel-calls-stream", "gemini", chat(stream=True, tools=True),
     stream("gemini/stream_parallel_calls.sse"))
case("gemini-max-tokens-thinking", "gemini", chat(stream=True),
     stream("gemini/stream_max_tokens_thinking.sse"))
case("gemini-midstream-error", "gemini", chat(stream=True),
     stream("gemini/stream_error_midstream.sse"))
case("gemini-stream-cut", "gemini", chat(stream=True), cut("gemini/stream_cut.sse"))
case("gemini-error-400-key", "gemini", chat(), whole("gemini/error_400_key.json", 400))
case("gemini-error-429", "gemini", chat(stream=True), whole("gemini/error_429.json", 429))
case("gemini-error-500", "gemini", chat(), whole("gemini/error_500.json", 500))

# vertex: a token exchange, then the model call (Gemini and Claude models)
TOKEN = json_reply({"access_token": "ya29.replay-token", "expires_in": 3599,
                    "token_type": "Bearer"})
VERTEX_CLAUDE = ("  - provider: vertexc\n    " + PROVIDER["vertex"].replace("{up}", "{up0}") +
                 "\n    model:\n      - claude-sonnet-4@20250514: m\n"
                 f"api_keys:\n  - api: {KEY}\n")
case("vertex-gemini-whole", "vertex", chat(), TOKEN, whole("gemini/body_text.json"))
case("vertex-gemini-stream", "vertex", chat(stream=True), TOKEN,
     stream("gemini/stream_text_crlf.sse"))
case("vertex-claude-whole", "vertex", chat(), TOKEN, whole("anthropic/message_text.json"),
     conf="providers:\n" + VERTEX_CLAUDE)
case("vertex-claude-stream", "vertex", chat(stream=True), TOKEN,
     stream("anthropic/text_stream.sse"), conf="providers:\n" + VERTEX_CLAUDE)
case("vertex-token-refused", "vertex", chat(),
     json_reply({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, 400))

# aws (Bedrock, SigV4, binary event streams)
case("aws-text-stream", "aws", chat(stream=True), eventstream("bedrock/text_stream.bin"))
case("aws-tools-whole", "aws", chat(tools=True), whole("bedrock/message_tool_use.json"))
case("aws-thinking-stream", "aws", chat(stream=True), eventstream("bedrock/thinking_stream.bin"))
case("aws-model-error-stream", "aws", chat(stream=True),
     eventstream("bedrock/model_error_stream.bin"))
case("aws-throttled-stream", "aws", chat(stream=True),
     eventstream("bedrock/throttled_stream.bin"))
case("aws-stream-cut", "aws", chat(stream=True),
     cut("bedrock/cut_stream.bin", ctype="application/vnd.amazon.eventstream"))
case("aws-error-throttling", "aws", chat(),
     whole("bedrock/error_throttling.json", 429,
           headers=[("x-amzn-errortype", "ThrottlingException:http://internal.amazon.com/"
                     "coral/com.amazon.bedrock/")]))
case("aws-error-validation", "aws", chat(),
     whole("bedrock/error_validation.json", 400,
           headers=[("x-amzn-errortype", "ValidationException:http://internal.amazon.com/"
                     "coral/com.amazon.bedrock/")]))

# cohere (v2 chat)
case("cohere-text-whole", "cohere", chat(), whole("cohere/body_text.json"))
case("cohere-text-stream", "cohere", chat(stream=True), stream("cohere/stream_text.sse"))
case("cohere-tools-stream", "cohere", chat(stream=True, tools=True),
     stream("cohere/stream_tools.sse"))
case("cohere-thinking-stream-crlf", "cohere", chat(stream=True),
     stream("cohere/stream_thinking_crlf.sse"))
case("cohere-error-finish-stream", "cohere", chat(stream=True),
     stream("cohere/stream_error_finish.sse"))
case("cohere-error-429", "cohere", chat(), whole("cohere/error_429.json", 429))
case("cohere-error-503-html", "cohere", chat(),
     whole("cohere/error_503.html", 503, ctype="text/html"))

# cloudflare (Workers AI)
case("cloudflare-text-whole", "cloudflare", chat(), whole("cloudflare/body_text.json"))
case("cloudflare-success-false", "cloudflare", chat(),
     whole("cloudflare/body_success_false.json"))
case("cloudflare-text-stream", "cloudflare", chat(stream=True),
     stream("cloudflare/stream_text.sse"))
case("cloudflare-tool-calls-stream", "cloudflare", chat(stream=True, tools=True),
     stream("cloudflare/stream_tool_calls.sse"))
case("cloudflare-crlf-no-done", "cloudflare", chat(stream=True),
     stream("cloudflare/stream_crlf_no_done.sse"))
case("cloudflare-stream-error", "cloudflare", chat(stream=True),
     stream("cloudflare/stream_error.sse"))
case("cloudflare-error-401", "cloudflare", chat(), whole("cloudflare/error_401.json", 401))
