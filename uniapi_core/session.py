"""One client connection as one sans-IO machine: HTTP framing + gateway + relays.

Theory of operation
-------------------
A transport owns sockets, tasks and clocks; everything else about a client connection is here.
It feeds the session four kinds of input and performs the actions that come back, in order:

=================================  ==========================================================
input                              when
=================================  ==========================================================
``data_received(data, now, wall)`` bytes read from the client (``b""`` at EOF)
``upstream_event(ref, ev, now…)``  an event of the upstream exchange the transport runs for
                                   ``ref`` (``UpstreamHead/Data/Ended/Failed``)
``timer(now, wall)``               ``next_deadline()`` has passed
``write_failed(now, wall)``        writing to the client failed (it went away)
``drain(now, wall)``               shutting down: finish what is in flight, take no more
``fetch_done(ref, result, now…)``  the outcome of a ``Fetch`` (an image URL)
=================================  ==========================================================

=====================================  ======================================================
action                                 the transport…
=====================================  ======================================================
``Write(data)``                        writes the bytes to the client (a stalled write is a
                                       failed write)
``StartUpstream(ref, request, proxy)`` runs an upstream exchange, reporting its events with
                                       ``ref``
``StopUpstream(ref)``                  cancels that exchange and closes its connection
``Fetch(ref, url, allow_private, …)``  GETs a remote image for a vendor that needs it inline:
                                       resolves the name, connects only to the address
                                       ``ssrf.pick_address`` allows, reads at most
                                       ``max_bytes``, reports a ``FetchResult`` with ``ref``
``Close()``                            closes the client connection; the session is over
``Served(record)``                     logs one finished request
=====================================  ======================================================

The transport reads the client continuously, so a client that leaves mid-stream is noticed at
once and its upstream cancelled (R6). HTTP/1.1 requests on one connection are served one
after another: each whole request becomes an ``Exchange`` (``exchange.py``, shared with the
HTTP/2 session), which must finish before the next request is looked at. ``H2Session``
(``h2session.py``) offers the same inputs and actions for an HTTP/2 connection.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from .exchange import (
    Exchange,
    ExchangeAction,
    Fetch,
    FetchResult,
    Served,
    ServedRecord,
    StartUpstream,
    StopUpstream,
    UpstreamEvent,
)
from .gateway import Gateway
from .http.server import (
    ClientClosed,
    ProtocolFailure,
    RequestReceived,
    ServerConnection,
    ServerLimits,
)
from .relay import EndResponse, SendData, SendHead

__all__ = ["Session", "Write", "StartUpstream", "StopUpstream", "Close", "Served",
           "ServedRecord", "SessionAction", "Fetch", "FetchResult", "UpstreamEvent",
           "merge_writes"]


@attrs.frozen
class Write:
    data: bytes


@attrs.frozen
class Close:
    pass


SessionAction = Write | StartUpstream | StopUpstream | Close | Served | Fetch


def merge_writes(actions: list[SessionAction]) -> list[SessionAction]:
    """Consecutive ``Write``s as one (a response head and its body: one send, one packet)."""
    if sum(isinstance(a, Write) for a in actions) < 2:
        return actions
    out: list[SessionAction] = []
    for action in actions:
        if isinstance(action, Write) and out and isinstance(out[-1], Write):
            out[-1] = Write(out[-1].data + action.data)
        else:
            out.append(action)
    return out


class Session:
    """One HTTP/1.1 client connection (see the module docstring)."""

    def __init__(self, gateway: Callable[[], Gateway], limits: ServerLimits = ServerLimits(),
                 *, now: float = 0.0) -> None:
        self._gateway = gateway
        self.conn = ServerConnection(limits, now=now)
        self.closed = False
        self._exchange: Exchange | None = None
        self._next_ref = 0

    def _ref(self) -> int:
        self._next_ref += 1
        return self._next_ref

    # -- inputs -------------------------------------------------------------------------------

    def data_received(self, data: bytes, now: float, wall: float) -> list[SessionAction]:
        if self.closed:
            return []
        out: list[SessionAction] = []
        events = self.conn.receive_data(data, now)
        pending = self.conn.data_to_send()  # e.g. 100 Continue
        if pending:
            out.append(Write(pending))
        self._connection_events(events, now, wall, out)
        return out

    def upstream_event(self, ref: int, event: UpstreamEvent, now: float,
                       wall: float) -> list[SessionAction]:
        ex = self._exchange
        if self.closed or ex is None:
            return []
        out: list[SessionAction] = []
        self._run(ex.upstream_event(ref, event, now, wall), now, wall, out)
        return out

    def fetch_done(self, ref: int, result: FetchResult, now: float,
                   wall: float) -> list[SessionAction]:
        ex = self._exchange
        if self.closed or ex is None:
            return []
        out: list[SessionAction] = []
        self._run(ex.fetch_done(ref, result, now, wall), now, wall, out)
        return out

    def timer(self, now: float, wall: float) -> list[SessionAction]:
        if self.closed:
            return []
        out: list[SessionAction] = []
        if self._exchange is not None:
            self._run(self._exchange.timer(now, wall), now, wall, out)
            return out
        self._connection_events(self.conn.deadline_reached(now), now, wall, out)
        return out

    def write_failed(self, now: float, wall: float) -> list[SessionAction]:
        if self.closed:
            return []
        out: list[SessionAction] = []
        self._client_gone(now, wall, out)
        return out

    def drain(self, now: float, wall: float) -> list[SessionAction]:
        """Graceful shutdown: an idle connection closes now; a busy one after its response."""
        if self.closed:
            return []
        out: list[SessionAction] = []
        self.conn.close_after_response()
        if self._exchange is None and not self.conn.busy:
            self._close(out)
        return out

    def upstream_paused(self, ref: int) -> bool:
        """Never: every ``Write`` is performed before the next input, which is backpressure
        enough for one response at a time."""
        return False

    def next_deadline(self) -> float | None:
        if self.closed:
            return None
        if self._exchange is not None:
            return self._exchange.next_deadline()
        return self.conn.next_deadline()

    # -- internals ----------------------------------------------------------------------------

    def _connection_events(self, events: list, now: float, wall: float,
                           out: list[SessionAction]) -> None:
        queue = list(events)
        while queue and not self.closed:
            event = queue.pop(0)
            if isinstance(event, ClientClosed):
                self._client_gone(now, wall, out)
            elif isinstance(event, ProtocolFailure):
                out.append(Write(self.conn.error_response(event.status, event.message, now=now)))
                self._close(out)
            elif isinstance(event, RequestReceived):
                if self._exchange is not None:
                    continue  # cannot happen: requests wait for the one in progress
                self._exchange = Exchange(self._gateway, event, self._ref, now)
                queue.extend(self._run(self._exchange.start(now, wall), now, wall, out,
                                       nested=True))

    def _run(self, actions: list[ExchangeAction], now: float, wall: float,
             out: list[SessionAction], nested: bool = False) -> list:
        """Turn the exchange's actions into ours; once it is finished, go on to the next
        request (its events are returned when ``nested``, else handled here)."""
        conn = self.conn
        for action in actions:
            if isinstance(action, SendHead):
                out.append(Write(conn.start_response(action.status, action.headers,
                                                     content_length=action.content_length)))
            elif isinstance(action, SendData):
                out.append(Write(conn.send_data(action.data)))
            elif isinstance(action, EndResponse):
                out.append(Write(conn.end_response(now)))
            else:
                out.append(action)
        ex = self._exchange
        if ex is None or not ex.finished or self.closed:
            return []
        self._exchange = None
        if ex.client_closed or conn.must_close:
            self._close(out)
            return []
        more = conn.next_request(now)
        if nested:
            return more
        self._connection_events(more, now, wall, out)
        return []

    def _client_gone(self, now: float, wall: float, out: list[SessionAction]) -> None:
        if self._exchange is not None:
            self._run(self._exchange.client_gone(now, wall), now, wall, out)
        self._close(out)

    def _close(self, out: list[SessionAction]) -> None:
        if not self.closed:
            self.closed = True
            out.append(Close())
