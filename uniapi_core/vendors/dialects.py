"""The OpenAI-compatible dialects: one table of what each known host does differently, and the
normalizer that turns any of them into the chunks and bodies OpenAI's own clients read.

"OpenAI-compatible" is not one protocol. Mistral streams tool calls without ``index`` and its
reasoning models send ``delta.content`` as a list of typed parts; Groq, OpenRouter, Cerebras,
Ollama and vLLM name reasoning ``reasoning`` (OpenRouter adds ``reasoning_details`` carrying the
same text); Groq puts usage in ``x_groq.usage``; DeepSeek counts cache hits as
``prompt_cache_hit_tokens``; hosts running open models without a reasoning parser leave
``<think>…</think>`` in the content; finish reasons such as ``eos`` and ``model_length`` are
outside OpenAI's set. docs/vendors.md, "OpenAI-compatible dialects", lists each host.

The normalizations are safe for every host, so they always run: a host that is misdetected or
unknown still reaches the client as a clean stream. What the dialect decides is the default of
the one rewrite that is not always safe, ``<think>`` splitting (``think_tags``), and what the
docs and tests say each host sends. ``dialect_for(provider)`` picks it from the provider's
``preferences.dialect``, else its engine, else its ``base_url``.

``ChunkNormalizer`` is per stream and incremental (tool-call numbering, think-tag state, the
finish reason of each choice); it works on parsed chunk objects, in place, and says whether it
changed one so that the decoder re-encodes only then. ``normalize_body`` does the same to a
whole ``chat.completion``. What comes out satisfies the rules of ``uniapi_core.streams.check``.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlsplit

import attrs

from ..jsonutil import dumps

__all__ = ["Dialect", "DIALECTS", "GENERIC", "dialect_for", "ChunkNormalizer", "normalize_body",
           "normalize_usage", "map_finish", "FINISH_REASONS", "ThinkSplitter"]

#: OpenAI's finish reasons; anything else is mapped by ``map_finish``
FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})

#: finish reasons other hosts send, in lower case, and the OpenAI reason each means
_FINISH_MAP = {
    "eos": "stop", "eos_token": "stop", "end_turn": "stop", "stop_sequence": "stop",
    "end": "stop", "complete": "stop", "completed": "stop", "finished": "stop",
    "max_tokens": "length", "model_length": "length", "max_length": "length",
    "length_capped": "length", "max_output_tokens": "length",
    # DeepSeek: the answer was cut because the service ran short of resources
    "insufficient_system_resource": "length",
    "tool_use": "tool_calls", "tool_call": "tool_calls", "function_calls": "tool_calls",
    "content_filtered": "content_filter", "safety": "content_filter", "refusal": "content_filter",
    "recitation": "content_filter", "blocklist": "content_filter",
    "prohibited_content": "content_filter", "spii": "content_filter",
}

#: a finish reason that means the host failed the answer (Mistral, OpenRouter): the stream fails
FAILED_FINISH = "error"


def map_finish(reason: Any, has_calls: bool) -> str:
    """Any host's finish reason -> OpenAI's; unknown -> ``stop``; ``stop`` after tool calls ->
    ``tool_calls`` (Ollama and some vLLM versions say ``stop`` there)."""
    if type(reason) is str and reason in FINISH_REASONS and not (has_calls and reason == "stop"):
        return reason
    if isinstance(reason, str):
        low = reason.lower()
        out = low if low in FINISH_REASONS else _FINISH_MAP.get(low, "stop")
    else:
        out = "stop"
    return "tool_calls" if out == "stop" and has_calls else out


@attrs.frozen(kw_only=True)
class Dialect:
    """One OpenAI-compatible host family."""

    name: str
    title: str
    #: host names (or their parent domains) that identify it from a ``base_url``
    hosts: tuple[str, ...] = ()
    #: the local server's default port, for ``http://localhost:PORT`` URLs
    port: int | None = None
    #: whether ``<think>…</think>`` at the start of the content is reasoning, by default
    think_tags: bool = False
    #: what the host sends that differs from OpenAI (docs/vendors.md is made from this)
    differs: str = ""


GENERIC = Dialect(name="generic", title="any other OpenAI-compatible host",
                  differs="unknown (llama.cpp's `llama-server`, for one: `reasoning_content`, "
                          "float `timings` on every chunk): every normalization runs")

DIALECTS: dict[str, Dialect] = {d.name: d for d in (
    Dialect(name="openai", title="OpenAI", hosts=("api.openai.com",),
            differs="the reference; usage only with `stream_options.include_usage`, in a "
                    "last chunk with `choices: []`"),
    Dialect(name="azure", title="Azure OpenAI",
            hosts=("openai.azure.com", "cognitiveservices.azure.com", "services.ai.azure.com",
                   "models.inference.ai.azure.com"),
            differs="a first chunk with `choices: []` and `prompt_filter_results`; "
                    "`content_filter_results` on choices; asynchronous-filter annotations "
                    "(`content_filter_offsets`, no `delta`); `content_filter` finishes"),
    Dialect(name="deepseek", title="DeepSeek", hosts=("api.deepseek.com",),
            differs="`reasoning_content`; `: keep-alive` comments while the model works; "
                    "usage counts cache hits as `prompt_cache_hit_tokens`/"
                    "`prompt_cache_miss_tokens`; finish reason `insufficient_system_resource`"),
    Dialect(name="xai", title="xAI", hosts=("api.x.ai",),
            differs="`reasoning_content`; tool calls arrive whole in one chunk; usage adds "
                    "`num_sources_used`, and `reasoning_tokens` are outside `completion_tokens` "
                    "(the reported `total_tokens` is kept)"),
    Dialect(name="groq", title="Groq", hosts=("api.groq.com",),
            differs="`x_groq` (`id`, `seed`) on the first chunk; reasoning as "
                    "`delta.reasoning` (`message.reasoning` whole); usage in `x_groq.usage` on "
                    "the last chunk, with float timings"),
    Dialect(name="mistral", title="Mistral", hosts=("api.mistral.ai", "codestral.mistral.ai"),
            differs="streamed `tool_calls` without `index`, with the finish and usage in the "
                    "last chunk; reasoning models send `content` as a list of `thinking` and "
                    "`text` parts; `tool_calls: null` in whole answers; finish reasons "
                    "`model_length` and `error`"),
    Dialect(name="openrouter", title="OpenRouter", hosts=("openrouter.ai",),
            differs="`delta.reasoning` plus `reasoning_details` with the same text; `role` on "
                    "every delta; `: OPENROUTER PROCESSING` comments; `native_finish_reason`; "
                    "usage on a chunk after the finish, with a float `cost`; an error mid-stream "
                    "comes with `finish_reason: \"error\"`"),
    Dialect(name="together", title="Together AI",
            hosts=("api.together.xyz", "api.together.ai"), think_tags=True,
            differs="choices also carry `text`, `seed` and `delta.token_id`; `tool_calls: "
                    "null` on every delta; finish reason `eos`; open reasoning models may "
                    "answer with `<think>` in the content"),
    Dialect(name="fireworks", title="Fireworks AI", hosts=("api.fireworks.ai",),
            think_tags=True,
            differs="usage on the last chunk even unasked; open reasoning models may answer "
                    "with `<think>` in the content"),
    Dialect(name="cerebras", title="Cerebras", hosts=("api.cerebras.ai",),
            differs="reasoning as `delta.reasoning`; `time_info` beside usage; the stream "
                    "ends after the finish chunk, without `data: [DONE]`"),
    Dialect(name="siliconflow", title="SiliconFlow",
            hosts=("api.siliconflow.cn", "api.siliconflow.com", "api-st.siliconflow.cn"),
            differs="`reasoning_content`; `role` on every delta; running usage totals on "
                    "every chunk"),
    Dialect(name="ollama", title="Ollama", hosts=("ollama.com",), port=11434, think_tags=True,
            differs="reasoning as `delta.reasoning`; `role` on every delta; tool calls "
                    "whole, finish reason `stop` after them; older versions leave `<think>` in "
                    "the content"),
    Dialect(name="vllm", title="vLLM", port=8000, think_tags=True,
            differs="`reasoning` (older releases `reasoning_content`) with a reasoning parser, "
                    "`<think>` in the content without one; `stop_reason` beside the finish "
                    "reason; `prompt_tokens_details: null`; `tool_calls: []` in whole answers"),
    Dialect(name="lmstudio", title="LM Studio", port=1234, think_tags=True,
            differs="`reasoning_content` when reasoning is separated, `<think>` in the content "
                    "when it is not; numeric-string call ids; argument pieces carry "
                    "`\"name\": \"\"`; no usage in streams"),
)}

#: engines that say the dialect by themselves
_ENGINE_DIALECT = {"azure": "azure", "openrouter": "openrouter"}
_LOCAL = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0", "host.docker.internal"})


def dialect_for(provider: Any) -> Dialect:
    """The dialect of ``provider`` (a ``uniapi_core.config.Provider``): its
    ``preferences.dialect``, else its engine, else its ``base_url``'s host (or, for a local
    server, its port), else ``GENERIC``."""
    prefs = getattr(provider, "preferences", None)
    chosen = getattr(prefs, "dialect", None)
    if chosen:
        return DIALECTS.get(chosen, GENERIC)
    engine = getattr(provider, "engine", None)
    if engine in _ENGINE_DIALECT:
        return DIALECTS[_ENGINE_DIALECT[engine]]
    return _dialect_of_url(getattr(provider, "base_url", None) or "")


#: host -> dialect, and local port -> dialect (built once from the table)
_BY_HOST = {host: d for d in DIALECTS.values() for host in d.hosts}
_BY_PORT = {d.port: d for d in DIALECTS.values() if d.port is not None}


def _dialect_of_url(url: str) -> Dialect:
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        return GENERIC
    if host in _LOCAL:
        return _BY_PORT.get(port, GENERIC) if port is not None else GENERIC
    while host:  # the host, then each parent domain: eu.api.mistral.ai -> api.mistral.ai
        found = _BY_HOST.get(host)
        if found is not None:
            return found
        host = host.partition(".")[2]
    return GENERIC


# -- usage -----------------------------------------------------------------------------------

def _counts(obj: dict[str, Any]) -> dict[str, Any]:
    """Only the counts: integers >= 0 (an integral float becomes an int), nested objects
    likewise; booleans, strings, fractions and negatives are not usage figures."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            if value >= 0:
                out[key] = value
        elif isinstance(value, float):
            if value >= 0 and value.is_integer() and value < 2 ** 63:
                out[key] = int(value)
        elif isinstance(value, dict):
            out[key] = _counts(value)
    return out


