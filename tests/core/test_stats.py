"""The stats store (uniapi_core/ops/stats.py, issue 13): configuration, migrations, rows,
the bounded queue and the /v1/stats and /v1/token_usage queries.

The module is pure; these tests do its I/O: every store test runs on a real ``sqlite3``
database in a temporary directory and on a real PostgreSQL server the tests start
(tests/fakes/postgres.py) through ``psycopg``. Without the PostgreSQL binaries the PostgreSQL
half is skipped on a developer's machine and FAILS under ``CI`` (install Debian's
``postgresql``)."""

from __future__ import annotations

import contextlib
import importlib
import itertools
import math
import os
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes import postgres
from uniapi_core.ops import stats
from uniapi_core.ops.stats import (
    MIGRATIONS,
    POSTGRES,
    SQLITE,
    DbWork,
    Migration,
    StatsQuery,
    StatsQueryError,
    StatsQueue,
    StoreConfig,
    StoreConfigError,
    TokenUsageQuery,
    migrate_work,
    rows_of,
    usage_window,
)
from uniapi_core.relay import AttemptRecord as Attempt
from uniapi_core.request_machine import ServedRecord as Record

WALL = 1_750_000_000.0  # the injected wall clock of these tests


# --- records: the real ServedRecord and AttemptRecord ----------------------------------------

BASE = Record(method="POST", path="/v1/chat/completions", status=200, duration=1.5,
              attempts=(("openai", "gpt-4o", "ok"),), client_closed=False,
              usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                     "prompt_tokens_details": {"cached_tokens": 4},
                     "completion_tokens_details": {"reasoning_tokens": 2}},
              wall=WALL - 60, key="k-0123456789ab", model="gpt", ttft=0.25,
              client_ip="10.0.0.1", error=None,
              tries=(Attempt("openai", "gpt-4o", "ok", "k-up0000000001", 1.4),))


def record(**changes: Any) -> Record:
    """A successful chat request a minute ago, with ``changes``."""
    return attrs.evolve(BASE, **changes)


# --- the two backends ------------------------------------------------------------------------

@pytest.fixture(scope="session")
def pg_server() -> Iterator[postgres.PgServer]:
    why = postgres.missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"{why}. CI is set, so the PostgreSQL stats store must be tested: "
                        f".ci/run installs the Debian package {postgres.DEBIAN_PACKAGE!r}.")
        pytest.skip(why)
    server = postgres.start()
    yield server
    server.stop()


_dbs = itertools.count()


@attrs.define
class Backend:
    """A fresh, empty store and the connections opened on it (closed at teardown)."""

    config: StoreConfig
    conns: list[Any] = attrs.Factory(list)

    @property
    def dialect(self) -> stats.Dialect:
        return self.config.dialect

    def connect(self) -> Any:
        conn = self.config.open(importlib.import_module, os.makedirs)  # as a transport does
        self.conns.append(conn)
        return conn

    def readonly(self) -> Any:
        """A connection on which every write fails."""
        if self.config.kind == "sqlite":
            conn = sqlite3.connect(f"file:{self.config.path}?mode=ro", uri=True,
                                   isolation_level=None)
        else:
            conn = self.connect()
            conn.execute("SET default_transaction_read_only = on")
            conn.commit()
        self.conns.append(conn)
        return conn

    def close(self) -> None:
        for conn in self.conns:
            conn.close()


