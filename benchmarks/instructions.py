"""Instructions per request: the gateway's work counted by valgrind, not timed.

One command::

    python benchmarks/instructions.py [--compare GITREF] [--backends trio,asyncio]

``--compare ops-off`` counts this checkout twice, the base without the stats store, the metrics
and the access log (``run.py``'s ``OPS_OFF_ARGS`` and ``OPS_OFF_ENV``): what they cost.

CPU time per request on a shared or virtual machine moves by ±5-10 % between runs (steal,
caches, frequency), which hides the few per cent a change costs or saves. This counts instead
the instructions the gateway executes per request under valgrind's callgrind, which repeat to
within about 1 %: the gateway (one process under ``valgrind --tool=callgrind``, with
``PYTHONHASHSEED=0``) serves ``N1`` and then, in a second run, ``N2`` sequential keep-alive chat
completions against the nginx mock of ``run.py``; (instructions(N2) - instructions(N1)) /
(N2 - N1) cancels start-up and imports. JSON and a 52-event stream, on each backend. Run it
on a quiet machine: under load the event loop batches events differently and the count moves
(by 1.5 % once), so both sides are counted in the same quiet minutes.

``--compare GITREF`` measures GITREF's gateway (a temporary ``git worktree``, as in ``run.py
--compare``) the same way and prints head ÷ base. It needs ``valgrind`` (Debian's package)
and ``nginx``; each run takes about 20-40 s. Only 127.0.0.1 is contacted; every process
started here is ended here.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import payloads as P  # noqa: E402
import run as R  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
KINDS = {"json": (P.JSON_MODEL, False, (20, 320)), "sse": (P.SSE_MODEL, True, (10, 160))}


def instructions(root: Path, backend: str, config: Path, body: bytes, n: int,
                 ops_off: bool = False) -> int:
    """Total instructions of a gateway run from ``root`` that served ``n`` requests
    (``ops_off``: without the stats store, the metrics and the access log)."""
    port = R.free_port()
    out = Path(tempfile.mkdtemp(prefix="uniapi-cg-")) / "callgrind.out"
    env = dict(os.environ, PYTHONPATH=str(root), PYTHONHASHSEED="0",  # same dict layouts
               DB_PATH=str(out.parent / "stats.db"))
    if ops_off:
        env.update(R.OPS_OFF_ENV)
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m",
         "uniapi_trio.cli", "serve", "--config", str(config), "--port", str(port),
         "--backend", backend, *(R.OPS_OFF_ARGS if ops_off else ())],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(900):
            try:
                R.request(port, "GET", "/healthz")
                break
            except OSError:
                time.sleep(0.2)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        headers = {"Authorization": f"Bearer {P.CLIENT_KEY}", "Content-Type": "application/json"}
        for _ in range(n):
            conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{root} {backend}: HTTP {resp.status}")
        conn.close()
        proc.send_signal(signal.SIGINT)
        proc.wait(300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.read_text(errors="replace")
    shutil.rmtree(out.parent, ignore_errors=True)
    found = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
    if found is None:
        raise RuntimeError("no instruction count in callgrind's output")
    return int(found.group(1))


def per_request(root: Path, backend: str, config: Path, kind: str,
                ops_off: bool = False) -> float:
    model, stream, (n1, n2) = KINDS[kind]
    body = P.chat_request_bytes(model, stream)
    a = instructions(root, backend, config, body, n1, ops_off)
    b = instructions(root, backend, config, body, n2, ops_off)
    return (b - a) / (n2 - n1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--compare", metavar="GITREF", help="also count GITREF's gateway; "
                    "'ops-off': this checkout's without stats, metrics and access log")
    ap.add_argument("--backends", default="trio,asyncio")
    ap.add_argument("--kinds", default="json,sse")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    nginx = R.nginx_path()
    if nginx is None:
        print("nginx is not installed (Debian: apt-get install nginx-light)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="uniapi-instr-"))
    up_port = R.free_port()
    upstream, _ = R.start_upstream("nginx", nginx, tmp, up_port, 0)
    config = tmp / "api.yaml"
    config.write_text(P.api_yaml(up_port))
    ref = R.resolve_ref(args.compare) if args.compare else None
    if args.compare and ref is None:
        print(f"unknown git ref {args.compare!r}", file=sys.stderr)
        return 2
    try:
        ops_off = ref is not None and ref["commit"] is None
        with (R.base_worktree(ref["commit"], ref["short"]) if ref and not ops_off
              else _none(ROOT if ops_off else None)) as base:
            roots: list[tuple[str, Path]] = [("head", ROOT)]
            if base is not None:
                roots.append((f"@{ref['short']}", base))  # type: ignore[index]
            results: dict[tuple[str, str, str], float] = {}
            for backend in args.backends.split(","):
                for kind in args.kinds.split(","):
                    for label, root in roots:
                        k = per_request(root, backend, config, kind,
                                        ops_off and label != "head")
                        results[(backend, kind, label)] = k
                        print(f"{backend:8} {kind:4} {label:10} {k / 1000:9.1f}k instructions"
                              f"/request", flush=True)
            if base is not None:
                print(f"\nhead ÷ {ref['short']}:")  # type: ignore[index]
                for backend in args.backends.split(","):
                    for kind in args.kinds.split(","):
                        h = results[(backend, kind, "head")]
                        b = results[(backend, kind, f"@{ref['short']}")]  # type: ignore[index]
                        print(f"  {backend:8} {kind:4} {h / b:.3f}")
    finally:
        upstream.terminate() if hasattr(upstream, "terminate") else upstream.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


class _none:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root

    def __enter__(self) -> Path | None:
        return self.root

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    sys.exit(main())
