"""Record the replay corpus: ``python -m tests.replay.record [NAME-PREFIX ...]``.

Runs every case of ``tests/replay/cases.py`` (or those whose name starts with one of the given
prefixes) on every backend, checks that the backends answered the same bytes and wrote the same
upstream requests, runs each case a second time to check it is deterministic, and writes
``tests/replay/corpus/<case>.json``. Re-record only when a change is meant to change bytes; see
``tests/replay/replay.py`` for the format and the normalizations.

``--check`` records nothing: it reports which cases differ from the corpus (like the test).
"""

from __future__ import annotations

import sys
import time

from tests.harness import BACKENDS

from .cases import CASES
from .replay import CORPUS, dec, dump_case, load_cases, run_case


def main(argv: list[str]) -> int:
    check = "--check" in argv
    prefixes = [a for a in argv if not a.startswith("--")]
    names = [n for n in CASES if not prefixes or n.startswith(tuple(prefixes))]
    CORPUS.mkdir(parents=True, exist_ok=True)
    stored = load_cases()
    problems = []
    started = time.monotonic()
    for name in names:
        case = CASES[name]
        outcomes = {b: run_case(case, b) for b in BACKENDS}
        again = run_case(case, BACKENDS[0])
        first = outcomes[BACKENDS[0]]
        for b, got in outcomes.items():
            if got != first:
                problems.append(f"{name}: {b} differs from {BACKENDS[0]}")
        if again != first:
            problems.append(f"{name}: not deterministic on {BACKENDS[0]}")
        if check:
            old = stored.get(name)
            if old is None or {k: old[k] for k in first} != first:
                problems.append(f"{name}: differs from the corpus")
            continue
        (CORPUS / f"{name}.json").write_text(dump_case({"name": name, **case, **first}),
                                             encoding="utf-8")
        status = dec(first["response"]).split(b"\r\n", 1)[0].decode(errors="replace")
        print(f"{name:40s} {status:28s} upstream requests: "
              f"{[len(s) for s in first['upstream_seen']]}")
    print(f"{len(names)} cases x {len(BACKENDS)} backends in {time.monotonic() - started:.1f} s")
    for p in problems:
        print("PROBLEM:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
