"""The api.yaml loader: the seeds load unchanged, mistakes name their path and line, secrets
never leak into messages, and no input makes it raise anything but ``ConfigError``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from uniapi_core.config import (
    ConfigError,
    Loaded,
    ModelEntry,
    ModelRule,
    RateLimit,
    RateRule,
    load_config,
    parse_rate_limit,
    parse_rate_rules,
)
from uniapi_core.config.load import MAX_NODES
from uniapi_core.config.rates import UNITS

DATA = Path(__file__).resolve().parent.parent / "data"

BASE = """\
providers:
  - provider: openai
    base_url: https://api.openai.com/v1/chat/completions
    api: sk-abc
    model: [gpt-4o]
api_keys:
  - api: sk-client
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(text, "api.yaml")
    return exc.value.problems


def with_provider_lines(extra: str) -> str:
    """BASE with ``extra`` (indented provider keys) after the provider's model line (line 6)."""
    return BASE.replace("    model: [gpt-4o]\n", "    model: [gpt-4o]\n" + extra)


def with_key_lines(extra: str) -> str:
    """BASE with ``extra`` (indented api-key keys) after the key's api line (line 8)."""
    return BASE + extra


# -- the seeds ----------------------------------------------------------------------------------


def test_seed_minimal_loads_without_problems_or_warnings():
    loaded = load_config((DATA / "seed-minimal.yaml").read_text(), "seed-minimal.yaml")
    assert isinstance(loaded, Loaded) and loaded.warnings == ()
    (p,) = loaded.config.providers
    assert p.provider == "provider_name" and p.line == 2
    assert p.api == ("sk-YgS6GTi0b4bEabc4C",)
    assert p.model is None  # discovered at start
    (k,) = loaded.config.api_keys
    assert k.model is None and k.line == 7  # may call everything


def test_seed_advanced_loads_with_its_meaning():
    loaded = load_config((DATA / "seed-advanced.yaml").read_text(), "seed-advanced.yaml")
    # only its placeholders are noted: the proxies (socks5://[username]:[password]@[ip]:[port])
    # and the Vertex private_key ("-----BEGIN PRIVATE KEY-----\nxxxxx..."), which would fail at
    # the first request
    assert [w.split(":")[0] + w[w.rindex("(line"):] for w in loaded.warnings] == [
        "providers[2].preferences.proxy(line 44)", "providers[3].private_key(line 51)",
        "preferences.proxy(line 134)"]
    c = loaded.config
    assert len(c.providers) == 7
    assert [p.provider for p in c.providers] == [
        "provider_name", "anthropic", "gemini", "vertex", "cloudflare", "azure", "other-provider"]
    assert [p.line for p in c.providers] == [2, 10, 20, 49, 64, 71, 77]
    first = c.providers[0]
    assert first.model == (ModelEntry(upstream="gpt-4o", alias="gpt-4o"),
                           ModelEntry(upstream="claude-3-5-sonnet-20240620",
                                      alias="claude-3-5-sonnet"),
                           ModelEntry(upstream="dall-e-3", alias="dall-e-3"))
    assert c.providers[1].api == ("sk-ant-api03-bNnAOJyA-xQw_twAA", "sk-ant-api02-bNnxxxx")

    gemini = c.providers[2]
    assert gemini.api == ("AIzaSyAN2k6IRdgw123", "AIzaSyAN2k6IRdgw456", "AIzaSyAN2k6IRdgw789")
    assert [(e.upstream, e.alias) for e in gemini.model] == [
        ("gemini-1.5-pro", "gemini-1.5-pro"),
        ("gemini-1.5-flash-exp-0827", "gemini-1.5-flash"),
        ("gemini-1.5-flash-exp-0827", "gemini-1.5-flash-exp-0827"),
        ("gemini-1.5-pro", "gemini-1.5-pro-search")]
    prefs = gemini.preferences
    assert prefs.api_key_rate_limit == RateLimit(rules=(RateRule(count=15, period=60.0,
                                                                 text="15/min"),))
    assert prefs.api_key_cooldown_period == 60.0
    assert prefs.api_key_schedule_algorithm == "round_robin"
    assert prefs.model_timeout == (("gemini-1.5-pro", 10.0), ("gemini-1.5-flash", 10.0),
                                   ("default", 10.0))
    assert prefs.proxy == "socks5://[用户名]:[密码]@[IP地址]:[端口]"
    assert prefs.headers == (("Custom-Header-1", "Value-1"), ("Custom-Header-2", "Value-2"))

    vertex = c.providers[3]
    assert vertex.project_id == "gen-lang-client-xxxxxxxxxxxxxx"
    assert vertex.private_key == "-----BEGIN PRIVATE KEY-----\nxxxxx\n-----END PRIVATE"
    assert vertex.api == () and vertex.base_url is None
    assert vertex.notes == "https://xxxxx.com/"
    assert len(vertex.model) == 7

    cf = c.providers[4]
    assert cf.cf_account_id == "8ec0xxxxxxxxxxxxe721"
    assert cf.model == (ModelEntry(upstream="@cf/meta/llama-3.1-8b-instruct",
                                   alias="llama-3.1-8b"),
                        ModelEntry(upstream="@cf/meta/llama-3.1-8b-instruct",
                                   alias="@cf/meta/llama-3.1-8b-instruct"))
    other = c.providers[6]
    assert other.tools is False and other.image is True and other.engine == "openrouter"

    k0, k1, k2 = c.api_keys
    assert k0.role == "admin"
    assert [r.rule for r in k0.model] == ["gpt-4o", "claude-3-5-sonnet", "gemini/*"]
    assert [r.rule for r in k1.model] == [
        "anthropic/claude-3-5-sonnet", "<anthropic/claude-3-5-sonnet>",
        "openai-test/text-moderation-latest", "sk-KjjI60Yd0JFWtxxxxxxxxxxxxxxwmRWpWpQRo/*"]
    assert k1.preferences.SCHEDULING_ALGORITHM == "fixed_priority"
    assert k1.preferences.AUTO_RETRY is True
    assert k1.preferences.ENABLE_MODERATION is True
    assert k1.preferences.rate_limit.rules == (RateRule(count=15, period=60.0, text="15/min"),)
    assert k2.model == (ModelRule(rule="gcp1/*", weight=5), ModelRule(rule="gcp2/*", weight=3),
                        ModelRule(rule="gcp3/*", weight=2))
    assert k2.preferences.SCHEDULING_ALGORITHM == "weighted_round_robin"

    g = c.preferences
    assert dict(g.model_timeout)["default"] == 10.0
    assert g.model_timeout[0] == ("gpt-4o", 10.0) and len(g.model_timeout) == 5
    assert g.cooldown_period == 300.0
    assert g.error_triggers == ("The bot's usage is covered by the developer",
                                "process this request due to overload or policy")
    assert g.proxy == "socks5://[username]:[password]@[ip]:[port]"