@contextlib.contextmanager
def pg_database(server: postgres.PgServer) -> Iterator[Backend]:
    """A store on a new database of the test server, dropped afterwards."""
    import psycopg

    name = f"stats_{os.getpid()}_{next(_dbs)}"
    with psycopg.connect(**server.connect_kwargs("postgres"), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    store = Backend(StoreConfig.from_env(server.env(name)))
    try:
        yield store
    finally:
        store.close()
        with psycopg.connect(**server.connect_kwargs("postgres"), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        store = Backend(StoreConfig.from_env({"DB_PATH": str(tmp_path / "data" / "stats.db")}))
        yield store
        store.close()
    else:
        with pg_database(request.getfixturevalue("pg_server")) as store:
            yield store


def migrated(store: Backend) -> Any:
    conn = store.connect()
    migrate_work(store.dialect, WALL).apply(conn)
    return conn


def write(store: Backend, conn: Any, records: list[Record], batch: int = 7) -> StatsQueue:
    queue = StatsQueue(store.dialect, "test", batch=batch, limit=len(records) + 1)
    for rec in records:
        assert queue.add(rec, 0.0)
    while (work := queue.take(0.0, flush=True)) is not None:
        work.apply(conn)
        queue.done(work, True, None, 0.0)
    assert queue.written == len(records)
    return queue


def clear(conn: Any) -> None:
    DbWork((stats.Stmt(f"DELETE FROM {stats.REQUESTS}"), stats.Stmt(f"DELETE FROM {stats.ATTEMPTS}")),
           begin=None).apply(conn)


# --- configuration ---------------------------------------------------------------------------

def test_store_config_defaults_are_uni_apis():
    config = StoreConfig.from_env({})
    assert config.enabled and config.kind == "sqlite" and config.path == "./data/stats.db"
    assert config.module == "sqlite3" and config.dialect is SQLITE
    assert config.directory == "data"
    assert config.connect_args() == (("./data/stats.db",), {
        "timeout": 5.0, "isolation_level": None, "check_same_thread": False})
    assert StoreConfig.from_env({"DB_PATH": ""}).path == "./data/stats.db"
    assert StoreConfig.from_env({"DB_PATH": "/var/lib/u/s.db"}).directory == "/var/lib/u"


@pytest.mark.parametrize("value, enabled", [("true", False), ("TRUE", False), ("True", False),
                                            ("false", True), ("1", True), ("yes", True),
                                            (" true", True), ("", True)])
def test_only_the_text_true_disables_the_database(value, enabled):
    config = StoreConfig.from_env({"DISABLE_DATABASE": value})
    assert config.enabled is enabled
    assert ("off" in config.describe()) is not enabled


def test_open_makes_the_directory_then_connects_with_what_it_is_given():
    calls: list[Any] = []

    class Driver:
        @staticmethod
        def connect(*args: Any, **kwargs: Any) -> str:
            calls.append(("connect", args, kwargs))
            return "conn"

    def import_module(name: str) -> type[Driver]:
        calls.append(("import", name))
        return Driver

    def makedirs(path: str, exist_ok: bool = False) -> None:
        calls.append(("makedirs", path, exist_ok))

    config = StoreConfig.from_env({"DB_PATH": "/srv/u/stats.db"})
    assert config.open(import_module, makedirs) == "conn"
    assert calls == [("makedirs", "/srv/u", True), ("import", "sqlite3"),
                     ("connect", ("/srv/u/stats.db",), config.connect_args()[1])]
    calls.clear()
    StoreConfig.from_env({"DB_TYPE": "postgres"}).open(import_module, makedirs)
    assert [c[0] for c in calls] == ["import", "connect"] and calls[0][1] == "psycopg"


def test_postgres_config_and_its_password_stays_out_of_reprs():
    env = {"DB_TYPE": "Postgres", "DB_USER": "u", "DB_PASSWORD": "s3cr3t-pw", "DB_HOST": "db",
           "DB_PORT": "6543", "DB_NAME": "stats"}
    config = StoreConfig.from_env(env)
    assert (config.kind, config.module, config.dialect) == ("postgres", "psycopg", POSTGRES)
    assert config.directory is None
    args, kwargs = config.connect_args()
    assert args == () and kwargs["password"] == "s3cr3t-pw" and kwargs["port"] == 6543
    assert kwargs["dbname"] == "stats" and kwargs["autocommit"] is False
    for text in (repr(config), str(config), config.describe()):
        assert "s3cr3t-pw" not in text
    assert config.describe() == "stats: postgres u@db:6543/stats"
    defaults = StoreConfig.from_env({"DB_TYPE": "postgres"})
    assert (defaults.user, defaults.password, defaults.host, defaults.port, defaults.name) == \
        ("postgres", "mysecretpassword", "localhost", 5432, "postgres")


@pytest.mark.parametrize("env", [{"DB_TYPE": "mysql"}, {"DB_PORT": "x"}, {"DB_PORT": "0"},
                                 {"DB_PORT": "70000"}])
def test_bad_values_are_refused_with_their_name(env):
    with pytest.raises(StoreConfigError, match=next(iter(env))):
        StoreConfig.from_env(env)


# --- migrations ------------------------------------------------------------------------------

def _version_rows(store: Backend, conn: Any) -> list[Any]:
    return DbWork((stats.Stmt(f"SELECT version, name, applied_at FROM {stats.VERSIONS} "
                              "ORDER BY version"),)).apply(conn)[0]


def _tables(store: Backend, conn: Any) -> set[str]:
    sql = ("SELECT name FROM sqlite_master WHERE type = 'table'" if store.config.kind == "sqlite"
           else "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {row[0] for row in DbWork((stats.Stmt(sql),)).apply(conn)[0]}


def test_migrations_run_once_each_in_a_transaction(backend):
    conn = backend.connect()
    n = MIGRATIONS[-1].version  # the newest version
    assert [m.version for m in MIGRATIONS] == list(range(1, n + 1))
    assert migrate_work(backend.dialect, WALL).apply(conn) == [
        [(0,)], [(m.version,) for m in MIGRATIONS]]
    assert migrate_work(backend.dialect, WALL + 1).apply(conn) == [[(n,)], []]
    assert _version_rows(backend, conn) == [(m.version, m.name, WALL) for m in MIGRATIONS]
    assert {stats.REQUESTS, stats.ATTEMPTS, stats.VERSIONS} <= _tables(backend, conn)

    extra = Migration(n + 1, "a column", (f"ALTER TABLE {stats.REQUESTS} ADD COLUMN note TEXT",))
    later = (*MIGRATIONS, extra)
    other = backend.connect()  # another worker or instance starting later
    assert migrate_work(backend.dialect, WALL + 2, later).apply(other) == [[(n,)], [(n + 1,)]]
    assert migrate_work(backend.dialect, WALL + 3, later).apply(conn) == [[(n + 1,)], []]

    broken = Migration(n + 2, "broken", ("CREATE TABLE half_done (a INTEGER)",
                                         "CREATE TABLE broken (a NOT_A_TYPE_AT_ALL(",))
    with pytest.raises(Exception):  # noqa: B017 - each engine raises its own error class
        migrate_work(backend.dialect, WALL + 4, (*later, broken)).apply(conn)
    assert "half_done" not in _tables(backend, conn)  # rolled back with the failed statement
    assert [row[0] for row in _version_rows(backend, conn)] == list(range(1, n + 2))
    assert migrate_work(backend.dialect, WALL + 5, later).apply(conn) == [[(n + 1,)], []]


def test_a_store_written_by_a_newer_gateway_is_left_alone(backend):
    conn = backend.connect()
    future = (*MIGRATIONS, Migration(9, "future", (f"CREATE TABLE {stats.REQUESTS}_x (a INTEGER)",)))
    migrate_work(backend.dialect, WALL, future).apply(conn)
    assert migrate_work(backend.dialect, WALL).apply(conn) == [[(9,)], []]


# --- rows ------------------------------------------------------------------------------------

def _request(rows: stats.StatRows) -> dict[str, Any]:
    return dict(zip(stats.REQUEST_COLUMNS, rows.request))


def test_rows_of_a_request_and_its_attempts():
    rec = record(tries=(Attempt("a", "m-a", "timeout:504", "k-aaaaaaaaaaaa", 30.0),
                        Attempt("b", "m-b", "ok", None, 1.25)), model="alias")
    rows = rows_of(rec, "inst-7")
    row = _request(rows)
    assert row == {
        "id": "inst-7", "ts": WALL - 60, "endpoint": "POST /v1/chat/completions",
        "client_key": "k-0123456789ab", "model": "alias", "upstream_model": "m-b",
        "provider": "b", "status": 200, "attempts": 2, "latency": 1.5, "ttft": 0.25,
        "client_ip": "10.0.0.1", "error": None, "client_closed": 0,
        "prompt_tokens": 10, "prompt_source": "reported", "completion_tokens": 5,
        "completion_source": "reported", "reasoning_tokens": 2, "reasoning_source": "reported",
        "cached_tokens": 4, "cached_source": "reported"}
    assert [dict(zip(stats.ATTEMPT_COLUMNS, a)) for a in rows.attempts] == [
        {"request_id": "inst-7", "seq": 0, "ts": WALL - 60, "provider": "a", "model": "m-a",
         "requested_model": "alias", "upstream_key": "k-aaaaaaaaaaaa", "outcome": "timeout:504",
         "ok": 0, "latency": 30.0},
        {"request_id": "inst-7", "seq": 1, "ts": WALL - 60, "provider": "b", "model": "m-b",
         "requested_model": "alias", "upstream_key": None, "outcome": "ok", "ok": 1,
         "latency": 1.25}]


def test_the_older_attempts_shape_still_gives_attempt_rows():
    rows = rows_of(record(tries=(), attempts=(("p", "m", "status:429"), ("q", "n", "ok"))))
    assert [(a[3], a[4], a[7], a[8], a[9]) for a in rows.attempts] == [
        ("p", "m", "status:429", 0, None), ("q", "n", "ok", 1, None)]
    assert _request(rows)["provider"] == "q" and _request(rows)["attempts"] == 2


@pytest.mark.parametrize("usage, expected", [
    (None, [None] * 8),
    ({}, [None] * 8),
    ({"prompt_tokens": 3}, [3, "reported"] + [None] * 6),
    ({"prompt_tokens": 0, "completion_tokens": 0},
     [0, "reported", 0, "reported", None, None, None, None]),  # a reported zero stays a zero
    ({"prompt_tokens": 3, "completion_tokens": 4, "estimated": True},
     [3, "estimated", 4, "estimated", None, None, None, None]),
    ({"prompt_tokens": True, "completion_tokens": -1, "prompt_tokens_details": [],
      "completion_tokens_details": {"reasoning_tokens": "2"}}, [None] * 8),
    ({"prompt_tokens": 1024.0, "completion_tokens": 1.5, "prompt_tokens_details": None,
      "completion_tokens_details": {"reasoning_tokens": 2 ** 41}},
     [1024, "reported"] + [None] * 6),
    ({"prompt_tokens_details": {"cached_tokens": 8}}, [None] * 6 + [8, "reported"]),
])
def test_token_counts_keep_their_source_and_absent_is_null(usage, expected):
    row = _request(rows_of(record(usage=usage), "x"))
    assert [row[f"{k}_{s}"] for k in stats.TOKEN_KINDS for s in ("tokens", "source")] == expected


def test_texts_are_made_storable_and_numbers_sane():
    rows = rows_of(record(error="bad\x00thing \ud800" + "e" * 5000, model="m\x00",
                          client_ip="\udcff", duration=float("nan"), ttft=-1.0, wall=float("inf"),
                          tries=(Attempt("p\x00", "m", "ok", None, float("inf")),)), "x")
    row = _request(rows)
    assert row["error"].startswith("bad\ufffdthing ?") and len(row["error"]) == stats.MAX_ERROR
    assert row["model"] == "m\ufffd" and row["client_ip"] == "?"
    assert row["latency"] is None and row["ttft"] is None and row["ts"] == 0.0
    assert rows.attempts[0][3] == "p\ufffd" and rows.attempts[0][9] is None


def test_a_record_alone_gives_a_stable_id():
    assert rows_of(record()).request[0] == rows_of(record()).request[0]
    assert rows_of(record()).request[0] != rows_of(record(status=502)).request[0]
    queue = StatsQueue(SQLITE, "inst")
    queue.add(record(), 0.0)
    queue.add(record(), 0.0)
    work = queue.take(0.0, flush=True)
    assert [r[0] for r in stats.request_rows(work)] == ["inst-0", "inst-1"]
    assert len(stats.new_instance_id(__import__("random").Random(1))) == 16


def test_rows_round_trip_through_the_store(backend):
    conn = migrated(backend)
    recs = [record(),
            record(usage=None, tries=(), attempts=(), model=None, key=None, ttft=None,
                   client_ip=None, status=404, error="model not found", path="/v1/models"),
            record(usage={"prompt_tokens": 7, "estimated": True}, client_closed=True,
                   status=499, error="bad\x00\ud800text", model="m\x00")]
    queue = write(backend, conn, recs)
    got = DbWork((stats.Stmt(f"SELECT {', '.join(stats.REQUEST_COLUMNS)} FROM {stats.REQUESTS} "
                             "ORDER BY id"),
                  stats.Stmt(f"SELECT {', '.join(stats.ATTEMPT_COLUMNS)} FROM {stats.ATTEMPTS} "
                             "ORDER BY request_id, seq"))).apply(conn)
    expected = [rows_of(r, f"test-{i}") for i, r in enumerate(recs)]
    assert got[0] == [rows.request for rows in expected]
    assert got[1] == [a for rows in expected for a in rows.attempts]
    assert queue.counts() == {"added": 3, "written": 3, "dropped": 0, "failed": 0, "queued": 0}


def test_a_batch_written_twice_is_stored_once(backend):
    conn = migrated(backend)
    work = stats.write_work(backend.dialect, [rows_of(record(), "same")])
    work.apply(conn)
    work.apply(conn)  # a commit the transport did not see, retried
    count = DbWork((stats.Stmt(f"SELECT COUNT(*) FROM {stats.REQUESTS}"),
                    stats.Stmt(f"SELECT COUNT(*) FROM {stats.ATTEMPTS}"))).apply(conn)
    assert count == [[(1,)], [(1,)]]


# --- DbWork.apply speaks DB-API only ---------------------------------------------------------

class FakeCursor:
    def __init__(self, log: list, fail_on: str | None) -> None:
        self.log, self.fail_on, self.description = log, fail_on, None

    def execute(self, sql, params=None):
        self.log.append(("execute", sql, params))
        if self.fail_on and self.fail_on in sql:
            raise RuntimeError("disk I/O error")
        self.description = (("x",),) if sql.startswith("SELECT") else None

    def executemany(self, sql, seq):
        self.log.append(("executemany", sql, list(seq)))

    def fetchall(self):
        return [(1,)]

    def close(self):
        self.log.append(("close",))


class FakeConn:
    def __init__(self, fail_on: str | None = None) -> None:
        self.log: list = []
        self.fail_on = fail_on

    def cursor(self):
        return FakeCursor(self.log, self.fail_on)

    def commit(self):
        self.log.append(("commit",))

    def rollback(self):
        self.log.append(("rollback",))


def test_apply_begins_runs_commits_and_rolls_back_on_error():
    work = DbWork((stats.Stmt("INSERT INTO t VALUES (?)", [(1,), (2,)]),
                   stats.Stmt("SELECT 1 FROM t WHERE a = ?", (1,)), stats.Stmt("SELECT 2")),
                  begin="BEGIN IMMEDIATE", setup=("PRAGMA x",))
    conn = FakeConn()
    assert work.apply(conn) == [[], [(1,)], [(1,)]]
    assert [entry[0] for entry in conn.log] == ["execute", "execute", "executemany", "execute",
                                                "execute", "commit", "close"]
    assert conn.log[3] == ("execute", "SELECT 1 FROM t WHERE a = ?", (1,))
    failing = FakeConn(fail_on="SELECT 2")
    with pytest.raises(RuntimeError, match="disk I/O"):
        work.apply(failing)
    assert [entry[0] for entry in failing.log][-2:] == ["rollback", "close"]
    assert ("commit",) not in failing.log


def test_sql_is_rendered_in_each_paramstyle():
    sqlite_work = stats.write_work(SQLITE, [rows_of(record(), "a")])
    pg_work = stats.write_work(POSTGRES, [rows_of(record(), "a")])
    assert "?" in sqlite_work.statements[0].sql and "%s" not in sqlite_work.statements[0].sql
    assert "%s" in pg_work.statements[0].sql and "?" not in pg_work.statements[0].sql
    assert sqlite_work.begin == "BEGIN IMMEDIATE" and pg_work.begin is None
    for work in (StatsQuery.from_params({}, WALL).work(POSTGRES),
                 TokenUsageQuery(usage_window({}, WALL), "k", "m").work(POSTGRES)):
        for stmt in work.statements:
            assert "?" not in stmt.sql and stmt.sql.count("%s") == len(stmt.params)


# --- the queue -------------------------------------------------------------------------------

def test_a_full_queue_drops_the_newest_and_counts_them():
    queue = StatsQueue(SQLITE, "i", limit=3, batch=2, interval=10.0)
    assert [queue.add(record(status=s), 0.0) for s in (200, 201, 202, 203, 204)] == \
        [True, True, True, False, False]
    assert queue.dropped == 2 and len(queue) == 3
    work = queue.take(0.0)  # two are a batch
    assert work is not None and [r[7] for r in stats.request_rows(work)] == [200, 201]
    assert not queue.add(record(), 0.0)  # in flight still counts against the limit
    queue.done(work, True, None, 0.1)
    assert queue.add(record(), 0.2) and queue.dropped == 3 and queue.written == 2


def test_a_batch_is_due_when_full_or_when_the_oldest_waited_the_interval():
    queue = StatsQueue(SQLITE, "i", batch=3, interval=2.0)
    assert queue.next_deadline() is None and not queue.due(0.0) and queue.take(0.0) is None
    queue.add(record(), 10.0)
    assert queue.next_deadline() == 12.0 and not queue.due(11.9) and queue.due(12.0)
    queue.add(record(), 11.0)
    queue.add(record(), 11.5)
    assert queue.due(11.5) and queue.next_deadline() == 10.0  # full batch: due now
    work = queue.take(11.5)
    assert work is not None and work.records == 3
    assert queue.take(11.5) is None and not queue.due(100.0)  # one in flight at a time
    queue.add(record(), 11.6)
    assert queue.next_deadline() is None
    queue.done(work, True, None, 11.7)
    assert queue.next_deadline() == 13.6
    assert queue.take(11.8) is None and queue.take(11.8, flush=True).records == 1


def test_a_failed_batch_is_retried_with_backoff_then_dropped_and_counted():
    queue = StatsQueue(SQLITE, "i", batch=2, retries=3, backoff=1.0, max_backoff=3.0)
    queue.add(record(), 0.0)
    queue.add(record(), 0.0)
    work = queue.take(0.0)
    now, waits = 0.0, []
    for _ in range(3):
        queue.done(work, False, "database is locked", now)
        waits.append(queue.next_deadline() - now)
        assert queue.take(now + waits[-1] - 0.01) is None
        now += waits[-1]
        assert queue.take(now) is work  # the same batch again
    queue.done(work, False, "database is locked", now)
    assert waits == [1.0, 2.0, 3.0]
    assert queue.counts() == {"added": 2, "written": 0, "dropped": 0, "failed": 2, "queued": 0}
    assert queue.last_error == "database is locked"
    queue.add(record(), now)
    nxt = queue.take(now, flush=True)
    queue.done(work, True, None, now)  # a stale report is ignored
    queue.done(nxt, True, None, now)
    assert queue.written == 1 and queue.failed == 2


def test_an_unusable_record_is_dropped_not_raised():
    class Broken:
        def __getattr__(self, name):
            raise RuntimeError("no " + name)

    queue = StatsQueue(SQLITE, "i")
    assert queue.add(Broken(), 0.0) is False  # type: ignore[arg-type]
    assert queue.dropped == 1 and "unusable record" in queue.last_error


def test_a_failing_connection_is_retried_then_dropped_and_counted(backend):
    """The database became read-only: every write fails. add() never raises, each batch is
    tried 1 + retries times, then dropped and counted; nothing is half-written and the
    connection is still usable after each failure (apply rolled back)."""
    migrated(backend)
    ro = backend.readonly()
    queue = StatsQueue(backend.dialect, "ro", batch=2, retries=2, backoff=0.5, limit=4)
    for _ in range(6):
        queue.add(record(), 0.0)
    assert queue.dropped == 2
    now, tries = 0.0, 0
    while len(queue):
        work = queue.take(now)
        if work is None:
            now = queue.next_deadline() or now
            continue
        tries += 1
        try:
            work.apply(ro)
        except Exception as exc:  # noqa: BLE001 - the transport reports whatever it got
            queue.done(work, False, f"{type(exc).__name__}: {exc}", now)
        else:
            queue.done(work, True, None, now)
        assert DbWork((stats.Stmt("SELECT 1"),)).apply(ro) == [[(1,)]]
    assert tries == 2 * 3
    assert queue.counts() == {"added": 4, "written": 0, "dropped": 2, "failed": 4, "queued": 0}
    assert "read" in queue.last_error.lower()
    conn = backend.connect()
    assert DbWork((stats.Stmt(f"SELECT COUNT(*) FROM {stats.REQUESTS}"),)).apply(conn) == [[(0,)]]


ops = st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(0, 3)),
    st.tuples(st.just("tick"), st.floats(0, 5, allow_nan=False)),
    st.tuples(st.just("take"), st.booleans()),
    st.tuples(st.just("done"), st.booleans()),
), max_size=80)


