"""Claude Code itself (the npm package ``@anthropic-ai/claude-code``, version pinned below) through
the gateway's Anthropic Messages front (``POST /v1/messages``), headless (``claude -p``).

Both are real processes, as a user runs them: ``python -m uniapi_trio.cli serve`` with an
``api.yaml`` whose only provider is a fake OpenAI-compatible upstream (so every Messages request
is translated to chat and back), and the ``claude`` binary with ``ANTHROPIC_BASE_URL`` pointing
at the gateway. Claude Code is installed once into a cache directory (``UNIAPI_CLAUDE_CODE_DIR``,
else ``~/.cache/uniapi-tests/claude-code``; ``.ci/run`` fills it before the suite runs). When it
cannot be installed the tests fail: a skipped interop test proves nothing.

Claude Code's own state goes to a temporary ``HOME``; its model names are pinned by environment
(``ANTHROPIC_MODEL`` and the per-tier variables) onto names the config renames to the fake
upstream's model, so a new default model in some later version cannot break the routing.
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

from tests.fakes.upstream import FakeUpstream, Reply, Seen, json_reply

#: the version tested; .ci/run reads this line to pre-install the same one
CLAUDE_CODE_VERSION = "2.1.332"
PACKAGE = "@anthropic-ai/claude-code"
CLIENT_KEY = "sk-claude-code-client"
UPSTREAM_KEY = "sk-fake-upstream"
UPSTREAM_MODEL = "fake-model"
#: what Claude Code is told to ask for (main model, and the small/fast one for side requests)
MAIN_MODEL = "uniapi-cc-main"
SMALL_MODEL = "uniapi-cc-small"
#: this version's own default main model for an API-key user: renamed too, in case a request
#: ignores the pinning variables
DEFAULT_MODEL = "claude-opus-5-5"

pytestmark = pytest.mark.timeout(600)  # the first run may download Claude Code (~100 MB)


def claude_code_dir() -> Path:
    configured = os.environ.get("UNIAPI_CLAUDE_CODE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "uniapi-tests" / \
        "claude-code"


def _version(binary: Path) -> str:
    """What ``claude --version`` says (``2.1.332 (Claude Code)``), or why it could not run."""
    if not binary.exists():
        return f"{binary} does not exist"
    try:
        out = subprocess.run([str(binary), "--version"], check=False, capture_output=True,
                             text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{binary} --version: {e}"
    return (out.stdout + out.stderr).strip()


def _installed(binary: Path) -> bool:
    return _version(binary).startswith(CLAUDE_CODE_VERSION + " ")


@pytest.fixture(scope="session")
def claude() -> Path:
    """The pinned ``claude`` binary, installed into the cache directory when it is not there."""
    where = claude_code_dir()
    binary = where / "node_modules" / ".bin" / "claude"
    where.mkdir(parents=True, exist_ok=True)
    with open(where.parent / (where.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time (parallel sessions)
        if _installed(binary):
            return binary
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail(f"npm is not installed: cannot install {PACKAGE}@{CLAUDE_CODE_VERSION} "
                        f"into {where} (install node and npm, or run .ci/run which does)",
                        pytrace=False)
        done = subprocess.run(
            [npm, "install", "--prefix", str(where), "--ignore-scripts=false", "--no-audit",
             "--no-fund", "--loglevel=error", f"{PACKAGE}@{CLAUDE_CODE_VERSION}"],
            check=False, capture_output=True, text=True, timeout=540)
        if done.returncode != 0 or not _installed(binary):
            pytest.fail(f"could not install {PACKAGE}@{CLAUDE_CODE_VERSION} into {where} "
                        f"(npm exit {done.returncode}; `claude --version`: {_version(binary)!r}"
                        "; the package's postinstall script puts the native binary in place, "
                        f"so npm must not ignore scripts):\n{done.stdout}\n{done.stderr}",
                        pytrace=False)
    return binary


# The fake upstream: OpenAI chat, streamed (with a usage chunk when asked) or whole.

@dataclass
class Script:
    """What the fake answers. Every request is logged in ``log`` (model, stream, roles, tool
    count), so a failure says what Claude Code asked for."""
    text: str
    #: when set, a request with tools and no tool result yet gets this tool call instead
    tool_call: tuple[str, dict[str, Any]] | None = None
    log: list[str] = field(default_factory=list)
    chats: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, seen: Seen) -> Reply:
        if seen.method != "POST" or not seen.path.endswith("/chat/completions"):
            with self.lock:
                self.log.append(f"{seen.method} {seen.path} -> 404")
            return json_reply({"error": {"message": "not here", "type": "invalid_request_error",
                                         "code": None}}, status=404)
        req = seen.json()
        messages = req.get("messages") or []
        answered = any(m.get("role") == "tool" for m in messages)
        call = self.tool_call if req.get("tools") and not answered else None
        with self.lock:
            self.chats.append(req)
            self.log.append(
                f"POST {seen.path} model={req.get('model')} stream={req.get('stream')} "
                f"tools={len(req.get('tools') or [])} roles={[m.get('role') for m in messages]}"
                f" -> {'tool call ' + call[0] if call else repr(self.text)}")
        return _answer(req, self.text if call is None else None, call)


def _answer(req: dict[str, Any], text: str | None,
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
        return json_reply({"id": "chatcmpl-cc", "object": "chat.completion", "created": 1,
                           "model": req.get("model"), "usage": usage,
                           "choices": [{"index": 0, "message": message,
                                        "finish_reason": finish}]})
    head = {"id": "chatcmpl-cc", "object": "chat.completion.chunk", "created": 1,
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


# The gateway, as a user starts it, and claude -p in front of it.

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Setup:
    up: FakeUpstream
    script: Script
    url: str
    gateway_log: Path
    tmp: Path

    def report(self, done: subprocess.CompletedProcess | None = None) -> str:
        parts = ["upstream requests:", *("  " + line for line in self.script.log),
                 "gateway output:", self.gateway_log.read_text(errors="replace")]
        if done is not None:
            parts += [f"claude exit {done.returncode}", "claude stdout:", done.stdout,
                      "claude stderr:", done.stderr]
        return "\n".join(parts)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    script = Script(text="PONG-" + secrets.token_hex(4))
    up = FakeUpstream(handler=script)
    renames = "\n".join(f"      - {UPSTREAM_MODEL}: {name}"
                        for name in (MAIN_MODEL, SMALL_MODEL, DEFAULT_MODEL))
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


def run_claude(claude: Path, setup: Setup, prompt: str, *flags: str,
               auth: str = "ANTHROPIC_API_KEY") -> subprocess.CompletedProcess:
    home = setup.tmp / "home"
    work = setup.tmp / "work"
    home.mkdir(exist_ok=True)
    work.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,  # Claude Code's config and session files, nothing of the user's
        "ANTHROPIC_BASE_URL": setup.url,  # without /v1: Claude Code appends /v1/messages
        auth: CLIENT_KEY,  # ANTHROPIC_API_KEY → x-api-key, ANTHROPIC_AUTH_TOKEN → Bearer
        "ANTHROPIC_MODEL": MAIN_MODEL,
        "ANTHROPIC_DEFAULT_OPUS_MODEL": MAIN_MODEL,
        "ANTHROPIC_DEFAULT_SONNET_MODEL": MAIN_MODEL,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": SMALL_MODEL,
        "ANTHROPIC_SMALL_FAST_MODEL": SMALL_MODEL,  # the older name of the haiku tier
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CI": "true",
        "TERM": "dumb",
        "NO_COLOR": "1",
    }
    try:
        return subprocess.run([str(claude), "-p", prompt, "--output-format", "text", *flags],
                              env={k: str(v) for k, v in env.items()}, cwd=work,
                              check=False, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        done = subprocess.CompletedProcess(e.cmd, -1, _text(e.stdout), _text(e.stderr))
        pytest.fail("claude -p did not finish in 120 s\n" + setup.report(done), pytrace=False)


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else data or ""


def test_claude_code_prints_the_upstream_answer(claude: Path, setup: Setup) -> None:
    """A plain question: the fake's text reaches Claude Code's output, through x-api-key."""
    done = run_claude(claude, setup, "Answer with the word PONG.")
    assert done.returncode == 0 and setup.script.text in done.stdout, setup.report(done)
    chats = setup.script.chats
    assert chats and all(c["model"] == UPSTREAM_MODEL for c in chats), setup.report(done)
    assert all(s.headers.get("authorization") == f"Bearer {UPSTREAM_KEY}"
               for s in setup.up.seen), setup.report(done)
    # the main request: Claude Code's system prompt and tools, translated to chat
    main = next((c for c in chats if c.get("tools")), None)
    assert main is not None, setup.report(done)
    assert main["messages"][0]["role"] == "system"
    assert {"Read", "Bash"} <= {t["function"]["name"] for t in main["tools"]}


def test_claude_code_runs_a_tool_and_sends_its_result_back(claude: Path, setup: Setup) -> None:
    """A tool turn, through Authorization: Bearer: the fake asks Claude Code to Read a file of
    its working directory; the file's content comes back as a ``tool`` message and the final
    text is printed."""
    marker = "MARKER-" + secrets.token_hex(6)
    work = setup.tmp / "work"
    work.mkdir(exist_ok=True)
    target = work / "note.txt"
    target.write_text(f"the marker is {marker}\n")
    setup.script.text = f"The file says {marker}. DONE-{secrets.token_hex(3)}"
    setup.script.tool_call = ("Read", {"file_path": str(target)})
    done = run_claude(claude, setup, "Read note.txt and tell me the marker.",
                      "--allowedTools", "Read", auth="ANTHROPIC_AUTH_TOKEN")
    assert done.returncode == 0 and setup.script.text in done.stdout, setup.report(done)
    results = [m for c in setup.script.chats for m in c["messages"] if m.get("role") == "tool"]
    assert results, setup.report(done)
    content = results[0]["content"]
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    assert marker in content, setup.report(done)
    # the tool result answers the call the fake made (same id, assistant turn before it)
    followed = next(c for c in setup.script.chats
                    if any(m.get("role") == "tool" for m in c["messages"]))
    calls = [tc for m in followed["messages"] if m.get("role") == "assistant"
             for tc in m.get("tool_calls") or []]
    assert calls and calls[0]["function"]["name"] == "Read", setup.report(done)
    assert json.loads(calls[0]["function"]["arguments"]) == {"file_path": str(target)}
    assert results[0]["tool_call_id"] == calls[0]["id"], setup.report(done)
