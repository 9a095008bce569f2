"""Azure OpenAI URLs (docs/vendor-rules.md AZ-1, AZ-2, AZ-3): every ``base_url`` form Azure users
write, crossed with every endpoint the gateway routes to Azure, gives one exact URL or a 400
that says why; an explicit ``api-version`` always survives; the gateway sends embeddings to the
deployment a full chat URL names, and answers 400 for an endpoint the ``/models`` form lacks."""

from __future__ import annotations

import json
import random
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uniapi_core.config import load_config
from uniapi_core.errors import ClientError
from uniapi_core.gateway import Gateway
from uniapi_core.relay import StartUpstream, SendData, SendHead
from uniapi_core.vendors import ENDPOINTS, UPLOADS
from uniapi_core.vendors.azure import DEFAULT_API_VERSION, azure_url

CHAT, EMB, IMG, AUDIO, MOD = ("/chat/completions", "/embeddings", "/images/generations",
                              "/audio/transcriptions", "/moderations")
ALL = (CHAT, EMB, IMG, AUDIO, MOD)
V = f"api-version={DEFAULT_API_VERSION}"
R = "https://r.openai.azure.com"
F = "https://r.services.ai.azure.com"
NO = None  # a 400 ClientError, code unsupported_endpoint


def test_every_routed_azure_endpoint_is_in_the_table():
    routed = ({s for s in ENDPOINTS if "azure" in ENDPOINTS[s]}
              | {s for s in UPLOADS if "azure" in UPLOADS[s]})
    assert {p.removeprefix("/v1") for p in routed} | {CHAT} == set(ALL)


# -- base_url form × endpoint → URL (deployment = upstream model "dep") -------------------------

def deployment(root: str, dep: str, query: str = V) -> dict[str, str | None]:
    return {e: f"{root}/openai/deployments/{dep}{e}?{query}" for e in ALL}


def models(root: str, query: str = V) -> dict[str, str | None]:
    return {CHAT: f"{root}/models/chat/completions?{query}",
            EMB: f"{root}/models/embeddings?{query}", IMG: NO, AUDIO: NO, MOD: NO}


def v1(root: str, query: str = "") -> dict[str, str | None]:
    return {e: f"{root}/openai/v1{e}" + (f"?{query}" if query else "") for e in ALL}


TABLE: list[tuple[str, dict[str, str | None]]] = [
    # AZ-1: the resource origin (seed config), with or without "/" or "/openai"
    (R, deployment(R, "dep")),
    (R + "/", deployment(R, "dep")),
    (R + "/openai", deployment(R, "dep")),
    (R + "/openai/", deployment(R, "dep")),
    ("https://r.cognitiveservices.azure.com", deployment("https://r.cognitiveservices.azure.com",
                                                         "dep")),
    (R + "?api-version=2025-01-01-preview", deployment(R, "dep", "api-version=2025-01-01-preview")),
    # a proxy (APIM) path prefix is kept
    ("https://apim.azure-api.net/aoai", deployment("https://apim.azure-api.net/aoai", "dep")),
    # AZ-3: a full deployment URL keeps its deployment; only the endpoint path changes
    (R + "/openai/deployments/gpt4o/chat/completions?api-version=2025-01-01-preview",
     deployment(R, "gpt4o", "api-version=2025-01-01-preview")),
    (R + "/openai/deployments/gpt4o/chat/completions", deployment(R, "gpt4o")),
    (R + "/openai/deployments/gpt4o/chat/completions/", deployment(R, "gpt4o")),
    (R + "/openai/deployments/gpt4o", deployment(R, "gpt4o")),
    (R + "/openai/deployments/emb3/embeddings?api-version=2024-06-01",
     deployment(R, "emb3", "api-version=2024-06-01")),
    (R + "/openai/deployments", deployment(R, "dep")),
    (R + "/openai/deployments/gpt4o/extensions/chat/completions",
     {**deployment(R, "gpt4o"),
      CHAT: f"{R}/openai/deployments/gpt4o/extensions/chat/completions?{V}"}),
    # the AI Model Inference form recommended by the seed FAQ: chat and embeddings only
    (F + "/models/chat/completions?api-version=2024-05-01-preview",
     models(F, "api-version=2024-05-01-preview")),
    (F + "/models/chat/completions", models(F)),
    (F + "/models", models(F)),
    (F + "/models/", models(F)),
    (F + "/models/embeddings?api-version=2024-05-01-preview",
     models(F, "api-version=2024-05-01-preview")),
    # the v1 API: model in the body, no api-version unless given
    (R + "/openai/v1", v1(R)),
    (R + "/openai/v1/", v1(R)),
    (R + "/openai/v1/chat/completions", v1(R)),
    (R + "/openai/v1/chat/completions?api-version=preview", v1(R, "api-version=preview")),
    # AZ-2: the query is parsed, other parameters stay, api-version anywhere counts
    (R + "/openai/deployments/gpt4o/chat/completions?x=1&api-version=2024-02-01",
     deployment(R, "gpt4o", "x=1&api-version=2024-02-01")),
    (F + "/models/chat/completions?x=1", models(F, f"x=1&{V}")),
]

