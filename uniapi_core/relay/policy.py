"""Which upstream failures may move on to the next attempt (ERR-1, docs/contracts.md).

Retryable, before the commit point only: connection errors, timeouts, 408, 409, 429, 5xx, an
empty answer, an ``error_triggers`` match, a cut or garbled stream, 401/403 (the key may be
bad: another key or channel may work) and Bedrock's 424 (``ModelStreamErrorException``: the
model failed, not the request; the error table counts it as a server error). Never
400/404/413/422 and other 4xx: the request itself is wrong and would fail everywhere.
"""

from __future__ import annotations

from ..errors import UpstreamError

__all__ = ["is_retryable", "RETRYABLE_STATUSES"]

RETRYABLE_STATUSES = frozenset({401, 403, 408, 409, 424, 429})
_RETRYABLE_KINDS = frozenset({"connect", "reset", "timeout", "eof", "empty", "truncated",
                              "decode", "protocol", "trigger"})


def is_retryable(err: UpstreamError) -> bool:
    if err.kind == "status":
        status = err.upstream_status or err.status
        return status in RETRYABLE_STATUSES or status >= 500
    return err.kind in _RETRYABLE_KINDS