# -- problems: exact message, path and line ----------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    (BASE.replace("api: sk-abc", "api: {k: 1}"),
     "providers[0].api: expected a string or a list of strings, got a mapping (line 4)"),
    (BASE.replace("api: sk-abc", "api: [sk-a, [x]]"),
     "providers[0].api[1]: expected a string, got a list (line 4)"),
    (BASE.replace("api: sk-abc", "api: yes"),
     "providers[0].api: expected a string or a list of strings, got a boolean (line 4)"),
    (BASE.replace("model: [gpt-4o]", "model: gpt-4o"),
     "providers[0].model: expected a list of model names, got a string (line 5)"),
    (BASE.replace("model: [gpt-4o]", "model: [{a: b, c: d}]"),
     "providers[0].model[0]: expected a model name or one `upstream: alias` pair, got a mapping "
     "with 2 keys (line 5)"),
    (BASE.replace("model: [gpt-4o]", "model: [{a: [b]}]"),
     "providers[0].model[0]: expected a string as the alias, got a list (line 5)"),
    (BASE.replace("  - provider: openai\n", "  - name: openai\n"),
     "providers[0].provider: required (line 2)"),
    (BASE.replace("provider: openai", "provider: open/ai"),
     "providers[0].provider: a provider name cannot contain '/' (line 2)"),
    (BASE.replace("provider: openai", "provider: [x]"),
     "providers[0].provider: expected a string, got a list (line 2)"),
    (BASE.replace("  - provider: openai\n", "  - just-a-string\n  - provider: openai\n"),
     "providers[0]: expected a mapping, got a string (line 2)"),
    (with_provider_lines("    engine: fastest\n"),
     "providers[0].engine: expected one of gpt, openai, claude, anthropic, gemini, vertex, "
     "vertex-gemini, vertex-claude, azure, aws, bedrock, cloudflare, cohere, openrouter "
     "(line 6)"),
    (with_provider_lines("    tools: maybe\n"),
     "providers[0].tools: expected true or false, got a string (line 6)"),
    (with_provider_lines("    base_url: [a]\n"),
     "providers[0].base_url: expected a string, got a list (line 6)"),
    (with_provider_lines("    regions: {a: 1}\n"),
     "providers[0].regions: expected a string or a list of strings, got a mapping (line 6)"),
    (with_provider_lines("    preferences: [a]\n"),
     "providers[0].preferences: expected a mapping, got a list (line 6)"),
    (with_provider_lines("    preferences:\n      api_key_schedule_algorithm: fastest\n"),
     "providers[0].preferences.api_key_schedule_algorithm: expected one of round_robin, random, "
     "fixed_priority (line 7)"),
    (with_provider_lines("    preferences:\n      api_key_cooldown_period: soon\n"),
     "providers[0].preferences.api_key_cooldown_period: expected a number ≥ 0, got a string "
     "(line 7)"),
    (with_provider_lines("    preferences:\n      model_timeout: {gpt-4o: 0}\n"),
     "providers[0].preferences.model_timeout.gpt-4o: expected a positive number (line 7)"),
    (with_provider_lines("    preferences:\n      model_timeout: [1]\n"),
     "providers[0].preferences.model_timeout: expected a number of seconds or a map model → "
     "seconds, got a list (line 7)"),
    (with_provider_lines("    preferences:\n      proxy: 8080\n"),
     "providers[0].preferences.proxy: expected a string, got a number (line 7)"),
    (with_provider_lines("    preferences:\n      headers:\n        Bad Name: x\n"),
     "providers[0].preferences.headers['Bad Name']: not a valid HTTP header name (line 8)"),
    (with_provider_lines("    preferences:\n      headers:\n        X-A: {b: 1}\n"),
     "providers[0].preferences.headers.X-A: expected a string, got a mapping (line 8)"),
    (with_provider_lines("    preferences:\n      api_key_rate_limit: 15\n"),
     'providers[0].preferences.api_key_rate_limit: expected a rate like "15/min,1000/day" or a '
     "map model → rate, got a number (line 7)"),
    (with_provider_lines(
        "    preferences:\n      api_key_rate_limit:\n        gpt-4o: 2/fortnight\n"),
     "providers[0].preferences.api_key_rate_limit.gpt-4o: unknown time unit (use s, min, hour, "
     "day, month or year) (line 8)"),
    (with_key_lines("    preferences:\n      AUTO_RETRY: maybe\n"),
     "api_keys[0].preferences.AUTO_RETRY: expected true, false or a number of retries ≥ 0, "
     "got a string (line 9)"),
    (with_key_lines("    preferences:\n      AUTO_RETRY: -1\n"),
     "api_keys[0].preferences.AUTO_RETRY: expected true, false or a number of retries ≥ 0 "
     "(line 9)"),
    (with_key_lines("    preferences:\n      rate_limit: 15/fortnight\n"),
     "api_keys[0].preferences.rate_limit: unknown time unit (use s, min, hour, day, month or "
     "year) (line 9)"),
    (with_key_lines("    preferences:\n      SCHEDULING_ALGORITHM: fastest\n"),
     "api_keys[0].preferences.SCHEDULING_ALGORITHM: expected one of fixed_priority, "
     "round_robin, weighted_round_robin, lottery, random (line 9)"),
    (with_key_lines("    preferences:\n      ENABLE_MODERATION: 1\n"),
     "api_keys[0].preferences.ENABLE_MODERATION: expected true or false, got a number (line 9)"),
    (with_key_lines("    model:\n      - gcp1/*: 0\n"),
     "api_keys[0].model[0]: a weight must be a positive whole number (line 9)"),
    (with_key_lines("    model:\n      - gcp1/*: high\n"),
     "api_keys[0].model[0]: a weight must be a positive whole number, got a string (line 9)"),
    (with_key_lines("    model: gpt-4o\n"),
     "api_keys[0].model: expected a list of model rules, got a string (line 8)"),
    (with_key_lines("    weights:\n      gcp1/*: 1.5\n"),
     "api_keys[0].weights: a weight must be a positive whole number, got a number (line 9)"),
    (with_key_lines("    role: [admin]\n"),
     "api_keys[0].role: expected a string, got a list (line 8)"),
    (BASE.replace("  - api: sk-client\n", "  - role: admin\n"),
     "api_keys[0].api: required (line 7)"),
    (BASE + "preferences:\n  cooldown_period: -1\n",
     "preferences.cooldown_period: expected a number ≥ 0 (line 9)"),
    (BASE + "preferences:\n  cooldown_period: .nan\n",
     "preferences.cooldown_period: expected a finite number (line 9)"),
    (BASE + "preferences:\n  error_triggers: {a: 1}\n",
     "preferences.error_triggers: expected a list of strings, got a mapping (line 9)"),
    (BASE + "preferences: 5\n", "preferences: expected a mapping, got a number (line 8)"),
    ("providers: []\n", "api_keys: required (line 1)"),
    ("api_keys: [{api: k}]\n", "providers: required (line 1)"),
    ("providers: {}\napi_keys: [{api: k}]\n",
     "providers: expected a list of providers, got a mapping (line 1)"),
    ("providers: []\napi_keys: []\n", "api_keys: at least one key is required (line 2)"),
    ("providers: []\napi_keys:\n", "api_keys: required (line 1)"),
    ("- a\n- b\n", "api.yaml: expected a mapping with `providers` and `api_keys`, got a list "
     "(line 1)"),
    ("just text\n", "api.yaml: expected a mapping with `providers` and `api_keys`, got a "
     "string (line 1)"),
    ("", "api.yaml: the file is empty; it needs `providers` and `api_keys`"),
    ("# only a comment\n", "api.yaml: the file is empty; it needs `providers` and `api_keys`"),
    ("providers: [\n", "api.yaml: expected the node content, but found '<stream end>' (line 2)"),
    ("a:\n\tb: 1\n", "api.yaml: found character '\\t' that cannot start any token (line 2)"),
    ("a: b\n x: y: z\n", "api.yaml: mapping values are not allowed here (line 2)"),
    ("a: 1\n---\nb: 2\n", "api.yaml: expected a single document in the stream, but found "
     "another document (line 2)"),
])
def test_mistakes_name_path_and_line(text, expected):
    assert expected in problems(text)


