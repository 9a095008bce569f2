"""The text of ``uniapi route``: what routing would do for the next requests of one key for one
model — every attempt in order (provider, upstream model, key index or region) and why each
candidate was chosen, skipped, cooling or over its limit. Deterministic for a seed."""

from __future__ import annotations

import random

from ..config.model import ApiKey
from ..errors import UniapiError
from .plan import Attempt
from .resolve import Channel
from .router import Need, Router

__all__ = ["explain_route"]


def explain_route(router: Router, key: ApiKey, digest: bytes, model: str, *, requests: int,
                  now: float, entropy: random.Random, tools: bool = False,
                  engines: frozenset[str] = frozenset()) -> str:
    """The plan of each of the next ``requests`` requests, as text (``digest``: the key's)."""
    lines = []

    def build(channel: Channel, key_index: int | None, number: int) -> Attempt:
        return Attempt(number=number, provider=channel.provider.provider,
                       upstream_model=channel.upstream_model, key_index=key_index,
                       exchange=None, timeout=0.0)  # type: ignore[arg-type]

    need = Need(tools=tools, engines=engines)
    for i in range(1, requests + 1):
        lines.append(f"request {i}:")
        try:
            plan = router.plan(key, digest, model, need, now, entropy, build)
        except UniapiError as exc:
            lines.append(f"  refused: HTTP {exc.status} {exc.message}")
            continue
        while plan.next_attempt(now, None) is not None:
            pass
        if not any(d.verdict == "attempt" for d in plan.explained):
            err = plan.refusal()
            lines.append(f"  refused: HTTP {err.status} {err.message}")
        for d in plan.explained:
            key_text = "" if d.key_index is None else f" key[{d.key_index}]"
            if d.region is not None:
                key_text = f" region {d.region}"
            detail = f" ({d.detail})" if d.detail else ""
            lines.append(f"  {d.verdict:<10} {d.provider} → {d.upstream_model}{key_text}"
                         f"{detail}")
    return "\n".join(lines) + "\n"
