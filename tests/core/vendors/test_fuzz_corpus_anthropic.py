"""Replay the Anthropic fuzz corpus through the fuzz oracle, without atheris (DEC-1, DEC-2).

``fuzz/fuzz_anthropic.py`` is a script, not a package module, so it is loaded from its path.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
TARGET = ROOT / "fuzz" / "fuzz_anthropic.py"
CORPUS = sorted(p for p in (ROOT / "fuzz" / "corpus" / "anthropic").iterdir() if p.is_file())


def _load_target():
    spec = importlib.util.spec_from_file_location("fuzz_anthropic", TARGET)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz_anthropic = _load_target()


def test_corpus_is_not_empty():
    assert len(CORPUS) >= 8


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_corpus_file_passes_the_oracle(path):
    fuzz_anthropic.check(path.read_bytes())


@pytest.mark.parametrize("data", [b"", b"{}", b"[]", b'"text"', b"null", b"\xff"])
def test_oracle_accepts_degenerate_inputs(data):
    fuzz_anthropic.check(data)


def test_the_request_seed_builds_an_exchange():
    import json

    from uniapi_core.vendors.anthropic import build_exchange

    req = json.loads((ROOT / "fuzz" / "corpus" / "anthropic" / "request_tools.json").read_text())
    body = json.loads(build_exchange(req, fuzz_anthropic._ctx()).request.body)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 16384}  # reasoning_effort
    assert body["max_tokens"] == 20000 and "temperature" not in body
    assert body["messages"][1]["content"][0]["type"] == "thinking"  # replayed (ANT-K4)
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
