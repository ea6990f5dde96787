"""The state storage fails mid-apply: the apply starts no new change, writes
what it could not save to ``errored.modelform.json``, says how to push it,
and exits 1; pushing that file once the storage is back loses nothing.

Two real failures: a private MinIO server (its own port and data folder,
so stopping it disturbs no other test) killed while services are being
made, and the local state's folder replaced by a file. The services' init()
waits for a file the test creates, so a step is provably in flight for as
long as the test needs (as in test_crash_and_locks).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from modelform.state import State
from tests.e2e.helpers import Project, Result, Watched, free_port, our_processes
from tests.realparts import cache_dir

pytestmark = pytest.mark.slow

# init() returns once the test creates release/<address> or release/all;
# until then the server answers /ready with 503 and its step cannot finish.
HELD_SCORE = """
import json, os, time

def init():
    folder = os.environ["RELEASE_DIR"]
    mine = os.path.join(folder, os.environ["MODELFORM_ADDRESS"])
    while not (os.path.exists(mine) or os.path.exists(os.path.join(folder, "all"))):
        time.sleep(0.02)

def run(raw_data):
    return {"sum": sum(json.loads(raw_data)["data"])}
"""

STARTED = r"^service\.(svc-\d+): \[\d+s\] started pid (\d+);"
COMPLETE = re.compile(r"^(\S+): complete after", re.M)
PUSH = re.compile(r"`(modelform state push errored\.modelform\.json)`")
UNLOCK = re.compile(r"`modelform force-unlock ([0-9a-f-]+)`")


class HeldProject(Project):
    def release(self, address: str = "all") -> None:
        """Let the init() of ``address`` (every one by default) return."""
        (self.root / "release" / address).touch()


def make_project(root: Path, services: int, state: str, env: dict[str, str]) -> HeldProject:
    (root / "src").mkdir(parents=True)
    (root / "release").mkdir()
    (root / "src" / "score.py").write_text(HELD_SCORE)
    lines = [
        "project: storage",
        state,
        "environments:",
        "  plain:",
        f"    env: {{RELEASE_DIR: '{(root / 'release').resolve()}'}}",
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
    return HeldProject(root, env)


def error_lines(result: Result | Watched) -> list[str]:
    text = "".join(result.err) if isinstance(result, Watched) else result.err
    return [line for line in text.splitlines() if line.startswith("Error:")]


def check_errored(p: HeldProject, output: str) -> State:
    """The errored file: private, and holding exactly what the apply made (its
    "complete" lines) beside what was there, every live process of the project."""
    path = p.root / "errored.modelform.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    errored = State.loads(path.read_bytes(), str(path))
    completed = set(COMPLETE.findall(output))
    assert completed <= set(errored.resources), output
    services = {a for a in errored.resources if a.startswith("service.")}
    assert services == {a for a in completed if a.startswith("service.")}, output
    pids = {errored.resources[a].attributes["pid"] for a in services}
    assert pids == our_processes(p.root)
    assert all(not errored.resources[a].tainted for a in services)
    return errored


# -- a private MinIO --------------------------------------------------------------------------


class PrivateMinio:
    """The testenv's MinIO binary serving a data folder of its own on a free port."""

    def __init__(self, binary: Path, folder: Path) -> None:
        self.binary, self.folder = binary, folder
        self.data, self.certs = folder / "data", folder / "certs"
        self.data.mkdir(parents=True)
        self.certs.mkdir()
        self.port, self.console = free_port(), free_port()
        self.user, self.password = f"mf{secrets.token_hex(6)}", secrets.token_urlsafe(24)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start it on its port and data folder (again, after stop()) and wait until ready."""
        self._log = open(self.folder / "minio.log", "ab")  # noqa: SIM115 - closed by stop()
        env = dict(os.environ, MINIO_ROOT_USER=self.user, MINIO_ROOT_PASSWORD=self.password,
                   MINIO_REGION="us-east-1", MINIO_BROWSER="off", MINIO_UPDATE="off")  # fmt: skip
        self.proc = subprocess.Popen(
            [str(self.binary), "server", "--quiet", "--address", f"127.0.0.1:{self.port}",
             "--console-address", f"127.0.0.1:{self.console}", "--certs-dir", str(self.certs),
             str(self.data)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"minio exited: {(self.folder / 'minio.log').read_text()}")
            try:  # ready, and answering requests (it says "not initialized" for a moment)
                url = f"{self.endpoint}/minio/health/ready"
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        s3 = self.client()
                        for bucket in s3.list_buckets().get("Buckets", []):
                            s3.list_objects_v2(Bucket=bucket["Name"], MaxKeys=1)
                        return
            except Exception:
                pass
            time.sleep(0.1)
        raise AssertionError(f"minio not ready in 60 s: {(self.folder / 'minio.log').read_text()}")

    def stop(self) -> None:
        """Kill it at once, as a crashed or unplugged storage."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.user,
            aws_secret_access_key=self.password, region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )  # fmt: skip


