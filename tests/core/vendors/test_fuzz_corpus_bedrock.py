"""Replay the Bedrock fuzz corpus through the fuzz oracle, without atheris (DEC-1, DEC-2, BR-S*).

``fuzz/fuzz_bedrock.py`` is a script, not a package module, so it is loaded from its path. The
corpus seeds are written by ``tests/data/bedrock/make_fixtures.py``.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
TARGET = ROOT / "fuzz" / "fuzz_bedrock.py"
CORPUS = sorted(p for p in (ROOT / "fuzz" / "corpus" / "bedrock").iterdir() if p.is_file())


def _load_target():
    spec = importlib.util.spec_from_file_location("fuzz_bedrock", TARGET)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz_bedrock = _load_target()


def test_corpus_is_not_empty():
    assert len(CORPUS) >= 8


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_corpus_file_passes_the_oracle(path):
    fuzz_bedrock.check(path.read_bytes())


@pytest.mark.parametrize("data", [b"", b"{}", b"[]", b"\x00" * 12, b"\xff" * 16,
                                  b'{"message":"x"}', b"\x00\x00\x00\x10" + b"\x00" * 12])
def test_oracle_accepts_degenerate_inputs(data):
    fuzz_bedrock.check(data)


def test_oracle_on_mutated_seeds():
    rnd = random.Random(11)
    seeds = [p.read_bytes() for p in CORPUS if p.suffix == ".bin" and p.stat().st_size > 100]
    for _ in range(30):
        data = bytearray(rnd.choice(seeds))
        for _ in range(rnd.randrange(1, 4)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        fuzz_bedrock.check(bytes(data[: rnd.randrange(len(data) + 1)]))


def test_the_corpus_classifies_as_expected():
    outcome = {p.name: fuzz_bedrock._items([p.read_bytes()]) for p in CORPUS
               if p.suffix == ".bin"}
    assert outcome["bad_prelude_crc.bin"][1] == "crc_mismatch"
    assert outcome["bad_message_crc.bin"][1] == "crc_mismatch"
    assert outcome["bad_length.bin"][1] == "frame_too_large"
    assert outcome["bad_header_type.bin"][1] == "bad_header"
    assert outcome["bad_base64.bin"][1] == "invalid_chunk"
    items, kind = outcome["error_frame.bin"]
    assert kind is None and items[-1].error.code == "InternalFailure"
    items, kind = outcome["text_stream.bin"]
    assert kind is None and type(items[-1]).__name__ == "StreamDone"
