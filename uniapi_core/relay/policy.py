"""Whether an upstream failure may move on to the next attempt (ERR-1, docs/contracts.md).

The answer is the ``retry`` column of the one retry-and-blame table,
``uniapi_core.routing.retry``; this name stays for the callers that only ask that question.
"""

from __future__ import annotations

from ..errors import UpstreamError
from ..routing.retry import verdict

__all__ = ["is_retryable"]


def is_retryable(err: UpstreamError) -> bool:
    """``verdict(err).retry``: may the relay try the next attempt (before the commit point)?"""
    return verdict(err).retry
