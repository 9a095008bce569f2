"""Outputs of the relay machine: commands the transport executes, in the imperative.

A transport performs them in order and reports what happened as events; it decides nothing.
"""

from __future__ import annotations

import attrs

from ..vendors.base import UpstreamRequest

__all__ = ["OpenUpstream", "CancelUpstream", "SendHead", "SendData", "EndResponse",
           "RelayAction"]


@attrs.frozen
class OpenUpstream:
    """Start attempt ``attempt``: connect (through ``proxy`` if set) and send ``request``."""

    attempt: int
    request: UpstreamRequest
    proxy: str | None = None


@attrs.frozen
class CancelUpstream:
    """Abandon attempt ``attempt``: stop reading and close its connection (no reuse)."""

    attempt: int


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


RelayAction = OpenUpstream | CancelUpstream | SendHead | SendData | EndResponse
