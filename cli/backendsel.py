"""Opening the state backend a project names, and noticing when that changes.

The backend a project used last is recorded in ``.modelform/backend.json``
(its name and options; never credentials, which are not options). The
first command that needs the state records it: there is nothing to run
before (``modelform init`` does it explicitly and checks the place can be
reached). When the project file later names another place:

* the recorded place holds no state: the new one is used and recorded,
  with a note;
* it holds a state: the command stops (exit 1) and says to run
  ``modelform init -migrate-state`` (move the state) or ``modelform init
  -reconfigure`` (use the new place as it is), so a state is never left
  behind by editing a line — as Terraform's "backend changed" check.

``--state PATH`` and ``MODELFORM_STATE`` name a local state file for one
command; nothing is recorded or checked then.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelform.engine.backendconf import BackendSpec, read_spec
from modelform.state import Backend, StateError, load_backend
from modelform.state.fsutil import replace_atomically

RECORD = "backend.json"


class BackendChanged(StateError):
    """The project file names another backend than the one holding the state."""


@dataclass(frozen=True)
class Chosen:
    backend: Backend
    spec: BackendSpec
    #: False for a --state/MODELFORM_STATE override (nothing is recorded).
    from_project: bool
    #: Where to record the backend once it has answered (first use), else None.
    pending: Recorded | None = None

    def answered(self) -> None:
        """The backend was read from: record it as this project's, if not yet done."""
        if self.pending is not None:
            self.pending.write(self.spec)
            object.__setattr__(self, "pending", None)


def resolve(spec: BackendSpec, project_dir: Path) -> dict[str, Any]:
    """The options as the backend takes them: a local path is relative to the project."""
    options = dict(spec.options)
    if spec.name == "local":
        path = Path(str(options.get("path", Path(".modelform") / "state.json")))
        options["path"] = path if path.is_absolute() else project_dir / path
    return options


def open_spec(spec: BackendSpec, project_dir: Path) -> Backend:
    return load_backend(spec.name, **resolve(spec, project_dir))


def describe(spec: BackendSpec, project_dir: Path) -> str:
    """``s3 (s3://b/k at http://...)`` without opening a connection."""
    try:
        return f"{spec.name} ({open_spec(spec, project_dir).describe()})"
    except StateError:
        return spec.name


class Recorded:
    """``.modelform/backend.json``: the backend this project's state is in."""

    def __init__(self, work_dir: Path) -> None:
        self.path = work_dir / RECORD

    def read(self) -> BackendSpec | None:
        try:
            data = json.loads(self.path.read_text())
            return BackendSpec(str(data["backend"]), dict(data.get("options") or {}))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise StateError(
                f"{self.path}: unreadable ({e}); delete it and run modelform init", str(self.path)
            ) from e

    def write(self, spec: BackendSpec) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(spec.to_json(), indent=2, sort_keys=True) + "\n"
        replace_atomically(self.path, text.encode())


def same_place(a: BackendSpec, b: BackendSpec, project_dir: Path) -> bool:
    """Whether two specs name one place (``path: .modelform/state.json`` is the default)."""
    if a.same_place(b):
        return True
    if a.name != b.name:
        return False
    try:
        return open_spec(a, project_dir).describe() == open_spec(b, project_dir).describe()
    except StateError:
        return False


def previous(record: Recorded, work_dir: Path) -> BackendSpec | None:
    """The backend the state was in before: the recorded one, else the default local
    file when it exists (a state made before backends were recorded)."""
    before = record.read()
    if before is None and (work_dir / "state.json").exists():
        return BackendSpec()
    return before


def choose(file: Path, work_dir: Path, override: Path | None) -> tuple[Chosen, str | None]:
    """The backend for a command, and a note to show (or None).

    Raises :class:`BackendChanged` when the state is elsewhere than the file says.
    """
    if override is not None:
        spec = BackendSpec("local", {"path": str(override)})
        return Chosen(load_backend("local", path=override), spec, False), None
    spec = read_spec(file)
    project_dir = file.parent
    backend = open_spec(spec, project_dir)
    record = Recorded(work_dir)
    before = previous(record, work_dir)
    if before is None or same_place(before, spec, project_dir):
        # Recorded once the state was read from there (Workspace.read_state):
        # a place that cannot be reached leaves nothing behind.
        pending = before is None and (file.exists() or spec.name != "local")
        return Chosen(backend, spec, True, record if pending else None), None
    old = open_spec(before, project_dir)
    try:
        held = old.read()
    except StateError as e:
        raise BackendChanged(
            f"the project file now keeps the state in {spec.name} ({backend.describe()}), but it "
            f"was in {before.name} ({old.describe()}), which cannot be read: {e}; run "
            "`modelform init -migrate-state` once it can, or `modelform init -reconfigure` to "
            "use the new place as it is"
        ) from e
    if held is None:
        record.write(spec)
        note = (
            f"the state is now kept in {spec.name} ({backend.describe()}); the previous place, "
            f"{old.describe()}, held none"
        )
        return Chosen(backend, spec, True), note
    where = f"{spec.pos}: " if spec.pos else ""
    raise BackendChanged(
        f"{where}the project file keeps the state in {spec.name} ({backend.describe()}), but it "
        f"is in {before.name} ({old.describe()}, serial {held.serial}): run `modelform init "
        "-migrate-state` to move it there, or `modelform init -reconfigure` to use the new "
        "place as it is"
    )


def env_override() -> Path | None:
    value = os.environ.get("MODELFORM_STATE")
    return Path(value) if value else None
