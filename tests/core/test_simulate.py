"""``uniapi simulate`` (uniapi_core/simulate.py): the config's real routing against built-in
fake upstreams, on a virtual clock. Every engine's healthy answer is read by its real decoder,
stream and not; each fault kind has its client-visible outcome; failover, cooldowns, key
benches and timeouts are the router's; the same inputs give the same report; a bad script is
refused with its path and line, and any text is a script or a ``ScriptError`` (hypothesis)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from uniapi_core.config import load_config
from uniapi_core.simulate import ScriptError, load_script, render_report, simulate

_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = _KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                         serialization.NoEncryption()).decode().replace("\n", "\\n")

ENGINES = {
    "openai": "base_url: https://api.openai.com/v1/chat/completions\n    api: sk-o",
    "azure": "base_url: https://x.openai.azure.com\n    engine: azure\n    api: az",
    "anthropic": "base_url: https://api.anthropic.com/v1/messages\n    api: sk-ant",
    "gemini": "base_url: https://generativelanguage.googleapis.com/v1beta\n    api: AIza",
    "cohere": "base_url: https://api.cohere.com/v2/chat\n    engine: cohere\n    api: co",
    "cloudflare": "cf_account_id: acct1\n    api: cf",
    "bedrock": ("engine: aws\n    aws_access_key: AKIDEXAMPLE\n"
                "    aws_secret_key: wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY\n"
                "    aws_region: us-east-1"),
    "vertex": ("engine: vertex\n    project_id: proj-1\n"
               "    client_email: svc@proj-1.iam.gserviceaccount.com\n"
               f"    private_key: '{PEM}'"),
}
UPSTREAM_MODEL = {"bedrock": "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                  "vertex": "claude-sonnet-4@20250514", "cloudflare": "'@cf/meta/llama-3-8b'"}


def every_engine() -> str:
    blocks = []
    for name, body in ENGINES.items():
        model = UPSTREAM_MODEL.get(name, "vendor-model")
        blocks.append(f"  - provider: {name}\n    {body}\n    model:\n      - {model}: {name}")
    blocks.append(f"  - provider: vertex-gemini\n    {ENGINES['vertex']}\n"
                  "    model:\n      - gemini-2.5-flash: vertex-gemini")
    return "providers:\n" + "\n".join(blocks) + "\napi_keys:\n  - api: sk-client\n"


FAILOVER = """
providers:
  - provider: primary
    base_url: https://api.openai.com/v1/chat/completions
    api: [sk-p1, sk-p2]
    model: [gpt-4o]
  - provider: claude
    base_url: https://api.anthropic.com/v1/messages
    api: sk-ant
    model:
      - claude-sonnet-4-5: gpt-4o
  - provider: gem
    base_url: https://generativelanguage.googleapis.com/v1beta
    api: AIza
    model:
      - gemini-2.5-flash: gpt-4o
api_keys:
  - api: sk-client
    model: [gpt-4o]
    preferences:
      SCHEDULING_ALGORITHM: fixed_priority
preferences:
  cooldown_period: 30
  model_timeout:
    default: 5
"""


def run(config: str, script: str) -> list:
    return simulate(load_config(config).config, load_script(script))


@pytest.mark.parametrize("stream", [False, True])
def test_every_engine_answers_in_its_own_protocol(stream):
    names = [*ENGINES, "vertex-gemini"]
    script = "requests:\n" + "".join(
        f"  - model: {n}\n    stream: {'true' if stream else 'false'}\n" for n in names)
    reports = run(every_engine(), script)
    for name, r in zip(names, reports):
        assert (r.status, [t.outcome for t in r.tries]) == (200, ["ok"]), (name, r)
        assert r.answer == f"Simulated answer from {name}.", (name, r.answer)


def test_failover_cooldowns_and_recovery_follow_the_router():
    reports = run(FAILOVER, """
requests:
  - model: gpt-4o
    count: 4
    every: 10
  - model: gpt-4o
    at: 45
    count: 2
    stream: true
faults:
  - provider: primary
    fault: 500
    until: 20
  - provider: claude
    fault: timeout
    until: 15
""")
    first = reports[0]
    assert [(t.provider, t.outcome, t.fault) for t in first.tries] == [
        ("primary", "status:500", "500"), ("claude", "timeout:504", "timeout"),
        ("gem", "ok", "ok")]
    assert first.status == 200 and first.seconds == pytest.approx(5.201, abs=0.01)
    assert first.cooling == ["primary/gpt-4o for 24.9 s", "claude/gpt-4o for 29.9 s"]
    # both cooling: the next three go straight to gem
    assert [[t.provider for t in r.tries] for r in reports[1:4]] == [["gem"]] * 3
    assert reports[3].cooling == ["claude/gpt-4o for 5.0 s"]
    # both recovered by 45 s; the two keys of primary take turns
    assert [(r.tries[0].provider, r.tries[0].key) for r in reports[4:]] == [
        ("primary", 1), ("primary", 0)]
    text = render_report(reports)
    assert "try 2: claude key #0 -> timeout:504 after 5.000 s [fault: timeout]" in text
    assert "6 requests: 6 × 200" in text


def test_a_429_benches_the_key_and_the_other_key_serves():
    """With ``api_key_cooldown_period`` (the uni-api rule: no period, no bench), a 429 on key
    0 benches it and key 1 serves the rest."""
    benching = FAILOVER.replace("    api: [sk-p1, sk-p2]\n", "    api: [sk-p1, sk-p2]\n"
                                "    preferences:\n      api_key_cooldown_period: 20\n")
    assert benching != FAILOVER
    reports = run(benching, """
