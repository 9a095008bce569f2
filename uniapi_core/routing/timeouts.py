"""The timeout precedence chain (docs/routing.md §8 "Timeouts")."""

from __future__ import annotations

from ..config.model import GlobalPreferences, Provider
from ..modelmatch import default_of, lookup

__all__ = ["lookup", "model_timeout", "DEFAULT_TIMEOUT"]

#: the last fallback when neither api.yaml nor env TIMEOUT says anything
DEFAULT_TIMEOUT = 100.0


def model_timeout(provider: Provider, global_prefs: GlobalPreferences, alias: str,
                  upstream: str, env_timeout: float | None) -> float:
    """Seconds for one attempt: provider match > provider default > global match > global
    default > env ``TIMEOUT`` > 100. The client-facing alias is looked up before the
    upstream name at each level."""
    for table in (provider.preferences.model_timeout, global_prefs.model_timeout):
        if table is None:
            continue
        for name in (alias, upstream):
            value = lookup(table, name)
            if value is not None:
                return float(value)
        value = default_of(table)
        if value is not None:
            return float(value)
    return float(env_timeout) if env_timeout is not None else DEFAULT_TIMEOUT
