"""The stats store: schema, SQL, row shapes and flush policy of the stats database (issue 13).

The core owns everything about the store but the I/O. A transport does three things only:

1. it keeps one ``StoreSession`` (made from the ``StoreConfig`` the launch read from the
   environment, with the transport's ``import_module`` and ``makedirs``) and runs every work
   through its ``run`` in one worker thread;
2. its flush loop asks the gateway for work (``Gateway.stats_start`` at start, the schema;
   ``stats_next`` when ``stats_deadline`` comes, one batch of the ``StatsQueue`` the request
   machine fills; everything left at shutdown) and hands each result back (``stats_done``);
3. for ``GET /v1/stats`` and ``GET /v1/token_usage``: the request machine's ``Query`` action,
   whose rows go back as ``QueryDone``.

``DbWork.apply`` speaks only the DB-API 2.0 protocol to the connection it is given (``cursor``,
``execute``, ``executemany``, ``fetchall``, ``commit``, ``rollback``) and imports nothing: the
same work runs on ``sqlite3`` (paramstyle ``qmark``) and ``psycopg`` 3 (``format``); each
``Dialect`` renders the SQL for its engine.

Times are unix seconds (``wall``) passed in; queue timers use the monotonic ``now``. No clock,
no environment read (``from_env`` takes the mapping), no global state.

Token counts keep their source: a count is stored with ``reported`` (the upstream's usage) or
``estimated`` (a usage object flagged ``"estimated": true`` by whoever estimated it), and a
count nobody gave is NULL with a NULL source, never a zero.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any, NamedTuple

import attrs

from .records import AttemptLike, RecordLike

__all__ = [
    "ATTEMPT_COLUMNS",
    "CLOSE_STORE",
    "DISABLED_STATS",
    "ESTIMATED",
    "MIGRATIONS",
    "POSTGRES",
    "REPORTED",
    "REQUEST_COLUMNS",
    "SQLITE",
    "TOKEN_KINDS",
    "AttemptLike",
    "DbWork",
    "Dialect",
    "MigrateWork",
    "Migration",
    "RecordLike",
    "StatRows",
    "StatsQuery",
    "StatsQueryError",
    "StatsQueue",
    "Stmt",
    "StoreConfig",
    "StoreConfigError",
    "TokenUsageQuery",
    "UsageWindow",
    "migrate_work",
    "new_instance_id",
    "rows_of",
    "usage_window",
    "write_work",
]


# --- configuration ---------------------------------------------------------------------------

class StoreConfigError(ValueError):
    """A stats-store environment variable has a value the gateway cannot use."""


#: uni-api's defaults (its db.py), so an existing deployment's variables mean the same here
DEFAULT_PATH = "./data/stats.db"
PG_DEFAULTS = {"DB_USER": "postgres", "DB_PASSWORD": "mysecretpassword", "DB_HOST": "localhost",
               "DB_PORT": "5432", "DB_NAME": "postgres"}
#: seconds a SQLite writer waits for another process's lock (uni-api's busy_timeout)
SQLITE_BUSY_TIMEOUT = 5.0
#: seconds psycopg waits for the PostgreSQL server to accept a connection
PG_CONNECT_TIMEOUT = 10


@attrs.frozen
class StoreConfig:
    """Where the stats go: ``from_env`` reads uni-api's variables. The password never shows in
    a repr (``describe()`` is the text to print)."""

    enabled: bool = True
    kind: str = "sqlite"  # "sqlite" | "postgres"
    path: str = DEFAULT_PATH
    user: str = PG_DEFAULTS["DB_USER"]
    password: str = attrs.field(default=PG_DEFAULTS["DB_PASSWORD"], repr=False)
    host: str = PG_DEFAULTS["DB_HOST"]
    port: int = 5432
    name: str = PG_DEFAULTS["DB_NAME"]

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> StoreConfig:
        """``DISABLE_DATABASE`` (only ``true``, any case, turns the store off), ``DB_TYPE``
        (``sqlite``, the default, or ``postgres``), ``DB_PATH`` and the ``DB_USER``,
        ``DB_PASSWORD``, ``DB_HOST``, ``DB_PORT``, ``DB_NAME`` of PostgreSQL."""
        enabled = environ.get("DISABLE_DATABASE", "false").lower() != "true"
        kind = (environ.get("DB_TYPE") or "sqlite").strip().lower()
        if kind == "postgresql":
            kind = "postgres"
        if kind not in ("sqlite", "postgres"):
            raise StoreConfigError(f"DB_TYPE must be sqlite or postgres, not {kind!r}")
        text = environ.get("DB_PORT") or PG_DEFAULTS["DB_PORT"]
        try:
            port = int(text)
        except ValueError:
            port = 0
        if not 0 < port < 65536:
            raise StoreConfigError(f"DB_PORT must be a port number (1-65535), not {text!r}")

        def get(name: str) -> str:
            return environ.get(name) or PG_DEFAULTS[name]

        return cls(enabled=enabled, kind=kind, path=environ.get("DB_PATH") or DEFAULT_PATH,
                   user=get("DB_USER"), password=get("DB_PASSWORD"), host=get("DB_HOST"),
                   port=port, name=get("DB_NAME"))

    @property
    def dialect(self) -> Dialect:
        return POSTGRES if self.kind == "postgres" else SQLITE

    @property
    def module(self) -> str:
        """The DB-API module the transport imports."""
        return "psycopg" if self.kind == "postgres" else "sqlite3"

    @property
    def directory(self) -> str | None:
        """The directory to create before connecting (SQLite's file's parent), or None."""
        if self.kind != "sqlite" or self.path == ":memory:" or self.path.startswith("file:"):
            return None
        return str(PurePath(self.path).parent)

    def connect_args(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """``module.connect(*args, **kwargs)``. SQLite runs with ``isolation_level=None`` so
        that the work's own ``BEGIN IMMEDIATE`` opens each transaction (DDL included), and
        ``check_same_thread=False`` because the transport's worker threads take turns with it
        (one work at a time)."""
        if self.kind == "sqlite":
            return (self.path,), {"timeout": SQLITE_BUSY_TIMEOUT, "isolation_level": None,
                                  "check_same_thread": False}
        return (), {"host": self.host, "port": self.port, "user": self.user,
                    "password": self.password, "dbname": self.name, "autocommit": False,
                    "connect_timeout": PG_CONNECT_TIMEOUT, "application_name": "uniapi"}

    def open(self, import_module: Callable[[str], Any], makedirs: Callable[..., Any]) -> Any:
        """A DB-API connection to the store, made with the transport's own ``import_module``
        and ``makedirs`` (``importlib.import_module``, ``os.makedirs``): the one recipe both
        transports run in their worker thread, so that they cannot drift apart."""
        if self.directory:
            makedirs(self.directory, exist_ok=True)
        args, kwargs = self.connect_args()
        return import_module(self.module).connect(*args, **kwargs)

    def describe(self) -> str:
        """One line for the start-up banner and logs (no password)."""
        if not self.enabled:
            return "stats: off (DISABLE_DATABASE)"
        if self.kind == "sqlite":
            return f"stats: sqlite {self.path}"
        return f"stats: postgres {self.user}@{self.host}:{self.port}/{self.name}"


class _CloseStore:
    """``CLOSE_STORE``: the work ``Gateway.stats_next`` gives last, once stopping and every
    row is written, so the session closes its connection (its files, its socket) before the
    transport's loop ends, rather than whenever the garbage collector gets to it."""

    def __repr__(self) -> str:
        return "CLOSE_STORE"


