"""Vertex AI (``engine: vertex``): Gemini and Claude models on one provider.

The protocol rules are in docs/vendor-rules.md, "Vertex AI" (tags VTX-…).

Theory of operation
-------------------
Vertex speaks the vendors' own wire formats behind Google's URLs and OAuth2, so this module
only adds the Vertex layer around ``gemini.py`` and ``anthropic.py``:

* *Publisher* (VTX-B1): the upstream model decides — a name containing ``claude`` is
  Anthropic's, anything else Google's.
* *URL* (docs/vendor-rules.md, VTX-U1..U3):
  ``{origin}/v1/projects/{project}/locations/{region}/publishers/{google|anthropic}/models/
  {model}:{op}``. ``op`` is ``generateContent`` / ``streamGenerateContent?alt=sse`` (Google)
  or ``rawPredict`` / ``streamRawPredict`` (Anthropic). The origin is
  ``https://{region}-aiplatform.googleapis.com`` (``https://aiplatform.googleapis.com`` for
  ``global``), or the provider's ``base_url`` (scheme, host and path prefix, a trailing
  ``/v1`` dropped) for gateways and test doubles — except a ``*aiplatform.googleapis.com``
  base_url (what uni-api's loader fills in), which means the regional host. Claude's ``@``
  versions stay unescaped (a legal path character). The region is the attempt's routing
  slot (``routing/regions.py``), passed in ``ChatContext.region``.
* *Auth* (VTX-A1): ``Authorization: Bearer <access token>`` from ``ChatContext.access_token``
  (the gateway's ``TokenCache``, ``gauth.py``); no API key header.
* *Bodies* (docs/vendor-rules.md, VTX-B2, VTX-B3): Gemini's body exactly as
  ``gemini.build_exchange(…, vertex=True)`` makes it (a ``file_id`` is a ``gs://`` object);
  Claude's as ``anthropic.build_exchange(…, first_party=False)`` makes it (a ``file_url``
  document inlined from the fetched bytes, no ``file_id``: ANT-D5, ANT-D6), without ``model``
  and with
  ``"anthropic_version": "vertex-2023-10-16"`` first (``stream: true`` stays for the stream).
  The ``anthropic-version`` header is not sent (the body carries it); other provider headers
  (an ``anthropic-beta``, say) pass as headers.
* *Answers*: the vendors' own decoders (the stream may carry ``vertex_event`` events, which the
  Anthropic decoder ignores). Claude errors may come Google-shaped
  (``{"error": {"code", "message", "status"}}``, maybe list-wrapped): those go through Gemini's
  mapping so the Google ``message``/``status`` reach the client verbatim. A 401 to an attempt
  makes the relay say ``TokenRefused`` with the attempt's ``credential``, and the request
  machine drops that token (VTX-T4).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import attrs

from ..errors import GatewayError, UpstreamError
from ..jsonutil import dumps
from ..request import ChatRequest
from . import anthropic, gemini
from .base import ChatContext, UpstreamRequest
from .openai import merge_headers

__all__ = ["ANTHROPIC_VERSION", "publisher", "vertex_origin", "vertex_url", "build_exchange",
           "VertexGeminiExchange", "VertexClaudeExchange"]

ANTHROPIC_VERSION = "vertex-2023-10-16"
_AUTH_OWNED = frozenset({"authorization", "x-goog-api-key", "x-api-key", "anthropic-version"})


def publisher(upstream_model: str) -> str:
    """``anthropic`` for Claude models, else ``google`` (VTX-B1)."""
    return "anthropic" if "claude" in upstream_model.lower() else "google"


def vertex_origin(base_url: str | None, region: str) -> str:
    """Where Vertex is reached for ``region`` (VTX-U2)."""
    if base_url and base_url.strip():
        parts = urlsplit(base_url.strip())
        host = (parts.hostname or "").lower()
        if not host.endswith("aiplatform.googleapis.com"):
            path = parts.path.rstrip("/")
            if path.endswith("/v1"):
                path = path[:-3]
            return urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    if region == "global":
        return "https://aiplatform.googleapis.com"
    return f"https://{region}-aiplatform.googleapis.com"


def vertex_url(base_url: str | None, project: str, region: str, model: str,
               stream: bool) -> str:
    """The full request URL (VTX-U1, VTX-U3)."""
    pub = publisher(model)
    if pub == "anthropic":
        op = "streamRawPredict" if stream else "rawPredict"
    else:
        op = "streamGenerateContent?alt=sse" if stream else "generateContent"
        model = model.removeprefix("models/")
    return (f"{vertex_origin(base_url, region)}/v1/projects/{quote(project, safe='')}"
            f"/locations/{quote(region, safe='')}/publishers/{pub}/models/"
            f"{quote(model, safe='-._~@')}:{op}")


def _config_error(ctx: ChatContext, what: str) -> GatewayError:
    return GatewayError(f"provider {ctx.provider.provider!r} {what}", status=500,
                        code="provider_misconfigured")


def build_exchange(req: ChatRequest | dict[str, Any], ctx: ChatContext
                   ) -> "VertexGeminiExchange | VertexClaudeExchange":
    """The Vertex request for one attempt; ``ctx.region`` and ``ctx.access_token`` are set by
    the gateway. ``ClientError``/``ImagesNeeded`` come from the vendor body builders."""
    p = ctx.provider
    if not (isinstance(p.project_id, str) and p.project_id.strip()):
        raise _config_error(ctx, "is a Vertex provider without project_id")
    if not ctx.region or not ctx.access_token:
        raise GatewayError(f"provider {p.provider!r}: no Vertex region or access token for "
                           "this attempt", status=500, code="vertex_token_missing")
    inner_ctx = _keyless(ctx)
    url = vertex_url(p.base_url, p.project_id.strip(), ctx.region, ctx.upstream_model,
                     ctx.stream)
    prefs = tuple((k, v) for k, v in p.preferences.headers if k.lower() not in _AUTH_OWNED)
    if publisher(ctx.upstream_model) == "anthropic":
        inner = anthropic.build_exchange(req, inner_ctx, first_party=False)
        body = json.loads(inner.request.body)
        body.pop("model", None)
        data = dumps({"anthropic_version": ANTHROPIC_VERSION, **body})
        headers = [("content-type", "application/json"),
                   ("accept", "text/event-stream" if ctx.stream else "application/json")]
        request = UpstreamRequest("POST", url, _auth(headers, prefs, ctx.access_token), data)
        return VertexClaudeExchange(request, ctx, inner.structured)
    gemini_inner = gemini.build_exchange(req, inner_ctx, vertex=True)
    headers = [("content-type", "application/json")]
    request = UpstreamRequest("POST", url, _auth(headers, prefs, ctx.access_token),
                              gemini_inner.request.body)
    return VertexGeminiExchange(request, ctx)


def _keyless(ctx: ChatContext) -> ChatContext:
    """The context the inner builders see: no API key (so no key header is made)."""
    return attrs.evolve(ctx, api_key=None)


def _auth(headers: list[tuple[str, str]], prefs: tuple[tuple[str, str], ...],
          token: str) -> tuple[tuple[str, str], ...]:
    return merge_headers(headers, prefs) + (("authorization", f"Bearer {token}"),)


class VertexGeminiExchange(gemini.GeminiExchange):
    """Gemini on Vertex: Gemini's answers and errors."""


class VertexClaudeExchange(anthropic.AnthropicExchange):
    """Claude on Vertex: Anthropic's answers; Anthropic- or Google-shaped errors."""

    def parse_error(self, status: int, headers: tuple[tuple[str, str], ...],
                    body: bytes) -> UpstreamError:
        try:
            obj = json.loads(body[:65536]) if body else None
        except (ValueError, RecursionError):
            obj = None
        if isinstance(obj, list) and obj and isinstance(obj[0], dict):
            obj = obj[0]
        err = obj.get("error") if isinstance(obj, dict) else None
        if isinstance(err, dict) and "type" not in err and (
                "status" in err or isinstance(err.get("code"), int)):
            return gemini._google_error(status, headers, body, obj)
        return super().parse_error(status, headers, body)
