"""Model resolution and the per-model timeout chain (docs/routing.md §1, §8), on hand-built
configs."""

from __future__ import annotations

from uniapi_core.config.model import (
    ApiKey,
    Config,
    GlobalPreferences,
    ModelEntry,
    ModelRule,
    Provider,
    ProviderPreferences,
)
from uniapi_core.routing.retry import attempt_budget
from uniapi_core.routing.resolve import Catalog, key_models, resolve
from uniapi_core.routing.timeouts import lookup, model_timeout


def entries(*items):
    out = []
    for it in items:
        if isinstance(it, tuple):
            out.append(ModelEntry(upstream=it[0], alias=it[1]))
        else:
            out.append(ModelEntry(upstream=it, alias=it))
    return tuple(out)


PROVIDERS = (
    Provider(provider="openai", base_url="https://a/v1/chat/completions", api=("k1",),
             model=entries("gpt-4o", ("claude-3-5-sonnet-20240620", "claude-3-5-sonnet"))),
    Provider(provider="anthropic", base_url="https://api.anthropic.com/v1/messages",
             api=("k2",), model=entries(("claude-3-5-sonnet-20240620", "claude-3-5-sonnet"))),
    Provider(provider="other", base_url="https://b/v1/chat/completions", api=("k3",),
             model=entries("anthropic/claude-3-5-sonnet", "gpt-4o")),
    Provider(provider="auto", base_url="https://c/v1/chat/completions", api=("k4",)),
)


def key(*rules, weightless=True):
    return ApiKey(api="sk-x", model=tuple(ModelRule(rule=r) for r in rules))


def names(channels):
    return [(c.provider.provider, c.upstream_model) for c in channels]


def test_bare_name_takes_every_provider_in_providers_order():
    cat = Catalog(Config(providers=PROVIDERS))
    assert names(resolve(cat, key("gpt-4o"), "gpt-4o")) == [("openai", "gpt-4o"),
                                                            ("other", "gpt-4o")]


def test_key_rule_order_wins_over_provider_order():
    cat = Catalog(Config(providers=PROVIDERS))
    got = resolve(cat, key("other/*", "openai/*"), "gpt-4o")
    assert names(got) == [("other", "gpt-4o"), ("openai", "gpt-4o")]


def test_rename_exposes_only_the_alias():
    cat = Catalog(Config(providers=PROVIDERS))
    assert names(resolve(cat, key("claude-3-5-sonnet"), "claude-3-5-sonnet")) == [
        ("openai", "claude-3-5-sonnet-20240620"), ("anthropic", "claude-3-5-sonnet-20240620")]
    assert resolve(cat, key("claude-3-5-sonnet-20240620"), "claude-3-5-sonnet-20240620") == []


def test_provider_slash_model_vs_literal_in_brackets():
    """The seed README: ``anthropic/claude-3-5-sonnet`` is the anthropic provider's model;
    ``<anthropic/claude-3-5-sonnet>`` is the literal name another provider offers."""
    cat = Catalog(Config(providers=PROVIDERS))
    k = key("anthropic/claude-3-5-sonnet")
    assert names(resolve(cat, k, "claude-3-5-sonnet")) == [
        ("anthropic", "claude-3-5-sonnet-20240620")]
    assert resolve(cat, k, "anthropic/claude-3-5-sonnet") == []
    lit = key("<anthropic/claude-3-5-sonnet>")
    assert names(resolve(cat, lit, "anthropic/claude-3-5-sonnet")) == [
        ("other", "anthropic/claude-3-5-sonnet")]
    assert resolve(cat, lit, "claude-3-5-sonnet") == []


def test_no_model_list_means_everything_and_duplicates_are_dropped():
    cat = Catalog(Config(providers=PROVIDERS))
    everything = ApiKey(api="sk-all")
    assert names(resolve(cat, everything, "gpt-4o")) == [("openai", "gpt-4o"), ("other", "gpt-4o")]
    twice = key("openai/*", "gpt-4o")
    assert names(resolve(cat, twice, "gpt-4o")) == [("openai", "gpt-4o"), ("other", "gpt-4o")]


def test_discovered_models_are_served_once_known():
    cat = Catalog(Config(providers=PROVIDERS))
    assert resolve(cat, key("auto/*"), "llama-3") == []
    cat = Catalog(Config(providers=PROVIDERS), {"auto": entries("llama-3")})
    assert names(resolve(cat, key("auto/*"), "llama-3")) == [("auto", "llama-3")]


def test_key_models_lists_callable_names_in_rule_order():
    cat = Catalog(Config(providers=PROVIDERS))
    assert key_models(cat, key("anthropic/*", "gpt-4o", "nothing-serves-this")) == [
        "claude-3-5-sonnet", "gpt-4o"]
    assert key_models(cat, ApiKey(api="sk-all")) == [
        "gpt-4o", "claude-3-5-sonnet", "anthropic/claude-3-5-sonnet"]


def test_lookup_exact_then_longest_prefix_then_longest_contained():
    table = (("gpt-4o", 1), ("gpt-4", 2), ("o1", 3), ("default", 9), ("4o-mini", 4))
    assert lookup(table, "gpt-4o") == 1
    assert lookup(table, "gpt-4o-2024-08-06") == 1  # longest prefix
    assert lookup(table, "gpt-4-turbo") == 2
    assert lookup(table, "chatgpt-4o-mini") == 4  # longest contained
    assert lookup(table, "claude") is None  # default is the caller's business


def test_timeout_precedence_chain():
    glob = GlobalPreferences(model_timeout=(("gpt-4o", 10.0), ("default", 20.0)))
    plain = Provider(provider="p", base_url="x")
    with_default = Provider(provider="q", base_url="x", preferences=ProviderPreferences(
        model_timeout=(("default", 30.0),)))
    with_match = Provider(provider="r", base_url="x", preferences=ProviderPreferences(
        model_timeout=(("gpt-4o", 40.0), ("default", 30.0))))
    assert model_timeout(with_match, glob, "gpt-4o", "gpt-4o", 99) == 40.0
    assert model_timeout(with_default, glob, "gpt-4o", "gpt-4o", 99) == 30.0
    assert model_timeout(plain, glob, "gpt-4o", "gpt-4o", 99) == 10.0
    assert model_timeout(plain, glob, "claude", "claude", 99) == 20.0
    assert model_timeout(plain, GlobalPreferences(), "claude", "claude", 99) == 99.0
    assert model_timeout(plain, GlobalPreferences(), "claude", "claude", None) == 100.0
    # the alias is tried before the upstream name at each level
    assert model_timeout(with_match, glob, "my-alias", "gpt-4o-2024", 99) == 40.0


def test_attempt_budget():
    assert attempt_budget(None) == attempt_budget(True) == 10
    assert attempt_budget(False) == 1
    assert attempt_budget(0) == 1
    assert attempt_budget(2) == 3
    assert attempt_budget(50) == 10
