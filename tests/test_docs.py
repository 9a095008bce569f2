"""docs/vendors.md is generated from the translators' MAPPED/DROPPED tables; it must match.
Every rule id the code cites has a heading in docs/, and nothing points outside the repository.

Regenerate docs/vendors.md with ``python tests/test_docs.py``.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from uniapi_core.vendors import vertex

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "vendors.md"
VENDORS = ["anthropic", "gemini", "cohere", "cloudflare"]


def render() -> str:
    out = ["# Vendor translation: what each upstream gets\n\n",
           "Each translating vendor module keeps explicit tables of the OpenAI request fields it "
           "maps and the ones it drops, with the reason (docs/contracts.md, REQ-3: unmapped fields "
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


# -- rule ids and outside documents ------------------------------------------------------------

#: where rule ids may be cited: the code, the tests, fuzz targets, benchmarks and the docs
SCANNED = ["uniapi_core", "uniapi_trio", "uniapi_asyncio", "tests", "fuzz", "benchmarks", "docs"]
_PREFIXES = "DEC|REQ|TC|ERR|SSE|O|S|U|D|ANT|GEM|VTX|BR|AZ|OAI|CF|CO"
#: a rule id: a known prefix, a dash, an optional letter and a number (``DEC-1``, ``GEM-R4``,
#: ``S-8``), or a reliability rule (``R`` and one or two digits). Only known prefixes count, so
#: UTF-8, SHA-256 or CRC-32 are words, and the lookarounds keep ``ANT-R7`` one id, not two.
TAG = re.compile(rf"(?<![\w-])(?:(?:{_PREFIXES})-[A-Z]?\d+|R\d{{1,2}})(?![\w-])")
#: ``S-1..S-8``, ``GEM-R1..R3``, ``SSE-1 … SSE-10``, ``R3–R11``: every id in between is cited
RANGE = re.compile(rf"(?<![\w-])(?P<p>(?:{_PREFIXES})-|)(?P<l>[A-Z]?)(?P<a>\d+)"
                   r"\s*(?:\.\.|…|–)\s*(?:(?P=p))?(?P=l)(?P<b>\d+)(?![\w-])")
#: names of documents that live outside this repository (spelled so this file does not match)
OUTSIDE = re.compile(r"spec[/]|semantics\.md|vendor[-]protocols|reliability\.md|"
                     r"uni-api[-]reference|dependencies\.md|seeds[/]|style\.md|"
                     r"DEVELOPERS\.md|\.\.[/]shared")


def _scanned(suffixes: tuple[str, ...]) -> list[Path]:
    files = [ROOT / "README.md"]
    for top in SCANNED:
        files += sorted(p for p in (ROOT / top).rglob("*")
                        if p.is_file() and p.suffix in suffixes and "__pycache__" not in p.parts)
    return files


def cited_tags() -> dict[str, list[str]]:
    """Rule id -> the ``file:line`` places citing it (ranges expanded)."""
    cited: dict[str, list[str]] = {}
    for path in _scanned((".py", ".md")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            where = f"{path.relative_to(ROOT)}:{n}"
            tags = TAG.findall(line)
            for m in RANGE.finditer(line):
                prefix, letter = m["p"], m["l"]
                if not prefix and letter != "R":
                    continue  # "1..3" is not a rule range
                tags += [f"{prefix}{letter}{i}" for i in range(int(m["a"]), int(m["b"]) + 1)]
            for tag in tags:
                cited.setdefault(tag, []).append(where)
    return cited


def headed_tags() -> set[str]:
    """Rule ids that head a section of a docs/ page (``### DEC-1 Split invariance``)."""
    headed = set()
    for page in (ROOT / "docs").glob("*.md"):
        for line in page.read_text(encoding="utf-8").splitlines():
            words = line.lstrip("#").split() if line.startswith("#") else []
            if words and TAG.fullmatch(words[0]):
                headed.add(words[0])
    return headed


def test_the_tag_pattern_knows_words_from_rule_ids():
    text = "UTF-8 SHA-256 CRC-32 SSH-2 PDF-1 ANT-R1 R3_CASES x-1 DEC-1 GEM-R4 S-8 R7 BR-S3"
    assert TAG.findall(text) == ["ANT-R1", "DEC-1", "GEM-R4", "S-8", "R7", "BR-S3"]
    assert [m.group() for m in RANGE.finditer("S-1..S-8, GEM-R1..R3, R3–R11, 1..3")] == [
        "S-1..S-8", "GEM-R1..R3", "R3–R11", "1..3"]


def test_every_cited_tag_resolves_to_a_docs_heading():
    cited, headed = cited_tags(), headed_tags()
    missing = sorted(set(cited) - headed)
    assert not missing, "rule ids cited without a heading in docs/ (docs/contracts.md for " \
        "shared rules, docs/vendor-rules.md for vendor rules):\n" + "\n".join(
            f"  {tag}: {', '.join(cited[tag][:5])}" for tag in missing)


def test_no_reference_to_documents_outside_the_repository():
    found = []
    for path in _scanned((".py", ".md", ".txt", ".toml", ".yaml", ".yml", ".json", ".cfg")):
        text = path.read_text(encoding="utf-8", errors="replace")
        for n, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line) and "github.com/yym68686/uni-api" not in line:
                found.append(f"  {path.relative_to(ROOT)}:{n}: {line.strip()[:120]}")
    assert not found, "references to documents outside the repository; point at docs/ " \
        "instead:\n" + "\n".join(found)


if __name__ == "__main__":
    PAGE.write_text(render())
