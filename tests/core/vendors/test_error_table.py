"""Every row of the error table (docs/contracts.md, "Error status mapping"), for every vendor
that can produce it (issue 11).

Each case feeds a realistic vendor error (HTTP status, headers, body; an error in a 2xx body;
or an error in the middle of a stream) through that vendor's exchange, exactly as the relay
does, and checks what the client would get: the OpenAI ``type`` and ``code``, the vendor's
message verbatim, the client status, ``Retry-After`` with 429, and that the retry policy
still sees the upstream's own status (``upstream_status``: a 529 stays a 529 there).

Rows a vendor cannot produce: Bedrock has no 401 (AWS refuses bad credentials with 403
``UnrecognizedClientException``, a ``permission_error``); only Gemini/Vertex and Azure block a
prompt before generation with an error; Cohere and Cloudflare send no vendor error types, so
their rows come from the HTTP status alone.
"""

from __future__ import annotations

import base64
import json
import random
import zlib
from typing import Any, NamedTuple

import pytest

from uniapi_core.config.model import Provider
from uniapi_core.errors import UpstreamError, to_openai_error
from uniapi_core.routing.retry import verdict
from uniapi_core.vendors import TRANSLATORS
from uniapi_core.vendors.base import ChatContext, StreamFailed, client_status_for

# -- the vendors ---------------------------------------------------------------------------------

VENDORS: dict[str, tuple[str, Provider, str]] = {
    # name: (engine, provider, upstream model)
    "openai": ("gpt", Provider(provider="openai", base_url="https://api.openai.com/v1",
                               api=("sk-test",)), "gpt-4o"),
    "azure": ("azure", Provider(provider="azure", base_url="https://res.openai.azure.com",
                                engine="azure", api=("az-key",)), "gpt-4o"),
    "anthropic": ("claude", Provider(provider="anthropic", api=("sk-ant",)),
                  "claude-sonnet-4-20250514"),
    "gemini": ("gemini", Provider(provider="gemini", api=("AIza-test",),
                                  base_url="https://generativelanguage.googleapis.com/v1beta"),
               "gemini-2.5-pro"),
    "vertex-gemini": ("vertex", Provider(provider="vertex", project_id="proj-1"),
                      "gemini-2.5-pro"),
    "vertex-claude": ("vertex", Provider(provider="vertex", project_id="proj-1"),
                      "claude-sonnet-4@20250514"),
    "bedrock": ("aws", Provider(provider="bedrock", aws_access_key="AKIAEXAMPLE",
                                aws_secret_key="secret", aws_region="us-east-1"),
                "anthropic.claude-3-5-sonnet-20240620-v1:0"),
    "cohere": ("cohere", Provider(provider="cohere", base_url="https://api.cohere.com/v2/chat",
                                  engine="cohere", api=("co-key",)), "command-r-plus"),
    "cloudflare": ("cloudflare", Provider(provider="cf", cf_account_id="acct1",
                                          api=("cf-key",)), "@cf/meta/llama-3.1-8b-instruct"),
}


def exchange(vendor: str, stream: bool) -> Any:
    engine, provider, model = VENDORS[vendor]
    ctx = ChatContext(client_model="m", upstream_model=model, provider=provider,
                      api_key=provider.api[0] if provider.api else None, stream=stream,
                      include_usage=False, response_id="chatcmpl-table", created=1735689600,
                      entropy=random.Random(1), region="us-east5", access_token="ya29.tok")
    return TRANSLATORS[engine]({"model": "m", "messages": [{"role": "user", "content": "Hi"}],
                                "stream": stream}, ctx)


# -- vendor byte shapes ----------------------------------------------------------------------------

