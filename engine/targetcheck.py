"""Checking each declared target's options against its provider's schema.

The project file's schema leaves a target's options open (each kind has its
own); the provider's ``target_schema()`` closes them. Every option error is a
diagnostic at the option's line, with a did-you-mean for a misspelt key.
"""

from __future__ import annotations

from typing import Any

import jsonschema

from modelform.engine.config import Config
from modelform.engine.diagnostics import Diagnostic, DiagnosticError
from modelform.engine.registry import Registry
from modelform.engine.schema import did_you_mean

#: Keys every target has, whatever its kind.
COMMON = ("kind", "description")


def check_targets(config: Config, registry: Registry) -> None:
    errors: list[Diagnostic] = []
    for name, body in config.targets.items():
        kind = str(body.get("kind", "local"))
        if not registry.known(kind):
            continue  # reported once per service that uses it, with the kinds known
        schema = registry.get(kind).target_schema()
        own = {k: v for k, v in body.items() if k not in COMMON}
        for e in sorted(jsonschema.Draft202012Validator(schema).iter_errors(own), key=str):
            errors.append(_diagnostic(config, name, kind, schema, own, e))
    if errors:
        raise DiagnosticError(*errors)


def _diagnostic(
    config: Config,
    name: str,
    kind: str,
    schema: dict[str, Any],
    own: dict[str, Any],
    e: jsonschema.ValidationError,
) -> Diagnostic:
    path = ("targets", name, *e.absolute_path)
    hint = f"see the options of kind {kind} in docs/providers/{kind}.md"
    if e.validator == "additionalProperties":
        known = set((schema.get("properties") or {}).keys())
        extra = sorted(k for k in (e.instance or {}) if k not in known)
        if extra:
            key = extra[0]
            guess = did_you_mean(key, [*known, *COMMON])
            choices = ", ".join(sorted(known)) or "none"
            return Diagnostic(
                f'targets.{name}: unknown option "{key}" for kind {kind}',
                config.pos((*path, key)),
                f'did you mean "{guess}"?' if guess else f"options: {choices}",
            )
    where = ".".join(str(p) for p in path)
    return Diagnostic(f"{where}: {e.message}", config.pos(path), hint)
