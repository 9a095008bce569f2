"""api.yaml text → ``Config``, with every mistake reported by YAML path and line.

Theory of operation
-------------------
1. ``yaml.compose`` (safe resolver) builds the node tree; every node carries its line. A syntax
   error becomes one problem ``api.yaml: <problem> (line N)``. Before anything else the tree is
   walked with aliases expanded, and a document of more than ``MAX_NODES`` nodes (a "billion
   laughs" alias bomb, a self-referencing anchor) is refused.
2. A validating walk over the nodes checks each known key against its expected shape. Problems
   are recorded as ``path: message (line N)`` and the walk goes on, so one run lists every
   problem; unknown keys are warnings, and keys today's uni-api knows but uniapi does not act on
   are kept in ``extra`` with a warning. The walk hands on plain data that still has the YAML's
   union shapes (``api`` a string or a list, a rate limit a string or a map, ...).
3. A cattrs ``Converter`` structures that data into the frozen attrs classes of ``model.py``;
   its structure hooks normalise each union shape to the one shape the model holds.

Messages never contain configured *values* (they may be secrets): only types, key names and
lines. ``load_config`` raises nothing but ``ConfigError``, whatever the text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import cattrs
import yaml

from ..errors import ConfigError, UniapiError
from ..pemkey import load_private_key
from ..proxyurl import parse_proxy
from .model import Config, ModelEntry, ModelRule, RateLimit
from .rates import parse_rate_limit, parse_rate_rules

__all__ = ["Loaded", "load_config", "MAX_NODES", "ENGINES", "SCHEDULING_ALGORITHMS",
           "KEY_SCHEDULE_ALGORITHMS", "DIALECTS"]

#: the most nodes a document may have once its aliases are expanded
MAX_NODES = 100_000
#: accepted values of ``providers[].engine`` (stored lower-cased)
ENGINES = ("gpt", "openai", "claude", "anthropic", "gemini", "vertex", "vertex-gemini",
           "vertex-claude", "azure", "aws", "bedrock", "cloudflare", "cohere", "openrouter")
#: accepted values of ``api_keys[].preferences.SCHEDULING_ALGORITHM``
SCHEDULING_ALGORITHMS = ("fixed_priority", "round_robin", "weighted_round_robin", "lottery",
                         "random")
#: accepted values of ``providers[].preferences.api_key_schedule_algorithm``
KEY_SCHEDULE_ALGORITHMS = ("round_robin", "random", "fixed_priority")
#: accepted values of ``providers[].preferences.dialect``: the OpenAI-compatible dialects of
#: ``uniapi_core.vendors.dialects`` (a test keeps the two lists equal)
DIALECTS = ("openai", "azure", "deepseek", "xai", "groq", "mistral", "openrouter", "together",
            "fireworks", "cerebras", "siliconflow", "ollama", "vllm", "lmstudio", "generic")


@attrs.frozen
class Loaded:
    """A usable configuration and the warnings (``path: message (line N)``) met on the way."""

    config: Config
    warnings: tuple[str, ...]


_T = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL, _MERGE = (_T + n for n in (
    "str", "int", "float", "bool", "null", "merge"))
_KINDS = {_STR: "a string", _INT: "a number", _FLOAT: "a number", _BOOL: "a boolean",
          _NULL: "nothing", _T + "timestamp": "a date"}
_DROP: Any = object()  # a reader's "nothing to keep" (a problem was recorded, or absent)
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")  # quoted text in a YAML error, left to right
_RATE = 'a rate like "15/min,1000/day"'

_Reader = Callable[["_Walk", str, yaml.Node], Any]


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return _KINDS.get(node.tag, "a tagged value")


def _is(node: yaml.Node, *tags: str) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag in tags


def _sub(path: str, key: str) -> str:
    """``path.key``; keys that would garble a message are quoted and shortened."""
    if 0 < len(key) <= 80 and key.isprintable() and not any(c.isspace() for c in key):
        return f"{path}.{key}" if path else key
    return f"{path}[{key[:40]!r}]"


class _Walk:
    """The state of one validating walk: the problems and warnings found so far."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def problem(self, path: str, node: yaml.Node, message: str) -> Any:
        self.problems.append(f"{path or self.source}: {message} (line {_line(node)})")
        return _DROP

    def warn(self, path: str, node: yaml.Node, message: str) -> None:
        self.warnings.append(f"{path or self.source}: {message} (line {_line(node)})")

    def expected(self, path: str, node: yaml.Node, what: str) -> Any:
        return self.problem(path, node, f"expected {what}, got {_kind(node)}")

    def mapping(self, path: str, node: yaml.Node) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
        """A mapping's key → (key node, value node), ``<<`` merges applied, the last key wins."""
        if not isinstance(node, yaml.MappingNode):
            self.expected(path, node, "a mapping")
            return None
        merged: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        own: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for knode, vnode in node.value:
            if _is(knode, _MERGE):
                for src in vnode.value if isinstance(vnode, yaml.SequenceNode) else [vnode]:
                    for key, pair in (self.mapping(path, src) or {}).items():
                        merged.setdefault(key, pair)
            elif not isinstance(knode, yaml.ScalarNode):
                self.problem(path, knode, f"expected a plain key, got {_kind(knode)}")
            else:
                if knode.value in own:
                    first = _line(own[knode.value][0])
                    self.warn(path, knode, f"duplicate key (first at line {first}), the last one "
                              "is used")
                own[knode.value] = (knode, vnode)
        return {**merged, **own}


