"""Run every fuzz target (or the ones named) for a fixed time, one after another.

    python -m pip install -e '.[fuzz]'
    python fuzz/campaign.py --seconds 600                 # every target, 10 minutes each
    python fuzz/campaign.py --seconds 60 sse front        # two targets, a minute each

Each target gets a scratch corpus in ``--work`` (default ``/tmp/uniapi-fuzz/<name>``) ahead of
its committed seeds, so the seeds stay small, and libFuzzer writes findings there as
``crash-*``/``timeout-*``/``oom-*``. The summary line per target (runs, coverage, corpus,
findings) is printed and written to ``--work/summary.json``. A finding is turned into a
regression test by copying it into ``fuzz/corpus/<name>/`` under a readable name, which
``tests/core/test_fuzz_corpora.py`` then replays in CI (fuzz/README.md).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent


def targets() -> list[str]:
    return sorted(p.stem.removeprefix("fuzz_") for p in HERE.glob("fuzz_*.py"))


def run(name: str, seconds: int, work: pathlib.Path) -> dict[str, object]:
    scratch = work / name
    scratch.mkdir(parents=True, exist_ok=True)
    seeds = HERE / "corpus" / name
    argv = [
        sys.executable, str(HERE / f"fuzz_{name}.py"),
        f"-max_total_time={seconds}", "-timeout=10", "-rss_limit_mb=2048", "-max_len=65536",
        f"-artifact_prefix={scratch}/", "-print_final_stats=1",
        str(scratch), str(seeds),
    ]
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, errors="replace")
    log = done.stdout + done.stderr
    (work / f"{name}.log").write_text(log)
    runs = re.findall(r"stat::number_of_executed_units:\s+(\d+)", log)
    cov = re.findall(r"\bcov: (\d+)", log)
    corpus = re.findall(r"\bcorp: (\d+)", log)
    findings = sorted(p.name for p in scratch.iterdir()
                      if p.name.startswith(("crash-", "timeout-", "oom-", "leak-")))
    return {
        "target": name,
        "seconds": round(time.monotonic() - started, 1),
        "exit": done.returncode,
        "runs": int(runs[-1]) if runs else None,
        "coverage": int(cov[-1]) if cov else None,
        "corpus": int(corpus[-1]) if corpus else None,
        "findings": findings,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"targets (default all: {' '.join(targets())})")
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--work", type=pathlib.Path, default=pathlib.Path("/tmp/uniapi-fuzz"))
    args = parser.parse_args()
    names = args.names or targets()
    unknown = set(names) - set(targets())
    if unknown:
        parser.error(f"no such target: {', '.join(sorted(unknown))}")
    args.work.mkdir(parents=True, exist_ok=True)
    results = []
    for name in names:
        result = run(name, args.seconds, args.work)
        results.append(result)
        print(json.dumps(result), flush=True)
        (args.work / "summary.json").write_text(json.dumps(results, indent=1))
    return 1 if any(r["findings"] or r["exit"] not in (0,) for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