def test_source_names_the_file_in_file_level_messages():
    with pytest.raises(ConfigError) as exc:
        load_config("- a\n", "prod.yaml")
    assert exc.value.problems[0].startswith("prod.yaml: ")


def test_every_problem_is_listed_at_once():
    text = BASE.replace("api: sk-abc", "api: {k: 1}").replace("provider: openai", "provider: a/b")
    text += "    preferences:\n      AUTO_RETRY: x\npreferences:\n  cooldown_period: -2\n"
    got = problems(text)
    assert len(got) == 4, got
    assert str(ConfigError(got)) == "; ".join(got)


def test_duplicate_provider_names_are_errors_naming_both_lines():
    text = BASE.replace("api_keys:\n", "  - provider: openai\n    api: k2\napi_keys:\n")
    assert problems(text) == [
        "providers[1].provider: duplicate provider name, already used by providers[0] at line 2 "
        "(line 6)"]


def test_int_provider_names_are_strings_and_count_for_duplicates():
    text = BASE.replace("provider: openai", "provider: 42")
    assert load_config(text).config.providers[0].provider == "42"
    text = text.replace("api_keys:\n", "  - provider: '42'\napi_keys:\n")
    assert problems(text)[0].startswith("providers[1].provider: duplicate provider name")


def test_duplicate_api_keys_are_errors_naming_both_lines_not_the_key():
    got = problems(BASE + "  - api: sk-client\n")
    assert got == ["api_keys[1].api: duplicate api key, already used by api_keys[0] at line 7 "
                   "(line 8)"]


