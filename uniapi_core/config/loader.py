"""api.yaml text → ``Config``, with every mistake reported by YAML path and line.

Theory of operation
-------------------
1. ``yaml.compose`` builds the node tree, which keeps a line mark on every node (a syntax
   error becomes one problem with its line). Alias expansion is bounded (``MAX_NODES``), so a
   "billion laughs" document is refused instead of eating memory.
2. A validating walk over the nodes checks each known key against its expected shape and
   normalises it (``api`` string-or-list → tuple, ``model`` items → ``ModelEntry``, rate
   limits parsed, ``model_timeout`` number-or-map → map…). Each problem is recorded as
   ``path: message (line N)`` and the walk goes on, so one run lists every problem. Unknown
   keys are warnings; keys today's uni-api knows but uniapi does not act on are kept in
   ``extra`` with a warning.
3. The cleaned plain data is structured into the frozen attrs classes with cattrs.

Messages never contain configured *values* (they may be secrets), only types and key names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import attrs
import cattrs
import yaml

from ..errors import ConfigError
from .model import (
    ApiKey,
    Config,
    GlobalPreferences,
    ModelEntry,
    ModelRule,
    Provider,
    RateLimit,
)
from .rates import parse_rate_limit

__all__ = ["Loaded", "load_config", "MAX_NODES", "ENGINE_NAMES", "SCHEDULING", "KEY_SCHEDULING"]

MAX_NODES = 100_000
ENGINE_NAMES = ("gpt", "openai", "claude", "anthropic", "gemini", "vertex", "vertex-gemini",
                "vertex-claude", "azure", "aws", "bedrock", "cloudflare", "cohere", "openrouter")
SCHEDULING = ("fixed_priority", "round_robin", "weighted_round_robin", "lottery", "random")
KEY_SCHEDULING = ("round_robin", "random", "fixed_priority")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")

_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_STR = "tag:yaml.org,2002:str"


@attrs.frozen
class Loaded:
    config: Config
    warnings: tuple[str, ...]


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return {_INT: "a number", _FLOAT: "a number", _BOOL: "a boolean", _NULL: "nothing",
            _STR: "a string"}.get(node.tag, "a scalar")


class _Walk:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self._scalars = yaml.constructor.SafeConstructor()

    # -- reporting ----------------------------------------------------------------------------

    def problem(self, path: str, node: yaml.Node, message: str) -> None:
        self.problems.append(f"{path}: {message} (line {node.start_mark.line + 1})")

    def warn(self, path: str, node: yaml.Node, message: str) -> None:
        self.warnings.append(f"{path}: {message} (line {node.start_mark.line + 1})")

    def expected(self, path: str, node: yaml.Node, what: str) -> None:
        self.problem(path, node, f"expected {what}, got {_kind(node)}")

    # -- scalars ------------------------------------------------------------------------------

    def value(self, node: yaml.Node) -> Any:
        return self._scalars.construct_object(node, deep=True)

    def string(self, path: str, node: yaml.Node, *, ints: bool = True) -> str | None:
        if isinstance(node, yaml.ScalarNode) and (node.tag == _STR or (
                ints and node.tag in (_INT, _FLOAT))):
            return str(node.value) if node.tag == _STR else str(self.value(node))
        self.expected(path, node, "a string")
        return None

    def boolean(self, path: str, node: yaml.Node) -> bool | None:
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _BOOL:
                return bool(self.value(node))
            if node.tag == _STR and node.value.lower() in ("true", "false"):
                return node.value.lower() == "true"
        self.expected(path, node, "true or false")
        return None

    def number(self, path: str, node: yaml.Node, *, positive: bool = False) -> float | None:
        if isinstance(node, yaml.ScalarNode) and node.tag in (_INT, _FLOAT):
            value = float(self.value(node))
            if value != value or value in (float("inf"), float("-inf")):
                self.problem(path, node, "expected a finite number")
                return None
            if value < 0 or (positive and value == 0):
                self.problem(path, node, "expected a positive number" if positive
                             else "expected a number ≥ 0")
                return None
            return value
        self.expected(path, node, "a number of seconds")
        return None

    def items(self, path: str, node: yaml.Node) -> list[tuple[str, yaml.Node, yaml.Node]]:
        """A mapping's (key, key node, value node); duplicate keys warn, the last wins."""
        if not isinstance(node, yaml.MappingNode):
            self.expected(path, node, "a mapping")
            return []
        out: dict[str, tuple[str, yaml.Node, yaml.Node]] = {}
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                self.problem(path, knode, "keys must be plain names")
                continue
            key = str(self.value(knode)) if knode.tag != _STR else knode.value
            if key in out:
                self.warn(f"{path}.{key}", knode, "duplicate key; the last one is used")
            out[key] = (key, knode, vnode)
        return list(out.values())

    def seq(self, path: str, node: yaml.Node, what: str) -> list[yaml.Node] | None:
        if isinstance(node, yaml.SequenceNode):
            return list(node.value)
        self.expected(path, node, what)
        return None

    def strings(self, path: str, node: yaml.Node, what: str) -> tuple[str, ...] | None:
        """A string or a list of strings."""
        if isinstance(node, yaml.ScalarNode) and node.tag in (_STR, _INT):
            return (str(self.value(node)),)
        if isinstance(node, yaml.SequenceNode):
            out = []
            for i, item in enumerate(node.value):
                if isinstance(item, yaml.ScalarNode) and item.tag in (_STR, _INT):
                    out.append(str(self.value(item)))
                else:
                    self.expected(f"{path}[{i}]", item, "a string")
            return tuple(out)
        self.expected(path, node, what)
        return None

    # -- sections -----------------------------------------------------------------------------

    def section(self, path: str, node: yaml.Node, fields: dict[str, Callable[..., Any]],
                extra: frozenset[str] = frozenset()) -> dict[str, Any]:
        out: dict[str, Any] = {}
        kept: list[tuple[str, Any]] = []
        for key, knode, vnode in self.items(path, node):
            sub = f"{path}.{key}"
            parse = fields.get(key)
            if parse is not None:
                if isinstance(vnode, yaml.ScalarNode) and vnode.tag == _NULL:
                    continue  # `key:` with nothing: the same as absent
                value = parse(sub, vnode)
                if value is not None:
                    out[key] = value
            elif key in extra:
                self.warn(sub, knode, "accepted for compatibility, not acted on by uniapi")
                kept.append((key, self.value(vnode)))
            else:
                self.warn(sub, knode, "unknown key, ignored")
        if kept:
            out["extra"] = tuple(kept)
        return out

    def rate_limit(self, path: str, node: yaml.Node) -> RateLimit | None:
        try:
            if isinstance(node, yaml.ScalarNode) and node.tag == _STR:
                return parse_rate_limit(node.value)
            if isinstance(node, yaml.MappingNode):
                table = {}
                for key, _, vnode in self.items(path, node):
                    text = self.string(f"{path}.{key}", vnode, ints=False)
                    if text is not None:
                        table[key] = text
                return parse_rate_limit(table)
        except ValueError as exc:
            self.problem(path, node, str(exc))
            return None
        self.expected(path, node, "a rate like \"15/min,1000/day\" or a map model → rate")
        return None

    def timeouts(self, path: str, node: yaml.Node) -> tuple[tuple[str, float], ...] | None:
        if isinstance(node, yaml.ScalarNode) and node.tag in (_INT, _FLOAT):
            value = self.number(path, node, positive=True)
            return None if value is None else (("default", value),)
        out = []
        for key, _, vnode in self.items(path, node):
            value = self.number(f"{path}.{key}", vnode, positive=True)
            if value is not None:
                out.append((key, value))
        return tuple(out)

    def choice(self, options: tuple[str, ...], aliases: dict[str, str] | None = None
               ) -> Callable[[str, yaml.Node], str | None]:
        def parse(path: str, node: yaml.Node) -> str | None:
            text = self.string(path, node, ints=False)
            if text is None:
                return None
            if aliases and text in aliases:
                self.warn(path, node, f"{text!r} is treated as {aliases[text]!r}")
                return aliases[text]
            if text not in options:
                self.problem(path, node, "expected one of " + ", ".join(options))
                return None
            return text
        return parse

    def headers(self, path: str, node: yaml.Node) -> tuple[tuple[str, str], ...] | None:
        out = []
        for key, knode, vnode in self.items(path, node):
            if not _HEADER_NAME.match(key):
                self.problem(f"{path}.{key}", knode, "not a valid HTTP header name")
                continue
            if not isinstance(vnode, yaml.ScalarNode) or vnode.tag == _NULL:
                self.expected(f"{path}.{key}", vnode, "a string")
                continue
            text = str(self.value(vnode))
            if text in ("True", "False") and vnode.tag == _BOOL:
                text = text.lower()
            if any(c in text for c in "\r\n\x00"):
                self.problem(f"{path}.{key}", vnode, "header values cannot contain line breaks")
                continue
            out.append((key, text))
        return tuple(out)

    def model_entries(self, path: str, node: yaml.Node) -> tuple[ModelEntry, ...] | None:
        items = self.seq(path, node, "a list of model names")
        if items is None:
            return None
        out = []
        for i, item in enumerate(items):
            sub = f"{path}[{i}]"
            if isinstance(item, yaml.MappingNode):
                pairs = self.items(sub, item)
                if len(pairs) != 1:
                    self.problem(sub, item, "a rename is one `upstream-name: alias` pair")
                    continue
                upstream, _, vnode = pairs[0]
                alias = self.string(sub, vnode)
                if alias is not None:
                    out.append(ModelEntry(upstream=upstream, alias=alias))
            else:
                name = self.string(sub, item)
                if name is not None:
                    out.append(ModelEntry(upstream=name, alias=name))
        return tuple(out)

    def model_rules(self, path: str, node: yaml.Node) -> tuple[ModelRule, ...] | None:
        items = self.seq(path, node, "a list of model rules")
        if items is None:
            return None
        out = []
        for i, item in enumerate(items):
            sub = f"{path}[{i}]"
            if isinstance(item, yaml.MappingNode):
                pairs = self.items(sub, item)
                if len(pairs) != 1:
                    self.problem(sub, item, "a weighted rule is one `rule: weight` pair")
                    continue
                rule, _, wnode = pairs[0]
                weight = self.value(wnode) if isinstance(wnode, yaml.ScalarNode) else None
                if wnode.tag != _INT or not isinstance(weight, int) or weight < 1:
                    self.problem(sub, wnode, "a weight must be a positive whole number")
                    continue
                out.append(ModelRule(rule=rule, weight=weight))
            else:
                rule = self.string(sub, item)
                if rule is not None:
                    out.append(ModelRule(rule=rule))
        return tuple(out)

    def weights(self, path: str, node: yaml.Node) -> tuple[tuple[str, int], ...] | None:
        out = []
        for key, _, vnode in self.items(path, node):
            value = self.value(vnode) if isinstance(vnode, yaml.ScalarNode) else None
            if vnode.tag != _INT or not isinstance(value, int) or value < 1:
                self.problem(f"{path}.{key}", vnode, "a weight must be a positive whole number")
                continue
            out.append((key, value))
        return tuple(out)

    def auto_retry(self, path: str, node: yaml.Node) -> bool | int | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == _INT:
            value = self.value(node)
            if value >= 0:
                return int(value)
        elif isinstance(node, yaml.ScalarNode) and (node.tag == _BOOL or node.value.lower() in (
                "true", "false")):
            return self.boolean(path, node)
        self.expected(path, node, "true, false or a number of retries ≥ 0")
        return None