CLOSE_STORE = _CloseStore()


class StoreSession:
    """A process's connection to the store, for the transport's worker thread: ``run(work)``
    opens it on first use (``StoreConfig.open`` with the transport's ``import_module`` and
    ``makedirs``), runs the work and gives its rows, or the error's text; a connection that
    failed is closed, so the next work opens a fresh one (a restarted server, a file made
    writable again). Blocking: the transport calls it from one worker thread at a time."""

    def __init__(self, config: StoreConfig, import_module: Callable[[str], Any],
                 makedirs: Callable[..., Any]) -> None:
        self._config = config
        self._open = (import_module, makedirs)
        self._conn: Any = None

    def run(self, work: Any) -> list[list[Any]] | str:
        if work is CLOSE_STORE:  # the last work at shutdown: let go of the connection
            conn, self._conn = self._conn, None
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            return []
        try:
            if self._conn is None:
                self._conn = self._config.open(*self._open)
            rows: list[list[Any]] = work.apply(self._conn)
            return rows
        except Exception as exc:  # noqa: BLE001 - the caller decides what a failure means
            conn, self._conn = self._conn, None
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            return f"{type(exc).__name__}: {exc}"[:MAX_ERROR]


# --- dialects --------------------------------------------------------------------------------

@attrs.frozen
class Dialect:
    """What differs between the engines. SQL is written once with ``?`` placeholders and no
    ``%`` sign, and ``sql`` renders it in the engine's paramstyle."""

    name: str
    paramstyle: str  # DB-API: "qmark" (sqlite3) or "format" (psycopg)
    real: str  # a float column
    bigint: str  # a 64-bit integer column
    #: statements run before a work's transaction, outside it (SQLite's journal mode)
    setup: tuple[str, ...]
    begin_write: str | None  # None: the driver opens the transaction itself (psycopg)
    begin_read: str | None
    #: taken first in the migration transaction so that instances starting together take
    #: turns (SQLite's BEGIN IMMEDIATE already holds the database's write lock)
    migrate_lock: str | None

    def sql(self, text: str) -> str:
        return text if self.paramstyle == "qmark" else text.replace("?", "%s")


SQLITE = Dialect(name="sqlite", paramstyle="qmark", real="REAL", bigint="INTEGER",
                 # WAL with synchronous=NORMAL: no fsync per batch (a power cut may lose the
                 # last batches, never corrupt the file; SQLite's own advice for WAL)
                 setup=("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL"),
                 begin_write="BEGIN IMMEDIATE",
                 begin_read="BEGIN", migrate_lock=None)
POSTGRES = Dialect(name="postgres", paramstyle="format", real="DOUBLE PRECISION",
                   bigint="BIGINT", setup=(), begin_write=None,
                   begin_read="SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
                   migrate_lock="SELECT pg_advisory_xact_lock(7361626901303313)")


# --- units of work ---------------------------------------------------------------------------

class Stmt(NamedTuple):
    """One statement: ``params`` a tuple runs it once (``execute``), a list of tuples runs it
    per tuple (``executemany``)."""

    sql: str
    params: tuple[Any, ...] | list[tuple[Any, ...]] = ()


def _close(cur: Any) -> None:
    with contextlib.suppress(Exception):  # the work's own outcome is what the caller needs
        cur.close()


