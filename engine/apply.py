"""apply(plan) → new state, persisted after every resource.

The changes of a plan are walked in parallel in dependency order (deletes
in reverse order). Each step re-resolves its resource from the attributes
now real (a service URL known only after its create), asks the provider
to act, records the result and persists the state at once, so a crash
loses at most the steps in flight. A failure skips only its dependents.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import networkx as nx

from modelform.engine.plan import Change, Mode, Plan
from modelform.engine.planner import Records, Run, resolve_node
from modelform.engine.provider import Action, ProviderError
from modelform.engine.resources import record
from modelform.engine.servicetest import run_service_test
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


def apply_plan(
    run: Run,
    plan: Plan,
    persist: Callable[[Records], None],
    events: Events = lambda a, e, d: None,
) -> ApplyResult:
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

    def step(addr: str) -> None:
        change = changes[addr]
        provider = run.provider(change.provider)
        events(addr, "start", change.action.value)
        t0 = time.monotonic()
        with lock:
            in_flight[addr] = t0
        try:
            if change.action is Action.DELETE:
                ctx = run.context(addr)
                real = addr.split("~orphan-", 1)[0]
                provider.delete(real, change.before or {}, ctx)
                if not change.orphan:
                    with lock:
                        records.pop(addr, None)
                        persist_records()
            else:
                with lock:
                    known = {a: r["attributes"] for a, r in records.items()}
                node = run.nodes[addr]
                resource, ctx = resolve_node(node, known, run.config, run)
                prior = records.get(addr, {}).get("attributes")
                attrs = provider.apply(change.action, resource, prior, ctx)
                with lock:
                    records[addr] = record(run.nodes[addr], change.provider, attrs)
                    persist_records()
                if change.type == "service" and resource.config.get("test"):
                    events(addr, "log", "running the service's test request")
                    run_service_test(resource.config["test"], attrs)
        except ProviderError as e:
            if e.status and addr in records and change.action is not Action.DELETE:
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

    walker = Walker(change_graph(plan), step, run.parallelism)
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
