"""The local provider's proposals: a service still in init() (Transitioning) is left alone
unless something else about it changes, as on every other target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelform.engine.decide import decide
from modelform.plugin import Action, Context, Proposal, Resource, is_known
from modelform.providers.local import LocalProvider


def plan(tmp_path: Path, prior: dict[str, Any] | None, **config: Any) -> Proposal:
    cfg = {"port": 8000, "entry_script": "src/score.py", "models": [], "auth": "none",
           "timeout_seconds": 60, "workers": 1, **config}  # fmt: skip
    r = Resource(address="service.svc", type="service", name="svc", provider="local",
                 config=cfg, digests={"code": "sha256:code"})  # fmt: skip
    ctx = Context(project="p", project_dir=tmp_path, work_dir=tmp_path / ".modelform",
                  lineage="l", target={"name": "local", "kind": "local"})  # fmt: skip
    return LocalProvider().plan(r, prior, ctx)


def running(tmp_path: Path, status: str) -> dict[str, Any]:
    made = {k: v for k, v in plan(tmp_path, None).planned.items() if is_known(v)}
    made.update(pid=4242, started=1.0, key=None, status=status)
    return made


def test_a_service_in_init_is_left_alone(tmp_path: Path) -> None:
    prior = running(tmp_path, "Transitioning")
    proposal = plan(tmp_path, prior)
    assert decide(prior, proposal)[0] is Action.NOOP
    assert proposal.planned["status"] == "Transitioning"
    assert proposal.planned["pid"] == 4242


def test_other_changes_of_a_service_in_init_are_planned_and_unhealthy_is_restarted(
    tmp_path: Path,
) -> None:
    prior = running(tmp_path, "Transitioning")
    proposal = plan(tmp_path, prior, workers=2)
    action, changed, _ = decide(prior, proposal)
    assert action is not Action.NOOP and {"workers", "status"} <= set(changed)
    assert proposal.planned["status"] == "Healthy"
    unhealthy = running(tmp_path, "Unhealthy")
    assert decide(unhealthy, plan(tmp_path, unhealthy))[0] is not Action.NOOP
