"""The command line, defined once: the ``uniapi`` parser and the serve flags every entry takes.

``uniapi serve``, ``python -m uniapi_trio`` and ``python -m uniapi_asyncio`` accept the same
flags because all three get them from ``add_serve_args``. In the module forms the backend is
fixed by the module: ``--backend`` is accepted there (so the three flag sets are identical)
but only with the module's own value; any other value is refused by the parser.

Only parsers are built here; reading argv, files and the environment, printing and exiting
are the shell's (``uniapi_trio/cli.py``).
"""

from __future__ import annotations

import argparse

from .startup import add_front_args

__all__ = ["BACKENDS", "add_serve_args", "build_parser", "module_parser"]

BACKENDS = ("trio", "asyncio")
CONFIG_HELP = "path to api.yaml (default: $CONFIG_URL, ./api.yaml)"


def add_serve_args(parser: argparse.ArgumentParser, *, backend: str | None = None,
                   config: bool = True) -> None:
    """The serve flags: ``--config`` (unless ``config`` is false: ``demo`` brings its own),
    ``--host``, ``--port``, ``--backend``, ``--allow-*`` and every front flag.

    ``backend`` fixes the backend (the ``python -m`` forms): ``--backend`` then accepts only
    that value and defaults to it."""
    if config:
        parser.add_argument("--config", help=CONFIG_HELP)
    parser.add_argument("--allow-private-image-urls", action="store_true",
                        help="fetch remote image URLs that resolve to private/loopback "
                             "addresses or use non-default ports (off: SSRF protection)")
    parser.add_argument("--allow-http-image-urls", action="store_true",
                        help="fetch plain-http image URLs too (off: https only)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    if backend is None:
        parser.add_argument("--backend", choices=BACKENDS, default=BACKENDS[0])
    else:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}")
        parser.add_argument("--backend", choices=(backend,), default=backend,
                            help=f"fixed to {backend} by this module; for another backend run "
                                 f"its module or `uniapi serve --backend NAME`")
    add_front_args(parser)


def build_parser() -> argparse.ArgumentParser:
    """The ``uniapi`` command: ``serve``, ``check``, ``route``, ``simulate``, ``demo``."""
    ap = argparse.ArgumentParser(prog="uniapi", description="One OpenAI-compatible endpoint "
                                 "in front of every LLM vendor, driven by api.yaml.")
    sub = ap.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway")
    add_serve_args(serve)
    check = sub.add_parser("check", help="validate api.yaml and print what it means")
    check.add_argument("path")
    route = sub.add_parser("route", help="show the attempts routing would make, and why")
    route.add_argument("--config", help=CONFIG_HELP)
    route.add_argument("--key", required=True, help="the client api key")
    route.add_argument("--model", required=True)
    route.add_argument("--requests", type=int, default=1, help="how many requests (default 1)")
    route.add_argument("--seed", type=int, default=0, help="seed for random/lottery (default 0)")
    route.add_argument("--tools", action="store_true", help="the requests carry tools")
    sim = sub.add_parser("simulate", help="run the config's routing against built-in fake "
                         "upstreams under a fault script, on a virtual clock")
    sim.add_argument("--config", help=CONFIG_HELP)
    sim.add_argument("--faults", required=True, help="the fault script (YAML; "
                     "docs/operations.md, \"Simulating failover\")")
    sim.add_argument("--json", action="store_true", help="print one JSON object per request")
    demo = sub.add_parser("demo", help="run the gateway in front of a built-in local fake "
                          "upstream (no vendor keys needed)")
    add_serve_args(demo, config=False)
    return ap


def module_parser(backend: str) -> argparse.ArgumentParser:
    """``python -m uniapi_<backend>``: the flags of ``uniapi serve``, backend fixed."""
    ap = argparse.ArgumentParser(prog=f"python -m uniapi_{backend}",
                                 description=f"Run the gateway on the {backend} backend; the "
                                 f"same as `uniapi serve --backend {backend}`.")
    add_serve_args(ap, backend=backend)
    return ap
