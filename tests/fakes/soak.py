"""The R2 soak harness (issue 17): a gateway in its own process under fixed-rate mixed load
with ~5 % upstream faults, its RSS, fds and threads sampled from ``/proc/<pid>``; then an abuse
episode (oversized heads, idle connections) and whether RSS comes back.

Shared by ``tests/e2e/test_soak.py`` (60 s per backend in CI) and ``benchmarks/soak.py``
(10 minutes). Blocking, thread-based test I/O on 127.0.0.1 only; every loop is bounded by a
count and a wall-clock limit; the fault draws come from a seeded ``random.Random``. Only the
process this module starts is ever signalled, by its PID.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.fakes.upstream import FakeUpstream, Reply, Seen, json_reply, sse_reply

ADMIN = "sk-soak-admin"  # the first api key: the admin key GET /metrics asks for
KEY = "sk-soak-client"
MODEL = "gpt-4o"
SEED = 20260617
FAULT_RATE = 0.05
FAULTS = ("500", "429", "drop", "truncate", "slow")
MODULES = {"trio": "uniapi_trio", "asyncio": "uniapi_asyncio"}

COMPLETION = {
    "id": "chatcmpl-soak", "object": "chat.completion", "created": 1735689600, "model": MODEL,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "soak ok"},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


def _chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> dict:
    obj = {"id": "chatcmpl-soak", "object": "chat.completion.chunk", "created": 1735689600,
           "model": MODEL, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                        "finish_reason": finish}]}
    if usage is not None:
        obj["usage"] = usage
    return obj


STREAM_EVENTS = [_chunk({"role": "assistant", "content": ""}), _chunk({"content": "soak "}),
                 _chunk({"content": "ok"}), _chunk({}, "stop"),
                 {**_chunk({}), "choices": [], "usage": COMPLETION["usage"]}]


# --- the faulty upstream -------------------------------------------------------------------

class FaultyHandler:
    """``FakeUpstream`` handler: a normal completion (or stream), except with probability
    ``rate`` one fault drawn from ``FAULTS`` by a seeded RNG: 500 with an error JSON, 429 with
    ``Retry-After: 0``, a connection closed before the head, a truncated body (a stream cut
    after its first event, a JSON body cut after the head), a slow first byte (0.2 s)."""

    def __init__(self, seed: int, rate: float = FAULT_RATE) -> None:
        self.rng = random.Random(seed)
        self.rate = rate
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def __call__(self, seen: Seen) -> Reply:
        try:
            stream = bool(json.loads(seen.body).get("stream"))
        except ValueError:
            stream = False
        with self.lock:
            kind = self.rng.choice(FAULTS) if self.rng.random() < self.rate else "ok"
            self.counts[kind] += 1
        ok = sse_reply(STREAM_EVENTS) if stream else json_reply(COMPLETION)
        if kind == "500":
            return json_reply({"error": {"message": "injected", "type": "server_error",
                                         "code": None}}, status=500)
        if kind == "429":
            return json_reply({"error": {"message": "slow down", "type": "rate_limit_error",
                                         "code": "rate_limit_exceeded"}}, status=429,
                              headers=[("retry-after", "0")])
        if kind == "drop":
            return Reply(drop=True)
        if kind == "truncate":
            ok.cut_after = 1 if stream else 0
        elif kind == "slow":
            ok.delay = 0.2
        return ok


def config_text(urls: list[str]) -> str:
    """api.yaml: one provider per upstream, all serving ``MODEL`` (retries go to the next)."""
    providers = "".join(f"""
  - provider: p{i}
    base_url: {url}/v1/chat/completions
    api: sk-upstream-{i}
    model: [{MODEL}]
""" for i, url in enumerate(urls))
    return f"""
providers:{providers}
api_keys:
  - api: {ADMIN}
    role: admin
  - api: {KEY}
preferences:
  cooldown_period: 2
