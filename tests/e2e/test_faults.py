"""Fault injection (issue 17, the first reliability rule), on both backends: 2,000 requests
(``UNIAPI_FAULT_REQUESTS``) from 16 client threads, half of them speaking HTTP/1.1 to the
gateway and half HTTP/2 with prior knowledge (h2c; six consecutive requests, one of each kind,
go over one protocol), mixed over the OpenAI chat, Anthropic Messages and Responses fronts,
streams and not, to one model served by five fake upstreams (``tests/fakes/faults.py``): four
vendor protocols over HTTP/1.1 (OpenAI chat, Anthropic Messages, Gemini, Bedrock) and OpenAI
chat over TLS with ALPN ``h2`` (``FakeH2Upstream``, every stream multiplexed on one
connection). They fail ~12 % of their attempts from a seeded fault table: reset before the
head, 500, 429 with ``Retry-After: 0``, 400, a slow first byte, a stall mid-body longer than
the idle timeout (1 s here), a truncated body, garbage, a Bedrock event-stream frame with a
wrong CRC; and the h2 upstream besides RST_STREAM mid-body (3 %) and GOAWAY mid-body, then the
connection closed (3 %; it cuts the other streams open on that connection too, which count as
faulty attempts, ``cut``). The judge takes RST_STREAM and GOAWAY like a stall or a truncation.

Every upstream answer is unique to its attempt (``ans-<request token>-<attempt>``), so the
figures are exact: 0 lost (every request answered), 0 duplicated (a 200 answer is exactly the
text of its request's last attempt, a clean one, and no text is in two answers; an in-stream
error follows a prefix of the last attempt's text), 0 hung (each request within the client's
15 s), 0 tracebacks (logs and stderr); attempts within the retry budget and every channel tried
once (a stale keep-alive connection's one transparent retry aside), a 400 never retried and
passed on; every error (an answer or an in-stream error event) in its front's error shape; the
stats store holds one request row per request. Figures in total and per client protocol.

File descriptors (the gateway runs in a thread of this process, ``tests/harness.py``, so
``/proc/self/fd`` holds its fds along with the fakes' and the clients'): the baseline is taken
with the fakes listening, before the gateway starts. After the run, with the clients closed,
the gateway holds no client connection (by port, ``/proc/self/net/tcp``), and what it holds
beyond its start is its pool's keep-alive upstream connections (both ends are in this process:
counted by port), the stats store's files and the fakes' epoll fds (one per fake thread
waiting on an idle connection), ± 2, read once two snapshots agree (connections still
closing move the counts between two reads). Once it has stopped, the count is back to
the baseline ± 2 and the stats store's SQLite files (db, -wal, -shm) are closed: the store's
last work at shutdown is ``CLOSE_STORE`` (before it, the cycle collector closed them some time
later; this test found that). Tasks (``RunningGateway.tasks``, counted in the gateway's own
loop) are back to what ran at the start once the clients are gone, plus a reader and a writer
per live HTTP/2 upstream link and at most one timer of the stats flush. The threads before and
after are reported, not asserted (the fakes' and the backends' worker threads come and go on
their own timers).

``benchmarks/faults.py`` runs the same at full size (10,000 requests × both backends × h1 and
h2c; ``benchmarks/results/faults.json``).

``test_a_429_on_a_keyless_channel_moves_on`` holds the bug this test found: a 429 from a channel
without ``api`` keys (Bedrock) tried that channel again, up to the whole budget.

Not covered: the Responses-native upstream (the Responses front is served here by translation
to the vendors), HTTP/2 to the gateway over TLS (ALPN; h2c only here), an h2 upstream's reset
before the head or a GOAWAY whose last stream id leaves streams unprocessed (the transparent
retry; tests/e2e/test_h2_upstream.py covers those one by one).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.fakes.faults import FaultTable, FaultyH2Vendor, FaultyVendor
from tests.fakes.llm_vendors import ANTHROPIC_MODEL
from tests.fakes.upstream import FakeUpstream
from tests.harness import run_gateway
from uniapi_core.ops.stats import StoreConfig
from uniapi_core.routing.retry import attempt_budget

KEY = "sk-faults-e2e"
REQUESTS = int(os.environ.get("UNIAPI_FAULT_REQUESTS", "2000"))
THREADS = 16
CLIENT_TIMEOUT = 15.0
SEED = 20261206
VENDORS = ("openai", "anthropic", "gemini", "bedrock", "h2")
#: the client front protocols: HTTP/1.1, and HTTP/2 with prior knowledge (h2c)
PROTOCOLS = ("h1", "h2c")
BEDROCK_MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
KINDS = [(front, stream) for front in ("chat", "messages", "responses")
         for stream in (False, True)]
PATHS = {"chat": "/v1/chat/completions", "messages": "/v1/messages",
         "responses": "/v1/responses"}


def config(ups: dict[str, Any]) -> str:
    return f"""
