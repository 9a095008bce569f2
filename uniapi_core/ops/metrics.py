"""The gateway's Prometheus metrics, as one pure state object (issue 13, ``GET /metrics``).

A :class:`Metrics` is owned by whoever serves the gateway (one per process). It is fed facts
(:meth:`Metrics.observe` with each finished request's ``ServedRecord``, and the small
``in_flight`` / ``connections`` / ``rate_limited`` / ``set_cooldowns`` / ``stats_rows`` calls)
and answers :meth:`Metrics.render`, the Prometheus text exposition format 0.0.4. It reads no
clock (every time is in the record), does no I/O and holds no global state.

Under ``--workers N`` every worker keeps its own ``Metrics``. A scrape must report the sum over
all of them, so each worker publishes :meth:`Metrics.snapshot` (a JSON-able dict) and the worker
that answers the scrape renders ``merge(snapshots)``; moving the snapshots between processes is
the transport's part. A worker that is gone keeps its counters in the sum (a counter must not go
down): publish its last snapshot through :func:`retired`, which zeroes its gauges.

Label cardinality is bounded. No key, request id or client address is ever a label. Endpoints
are a fixed set (:data:`KNOWN_ENDPOINTS`, anything else is ``"other"``). Model, provider and
outcome-kind values are taken as they come, cut to :data:`LABEL_LENGTH` characters, but each of
those labels admits at most ``label_cap`` (:data:`LABEL_CAP`, 200) distinct values per process;
later new values are counted under ``"other"``. A model name is admitted only from a request
that reached an upstream, so a client sending made-up model names that are refused before any
upstream cannot fill the table (they count under ``"other"`` unless already admitted).
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .records import RecordLike

#: distinct values each capped label (model, provider, outcome) admits per Metrics object
LABEL_CAP = 200
#: a longer label value is cut to this many characters
LABEL_LENGTH = 200
#: the value that stands for every value over the cap, and every unknown endpoint
OTHER = "other"
#: the model or provider of a request that had none (not a model endpoint, no upstream)
NONE = "none"

#: the gateway's endpoints; any other path is counted as ``"other"`` (a path is client data)
KNOWN_ENDPOINTS = frozenset({
    "/healthz", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/embeddings",
    "/v1/moderations", "/v1/images/generations", "/v1/audio/transcriptions",
    "/v1/generate-api-key", "/v1/stats", "/v1/token_usage", "/v1/reload", "/v1/messages",
    "/v1/messages/count_tokens", "/v1/responses",
})

#: the Gemini front's methods, each an endpoint label of its own
GEMINI_METHODS = frozenset({"generateContent", "streamGenerateContent", "countTokens"})

#: request duration buckets (seconds): LLM answers take from tens of ms to minutes
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
#: time-to-first-token buckets (seconds)
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)

#: the rate-limit scopes a refusal is counted under (anything else: "other")
RATE_LIMIT_SCOPES = ("key", "model")
#: token kinds: (kind, usage field, sub-object holding it or None)
TOKEN_FIELDS = (("prompt", "prompt_tokens", None),
                ("completion", "completion_tokens", None),
                ("reasoning", "reasoning_tokens", "completion_tokens_details"),
                ("cached", "cached_tokens", "prompt_tokens_details"))

#: the snapshot format this module writes and merges
SNAPSHOT_FORMAT = 1


# name, type, help, labels, buckets (histograms only). The order here is the render order.
_REQUESTS = "uniapi_requests_total"
_DURATION = "uniapi_request_duration_seconds"
_TTFT = "uniapi_time_to_first_token_seconds"
_IN_FLIGHT = "uniapi_requests_in_flight"
_CLOSED = "uniapi_client_closed_requests_total"
_ATTEMPTS = "uniapi_upstream_attempts_total"
_ATTEMPT_DURATION = "uniapi_upstream_attempt_duration_seconds"
_RETRIES = "uniapi_upstream_retries_total"
_RATE_LIMITED = "uniapi_rate_limited_total"
_COOLDOWNS = "uniapi_cooldowns_active"
_TOKENS = "uniapi_tokens_total"
_ROWS_WRITTEN = "uniapi_stats_rows_written_total"
_ROWS_DROPPED = "uniapi_stats_rows_dropped_total"
_CONNECTIONS = "uniapi_client_connections_open"
_SHED = "uniapi_connections_shed_total"
_REFUSED = "uniapi_connections_refused_total"
_SHARED_DEGRADED = "uniapi_shared_state_degraded"
_SHARED_FALLBACKS = "uniapi_shared_state_fallbacks_total"

_REQ_LABELS = ("endpoint", "model", "provider")
SPECS: tuple[tuple[str, str, str, tuple[str, ...], tuple[float, ...]], ...] = (
    (_REQUESTS, "counter", ("Client requests finished, by endpoint, requested model, the "
                            "provider of the last upstream attempt and status class."),
     (*_REQ_LABELS, "status_class"), ()),
    (_DURATION, "histogram", "Seconds from a request's arrival to its end.",
     _REQ_LABELS, DURATION_BUCKETS),
    (_TTFT, "histogram", ("Seconds from a request's arrival to the first byte of its "
                          "answer body."), _REQ_LABELS, TTFT_BUCKETS),
    (_IN_FLIGHT, "gauge", "Requests being served now.", (), ()),
    (_CLOSED, "counter", "Requests whose client left before the answer ended.",
     _REQ_LABELS, ()),
    (_ATTEMPTS, "counter", ("Upstream attempts, by provider and outcome kind (ok, "
                            "client_closed, or the failure kind: timeout, status, connect...)."),
     ("provider", "outcome"), ()),
    (_ATTEMPT_DURATION, "histogram", "Seconds from an upstream attempt's start to its end.",
     ("provider",), DURATION_BUCKETS),
    (_RETRIES, "counter", "Upstream attempts beyond a request's first, by the provider tried.",
     ("provider",), ()),
    (_RATE_LIMITED, "counter", "Requests refused by a rate limit, by the limit's scope.",
     ("scope",), ()),
    (_COOLDOWNS, "gauge", "Upstream channels or keys cooling down after failures now.", (), ()),
    (_TOKENS, "counter", ("Tokens the upstreams reported, by provider, requested model and "
                          "kind (prompt, completion, reasoning, cached)."), ("provider", "model", "kind"), ()),
    (_ROWS_WRITTEN, "counter", "Stats rows written to the stats store.", (), ()),
    (_ROWS_DROPPED, "counter", "Stats rows dropped because the write queue was full.", (), ()),
    (_CONNECTIONS, "gauge", "Client connections open now.", (), ()),
    (_SHED, "counter", ("Idle client connections closed under pressure: to make room for a new "
                        "one at the connection cap (--max-connections), or when their idle "
                        "timeout, shrunk past half the cap, ran out."), (), ()),
    (_REFUSED, "counter", ("Client connections refused at the connection cap because none "
                           "was idle to make room."), (), ()),
    (_SHARED_DEGRADED, "gauge", ("1 while this process decides on its own state because the "
                                 "shared-state Redis (--redis-url) did not answer its last "
                                 "decision in time; summed over --workers."), (), ()),
    (_SHARED_FALLBACKS, "counter", ("Routing decisions made on this process's own state "
                                    "because the shared-state Redis did not answer in time."),
     (), ()),
)
_SPEC = {spec[0]: spec for spec in SPECS}
#: each histogram's bucket bounds
_BUCKETS = {spec[0]: spec[4] for spec in SPECS if spec[1] == "histogram"}
#: the labels whose values are capped (and cut to LABEL_LENGTH)
CAPPED = frozenset({"model", "provider", "outcome"})


class SnapshotError(ValueError):
    """A snapshot :func:`merge` cannot read (malformed, or written with other buckets)."""


class _Hist:
    """One histogram series: per-bucket counts (not cumulative; the last is above every
    bound), their sum."""

    __slots__ = ("counts", "total")

    def __init__(self, size: int) -> None:
        self.counts = [0] * size
        self.total = 0.0


class Metrics:
    """The metrics of one gateway process (module docstring). ``label_cap``: distinct values
    per capped label before ``"other"``."""

    def __init__(self, label_cap: int = LABEL_CAP) -> None:
        self._cap = label_cap
        self._seen: dict[str, set[str]] = {label: set() for label in CAPPED}
        self._counters: dict[str, dict[tuple[str, ...], int]] = {
            name: {} for name, kind, *_ in SPECS if kind == "counter"}
        self._hists: dict[str, dict[tuple[str, ...], _Hist]] = {
            name: {} for name, kind, *_ in SPECS if kind == "histogram"}
        self._gauges: dict[str, int] = {
            name: 0 for name, kind, *_ in SPECS if kind == "gauge"}
        self._cooldown_source: Callable[[], int] | None = None
        for scope in RATE_LIMIT_SCOPES:  # both series exist from the start, at 0
            self._counters[_RATE_LIMITED][(scope,)] = 0
        for name, _kind, _help, labels, _buckets in SPECS:
            if not labels and name in self._counters:
                self._counters[name][()] = 0

    # -- feeding ---------------------------------------------------------------------------

    def observe(self, record: RecordLike) -> None:
        """Count one finished request (``ServedRecord``)."""
        tries = record.tries
        attempts: Iterable[tuple[str, str, float | None]]
        if tries:
            attempts = [(t.provider, t.outcome, t.latency) for t in tries]
        else:
            attempts = [(provider, outcome, None) for provider, _m, outcome in record.attempts]
        provider = NONE
        counters = self._counters
        admit = self._admit
        hist = self._hist
        first = True  # no attempt seen yet; after the loop: the request reached no upstream
        for raw_provider, outcome, latency in attempts:
            provider = admit("provider", raw_provider, True)
            kind = admit("outcome", outcome.partition(":")[0], True)
            _add(counters[_ATTEMPTS], (provider, kind), 1)
            if latency is not None:
                hist(_ATTEMPT_DURATION, (provider,), latency)
            if not first:
                _add(counters[_RETRIES], (provider,), 1)
            first = False
        model = NONE if record.model is None else admit("model", record.model, not first)
        path = record.path
        endpoint = path if path in KNOWN_ENDPOINTS else endpoint_label(path)
        labels = (endpoint, model, provider)
        status = record.status
        _add(counters[_REQUESTS],
             (*labels, _STATUS_CLASS.get(status) or status_class(status)), 1)
        hist(_DURATION, labels, record.duration)
        if record.ttft is not None:
            hist(_TTFT, labels, record.ttft)
        if record.client_closed:
            _add(counters[_CLOSED], labels, 1)
        usage = record.usage
        if type(usage) is dict:
            tokens = counters[_TOKENS]
            for kind, field, holder in TOKEN_FIELDS:
                where = usage if holder is None else usage.get(holder)
                count = where.get(field) if type(where) is dict else None
                if type(count) is int and count >= 0:
                    _add(tokens, (provider, model, kind), count)

    def in_flight(self, delta: int) -> None:
        """A request started (+1) or ended (-1)."""
        self._gauges[_IN_FLIGHT] += delta

    def connections(self, delta: int) -> None:
        """A client connection opened (+1) or closed (-1)."""
        self._gauges[_CONNECTIONS] += delta

    def connection_shed(self) -> None:
        """An idle connection was closed to make room at the cap."""
        _add(self._counters[_SHED], (), 1)

    def connection_refused(self) -> None:
        """A connection was refused at the cap, none being idle."""
        _add(self._counters[_REFUSED], (), 1)

    def rate_limited(self, scope: str) -> None:
        """A request was refused by a rate limit of ``scope`` ("key" or "model")."""
        _add(self._counters[_RATE_LIMITED],
             (scope if scope in RATE_LIMIT_SCOPES else OTHER,), 1)

    def set_cooldowns(self, n: int | Callable[[], int]) -> None:
        """The number of cooling-down channels now, or a callable asked at each
        ``render``/``snapshot`` (it must be pure: it is called from the core)."""
        if callable(n):
            self._cooldown_source = n
        else:
            self._cooldown_source = None
            self._gauges[_COOLDOWNS] = n

    def shared_state(self, degraded: bool, fallbacks: int) -> None:
        """Whether the last shared decision fell back, and how many have since start."""
        self._gauges[_SHARED_DEGRADED] = int(degraded)
        series = self._counters[_SHARED_FALLBACKS]
        series[()] = max(series.get((), 0), fallbacks)  # a counter never goes down

    def stats_rows(self, written: int, dropped: int) -> None:
        """``written`` more stats rows were stored and ``dropped`` more were dropped (counts
        since the last call, not totals)."""
        _add(self._counters[_ROWS_WRITTEN], (), max(written, 0))  # a counter never goes down
        _add(self._counters[_ROWS_DROPPED], (), max(dropped, 0))

    # -- reading ---------------------------------------------------------------------------

    def counter(self, name: str, **labels: str) -> int:
        """One counter series' value (0 if never counted): for tests and status pages."""
        labelnames = _SPEC[name][3]
        return self._counters[name].get(tuple(labels[n] for n in labelnames), 0)

    def gauge(self, name: str) -> int:
        """One gauge's value now."""
        if name == _COOLDOWNS and self._cooldown_source is not None:
            return self._cooldown_source()
        return self._gauges[name]

    def snapshot(self) -> dict[str, Any]:
        """Everything counted, as plain JSON-able data (:func:`merge` sums these)."""
        return {
            "format": SNAPSHOT_FORMAT,
            "counters": {name: [[list(k), v] for k, v in sorted(series.items())]
                         for name, series in self._counters.items()},
            "gauges": {name: self.gauge(name) for name in self._gauges},
            "histograms": {
                name: {"buckets": list(_SPEC[name][4]),
                       "series": [[list(k), list(h.counts), h.total]
                                  for k, h in sorted(series.items())]}
                for name, series in self._hists.items()},
        }

    def render(self) -> str:
        """The Prometheus text exposition format 0.0.4 (``text/plain; version=0.0.4``):
        metrics in :data:`SPECS` order, series sorted by their label values."""
        out: list[str] = []
        for name, kind, help_text, labelnames, buckets in SPECS:
            out.append(f"# HELP {name} {_escape_help(help_text)}")
            out.append(f"# TYPE {name} {kind}")
            if kind == "gauge":
                out.append(f"{name} {self.gauge(name)}")
            elif kind == "counter":
                for key, value in sorted(self._counters[name].items()):
                    out.append(f"{name}{_labels(labelnames, key)} {value}")
            else:
                bounds = [_number(b) for b in buckets] + ["+Inf"]
                for key, hist in sorted(self._hists[name].items()):
                    running = 0
                    for bound, count in zip(bounds, hist.counts):
                        running += count
                        le = _labels((*labelnames, "le"), (*key, bound))
                        out.append(f"{name}_bucket{le} {running}")
                    lab = _labels(labelnames, key)
                    out.append(f"{name}_sum{lab} {_number(hist.total)}")
                    out.append(f"{name}_count{lab} {running}")
        out.append("")
        return "\n".join(out)

    # -- inside ----------------------------------------------------------------------------

    def _admit(self, label: str, value: str, may_add: bool) -> str:
        """``value`` as a label value of ``label``: cut, and ``"other"`` once the cap is
        full (or when ``may_add`` is false and it was never admitted)."""
        if len(value) > LABEL_LENGTH:
            value = value[:LABEL_LENGTH]
        seen = self._seen[label]
        if value in seen or value == OTHER or value == NONE:
            return value
        if may_add and len(seen) < self._cap:
            seen.add(value)
            return value
        return OTHER

    def _hist(self, name: str, key: tuple[str, ...], value: float) -> None:
        if value != value:  # NaN: nothing to place
            return
        series = self._hists[name]
        hist = series.get(key)
        buckets = _BUCKETS[name]
        if hist is None:
            hist = series[key] = _Hist(len(buckets) + 1)
        if value < 0.0:
            value = 0.0
        hist.counts[bisect.bisect_left(buckets, value)] += 1
        hist.total += value

    def _merge_one(self, snap: Mapping[str, Any]) -> None:
        if not isinstance(snap, Mapping) or snap.get("format") != SNAPSHOT_FORMAT:
            raise SnapshotError(f"not a metrics snapshot of format {SNAPSHOT_FORMAT}")
        for name, series in _items(snap, "counters"):
            if name not in self._counters:
                continue  # a metric this version does not have (a newer worker): left out
            labelnames = _SPEC[name][3]
            for labels, value in _pairs(series):
                if type(value) is not int:
                    raise SnapshotError(f"{name}: a counter value must be an integer")
                _add(self._counters[name], self._relabel(name, labelnames, labels), value)
        for name, value in _items(snap, "gauges"):
            if name in self._gauges:
                if type(value) is not int:
                    raise SnapshotError(f"{name}: a gauge value must be an integer")
                self._gauges[name] += value
        for name, hist in _items(snap, "histograms"):
            if name not in self._hists:
                continue
            _name, _kind, _help, labelnames, buckets = _SPEC[name]
            if not isinstance(hist, Mapping) or list(hist.get("buckets", ())) != list(buckets):
                raise SnapshotError(f"{name}: the buckets differ from this version's")
            for entry in _list(hist.get("series")):
                if not isinstance(entry, list) or len(entry) != 3:
                    raise SnapshotError(f"{name}: a series is [labels, counts, sum]")
                labels, counts, total = entry
                if not isinstance(counts, list) or len(counts) != len(buckets) + 1 or \
                        any(type(c) is not int for c in counts) or \
                        not isinstance(total, (int, float)) or isinstance(total, bool):
                    raise SnapshotError(f"{name}: malformed histogram series")
                key = self._relabel(name, labelnames, labels)
                mine = self._hists[name].get(key)
                if mine is None:
                    mine = self._hists[name][key] = _Hist(len(buckets) + 1)
                mine.counts = [a + b for a, b in zip(mine.counts, counts)]
                mine.total += total

    def _relabel(self, name: str, labelnames: tuple[str, ...], labels: Any) -> tuple[str, ...]:
        if not isinstance(labels, list) or len(labels) != len(labelnames) or \
                any(not isinstance(v, str) for v in labels):
            raise SnapshotError(f"{name}: labels must be {len(labelnames)} strings")
        return tuple(self._admit(n, v, True) if n in CAPPED else v
                     for n, v in zip(labelnames, labels))