def j(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def openai_err(message: str, etype: str | None, code: Any, **extra: Any) -> bytes:
    return j({"error": {"message": message, "type": etype, "param": None, "code": code, **extra}})


def anthropic_err(etype: str, message: str) -> bytes:
    return j({"type": "error", "error": {"type": etype, "message": message},
              "request_id": "req_011CSHoGq2Wc8dYn3KpT6Bz1"})


def google_err(code: int, status: str, message: str, details: list[Any] | None = None,
               wrap: bool = False) -> bytes:
    err = {"error": {"code": code, "message": message, "status": status,
                     "details": details or []}}
    return j([err] if wrap else err)


def cohere_err(message: str) -> bytes:
    return j({"id": "5b4d7a9e-1f0c-4e55-9c3e-2f1b0e6f8a11", "message": message})


def cf_err(code: int, message: str) -> bytes:
    return j({"result": None, "success": False, "errors": [{"code": code, "message": message}],
              "messages": []})


# mid-stream shapes: the stream has started (some content), then the vendor reports an error

ANT_START = {"type": "message_start", "message": {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "content": [],
    "stop_reason": None, "usage": {"input_tokens": 5, "output_tokens": 1}}}


def anthropic_stream(etype: str, message: str) -> bytes:
    return (b"event: message_start\ndata: " + j(ANT_START) + b"\n\n"
            b"event: ping\ndata: {\"type\": \"ping\"}\n\n"
            b"event: error\ndata: " + j({"type": "error", "error": {"type": etype,
                                                                   "message": message}})
            + b"\n\n")


def openai_stream(error: dict[str, Any]) -> bytes:
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "x",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"},
                          "finish_reason": None}]}
    return b"data: " + j(chunk) + b"\n\ndata: " + j({"error": error}) + b"\n\n"


def gemini_stream(error: dict[str, Any]) -> bytes:
    chunk = {"candidates": [{"content": {"parts": [{"text": "Hel"}], "role": "model"},
                             "index": 0}], "modelVersion": "gemini-2.5-pro"}
    return b"data: " + j(chunk) + b"\r\n\r\ndata: " + j({"error": error}) + b"\r\n\r\n"


