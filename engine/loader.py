"""Load ``modelform.yaml`` into a :class:`Config`, or say exactly what is wrong.

Steps, each reporting every problem it finds before stopping:

1. read and parse the YAML, keeping the position of every node and
   refusing duplicate keys;
2. validate against ``schema.json`` (strings holding ``${...}`` are left
   for later) and check the syntax of every reference;
3. work out variable values (default < -var-file < MODELFORM_VAR_x < -var)
   and put them in place of ``${var.x}``, then validate again;
4. check names and references point at declared things, that files
   exist, that no two services on a target share a port.

The result holds plain data with schema defaults filled in. A service's
``cpu``/``memory_gb`` are moved into ``resources`` so later stages read
one place. Strings are still templates (``$${`` stays escaped and
references to models, environments, targets and services remain):
:func:`modelform.engine.references.resolve` finishes them. Cycles are
found by the graph, not here.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from modelform.engine import (
    backendconf,
    kinds,
    outputs_config,
    references,
    schema,
    variables,
    yaml_positions,
)
from modelform.engine.config import DEFAULT_TARGET, SECTIONS, Config
from modelform.engine.diagnostics import Diagnostic, DiagnosticError, Pos
from modelform.engine.references import KEEP, Ref, ReferenceSyntaxError
from modelform.engine.schema import did_you_mean, where
from modelform.engine.yaml_positions import Path_, Source

TOP_SECTIONS = ("variables", *SECTIONS, outputs_config.SECTION)


def read_text(file: Path) -> str:
    """The file's text, or a :class:`DiagnosticError` saying why not."""
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise DiagnosticError.at(
            f"{file}: no such file", None, "create it, or run modelform in the folder holding it"
        ) from None
    except IsADirectoryError:
        raise DiagnosticError.at(f"{file}: is a folder, not a project file") from None
    except OSError as err:
        raise DiagnosticError.at(f"{file}: cannot read it: {err.strerror}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        before = raw[: err.start]
        line = before.count(b"\n") + 1
        col = err.start - (before.rfind(b"\n") + 1) + 1
        raise DiagnosticError.at(
            "the file is not UTF-8 text", Pos(str(file), line, col), "save it as UTF-8"
        ) from None


def _fail(errors: list[Diagnostic]) -> None:
    if errors:
        raise DiagnosticError(*sorted(errors, key=schema.sort_key))


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def _has_refs(value: Any) -> bool:
    if not _is_template(value):
        return False
    try:
        return any(isinstance(p, Ref) for p in references.parse_template(value))
    except ReferenceSyntaxError:
        return True


def _shaped(data: dict[str, Any]) -> bool:
    """Whether targets and services are mappings of mappings (else the
    schema's errors say so, and key checks would only add noise)."""
    for section in ("targets", "services"):
        value = data.get(section, {})
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            return False
    return True


def _parse_top(src: Source) -> dict[str, Any]:
    data = src.data
    if data is None:
        raise DiagnosticError.at(
            "the project file is empty", Pos(src.file, 1, 1), 'start it with "project: NAME"'
        )
    if not isinstance(data, dict):
        raise DiagnosticError.at(
            f"the project file must be a mapping (project:, models:, services:, ...), "
            f"not {schema.show(data) if not isinstance(data, list) else 'a list'}",
            src.pos(()),
        )
    for section in TOP_SECTIONS:
        if section in data and data[section] is None:
            data[section] = {}
    return data


def _reference_syntax(src: Source, data: dict[str, Any]) -> list[Diagnostic]:
    """Malformed ``${...}``, and references where none may be."""
    errors: list[Diagnostic] = []
    for path, text in references.walk_strings(data):
        if "${" not in text:
            continue
        try:
            parts = references.parse_template(text, path)
        except ReferenceSyntaxError as err:
            errors.append(Diagnostic(err.message, src.string_pos(path, err.offset)))
            continue
        for ref in (p for p in parts if isinstance(p, Ref)):
            at = src.string_pos(path, ref.start)
            if path[0] == "variables":
                errors.append(Diagnostic(f"{where(path)}: variables cannot use references", at))
            elif path[0] == "project" and ref.section != "var":
                errors.append(Diagnostic("project: only ${var.NAME} may be used here", at))
    return errors


def _check_var_refs(src: Source, data: dict[str, Any], declared: Mapping[str, Any]) -> None:
    errors = []
    for path, text in references.walk_strings(data):
        if path[0] == "variables" or "${" not in text:
            continue
        for ref in references.find_refs(text, path):
            if ref.section == "var" and ref.name not in declared:
                close = did_you_mean(ref.name, declared)
                msg = f'undeclared variable "{ref.name}" in {ref.text}'
                if close:
                    msg += f' (did you mean "{close}"?)'
                hint = None if close else 'declare it under "variables:"'
                errors.append(Diagnostic(msg, src.string_pos(path, ref.start), hint))
    _fail(errors)


def _substitute(
    src: Source, data: dict[str, Any], values: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[Pos, str]]:
    origin: dict[Pos, str] = {}

    def lookup(ref: Ref) -> Any:
        if ref.section != "var":
            return KEEP
        origin[src.value_pos(ref.path)] = ref.name
        return values[ref.name]

    out = {
        k: (v if k == "variables" else references.substitute(v, lookup, (k,)))
        for k, v in data.items()
    }
    return out, origin


def _fill_defaults(value: Any, sch: dict[str, Any]) -> None:
    s = schema.resolve_ref(sch)
    if not isinstance(value, dict):
        return
    props = s.get("properties", {})
    for key, prop in props.items():
        if key not in value and "default" in prop:
            value[key] = copy.deepcopy(prop["default"])
        elif key in value:
            _fill_defaults(value[key], prop)
    extra = s.get("additionalProperties")
    if isinstance(extra, dict):
        for key, item in value.items():
            if key not in props:
                _fill_defaults(item, extra)


def _unknown(
    kind: str, name: str, declared: Iterable[str], where_: str = ""
) -> tuple[str, str | None]:
    names = sorted(declared)
    close = did_you_mean(name, names)
    msg = f'unknown {kind} "{name}"{where_}'
    if close:
        return msg + f' (did you mean "{close}"?)', None
    return msg, (f"declared: {', '.join(names)}" if names else f"no {kind} is declared")


def _check_refs(src: Source, data: dict[str, Any]) -> list[Diagnostic]:
    errors = []
    for section in (*SECTIONS, outputs_config.SECTION):
        for name, body in data.get(section, {}).items():
            for ref in references.find_refs(body, (section, name)):
                if ref.section == "var" or ref.name in data.get(ref.section, {}):
                    continue
                kind, declared = SECTIONS[ref.section], data.get(ref.section, {})
                msg, hint = _unknown(kind, ref.name, declared, f" in {ref.text}")
                errors.append(Diagnostic(msg, src.string_pos(ref.path, ref.start), hint))
    return errors


def _check_names(src: Source, data: dict[str, Any]) -> list[Diagnostic]:
    """Each service's target, models and environment name declared things."""
    errors = []
    targets = set(data.get("targets", {})) | {DEFAULT_TARGET}
    for name, svc in data.get("services", {}).items():
        base = ("services", name)
        uses: list[tuple[Path_, str, str, Iterable[str]]] = []
        if "target" in svc:
            uses.append((base + ("target",), svc["target"], "target", targets))
        for i, model in enumerate(svc.get("models", [])):
            uses.append((base + ("models", i), model, "model", data.get("models", {})))
        if svc.get("environment") is not None:
            uses.append(
                (
                    base + ("environment",),
                    svc["environment"],
                    "environment",
                    data.get("environments", {}),
                )
            )
        for path, used, kind, declared in uses:
            if _is_template(used):
                errors.append(
                    Diagnostic(f"{where(path)}: must be the name of a {kind}", src.value_pos(path))
                )
            elif used not in declared:
                msg, hint = _unknown(kind, used, declared)
                if kind == "target":
                    hint = (hint or "") + "; leave target out to use the local target"
                errors.append(Diagnostic(f"{where(path)}: {msg}", src.value_pos(path), hint))
    return errors


def _check_paths(src: Source, data: dict[str, Any], base: Path) -> list[Diagnostic]:
    wanted: list[tuple[Path_, str, str]] = []
    for name, model in data.get("models", {}).items():
        wanted.append((("models", name, "path"), model.get("path"), "any"))
    for name, env in data.get("environments", {}).items():
        wanted.append((("environments", name, "conda_file"), env.get("conda_file"), "file"))
    for name, svc in data.get("services", {}).items():
        wanted.append((("services", name, "entry_script"), svc.get("entry_script"), "file"))
        wanted.append((("services", name, "source_dir"), svc.get("source_dir"), "dir"))
    errors = []
    for path, value, kind in wanted:
        if not isinstance(value, str) or _is_template(value):
            continue
        full = base / value
        if not full.exists():
            msg = f'{where(path)}: "{value}" does not exist'
            hint = f"paths are relative to the project file's folder, {base.resolve()}"
            errors.append(Diagnostic(msg, src.value_pos(path), hint))
        elif kind == "file" and not full.is_file():
            errors.append(
                Diagnostic(f'{where(path)}: "{value}" is not a file', src.value_pos(path))
            )
        elif kind == "dir" and not full.is_dir():
            msg = f'{where(path)}: "{value}" is not a folder'
            errors.append(Diagnostic(msg, src.value_pos(path)))
    return errors


def _check_services(src: Source, data: dict[str, Any]) -> list[Diagnostic]:
    errors = []
    # Local processes and containers both publish on this machine's 127.0.0.1:
    # their ports must differ across both kinds. Other kinds (a cluster's
    # Services) each have an address of their own.
    host_kinds = ("local", "container")
    ports: dict[int, tuple[str, str]] = {}
    targets = data.get("targets", {})
    for name, svc in data.get("services", {}).items():
        base = ("services", name)
        port, target = svc.get("port"), svc.get("target", DEFAULT_TARGET)
        if not (isinstance(port, int) and isinstance(target, str)) or _is_template(target):
            pass
        elif (targets.get(target) or {}).get("kind", "local") in host_kinds:
            other, other_target = ports.setdefault(port, (name, target))
            if other != name:
                where = f'target "{target}"' if other_target == target else "this machine"
                errors.append(
                    Diagnostic(
                        f'services.{name}.port: port {port} is already used by service "{other}" '
                        f"on {where}",
                        src.value_pos(base + ("port",)),
                        "give each service on a target its own port",
                    )
                )
        scale = svc.get("autoscale") or {}
        lo, hi = scale.get("min"), scale.get("max")
        if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
            errors.append(
                Diagnostic(
                    f"services.{name}.autoscale: min {lo} is greater than max {hi}",
                    src.value_pos(base + ("autoscale", "min")),
                )
            )
        for key in ("cpu", "memory_gb"):
            if key in svc and key in (svc.get("resources") or {}):
                errors.append(
                    Diagnostic(
                        f'services.{name}: "{key}" is set both at the service and in resources',
                        src.key_pos(base + (key,)),
                        "keep one of them",
                    )
                )
    return errors


def _move_resources(src: Source, data: dict[str, Any]) -> None:
    """Put a service's top-level cpu/memory_gb into ``resources``."""
    for name, svc in data.get("services", {}).items():
        for key in ("cpu", "memory_gb"):
            if key in svc:
                svc.setdefault("resources", {})[key] = svc.pop(key)
                old, new = ("services", name, key), ("services", name, "resources", key)
                for table in (src.positions, src.value_positions, src.key_positions):
                    if old in table:
                        table[new] = table[old]
                        table.setdefault(new[:-1], table[old])


def load(
    path: str | os.PathLike[str],
    var_args: Iterable[str] = (),
    var_files: Iterable[str | os.PathLike[str]] = (),
    environ: Mapping[str, str] = os.environ,
    catalog: kinds.Catalog | None = None,
) -> Config:
    """Read, validate and resolve variables of the project file at ``path``.

    ``catalog`` gives the installed kinds whose options services and targets
    are checked against (default: the providers installed here).

    Raises :class:`DiagnosticError` for every user error, never anything else.
    """
    file = Path(path)
    src = yaml_positions.parse(read_text(file), str(file))
    data = _parse_top(src)
    if catalog is None:
        from modelform.engine.registry import Registry
        from modelform.engine.registry import catalog as make_catalog

        catalog = make_catalog(Registry())
    first = schema.validate(data, src, skip=_is_template) + _reference_syntax(src, data)
    first += backendconf.check(src, data)
    _fail(first + (kinds.check_keys(src, data, catalog) if _shaped(data) else []))

    declared = variables.declare(src)
    _check_var_refs(src, data, declared)
    outputs_config.normalize(src, data)
    output_vars = outputs_config.var_refs(data)
    values = variables.values(declared, src, list(var_args), list(var_files), environ)
    data, origin = _substitute(src, data, values)
    # Substitution changes nothing where no ${var.x} was used: no second pass then.
    errors = schema.validate(data, src, skip=_has_refs) if origin else []
    _fail(
        [
            Diagnostic(d.message, d.pos, d.hint or f"the value comes from var.{origin[d.pos]}")
            if d.pos in origin
            else d
            for d in errors
        ]
    )

    _fill_defaults(data, schema.load_schema())
    _fail(
        _check_refs(src, data)
        + _check_names(src, data)
        + _check_paths(src, data, file.parent)
        + _check_services(src, data)
        + outputs_config.check(src, data)
    )
    if catalog is None:
        from modelform.engine.registry import Registry
        from modelform.engine.registry import catalog as make_catalog

        catalog = make_catalog(Registry())
    _fail(kinds.check(src, data, catalog))
    _move_resources(src, data)
    return Config(
        file=file,
        project=data["project"],
        variables=declared,
        var_values=values,
        models=data.get("models", {}),
        environments=data.get("environments", {}),
        targets=data.get("targets", {}),
        services=data.get("services", {}),
        model_store=data.get("model_store") or {},
        outputs=outputs_config.build(data, output_vars),
        positions=dict(src.positions),
    )
