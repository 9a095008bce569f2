"""SCHEDULING_ALGORITHM (docs/routing.md §4): channel order per request."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uniapi_core.config.model import Provider
from uniapi_core.routing.resolve import Channel
from uniapi_core.routing.schedule import ALGORITHMS, Scheduler, weight_of


def chans(*weights, model="m"):
    return [Channel(Provider(provider=f"p{i}"), model, model, w) for i, w in enumerate(weights)]


def names(channels):
    return [c.provider.provider for c in channels]


def firsts(sched, algorithm, channels, count, key="k", rng=None):
    rng = rng if rng is not None else random.Random(0)
    return [sched.order(algorithm, channels, key, rng)[0].provider.provider for _ in range(count)]


weights_st = st.lists(st.integers(1, 9) | st.none(), min_size=1, max_size=6)


# -- examples ----------------------------------------------------------------------------------

def test_none_and_fixed_priority_keep_list_order():
    s, cs = Scheduler(), chans(None, None, None)
    for algo in (None, "fixed_priority"):
        for _ in range(3):
            assert s.order(algo, cs, "k", random.Random(1)) == cs
    assert len(s) == 0  # stateless


def test_order_returns_a_new_list():
    s, cs = Scheduler(), chans(1, 1)
    out = s.order(None, cs, "k", random.Random(0))
    out.reverse()
    assert names(cs) == ["p0", "p1"]


def test_round_robin_rotates_one_further_each_request():
    s, cs = Scheduler(), chans(None, None, None)
    rng = random.Random(0)
    assert names(s.order("round_robin", cs, "k", rng)) == ["p0", "p1", "p2"]
    assert names(s.order("round_robin", cs, "k", rng)) == ["p1", "p2", "p0"]
    assert names(s.order("round_robin", cs, "k", rng)) == ["p2", "p0", "p1"]
    assert names(s.order("round_robin", cs, "k", rng)) == ["p0", "p1", "p2"]


def test_round_robin_state_is_per_state_key():
    s, cs = Scheduler(), chans(None, None)
    rng = random.Random(0)
    assert firsts(s, "round_robin", cs, 3, key=("key-a", "m"), rng=rng) == ["p0", "p1", "p0"]
    assert firsts(s, "round_robin", cs, 1, key=("key-b", "m"), rng=rng) == ["p0"]
    assert firsts(s, "round_robin", cs, 1, key=("key-a", "m"), rng=rng) == ["p1"]


def test_round_robin_on_a_changed_list_resumes_with_the_channel_due_next():
    s, (a, b, c, d) = Scheduler(), chans(None, None, None, None)
    rng = random.Random(0)
    s.order("round_robin", [a, b, c], "k", rng)              # a first; b is due next
    assert s.order("round_robin", [a, c, b], "k", rng)[0] == b  # reordered: b still due
    # now c is due; c disappears: the next survivor after c in the old order (a) starts
    assert s.order("round_robin", [b, a], "k", rng) == [a, b]
    assert s.order("round_robin", [b, a], "k", rng) == [b, a]
    # none of the old channels left: start at position 0
    assert s.order("round_robin", [c, d], "k", rng) == [c, d]
    assert s.order("round_robin", [c, d], "k", rng) == [d, c]


def test_weighted_round_robin_5_3_2_is_smooth_and_exact():
    s, cs = Scheduler(), chans(5, 3, 2)
    seq = firsts(s, "weighted_round_robin", cs, 20)
    assert seq[:10] == ["p0", "p1", "p2", "p0", "p0", "p1", "p0", "p2", "p1", "p0"]
    assert seq[10:] == seq[:10]
    assert Counter(seq[:10]) == {"p0": 5, "p1": 3, "p2": 2}
    assert seq[:5] != ["p0"] * 5  # not one burst


def test_weighted_round_robin_rest_follow_in_list_order():
    s, cs = Scheduler(), chans(5, 3, 2)
    rng = random.Random(0)
    assert names(s.order("weighted_round_robin", cs, "k", rng)) == ["p0", "p1", "p2"]
    assert names(s.order("weighted_round_robin", cs, "k", rng)) == ["p1", "p0", "p2"]
    assert names(s.order("weighted_round_robin", cs, "k", rng)) == ["p2", "p0", "p1"]


def test_missing_or_nonpositive_weight_counts_as_one():
    assert [weight_of(c) for c in chans(None, 0, -3, 4)] == [1, 1, 1, 4]
    s = Scheduler()
    seq = firsts(s, "weighted_round_robin", chans(None, 2), 3)
    assert Counter(seq) == {"p0": 1, "p1": 2}


def test_weighted_round_robin_starts_a_fresh_cycle_when_weights_change():
    s = Scheduler()
    firsts(s, "weighted_round_robin", chans(5, 3, 2), 3)
    seq = firsts(s, "weighted_round_robin", chans(1, 3), 4)
    assert seq == firsts(Scheduler(), "weighted_round_robin", chans(1, 3), 4)
    assert Counter(seq) == {"p0": 1, "p1": 3}


def test_switching_algorithm_for_a_key_resets_its_state():
    s, cs = Scheduler(), chans(1, 1, 1)
    firsts(s, "round_robin", cs, 2)
    assert firsts(s, "weighted_round_robin", cs, 3) == ["p0", "p1", "p2"]
    assert firsts(s, "round_robin", cs, 1) == ["p0"]


def test_lottery_first_is_drawn_rest_in_list_order():
    s, cs = Scheduler(), chans(1, 1, 1, 1)
    rng = random.Random(7)
    for _ in range(50):
        out = s.order("lottery", cs, "k", rng)
        rest = [c for c in cs if c != out[0]]
        assert out[1:] == rest


def test_lottery_converges_to_the_weights():
    s, cs = Scheduler(), chans(5, 3, 2)
    seq = firsts(s, "lottery", cs, 20_000, rng=random.Random(12345))
    shares = {k: v / 20_000 for k, v in Counter(seq).items()}
    for name, expected in (("p0", 0.5), ("p1", 0.3), ("p2", 0.2)):
        assert abs(shares[name] - expected) < 0.02, shares


def test_random_is_a_shuffle():
    s, cs = Scheduler(), chans(*[None] * 4)
    rng = random.Random(3)
    seen = {tuple(names(s.order("random", cs, "k", rng))) for _ in range(400)}
    assert len(seen) == 24  # every permutation of 4 shows up
    assert all(sorted(p) == names(cs) for p in seen)


def test_empty_and_single_lists():
    s = Scheduler()
    for algo in ALGORITHMS:
        assert s.order(algo, [], "k", random.Random(0)) == []
        one = chans(3)
        assert s.order(algo, one, "k", random.Random(0)) == one


def test_unknown_algorithm_is_refused():
    with pytest.raises(ValueError, match="smart_round_robin"):
        Scheduler().order("smart_round_robin", chans(1, 1), "k", random.Random(0))


def test_state_is_bounded_dropping_the_least_recently_used():
    s, cs = Scheduler(max_keys=3), chans(None, None)
    rng = random.Random(0)
    for key in ("a", "b", "c"):
        s.order("round_robin", cs, key, rng)        # each now has p1 due
    s.order("round_robin", cs, "a", rng)            # touch "a": b is the oldest; a has p0 due
    s.order("round_robin", cs, "d", rng)            # drops "b"
    assert len(s) == 3
    assert firsts(s, "round_robin", cs, 1, key="b", rng=rng) == ["p0"]  # afresh; drops "c"
    assert firsts(s, "round_robin", cs, 1, key="a", rng=rng) == ["p0"]  # kept its state
    assert firsts(s, "round_robin", cs, 1, key="c", rng=rng) == ["p0"]  # was dropped
    assert len(s) == 3
    with pytest.raises(ValueError):
        Scheduler(max_keys=0)


# -- properties --------------------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(weights_st, st.integers(0, 40))
def test_weighted_round_robin_exact_over_any_window_of_sum_w(weights, offset):
    cs = chans(*weights)
    total = sum(weight_of(c) for c in cs)
    s = Scheduler()
    seq = firsts(s, "weighted_round_robin", cs, offset + 2 * total)
    for start in range(offset, offset + total + 1):
        window = Counter(seq[start:start + total])
        assert window == {c.provider.provider: weight_of(c) for c in cs}


@settings(max_examples=150, deadline=None)
@given(weights_st)
def test_weighted_round_robin_is_spread_not_bursts(weights):
    cs = chans(*weights)
    ws = [weight_of(c) for c in cs]
    total = sum(ws)
    seq = firsts(Scheduler(), "weighted_round_robin", cs, total)
    counts = Counter()
    for k, name in enumerate(seq, 1):
        counts[name] += 1
        for c, w in zip(cs, ws):  # every prefix is close to its fair share
            assert abs(counts[c.provider.provider] - k * w / total) < 2
    if len(cs) >= 2:
        for c, w in zip(cs, ws):  # a channel of weight w >= 2 never takes w in a row
            if w >= 2:
                run = [c.provider.provider] * w
                assert not any(seq[i:i + w] == run for i in range(total - w + 1))


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 7), st.integers(0, 20))
def test_round_robin_every_channel_first_once_per_n(n, offset):
    cs = chans(*[None] * n)
    s, rng = Scheduler(), random.Random(0)
    for _ in range(offset):
        s.order("round_robin", cs, "k", rng)
    orders = [s.order("round_robin", cs, "k", rng) for _ in range(n)]
    assert sorted(names(o[:1])[0] for o in orders) == sorted(names(cs))
    for o in orders:  # a rotation of the list
        i = cs.index(o[0])
        assert o == cs[i:] + cs[:i]


@settings(max_examples=100, deadline=None)
@given(weights_st, st.sampled_from(ALGORITHMS), st.integers(0, 2**32))
def test_every_order_is_a_permutation(weights, algo, seed):
    cs, s, rng = chans(*weights), Scheduler(), random.Random(seed)
    for _ in range(5):
        out = s.order(algo, cs, "k", rng)
        assert sorted(names(out)) == sorted(names(cs)) and len(out) == len(cs)


@settings(max_examples=100, deadline=None)
@given(weights_st, st.sampled_from(ALGORITHMS), st.integers(0, 2**32))
def test_same_seed_same_orders(weights, algo, seed):
    cs = chans(*weights)
    runs = []
    for _ in range(2):
        s, rng = Scheduler(), random.Random(seed)
        runs.append([names(s.order(algo, cs, "k", rng)) for _ in range(8)])
    assert runs[0] == runs[1]


@settings(max_examples=50, deadline=None)
@given(weights_st)
def test_fixed_priority_is_the_identity(weights):
    cs = chans(*weights)
    s = Scheduler()
    assert all(s.order("fixed_priority", cs, "k", random.Random(0)) == cs for _ in range(3))


@settings(max_examples=10, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=2, max_size=5), st.integers(0, 2**32))
def test_lottery_shares_follow_the_weights(weights, seed):
    cs = chans(*weights)
    total = sum(weights)
    counts = Counter(firsts(Scheduler(), "lottery", cs, 20_000, rng=random.Random(seed)))
    for c, w in zip(cs, weights):
        assert abs(counts[c.provider.provider] / 20_000 - w / total) < 0.02
