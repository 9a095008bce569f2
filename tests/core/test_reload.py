"""Hot reload in the core: ``Gateway.reloaded`` (what carries over), the ``/v1/reload`` route
through the request machine (``Reload`` / ``Reloaded``), and the shell's ``reload`` program
(the config read again, refused with its line-numbered problems, discovery before serving).
tests/e2e/test_reload.py does the same over real sockets, on both backends."""

from __future__ import annotations

import json
import random

from uniapi_core.config import load_config
from uniapi_core.connection import Connection
from uniapi_core.events import (ClientData, DeadlineReached, Reload, Reloaded, Served,
                                StartUpstream, StopUpstream, Write)
from uniapi_core.gateway import Gateway, Settings
from uniapi_core.ops.stats import StoreConfig
from uniapi_core.request_machine import RELOAD_TIMEOUT
from uniapi_core.shell import Discover, FetchConfig, Print, ReadFile, Serve, program, reload
from uniapi_core.cmdline import build_parser

CONFIG = """
providers:
  - provider: oa
    base_url: http://u/v1/chat/completions
    api: [k1, k2]
    model: [m]
    preferences: {api_key_cooldown_period: 60}
  - {provider: other, base_url: "http://o/v1/chat/completions", api: k9, model: [m2]}
api_keys:
  - {api: sk-admin, role: admin}
  - api: sk-user
    model: ["oa/*", "other/*"]
    preferences: {rate_limit: 2/min, SCHEDULING_ALGORITHM: round_robin}
"""


def gateway(text: str = CONFIG, **settings) -> Gateway:
    return Gateway(load_config(text).config, settings=Settings(**settings),
                   entropy=random.Random(0))


def chat(gw: Gateway, key: str, model: str, now: float):
    """One chat request's routing: the relay (its plan's first attempt) or the error."""
    call = gw.handle("POST", "/v1/chat/completions", (("authorization", f"Bearer {key}"),),
                     json.dumps({"model": model, "messages": [{"role": "user", "content": "x"}]}
                                ).encode(), now=now, wall=0.0)
    return gw.route_chat(call, {}, now, 0.0) if not hasattr(call, "status") else call


def test_reloaded_carries_the_state_objects_and_uses_the_new_config():
    old = gateway(stats_store=StoreConfig(path=":memory:"))
    new = old.reloaded(load_config(CONFIG.replace("m2]", "m2, m3]")).config)
    assert new is not old and new.config is not old.config
    for name in ("scheduler", "cooldowns", "keys", "limiter", "stats"):
        assert getattr(new.router, name) is getattr(old.router, name), name
    assert new.metrics is old.metrics and new.tokens is old.tokens
    assert new.stats is old.stats is not None  # the SAME queue: no queued row is lost
    assert new.entropy is old.entropy and new.settings is old.settings
    assert "m3" in new.catalog.exposed("other") and "m3" not in old.catalog.exposed("other")


def test_a_key_rate_limit_window_survives_a_reload():
    old = gateway()
    for t in (0.0, 1.0):
        assert chat(old, "sk-user", "m", t).relay is not None
    new = old.reloaded(load_config(CONFIG).config)
    refused = chat(new, "sk-user", "m", 2.0)
    assert refused.status == 429 and b"rate_limit_exceeded" in refused.body
    assert chat(new, "sk-user", "m", 61.0).relay is not None  # the window moves on as before


def test_cooldowns_benches_and_positions_carry_over_for_unchanged_providers():
    old = gateway()
    router = old.router
    oa = old.catalog.providers["oa"]
    router.keys.record_failure(oa, 0, 429, 0.0)  # key 0 of oa benched for 60 s
    router.cooldowns.cool("other", "m2", 0.0, 300.0)
    first = router.scheduler.order("round_robin", old.catalog.offering("m") * 1, ("x", "m"),
                                   random.Random(0))
    assert first
    new = old.reloaded(load_config(CONFIG).config)
    new_oa = new.catalog.providers["oa"]
    assert new.router.keys.benched_until(new_oa, 0, 1.0) == 60.0
    assert new.router.cooldowns.until("other", "m2", 1.0) == 300.0
    # a provider whose key list changed starts its pool afresh: its indexes name other keys
    changed = new.reloaded(load_config(CONFIG.replace("[k1, k2]", "[k3, k1]")).config)
    assert changed.router.keys.benched_until(changed.catalog.providers["oa"], 0, 1.0) is None


