"""plan(config, prior state) → Plan.

Refresh asks each provider for the real object (children included); the
desired resources are then resolved in dependency order, each provider
proposes, and :func:`modelform.engine.decide.decide` picks the action for
the resource and :func:`~modelform.engine.decide.decide_child` for each of
its child objects. Nothing here writes state or changes the world:
providers' ``read``/``plan``/``discover`` only look.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from modelform.engine import graph as graphs
from modelform.engine import outputs_eval, references, sensitive
from modelform.engine.config import DEFAULT_TARGET, SECTIONS, Config
from modelform.engine.decide import Mask, changed_keys, decide, decide_child
from modelform.engine.diagnostics import Diagnostic, DiagnosticError
from modelform.engine.digests import digest_json
from modelform.engine.modelstore import ModelStore, open_store
from modelform.engine.plan import Change, ChildChange, Drift, Mode, Plan
from modelform.engine.provider import Action, Context, Provider, Resource
from modelform.engine.registry import Registry, catalog
from modelform.engine.resources import (
    Node,
    address,
    child_index,
    desired_nodes,
    is_child,
    parent_of,
    record,
)
from modelform.engine.sensitive import Redactor, from_config
from modelform.engine.values import UNKNOWN

Records = dict[str, dict[str, Any]]


@dataclass
class Run:
    """What every step of a plan or apply shares: where and for whom."""

    config: Config
    registry: Registry
    work_dir: Path
    lineage: str
    log: Callable[[str, str], None] = lambda address, line: None
    cancelled: Callable[[], bool] = lambda: False
    parallelism: int = 10
    nodes: dict[str, Node] = field(default_factory=dict)
    models: ModelStore | None = None
    _secrets: Redactor | None = field(default=None, repr=False)

    def secrets(self) -> Redactor:
        """The project file's secrets, made once: plan reasons are masked with
        them before they are cut short."""
        if self._secrets is None:
            self._secrets = from_config(self.config, catalog(self.registry))
        return self._secrets

    def __post_init__(self) -> None:
        if self.models is None:
            self.models = open_store(self.config.model_store, self.config.dir)

    def context(
        self,
        address: str,
        target: dict[str, Any] | None = None,
        rtype: str = "",
        children: dict[str, dict[str, Any]] | None = None,
    ) -> Context:
        return Context(
            project=self.config.project,
            project_dir=self.config.dir,
            work_dir=self.work_dir,
            lineage=self.lineage,
            target=target or {},
            address=address,
            type=rtype,
            children=children or {},
            log=lambda line: self.log(address, line),
            cancelled=self.cancelled,
            models=self.models,
        )

    def provider(self, kind: str) -> Provider:
        return self.registry.get(kind)

    def target_parts(self) -> dict[str, str]:
        """kind → part name, for the kinds in use that own their target's resource."""
        kinds = {str(t.get("kind", "local")) for t in self.config.targets.values()}
        out = {}
        for kind in kinds:
            if self.registry.known(kind):
                part = self.provider(kind).target_part
                if part:
                    out[kind] = part
        return out

    def desired(self) -> dict[str, Node]:
        parts = self.target_parts()
        first = {k for k in parts if self.provider(k).target_part_first}
        self.nodes = desired_nodes(self.config, target_parts=parts, parts_first=first)
        return self.nodes


def _ref_value(
    ref: references.Ref, known: Records, node: Node, config: Config, section: str
) -> Any:
    dep = address(ref.section, ref.name)
    attrs = known.get(dep)
    if attrs is None:
        return UNKNOWN
    if ref.attr not in attrs:
        pos = config.pos((section, node.name, *ref.path))
        names = ", ".join(sorted(k for k in attrs if not k.startswith("_")))
        raise DiagnosticError(
            Diagnostic(
                f"{ref.section}.{ref.name} has no attribute {ref.attr!r}", pos, f"known: {names}"
            )
        )
    return attrs[ref.attr]


def target_of(node: Node, known: Records, config: Config) -> dict[str, Any]:
    """The resolved configuration of the node's target: name, kind, options."""
    if node.type == "service":
        tname = node.config.get("target") or DEFAULT_TARGET
    elif node.type == "target" and "/" in node.address:
        tname = node.name
    else:
        return {}
    attrs = known.get(f"target.{tname}")
    if attrs is None:
        body = config.targets.get(tname) or {"kind": "local"}
        attrs = {"name": tname, **body}
    return {k: v for k, v in attrs.items() if k != "digest"}


