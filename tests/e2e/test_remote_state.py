"""Remote state on the real MinIO, through the CLI as a team would use it.

Each test gets a fresh bucket; the quickstart project is pointed at it with
a ``state:`` section, credentials in the environment (never in the file).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import Project, Result, copy_quickstart, free_port
from tests.realparts import S3Endpoint

pytestmark = pytest.mark.s3


def _s3_project(
    root: Path, endpoint: S3Endpoint, bucket: str, key: str = "team/state.json"
) -> Project:
    project = copy_quickstart(root)
    text = (root / "modelform.yaml").read_text()
    state = (
        f"state:\n  backend: s3\n  bucket: {bucket}\n  key: {key}\n"
        f"  endpoint: {endpoint.url}\n  region: {endpoint.region}\n"
    )
    text = text.replace("project: diabetes\n", "project: diabetes\n" + state, 1)
    # One value per round, so each apply changes exactly one resource.
    text = text.replace("variables:\n", "variables:\n  round:\n    default: '0'\n", 1)
    entry = "    entry_script: src/score.py\n"
    text = text.replace(entry, entry + "    env: {ROUND: '${var.round}'}\n", 1)
    (root / "modelform.yaml").write_text(text)
    project.env.update(
        AWS_ACCESS_KEY_ID=endpoint.access_key, AWS_SECRET_ACCESS_KEY=endpoint.secret_key
    )
    return project


def _stored(endpoint: S3Endpoint, bucket: str, key: str = "team/state.json") -> dict[str, Any]:
    body = endpoint.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    return json.loads(body)  # type: ignore[no-any-return]


def _cleanup(project: Project, port: int) -> None:
    project.run("destroy", "-auto-approve", f"-var=port={port}", "-lock-timeout=60")
    from modelform.providers.local_process import find, stop

    for f in find(project.root.resolve()):
        stop(f.pid, f.started)


class Team(Project):
    """The quickstart on remote state, its service on a port of its own."""

    def __init__(self, project: Project) -> None:
        super().__init__(project.root, project.env)
        self.port = free_port()

    def apply(self, *args: str) -> Result:
        return self.run("apply", "-auto-approve", f"-var=port={self.port}", *args)

    def plan(self, *args: str) -> Result:
        return self.run("plan", f"-var=port={self.port}", *args)


@pytest.fixture
def team(tmp_path: Path, s3_endpoint: S3Endpoint, s3_bucket: str) -> Iterator[Team]:
    team = Team(_s3_project(tmp_path / "a", s3_endpoint, s3_bucket))
    yield team
    _cleanup(team, team.port)


def _race(team: Team, x: list[str], y: list[str]) -> dict[str, Result]:
    """Two applies started at the same moment from two processes: their results."""
    results: dict[str, Result] = {}
    go = threading.Barrier(2)

    def racer(name: str, args: list[str]) -> None:
        go.wait()
        results[name] = team.apply(*args)

    threads = [threading.Thread(target=racer, args=a) for a in (("x", x), ("y", y))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return results


def test_racing_applies_one_proceeds_each_round(
    team: Team, s3_endpoint: S3Endpoint, s3_bucket: str
) -> None:
    first = team.apply()
    assert first.code == 0, first.text
    stored = _stored(s3_endpoint, s3_bucket)
    lineage, serial = stored["lineage"], stored["serial"]
    for rnd in range(1, 7):
        results = _race(team, [f"-var=round={rnd}x"], [f"-var=round={rnd}y"])
        won = [n for n, r in results.items() if r.code == 0]
        assert set(results) == {"x", "y"}
        lost = [n for n, r in results.items() if r.code != 0]
        assert len(won) == 1 and len(lost) == 1, {n: r.text for n, r in results.items()}
        loser = results[lost[0]]
        assert loser.code == 1
        assert re.search(r"is locked by \S+@\S+ \(pid \d+\), operation \"apply\"", loser.err), (
            loser.err
        )
        assert "Traceback" not in loser.text
        now = _stored(s3_endpoint, s3_bucket)
        assert now["lineage"] == lineage
        assert now["serial"] == serial + 1, (rnd, serial, now["serial"])
        serial = now["serial"]
        svc = {r["address"]: r for r in now["resources"]}["service.diabetes-dev"]
        assert svc["attributes"]["env"]["ROUND"] == f"{rnd}{won[0]}"
    # With -lock-timeout both get their turn, one after the other: no lost write.
    results = _race(team, ["-var=round=wx", "-lock-timeout=120"],
                    ["-var=round=wy", "-lock-timeout=120"])  # fmt: skip
    assert all(r.code == 0 for r in results.values()), {n: r.text for n, r in results.items()}
    assert _stored(s3_endpoint, s3_bucket)["serial"] == serial + 2
    assert team.plan("-var=round=wx", "-detailed-exitcode").code in (0, 2)


def test_a_killed_apply_leaves_a_stale_lock_reported_then_force_unlocked(
    team: Team, s3_endpoint: S3Endpoint, s3_bucket: str
) -> None:
    assert team.apply().code == 0
    watched = team.start("apply", "-auto-approve", f"-var=port={team.port}", "-var=round=9")
    watched.wait_for(r"service\.diabetes-dev: Modifying")
    s3 = s3_endpoint.client()
    lock = json.loads(s3.get_object(Bucket=s3_bucket, Key="team/state.json.lock")["Body"].read())
    assert lock["pid"] == watched.proc.pid
    os.kill(watched.proc.pid, signal.SIGKILL)
    watched.finish()
    r = team.apply("-var=round=9")  # plan reads without locking; apply needs the lock
    assert r.code == 1, r.text
    assert f'pid {lock["pid"]}), operation "apply"' in r.err
    assert re.search(
        rf"stale: holder pid {lock['pid']} is gone, held for \d+s; use `modelform force-unlock "
        rf"{lock['id']}`",
        r.err,
    ), r.err
    assert r.err.count("\n") == 1 and "Traceback" not in r.text
    # Still there: a remote lock is never broken without being asked.
    assert s3.get_object(Bucket=s3_bucket, Key="team/state.json.lock")
    u = team.run("force-unlock", lock["id"])
    assert u.code == 0, u.text
    state = team.run("state", "pull")
    assert state.code == 0 and json.loads(state.out)["lineage"]
    healed = team.apply("-var=round=9")
    assert healed.code == 0, healed.text
    again = team.plan("-var=round=9", "-detailed-exitcode")
    assert again.code == 0, again.text


def test_a_second_clone_plans_no_change(
    team: Team, tmp_path: Path, s3_endpoint: S3Endpoint, s3_bucket: str
) -> None:
    assert team.apply().code == 0
    other = Project(tmp_path / "b", env=team.env)
    other.root.mkdir()
    for name in ("modelform.yaml", "models", "src", "request.json"):
        src = team.root / name
        if src.is_dir():
            shutil.copytree(src, other.root / name)
        else:
            shutil.copy2(src, other.root / name)
    r = other.run("plan", f"-var=port={team.port}", "-detailed-exitcode")
    assert r.code == 0, r.text
    assert not (other.root / ".modelform" / "state.json").exists()


def test_migrate_state_round_trips_local_s3_local(
    tmp_path: Path, s3_endpoint: S3Endpoint, s3_bucket: str
) -> None:
    project = _s3_project(tmp_path / "m", s3_endpoint, s3_bucket)
    port = free_port()
    yaml = project.root / "modelform.yaml"
    with_s3 = yaml.read_text()
    local_only = re.sub(r"state:\n(  .*\n)+", "", with_s3)
    yaml.write_text(local_only)
    try:
        assert project.run("apply", "-auto-approve", f"-var=port={port}").code == 0
        local = project.state()
        # The file now names s3: every command refuses until the state is moved.
        yaml.write_text(with_s3)
        r = project.run("plan", f"-var=port={port}")
        assert r.code == 1 and "modelform init -migrate-state" in r.err, r.text
        m = project.run("init", "-migrate-state")
        assert m.code == 0, m.text
        remote = _stored(s3_endpoint, s3_bucket)
        assert (remote["lineage"], remote["serial"]) == (local["lineage"], local["serial"])
        assert remote["resources"] == local["resources"]
        assert project.run("plan", f"-var=port={port}", "-detailed-exitcode").code == 0
        # A change made on s3, then back to local.
        assert project.run("apply", "-auto-approve", f"-var=port={port}", "-var=round=5").code == 0
        remote = _stored(s3_endpoint, s3_bucket)
        assert remote["serial"] > local["serial"]
        yaml.write_text(local_only)
        m = project.run("init", "-migrate-state")
        assert m.code == 0, m.text
        back = project.state()
        assert (back["lineage"], back["serial"]) == (remote["lineage"], remote["serial"])
        assert back["resources"] == remote["resources"]
        r = project.run("plan", f"-var=port={port}", "-var=round=5", "-detailed-exitcode")
        assert r.code == 0, r.text
        assert project.run("init").code == 0  # again: nothing to do
    finally:
        _cleanup(project, port)


def test_unreachable_storage_fails_in_one_line_and_writes_nothing(
    tmp_path: Path, s3_endpoint: S3Endpoint, s3_bucket: str
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    project = _s3_project(tmp_path / "u", s3_endpoint, s3_bucket)
    yaml = project.root / "modelform.yaml"
    yaml.write_text(yaml.read_text().replace(s3_endpoint.url, dead))
    for args in (("plan",), ("apply", "-auto-approve"), ("init",), ("state", "list")):
        r = project.run(*args)
        assert r.code == 1, r.text
        assert r.err.startswith("Error: s3://"), r.err
        assert f"cannot reach {dead}" in r.err and r.err.count("\n") == 1, r.err
        assert not (project.root / ".modelform").exists(), args