requests:
  - model: gpt-4o
    count: 3
faults:
  - provider: primary
    key: 0
    fault: 429
    retry_after: 20
""")
    keys = [[(t.provider, t.key, t.outcome) for t in r.tries] for r in reports]
    assert ("primary", 0, "status:429") in keys[0] + keys[1]
    benched = [c for r in reports for c in r.cooling if "key #0 benched" in c]
    assert benched, reports
    assert all(r.status == 200 for r in reports)
    assert all(t[1] == 1 for r in keys[1:] for t in r if t[0] == "primary" and t[2] == "ok")


@pytest.mark.parametrize("fault,stream,expect", [
    ("400", False, (400, ["status:400"])),  # the request's fault: no failover
    ("reset", False, (200, None)),
    ("refused", False, (200, None)),
    ("garbage", False, (200, None)),
    ("truncate", False, (200, None)),
    ("stall", False, (200, None)),
])
def test_each_fault_has_its_outcome(fault, stream, expect):
    reports = run(FAILOVER, f"""
requests:
  - model: gpt-4o
    stream: {'true' if stream else 'false'}
faults:
  - provider: primary
    fault: {fault}
""")
    r = reports[0]
    status, outcomes = expect
    assert r.status == status, r
    assert r.tries[0].fault == fault
    if outcomes is not None:
        assert [t.outcome for t in r.tries] == outcomes
    else:  # failed over to the next channel, which answered
        assert r.tries[0].outcome != "ok" and r.tries[-1].outcome == "ok", r


@pytest.mark.parametrize("fault", ["stall", "truncate"])
def test_a_stream_broken_after_its_first_bytes_ends_with_an_in_stream_error(fault):
    r = run(FAILOVER, f"""
requests:
  - model: gpt-4o
    stream: true
faults:
  - provider: primary
    fault: {fault}
""")[0]
    assert r.status == 200 and "in-stream error" in r.answer, r


def test_every_channel_failing_gives_the_client_an_error_and_nothing_hangs():
    reports = run(FAILOVER, """
requests:
  - model: gpt-4o
    count: 3
    stream: true
faults:
  - provider: "*"
    fault: 503
""")
    # a 5xx from the last channel is the client's 502 (the error table's rule)
    assert [r.status for r in reports] == [502, 502, 502], reports
    assert [[t.provider for t in r.tries] for r in reports] == [["primary", "claude",
                                                                 "gem"]] * 3
    assert not any(r.hung for r in reports)


def test_the_same_script_gives_the_same_report():
    script = """
seed: 3
requests:
  - model: gpt-4o
    count: 30
    every: 0.5
faults:
  - provider: primary
    fault: 502
    share: 0.5
"""
    one = render_report(run(FAILOVER, script))
    assert one == render_report(run(FAILOVER, script))
    assert "502" in one


@pytest.mark.parametrize("text,where", [
    ("", "empty"),
    ("faults: []\n", "requests"),
    ("requests:\n  - count: 2\n", "requests[0] (line 2): needs a model"),
    ("requests:\n  - model: m\n    count: 0\n", "requests[0].count (line 3)"),
    ("requests:\n  - model: m\nfaults:\n  - fault: 600\n", "faults[0].fault (line 4)"),
    ("requests:\n  - model: m\nfaults:\n  - share: 2\n", "faults[0].share (line 4)"),
    ("requests:\n  - model: m\n    colour: red\n", "requests[0].colour (line 3): unknown"),
    ("requests: [\n", "not YAML"),
])
def test_a_bad_script_is_refused_with_where(text, where):
    with pytest.raises(ScriptError) as caught:
        load_script(text, "f.yaml")
    assert where in str(caught.value), str(caught.value)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200) | st.builds(
    lambda keys, vals: "\n".join(f"{k}: {v}" for k, v in zip(keys, vals)),
    st.lists(st.sampled_from(["requests", "faults", "seed", "latency", "- model", "  count",
                              "  fault", "  share"]), max_size=6),
    st.lists(st.sampled_from(["1", "-1", "x", "[]", "{}", "[{model: m}]", "null", "2.5",
                              "[{fault: 500}]", "&a [*a]"]), max_size=6)))
def test_any_text_is_a_script_or_a_script_error(text):
    try:
        load_script(text)
    except ScriptError:
        pass


def test_the_command_prints_the_report_and_refuses_a_bad_script(tmp_path):
    (tmp_path / "api.yaml").write_text(FAILOVER)
    (tmp_path / "faults.yaml").write_text(
        "requests:\n  - model: gpt-4o\nfaults:\n  - provider: primary\n    fault: 500\n")
    (tmp_path / "bad.yaml").write_text("requests:\n  - model: gpt-4o\n    count: x\n")
    cmd = [sys.executable, "-m", "uniapi_trio.cli", "simulate", "--config",
           str(tmp_path / "api.yaml")]
    ok = subprocess.run(cmd + ["--faults", str(tmp_path / "faults.yaml")],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "try 1: primary key #0 -> status:500" in ok.stdout
    assert "client got 200" in ok.stdout
    as_json = subprocess.run(cmd + ["--faults", str(tmp_path / "faults.yaml"), "--json"],
                             capture_output=True, text=True, timeout=60)
    assert json.loads(as_json.stdout.splitlines()[0])["status"] == 200
    bad = subprocess.run(cmd + ["--faults", str(tmp_path / "bad.yaml")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "requests[0].count (line 3)" in bad.stderr, bad.stderr
    missing = subprocess.run(cmd + ["--faults", str(tmp_path / "none.yaml")],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "cannot read the fault script" in missing.stderr
