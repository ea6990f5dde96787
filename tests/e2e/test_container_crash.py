"""The CLI killed with SIGKILL in the middle of a container apply: the next
plan finds every container the project's labels name, adopting those with
complete attributes and planning the rest for removal, so none stays
unknown to state; destroy then leaves no container with the labels.

The kill lands when every container has been created and started and each
waits in init() for a file the test puts there afterwards: no request of the
dead CLI is still on its way to dockerd, so what is listed then is all there
will be, however busy the machine."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import Project, free_port
from tests.providers.container.helpers import (  # noqa: F401 - docker_env is a fixture
    docker_env,
    remove_all,
    state_container_ids,
)

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.usefixtures("docker_env")]

# init() returns once RELEASE_FILE exists in the container (the test puts it there).
HELD_SCORE = """import json, os, time

def init():
    while not os.path.exists(os.environ["RELEASE_FILE"]):
        time.sleep(0.02)

def run(raw_data):
    return {"sum": sum(json.loads(raw_data)["data"])}
"""
SERVICES = 3
RELEASE_FILE = "/tmp/modelform-test-release"
STARTED = r"^service\.(svc-\d+): \[\d+s\] started container "


def listed(client: Any, root: Path) -> dict[str, str]:
    """Container id -> address of every container made for the project, from
    one list call: no inspect of each container, which fails (404) for one
    removed between the list and the inspect."""
    found = client.api.containers(
        all=True, filters={"label": f"modelform.project_dir={root.resolve()}"}
    )
    return {c["Id"]: c["Labels"]["modelform.address"] for c in found}


def release(client: Any, container_id: str) -> None:
    """Let the init() of that container's scoring server return."""
    done = client.containers.get(container_id).exec_run(["touch", RELEASE_FILE])
    assert done.exit_code == 0, done.output


def make_project(root: Path, ports: list[int]) -> Project:
    (root / "src").mkdir(parents=True, exist_ok=True)
    (root / "src" / "score.py").write_text(HELD_SCORE)
    lines = [
        "project: crashing",
        "environments:",
        f'  plain: {{python: "3.11", env: {{RELEASE_FILE: "{RELEASE_FILE}"}}}}',
        "targets:",
        # generous: the first container waits in init() until the last one has started
        "  docker: {kind: container, prune_images: true, startup_timeout: 900}",
        "services:",
    ]
    for i, port in enumerate(ports):
        lines += [
            f"  svc-{i}:",
            "    target: docker",
            "    environment: plain",
            "    entry_script: src/score.py",
            f"    port: {port}",
            "    memory_gb: 0.25",
        ]
    (root / "modelform.yaml").write_text("\n".join(lines) + "\n")
    return Project(root)


def test_cli_killed_mid_apply_leaves_no_unknown_container(
    tmp_path: Path, docker_client: Any
) -> None:
    ports = [free_port() for _ in range(SERVICES)]
    p = make_project(tmp_path / "p", ports)
    apply = p.start("apply", "-auto-approve")
    cli = apply.proc
    try:
        # Every container created and started (the line comes after docker
        # answered), each held in init(): no step can finish, none is half-made.
        apply.wait_for(STARTED, count=SERVICES, timeout=240)  # within pytest-timeout's 300 s
        cli.send_signal(signal.SIGKILL)
        apply.finish(timeout=30)
        running = listed(docker_client, p.root)
        assert sorted(running.values()) == [f"service.svc-{i}" for i in range(SERVICES)]
        known = state_container_ids(p)
        unknown = {cid: addr for cid, addr in running.items() if cid not in known}
        assert unknown == running  # none was ready, so none was recorded
        for cid in running:
            release(docker_client, cid)

        # The last service leaves the project file: its container, if it runs
        # unknown to state, is an orphan to remove; the others are adopted.
        dropped = f"service.svc-{SERVICES - 1}"
        make_project(p.root, ports[:-1])
        plan = p.run("plan")
        assert plan.code == 0, plan.text
        adopted = plan.out.count("was found running and adopted into state")
        orphans = plan.out.count("found running but unknown to state")
        expect_orphans = sum(1 for addr in unknown.values() if addr == dropped)
        assert (adopted, orphans) == (len(unknown) - expect_orphans, expect_orphans), plan.out
        kept_known = len([a for a in p.resources() if a.startswith("service.") and a != dropped])
        assert plan.out.count("will be created") == SERVICES - 1 - kept_known - adopted, plan.out

        # The killed CLI's lock died with it: the next apply takes it over and says so.
        r = p.run("apply", "-auto-approve", timeout=600)
        assert r.code == 0, r.text
        assert f"(pid {cli.pid}, apply since " in r.out and "its process is gone" in r.out, r.out
        ids = state_container_ids(p)
        assert len(ids) == SERVICES - 1
        assert set(listed(docker_client, p.root)) == ids  # none unknown to state
        assert p.run("plan", "-detailed-exitcode").code == 0
    finally:
        if cli.poll() is None:  # failed before the kill
            cli.kill()
        r = p.run("destroy", "-auto-approve")
        left = listed(docker_client, p.root)
        remove_all(docker_client, p.root)
    assert r.code == 0, r.text
    assert left == {}
