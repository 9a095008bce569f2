"""Provider-key pools (docs/routing.md §6, §3)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uniapi_core.config.model import Provider, ProviderPreferences, RateLimit, RateRule
from uniapi_core.routing.keypool import KeyPick, KeyPools

RNG = random.Random(0)


def per_min(n: int) -> tuple[RateRule, ...]:
    return (RateRule(count=n, period=60.0, text=f"{n}/min"),)


def provider(nkeys=3, *, algo=None, limit=None, bench=None, name="p") -> Provider:
    return Provider(provider=name, api=tuple(f"sk-{name}-{i}" for i in range(nkeys)),
                    preferences=ProviderPreferences(api_key_schedule_algorithm=algo,
                                                    api_key_rate_limit=limit,
                                                    api_key_cooldown_period=bench))


def picks(pools, prov, count, model="m", now=0.0, rng=RNG):
    return [pools.pick(prov, model, now, rng).index for _ in range(count)]


# -- KeyPick -----------------------------------------------------------------------------------

def test_keypick_shapes():
    assert KeyPick(2).usable and KeyPick(2).retry_after is None
    assert not KeyPick(None, 30).usable and not KeyPick(None).usable
    keyless = KeyPick(None, None, usable=True)
    assert keyless.usable and keyless.index is None
    with pytest.raises(ValueError):
        KeyPick(1, usable=False)
    with pytest.raises(ValueError):
        KeyPick(None, 5, usable=True)


# -- schedule ----------------------------------------------------------------------------------

def test_round_robin_is_the_default_and_rotates():
    pools = KeyPools()
    assert picks(pools, provider(3), 7) == [0, 1, 2, 0, 1, 2, 0]


def test_round_robin_cursor_is_shared_by_models():
    pools, p = KeyPools(), provider(3, algo="round_robin")
    assert pools.pick(p, "a", 0.0, RNG).index == 0
    assert pools.pick(p, "b", 0.0, RNG).index == 1
    assert pools.pick(p, "a", 0.0, RNG).index == 2


def test_fixed_priority_always_key_0_while_usable():
    pools, p = KeyPools(), provider(3, algo="fixed_priority", bench=60.0)
    assert picks(pools, p, 5) == [0] * 5
    pools.record_failure(p, 0, 429, 10.0)
    assert picks(pools, p, 2, now=10.0) == [1, 1]
    assert picks(pools, p, 1, now=70.0) == [0]


def test_random_is_a_uniform_pick_from_the_rng():
    pools, p = KeyPools(), provider(4, algo="random")
    counts = Counter(picks(pools, p, 8000, rng=random.Random(5)))
    assert set(counts) == {0, 1, 2, 3}
    assert all(abs(c / 8000 - 0.25) < 0.03 for c in counts.values())
    again = KeyPools()
    assert picks(again, p, 50, rng=random.Random(9)) == picks(KeyPools(), p, 50,
                                                            rng=random.Random(9))


def test_unknown_key_algorithm_is_refused():
    with pytest.raises(ValueError, match="smart_round_robin"):
        KeyPools().pick(provider(2, algo="smart_round_robin"), "m", 0.0, RNG)


def test_exclude_skips_keys_already_tried():
    pools, p = KeyPools(), provider(3, algo="fixed_priority")
    assert pools.pick(p, "m", 0.0, RNG, exclude={0}).index == 1
    assert pools.pick(p, "m", 0.0, RNG, exclude=(0, 1)).index == 2
    assert pools.pick(p, "m", 0.0, RNG, exclude={0, 1, 2}) == KeyPick(None, None)


def test_provider_without_keys_is_usable_without_one():
    pools, p = KeyPools(), provider(0)
    assert pools.pick(p, "m", 0.0, RNG) == KeyPick(None, None, usable=True)
    pools.record_failure(p, None, 429, 0.0)  # nothing to bench
    assert pools.pick(p, "m", 0.0, RNG).usable


def test_provider_without_keys_still_honours_its_rate_limit():
    pools, p = KeyPools(), provider(0, limit=RateLimit(rules=per_min(1)))
    assert pools.pick(p, "m", 0.0, RNG).usable
    assert pools.pick(p, "m", 20.0, RNG) == KeyPick(None, 40)
    assert pools.pick(p, "m", 60.0, RNG).usable


# -- rate limits -------------------------------------------------------------------------------

def test_a_rate_limited_key_is_skipped_and_the_next_used():
    pools, p = KeyPools(), provider(2, algo="fixed_priority", limit=RateLimit(rules=per_min(2)))
    assert picks(pools, p, 4) == [0, 0, 1, 1]


def test_all_keys_limited_gives_none_with_the_earliest_retry_after():
    pools, p = KeyPools(), provider(2, algo="fixed_priority", limit=RateLimit(rules=per_min(1)))
    assert pools.pick(p, "m", 0.0, RNG).index == 0
    assert pools.pick(p, "m", 15.0, RNG).index == 1
    assert pools.pick(p, "m", 20.0, RNG) == KeyPick(None, 40)   # key 0 frees at 60
    assert pools.pick(p, "m", 59.5, RNG) == KeyPick(None, 1)
    assert pools.pick(p, "m", 60.0, RNG).index == 0


def test_refused_and_unreturned_keys_record_nothing():
    pools, p = KeyPools(), provider(2, algo="fixed_priority", limit=RateLimit(rules=per_min(1)))
    pools.pick(p, "m", 0.0, RNG, exclude={0})       # key 1 used
    assert pools.pick(p, "m", 1.0, RNG).index == 0  # key 0 was never recorded
    for t in (2.0, 3.0, 4.0):                     # refusals record nothing...
        assert not pools.pick(p, "m", t, RNG).usable
    assert pools.pick(p, "m", 60.0, RNG).index == 1  # ...so key 1 frees at 60, not later


def test_benched_or_excluded_keys_give_no_retry_after_but_limited_ones_do():
    pools = KeyPools()
    p = provider(2, algo="fixed_priority", limit=RateLimit(rules=per_min(1)), bench=300.0)
    assert pools.pick(p, "m", 0.0, RNG).index == 0
    pools.record_failure(p, 1, 429, 0.0)
    assert pools.pick(p, "m", 10.0, RNG) == KeyPick(None, 50)          # 0 limited, 1 benched
    assert pools.pick(p, "m", 10.0, RNG, exclude={0}) == KeyPick(None, None)


def test_single_rule_set_limits_the_key_across_models():
    pools, p = KeyPools(), provider(1, limit=RateLimit(rules=per_min(2)))
    assert pools.pick(p, "a", 0.0, RNG).index == 0
    assert pools.pick(p, "b", 0.0, RNG).index == 0
    assert pools.pick(p, "c", 0.0, RNG) == KeyPick(None, 60)


def test_per_model_map_entries_have_their_own_windows_and_default_is_per_model():
    limit = RateLimit(per_model=(("gpt-4o", per_min(1)), ("claude", per_min(2)),
                                 ("default", per_min(1))))
    pools, p = KeyPools(), provider(1, limit=limit)
    ok = lambda model: pools.pick(p, model, 0.0, RNG).usable  # noqa: E731
    assert ok("gpt-4o") and not ok("gpt-4o")
    # "claude" matches by prefix and by containment: one window shared by both models
    assert ok("claude-3-opus") and ok("anthropic/claude-3") and not ok("claude-3-haiku")
    # models matching no entry: default, one window each
    assert ok("llama") and not ok("llama")
    assert ok("mistral") and not ok("mistral")


def test_per_model_map_longest_prefix_wins_and_no_default_means_unlimited():
    limit = RateLimit(per_model=(("gpt-4", per_min(5)), ("gpt-4o-mini", per_min(1))))
    pools, p = KeyPools(), provider(1, limit=limit)
    assert pools.pick(p, "gpt-4o-mini-2024", 0.0, RNG).usable
    assert pools.pick(p, "gpt-4o-mini-2024", 0.0, RNG) == KeyPick(None, 60)
    assert all(pools.pick(p, "gpt-4-turbo", 0.0, RNG).usable for _ in range(5))
    assert not pools.pick(p, "gpt-4-turbo", 0.0, RNG).usable
    assert all(pools.pick(p, "llama", 0.0, RNG).usable for _ in range(100))


def test_keys_have_separate_windows_per_provider():
    pools = KeyPools()
    a = provider(1, limit=RateLimit(rules=per_min(1)), name="a")
    b = provider(1, limit=RateLimit(rules=per_min(1)), name="b")
    assert pools.pick(a, "m", 0.0, RNG).usable and pools.pick(b, "m", 0.0, RNG).usable
    assert not pools.pick(a, "m", 0.0, RNG).usable


# -- benching ----------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [429, 401, 403])
def test_bench_lasts_exactly_the_cooldown_period(status):
    pools, p = KeyPools(), provider(2, algo="fixed_priority", bench=60.0)
    pools.record_failure(p, 0, status, 100.0)
    assert pools.benched_until(p, 0, 100.0) == 160.0
    assert pools.pick(p, "m", 100.0, RNG).index == 1
    assert pools.pick(p, "m", 159.999, RNG).index == 1
    assert pools.pick(p, "m", 160.0, RNG).index == 0
    assert pools.benched_until(p, 0, 160.0) is None


@pytest.mark.parametrize("status", [None, 400, 404, 408, 500, 502])
def test_other_failures_do_not_bench(status):
    pools, p = KeyPools(), provider(2, algo="fixed_priority", bench=60.0)
    pools.record_failure(p, 0, status, 0.0)
    assert pools.pick(p, "m", 1.0, RNG).index == 0


def test_no_bench_when_period_is_off_or_only_one_key():
    for p in (provider(2, algo="fixed_priority"), provider(2, algo="fixed_priority", bench=0.0),
              provider(1, bench=60.0)):
        pools = KeyPools()
        pools.record_failure(p, 0, 429, 0.0)
        assert pools.pick(p, "m", 1.0, RNG).index == 0


def test_all_keys_benched_gives_none_without_retry_after():
    pools, p = KeyPools(), provider(2, bench=30.0)
    pools.record_failure(p, 0, 429, 0.0)
    pools.record_failure(p, 1, 401, 0.0)
    assert pools.pick(p, "m", 29.0, RNG) == KeyPick(None, None)
    assert pools.pick(p, "m", 30.0, RNG).usable


def test_a_changed_key_list_starts_the_pool_afresh():
    pools = KeyPools()
    old = provider(2, bench=60.0)
    pools.record_failure(old, 0, 429, 0.0)
    assert pools.pick(old, "m", 1.0, RNG).index == 1
    new = Provider(provider="p", api=("sk-new-0", "sk-new-1"), preferences=old.preferences)
    assert pools.pick(new, "m", 1.0, RNG).index == 0  # no bench, cursor at 0


def test_pools_are_bounded():
    pools = KeyPools(max_providers=2)
    ps = [provider(2, name=n) for n in "abc"]
    for p in ps:
        pools.pick(p, "m", 0.0, RNG)
    assert pools.pick(ps[0], "m", 0.0, RNG).index == 0  # "a" was dropped: cursor afresh
    assert pools.pick(ps[2], "m", 0.0, RNG).index == 1  # "c" kept
    with pytest.raises(ValueError):
        KeyPools(max_providers=0)


# -- properties --------------------------------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(st.integers(1, 6), st.integers(0, 30))
def test_round_robin_hands_each_key_out_once_per_n(n, offset):
    pools, p = KeyPools(), provider(n)
    picks(pools, p, offset)
    assert sorted(picks(pools, p, n)) == list(range(n))


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 4), st.integers(1, 3), st.sampled_from(["round_robin", "random",
                                                             "fixed_priority"]),
       st.lists(st.floats(0, 200, allow_nan=False), min_size=1, max_size=40))
def test_never_more_than_the_limit_per_key_and_retry_after_is_right(n, count, algo, gaps):
    pools = KeyPools()
    p = provider(n, algo=algo, limit=RateLimit(rules=per_min(count)))
    rng, now, used = random.Random(1), 0.0, []
    for gap in gaps:
        now += gap
        got = pools.pick(p, "m", now, rng)
        if got.usable:
            used.append((now, got.index))
            continue
        # refused: every key holds `count` uses inside the last minute
        for k in range(n):
            recent = [t for t, i in used if i == k and t > now - 60.0]
            assert len(recent) >= count
        # and the earliest key frees its slot within retry_after
        assert got.retry_after is not None and got.retry_after >= 1
        frees = min(sorted(t for t, i in used if i == k)[-count] + 60.0 for k in range(n))
        # (t + 60 == now can hold while t > now - 60 too: floats. The slot is then still
        # taken, and 1 s, the smallest retry_after, is right.)
        assert frees - now <= got.retry_after < max(frees - now, 1e-9) + 1
    for k in range(n):
        times = [t for t, i in used if i == k]
        for j in range(len(times) - count):
            assert times[j + count] - times[j] >= 60.0
