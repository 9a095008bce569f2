"""``python -m uniapi_asyncio --config PATH --host H --port P`` = ``uniapi serve --backend asyncio``
(config from ``--config``, else ``$CONFIG_URL``, else ``./api.yaml``; ``$TIMEOUT`` honoured).
The ``uniapi`` command has the rest: ``check``, ``route``, ``demo``."""

import argparse
import logging
import os
import random
import sys

from uniapi_core.config import ConfigError, load_config
from uniapi_core.gateway import Gateway, Settings
from uniapi_core.startup import add_front_args, config_source, env_timeout, front_options

from .runtime import fetch_text, run


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m uniapi_asyncio")
    ap.add_argument("--config", help="path to api.yaml (default: $CONFIG_URL, ./api.yaml)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    add_front_args(ap)
    args = ap.parse_args()
    try:
        timeout = env_timeout(os.environ)
        options = front_options(args)
        if options.workers > 1:
            raise ValueError("--workers: use `uniapi serve --backend asyncio --workers N`")
    except ValueError as exc:
        raise SystemExit(f"uniapi: {exc}") from None
    kind, source = config_source(args.config, os.environ)
    try:
        if kind == "url":
            text = fetch_text(source)
        else:
            with open(source, encoding="utf-8") as f:
                text = f.read()
        loaded = load_config(text, source)
    except (OSError, UnicodeDecodeError) as exc:
        raise SystemExit(f"uniapi: {source}: {exc}") from None
    except ConfigError as exc:
        print("\n".join(f"{source}: error: {problem}" for problem in exc.problems),
              file=sys.stderr)
        raise SystemExit(2) from None
    for warning in loaded.warnings:
        print(f"{source}: warning: {warning}", file=sys.stderr)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = Settings(env_timeout=timeout)
    try:
        run(lambda demo_url: Gateway(loaded.config, settings=settings, entropy=random.Random()),
            args.host, args.port, options=options)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise SystemExit(f"uniapi: cannot listen on {args.host}:{args.port}: {exc}") from None


main()
