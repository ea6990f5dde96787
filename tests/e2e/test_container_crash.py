"""The CLI killed with SIGKILL in the middle of a container apply: the next
plan finds every container the project's labels name, adopting those with
complete attributes and planning the rest for removal, so none stays
unknown to state; destroy then leaves no container with the labels."""

from __future__ import annotations

import signal
import time
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

SLOW_SCORE = """import json, os, time

def init():
    time.sleep(float(os.environ.get("INIT_SECONDS", "0")))

def run(raw_data):
    return {"sum": sum(json.loads(raw_data)["data"])}
"""
SERVICES = 3


def make_project(root: Path, ports: list[int]) -> Project:
    (root / "src").mkdir(parents=True, exist_ok=True)
    (root / "src" / "score.py").write_text(SLOW_SCORE)
    lines = [
        "project: crashing",
        "environments:",
        '  plain: {python: "3.11", env: {INIT_SECONDS: "4"}}',
        "targets:",
        "  docker: {kind: container, prune_images: true}",
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
    try:
        cli = p.popen("apply", "-auto-approve")
        deadline = time.monotonic() + 300
        while not labelled(docker_client, p.root) and time.monotonic() < deadline:
            assert cli.poll() is None, cli.communicate()
            time.sleep(0.05)
        cli.send_signal(signal.SIGKILL)
        cli.wait(timeout=10)
        # A create the CLI sent just before it died still completes in dockerd:
        # let that settle before listing, or the container appears afterwards.
        time.sleep(1.0)
        running = {c.id: c.labels["modelform.address"] for c in labelled(docker_client, p.root)}
        known = state_container_ids(p)
        unknown = {cid: addr for cid, addr in running.items() if cid not in known}
        assert unknown, "the kill came too late to test anything"

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
        assert {c.id for c in labelled(docker_client, p.root)} == ids  # none unknown to state
        assert p.run("plan", "-detailed-exitcode").code == 0
    finally:
        r = p.run("destroy", "-auto-approve")
        left = labelled(docker_client, p.root)
        remove_all(docker_client, p.root)
    assert r.code == 0, r.text
    assert left == []
