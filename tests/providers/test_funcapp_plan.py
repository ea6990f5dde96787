"""The function-app provider's proposals: a host still starting (Transitioning) is left alone
unless something else about it changes, as on every other target. Planning needs no storage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelform.engine.decide import decide
from modelform.plugin import Action, Context, Proposal, Resource, is_known
from modelform.providers.functionapp import FunctionAppProvider


def plan(tmp_path: Path, prior: dict[str, Any] | None, **config: Any) -> Proposal:
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "src" / "score.py").write_text("def init(): pass\ndef run(d): return d\n")
    cfg = {"port": 8000, "entry_script": "src/score.py", "environment": "plain", "models": [],
           "auth": "none", "timeout_seconds": 60, **config}  # fmt: skip
    r = Resource(
        address="service.fn", type="service", name="fn", provider="functionapp", config=cfg,
        digests={"code": "sha256:code"},
        inputs={"environment.plain": {"name": "plain", "python": "3.11", "pip": []}},
    )  # fmt: skip
    ctx = Context(project="p", project_dir=tmp_path, work_dir=tmp_path / ".modelform",
                  lineage="l", target={"name": "f", "kind": "functionapp"})  # fmt: skip
    return FunctionAppProvider().plan(r, prior, ctx)


def running(tmp_path: Path, status: str) -> dict[str, Any]:
    made = {k: v for k, v in plan(tmp_path, None).planned.items() if is_known(v)}
    made.update(pid=4242, started=1.0, container_id=None, image=None, status=status)
    return made


def test_a_host_still_starting_is_left_alone(tmp_path: Path) -> None:
    prior = running(tmp_path, "Transitioning")
    proposal = plan(tmp_path, prior)
    assert decide(prior, proposal)[0] is Action.NOOP
    assert proposal.planned["status"] == "Transitioning"
    assert proposal.planned["pid"] == 4242


def test_other_changes_of_a_starting_host_are_planned_and_unhealthy_is_restarted(
    tmp_path: Path,
) -> None:
    prior = running(tmp_path, "Transitioning")
    proposal = plan(tmp_path, prior, timeout_seconds=30)
    action, changed, _ = decide(prior, proposal)
    assert action is not Action.NOOP and {"app_digest", "status"} <= set(changed)  # host.json
    assert proposal.planned["status"] == "Healthy"
    unhealthy = running(tmp_path, "Unhealthy")
    assert decide(unhealthy, plan(tmp_path, unhealthy))[0] is not Action.NOOP
