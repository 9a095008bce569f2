"""What the end-to-end tests of real CLI clients share (``tests/e2e/test_claude_code.py``,
``test_codex.py``, ``test_gemini_cli.py``): each drives an npm-installed CLI against a real
gateway subprocess in front of a fake OpenAI-compatible chat upstream.

- ``NpmCli``: the pinned npm package, installed once into a cache directory under a file lock
  (reused when its ``--version`` says the pinned version). When it cannot be installed the test
  fails: a skipped interop test proves nothing.
- ``ChatScript`` and ``chat_answer``: the fake chat upstream, answering text, or a tool call to
  a request with tools and no tool result yet, streamed or whole, logging every request.
- ``ClientSetup``: the gateway as a user starts it (``python -m uniapi_trio.cli serve``), its
  output, and the failure report (upstream log, gateway output, the CLI's exit code and
  output); ``run_client`` runs the CLI with a clean environment in a temporary home.
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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.fakes.upstream import Reply, Seen, json_reply

#: how long a CLI run may take
CLIENT_TIMEOUT = 120


# The CLI: an npm package at a pinned version, in a cache directory.

@dataclass(frozen=True)
class NpmCli:
    """A CLI from npm at a pinned version, kept in a cache directory (``$cache_variable``,
    else ``~/.cache/uniapi-tests/<cache_name>``; ``.ci/run`` fills it before the suite runs)."""
    package: str
    version: str
    #: the binary's name in ``node_modules/.bin``
    binary: str
    cache_variable: str
    cache_name: str
    #: whether ``--version``'s output names the pinned version
    pinned: Callable[[str], bool]
    #: npm options this package needs, before the common ones
    npm_options: tuple[str, ...] = ()
    #: said when the install fails: what the package needs from npm or node
    needs: str = ""

    def cache_dir(self) -> Path:
        configured = os.environ.get(self.cache_variable)
        return Path(configured) if configured else Path.home() / ".cache" / "uniapi-tests" / \
            self.cache_name

    def version_of(self, binary: Path) -> str:
        """What ``<binary> --version`` says, or why it could not run."""
        if not binary.exists():
            return f"{binary} does not exist"
        try:
            out = subprocess.run([str(binary), "--version"], check=False, capture_output=True,
                                 text=True, timeout=60, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"{binary} --version: {e}"
        return (out.stdout + out.stderr).strip()

    def installed(self, binary: Path) -> bool:
        return self.pinned(self.version_of(binary))

    def install(self) -> Path:
        """The pinned binary, installed into the cache directory when it is not there (one
        installer at a time: parallel sessions share the directory); fails the test when it
        cannot be installed."""
        where = self.cache_dir()
        binary = where / "node_modules" / ".bin" / self.binary
        spec = f"{self.package}@{self.version}"
        where.mkdir(parents=True, exist_ok=True)
        with open(where.parent / (where.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.installed(binary):
                return binary
            npm = shutil.which("npm")
            if npm is None:
                pytest.fail(f"npm is not installed: cannot install {spec} into {where} "
                            "(install node and npm, or run .ci/run which does)", pytrace=False)
            done = subprocess.run(
                [npm, "install", "--prefix", str(where), *self.npm_options, "--no-audit",
                 "--no-fund", "--loglevel=error", spec],
                check=False, capture_output=True, text=True, timeout=540)
            if done.returncode != 0 or not self.installed(binary):
                pytest.fail(f"could not install {spec} into {where} (npm exit {done.returncode}"
                            f"; `{self.binary} --version`: {self.version_of(binary)!r}"
                            f"; {self.needs}):\n{done.stdout}\n{done.stderr}", pytrace=False)
        return binary


# The fake upstream: OpenAI chat, streamed (with a usage chunk when asked) or whole.

@dataclass
class ChatScript:
    """An OpenAI chat upstream (``FakeUpstream(handler=script)``) answering ``text``, or, when
    ``tool_call`` is set, that call to a request with tools and no tool result yet. Every
    request is logged in ``log`` (model, stream, tool count, roles, answer), so a failure says
    what the client asked for; the chat bodies are kept in ``chats``."""
    text: str
    #: when set, a request with tools and no tool result yet gets this tool call instead
    tool_call: tuple[str, dict[str, Any]] | None = None
    log: list[str] = field(default_factory=list)
    chats: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: the answers' ``id``
    completion_id: str = "chatcmpl-fake"
    #: put before each chat line of ``log`` (a fake with other upstreams names this one)
    log_prefix: str = ""

    def refuse(self, seen: Seen) -> Reply:
        """A 404 in OpenAI's shape for what the fake does not serve, logged."""
        with self.lock:
            self.log.append(f"{seen.method} {seen.path} -> 404")
        return json_reply({"error": {"message": "not here", "type": "invalid_request_error",
                                     "code": None}}, status=404)

    def __call__(self, seen: Seen) -> Reply:
        if seen.method != "POST" or not seen.path.endswith("/chat/completions"):
            return self.refuse(seen)
        req = seen.json()
        messages = req.get("messages") or []
        answered = any(m.get("role") == "tool" for m in messages)
        call = self.tool_call if req.get("tools") and not answered else None
        with self.lock:
            self.chats.append(req)
            self.log.append(
                f"{self.log_prefix}POST {seen.path} model={req.get('model')} "
                f"stream={req.get('stream')} tools={len(req.get('tools') or [])} "
                f"roles={[m.get('role') for m in messages]}"
                f" -> {'tool call ' + call[0] if call else repr(self.text)}")
        return chat_answer(req, self.text if call is None else None, call, self.completion_id)


