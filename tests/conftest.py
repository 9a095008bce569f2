"""Fixtures for the whole suite.

``chat_stream_validator`` (autouse) runs the core's chat stream validator
(``uniapi_core.streams.check``, docs/architecture.md "The stream validator") on every chat
completion an in-process gateway answers in a test, whichever transport serves it: each
streamed answer through a ``ChatStreamChecker``, each whole 200 body through
``check_chat_body``. A ``/v1/messages`` answer is held to Anthropic's grammar instead
(``uniapi_core.fronts.messages_check``, and ``check_messages_body`` here), a
``/v1/responses`` answer to the Responses grammar (``fronts/responses_check.py``, and the
openai SDK's ``Response`` model), a Gemini-native answer to Gemini's
(``fronts/gemini_check.py``, and google-genai's ``GenerateContentResponse``). A problem fails
the test at teardown.

Gateways in another process (the command-line and embedding tests) are out of its reach: their
tests read chat answers through the ``checked_chat`` fixture, which runs the bytes the SDK
received through the same validator.

It works from the test side only, by wrapping three methods for the test's duration:
``Gateway.route_chat`` (the one place a chat relay is made: the relays it returns are the ones
watched, so embeddings, images, audio, moderations and models never are) and ``Relay.start``
/ ``Relay.handle`` (the relay's one door: every ``SendHead``/``SendData``/``EndResponse`` it
emits comes out of one of them, before a transport frames it for HTTP/1.1 or HTTP/2). A relay
the client abandoned (``outcome.client_closed``), that was cancelled, or that never finished
(the test stopped the gateway first) is not held to rule 8 (unfinished).
"""

from __future__ import annotations

import functools
import json
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from uniapi_core.gateway import Gateway, Routed
from uniapi_core.relay import EndResponse, Relay, SendData, SendHead, State
from uniapi_core.fronts.front import GeminiFront, MessagesFront, ResponsesFront
from uniapi_core.fronts.gemini_check import GeminiGrammarError, GeminiStreamChecker
from uniapi_core.fronts.messages_check import MessagesGrammarError, MessagesStreamChecker
from uniapi_core.fronts.responses_check import ResponsesGrammarError, ResponsesStreamChecker
from uniapi_core.streams import ChatStreamChecker, check_chat_body, check_chat_stream

#: bytes of an answer kept to show with its problems
_SHOWN = 2000
#: problems of one answer listed in full (a broken upstream dialect repeats one per chunk)
_LISTED = 8


class _FrontChecker:
    """A front's grammar checker (``MessagesStreamChecker``, ``ResponsesStreamChecker``) with
    ``ChatStreamChecker``'s face: problems are collected, not raised; after the first the
    stream is not read on."""

    def __init__(self, front: str) -> None:
        self._checker: Any = (MessagesStreamChecker() if front == "messages"
                              else ResponsesStreamChecker() if front == "responses"
                              else GeminiStreamChecker(sse=front == "gemini-sse"))
        self._what = {"messages": "Anthropic event stream",
                      "responses": "Responses event stream"}.get(front, f"{front} stream")
        self.problems: list[str] = []

    def feed(self, data: bytes) -> None:
        self._run(lambda c: c.feed(data))

    def close(self) -> None:
        self._run(lambda c: c.close())

    def _run(self, step: Callable[[Any], Any]) -> None:
        if self._checker is None:
            return
        try:
            step(self._checker)
        except (MessagesGrammarError, ResponsesGrammarError, GeminiGrammarError) as exc:
            self.problems.append(f"{self._what}: {exc}")
            self._checker = None


def check_messages_body(obj: dict[str, Any]) -> list[str]:
    """The problems of a whole Anthropic ``message`` answer (or a count_tokens answer)."""
    if set(obj) == {"input_tokens"}:
        return [] if type(obj["input_tokens"]) is int else ["input_tokens is not an integer"]
    problems = []
    if obj.get("type") != "message" or obj.get("role") != "assistant":
        problems.append("not an assistant message")
    if not isinstance(obj.get("content"), list) or not all(
            isinstance(b, dict) and isinstance(b.get("type"), str) for b in obj["content"]):
        problems.append("content is not a list of typed blocks")
    usage = obj.get("usage")
    if not isinstance(usage, dict) or not all(type(usage.get(k)) is int
                                              for k in ("input_tokens", "output_tokens")):
        problems.append(f"usage without integer input/output tokens: {usage!r}")
    if not isinstance(obj.get("id"), str) or not isinstance(obj.get("model"), str):
        problems.append("no id or model")
    return problems


