"""How each kind of change is carried out on the container target, through
the real CLI: limits in place, a new port with the new container ready
before the old one goes, a new model rebuilt on cached packages, env vars
replaced from the existing image, auth keys kept out of labels; and
user errors in target options as one line, with or without Docker."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import Project, free_port
from tests.providers.container.helpers import (  # noqa: F401 - docker_env is a fixture
    docker_env,
    labelled,
    remove_all,
)

SCORE = """import json, os

def init():
    global weights
    weights = open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "w.txt")).read().strip()

def run(raw_data):
    n = len(json.loads(raw_data)["data"])
    return {"weights": weights, "greeting": os.environ.get("GREETING"), "n": n}
"""


def make(root: Path, *, port: int, cpu: float = 0.5, greeting: str = "hi",
         target: str = "{kind: container, prune_images: true}", extra: str = "",
         project: str = "changes") -> Project:  # fmt: skip
    (root / "src").mkdir(parents=True, exist_ok=True)
    (root / "src" / "score.py").write_text(SCORE)
    if not (root / "w.txt").exists():
        (root / "w.txt").write_text("v1\n")
    (root / "modelform.yaml").write_text(
        f"project: {project}\n"
        "models:\n  w: {path: w.txt}\n"
        'environments:\n  plain: {python: "3.11"}\n'
        f"targets:\n  docker: {target}\n"
        "services:\n  svc:\n    target: docker\n    models: [w]\n    environment: plain\n"
        f"    entry_script: src/score.py\n    port: {port}\n    cpu: {cpu}\n"
        f"    auth: key\n    env: {{GREETING: {greeting}}}\n{extra}"
    )
    return Project(root)


def invoke(p: Project) -> dict[str, Any]:
    r = p.run("invoke", "svc", "--data", '{"data": [1, 2, 3]}')
    assert r.code == 0, r.text
    return json.loads(r.out)  # type: ignore[no-any-return]


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.usefixtures("docker_env")
def test_each_change_is_carried_out_as_planned(tmp_path: Path, docker_client: Any) -> None:
    root = tmp_path / "p"
    port = free_port()
    # A project of its own: images of earlier runs must not be found by digest.
    name = f"changes-{uuid.uuid4().hex[:8]}"
    repo = f"{name}/svc"
    p = make(root, port=port, project=name)
    try:
        r = p.run("apply", "-auto-approve", timeout=600)
        assert r.code == 0, r.text
        assert invoke(p) == {"weights": "v1", "greeting": "hi", "n": 3}
        first = p.resources()["service.svc"]["attributes"]
        (c,) = labelled(docker_client, root)
        key = first["key"]
        assert key and key not in json.dumps(c.labels)  # the key is never a label
        assert c.attrs["HostConfig"]["CpuQuota"] == 50_000

        # cpu: updated in place, same container.
        make(root, port=port, cpu=1.5, project=name)
        r = p.run("plan")
        assert "service.svc will be updated in place" in r.out and "docker update" in r.out
        assert p.run("apply", "-auto-approve").code == 0
        (c,) = labelled(docker_client, root)
        assert c.id == first["container_id"] and c.attrs["HostConfig"]["CpuQuota"] == 150_000

        # env: replaced from the image that exists (no build); the key is kept.
        make(root, port=port, cpu=1.5, greeting="hello", project=name)
        r = p.run("plan")
        assert "must be replaced" in r.out and "exists: no build" in r.out, r.out
        r = p.run("apply", "-auto-approve")
        assert r.code == 0 and "Step 1/" not in r.out, r.text
        assert invoke(p)["greeting"] == "hello"
        assert p.resources()["service.svc"]["attributes"]["key"] == key

        # A new model version: rebuild (packages cached) and replace.
        (root / "w.txt").write_text("v2\n")
        r = p.run("plan")
        assert "model w: w:1 → w:2" in r.out and f"builds image {repo}" in r.out, r.out
        r = p.run("apply", "-auto-approve", timeout=600)
        assert r.code == 0 and "Using cache" in r.out, r.text
        assert invoke(p)["weights"] == "v2"

        # A new port: the new container is ready before the old one goes.
        new_port = free_port()
        make(root, port=new_port, cpu=1.5, greeting="hello", project=name)
        r = p.run("plan")
        assert f"new container starts on port {new_port} and must be ready before" in r.out
        old_id = p.resources()["service.svc"]["attributes"]["container_id"]
        r = p.run("apply", "-auto-approve")
        assert r.code == 0, r.text
        (c,) = labelled(docker_client, root)
        assert c.id != old_id
        assert p.resources()["service.svc"]["attributes"]["url"].endswith(f":{new_port}")
        assert invoke(p)["weights"] == "v2"
        assert p.run("plan", "-detailed-exitcode").code == 0
    finally:
        r = p.run("destroy", "-auto-approve")
        left = labelled(docker_client, root)
        remove_all(docker_client, root)
        images = docker_client.images.list(name=repo)
        for img in images:
            docker_client.images.remove(img.id, force=True)
    assert r.code == 0 and left == [], r.text
    assert images == []  # prune_images: destroy removed them


@pytest.mark.parametrize(
    ("target", "extra", "message"),
    [
        (
            "{kind: container, carry_ca: 5}",
            "",
            "modelform.yaml:7:39: error: targets.docker.carry_ca: 5 is not true or false or a "
            "string",
        ),
        (
            "{kind: container, dockr_host: x}",
            "",
            'targets.docker: unknown option "dockr_host" for kind container '
            '(did you mean "docker_host"?)',
        ),
        ("{kind: container, carry_ca: /no/such/ca.pem}", "", "carry_ca: no CA bundle file"),
        (
            "{kind: container, docker_host: 'unix:///nonexistent/docker.sock'}",
            "",
            "cannot reach the Docker Engine at unix:///nonexistent/docker.sock",
        ),
    ],
)
def test_bad_target_options_are_one_line(
    tmp_path: Path, target: str, extra: str, message: str
) -> None:
    p = make(tmp_path / "p", port=free_port(), target=target, extra=extra)
    r = p.run("plan")
    assert r.code == 1, r.text
    assert message in r.err, r.err
    assert "Traceback" not in r.text