def _scalar(node: yaml.Node) -> Any:
    """The Python value of a resolved scalar, or ``_DROP`` if YAML cannot build it."""
    try:
        return yaml.constructor.SafeConstructor().construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError):
        return _DROP


# -- readers: (walk, path, node) -> plain value or _DROP -------------------------------------


def _text(w: _Walk, path: str, node: yaml.Node) -> Any:
    return node.value if _is(node, _STR) else w.expected(path, node, "a string")


def _proxy(w: _Walk, path: str, node: yaml.Node) -> Any:
    """``http://``, ``socks5://`` or ``socks5h://`` with optional credentials; ``""`` = none.
    One that cannot be used is a warning, not an error: uni-api's own example config ships a
    placeholder (``socks5://[username]:[password]@[ip]:[port]``) and must load; requests
    through it fail as connect failures. The warning never quotes the URL (passwords)."""
    if not _is(node, _STR):
        return w.expected(path, node, "a string")
    if node.value.strip():
        try:
            parse_proxy(node.value)
        except ValueError as exc:
            w.warn(path, node, f"not a usable proxy URL ({exc}); requests that would use it "
                               f"fail until it is fixed")
    return node.value


def _name(w: _Walk, path: str, node: yaml.Node, what: str = "a string") -> Any:
    """A string; a whole number is taken as written (uni-api turns ints into strings)."""
    return node.value if _is(node, _STR, _INT) else w.expected(path, node, what)


def _strings(what: str) -> _Reader:
    def read(w: _Walk, path: str, node: yaml.Node) -> Any:
        if isinstance(node, yaml.SequenceNode):
            items = [_name(w, f"{path}[{i}]", item) for i, item in enumerate(node.value)]
            return _DROP if any(x is _DROP for x in items) else items
        return _name(w, path, node, what)
    return read


def _bool(w: _Walk, path: str, node: yaml.Node) -> Any:
    if _is(node, _BOOL):
        return _scalar(node)
    if _is(node, _STR) and node.value.lower() in ("true", "false"):
        return node.value  # the bool hook reads it
    return w.expected(path, node, "true or false")


