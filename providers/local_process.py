"""Detached processes for the local target: start, identify, find, stop.

A process is identified by its pid *and* its start time (from /proc), so a
recycled pid is never mistaken for our server. Every process we start
carries ``MODELFORM_PROJECT_DIR`` and ``MODELFORM_ADDRESS`` in its
environment, so a process whose start was never recorded in state (the CLI
killed mid-apply) can still be found and adopted or stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from modelform.plugin import ProviderError

PROJECT_ENV = "MODELFORM_PROJECT_DIR"
ADDRESS_ENV = "MODELFORM_ADDRESS"
ATTRS_ENV = "MODELFORM_STATE_ATTRS"


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = raw.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie is gone for our purposes
        return None
    return int(fields[19])


def alive(pid: int, started: int | None) -> bool:
    now = start_time(pid)
    return now is not None and (started is None or now == started)


def spawn(argv: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> tuple[int, int]:
    """Start a detached process (own session) logging to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log, open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=devnull,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    # Reap it from a thread-free place later is impossible once we exit; the
    # process is re-parented to init when this CLI ends, which reaps it.
    st = None
    for _ in range(50):
        st = start_time(proc.pid)
        if st is not None:
            break
        time.sleep(0.01)
    return proc.pid, st or 0


def stop(pid: int, started: int | None, grace: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it outlives ``grace``."""
    if not alive(pid, started):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(pid)
        if not alive(pid, started):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    for _ in range(100):
        _reap(pid)
        if not alive(pid, started):
            return
        time.sleep(0.02)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


@dataclass
class Found:
    pid: int
    started: int
    address: str
    attributes: dict[str, object] | None


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    out = {}
    for item in raw.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep:
            out[k.decode(errors="replace")] = v.decode(errors="replace")
    return out


def find(project_dir: Path) -> Iterator[Found]:
    """Every live process started by modelform for this project."""
    want = str(project_dir)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        env = _environ(pid)
        if env.get(PROJECT_ENV) != want or ADDRESS_ENV not in env:
            continue
        # Only the session leader (the server's master), not its workers.
        try:
            if os.getsid(pid) != pid:
                continue
        except OSError:
            continue
        started = start_time(pid)
        if started is None:
            continue
        attrs = None
        with contextlib.suppress(ValueError):
            attrs = json.loads(env.get(ATTRS_ENV, "null"))
        yield Found(pid, started, env[ADDRESS_ENV], attrs)


def port_free(host: str, port: int) -> None:
    """Refuse a port another process listens on. The runtime binds with
    SO_REUSEPORT (a socket per worker), so a second server on a taken port
    would start, share the port, and a readiness probe could be answered by
    the other process: a plain bind finds the port taken first."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR: connections of a stopped server lingering in TIME_WAIT
        # do not count; a listening socket still does.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            raise ProviderError(
                f"port {port} on {host} is in use by another process",
                log=f"find it with: ss -ltnp 'sport = :{port}'; stop it, or give the service "
                "another port",
            ) from None


def last_error(log_text: str) -> str | None:
    """A process's one-line reason from its log: the last ``error: …`` line
    (what modelform's runtimes print on stderr before exiting), else None."""
    for line in reversed(log_text.splitlines()):
        if line.startswith("error: "):
            return line[len("error: ") :]
    return None
