"""Container failures end apply with the relevant log lines, never a
traceback: a pip install that fails (state unchanged, no container) and an
init() that raises (status Failed, the container's log tail, nothing left
running). A failing replacement brings the previous container back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import Project, free_port
from tests.providers.container.helpers import (  # noqa: F401 - docker_env is a fixture
    docker_env,
    labelled,
    remove_all,
    state_container_ids,
)

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.usefixtures("docker_env")]

SCORE = """import json, os

def init():
    if os.environ.get("FAIL_INIT"):
        raise RuntimeError("cannot load the model: corrupt-weights-7731")

def run(raw_data):
    return {"sum": sum(json.loads(raw_data)["data"])}
"""
#: Frames of modelform itself: a user error must never print them.
OUR_FRAMES = ("engine/apply.py", "providers/container", "providers/imagebuild", "cli/")


def project(root: Path, services: str, environments: str) -> Project:
    (root / "src").mkdir(parents=True)
    (root / "src" / "score.py").write_text(SCORE)
    text = (
        "project: failing\n"
        f"environments:\n{environments}"
        "targets:\n  docker: {kind: container, startup_timeout: 60}\n"
        f"services:\n{services}"
    )
    (root / "modelform.yaml").write_text(text)
    return Project(root)


def service(name: str, env: str, port: int, extra: str = "") -> str:
    return (
        f"  {name}:\n    target: docker\n    environment: {env}\n"
        f"    entry_script: src/score.py\n    port: {port}\n{extra}"
    )


def remove_images(client: Any, *repos: str) -> None:
    for repo in repos:
        for img in client.images.list(name=repo):
            client.images.remove(img.id, force=True)


def no_traceback_of_ours(text: str) -> None:
    for frame in OUR_FRAMES:
        assert frame not in text, text


def test_failing_pip_install_and_failing_init(tmp_path: Path, docker_client: Any) -> None:
    envs = (
        "  broken:\n    pip: [modelform-no-such-package-4f3a==0.0.1]\n"
        '  plain:\n    python: "3.11"\n'
    )
    svcs = service("badpip", "broken", free_port()) + service(
        "badinit", "plain", free_port(), "    env: {FAIL_INIT: '1'}\n"
    )
    p = project(tmp_path / "p", svcs, envs)
    try:
        r = p.run("apply", "-auto-approve", timeout=600)
        assert r.code == 1, r.text
        no_traceback_of_ours(r.text)
        assert "Apply incomplete." in r.out
        # pip: the failing step is named, its log lines are shown.
        assert "service.badpip: image build failed at step" in r.err
        assert "installing the environment's packages" in r.err
        assert "No matching distribution found for modelform-no-such-package-4f3a" in r.err
        # init(): Failed, with the container's log tail (the user's own error).
        assert "service.badinit: failed: Failed: the scoring server exited" in r.err
        assert "corrupt-weights-7731" in r.err
        res = p.resources()
        assert "service.badpip" not in res and "service.badinit" not in res
        assert labelled(docker_client, p.root) == []
        # Nothing got an image tag for the failed build.
        assert docker_client.images.list(name="failing/badpip") == []
    finally:
        p.run("destroy", "-auto-approve")
        remove_all(docker_client, p.root)
        remove_images(docker_client, "failing/badpip", "failing/badinit")


def test_failing_replacement_restores_the_previous_container(
    tmp_path: Path, docker_client: Any
) -> None:
    envs = '  plain:\n    python: "3.11"\n'
    port = free_port()
    p = project(tmp_path / "p", service("svc", "plain", port), envs)
    try:
        r = p.run("apply", "-auto-approve", timeout=600)
        assert r.code == 0, r.text
        before = p.resources()["service.svc"]["attributes"]

        # The same port, a new env that makes init() fail: replace, fail, roll back.
        yaml = p.root / "modelform.yaml"
        yaml.write_text(yaml.read_text() + "    env: {FAIL_INIT: '1'}\n")
        r = p.run("apply", "-auto-approve", timeout=600)
        assert r.code == 1, r.text
        no_traceback_of_ours(r.text)
        assert "corrupt-weights-7731" in r.err
        assert "the previous container runs again" in r.err
        after = p.resources()["service.svc"]["attributes"]
        assert after["container_id"] == before["container_id"]
        (c,) = labelled(docker_client, p.root)
        assert c.id == before["container_id"] and c.status == "running"
        r = p.run("invoke", "svc", "--data", '{"data": [1, 2]}')
        assert r.code == 0 and '"sum":3' in r.out.replace(" ", ""), r.text
        assert p.run("plan", "-detailed-exitcode").code == 2  # still to do
    finally:
        p.run("destroy", "-auto-approve")
        left = labelled(docker_client, p.root)
        remove_all(docker_client, p.root)
        remove_images(docker_client, "failing/svc")
    assert left == []
