"""``uniapi_core.startup``: what flags and environment mean, and every line the shell and the
runtimes print or exit with (the shell and the runtimes only write them; issue 12)."""

from __future__ import annotations

import ssl

import pytest

from uniapi_core.cmdline import build_parser, module_parser
from uniapi_core.config import load_config
from uniapi_core.demo import DEMO_KEY, demo_config
from uniapi_core.startup import (
    FrontOptions,
    Launch,
    config_url_request,
    discovery_text,
    draining_text,
    fatal,
    launch,
    load_checked,
    read_failure,
    shared_state_text,
    worker_exit,
    workers_verdict,
)

GOOD = ("providers:\n  - provider: up\n    base_url: http://127.0.0.1:9/v1/chat/completions\n"
        "    api: sk-up\n    model: [m]\napi_keys:\n  - api: sk-user\n")


def _serve(*flags: str):
    return build_parser().parse_args(["serve", *flags])


def test_launch_reads_the_flags_and_timeout():
    got = launch(_serve("--host", "0.0.0.0", "--port", "9000", "--workers", "3",
                        "--allow-http-image-urls"), {"TIMEOUT": "12"})
    assert (got.host, got.port, got.demo, got.options.workers) == ("0.0.0.0", 9000, False, 3)
    assert got.settings.env_timeout == 12.0
    assert got.settings.fetch_allow_http and not got.settings.fetch_allow_private
    demo = launch(build_parser().parse_args(["demo"]), {}, demo=True)
    assert demo.demo and demo.settings.env_timeout is None
    assert launch(module_parser("asyncio").parse_args([]), {}).options == FrontOptions()


@pytest.mark.parametrize("flags,env,message", [
    (["--workers", "0", "--port", "0"], {"TIMEOUT": "x"}, "--workers must be at least 1"),
    (["--workers", "2", "--port", "0"], {"TIMEOUT": "x"}, "TIMEOUT='x' is not a number"),
    (["--workers", "2", "--port", "0"], {}, "--workers needs a fixed --port"),
])
def test_launch_names_the_first_bad_value_in_the_order_the_shell_always_did(flags, env, message):
    with pytest.raises(ValueError, match=message):
        launch(_serve(*flags), env)


def test_load_checked_gives_the_config_or_the_lines_for_stderr():
    loaded, report = load_checked(GOOD, "api.yaml")
    assert loaded is not None and report == ""
    loaded, report = load_checked(GOOD + "bogus: 1\n", "api.yaml")
    assert loaded is not None
    assert report == "api.yaml: warning: bogus: unknown key, ignored (line 8)\n"
    loaded, report = load_checked("providers:\n  - provider: a\n    api: {x: 1}\n"
                                  "api_keys:\n  - api: k\n", "x.yaml")
    assert loaded is None
    assert report == ("x.yaml: error: providers[0].api: expected a string or a list of strings,"
                      " got a mapping (line 3)\n")


def test_config_texts():
    assert fatal("boom") == "uniapi: boom"
    assert read_failure("a.yaml", FileNotFoundError(2, "No such file")) == (
        "uniapi: config file 'a.yaml' not found (use --config PATH, CONFIG_URL, or ./api.yaml; "
        "try `uniapi demo`)")
    assert read_failure("d", IsADirectoryError(21, "Is a directory")) == \
        "uniapi: cannot read 'd': [Errno 21] Is a directory"
    request = config_url_request("https://example.com/api.yaml")
    assert (request.method, request.url, request.headers) == (
        "GET", "https://example.com/api.yaml", (("accept", "*/*"),))


def _launch(**kw) -> Launch:
    return Launch(host="127.0.0.1", port=8000, **kw)


def test_the_serving_banner_and_the_demo_hint():
    assert _launch().serving_text(8123, "trio") == \
        "uniapi: serving on http://127.0.0.1:8123 (trio) HTTP/1.1 and HTTP/2\n"
    tls = _launch(options=FrontOptions(certfile="c.pem", keyfile="k.pem"))
    assert tls.serving_text(1, "asyncio").startswith("uniapi: serving on https://127.0.0.1:1 (")
    assert _launch(demo=True).serving_text(8123, "asyncio") == f"""\
uniapi: serving on http://127.0.0.1:8123 (asyncio) HTTP/1.1 and HTTP/2
uniapi demo: try
  curl http://127.0.0.1:8123/v1/chat/completions -H 'Authorization: Bearer {DEMO_KEY}' \\
       -H 'Content-Type: application/json' \\
       -d '{{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": "Hello"}}]}}'

"""


