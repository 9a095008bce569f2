"""The stored responses of POST /v1/responses (uniapi_core/ops/responses_store.py).

The module is pure; these tests run every work it gives on a real ``sqlite3`` database and on
a real PostgreSQL server (tests/fakes/postgres.py), with the fixtures of test_stats.py: the
PostgreSQL half is skipped on a developer's machine without the binaries and FAILS under
``CI``."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.core.test_stats import WALL, Backend, migrated, pg_database, record, write
from tests.fakes import postgres
from uniapi_core.ops import responses_store as rs
from uniapi_core.ops import stats
from uniapi_core.ops.stats import MIGRATIONS, POSTGRES, SQLITE, DbWork, StoreConfig, migrate_work

KEY = "k-0123456789ab"
OTHER = "k-ba9876543210"
TTL = 30 * 86400.0

USER_1 = {"type": "message", "role": "user", "content": [{"type": "input_text",
                                                            "text": "Bonjour ☃ \u2028 日本"}]}
REPLY_1 = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
           "content": [{"type": "output_text", "text": "Salut", "annotations": []}]}


# --- the two backends (test_stats.py's, the same rule: no PostgreSQL fails under CI) ---------

@pytest.fixture(scope="session")
def pg_server() -> Iterator[postgres.PgServer]:
    why = postgres.missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"{why}. CI is set, so the PostgreSQL responses store must be tested: "
                        f".ci/run installs the Debian package {postgres.DEBIAN_PACKAGE!r}.")
        pytest.skip(why)
    server = postgres.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        store = Backend(StoreConfig.from_env({"DB_PATH": str(tmp_path / "data" / "stats.db")}))
        yield store
        store.close()
    else:
        with pg_database(request.getfixturevalue("pg_server")) as store:
            yield store


def response_object(rid: str, output: list[Any]) -> dict[str, Any]:
    return {"id": rid, "object": "response", "created_at": int(WALL), "status": "completed",
            "model": "gpt-4o", "output": output, "usage": {"input_tokens": 3}}


def save(conn: Any, dialect: stats.Dialect, rid: str = "resp_1", key: str = KEY, *,
         created: float = WALL, ttl: float = TTL, inp: list[Any] | None = None,
         out: list[Any] | None = None, previous: str | None = None) -> None:
    inp = [USER_1] if inp is None else inp
    out = [REPLY_1] if out is None else out
    rs.save_work(dialect, response_id=rid, client_key=key, created=created, ttl=ttl,
                 model="gpt-4o", status="completed", input_items=inp, output_items=out,
                 response=response_object(rid, out), previous_id=previous).apply(conn)


def load(conn: Any, dialect: stats.Dialect, rid: str = "resp_1", key: str = KEY,
         now: float = WALL + 1) -> rs.StoredResponse | None:
    return rs.loaded(rs.load_work(dialect, rid, key, now).apply(conn))


def count(conn: Any) -> int:
    return int(DbWork((stats.Stmt(f"SELECT COUNT(*) FROM {rs.RESPONSES}"),)).apply(conn)[0][0][0])


# --- schema ----------------------------------------------------------------------------------

def _schema(store: Backend, conn: Any) -> tuple[set[str], set[str]]:
    """(tables, indexes) of the store."""
    if store.config.kind == "sqlite":
        sql = "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'index')"
    else:
        sql = ("SELECT 'table', tablename FROM pg_tables WHERE schemaname = 'public' UNION ALL "
               "SELECT 'index', indexname FROM pg_indexes WHERE schemaname = 'public'")
    rows = DbWork((stats.Stmt(sql),)).apply(conn)[0]
    return ({n for t, n in rows if t == "table"}, {n for t, n in rows if t == "index"})


def test_the_migration_is_version_2_and_creates_the_table_and_its_index(backend):
    assert [m.version for m in MIGRATIONS if m.name == "stored responses"] == [2]
    conn = migrated(backend)
    tables, indexes = _schema(backend, conn)
    assert rs.RESPONSES in tables and f"{rs.RESPONSES}_expires" in indexes
    cols = DbWork((stats.Stmt(f"SELECT {', '.join(rs.COLUMNS)} FROM {rs.RESPONSES}"),)).apply(conn)
    assert cols == [[]]


def test_the_migration_upgrades_a_store_of_schema_version_1(backend):
    conn = backend.connect()
    assert migrate_work(backend.dialect, WALL, MIGRATIONS[:1]).apply(conn) == [[(0,)], [(1,)]]
    write(backend, conn, [record(), record(status=500)])  # an older gateway's rows
    assert rs.RESPONSES not in _schema(backend, conn)[0]

    assert migrate_work(backend.dialect, WALL + 60).apply(conn) == [
        [(1,)], [(m.version,) for m in MIGRATIONS[1:]]]
    assert DbWork((stats.Stmt(f"SELECT COUNT(*) FROM {stats.REQUESTS}"),)).apply(conn) == [[(2,)]]
    save(conn, backend.dialect)
    got = load(conn, backend.dialect)
    assert got is not None and got.output_items == [REPLY_1]
    versions = DbWork((stats.Stmt(f"SELECT version, applied_at FROM {stats.VERSIONS} "
                                  "ORDER BY version"),)).apply(conn)[0]
    assert versions[:2] == [(1, WALL), (2, WALL + 60)]


# --- save and load ---------------------------------------------------------------------------

def test_save_then_load_round_trips_every_field(backend):
    conn = migrated(backend)
    save(conn, backend.dialect, previous="resp_0")
    got = load(conn, backend.dialect)
    assert got == rs.StoredResponse(
        id="resp_1", client_key=KEY, created=WALL, expires=WALL + TTL, model="gpt-4o",
        status="completed", input_items=[USER_1], output_items=[REPLY_1],
        response=response_object("resp_1", [REPLY_1]), previous_id="resp_0")
    assert rs.conversation(got) == [USER_1, REPLY_1]
    raw = DbWork((stats.Stmt(f"SELECT client_key, input_items FROM {rs.RESPONSES}"),)).apply(conn)
    assert raw[0][0][0] == KEY and json.loads(raw[0][0][1]) == [USER_1]  # plain JSON text


def test_another_keys_response_an_expired_one_and_a_missing_one_are_all_not_found(backend):
    conn = migrated(backend)
    save(conn, backend.dialect, created=WALL, ttl=100.0)
    assert load(conn, backend.dialect, key=OTHER) is None
    assert load(conn, backend.dialect, rid="resp_nope") is None
    assert load(conn, backend.dialect, now=WALL + 99.999) is not None
    assert load(conn, backend.dialect, now=WALL + 100.0) is None  # expires is exclusive
    assert load(conn, backend.dialect, now=WALL + 10 ** 6) is None
    for rid in ("", "resp_\x00", "resp_\ud800", "r" * 10_000):  # ids from a URL: no DB error
        assert load(conn, backend.dialect, rid=rid) is None
    assert load(conn, backend.dialect, key="k-\x00") is None


def test_a_save_retried_after_an_unseen_commit_is_stored_once(backend):
    conn = migrated(backend)
    work = rs.save_work(backend.dialect, response_id="resp_1", client_key=KEY, created=WALL,
                        ttl=TTL, model="m", status="completed", input_items=[USER_1],
                        output_items=[], response={"id": "resp_1"}, previous_id=None)
    work.apply(conn)
    work.apply(conn)
    save(conn, backend.dialect, key=OTHER)  # the same id again: the first row stays
    assert count(conn) == 1
    assert load(conn, backend.dialect, key=OTHER) is None
    assert load(conn, backend.dialect) is not None


def test_a_chain_needs_one_lookup_because_each_row_holds_the_whole_conversation(backend):
    conn = migrated(backend)
    d = backend.dialect
    save(conn, d, "resp_1")
    first = load(conn, d, "resp_1")
    assert first is not None
    user_2 = {"type": "message", "role": "user", "content": "and then?"}
    reply_2 = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
    save(conn, d, "resp_2", inp=[*rs.conversation(first), user_2], out=[reply_2],
         previous="resp_1")
    assert rs.deleted(rs.delete_work(d, "resp_1", KEY).apply(conn))  # the chain's start goes
    second = load(conn, d, "resp_2")
    assert second is not None and second.previous_id == "resp_1"
    assert rs.conversation(second) == [USER_1, REPLY_1, user_2, reply_2]


# --- delete and expire -----------------------------------------------------------------------

def test_delete_own_others_missing_and_expired(backend):
    conn = migrated(backend)
    d = backend.dialect
    save(conn, d, "resp_1")
    save(conn, d, "resp_2", ttl=10.0)
    assert rs.deleted(rs.delete_work(d, "resp_1", OTHER).apply(conn)) is False
    assert load(conn, d, "resp_1") is not None  # another key's delete left it alone
    assert rs.deleted(rs.delete_work(d, "resp_1", KEY).apply(conn)) is True
    assert load(conn, d, "resp_1") is None
    assert rs.deleted(rs.delete_work(d, "resp_1", KEY).apply(conn)) is False  # gone already
    assert rs.deleted(rs.delete_work(d, "resp_missing", KEY).apply(conn)) is False
    assert rs.deleted(rs.delete_work(d, "resp_\x00", KEY).apply(conn)) is False
    # expired but not reclaimed yet: with ``now`` it is not found, and deleted all the same
    assert rs.deleted(rs.delete_work(d, "resp_2", KEY, now=WALL + 10.0).apply(conn)) is False
    assert count(conn) == 0


def test_expire_work_deletes_expired_rows_oldest_first_in_bounded_batches(backend):
    conn = migrated(backend)
    d = backend.dialect
    for i in range(5):  # expire at WALL + 1 .. WALL + 5
        save(conn, d, f"resp_old{i}", created=WALL, ttl=float(5 - i))
    save(conn, d, "resp_live", created=WALL, ttl=TTL)
    save(conn, d, "resp_edge", created=WALL, ttl=6.0)  # expires exactly at `now`
    now = WALL + 6.0
    assert [rs.expired(rs.expire_work(d, now, limit=2).apply(conn)) for _ in range(5)] == \
        [2, 2, 2, 0, 0]
    left = DbWork((stats.Stmt(f"SELECT id FROM {rs.RESPONSES}"),)).apply(conn)[0]
    assert left == [("resp_live",)]
    save(conn, d, "resp_a", created=WALL, ttl=1.0)
    save(conn, d, "resp_b", created=WALL, ttl=2.0)
    assert rs.expired(rs.expire_work(d, WALL + 1.5, limit=1).apply(conn)) == 1
    ids = {r[0] for r in DbWork((stats.Stmt(f"SELECT id FROM {rs.RESPONSES}"),)).apply(conn)[0]}
    assert ids == {"resp_live", "resp_b"}  # the oldest went first, the other is not due yet
    assert rs.expired(rs.expire_work(d, WALL + 1.5).apply(conn)) == 0


def test_expire_work_refuses_a_limit_below_one():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            rs.expire_work(SQLITE, WALL, limit=bad)  # type: ignore[arg-type]


# --- what save refuses -----------------------------------------------------------------------

def _work(**changes: Any) -> DbWork:
    args: dict[str, Any] = {"response_id": "resp_1", "client_key": KEY, "created": WALL,
                            "ttl": TTL, "model": "m", "status": "completed", "input_items": [],
                            "output_items": [], "response": {}, "previous_id": None}
    args.update(changes)
    return rs.save_work(SQLITE, **args)


def _item_of(size: int) -> dict[str, str]:
    """An item whose JSON is exactly ``size`` bytes (``size`` >= 8)."""
    item = {"t": "x" * (size - 8)}
    assert len(json.dumps(item, separators=(",", ":"))) == size
    return item


def test_the_size_cap_counts_the_json_bytes_of_items_and_response():
    # the JSON of input [item], output [] and {}: len(item) + 2, 2 and 2 bytes
    at_limit = _item_of(rs.MAX_STORED_BYTES - 6)
    row = _work(input_items=[at_limit]).statements[0].params
    assert isinstance(row, tuple)
    assert sum(len(str(row[i]).encode()) for i in (6, 7, 8)) == rs.MAX_STORED_BYTES
    with pytest.raises(rs.ResponseTooLarge) as over:
        _work(input_items=[_item_of(rs.MAX_STORED_BYTES - 5)])
    assert over.value.size == rs.MAX_STORED_BYTES + 1 and isinstance(over.value, ValueError)
    half = _item_of(rs.MAX_STORED_BYTES // 2)
    with pytest.raises(rs.ResponseTooLarge):  # the response object counts too
        _work(input_items=[half], response={"output": [half]})
    with pytest.raises(rs.ResponseTooLarge):  # multi-byte text counts in UTF-8 bytes
        _work(output_items=["日" * (rs.MAX_STORED_BYTES // 3)])


def test_a_response_at_the_size_cap_is_stored_by_each_engine(backend):
    conn = migrated(backend)
    big = "é☃\U0001f600" * ((rs.MAX_STORED_BYTES - 400) // 9)  # 9 UTF-8 bytes each
    save(conn, backend.dialect, inp=[big], out=[])
    got = load(conn, backend.dialect)
    assert got is not None and got.input_items == [big]


@pytest.mark.parametrize("changes", [
    {"response_id": ""}, {"response_id": "resp_\x00"}, {"response_id": "resp_\udc80"},
    {"response_id": "r" * (rs.MAX_ID_CHARS + 1)}, {"response_id": None}, {"client_key": ""},
    {"client_key": "k-\x00"}, {"ttl": 0}, {"ttl": -1.0}, {"ttl": float("inf")},
    {"ttl": float("nan")}, {"created": float("nan")}, {"created": 1e308, "ttl": 1e308},
    {"input_items": [float("nan")]}, {"output_items": [object()]},
    {"response": {"x": float("inf")}},
])
def test_save_refuses_what_cannot_be_stored_with_value_error(changes):
    with pytest.raises(ValueError):
        _work(**changes)


@pytest.mark.parametrize("changes", [{"input_items": "hello"}, {"output_items": None},
                                     {"response": []}])
def test_save_refuses_wrong_shapes_with_type_error(changes):
    with pytest.raises(TypeError):
        _work(**changes)


def test_free_texts_are_made_storable(backend):
    conn = migrated(backend)
    rs.save_work(backend.dialect, response_id="resp_1", client_key=KEY, created=WALL, ttl=TTL,
                 model="m\x00\ud800" + "x" * 1000, status="completed", input_items=[],
                 output_items=[], response={}, previous_id=None).apply(conn)
    got = load(conn, backend.dialect)
    assert got is not None and got.model == "m\ufffd?" + "x" * (rs.MAX_TEXT - 3)


# --- pure parts ------------------------------------------------------------------------------

def test_sql_is_rendered_in_each_paramstyle():
    for work in (_work(), rs.load_work(SQLITE, "r", KEY, WALL), rs.delete_work(SQLITE, "r", KEY),
                 rs.expire_work(SQLITE, WALL)):
        assert all("?" in s.sql and "%s" not in s.sql and "FOR UPDATE" not in s.sql
                   for s in work.statements)
    pg = rs.save_work(POSTGRES, response_id="r", client_key=KEY, created=WALL, ttl=TTL,
                      model=None, status="s", input_items=[], output_items=[], response={},
                      previous_id=None)
    for work in (pg, rs.load_work(POSTGRES, "r", KEY, WALL), rs.delete_work(POSTGRES, "r", KEY),
                 rs.expire_work(POSTGRES, WALL)):
        assert all("%s" in s.sql and "?" not in s.sql for s in work.statements)
    assert rs.load_work(SQLITE, "r", KEY, WALL).begin == SQLITE.begin_read
    assert rs.delete_work(SQLITE, "r", KEY).begin == SQLITE.begin_write


def _row(**changes: Any) -> tuple[Any, ...]:
    values = {"id": "resp_1", "client_key": KEY, "created": WALL, "expires": WALL + 1,
              "model": "m", "status": "completed", "input_items": "[]", "output_items": "[]",
              "response": "{}", "previous_id": None}
    values.update(changes)
    return tuple(values[c] for c in rs.COLUMNS)


def test_loaded_takes_a_row_that_does_not_decode_as_not_found():
    assert rs.loaded([[]]) is None
    assert rs.loaded([]) is None
    assert rs.loaded([[_row()]]) is not None
    for bad in ({"input_items": "{"}, {"output_items": "{}"}, {"response": "[]"},
                {"input_items": None}, {"response": "[" * 100_000}):
        assert rs.loaded([[_row(**bad)]]) is None, bad
    assert rs.deleted([[]]) is False and rs.deleted([[("r",)], []]) is True
    assert rs.expired([[(7,)], []]) == 7


# --- any JSON round-trips --------------------------------------------------------------------

# every code point, lone surrogates included (valid in JSON escapes, not in UTF-8), NUL too
texts = st.text(st.characters(exclude_categories=()), max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70)
    | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(texts, inner, max_size=5),
    max_leaves=30)
items = st.lists(json_values, max_size=6)

_ids = itertools.count()


def _round_trip(store: Backend, conn: Any, inp: list[Any], out: list[Any],
                resp: dict[str, Any], model: str) -> None:
    rid = f"resp_{next(_ids)}"
    rs.save_work(store.dialect, response_id=rid, client_key=KEY, created=WALL, ttl=TTL,
                 model=model, status="completed", input_items=inp, output_items=out,
                 response=resp, previous_id=None).apply(conn)
    got = load(conn, store.dialect, rid)
    assert got is not None
    assert (got.input_items, got.output_items, got.response) == (inp, out, resp)
    assert rs.conversation(got) == [*inp, *out]
    assert load(conn, store.dialect, rid, key=OTHER) is None


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Backend]:
    store = Backend(StoreConfig.from_env({"DB_PATH": str(tmp_path / "s.db")}))
    yield store
    store.close()


@pytest.fixture
def pg_store(pg_server: postgres.PgServer) -> Iterator[Backend]:
    with pg_database(pg_server) as store:
        yield store


_HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@settings(max_examples=150, deadline=None, suppress_health_check=_HEALTH)
@given(inp=items, out=items, resp=st.dictionaries(texts, json_values, max_size=5), model=texts)
def test_any_json_items_round_trip_sqlite(sqlite_store, inp, out, resp, model):
    conn = sqlite_store.conns[0] if sqlite_store.conns else migrated(sqlite_store)
    _round_trip(sqlite_store, conn, inp, out, resp, model)


@settings(max_examples=60, deadline=None, suppress_health_check=_HEALTH)
@given(inp=items, out=items, resp=st.dictionaries(texts, json_values, max_size=5), model=texts)
def test_any_json_items_round_trip_postgres(pg_store, inp, out, resp, model):
    conn = pg_store.conns[0] if pg_store.conns else migrated(pg_store)
    _round_trip(pg_store, conn, inp, out, resp, model)
