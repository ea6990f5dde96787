"""Sensitive values: what may never appear in any output.

Three sources mark a value secret: a variable declared ``sensitive: true``,
a service or target option whose kind's schema says ``"sensitive": true``
(keys, connection strings, SAS tokens), and attribute keys a provider names
in :attr:`~modelform.engine.provider.Proposal.sensitive` (a generated key).
A :class:`Redactor` holds the secret values and keys and masks them
wherever text leaves modelform: the human plan, ``-json``, apply progress
and errors, status. Masking is by value as well as by key, so a secret that
flows into another attribute (a variable into a service's env) is masked
there too, and so is a secret quoted in a provider's error message.

Values stay in clear where modelform must keep them: the state file and
saved plan files (both mode 0600; see docs/state.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from modelform.engine.config import Config
from modelform.engine.kinds import Catalog, sensitive_options, service_kind
from modelform.engine.plan import Plan
from modelform.engine.planjson import SENSITIVE
from modelform.engine.values import is_known

MASK = "(sensitive value)"
#: Secrets shorter than this are masked where they are a whole value, never
#: inside other text (masking every "1" in a log would hide everything).
MIN_IN_TEXT = 4


def _leaves(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _leaves(v)
    elif value is not None and not isinstance(value, bool):
        yield value if isinstance(value, str) else json.dumps(value)


class Redactor:
    """Masks secret values (anywhere) and secret attribute keys."""

    def __init__(self, values: Iterable[Any] = (), keys: Iterable[str] = ()) -> None:
        self.values: set[str] = set()
        self.keys: set[str] = set(keys)
        self.add(values)

    def add(self, values: Iterable[Any]) -> None:
        for v in values:
            self.values.update(s for s in _leaves(v) if s != "")
        self._ordered = sorted(
            (v for v in self.values if len(v) >= MIN_IN_TEXT), key=len, reverse=True
        )

    def add_keys(self, keys: Iterable[str]) -> None:
        self.keys.update(keys)

    def __bool__(self) -> bool:
        return bool(self.values)

    def text(self, s: str) -> str:
        """``s`` with every secret in it masked."""
        if not self.values:
            return s
        if s in self.values:
            return MASK
        for secret in self._ordered:
            if secret in s:
                s = s.replace(secret, MASK)
        return s

    def value(self, v: Any, key: str | None = None) -> Any:
        """A JSON-like value with secrets masked (whole values and inside text)."""
        if key is not None and key in self.keys and v not in (None, "", False):
            return MASK
        if isinstance(v, dict):
            return {k: self.value(x, k if isinstance(k, str) else None) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [self.value(x) for x in v]
        if isinstance(v, str):
            return self.text(v)
        if isinstance(v, bool) or v is None:
            return v
        if isinstance(v, int | float) and json.dumps(v) in self.values:
            return MASK
        return v


def from_config(config: Config, catalog: Catalog | None = None) -> Redactor:
    """The secrets a project file declares: sensitive variables' values and
    the values of options its kinds mark sensitive."""
    values: list[Any] = [
        config.var_values.get(name) for name, var in config.variables.items() if var.sensitive
    ]
    keys: set[str] = set()
    if catalog is not None:
        data = {"targets": config.targets, "services": config.services}
        for body in config.targets.values():
            info = catalog.info(str(body.get("kind", "local")))
            if info is not None:
                found = sensitive_options(info.target_schema)
                keys |= {path[-1] for path in found}
                values += _at(body, found)
        for body in config.services.values():
            info = catalog.info(service_kind(data, body))
            if info is not None:
                found = sensitive_options(info.service_schema)
                keys |= {path[-1] for path in found}
                values += _at(body, found)
    return Redactor(values, keys)


def _at(body: dict[str, Any], paths: set[tuple[str, ...]]) -> list[Any]:
    """The values found at ``paths`` in ``body`` (missing ones skipped)."""
    out = []
    for path in paths:
        value: Any = body
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            out.append(value)
    return out


def from_plan(plan: Plan) -> list[Any]:
    """Secret values a plan carries: sensitive variables' values, attributes
    its providers marked sensitive (and the generated ``key``), before and
    after, children included."""
    out: list[Any] = []
    for c in plan.changes:
        keys = {*SENSITIVE, *c.sensitive}
        parts = [c.before or {}, c.after or {}]
        parts += [x for ch in c.children for x in (ch.before or {}, ch.after or {})]
        for attrs in parts:
            out += [attrs[k] for k in keys if is_known(attrs.get(k)) and attrs.get(k)]
    out += [plan.variables.get(n) for n in plan.sensitive_variables if plan.variables.get(n)]
    for recs in (plan.prior, plan.refreshed):
        for rec in recs.values():
            attrs = rec.get("attributes") or {}
            out += [attrs[k] for k in SENSITIVE if attrs.get(k)]
    return out


def from_records(records: dict[str, dict[str, Any]]) -> list[Any]:
    """Secret values recorded in state under the keys secret everywhere."""
    return [
        (r.get("attributes") or {})[k]
        for r in records.values()
        for k in SENSITIVE
        if (r.get("attributes") or {}).get(k)
    ]