def _seconds(w: _Walk, path: str, node: yaml.Node, positive: bool = False) -> Any:
    what = "a positive number" if positive else "a number ≥ 0"
    if not _is(node, _INT, _FLOAT):
        return w.expected(path, node, what)
    try:
        value = float(_scalar(node))
    except (TypeError, OverflowError):  # unreadable, or an int beyond any float
        value = math.inf
    if not math.isfinite(value):
        return w.problem(path, node, "expected a finite number")
    if value < 0 or (positive and value == 0):
        return w.problem(path, node, f"expected {what}")
    return value


def _positive(w: _Walk, path: str, node: yaml.Node) -> Any:
    return _seconds(w, path, node, positive=True)


def _choice(options: tuple[str, ...], alias: str | None = None) -> _Reader:
    """One of ``options`` (any case, stored lower-cased); ``smart_round_robin`` → ``alias``."""
    what = "one of " + ", ".join(options)

    def read(w: _Walk, path: str, node: yaml.Node) -> Any:
        if not _is(node, _STR):
            return w.expected(path, node, what)
        value = node.value.lower()
        if alias is not None and value == "smart_round_robin":
            w.warn(path, node, f"smart_round_robin is treated as {alias}")
            return alias
        return value if value in options else w.problem(path, node, f"expected {what}")
    return read


def _any(w: _Walk, path: str, node: yaml.Node) -> Any:
    value = _scalar(node)
    if value is _DROP:
        w.warn(path, node, "cannot be read, ignored")
    return value


def _one_pair(w: _Walk, path: str, node: yaml.MappingNode, what: str) -> Any:
    pairs = w.mapping(path, node) or {}
    if len(pairs) != 1:
        return w.problem(path, node, f"expected {what}, got a mapping with {len(pairs)} keys")
    ((key, (_, vnode)),) = pairs.items()
    return key, vnode


def _model_entries(w: _Walk, path: str, node: yaml.Node) -> Any:
    if not isinstance(node, yaml.SequenceNode):
        return w.expected(path, node, "a list of model names")
    if not node.value:
        w.warn(path, node, "empty list, the models will be discovered from the upstream")
        return _DROP
    what = "a model name or one `upstream: alias` pair"
    out: list[Any] = []
    for i, item in enumerate(node.value):
        sub = f"{path}[{i}]"
        if isinstance(item, yaml.MappingNode):
            pair = _one_pair(w, sub, item, what)
            if pair is not _DROP:
                alias = _name(w, sub, pair[1], "a string as the alias")
                out.append({pair[0]: alias})
        else:
            out.append(_name(w, sub, item, what))
    return out


def _weight(w: _Walk, path: str, node: yaml.Node) -> Any:
    value = _scalar(node) if _is(node, _INT) else _DROP
    if value is _DROP or value < 1:
        got = "" if _is(node, _INT) else f", got {_kind(node)}"
        return w.problem(path, node, f"a weight must be a positive whole number{got}")
    return value


def _model_rules(w: _Walk, path: str, node: yaml.Node) -> Any:
    if not isinstance(node, yaml.SequenceNode):
        return w.expected(path, node, "a list of model rules")
    if not node.value:
        w.warn(path, node, "empty list, this key may call every model")
        return _DROP
    out: list[Any] = []
    for i, item in enumerate(node.value):
        sub = f"{path}[{i}]"
        if isinstance(item, yaml.MappingNode):
            pair = _one_pair(w, sub, item, "a model rule or one `rule: weight` pair")
            if pair is not _DROP:
                out.append({pair[0]: _weight(w, sub, pair[1])})
        else:
            out.append(_name(w, sub, item, "a model rule or one `rule: weight` pair"))
    return out


def _weights(w: _Walk, path: str, node: yaml.Node) -> Any:
    # the keys are rules that may name another api key: report by line only
    pairs = w.mapping(path, node) or {}
    return {key: _weight(w, path, vnode) for key, (_, vnode) in pairs.items()}


