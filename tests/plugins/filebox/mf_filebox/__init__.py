"""A provider plugin outside modelform's source tree, built only on
``modelform.plugin``: each service is a folder of files under the target's
``root``; its config and its secret are child objects (files with their own
identity in state); a roster file per target gathers every service on it
(the target-owned resource); the check reads the service's health file.

It is real in the way that matters to the engine: read, check, discover and
delete look at the files, so deleting one out of band is drift.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from modelform.plugin import (
    PROTOCOL_VERSION,
    UNKNOWN,
    Applied,
    ApplyRequest,
    Check,
    Child,
    Context,
    Proposal,
    Provider,
    ProviderError,
    Resource,
    ServiceStatus,
    shared_options,
)

MARK = ".filebox-service.json"


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def _root(ctx: Context) -> Path:
    return (ctx.project_dir / str(ctx.target["root"])).resolve()


def _write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, sort_keys=True, indent=1))
    tmp.replace(path)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class FileboxProvider(Provider):
    kind = "filebox"
    description = "Services as folders of files (a test plugin)."
    protocol_version = PROTOCOL_VERSION
    target_part = "roster"

    def target_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                "root": {"type": "string", "description": "Folder the services are written to."},
            },
            "required": ["root"],
            "additionalProperties": False,
        }

    def service_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                **shared_options("replicas", replicas=1),
                "greeting": {"type": "string", "description": "What the service says."},
                "api_token": {
                    "type": "string",
                    "minLength": 8,
                    "sensitive": True,
                    "description": "A token the service keeps in its secret file.",
                },
                "healthy": {
                    "type": "boolean",
                    "default": True,
                    "description": "false writes a failing health file (to test checks).",
                },
            },
            "required": ["greeting"],
        }

    def attributes(self, resource_type: str) -> dict[str, str] | None:
        if resource_type == "service":
            return {k: k for k in ("path", "greeting", "replicas", "status", "models")}
        return None

    def identity(self, attributes: dict[str, Any]) -> str | None:
        return attributes.get("path")

    # -- plan -----------------------------------------------------------------
    def plan(self, resource: Resource, prior: dict[str, Any] | None, ctx: Context) -> Proposal:
        if resource.type == "target":  # the roster of every service on the target
            services = {
                a.split(".", 1)[1]: attrs.get("greeting", UNKNOWN)
                for a, attrs in sorted(resource.inputs.items())
                if a.startswith("service.")
            }
            planned = {
                "path": str(_root(ctx) / "roster.json"),
                "services": services,
                "digest": _digest(services)
                if all(v is not UNKNOWN for v in services.values())
                else UNKNOWN,
            }
            return Proposal(planned)
        cfg = resource.config
        folder = _root(ctx) / resource.name
        planned = {
            "path": str(folder),
            "greeting": cfg["greeting"],
            "replicas": cfg.get("replicas", 1),
            "healthy": cfg.get("healthy", True),
            "models": {n: resource.inputs[f"model.{n}"]["ref"] for n in cfg.get("models", [])},
            "status": ServiceStatus.HEALTHY.value,
        }
        children = {
            "config": Child(
                "configfile",
                {"path": str(folder / "config.json"), "greeting": cfg["greeting"]},
            ),
            "secret": Child(
                "secretfile",
                {"path": str(folder / "secret.json"), "token": cfg.get("api_token")},
                requires_replace={"token"},
            ),
        }
        return Proposal(planned, requires_replace={"path"}, children=children,
                        sensitive={"token"})  # fmt: skip

    # -- apply ----------------------------------------------------------------
    def apply(self, request: ApplyRequest, ctx: Context) -> Applied:
        planned = dict(request.planned)
        if request.resource.type == "target":
            _write(Path(planned["path"]), planned["services"])
            return Applied(planned)
        folder = Path(planned["path"])
        folder.mkdir(parents=True, exist_ok=True)
        marker = {"project_dir": str(ctx.project_dir.resolve()),
                  "address": request.resource.address, "attributes": planned}  # fmt: skip
        _write(folder / MARK, marker)
        _write(folder / "health.json", {"ok": bool(planned["healthy"])})
        children = {}
        for name, child in request.planned_children.items():
            attrs = child.attributes
            body = {k: v for k, v in attrs.items() if k != "path"}
            _write(Path(attrs["path"]), body)
            children[name] = Child(child.type, dict(attrs))
        for name, old in request.prior_children.items():
            if name not in children:
                Path(old["path"]).unlink(missing_ok=True)
        ctx.log(f"wrote {folder}")
        return Applied(planned, children)

    def check(self, request: ApplyRequest, applied: Applied, ctx: Context) -> Check:
        if request.resource.type == "target":
            return Check(ok=True)
        health = _read(Path(applied.attributes["path"]) / "health.json")
        if not health or not health.get("ok"):
            return Check(ok=False, status=ServiceStatus.UNHEALTHY.value,
                         message="health.json says the service is down")  # fmt: skip
        return Check(ok=True)

    # -- refresh ----------------------------------------------------------------
    def read(self, prior: dict[str, Any], ctx: Context) -> dict[str, Any] | None:
        path = Path(str(prior.get("path", "")))
        if ctx.type == "target":
            found = _read(path)
            return None if found is None else {**prior, "services": found}
        if ctx.type in ("configfile", "secretfile"):
            found = _read(path)
            return None if found is None else {**prior, **found}
        marker = _read(path / MARK)
        if marker is None:
            return None
        health = _read(path / "health.json") or {}
        status = ServiceStatus.HEALTHY.value if health.get("ok") else ServiceStatus.UNHEALTHY.value
        return {**prior, "status": status}

    def discover(self, ctx: Context) -> list[dict[str, Any]]:
        if "root" not in ctx.target:
            return []
        out = []
        for marker in sorted(_root(ctx).glob(f"*/{MARK}")):
            data = _read(marker) or {}
            if data.get("project_dir") != str(ctx.project_dir.resolve()):
                continue
            out.append({"address": data["address"], "attributes": data["attributes"],
                        "complete": True})  # fmt: skip
        return out

    def delete(self, address: str, prior: dict[str, Any], ctx: Context) -> None:
        path = Path(str(prior.get("path", "")))
        if not str(path).startswith(str(_root(ctx))):
            raise ProviderError(f"{address}: {path} is not under the target's root")
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
