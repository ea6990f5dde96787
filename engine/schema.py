"""The project file's JSON Schema and what its errors mean to a person.

``schema.json`` (draft 2020-12, shipped in the package) is the single
description of the file: it validates, it is printed by ``modelform
schema`` for editors, and :func:`render_markdown` turns it into
docs/project-file.md. :func:`validate` maps jsonschema's errors to
:class:`Diagnostic` s at the offending node, in words a user can act on.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError

from modelform.engine.diagnostics import Diagnostic, Pos
from modelform.engine.yaml_positions import Path_, Source

NAME_RULE = (
    'use lowercase letters, digits and "-", starting and ending with a letter or digit, '
    "at most 63 characters"
)
_PATTERN_RULES = {
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$": NAME_RULE,
    "^[A-Za-z_][A-Za-z0-9_-]*$": 'use letters, digits, "_" and "-", not starting with a digit',
    "^[0-9]+\\.[0-9]+(\\.[0-9]+)?$": 'expected a version such as "3.11"',
    "^[a-z][a-z0-9_-]*$": 'use lowercase letters, digits, "_" and "-", starting with a letter',
}
_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "empty",
}


def schema_text() -> str:
    """The schema as shipped (what ``modelform schema`` prints)."""
    return resources.files("modelform.engine").joinpath("schema.json").read_text("utf-8")


@cache
def load_schema() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(schema_text())
    return data


def _inline(value: Any, defs: dict[str, Any]) -> Any:
    """``value`` with every ``$ref`` to ``#/$defs/…`` replaced by what it
    points at (the schema has no recursive references). The referring
    schema's own keys (description, default) are kept beside the target's."""
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            own = {k: v for k, v in value.items() if k != "$ref"}
            return _inline({**defs[ref.rsplit("/", 1)[-1]], **own}, defs)
        return {k: _inline(v, defs) for k, v in value.items()}
    if isinstance(value, list):
        return [_inline(v, defs) for v in value]
    return value


@cache
def validator() -> jsonschema.protocols.Validator:
    """The project file's validator. References are inlined first: the same
    checks and errors, without a registry lookup per reference per service
    (half the validation time of a project of thousands of services)."""
    schema = load_schema()
    return jsonschema.Draft202012Validator(_inline(schema, schema["$defs"]))


def where(path: Iterable[str | int]) -> str:
    """``services.api.models[0]`` for a path."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    got = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return got[0] if got else None


def show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return json.dumps(value)


def _sub_schema(error: ValidationError) -> dict[str, Any]:
    schema = error.schema if isinstance(error.schema, dict) else {}
    return schema


def _suggest_name(name: str) -> str | None:
    fixed = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    return fixed if fixed and fixed != name else None


