"""Rate-limit text: ``"15/min,1000/day"`` → windows (semantics.md "Rate limits").

Units: ``s|sec|second``, ``min|minute``, ``hour``, ``day``, ``month`` (30 days), ``year``
(365 days), singular or plural. Every listed window must admit a request. A map value
(model → text) gives each model entry its own windows; ``default`` is an ordinary entry here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .model import RateLimit, RateRule

__all__ = ["UNITS", "parse_rate_rules", "parse_rate_limit"]

UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "min": 60.0, "minute": 60.0, "hour": 3600.0,
         "day": 86400.0, "month": 30 * 86400.0, "year": 365 * 86400.0}
_RULE = re.compile(r"^\s*(\d+)\s*/\s*([A-Za-z]+)\s*$")


def _unit(name: str) -> float | None:
    name = name.lower()
    if name in UNITS:
        return UNITS[name]
    if name.endswith("s") and name[:-1] in UNITS and len(name) > 2:
        return UNITS[name[:-1]]
    return None


def parse_rate_rules(text: str) -> tuple[RateRule, ...]:
    """``"15/min,1000/day"`` → rules; raises ``ValueError`` with a short message."""
    rules = []
    for part in text.split(","):
        m = _RULE.match(part)
        if m is None:
            raise ValueError(f"expected rates like \"15/min,1000/day\", got {part.strip()!r}"
                             if len(part) < 40 else "expected rates like \"15/min,1000/day\"")
        count = int(m.group(1))
        period = _unit(m.group(2))
        if period is None:
            raise ValueError(f"unknown time unit {m.group(2)!r} (use s, min, hour, day, month "
                             f"or year)")
        if count < 1:
            raise ValueError("a rate needs a count of at least 1")
        rules.append(RateRule(count=count, period=period, text=part.strip()))
    return tuple(rules)


def parse_rate_limit(value: str | Mapping[str, str]) -> RateLimit:
    """A ``rate_limit`` value: one rule text, or a map model → rule text."""
    if isinstance(value, str):
        return RateLimit(rules=parse_rate_rules(value))
    return RateLimit(per_model=tuple((str(k), parse_rate_rules(v)) for k, v in value.items()))