@pytest.fixture
def minio(tmp_path: Path) -> Iterator[PrivateMinio]:
    pytest.importorskip("boto3")
    binary = cache_dir() / "bin" / "minio"
    if not binary.is_file():
        if os.environ.get("MODELFORM_TESTENV_STRICT", "") not in ("", "0"):
            pytest.fail(f"{binary} is missing: run scripts/testenv up minio", pytrace=False)
        pytest.skip(f"{binary} is missing: run scripts/testenv up minio")
    server = PrivateMinio(binary, tmp_path / "minio")
    try:
        server.start()
        yield server
    finally:
        server.stop()


# -- the tests ----------------------------------------------------------------------------------


@pytest.mark.s3
@pytest.mark.parametrize("when", ["between-writes", "mid-write"])
def test_minio_stopped_mid_apply_saves_the_state_locally_and_push_restores_it(
    tmp_path: Path, minio: PrivateMinio, when: str
) -> None:
    """``between-writes``: MinIO is killed once the first write is done (its copy in
    the history too), so the next write fails outright. ``mid-write``: killed as
    soon as the state object is there, while the same write still copies it to the
    history, so the write fails after storing its version."""
    s3 = minio.client()
    s3.create_bucket(Bucket="states")
    key = "team/state.json"
    state = (f"state: {{backend: s3, bucket: states, key: {key}, endpoint: {minio.endpoint}, "
             "region: us-east-1}")  # fmt: skip
    creds = {"AWS_ACCESS_KEY_ID": minio.user, "AWS_SECRET_ACCESS_KEY": minio.password}
    p = make_project(tmp_path / "p", services=3, state=state, env=creds)
    cli = p.start("apply", "-auto-approve")
    try:
        # Every service is started and held in init(), so nothing is left to
        # start; the environment's record is in the bucket: the storage worked.
        cli.wait_for(STARTED, count=3)
        wanted = key if when == "mid-write" else f"{key}.history/0000000001.json"
        deadline = time.monotonic() + 60
        while wanted not in {o["Key"] for o in
                             s3.list_objects_v2(Bucket="states").get("Contents", [])}:  # fmt: skip
            assert time.monotonic() < deadline, "no state write reached the bucket"
            time.sleep(0.05)
        if when == "between-writes":
            time.sleep(1)  # for the history copy's reply to reach the apply
        stored = State.loads(s3.get_object(Bucket="states", Key=key)["Body"].read())
        minio.stop()
        p.release()
        assert cli.finish(timeout=180) == 1, cli.text
        output = cli.text

        # One error line: what failed, where the state is, the commands.
        errors = error_lines(cli)
        assert len(errors) == 1, output
        assert "the state could not be saved (s3://states/team/state.json" in errors[0]
        assert "is in errored.modelform.json" in errors[0]
        assert PUSH.search(errors[0]), errors[0]
        assert "Traceback" not in output
        lock_id = UNLOCK.search(errors[0])
        assert lock_id, errors[0]  # the lock object could not be deleted either
        assert "Warning: the state could not be saved" in "".join(cli.out)

        errored = check_errored(p, output)
        assert set(errored.resources) >= {f"service.svc-{i:02d}" for i in range(3)}
        assert errored.lineage == stored.lineage
        # Newer than the failed write may have stored (stored.serial + 1 mid-write).
        if when == "between-writes":
            assert errored.serial == stored.serial + 2
        else:
            assert errored.serial in (stored.serial + 1, stored.serial + 2)

        # The storage is back (same data): the commands of the message restore the state.
        minio.start()
        r = p.run("force-unlock", lock_id.group(1))
        assert r.code == 0, r.text
        r = p.run("state", "push", "errored.modelform.json")
        assert r.code == 0, r.text
        now = State.loads(s3.get_object(Bucket="states", Key=key)["Body"].read())
        assert now.serial == errored.serial and now.same_content(errored)
        plan = p.run("plan", "-detailed-exitcode")
        assert plan.code == 0, plan.text
        assert "No changes." in plan.out, plan.out
    finally:
        if cli.proc.poll() is None:
            cli.proc.kill()
        p.release()
        if minio.proc is None:
            minio.start()
        p.cleanup()
    assert our_processes(p.root) == set()


