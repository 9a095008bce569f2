"""Channel cooldown (docs/routing.md §5 "Cooldowns")."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from uniapi_core.config.model import Provider
from uniapi_core.routing.cooldown import Cooldowns
from uniapi_core.routing.resolve import Channel


def chan(provider: str, alias: str = "m", upstream: str | None = None) -> Channel:
    return Channel(Provider(provider=provider), upstream or alias, alias)


A, B, C = chan("a"), chan("b"), chan("c")


def test_cooling_lasts_exactly_the_period():
    cd = Cooldowns()
    cd.cool("a", "m", 100.0, 300.0)
    assert cd.until("a", "m", 100.0) == 400.0
    assert cd.until("a", "m", 399.999) == 400.0
    assert cd.until("a", "m", 400.0) is None
    assert len(cd) == 0  # the expired entry was dropped on access


def test_zero_or_negative_period_is_off():
    cd = Cooldowns()
    for period in (0.0, -5.0, float("nan")):
        cd.cool("a", "m", 0.0, period)
    assert cd.until("a", "m", 0.0) is None and len(cd) == 0


def test_key_is_provider_and_requested_alias():
    cd = Cooldowns()
    renamed = chan("a", alias="fast", upstream="gpt-4o-mini")
    cd.cool("a", "fast", 0.0, 10.0)
    assert cd.split([renamed, chan("a", "gpt-4o-mini"), chan("b", "fast")], 1.0) == (
        [chan("a", "gpt-4o-mini"), chan("b", "fast")], [renamed])


def test_cooling_again_keeps_the_later_end():
    cd = Cooldowns()
    cd.cool("a", "m", 0.0, 100.0)
    cd.cool("a", "m", 10.0, 20.0)
    assert cd.until("a", "m", 50.0) == 100.0
    cd.cool("a", "m", 90.0, 100.0)
    assert cd.until("a", "m", 150.0) == 190.0


def test_split_keeps_order_of_available_and_sorts_cooling_by_end():
    cd = Cooldowns()
    cd.cool("a", "m", 0.0, 50.0)
    cd.cool("c", "m", 0.0, 20.0)
    d = chan("d")
    assert cd.split([A, B, C, d], 10.0) == ([B, d], [C, A])
    assert cd.arrange([A, B, C, d], 10.0) == [B, d, C, A]
    assert cd.arrange([A, B, C, d], 20.0) == [B, C, d, A]  # c's cooldown is over


def test_all_cooling_are_still_tried_soonest_end_first():
    cd = Cooldowns()
    cd.cool("a", "m", 0.0, 30.0)
    cd.cool("b", "m", 0.0, 10.0)
    cd.cool("c", "m", 0.0, 20.0)
    assert cd.arrange([A, B, C], 5.0) == [B, C, A]
    assert cd.split([A, B, C], 5.0) == ([], [B, C, A])


def test_equal_ends_keep_list_order():
    cd = Cooldowns()
    for p in "abc":
        cd.cool(p, "m", 0.0, 10.0)
    assert cd.arrange([C, A, B], 1.0) == [C, A, B]


def test_expired_entries_are_swept_so_memory_stays_bounded():
    cd = Cooldowns()
    for i in range(10_000):
        cd.cool(f"p{i}", "m", float(i), 5.0)  # never looked at again
    assert len(cd) < 2100


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 1e6, allow_nan=False), st.floats(0.001, 1e5, allow_nan=False),
       st.floats(0, 1, allow_nan=False))
def test_cooling_iff_before_the_end(start, period, frac):
    cd = Cooldowns()
    cd.cool("a", "m", start, period)
    end = start + period
    probe = start + frac * period
    if probe < end:
        assert cd.until("a", "m", probe) == end
        assert cd.split([A], probe) == ([], [A])
    assert cd.until("a", "m", end) is None
    assert cd.arrange([A, B], end) == [A, B]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.floats(0, 100, allow_nan=False),
                          st.floats(-10, 100, allow_nan=False)), max_size=20),
       st.floats(0, 200, allow_nan=False))
def test_arrange_is_a_permutation_available_first_then_by_end(events, now):
    channels = [chan(f"p{i}") for i in range(6)]
    cd = Cooldowns()
    ends: dict[str, float] = {}
    for i, t, period in sorted(events, key=lambda e: e[1]):
        cd.cool(f"p{i}", "m", t, period)
        if period > 0:
            ends[f"p{i}"] = max(ends.get(f"p{i}", t + period), t + period)
    out = cd.arrange(channels, now)
    assert sorted(c.provider.provider for c in out) == sorted(c.provider.provider
                                                             for c in channels)
    cooling = [c.provider.provider for c in channels if ends.get(c.provider.provider, 0) > now]
    free = [c for c in channels if c.provider.provider not in cooling]
    assert out[:len(free)] == free
    tail_ends = [ends[c.provider.provider] for c in out[len(free):]]
    assert tail_ends == sorted(tail_ends)
