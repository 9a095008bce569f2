"""Start-up decisions both command-line entries share, as pure functions of their inputs.

The entries read the environment and files; what those values *mean* is decided here, once:
where the config comes from, what ``TIMEOUT`` says, and the front's flags and limits.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

import attrs

from .http.h2server import H2Limits
from .http.server import ServerLimits

__all__ = ["config_source", "env_timeout", "FrontOptions", "add_front_args", "front_options"]


def config_source(flag: str | None, env: Mapping[str, str]) -> tuple[str, str]:
    """``("file", path)`` or ``("url", url)``: ``--config``, else ``CONFIG_URL`` (a path or
    an http(s) URL), else ``./api.yaml``."""
    if flag:
        return "file", flag
    value = env.get("CONFIG_URL", "").strip()
    if value.startswith(("http://", "https://")):
        return "url", value
    return "file", value or "api.yaml"


def env_timeout(env: Mapping[str, str]) -> float | None:
    """``TIMEOUT`` in seconds, None when unset; ``ValueError`` when it is not a positive
    number."""
    raw = env.get("TIMEOUT", "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"TIMEOUT={raw!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise ValueError("TIMEOUT must be a positive number of seconds")
    return value


@attrs.frozen(kw_only=True)
class FrontOptions:
    """How a transport's front behaves; defaults are docs/architecture.md's table. Both transports
    take this one object, so their flags and limits cannot drift apart."""

    limits: ServerLimits = ServerLimits()
    h2: H2Limits = H2Limits()
    #: open client connections; over it a new connection is accepted and closed at once
    max_connections: int = 1024
    #: a client that accepts no bytes for this long is dropped (and its upstream cancelled)
    write_stall_timeout: float = 60.0
    #: after a shutdown signal, how long in-flight requests may run on
    drain_grace: float = 30.0
    #: TLS: both set means HTTPS with ALPN h2 and http/1.1 on the port
    certfile: str | None = None
    keyfile: str | None = None
    #: processes sharing the port (SO_REUSEPORT); each has its own state (limits, cooldowns)
    workers: int = 1

    @property
    def reuse_port(self) -> bool:
        return self.workers > 1


def add_front_args(parser: argparse.ArgumentParser) -> None:
    """The front's flags; every entry gets them, with the rest, from ``cmdline.add_serve_args``."""
    d, limits = FrontOptions(), ServerLimits()
    g = parser.add_argument_group("front limits (defaults: docs/architecture.md)")
    g.add_argument("--certfile", help="TLS certificate chain (PEM); with --keyfile serves "
                   "HTTPS, HTTP/2 offered by ALPN")
    g.add_argument("--keyfile", help="TLS private key (PEM)")
    g.add_argument("--max-connections", type=int, default=d.max_connections)
    g.add_argument("--max-body-bytes", type=int, default=limits.max_body)
    g.add_argument("--max-head-bytes", type=int, default=limits.max_head)
    g.add_argument("--max-headers", type=int, default=limits.max_headers)
    g.add_argument("--head-timeout", type=float, default=limits.head_timeout)
    g.add_argument("--body-timeout", type=float, default=limits.body_idle_timeout)
    g.add_argument("--keepalive-timeout", type=float, default=limits.keepalive_timeout)
    g.add_argument("--write-timeout", type=float, default=d.write_stall_timeout,
                   help="drop a client that accepts no bytes for this long")
    g.add_argument("--drain-grace", type=float, default=d.drain_grace,
                   help="seconds in-flight requests get after SIGTERM/SIGINT")
    g.add_argument("--h2-max-streams", type=int, default=d.h2.max_concurrent_streams)
    g.add_argument("--workers", type=int, default=d.workers,
                   help="processes serving the port (SO_REUSEPORT), e.g. one per core; rate "
                   "limits, cooldowns and stats are then per process")


def front_options(args: argparse.Namespace) -> FrontOptions:
    """``FrontOptions`` from parsed ``add_front_args`` flags; ``ValueError`` names a bad one."""
    if bool(args.certfile) != bool(args.keyfile):
        raise ValueError("--certfile and --keyfile go together")
    for flag in ("max_connections", "max_body_bytes", "max_head_bytes", "max_headers",
                 "h2_max_streams", "workers"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be at least 1")
    for flag in ("head_timeout", "body_timeout", "keepalive_timeout", "write_timeout",
                 "drain_grace"):
        value = getattr(args, flag)
        if not 0 < value < float("inf"):
            raise ValueError(f"--{flag.replace('_', '-')} must be a positive number of seconds")
    limits = attrs.evolve(ServerLimits(), max_body=args.max_body_bytes,
                          max_head=args.max_head_bytes, max_headers=args.max_headers,
                          head_timeout=args.head_timeout, body_idle_timeout=args.body_timeout,
                          keepalive_timeout=args.keepalive_timeout)
    return FrontOptions(limits=limits,
                        h2=attrs.evolve(H2Limits(), max_concurrent_streams=args.h2_max_streams,
                                        stall_timeout=args.write_timeout),
                        max_connections=args.max_connections,
                        write_stall_timeout=args.write_timeout, drain_grace=args.drain_grace,
                        certfile=args.certfile, keyfile=args.keyfile, workers=args.workers)
