"""Saved plans, -target, -replace, -json, refresh-only and confirmation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.helpers import Project, our_processes
from tests.e2e.test_crash_and_locks import make_project

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path: Path):  # type: ignore[no-untyped-def]
    p = make_project(tmp_path / "p", services=2)
    p.release()  # init() returns at once: these tests are not about steps in flight
    yield p
    p.run("destroy", "-auto-approve")
    assert our_processes(p.root) == set()


def test_saved_plan_applies_and_is_refused_when_stale(project: Project) -> None:
    assert project.run("plan", "-out", "tfplan").code == 0
    r = project.run("apply", "tfplan")
    assert r.code == 0, r.text
    assert len(our_processes(project.root)) == 2

    # A plan made before the state changed is refused.
    assert project.run("plan", "-out", "old").code == 0
    (project.root / "src" / "score.py").write_text(
        (project.root / "src" / "score.py").read_text() + "\n# changed\n"
    )
    assert project.run("plan", "-out", "new").code == 0
    r = project.run("apply", "old")
    assert r.code == 1 and "stale" in r.err, r.text
    r = project.run("apply", "new")
    assert r.code == 0, r.text
    r = project.run("apply", "new")  # applied once: state serial moved on
    assert r.code == 1 and "stale" in r.err, r.text


def test_target_replace_json_and_refresh_only(project: Project) -> None:
    r = project.run("apply", "-auto-approve", "-target", "service.svc-00")
    assert r.code == 0, r.text
    assert set(project.resources()) == {"environment.plain", "service.svc-00"}

    r = project.run("plan", "-json")
    doc = json.loads(r.out.splitlines()[-1])
    assert doc["type"] == "plan" and doc["plan"]["format_version"] == 2
    actions = {c["address"]: c["action"] for c in doc["plan"]["changes"]}
    assert actions == {"environment.plain": "no-op", "service.svc-00": "no-op",
                       "service.svc-01": "create"}  # fmt: skip

    pid = project.resources()["service.svc-00"]["attributes"]["pid"]
    r = project.run("apply", "-auto-approve", "-replace", "service.svc-00")
    assert r.code == 0, r.text
    assert project.resources()["service.svc-00"]["attributes"]["pid"] != pid
    assert "replacement requested with -replace" in r.out

    import os
    import signal

    os.kill(project.resources()["service.svc-01"]["attributes"]["pid"], signal.SIGKILL)
    r = project.run("plan", "-refresh-only", "-detailed-exitcode")
    assert r.code == 2 and "service.svc-01 has been deleted" in r.out, r.text
    r = project.run("apply", "-refresh-only", "-auto-approve")
    assert r.code == 0, r.text
    assert "service.svc-01" not in project.resources()


def test_apply_without_a_terminal_needs_auto_approve(project: Project) -> None:
    r = project.run("apply")
    assert r.code == 1
    assert "-auto-approve" in r.err
    assert not project.state_file.exists() or project.resources() == {}


def test_a_stale_saved_plan_is_refused_in_each_of_its_four_cases(project: Project) -> None:
    import os
    import signal

    assert project.run("apply", "-auto-approve").code == 0
    score = project.root / "src" / "score.py"
    # 1. The state's serial moved (another apply went first).
    score.write_text(score.read_text() + "\n# one\n")
    assert project.run("plan", "-out", "p1").code == 0
    assert project.run("apply", "-auto-approve").code == 0
    r = project.run("apply", "p1")
    assert r.code == 1 and "saved plan is stale: state serial is" in r.err, r.text
    # 2. An input changed since the plan (the entry script).
    score.write_text(score.read_text() + "\n# two\n")
    assert project.run("plan", "-out", "p2").code == 0
    score.write_text(score.read_text() + "\n# three\n")
    r = project.run("apply", "p2")
    assert r.code == 1 and "an entry script or an environment changed" in r.err, r.text
    # 3. A resource the plan changes drifted since the plan (its process was killed).
    assert project.run("plan", "-out", "p3").code == 0
    os.kill(project.resources()["service.svc-00"]["attributes"]["pid"], signal.SIGKILL)
    r = project.run("apply", "p3")
    assert r.code == 1, r.text
    assert "saved plan is stale: service.svc-00 has been deleted since the plan was made" in r.err
    assert "Traceback" not in r.text
    assert project.run("apply", "-auto-approve").code == 0
    # 4. Another state (the state was made anew: another lineage).
    assert project.run("plan", "-out", "p4", "-destroy").code == 0
    assert project.run("destroy", "-auto-approve").code == 0
    project.state_file.unlink()
    assert project.run("apply", "-auto-approve").code == 0
    r = project.run("apply", "p4")
    assert r.code == 1 and "saved plan is for another state (lineage differs)" in r.err, r.text


def test_show_a_saved_plan_for_review(project: Project) -> None:
    assert project.run("plan", "-out", "tfplan").code == 0
    r = project.run("show", "tfplan")
    assert r.code == 0 and "Plan: 3 to add, 0 to change, 0 to destroy." in r.out, r.text
    doc = json.loads(project.run("show", "tfplan", "-json").out.splitlines()[-1])
    assert {c["address"] for c in doc["plan"]["changes"]} >= {"service.svc-00", "service.svc-01"}
    assert not project.state_file.exists()  # show reads the file alone
    r = project.run("show", "missing")
    assert r.code == 1 and "cannot read plan file missing" in r.err and "Traceback" not in r.text
