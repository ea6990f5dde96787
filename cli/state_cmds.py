"""``modelform state list|show|rm|mv`` and ``modelform force-unlock``.

``rm`` and ``mv`` change only the record (under the lock): the real
objects stay as they are, as with ``terraform state rm|mv``.
"""

from __future__ import annotations

import contextlib
import json
from typing import Annotated

import typer

from modelform.cli.common import guarded, make_view, workspace
from modelform.cli.flags import Lock, Switch
from modelform.engine.diagnostics import DiagnosticError
from modelform.engine.exitcodes import Exit
from modelform.engine.planjson import SENSITIVE
from modelform.engine.registry import PluginError
from modelform.state import ops

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