def _es_header(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    return bytes([len(n)]) + n + b"\x07" + len(v).to_bytes(2, "big") + v


def _es_frame(headers: list[tuple[str, str]], payload: bytes) -> bytes:
    hdr = b"".join(_es_header(k, v) for k, v in headers)
    total = 12 + len(hdr) + len(payload) + 4
    prelude = total.to_bytes(4, "big") + len(hdr).to_bytes(4, "big")
    head = prelude + zlib.crc32(prelude).to_bytes(4, "big") + hdr + payload
    return head + zlib.crc32(head).to_bytes(4, "big")


def bedrock_stream(exception: str, message: str) -> bytes:
    """A Bedrock event stream: one text chunk, then an ``exception`` frame."""
    event = {"type": "content_block_delta", "index": 0,
             "delta": {"type": "text_delta", "text": "Hel"}}
    chunk = _es_frame([(":message-type", "event"), (":event-type", "chunk"),
                       (":content-type", "application/json")],
                      j({"bytes": base64.b64encode(j(event)).decode(), "p": "abc"}))
    start = _es_frame([(":message-type", "event"), (":event-type", "chunk"),
                       (":content-type", "application/json")],
                      j({"bytes": base64.b64encode(j(ANT_START)).decode(), "p": "abc"}))
    exc = _es_frame([(":message-type", "exception"), (":exception-type", exception),
                     (":content-type", "application/json")], j({"message": message}))
    return start + chunk + exc


def cohere_stream(reason: str) -> bytes:
    return (b'event: message-start\ndata: {"type":"message-start","id":"c1",'
            b'"delta":{"message":{"role":"assistant"}}}\n\n'
            b'event: content-delta\ndata: {"type":"content-delta","index":0,'
            b'"delta":{"message":{"content":{"text":"Hel"}}}}\n\n'
            b'event: message-end\ndata: {"type":"message-end","delta":{"finish_reason":"'
            + reason.encode() + b'"}}\n\n')


def cf_stream(code: int, message: str) -> bytes:
    return b'data: {"response":"Hel"}\n\ndata: ' + cf_err(code, message) + b"\n\n"


# -- the cases -------------------------------------------------------------------------------------

class Case(NamedTuple):
    vendor: str
    via: str  # "error": parse_error; "body": parse_body of a 2xx; "stream": the stream decoder
    status: int  # the upstream HTTP status (200 for errors in a 2xx body or a stream)
    body: bytes
    headers: tuple[tuple[str, str], ...]
    type: str
    code: Any
    message: str
    client: int  # the status the client gets
    upstream: int  # what the retry policy sees
    retry_after: str | None = None


RA = (("Retry-After", "30"),)
ROWS: dict[str, list[Case]] = {}


def row(name: str, *cases: Case) -> None:
    ROWS[name] = list(cases)


def E(vendor: str, status: int, body: bytes, otype: str, code: Any, message: str, client: int,
      upstream: int | None = None, headers: tuple[tuple[str, str], ...] = (),
      retry_after: str | None = None) -> Case:
    return Case(vendor, "error", status, body, headers, otype, code, message, client,
                status if upstream is None else upstream, retry_after)


def B(vendor: str, body: bytes, otype: str, code: Any, message: str, client: int,
      upstream: int) -> Case:
    return Case(vendor, "body", 200, body, (), otype, code, message, client, upstream)


def S(vendor: str, body: bytes, otype: str, code: Any, message: str, client: int,
      upstream: int) -> Case:
    return Case(vendor, "stream", 200, body, (), otype, code, message, client, upstream)


BAD = "messages: at least one message is required"
row("invalid_request",
    E("openai", 400, openai_err(BAD, "invalid_request_error", "invalid_value"),
      "invalid_request_error", "invalid_value", BAD, 400),
    E("openai", 413, b"Request Entity Too Large", "invalid_request_error", "413",
      "Request Entity Too Large", 413),
    E("openai", 422, j({"detail": "Unprocessable Entity"}), "invalid_request_error", "422",
      "Unprocessable Entity", 422),
    E("azure", 400, j({"error": {"code": "BadRequest", "message": BAD}}),
      "invalid_request_error", "BadRequest", BAD, 400),
    E("anthropic", 400, anthropic_err("invalid_request_error", BAD), "invalid_request_error",
      "invalid_request_error", BAD, 400),
    E("anthropic", 413, anthropic_err("request_too_large", "Request exceeds the maximum size"),
      "invalid_request_error", "request_too_large", "Request exceeds the maximum size", 413),
    E("gemini", 400, google_err(400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
      "invalid_request_error", "INVALID_ARGUMENT", "Request contains an invalid argument.", 400),
    E("gemini", 400, google_err(400, "FAILED_PRECONDITION",
                                "User location is not supported for the API use."),
      "invalid_request_error", "FAILED_PRECONDITION",
      "User location is not supported for the API use.", 400),
    E("vertex-gemini", 400, google_err(400, "FAILED_PRECONDITION",
                                       "Project proj-1 is not allowed to use Publisher Model",
                                       wrap=True),
      "invalid_request_error", "FAILED_PRECONDITION",
      "Project proj-1 is not allowed to use Publisher Model", 400),
    E("vertex-claude", 400, anthropic_err("invalid_request_error", BAD),
      "invalid_request_error", "invalid_request_error", BAD, 400),
    E("bedrock", 400, j({"message": "Malformed input request: #: extraneous key [foo]"}),
      "invalid_request_error", "ValidationException",
      "Malformed input request: #: extraneous key [foo]", 400,
      headers=(("x-amzn-ErrorType",
                "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"),)),
    E("cohere", 400, cohere_err("invalid request: message must not be empty"),
      "invalid_request_error", "400", "invalid request: message must not be empty", 400),
    E("cohere", 422, cohere_err("invalid request: unknown field"), "invalid_request_error",
      "422", "invalid request: unknown field", 422),
    E("cloudflare", 400, cf_err(5006, "Error: required properties at '/' are 'messages'"),
      "invalid_request_error", 5006, "Error: required properties at '/' are 'messages'", 400),
    S("openai", openai_stream({"message": "context too long", "type": "invalid_request_error",
                               "code": "context_length_exceeded"}),
      "invalid_request_error", "context_length_exceeded", "context too long", 400, 400),
    S("anthropic", anthropic_stream("invalid_request_error", "prompt is too long"),
      "invalid_request_error", "invalid_request_error", "prompt is too long", 400, 400),
    S("gemini", gemini_stream({"code": 400, "message": "bad part", "status": "INVALID_ARGUMENT"}),
      "invalid_request_error", "INVALID_ARGUMENT", "bad part", 400, 400),
    S("bedrock", bedrock_stream("validationException", "Input is too long for requested model."),
      "invalid_request_error", "validationException", "Input is too long for requested model.",
      400, 400),
)

row("authentication",
    E("openai", 401, openai_err("Incorrect API key provided: sk-te**st.",
                                "invalid_request_error", "invalid_api_key"),
      "invalid_request_error", "invalid_api_key", "Incorrect API key provided: sk-te**st.", 401),
    E("azure", 401, j({"statusCode": 401, "message": "Access denied due to invalid subscription "
                       "key or wrong API endpoint."}),
      "authentication_error", "401",
      "Access denied due to invalid subscription key or wrong API endpoint.", 401),
    E("anthropic", 401, anthropic_err("authentication_error", "invalid x-api-key"),
      "authentication_error", "authentication_error", "invalid x-api-key", 401),
    E("gemini", 401, google_err(401, "UNAUTHENTICATED", "Request had invalid credentials."),
      "authentication_error", "UNAUTHENTICATED", "Request had invalid credentials.", 401),
    E("gemini", 400, google_err(400, "INVALID_ARGUMENT", "API key not valid.", [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]),
      "authentication_error", "API_KEY_INVALID", "API key not valid.", 401, upstream=401),
    E("vertex-gemini", 401, google_err(401, "UNAUTHENTICATED", "Request had invalid "
                                       "authentication credentials."),
      "authentication_error", "UNAUTHENTICATED",
      "Request had invalid authentication credentials.", 401),
    E("vertex-claude", 401, google_err(401, "UNAUTHENTICATED", "Request had invalid "
                                       "authentication credentials."),
      "authentication_error", "UNAUTHENTICATED",
      "Request had invalid authentication credentials.", 401),
    E("cohere", 401, cohere_err("invalid api token"), "authentication_error", "401",
      "invalid api token", 401),
    E("cohere", 498, cohere_err("invalid api token"), "authentication_error", "498",
      "invalid api token", 401, upstream=401),
    E("cloudflare", 401, cf_err(10000, "Authentication error"), "authentication_error", 10000,
      "Authentication error", 401),
    S("anthropic", anthropic_stream("authentication_error", "invalid x-api-key"),
      "authentication_error", "authentication_error", "invalid x-api-key", 401, 401),
)

DENIED = "You don't have access to the model with the specified model ID."
row("permission",
    E("openai", 403, openai_err("Country, region, or territory not supported",
                                "request_forbidden", "unsupported_country_region_territory"),
      "request_forbidden", "unsupported_country_region_territory",
      "Country, region, or territory not supported", 403),
    E("azure", 403, j({"error": {"code": "PermissionDenied", "message": "Principal does not "
                                 "have access to API/Operation."}}),
      "permission_error", "PermissionDenied", "Principal does not have access to API/Operation.",
      403),
    E("anthropic", 403, anthropic_err("permission_error", "Your API key does not have "
                                      "permission to use the specified resource."),
      "permission_error", "permission_error",
      "Your API key does not have permission to use the specified resource.", 403),
    E("gemini", 403, google_err(403, "PERMISSION_DENIED", "Method doesn't allow unregistered "
                                "callers."),
      "permission_error", "PERMISSION_DENIED", "Method doesn't allow unregistered callers.", 403),
    E("vertex-gemini", 403, google_err(403, "PERMISSION_DENIED", "Permission "
                                       "'aiplatform.endpoints.predict' denied", wrap=True),
      "permission_error", "PERMISSION_DENIED",
      "Permission 'aiplatform.endpoints.predict' denied", 403),
    E("bedrock", 403, j({"message": DENIED}), "permission_error", "AccessDeniedException",
      DENIED, 403, headers=(("x-amzn-ErrorType", "AccessDeniedException:http://internal."
                             "amazon.com/coral/com.amazon.coral.service/"),)),
    E("bedrock", 403, j({"__type": "com.amazon.coral.service#UnrecognizedClientException",
                         "message": "The security token included in the request is invalid."}),
      "permission_error", "UnrecognizedClientException",
      "The security token included in the request is invalid.", 403),
    E("cohere", 403, cohere_err("forbidden"), "permission_error", "403", "forbidden", 403),
    E("cloudflare", 403, cf_err(10000, "Forbidden"), "permission_error", 10000, "Forbidden",
      403),
)

row("not_found",
    E("openai", 404, openai_err("The model `gpt-9` does not exist", "invalid_request_error",
                                "model_not_found"),
      "invalid_request_error", "model_not_found", "The model `gpt-9` does not exist", 404),
    E("azure", 404, j({"error": {"code": "DeploymentNotFound", "message": "The API deployment "
                                 "for this resource does not exist."}}),
      "not_found_error", "DeploymentNotFound",
      "The API deployment for this resource does not exist.", 404),
    E("anthropic", 404, anthropic_err("not_found_error", "model: claude-9"), "not_found_error",
      "not_found_error", "model: claude-9", 404),
    E("gemini", 404, google_err(404, "NOT_FOUND", "models/gemini-9 is not found"),
      "not_found_error", "NOT_FOUND", "models/gemini-9 is not found", 404),
    E("vertex-claude", 404, google_err(404, "NOT_FOUND", "Publisher Model was not found",
                                       wrap=True),
      "not_found_error", "NOT_FOUND", "Publisher Model was not found", 404),
    E("bedrock", 404, j({"message": "Could not resolve the foundation model"}),
      "not_found_error", "ResourceNotFoundException", "Could not resolve the foundation model",
      404, headers=(("x-amzn-ErrorType", "ResourceNotFoundException"),)),
    E("cohere", 404, cohere_err("model 'command-x' not found"), "not_found_error", "404",
      "model 'command-x' not found", 404),
    E("cloudflare", 404, cf_err(7000, "No route for that URI"), "not_found_error", 7000,
      "No route for that URI", 404),
)

row("timeout",
    E("openai", 408, b"Request Timeout", "timeout_error", "408", "Request Timeout", 504),
    E("azure", 408, openai_err("The operation was timeout.", None, "Timeout"),
      "timeout_error", "Timeout", "The operation was timeout.", 504),
    E("anthropic", 408, b"stream timeout", "timeout_error", "408", "stream timeout", 504),
    E("gemini", 408, b"Request Timeout", "timeout_error", "408", "Request Timeout", 504),
    E("bedrock", 408, j({"message": "Model has timed out in processing the request."}),
      "timeout_error", "ModelTimeoutException",
      "Model has timed out in processing the request.", 504,
      headers=(("x-amzn-ErrorType", "ModelTimeoutException"),)),
    E("cohere", 408, cohere_err("request timed out"), "timeout_error", "408",
      "request timed out", 504),
    E("cloudflare", 408, cf_err(3007, "Request timeout"), "timeout_error", 3007,
      "Request timeout", 504),
    S("bedrock", bedrock_stream("modelTimeoutException", "Model has timed out"),
      "timeout_error", "modelTimeoutException", "Model has timed out", 504, 408),
    S("openai", openai_stream({"message": "timed out", "type": "timeout_error", "code": None}),
      "timeout_error", "408", "timed out", 504, 408),
)

SLOW = "Rate limit reached for requests"
row("rate_limit",
    E("openai", 429, openai_err(SLOW, "requests", "rate_limit_exceeded"), "requests",
      "rate_limit_exceeded", SLOW, 429, headers=RA, retry_after="30"),
    E("openai", 429, openai_err("You exceeded your current quota", "insufficient_quota",
                                "insufficient_quota"),
      "insufficient_quota", "insufficient_quota", "You exceeded your current quota", 429,
      headers=RA, retry_after="30"),
    E("azure", 429, j({"error": {"code": "429", "message": "Requests to the ChatCompletions "
                                 "Operation have exceeded call rate limit."}}),
      "rate_limit_error", "429",
      "Requests to the ChatCompletions Operation have exceeded call rate limit.", 429,
      headers=(("retry-after-ms", "30000"),) + RA, retry_after="30"),
    E("anthropic", 429, anthropic_err("rate_limit_error", "Number of request tokens has "
                                      "exceeded your per-minute rate limit"),
      "rate_limit_error", "rate_limit_error",
      "Number of request tokens has exceeded your per-minute rate limit", 429, headers=RA,
      retry_after="30"),
    E("gemini", 429, google_err(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "27s"}]),
      "rate_limit_error", "RESOURCE_EXHAUSTED", "Quota exceeded.", 429, retry_after="27"),
    E("vertex-claude", 429, google_err(429, "RESOURCE_EXHAUSTED", "Quota exceeded for "
                                       "aiplatform.googleapis.com/online_prediction_requests"),
      "rate_limit_error", "RESOURCE_EXHAUSTED",
      "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests", 429,
      headers=RA, retry_after="30"),
    E("bedrock", 429, j({"message": "Too many requests, please wait before trying again."}),
      "rate_limit_error", "ThrottlingException",
      "Too many requests, please wait before trying again.", 429,
      headers=(("x-amzn-ErrorType", "ThrottlingException"),) + RA, retry_after="30"),
    E("cohere", 429, cohere_err("You are using a Trial key, which is limited to 10 API calls "
                                "/ minute."),
      "rate_limit_error", "429",
      "You are using a Trial key, which is limited to 10 API calls / minute.", 429, headers=RA,
      retry_after="30"),
    E("cloudflare", 429, cf_err(3040, "Capacity temporarily exceeded"), "rate_limit_error",
      3040, "Capacity temporarily exceeded", 429, headers=RA, retry_after="30"),
    S("openai", openai_stream({"message": SLOW, "type": "rate_limit_error", "code": None}),
      "rate_limit_error", "429", SLOW, 429, 429),
    S("anthropic", anthropic_stream("rate_limit_error", SLOW), "rate_limit_error",
      "rate_limit_error", SLOW, 429, 429),
    S("gemini", gemini_stream({"code": 429, "message": "Quota exceeded.",
                               "status": "RESOURCE_EXHAUSTED"}),
      "rate_limit_error", "RESOURCE_EXHAUSTED", "Quota exceeded.", 429, 429),
    S("bedrock", bedrock_stream("throttlingException", "Too many tokens"), "rate_limit_error",
      "throttlingException", "Too many tokens", 429, 429),
    S("cohere", cohere_stream("ERROR_LIMIT"), "rate_limit_error", "ERROR_LIMIT",
      "cohere ended the answer with finish_reason ERROR_LIMIT", 429, 429),
)