@settings(max_examples=300, deadline=None)
@given(ops=ops, limit=st.integers(1, 6), batch=st.integers(1, 4),
       interval=st.floats(0, 3, allow_nan=False), retries=st.integers(0, 2))
def test_queue_invariants_under_any_order_of_operations_and_clock(ops, limit, batch, interval,
                                                                  retries):
    queue = StatsQueue(SQLITE, "q", limit=limit, batch=batch, interval=interval,
                       retries=retries, backoff=0.5, max_backoff=2.0)
    now, calls, taken = 100.0, 0, None
    added_ids: list[str] = []
    written_ids: list[str] = []
    lost_ids: set[str] = set()
    attempts: Counter[DbWork] = Counter()  # keyed by the work itself: ids get reused
    for op, arg in ops:
        if op == "add":
            for _ in range(arg):
                calls += 1
                before = len(queue)
                if queue.add(record(), now):
                    added_ids.append(f"q-{len(added_ids)}")
                else:
                    assert before >= limit
        elif op == "tick":
            now += arg
        elif op == "take":
            due, deadline = queue.due(now, arg), queue.next_deadline()
            if deadline is not None and now >= deadline:
                assert queue.due(now)
            work = queue.take(now, arg)
            assert (work is not None) == due
            if work is not None:
                assert taken is None  # one in flight
                taken = work
                attempts[work] += 1
        elif op == "done" and taken is not None:
            ids = [row[0] for row in stats.request_rows(taken)]
            failed_before = queue.failed
            queue.done(taken, arg, None if arg else "boom", now)
            if arg:
                written_ids += ids
            elif queue.failed > failed_before:
                assert attempts[taken] == retries + 1
                lost_ids.update(ids)
            taken = None
        assert len(queue) <= limit
        assert queue.added + queue.dropped == calls
        assert queue.added == queue.written + queue.failed + len(queue)
        assert queue.in_flight == (taken is not None)
    # the queue is FIFO and writes each request at most once
    assert written_ids == [i for i in added_ids if i in set(written_ids)]
    assert not set(written_ids) & lost_ids
    # and once the store works again, everything held gets written
    if taken is not None:
        queue.done(taken, True, None, now)
    while len(queue):
        work = queue.take(now, flush=True)
        assert work is not None
        queue.done(work, True, None, now)
    assert queue.written + queue.failed == queue.added


