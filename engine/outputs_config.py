"""The ``outputs:`` section of the project file, as the loader reads it.

Two forms, both canonical (``modelform fmt`` keeps each as written)::

    outputs:
      url: ${services.api.url}            # short: a string, the value itself
      key:                                # long: a mapping with value:
        value: ${services.api.key}
        description: the scoring key
        sensitive: true

A short form is any value but a mapping (a string, number, boolean or
list; a ``${var.x}`` holding a map is one too); a mapping is always the long
form, so a map value is written under ``value:`` and is never mistaken for
the long form's keys.
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
from modelform.engine.yaml_positions import Path_, Source

SECTION = "outputs"


def normalize(src: Source, data: dict[str, Any]) -> None:
    """Write every short form as the long one (``{value: …}``), before
    ``${var.x}`` is put in (a variable holding a map stays a short form's
    value), its positions copied below ``value`` so later diagnostics point
    at the same characters."""
    section = data.get(SECTION)
    if not isinstance(section, dict):
        return
    for name, body in section.items():
        if isinstance(body, dict):
            continue
        section[name] = {"value": body}
        base: Path_ = (SECTION, name)
        _below(src.positions, base)
        _below(src.value_positions, base)
        _below(src.key_positions, base)
        _below(src.scalars, base)


def _below(table: dict[Path_, Any], base: Path_) -> None:
    """Copy the entries at and under ``base`` to ``base + ("value",)``."""
    n = len(base)
    table.update({(*base, "value", *p[n:]): v for p, v in table.items() if p[:n] == base})


def var_refs(data: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """Variables each output's value names, read before the loader puts
    their values in (afterwards nothing tells where a value came from)."""
    out: dict[str, tuple[str, ...]] = {}
    for name, body in (data.get(SECTION) or {}).items():
        try:
            refs = references.find_refs(body.get("value"), (SECTION, name, "value"))
        except ReferenceSyntaxError:
            refs = []  # reported by the loader's syntax pass
        out[name] = tuple(sorted({r.name for r in refs if r.section == "var"}))
    return out


def check(src: Source, data: dict[str, Any]) -> list[Diagnostic]:
    """What only outputs can get wrong: a reference in a description."""
    errors = []
    for name, body in (data.get(SECTION) or {}).items():
        text = body.get("description")
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
    """The validated section (in its long form: :func:`normalize`)."""
    out = {}
    for name, long in (data.get(SECTION) or {}).items():
        out[name] = Output(
            name=name,
            value=long.get("value"),
            description=str(long.get("description") or ""),
            sensitive=bool(long.get("sensitive", False)),
            vars=used_vars.get(name, ()),
        )
    return out
