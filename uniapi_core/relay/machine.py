"""The per-request relay: attempts over candidate channels, the commit point, the relay itself.

Theory of operation
-------------------
One ``Relay`` serves one client request. It is a sans-IO state machine: the transport feeds it
*events* (``relay.events``) with the current monotonic time and executes the *actions*
(``relay.actions``) it returns, in order. It owns no sockets and reads no clock; the only time it
knows is the ``now`` it is given, and ``next_deadline()`` tells the transport when to wake it
with ``DeadlineReached``.

The attempts come from an ``AttemptSource`` (the router): it hands out the next attempt and is
told how each one ended, which is how cooldowns, key benches and stats learn of failures.

The **commit point** is the first byte sent to the client. Before it, any failure (connection
error, timeout, retryable status, empty answer, cut or garbled stream) may move on to the next
attempt (``routing/retry.py`` says which); the client has seen nothing. A streamed response
commits with its first content chunk; a whole-body response commits when the body has been
read and translated. After the commit point a failure ends the stream with a final
``event: error`` / ``data: {"error": …}`` event and no ``[DONE]`` — never silence, a fake
success or a hang.

States and the events each accepts are the table ``_TRANSITIONS``; an event a state does not
list is ignored (late events of abandoned attempts, or anything after the end).

    CONNECTING  --head 2xx, stream-->     STREAM_OPEN --first chunk--> STREAMING
    CONNECTING  --head 2xx, whole body--> BUFFERING
    CONNECTING  --head >= 400-->          ERROR_BODY
    STREAMING   --[DONE] before upstream end--> DRAINING  (client finished; wait for the end
                                                           so the upstream connection can be reused)
    (start, or a retry) --the source asks the fleet--> CONSULTING --SharedDone or its
                           deadline--> CONNECTING, or the final error response
    any failure before commit --> CONNECTING (next attempt) or FAILED (final error response)
    any failure after commit  --> FAILED (error event)
    client gone               --> CANCELLED

With shared state (``--redis-url``) the source may answer a request for an attempt with a
``Consult`` (routing/plan.py): the relay says ``RunShared`` and waits in ``CONSULTING`` for
``SharedDone``, or for the consult's ``timeout`` (then the source is resumed with ``None``
and decides on this process's state). What an attempt's outcome tells the fleet (a cooldown,
a bench) goes out as ``TellShared``, waited for by nobody.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable
from typing import Any

import attrs

from ..errors import DecodeError, GatewayError, UniapiError, UpstreamError, to_openai_error
from .redact import credentials, redact
from ..streams import DONE, encode_event
from ..routing.plan import Attempt, AttemptSource, Consult
from ..vendors.base import StreamChunk, StreamDecoder, StreamDone, StreamFailed
from .actions import (EndResponse, RelayAction, RunShared, SendData, SendHead, StartUpstream,
                      StopUpstream, TellShared, TokenRefused)
from .events import (
    ClientGone,
    DeadlineReached,
    RelayEvent,
    SharedDone,
    UpstreamData,
    UpstreamEnded,
    UpstreamFailed,
    UpstreamHead,
)
from ..routing.retry import verdict

__all__ = ["State", "Relay", "Outcome", "AttemptRecord", "SSE_HEADERS",
           "JSON_HEADERS"]

SSE_HEADERS = (("content-type", "text/event-stream; charset=utf-8"),
               ("cache-control", "no-cache"), ("x-accel-buffering", "no"))
JSON_HEADERS = (("content-type", "application/json"),)

#: how long to wait for the upstream to end its body after ``[DONE]`` before dropping it
DRAIN_TIMEOUT = 5.0
#: a front with keep-alives (Anthropic's ``ping`` events) gets one after this many seconds
#: without an upstream byte on a committed stream
PING_EVERY = 10.0
#: an upstream error body is read up to this size (ERR-3)
MAX_ERROR_BODY = 65536


class State(enum.Enum):
    CONSULTING = "consulting"
    CONNECTING = "connecting"
    BUFFERING = "buffering"
    ERROR_BODY = "error_body"
    STREAM_OPEN = "stream_open"
    STREAMING = "streaming"
    DRAINING = "draining"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    # members are singletons: hash by identity, in C, not Enum's Python-level hash of the name
    # (the (state, event type) table is looked up on every event)
    __hash__ = object.__hash__


FINAL_STATES = frozenset({State.DONE, State.FAILED, State.CANCELLED})


@attrs.frozen
class AttemptRecord:
    """One upstream attempt of a request, for logs, stats and metrics."""

    provider: str
    model: str  # the upstream model name sent
    #: "ok", "client_closed", or "<failure kind>:<status>" ("timeout:504", "status:429")
    outcome: str
    key: str | None  # the upstream key's digest label (``Attempt.key``), None when keyless
    latency: float  # seconds from the attempt's start to its end


@attrs.define
class Outcome:
    """What happened, for logs and stats."""

    status: int = 0
    error: UniapiError | None = None
    client_closed: bool = False
    usage: dict | None = None
    #: every attempt, with its key digest and latency
    tries: list[AttemptRecord] = attrs.Factory(list)
    #: when the answer's first body byte was handed to the client (``now``), None: never
    first_byte: float | None = None

    @property
    def attempts(self) -> list[tuple[str, str, str]]:
        """(provider, model, result) of each attempt: ``tries`` in their older shape."""
        return [(t.provider, t.model, t.outcome) for t in self.tries]


class Relay:
    """The relay machine for one request (see the module docstring)."""

    def __init__(self, source: AttemptSource, *, stream: bool,
                 headers: tuple[tuple[str, str], ...] = (), max_body: int = 64 << 20,
                 triggers: tuple[bytes, ...] = (),
                 labels: tuple[str | None, str | None] = (None, None),
                 front: Any = None) -> None:
        self._source = source
        #: how answers and errors are written for a front other than OpenAI chat
        #: (``fronts/front.py``); None: OpenAI's own shapes, unchanged
        self._front = front
        #: (the client key's digest label, the model asked for), for the request's record
        self.labels = labels
        #: ``error_triggers`` as they appear in JSON text: a first answer holding one fails
        self._triggers = triggers
        self._stream = stream
        self._headers = headers  # extra response headers (x-request-id…)
        self._max_body = max_body
        self.state = State.CONNECTING
        self.outcome = Outcome()
        self._attempt: Attempt | None = None
        self._deadline: float | None = None
        #: a committed stream of a front with keep-alives (``front.ping``) is sent one when
        #: the upstream has been silent for ``PING_EVERY`` seconds; None: no keep-alives
        self._ping_at: float | None = None
        self._status = 0
        self._resp_headers: tuple[tuple[str, str], ...] = ()
        self._body = bytearray()
        self._decoder: StreamDecoder | None = None
        self._upstream_open = False
        self._committed = False
        self._ref = 0  # the ref of the current attempt's StartUpstream; 0: none yet
        self._attempt_started = 0.0
        self._refs: Callable[[], int] = itertools.count(1).__next__
        #: CONSULTING: the failure that asked for the next attempt (None: the first)
        self._consulting_for: UpstreamError | None = None

    # -- public API ---------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def committed(self) -> bool:
        """Whether the client has been sent anything (the commit point has passed)."""
        return self._committed

    def next_deadline(self) -> float | None:
        if self.finished:
            return None
        if self._ping_at is not None and self.state is State.STREAMING and (
                self._deadline is None or self._ping_at < self._deadline):
            return self._ping_at
        return self._deadline

    def start(self, now: float, refs: Callable[[], int] | None = None) -> list[RelayAction]:
        """The first actions: open the first attempt (or answer at once if there is none).
        ``refs`` hands out the ref of each attempt's ``StartUpstream`` (the connection's one id
        space); by default the attempts are numbered 1, 2, 3…"""
        if refs is not None:
            self._refs = refs
        out: list[RelayAction] = []
        self._next_or_fail(now, None, out)
        return out

    def handle(self, event: RelayEvent, now: float) -> list[RelayAction]:
        """Feed one event; returns the actions to perform, in order."""
        if isinstance(event, (UpstreamHead, UpstreamData, UpstreamEnded, UpstreamFailed)):
            if event.ref != self._ref:
                return []  # a late event from an abandoned attempt
        handler = _TRANSITIONS.get((self.state, type(event)))
        if handler is None:
            return []
        out: list[RelayAction] = []
        try:
            handler(self, event, now, out)
        except Exception as exc:  # a translator bug: fail this attempt, never the server
            out.clear()
            if self._attempt is None or self.state is State.CONSULTING:  # a routing bug
                if self._ref:
                    out.append(StopUpstream(self._ref))
                self._respond_error(GatewayError("internal error while routing the request",
                                                 status=500, code="internal_error"), out)
                return out
            err = UpstreamError(f"internal error while reading the upstream answer "
                                f"({type(exc).__name__})", kind="decode",
                                code="translation_error")
            self._any_failure(err, now, out)
        return out

    # -- transitions --------------------------------------------------------------------------

    def _on_head(self, ev: UpstreamHead, now: float, out: list[RelayAction]) -> None:
        self._status, self._resp_headers = ev.status, ev.headers
        self._touch(now)
        if ev.status >= 400:
            self.state = State.ERROR_BODY
        elif ev.status < 200 or ev.status >= 300:
            self._attempt_failed(UpstreamError(f"upstream answered HTTP {ev.status}",
                                               kind="protocol", upstream_status=ev.status),
                                 now, out)
        elif self._stream and _is_event_stream(ev.headers):
            assert self._attempt is not None
            self._decoder = self._attempt.exchange.stream_decoder()
            self.state = State.STREAM_OPEN
        else:
            # whole body; a JSON answer to a streaming request is read whole too: it is
            # almost always an error object sent with status 200 (ERR-4)
            self.state = State.BUFFERING

    def _on_body_data(self, ev: UpstreamData, now: float, out: list[RelayAction]) -> None:
        self._touch(now)
        self._body += ev.data
        limit = MAX_ERROR_BODY if self.state is State.ERROR_BODY else self._max_body
        if len(self._body) > limit:
            if self.state is State.ERROR_BODY:
                del self._body[limit:]
                self._on_body_end(ev, now, out)  # enough to report the error
            else:
                self._attempt_failed(UpstreamError("upstream response body is too large",
                                                   kind="protocol"), now, out)

    def _on_body_end(self, ev: RelayEvent, now: float, out: list[RelayAction]) -> None:
        attempt = self._attempt
        assert attempt is not None
        if isinstance(ev, UpstreamEnded):
            self._upstream_open = False
        body, self._body = bytes(self._body), bytearray()
        if self.state is State.ERROR_BODY:
            err = attempt.exchange.parse_error(self._status, self._resp_headers, body)
            if self._status == 401 and attempt.credential is not None:
                out.append(TokenRefused(attempt.credential))
            self._attempt_failed(err, now, out)
            return
        try:
            payload = attempt.exchange.parse_body(self._status, self._resp_headers, body)
            self._check_triggers(payload)
            if self._stream:  # a 2xx JSON answer to a streaming request
                raise UpstreamError("upstream answered a streaming request without a stream",
                                    kind="protocol", upstream_status=self._status)
        except UpstreamError as err:
            self._attempt_failed(err, now, out)
            return
        self._succeeded(now, out)
        self._committed = True
        # the usage the exchange read from a whole answer, if it keeps one (for stats)
        self.outcome.usage = getattr(attempt.exchange, "usage", None)
        if self._front is not None:
            payload = self._front.whole(payload, attempt.exchange)
        head = JSON_HEADERS
        content_type = getattr(attempt.exchange, "response_content_type", None)
        if content_type is not None:  # an exchange relaying non-JSON answers (audio text)
            head = (("content-type", content_type(self._resp_headers)),)
        out.append(SendHead(200, head + self._headers, len(payload)))
        out.append(SendData(payload))
        self.outcome.first_byte = now
        out.append(EndResponse())

    def _on_stream_data(self, ev: UpstreamData, now: float, out: list[RelayAction]) -> None:
        self._touch(now)
        assert self._decoder is not None
        try:
            items = self._decoder.feed(ev.data)
        except DecodeError as exc:
            self._stream_failed(_decode_failure(exc), now, out)
            return
        self._stream_items(items, now, out, ended=False)

    def _on_stream_end(self, ev: UpstreamEnded, now: float, out: list[RelayAction]) -> None:
        self._upstream_open = False
        assert self._decoder is not None
        try:
            items = self._decoder.close()
        except DecodeError as exc:
            self._stream_failed(_decode_failure(exc), now, out)
            return
        self._stream_items(items, now, out, ended=True)

    def _stream_items(self, items: list, now: float, out: list[RelayAction], *,
                      ended: bool) -> None:
        chunks: list[bytes] = []
        for item in items:
            if isinstance(item, StreamChunk):
                chunks.append(item.data)
                continue
            if chunks:
                self._send_chunks(chunks, out, now)
                if self.state is not State.STREAMING:
                    return
                chunks = []
            if isinstance(item, StreamDone):
                self.outcome.usage = item.usage
                if self.state is State.STREAM_OPEN:  # nothing came: an empty answer
                    self._attempt_failed(UpstreamError("upstream sent an empty stream",
                                                       kind="empty"), now, out)
                    return
                out.append(SendData(DONE if self._front is None
                                    else self._front.done(item.usage)))
                out.append(EndResponse())
                self._succeeded(now, out)
                if self._upstream_open and not ended:
                    self.state = State.DRAINING
                    self._deadline = now + DRAIN_TIMEOUT
                return
            if isinstance(item, StreamFailed):
                self._stream_failed(item.error, now, out)
                return
        if chunks:
            self._send_chunks(chunks, out, now)

    def _check_triggers(self, data: bytes) -> None:
        for trigger in self._triggers:
            if trigger in data:
                raise UpstreamError("the upstream answer matched an error trigger",
                                    kind="trigger", code="error_trigger")

    def _send_chunks(self, chunks: list[bytes], out: list[RelayAction], now: float) -> None:
        if self.state is State.STREAM_OPEN:  # the commit point
            try:
                self._check_triggers(b"".join(chunks))
            except UpstreamError as err:
                self._attempt_failed(err, now, out)
                return
            self.state = State.STREAMING
            self.outcome.status = 200
            self.outcome.first_byte = now
            self._committed = True
            head = SSE_HEADERS if self._front is None else (
                getattr(self._front, "stream_headers", None) or SSE_HEADERS)
            out.append(SendHead(200, head + self._headers, None))
            if self._front is not None:
                assert self._attempt is not None
                self._front.open_stream(self._attempt.exchange)
                if hasattr(self._front, "ping"):
                    self._ping_at = now + PING_EVERY
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        out.append(SendData(data if self._front is None else self._front.chunk(data)))

    def _on_failed(self, ev: UpstreamFailed, now: float, out: list[RelayAction]) -> None:
        self._upstream_open = False
        err = UpstreamError(f"upstream connection failed: {ev.message}", kind=ev.kind,
                            status=502, code="upstream_unreachable" if ev.kind == "connect"
                            else "upstream_connection_error")
        self._any_failure(err, now, out)

    def _on_deadline(self, ev: DeadlineReached, now: float, out: list[RelayAction]) -> None:
        if self._ping_at is not None and now >= self._ping_at and self.state is State.STREAMING:
            self._ping_at = now + PING_EVERY
            if self._front is not None:
                out.append(SendData(self._front.ping()))
        if self._deadline is None or now < self._deadline:
            return
        if self.state is State.DRAINING:
            self._close_upstream(out)
            self.state = State.DONE
            return
        assert self._attempt is not None
        err = UpstreamError(f"upstream did not answer within {self._attempt.timeout:g} s",
                            kind="timeout", status=504, type="timeout_error",
                            code="upstream_timeout")
        self._any_failure(err, now, out)

    def _on_drained(self, ev: UpstreamEnded, now: float, out: list[RelayAction]) -> None:
        self._upstream_open = False
        self.state = State.DONE

    def _on_drain_failed(self, ev: UpstreamFailed, now: float, out: list[RelayAction]) -> None:
        self._upstream_open = False
        self.state = State.DONE

    def _on_client_gone(self, ev: ClientGone, now: float, out: list[RelayAction]) -> None:
        self._close_upstream(out)
        self.outcome.client_closed = True
        if self.state is not State.DRAINING:
            if self._decoder is not None and self.outcome.usage is None:
                # the tokens seen so far: what the stream reported before the client left
                # (Anthropic's message_start, Gemini's running usageMetadata; None when none)
                self.outcome.usage = getattr(self._decoder, "usage", None)
            if self._attempt is not None:
                self._tried("client_closed", now)
            self.outcome.status = self.outcome.status or 499
        self.state = State.CANCELLED if self.state is not State.DRAINING else State.DONE

    # -- helpers ------------------------------------------------------------------------------

    def _touch(self, now: float) -> None:
        """Activity on the current attempt: the timeout counts from here (idle timeout)."""
        assert self._attempt is not None
        self._deadline = now + self._attempt.timeout
        if self._ping_at is not None:
            self._ping_at = now + PING_EVERY

    def _any_failure(self, err: UpstreamError, now: float, out: list[RelayAction]) -> None:
        if self.state is State.STREAMING:
            self._stream_failed(err, now, out)
        else:
            self._attempt_failed(err, now, out)

    def _redact(self, err: UpstreamError) -> None:
        """No credential of the attempt in the message the client and the logs will see."""
        if self._attempt is not None:
            err.message = redact(err.message, credentials(self._attempt.exchange.request))
            err.args = (err.message,)

    def _stream_failed(self, err: UpstreamError, now: float, out: list[RelayAction]) -> None:
        self._redact(err)
        if self.state is State.STREAM_OPEN:
            self._attempt_failed(err, now, out)
            return
        # after the commit point: end the stream with an error event, never retry
        self._close_upstream(out)
        self._record(err, now, out)
        self.outcome.error = err
        out.append(SendData(encode_event(to_openai_error(err), "error") if self._front is None
                            else self._front.failed(err)))
        out.append(EndResponse())
        self.state = State.FAILED

    def _attempt_failed(self, err: UpstreamError, now: float, out: list[RelayAction]) -> None:
        """A failure before the commit point: next attempt if allowed, else the final error."""
        self._redact(err)
        self._close_upstream(out)
        self._record(err, now, out)
        if verdict(err).retry:  # routing/retry.py: the one retry-and-blame table
            self._next_or_fail(now, err, out)
        else:
            self._respond_error(err, out)

    def _next_or_fail(self, now: float, failure: UpstreamError | None,
                      out: list[RelayAction]) -> None:
        self._proceed(self._source.next_attempt(now, failure), failure, now, out)

    def _on_consulted(self, ev: SharedDone | DeadlineReached, now: float,
                      out: list[RelayAction]) -> None:
        if isinstance(ev, SharedDone):
            if ev.ref != self._ref:
                return  # the answer to a consult given up on
            replies = ev.replies
        else:
            if self._deadline is None or now < self._deadline:
                return
            out.append(StopUpstream(self._ref))  # too slow: decide without it
            replies = None
        self._proceed(self._source.resume(replies, now), self._consulting_for, now, out)

    def _on_client_gone_consulting(self, ev: ClientGone, now: float,
                                   out: list[RelayAction]) -> None:
        out.append(StopUpstream(self._ref))
        self.outcome.client_closed = True
        self.outcome.status = self.outcome.status or 499
        self.state = State.CANCELLED

    def _proceed(self, attempt: Attempt | Consult | None, failure: UpstreamError | None,
                 now: float, out: list[RelayAction]) -> None:
        if isinstance(attempt, Consult):
            self.state, self._consulting_for = State.CONSULTING, failure
            self._deadline = now + attempt.timeout
            self._ref = self._refs()
            out.append(RunShared(self._ref, (attempt.command,), attempt.timeout))
            return
        if attempt is None:
            self._respond_error(failure or self._source.refusal(), out)
            return
        self._attempt = attempt
        self._attempt_started = now
        self._status, self._resp_headers, self._body = 0, (), bytearray()
        self._decoder = None
        self._upstream_open = True
        self.state = State.CONNECTING
        self._deadline = now + attempt.timeout
        self._ref = self._refs()
        out.append(StartUpstream(self._ref, attempt.exchange.request, attempt.proxy,
                                 attempt.provider, attempt.key_index))

    def _respond_error(self, err: UniapiError, out: list[RelayAction]) -> None:
        body = to_openai_error(err) if self._front is None else self._front.error_body(err)
        self.outcome.status = err.status
        self.outcome.error = err
        self.state = State.FAILED
        self._committed = True
        out.append(SendHead(err.status, JSON_HEADERS + err.headers + self._headers, len(body)))
        out.append(SendData(body))
        out.append(EndResponse())

    def _succeeded(self, now: float, out: list[RelayAction]) -> None:
        assert self._attempt is not None
        self.outcome.status = 200
        self._tried("ok", now)
        if tell := self._source.attempt_finished(self._attempt, now, None):
            out.append(TellShared(tuple(tell)))
        self.state = State.DONE

    def _record(self, err: UpstreamError, now: float, out: list[RelayAction]) -> None:
        assert self._attempt is not None
        self._tried(f"{err.kind}:{err.upstream_status or err.status}", now)
        if tell := self._source.attempt_finished(self._attempt, now, err):
            out.append(TellShared(tuple(tell)))

    def _tried(self, outcome: str, now: float) -> None:
        attempt = self._attempt
        assert attempt is not None
        self.outcome.tries.append(AttemptRecord(attempt.provider, attempt.upstream_model, outcome,
                                                attempt.key, now - self._attempt_started))

    def _close_upstream(self, out: list[RelayAction]) -> None:
        if self._upstream_open and self._attempt is not None:
            out.append(StopUpstream(self._ref))
        self._upstream_open = False


def _is_event_stream(headers: tuple[tuple[str, str], ...]) -> bool:
    for k, v in headers:
        if k == "content-type":
            return "json" not in v.lower()  # SSE, or a host that forgot the header
    return True


def _decode_failure(exc: DecodeError) -> UpstreamError:
    return UpstreamError(exc.message, kind="decode", code="upstream_decode_error")


# The event argument is ``Any``: each handler takes the one event type its key names, which a
# Callable type cannot say per entry (``object`` would reject every handler, parameters being
# contravariant). ``Relay.handle`` only calls a handler with an event of its key's type.
Handler = Callable[[Relay, Any, float, list[RelayAction]], None]

#: (state, event type) -> transition; pairs not listed are ignored
_TRANSITIONS: dict[tuple[State, type[RelayEvent]], Handler] = {}
for _s in (State.CONNECTING, State.BUFFERING, State.ERROR_BODY, State.STREAM_OPEN,
           State.STREAMING):
    _TRANSITIONS[(_s, UpstreamFailed)] = Relay._on_failed
    _TRANSITIONS[(_s, DeadlineReached)] = Relay._on_deadline
    _TRANSITIONS[(_s, ClientGone)] = Relay._on_client_gone
_TRANSITIONS.update({
    (State.CONNECTING, UpstreamHead): Relay._on_head,
    (State.CONNECTING, UpstreamEnded): lambda r, e, now, out: r._attempt_failed(
        UpstreamError("upstream closed without answering", kind="eof"), now, out),
    (State.BUFFERING, UpstreamData): Relay._on_body_data,
    (State.BUFFERING, UpstreamEnded): Relay._on_body_end,
    (State.ERROR_BODY, UpstreamData): Relay._on_body_data,
    (State.ERROR_BODY, UpstreamEnded): Relay._on_body_end,
    (State.STREAM_OPEN, UpstreamData): Relay._on_stream_data,
    (State.STREAM_OPEN, UpstreamEnded): Relay._on_stream_end,
    (State.STREAMING, UpstreamData): Relay._on_stream_data,
    (State.STREAMING, UpstreamEnded): Relay._on_stream_end,
    (State.DRAINING, UpstreamEnded): Relay._on_drained,
    (State.DRAINING, UpstreamFailed): Relay._on_drain_failed,
    (State.DRAINING, DeadlineReached): Relay._on_deadline,
    (State.DRAINING, ClientGone): Relay._on_client_gone,
    (State.CONSULTING, SharedDone): Relay._on_consulted,
    (State.CONSULTING, DeadlineReached): Relay._on_consulted,
    (State.CONSULTING, ClientGone): Relay._on_client_gone_consulting,
})
del _s
