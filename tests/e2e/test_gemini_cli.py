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

import json
import re
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.cli_clients import ClientSetup, NpmCli, run_client
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

#: ``gemini --version`` says ``0.61.0``
GEMINI_CLI = NpmCli(
    package=PACKAGE, version=GEMINI_CLI_VERSION, binary="gemini",
    cache_variable="UNIAPI_GEMINI_CLI_DIR", cache_name="gemini-cli",
    pinned=lambda said: said == GEMINI_CLI_VERSION, needs="it needs node >= 20")


@pytest.fixture(scope="session")
def gemini() -> Path:
    """The pinned ``gemini`` binary, installed into the cache directory when it is not there."""
    return GEMINI_CLI.install()


# The gateway, as a user starts it, and gemini -p in front of it.

@dataclass
class Setup(ClientSetup):
    script: ChatScript
    up: FakeUpstream
    client = "gemini"

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
    made = Setup(script=script, tmp=tmp_path, up=up)
    try:
        with made.gateway(conf):
            yield made
    finally:
        up.close()


def settings() -> dict[str, object]:
    """``~/.gemini/settings.json`` for a headless run against the gateway."""
    return {"security": {"auth": {"selectedType": "gemini-api-key"}},
            "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
            "privacy": {"usageStatisticsEnabled": False},
            "telemetry": {"enabled": False}}


def run_gemini(gemini: Path, setup: Setup, prompt: str, *flags: str, key: str = CLIENT_KEY,
               bearer: bool = False, model: str = MAIN_MODEL) -> subprocess.CompletedProcess:
    home, tmp = setup.tmp / "home", setup.tmp / "tmp"
    for d in (home / ".gemini", tmp):
        d.mkdir(parents=True, exist_ok=True)
    (home / ".gemini" / "settings.json").write_text(json.dumps(settings()))
    env: dict[str, object] = {
        "TMPDIR": tmp,  # its error reports
        "GOOGLE_GEMINI_BASE_URL": setup.url,  # without /v1beta: the SDK appends it
        "GEMINI_API_KEY": key,
        "GEMINI_CLI_TRUST_WORKSPACE": "true",
    }
    if bearer:
        env["GEMINI_API_KEY_AUTH_MECHANISM"] = "bearer"
    return run_client(setup, [str(gemini), "-p", prompt, "-m", model, *flags], env,
                      "gemini -p")


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
