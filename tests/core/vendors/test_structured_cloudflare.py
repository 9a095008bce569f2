"""Structured outputs on Cloudflare Workers AI: ``response_format`` as JSON Mode on the models
that have it, a 400 naming the model everywhere else (docs/vendors.md, "Structured outputs")."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from uniapi_core.config.model import Provider
from uniapi_core.errors import ClientError
from uniapi_core.vendors.base import ChatContext
from uniapi_core.vendors.cloudflare import DROPPED, JSON_MODE_MODELS, MAPPED, build_exchange

KEY = "cf-TESTTOKEN"
ACCOUNT = "023e105f4ecef8ad9ca31a8372d0c353"
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"},
                                           "languages": {"type": "array",
                                                         "items": {"type": "string"}}},
          "required": ["name", "languages"], "additionalProperties": False}


def make_ctx(model: str = "@cf/meta/llama-3.1-8b-instruct", *, stream: bool = False,
             base_url: str | None = None) -> ChatContext:
    provider = Provider(provider="cf", base_url=base_url, api=(KEY,), cf_account_id=ACCOUNT)
    return ChatContext(client_model="llama", upstream_model=model, provider=provider,
                       api_key=KEY, stream=stream, include_usage=False,
                       response_id="chatcmpl-test0123456789", created=1735689600,
                       entropy=random.Random(7))


def build(response_format: Any, ctx: ChatContext | None = None) -> dict[str, Any]:
    req = {"model": "llama", "messages": [{"role": "user", "content": "Tell me about India."}],
           "response_format": response_format}
    return json.loads(build_exchange(req, ctx or make_ctx()).request.body)


def refused(response_format: Any, ctx: ChatContext | None = None) -> ClientError:
    with pytest.raises(ClientError) as e:
        build(response_format, ctx)
    assert e.value.status == 400
    return e.value


def test_response_format_is_mapped_now():
    assert "response_format" in MAPPED and "response_format" not in DROPPED


@pytest.mark.parametrize("model", sorted(JSON_MODE_MODELS))
def test_json_schema_sends_the_bare_schema_on_json_mode_models(model):
    body = build({"type": "json_schema", "json_schema": {"name": "country", "strict": True,
                                                         "schema": SCHEMA}}, make_ctx(model))
    assert body["response_format"] == {"type": "json_schema", "json_schema": SCHEMA}


def test_json_object_is_json_object():
    assert build({"type": "json_object"})["response_format"] == {"type": "json_object"}


def test_json_schema_without_a_schema_is_json_object():
    assert build({"type": "json_schema", "json_schema": {"name": "x"}})["response_format"] == \
        {"type": "json_object"}


def test_text_sends_nothing():
    assert "response_format" not in build({"type": "text"})


def test_model_names_match_without_case():
    body = build({"type": "json_object"}, make_ctx("@CF/meta/Llama-3.1-8B-Instruct"))
    assert body["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize("fmt", [{"type": "json_object"},
                                 {"type": "json_schema", "json_schema": {"schema": SCHEMA}}])
def test_other_models_get_a_400_naming_the_model_and_the_vendor(fmt):
    err = refused(fmt, make_ctx("@cf/mistral/mistral-7b-instruct-v0.1"))
    assert err.code == "unsupported_parameter"
    assert "@cf/mistral/mistral-7b-instruct-v0.1" in err.message
    assert "cloudflare" in err.message and "JSON Mode" in err.message


def test_json_mode_is_not_streamed():
    err = refused({"type": "json_object"}, make_ctx(stream=True))
    assert err.code == "unsupported_parameter" and "stream" in err.message


def test_text_streams_on_any_model():
    body = build({"type": "text"}, make_ctx("@cf/mistral/mistral-7b-instruct-v0.1", stream=True))
    assert body["stream"] is True and "response_format" not in body


@pytest.mark.parametrize("fmt", [{"type": "yaml"}, "json", {"type": None}, []])
def test_malformed_formats_are_refused(fmt):
    assert refused(fmt).code == "invalid_value"


def test_the_openai_compatible_endpoint_passes_it_through():
    fmt = {"type": "json_schema", "json_schema": {"name": "country", "schema": SCHEMA}}
    ctx = make_ctx("@cf/mistral/mistral-7b-instruct-v0.1",
                   base_url=f"https://api.cloudflare.com/client/v4/accounts/{ACCOUNT}/ai/v1")
    assert build(fmt, ctx)["response_format"] == fmt


def test_a_json_mode_answer_object_becomes_json_text():
    ex = build_exchange({"model": "llama", "messages": [{"role": "user", "content": "x"}],
                         "response_format": {"type": "json_object"}}, make_ctx())
    body = json.dumps({"result": {"response": {"name": "India", "languages": ["Hindi"]}},
                       "success": True, "errors": [], "messages": []}).encode()
    out = json.loads(ex.parse_body(200, (), body))
    content = out["choices"][0]["message"]["content"]
    assert json.loads(content) == {"name": "India", "languages": ["Hindi"]}
