"""Input variables: declarations, where values come from, and coercion.

A value is taken from, in rising priority: the declared ``default``,
``-var-file`` files (YAML or JSON maps, in the order given), the
environment variable ``MODELFORM_VAR_<name>``, then ``-var name=value``
arguments (later ones win). Values are converted to the declared type as
Terraform does: text from the command line or the environment becomes a
number or bool, and list and map values are written as JSON. A variable
with no ``type`` takes its default's type; with neither it is text.

Errors about ``-var`` arguments point at ``<command line>:1:N``, N being
the position of the argument among the ``-var`` arguments (1-based).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from modelform.engine import yaml_positions
from modelform.engine.config import Variable
from modelform.engine.diagnostics import Diagnostic, DiagnosticError, Pos
from modelform.engine.references import to_text
from modelform.engine.schema import did_you_mean
from modelform.engine.yaml_positions import Source

ENV_PREFIX = "MODELFORM_VAR_"
COMMAND_LINE = "<command line>"

_INT_RE = re.compile(r"[-+]?[0-9]+")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class CoerceError(ValueError):
    pass


#: Marks a value that was given but did not convert (already reported).
_FAILED = object()


def infer_type(default: Any) -> str | None:
    """A value's type name (bool, number, string, list, map), None for null."""
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int | float):
        return "number"
    if isinstance(default, str):
        return "string"
    if isinstance(default, list | tuple):
        return "list"
    if isinstance(default, dict):
        return "map"
    return None


