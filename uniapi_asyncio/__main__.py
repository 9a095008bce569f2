"""``python -m uniapi_asyncio [flags]`` = ``uniapi serve --backend asyncio [flags]``: the same
flags (``python -m uniapi_asyncio --help``, including ``--workers``), from the one parser in
``uniapi_core.cmdline``, run by the one shell; ``--backend`` is fixed to ``asyncio`` here
(another value is refused). Config from ``--config``, else ``$CONFIG_URL``, else
``./api.yaml``; ``$TIMEOUT`` honoured. The ``uniapi`` command has the rest: ``check``,
``route``, ``demo``."""

from .cli import main

main()