def _rate_limit(w: _Walk, path: str, node: yaml.Node) -> Any:
    def check(sub: str, vnode: yaml.Node, what: str) -> Any:
        if not _is(vnode, _STR):
            return w.expected(sub, vnode, what)
        try:
            parse_rate_rules(vnode.value)
        except ValueError as exc:
            return w.problem(sub, vnode, str(exc))
        return vnode.value

    if isinstance(node, yaml.MappingNode):
        return {key: check(_sub(path, key), vnode, _RATE)
                for key, (_, vnode) in (w.mapping(path, node) or {}).items()}
    return check(path, node, f"{_RATE} or a map model → rate")


def _timeouts(w: _Walk, path: str, node: yaml.Node) -> Any:
    if _is(node, _INT, _FLOAT):
        return _positive(w, path, node)
    if not isinstance(node, yaml.MappingNode):
        return w.expected(path, node, "a number of seconds or a map model → seconds")
    return {key: _positive(w, _sub(path, key), vnode)
            for key, (_, vnode) in (w.mapping(path, node) or {}).items()}


def _headers(w: _Walk, path: str, node: yaml.Node) -> Any:
    out = {}
    for key, (knode, vnode) in (w.mapping(path, node) or {}).items():
        sub = _sub(path, key)
        if not _HEADER_NAME.fullmatch(key):
            w.problem(sub, knode, "not a valid HTTP header name")
        elif not _is(vnode, _STR, _INT, _FLOAT, _BOOL):
            w.expected(sub, vnode, "a string")
        elif any(c in vnode.value for c in "\r\n\0"):
            w.problem(sub, vnode, "a header value cannot contain line breaks")
        else:
            out[key] = vnode.value  # numbers and booleans as written
    return out


def _auto_retry(w: _Walk, path: str, node: yaml.Node) -> Any:
    what = "true, false or a number of retries ≥ 0"
    if _is(node, _INT):
        value = _scalar(node)
        return w.problem(path, node, f"expected {what}") if value is _DROP or value < 0 else value
    if _is(node, _BOOL) or (_is(node, _STR) and node.value.lower() in ("true", "false")):
        return _bool(w, path, node)
    return w.expected(path, node, what)


def _section(w: _Walk, path: str, node: yaml.Node, fields: Mapping[str, _Reader],
             compat: frozenset[str] = frozenset(), required: tuple[str, ...] = ()) -> Any:
    """Read a mapping by ``fields``; a null value counts as absent. ``compat`` keys → extra."""
    pairs = w.mapping(path, node)
    if pairs is None:
        return _DROP
    out: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, (knode, vnode) in pairs.items():
        sub = _sub(path, key)
        read = fields.get(key)
        if read is not None and not _is(vnode, _NULL):
            out[key] = read(w, sub, vnode)
        elif key in compat:
            w.warn(sub, knode, "accepted for compatibility, not acted on")
            value = _any(w, sub, vnode)
            if value is not _DROP:
                extra[key] = value
        elif read is None:
            w.warn(sub, knode, "unknown key, ignored")
    for key in required:
        if key not in out:
            w.problem(_sub(path, key), node, "required")
    out = {k: v for k, v in out.items() if v is not _DROP}
    if extra:
        out["extra"] = extra
    return out


_PROVIDER_PREFS = {
    "api_key_rate_limit": _rate_limit, "api_key_cooldown_period": _seconds,
    "api_key_schedule_algorithm": _choice(KEY_SCHEDULE_ALGORITHMS, alias="round_robin"),
    "model_timeout": _timeouts, "cooldown_period": _seconds, "proxy": _proxy, "headers": _headers,
    "dialect": _choice(DIALECTS), "think_tags": _bool, "stream_usage": _bool,
    "structured_output": _choice(("native", "tool")),
}
_ROUTING_COMPAT = frozenset({"exclude_endpoints", "only_request_types", "exclude_request_types",
                             "exclude_request_rules", "max_request_body_bytes"})
