"""The error tree of uniapi and the one place that renders OpenAI error JSON.

Every error the gateway can answer with carries its HTTP status, its OpenAI ``type`` and its
``code``, so ``to_openai_error`` never has to guess. Blame is decided where the error is raised:
``ClientError`` is the client's fault (4xx), ``UpstreamError`` the upstream's, ``GatewayError``
ours. ``DecodeError`` is raised only by the stream decoders and is the only exception a decoder
may let escape (docs/contracts.md, DEC-2).
"""

from __future__ import annotations

import enum
import errno
import json
from typing import Any

__all__ = [
    "UniapiError",
    "ClientError",
    "UpstreamError",
    "FailureKind",
    "GatewayError",
    "DecodeError",
    "ConfigError",
    "error_body",
    "to_openai_error",
    "describe_os_error",
]


class UniapiError(Exception):
    """Root of every error uniapi raises on purpose."""

    status: int = 500
    type: str = "server_error"
    code: str | int | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        code: str | int | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        if code is not None:
            self.code = code
        #: extra response headers (e.g. ``Retry-After``)
        self.headers = headers


class ClientError(UniapiError):
    """The request is at fault (bad JSON, bad key, unknown model...)."""

    status = 400
    type = "invalid_request_error"


class FailureKind(enum.StrEnum):
    """What went wrong with an upstream attempt (``UpstreamError.kind``).

    A ``StrEnum``: each member equals its string, so ``kind="timeout"`` and
    ``err.kind == "timeout"`` keep working, while a misspelt kind raises ``ValueError`` where
    the error is made instead of silently becoming non-retryable.
    """

    CONNECT = "connect"  # DNS, refused, TLS, proxy, a bad upstream or proxy URL
    RESET = "reset"  # connection lost, RST_STREAM, GOAWAY
    TIMEOUT = "timeout"  # no first byte, or a gap between chunks, within the attempt timeout
    EOF = "eof"  # closed before the response ended
    EMPTY = "empty"  # an answer without content
    TRUNCATED = "truncated"  # a stream cut before its end event
    DECODE = "decode"  # a body or stream that cannot be parsed
    PROTOCOL = "protocol"  # the upstream broke HTTP, or answered what we did not ask for
    TRIGGER = "trigger"  # the first content matched an ``error_triggers`` string
    HEAD_TOO_LARGE = "head_too_large"  # an HTTP/1.1 response head over the limit
    STATUS = "status"  # the upstream answered with an error status (``upstream_status``)


class UpstreamError(UniapiError):
    """An upstream failed: connection, timeout, bad status or a malformed answer.

    ``kind`` says what happened (a ``FailureKind``; a string is converted, and one that names
    no kind raises ``ValueError``); ``upstream_status`` is the vendor's HTTP status when there
    was one. What it means — retried or not, the key's, the channel's or the request's fault —
    is decided in one table, ``uniapi_core.routing.retry``.
    """

    status = 502
    type = "server_error"
    code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        kind: FailureKind | str = FailureKind.STATUS,
        upstream_status: int | None = None,
        status: int | None = None,
        type: str | None = None,
        code: str | int | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message, status=status, type=type, code=code, headers=headers)
        self.kind = FailureKind(kind)
        self.upstream_status = upstream_status


class GatewayError(UniapiError):
    """uniapi itself cannot serve the request (no channel left, internal fault)."""

    status = 500
    type = "server_error"


class DecodeError(UniapiError):
    """A vendor byte stream violates its framing or carries unparseable data."""

    status = 502
    type = "server_error"
    code = "upstream_decode_error"

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"upstream stream decode error ({kind}): {detail}" if detail else
                         f"upstream stream decode error ({kind})")
        self.kind = kind
        self.detail = detail


class ConfigError(UniapiError):
    """``api.yaml`` cannot be used. ``problems`` lists ``path: message (line N)`` strings."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems) if problems else "invalid configuration")
        self.problems = list(problems)


def error_body(message: str, type: str, code: str | int | None, **extra: Any) -> dict[str, Any]:
    """The OpenAI error object ``{"error": {"message", "type", "code", "param"}}``."""
    err: dict[str, Any] = {"message": message, "type": type, "param": None, "code": code}
    err.update(extra)
    return {"error": err}


def to_openai_error(exc: UniapiError) -> bytes:
    """Render ``exc`` as compact OpenAI error JSON bytes."""
    return json.dumps(
        error_body(exc.message, exc.type, exc.code), ensure_ascii=False, separators=(",", ":")
    ).encode()


_ERRNO_TEXT = {errno.ECONNREFUSED: "connection refused", errno.ECONNRESET: "connection reset",
               errno.ETIMEDOUT: "timed out", errno.EHOSTUNREACH: "host unreachable",
               errno.ENETUNREACH: "network unreachable", errno.EPIPE: "broken pipe",
               errno.ECONNABORTED: "connection aborted",
               errno.EADDRINUSE: "address already in use", errno.EACCES: "permission denied"}


def describe_os_error(exc: BaseException) -> str:
    """A short, runtime-independent text for a network failure, so both transports report
    the same thing: the errno's meaning when one is found on the exception, its causes or its
    group members, else the exception's type."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        code = getattr(e, "errno", None)
        if isinstance(code, int) and code < 0:  # getaddrinfo's EAI_* codes
            return "name not resolved"
        if isinstance(code, int) and code:
            return _ERRNO_TEXT.get(code, errno.errorcode.get(code, f"errno {code}").lower())
        stack += [x for x in (e.__cause__, e.__context__) if x is not None]
        stack += list(getattr(e, "exceptions", ()))
    if "gaierror" in type(exc).__name__ or "Name or service" in str(exc):
        return "name not resolved"
    return type(exc).__name__
