"""The plan: what apply will do, and the three snapshots it was made from.

A plan carries the state of the last run (``prior``), the state after
refresh (``refreshed``), and the changes from ``refreshed`` to the config.
Drift is ``prior`` and ``refreshed`` apart. Plans are data; views render
them, :mod:`modelform.engine.planfile` saves them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from modelform.engine.outputs import OutputChange
from modelform.engine.provider import Action


class Mode(StrEnum):
    NORMAL = "normal"
    DESTROY = "destroy"
    REFRESH_ONLY = "refresh-only"


@dataclass
class ChildChange:
    """What apply does to one child object of a resource (display and JSON;
    the provider carries it out as part of its parent's step)."""

    name: str
    type: str
    action: Action
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    reasons: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    requires_replace: list[str] = field(default_factory=list)


@dataclass
class Change:
    address: str
    type: str
    name: str
    provider: str
    action: Action
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Changed attribute keys (display and JSON).
    changed: list[str] = field(default_factory=list)
    depends_on: list[str] = field(default_factory=list)
    #: An object found in the real world that state does not know and that
    #: could not be adopted; deleting it removes nothing from state.
    orphan: bool = False
    #: The resource's child objects and what happens to each.
    children: list[ChildChange] = field(default_factory=list)
    #: Attribute keys whose values are secret (masked in every view).
    sensitive: list[str] = field(default_factory=list)
    #: Where a deleted object lives (its recorded or discovered target).
    target: dict[str, Any] | None = None


@dataclass
class Drift:
    address: str
    #: "changed", "deleted" (gone from the real world) or "adopted".
    kind: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    changed: list[str] = field(default_factory=list)


@dataclass
class Plan:
    project: str
    mode: Mode
    lineage: str | None
    serial: int
    changes: list[Change]
    drift: list[Drift]
    #: Snapshots as JSON-able dicts: address → resource JSON.
    prior: dict[str, dict[str, Any]]
    refreshed: dict[str, dict[str, Any]]
    #: Digest of every input the changes were computed from (config and files).
    inputs_digest: str = ""
    variables: dict[str, Any] = field(default_factory=dict)
    #: Names of the variables declared ``sensitive: true`` (their values are
    #: masked wherever the plan is shown, a saved plan's too).
    sensitive_variables: list[str] = field(default_factory=list)
    #: What happens to each output (engine.outputs), in name order.
    outputs: list[OutputChange] = field(default_factory=list)

    @property
    def output_changes(self) -> list[OutputChange]:
        """The outputs that change (no-ops left out)."""
        return [o for o in self.outputs if o.action is not Action.NOOP]

    @property
    def actionable(self) -> list[Change]:
        return [c for c in self.changes if c.action not in (Action.NOOP, Action.READ)]

    @property
    def has_changes(self) -> bool:
        if self.mode is Mode.REFRESH_ONLY:
            return bool(self.drift)
        return bool(self.actionable) or bool(self.output_changes)

    def counts(self) -> dict[str, int]:
        return summarize(self.actionable)


def summarize(changes: Iterable[Change]) -> dict[str, int]:
    """Terraform's summary counts: a replace is one add and one destroy too."""
    out = {"add": 0, "change": 0, "destroy": 0, "replace": 0}
    for c in changes:
        if c.action is Action.CREATE:
            out["add"] += 1
        elif c.action is Action.UPDATE:
            out["change"] += 1
        elif c.action is Action.DELETE:
            out["destroy"] += 1
        elif c.action is Action.REPLACE:
            out["replace"] += 1
            out["add"] += 1
            out["destroy"] += 1
    return out
