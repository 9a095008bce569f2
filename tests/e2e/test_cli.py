"""The commands as a new user runs them: real processes, real ports, the openai SDK.

The gateways run in other processes, out of reach of the suite's chat stream validator
fixture (tests/conftest.py): every chat answer is read through ``checked_chat``, which runs the
bytes through the validator."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import openai
import pytest

from tests.fakes.upstream import FakeUpstream, Reply
from uniapi_core.cmdline import add_serve_args, build_parser, module_parser
from tests.harness import BACKENDS

DATA = Path(__file__).resolve().parent.parent / "data"
CLI = [sys.executable, "-m", "uniapi_trio.cli"]
MODULES = ["uniapi_trio", "uniapi_asyncio"]


def uniapi_script() -> list[str]:
    """The installed ``uniapi`` console script (next to this Python, else on PATH); the module
    it points at when it is not installed."""
    script = Path(sys.executable).with_name("uniapi")
    found = str(script) if script.exists() else shutil.which("uniapi")
    return [found] if found else CLI


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def process(args: list[str], port: int, env: dict[str, str] | None = None):
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    assert r.status == 200
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(proc.stdout.read().decode() if proc.stdout else "")
                time.sleep(0.05)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)


def test_check_prints_a_summary_or_the_mistakes(tmp_path):
    ok = run("check", str(DATA / "seed-advanced.yaml"))
    assert ok.returncode == 0, ok.stderr
    assert "providers: 7" in ok.stdout and "api keys: 3" in ok.stdout
    assert "sk-KjjI60Yf0JFWxfgRmXqFWyGtWUd9GZnmi3KlvowmRWpWpQRo" not in ok.stdout  # redacted
    bad = tmp_path / "api.yaml"
    bad.write_text("providers:\n  - provider: a\n    api: {x: 1}\napi_keys:\n  - api: k\n")
    got = run("check", str(bad))
    assert got.returncode == 2
    assert "providers[0].api: expected a string or a list of strings, got a mapping (line 3)" \
        in got.stderr


def test_route_is_deterministic_for_a_seed(tmp_path):
    conf = tmp_path / "api.yaml"
    conf.write_text("""
providers:
  - {provider: a, base_url: "http://127.0.0.1:9/v1/chat/completions", api: [k1, k2], model: [m]}
  - {provider: b, base_url: "http://127.0.0.1:9/v1/chat/completions", api: k3, model: [m]}
api_keys:
  - api: sk-c
    preferences: {SCHEDULING_ALGORITHM: random}
