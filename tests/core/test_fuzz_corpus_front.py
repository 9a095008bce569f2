"""Replay the front fuzz corpus (HTTP/1.1 and HTTP/2 framing; R3, R7, R8) through its oracle,
without atheris, plus a seeded mutation sweep so the oracle runs on more than the seeds."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted(p for p in (ROOT / "fuzz" / "corpus" / "front").iterdir() if p.is_file())
_spec = importlib.util.spec_from_file_location("fuzz_front", ROOT / "fuzz" / "fuzz_front.py")
assert _spec is not None and _spec.loader is not None
fuzz_front = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz_front)


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_corpus_file_passes_the_oracle(path):
    fuzz_front.check(path.read_bytes())


def test_seeded_mutations_pass_the_oracle():
    rng = random.Random(20261128)
    seeds = [p.read_bytes() for p in CORPUS]
    for _ in range(400):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        fuzz_front.check(bytes(data))
