"""``uniapi simulate``: a config's routing run against built-in fake upstreams under a fault
script, on a virtual clock, so an operator can see failover before deploying it.

Nothing is faked but the upstreams and the clock: every request is a real HTTP/1.1 request
fed to a real ``connection.Connection`` of a ``Gateway`` built from the config, so renames,
schedulers, key pools, retries, cooldowns, benches, timeouts and rate limits are the ones
that serve. The loop here plays the transport: it keeps one timer per connection
(``next_deadline``), answers each ``StartUpstream`` from the fault script, and moves the
clock from one event to the next, so a 60 s cooldown costs no waiting. The same config,
script and seed give the same report, byte for byte.

The fault script (YAML; docs/operations.md, "Simulating failover")::

    seed: 7                  # random/lottery scheduling and fault shares (default 0)
    latency: 0.1             # how long a healthy upstream takes (s, default 0.1)
    requests:                # the client traffic
      - model: gpt-4o        # required
        count: 20            # default 1
        at: 0                # when the first is sent (s, default 0)
        every: 1             # between two (s, default 1)
        key: sk-...          # the client key (default: the config's first)
        stream: false        # default false
    faults:                  # the first rule that matches an attempt decides it
      - provider: primary    # a provider name, or "*"
        fault: 500           # ok | a status 400-599 | reset | refused | timeout | stall |
                             # truncate | garbage
        from: 0              # the window it holds in (s; default always)
        until: 30
        key: 0               # only the provider's key of this index (default any)
        share: 1.0           # the share of matching attempts it hits (default 1)
        delay: 0             # extra time before the first byte (s)
        retry_after: 5       # a Retry-After header (with 429 or 503)

A fault's meaning: a status answers with it and a vendor-shaped error body; ``reset`` drops
the connection before an answer, ``refused`` fails the connect; ``timeout`` never answers;
``stall`` sends the head and half the body, then nothing; ``truncate`` sends half and ends;
``garbage`` answers 200 with an HTML page. An attempt no rule matches is answered well, in
the provider's own protocol (OpenAI, Anthropic, Gemini, Vertex, Bedrock, Cohere, Cloudflare),
after ``latency`` s. A Vertex token POST is answered with a token.
"""

from __future__ import annotations

import base64
import heapq
import json
import math
import random
import zlib
from collections.abc import Iterable
from typing import Any

import attrs
import h11
import yaml

from .config.model import Config
from .connection import Connection
from .events import (
    ClientData,
    Close,
    DeadlineReached,
    Fetch,
    FetchDone,
    FetchResult,
    Served,
    StartUpstream,
    StopUpstream,
    UpstreamData,
    UpstreamEnded,
    UpstreamFailed,
    UpstreamHead,
    Write,
)
from .fronts.gemini import GeminiStream, gemini_response_from_chat
from .fronts.messages import MessagesStream, messages_response_from_chat
from .gateway import Gateway
from .vendors.engine import detect_engine

__all__ = ["Script", "RequestSpec", "FaultRule", "ScriptError", "load_script", "simulate",
           "Report", "render_report", "FAULTS"]

#: what a fault rule may say besides a status
FAULTS = ("ok", "reset", "refused", "timeout", "stall", "truncate", "garbage")
#: the simulated wall clock at virtual time 0 (2026-01-01T00:00:00Z)
EPOCH = 1_767_225_600
#: a request still unanswered this long after it was sent is reported as hung (a bug)
HUNG_AFTER = 3600.0
_MAX_REQUESTS = 10_000
#: events one request may take before it is reported hung (a connection that never settles)
MAX_STEPS = 100_000


class ScriptError(ValueError):
    """A fault script that cannot be run; the text names the place (``where: line N``)."""


@attrs.frozen
class RequestSpec:
    model: str
    count: int = 1
    at: float = 0.0
    every: float = 1.0
    key: str | None = None
    stream: bool = False


@attrs.frozen
class FaultRule:
    provider: str = "*"
    fault: str = "ok"  # FAULTS or a status as text
    start: float = float("-inf")
    until: float = float("inf")
    key: int | None = None
    share: float = 1.0
    delay: float = 0.0
    retry_after: float | None = None

    def matches(self, provider: str | None, key: int | None, now: float) -> bool:
        return ((self.provider == "*" or self.provider == provider)
                and (self.key is None or self.key == key)
                and self.start <= now < self.until)


