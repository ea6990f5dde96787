"""Two applies at once, and the CLI killed with SIGKILL in the middle of an apply."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import Project, free_port, our_processes

pytestmark = pytest.mark.slow

SLOW_SCORE = """
import json, os, time

def init():
    time.sleep(float(os.environ.get("INIT_SECONDS", "0")))

def run(raw_data):
    return {"sum": sum(json.loads(raw_data)["data"])}
"""


def make_project(root: Path, services: int, init_seconds: float) -> Project:
    (root / "src").mkdir(parents=True)
    (root / "src" / "score.py").write_text(SLOW_SCORE)
    lines = [
        "project: many",
        "environments:",
        "  plain:",
        f"    env: {{INIT_SECONDS: '{init_seconds}'}}",
        "services:",
    ]
    for i in range(services):
        lines += [
            f"  svc-{i:02d}:",
            "    environment: plain",
            "    entry_script: src/score.py",
            f"    port: {free_port()}",
        ]
    (root / "modelform.yaml").write_text("\n".join(lines) + "\n")
    return Project(root)


def test_second_apply_waits_for_the_lock_then_names_the_holder(tmp_path: Path) -> None:
    p = make_project(tmp_path / "p", services=1, init_seconds=4)
    first = p.popen("apply", "-auto-approve")
    try:
        deadline = time.monotonic() + 30
        lock = p.state_file.with_name(p.state_file.name + ".lock")
        while not lock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lock.exists()
        t0 = time.monotonic()
        second = p.run("apply", "-auto-approve", "-lock-timeout", "1")
        waited = time.monotonic() - t0
        assert second.code == 1, second.text
        assert "apply" in second.err and "lock" in second.err.lower()
        assert waited >= 1.0
        assert first.wait(timeout=120) == 0, first.stderr.read() if first.stderr else ""
        json.loads(p.state_file.read_text())  # never corrupt
        assert "service.svc-00" in p.resources()
    finally:
        if first.poll() is None:
            first.kill()
        p.run("destroy", "-auto-approve")
    assert our_processes(p.root) == set()


def test_cli_killed_mid_apply_leaves_nothing_unknown(tmp_path: Path) -> None:
    p = make_project(tmp_path / "p", services=20, init_seconds=1.5)
    try:
        cli = p.popen("apply", "-auto-approve", "-parallelism", "10")
        # Wait until some services run, then SIGKILL the CLI mid-walk.
        deadline = time.monotonic() + 60
        while len(our_processes(p.root)) < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        cli.send_signal(signal.SIGKILL)
        cli.wait(timeout=10)
        running = our_processes(p.root)
        known = set(p.resources()) if p.state_file.exists() else set()
        assert 0 < len(running) < 20 or len(known) < 20

        plan = p.run("plan")
        assert plan.code == 0, plan.text
        # Only what is missing is created; running processes are adopted.
        assert plan.out.count("will be created") == 20 - len(running), plan.out
        adopted = plan.out.count("was found running and adopted into state")
        in_state = {a for a in known if a.startswith("service.")}
        assert adopted == len(running) - len(in_state), plan.out

        r = p.run("apply", "-auto-approve", "-parallelism", "10")
        assert r.code == 0, r.text
        pids = {
            rec["attributes"]["pid"]
            for a, rec in p.resources().items()
            if a.startswith("service.")
        }
        assert len(pids) == 20
        assert our_processes(p.root) == pids  # no process unknown to state
    finally:
        p.run("destroy", "-auto-approve")
    assert our_processes(p.root) == set()
