"""End-to-end gateway benchmark: what does uniapi add between a client and its upstream?

One command::

    python benchmarks/run.py [--quick] [--json OUT.json]

It installs what is missing (``nginx``, ``wrk`` from Debian's packages, when it may run
``apt-get``), starts a mock upstream (nginx on 127.0.0.1 answering a fixed chat completion and a
52-event SSE stream; a pure-Python upstream, labelled "python fallback upstream", when nginx is
not available), starts the gateway on each backend (``trio``; ``asyncio`` when
``uniapi_asyncio`` imports and serves), pinned to one core, and measures side by side, in
interleaved rounds, the direct upstream and each gateway:

* wrk (1 thread, on the other core) at c=1/16/64 for the JSON completion and c=16/64 for the
  stream: req/s, latency percentiles, errors;
* the gateway's CPU per request (``/proc/<pid>/stat`` utime+stime deltas) and per relayed
  event, its RSS (``VmRSS``, ``VmHWM``);
* the time to the first SSE event, direct vs through the gateway (sequential keep-alive
  requests, median);
* the translator micro-benchmarks (``bench_translators.py``).

It prints a table (medians of the rounds; ratio = gateway req/s ÷ direct req/s in the same
round), the targets of issue #6 with met/not met, and writes everything as JSON. The matrix is
HTTP/1.1 (wrk); when ``h2load`` (Debian's ``nghttp2-client``) is present or installable, each
gateway is also driven over h2c prior knowledge at c=16 (16 connections × 1 stream, and
4 connections × 10 streams) for the JSON completion and the stream, with errors counted. When
LiteLLM's proxy is installed in a side venv (``--litellm PATH``, ``$UNIAPI_BENCH_LITELLM`` or
``benchmarks/.litellm/bin/litellm``) it is measured in the same rounds as a peer, one worker,
pinned like the gateway. Only 127.0.0.1 is contacted; every process started here is ended
here, by PID.

Before and after::

    python benchmarks/run.py --compare GITREF [--quick]

checks GITREF out in a temporary ``git worktree add --detach`` (removed at the end), starts its
gateway next to this checkout's on each backend (``PYTHONPATH`` and cwd in the worktree, so it
imports that version's packages; contestants ``trio``, ``trio@<short>``, ``asyncio``,
``asyncio@<short>``), measures them with ``direct`` in the same interleaved rounds (order
reversed every other round) against the same upstream, and reports head ÷ base per backend and
the open targets for both sides (JSON: ``benchmarks/results/compare.json``).

    python benchmarks/run.py --compare ops-off [--quick]

is the same with this checkout on both sides: the base (``trio@ops-off``…) runs with
``DISABLE_DATABASE=true --no-metrics --log-format off``, so head ÷ base is what the stats store,
the metrics and the access log cost together (issue #13's budget).

    python benchmarks/run.py --compare redis [--quick]

is the same again, the head side with ``--redis-url`` to a redis-server started here on
loopback (pinned with wrk and the upstream), the base (``trio@local``…) deciding on its own
state: head ÷ base is what sharing the routing state costs (issue #16's budget: 20 %). Without
``--quick`` it then runs ``--workers 1`` and ``--workers 2`` with Redis on all cores, to show
that instances sharing the state scale.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from payloads import (  # noqa: E402
    CLIENT_KEY,
    JSON_MODEL,
    SSE_EVENTS,
    SSE_MODEL,
    UPSTREAM_KEY,
    api_yaml,
    chat_request_bytes,
    completion_bytes,
    sse_body,
)

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

#: (kind, connections) in the order each round runs them
SCENARIOS = [("json", 1), ("json", 16), ("json", 64), ("sse", 16), ("sse", 64)]

TARGETS_DOC = "issue #6"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- tools -------------------------------------------------------------------------------------

def _apt(packages: list[str], updated: list[bool]) -> bool:
    """``apt-get install -y packages`` (``apt-get update`` once first); True on success."""
    if shutil.which("apt-get") is None:
        return False
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            return False
        prefix = ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        if not updated[0]:
            log("apt-get update")
            subprocess.run(prefix + ["apt-get", "update"], env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=240)
            updated[0] = True
        log(f"apt-get install -y {' '.join(packages)}")
        subprocess.run(prefix + ["apt-get", "install", "-y", "--no-install-recommends",
                                 *packages], env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=300)
        return True
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        log(f"apt-get failed: {exc}")
        return False


def nginx_path() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)


def ensure_tools(install: bool, want_nginx: bool) -> tuple[str | None, str | None]:
    """(wrk path, nginx path), installing from Debian's packages what is missing."""
    updated = [False]
    wrk = shutil.which("wrk")
    nginx = nginx_path() if want_nginx else None
    if install and wrk is None:
        _apt(["wrk"], updated)
        wrk = shutil.which("wrk")
    if install and want_nginx and nginx is None:
        _apt(["nginx-light"], updated) or _apt(["nginx"], updated)  # trixie has no -light
        nginx = nginx_path()
    return wrk, nginx


def version_of(cmd: list[str]) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (p.stdout + p.stderr).strip().splitlines()
    return text[0] if text else "?"


def source_digest(root: Path = ROOT) -> str:
    """SHA-256 over the gateway's sources (path + bytes), to tie figures to a code state."""
    h = hashlib.sha256()
    for pkg in ("uniapi_core", "uniapi_trio", "uniapi_asyncio"):
        for f in sorted((root / pkg).rglob("*.py")):
            h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def machine_info() -> dict[str, Any]:
    model = "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        m = re.search(r"^Model name:\s*(.+)$", out, re.M)
        model = m.group(1).strip() if m else model
    except (OSError, subprocess.TimeoutExpired):
        pass
    mem = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1048576:.1f} GiB"
    return {"nproc": os.cpu_count(), "cpus_allowed": sorted(os.sched_getaffinity(0)),
            "cpu_model": model, "memory": mem, "kernel": platform.release(),
            "python": sys.version.split()[0], "implementation": platform.python_implementation()}


# -- processes ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(core: int | None, cmd: list[str]) -> list[str]:
    return cmd if core is None else ["taskset", "-c", str(core), *cmd]


class Proc:
    """A child process we started; ``stop`` ends it (and only it) by PID."""

    def __init__(self, name: str, cmd: list[str], log_path: Path, **kw: Any) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, **kw)
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, n: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        for s, wait in ((sig, 5.0), (signal.SIGINT, 3.0), (signal.SIGKILL, 5.0)):
            if not self.alive():
                break
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, s)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(wait)
        self._log.close()


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid``, in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def tree_cpu_seconds(pid: int) -> float:
    """``proc_cpu_seconds`` of ``pid`` and of its live descendants (``--workers`` forks)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += proc_cpu_seconds(p)
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):  # gone meanwhile
            continue
    return total


def core_times(core: int | None) -> tuple[float, float]:
    """(busy, steal) seconds of one CPU since boot, from /proc/stat (idle and iowait are not
    busy). Busy minus the gateway's own CPU is what else ran on the gateway's core."""
    if core is None:
        return 0.0, 0.0
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            v = [int(x) for x in line.split()[1:]]
            user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
            return (user + nice + system + irq + softirq + steal) / CLK_TCK, steal / CLK_TCK
    return 0.0, 0.0


def machine_busy(interval: float = 0.3) -> float:
    """Busy cores (0..nproc) over ``interval``, from /proc/stat's total line."""
    def sample() -> tuple[int, int]:
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        return sum(v[:8]), idle
    t0, i0 = sample()
    time.sleep(interval)
    t1, i1 = sample()
    cores = os.cpu_count() or 1
    return (1 - (i1 - i0) / max(t1 - t0, 1)) * cores


class QuietWait:
    """Before each measurement, wait (bounded) for other processes to leave the machine:
    figures taken while someone else's job runs measure that job too."""

    def __init__(self, threshold: float, per_run: float, budget: float) -> None:
        self.threshold, self.per_run, self.budget = threshold, per_run, budget
        self.waited = 0.0

    def __call__(self) -> tuple[float, float]:
        """(seconds waited, busy cores when the run starts); the first 0.3 s sample is not
        counted as waiting."""
        busy = machine_busy()
        start = time.monotonic()
        for _ in range(int(self.per_run / 0.5) + 1):
            if busy <= self.threshold or self.waited + time.monotonic() - start >= self.budget:
                break
            if time.monotonic() - start >= self.per_run:
                break
            time.sleep(0.2)
            busy = machine_busy()
        waited = time.monotonic() - start
        self.waited += waited
        return waited, busy


