"""Vertex AI regions: the schedulable slots of a Vertex channel (VTX-1, docs/routing.md §6).

A Vertex provider has one credential (its service account) but its quota is per region, so
routing treats each region a model is served from as one *slot* of the channel, the way a
provider's ``api`` keys are slots of an ordinary channel (``KeyPools``): rotation, exclusion
within a request, ``api_key_rate_limit`` and benches all work per region.

The regions of a channel are the provider's ``regions:`` (or ``region:``) when given, else the
seed-era default list of the model's family (VTX-1; docs/routing.md, "Vertex AI: regions"):
the first pattern found in the upstream model name wins; unknown Claude families fall back to
``us-east5`` and anything else to ``global`` (uni-api crashes on an unknown Claude family).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["DEFAULT_REGIONS", "FALLBACK_REGIONS", "vertex_regions"]

_GEMINI_POOL = ("us-central1", "us-east4", "us-west1", "us-west4", "europe-west1",
                "europe-west2")

#: (pattern searched in the lower-cased upstream model, regions), first match wins
DEFAULT_REGIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"claude-3[-.][57]-sonnet", ("us-east5", "europe-west1")),
    (r"claude-(?:opus|sonnet|haiku)-4|claude-4", ("us-east5", "europe-west1", "asia-east1")),
    (r"claude-3-opus", ("us-east5",)),
    (r"claude-3-sonnet", ("us-east5", "us-central1", "asia-southeast1")),
    (r"claude-3-haiku", ("us-east5", "us-central1", "europe-west1", "europe-west4")),
    (r"claude", ("us-east5",)),
    (r"gemini-3|gemini-2\.5-flash-image|image-preview", ("global",)),
    (r"gemini-2\.0|gemini-exp", ("us-central1",)),
    (r"gemini", _GEMINI_POOL),
)
FALLBACK_REGIONS = ("global",)
_COMPILED = tuple((re.compile(p), r) for p, r in DEFAULT_REGIONS)


def vertex_regions(provider: Any, upstream_model: str) -> tuple[str, ...]:
    """The regions ``provider`` serves ``upstream_model`` from, in rotation order."""
    own = tuple(r.strip() for r in (provider.regions or ()) if r and r.strip())
    if own:
        return tuple(dict.fromkeys(own))
    model = upstream_model.lower()
    for pattern, regions in _COMPILED:
        if pattern.search(model):
            return regions
    return FALLBACK_REGIONS
