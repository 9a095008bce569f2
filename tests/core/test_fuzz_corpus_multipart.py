"""Replay the multipart fuzz corpus through the fuzz oracle, without atheris.

``fuzz/fuzz_multipart.py`` is a script, not a package module, so it is loaded from its path.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "fuzz" / "fuzz_multipart.py"
CORPUS = sorted(p for p in (ROOT / "fuzz" / "corpus" / "multipart").iterdir() if p.is_file())


def _load_target():
    spec = importlib.util.spec_from_file_location("fuzz_multipart", TARGET)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz_multipart = _load_target()


def test_corpus_is_not_empty():
    assert len(CORPUS) >= 10


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_corpus_file_passes_the_oracle(path):
    fuzz_multipart.check(path.read_bytes())


def test_oracle_accepts_the_empty_input():
    fuzz_multipart.check(b"")
