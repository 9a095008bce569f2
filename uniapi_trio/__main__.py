"""``python -m uniapi_trio [flags]``: ``uniapi serve --backend trio [flags]`` (the one parser)."""

from .cli import module_main

module_main("trio")