def _rollback(conn: Any) -> None:
    with contextlib.suppress(Exception):  # a broken connection: the first error is re-raised
        conn.rollback()


@attrs.frozen(eq=False)
class DbWork:
    """One unit of work: ``setup`` statements, then one transaction of ``statements``.

    ``apply(conn)`` runs it on a DB-API 2.0 connection the transport opened and returns one
    list of rows per statement (``[]`` for a statement without a result); on any error it rolls
    back and re-raises. ``records`` is how many client requests a write batch carries."""

    statements: tuple[Stmt, ...]
    begin: str | None = None
    setup: tuple[str, ...] = ()
    records: int = 0

    def apply(self, conn: Any) -> list[list[Any]]:
        cur = conn.cursor()
        try:
            for text in self.setup:
                cur.execute(text)
                if cur.description is not None:
                    cur.fetchall()
            if self.begin:
                cur.execute(self.begin)
            out: list[list[Any]] = []
            for stmt in self.statements:
                if isinstance(stmt.params, list):
                    if stmt.params:
                        cur.executemany(stmt.sql, stmt.params)
                    out.append([])
                    continue
                if stmt.params:
                    cur.execute(stmt.sql, stmt.params)
                else:
                    cur.execute(stmt.sql)
                out.append(list(cur.fetchall()) if cur.description is not None else [])
            conn.commit()
            return out
        except BaseException:
            _rollback(conn)
            raise
        finally:
            _close(cur)


# --- schema and migrations -------------------------------------------------------------------

TOKEN_KINDS = ("prompt", "completion", "reasoning", "cached")
REPORTED = "reported"
ESTIMATED = "estimated"

REQUESTS = "uniapi_requests"
ATTEMPTS = "uniapi_attempts"
VERSIONS = "uniapi_schema_version"

REQUEST_COLUMNS = (
    "id", "ts", "endpoint", "client_key", "model", "upstream_model", "provider", "status",
    "attempts", "latency", "ttft", "client_ip", "error", "client_closed",
    *(f"{kind}_{suffix}" for kind in TOKEN_KINDS for suffix in ("tokens", "source")),
)
ATTEMPT_COLUMNS = ("request_id", "seq", "ts", "provider", "model", "requested_model",
                   "upstream_key", "outcome", "ok", "latency")


def _token_columns() -> str:
    return ",\n".join(
        f"  {k}_tokens {{bigint}},\n  {k}_source TEXT CHECK (({k}_tokens IS NULL AND "
        f"{k}_source IS NULL) OR ({k}_tokens >= 0 AND {k}_source IN ('{REPORTED}', "
        f"'{ESTIMATED}')))" for k in TOKEN_KINDS)


@attrs.frozen
class Migration:
    """Schema version ``version``: its statements, with ``{real}`` and ``{bigint}`` standing
    for the dialect's column types. Applied once, in the transaction of ``migrate_work``."""

    version: int
    name: str
    statements: tuple[str, ...]

    def render(self, dialect: Dialect) -> tuple[str, ...]:
        return tuple(s.format(real=dialect.real, bigint=dialect.bigint) for s in self.statements)


#: the schema's history; a new version is appended, never edited (deployed stores have run it)
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "requests and attempts", (
        f"""CREATE TABLE {REQUESTS} (
  id TEXT PRIMARY KEY,
  ts {{real}} NOT NULL,
  endpoint TEXT NOT NULL,
  client_key TEXT,
  model TEXT,
  upstream_model TEXT,
  provider TEXT,
  status INTEGER NOT NULL,
  attempts INTEGER NOT NULL,
  latency {{real}},
  ttft {{real}},
  client_ip TEXT,
  error TEXT,
  client_closed SMALLINT NOT NULL,
{_token_columns()}
)""",
        f"CREATE INDEX {REQUESTS}_ts ON {REQUESTS} (ts)",
        f"CREATE INDEX {REQUESTS}_key_ts ON {REQUESTS} (client_key, ts)",
        f"""CREATE TABLE {ATTEMPTS} (
  request_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  ts {{real}} NOT NULL,
  provider TEXT NOT NULL,
  model TEXT,
  requested_model TEXT,
  upstream_key TEXT,
  outcome TEXT NOT NULL,
  ok SMALLINT NOT NULL,
  latency {{real}},
  PRIMARY KEY (request_id, seq)
)""",
        f"CREATE INDEX {ATTEMPTS}_ts ON {ATTEMPTS} (ts)",
    )),
    # the stored Responses of POST /v1/responses (previous_response_id): ops/responses_store.py
    Migration(2, "stored responses", (
        """CREATE TABLE uniapi_responses (
  id TEXT PRIMARY KEY,
  client_key TEXT NOT NULL,
  created {real} NOT NULL,
  expires {real} NOT NULL,
  model TEXT,
  status TEXT NOT NULL,
  input_items TEXT NOT NULL,
  output_items TEXT NOT NULL,
  response TEXT NOT NULL,
  previous_id TEXT
)""",
        "CREATE INDEX uniapi_responses_expires ON uniapi_responses (expires)",
    )),
)