def resolve_node(node: Node, known: Records, config: Config, run: Run) -> tuple[Resource, Context]:
    """The node's resource with references resolved from ``known`` attributes."""
    section = (
        "targets" if "/" in node.address else next(s for s, t in SECTIONS.items() if t == node.type)
    )
    resolved = references.resolve(
        node.config, lambda ref: _ref_value(ref, known, node, config, section)
    )
    inputs = {dep: known.get(dep, {}) for dep in node.depends_on}
    positions = config.positions_under(section, node.name)
    members: dict[str, Resource] = {}
    if node.type == "target" and "/" in node.address:  # a target-owned resource
        for dep in sorted(node.depends_on):
            if dep.startswith("service.") and dep in run.nodes:
                members[dep] = resolve_node(run.nodes[dep], known, config, run)[0]
    resource = Resource(
        address=node.address,
        type=node.type,
        name=node.name,
        provider=node.provider,
        config=resolved,
        digests=node.digests,
        depends_on=tuple(sorted(node.depends_on)),
        pos=node.pos,
        inputs=inputs,
        positions=positions,
        members=members,
    )
    return resource, run.context(node.address, target_of(node, known, config), node.type)


def record_target(run: Run, addr: str, rec: dict[str, Any]) -> dict[str, Any]:
    """Where a recorded object lives: as recorded, else as the project file says."""
    if rec.get("target"):
        return dict(rec["target"])
    node = run.nodes.get(parent_of(addr) if is_child(addr, rec) else addr)
    return {} if node is None else target_of(node, {}, run.config)


def refresh(run: Run, prior: Records) -> tuple[Records, list[Drift]]:
    """Read every resource in state, children included; None means it is gone."""

    kids = child_index(prior)

    def read(item: tuple[str, dict[str, Any]]) -> tuple[str, dict[str, Any] | None]:
        addr, rec = item
        ctx = run.context(
            addr, record_target(run, addr, rec), rec.get("type", ""), kids.get(addr, {})
        )
        return addr, run.provider(rec["provider"]).read(dict(rec["attributes"]), ctx)

    items = list(prior.items())
    cheap = [i for i in items if run.provider(i[1]["provider"]).read_is_cheap]
    slow = [i for i in items if not run.provider(i[1]["provider"]).read_is_cheap]
    results = [read(i) for i in cheap]
    if slow:
        with ThreadPoolExecutor(max(1, min(run.parallelism, len(slow)))) as pool:
            results += list(pool.map(read, slow))
    refreshed: Records = {}
    drift: list[Drift] = []
    for addr, attrs in results:
        rec = prior[addr]
        if attrs is None:
            drift.append(Drift(addr, "deleted", rec["attributes"], None))
            continue
        if rec.get("tainted") and "status" in rec["attributes"]:
            # A failed check is the verdict until the object is made anew: a
            # process that answers /ready is still the one whose test failed.
            attrs = {**attrs, "status": rec["attributes"]["status"]}
        refreshed[addr] = {
            **rec,
            "attributes": attrs,
            "status": attrs.get("status", rec.get("status")),
        }
        observed = run.provider(rec["provider"]).observed
        keys = [
            k
            for k in changed_keys(rec["attributes"], attrs)
            + [k for k in rec["attributes"] if k not in attrs]
            if k not in observed
        ]
        if keys:
            drift.append(Drift(addr, "changed", rec["attributes"], attrs, sorted(set(keys))))
    return refreshed, drift


def _targets_of_kind(run: Run, kind: str, records: Records) -> list[dict[str, Any]]:
    """Every target of ``kind`` the project file declares or state records."""
    seen: dict[str, dict[str, Any]] = {}
    for name, body in run.config.targets.items():
        if str(body.get("kind", "local")) == kind:
            seen[name] = {"name": name, **body}
    implicit = kind == "local" and DEFAULT_TARGET not in run.config.targets
    if implicit and any(
        (svc.get("target") or DEFAULT_TARGET) == DEFAULT_TARGET
        for svc in run.config.services.values()
    ):
        seen[DEFAULT_TARGET] = {"name": DEFAULT_TARGET, "kind": "local"}
    for rec in records.values():
        t = rec.get("target")
        if rec["provider"] == kind and t and t.get("name") not in seen:
            seen[str(t.get("name"))] = dict(t)
    return list(seen.values())