def test_a_removed_key_is_refused_at_once_and_the_old_gateway_still_knows_it():
    old = gateway()
    new = old.reloaded(load_config(CONFIG.replace("  - api: sk-user", "  - api: sk-new")
                                   ).config)
    assert chat(new, "sk-user", "m", 0.0).status == 401
    assert chat(new, "sk-new", "m", 0.0).relay is not None
    assert chat(old, "sk-user", "m", 0.0).relay is not None  # in flight: the old config


def test_discovered_models_of_unchanged_providers_are_kept_until_discovery_runs():
    text = CONFIG.replace("api: k9, model: [m2]}", "api: k9}")
    old = gateway(text)
    old.discovered({"other": (200, b'{"data": [{"id": "found"}]}')})
    assert "found" in old.catalog.exposed("other")
    assert "found" in old.reloaded(load_config(text).config).catalog.exposed("other")
    moved = text.replace("http://o/v1", "http://o2/v1")  # changed: its old list may be wrong
    assert old.reloaded(load_config(moved).config).catalog.exposed("other") == {}


# -- POST /v1/reload through the one door ------------------------------------------------------

def post(path: str, key: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Length: 0\r\n\r\n").encode()


def answer(actions) -> tuple[int, dict]:
    data = b"".join(a.data for a in actions if isinstance(a, Write))
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_reload_is_for_admin_keys_only():
    gw = gateway()
    conn = Connection(lambda: gw, now=0.0, alpn="http/1.1")
    status, body = answer(conn.handle(ClientData(post("/v1/reload", "sk-user")), 0.0, 0.0))
    assert status == 403 and body["error"]["code"] == "admin_only"


def test_reload_becomes_a_reload_action_and_its_outcome_the_answer():
    gw = gateway()
    conn = Connection(lambda: gw, now=0.0, alpn="http/1.1")
    acts = conn.handle(ClientData(post("/v1/reload", "sk-admin")), 0.0, 0.0)
    (action,) = [a for a in acts if isinstance(a, Reload)]
    assert not any(isinstance(a, Write) for a in acts)
    acts = conn.handle(Reloaded(action.ref, None), 0.1, 0.0)
    assert answer(acts) == (200, {"status": "reloaded"})
    assert [a.record.status for a in acts if isinstance(a, Served)] == [200]
    # refused: 400, OpenAI's error shape, the message naming the line
    acts = conn.handle(ClientData(post("/v1/reload", "sk-admin")), 1.0, 0.0)
    (action,) = [a for a in acts if isinstance(a, Reload)]
    why = "api.yaml: error: providers[0].api: expected a string (line 4)"
    status, body = answer(conn.handle(Reloaded(action.ref, why), 1.1, 0.0))
    assert status == 400 and "line 4" in body["error"]["message"]
    assert body["error"]["code"] == "config_refused"
    assert body["error"]["type"] == "invalid_request_error"
    # a reload with no outcome is cancelled at its deadline and answered
    acts = conn.handle(ClientData(post("/v1/reload", "sk-admin")), 2.0, 0.0)
    (action,) = [a for a in acts if isinstance(a, Reload)]
    assert conn.next_deadline() == 2.0 + RELOAD_TIMEOUT
    acts = conn.handle(DeadlineReached(), 2.0 + RELOAD_TIMEOUT, 0.0)
    assert StopUpstream(action.ref) in acts and answer(acts)[0] == 400
    assert conn.handle(Reloaded(action.ref, None), 70.0, 0.0) == []  # late: ignored


def test_a_client_that_leaves_cancels_its_reload():
    gw = gateway()
    conn = Connection(lambda: gw, now=0.0, alpn="http/1.1")
    acts = conn.handle(ClientData(post("/v1/reload", "sk-admin")), 0.0, 0.0)
    (action,) = [a for a in acts if isinstance(a, Reload)]
    assert StopUpstream(action.ref) in conn.handle(ClientData(b""), 0.1, 0.0)


def test_a_request_in_flight_keeps_the_gateway_it_started_on():
    gateways = [gateway()]
    conn = Connection(lambda: gateways[-1], now=0.0, alpn="http/1.1")
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}]}).encode()
    acts = conn.handle(ClientData(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-user\r\n"
        b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
        + b"\r\n\r\n" + body), 0.0, 0.0)
    assert any(isinstance(a, StartUpstream) for a in acts)
    machine = conn.inner._machine  # type: ignore[union-attr]
    gateways.append(gateways[0].reloaded(load_config(CONFIG).config))
    assert machine._gw is gateways[0]