def _front_kind(front: Any) -> str | None:
    """Which grammar a relay's answer is held to (None: OpenAI chat's)."""
    if isinstance(front, MessagesFront):
        return "messages"
    if isinstance(front, ResponsesFront):
        return "responses"
    if isinstance(front, GeminiFront):
        return "gemini-sse" if front.sse else "gemini-array"
    return None


def check_gemini_body(obj: dict[str, Any]) -> list[str]:
    """The problems of a whole ``GenerateContentResponse`` (google-genai's own model)."""
    from google.genai import types
    try:
        types.GenerateContentResponse.model_validate(obj)
    except Exception as exc:  # noqa: BLE001 - pydantic's ValidationError, said as a problem
        return [f"not a GenerateContentResponse: {str(exc)[:300]}"]
    candidates = obj.get("candidates")
    return [] if isinstance(candidates, list) and candidates else ["no candidates"]


def check_responses_body(obj: dict[str, Any]) -> list[str]:
    """The problems of a whole Responses answer (the openai SDK's own model checks it)."""
    from openai.types.responses import Response
    try:
        Response.model_validate(obj)
    except Exception as exc:  # noqa: BLE001 - pydantic's ValidationError, said as a problem
        return [f"not a Responses object: {str(exc)[:300]}"]
    return [] if obj.get("object") == "response" else ["object is not 'response'"]


class _Watched:
    """One chat relay being watched: what its answer is and what came of it so far."""

    __slots__ = ("body", "checker", "front", "label", "reported", "shown")

    def __init__(self, label: str, front: str | None = None) -> None:
        self.label = label
        #: "messages" or "responses": that front's grammar, not OpenAI chat's
        self.front = front
        self.checker: ChatStreamChecker | _FrontChecker | None = None  # a streamed answer
        self.body: bytearray | None = None  # a whole 200 answer
        self.shown = bytearray()  # its first bytes, for the failure message
        self.reported = 0  # checker problems already collected


class ChatStreamWatch:
    """The validator of one test's chat answers (what ``chat_stream_validator`` yields).

    ``problems`` collects ``"<request>: <problem>"`` lines; ``streams`` and ``bodies`` count
    the answers checked. A test that provokes a broken answer on purpose takes its problems
    with ``take()`` so that teardown does not fail it.
    """

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.streams = 0
        self.bodies = 0
        self._lock = threading.Lock()  # gateways run in threads of their own
        self._relays: weakref.WeakKeyDictionary[Relay, _Watched] = weakref.WeakKeyDictionary()

    def take(self) -> list[str]:
        """The problems so far, which are then no longer the test's."""
        with self._lock:
            self._collect_open()
            taken, self.problems = self.problems, []
        return taken

    def watch(self, relay: Relay, label: str) -> None:
        """Check what ``relay`` (a chat completion's, or a ``/v1/messages`` one's) sends to
        its client."""
        with self._lock:
            front = relay._front
            self._relays[relay] = _Watched(label, _front_kind(front))

    def emitted(self, relay: Relay, actions: list[Any]) -> None:
        """``relay.start``/``relay.handle`` returned ``actions``: check the answer's bytes."""
        with self._lock:
            watched = self._relays.get(relay)
            if watched is None:
                return
            try:
                self._emitted(relay, watched, actions)
            except Exception as exc:  # noqa: BLE001 - never break the relay: say so instead
                self.problems.append(f"{watched.label}: the validator failed: {exc!r}")
                del self._relays[relay]

    def _emitted(self, relay: Relay, watched: _Watched, actions: list[Any]) -> None:
        for action in actions:
            cls = type(action)
            if cls is SendHead:
                if action.content_length is None:
                    watched.checker = (_FrontChecker(watched.front) if watched.front
                                       else ChatStreamChecker())
                    self.streams += 1
                elif action.status == 200:
                    watched.body = bytearray()
            elif cls is SendData:
                if len(watched.shown) < _SHOWN:
                    watched.shown += action.data[:_SHOWN - len(watched.shown)]
                if watched.checker is not None:
                    watched.checker.feed(action.data)
                elif watched.body is not None:
                    watched.body += action.data
            elif cls is EndResponse and watched.body is not None:
                self.bodies += 1
                self._body(watched, bytes(watched.body))
                watched.body = None
        if relay.finished:
            outcome = relay.outcome
            if watched.checker is not None and not outcome.client_closed and \
                    relay.state is not State.CANCELLED:
                watched.checker.close()
            self._collect(watched)
            del self._relays[relay]

    def _body(self, watched: _Watched, body: bytes) -> None:
        try:
            obj = json.loads(body)
        except ValueError:
            problems = ["the 200 body is not JSON"]
        else:
            check = {"messages": check_messages_body, "responses": check_responses_body,
                     None: check_chat_body}.get(watched.front, check_gemini_body)
            problems = check(obj) if isinstance(obj, dict) else \
                ["the 200 body is not a JSON object"]
        self._report(watched, problems)

    def _collect(self, watched: _Watched) -> None:
        if watched.checker is not None:
            self._report(watched, watched.checker.problems[watched.reported:])
            watched.reported = len(watched.checker.problems)

    def _collect_open(self) -> None:
        for watched in list(self._relays.values()):
            self._collect(watched)

    def _report(self, watched: _Watched, problems: list[str]) -> None:
        if problems:
            self.problems += [f"{watched.label}: {p}" for p in problems[:_LISTED]]
            if len(problems) > _LISTED:
                self.problems.append(f"{watched.label}: … and {len(problems) - _LISTED} more")
            self.problems.append(f"{watched.label}: the answer began {bytes(watched.shown)!r}")

    def finish(self) -> list[str]:
        """Teardown: the problems of every answer, those of relays still open included."""
        with self._lock:
            self._collect_open()
            self._relays.clear()
            return list(self.problems)


