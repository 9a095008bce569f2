"""Sans-IO HTTP/1.1 client connection to an upstream, over h11.

Theory of operation
-------------------
``ClientConnection`` carries one request/response cycle at a time. ``send_request`` returns the
whole request as bytes (the body is in memory: JSON payloads are small). ``receive_data``
takes whatever the transport read and returns ``ResponseHead``, then ``ResponseData`` pieces,
then ``ResponseEnd``; interim ``1xx`` responses are skipped.

Received bytes wait in ``_pending`` and are fed to h11 at most 16 KiB at a time, with
``next_event`` called between slices. Until the final response head is parsed, h11 never
holds more than ``max_head`` bytes of it: if h11 still needs data at that point the head is
too large (``UpstreamProtocolError(kind="head_too_large")``), however the bytes were cut.
EOF (``b""``) is passed to h11 only after everything pending, so a close-delimited body ends
normally; EOF anywhere else before ``ResponseEnd`` is ``kind="eof"``. Every other violation
is ``kind="protocol"``. No h11 exception escapes; once an error has been raised the connection
is dead and raises it again on every later call.

``reusable`` is True after ``ResponseEnd`` only if both sides agreed to keep the connection
alive and the upstream sent nothing past the response; ``start_next_cycle`` then readies the
next request. Before a request is sent (an idle pooled connection), EOF or stray bytes just make
the connection not reusable.

Outgoing headers go through ``clean_headers`` (latin-1 allowed, so forwarded values stay
byte-transparent); ``Content-Length`` is always ours.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Union

import attrs
import h11

from ..errors import UpstreamError
from .server import clean_headers, public_message

__all__ = [
    "UpstreamProtocolError",
    "ResponseHead",
    "ResponseData",
    "ResponseEnd",
    "ClientEvent",
    "ClientConnection",
]

#: Without ``Accept-Encoding`` a server may pick any content coding (RFC 9110 §12.5.3), and
#: some CDNs do gzip; the relay reads and forwards bodies as they are, so ask for identity.
IDENTITY = (b"accept-encoding", b"identity")

_SLICE = 16 * 1024
_METHOD = re.compile(r"[-!#$%&'*+.^_`|~0-9a-zA-Z]+\Z")
_TARGET = re.compile(r"[\x21-\x7e]+\Z")


class UpstreamProtocolError(UpstreamError):
    """The upstream broke HTTP/1.1: ``kind`` is ``protocol``, ``eof`` or ``head_too_large``."""

    def __init__(self, message: str, *, kind: str = "protocol") -> None:
        super().__init__(message, kind=kind)


@attrs.frozen
class ResponseHead:
    """The final response head. Header names lower-cased, values decoded latin-1, in order."""

    status: int
    headers: tuple[tuple[str, str], ...]
    reason: str

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``None``."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None


@attrs.frozen
class ResponseData:
    """A piece of the response body (pieces are cut arbitrarily)."""

    data: bytes


@attrs.frozen
class ResponseEnd:
    """The response body is complete."""


ClientEvent = Union[ResponseHead, ResponseData, ResponseEnd]


class ClientConnection:
    """One HTTP/1.1 connection to an upstream, sans I/O (see the module docstring)."""

    def __init__(self, *, max_head: int = 65536) -> None:
        self._max_head = max_head
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_head)
        self._pending = bytearray()
        self._error: UpstreamProtocolError | None = None
        self._eof = False  # the transport reported EOF
        self._eof_fed = False  # ...and h11 has been told
        self._reusable = False
        self._reset_cycle()

    def _reset_cycle(self) -> None:
        self._in_flight = False  # a request was sent and its response has not ended
        self._in_head = True  # the final response head is not parsed yet
        self._head_fed = 0

    @property
    def reusable(self) -> bool:
        """True after ``ResponseEnd`` when the connection may carry another request."""
        return self._reusable and self._error is None and not self._eof

    def send_request(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
    ) -> bytes:
        """Bytes of a whole request. The caller includes ``Host``; ``Content-Length`` is set
        here (omitted only for a ``GET``/``HEAD`` without body), ``Accept-Encoding: identity``
        unless the caller set one. Raises ``ValueError`` for a bad
        method or target or a missing ``Host`` (after header cleaning)."""
        if self._error is not None:
            raise self._error
        if self._in_flight or self._h11.our_state is not h11.IDLE:
            raise RuntimeError("send_request: previous cycle not finished (start_next_cycle)")
        if not _METHOD.match(method):
            raise ValueError("send_request: method is not a token")
        if not _TARGET.match(target):
            raise ValueError("send_request: target must be visible ASCII without spaces")
        clean = [
            (n, v)
            for n, v in clean_headers(headers, allow_obs_text=True)
            if n not in (b"content-length", b"transfer-encoding")
        ]
        if not any(n == b"host" for n, _ in clean):
            raise ValueError("send_request: a valid Host header is required")
        if body or method.upper() not in ("GET", "HEAD"):
            clean.append((b"content-length", str(len(body)).encode("ascii")))
        if not any(n == b"accept-encoding" for n, _ in clean):
            clean.append(IDENTITY)  # see IDENTITY
        try:
            # _parsed=True: the names and values were validated by clean_headers above;
            # h11 still checks framing headers, but skips re-running its regexes on each
            out = self._h11.send(
                h11.Request(method=method.encode("ascii"), target=target.encode("ascii"),
                            headers=clean, _parsed=True)
            ) or b""
            if body:
                out += self._h11.send(h11.Data(data=body)) or b""
            out += self._h11.send(h11.EndOfMessage()) or b""
        except h11.ProtocolError as exc:  # pre-validated above; defensive
            raise ValueError(f"send_request: {exc}") from None
        self._reusable = False
        self._in_flight = True
        return out

    def receive_data(self, data: bytes) -> list[ClientEvent]:
        """Take bytes read from the upstream (``b""`` = EOF) and return response events.

        Raises ``UpstreamProtocolError`` on a violation, EOF before the response ended, or an
        oversize head; events decoded in the same call are then discarded.
        """
        if self._error is not None:
            raise self._error
        if not self._in_flight:
            # Idle (pooled, or after ResponseEnd): EOF or stray bytes retire the connection.
            if not data:
                self._eof = True
            self._reusable = False
            return []
        if not data:
            self._eof = True
        elif not self._pending and len(data) <= (
                min(_SLICE, self._max_head - self._head_fed) if self._in_head else _SLICE):
            # the usual case: the whole read is one slice h11 may take; hand it over as is
            # (what the loop below would do, without copying it through _pending)
            if self._in_head:
                self._head_fed += len(data)
            self._h11.receive_data(data)
        else:
            self._pending += data
        events: list[ClientEvent] = []
        while True:
            try:
                event = self._h11.next_event()
            except h11.ProtocolError as exc:
                kind = "eof" if self._eof_fed else "protocol"
                raise self._fail(kind, public_message(exc, "upstream protocol error")) from None
            if event is h11.NEED_DATA:
                if self._in_head and self._head_fed >= self._max_head:
                    raise self._fail("head_too_large", "upstream response head too large")
                room = self._max_head - self._head_fed if self._in_head else _SLICE
                n = min(_SLICE, room, len(self._pending))
                if n:
                    piece = bytes(self._pending[:n])
                    del self._pending[:n]
                    if self._in_head:
                        self._head_fed += n
                    self._h11.receive_data(piece)
                elif self._eof and not self._eof_fed:
                    self._eof_fed = True
                    self._h11.receive_data(b"")
                else:
                    return events
            elif isinstance(event, h11.InformationalResponse):
                # The next head starts with what h11 still holds.
                self._head_fed = len(self._h11.trailing_data[0])
            elif isinstance(event, h11.Response):
                self._in_head = False
                events.append(
                    ResponseHead(
                        status=event.status_code,
                        headers=tuple(
                            (n.decode("ascii"), v.decode("latin-1")) for n, v in event.headers
                        ),
                        reason=bytes(event.reason).decode("latin-1"),
                    )
                )
            elif isinstance(event, h11.Data):
                if event.data:
                    events.append(ResponseData(bytes(event.data)))
            elif isinstance(event, h11.EndOfMessage):
                events.append(ResponseEnd())
                self._in_flight = False
                self._reusable = (
                    self._h11.our_state is h11.DONE
                    and self._h11.their_state is h11.DONE
                    and not self._pending
                    and not self._h11.trailing_data[0]
                    and not self._eof
                )
                self._pending.clear()
                return events
            elif isinstance(event, h11.ConnectionClosed):
                raise self._fail("eof", "upstream closed the connection before the response")
            else:  # PAUSED: h11 has nothing for us, e.g. a 101 we never asked for
                raise self._fail("protocol", "unexpected upstream protocol switch")

    def start_next_cycle(self) -> None:
        """Ready the connection for its next request; requires ``reusable``."""
        if not self.reusable:
            raise RuntimeError("start_next_cycle: connection is not reusable")
        self._h11.start_next_cycle()
        self._reusable = False
        self._reset_cycle()

    def _fail(self, kind: str, message: str) -> UpstreamProtocolError:
        self._error = UpstreamProtocolError(message, kind=kind)
        self._in_flight = False
        self._reusable = False
        self._pending.clear()
        return self._error