row("server_error",
    E("openai", 500, openai_err("The server had an error while processing your request.",
                                "server_error", None),
      "server_error", "500", "The server had an error while processing your request.", 502),
    E("openai", 502, b"<html><body>502 Bad Gateway</body></html>", "server_error", "502",
      "<html><body>502 Bad Gateway</body></html>", 502),
    E("openai", 503, openai_err("The engine is currently overloaded", "server_error",
                                "engine_overloaded"),
      "server_error", "engine_overloaded", "The engine is currently overloaded", 502),
    E("openai", 504, b"Gateway Timeout", "server_error", "504", "Gateway Timeout", 502),
    E("azure", 500, j({"error": {"code": "InternalServerError", "message": "Backend returned "
                                 "unexpected response."}}),
      "server_error", "InternalServerError", "Backend returned unexpected response.", 502),
    E("anthropic", 500, anthropic_err("api_error", "Internal server error"), "server_error",
      "api_error", "Internal server error", 502),
    E("anthropic", 529, anthropic_err("overloaded_error", "Overloaded"), "server_error",
      "overloaded_error", "Overloaded", 502),
    E("anthropic", 503, b"upstream connect error", "server_error", "503",
      "upstream connect error", 502),
    E("gemini", 500, google_err(500, "INTERNAL", "An internal error has occurred."),
      "server_error", "INTERNAL", "An internal error has occurred.", 502),
    E("gemini", 503, google_err(503, "UNAVAILABLE", "The model is overloaded."),
      "server_error", "UNAVAILABLE", "The model is overloaded.", 502),
    E("gemini", 504, google_err(504, "DEADLINE_EXCEEDED", "Deadline expired."),
      "server_error", "DEADLINE_EXCEEDED", "Deadline expired.", 502),
    E("vertex-gemini", 503, google_err(503, "UNAVAILABLE", "Service unavailable", wrap=True),
      "server_error", "UNAVAILABLE", "Service unavailable", 502),
    E("vertex-claude", 529, anthropic_err("overloaded_error", "Overloaded"), "server_error",
      "overloaded_error", "Overloaded", 502),
    E("bedrock", 500, j({"message": "The server encountered an error."}), "server_error",
      "InternalServerException", "The server encountered an error.", 502,
      headers=(("x-amzn-ErrorType", "InternalServerException"),)),
    E("bedrock", 503, j({"message": "Bedrock is unable to process your request."}),
      "server_error", "ServiceUnavailableException",
      "Bedrock is unable to process your request.", 502,
      headers=(("x-amzn-ErrorType", "ServiceUnavailableException"),)),
    E("bedrock", 424, j({"message": "The model returned an error."}), "server_error",
      "ModelErrorException", "The model returned an error.", 502,
      headers=(("x-amzn-ErrorType", "ModelErrorException"),)),
    E("cohere", 500, cohere_err("internal server error"), "server_error", "500",
      "internal server error", 502),
    E("cohere", 503, b"<html>503 Service Unavailable</html>", "server_error", "503",
      "<html>503 Service Unavailable</html>", 502),
    E("cohere", 499, cohere_err("client closed request"), "server_error", "499",
      "client closed request", 502, upstream=502),
    E("cloudflare", 500, cf_err(3043, "Internal server error"), "server_error", 3043,
      "Internal server error", 502),
    E("cloudflare", 503, cf_err(3040, "Capacity temporarily exceeded"), "server_error", 3040,
      "Capacity temporarily exceeded", 502),
    B("openai", openai_err("upstream failed", "server_error", None), "server_error", "500",
      "upstream failed", 502, 500),
    B("anthropic", anthropic_err("overloaded_error", "Overloaded"), "server_error",
      "overloaded_error", "Overloaded", 502, 529),
    B("cloudflare", cf_err(3040, "Capacity temporarily exceeded"), "server_error", 3040,
      "Capacity temporarily exceeded", 502, 502),
    S("openai", openai_stream({"message": "The server had an error", "type": "server_error",
                               "code": None}),
      "server_error", "500", "The server had an error", 502, 500),
    S("azure", openai_stream({"message": "The server had an error", "type": "server_error",
                              "code": None}),
      "server_error", "500", "The server had an error", 502, 500),
    S("anthropic", anthropic_stream("overloaded_error", "Overloaded"), "server_error",
      "overloaded_error", "Overloaded", 502, 529),
    S("anthropic", anthropic_stream("api_error", "Internal server error"), "server_error",
      "api_error", "Internal server error", 502, 500),
    S("vertex-claude", anthropic_stream("overloaded_error", "Overloaded"), "server_error",
      "overloaded_error", "Overloaded", 502, 529),
    S("gemini", gemini_stream({"code": 503, "message": "The model is overloaded.",
                               "status": "UNAVAILABLE"}),
      "server_error", "UNAVAILABLE", "The model is overloaded.", 502, 503),
    S("vertex-gemini", gemini_stream({"message": "Internal error encountered.",
                                      "status": "INTERNAL"}),
      "server_error", "INTERNAL", "Internal error encountered.", 502, 500),
    S("bedrock", bedrock_stream("modelStreamErrorException", "The model stream failed"),
      "server_error", "modelStreamErrorException", "The model stream failed", 502, 424),
    S("bedrock", bedrock_stream("internalServerException", "Internal failure"), "server_error",
      "internalServerException", "Internal failure", 502, 500),
    S("bedrock", bedrock_stream("serviceUnavailableException", "Service unavailable"),
      "server_error", "serviceUnavailableException", "Service unavailable", 502, 503),
    S("cohere", cohere_stream("ERROR"), "server_error", "ERROR",
      "cohere ended the answer with finish_reason ERROR", 502, 500),
    S("cloudflare", cf_stream(3040, "Capacity temporarily exceeded"), "server_error", 3040,
      "Capacity temporarily exceeded", 502, 502),
)