CELLS = [pytest.param(base, endpoint, want, id=f"{base}|{endpoint}")
         for base, row in TABLE for endpoint, want in row.items()]


@pytest.mark.parametrize("base,endpoint,want", CELLS)
def test_url_table(base, endpoint, want):
    if want is NO:
        with pytest.raises(ClientError) as info:
            azure_url(base, "dep", endpoint)
        err = info.value
        assert err.status == 400 and err.code == "unsupported_endpoint"
        assert endpoint.lstrip("/") in err.message and "/models" in err.message
    else:
        assert azure_url(base, "dep", endpoint) == want


def test_chat_is_the_default_endpoint():
    assert azure_url(R, "dep") == f"{R}/openai/deployments/dep/chat/completions?{V}"


# -- properties --------------------------------------------------------------------------------

FORMS = [R, R + "/openai", R + "/openai/deployments/{dep}/chat/completions",
         F + "/models/chat/completions", F + "/models", R + "/openai/v1"]
names = st.text(st.sampled_from("abcxyz0189-_."), min_size=1, max_size=12)
versions = st.one_of(st.sampled_from(["2024-10-21", "2025-01-01-preview", "2024-05-01-preview",
                                      "preview"]), st.text(max_size=12))
extras = st.lists(st.tuples(st.sampled_from(["x", "y", "api-versio", "foo"]),
                            st.text(max_size=6)), max_size=3)


@given(form=st.sampled_from(FORMS), endpoint=st.sampled_from(ALL), dep=names,
       version=st.none() | versions, extra=extras, slash=st.booleans())
def test_api_version_and_query_survive_and_paths_are_sane(form, endpoint, dep, version, extra,
                                                          slash):
    base_query = extra + ([("api-version", version)] if version is not None else [])
    base = form.replace("{dep}", dep) + ("/" if slash else "")
    if base_query:
        base += "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in base_query)
    try:
        url = azure_url(base, "up-model", endpoint)
    except ClientError as err:
        assert "/models" in form and endpoint not in (CHAT, EMB) and err.status == 400
        return
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    # the explicit api-version is kept as given; otherwise the default is added (not on v1)
    got = [v for k, v in query if k == "api-version"]
    if version is not None:
        assert got == [version]
    else:
        assert got == ([] if form.endswith("/v1") else [DEFAULT_API_VERSION])
    assert [p for p in query if p[0] != "api-version"] == extra  # other parameters, in order
    # one endpoint, at the end; never a doubled /openai; the named deployment wins
    assert parts.path.endswith(endpoint)
    assert parts.path.count("/openai") <= 1 and parts.path.count("/chat/completions") <= 1
    if "{dep}" in form:
        assert parts.path == f"/openai/deployments/{dep}{endpoint}"


# -- through the gateway -----------------------------------------------------------------------

