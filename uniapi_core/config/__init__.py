"""api.yaml: the typed config model and its loader."""

from ..errors import ConfigError
from .loader import Loaded, load_config
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
