"""The ``outputs:`` section of the project file, as the loader reads it.

Two forms, both canonical (``modelform fmt`` keeps each as written)::

    outputs:
      url: ${services.api.url}            # short: a string, the value itself
      key:                                # long: a mapping with value:
        value: ${services.api.key}
        description: the scoring key
        sensitive: true

A short form is always a string; any other value (a number, a list, a map)
is written in the long form, so a mapping is never mistaken for a value.
References are checked like every other reference of the file (an unknown
resource or attribute is a diagnostic at its line, with a did-you-mean: the
loader's and :mod:`~modelform.engine.kinds`' checks cover ``outputs`` too);
a description holds no references.
"""

from __future__ import annotations

from typing import Any

from modelform.engine import references
from modelform.engine.config import Output
from modelform.engine.diagnostics import Diagnostic
from modelform.engine.references import ReferenceSyntaxError
from modelform.engine.yaml_positions import Source

SECTION = "outputs"


def _value(body: Any) -> Any:
    return body.get("value") if isinstance(body, dict) else body


def var_refs(data: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """Variables each output's value names, read before the loader puts
    their values in (afterwards nothing tells where a value came from)."""
    out: dict[str, tuple[str, ...]] = {}
    for name, body in (data.get(SECTION) or {}).items():
        try:
            refs = references.find_refs(_value(body), (SECTION, name))
        except ReferenceSyntaxError:
            refs = []  # reported by the loader's syntax pass
        out[name] = tuple(sorted({r.name for r in refs if r.section == "var"}))
    return out


def check(src: Source, data: dict[str, Any]) -> list[Diagnostic]:
    """What only outputs can get wrong: a reference in a description."""
    errors = []
    for name, body in (data.get(SECTION) or {}).items():
        text = body.get("description") if isinstance(body, dict) else None
        if isinstance(text, str) and "${" in text:
            path = (SECTION, name, "description")
            try:
                refs = references.find_refs(text, path)
            except ReferenceSyntaxError:
                continue
            if refs:
                errors.append(
                    Diagnostic(
                        f"outputs.{name}.description: a description cannot use references",
                        src.string_pos(path, refs[0].start),
                        'write "$${" for a literal "${"',
                    )
                )
    return errors


def build(data: dict[str, Any], used_vars: dict[str, tuple[str, ...]]) -> dict[str, Output]:
    """The validated section in its long form."""
    out = {}
    for name, body in (data.get(SECTION) or {}).items():
        long = body if isinstance(body, dict) else {"value": body}
        out[name] = Output(
            name=name,
            value=long.get("value"),
            description=str(long.get("description") or ""),
            sensitive=bool(long.get("sensitive", False)),
            vars=used_vars.get(name, ()),
        )
    return out
