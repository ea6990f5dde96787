"""The local state lock dies with its holder: ``kill -9`` of an apply does not
leave the next apply to a human; another host's lock still does."""

from __future__ import annotations

import json
import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.e2e.exe import MODELFORM, env, modelform
from tests.e2e.helpers import free_port, our_processes

pytestmark = pytest.mark.slow

# init() returns once the test creates the release file: until then the apply
# step waits for readiness, so the apply provably holds the lock.
HELD_SCORE = """
import os, time

def init():
    while not os.path.exists(os.environ["RELEASE_FILE"]):
        time.sleep(0.02)

def run(raw_data):
    return raw_data
"""


def held_project(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "score.py").write_text(HELD_SCORE)
    (root / "modelform.yaml").write_text(
        "project: held\n"
        "environments:\n"
        f"  plain: {{env: {{RELEASE_FILE: '{root / 'release'}'}}}}\n"
        "services:\n"
        "  api: {environment: plain, entry_script: src/score.py, port: "
        f"{free_port()}}}\n"
    )
    return root


def test_apply_killed_holding_the_lock_leaves_it_to_the_next_apply(tmp_path: Path) -> None:
    root = held_project(tmp_path / "p")
    lock = root / ".modelform" / "state.json.lock"
    first = subprocess.Popen(
        [str(MODELFORM), "apply", "-auto-approve"],
        cwd=root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env(),
    )
    try:
        assert first.stdout is not None
        for line in first.stdout:  # the server is started and held in init(): lock held
            if "service.api: Creating..." in line:
                break
        assert lock.exists(), "the apply holds no lock while it creates"
        held = json.loads(lock.read_text())
        assert held["pid"] == first.pid and isinstance(held["started"], int)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        (root / "release").touch()

        r = modelform("apply", "-auto-approve", cwd=root)
        assert r.code == 0, r.text
        line = (
            f"Warning: took over the state lock of {held['who']} (pid {first.pid}, apply since "
            f"{held['created']}): its process is gone"
        )
        assert line in r.out.splitlines(), r.out
        assert not lock.exists()
        assert "service.api" in (root / ".modelform" / "state.json").read_text()
    finally:
        if first.poll() is None:
            first.kill()
        (root / "release").touch()
        r = modelform("destroy", "-auto-approve", cwd=root)
    assert r.code == 0, r.text
    assert our_processes(root) == set()


def test_a_lock_from_another_host_is_refused_with_the_force_unlock_hint(tmp_path: Path) -> None:
    root = held_project(tmp_path / "p")
    (root / "release").touch()
    lock = root / ".modelform" / "state.json.lock"
    lock.parent.mkdir()
    lock_id = "0d7c5b6e-8a0f-4a55-b2f3-1f0e8e3c6a11"
    holder = {
        "id": lock_id,
        "operation": "apply",
        "who": "ci@build-9",
        "pid": 1,
        "hostname": "build-9",
        "created": "2026-03-02T16:02:58Z",
        "version": "0.1.0",
    }
    lock.write_text(json.dumps(holder))
    r = modelform("apply", "-auto-approve", cwd=root)
    assert r.code == 1, r.text
    # Held for months: said to be stale, most likely, but still not broken.
    age = datetime.now(UTC) - datetime(2026, 3, 2, 16, 2, 58, tzinfo=UTC)
    held = f"{age.days}d{age.seconds // 3600:02d}h"
    assert r.err == (
        f"Error: the state ({root / '.modelform' / 'state.json'}) is locked by ci@build-9 "
        f'(pid 1), operation "apply", since 2026-03-02T16:02:58Z, lock id {lock_id}; it is '
        "held from another host (build-9), so modelform cannot tell whether it still runs; if "
        f"not, use `modelform force-unlock {lock_id}` (held for {held}: stale, most likely)\n"
    ), r.err
    assert json.loads(lock.read_text()) == holder
    assert our_processes(root) == set()
    r = modelform("force-unlock", lock_id, cwd=root)
    assert r.code == 0 and not lock.exists(), r.text