class _Mapper:
    def __init__(self, src: Source) -> None:
        self.src = src

    def one(self, e: ValidationError) -> list[Diagnostic]:
        path: Path_ = tuple(e.absolute_path)
        at = where(path) or "the project file"
        schema_path = list(e.absolute_schema_path)
        if "propertyNames" in schema_path:
            return [self.bad_name(path, str(e.instance))]
        kind = e.validator
        handler = getattr(self, f"on_{kind}", None)
        if handler is not None:
            got: list[Diagnostic] = handler(e, path, at)
            return got
        return [Diagnostic(f"{at}: {e.message}", self.src.value_pos(path))]

    def bad_name(self, path: Path_, name: str) -> Diagnostic:
        what = "variable name" if path == ("variables",) else "name"
        rule = _PATTERN_RULES["^[A-Za-z_][A-Za-z0-9_-]*$"] if path == ("variables",) else NAME_RULE
        suggestion = None if path == ("variables",) else _suggest_name(name)
        hint = f'for example "{suggestion}"' if suggestion else None
        return Diagnostic(
            f'invalid {what} "{name}" in {where(path)}: {rule}',
            self.src.key_pos(path + (name,)),
            hint,
        )

    def on_type(self, e: ValidationError, path: Path_, at: str) -> list[Diagnostic]:
        types = e.validator_value if isinstance(e.validator_value, list) else [e.validator_value]
        words = [_TYPE_WORDS.get(str(t), str(t)) for t in types]
        expected = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
        hint = None
        info = self.src.scalars.get(path)
        raw = info.raw.strip(chr(39) + chr(34)) if info is not None else ""
        if "string" in types and not isinstance(e.instance, dict | list) and raw:
            hint = f'write it in quotes: "{raw}"'
        if e.instance is None:
            msg = f"{at}: is empty, expected {expected}"
        else:
            msg = f"{at}: {show(e.instance)} is not {expected}"
        return [Diagnostic(msg, self.src.value_pos(path), hint)]

    def _bound(self, e: ValidationError, path: Path_, at: str, text: str) -> list[Diagnostic]:
        msg = f"{at}: {show(e.instance)} is {text} {e.validator_value}"
        return [Diagnostic(msg, self.src.value_pos(path))]

    def on_minimum(self, e: ValidationError, path: Path_, at: str) -> list[Diagnostic]:
        return self._bound(e, path, at, "less than the minimum")

    def on_maximum(self, e: ValidationError, path: Path_, at: str) -> list[Diagnostic]:
        return self._bound(e, path, at, "greater than the maximum")

    def on_exclusiveMinimum(self, e: ValidationError, path: Path_, at: str) -> list[Diagnostic]:  # noqa: N802
        return self._bound(e, path, at, "not greater than")

    def on_exclusiveMaximum(self, e: ValidationError, path: Path_, at: str) -> list[Diagnostic]:  # noqa: N802
        return self._bound(e, path, at, "not less than")

    def on_enum(self, e: ValidationError, path: Path_, at: str) -> list[Diagnostic]:
        choices = [str(c) for c in e.validator_value]
        close = did_you_mean(str(e.instance), choices)
        hint = f'did you mean "{close}"?' if close else None
        msg = f"{at}: {show(e.instance)} is not one of: {', '.join(choices)}"
        return [Diagnostic(msg, self.src.value_pos(path), hint)]

    def on_required(self, e: ValidationError, path: Path_, at: str) -> list[Diagnostic]:
        known = _sub_schema(e).get("properties", {})
        typos = [k for k in e.instance if k not in known]
        missing = [
            k
            for k in e.validator_value
            if k not in e.instance and not did_you_mean(k, typos)  # said as "unknown key"
        ]
        place = f"{at}: missing" if path else "missing"
        tail = "" if path else " at the top level"
        return [
            Diagnostic(f'{place} required key "{k}"{tail}', self.src.key_pos(path)) for k in missing
        ]

    def on_additionalProperties(  # noqa: N802
        self, e: ValidationError, path: Path_, at: str
    ) -> list[Diagnostic]:
        known = list(_sub_schema(e).get("properties", {}))
        out = []
        place = f"in {where(path)}" if path else "at the top level"
        for key in e.instance:
            if key in known:
                continue
            close = did_you_mean(key, known)
            msg = f'unknown key "{key}" {place}'
            hint = None
            if close:
                msg += f' (did you mean "{close}"?)'
            else:
                hint = "known keys: " + ", ".join(known)
            out.append(Diagnostic(msg, self.src.key_pos(path + (key,)), hint))
        return out

    def on_pattern(self, e: ValidationError, path: Path_, at: str) -> list[Diagnostic]:
        rule = _PATTERN_RULES.get(str(e.validator_value), f"must match {e.validator_value}")
        return [Diagnostic(f"{at}: {show(e.instance)} is not valid: {rule}", self.src.pos(path))]

    def on_minLength(self, e: ValidationError, path: Path_, at: str) -> list[Diagnostic]:  # noqa: N802
        return [Diagnostic(f"{at}: must not be empty", self.src.value_pos(path))]

    def on_maxLength(self, e: ValidationError, path: Path_, at: str) -> list[Diagnostic]:  # noqa: N802
        msg = f"{at}: {show(e.instance)} is longer than {e.validator_value} characters"
        return [Diagnostic(msg, self.src.value_pos(path))]

    def on_uniqueItems(self, e: ValidationError, path: Path_, at: str) -> list[Diagnostic]:  # noqa: N802
        seen: list[Any] = []
        for i, item in enumerate(e.instance):
            if item in seen:
                msg = f"{at}: {show(item)} is listed more than once"
                return [Diagnostic(msg, self.src.value_pos(path + (i,)))]
            seen.append(item)
        return [Diagnostic(f"{at}: items must be unique", self.src.value_pos(path))]

    def on_not(self, e: ValidationError, path: Path_, at: str) -> list[Diagnostic]:
        both = e.validator_value.get("required") if isinstance(e.validator_value, dict) else None
        if both and len(both) == 2:
            a, b = both
            msg = f'{at}: set either "{a}" or "{b}", not both'
            return [Diagnostic(msg, self.src.key_pos(path + (b,)))]
        return [Diagnostic(f"{at}: {e.message}", self.src.pos(path))]


