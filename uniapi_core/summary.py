"""The texts of ``uniapi check`` and ``uniapi route``: what a loaded config means, without
contacting anyone."""

from __future__ import annotations

import random
from collections.abc import Sequence

from .config.model import Config
from .gateway import Gateway
from .routing.resolve import Catalog, key_models
from .vendors import TRANSLATORS, detect_engine

__all__ = ["render_summary", "render_route", "redact"]


def redact(secret: str) -> str:
    """A fixed redacted form: the last four characters only (R9)."""
    return "…" + secret[-4:] if len(secret) > 8 else "…"


def render_summary(config: Config, warnings: Sequence[str] = ()) -> str:
    catalog = Catalog(config)
    lines = [f"providers: {len(config.providers)}"]
    for p in config.providers:
        engine = detect_engine(p)
        note = "" if engine in TRANSLATORS else " (engine not served yet)"
        keys = f"{len(p.api)} key{'s' if len(p.api) != 1 else ''}"
        if p.model is None:
            models = "models discovered from the upstream at start"
        else:
            names = [e.alias if e.alias == e.upstream else f"{e.alias} (→ {e.upstream})"
                     for e in p.model]
            models = f"{len(names)} model{'s' if len(names) != 1 else ''}: " + ", ".join(names)
        lines.append(f"  - {p.provider} [{engine}{note}], {keys}, {models}")
    lines.append(f"api keys: {len(config.api_keys)}")
    admins = [k for k in config.api_keys if k.role and "admin" in k.role] or list(
        config.api_keys[:1])
    for k in config.api_keys:
        role = " admin" if k in admins else ""
        if k.model is None:
            may = "every model of every provider"
        else:
            names = key_models(catalog, k)
            rules = ", ".join(r.rule + (f" (weight {r.weight})" if r.weight else "")
                              for r in k.model)
            may = f"rules: {rules}; known now: {', '.join(names) or '(none until discovery)'}"
        lines.append(f"  - {redact(k.api)}{role}: {may}")
    for w in warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines) + "\n"


def render_route(config: Config, key: str, model: str, *, requests: int = 1, seed: int = 0,
                 tools: bool = False) -> str:
    """``uniapi route``: the attempts ``requests`` requests would make, and why; the same text
    for the same ``seed`` (random and lottery scheduling draw from it), at time 0."""
    gateway = Gateway(config, entropy=random.Random(seed))
    return gateway.explain_route(key, model, requests=requests, now=0.0, tools=tools)
