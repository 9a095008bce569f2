"""Structured outputs on Gemini and Vertex Gemini: where ``response_format`` goes in
``generationConfig`` (docs/vendors.md, "Structured outputs").

Gemini 2.5 and later take the client's JSON Schema whole in ``responseJsonSchema``; older and
unknown models get the OpenAPI-subset ``responseSchema``, with every constraint the Schema object
cannot hold written into the node's ``description`` instead of dropped.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from uniapi_core.config.model import Provider
from uniapi_core.errors import ClientError
from uniapi_core.vendors import vertex
from uniapi_core.vendors.base import ChatContext
from uniapi_core.vendors.gemini import build_exchange

KEY = "AIzaSyTESTKEY"


def make_ctx(upstream_model: str, *, stream: bool = False) -> ChatContext:
    provider = Provider(provider="gemini", api=(KEY,))
    return ChatContext(client_model="gem", upstream_model=upstream_model, provider=provider,
                       api_key=KEY, stream=stream, include_usage=False,
                       response_id="chatcmpl-test0123456789", created=1735689600,
                       entropy=random.Random(7))


def config(model: str, response_format: Any) -> dict[str, Any]:
    req = {"model": "gem", "messages": [{"role": "user", "content": "Hi"}],
           "response_format": response_format}
    body = json.loads(build_exchange(req, make_ctx(model)).request.body)
    out = body.get("generationConfig", {})
    out.pop("thinkingConfig", None)  # thinking models get one whatever the format
    return out


def json_schema(schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, **extra}}


#: a schema with what the Schema object cannot hold: $defs/$ref, a recursive $ref, anyOf,
#: exclusive bounds, multipleOf, uniqueItems, prefixItems, a string format, a schema-valued
#: additionalProperties, const
RICH = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "Node": {"type": "object", "properties": {
            "name": {"type": "string"},
            "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}},
    },
    "properties": {
        "score": {"type": "number", "exclusiveMinimum": 0, "maximum": 1,
                  "multipleOf": 0.5, "description": "How sure"},
        "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "point": {"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"}]},
        "email": {"type": "string", "format": "email"},
        "when": {"type": "string", "format": "date-time"},
        "extra": {"type": "object", "additionalProperties": {"type": "integer"}},
        "kind": {"const": "a"},
        "choice": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        "tree": {"$ref": "#/$defs/Node"},
    },
    "required": ["score", "tags"],
    "additionalProperties": False,
}


# -- the model table (docs/vendors.md, "Structured outputs") -----------------------------------


@pytest.mark.parametrize("model", [
    "gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.5-flash-lite", "gemini-3-pro-preview",
    "gemini-3.1-flash", "models/gemini-2.5-flash", "gemini-flash-latest",
    "gemini-flash-lite-latest", "gemini-pro-latest", "Gemini-2.5-Flash",
])
def test_newer_models_take_the_schema_whole_in_response_json_schema(model):
    assert config(model, json_schema(RICH, strict=True)) == {
        "responseMimeType": "application/json", "responseJsonSchema": RICH}


@pytest.mark.parametrize("model", [
    "gemini-2.0-flash", "gemini-2.0-flash-lite", "gemini-1.5-pro", "gemini-1.5-flash-8b",
    "gemini-pro", "gemini-exp-1206", "gemma-3-27b-it", "tunedModels/my-model", "x",
])
def test_older_and_unknown_models_take_response_schema(model):
    out = config(model, json_schema({"type": "object", "properties": {"a": {"type": "string"}}}))
    assert out == {"responseMimeType": "application/json",
                   "responseSchema": {"type": "object", "properties": {"a": {"type": "string"}}}}


def test_json_object_is_the_mime_type_alone_on_every_model():
    for model in ("gemini-2.5-flash", "gemini-1.5-pro"):
        assert config(model, {"type": "json_object"}) == {"responseMimeType": "application/json"}


def test_json_schema_without_a_schema_is_the_mime_type_alone():
    assert config("gemini-2.5-flash", {"type": "json_schema", "json_schema": {"name": "x"}}) \
        == {"responseMimeType": "application/json"}


def test_text_adds_nothing():
    assert config("gemini-2.5-flash", {"type": "text"}) == {}


@pytest.mark.parametrize("fmt", [{"type": "yaml"}, "json", {"type": None}])
def test_unknown_formats_are_refused(fmt):
    with pytest.raises(ClientError) as e:
        config("gemini-2.5-flash", fmt)
    assert e.value.status == 400


def test_the_wrapper_fields_never_reach_the_schema():
    out = config("gemini-2.5-flash", json_schema({"type": "object"}, strict=True,
                                                  description="An answer"))
    assert out["responseJsonSchema"] == {"type": "object"}


# -- responseSchema keeps constraints as text (older models) -----------------------------------


def test_constraints_the_schema_object_cannot_hold_move_into_descriptions():
    schema = config("gemini-2.0-flash", json_schema(RICH))["responseSchema"]
    props = schema["properties"]
    assert props["score"] == {
        "type": "number", "maximum": 1, "description":
            'How sure Constraints: {"exclusiveMinimum": 0, "multipleOf": 0.5}'}
    assert props["tags"] == {"type": "array", "items": {"type": "string"},
                             "description": 'Constraints: {"uniqueItems": true}'}
    assert props["point"] == {"type": "array", "description": 'Constraints: {"prefixItems": '
                              '[{"type": "number"}, {"type": "number"}]}'}
    assert props["email"] == {"type": "string", "description": 'Constraints: {"format": "email"}'}
    assert props["when"] == {"type": "string", "format": "date-time"}
    assert props["extra"] == {"type": "object", "description":
                              'Constraints: {"additionalProperties": {"type": "integer"}}'}
    assert props["kind"] == {"type": "string", "enum": ["a"]}
    assert props["choice"] == {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    # $ref inlined; the recursive one is cut and says where it pointed
    tree = props["tree"]
    assert tree["properties"]["children"]["items"] == {
        "type": "object", "description": 'Constraints: {"$ref": "#/$defs/Node"}'}
    # additionalProperties: false needs no note (Gemini writes only declared properties)
    assert "description" not in schema
    assert schema["required"] == ["score", "tags"]


def test_tool_schemas_still_drop_them_silently():
    req = {"model": "gem", "messages": [{"role": "user", "content": "Hi"}],
           "tools": [{"type": "function", "function": {"name": "f", "parameters": {
               "type": "object", "properties": {"n": {"type": "integer", "multipleOf": 2}}}}}]}
    body = json.loads(build_exchange(req, make_ctx("gemini-2.0-flash")).request.body)
    assert body["tools"][0]["functionDeclarations"][0]["parameters"] == {
        "type": "object", "properties": {"n": {"type": "integer"}}}


def test_defaults_and_constraints_share_the_description():
    schema = config("gemini-1.5-pro", json_schema({
        "type": "integer", "description": "Count", "default": 3, "exclusiveMaximum": 9}))
    assert schema["responseSchema"] == {
        "type": "integer",
        "description": 'Count Default: 3 Constraints: {"exclusiveMaximum": 9}'}


def test_an_oversized_response_schema_is_a_400_naming_it():
    big = {"type": "object", "$defs": {"A": {"type": "object", "properties": {
        f"p{i}": {"type": "string"} for i in range(200)}}},
        "properties": {f"q{i}": {"$ref": "#/$defs/A"} for i in range(60)}}
    with pytest.raises(ClientError) as e:
        config("gemini-2.0-flash", json_schema(big))
    assert "response_format" in e.value.message
    # the whole schema goes to newer models: no expansion, no limit of ours
    assert config("gemini-2.5-flash", json_schema(big))["responseJsonSchema"] == big


# -- Vertex Gemini: the same body ---------------------------------------------------------------


@pytest.mark.parametrize("model, field", [("gemini-2.5-pro", "responseJsonSchema"),
                                          ("gemini-2.0-flash-001", "responseSchema")])
def test_vertex_gemini_uses_the_same_table(model, field):
    provider = Provider(provider="vx", engine="vertex", project_id="proj")
    ctx = ChatContext(client_model="gem", upstream_model=model, provider=provider,
                      api_key=None, stream=False, include_usage=False,
                      response_id="chatcmpl-test0123456789", created=1735689600,
                      entropy=random.Random(7), region="us-central1", access_token="tok")
    req = {"model": "gem", "messages": [{"role": "user", "content": "Hi"}],
           "response_format": json_schema({"type": "object", "properties": {
               "a": {"type": "string"}}})}
    body = json.loads(vertex.build_exchange(req, ctx).request.body)
    assert set(body["generationConfig"]) - {"thinkingConfig"} == {"responseMimeType", field}
