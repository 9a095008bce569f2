"""The Prometheus metrics (uniapi_core/ops/metrics.py): what render() says, read back with
prometheus_client's own text parser, equals what was observed."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from uniapi_core.ops import metrics as m
from uniapi_core.ops.metrics import Metrics, SnapshotError, merge, retired
from uniapi_core.relay import AttemptRecord as Attempt
from uniapi_core.request_machine import ServedRecord as Served


def attempt(provider="openai", outcome="ok", latency=0.3, model="gpt-4o"):
    return Attempt(provider=provider, model=model, outcome=outcome, key="k-0123456789ab",
                   latency=latency)


def record(path="/v1/chat/completions", status=200, duration=0.5, model="gpt-4o", tries=None,
           usage=None, ttft=None, client_closed=False, **kw):
    tries = (attempt(),) if tries is None else tuple(tries)
    return Served(method="POST", path=path, status=status, duration=duration,
                  attempts=tuple((t.provider, t.model, t.outcome) for t in tries),
                  client_closed=client_closed, usage=usage, model=model, ttft=ttft,
                  tries=tries, **kw)


def parse(text: str) -> tuple[dict[str, str], dict[tuple[str, frozenset], float]]:
    """(family name -> type, (sample name, labels) -> value), by prometheus_client."""
    types, samples = {}, {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in samples, key
            samples[key] = s.value
    return types, samples


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


CHAT = "/v1/chat/completions"


def test_render_counts_what_was_observed():
    metrics = Metrics()
    usage = {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30,
             "prompt_tokens_details": {"cached_tokens": 4},
             "completion_tokens_details": {"reasoning_tokens": 7}}
    metrics.observe(record(usage=usage, ttft=0.2))
    metrics.observe(record(status=502, duration=3.0,
                           tries=[attempt(outcome="timeout:504", latency=1.0),
                                  attempt("groq", "status:429", 0.1),
                                  attempt("groq", "connect:502", 0.05)]))
    metrics.observe(record(status=499, client_closed=True,
                           tries=[attempt(outcome="client_closed")],
                           usage={"completion_tokens": 3}))
    metrics.observe(record(path="/v1/models", model=None, tries=[], duration=0.001))
    metrics.observe(record(path="/v1/chat/completions?x=1", status=401, model="gpt-4o", tries=[]))
    metrics.in_flight(+1), metrics.in_flight(+1), metrics.in_flight(-1)
    metrics.connections(+3)
    metrics.rate_limited("key"), metrics.rate_limited("model"), metrics.rate_limited("key")
    metrics.set_cooldowns(2)
    metrics.stats_rows(written=5, dropped=1)
    metrics.stats_rows(written=2, dropped=0)

    types, samples = parse(metrics.render())
    assert types == {"uniapi_requests": "counter", "uniapi_request_duration_seconds": "histogram",
                     "uniapi_time_to_first_token_seconds": "histogram",
                     "uniapi_requests_in_flight": "gauge",
                     "uniapi_client_closed_requests": "counter",
                     "uniapi_upstream_attempts": "counter",
                     "uniapi_upstream_attempt_duration_seconds": "histogram",
                     "uniapi_upstream_retries": "counter", "uniapi_rate_limited": "counter",
                     "uniapi_cooldowns_active": "gauge", "uniapi_tokens": "counter",
                     "uniapi_stats_rows_written": "counter",
                     "uniapi_stats_rows_dropped": "counter",
                     "uniapi_client_connections_open": "gauge",
                     "uniapi_shared_state_degraded": "gauge",
                     "uniapi_shared_state_fallbacks": "counter",
                     "uniapi_connections_shed": "counter",
                     "uniapi_connections_refused": "counter"}
    req = "uniapi_requests_total"
    labels = {"endpoint": CHAT, "model": "gpt-4o"}
    assert value(samples, req, **labels, provider="openai", status_class="2xx") == 1
    assert value(samples, req, **labels, provider="groq", status_class="5xx") == 1
    assert value(samples, req, **labels, provider="openai", status_class="4xx") == 1
    assert value(samples, req, **labels, provider="none", status_class="4xx") == 1
    assert value(samples, req, endpoint="/v1/models", model="none", provider="none",
                 status_class="2xx") == 1
    assert sum(v for (name, _), v in samples.items() if name == req) == 5
    att = "uniapi_upstream_attempts_total"
    assert value(samples, att, provider="openai", outcome="ok") == 1
    assert value(samples, att, provider="openai", outcome="timeout") == 1
    assert value(samples, att, provider="openai", outcome="client_closed") == 1
    assert value(samples, att, provider="groq", outcome="status") == 1
    assert value(samples, att, provider="groq", outcome="connect") == 1
    assert value(samples, "uniapi_upstream_retries_total", provider="groq") == 2
    assert value(samples, "uniapi_upstream_retries_total", provider="openai") == 0
    assert value(samples, "uniapi_client_closed_requests_total", **labels,
                 provider="openai") == 1
    tok = "uniapi_tokens_total"
    assert value(samples, tok, provider="openai", model="gpt-4o", kind="prompt") == 10
    assert value(samples, tok, provider="openai", model="gpt-4o", kind="completion") == 23
    assert value(samples, tok, provider="openai", model="gpt-4o", kind="reasoning") == 7
    assert value(samples, tok, provider="openai", model="gpt-4o", kind="cached") == 4
    assert not [k for k in samples if k[0] == tok and ("provider", "groq") in k[1]]
    assert value(samples, "uniapi_requests_in_flight") == 1
    assert value(samples, "uniapi_client_connections_open") == 3
    assert value(samples, "uniapi_rate_limited_total", scope="key") == 2
    assert value(samples, "uniapi_rate_limited_total", scope="model") == 1
    assert value(samples, "uniapi_cooldowns_active") == 2
    assert value(samples, "uniapi_stats_rows_written_total") == 7
    assert value(samples, "uniapi_stats_rows_dropped_total") == 1

    dur = "uniapi_request_duration_seconds"
    ok = {"endpoint": CHAT, "model": "gpt-4o", "provider": "openai"}
    assert value(samples, dur + "_count", **ok) == 2  # 200 and 499 (the 401 had no provider)
    assert value(samples, dur + "_bucket", **ok, le="0.5") == 2
    assert value(samples, dur + "_bucket", **ok, le="0.25") == 0
    assert value(samples, dur + "_sum", **ok) == pytest.approx(1.0)
    slow = {**ok, "provider": "groq"}
    assert value(samples, dur + "_bucket", **slow, le="2.5") == 0
    assert value(samples, dur + "_bucket", **slow, le="5.0") == 1
    assert value(samples, dur + "_bucket", **slow, le="+Inf") == 1
    ttft = "uniapi_time_to_first_token_seconds"
    assert value(samples, ttft + "_count", **ok) == 1
    assert value(samples, ttft + "_bucket", **ok, le="0.1") == 0
    assert value(samples, ttft + "_bucket", **ok, le="0.25") == 1
    adur = "uniapi_upstream_attempt_duration_seconds"
    assert value(samples, adur + "_count", provider="openai") == 3
    assert value(samples, adur + "_sum", provider="groq") == pytest.approx(0.15)
    assert metrics.counter("uniapi_upstream_retries_total", provider="groq") == 2


def test_exposition_text_shape():
    metrics = Metrics()
    metrics.observe(record(duration=1.0))
    text = metrics.render()
    assert text.endswith("\n") and not text.endswith("\n\n")
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert lines[i + 1].startswith(f"# TYPE {name} ")
    buckets = [line for line in lines if line.startswith("uniapi_request_duration_seconds_bucket")]
    assert len(buckets) == len(m.DURATION_BUCKETS) + 1
    assert buckets[-1].endswith(',le="+Inf"} 1')
    assert 'le="1.0"} 1' in buckets[m.DURATION_BUCKETS.index(1.0)]  # a bound is inclusive
    assert 'le="0.5"} 0' in buckets[m.DURATION_BUCKETS.index(0.5)]
    assert "uniapi_stats_rows_written_total 0" in lines
    assert 'uniapi_rate_limited_total{scope="key"} 0' in lines
    assert metrics.render() == text  # rendering changes nothing


def test_nothing_secret_or_per_request_is_a_label():
    metrics = Metrics()
    metrics.observe(record(key="k-abcdefabcdef", client_ip="203.0.113.9",
                           error="sk-secret leaked in an error", wall=1.7e9))
    text = metrics.render()
    for needle in ("k-abcdefabcdef", "k-0123456789ab", "203.0.113.9", "sk-secret", "1700000000"):
        assert needle not in text


@pytest.mark.parametrize("name", ['say "hi"', "back\\slash", "new\nline", 'all \\" \n',
                                  "\\n", "ünïcödé/模型", "trailing\\"])
def test_odd_model_names_are_escaped(name):
    metrics = Metrics()
    metrics.observe(record(model=name, usage={"prompt_tokens": 1}))
    _, samples = parse(metrics.render())
    assert value(samples, "uniapi_requests_total", endpoint=CHAT, model=name, provider="openai",
                 status_class="2xx") == 1
    assert value(samples, "uniapi_tokens_total", provider="openai", model=name,
                 kind="prompt") == 1


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_label_text_survives_the_parser(name):
    metrics = Metrics()
    metrics.observe(record(model=name, tries=[attempt(provider=name)]))
    _, samples = parse(metrics.render())
    cut = name[:m.LABEL_LENGTH]
    assert value(samples, "uniapi_upstream_attempts_total", provider=cut, outcome="ok") == 1


def test_help_text_is_escaped():
    assert m._escape_help("a\\b\nc") == "a\\\\b\\nc"


def test_the_label_cap_counts_new_values_as_other():
    metrics = Metrics(label_cap=3)
    for i in range(5):
        metrics.observe(record(model=f"model-{i}", tries=[attempt(provider=f"p{i}")]))
    _, samples = parse(metrics.render())
    models = Counter()
    for (name, labels), v in samples.items():
        if name == "uniapi_requests_total":
            models[dict(labels)["model"]] += v
    assert models == {"model-0": 1, "model-1": 1, "model-2": 1, "other": 2}
    assert value(samples, "uniapi_upstream_attempts_total", provider="other", outcome="ok") == 2
    # an admitted value keeps counting under its own name
    metrics.observe(record(model="model-1", tries=[attempt(provider="p1")]))
    assert metrics.counter("uniapi_requests_total", endpoint=CHAT, model="model-1",
                           provider="p1", status_class="2xx") == 2


def test_a_model_no_upstream_saw_is_not_admitted():
    """Made-up model names refused before any upstream cannot fill the model table."""
    metrics = Metrics(label_cap=2)
    for i in range(10):
        metrics.observe(record(model=f"junk-{i}", status=400, tries=[]))
    metrics.observe(record(model="gpt-4o"))
    metrics.observe(record(model="gpt-4o", status=429, tries=[]))  # admitted: its own name
    assert metrics.counter("uniapi_requests_total", endpoint=CHAT, model="other",
                           provider="none", status_class="4xx") == 10
    assert metrics.counter("uniapi_requests_total", endpoint=CHAT, model="gpt-4o",
                           provider="none", status_class="4xx") == 1


def test_long_label_values_are_cut():
    metrics = Metrics()
    metrics.observe(record(model="m" * 5000))
    assert "m" * (m.LABEL_LENGTH + 1) not in metrics.render()
    assert metrics.counter("uniapi_requests_total", endpoint=CHAT, model="m" * m.LABEL_LENGTH,
                           provider="openai", status_class="2xx") == 1


@pytest.mark.parametrize(("path", "label"), [
    (CHAT, CHAT), (CHAT + "/", CHAT), (CHAT + "?a=b", CHAT), ("/v1/embeddings", "/v1/embeddings"),
    ("/v1/chat/completions/x", "other"), ("/", "other"), ("/.env", "other"),
    ("/v1/stats", "/v1/stats"), ("/metrics", "/metrics")])
def test_unknown_paths_are_other(path, label):
    assert m.endpoint_label(path) == label


def test_every_gateway_route_is_a_known_endpoint():
    from uniapi_core import gateway
    assert set(gateway._ROUTES) <= m.KNOWN_ENDPOINTS


@pytest.mark.parametrize(("status", "cls"), [(100, "1xx"), (200, "2xx"), (204, "2xx"),
                                             (302, "3xx"), (499, "4xx"), (503, "5xx"),
                                             (599, "5xx"), (0, "other"), (600, "other")])
def test_status_class(status, cls):
    assert m.status_class(status) == cls


def test_tokens_only_when_usage_was_reported():
    metrics = Metrics()
    metrics.observe(record(usage=None))
    metrics.observe(record(usage={}))
    metrics.observe(record(usage={"prompt_tokens": True, "completion_tokens": -1,
                                  "prompt_tokens_details": None,
                                  "completion_tokens_details": {"reasoning_tokens": "3"}}))
    assert "uniapi_tokens_total{" not in metrics.render()
    metrics.observe(record(usage={"prompt_tokens": 0}))
    assert metrics.counter("uniapi_tokens_total", provider="openai", model="gpt-4o",
                           kind="prompt") == 0
    assert 'kind="prompt"} 0' in metrics.render()  # a reported zero is a series


def test_cooldowns_from_a_callable_and_odd_scopes():
    metrics = Metrics()
    state = {"n": 4}
    metrics.set_cooldowns(lambda: state["n"])
    assert "uniapi_cooldowns_active 4" in metrics.render()
    state["n"] = 1
    assert metrics.snapshot()["gauges"]["uniapi_cooldowns_active"] == 1
    metrics.set_cooldowns(7)
    assert "uniapi_cooldowns_active 7" in metrics.render()
    metrics.rate_limited("per-ip-of-203.0.113.9")
    assert metrics.counter("uniapi_rate_limited_total", scope="other") == 1


def test_odd_times_do_not_break_the_histograms():
    metrics = Metrics()
    metrics.observe(record(duration=-1.0, ttft=math.nan))
    metrics.observe(record(duration=math.inf))
    _, samples = parse(metrics.render())
    labels = {"endpoint": CHAT, "model": "gpt-4o", "provider": "openai"}
    assert value(samples, "uniapi_request_duration_seconds_count", **labels) == 2
    assert value(samples, "uniapi_request_duration_seconds_bucket", **labels, le="0.05") == 1
    assert value(samples, "uniapi_time_to_first_token_seconds_count", **labels) == 0


# ----------------------------------------------------------------------------- snapshots


def test_snapshot_is_json_and_merge_sums_workers():
    a, b = Metrics(), Metrics()
    a.observe(record(usage={"prompt_tokens": 5}, ttft=0.1))
    b.observe(record(usage={"prompt_tokens": 6}))
    b.observe(record(status=500, tries=[attempt(outcome="status:500"),
                                        attempt("groq", "ok")]))
    a.in_flight(2), b.in_flight(1), a.connections(1), b.connections(4)
    a.set_cooldowns(1), b.set_cooldowns(2)
    a.stats_rows(3, 1), b.stats_rows(4, 0)
    a.rate_limited("key"), b.rate_limited("key")
    snaps = [json.loads(json.dumps(x.snapshot())) for x in (a, b)]
    _, samples = parse(merge(snaps).render())
    assert value(samples, "uniapi_requests_total", endpoint=CHAT, model="gpt-4o",
                 provider="openai", status_class="2xx") == 2
    assert value(samples, "uniapi_tokens_total", provider="openai", model="gpt-4o",
                 kind="prompt") == 11
    assert value(samples, "uniapi_upstream_retries_total", provider="groq") == 1
    assert value(samples, "uniapi_requests_in_flight") == 3
    assert value(samples, "uniapi_client_connections_open") == 5
    assert value(samples, "uniapi_cooldowns_active") == 3
    assert value(samples, "uniapi_stats_rows_written_total") == 7
    assert value(samples, "uniapi_rate_limited_total", scope="key") == 2
    labels = {"endpoint": CHAT, "model": "gpt-4o", "provider": "openai"}
    assert value(samples, "uniapi_request_duration_seconds_count", **labels) == 2
    assert value(samples, "uniapi_time_to_first_token_seconds_count", **labels) == 1


def test_a_retired_worker_keeps_its_counters_not_its_gauges():
    gone = Metrics()
    gone.observe(record())
    gone.in_flight(1), gone.connections(2), gone.set_cooldowns(3)
    _, samples = parse(merge([retired(gone.snapshot()), Metrics().snapshot()]).render())
    assert value(samples, "uniapi_requests_total", endpoint=CHAT, model="gpt-4o",
                 provider="openai", status_class="2xx") == 1
    assert value(samples, "uniapi_requests_in_flight") == 0
    assert value(samples, "uniapi_client_connections_open") == 0
    assert value(samples, "uniapi_cooldowns_active") == 0


def test_merge_caps_the_union_of_the_workers_values():
    workers = []
    for w in range(3):
        one = Metrics(label_cap=2)
        for i in range(2):
            one.observe(record(model=f"w{w}-m{i}"))
        workers.append(one.snapshot())
    total = merge(workers, label_cap=2)
    assert total.counter("uniapi_requests_total", endpoint=CHAT, model="other",
                         provider="openai", status_class="2xx") == 4


def test_merge_leaves_out_unknown_metrics_and_refuses_malformed_ones():
    good = Metrics()
    good.observe(record())
    snap = good.snapshot()
    newer = json.loads(json.dumps(snap))
    newer["counters"]["uniapi_something_new_total"] = [[["x"], 1]]
    assert merge([newer]).render() == good.render()
    bad_buckets = json.loads(json.dumps(snap))
    bad_buckets["histograms"]["uniapi_request_duration_seconds"]["buckets"] = [1.0]
    bad_labels = json.loads(json.dumps(snap))
    bad_labels["counters"]["uniapi_requests_total"][0][0] = ["only-one"]
    bad_value = json.loads(json.dumps(snap))
    bad_value["counters"]["uniapi_requests_total"][0][1] = "1"
    bad_hist = json.loads(json.dumps(snap))
    bad_hist["histograms"]["uniapi_request_duration_seconds"]["series"][0][1] = [1]
    for bad in ({}, {"format": 99}, [], bad_buckets, bad_labels, bad_value, bad_hist,
                {"format": 1, "counters": []}):
        with pytest.raises(SnapshotError):
            merge([bad])


# ---------------------------------------------------------------------- hypothesis: counts

PROVIDERS = st.sampled_from(["openai", "groq", "azure-east", 'we"ird'])
MODELS = st.sampled_from(["gpt-4o", "mini", "claude\\3", "new\nline"])
OUTCOMES = st.sampled_from(["ok", "client_closed", "timeout:504", "status:429", "connect:502",
                            "status:500"])
ATTEMPTS = st.builds(attempt, provider=PROVIDERS, outcome=OUTCOMES,
                     latency=st.floats(0, 400, allow_nan=False))
USAGE = st.one_of(st.none(), st.fixed_dictionaries(
    {}, optional={"prompt_tokens": st.integers(0, 10**6),
                  "completion_tokens": st.integers(0, 10**6),
                  "prompt_tokens_details": st.fixed_dictionaries(
                      {}, optional={"cached_tokens": st.integers(0, 1000)}),
                  "completion_tokens_details": st.fixed_dictionaries(
                      {}, optional={"reasoning_tokens": st.integers(0, 1000)})}))
RECORDS = st.builds(
    record, path=st.sampled_from([CHAT, "/v1/embeddings", "/v1/models", "/nope"]),
    status=st.sampled_from([200, 400, 401, 429, 499, 500, 502, 503]),
    duration=st.floats(0, 1000, allow_nan=False), model=st.one_of(st.none(), MODELS),
    tries=st.lists(ATTEMPTS, max_size=4), usage=USAGE,
    ttft=st.one_of(st.none(), st.floats(0, 100, allow_nan=False)), client_closed=st.booleans())


def model_counts(records) -> Counter:
    """What the counters should say, counted the plain way (label values below the cap)."""
    want: Counter = Counter()
    admitted: set[str] = set()
    for r in records:
        provider = r.tries[-1].provider if r.tries else "none"
        if r.model is not None and r.tries:
            admitted.add(r.model)
        model = "none" if r.model is None else r.model if r.model in admitted else "other"
        endpoint = r.path if r.path in m.KNOWN_ENDPOINTS else "other"
        want["uniapi_requests_total", endpoint, model, provider, f"{r.status // 100}xx"] += 1
        want["uniapi_request_duration_seconds_count", endpoint, model, provider] += 1
        if r.ttft is not None:
            want["uniapi_time_to_first_token_seconds_count", endpoint, model, provider] += 1
        if r.client_closed:
            want["uniapi_client_closed_requests_total", endpoint, model, provider] += 1
        for i, t in enumerate(r.tries):
            want["uniapi_upstream_attempts_total", t.provider, t.outcome.split(":")[0]] += 1
            want["uniapi_upstream_attempt_duration_seconds_count", t.provider] += 1
            if i:
                want["uniapi_upstream_retries_total", t.provider] += 1
        u = r.usage or {}
        for kind, n in (("prompt", u.get("prompt_tokens")),
                        ("completion", u.get("completion_tokens")),
                        ("cached", u.get("prompt_tokens_details", {}).get("cached_tokens")),
                        ("reasoning",
                         u.get("completion_tokens_details", {}).get("reasoning_tokens"))):
            if n is not None:
                want["uniapi_tokens_total", provider, model, kind] += n
    return want


_LABEL_ORDER = {
    "uniapi_requests_total": ("endpoint", "model", "provider", "status_class"),
    "uniapi_request_duration_seconds_count": ("endpoint", "model", "provider"),
    "uniapi_time_to_first_token_seconds_count": ("endpoint", "model", "provider"),
    "uniapi_client_closed_requests_total": ("endpoint", "model", "provider"),
    "uniapi_upstream_attempts_total": ("provider", "outcome"),
    "uniapi_upstream_attempt_duration_seconds_count": ("provider",),
    "uniapi_upstream_retries_total": ("provider",),
    "uniapi_tokens_total": ("provider", "model", "kind"),
}


def rendered_counts(text: str) -> Counter:
    got: Counter = Counter()
    for (name, labels), v in parse(text)[1].items():
        if name in _LABEL_ORDER and v:
            d = dict(labels)
            got[(name, *(d[n] for n in _LABEL_ORDER[name]))] += int(v)
    return got


@settings(max_examples=150, deadline=None)
@given(st.lists(RECORDS, max_size=25))
def test_any_records_give_the_plain_counts(records):
    metrics = Metrics()
    for r in records:
        metrics.observe(r)
    want = +model_counts(records)
    assert rendered_counts(metrics.render()) == want
    _, samples = parse(metrics.render())
    for (name, labels), v in samples.items():  # every histogram is cumulative, +Inf = count
        if name.endswith("_bucket"):
            le = dict(labels)["le"]
            if le == "+Inf":
                rest = frozenset((k, x) for k, x in labels if k != "le")
                assert v == samples[(name[:-len("_bucket")] + "_count", rest)]


@settings(max_examples=100, deadline=None)
@given(st.lists(RECORDS, max_size=20), st.lists(st.integers(0, 3), max_size=20),
       st.lists(st.tuples(st.integers(-2, 2), st.integers(-2, 2), st.integers(0, 5),
                          st.integers(0, 5)), max_size=6))
def test_merging_snapshots_equals_observing_all_in_one(records, owners, gauges):
    one = Metrics()
    workers = [Metrics() for _ in range(4)]
    for i, r in enumerate(records):
        one.observe(r)
        workers[owners[i] if i < len(owners) else 0].observe(r)
    for i, (flight, conns, written, dropped) in enumerate(gauges):
        for target in (one, workers[i % 4]):
            target.in_flight(flight)
            target.connections(conns)
            target.stats_rows(written, dropped)
            target.rate_limited("model")
    merged = merge(json.loads(json.dumps(w.snapshot())) for w in workers)
    # Below the cap the sum is exact. The admission of a model name can differ: a worker that
    # saw it only in refused requests counts it under "other". Compare without that case.
    if all(r.tries or r.model is None for r in records):
        want, got = parse(one.render())[1], parse(merged.render())[1]
        assert got.keys() == want.keys()
        for key, v in want.items():  # sums of floats, added in another order
            assert got[key] == (pytest.approx(v) if key[0].endswith("_sum") else v), key
    else:
        def total(text: str) -> float:
            return sum(v for (n, _), v in parse(text)[1].items() if n == "uniapi_requests_total")
        assert total(merged.render()) == total(one.render()) == len(records)


def test_workers_publish_and_a_scrape_sums_what_it_reads(tmp_path):
    """--workers: each writes its snapshot whole (write_snapshot), a scrape reads the others'
    (read_snapshots, its own left out) and sums them with its own live figures (summed); a
    file that does not parse is left out, not fatal."""
    import json
    import os
    from pathlib import Path

    ours, theirs = Metrics(), Metrics()
    ours.observe(record())
    for _ in range(2):
        theirs.observe(record(status=500))
    for name, source in (("a", ours), ("b", theirs)):
        m.write_snapshot(str(tmp_path / m.snapshot_file(name)),
                         json.dumps(source.snapshot()).encode(),
                         lambda p, d: Path(p).write_bytes(d), os.replace)
    (tmp_path / m.snapshot_file("c")).write_bytes(b"{not json")
    (tmp_path / "unrelated.txt").write_bytes(b"x")
    assert sorted(os.listdir(tmp_path)) == ["unrelated.txt", "worker-a.json", "worker-b.json",
                                            "worker-c.json"]  # no temporary file left
    others = m.read_snapshots(str(tmp_path), os.listdir, lambda p: Path(p).read_bytes(),
                              skip=m.snapshot_file("a"))
    assert sorted(others) == ["worker-b.json", "worker-c.json"]
    total = m.summed(ours, others)
    labels = {"endpoint": "/v1/chat/completions", "model": "gpt-4o", "provider": "openai"}
    assert total.counter("uniapi_requests_total", **labels, status_class="2xx") == 1
    assert total.counter("uniapi_requests_total", **labels, status_class="5xx") == 2
    assert m.summed(ours, {}) is ours
