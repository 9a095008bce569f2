"""Which windows of a configured rate limit apply to a request for a given model.

A single rule set (``"15/min,1000/day"``) limits everything under one scope. A per-model map
gives each configured entry its own window, shared by every model the entry matches (the
matching of ``modelmatch.lookup``); ``default`` applies, per model, to models that match no
entry; a model that matches nothing and has no default is not limited.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from ..config.model import RateLimit, RateRule
from ..modelmatch import lookup

__all__ = ["limit_scope"]


def limit_scope(limit: RateLimit | None, model: str
                ) -> tuple[tuple[Hashable, ...], Sequence[RateRule]] | None:
    """(scope, windows) for ``model``, or None when nothing limits it. The caller prefixes
    the scope with its own subject (an api key, a provider key)."""
    if limit is None:
        return None
    if limit.per_model:
        table = [(name, (name, rules)) for name, rules in limit.per_model]
        found = lookup(table, model)
        if found is not None:
            entry, rules = found
            return ((entry,), rules) if rules else None
        for name, rules in limit.per_model:
            if name == "default":
                return (("default", model), rules) if rules else None
        return None
    if limit.rules:
        return (), limit.rules
    return None