_PROVIDER_PREFS_COMPAT = _ROUTING_COMPAT | {
    "api_key_rate_limit_cooldown_period", "api_key_quota_cooldown_period", "keepalive_interval",
    "timeout_policy", "passthrough_request_headers", "post_body_parameter_overrides",
    "responses_stream_commit_policy", "search_defaults", "oaix_routing_attempt_id", "access_key",
    "secret_key"}


def _provider_name(w: _Walk, path: str, node: yaml.Node) -> Any:
    name = _name(w, path, node)
    if name is not _DROP and "/" in name:
        return w.problem(path, node, "a provider name cannot contain '/'")
    return name


_PROVIDER = {
    "provider": _provider_name, "base_url": _text,
    "api": _strings("a string or a list of strings"), "model": _model_entries,
    "engine": _choice(ENGINES), "tools": _bool, "image": _bool, "notes": _any,
    "project_id": _text, "private_key": _text, "client_email": _text, "token_uri": _text,
    "regions": _strings("a string or a list of strings"), "region": _text,
    "cf_account_id": _text, "aws_access_key": _text, "aws_secret_key": _text,
    "aws_session_token": _text, "aws_region": _text,
    "preferences": lambda w, p, n: _section(w, p, n, _PROVIDER_PREFS, _PROVIDER_PREFS_COMPAT),
}


def _check_private_key(w: _Walk, path: str, node: yaml.Node, pem: str) -> None:
    """A Vertex ``private_key`` that does not load is a warning now, not a surprise at the
    first request (uni-api's own example config carries a placeholder, so it stays loadable)."""
    try:
        load_private_key(pem)
    except UniapiError as exc:
        key_node = next((v for k, v in node.value if k.value == "private_key"), node)
        w.warn(_sub(path, "private_key"), key_node,
               f"{exc.message}; requests to this provider will fail with 500 until it is fixed")


def _provider(w: _Walk, path: str, node: yaml.Node) -> Any:
    data = _section(w, path, node, _PROVIDER, _ROUTING_COMPAT, required=("provider",))
    if data is _DROP:
        return None
    if isinstance(data.get("private_key"), str):
        _check_private_key(w, path, node, data["private_key"])
    region = data.pop("region", None)  # today's uni-api: one Vertex region
    if region is not None:
        data.setdefault("regions", region)
    if "extra" in data:  # routing keys also allowed beside `preferences`: kept there too
        kept = data.setdefault("preferences", {}).setdefault("extra", {})
        for key, value in data.pop("extra").items():
            kept.setdefault(key, value)
    return {**data, "line": _line(node)}


def _key_prefs(w: _Walk, path: str, node: yaml.Node) -> Any:
    fields = {"SCHEDULING_ALGORITHM": _choice(SCHEDULING_ALGORITHMS, "weighted_round_robin"),
              "AUTO_RETRY": _auto_retry, "rate_limit": _rate_limit, "RATE_LIMIT": _rate_limit,
              "ENABLE_MODERATION": _bool}
    data = _section(w, path, node, fields, frozenset({"credits", "created_at"}))
    if data is not _DROP and "RATE_LIMIT" in data:
        upper = data.pop("RATE_LIMIT")
        if "rate_limit" in data:
            at = next((k for k, _ in node.value if _is(k, _STR) and k.value == "RATE_LIMIT"), node)
            w.warn(_sub(path, "RATE_LIMIT"), at, "ignored, rate_limit is also given and wins")
        else:
            data["rate_limit"] = upper
    return data


_API_KEY = {"api": _name, "model": _model_rules, "role": _name, "weights": _weights,
            "preferences": _key_prefs}


def _api_key(w: _Walk, path: str, node: yaml.Node) -> Any:
    data = _section(w, path, node, _API_KEY, required=("api",))
    return None if data is _DROP else {**data, "line": _line(node)}


def _items(read: Callable[[_Walk, str, yaml.Node], Any], what: str, at_least_one: bool = False
           ) -> _Reader:
    def read_list(w: _Walk, path: str, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.SequenceNode):
            return w.expected(path, node, what)
        if at_least_one and not node.value:
            return w.problem(path, node, "at least one key is required")
        return [read(w, f"{path}[{i}]", item) for i, item in enumerate(node.value)]
    return read_list