def proc_memory(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB."""
    rss = hwm = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return rss, hwm


# -- the mock upstream -------------------------------------------------------------------------

def nginx_conf(tmp: Path, port: int) -> str:
    """Two static files under ``tmp/www``; POST to a static file is a 405 in nginx, turned
    into a 200 with the file by ``error_page 405 =200 $uri`` (``return 200 '…'`` cannot hold
    the 13 KB stream: nginx's config tokens stop at 4 KB)."""
    www = tmp / "www"
    for path, body in (("v1/chat/completions", completion_bytes(JSON_MODEL)),
                       ("sse/chat/completions", sse_body(SSE_MODEL))):
        f = www / path
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(body)
    for d in (tmp, *[p for p in www.rglob("*")], www):  # nginx's workers may run as nobody
        d.chmod(0o755 if d.is_dir() else 0o644)
    return f"""\
# generated by benchmarks/run.py
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    server_tokens off;
    tcp_nodelay on;
    sendfile on;
    etag off;
    open_file_cache max=16 inactive=600s;
    open_file_cache_valid 600s;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_buffer_size 64k;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {www};
        location = /v1/chat/completions {{
            default_type application/json;
            error_page 405 =200 $uri;
        }}
        location = /sse/chat/completions {{
            default_type text/event-stream;
            error_page 405 =200 $uri;
        }}
        location = /nginx_status {{
            stub_status;
        }}
    }}
}}
"""


def start_upstream(kind: str, nginx: str | None, tmp: Path, port: int,
                   core: int | None) -> tuple[Proc, str]:
    if kind == "nginx":
        assert nginx is not None
        conf = tmp / "nginx.conf"
        conf.write_text(nginx_conf(tmp, port))
        proc = Proc("nginx", pinned(core, [nginx, "-e", str(tmp / "nginx-error.log"), "-p",
                                           str(tmp), "-c", str(conf), "-g", "daemon off;"]),
                    tmp / "nginx.out")
        return proc, version_of([nginx, "-v"]).replace("nginx version: ", "")
    proc = Proc("python fallback upstream",
                pinned(core, [sys.executable, str(HERE / "fallback_upstream.py"), "--port",
                              str(port)]), tmp / "fallback-upstream.log")
    return proc, "python fallback upstream"


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 5.0
            ) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def wait_ready(proc: Proc, port: int, path: str, method: str = "GET", body: bytes | None = None,
               limit: float = 20.0) -> str | None:
    """None when ``path`` answers 200 within ``limit`` seconds, else why not."""
    deadline = time.monotonic() + limit
    last = "no answer"
    for _ in range(int(limit / 0.1) + 1):
        if not proc.alive():
            return f"exited with {proc.popen.returncode}:\n{proc.tail()}"
        if time.monotonic() > deadline:
            break
        try:
            status, _, _ = request(port, method, path, body, timeout=1.0)
            if status == 200:
                return None
            last = f"HTTP {status}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    return f"not ready after {limit:g} s ({last})"


JSON_HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {CLIENT_KEY}"}


def check_answers(port: int, gateway: bool) -> str | None:
    """Both answers are right (through the gateway: same content); None or the problem."""
    status, headers, body = request(port, "POST", "/v1/chat/completions",
                                    chat_request_bytes(JSON_MODEL), JSON_HEADERS)
    if status != 200:
        return f"JSON completion: HTTP {status}: {body[:300]!r}"
    if gateway:
        if json.loads(body) != json.loads(completion_bytes(JSON_MODEL)):
            return f"JSON completion differs: {body[:300]!r}"
    elif body != completion_bytes(JSON_MODEL):
        return f"JSON completion differs: {body[:300]!r}"
    path = "/v1/chat/completions" if gateway else "/sse/chat/completions"
    status, headers, body = request(port, "POST", path, chat_request_bytes(SSE_MODEL, True),
                                    JSON_HEADERS)
    if status != 200 or not headers.get("content-type", "").startswith("text/event-stream"):
        return f"stream: HTTP {status} {headers.get('content-type')}: {body[:300]!r}"
    events = [line for line in body.split(b"\n") if line.startswith(b"data: ")]
    if len(events) != SSE_EVENTS + 1 or events[-1] != b"data: [DONE]":
        return f"stream: {len(events)} data lines, last {events[-1:]!r}"
    if not gateway and body != sse_body(SSE_MODEL):
        return "stream body differs from the payload (nginx string escaping?)"
    return None


# -- peers -------------------------------------------------------------------------------------

LITELLM_DEFAULT = HERE / ".litellm" / "bin" / "litellm"  # python -m venv benchmarks/.litellm


def litellm_path(arg: str | None) -> str | None:
    """The ``litellm`` executable of a side venv: ``--litellm``, ``$UNIAPI_BENCH_LITELLM`` or
    ``benchmarks/.litellm/bin/litellm``; None when there is none (the peer is not measured)."""
    for candidate in (arg, os.environ.get("UNIAPI_BENCH_LITELLM"), str(LITELLM_DEFAULT)):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def litellm_yaml(upstream_port: int) -> str:
    """The same two models on the same upstream, for LiteLLM's proxy: the client key is its
    master key (so it checks a key per request, as the gateway does), no database."""
    return f"""\
model_list:
  - model_name: {JSON_MODEL}
    litellm_params:
      model: openai/{JSON_MODEL}
      api_base: http://127.0.0.1:{upstream_port}/v1
      api_key: {UPSTREAM_KEY}
  - model_name: {SSE_MODEL}
    litellm_params:
      model: openai/{SSE_MODEL}
      api_base: http://127.0.0.1:{upstream_port}/sse
      api_key: {UPSTREAM_KEY}
litellm_settings:
  drop_params: true
  telemetry: false
general_settings:
  master_key: {CLIENT_KEY}
"""


def check_peer_answers(port: int) -> str | None:
    """A peer rebuilds the objects: the same content and all 52 events + [DONE] suffice."""
    status, _, body = request(port, "POST", "/v1/chat/completions",
                              chat_request_bytes(JSON_MODEL), JSON_HEADERS, timeout=30.0)
    want = json.loads(completion_bytes(JSON_MODEL))["choices"][0]["message"]["content"]
    try:
        got = json.loads(body)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        got = None
    if status != 200 or got != want:
        return f"JSON completion: HTTP {status}: {body[:300]!r}"
    status, _, body = request(port, "POST", "/v1/chat/completions",
                              chat_request_bytes(SSE_MODEL, True), JSON_HEADERS, timeout=30.0)
    events = [line for line in body.split(b"\n") if line.startswith(b"data: ")]
    if status != 200 or len(events) < SSE_EVENTS - 2 or events[-1] != b"data: [DONE]":
        return f"stream: HTTP {status}, {len(events)} data lines: {body[-300:]!r}"
    return None


def start_litellm(path: str, tmp: Path, up_port: int, core: int | None
                  ) -> tuple[Proc | None, int, str | None]:
    """LiteLLM's proxy, one worker, pinned like the gateway: (proc, port, problem)."""
    cfg = tmp / "litellm.yaml"
    cfg.write_text(litellm_yaml(up_port))
    port = free_port()
    env = child_env()
    env.update(LITELLM_LOG="ERROR", LITELLM_TELEMETRY="False", NO_DOCS="True")
    proc = Proc("litellm", pinned(core, [path, "--config", str(cfg), "--host", "127.0.0.1",
                                         "--port", str(port), "--num_workers", "1"]),
                tmp / "litellm.log", cwd=tmp, env=env)
    why = (wait_ready(proc, port, "/health/liveliness", limit=120.0)
           or check_peer_answers(port))
    if why:
        proc.stop()
        return None, port, why
    return proc, port, None


# -- wrk ---------------------------------------------------------------------------------------

LUA = """\
wrk.method = "POST"
wrk.path = "{path}"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCHJSON {{"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,' ..
    '"connect_errors":%.0f,"read_errors":%.0f,"write_errors":%.0f,"status_errors":%.0f,' ..
    '"timeouts":%.0f,"lat_mean_us":%.1f,"lat_max_us":%.0f,"p50_us":%.0f,"p75_us":%.0f,' ..
    '"p90_us":%.0f,"p99_us":%.0f,"p999_us":%.0f}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency.max, latency:percentile(50), latency:percentile(75),
    latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
"""


def lua_script(tmp: Path, name: str, path: str, body: bytes) -> Path:
    p = tmp / f"{name}.lua"
    p.write_text(LUA.format(path=path, body=body.decode(), key=CLIENT_KEY))
    return p


def run_wrk(wrk: str, core: int | None, port: int, script: Path, conns: int,
            duration: float) -> dict[str, Any]:
    cmd = pinned(core, [wrk, "-t1", f"-c{conns}", f"-d{duration:g}s", "--timeout", "5s",
                        "-s", str(script), f"http://127.0.0.1:{port}"])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30)
    m = re.search(r"^BENCHJSON (\{.*\})$", p.stdout, re.M)
    if p.returncode != 0 or m is None:
        raise RuntimeError(f"wrk failed ({p.returncode}): {p.stdout[-500:]} {p.stderr[-500:]}")
    return json.loads(m.group(1))


# -- first SSE event latency ------------------------------------------------------------------

class RawClient:
    """One keep-alive connection; ``first_event`` times a streamed request to its first
    ``data:`` line and reads the rest of the answer."""

    def __init__(self, port: int, path: str) -> None:
        body = chat_request_bytes(SSE_MODEL, True)
        self.request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                        f"Content-Type: application/json\r\nAuthorization: Bearer {CLIENT_KEY}"
                        f"\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def first_event(self) -> float:
        t0 = time.perf_counter()
        self.sock.sendall(self.request)
        buf = b""
        first = None
        head_end = -1
        length = None
        chunked = False
        for _ in range(100000):  # bounded: a 13 KB answer takes a handful of reads
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed before the answer ended")
            buf += data
            if head_end < 0:
                head_end = buf.find(b"\r\n\r\n")
                if head_end >= 0:
                    head = buf[:head_end].decode("latin-1").lower()
                    if not head.startswith("http/1.1 200"):
                        raise RuntimeError(head.splitlines()[0])
                    m = re.search(r"^content-length:\s*(\d+)", head, re.M)
                    length = int(m.group(1)) if m else None
                    chunked = "transfer-encoding: chunked" in head
            if head_end >= 0:
                if first is None and buf.find(b"data:", head_end) >= 0:
                    first = time.perf_counter() - t0
                if length is not None and len(buf) >= head_end + 4 + length:
                    break
                if chunked and buf.endswith(b"\r\n0\r\n\r\n"):
                    break
        else:
            raise RuntimeError("answer did not end")
        if first is None or buf.count(b"data: ") != SSE_EVENTS + 1:
            raise RuntimeError("stream incomplete")
        return first

    def close(self) -> None:
        self.sock.close()


def first_event_latency(targets: dict[str, tuple[int, str]], n: int) -> dict[str, Any]:
    clients = {name: RawClient(port, path) for name, (port, path) in targets.items()}
    times: dict[str, list[float]] = {name: [] for name in targets}
    try:
        for c in clients.values():  # warm the connections and the gateway's upstream pool
            for _ in range(5):
                c.first_event()
        for _ in range(n):
            for name, c in clients.items():  # interleaved, request by request
                times[name].append(c.first_event())
    finally:
        for c in clients.values():
            c.close()
    out: dict[str, Any] = {}
    for name, ts in times.items():
        ts.sort()
        out[name] = {"n": len(ts), "median_ms": statistics.median(ts) * 1000,
                     "p90_ms": ts[int(len(ts) * 0.9)] * 1000, "min_ms": ts[0] * 1000}
    direct = out["direct"]["median_ms"]
    for name in out:
        out[name]["delta_ms"] = out[name]["median_ms"] - direct
    return out


# -- live profile (py-spy) --------------------------------------------------------------------

_FRAME = re.compile(r"^(?P<func>.*) \((?P<path>[^()]*?)(?::(?P<line>\d+))?\)$")


