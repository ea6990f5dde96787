"""Output values: what a plan says about them and how state records them.

An output is a named value the project file exports (``outputs:``), computed
from the applied attributes after apply and recorded in state as
``{name: {"value": …, "type": …, "sensitive": bool}}`` — the shape
``modelform output -json`` prints, Terraform's. This module is plain data;
:mod:`modelform.engine.outputs_eval` computes the values and
:mod:`modelform.engine.outputs_config` reads them from the project file.

A plan carries one :class:`OutputChange` per output that is, was or will be
(``Plan.outputs``, in name order). Their ``before``/``after`` are in clear:
every view masks a sensitive one (:func:`shown`), a saved plan file keeps it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from modelform.engine.provider import Action
from modelform.engine.values import UNKNOWN, from_json, is_known, to_json
from modelform.engine.variables import infer_type

#: What a sensitive output shows wherever modelform prints it masked.
MASK = "(sensitive value)"


@dataclass
class OutputChange:
    name: str
    #: create, update, delete or no-op.
    action: Action
    #: As recorded in state (None: not recorded).
    before: Any
    #: As it will be after apply: :data:`~modelform.engine.values.UNKNOWN`
    #: while a value it derives from is known only after apply; None for a delete.
    after: Any
    sensitive: bool = False


def value_type(value: Any) -> str:
    """The type name recorded beside a value: string, number, bool, list,
    map or null (simple names, not Terraform's type expressions)."""
    return infer_type(value) or "null"


def recorded(value: Any, sensitive: bool) -> dict[str, Any]:
    """One output as state records it."""
    return {"value": value, "type": value_type(value), "sensitive": sensitive}


def diff(
    prior: dict[str, dict[str, Any]], planned: dict[str, tuple[Any, bool]]
) -> list[OutputChange]:
    """Output changes from the recorded outputs (``prior``, state's shape) to
    the ``planned`` ones (name → (value or UNKNOWN, sensitive)), by name.

    A value still unknown is an update only when its recorded value exists
    (it may change); a sensitive flag that changes is an update too.
    """
    out = []
    for name in sorted(set(prior) | set(planned)):
        old = prior.get(name)
        before = None if old is None else old.get("value")
        if name not in planned:
            secret_before = bool(old and old.get("sensitive"))
            out.append(OutputChange(name, Action.DELETE, before, None, secret_before))
            continue
        after, secret = planned[name]
        if old is None:
            action = Action.CREATE
        elif not is_known(after) or after != before or bool(old.get("sensitive")) != secret:
            action = Action.UPDATE
        else:
            action = Action.NOOP
        out.append(OutputChange(name, action, before, after, secret))
    return out


def shown(value: Any, sensitive: bool) -> str:
    """A value as the human views print it: JSON text, ``(known after apply)``
    or the mask."""
    if value is UNKNOWN:
        return "(known after apply)"
    if sensitive:
        return MASK
    return json.dumps(value, sort_keys=True, default=repr)


def change_json(c: OutputChange, mask: bool = True) -> dict[str, Any]:
    """One ``output_changes`` entry of the plan document (docs/plan-format.md)."""

    def v(x: Any) -> Any:
        if x is None or x is UNKNOWN or not mask or not c.sensitive:
            return to_json(x)
        return MASK

    return {
        "name": c.name,
        "action": c.action.value,
        "sensitive": c.sensitive,
        "before": v(c.before),
        "after": v(c.after),
    }


def change_from_json(d: dict[str, Any]) -> OutputChange:
    return OutputChange(
        d["name"], Action(d["action"]), from_json(d["before"]), from_json(d["after"]),
        bool(d.get("sensitive")),
    )  # fmt: skip


def plan_text(changes: list[OutputChange], paint: dict[Action, str], end: str = "") -> str:
    """The "Changes to Outputs:" block of the human plan (empty when none):
    ``paint`` gives each action's colour code, ``end`` closes it."""
    lines = []
    for c in changes:
        mark = f"{paint.get(c.action, '')}{c.action.symbol}{end}"
        if c.action is Action.CREATE:
            lines.append(f"  {mark} {c.name} = {shown(c.after, c.sensitive)}")
        elif c.action is Action.DELETE:
            lines.append(f"  {mark} {c.name} = {shown(c.before, c.sensitive)} → null")
        elif c.action is Action.UPDATE:
            b, a = shown(c.before, c.sensitive), shown(c.after, c.sensitive)
            lines.append(f"  {mark} {c.name} = {b} → {a}")
    return "\nChanges to Outputs:\n" + "".join(f"{x}\n" for x in lines) if lines else ""


def listing(outputs: dict[str, dict[str, Any]]) -> str:
    """Recorded outputs as ``name = value`` lines, sensitive ones masked
    (after apply, ``modelform output``)."""
    return "".join(
        f"{n} = {shown(o.get('value'), bool(o.get('sensitive')))}\n"
        for n, o in sorted(outputs.items())
    )


def masked(outputs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Recorded outputs with sensitive values masked (the -json views of plan and apply)."""
    return {n: {**o, "value": MASK} if o.get("sensitive") else dict(o) for n, o in outputs.items()}
