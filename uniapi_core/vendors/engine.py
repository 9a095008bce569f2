"""Which wire protocol a provider speaks (docs/routing.md §11 "Engines and URLs").

``engine:`` wins when given; otherwise the base_url decides. There is deliberately no switching
by model name (the original's ``openrouter`` heuristic).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ..config.model import Provider

__all__ = ["ENGINES", "detect_engine"]

#: canonical engine names; aliases accepted in ``engine:`` map onto them
ENGINES = ("gpt", "openrouter", "azure", "claude", "gemini", "vertex", "aws", "cohere",
           "cloudflare")
_ALIASES = {"openai": "gpt", "anthropic": "claude", "bedrock": "aws",
            "vertex-gemini": "vertex", "vertex-claude": "vertex"}


def detect_engine(provider: Provider) -> str:
    """The engine of ``provider``: explicit ``engine:`` first, then the base_url."""
    if provider.engine:
        name = provider.engine.lower()
        return _ALIASES.get(name, name)
    if provider.project_id and not provider.base_url:
        return "vertex"
    if provider.cf_account_id:
        return "cloudflare"
    url = provider.base_url or ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "gpt"
    host = (parts.hostname or "").lower()
    path = parts.path.rstrip("/")
    if path.endswith("/v1beta") or (host == "generativelanguage.googleapis.com"
                                    and "/v1beta/openai" not in path):
        return "gemini"
    if host.endswith("aiplatform.googleapis.com") or (
            host.endswith("gateway.ai.cloudflare.com") and "google-vertex-ai" in path):
        return "vertex"
    if host.endswith(("openai.azure.com", "cognitiveservices.azure.com",
                      "services.ai.azure.com")):
        return "azure"
    if host == "api.cloudflare.com":
        return "cloudflare"
    if host == "api.anthropic.com" or path.endswith("/v1/messages"):
        return "claude"
    if "amazonaws.com" in host:
        return "aws"
    if host == "api.cohere.com":
        return "cohere"
    return "gpt"