def _frame_label(frame: str) -> tuple[str, str]:
    """(function label, module group) of one py-spy raw frame ``func (path:line)``; lines
    are dropped so a function's samples add up."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip(), "?"
    func, path = m.group("func"), m.group("path")
    parts = Path(path).parts  # py-spy shortens paths to what follows sys.path entries
    group = parts[0].removesuffix(".py") if parts else "?"
    for anchor in ("uniapi_core", "uniapi_trio", "uniapi_asyncio", "benchmarks"):
        if anchor in parts:
            rel = parts[parts.index(anchor):]
            group = "/".join(rel[:2]) if anchor == "uniapi_core" and len(rel) > 2 else \
                "/".join(rel)
            path = "/".join(rel)
            break
    else:
        if "site-packages" in parts:
            i = parts.index("site-packages")
            group = parts[i + 1].removesuffix(".py")
            path = "/".join(parts[i + 1:])
    return f"{func} ({path})", group


def summarize_pyspy(raw: str, top: int = 15) -> dict[str, Any]:
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    groups: dict[str, int] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame_label(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        leaf, group = frames[-1]
        own[leaf] = own.get(leaf, 0) + n
        groups[group] = groups.get(group, 0) + n
        for label in {f for f, _ in frames}:
            incl[label] = incl.get(label, 0) + n
    def pct(d: dict[str, int], k: int) -> list[list[Any]]:
        return [[name, round(c / total * 100, 1)] for name, c in
                sorted(d.items(), key=lambda kv: -kv[1])[:k]] if total else []
    return {"samples": total, "own_by_module": pct(groups, top), "own": pct(own, top),
            "inclusive": pct({k: v for k, v in incl.items() if "uniapi" in k}, top)}


def live_profile(pyspy: str, wrk: str, load_core: int | None, port: int, pid: int,
                 script: Path, seconds: float, out: Path) -> dict[str, Any] | None:
    """Sample the gateway with py-spy while wrk drives it at c=16."""
    cmd = pinned(load_core, [wrk, "-t1", "-c16", f"-d{seconds + 2:g}s", "-s", str(script),
                             f"http://127.0.0.1:{port}"])
    load = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        p = subprocess.run(pinned(load_core, [pyspy, "record", "--pid", str(pid), "--duration",
                                              f"{seconds:g}", "--rate", "200",
                                              "--format", "raw", "--output", str(out)]),
                           capture_output=True, text=True, timeout=seconds + 60)
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            load.wait(seconds + 30)
        if load.poll() is None:
            load.kill()
            load.wait(5)
    if p.returncode != 0 or not out.exists():
        log(f"py-spy failed: {(p.stderr or p.stdout)[-400:]}")
        return None
    return summarize_pyspy(out.read_text())


# -- the run -----------------------------------------------------------------------------------

def backend_available(backend: str, root: Path = ROOT) -> str | None:
    """None if the backend's package imports (in a child, so a half-written one cannot hurt
    us) from ``root``'s tree, uniapi_core included, else why not."""
    if backend not in ("trio", "asyncio"):
        return "unknown backend (uniapi serve --backend takes trio or asyncio)"
    module = f"uniapi_{backend}.runtime"
    if not (root / module.split(".")[0]).is_dir():  # this checkout's, whatever pip points at
        return f"{module.split('.')[0]} is not in {root}"
    code = (f"import {module}, uniapi_core; {module}.run; print({module}.__file__); "
            f"print(uniapi_core.__file__)")
    p = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                       timeout=60, env=child_env(root))
    if p.returncode != 0:
        return (p.stderr.strip().splitlines() or ["import failed"])[-1]
    for f in p.stdout.split():  # an editable install elsewhere must not win over PYTHONPATH
        if not Path(f).resolve().is_relative_to(root.resolve()):
            return f"imports {f}, not from {root}"
    return None


def child_env(root: Path = ROOT) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH")
                                     else "")
    env.pop("TIMEOUT", None)
    env.pop("CONFIG_URL", None)
    return env


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def summarize(runs: list[dict[str, Any]], targets: list[str]) -> list[dict[str, Any]]:
    rows = []
    for kind, conns in SCENARIOS:
        for target in targets:
            rs = [r for r in runs if r["kind"] == kind and r["conns"] == conns
                  and r["target"] == target]
            if not rs:
                continue
            row: dict[str, Any] = {"kind": kind, "conns": conns, "target": target,
                                   "rounds": len(rs)}
            for key in ("rps", "p50_ms", "p90_ms", "p99_ms", "ratio", "cpu_us_per_req",
                        "cpu_us_per_event", "cpu_util", "rss_mb", "hwm_mb", "gw_core_other",
                        "upstream_conns_per_1k"):
                vals = [r[key] for r in rs if r.get(key) is not None]
                row[key] = median(vals) if vals else None
            row["errors"] = sum(r["errors"] for r in rs)
            row["requests"] = sum(r["requests"] for r in rs)
            rows.append(row)
    return rows


def upstream_accepts(port: int | None) -> int | None:
    """Connections nginx has accepted so far (stub_status), None without nginx. During a
    gateway run the difference is how many upstream connections the gateway opened."""
    if port is None:
        return None
    try:
        status, _, body = request(port, "GET", "/nginx_status", timeout=2.0)
    except OSError:
        return None
    m = re.search(rb"\n\s*(\d+)\s+(\d+)\s+(\d+)", body)
    return int(m.group(1)) if status == 200 and m else None


def run_h2load(h2load: str, core: int | None, port: int, body: Path, conns: int,
               streams: int, duration: float) -> dict[str, Any]:
    """One h2load run over h2c prior knowledge: req/s, successes, failures, latency."""
    cmd = pinned(core, [h2load, "-c", str(conns), "-m", str(streams), "-D", f"{duration:g}",
                        "-d", str(body), "-H", f"authorization: Bearer {CLIENT_KEY}",
                        "-H", "content-type: application/json",
                        f"http://127.0.0.1:{port}/v1/chat/completions"])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    out = p.stdout
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    rps = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", out)
    lat = re.search(r"time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+"
                    r"([\d.]+)(us|ms|s)", out)
    if p.returncode != 0 or m is None or rps is None:
        raise RuntimeError(f"h2load failed ({p.returncode}): {out[-400:]} {p.stderr[-400:]}")

    def ms(v: str, unit: str) -> float:
        return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    total, _, done, ok, failed, errored, timeout = (int(x) for x in m.groups())
    return {"rps": float(rps.group(1)), "done": done, "succeeded": ok,
            "errors": failed + errored + timeout,
            "mean_ms": ms(lat.group(5), lat.group(6)) if lat else None,
            "max_ms": ms(lat.group(3), lat.group(4)) if lat else None}


def one_run(wrk: str, load_core: int | None, gw_core: int | None, target: str, port: int,
            script: Path, kind: str, conns: int, duration: float, pid: int | None,
            status_port: int | None = None) -> dict[str, Any]:
    accepts0 = upstream_accepts(status_port) if pid else None
    cpu0 = proc_cpu_seconds(pid) if pid else 0.0
    busy0, steal0 = core_times(gw_core)
    t0 = time.monotonic()
    w = run_wrk(wrk, load_core, port, script, conns, duration)
    elapsed = time.monotonic() - t0
    cpu = proc_cpu_seconds(pid) - cpu0 if pid else None
    busy1, steal1 = core_times(gw_core)
    accepts1 = upstream_accepts(status_port) if accepts0 is not None else None
    requests = int(w["requests"])
    errors = int(w["connect_errors"] + w["read_errors"] + w["write_errors"] + w["status_errors"]
                 + w["timeouts"])
    run: dict[str, Any] = {
        "kind": kind, "conns": conns, "target": target, "requests": requests, "errors": errors,
        "rps": requests / (w["duration_us"] / 1e6), "p50_ms": w["p50_us"] / 1000,
        "p75_ms": w["p75_us"] / 1000, "p90_ms": w["p90_us"] / 1000,
        "p99_ms": w["p99_us"] / 1000, "p999_ms": w["p999_us"] / 1000,
        "max_ms": w["lat_max_us"] / 1000, "mean_ms": w["lat_mean_us"] / 1000, "wrk": w,
        "elapsed_s": elapsed, "gw_core_busy": (busy1 - busy0) / elapsed,
        "gw_core_steal": (steal1 - steal0) / elapsed,
    }
    # what else ran on the gateway's core (other processes, unattributed softirq, steal)
    run["gw_core_other"] = max(0.0, (busy1 - busy0 - (cpu or 0.0)) / elapsed)
    if pid:
        rss, hwm = proc_memory(pid)
        ok = requests - errors
        run.update(cpu_s=cpu, cpu_util=cpu / elapsed, rss_mb=rss, hwm_mb=hwm,
                   cpu_us_per_req=cpu / ok * 1e6 if ok > 0 else None)  # none done: no figure
        if kind == "sse" and ok > 0:
            run["cpu_us_per_event"] = cpu / ok / SSE_EVENTS * 1e6
        if accepts0 is not None and accepts1 is not None and ok > 0:
            # minus the one stub_status connection of the second reading
            run["upstream_conns_opened"] = accepts1 - accepts0 - 1
            run["upstream_conns_per_1k"] = run["upstream_conns_opened"] / ok * 1000
    return run


def workers_run(n: int, cores: list[int], wrk: str, load_core: int | None, tmp: Path,
                script: Path, duration: float, procs: list[Proc],
                extra: Sequence[str] = ()) -> dict[str, Any] | None:
    """``uniapi serve --workers n`` (trio), on all cores (shared with wrk and the upstream),
    JSON at c=64: req/s and the CPU of all its processes per request (``extra``: more
    arguments, ``--redis-url``)."""
    port = free_port()
    proc = Proc(f"workers-{n}", ["taskset", "-c", ",".join(map(str, cores)), sys.executable,
                                 "-m", "uniapi_trio.cli", "serve", "--config",
                                 str(tmp / "api.yaml"), "--host", "127.0.0.1", "--port",
                                 str(port), "--backend", "trio", "--workers", str(n), *extra],
                tmp / f"workers-{n}.log", cwd=ROOT, env=child_env())
    procs.append(proc)
    try:
        why = wait_ready(proc, port, "/healthz")
        if why:
            log(f"--workers {n}: did not start ({why})")
            return None
        run_wrk(wrk, load_core, port, script, 64, 1)  # warm every worker's pool
        cpu0 = tree_cpu_seconds(proc.pid)
        w = run_wrk(wrk, load_core, port, script, 64, duration)
        cpu = tree_cpu_seconds(proc.pid) - cpu0
    finally:
        proc.stop()
    errors = int(w["connect_errors"] + w["read_errors"] + w["write_errors"] + w["status_errors"]
                 + w["timeouts"])
    ok = max(int(w["requests"]) - errors, 1)
    r = {"workers": n, "rps": w["requests"] / (w["duration_us"] / 1e6), "errors": errors,
         "p99_ms": w["p99_us"] / 1000, "cpu_us_per_req": cpu / ok * 1e6,
         "cores_used": cpu / (w["duration_us"] / 1e6)}
    log(f"--workers {n}: {r['rps']:.0f} req/s, {r['cores_used']:.2f} cores, "
        f"{r['cpu_us_per_req']:.0f} µs/req, p99 {r['p99_ms']:.1f} ms")
    return r


