"""Scale-out end to end (issue 16): three gateway processes, mixed backends (trio, asyncio,
trio), one api.yaml, one real redis-server (``--redis-url``). Whatever instance a request
lands on, the client-key rate limits, the provider-key limits, the channel cooldowns and the
round-robin position are the fleet's, exactly; a Vertex service account's access token is
fetched once for the fleet; a hot reload of one instance is followed by the others; with Redis
gone every request is still answered on the process's own state (and ``GET /metrics`` says so),
and sharing resumes once Redis is back.

One redis-server and one fleet for the module: each scenario has its own client key, models
and providers (and its own fake upstream per provider, so the upstream's request log says
which channel served), so the scenarios never touch each other's state. The Redis outage is
the last scenario. The gateways run in other processes; their output goes to files (a full
pipe would block them), read for the "connected" / "unreachable" lines.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from tests.e2e.test_vertex import EMAIL, PEM, FakeVertex
from tests.fakes import redis_server
from tests.fakes.upstream import FakeUpstream, Seen, json_reply

ADMIN = "sk-scale-admin"  # the first api key: the admin key /metrics asks for
BACKENDS = ("uniapi_trio", "uniapi_asyncio", "uniapi_trio")
CONNECTED = "shared state: connected to"
UNREACHABLE = "unreachable"

# every upstream (one per provider) by its provider name
PROVIDERS = ("s1", "s2", "s3a", "s3b", "s4a", "s4b", "s4c", "s5", "s7")


def answer(name: str) -> dict:
    return {"id": f"chatcmpl-{name}", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": name},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def config(ups: dict[str, FakeUpstream], vertex: FakeVertex, reloaded: bool = False,
           slow: FakeVertex | None = None) -> str:
    """The fleet's api.yaml; ``reloaded``: the one the reload scenario writes, which only adds
    model m-s7b to provider s7 (same client keys, so the same fleet name)."""
    def base(name: str) -> str:
        return f"{ups[name].url}/v1/chat/completions"

    s7_models = "[m-s7a, m-s7b]" if reloaded else "[m-s7a]"
    pem = PEM.replace("\n", "\\n")

    # redis_timeout: generous, so that a loaded test machine never makes a decision fall back
    # to the process's own state while Redis is up (the exact counts below would then be off);
    # with Redis stopped the link is down and a decision falls back at once anyway.
    return f"""
providers:
  - {{provider: s1, base_url: "{base('s1')}", api: sk-upstream-s1, model: [m-s1]}}
  - provider: s2
    base_url: "{base('s2')}"
    api: sk-upstream-s2
    model: [m-s2]
    preferences: {{api_key_rate_limit: 2/min}}
  - provider: s3a
    base_url: "{base('s3a')}"
    api: sk-upstream-s3a
    model: [m-s3]
    preferences: {{cooldown_period: 3}}
  - {{provider: s3b, base_url: "{base('s3b')}", api: sk-upstream-s3b, model: [m-s3]}}
  - {{provider: s4a, base_url: "{base('s4a')}", api: sk-upstream-s4a, model: [m-s4]}}
  - {{provider: s4b, base_url: "{base('s4b')}", api: sk-upstream-s4b, model: [m-s4]}}
  - {{provider: s4c, base_url: "{base('s4c')}", api: sk-upstream-s4c, model: [m-s4]}}
  - {{provider: s5, base_url: "{base('s5')}", api: sk-upstream-s5, model: [m-s5]}}
  - provider: v6
    engine: vertex
    base_url: {vertex.url}
    project_id: proj-1
    client_email: {EMAIL}
    private_key: '{pem}'
    token_uri: {vertex.url}/token
    model:
      - gemini-2.0-flash: m-v6
  - provider: v8
    engine: vertex
    base_url: {slow.url if slow else vertex.url}
    project_id: proj-1
    client_email: {EMAIL}
    private_key: '{pem}'
    token_uri: {slow.url if slow else vertex.url}/token
    model:
      - gemini-2.0-flash: m-v8
  - {{provider: s7, base_url: "{base('s7')}", api: sk-upstream-s7, model: {s7_models}}}
