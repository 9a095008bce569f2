"""Sliding-window limiter: exact windows, all-or-nothing admission, clocks that jump."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from uniapi_core.ratelimit import Admitted, Limiter, Refused, Window

W2 = Window(count=2, period=60.0)


def test_admits_n_then_refuses_with_retry_after():
    lim = Limiter()
    assert lim.admit("k", [W2], 0.0) == Admitted()
    assert lim.admit("k", [W2], 10.0) == Admitted()
    verdict = lim.admit("k", [W2], 20.0)
    assert isinstance(verdict, Refused) and verdict.retry_after == 40
    assert lim.admit("k", [W2], 59.9) != Admitted()
    assert lim.admit("k", [W2], 60.0) == Admitted()  # the first left the window


def test_no_boundary_burst():
    lim = Limiter()
    assert lim.admit("k", [W2], 59.0) == Admitted()
    assert lim.admit("k", [W2], 59.5) == Admitted()
    assert isinstance(lim.admit("k", [W2], 60.5), Refused)  # a fixed window would admit


def test_every_window_must_admit_and_refusal_records_nothing():
    lim = Limiter()
    rules = [Window(count=3, period=60.0), Window(count=1, period=1.0)]
    assert lim.admit("k", rules, 0.0) == Admitted()
    refused = lim.admit("k", rules, 0.5)
    assert isinstance(refused, Refused) and refused.window.period == 1.0
    assert lim.admit("k", rules, 1.0) == Admitted()
    assert lim.admit("k", rules, 2.0) == Admitted()
    verdict = lim.admit("k", rules, 3.0)
    assert isinstance(verdict, Refused) and verdict.retry_after == 57


def test_subjects_are_independent():
    lim = Limiter()
    one = [Window(count=1, period=60.0)]
    assert lim.admit("a", one, 0.0) == Admitted()
    assert lim.admit("b", one, 0.0) == Admitted()
    assert isinstance(lim.admit("a", one, 1.0), Refused)


@settings(max_examples=300, deadline=None)
@given(count=st.integers(min_value=1, max_value=5),
       period=st.sampled_from([1.0, 2.5, 60.0]),
       steps=st.lists(st.floats(min_value=-30, max_value=30, allow_nan=False), max_size=60))
def test_never_more_than_n_in_any_window_even_when_the_clock_jumps(count, period, steps):
    lim = Limiter()
    w = Window(count=count, period=period)
    now = 0.0
    admitted: list[float] = []
    latest = -1e9
    for step in steps:
        now += step  # may go backwards: the limiter then uses the latest time seen
        effective = max(now, latest)
        latest = effective
        in_window = sum(1 for t in admitted if t > effective - period)
        verdict = lim.admit("k", [w], now)
        if isinstance(verdict, Admitted):
            admitted.append(effective)
        else:  # refuses only when N are in the window
            assert in_window >= count
    admitted.sort()
    for i, t in enumerate(admitted):
        inside = [u for u in admitted if t <= u < t + period]
        assert len(inside) <= count, (t, inside)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=10, allow_nan=False), max_size=40))
def test_monotonic_clock_refuses_only_when_full(gaps):
    lim = Limiter()
    w = Window(count=3, period=5.0)
    now = 0.0
    admitted: list[float] = []
    for g in gaps:
        now += g
        verdict = lim.admit("k", [w], now)
        full = sum(1 for t in admitted if t > now - 5.0) >= 3
        assert isinstance(verdict, Refused) == full
        if not full:
            admitted.append(now)
        else:
            oldest = sorted(t for t in admitted if t > now - 5.0)[0]
            assert verdict.retry_after >= oldest + 5.0 - now
