"""Every recorded case, on every backend: the same bytes as when it was recorded.

The corpus (``tests/replay/corpus/*.json``) was recorded before the core redesign (upstream pool
into the core, retry table, vendor toolkit) with ``python -m tests.replay.record``; the promise
is that the redesign changes no byte a client or an upstream sees. Each case is replayed on a
fresh gateway (``tests.harness.run_gateway``, seeded entropy, fixed wall clock) against fake
upstreams that answer exactly what was recorded, and compared with the recording:

- what every fake upstream received (method, target, sorted headers, body bytes);
- the raw response the client read: status line, headers in order, chunk framing, body.

A failure prints a unified diff of the two. Unless the change is *meant* to change bytes, it is a
regression: fix the code, not the corpus. If it is meant, re-record only the affected cases and
review ``git diff tests/replay/corpus`` line by line before committing::

    python -m tests.replay.record --check          # which cases differ (writes nothing)
    python -m tests.replay.record <name-prefix>    # re-record those cases, both backends

(``tests/replay/replay.py`` describes the format and how to record from a clean worktree.)
Normalizations (ports, SigV4 and JWT signatures verified then elided, the ``created``
fallback) are documented in ``tests/replay/replay.py``.
"""

from __future__ import annotations

import difflib
import json

import pytest

from tests.harness import BACKENDS

from .replay import dec, load_cases, run_case

CASES = load_cases()


def _render(outcome: dict) -> list[str]:
    """One line per header / body line, so a diff points at the byte that moved."""
    lines = []
    for i, requests in enumerate(outcome["upstream_seen"]):
        lines.append(f"== upstream {i}: {len(requests)} request(s)\n")
        for r in requests:
            lines.append(f"{r['method']} {r['target']}\n")
            lines += [f"  {h}\n" for h in r["headers"]]
            lines += [f"  | {line!r}\n" for line in _text_lines(dec(r["body"]))]
    lines.append("== response to the client\n")
    lines += [f"{line!r}\n" for line in _text_lines(dec(outcome["response"]))]
    return lines


def _text_lines(data: bytes) -> list[str]:
    return data.decode("utf-8", "backslashreplace").splitlines(keepends=True)


def test_the_corpus_covers_every_engine():
    engines = {c["engine"] for c in CASES.values()}
    assert engines >= {"gpt", "openrouter", "azure", "claude", "gemini", "vertex", "aws",
                       "cohere", "cloudflare"}, sorted(engines)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_replay(name: str, backend: str) -> None:
    case = CASES[name]
    got = run_case(case, backend)
    want = {"upstream_seen": case["upstream_seen"], "response": case["response"]}
    if got != want:
        diff = "".join(difflib.unified_diff(_render(want), _render(got),
                                            f"recorded {name}", f"replayed on {backend}", n=2))
        pytest.fail(f"{name} on {backend} differs from tests/replay/corpus/{name}.json "
                    f"(- recorded, + now):\n{diff}", pytrace=False)


def test_the_corpus_files_are_canonical():
    """Each file is what the recorder writes (so re-recording shows only real changes)."""
    from .replay import CORPUS, dump_case

    for name, case in CASES.items():
        assert (CORPUS / f"{name}.json").read_text(encoding="utf-8") == dump_case(case), name
        assert json.loads(dump_case(case))["name"] == name
