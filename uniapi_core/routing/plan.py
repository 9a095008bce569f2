"""What the relay pulls attempts from (docs/routing.md §7). The retry budget
(``attempt_budget``, ``AUTO_RETRY``) lives with the retry-and-blame table in ``routing/retry.py``.

A source that decides on shared state (``--redis-url``, ``routing/shared.py``) may answer
``next_attempt`` with a ``Consult`` instead of an attempt: the relay has its command run on
Redis and hands the replies to ``resume`` (``None``: no answer in time), which answers as
``next_attempt`` does. ``attempt_finished`` gives back what the fleet should be told of the
outcome (commands whose replies nobody waits for), or nothing.
"""

from __future__ import annotations

from typing import Protocol

import attrs

from ..errors import UniapiError, UpstreamError
from ..vendors.base import Exchange

__all__ = ["Attempt", "AttemptSource", "Consult"]


@attrs.frozen
class Consult:
    """A decision the source needs from the shared state first: run ``command`` (one Redis
    command) and hand its replies to ``AttemptSource.resume``; ``timeout``: seconds after
    which the source is resumed with ``None`` and decides alone."""

    command: tuple[str, ...]
    timeout: float


@attrs.frozen(kw_only=True)
class Attempt:
    """One try of one channel with one provider key."""

    number: int
    provider: str
    upstream_model: str
    key_index: int | None
    exchange: Exchange
    timeout: float
    proxy: str | None = None
    #: Vertex: (service account key, access token) the request carries; a 401 answer makes
    #: the relay say ``TokenRefused`` so the cached token is dropped (VTX-T4)
    credential: tuple[tuple[str, str, str], str] | None = None
    #: the upstream key's digest label for logs and stats (``k-`` + 12 hex digits of its
    #: SHA-256), never the key; None when the attempt carries none
    key: str | None = None


class AttemptSource(Protocol):
    """What the relay needs from routing."""

    def next_attempt(self, now: float, failure: UpstreamError | None
                     ) -> Attempt | Consult | None:
        """The next attempt to make, or ``None`` when none is left (or allowed)."""
        ...

    def resume(self, replies: list | None, now: float) -> Attempt | Consult | None:
        """The replies of the last ``Consult`` (None: none in time); answers as
        ``next_attempt``."""
        ...

    def attempt_finished(self, attempt: Attempt, now: float,
                         error: UpstreamError | None) -> tuple[tuple[str, ...], ...]:
        """``attempt`` ended: ``error`` None means success. Gives the commands that tell the
        shared state of it (none without one)."""
        ...

    def refusal(self) -> UniapiError:
        """The error to answer when not even a first attempt could be made."""
        ...

