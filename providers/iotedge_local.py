"""The local IoT Edge runtime of one device: what the edge agent does on a
real device, done by the iotedge provider on this machine.

* **The edge hub** is ``python -m modelform.runtime.edge.hub`` (see
  :mod:`modelform.runtime.edge`), a detached process on the target's
  ``hub_address`` and port 8883 (the port ``azure-iot-device`` connects to),
  its files under ``.modelform/iotedge/<target>/``: ``deployment.json`` (the
  manifest it runs; rewritten and signalled with SIGHUP on a change, so
  routes and twins change without a restart) and ``hub/`` (its CA, module
  keys, held messages, ``upstream.jsonl``, ``status.json``).
* **Modules** run as containers on the Docker Engine (``run_as: container``)
  the way the edge agent creates them: the manifest's ``createOptions`` are
  the container's create body, verbatim (``Cmd``, ``HostConfig`` limits,
  …), with the environment the agent gives (``EdgeHubConnectionString``,
  ``EdgeModuleCACertificateFile`` and the ``IOTEDGE_*`` names), the hub's CA
  mounted read-only, and the restart policy mapped to Docker's. One
  difference, said in docs/providers/iotedge.md: modules share this
  machine's network (``NetworkMode: host``), since the hub listens on
  loopback only; a device's ``azure-iot-edge`` bridge network is not made,
  and ``PortBindings`` have no effect. With ``run_as: process`` a module is a
  detached process of this machine's Python instead.

Nothing here prints a key: connection strings go to a module's environment
only.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelform.plugin import ProviderError
from modelform.providers import dockerengine
from modelform.providers import local_process as proc

HUB_PORT = 8883
#: Where a module container finds the hub's CA (EdgeModuleCACertificateFile).
CA_IN_CONTAINER = "/etc/modelform-edge/ca.pem"
LABEL_PROJECT = "modelform.project_dir"
LABEL_ADDRESS = "modelform.address"
LABEL_MODULE = "modelform.edge_module"
LABEL_SPEC = "modelform.edge_spec"
#: The manifest's restart policies as Docker's (Docker has no on-unhealthy:
#: on-failure is the nearest; the edge agent's own backoff is Docker's).
DOCKER_RESTART = {
    "always": {"Name": "always"},
    "on-failure": {"Name": "on-failure"},
    "on-unhealthy": {"Name": "on-failure"},
    "never": {"Name": "no"},
}
#: Module runtime states, as the edge agent reports them (runtimeStatus).
RUNNING, STOPPED, FAILED, BACKOFF = "running", "stopped", "failed", "backoff"


def device_dir(work_dir: Path, target: str) -> Path:
    return work_dir / "iotedge" / target


def manifest_file(work_dir: Path, target: str) -> Path:
    return device_dir(work_dir, target) / "deployment.json"


def hub_state_dir(work_dir: Path, target: str) -> Path:
    return device_dir(work_dir, target) / "hub"


def file_digest(data: bytes) -> str:
    """What the hub reports for the manifest file it loaded."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_manifest(path: Path, text: str) -> str:
    """The manifest file written atomically; its file digest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8")
    tmp = path.with_suffix(".json.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return file_digest(data)


def hub_status(state_dir: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((state_dir / "status.json").read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


# -- the hub process ------------------------------------------------------------------
@dataclass(frozen=True)
class HubPlace:
    """Where one device's hub runs and keeps its files."""

    manifest: Path
    state_dir: Path
    address: str
    device: str
    log: Path

    @property
    def port(self) -> int:
        return HUB_PORT


def hub_alive(attrs: Mapping[str, Any]) -> bool:
    pid = attrs.get("pid")
    return isinstance(pid, int) and proc.alive(pid, attrs.get("started"))


def start_hub(place: HubPlace, project_dir: Path, address: str) -> tuple[int, int]:
    """Start the hub; (pid, start time). The caller waits with :func:`wait_hub`."""
    proc.port_free(place.address, place.port)
    argv = [
        sys.executable, "-m", "modelform.runtime.edge.hub",
        "--manifest", str(place.manifest), "--state-dir", str(place.state_dir),
        "--host", place.address, "--port", str(place.port), "--device", place.device,
    ]  # fmt: skip
    env = dict(os.environ)
    env[proc.PROJECT_ENV] = str(project_dir.resolve())
    env[proc.ADDRESS_ENV] = address
    env[proc.ATTRS_ENV] = json.dumps({"role": "edge-hub", "address": place.address})
    place.state_dir.mkdir(parents=True, exist_ok=True)
    return proc.spawn(argv, env, place.state_dir, place.log)


def wait_hub(
    place: HubPlace, pid: int, started: int, want_digest: str, timeout: float,
    sleep: Callable[[float], None],
) -> dict[str, Any]:  # fmt: skip
    """Wait until the hub at ``pid`` runs the manifest of ``want_digest``; its status.
    A hub that exits or does not get there in ``timeout`` s: ProviderError with its log."""
    deadline = time.monotonic() + timeout
    while True:
        if not proc.alive(pid, started):
            raise ProviderError(
                f"the local edge hub exited: {_last_error(place.log)}", log=tail(place.log)
            )
        doc = hub_status(place.state_dir)
        if (
            doc is not None
            and doc.get("pid") == pid
            and doc.get("state") == "running"
            and (doc.get("manifest") or {}).get("digest") == want_digest
        ):
            return doc
        if time.monotonic() > deadline:
            raise ProviderError(
                f"the local edge hub did not load the manifest within {timeout:.0f} s",
                log=tail(place.log),
            )
        sleep(0.1)