# --- the queries: aggregates equal a plain Python model of the records -----------------------

def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and 0 <= value <= 2 ** 40 else None


def _tokens(rec: Record) -> dict[str, tuple[int | None, str | None]]:
    usage = rec.usage if isinstance(rec.usage, dict) else {}
    source = "estimated" if usage.get("estimated") is True else "reported"
    details = {"reasoning": usage.get("completion_tokens_details"),
               "cached": usage.get("prompt_tokens_details")}
    out = {}
    for kind, value in (("prompt", usage.get("prompt_tokens")),
                        ("completion", usage.get("completion_tokens")),
                        ("reasoning", (details["reasoning"] or {}).get("reasoning_tokens")),
                        ("cached", (details["cached"] or {}).get("cached_tokens"))):
        count = _count(value)
        out[kind] = (count, None if count is None else source)
    return out


def _seconds(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) and value >= 0 else None


def _attempts(rec: Record) -> list[tuple[str, str, str]]:
    return [(t.provider, t.model, t.outcome) for t in rec.tries] or list(rec.attempts)


def _rank(values: list[float], p: int) -> float | None:
    return sorted(values)[math.ceil(p * len(values) / 100) - 1] if values else None


def model_stats(records: list[Record], hours: int) -> dict[str, Any]:
    """/v1/stats computed the obvious way."""
    window = [r for r in records if r.wall >= WALL - hours * 3600]
    cm: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    ch: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per: dict[tuple, list[Record]] = defaultdict(list)
    for rec in window:
        tries = _attempts(rec)
        for provider, model, outcome in tries:
            if outcome == "client_closed":
                continue
            for key, table in (((provider, rec.model if rec.model is not None else model), cm),
                               (provider, ch)):
                table[key][0] += 1
                table[key][1] += outcome == "ok"
        if tries:
            per[(tries[-1][0], rec.model if rec.model is not None else tries[-1][1])].append(rec)

    def rates(table, names):
        out = [{**dict(zip(names, key if isinstance(key, tuple) else (key,))),
                "success_rate": ok / total, "total_requests": total}
               for key, (total, ok) in table.items()]
        return sorted(out, key=lambda e: (-e["success_rate"], -e["total_requests"],
                                          *(e[n] is None for n in names),
                                          *(e[n] or "" for n in names)))

    def counts(values, name):
        return [{name: v, "count": c} for v, c in
                sorted(Counter(values).items(), key=lambda i: (-i[1], i[0] is None, i[0] or ""))]

    provider_model = []
    for (provider, model), recs in sorted(per.items(), key=lambda i: (i[0][0], i[0][1] is None,
                                                                      i[0][1] or "")):
        latencies = [v for r in recs if (v := _seconds(r.duration)) is not None]
        ttfts = [v for r in recs if (v := _seconds(r.ttft)) is not None]
        tokens = {}
        for kind in stats.TOKEN_KINDS:
            pairs = [_tokens(r)[kind] for r in recs]
            tokens[f"{kind}_tokens"] = {
                "reported": sum(c for c, s in pairs if s == "reported"),
                "estimated": sum(c for c, s in pairs if s == "estimated"),
                "absent": sum(1 for c, s in pairs if s is None)}
        provider_model.append({
            "provider": provider, "model": model, "requests": len(recs),
            "latency_p50": _rank(latencies, 50), "latency_p95": _rank(latencies, 95),
            "ttft_p50": _rank(ttfts, 50), "ttft_p95": _rank(ttfts, 95), "tokens": tokens})
    return {
        "time_range": f"Last {hours} hours",
        "channel_model_success_rates": rates(cm, ("provider", "model")),
        "channel_success_rates": rates(ch, ("provider",)),
        "model_request_counts": counts([r.model for r in window], "model"),
        "endpoint_request_counts": counts([f"{r.method} {r.path}" for r in window], "endpoint"),
        "ip_request_counts": counts([r.client_ip for r in window], "ip"),
        "provider_model_stats": provider_model,
    }