@attrs.frozen(eq=False)
class MigrateWork:
    """Bring the schema up to date: in one transaction (under the dialect's lock), create the
    version table if missing, read the version, run each newer migration and record it.
    ``apply`` returns ``[[(version before,)], [(applied version,), ...]]``."""

    dialect: Dialect
    migrations: tuple[Migration, ...]
    wall: float

    def apply(self, conn: Any) -> list[list[Any]]:
        d = self.dialect
        cur = conn.cursor()
        try:
            for text in d.setup:
                cur.execute(text)
                if cur.description is not None:
                    cur.fetchall()
            if d.begin_write:
                cur.execute(d.begin_write)
            if d.migrate_lock:
                cur.execute(d.migrate_lock)
                cur.fetchall()
            cur.execute(f"CREATE TABLE IF NOT EXISTS {VERSIONS} (version INTEGER PRIMARY KEY, "
                        f"name TEXT NOT NULL, applied_at {d.real} NOT NULL)")
            cur.execute(f"SELECT MAX(version) FROM {VERSIONS}")
            row = cur.fetchall()[0]
            before = int(row[0]) if row[0] is not None else 0
            applied = []
            for migration in sorted(self.migrations, key=lambda m: m.version):
                if migration.version <= before:
                    continue
                for text in migration.render(d):
                    cur.execute(text)
                cur.execute(d.sql(f"INSERT INTO {VERSIONS} (version, name, applied_at) "
                                  "VALUES (?, ?, ?)"),
                            (migration.version, migration.name, self.wall))
                applied.append((migration.version,))
            conn.commit()
            return [[(before,)], applied]
        except BaseException:
            _rollback(conn)
            raise
        finally:
            _close(cur)


def migrate_work(dialect: Dialect, wall: float,
                 migrations: tuple[Migration, ...] = MIGRATIONS) -> MigrateWork:
    """The start-up work: the schema at the newest version (``wall`` is written as the time
    each migration was applied)."""
    return MigrateWork(dialect, migrations, wall)


# --- rows from a record ----------------------------------------------------------------------

#: the longest texts stored (characters); longer ones are cut
MAX_TEXT = 256
MAX_ERROR = 1000
#: counts above this are no counts (a poisoned value must not fail a whole batch)
MAX_COUNT = 2 ** 40


class StatRows(NamedTuple):
    """The rows of one client request: its request row and its attempt rows, in the column
    order of ``REQUEST_COLUMNS`` and ``ATTEMPT_COLUMNS``."""

    request: tuple[Any, ...]
    attempts: tuple[tuple[Any, ...], ...]


def _text(value: object, limit: int = MAX_TEXT) -> str | None:
    """A text both engines store: no NUL (PostgreSQL refuses it), no lone surrogate (UTF-8
    cannot encode it), at most ``limit`` characters."""
    if type(value) is str and value.isascii() and len(value) <= limit and "\x00" not in value:
        return value  # the usual case, checked in C (isascii is O(1) on CPython)
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    text = text[:limit]
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _seconds(value: object) -> float | None:
    """A duration in seconds, or None when it is not a finite number >= 0."""
    if type(value) is float:
        return value if 0.0 <= value < math.inf else None  # NaN compares false
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return float(value) if value >= 0 else None


def _count(value: object) -> int | None:
    """A token count: an int (or a whole float) from 0 to ``MAX_COUNT``, else no count."""
    if type(value) is int:  # the usual case (bool is not an int here)
        return value if 0 <= value <= MAX_COUNT else None
    if type(value) is float and value.is_integer() and 0 <= value <= MAX_COUNT:
        return int(value)
    return None


_NO_COUNTS = (None,) * (2 * len(TOKEN_KINDS))


def _usage_counts(usage: object) -> tuple[Any, ...]:
    """``(prompt, source, completion, source, reasoning, source, cached, source)``."""
    if not isinstance(usage, dict):
        return _NO_COUNTS
    source = ESTIMATED if usage.get("estimated") is True else REPORTED
    details = usage.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else None
    details = usage.get("completion_tokens_details")
    reasoning = _count(details.get("reasoning_tokens")) if isinstance(details, dict) else None
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    return (prompt, None if prompt is None else source,
            completion, None if completion is None else source,
            reasoning, None if reasoning is None else source,
            cached, None if cached is None else source)


def _record_id(record: RecordLike) -> str:
    """A request id from the record alone: the same record, the same id."""
    digest = hashlib.sha256(repr((
        record.wall, record.method, record.path, record.status, record.duration, record.key,
        record.model, record.client_ip, record.ttft, record.error, record.client_closed,
        tuple(record.attempts), tuple((t.provider, t.model, t.outcome, t.key, t.latency)
                                      for t in record.tries),
        sorted((record.usage or {}).items(), key=repr))).encode("utf-8", "surrogatepass"))
    return "r-" + digest.hexdigest()[:24]


def rows_of(record: RecordLike, request_id: str | None = None) -> StatRows:
    """The rows of one finished request. ``request_id`` is the queue's (instance id and a
    counter: unique across workers and instances); without it the id is a digest of the
    record, the same for two identical records."""
    rid = request_id if request_id is not None else _record_id(record)
    wall = _seconds(record.wall) or 0.0
    requested = _text(record.model)
    tries = record.tries
    if tries:
        attempts = tuple(
            (rid, seq, wall, _text(t.provider) or "", _text(t.model), requested, _text(t.key),
             _text(t.outcome) or "", int(t.outcome == "ok"), _seconds(t.latency))
            for seq, t in enumerate(tries))
    else:
        attempts = tuple(
            (rid, seq, wall, _text(p) or "", _text(m), requested, None, _text(o) or "",
             int(o == "ok"), None)
            for seq, (p, m, o) in enumerate(record.attempts))
    last = attempts[-1] if attempts else None
    status = record.status
    request = (
        rid, wall, _text(f"{record.method} {record.path}"), _text(record.key), requested,
        last[4] if last else None, last[3] if last else None,
        status if type(status) is int else 0, len(attempts), _seconds(record.duration),
        _seconds(record.ttft), _text(record.client_ip), _text(record.error, MAX_ERROR),
        1 if record.client_closed else 0, *_usage_counts(record.usage),
    )
    return StatRows(request, attempts)


