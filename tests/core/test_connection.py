"""The one door, ``Connection.handle``, under arbitrary orderings (hypothesis).

On HTTP/1.1 and on HTTP/2 (two streams at once), whatever events arrive, in whatever order
and with whatever refs (known, stale, never issued), at whatever times: ``handle`` never
raises, never returns an empty ``Write`` or two in a row, puts every ``Watch`` first, and once
the client is gone nothing it started is left running — every ref of a ``StartUpstream``,
``Fetch`` or ``Watch`` has been stopped, or its exchange ended by itself.
"""

from __future__ import annotations

import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from uniapi_core.config import load_config
from uniapi_core.connection import Connection
from uniapi_core.events import (
    ClientData,
    Close,
    DeadlineReached,
    DrainStarted,
    Fetch,
    FetchDone,
    FetchResult,
    Notified,
    StartUpstream,
    StopUpstream,
    UpstreamData,
    UpstreamEnded,
    UpstreamFailed,
    UpstreamHead,
    Watch,
    Write,
    WriteFailed,
)
from uniapi_core.gateway import Gateway, Settings

CONFIG = """
providers:
  - {provider: oa, base_url: "http://u/v1/chat/completions", api: k, model: [m]}
  - {provider: ob, base_url: "http://v/v1/chat/completions", api: k, model: [m]}
  - {provider: an, base_url: "http://a/v1/messages", api: k, model: [claude]}
api_keys:
  - api: sk-s
    preferences: {ENABLE_MODERATION: false}
"""
CHUNK = b'data: {"id":"x","model":"m","choices":[{"index":0,"delta":{"content":"y"}}]}\n\n'
ANSWER = json.dumps({"id": "x", "model": "m", "choices": [{"index": 0, "message": {
    "role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}).encode()


def request(stream: bool, model: str = "m", image: bool = False) -> bytes:
    content: object = "hi"
    if image:
        content = [{"type": "text", "text": "hi"},
                   {"type": "image_url", "image_url": {"url": "https://img.example/a.png"}}]
    body = json.dumps({"model": model, "stream": stream,
                       "messages": [{"role": "user", "content": content}]}).encode()
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-s\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


def h2_requests(stream: bool, model: str = "m", image: bool = False) -> bytes:
    """Two concurrent chat requests on one HTTP/2 connection (streams 1 and 3)."""
    import h2.config
    import h2.connection

    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                             header_encoding=None))
    c.initiate_connection()
    body = request(stream, model, image).split(b"\r\n\r\n", 1)[1]
    for sid in (1, 3):
        c.send_headers(sid, [(b":method", b"POST"), (b":path", b"/v1/chat/completions"),
                             (b":scheme", b"http"), (b":authority", b"x"),
                             (b"authorization", b"Bearer sk-s")])
        c.send_data(sid, body, end_stream=True)
    return c.data_to_send()


# One step of the script: which event to make, with a ref picked from those issued so far
# (or a stale/unknown one), and how far the clock moves first.
STEP = st.tuples(
    st.sampled_from(["head200", "head200sse", "head500", "data", "chunk", "end", "fail",
                     "deadline", "fetch_ok", "fetch_err", "notified", "client_bytes",
                     "drain"]),
    st.integers(min_value=-2, max_value=8),  # index into issued refs; negative: unknown ref
    st.floats(min_value=0.0, max_value=40.0),  # seconds the clock moves
)


def _check(actions: list) -> None:
    assert all(a.data for a in actions if type(a) is Write), actions  # never an empty Write
    for a, b in zip(actions, actions[1:]):
        assert not (type(a) is Write and type(b) is Write), actions
    watches = [i for i, a in enumerate(actions) if type(a) is Watch]
    assert watches == list(range(len(watches))), actions


@settings(max_examples=300, deadline=None)
@given(alpn=st.sampled_from([None, "http/1.1", "h2"]), stream=st.booleans(),
       model=st.sampled_from(["m", "claude"]), image=st.booleans(),
       steps=st.lists(STEP, max_size=40))
def test_any_ordering_leaves_nothing_running(alpn, stream, model, image, steps):
    gw = Gateway(load_config(CONFIG).config, settings=Settings(fetch_allow_private=True),
                 entropy=random.Random(0))
    conn = Connection(lambda: gw, now=0.0, alpn=alpn)
    now = 0.0
    issued: list[int] = []  # refs of StartUpstream / Fetch / Watch, in order
    over: set[int] = set()  # refs stopped, or whose exchange we ended or failed

    def feed(event) -> None:
        actions = conn.handle(event, now, 1.7e9 + now)
        _check(actions)
        for a in actions:
            if isinstance(a, (StartUpstream, Fetch, Watch)):
                issued.append(a.ref)
            elif isinstance(a, StopUpstream):
                over.add(a.ref)

    feed(ClientData(h2_requests(stream, model, image) if alpn == "h2"
                    else request(stream, model, image)))
    assert len(issued) == (2 if alpn == "h2" else 1)  # each request went upstream or to fetch
    for kind, index, dt in steps:
        now += dt
        ref = issued[index % len(issued)] if issued and index >= 0 else 10_000 + index
        if kind == "head200":
            feed(UpstreamHead(ref, 200, (("content-type", "application/json"),)))
        elif kind == "head200sse":
            feed(UpstreamHead(ref, 200, (("content-type", "text/event-stream"),)))
        elif kind == "head500":
            feed(UpstreamHead(ref, 500, ()))
        elif kind == "data":
            feed(UpstreamData(ref, ANSWER))
        elif kind == "chunk":
            feed(UpstreamData(ref, CHUNK))
        elif kind in ("end", "fail"):
            feed(UpstreamEnded(ref) if kind == "end" else UpstreamFailed(ref, "reset", "x"))
            over.add(ref)
        elif kind == "deadline":
            feed(DeadlineReached())
        elif kind == "fetch_ok":
            feed(FetchDone(ref, FetchResult(200, (("content-type", "image/png"),),
                                            b"\x89PNG\r\n\x1a\n" + b"\0" * 16)))
            over.add(ref)
        elif kind == "fetch_err":
            feed(FetchDone(ref, FetchResult(error="refused")))
            over.add(ref)
        elif kind == "notified":
            feed(Notified(ref))
            over.add(ref)
        elif kind == "client_bytes":
            feed(ClientData(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
        elif kind == "drain":
            feed(DrainStarted())
    closing = conn.handle(WriteFailed(), now, 1.7e9 + now)
    over.update(a.ref for a in closing if isinstance(a, StopUpstream))
    assert conn.closed
    assert conn.handle(ClientData(b"more"), now, 1.7e9) == []
    assert set(issued) <= over, (issued, over)
    assert any(isinstance(a, Close) for a in closing) or not closing or conn.closed