def model_usage(records: list[Record], start: float | None, end: float | None,
                key: str | None = None, model: str | None = None) -> list[dict[str, Any]]:
    groups: dict[tuple, list[Record]] = defaultdict(list)
    for rec in records:
        if rec.model is None or (start is not None and rec.wall < start) or \
                (end is not None and rec.wall >= end) or \
                (key is not None and rec.key != key) or (model is not None and rec.model != model):
            continue
        groups[(rec.key, rec.model)].append(rec)
    out = []
    for (k, m), recs in groups.items():
        tok = [_tokens(r) for r in recs]

        def total(kind, tok=tok):
            return sum(t[kind][0] or 0 for t in tok)

        out.append({
            "api_key_prefix": k, "model": m, "total_prompt_tokens": total("prompt"),
            "total_completion_tokens": total("completion"),
            "total_tokens": total("prompt") + total("completion"),
            "total_reasoning_tokens": total("reasoning"), "total_cached_tokens": total("cached"),
            "request_count": len(recs),
            "requests_without_usage": sum(1 for t in tok if t["prompt"][1] is None
                                          and t["completion"][1] is None),
            "requests_estimated": sum(1 for t in tok if "estimated" in
                                      (t["prompt"][1], t["completion"][1]))})
    return sorted(out, key=lambda e: (e["api_key_prefix"] is None, e["api_key_prefix"] or "",
                                      e["model"]))


