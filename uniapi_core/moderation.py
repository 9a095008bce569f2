"""The moderation check of ``ENABLE_MODERATION`` (docs/routing.md §12), as pure functions: what
text is checked, with which model, and what a /v1/moderations answer flags."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["DEFAULT_MODERATION_MODEL", "last_user_text", "flagged_categories",
           "moderation_model"]

#: the moderation model when a /v1/moderations request names none (the seed FAQ)
DEFAULT_MODERATION_MODEL = "text-moderation-latest"


def moderation_model(allowed: list[str]) -> str:
    """The first model the key may use whose name says moderation, else the default."""
    names = [n for n in allowed if "moderation" in n]
    return names[0] if names else DEFAULT_MODERATION_MODEL


def last_user_text(messages: list[Any]) -> str:
    """The text of the last user message (its text parts joined by newlines), or ""."""
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "\n".join(p["text"] for p in content if isinstance(p, dict)
                                 and p.get("type") == "text" and isinstance(p.get("text"), str))
    return ""


def flagged_categories(body: bytes) -> list[str]:
    """The categories a /v1/moderations answer flags (``["flagged"]`` when it names none)."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        return []
    flagged: list[str] = []
    for result in (obj.get("results") or []) if isinstance(obj, dict) else []:
        if isinstance(result, dict) and result.get("flagged"):
            cats = result.get("categories") or {}
            flagged += [k for k, v in cats.items() if v] if isinstance(cats, dict) else []
            flagged = flagged or ["flagged"]
    return list(dict.fromkeys(flagged))