"""


# --- the gateway process -------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


@dataclass
class GatewayProc:
    backend: str
    port: int
    log: Path
    proc: subprocess.Popen

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int | None:
        """SIGINT, then SIGKILL after 10 s: only this gateway's own PID. Its exit code."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode


def start_gateway(backend: str, conf: Path, log: Path, limit: float = 30.0) -> GatewayProc:
    """``python -m uniapi_<backend>`` on a free 127.0.0.1 port, ready (GET /healthz answers)."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", MODULES[backend], "--config", str(conf), "--host",
             "127.0.0.1", "--port", str(port), "--log-format", "off"],
            stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "DISABLE_DATABASE": "true"})
    gw = GatewayProc(backend, port, log, proc)
    deadline = time.monotonic() + limit
    while not healthy(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            gw.stop()
            raise RuntimeError(f"{backend} gateway not ready:\n{gw.output()[-3000:]}")
        time.sleep(0.05)
    return gw


# --- /proc and /metrics ---------------------------------------------------------------------

def proc_status(pid: int) -> dict[str, int]:
    """VmRSS (KiB) and Threads of a process."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "Threads"):
                out[key] = int(value.split()[0])
    return out


def rss_mb(pid: int) -> float:
    return proc_status(pid)["VmRSS"] / 1024


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_kinds(pid: int, port: int, upstream_ports: set[int]) -> Counter[str]:
    """The process's fds by kind: ``client`` (accepted connections on ``port``), ``upstream``
    (connections to one of ``upstream_ports``), ``listen``, ``socket`` (other), ``other``."""
    inodes: dict[str, str] = {}
    kinds: Counter[str] = Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes[target[8:-1]] = fd
        else:
            kinds["other"] += 1
    seen = set()
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            inode = cols[9]
            if inode not in inodes or inode in seen:
                continue
            seen.add(inode)
            local, remote, state = int(cols[1].rsplit(":", 1)[1], 16), \
                int(cols[2].rsplit(":", 1)[1], 16), cols[3]
            if state == "0A":
                kinds["listen"] += 1
            elif local == port:
                kinds["client"] += 1
            elif remote in upstream_ports:
                kinds["upstream"] += 1
            else:
                kinds["socket"] += 1
    kinds["socket"] += len(inodes) - len(seen)
    return kinds


