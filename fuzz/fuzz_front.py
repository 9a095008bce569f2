"""Fuzz target for the client-facing framing: ``ServerConnection`` (HTTP/1.1, h11) and
``H2ServerConnection`` (HTTP/2, h2), fed hostile bytes (R3, R7, R8).

Run it (needs ``pip install atheris``)::

    python fuzz/fuzz_front.py -max_total_time=60 fuzz/corpus/front

``check(data)`` is the oracle; ``tests/core/test_fuzz_corpora.py`` replays the corpus
without atheris. The first byte picks the protocol (even: HTTP/1.1, odd: HTTP/2 with the
preface prepended). For each input it asserts:

* nothing escapes ``receive_data``/``deadline_reached`` (peer input never raises);
* feeding the bytes whole, one byte at a time and at cut points derived from the data gives
  the same events (split invariance), and the same ``closed`` state. On HTTP/2 the runs that
  are compared leave the requests unanswered: a frame the client sends on a stream after
  the server answered it is judged by the stream's state, which depends on when the answer
  went out (an h2 stream error before it, a connection error after: a timing of the server,
  not a cut of the bytes); the same cuts are also run answering each request at once, where
  only "nothing raises" is checked. One allowed difference
  on HTTP/2: a request reset by the client in the same read it arrived in is never delivered
  (the rapid-reset defence), so the requests of the whole-input run are a subset of those of
  finer cuts, and the other events are equal;
* every failure is answerable: an HTTP/1.1 ``ProtocolFailure`` carries a 4xx/5xx status and
  ``error_response`` renders an OpenAI error JSON; an HTTP/2 ``StreamFailure`` is answered
  with ``error_response`` without raising.
"""

from __future__ import annotations

import json
import sys

if __name__ == "__main__":  # run as a script: make the repository importable
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz._oracle import fuzz  # noqa: E402
from uniapi_core.http.h2server import (  # noqa: E402
    PREFACE,
    H2ServerConnection,
    StreamFailure,
    StreamGone,
    StreamRequest,
)
from uniapi_core.http.server import (  # noqa: E402
    ProtocolFailure,
    RequestReceived,
    ServerConnection,
    ServerLimits,
)

LIMITS = ServerLimits(max_head=2048, max_headers=20, max_request_line=512, max_body=4096)


def _splits(data: bytes) -> list[list[bytes]]:
    n = len(data)
    out = [[data]]
    if n:
        out.append([data[i:i + 1] for i in range(n)])
        stride = data[-1] % 13 + 2
        out.append([data[i:i + stride] for i in range(0, n, stride)])
    return out


def _h1(pieces: list[bytes]) -> tuple[list, bool]:
    conn = ServerConnection(LIMITS)
    events: list = []
    for piece in pieces:
        if not piece:
            continue
        queue = conn.receive_data(piece, 0.0)
        while queue:
            ev = queue.pop(0)
            events.append(ev)
            if isinstance(ev, RequestReceived):
                conn.respond(200, [("content-type", "application/json")], b"{}", 0.0)
                queue += conn.next_request(0.0)
            elif isinstance(ev, ProtocolFailure):
                assert 400 <= ev.status <= 599, ev
                body = conn.error_response(ev.status, ev.message, now=0.0).split(b"\r\n\r\n", 1)
                assert set(json.loads(body[1])["error"]) >= {"message", "type", "code"}
    events += conn.deadline_reached(1e9)
    return events, conn.closed


def _h2(pieces: list[bytes], respond: bool = False) -> tuple[list, bool]:
    """The events of ``pieces``; ``respond``: answer each request as soon as its piece is
    fed (the stream's state then depends on the cut, so such runs are not compared)."""
    conn = H2ServerConnection(LIMITS)
    events: list = []
    for piece in pieces:
        if not piece:
            continue
        new = conn.receive_data(piece, 0.0)
        events += new
        for ev in new:
            if isinstance(ev, StreamRequest) and respond:
                conn.start_response(ev.stream_id, 200, [("x-ok", "1")], content_length=2)
                conn.send_data(ev.stream_id, b"{}")
                conn.end_response(ev.stream_id, 0.0)
            elif isinstance(ev, StreamFailure):
                assert 400 <= ev.status <= 599, ev
                conn.error_response(ev.stream_id, ev.status, ev.message, now=0.0)
        conn.data_to_send()
    events += conn.deadline_reached(1e9)
    return events, conn.closed


def _h1_view(events: list) -> list:
    return [ev.status if isinstance(ev, ProtocolFailure) else ev for ev in events]


def _split_requests(events: list) -> tuple[list, list]:
    """(stream requests and resets, everything else)."""
    streams = [e for e in events if isinstance(e, (StreamRequest, StreamGone))]
    return streams, [e for e in events if not isinstance(e, (StreamRequest, StreamGone))]


def check(data: bytes) -> None:
    if not data:
        return
    h2 = data[0] % 2 == 1
    payload = PREFACE + data[1:] if h2 else data[1:]
    run = _h2 if h2 else _h1
    results = [run(pieces) for pieces in _splits(payload)]
    if h2:  # answering as requests come: nothing may raise, whatever the cut
        for pieces in _splits(payload):
            _h2(pieces, respond=True)
    first = results[0]
    for other in results[1:]:
        assert other[1] == first[1], (first, other)
        if not h2:  # h11's wording of a failure may depend on the cut; its status may not
            assert _h1_view(other[0]) == _h1_view(first[0]), (first, other)
            continue
        mine, rest = _split_requests(first[0])
        theirs, their_rest = _split_requests(other[0])
        assert rest == their_rest, (first, other)
        delivered = [e for e in theirs if isinstance(e, StreamRequest)]
        assert all(e in delivered for e in mine if isinstance(e, StreamRequest)), (first, other)


if __name__ == "__main__":
    fuzz(check)
