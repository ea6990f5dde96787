"""The provider protocol: what every target kind implements.

Providers *propose*, the engine *decides*. A provider reads the real
object (refresh), proposes the planned attributes and which attribute
changes force replacement, and carries out the action the engine chose.
It never decides between create, update and replace itself; one function
in :mod:`modelform.engine.planner` does that for every provider alike.

Providers are found through the ``modelform.providers`` entry-point group
only, built-ins exactly like third-party plugins. One provider never
imports another; shared pieces live below both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from modelform.engine.diagnostics import Diagnostic, Pos


class Action(StrEnum):
    """What apply will do to one resource; the value is the display symbol."""

    NOOP = "no-op"
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"
    READ = "read"

    @property
    def symbol(self) -> str:
        return {
            "no-op": " ",
            "create": "+",
            "update": "~",
            "replace": "-/+",
            "delete": "-",
            "read": "<=",
        }[self.value]


class ServiceStatus(StrEnum):
    """States a deployed service reports, as in the classic workflow."""

    TRANSITIONING = "Transitioning"
    HEALTHY = "Healthy"
    UNHEALTHY = "Unhealthy"
    UNSCHEDULABLE = "Unschedulable"
    FAILED = "Failed"


@dataclass
class Resource:
    """The desired state of one resource, references resolved as far as known.

    ``config`` may hold :data:`modelform.engine.values.UNKNOWN` while
    planning; at apply time every reference is resolved.
    """

    address: str
    type: str
    name: str
    provider: str
    config: dict[str, Any]
    digests: dict[str, str] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    pos: Pos | None = None
    #: Planned (while planning) or real (while applying) attributes of the
    #: resources this one depends on, by address: ``inputs["model.ridge"]``.
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Context:
    """What a provider may know of the run around it."""

    project: str
    project_dir: Path
    #: The project's working folder (``.modelform/`` beside the project file).
    work_dir: Path
    lineage: str
    #: The resolved configuration of the service's target (empty for others).
    target: dict[str, Any] = field(default_factory=dict)
    #: Progress lines for long steps (build output, waiting for health).
    log: Callable[[str], None] = lambda line: None
    #: Set when the user pressed Ctrl-C: finish the step at hand, start none.
    cancelled: Callable[[], bool] = lambda: False


@dataclass
class Proposal:
    """A provider's answer to "what would you make of this resource?"."""

    #: Every attribute the resource will have; computed ones may be UNKNOWN.
    planned: dict[str, Any]
    #: Attribute keys whose change cannot be done in place.
    requires_replace: set[str] = field(default_factory=set)
    #: Optional display reason per changed key ("model ridge: ridge:1 → ridge:2").
    reasons: dict[str, str] = field(default_factory=dict)
    #: Display notes on how the action is carried out ("new container started first").
    notes: list[str] = field(default_factory=list)


class ProviderError(Exception):
    """An apply or read that failed for a reason the user should see.

    ``log`` carries the relevant lines (build log, scoring-server log).
    Raising it fails only this resource and its dependents.
    """

    def __init__(self, message: str, log: str = "", status: str | None = None) -> None:
        super().__init__(message)
        self.log = log
        self.status = status


class Provider:
    """Base class of every provider. Subclasses set ``kind`` and override."""

    kind: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: Resource types this provider manages ("service", or "model", ...).
    resource_types: ClassVar[tuple[str, ...]] = ("service",)
    #: True when ``read`` answers from local data without waiting on a
    #: network or process; the engine then skips its thread pool.
    read_is_cheap: ClassVar[bool] = False

    def target_schema(self) -> dict[str, Any]:
        """JSON Schema of this kind's target options (besides ``kind``)."""
        return {"type": "object", "properties": {}, "additionalProperties": True}

    def validate(self, resource: Resource, ctx: Context) -> list[Diagnostic]:
        return []

    def read(self, prior: dict[str, Any], ctx: Context) -> dict[str, Any] | None:
        """Refresh: the real object's attributes now, or None when it is gone."""
        return prior

    def plan(self, resource: Resource, prior: dict[str, Any] | None, ctx: Context) -> Proposal:
        raise NotImplementedError

    def apply(
        self,
        action: Action,
        resource: Resource,
        prior: dict[str, Any] | None,
        ctx: Context,
    ) -> dict[str, Any]:
        """Create, update or replace; return the attributes now real."""
        raise NotImplementedError

    def delete(self, address: str, prior: dict[str, Any], ctx: Context) -> None:
        raise NotImplementedError

    def discover(self, ctx: Context) -> list[dict[str, Any]]:
        """Objects this provider made for this project (found by label/marker),
        each with ``address`` and attributes, so the engine can adopt or
        report the ones that state does not know."""
        return []

    def import_(self, address: str, ident: str, ctx: Context) -> dict[str, Any]:
        raise NotImplementedError(f"{self.kind} cannot import existing objects")

    def package(self, resource: Resource, ctx: Context, push: bool) -> dict[str, Any]:
        """Build (and push) the service's deployable artefact without deploying
        it (``modelform package``); image-building targets override this."""
        raise NotImplementedError(f"target kind {self.kind} does not build images")

    def logs(self, address: str, attributes: dict[str, Any], ctx: Context, tail: int = 200) -> str:
        return ""
