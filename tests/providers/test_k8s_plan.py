"""The Kubernetes provider's proposal for a service whose rollout is under way (Transitioning):
left alone while neither it nor any of its objects changes; a change to either, even one
made by hand on the cluster, is planned. No cluster is needed to plan a service."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from modelform.engine.decide import decide
from modelform.plugin import Action, Context, Proposal, Resource, is_known
from modelform.providers.kubernetes import KubernetesProvider


def plan(
    tmp_path: Path,
    prior: dict[str, Any] | None,
    children: dict[str, dict[str, Any]] | None = None,
    **config: Any,
) -> Proposal:
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "src" / "score.py").write_text("def init(): pass\ndef run(d): return d\n")
    cfg = {"port": 8000, "entry_script": "src/score.py", "environment": "plain", "models": [],
           "auth": "none", "timeout_seconds": 60, "workers": 1, **config}  # fmt: skip
    r = Resource(
        address="service.svc", type="service", name="svc", provider="kubernetes", config=cfg,
        digests={"code": "sha256:code"},
        inputs={"environment.plain": {"name": "plain", "python": "3.11", "digest": "sha256:e"}},
    )  # fmt: skip
    ctx = Context(
        project="p", project_dir=tmp_path, work_dir=tmp_path / ".modelform", lineage="l",
        target={"name": "k", "kind": "kubernetes", "registry": "127.0.0.1:5000"},
        children=children or {},
    )  # fmt: skip
    return KubernetesProvider().plan(r, prior, ctx)


def rolling_out(tmp_path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The record of a service made as planned, its rollout under way, and its objects as
    they were made."""
    made = {k: v for k, v in plan(tmp_path, None).planned.items() if is_known(v)}
    made.update(image="127.0.0.1:5000/p-svc:1", uid="uid-1", rollout_token="t-1", key=None,
                status="Transitioning")  # fmt: skip
    objects = {n: c.attributes for n, c in plan(tmp_path, made).children.items()}
    return made, objects


def test_a_rollout_under_way_is_left_alone(tmp_path: Path) -> None:
    prior, objects = rolling_out(tmp_path)
    proposal = plan(tmp_path, prior, objects)
    assert decide(prior, proposal)[0] is Action.NOOP
    assert proposal.planned["status"] == "Transitioning"


def test_a_change_by_hand_or_in_the_file_during_a_rollout_is_planned(tmp_path: Path) -> None:
    prior, objects = rolling_out(tmp_path)
    by_hand = copy.deepcopy(objects)
    assert by_hand["deployment"]["spec.replicas"] == 1  # flattened paths, as recorded
    by_hand["deployment"]["spec.replicas"] = 5
    assert plan(tmp_path, prior, by_hand).planned["status"] == "Healthy"
    changed = plan(tmp_path, prior, objects, replicas=2)
    assert decide(prior, changed)[0] is not Action.NOOP
    assert changed.planned["status"] == "Healthy"
