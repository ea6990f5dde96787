"""Where an apply puts the state it could not save: ``errored.modelform.json``.

When a state write fails mid-apply (the storage went away, the disk is
full), the apply starts no new change, lets the changes in flight finish,
and writes the state it could not store — every resource it knows of,
those it made included — to ``errored.modelform.json`` in the project
folder, for ``modelform state push errored.modelform.json`` once the
storage answers again (Terraform's ``errored.tfstate``). The file has the
state's lineage and a serial newer than anything the apply stored (see
:class:`~modelform.cli.statewriter.WriteFailed`), so the push takes it as
the successor without ``-force``.

A file of that name already there is replaced only when it holds an older
(or the same) version of this very state: same lineage, serial not newer.
Anything else — another project's state, a newer version, not a state at
all — is left as it is, and the state goes to
``errored.modelform.<lineage>.<serial>.json`` beside it (under the same
rule), else to a new ``errored.modelform.*.json``. Should the project
folder refuse the file, it goes to the system's temporary folder. The file
is written atomically with mode 0600: attributes may hold keys.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from modelform.cli.statewriter import WriteFailed
from modelform.cli.workspace import Workspace
from modelform.state import State, StateError
from modelform.state.fsutil import fsync_dir, replace_atomically

ERRORED = "errored.modelform.json"


class StateNotSaved(StateError):
    """The apply's state could not be stored; the message says where it went
    and the command that stores it."""

    def __init__(self, message: str, saved_to: Path | None) -> None:
        super().__init__(message, str(saved_to) if saved_to else None)
        self.saved_to = saved_to


def save(state: State, folder: Path) -> Path:
    """Write ``state`` to ``folder``'s errored file (the module's rule); its path.

    OSError when the folder refuses it.
    """
    data = state.encode()
    candidates = (
        folder / ERRORED,
        folder / f"errored.modelform.{state.lineage}.{state.serial}.json",
    )
    for path in candidates:
        if _replaceable(path, state):
            replace_atomically(path, data)
            return path
    return _new_file(folder, data)


def _replaceable(path: Path, state: State) -> bool:
    """Whether ``path`` is free or holds an older (or the same) version of ``state``."""
    try:
        old = State.loads(path.read_bytes(), str(path))
    except FileNotFoundError:
        return True
    except (OSError, StateError):
        return False
    return old.lineage == state.lineage and old.serial <= state.serial


def _new_file(folder: Path, data: bytes) -> Path:
    """A file of a new name in ``folder`` (mode 0600) holding ``data``."""
    fd, name = tempfile.mkstemp(prefix="errored.modelform.", suffix=".json", dir=folder)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(folder)
    return Path(name)


def rescue(failure: WriteFailed, ws: Workspace) -> StateNotSaved:
    """Save the state ``failure`` holds as an errored file; the error to report."""
    what = f"the state could not be saved ({failure})"
    try:
        try:
            path = save(failure.unsaved, ws.dir)
        except OSError:
            path = _new_file(Path(tempfile.gettempdir()), failure.unsaved.encode())
    except OSError as e:
        return StateNotSaved(
            f"{what}; no new change was started after that, and writing the state to a local "
            f"file failed too ({e.filename}: {e.strerror or e})",
            None,
        )
    here = Path.cwd()
    shown = path.relative_to(here) if path.is_relative_to(here) else path
    arg = path.relative_to(ws.dir) if path.is_relative_to(ws.dir) else path
    return StateNotSaved(
        f"{what}; no new change was started after that, and the state of this apply, with "
        f"everything it made, is in {shown}: once the storage answers again, run "
        f"`{ws.command('state', 'push', str(arg))}`",
        path,
    )
