"""Azure OpenAI: the OpenAI protocol at Azure's URLs, with the ``api-key`` header
(docs/vendor-rules.md, "Azure OpenAI").

URL forms (AZ-1, AZ-3): a bare resource origin, or one ending in ``/openai``, gets
``/openai/deployments/<upstream model><endpoint>``; a deployment URL
(``…/openai/deployments/<dep>/chat/completions``) keeps its deployment and gets the request's
endpoint in place of its own; the AI Model Inference form (``…/models[/chat/completions]``) gets
``/models/chat/completions`` or ``/models/embeddings`` and refuses the endpoints it does not
have; the v1 form (``…/openai/v1[/chat/completions]``) gets ``/openai/v1<endpoint>``.
``api-version`` is kept when the query has one and otherwise added (default ``2024-10-21``, as
the seed FAQ says), except on the v1 form, which takes none; the query is parsed, not searched
by substring (AZ-2). Streams ask for usage as OpenAI's do (OAI-4). Responses are OpenAI's;
the prompt-filter chunk with empty ``choices`` that Azure sends first is skipped by the OpenAI
decoder (AZ-5), filter annotations pass through untouched (AZ-4).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import ClientError
from ..jsonutil import dumps
from ..request import ChatRequest, original_of
from .base import ChatContext, UpstreamRequest
from .openai import (OpenAIExchange, PassthroughExchange, Upload, UploadExchange, asks_usage,
                     merge_headers, passthrough_request, upload_request, with_usage_asked)

__all__ = ["DEFAULT_API_VERSION", "azure_url", "build_exchange", "build_passthrough",
           "build_upload"]

DEFAULT_API_VERSION = "2024-10-21"

CHAT = "/chat/completions"
#: endpoint paths a configured URL may already end in; replaced by the request's endpoint
_ENDPOINTS = (CHAT, "/completions", "/embeddings", "/images/generations", "/images/edits",
              "/images/embeddings", "/audio/transcriptions", "/audio/translations",
              "/audio/speech", "/moderations", "/responses")
#: what the AI Model Inference API (``/models``) serves, of the endpoints the gateway routes
_MODELS_ENDPOINTS = (CHAT, "/embeddings")
_DEPLOYMENTS = "/openai/deployments"
_V1 = "/openai/v1"


def _strip_endpoint(path: str) -> str:
    """``path`` without a trailing known endpoint path (the longest that matches)."""
    for suffix in sorted(_ENDPOINTS, key=len, reverse=True):
        if path.endswith(suffix):
            return path[: -len(suffix)]
    return path


def azure_url(base_url: str, deployment: str, endpoint: str = CHAT) -> str:
    """The request URL for ``endpoint`` with deployment ``deployment`` (the upstream model) from
    any accepted ``base_url`` form; raises a 400 ``ClientError`` for an endpoint the form does
    not serve."""
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/")
    api_version = True
    at = path.find(_DEPLOYMENTS + "/")
    if at >= 0 or path.endswith(_DEPLOYMENTS):
        # a deployment URL: the deployment it names wins, its endpoint path is swapped
        root = path[: at if at >= 0 else len(path) - len(_DEPLOYMENTS)]
        dep, _, rest = path[len(root) + len(_DEPLOYMENTS) + 1:].partition("/")
        rest = "/" + rest if rest else ""
        if endpoint == CHAT and rest and rest not in _ENDPOINTS:
            new_path = path  # an unusual chat URL (e.g. ``/extensions/chat/completions``)
        else:
            new_path = f"{root}{_DEPLOYMENTS}/{dep or deployment}{endpoint}"
    elif (stem := _strip_endpoint(path)).endswith(_V1):
        new_path, api_version = stem + endpoint, False
    elif stem.endswith("/models"):
        if endpoint not in _MODELS_ENDPOINTS:
            raise ClientError(
                f"{endpoint.lstrip('/')} is not available at an Azure AI Model Inference "
                f"base_url (a path ending in /models…), which serves only chat/completions and "
                f"embeddings; give this provider the resource origin "
                f"(https://<resource>.openai.azure.com) to reach a deployment's {endpoint}",
                code="unsupported_endpoint")
        new_path = stem + endpoint
    else:  # a resource origin, maybe with a path prefix (a proxy) or ``/openai``
        root = stem[: -len("/openai")] if stem.endswith("/openai") else stem
        new_path = f"{root}{_DEPLOYMENTS}/{deployment}{endpoint}"
    query = parse_qsl(parts.query, keep_blank_values=True)
    if api_version and not any(k == "api-version" for k, _ in query):
        query.append(("api-version", DEFAULT_API_VERSION))
    return urlunsplit((parts.scheme, parts.netloc, new_path, urlencode(query), ""))


def _url(ctx: ChatContext, endpoint: str) -> str:
    """``azure_url`` for this attempt; a refusal names the provider."""
    try:
        return azure_url(ctx.provider.base_url or "", ctx.upstream_model, endpoint)
    except ClientError as exc:
        raise ClientError(f"provider {ctx.provider.provider!r}: {exc.message}",
                          code=exc.code) from None


def build_exchange(body: ChatRequest | dict[str, Any], ctx: ChatContext) -> OpenAIExchange:
    out = dict(original_of(body))  # passthrough: the request as sent (the model's original)
    out["model"] = ctx.upstream_model
    if asks_usage(ctx):  # OAI-4; api-versions before 2024-08-01-preview need stream_usage: false
        with_usage_asked(out)
    headers = [("content-type", "application/json"),
               ("accept", "text/event-stream" if ctx.stream else "application/json")]
    if ctx.api_key:
        headers.append(("api-key", ctx.api_key))
    url = _url(ctx, CHAT)
    request = UpstreamRequest("POST", url, merge_headers(headers, ctx.provider.preferences.headers),
                              dumps(out))
    return OpenAIExchange(request, ctx)


def build_passthrough(endpoint: str) -> Any:
    """Embeddings/moderations/images at the deployment URL form (AZ-3)."""
    def build(body: dict[str, Any], ctx: ChatContext) -> PassthroughExchange:
        auth = [("api-key", ctx.api_key)] if ctx.api_key else []
        return passthrough_request(body, ctx, _url(ctx, endpoint), auth)
    return build


def build_upload(endpoint: str) -> Any:
    """Multipart endpoints (audio transcriptions) at the deployment URL form (AZ-3)."""
    def build(upload: Upload, ctx: ChatContext) -> UploadExchange:
        auth = [("api-key", ctx.api_key)] if ctx.api_key else []
        return upload_request(upload, ctx, _url(ctx, endpoint), auth)
    return build
