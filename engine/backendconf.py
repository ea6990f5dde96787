"""Which state backend the project file names: the ``state:`` section.

::

    state:
      backend: s3                 # default: local
      bucket: ml-state
      key: fraud/state.json
      endpoint: http://127.0.0.1:19000
      region: us-east-1

Everything but ``backend`` is passed to the backend's class as options;
an option it does not take is an error at its file:line, with the
nearest name it does take. Values are literal: the state must be found
before variables or anything else is resolved, so ``${...}`` is refused
(as Terraform refuses variables in a backend block). Credentials are never
options; each backend takes them from the environment.

This is read on its own (:func:`read_spec`), before and without the rest
of the project file, so the state commands still work while another part
of the file is being fixed. The loader checks the section too
(:func:`check`), so ``modelform validate`` reports it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelform.engine.diagnostics import Diagnostic, DiagnosticError, Pos
from modelform.engine.schema import did_you_mean
from modelform.engine.yaml_positions import Source
from modelform.state import BackendLoadError, available_backends, backend_class

DEFAULT_BACKEND = "local"


@dataclass(frozen=True)
class BackendSpec:
    """A backend's registered name and options, as the project file gives them."""

    name: str = DEFAULT_BACKEND
    options: dict[str, Any] = field(default_factory=dict)
    #: Where ``state:`` is written; None when the file names no backend.
    pos: Pos | None = None

    def to_json(self) -> dict[str, Any]:
        return {"backend": self.name, "options": dict(sorted(self.options.items()))}

    def same_place(self, other: BackendSpec) -> bool:
        return self.to_json() == other.to_json()


def check(src: Source, data: dict[str, Any]) -> list[Diagnostic]:
    """Every problem with the ``state:`` section (none when there is none)."""
    try:
        spec_of(src, data)
    except DiagnosticError as e:
        return list(e.diagnostics)
    return []


def spec_of(src: Source, data: dict[str, Any]) -> BackendSpec:
    """The backend the parsed project file names; DiagnosticError at file:line if bad."""
    section = data.get("state")
    if section is None:
        return BackendSpec()
    if not isinstance(section, dict):
        raise DiagnosticError.at(
            "state: must be a mapping (backend: NAME and its options)", src.value_pos(("state",))
        )
    errors: list[Diagnostic] = []
    name = section.get("backend", DEFAULT_BACKEND)
    if not isinstance(name, str) or not name:
        raise DiagnosticError.at(
            "state.backend: must be the name of a state backend",
            src.value_pos(("state", "backend")),
            f"installed: {', '.join(available_backends())}",
        )
    options = {k: v for k, v in section.items() if k != "backend"}
    for key, value in options.items():
        if isinstance(value, str) and "${" in value:
            errors.append(
                Diagnostic(
                    f"state.{key}: references are not allowed here",
                    src.value_pos(("state", key)),
                    "the state is found before variables are resolved: write the value itself",
                )
            )
    try:
        cls = backend_class(name)
    except BackendLoadError as e:
        known = available_backends()
        near = did_you_mean(name, known)
        hint = f'did you mean "{near}"?' if near else None
        raise DiagnosticError(
            *errors, Diagnostic(f"state.backend: {e}", src.value_pos(("state", "backend")), hint)
        ) from None
    params = inspect.signature(cls).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    names = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    for key in options:
        if key not in params and not takes_any:
            near = did_you_mean(key, names)
            hint = f'did you mean "{near}"?' if near else f"it takes: {', '.join(names)}"
            errors.append(
                Diagnostic(
                    f"state.{key}: the {name} backend has no option {key!r}",
                    src.key_pos(("state", key)),
                    hint,
                )
            )
    missing = [
        n for n, p in params.items()
        if p.default is inspect.Parameter.empty and n not in options
        and p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    ]  # fmt: skip
    for n in missing:
        errors.append(Diagnostic(f"state: the {name} backend needs {n!r}", src.key_pos(("state",))))
    if errors:
        raise DiagnosticError(*errors)
    return BackendSpec(name, options, src.key_pos(("state",)))


def read_spec(file: Path) -> BackendSpec:
    """The backend ``file`` names, reading only what that needs; the default
    (local) when there is no project file."""
    from modelform.engine import yaml_positions
    from modelform.engine.loader import read_text

    if not file.exists():
        return BackendSpec()
    src = yaml_positions.parse(read_text(file), str(file))
    if not isinstance(src.data, dict):
        return BackendSpec()  # the loader says what is wrong, when the file is loaded
    return spec_of(src, src.data)