def check_targets(rows: list[dict[str, Any]], first: dict[str, Any] | None,
                  translators: dict[str, Any] | None, backends: list[str],
                  peers: list[str] = ()) -> list[dict[str, Any]]:  # type: ignore[assignment]
    def row(kind: str, conns: int, target: str) -> dict[str, Any] | None:
        return next((r for r in rows if r["kind"] == kind and r["conns"] == conns
                     and r["target"] == target), None)

    out = []

    def add(name: str, backend: str, value: float | None, goal: str, met: bool | None,
            unit: str) -> None:
        out.append({"target": name, "backend": backend, "value": value, "unit": unit,
                    "goal": goal, "met": met})

    for b in backends:
        j1, j16, j64 = row("json", 1, b), row("json", 16, b), row("json", 64, b)
        s16, s64 = row("sse", 16, b), row("sse", 64, b)
        if j16:
            add("JSON req/s at c=16", b, j16["rps"], ">= 2000", j16["rps"] >= 2000, "req/s")
            add("gateway CPU per JSON request (c=16)", b, j16["cpu_us_per_req"], "<= 400",
                j16["cpu_us_per_req"] <= 400, "µs")
        for peer in peers:  # "≥ 15× every peer", JSON at c=16
            p16 = row("json", 16, peer)
            if j16 and p16 and p16["rps"]:
                r = j16["rps"] / p16["rps"]
                add(f"JSON req/s at c=16 ÷ {peer}", b, r, ">= 15", r >= 15, "×")
        if j64:
            add("JSON p99 at c=64", b, j64["p99_ms"], "<= 40", j64["p99_ms"] <= 40, "ms")
        if j1 and j64:  # "no loss of throughput from c=1 to c=64": c=64 vs the best below
            r = j64["rps"] / max(j1["rps"], j16["rps"] if j16 else 0.0)
            add("JSON req/s c=64 ÷ best of c=1, c=16", b, r, ">= 0.95 (noise)", r >= 0.95, "×")
        if s16:
            add("52-event streams/s at c=16", b, s16["rps"], ">= 500", s16["rps"] >= 500,
                "streams/s")
            add("gateway CPU per relayed event (c=16, whole stream ÷ 52)", b,
                s16["cpu_us_per_event"], "<= 30", s16["cpu_us_per_event"] <= 30, "µs")
        if first and b in first:
            d = first[b]["delta_ms"]
            add("first SSE event, median − direct", b, d, "<= 1", d <= 1, "ms")
        peaks = [r["hwm_mb"] for r in (j64, s64) if r and r.get("hwm_mb") is not None]
        if peaks:
            add("peak RSS (VmHWM) after the c=64 runs", b, max(peaks), "<= 50",
                max(peaks) <= 50, "MB")
    if translators:
        decs = translators.get("decoders", {})
        if decs:
            worst = min(decs, key=lambda k: decs[k]["mb_s"])
            add(f"slowest stream decoder ({worst})", "core", decs[worst]["mb_s"], ">= 50",
                decs[worst]["mb_s"] >= 50, "MB/s")
        builds = translators.get("builders", {})
        if builds:
            worst = max(builds, key=lambda k: builds[k]["us"])
            add(f"slowest request build, 2 KB chat ({worst})", "core", builds[worst]["us"],
                "<= 50", builds[worst]["us"] <= 50, "µs")
    return out


def fmt(v: Any, spec: str = ".1f") -> str:
    if v is None:
        return "—"
    if isinstance(v, float) and v != v:
        return "—"
    return format(v, spec)


def render_matrix(result: dict[str, Any]) -> list[str]:
    """The per-cell table of ``result['summary']``, its legend and the quiet-machine lines."""
    lines = []
    tw = max([8] + [len(r["target"]) + 1 for r in result["summary"]])  # "trio@1a2b3c4" too
    hdr = (f"{'scenario':<9}{'c':>4}  {'target':<{tw}}{'req/s':>9}{'ratio':>7}{'p50 ms':>8}"
           f"{'p90 ms':>8}{'p99 ms':>8}{'CPU µs/req':>11}{'µs/event':>9}{'CPU %':>7}"
           f"{'RSS MB':>8}{'HWM MB':>8}{'up/1k':>7}{'other %':>8}{'errors':>7}")
    lines.append(hdr)
    lines.append("-" * len(hdr))
    last = None
    for r in result["summary"]:
        key = (r["kind"], r["conns"])
        if last is not None and key != last:
            lines.append("")
        last = key
        scen = "json" if r["kind"] == "json" else "sse×52"
        util = None if r.get("cpu_util") is None else r["cpu_util"] * 100
        other = None if r.get("gw_core_other") is None else r["gw_core_other"] * 100
        lines.append(
            f"{scen:<9}{r['conns']:>4}  {r['target']:<{tw}}{fmt(r['rps'], '.0f'):>9}"
            f"{fmt(r['ratio'], '.3f'):>7}{fmt(r['p50_ms'], '.2f'):>8}{fmt(r['p90_ms'], '.2f'):>8}"
            f"{fmt(r['p99_ms'], '.2f'):>8}{fmt(r['cpu_us_per_req'], '.0f'):>11}"
            f"{fmt(r.get('cpu_us_per_event'), '.1f'):>9}{fmt(util, '.0f'):>7}"
            f"{fmt(r.get('rss_mb'), '.1f'):>8}{fmt(r.get('hwm_mb'), '.1f'):>8}"
            f"{fmt(r.get('upstream_conns_per_1k'), '.0f'):>7}{fmt(other, '.0f'):>8}"
            f"{r['errors']:>7}")
    lines.append("")
    lines.append("ratio: gateway req/s ÷ direct req/s in the same round; CPU µs/req: gateway "
                 "utime+stime ÷ requests;")
    lines.append("µs/event: that ÷ 52; CPU %: of one core; other %: gateway core busy time not "
                 "charged to the gateway")
    lines.append("(other processes, unattributed softirq, steal); up/1k: upstream connections "
                 "the gateway opened per 1000 requests (nginx stub_status).")
    lines.append(f"loadavg "
                 f"{' '.join(result['loadavg_start'])} → {' '.join(result['loadavg_end'])}; waited "
                 f"{result.get('quiet_wait_total_s', 0):.0f} s in all for other processes to "
                 f"go quiet;")
    noisy = [r for r in result["runs"] if r.get("busy_before", 0) > 0.25]
    lines.append(f"{len(noisy)} of {len(result['runs'])} runs started while other processes "
                 f"used > 0.25 core (busy_before in the JSON); the medians absorb one such round.")
    return lines


def render_first_event(fe: dict[str, Any]) -> list[str]:
    nw = max([8] + [len(name) for name in fe])
    lines = [(f"first SSE event (sequential keep-alive requests, n={fe['direct']['n']} "
              f"each, interleaved):")]
    for name, v in fe.items():
        lines.append(f"  {name:<{nw}} median {v['median_ms']:.3f} ms  p90 {v['p90_ms']:.3f} ms"
                     f"  min {v['min_ms']:.3f} ms  Δ direct {v['delta_ms']:+.3f} ms")
    return lines


def render(result: dict[str, Any]) -> str:
    lines = []
    m = result["machine"]
    lines.append(f"uniapi gateway benchmark — {result['mode']}, {result['rounds']} round(s) × "
                 f"{result['duration_s']:g} s per cell, medians of the rounds")
    lines.append(f"machine: {m['cpu_model']}, {m['nproc']} cores, {m['memory']}, Python "
                 f"{m['python']}, Linux {m['kernel']}; started {result.get('started')}, "
                 f"sources {result.get('source_digest')}")
    lines.append(f"upstream: {result['upstream']}; load: {result['wrk']} -t1; gateway pinned to "
                 f"core {result['gateway_core']}, wrk and upstream to core {result['load_core']}"
                 f"; HTTP/1.1 with wrk (h2c with h2load below)")
    for name, version in (result.get("peer_versions") or {}).items():
        lines.append(f"peer {name}: {version}, one worker, pinned like the gateway")
    for b, why in result["backends_skipped"].items():
        lines.append(f"{'peer' if b == 'litellm' else 'backend'} {b}: skipped — {why}")
    lines.append("")
    lines += render_matrix(result)
    if result.get("h2c"):
        lines.append("")
        lines.append("h2c prior knowledge (h2load, c=16 as connections × streams):")
        for h in result["h2c"]:
            lines.append(f"  {h['kind']:<5}{h['target']:<8}{h['conns']:>3}×{h['streams']:<3}"
                         f"{h['rps']:>9.0f} req/s  {h['cpu_us_per_req']:>6.0f} µs/req CPU  "
                         f"{h['succeeded']} ok  {h['errors']} errors")
    sc = result.get("workers_scaling")
    if sc:
        lines.append("")
        lines.append("--workers scaling (trio, JSON c=64, workers on all cores, which wrk and the "
                     "upstream share):")
        for r in sc:
            lines.append(f"  {r['workers']} worker(s) {r['rps']:>8.0f} req/s  "
                         f"×{r['rps'] / sc[0]['rps']:.2f}  {r['cores_used']:.2f} cores busy  "
                         f"{r['cpu_us_per_req']:.0f} µs/req CPU  p99 {r['p99_ms']:.1f} ms  "
                         f"{r['errors']} errors")
    fe = result.get("first_event")
    if fe:
        lines.append("")
        lines += render_first_event(fe)
    tr = result.get("translators")
    if tr:
        lines.append("")
        lines.append("translators (bench_translators.py, gateway core):")
        for name, v in tr.get("decoders", {}).items():
            lines.append(f"  decode  {name:<28}{v['mb_s']:8.1f} MB/s")
        for name, v in tr.get("builders", {}).items():
            lines.append(f"  build   {name:<28}{v['us']:8.1f} µs/request")
        for name, v in tr.get("dispatch", {}).items():
            lines.append(f"  core    {name:<28}{v['us']:8.1f} µs/request")
        for name, why in tr.get("failed", {}).items():
            lines.append(f"  FAILED  {name}: {why[:100]}")
    for name, prof in (result.get("profiles") or {}).items():
        lines.append("")
        lines.append(f"py-spy, {name} c=16 ({prof['samples']} samples), own time:")
        lines.append("  by module: " + ", ".join(f"{m} {p:.0f}%"
                                                 for m, p in prof["own_by_module"][:8]))
        for label, p in prof["own"][:8]:
            lines.append(f"  {p:5.1f}%  {label}")
    lines.append("")
    lines.append(f"targets ({TARGETS_DOC}):")
    for t in result["targets"]:
        met = {True: "met", False: "NOT met", None: "—"}[t["met"]]
        spec = ".3f" if t["unit"] == "×" else ".2f"
        lines.append(f"  {t['backend']:<8}{t['target']:<58}{fmt(t['value'], spec):>10} "
                     f"{t['unit']:<10}{t['goal']:<20}{met}")
    return "\n".join(lines)


