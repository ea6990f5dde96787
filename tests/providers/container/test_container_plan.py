"""The container provider's proposals without a Docker Engine (its image
lookups answered by stand-ins): the service options it honours, a container
still in init() left alone, limits in place, a memory limit removed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelform.engine.decide import decide
from modelform.engine.registry import Registry
from modelform.plugin import UNKNOWN, Action, Context, Proposal, Resource, is_known
from modelform.providers import container_docker as dk
from modelform.providers import imagebuild
from modelform.providers.container import ContainerProvider

IMAGE_ID = "sha256:" + "ab" * 32
CONTAINER_ID = "cd" * 32


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> ContainerProvider:
    """Docker answers: no image built yet for new content; the image a
    container runs is still there."""
    monkeypatch.setattr(dk, "client", lambda host: object())
    monkeypatch.setattr(imagebuild, "find", lambda client, spec, look_only=False: None)
    monkeypatch.setattr(dk, "image_id", lambda client, ref: IMAGE_ID)
    return ContainerProvider()


def service(tmp_path: Path, **config: Any) -> tuple[Resource, Context]:
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "src" / "score.py").write_text("def init(): pass\ndef run(d): return d\n")
    cfg = {"port": 8000, "entry_script": "src/score.py", "environment": "plain", "models": [],
           "auth": "none", "timeout_seconds": 60, "workers": 1, "cpu": 0.5, "memory_gb": 0.5,
           **config}  # fmt: skip
    r = Resource(
        address="service.svc", type="service", name="svc", provider="container", config=cfg,
        digests={"code": "sha256:code"},
        inputs={"environment.plain": {"name": "plain", "python": "3.11", "digest": "sha256:e"}},
    )  # fmt: skip
    ctx = Context(
        project="p", project_dir=tmp_path, work_dir=tmp_path / ".modelform", lineage="l",
        target={"name": "docker", "kind": "container", "docker_host": "unix:///x.sock",
                "carry_ca": False},
    )  # fmt: skip
    return r, ctx


def plan(
    provider: ContainerProvider, tmp_path: Path, prior: dict[str, Any] | None, **config: Any
) -> Proposal:
    r, ctx = service(tmp_path, **config)
    return provider.plan(r, prior, ctx)


def running(provider: ContainerProvider, tmp_path: Path, status: str = "Healthy") -> dict[str, Any]:
    """The record of a container made as planned for the default service."""
    planned = plan(provider, tmp_path, None).planned
    made = {k: v for k, v in planned.items() if is_known(v)}
    made.update(container_id=CONTAINER_ID, id=CONTAINER_ID[:12], container_name="p-svc-1",
                image="p/svc:1", image_id=IMAGE_ID, key=None, status=status)  # fmt: skip
    return made


def test_service_options_are_the_shared_ones_one_container_honours() -> None:
    p = Registry().get("container")
    schema = p.service_schema()
    props = schema["properties"]
    assert set(props) == {
        "port", "cpu", "memory_gb", "resources", "auth", "timeout_seconds", "workers",
    }  # fmt: skip
    assert schema["required"] == ["port"]
    assert (props["auth"]["default"], props["timeout_seconds"]["default"]) == ("none", 60)
    assert props["workers"]["default"] == 1
    attrs = p.attributes("service")
    assert attrs is not None and all(attrs.values())
    assert {"url", "port", "container_id", "image", "docker_host", "key"} <= set(attrs)
    assert p.identity({"container_id": CONTAINER_ID, "id": "x"}) == CONTAINER_ID


def test_new_service_plans_a_container_and_key_known_after_apply(
    provider: ContainerProvider, tmp_path: Path
) -> None:
    proposal = plan(provider, tmp_path, None, auth="key")
    assert proposal.sensitive == {"key"}
    planned = proposal.planned
    assert planned["container_id"] is UNKNOWN and planned["image"] is UNKNOWN
    assert planned["key"] is UNKNOWN and planned["url"] == "http://127.0.0.1:8000"
    assert planned["docker_host"] == "unix:///x.sock"


@pytest.mark.parametrize("status", ["Healthy", "Transitioning"])
def test_unchanged_container_plans_nothing(
    provider: ContainerProvider, tmp_path: Path, status: str
) -> None:
    prior = running(provider, tmp_path, status)
    proposal = plan(provider, tmp_path, prior)
    assert decide(prior, proposal)[0] is Action.NOOP
    assert proposal.planned["status"] == status


def test_other_changes_of_a_container_in_init_are_still_planned(
    provider: ContainerProvider, tmp_path: Path
) -> None:
    prior = running(provider, tmp_path, "Transitioning")
    proposal = plan(provider, tmp_path, prior, cpu=1.0)
    action, changed, _ = decide(prior, proposal)
    assert action is Action.UPDATE and set(changed) == {"cpu", "status"}
    assert proposal.planned["status"] == "Healthy"
    exited = {**prior, "container_state": "restarting"}  # crash-looping is not coming up
    assert decide(exited, plan(provider, tmp_path, exited))[0] is Action.UPDATE


def test_limits_update_in_place_and_the_container_may_be_made_anew(
    provider: ContainerProvider, tmp_path: Path
) -> None:
    prior = running(provider, tmp_path)
    cpu = plan(provider, tmp_path, prior, cpu=1.5)
    assert decide(prior, cpu)[0] is Action.UPDATE
    # Docker may refuse a limit in place, then apply replaces the container.
    assert cpu.planned["container_id"] is UNKNOWN
    assert cpu.planned["image"] == "p/svc:1"

    r, ctx = service(tmp_path)
    ctx.target["restart_policy"] = "always"
    policy = provider.plan(r, prior, ctx)
    assert decide(prior, policy)[0] is Action.UPDATE
    assert policy.planned["container_id"] == CONTAINER_ID  # always done in place


def test_removing_a_memory_limit_replaces_the_container(
    provider: ContainerProvider, tmp_path: Path
) -> None:
    prior = running(provider, tmp_path)
    proposal = plan(provider, tmp_path, prior, memory_gb=None)
    action, _, reasons = decide(prior, proposal)
    assert action is Action.REPLACE, reasons
    assert any("cannot remove a memory limit in place" in why for why in reasons), reasons
    assert proposal.planned["container_id"] is UNKNOWN
