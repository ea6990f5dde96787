"""Run the real functions host as a subprocess on a hand-written v2 app.

``write_app(folder, source, settings=None, host_json=None)`` writes a
Python v2 app; ``HostFactory.start(app_dir, env, ...)`` starts
``python -m modelform.runtime.functions APP_DIR --port 0`` in its own
session, its log (JSON lines on stderr) in a file, reads the port from
the HTTP ``listening`` line and waits until ``GET /`` says Healthy. Every
host is stopped at the end of the test (SIGTERM, then SIGKILL of its
process group); ``kill9()`` kills one on the spot.

``BLOB_APP`` is the app most tests use: ``score`` turns
``<container>/input/{blobname}.json`` into ``output/{blobname}_out.json``,
and appends ``<blob> <pid>`` to ``$RUNLOG`` on every call (one ``write``
of an ``O_APPEND`` file: lines from several hosts never mix), so a test
counts exactly how often each blob ran. A request ``{"fail": true}``
raises; ``{"sleep": s}`` sleeps first.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.e2e.helpers import complete_lines

STARTUP_TIMEOUT_S = 60.0

BLOB_APP = """
import json
import os
import time

import azure.functions as func

app = func.FunctionApp()


@app.blob_trigger(
    arg_name="inp", path="%IN_CONTAINER%/input/{blobname}.json", connection="AzureWebJobsStorage"
)
@app.blob_output(
    arg_name="out",
    path="%IN_CONTAINER%/output/{blobname}_out.json",
    connection="AzureWebJobsStorage",
)
def score(inp: func.InputStream, out: func.Out[str]) -> None:
    doc = json.loads(inp.read())
    fd = os.open(os.environ["RUNLOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{inp.name} {os.getpid()}\\n".encode())
    finally:
        os.close(fd)
    time.sleep(doc.get("sleep", 0))
    if doc.get("fail"):
        raise ValueError(f"cannot score {inp.name}")
    out.set(json.dumps({"blob": inp.name, "length": inp.length, "sum": sum(doc["data"])}))
"""


def write_app(
    folder: Path,
    source: str,
    settings: dict[str, str] | None = None,
    host_json: dict[str, Any] | None = None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "function_app.py").write_text(textwrap.dedent(source).lstrip())
    (folder / "host.json").write_text(json.dumps(host_json or {"version": "2.0"}))
    if settings is not None:
        values = {"FUNCTIONS_WORKER_RUNTIME": "python", **settings}
        (folder / "local.settings.json").write_text(
            json.dumps({"IsEncrypted": False, "Values": values})
        )
    return folder


def run_counts(runlog: Path) -> Counter[str]:
    """How often each blob (``container/name``) ran, from the app's run log."""
    return Counter(line.split(" ")[0] for line in complete_lines(runlog) if line)


@dataclass
class Host:
    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0
    session: requests.Session = field(default_factory=requests.Session)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        found = []
        for line in self.log().splitlines():
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if name is None or record.get("event") == name:
                found.append(record)
        return found

    def wait_event(
        self, name: str, timeout: float = STARTUP_TIMEOUT_S, count: int = 1, **match: Any
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            events = [
                event
                for event in self.events(name)
                if all(event.get(key) == value for key, value in match.items())
            ]
            if len(events) >= count:
                return events
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"host exited ({self.proc.returncode}) before {name!r}:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"no {name!r} event within {timeout}s:\n{self.log()}")
            time.sleep(0.05)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.get(self.url(path), **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.post(self.url(path), **kwargs)

    def status(self) -> dict[str, Any]:
        answer = self.get("/admin/host/status")
        answer.raise_for_status()
        return dict(answer.json())

    def wait_healthy(self, timeout: float = STARTUP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"host exited ({self.proc.returncode}):\n{self.log()}")
            try:
                answer = self.get("/", timeout=5)
                if answer.status_code == 200:
                    return
                last = answer.text
            except requests.ConnectionError as error:
                last = str(error)
            time.sleep(0.05)
        raise AssertionError(f"host not healthy within {timeout}s ({last}):\n{self.log()}")

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill9(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


class HostFactory:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.hosts: list[Host] = []

    def start(
        self,
        app_dir: Path,
        env: dict[str, str],
        *args: str,
        healthy: bool = True,
        key: str | None = None,
    ) -> Host:
        log_path = self.tmp_path / f"host-{len(self.hosts)}.log"
        full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        full_env.pop("MODELFORM_FUNCTION_KEY", None)
        if key is not None:
            full_env["MODELFORM_FUNCTION_KEY"] = key
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "modelform.runtime.functions",
                    str(app_dir),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    *args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                start_new_session=True,
            )
        host = Host(proc, log_path)
        self.hosts.append(host)
        if healthy:
            listening = host.wait_event("listening", count=1, kind=None)
            host.port = int(next(e["port"] for e in listening if "port" in e))
            host.wait_healthy()
        return host

    def stop_all(self) -> None:
        for host in self.hosts:
            if host.proc.poll() is None:
                host.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for host in self.hosts:
            try:
                host.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(host.proc.pid, signal.SIGKILL)
                host.proc.wait(10)
            host.session.close()
