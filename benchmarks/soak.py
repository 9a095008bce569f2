"""R2 soak, the long run (issue 17): ``python benchmarks/soak.py --seconds 600 --backend trio``.

The harness of ``tests/e2e/test_soak.py`` (``tests/fakes/soak.py``) as a plain script: the
gateway in its own process, 100 req/s mixed load (30 % streaming) against two fake upstreams
injecting ~5 % faults from a seeded RNG, RSS / fds / threads sampled every few seconds from
``/proc/<pid>``; then the abuse episode (300 oversized heads, 500 idle connections), twice.
Prints the figures and whether they are inside R2's bounds (slope < 0.5 MB/min, growth
< 10 MB, fds back to baseline ± 2, RSS within 15 MB of its pre-abuse value); exit code 1 if not.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fakes.soak import run_backend


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--backend", choices=["trio", "asyncio", "both"], default="both")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds of load before sampling (default: 20 %% of --seconds)")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    args = parser.parse_args()
    warmup = args.warmup if args.warmup is not None else 0.2 * args.seconds
    backends = ["trio", "asyncio"] if args.backend == "both" else [args.backend]
    ok = True
    for backend in backends:
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"soak-{backend}-") as tmp:
            run = run_backend(backend, Path(tmp), args.seconds, warmup=warmup, rate=args.rate,
                              interval=args.interval, out=lambda line: print(line, flush=True))
        s, a = run.soak, run.abuse
        checks = {
            "all answered": s.load.answered == s.load.sent,
            "slope < 0.5 MB/min": s.slope < 0.5,
            "growth < 10 MB": s.growth < 10,
            "fds back to baseline ± 2": abs(s.fds_after - s.fds_before) <= 2,
            "RSS within 15 MB after abuse": a.rss_after - a.rss_before < 15,
            "repeat abuse adds < 5 MB": run.again.rss_after - run.again.rss_before < 5,
            "no traceback": "Traceback" not in run.log,
            "clean exit": run.exit_code == 0,
        }
        for name, passed in checks.items():
            print(f"[{backend}] {'PASS' if passed else 'FAIL'} {name}")
        print(f"[{backend}] wall time {time.monotonic() - t0:.0f} s", flush=True)
        ok = ok and all(checks.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