def ask(store: Backend, conn: Any, query: Any) -> dict[str, Any]:
    return query.answer(query.work(store.dialect).apply(conn))


def test_stats_answer_shape_for_a_few_requests(backend):
    conn = migrated(backend)
    write(backend, conn, [
        record(),
        record(duration=3.0, ttft=None, client_ip="10.0.0.2", usage=None, status=502,
               error="All gpt error: upstream timed out",
               tries=(Attempt("openai", "gpt-4o", "timeout:504", None, 3.0),)),
        record(model="mini", tries=(Attempt("groq", "llama", "status:429", None, 0.1),
                                    Attempt("openai", "gpt-4o-mini", "ok", None, 0.9))),
        record(wall=WALL - 25 * 3600),  # outside the window
    ])
    answer = ask(backend, conn, StatsQuery.from_params({"hours": "24"}, WALL))
    assert answer["time_range"] == "Last 24 hours"
    assert answer["channel_model_success_rates"] == [
        {"provider": "openai", "model": "mini", "success_rate": 1.0, "total_requests": 1},
        {"provider": "openai", "model": "gpt", "success_rate": 0.5, "total_requests": 2},
        {"provider": "groq", "model": "mini", "success_rate": 0.0, "total_requests": 1}]
    assert answer["channel_success_rates"] == [
        {"provider": "openai", "success_rate": 2 / 3, "total_requests": 3},
        {"provider": "groq", "success_rate": 0.0, "total_requests": 1}]
    assert answer["model_request_counts"] == [{"model": "gpt", "count": 2},
                                              {"model": "mini", "count": 1}]
    assert answer["endpoint_request_counts"] == [
        {"endpoint": "POST /v1/chat/completions", "count": 3}]
    assert answer["ip_request_counts"] == [{"ip": "10.0.0.1", "count": 2},
                                           {"ip": "10.0.0.2", "count": 1}]
    gpt = answer["provider_model_stats"][0]
    assert (gpt["provider"], gpt["model"], gpt["requests"]) == ("openai", "gpt", 2)
    assert (gpt["latency_p50"], gpt["latency_p95"], gpt["ttft_p50"]) == (1.5, 3.0, 0.25)
    assert gpt["tokens"]["prompt_tokens"] == {"reported": 10, "estimated": 0, "absent": 1}
    assert answer == model_stats([record(), record(duration=3.0, ttft=None, client_ip="10.0.0.2",
                                  usage=None, tries=(Attempt("openai", "gpt-4o", "timeout:504",
                                                             None, 3.0),)),
                                  record(model="mini", tries=(
                                      Attempt("groq", "llama", "status:429", None, 0.1),
                                      Attempt("openai", "gpt-4o-mini", "ok", None, 0.9)))], 24)


def test_an_empty_store_answers_empty_lists(backend):
    conn = migrated(backend)
    answer = ask(backend, conn, StatsQuery.from_params({}, WALL))
    assert answer == {"time_range": "Last 24 hours", "channel_model_success_rates": [],
                      "channel_success_rates": [], "model_request_counts": [],
                      "endpoint_request_counts": [], "ip_request_counts": [],
                      "provider_model_stats": []}
    assert stats.DISABLED_STATS == {"stats": {}}


def test_percentiles_are_nearest_rank_for_any_group_size(backend):
    """p50 and p95 are the values at rank ceil(p * n / 100) of the sorted window, the SQL's
    integer arithmetic included, for group sizes where the ranks move."""
    import random

    conn = migrated(backend)
    rng = random.Random(13)
    for n in (1, 2, 3, 11, 19, 20, 21, 99, 100, 101):
        clear(conn)
        latencies = [rng.choice([0.5, 1.0, 2.0]) * rng.random() * 10 for _ in range(n)]
        ttfts = [None if i % 3 == 0 else v / 2 for i, v in enumerate(latencies)]
        recs = [record(duration=d, ttft=t) for d, t in zip(latencies, ttfts)]
        write(backend, conn, recs, batch=50)
        (entry,) = ask(backend, conn, StatsQuery.from_params({}, WALL))["provider_model_stats"]
        present = [t for t in ttfts if t is not None]
        assert entry["requests"] == n
        assert (entry["latency_p50"], entry["latency_p95"]) == \
            (_rank(latencies, 50), _rank(latencies, 95)), n
        assert (entry["ttft_p50"], entry["ttft_p95"]) == (_rank(present, 50), _rank(present, 95))


