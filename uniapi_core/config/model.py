"""The typed, frozen shape of ``api.yaml``.

Pure data: no parsing here (that is ``load.py``). Field names follow the YAML keys so that a
reader of ``api.yaml`` finds them; where the YAML allows several spellings (``api`` as a string
or a list, ``model_timeout`` as a number or a map) the loader normalises to one shape.

``None`` always means *absent* and is distinct from zero, false or empty: ``cooldown_period: 0``
is ``0.0`` (cooldown off), a missing ``cooldown_period`` is ``None`` (the default applies).
"""

from __future__ import annotations

from typing import Any

import attrs

__all__ = [
    "RateRule",
    "RateLimit",
    "ModelEntry",
    "ProviderPreferences",
    "Provider",
    "ModelRule",
    "ApiKeyPreferences",
    "ApiKey",
    "GlobalPreferences",
    "Config",
]

# Spelled out on every class (not an alias ``frozen = attrs.frozen(kw_only=True)``): mypy's
# attrs plugin only recognises the decorator itself, and without it every constructor is untyped.


@attrs.frozen(kw_only=True)
class RateRule:
    """One window of a rate limit: at most ``count`` requests per ``period`` seconds."""

    count: int
    period: float
    #: the text it came from (``"15/min"``), for messages
    text: str = ""


@attrs.frozen(kw_only=True)
class RateLimit:
    """A parsed ``rate_limit`` / ``api_key_rate_limit`` value.

    Either ``rules`` (one rule set for everything: ``"15/min,1000/day"``) or ``per_model`` (a
    map model name -> rule set; the key ``"default"`` applies, per model, to unmatched models).
    """

    rules: tuple[RateRule, ...] = ()
    per_model: tuple[tuple[str, tuple[RateRule, ...]], ...] = ()


@attrs.frozen(kw_only=True)
class ModelEntry:
    """One item of a provider's ``model`` list: ``upstream`` is sent, ``alias`` is exposed."""

    upstream: str
    alias: str


@attrs.frozen(kw_only=True)
class ProviderPreferences:
    api_key_rate_limit: RateLimit | None = None
    api_key_cooldown_period: float | None = None
    api_key_schedule_algorithm: str | None = None
    #: model name (or ``"default"``) -> seconds, in file order
    model_timeout: tuple[tuple[str, float], ...] | None = None
    cooldown_period: float | None = None
    proxy: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    #: OpenAI-compatible hosts: the dialect to normalize (None: from the engine and base_url)
    dialect: str | None = None
    #: ``<think>…</think>`` leading the content is reasoning (None: the dialect's default)
    think_tags: bool | None = None
    #: OpenAI-compatible hosts: add ``stream_options.include_usage`` to streams the client did
    #: not ask usage for (OAI-4); ``False`` for hosts that reject ``stream_options``
    stream_usage: bool | None = None
    #: Claude channels: how ``response_format`` is enforced, ``"native"`` (``output_config``)
    #: or ``"tool"`` (the forced answer tool); None: by the model (vendors/anthropic.py)
    structured_output: str | None = None
    #: keys uniapi accepts for compatibility but does not act on yet (name -> raw value)
    extra: tuple[tuple[str, Any], ...] = ()


@attrs.frozen(kw_only=True)
class Provider:
    provider: str
    base_url: str | None = None
    #: provider keys, in file order (empty for Vertex service accounts / AWS)
    api: tuple[str, ...] = ()
    #: ``None`` = no list: discover from the upstream at start
    model: tuple[ModelEntry, ...] | None = None
    engine: str | None = None
    tools: bool = True
    image: bool = True
    notes: Any = None
    project_id: str | None = None
    private_key: str | None = None
    client_email: str | None = None
    token_uri: str | None = None
    regions: tuple[str, ...] | None = None
    cf_account_id: str | None = None
    aws_access_key: str | None = None
    aws_secret_key: str | None = None
    aws_session_token: str | None = None
    aws_region: str | None = None
    preferences: ProviderPreferences = ProviderPreferences()
    #: 1-based line of the ``- provider:`` item in api.yaml (0 when not from a file)
    line: int = 0


@attrs.frozen(kw_only=True)
class ModelRule:
    """One item of an api key's ``model`` list: ``gpt-4o``, ``openai/*``, ``<a/b>``, ``sk-x/*``."""

    rule: str
    weight: int | None = None


@attrs.frozen(kw_only=True)
class ApiKeyPreferences:
    SCHEDULING_ALGORITHM: str | None = None
    #: ``True``/``False`` or a number of retries after the first attempt
    AUTO_RETRY: bool | int | None = None
    rate_limit: RateLimit | None = None
    ENABLE_MODERATION: bool | None = None
    extra: tuple[tuple[str, Any], ...] = ()


@attrs.frozen(kw_only=True)
class ApiKey:
    api: str
    #: ``None`` = no list: every model of every provider
    model: tuple[ModelRule, ...] | None = None
    role: str | None = None
    #: direct ``weights:`` map (``provider/model`` -> weight), in file order
    weights: tuple[tuple[str, int], ...] = ()
    preferences: ApiKeyPreferences = ApiKeyPreferences()
    line: int = 0


@attrs.frozen(kw_only=True)
class GlobalPreferences:
    #: model name (or ``"default"``) -> seconds; a bare number in YAML becomes ``(("default", n),)``
    model_timeout: tuple[tuple[str, float], ...] | None = None
    cooldown_period: float | None = None
    error_triggers: tuple[str, ...] = ()
    proxy: str | None = None
    rate_limit: RateLimit | None = None
    #: ``GET /metrics`` without an admin key (for a scraper on a private network)
    metrics_public: bool = False
    #: seconds a stored ``/v1/responses`` answer is kept for ``previous_response_id``
    responses_ttl: float = 30 * 86400.0
    #: seconds a decision on the shared state (``--redis-url``) may take before this process
    #: decides on its own state (docs/scale-out.md)
    redis_timeout: float = 0.05
    extra: tuple[tuple[str, Any], ...] = ()


@attrs.frozen(kw_only=True)
class Config:
    providers: tuple[Provider, ...] = ()
    api_keys: tuple[ApiKey, ...] = ()
    preferences: GlobalPreferences = GlobalPreferences()
