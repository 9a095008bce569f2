"""Where the gateway's per-request CPU goes: cProfile over the in-process hot path.

``python benchmarks/profile_hotpath.py [--stream] [-n N] [--top K]`` drives ``hotpath.HotPath``
(client bytes → Session → Gateway → Relay → upstream ClientConnection → client bytes, no I/O)
``N`` times under cProfile and prints the top functions by own time and by cumulative time,
grouped by module so the per-layer cost (h11, JSON, attrs, routing, relay…) is visible.

For the live process (event loop and syscalls included) use ``run.py --py-spy`` instead, which
samples the trio gateway with ``py-spy`` while wrk drives it.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hotpath import HotPath  # noqa: E402


def _where(filename: str) -> str:
    """A short module label for a profiled function's file."""
    if filename.startswith("~") or filename == "<built-in>":
        return "builtins"
    p = Path(filename)
    parts = p.parts
    for anchor in ("uniapi_core", "uniapi_trio", "uniapi_asyncio", "benchmarks"):
        if anchor in parts:
            i = parts.index(anchor)
            return "/".join(parts[i:])
    if "site-packages" in parts:
        i = parts.index("site-packages")
        return parts[i + 1]
    return p.name


def profile(stream: bool, n: int, top: int) -> str:
    hp = HotPath(stream)
    hp.check()
    for _ in range(200):  # warm up (routing state, caches)
        hp.one()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        hp.one()
    prof.disable()
    stats = pstats.Stats(prof)
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    by_module: dict[str, float] = defaultdict(float)
    entries = stats.stats.items()  # type: ignore[attr-defined]
    for (filename, line, func), (cc, nc, tt, ct, callers) in entries:
        where = _where(filename)
        rows.append((tt, ct, nc, f"{where}:{line}({func})"))
        top_level = where.split("/")[0] if not where.startswith("uniapi_core") else \
            "/".join(where.split("/")[:2])
        by_module[top_level] += tt
    lines = [f"hot path, {'52-event stream' if stream else 'JSON completion'}: {n} requests, "
             f"{total / n * 1e6:.0f} µs/request under cProfile (cProfile inflates this ~3×)"]
    lines.append("")
    lines.append("own time by module:")
    for mod, tt in sorted(by_module.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {tt / total * 100:5.1f}%  {tt / n * 1e6:7.1f} µs/req  {mod}")
    lines.append("")
    lines.append("top functions by own time:")
    for tt, ct, nc, name in sorted(rows, reverse=True)[:top]:
        lines.append(f"  {tt / total * 100:5.1f}%  {tt / n * 1e6:7.1f} µs/req  "
                     f"{nc / n:6.1f} calls/req  {name}")
    lines.append("")
    lines.append("top functions by cumulative time:")
    for tt, ct, nc, name in sorted(rows, key=lambda r: -r[1])[:top]:
        lines.append(f"  {ct / total * 100:5.1f}%  {ct / n * 1e6:7.1f} µs/req  "
                     f"{nc / n:6.1f} calls/req  {name}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stream", action="store_true", help="the 52-event stream (default JSON)")
    ap.add_argument("-n", type=int, default=3000, help="requests (default 3000)")
    ap.add_argument("--top", type=int, default=20)
    args = ap.parse_args(argv)
    print(profile(args.stream, args.n, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