providers:
  - provider: oai
    base_url: {ups["openai"].url}/v1/chat/completions
    api: sk-oai
    model:
      - gpt-4o: m
  - provider: ant
    engine: claude
    base_url: {ups["anthropic"].url}/v1/messages
    api: sk-ant-up
    model:
      - {ANTHROPIC_MODEL}: m
  - provider: gem
    engine: gemini
    base_url: {ups["gemini"].url}/v1beta
    api: AIza-test
    model:
      - gemini-2.5-flash: m
  - provider: bdr
    engine: aws
    base_url: {ups["bedrock"].url}
    aws_access_key: AKIDEXAMPLE
    aws_secret_key: wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
    aws_region: us-east-1
    model:
      - {BEDROCK_MODEL}: m
  - provider: oai-h2
    base_url: {ups["h2"].url}/v1/chat/completions
    api: sk-oai-h2
    model:
      - gpt-4o: m
api_keys:
  - api: {KEY}
    preferences:
      SCHEDULING_ALGORITHM: round_robin
preferences:
  cooldown_period: 0
  model_timeout:
    default: 1
"""


@dataclass
class Result:
    token: str
    front: str
    stream: bool
    protocol: str = "h1"
    status: int = 0
    outcome: str = ""  # ok | error | stream_error | lost | hung | bad
    text: str = ""
    problem: str = ""
    seconds: float = 0.0
    events: list[Any] = field(default_factory=list)


def body_of(front: str, stream: bool, token: str) -> dict[str, Any]:
    prompt = f"Please answer {token}."
    if front == "chat":
        return {"model": "m", "stream": stream, "messages": [{"role": "user",
                                                               "content": prompt}]}
    if front == "messages":
        return {"model": "m", "max_tokens": 64, "stream": stream,
                "messages": [{"role": "user", "content": prompt}]}
    return {"model": "m", "stream": stream, "input": prompt}


def error_shaped(front: str, obj: Any) -> bool:
    """Whether ``obj`` is the front's error body (or in-stream error event data)."""
    if not isinstance(obj, dict):
        return False
    if front == "messages":
        err = obj.get("error")
        return (obj.get("type") == "error" and isinstance(err, dict)
                and isinstance(err.get("type"), str) and isinstance(err.get("message"), str))
    err = obj.get("error")
    return isinstance(err, dict) and isinstance(err.get("message"), str)


def sse_events(resp: httpx.Response, deadline: float) -> list[tuple[str, str]]:
    events, name, data = [], "", []
    for line in resp.iter_lines():
        if time.monotonic() > deadline:
            raise TimeoutError("stream past the client deadline")
        if line == "":
            if data:
                events.append((name, "\n".join(data)))
            name, data = "", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
    if data:
        events.append((name, "\n".join(data)))
    return events


def whole_text(front: str, obj: dict[str, Any]) -> str:
    if front == "chat":
        return obj["choices"][0]["message"]["content"] or ""
    if front == "messages":
        return "".join(b.get("text", "") for b in obj["content"] if b["type"] == "text")
    return "".join(c.get("text", "") for item in obj["output"] if item["type"] == "message"
                   for c in item["content"] if c["type"] == "output_text")


