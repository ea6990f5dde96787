"""The versioned JSON form of a plan (``plan -json``, ``-out`` files, drift).

Documented in docs/plan-format.md; ``format_version`` changes on any
incompatible change. Unknown values are ``{"__unknown__": true}``;
sensitive attributes (``key``) are replaced by ``"(sensitive value)"``.
"""

from __future__ import annotations

from typing import Any

from modelform.engine import outputs
from modelform.engine.plan import Change, ChildChange, Drift, Mode, Plan
from modelform.engine.provider import Action
from modelform.engine.values import from_json, to_json

FORMAT_VERSION = 2
#: Attribute keys secret whatever the provider (a service's generated key).
SENSITIVE = ("key",)


def _mask(
    attrs: dict[str, Any] | None, mask: bool, keys: list[str] | tuple[str, ...] = ()
) -> dict[str, Any] | None:
    if attrs is None or not mask:
        return attrs
    secret = {*SENSITIVE, *keys}
    return {k: ("(sensitive value)" if k in secret and v else v) for k, v in attrs.items()}


def child_json(c: ChildChange, mask: bool = True, keys: list[str] | None = None) -> dict[str, Any]:
    return {
        "name": c.name,
        "type": c.type,
        "action": c.action.value,
        "reasons": c.reasons,
        "changed": c.changed,
        "requires_replace": c.requires_replace,
        "before": to_json(_mask(c.before, mask, keys or ())),
        "after": to_json(_mask(c.after, mask, keys or ())),
    }


def change_json(c: Change, mask: bool = True) -> dict[str, Any]:
    return {
        "address": c.address,
        "type": c.type,
        "name": c.name,
        "provider": c.provider,
        "action": c.action.value,
        "reasons": c.reasons,
        "notes": c.notes,
        "changed": c.changed,
        "depends_on": c.depends_on,
        "orphan": c.orphan,
        "sensitive": c.sensitive,
        "target": c.target,
        "children": [child_json(ch, mask, c.sensitive) for ch in c.children],
        "before": to_json(_mask(c.before, mask, c.sensitive)),
        "after": to_json(_mask(c.after, mask, c.sensitive)),
    }


def drift_json(d: Drift, mask: bool = True) -> dict[str, Any]:
    return {
        "address": d.address,
        "kind": d.kind,
        "changed": d.changed,
        "before": to_json(_mask(d.before, mask)),
        "after": to_json(_mask(d.after, mask)),
    }


def plan_json(plan: Plan, mask: bool = True) -> dict[str, Any]:
    def snap(recs: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return {a: {**r, "attributes": _mask(r["attributes"], mask)} for a, r in recs.items()}

    return {
        "format_version": FORMAT_VERSION,
        "kind": "modelform-plan",
        "project": plan.project,
        "mode": plan.mode.value,
        "lineage": plan.lineage,
        "serial": plan.serial,
        "inputs_digest": plan.inputs_digest,
        "has_changes": plan.has_changes,
        "summary": plan.counts(),
        "changes": [change_json(c, mask) for c in plan.changes],
        "drift": [drift_json(d, mask) for d in plan.drift],
        "output_changes": [outputs.change_json(o, mask) for o in plan.outputs],
        "prior_state": to_json(snap(plan.prior)),
        "refreshed_state": to_json(snap(plan.refreshed)),
        "variables": plan.variables,
        "sensitive_variables": plan.sensitive_variables,
    }


def plan_from_json(data: dict[str, Any]) -> Plan:
    if data.get("kind") != "modelform-plan":
        raise ValueError("not a modelform plan file")
    if data.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"plan format_version {data.get('format_version')} is not {FORMAT_VERSION}"
        )
    changes = [
        Change(
            address=c["address"],
            type=c["type"],
            name=c["name"],
            provider=c["provider"],
            action=Action(c["action"]),
            before=from_json(c["before"]),
            after=from_json(c["after"]),
            reasons=c["reasons"],
            notes=c["notes"],
            changed=c["changed"],
            depends_on=c["depends_on"],
            orphan=c["orphan"],
            sensitive=list(c.get("sensitive", [])),
            target=c.get("target"),
            children=[
                ChildChange(
                    name=ch["name"],
                    type=ch["type"],
                    action=Action(ch["action"]),
                    before=from_json(ch["before"]),
                    after=from_json(ch["after"]),
                    reasons=ch["reasons"],
                    changed=ch["changed"],
                    requires_replace=ch.get("requires_replace", []),
                )
                for ch in c.get("children", [])
            ],
        )
        for c in data["changes"]
    ]
    drift = [
        Drift(d["address"], d["kind"], from_json(d["before"]), from_json(d["after"]), d["changed"])
        for d in data["drift"]
    ]
    return Plan(
        project=data["project"],
        mode=Mode(data["mode"]),
        lineage=data["lineage"],
        serial=data["serial"],
        changes=changes,
        drift=drift,
        prior=from_json(data["prior_state"]),
        refreshed=from_json(data["refreshed_state"]),
        inputs_digest=data["inputs_digest"],
        variables=data.get("variables", {}),
        sensitive_variables=list(data.get("sensitive_variables", [])),
        outputs=[outputs.change_from_json(o) for o in data.get("output_changes", [])],
    )
