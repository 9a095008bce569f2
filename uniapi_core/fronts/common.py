"""What the fronts' translators share: the request checks that name a JSON path in their 400,
and the two readings of an OpenAI answer every front makes (its reasoning text, a tool call's
arguments as an object)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote

from ..errors import ClientError
from ..jsonutil import loads_upstream

__all__ = ["bad", "is_num", "obj", "string", "reasoning_of", "arguments_object",
           "named_event", "digest62", "first_choice", "url_filename"]

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def digest62(*parts: str, length: int = 22) -> str:
    """``length`` base-62 characters of the SHA-256 of ``parts``: the ids a front derives
    from its inputs (the core draws no random ids of its own)."""
    n = int.from_bytes(hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass"))
                       .digest(), "big")
    out = []
    for _ in range(length):
        n, r = divmod(n, len(_ALPHABET))
        out.append(_ALPHABET[r])
    return "".join(out)


def first_choice(chunk: dict[str, Any]) -> Iterator[tuple[dict[str, Any] | None, Any]]:
    """``(delta, finish_reason)`` of each entry of a chunk's ``choices`` for choice 0 (the one
    the fronts translate); ``delta`` None when it is not an object."""
    choices = chunk.get("choices")
    if type(choices) is not list:
        return
    for choice in choices:
        if type(choice) is not dict or choice.get("index", 0) != 0:
            continue
        delta = choice.get("delta")
        yield (delta if type(delta) is dict else None), choice.get("finish_reason")


def bad(path: str, message: str) -> ClientError:
    """The 400 of a request field: ``"<json path>: <why>"``."""
    return ClientError(f"{path}: {message}")


def is_num(v: Any) -> bool:
    """A JSON number (``bool`` is not one)."""
    return type(v) is int or type(v) is float


def obj(v: Any, path: str) -> dict[str, Any]:
    """``v`` when it is an object, else the 400 naming ``path``."""
    if type(v) is not dict:
        raise bad(path, "expected an object")
    return v


def string(o: dict[str, Any], key: str, path: str, *, required: bool = True) -> str | None:
    """``o[key]`` when it is a string (None when absent and not ``required``), else the 400
    naming ``path.key``."""
    v = o.get(key)
    if v is None and not required:
        return None
    if type(v) is not str:
        raise bad(f"{path}.{key}", "expected a string" if key in o else "field required")
    return v


def reasoning_of(message: dict[str, Any]) -> Any:
    """A chat message's or delta's reasoning text: ``reasoning_content``, else ``reasoning``."""
    text = message.get("reasoning_content")
    return text if type(text) is str else message.get("reasoning")


def arguments_object(arguments: Any) -> dict[str, Any]:
    """A tool call's arguments as an object: the object itself, the object its JSON text
    holds, else ``{}`` (arguments that are not a JSON object)."""
    if type(arguments) is dict:
        return arguments
    if type(arguments) is str:
        try:
            value = loads_upstream(arguments)
        except ValueError:
            return {}
        if type(value) is dict:
            return value
    return {}


def named_event(raw: bytes, fail: Callable[[str], Exception]) -> dict[str, Any] | None:
    """For the grammar checkers of the fronts whose SSE events are named (Messages, Responses):
    the JSON object of one event (its text without the blank line), None for an event of
    comments only; ``fail(why)`` is raised when it has no ``event:`` name, data that is not a
    JSON object, or a ``type`` other than its name."""
    name = None
    data: list[str] = []
    for line in raw.decode("utf-8").split("\n"):
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    if name is None and not data:
        return None
    if name is None:
        raise fail(f"no 'event:' line in {raw[:80]!r}")
    try:
        event = json.loads("\n".join(data))
    except ValueError:
        raise fail(f"{name}: data is not JSON: {raw[:80]!r}") from None
    if type(event) is not dict:
        raise fail(f"{name}: data is not a JSON object")
    if event.get("type") != name:
        raise fail(f"event name {name!r} but data type {event.get('type')!r}")
    return event


def url_filename(url: str) -> str:
    """A remote document's name: its URL's last path segment, unquoted (``document`` when the
    URL has no path)."""
    rest = url.split("?", 1)[0].split("#", 1)[0].split("//", 1)[-1]
    path = rest.partition("/")[2].rstrip("/")
    return unquote(path.rsplit("/", 1)[-1]) or "document"
