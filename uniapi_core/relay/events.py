"""Inputs of the relay machine: facts the transport reports, in the past tense.

Every upstream event names the ``ref`` of the ``StartUpstream`` it answers: one id space per
client connection, shared by relay attempts, image fetches, token POSTs and watches. A late
event of an attempt the relay already abandoned is recognised by its ref and ignored.
"""

from __future__ import annotations

import attrs

from ..errors import FailureKind

__all__ = ["UpstreamHead", "UpstreamData", "UpstreamEnded", "UpstreamFailed", "ClientGone",
           "DeadlineReached", "RelayEvent"]


@attrs.frozen
class UpstreamHead:
    ref: int
    status: int
    headers: tuple[tuple[str, str], ...]


@attrs.frozen
class UpstreamData:
    ref: int
    data: bytes


@attrs.frozen
class UpstreamEnded:
    """The upstream response body is complete (its connection may be reused)."""

    ref: int


@attrs.frozen
class UpstreamFailed:
    """The transport could not complete the exchange.

    ``kind``: ``connect`` (DNS, refused, TLS, proxy), ``reset`` (connection lost), ``protocol``
    (the upstream broke HTTP), ``eof`` (closed before the response ended); converted to a
    ``FailureKind`` here, so a misspelt kind fails where the event is made.
    """

    ref: int
    kind: FailureKind = attrs.field(converter=FailureKind)
    message: str = attrs.field()


@attrs.frozen
class ClientGone:
    """The client closed its connection or reset its stream."""


@attrs.frozen
class DeadlineReached:
    """``relay.next_deadline()`` has passed."""


@attrs.frozen
class SharedDone:
    """The replies of ``RunShared`` ``ref`` (one per command), or None: Redis was not
    connected or did not answer in time."""

    ref: int
    replies: list | None


RelayEvent = (UpstreamHead | UpstreamData | UpstreamEnded | UpstreamFailed | ClientGone
              | DeadlineReached | SharedDone)
