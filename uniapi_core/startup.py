"""Start-up decisions both command-line entries share, as pure functions of their inputs.

The entries read the environment and files; what those values *mean* is decided here, once:
where the config comes from, and what ``TIMEOUT`` says.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["config_source", "env_timeout"]


def config_source(flag: str | None, env: Mapping[str, str]) -> tuple[str, str]:
    """``("file", path)`` or ``("url", url)``: ``--config``, else ``CONFIG_URL`` (a path or
    an http(s) URL), else ``./api.yaml``."""
    if flag:
        return "file", flag
    value = env.get("CONFIG_URL", "").strip()
    if value.startswith(("http://", "https://")):
        return "url", value
    return "file", value or "api.yaml"


def env_timeout(env: Mapping[str, str]) -> float | None:
    """``TIMEOUT`` in seconds, None when unset; ``ValueError`` when it is not a positive
    number."""
    raw = env.get("TIMEOUT", "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"TIMEOUT={raw!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise ValueError("TIMEOUT must be a positive number of seconds")
    return value
