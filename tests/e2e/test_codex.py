"""Codex CLI itself (the npm package ``@openai/codex``, version pinned below) through the
gateway's OpenAI Responses front (``POST /v1/responses``), headless (``codex exec``).

Both are real processes, as a user runs them: ``python -m uniapi_trio.cli serve`` with an
``api.yaml`` naming two fake upstreams, an OpenAI-compatible chat one (Codex's Responses
requests are translated to chat and the answers back) and a Responses one (a provider whose
``base_url`` ends in ``/responses``: Codex's body is passed through), and the ``codex`` binary
with a ``config.toml`` whose custom model provider points at the gateway (``wire_api =
"responses"``, the key in the environment variable ``env_key`` names). Codex is installed once
into a cache directory (``UNIAPI_CODEX_DIR``, else ``~/.cache/uniapi-tests/codex``; ``.ci/run``
fills it before the suite runs). When it cannot be installed the tests fail: a skipped interop
test proves nothing.

Codex's state goes to a temporary ``CODEX_HOME`` (its ``config.toml``, sessions, logs) and a
temporary ``HOME``; it runs in a temporary working directory with the ``read-only`` sandbox
(no approval prompts in ``exec``: a command runs sandboxed or fails), so it writes nothing
outside those. Its model name is one the config renames to the fakes' models.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import llm_vendors as fake
from tests.fakes.cli_clients import ChatScript, ClientSetup, NpmCli, run_client
from tests.fakes.upstream import FakeUpstream, Reply, Seen, json_reply

#: the version tested; .ci/run reads this line to pre-install the same one
CODEX_VERSION = "0.171.0"
PACKAGE = "@openai/codex"
CLIENT_KEY = "sk-codex-client"
KEY_VARIABLE = "UNIAPI_CODEX_KEY"  # the config's env_key: Codex reads the key from it
UPSTREAM_KEY = "sk-fake-upstream"
UPSTREAM_MODEL = "fake-model"
NATIVE_MODEL = "fake-responses-model"
#: what Codex is told to ask for: a translated channel, and a Responses one
MODEL = "uniapi-codex"
NATIVE = "uniapi-codex-native"

pytestmark = pytest.mark.timeout(600)  # the first run may download Codex (~400 MB unpacked)

#: ``codex --version`` says ``codex-cli 0.171.0``
CODEX = NpmCli(
    package=PACKAGE, version=CODEX_VERSION, binary="codex",
    cache_variable="UNIAPI_CODEX_DIR", cache_name="codex",
    pinned=lambda said: said == f"codex-cli {CODEX_VERSION}",
    npm_options=("--include=optional",),
    needs="the native binary comes as an optional dependency for this platform, so npm must "
          "not omit optional ones")


@pytest.fixture(scope="session")
def codex() -> Path:
    """The pinned ``codex`` binary, installed into the cache directory when it is not there."""
    return CODEX.install()


# The fake upstreams: OpenAI chat (cli_clients' ChatScript) and OpenAI Responses
# (llm_vendors' events, with this test's text).

@dataclass
class Script(ChatScript):
    """What the fakes answer: ``ChatScript`` for chat, and ``native`` for the Responses
    upstream. Every request is logged in ``log``, so a failure says what Codex asked for;
    ``chats`` and ``responses`` are the bodies."""
    responses: list[dict[str, Any]] = field(default_factory=list)
    completion_id: str = "chatcmpl-cx"
    log_prefix: str = "chat: "

    def native(self, seen: Seen) -> Reply:
        if seen.method != "POST" or not seen.path.endswith("/responses"):
            return self.refuse(seen)
        req = seen.json()
        with self.lock:
            self.responses.append(req)
            items = req.get("input") if isinstance(req.get("input"), list) else []
            tools = [t.get("name") or t.get("type") for t in req.get("tools") or []]
            self.log.append(
                f"responses: POST {seen.path} model={req.get('model')} "
                f"stream={req.get('stream')} tools={tools} "
                f"items={[i.get('type') for i in items]} -> {self.text!r}")
        half = len(self.text) // 2
        events = fake.responses_events(req, NATIVE_MODEL, [self.text[:half], self.text[half:]])
        if not req.get("stream"):
            return json_reply(events[-1]["response"])
        return Reply(headers=[("content-type", "text/event-stream")],
                     pieces=fake.responses_sse(events))


# The gateway, as a user starts it, and codex exec in front of it.

@dataclass
class Setup(ClientSetup):
    script: Script
    chat_up: FakeUpstream
    native_up: FakeUpstream
    client = "codex"


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    script = Script(text="PONG-" + secrets.token_hex(4))
    chat_up = FakeUpstream(handler=script)
    native_up = FakeUpstream(handler=script.native)
    conf = tmp_path / "api.yaml"
    conf.write_text(f"""providers:
  - provider: fake
    base_url: {chat_up.url}/v1/chat/completions
    api: {UPSTREAM_KEY}
    model:
      - {UPSTREAM_MODEL}: {MODEL}
  - provider: fake-responses
    base_url: {native_up.url}/v1/responses
    api: {UPSTREAM_KEY}
    model:
      - {NATIVE_MODEL}: {NATIVE}
