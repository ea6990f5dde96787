"""``modelform init``: set the state backend up, and move the state between backends.

Without options it opens the backend the project file names, checks it can
be used (the bucket is reachable, the state parses) and records it in
``.modelform/backend.json``. Running it again changes nothing.

When the file names another backend than the one recorded:

* ``-migrate-state`` copies the state from the recorded backend to the new
  one (both locked), reads it back and compares lineage, serial and every
  resource before recording the new backend. The old copy stays where it
  was, as a fallback; the command says so. A different state already at
  the new place is refused unless ``-force-copy``.
* ``-reconfigure`` records the new backend without moving anything.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Annotated

import typer

from modelform.cli import backendsel
from modelform.cli.common import guarded, make_view, workspace
from modelform.engine.backendconf import read_spec
from modelform.engine.exitcodes import Exit
from modelform.engine.views import View
from modelform.state import Backend, State, StateConflict, StateError, locked


def register(app: typer.Typer) -> None:
    @app.command()
    def init(
        migrate_state: Annotated[
            bool,
            typer.Option("--migrate-state", "-migrate-state",
                         help="Move the state from the backend used before to the one the "
                              "project file names."),
        ] = False,
        reconfigure: Annotated[
            bool,
            typer.Option("--reconfigure", "-reconfigure",
                         help="Use the backend the project file names as it is; move nothing."),
        ] = False,
        force_copy: Annotated[
            bool,
            typer.Option("--force-copy", "-force-copy",
                         help="With -migrate-state: replace a different state at the new place."),
        ] = False,
        lock_timeout: Annotated[
            float, typer.Option("--lock-timeout", "-lock-timeout",
                                help="Seconds to wait for each state lock.")
        ] = 0.0,
    ) -> None:  # fmt: skip
        """Set the state backend up (checks it can be reached); move the state with
        -migrate-state when the project file names another backend."""
        view = make_view(False)

        def body() -> int:
            if migrate_state and reconfigure:
                view.error("-migrate-state and -reconfigure exclude each other: choose one")
                return Exit.ERROR
            ws = workspace(view, lock_timeout=lock_timeout)
            if ws.state_override is not None:
                view.error("init sets up the backend the project file names; drop --state")
                return Exit.ERROR
            spec = read_spec(ws.file)
            record = backendsel.Recorded(ws.work_dir)
            before = backendsel.previous(record, ws.work_dir)
            new = backendsel.open_spec(spec, ws.dir)
            new.check()
            if before is not None and not backendsel.same_place(before, spec, ws.dir):
                if reconfigure:
                    record.write(spec)
                    view.message(
                        f"The state backend is now {spec.name} ({new.describe()}); the state in "
                        f"{backendsel.describe(before, ws.dir)} was not moved."
                    )
                    return Exit.OK
                if not migrate_state:
                    view.error(
                        f"the project file names the state backend {spec.name} "
                        f"({new.describe()}); it was {backendsel.describe(before, ws.dir)}: "
                        "add -migrate-state to move the state, or -reconfigure to leave it"
                    )
                    return Exit.ERROR
                old = backendsel.open_spec(before, ws.dir)
                _migrate(view, old, new, lock_timeout, force_copy)
            record.write(spec)
            state = new.read()
            held = f"serial {state.serial}, {len(state.resources)} resources" if state else "empty"
            view.message(f"State backend: {spec.name} ({new.describe()}); the state: {held}.")
            return Exit.OK

        guarded(view, body)


def _migrate(view: View, old: Backend, new: Backend, timeout: float, force: bool) -> None:
    with ExitStack() as stack:
        stack.enter_context(locked(old, "init -migrate-state", timeout))
        stack.enter_context(locked(new, "init -migrate-state", timeout))
        state = old.read()
        if state is None:
            view.message(f"{old.describe()} holds no state: nothing to move.")
            return
        there = new.read()
        if there is not None and not force:
            if there.lineage != state.lineage:
                raise StateConflict(
                    f"{new.describe()} already holds another state (lineage {there.lineage}); "
                    "add -force-copy to replace it with the one from "
                    f"{old.describe()} (lineage {state.lineage})"
                )
            if there.serial > state.serial:
                raise StateConflict(
                    f"{new.describe()} already holds a newer state of this project (serial "
                    f"{there.serial} > {state.serial}); add -force-copy to replace it, or "
                    "-reconfigure to use it as it is"
                )
        stored = new.push(state, force=force)
        back = new.read()
        if back is None or not _same(back, state, exact=not force):
            raise StateError(
                f"moving the state to {new.describe()}: what was read back differs from what was "
                "written; the state is still in " + old.describe()
            )
        view.message(
            f"Moved the state (lineage {stored.lineage}, serial {stored.serial}, "
            f"{len(stored.resources)} resources) from {old.describe()} to {new.describe()}; "
            "checked by reading it back. The old copy is left where it was."
        )


def _same(a: State, b: State, exact: bool) -> bool:
    return a.lineage == b.lineage and (a.serial == b.serial or not exact) and a.same_content(b)