FILTERED = ("The response was filtered due to the prompt triggering Azure OpenAI's content "
            "management policy.")
row("content_filter",
    E("azure", 400, openai_err(FILTERED, None, "content_filter", status=400, innererror={
        "code": "ResponsibleAIPolicyViolation",
        "content_filter_result": {"hate": {"filtered": True, "severity": "high"}}}),
      "invalid_request_error", "content_filter", FILTERED, 400),
    B("gemini", j({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {
        "promptTokenCount": 8, "totalTokenCount": 8}}),
      "invalid_request_error", "content_filter", "gemini blocked the prompt (SAFETY)", 400, 400),
    B("vertex-gemini", j({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}),
      "invalid_request_error", "content_filter",
      "gemini blocked the prompt (PROHIBITED_CONTENT)", 400, 400),
    S("gemini", b"data: " + j({"promptFeedback": {"blockReason": "SAFETY"}}) + b"\r\n\r\n",
      "invalid_request_error", "content_filter", "gemini blocked the prompt (SAFETY)", 400, 400),
)

#: rows the retry policy may retry (docs/contracts.md ERR-1), and the ones it must not
RETRYABLE = {"invalid_request": False, "authentication": True, "permission": True,
             "not_found": False, "timeout": True, "rate_limit": True, "server_error": True,
             "content_filter": False}