def discover(
    run: Run, refreshed: Records, kinds: Iterable[str], prior: Records | None = None
) -> tuple[list[Drift], list[Change]]:
    """Objects a provider made for this project that state does not know:
    adopted when the provider knows their full attributes and the config
    still declares them, otherwise planned for deletion as orphans. Each
    kind looks on every target of that kind, with that target's options."""
    adopted: list[Drift] = []
    orphans: list[Change] = []
    everything = {**(prior or {}), **refreshed}
    for kind in sorted(set(kinds)):
        provider = run.provider(kind)
        found_ids: set[str] = set()
        for target in _targets_of_kind(run, kind, everything):
            for found in provider.discover(run.context("", target)):
                addr, attrs = found["address"], found["attributes"]
                ident = provider.identity(attrs) or "?"
                if ident in found_ids:
                    continue
                found_ids.add(ident)
                known = refreshed.get(addr)
                if known is not None and provider.identity(known["attributes"]) == ident:
                    continue
                node = run.nodes.get(addr)
                if known is None and node is not None and found.get("complete"):
                    refreshed[addr] = record(node, kind, attrs, target=target)
                    adopted.append(Drift(addr, "adopted", None, attrs))
                    continue
                orphans.append(
                    Change(
                        address=f"{addr}~orphan-{ident}",
                        type=addr.split(".", 1)[0],
                        name=addr.split(".", 1)[-1],
                        provider=kind,
                        action=Action.DELETE,
                        before=attrs,
                        after=None,
                        reasons=["found running but unknown to state: stopped and removed"],
                        orphan=True,
                        target=target,
                    )
                )
    return adopted, orphans


def inputs_digest(config: Config, nodes: dict[str, Node]) -> str:
    doc: dict[str, Any] = {
        "vars": config.var_values,
        "nodes": {a: [n.provider, n.config, n.digests] for a, n in sorted(nodes.items())},
    }
    if config.outputs:  # a project without outputs keeps the digest it had
        doc["outputs"] = {n: [o.value, o.sensitive] for n, o in sorted(config.outputs.items())}
    return digest_json(doc)


def _select(g: nx.DiGraph, targets: Iterable[str], destroy: bool) -> set[str] | None:
    targets = list(targets)
    if not targets:
        return None
    chosen: set[str] = set()
    for t in targets:
        matches = [n for n in g.nodes if n == t or n.startswith(t + ".") or n.startswith(t + "/")]
        if not matches:
            raise DiagnosticError(Diagnostic(f"-target {t}: no such resource in config or state"))
        for m in matches:
            chosen.add(m)
            chosen |= nx.descendants(g, m) if destroy else nx.ancestors(g, m)
    return chosen


def _child_changes(
    proposal_children: dict[str, Any], prior_children: dict[str, dict[str, Any]], whole: Action,
    mask: Mask | None = None,
) -> list[ChildChange]:  # fmt: skip
    """What happens to each child object; a created or replaced parent makes
    all its children anew."""
    out = []
    for name in sorted(set(proposal_children) | set(prior_children)):
        planned = proposal_children.get(name)
        rec = prior_children.get(name)
        before = rec["attributes"] if rec else None
        if whole in (Action.CREATE, Action.REPLACE) and planned is not None:
            action = Action.CREATE if whole is Action.CREATE or before is None else Action.REPLACE
            changed: list[str] = []
            reasons: list[str] = []
        else:
            action, changed, reasons = decide_child(before, planned, mask)
        out.append(
            ChildChange(
                name=name,
                type=planned.type if planned else (rec or {}).get("type", ""),
                action=action,
                before=before,
                after=planned.attributes if planned else None,
                reasons=reasons,
                changed=changed,
                requires_replace=sorted(planned.requires_replace) if planned else [],
            )
        )
    return out


def _taint_reason(rec: dict[str, Any] | None) -> str | None:
    if not rec or not rec.get("tainted"):
        return None
    status = rec.get("status") or (rec.get("attributes") or {}).get("status")
    why = f" (it was {status})" if status else ""
    return f"its check failed after the last apply{why}: it is made anew"


