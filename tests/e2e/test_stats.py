"""The stats store over real sockets, on both backends: rows for successes, failures, retries
and client disconnects, written off the request path; /v1/stats and /v1/token_usage equal the
requests made, after a restart too; a store that cannot be written costs rows, never answers.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest

from tests.core.test_stats import pg_database, pg_server  # noqa: F401 - the fixture
from tests.fakes.upstream import FakeUpstream, Reply, json_reply
from tests.harness import run_gateway
from uniapi_core.ops.stats import StoreConfig

ADMIN, USER = "sk-admin-key", "sk-user-key"


def config(up: FakeUpstream) -> str:
    return f"""
providers:
  - provider: up
    base_url: {up.url}/v1/chat/completions
    api: sk-upstream-one
    model: [m]
  - provider: up2
    base_url: {up.url}/v1/chat/completions
    api: sk-upstream-two
    model: [m]
api_keys:
  - api: {ADMIN}
    role: admin
    preferences: {{SCHEDULING_ALGORITHM: fixed_priority}}
  - api: {USER}
    preferences: {{SCHEDULING_ALGORITHM: fixed_priority}}
"""


def answer(text: str, prompt: int) -> dict:
    return {"id": "x", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": 2,
                      "total_tokens": prompt + 2}}


def chunk(text: str) -> bytes:
    return b"data: " + json.dumps({"id": "s", "object": "chat.completion.chunk", "created": 1,
                                   "model": "m", "choices": [{"index": 0, "delta": {
                                       "content": text}, "finish_reason": None}]}).encode() \
        + b"\n\n"


def get(url: str, key: str) -> tuple[int, dict]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def settled(gw, written: int, limit: float = 10.0) -> None:
    """Wait until the flush loop has written ``written`` requests (it runs off the request
    path, a batch at most a second after its first row)."""
    deadline = time.monotonic() + limit
    queue = gw.gateway.stats
    while queue.written < written and time.monotonic() < deadline:
        time.sleep(0.05)
    assert queue.written == written, (queue.written, queue.last_error)


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


@contextlib.contextmanager
def a_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest):
    """(the StoreConfig, run(sql) -> rows, the raw bytes to search for secrets or None): a
    SQLite file in a directory not made yet, or a new database on the suite's PostgreSQL."""
    if kind == "sqlite":
        db = tmp_path / "data" / "stats.db"
        yield StoreConfig(path=str(db)), lambda sql: rows(db, sql), db.read_bytes
        return
    import psycopg

    server = request.getfixturevalue("pg_server")
    with pg_database(server) as backend:
        def run(sql: str) -> list[tuple]:
            with psycopg.connect(**server.connect_kwargs(backend.config.name)) as conn:
                return [tuple(r) for r in conn.execute(sql).fetchall()]

        def dump() -> bytes:
            return repr([run(f"SELECT * FROM {t}") for t in ("uniapi_requests",
                                                              "uniapi_attempts")]).encode()
        yield backend.config, run, dump


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_rows_for_every_outcome_survive_a_restart(backend, kind, tmp_path, request):
    with a_store(kind, tmp_path, request) as (store, query, raw):
        _rows_and_restart(backend, store, query, raw)