def validate(
    data: Any, src: Source, skip: Callable[[Any], bool] = lambda _: False
) -> list[Diagnostic]:
    """Validate ``data`` (positions in ``src``); errors whose value ``skip``
    accepts (such as a ``${...}`` template standing for a later value) are
    left out. Sorted by position."""
    mapper = _Mapper(src)
    out: list[Diagnostic] = []
    for error in validator().iter_errors(data):
        if skip(error.instance):
            continue
        out.extend(mapper.one(error))
    return sorted(out, key=sort_key)


def sort_key(d: Diagnostic) -> tuple[str, int, int]:
    p = d.pos or Pos("", 0, 0)
    return (p.file, p.line, p.col)


def defaults(section_schema: dict[str, Any]) -> dict[str, Any]:
    """``{key: default}`` for the properties of an object schema."""
    out = {}
    for key, prop in section_schema.get("properties", {}).items():
        if "default" in prop:
            out[key] = prop["default"]
    return out


def resolve_ref(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema a ``$ref`` points at, merged under the referring keys."""
    ref = schema.get("$ref")
    if not ref:
        return schema
    name = ref.rsplit("/", 1)[-1]
    target = dict(load_schema()["$defs"][name])
    target.update({k: v for k, v in schema.items() if k != "$ref"})
    return target


def _type_of(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref", "")
    if ref.endswith("/name"):
        return "name"
    s = resolve_ref(schema)
    if "enum" in s:
        return " \\| ".join(f"`{v}`" for v in s["enum"])
    types = s.get("type")
    if types is None:
        return "any"
    if isinstance(types, list):
        return " or ".join(types)
    if types == "array":
        return f"list of {_type_of(s.get('items', {}))}"
    if types == "object" and isinstance(s.get("additionalProperties"), dict):
        inner = s["additionalProperties"]
        label = inner.get("$ref", "").rsplit("/", 1)[-1].replace("_", " ")
        return f"map of {label or _type_of(inner)}"
    return str(types) + _range(s)


def _range(s: dict[str, Any]) -> str:
    lo, hi = s.get("minimum"), s.get("maximum")
    if lo is not None and hi is not None:
        return f" ({lo} to {hi})"
    if lo is not None:
        return f" (>= {lo})"
    if s.get("exclusiveMinimum") is not None:
        return f" (> {s['exclusiveMinimum']})"
    return ""


def default_cell(key: str, prop: dict[str, Any], required: set[str]) -> str:
    """The Default column of a reference table: required, the default, or blank."""
    if key in required:
        return "required"
    if "default" in prop:
        return f"`{json.dumps(prop['default'])}`"
    return ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(title: str, schema: dict[str, Any], out: list[str], nested: list[Any]) -> None:
    s = resolve_ref(schema)
    required = set(s.get("required", []))
    out += [f"## `{title}`" if title else "## Top level", ""]
    if title:
        out += [_cell(s.get("description", "")), ""]
    if s.get("additionalProperties") is True:
        out += ["Other keys are allowed and checked by the target's provider.", ""]
    out += ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    for key, prop in s.get("properties", {}).items():
        text = _cell(prop.get("description", ""))
        out.append(f"| `{key}` | {_type_of(prop)} | {default_cell(key, prop, required)} | {text} |")
        nested.append((f"{title}.{key}" if title else key, prop))
    out.append("")


def render_markdown(schema: dict[str, Any] | None = None) -> str:
    """docs/project-file.md: a table per section of the schema."""
    schema = schema or load_schema()
    out = [
        "# The project file: `modelform.yaml`",
        "",
        "<!-- Generated from engine/schema.json by scripts/gen-docs. Do not edit. -->",
        "",
        _cell(schema.get("description", "")),
        "",
        "The JSON Schema itself is printed by `modelform schema` (for editors).",
        "",
    ]
    queue: list[Any] = [("", schema)]
    while queue:
        title, prop = queue.pop(0)
        s = resolve_ref(prop)
        nested: list[Any] = []
        if s.get("properties"):
            _table(title, s if prop is schema else prop, out, nested)
        elif isinstance(s.get("additionalProperties"), dict):
            nested.append((f"{title}.NAME", s["additionalProperties"]))
        queue[0:0] = nested
    return "\n".join(out).rstrip() + "\n"
