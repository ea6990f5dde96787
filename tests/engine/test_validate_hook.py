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
    UNKNOWN,
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


class Gathering(Provider):
    """A target-owned resource whose check needs every service on the target,
    and services with an observed attribute."""

    kind = "gathering"
    protocol_version = PROTOCOL_VERSION
    target_part = "bundle"
    observed = frozenset({"status"})
    live = "up"
    #: Tags changed outside modelform, by address.
    outside: dict[str, str] = {}

    def service_schema(self) -> dict[str, Any]:
        return {"type": "object", "properties": {"tag": {"type": "string"}}}

    def validate(self, resource: Resource, ctx: Context) -> list[Diagnostic]:
        if resource.type != "target":
            return []
        tags: dict[str, str] = {}
        out = []
        for addr, member in sorted(resource.members.items()):
            tag = str(member.config.get("tag"))
            if tag in tags:
                out.append(Diagnostic(f"{addr}: tag {tag} is also {tags[tag]}'s",
                                      member.option_pos("tag")))  # fmt: skip
            tags.setdefault(tag, addr)
        return out

    def plan(self, resource: Resource, prior: dict[str, Any] | None, ctx: Context) -> Proposal:
        if resource.type == "target":
            return Proposal({"members": sorted(resource.members)})
        return Proposal({"tag": resource.config.get("tag"), "status": UNKNOWN})

    def read(self, prior: dict[str, Any], ctx: Context) -> dict[str, Any] | None:
        if "tag" not in prior:
            return prior
        return {**prior, "tag": self.outside.get(ctx.address, prior["tag"]), "status": self.live}

    def apply(self, request: ApplyRequest, ctx: Context) -> Applied:
        attrs = dict(request.planned)
        if "status" in attrs:
            attrs["status"] = "starting"
        return Applied(attrs)

    def delete(self, address: str, prior: dict[str, Any], ctx: Context) -> None:
        return None


def _gathering(tmp_path: Path, b_tag: str) -> tuple[Path, Run]:
    (tmp_path / "s.py").write_text("")
    f = tmp_path / "modelform.yaml"
    f.write_text(
        "project: p\ntargets:\n  t: {kind: gathering}\nservices:\n"
        "  a: {target: t, entry_script: s.py, tag: x}\n"
        f"  b:\n    target: t\n    entry_script: s.py\n    tag: {b_tag}\n"
    )
    registry = Registry(extra={"gathering": Gathering()})
    return f, Run(load(f, catalog=catalog(registry)), registry, tmp_path / ".modelform", "l")


def test_a_target_part_sees_its_services_as_members_with_their_positions(
    tmp_path: Path,
) -> None:
    f, run = _gathering(tmp_path, "x")
    with pytest.raises(DiagnosticError) as e:
        make_plan(run, {})
    (d,) = e.value.diagnostics
    assert str(d) == f"{f}:9:10: error: service.b: tag x is also service.a's"
    _, run = _gathering(tmp_path, "y")
    plan = make_plan(run, {})
    (part,) = [c for c in plan.changes if c.address == "target.t/bundle"]
    assert part.after == {"members": ["service.a", "service.b"]}


def test_observed_attributes_are_refreshed_but_never_drift(tmp_path: Path) -> None:
    _, run = _gathering(tmp_path, "y")
    records = {
        addr: {"address": addr, "type": "service", "name": addr.split(".")[1],
               "provider": "gathering", "attributes": {"tag": tag, "status": "starting"},
               "target": {"name": "t", "kind": "gathering"}}
        for addr, tag in (("service.a", "x"), ("service.b", "y"))
    }  # fmt: skip
    plan = make_plan(run, records)
    assert plan.drift == []
    assert plan.refreshed["service.a"]["attributes"]["status"] == "up"
    services = [c for c in plan.changes if c.address.startswith("service.")]
    assert {c.action.value for c in services} == {"no-op"}
    Gathering.outside = {"service.a": "changed outside"}
    try:
        (drift,) = make_plan(run, records).drift
    finally:
        Gathering.outside = {}
    assert drift.address == "service.a" and drift.changed == ["tag"]


def test_a_long_secret_is_masked_before_a_reason_is_cut_short(tmp_path: Path) -> None:
    """The reason `env: {...} → {...}` is cut at 60 characters; a sensitive
    variable's value in it must be masked first, or its start would show."""
    from modelform.engine.plan import Action as A

    (tmp_path / "s.py").write_text("")
    secret = "S3CR3T-" + "x" * 40
    f = tmp_path / "modelform.yaml"
    f.write_text(
        "project: p\nvariables:\n  k: {sensitive: true}\ntargets:\n  t: {kind: picky}\n"
        "services:\n  a: {target: t, entry_script: s.py, port: 9000}\n"
    )
    registry = Registry(extra={"picky": Picky()})
    config = load(f, catalog=catalog(registry), environ={"MODELFORM_VAR_k": secret})
    run = Run(config, registry, tmp_path / ".modelform", "l")
    prior = {"port": "ab" + secret}  # a prior value holding the secret, well past 60 characters
    records = {"service.a": {"address": "service.a", "type": "service", "name": "a",
                             "provider": "picky", "attributes": prior,
                             "target": {"name": "t", "kind": "picky"}}}  # fmt: skip
    (change,) = [c for c in make_plan(run, records, do_refresh=False).changes
                 if c.address == "service.a"]  # fmt: skip
    assert change.action is A.UPDATE
    text = " ".join(change.reasons)
    assert "S3CR3T" not in text and "(sensitive value)" in text, text
