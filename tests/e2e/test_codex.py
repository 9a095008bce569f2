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

import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import llm_vendors as fake
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


def codex_dir() -> Path:
    configured = os.environ.get("UNIAPI_CODEX_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "uniapi-tests" / \
        "codex"


def _version(binary: Path) -> str:
    """What ``codex --version`` says (``codex-cli 0.171.0``), or why it could not run."""
    if not binary.exists():
        return f"{binary} does not exist"
    try:
        out = subprocess.run([str(binary), "--version"], check=False, capture_output=True,
                             text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{binary} --version: {e}"
    return (out.stdout + out.stderr).strip()


def _installed(binary: Path) -> bool:
    return _version(binary) == f"codex-cli {CODEX_VERSION}"


@pytest.fixture(scope="session")
def codex() -> Path:
    """The pinned ``codex`` binary, installed into the cache directory when it is not there."""
    where = codex_dir()
    binary = where / "node_modules" / ".bin" / "codex"
    where.mkdir(parents=True, exist_ok=True)
    with open(where.parent / (where.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time (parallel sessions)
        if _installed(binary):
            return binary
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail(f"npm is not installed: cannot install {PACKAGE}@{CODEX_VERSION} "
                        f"into {where} (install node and npm, or run .ci/run which does)",
                        pytrace=False)
        done = subprocess.run(
            [npm, "install", "--prefix", str(where), "--include=optional", "--no-audit",
             "--no-fund", "--loglevel=error", f"{PACKAGE}@{CODEX_VERSION}"],
            check=False, capture_output=True, text=True, timeout=540)
        if done.returncode != 0 or not _installed(binary):
            pytest.fail(f"could not install {PACKAGE}@{CODEX_VERSION} into {where} "
                        f"(npm exit {done.returncode}; `codex --version`: {_version(binary)!r}"
                        "; the native binary comes as an optional dependency for this "
                        f"platform, so npm must not omit optional ones):\n{done.stdout}\n"
                        f"{done.stderr}", pytrace=False)
    return binary


# The fake upstreams: OpenAI chat (streamed, with a usage chunk when asked, or whole) and
# OpenAI Responses (llm_vendors' events, with this test's text).

@dataclass
class Script:
    """What the fakes answer. Every request is logged in ``log``, so a failure says what
    Codex asked for; ``chats`` and ``responses`` are the bodies."""
    text: str
    #: when set, a chat request with tools and no tool result yet gets this tool call instead
    tool_call: tuple[str, dict[str, Any]] | None = None
    log: list[str] = field(default_factory=list)
    chats: list[dict[str, Any]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _refuse(self, seen: Seen) -> Reply:
        with self.lock:
            self.log.append(f"{seen.method} {seen.path} -> 404")
        return json_reply({"error": {"message": "not here", "type": "invalid_request_error",
                                     "code": None}}, status=404)

    def chat(self, seen: Seen) -> Reply:
        if seen.method != "POST" or not seen.path.endswith("/chat/completions"):
            return self._refuse(seen)
        req = seen.json()
        messages = req.get("messages") or []
        answered = any(m.get("role") == "tool" for m in messages)
        call = self.tool_call if req.get("tools") and not answered else None
        with self.lock:
            self.chats.append(req)
            self.log.append(
                f"chat: POST {seen.path} model={req.get('model')} stream={req.get('stream')} "
                f"tools={len(req.get('tools') or [])} roles={[m.get('role') for m in messages]}"
                f" -> {'tool call ' + call[0] if call else repr(self.text)}")
        return _chat_answer(req, self.text if call is None else None, call)

    def native(self, seen: Seen) -> Reply:
        if seen.method != "POST" or not seen.path.endswith("/responses"):
            return self._refuse(seen)
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


def _chat_answer(req: dict[str, Any], text: str | None,
                 call: tuple[str, dict[str, Any]] | None) -> Reply:
    usage = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
    finish = "tool_calls" if call else "stop"
    tool_calls: list[dict[str, Any]] | None = None
    args = ""
    if call is not None:
        args = json.dumps(call[1])
        tool_calls = [{"id": "call_" + secrets.token_hex(6), "type": "function",
                       "function": {"name": call[0], "arguments": args}}]
    if not req.get("stream"):
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if tool_calls:
            message["tool_calls"] = tool_calls
        return json_reply({"id": "chatcmpl-cx", "object": "chat.completion", "created": 1,
                           "model": req.get("model"), "usage": usage,
                           "choices": [{"index": 0, "message": message,
                                        "finish_reason": finish}]})
    head = {"id": "chatcmpl-cx", "object": "chat.completion.chunk", "created": 1,
            "model": req.get("model")}
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    if text is not None:
        half = len(text) // 2
        deltas += [{"content": text[:half]}, {"content": text[half:]}]
    if tool_calls:
        first = dict(tool_calls[0], index=0,
                     function={"name": tool_calls[0]["function"]["name"], "arguments": ""})
        deltas += [{"tool_calls": [first]},
                   {"tool_calls": [{"index": 0, "function": {"arguments": args[:5]}}]},
                   {"tool_calls": [{"index": 0, "function": {"arguments": args[5:]}}]}]
    events = [dict(head, choices=[{"index": 0, "delta": d, "finish_reason": None}])
              for d in deltas]
    events.append(dict(head, choices=[{"index": 0, "delta": {}, "finish_reason": finish}]))
    options = req.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        events.append(dict(head, choices=[], usage=usage))
    pieces = [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events]
    return Reply(headers=[("content-type", "text/event-stream")],
                 pieces=pieces + [b"data: [DONE]\n\n"])


# The gateway, as a user starts it, and codex exec in front of it.

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Setup:
    chat_up: FakeUpstream
    native_up: FakeUpstream
    script: Script
    url: str
    gateway_log: Path
    tmp: Path

    def report(self, done: subprocess.CompletedProcess | None = None) -> str:
        parts = ["upstream requests:", *("  " + line for line in self.script.log),
                 "gateway output:", self.gateway_log.read_text(errors="replace")]
        if done is not None:
            parts += [f"codex exit {done.returncode}", "codex stdout:", done.stdout,
                      "codex stderr:", done.stderr]
        return "\n".join(parts)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    script = Script(text="PONG-" + secrets.token_hex(4))
    chat_up = FakeUpstream(handler=script.chat)
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
    port = _free_port()
    log = tmp_path / "gateway.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "uniapi_trio.cli", "serve", "--config",
                                 str(conf), "--port", str(port)], stdout=out,
                                stderr=subprocess.STDOUT)
    made = Setup(chat_up, native_up, script, f"http://127.0.0.1:{port}", log, tmp_path)
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
    home, codex_home, work = (setup.tmp / name for name in ("home", "codex-home", "work"))
    for d in (home, codex_home, work):
        d.mkdir(exist_ok=True)
    (codex_home / "config.toml").write_text(codex_config(setup.url))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,  # nothing of the user's
        "CODEX_HOME": codex_home,  # config.toml, sessions and logs
        KEY_VARIABLE: CLIENT_KEY,  # sent as Authorization: Bearer
        "CI": "true",
        "TERM": "dumb",
        "NO_COLOR": "1",
    }
    # exec never asks for approval; read-only: a command runs sandboxed, writes nothing;
    # outside a git repository exec refuses to start without --skip-git-repo-check;
    # --strict-config: a key of codex_config this version does not know is an error
    command = [str(codex), "exec", "--strict-config", "--skip-git-repo-check", "--sandbox",
               "read-only", "--color", "never", *flags, prompt]
    try:
        return subprocess.run(command, env={k: str(v) for k, v in env.items()}, cwd=work,
                              check=False, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)  # else exec waits for more input
    except subprocess.TimeoutExpired as e:
        done = subprocess.CompletedProcess(e.cmd, -1, _text(e.stdout), _text(e.stderr))
        pytest.fail("codex exec did not finish in 120 s\n" + setup.report(done), pytrace=False)


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else data or ""


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
