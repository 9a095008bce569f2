"""Per-model table lookups, shared by every per-model setting.

``model_timeout``, per-model ``rate_limit`` and ``api_key_rate_limit`` maps all match a model
name the same way (docs/routing.md §3 "Rate limits"): the exact name, else the longest configured
name that is a prefix of the model, else the longest contained in it. ``default`` is never
matched by ``lookup``; each caller decides where the default sits in its own chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

__all__ = ["lookup", "default_of"]

T = TypeVar("T")


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


def default_of(table: Sequence[tuple[str, T]]) -> T | None:
    """The value of the ``default`` entry, if any."""
    for key, value in table:
        if key == "default":
            return value
    return None
