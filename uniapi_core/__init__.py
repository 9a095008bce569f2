"""uniapi's sans-IO core: the public API for code that embeds it (docs/embedding.md).

Every name of ``__all__`` is importable from here (``from uniapi_core import Connection``) and
is what this package promises to keep; anything reached through a submodule may change. The
names are grouped as docs/embedding.md describes them: loading a config, the connection
machine (the one door ``Connection.handle(event, now, wall) -> actions`` and its vocabulary),
the request model, vendor requests and their stream decoders, the front's encoders, the
router and rate limiter, and what a transport needs to run upstream exchanges.

The names are imported lazily (PEP 562 ``__getattr__``): importing any ``uniapi_core``
submodule runs this file first, so an eager import here would load the whole core (the
config loader, every vendor, h11 and h2) for a caller that wanted one parser. For type
checkers the imports below are real.
"""

from __future__ import annotations

#: type checkers read this as ``typing.TYPE_CHECKING``; at run time not even ``typing`` is
#: imported (it alone costs more than the rest of this file)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .config import Config, Loaded, Provider, load_config
    from .connection import Connection
    from .errors import ConfigError, DecodeError, UniapiError, UpstreamError, to_openai_error
    from .events import (
        Action,
        ClientData,
        Close,
        DeadlineReached,
        DrainStarted,
        Event,
        Fetch,
        FetchDone,
        FetchResult,
        Notified,
        Notify,
        PauseUpstream,
        ResumeUpstream,
        Served,
        ServedRecord,
        StartUpstream,
        StopUpstream,
        UpstreamData,
        UpstreamEnded,
        UpstreamEvent,
        UpstreamFailed,
        UpstreamHead,
        Watch,
        Write,
        WriteFailed,
    )
    from .gateway import Gateway, Settings
    from .http.client import ClientConnection
    from .http.h2client import H2Link
    from .http.h2server import H2Limits
    from .http.pool import READ_SIZE, UpstreamTimeouts
    from .http.proxy import ProxyError, handshake_for
    from .http.server import ServerLimits
    from .http.url import Url, parse_url
    from .ratelimit import Admitted, Limiter, Refused, Window
    from .request import (
        ChatRequest,
        Message,
        Part,
        Reasoning,
        Sampling,
        ThinkingBlock,
        Tool,
        ToolCall,
        ToolChoice,
        parse_openai_chat,
    )
    from .routing.router import Need, Router
    from .ssrf import pick_address
    from .streams import DONE as SSE_DONE
    from .streams import encode_event
    from .upstream import (
        ADDRESS_REFUSED,
        DONE,
        FAILED,
        HANDSHAKE,
        LOST,
        ORIGIN,
        PROXY,
        PROXY_TCP,
        RETRY,
        TIMEOUT,
        Attempt,
        Collector,
        Connect,
        ConnectionManager,
        Full,
        H1Attempt,
        H1Conn,
        H2Attempt,
        Pending,
        Target,
        Wait,
        failure_kind,
        fetch_failure,
        image_request,
        no_answer,
        tunnel_open,
    )
    from .vendors import ENGINES, detect_engine
    from .vendors.base import (
        ChatContext,
        Exchange,
        StreamChunk,
        StreamDecoder,
        StreamDone,
        StreamFailed,
        StreamItem,
        UpstreamRequest,
    )
    from .vendors.chunks import ChunkWriter, completion, usage_object

__all__ = [  # noqa: RUF022 - grouped as docs/embedding.md groups them, not sorted
    # 1. loading a config
    "load_config", "Loaded", "Config", "Provider", "ConfigError",
    # 2. the connection machine: the door and its vocabulary
    "Connection", "ServerLimits", "H2Limits",
    "Event", "ClientData", "UpstreamEvent", "UpstreamHead", "UpstreamData", "UpstreamEnded",
    "UpstreamFailed", "FetchDone", "FetchResult", "Notified", "DeadlineReached", "WriteFailed",
    "DrainStarted", "Action", "Write", "Close", "StartUpstream", "StopUpstream", "PauseUpstream",
    "ResumeUpstream", "Fetch", "Watch", "Notify", "Served", "ServedRecord",
    # 3. the request model
    "ChatRequest", "parse_openai_chat", "Message", "Part", "ToolCall", "ThinkingBlock", "Tool",
    "ToolChoice", "Sampling", "Reasoning",
    # 4. vendor requests
    "build_vendor_exchange", "ENGINES", "detect_engine", "ChatContext", "UpstreamRequest",
    "Exchange", "UniapiError", "UpstreamError",
    # 5. vendor stream decoders
    "StreamDecoder", "StreamItem", "StreamChunk", "StreamDone", "StreamFailed", "DecodeError",
    # 6. the front's encoders
    "ChunkWriter", "completion", "usage_object", "encode_event", "SSE_DONE", "to_openai_error",
    # 7. the router and the rate limiter
    "Gateway", "Settings", "Router", "Need", "Limiter", "Window", "Admitted", "Refused",
    # 8. running upstream exchanges
    "ConnectionManager", "Target", "Connect", "Wait", "Pending", "H1Conn", "Attempt",
    "H1Attempt", "H2Attempt", "DONE", "FAILED", "RETRY", "TIMEOUT", "LOST", "PROXY", "ORIGIN",
    "PROXY_TCP", "HANDSHAKE", "failure_kind", "ClientConnection", "Url", "parse_url",
    "UpstreamTimeouts", "READ_SIZE", "H2Link", "handshake_for", "tunnel_open", "ProxyError",
    "pick_address", "image_request", "Collector", "Full", "fetch_failure", "no_answer",
    "ADDRESS_REFUSED",
]

