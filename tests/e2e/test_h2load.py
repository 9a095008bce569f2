"""R7's h2load smoke: ``h2load -n 2000 -c 4 -m 10`` over h2c through the gateway, 0 failed.

h2load comes from Debian's nghttp2-client. ``.ci/run`` installs it when it is missing and sets
``CI``, and under ``CI`` a missing h2load fails the test instead of skipping it: a skipped
interop test proves nothing. On a developer's machine without it the test is skipped."""

from __future__ import annotations

import re
import shutil
import os
import subprocess

import pytest

from tests.e2e.test_chat import COMPLETION, KEY, MESSAGES, config
from tests.fakes.upstream import json_reply
from tests.harness import run_gateway

H2LOAD = shutil.which("h2load")


def test_h2load_smoke_has_no_failures(backend, up, tmp_path):
    if H2LOAD is None:
        reason = "h2load (Debian nghttp2-client) is not installed"
        if os.environ.get("CI"):
            pytest.fail(reason + "; .ci/run installs it")
        pytest.skip(reason)
    up.handler = lambda seen: json_reply(COMPLETION)
    body = tmp_path / "body.json"
    body.write_text(f'{{"model": "gpt-4o", "messages": {MESSAGES!r}}}'.replace("'", '"'))
    with run_gateway(config(up), backend=backend) as gw:
        out = subprocess.run(
            [H2LOAD, "-n", "2000", "-c", "4", "-m", "10", "-d", str(body),
             "-H", f"authorization: Bearer {KEY}", "-H", "content-type: application/json",
             f"{gw.url}/v1/chat/completions"],
            capture_output=True, text=True, timeout=120).stdout
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored", out)
    assert m, out
    total, _, done, succeeded, failed, errored = map(int, m.groups())
    status = re.search(r"status codes: (\d+) 2xx", out)
    assert (total, done, succeeded, failed, errored) == (2000, 2000, 2000, 0, 0), out
    assert status and int(status.group(1)) == 2000, out
    assert len(up.seen) == 2000
