"""Structured outputs end to end (issue 19; docs/vendors.md "Structured outputs",
docs/vendor-rules.md ANT-J1..ANT-J6): the openai SDK's ``chat.completions.parse`` and
``chat.completions.stream`` with a Pydantic ``response_format``, through the gateway on both
backends, to fakes (``tests/fakes/structured.py``) of Anthropic, Gemini, Bedrock Claude,
Cohere v2 and an OpenAI-compatible host. Each fake checks its own structured-output field
carries the schema and answers with JSON text in its own shape; the client must get the parsed
object. The Claude answer-tool fallback (an older model) and Claude refusals have their own
tests.
"""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, Field

from tests.fakes.structured import REFUSAL, StructuredFake
from tests.harness import run_gateway

KEY = "sk-structured-e2e"
MESSAGES = [{"role": "system", "content": "Answer in JSON."},
            {"role": "user", "content": "Weather in Paris?"}]
BEDROCK_MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
NATIVE_CLAUDE = "claude-sonnet-4-5-20250929"
OLD_CLAUDE = "claude-3-5-haiku-20241022"  # not in STRUCTURED_MODELS: the answer tool (ANT-J3)


class Place(BaseModel):
    country: str
    lat: float


class Weather(BaseModel):
    city: str = Field(min_length=1)
    celsius: int
    tags: list[str]
    place: Place


EXPECTED = Weather(city="Paris", celsius=21, tags=["sunny", "dry"],
                   place=Place(country="France", lat=48.85))
#: what every fake answers: the JSON text of ``EXPECTED`` (spaced, as models write it)
ANSWER = json.dumps(EXPECTED.model_dump())
#: alias -> the path the fake saw it on (one gateway, one fake, five vendors)
VENDORS = {
    "anthropic": "/v1/messages",
    "gemini": "/v1beta/models/gemini-2.5-flash:",
    "bedrock": "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke",
    "cohere": "/v2/chat",
    "openai": "/v1/chat/completions",
}


@pytest.fixture
def fake():
    f = StructuredFake(ANSWER, fields=set(Weather.model_fields),
                       nested=("place", set(Place.model_fields)), constrained="city")
    yield f
    f.close()


def config(url: str) -> str:
    return f"""
providers:
  - provider: ant
    engine: claude
    base_url: {url}/v1/messages
    api: sk-ant-up
    model:
      - {NATIVE_CLAUDE}: anthropic
      - {OLD_CLAUDE}: old-claude
  - provider: gem
    engine: gemini
    base_url: {url}/v1beta
    api: AIza-test
    model:
      - gemini-2.5-flash: gemini
  - provider: bdr
    engine: aws
    base_url: {url}
    aws_access_key: AKIDEXAMPLE
    aws_secret_key: wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
    aws_region: us-east-1
    model:
      - {BEDROCK_MODEL}: bedrock
  - provider: co
    engine: cohere
    base_url: {url}/v2/chat
    api: co-key
    model:
      - command-a-03-2025: cohere
  - provider: oai
    base_url: {url}/v1/chat/completions
    api: sk-oai
    model:
      - gpt-4o-2024-08-06: openai
api_keys:
  - api: {KEY}
"""


def ask(client, model: str, stream: bool):
    """``parse`` (whole) or ``stream(...).get_final_completion()`` (streamed), with every
    chunk the stream gave; returns (completion, chunks)."""
    if not stream:
        return client.chat.completions.parse(model=model, messages=MESSAGES,
                                             response_format=Weather), []
    chunks = []
    with client.chat.completions.stream(model=model, messages=MESSAGES,
                                        response_format=Weather) as s:
        for event in s:
            if event.type == "chunk":
                chunks.append(event.chunk)
        return s.get_final_completion(), chunks


WAYS = pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])


