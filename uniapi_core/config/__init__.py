"""api.yaml: the typed, frozen config model (``model``), its loader (``load``) and rate syntax.

``load_config(text)`` is the one entry point: it returns a ``Loaded`` (the ``Config`` plus
warnings) or raises ``ConfigError`` listing every problem with its path and line.
"""

from ..errors import ConfigError
from .load import Loaded, load_config
from .model import (
    ApiKey,
    ApiKeyPreferences,
    Config,
    GlobalPreferences,
    ModelEntry,
    ModelRule,
    Provider,
    ProviderPreferences,
    RateLimit,
    RateRule,
)
from .rates import parse_rate_limit, parse_rate_rules

__all__ = [
    "ApiKey", "ApiKeyPreferences", "Config", "ConfigError", "GlobalPreferences", "Loaded",
    "ModelEntry", "ModelRule", "Provider", "ProviderPreferences", "RateLimit", "RateRule",
    "load_config", "parse_rate_limit", "parse_rate_rules",
]