CONF = f"""
providers:
  - provider: az-full
    base_url: {R}/openai/deployments/emb3/embeddings?api-version=2024-06-01
    engine: azure
    api: az-key
    model:
      - text-embedding-3-small: emb-full
  - provider: az-models
    base_url: {F}/models/chat/completions?api-version=2024-05-01-preview
    engine: azure
    api: az-key
    model:
      - dall-e-3: img-models
      - text-embedding-3-small: emb-models
api_keys:
  - api: sk-c
"""


def post(path: str, body: dict):
    gw = Gateway(load_config(CONF).config, entropy=random.Random(0))
    return gw.handle("POST", path, (("authorization", "Bearer sk-c"),
                                    ("content-type", "application/json")),
                     json.dumps(body).encode(), now=0.0, wall=1e9)


def test_gateway_sends_embeddings_to_the_deployment_a_full_url_names():
    (action,) = [a for a in post("/v1/embeddings", {"model": "emb-full", "input": "hi"}).start(0.0)
                 if isinstance(a, StartUpstream)]
    assert action.request.url == f"{R}/openai/deployments/emb3/embeddings?api-version=2024-06-01"
    assert dict(action.request.headers)["api-key"] == "az-key"


def test_gateway_sends_embeddings_to_the_models_form():
    (action,) = [a for a in post("/v1/embeddings", {"model": "emb-models", "input": "hi"})
                 .start(0.0) if isinstance(a, StartUpstream)]
    assert action.request.url == f"{F}/models/embeddings?api-version=2024-05-01-preview"
    assert json.loads(action.request.body)["model"] == "text-embedding-3-small"


def test_gateway_answers_400_for_images_at_the_models_form():
    out = post("/v1/images/generations", {"model": "img-models", "prompt": "a cat"}).start(0.0)
    assert not [a for a in out if isinstance(a, StartUpstream)]
    head = next(a for a in out if isinstance(a, SendHead))
    error = json.loads(b"".join(a.data for a in out if isinstance(a, SendData)))["error"]
    assert head.status == 400 and error["code"] == "unsupported_endpoint"
    assert "'az-models'" in error["message"] and "images/generations" in error["message"]


# -- OAI-4: Azure streams ask for usage like OpenAI's ------------------------------------------

def _chat_ctx(stream: bool, include_usage: bool, stream_usage: bool | None = None):
    from uniapi_core.config.model import Provider, ProviderPreferences
    from uniapi_core.vendors.base import ChatContext

    provider = Provider(provider="az", base_url=R, api=("k",), engine="azure",
                        preferences=ProviderPreferences(stream_usage=stream_usage))
    return ChatContext(client_model="m", upstream_model="dep", provider=provider, api_key="k",
                       stream=stream, include_usage=include_usage, response_id="chatcmpl-x",
                       created=1, entropy=random.Random(0))


def test_an_azure_stream_asks_for_usage_unless_asked_or_switched_off_oai_4():
    from uniapi_core.vendors.azure import build_exchange

    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True,
            "stream_options": {"include_obfuscation": False}}

    def sent(**kw):
        return json.loads(build_exchange(body, _chat_ctx(**kw)).request.body)

    assert sent(stream=True, include_usage=False)["stream_options"] == {
        "include_obfuscation": False, "include_usage": True}
    assert sent(stream=True, include_usage=False, stream_usage=False) == dict(body, model="dep")
    assert sent(stream=False, include_usage=False) == dict(body, model="dep")
    asked = dict(body, stream_options={"include_usage": True})
    assert json.loads(build_exchange(asked, _chat_ctx(True, True)).request.body) == \
        dict(asked, model="dep")
    # the decoder hides what the client did not ask for and keeps it for the stats
    wire = (b'data: {"choices":[],"prompt_filter_results":[]}\n\n'
            b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"dep",'
            b'"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}],'
            b'"usage":null}\n\n'
            b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"dep",'
            b'"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}}'
            b'\n\ndata: [DONE]\n\n')
    dec = build_exchange(body, _chat_ctx(True, False)).stream_decoder()
    items = dec.feed(wire) + dec.close()
    assert [json.loads(i.data[6:]) for i in items[:-1]] == [
        {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
         "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]}]
    assert items[-1].usage == {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}
