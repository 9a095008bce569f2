"""The ``uniapi`` command and ``python -m uniapi_trio|uniapi_asyncio``: read files, env and
URLs, print, and start a backend.

Everything it decides (the flags: ``uniapi_core.cmdline``; config meaning, the text of
``check``) is in the core; this is the one effectful shell every entry runs through: argv,
files, environment, stdout/stderr, exit codes, ``--workers`` supervision.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import ssl
import sys
from collections.abc import Callable, Sequence

from uniapi_core.cmdline import build_parser, module_parser
from uniapi_core.config import ConfigError, Loaded, load_config
from uniapi_core.demo import demo_config
from uniapi_core.errors import describe_os_error
from uniapi_core.gateway import Gateway, Settings
from uniapi_core.startup import FrontOptions, config_source, env_timeout, front_options
from uniapi_core.summary import render_summary

__all__ = ["main", "module_main", "read_config_source"]


def _env_timeout() -> float | None:
    try:
        return env_timeout(os.environ)
    except ValueError as exc:
        raise SystemExit(f"uniapi: {exc}") from None


def read_config_source(path: str | None) -> tuple[str, str]:
    """(text, source name): ``--config``, else env ``CONFIG_URL``, else ``./api.yaml``."""
    kind, path = config_source(path, os.environ)
    if kind == "url":
        from .runtime import fetch_text

        return fetch_text(path), path
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(), path
    except FileNotFoundError:
        raise SystemExit(f"uniapi: config file {path!r} not found (use --config PATH, "
                         f"CONFIG_URL, or ./api.yaml; try `uniapi demo`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SystemExit(f"uniapi: cannot read {path!r}: {exc}") from None


def load_or_exit(text: str, source: str) -> Loaded:
    try:
        loaded = load_config(text, source)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{source}: error: {problem}", file=sys.stderr)
        raise SystemExit(2) from None
    for w in loaded.warnings:
        print(f"{source}: warning: {w}", file=sys.stderr)
    return loaded


def _front_options(args: argparse.Namespace) -> FrontOptions:
    try:
        return front_options(args)
    except ValueError as exc:
        raise SystemExit(f"uniapi: {exc}") from None


def _run(backend: str, make_config: Callable[[str | None], Loaded], host: str, port: int, *,
         demo: bool = False, args: argparse.Namespace | None = None) -> None:
    """Start ``backend``; ``make_config(demo_upstream_url)`` gives the config to serve."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    options = _front_options(args) if args is not None else FrontOptions()
    settings = Settings(env_timeout=_env_timeout(),
                        fetch_allow_private=bool(getattr(args, "allow_private_image_urls", False)),
                        fetch_allow_http=bool(getattr(args, "allow_http_image_urls", False)))

    def make_gateway(demo_url: str | None) -> Gateway:
        return Gateway(make_config(demo_url).config, settings=settings,
                       entropy=random.Random())

    if backend == "asyncio":
        from uniapi_asyncio.runtime import run  # the one arrow between the twins
    else:
        from .runtime import run

    if options.workers > 1:
        if port == 0:
            raise SystemExit("uniapi: --workers needs a fixed --port")
        _supervise(options.workers, lambda: run(make_gateway, host, port, demo=demo,
                                                 options=options))
        return
    try:
        run(make_gateway, host, port, demo=demo, options=options)
    except KeyboardInterrupt:
        pass
    except ssl.SSLError as exc:
        raise SystemExit(f"uniapi: cannot use --certfile/--keyfile: {exc}") from None
    except OSError as exc:
        raise SystemExit(f"uniapi: cannot listen on {host}:{port}: {exc}") from None
    except BaseExceptionGroup as group:  # trio wraps a failed bind in a group
        tls = group.subgroup(ssl.SSLError)
        if tls is not None:
            raise SystemExit(f"uniapi: cannot use --certfile/--keyfile: "
                             f"{describe_os_error(tls)}") from None
        bind = group.subgroup(OSError)
        if bind is None:
            raise
        raise SystemExit(f"uniapi: cannot listen on {host}:{port}: "
                         f"{describe_os_error(bind)}") from None


def _supervise(workers: int, serve: Callable[[], None]) -> None:
    """Fork ``workers`` processes that each ``serve()`` the same SO_REUSEPORT port; forward
    SIGTERM/SIGINT to them and wait. Forked before any event loop or thread exists."""
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                serve()
            except KeyboardInterrupt:
                pass
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
                if exc.code and not isinstance(exc.code, int):
                    print(exc.code, file=sys.stderr)
            except BaseException as exc:  # noqa: BLE001 — a worker's crash is reported below
                print(f"uniapi: worker {os.getpid()} failed: {exc!r}", file=sys.stderr)
                code = 1
            os._exit(code)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    failed = 0
    for child in children:
        while True:
            try:
                _, status = os.waitpid(child, 0)
                break
            except InterruptedError:
                continue
        failed += os.waitstatus_to_exitcode(status) not in (0, -signal.SIGTERM, -signal.SIGINT)
    if failed:
        raise SystemExit(f"uniapi: {failed} of {workers} workers failed")


def main(argv: Sequence[str] | None = None) -> None:
    """``uniapi serve|check|route|demo``."""
    args = build_parser().parse_args(argv)
    if args.command == "check":
        text, source = read_config_source(args.path)
        loaded = load_or_exit(text, source)
        sys.stdout.write(render_summary(loaded.config, ()))
        return
    if args.command == "route":
        text, source = read_config_source(args.config)
        gateway = Gateway(load_or_exit(text, source).config, entropy=random.Random(args.seed))
        sys.stdout.write(gateway.explain_route(args.key, args.model, requests=args.requests,
                                               now=0.0, tools=args.tools))
        return
    if args.command == "demo":
        _run(args.backend, lambda url: load_or_exit(demo_config(url or ""), "demo api.yaml"),
             args.host, args.port, demo=True, args=args)
        return
    _serve(args)


def module_main(backend: str = "trio", argv: Sequence[str] | None = None) -> None:
    """``python -m uniapi_<backend> [flags]``: exactly ``uniapi serve``'s flags, with the
    backend fixed by the module (``--backend`` may only repeat it)."""
    _serve(module_parser(backend).parse_args(argv))


def _serve(args: argparse.Namespace) -> None:
    _front_options(args)  # a bad flag is reported before the config is read
    text, source = read_config_source(args.config)
    loaded = load_or_exit(text, source)
    _run(args.backend, lambda url: loaded, args.host, args.port, args=args)


if __name__ == "__main__":
    main()
