"""The one place that maps a provider's proposal to an Action.

Providers propose planned attributes and which keys force replacement;
this function alone decides, so every provider behaves alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from modelform.engine.provider import Action, Child, Proposal
from modelform.engine.values import UNKNOWN, is_known


def changed_keys(prior: dict[str, Any], planned: dict[str, Any]) -> list[str]:
    """Keys whose planned value differs from the prior one.

    A planned value that is wholly UNKNOWN is computed by the provider and
    is never a change by itself; a value only partly unknown (an input that
    depends on something not yet applied) counts as a change.
    """
    out = []
    for k, v in planned.items():
        if v is UNKNOWN:
            continue
        if not is_known(v) or prior.get(k) != v:
            out.append(k)
    return out


#: Masks the secrets in a value (a Redactor's ``value``) before it is shown.
Mask = Callable[[Any], Any]


def _show(v: Any, mask: Mask | None = None) -> str:
    """A value for a reason line, secrets masked *before* it is cut to 60
    characters (a cut secret would no longer be recognised, and leak its start)."""
    if v is UNKNOWN:
        return "(known after apply)"
    if mask is not None:
        v = mask(v)
    text = json.dumps(v, default=repr, sort_keys=True) if not isinstance(v, str) else v
    return text if len(text) <= 60 else text[:57] + "..."


def _reasons(
    prior: dict[str, Any], planned: dict[str, Any], changed: list[str],
    given: dict[str, str], replace_on: set[str], mask: Mask | None = None,
    secret_keys: set[str] | frozenset[str] = frozenset(),
) -> list[str]:  # fmt: skip
    reasons: list[str] = []
    for k in changed:
        if k in secret_keys:
            shown = f"{k}: (sensitive value) changed"
        else:
            shown = f"{k}: {_show(prior.get(k), mask)} → {_show(planned[k], mask)}"
        why = given.get(k) or shown
        if k in replace_on:
            why += f" ({k} forces replacement)"
        if why not in reasons:
            reasons.append(why)
    return reasons


def decide_child(
    prior: dict[str, Any] | None, planned: Child | None, mask: Mask | None = None
) -> tuple[Action, list[str], list[str]]:
    """(action, changed keys, reasons) for one child object of a resource."""
    if planned is None:
        return (Action.NOOP, [], []) if prior is None else (Action.DELETE, [], ["no longer wanted"])
    if prior is None:
        return Action.CREATE, [], []
    changed = changed_keys(prior, planned.attributes)
    if not changed:
        return Action.NOOP, [], []
    reasons = _reasons(prior, planned.attributes, changed, {}, planned.requires_replace, mask)
    if set(changed) & planned.requires_replace:
        return Action.REPLACE, changed, reasons
    return Action.UPDATE, changed, reasons


def decide(
    prior: dict[str, Any] | None,
    proposal: Proposal,
    force_replace: bool = False,
    tainted: str | None = None,
    children_changed: bool = False,
    mask: Mask | None = None,
) -> tuple[Action, list[str], list[str]]:
    """(action, changed keys, reasons) for one resource that is in config;
    ``mask`` hides secrets in the reasons' values (the provider's sensitive
    keys are never shown at all).

    ``tainted`` (the reason) replaces a resource whose check failed after it
    was made; ``children_changed`` updates a resource whose own attributes
    are as planned but one of whose child objects is not.
    """
    if prior is None:
        return Action.CREATE, [], []
    changed = changed_keys(prior, proposal.planned)
    reasons = _reasons(
        prior, proposal.planned, changed, proposal.reasons, proposal.requires_replace, mask,
        proposal.sensitive,
    )  # fmt: skip
    if force_replace:
        return Action.REPLACE, changed, [*reasons, "replacement requested with -replace"]
    if tainted is not None:
        return Action.REPLACE, changed, [f"tainted: {tainted}", *reasons]
    if not changed:
        return (Action.UPDATE, [], []) if children_changed else (Action.NOOP, [], [])
    if set(changed) & proposal.requires_replace:
        return Action.REPLACE, changed, reasons
    return Action.UPDATE, changed, reasons
