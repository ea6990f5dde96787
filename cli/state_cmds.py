"""``modelform state list|show|rm|mv|pull|push|history`` and ``modelform force-unlock``.

``rm`` and ``mv`` change only the record (under the lock): the real
objects stay as they are, as with ``terraform state rm|mv``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from modelform.cli.common import guarded, make_view, workspace
from modelform.cli.flags import Lock, Switch
from modelform.engine.diagnostics import DiagnosticError
from modelform.engine.exitcodes import Exit
from modelform.engine.planjson import SENSITIVE
from modelform.engine.registry import PluginError
from modelform.state import State, ops

Json = Annotated[bool, typer.Option("--json", "-json", help="Machine-readable output.")]
LockTimeout = Annotated[float, typer.Option("--lock-timeout", "-lock-timeout")]

state_app = typer.Typer(help="Read and edit the state.", no_args_is_help=True)


@state_app.command("list")
def state_list(
    patterns: Annotated[list[str] | None, typer.Argument()] = None,
    json_out: Json = False,
) -> None:
    """Addresses in state (optionally matching the given addresses/prefixes)."""
    view = make_view(json_out)

    def body() -> int:
        addrs = ops.list_addresses(workspace(view).read_state(), patterns or [])
        view.data(addrs, "\n".join(addrs))
        return Exit.OK

    guarded(view, body)


@state_app.command("show")
def state_show(address: str, json_out: Json = False) -> None:
    """One resource's recorded attributes (secret ones masked)."""
    view = make_view(json_out)

    def body() -> int:
        ws = workspace(view)
        rec = ops.show(ws.read_state(), address).to_json()
        with contextlib.suppress(DiagnosticError, PluginError):
            ws.config  # noqa: B018 - the project file's secrets, when it loads, are masked too
        attrs = rec.get("attributes", {})
        secret = {*SENSITIVE, *rec.get("sensitive", [])}
        rec["attributes"] = {
            k: "(sensitive value)" if k in secret and v not in (None, "") else v
            for k, v in attrs.items()
        }
        view.data(rec, json.dumps(rec, indent=2, sort_keys=True))
        return Exit.OK

    guarded(view, body)


@state_app.command("rm")
def state_rm(
    addresses: list[str], lock_timeout: LockTimeout = 0.0, lock: Lock = Switch.true
) -> None:
    """Forget resources without destroying them."""
    view = make_view(False)

    def body() -> int:
        ws = workspace(view, lock_timeout=lock_timeout, lock=lock is Switch.true)
        with ws.locked("state rm"):
            state = ws.read_state()
            if state is None:
                view.error("no state yet")
                return Exit.ERROR
            new, removed = ops.rm(state, addresses)
            ws.backend.write(new)
        view.message("\n".join(f"Removed {a}" for a in removed))
        return Exit.OK

    guarded(view, body)


@state_app.command("mv")
def state_mv(
    source: str, destination: str, lock_timeout: LockTimeout = 0.0, lock: Lock = Switch.true
) -> None:
    """Rename a resource's address (after renaming it in the project file)."""
    view = make_view(False)

    def body() -> int:
        ws = workspace(view, lock_timeout=lock_timeout, lock=lock is Switch.true)
        with ws.locked("state mv"):
            state = ws.read_state()
            if state is None:
                view.error("no state yet")
                return Exit.ERROR
            new, moved = ops.mv(state, source, destination)
            ws.backend.write(new)
        view.message("\n".join(f"Moved {a} to {b}" for a, b in moved))
        return Exit.OK

    guarded(view, body)


@state_app.command("pull")
def state_pull() -> None:
    """Print the current state, as stored (it may hold service keys: keep it safe)."""
    view = make_view(False)

    def body() -> int:
        ws = workspace(view)
        state = ws.read_state()
        if state is None:
            view.error(f"no state yet ({ws.backend.describe()})")
            return Exit.ERROR
        # The state itself, byte for byte: a document to save or pipe into
        # `state push`, so it bypasses the view's masking on purpose.
        sys.stdout.write(state.dumps())
        sys.stdout.flush()
        return Exit.OK

    guarded(view, body)


@state_app.command("push")
def state_push(
    file: Annotated[str, typer.Argument(help="A state file, or - for standard input.")],
    force: Annotated[
        bool,
        typer.Option("--force", "-force",
                     help="Store it even with another lineage or a serial not newer."),
    ] = False,
    lock_timeout: LockTimeout = 0.0,
    lock: Lock = Switch.true,
) -> None:  # fmt: skip
    """Store a state file as the current state (e.g. errored.modelform.json).

    Refused when it belongs to another project (lineage) or is not newer
    (serial) than the stored state, unless -force.
    """
    view = make_view(False)

    def body() -> int:
        source = "standard input" if file == "-" else file
        try:
            text = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
        except OSError as e:
            view.error(f"{file}: cannot read it: {e.strerror}")
            return Exit.ERROR
        state = State.loads(text, source)
        ws = workspace(view, lock_timeout=lock_timeout, lock=lock is Switch.true)
        with ws.locked("state push"):
            stored = ws.backend.push(state, force=force)
        view.message(
            f"Pushed {source} to {ws.backend.describe()}: lineage {stored.lineage}, serial "
            f"{stored.serial}, {len(stored.resources)} resources."
        )
        return Exit.OK

    guarded(view, body)


@state_app.command("history")
def state_history(json_out: Json = False) -> None:
    """The kept versions of the state: serial, when, who (newest first)."""
    view = make_view(json_out)

    def body() -> int:
        entries = workspace(view).backend.history()
        rows = [f"{'serial':>8}  {'written':20}  {'by':24}  kept as"]
        for e in entries:
            mark = "  (current)" if e.current else ""
            rows.append(f"{e.serial:>8}  {e.written:20}  {e.who or '-':24}  {e.ref}{mark}")
        view.data([dataclasses.asdict(e) for e in entries], "\n".join(rows))
        return Exit.OK

    guarded(view, body)


def register(app: typer.Typer) -> None:
    app.add_typer(state_app, name="state")

    @app.command("force-unlock")
    def force_unlock(lock_id: str) -> None:
        """Remove a stale lock, given its ID (shown in the lock error)."""
        view = make_view(False)

        def body() -> int:
            workspace(view).backend.force_unlock(lock_id)
            view.message(f"Lock {lock_id} removed. The state is unlocked.")
            return Exit.OK

        guarded(view, body)
