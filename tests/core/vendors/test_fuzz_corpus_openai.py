"""Replay the OpenAI fuzz corpus (and the e2e-style fixtures) through its oracle, no atheris."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CORPUS = sorted(p for p in (ROOT / "fuzz" / "corpus" / "openai").iterdir() if p.is_file())
_spec = importlib.util.spec_from_file_location("fuzz_openai", ROOT / "fuzz" / "fuzz_openai.py")
assert _spec is not None and _spec.loader is not None
fuzz_openai = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz_openai)


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_corpus_file_passes_the_oracle(path):
    fuzz_openai.check(path.read_bytes())


def test_empty_input():
    fuzz_openai.check(b"")
