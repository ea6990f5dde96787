"""Start the real scoring server as a subprocess and talk to it over HTTP.

Shared by the runtime tests (``conftest.py`` wraps it in a fixture).

``start_server(script_text, ...)`` writes the script into the test's
temporary folder, starts ``python -m modelform.runtime --port 0`` in its
own session with stdout/stderr in a log file, reads the bound port from
the ``listening`` log line and (by default) waits for the ``ready`` line.
Every server started is stopped at the end of the test (SIGTERM, then
SIGKILL of its whole process group).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

STARTUP_TIMEOUT_S = 30.0


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    log_path: Path
    script: Path
    port: int = 0
    session: requests.Session = field(default_factory=requests.Session)

    def url(self, path: str = "/score") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        found = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if name is None or record.get("event") == name:
                    found.append(record)
        return found

    def wait_event(
        self, name: str, timeout: float = STARTUP_TIMEOUT_S, count: int = 1
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events(name)
            if len(events) >= count:
                return events
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"server exited ({self.proc.returncode}) before {name!r}:\n{self.log()}"
                )
            time.sleep(0.02)
        raise AssertionError(f"no {name!r} event within {timeout}s:\n{self.log()}")

    def post(self, payload: Any = None, **kwargs: Any) -> requests.Response:
        if payload is not None:
            kwargs["json"] = payload
        kwargs.setdefault("timeout", 30)
        return self.session.post(self.url(), **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.get(self.url(path), **kwargs)

    def worker_pids(self) -> set[int]:
        return {event["worker_pid"] for event in self.events("worker_started")}

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        _kill_group(self.proc.pid)
        self.session.close()
        return self.proc.wait(5)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def group_alive(pgid: int) -> bool:
    """True while a live (not zombie) process of the server's process group exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return any(state != "Z" for _, state, _ in group_members(pgid))


def group_members(pgid: int) -> list[tuple[int, str, str]]:
    """(pid, state, command line) of every process in the process group."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid:
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                cmdline = "?"
            members.append((int(entry.name), state, cmdline))
    return members


class ServerFactory:
    """Starts servers for one test and stops them all at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.servers: list[Server] = []

    def start(
        self,
        script_text: str,
        *args: str,
        workers: int = 1,
        model_dir: Path | None = None,
        env: dict[str, str] | None = None,
        wait: str | None = "ready",
        files: dict[str, str] | None = None,
    ) -> Server:
        folder = self.folder / f"app{len(self.servers)}"
        folder.mkdir()
        script = folder / "score.py"
        script.write_text(textwrap.dedent(script_text))
        for name, text in (files or {}).items():
            (folder / name).write_text(textwrap.dedent(text))
        log_path = folder / "server.log"
        argv = [sys.executable, "-m", "modelform.runtime", "--entry-script", str(script)]
        argv += ["--port", "0", "--workers", str(workers)]
        if model_dir is not None:
            argv += ["--model-dir", str(model_dir)]
        argv += list(args)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MODELFORM_AUTH")}
        full_env.update(env or {})
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=full_env,
                cwd=folder,
                start_new_session=True,
            )
        server = Server(proc, log_path, script)
        self.servers.append(server)
        if wait is not None:
            server.port = server.wait_event("listening")[0]["port"]
            if wait == "ready":
                server.wait_event("ready")
        return server

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()
