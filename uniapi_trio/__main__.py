"""``python -m uniapi_trio --config PATH --host H --port P`` = ``uniapi serve --backend trio``."""

from .cli import module_main

module_main()
