"""Start-up decisions both command-line entries share, as pure functions of their inputs.

The entries read the environment and files; what those values *mean* is decided here, once:
where the config comes from, what ``TIMEOUT`` says, the front's flags and limits, and every
line the shell (``uniapi_trio/cli.py``) and the runtimes print or exit with. They only write
these texts; none of them words a message of its own.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable, Mapping, Sequence

import attrs

from .config import Config, ConfigError, Loaded, load_config
from .demo import demo_hint
from .errors import describe_os_error
from .gateway import Gateway, Settings
from .http.h2server import H2Limits
from .http.server import ServerLimits
from .ops.stats import StoreConfig
from .redis.url import parse_redis_url
from .vendors.base import UpstreamRequest

__all__ = ["LOG_FORMATS", "LOG_LINES", "QUIET_LOGGERS", "config_source", "env_timeout", "FrontOptions", "add_front_args",
           "front_options",
           "Launch", "launch", "config_url_request", "load_checked", "fatal", "read_failure",
           "discovery_text", "draining_text", "worker_exit", "workers_verdict", "reload_refused",
           "reloaded_text", "DEMO_RELOAD", "NO_RELOAD"]


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


#: libraries the core calls that log about a client's input by themselves, muted by the
#: command line (their warnings would let a client write the gateway's log, and break the JSON
#: log format): pypdf, which reads PDFs for Cohere (vendors/cohere.py), warns about every
#: broken object it works around
QUIET_LOGGERS = ("pypdf",)
#: the access log formats (``--log-format``)
LOG_FORMATS = ("text", "json", "off")
#: the ``logging`` line format of each: in "json" a line is the record's JSON object alone
LOG_LINES = {"text": "%(asctime)s %(levelname)s %(message)s", "json": "%(message)s",
             "off": "%(asctime)s %(levelname)s %(message)s"}


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
    #: the access log: "text" (one short line) or "json" (one object per request, the record's
    #: fields: ``ServedRecord.log_text``)
    log_format: str = "text"

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
    g.add_argument("--log-format", choices=LOG_FORMATS, default=d.log_format,
                   help="the access log: a short text line, one JSON object per request, or "
                   "none (other messages are still logged)")
    g.add_argument("--no-metrics", action="store_true",
                   help="count nothing for GET /metrics (it answers 404)")
    g.add_argument("--workers", type=int, default=d.workers,
                   help="processes serving the port (SO_REUSEPORT), e.g. one per core; rate "
                   "limits, cooldowns and rotations are per process unless --redis-url")
    g.add_argument("--redis-url", default=None,
                   help="share rate limits, cooldowns and rotations with every process and "
                   "instance using this Redis (redis://[user:pass@]host:port/db, rediss://, "
                   "unix:///path); default: env REDIS_URL (docs/scale-out.md)")


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
                        certfile=args.certfile, keyfile=args.keyfile, workers=args.workers,
                        log_format=getattr(args, "log_format", "text"))


@attrs.frozen(kw_only=True)
class Launch:
    """What to start (``launch``): where, the front's options, the gateway's settings, and
    whether it is ``uniapi demo`` (``demo.DemoUpstream`` served too, and a hint printed)."""

    host: str
    port: int
    options: FrontOptions = FrontOptions()
    settings: Settings = Settings()
    demo: bool = False

    def sharing_metrics(self, directory: str) -> Launch:
        """This launch with its workers publishing their metrics in ``directory`` (the shell
        makes it before forking them), so a scrape of any worker answers with the sum."""
        return attrs.evolve(self, settings=attrs.evolve(self.settings, metrics_dir=directory))

    def workers_text(self) -> str:
        """What ``--workers`` is told at start: without ``--redis-url`` each process keeps
        its own limits, cooldowns and rotations."""
        if self.settings.redis is not None:
            return ""
        n = self.options.workers
        return (f"uniapi: warning: --workers {n} without --redis-url: rate limits, cooldowns "
                f"and rotations are per process (a 10/min key admits up to {n}0/min); "
                f"share them with --redis-url (docs/scale-out.md)\n")

    def gateway(self, config: Config, entropy: random.Random) -> Gateway:
        """The gateway to serve ``config`` with these settings (``entropy``: the shell's)."""
        return Gateway(config, settings=self.settings, entropy=entropy)

    def serving_text(self, port: int, backend: str) -> str:
        """The banner once ``backend`` has bound ``port`` (with the demo's hint)."""
        scheme = "https" if self.options.certfile else "http"
        text = (f"uniapi: serving on {scheme}://{self.host}:{port} ({backend}) HTTP/1.1 and "
                f"HTTP/2\n")
        return text + (demo_hint(self.host, port) if self.demo else "")

    def start_failure(self, exc: BaseException, tls: type[BaseException]) -> str | None:
        """The line for an exception that kept the server from starting: ``tls`` (the shell's
        ``ssl.SSLError``) is about ``--certfile``/``--keyfile``, another ``OSError`` about the
        address; trio wraps them in a group. None: not a start-up failure (let it propagate)."""
        where = f"cannot listen on {self.host}:{self.port}"
        if isinstance(exc, BaseExceptionGroup):
            group = exc.subgroup(tls)
            if group is not None:
                return fatal(f"cannot use --certfile/--keyfile: {describe_os_error(group)}")
            group = exc.subgroup(OSError)
            return None if group is None else fatal(f"{where}: {describe_os_error(group)}")
        if isinstance(exc, tls):
            return fatal(f"cannot use --certfile/--keyfile: {exc}")
        return fatal(f"{where}: {exc}") if isinstance(exc, OSError) else None


def launch(args: argparse.Namespace, env: Mapping[str, str], demo: bool = False) -> Launch:
    """What a serving command's flags and environment mean. ``ValueError`` names the first
    bad one: a front flag, ``TIMEOUT``, then ``--workers`` without a fixed ``--port``."""
    options = front_options(args)
    redis_url = getattr(args, "redis_url", None) or env.get("REDIS_URL") or None
    try:
        redis = None if redis_url is None else parse_redis_url(redis_url)
    except ValueError as exc:
        raise ValueError(f"--redis-url (or REDIS_URL): {exc}") from None
    settings = Settings(env_timeout=env_timeout(env), redis=redis,
                        fetch_allow_private=bool(args.allow_private_image_urls),
                        fetch_allow_http=bool(args.allow_http_image_urls),
                        stats_store=StoreConfig.from_env(env),
                        metrics=not getattr(args, "no_metrics", False),
                        access_log=options.log_format != "off")
    if options.workers > 1 and args.port == 0:
        raise ValueError("--workers needs a fixed --port")
    return Launch(host=args.host, port=args.port, options=options, settings=settings,
                  demo=demo)


def config_url_request(url: str) -> UpstreamRequest:
    """The one GET of ``CONFIG_URL`` (its answer: ``upstream.config_url_text``)."""
    return UpstreamRequest("GET", url, (("accept", "*/*"),))


def load_checked(text: str, source: str) -> tuple[Loaded | None, str]:
    """(the loaded config, or None when it has errors; the text for stderr: one line per
    error, else per warning, each prefixed with ``source``)."""
    try:
        loaded = load_config(text, source)
    except ConfigError as exc:
        return None, "".join(f"{source}: error: {problem}\n" for problem in exc.problems)
    return loaded, "".join(f"{source}: warning: {w}\n" for w in loaded.warnings)


# -- what the shell and the runtimes print or exit with ---------------------------------------

def fatal(reason: object) -> str:
    """The line a refused start exits with (``SystemExit(fatal(...))``)."""
    return f"uniapi: {reason}"


def read_failure(path: str, exc: BaseException) -> str:
    """Why the config file ``path`` cannot be used: ``FileNotFoundError``, another ``OSError``
    or ``UnicodeDecodeError`` from reading it."""
    if isinstance(exc, FileNotFoundError):
        return fatal(f"config file {path!r} not found (use --config PATH, CONFIG_URL, or "
                     f"./api.yaml; try `uniapi demo`)")
    return fatal(f"cannot read {path!r}: {exc}")


def discovery_text(warnings: Sequence[str]) -> str:
    """Model discovery's warnings (``Gateway.discovered``), one line each."""
    return "".join(f"uniapi: warning: {w}\n" for w in warnings)


def draining_text(signal_name: str) -> str:
    """The first SIGTERM/SIGINT (``signal_name``): drain; a second one stops at once."""
    return f"uniapi: {signal_name}: draining (again to stop now)\n"


#: why ``uniapi demo`` does not reload
DEMO_RELOAD = "uniapi demo's config is built in: there is nothing to reload"
#: why a server started without a reload program (embedded, tests) does not reload
NO_RELOAD = "this server was started without a config to reload"


def reload_refused(report: str) -> str:
    """The log's text for a refused hot reload: why (a broken config's problems, one a line,
    each with its line number), and that the old config serves on."""
    return fatal(f"reload refused, the old config serves on:\n{report.rstrip()}") + "\n"


def reloaded_text(source: str) -> str:
    """The log's line once a hot reload's new config serves."""
    return fatal(f"reloaded the config from {source}") + "\n"


def shared_state_text(target: object, write: Callable[[str], object]
                      ) -> Callable[[bool, str], None]:
    """What the log is told of the shared-state Redis (``--redis-url``): a line when the link
    comes up, and one when it is lost (or cannot be made), once per change of state, not per
    reconnect attempt. ``target``: the ``RedisTarget`` (named without its password)."""
    where = target.redacted() if hasattr(target, "redacted") else str(target)
    last: list[bool | None] = [None]

    def say(up: bool, reason: str) -> None:
        if last[0] is up:
            return
        last[0] = up
        if up:
            write(fatal(f"shared state: connected to {where}") + "\n")
        else:
            write(fatal(f"warning: shared state: {where} unreachable ({reason}); limits, "
                        f"cooldowns and rotations are decided by this process alone until it "
                        f"is back") + "\n")

    return say


def worker_exit(exc: BaseException, pid: int) -> tuple[int, str]:
    """(exit code, text for stderr) of a ``--workers`` child whose serving ended with ``exc``."""
    if isinstance(exc, KeyboardInterrupt):
        return 0, ""
    if isinstance(exc, SystemExit):
        if isinstance(exc.code, int):
            return exc.code, ""
        return 1, f"{exc.code}\n" if exc.code else ""
    return 1, fatal(f"worker {pid} failed: {exc!r}") + "\n"


def workers_verdict(exit_codes: Sequence[int], stop_signals: Sequence[int]) -> str | None:
    """The supervisor's exit line, or None when every worker ended well: with 0, or killed by
    one of ``stop_signals`` (exit code ``-signum``, as ``os.waitstatus_to_exitcode`` says)."""
    failed = sum(code not in (0, *(-s for s in stop_signals)) for code in exit_codes)
    return fatal(f"{failed} of {len(exit_codes)} workers failed") if failed else None