def merge(snapshots: Iterable[Mapping[str, Any]], label_cap: int = LABEL_CAP) -> Metrics:
    """A Metrics holding the sum of ``snapshots`` (one per worker): counters, gauges and
    histogram buckets are added series by series. Capped labels are capped again, in the
    order given (the union of the workers' values may pass the cap). Metrics a snapshot has
    and this version does not are left out; a malformed snapshot raises SnapshotError."""
    total = Metrics(label_cap)
    for snap in snapshots:
        total._merge_one(snap)
    return total


def retired(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """The snapshot of a worker that has exited: its counters and histograms still count
    (a scraped counter must never go down), its gauges (in flight, connections, cooldowns)
    are zero."""
    out = dict(snapshot)
    out["gauges"] = {name: 0 for name in _list_keys(snapshot.get("gauges"))}
    return out


def endpoint_label(path: str) -> str:
    """The endpoint label of a request path: a known endpoint, the Gemini front's method
    (``/v1beta/models/*:generateContent``: the model is not a label), else ``"other"``."""
    path = path.partition("?")[0]
    if path in KNOWN_ENDPOINTS:
        return path
    path = path.rstrip("/")
    if path in KNOWN_ENDPOINTS:
        return path
    method = path.rpartition(":")[2]
    if method in GEMINI_METHODS and path.startswith(("/v1beta/models/", "/v1/models/")):
        return f"/v1beta/models/*:{method}"
    return OTHER


#: the status classes of the common statuses, looked up before ``status_class`` computes one
_STATUS_CLASS = {status: f"{status // 100}xx" for status in range(100, 600)}


def status_class(status: int) -> str:
    """``"2xx"`` for 200..299 and so on; ``"other"`` outside 100..599."""
    return f"{status // 100}xx" if 100 <= status <= 599 else OTHER


def escape_label_value(value: str) -> str:
    """A label value inside its double quotes: backslash, double quote and newline escaped."""
    if "\\" in value or '"' in value or "\n" in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    inner = ",".join(f'{n}="{escape_label_value(v)}"' for n, v in zip(names, values))
    return "{" + inner + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


def _add(series: dict[tuple[str, ...], int], key: tuple[str, ...], amount: int) -> None:
    series[key] = series.get(key, 0) + amount


def _items(snap: Mapping[str, Any], part: str) -> list[tuple[str, Any]]:
    value = snap.get(part, {})
    if not isinstance(value, Mapping):
        raise SnapshotError(f"a snapshot's {part} is an object")
    return sorted(value.items())


def _pairs(series: Any) -> list[tuple[Any, Any]]:
    out = []
    for entry in _list(series):
        if not isinstance(entry, list) or len(entry) != 2:
            raise SnapshotError("a counter series is [labels, value]")
        out.append((entry[0], entry[1]))
    return out


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise SnapshotError("a snapshot's series are a list")
    return value


def _list_keys(value: Any) -> list[str]:
    return list(value) if isinstance(value, Mapping) else []


# --- workers: every process publishes a snapshot, the one scraped sums them ------------------

#: how often a worker rewrites its snapshot file (seconds); a scrape is at most this stale for
#: the other workers
PUBLISH_EVERY = 1.0


def snapshot_file(worker: str) -> str:
    """The name of ``worker``'s snapshot file in the shared directory."""
    return f"worker-{worker}.json"


def read_snapshots(directory: str, listdir: Callable[[str], list[str]],
                   read_bytes: Callable[[str], bytes], skip: str) -> dict[str, bytes]:
    """The snapshot files of ``directory`` but ``skip`` (the reader's own), read with the
    transport's ``listdir`` and ``read_bytes`` (``os.listdir``, ``Path.read_bytes``): blocking,
    for a worker thread. A file that vanished or cannot be read is left out."""
    out: dict[str, bytes] = {}
    for name in sorted(listdir(directory)):
        if name.startswith("worker-") and name.endswith(".json") and name != skip:
            try:
                out[name] = read_bytes(f"{directory}/{name}")
            except OSError:
                continue
    return out


def write_snapshot(path: str, data: bytes, write_bytes: Callable[[str, bytes], Any],
                   replace: Callable[[str, str], Any]) -> None:
    """Publish ``data`` at ``path`` whole or not at all (a temporary file, then renamed), with
    the transport's ``write_bytes`` and ``replace``: blocking, for a worker thread."""
    write_bytes(path + ".tmp", data)
    replace(path + ".tmp", path)


def summed(own: Metrics, others: Mapping[str, bytes]) -> Metrics:
    """``own`` (live) plus the other workers' published snapshots; one that does not parse is
    left out rather than failing the scrape."""
    snaps: list[Mapping[str, Any]] = [own.snapshot()]
    for data in others.values():
        try:
            snap = json.loads(data)
            merge([snap])  # checked alone first: one bad file must not spoil the sum
        except (ValueError, SnapshotError, RecursionError):
            continue
        snaps.append(snap)
    return merge(snaps) if len(snaps) > 1 else own