def test_local_state_folder_gone_mid_apply_stops_new_changes(tmp_path: Path) -> None:
    state = "state: {backend: local, path: statedir/state.json}"
    p = make_project(tmp_path / "p", services=4, state=state, env={})
    folder = p.root / "statedir"
    cli = p.start("apply", "-auto-approve", "-parallelism", "2")
    try:
        cli.wait_for(STARTED, count=2)  # svc-00 and svc-01 in flight, held
        deadline = time.monotonic() + 60
        while not (folder / "state.json").exists():
            assert time.monotonic() < deadline, "the state was never written"
            time.sleep(0.05)
        stored = State.loads((folder / "state.json").read_bytes())
        # The folder becomes a file: every write (and the unlock) fails for real.
        folder.rename(p.root / "statedir.away")
        folder.write_text("not a folder\n")
        p.release("service.svc-00")  # its step finishes; its state write fails
        cli.wait_for(r"^Warning: the state could not be saved")
        p.release()  # what is in flight (svc-01, and svc-02 if it started) finishes
        assert cli.finish(timeout=180) == 1, cli.text
        output = cli.text

        errors = error_lines(cli)
        assert len(errors) == 1, output
        assert "statedir/state.json: cannot" in errors[0], errors[0]
        assert "Not a directory" in errors[0], errors[0]
        assert PUSH.search(errors[0]), errors[0]
        assert "Traceback" not in output
        # No change started after the failure: svc-03 at least never started.
        assert "service.svc-03: Creating" not in output, output
        not_started = re.search(r"^Not started \(the state could not be saved\): (.*)$", output,
                                re.M)  # fmt: skip
        assert not_started and "service.svc-03" in not_started.group(1), output

        errored = check_errored(p, output)
        assert {"service.svc-00", "service.svc-01"} <= set(errored.resources)
        assert "service.svc-03" not in errored.resources
        assert (errored.lineage, errored.serial) == (stored.lineage, stored.serial + 2)

        # The folder comes back; the commands of the message store the state.
        folder.unlink()
        (p.root / "statedir.away").rename(folder)
        if m := UNLOCK.search(errors[0]):
            r = p.run("force-unlock", m.group(1))
            assert r.code == 0, r.text
        r = p.run("state", "push", "errored.modelform.json")
        assert r.code == 0, r.text
        # Only the changes never started are left: nothing adopted, nothing orphaned.
        plan = p.run("plan", "-detailed-exitcode")
        assert plan.code == 2, plan.text
        left = sorted(f"service.{n}" for n in re.findall(r'service "(svc-\d+)"', plan.out))
        assert left == sorted(set(not_started.group(1).split(", "))), plan.out
        assert "adopted" not in plan.out and "unknown to state" not in plan.out, plan.out
        assert p.run("apply", "-auto-approve").code == 0
        assert p.run("plan", "-detailed-exitcode").code == 0
    finally:
        if cli.proc.poll() is None:
            cli.proc.kill()
        p.release()
        if folder.is_file() and (p.root / "statedir.away").is_dir():
            folder.unlink()
            (p.root / "statedir.away").rename(folder)
        p.cleanup()
    assert our_processes(p.root) == set()


def test_an_errored_file_of_another_state_is_kept(tmp_path: Path) -> None:
    """A second failure writes beside a file it does not own, never over it."""
    from modelform.cli.errored import ERRORED, save

    other = State.new()
    (tmp_path / ERRORED).write_bytes(other.encode())
    mine = State.new()
    mine.serial = 4
    path = save(mine, tmp_path)
    assert path == tmp_path / f"errored.modelform.{mine.lineage}.4.json"
    assert State.loads((tmp_path / ERRORED).read_bytes()).lineage == other.lineage
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # An older version of this same state is replaced.
    (tmp_path / ERRORED).unlink()
    assert save(mine, tmp_path) == tmp_path / ERRORED
    mine.serial = 5
    assert save(mine, tmp_path) == tmp_path / ERRORED
    assert json.loads((tmp_path / ERRORED).read_text())["serial"] == 5
    # A newer one of it is kept too.
    mine.serial = 3
    assert save(mine, tmp_path) == tmp_path / f"errored.modelform.{mine.lineage}.3.json"
