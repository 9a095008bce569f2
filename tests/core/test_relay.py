"""The relay state machine, driven by hand: no sockets, no sleeps, explicit ``now``."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uniapi_core.config.model import Provider
from uniapi_core.errors import GatewayError, UpstreamError
from uniapi_core.relay import (
    Attempt,
    StopUpstream,
    ClientGone,
    DeadlineReached,
    EndResponse,
    StartUpstream,
    Relay,
    SendData,
    SendHead,
    State,
    UpstreamData,
    UpstreamEnded,
    UpstreamFailed,
    UpstreamHead,
)
from uniapi_core.routing.retry import verdict
from uniapi_core.vendors.base import ChatContext
from uniapi_core.vendors.openai import build_exchange

SSE = (("content-type", "text/event-stream"),)
JSON = (("content-type", "application/json"),)


class Source:
    """An AttemptSource over N channels, recording what it was told."""

    def __init__(self, n: int = 2, timeout: float = 10.0, stream: bool = True) -> None:
        self.n, self.timeout, self.stream = n, timeout, stream
        self.made = 0
        self.finished: list[tuple[int, str | None]] = []

    def next_attempt(self, now, failure):
        if self.made >= self.n:
            return None
        self.made += 1
        provider = Provider(provider=f"p{self.made}", base_url="http://u/v1/chat/completions",
                            api=("k",))
        ctx = ChatContext(client_model="m", upstream_model="m", provider=provider, api_key="k",
                          stream=self.stream, include_usage=False, response_id="chatcmpl-x",
                          created=1)
        ex = build_exchange({"model": "m", "messages": [], "stream": self.stream}, ctx)
        return Attempt(number=self.made, provider=provider.provider, upstream_model="m",
                       key_index=0, exchange=ex, timeout=self.timeout)

    def attempt_finished(self, attempt, now, error):
        self.finished.append((attempt.number, None if error is None else error.kind))

    def refusal(self):
        return GatewayError("nothing to try", status=503, code="no_channel_available")


def ev(obj) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


CHUNK = ev({"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "hi"},
                                                  "finish_reason": None}]})
FINISH = ev({"id": "c", "model": "m", "choices": [{"index": 0, "delta": {},
                                                   "finish_reason": "stop"}]})


def kinds(actions):
    return [type(a).__name__ for a in actions]


def sent(actions) -> bytes:
    return b"".join(a.data for a in actions if isinstance(a, SendData))


def test_stream_commits_on_first_chunk_and_finishes_with_done():
    src = Source()
    r = Relay(src, stream=True)
    acts = r.start(0.0)
    assert kinds(acts) == ["StartUpstream"] and acts[0].ref == 1
    assert r.handle(UpstreamHead(1, 200, SSE), 0.1) == []
    assert not r.committed
    acts = r.handle(UpstreamData(1, CHUNK), 0.2)
    assert kinds(acts) == ["SendHead", "SendData"] and r.committed
    assert acts[0].status == 200 and acts[0].content_length is None
    acts = r.handle(UpstreamData(1, FINISH + b"data: [DONE]\n\n"), 0.3)
    assert kinds(acts) == ["SendData", "SendData", "EndResponse"]
    assert acts[-2].data == b"data: [DONE]\n\n"
    assert r.state is State.DRAINING  # client done; waiting for the upstream body end
    assert r.handle(UpstreamEnded(1), 0.4) == []
    assert r.state is State.DONE and r.finished
    assert src.finished == [(1, None)]


def test_failure_before_commit_retries_next_channel():
    src = Source()
    r = Relay(src, stream=True)
    r.start(0.0)
    r.handle(UpstreamHead(1, 503, JSON), 0.1)
    acts = r.handle(UpstreamData(1, b'{"error":{"message":"busy"}}'), 0.1)
    assert acts == []
    acts = r.handle(UpstreamEnded(1), 0.2)
    assert kinds(acts) == ["StartUpstream"]
    assert acts[0].ref == 2
    # a late event from attempt 1 is ignored
    assert r.handle(UpstreamData(1, CHUNK), 0.3) == []
    r.handle(UpstreamHead(2, 200, SSE), 0.4)
    acts = r.handle(UpstreamData(2, CHUNK), 0.5)
    assert kinds(acts) == ["SendHead", "SendData"]
    assert src.finished == [(1, "status")]


def test_non_retryable_status_answers_at_once():
    src = Source()
    r = Relay(src, stream=False)
    r.start(0.0)
    r.handle(UpstreamHead(1, 400, JSON), 0.1)
    r.handle(UpstreamData(1, b'{"error":{"message":"bad role","type":"invalid_request_error",'
                             b'"code":"x"}}'), 0.1)
    acts = r.handle(UpstreamEnded(1), 0.2)
    assert kinds(acts) == ["SendHead", "SendData", "EndResponse"]
    head = next(a for a in acts if isinstance(a, SendHead))
    assert head.status == 400
    body = json.loads(sent(acts))
    assert body["error"]["message"] == "bad role" and body["error"]["code"] == "x"
    assert src.made == 1 and r.state is State.FAILED


def test_last_failure_is_reported_with_its_status():
    src = Source(n=2)
    r = Relay(src, stream=False)
    r.start(0.0)
    r.handle(UpstreamFailed(1, "connect", "refused"), 0.1)
    r.handle(UpstreamHead(2, 429, (("content-type", "application/json"),
                                   ("retry-after", "7"))), 0.2)
    acts = r.handle(UpstreamEnded(2), 0.3)
    head = next(a for a in acts if isinstance(a, SendHead))
    assert head.status == 429 and ("retry-after", "7") in head.headers
    assert json.loads(sent(acts))["error"]["type"] == "rate_limit_error"


def test_first_byte_timeout_moves_on_then_504():
    src = Source(n=2, timeout=5.0)
    r = Relay(src, stream=True)
    r.start(0.0)
    assert r.next_deadline() == 5.0
    assert r.handle(DeadlineReached(), 4.9) == []  # not yet
    acts = r.handle(DeadlineReached(), 5.0)
    assert kinds(acts) == ["StopUpstream", "StartUpstream"]
    assert r.next_deadline() == 10.0
    acts = r.handle(DeadlineReached(), 10.0)
    head = next(a for a in acts if isinstance(a, SendHead))
    assert head.status == 504
    assert json.loads(sent(acts))["error"]["code"] == "upstream_timeout"


def test_idle_timeout_after_commit_ends_stream_with_error_event():
    src = Source(timeout=5.0)
    r = Relay(src, stream=True)
    r.start(0.0)
    r.handle(UpstreamHead(1, 200, SSE), 1.0)
    r.handle(UpstreamData(1, CHUNK), 2.0)
    assert r.next_deadline() == 7.0  # idle timeout counts from the last activity
    acts = r.handle(DeadlineReached(), 7.0)
    assert kinds(acts) == ["StopUpstream", "SendData", "EndResponse"]
    data = sent(acts)
    assert data.startswith(b"event: error\ndata: ") and b"[DONE]" not in data
    assert json.loads(data.split(b"data: ", 1)[1])["error"]["code"] == "upstream_timeout"
    assert r.state is State.FAILED and src.made == 1  # never retried after the commit point


def test_empty_stream_is_retried():
    src = Source()
    r = Relay(src, stream=True)
    r.start(0.0)
    r.handle(UpstreamHead(1, 200, SSE), 0.1)
    acts = r.handle(UpstreamData(1, b"data: [DONE]\n\n"), 0.2)
    assert kinds(acts) == ["StopUpstream", "StartUpstream"]


def test_truncated_stream_after_commit_is_an_error_event():
    src = Source()
    r = Relay(src, stream=True)
    r.start(0.0)
    r.handle(UpstreamHead(1, 200, SSE), 0.1)
    r.handle(UpstreamData(1, CHUNK), 0.2)
    acts = r.handle(UpstreamEnded(1), 0.3)
    assert kinds(acts) == ["SendData", "EndResponse"]
    assert b"event: error" in sent(acts)
    assert src.finished == [(1, "truncated")]


def test_garbage_stream_before_commit_is_retried():
    src = Source()
    r = Relay(src, stream=True)
    r.start(0.0)
    r.handle(UpstreamHead(1, 200, SSE), 0.1)
    acts = r.handle(UpstreamData(1, b"data: {not json\n\n"), 0.2)
    assert kinds(acts) == ["StopUpstream", "StartUpstream"]
    assert src.finished == [(1, "decode")]


def test_client_gone_cancels_upstream():
    src = Source()
    r = Relay(src, stream=True)
    r.start(0.0)
    r.handle(UpstreamHead(1, 200, SSE), 0.1)
    r.handle(UpstreamData(1, CHUNK), 0.2)
    acts = r.handle(ClientGone(), 0.3)
    assert acts == [StopUpstream(1)]
    assert r.state is State.CANCELLED and r.outcome.client_closed
    assert r.handle(UpstreamData(1, CHUNK), 0.4) == []


def test_non_stream_success_is_one_response_with_length():
    src = Source(stream=False)
    r = Relay(src, stream=False)
    r.start(0.0)
    body = json.dumps({"id": "x", "model": "m", "choices": [{"index": 0, "message": {
        "role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}).encode()
    r.handle(UpstreamHead(1, 200, JSON), 0.1)
    r.handle(UpstreamData(1, body[:10]), 0.1)
    r.handle(UpstreamData(1, body[10:]), 0.1)
    acts = r.handle(UpstreamEnded(1), 0.2)
    assert kinds(acts) == ["SendHead", "SendData", "EndResponse"]
    assert acts[0].content_length == len(body) and acts[1].data == body


def test_no_attempt_at_all_is_503():
    r = Relay(Source(n=0), stream=False)
    acts = r.start(0.0)
    assert kinds(acts) == ["SendHead", "SendData", "EndResponse"]
    assert acts[0].status == 503


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["head200", "head500", "data", "done", "end", "fail",
                                 "deadline", "gone"]), max_size=30),
       st.integers(min_value=1, max_value=4))
def test_any_event_order_keeps_the_promises(script, n):
    """Whatever happens: at most one head, nothing after the end, attempts within budget,
    and once committed never a second attempt."""
    src = Source(n=n, timeout=1.0)
    r = Relay(src, stream=True)
    actions = list(r.start(0.0))
    now = 0.0
    for step in script:
        now += 0.5
        current = src.made
        event = {
            "head200": UpstreamHead(current, 200, SSE),
            "head500": UpstreamHead(current, 500, JSON),
            "data": UpstreamData(current, CHUNK),
            "done": UpstreamData(current, b"data: [DONE]\n\n"),
            "end": UpstreamEnded(current),
            "fail": UpstreamFailed(current, "reset", "x"),
            "deadline": DeadlineReached(),
            "gone": ClientGone(),
        }[step]
        actions += r.handle(event, now if step != "deadline" else now + 5)
    heads = [a for a in actions if isinstance(a, SendHead)]
    ends = [i for i, a in enumerate(actions) if isinstance(a, EndResponse)]
    assert len(heads) <= 1 and len(ends) <= 1
    if ends:
        assert not any(isinstance(a, (SendData, SendHead)) for a in actions[ends[0] + 1:])
    opens = [a for a in actions if isinstance(a, StartUpstream)]
    assert len(opens) == src.made <= n
    if heads:
        first_send = actions.index(heads[0])
        assert not any(isinstance(a, StartUpstream) for a in actions[first_send:])
    if r.finished:
        assert r.next_deadline() is None


@pytest.mark.parametrize("kind, retried", [
    ("connect", True), ("reset", True), ("protocol", True), ("eof", True),
    ("head_too_large", False),  # routing/retry.py KIND_ROWS: answered at once
])
def test_transport_failures_are_retried_as_the_retry_table_says(kind, retried):
    src = Source(n=2)
    r = Relay(src, stream=True)
    r.start(0.0)
    acts = r.handle(UpstreamFailed(1, kind, "x"), 0.1)
    assert kinds(acts) == (["StartUpstream"] if retried else
                           ["SendHead", "SendData", "EndResponse"])
    assert src.finished == [(1, kind)] and verdict(UpstreamError("x", kind=kind)).retry is retried


@pytest.mark.parametrize("status", [302, 400, 401, 403, 404, 408, 409, 413, 418, 422, 424, 429,
                                    500, 503, 529])
def test_error_statuses_are_retried_as_the_retry_table_says(status):
    src = Source(n=2)
    r = Relay(src, stream=False)
    r.start(0.0)
    acts = r.handle(UpstreamHead(1, status, JSON), 0.1)
    if status >= 400:
        r.handle(UpstreamData(1, b'{"error":{"message":"no"}}'), 0.1)
        acts = r.handle(UpstreamEnded(1), 0.2)
    retried = verdict(UpstreamError("x", kind="protocol" if status < 400 else "status",
                                    upstream_status=status)).retry
    assert retried is (status in (302, 401, 403, 408, 409, 424, 429) or status >= 500)
    assert kinds(acts)[-1] == ("StartUpstream" if retried else "EndResponse")
    assert src.made == (2 if retried else 1)