_PROVIDER_EXTRA = frozenset({
    "api_key_rate_limit_cooldown_period", "api_key_quota_cooldown_period", "keepalive_interval",
    "timeout_policy", "passthrough_request_headers", "post_body_parameter_overrides",
    "exclude_endpoints", "only_request_types", "exclude_request_types", "exclude_request_rules",
    "max_request_body_bytes", "responses_stream_commit_policy", "search_defaults"})
_PROVIDER_TOP_EXTRA = frozenset({"region", "exclude_endpoints", "only_request_types",
                                 "exclude_request_types", "exclude_request_rules",
                                 "max_request_body_bytes"})
_KEY_EXTRA = frozenset({"credits", "created_at"})
_GLOBAL_EXTRA = frozenset({"keepalive_interval", "model_price", "timeout_policy", "hedging"})


def _provider(w: _Walk, path: str, node: yaml.Node) -> dict[str, Any] | None:
    def prefs(p: str, n: yaml.Node) -> dict[str, Any]:
        return w.section(p, n, {
            "api_key_rate_limit": w.rate_limit,
            "api_key_cooldown_period": w.number,
            "api_key_schedule_algorithm": w.choice(KEY_SCHEDULING,
                                                   {"smart_round_robin": "round_robin"}),
            "model_timeout": w.timeouts,
            "cooldown_period": w.number,
            "proxy": lambda p2, n2: w.string(p2, n2, ints=False),
            "headers": w.headers,
        }, _PROVIDER_EXTRA)

    def engine(p: str, n: yaml.Node) -> str | None:
        text = w.string(p, n, ints=False)
        if text is not None and text.lower() not in ENGINE_NAMES:
            w.problem(p, n, "expected one of " + ", ".join(ENGINE_NAMES))
            return None
        return None if text is None else text.lower()

    def models(p: str, n: yaml.Node) -> tuple[ModelEntry, ...] | None:
        got = w.model_entries(p, n)
        if got == ():
            w.warn(p, n, "empty list: the models will be discovered from the upstream")
            return None
        return got

    text = lambda p, n: w.string(p, n, ints=False)  # noqa: E731
    data = w.section(path, node, {
        "provider": lambda p, n: w.string(p, n),
        "base_url": text,
        "api": lambda p, n: w.strings(p, n, "a string or a list of strings"),
        "model": models,
        "engine": engine,
        "tools": w.boolean,
        "image": w.boolean,
        "notes": lambda p, n: w.value(n),
        "project_id": text, "private_key": text, "client_email": text, "token_uri": text,
        "regions": lambda p, n: w.strings(p, n, "a region or a list of regions"),
        "cf_account_id": text, "aws_access_key": text, "aws_secret_key": text,
        "aws_session_token": text, "aws_region": text,
        "preferences": prefs,
    }, _PROVIDER_TOP_EXTRA)
    if isinstance(node, yaml.MappingNode) and "provider" not in data and not any(
            p.startswith(f"{path}.provider:") for p in w.problems):
        w.problem(path, node, "`provider` (the channel's name) is required")
        return None
    if "provider" in data and "/" in data["provider"]:
        w.problem(f"{path}.provider", node, "a provider name cannot contain '/'")
    data.pop("extra", None)  # top-level compatibility keys are only warned about
    return data


