"""The provider protocol (version 2): what every target kind implements.

Providers *propose*, the engine *decides*. A provider reads the real
object (refresh), proposes the planned attributes and which attribute
changes force replacement, and carries out the action the engine chose,
bound to the planned values it proposed. It never decides between create,
update and replace itself; :func:`modelform.engine.decide.decide` does that
for every provider alike.

What a provider may hold, beyond one flat resource per declared service:

* **options of its own kind** on services (``service_schema``) and targets
  (``target_schema``), checked by the engine at file:line;
* **child objects** recorded under a resource, each with its own identity
  in state (``service.api/deployment``): :attr:`Proposal.children` and
  :attr:`Applied.children`;
* **a target-owned resource** (``target_part``): one object per target of
  its kind, with its own digest, that either gathers every service on it
  (an edge device's manifest: planned and applied after them) or, with
  ``target_part_first``, holds them (a namespace: made before them,
  destroyed after them).

Providers are found through the ``modelform.providers`` entry-point group
only, built-ins exactly like third-party plugins, and import nothing of the
engine but :mod:`modelform.plugin`. One provider never imports another.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from modelform.engine.diagnostics import Diagnostic, Pos

#: The protocol this engine speaks. A provider declaring another is refused
#: when it is loaded, with a message naming it.
PROTOCOL_VERSION = 2


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


def coming_up(prior: Mapping[str, Any] | None, planned: Mapping[str, Any]) -> bool:
    """Whether a service is still coming up (``init()`` running, a rollout under way) and
    nothing else about it changes: then its plan keeps the Transitioning status rather than
    restarting it, which would only start it over; a later refresh sees it Healthy or not."""
    return (
        prior is not None
        and prior.get("status") == ServiceStatus.TRANSITIONING.value
        and all(prior.get(k) == v for k, v in planned.items() if k != "status")
    )


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
    #: A target-owned resource gets every service on its target here.
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Where each option came from, for diagnostics: ``option_pos("port")``.
    positions: dict[tuple[str | int, ...], Pos] = field(default_factory=dict)
    #: For a target-owned resource (``target_part``): the services on its
    #: target as resources of their own, by address — their options as
    #: written, references resolved as far as known, and their positions, so
    #: checks that need the whole target (two services' routes, a route naming
    #: another service's module) point at the right line. Empty otherwise.
    members: dict[str, Resource] = field(default_factory=dict)

    def option_pos(self, *path: str | int) -> Pos | None:
        p = tuple(path)
        while p:
            if p in self.positions:
                return self.positions[p]
            p = p[:-1]
        return self.pos


@dataclass
class Context:
    """What a provider may know of the run around it.

    ``target`` is the resolved configuration of the resource's target
    (``{"name": ..., "kind": ..., **options}``) in *every* call: read,
    plan, apply, check, delete and discover. Records in state keep the
    target they were made on, so a resource whose target left the project
    file is still read and deleted where it lives.
    """

    project: str
    project_dir: Path
    #: The project's working folder (``.modelform/`` beside the project file).
    work_dir: Path
    lineage: str
    target: dict[str, Any] = field(default_factory=dict)
    #: The address and type of the resource at hand ("" in discover).
    address: str = ""
    type: str = ""
    #: The child objects recorded under the resource, by name (read, delete).
    children: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Progress lines for long steps (build output, waiting for health).
    log: Callable[[str], None] = lambda line: None
    #: True once the user pressed Ctrl-C: stop waiting, record what exists.
    cancelled: Callable[[], bool] = lambda: False
    #: Where models live: ``models.folder(attrs, project_dir)`` is a model
    #: version's folder.
    models: Any = None
    #: True when the engine replaces the object whatever the proposal says
    #: (``-replace``, a tainted record, and in apply for every replace): plan
    #: its successor, so values of the current object (its id, its process)
    #: are UNKNOWN, not the prior ones.
    replacing: bool = False

    def sleep(self, seconds: float, elsewhere: bool = False) -> None:
        """Wait up to ``seconds``; raise :class:`Cancelled` as soon as the
        user interrupts. Every wait of a provider goes through here, so
        Ctrl-C stops a readiness wait within a fraction of a second.

        ``elsewhere``: the wait is for work that runs elsewhere (a rollout on
        a cluster), not on this machine: the step gives up its ``-parallelism``
        slot while it sleeps, so other resources can start meanwhile. A wait
        for a process on this machine keeps its slot (it bounds the load)."""
        from modelform.engine.walk import waiting

        deadline = time.monotonic() + seconds
        with waiting() if elsewhere else contextlib.nullcontext():
            while True:
                if self.cancelled():
                    raise Cancelled("interrupted")
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                time.sleep(min(left, 0.05))


@dataclass
class Child:
    """A child object recorded under a resource (a Kubernetes Deployment
    under ``service.api``): its type and attributes, stored in state as
    ``service.api/<name>``. In a proposal, ``requires_replace`` names the
    keys whose change replaces the child (not its parent)."""

    type: str
    attributes: dict[str, Any]
    requires_replace: set[str] = field(default_factory=set)


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
    #: Child objects the resource will have, by name.
    children: dict[str, Child] = field(default_factory=dict)
    #: Attribute keys whose values are secret (masked in every output).
    sensitive: set[str] = field(default_factory=set)


@dataclass
class ApplyRequest:
    """The planned change apply carries out; the provider plans nothing here.

    ``planned`` holds the values the plan showed, with references now
    resolved; a value still UNKNOWN is the provider's to compute (an id, a
    process, a generated key). What the provider returns is checked against
    every known planned value.
    """

    action: Action
    resource: Resource
    prior: dict[str, Any] | None
    planned: dict[str, Any]
    prior_children: dict[str, dict[str, Any]] = field(default_factory=dict)
    planned_children: dict[str, Child] = field(default_factory=dict)


@dataclass
class Applied:
    """What exists after apply: the resource's attributes and its children."""

    attributes: dict[str, Any]
    children: dict[str, Child] = field(default_factory=dict)