@pytest.mark.parametrize("hours", ["0", "721", "x", "1.5", "-3"])
def test_hours_out_of_range_are_refused(hours):
    with pytest.raises(StatsQueryError) as err:
        StatsQuery.from_params({"hours": hours}, WALL)
    assert err.value.status == 422
    assert StatsQuery.from_params({"hours": "720"}, WALL).since == WALL - 720 * 3600


seconds = st.one_of(st.floats(0, 50, allow_nan=False),
                    st.sampled_from([float("nan"), -1.0, float("inf")]))
counts = st.one_of(st.none(), st.integers(0, 10 ** 6),
                   st.sampled_from([-1, True, 1.5, 2.0, "7", 2 ** 41]))
usages = st.one_of(st.none(), st.fixed_dictionaries({}, optional={
    "prompt_tokens": counts, "completion_tokens": counts, "estimated": st.booleans(),
    "prompt_tokens_details": st.fixed_dictionaries({}, optional={"cached_tokens": counts}),
    "completion_tokens_details": st.fixed_dictionaries({}, optional={"reasoning_tokens": counts}),
}))
attempts = st.builds(Attempt, provider=st.sampled_from(["p1", "p2", "p3"]),
                     model=st.sampled_from(["u1", "u2"]),
                     outcome=st.sampled_from(["ok", "client_closed", "timeout:504", "status:429"]),
                     key=st.sampled_from([None, "k-upstream0001"]), latency=seconds)


@st.composite
def records(draw: Any) -> Record:
    tries = tuple(draw(st.lists(attempts, max_size=3)))
    legacy = draw(st.booleans())
    return Record(
        method="POST", path=draw(st.sampled_from(["/v1/chat/completions", "/v1/embeddings"])),
        status=draw(st.sampled_from([200, 404, 499, 502])), duration=draw(seconds),
        attempts=tuple((t.provider, t.model, t.outcome) for t in tries) if legacy else (),
        client_closed=draw(st.booleans()), usage=draw(usages),
        wall=draw(st.floats(WALL - 30 * 86400, WALL)),
        key=draw(st.sampled_from([None, "k-aaaaaaaaaaaa", "k-bbbbbbbbbbbb"])),
        model=draw(st.sampled_from([None, "m1", "m2"])), ttft=draw(st.one_of(st.none(), seconds)),
        client_ip=draw(st.sampled_from([None, "10.0.0.1", "::1"])),
        error=draw(st.one_of(st.none(), st.text(max_size=12))),
        tries=() if legacy else tries)


def _aggregates_equal_the_model(backend: Backend, conn: Any, recs: list[Record], hours: int,
                                days: int) -> None:
    clear(conn)
    if recs:
        write(backend, conn, recs)
    assert ask(backend, conn, StatsQuery.from_params({"hours": str(hours)}, WALL)) == \
        model_stats(recs, hours)
    query = TokenUsageQuery.from_params({"last_n_days": str(days)}, WALL, own_key=None,
                                        admin=True, digest=str)
    assert ask(backend, conn, query)["usage"] == model_usage(recs, WALL - days * 86400, None)
    mine = TokenUsageQuery.from_params({"model": "m1"}, WALL, own_key="k-aaaaaaaaaaaa",
                                       admin=False, digest=str)
    assert ask(backend, conn, mine)["usage"] == model_usage(
        recs, WALL - 30 * 86400, None, key="k-aaaaaaaaaaaa", model="m1")


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Backend]:
    store = Backend(StoreConfig.from_env({"DB_PATH": str(tmp_path / "s.db")}))
    yield store
    store.close()


