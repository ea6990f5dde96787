"""Running the real ``modelform`` command against a project in a temp folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart"


def modelform_command() -> list[str]:
    """The installed ``modelform`` script of the interpreter running the tests
    (``pip install -e .`` puts it beside ``python``): the entry point a user
    runs, not ``python -m``. Missing is a broken install, so it fails."""
    exe = Path(sys.executable).with_name("modelform")
    if not exe.is_file():
        raise AssertionError(f"{exe} is missing: install modelform in this venv (pip install -e .)")
    return [str(exe)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def complete_lines(path: Path) -> list[str]:
    """The complete lines of a file another process may be appending to (a log, a JSON-lines
    store): a last line still being written, without its newline, is left for the next read.
    A missing file has none."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return text[: text.rfind("\n") + 1].splitlines()


def wait_until(
    what: str,
    probe: Callable[[], Any],
    timeout: float = 60,
    interval: float = 0.2,
    why: Callable[[], str] | None = None,
) -> Any:
    """``probe()``'s first true value, tried every ``interval`` seconds; an AssertionError
    naming ``what`` (and ``why()``, what was seen instead) once ``timeout`` seconds have gone by."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            seen = f": {why()}" if why is not None else ""
            raise AssertionError(f"{what}: not within {timeout:.0f} s{seen}")
        time.sleep(interval)


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


class Project:
    def __init__(self, root: Path, env: dict[str, str] | None = None) -> None:
        self.root = root
        #: Extra environment for every command (PYTHONPATH of a plugin, say).
        self.env = dict(env or {})

    def cmd(self, *args: str) -> list[str]:
        return [*modelform_command(), *args]

    def run(self, *args: str, timeout: float = 180) -> Result:
        p = subprocess.run(
            self.cmd(*args),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **self.env},
        )
        return Result(p.returncode, p.stdout, p.stderr)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.cmd(*args),
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **self.env},
        )

    def start(self, *args: str) -> Watched:
        """The command running in the background, its output read as it comes."""
        return Watched(self.popen(*args))

    def cleanup(self) -> None:
        """Destroy what the test made even when it failed half-way: a lock left
        by a CLI the test killed is removed first, and any server still running
        for this project is stopped."""
        lock = self.state_file.with_name(self.state_file.name + ".lock")
        if lock.exists():
            lock_id = json.loads(lock.read_text()).get("id", "")
            self.run("force-unlock", lock_id)
        self.run("destroy", "-auto-approve")
        from modelform.providers.local_process import find, stop

        for f in find(self.root.resolve()):
            stop(f.pid, f.started)

    @property
    def state_file(self) -> Path:
        return self.root / ".modelform" / "state.json"

    def state(self) -> dict[str, Any]:
        return json.loads(self.state_file.read_text())  # type: ignore[no-any-return]

    def resources(self) -> dict[str, Any]:
        data = self.state()
        res = data["resources"]
        if isinstance(res, list):
            return {r["address"]: r for r in res}
        return res  # type: ignore[no-any-return]


class Watched:
    """A running command whose stdout and stderr are read line by line as they
    come (one thread each), so a test waits for a line, never for time."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.out: list[str] = []
        self.err: list[str] = []
        self._changed = threading.Condition()
        self._open = 2
        self._readers = [
            threading.Thread(target=self._read, args=(proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[str] | None, into: list[str]) -> None:
        assert stream is not None
        for line in stream:
            with self._changed:
                into.append(line)
                self._changed.notify_all()
        with self._changed:
            self._open -= 1
            self._changed.notify_all()

    @property
    def text(self) -> str:
        with self._changed:
            return "".join(self.out) + "".join(self.err)

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 120) -> list[re.Match[str]]:
        """The first ``count`` stdout lines matching ``pattern``, as soon as they
        are printed; fails (with the output) if the command ends without them
        or ``timeout`` seconds pass."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [m for line in self.out if (m := rx.search(line))]
                if len(found) >= count:
                    return found[:count]
                left = deadline - time.monotonic()
                if not self._open or left <= 0:
                    why = "the command ended" if not self._open else f"{timeout:.0f} s passed"
                    raise AssertionError(
                        f"{why} before {count} line(s) matching {pattern!r}:\n"
                        + "".join(self.out)
                        + "".join(self.err)
                    )
                self._changed.wait(left)

    def finish(self, timeout: float = 120) -> int:
        """Wait for the command to end and for its output to be read; its exit code."""
        code = self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=timeout)
        return code


def copy_quickstart(dst: Path) -> Project:
    shutil.copytree(QUICKSTART, dst, ignore=shutil.ignore_patterns(".modelform", "__pycache__"))
    subprocess.run([sys.executable, "train.py"], cwd=dst, check=True, capture_output=True)
    return Project(dst)


def our_processes(project_dir: Path) -> set[int]:
    """Session leaders started by modelform for this project (live ones)."""
    from modelform.providers.local_process import find

    return {f.pid for f in find(project_dir.resolve())}
