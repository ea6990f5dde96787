"""Data-driven plan tests: one folder per case under plancases/.

Each case holds ``modelform.yaml`` (with any files it names), ``state.json``
(the records of the last run: address → record, optional), ``reality.json``
(what the provider reads now: service name → attributes, or null when the
object is gone; services not listed read back as recorded), optionally
``args.json`` ({"mode": "destroy", "targets": [...], "replace": [...]}) and
``expected.txt``: one line per change, ``ACTION ADDRESS`` then ``  reason``
lines, then ``drift:`` lines ``KIND ADDRESS``. The ``fake`` provider plays the
target; the engine, loader, graph and decide are the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modelform.engine.loader import load
from modelform.engine.modelstore import LocalStore
from modelform.engine.plan import Mode, Plan
from modelform.engine.planner import Run, make_plan
from modelform.engine.registry import Registry, catalog
from modelform.plugin import (
    UNKNOWN,
    Action,
    Applied,
    ApplyRequest,
    Context,
    Proposal,
    Provider,
    Resource,
    shared_options,
)

CASES = sorted(p for p in (Path(__file__).parent / "plancases").iterdir() if p.is_dir())


class FakeProvider(Provider):
    kind = "fake"
    read_is_cheap = True

    def __init__(self, reality: dict[str, Any]) -> None:
        self.reality = reality

    def service_schema(self) -> dict[str, Any]:
        return {"type": "object", "properties": shared_options("port")}

    def apply(self, request: ApplyRequest, ctx: Context) -> Applied:
        raise AssertionError("plan cases never apply")

    def delete(self, address: str, prior: dict[str, Any], ctx: Context) -> None:
        raise AssertionError("plan cases never apply")

    def read(self, prior: dict[str, Any], ctx: Context) -> dict[str, Any] | None:
        name = prior["name"]
        if name in self.reality:
            now = self.reality[name]
            return None if now is None else {**prior, **now}
        return prior

    def plan(self, resource: Resource, prior: dict[str, Any] | None, ctx: Context) -> Proposal:
        cfg = resource.config
        models = {n: resource.inputs[f"model.{n}"]["ref"] for n in cfg.get("models", [])}
        planned = {
            "name": resource.name,
            "port": cfg.get("port"),
            "url": f"http://127.0.0.1:{cfg.get('port')}",
            "env": cfg.get("env") or {},
            "models": models,
            "code": resource.digests.get("code"),
            "id": prior["id"] if prior else UNKNOWN,
        }
        reasons = {}
        if prior and prior.get("models") != models:
            reasons["models"] = ", ".join(
                f"model {n}: {(prior.get('models') or {}).get(n)} → {r}" for n, r in models.items()
            )
        return Proposal(planned, requires_replace={"port"}, reasons=reasons)


def render(plan: Plan) -> str:
    lines = []
    for c in plan.changes:
        if c.action is Action.NOOP:
            continue
        lines.append(f"{c.action.value} {c.address}")
        lines += [f"  {r}" for r in c.reasons]
    for d in plan.drift:
        lines.append(f"drift: {d.kind} {d.address}")
    return "\n".join(lines) + "\n"


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}  # type: ignore[no-any-return]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_plan_case(case: Path, tmp_path: Path) -> None:
    prior, reality, args = (_json(case / n) for n in ("state.json", "reality.json", "args.json"))
    registry = Registry(extra={"fake": FakeProvider(reality)})
    config = load(case / "modelform.yaml", catalog=catalog(registry))
    work = tmp_path / ".modelform"
    # The model store as the last run left it: versions named in state exist.
    for rec in prior.values():
        if rec["type"] == "model":
            a = rec["attributes"]
            src = tmp_path / "src-model"
            src.write_bytes(b"old")
            LocalStore(work / "models").register(a["name"], a["version"], a["digest"], src, {}, "")
    run = Run(
        config=config,
        registry=registry,
        work_dir=work,
        lineage="test",
        models=LocalStore(work / "models"),
    )
    plan = make_plan(
        run,
        prior,
        mode=Mode(args.get("mode", "normal")),
        targets=args.get("targets", []),
        replace=args.get("replace", []),
    )
    assert render(plan) == (case / "expected.txt").read_text()