api_keys:
  - api: {ADMIN}
    role: admin
  - api: sk-scale-1
    model: [s1/*]
    preferences: {{rate_limit: 3/min}}
  - api: sk-scale-2
    model: [s2/*]
  - api: sk-scale-3
    model: [s3a/*, s3b/*]
  - api: sk-scale-4
    model: [s4a/*, s4b/*, s4c/*]
    preferences: {{SCHEDULING_ALGORITHM: round_robin}}
  - api: sk-scale-5
    model: [s5/*]
    preferences: {{rate_limit: 1000/min}}
  - api: sk-scale-5b
    model: [s5/*]
    preferences: {{rate_limit: 2/min}}
  - api: sk-scale-6
    model: [v6/*]
  - api: sk-scale-7
    model: [s7/*]
  - api: sk-scale-8
    model: [v8/*]
preferences:
  redis_timeout: 1
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@attrs.define
class Gateway:
    module: str
    port: int
    log: Path
    proc: subprocess.Popen

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def chat(self, key: str, model: str) -> tuple[int, dict[str, str], dict]:
        """POST /v1/chat/completions (non-streaming): status, headers (lower-case), JSON body."""
        body = json.dumps({"model": model,
                           "messages": [{"role": "user", "content": "hi"}]}).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/v1/chat/completions", data=body, method="POST",
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=15) as r:
                status, headers, raw = r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            status, headers, raw = e.code, e.headers, e.read()
        return status, {k.lower(): v for k, v in headers.items()}, json.loads(raw)

    def models(self, key: str) -> list[str]:
        """The ids GET /v1/models lists for a client key."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/v1/models",
                                     headers={"Authorization": f"Bearer {key}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200
            return [m["id"] for m in json.loads(r.read())["data"]]

    def reload(self) -> tuple[int, dict]:
        """POST /v1/reload with the admin key: status, JSON body."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/v1/reload", data=b"",
                                     method="POST",
                                     headers={"Authorization": f"Bearer {ADMIN}"})
        try:
            with urllib.request.urlopen(req, timeout=70) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def metrics(self) -> dict[str, float]:
        """The unlabelled samples of GET /metrics (admin key), by name."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/metrics",
                                     headers={"Authorization": f"Bearer {ADMIN}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200
            text = r.read().decode()
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#") and "{" not in line:
                name, _, value = line.partition(" ")
                samples[name] = float(value.split()[0])
        return samples

    def stop(self) -> None:
        """SIGINT, then SIGKILL after a timeout: only this gateway's own PID."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


@attrs.define
class Fleet:
    redis: redis_server.RedisServer
    ups: dict[str, FakeUpstream]
    vertex: FakeVertex
    conf: Path
    gateways: list[Gateway]
    slow: FakeVertex

    def __getitem__(self, i: int) -> Gateway:
        return self.gateways[i]

    def seen(self) -> dict[str, int]:
        return {name: len(up.seen) for name, up in self.ups.items()}

    def logs(self) -> str:
        return "\n".join(f"--- {g.module} :{g.port}\n{g.output()[-3000:]}" for g in self.gateways)


def start_gateway(module: str, conf: Path, redis_url: str, log: Path) -> Gateway:
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, "--config", str(conf), "--host", "127.0.0.1",
             "--port", str(port), "--redis-url", redis_url],
            stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "DISABLE_DATABASE": "true"})
    return Gateway(module, port, log, proc)


def wait_ready(gw: Gateway, deadline: float) -> None:
    """Serving, and its shared-state link up (the "connected" line is written once it is)."""
    while not (healthy(gw.port) and CONNECTED in gw.output()):
        assert gw.proc.poll() is None, f"{gw.module} exited:\n{gw.output()}"
        assert time.monotonic() < deadline, f"{gw.module} not ready:\n{gw.output()}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Iterator[Fleet]:
    why = redis_server.missing()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("scale-out")
    ups = {name: FakeUpstream(lambda seen, name=name: json_reply(answer(name)))
           for name in PROVIDERS}
    # a slow token endpoint, so that the first requests of all three instances overlap
    vertex = FakeVertex(token_delay=0.3)
    slow = FakeVertex(token_delay=2.0)  # another service account (its own token_uri)
    server = redis_server.start()
    gateways: list[Gateway] = []
    try:
        conf = tmp / "api.yaml"
        conf.write_text(config(ups, vertex, slow=slow))
        for i, module in enumerate(BACKENDS):
            gateways.append(start_gateway(module, conf, server.url, tmp / f"gw{i}.log"))
        deadline = time.monotonic() + 30
        for gw in gateways:
            wait_ready(gw, deadline)
        yield Fleet(server, ups, vertex, conf, gateways, slow)
    finally:
        for gw in gateways:
            gw.stop()
        server.stop()
        for up in ups.values():
            up.close()
        vertex.close()
        slow.close()


def spread(fleet: Fleet, n: int, key: str, model: str) -> list[tuple[int, dict, dict]]:
    """``n`` requests, one after another, to instance 0, 1, 2, 0, …"""
    return [fleet[i % 3].chat(key, model) for i in range(n)]


def assert_429(status: int, headers: dict[str, str], body: dict, code: str) -> None:
    assert status == 429, (status, body)
    assert int(headers["retry-after"]) >= 1, headers
    err = body["error"]
    assert err["code"] == code and err["type"] == "rate_limit_error", body
    assert isinstance(err["message"], str) and err["message"]


def test_client_key_rate_limit_is_the_fleets(fleet):
    """rate_limit 3/min: 9 requests across the three instances admit exactly 3, and the other
    6 are OpenAI-shaped 429s with Retry-After, none of them sent upstream."""
    got = spread(fleet, 9, "sk-scale-1", "m-s1")
    statuses = [s for s, _, _ in got]
    assert statuses.count(200) == 3 and statuses.count(429) == 6, (statuses, fleet.logs())
    assert statuses[:3] == [200, 200, 200], statuses  # one on each instance, then refused
    for status, headers, body in got:
        if status == 200:
            assert body["choices"][0]["message"]["content"] == "s1"
        else:
            assert_429(status, headers, body, "rate_limit_exceeded")
    assert len(fleet.ups["s1"].seen) == 3


def test_provider_key_rate_limit_is_the_fleets(fleet):
    """api_key_rate_limit 2/min on a provider with one key: 6 requests across the instances,
    exactly 2 reach the upstream (and succeed), the rest are 429 upstream_keys_rate_limited."""
    got = spread(fleet, 6, "sk-scale-2", "m-s2")
    statuses = [s for s, _, _ in got]
    assert statuses == [200, 200, 429, 429, 429, 429], (statuses, fleet.logs())
    for status, headers, body in got[2:]:
        assert_429(status, headers, body, "upstream_keys_rate_limited")
    assert len(fleet.ups["s2"].seen) == 2
    assert {seen.headers["authorization"] for seen in fleet.ups["s2"].seen} \
        == {"Bearer sk-upstream-s2"}


def test_channel_cooldown_is_the_fleets(fleet):
    """A channel that failed on one instance is cooled on all: provider s3a answers 500 once;
    instance 0 fails over to s3b; instances 1 and 2 go straight to s3b; after s3a's
    cooldown_period (3 s) s3a is first again, for any instance."""
    a, b = fleet.ups["s3a"], fleet.ups["s3b"]
    answers = iter([json_reply({"error": {"message": "boom", "type": "server_error",
                                          "code": None}}, status=500)])

    def first_fails(seen: Seen):
        return next(answers, None) or json_reply(answer("s3a"))

    a.handler = first_fails
    status, _, body = fleet[0].chat("sk-scale-3", "m-s3")
    assert status == 200 and body["choices"][0]["message"]["content"] == "s3b", body
    assert (len(a.seen), len(b.seen)) == (1, 1)
    cooled_at = time.monotonic()

    for gw in (fleet[1], fleet[2], fleet[1], fleet[2]):
        status, _, body = gw.chat("sk-scale-3", "m-s3")
        assert status == 200 and body["choices"][0]["message"]["content"] == "s3b", \
            (gw.module, body, fleet.logs())
    assert (len(a.seen), len(b.seen)) == (1, 5)  # s3a saw nothing new
    assert time.monotonic() - cooled_at < 3, "too slow to prove the cooldown"

    time.sleep(max(0.0, cooled_at + 3.5 - time.monotonic()))
    for gw in (fleet[2], fleet[1], fleet[0]):
        status, _, body = gw.chat("sk-scale-3", "m-s3")
        assert status == 200 and body["choices"][0]["message"]["content"] == "s3a", \
            (gw.module, body)
    assert (len(a.seen), len(b.seen)) == (4, 5)


def test_round_robin_position_is_the_fleets(fleet):
    """round_robin over three providers: 30 requests spread over the three instances land 10
    on each upstream, each one next in the rotation (no instance keeps its own cursor)."""
    names = ("s4a", "s4b", "s4c")
    got = spread(fleet, 30, "sk-scale-4", "m-s4")
    assert all(s == 200 for s, _, _ in got), [s for s, _, _ in got]
    served = [body["choices"][0]["message"]["content"] for _, _, body in got]
    assert {name: len(fleet.ups[name].seen) for name in names} \
        == {"s4a": 10, "s4b": 10, "s4c": 10}, served
    # the shared cursor moves one further per request, whichever instance takes it
    start = names.index(served[0])
    assert served == [names[(start + i) % 3] for i in range(30)], served


def test_vertex_token_is_fetched_once_for_the_fleet(fleet):
    """One Vertex service account, three processes: 6 concurrent first requests (2 on each
    instance, started together while the token POST takes 0.3 s) and 6 more one after another
    all succeed with the token, and Google's token endpoint saw ONE POST. Within a process the
    second request waits for the first one's fetch (that much holds on a single node too);
    across processes only the fleet's claim in Redis stops the other two from fetching. Without
    it each process makes its own POST: run with each gateway on its own Redis db (three
    fleets, every one "connected"), this test fails with token_posts == 3."""
    vertex = fleet.vertex
    barrier = threading.Barrier(6)
    got: list[tuple[int, int, float, float, dict]] = []  # instance, status, start, end, body
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            barrier.wait(10)
            start = time.monotonic()
            status, _, body = fleet[i].chat("sk-scale-6", "m-v6")
            got.append((i, status, start, time.monotonic(), body))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i % 3,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and len(got) == 6, (errors, got, fleet.logs())
    assert [s for _, s, _, _, _ in got] == [200] * 6, (got, fleet.logs())
    # the six overlapped: all were sent before the first answer could exist (the token alone
    # takes 0.3 s), so every instance had to get its first token while another one was fetching
    assert max(start for _, _, start, _, _ in got) < min(end for _, _, _, end, _ in got), got
    for _, _, _, _, body in got:
        assert body["choices"][0]["message"]["content"] \
            == "Hello! How can I help you today? 😊", body

    later = spread(fleet, 6, "sk-scale-6", "m-v6")
    assert [s for s, _, _ in later] == [200] * 6, later
    assert vertex.problems == []  # every JWT was right, every model call carried the token
    assert vertex.token_posts == 1, (vertex.token_posts, fleet.logs())
    assert len([s for s in vertex.up.seen if s.path != "/token"]) == 12


def test_a_client_gone_during_the_fleets_token_fetch_frees_the_claim(fleet):
    """Instance 0 claims the fleet's fetch of a token that takes 2 s, and its client leaves
    after 0.5 s: the claim is freed at once (not after its 30 s), so a request on instance 1
    fetches the token itself and is answered in about the fetch's time."""
    body = json.dumps({"model": "m-v8", "messages": [{"role": "user", "content": "hi"}]})
    with socket.create_connection(("127.0.0.1", fleet[0].port), timeout=5) as sock:
        sock.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                      f"Authorization: Bearer sk-scale-8\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
        time.sleep(0.5)  # the claim is made and the token POST is under way: leave
    time.sleep(0.2)
    start = time.monotonic()
    status, _, answer_ = fleet[1].chat("sk-scale-8", "m-v8")
    took = time.monotonic() - start
    assert status == 200, (answer_, fleet.logs())
    assert took < 6, (took, fleet.logs())  # a held claim would make it wait about 30 s
    assert fleet.slow.token_posts == 2  # the one given up on, and instance 1's own


def test_a_reload_on_one_instance_is_followed_by_all(fleet):
    """The config file gains model m-s7b (same client keys: same fleet); POST /v1/reload to
    instance 0 alone. Within 2.5 s instances 1 and 2 list m-s7b and serve it (they poll the
    fleet's reload counter every 0.5 s), each having reloaded exactly once: a follower's
    reload is not announced again (no reload ping-pong)."""
    key = "sk-scale-7"
    for gw in fleet.gateways:
        assert gw.models(key) == ["m-s7a"], gw.module
    status, _, body = fleet[1].chat(key, "m-s7b")
    assert status == 404, (status, body)  # not a model of this key yet
    reloads_before = [gw.output().count("reloaded the config from") for gw in fleet.gateways]

    fleet.conf.write_text(config(fleet.ups, fleet.vertex, reloaded=True, slow=fleet.slow))
    status, body = fleet[0].reload()
    assert (status, body) == (200, {"status": "reloaded"}), (status, body, fleet.logs())
    reloaded_at = time.monotonic()
    assert sorted(fleet[0].models(key)) == ["m-s7a", "m-s7b"]  # its own reload is done

    pending = {1: 0.0, 2: 0.0}  # instance -> seconds until it listed m-s7b
    while True:
        for i in [i for i, t in pending.items() if not t]:
            if "m-s7b" in fleet[i].models(key):
                pending[i] = time.monotonic() - reloaded_at
        if all(pending.values()) or time.monotonic() - reloaded_at > 3.5:
            break
        time.sleep(0.05)
    assert all(pending.values()), (pending, fleet.logs())
    assert max(pending.values()) < 2.5, (pending, fleet.logs())
    for i in (1, 2, 0):
        status, _, body = fleet[i].chat(key, "m-s7b")
        assert status == 200 and body["choices"][0]["message"]["content"] == "s7", \
            (fleet[i].module, status, body)
    assert len(fleet.ups["s7"].seen) == 3

    time.sleep(1.2)  # more than two polls: a follower that announced its reload would show
    for gw, before in zip(fleet.gateways, reloads_before):
        assert gw.output().count("reloaded the config from") == before + 1, \
            (gw.module, gw.output())


def test_redis_outage_degrades_then_sharing_resumes(fleet):
    """Redis stopped: every request is still answered (never a 5xx), each instance's /metrics
    says degraded with fallbacks counted, and the log says "unreachable" once per change, not
    per request. Redis restarted on the same port: each instance reconnects, the gauge goes
    back to 0, and a fresh rate_limit 2/min key admits exactly 2 of 6 across the fleet."""
    before = fleet.seen()
    fleet.redis.stop()
    try:
        got = spread(fleet, 20, "sk-scale-5", "m-s5")
        assert [s for s, _, _ in got] == [200] * 20, ([s for s, _, _ in got], fleet.logs())
        assert len(fleet.ups["s5"].seen) - before["s5"] == 20
        for gw in fleet.gateways:  # every instance served ~7 of them after the stop
            m = gw.metrics()
            assert m["uniapi_shared_state_degraded"] == 1, (gw.module, m)
            assert m["uniapi_shared_state_fallbacks_total"] > 0, (gw.module, m)
            out = gw.output()
            assert 1 <= out.count(UNREACHABLE) <= 2, (gw.module, out)  # per change, not request
        fallbacks = [gw.metrics()["uniapi_shared_state_fallbacks_total"]
                     for gw in fleet.gateways]
    finally:
        fleet.redis.restart()

    deadline = time.monotonic() + 5
    pending = list(fleet.gateways)
    while pending:
        gw = pending[0]
        status, _, _ = gw.chat("sk-scale-5", "m-s5")
        assert status == 200
        if gw.metrics()["uniapi_shared_state_degraded"] == 0:
            pending.pop(0)
            continue
        assert time.monotonic() < deadline, (gw.module, gw.metrics(), fleet.logs())
        time.sleep(0.1)
    for gw, before_restart in zip(fleet.gateways, fallbacks):
        out = gw.output()
        assert out.count(CONNECTED) == 2, (gw.module, out)  # at start, and after the restart
        assert 1 <= out.count(UNREACHABLE) <= 2, (gw.module, out)
        # a counter: never goes down
        assert gw.metrics()["uniapi_shared_state_fallbacks_total"] >= before_restart

    seen5 = len(fleet.ups["s5"].seen)
    got = spread(fleet, 6, "sk-scale-5b", "m-s5")
    statuses = [s for s, _, _ in got]
    assert statuses == [200, 200, 429, 429, 429, 429], (statuses, fleet.logs())
    for status, headers, body in got[2:]:
        assert_429(status, headers, body, "rate_limit_exceeded")
    assert len(fleet.ups["s5"].seen) - seen5 == 2
    # nothing else in the fleet's upstreams moved during this scenario
    after = fleet.seen()
    assert {k: v for k, v in after.items() if k != "s5"} \
        == {k: v for k, v in before.items() if k != "s5"}
