"""Crash-safe file steps for the local backend.

:func:`replace_atomically` gives readers either the old or the new file,
never a mix, even if the process is killed or the machine loses power
mid-way: the new bytes go to a temporary file in the same folder, are
fsynced, then ``os.replace`` swaps them in and the folder is fsynced.
The previous version is kept beside it first (hard link, so no copy
and no window where it is half-written).

Temporary files carry the writer's pid and host in their name, so the
next writer can remove the ones a killed writer left behind.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from pathlib import Path

from modelform.state.lock import pid_alive

_SUFFIX = ".tmp"


def temp_path(target: Path) -> Path:
    """A fresh temporary name beside ``target``: ``.NAME.PID.RANDOM.HOST.tmp``."""
    tag = f"{os.getpid()}.{uuid.uuid4().hex[:8]}.{socket.gethostname()}"
    return target.with_name(f".{target.name}.{tag}{_SUFFIX}")


def write_new(path: Path, data: bytes, mode: int = 0o600) -> os.stat_result:
    """Create ``path`` (which must not exist) holding ``data``, fsynced; its final stat."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        return os.fstat(fd)
    finally:
        os.close(fd)


def signature(st: os.stat_result) -> tuple[int, int, int, int]:
    """Identity of one version of a file: every write makes a new inode (rename)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def fsync_dir(folder: Path) -> None:
    """Make renames in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def keep_copy(src: Path, dst: Path) -> None:
    """Atomically make ``dst`` hold what ``src`` holds now; nothing if ``src`` is absent."""
    tmp = temp_path(dst)
    try:
        try:
            os.link(src, tmp)
        except FileNotFoundError:
            return
        except OSError:  # a file system without hard links: copy the bytes
            try:
                data = src.read_bytes()
            except FileNotFoundError:
                return
            write_new(tmp, data)
        os.replace(tmp, dst)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def replace_atomically(path: Path, data: bytes, backup: Path | None = None) -> os.stat_result:
    """Swap ``data`` in as ``path``; the old version first becomes ``backup``.

    Returns the stat of the new file (as :func:`signature` will see it).
    """
    tmp = temp_path(path)
    try:
        st = write_new(tmp, data)
        if backup is not None:
            keep_copy(path, backup)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(path.parent)
    return st


def remove_dead_temps(target: Path) -> list[Path]:
    """Delete temporary files of ``target`` left by writers on this host that are gone."""
    removed: list[Path] = []
    prefix, host = f".{target.name}.", socket.gethostname()
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(_SUFFIX)):
            continue
        pid, _, rest = name[len(prefix) : -len(_SUFFIX)].partition(".")
        _, _, owner = rest.partition(".")
        if pid.isdigit() and owner == host and not pid_alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed.append(entry)
    return removed
