"""scripts/testenv's process handling, on real processes: records, groups, descriptors."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS / "testenv.d"))

from tenv_common import Daemon, Layout, Lock, PartError, load_versions  # noqa: E402
from tenv_envfile import write_env  # noqa: E402
from tenv_gobuild import staging_modules  # noqa: E402
from tenv_server import Server  # noqa: E402


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    made = Layout(tmp_path / "testenv")
    made.make()
    return made


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


def test_daemon_is_stopped_with_its_whole_process_group(layout: Layout) -> None:
    daemon = Daemon("sleeper", layout)
    pid = daemon.start(["sh", "-c", "sleep 300 & sleep 300 & wait"])
    deadline = time.monotonic() + 10
    while len(_children_of(pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    children = _children_of(pid)
    assert len(children) == 2
    assert daemon.pid() == pid
    assert os.getpgid(pid) == pid and os.getsid(pid) == pid  # own session and group

    assert daemon.stop(timeout=5) is True
    assert not _alive(pid)
    assert not any(_alive(child) for child in children)
    assert daemon.pid() is None
    assert not daemon.record.exists()
    assert daemon.stop() is False  # nothing left to stop


def test_daemon_inherits_neither_lock_nor_caller_output(layout: Layout) -> None:
    daemon = Daemon("quiet", layout)
    with Lock(layout.root / "lock"):
        pid = daemon.start(["sh", "-c", "echo to-the-log; exec sleep 300"])
    try:
        deadline = time.monotonic() + 5
        while "to-the-log" not in daemon.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "to-the-log" in daemon.log.read_text()
        # Look at the descriptors once the shell has exec'd sleep: while sh is
        # still running it opens and closes descriptors of its own.
        cmdline = Path(f"/proc/{pid}/cmdline")
        while not cmdline.read_bytes().startswith(b"sleep") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert cmdline.read_bytes().startswith(b"sleep")
        targets = {os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}
        assert str(layout.root / "lock") not in targets
        assert targets == {"/dev/null", str(daemon.log)}  # stdin, stdout+stderr only
        # The lock was released when the block ended, although the daemon still runs.
        with Lock(layout.root / "lock"):
            pass
    finally:
        daemon.stop(timeout=5)


def test_a_reused_pid_is_not_taken_for_the_daemon(layout: Layout) -> None:
    daemon = Daemon("ghost", layout)
    proc = subprocess.Popen(["sleep", "300"])
    try:
        # A record naming a live process with another start time is not ours.
        daemon.record.write_text(f'{{"pid": {proc.pid}, "start": "1", "argv": ["x"]}}')
        assert daemon.pid() is None
        assert daemon.stop() is False
        assert _alive(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def test_env_files_export_every_part(layout: Layout) -> None:
    parts = {
        "docker": {"docker_host": "unix:///var/run/docker.sock", "base_image": "img:1"},
        "k8s": {"kubeconfig": "/k/config", "kubectl": "/k/kubectl"},
        "minio": {"endpoint": "http://127.0.0.1:1", "access_key": "a", "secret_key": "s b",
                  "region": "us-east-1"},
        "registry": {"address": "127.0.0.1:2"},
    }  # fmt: skip
    json_path, sh_path = write_env(layout, parts)
    assert oct(sh_path.stat().st_mode & 0o777) == "0o600"
    shown = subprocess.run(
        ["sh", "-c", f". {sh_path} && env"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    for line in [
        "DOCKER_HOST=unix:///var/run/docker.sock",
        "MODELFORM_BASE_IMAGE=img:1",
        "KUBECONFIG=/k/config",
        "MODELFORM_S3_ENDPOINT=http://127.0.0.1:1",
        "MODELFORM_S3_SECRET_KEY=s b",
        "AWS_ENDPOINT_URL_S3=http://127.0.0.1:1",
        "MODELFORM_REGISTRY=127.0.0.1:2",
    ]:
        assert line in shown


def test_pinned_versions_file_parses_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    versions = load_versions()
    assert versions["BASE_IMAGE"] == "modelform/python:3.11-bookworm"
    assert versions["KUBERNETES_VERSION"].startswith("v1.")
    monkeypatch.setenv("TESTENV_MINIO_PORT", "19100")
    assert load_versions()["MINIO_PORT"] == "19100"


def test_staging_modules_are_read_from_the_kubernetes_go_mod() -> None:
    go_mod = """
replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tk8s.io/sample-apiserver => ./staging/src/k8s.io/sample-apiserver
\tgithub.com/x/y => github.com/x/y v1.0.0
)
"""
    assert staging_modules(go_mod) == ["k8s.io/api", "k8s.io/client-go"]


def test_cli_rejects_an_unknown_part_in_one_line() -> None:
    proc = subprocess.run(
        [str(SCRIPTS / "testenv"), "up", "nosuch"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert "unknown part nosuch" in proc.stderr
    assert "Traceback" not in proc.stderr


class _Crasher(Server):
    name = "crasher"

    def built(self) -> bool:
        return True

    def argv(self) -> list[str]:
        return ["sh", "-c", "echo boom: cannot start; exit 3"]

    def healthy(self) -> bool:
        return False


def test_a_server_that_dies_fails_up_with_the_tail_of_its_log(layout: Layout) -> None:
    server = _Crasher(layout, {})
    with pytest.raises(PartError) as failed:
        server.up(build=False)
    assert "crasher exited" in str(failed.value)
    assert "boom: cannot start" in str(failed.value)
    assert server.status() == (False, "not running")


def test_a_bad_port_is_one_line() -> None:
    proc = subprocess.run(
        [str(SCRIPTS / "testenv"), "status", "minio"],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ, TESTENV_MINIO_PORT="99999"),
    )
    assert proc.returncode == 2
    assert "MINIO_PORT='99999' is not a port number" in proc.stderr
    assert "Traceback" not in proc.stderr