_GLOBAL_PREFS = {"model_timeout": _timeouts, "cooldown_period": _seconds,
                 "error_triggers": _strings("a list of strings"), "proxy": _proxy,
                 "rate_limit": _rate_limit, "metrics_public": _bool,
                 "responses_ttl": _positive, "redis_timeout": _positive}
_TOP = {
    "providers": _items(_provider, "a list of providers"),
    "api_keys": _items(_api_key, "a list of api keys", at_least_one=True),
    "preferences": lambda w, p, n: _section(w, p, n, _GLOBAL_PREFS, frozenset({
        "keepalive_interval", "model_price", "timeout_policy", "hedging"})),
}


# -- whole-file checks ------------------------------------------------------------------------


def _check_unique(w: _Walk, items: list[Any], field: str, path: str, what: str) -> None:
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        if item is None or field not in item:
            continue
        j = first.setdefault(item[field], i)
        if j != i:
            w.problems.append(f"{path}[{i}].{field}: duplicate {what}, already used by "
                              f"{path}[{j}] at line {items[j]['line']} (line {item['line']})")


def _check_cycles(w: _Walk, keys: list[Any], providers: set[str]) -> None:
    """Refuse api keys that reach themselves through ``other-key/...`` rules."""
    index: dict[str, int] = {}
    for i, k in enumerate(keys):
        if k is not None and "api" in k:
            index.setdefault(k["api"], i)
    edges: list[list[int]] = []
    for k in keys:
        targets = []
        for r in (k or {}).get("model") or ():
            rule = r if isinstance(r, str) else next(iter(r), "") if isinstance(r, dict) else ""
            head, slash, _ = rule.partition("/")
            literal = rule.startswith("<") and rule.endswith(">") and len(rule) > 2
            if slash and not literal and head not in providers and head in index:
                targets.append(index[head])
        edges.append(targets)
    state = [0] * len(keys)  # 0 new, 1 on the current path, 2 done
    for start in range(len(keys)):
        if state[start]:
            continue
        state[start] = 1
        stack = [(start, iter(edges[start]))]
        while stack:
            at, todo = stack[-1]
            for target in todo:
                if state[target] == 1:
                    w.problems.append(f"api_keys[{at}].model: using api_keys[{target}] as a "
                                      f"channel makes a cycle (line {keys[at]['line']})")
                elif state[target] == 0:
                    state[target] = 1
                    stack.append((target, iter(edges[target])))
                    break
            else:
                state[at] = 2
                stack.pop()


