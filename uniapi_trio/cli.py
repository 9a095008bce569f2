"""``uniapi`` and ``python -m uniapi_trio|uniapi_asyncio``: the one effectful shell. The command
itself is the core's sans-IO ``uniapi_core.shell.program``; this performs its effects."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import random
import shutil
import signal
import ssl
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial

from uniapi_core import shell, startup
from uniapi_core.cmdline import build_parser, module_parser
from uniapi_core.config import Loaded
from uniapi_core.gateway import Gateway

__all__ = ["main", "module_main", "perform"]


def say(text: str) -> None:
    """Write one of the core's texts to stderr, at once."""
    sys.stderr.write(text)
    sys.stderr.flush()


def perform(args: argparse.Namespace) -> None:
    """Run the core's program for ``args``, performing each effect it asks for."""
    program = shell.program(args, os.environ)
    result: object = None
    while True:
        try:
            effect = program.send(result)
        except StopIteration:
            return
        result = None
        if isinstance(effect, shell.Print):
            out = sys.stdout if effect.stdout else sys.stderr
            out.write(effect.text)
            out.flush()
        elif isinstance(effect, shell.ReadFile):
            result = read(effect.path)
        elif isinstance(effect, shell.FetchConfig):
            from .runtime import fetch

            result = fetch(effect.request)
        elif isinstance(effect, shell.Exit):
            raise SystemExit(effect.code)
        elif isinstance(effect, shell.Serve):
            _serve(effect.launch, effect.config, args.backend, effect.reload)


def read(path: str) -> str | BaseException:
    """``ReadFile``: the file's text, or why it cannot be had (at start and at each reload)."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        return exc


def _serve(launch: startup.Launch, config: Callable[[str | None], Loaded], backend: str,
           reloads: Callable[[Gateway], shell.ReloadProgram]) -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the runtime reloads on it, not a kill
    logging.basicConfig(level=logging.INFO, format=startup.LOG_LINES[launch.options.log_format])
    logging.Formatter.converter = time.gmtime  # UTC, as the access log's lines (accesslog.py)
    for name in startup.QUIET_LOGGERS:  # a client's input must not write the gateway's log
        logging.getLogger(name).setLevel(logging.CRITICAL)
    # the one arrow between the twins: the asyncio backend is started from here
    run = importlib.import_module(f"uniapi_{backend}.runtime").run
    if launch.options.workers > 1:  # where the workers publish their metrics for each other
        launch = launch.sharing_metrics(tempfile.mkdtemp(prefix="uniapi-metrics-"))
        say(launch.workers_text())
    serve = partial(run, launch, lambda url: launch.gateway(config(url).config,
                                                            random.Random()), say=say,
                    current=shell.Current(reloads, read))
    if launch.options.workers > 1:
        try:
            _supervise(launch.options.workers, serve)
        finally:
            shutil.rmtree(launch.settings.metrics_dir or "", ignore_errors=True)
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
    forward SIGTERM/SIGINT/SIGHUP to them and wait."""
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

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # SIGHUP: every worker reloads
        signal.signal(signum, forward)
    codes = [os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) for child in children]
    if verdict := startup.workers_verdict(codes, (signal.SIGTERM, signal.SIGINT)):
        raise SystemExit(verdict)


def main(argv: Sequence[str] | None = None) -> None:
    """``uniapi serve|check|route|demo``."""
    perform(build_parser().parse_args(argv))


def module_main(backend: str = "trio", argv: Sequence[str] | None = None) -> None:
    """``python -m uniapi_<backend>``: ``uniapi serve``, the backend fixed by the module."""
    perform(module_parser(backend).parse_args(argv))


if __name__ == "__main__":
    main()
