"""The built-in provider of models, environments and targets.

Models are registered in the project's model store (a new version when the
content digest is new). Environments and targets are descriptions only:
their planned attributes are their configuration and its digest, which
services depend on, so a changed environment reaches every service using it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from modelform.engine.digests import short
from modelform.engine.modelstore import ModelStore
from modelform.engine.provider import Action, Context, Proposal, Provider, Resource


def store_of(ctx: Context) -> ModelStore:
    return ModelStore(ctx.work_dir / "models")


class CoreProvider(Provider):
    kind = "core"
    description = "Models (versioned in the local model store), environments and targets."
    resource_types = ("model", "environment", "target")
    read_is_cheap = True

    # -- models -----------------------------------------------------------
    def _plan_model(self, r: Resource, prior: dict[str, Any] | None, ctx: Context) -> Proposal:
        digest = r.digests["content"]
        store = store_of(ctx)
        if prior and prior.get("digest") == digest:
            version = int(prior["version"])
        else:
            found = store.find(r.name, digest)
            at_least = int(prior["version"]) + 1 if prior else 1
            version = found.version if found else store.next_version(r.name, at_least)
        planned = {
            "name": r.name,
            "version": version,
            "ref": f"{r.name}:{version}",
            "digest": digest,
            "source": r.config["path"],
            # Relative to the project's working folder, so a moved or freshly
            # cloned project plans no change: see ModelStore.resolve().
            "path": f"models/{r.name}/{version}",
            "file": Path(r.config["path"]).name,
            "tags": dict(r.config.get("tags") or {}),
            "description": r.config.get("description", ""),
        }
        reasons = {}
        notes = []
        if prior and prior.get("digest") != digest:
            notes.append(f"registers {planned['ref']}; {prior.get('ref')} stays in the store")
            reasons["digest"] = (
                f"model digest changed: {prior.get('ref')} → {planned['ref']} "
                f"({short(str(prior.get('digest', '')))} → {short(digest)})"
            )
            reasons["version"] = reasons["ref"] = reasons["path"] = reasons["digest"]
        return Proposal(planned=planned, reasons=reasons, notes=notes)

    # -- environments and targets -------------------------------------------
    def _plan_description(self, r: Resource) -> Proposal:
        planned = {"name": r.name, **r.config, "digest": r.digests.get("config", "")}
        return Proposal(planned=planned)

    def plan(self, resource: Resource, prior: dict[str, Any] | None, ctx: Context) -> Proposal:
        if resource.type == "model":
            return self._plan_model(resource, prior, ctx)
        return self._plan_description(resource)

    def read(self, prior: dict[str, Any], ctx: Context) -> dict[str, Any] | None:
        if "version" in prior and "digest" in prior and "name" in prior:
            found = store_of(ctx).get(prior["name"], int(prior["version"]))
            if found is None or found.digest != prior["digest"]:
                return None  # removed from the store out of band: drift
        return prior

    def apply(
        self, action: Action, resource: Resource, prior: dict[str, Any] | None, ctx: Context
    ) -> dict[str, Any]:
        planned = self.plan(resource, prior, ctx).planned
        if resource.type == "model":
            source = ctx.project_dir / resource.config["path"]
            ctx.log(f"registering {planned['ref']} from {resource.config['path']}")
            store_of(ctx).register(
                resource.name,
                planned["version"],
                planned["digest"],
                source,
                planned["tags"],
                planned["description"],
            )
        return planned

    def delete(self, address: str, prior: dict[str, Any], ctx: Context) -> None:
        if address.startswith("model.") and "name" in prior:
            shutil.rmtree(store_of(ctx).root / prior["name"], ignore_errors=True)