def _label(call: Any) -> str:
    kind = "stream" if getattr(call, "stream", False) else "body"
    front = "chat" if getattr(call, "front", None) is None else f"/v1/{call.front.kind}"
    return f"{front} {kind} for model {getattr(call, 'model', '?')!r}"


@pytest.fixture(autouse=True)
def chat_stream_validator(monkeypatch: pytest.MonkeyPatch) -> Iterator[ChatStreamWatch]:
    """Every chat completion an in-process gateway answers during the test must pass the
    core's validator (see the module docstring); a problem fails the test at teardown."""
    watch = ChatStreamWatch()
    route_chat, start, handle = Gateway.route_chat, Relay.start, Relay.handle

    @functools.wraps(route_chat)
    def watched_route_chat(self: Gateway, call: Any, *args: Any, **kwargs: Any) -> Any:
        routed = route_chat(self, call, *args, **kwargs)
        if isinstance(routed, Routed):
            watch.watch(routed.relay, _label(call))
        return routed

    @functools.wraps(start)
    def watched_start(self: Relay, *args: Any, **kwargs: Any) -> Any:
        actions = start(self, *args, **kwargs)
        watch.emitted(self, actions)
        return actions

    @functools.wraps(handle)
    def watched_handle(self: Relay, *args: Any, **kwargs: Any) -> Any:
        actions = handle(self, *args, **kwargs)
        watch.emitted(self, actions)
        return actions

    monkeypatch.setattr(Gateway, "route_chat", watched_route_chat)
    monkeypatch.setattr(Relay, "start", watched_start)
    monkeypatch.setattr(Relay, "handle", watched_handle)
    yield watch
    problems = watch.finish()
    if problems:
        pytest.fail("the chat stream validator (uniapi_core/streams/check.py) found:\n"
                    + "\n".join(problems), pytrace=False)


def read_checked_chat(client: Any, **request: Any) -> Any:
    """``client.chat.completions.create(**request)`` (an ``openai.OpenAI``), with the bytes the
    gateway answered run through the validator first: ``check_chat_stream`` for a stream,
    ``check_chat_body`` for a whole 200 answer; they must pass. Returns what the SDK makes of
    those same bytes (a ``Stream`` or a ``ChatCompletion``)."""
    raw = client.chat.completions.with_raw_response.create(**request)
    body = raw.http_response.read()
    if request.get("stream"):
        problems = check_chat_stream(body)
    else:
        obj = json.loads(body)
        problems = check_chat_body(obj) if isinstance(obj, dict) else ["not a JSON object"]
    assert problems == [], f"the chat stream validator: {problems}\n{body[:2000]!r}"
    return raw.parse()


@pytest.fixture
def checked_chat() -> Callable[..., Any]:
    """``read_checked_chat``: for chat answers from a gateway in another process."""
    return read_checked_chat


@pytest.fixture(autouse=True, scope="session")
def stats_store_in_a_temporary_directory(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Gateways the suite starts as processes (``uniapi serve``/``demo``) keep their stats
    store, on by default at ``./data/stats.db``, in a temporary directory instead of the
    checkout (tests that look at the store set ``DB_PATH`` themselves)."""
    import os

    os.environ.setdefault("DB_PATH", str(tmp_path_factory.mktemp("stats") / "stats.db"))
