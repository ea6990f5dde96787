"""The container target's acceptance path, through the real CLI and a real
Docker Engine: apply builds and runs → invoke → no-op plan → an unchanged
apply builds nothing → a score.py-only change rebuilds on the cached
package layer → docker stop / docker update --memory / docker rm are drift,
healed by apply → destroy leaves no container with the project's labels."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import REPO, Project, free_port
from tests.providers.container.helpers import (  # noqa: F401 - docker_env is a fixture
    docker_env,
    labelled,
    remove_all,
    state_container_ids,
)

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.usefixtures("docker_env")]

EXAMPLE = REPO / "examples" / "container"


def copy_example(dst: Path) -> Project:
    shutil.copytree(EXAMPLE, dst, ignore=shutil.ignore_patterns(".modelform", "__pycache__"))
    subprocess.run([sys.executable, "train.py"], cwd=dst, check=True, capture_output=True)
    return Project(dst)


def the_container(client: Any, root: Path) -> Any:
    (c,) = labelled(client, root)
    return c


def build_seconds(out: str) -> float:
    m = re.search(r"built \S+ \(sha256-[0-9a-f]+\) in ([0-9.]+) s", out)
    assert m, out
    return float(m.group(1))


def test_container_quickstart_lifecycle(tmp_path: Path, docker_client: Any) -> None:
    p = copy_example(tmp_path / "diabetes")
    var = ("-var", f"port={free_port()}")
    had = {i.id for i in docker_client.images.list(name="diabetes/diabetes")}
    try:
        r = p.run("apply", "-auto-approve", *var, timeout=900)
        assert r.code == 0, r.text
        first_build = r.out
        assert "Apply complete!" in r.out
        svc = p.resources()["service.diabetes"]["attributes"]
        assert svc["status"] == "Healthy" and svc["image"].startswith("diabetes/diabetes:")
        c = the_container(docker_client, p.root)
        assert c.id == svc["container_id"]
        labels = c.labels
        assert labels["modelform.project"] == "diabetes"
        assert labels["modelform.address"] == "service.diabetes"
        assert labels["modelform.lineage"] == p.state()["lineage"]
        hc = c.attrs["HostConfig"]
        assert hc["PortBindings"]["5001/tcp"][0]["HostIp"] == "127.0.0.1"
        assert hc["Memory"] == 512 * 1024**2 and hc["CpuQuota"] == 100_000
        assert hc["RestartPolicy"]["Name"] == "unless-stopped"
        assert c.attrs["Config"]["Healthcheck"]["Test"][0] == "CMD"

        r = p.run("invoke", "diabetes", "--data", "@request.json")
        assert r.code == 0, r.text
        predictions = json.loads(r.out)
        assert len(predictions) == 2 and all(isinstance(x, float) for x in predictions)

        r = p.run("plan", "-detailed-exitcode", *var)
        assert r.code == 0, r.text
        assert "No changes." in r.out

        # An unchanged apply performs zero builds.
        images_before = {i.id for i in docker_client.images.list(name="diabetes/diabetes")}
        r = p.run("apply", "-auto-approve", *var)
        assert r.code == 0, r.text
        assert "Step 1/" not in r.out and "building" not in r.out
        assert {i.id for i in docker_client.images.list(name="diabetes/diabetes")} == images_before

        r = p.run("logs", "diabetes")
        assert r.code == 0 and '"event":"ready"' in r.out, r.text

        # Only score.py changes: a rebuild on the cached package layer.
        script = p.root / "src" / "score.py"
        script.write_text(script.read_text() + f"\n# new code digest {uuid.uuid4()}\n")
        r = p.run("plan", *var)
        assert "service.diabetes must be replaced" in r.out, r.text
        assert "code in src changed (packages layer cached)" in r.out
        t0 = time.monotonic()
        r = p.run("apply", "-auto-approve", *var, timeout=600)
        assert r.code == 0, r.text
        rebuild = r.out
        pip_step = re.search(r"Step (\d+)/\d+ : RUN .*requirements\.txt\n.*\n", rebuild)
        assert pip_step and "Using cache" in pip_step.group(0), rebuild
        assert "Collecting" not in rebuild  # no package was downloaded or installed
        print(
            f"\nfirst build {build_seconds(first_build):.1f} s (cached layers: "
            f"{first_build.count('Using cache')}), score.py-only rebuild "
            f"{build_seconds(rebuild):.1f} s, whole apply {time.monotonic() - t0:.1f} s"
        )
        new = p.resources()["service.diabetes"]["attributes"]
        assert new["container_id"] != svc["container_id"] and new["image"] != svc["image"]
        assert p.run("invoke", "diabetes", "--data", "@request.json").code == 0
        assert len(labelled(docker_client, p.root)) == 1  # the old container is gone

        # Out-of-band changes: each is drift (exit 2), and apply heals it.
        for name, act in [
            ("docker stop", lambda c: c.stop(timeout=5)),
            ("docker update --memory", lambda c: c.update(mem_limit="300m")),
            ("docker rm", lambda c: c.remove(force=True)),
        ]:
            act(the_container(docker_client, p.root))
            r = p.run("drift")
            assert r.code == 2, f"{name}: {r.text}"
            r = p.run("apply", "-auto-approve", *var)
            assert r.code == 0, f"{name}: {r.text}"
            assert "Step 1/" not in r.out, f"{name} rebuilt the image: {r.out}"
            r = p.run("drift")
            assert r.code == 0, f"{name}: {r.text}"
            c = the_container(docker_client, p.root)
            assert c.attrs["HostConfig"]["Memory"] == 512 * 1024**2
            assert state_container_ids(p) == {c.id}
            assert p.run("invoke", "diabetes", "--data", "@request.json").code == 0
    finally:
        r = p.run("destroy", "-auto-approve", *var)
        left = labelled(docker_client, p.root)
        remove_all(docker_client, p.root)
        for img in docker_client.images.list(name="diabetes/diabetes"):
            if img.id not in had:  # images this test made; the example's own stay
                docker_client.images.remove(img.id, force=True)
    assert r.code == 0, r.text
    assert left == []
    assert p.resources() == {}