def reload_hub(pid: int, started: int | None) -> None:
    """Ask the running hub to read its manifest again (SIGHUP)."""
    if proc.alive(pid, started):
        os.kill(pid, signal.SIGHUP)


def stop_hub(attrs: Mapping[str, Any]) -> None:
    pid = attrs.get("pid")
    if isinstance(pid, int):
        proc.stop(pid, attrs.get("started"), grace=10.0)


def _last_error(log: Path) -> str:
    """The hub's one-line error (its stderr's ``error: …``), else its last line."""
    text = tail(log, 60)
    lines = text.splitlines()
    return proc.last_error(text) or (lines[-1] if lines else "(no output)")


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# -- module containers -----------------------------------------------------------------
def edge_env(
    module: str, device: str, connection_string: str, ca_file: str, gateway: str, hostname: str
) -> dict[str, str]:
    """The environment the edge agent gives every module."""
    return {
        "EdgeHubConnectionString": connection_string,
        "EdgeModuleCACertificateFile": ca_file,
        "IOTEDGE_MODULEID": module,
        "IOTEDGE_DEVICEID": device,
        "IOTEDGE_GATEWAYHOSTNAME": gateway,
        "IOTEDGE_IOTHUBHOSTNAME": hostname,
    }


def container_name(project: str, target: str, module: str) -> str:
    raw = f"mf-{project}-{target}-{module}"
    return "".join(c if c.isalnum() or c in "_.-" else "-" for c in raw)[:128]


def create_body(
    image: str, create_options: Mapping[str, Any], env: Mapping[str, str],
    labels: Mapping[str, str], restart_policy: str, ca_host_path: Path,
) -> dict[str, Any]:  # fmt: skip
    """The Docker Engine create body of a module, as the edge agent makes it:
    its createOptions, then the image, the environment (the manifest's, then
    the agent's), labels, restart policy, the CA file and the host network."""
    body = json.loads(json.dumps(dict(create_options)))  # a deep copy, JSON only
    given = [e for e in body.get("Env") or [] if e.split("=", 1)[0] not in env]
    body["Env"] = given + [f"{k}={v}" for k, v in sorted(env.items())]
    body["Image"] = image
    body["Labels"] = {**(body.get("Labels") or {}), **labels}
    host = body.setdefault("HostConfig", {})
    host["NetworkMode"] = "host"
    host["RestartPolicy"] = DOCKER_RESTART.get(restart_policy, {"Name": "always"})
    host["Binds"] = [*(host.get("Binds") or []), f"{ca_host_path}:{CA_IN_CONTAINER}:ro"]
    host.pop("PortBindings", None)  # no effect on the host network; Docker would warn
    return body


def run_container(client: Any, name: str, body: dict[str, Any]) -> str:
    """Create and start container ``name`` from ``body``; its id. A leftover
    container of that name (exited, or from an interrupted apply) goes first."""
    import docker.errors

    try:
        old = client.containers.get(name)
        old.remove(force=True)
    except docker.errors.NotFound:
        pass
    made = client.api.create_container_from_config(body, name=name)
    client.api.start(made["Id"])
    return str(made["Id"])


def container_state(client: Any, cid: str) -> tuple[str, int | None] | None:
    """(edge runtime status, exit code) of container ``cid``; None when gone."""
    import docker.errors

    try:
        info = client.api.inspect_container(cid)
    except docker.errors.NotFound:
        return None
    st = info.get("State") or {}
    code = st.get("ExitCode")
    if st.get("Restarting"):
        return BACKOFF, code
    if st.get("Running"):
        return RUNNING, None
    if st.get("Status") == "created":
        return STOPPED, None
    if code in (0, 137, 143) and not st.get("OOMKilled"):
        return STOPPED, code  # exited cleanly, or stopped (docker stop: SIGTERM/SIGKILL)
    return FAILED, code


def remove_container(client: Any, cid: str, grace: int = 10) -> None:
    """Stop and remove container ``cid``; one already gone is fine."""
    import docker.errors

    try:
        container = client.containers.get(cid)
    except docker.errors.NotFound:
        return
    dockerengine.remove(container, grace)


def container_logs(client: Any, cid: str, lines: int) -> str:
    import docker.errors

    try:
        raw = client.containers.get(cid).logs(tail=lines)
    except docker.errors.NotFound:
        return ""
    return bytes(raw).decode(errors="replace").rstrip("\n")


def our_containers(client: Any, project_dir: Path) -> list[Any]:
    label = f"{LABEL_PROJECT}={project_dir.resolve()}"
    return list(client.containers.list(all=True, filters={"label": label}))


# -- module processes --------------------------------------------------------------------
def process_state(attrs: Mapping[str, Any]) -> str:
    pid = attrs.get("pid")
    alive = isinstance(pid, int) and proc.alive(pid, attrs.get("started"))
    return RUNNING if alive else STOPPED
