"""Human and JSON views behind one interface.

Commands never print directly: they call a view. ``-json`` selects
:class:`JsonView`, which writes one JSON document per result (and one JSON
line per apply event), never a second code path.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape

from modelform.engine.diagnostics import Diagnostic
from modelform.engine.plan import Change, Drift, Mode, Plan
from modelform.engine.planjson import SENSITIVE, change_json, drift_json, plan_json
from modelform.engine.provider import Action
from modelform.engine.values import UNKNOWN

_VERB = {
    Action.CREATE: "will be created",
    Action.UPDATE: "will be updated in place",
    Action.REPLACE: "must be replaced",
    Action.DELETE: "will be destroyed",
}
_COLOR = {
    Action.CREATE: "green",
    Action.UPDATE: "yellow",
    Action.REPLACE: "magenta",
    Action.DELETE: "red",
}
_PAST = {"create": "Creation", "update": "Modifications", "replace": "Replacement",
         "delete": "Destruction"}  # fmt: skip


def show(key: str, v: Any) -> str:
    if v is UNKNOWN:
        return "(known after apply)"
    if key in SENSITIVE and v:
        return "(sensitive)"
    return json.dumps(v, sort_keys=True, default=repr)


class View:
    def diagnostics(self, diags: list[Diagnostic]) -> None: ...
    def error(self, message: str, detail: str = "") -> None: ...
    def message(self, text: str) -> None: ...
    def plan(self, plan: Plan) -> None: ...
    def drift(self, plan: Plan) -> None: ...
    def event(self, address: str, event: str, detail: str) -> None: ...
    def applied(
        self,
        counts: dict[str, int],
        ok: bool,
        failed: dict[str, str],
        logs: dict[str, str],
        skipped: list[str],
        cancelled: list[str],
    ) -> None: ...
    def data(self, value: Any, human: str) -> None: ...


class HumanView(View):
    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = Console(file=out or sys.stdout, highlight=False, soft_wrap=True)
        self.err = Console(file=err or sys.stderr, highlight=False, soft_wrap=True)
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()

    def diagnostics(self, diags: list[Diagnostic]) -> None:
        for d in diags:
            self.err.print(f"[red]{escape(str(d))}[/red]")

    def error(self, message: str, detail: str = "") -> None:
        self.err.print(f"[red]Error: {escape(message)}[/red]")
        if detail:
            self.err.print(escape(detail))

    def message(self, text: str) -> None:
        self.out.print(escape(text))

    def data(self, value: Any, human: str) -> None:
        self.out.print(escape(human))

    def _change(self, c: Change) -> None:
        color = _COLOR[c.action]
        self.out.print(f"  [bold]# {escape(c.address)}[/bold] {_VERB[c.action]}")
        for r in c.reasons:
            self.out.print(f"  [dim]#   {escape(r)}[/dim]")
        for n in c.notes:
            self.out.print(f"  [dim]#   ({escape(n)})[/dim]")
        sym = c.action.symbol
        self.out.print(f'[{color}]{sym:>3}[/{color}] {c.type} "{escape(c.name)}" {{')
        before, after = c.before or {}, c.after or {}
        keys = sorted(set(before) | set(after))
        for k in keys:
            if c.action is Action.CREATE:
                self.out.print(f"      [green]+[/green] {k} = {escape(show(k, after[k]))}")
            elif c.action is Action.DELETE:
                self.out.print(f"      [red]-[/red] {k} = {escape(show(k, before.get(k)))}")
            elif k in c.changed:
                line = f"{escape(show(k, before.get(k)))} → {escape(show(k, after.get(k)))}"
                self.out.print(f"      [yellow]~[/yellow] {k} = {line}")
        self.out.print("    }")

    def drift(self, plan: Plan) -> None:
        if not plan.drift:
            return
        self.out.print("\n[bold]Objects have changed outside of modelform[/bold]\n")
        for d in plan.drift:
            self._drift(d)

    def _drift(self, d: Drift) -> None:
        what = {"deleted": "has been deleted", "changed": "has changed",
                "adopted": "was found running and adopted into state",
                "orphan": "is running but unknown to state"}[d.kind]  # fmt: skip
        self.out.print(f"  [bold]# {escape(d.address)}[/bold] {what}")
        for k in d.changed:
            b = show(k, (d.before or {}).get(k))
            a = show(k, (d.after or {}).get(k))
            self.out.print(f"      [yellow]~[/yellow] {k} = {escape(b)} → {escape(a)}")

    def plan(self, plan: Plan) -> None:
        self.drift(plan)
        if plan.mode is Mode.REFRESH_ONLY:
            if not plan.drift:
                self.out.print("\n[green]No changes.[/green] The state matches the real world.")
            else:
                self.out.print("\nApplying this refresh-only plan updates the state to match.")
            return
        acts = plan.actionable
        if not acts:
            self.out.print("\n[green]No changes.[/green] The deployment matches the project file.")
            return
        self.out.print("\nmodelform will perform the following actions:\n")
        for c in acts:
            self._change(c)
            self.out.print("")
        n = plan.counts()
        self.out.print(
            f"[bold]Plan:[/bold] {n['add']} to add, {n['change']} to change, "
            f"{n['destroy']} to destroy."
        )

    def event(self, address: str, event: str, detail: str) -> None:
        with self._lock:
            if event == "start":
                self._started[address] = time.monotonic()
                verb = {"create": "Creating", "update": "Modifying", "replace": "Replacing",
                        "delete": "Destroying"}.get(detail, detail)  # fmt: skip
                self.out.print(f"{escape(address)}: {verb}...")
            elif event == "done":
                self.out.print(f"{escape(address)}: complete after {detail}")
            elif event == "failed":
                self.err.print(f"[red]{escape(address)}: failed: {escape(detail)}[/red]")
            elif event == "log":
                since = time.monotonic() - self._started.get(address, time.monotonic())
                self.out.print(f"{escape(address)}: [{since:.0f}s] {escape(detail)}")

    def applied(self, counts, ok, failed, logs, skipped, cancelled) -> None:  # type: ignore[no-untyped-def]
        for addr, why in failed.items():
            self.err.print(f"\n[red]Error: {escape(addr)}: {escape(why)}[/red]")
            if logs.get(addr):
                self.err.print(escape(logs[addr]))
        if skipped:
            self.err.print(f"Skipped (a dependency failed): {', '.join(skipped)}")
        if cancelled:
            self.err.print(f"Not started (interrupted): {', '.join(cancelled)}")
        word = "Apply complete!" if ok else "Apply incomplete."
        self.out.print(
            f"\n[bold]{word}[/bold] Resources: {counts['add']} added, {counts['change']} changed, "
            f"{counts['destroy']} destroyed."
        )


class JsonView(View):
    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self._lock = threading.Lock()

    def _emit(self, doc: dict[str, Any]) -> None:
        with self._lock:
            self.out.write(json.dumps(doc, sort_keys=True, default=repr) + "\n")
            self.out.flush()

    def diagnostics(self, diags: list[Diagnostic]) -> None:
        self._emit({"type": "diagnostics", "diagnostics": [d.to_json() for d in diags]})

    def error(self, message: str, detail: str = "") -> None:
        self._emit({"type": "error", "message": message, "detail": detail})

    def message(self, text: str) -> None:
        self._emit({"type": "message", "message": text})

    def data(self, value: Any, human: str) -> None:
        self._emit({"type": "data", "data": value})

    def plan(self, plan: Plan) -> None:
        self._emit({"type": "plan", "plan": plan_json(plan)})

    def drift(self, plan: Plan) -> None:
        self._emit({"type": "drift", "drift": [drift_json(d) for d in plan.drift]})

    def event(self, address: str, event: str, detail: str) -> None:
        self._emit({"type": "apply_event", "address": address, "event": event, "detail": detail})

    def applied(self, counts, ok, failed, logs, skipped, cancelled) -> None:  # type: ignore[no-untyped-def]
        self._emit({"type": "apply_result", "ok": ok, "summary": counts, "failed": failed,
                    "logs": logs, "skipped": skipped, "cancelled": cancelled})  # fmt: skip


__all__ = ["HumanView", "JsonView", "View", "change_json"]
