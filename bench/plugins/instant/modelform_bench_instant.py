"""A third-party provider plugin for the engine benchmark.

It is installed like any plugin (its own distribution, an entry point in
``modelform.providers``, imports from :mod:`modelform.plugin` only) and
answers every read, plan and apply at once, so a plan or apply of thousands
of services measures modelform's engine only.
"""

from __future__ import annotations

from typing import Any

from modelform.plugin import (
    PROTOCOL_VERSION,
    Applied,
    ApplyRequest,
    Context,
    Proposal,
    Provider,
    Resource,
    shared_options,
)


class InstantProvider(Provider):
    kind = "instant"
    description = "Answers at once; for benchmarks."
    protocol_version = PROTOCOL_VERSION
    read_is_cheap = True

    def service_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": shared_options("port", "replicas"),
            "additionalProperties": False,
        }

    def plan(self, resource: Resource, prior: dict[str, Any] | None, ctx: Context) -> Proposal:
        cfg = resource.config
        planned = {
            "port": cfg["port"],
            "url": f"http://127.0.0.1:{cfg['port']}",
            "code_digest": resource.digests.get("code", ""),
            "replicas": cfg.get("replicas", 1),
            "env": dict(cfg.get("env") or {}),
            "status": "Healthy",
        }
        return Proposal(planned, requires_replace={"port"})

    def apply(self, request: ApplyRequest, ctx: Context) -> Applied:
        return Applied(dict(request.planned))

    def delete(self, address: str, prior: dict[str, Any], ctx: Context) -> None:
        return None
