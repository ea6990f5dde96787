"""Kind catalogs for tests of the loader that are not about kinds: every kind
is known and takes every shared option (with the defaults the built-in kinds
use) and any option of its own."""

from __future__ import annotations

from typing import Any

from modelform.engine.config import Config
from modelform.engine.kinds import KindInfo, shared_option_schemas, shared_options
from modelform.plugin import Resource


class OpenCatalog:
    def kinds(self) -> list[str]:
        return ["core", "local"]

    def info(self, kind: str) -> KindInfo:
        props = shared_options(
            *shared_option_schemas(), auth="none", replicas=1, workers=1, timeout_seconds=60
        )
        return KindInfo(
            kind=kind,
            service_schema={"type": "object", "properties": props, "additionalProperties": True},
            target_schema={"type": "object", "additionalProperties": True},
        )


OPEN = OpenCatalog()


class OneKindCatalog:
    """The core kind and one kind under test, with that kind's own schemas
    (tests of a provider's options, loaded as the engine loads them)."""

    def __init__(
        self, kind: str, service_schema: dict[str, Any], target_schema: dict[str, Any],
        description: str = "",
    ) -> None:  # fmt: skip
        self.kind = kind
        self._info = KindInfo(kind, service_schema, target_schema, description=description)

    def kinds(self) -> list[str]:
        return ["core", self.kind]

    def info(self, kind: str) -> KindInfo | None:
        if kind == "core":
            return KindInfo(kind="core", service_schema={}, target_schema={})
        return self._info if kind == self.kind else None


def service_resource(cfg: Config, name: str, provider: str) -> Resource:
    """Service ``name`` of a loaded project as the planner hands it to ``provider``
    (its options as written, with their positions)."""
    return Resource(
        address=f"service.{name}",
        type="service",
        name=name,
        provider=provider,
        config=cfg.services[name],
        pos=cfg.pos(("services", name)),
        positions=cfg.positions_under("services", name),
    )