def read_stream(front: str, events: list[tuple[str, str]], r: Result) -> None:
    """Assemble a stream's text; ``r.outcome`` ok (it ended properly) or stream_error (an
    error event in the front's shape ended it) or bad."""
    text, done, error, last = [], False, None, None
    for name, data in events:
        last = (name, data)
        if front == "chat" and data == "[DONE]":
            done = True
            continue
        try:
            obj = json.loads(data)
        except ValueError:
            r.outcome, r.problem = "bad", f"event not JSON: {data[:200]!r}"
            return
        if front == "chat":
            if "error" in obj:
                error = obj if error_shaped(front, obj) else ("bad", obj)
            for choice in obj.get("choices") or []:
                text.append((choice.get("delta") or {}).get("content") or "")
        elif front == "messages":
            if name == "error" or obj.get("type") == "error":
                error = obj if error_shaped(front, obj) else ("bad", obj)
            elif obj.get("type") == "content_block_delta" and \
                    obj["delta"].get("type") == "text_delta":
                text.append(obj["delta"]["text"])
            elif obj.get("type") == "message_stop":
                done = True
        else:
            kind = obj.get("type")
            if kind == "response.output_text.delta":
                text.append(obj["delta"])
            elif kind == "response.completed":
                done = True
            elif kind == "response.failed":
                error = obj["response"] if error_shaped(front, obj["response"]) \
                    else ("bad", obj)
            elif kind == "error" or name == "error":
                error = obj if isinstance(obj.get("message"), str) or \
                    error_shaped(front, obj) else ("bad", obj)
    r.text = "".join(text)
    if isinstance(error, tuple):
        r.outcome, r.problem = "bad", f"in-stream error not in the front's shape: {error[1]}"
    elif error is not None and not done:
        r.outcome = "stream_error"
    elif done and error is None:
        r.outcome = "ok"
    else:
        r.outcome, r.problem = "bad", f"stream neither completed nor failed; last {last}"


def send(client: httpx.Client, token: str, front: str, stream: bool) -> Result:
    r = Result(token, front, stream)
    start = time.monotonic()
    deadline = start + CLIENT_TIMEOUT
    headers = {"authorization": f"Bearer {KEY}"}
    if front == "messages":
        headers.update({"x-api-key": KEY, "anthropic-version": "2023-06-01"})
    try:
        with client.stream("POST", PATHS[front], json=body_of(front, stream, token),
                           headers=headers) as resp:
            r.status = resp.status_code
            ctype = resp.headers.get("content-type", "")
            if resp.status_code != 200:
                raw = resp.read()
                try:
                    obj = json.loads(raw)
                except ValueError:
                    obj = None
                if error_shaped(front, obj):
                    r.outcome = "error"
                else:
                    r.outcome, r.problem = "bad", f"error body not in shape: {raw[:300]!r}"
            elif stream:
                if "text/event-stream" not in ctype:
                    r.outcome, r.problem = "bad", f"stream answered as {ctype}"
                else:
                    read_stream(front, sse_events(resp, deadline), r)
            else:
                obj = json.loads(resp.read())
                r.text = whole_text(front, obj)
                r.outcome = "ok"
    except (httpx.TimeoutException, TimeoutError) as exc:
        r.outcome, r.problem = "hung", repr(exc)
    except httpx.HTTPError as exc:
        r.outcome, r.problem = "lost", repr(exc)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        r.outcome, r.problem = "bad", f"unreadable answer: {exc!r}"
    r.seconds = time.monotonic() - start
    if r.seconds > CLIENT_TIMEOUT and r.outcome != "hung":
        r.outcome, r.problem = "hung", f"{r.seconds:.1f} s"
    return r


def stale_retries(attempts: list[Any]) -> int:
    """A reused keep-alive connection that fails before any response byte (our ``drop``) is
    tried once more on a fresh one by the transport, before routing sees a failure
    (docs/architecture.md, "The two retry rules"): not a routing attempt."""
    return sum(1 for a, b in itertools.pairwise(attempts)
               if a.kind == "drop" and b.vendor == a.vendor)


