"""Outputs of the relay machine: commands the transport executes, in the imperative.

A transport performs them in order and reports what happened as events; it decides nothing.
"""

from __future__ import annotations

import attrs

from ..vendors.base import UpstreamRequest

__all__ = ["StartUpstream", "StopUpstream", "SendHead", "SendData", "EndResponse",
           "TokenRefused", "RunShared", "TellShared", "RelayAction"]


@attrs.frozen
class StartUpstream:
    """Run one upstream exchange: connect (through ``proxy`` if set), send ``request``, and
    report its ``UpstreamHead/Data/Ended/Failed`` events with ``ref``. ``channel`` and
    ``key_index`` say which provider and key a routing attempt is for (None for other
    exchanges, such as a token POST); a transport needs neither (``uniapi simulate`` does)."""

    ref: int
    request: UpstreamRequest
    proxy: str | None = None
    channel: str | None = None
    key_index: int | None = None


@attrs.frozen
class StopUpstream:
    """Abandon exchange ``ref``: stop reading and close its connection (no reuse)."""

    ref: int


@attrs.frozen
class SendHead:
    """Send the client response head. ``content_length`` None means a streamed body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    content_length: int | None = None


@attrs.frozen
class SendData:
    data: bytes


@attrs.frozen
class EndResponse:
    """The client response is complete."""


@attrs.frozen
class TokenRefused:
    """The upstream answered 401 to an attempt carrying ``credential`` (a Vertex service
    account key and access token): the request machine drops that token from the cache."""

    credential: tuple[tuple[str, str, str], str]


@attrs.frozen
class RunShared:
    """Run ``commands`` (a pipeline) on the process's shared-state Redis and report
    ``SharedDone(ref, replies)``; replies None when Redis is not connected, or did not answer
    within ``timeout`` seconds (the transport never waits longer, nor for a connection)."""

    ref: int
    commands: tuple[tuple[str, ...], ...]
    timeout: float


@attrs.frozen
class TellShared:
    """Send ``commands`` to the shared-state Redis; nobody waits for the replies (nothing is
    sent when it is not connected)."""

    commands: tuple[tuple[str, ...], ...]


RelayAction = (TokenRefused | StartUpstream | StopUpstream | SendHead | SendData | EndResponse
               | RunShared | TellShared)
