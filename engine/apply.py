"""apply(plan) → new state, persisted after every resource.

The changes of a plan are walked in parallel in dependency order (deletes
in reverse order). Each step is bound to the plan: the resource is resolved
again from the attributes now real, and where the plan still had values
"known after apply" the provider proposes once more and must agree with
every value the plan showed (Terraform's "final plan"); the provider then
carries out that planned change, and what it returns must match every known
planned value. The provider's check (health, the ``test:`` request) runs
next: an object that exists but fails it, or that an interrupt caught
before its check, is recorded *tainted* and replaced by the next plan.
State is persisted after every step, so a crash loses at most the steps in
flight. A failure skips only its dependents.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from modelform.engine.plan import Change, Mode, Plan
from modelform.engine.planner import Records, Run, resolve_node
from modelform.engine.provider import (
    Action,
    Applied,
    ApplyRequest,
    Child,
    Context,
    ProviderError,
    Resource,
    ServiceStatus,
)
from modelform.engine.resources import child_index, child_record, record
from modelform.engine.values import is_known
from modelform.engine.walk import Walker

#: Called with (address, event, detail): "start", "done", "failed", "log".
Events = Callable[[str, str, str], None]


@dataclass
class ApplyResult:
    records: Records
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped and not self.cancelled


class _Ticker(threading.Thread):
    """Every ``every`` seconds, a "still creating…" line for each long step."""

    def __init__(
        self,
        in_flight: dict[str, float],
        lock: threading.Lock,
        changes: dict[str, Change],
        events: Events,
        every: float = 10.0,
    ) -> None:
        super().__init__(daemon=True)
        self.in_flight, self.lock, self.changes, self.events = in_flight, lock, changes, events
        self.every = every
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.every):
            now = time.monotonic()
            with self.lock:
                items = list(self.in_flight.items())
            for addr, t0 in items:
                if now - t0 >= self.every:
                    verb = _ING[self.changes[addr].action]
                    self.events(addr, "log", f"still {verb}... [{now - t0:.0f}s elapsed]")

    def stop(self) -> None:
        self._done.set()


_ING = {Action.CREATE: "creating", Action.UPDATE: "modifying", Action.REPLACE: "replacing",
        Action.DELETE: "destroying"}  # fmt: skip


def change_graph(plan: Plan) -> nx.DiGraph:
    g: nx.DiGraph = nx.DiGraph()
    changes = {c.address: c for c in plan.actionable}
    for addr in changes:
        g.add_node(addr)
    for c in changes.values():
        for dep in c.depends_on:
            if dep not in changes:
                continue
            if c.action is Action.DELETE and changes[dep].action is Action.DELETE:
                g.add_edge(c.address, dep)  # dependents go first when destroying
            elif c.action is not Action.DELETE and changes[dep].action is not Action.DELETE:
                g.add_edge(dep, c.address)
    # A deleted service frees its port before any service is created or replaced.
    gone = [
        c.address for c in changes.values() if c.action is Action.DELETE and c.type == "service"
    ]
    made = [
        c.address
        for c in changes.values()
        if c.action in (Action.CREATE, Action.REPLACE) and c.type == "service"
    ]
    for d in gone:
        for m in made:
            g.add_edge(d, m)
    return g


def _known_keys(planned: dict[str, Any]) -> list[str]:
    return [k for k, v in planned.items() if is_known(v)]


def _mismatch(planned: dict[str, Any], got: dict[str, Any]) -> list[str]:
    return [k for k in _known_keys(planned) if got.get(k) != planned[k]]


def _show(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=repr)


def final_plan(
    run: Run, change: Change, resource: Resource, prior: dict[str, Any] | None, ctx: Context
) -> tuple[dict[str, Any], dict[str, Child]]:
    """The planned attributes and children apply carries out: the plan's own
    when it knew everything, else the provider's proposal now that the
    inputs are real, which must agree with every value the plan showed."""
    planned = change.after or {}
    children = {
        c.name: Child(c.type, dict(c.after), set(c.requires_replace))
        for c in change.children
        if c.after is not None
    }
    if is_known(planned) and all(is_known(c.attributes) for c in children.values()):
        return dict(planned), children
    proposal = run.provider(change.provider).plan(resource, prior, ctx)
    bad = _mismatch(planned, proposal.planned)
    if bad:
        k = bad[0]
        raise ProviderError(
            f"provider {change.provider} produced an inconsistent final plan for "
            f"{change.address}: {k} was {_show(planned[k])} in the plan, now "
            f"{_show(proposal.planned.get(k))}; this is a bug in the provider",
        )
    return proposal.planned, proposal.children


def apply_plan(
    run: Run,
    plan: Plan,
    persist: Callable[[Records], None],
    events: Events = lambda a, e, d: None,
    halted: Callable[[], bool] = lambda: False,
) -> ApplyResult:
    """Carry out ``plan``, handing ``persist`` every set of records as it changes.

    Once ``halted()`` is True (the caller can no longer save what
    ``persist`` gets) no new change starts; the changes in flight finish,
    are recorded and persisted, and the rest is ``cancelled`` in the result.
    """
    records: Records = {a: dict(r) for a, r in plan.refreshed.items()}
    lock = threading.Lock()
    result = ApplyResult(records)
    # Records are replaced, never changed in place, so a shallow copy is a snapshot.
    persist_records = lambda: persist(dict(records))  # noqa: E731
    if plan.mode is Mode.REFRESH_ONLY or not plan.actionable:
        persist_records()
        return result
    changes = {c.address: c for c in plan.actionable}
    in_flight: dict[str, float] = {}
    #: Child names by parent, kept with ``records`` (under ``lock``).
    kid_names = {p: set(k) for p, k in child_index(records).items()}

    def children_of(parent: str) -> dict[str, dict[str, Any]]:
        return {n: records[f"{parent}/{n}"] for n in kid_names.get(parent, ())}

    def save(
        node_addr: str, provider: str, attrs: dict[str, Any], children: dict[str, Child],
        target: dict[str, Any] | None, tainted: bool,
    ) -> None:  # fmt: skip
        node = run.nodes[node_addr]
        with lock:
            for old in kid_names.pop(node_addr, set()):
                records.pop(f"{node_addr}/{old}", None)
            secret = changes[node_addr].sensitive if node_addr in changes else []
            records[node_addr] = record(
                node, provider, attrs, target=target, tainted=tainted, sensitive=secret
            )
            for name, child in children.items():
                if child.type == node_addr.split(".", 1)[0]:
                    raise ProviderError(
                        f"provider {provider} gave {node_addr}/{name} the type {child.type!r} "
                        "of its parent: a child object needs a type of its own"
                    )
                kid_names.setdefault(node_addr, set()).add(name)
                records[f"{node_addr}/{name}"] = child_record(
                    node_addr, name, provider, child.type, child.attributes, target=target,
                    tainted=tainted, sensitive=secret,
                )  # fmt: skip
            persist_records()

    def delete(change: Change) -> None:
        provider = run.provider(change.provider)
        real = change.address.split("~orphan-", 1)[0]
        kids = {c.name: c.before or {} for c in change.children}
        ctx = run.context(real, change.target, change.type, kids)
        provider.delete(real, change.before or {}, ctx)
        if not change.orphan:
            with lock:
                for child in kid_names.pop(change.address, set()):
                    records.pop(f"{change.address}/{child}", None)
                records.pop(change.address, None)
                persist_records()

    def make(change: Change) -> None:
        """Create, update or replace, then check; record the outcome."""
        addr = change.address
        provider = run.provider(change.provider)
        with lock:
            known = {a: r["attributes"] for a, r in records.items()}
            prior_kids = {n: r["attributes"] for n, r in children_of(addr).items()}
        resource, ctx = resolve_node(run.nodes[addr], known, run.config, run)
        ctx.children = prior_kids
        ctx.replacing = change.action is Action.REPLACE
        prior = records.get(addr, {}).get("attributes")
        planned, planned_kids = final_plan(run, change, resource, prior, ctx)
        req = ApplyRequest(change.action, resource, prior, planned, prior_kids, planned_kids)
        where = ctx.target or None
        try:
            applied = provider.apply(req, ctx)
        except ProviderError as e:
            if e.attributes is not None:  # it exists, unchecked: tainted
                save(addr, change.provider, e.attributes, e.children, where, True)
            raise
        if not isinstance(applied, Applied):
            raise ProviderError(
                f"provider {change.provider} returned {type(applied).__name__} from apply(), "
                "not modelform.plugin.Applied"
            )
        bad = _mismatch(planned, applied.attributes)
        if bad:
            save(addr, change.provider, applied.attributes, applied.children, where, True)
            k = bad[0]
            raise ProviderError(
                f"provider {change.provider} produced an inconsistent result for {addr}: "
                f"{k} is {_show(applied.attributes.get(k))}, the plan said {_show(planned[k])}"
            )
        try:
            check = provider.check(req, applied, ctx)
        except ProviderError:
            save(addr, change.provider, applied.attributes, applied.children, where, True)
            raise
        if not check.ok:
            status = check.status or ServiceStatus.UNHEALTHY.value
            attrs = {**applied.attributes, "status": status}
            save(addr, change.provider, attrs, applied.children, where, True)
            raise ProviderError(
                f"check failed: {check.message or status} (recorded as tainted: the next plan "
                "replaces it)",
                log=check.log,
            )
        save(addr, change.provider, applied.attributes, applied.children, where, False)

    def step(addr: str) -> None:
        change = changes[addr]
        events(addr, "start", change.action.value)
        t0 = time.monotonic()
        with lock:
            in_flight[addr] = t0
        try:
            if change.action is Action.DELETE:
                delete(change)
            else:
                make(change)
        except ProviderError as e:
            if e.status and e.attributes is None and addr in records:
                with lock:
                    rec = records[addr]
                    attrs = {**rec["attributes"], "status": e.status}
                    records[addr] = {**rec, "status": e.status, "attributes": attrs}
                    persist_records()
            result.logs[addr] = e.log
            events(addr, "failed", str(e))
            raise
        except Exception as e:
            events(addr, "failed", f"{type(e).__name__}: {e}")
            raise
        finally:
            with lock:
                in_flight.pop(addr, None)
        events(addr, "done", f"{time.monotonic() - t0:.1f}s")

    walker = Walker(change_graph(plan), step, run.parallelism, halted=halted)
    ticker = _Ticker(in_flight, lock, changes, events)
    run_cancelled = run.cancelled
    run.cancelled = lambda: walker.stopped or run_cancelled()
    ticker.start()
    try:
        walked = walker.run()
    finally:
        ticker.stop()
        run.cancelled = run_cancelled
    result.done = walked.done
    result.failed = {a: str(e) for a, e in walked.failed.items()}
    result.skipped = walked.skipped
    result.cancelled = walked.cancelled
    result.interrupted = walker.stopped
    with lock:
        persist_records()
    return result