def _api_key(w: _Walk, path: str, node: yaml.Node) -> dict[str, Any] | None:
    def prefs(p: str, n: yaml.Node) -> dict[str, Any]:
        got = w.section(p, n, {
            "SCHEDULING_ALGORITHM": w.choice(SCHEDULING,
                                             {"smart_round_robin": "weighted_round_robin"}),
            "AUTO_RETRY": w.auto_retry,
            "rate_limit": w.rate_limit,
            "RATE_LIMIT": w.rate_limit,
            "ENABLE_MODERATION": w.boolean,
        }, _KEY_EXTRA)
        upper = got.pop("RATE_LIMIT", None)
        if upper is not None:
            if "rate_limit" in got:
                w.warn(f"{p}.RATE_LIMIT", n, "both rate_limit and RATE_LIMIT: rate_limit is used")
            else:
                got["rate_limit"] = upper
        return got

    def models(p: str, n: yaml.Node) -> tuple[ModelRule, ...] | None:
        got = w.model_rules(p, n)
        return got or None  # empty = everything, as uni-api

    data = w.section(path, node, {
        "api": lambda p, n: w.string(p, n),
        "model": models,
        "role": lambda p, n: w.string(p, n),
        "weights": w.weights,
        "preferences": prefs,
    })
    if isinstance(node, yaml.MappingNode) and "api" not in data and not any(
            p.startswith(f"{path}.api:") for p in w.problems):
        w.problem(path, node, "`api` (the client key) is required")
        return None
    return data