# -- the shell's reload program -----------------------------------------------------------------

def drive(gen, results: dict):
    effects = []
    result = None
    while True:
        try:
            effect = gen.send(result)
        except StopIteration as end:
            return effects, end.value
        effects.append(effect)
        result = results.get(type(effect))


def test_the_serve_program_hands_the_runtime_a_reload_that_reads_the_same_file():
    gen = program(build_parser().parse_args(["serve", "--config", "my.yaml"]), {})
    effects, _ = drive(gen, {ReadFile: CONFIG})
    serve = effects[-1]
    assert isinstance(serve, Serve)
    current = gateway()
    effects, new = drive(serve.reload(current), {ReadFile: CONFIG, Discover: []})
    assert effects[0] == ReadFile("my.yaml")
    assert isinstance(effects[1], Discover) and effects[1].gateway is new
    assert isinstance(new, Gateway) and new.router.limiter is current.router.limiter
    assert "reloaded the config from my.yaml" in effects[-1].text


def test_a_broken_config_is_refused_with_its_line_and_nothing_is_discovered():
    broken = CONFIG.replace("api: [k1, k2]", "api: {k: 1}")
    effects, outcome = drive(reload("my.yaml", {}, gateway()), {ReadFile: broken})
    assert isinstance(outcome, str) and "line 5" in outcome and "my.yaml" in outcome
    assert not any(isinstance(e, Discover) for e in effects)
    (printed,) = [e for e in effects if isinstance(e, Print)]
    assert "reload refused" in printed.text and "line 5" in printed.text
    effects, outcome = drive(reload("gone.yaml", {}, gateway()),
                             {ReadFile: FileNotFoundError(2, "No such file")})
    assert isinstance(outcome, str) and "gone.yaml" in outcome


def test_config_url_is_fetched_again():
    env = {"CONFIG_URL": "https://conf.test/api.yaml"}
    effects, new = drive(reload(None, env, gateway()),
                         {FetchConfig: (200, CONFIG.encode()), Discover: []})
    assert isinstance(effects[0], FetchConfig) and isinstance(new, Gateway)
    effects, outcome = drive(reload(None, env, gateway()), {FetchConfig: (500, b"")})
    assert isinstance(outcome, str) and "conf.test" in outcome


def test_the_demo_has_nothing_to_reload():
    gen = program(build_parser().parse_args(["demo"]), {})
    effects, _ = drive(gen, {})
    effects, outcome = drive(effects[-1].reload(gateway()), {})
    assert isinstance(outcome, str) and "built in" in outcome


def test_current_swaps_the_gateway_only_when_the_reload_succeeds():
    from uniapi_core.shell import Current

    current = Current(lambda gw: reload("my.yaml", {}, gw), read=str)
    assert drive(current.reload(), {})[1] == "this server was started without a config to " \
        "reload"  # not serving yet: nothing to reload
    first = current.gateway = gateway()
    effects, outcome = drive(current.reload(), {ReadFile: "providers: 7\n"})
    assert isinstance(outcome, str) and current.current() is first
    effects, outcome = drive(current.reload(), {ReadFile: CONFIG, Discover: []})
    assert outcome is None and current.current() is not first
    assert current.current().router.limiter is first.router.limiter
    assert drive(Current().reload(), {})[1] is not None  # started without a config source
