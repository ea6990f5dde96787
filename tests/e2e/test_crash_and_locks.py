"""Two applies at once, and the CLI killed with SIGKILL in the middle of an apply."""

from __future__ import annotations

import json
import re
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
        p.cleanup()
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
        # A server forked just before the kill shows its identity once it has
        # exec'd (its environment until then is the CLI's): let that settle.
        time.sleep(1.0)
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

        # The killed CLI's lock stays (never broken silently); the error names it
        # as stale with the id to give to force-unlock.
        r = p.run("apply", "-auto-approve")
        assert r.code == 1 and "stale" in r.err, r.text
        lock_id = re.search(r"force-unlock ([0-9a-f-]+)", r.err)
        assert lock_id, r.err
        assert p.run("force-unlock", lock_id.group(1)).code == 0
        r = p.run("apply", "-auto-approve", "-parallelism", "10")
        assert r.code == 0, r.text
        pids = {
            rec["attributes"]["pid"] for a, rec in p.resources().items() if a.startswith("service.")
        }
        assert len(pids) == 20
        assert our_processes(p.root) == pids  # no process unknown to state
    finally:
        p.cleanup()
    assert our_processes(p.root) == set()


def test_ctrl_c_lets_steps_in_flight_finish_and_saves_state(tmp_path: Path) -> None:
    p = make_project(tmp_path / "p", services=6, init_seconds=2)
    try:
        cli = p.popen("apply", "-auto-approve", "-parallelism", "2")
        deadline = time.monotonic() + 60
        while not our_processes(p.root) and time.monotonic() < deadline:
            time.sleep(0.05)
        cli.send_signal(signal.SIGINT)
        out, err = cli.communicate(timeout=60)
        assert cli.returncode == 130, out + err
        assert "Not started (interrupted)" in err
        services = {a: r for a, r in p.resources().items() if a.startswith("service.")}
        assert 1 <= len(services) < 6
        # The steps in flight finished and were recorded: every process is known.
        assert our_processes(p.root) == {r["attributes"]["pid"] for r in services.values()}
        assert not p.state_file.with_name("state.json.lock").exists()
    finally:
        p.cleanup()
    assert our_processes(p.root) == set()