def make_plan(
    run: Run,
    prior: Records,
    *,
    mode: Mode = Mode.NORMAL,
    do_refresh: bool = True,
    targets: Iterable[str] = (),
    replace: Iterable[str] = (),
    serial: int = 0,
    prior_outputs: Mapping[str, dict[str, Any]] | None = None,
) -> Plan:
    """``prior_outputs``: the outputs state records (``State.outputs``)."""
    config = run.config
    nodes = run.desired()
    for addr, node in nodes.items():
        if not run.registry.known(node.provider):
            kinds = [k for k in run.registry.kinds() if k != "core"]
            raise DiagnosticError(
                Diagnostic(
                    f"{addr}: no provider for target kind {node.provider!r}",
                    node.pos,
                    f"installed kinds: {', '.join(kinds)}",
                )
            )
    own = {a: r for a, r in prior.items() if not is_child(a, r)}
    g = graphs.build(nodes, {a: r.get("dependencies", []) for a, r in own.items()})
    replace = set(replace)
    for r in replace:
        if r not in nodes:
            raise DiagnosticError(Diagnostic(f"-replace {r}: no such resource in config"))

    if do_refresh:
        refreshed, drift = refresh(run, prior)
        in_use = {n.provider for n in nodes.values()} | {r["provider"] for r in prior.values()}
        adopted, orphans = discover(run, refreshed, in_use - {"core"}, prior)
        drift += adopted
    else:
        refreshed, drift, orphans = {a: dict(r) for a, r in prior.items()}, [], []

    selected = _select(g, targets, mode is Mode.DESTROY)
    changes: list[Change] = []
    known: Records = {}
    if mode is Mode.REFRESH_ONLY:
        drift += [Drift(o.address, "orphan", o.before, None) for o in orphans]
    elif mode is Mode.DESTROY:
        kids = child_index(refreshed)
        for addr in reversed(list(nx.topological_sort(g))):
            rec = refreshed.get(addr)
            if rec is None or (selected is not None and addr not in selected):
                continue
            changes.append(_delete(run, addr, rec, "destroy requested", kids.get(addr, {})))
        changes += orphans
    else:
        kids = child_index(refreshed)
        for addr in nx.topological_sort(g):
            wanted = nodes.get(addr)
            rec = refreshed.get(addr)
            if selected is not None and addr not in selected:
                if rec is not None:
                    known[addr] = rec["attributes"]
                continue
            if wanted is None:
                if rec is not None:
                    why = "no longer in the project file"
                    changes.append(_delete(run, addr, rec, why, kids.get(addr, {})))
                continue
            changes.append(_plan_one(run, wanted, rec, known, kids.get(addr, {}), addr in replace))
        changes = orphans + changes
    plan = Plan(
        project=config.project,
        mode=mode,
        lineage=run.lineage,
        serial=serial,
        changes=changes,
        drift=drift,
        prior=prior,
        refreshed=refreshed,
        inputs_digest=inputs_digest(config, nodes),
        variables=dict(config.var_values),
        sensitive_variables=sorted(n for n, v in config.variables.items() if v.sensitive),
    )
    if (config.outputs or prior_outputs) and mode is not Mode.REFRESH_ONLY:
        if mode is Mode.DESTROY:  # what stays: the refreshed attributes
            gone = {c.address for c in changes}
            known = {a: r["attributes"] for a, r in refreshed.items() if a not in gone}
        secrets = sensitive.from_config(config, catalog(run.registry))
        secrets.add(sensitive.from_plan(plan))
        plan.outputs = outputs_eval.plan_changes(
            config, plan, known, prior_outputs or {}, secrets, targeted=selected is not None
        )
    return plan


def _plan_one(
    run: Run, node: Node, rec: dict[str, Any] | None, known: Records,
    prior_children: dict[str, dict[str, Any]], force_replace: bool,
) -> Change:  # fmt: skip
    resource, ctx = resolve_node(node, known, run.config, run)
    ctx.children = {n: r["attributes"] for n, r in prior_children.items()}
    provider = run.provider(node.provider)
    problems = provider.validate(resource, ctx)
    if problems:
        raise DiagnosticError(*problems)
    prior_attrs = rec["attributes"] if rec else None
    proposal = provider.plan(resource, prior_attrs, ctx)
    mask = run.secrets().value
    children = _child_changes(proposal.children, prior_children, Action.UPDATE, mask)
    children_changed = any(c.action is not Action.NOOP for c in children)
    tainted = _taint_reason(rec)
    action, changed, reasons = decide(
        prior_attrs, proposal, force_replace, tainted, children_changed, mask
    )
    if action is Action.REPLACE and (force_replace or tainted):
        ctx.replacing = True  # the successor's plan: its own id, process, …
        proposal = provider.plan(resource, prior_attrs, ctx)
    if action in (Action.CREATE, Action.REPLACE):  # every child is made anew
        children = _child_changes(proposal.children, prior_children, action, mask)
    if action is Action.UPDATE:
        for c in children:
            if c.action is not Action.NOOP:
                why = "; ".join(c.reasons) or c.action.value
                reasons.append(f"{c.type} {c.name}: {why}")
    known[node.address] = proposal.planned
    return Change(
        address=node.address,
        type=node.type,
        name=node.name,
        provider=node.provider,
        action=action,
        before=prior_attrs,
        after=proposal.planned,
        reasons=reasons,
        notes=proposal.notes if action is not Action.NOOP else [],
        changed=changed,
        depends_on=sorted(node.depends_on),
        children=children if action is not Action.NOOP else [],
        sensitive=sorted(proposal.sensitive),
    )


def _delete(
    run: Run, addr: str, rec: dict[str, Any], why: str, kids: dict[str, dict[str, Any]]
) -> Change:
    return Change(
        address=addr,
        type=rec.get("type", addr.split(".", 1)[0]),
        name=rec.get("name", addr.split(".", 1)[-1]),
        provider=rec["provider"],
        action=Action.DELETE,
        before=rec["attributes"],
        after=None,
        reasons=[why],
        depends_on=list(rec.get("dependencies", [])),
        children=[
            ChildChange(n, r.get("type", ""), Action.DELETE, r["attributes"], None)
            for n, r in sorted(kids.items())
        ],
        target=record_target(run, addr, rec) or None,
    )
