"""Replay every fuzz corpus through its target's oracle, without atheris (DEC-1, DEC-2).

Each ``fuzz/fuzz_<name>.py`` is a script with a pure ``check(data)`` at module level; it is
loaded from its path. One parametrized test per kind of input, over every target:

- each file of ``fuzz/corpus/<name>/`` (the seeds and any committed findings);
- a set of degenerate inputs (empty, JSON scalars, junk bytes, an event-stream prelude);
- the payload fixtures of the unit tests in ``tests/data/<name>/``, seeds too;
- seeded mutations of the corpus (bytes overwritten, sometimes cut), reproducible by index.

Checks that belong to one target (what its seeds decode to) follow at the end. A new target
needs only its script and its corpus directory; add it to the table in fuzz/README.md.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import random
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "fuzz"
TARGETS = sorted(p.stem.removeprefix("fuzz_") for p in FUZZ.glob("fuzz_*.py"))

#: fewest files each corpus may hold (the seeds committed with the target)
MIN_CORPUS = {"anthropic": 8, "bedrock": 8, "cloudflare": 10, "cohere": 10, "config": 20,
              "front": 10, "fronts": 20, "gemini": 10, "multipart": 10, "openai": 4, "pdf": 8,
              "resp": 30, "sse": 8}

#: inputs every oracle must take: degenerate for some decoders, junk for others
DEGENERATE = [b"", b"{}", b"[]", b'"text"', b"null", b"\xff", b"\x00" * 12, b"\xff" * 16,
              b'{"message":"x"}', b"\x00\x00\x00\x10" + b"\x00" * 12]


def corpus(name: str) -> list[Path]:
    return sorted(p for p in (FUZZ / "corpus" / name).iterdir() if p.is_file())


@cache
def target(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"fuzz_{name}", FUZZ / f"fuzz_{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fixtures(name: str) -> list[Path]:
    here = ROOT / "tests" / "data" / name
    return sorted(p for p in here.iterdir() if p.is_file() and p.suffix != ".py") \
        if here.is_dir() else []


class Sweep(NamedTuple):
    """``count`` mutations from ``random.Random(seed)``: pick a seed file, overwrite 1 to
    ``max_flips`` bytes, and (``truncate``) keep a random-length prefix."""

    seed: int
    count: int
    max_flips: int = 4
    truncate: bool = False
    min_size: int = 1
    suffix: str | None = None


#: front's 400 and bedrock's 30 (binary seeds over 100 bytes) are the sweeps of the replaced
#: per-target tests, same seeds, same inputs; the others were added with this file.
SWEEPS = {
    "front": Sweep(seed=20261128, count=400),
    "bedrock": Sweep(seed=11, count=30, max_flips=3, truncate=True, min_size=101, suffix=".bin"),
    **{name: Sweep(seed=1200 + i, count=60, truncate=True)
       for i, name in enumerate(("anthropic", "cloudflare", "cohere", "gemini", "multipart",
                                 "openai", "sse"))},
    "resp": Sweep(seed=1300, count=100, truncate=True),
    "fronts": Sweep(seed=1301, count=100),
    "config": Sweep(seed=1302, count=60, truncate=True),
    "pdf": Sweep(seed=1303, count=60, truncate=True),
}


@cache
def mutations(name: str) -> list[bytes]:
    sweep = SWEEPS[name]
    seeds = [p.read_bytes() for p in corpus(name)
             if p.stat().st_size >= sweep.min_size and sweep.suffix in (None, p.suffix)]
    rng = random.Random(sweep.seed)
    out = []
    for _ in range(sweep.count):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, sweep.max_flips + 1)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        out.append(bytes(data[: rng.randrange(len(data) + 1)]) if sweep.truncate else bytes(data))
    return out


def _cases(pairs: list[tuple[str, object]], ids: list[str]) -> list[object]:
    return [pytest.param(name, item, id=i) for (name, item), i in zip(pairs, ids)]


_CORPUS = [(name, path) for name in TARGETS for path in corpus(name)]
_FIXTURES = [(name, path) for name in TARGETS for path in _fixtures(name)]
_DEGENERATE = [(name, data) for name in TARGETS for data in DEGENERATE]
_BATCH = 50
_MUTATIONS = [(name, start) for name in sorted(SWEEPS)
              for start in range(0, SWEEPS[name].count, _BATCH)]


def test_every_target_has_its_corpus_and_a_sweep():
    assert TARGETS == sorted(MIN_CORPUS) == sorted(SWEEPS)
    assert sorted(p.name for p in (FUZZ / "corpus").iterdir() if p.is_dir()) == TARGETS
    assert {name: len(corpus(name)) >= MIN_CORPUS[name] for name in TARGETS} == \
        dict.fromkeys(TARGETS, True)


def test_the_readme_table_names_every_target():
    readme = (FUZZ / "README.md").read_text()
    assert [name for name in TARGETS if f"| `fuzz_{name}.py` |" not in readme] == []


@pytest.mark.parametrize(("name", "path"), _cases(
    _CORPUS, [f"{name}/{path.name}" for name, path in _CORPUS]))
def test_corpus_file_passes_the_oracle(name, path):
    target(name).check(path.read_bytes())


@pytest.mark.parametrize(("name", "path"), _cases(
    _FIXTURES, [f"{name}/{path.name}" for name, path in _FIXTURES]))
def test_unit_test_fixture_passes_the_oracle(name, path):
    target(name).check(path.read_bytes())


@pytest.mark.parametrize(("name", "data"), _cases(
    _DEGENERATE, [f"{name}/{i}" for name in TARGETS for i in range(len(DEGENERATE))]))
def test_degenerate_input_passes_the_oracle(name, data):
    target(name).check(data)


@pytest.mark.parametrize(("name", "start"), _cases(
    _MUTATIONS, [f"{name}/{start}-{min(start + _BATCH, SWEEPS[name].count) - 1}"
                 for name, start in _MUTATIONS]))
def test_seeded_mutations_pass_the_oracle(name, start):
    """Mutations ``start`` … ``start + 49`` of the target's sweep; a failure names its index."""
    check = target(name).check
    for index, data in enumerate(mutations(name)[start:start + _BATCH], start):
        try:
            check(data)
        except Exception as exc:
            raise AssertionError(f"{name} mutation {index}: {data!r}") from exc