def test_api_keys_that_use_each_other_in_a_cycle_are_refused():
    text = BASE.replace("  - api: sk-client\n", "  - api: sk-a\n    model: [sk-b/*]\n"
                        "  - api: sk-b\n    model: [gpt-4o, sk-a/gpt-4o]\n")
    assert problems(text) == [
        "api_keys[1].model: using api_keys[0] as a channel makes a cycle (line 9)"]
    text = BASE.replace("  - api: sk-client\n", "  - api: sk-a\n    model: [sk-a/*]\n")
    assert problems(text) == [
        "api_keys[0].model: using api_keys[0] as a channel makes a cycle (line 7)"]


def test_key_references_that_are_not_cycles_load():
    text = BASE.replace("  - api: sk-client\n", "  - api: sk-a\n    model: [sk-b/*, <sk-a/x>]\n"
                        "  - api: sk-b\n    model: [openai/*]\n")
    loaded = load_config(text)
    assert [r.rule for r in loaded.config.api_keys[0].model] == ["sk-b/*", "<sk-a/x>"]
    # a provider with the name of a key wins over the key: no cycle either
    text = BASE.replace("provider: openai", "provider: sk-a").replace(
        "  - api: sk-client\n", "  - api: sk-a\n    model: [sk-a/*]\n")
    load_config(text)


# -- warnings ---------------------------------------------------------------------------------


def test_unknown_and_compatibility_keys_warn_with_lines():
    text = with_provider_lines(
        "    colour: red\n"
        "    preferences:\n"
        "      keepalive_interval: {gpt-4o: 5}\n"
        "      foo: 1\n"
        "    exclude_endpoints: [/v1/embeddings]\n"
    ) + ("    preferences:\n      credits: 5\n      bar: 2\n"
         "preferences:\n  model_price: {default: '1,2'}\n  baz: 3\nextra: 1\n")
    loaded = load_config(text)
    assert loaded.warnings == (
        "providers[0].colour: unknown key, ignored (line 6)",
        "providers[0].preferences.keepalive_interval: accepted for compatibility, not acted on "
        "(line 8)",
        "providers[0].preferences.foo: unknown key, ignored (line 9)",
        "providers[0].exclude_endpoints: accepted for compatibility, not acted on (line 10)",
        "api_keys[0].preferences.credits: accepted for compatibility, not acted on (line 14)",
        "api_keys[0].preferences.bar: unknown key, ignored (line 15)",
        "preferences.model_price: accepted for compatibility, not acted on (line 17)",
        "preferences.baz: unknown key, ignored (line 18)",
        "extra: unknown key, ignored (line 19)",
    )
    c = loaded.config
    assert c.providers[0].preferences.extra == (("keepalive_interval", {"gpt-4o": 5}),
                                                ("exclude_endpoints", ["/v1/embeddings"]))
    assert c.api_keys[0].preferences.extra == (("credits", 5),)
    assert c.preferences.extra == (("model_price", {"default": "1,2"}),)


