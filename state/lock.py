"""Who holds the state lock: :class:`LockInfo`, and whether its holder is gone.

A lock records who took it (``user@host``, pid and the process's start
time), for what operation, when, and a random id that releasing it must
name. A holder is *gone* (:meth:`LockInfo.is_stale`) only when that can be
proved: it ran on this host and its pid no longer runs, or runs a process
started at another time (the pid was reused). The lock of a gone holder
dies with it, as Terraform's local lock does: the next command takes it
over and says so (:meth:`LockInfo.takeover_note`). A holder on another
host cannot be checked: its lock stays until ``modelform force-unlock ID``.
Locks written before the start time was recorded still parse; for them
only a dead pid proves the holder gone.
"""

from __future__ import annotations

import getpass
import os
import socket
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from modelform.state.errors import LockError
from modelform.state.resource import now_iso


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` on this host still runs (zombies count as gone).

    Where we cannot tell (Windows, no permission) the answer is True, so
    nothing is ever called stale by mistake.
    """
    if pid <= 0 or os.name == "nt":  # os.kill(pid, 0) would terminate it on Windows
        return pid > 0
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def process_start_time(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot; None if gone or unknown.

    Field 22 of ``/proc/PID/stat`` (read as providers.local_process does;
    the state layer imports nothing else of modelform). With the pid it
    names one process: a reused pid has another start time. None where
    there is no ``/proc`` or a zombie stands in for the process.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = raw.rsplit(")", 1)[-1].split()
    if len(fields) < 20 or fields[0] == "Z" or not fields[19].isdigit():
        return None
    return int(fields[19])


#: A lock held longer than this (seconds) is called "stale, most likely" in
#: messages; it is still never broken without ``force-unlock``.
LONG_HELD = 3600.0


def format_age(seconds: float) -> str:
    """``45s``, ``3m12s``, ``2h05m``, ``3d04h``."""
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, no LOGNAME: a bare container
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


@dataclass(frozen=True)
class LockInfo:
    """One holder of the state lock, as stored in the lock (file or object)."""

    id: str
    operation: str
    who: str
    pid: int
    hostname: str
    created: str
    version: str
    #: Where the lock lives (a file path, an object key); informative only.
    path: str = ""
    #: The holder's :func:`process_start_time`; None in locks of older versions
    #: or where it cannot be read.
    started: int | None = None

    @classmethod
    def new(cls, operation: str, path: str = "", version: str = "") -> LockInfo:
        host = socket.gethostname()
        return cls(
            id=str(uuid.uuid4()),
            operation=operation,
            who=f"{current_user()}@{host}",
            pid=os.getpid(),
            hostname=host,
            created=now_iso(),
            version=version,
            path=path,
            started=process_start_time(os.getpid()),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, source: str) -> LockInfo:
        """Parse a stored lock; a malformed one is a :class:`LockError` naming ``source``."""
        fields = {"id": str, "operation": str, "who": str, "pid": int, "hostname": str}
        if not isinstance(data, dict) or not all(
            isinstance(data.get(k), t) for k, t in fields.items()
        ):
            raise LockError(
                f"lock {source} is not a modelform lock (expected id, operation, who, pid, "
                "hostname); if no modelform is running, delete it",
                source,
            )
        return cls(
            id=data["id"],
            operation=data["operation"],
            who=data["who"],
            pid=data["pid"],
            hostname=data["hostname"],
            created=str(data.get("created", "")),
            version=str(data.get("version", "")),
            path=str(data.get("path", source)),
            started=data["started"] if type(data.get("started")) is int else None,
        )

    def describe(self) -> str:
        """``alice@box (pid 42), operation "apply", since 2026-…Z, lock id 1b2…``."""
        return (
            f'{self.who} (pid {self.pid}), operation "{self.operation}", since {self.created}, '
            f"lock id {self.id}"
        )

    def is_stale(self) -> bool:
        """True when the holder provably is gone: it ran on this host, and its pid
        runs no more or runs a process started at another time (a reused pid)."""
        if self.hostname != socket.gethostname():
            return False
        if not pid_alive(self.pid):
            return True
        if self.started is None:
            return False
        now = process_start_time(self.pid)
        return now is not None and now != self.started

    def age(self) -> float | None:
        """Seconds since the lock was taken; None when ``created`` does not parse."""
        try:
            then = datetime.strptime(self.created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            return None
        return (datetime.now(UTC) - then).total_seconds()

    def stale_hint(self) -> str:
        age = self.age()
        held = f", held for {format_age(age)}" if age is not None else ""
        return f"stale: holder pid {self.pid} is gone{held}; use `modelform force-unlock {self.id}`"

    def hint(self) -> str:
        """What to do about this holder's lock, for the error of a lock that stayed
        held: a gone holder's or another host's may be force-unlocked; a live
        holder on this host is still working, so there is nothing to say."""
        if self.is_stale():
            return self.stale_hint()
        age = self.age()
        long_held = (
            f" (held for {format_age(age)}: stale, most likely)"
            if age is not None and age > LONG_HELD
            else ""
        )
        if self.hostname != socket.gethostname():
            return (
                f"it is held from another host ({self.hostname}), so modelform cannot tell "
                f"whether it still runs; if not, use `modelform force-unlock {self.id}`"
                f"{long_held}"
            )
        return ""

    def takeover_note(self) -> str:
        """The one line saying this (gone) holder's lock was taken over."""
        reused = " (its pid now runs another process)" if pid_alive(self.pid) else ""
        return (
            f"took over the state lock of {self.who} (pid {self.pid}, {self.operation} since "
            f"{self.created}): its process is gone{reused}"
        )
