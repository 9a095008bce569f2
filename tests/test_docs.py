"""docs/vendors.md is generated from the translators' MAPPED/DROPPED tables; it must match.

Regenerate it with ``python tests/test_docs.py``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from uniapi_core.vendors import vertex

PAGE = Path(__file__).resolve().parent.parent / "docs" / "vendors.md"
VENDORS = ["anthropic", "gemini", "cohere", "cloudflare"]


def render() -> str:
    out = ["# Vendor translation: what each upstream gets\n\n",
           "Each translating vendor module keeps explicit tables of the OpenAI request fields it "
           "maps and the ones it drops, with the reason (vendor-protocols REQ-3: unmapped fields "
           "are never copied into a vendor body; Anthropic and Google reject unknown fields). "
           "OpenAI-compatible and Azure upstreams get every field untouched except `model`.\n\n",
           "Generated from the modules' `MAPPED`/`DROPPED` tables by "
           "`python tests/test_docs.py`; a test checks it is current.\n"]
    for name in VENDORS:
        module = importlib.import_module(f"uniapi_core.vendors.{name}")
        out.append(f"\n## {name}\n\n")
        mapped = sorted(getattr(module, "MAPPED", ()))
        out.append("Mapped: " + ", ".join(f"`{k}`" for k in mapped) + "\n")
        dropped = getattr(module, "DROPPED", {})
        items = sorted(dropped.items()) if isinstance(dropped, dict) else [
            (k, "") for k in sorted(dropped)]
        if items:
            out.append("\n| dropped field | why |\n| --- | --- |\n")
            out += [f"| `{k}` | {str(v).replace('|', '/')} |\n" for k, v in items]
    out.append("\n## bedrock\n\nThe Anthropic body (same mapped and dropped fields) without "
               "`model` and `stream`, plus `anthropic_version: bedrock-2023-05-31`, "
               "SigV4-signed.\n")
    out.append("\n## vertex\n\nGemini models get the gemini body and Claude models the "
               "anthropic body (same mapped and dropped fields), at "
               "`…/v1/projects/<project>/locations/<region>/publishers/<google|anthropic>/"
               "models/<model>:<generateContent|streamGenerateContent?alt=sse|rawPredict|"
               "streamRawPredict>` with `Authorization: Bearer <service-account token>`; the "
               "Claude body has no `model` and starts with "
               f"`anthropic_version: {vertex.ANTHROPIC_VERSION}`. Regions: docs/routing.md "
               "§6.\n")
    return "".join(out)


def test_vendors_page_is_current():
    assert PAGE.read_text() == render(), "run: python tests/test_docs.py"


if __name__ == "__main__":
    PAGE.write_text(render())