def _global(w: _Walk, path: str, node: yaml.Node) -> dict[str, Any]:
    return w.section(path, node, {
        "model_timeout": w.timeouts,
        "cooldown_period": w.number,
        "error_triggers": lambda p, n: w.strings(p, n, "a list of strings"),
        "proxy": lambda p, n: w.string(p, n, ints=False),
        "rate_limit": w.rate_limit,
    }, _GLOBAL_EXTRA)


def _count_nodes(root: yaml.Node) -> bool:
    """False when expanding aliases would visit more than ``MAX_NODES`` nodes."""
    seen = 0
    stack = [root]
    while stack:
        node = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            return False
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                stack.append(k)
                stack.append(v)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return True


def _converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    # values arrive already shaped; these hooks only pass the prepared objects through
    for cls in (ModelEntry, ModelRule, RateLimit):
        conv.register_structure_hook(cls, lambda v, _t: v)
    conv.register_structure_hook(Any, lambda v, _t: v)
    conv.register_structure_hook(bool | int | None, lambda v, _t: v)
    return conv


_CONVERTER = _converter()


def load_config(text: str, source: str = "api.yaml") -> Loaded:
    """Parse and validate api.yaml text; raises ``ConfigError`` listing every problem."""
    w = _Walk(source)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError([f"{source}: {exc.problem or exc.context or 'invalid YAML'}{line}"]
                          ) from None
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        raise ConfigError([f"{source}: invalid YAML ({type(exc).__name__})"]) from None
    if root is None:
        raise ConfigError([f"{source}: the file is empty; it needs `providers` and `api_keys`"])
    if not _count_nodes(root):
        raise ConfigError([f"{source}: the document expands to more than {MAX_NODES} nodes"])
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError([f"{source}: expected a mapping with `providers` and `api_keys`, "
                           f"got {_kind(root)} (line {root.start_mark.line + 1})"])
    providers: list[dict[str, Any]] = []
    keys: list[dict[str, Any]] = []
    prefs: dict[str, Any] = {}
    seen_top: set[str] = set()
    for key, knode, vnode in w.items("api.yaml", root):
        seen_top.add(key)
        if key == "providers":
            for i, item in enumerate(w.seq("providers", vnode, "a list of providers") or []):
                got = _provider(w, f"providers[{i}]", item)
                if got is not None:
                    got["line"] = item.start_mark.line + 1
                    providers.append(got)
        elif key == "api_keys":
            for i, item in enumerate(w.seq("api_keys", vnode, "a list of api keys") or []):
                got = _api_key(w, f"api_keys[{i}]", item)
                if got is not None:
                    got["line"] = item.start_mark.line + 1
                    keys.append(got)
            if isinstance(vnode, yaml.SequenceNode) and not vnode.value:
                w.problem("api_keys", vnode, "at least one key is required")
        elif key == "preferences":
            prefs = _global(w, "preferences", vnode)
        else:
            w.warn(key, knode, "unknown key, ignored")
    for required in ("providers", "api_keys"):
        if required not in seen_top:
            w.problems.append(f"{required}: required (line 1)")
    _unique(w, providers, "provider", "providers", "provider name")
    _unique(w, keys, "api", "api_keys", "api key")
    _key_cycles(w, keys, {p.get("provider") for p in providers})
    if w.problems:
        raise ConfigError(w.problems)
    try:
        config = Config(
            providers=tuple(_CONVERTER.structure(p, Provider) for p in providers),
            api_keys=tuple(_CONVERTER.structure(k, ApiKey) for k in keys),
            preferences=_CONVERTER.structure(prefs, GlobalPreferences))
    except (cattrs.BaseValidationError, TypeError, ValueError) as exc:  # a loader bug
        raise ConfigError([f"{source}: internal error while building the config: "
                           f"{type(exc).__name__}"]) from None
    return Loaded(config, tuple(w.warnings))