def chat_answer(req: dict[str, Any], text: str | None, call: tuple[str, dict[str, Any]] | None,
                completion_id: str) -> Reply:
    """An OpenAI chat answer of ``text`` or ``call`` (a fresh call id; streamed, its arguments
    come in two pieces), streamed (with a usage chunk when asked) when ``req`` asks for a
    stream."""
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
        return json_reply({"id": completion_id, "object": "chat.completion", "created": 1,
                           "model": req.get("model"), "usage": usage,
                           "choices": [{"index": 0, "message": message,
                                        "finish_reason": finish}]})
    head = {"id": completion_id, "object": "chat.completion.chunk", "created": 1,
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


# The gateway, as a user starts it, and the CLI in front of it.

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ClientSetup:
    """A test's fakes, gateway and temporary directory; a test file subclasses it with its
    upstreams and sets ``client``, the CLI's name in reports."""
    #: what the fake upstream logs (anything with a ``log: list[str]``)
    script: Any
    tmp: Path
    port: int = field(init=False, default_factory=free_port)
    client: ClassVar[str] = "client"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def gateway_log(self) -> Path:
        return self.tmp / "gateway.log"

    def report(self, done: subprocess.CompletedProcess | None = None) -> str:
        """What a failure says: the upstream requests, the gateway's output and, after a run,
        the CLI's exit code and output."""
        parts = ["upstream requests:", *("  " + line for line in self.script.log),
                 "gateway output:", self.gateway_log.read_text(errors="replace")]
        if done is not None:
            parts += [f"{self.client} exit {done.returncode}", f"{self.client} stdout:",
                      done.stdout, f"{self.client} stderr:", done.stderr]
        return "\n".join(parts)

    @contextmanager
    def gateway(self, conf: Path) -> Iterator[None]:
        """``python -m uniapi_trio.cli serve --config conf`` on ``port``, its output to
        ``gateway_log``, once ``/healthz`` answers; stopped (SIGTERM, then kill) at the end."""
        with open(self.gateway_log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "uniapi_trio.cli", "serve",
                                     "--config", str(conf), "--port", str(self.port)],
                                    stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                        assert r.status == 200
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        pytest.fail("the gateway did not start:\n" + self.report(),
                                    pytrace=False)
                    time.sleep(0.05)
            yield
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def run_client(setup: ClientSetup, command: list[str], env: Mapping[str, object],
               what: str) -> subprocess.CompletedProcess:
    """``command`` in ``setup.tmp / "work"``, ``HOME`` at ``setup.tmp / "home"`` (nothing of
    the user's), ``env`` over a bare environment, no input; the test fails with the report
    when it takes more than ``CLIENT_TIMEOUT`` seconds (``what`` names the command)."""
    home, work = setup.tmp / "home", setup.tmp / "work"
    home.mkdir(exist_ok=True)
    work.mkdir(exist_ok=True)
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "CI": "true",
            "TERM": "dumb", "NO_COLOR": "1", **env}
    try:
        return subprocess.run(command, env={k: str(v) for k, v in full.items()}, cwd=work,
                              check=False, capture_output=True, text=True,
                              timeout=CLIENT_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        done = subprocess.CompletedProcess(e.cmd, -1, _text(e.stdout), _text(e.stderr))
        pytest.fail(f"{what} did not finish in {CLIENT_TIMEOUT} s\n" + setup.report(done),
                    pytrace=False)


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else data or ""