# --- what particular seeds decode to -----------------------------------------------------------

def test_the_anthropic_request_seed_builds_an_exchange():
    from uniapi_core.vendors.anthropic import build_exchange

    req = json.loads((FUZZ / "corpus" / "anthropic" / "request_tools.json").read_text())
    body = json.loads(build_exchange(req, target("anthropic")._ctx()).request.body)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 16384}  # reasoning_effort
    assert body["max_tokens"] == 20000 and "temperature" not in body
    assert body["messages"][1]["content"][0]["type"] == "thinking"  # replayed (ANT-K4)
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_the_bedrock_corpus_classifies_as_expected():
    """The seeds are written by ``tests/data/bedrock/make_fixtures.py`` (BR-S*)."""
    outcome = {p.name: target("bedrock")._items([p.read_bytes()]) for p in corpus("bedrock")
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


def test_the_resp_seeds_parse_as_redis_sends_them():
    from uniapi_core.redis.resp import RespError, RespParser

    def replies(name: str) -> list[object]:
        return RespParser().feed((FUZZ / "corpus" / "resp" / name).read_bytes())

    assert replies("noscript.resp")[0].kind == "NOSCRIPT"
    assert replies("integers.resp")[3:] == [2**63 - 1, -(2**63)]
    assert replies("arrays_nested.resp") == [[1, [b"foo", "bar"], []], None]
    assert replies("array_of_nulls.resp") == [[None, None, RespError("ERR inner")]]
    (route,) = replies("evalsha_route.resp")
    assert json.loads(route)["o"] == [1, 0, 2]


def test_the_fronts_seeds_translate():
    from uniapi_core.errors import ClientError

    check = target("fronts")
    ok = {}
    for path in corpus("fronts"):
        data = path.read_bytes()
        with contextlib.suppress(ClientError, ValueError):
            ok[path.name] = check._translate(check.FRONTS[data[0] % 3], json.loads(data[1:]),
                                             bool(data[0] // 3 % 2))
    assert {"messages_claude_code_tools.json", "responses_codex.json",
            "gemini_cli.json"} <= set(ok)
    assert [t["function"]["name"] for t in ok["gemini_cli.json"].chat["tools"]] == \
        ["list_directory", "read_file"]


def test_the_config_seeds_load_or_are_refused_as_expected():
    load = target("config")._load

    def outcome(name: str) -> tuple[str, object]:
        return load((FUZZ / "corpus" / "config" / name).read_text(encoding="utf-8"))

    assert outcome("seed-minimal.yaml")[0] == "loaded"
    assert outcome("small_two_providers.yaml")[0] == "loaded"
    for bomb in ("billion_laughs.yaml", "self_reference.yaml"):
        kind, problems = outcome(bomb)
        assert kind == "error" and "expands to more than" in problems[0]
