"""Gemini CLI itself (the npm package ``@google/gemini-cli``, version pinned below) through the
gateway's Gemini-native front (``POST /v1beta/models/{model}:streamGenerateContent``),
headless (``gemini -p``).

Both are real processes, as a user runs them: ``python -m uniapi_trio.cli serve`` with an
``api.yaml`` whose only provider is a fake OpenAI-compatible upstream (so every Gemini request
is translated to chat and back), and the ``gemini`` binary with ``GOOGLE_GEMINI_BASE_URL``
pointing at the gateway. Gemini CLI is installed once into a cache directory
(``UNIAPI_GEMINI_CLI_DIR``, else ``~/.cache/uniapi-tests/gemini-cli``; ``.ci/run`` fills it
before the suite runs). When it cannot be installed the tests fail: a skipped interop test
proves nothing.

What headless Gemini CLI needs (``settings()`` and ``run_gemini``): its state goes to a
temporary ``HOME`` (``~/.gemini/settings.json`` below, ``TMPDIR`` for its error reports);
``security.auth.selectedType: gemini-api-key``, because this version, given
``GOOGLE_GEMINI_BASE_URL`` and no selected type, picks its ``gateway`` auth type, which its own
non-interactive check then rejects ("Invalid auth method selected."); the key in
``GEMINI_API_KEY`` (sent as ``x-goog-api-key``, or as a bearer token with
``GEMINI_API_KEY_AUTH_MECHANISM=bearer``); ``GEMINI_CLI_TRUST_WORKSPACE=true``, else it refuses
to run in an untrusted folder (exit 55); auto-update, usage statistics and telemetry off. The
model is pinned with ``-m``, and this version's default model names are renamed to the fake
upstream's model too, so a side request on a default model cannot miss the routing.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.gemini_front import ChatScript
from tests.fakes.upstream import FakeUpstream

#: the version tested; .ci/run reads this line to pre-install the same one
GEMINI_CLI_VERSION = "0.61.0"
PACKAGE = "@google/gemini-cli"
CLIENT_KEY = "sk-gemini-cli-client"
UPSTREAM_KEY = "sk-fake-upstream"
UPSTREAM_MODEL = "fake-model"
#: what Gemini CLI is told to ask for
MAIN_MODEL = "uniapi-gemini-main"
#: this version's own default and preview models: renamed too, in case a request ignores -m
DEFAULT_MODELS = ("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite",
                  "gemini-3-pro-preview", "gemini-3-flash-preview")

pytestmark = pytest.mark.timeout(600)  # the first run may download Gemini CLI (~100 MB)


def gemini_cli_dir() -> Path:
    configured = os.environ.get("UNIAPI_GEMINI_CLI_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "uniapi-tests" / \
        "gemini-cli"


def _version(binary: Path) -> str:
    """What ``gemini --version`` says (``0.61.0``), or why it could not run."""
    if not binary.exists():
        return f"{binary} does not exist"
    try:
        out = subprocess.run([str(binary), "--version"], check=False, capture_output=True,
                             text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{binary} --version: {e}"
    return (out.stdout + out.stderr).strip()


def _installed(binary: Path) -> bool:
    return _version(binary) == GEMINI_CLI_VERSION


@pytest.fixture(scope="session")
def gemini() -> Path:
    """The pinned ``gemini`` binary, installed into the cache directory when it is not there."""
    where = gemini_cli_dir()
    binary = where / "node_modules" / ".bin" / "gemini"
    where.mkdir(parents=True, exist_ok=True)
    with open(where.parent / (where.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time (parallel sessions)
        if _installed(binary):
            return binary
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail(f"npm is not installed: cannot install {PACKAGE}@{GEMINI_CLI_VERSION} "
                        f"into {where} (install node and npm, or run .ci/run which does)",
                        pytrace=False)
        done = subprocess.run(
            [npm, "install", "--prefix", str(where), "--no-audit", "--no-fund",
             "--loglevel=error", f"{PACKAGE}@{GEMINI_CLI_VERSION}"],
            check=False, capture_output=True, text=True, timeout=540)
        if done.returncode != 0 or not _installed(binary):
            pytest.fail(f"could not install {PACKAGE}@{GEMINI_CLI_VERSION} into {where} "
                        f"(npm exit {done.returncode}; `gemini --version`: {_version(binary)!r}"
                        f"; it needs node >= 20):\n{done.stdout}\n{done.stderr}", pytrace=False)
    return binary


# The gateway, as a user starts it, and gemini -p in front of it.

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Setup:
    up: FakeUpstream
    script: ChatScript
    url: str
    gateway_log: Path
    tmp: Path

    def report(self, done: subprocess.CompletedProcess | None = None) -> str:
        parts = ["upstream requests:", *("  " + line for line in self.script.log),
                 "gateway output:", self.gateway_log.read_text(errors="replace")]
        if done is not None:
            parts += [f"gemini exit {done.returncode}", "gemini stdout:", done.stdout,
                      "gemini stderr:", done.stderr]
        return "\n".join(parts)

    def asked(self) -> list[str]:
        """The gateway's request lines (``POST /v1beta/models/…:streamGenerateContent 200``),
        the fixture's health checks aside."""
        return [line for line in re.findall(r"INFO ((?:GET|POST) \S+ \d+)",
                                            self.gateway_log.read_text())
                if not line.startswith("GET /healthz ")]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    script = ChatScript(text="PONG-" + secrets.token_hex(4))
    up = FakeUpstream(handler=script)
    renames = "\n".join(f"      - {UPSTREAM_MODEL}: {name}"
                        for name in (MAIN_MODEL, *DEFAULT_MODELS))
    conf = tmp_path / "api.yaml"
    conf.write_text(f"providers:\n  - provider: fake\n"
                    f"    base_url: {up.url}/v1/chat/completions\n    api: {UPSTREAM_KEY}\n"
                    f"    model:\n{renames}\napi_keys:\n  - api: {CLIENT_KEY}\n")
    port = _free_port()
    log = tmp_path / "gateway.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "uniapi_trio.cli", "serve", "--config",
                                 str(conf), "--port", str(port)], stdout=out,
                                stderr=subprocess.STDOUT)
    made = Setup(up, script, f"http://127.0.0.1:{port}", log, tmp_path)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(made.url + "/healthz", timeout=1) as r:
                    assert r.status == 200
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the gateway did not start:\n" + made.report(), pytrace=False)
                time.sleep(0.05)
        yield made
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        up.close()