""")
    args = ("route", "--config", str(conf), "--key", "sk-c", "--model", "m", "--requests", "4",
            "--seed", "7")
    first, second = run(*args), run(*args)
    assert first.returncode == 0 and first.stdout == second.stdout
    assert first.stdout.count("request ") == 4 and "attempt" in first.stdout


def test_module_entry_serves_a_config(tmp_path, checked_chat):
    up = FakeUpstream()
    up.handler = lambda seen: Reply(pieces=[b'{"id":"x","object":"chat.completion","created":1,'
                                            b'"model":"m","choices":[{"index":0,"message":{"role":'
                                            b'"assistant","content":"pong"},"finish_reason":'
                                            b'"stop"}]}'], chunked=False)
    conf = tmp_path / "api.yaml"
    conf.write_text(f"providers:\n  - provider: up\n    base_url: {up.url}/v1/chat/completions\n"
                    f"    api: sk-up\n    model: [m]\napi_keys:\n  - api: sk-user\n")
    port = free_port()
    try:
        with process([sys.executable, "-m", "uniapi_trio", "--config", str(conf), "--port",
                      str(port)], port):
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-user",
                                   max_retries=0)
            reply = checked_chat(client, model="m", messages=[
                {"role": "user", "content": "ping"}])
            assert reply.choices[0].message.content == "pong"
    finally:
        up.close()


def test_config_url_is_fetched_once_at_start(tmp_path):
    up = FakeUpstream()
    text = (f"providers:\n  - provider: up\n    base_url: {up.url}/v1/chat/completions\n"
            f"    api: sk-up\n    model: [m]\napi_keys:\n  - api: sk-user\n")
    up.handler = lambda seen: Reply(headers=[("content-type", "text/yaml")],
                                    pieces=[text.encode()], chunked=False)
    port = free_port()
    try:
        with process([*CLI, "serve", "--port", str(port)], port,
                     env={"CONFIG_URL": f"{up.url}/api.yaml"}):
            assert [s.path for s in up.seen] == ["/api.yaml"]
    finally:
        up.close()


def test_demo_answers_the_sdk_with_no_vendor_key(checked_chat):
    port = free_port()
    with process([*CLI, "demo", "--port", str(port)], port):
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-uniapi-demo",
                               max_retries=0)
        reply = checked_chat(client, model="gpt-4o-mini", messages=[
            {"role": "user", "content": "Hello"}])
        assert reply.choices[0].message.content == "You said: Hello"
        chunks = list(checked_chat(client, model="gpt-4o-mini", stream=True, messages=[
            {"role": "user", "content": "Hello there"}]))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "You said: Hello there"


@pytest.mark.parametrize("backend", BACKENDS)
def test_workers_share_the_port_and_stop_together(backend, checked_chat):
    port = free_port()
    with process([*CLI, "demo", "--port", str(port), "--workers", "2", "--backend", backend],
                 port) as proc:
        workers = _wait_for_workers(proc.pid, 2)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-uniapi-demo",
                               max_retries=0)
        for _ in range(6):  # fresh connections: the kernel spreads them over the workers
            with openai.OpenAI(base_url=client.base_url, api_key="sk-uniapi-demo",
                               max_retries=0) as c:
                assert checked_chat(c, model="gpt-4o-mini", messages=[
                    {"role": "user", "content": "hi"}]).choices[0].message.content
    assert proc.returncode == 0
    assert not any(os.path.exists(f"/proc/{pid}") and _state(pid) != "Z" for pid in workers)


def test_workers_need_a_fixed_port_and_a_positive_count():
    assert "--workers must be at least 1" in run("demo", "--workers", "0").stderr
    assert "fixed --port" in run("demo", "--workers", "2", "--port", "0").stderr


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _wait_for_workers(pid: int, n: int) -> list[int]:
    """The ``n`` worker processes of supervisor ``pid``, once they are all up (10 s at most)."""
    deadline = time.monotonic() + 10
    while len(_children(pid)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = _children(pid)
    assert len(workers) == n
    return workers


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


# One command line for every entry (issue 11): `uniapi serve`, `python -m uniapi_trio` and
# `python -m uniapi_asyncio` take the same flags from uniapi_core.cmdline.

def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings}


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices[name]


def test_every_entry_parser_has_the_serve_flags():
    reference = argparse.ArgumentParser()
    add_serve_args(reference)
    flags = _options(reference)
    assert {"--config", "--host", "--port", "--backend", "--allow-private-image-urls",
            "--allow-http-image-urls", "--workers", "--certfile", "--keyfile",
            "--max-connections", "--max-body-bytes", "--drain-grace"} <= flags
    assert _options(_subparser(build_parser(), "serve")) == flags
    assert _options(module_parser("trio")) == flags
    assert _options(module_parser("asyncio")) == flags
    assert _options(_subparser(build_parser(), "demo")) == flags - {"--config"}


def _help_flags(argv: list[str]) -> set[str]:
    got = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert got.returncode == 0, got.stderr
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", got.stdout))


def test_every_entry_help_shows_the_same_flags():
    serve = _help_flags([*uniapi_script(), "serve", "--help"])
    assert "--workers" in serve and "--max-connections" in serve and "--config" in serve
    for module in MODULES:
        assert _help_flags([sys.executable, "-m", module, "--help"]) == serve, module


def _chat_config(tmp_path: Path, up: FakeUpstream) -> Path:
    conf = tmp_path / "api.yaml"
    conf.write_text(f"providers:\n  - provider: up\n    base_url: {up.url}/v1/chat/completions\n"
                    f"    api: sk-up\n    model: [m]\napi_keys:\n  - api: sk-user\n")
    return conf


@pytest.mark.parametrize("module", MODULES)
def test_module_entry_takes_front_flags_and_workers(module, tmp_path, checked_chat):
    """A front flag changes the served behaviour, and --workers forks from the module form."""
    up = FakeUpstream()
    up.handler = lambda seen: Reply(pieces=[b'{"id":"x","object":"chat.completion","created":1,'
                                            b'"model":"m","choices":[{"index":0,"message":{"role":'
                                            b'"assistant","content":"pong"},"finish_reason":'
                                            b'"stop"}]}'], chunked=False)
    port = free_port()
    try:
        with process([sys.executable, "-m", module, "--config", str(_chat_config(tmp_path, up)),
                      "--host", "127.0.0.1", "--port", str(port), "--max-body-bytes", "2000",
                      "--workers", "2"], port) as proc:
            workers = _wait_for_workers(proc.pid, 2)
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-user",
                                   max_retries=0)
            reply = checked_chat(client, model="m", messages=[
                {"role": "user", "content": "ping"}])
            assert reply.choices[0].message.content == "pong"
            big = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/chat/completions", method="POST",
                data=b'{"model": "m", "messages": [], "pad": "' + b"x" * 3000 + b'"}',
                headers={"Authorization": "Bearer sk-user", "Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(big, timeout=10)
            assert refused.value.code == 413
            assert len(up.seen) == 1  # the oversized request never reached the upstream
        output = proc.stdout.read().decode() if proc.stdout else ""
        assert proc.returncode == 0, output
        assert "Traceback" not in output
        assert not any(os.path.exists(f"/proc/{pid}") and _state(pid) != "Z" for pid in workers)
    finally:
        up.close()


@pytest.mark.parametrize("entry", ["uniapi serve", *MODULES])
def test_a_bad_flag_exits_nonzero_with_a_message(entry, tmp_path):
    conf = tmp_path / "api.yaml"
    conf.write_text("providers:\n  - provider: up\n    base_url: http://127.0.0.1:9/v1/chat/"
                    "completions\n    api: sk-up\n    model: [m]\napi_keys:\n  - api: sk-u\n")
    argv = [*uniapi_script(), "serve"] if entry == "uniapi serve" else \
        [sys.executable, "-m", entry]
    for flags, message in [
            (["--max-connections", "0"], "uniapi: --max-connections must be at least 1"),
            (["--drain-grace", "-1"], "uniapi: --drain-grace must be a positive number"),
            (["--certfile", "cert.pem"], "uniapi: --certfile and --keyfile go together"),
            (["--port", "eighty"], "argument --port: invalid int value: 'eighty'"),
            (["--workers", "2", "--port", "0"], "uniapi: --workers needs a fixed --port"),
            (["--no-such-flag"], "unrecognized arguments: --no-such-flag")]:
        got = subprocess.run([*argv, "--config", str(conf), *flags], capture_output=True,
                             text=True, timeout=60)
        assert got.returncode != 0, (flags, got.stderr)
        assert message in got.stderr, (flags, got.stderr)
        assert "Traceback" not in got.stderr, (flags, got.stderr)


@pytest.mark.parametrize("module,other", [("uniapi_trio", "asyncio"), ("uniapi_asyncio", "trio")])
def test_module_entry_refuses_another_backend(module, other):
    """The module fixes the backend: ``--backend`` may repeat it, not contradict it."""
    got = subprocess.run([sys.executable, "-m", module, "--backend", other], capture_output=True,
                         text=True, timeout=60)
    assert got.returncode == 2
    assert f"argument --backend: invalid choice: '{other}'" in got.stderr
    assert "Traceback" not in got.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_json_access_log_is_one_object_per_request_and_no_secret(backend, checked_chat):
    """--log-format json: each access-log line is a JSON object with the record's fields; the
    client key appears only as its digest label."""
    port = free_port()
    with process([*CLI, "demo", "--port", str(port), "--backend", backend,
                  "--log-format", "json"], port) as proc:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1",
                               api_key="sk-uniapi-demo", max_retries=0)
        checked_chat(client, model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    out = proc.stdout.read().decode() if proc.stdout else ""
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    chat = [r for r in rows if r["path"] == "/v1/chat/completions"]
    assert len(chat) == 1, out
    row = chat[0]
    assert (row["method"], row["status"], row["model"]) == ("POST", 200, "gpt-4o-mini")
    assert row["key"].startswith("k-") and row["client_ip"] == "127.0.0.1"
    assert row["tries"][0]["outcome"] == "ok" and row["duration"] >= row["ttft"] >= 0
    logged = "\n".join(json.dumps(r) for r in rows)  # the banner shows the demo key itself
    assert "sk-uniapi-demo" not in logged and "You said" not in logged and "Hi" not in logged


def test_a_clients_broken_pdf_does_not_write_the_log(backend, tmp_path):
    """pypdf, reading a PDF for a Cohere channel, warns about what it repairs on its own
    logger; the command line mutes it (startup.QUIET_LOGGERS), so a client cannot write the
    gateway's log. The PDF here has a wrong startxref (pypdf warns and repairs) and no text."""
    import base64

    import pypdf

    writer = pypdf.PdfWriter()
    writer.add_blank_page(100, 100)
    out = tmp_path / "blank.pdf"
    with out.open("wb") as f:
        writer.write(f)
    pdf = re.sub(rb"startxref\s+\d+", b"startxref\n9", out.read_bytes())
    conf = tmp_path / "api.yaml"
    conf.write_text(f"providers:\n  - provider: co\n    engine: cohere\n"
                    f"    base_url: http://127.0.0.1:{free_port()}/v2/chat\n    api: co-k\n"
                    f"    model: [command-a-03-2025]\napi_keys:\n  - api: sk-user\n")
    port = free_port()
    with process([*CLI, "serve", "--config", str(conf), "--port", str(port),
                  "--backend", backend, "--log-format", "json"], port) as proc:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-user",
                               max_retries=0)
        with pytest.raises(openai.BadRequestError) as exc:
            client.chat.completions.create(model="command-a-03-2025", messages=[
                {"role": "user", "content": [{"type": "file", "file": {
                    "file_data": "data:application/pdf;base64," + base64.b64encode(pdf).decode(),
                    "filename": "scan.pdf"}}]}])
        assert "no text layer" in exc.value.message
    log = proc.stdout.read().decode() if proc.stdout else ""
    assert '"/v1/chat/completions"' in log, log  # the access log is there
    assert "startxref" not in log, log
    assert all(json.loads(line) for line in log.splitlines() if line.startswith("{")), log
