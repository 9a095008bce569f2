"""The shared decisions (redis/script.py, routing/shared.py) against a real redis-server.

One definition of the semantics: the single-node objects (``Limiter``, ``Router`` with its
``Scheduler``, ``Cooldowns`` and ``KeyPools``) are the reference, and hypothesis runs the same
random operations through them and through the Redis script, comparing every verdict. Then
the fleet property: instances with skewed clocks, interleaved at random, never admit more than
a window's count in any interval of its length.
"""

from __future__ import annotations

import os
import random
import socket
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes import redis_server
from uniapi_core.config import load_config
from uniapi_core.config.model import RateRule
from uniapi_core.errors import UpstreamError
from uniapi_core.ratelimit.limiter import Admitted, Limiter
from uniapi_core.redis.resp import RespError, RespParser, encode_command
from uniapi_core.redis.script import SHA, SOURCE
from uniapi_core.routing.plan import Attempt, Consult
from uniapi_core.routing.resolve import Catalog, Channel
from uniapi_core.routing.retry import verdict
from uniapi_core.routing.router import Need, Router
from uniapi_core.routing.shared import ReloadFollower, SharedState, windows
from uniapi_core.vendors import detect_engine


class Client:
    """A blocking RESP client: enough for tests (the gateway's link is redis/link.py)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.parser = RespParser()
        self.pending: list = []

    def call(self, *args: str | bytes | int) -> object:
        self.sock.sendall(encode_command(*args))
        while not self.pending:
            data = self.sock.recv(65536)
            assert data, "redis closed the connection"
            self.pending.extend(self.parser.feed(data))
        return self.pending.pop(0)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def redis():
    why = redis_server.missing()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    server = redis_server.start()
    client = Client(server.port)
    assert client.call("SCRIPT", "LOAD", SOURCE) == SHA.encode()
    try:
        yield client
    finally:
        client.close()
        server.stop()


def fresh(client: Client) -> SharedState:
    """A fleet of its own (a new prefix), deciding on the test's clock."""
    return SharedState(fleet=f"t{uuid.uuid4().hex}", own_clock=True)  # hypothesis seeds random


def run(client: Client, command: tuple[str, ...]) -> list:
    return [client.call(*command)]


# -- the limiter ----------------------------------------------------------------------------

RULES = [RateRule(count=2, period=10.0, text="2/10s"), RateRule(count=3, period=60.0, text="3/min"),
         RateRule(count=1, period=1.5, text="1/1.5s")]

ops = st.lists(st.tuples(st.sampled_from(["a", "b"]),
                         st.lists(st.sampled_from(range(len(RULES))), min_size=1, max_size=3,
                                  unique=True),
                         st.one_of(st.floats(0, 4), st.just(0.0), st.floats(-2, 0))),
               min_size=1, max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops)
def test_the_script_admits_exactly_as_the_limiter(redis, steps):
    shared, local, now = fresh(redis), Limiter(), 1000.0
    for subject, which, step in steps:
        now += step
        rules = [RULES[i] for i in which]
        expected = local.admit(subject, rules, now)
        got = shared.answer(run(redis, shared.command(
            "admit", {"lim": windows(subject, rules)}, now)))
        assert got is not None
        if isinstance(expected, Admitted):
            assert got == {}, (subject, rules, now)
        else:
            assert got == {"rl": expected.retry_after, "wi": rules.index(expected.window)}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 2), st.floats(0, 3)), min_size=1, max_size=60),
       st.lists(st.floats(-5, 5), min_size=3, max_size=3))
def test_instances_with_skewed_clocks_never_admit_more_than_the_limit(redis, steps, skews):
    """Three instances, each on its own clock, interleaved at random: in the fleet's time
    (the latest clock seen, which the script keeps), no interval of a window's length ever
    holds more admissions than its count."""
    shared, rules = fresh(redis), [RULES[0], RULES[2]]
    base, fleet, admitted = 1000.0, -1e18, []
    for instance, step in steps:
        base += step
        now = base + skews[instance]
        got = shared.answer(run(redis, shared.command("admit",
                                                      {"lim": windows("k", rules)}, now)))
        fleet = max(fleet, now)
        if got == {}:
            admitted.append(fleet)
    for rule in rules:
        for i, t in enumerate(admitted):
            inside = [u for u in admitted[i:] if u < t + rule.period]
            assert len(inside) <= rule.count, (rule, admitted)


# -- the router -----------------------------------------------------------------------------