# -- pieces of a run, shared by the default run and --compare ----------------------------------

def backend_list(spec: str) -> list[str]:
    return [b.strip() for b in spec.split(",") if b.strip()]


def bring_up_upstream(kind: str, requested: str, nginx: str | None, tmp: Path,
                      core: int | None, procs: list[Proc]) -> tuple[int, str, str] | None:
    """Start the mock upstream (nginx; the python fallback when nginx will not start and
    ``requested`` is auto) and check its answers: (port, kind, label), None on failure."""
    up_port = free_port()
    upstream, up_label = start_upstream(kind, nginx, tmp, up_port, core)
    procs.append(upstream)
    why = wait_ready(upstream, up_port, "/v1/chat/completions", "POST", b"{}")
    if why and kind == "nginx" and requested == "auto":
        log(f"nginx did not start ({why}); using the python fallback upstream")
        upstream.stop()
        kind = "python"
        upstream, up_label = start_upstream("python", None, tmp, up_port, core)
        procs.append(upstream)
        why = wait_ready(upstream, up_port, "/v1/chat/completions", "POST", b"{}")
    if why:
        log(f"the upstream did not start: {why}")
        return None
    problem = check_answers(up_port, gateway=False)
    if problem:
        log(f"the upstream answers wrongly: {problem}")
        return None
    log(f"upstream: {up_label} on 127.0.0.1:{up_port}")
    return up_port, kind, up_label


#: ``--compare ops-off``: the base side is this checkout with the stats store, the metrics and
#: the access log off (issue #13's budget: their cost, measured in one run)
OPS_OFF = "ops-off"
OPS_OFF_ARGS = ("--no-metrics", "--log-format", "off")
OPS_OFF_ENV = {"DISABLE_DATABASE": "true"}
#: ``--compare redis``: the head side shares its routing state through a redis-server started
#: here; the base side is this checkout deciding alone (issue #16's budget)
REDIS = "redis"
#: the head side's extra arguments in ``--compare redis`` (set once the server runs)
REDIS_ARGS: list[str] = []


def start_redis(core: int | None, procs: list[Proc], tmp: Path) -> str | None:
    """A redis-server on a free loopback port, no persistence, pinned to ``core``: its URL,
    or None (logged) when there is none to start."""
    server = shutil.which("redis-server")
    if server is None:
        log("--compare redis: no redis-server (Debian package redis-server)")
        return None
    port = free_port()
    proc = Proc("redis", pinned(core, [server, "--port", str(port), "--bind", "127.0.0.1",
                                       "--save", "", "--appendonly", "no"]),
                tmp / "redis.log")
    procs.append(proc)
    for _ in range(100):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return f"redis://127.0.0.1:{port}/0"
        time.sleep(0.05)
    log(f"--compare redis: redis-server did not start: {proc.tail(3)!r}")
    return None


def start_gateway(name: str, backend: str, tmp: Path, core: int | None, procs: list[Proc],
                  root: Path = ROOT, ops_off: bool = False) -> tuple[Proc, int] | str:
    """``uniapi serve --backend backend`` on ``tmp/api.yaml``, from ``root``'s packages (cwd
    and PYTHONPATH), pinned to ``core``: (proc, port) once it answers correctly, else why
    not (and the process is stopped). ``ops_off``: without stats, metrics and access log."""
    port = free_port()
    env = dict(child_env(root), DB_PATH=str(tmp / f"stats-{name}.db"))  # its stats store
    if ops_off:
        env.update(OPS_OFF_ENV)
    shared = REDIS_ARGS if root == ROOT and "@" not in name else []  # --compare redis: head
    proc = Proc(f"gateway-{name}", pinned(core, [
        sys.executable, "-m", "uniapi_trio.cli", "serve", "--config",
        str(tmp / "api.yaml"), "--host", "127.0.0.1", "--port", str(port),
        "--backend", backend, *(OPS_OFF_ARGS if ops_off else ()), *shared]),
        tmp / f"gateway-{name}.log", cwd=root, env=env)
    procs.append(proc)
    why = wait_ready(proc, port, "/healthz") or check_answers(port, gateway=True)
    if why:
        proc.stop()
        return why
    return proc, port


def wrk_scripts(tmp: Path, targets: dict[str, tuple[int, int | None, str]]
                ) -> dict[tuple[str, str], Path]:
    """One Lua script per (target, kind): the direct upstream's stream has its own path."""
    scripts = {}
    for name in targets:
        for kind in ("json", "sse"):
            if name == "direct":
                path = "/v1/chat/completions" if kind == "json" else "/sse/chat/completions"
            else:
                path = "/v1/chat/completions"
            body = (chat_request_bytes(JSON_MODEL) if kind == "json"
                    else chat_request_bytes(SSE_MODEL, True))
            scripts[name, kind] = lua_script(tmp, f"{name}-{kind}", path, body)
    return scripts


def warm_up(wrk: str, load_core: int | None, targets: dict[str, tuple[int, int | None, str]],
            scripts: dict[tuple[str, str], Path],
            dropped: dict[str, str] | None = None) -> None:
    """wrk c=16 for 1 s on each target and kind. A failure raises, unless ``dropped`` is
    given: then a gateway that fails is recorded there (why) and left out from then on."""
    log("warm-up")
    for name, (port, pid, _) in targets.items():
        for kind in ("json", "sse"):
            if dropped is not None and name in dropped:
                continue
            try:
                run_wrk(wrk, load_core, port, scripts[name, kind], 16, 1)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                if dropped is None or name == "direct":
                    raise
                dropped[name] = f"failed in the warm-up: {exc}"
                log(f"{name}: dropped ({exc})")


def rotated_order(rnd: int, names: list[str]) -> list[str]:
    """The default run: the target order rotates by one per round."""
    return names[rnd % len(names):] + names[:rnd % len(names)]


