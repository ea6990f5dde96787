"""The loaded project file: plain data plus where each piece came from.

``Config`` is what the loader (:mod:`modelform.engine.loader`) returns and
what the graph builder and planner consume. Values are plain YAML data
(dicts, lists, scalars); strings may still hold ``${...}`` references to
models, environments, targets or services, which the engine resolves
while walking the graph. ``${var.x}`` references are already substituted
by the loader (variables are known before planning).

Every node keeps its position: ``Config.pos(("services", "api", "port"))``
gives the file, line and column of that value, or of its nearest
ancestor that has one, so later stages can point at the right line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelform.engine.diagnostics import Pos

Path_ = tuple[str | int, ...]

#: Sections that declare resources, in the order of their addresses' types.
SECTIONS: dict[str, str] = {
    "models": "model",
    "environments": "environment",
    "targets": "target",
    "services": "service",
}

#: The target services use when they name none: the local process target.
DEFAULT_TARGET = "local"


@dataclass
class Variable:
    name: str
    default: Any = None
    description: str = ""
    type: str | None = None
    required: bool = False
    sensitive: bool = False


@dataclass
class Output:
    """One ``outputs:`` entry, in its long form whatever was written.

    ``value`` is a template like any other string of the file (``${var.x}``
    already put in); ``vars`` names the variables it used before they were,
    so a value derived from a sensitive variable is known to be sensitive.
    """

    name: str
    value: Any
    description: str = ""
    sensitive: bool = False
    vars: tuple[str, ...] = ()


@dataclass
class Config:
    file: Path
    project: str
    variables: dict[str, Variable] = field(default_factory=dict)
    #: Final variable values (default < -var-file < MODELFORM_VAR_x < -var).
    var_values: dict[str, Any] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    environments: dict[str, dict[str, Any]] = field(default_factory=dict)
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ``model_store:`` as written (kind and options; defaults filled).
    model_store: dict[str, Any] = field(default_factory=dict)
    #: ``outputs:`` by name (see :mod:`modelform.engine.outputs_config`).
    outputs: dict[str, Output] = field(default_factory=dict)
    positions: dict[Path_, Pos] = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return self.file.parent

    def section(self, name: str) -> dict[str, dict[str, Any]]:
        return getattr(self, name)  # type: ignore[no-any-return]

    def positions_under(self, section: str, name: str) -> dict[Path_, Pos]:
        """Positions inside one declared thing, relative to it (``("port",)``),
        indexed once for all of them: a plan asks for every resource's."""
        index = self.__dict__.get("_under")
        if index is None:
            index = {}
            for p, pos in self.positions.items():
                if len(p) > 2 and isinstance(p[0], str) and isinstance(p[1], str):
                    index.setdefault((p[0], p[1]), {})[p[2:]] = pos
            self.__dict__["_under"] = index
        found: dict[Path_, Pos] = index.get((section, name), {})
        return found

    def pos(self, path: Path_) -> Pos:
        """Position of ``path`` or of its nearest ancestor that has one."""
        p = tuple(path)
        while p:
            if p in self.positions:
                return self.positions[p]
            p = p[:-1]
        return self.positions.get((), Pos(str(self.file), 1, 1))
