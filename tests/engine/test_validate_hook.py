"""A provider's validate() runs on the resolved resource before it is planned,
and its diagnostics stop the plan at the option's line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelform.engine.loader import load
from modelform.engine.planner import Run, make_plan
from modelform.engine.registry import Registry, catalog
from modelform.plugin import (
    PROTOCOL_VERSION,
    Applied,
    ApplyRequest,
    Context,
    Diagnostic,
    DiagnosticError,
    Proposal,
    Provider,
    Resource,
    shared_options,
)


class Picky(Provider):
    kind = "picky"
    protocol_version = PROTOCOL_VERSION

    def service_schema(self) -> dict[str, Any]:
        return {"type": "object", "properties": shared_options("port")}

    def validate(self, resource: Resource, ctx: Context) -> list[Diagnostic]:
        if resource.config.get("port", 0) % 2:
            return [Diagnostic("picky wants an even port", resource.option_pos("port"))]
        return []

    def plan(self, resource: Resource, prior: dict[str, Any] | None, ctx: Context) -> Proposal:
        return Proposal({"port": resource.config["port"]})

    def apply(self, request: ApplyRequest, ctx: Context) -> Applied:
        return Applied(dict(request.planned))

    def delete(self, address: str, prior: dict[str, Any], ctx: Context) -> None:
        return None


def test_validate_diagnostics_stop_the_plan_at_the_option(tmp_path: Path) -> None:
    (tmp_path / "s.py").write_text("")
    f = tmp_path / "modelform.yaml"
    f.write_text(
        "project: p\ntargets:\n  t: {kind: picky}\nservices:\n"
        "  a: {target: t, entry_script: s.py, port: 9000}\n"
        "  b:\n    target: t\n    entry_script: s.py\n    port: 9001\n"
    )
    registry = Registry(extra={"picky": Picky()})
    run = Run(load(f, catalog=catalog(registry)), registry, tmp_path / ".modelform", "l")
    with pytest.raises(DiagnosticError) as e:
        make_plan(run, {})
    (d,) = e.value.diagnostics
    assert str(d) == f"{f}:9:11: error: picky wants an even port"
