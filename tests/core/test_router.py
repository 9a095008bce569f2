"""The router on real configs: the seed's examples, and properties over clocks and seeds."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uniapi_core.config import load_config
from uniapi_core.errors import ClientError, UpstreamError
from uniapi_core.routing.plan import Attempt
from uniapi_core.routing.resolve import Catalog, Channel
from uniapi_core.routing.retry import verdict
from uniapi_core.routing.router import Need, Router
from uniapi_core.vendors import detect_engine

SEED = load_config((Path(__file__).resolve().parent.parent / "data" /
                    "seed-advanced.yaml").read_text()).config
ANY = Need()


def router(config) -> Router:
    return Router(config, Catalog(config), detect_engine)


def build(channel: Channel, key_index: int | None, number: int) -> Attempt:
    return Attempt(number=number, provider=channel.provider.provider,
                   upstream_model=channel.upstream_model, key_index=key_index,
                   exchange=None, timeout=1.0)  # type: ignore[arg-type]


def attempts(r: Router, key, model: str, now: float = 0.0, rng=None, fail=None, need=ANY):
    """Run one request through a plan: ``fail(attempt)`` returns an UpstreamError or None."""
    plan = r.plan(key, key.api, model, need, now, rng or random.Random(0), build)
    out, failure = [], None
    while (a := plan.next_attempt(now, failure)) is not None:
        out.append((a.provider, a.upstream_model, a.key_index))
        failure = fail(a) if fail else None
        plan.attempt_finished(a, now, failure)
        if failure is None or not verdict(failure).retry:  # as the relay decides
            break
    return out, plan


def names(result):
    return [(p, m) for p, m, _ in result[0]]


def test_seed_key1_bare_names_take_every_provider():
    r = router(SEED)
    k1 = SEED.api_keys[0]
    fail_all = lambda a: UpstreamError("x", upstream_status=500)  # noqa: E731
    assert names(attempts(r, k1, "gpt-4o", fail=fail_all)) == [
        ("provider_name", "gpt-4o"), ("azure", "gpt-4o")]
    r = router(SEED)
    assert names(attempts(r, k1, "claude-3-5-sonnet", fail=fail_all)) == [
        ("provider_name", "claude-3-5-sonnet-20240620"), ("vertex", "claude-3-5-sonnet@20240620")]


def test_seed_key1_provider_star_is_only_that_provider():
    r = router(SEED)
    k1 = SEED.api_keys[0]
    fail_all = lambda a: UpstreamError("x", upstream_status=500)  # noqa: E731
    assert names(attempts(r, k1, "gemini-1.5-pro", fail=fail_all)) == [("gemini", "gemini-1.5-pro")]
    assert names(attempts(r, k1, "gemini-1.5-pro-search")) == [("gemini", "gemini-1.5-pro")]
    assert names(attempts(r, k1, "gemini-1.5-flash")) == [("gemini", "gemini-1.5-flash-exp-0827")]
    assert names(attempts(r, k1, "gemini-1.5-flash-exp-0827")) == [
        ("gemini", "gemini-1.5-flash-exp-0827")]


def test_seed_key2_slash_versus_angle_brackets():
    r = router(SEED)
    k2 = SEED.api_keys[1]
    assert names(attempts(r, k2, "anthropic/claude-3-5-sonnet")) == [
        ("other-provider", "anthropic/claude-3-5-sonnet")]
    with pytest.raises(ClientError) as exc:
        attempts(r, k2, "claude-3-5-sonnet")  # the anthropic provider does not expose it
    assert exc.value.status == 404


def test_weighted_round_robin_gives_5_3_2_of_10():
    conf = load_config("""
providers:
  - {provider: gcp1, base_url: "http://a/v1/chat/completions", api: k, model: [m]}
  - {provider: gcp2, base_url: "http://b/v1/chat/completions", api: k, model: [m]}
  - {provider: gcp3, base_url: "http://c/v1/chat/completions", api: k, model: [m]}