@settings(max_examples=120, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(recs=st.lists(records(), max_size=30), hours=st.integers(1, 720),
       days=st.integers(1, 40))
def test_any_records_give_the_aggregates_of_a_python_model_sqlite(sqlite_store, recs, hours,
                                                                  days):
    conn = sqlite_store.conns[0] if sqlite_store.conns else migrated(sqlite_store)
    _aggregates_equal_the_model(sqlite_store, conn, recs, hours, days)


@pytest.fixture
def pg_store(pg_server: postgres.PgServer) -> Iterator[Backend]:
    with pg_database(pg_server) as store:
        yield store


@settings(max_examples=40, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(recs=st.lists(records(), max_size=30), hours=st.integers(1, 720),
       days=st.integers(1, 40))
def test_any_records_give_the_aggregates_of_a_python_model_postgres(pg_store, recs, hours,
                                                                    days):
    conn = pg_store.conns[0] if pg_store.conns else migrated(pg_store)
    _aggregates_equal_the_model(pg_store, conn, recs, hours, days)


# --- /v1/token_usage -------------------------------------------------------------------------

def test_token_usage_per_key_and_model_with_filters(backend):
    conn = migrated(backend)
    recs = [record(), record(key="k-other0000000", usage={"prompt_tokens": 1}),
            record(model="m2", usage=None), record(model=None),
            record(wall=WALL - 40 * 86400)]
    write(backend, conn, recs)
    admin = TokenUsageQuery.from_params({}, WALL, own_key="k-admin", admin=True, digest=str)
    answer = ask(backend, conn, admin)
    assert answer["usage"] == model_usage(recs, WALL - 30 * 86400, None)
    assert answer["usage"][0] == {
        "api_key_prefix": "k-0123456789ab", "model": "gpt", "total_prompt_tokens": 10,
        "total_completion_tokens": 5, "total_tokens": 15, "total_reasoning_tokens": 2,
        "total_cached_tokens": 4, "request_count": 1, "requests_without_usage": 0,
        "requests_estimated": 0}
    assert answer["query_details"] == {
        "start_datetime": "2025-05-16T15:06:40+00:00", "end_datetime": "2025-06-15T15:06:40+00:00",
        "api_key_filter": "all", "model_filter": "all", "credits": None, "total_cost": None,
        "balance": None}
    named = admin.answer(admin.work(backend.dialect).apply(conn), {"k-0123456789ab": "alice"})
    assert named["usage"][0]["api_key_prefix"] == "alice"

    def digest(key: str) -> str:
        return {"sk-other": "k-other0000000"}[key]

    filtered = TokenUsageQuery.from_params({"api_key_param": "sk-other"}, WALL, own_key="k-a",
                                           admin=True, digest=digest)
    got = ask(backend, conn, filtered)
    assert [(u["api_key_prefix"], u["total_prompt_tokens"]) for u in got["usage"]] == \
        [("k-other0000000", 1)]
    assert got["query_details"]["api_key_filter"] == "k-other0000000"
    # a non-admin sees its own key only, whatever it asks for
    own = TokenUsageQuery.from_params({"api_key_param": "sk-other"}, WALL,
                                      own_key="k-0123456789ab", admin=False, digest=digest)
    got = ask(backend, conn, own)
    assert {u["api_key_prefix"] for u in got["usage"]} == {"k-0123456789ab"}
    assert got["query_details"]["api_key_filter"] == "self"
    assert [u["requests_without_usage"] for u in got["usage"]] == [0, 1]  # m2 reported none


def test_usage_window_from_the_query_parameters():
    day = 86400.0
    assert usage_window({}, WALL) == stats.UsageWindow(
        WALL - 30 * day, None, "2025-05-16T15:06:40+00:00", "2025-06-15T15:06:40+00:00")
    assert usage_window({"last_n_days": "2"}, WALL).start == WALL - 2 * day
    both = usage_window({"start_datetime": "2025-06-01T00:00:00Z",
                         "end_datetime": "2025-06-02"}, WALL)
    assert (both.start_text, both.end_text) == ("2025-06-01T00:00:00+00:00",
                                                "2025-06-03T00:00:00+00:00")  # the whole day
    assert usage_window({"start_datetime": "1748736000"}, WALL).start == 1748736000.0
    assert usage_window({"end_datetime": "2025-06-01T02:00:00+02:00"}, WALL).end == 1748736000.0
    for params, status, text in [
        ({"last_n_days": "1", "start_datetime": "1"}, 400, "Cannot use last_n_days"),
        ({"last_n_days": "0"}, 400, "must be positive"),
        ({"last_n_days": "x"}, 422, "integer"),
        ({"start_datetime": "yesterday"}, 400, "Invalid datetime format"),
        ({"start_datetime": "nan"}, 400, "Invalid start_datetime"),
        ({"start_datetime": "2025-06-02", "end_datetime": "2025-06-01T00:00:00"}, 400,
         "cannot be before"),
        ({"end_datetime": "1e300"}, 400, "out of range"),
    ]:
        with pytest.raises(StatsQueryError, match=text) as err:
            usage_window(params, WALL)
        assert err.value.status == status


def test_time_window_bounds_are_half_open(backend):
    conn = migrated(backend)
    write(backend, conn, [record(wall=100.0), record(wall=200.0), record(wall=300.0)])
    query = TokenUsageQuery(stats.UsageWindow(100.0, 300.0, None, None))
    assert ask(backend, conn, query)["usage"][0]["request_count"] == 2


def test_a_big_batch_is_written_whole_in_multi_row_inserts(backend):
    """500 requests of two attempts: chunked INSERTs of at most MAX_PARAMS parameters, every
    row in the tables (and a retried batch written once)."""
    conn = migrated(backend)
    batch = [stats.rows_of(record(wall=WALL + i, tries=(
        Attempt("p1", "m", "status:502", "k-a", 0.1),
        Attempt("p2", "m", "ok", "k-b", 0.2))), f"big-{i}") for i in range(500)]
    work = stats.write_work(backend.dialect, batch)
    assert len(work.statements) > 2
    assert all(len(st.params) <= stats.MAX_PARAMS for st in work.statements)
    assert [r[0] for r in stats.request_rows(work)] == [f"big-{i}" for i in range(500)]
    # whatever the batch's size, a handful of distinct statements (the driver keeps them
    # prepared): full chunks, then powers of two
    texts = {st.sql for n in range(1, 121) for st in
             stats.write_work(backend.dialect, batch[:n]).statements}
    assert len(texts) <= 2 * 8
    work.apply(conn)
    work.apply(conn)  # the same batch again: ON CONFLICT DO NOTHING
    cur = conn.cursor()
    for table, count in ((stats.REQUESTS, 500), (stats.ATTEMPTS, 1000)):
        cur.execute(f"SELECT COUNT(*) FROM {table}")
        assert cur.fetchone()[0] == count


def test_the_last_work_at_shutdown_closes_the_stores_connection(tmp_path):
    """Once stopping and every row is written, ``Gateway.stats_next`` gives ``CLOSE_STORE``
    once, then nothing; ``StoreSession.run`` closes its connection for it (so the files or
    socket are let go at shutdown, not whenever the garbage collector runs), and a later work
    opens a fresh one."""
    from uniapi_core.config import load_config
    from uniapi_core.gateway import Gateway, Settings
    from uniapi_core.ops.stats import CLOSE_STORE, StoreSession

    config = load_config("providers:\n  - provider: p\n    base_url: http://h/v1\n"
                         "    api: sk-u\n    model: [m]\napi_keys:\n  - api: sk-c\n").config
    store = StoreConfig(path=str(tmp_path / "stats.db"))
    gw = Gateway(config, settings=Settings(stats_store=store))
    session = StoreSession(store, importlib.import_module, os.makedirs)
    work = gw.stats_start(0.0)
    gw.stats_done(work, session.run(work), 0.0)
    assert gw.stats_next(1.0, False) is None  # nothing to write, not stopping
    assert gw.stats_next(1.0, True) is CLOSE_STORE
    assert gw.stats_next(1.0, True) is None  # once
    conn = session._conn
    assert conn is not None
    assert session.run(CLOSE_STORE) == [] and session._conn is None
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("select 1")  # closed
    assert session.run(CLOSE_STORE) == []  # twice is harmless
    assert isinstance(session.run(migrate_work(SQLITE, 0.0)), list)  # and it opens again
