"""The retry-and-blame table (uniapi_core/routing/retry.py): row by row, its consistency over
every (kind, status) pair, and its agreement with the five places that decided it before."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uniapi_core.errors import UpstreamError
from uniapi_core.http.client import UpstreamProtocolError
from uniapi_core.routing.retry import (
    KIND_ROWS,
    MAX_ATTEMPTS,
    STATUS_ROWS,
    Blame,
    FailureKind,
    Verdict,
    attempt_budget,
    benches,
    verdict,
)

ROOT = Path(__file__).resolve().parent.parent.parent
R, K, C = Blame.REQUEST, Blame.KEY, Blame.CHANNEL


# -- the oracle: the decisions as they were written before the table ----------------------------
# the former relay/policy.py::is_retryable, router.py::_channel_failure and the key-level
# statuses of router.py (KEY_LEVEL_STATUSES / SLOT_LEVEL_STATUSES) and keypool.py
# (BENCH_STATUSES), verbatim.

OLD_RETRYABLE_STATUSES = frozenset({401, 403, 408, 409, 424, 429})
OLD_RETRYABLE_KINDS = frozenset({"connect", "reset", "timeout", "eof", "empty", "truncated",
                                 "decode", "protocol", "trigger"})
OLD_KEY_LEVEL_STATUSES = frozenset({401, 403, 429})
OLD_SLOT_LEVEL_STATUSES = frozenset({429})


def old_is_retryable(err: UpstreamError) -> bool:
    if err.kind == "status":
        status = err.upstream_status or err.status
        return status in OLD_RETRYABLE_STATUSES or status >= 500
    return err.kind in OLD_RETRYABLE_KINDS


def old_channel_failure(err: UpstreamError) -> bool:
    if err.kind == "status":
        s = err.upstream_status or err.status
        return s >= 500 or s in OLD_RETRYABLE_STATUSES
    return True


def old_key_level(err: UpstreamError, regions: bool) -> bool:
    return err.upstream_status in (OLD_SLOT_LEVEL_STATUSES if regions else OLD_KEY_LEVEL_STATUSES)


# -- the table, row by row ----------------------------------------------------------------------

KIND_CASES = [
    # kind, retry, blame
    ("connect", True, C), ("reset", True, C), ("timeout", True, C), ("eof", True, C),
    ("empty", True, C), ("truncated", True, C), ("decode", True, C), ("protocol", True, C),
    ("trigger", True, C), ("head_too_large", False, C),
]


@pytest.mark.parametrize("kind, retry, blame", KIND_CASES)
@pytest.mark.parametrize("regions", [False, True])
def test_kind_rows(kind, retry, blame, regions):
    got = verdict(UpstreamError("x", kind=kind), regions=regions)
    assert got == Verdict(retry=retry, blame=blame, cool_channel=True, bench_key=False)


def test_every_kind_has_one_row():
    assert set(KIND_ROWS) | {FailureKind.STATUS} == set(FailureKind)
    assert {k for k, _, _ in KIND_CASES} == {str(k) for k in KIND_ROWS}


STATUS_CASES = [
    # status, retry, blame with keys, blame with Vertex regions
    (401, True, K, C), (403, True, K, C), (408, True, C, C), (409, True, C, C),
    (424, True, C, C), (429, True, K, K), (500, True, C, C), (502, True, C, C),
    (503, True, C, C), (504, True, C, C), (529, True, C, C), (599, True, C, C),
    (400, False, R, R), (402, False, R, R), (404, False, R, R), (413, False, R, R),
    (418, False, R, R), (422, False, R, R), (451, False, R, R), (200, False, R, R),
]


@pytest.mark.parametrize("status, retry, keys, regions", STATUS_CASES)
def test_status_rows(status, retry, keys, regions):
    err = UpstreamError("x", upstream_status=status)
    for use_regions, blame in ((False, keys), (True, regions)):
        got = verdict(err, regions=use_regions)
        assert got == Verdict(retry=retry, blame=blame, cool_channel=blame is not R,
                              bench_key=blame is K)
    assert verdict(err).retry is retry


def test_status_rows_cover_the_named_statuses():
    assert {s for s, *_ in STATUS_CASES} >= set(STATUS_ROWS)


def test_without_upstream_status_the_errors_own_status_is_judged_but_no_key_is_blamed():
    err = UpstreamError("x", status=429)  # kind "status", no upstream status
    assert verdict(err) == Verdict(retry=True, blame=C, cool_channel=True, bench_key=False)
    assert verdict(UpstreamError("x")).retry  # the default status, 502
    assert not verdict(UpstreamError("x", status=400)).retry


def test_a_key_status_on_another_kind_still_blames_the_key():
    err = UpstreamError("garbled 429 body", kind="decode", upstream_status=429)
    assert verdict(err) == Verdict(retry=True, blame=K, cool_channel=True, bench_key=True)
    err = UpstreamError("garbled 400 body", kind="decode", upstream_status=400)
    assert verdict(err) == Verdict(retry=True, blame=C, cool_channel=True, bench_key=False)


def test_benches():
    assert [s for s in (None, 0, 400, 401, 403, 408, 429, 500) if benches(s)] == [401, 403, 429]
    assert [s for s in (None, 401, 403, 429, 500) if benches(s, regions=True)] == [429]


def test_attempt_budget():
    assert MAX_ATTEMPTS == 10
    assert [attempt_budget(x) for x in (None, True, False, 0, 2, 50)] == [10, 10, 1, 1, 3, 10]


# -- FailureKind: strings keep working, misspellings fail at once --------------------------------

def test_failure_kind_equals_todays_strings():
    err = UpstreamError("x", kind="timeout")
    assert err.kind == "timeout" and err.kind is FailureKind.TIMEOUT
    assert f"{err.kind}:{err.status}" == "timeout:502" and str(err.kind) == "timeout"
    assert UpstreamError("x").kind is FailureKind.STATUS
    assert UpstreamProtocolError("x", kind="head_too_large").kind is FailureKind.HEAD_TOO_LARGE


@pytest.mark.parametrize("bad", ["timout", "Timeout", "connection", "", "head-too-large"])
def test_a_misspelt_kind_raises_where_the_error_is_made(bad):
    with pytest.raises(ValueError):
        UpstreamError("x", kind=bad)


#: calls whose positional argument (at this index) is a failure kind, by file: the HTTP
#: clients' ``_fail``/``_fail_all``, h2client's ``StreamFailed`` and the connection manager's
#: attempt drivers (``upstream.py``)
_KIND_ARGS = {"uniapi_core/http/client.py": {"_fail": 0},
              "uniapi_core/http/h2client.py": {"_fail": 1, "_fail_all": 0, "StreamFailed": 0},
              "uniapi_core/upstream.py": {"_fail": 0}}


def _kind_literals(path: Path) -> list[tuple[int, str]]:
    """Kind strings in the calls that make an upstream failure: ``kind=`` of the
    UpstreamError classes, the kind argument of ``UpstreamFailed`` and of ``_KIND_ARGS``."""
    found = []
    positions = dict(_KIND_ARGS.get(path.relative_to(ROOT).as_posix(), {}), UpstreamFailed=1)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        if name in positions:
            args = node.args[positions[name]:positions[name] + 1]
        elif name in ("UpstreamError", "UpstreamProtocolError", "ProxyError"):
            args = [k.value for k in node.keywords if k.arg == "kind"]
        else:
            continue
        found += [(a.lineno, a.value) for a in args
                  if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    return found


def test_every_kind_written_in_the_code_is_a_failure_kind():
    seen, unknown = set(), []
    for package in ("uniapi_core", "uniapi_trio", "uniapi_asyncio"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, kind in _kind_literals(path):
                seen.add(kind)
                if kind not in set(FailureKind):
                    unknown.append(f"{path.relative_to(ROOT)}:{line} {kind!r}")
    assert unknown == []
    assert {"connect", "reset", "eof", "protocol", "decode", "status"} <= seen  # it looked


# -- the whole space: consistent, and the same as before ----------------------------------------

errors = st.builds(
    lambda kind, upstream, status: UpstreamError("x", kind=kind, upstream_status=upstream,
                                                 status=status),
    st.sampled_from(list(FailureKind)),
    st.none() | st.integers(0, 999) | st.sampled_from(sorted(OLD_RETRYABLE_STATUSES)),
    st.none() | st.integers(100, 599))


@settings(max_examples=2000, deadline=None)
@given(err=errors, regions=st.booleans())
def test_the_verdict_is_consistent(err, regions):
    v = verdict(err, regions=regions)
    if v.blame is R:  # wrong everywhere: never retried, nothing cooled or benched
        assert not v.retry and not v.cool_channel and not v.bench_key
    if v.retry:
        assert v.blame is not R
    assert v.bench_key is (v.blame is K)
    assert v.cool_channel is (v.blame is not R)
    if err.upstream_status in ({429} if regions else {401, 403, 429}):
        assert v.bench_key and v.blame is K
    if err.upstream_status in (401, 403) and regions:
        assert not v.bench_key and v.cool_channel
    effective = err.upstream_status or err.status
    if err.kind == "status" and effective >= 500:
        assert v.retry and v.cool_channel and v.blame is C
    if err.kind == "status" and effective < 500 and effective not in OLD_RETRYABLE_STATUSES:
        assert not v.retry and v.blame is (K if v.bench_key else R)
    assert v.retry is verdict(err).retry is verdict(err, regions=not regions).retry


@settings(max_examples=2000, deadline=None)
@given(err=errors, regions=st.booleans())
def test_the_verdict_agrees_with_the_old_decisions(err, regions):
    v = verdict(err, regions=regions)
    assert v.retry is old_is_retryable(err)
    assert v.bench_key is old_key_level(err, regions)
    # router.finished: a key-level failure with keys left cools nothing; else
    # _channel_failure decides
    assert v.cool_channel is old_channel_failure(err)


@pytest.mark.parametrize("kind", list(FailureKind))
@pytest.mark.parametrize("upstream", [None, 0, 200, 302, 400, 401, 403, 404, 408, 409, 422,
                                      424, 429, 499, 500, 503, 529, 600])
@pytest.mark.parametrize("status", [None, 400, 429, 502, 504])
def test_the_verdict_agrees_with_the_old_decisions_exhaustively(kind, upstream, status):
    err = UpstreamError("x", kind=kind, upstream_status=upstream, status=status)
    for regions in (False, True):
        v = verdict(err, regions=regions)
        assert (v.retry, v.bench_key, v.cool_channel) == (
            old_is_retryable(err), old_key_level(err, regions), old_channel_failure(err))


def test_a_misspelt_transport_failure_kind_fails_where_the_event_is_made():
    from uniapi_core.relay.events import UpstreamFailed

    assert UpstreamFailed(1, "reset", "gone").kind is FailureKind.RESET
    with pytest.raises(ValueError):
        UpstreamFailed(1, "rest", "gone")
