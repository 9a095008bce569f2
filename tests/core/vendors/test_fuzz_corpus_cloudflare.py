"""Replay the Cloudflare fuzz corpus through the fuzz oracle, without atheris (DEC-1, DEC-2).

``fuzz/fuzz_cloudflare.py`` is a script, not a package module, so it is loaded from its path.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
TARGET = ROOT / "fuzz" / "fuzz_cloudflare.py"
CORPUS = sorted(p for p in (ROOT / "fuzz" / "corpus" / "cloudflare").iterdir() if p.is_file())


def _load_target():
    spec = importlib.util.spec_from_file_location("fuzz_cloudflare", TARGET)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz_cloudflare = _load_target()


def test_corpus_is_not_empty():
    assert len(CORPUS) >= 10


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_corpus_file_passes_the_oracle(path):
    fuzz_cloudflare.check(path.read_bytes())


def test_oracle_accepts_the_empty_input():
    fuzz_cloudflare.check(b"")


def test_fixtures_pass_the_oracle():
    """Every payload fixture of the unit tests is a seed too."""
    for path in sorted((ROOT / "tests" / "data" / "cloudflare").iterdir()):
        fuzz_cloudflare.check(path.read_bytes())
