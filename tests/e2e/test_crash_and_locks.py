"""Two applies at once, and the CLI killed with SIGKILL or interrupted with
Ctrl-C in the middle of an apply.

The services' init() waits for a file the test creates (``Project`` of
``make_project``: ``release()``), so a step is provably in flight, its server
started and not ready, for as long as the test needs: no test here depends on
how fast the machine is."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import Project, free_port, our_processes

pytestmark = pytest.mark.slow

# init() returns once the test creates RELEASE_FILE: until then the server
# answers /ready with 503 and its apply step cannot finish.
HELD_SCORE = """
import json, os, time

def init():
    while not os.path.exists(os.environ["RELEASE_FILE"]):
        time.sleep(0.02)

def run(raw_data):
    return {"sum": sum(json.loads(raw_data)["data"])}
"""

STARTED = r"^service\.(svc-\d+): \[\d+s\] started pid (\d+);"


class HeldProject(Project):
    def release(self) -> None:
        """Let every init(), running or to come, return."""
        (self.root / "release").touch()


def make_project(root: Path, services: int) -> HeldProject:
    (root / "src").mkdir(parents=True)
    (root / "src" / "score.py").write_text(HELD_SCORE)
    lines = [
        "project: many",
        "environments:",
        "  plain:",
        f"    env: {{RELEASE_FILE: '{(root / 'release').resolve()}'}}",
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
    return HeldProject(root)


def test_second_apply_waits_for_the_lock_then_names_the_holder(tmp_path: Path) -> None:
    p = make_project(tmp_path / "p", services=1)
    first = p.start("apply", "-auto-approve")
    try:
        # Its server has started and is held in init(): the first apply holds
        # the lock until release(), however long the second takes to start.
        first.wait_for(STARTED)
        assert p.state_file.with_name(p.state_file.name + ".lock").exists()
        t0 = time.monotonic()
        second = p.run("apply", "-auto-approve", "-lock-timeout", "1")
        waited = time.monotonic() - t0
        assert second.code == 1, second.text
        assert "apply" in second.err and "lock" in second.err.lower()
        assert waited >= 1.0
        p.release()
        assert first.finish() == 0, first.text
        json.loads(p.state_file.read_text())  # never corrupt
        assert "service.svc-00" in p.resources()
    finally:
        if first.proc.poll() is None:
            first.proc.kill()
        p.release()
        p.cleanup()
    assert our_processes(p.root) == set()


def test_cli_killed_mid_apply_leaves_nothing_unknown(tmp_path: Path) -> None:
    p = make_project(tmp_path / "p", services=20)
    try:
        cli = p.start("apply", "-auto-approve", "-parallelism", "10")
        # Ten steps in flight, each with its server started (exec'd, so its
        # identity is in /proc) and held in init(); no step can finish and no
        # eleventh can start. SIGKILL the CLI now.
        started = {int(m.group(2)) for m in cli.wait_for(STARTED, count=10)}
        cli.proc.send_signal(signal.SIGKILL)
        cli.finish(timeout=30)
        assert our_processes(p.root) == started
        known = set(p.resources()) if p.state_file.exists() else set()
        assert not [a for a in known if a.startswith("service.")]  # none got as far as ready
        p.release()

        plan = p.run("plan")
        assert plan.code == 0, plan.text
        # Only what is missing is created; the running processes are adopted.
        assert plan.out.count("will be created") == 10, plan.out
        assert plan.out.count("was found running and adopted into state") == 10, plan.out

        # The killed CLI's lock died with it: the next apply takes it over and says so.
        r = p.run("apply", "-auto-approve", "-parallelism", "10")
        assert r.code == 0, r.text
        assert f"(pid {cli.proc.pid}, apply since " in r.out, r.out
        assert "its process is gone" in r.out, r.out
        pids = {
            rec["attributes"]["pid"] for a, rec in p.resources().items() if a.startswith("service.")
        }
        assert len(pids) == 20
        assert started <= pids  # adopted, not restarted
        assert our_processes(p.root) == pids  # no process unknown to state
    finally:
        p.release()
        p.cleanup()
    assert our_processes(p.root) == set()


def test_ctrl_c_mid_apply_exits_130_and_leaves_nothing_unknown(tmp_path: Path) -> None:
    p = make_project(tmp_path / "p", services=6)
    cli = p.start("apply", "-auto-approve", "-parallelism", "2")
    try:
        # Both steps in flight have started their servers, held in init():
        # neither can finish before the signal, and four have not started.
        in_flight = {m.group(1) for m in cli.wait_for(STARTED, count=2)}
        cli.proc.send_signal(signal.SIGINT)
        p.release()  # whether or not apply still waits for them, nothing is held any more
        code = cli.finish(timeout=60)
        err = "".join(cli.err)
        assert code == 130, cli.text
        not_started = re.search(r"^Not started \(interrupted\): (.*)$", err, re.M)
        assert not_started, err
        all_services = {f"service.svc-{i:02d}" for i in range(6)}
        assert set(not_started.group(1).split(", ")) == all_services - {
            f"service.{name}" for name in in_flight
        }
        assert not p.state_file.with_name("state.json.lock").exists()
        json.loads(p.state_file.read_text())  # written whole
        services = {a: r for a, r in p.resources().items() if a.startswith("service.")}
        assert set(services) <= {f"service.{name}" for name in in_flight}
        # Every server of the project is recorded in state, or gone: none unknown.
        assert our_processes(p.root) <= {r["attributes"]["pid"] for r in services.values()}
    finally:
        if cli.proc.poll() is None:
            cli.proc.kill()
        p.release()
        p.cleanup()
    assert our_processes(p.root) == set()