api_keys:
  - api: sk-w
    model: [{gcp1/*: 5}, {gcp2/*: 3}, {gcp3/*: 2}]
    preferences: {SCHEDULING_ALGORITHM: weighted_round_robin}
""").config
    r = router(conf)
    firsts = [attempts(r, conf.api_keys[0], "m")[0][0][0] for _ in range(20)]
    assert Counter(firsts[:10]) == Counter(firsts[10:]) == {"gcp1": 5, "gcp2": 3, "gcp3": 2}
    assert firsts[:5] != ["gcp1"] * 5


def test_tools_false_channel_is_skipped_and_said_so():
    conf = load_config("""
providers:
  - {provider: a, base_url: "http://a/v1/chat/completions", api: k, model: [m], tools: false}
  - {provider: b, base_url: "http://b/v1/chat/completions", api: k, model: [m]}
api_keys:
  - api: sk-t
""").config
    r = router(conf)
    got, plan = attempts(r, conf.api_keys[0], "m", need=Need(tools=True))
    assert [p for p, _, _ in got] == ["b"]
    assert any(d.verdict == "skipped" and "tools" in d.detail for d in plan.explained)
    with pytest.raises(ClientError) as exc:
        attempts(router(load_config(
            "providers:\n  - {provider: a, base_url: 'http://a/v1/chat/completions', api: k, "
            "model: [m], tools: false}\napi_keys:\n  - api: sk-t\n").config),
            conf.api_keys[0], "m", need=Need(tools=True))
    assert exc.value.status == 404 and "tools" in exc.value.message


def test_all_cooling_are_still_tried_soonest_end_first():
    conf = load_config("""
providers:
  - {provider: a, base_url: "http://a/v1/chat/completions", api: k, model: [m]}
  - {provider: b, base_url: "http://b/v1/chat/completions", api: k, model: [m]}
  - {provider: c, base_url: "http://c/v1/chat/completions", api: k, model: [m]}
api_keys:
  - api: sk-t
preferences: {cooldown_period: 100}
""").config
    r = router(conf)
    r.cooldowns.cool("a", "m", 0.0, 100)
    r.cooldowns.cool("b", "m", 0.0, 50)
    got = attempts(r, conf.api_keys[0], "m", now=10.0)
    assert got[0][0][0] == "c"  # available first
    r.cooldowns.cool("c", "m", 10.0, 100)
    fail_all = lambda a: UpstreamError("x", upstream_status=503)  # noqa: E731
    got = attempts(r, conf.api_keys[0], "m", now=20.0, fail=fail_all)
    assert [p for p, _, _ in got[0]] == ["b", "a", "c"]  # never refused, soonest end first


def test_cooldown_excludes_for_exactly_its_period():
    conf = load_config("""
providers:
  - {provider: a, base_url: "http://a/v1/chat/completions", api: k, model: [m]}
  - {provider: b, base_url: "http://b/v1/chat/completions", api: k, model: [m]}
api_keys:
  - api: sk-t
preferences: {cooldown_period: 30}
""").config
    r = router(conf)
    first_fails = lambda a: UpstreamError("x", upstream_status=500) if a.provider == "a" else None  # noqa: E731,E501
    attempts(r, conf.api_keys[0], "m", now=100.0, fail=first_fails)
    assert attempts(r, conf.api_keys[0], "m", now=129.9)[0][0][0] == "b"
    assert attempts(r, conf.api_keys[0], "m", now=130.0)[0][0][0] == "a"


def test_key_rate_limit_refuses_with_retry_after():
    conf = load_config("""
providers:
  - {provider: a, base_url: "http://a/v1/chat/completions", api: k, model: [m, n]}
api_keys:
  - api: sk-t
    preferences:
      rate_limit: {m: 1/min, default: 2/min}
""").config
    r = router(conf)
    key = conf.api_keys[0]
    attempts(r, key, "m", now=0.0)
    with pytest.raises(ClientError) as exc:
        attempts(r, key, "m", now=10.0)
    assert exc.value.status == 429 and ("retry-after", "50") in exc.value.headers
    attempts(r, key, "n", now=10.0)
    attempts(r, key, "n", now=11.0)  # default applies per model: n has its own 2/min
    with pytest.raises(ClientError):
        attempts(r, key, "n", now=12.0)


def _config(n_channels: int, keys_per: list[int], auto_retry, algorithm: str):
    providers = "".join(
        f"  - {{provider: p{i}, base_url: 'http://h{i}/v1/chat/completions', "
        f"api: [{', '.join(f'k{i}{j}' for j in range(keys_per[i]))}], model: [m]}}\n"
        for i in range(n_channels))
    retry = str(auto_retry).lower()
    return load_config(f"providers:\n{providers}api_keys:\n  - api: sk-p\n    preferences: "
                       f"{{AUTO_RETRY: {retry}, SCHEDULING_ALGORITHM: {algorithm}}}\n"
                       f"preferences: {{cooldown_period: 0}}\n").config


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 5), keys=st.lists(st.integers(1, 3), min_size=5, max_size=5),
       auto_retry=st.sampled_from([True, False, 0, 1, 2, 5]),
       algorithm=st.sampled_from(["fixed_priority", "round_robin", "weighted_round_robin",
                                  "lottery", "random"]),
       statuses=st.lists(st.sampled_from([500, 429, 401, 400, 200]), min_size=1, max_size=20),
       seed=st.integers(0, 1000))
def test_attempts_within_budget_and_no_channel_repeats(n, keys, auto_retry, algorithm,
                                                       statuses, seed):
    conf = _config(n, keys, auto_retry, algorithm)
    budget = 10 if auto_retry is True else 1 if auto_retry is False else 1 + auto_retry
    script = itertools.cycle(statuses)

    def fail(a):
        s = next(script)
        return None if s == 200 else UpstreamError("x", upstream_status=s)

    r = router(conf)
    for _ in range(3):
        got, _ = attempts(r, conf.api_keys[0], "m", rng=random.Random(seed), fail=fail)
        assert 1 <= len(got) <= budget
        blocks = [p for i, (p, _, _) in enumerate(got) if i == 0 or got[i - 1][0] != p]
        assert len(blocks) == len(set(blocks))  # a channel is never revisited
        for p in set(blocks):  # within a channel, keys are not repeated
            ks = [k for q, _, k in got if q == p]
            assert len(ks) == len(set(ks))


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 10_000),
       times=st.lists(st.floats(0, 1000, allow_nan=False), min_size=1, max_size=15),
       algorithm=st.sampled_from(["round_robin", "weighted_round_robin", "lottery", "random"]))
def test_same_clock_and_seed_same_decisions(seed, times, algorithm):
    conf = _config(4, [2, 1, 3, 1, 1], True, algorithm)

    def run():
        r, rng = router(conf), random.Random(seed)
        fail = lambda a: UpstreamError("x", upstream_status=503) if a.number % 2 else None  # noqa: E731,E501
        return [attempts(r, conf.api_keys[0], "m", now=t, rng=rng, fail=fail)[0]
                for t in sorted(times)]

    assert run() == run()


TWO_KEYS = load_config("""\
providers:
  - {provider: a, base_url: 'http://a/v1/chat/completions', api: [ka0, ka1], model: [m]}
  - {provider: b, base_url: 'http://b/v1/chat/completions', api: [kb0], model: [m]}
api_keys:
  - api: sk-p
preferences: {cooldown_period: 100}
""").config


@pytest.mark.parametrize("error, tried, cooled", [
    # the key's fault: the channel's next key; the channel cools once no key is left
    (UpstreamError("x", upstream_status=401), [("a", 0), ("a", 1), ("b", 0)], True),
    (UpstreamError("x", upstream_status=429), [("a", 0), ("a", 1), ("b", 0)], True),
    (UpstreamError("x", kind="decode", upstream_status=429), [("a", 0), ("a", 1), ("b", 0)],
     True),
    # the channel's: the next channel, this one cooled
    (UpstreamError("x", upstream_status=503), [("a", 0), ("b", 0)], True),
    (UpstreamError("x", kind="timeout", status=504), [("a", 0), ("b", 0)], True),
    (UpstreamError("x", upstream_status=409), [("a", 0), ("b", 0)], True),
    # the request's: answered at once, nothing cooled
    (UpstreamError("x", upstream_status=400), [("a", 0)], False),
    (UpstreamError("x", upstream_status=422), [("a", 0)], False),
    # not retried, yet the channel cools (routing/retry.py, KIND_ROWS)
    (UpstreamError("x", kind="head_too_large"), [("a", 0)], True),
])
def test_the_retry_table_decides_next_key_next_channel_and_cooling(error, tried, cooled):
    r = router(TWO_KEYS)
    got, _ = attempts(r, TWO_KEYS.api_keys[0], "m",
                      fail=lambda a: error if a.provider == "a" else None)
    assert [(p, k) for p, _, k in got] == tried
    assert (r.cooldowns.until("a", "m", 0.0) is not None) is cooled
    assert r.cooldowns.until("b", "m", 0.0) is None


def test_a_key_failure_with_a_key_left_does_not_cool_the_channel():
    r = router(TWO_KEYS)
    got, _ = attempts(r, TWO_KEYS.api_keys[0], "m",
                      fail=lambda a: UpstreamError("x", upstream_status=429)
                      if a.key_index == 0 else None)
    assert [(p, k) for p, _, k in got] == [("a", 0), ("a", 1)]
    assert r.cooldowns.until("a", "m", 0.0) is None


def test_a_key_fault_on_a_channel_without_keys_moves_to_the_next_channel():
    """A 429 blames the key; a channel with no ``api`` keys (AWS credentials) has no other key
    to try, so the next channel is tried, not the same one until the budget is spent."""
    config = load_config("""
providers:
  - provider: aws
    base_url: https://bedrock-runtime.us-east-1.amazonaws.com
    aws_access_key: AKIAEXAMPLE
    aws_secret_key: secret
    model: [m]
  - {provider: b, base_url: "https://b.example/v1/chat/completions", api: kb, model: [m]}
api_keys:
  - api: sk-k
    model: [aws/m, b/m]
""").config
    key = config.api_keys[0]
    got, _ = attempts(router(config), key, "m",
                      fail=lambda a: UpstreamError("slow down", upstream_status=429)
                      if a.provider == "aws" else None)
    assert [(p, k) for p, _, k in got] == [("aws", None), ("b", 0)]