def interleaved_rounds(wrk: str, load_core: int | None, gw_core: int | None,
                       targets: dict[str, tuple[int, int | None, str]],
                       scripts: dict[tuple[str, str], Path], rounds: int, duration: float,
                       quiet: QuietWait, status_port: int | None,
                       order_of: Callable[[int, list[str]], list[str]] = rotated_order,
                       dropped: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every cell of SCENARIOS against every target, back to back, ``rounds`` times, in the
    order ``order_of(round, names)`` gives; each run's ratio is to the direct run of the same
    cell and round. A failed run raises, unless ``dropped`` is given: then the gateway is
    recorded there (why) and left out of the remaining runs (its runs so far are kept)."""
    runs: list[dict[str, Any]] = []
    names = list(targets)
    total = rounds * len(SCENARIOS) * len(names)
    for rnd in range(rounds):
        for kind, conns in SCENARIOS:
            order = order_of(rnd, names)
            cell: dict[str, dict[str, Any]] = {}
            for name in order:
                if dropped is not None and name in dropped:
                    continue
                port, pid, _ = targets[name]
                waited, busy = quiet()
                try:
                    r = one_run(wrk, load_core, gw_core, name, port, scripts[name, kind],
                                kind, conns, duration, pid, status_port)
                except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
                    if dropped is None or name == "direct":
                        raise
                    dropped[name] = f"failed in round {rnd + 1}, {kind} c={conns}: {exc}"
                    log(f"{name}: dropped ({exc})")
                    continue
                r["round"] = rnd + 1
                r["quiet_wait_s"], r["busy_before"] = waited, busy
                cell[name] = r
                runs.append(r)
                log(f"[{len(runs)}/{total}] round {rnd + 1} {kind} c={conns} {name}: "
                    f"{r['rps']:.0f} req/s p99 {r['p99_ms']:.2f} ms"
                    + (f" cpu {r['cpu_us_per_req']:.0f} µs/req"
                       if r.get("cpu_us_per_req") is not None else "")
                    + (f" errors {r['errors']}" if r["errors"] else ""))
            for name, r in cell.items():  # ratio to the direct run of the same round
                r["ratio"] = r["rps"] / cell["direct"]["rps"] if name != "direct" else 1.0
    return runs


# -- before and after: --compare GITREF ------------------------------------------------------

#: the targets of issue #6 still open when --compare was added: base and head are set against them
OPEN_TARGETS = ("gateway CPU per JSON request (c=16)", "JSON p99 at c=64",
                "first SSE event, median − direct")


@dataclasses.dataclass
class Setup:
    """What main() has set up by the time the gateways start."""
    wrk: str
    tmp: Path
    procs: list[Proc]
    up_port: int
    upstream_kind: str
    up_label: str
    load_core: int | None
    gw_core: int | None
    rounds: int
    duration: float
    first_n: int
    started: float
    started_wall: str
    digest: str
    loadavg_start: list[str]


def git(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(ROOT), *cmd], check=False, capture_output=True,
                          text=True, timeout=120)


def resolve_ref(ref: str) -> dict[str, Any] | None:
    """GITREF as a commit, and what the head side is (HEAD, and whether the working tree's
    packages differ from it); None, logged, when GITREF names no commit. ``ops-off`` names
    this checkout run without stats, metrics and access log."""
    head = git("rev-parse", "HEAD").stdout.strip()
    dirty = git("status", "--porcelain", "--", "uniapi_core", "uniapi_trio",
                "uniapi_asyncio").stdout.splitlines()
    if ref in (OPS_OFF, REDIS):
        return {"ref": ref, "commit": None, "short": OPS_OFF if ref == OPS_OFF else "local",
                "head_commit": head, "head_short": head[:7],
                "head_uncommitted_files": len(dirty)}
    p = git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if p.returncode != 0 or not p.stdout.strip():
        log(f"--compare {ref}: not a commit in {ROOT}")
        return None
    commit = p.stdout.strip()
    short = git("rev-parse", "--short", commit).stdout.strip() or commit[:7]
    return {"ref": ref, "commit": commit, "short": short, "head_commit": head,
            "head_short": head[:len(short)], "head_uncommitted_files": len(dirty)}


@contextlib.contextmanager
def base_worktree(commit: str, short: str) -> Iterator[Path | None]:
    """``git worktree add --detach`` of ``commit`` in a temp dir (None, logged, when that
    fails); removed (and pruned from the repository's worktree list) on the way out."""
    parent = Path(tempfile.mkdtemp(prefix="uniapi-bench-base-"))
    wt = parent / f"uniapi-{short}"
    p = git("worktree", "add", "--detach", str(wt), commit)
    try:
        if p.returncode != 0:
            log(f"git worktree add {commit} failed: {p.stderr.strip()[-400:]}")
            yield None
        else:
            yield wt.resolve()
    finally:
        if p.returncode == 0:
            r = git("worktree", "remove", "--force", str(wt))
            if r.returncode != 0:
                log(f"git worktree remove failed ({r.stderr.strip()}); pruning")
        shutil.rmtree(parent, ignore_errors=True)
        git("worktree", "prune")


def ab_order(rnd: int, names: list[str]) -> list[str]:
    """--compare: forward in even rounds, reversed in odd ones, so each backend's head and
    base run in both orders (and next to each other)."""
    return list(names) if rnd % 2 == 0 else list(reversed(names))


def contestant_rows(summary: list[dict[str, Any]], first: dict[str, Any] | None,
                    memory: dict[str, tuple[float, float]], names: list[str]
                    ) -> list[dict[str, Any]]:
    """One row per contestant: req/s per cell, CPU per JSON request (c=16), p99 at c=64,
    streams/s, µs/event (c=16), first-event delay vs direct, RSS/HWM at the end."""
    def cell(kind: str, conns: int, name: str) -> dict[str, Any]:
        return next((r for r in summary if r["kind"] == kind and r["conns"] == conns
                     and r["target"] == name), {})
    rows = []
    for name in names:
        row: dict[str, Any] = {"target": name}
        for kind, conns in SCENARIOS:
            row[f"{kind}_rps_c{conns}"] = cell(kind, conns, name).get("rps")
        row["cpu_us_per_req"] = cell("json", 16, name).get("cpu_us_per_req")
        row["sse_cpu_us_per_req"] = cell("sse", 16, name).get("cpu_us_per_req")
        row["p99_ms_c64"] = cell("json", 64, name).get("p99_ms")
        row["cpu_us_per_event"] = cell("sse", 16, name).get("cpu_us_per_event")
        row["first_event_delta_ms"] = (first[name]["delta_ms"]
                                       if first and name in first else None)
        rss, hwm = memory.get(name, (None, None))
        row["rss_mb"], row["hwm_mb"] = rss, hwm
        rows.append(row)
    return rows


def compare_pairs(summary: list[dict[str, Any]], targets: list[dict[str, Any]],
                  pairs: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """For each (backend, head name, base name): head ÷ base of req/s and of CPU per request
    in every cell, and the open targets with both values (None for a side that did not
    run)."""
    def cell(kind: str, conns: int, name: str) -> dict[str, Any]:
        return next((r for r in summary if r["kind"] == kind and r["conns"] == conns
                     and r["target"] == name), {})

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    out = []
    for backend, head, base in pairs:
        rps, cpu = {}, {}
        for kind, conns in SCENARIOS:
            h, b = cell(kind, conns, head), cell(kind, conns, base)
            rps[f"{kind} c={conns}"] = ratio(h.get("rps"), b.get("rps"))
            cpu[f"{kind} c={conns}"] = ratio(h.get("cpu_us_per_req"), b.get("cpu_us_per_req"))
        goals = []
        for name in OPEN_TARGETS:
            h = next((t for t in targets if t["target"] == name and t["backend"] == head), None)
            b = next((t for t in targets if t["target"] == name and t["backend"] == base), None)
            ref = h or b
            if ref is None:
                continue
            goals.append({"target": name, "goal": ref["goal"], "unit": ref["unit"],
                          "base": b["value"] if b else None, "base_met": b["met"] if b else None,
                          "head": h["value"] if h else None, "head_met": h["met"] if h else None})
        ran = {r["target"] for r in summary}
        out.append({"backend": backend, "head": head, "base": base,
                    "head_ran": head in ran, "base_ran": base in ran,
                    "rps_head_over_base": rps, "cpu_per_req_head_over_base": cpu,
                    "open_targets": goals})
    return out


def run_compare(args: argparse.Namespace, st: Setup, compare: dict[str, Any]) -> int:
    """--compare GITREF: this checkout's gateway and GITREF's, on each backend, against the
    same upstream in the same interleaved rounds; prints and writes the report."""
    base_procs: list[Proc] = []
    if compare["ref"] == REDIS:  # the same checkout; the head side shares through Redis
        url = start_redis(st.load_core, st.procs, st.tmp)
        if url is None:
            return 2
        REDIS_ARGS[:] = ["--redis-url", url]
        compare["redis_url"] = url
    if compare["commit"] is None:  # ops-off, redis: the same checkout, another command line
        try:
            return _run_compare(args, st, compare, ROOT, base_procs)
        finally:
            for proc in base_procs:
                proc.stop()
    with base_worktree(compare["commit"], compare["short"]) as wt:
        if wt is None:
            return 2
        try:
            return _run_compare(args, st, compare, wt, base_procs)
        finally:  # the base gateways run from the worktree: end them before it goes
            for proc in base_procs:
                proc.stop()


def _run_compare(args: argparse.Namespace, st: Setup, compare: dict[str, Any], wt: Path,
                 base_procs: list[Proc]) -> int:
    short = compare["short"]
    compare["base_worktree"] = str(wt)
    compare["base_source_digest"] = source_digest(wt)
    compare["head_source_digest"] = st.digest
    log(f"base: {compare['ref']} = {short} in worktree {wt} (sources "
        f"{compare['base_source_digest']}); head: {ROOT} (sources {st.digest})")
    gateways: dict[str, tuple[Proc, int]] = {}
    skipped: dict[str, str] = {}
    pairs: list[tuple[str, str, str]] = []
    for backend in backend_list(args.backends):
        for name, root, base in ((backend, ROOT, False), (f"{backend}@{short}", wt, True)):
            why = backend_available(backend, root)
            if why is None:
                n0 = len(st.procs)
                started_gw = start_gateway(name, backend, st.tmp, st.gw_core, st.procs, root,
                                           ops_off=base and compare["ref"] == OPS_OFF)
                if base:
                    base_procs += st.procs[n0:]
                why = (f"did not serve correctly: {started_gw}"
                       if isinstance(started_gw, str) else None)
            if why:
                skipped[name] = why
                log(f"{name}: skipped ({why})")
                continue
            gateways[name] = started_gw  # type: ignore[assignment]
            log(f"gateway {name}: pid {started_gw[0].pid} on 127.0.0.1:{started_gw[1]}"
                f" from {root}")
        if backend in gateways or f"{backend}@{short}" in gateways:
            pairs.append((backend, backend, f"{backend}@{short}"))
    if not gateways:
        log("no gateway could be started")
        return 2
    if not any(h in gateways and b in gateways for _, h, b in pairs):
        log("no backend runs on both sides: no ratios, measuring what runs")

    targets: dict[str, tuple[int, int | None, str]] = {"direct": (st.up_port, None, "direct")}
    for name, (proc, port) in gateways.items():
        targets[name] = (port, proc.pid, name)
    scripts = wrk_scripts(st.tmp, targets)
    # head is a live working tree: a gateway that dies is reported, the others still measured
    dropped: dict[str, str] = {}
    warm_up(st.wrk, st.load_core, targets, scripts, dropped)
    names = list(targets)
    quiet = QuietWait(0.25, 0 if args.no_wait else 8.0, 60.0 if not args.quick else 20.0)
    runs = interleaved_rounds(st.wrk, st.load_core, st.gw_core, targets, scripts, st.rounds,
                              st.duration, quiet,
                              st.up_port if st.upstream_kind == "nginx" else None, ab_order,
                              dropped)
    for name, why in dropped.items():
        proc = gateways.pop(name)[0]
        skipped[name] = f"{why}; log: {proc.tail(3)!r}" if proc.tail(3) else why

    quiet()
    log("first SSE event latency")
    fe_targets = {"direct": (st.up_port, "/sse/chat/completions")}
    fe_targets.update({name: (port, "/v1/chat/completions")
                       for name, (_, port) in gateways.items()})
    first: dict[str, Any] | None = None
    try:
        first = first_event_latency(fe_targets, st.first_n)
    except (OSError, RuntimeError) as exc:  # ConnectionError is an OSError
        log(f"first SSE event latency failed: {exc}")

    memory = {name: proc_memory(proc.pid) for name, (proc, _) in gateways.items()}
    if compare["ref"] == REDIS and not args.quick:  # instances sharing the state scale
        quiet()
        cores = list(range(os.cpu_count() or 1))
        compare["workers"] = [r for n in (1, 2) if (r := workers_run(
            n, cores, st.wrk, st.load_core, st.tmp, scripts["direct", "json"], st.duration,
            st.procs, REDIS_ARGS)) is not None]
    summary = summarize(runs, names)
    checked = check_targets(summary, first, None, list(gateways))
    compare["contestants"] = contestant_rows(summary, first, memory, names)
    compare["pairs"] = compare_pairs(summary, checked, pairs)
    result = {
        "mode": "compare quick" if args.quick else "compare", "rounds": st.rounds,
        "started": st.started_wall, "source_digest": st.digest, "duration_s": st.duration,
        "machine": machine_info(), "upstream": st.up_label, "upstream_kind": st.upstream_kind,
        "wrk": version_of([st.wrk, "--version"]).split(" [")[0],
        "gateway_core": st.gw_core, "load_core": st.load_core,
        "protocol": "HTTP/1.1 (wrk)", "backends": list(gateways), "backends_skipped": skipped,
        "peers": [], "peer_versions": {},
        "scenarios": [{"kind": k, "conns": c} for k, c in SCENARIOS],
        "payloads": {"request_bytes": len(chat_request_bytes()),
                     "completion_bytes": len(completion_bytes()),
                     "sse_bytes": len(sse_body()), "sse_events": SSE_EVENTS},
        "compare": compare, "summary": summary, "first_event": first, "targets": checked,
        "quiet_wait_total_s": quiet.waited, "runs": runs, "loadavg_start": st.loadavg_start,
        "loadavg_end": Path("/proc/loadavg").read_text().split()[:3],
    }
    result["elapsed_s"] = time.monotonic() - st.started
    out_path = Path(args.json)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(render_compare(result))
    print(f"\nJSON: {out_path}   ({result['elapsed_s']:.0f} s)")
    return 0


def _met(v: bool | None) -> str:
    return {True: "met", False: "NOT met", None: "—"}[v]


def render_compare(result: dict[str, Any]) -> str:
    c = result["compare"]
    m = result["machine"]
    head = f"the working tree at {c['head_short']}"
    if c["head_uncommitted_files"]:
        head += f" + {c['head_uncommitted_files']} uncommitted file(s) in the packages"
    lines = [
        (f"uniapi gateway benchmark — {result['mode']}, {result['rounds']} round(s) × "
         f"{result['duration_s']:g} s per cell, medians of the rounds; base and head "
         f"interleaved (order reversed every other round)"),
        (f"base: this checkout deciding alone; head: {head} with --redis-url "
         f"{c.get('redis_url')} (sources {c['head_source_digest']})" if c["ref"] == REDIS else
         f"base: this checkout with {' '.join(OPS_OFF_ARGS)} and DISABLE_DATABASE=true; head: "
         f"{head} (sources {c['head_source_digest']})" if c["commit"] is None else
         f"base: {c['ref']} = {c['short']} (git worktree, sources "
         f"{c['base_source_digest']}); head: {head} (sources {c['head_source_digest']})"),
        (f"machine: {m['cpu_model']}, {m['nproc']} cores, {m['memory']}, Python "
         f"{m['python']}, Linux {m['kernel']}; started {result['started']}"),
        (f"upstream: {result['upstream']}; load: {result['wrk']} -t1; gateways pinned to "
         f"core {result['gateway_core']}, wrk and upstream to core {result['load_core']}; "
         f"HTTP/1.1"),
    ]
    for name, why in result["backends_skipped"].items():
        side = "base" if "@" in name else "head, this checkout"
        lines.append(f"{name} ({side}): skipped — {why}")
    lines.append("")
    lines += render_matrix(result)

    rows = c["contestants"]
    nw = max([10] + [len(r["target"]) + 1 for r in rows])
    lines.append("")
    lines.append("per contestant (medians): req/s by cell; CPU µs per JSON request and per "
                 "stream at c=16; JSON p99 at c=64;")
    lines.append("stream µs/event at c=16; first SSE event median − direct; RSS and HWM at "
                 "the end of the run")
    hdr = (f"{'contestant':<{nw}}{'json c=1':>9}{'c=16':>7}{'c=64':>7}{'sse c=16':>9}"
           f"{'c=64':>7}{'CPU µs/req':>11}{'/stream':>8}{'p99 c=64':>9}{'µs/event':>9}"
           f"{'1st Δ ms':>9}{'RSS MB':>7}{'HWM MB':>7}")
    lines.append(hdr)
    lines.append("-" * len(hdr))
    for r in rows:
        lines.append(
            f"{r['target']:<{nw}}{fmt(r['json_rps_c1'], '.0f'):>9}"
            f"{fmt(r['json_rps_c16'], '.0f'):>7}{fmt(r['json_rps_c64'], '.0f'):>7}"
            f"{fmt(r['sse_rps_c16'], '.0f'):>9}{fmt(r['sse_rps_c64'], '.0f'):>7}"
            f"{fmt(r['cpu_us_per_req'], '.0f'):>11}{fmt(r['sse_cpu_us_per_req'], '.0f'):>8}"
            f"{fmt(r['p99_ms_c64'], '.2f'):>9}{fmt(r['cpu_us_per_event'], '.1f'):>9}"
            f"{fmt(r['first_event_delta_ms'], '+.3f'):>9}{fmt(r['rss_mb'], '.1f'):>7}"
            f"{fmt(r['hwm_mb'], '.1f'):>7}")
    if result.get("first_event"):
        lines.append("")
        lines += render_first_event(result["first_event"])

    lines.append("")
    lines.append(f"before → after: head ÷ base ({c['short']} → head), same rounds; req/s > 1 "
                 f"and CPU/request < 1 are gains")
    cells = [f"{k} c={n}" for k, n in SCENARIOS]
    hdr = f"  {'backend':<9}{'':<14}" + "".join(f"{x:>11}" for x in cells)
    lines.append(hdr)
    for p in c["pairs"]:
        lines.append(f"  {p['backend']:<9}{'req/s':<14}" + "".join(
            f"{fmt(p['rps_head_over_base'][x], '.3f'):>11}" for x in cells))
        lines.append(f"  {'':<9}{'CPU/request':<14}" + "".join(
            f"{fmt(p['cpu_per_req_head_over_base'][x], '.3f'):>11}" for x in cells))
    for p in c["pairs"]:
        if not (p["head_ran"] and p["base_ran"]):
            lines.append(f"  {p['backend']}: only {'head' if p['head_ran'] else 'base'} ran, "
                         "no ratio")
    if c.get("workers"):
        lines.append("")
        lines.append("--workers with --redis-url, all cores (shared with wrk and the upstream), "
                     "JSON c=64:")
        for w in c["workers"]:
            lines.append(f"  --workers {w['workers']}: {w['rps']:.0f} req/s, "
                         f"{w['cores_used']:.2f} cores, {w['cpu_us_per_req']:.0f} µs/req, "
                         f"p99 {w['p99_ms']:.1f} ms, {w['errors']} errors")
    lines.append("")
    lines.append(f"open targets ({TARGETS_DOC}), base → head:")
    lines.append(f"  {'backend':<9}{'target':<38}{'goal':<11}{'base':>11}  {'':<9}"
                 f"{'head':>11}")
    for p in c["pairs"]:
        for t in p["open_targets"]:
            spec = {"µs": ".0f", "ms": "+.3f" if t["target"].startswith("first") else ".2f"
                    }.get(t["unit"], ".2f")
            unit = f" {t['unit']}"
            base = fmt(t["base"], spec) + unit if t["base"] is not None else "—"
            headv = fmt(t["head"], spec) + unit if t["head"] is not None else "—"
            lines.append(f"  {p['backend']:<9}{t['target']:<38}{t['goal'] + unit:<11}"
                         f"{base:>11}  {_met(t['base_met']):<9}{headv:>11}  "
                         f"{_met(t['head_met'])}")
    if result["rounds"] < 3:
        lines.append("")
        lines.append(f"{result['rounds']} round(s) of {result['duration_s']:g} s: on this "
                     "shared machine a cell varies by up to ±10 % run to run; read ratios "
                     "within that as no change.")
    noisy = [r for r in result["runs"] if r.get("busy_before", 0) > 0.25]
    other = median([r["gw_core_other"] for r in result["runs"]
                    if r["target"] != "direct" and r.get("gw_core_other") is not None])
    if len(noisy) > len(result["runs"]) / 2 or other > 0.10:
        lines.append("")
        lines.append(f"WARNING: {len(noisy)} of {len(result['runs'])} runs started while other "
                     f"processes used > 0.25 core, and the gateways' core spent a median "
                     f"{other * 100:.0f} % on something else:")
        lines.append("these figures measure the machine's load as much as the code; rerun on "
                     "a quiet machine before reading the ratios.")
    return "\n".join(lines)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="1 round, 3 s per cell, 100 first-event requests (~1 minute)")
    ap.add_argument("--json",
                    help="where to write the results (default: benchmarks/results/latest.json; "
                    "with --compare, benchmarks/results/compare.json)")
    ap.add_argument("--rounds", type=int,
                    help="interleaved rounds (default 3; --quick 1, --compare --quick 2)")
    ap.add_argument("--duration", type=float,
                    help="seconds per wrk run (default 6; --quick 3, --compare --quick 2)")
    ap.add_argument("--compare", metavar="GITREF",
                    help="before/after: also run the gateway of GITREF (checked out in a "
                    "temporary git worktree) on each backend, in the same interleaved rounds as "
                    "this checkout's, and report head ÷ base and the open targets for both "
                    "(no h2c, --workers, translators, peer or py-spy runs); 'redis': this checkout "
                    "with --redis-url against itself deciding alone; 'ops-off': this "
                    "checkout without stats, metrics and access log as the base")
    ap.add_argument("--backends", default="trio,asyncio",
                    help="gateway backends to try (default trio,asyncio)")
    ap.add_argument("--upstream", choices=("auto", "nginx", "python"), default="auto",
                    help="auto: nginx, else the python fallback upstream")
    ap.add_argument("--no-install", action="store_true", help="never run apt-get")
    ap.add_argument("--no-wait", action="store_true",
                    help="do not wait for other processes to go quiet before each run")
    ap.add_argument("--no-translators", action="store_true",
                    help="skip the translator micro-benchmarks")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    ap.add_argument("--no-workers", action="store_true",
                    help="skip the --workers scaling runs (never run with --quick)")
    ap.add_argument("--litellm", metavar="PATH",
                    help="measure LiteLLM's proxy as a peer: the litellm executable of a side "
                    "venv (default $UNIAPI_BENCH_LITELLM, else benchmarks/.litellm/bin/litellm "
                    "when present)")
    ap.add_argument("--py-spy", type=float, default=0, metavar="SECONDS",
                    help="also sample each gateway with py-spy (pip install py-spy) for SECONDS "
                    "under wrk c=16, JSON and stream, and print the top costs")
    args = ap.parse_args(argv)
    compare: dict[str, Any] | None = None
    if args.compare:
        compare = resolve_ref(args.compare)
        if compare is None:
            return 2
    if args.json is None:
        args.json = str(HERE / "results" / ("compare.json" if compare else "latest.json"))

    loadavg_start = Path("/proc/loadavg").read_text().split()[:3]
    started_wall = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    digest = source_digest()
    if compare is None:
        rounds = args.rounds or (1 if args.quick else 3)
        duration = args.duration or (3.0 if args.quick else 6.0)
    else:  # twice the targets: fewer, shorter cells; 2 rounds so each pair runs in both orders
        rounds = args.rounds or (2 if args.quick else 3)
        duration = args.duration or (2.0 if args.quick else 6.0)
    first_n = 100 if args.quick else 300
    started = time.monotonic()

    wrk, nginx = ensure_tools(not args.no_install, args.upstream != "python")
    if wrk is None:
        log("wrk is not installed and could not be installed (apt-get install wrk)")
        return 2
    upstream_kind = "nginx" if nginx is not None and args.upstream != "python" else "python"
    if args.upstream == "nginx" and upstream_kind != "nginx":
        log("nginx is not available")
        return 2

    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= 2:
        load_core, gw_core = cores[0], cores[-1]
    else:
        load_core = gw_core = None
        log("one core only: nothing is pinned, gateway and load share it")
    if load_core is not None:
        os.sched_setaffinity(0, {load_core})  # this script and its clients: the load core

    tmp = Path(tempfile.mkdtemp(prefix="uniapi-bench-"))
    procs: list[Proc] = []
    result: dict[str, Any] = {}
    old_term = signal.signal(signal.SIGTERM, _interrupt)
    try:
        up = bring_up_upstream(upstream_kind, args.upstream, nginx, tmp, load_core, procs)
        if up is None:
            return 2
        up_port, upstream_kind, up_label = up

        (tmp / "api.yaml").write_text(api_yaml(up_port))
        if compare is not None:
            return run_compare(args, Setup(
                wrk=wrk, tmp=tmp, procs=procs, up_port=up_port, upstream_kind=upstream_kind,
                up_label=up_label, load_core=load_core, gw_core=gw_core, rounds=rounds,
                duration=duration, first_n=first_n, started=started, started_wall=started_wall,
                digest=digest, loadavg_start=loadavg_start), compare)
        gateways: dict[str, tuple[Proc, int]] = {}
        skipped: dict[str, str] = {}
        for backend in backend_list(args.backends):
            why = backend_available(backend)
            if why:
                skipped[backend] = why
                log(f"backend {backend}: skipped ({why})")
                continue
            started_gw = start_gateway(backend, backend, tmp, gw_core, procs)
            if isinstance(started_gw, str):
                skipped[backend] = f"did not serve correctly: {started_gw}"
                log(f"backend {backend}: skipped ({started_gw})")
                continue
            gateways[backend] = started_gw
            log(f"gateway {backend}: pid {started_gw[0].pid} on 127.0.0.1:{started_gw[1]}")
        if not gateways:
            log("no gateway backend could be started")
            return 2

        peers: dict[str, tuple[Proc, int]] = {}
        peer_versions: dict[str, str] = {}
        litellm = litellm_path(args.litellm)
        if litellm is not None:
            log(f"peer litellm: starting {litellm}")
            lproc, lport, why = start_litellm(litellm, tmp, up_port, gw_core)
            if lproc is None:
                skipped["litellm"] = f"did not serve correctly: {why}"
                log(f"peer litellm: skipped ({why})")
            else:
                procs.append(lproc)
                peers["litellm"] = (lproc, lport)
                peer_versions["litellm"] = version_of([litellm, "--version"])
                log(f"peer litellm: pid {lproc.pid} on 127.0.0.1:{lport}")

        targets: dict[str, tuple[int, int | None, str]] = {"direct": (up_port, None, "direct")}
        for b, (proc, port) in [*gateways.items(), *peers.items()]:
            targets[b] = (port, proc.pid, b)
        scripts = wrk_scripts(tmp, targets)
        warm_up(wrk, load_core, targets, scripts)

        names = list(targets)
        # idle gateways and nginx use ~nothing: more than 0.25 busy cores is someone else
        quiet = QuietWait(0.25, 0 if args.no_wait else 8.0, 60.0 if not args.quick else 20.0)
        runs = interleaved_rounds(wrk, load_core, gw_core, targets, scripts, rounds, duration,
                                  quiet, up_port if upstream_kind == "nginx" else None,
                                  rotated_order)

        h2c: list[dict[str, Any]] = []
        h2load = shutil.which("h2load")
        if h2load is None and not args.no_install:
            _apt(["nghttp2-client"], [False])
            h2load = shutil.which("h2load")
        if h2load is None:
            log("h2load not available (apt-get install nghttp2-client): no h2c runs")
        else:
            bodies = {"json": tmp / "h2-json.json", "sse": tmp / "h2-sse.json"}
            bodies["json"].write_bytes(chat_request_bytes(JSON_MODEL))
            bodies["sse"].write_bytes(chat_request_bytes(SSE_MODEL, True))
            for name, (proc, port) in gateways.items():
                for kind in ("json", "sse"):
                    for conns, streams in ((16, 1), (4, 10)):
                        quiet()
                        cpu0 = proc_cpu_seconds(proc.pid)
                        try:
                            h = run_h2load(h2load, load_core, port, bodies[kind], conns,
                                           streams, duration)
                        except (RuntimeError, subprocess.TimeoutExpired) as exc:
                            log(f"h2c {name} {kind}: {exc}")
                            continue
                        cpu = proc_cpu_seconds(proc.pid) - cpu0
                        h.update(target=name, kind=kind, conns=conns, streams=streams,
                                 cpu_us_per_req=cpu / max(h["succeeded"], 1) * 1e6)
                        h2c.append(h)
                        log(f"h2c {name} {kind} {conns}×{streams}: {h['rps']:.0f} req/s, "
                            f"{h['succeeded']} ok, {h['errors']} errors, "
                            f"cpu {h['cpu_us_per_req']:.0f} µs/req")

        scaling: list[dict[str, Any]] = []
        if not args.quick and not args.no_workers and "trio" in gateways and len(cores) >= 2:
            for n in (1, len(cores)):
                quiet()
                r = workers_run(n, cores, wrk, load_core, tmp, scripts["trio", "json"],
                                duration, procs)
                if r is not None:
                    scaling.append(r)

        quiet()
        log("first SSE event latency")
        fe_targets = {"direct": (up_port, "/sse/chat/completions")}
        fe_targets.update({b: (port, "/v1/chat/completions")
                           for b, (_, port) in [*gateways.items(), *peers.items()]})
        first = first_event_latency(fe_targets, first_n)

        translators = None
        if not args.no_translators:
            log("translator micro-benchmarks")
            out = tmp / "translators.json"
            cmd = pinned(gw_core, [sys.executable, str(HERE / "bench_translators.py"),
                                   "--json", str(out)] + (["--quick"] if args.quick else []))
            p = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True,
                               timeout=300)
            if out.exists():
                translators = json.loads(out.read_text())
                for what, why in translators.get("failed", {}).items():
                    log(f"bench_translators.py: {what} failed: {why}")
            else:
                log(f"bench_translators.py failed: {p.stderr[-800:]}")

        profiles: dict[str, Any] = {}
        pyspy = shutil.which("py-spy") if args.py_spy > 0 else None
        if args.py_spy > 0 and pyspy is None:
            log("py-spy not found (pip install py-spy): no live profile")
        if pyspy:
            for name, (proc, port) in gateways.items():
                for kind in ("json", "sse"):
                    log(f"py-spy: {name} {kind} c=16 for {args.py_spy:g} s")
                    prof = live_profile(pyspy, wrk, load_core, port, proc.pid,
                                        scripts[name, kind], args.py_spy,
                                        tmp / f"pyspy-{name}-{kind}.txt")
                    if prof:
                        profiles[f"{name} {kind}"] = prof

        for name, (proc, port) in gateways.items():
            rss, hwm = proc_memory(proc.pid)
            log(f"gateway {name}: VmRSS {rss:.1f} MB, VmHWM {hwm:.1f} MB at the end")

        summary = summarize(runs, names)
        result = {
            "mode": "quick" if args.quick else "default", "rounds": rounds,
            "started": started_wall, "source_digest": digest,
            "duration_s": duration, "machine": machine_info(), "upstream": up_label,
            "upstream_kind": upstream_kind, "wrk": version_of([wrk, "--version"]).split(" [")[0],
            "gateway_core": gw_core, "load_core": load_core,
            "protocol": "HTTP/1.1 (wrk); h2c (h2load) in 'h2c'",
            "backends": list(gateways), "backends_skipped": skipped,
            "peers": list(peers), "peer_versions": peer_versions,
            "scenarios": [{"kind": k, "conns": c} for k, c in SCENARIOS],
            "payloads": {"request_bytes": len(chat_request_bytes()),
                         "completion_bytes": len(completion_bytes()),
                         "sse_bytes": len(sse_body()), "sse_events": SSE_EVENTS},
            "summary": summary, "first_event": first, "translators": translators,
            "h2c": h2c, "workers_scaling": scaling,
            "targets": check_targets(summary, first, translators, list(gateways),
                                     list(peers)),
            "quiet_wait_total_s": quiet.waited,
            "profiles": profiles, "runs": runs, "loadavg_start": loadavg_start,
            "loadavg_end": Path("/proc/loadavg").read_text().split()[:3],
        }
        result["elapsed_s"] = time.monotonic() - started
        out_path = Path(args.json)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        print(render(result))
        print(f"\nJSON: {out_path}   ({result['elapsed_s']:.0f} s)")
        return 0
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        signal.signal(signal.SIGTERM, old_term)
        for proc in reversed(procs):
            proc.stop(signal.SIGQUIT if proc.name == "nginx" else signal.SIGTERM)
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
