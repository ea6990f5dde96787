"""plan, apply, destroy and drift: the commands that walk the graph."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from modelform.cli import errored
from modelform.cli.common import confirm, no_prompt_reason
from modelform.cli.reporting import Report
from modelform.cli.statewriter import StateWriter, WriteFailed, describe
from modelform.cli.workspace import Workspace, to_records
from modelform.engine import outputs, outputs_eval, sensitive
from modelform.engine.apply import apply_plan
from modelform.engine.diagnostics import Diagnostic, DiagnosticError
from modelform.engine.exitcodes import Exit
from modelform.engine.plan import Mode, Plan, summarize
from modelform.engine.planjson import plan_from_json, plan_json
from modelform.engine.planner import Run, inputs_digest, make_plan, refresh
from modelform.engine.reports import drift_summary, resource_locator
from modelform.engine.resources import is_child, parent_of
from modelform.engine.views import View
from modelform.state import State


def plan_cmd(
    ws: Workspace,
    view: View,
    *,
    mode: Mode,
    refresh: bool,
    targets: list[str],
    replace: list[str],
    out: Path | None,
    detailed: bool,
    report: Report | None = None,
) -> int:
    """``report``: ``--format``/``--report``, written once the plan is shown."""
    state = ws.read_state()
    run = ws.run(state)
    plan = make_plan(
        run, to_records(state), mode=mode, do_refresh=refresh, targets=targets, replace=replace,
        serial=state.serial if state else 0, prior_outputs=state.outputs if state else None,
    )  # fmt: skip
    view.redactor.add(sensitive.from_plan(plan))
    view.plan(plan)
    if report is not None:
        report.write(plan, view, resource_locator(ws.config), ws.file)
    if out is not None:
        save_plan(plan, out)
        view.message(f"\nSaved the plan to {out}; apply it with: modelform apply {out}")
    return Exit.CHANGES if detailed and plan.has_changes else Exit.OK


def show_cmd(view: View, plan_file: Path) -> int:
    """A saved plan as ``plan`` showed it; its secrets masked (the file keeps them)."""
    plan = load_plan(plan_file)
    view.redactor.add(sensitive.from_plan(plan))
    view.plan(plan)
    return Exit.OK


def save_plan(plan: Plan, out: Path) -> None:
    tmp = out.with_name(out.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(plan_json(plan, mask=False), f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, out)


def load_plan(path: Path) -> Plan:
    try:
        text = path.read_text()
    except OSError as e:
        raise DiagnosticError(Diagnostic(f"cannot read plan file {path}: {e.strerror}")) from None
    try:
        return plan_from_json(json.loads(text))
    except (ValueError, KeyError, TypeError) as e:
        raise DiagnosticError(
            Diagnostic(f"{path} is not a plan saved by modelform plan -out ({type(e).__name__})")
        ) from None


def _check_saved(plan: Plan, state: State | None, ws: Workspace, run: Run) -> None:
    lineage = state.lineage if state else None
    serial = state.serial if state else 0
    if plan.lineage != lineage and lineage is not None:
        raise DiagnosticError(Diagnostic("saved plan is for another state (lineage differs)"))
    if plan.serial != serial:
        raise DiagnosticError(
            Diagnostic(
                f"saved plan is stale: state serial is {serial}, the plan was made at "
                f"{plan.serial}",
                hint="run modelform plan again",
            )
        )
    now = inputs_digest(ws.config, run.desired())
    if now != plan.inputs_digest:
        raise DiagnosticError(
            Diagnostic(
                "saved plan is stale: the project file, a model, an entry script or an "
                "environment changed since it was made",
                hint="run modelform plan again",
            )
        )
    _check_no_drift_since(plan, run)


def _check_no_drift_since(plan: Plan, run: Run) -> None:
    """Refuse a saved plan when a resource it changes (or one of that
    resource's children) is no longer as the plan's refresh saw it: the plan
    was reviewed against a world that is gone. Only those resources are read
    again, and against what the plan saw (the engine's own drift, so observed
    attributes such as a status do not count)."""
    touched = {c.address for c in plan.actionable}
    seen = {
        a: r
        for a, r in plan.refreshed.items()
        if a in touched or (is_child(a, r) and parent_of(a) in touched)
    }
    _, drift = refresh(run, seen) if seen else ({}, [])
    if not drift:
        return
    d = min(drift, key=lambda d: d.address)
    if d.kind == "deleted":
        why = "has been deleted"
    else:
        key = d.changed[0]
        before, after = (d.before or {}).get(key), (d.after or {}).get(key)
        why = f"changed ({key}: {_short(before)} → {_short(after)})"
    raise DiagnosticError(
        Diagnostic(
            f"saved plan is stale: {d.address} {why} since the plan was made",
            hint="run modelform plan again (modelform drift shows what changed)",
        )
    )


def _short(value: object) -> str:
    text = json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= 40 else text[:37] + "..."


def apply_cmd(
    ws: Workspace,
    view: View,
    *,
    plan_file: Path | None,
    mode: Mode,
    auto_approve: bool,
    refresh: bool,
    targets: list[str],
    replace: list[str],
) -> int:
    stop = threading.Event()
    why = no_prompt_reason()
    if plan_file is None and not auto_approve and why is not None:
        verb = "destroy" if mode is Mode.DESTROY else "apply"
        raise DiagnosticError(
            Diagnostic(
                f"{verb} cannot ask for approval ({why}): pass -auto-approve, or apply a "
                "reviewed plan file (plan -out FILE, then apply FILE)"
            )
        )
    with ws.locked("destroy" if mode is Mode.DESTROY else "apply"):
        state = ws.read_state()
        run = ws.run(state, cancelled=stop.is_set)
        if plan_file is not None:
            plan = load_plan(plan_file)
            view.redactor.add(sensitive.from_plan(plan))
            _check_saved(plan, state, ws, run)
        else:
            plan = make_plan(
                run, to_records(state), mode=mode, do_refresh=refresh, targets=targets,
                replace=replace, serial=state.serial if state else 0,
                prior_outputs=state.outputs if state else None,
            )  # fmt: skip
            view.redactor.add(sensitive.from_plan(plan))
            view.plan(plan)
            if plan.has_changes and not auto_approve:
                verb = "destroy all resources" if mode is Mode.DESTROY else "perform these actions"
                if not confirm(f"\nDo you want to {verb}?"):
                    view.error(
                        "apply cancelled: not confirmed",
                        "answer 'yes' at the prompt, or pass -auto-approve when there is no terminal",
                    )
                    return Exit.ERROR
        writer = StateWriter(ws.backend, run.lineage, state, on_fail=lambda e: view.message(
            f"Warning: the state could not be saved ({describe(e)}): no new change starts; "
            "the changes in flight finish, then the state goes to a local file"))  # fmt: skip
        try:
            result = apply_plan(run, plan, writer.submit, events=view.event,
                                halted=writer.failed)  # fmt: skip
        except BaseException:
            _flush(writer, ws)  # a state not saved is the error to report
            raise
        recorded, unknown = outputs_eval.final(ws.config, plan, result.records, writer.outputs,
                                               view.redactor)  # fmt: skip
        writer.set_outputs(recorded)
        try:
            _flush(writer, ws)
        finally:
            changes = {c.address: c for c in plan.actionable}
            counts = summarize(changes[addr] for addr in result.done)
            saved = not writer.failed()
            reason = "interrupted" if saved else "the state could not be saved"
            view.applied(counts, result.ok and saved, result.failed, result.logs, result.skipped,
                         result.cancelled, reason, destroy=mode is Mode.DESTROY)  # fmt: skip
    if recorded and mode is Mode.NORMAL:
        view.data(
            {"outputs": outputs.masked(recorded)},
            "\nOutputs:\n\n" + outputs.listing(recorded).rstrip("\n"),
        )
    if unknown and result.ok:
        view.error(outputs_eval.unknown_message(unknown, ws.config))
        return Exit.ERROR
    if result.interrupted:
        return Exit.INTERRUPTED
    return Exit.OK if result.ok else Exit.ERROR


def _flush(writer: StateWriter, ws: Workspace) -> None:
    """The last writes; when one failed, the state goes to a local file (cli.errored)."""
    try:
        writer.flush()
    except WriteFailed as e:
        raise errored.rescue(e, ws) from e.cause


def drift_cmd(
    ws: Workspace, view: View, allow_missing_state: bool = False, report: Report | None = None
) -> int:
    """Refresh and compare with state; never writes state nor takes the lock.

    No state file is an error (a wrong path or folder must not pass in CI as
    "no drift") unless ``allow_missing_state`` says none is expected yet; then
    ``report`` is written as one of no drift.
    """
    state = ws.read_state()
    if state is None:
        where = ws.backend.describe()
        if not allow_missing_state:
            view.error(
                f"no state at {where}, so nothing to compare with the real world; if no state "
                "is expected yet (nothing applied), pass -allow-missing-state"
            )
            return Exit.ERROR
        view.data({"drift": False, "count": 0}, f"No state at {where}: nothing to drift.")
        if report is not None:
            report.write(None, view)
        return Exit.OK
    run = ws.run(state)
    plan = make_plan(run, to_records(state), mode=Mode.REFRESH_ONLY,
                     serial=state.serial if state else 0)  # fmt: skip
    view.redactor.add(sensitive.from_plan(plan))
    view.drift(plan)
    view.data(
        drift_summary(plan),
        f"\n{len(plan.drift)} object(s) drifted." if plan.drift else "No drift.",
    )
    if report is not None:
        report.write(plan, view, resource_locator(ws.config), ws.file)
    return Exit.CHANGES if plan.drift else Exit.OK
