"""Shared pieces of scripts/testenv: paths, pinned versions, daemons, waits, probes."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent
VERSIONS_FILE = SCRIPTS / "versions.env"


class PartError(Exception):
    """A part could not be built, started or checked; the message says why."""


def load_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip('"')
    # A port or version may be overridden from the environment (TESTENV_<KEY>).
    for key in list(values):
        override = os.environ.get(f"TESTENV_{key}")
        if override:
            values[key] = override
    for key, value in values.items():
        if key.endswith("_PORT") and not (value.isdigit() and 0 < int(value) < 65536):
            raise PartError(f"{key}={value!r} is not a port number (scripts/versions.env)")
    return values


def cache_root() -> Path:
    base = os.environ.get("MODELFORM_CACHE") or str(Path.home() / ".cache" / "modelform")
    return Path(base) / "testenv"


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def go(self) -> Path:
        return self.root / "go"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    def make(self) -> None:
        for path in (
            self.bin,
            self.go,
            self.images,
            self.certs,
            self.data,
            self.logs,
            self.run,
            self.etc,
        ):
            path.mkdir(parents=True, exist_ok=True)


def say(message: str) -> None:
    print(message, flush=True)


def log_tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return f"(no log at {path})"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(f"    | {line}" for line in text[-lines:])


class Lock:
    """An exclusive lock on the cache; its descriptor is never inherited by children."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> Lock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another scripts/testenv holding {self.path} ...")
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def run(
    argv: list[str],
    log: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    what: str = "",
) -> None:
    """Run a build or set-up step to completion, its output appended to log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            check=False,
        )
    if proc.returncode != 0:
        raise PartError(
            f"{what or argv[0]} failed (exit {proc.returncode}); log {log}:\n{log_tail(log)}"
        )


def output(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    proc = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=False,
    )
    if proc.returncode != 0:
        raise PartError(f"{' '.join(argv)} failed: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


# ---- daemons recorded by pid ------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime) counted after the ")" that closes the command name.
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19]


@dataclass
class Daemon:
    """One background server started by testenv, remembered in run/<name>.json."""

    name: str
    layout: Layout

    @property
    def record(self) -> Path:
        return self.layout.run / f"{self.name}.json"

    @property
    def log(self) -> Path:
        return self.layout.logs / f"{self.name}.log"

    def pid(self) -> int | None:
        """The recorded pid if that very process is still alive, else None."""
        try:
            info = json.loads(self.record.read_text())
        except (OSError, ValueError):
            return None
        pid = int(info["pid"])
        if _start_time(pid) != info.get("start"):
            return None
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return None
        return None if state == "Z" else pid

    def start(
        self, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> int:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            out.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} $ {' '.join(argv)}\n".encode())
            out.flush()
            # New session: own process group (stopped as a group), no controlling
            # terminal; stdin/stdout/stderr never the caller's; every other
            # descriptor (the set-up lock among them) closed in the child.
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
                close_fds=True,
            )
        record = {"pid": proc.pid, "start": _start_time(proc.pid), "argv": argv}
        self.record.write_text(json.dumps(record))
        return proc.pid

    def stop(self, timeout: float = 20.0) -> bool:
        """Stop the recorded process group; True if something was running."""
        pid = self.pid()
        if pid is None:
            self.record.unlink(missing_ok=True)
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _group_alive(pid):
            time.sleep(0.1)
        # Whatever is left of the group (the leader or its children) is killed.
        _signal_group(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _group_alive(pid):
            time.sleep(0.1)
        self.record.unlink(missing_ok=True)
        return True

    def check_alive(self) -> None:
        if self.pid() is None:
            raise PartError(f"{self.name} exited; log {self.log}:\n{log_tail(self.log)}")


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    """True while a live (non-zombie) process is left in the process group."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def wait_until(
    what: str,
    probe: Callable[[], bool],
    timeout: float,
    daemon: Daemon | None = None,
    interval: float = 0.2,
) -> float:
    """Poll probe until true; fail early if the daemon died. Returns seconds waited."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        try:
            if probe():
                return time.monotonic() - started
        except Exception:  # noqa: BLE001 - a probe that raises is simply "not yet"
            pass
        if daemon is not None:
            daemon.check_alive()
        if time.monotonic() > deadline:
            tail = f"; log {daemon.log}:\n{log_tail(daemon.log)}" if daemon else ""
            raise PartError(f"{what} not ready after {timeout:.0f} s{tail}")
        time.sleep(interval)


def http_ok(url: str, context: ssl.SSLContext | None = None, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise PartError(f"{what} needs root (apt-get, dockerd); run scripts/testenv as root")


def stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