def _insert(table: str, columns: tuple[str, ...]) -> str:
    # ON CONFLICT DO NOTHING: a batch retried after a commit the transport did not see
    # (a connection lost at COMMIT) is written once (SQLite >= 3.24, PostgreSQL >= 9.5)
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
            f"({', '.join('?' for _ in columns)}) ON CONFLICT DO NOTHING")


_INSERT_REQUEST = _insert(REQUESTS, REQUEST_COLUMNS)
_INSERT_ATTEMPT = _insert(ATTEMPTS, ATTEMPT_COLUMNS)


#: the most parameters one statement binds: SQLite before 3.32 allows 999, the lowest limit of
#: the engines (PostgreSQL: 65535)
MAX_PARAMS = 999


def _inserts(dialect: Dialect, table: str, columns: tuple[str, ...],
             rows: Sequence[tuple[Any, ...]]) -> list[Stmt]:
    """``rows`` as multi-row INSERTs of at most ``MAX_PARAMS`` parameters each. One statement
    for many rows, not ``executemany``: the driver then runs SQLite once per chunk with the GIL
    released, instead of taking the GIL back between rows from the event loop's thread."""
    per = max(1, MAX_PARAMS // len(columns))
    one = f"({', '.join('?' for _ in columns)})"
    head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
    out = []
    i = 0
    while i < len(rows):
        # full chunks, then the rest in powers of two: a handful of distinct statements, which
        # the driver's statement cache keeps prepared, whatever the batch's size
        left = len(rows) - i
        n = per if left >= per else 1 << (left.bit_length() - 1)
        chunk = rows[i:i + n]
        i += n
        # ON CONFLICT DO NOTHING: see _insert
        sql = head + ", ".join(one for _ in chunk) + " ON CONFLICT DO NOTHING"
        out.append(Stmt(dialect.sql(sql), tuple(v for row in chunk for v in row)))
    return out


def request_rows(work: DbWork) -> list[tuple[Any, ...]]:
    """The ``uniapi_requests`` rows a ``write_work`` inserts, in order (for tests and logs)."""
    width = len(REQUEST_COLUMNS)
    out = []
    for st in work.statements:
        if st.sql.startswith(f"INSERT INTO {REQUESTS} ") and isinstance(st.params, tuple):
            out += [st.params[i:i + width] for i in range(0, len(st.params), width)]
    return out


def write_work(dialect: Dialect, batch: Sequence[StatRows]) -> DbWork:
    """One batch of requests as one transaction."""
    attempts = [row for rows in batch for row in rows.attempts]
    statements = _inserts(dialect, REQUESTS, REQUEST_COLUMNS, [rows.request for rows in batch])
    if attempts:
        statements += _inserts(dialect, ATTEMPTS, ATTEMPT_COLUMNS, attempts)
    return DbWork(tuple(statements), begin=dialect.begin_write, records=len(batch))


# --- the queue -------------------------------------------------------------------------------

def new_instance_id(rng: Any) -> str:
    """An id for one process's queue from the gateway's injected ``random.Random``: 64 random
    bits, so workers and instances sharing a store do not collide."""
    return f"{rng.getrandbits(64):016x}"


class StatsQueue:
    """The bounded queue between the request path and the store.

    ``add`` builds a request's rows and queues them; it never blocks and never raises. A full
    queue (``limit`` requests waiting or in flight) drops the newest and counts it in
    ``dropped``. A batch is due when ``batch`` requests wait or the oldest has waited
    ``interval`` seconds; ``take`` hands out one batch as one ``DbWork``, and only one is in
    flight at a time. ``done(work, ok=False, ...)`` retries that same work after a backoff
    (``backoff`` doubling, at most ``max_backoff``) up to ``retries`` times, then drops it and
    counts its requests in ``failed``."""

    def __init__(self, dialect: Dialect, instance: str, *, limit: int = 10_000,
                 batch: int = 500, interval: float = 1.0, retries: int = 4,
                 backoff: float = 1.0, max_backoff: float = 30.0) -> None:
        if limit < 1 or batch < 1 or retries < 0 or interval < 0 or backoff < 0:
            raise ValueError("limit and batch must be >= 1; retries, interval, backoff >= 0")
        self.dialect = dialect
        self.instance = instance
        self.limit = limit
        self.batch = batch
        self.interval = interval
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        #: requests queued, written, dropped (queue full or unusable record), failed (batch
        #: dropped after its retries)
        self.added = 0
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self.last_error: str | None = None
        self._seq = 0
        #: (time added, request row, attempt rows): plain tuples of plain values, which the
        #: garbage collector stops tracking after one pass (a NamedTuple it tracks for as long
        #: as it lives, and a second of queued rows then makes every collection slower)
        self._pending: deque[tuple[float, tuple[Any, ...], tuple[tuple[Any, ...], ...]]] = \
            deque()
        #: works of their own (a stored response, expired ones deleted), run before the next
        #: batch, at once: not held for the batch interval
        self._works: deque[DbWork] = deque()
        self._inflight: DbWork | None = None
        self._retry: DbWork | None = None
        self._retry_at = 0.0
        self._tries = 0

    def __len__(self) -> int:
        """Requests held: waiting, waiting for a retry, or in flight."""
        held = len(self._pending)
        for work in (self._inflight, self._retry):
            if work is not None:
                held += work.records
        return held

    @property
    def in_flight(self) -> bool:
        return self._inflight is not None

    def add(self, record: RecordLike, now: float) -> bool:
        """Queue one finished request; False when it was dropped."""
        if len(self) >= self.limit:
            self.dropped += 1
            return False
        try:
            rows = rows_of(record, f"{self.instance}-{self._seq}")
        except Exception as exc:  # noqa: BLE001 - a malformed record must not fail its request
            self.dropped += 1
            self.last_error = f"unusable record: {type(exc).__name__}: {exc}"[:MAX_ERROR]
            return False
        self._seq += 1
        self.added += 1
        self._pending.append((now, tuple(rows.request), tuple(rows.attempts)))
        return True

    def add_work(self, work: DbWork) -> bool:
        """Queue a work of its own (run before the next batch, at once); False when the queue
        is full (counted as a drop)."""
        if len(self._works) >= self.limit:
            self.dropped += 1
            return False
        self._works.append(work)
        return True

    def due(self, now: float, flush: bool = False) -> bool:
        """Is a batch ready to take? ``flush`` (at shutdown) ignores the interval, the batch
        size and the retry's backoff."""
        if self._inflight is not None:
            return False
        if self._retry is not None:
            return flush or now >= self._retry_at
        if self._works:
            return True
        if not self._pending:
            return False
        return (flush or len(self._pending) >= self.batch
                or now >= self._pending[0][0] + self.interval)

    def next_deadline(self) -> float | None:
        """When ``due`` turns true without another ``add`` (None: not before a ``done``)."""
        if self._inflight is not None:
            return None
        if self._retry is not None:
            return self._retry_at
        if self._works:
            return 0.0
        if not self._pending:
            return None
        oldest = self._pending[0][0]
        return oldest if len(self._pending) >= self.batch else oldest + self.interval

    def take(self, now: float, flush: bool = False) -> DbWork | None:
        """The next batch, now in flight; None when none is due."""
        if not self.due(now, flush):
            return None
        if self._retry is not None:
            work, self._retry = self._retry, None
        elif self._works:
            work = self._works.popleft()
        else:
            count = min(self.batch, len(self._pending))
            taken = [self._pending.popleft() for _ in range(count)]
            work = write_work(self.dialect, [StatRows(request, attempts)
                                             for _, request, attempts in taken])
        self._inflight = work
        return work

    def done(self, work: DbWork, ok: bool, error: str | None = None, now: float = 0.0) -> None:
        """The in-flight ``work`` ended (a work that is not in flight is ignored)."""
        if work is not self._inflight:
            return
        self._inflight = None
        if ok:
            self.written += work.records
            self._tries = 0
            return
        self._tries += 1
        self.last_error = None if error is None else error[:MAX_ERROR]
        if self._tries > self.retries:
            self.failed += work.records
            self._tries = 0
            return
        self._retry = work
        self._retry_at = now + min(self.max_backoff, self.backoff * 2 ** (self._tries - 1))

    def counts(self) -> dict[str, int]:
        """The queue's counters, for metrics and logs."""
        return {"added": self.added, "written": self.written, "dropped": self.dropped,
                "failed": self.failed, "queued": len(self)}


# --- queries ---------------------------------------------------------------------------------

class StatsQueryError(ValueError):
    """A query parameter the endpoint refuses, with the status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


#: ``GET /v1/stats`` with the store off (uni-api's answer)
DISABLED_STATS: dict[str, Any] = {"stats": {}}
MAX_HOURS = 720
DEFAULT_HOURS = 24
DEFAULT_USAGE_DAYS = 30
PERCENTILES = (50, 95)

_GROUP_MODEL = "COALESCE(model, upstream_model)"


def _rank_query(column: str) -> str:
    """Nearest-rank percentiles of ``column`` per (provider, model) in SQL both engines run:
    only the rows at rank ceil(p * n / 100) come back, computed with integer division."""
    ranks = " OR ".join(f"rn = (n * {p} + 99) / 100" for p in PERCENTILES)
    part = f"PARTITION BY provider, {_GROUP_MODEL}"
    return (f"SELECT provider, m, n, rn, v FROM (SELECT provider, {_GROUP_MODEL} AS m, "
            f"{column} AS v, ROW_NUMBER() OVER ({part} ORDER BY {column}) AS rn, "
            f"COUNT(*) OVER ({part}) AS n FROM {REQUESTS} WHERE ts >= ? AND provider IS NOT NULL"
            f" AND {column} IS NOT NULL) ranked WHERE {ranks}")


def _token_sums() -> str:
    parts = []
    for k in TOKEN_KINDS:
        parts += [f"SUM(CASE WHEN {k}_source = '{REPORTED}' THEN {k}_tokens ELSE 0 END)",
                  f"SUM(CASE WHEN {k}_source = '{ESTIMATED}' THEN {k}_tokens ELSE 0 END)",
                  f"SUM(CASE WHEN {k}_source IS NULL THEN 1 ELSE 0 END)"]
    return ", ".join(parts)


def _channel_query(group: str) -> str:
    # an attempt the client abandoned says nothing of the provider (uni-api writes none)
    return (f"SELECT {group}, COUNT(*), SUM(ok) FROM {ATTEMPTS} WHERE ts >= ? "
            f"AND outcome <> 'client_closed' GROUP BY {group}")


_STATS_SQL = (
    _channel_query("provider, COALESCE(requested_model, model)"),
    _channel_query("provider"),
    f"SELECT model, COUNT(*) FROM {REQUESTS} WHERE ts >= ? GROUP BY model",
    f"SELECT endpoint, COUNT(*) FROM {REQUESTS} WHERE ts >= ? GROUP BY endpoint",
    f"SELECT client_ip, COUNT(*) FROM {REQUESTS} WHERE ts >= ? GROUP BY client_ip",
    (f"SELECT provider, {_GROUP_MODEL}, COUNT(*), {_token_sums()} FROM {REQUESTS} "
     f"WHERE ts >= ? AND provider IS NOT NULL GROUP BY provider, {_GROUP_MODEL}"),
    _rank_query("latency"),
    _rank_query("ttft"),
)


def _int(value: Any) -> int:
    return int(value) if value is not None else 0  # PostgreSQL's SUM(bigint) is a Decimal


def _by_count(rows: Iterable[Sequence[Any]], name: str) -> list[dict[str, Any]]:
    items = [(row[0], _int(row[1])) for row in rows]
    items.sort(key=lambda item: (-item[1], item[0] is None, item[0] or ""))
    return [{name: value, "count": count} for value, count in items]


def _rates(rows: Iterable[Sequence[Any]], names: tuple[str, ...]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        total, ok = _int(row[-2]), _int(row[-1])
        entry: dict[str, Any] = dict(zip(names, row))
        entry["success_rate"] = ok / total if total else 0
        entry["total_requests"] = total
        out.append(entry)
    out.sort(key=lambda e: (-e["success_rate"], -e["total_requests"],
                            *(e[n] is None for n in names), *(e[n] or "" for n in names)))
    return out


@attrs.frozen
class StatsQuery:
    """``GET /v1/stats?hours=N``: ``from_params`` checks N, ``work`` reads the window,
    ``answer`` turns the rows into uni-api's fields plus ``provider_model_stats``."""

    hours: int
    since: float

    @classmethod
    def from_params(cls, params: Mapping[str, str], wall: float) -> StatsQuery:
        text = params.get("hours")
        if text is None or text == "":
            hours = DEFAULT_HOURS
        else:
            try:
                hours = int(text)
            except ValueError:
                hours = 0
            if not 1 <= hours <= MAX_HOURS:
                raise StatsQueryError(422, f"hours must be an integer from 1 to {MAX_HOURS}")
        return cls(hours, wall - hours * 3600.0)

    def work(self, dialect: Dialect) -> DbWork:
        return DbWork(tuple(Stmt(dialect.sql(sql), (self.since,)) for sql in _STATS_SQL),
                      begin=dialect.begin_read)

    def answer(self, results: Sequence[Sequence[Sequence[Any]]]) -> dict[str, Any]:
        cm, channels, models, endpoints, ips, tokens, latency, ttft = results
        ranks: dict[tuple[Any, Any], dict[str, float]] = {}
        for name, rows in (("latency", latency), ("ttft", ttft)):
            for provider, model, n, rn, value in rows:
                for p in PERCENTILES:
                    if _int(rn) == (_int(n) * p + 99) // 100:
                        ranks.setdefault((provider, model), {})[f"{name}_p{p}"] = float(value)
        per_model = []
        for row in tokens:
            provider, model, requests = row[0], row[1], _int(row[2])
            entry: dict[str, Any] = {"provider": provider, "model": model, "requests": requests}
            found = ranks.get((provider, model), {})
            for name in ("latency", "ttft"):
                for p in PERCENTILES:
                    entry[f"{name}_p{p}"] = found.get(f"{name}_p{p}")
            entry["tokens"] = {
                f"{kind}_tokens": {"reported": _int(row[3 + 3 * i]),
                                   "estimated": _int(row[4 + 3 * i]),
                                   "absent": _int(row[5 + 3 * i])}
                for i, kind in enumerate(TOKEN_KINDS)}
            per_model.append(entry)
        per_model.sort(key=lambda e: (e["provider"], e["model"] is None, e["model"] or ""))
        return {
            "time_range": f"Last {self.hours} hours",
            "channel_model_success_rates": _rates(cm, ("provider", "model")),
            "channel_success_rates": _rates(channels, ("provider",)),
            "model_request_counts": _by_count(models, "model"),
            "endpoint_request_counts": _by_count(endpoints, "endpoint"),
            "ip_request_counts": _by_count(ips, "ip"),
            "provider_model_stats": per_model,
        }


_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _instant(name: str, text: str) -> tuple[float, bool]:
    """(unix seconds, a date without a time) of a Unix timestamp or an ISO 8601 text (UTC when
    it names no zone)."""
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise StatsQueryError(400, f"Invalid {name}: {text}")
        return value, False
    try:
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise StatsQueryError(400, f"Invalid datetime format: {text}. Use ISO 8601 "
                                   "(YYYY-MM-DDTHH:MM:SSZ) or Unix timestamp.") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp(), bool(_DATE_ONLY.fullmatch(text))


def _iso(value: float | None) -> str | None:
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        raise StatsQueryError(400, f"Datetime out of range: {value}") from None


@attrs.frozen
class UsageWindow:
    """The half-open time window ``[start, end)`` of a usage query (None: unbounded), with the
    texts ``query_details`` shows."""

    start: float | None
    end: float | None
    start_text: str | None
    end_text: str | None


def usage_window(params: Mapping[str, str], wall: float) -> UsageWindow:
    """uni-api's window: ``last_n_days`` (up to now), or ``start_datetime`` and/or
    ``end_datetime`` (ISO 8601 or a Unix timestamp; an end given as a date alone covers that
    whole day), never both kinds; by default the last 30 days."""
    days_text = params.get("last_n_days")
    start_text, end_text = params.get("start_datetime"), params.get("end_datetime")
    if days_text is not None:
        if start_text or end_text:
            raise StatsQueryError(
                400, "Cannot use last_n_days with start_datetime or end_datetime.")
        try:
            days = int(days_text)
        except ValueError:
            raise StatsQueryError(422, "last_n_days must be an integer.") from None
        if days <= 0:
            raise StatsQueryError(400, "last_n_days must be positive.")
        start = wall - days * 86400.0
        return UsageWindow(start, None, _iso(start), _iso(wall))
    if start_text or end_text:
        lo: float | None = None
        hi: float | None = None
        if start_text:
            lo = _instant("start_datetime", start_text)[0]
        if end_text:
            hi, whole_day = _instant("end_datetime", end_text)
            if whole_day:
                hi += 86400.0
        if lo is not None and hi is not None and hi < lo:
            raise StatsQueryError(400, "end_datetime cannot be before start_datetime.")
        return UsageWindow(lo, hi, _iso(lo), _iso(hi))
    start = wall - DEFAULT_USAGE_DAYS * 86400.0
    return UsageWindow(start, None, _iso(start), _iso(wall))


@attrs.frozen
class TokenUsageQuery:
    """``GET /v1/token_usage``: tokens per (client key, model) in a window.

    The gateway decides ``key`` (uni-api's rule: a non-admin sees its own key only, an admin
    every key or the digest of ``api_key_param``) and ``key_filter``, the text shown in
    ``query_details`` (``"self"``, ``"all"`` or the filter)."""

    window: UsageWindow
    key: str | None = None
    model: str | None = None
    key_filter: str = "all"

    @classmethod
    def from_params(cls, params: Mapping[str, str], wall: float, *, own_key: str | None,
                    admin: bool, digest: Callable[[str], str]) -> TokenUsageQuery:
        """The query a client asked for: ``own_key`` is the caller's key digest, ``digest``
        turns an admin's ``api_key_param`` (a key) into the stored digest."""
        window = usage_window(params, wall)
        model = params.get("model") or None
        wanted = params.get("api_key_param")
        if admin:
            if wanted:
                return cls(window, digest(wanted), model, digest(wanted))
            return cls(window, None, model, "all")
        return cls(window, own_key, model, "self")

    def work(self, dialect: Dialect) -> DbWork:
        sql = (f"SELECT client_key, model, COUNT(*), SUM(prompt_tokens), "
               f"SUM(completion_tokens), SUM(reasoning_tokens), SUM(cached_tokens), "
               f"SUM(CASE WHEN prompt_source IS NULL AND completion_source IS NULL "
               f"THEN 1 ELSE 0 END), SUM(CASE WHEN prompt_source = '{ESTIMATED}' OR "
               f"completion_source = '{ESTIMATED}' THEN 1 ELSE 0 END) FROM {REQUESTS} "
               f"WHERE model IS NOT NULL")
        params: list[Any] = []
        for clause, value in (("ts >= ?", self.window.start), ("ts < ?", self.window.end),
                              ("client_key = ?", self.key), ("model = ?", self.model)):
            if value is not None:
                sql += f" AND {clause}"
                params.append(value)
        sql += " GROUP BY client_key, model"
        return DbWork((Stmt(dialect.sql(sql), tuple(params)),), begin=dialect.begin_read)

    def answer(self, results: Sequence[Sequence[Sequence[Any]]],
               names: Mapping[str, str] | None = None) -> dict[str, Any]:
        """uni-api's answer: ``usage`` (per key and model; ``api_key_prefix`` is the key's
        alias from ``names`` or its digest, never the key) and ``query_details``. The credit
        fields are null: uniapi keeps no balance."""
        usage = []
        for row in results[0]:
            key, model = row[0], row[1]
            prompt, completion = _int(row[3]), _int(row[4])
            usage.append({
                "api_key_prefix": (names or {}).get(key, key) if key is not None else None,
                "model": model, "total_prompt_tokens": prompt,
                "total_completion_tokens": completion, "total_tokens": prompt + completion,
                "total_reasoning_tokens": _int(row[5]), "total_cached_tokens": _int(row[6]),
                "request_count": _int(row[2]), "requests_without_usage": _int(row[7]),
                "requests_estimated": _int(row[8]),
            })
        usage.sort(key=lambda e: (e["api_key_prefix"] is None, e["api_key_prefix"] or "",
                                  e["model"]))
        return {"usage": usage, "query_details": {
            "start_datetime": self.window.start_text, "end_datetime": self.window.end_text,
            "api_key_filter": self.key_filter, "model_filter": self.model or "all",
            "credits": None, "total_cost": None, "balance": None}}
