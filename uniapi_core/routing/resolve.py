"""From (api key, requested model) to the ordered list of candidate channels.

A *channel* is one provider serving one exposed model name. Each provider *exposes* names: a
bare ``model`` entry exposes itself, a rename ``upstream: alias`` exposes only the alias
(docs/routing.md §1 "Model resolution"). Providers without a ``model`` list expose what discovery
found (``Catalog.discovered``); until then they expose nothing.

An api key's ``model`` rules are read in their own order; each yields candidates:

- ``name``: every provider exposing ``name``, in ``providers:`` order;
- ``<literal/name>``: the same for the literal text between the brackets;
- ``prov/*``: provider ``prov`` if it exposes the model;
- ``prov/name``: provider ``prov`` if ``name`` is the model and ``prov`` exposes it;
- ``sk-other/*`` / ``sk-other/name`` where ``sk-other`` is another client key: that key's own
  candidates for the model, in place (resolved in-process; the loader refuses cycles);
- ``a/b`` where ``a`` names no provider or key: the literal name ``a/b`` (lenient; see
  docs/migrating-from-uni-api.md);
- no ``model`` list: every provider exposing the model.

Duplicates (a provider reached by two rules) keep their first place.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from ..config.model import ApiKey, Config, ModelEntry, Provider

__all__ = ["Channel", "Catalog", "resolve", "key_models"]


@attrs.frozen
class Channel:
    """One candidate: ``provider`` serves ``alias`` by sending ``upstream_model``."""

    provider: Provider
    upstream_model: str
    alias: str
    weight: int | None = None


class Catalog:
    """The names each provider exposes: alias -> upstream model, in file order."""

    def __init__(self, config: Config,
                 discovered: Mapping[str, tuple[ModelEntry, ...]] | None = None) -> None:
        self.config = config
        self.discovered = dict(discovered or {})
        self.providers: dict[str, Provider] = {p.provider: p for p in config.providers}
        self.keys: dict[str, ApiKey] = {k.api: k for k in config.api_keys}
        self._exposed: dict[str, dict[str, str]] = {}
        for p in config.providers:
            entries = p.model if p.model is not None else self.discovered.get(p.provider, ())
            table: dict[str, str] = {}
            for e in entries:
                table[e.alias] = e.upstream  # a later entry with the same alias wins
            self._exposed[p.provider] = table

    def exposed(self, provider: str) -> Mapping[str, str]:
        return self._exposed.get(provider, {})

    def offering(self, model: str) -> list[Channel]:
        """Every provider exposing ``model``, in ``providers:`` order."""
        out = []
        for p in self.config.providers:
            upstream = self._exposed[p.provider].get(model)
            if upstream is not None:
                out.append(Channel(p, upstream, model))
        return out

    def all_names(self) -> list[str]:
        names: dict[str, None] = {}
        for p in self.config.providers:
            for alias in self._exposed[p.provider]:
                names.setdefault(alias, None)
        return list(names)


#: how deep api-key-as-channel references may nest (the loader refuses cycles)
MAX_KEY_DEPTH = 8


def _rule_channels(catalog: Catalog, rule: str, model: str, depth: int = 0) -> list[Channel]:
    if rule.startswith("<") and rule.endswith(">") and len(rule) > 2:
        return catalog.offering(model) if rule[1:-1] == model else []
    prov, slash, name = rule.partition("/")
    if slash and prov in catalog.providers:
        if name != "*" and name != model:
            return []
        upstream = catalog.exposed(prov).get(model)
        return [Channel(catalog.providers[prov], upstream, model)] if upstream is not None else []
    if slash and prov in catalog.keys:
        if (name != "*" and name != model) or depth >= MAX_KEY_DEPTH:
            return []
        return _resolve(catalog, catalog.keys[prov], model, depth + 1)
    return catalog.offering(model) if rule == model else []


def resolve(catalog: Catalog, key: ApiKey, model: str) -> list[Channel]:
    """The candidate channels for ``model`` under ``key``, in priority order, no duplicates."""
    return _resolve(catalog, key, model, 0)


def _resolve(catalog: Catalog, key: ApiKey, model: str, depth: int) -> list[Channel]:
    if key.model is None:
        found = catalog.offering(model)
    else:
        found = []
        for r in key.model:
            found.extend(c if r.weight is None else attrs.evolve(c, weight=r.weight)
                         for c in _rule_channels(catalog, r.rule, model, depth))
    seen: set[tuple[str, str]] = set()
    out = []
    for c in found:
        ident = (c.provider.provider, c.upstream_model)
        if ident not in seen:
            seen.add(ident)
            out.append(c)
    return out


def key_models(catalog: Catalog, key: ApiKey, depth: int = 0) -> list[str]:
    """Every model name ``key`` may call and some provider serves, in rule order."""
    if key.model is None:
        return catalog.all_names()
    names: dict[str, None] = {}
    for r in key.model:
        rule = r.rule
        if rule.startswith("<") and rule.endswith(">") and len(rule) > 2:
            candidates = [rule[1:-1]]
        else:
            prov, slash, name = rule.partition("/")
            if slash and prov in catalog.providers:
                exposed = catalog.exposed(prov)
                candidates = list(exposed) if name == "*" else [name]
            elif slash and prov in catalog.keys and depth < MAX_KEY_DEPTH:
                candidates = (key_models(catalog, catalog.keys[prov], depth + 1)
                              if name == "*" else [name])
            else:
                candidates = [rule]
        for n in candidates:
            if _rule_channels(catalog, rule, n, depth):
                names.setdefault(n, None)
    return list(names)