def last_but_late_h2(attempts: list[Any], this: Callable[[Any], bool]) -> bool:
    """Whether the last attempt is ``this`` one, counting back over HTTP/2 attempts only.

    The fakes record an attempt when its request has arrived, so the order is the order of
    arrival. An HTTP/2 attempt the gateway gave up on (its model timeout passed as its
    connection came up) may still arrive, as an upstream cannot tell from one sent just before
    the timeout, and the h2 fake (TLS and HTTP/2 parsing, a thread per connection) may read it
    after the next channel's request (tests/e2e/test_h2_abandoned.py): such an attempt can be
    recorded after the one that answered."""
    for attempt in reversed(attempts):
        if this(attempt):
            return True
        if attempt.vendor != "h2":
            return False
    return False


def judge(results: list[Result], table: FaultTable, budget: int) -> tuple[list[str], dict]:
    """The problems of the run (empty: all held) and its figures."""
    problems: list[str] = []
    seen_text: dict[str, str] = {}
    figures: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    max_attempts = 0
    for r in results:
        attempts = table.attempts.get(r.token, [])
        stale = stale_retries(attempts)
        routed = len(attempts) - stale
        visits = [a.vendor for i, a in enumerate(attempts)
                  if i == 0 or a.vendor != attempts[i - 1].vendor]
        max_attempts = max(max_attempts, routed)
        figures[r.outcome] += 1
        figures["retries"] += max(0, routed - 1)
        figures["stale retries"] += stale
        statuses[f"{r.status}{' (in-stream error)' if r.outcome == 'stream_error' else ''}"] \
            += 1
        where = f"{r.token} {r.front} stream={r.stream} status={r.status}: " \
                f"{[(a.vendor, a.kind) for a in attempts]}"
        if r.outcome in ("lost", "hung", "bad"):
            problems.append(f"{r.outcome} {where}: {r.problem}")
            continue
        if routed > budget:
            problems.append(f"over budget ({routed} > {budget}) {where}")
        unexplained = sum(1 for a, b in itertools.pairwise(attempts)
                          if a.vendor == b.vendor) - stale
        if len(visits) != len(set(visits)) or unexplained > 0 or routed > len(VENDORS):
            problems.append(f"a channel tried more than once {where}")
        if any(a.kind == "400" for a in attempts[:-1]):
            problems.append(f"a 400 retried {where}")
        if attempts and attempts[-1].kind == "400" and r.status != 400:
            problems.append(f"a 400 not passed on {where}")
        if r.outcome == "ok":
            if r.status != 200:
                problems.append(f"ok but {r.status} {where}")
            markers = [a.marker for a in attempts]
            if r.text not in markers:
                problems.append(f"answer {r.text!r} is no attempt's {where}")
            elif not last_but_late_h2(attempts, lambda a: a.marker == r.text):
                problems.append(f"answer {r.text!r} is not the last attempt's {where}")
            elif not last_but_late_h2(attempts, lambda a: a.marker == r.text
                                      and a.kind in ("ok", "slow")):
                problems.append(f"a whole answer from a faulty attempt {where}")
            if r.text in seen_text:
                problems.append(f"duplicated {r.text!r} in {seen_text[r.text]} and {r.token}")
            seen_text[r.text] = r.token
        elif r.outcome == "stream_error":
            # committed: only the last attempt may have reached the client, a prefix of it
            if r.text and not last_but_late_h2(attempts, lambda a: a.marker.startswith(r.text)):
                problems.append(f"in-stream error after {r.text!r}, no prefix of the last "
                                f"attempt {where}")
            if attempts and not last_but_late_h2(attempts, lambda a: (
                    not r.text or a.marker.startswith(r.text)) and a.kind not in ("ok", "slow")):
                problems.append(f"an in-stream error from a clean attempt {where}")
    out = {"requests": len(results),
           "answered": sum(figures[k] for k in ("ok", "error", "stream_error")),
           "2xx whole": figures["ok"], "in-stream errors": figures["stream_error"],
           "by status": dict(sorted(statuses.items())),
           "attempts": sum(len(v) for v in table.attempts.values()),
           "retries": figures["retries"], "stale-connection retries": figures["stale retries"],
           "max attempts": max_attempts, "budget": budget,
           "faults drawn": dict(sorted(table.counts.items())),
           "errors": figures["error"],
           "lost": figures["lost"], "hung": figures["hung"], "bad": figures["bad"],
           "duplicated": sum(1 for p in problems if p.startswith("duplicated"))}
    return problems, out


