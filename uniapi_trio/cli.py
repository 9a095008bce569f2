"""``uniapi`` and ``python -m uniapi_trio|uniapi_asyncio``: the one effectful shell (argv, files,
env, output, exit codes, ``--workers``); what it decides and prints is the core's."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import random
import signal
import ssl
import sys
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from uniapi_core import startup, summary
from uniapi_core.cmdline import build_parser, module_parser
from uniapi_core.config import Loaded
from uniapi_core.demo import DEMO_SOURCE, demo_config
from uniapi_core.upstream import config_url_text

__all__ = ["main", "module_main", "read_config_source"]

def say(text: str) -> None:
    """Write one of the core's texts to stderr, at once."""
    sys.stderr.write(text)
    sys.stderr.flush()


def _or_exit(decide: Callable[..., Any], *args: Any) -> Any:
    """``decide(*args)``; a ``ValueError`` from it ends the process with its reason."""
    try:
        return decide(*args)
    except ValueError as exc:
        raise SystemExit(startup.fatal(exc)) from None


def read_config_source(path: str | None) -> tuple[str, str]:
    """(text, source name): ``--config``, else env ``CONFIG_URL``, else ``./api.yaml``."""
    kind, path = startup.config_source(path, os.environ)
    if kind == "url":
        from .runtime import fetch

        return _or_exit(config_url_text, path, fetch(startup.config_url_request(path))), path
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(), path
    except (OSError, UnicodeDecodeError) as exc:
        raise SystemExit(startup.read_failure(path, exc)) from None


def load_or_exit(text: str, source: str) -> Loaded:
    loaded, report = startup.load_checked(text, source)
    say(report)
    if loaded is None:
        raise SystemExit(2)
    return loaded


def _run(make_config: Callable[[str | None], Loaded], args: argparse.Namespace, *,
         demo: bool = False) -> None:
    """Start ``args.backend``; ``make_config(demo_upstream_url)`` gives the config to serve."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    launch = _or_exit(startup.launch, args, os.environ, demo)
    # the one arrow between the twins: the asyncio backend is started from here
    run = importlib.import_module(f"uniapi_{args.backend}.runtime").run
    serve = partial(run, launch, lambda url: launch.gateway(make_config(url).config,
                                                            random.Random()), say=say)
    if launch.options.workers > 1:
        _supervise(launch.options.workers, serve)
        return
    try:
        serve()
    except KeyboardInterrupt:
        pass
    except (OSError, BaseExceptionGroup) as exc:  # trio wraps a failed bind in a group
        if (message := launch.start_failure(exc, ssl.SSLError)) is None:
            raise
        raise SystemExit(message) from None


def _supervise(workers: int, serve: Callable[[], None]) -> None:
    """Fork ``workers`` processes serving one SO_REUSEPORT port (before any loop exists);
    forward SIGTERM/SIGINT to them and wait."""
    children: list[int] = []
    for _ in range(workers):
        if (pid := os.fork()) == 0:
            code, note = 0, ""
            try:
                serve()
            except BaseException as exc:  # noqa: BLE001 — the core says what each end means
                code, note = startup.worker_exit(exc, os.getpid())
            say(note)
            os._exit(code)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) for child in children]
    if verdict := startup.workers_verdict(codes, (signal.SIGTERM, signal.SIGINT)):
        raise SystemExit(verdict)


def main(argv: Sequence[str] | None = None) -> None:
    """``uniapi serve|check|route|demo``."""
    args = build_parser().parse_args(argv)
    if args.command == "check":
        loaded = load_or_exit(*read_config_source(args.path))
        sys.stdout.write(summary.render_summary(loaded.config))
    elif args.command == "route":
        config = load_or_exit(*read_config_source(args.config)).config
        sys.stdout.write(summary.render_route(config, args.key, args.model, seed=args.seed,
                                              requests=args.requests, tools=args.tools))
    elif args.command == "demo":
        _run(lambda url: load_or_exit(demo_config(url or ""), DEMO_SOURCE), args, demo=True)
    else:
        _serve(args)


def module_main(backend: str = "trio", argv: Sequence[str] | None = None) -> None:
    """``python -m uniapi_<backend>``: ``uniapi serve``, the backend fixed by the module."""
    _serve(module_parser(backend).parse_args(argv))


def _serve(args: argparse.Namespace) -> None:
    _or_exit(startup.front_options, args)  # a bad flag is reported before the config is read
    loaded = load_or_exit(*read_config_source(args.config))
    _run(lambda url: loaded, args)


if __name__ == "__main__":
    main()
