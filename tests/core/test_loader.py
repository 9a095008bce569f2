"""api.yaml loading: the seeds load unchanged, mistakes name their path and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uniapi_core.config import ConfigError, load_config, parse_rate_rules

DATA = Path(__file__).resolve().parent.parent / "data"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(text, "api.yaml")
    return exc.value.problems


BASE = """\
providers:
  - provider: openai
    base_url: https://api.openai.com/v1/chat/completions
    api: sk-abc
    model: [gpt-4o]
api_keys:
  - api: sk-client
"""


def test_seed_minimal_loads():
    loaded = load_config((DATA / "seed-minimal.yaml").read_text())
    (p,) = loaded.config.providers
    assert p.model is None  # discovered at start
    assert p.api == ("sk-YgS6GTi0b4bEabc4C",)
    assert loaded.config.api_keys[0].model is None  # may call everything


def test_seed_advanced_loads_with_its_meaning():
    loaded = load_config((DATA / "seed-advanced.yaml").read_text())
    c = loaded.config
    assert [p.provider for p in c.providers] == [
        "provider_name", "anthropic", "gemini", "vertex", "cloudflare", "azure", "other-provider"]
    gemini = c.providers[2]
    assert len(gemini.api) == 3
    assert gemini.preferences.api_key_rate_limit.rules[0].count == 15
    assert gemini.preferences.api_key_rate_limit.rules[0].period == 60
    assert gemini.preferences.api_key_cooldown_period == 60
    assert [(e.upstream, e.alias) for e in gemini.model][1] == (
        "gemini-1.5-flash-exp-0827", "gemini-1.5-flash")
    assert gemini.preferences.headers == (("Custom-Header-1", "Value-1"),
                                          ("Custom-Header-2", "Value-2"))
    cf = c.providers[4]
    assert [(e.upstream, e.alias) for e in cf.model] == [
        ("@cf/meta/llama-3.1-8b-instruct", "llama-3.1-8b"),
        ("@cf/meta/llama-3.1-8b-instruct", "@cf/meta/llama-3.1-8b-instruct")]
    assert c.providers[6].tools is False and c.providers[6].engine == "openrouter"
    k2 = c.api_keys[1]
    assert [r.rule for r in k2.model][1] == "<anthropic/claude-3-5-sonnet>"
    assert k2.model[3].rule == "sk-KjjI60Yd0JFWtxxxxxxxxxxxxxxwmRWpWpQRo/*"
    assert k2.preferences.SCHEDULING_ALGORITHM == "fixed_priority"
    assert k2.preferences.ENABLE_MODERATION is True
    assert k2.preferences.rate_limit.rules[0].count == 15
    assert [(r.rule, r.weight) for r in c.api_keys[2].model] == [
        ("gcp1/*", 5), ("gcp2/*", 3), ("gcp3/*", 2)]
    assert c.api_keys[0].role == "admin"
    assert dict(c.preferences.model_timeout)["default"] == 10
    assert c.preferences.cooldown_period == 300
    assert len(c.preferences.error_triggers) == 2
    assert c.providers[1].line == 10


@pytest.mark.parametrize("text,expected", [
    (BASE.replace("api: sk-abc", "api: {k: 1}"),
     "providers[0].api: expected a string or a list of strings, got a mapping (line 4)"),
    (BASE.replace("model: [gpt-4o]", "model: gpt-4o"),
     "providers[0].model: expected a list of model names, got a string (line 5)"),
    (BASE.replace("  - provider: openai\n", "  - base_url_only: 1\n"),
     "providers[0].provider: required (line 2)"),
    (BASE + "    preferences:\n      AUTO_RETRY: maybe\n",
     "api_keys[0].preferences.AUTO_RETRY: expected true, false or a number of retries ≥ 0, "
     "got a string (line 9)"),
    (BASE + "    preferences:\n      rate_limit: 15/fortnight\n",
     "api_keys[0].preferences.rate_limit: unknown time unit (use s, min, hour, day, "
     "month or year) (line 9)"),
    (BASE + "    model:\n      - gcp1/*: 0\n",
     "api_keys[0].model[0]: a weight must be a positive whole number (line 9)"),
    (BASE + "preferences:\n  cooldown_period: -1\n",
     "preferences.cooldown_period: expected a number ≥ 0 (line 9)"),
    (BASE.replace("    model: [gpt-4o]\n", "    model: [gpt-4o]\n    engine: fastest\n"),
     "providers[0].engine: expected one of gpt, openai, claude, anthropic, gemini, vertex, "
     "vertex-gemini, vertex-claude, azure, aws, bedrock, cloudflare, cohere, openrouter "
     "(line 6)"),
    ("providers: []\n", "api_keys: required (line 1)"),
    ("providers: []\napi_keys: []\n", "api_keys: at least one key is required (line 2)"),
    ("- a\n- b\n", "api.yaml: expected a mapping with `providers` and `api_keys`, got a list "
     "(line 1)"),
    ("", "api.yaml: the file is empty; it needs `providers` and `api_keys`"),
    ("providers: [\n", None),
])
def test_mistakes_name_path_and_line(text, expected):
    got = problems(text)
    if expected is None:
        assert got and "line" in got[0]
    else:
        assert expected in got, got


def test_every_problem_is_listed_at_once():
    text = BASE.replace("api: sk-abc", "api: {k: 1}") + "    preferences:\n      AUTO_RETRY: x\n"
    assert len(problems(text)) == 2


def test_duplicates_are_errors_with_both_lines():
    text = BASE + "  - api: sk-client\n"
    assert ("api_keys[1].api: duplicate api key, already used by api_keys[0] at line 7 (line 8)"
            in problems(text))


def test_unknown_and_compatibility_keys_warn_with_lines():
    text = BASE.replace("    model: [gpt-4o]\n", "    model: [gpt-4o]\n    colour: red\n"
                        "    preferences:\n      keepalive_interval: {gpt-4o: 5}\n") + "extra: 1\n"
    loaded = load_config(text)
    assert "providers[0].colour: unknown key, ignored (line 6)" in loaded.warnings
    assert ("providers[0].preferences.keepalive_interval: accepted for compatibility, not acted "
            "on (line 8)") in loaded.warnings
    assert "extra: unknown key, ignored (line 11)" in loaded.warnings
    assert loaded.config.providers[0].preferences.extra == (("keepalive_interval",
                                                             {"gpt-4o": 5}),)


def test_absent_is_not_zero():
    loaded = load_config(BASE)
    assert loaded.config.preferences.cooldown_period is None
    assert loaded.config.api_keys[0].preferences.AUTO_RETRY is None
    text = BASE + "    preferences:\n      AUTO_RETRY: false\npreferences:\n  cooldown_period: 0\n"
    loaded = load_config(text)
    assert loaded.config.preferences.cooldown_period == 0.0
    assert loaded.config.api_keys[0].preferences.AUTO_RETRY is False


def test_upper_case_rate_limit_and_lower_case_wins():
    text = BASE + "    preferences:\n      RATE_LIMIT: 2/min\n"
    assert load_config(text).config.api_keys[0].preferences.rate_limit.rules[0].count == 2
    text = BASE + "    preferences:\n      RATE_LIMIT: 2/min\n      rate_limit: 3/min\n"
    loaded = load_config(text)
    assert loaded.config.api_keys[0].preferences.rate_limit.rules[0].count == 3
    assert any("RATE_LIMIT" in w for w in loaded.warnings)


def test_model_timeout_number_or_map_and_per_model_rate_maps():
    text = BASE + ("preferences:\n  model_timeout: 20\n"
                   "  rate_limit:\n    gpt-4o: 1/s,10/day\n    default: 4/min\n")
    prefs = load_config(text).config.preferences
    assert prefs.model_timeout == (("default", 20.0),)
    assert [name for name, _ in prefs.rate_limit.per_model] == ["gpt-4o", "default"]
    assert [r.period for r in prefs.rate_limit.per_model[0][1]] == [1.0, 86400.0]


@pytest.mark.parametrize("text,count,period", [
    ("15/min", 15, 60), ("2/s", 2, 1), ("5/hour", 5, 3600), ("10/day", 10, 86400),
    ("10/month", 10, 30 * 86400), ("1/year", 1, 365 * 86400), (" 3 / minutes ", 3, 60),
    ("2/m", 2, 60), ("2/h", 2, 3600), ("2/hr", 2, 3600), ("2/d", 2, 86400),
    ("2/mo", 2, 30 * 86400), ("2/y", 2, 365 * 86400),  # uni-api's short units
])
def test_rate_rules(text, count, period):
    (rule,) = parse_rate_rules(text)
    assert (rule.count, rule.period) == (count, period)


@pytest.mark.parametrize("text", ["", "15", "0/min", "x/min", "15/w", "15/min,", "-1/s"])
def test_bad_rate_rules(text):
    with pytest.raises(ValueError):
        parse_rate_rules(text)


def test_secrets_never_appear_in_messages():
    canary = "sk-canary-7f3a9d"
    texts = [
        BASE.replace("api: sk-abc", f"api: {{{canary}: 1}}"),
        BASE.replace("api: sk-client", f"api: [{canary}]"),
        BASE + f"  - api: sk-client\n    role: {canary}\n",
        BASE.replace("    model: [gpt-4o]\n", f"    model: [gpt-4o]\n    private_key: [{canary}]\n"),
    ]
    for text in texts:
        with pytest.raises(ConfigError) as exc:
            load_config(text)
        assert canary not in str(exc.value), exc.value.problems


def test_alias_bomb_is_refused():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    lines.append("providers: *a8")
    got = problems("\n".join(lines) + "\n")
    assert "expands to more than" in got[0]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_gives_a_config_or_config_error(text):
    try:
        load_config(text)
    except ConfigError as exc:
        assert exc.problems


yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
              st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(
                                ["provider", "api", "model", "base_url", "preferences",
                                 "providers", "api_keys", "rate_limit", "AUTO_RETRY", "x"]),
                                inner, max_size=4)),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(yaml_values)
def test_arbitrary_structures_give_a_config_or_config_error(value):
    import yaml

    try:
        load_config(yaml.safe_dump(value))
    except ConfigError as exc:
        assert exc.problems


def test_unusable_proxy_urls_warn_at_load_without_quoting_them():
    """A warning, not an error: uni-api's example config carries a placeholder proxy."""
    text = BASE.replace("    model: [gpt-4o]\n", "    model: [gpt-4o]\n    preferences:\n"
                        "      proxy: https://user:s3cret@proxy.example:8443\n")
    text += "preferences:\n  proxy: ftp://p.example\n"
    warnings = load_config(text).warnings
    assert any(g.startswith("providers[0].preferences.proxy: not a usable proxy URL") and
               "(line 7)" in g for g in warnings), warnings
    assert any(g.startswith("preferences.proxy: not a usable proxy URL") and "(line 11)" in g
               for g in warnings), warnings
    assert not any("s3cret" in g for g in warnings)
    assert problems(BASE + "preferences:\n  proxy: [1]\n") == [
        "preferences.proxy: expected a string, got a list (line 9)"]
    ok = load_config(BASE.replace("    model: [gpt-4o]\n", "    model: [gpt-4o]\n    preferences:\n"
                                  "      proxy: socks5://u:p@127.0.0.1:1080\n")
                     + "preferences:\n  proxy: ''\n")
    assert not ok.warnings
    assert ok.config.providers[0].preferences.proxy == "socks5://u:p@127.0.0.1:1080"


def test_yaml_errors_keep_pyyamls_tokens_and_hide_the_users_text():
    """A YAML error quotes PyYAML's own tokens (kept: they say what was expected) and
    sometimes the user's text, which may be a secret (hidden). The pieces are read left to
    right, so the text between two tokens is never taken for a quote (found by fuzz_config)."""
    with pytest.raises(ConfigError) as caught:
        load_config("providers: [[a] b]")
    assert "expected ',' or ']', but got '<scalar>' (line 1)" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load_config("a: *sk-secret-alias")
    assert "sk-secret" not in str(caught.value) and "'…'" in str(caught.value)
