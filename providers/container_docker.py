"""The container target's side of the Docker API: connect, observe, run, wait.

What a container *is* in modelform's terms is read here, from the Docker
API only: its state mapped to a service status, its published port, its
limits, its environment and the labels that tie it to a project, so a
container whose creation was never recorded (the CLI killed mid-apply)
is found again by label on its target's Docker Engine.

Every wait here goes through the ``sleep`` it is given (the provider
context's :meth:`~modelform.plugin.Context.sleep`), so Ctrl-C stops it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelform.plugin import Diagnostic, DiagnosticError, ProviderError, ServiceStatus, readiness
from modelform.providers.imagebuild import CONTAINER_PORT, VENV

GIB = 1024**3
AUTH_ENV = "MODELFORM_AUTH_KEY"
L_PROJECT = "modelform.project"
L_PROJECT_DIR = "modelform.project_dir"
L_ADDRESS = "modelform.address"
L_LINEAGE = "modelform.lineage"
L_ATTRS = "modelform.attributes"
#: Attributes only a real container has; never written into its labels.
COMPUTED = ("container_id", "id", "container_name", "key", "status", "container_state")
from modelform.providers.dockerengine import (  # noqa: E402 - re-exported for the provider
    MISSING_SDK,
    client,
    default_host,
    errors,
    is_local,
    remove,
    short,
)

__all__ = ["MISSING_SDK", "client", "default_host", "errors", "is_local", "remove", "short"]


# -- reading a container ------------------------------------------------------


def image_id(c: Any, ref: str) -> str | None:
    """The id of the image named ``ref`` on the engine, None when there is none."""
    import docker.errors

    try:
        return str(c.images.get(ref).id)
    except docker.errors.ImageNotFound:
        return None


def get(c: Any, container_id: str | None) -> Any | None:
    import docker.errors

    if not container_id:
        return None
    try:
        return c.containers.get(container_id)
    except docker.errors.NotFound:
        return None
    except docker.errors.APIError as e:
        raise DiagnosticError(Diagnostic(f"docker: {short(e)}")) from None


def state_of(
    attrs: dict[str, Any], url: str | None, local: bool, probe_timeout: float = 2.0
) -> tuple[str, str]:
    """(container state, service status) of an inspected container.

    running → Healthy / Transitioning (init() still running) / Unhealthy;
    created, restarting → Transitioning; exited, dead, OOM-killed → Failed.
    """
    st = attrs.get("State") or {}
    status = str(st.get("Status", "unknown"))
    health = (st.get("Health") or {}).get("Status")
    if st.get("OOMKilled") and status != "running":
        return "oom-killed", ServiceStatus.FAILED.value
    if status == "running":
        # From this machine the readiness route itself is the truth; Docker's
        # health check lags by up to an interval (and is all a remote host has).
        if url and local:
            seen = readiness(url, timeout=probe_timeout)
            if seen == ServiceStatus.UNHEALTHY.value and health == "starting":
                seen = ServiceStatus.TRANSITIONING.value
            return status, seen
        return status, {
            "healthy": ServiceStatus.HEALTHY.value,
            "starting": ServiceStatus.TRANSITIONING.value,
            "unhealthy": ServiceStatus.UNHEALTHY.value,
        }.get(str(health), ServiceStatus.HEALTHY.value)
    if status in ("created", "restarting"):
        return status, ServiceStatus.TRANSITIONING.value
    if status == "paused":
        return status, ServiceStatus.UNHEALTHY.value
    return status, ServiceStatus.FAILED.value


def limits_of(host_config: dict[str, Any]) -> tuple[float | None, float | None]:
    """(cpu cores, memory in GiB) a container is limited to, None for none."""
    nano = host_config.get("NanoCpus") or 0
    quota, period = host_config.get("CpuQuota") or 0, host_config.get("CpuPeriod") or 0
    cpu = None
    if nano > 0:
        cpu = round(nano / 1e9, 3)
    elif quota > 0:
        cpu = round(quota / (period or 100_000), 3)
    mem = host_config.get("Memory") or 0
    return cpu, (round(mem / GIB, 6) if mem > 0 else None)


def observe(container: Any, known: dict[str, Any]) -> dict[str, Any]:
    """The attributes the real container has now (over ``known`` ones)."""
    a = container.attrs
    hc = a.get("HostConfig") or {}
    env = dict(e.split("=", 1) for e in (a.get("Config") or {}).get("Env") or [] if "=" in e)
    cpu, mem = limits_of(hc)
    binding = ((hc.get("PortBindings") or {}).get(f"{CONTAINER_PORT}/tcp") or [{}])[0]
    host_ip = binding.get("HostIp") or "0.0.0.0"
    port = int(binding["HostPort"]) if binding.get("HostPort") else known.get("port")
    url = f"http://{host_ip}:{port}"
    cstate, status = state_of(a, url, is_local(str(known.get("docker_host") or "unix://")))
    wanted_env = known.get("env") or {}
    return {
        "container_id": a["Id"],
        "id": a["Id"][:12],
        "container_name": str(a.get("Name", "")).lstrip("/"),
        "image": (a.get("Config") or {}).get("Image"),
        "image_id": a.get("Image"),
        "host": host_ip,
        "port": port,
        "url": url,
        "env": {k: env[k] for k in wanted_env if k in env},
        "cpu": cpu,
        "memory_gb": mem,
        "restart_policy": ((hc.get("RestartPolicy") or {}).get("Name") or "no"),
        "container_state": cstate,
        "status": status,
        "key": env.get(AUTH_ENV),
    }


def labelled(c: Any, project_dir: Path) -> list[Any]:
    """Every container (running or not) made for the project at ``project_dir``."""
    return list(
        c.containers.list(all=True, filters={"label": f"{L_PROJECT_DIR}={project_dir.resolve()}"})
    )


def label_attributes(container: Any) -> dict[str, Any] | None:
    try:
        data = json.loads(container.labels.get(L_ATTRS, ""))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


# -- making one -----------------------------------------------------------------


def healthcheck() -> dict[str, Any]:
    """Docker's own check of the runtime's readiness route."""
    url = f"http://127.0.0.1:{CONTAINER_PORT}/ready"
    code = f"import urllib.request as u; u.urlopen('{url}', timeout=4)"
    s = 1_000_000_000
    return {
        "test": ["CMD", f"{VENV}/bin/python", "-c", code],
        "interval": 10 * s,
        "timeout": 5 * s,
        "retries": 3,
        "start_period": 120 * s,
    }


def limit_args(cpu: float | None, memory_gb: float | None) -> dict[str, Any]:
    """Limits as CFS quota (which ``docker update`` can change in place)."""
    out: dict[str, Any] = {}
    if cpu:
        out.update(cpu_period=100_000, cpu_quota=int(round(cpu * 100_000)))
    if memory_gb:
        out.update(mem_limit=int(memory_gb * GIB), memswap_limit=int(memory_gb * GIB))
    return out


def run(c: Any, *, image: str, name: str, labels: dict[str, str], env: dict[str, str],
        host: str, port: int, command: list[str], cpu: float | None, memory_gb: float | None,
        network: str | None) -> Any:  # fmt: skip
    """Create and start a container; a refused start removes it again.

    It starts with no restart policy, so a server that fails while starting
    exits with its own code; :func:`wait_ready`'s caller sets the policy
    once it is ready."""
    import docker.errors

    kwargs: dict[str, Any] = dict(
        image=image, command=command, name=name, labels=labels, environment=env,
        ports={f"{CONTAINER_PORT}/tcp": (host, port)}, healthcheck=healthcheck(),
        restart_policy={"Name": "no"}, detach=True, **limit_args(cpu, memory_gb),
    )  # fmt: skip
    if network:
        kwargs["network"] = network
    try:
        container = c.containers.create(**kwargs)
    except docker.errors.APIError as e:
        raise ProviderError(f"docker refused to create the container: {short(e)}") from None
    try:
        container.start()
    except docker.errors.APIError as e:
        container.remove(force=True)
        why = short(e)
        if "port is already allocated" in why or "address already in use" in why:
            why = f"port {host}:{port} is already in use on the Docker host"
        raise ProviderError(f"the container did not start: {why}") from None
    return container


def logs_tail(container: Any, lines: int = 40) -> str:
    try:
        raw = container.logs(tail=lines, stdout=True, stderr=True)
    except Exception:  # noqa: BLE001 - a container gone meanwhile has no logs
        return ""
    return str(raw.decode(errors="replace")).rstrip("\n")


def wait_ready(
    container: Any, url: str, local: bool, timeout: float, sleep: Callable[[float], None]
) -> str:
    """Wait until the service answers ready; on exit or timeout raise
    :class:`ProviderError` (status Failed) with the container's log tail.
    Between looks it waits with ``sleep``, which raises
    :class:`~modelform.plugin.Cancelled` once the user interrupts."""
    container.reload()
    restarts = int(container.attrs.get("RestartCount") or 0)
    deadline = time.monotonic() + timeout
    while True:
        container.reload()
        a = container.attrs
        st = a.get("State") or {}
        if st.get("Status") in ("exited", "dead") or int(a.get("RestartCount") or 0) > restarts:
            why = f"exited with code {st.get('ExitCode')}"
            if st.get("OOMKilled"):
                why = "was killed for lack of memory (OOM; raise memory_gb)"
            elif st.get("ExitCode") == 3:
                why = "exited: the entry script failed to load or init() raised (exit code 3)"
            raise ProviderError(
                f"Failed: the scoring server {why}",
                log=logs_tail(container),
                status=ServiceStatus.FAILED.value,
            )
        _, status = state_of(a, url, local, probe_timeout=1.0)
        if status == ServiceStatus.HEALTHY.value:
            return status
        if time.monotonic() > deadline:
            raise ProviderError(
                f"Failed: not ready after {timeout:.0f} s",
                log=logs_tail(container),
                status=ServiceStatus.FAILED.value,
            )
        sleep(0.1)
