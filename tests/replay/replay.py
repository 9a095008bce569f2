"""Run one recorded case against a live gateway and describe what happened, byte for byte.

A case (one JSON file in ``tests/replay/corpus/``) is self-contained input:

- ``config``: the api.yaml text, with ``{up0}``, ``{up1}`` for the fake upstreams' base URLs and
  ``{vertex_private_key}`` for a service-account key made fresh in each process;
- ``upstreams``: per fake upstream, its scripted replies in order (status, headers, the body
  pieces as sent, ``cut_after`` for a connection cut mid-body, ``chunked``);
- ``client_request``: the raw HTTP/1.1 bytes the client sends (always ``Connection: close``);
- ``discover`` and ``settings``: passed to ``tests.harness.run_gateway``.

and the recorded outcome:

- ``upstream_seen``: per fake upstream, each request it received: method, target, headers
  (``name: value``, lower-cased names, sorted) and body bytes;
- ``response``: the exact bytes the client read until the gateway closed the connection
  (status line, headers in the order and case sent, chunk framing, body).

Determinism, made rather than masked where possible:

- request ids, response ids and tool-call ids come from the ``random.Random(1)`` that
  ``run_gateway`` gives the Gateway; each case runs on a fresh gateway, so every case starts from
  the same entropy state;
- the wall clock (``created``, SigV4's ``x-amz-date``, the Vertex JWT's ``iat``/``exp``) is fixed:
  the transports take it from ``serve(wall=...)``, and ``run_gateway`` is given one returning
  ``FIXED_WALL``. As a net for anything that reads the clock another way, ``time.time`` is also
  replaced for the duration of a case. Deadlines use monotonic clocks, which are left alone.

Normalizations (applied identically when recording and when replaying):

1. the fake upstreams' and the gateway's ports: ``127.0.0.1:<port>`` becomes ``127.0.0.1:{up0}``,
   ``127.0.0.1:{up1}``, ``127.0.0.1:{gateway}`` in every stored byte string (they are ephemeral);
2. SigV4 ``Signature=<hex>`` covers the Host header, hence the port: it is verified with botocore
   (the declared test oracle) over the headers it lists as signed and replaced by
   ``Signature=<valid>`` (or ``<INVALID ...>``, which then fails the comparison);
3. the Vertex token request's JWT ``assertion`` carries the token URI (port) and an RS256
   signature by the per-process key: the form is stored decoded, one ``name=value`` line per
   field, the assertion as its decoded header and claims (port normalized) plus
   ``<valid signature>`` once verified with that key;
4. fallback only: a JSON ``"created":`` integer within a day of the real clock is rewritten to
   ``FIXED_WALL``. With the clock fixed this never fires; it keeps the corpus valid if a
   redesign reads wall time some way the patch does not reach (same byte length either way).

Nothing else is masked: ``Date`` is not sent by the gateway, ``content-length`` is deterministic.

Re-recording (only when a change is *meant* to change bytes, and say so in the commit):

    python -m tests.replay.record            # every case; both backends must agree, twice
    python -m tests.replay.record claude-    # only cases whose name starts with claude-
    python -m tests.replay.record --check    # write nothing, list the cases that differ

then review ``git diff tests/replay/corpus`` line by line: every changed line is a change some
client or upstream will see. Never re-record to make a failure go away that nobody meant. To
record from a committed state rather than a working tree in flux, record in a worktree:

    git worktree add /tmp/replay-base HEAD && cp -r tests/replay /tmp/replay-base/tests/
    (cd /tmp/replay-base && PYTHONPATH=$PWD python -m tests.replay.record)
    cp /tmp/replay-base/tests/replay/corpus/*.json tests/replay/corpus/
    git worktree remove --force /tmp/replay-base

Case definitions (inputs) live in ``tests/replay/cases.py``; the recorder copies them into each
corpus file, so editing them, or ``tests/data``, changes nothing until a case is re-recorded.
A new case is added by adding it there and recording only it (``record <its name>``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from tests.fakes.upstream import FakeUpstream, Reply
from tests.harness import run_gateway

CORPUS = Path(__file__).resolve().parent / "corpus"
FIXED_WALL = 1735689600.25  # 2025-01-01T00:00:00.25Z
AWS_ACCESS_KEY = "AKIDEXAMPLE"
AWS_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

# -- bytes in JSON -------------------------------------------------------------------------------


def enc(data: bytes) -> Any:
    """UTF-8 text as a list of lines (readable diffs); anything else as base64."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode()}
    return text.splitlines(keepends=True)


def dec(value: Any) -> bytes:
    if isinstance(value, dict):
        return base64.b64decode(value["base64"])
    return "".join(value).encode("utf-8")


# -- scripted replies ----------------------------------------------------------------------------


def reply_to_json(r: Reply) -> dict[str, Any]:
    return {"status": r.status, "headers": [f"{k}: {v}" for k, v in r.headers],
            "pieces": [enc(p) for p in r.pieces], "cut_after": r.cut_after,
            "chunked": r.chunked}


def reply_from_json(d: dict[str, Any]) -> Reply:
    return Reply(status=d["status"], headers=[tuple(h.split(": ", 1)) for h in d["headers"]],
                 pieces=[dec(p) for p in d["pieces"]], cut_after=d["cut_after"],
                 chunked=d["chunked"])


# -- the fixed wall clock ------------------------------------------------------------------------

_clock_lock = threading.Lock()  # one patched clock at a time
_real_time = time.time