def test_duplicate_keys_warn_and_the_last_one_wins():
    text = BASE.replace("    api: sk-abc\n", "    api: sk-abc\n    api: sk-def\n")
    loaded = load_config(text)
    assert loaded.config.providers[0].api == ("sk-def",)
    assert loaded.warnings == (
        "providers[0]: duplicate key (first at line 4), the last one is used (line 5)",)
    assert not any("sk-abc" in w or "sk-def" in w for w in loaded.warnings)


def test_smart_round_robin_is_accepted_with_a_warning():
    text = with_provider_lines(
        "    preferences:\n      api_key_schedule_algorithm: smart_round_robin\n"
    ) + "    preferences:\n      SCHEDULING_ALGORITHM: smart_round_robin\n"
    loaded = load_config(text)
    assert loaded.config.providers[0].preferences.api_key_schedule_algorithm == "round_robin"
    assert loaded.config.api_keys[0].preferences.SCHEDULING_ALGORITHM == "weighted_round_robin"
    assert loaded.warnings == (
        "providers[0].preferences.api_key_schedule_algorithm: smart_round_robin is treated as "
        "round_robin (line 7)",
        "api_keys[0].preferences.SCHEDULING_ALGORITHM: smart_round_robin is treated as "
        "weighted_round_robin (line 11)")


def test_empty_model_lists_mean_discover_and_everything():
    text = BASE.replace("model: [gpt-4o]", "model: []") + "    model: []\n"
    loaded = load_config(text)
    assert loaded.config.providers[0].model is None
    assert loaded.config.api_keys[0].model is None
    assert loaded.warnings == (
        "providers[0].model: empty list, the models will be discovered from the upstream "
        "(line 5)",
        "api_keys[0].model: empty list, this key may call every model (line 8)")


# -- values and shapes ------------------------------------------------------------------------


def test_absent_is_not_zero_false_or_empty():
    loaded = load_config(BASE)
    assert loaded.config.preferences.cooldown_period is None
    assert loaded.config.preferences.model_timeout is None
    assert loaded.config.api_keys[0].preferences.AUTO_RETRY is None
    assert loaded.config.providers[0].preferences.api_key_cooldown_period is None
    assert loaded.config.providers[0].tools is True
    text = with_provider_lines("    tools: false\n    preferences:\n"
                               "      api_key_cooldown_period: 0\n      cooldown_period: 0\n")
    text += "    preferences:\n      AUTO_RETRY: false\npreferences:\n  cooldown_period: 0\n"
    c = load_config(text).config
    assert c.preferences.cooldown_period == 0.0
    assert c.api_keys[0].preferences.AUTO_RETRY is False
    assert c.providers[0].tools is False
    assert c.providers[0].preferences.api_key_cooldown_period == 0.0
    assert c.providers[0].preferences.cooldown_period == 0.0


def test_a_key_with_no_value_is_absent():
    text = BASE + "    preferences:\n      AUTO_RETRY:\npreferences:\n"
    assert load_config(text).config.api_keys[0].preferences.AUTO_RETRY is None


@pytest.mark.parametrize("raw,value", [
    ("true", True), ("false", False), ("'True'", True), ("'FALSE'", False), ("3", 3), ("0", 0)])
def test_auto_retry_is_a_boolean_or_a_count(raw, value):
    got = load_config(BASE + f"    preferences:\n      AUTO_RETRY: {raw}\n").config
    assert got.api_keys[0].preferences.AUTO_RETRY == value
    assert type(got.api_keys[0].preferences.AUTO_RETRY) is type(value)


def test_booleans_accept_true_false_strings_in_any_case():
    text = with_provider_lines("    tools: 'False'\n    image: 'TRUE'\n")
    p = load_config(text).config.providers[0]
    assert (p.tools, p.image) == (False, True)


def test_upper_case_rate_limit_and_lower_case_wins():
    text = BASE + "    preferences:\n      RATE_LIMIT: 2/min\n"
    loaded = load_config(text)
    assert loaded.config.api_keys[0].preferences.rate_limit.rules[0].count == 2
    assert loaded.warnings == ()
    text = BASE + "    preferences:\n      RATE_LIMIT: 2/min\n      rate_limit: 3/min\n"
    loaded = load_config(text)
    assert loaded.config.api_keys[0].preferences.rate_limit.rules[0].count == 3
    assert loaded.warnings == (
        "api_keys[0].preferences.RATE_LIMIT: ignored, rate_limit is also given and wins "
        "(line 9)",)


