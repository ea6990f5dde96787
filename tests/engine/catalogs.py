"""Kind catalogs for tests of the loader that are not about kinds: every kind
is known and takes every shared option (with the defaults the built-in kinds
use) and any option of its own."""

from __future__ import annotations

from modelform.engine.kinds import KindInfo, shared_option_schemas, shared_options


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
