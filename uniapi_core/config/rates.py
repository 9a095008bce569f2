"""Rate-limit text: ``"15/min,1000/day"`` → windows (docs/routing.md §3 "Rate limits").

A rate is a comma-separated list of ``COUNT/UNIT`` items; every listed window must admit a
request. ``COUNT`` is a positive whole number (ASCII digits). Units, case-insensitive, singular
or plural: ``s|sec|second``, ``min|minute``, ``hour``, ``day``, ``month`` (30 days), ``year``
(365 days), and uni-api's short forms ``m`` (minute), ``h``/``hr``, ``d``, ``mo``, ``y`` so its
configs load unchanged. Spaces around items and around the ``/`` are tolerated.

A ``rate_limit`` value is one such text (→ ``RateLimit.rules``) or a map model → text
(→ ``RateLimit.per_model``, in the given order; ``default`` is kept as an ordinary entry).

Error messages never repeat the offending text: a mistyped credential must not end up in a log.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .model import RateLimit, RateRule

__all__ = ["UNITS", "parse_rate_rules", "parse_rate_limit"]

_DAY = 86400.0
_BASE = {"s": 1.0, "sec": 1.0, "second": 1.0, "min": 60.0, "minute": 60.0, "hour": 3600.0,
         "day": _DAY, "month": 30 * _DAY, "year": 365 * _DAY}
#: accepted unit names (lower case) → seconds
UNITS: Mapping[str, float] = {**_BASE, "m": 60.0, "h": 3600.0, "hr": 3600.0, "d": _DAY,
                              "mo": 30 * _DAY, "y": 365 * _DAY, "seconds": 1.0, "minutes": 60.0,
                              "hours": 3600.0, "days": _DAY, "months": 30 * _DAY,
                              "years": 365 * _DAY}
_ITEM = re.compile(r"\s*([0-9]+)\s*/\s*([A-Za-z]+)\s*", re.ASCII)
_EXAMPLE = 'expected rates like "15/min,1000/day"'
_MAX_DIGITS = 15


def parse_rate_rules(text: str) -> tuple[RateRule, ...]:
    """``"15/min,1000/day"`` → one ``RateRule`` per item, in order.

    Raises ``ValueError`` with a short message (never quoting ``text``) on bad syntax, an
    unknown unit or a count below 1.
    """
    if not isinstance(text, str):
        raise ValueError(f"{_EXAMPLE}, got {type(text).__name__}")
    rules = []
    for part in text.split(","):
        m = _ITEM.fullmatch(part)
        if m is None:
            raise ValueError("empty rate item" if not part.strip() else _EXAMPLE)
        digits, unit = m.groups()
        if len(digits.lstrip("0")) > _MAX_DIGITS:
            raise ValueError("rate count too large")
        count = int(digits)
        if count < 1:
            raise ValueError("a rate needs a count of at least 1")
        period = UNITS.get(unit.lower())
        if period is None:
            raise ValueError("unknown time unit (use s, min, hour, day, month or year)")
        rules.append(RateRule(count=count, period=period, text=part.strip()))
    return tuple(rules)


def parse_rate_limit(value: str | Mapping[str, str]) -> RateLimit:
    """A ``rate_limit`` value: a rate text (→ ``rules``) or a map model → text (``per_model``).

    Map keys are turned into strings; ``default`` stays an ordinary entry. Raises ``ValueError``
    (never quoting a value) when the value or any entry is malformed.
    """
    if isinstance(value, str):
        return RateLimit(rules=parse_rate_rules(value))
    if isinstance(value, Mapping):
        per_model = []
        for key, text in value.items():
            try:
                per_model.append((str(key), parse_rate_rules(text)))
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        return RateLimit(per_model=tuple(per_model))
    raise ValueError(f"{_EXAMPLE} or a map model → rate, got {type(value).__name__}")