@WAYS
@pytest.mark.parametrize("vendor", list(VENDORS))
def test_parse_gets_the_object(backend, fake, vendor, stream):
    with run_gateway(config(fake.url), backend=backend, discover=False) as gw:
        completion, chunks = ask(gw.openai(KEY), vendor, stream)
    assert fake.problems == []
    assert len(fake.seen) == 1
    assert fake.seen[0].path.startswith(VENDORS[vendor])
    if stream:
        assert fake.seen[0].path.endswith(
            {"gemini": "streamGenerateContent?alt=sse",
             "bedrock": "-with-response-stream"}.get(vendor, ""))
        assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.refusal is None and not choice.message.tool_calls
    assert json.loads(choice.message.content) == EXPECTED.model_dump()
    assert isinstance(choice.message.parsed, Weather)
    assert choice.message.parsed == EXPECTED
    assert completion.model == vendor


@WAYS
def test_older_claude_answers_through_the_answer_tool(backend, fake, stream):
    with run_gateway(config(fake.url), backend=backend, discover=False) as gw:
        completion, chunks = ask(gw.openai(KEY), "old-claude", stream)
    assert fake.problems == []  # the fake checked tools, tool_choice and no output_config
    body = fake.seen[0].json()
    assert [t["name"] for t in body["tools"]] == ["uniapi_json_answer"]
    assert body["tool_choice"] == {"type": "tool", "name": "uniapi_json_answer"}
    assert body["model"] == OLD_CLAUDE
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert not choice.message.tool_calls
    assert choice.message.refusal is None
    assert json.loads(choice.message.content) == EXPECTED.model_dump()
    assert choice.message.parsed == EXPECTED
    if stream:
        assert all(not (c.choices and c.choices[0].delta.tool_calls) for c in chunks)
        assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1


@WAYS
@pytest.mark.parametrize("model", ["anthropic", "old-claude"], ids=["native", "answer-tool"])
def test_claude_refusal_is_message_refusal(backend, fake, model, stream):
    fake.refuse = True
    with run_gateway(config(fake.url), backend=backend, discover=False) as gw:
        completion, chunks = ask(gw.openai(KEY), model, stream)
    assert fake.problems == []
    choice = completion.choices[0]
    assert choice.message.refusal == REFUSAL
    assert choice.message.parsed is None
    assert not choice.message.content
    assert not choice.message.tool_calls
    assert choice.finish_reason == "stop"
    if stream:
        got = "".join(c.choices[0].delta.refusal or "" for c in chunks if c.choices)
        assert got == REFUSAL
        assert all(not c.choices[0].delta.content for c in chunks if c.choices)


def open_schema(node):
    """The SDK's schema for ``Weather`` with every ``additionalProperties`` taken out (what a
    client writing its own non-strict schema sends)."""
    if isinstance(node, dict):
        return {k: open_schema(v) for k, v in node.items() if k != "additionalProperties"}
    if isinstance(node, list):
        return [open_schema(v) for v in node]
    return node


@pytest.mark.parametrize("vendor", ["anthropic", "bedrock"])
def test_claude_gets_every_object_closed(backend, fake, vendor):
    """ANT-J1: a schema whose objects are open (no ``additionalProperties``, nested object in
    ``$defs``) reaches Claude with ``additionalProperties: false`` on every object (the fake
    checks it) and the constraint Claude cannot enforce written into the description."""
    schema = open_schema(Weather.model_json_schema())
    assert "additionalProperties" not in json.dumps(schema)
    with run_gateway(config(fake.url), backend=backend, discover=False) as gw:
        resp = gw.openai(KEY).chat.completions.create(
            model=vendor, messages=MESSAGES, response_format={
                "type": "json_schema", "json_schema": {"name": "Weather", "schema": schema}})
    assert fake.problems == []
    sent = fake.seen[0].json()["output_config"]["format"]["schema"]
    assert sent["$defs"]["Place"]["additionalProperties"] is False
    assert sent["properties"]["city"]["description"] == "{minLength: 1}"
    assert Weather.model_validate_json(resp.choices[0].message.content) == EXPECTED