def _key_cycles(w: _Walk, keys: list[dict[str, Any]], provider_names: set[Any]) -> None:
    """Refuse api keys that reach themselves through ``other-key/…`` rules."""
    index = {k.get("api"): i for i, k in enumerate(keys)}
    edges: dict[int, list[int]] = {}
    for i, k in enumerate(keys):
        for rule in k.get("model") or ():
            head, slash, _ = rule.rule.partition("/")
            if slash and head in index and head not in provider_names:
                edges.setdefault(i, []).append(index[head])
    state: dict[int, int] = {}  # 1 = on the current path, 2 = done

    def visit(i: int) -> bool:
        state[i] = 1
        for j in edges.get(i, ()):
            if state.get(j) == 1 or (j not in state and visit(j)):
                return True
        state[i] = 2
        return False

    for i in range(len(keys)):
        if i not in state and visit(i):
            w.problems.append(f"api_keys[{i}].model: uses another api key as a channel in a "
                              f"cycle that leads back to itself (line {keys[i]['line']})")
            return


def _unique(w: _Walk, items: list[dict[str, Any]], field: str, path: str, what: str) -> None:
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        value = item.get(field)
        if value is None:
            continue
        if value in first:
            w.problems.append(f"{path}: duplicate {what} (lines {items[first[value]]['line']} "
                              f"and {item['line']})")
        else:
            first[value] = i
