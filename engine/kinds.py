"""Options per target kind: what each kind's provider declares, checked at
file:line before anything is planned.

The project file's own schema (``schema.json``) describes what every
service has (target, models, environment, entry_script, source_dir, env,
test, description) and the *shared options* whose meaning is the same
wherever they are honoured (port, cpu, memory_gb, resources, replicas,
autoscale, auth, timeout_seconds, workers). A provider's
``service_schema()`` lists the shared options its kind honours (taken with
:func:`shared_options`, so they read alike everywhere) and the options of its
own (a function's ``trigger``). This module checks each service against the
schema of its target's kind:

* an option the kind declares is validated by its schema (types, ranges,
  enums, required keys), and its defaults are filled in;
* a shared option, or another kind's option, that this kind leaves out is
  an error naming the kinds that honour it — a setting a target cannot
  honour is never silently dropped;
* anything else is an unknown key, with a did-you-mean.

Targets are checked alike against ``target_schema()``, and ``${...}``
references to attributes against what each provider says a resource
exposes. The loader calls :func:`check` last; it reads only data and
positions, never the world.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import jsonschema

from modelform.engine import references
from modelform.engine.config import DEFAULT_TARGET, SECTIONS
from modelform.engine.diagnostics import Diagnostic
from modelform.engine.schema import _cell, _Mapper, default_cell, did_you_mean, load_schema, where
from modelform.engine.yaml_positions import Source

#: Keys every service has, whatever its target's kind.
UNIVERSAL = (
    "target", "models", "environment", "entry_script", "source_dir", "env", "test", "description",
)  # fmt: skip
#: Keys every target has beside the kind's own options.
TARGET_COMMON = ("kind", "description")
#: The kind services use when their target names none.
DEFAULT_KIND = "local"


def _inline(value: Any) -> Any:
    """``value`` with every ``$ref`` into the project schema's ``$defs``
    replaced by what it points at, so it stands alone in a kind's schema."""
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = load_schema()["$defs"][ref.rsplit("/", 1)[-1]]
            merged = {**target, **{k: v for k, v in value.items() if k != "$ref"}}
            return _inline(merged)
        return {k: _inline(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_inline(v) for v in value]
    return value


def shared_option_schemas() -> dict[str, dict[str, Any]]:
    """The shared service options as the project file's schema defines them."""
    props: dict[str, dict[str, Any]] = load_schema()["$defs"]["service"]["properties"]
    return {k: _inline(v) for k, v in props.items() if k not in UNIVERSAL}


def shared_options(*names: str, **defaults: Any) -> dict[str, dict[str, Any]]:
    """Schemas of the named shared options, for a provider's
    ``service_schema()``: ``{"properties": {**shared_options("port", "auth",
    auth="none"), "trigger": {...}}}``. Keyword arguments set the default
    this kind uses."""
    shared = shared_option_schemas()
    out = {}
    for n in names:
        if n not in shared:
            raise KeyError(f"{n!r} is not a shared service option ({', '.join(shared)})")
        out[n] = shared[n]
        if n in defaults:
            out[n]["default"] = defaults[n]
    return out


@dataclass
class KindInfo:
    """What the engine needs to know of one kind before planning."""

    kind: str
    service_schema: dict[str, Any]
    target_schema: dict[str, Any]
    #: Attribute names (→ description) by resource type; None = not declared.
    attributes: dict[str, dict[str, str] | None] = field(default_factory=dict)
    description: str = ""


class Catalog(Protocol):
    """The installed kinds (:meth:`modelform.engine.registry.Registry.catalog`)."""

    def kinds(self) -> list[str]: ...
    def info(self, kind: str) -> KindInfo | None: ...


def _properties(schema: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = schema.get("properties") or {}
    return props


def sensitive_options(schema: dict[str, Any]) -> set[tuple[str, ...]]:
    """Paths of the options a schema marks ``"sensitive": true``, at any depth
    of nested objects (``("storage", "connection_string")``)."""
    out: set[tuple[str, ...]] = set()
    for k, v in _properties(schema).items():
        if not isinstance(v, dict):
            continue
        if v.get("sensitive"):
            out.add((k,))
        elif v.get("properties"):
            out |= {(k, *rest) for rest in sensitive_options(v)}
    return out


def _try_info(catalog: Catalog, kind: str) -> KindInfo | None:
    """A kind's info for listings; a broken plugin of *another* kind must not
    break the project at hand (it is reported where it is used, and by
    ``modelform providers``)."""
    try:
        return catalog.info(kind)
    except Exception:  # noqa: BLE001 - any plugin failure; reported elsewhere
        return None


def service_kind(data: dict[str, Any], svc: dict[str, Any]) -> str:
    target = svc.get("target") or DEFAULT_TARGET
    declared = (data.get("targets") or {}).get(target)
    if declared is None:
        return DEFAULT_KIND
    return str(declared.get("kind", DEFAULT_KIND))


def _fill(value: dict[str, Any], schema: dict[str, Any]) -> None:
    for key, prop in _properties(schema).items():
        if key not in value and isinstance(prop, dict) and "default" in prop:
            value[key] = copy.deepcopy(prop["default"])


class _Checker:
    def __init__(self, src: Source, data: dict[str, Any], catalog: Catalog) -> None:
        self.src, self.data, self.catalog = src, data, catalog
        self.mapper = _Mapper(src)
        self.errors: list[Diagnostic] = []
        self._honoured: dict[str, list[str]] | None = None
        self._validators: dict[int, Any] = {}

    def validator(self, schema: dict[str, Any]) -> Any:
        """One validator per kind schema for the whole file (thousands of
        services share a handful of kinds)."""
        found = self._validators.get(id(schema))
        if found is None:
            found = self._validators[id(schema)] = jsonschema.Draft202012Validator(schema)
        return found

    def honoured_by(self, key: str) -> list[str]:
        """Installed kinds whose services accept ``key``."""
        if self._honoured is None:
            self._honoured = {}
            for kind in self.catalog.kinds():
                info = _try_info(self.catalog, kind)
                for k in _properties(info.service_schema) if info else ():
                    self._honoured.setdefault(k, []).append(kind)
        return sorted(self._honoured.get(key, []))

    def installed(self) -> list[str]:
        return [k for k in self.catalog.kinds() if k != "core"]

    # -- targets ------------------------------------------------------------
    def target(self, name: str, body: dict[str, Any], keys_only: bool = False) -> None:
        kind = str(body.get("kind", DEFAULT_KIND))
        info = self.catalog.info(kind) if kind != "core" else None
        path = ("targets", name)
        if info is None:
            kinds = self.installed()
            close = did_you_mean(kind, kinds)
            msg = f'targets.{name}.kind: unknown target kind "{kind}"'
            if close:
                msg += f' (did you mean "{close}"?)'
            hint = f"installed kinds: {', '.join(kinds)}; `modelform providers` lists them"
            self.errors.append(Diagnostic(msg, self.src.value_pos(path + ("kind",)), hint))
            return
        own = {k: v for k, v in body.items() if k not in TARGET_COMMON}
        schema = info.target_schema
        for e in self.validator(schema).iter_errors(own):
            top = not e.relative_path  # an option of the target itself, not inside one
            if keys_only and not (e.validator == "additionalProperties" and top):
                continue
            if e.validator == "additionalProperties" and top:
                known = list(_properties(schema))
                for key in (k for k in e.instance if k not in known):
                    guess = did_you_mean(key, [*known, *TARGET_COMMON])
                    self.errors.append(
                        Diagnostic(
                            f'targets.{name}: unknown option "{key}" for kind {kind}',
                            self.src.key_pos(path + (key,)),
                            f'did you mean "{guess}"?'
                            if guess
                            else f"options: {', '.join(sorted(known)) or 'none'}",
                        )
                    )
                continue
            e.relative_path.extendleft(reversed(path))
            self.errors.extend(self.mapper.one(e))
        if not keys_only:
            _fill(body, schema)

    # -- services -----------------------------------------------------------
    def service(self, name: str, body: dict[str, Any], keys_only: bool = False) -> None:
        kind = service_kind(self.data, body)
        info = self.catalog.info(kind) if kind != "core" else None
        if info is None:
            return  # the target's unknown kind is reported once, at the target
        path = ("services", name)
        schema = info.service_schema
        props = _properties(schema)
        own: dict[str, Any] = {}
        typos: list[str] = []
        for key, value in body.items():
            if key in UNIVERSAL:
                continue
            if key in props:
                own[key] = value
                continue
            others = self.honoured_by(key)
            if others or key in shared_option_schemas():
                if keys_only:
                    continue  # known somewhere: "cannot honour" is said in the last pass
                can = f"kinds that can: {', '.join(others)}" if others else "no installed kind can"
                self.errors.append(
                    Diagnostic(
                        f'services.{name}.{key}: target kind {kind} cannot honour "{key}"',
                        self.src.key_pos(path + (key,)),
                        f"remove it, or deploy to another target ({can})",
                    )
                )
                continue
            known = [*UNIVERSAL, *props]
            close = did_you_mean(key, known)
            typos.append(key)
            msg = f'unknown key "{key}" in {where(path)}'
            self.errors.append(
                Diagnostic(
                    msg + (f' (did you mean "{close}"?)' if close else ""),
                    self.src.key_pos(path + (key,)),
                    None if close else f"options of target kind {kind}: {', '.join(known)}",
                )
            )
        if keys_only:
            return
        # ``own`` holds only the kind's options: the schema's additionalProperties
        # never fires here (unknown keys were said above).
        for e in self.validator(schema).iter_errors(own):
            if e.validator == "required" and not e.relative_path:
                missing = [
                    k for k in e.validator_value if k not in body and not did_you_mean(k, typos)
                ]
                for k in missing:
                    self.errors.append(
                        Diagnostic(
                            f'{where(path)}: missing required key "{k}" '
                            f"(target kind {kind} needs it)",
                            self.src.key_pos(path),
                        )
                    )
                continue
            e.relative_path.extendleft(reversed(path))
            self.errors.extend(self.mapper.one(e))
        _fill(body, schema)

    # -- references to attributes --------------------------------------------
    def attributes_of(self, section: str, name: str) -> Iterable[str] | None:
        body = (self.data.get(section) or {}).get(name) or {}
        if section == "services":
            info = self.catalog.info(service_kind(self.data, body))
            return None if info is None else info.attributes.get("service")
        core = self.catalog.info("core")
        declared = core.attributes.get(SECTIONS[section]) if core else None
        if section in ("environments", "targets"):
            return {*(declared or ()), *body}
        return declared

    def references(self) -> None:
        for section in (*SECTIONS, "outputs"):
            for name, body in (self.data.get(section) or {}).items():
                for ref in references.find_refs(body, (section, name)):
                    if ref.section == "var" or ref.attr is None:
                        continue
                    if ref.name not in (self.data.get(ref.section) or {}):
                        continue  # an unknown name is the loader's diagnostic
                    known = self.attributes_of(ref.section, ref.name)
                    if known is None or ref.attr in known:
                        continue
                    names = sorted(known)
                    close = did_you_mean(ref.attr, names)
                    msg = f"{ref.section}.{ref.name} has no attribute {ref.attr!r} in {ref.text}"
                    self.errors.append(
                        Diagnostic(
                            msg + (f' (did you mean "{close}"?)' if close else ""),
                            self.src.string_pos(ref.path, ref.start),
                            f"its attributes: {', '.join(names)}",
                        )
                    )


def check_keys(src: Source, data: dict[str, Any], catalog: Catalog) -> list[Diagnostic]:
    """Unknown kinds and keys only (no values): reported with the schema's own
    errors in the loader's first pass, so every mistake shows at once."""
    c = _Checker(src, data, catalog)
    for name, body in (data.get("targets") or {}).items():
        if isinstance(body, dict) and isinstance(body.get("kind", DEFAULT_KIND), str):
            c.target(name, body, keys_only=True)
    for name, body in (data.get("services") or {}).items():
        if isinstance(body, dict):
            c.service(name, body, keys_only=True)
    return c.errors


def check(src: Source, data: dict[str, Any], catalog: Catalog) -> list[Diagnostic]:
    """Every kind-dependent error of the project file; fills kind defaults."""
    c = _Checker(src, data, catalog)
    for name, body in (data.get("targets") or {}).items():
        if isinstance(body, dict):
            c.target(name, body)
    if not c.errors:
        for name, body in (data.get("services") or {}).items():
            if isinstance(body, dict):
                c.service(name, body)
    if not c.errors:
        c.references()
    return c.errors


# -- the schema editors read ------------------------------------------------
def full_schema(catalog: Catalog) -> dict[str, Any]:
    """The project file's schema with every installed kind's options on
    services and targets, each described with the kinds it applies to
    (what ``modelform schema`` prints, so editors complete them)."""
    schema = copy.deepcopy(load_schema())
    service = schema["$defs"]["service"]
    target = schema["$defs"]["target"]
    by_key: dict[str, list[str]] = {}
    found: dict[str, dict[str, Any]] = {}
    target_by_key: dict[str, list[str]] = {}
    target_found: dict[str, dict[str, Any]] = {}
    kinds = [k for k in catalog.kinds() if k != "core"]
    for kind in kinds:
        info = _try_info(catalog, kind)
        if info is None:
            continue
        for key, prop in _properties(info.service_schema).items():
            by_key.setdefault(key, []).append(kind)
            found.setdefault(key, prop)
        for key, prop in _properties(info.target_schema).items():
            target_by_key.setdefault(key, []).append(kind)
            target_found.setdefault(key, prop)
    props = service["properties"]
    for key in [k for k in props if k not in UNIVERSAL and k not in by_key]:
        props[key] = {**props[key], "description": props[key].get("description", "")
                      + " (no installed kind honours it)"}  # fmt: skip
    for key, owners in by_key.items():
        base = copy.deepcopy(props.get(key) or found[key])
        base["description"] = f"{base.get('description', '')} (kinds: {', '.join(owners)})".strip()
        props[key] = base
    service["additionalProperties"] = False
    for key, owners in target_by_key.items():
        base = copy.deepcopy(target_found[key])
        base["description"] = f"{base.get('description', '')} (kinds: {', '.join(owners)})"
        target["properties"][key] = base
    target["properties"]["kind"] = {
        **target["properties"]["kind"],
        "examples": kinds,
    }
    return schema


def full_schema_text(catalog: Catalog) -> str:
    return json.dumps(full_schema(catalog), indent=2) + "\n"


# -- the reference docs -------------------------------------------------------
def _type(prop: dict[str, Any]) -> str:
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    t = prop.get("type", "any")
    return " or ".join(t) if isinstance(t, list) else str(t)


def _options_table(schema: dict[str, Any], out: list[str]) -> None:
    required = set(schema.get("required") or [])
    props = _properties(schema)
    if not props:
        out += ["None.", ""]
        return
    out += ["| Option | Type | Default | Description |", "|---|---|---|---|"]
    for key, prop in props.items():
        text = _cell(prop.get("description", ""))
        if prop.get("sensitive"):
            text += " **Sensitive**: masked in every output."
        out.append(f"| `{key}` | {_type(prop)} | {default_cell(key, prop, required)} | {text} |")
    out.append("")


def kinds_markdown(catalog: Catalog, kinds: Iterable[str]) -> str:
    """A section per kind: its target options and the service options it
    honours (the generated part of docs/project-file.md)."""
    out = [
        "# Options per target kind",
        "",
        "A service's options beyond the ones every service has depend on its target's "
        "kind. An option the kind does not list is an error at validate, never silently "
        "dropped. `modelform schema` prints all of them for editors; `modelform providers` "
        "lists the installed kinds.",
        "",
    ]
    for kind in kinds:
        info = catalog.info(kind)
        if info is None:
            continue
        out += [f"## Kind `{kind}`", "", _cell(info.description), ""]
        out += ["### Target options", ""]
        _options_table(info.target_schema, out)
        out += ["### Service options", ""]
        _options_table(info.service_schema, out)
    return "\n".join(out).rstrip() + "\n"