def test_model_timeout_number_or_map_and_per_model_rate_maps():
    text = BASE + ("preferences:\n  model_timeout: 20\n"
                   "  rate_limit:\n    gpt-4o: 1/s,10/day\n    default: 4/min\n")
    prefs = load_config(text).config.preferences
    assert prefs.model_timeout == (("default", 20.0),)
    assert prefs.rate_limit.rules == ()
    assert [name for name, _ in prefs.rate_limit.per_model] == ["gpt-4o", "default"]
    assert [r.period for r in prefs.rate_limit.per_model[0][1]] == [1.0, 86400.0]
    text = with_provider_lines("    preferences:\n      model_timeout: 7.5\n")
    assert load_config(text).config.providers[0].preferences.model_timeout == (("default", 7.5),)


def test_ints_become_strings_as_written():
    text = BASE.replace("api: sk-abc", "api: [0123, 12345]").replace(
        "model: [gpt-4o]", "model: [4, {5: 6}]").replace("api: sk-client", "api: 777")
    c = load_config(text).config
    assert c.providers[0].api == ("0123", "12345")
    assert c.providers[0].model == (ModelEntry(upstream="4", alias="4"),
                                    ModelEntry(upstream="5", alias="6"))
    assert c.api_keys[0].api == "777"


def test_engine_is_lower_cased_and_api_may_be_absent():
    text = BASE.replace("    api: sk-abc\n", "    engine: Vertex-Claude\n")
    p = load_config(text).config.providers[0]
    assert p.engine == "vertex-claude" and p.api == ()


def test_headers_are_strings_as_written():
    text = with_provider_lines("    preferences:\n      headers:\n        X-Num: 1.50\n"
                               "        X-Bool: true\n        X-Int: 7\n")
    assert load_config(text).config.providers[0].preferences.headers == (
        ("X-Num", "1.50"), ("X-Bool", "true"), ("X-Int", "7"))
    text = with_provider_lines('    preferences:\n      headers:\n        X-A: "a\\r\\nb"\n')
    assert problems(text) == ["providers[0].preferences.headers.X-A: a header value cannot "
                              "contain line breaks (line 8)"]


def test_weights_regions_vertex_and_aws_fields():
    text = with_provider_lines("    regions: us-east5\n    aws_region: eu-west-1\n"
                               "    token_uri: https://t\n") + (
        "    role: ops\n    weights:\n      openai/*: 3\n      other/x: 1\n")
    c = load_config(text).config
    assert c.providers[0].regions == ("us-east5",)
    assert (c.providers[0].aws_region, c.providers[0].token_uri) == ("eu-west-1", "https://t")
    assert c.api_keys[0].weights == (("openai/*", 3), ("other/x", 1))
    assert c.api_keys[0].role == "ops"
    text = with_provider_lines("    region: us-east5\n")
    assert load_config(text).config.providers[0].regions == ("us-east5",)


def test_error_triggers_accept_a_single_string():
    text = BASE + "preferences:\n  error_triggers: overloaded\n  proxy: http://p:1\n"
    prefs = load_config(text).config.preferences
    assert prefs.error_triggers == ("overloaded",) and prefs.proxy == "http://p:1"


def test_unreadable_free_values_are_ignored_with_a_warning():
    text = with_provider_lines("    notes: !custom {a: 1}\n    preferences:\n"
                               "      timeout_policy: !local [1]\n")
    loaded = load_config(text)
    assert loaded.config.providers[0].notes is None
    assert loaded.config.providers[0].preferences.extra == ()
    assert "providers[0].notes: cannot be read, ignored (line 6)" in loaded.warnings
    assert ("providers[0].preferences.timeout_policy: cannot be read, ignored (line 8)"
            in loaded.warnings)


def test_merge_keys_and_anchors_work():
    text = ("x-common: &common\n  base_url: https://b/v1/chat/completions\n  api: k\n"
            "providers:\n  - <<: *common\n    provider: a\n  - <<: *common\n    provider: b\n"
            "    api: k2\napi_keys: [{api: c}]\n")
    loaded = load_config(text)
    a, b = loaded.config.providers
    assert (a.base_url, a.api, b.api) == ("https://b/v1/chat/completions", ("k",), ("k2",))
    assert loaded.warnings == ("x-common: unknown key, ignored (line 1)",)


# -- hostile input ----------------------------------------------------------------------------


def test_alias_bomb_is_refused_quickly():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    lines.append("providers: *a8")
    assert problems("\n".join(lines) + "\n") == [
        f"api.yaml: the document expands to more than {MAX_NODES} nodes"]


def test_self_referencing_anchor_is_refused():
    assert "expands to more than" in problems("providers: &p [*p]\napi_keys: [{api: k}]\n")[0]


@pytest.mark.parametrize("text", [
    "[" * 5000, "{a: " * 3000, "- " * 3000 + "x",
    BASE + "    role: " + "[" * 400 + "]" * 400 + "\n",
    with_provider_lines("    notes: " + "[" * 300 + "]" * 300 + "\n"),
])
def test_deep_nesting_is_a_config_error_or_loads(text):
    try:
        load_config(text)
    except ConfigError as exc:
        assert exc.problems and not any("internal error" in p for p in exc.problems)