@dataclass
class Check:
    """The result of a provider's check of what it just made (health, the
    service's ``test:`` request). A failed check taints the object."""

    ok: bool
    status: str | None = None
    message: str = ""
    log: str = ""


class ProviderError(Exception):
    """An apply or read that failed for a reason the user should see.

    ``log`` carries the relevant lines (build log, scoring-server log).
    ``attributes`` (and ``children``) describe an object that *was* made
    before the failure: the engine records it as tainted, so the next plan
    replaces it. Raising it fails only this resource and its dependents.
    """

    def __init__(
        self,
        message: str,
        log: str = "",
        status: str | None = None,
        attributes: dict[str, Any] | None = None,
        children: dict[str, Child] | None = None,
    ) -> None:
        super().__init__(message)
        self.log = log
        self.status = status
        self.attributes = attributes
        self.children = children or {}


class Cancelled(ProviderError):
    """The user interrupted a step; raised by :meth:`Context.sleep`."""


class Provider:
    """Base class of every provider. Subclasses set ``kind`` and override
    at least :meth:`plan`, :meth:`apply` and :meth:`delete`."""

    kind: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: The protocol version the provider was written for. Every provider
    #: declares it (``protocol_version = PROTOCOL_VERSION``): one written for
    #: version 1, before it existed, is refused when loaded, not at apply.
    protocol_version: ClassVar[int | None] = None
    #: Resource types this provider manages ("service", or "model", ...).
    resource_types: ClassVar[tuple[str, ...]] = ("service",)
    #: True when ``read`` answers from local data without waiting on a
    #: network or process; the engine then skips its thread pool.
    read_is_cheap: ClassVar[bool] = False
    #: When set (``"manifest"``), the provider owns one resource per target
    #: of its kind, ``target.<name>/<part>``, gathering every service on it.
    target_part: ClassVar[str | None] = None
    #: Where that resource stands: False (the default) after the target's
    #: services, gathering them (an edge device's manifest); True before
    #: them, holding them (a Kubernetes namespace): every service on the
    #: target then depends on it, so it is made first and destroyed last.
    target_part_first: ClassVar[bool] = False
    #: Attribute keys of a service that report what runs rather than what was
    #: declared (an edge module's runtime status, kept by the device's
    #: deployment, not by the service): ``read`` refreshes them into state and
    #: ``modelform status`` shows them, but a difference is never drift and
    #: never a change. Plan them UNKNOWN; apply returns what it sees.
    observed: ClassVar[frozenset[str]] = frozenset()

    # -- schema -------------------------------------------------------------
    def target_schema(self) -> dict[str, Any]:
        """JSON Schema of this kind's target options (besides ``kind``)."""
        return {"type": "object", "properties": {}, "additionalProperties": False}

    def service_schema(self) -> dict[str, Any]:
        """JSON Schema of the service options this kind honours, beyond the
        ones every service has (target, models, environment, entry_script,
        source_dir, env, test, description). A property with
        ``"sensitive": true`` is masked in every output. The shared options
        (port, auth, replicas, …) are taken with
        :func:`modelform.plugin.shared_options`; an option a kind leaves out
        is an error on services of that kind, never silently dropped."""
        return {"type": "object", "properties": {}, "additionalProperties": False}

    def attributes(self, resource_type: str) -> dict[str, str] | None:
        """The attributes a resource of ``resource_type`` exposes to
        ``${...}`` references, name → description; None = not declared
        (references to it are then not checked before planning)."""
        return None

    def validate(self, resource: Resource, ctx: Context) -> list[Diagnostic]:
        """Checks a schema cannot express, on the resolved resource, before it
        is planned (``resource.option_pos("key")`` gives file:line). Any
        diagnostic stops the plan; the CLI prints each on one line."""
        return []

    # -- refresh ------------------------------------------------------------
    def read(self, prior: dict[str, Any], ctx: Context) -> dict[str, Any] | None:
        """Refresh: the real object's attributes now, or None when it is gone.
        Called for every record, children included (``ctx.type``)."""
        return prior

    def identity(self, attributes: dict[str, Any]) -> str | None:
        """What tells one real object from another (a container id, a pid and
        start time); the engine compares it to match discovered objects."""
        value = attributes.get("id")
        return None if value is None else str(value)

    def discover(self, ctx: Context) -> list[dict[str, Any]]:
        """Objects this provider made for this project on ``ctx.target`` (found
        by label/marker), each ``{"address", "attributes", "complete"}``, so the
        engine can adopt or report the ones that state does not know."""
        return []

    # -- plan and apply -----------------------------------------------------
    def plan(self, resource: Resource, prior: dict[str, Any] | None, ctx: Context) -> Proposal:
        raise NotImplementedError

    def apply(self, request: ApplyRequest, ctx: Context) -> Applied:
        """Create, update or replace as planned; return what now exists."""
        raise NotImplementedError

    def check(self, request: ApplyRequest, applied: Applied, ctx: Context) -> Check:
        """Check what apply made (health, the ``test:`` request) from where
        it can be reached. A failed check taints the object."""
        return Check(ok=True)

    def delete(self, address: str, prior: dict[str, Any], ctx: Context) -> None:
        """Remove the object and its children (``ctx.children``)."""
        raise NotImplementedError

    # -- other commands -----------------------------------------------------
    def import_(self, address: str, ident: str, ctx: Context) -> dict[str, Any]:
        raise NotImplementedError(f"{self.kind} cannot import existing objects")

    def package(self, resource: Resource, ctx: Context, push: bool) -> dict[str, Any]:
        """Build (and push) the service's deployable artefact without deploying
        it (``modelform package``); image-building targets override this."""
        raise NotImplementedError(f"target kind {self.kind} does not build images")

    def logs(self, address: str, attributes: dict[str, Any], ctx: Context, tail: int = 200) -> str:
        return ""

    def invoke(
        self, attributes: dict[str, Any], body: bytes, ctx: Context
    ) -> tuple[int, bytes] | None:
        """Send a scoring request (``modelform invoke``) where this machine cannot
        reach ``attributes["url"]`` itself (a cluster): the answer's status and
        body. None (the default): the CLI posts to the URL directly."""
        return None

    def status_detail(self, attributes: dict[str, Any], ctx: Context) -> str:
        """A short live detail for ``modelform status`` (``2/3 ready``), read after
        :meth:`read`; "" for none. Never part of the attributes, so it is
        never drift."""
        return ""


#: Methods a provider must override to be loaded.
REQUIRED_METHODS = ("plan", "apply", "delete")