def _first_count(*values: Any) -> int | None:
    for v in values:
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            return v
    return None


#: usage keys that other hosts use for what OpenAI names differently
_ELSEWHERE = frozenset({"input_tokens", "output_tokens", "prompt_cache_hit_tokens",
                        "cached_tokens", "cache_read_input_tokens", "input_tokens_details",
                        "reasoning_tokens", "output_tokens_details"})


def _clean(obj: dict[str, Any]) -> bool:
    """Counts only already: every value an int >= 0 or an object of such."""
    for value in obj.values():
        kind = type(value)
        if kind is int:
            if value < 0:
                return False
        elif kind is not dict or not _clean(value):
            return False
    return True


def normalize_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Any host's usage object -> OpenAI's: counts only, ``input/output_tokens`` as
    ``prompt/completion_tokens`` when those are missing, cache hits in
    ``prompt_tokens_details.cached_tokens`` and reasoning in
    ``completion_tokens_details.reasoning_tokens`` wherever the host put them, and
    ``total_tokens`` when missing. Other counts keep their names. Usage already in OpenAI's
    shape is returned as it is (the same object)."""
    if ("total_tokens" in usage or "prompt_tokens" not in usage) and _clean(usage) \
            and _ELSEWHERE.isdisjoint(usage):
        return usage
    out = _counts(usage)
    for ours, theirs in (("prompt_tokens", "input_tokens"), ("completion_tokens", "output_tokens")):
        if ours not in out and theirs in out:
            out[ours] = out[theirs]
    if "total_tokens" not in out and type(out.get("prompt_tokens")) is int \
            and type(out.get("completion_tokens")) is int:
        out["total_tokens"] = out["prompt_tokens"] + out["completion_tokens"]
    prompt = out.get("prompt_tokens_details")
    prompt = prompt if isinstance(prompt, dict) else {}
    if "cached_tokens" not in prompt:
        cached = _first_count(out.get("prompt_cache_hit_tokens"), out.get("cached_tokens"),
                              out.get("cache_read_input_tokens"),
                              _dict(out.get("input_tokens_details")).get("cached_tokens"))
        if cached is not None:
            out["prompt_tokens_details"] = {**prompt, "cached_tokens": cached}
    completion = out.get("completion_tokens_details")
    completion = completion if isinstance(completion, dict) else {}
    if "reasoning_tokens" not in completion:
        reasoning = _first_count(out.get("reasoning_tokens"),
                                 _dict(out.get("output_tokens_details")).get("reasoning_tokens"))
        if reasoning is not None:
            out["completion_tokens_details"] = {**completion, "reasoning_tokens": reasoning}
    return out


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


# -- content ---------------------------------------------------------------------------------

def _flatten(content: Any, text: list[str], thinking: list[str]) -> None:
    """Typed content parts (Mistral's ``text`` and ``thinking``, others' ``reasoning``) ->
    the text and the reasoning they hold, in order. Parts with no text (references, images)
    carry nothing a chat message can hold."""
    if isinstance(content, str):
        text.append(content)
    elif isinstance(content, list):
        for part in content:
            _flatten(part, text, thinking)
    elif isinstance(content, dict):
        kind = content.get("type")
        if kind in ("thinking", "reasoning"):
            inner: list[str] = []
            for key in ("thinking", "reasoning", "text", "content"):
                if key in content:
                    _flatten(content[key], inner, inner)
                    break
            thinking.extend(inner)
        elif isinstance(content.get("text"), str):
            text.append(content["text"])


def _as_text(value: Any) -> str:
    """A field OpenAI says is a string, when a host sent something else."""
    if isinstance(value, str):
        return value
    parts: list[str] = []
    _flatten(value, parts, parts)
    if parts or isinstance(value, (list, dict)):
        return "".join(parts)
    return dumps(value).decode()


def _details_text(details: Any) -> str:
    """The readable text of OpenRouter's ``reasoning_details`` (encrypted items have none)."""
    out = []
    for item in details if isinstance(details, list) else ():
        if isinstance(item, dict):
            for key in ("text", "summary"):
                if isinstance(item.get(key), str):
                    out.append(item[key])
                    break
    return "".join(out)