def wait_written(gw, n: int, limit: float = 15.0) -> int:
    queue = gw.gateway.stats
    deadline = time.monotonic() + limit
    while queue.written < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return queue.written


def by_protocol(results: list[Result], table: FaultTable) -> dict[str, dict[str, Any]]:
    """The figures of each client protocol's requests (faults by their final kind: an
    attempt cut by another's ``goaway`` counts as ``cut``)."""
    out = {}
    for proto in PROTOCOLS:
        mine = [r for r in results if r.protocol == proto]
        outcomes = Counter(r.outcome for r in mine)
        attempts = [a for r in mine for a in table.attempts.get(r.token, [])]
        out[proto] = {
            "requests": len(mine),
            "answered": sum(outcomes[k] for k in ("ok", "error", "stream_error")),
            "2xx whole": outcomes["ok"], "errors": outcomes["error"],
            "in-stream errors": outcomes["stream_error"],
            "retries": sum(max(0, len(atts) - 1 - stale_retries(atts)) for atts in
                           (table.attempts.get(r.token, []) for r in mine)),
            "faults": dict(sorted(Counter(a.kind for a in attempts
                                          if a.kind != "ok").items())),
            "lost": outcomes["lost"], "hung": outcomes["hung"], "bad": outcomes["bad"]}
    return out


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def pollers() -> int:
    """This process's epoll fds: the fakes' threads open one per wait (tests/fakes/poll.py),
    so an idle fake connection holds one while the gateway holds none more."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            n += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventpoll]"
    return n


def files_open(prefix: str) -> int:
    """This process's fds open on files whose path starts with ``prefix``."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}").startswith(prefix)
        except OSError:
            pass
    return n


