"""Per-model lookups and the timeout precedence chain (semantics.md "Timeouts").

``lookup`` is shared by every per-model table (``model_timeout``, per-model rate limits): the
exact name, else the longest configured name that is a prefix of the model, else the longest
contained in it; ``default`` is not matched here, callers decide where it sits in their chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from ..config.model import GlobalPreferences, Provider

__all__ = ["lookup", "model_timeout", "DEFAULT_TIMEOUT"]

T = TypeVar("T")

#: the last fallback when neither api.yaml nor env TIMEOUT says anything
DEFAULT_TIMEOUT = 100.0


def lookup(table: Sequence[tuple[str, T]], name: str) -> T | None:
    """The value for ``name`` in ``table`` (``default`` excluded); ``None`` when nothing matches."""
    exact = None
    prefix: tuple[int, T] | None = None
    contained: tuple[int, T] | None = None
    for key, value in table:
        if key == "default":
            continue
        if key == name:
            exact = value
            break
        if name.startswith(key):
            if prefix is None or len(key) > prefix[0]:
                prefix = (len(key), value)
        elif key in name and (contained is None or len(key) > contained[0]):
            contained = (len(key), value)
    if exact is not None:
        return exact
    if prefix is not None:
        return prefix[1]
    return contained[1] if contained is not None else None


def _default(table: Sequence[tuple[str, T]]) -> T | None:
    for key, value in table:
        if key == "default":
            return value
    return None


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
        value = _default(table)
        if value is not None:
            return float(value)
    return float(env_timeout) if env_timeout is not None else DEFAULT_TIMEOUT
