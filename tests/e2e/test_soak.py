"""R2 soak (issue 17), end to end on both transports: the gateway in its own process (its RSS
is its own) under fixed-rate mixed load (100 req/s, 30 % streaming) against two fake upstreams
that inject ~5 % faults (500, 429, reset before the head, truncated body, slow first byte) from
a seeded RNG; ``UNIAPI_SOAK_SECONDS`` (default 60) per backend, the first 5 s a warm-up.

Figures (``pytest -s`` prints them): RSS slope by least squares and total growth after the
warm-up, fds settled before and after the load, fds with nothing in flight, threads; then an
abuse episode (300 connections sending a 100 KB header, 500 idle connections opened and closed)
and RSS 3 s later, twice. The 10-minute run is ``benchmarks/soak.py`` (the same harness,
``tests/fakes/soak.py``).
"""

from __future__ import annotations

import os

import pytest

from tests.fakes.soak import Run, run_backend

SOAK_SECONDS = float(os.environ.get("UNIAPI_SOAK_SECONDS", "60"))
WARMUP = 5.0

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd") and not os.environ.get("CI"),
                                reason="needs /proc (Linux)")


@pytest.fixture(scope="module", params=["trio", "asyncio"])
def run(request, tmp_path_factory) -> Run:
    """One soak and abuse run per backend, shared by the tests below."""
    return run_backend(request.param, tmp_path_factory.mktemp(f"soak-{request.param}"),
                       SOAK_SECONDS, warmup=WARMUP)


def test_soak_answers_everything_and_memory_and_fds_stay_flat(run: Run):
    report, load = run.soak, run.soak.load
    # every request answered: a status line and a 2xx or an OpenAI-shaped error JSON
    assert load.sent == int(100 * max(4.0, SOAK_SECONDS - WARMUP)), load
    assert load.answered == load.sent, (dict(load.outcomes), load.errors)
    assert run.soak.warmup.answered == run.soak.warmup.sent, run.soak.warmup
    assert sum(n for k, n in report.faults.items() if k != "ok") > 0, report.faults
    # memory: growth after the warm-up; the slope (< 0.5 MB/min) is asserted on runs of 5 min
    # or more only: over 55 s the tail of the warm-up alone measured 0.5-0.8 MB/min (trio),
    # so in CI it only guards gross leaks (< 5 MB/min), as R2 says CI should
    assert report.growth < 10, report.lines()
    assert report.slope < (0.5 if SOAK_SECONDS - WARMUP >= 300 else 5.0), report.lines()
    # fds: back to the settled baseline after the load, the keep-alive connections to the
    # upstreams aside (the pool's size follows the load's peaks; it is bounded apart)
    def settled(kinds):
        return sum(kinds.values()) - kinds.get("upstream", 0)
    assert abs(settled(report.kinds_after) - settled(report.kinds_before)) <= 2, report.lines()
    assert report.kinds_after.get("upstream", 0) <= 32, report.lines()
    assert report.kinds_after.get("client", 0) == 0, report.lines()
    # no traceback, and a clean exit on SIGINT
    assert "Traceback" not in run.log, run.log[-3000:]
    assert run.exit_code == 0, (run.exit_code, run.log[-3000:])


def test_abuse_is_refused_and_does_not_leak(run: Run):
    for episode in (run.abuse, run.again):
        assert dict(episode.big_statuses) == {"431": 300}, episode.lines()
        assert episode.idle_opened == 500, episode.lines()
        assert abs(episode.fds_after - episode.fds_before) <= 2, episode.lines()
    # the same episode a second time: memory the first one took is reused, not added to
    assert run.again.rss_after - run.again.rss_before < 5, run.again.lines()


def test_rss_returns_near_baseline_after_abuse(run: Run):
    """The allocator hands a burst's freed memory back (``http/occupancy`` ``trim_due``,
    glibc's malloc_trim): without it RSS stayed 19–25 MB up."""
    assert run.abuse.rss_after - run.abuse.rss_before < 15, run.abuse.lines()
