"""The request model (uniapi_core/request.py; docs/architecture.md, "The request model").

* the parser is total: any JSON-ish dict parses, and only a non-dict raises (a ClientError);
* a valid request keeps every field a vendor reads, typed;
* every vendor builds the same upstream request (or raises the same error) whether it is given
  the client's dict or the parsed model, on the replay corpus and on generated requests.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uniapi_core.config.model import Provider
from uniapi_core.errors import ClientError, UniapiError
from uniapi_core.request import (
    KNOWN_FIELDS,
    ChatRequest,
    chat_request,
    original_of,
    parse_openai_chat,
)
from uniapi_core.vendors import TRANSLATORS
from uniapi_core.vendors.base import ChatContext, ImagesNeeded

CORPUS = Path(__file__).resolve().parent.parent / "replay" / "corpus"

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                         st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=20)
field_names = st.sampled_from(sorted(KNOWN_FIELDS | {"role", "content", "type", "text",
                                                     "function", "name", "tool_calls",
                                                     "image_url", "url", "frobnicate"}))
#: dicts whose keys are mostly the ones the parser looks at, with values of any JSON type
json_dicts = st.recursive(
    st.dictionaries(field_names, json_scalars, max_size=6),
    lambda inner: st.dictionaries(field_names, st.one_of(json_scalars, inner,
                                                          st.lists(inner, max_size=3)),
                                  max_size=6),
    max_leaves=30)


# -- the parser is total -------------------------------------------------------------------------

@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(json_dicts, st.dictionaries(st.text(max_size=6), json_values, max_size=6)))
def test_any_dict_parses(obj: dict[str, Any]) -> None:
    req = parse_openai_chat(obj)
    assert req.original is obj
    assert set(req.extras) == set(obj) - KNOWN_FIELDS
    assert req.invalid <= KNOWN_FIELDS
    assert chat_request(req) is req and original_of(req) is obj


@given(json_values.filter(lambda v: not isinstance(v, dict)))
def test_a_non_object_is_the_gateways_client_error(value: Any) -> None:
    with pytest.raises(ClientError) as err:
        parse_openai_chat(value)
    assert err.value.message == "request body must be a JSON object"
    assert err.value.code == "invalid_json"


# -- valid requests keep what vendors read ----------------------------------------------------

texts = st.text(max_size=10)
ids = st.from_regex(r"call_[A-Za-z0-9]{1,8}", fullmatch=True)
parts = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, texts),
    st.builds(lambda u, d: {"type": "image_url", "image_url": {"url": u, "detail": d}},
              st.sampled_from(["https://x.test/a.png", "data:image/png;base64,AAAA"]),
              st.sampled_from(["low", "high", "auto"])),
    st.builds(lambda d, f: {"type": "input_audio", "input_audio": {"data": d, "format": f}},
              st.just("AAAA"), st.sampled_from(["wav", "mp3"])),
    st.builds(lambda d: {"type": "file", "file": {"file_data": d, "filename": "a.pdf"}},
              st.just("data:application/pdf;base64,JVBE")),
)
calls = st.lists(st.builds(lambda i, n, a: {"id": i, "type": "function",
                                            "function": {"name": n, "arguments": a}},
                           ids, st.sampled_from(["get_weather", "lookup"]),
                           st.sampled_from(["{}", '{"q": "x"}', ""])), max_size=2)
messages = st.lists(st.one_of(
    st.builds(lambda r, c: {"role": r, "content": c},
              st.sampled_from(["system", "developer", "user"]), st.one_of(texts, st.lists(parts,
                                                                               max_size=3))),
    st.builds(lambda c, tc: {"role": "assistant", "content": c, "tool_calls": tc},
              st.one_of(st.none(), texts), calls),
    st.builds(lambda i, c: {"role": "tool", "tool_call_id": i, "content": c}, ids, texts),
), min_size=1, max_size=5)
valid = st.fixed_dictionaries(
    {"model": st.just("m"), "messages": messages},
    optional={"temperature": st.floats(0, 2), "top_p": st.floats(0, 1),
              "top_k": st.integers(1, 100), "max_tokens": st.integers(1, 10_000),
              "max_completion_tokens": st.integers(1, 10_000),
              "stop": st.one_of(texts, st.lists(texts, max_size=3)), "seed": st.integers(),
              "n": st.integers(1, 3), "presence_penalty": st.floats(-2, 2),
              "frequency_penalty": st.floats(-2, 2),
              "response_format": st.sampled_from([{"type": "text"}, {"type": "json_object"}]),
              "reasoning_effort": st.sampled_from(["none", "low", "medium", "high"]),
              "stream": st.booleans(), "stream_options": st.just({"include_usage": True}),
              "user": texts, "parallel_tool_calls": st.booleans(),
              "tools": st.lists(st.builds(lambda n: {"type": "function", "function": {
                  "name": n, "description": "d", "parameters": {"type": "object"}}},
                  st.sampled_from(["get_weather", "lookup"])), max_size=2),
              "tool_choice": st.sampled_from(["auto", "none", "required", {
                  "type": "function", "function": {"name": "lookup"}}]),
              "logit_bias": st.just({"50256": -100}), "metadata": st.just({"a": "b"})})


@settings(max_examples=300, deadline=None)
@given(valid)
def test_valid_requests_round_trip(obj: dict[str, Any]) -> None:
    req = parse_openai_chat(obj)
    assert req.invalid == frozenset()
    assert req.model == "m"
    assert req.stream is obj.get("stream", False)
    assert req.include_usage is ("stream_options" in obj)
    assert req.user == obj.get("user")
    assert req.parallel_tool_calls == obj.get("parallel_tool_calls")
    assert dict(req.extras) == {k: v for k, v in obj.items() if k not in KNOWN_FIELDS}
    s = req.sampling
    for key in ("temperature", "top_p", "top_k", "seed", "n", "presence_penalty",
                "frequency_penalty", "response_format", "logit_bias"):
        assert getattr(s, key) == obj.get(key), key
    assert s.max_tokens == obj.get("max_completion_tokens", obj.get("max_tokens"))
    stop = obj.get("stop")
    assert s.stop == (None if stop is None else (stop,) if isinstance(stop, str) else tuple(stop))
    assert req.reasoning.effort == obj.get("reasoning_effort")
    assert [(t.name, t.description, t.parameters) for t in req.tools] == [
        (t["function"]["name"], "d", {"type": "object"}) for t in obj.get("tools", [])]
    choice = obj.get("tool_choice")
    if choice is None:
        assert req.tool_choice is None
    elif isinstance(choice, str):
        assert req.tool_choice is not None and req.tool_choice.mode == choice
    else:
        assert req.tool_choice is not None and (req.tool_choice.mode, req.tool_choice.name) == (
            "function", "lookup")
    assert len(req.messages) == len(obj["messages"])
    for m, raw in zip(req.messages, obj["messages"], strict=True):
        assert m.obj and m.role == raw["role"] and m.invalid == frozenset() and m.raw is raw
        content = raw.get("content")
        if isinstance(content, str):
            assert m.text == content and m.parts == ()
        elif content is None:
            assert m.text is None and m.parts == ()
        else:
            assert m.text is None and len(m.parts) == len(content)
            for p, rp in zip(m.parts, content, strict=True):
                assert p.ok and p.obj and p.kind == rp["type"]
                if rp["type"] == "text":
                    assert p.text == rp["text"]
                elif rp["type"] == "image_url":
                    assert (p.url, p.detail) == (rp["image_url"]["url"], rp["image_url"]["detail"])
                elif rp["type"] == "input_audio":
                    assert (p.data, p.format) == (rp["input_audio"]["data"],
                                                  rp["input_audio"]["format"])
                else:
                    assert (p.data, p.filename) == (rp["file"]["file_data"], "a.pdf")
        assert [(c.ok, c.id, c.name, c.arguments) for c in m.tool_calls] == [
            (True, c["id"], c["function"]["name"], c["function"]["arguments"])
            for c in raw.get("tool_calls", [])]
        assert m.tool_call_id == raw.get("tool_call_id")


def test_null_is_absent_and_max_completion_tokens_wins() -> None:
    req = parse_openai_chat({"messages": [], "max_completion_tokens": None, "max_tokens": 7,
                             "temperature": None, "stop": "x"})
    assert req.sampling.max_tokens == 7 and req.sampling.temperature is None
    assert req.sampling.stop == ("x",)
    assert parse_openai_chat({"messages": [], "max_completion_tokens": 9,
                              "max_tokens": 7}).sampling.max_tokens == 9


def test_wrong_types_are_recorded_not_raised() -> None:
    req = parse_openai_chat({"messages": [{"role": "user", "content": 5}, "x"],
                             "temperature": True, "stop": [1], "tools": {}, "n": 1.0,
                             "reasoning_effort": 3, "thinking": "on"})
    assert req.invalid == {"messages", "temperature", "stop", "tools", "n", "reasoning_effort",
                           "thinking"}
    assert req.messages[0].invalid == {"content"} and not req.messages[1].obj
    assert parse_openai_chat({}).invalid == {"messages"}


def test_tool_choice_keeps_an_object_choices_type() -> None:
    def choice(value: Any) -> Any:
        c = parse_openai_chat({"messages": [], "tool_choice": value}).tool_choice
        assert c is not None and c.raw is value
        return (c.mode, c.name, c.type)

    assert choice({"type": "function", "function": {"name": "f"}}) == ("function", "f",
                                                                       "function")
    assert choice({"function": {"name": "f"}}) == ("function", "f", None)  # named all the same
    assert choice({"type": "tool", "function": {"name": "f"}}) == ("function", "f", "tool")
    assert choice({"type": "function", "name": "f"}) == (None, None, "function")
    assert choice({"type": ["x"]}) == (None, None, ["x"])
    assert choice("required") == ("required", None, None)
    assert choice(["auto"]) == (None, None, None)


# -- every vendor: the dict and the model give the same request --------------------------------

PROVIDERS = {
    "gpt": Provider(provider="o", base_url="https://api.openai.com/v1", api=("k",)),
    "openrouter": Provider(provider="r", base_url="https://openrouter.ai/api/v1", api=("k",)),
    "azure": Provider(provider="a", base_url="https://r.openai.azure.com", api=("k",),
                      engine="azure"),
    "claude": Provider(provider="c", base_url="https://api.anthropic.com/v1", api=("k",)),
    "gemini": Provider(provider="g", base_url="https://generativelanguage.googleapis.com/v1beta",
                       api=("k",)),
    "cohere": Provider(provider="co", base_url="https://api.cohere.com", api=("k",)),
    "cloudflare": Provider(provider="cf", cf_account_id="acct", api=("k",),
                           engine="cloudflare"),
    "aws": Provider(provider="b", engine="aws", aws_access_key="AKID", aws_secret_key="secret",
                    aws_region="us-east-1"),
    "vertex-claude": Provider(provider="vc", engine="vertex", project_id="p"),
    "vertex-gemini": Provider(provider="vg", engine="vertex", project_id="p"),
}
MODELS = {"vertex-claude": "claude-sonnet-4@20250514", "vertex-gemini": "gemini-2.5-flash",
          "aws": "anthropic.claude-3-5-sonnet-20240620-v1:0", "claude": "claude-sonnet-4",
          "gemini": "gemini-2.5-flash", "cloudflare": "@cf/meta/llama-3.1-8b-instruct"}


def _outcome(engine: str, req: ChatRequest | dict[str, Any], stream: bool, *,
             client: str = "m", upstream: str | None = None) -> Any:
    """What ``engine``'s builder makes of ``req``: the request, the images it needs, or the
    error."""
    provider = PROVIDERS[engine]
    ctx = ChatContext(client_model=client, upstream_model=upstream or MODELS.get(engine, "model-x"),
                      provider=provider, api_key=provider.api[0] if provider.api else None,
                      stream=stream, include_usage=False, response_id="chatcmpl-x", created=1,
                      entropy=random.Random(0), region="us-east5", access_token="tok",
                      images={"https://x.test/a.png": ("image/png", b"\x89PNG\r\n\x1a\n")})
    try:
        r = TRANSLATORS[engine.split("-")[0]](req, ctx).request
    except ImagesNeeded as exc:
        return ("images", tuple(exc.urls))
    except UniapiError as exc:
        return ("error", type(exc).__name__, exc.message, exc.code)
    return (r.method, r.url, r.headers, r.body)


def _corpus() -> list[dict[str, Any]]:
    out = []
    for path in sorted(CORPUS.glob("*.json")):
        pieces = json.loads(path.read_text())["client_request"]
        raw = "".join(pieces) if isinstance(pieces, list) else str(pieces)
        body = raw.partition("\r\n\r\n")[2]
        try:
            obj = json.loads(body)
        except ValueError:
            continue
        if isinstance(obj, dict) and "messages" in obj:
            out.append(obj)
    return out


CORPUS_REQUESTS = _corpus()


def test_the_corpus_is_there() -> None:
    assert len(CORPUS_REQUESTS) >= 40


@pytest.mark.parametrize("engine", sorted(PROVIDERS))
def test_dict_and_model_build_the_same_request_on_the_corpus(engine: str) -> None:
    for obj in CORPUS_REQUESTS:
        for stream in (False, True):
            assert _outcome(engine, obj, stream) == \
                _outcome(engine, parse_openai_chat(obj), stream), obj


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(valid, st.sampled_from(sorted(PROVIDERS)))
def test_dict_and_model_build_the_same_request(obj: dict[str, Any], engine: str) -> None:
    assert _outcome(engine, obj, False) == _outcome(engine, parse_openai_chat(obj), False)


# -- Gemini (and Vertex Gemini): what `valid` does not reach ----------------------------------

gemini_calls = st.lists(st.builds(
    lambda i, n, a, s, g: {"id": i, "type": "function", "function": {"name": n, "arguments": a},
                           "extra_content": {"google": {"thought_signature": s,
                                                        "function_call_id": g}}},
    ids, st.sampled_from(["get_weather", "lookup"]), st.sampled_from(["{}", '{"q": "x"}', ""]),
    st.sampled_from(["sig", "", None]), st.sampled_from(["g-1", "", None])), min_size=1,
    max_size=2)
gemini_texts = st.lists(st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, texts),
    st.builds(lambda t: {"type": "refusal", "refusal": t}, texts),
    # the refusal/text key quirk gemini keeps (a ``text`` key is read first)
    st.builds(lambda t, r: {"type": "refusal", "text": t, "refusal": r}, texts, texts),
    st.builds(lambda r: {"type": "text", "refusal": r}, texts)), max_size=3)


@st.composite
def gemini_requests(draw: st.DrawFn) -> dict[str, Any]:
    obj = draw(valid)
    history: list[dict[str, Any]] = [{"role": "system", "content": draw(gemini_texts)}]
    for call in draw(gemini_calls):
        history += [{"role": "assistant", "content": draw(gemini_texts), "tool_calls": [call]},
                    {"role": "tool", "tool_call_id": call["id"], "content": draw(gemini_texts)}]
    obj["messages"] = history + obj["messages"]
    obj["response_format"] = draw(st.sampled_from([
        {"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "properties": {"a": {"type": ["string", "null"]}}}}},
        {"type": "json_object"}, {"type": "text"}]))
    obj["reasoning_effort"] = draw(st.sampled_from(["minimal", "none", "high"]))
    return obj


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(gemini_requests(), st.sampled_from(["gemini", "vertex-gemini"]),
       st.sampled_from(["gemini-3-pro-preview", "gemini-2.5-flash", "gemini-2.0-flash"]),
       st.sampled_from(["m", "m-search", "m-think-2048"]), st.booleans())
def test_dict_and_model_build_the_same_gemini_request(obj: dict[str, Any], engine: str,
                                                       upstream: str, client: str,
                                                       stream: bool) -> None:
    def outcome(req: ChatRequest | dict[str, Any]) -> Any:
        return _outcome(engine, req, stream, client=client, upstream=upstream)

    assert outcome(obj) == outcome(parse_openai_chat(obj))


# -- Cohere: what `valid` does not reach --------------------------------------------------------

cohere_ids = st.sampled_from(["call_1", "functions.get:0", "functions_get_0", "x" * 60, "é"])
cohere_texts = st.lists(st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, texts),
    # the refusal/text key quirk cohere keeps (a ``text`` key is read first)
    st.builds(lambda t, r: {"type": "refusal", "text": t, "refusal": r}, texts, texts),
    st.builds(lambda r: {"type": "text", "refusal": r}, texts)), max_size=2)


@st.composite
def cohere_requests(draw: st.DrawFn) -> dict[str, Any]:
    obj: dict[str, Any] = draw(valid)
    history: list[dict[str, Any]] = [{"role": "system", "content": draw(cohere_texts)}]
    for cid in draw(st.lists(cohere_ids, max_size=3, unique=True)):
        call = {"id": cid, "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
        history += [{"role": "assistant", "content": draw(cohere_texts), "tool_calls": [call]},
                    {"role": "tool", "tool_call_id": cid, "content": draw(cohere_texts)}]
    obj["messages"] = history + obj["messages"]
    obj.pop("n", None)
    obj["response_format"] = draw(st.sampled_from([
        {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        {"type": "json_object"}, {"type": "text"}, {"type": "yaml"}]))
    obj["tool_choice"] = draw(st.sampled_from([
        "auto", {"type": "function", "function": {"name": "lookup"}},
        {"function": {"name": "lookup"}}]))
    obj["logprobs"] = draw(st.sampled_from([True, False, 1]))
    return obj


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(cohere_requests(), st.booleans())
def test_dict_and_model_build_the_same_cohere_request(obj: dict[str, Any],
                                                       stream: bool) -> None:
    assert _outcome("cohere", obj, stream) == _outcome("cohere", parse_openai_chat(obj), stream)


# -- Cloudflare ai/run: what `valid` does not reach ---------------------------------------------

cf_texts = st.one_of(texts, st.lists(st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, texts),
    st.builds(lambda t: {"type": "refusal", "refusal": t}, texts),
    # the refusal/text key quirk cloudflare keeps (a ``text`` key is read first)
    st.builds(lambda t, r: {"type": "refusal", "text": t, "refusal": r}, texts, texts),
    st.builds(lambda r: {"type": "text", "refusal": r}, texts)), max_size=3))
#: what a near-valid Cloudflare request may carry in place of a good value
cf_bad = st.sampled_from([None, True, 0, -1, 2, 2.5, "", "x", [], ["x"], [1], {}, {"a": 1},
                          ["bare"], [{"type": "image_url", "image_url": "u"}],
                          [{"type": "text", "text": 5}]])


@st.composite
def cloudflare_requests(draw: st.DrawFn) -> dict[str, Any]:
    obj = draw(valid)
    history: list[dict[str, Any]] = [{"role": "developer", "content": draw(cf_texts)}]
    for cid in draw(st.lists(ids, max_size=2, unique=True)):
        call = {"id": cid, "type": "function", "function": {
            "name": "lookup", "arguments": draw(st.sampled_from(["{}", "", None, {"a": [1]}]))}}
        history += [{"role": "assistant", "content": draw(cf_texts), "tool_calls": [call]},
                    {"role": "tool", "tool_call_id": cid, "content": draw(cf_texts)}]
    obj["messages"] = history + [  # no images, no results of calls `valid` never made
        m for m in obj["messages"] if m["role"] != "tool" and (
            m["role"] != "user" or isinstance(m["content"], str))]
    obj.pop("n", None)
    if draw(st.booleans()):
        obj["repetition_penalty"] = draw(st.one_of(st.floats(0, 2), st.integers(0, 2)))
    if draw(st.booleans()):  # one value made wrong: the first refusal must be the same
        target = draw(st.sampled_from(["top", "message", "tool"]))
        value = draw(cf_bad)
        if target == "top":
            obj[draw(st.sampled_from(["messages", "n", "max_tokens", "max_completion_tokens",
                                      "temperature", "top_p", "top_k", "seed",
                                      "repetition_penalty", "frequency_penalty",
                                      "presence_penalty", "tools"]))] = value
        elif obj["messages"]:
            m = draw(st.sampled_from(obj["messages"]))
            m[draw(st.sampled_from(["role", "content", "tool_calls", "tool_call_id"]))] = value
        else:
            obj["tools"] = [{"type": "function", "function": {"name": value}}]
    return obj


def _cloudflare_outcome(req: ChatRequest | dict[str, Any], stream: bool, base_url: str | None
                        ) -> Any:
    provider = Provider(provider="cf", base_url=base_url, cf_account_id="acct", api=("k",),
                        engine="cloudflare")
    ctx = ChatContext(client_model="m", upstream_model=MODELS["cloudflare"], provider=provider,
                      api_key="k", stream=stream, include_usage=False, response_id="chatcmpl-x",
                      created=1, entropy=random.Random(0))
    try:
        r = TRANSLATORS["cloudflare"](req, ctx).request
    except UniapiError as exc:
        return ("error", type(exc).__name__, exc.message, exc.code, exc.status)
    return (r.method, r.url, r.headers, r.body)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(cloudflare_requests(), st.booleans(),
       st.sampled_from([None, "https://gateway.ai.cloudflare.com/v1/a/g/workers-ai/ai/v1"]))
def test_dict_and_model_build_the_same_cloudflare_request(obj: dict[str, Any], stream: bool,
                                                          base_url: str | None) -> None:
    assert _cloudflare_outcome(obj, stream, base_url) == \
        _cloudflare_outcome(parse_openai_chat(obj), stream, base_url)