def coerce(value: Any, type_: str | None, *, text: bool = False) -> Any:
    """``value`` as ``type_``; ``text`` says it came as a string from the
    command line or the environment. Raises :class:`CoerceError`."""
    if type_ is None:
        return value
    if type_ == "string":
        if isinstance(value, dict | list):
            raise CoerceError(f"expected a string, got {_kind(value)}")
        return value if isinstance(value, str) else to_text(value)
    if type_ == "number":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            s = value.strip()
            if _INT_RE.fullmatch(s):
                return int(s)
            try:
                return float(s)
            except ValueError:
                pass
        raise CoerceError(f"{_show(value)} is not a number")
    if type_ == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise CoerceError(f"{_show(value)} is not a bool (use true or false)")
    want = list if type_ == "list" else dict
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            example = '["a", "b"]' if want is list else '{"k": "v"}'
            raise CoerceError(
                f"{_show(value)} is not a {type_}; write it as JSON, e.g. {example}"
            ) from None
    if not isinstance(value, want):
        raise CoerceError(f"expected a {type_}, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "a bool"
    if isinstance(value, int | float):
        return "a number"
    if value is None:
        return "null"
    return "a string"


def _show(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, dict | list) else _kind(value)


def declare(src: Source) -> dict[str, Variable]:
    """The ``variables`` section (already schema-valid) as :class:`Variable` s.
    A default that does not fit the declared type is an error."""
    section = (src.data or {}).get("variables") or {}
    out: dict[str, Variable] = {}
    errors: list[Diagnostic] = []
    for name, body in section.items():
        body = body or {}
        has_default = "default" in body
        type_ = body.get("type") or (infer_type(body["default"]) if has_default else None)
        default = body.get("default")
        if has_default and default is not None:
            try:
                default = coerce(default, type_)
            except CoerceError as err:
                path = ("variables", name, "default")
                errors.append(Diagnostic(f"variables.{name}.default: {err}", src.value_pos(path)))
        out[name] = Variable(
            name=name,
            default=default,
            description=body.get("description", ""),
            type=type_,
            required=not has_default,
            sensitive=bool(body.get("sensitive", False)),
        )
    if errors:
        raise DiagnosticError(*errors)
    return out


def _undeclared(
    name: str, declared: Mapping[str, Variable], pos: Pos | None, how: str
) -> Diagnostic:
    close = did_you_mean(name, declared)
    msg = f'{how} sets variable "{name}", which is not declared'
    if close:
        msg += f' (did you mean "{close}"?)'
    return Diagnostic(msg, pos, 'declare it under "variables:" in the project file')


def _from_files(
    files: Iterable[str | os.PathLike[str]], declared: Mapping[str, Variable]
) -> tuple[dict[str, Any], list[Diagnostic]]:
    values: dict[str, Any] = {}
    errors: list[Diagnostic] = []
    for f in files:
        path = Path(f)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            reason = getattr(err, "strerror", None) or str(err)
            errors.append(Diagnostic(f'-var-file "{f}": cannot read it: {reason}'))
            continue
        src = yaml_positions.parse(text, str(f))
        if src.data is None:
            continue
        if not isinstance(src.data, dict):
            errors.append(
                Diagnostic(
                    f'-var-file "{f}": expected a mapping of variable names to values',
                    src.pos(()),
                )
            )
            continue
        for name, value in src.data.items():
            var = declared.get(name)
            if var is None:
                errors.append(_undeclared(name, declared, src.key_pos((name,)), f'-var-file "{f}"'))
                continue
            try:
                values[name] = coerce(value, var.type)
            except CoerceError as err:
                values[name] = _FAILED
                errors.append(Diagnostic(f'variable "{name}": {err}', src.value_pos((name,))))
    return values, errors


def _from_args(
    var_args: Iterable[str], declared: Mapping[str, Variable]
) -> tuple[dict[str, Any], list[Diagnostic]]:
    values: dict[str, Any] = {}
    errors: list[Diagnostic] = []
    for i, arg in enumerate(var_args, start=1):
        pos = Pos(COMMAND_LINE, 1, i)
        name, eq, raw = arg.partition("=")
        name = name.strip()
        if not eq or not name:
            errors.append(
                Diagnostic(f'-var "{arg}": expected NAME=VALUE', pos, "for example -var replicas=3")
            )
            continue
        var = declared.get(name)
        if var is None:
            errors.append(_undeclared(name, declared, pos, f'-var "{arg}"'))
            continue
        try:
            values[name] = coerce(raw, var.type, text=True)
        except CoerceError as err:
            values[name] = _FAILED
            errors.append(Diagnostic(f'-var "{arg}": variable "{name}": {err}', pos))
    return values, errors


def _from_environ(
    environ: Mapping[str, str], declared: Mapping[str, Variable]
) -> tuple[dict[str, Any], list[Diagnostic]]:
    values: dict[str, Any] = {}
    errors: list[Diagnostic] = []
    for name, var in declared.items():
        key = ENV_PREFIX + name
        if key not in environ:
            continue
        try:
            values[name] = coerce(environ[key], var.type, text=True)
        except CoerceError as err:
            values[name] = _FAILED
            errors.append(Diagnostic(f'environment variable {key}: variable "{name}": {err}'))
    return values, errors


def values(
    declared: Mapping[str, Variable],
    src: Source,
    var_args: Iterable[str] = (),
    var_files: Iterable[str | os.PathLike[str]] = (),
    environ: Mapping[str, str] = os.environ,
) -> dict[str, Any]:
    """Final value of every declared variable; raises :class:`DiagnosticError`
    naming every bad argument, file entry and missing required value."""
    out = {name: var.default for name, var in declared.items() if not var.required}
    errors: list[Diagnostic] = []
    for got, errs in (
        _from_files(var_files, declared),
        _from_environ(environ, declared),
        _from_args(var_args, declared),
    ):
        out.update(got)
        errors.extend(errs)
    for name in declared:
        if name not in out:
            errors.append(
                Diagnostic(
                    f'variable "{name}" is required but has no value',
                    src.key_pos(("variables", name)),
                    f"give it a default, or set it with -var {name}=VALUE, "
                    f"a -var-file, or {ENV_PREFIX}{name}",
                )
            )
    if errors:
        raise DiagnosticError(*errors)
    return out