def params() -> list[Any]:
    out = []
    for name, cases in ROWS.items():
        seen: dict[str, int] = {}
        for c in cases:
            label = f"{name}-{c.vendor}-{c.via}-{c.status if c.via == 'error' else c.upstream}"
            seen[label] = seen.get(label, 0) + 1
            if seen[label] > 1:
                label += f"-{seen[label]}"
            out.append(pytest.param(name, c, id=label))
    return out


def outcome(c: Case) -> UpstreamError:
    ex = exchange(c.vendor, stream=c.via == "stream")
    if c.via == "error":
        return ex.parse_error(c.status, c.headers, c.body)
    if c.via == "body":
        with pytest.raises(UpstreamError) as e:
            ex.parse_body(c.status, c.headers, c.body)
        return e.value
    dec = ex.stream_decoder()
    items = dec.feed(c.body) + dec.close()
    assert isinstance(items[-1], StreamFailed), items[-1]
    return items[-1].error


@pytest.mark.parametrize("row_name, case", params())
def test_error_table_row(row_name: str, case: Case) -> None:
    err = outcome(case)
    assert isinstance(err, UpstreamError) and err.kind == "status"
    assert json.loads(to_openai_error(err)) == {"error": {
        "message": case.message, "type": case.type, "param": None, "code": case.code}}
    assert err.status == case.client
    assert err.upstream_status == case.upstream
    retry = dict((k.lower(), v) for k, v in err.headers).get("retry-after")
    assert retry == case.retry_after
    assert verdict(err).retry is RETRYABLE[row_name]


