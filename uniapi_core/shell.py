"""The command line as a sans-IO program: what ``uniapi check|route|demo|serve`` and
``python -m uniapi_<backend>`` do, as effects a shell performs.

``program(args, environ)`` is a generator. It yields an effect; the shell performs it and sends
back the result; the program goes on until it returns. The effects:

==========================  ===================================================================
effect                      the shell…
==========================  ===================================================================
``ReadFile(path)``          sends back the file's text (UTF-8), or the ``OSError`` /
                            ``UnicodeDecodeError`` that reading raised
``FetchConfig(request)``    GETs ``CONFIG_URL`` once; sends back ``(status, body)`` or the text
                            of why no answer came
``Print(text, stdout)``     writes ``text`` to stdout, or to stderr
``Exit(code)``              ends the process: an int is the exit status, a str is printed to
                            stderr with status 1 (``SystemExit``'s rule)
``Serve(launch, config)``   serves: ``launch`` (``startup.Launch``) says what the flags mean,
                            ``config(demo_url)`` gives the config (``demo_url``: where ``uniapi
                            demo``'s fake upstream listens, None otherwise)
==========================  ===================================================================

Which order things are checked in, which file or URL is read, and every text printed are
decided here (with ``startup``, ``summary`` and ``cmdline``), so the shell
(``uniapi_trio/cli.py``) only reads, writes, exits, forks and serves.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Generator, Mapping
from typing import Any

import attrs

from . import startup, summary
from .config import Loaded
from .demo import DEMO_SOURCE, demo_config
from .upstream import config_url_text
from .vendors.base import UpstreamRequest

__all__ = ["ReadFile", "FetchConfig", "Print", "Exit", "Serve", "Effect", "program"]


@attrs.frozen
class ReadFile:
    path: str


@attrs.frozen
class FetchConfig:
    request: UpstreamRequest


@attrs.frozen
class Print:
    text: str
    stdout: bool = False


@attrs.frozen
class Exit:
    code: int | str


@attrs.frozen
class Serve:
    launch: startup.Launch
    config: Callable[[str | None], Loaded]


Effect = ReadFile | FetchConfig | Print | Exit | Serve
Program = Generator[Effect, Any, None]


class _Stop(Exception):
    """Raised inside the program after an ``Exit`` the shell did not end the process on."""


def program(args: argparse.Namespace, environ: Mapping[str, str]) -> Program:
    """The whole command (see the module docstring)."""
    command = getattr(args, "command", "serve")  # python -m uniapi_<backend> has none
    try:
        if command == "check":
            loaded = yield from _load(args.path, environ)
            yield Print(summary.render_summary(loaded.config), stdout=True)
        elif command == "route":
            config = (yield from _load(args.config, environ)).config
            yield Print(summary.render_route(config, args.key, args.model, seed=args.seed,
                                             requests=args.requests, tools=args.tools),
                        stdout=True)
        elif command == "demo":
            launch = yield from _decide(startup.launch, args, environ, True)
            yield Serve(launch, _demo)
        else:  # serve, and python -m uniapi_<backend>
            yield from _decide(startup.front_options, args)  # a bad flag before the config
            loaded = yield from _load(args.config, environ)
            launch = yield from _decide(startup.launch, args, environ)
            yield Serve(launch, lambda url: loaded)
    except _Stop:
        return


def _decide(decide: Callable[..., Any], *args: Any) -> Generator[Effect, Any, Any]:
    """``decide(*args)``; a ``ValueError`` from it ends the process with its reason."""
    try:
        return decide(*args)
    except ValueError as exc:
        yield Exit(startup.fatal(exc))
        raise _Stop() from None


def _load(path: str | None, environ: Mapping[str, str]) -> Generator[Effect, Any, Loaded]:
    """The config of ``--config``, else env ``CONFIG_URL``, else ``./api.yaml``: read, loaded,
    its problems and warnings printed; a config with errors ends the process (status 2)."""
    kind, source = startup.config_source(path, environ)
    if kind == "url":
        answer = yield FetchConfig(startup.config_url_request(source))
        text = yield from _decide(config_url_text, source, answer)
    else:
        text = yield ReadFile(source)
        if isinstance(text, BaseException):
            yield Exit(startup.read_failure(source, text))
            raise _Stop()
    loaded, report = startup.load_checked(text, source)
    if report:
        yield Print(report)
    if loaded is None:
        yield Exit(2)
        raise _Stop()
    return loaded


def _demo(url: str | None) -> Loaded:
    """``uniapi demo``'s config, pointing at its fake upstream."""
    loaded, report = startup.load_checked(demo_config(url or ""), DEMO_SOURCE)
    if loaded is None:  # the demo config is ours: an error here is a bug
        raise ValueError(report)
    return loaded
