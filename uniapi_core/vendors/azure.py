"""Azure OpenAI: the OpenAI protocol at Azure's URLs, with the ``api-key`` header
(docs/vendor-rules.md, "Azure OpenAI").

URL forms (AZ-1, AZ-2): a bare resource origin gets
``/openai/deployments/<upstream model>/chat/completions``; a full deployment or
``/models/chat/completions`` URL is used as given; ``api-version`` is added when the query has
none (default ``2024-10-21``, as the seed FAQ says), by parsing the query, not by substring.
Responses are OpenAI's; the prompt-filter chunk with empty ``choices`` that Azure sends first
is skipped by the OpenAI decoder (AZ-5), filter annotations pass through untouched (AZ-4).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..jsonutil import dumps
from .base import ChatContext, UpstreamRequest
from .openai import (OpenAIExchange, PassthroughExchange, Upload, UploadExchange, merge_headers,
                     passthrough_request, upload_request)

__all__ = ["DEFAULT_API_VERSION", "azure_url", "build_exchange", "build_passthrough",
           "build_upload"]

DEFAULT_API_VERSION = "2024-10-21"


def azure_url(base_url: str, deployment: str, endpoint: str = "/chat/completions") -> str:
    """The request URL for ``deployment`` from any accepted ``base_url`` form."""
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/")
    if "/openai/deployments/" in path or path.endswith("/models" + endpoint):
        new_path = path
    elif path.endswith("/models"):
        new_path = path + endpoint
    else:
        new_path = f"{path}/openai/deployments/{deployment}{endpoint}"
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not any(k == "api-version" for k, _ in query):
        query.append(("api-version", DEFAULT_API_VERSION))
    return urlunsplit((parts.scheme, parts.netloc, new_path, urlencode(query), ""))


def build_exchange(body: dict[str, Any], ctx: ChatContext) -> OpenAIExchange:
    out = dict(body)
    out["model"] = ctx.upstream_model
    headers = [("content-type", "application/json"),
               ("accept", "text/event-stream" if ctx.stream else "application/json")]
    if ctx.api_key:
        headers.append(("api-key", ctx.api_key))
    url = azure_url(ctx.provider.base_url or "", ctx.upstream_model)
    request = UpstreamRequest("POST", url, merge_headers(headers, ctx.provider.preferences.headers),
                              dumps(out))
    return OpenAIExchange(request, ctx)


def build_passthrough(endpoint: str) -> Any:
    """Embeddings/moderations/images at the deployment URL form (AZ-3)."""
    def build(body: dict[str, Any], ctx: ChatContext) -> PassthroughExchange:
        auth = [("api-key", ctx.api_key)] if ctx.api_key else []
        return passthrough_request(body, ctx, azure_url(ctx.provider.base_url or "",
                                                        ctx.upstream_model, endpoint), auth)
    return build



def build_upload(endpoint: str) -> Any:
    """Multipart endpoints (audio transcriptions) at the deployment URL form (AZ-3)."""
    def build(upload: Upload, ctx: ChatContext) -> UploadExchange:
        auth = [("api-key", ctx.api_key)] if ctx.api_key else []
        return upload_request(upload, ctx, azure_url(ctx.provider.base_url or "",
                                                     ctx.upstream_model, endpoint), auth)
    return build
