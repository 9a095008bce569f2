"""The command line as a sans-IO program: what ``uniapi check|route|simulate|demo|serve`` and
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
``Serve(launch, config,     serves: ``launch`` (``startup.Launch``) says what the flags mean,
reload)``                   ``config(demo_url)`` gives the config (``demo_url``: where ``uniapi
                            demo``'s fake upstream listens, None otherwise), ``reload(current)``
                            is the hot reload's program (below)
==========================  ===================================================================

A hot reload (SIGHUP, ``POST /v1/reload``) is a program too: ``reload(current)`` reads the config
again from where it came from (``ReadFile`` or ``FetchConfig``, the same steps as at start),
yields ``Discover(gateway)`` (the runtime runs model discovery for the new gateway, as at start,
and sends back the warnings) and ``Print``s, and returns the new gateway
(``Gateway.reloaded``), or the text saying why the config was refused (the old one serves on).
The runtime performs its effects while serving, and makes the new gateway current.

Which order things are checked in, which file or URL is read, and every text printed are
decided here (with ``startup``, ``summary`` and ``cmdline``), so the shell
(``uniapi_trio/cli.py``) only reads, writes, exits, forks and serves.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Generator, Mapping
from typing import Any

import attrs

from . import simulate, startup, summary
from .config import Config, Loaded
from .demo import DEMO_SOURCE, demo_config
from .gateway import Gateway
from .upstream import config_url_text
from .vendors.base import UpstreamRequest

__all__ = ["ReadFile", "FetchConfig", "Print", "Exit", "Serve", "Discover", "Effect", "program",
           "reload", "ReloadProgram", "Current"]


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
class Discover:
    """Run model discovery for ``gateway`` (a reload's new one); send back its warnings."""

    gateway: Gateway


#: a hot reload: ends with the new gateway, or the text of why the config was refused
ReloadProgram = Generator["ReadFile | FetchConfig | Discover | Print", Any, "Gateway | str"]


def _built_in(current: Gateway) -> ReloadProgram:
    """``uniapi demo``'s reload: its config is built in, there is nothing to read again."""
    yield Print(startup.reload_refused(startup.DEMO_RELOAD))
    return startup.DEMO_RELOAD


@attrs.frozen
class Serve:
    launch: startup.Launch
    config: Callable[[str | None], Loaded]
    reload: Callable[[Gateway], ReloadProgram] = _built_in


Effect = ReadFile | FetchConfig | Print | Exit | Serve | Discover
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
        elif command == "simulate":
            config = (yield from _load(args.config, environ)).config
            yield Print((yield from _simulate(config, args.faults, args.json)), stdout=True)
        elif command == "demo":
            launch = yield from _decide(startup.launch, args, environ, True)
            yield Serve(launch, _demo)
        else:  # serve, and python -m uniapi_<backend>
            yield from _decide(startup.front_options, args)  # a bad flag before the config
            loaded = yield from _load(args.config, environ)
            launch = yield from _decide(startup.launch, args, environ)
            yield Serve(launch, lambda url: loaded,
                        lambda current: reload(args.config, environ, current))
    except _Stop:
        return


def _simulate(config: Config, path: str, as_json: bool) -> Generator[Effect, Any, str]:
    """``uniapi simulate``'s report for the fault script at ``path``; a script that cannot be
    read or run ends the process with status 2 and why."""
    text = yield ReadFile(path)
    if isinstance(text, BaseException):
        why = getattr(text, "strerror", None) or text
        yield Exit(f"uniapi simulate: cannot read the fault script {path!r}: {why}")
        raise _Stop()
    try:
        reports = simulate.simulate(config, simulate.load_script(text, path))
    except simulate.ScriptError as exc:
        yield Print(f"error: {exc}\n")
        yield Exit(2)
        raise _Stop() from None
    if as_json:
        return "".join(json.dumps(r.as_dict()) + "\n" for r in reports)
    return simulate.render_report(reports)


def _decide(decide: Callable[..., Any], *args: Any) -> Generator[Effect, Any, Any]:
    """``decide(*args)``; a ``ValueError`` from it ends the process with its reason."""
    try:
        return decide(*args)
    except ValueError as exc:
        yield Exit(startup.fatal(exc))
        raise _Stop() from None


def _read(path: str | None, environ: Mapping[str, str]
          ) -> Generator[ReadFile | FetchConfig, Any, tuple[str, str | None, str]]:
    """(source, its text or None, why there is none): the config of ``--config``, else env
    ``CONFIG_URL``, else ``./api.yaml``, read or fetched."""
    kind, source = startup.config_source(path, environ)
    if kind == "url":
        answer = yield FetchConfig(startup.config_url_request(source))
        try:
            return source, config_url_text(source, answer), ""
        except ValueError as exc:
            return source, None, startup.fatal(exc)
    text = yield ReadFile(source)
    if isinstance(text, BaseException):
        return source, None, startup.read_failure(source, text)
    return source, text, ""


def _load(path: str | None, environ: Mapping[str, str]) -> Generator[Effect, Any, Loaded]:
    """The config (``_read``): loaded, its problems and warnings printed; a config that
    cannot be had ends the process, one with errors with status 2."""
    source, text, failure = yield from _read(path, environ)
    if text is None:
        yield Exit(failure)
        raise _Stop()
    loaded, report = startup.load_checked(text, source)
    if report:
        yield Print(report)
    if loaded is None:
        yield Exit(2)
        raise _Stop()
    return loaded


def reload(path: str | None, environ: Mapping[str, str], current: Gateway) -> ReloadProgram:
    """A hot reload of ``current`` (see the module docstring): the config read as at start
    (``path``: ``--config``; ``environ``: as at start), refused with its line-numbered
    problems, else the new gateway, its models discovered, carrying ``current``'s state."""
    source, text, failure = yield from _read(path, environ)
    loaded, report = (None, failure + "\n") if text is None else startup.load_checked(text,
                                                                                       source)
    if loaded is None:
        yield Print(startup.reload_refused(report))
        return report.strip()
    if report:
        yield Print(report)
    gateway = current.reloaded(loaded.config)
    warnings = yield Discover(gateway)
    yield Print(startup.discovery_text(warnings or ()) + startup.reloaded_text(source))
    return gateway


class Current:
    """A serving process's current gateway (``current()``: what a transport hands each new
    connection) and its hot reloads (``reload()``). A transport sets ``gateway`` once started,
    performs ``reload()``'s effects one reload at a time, and gets None (the new gateway
    serves) or the text of why the config was refused (the old one serves on)."""

    def __init__(self, reloads: Callable[[Gateway], ReloadProgram] | None = None,
                 read: Callable[[str], object] | None = None) -> None:
        self.gateway: Gateway | None = None
        self._reloads = reloads
        #: what performs ``ReadFile`` (the shell's one file reader, which the core never calls)
        self.read = read

    def current(self) -> Gateway:
        assert self.gateway is not None, "set once the process has its first gateway"
        return self.gateway

    def reload(self) -> Generator[ReadFile | FetchConfig | Discover | Print, Any, str | None]:
        if self._reloads is None or self.read is None or self.gateway is None:
            return startup.NO_RELOAD  # not serving yet, or started without a config source
        outcome = yield from self._reloads(self.gateway)
        if isinstance(outcome, str):
            return outcome
        self.gateway = outcome
        return None


def _demo(url: str | None) -> Loaded:
    """``uniapi demo``'s config, pointing at its fake upstream."""
    loaded, report = startup.load_checked(demo_config(url or ""), DEMO_SOURCE)
    if loaded is None:  # the demo config is ours: an error here is a bug
        raise ValueError(report)
    return loaded