def tcp_sockets() -> list[tuple[int, int]]:
    """(local port, remote port) of this process's open TCP sockets (IPv4 and IPv6)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = []
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[9] in inodes:
                out.append((int(cols[1].rsplit(":", 1)[1], 16),
                            int(cols[2].rsplit(":", 1)[1], 16)))
    return out


def settle(condition: Callable[[], bool], limit: float = 10.0) -> bool:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def upstreams(table: FaultTable) -> dict[str, Any]:
    """The five fake upstreams (``h2``: TLS, ALPN ``h2``; the gateway's ``upstream_ssl`` is
    its ``client_ssl_context``), drawing their faults from ``table``."""
    ups: dict[str, Any] = {v: FakeUpstream(FaultyVendor(table, v)) for v in VENDORS[:4]}
    ups["h2"] = FaultyH2Vendor(table).upstream()
    return ups


@dataclass
class Run:
    backend: str
    results: list[Result]
    table: FaultTable
    seconds: float
    written: int
    last_error: Any
    fds: dict[str, int]


def run_faults(backend: str, requests: int, stats_path: str, *, threads: int = THREADS,
               protocols: tuple[str, ...] = PROTOCOLS, seed: int = SEED) -> Run:
    """The fault-injection run: ``requests`` requests over ``threads`` client threads, shared
    out evenly among ``protocols`` (six consecutive requests, one of each front and stream
    kind, go over one protocol), against a gateway on ``backend``; with the fd counts."""
    table = FaultTable(seed)
    ups = upstreams(table)
    upstream_ports = {u.port for u in ups.values()}
    clients: list[httpx.Client] = []
    clients_lock = threading.Lock()
    fds: dict[str, int] = {}
    try:
        gc.collect()
        fds["baseline"] = fd_count()  # the fakes listening, no gateway yet
        fds["threads at baseline"] = threading.active_count()  # a figure, not asserted
        with run_gateway(config(ups), backend=backend, discover=False,
                         upstream_ssl=ups["h2"].client_ssl_context(("h2",)),
                         stats_store=StoreConfig(path=stats_path)) as gw:
            fds["gateway up"] = fd_count()
            fds["pollers at start"] = pollers()
            fds["tasks at start"] = gw.tasks()
            fds["stats store files at start"] = files_open(stats_path)
            started = time.monotonic()
            local = threading.local()

            def one(i: int, proto: str) -> Result:
                client = getattr(local, "client", None)
                if client is None:
                    client = local.client = httpx.Client(
                        base_url=gw.url, timeout=httpx.Timeout(CLIENT_TIMEOUT),
                        limits=httpx.Limits(max_connections=4),
                        http1=proto == "h1", http2=proto == "h2c")
                    with clients_lock:
                        clients.append(client)
                front, stream = KINDS[i % len(KINDS)]
                r = send(client, f"rq-{i:06d}", front, stream)
                r.protocol = proto
                return r

            per = max(1, threads // len(protocols))
            pools = {p: ThreadPoolExecutor(per, thread_name_prefix=f"faults-{p}")
                     for p in protocols}
            try:
                futures = [pools[p].submit(one, i, p) for i in range(requests)
                           for p in [protocols[(i // len(KINDS)) % len(protocols)]]]
                results = [f.result() for f in futures]
            finally:
                for pool in pools.values():
                    pool.shutdown()  # its threads, and their thread-local clients, gone
            seconds = time.monotonic() - started
            written = wait_written(gw, requests)
            fds["after the run"] = fd_count()
            for client in clients:
                client.close()

            def accepted() -> int:  # the gateway's connections from clients
                return sum(1 for here, there in tcp_sockets()
                           if here == gw.port and there != 0)

            settle(lambda: accepted() == 0)

            def snapshot() -> dict[str, int]:
                socks = tcp_sockets()
                now = {"clients gone": fd_count(),
                       "gateway client connections": accepted(),
                       "gateway upstream connections": sum(1 for _, there in socks
                                                           if there in upstream_ports),
                       "h2 upstream links": sum(1 for _, there in socks
                                                if there == ups["h2"].port),
                       "their fake ends": sum(1 for here, there in socks
                                              if here in upstream_ports and there != 0),
                       "stats store files": files_open(stats_path),
                       "fake pollers": pollers() - fds["pollers at start"]}
                # what the run left besides the pool's keep-alive connections (both ends,
                # both in this process) and the stats store's files (opened on first use)
                now["unexplained"] = (now["clients gone"] - fds["gateway up"]
                                      - now["gateway upstream connections"]
                                      - now["their fake ends"] - now["stats store files"]
                                      + fds["stats store files at start"]
                                      - now["fake pollers"])
                return now

            # connections still closing (a fake's end, an expiring keep-alive) move the counts
            # between two reads: take them once two snapshots agree and nothing is left over
            last: list[dict[str, int]] = [snapshot()]

            def steady() -> bool:
                last.append(snapshot())
                return last[-1] == last[-2] and abs(last[-1]["unexplained"]) <= 2

            settle(steady, limit=5.0)
            fds.update(last[-1])
            fds["tasks after"] = gw.tasks()
            last_error = getattr(gw.gateway.stats, "last_error", None)
        # stopped: its pool closed; the fakes see EOF and close their ends
        settle(lambda: fd_count() <= fds["baseline"] + 2, limit=5.0)
        fds["gateway stopped"] = fd_count()
        fds["stats store files after stop"] = files_open(stats_path)
        gc.collect()
        fds["gateway stopped, after gc"] = fd_count()
        fds["threads after stop"] = threading.active_count()
    finally:
        for u in ups.values():
            u.close()
    return Run(backend, results, table, seconds, written, last_error, fds)


def figures_of(run: Run, budget: int) -> tuple[list[str], dict[str, Any]]:
    problems, figures = judge(run.results, run.table, budget)
    figures.update({"backend": run.backend, "seconds": round(run.seconds, 1),
                    "requests/s": round(len(run.results) / run.seconds, 1),
                    "stats rows": run.written, "attempts without a token": run.table.unknown,
                    "cut by another's goaway": run.table.collateral,
                    "by protocol": by_protocol(run.results, run.table), "fds": run.fds})
    return problems, figures


def test_fault_injection(backend, tmp_path, caplog, capfd):
    caplog.set_level(logging.WARNING)
    budget = attempt_budget(None)  # AUTO_RETRY default: 10, and every channel once (judge)
    run = run_faults(backend, REQUESTS, str(tmp_path / "stats.db"))
    problems, figures = figures_of(run, budget)
    tracebacks = [r for r in caplog.records
                  if r.exc_info or "Traceback" in r.getMessage()]
    err = capfd.readouterr().err
    figures["tracebacks"] = len(tracebacks) + err.count("Traceback")
    print("\nfault injection:", json.dumps(figures, indent=1))
    for p in problems[:30]:
        print("  PROBLEM", p)
    assert not problems, f"{len(problems)} problems, first: {problems[:10]}"
    assert figures["answered"] == REQUESTS
    assert figures["tracebacks"] == 0, (tracebacks[:3], err[-3000:])
    assert run.table.unknown == 0
    assert run.written == REQUESTS, (run.written, run.last_error)
    assert figures["max attempts"] <= budget
    shares = [f["requests"] for f in figures["by protocol"].values()]
    assert sum(shares) == REQUESTS and max(shares) - min(shares) <= len(KINDS), shares
    fds = run.fds
    assert fds["gateway client connections"] == 0, fds
    assert abs(fds["unexplained"]) <= 2, fds
    assert fds["stats store files after stop"] == 0, fds  # closed at shutdown (CLOSE_STORE)
    # tasks: what ran at the start, plus a reader and a writer per live HTTP/2 upstream link,
    # plus at most one waiting timer of the stats flush (asyncio's wait_for): nothing leaked
    assert fds["tasks after"] <= fds["tasks at start"] + 2 * fds["h2 upstream links"] + 1, fds
    assert abs(fds["gateway stopped"] - fds["baseline"]) <= 2, fds
    assert abs(fds["gateway stopped, after gc"] - fds["baseline"]) <= 2, fds


class Scripted(FaultTable):
    """A fault table whose faults are scripted per vendor (then clean answers)."""

    def __init__(self, script: dict[str, list[str]]) -> None:
        super().__init__(SEED, rate=0.0)
        self.script = script

    def draw(self, token, vendor, stream):  # type: ignore[no-untyped-def]
        attempt, rng = super().draw(token, vendor, stream)
        if self.script.get(vendor):
            attempt.kind = self.script[vendor].pop(0)
        return attempt, rng


def test_a_429_on_a_keyless_channel_moves_on(backend):
    """A 429 blames the key, and the router tries the channel's next key; a channel without
    ``api`` keys (Bedrock's AWS credentials) has none, so the next channel is tried (before the
    fix it was tried again until the whole budget was spent)."""
    table = Scripted({"bedrock": ["429"] * 40})
    ups = upstreams(table)
    try:
        with run_gateway(config(ups), backend=backend, discover=False,
                         upstream_ssl=ups["h2"].client_ssl_context(("h2",))) as gw, \
                httpx.Client(base_url=gw.url, timeout=CLIENT_TIMEOUT) as client:
            statuses = [client.post("/v1/chat/completions",
                                    json=body_of("chat", False, f"rq-{i:06d}"),
                                    headers={"authorization": f"Bearer {KEY}"}).status_code
                        for i in range(len(VENDORS))]  # round robin: one starts at Bedrock
    finally:
        for u in ups.values():
            u.close()
    tries = {t: [a.vendor for a in atts] for t, atts in table.attempts.items()}
    assert statuses == [200] * len(VENDORS), (statuses, tries)
    assert all(vendors.count("bedrock") <= 1 for vendors in tries.values()), tries