_OPEN, _CLOSE = "<think>", "</think>"


class ThinkSplitter:
    """``<think>…</think>`` at the start of a content stream -> reasoning, the rest -> content.

    Incremental: a tag split across pieces (``"<thi"`` + ``"nk>"``) is held back until it is
    known. Only a leading block counts (after whitespace), so a model that writes the tag in
    its answer keeps it. States: ``start`` (no text decided yet), ``inside`` (in the block),
    ``after`` (skipping the blank lines after ``</think>``), ``out`` (plain content).
    """

    def __init__(self) -> None:
        self.state = "start"
        self._buf = ""

    @property
    def passing(self) -> bool:
        """True once everything that comes is plain content."""
        return self.state == "out"

    def feed(self, text: str) -> tuple[str, str]:
        """``text`` -> (reasoning, content) ready to send now."""
        buf = self._buf + text
        self._buf = ""
        reasoning = ""
        if self.state == "start":
            lead = buf.lstrip()
            if not lead or (len(lead) < len(_OPEN) and _OPEN.startswith(lead)):
                self._buf = buf
                return "", ""
            if not lead.startswith(_OPEN):
                self.state = "out"
                return "", buf
            self.state = "inside"
            buf = lead[len(_OPEN):]
        if self.state == "inside":
            end = buf.find(_CLOSE)
            if end < 0:
                keep = _partial_suffix(buf, _CLOSE)
                self._buf = buf[len(buf) - keep:] if keep else ""
                return buf[:len(buf) - keep], ""
            reasoning, buf = buf[:end], buf[end + len(_CLOSE):]
            self.state = "after"
        if self.state == "after":
            buf = buf.lstrip()
            if not buf:
                return reasoning, ""
            self.state = "out"
        return reasoning, buf

    def flush(self) -> tuple[str, str]:
        """What is held back, at the end of the stream: an unfinished block is reasoning."""
        buf, self._buf = self._buf, ""
        if self.state == "inside":
            return buf, ""
        return "", buf if self.state == "start" else ""


