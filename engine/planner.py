"""plan(config, prior state) → Plan.

Refresh asks each provider for the real object; the desired resources are
then resolved in dependency order, each provider proposes, and
:func:`modelform.engine.decide.decide` picks the action. Nothing here
writes state or changes the world: providers' ``read``/``plan`` only look.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from modelform.engine import graph as graphs
from modelform.engine import references
from modelform.engine.config import DEFAULT_TARGET, SECTIONS, Config
from modelform.engine.decide import changed_keys, decide
from modelform.engine.diagnostics import Diagnostic, DiagnosticError
from modelform.engine.digests import digest_json
from modelform.engine.plan import Change, Drift, Mode, Plan
from modelform.engine.provider import Action, Context, Provider, Resource
from modelform.engine.registry import Registry
from modelform.engine.resources import Node, address, desired_nodes, record
from modelform.engine.targetcheck import check_targets
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

    def context(self, address: str, target: dict[str, Any] | None = None) -> Context:
        return Context(
            project=self.config.project,
            project_dir=self.config.dir,
            work_dir=self.work_dir,
            lineage=self.lineage,
            target=target or {},
            log=lambda line: self.log(address, line),
            cancelled=self.cancelled,
        )

    def provider(self, kind: str) -> Provider:
        return self.registry.get(kind)


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


def resolve_node(node: Node, known: Records, config: Config, run: Run) -> tuple[Resource, Context]:
    """The node's resource with references resolved from ``known`` attributes."""
    section = next(s for s, t in SECTIONS.items() if t == node.type)
    resolved = references.resolve(
        node.config, lambda ref: _ref_value(ref, known, node, config, section)
    )
    inputs = {dep: known.get(dep, {}) for dep in node.depends_on}
    target: dict[str, Any] = {}
    if node.type == "service":
        tname = resolved.get("target") or DEFAULT_TARGET
        target = dict(known.get(f"target.{tname}") or {"kind": "local"})
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
    )
    return resource, run.context(node.address, target)


def refresh(run: Run, prior: Records) -> tuple[Records, list[Drift]]:
    """Read every resource in state; a None answer means it is gone."""

    def read(item: tuple[str, dict[str, Any]]) -> tuple[str, dict[str, Any] | None]:
        addr, rec = item
        # Records carry no target: a provider keeps what refresh needs of its
        # target (a Docker host, say) in the resource's own attributes.
        ctx = run.context(addr)
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
        refreshed[addr] = {
            **rec,
            "attributes": attrs,
            "status": attrs.get("status", rec.get("status")),
        }
        keys = changed_keys(rec["attributes"], attrs) + [
            k for k in rec["attributes"] if k not in attrs
        ]
        if keys:
            drift.append(Drift(addr, "changed", rec["attributes"], attrs, sorted(set(keys))))
    return refreshed, drift


def discover(
    run: Run, refreshed: Records, kinds: Iterable[str]
) -> tuple[list[Drift], list[Change]]:
    """Objects a provider made for this project that state does not know:
    adopted when the provider knows their full attributes and the config
    still declares them, otherwise planned for deletion as orphans."""
    adopted: list[Drift] = []
    orphans: list[Change] = []
    for kind in sorted(set(kinds)):
        provider = run.provider(kind)
        for found in provider.discover(run.context(kind)):
            addr, attrs = found["address"], found["attributes"]
            known = refreshed.get(addr)
            if known is not None and _same_object(known["attributes"], attrs):
                continue
            node = run.nodes.get(addr)
            if known is None and node is not None and found.get("complete"):
                refreshed[addr] = record(node, kind, attrs)
                adopted.append(Drift(addr, "adopted", None, attrs))
                continue
            ident = attrs.get("id") or attrs.get("pid") or "?"
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
                )
            )
    return adopted, orphans


def _same_object(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = [k for k in ("id", "pid", "container_id") if k in a or k in b]
    return bool(keys) and all(a.get(k) == b.get(k) for k in keys)


def inputs_digest(config: Config, nodes: dict[str, Node]) -> str:
    return digest_json(
        {
            "vars": config.var_values,
            "nodes": {a: [n.provider, n.config, n.digests] for a, n in sorted(nodes.items())},
        }
    )


def _select(g: nx.DiGraph, targets: Iterable[str], destroy: bool) -> set[str] | None:
    targets = list(targets)
    if not targets:
        return None
    chosen: set[str] = set()
    for t in targets:
        matches = [n for n in g.nodes if n == t or n.startswith(t + ".")]
        if not matches:
            raise DiagnosticError(Diagnostic(f"-target {t}: no such resource in config or state"))
        for m in matches:
            chosen.add(m)
            chosen |= nx.descendants(g, m) if destroy else nx.ancestors(g, m)
    return chosen


def make_plan(
    run: Run,
    prior: Records,
    *,
    mode: Mode = Mode.NORMAL,
    do_refresh: bool = True,
    targets: Iterable[str] = (),
    replace: Iterable[str] = (),
    serial: int = 0,
) -> Plan:
    config = run.config
    run.nodes = nodes = desired_nodes(config)
    for addr, node in nodes.items():
        if not run.registry.known(node.provider):
            pos = node.pos
            raise DiagnosticError(
                Diagnostic(
                    f"{addr}: no provider for target kind {node.provider!r}",
                    pos,
                    f"installed kinds: {', '.join(run.registry.kinds())}",
                )
            )
    check_targets(config, run.registry)
    g = graphs.build(nodes, {a: r.get("dependencies", []) for a, r in prior.items()})
    replace = set(replace)
    for r in replace:
        if r not in nodes:
            raise DiagnosticError(Diagnostic(f"-replace {r}: no such resource in config"))

    if do_refresh:
        refreshed, drift = refresh(run, prior)
        kinds = {n.provider for n in nodes.values()} | {r["provider"] for r in prior.values()}
        adopted, orphans = discover(run, refreshed, kinds - {"core"})
        drift += adopted
    else:
        refreshed, drift, orphans = {a: dict(r) for a, r in prior.items()}, [], []

    selected = _select(g, targets, mode is Mode.DESTROY)
    changes: list[Change] = []
    if mode is Mode.REFRESH_ONLY:
        drift += [Drift(o.address, "orphan", o.before, None) for o in orphans]
    elif mode is Mode.DESTROY:
        for addr in reversed(list(nx.topological_sort(g))):
            rec = refreshed.get(addr)
            if rec is None or (selected is not None and addr not in selected):
                continue
            changes.append(_delete(addr, rec, "destroy requested"))
        changes += orphans
    else:
        known: Records = {}
        for addr in nx.topological_sort(g):
            wanted = nodes.get(addr)
            rec = refreshed.get(addr)
            if selected is not None and addr not in selected:
                if rec is not None:
                    known[addr] = rec["attributes"]
                continue
            if wanted is None:
                if rec is not None:
                    changes.append(_delete(addr, rec, "no longer in the project file"))
                continue
            node = wanted
            resource, ctx = resolve_node(node, known, config, run)
            provider = run.provider(node.provider)
            prior_attrs = rec["attributes"] if rec else None
            proposal = provider.plan(resource, prior_attrs, ctx)
            action, changed, reasons = decide(prior_attrs, proposal, addr in replace)
            known[addr] = proposal.planned
            changes.append(
                Change(
                    address=addr,
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
                )
            )
        changes = orphans + changes
    return Plan(
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
    )


def _delete(addr: str, rec: dict[str, Any], why: str) -> Change:
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
    )
