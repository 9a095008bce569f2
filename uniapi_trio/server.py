"""The trio front: accept connections, move bytes between sockets and the core, run relays.

Every decision is the core's: ``ServerConnection`` frames HTTP and enforces limits,
``Gateway`` answers requests, ``Relay`` says what to send where. This module only executes
actions, reports events, and keeps the clocks: ``trio.current_time()`` (monotonic) for
deadlines, ``time.time()`` (wall) for ``created`` fields.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import trio

from uniapi_core.gateway import Gateway, Respond
from uniapi_core.http import ClientClosed, ProtocolFailure, RequestReceived, ServerConnection
from uniapi_core.http.server import ServerLimits
from uniapi_core.relay import (
    CancelUpstream,
    ClientGone,
    DeadlineReached,
    EndResponse,
    OpenUpstream,
    Relay,
    SendData,
    SendHead,
)

from .upstream import UpstreamPool

__all__ = ["serve", "handle_connection"]

log = logging.getLogger("uniapi")

READ_SIZE = 16384
#: a client that accepts no bytes for this long is dropped (reliability.md: write stall)
WRITE_STALL_TIMEOUT = 60.0
#: events buffered between upstream tasks and the relay; a full channel pauses upstream reads
EVENT_BUFFER = 16


class _ClientGone(Exception):
    """The client socket broke while we were writing to it."""


async def _send(stream: trio.abc.Stream, data: bytes) -> None:
    if not data:
        return
    try:
        with trio.fail_after(WRITE_STALL_TIMEOUT):
            await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, OSError):
        raise _ClientGone() from None


async def handle_connection(stream: trio.abc.Stream, get_gateway: Callable[[], Gateway],
                            pool: UpstreamPool, limits: ServerLimits) -> None:
    """Serve one client connection until it closes."""
    conn = ServerConnection(limits, now=trio.current_time())
    try:
        events: list = []
        while True:
            while not events:
                events = await _receive_events(stream, conn)
            event = events.pop(0)
            if isinstance(event, ClientClosed):
                return
            if isinstance(event, ProtocolFailure):
                await _send(stream, conn.error_response(event.status, event.message,
                                                        now=trio.current_time()))
                return
            assert isinstance(event, RequestReceived)
            started = trio.current_time()
            reply = get_gateway().handle(event.method, event.target, event.headers, event.body,
                                         now=started, wall=time.time())
            if isinstance(reply, Respond):
                await _send(stream, conn.respond(reply.status, reply.headers, reply.body,
                                                 now=trio.current_time()))
                status = reply.status
            else:
                status = await _drive_relay(stream, conn, reply, pool)
                if status is None:
                    return  # client gone mid-response
            log.info("%s %s %s %.1fms", event.method, event.target.split("?", 1)[0], status,
                     (trio.current_time() - started) * 1000)
            if conn.must_close:
                return
            events.extend(conn.next_request(trio.current_time()))
    except _ClientGone:
        return
    finally:
        await trio.aclose_forcefully(stream)


async def _receive_events(stream: trio.abc.Stream, conn: ServerConnection) -> list:
    deadline = conn.next_deadline()
    with trio.move_on_at(deadline if deadline is not None else math.inf):
        try:
            data = await stream.receive_some(READ_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            data = b""
        events = conn.receive_data(data, trio.current_time())
        await _send(stream, conn.data_to_send())  # e.g. 100 Continue
        return events
    return conn.deadline_reached(trio.current_time())


async def _drive_relay(stream: trio.abc.Stream, conn: ServerConnection, relay: Relay,
                       pool: UpstreamPool) -> int | None:
    """Run ``relay`` to its end. Returns the response status, or None if the client left."""
    send_ch, recv_ch = trio.open_memory_channel[object](EVENT_BUFFER)
    attempts: dict[int, trio.CancelScope] = {}

    async def watch_client() -> None:
        # keep reading so a client that goes away is noticed at once (R6)
        while True:
            try:
                data = await stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                data = b""
            if any(isinstance(e, ClientClosed) for e in conn.receive_data(
                    data, trio.current_time())) or not data:
                await send_ch.send(ClientGone())
                return

    async def run_attempt(action: OpenUpstream, scope: trio.CancelScope) -> None:
        with scope:
            await pool.run(action, send_ch.send)

    gone = False
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_client)
        actions = relay.start(trio.current_time())
        while True:
            try:
                for action in actions:
                    if isinstance(action, OpenUpstream):
                        scope = trio.CancelScope()
                        attempts[action.attempt] = scope
                        nursery.start_soon(run_attempt, action, scope)
                    elif isinstance(action, CancelUpstream):
                        attempts.pop(action.attempt, trio.CancelScope()).cancel()
                    elif isinstance(action, SendHead):
                        await _send(stream, conn.start_response(
                            action.status, action.headers, content_length=action.content_length))
                    elif isinstance(action, SendData):
                        await _send(stream, conn.send_data(action.data))
                    elif isinstance(action, EndResponse):
                        await _send(stream, conn.end_response(trio.current_time()))
            except _ClientGone:
                gone = True
                actions = relay.handle(ClientGone(), trio.current_time())
                continue
            if relay.finished:
                break
            deadline = relay.next_deadline()
            with trio.move_on_at(deadline if deadline is not None else math.inf):
                event = await recv_ch.receive()
                if isinstance(event, ClientGone):
                    gone = True
                actions = relay.handle(event, trio.current_time())
                continue
            actions = relay.handle(DeadlineReached(), trio.current_time())
        nursery.cancel_scope.cancel()
    return None if gone or relay.outcome.client_closed else relay.outcome.status


async def serve(get_gateway: Callable[[], Gateway], host: str, port: int, *,
                limits: ServerLimits | None = None, pool: UpstreamPool | None = None,
                task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Listen on ``host:port`` and serve forever; reports the bound port when ready."""
    limits = limits or ServerLimits()
    pool = pool or UpstreamPool()
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]

    async def handler(stream: trio.SocketStream) -> None:
        await handle_connection(stream, get_gateway, pool, limits)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handler, listeners)
        task_status.started(bound)