CONFIG = """
providers:
  - provider: a
    base_url: https://a.example/v1/chat/completions
    api: [ka0, ka1, ka2]
    model: [m]
    preferences:
      api_key_rate_limit: 2/min
      api_key_cooldown_period: 30
      cooldown_period: 20
  - provider: b
    base_url: https://b.example/v1/chat/completions
    api: kb0
    model: [m]
    preferences:
      cooldown_period: 15
  - provider: c
    base_url: https://c.example/v1/chat/completions
    api: [kc0, kc1]
    model: [m]
    preferences:
      api_key_schedule_algorithm: fixed_priority
      api_key_rate_limit: 3/min
api_keys:
  - api: sk-rr
    model: [a/m, b/m, c/m]
    preferences:
      SCHEDULING_ALGORITHM: round_robin
      rate_limit: 10/min
      AUTO_RETRY: 3
  - api: sk-wrr
    model: [{a/m: 3}, {b/m: 1}, {c/m: 2}]
    preferences:
      SCHEDULING_ALGORITHM: weighted_round_robin
  - api: sk-fixed
    model: [a/m, b/m, c/m]
    preferences:
      AUTO_RETRY: 2
"""


def _build(channel: Channel, key_index: int | None, number: int) -> Attempt:
    return Attempt(number=number, provider=channel.provider.provider,
                   upstream_model=channel.upstream_model, key_index=key_index,
                   exchange=None, timeout=1.0)  # type: ignore[arg-type]


def _request(router: Router, key, now: float, fail: dict, redis: Client | None) -> list:
    """One request as the relay runs it: its attempts, and how it ended."""
    try:
        plan = router.plan(key, key.api, "m", Need(), now, random.Random(0), _build)
    except Exception as exc:  # the local key limit refuses at plan time
        return [("refused", getattr(exc, "status", None))]
    out: list = []
    failure = None
    result = plan.next_attempt(now, None)
    while True:
        while isinstance(result, Consult):
            assert redis is not None
            result = plan.resume(run(redis, result.command), now)
        if result is None:
            if not out or failure is None:
                out.append(("refused", plan.refusal().status))
            return out
        status = fail.get(result.provider)
        out.append((result.provider, result.key_index, status))
        failure = None if status is None else UpstreamError("x", upstream_status=status)
        for command in plan.attempt_finished(result, now, failure):
            assert redis is not None
            run(redis, command)
        if failure is None or not verdict(failure).retry:
            return out
        result = plan.next_attempt(now, failure)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 2), st.floats(0, 8),
                          st.dictionaries(st.sampled_from("abc"),
                                          st.sampled_from([429, 500, 401, 400]), max_size=2)),
                min_size=1, max_size=30))
def test_shared_routing_decides_as_one_router(redis, requests):
    """The same requests and failures through a single-node router and a shared one give the
    same attempts (channel and key), refusals, cooldowns and benches."""
    config = load_config(CONFIG).config
    local = Router(config, Catalog(config), detect_engine)
    shared = Router(config, Catalog(config), detect_engine)
    shared.shared = fresh(redis)
    now = 5000.0
    for which, step, fail in requests:
        now += step
        key = config.api_keys[which]
        assert _request(shared, key, now, fail, redis) == _request(local, key, now, fail, None)
    assert shared.shared.fallbacks == 0


def test_no_answer_decides_on_the_process_state(redis):
    """Redis away (no replies): the request is routed on this process's state, and the
    fallback is counted."""
    config = load_config(CONFIG).config
    router = Router(config, Catalog(config), detect_engine)
    router.shared = fresh(redis)
    plan = router.plan(config.api_keys[2], "sk-fixed", "m", Need(), 1.0, random.Random(0),
                       _build)
    consult = plan.next_attempt(1.0, None)
    assert isinstance(consult, Consult)
    attempt = plan.resume(None, 1.0)
    assert isinstance(attempt, Attempt) and attempt.provider == "a"
    assert router.shared.degraded and router.shared.fallbacks == 1
    plan.attempt_finished(attempt, 1.0, None)
    plan = router.plan(config.api_keys[2], "sk-fixed", "m", Need(), 2.0, random.Random(0),
                       _build)
    attempt = plan.resume(run(redis, plan.next_attempt(2.0, None).command), 2.0)
    assert isinstance(attempt, Attempt) and not router.shared.degraded