def _too_big(root: yaml.Node) -> bool:
    """True when expanding aliases would visit more than ``MAX_NODES`` nodes."""
    seen, stack = 0, [root]
    while stack:
        node = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            return True
        if isinstance(node, yaml.MappingNode):
            stack.extend(n for pair in node.value for n in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return False


# -- structuring ------------------------------------------------------------------------------


def _to_bool(value: Any, _t: Any = bool) -> bool:
    return value.lower() == "true" if isinstance(value, str) else bool(value)


def _pair_type(t: Any) -> Any:
    """``X`` when ``t`` is ``tuple[tuple[str, X], ...]`` (an ordered map), else ``None``."""
    args: tuple[Any, ...] = getattr(t, "__args__", ())
    if getattr(t, "__origin__", None) is tuple and len(args) == 2 and args[1] is Ellipsis:
        inner: tuple[Any, ...] = getattr(args[0], "__args__", ())
        if getattr(args[0], "__origin__", None) is tuple and len(inner) == 2 and inner[0] is str:
            return inner[1]
    return None


def _converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)

    def pairs(value: Any, t: Any) -> tuple[tuple[str, Any], ...]:
        x = _pair_type(t)
        return tuple((str(k), conv.structure(v, x)) for k, v in value.items())

    def timeouts(value: Any, t: Any) -> tuple[tuple[str, float], ...]:
        return pairs({"default": value} if isinstance(value, (int, float)) else value, t)

    def one(value: Any) -> tuple[str, Any]:
        return (value, value) if isinstance(value, str) else next(iter(value.items()))

    conv.register_structure_hook(bool, _to_bool)
    conv.register_structure_hook_func(
        lambda t: t == (bool | int | None),
        lambda v, _t: _to_bool(v) if isinstance(v, (str, bool)) else v)
    conv.register_structure_hook_func(
        lambda t: t == tuple[str, ...], lambda v, _t: (v,) if isinstance(v, str) else tuple(v))
    conv.register_structure_hook_func(lambda t: _pair_type(t) is not None, pairs)
    conv.register_structure_hook_func(lambda t: t == tuple[tuple[str, float], ...], timeouts)
    conv.register_structure_hook(ModelEntry, lambda v, _t: ModelEntry(
        upstream=one(v)[0], alias=one(v)[1]))
    conv.register_structure_hook(ModelRule, lambda v, _t: ModelRule(
        rule=v) if isinstance(v, str) else ModelRule(rule=one(v)[0], weight=one(v)[1]))
    conv.register_structure_hook(RateLimit, lambda v, _t: parse_rate_limit(v))
    return conv


#: configured once at import, never changed afterwards
_CONVERTER = _converter()


def _hide_quoted(match: re.Match[str]) -> str:
    """A quoted piece of a YAML error: the user's text (3 characters or more) hidden, as it
    may be a secret; PyYAML's own tokens (``','``, ``'<scalar>'``) kept."""
    inner = match.group()[1:-1]
    return match.group() if len(inner) < 3 or inner.startswith("<") else "'…'"


def _compose(text: str, source: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "invalid YAML"
        if exc.context and what.startswith("but "):  # "expected X" / "but found Y"
            what = f"{exc.context}, {what}"
        what = _QUOTED.sub(_hide_quoted, what)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError([f"{source}: {what}{at}"]) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        raise ConfigError([f"{source}: {exc.reason} (line {line})"]) from None
    except yaml.YAMLError:
        raise ConfigError([f"{source}: invalid YAML"]) from None
    except RecursionError:
        raise ConfigError([f"{source}: the document is nested too deeply"]) from None


def load_config(text: str, source: str = "api.yaml") -> Loaded:
    """Parse and check api.yaml ``text``; ``source`` names it in messages.

    Returns the frozen ``Config`` and the warnings. Raises ``ConfigError`` listing every
    problem found, and nothing else whatever the text.
    """
    root = _compose(text, source)
    if root is None:
        raise ConfigError([f"{source}: the file is empty; it needs `providers` and `api_keys`"])
    if _too_big(root):
        raise ConfigError([f"{source}: the document expands to more than {MAX_NODES} nodes"])
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError([f"{source}: expected a mapping with `providers` and `api_keys`, "
                           f"got {_kind(root)} (line {_line(root)})"])
    w = _Walk(source)
    try:
        top = _section(w, "", root, _TOP, frozenset({"video_providers"}),
                       required=("providers", "api_keys"))
        top.pop("extra", None)
        providers, keys = top.get("providers", []), top.get("api_keys", [])
        _check_unique(w, providers, "provider", "providers", "provider name")
        _check_unique(w, keys, "api", "api_keys", "api key")
        _check_cycles(w, keys, {p["provider"] for p in providers if p and "provider" in p})
        if w.problems:
            raise ConfigError(w.problems)
        return Loaded(_CONVERTER.structure(top, Config), tuple(w.warnings))
    except ConfigError:
        raise
    except RecursionError:
        raise ConfigError([f"{source}: the document is nested too deeply"]) from None
    except Exception as exc:  # a loader bug must still surface as a ConfigError
        raise ConfigError([f"{source}: internal error while reading the configuration "
                           f"({type(exc).__name__})"]) from None