def _partial_suffix(text: str, tag: str) -> int:
    """The length of the longest end of ``text`` that begins ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


def split_think(text: str) -> tuple[str, str]:
    """A whole content string -> (reasoning, content), as ``ThinkSplitter`` would stream it."""
    splitter = ThinkSplitter()
    r1, c1 = splitter.feed(text)
    r2, c2 = splitter.flush()
    return r1 + r2, c1 + c2


# -- streams ---------------------------------------------------------------------------------

@attrs.define
class _Choice:
    """What the normalizer remembers about one choice of a stream."""

    calls: int = 0  # tool calls seen so far (the next one's index)
    by_id: dict[str, int] = attrs.Factory(dict)
    by_index: dict[Any, int] = attrs.Factory(dict)  # the host's index -> ours (latest call)
    named: set[int] = attrs.Factory(set)  # our indexes whose name was sent
    last: int | None = None
    finished: bool = False
    think: ThinkSplitter | None = None


_MISSING = object()


def _snapshot(delta: dict[str, Any]) -> tuple[Any, ...]:
    get = delta.get
    return (get("content", _MISSING), get("reasoning_content", _MISSING),
            get("reasoning", _MISSING), get("refusal", _MISSING))


class ChunkNormalizer:
    """Per-stream normalizer for OpenAI-compatible chunks (see the module docstring).

    ``chunk(obj)`` normalizes one parsed chunk in place and says whether it changed; changes are
    tracked as they are made (no re-encoding to compare), since reasoning models send most of
    their chunks this way. ``usage`` is the last usage seen, normalized.
    """

    def __init__(self, dialect: Dialect = GENERIC, *, think_tags: bool | None = None) -> None:
        self.dialect = dialect
        self._think = dialect.think_tags if think_tags is None else think_tags
        self._choices: dict[int, _Choice] = {}
        self.failed: str | None = None  # set when a choice finished with "error"
        self.usage: dict[str, Any] | None = None
        self._head: tuple[Any, Any] | None = None  # the first chunk's id and created
        self._dirty = False
        self.any_finished = False

    @property
    def gated(self) -> bool:
        """Whether the decoder must ask ``plain_ok`` before its fast path."""
        return self._think or self.any_finished

    def plain_ok(self, index: int) -> bool:
        """Whether a plain content chunk for choice ``index`` may skip the normalizer (the
        decoder's fast path): not after that choice's finish, not while think tags are
        being looked for."""
        ch = self._choices.get(index)
        if ch is None:
            return not self._think
        return not ch.finished and (ch.think is None or ch.think.passing)

    def note_head(self, obj: dict[str, Any]) -> None:
        """Remember the stream's first chunk's ``id`` and ``created`` (for a synthesized
        finish chunk, and synthesized call ids)."""
        if self._head is None:
            self._head = (obj.get("id"), obj.get("created"))

    @property
    def needs_head(self) -> bool:
        return self._head is None

    @property
    def _id(self) -> str:
        ident = self._head[0] if self._head is not None else None
        return ident if isinstance(ident, str) else ""

    def seen_plain(self, index: int) -> None:
        """A fast-path chunk for choice ``index`` went by (so it needs a finish at the end)."""
        if index not in self._choices:
            self._choices[index] = self._new_choice()

    def _new_choice(self) -> _Choice:
        return _Choice(think=ThinkSplitter() if self._think else None)

    def chunk(self, obj: dict[str, Any]) -> bool:
        """Normalize one parsed chunk in place; True when it changed."""
        self._dirty = False
        if self._head is None:
            self.note_head(obj)
        if obj.get("object") != "chat.completion.chunk":
            obj["object"] = "chat.completion.chunk"
            self._dirty = True
        choices = obj.get("choices")
        if not isinstance(choices, list):
            obj["choices"] = choices = []
            self._dirty = True
        for position, choice in enumerate(choices):
            if not isinstance(choice, dict):
                choices[position] = choice = {}
                self._dirty = True
            self._choice(choice, position)
        self._usage(obj)
        return self._dirty

    def _usage(self, obj: dict[str, Any]) -> None:
        usage = obj.get("usage")
        if not isinstance(usage, dict):
            groq = obj.get("x_groq")
            if isinstance(groq, dict) and isinstance(groq.get("usage"), dict):
                usage = groq["usage"]  # Groq: on the last chunk
            elif usage is not None:
                obj["usage"] = None  # not an object: no figures in it
                self._dirty = True
                return
            else:
                return
        fixed = normalize_usage(usage)
        if fixed is not obj.get("usage"):  # a new object: something changed (1.0 is not 1)
            obj["usage"] = fixed
            self._dirty = True
        self.usage = fixed

    def _choice(self, choice: dict[str, Any], position: int) -> None:
        index = choice.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            choice["index"] = index = position
            self._dirty = True
        ch = self._choices.get(index)
        if ch is None:
            ch = self._choices[index] = self._new_choice()
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            delta = {}
            if isinstance(choice.get("text"), str):  # completion-style hosts
                delta["content"] = choice["text"]
            elif isinstance(choice.get("message"), dict):
                delta = dict(choice["message"])
            choice["delta"] = delta
            self._dirty = True
        reason = choice.get("finish_reason")
        if ch.finished:  # the host said more after its finish: the client must not see it
            if delta or reason is not None:
                choice["delta"] = {}
                choice["finish_reason"] = None
                self._dirty = True
            return
        before = _snapshot(delta)
        _content(delta, ch.think)
        if "tool_calls" in delta:
            self._calls(delta, ch)
        if reason is not None:
            if reason == FAILED_FINISH:
                self.failed = "the upstream ended the answer with finish_reason 'error'"
            _flush_think(delta, ch.think)
            mapped = map_finish(reason, ch.calls > 0)
            if mapped != reason:
                choice["finish_reason"] = mapped
                self._dirty = True
            ch.finished = self.any_finished = True
        if _snapshot(delta) != before:
            self._dirty = True

    def _calls(self, delta: dict[str, Any], ch: _Choice) -> None:
        calls = delta["tool_calls"]
        if calls is None:  # Together, Mistral: a null list; OpenAI's clients expect a list
            del delta["tool_calls"]
            self._dirty = True
            return
        if not isinstance(calls, list):
            calls = [calls] if isinstance(calls, dict) else []
            self._dirty = True
        fixed = [self._call(tc, ch) for tc in calls if isinstance(tc, dict)]
        if len(fixed) != len(calls):
            self._dirty = True
        if fixed:
            delta["tool_calls"] = fixed
        else:
            del delta["tool_calls"]

    def _call(self, tc: dict[str, Any], ch: _Choice) -> dict[str, Any]:
        """One tool-call delta: which call it belongs to, numbered by first appearance."""
        tid = tc.get("id")
        tid = tid if isinstance(tid, str) and tid else None
        theirs = tc.get("index")
        theirs = theirs if isinstance(theirs, int) and not isinstance(theirs, bool) else None
        fn = tc.get("function")
        if not isinstance(fn, dict):
            fn = {}
            if "function" in tc:
                self._dirty = True
        name = fn.get("name")
        name = name if isinstance(name, str) and name else None
        new = False
        if tid is not None and tid in ch.by_id:
            ours = ch.by_id[tid]
        elif tid is None and theirs is not None and theirs in ch.by_index \
                and not (name is not None and ch.by_index[theirs] in ch.named):
            ours = ch.by_index[theirs]  # a later piece of a call the host numbered
        elif tid is None and theirs is None and name is None and ch.last is not None:
            ours = ch.last  # a piece with neither index nor id: the call being streamed
        else:
            ours, new = ch.calls, True
            ch.calls += 1
        if tid is not None:
            ch.by_id.setdefault(tid, ours)
        if theirs is not None:
            ch.by_index[theirs] = ours
        ch.last = ours
        if tc.get("index") != ours or theirs is None:
            tc["index"] = ours
            self._dirty = True
        args = fn.get("arguments", "")
        if not isinstance(args, str):
            fn["arguments"] = "" if args is None else dumps(args).decode()
            self._dirty = True
        if new:
            if tid is None:
                tc["id"] = tid = "call_" + hashlib.sha256(
                    f"{self._id}/{ours}".encode("utf-8", "surrogatepass")).hexdigest()[:24]
                ch.by_id[tid] = ours
                self._dirty = True
            if "type" not in tc:
                tc["type"] = "function"
                self._dirty = True
            if not isinstance(fn.get("name"), str):
                fn["name"] = "" if fn.get("name") is None else _as_text(fn["name"])
                self._dirty = True
            tc["function"] = fn
        elif "function" in tc:
            tc["function"] = fn
        if name is not None:
            ch.named.add(ours)
        return tc

    def finish(self, model: str) -> dict[str, Any] | None:
        """At the end of a stream that ended properly: a last chunk giving every choice that
        had none its finish reason (and what a think block still held), or None."""
        out = []
        for index in sorted(self._choices):
            ch = self._choices[index]
            if ch.finished:
                continue
            delta: dict[str, Any] = {}
            _flush_think(delta, ch.think)
            ch.finished = True
            out.append({"index": index, "delta": delta,
                        "finish_reason": "tool_calls" if ch.calls else "stop"})
        if not out:
            return None
        created = self._head[1] if self._head is not None else 0
        if not isinstance(created, int) or isinstance(created, bool):
            created = 0
        return {"id": self._id, "object": "chat.completion.chunk", "created": created,
                "model": model, "choices": out}


def _content(delta: dict[str, Any], think: ThinkSplitter | None) -> None:
    """A delta's (or a message's) content and reasoning, normalized in place."""
    thinking: list[str] = []
    content = delta.get("content")
    if content is not None and not isinstance(content, str):
        if isinstance(content, (list, dict)):
            text: list[str] = []
            _flatten(content, text, thinking)
        else:
            text = [_as_text(content)]
        if text:
            delta["content"] = "".join(text)
        else:
            del delta["content"]
    refusal = delta.get("refusal")
    if refusal is not None and not isinstance(refusal, str):
        delta["refusal"] = _as_text(refusal)
    reasoning = _reasoning_of(delta)
    if thinking:
        reasoning = (reasoning or "") + "".join(thinking)
    if think is not None and not think.passing and isinstance(delta.get("content"), str):
        said, now = think.feed(delta["content"])
        if said:
            reasoning = (reasoning or "") + said
        delta["content"] = now
    if reasoning is not None:
        delta["reasoning_content"] = reasoning

def _flush_think(delta: dict[str, Any], think: ThinkSplitter | None) -> None:
    if think is None:
        return
    said, text = think.flush()
    if said:
        delta["reasoning_content"] = (delta.get("reasoning_content") or "") + said
    if text:
        delta["content"] = (delta.get("content") or "") + text


def _reasoning_of(delta: dict[str, Any]) -> str | None:
    """The delta's reasoning text from whichever field the host used (first of
    ``reasoning_content``, ``reasoning``, ``reasoning_details``); ``reasoning`` is removed, as
    its text is now in ``reasoning_content``."""
    found: str | None = None
    if "reasoning_content" in delta and delta["reasoning_content"] is not None:
        found = _as_text(delta["reasoning_content"])
    if "reasoning" in delta:
        value = delta.pop("reasoning")
        if found is None and value is not None:
            found = _as_text(value)
    if found is None and "reasoning_details" in delta:
        text = _details_text(delta["reasoning_details"])
        if text:
            found = text
    if found is None and "reasoning_content" in delta:
        return None
    return found


# -- whole bodies ----------------------------------------------------------------------------

def normalize_body(obj: dict[str, Any], dialect: Dialect = GENERIC, *,
                   think_tags: bool | None = None) -> bool:
    """A whole ``chat.completion`` from any host -> OpenAI's shape, in place; True when it
    changed. The same rules as the stream: message content as a string, reasoning in
    ``reasoning_content``, every tool call with an id, a type, a name and string arguments,
    finish reasons in OpenAI's set, usage normalized. Changes are tracked as they are made."""
    think = dialect.think_tags if think_tags is None else think_tags
    changed = False
    choices = obj.get("choices")
    if isinstance(choices, list):
        kept = [c for c in choices if isinstance(c, dict)]
        if len(kept) != len(choices):
            obj["choices"] = choices = kept
            changed = True
    for position, choice in enumerate(choices if isinstance(choices, list) else ()):
        index = choice.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            choice["index"] = position
            changed = True
        message = choice.get("message")
        if not isinstance(message, dict):
            message = choice["message"] = {"role": "assistant", "content": None}
            changed = True
        before = _snapshot(message)
        splitter = ThinkSplitter() if think else None
        _content(message, splitter)
        _flush_think(message, splitter)
        if _snapshot(message) != before:
            changed = True
        calls = message.get("tool_calls")
        if calls is None and "tool_calls" in message:  # a null list: no calls
            del message["tool_calls"]
            changed = True
        elif calls is not None:
            if not isinstance(calls, list):
                calls = [calls] if isinstance(calls, dict) else []
                changed = True
            kept = [c for c in calls if isinstance(c, dict)]
            changed = changed or len(kept) != len(calls)
            for n, tc in enumerate(kept):
                changed = _whole_call(tc, obj.get("id"), n) or changed
            if kept:
                message["tool_calls"] = kept
            else:
                del message["tool_calls"]
        reason = choice.get("finish_reason")  # a whole answer always has one
        mapped = map_finish(reason, bool(message.get("tool_calls")))
        if mapped != reason:
            choice["finish_reason"] = mapped
            changed = True
    usage = obj.get("usage")
    if isinstance(usage, dict):
        fixed = normalize_usage(usage)
        if fixed is not usage:  # a new object: something changed (1.0 is not 1)
            obj["usage"] = fixed
            changed = True
    else:
        groq = obj.get("x_groq")
        if isinstance(groq, dict) and isinstance(groq.get("usage"), dict):
            obj["usage"] = normalize_usage(groq["usage"])
            changed = True
        elif usage is not None:
            obj["usage"] = None  # not an object: no figures in it
            changed = True
    return changed


def _whole_call(tc: dict[str, Any], response_id: Any, n: int) -> bool:
    """One tool call of a whole message, made whole in place; True when it changed."""
    changed = False
    if not (isinstance(tc.get("id"), str) and tc["id"]):
        tc["id"] = "call_" + hashlib.sha256(
            f"{response_id}/{n}".encode("utf-8", "surrogatepass")).hexdigest()[:24]
        changed = True
    if "type" not in tc:
        tc["type"] = "function"
        changed = True
    fn = tc.get("function")
    if not isinstance(fn, dict):
        fn = tc["function"] = {}
        changed = True
    if not isinstance(fn.get("name"), str):
        fn["name"] = "" if fn.get("name") is None else _as_text(fn["name"])
        changed = True
    args = fn.get("arguments")
    if not isinstance(args, str):
        fn["arguments"] = "{}" if args is None else dumps(args).decode()
        changed = True
    return changed