@pytest.mark.parametrize("text", [
    "\x00\x01\x02", "\ufffe", "providers: \x07\n", "\x1b[31m: x", "%YAML 9.9\n---\na: 1",
    "!!python/object:os.system {}", "a: !!binary ???", "? [a, b]\n: c\n",
    BASE + "preferences:\n  cooldown_period: " + "9" * 5000 + "\n",
    BASE + "preferences:\n  cooldown_period: " + "9" * 400 + "\n",
    BASE + "preferences:\n  model_timeout: {a: " + "9" * 400 + "}\n",
    BASE.replace("api: sk-abc", "api: !!binary aGVsbG8="),
    with_provider_lines("    notes: !custom {a: 1}\n"),
])
def test_garbage_is_a_config_error_or_loads(text):
    try:
        load_config(text)
    except ConfigError as exc:
        assert exc.problems and not any("internal error" in p for p in exc.problems)


# -- secrets never appear in messages ---------------------------------------------------------

CANARY = "sk-canary7f3a9dQz"


@pytest.mark.parametrize("text", [
    BASE.replace("api: sk-abc", f"api: {{{CANARY}: 1}}"),
    BASE.replace("api: sk-abc", f"api: [[{CANARY}]]"),
    BASE.replace("api: sk-client", f"api: [{CANARY}]"),
    BASE.replace("api: sk-client", f"api: {CANARY}") + f"  - api: {CANARY}\n",
    BASE.replace("provider: openai", f"provider: {CANARY}") + f"  - api: {CANARY}\n",
    BASE.replace("provider: openai", f"provider: {CANARY}/x"),
    with_provider_lines(f"    private_key: [{CANARY}]\n"),
    with_provider_lines(f"    aws_secret_key: {{a: {CANARY}}}\n"),
    with_provider_lines(f"    engine: {CANARY}\n"),
    with_provider_lines(f"    tools: {CANARY}\n"),
    with_provider_lines(f"    preferences:\n      proxy: [{CANARY}]\n"),
    with_provider_lines(f"    preferences:\n      api_key_schedule_algorithm: {CANARY}\n"),
    with_provider_lines(f'    preferences:\n      headers: {{X-A: "{CANARY}\\n"}}\n'),
    with_provider_lines(f"    preferences:\n      api_key_rate_limit: 15/{CANARY[3:]}\n"),
    with_provider_lines(f"    preferences:\n      api_key_rate_limit: {CANARY}\n"),
    with_provider_lines(f"    preferences:\n      model_timeout: {CANARY}\n"),
    BASE + f"    role: [{CANARY}]\n",
    BASE + f"    model:\n      - {CANARY}/*: x\n",
    BASE + f"    weights:\n      {CANARY}/*: 0\n",
    BASE + f"    preferences:\n      SCHEDULING_ALGORITHM: {CANARY}\n",
    BASE + f"    preferences:\n      AUTO_RETRY: {CANARY}\n",
    BASE + f"    preferences:\n      rate_limit: 1/{CANARY[3:]}\n",
    BASE + f"preferences:\n  cooldown_period: {CANARY}\n",
    BASE.replace("api: sk-abc", f"api: *{CANARY}"),
    BASE.replace("api: sk-abc", f'api: "{CANARY}\\q"'),
    BASE.replace("api: sk-abc", f"api: {CANARY}\n  x: {CANARY}"),
    BASE.replace("api: sk-abc", f"api: {CANARY}") + f"  - api: {CANARY}\n    model: [{CANARY}/*]\n",
])
def test_no_message_contains_a_secret_value(text):
    try:
        loaded = load_config(text)
    except ConfigError as exc:
        assert exc.problems
        messages = exc.problems
    else:
        messages = list(loaded.warnings)
    assert not any(CANARY in m or CANARY[3:] in m for m in messages), messages


# -- rate syntax ------------------------------------------------------------------------------


@pytest.mark.parametrize("text,rules", [
    ("15/min", [(15, 60)]), ("2/s", [(2, 1)]), ("2/sec", [(2, 1)]), ("2/second", [(2, 1)]),
    ("2/seconds", [(2, 1)]), ("5/hour", [(5, 3600)]), ("5/hours", [(5, 3600)]),
    ("3/minute", [(3, 60)]), ("3/minutes", [(3, 60)]), ("10/day", [(10, 86400)]),
    ("10/days", [(10, 86400)]), ("10/month", [(10, 30 * 86400)]),
    ("10/months", [(10, 30 * 86400)]), ("1/year", [(1, 365 * 86400)]),
    ("1/years", [(1, 365 * 86400)]), ("4/MIN", [(4, 60)]),
    ("15/min,1000/day", [(15, 60), (1000, 86400)]),
    (" 15/min , 1000/day ", [(15, 60), (1000, 86400)]), (" 3 / minutes ", [(3, 60)]),
])
def test_rate_rules(text, rules):
    got = parse_rate_rules(text)
    assert [(r.count, r.period) for r in got] == rules
    assert [r.text for r in got] == [part.strip() for part in text.split(",")]