@attrs.frozen
class Script:
    requests: tuple[RequestSpec, ...]
    faults: tuple[FaultRule, ...] = ()
    seed: int = 0
    latency: float = 0.1


# -- the script's file ---------------------------------------------------------------------------


def _where(source: str, path: str, node: yaml.Node) -> str:
    return f"{source}: {path} (line {node.start_mark.line + 1})"


def _number(source: str, path: str, node: yaml.Node, *, low: float = 0.0,
            integer: bool = False) -> Any:
    value = yaml.safe_load(yaml.serialize(node)) if isinstance(node, yaml.ScalarNode) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and (
            isinstance(value, int) or not integer) and math.isfinite(value) and value >= low:
        return value
    kind = "an integer" if integer else "a number"
    raise ScriptError(f"{_where(source, path, node)}: must be {kind} ≥ {low:g}")


def _string(source: str, path: str, node: yaml.Node) -> str:
    if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:str" or \
            not node.value:
        raise ScriptError(f"{_where(source, path, node)}: must be a non-empty string")
    return str(node.value)


def _fields(source: str, path: str, node: yaml.Node, known: Iterable[str]
            ) -> dict[str, tuple[str, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise ScriptError(f"{_where(source, path, node)}: must be a mapping")
    out: dict[str, tuple[str, yaml.Node]] = {}
    for k, v in node.value:
        name = str(k.value)
        where = f"{path}.{name}" if path else name
        if name not in known:
            raise ScriptError(f"{_where(source, where, k)}: unknown field (known: "
                              f"{', '.join(known)})")
        out[name] = (where, v)
    return out


def _items(source: str, path: str, node: yaml.Node) -> list[tuple[str, yaml.Node]]:
    if not isinstance(node, yaml.SequenceNode):
        raise ScriptError(f"{_where(source, path, node)}: must be a list")
    return [(f"{path}[{i}]", item) for i, item in enumerate(node.value)]


def _request(source: str, path: str, node: yaml.Node) -> RequestSpec:
    f = _fields(source, path, node, ("model", "count", "at", "every", "key", "stream"))
    if "model" not in f:
        raise ScriptError(f"{_where(source, path, node)}: needs a model")
    kw: dict[str, Any] = {"model": _string(source, *f["model"])}
    if "count" in f:
        kw["count"] = _number(source, *f["count"], low=1, integer=True)
    for name in ("at", "every"):
        if name in f:
            kw[name] = float(_number(source, *f[name]))
    if "key" in f:
        kw["key"] = _string(source, *f["key"])
    if "stream" in f:
        where, v = f["stream"]
        if not isinstance(v, yaml.ScalarNode) or v.value not in ("true", "false"):
            raise ScriptError(f"{_where(source, where, v)}: must be true or false")
        kw["stream"] = v.value == "true"
    return RequestSpec(**kw)


def _fault(source: str, path: str, node: yaml.Node) -> FaultRule:
    f = _fields(source, path, node, ("provider", "fault", "from", "until", "key", "share",
                                     "delay", "retry_after"))
    kw: dict[str, Any] = {}
    if "provider" in f:
        kw["provider"] = _string(source, *f["provider"])
    if "fault" in f:
        where, v = f["fault"]
        text = str(v.value) if isinstance(v, yaml.ScalarNode) else ""
        if text not in FAULTS and not (text.isdigit() and 400 <= int(text) <= 599):
            raise ScriptError(f"{_where(source, where, v)}: must be a status 400-599 or one "
                              f"of {', '.join(FAULTS)}")
        kw["fault"] = text
    if "from" in f:
        kw["start"] = float(_number(source, *f["from"]))
    if "until" in f:
        kw["until"] = float(_number(source, *f["until"]))
    if "key" in f:
        kw["key"] = _number(source, *f["key"], integer=True)
    if "share" in f:
        kw["share"] = float(_number(source, *f["share"]))
        if kw["share"] > 1:
            raise ScriptError(f"{_where(source, *f['share'])}: must be between 0 and 1")
    for name in ("delay", "retry_after"):
        if name in f:
            kw[name] = float(_number(source, *f[name]))
    return FaultRule(**kw)


def load_script(text: str, source: str = "faults.yaml") -> Script:
    """The fault script in ``text`` (module docstring), or ``ScriptError``."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ScriptError(f"{source}: not YAML: {exc}") from None
    if root is None:
        raise ScriptError(f"{source}: empty; it needs at least `requests:`")
    f = _fields(source, "", root, ("seed", "latency", "requests", "faults"))
    if "requests" not in f:
        raise ScriptError(f"{_where(source, 'requests', root)}: missing; say which requests "
                          f"to send")
    requests = tuple(_request(source, p, n) for p, n in _items(source, *f["requests"]))
    if not requests:
        raise ScriptError(f"{_where(source, *f['requests'])}: needs at least one request")
    if sum(r.count for r in requests) > _MAX_REQUESTS:
        raise ScriptError(f"{_where(source, *f['requests'])}: more than {_MAX_REQUESTS} "
                          f"requests")
    faults = tuple(_fault(source, p, n) for p, n in _items(source, *f["faults"])) \
        if "faults" in f else ()
    seed = _number(source, *f["seed"], integer=True) if "seed" in f else 0
    latency = float(_number(source, *f["latency"])) if "latency" in f else 0.1
    return Script(requests, faults, seed, latency)


# -- the fake upstreams --------------------------------------------------------------------------


def _chat_answer(text: str, model: str) -> dict[str, Any]:
    words = len(text.split())
    return {"id": "chatcmpl-simulated", "object": "chat.completion", "created": EPOCH,
            "model": model, "choices": [{"index": 0, "message": {"role": "assistant",
                                                                   "content": text},
                                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 8, "completion_tokens": words,
                      "total_tokens": 8 + words}}


def _chat_chunks(text: str, model: str) -> list[bytes]:
    base = {"id": "chatcmpl-simulated", "object": "chat.completion.chunk", "created": EPOCH,
            "model": model}
    words = text.split(" ")
    out = [dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""},
                                "finish_reason": None}])]
    out += [dict(base, choices=[{"index": 0, "delta": {"content": w if i == 0 else " " + w},
                                 "finish_reason": None}]) for i, w in enumerate(words)]
    out.append(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}],
                    usage={"prompt_tokens": 8, "completion_tokens": len(words),
                           "total_tokens": 8 + len(words)}))
    return [b"data: " + json.dumps(c).encode() + b"\n\n" for c in out]


def _event_frame(payload: bytes) -> bytes:
    """One AWS event-stream message of ``:event-type: chunk`` around ``payload``."""
    headers = b""
    for name, value in ((":event-type", "chunk"), (":content-type", "application/json"),
                        (":message-type", "event")):
        headers += (bytes([len(name)]) + name.encode() + b"\x07"
                    + len(value).to_bytes(2, "big") + value.encode())
    total = 12 + len(headers) + len(payload) + 4
    prelude = total.to_bytes(4, "big") + len(headers).to_bytes(4, "big")
    prelude += zlib.crc32(prelude).to_bytes(4, "big")
    message = prelude + headers + payload
    return message + zlib.crc32(message).to_bytes(4, "big")


def _sse(events: list[tuple[str, dict[str, Any]]]) -> list[bytes]:
    return [f"event: {name}\ndata: {json.dumps(obj)}\n\n".encode() for name, obj in events]


def answer(engine: str, url: str, stream: bool, text: str, model: str
           ) -> tuple[str, list[bytes]]:
    """A healthy answer of ``engine`` (its content type and body pieces) saying ``text``."""
    chat = _chat_answer(text, model)
    chunks = _chat_chunks(text, model)
    claude = engine in ("claude", "aws") or (engine == "vertex" and "anthropic" in url)
    if claude:
        if not stream:
            return "application/json", [json.dumps(messages_response_from_chat(chat, model))
                                        .encode()]
        writer = MessagesStream(model)
        sse = b"".join(writer.feed(c) for c in chunks) + writer.end()
        if engine != "aws":
            return "text/event-stream", [sse]
        events = [line[6:] for line in sse.split(b"\n") if line.startswith(b"data: ")]
        return "application/vnd.amazon.eventstream", [
            _event_frame(json.dumps({"bytes": base64.b64encode(e).decode()}).encode())
            for e in events]
    if engine in ("gemini", "vertex"):
        if not stream:
            return "application/json", [json.dumps(gemini_response_from_chat(chat, model, False))
                                        .encode()]
        sse_mode = "alt=sse" in url
        gem = GeminiStream(model, False, sse=sse_mode)
        body = b"".join(gem.feed(c) for c in chunks) + gem.end()
        return ("text/event-stream" if sse_mode else "application/json"), [body]
    if engine == "cohere":
        usage = {"billed_units": {"input_tokens": 8, "output_tokens": len(text.split())},
                 "tokens": {"input_tokens": 8, "output_tokens": len(text.split())}}
        if not stream:
            return "application/json", [json.dumps({
                "id": "simulated", "finish_reason": "COMPLETE", "usage": usage,
                "message": {"role": "assistant", "content": [{"type": "text",
                                                              "text": text}]}}).encode()]
        return "text/event-stream", _sse(
            [("message-start", {"type": "message-start", "id": "simulated",
                                "delta": {"message": {"role": "assistant"}}}),
             ("content-start", {"type": "content-start", "index": 0,
                                "delta": {"message": {"content": {"type": "text",
                                                                  "text": ""}}}}),
             ("content-delta", {"type": "content-delta", "index": 0,
                                "delta": {"message": {"content": {"text": text}}}}),
             ("content-end", {"type": "content-end", "index": 0}),
             ("message-end", {"type": "message-end",
                              "delta": {"finish_reason": "COMPLETE", "usage": usage}})])
    if engine == "cloudflare":
        if not stream:
            return "application/json", [json.dumps({"result": {"response": text},
                                                    "success": True, "errors": [],
                                                    "messages": []}).encode()]
        return "text/event-stream", [b"data: " + json.dumps({"response": text}).encode()
                                     + b"\n\n", b"data: [DONE]\n\n"]
    if not stream:
        return "application/json", [json.dumps(chat).encode()]
    return "text/event-stream", chunks + [b"data: [DONE]\n\n"]


# -- the run -------------------------------------------------------------------------------------


@attrs.define
class Try:
    provider: str
    key: int | None  # the index of the provider's key it used (None: keyless)
    fault: str
    outcome: str = ""
    latency: float = 0.0


@attrs.define
class Report:
    """One simulated request, as the client and the router saw it."""

    number: int
    sent: float
    model: str
    stream: bool
    tries: list[Try] = attrs.Factory(list)
    status: int = 0
    seconds: float = 0.0
    answer: str = ""  # the text the client got, or the error's message
    cooling: list[str] = attrs.Factory(list)  # what was cooling once it was over
    hung: bool = False

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


class _Client:
    """One request's connection, with its bytes and what the loop knows of it."""

    def __init__(self, report: Report, conn: Connection) -> None:
        self.report = report
        self.conn = conn
        self.received = bytearray()
        self.closed = False
        self.timer = 0  # the generation of its armed timer
        self.faults: list[tuple[str, int | None]] = []  # (fault, key index) per attempt
        self.started: set[int] = set()  # refs of exchanges still running
        self.steps = 0  # events handled: a connection that never settles is reported hung


def _request_bytes(key: str, model: str, stream: bool, number: int) -> bytes:
    body = json.dumps({"model": model, "stream": stream, "messages": [
        {"role": "user", "content": f"Simulated request {number}."}]}).encode()
    return (b"POST /v1/chat/completions HTTP/1.1\r\nhost: simulate\r\n"
            b"authorization: Bearer " + key.encode() + b"\r\n"
            b"content-type: application/json\r\nconnection: close\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def _read_response(raw: bytes, stream: bool) -> tuple[int, str]:
    """The status and, for the report, the answer's text or the error's message."""
    parser = h11.Connection(h11.CLIENT)
    parser.send(h11.Request(method="POST", target="/", headers=[("host", "simulate")]))
    parser.send(h11.EndOfMessage())
    parser.receive_data(raw)
    parser.receive_data(b"")
    status, body = 0, bytearray()
    try:
        while True:
            event = parser.next_event()
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif event is h11.NEED_DATA or isinstance(event, (h11.EndOfMessage,
                                                              h11.ConnectionClosed)):
                break
    except h11.RemoteProtocolError as exc:
        return status, f"(unreadable answer: {exc})"
    return status, _text_of(bytes(body), status, stream)


def _text_of(body: bytes, status: int, stream: bool) -> str:
    if stream and status == 200:
        parts, error = [], ""
        for line in body.decode("utf-8", "replace").splitlines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            try:
                obj = json.loads(line[6:])
            except ValueError:
                continue
            if isinstance(obj.get("error"), dict):
                error = str(obj["error"].get("message", ""))
            for choice in obj.get("choices") or []:
                parts.append((choice.get("delta") or {}).get("content") or "")
        text = "".join(parts)
        return f"{text} [then in-stream error: {error}]" if error else text
    try:
        obj = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")[:200]
    if status >= 400:
        return str((obj.get("error") or {}).get("message", ""))
    try:
        return str(obj["choices"][0]["message"]["content"])
    except (KeyError, IndexError, TypeError):
        return json.dumps(obj)[:200]


def simulate(config: Config, script: Script) -> list[Report]:
    """Run ``script`` against ``config`` (module docstring); one ``Report`` per request, in
    the order they were sent."""
    gateway = Gateway(config, entropy=random.Random(script.seed))
    draw = random.Random(f"faults:{script.seed}")
    providers = {p.provider: p for p in config.providers}
    queue: list[tuple[float, int, _Client, Any]] = []
    seq = 0
    default_key = config.api_keys[0].api if config.api_keys else ""

    def at(when: float, client: _Client, event: Any) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(queue, (when, seq, client, event))

    def arm(client: _Client, now: float) -> None:
        client.timer += 1
        deadline = client.conn.next_deadline()
        if deadline is not None and not client.closed:
            at(max(deadline, now), client, ("timer", client.timer))

    def upstream(client: _Client, action: StartUpstream, now: float) -> None:
        ref = action.ref
        client.started.add(ref)
        if action.channel is None:  # a token POST (Vertex): a token
            body = json.dumps({"access_token": "simulated-token", "expires_in": 3600,
                               "token_type": "Bearer"}).encode()
            at(now + script.latency, client, UpstreamHead(ref, 200, (
                ("content-type", "application/json"),)))
            at(now + script.latency, client, UpstreamData(ref, body))
            at(now + script.latency, client, UpstreamEnded(ref))
            return
        rule = next((r for r in script.faults if r.matches(action.channel, action.key_index,
                                                           now)
                     and (r.share >= 1 or draw.random() < r.share)), None)
        fault = rule.fault if rule is not None else "ok"
        client.faults.append((fault, action.key_index))
        when = now + script.latency + (rule.delay if rule is not None else 0.0)
        if fault == "timeout":
            return
        if fault in ("reset", "refused"):
            at(when, client, UpstreamFailed(ref, "reset" if fault == "reset" else "connect",
                                            f"simulated {fault}"))
            return
        if fault.isdigit():
            headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)
            if rule is not None and rule.retry_after is not None:
                headers += (("retry-after", f"{rule.retry_after:g}"),)
            error = {"error": {"message": f"simulated {fault} from {action.channel}",
                               "type": "simulated", "code": int(fault)}}
            at(when, client, UpstreamHead(ref, int(fault), headers))
            at(when, client, UpstreamData(ref, json.dumps(error).encode()))
            at(when, client, UpstreamEnded(ref))
            return
        if fault == "garbage":
            ctype, pieces = "text/html", [b"<html><body>502 Bad Gateway</body></html>"]
        else:  # a healthy answer in the provider's protocol, maybe cut below
            provider = providers.get(action.channel)
            try:
                sent = json.loads(action.request.body) if action.request.body else {}
            except ValueError:
                sent = {}
            ctype, pieces = answer(detect_engine(provider) if provider is not None else "gpt",
                                   action.request.url, client.report.stream,
                                   f"Simulated answer from {action.channel}.",
                                   str(sent.get("model") or action.channel))
        whole = b"".join(pieces)
        if fault in ("stall", "truncate"):
            pieces = [whole[: len(whole) // 2]]
        at(when, client, UpstreamHead(ref, 200, (("content-type", ctype),)))
        for i, piece in enumerate(pieces):
            at(when + 0.001 * i, client, UpstreamData(ref, piece))
        if fault != "stall":
            at(when + 0.001 * len(pieces), client, UpstreamEnded(ref))

    def perform(client: _Client, actions: list[Any], now: float) -> None:
        for action in actions:
            kind = type(action)
            if kind is Write:
                client.received += action.data
            elif kind is StartUpstream:
                upstream(client, action, now)
            elif kind is StopUpstream:
                client.started.discard(action.ref)
            elif kind is Fetch:
                at(now, client, FetchDone(action.ref, FetchResult(
                    error="uniapi simulate fetches nothing")))
            elif kind is Served:
                record = action.record
                for n, t in enumerate(record.tries):
                    fault, key = client.faults[n] if n < len(client.faults) else ("?", None)
                    client.report.tries.append(Try(t.provider, key, fault, t.outcome,
                                                   round(t.latency, 6)))
            elif kind is Close:
                client.closed = True
                status, text = _read_response(bytes(client.received), client.report.stream)
                report = client.report
                report.status, report.answer = status, text
                report.seconds = round(now - report.sent, 6)
                report.cooling = [f"{p}/{alias} for {end - now:.1f} s" for p, alias, end
                                  in gateway.router.cooldowns.cooling(now)]
                report.cooling += [f"{p} key #{i} benched for {end - now:.1f} s"
                                   for p, _slots, _keys, i, end
                                   in gateway.router.keys.benched(now)]

    reports: list[Report] = []
    number = 0
    for spec in script.requests:
        for i in range(spec.count):
            number += 1
            report = Report(number, spec.at + i * spec.every, spec.model, spec.stream)
            reports.append(report)
            conn = Connection(lambda: gateway, now=report.sent)
            client = _Client(report, conn)
            at(report.sent, client, ("send", spec.key or default_key))
    timer = DeadlineReached()
    while queue:
        now, _, client, event = heapq.heappop(queue)
        if client.closed:
            continue
        if isinstance(event, tuple):
            if event[0] == "timer":
                if event[1] != client.timer:
                    continue  # a timer since re-armed
                event = timer
            elif event[0] == "hung":
                client.report.hung = client.closed = True
                continue
            else:  # ("send", key)
                at(now + HUNG_AFTER, client, ("hung", 0))
                event = ClientData(_request_bytes(event[1], client.report.model,
                                                  client.report.stream, client.report.number))
        elif event.ref not in client.started:
            continue  # an exchange the connection stopped
        elif isinstance(event, (UpstreamEnded, UpstreamFailed)):
            client.started.discard(event.ref)
        client.steps += 1
        if client.steps > MAX_STEPS:
            client.report.hung = client.closed = True
            continue
        perform(client, client.conn.handle(event, now, EPOCH + now), now)
        arm(client, now)
    return reports


# -- the report ----------------------------------------------------------------------------------


def render_report(reports: list[Report]) -> str:
    """The text ``uniapi simulate`` prints: one block per request, then the totals."""
    lines: list[str] = []
    statuses: dict[int, int] = {}
    by_provider: dict[str, dict[str, int]] = {}
    for r in reports:
        kind = "stream" if r.stream else "whole"
        lines.append(f"#{r.number} at {r.sent:g} s: {r.model} ({kind})")
        for n, t in enumerate(r.tries, 1):
            key = f" key #{t.key}" if t.key is not None else ""
            fault = "" if t.fault == "ok" else f" [fault: {t.fault}]"
            lines.append(f"  try {n}: {t.provider}{key} -> {t.outcome} after "
                         f"{t.latency:.3f} s{fault}")
            by_provider.setdefault(t.provider, {}).setdefault(t.outcome, 0)
            by_provider[t.provider][t.outcome] += 1
        if not r.tries and not r.hung:
            lines.append("  no upstream tried")
        if r.hung:
            lines.append(f"  HUNG: no answer within {HUNG_AFTER:g} s (a bug: please report)")
        else:
            text = r.answer if len(r.answer) <= 120 else r.answer[:117] + "..."
            lines.append(f"  client got {r.status} after {r.seconds:.3f} s: {text}")
        statuses[r.status] = statuses.get(r.status, 0) + 1
        if r.cooling:
            lines.append(f"  then cooling: {'; '.join(r.cooling)}")
    lines.append("")
    lines.append(f"{len(reports)} requests: " + ", ".join(
        f"{n} × {s if s else 'hung'}" for s, n in sorted(statuses.items())))
    for provider, outcomes in sorted(by_provider.items()):
        lines.append(f"  {provider}: " + ", ".join(f"{n} {o}" for o, n in
                                                  sorted(outcomes.items())))
    return "\n".join(lines) + "\n"