api_keys:
  - api: {CLIENT_KEY}
""")
    made = Setup(script=script, tmp=tmp_path, chat_up=chat_up, native_up=native_up)
    try:
        with made.gateway(conf):
            yield made
    finally:
        chat_up.close()
        native_up.close()


def codex_config(url: str) -> str:
    """``$CODEX_HOME/config.toml``: the gateway as Codex's model provider; nothing else goes
    out (this version otherwise syncs plugins from GitHub and chatgpt.com, and exports
    metrics to ab.chatgpt.com when it exits: a stalled network would stall the test)."""
    return f"""model = "{MODEL}"
model_provider = "uniapi"
check_for_update_on_startup = false

[model_providers.uniapi]
name = "uniapi"
base_url = "{url}/v1"
env_key = "{KEY_VARIABLE}"
wire_api = "responses"

[analytics]
enabled = false

[features]
plugins = false
remote_plugin = false
in_app_updates = false
"""


def run_codex(codex: Path, setup: Setup, prompt: str, *flags: str) -> subprocess.CompletedProcess:
    codex_home = setup.tmp / "codex-home"
    codex_home.mkdir(exist_ok=True)
    (codex_home / "config.toml").write_text(codex_config(setup.url))
    env = {
        "CODEX_HOME": codex_home,  # config.toml, sessions and logs
        KEY_VARIABLE: CLIENT_KEY,  # sent as Authorization: Bearer
    }
    # exec never asks for approval; read-only: a command runs sandboxed, writes nothing;
    # outside a git repository exec refuses to start without --skip-git-repo-check;
    # --strict-config: a key of codex_config this version does not know is an error;
    # run_client gives it no input, else exec waits for more
    command = [str(codex), "exec", "--strict-config", "--skip-git-repo-check", "--sandbox",
               "read-only", "--color", "never", *flags, prompt]
    return run_client(setup, command, env, "codex exec")


def test_codex_prints_the_upstream_answer(codex: Path, setup: Setup) -> None:
    """A plain question, translated: the fake's streamed text is Codex's final message."""
    done = run_codex(codex, setup, "Answer with the word PONG.")
    assert done.returncode == 0, setup.report(done)
    assert done.stdout.strip() == setup.script.text, setup.report(done)
    chats = setup.script.chats
    assert chats and not setup.script.responses, setup.report(done)
    assert all(c["model"] == UPSTREAM_MODEL and c["stream"] is True for c in chats)
    assert all(s.headers.get("authorization") == f"Bearer {UPSTREAM_KEY}"
               for s in setup.chat_up.seen), setup.report(done)
    main = chats[0]
    # Codex's instructions, then its context and the prompt; its function tools, translated
    assert main["messages"][0]["role"] == "system", setup.report(done)
    assert "Codex" in main["messages"][0]["content"]
    assert main["messages"][-1] == {"role": "user", "content": "Answer with the word PONG."}
    assert "exec_command" in {t["function"]["name"] for t in main["tools"]}, setup.report(done)
    assert "POST /v1/responses 200" in setup.gateway_log.read_text()


def test_codex_runs_a_command_and_sends_its_output_back(codex: Path, setup: Setup) -> None:
    """A tool turn, translated: the fake asks Codex to run ``cat note.txt`` (its
    ``exec_command`` function tool); the command's output comes back as a ``tool`` message
    answering that call, and the final text is printed."""
    marker = "MARKER-" + secrets.token_hex(6)
    work = setup.tmp / "work"
    work.mkdir(exist_ok=True)
    (work / "note.txt").write_text(f"the marker is {marker}\n")
    setup.script.text = f"The file says {marker}. DONE-{secrets.token_hex(3)}"
    setup.script.tool_call = ("exec_command", {"cmd": "cat note.txt"})
    done = run_codex(codex, setup, "Read note.txt and tell me the marker.")
    assert done.returncode == 0, setup.report(done)
    assert done.stdout.strip() == setup.script.text, setup.report(done)
    followed = next((c for c in setup.script.chats
                     if any(m.get("role") == "tool" for m in c["messages"])), None)
    assert followed is not None, setup.report(done)
    [result] = [m for m in followed["messages"] if m.get("role") == "tool"]
    assert marker in result["content"], setup.report(done)
    [call] = [tc for m in followed["messages"] if m.get("role") == "assistant"
              for tc in m.get("tool_calls") or []]
    assert call["function"]["name"] == "exec_command", setup.report(done)
    assert json.loads(call["function"]["arguments"]) == {"cmd": "cat note.txt"}
    assert result["tool_call_id"] == call["id"], setup.report(done)


def test_codex_through_a_responses_channel_is_passed_through(codex: Path, setup: Setup
                                                             ) -> None:
    """A channel that speaks Responses gets Codex's own body (its tools of every kind, its
    ``include`` and ``store``), the model renamed; the fake's Responses stream is the answer."""
    done = run_codex(codex, setup, "Answer with the word PONG.", "--model", NATIVE)
    assert done.returncode == 0, setup.report(done)
    assert done.stdout.strip() == setup.script.text, setup.report(done)
    assert not setup.script.chats, setup.report(done)
    [req] = setup.script.responses
    assert req["model"] == NATIVE_MODEL and req["stream"] is True, setup.report(done)
    # Codex's instructions are developer messages; the prompt is the last user message
    assert req["input"][0]["role"] == "developer", setup.report(done)
    assert "Codex" in json.dumps(req["input"][0]["content"])
    assert req["input"][-1]["role"] == "user"
    assert req["input"][-1]["content"] == [{"type": "input_text",
                                            "text": "Answer with the word PONG."}]
    # what translation would drop reached the channel: the hosted web_search tool, the
    # namespace tool, include and store
    kinds = {t["type"] for t in req["tools"]}
    assert {"function", "namespace", "web_search"} <= kinds, setup.report(done)
    assert "exec_command" in {t.get("name") for t in req["tools"]}
    assert req["store"] is False and "reasoning.encrypted_content" in req["include"]
    [seen] = setup.native_up.seen
    assert seen.path == "/v1/responses"
    assert seen.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_codex_reports_an_unknown_model(codex: Path, setup: Setup) -> None:
    """A model name the config lacks: the gateway's 404, in OpenAI's shape, is what Codex
    prints, and it exits with an error; no upstream is asked."""
    done = run_codex(codex, setup, "Answer with the word PONG.", "--model", "no-such-model")
    assert done.returncode != 0, setup.report(done)
    assert "The model 'no-such-model' does not exist" in done.stderr, setup.report(done)
    assert not setup.chat_up.seen and not setup.native_up.seen, setup.report(done)