@pytest.mark.parametrize("text,message", [
    ("", "empty rate item"),
    ("15/min,", "empty rate item"),
    ("15", 'expected rates like "15/min,1000/day"'),
    ("x/min", 'expected rates like "15/min,1000/day"'),
    ("-1/s", 'expected rates like "15/min,1000/day"'),
    ("1.5/s", 'expected rates like "15/min,1000/day"'),
    ("15/1min", 'expected rates like "15/min,1000/day"'),
    ("١٥/min", 'expected rates like "15/min,1000/day"'),  # non-ASCII digits
    ("0/min", "a rate needs a count of at least 1"),
    ("15/mins", "unknown time unit (use s, min, hour, day, month or year)"),
    ("15/w", "unknown time unit (use s, min, hour, day, month or year)"),
    ("15/fortnight", "unknown time unit (use s, min, hour, day, month or year)"),
    ("9" * 30 + "/s", "rate count too large"),
])
def test_bad_rate_rules(text, message):
    with pytest.raises(ValueError) as exc:
        parse_rate_rules(text)
    assert str(exc.value) == message


def test_parse_rate_limit_string_or_map():
    assert parse_rate_limit("2/s") == RateLimit(rules=(RateRule(count=2, period=1.0, text="2/s"),))
    got = parse_rate_limit({"b": "1/min", "default": "4/min", 7: "1/day"})
    assert [(k, [r.count for r in v]) for k, v in got.per_model] == [
        ("b", [1]), ("default", [4]), ("7", [1])]
    assert got.rules == ()
    with pytest.raises(ValueError, match="^b: unknown time unit"):
        parse_rate_limit({"b": "1/x"})
    with pytest.raises(ValueError):
        parse_rate_limit({"b": 3})  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        parse_rate_limit(15)  # type: ignore[arg-type]


units = st.sampled_from(sorted(UNITS))
spaces = st.sampled_from(["", " ", "  "])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 10**9), units, spaces, spaces), min_size=1,
                max_size=6))
def test_rate_rules_round_trip(items):
    text = ",".join(f"{a}{n}/{u.upper() if n % 2 else u}{b}" for n, u, a, b in items)
    got = parse_rate_rules(text)
    assert [(r.count, r.period) for r in got] == [(n, UNITS[u]) for n, u, _, _ in items]
    again = parse_rate_rules(",".join(r.text for r in got))
    assert again == got


# -- any input: a Loaded or a ConfigError, never anything else ---------------------------------


def check_any(text: str) -> None:
    try:
        loaded = load_config(text)
    except ConfigError as exc:
        assert exc.problems
        assert not any("internal error" in p for p in exc.problems), exc.problems
    else:
        assert isinstance(loaded, Loaded)
        assert loaded.config.api_keys


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_gives_a_config_or_config_error(text):
    check_any(text)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="[]{}:-,&*!|>'\"#% \n\tab1.~<=?", max_size=120))
def test_yaml_punctuation_soup_gives_a_config_or_config_error(text):
    check_any(text)


KEYS = ["provider", "base_url", "api", "model", "engine", "tools", "image", "notes", "regions",
        "region", "preferences", "providers", "api_keys", "role", "weights", "rate_limit",
        "RATE_LIMIT", "AUTO_RETRY", "SCHEDULING_ALGORITHM", "ENABLE_MODERATION", "headers",
        "model_timeout", "cooldown_period", "api_key_rate_limit", "api_key_cooldown_period",
        "api_key_schedule_algorithm", "error_triggers", "proxy", "credits", "keepalive_interval",
        "default", "gpt-4o", "sk-a", "x"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**20),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from(["15/min", "1/s,2/day", "round_robin", "smart_round_robin",
                                     "gpt", "true", "False", "sk-a/*", "a/b", "<a/b>", "X-H"]),
                    st.text(max_size=8))
yaml_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.sampled_from(KEYS), st.integers(0, 9)),
                                            inner, max_size=5)),
    max_leaves=30)


@settings(max_examples=400, deadline=None)
@given(yaml_values)
def test_arbitrary_structures_give_a_config_or_config_error(value):
    check_any(yaml.safe_dump(value))


provider_items = st.dictionaries(st.sampled_from(KEYS), yaml_values, max_size=6)


@settings(max_examples=400, deadline=None)
@given(st.lists(provider_items, max_size=3), st.lists(provider_items, max_size=3),
       st.dictionaries(st.sampled_from(KEYS), yaml_values, max_size=4))
def test_config_shaped_structures_give_a_config_or_config_error(providers, keys, prefs):
    check_any(yaml.safe_dump({"providers": providers, "api_keys": keys, "preferences": prefs}))
