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

import json
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.cli_clients import ChatScript, ClientSetup, NpmCli, run_client
from tests.fakes.upstream import FakeUpstream

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

#: ``claude --version`` says ``2.1.332 (Claude Code)``
CLAUDE_CODE = NpmCli(
    package=PACKAGE, version=CLAUDE_CODE_VERSION, binary="claude",
    cache_variable="UNIAPI_CLAUDE_CODE_DIR", cache_name="claude-code",
    pinned=lambda said: said.startswith(CLAUDE_CODE_VERSION + " "),
    npm_options=("--ignore-scripts=false",),
    needs="the package's postinstall script puts the native binary in place, so npm must "
          "not ignore scripts")


@pytest.fixture(scope="session")
def claude() -> Path:
    """The pinned ``claude`` binary, installed into the cache directory when it is not there."""
    return CLAUDE_CODE.install()


# The fake upstream (OpenAI chat), the gateway, and claude -p in front of it.

@dataclass
class Setup(ClientSetup):
    script: ChatScript
    up: FakeUpstream
    client = "claude"


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    script = ChatScript(text="PONG-" + secrets.token_hex(4), completion_id="chatcmpl-cc")
    up = FakeUpstream(handler=script)
    renames = "\n".join(f"      - {UPSTREAM_MODEL}: {name}"
                        for name in (MAIN_MODEL, SMALL_MODEL, DEFAULT_MODEL))
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


def run_claude(claude: Path, setup: Setup, prompt: str, *flags: str,
               auth: str = "ANTHROPIC_API_KEY") -> subprocess.CompletedProcess:
    env = {
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
    }
    return run_client(setup, [str(claude), "-p", prompt, "--output-format", "text", *flags],
                      env, "claude -p")


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
