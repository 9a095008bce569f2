"""Routing end to end: several fake upstreams, real sockets, the official openai SDK."""

from __future__ import annotations

import time

import openai
import pytest

from tests.fakes.upstream import FakeUpstream, json_reply
from tests.harness import run_gateway

MESSAGES = [{"role": "user", "content": "hi"}]


def answer(text: str) -> dict:
    return {"id": "x", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def echo(name: str):
    return lambda seen: json_reply(answer(name))


def failing(status: int, name: str):
    return lambda seen: json_reply({"error": {"message": f"{name} says {status}",
                                              "type": "x", "code": None}}, status=status)



@pytest.fixture
def ups():
    made = [FakeUpstream() for _ in range(3)]
    yield made
    for u in made:
        u.close()


def cfg(ups, key_prefs: str = "", rules: str = "      - ai2/*\n      - ai1/*\n",
        glob: str = "", provider_extra: str = "") -> str:
    providers = "".join(f"""
  - provider: ai{i + 1}
    base_url: {u.url}/v1/chat/completions
    api: sk-up-{i + 1}
    model: [m]
{provider_extra}""" for i, u in enumerate(ups))
    return f"""
providers:{providers}
api_keys:
  - api: sk-client
    model:
{rules}    preferences:
      AUTO_RETRY: true
{key_prefs}
preferences:
  cooldown_period: 0
{glob}
"""


def ask(gw, key="sk-client", model="m"):
    return gw.openai(key).chat.completions.create(model=model, messages=MESSAGES)


def test_key_rule_order_decides_priority(backend, ups):
    """The seed FAQ: `ai2/*` before `ai1/*` → ai2 first, ai1 after a failure."""
    ups[0].handler, ups[1].handler = echo("ai1"), echo("ai2")
    with run_gateway(cfg(ups[:2]), backend=backend) as gw:
        assert [ask(gw).choices[0].message.content for _ in range(3)] == ["ai2"] * 3


def test_fallback_on_500_and_no_retry_on_400(backend, ups):
    ups[0].handler, ups[1].handler = echo("ai1"), failing(500, "ai2")
    with run_gateway(cfg(ups[:2]), backend=backend) as gw:
        assert ask(gw).choices[0].message.content == "ai1"
        ups[1].handler = failing(400, "ai2")
        with pytest.raises(openai.BadRequestError) as exc:
            ask(gw)
        assert "ai2 says 400" in exc.value.message
    assert len(ups[0].seen) == 1  # the 400 was not retried on ai1


def test_cooldown_skips_failed_channel_then_recovers(backend, ups):
    ups[0].handler, ups[1].handler = echo("ai1"), failing(503, "ai2")
    with run_gateway(cfg(ups[:2], glob="  cooldown_period: 0.5\n").replace(
            "  cooldown_period: 0\n", ""), backend=backend) as gw:
        assert ask(gw).choices[0].message.content == "ai1"  # ai2 failed, then cooled
        ups[1].handler = echo("ai2")
        assert ask(gw).choices[0].message.content == "ai1"  # ai2 is cooling: skipped
        assert len(ups[1].seen) == 1
        time.sleep(0.6)
        assert ask(gw).choices[0].message.content == "ai2"  # recovered


def test_all_failing_returns_last_status(backend, ups):
    ups[0].handler, ups[1].handler = failing(502, "ai1"), failing(503, "ai2")
    with run_gateway(cfg(ups[:2]), backend=backend) as gw:
        with pytest.raises(openai.APIStatusError) as exc:
            ask(gw)
    assert exc.value.status_code == 502 and "ai1 says 502" in exc.value.message


def test_auto_retry_false_makes_one_attempt(backend, ups):
    ups[0].handler, ups[1].handler = echo("ai1"), failing(500, "ai2")
    conf = cfg(ups[:2]).replace("AUTO_RETRY: true", "AUTO_RETRY: false")
    with run_gateway(conf, backend=backend) as gw:
        with pytest.raises(openai.InternalServerError):
            ask(gw)
    assert ups[0].seen == []


def test_round_robin_rotates(backend, ups):
    for i, u in enumerate(ups):
        u.handler = echo(f"ai{i + 1}")
    conf = cfg(ups, key_prefs="      SCHEDULING_ALGORITHM: round_robin\n",
               rules="      - m\n")
    with run_gateway(conf, backend=backend) as gw:
        got = [ask(gw).choices[0].message.content for _ in range(6)]
    assert sorted(got[:3]) == ["ai1", "ai2", "ai3"] and got[3:] == got[:3]


def test_key_rate_limit_is_429_with_retry_after(backend, ups):
    ups[0].handler = echo("ai1")
    conf = cfg(ups[:1], key_prefs="      rate_limit: 2/min\n", rules="      - ai1/*\n")
    with run_gateway(conf, backend=backend) as gw:
        ask(gw)
        ask(gw)
        with pytest.raises(openai.RateLimitError) as exc:
            ask(gw)
    assert int(exc.value.response.headers["retry-after"]) >= 59
    assert len(ups[0].seen) == 2


def test_upstream_key_limits_skip_then_429(backend, ups):
    ups[0].handler, ups[1].handler = echo("ai1"), echo("ai2")
    conf = cfg(ups[:2], provider_extra="    preferences:\n      api_key_rate_limit: 1/min\n")
    with run_gateway(conf, backend=backend) as gw:
        assert ask(gw).choices[0].message.content == "ai2"
        assert ask(gw).choices[0].message.content == "ai1"  # ai2's only key is spent
        with pytest.raises(openai.RateLimitError) as exc:
            ask(gw)
    assert 1 <= int(exc.value.response.headers["retry-after"]) <= 60
    assert len(ups[0].seen) == len(ups[1].seen) == 1  # nothing sent for the refused one


def test_provider_key_rotation(backend, ups):
    ups[0].handler = echo("ai1")
    conf = cfg(ups[:1], rules="      - ai1/*\n").replace("api: sk-up-1", "api: [sk-a, sk-b]")
    with run_gateway(conf, backend=backend) as gw:
        for _ in range(4):
            ask(gw)
    assert [s.headers["authorization"] for s in ups[0].seen] == [
        "Bearer sk-a", "Bearer sk-b", "Bearer sk-a", "Bearer sk-b"]


def test_bad_key_on_upstream_tries_next_key_first(backend, ups):
    def by_key(seen):
        if seen.headers["authorization"] == "Bearer sk-bad":
            return json_reply({"error": {"message": "Incorrect API key", "type": "x",
                                         "code": "invalid_api_key"}}, status=401)
        return json_reply(answer("ai1"))

    ups[0].handler = by_key
    conf = cfg(ups[:1], rules="      - ai1/*\n").replace("api: sk-up-1", "api: [sk-bad, sk-ok]")
    with run_gateway(conf, backend=backend) as gw:
        assert ask(gw).choices[0].message.content == "ai1"
    assert [s.headers["authorization"] for s in ups[0].seen] == ["Bearer sk-bad", "Bearer sk-ok"]


def test_error_trigger_answer_is_a_failure_and_next_channel_answers(backend, ups):
    ups[0].handler = echo("ai1")
    ups[1].handler = echo("Sorry, I can't process this request due to overload or policy")
    glob = "  error_triggers:\n    - process this request due to overload or policy\n"
    with run_gateway(cfg(ups[:2], glob=glob), backend=backend) as gw:
        assert ask(gw).choices[0].message.content == "ai1"
    assert len(ups[1].seen) == 1  # tried first, its answer never relayed


def test_embeddings_moderations_images_are_routed_passthroughs(backend, ups):
    vectors = {"object": "list", "data": [{"object": "embedding", "index": 0,
                                           "embedding": [0.1, 0.2]}],
               "model": "m", "usage": {"prompt_tokens": 2, "total_tokens": 2}}
    ups[0].handler = lambda seen: json_reply(vectors)
    with run_gateway(cfg(ups[:1], rules="      - ai1/*\n"), backend=backend) as gw:
        client = gw.openai("sk-client")
        got = client.embeddings.create(model="m", input="hello")
        assert got.data[0].embedding == [0.1, 0.2]
        with pytest.raises(openai.NotFoundError):
            client.embeddings.create(model="not-allowed", input="x")
        ups[0].handler = lambda seen: json_reply({"created": 1, "data": [{"url": "http://i"}]})
        img = client.images.generate(model="m", prompt="a cat")
        assert img.data[0].url == "http://i"
    assert [s.path for s in ups[0].seen] == ["/v1/embeddings", "/v1/images/generations"]
    assert ups[0].seen[0].json()["input"] == "hello"