def test_an_error_reply_such_as_noscript_falls_back(redis):
    shared = fresh(redis)
    assert shared.answer([redis.call("EVALSHA", "0" * 40, "0")]) is None
    assert shared.degraded and shared.fallbacks == 1
    assert shared.answer([b"not json"]) is None and shared.fallbacks == 2
    assert shared.answer([b"{}"]) == {} and not shared.degraded


# -- the fleet's reloads ---------------------------------------------------------------------

class _Gw:
    """What ReloadFollower reads of a gateway: its router's shared state."""

    def __init__(self, fleet: str | None) -> None:
        self.router = type("R", (), {"shared": None if fleet is None
                                     else SharedState(fleet=fleet),
                                     "resync": lambda self, now: None})()


def test_a_reload_elsewhere_is_followed_and_one_here_is_announced():
    follower = ReloadFollower()
    gw = _Gw("f1")
    assert follower.ask(gw, 0.0) == (("GET", "uniapi:f1:reload"),)
    assert follower.told([None]) is False  # the first look only reads the generation
    assert follower.ask(gw, 0.0) == (("GET", "uniapi:f1:reload"),)
    assert follower.told([b"0"]) is False
    assert follower.ask(gw, 0.0) is not None and follower.told([b"1"]) is True  # a reload
    follower.followed(gw2 := _Gw("f1"))  # this process followed: nothing to announce
    assert follower.ask(gw2, 0.0) == (("GET", "uniapi:f1:reload"),)
    assert follower.told([b"1"]) is False
    gw3 = _Gw("f2")  # reloaded here (SIGHUP) with other client keys: announced under both names
    assert follower.ask(gw3, 0.0) == (("INCR", "uniapi:f2:reload"), ("INCR", "uniapi:f1:reload"))
    assert follower.told([1, 2]) is False
    assert follower.ask(gw3, 0.0) == (("GET", "uniapi:f2:reload"),)
    assert follower.told([b"1"]) is False
    assert follower.ask(gw3, 0.0) is not None and follower.told([b"0"]) is False  # restarted
    assert follower.ask(gw3, 0.0) is not None and follower.told([RespError("ERR x")]) is False
    assert follower.ask(gw3, 0.0) is not None and follower.told(None) is False  # no answer
    assert follower.ask(_Gw(None), 0.0) is None  # no shared state: nothing to look at


def test_the_reload_look_says_whether_redis_answers():
    """Between requests, the degraded gauge follows the reload follower's looks."""
    follower, gw = ReloadFollower(), _Gw("f3")
    shared = gw.router.shared
    follower.ask(gw, 0.0)
    follower.told(None)
    assert shared.degraded and shared.fallbacks == 0  # a look is not a decision
    follower.ask(gw, 0.0)
    follower.told([b"4"])
    assert not shared.degraded
    follower.ask(gw, 0.0)
    follower.told([RespError("LOADING Redis is loading the dataset in memory")])
    assert shared.degraded


def test_once_redis_is_back_what_was_decided_alone_is_told(redis):
    """Cooldowns and benches recorded while deciding alone reach the fleet on the first look
    after Redis answers again (the resync), and the other instances then skip that channel."""
    config = load_config(CONFIG).config
    alone = Router(config, Catalog(config), detect_engine)
    alone.shared = fresh(redis)
    plan = alone.plan(config.api_keys[2], "sk-fixed", "m", Need(), 100.0, random.Random(0),
                      _build)
    attempt = plan.resume(None, 100.0)  # Redis away: decided here
    assert attempt.provider == "a"
    assert plan.attempt_finished(attempt, 100.0, UpstreamError("x", upstream_status=500))
    gw = type("G", (), {"router": alone})()
    follower = ReloadFollower()
    assert follower.ask(gw, 100.0) == (("GET", alone.shared.prefix + "reload"),)
    follower.told([b"0"])  # Redis answers again: the next look carries the resync
    commands = follower.ask(gw, 101.0)
    assert len(commands) == 2 and commands[1][3] == "note"
    for command in commands:
        redis.call(*command)
    other = Router(config, Catalog(config), detect_engine)  # another instance, same fleet
    other.shared = alone.shared
    plan = other.plan(config.api_keys[2], "sk-fixed", "m", Need(), 102.0, random.Random(0),
                      _build)
    first = plan.resume(run(redis, plan.next_attempt(102.0, None).command), 102.0)
    assert first.provider == "b"  # a is cooling for the fleet now
    assert follower.ask(gw, 103.0) == (("GET", alone.shared.prefix + "reload"),)  # told once