#: submodule -> the public names it defines, imported on first use (``build_vendor_exchange``
#: is defined here)
_SOURCES: dict[str, tuple[str, ...]] = {
    "config": ("load_config", "Loaded", "Config", "Provider"),
    "errors": ("ConfigError", "UniapiError", "UpstreamError", "DecodeError", "to_openai_error"),
    "connection": ("Connection",),
    "http.server": ("ServerLimits",),
    "http.h2server": ("H2Limits",),
    "events": ("Event", "ClientData", "UpstreamEvent", "UpstreamHead", "UpstreamData",
               "UpstreamEnded", "UpstreamFailed", "FetchDone", "FetchResult", "Notified",
               "DeadlineReached", "WriteFailed", "DrainStarted", "Action", "Write", "Close",
               "StartUpstream", "StopUpstream", "PauseUpstream", "ResumeUpstream", "Fetch",
               "Watch", "Notify", "Served", "ServedRecord"),
    "request": ("ChatRequest", "parse_openai_chat", "Message", "Part", "ToolCall",
                "ThinkingBlock", "Tool", "ToolChoice", "Sampling", "Reasoning"),
    "vendors": ("ENGINES", "detect_engine"),
    "vendors.base": ("ChatContext", "UpstreamRequest", "Exchange", "StreamDecoder", "StreamItem",
                     "StreamChunk", "StreamDone", "StreamFailed"),
    "vendors.chunks": ("ChunkWriter", "completion", "usage_object"),
    "streams": ("encode_event", "SSE_DONE"),
    "gateway": ("Gateway", "Settings"),
    "routing.router": ("Router", "Need"),
    "ratelimit": ("Limiter", "Window", "Admitted", "Refused"),
    "upstream": ("ConnectionManager", "Target", "Connect", "Wait", "Pending", "H1Conn",
                 "Attempt", "H1Attempt", "H2Attempt", "DONE", "FAILED", "RETRY", "TIMEOUT",
                 "LOST", "PROXY", "ORIGIN", "PROXY_TCP", "HANDSHAKE", "failure_kind",
                 "tunnel_open", "image_request", "Collector", "Full", "fetch_failure",
                 "no_answer", "ADDRESS_REFUSED"),
    "http.client": ("ClientConnection",),
    "http.url": ("Url", "parse_url"),
    "http.pool": ("UpstreamTimeouts", "READ_SIZE"),
    "http.proxy": ("handshake_for", "ProxyError"),
    "http.h2client": ("H2Link",),
    "ssrf": ("pick_address",),
}
_LAZY = {name: module for module, names in _SOURCES.items() for name in names}
#: names that differ from the submodule's: ``streams.DONE`` would clash with the outcome
_RENAMED = {"SSE_DONE": "DONE"}


def build_vendor_exchange(engine: str, request: ChatRequest | dict[str, Any],
                          ctx: ChatContext) -> Exchange:
    """One attempt's vendor exchange: the exact ``UpstreamRequest`` (``.request``), the
    whole-body parser (``.parse_body``/``.parse_error``) and ``.stream_decoder()``.

    ``engine`` is ``detect_engine(provider)`` (one of ``ENGINES``), ``request`` the parsed
    ``ChatRequest`` (or the client's dict, parsed here), ``ctx`` what the gateway would decide
    (models, provider, key, ids). Raises ``ValueError`` for an engine without a translator, and
    the builder's ``UniapiError`` (a 400 ``ClientError`` for a request this vendor cannot
    take, ``ImagesNeeded`` when remote images must be fetched first) as is.
    """
    from .vendors import TRANSLATORS

    build = TRANSLATORS.get(engine)
    if build is None:
        raise ValueError(f"no vendor translator for engine {engine!r} "
                         f"(known: {', '.join(sorted(TRANSLATORS))})")
    return build(request, ctx)


if not TYPE_CHECKING:  # for type checkers the names are the imports above

    def __getattr__(name: str) -> Any:
        try:
            module = _LAZY[name]
        except KeyError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        from importlib import import_module

        value = getattr(import_module(f"{__name__}.{module}"), _RENAMED.get(name, name))
        globals()[name] = value  # the next access is a plain lookup
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
