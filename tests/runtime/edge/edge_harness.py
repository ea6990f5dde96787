"""Run the real edge hub and real azure-iot-device module processes for the tests.

``azure-iot-device`` always connects to port 8883 (it has no port
setting), so every hub here listens on 127.0.0.1:8883 and the tests that
start one hold ``PORT_LOCK`` (an flock) for their duration: two test
runs on one machine take turns instead of failing.

``EdgeRun`` (one per test): ``write_manifest``, ``start_hub(*options)`` (waits for
``status.json`` of that pid to say running), ``start_module(script,
module, env)`` (``EdgeHubConnectionString`` + ``EdgeModuleCACertificateFile``
as the edge agent sets them), ``status()``, ``upstream()``,
``wait_for(predicate)``; at the end every process is stopped (SIGTERM,
then SIGKILL of its process group).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.e2e.helpers import complete_lines as read_lines
from tests.e2e.helpers import wait_until

HERE = Path(__file__).parent
MODULES = HERE / "modules"
PORT = 8883
HOST = "127.0.0.1"
DEVICE = "line-7"
PORT_LOCK = Path("/tmp/modelform-edgehub-8883.lock")
START_TIMEOUT_S = 30.0

ROUTES = {
    "sensorToModel": "FROM /messages/modules/sensor/outputs/rows "
    'INTO BrokeredEndpoint("/modules/diabetes/inputs/rows")',
    "modelToUpstream": "FROM /messages/modules/diabetes/outputs/predictions INTO $upstream",
    "errorsToUpstream": "FROM /messages/modules/diabetes/outputs/errors INTO $upstream",
}


def manifest(
    modules: list[str], routes: dict[str, Any], desired: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    content: dict[str, Any] = {
        "$edgeAgent": {
            "properties.desired": {
                "schemaVersion": "1.1",
                "runtime": {"type": "docker", "settings": {}},
                "systemModules": {},
                "modules": {
                    name: {
                        "version": "1.0",
                        "type": "docker",
                        "status": "running",
                        "restartPolicy": "always",
                        "settings": {"image": f"{name}:1", "createOptions": "{}"},
                    }
                    for name in modules
                },
            }
        },
        "$edgeHub": {
            "properties.desired": {
                "schemaVersion": "1.1",
                "routes": routes,
                "storeAndForwardConfiguration": {"timeToLiveSecs": 7200},
            }
        },
    }
    for name, props in (desired or {}).items():
        content[name] = {"properties.desired": props}
    return {"modulesContent": content}


@contextlib.contextmanager
def port_lock(timeout_s: float = 600.0) -> Iterator[None]:
    with PORT_LOCK.open("a") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{PORT_LOCK} held for {timeout_s} s") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """``predicate()``'s first true value, tried every 0.05 s (messages take milliseconds)."""
    return wait_until(what, predicate, timeout_s, interval=0.05)


class EdgeRun:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.manifest_path = root / "manifest.json"
        self.hub: subprocess.Popen[bytes] | None = None
        self.hub_log = root / "hub.log"
        self.processes: list[subprocess.Popen[bytes]] = []

    # ---- hub -----------------------------------------------------------------------------

    def write_manifest(self, document: dict[str, Any]) -> None:
        temporary = self.manifest_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(document, indent=2))
        temporary.replace(self.manifest_path)

    def hub_command(self, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "modelform.runtime.edge.hub",
            "--manifest",
            str(self.manifest_path),
            "--state-dir",
            str(self.state),
            "--host",
            HOST,
            "--port",
            str(PORT),
            "--device",
            DEVICE,
            *extra,
        ]

    def start_hub(self, *extra: str) -> subprocess.Popen[bytes]:
        with self.hub_log.open("ab") as log:
            self.hub = subprocess.Popen(
                self.hub_command(*extra), stdout=log, stderr=log, start_new_session=True
            )
        pid = self.hub.pid

        def running() -> bool:
            if self.hub is not None and self.hub.poll() is not None:
                raise AssertionError(
                    f"hub exited {self.hub.returncode}: {self.hub_log.read_text()}"
                )
            status = self.status()
            return bool(status and status.get("pid") == pid and status.get("state") == "running")

        wait_for(running, START_TIMEOUT_S, "the hub's status")
        return self.hub

    def status(self) -> dict[str, Any]:
        try:
            document: dict[str, Any] = json.loads((self.state / "status.json").read_text())
            return document
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def module_status(self, module: str) -> dict[str, Any]:
        status: dict[str, Any] = self.status().get("modules", {}).get(module, {})
        return status

    def upstream(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in read_lines(self.state / "upstream.jsonl")]

    def hub_rss_kb(self, field: str = "VmHWM") -> int:
        assert self.hub is not None
        for line in Path(f"/proc/{self.hub.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {field} for the hub")

    def stop_hub(self, timeout_s: float = 15.0) -> int:
        assert self.hub is not None
        self.hub.send_signal(signal.SIGTERM)
        return self.hub.wait(timeout_s)

    # ---- modules -------------------------------------------------------------------------

    def connection_string(self, module: str) -> str:
        from modelform.runtime.edge import connection_string

        return connection_string(self.state, module)

    def module_env(self, module: str, **env: str) -> dict[str, str]:
        return {
            **os.environ,
            "EdgeHubConnectionString": self.connection_string(module),
            "EdgeModuleCACertificateFile": str(self.state / "ca.pem"),
            **env,
        }

    def start_module(self, script: str, module: str, **env: str) -> subprocess.Popen[bytes]:
        log = (self.root / f"{module}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, str(MODULES / script)],
            env=self.module_env(module, **env),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        self.processes.append(process)
        return process

    def wait_ready(self, module: str, connects: int = 1, timeout_s: float = 30.0) -> None:
        def ready() -> bool:
            status = self.module_status(module)
            return bool(status.get("ready") and status.get("connects", 0) >= connects)

        wait_for(ready, timeout_s, f"module {module} connected and subscribed")

    # ---- cleanup -------------------------------------------------------------------------

    def stop_all(self) -> None:
        for process in [*self.processes, *([self.hub] if self.hub else [])]:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in [*self.processes, *([self.hub] if self.hub else [])]:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]
