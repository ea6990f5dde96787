"""The local target: one detached scoring-runtime process per service.

Needs nothing installed: the process runs ``python -m modelform.runtime``
with the interpreter modelform runs under (or the target's ``python``),
on 127.0.0.1 and the service's port. The local target does not install an
environment's packages: the interpreter must have them (the container
target builds them into an image).

Attribute changes and what they cause:

* port or host → replace (a new process on the new port starts and is
  healthy before the old one stops);
* model versions, code digest, environment variables, workers, auth,
  timeout, a process found unhealthy → update (restart on the same port);
* a process that is gone (killed) → the refresh drops it, the plan creates it.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from modelform.plugin import (
    PROTOCOL_VERSION,
    UNKNOWN,
    Action,
    Applied,
    ApplyRequest,
    Cancelled,
    Check,
    Context,
    Proposal,
    Provider,
    ProviderError,
    Resource,
    ServiceStatus,
    coming_up,
    http_check,
    readiness,
    shared_options,
)
from modelform.providers import local_process as proc

#: Attributes that only a real process has; not compared as desired state.
COMPUTED = ("pid", "started", "key")
REPLACE_ON = {"port", "host"}


def _service_dir(ctx: Context, name: str) -> Path:
    return ctx.work_dir / "services" / name


def model_dir(ctx: Context, name: str, models: dict[str, dict[str, Any]]) -> Path:
    """The folder AZUREML_MODEL_DIR points at, laid out as Azure ML does:
    with one model, that version's folder; with several, a folder holding
    ``<model>/<version>/`` for each."""
    if len(models) == 1:
        (m,) = models.values()
        return ctx.models.folder(m, ctx.project_dir)  # type: ignore[no-any-return]
    root = _service_dir(ctx, name) / "models"
    root.mkdir(parents=True, exist_ok=True)
    for m in models.values():
        link = root / m["name"] / str(m["version"])
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        folder = ctx.models.folder(m, ctx.project_dir)
        link.symlink_to(folder.resolve(), target_is_directory=True)
    return root


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


ATTRIBUTES = {
    "host": "127.0.0.1.",
    "port": "The port the service listens on.",
    "url": "http://127.0.0.1:PORT.",
    "models": "Model name → NAME:VERSION it serves.",
    "entry_script": "The scoring script.",
    "source_dir": "The folder shipped with it.",
    "code_digest": "Digest of the source folder.",
    "environment": "Its environment's name.",
    "env": "Environment variables of the process.",
    "workers": "Worker processes.",
    "auth": "none or key.",
    "timeout_seconds": "Longest a scoring request may take.",
    "status": "Healthy, Transitioning, Unhealthy or Failed.",
    "pid": "The server's process id.",
    "started": "The process's start time (clock ticks since boot).",
    "key": "The generated key, with auth: key (sensitive).",
}


class LocalProvider(Provider):
    kind = "local"
    protocol_version = PROTOCOL_VERSION
    description = "A scoring-runtime process per service on this machine (127.0.0.1)."

    def service_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": shared_options(
                "port",
                "auth",
                "timeout_seconds",
                "workers",
                auth="none",
                timeout_seconds=60,
                workers=1,
            ),  # fmt: skip
            "required": ["port"],
        }

    def attributes(self, resource_type: str) -> dict[str, str] | None:
        return dict(ATTRIBUTES) if resource_type == "service" else None

    def identity(self, attributes: dict[str, Any]) -> str | None:
        pid = attributes.get("pid")
        return None if pid is None else f"{pid}:{attributes.get('started')}"

    def target_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                "python": {"type": "string", "description": "Interpreter that runs the services."},
                "startup_timeout": {
                    "type": "number",
                    "description": "Seconds to wait for a service to become ready (default 120).",
                },
            },
            "additionalProperties": False,
        }

    # -- plan ---------------------------------------------------------------
    def desired(self, r: Resource) -> dict[str, Any]:
        cfg = r.config
        models = {n: r.inputs[f"model.{n}"] for n in cfg.get("models", [])}
        env_name = cfg.get("environment")
        env_attrs = r.inputs.get(f"environment.{env_name}", {}) if env_name else {}
        env = {**(env_attrs.get("env") or {}), **(cfg.get("env") or {})}
        host = "127.0.0.1"
        return {
            "host": host,
            "port": cfg["port"],
            "url": f"http://{host}:{cfg['port']}",
            "models": {n: m["ref"] for n, m in models.items()},
            "entry_script": cfg["entry_script"],
            "source_dir": cfg.get("source_dir") or str(Path(cfg["entry_script"]).parent),
            "code_digest": r.digests.get("code", ""),
            "environment": env_name,
            "env": {k: str(v) for k, v in env.items()},
            "workers": int(cfg.get("workers") or 1),
            "auth": cfg.get("auth") or "none",
            "timeout_seconds": cfg.get("timeout_seconds"),
            "status": ServiceStatus.HEALTHY.value,
        }

    def plan(self, resource: Resource, prior: dict[str, Any] | None, ctx: Context) -> Proposal:
        planned = self.desired(resource)
        changed = (
            prior is None or ctx.replacing or any(prior.get(k) != v for k, v in planned.items())
        )
        if coming_up(prior, planned):
            planned["status"] = ServiceStatus.TRANSITIONING.value
            changed = False
        for k in COMPUTED:
            planned[k] = UNKNOWN if changed or prior is None else prior.get(k)
        if planned["auth"] != "key":
            planned["key"] = None
        elif prior and prior.get("key"):
            planned["key"] = prior["key"]  # keep the key across restarts
        reasons = {}
        if prior:
            for n, ref in planned["models"].items():
                old = (prior.get("models") or {}).get(n)
                if old != ref:
                    reasons["models"] = f"model {n}: {old or 'none'} → {ref}"
            if prior.get("status") != planned["status"]:
                reasons["status"] = f"service is {prior.get('status')}: restart"
        notes = []
        if prior and prior.get("port") != planned["port"]:
            notes.append("new process starts on the new port before the old one stops")
        return Proposal(
            planned,
            requires_replace=set(REPLACE_ON),
            reasons=reasons,
            notes=notes,
            sensitive={"key"},
        )

    # -- refresh --------------------------------------------------------------
    def read(self, prior: dict[str, Any], ctx: Context) -> dict[str, Any] | None:
        pid, started = prior.get("pid"), prior.get("started")
        if not isinstance(pid, int) or not proc.alive(pid, started):
            return None
        return {**prior, "status": readiness(prior["url"])}

    def discover(self, ctx: Context) -> list[dict[str, Any]]:
        out = []
        for f in proc.find(ctx.project_dir.resolve()):
            attrs = dict(f.attributes or {})
            attrs.update(pid=f.pid, started=f.started)
            if isinstance(attrs.get("url"), str):
                attrs["status"] = readiness(str(attrs["url"]))
            out.append({"address": f.address, "attributes": attrs, "complete": bool(f.attributes)})
        return out

    # -- apply ----------------------------------------------------------------
    def _start(self, r: Resource, planned: dict[str, Any], ctx: Context) -> dict[str, Any]:
        proc.port_free(planned["host"], int(planned["port"]))
        models = {n: r.inputs[f"model.{n}"] for n in r.config.get("models", [])}
        key = planned.get("key")
        if planned["auth"] == "key" and not isinstance(key, str):
            key = secrets.token_urlsafe(32)
        attrs = {k: v for k, v in planned.items() if k not in COMPUTED}
        attrs["key"] = key
        python = ctx.target.get("python") or sys.executable
        argv = [
            python, "-m", "modelform.runtime",
            "--entry-script", str((ctx.project_dir / planned["entry_script"]).resolve()),
            "--host", planned["host"],
            "--port", str(planned["port"]),
            "--workers", str(planned["workers"]),
        ]  # fmt: skip
        if models:
            argv += ["--model-dir", str(model_dir(ctx, r.name, models))]
        if planned.get("timeout_seconds"):
            argv += ["--timeout", str(planned["timeout_seconds"])]
        env = {**os.environ, **planned["env"]}
        env.pop("MODELFORM_AUTH_KEY", None)
        if key:
            env["MODELFORM_AUTH_KEY"] = key
        env[proc.PROJECT_ENV] = str(ctx.project_dir.resolve())
        env[proc.ADDRESS_ENV] = r.address
        env[proc.ATTRS_ENV] = json.dumps(attrs)
        log = ctx.work_dir / "logs" / f"{r.name}.log"
        cwd = (ctx.project_dir / planned["source_dir"]).resolve()
        pid, started = proc.spawn(argv, env, cwd, log)
        made = {**attrs, "pid": pid, "started": started,
                "status": ServiceStatus.TRANSITIONING.value}  # fmt: skip
        ctx.log(f"started pid {pid}; waiting for {planned['url']}/ready")
        timeout = float(ctx.target.get("startup_timeout") or 120)
        deadline = time.monotonic() + timeout
        while True:
            if not proc.alive(pid, started):
                raise ProviderError(
                    "the scoring server exited before it was ready",
                    log=_tail(log),
                    status=ServiceStatus.FAILED.value,
                )
            if readiness(planned["url"], timeout=1.0) == ServiceStatus.HEALTHY.value:
                break
            if time.monotonic() > deadline:
                proc.stop(pid, started)
                raise ProviderError(
                    f"not ready after {timeout:.0f} s",
                    log=_tail(log),
                    status=ServiceStatus.FAILED.value,
                )
            try:
                ctx.sleep(0.05)
            except Cancelled as e:  # it runs, unchecked: recorded tainted
                msg = "interrupted while waiting for it to be ready"
                raise Cancelled(msg, attributes=made) from e
        return {**made, "status": ServiceStatus.HEALTHY.value}

    def apply(self, request: ApplyRequest, ctx: Context) -> Applied:
        resource, prior, planned = request.resource, request.prior, request.planned
        if prior and request.action is Action.REPLACE and prior.get("port") != planned["port"]:
            new = self._start(resource, planned, ctx)  # create before destroy
            self.delete(resource.address, prior, ctx)
            return Applied(new)
        if prior:
            self.delete(resource.address, prior, ctx)
        return Applied(self._start(resource, planned, ctx))

    def check(self, request: ApplyRequest, applied: Applied, ctx: Context) -> Check:
        return http_check(request.resource, applied.attributes, ctx)

    def delete(self, address: str, prior: dict[str, Any], ctx: Context) -> None:
        pid = prior.get("pid")
        if isinstance(pid, int):
            proc.stop(pid, prior.get("started"))

    def logs(self, address: str, attributes: dict[str, Any], ctx: Context, tail: int = 200) -> str:
        name = address.split(".", 1)[-1]
        return _tail(ctx.work_dir / "logs" / f"{name}.log", tail)
