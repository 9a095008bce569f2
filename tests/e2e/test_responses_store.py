"""``previous_response_id``, ``GET`` and ``DELETE /v1/responses/{id}`` over real sockets, with
the openai SDK, on both backends and both stores (SQLite, and a real PostgreSQL from
tests/fakes/postgres.py): a response is stored, continued from (at once, from memory, and later,
from the database), fetched, deleted; another key's id and an unknown id are 404; with the
store off, ``previous_response_id`` is a 400."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.core.test_stats import pg_database, pg_server  # noqa: F401 - fixtures
from tests.fakes.upstream import FakeUpstream, Reply, Seen, json_reply, sse_reply
from tests.harness import RunningGateway, run_gateway
from uniapi_core.ops.stats import StoreConfig

KEY, OTHER = "sk-resp-store", "sk-resp-other"


def answer(seen: Seen) -> Reply:
    """Says how many messages it got, so a continuation shows in the text."""
    req = seen.json()
    text = f"answer to {len(req['messages'])} messages"
    if req.get("stream"):
        head = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1,
                "model": req["model"]}
        return sse_reply([
            dict(head, choices=[{"index": 0, "delta": {"role": "assistant", "content": text},
                                 "finish_reason": None}]),
            dict(head, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])])
    return json_reply({"id": f"chatcmpl-{len(req['messages'])}", "object": "chat.completion",
                       "created": 1, "model": req["model"],
                       "choices": [{"index": 0, "finish_reason": "stop", "message": {
                           "role": "assistant",
                           "content": text}}],
                       "usage": {"prompt_tokens": 5, "completion_tokens": 4,
                                 "total_tokens": 9}})


def config(url: str) -> str:
    return f"""
providers:
  - provider: oai
    base_url: {url}/v1/chat/completions
    api: sk-up
    model: [m]
api_keys:
  - api: {KEY}
  - api: {OTHER}
"""


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[StoreConfig]:
    if request.param == "sqlite":
        yield StoreConfig.from_env({"DB_PATH": str(tmp_path / "stats.db")})
        return
    with pg_database(request.getfixturevalue("pg_server")) as backend:
        yield backend.config


@pytest.fixture
def gw(backend: str, store: StoreConfig) -> Iterator[tuple[RunningGateway, FakeUpstream]]:
    up = FakeUpstream(handler=answer)
    try:
        with run_gateway(config(up.url), backend=backend, stats_store=store) as running:
            yield running, up
    finally:
        up.close()


def client(gw: RunningGateway, key: str = KEY) -> openai.OpenAI:
    return gw.openai(key)


def roles(up: FakeUpstream) -> list[str]:
    return [m["role"] for m in up.seen[-1].json()["messages"]]


def written(gw: RunningGateway) -> None:
    """Until the stored responses are surely in the database (then forget the memory copy)."""
    deadline = time.monotonic() + 10
    while gw.gateway.stats is not None and (len(gw.gateway.stats) or
                                            gw.gateway.stats._works or
                                            gw.gateway.stats.in_flight):
        assert time.monotonic() < deadline, "the stored responses were never written"
        time.sleep(0.02)
    gw.gateway._recent.clear()


def test_a_response_is_continued_fetched_and_deleted(gw):
    running, up = gw
    c = client(running)
    first = c.responses.create(model="m", input="hi")
    assert first.output_text == "answer to 1 messages"
    second = c.responses.create(model="m", input="again", previous_response_id=first.id)
    assert roles(up) == ["user", "assistant", "user"]  # at once: from memory
    assert second.output_text == "answer to 3 messages"
    assert second.previous_response_id == first.id
    written(running)
    third = c.responses.create(model="m", input="third", previous_response_id=second.id)
    assert roles(up) == ["user", "assistant", "user", "assistant", "user"]  # from the store
    assert third.output_text == "answer to 5 messages"
    with c.responses.stream(model="m", input="streamed", previous_response_id=third.id) as s:
        final = s.get_final_response()
    assert roles(up)[-3:] == ["user", "assistant", "user"] and len(roles(up)) == 7
    assert final.output_text == "answer to 7 messages"
    fetched = c.responses.retrieve(first.id)
    assert fetched.id == first.id and fetched.output_text == "answer to 1 messages"
    c.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.delete(first.id)
    # the chain goes on without its first response: each row holds its whole conversation
    c.responses.create(model="m", input="fourth", previous_response_id=third.id)
    assert len(roles(up)) == 7


def test_another_keys_response_and_an_unknown_id_are_404(gw):
    running, _ = gw
    mine = client(running).responses.create(model="m", input="hi")
    other = client(running, OTHER)
    for wait in (False, True):
        if wait:
            written(running)
        with pytest.raises(openai.NotFoundError):
            other.responses.retrieve(mine.id)
        with pytest.raises(openai.NotFoundError) as caught:
            other.responses.create(model="m", input="x", previous_response_id=mine.id)
        assert caught.value.body["code"] == "previous_response_not_found"
        with pytest.raises(openai.NotFoundError):
            other.responses.delete(mine.id)
    with pytest.raises(openai.NotFoundError):
        client(running).responses.retrieve("resp_nope")


def test_store_false_is_not_kept(gw):
    running, _ = gw
    c = client(running)
    r = c.responses.create(model="m", input="hi", store=False)
    written(running)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(r.id)


@pytest.mark.parametrize("backend", ["trio"])
def test_without_the_store_previous_response_id_is_a_400(backend):
    up = FakeUpstream(handler=answer)
    try:
        with run_gateway(config(up.url), backend=backend) as running:
            c = client(running)
            c.responses.create(model="m", input="hi")
            with pytest.raises(openai.BadRequestError) as caught:
                c.responses.create(model="m", input="x", previous_response_id="resp_1")
            assert caught.value.body["code"] == "previous_response_not_supported"
    finally:
        up.close()
