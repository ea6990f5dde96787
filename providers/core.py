"""The built-in provider of models, environments and targets.

Models are registered in the project's model store (a new version when the
content digest is new) and recorded by URI. Environments and targets are
descriptions only: their planned attributes are their configuration and its
digest, which services depend on, so a changed environment reaches every
service using it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelform.engine.digests import short
from modelform.engine.modelstore import ModelStore
from modelform.plugin import (
    PROTOCOL_VERSION,
    Applied,
    ApplyRequest,
    Context,
    Proposal,
    Provider,
    Resource,
)

MODEL_ATTRIBUTES = {
    "name": "The model's name.",
    "version": "Its version in the model store (a whole number).",
    "ref": "NAME:VERSION.",
    "digest": "Content digest of the model's file or folder.",
    "source": "The file or folder it was registered from, relative to the project file.",
    "file": "The file's name (the folder's, for a folder).",
    "store": "The model store's kind (local or s3).",
    "uri": "Where the version lives: STORE:NAME/VERSION.",
    "tags": "Its tags.",
    "description": "Its description.",
}


def store_of(ctx: Context) -> ModelStore:
    store: ModelStore = ctx.models
    return store


class CoreProvider(Provider):
    kind = "core"
    protocol_version = PROTOCOL_VERSION
    description = "Models (versioned in the model store), environments and targets."
    resource_types = ("model", "environment", "target")
    read_is_cheap = True

    def attributes(self, resource_type: str) -> dict[str, str] | None:
        if resource_type == "model":
            return dict(MODEL_ATTRIBUTES)
        if resource_type in ("environment", "target"):
            return {"name": "Its name.", "digest": "Digest of its configuration."}
        return None

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
            "file": Path(r.config["path"]).name,
            "store": store.scheme,
            "uri": store.uri(r.name, version),
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
            reasons["version"] = reasons["ref"] = reasons["uri"] = reasons["digest"]
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
        """A version the store holds with another digest has drifted; a version
        the (local) store lacks is not gone: the record names the version and
        its digest, and the store registers it again when files are needed."""
        if ctx.type == "model" and "version" in prior and "digest" in prior and "name" in prior:
            found = store_of(ctx).get(prior["name"], int(prior["version"]))
            if found is not None and found.digest != prior["digest"]:
                return {**prior, "digest": found.digest}
        return prior

    def apply(self, request: ApplyRequest, ctx: Context) -> Applied:
        resource, planned = request.resource, request.planned
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
        return Applied(dict(planned))

    def delete(self, address: str, prior: dict[str, Any], ctx: Context) -> None:
        if ctx.type == "model" and "name" in prior:
            store_of(ctx).delete(prior["name"])