def settings() -> dict[str, object]:
    """``~/.gemini/settings.json`` for a headless run against the gateway."""
    return {"security": {"auth": {"selectedType": "gemini-api-key"}},
            "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
            "privacy": {"usageStatisticsEnabled": False},
            "telemetry": {"enabled": False}}


def run_gemini(gemini: Path, setup: Setup, prompt: str, *flags: str, key: str = CLIENT_KEY,
               bearer: bool = False, model: str = MAIN_MODEL) -> subprocess.CompletedProcess:
    home, work, tmp = setup.tmp / "home", setup.tmp / "work", setup.tmp / "tmp"
    for d in (home / ".gemini", work, tmp):
        d.mkdir(parents=True, exist_ok=True)
    (home / ".gemini" / "settings.json").write_text(json.dumps(settings()))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,  # Gemini CLI's settings and session files, nothing of the user's
        "TMPDIR": tmp,  # its error reports
        "GOOGLE_GEMINI_BASE_URL": setup.url,  # without /v1beta: the SDK appends it
        "GEMINI_API_KEY": key,
        "GEMINI_CLI_TRUST_WORKSPACE": "true",
        "CI": "true",
        "TERM": "dumb",
        "NO_COLOR": "1",
    }
    if bearer:
        env["GEMINI_API_KEY_AUTH_MECHANISM"] = "bearer"
    try:
        return subprocess.run([str(gemini), "-p", prompt, "-m", model, *flags],
                              env={k: str(v) for k, v in env.items()}, cwd=work,
                              check=False, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        done = subprocess.CompletedProcess(e.cmd, -1, _text(e.stdout), _text(e.stderr))
        pytest.fail("gemini -p did not finish in 120 s\n" + setup.report(done), pytrace=False)


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else data or ""


def test_gemini_cli_prints_the_upstream_answer(gemini: Path, setup: Setup) -> None:
    """A plain question: the fake's text reaches Gemini CLI's output, through x-goog-api-key."""
    done = run_gemini(gemini, setup, "Answer with the word PONG.")
    assert done.returncode == 0 and setup.script.text in done.stdout, setup.report(done)
    chats = setup.script.chats
    assert chats and all(c["model"] == UPSTREAM_MODEL for c in chats), setup.report(done)
    assert all(s.headers.get("authorization") == f"Bearer {UPSTREAM_KEY}"
               for s in setup.up.seen), setup.report(done)
    # every request Gemini CLI made was a stream of the pinned model, answered
    asked = setup.asked()
    assert asked and all(line == f"POST /v1beta/models/{MAIN_MODEL}:streamGenerateContent 200"
                         for line in asked), setup.report(done)
    # the main request: Gemini CLI's system instruction and tools, translated to chat
    main = chats[0]
    assert main["messages"][0]["role"] == "system", setup.report(done)
    assert "Gemini CLI" in main["messages"][0]["content"]
    assert {"read_file", "list_directory"} <= {t["function"]["name"] for t in main["tools"]}
    assert main["stream"] is True


def test_gemini_cli_runs_a_tool_and_sends_its_result_back(gemini: Path, setup: Setup) -> None:
    """A tool turn, through Authorization: Bearer: the fake asks Gemini CLI to read a file of
    its working directory; the file's content comes back as a ``tool`` message answering the
    call, and the final text is printed."""
    marker = "MARKER-" + secrets.token_hex(6)
    work = setup.tmp / "work"
    work.mkdir(exist_ok=True)
    target = work / "note.txt"
    target.write_text(f"the marker is {marker}\n")
    setup.script.text = f"The file says {marker}. DONE-{secrets.token_hex(3)}"
    setup.script.tool_call = ("read_file", {"file_path": str(target)})
    done = run_gemini(gemini, setup, "Read note.txt and tell me the marker.", bearer=True)
    assert done.returncode == 0 and setup.script.text in done.stdout, setup.report(done)
    followed = next((c for c in setup.script.chats
                     if any(m.get("role") == "tool" for m in c["messages"])), None)
    assert followed is not None, setup.report(done)
    [result] = [m for m in followed["messages"] if m.get("role") == "tool"]
    assert marker in result["content"], setup.report(done)
    [call] = [tc for m in followed["messages"] if m.get("role") == "assistant"
              for tc in m.get("tool_calls") or []]
    assert call["function"]["name"] == "read_file"
    assert json.loads(call["function"]["arguments"]) == {"file_path": str(target)}
    assert result["tool_call_id"] == call["id"] == "call_gcli1", setup.report(done)


def test_a_wrong_key_is_reported_as_google_error(gemini: Path, setup: Setup) -> None:
    """The gateway's 401 reaches Gemini CLI in Google's error shape, which it prints; the
    upstream is never asked."""
    done = run_gemini(gemini, setup, "Hello?", key="sk-wrong")
    assert done.returncode != 0, setup.report(done)
    assert '"status":"UNAUTHENTICATED"' in done.stdout + done.stderr, setup.report(done)
    assert not setup.up.seen, setup.report(done)


def test_an_unknown_model_is_reported_as_not_found(gemini: Path, setup: Setup) -> None:
    """A model name the config lacks: Gemini CLI reads the gateway's 404 NOT_FOUND as its
    ``ModelNotFoundError`` and prints the gateway's message, which names the model."""
    done = run_gemini(gemini, setup, "Hello?", model="no-such-model")
    assert done.returncode != 0, setup.report(done)
    out = done.stdout + done.stderr
    assert "ModelNotFoundError: The model 'no-such-model' does not exist" in out, \
        setup.report(done)
    assert not setup.up.seen, setup.report(done)
