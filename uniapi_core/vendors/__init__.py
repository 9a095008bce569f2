"""Vendor translators: one module per wire protocol, each with three pure parts.

``TRANSLATORS`` maps an engine name to its exchange builder
(``(ChatRequest | openai_request_dict, ChatContext) -> Exchange``). Engines without an entry are
not served yet; routing skips their channels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..config.model import Provider
from ..request import ChatRequest
from . import anthropic, azure, bedrock, cloudflare, cohere, gemini, openai, vertex
from .base import ChatContext, Exchange, UpstreamRequest
from .engine import ENGINES, detect_engine

__all__ = ["TRANSLATORS", "ENDPOINTS", "UPLOADS", "ENGINES", "detect_engine", "discovery_request",
           "parse_discovery"]

#: each builder takes the parsed request model or the dict (which it parses): a
#: ``ChatRequest`` parsed once at the edge serves every attempt (docs/architecture.md, "The
#: request model")
TRANSLATORS: dict[str, Callable[[ChatRequest | dict[str, Any], ChatContext], Exchange]] = {
    "gpt": openai.build_exchange,
    "openrouter": openai.build_exchange,
    "azure": azure.build_exchange,
    "claude": anthropic.build_exchange,
    "gemini": gemini.build_exchange,
    "cohere": cohere.build_exchange,
    "cloudflare": cloudflare.build_exchange,
    "aws": bedrock.build_exchange,
    "vertex": vertex.build_exchange,
}


#: the whole-body OpenAI endpoints (docs/routing.md §9): path -> engine -> exchange builder
ENDPOINTS: dict[str, dict[str, Callable[[dict[str, Any], ChatContext], Exchange]]] = {
    path: {"gpt": openai.build_passthrough(suffix),
           "openrouter": openai.build_passthrough(suffix),
           "azure": azure.build_passthrough(suffix)}
    for path, suffix in (("/v1/embeddings", "/embeddings"),
                         ("/v1/moderations", "/moderations"),
                         ("/v1/images/generations", "/images/generations"))
}


#: the multipart OpenAI endpoints: path -> engine -> exchange builder (``openai.Upload`` in)
UPLOADS: dict[str, dict[str, Callable[[Any, ChatContext], Exchange]]] = {
    "/v1/audio/transcriptions": {"gpt": openai.build_upload("/audio/transcriptions"),
                                 "azure": azure.build_upload("/audio/transcriptions")},
}


def discovery_request(provider: Provider) -> UpstreamRequest | None:
    """The request that lists ``provider``'s models, or None when it cannot be discovered."""
    if detect_engine(provider) not in ("gpt", "openrouter") or not provider.base_url:
        return None
    key = provider.api[0] if provider.api else None
    headers = [("accept", "application/json")]
    if key:
        headers.append(("authorization", f"Bearer {key}"))
    headers.extend(provider.preferences.headers)
    return UpstreamRequest("GET", openai.models_url(provider.base_url), tuple(headers))


def parse_discovery(provider: Provider, status: int, body: bytes) -> list[str]:
    """Model ids from a discovery answer; raises ValueError when there are none."""
    if status != 200:
        raise ValueError(f"HTTP {status}")
    ids = openai.parse_models_list(body)
    if not ids:
        raise ValueError("the upstream listed no models")
    return ids