@contextlib.contextmanager
def fixed_wall_clock() -> Iterator[None]:
    with _clock_lock:
        real = time.time
        time.time = lambda: FIXED_WALL  # type: ignore[assignment]
        try:
            yield
        finally:
            time.time = real  # type: ignore[assignment]


# -- the per-process Vertex service account ------------------------------------------------------

_vertex: dict[str, Any] = {}


def vertex_key() -> Any:
    if not _vertex:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _vertex["key"] = key
        _vertex["pem"] = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()).decode()
    return _vertex


# -- normalization -------------------------------------------------------------------------------


def _replace_ports(data: bytes, ports: dict[int, str]) -> bytes:
    for port, name in ports.items():
        data = data.replace(b"127.0.0.1:%d" % port, b"127.0.0.1:{%s}" % name.encode())
    return data


_CREATED = re.compile(rb'("created"\s*:\s*)(\d{10})(?!\d)')


def _created_fallback(data: bytes) -> bytes:
    real = _real_time()

    def fix(m: re.Match[bytes]) -> bytes:
        if abs(int(m[2]) - real) < 86400:
            return m[1] + b"%d" % int(FIXED_WALL)
        return m[0]
    return _CREATED.sub(fix, data)


def normalize(data: bytes, ports: dict[int, str]) -> bytes:
    return _created_fallback(_replace_ports(data, ports))


def _sigv4_checked(seen: Any, port: int) -> str:
    """The authorization header with its signature replaced by whether botocore agrees."""
    auth = seen.headers["authorization"]
    m = re.search(r"SignedHeaders=([^,]+), Signature=([0-9a-f]+)$", auth)
    if not m:
        return auth
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    scope = re.search(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request", auth)
    region, service = (scope[1], scope[2]) if scope else ("us-east-1", "bedrock")
    req = AWSRequest(method=seen.method, url=f"http://127.0.0.1:{port}{seen.path}",
                     data=seen.body)
    for name in m[1].split(";"):
        req.headers[name] = seen.headers.get(name, "")
    req.context["timestamp"] = seen.headers.get("x-amz-date", "")
    signer = SigV4Auth(Credentials(AWS_ACCESS_KEY, AWS_SECRET_KEY), service, region)
    expected = signer.signature(signer.string_to_sign(req, signer.canonical_request(req)), req)
    verdict = "<valid>" if expected == m[2] else f"<INVALID {m[2]}>"
    return auth[:m.start(2)] + verdict


def _jwt_checked(body: bytes, ports: dict[int, str]) -> bytes:
    """A token request's form, decoded to one ``name=value`` line per field, with the
    assertion's header and claims decoded and its signature verified."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    def unb64(text: str) -> bytes:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    form = parse_qsl(body.decode(), keep_blank_values=True)
    out = []
    for name, value in form:
        if name == "assertion" and value.count(".") == 2:
            head, claims, sig = value.split(".")
            try:
                vertex_key()["key"].public_key().verify(
                    unb64(sig), f"{head}.{claims}".encode(), padding.PKCS1v15(),
                    hashes.SHA256())
                verdict = "<valid signature>"
            except Exception as exc:  # noqa: BLE001 - recorded, so the comparison fails
                verdict = f"<INVALID signature {exc!r}>"
            value = " . ".join([unb64(head).decode(), unb64(claims).decode(), verdict])
        out.append(f"{name}={value}\n")
    return _replace_ports("".join(out).encode(), ports)


def describe_seen(seen: Any, port: int, ports: dict[int, str]) -> dict[str, Any]:
    headers = dict(seen.headers)
    if headers.get("authorization", "").startswith("AWS4-HMAC-SHA256"):
        headers["authorization"] = _sigv4_checked(seen, port)
    body = seen.body
    if headers.get("content-type") == "application/x-www-form-urlencoded" and \
            b"assertion=" in body:
        body = _jwt_checked(body, ports)
    else:
        body = normalize(body, ports)
    return {"method": seen.method,
            "target": normalize(seen.path.encode(), ports).decode(),
            "headers": sorted(f"{k}: {normalize(v.encode(), ports).decode()}"
                              for k, v in headers.items()),
            "body": enc(body)}


# -- running a case ------------------------------------------------------------------------------


def run_case(case: dict[str, Any], backend: str) -> dict[str, Any]:
    """Replay ``case`` on ``backend``; return ``upstream_seen`` and ``response`` as recorded."""
    ups = [FakeUpstream() for _ in case["upstreams"]]
    try:
        for up, replies in zip(ups, case["upstreams"]):
            up.replies.extend(reply_from_json(r) for r in replies)
        fill = {f"up{i}": up.url for i, up in enumerate(ups)}
        if "{vertex_private_key}" in case["config"]:
            fill["vertex_private_key"] = vertex_key()["pem"].replace("\n", "\\n")
        config = case["config"]
        for name, value in fill.items():
            config = config.replace("{" + name + "}", value)
        ports = {up.port: f"up{i}" for i, up in enumerate(ups)}
        with fixed_wall_clock():
            with run_gateway(config, backend=backend, discover=case.get("discover", False),
                             wall=lambda: FIXED_WALL, **case.get("settings", {})) as gw:
                ports[gw.port] = "gateway"
                raw = gw.raw(dec(case["client_request"]))
        seen = [[describe_seen(s, up.port, ports) for s in up.seen] for up in ups]
    finally:
        for up in ups:
            up.close()
    return {"upstream_seen": seen, "response": enc(normalize(raw, ports))}


def load_cases() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text(encoding="utf-8"))
            for p in sorted(CORPUS.glob("*.json"))}


def dump_case(case: dict[str, Any]) -> str:
    return json.dumps(case, indent=1, ensure_ascii=False) + "\n"
