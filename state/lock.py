"""Who holds the state lock: :class:`LockInfo`, and whether its holder is gone.

A lock records who took it (``user@host`` and pid), for what operation,
when, and a random id that releasing it must name. A holder on this host
whose process no longer exists is *stale*: reported as such so the user
can ``modelform force-unlock ID``, but never broken silently — the same
choice as Terraform, because a pid can be reused and a half-done apply
deserves a human look.
"""

from __future__ import annotations

import getpass
import os
import socket
import uuid
from dataclasses import asdict, dataclass
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
        )

    def describe(self) -> str:
        """``alice@box (pid 42), operation "apply", since 2026-…Z, lock id 1b2…``."""
        return (
            f'{self.who} (pid {self.pid}), operation "{self.operation}", since {self.created}, '
            f"lock id {self.id}"
        )

    def is_stale(self) -> bool:
        """True when the holder ran on this host and its process is gone."""
        return self.hostname == socket.gethostname() and not pid_alive(self.pid)

    def stale_hint(self) -> str:
        return f"stale: holder pid {self.pid} is gone; use `modelform force-unlock {self.id}`"