def _rows_and_restart(backend, store, query, raw):
    up = FakeUpstream()
    up.replies = [
        json_reply(answer("a", 10)),  # admin: up answers
        json_reply({"error": {"message": "down"}}, status=500),  # user: up fails...
        json_reply(answer("b", 20)),  # ... and up2 answers (a retry)
        Reply(headers=[("content-type", "text/event-stream")],  # user: a stream the client
              pieces=[chunk("x"), chunk("y")] * 200, chunked=True),  # leaves mid-way
    ]
    try:
        with run_gateway(config(up), backend=backend, stats_store=store) as gw:
            admin, user = gw.openai(ADMIN), gw.openai(USER)
            admin.chat.completions.create(model="m", messages=[{"role": "user", "content": "1"}])
            user.chat.completions.create(model="m", messages=[{"role": "user", "content": "2"}])
            with user.chat.completions.create(model="m", stream=True, messages=[
                    {"role": "user", "content": "3"}]) as stream:
                next(iter(stream))  # the first chunk, then the client goes away
            with pytest.raises(openai.NotFoundError):
                user.chat.completions.create(model="nope", messages=[{"role": "user",
                                                                       "content": "4"}])
            settled(gw, 4)
    finally:
        up.close()
    found = query("SELECT endpoint, status, attempts, provider, client_closed, "
                  "prompt_tokens, prompt_source FROM uniapi_requests ORDER BY ts")
    chat = [r for r in found if r[0] == "POST /v1/chat/completions"]
    # the stream had begun (200) when its client left; the unknown model never reached one
    assert [(r[1], r[2], r[3]) for r in chat] == [(200, 1, "up"), (200, 2, "up2"),
                                                  (200, 1, "up2"), (404, 0, None)]
    assert chat[2][4] in (1, True)  # client_closed
    assert [(r[5], r[6]) for r in chat[:2]] == [(10, "reported"), (20, "reported")]
    assert (chat[3][5], chat[3][6]) == (None, None)  # no usage: absent, not a zero
    outcomes = query("SELECT provider, outcome, upstream_key FROM uniapi_attempts "
                     "ORDER BY ts, seq")
    assert [o[:2] for o in outcomes[:3]] == [("up", "ok"), ("up", "status:500"), ("up2", "ok")]
    assert all(o[2] is None or o[2].startswith("k-") for o in outcomes)
    text = raw()
    for secret in (ADMIN, USER, "sk-upstream-one", "sk-upstream-two"):
        assert secret.encode() not in text

    # a restart reads what the first process wrote
    up = FakeUpstream()
    try:
        with run_gateway(config(up), backend=backend, stats_store=store) as gw:
            status, stats = get(gw.url + "/v1/stats?hours=1", ADMIN)
            assert get(gw.url + "/v1/stats", USER)[0] == 403
            assert get(gw.url + "/v1/stats?hours=0", ADMIN)[0] == 422
            mine_status, mine = get(gw.url + "/v1/token_usage", USER)
            all_status, every = get(gw.url + "/v1/token_usage?last_n_days=1", ADMIN)
    finally:
        up.close()
    assert status == 200, stats
    body = stats  # uni-api's fields, at the top
    rates = {(r["provider"], r["model"]): r for r in body["channel_model_success_rates"]}
    assert rates[("up", "m")]["total_requests"] == 2  # one ok, one 500
    # the stream its client left is no verdict on the channel: not counted for it
    assert rates[("up2", "m")]["total_requests"] == 1
    models = {r["model"]: r["count"] for r in body["model_request_counts"]}
    assert models["m"] == 3
    assert mine_status == 200 and all_status == 200
    (own,) = [u for u in mine["usage"] if u["model"] == "m"]
    assert own["total_prompt_tokens"] == 20 and own["request_count"] == 2
    assert sum(u["total_prompt_tokens"] for u in every["usage"]) == 30
    assert USER not in json.dumps(mine) and ADMIN not in json.dumps(every)


def test_a_store_that_cannot_be_written_costs_rows_never_answers(backend, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    store = StoreConfig(path=str(blocker / "stats.db"))  # its directory cannot be made
    up = FakeUpstream()
    up.replies = [json_reply(answer(str(i), 5)) for i in range(5)]
    try:
        with run_gateway(config(up), backend=backend, stats_store=store) as gw:
            client = gw.openai(ADMIN)
            for i in range(5):
                reply = client.chat.completions.create(model="m", messages=[
                    {"role": "user", "content": str(i)}])
                assert reply.choices[0].message.content == str(i)
            status, stats = get(gw.url + "/v1/stats", ADMIN)
            queue = gw.gateway.stats
            assert queue is not None and queue.written == 0
            # the store comes back: the schema is made then, and the rows still held go in
            blocker.unlink()
            blocker.mkdir()
            deadline = time.monotonic() + 20
            while queue.written == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert queue.written > 0, queue.last_error
    finally:
        up.close()
    assert status == 503 and stats["error"]["code"] == "stats_unavailable"
    assert queue.written + queue.failed + len(queue) == queue.added


def test_two_instances_on_one_postgres_see_the_fleets_figures(pg_server):  # noqa: F811
    """Scale-out (docs/scale-out.md): a trio and an asyncio gateway write to one PostgreSQL
    database, and /v1/stats and /v1/token_usage on either show both instances' requests."""
    up = FakeUpstream(lambda seen: json_reply(answer("ok", 5)))
    with pg_database(pg_server) as db:
        try:
            with run_gateway(config(up), backend="trio", stats_store=db.config) as one, \
                    run_gateway(config(up), backend="asyncio", stats_store=db.config,
                                seed=2) as two:
                for gw, n in ((one, 3), (two, 4)):
                    for i in range(n):
                        gw.openai(USER).chat.completions.create(
                            model="m", messages=[{"role": "user", "content": str(i)}])
                settled(one, 3)
                settled(two, 4)
                answers = [(get(gw.url + "/v1/stats?hours=1", ADMIN),
                            get(gw.url + "/v1/token_usage", USER)) for gw in (one, two)]
        finally:
            up.close()
    for (status, stats), (usage_status, usage) in answers:
        assert status == 200 and usage_status == 200
        assert {r["model"]: r["count"] for r in stats["model_request_counts"]} == {"m": 7}
        (mine,) = [u for u in usage["usage"] if u["model"] == "m"]
        assert mine["request_count"] == 7 and mine["total_prompt_tokens"] == 35
