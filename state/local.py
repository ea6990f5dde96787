"""The local backend: the state in a file beside the project (the default).

Files, for a state at ``.modelform/state.json``:

* ``state.json`` — the state, replaced atomically on every change
  (temp file, fsync, ``os.replace``, fsync of the folder); mode 0600
  because attributes may hold service keys.
* ``state.json.backup`` — the version before the last write.
* ``state.json.lock`` — present while someone holds the lock; JSON of
  :class:`~modelform.state.lock.LockInfo`. It appears whole: its content
  is written to a temp file first and hard-linked into place (a link
  fails if the name exists, like ``O_CREAT|O_EXCL``, which is the
  fallback on file systems without hard links).
* ``.state.json.lock.ID.takeover`` — for a moment while a command takes
  over the lock ``ID`` of a holder that is gone (:meth:`LocalBackend.take_over`).

Reads never take the lock. Writes do not either: callers hold it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from modelform.state.backend import (
    Backend,
    HistoryEntry,
    Stored,
    Write,
    prepare_exact,
    prepare_write,
)
from modelform.state.canonical import encode
from modelform.state.errors import LockError, NewerStateFormat, StateError
from modelform.state.fsutil import (
    remove_dead_temps,
    replace_atomically,
    signature,
    temp_path,
    write_new,
)
from modelform.state.lock import LockInfo
from modelform.state.model import State

#: Where the CLI keeps the state unless told otherwise (beside modelform.yaml).
DEFAULT_PATH = Path(".modelform") / "state.json"


class LocalBackend(Backend):
    """A state file on the local file system, with a lock file beside it."""

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_PATH) -> None:
        self.path = Path(path)
        self.backup_path = self.path.with_name(self.path.name + ".backup")
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        #: (signature, summary) of the state file version this backend saw last,
        #: so a large state is not parsed again before each write.
        self._seen: tuple[tuple[int, ...], Stored] | None = None

    def describe(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"LocalBackend({str(self.path)!r})"

    # -- state -----------------------------------------------------------

    def read(self) -> State | None:
        loaded = self._load()
        return loaded[0] if loaded else None

    def _load(self) -> tuple[State, tuple[int, ...]] | None:
        """The stored state and the signature of the file version it came from."""
        try:
            with open(self.path, "rb") as f:
                sig = signature(os.fstat(f.fileno()))
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            msg = f"{self.path}: cannot read the state: {e.strerror}"
            raise StateError(msg, str(self.path)) from e
        try:
            if not data.strip():
                raise StateError(f"{self.path}: the state file is empty", str(self.path))
            return State.loads(data, str(self.path)), sig
        except NewerStateFormat:
            raise
        except StateError as e:
            if self.backup_path.exists():
                e.args = (f"{e} (the previous version is in {self.backup_path})",)
            raise

    def _stored(self) -> Stored | None:
        """What is stored now; parsed again only when the file is not the one last seen."""
        try:
            sig = signature(os.stat(self.path))
        except FileNotFoundError:
            return None
        except OSError as e:
            msg = f"{self.path}: cannot read the state: {e.strerror}"
            raise StateError(msg, str(self.path)) from e
        if self._seen is not None and self._seen[0] == sig:
            return self._seen[1]
        loaded = self._load()
        if loaded is None:
            return None
        stored = Stored.of(loaded[0])
        self._seen = (loaded[1], stored)
        return stored

    def write(self, state: State) -> State:
        return self._commit(prepare_write(self._stored(), state, str(self.path)))

    def push(self, state: State, force: bool = False) -> State:
        return self._commit(prepare_exact(self._stored(), state, str(self.path), force))

    def history(self) -> list[HistoryEntry]:
        """The state and the version before the last write (``.backup``)."""
        out = []
        for path, ref, current in (
            (self.path, "current", True),
            (self.backup_path, "backup", False),
        ):
            try:
                state = self.read_version(ref)
                written = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(path.stat().st_mtime))
            except (StateError, OSError):
                continue
            out.append(HistoryEntry(state.serial, written, "", ref, current))
        return out

    def read_version(self, ref: str) -> State:
        if ref == "current":
            state = self.read()
            if state is None:
                raise StateError(f"{self.path}: no state yet", str(self.path))
            return state
        if ref != "backup":
            raise StateError(f"{self.path}: no kept version {ref!r} (current, backup)")
        try:
            return State.loads(self.backup_path.read_bytes(), str(self.backup_path))
        except OSError as e:
            raise StateError(f"{self.backup_path}: {e.strerror}", str(self.backup_path)) from e

    def _commit(self, prepared: Write) -> State:
        if prepared.text is None:
            return prepared.state
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            st = replace_atomically(self.path, prepared.text, backup=self.backup_path)
        except OSError as e:
            self._seen = None
            raise StateError(
                f"{self.path}: cannot write the state: {e.strerror or e}", str(self.path)
            ) from e
        self._seen = (signature(st), prepared.stored)
        for target in (self.path, self.backup_path, self.lock_path):
            remove_dead_temps(target)
        return prepared.state

    # -- lock ------------------------------------------------------------

    def try_lock(self, info: LockInfo) -> LockInfo | None:
        data = encode(info.to_json())
        with contextlib.suppress(OSError):  # if it fails, creating the lock says why
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(100):  # a holder may release between our two steps: try again
            try:
                self._create_lock(data)
                return None
            except FileExistsError:
                holder = self.lock_info()
                if holder is not None:
                    return holder
            except OSError as e:
                raise LockError(
                    f"{self.lock_path}: cannot create the lock: {e.strerror or e}",
                    str(self.lock_path),
                ) from e
        raise LockError(f"{self.lock_path}: the lock keeps appearing and vanishing; try again")

    def take_over(self, holder: LockInfo, info: LockInfo) -> bool:
        """Replace the lock file of ``holder`` (gone) by one of ``info``.

        Of several takers, the one that hard-links the lock file to
        ``.state.json.lock.ID.takeover`` first may replace it; the others'
        links fail. The link shows the lock file as it was at that moment, so
        a taker that read ``holder`` long ago and links a newer lock sees
        another id and backs off. ``os.replace`` swaps the new lock in, so the
        lock file never vanishes and no plain :meth:`try_lock` slips in. The
        link goes afterwards; one left by a taker killed in between blocks
        taking over ``holder`` until ``force-unlock`` removes both. Without
        hard links nothing is taken over (False: the holder is reported).
        """
        marker = self._takeover_path(holder.id)
        try:
            os.link(self.lock_path, marker)
        except OSError:  # another taker is at it, the lock went, or no hard links
            return False
        tmp = temp_path(self.lock_path)
        try:
            current = LockInfo.from_json(json.loads(marker.read_bytes()), str(self.lock_path))
            if current.id != holder.id:
                return False
            write_new(tmp, encode(info.to_json()), 0o644)
            os.replace(tmp, self.lock_path)
            return True
        except (OSError, ValueError, LockError):
            return False
        finally:
            for path in (tmp, marker):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    def _takeover_path(self, lock_id: str) -> Path:
        return self.lock_path.with_name(f".{self.lock_path.name}.{lock_id}.takeover")

    def _create_lock(self, data: bytes) -> None:
        """Create the lock file whole, or raise FileExistsError."""
        tmp = temp_path(self.lock_path)
        try:
            write_new(tmp, data, 0o644)
            try:
                os.link(tmp, self.lock_path)
                return
            except FileExistsError:
                raise
            except OSError:  # no hard links on this file system: exclusive create below
                pass
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        write_new(self.lock_path, data, 0o644)

    def lock_info(self) -> LockInfo | None:
        # A lock made by the O_EXCL fallback can be seen empty for a moment.
        for attempt in range(20):
            try:
                raw = self.lock_path.read_bytes()
            except FileNotFoundError:
                return None
            except OSError as e:
                raise LockError(f"{self.lock_path}: cannot read the lock: {e.strerror}") from e
            try:
                return LockInfo.from_json(json.loads(raw), str(self.lock_path))
            except (ValueError, LockError) as e:
                if attempt == 19:
                    raise LockError(
                        f"{self.lock_path}: the lock file is unreadable ({e}); if no modelform "
                        "is running, delete it",
                        str(self.lock_path),
                    ) from None
                time.sleep(0.025)
        return None  # pragma: no cover - the loop returns or raises

    def unlock(self, lock_id: str) -> None:
        holder = self.lock_info()
        if holder is None:
            raise LockError(
                f"{self.lock_path}: the state is not locked (lock id {lock_id} was already "
                "released)",
                str(self.lock_path),
            )
        if holder.id != lock_id:
            raise LockError(
                f"{self.lock_path}: lock id {lock_id} is not the current lock; it is held by "
                f"{holder.describe()}",
                str(self.lock_path),
                holder=holder,
            )
        for path in (self.lock_path, self._takeover_path(lock_id)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
