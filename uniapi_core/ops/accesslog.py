"""The access log's lines: one per finished request, written by the transport to standard
error as it is (``--log-format text|json``; ``off`` writes none).

``AccessLog(log_format).line(record)`` is the whole line, newline included:

* ``text``: ``2026-12-06 07:01:52,123 INFO POST /v1/chat/completions 200 1.2ms``, the same
  shape as the gateway's other messages (``startup.LOG_LINES``: ``logging``'s
  ``%(asctime)s %(levelname)s %(message)s``); the time is when the request ended, in UTC
  (``cli`` sets ``logging`` to UTC too, so every line of the log agrees);
* ``json``: the record's JSON object alone (``ServedRecord.log_text("json")``).

It is not written through ``logging``: a ``LogRecord``, its formatting and its handler cost
about 10 µs a request, most of what the access log costs (docs/benchmarks.md); this line
costs about 1 µs. The date part is formatted once per second.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

__all__ = ["AccessLog"]


class AccessLog:
    """The access log's line of a ``ServedRecord`` in ``log_format`` (module docstring)."""

    def __init__(self, log_format: str) -> None:
        self.json = log_format == "json"
        self._second = -1
        self._stamp = ""

    def line(self, record: Any) -> str:
        if self.json:
            return record.log_text("json") + "\n"
        ended = record.wall + record.duration
        second = int(ended)
        if second != self._second:
            self._second = second
            self._stamp = datetime.fromtimestamp(second, timezone.utc).strftime(
                "%Y-%m-%d %H:%M:%S")
        return f"{self._stamp},{int((ended - second) * 1000):03d} INFO {record.log_line()}\n"