def test_start_failures_name_the_certificate_or_the_address():
    launch_ = _launch()
    tls = ssl.SSLError(9, "[SSL] PEM lib")
    assert launch_.start_failure(tls, ssl.SSLError) == \
        f"uniapi: cannot use --certfile/--keyfile: {tls}"
    bind = OSError(98, "Address already in use")
    assert launch_.start_failure(bind, ssl.SSLError) == \
        "uniapi: cannot listen on 127.0.0.1:8000: [Errno 98] Address already in use"
    # trio wraps them in a group: the errno's meaning then, the certificate first
    assert launch_.start_failure(ExceptionGroup("g", [bind]), ssl.SSLError) == \
        "uniapi: cannot listen on 127.0.0.1:8000: address already in use"
    assert launch_.start_failure(ExceptionGroup("g", [bind, tls]), ssl.SSLError).startswith(
        "uniapi: cannot use --certfile/--keyfile: ")
    # anything else is not a start-up failure: the shell lets it propagate
    assert launch_.start_failure(ExceptionGroup("g", [ValueError()]), ssl.SSLError) is None
    assert launch_.start_failure(RuntimeError(), ssl.SSLError) is None


def test_runtime_texts():
    assert discovery_text([]) == ""
    assert discovery_text(["a", "b"]) == "uniapi: warning: a\nuniapi: warning: b\n"
    assert draining_text("SIGTERM") == "uniapi: SIGTERM: draining (again to stop now)\n"


@pytest.mark.parametrize("exc,expected", [
    (KeyboardInterrupt(), (0, "")),
    (SystemExit(0), (0, "")),
    (SystemExit(3), (3, "")),
    (SystemExit("uniapi: no"), (1, "uniapi: no\n")),
    (SystemExit(), (1, "")),
    (RuntimeError("x"), (1, "uniapi: worker 42 failed: RuntimeError('x')\n")),
])
def test_worker_exit(exc, expected):
    assert worker_exit(exc, 42) == expected


def test_workers_verdict_forgives_the_stop_signals_only():
    assert workers_verdict([0, -15, -2], (15, 2)) is None
    assert workers_verdict([0, 1, -9], (15, 2)) == "uniapi: 2 of 3 workers failed"


def test_launch_builds_the_gateway_with_its_settings():
    import random

    got = launch(_serve(), {"TIMEOUT": "7"})
    gateway = got.gateway(load_config(demo_config("http://127.0.0.1:9"), "d").config,
                          random.Random(0))
    assert gateway.settings.env_timeout == 7.0


def test_redis_url_from_the_flag_or_the_environment_and_never_quoted_when_bad():
    assert launch(_serve(), {}).settings.redis is None
    env = launch(_serve(), {"REDIS_URL": "redis://:s3cret@cache.internal:6380/2"}).settings.redis
    assert (env.host, env.port, env.db, env.password) == ("cache.internal", 6380, 2, "s3cret")
    flag = launch(_serve("--redis-url", "unix:///run/redis.sock"),
                  {"REDIS_URL": "redis://other"}).settings.redis
    assert flag.kind == "unix" and flag.path == "/run/redis.sock"  # the flag wins
    with pytest.raises(ValueError, match=r"^--redis-url \(or REDIS_URL\): ") as bad:
        launch(_serve("--redis-url", "http://user:s3cret@host"), {})
    assert "s3cret" not in str(bad.value)


def test_workers_without_redis_are_warned_that_limits_are_per_process():
    four = launch(_serve("--port", "9000", "--workers", "4"), {})
    assert four.workers_text() == (
        "uniapi: warning: --workers 4 without --redis-url: rate limits, cooldowns and "
        "rotations are per process (a 10/min key admits up to 40/min); share them with "
        "--redis-url (docs/scale-out.md)\n")
    shared = launch(_serve("--port", "9000", "--workers", "4", "--redis-url",
                           "redis://127.0.0.1"), {})
    assert shared.workers_text() == ""


def test_the_shared_state_log_says_each_change_once():
    lines: list[str] = []
    target = launch(_serve("--redis-url", "redis://:pw@r.internal:6379"), {}).settings.redis
    say = shared_state_text(target, lines.append)
    say(False, "r.internal:6379: connection refused")
    say(False, "r.internal:6379: connection refused")  # each reconnect attempt: not again
    say(True, "")
    say(True, "")
    say(False, "r.internal:6379: connection lost")
    assert lines == [
        "uniapi: warning: shared state: redis://:***@r.internal:6379 unreachable (r.internal:6379: "
        "connection refused); limits, cooldowns and rotations are decided by this process "
        "alone until it is back\n",
        "uniapi: shared state: connected to redis://:***@r.internal:6379\n",
        "uniapi: warning: shared state: redis://:***@r.internal:6379 unreachable (r.internal:6379: "
        "connection lost); limits, cooldowns and rotations are decided by this process "
        "alone until it is back\n"]
    assert not any("pw" in line for line in lines)
