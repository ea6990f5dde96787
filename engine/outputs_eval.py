"""Output values computed from attributes: planned ones for ``plan``, real
ones after apply for the state.

Both are the same function of the project file's ``outputs:`` and the
attributes of every resource (planned attributes in a plan, recorded ones
after apply): references resolve as in a resource's configuration, a
resource not (yet) known gives :data:`~modelform.engine.values.UNKNOWN`.

An output is **sensitive** when it is marked ``sensitive: true`` or when its
value derives from a secret, marked or not:

* it names a sensitive variable;
* it references an attribute that is secret: ``key`` (secret everywhere),
  one a provider named in ``Proposal.sensitive`` (the change's, or the
  record's ``sensitive``), or an option a kind's schema marks sensitive;
* its value holds a secret value the :class:`~modelform.engine.sensitive.Redactor`
  knows (a secret that flowed into an attribute through a reference).

Pure: no I/O; the CLI hands the result to the state writer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelform.engine import references
from modelform.engine.config import Config, Output
from modelform.engine.outputs import OutputChange, diff, recorded
from modelform.engine.plan import Mode, Plan
from modelform.engine.planjson import SENSITIVE
from modelform.engine.provider import Action
from modelform.engine.references import Ref
from modelform.engine.sensitive import Redactor
from modelform.engine.values import UNKNOWN, is_known

Attrs = Mapping[str, Mapping[str, Any]]


def _refs(out: Output) -> list[Ref]:
    return [r for r in references.find_refs(out.value, ("outputs", out.name)) if r.address]


def value_of(out: Output, attrs: Attrs) -> Any:
    """The output's value from ``attrs`` (address → attributes); UNKNOWN when
    a resource it names is not known, or an attribute is known only after apply."""

    def lookup(ref: Ref) -> Any:
        found = attrs.get(ref.address or "")
        if found is None:
            return UNKNOWN
        return found.get(ref.attr or "")

    return references.resolve(out.value, lookup, ("outputs", out.name))


def is_sensitive(
    out: Output,
    value: Any,
    config: Config,
    secret_keys: Mapping[str, set[str] | list[str]],
    secrets: Redactor,
) -> bool:
    """Whether ``out`` (with ``value``) must be masked; see the module doc.
    ``secret_keys``: address → attribute keys its provider marked sensitive."""
    if out.sensitive:
        return True
    if any(v in config.variables and config.variables[v].sensitive for v in out.vars):
        return True
    for ref in _refs(out):
        attr = ref.attr or ""
        if attr in SENSITIVE or attr in secrets.keys:
            return True
        if attr in secret_keys.get(ref.address or "", ()):
            return True
    return is_known(value) and secrets.value(value) != value


def evaluate(
    config: Config, attrs: Attrs, secret_keys: Mapping[str, set[str] | list[str]], secrets: Redactor
) -> dict[str, tuple[Any, bool]]:
    """name → (value or UNKNOWN, sensitive) for every output of ``config``."""
    out = {}
    for name, o in sorted(config.outputs.items()):
        value = value_of(o, attrs)
        out[name] = (value, is_sensitive(o, value, config, secret_keys, secrets))
    return out


def plan_changes(
    config: Config,
    plan: Plan,
    planned: Attrs,
    prior_outputs: Mapping[str, dict[str, Any]],
    secrets: Redactor,
    targeted: bool = False,
) -> list[OutputChange]:
    """What a plan does to the recorded outputs. ``planned``: the attributes
    every resource will have (the planned ones, unknowns included).

    A destroy removes every output (a targeted one only those it leaves
    unknown); a refresh-only plan shows what the refreshed attributes give.
    """
    keys: dict[str, set[str]] = {}
    for c in plan.changes:
        keys.setdefault(c.address, set()).update(c.sensitive)
    for recs in (plan.prior, plan.refreshed):
        for addr, rec in recs.items():
            keys.setdefault(addr, set()).update(rec.get("sensitive") or ())
    if plan.mode is Mode.DESTROY and not targeted:
        return diff(dict(prior_outputs), {})
    values = evaluate(config, planned, keys, secrets)
    if plan.mode is Mode.DESTROY:
        values = {n: v for n, v in values.items() if is_known(v[0])}
    return diff(dict(prior_outputs), values)


def after_apply(
    config: Config, records: Mapping[str, Mapping[str, Any]], secrets: Redactor
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The outputs to record from the records apply left, and the names of
    those still unknown (not recorded: an error when apply succeeded)."""
    attrs = {a: r.get("attributes") or {} for a, r in records.items()}
    keys = {a: list(r.get("sensitive") or ()) for a, r in records.items()}
    secrets = Redactor(secrets.values, secrets.keys)
    for a in records:
        secrets.add(attrs[a][k] for k in {*SENSITIVE, *keys[a]} if attrs[a].get(k))
    values = evaluate(config, attrs, keys, secrets)
    done = {n: recorded(v, s) for n, (v, s) in values.items() if is_known(v)}
    return done, sorted(n for n, (v, _) in values.items() if not is_known(v))


def unknown_message(names: list[str], config: Config) -> str:
    """One line naming outputs still unknown after a successful apply."""
    what = ", ".join(
        f"{n} ({', '.join(r.text for r in _refs(config.outputs[n])) or 'no reference'})"
        for n in names
    )
    return (
        f"output value(s) still unknown after apply: {what}; "
        "the resource they reference was not applied (see the errors above) or has no such value"
    )


def final(
    config: Config,
    plan: Plan,
    records: Mapping[str, Mapping[str, Any]],
    prior_outputs: Mapping[str, dict[str, Any]],
    secrets: Redactor,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The outputs an apply of ``plan`` records, and those still unknown.

    A destroy removes what its plan said it removes (all, unless targeted);
    a refresh-only apply leaves them as they were; otherwise they are
    computed from the records the apply left (:func:`after_apply`).
    """
    if plan.mode is Mode.REFRESH_ONLY:
        return dict(prior_outputs), []
    if plan.mode is Mode.DESTROY:
        gone = {o.name for o in plan.outputs if o.action is Action.DELETE}
        return {n: dict(o) for n, o in prior_outputs.items() if n not in gone}, []
    return after_apply(config, records, secrets)