def test_every_vendor_is_in_the_table() -> None:
    used = {c.vendor for cases in ROWS.values() for c in cases}
    assert used == set(VENDORS)
    for name in ("invalid_request", "server_error", "rate_limit"):  # mid-stream in busy rows
        assert any(c.via == "stream" for c in ROWS[name])


@pytest.mark.parametrize("upstream, client", [
    (400, 400), (401, 401), (403, 403), (404, 404), (408, 504), (409, 409), (413, 413),
    (418, 418), (422, 422), (424, 502), (429, 429), (499, 499), (500, 502), (502, 502),
    (503, 502), (504, 502), (529, 502), (599, 502), (0, 502), (200, 502), (302, 502),
    (600, 502), (999, 502)])
def test_the_one_client_status_rule(upstream: int, client: int) -> None:
    assert client_status_for(upstream) == client


@pytest.mark.parametrize("vendor, status, body, otype", [
    ("openai", 409, openai_err("conflict", "invalid_request_error", None),
     "invalid_request_error"),
    ("openai", 418, b"I'm a teapot", "upstream_error"),
    ("anthropic", 409, anthropic_err("conflict_error", "conflict"), "invalid_request_error"),
    ("gemini", 409, google_err(409, "ABORTED", "aborted"), "upstream_error"),
    ("cloudflare", 418, cf_err(1, "teapot"), "upstream_error"),
])
def test_unknown_4xx_keep_their_status(vendor: str, status: int, body: bytes,
                                       otype: str) -> None:
    err = exchange(vendor, stream=False).parse_error(status, (), body)
    assert (err.status, err.upstream_status, err.type) == (status, status, otype)
