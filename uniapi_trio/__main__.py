"""``python -m uniapi_trio [flags]`` = ``uniapi serve --backend trio [flags]``: the same flags
(``python -m uniapi_trio --help``), from the one parser in ``uniapi_core.cmdline``;
``--backend`` is fixed to ``trio`` here (another value is refused)."""

from .cli import module_main

module_main("trio")
