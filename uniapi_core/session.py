"""One HTTP/1.1 client connection as one sans-IO machine: h11 framing + one request at a time.

``Connection`` (``connection.py``) is the door a transport drives; for an HTTP/1.1 connection
it hands every event to ``Session.handle``. Requests on one connection are served one after
another: each whole request becomes a ``RequestMachine`` (``request_machine.py``, shared with
the HTTP/2 side), which must finish before the next request is looked at. The transport keeps
reading the client while a response is in flight, so a client that leaves mid-stream is
noticed at once and its upstream cancelled (R6). HTTP/1.1 never pauses an upstream: every
``Write`` is performed before the next event, which is backpressure enough for one response at
a time.
"""

from __future__ import annotations

from collections.abc import Callable

from .events import (
    Action,
    ClientData,
    Close,
    DeadlineReached,
    DrainStarted,
    Event,
    Watch,
    Write,
    WriteFailed,
)
from .request_machine import MachineAction, RequestMachine
from .gateway import Gateway
from .http.server import (
    ClientClosed,
    ProtocolFailure,
    RequestReceived,
    ServerConnection,
    ServerLimits,
)
from .relay import ClientGone, EndResponse, SendData, SendHead

__all__ = ["Session"]


class Session:
    """One HTTP/1.1 client connection (see the module docstring)."""

    def __init__(self, gateway: Callable[[], Gateway], limits: ServerLimits = ServerLimits(),
                 *, now: float = 0.0, peer: str | None = None) -> None:
        self._gateway = gateway
        self._peer = peer
        self.conn = ServerConnection(limits, now=now)
        self.closed = False
        self._machine: RequestMachine | None = None
        self._next_ref = 0

    def _ref(self) -> int:
        self._next_ref += 1
        return self._next_ref

    @property
    def idle(self) -> bool:
        """No request is being read or served: before the first, or between two."""
        return self._machine is None and not self.conn.busy

    def handle(self, event: Event, now: float, wall: float) -> list[Action]:
        if self.closed:
            return []
        out: list[Action] = []
        cls = type(event)
        ex = self._machine
        if cls is ClientData:
            events = self.conn.receive_data(event.data, now)  # type: ignore[union-attr]
            pending = self.conn.data_to_send()  # e.g. 100 Continue
            if pending:
                _write(out, [pending])
            self._connection_events(events, now, wall, out)
        elif cls is DeadlineReached and ex is None:
            self._connection_events(self.conn.deadline_reached(now), now, wall, out)
        elif cls is WriteFailed:
            self._client_gone(now, wall, out)
        elif cls is DrainStarted:
            self.conn.close_after_response()
            if ex is None and not self.conn.busy:
                self._close(out)
        elif ex is not None:  # upstream, fetch, watch and deadline events: the machine's
            self._run(ex.handle(event, now, wall), now, wall, out)  # type: ignore[arg-type]
        return out

    def next_deadline(self) -> float | None:
        if self.closed:
            return None
        if self._machine is not None:
            return self._machine.next_deadline()
        return self.conn.next_deadline()

    # -- internals ----------------------------------------------------------------------------

    def _connection_events(self, events: list, now: float, wall: float,
                           out: list[Action]) -> None:
        queue = list(events)
        while queue and not self.closed:
            event = queue.pop(0)
            if isinstance(event, ClientClosed):
                self._client_gone(now, wall, out)
            elif isinstance(event, ProtocolFailure):
                _write(out, [self.conn.error_response(event.status, event.message, now=now)])
                self._close(out)
            elif isinstance(event, RequestReceived):
                if self._machine is not None:
                    continue  # cannot happen: requests wait for the one in progress
                self._machine = RequestMachine(self._gateway, event, self._ref, now,
                                               peer=self._peer)
                queue.extend(self._run(self._machine.start(now, wall), now, wall, out,
                                       nested=True))

    def _run(self, actions: list[MachineAction], now: float, wall: float,
             out: list[Action], nested: bool = False) -> list:
        """Turn the request machine's actions into ours (a response's bytes as one ``Write``, a
        ``Watch`` first); once it is finished, go on to the next request (its events are
        returned when ``nested``, else handled here)."""
        conn = self.conn
        chunks: list[bytes] = []
        for action in actions:
            cls = type(action)
            if cls is SendData:
                chunks.append(conn.send_data(action.data))  # type: ignore[union-attr]
            elif cls is SendHead:
                chunks.append(conn.start_response(
                    action.status, action.headers,  # type: ignore[union-attr]
                    content_length=action.content_length))  # type: ignore[union-attr]
            elif cls is EndResponse:
                chunks.append(conn.end_response(now))
            else:
                if chunks:
                    _write(out, chunks)
                    chunks = []
                if cls is Watch:
                    out.insert(0, action)  # type: ignore[arg-type]
                else:
                    out.append(action)  # type: ignore[arg-type]
        if chunks:
            _write(out, chunks)
        ex = self._machine
        if ex is None or not ex.finished or self.closed:
            return []
        self._machine = None
        if ex.client_closed or conn.must_close:
            self._close(out)
            return []
        more = conn.next_request(now)
        if nested:
            return more
        self._connection_events(more, now, wall, out)
        return []

    def _client_gone(self, now: float, wall: float, out: list[Action]) -> None:
        if self._machine is not None:
            self._run(self._machine.handle(ClientGone(), now, wall), now, wall, out)
        self._close(out, linger=False)

    def _close(self, out: list[Action], linger: bool = True) -> None:
        """Close; ``linger`` unless the client is gone (events.Close)."""
        if not self.closed:
            self.closed = True
            out.append(Close(linger))


def _write(out: list[Action], chunks: list[bytes]) -> None:
    """Append ``chunks`` as one ``Write``, joined to the ``Write`` before it if there is one
    (a head and its body: one send, one packet); nothing when they are empty (a ``Write`` is
    never empty)."""
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if not data:
        return
    if out and type(last := out[-1]) is Write:
        out[-1] = Write(last.data + data)
    else:
        out.append(Write(data))