def metrics(port: int, timeout: float = 5.0) -> dict[str, float]:
    """The unlabelled samples of GET /metrics (admin key), by name; {} when it fails."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                 headers={"Authorization": f"Bearer {ADMIN}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            text = r.read().decode()
    except OSError:
        return {}
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, value = line.partition(" ")
            samples[name] = float(value.split()[0])
    return samples


@dataclass
class Sample:
    t: float  # seconds since the sampler started
    rss_mb: float
    fds: int
    threads: int
    in_flight: float | None
    connections: float | None


class Sampler:
    """Samples the gateway every ``interval`` seconds in a thread until ``stop()``."""

    def __init__(self, gw: GatewayProc, interval: float = 2.0) -> None:
        self.gw = gw
        self.interval = interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.t0 = time.monotonic()

    def sample(self) -> Sample:
        st = proc_status(self.gw.pid)
        fds = fd_count(self.gw.pid)
        m = metrics(self.gw.port)
        return Sample(time.monotonic() - self.t0, st["VmRSS"] / 1024, fds, st["Threads"],
                      m.get("uniapi_requests_in_flight"), m.get("uniapi_client_connections_open"))

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.samples.append(self.sample())
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def start(self) -> Sampler:
        self.t0 = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join(10)
        self.samples.append(self.sample())
        return self.samples


def slope_mb_per_min(samples: list[Sample]) -> float:
    """Least-squares slope of RSS over time, MB per minute."""
    n = len(samples)
    if n < 2:
        return 0.0
    xs = [s.t / 60 for s in samples]
    ys = [s.rss_mb for s in samples]
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0


# --- the load -------------------------------------------------------------------------------

@dataclass
class LoadResult:
    sent: int = 0
    seconds: float = 0.0
    #: outcome -> count: ok, ok_stream, stream_error (an in-stream error event), error_<status>
    #: (an OpenAI-shaped error JSON), bad_<...> (an answer of the wrong shape), conn_error
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # the first few connection errors / bad
    max_latency: float = 0.0

    @property
    def answered(self) -> int:
        return sum(n for k, n in self.outcomes.items() if not k.startswith(("conn", "bad")))

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


def _classify(status: int, stream: bool, body: bytes) -> str:
    if 200 <= status < 300:
        if stream:
            if b'"error"' in body:
                return "stream_error"
            if body.rstrip().endswith(b"data: [DONE]") and b"soak " in body:
                return "ok_stream"
            return "bad_stream"
        try:
            obj = json.loads(body)
            return "ok" if obj["choices"][0]["message"]["content"] == "soak ok" else "bad_json"
        except (ValueError, KeyError, IndexError, TypeError):
            return "bad_json"
    try:
        err = json.loads(body)["error"]
        if isinstance(err["message"], str) and "type" in err:
            return f"error_{status}"
    except (ValueError, KeyError, TypeError):
        pass
    return f"bad_{status}"


def run_load(port: int, seconds: float, *, rate: float = 100.0, workers: int = 16,
             stream_share: float = 0.3, timeout: float = 10.0, seed: int = SEED) -> LoadResult:
    """Chat completions at a fixed ``rate`` for ``seconds`` (at most ``rate * seconds``
    requests) from ``workers`` threads, each with its own keep-alive ``http.client``
    connection; ``stream_share`` of them streaming (read to the end). Every connection is
    closed when this returns."""
    result = LoadResult()
    total = int(rate * seconds)
    lock = threading.Lock()
    counter = iter(range(total))
    pick = random.Random(seed)
    streams = [pick.random() < stream_share for _ in range(total)]
    t0 = time.monotonic()
    hard_stop = t0 + seconds + timeout + 5

    def one(conn: http.client.HTTPConnection, stream: bool) -> str:
        body = json.dumps({"model": MODEL, "stream": stream,
                           "messages": [{"role": "user", "content": "soak"}]}).encode()
        conn.request("POST", "/v1/chat/completions", body=body,
                     headers={"Authorization": f"Bearer {KEY}",
                              "Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        return _classify(resp.status, stream, raw)

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None or time.monotonic() > hard_stop:
                    return
                wait = t0 + i / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                start = time.monotonic()
                try:
                    outcome = one(conn, streams[i])
                except (OSError, http.client.HTTPException) as e:
                    outcome = "conn_error"
                    conn.close()
                    with lock:
                        if len(result.errors) < 10:
                            result.errors.append(f"#{i} stream={streams[i]}: {e!r}")
                took = time.monotonic() - start
                with lock:
                    result.sent += 1
                    result.outcomes[outcome] += 1
                    result.max_latency = max(result.max_latency, took)
                    if outcome.startswith("bad") and len(result.errors) < 10:
                        result.errors.append(f"#{i} stream={streams[i]}: {outcome}")
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.1, hard_stop - time.monotonic()))
    result.seconds = time.monotonic() - t0
    return result


# --- the soak -------------------------------------------------------------------------------

@dataclass
class SoakReport:
    backend: str
    warmup: LoadResult
    load: LoadResult
    samples: list[Sample]
    slope: float  # MB/min, least squares over the samples after warm-up
    growth: float  # MB, last - first sample after warm-up
    fds_before: int  # after warm-up, no connection from the load open (1 s settle)
    fds_after: int  # after the load, likewise
    kinds_before: Counter[str]
    kinds_after: Counter[str]
    idle_fds: list[int]  # fds at samples with nothing in flight
    faults: Counter[str]

    def lines(self) -> list[str]:
        first, last = self.samples[0], self.samples[-1]
        idle = f"{min(self.idle_fds)}..{max(self.idle_fds)}" if self.idle_fds else "n/a"
        in_flight = [s.in_flight for s in self.samples if s.in_flight is not None]
        return [
            (f"[soak {self.backend}] load: {self.load.sent} requests in {self.load.seconds:.1f} s"
            f" ({self.load.rate:.1f} req/s), answered {self.load.answered}, max latency "
            f"{self.load.max_latency:.2f} s, outcomes {dict(sorted(self.load.outcomes.items()))}"),
            (f"[soak {self.backend}] upstream attempts by fault (seed {SEED}): "
            f"{dict(sorted(self.faults.items()))}"),
            (f"[soak {self.backend}] RSS {first.rss_mb:.1f} -> {last.rss_mb:.1f} MB over "
            f"{last.t:.0f} s ({len(self.samples)} samples): slope {self.slope:+.3f} MB/min, "
            f"growth {self.growth:+.2f} MB, max {max(s.rss_mb for s in self.samples):.1f} MB"),
            (f"[soak {self.backend}] fds settled before/after load: {self.fds_before} -> "
            f"{self.fds_after} ({dict(self.kinds_before)} -> {dict(self.kinds_after)}); "
            f"during load {min(s.fds for s in self.samples)}..{max(s.fds for s in self.samples)},"
            f" with nothing else in flight {idle}; threads "
            f"{min(s.threads for s in self.samples)}..{max(s.threads for s in self.samples)}; "
            f"in flight max {max(in_flight) if in_flight else 'n/a'}"),
        ]


def settle(gw: GatewayProc, seconds: float = 1.0) -> None:
    """Wait ``seconds`` after the load's connections closed, then until the gateway counts no
    open client connection (at most 5 s more)."""
    time.sleep(seconds)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and metrics(gw.port).get(
            "uniapi_client_connections_open", 0) > 0:
        time.sleep(0.1)


def soak(gw: GatewayProc, handler: FaultyHandler, ups: list[FakeUpstream], seconds: float, *,
         warmup: float = 5.0, rate: float = 100.0, interval: float = 2.0) -> SoakReport:
    """``warmup`` seconds of load, a settle (fd baseline), then ``seconds - warmup`` seconds of
    load sampled every ``interval`` seconds, then a settle (fds again)."""
    upstream_ports = {u.port for u in ups}
    warm = run_load(gw.port, warmup, rate=rate)
    settle(gw)
    fds_before, kinds_before = fd_count(gw.pid), fd_kinds(gw.pid, gw.port, upstream_ports)
    sampler = Sampler(gw, interval).start()
    stop_clearing = threading.Event()

    def clear_logs() -> None:  # the fakes' request logs would grow in this process
        while not stop_clearing.wait(1.0):
            for u in ups:
                u.seen.clear()

    clearer = threading.Thread(target=clear_logs, daemon=True)
    clearer.start()
    try:
        load = run_load(gw.port, max(interval * 2, seconds - warmup), rate=rate)
    finally:
        samples = sampler.stop()
        stop_clearing.set()
        clearer.join(5)
    settle(gw)
    fds_after, kinds_after = fd_count(gw.pid), fd_kinds(gw.pid, gw.port, upstream_ports)
    # GET /metrics counts itself: 1 in flight is nothing else
    idle = [s.fds for s in samples if s.in_flight is not None and s.in_flight <= 1]
    return SoakReport(gw.backend, warm, load, samples, slope_mb_per_min(samples),
                      samples[-1].rss_mb - samples[0].rss_mb, fds_before, fds_after,
                      kinds_before, kinds_after, idle, Counter(handler.counts))


# --- the abuse episode ----------------------------------------------------------------------

@dataclass
class AbuseReport:
    backend: str
    rss_before: float
    rss_peak: float
    rss_after: float
    fds_before: int
    fds_after: int
    big_statuses: Counter[str]
    idle_opened: int
    seconds: float

    def lines(self) -> list[str]:
        return [
            (f"[abuse {self.backend}] {sum(self.big_statuses.values())} oversized heads -> "
            f"{dict(self.big_statuses)}; {self.idle_opened} idle connections opened and closed;"
            f" {self.seconds:.1f} s"),
            (f"[abuse {self.backend}] RSS before {self.rss_before:.1f} MB, peak "
            f"{self.rss_peak:.1f} MB, after 3 s {self.rss_after:.1f} MB "
            f"({self.rss_after - self.rss_before:+.2f} MB); fds {self.fds_before} -> "
            f"{self.fds_after}"),
        ]


def big_head(port: int, size: int = 100_000, timeout: float = 10.0) -> str:
    """One connection sending a ``size``-byte header: the status it got ("431"), or the
    error."""
    head = (b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
            KEY.encode() + b"\r\nX-Big: " + b"a" * size + b"\r\n\r\n")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            try:
                s.sendall(head)
            except OSError:
                pass  # the gateway may answer and close before it read it all
            data = b""
            deadline = time.monotonic() + timeout
            while b"\r\n" not in data and time.monotonic() < deadline:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            line = data.split(b"\r\n", 1)[0].split()
            return line[1].decode() if len(line) > 1 else f"no status ({data[:40]!r})"
    except OSError as e:
        return type(e).__name__


def abuse(gw: GatewayProc, *, big: int = 300, idle: int = 500, wait: float = 3.0,
          threads: int = 10) -> AbuseReport:
    """``big`` connections each sending a 100 KB header (``threads`` at a time), then ``idle``
    connections opened, held together for 0.5 s and closed; then ``wait`` seconds."""
    t0 = time.monotonic()
    rss_before, fds_before = rss_mb(gw.pid), fd_count(gw.pid)
    peak = rss_before
    statuses: Counter[str] = Counter()
    lock = threading.Lock()
    todo = iter(range(big))

    def sender() -> None:
        while True:
            with lock:
                if next(todo, None) is None:
                    return
            status = big_head(gw.port)
            with lock:
                statuses[status] += 1

    pool = [threading.Thread(target=sender, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(120)
    peak = max(peak, rss_mb(gw.pid))
    socks: list[socket.socket] = []
    try:
        for _ in range(idle):
            try:
                socks.append(socket.create_connection(("127.0.0.1", gw.port), timeout=5))
            except OSError:
                break
        time.sleep(0.5)
        peak = max(peak, rss_mb(gw.pid))
    finally:
        for s in socks:
            s.close()
    time.sleep(wait)
    return AbuseReport(gw.backend, rss_before, peak, rss_mb(gw.pid), fds_before,
                       fd_count(gw.pid), statuses, len(socks), time.monotonic() - t0)


# --- both, for one backend ------------------------------------------------------------------

@dataclass
class Run:
    soak: SoakReport
    abuse: AbuseReport
    #: the same episode again: what it adds on top says plateau (allocator high-water mark)
    #: or leak
    again: AbuseReport
    log: str
    exit_code: int | None


def run_backend(backend: str, tmp: Path, seconds: float, *, warmup: float = 5.0,
                rate: float = 100.0, interval: float = 2.0, out=print) -> Run:
    """Two faulty upstreams, the gateway process, the soak, the abuse episode; stops them."""
    handler = FaultyHandler(SEED)
    ups = [FakeUpstream(handler) for _ in range(2)]
    try:
        conf = tmp / f"soak-{backend}.yaml"
        conf.write_text(config_text([u.url for u in ups]))
        gw = start_gateway(backend, conf, tmp / f"soak-{backend}.log")
        try:
            report = soak(gw, handler, ups, seconds, warmup=warmup, rate=rate,
                          interval=interval)
            for line in report.lines():
                out(line)
            episode = abuse(gw)
            for line in episode.lines():
                out(line)
            again = abuse(gw)
            for line in again.lines():
                out(line.replace("[abuse", "[abuse again"))
        finally:
            code = gw.stop()
        return Run(report, episode, again, gw.output(), code)
    finally:
        for u in ups:
            u.close()
