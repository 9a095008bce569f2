"""R1 fault injection at full size (issue 17): ``python benchmarks/faults.py`` (10,000 requests
× trio and asyncio × HTTP/1.1 and h2c client fronts: four runs).

The run of ``tests/e2e/test_faults.py`` (``run_faults``, judged by its ``judge``) as a plain
script: one gateway per run, five fake upstreams (OpenAI chat, Anthropic, Gemini, Bedrock over
HTTP/1.1, OpenAI chat over TLS/HTTP/2 with RST_STREAM and GOAWAY faults) failing from the
seeded fault table; every client thread of a run speaks the run's protocol. Prints each run's
figures and whether R1's invariants held (0 lost, duplicated, hung, bad, tracebacks; fds back
to baseline ± 2), writes them all to ``benchmarks/results/faults.json``; exit code 1 if an
invariant failed.

    python benchmarks/faults.py [--requests 10000] [--backend trio|asyncio|both]
                                [--protocol h1|h2c|both] [--seed N] [--out PATH]
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.test_faults import SEED, THREADS, figures_of, run_faults
from uniapi_core.routing.retry import attempt_budget


class Tracebacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or "Traceback" in record.getMessage():
            self.count += 1


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000, help="per run")
    parser.add_argument("--backend", choices=["trio", "asyncio", "both"], default="both")
    parser.add_argument("--protocol", choices=["h1", "h2c", "both"], default="both")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/faults.json"))
    args = parser.parse_args()
    backends = ["trio", "asyncio"] if args.backend == "both" else [args.backend]
    protocols = ["h1", "h2c"] if args.protocol == "both" else [args.protocol]
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger().setLevel(logging.WARNING)  # the gateway's access log stays quiet
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.ERROR)
    budget = attempt_budget(None)
    runs, ok = [], True
    for backend in backends:
        for proto in protocols:
            catcher = Tracebacks()
            logging.getLogger().addHandler(catcher)
            with tempfile.TemporaryDirectory(prefix=f"faults-{backend}-{proto}-") as tmp:
                run = run_faults(backend, args.requests, str(Path(tmp) / "stats.db"),
                                 threads=args.threads, protocols=(proto,), seed=args.seed)
            logging.getLogger().removeHandler(catcher)
            problems, figures = figures_of(run, budget)
            figures.update({"protocol": proto, "tracebacks": catcher.count,
                            "problems": len(problems), "first problems": problems[:10]})
            fds = run.fds
            checks = {
                "0 problems (lost, duplicated, hung, bad, budget, channels, shapes)":
                    not problems,
                "all answered": figures["answered"] == args.requests,
                "no traceback": catcher.count == 0,
                "a stats row per request": run.written == args.requests,
                "no gateway client connection left": fds["gateway client connections"] == 0,
                "fds after stop back to baseline ± 2, the stats store's files closed":
                    abs(fds["gateway stopped"] - fds["baseline"]) <= 2
                    and fds["stats store files after stop"] == 0,
                "tasks back to the start's, plus 2 per live HTTP/2 upstream link (+1 timer)":
                    fds["tasks after"] <= fds["tasks at start"] + 2 * fds["h2 upstream links"]
                    + 1,
            }
            figures["checks"] = checks
            print(f"[{backend} {proto}] " + json.dumps(figures, indent=1), flush=True)
            for name, passed in checks.items():
                print(f"[{backend} {proto}] {'PASS' if passed else 'FAIL'} {name}", flush=True)
            ok = ok and all(checks.values())
            runs.append(figures)
    out = {"commit": git_commit(),
           "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
           "seed": args.seed, "requests per run": args.requests, "threads": args.threads,
           "command": " ".join(["python", "benchmarks/faults.py", *sys.argv[1:]]),
           "passed": ok, "runs": runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
