"""What only the local file backend promises: its files, backup, lock file and clean-up."""

from __future__ import annotations

import json
import os
import random
import socket
import stat
import time
from pathlib import Path

import pytest

from modelform.state import LocalBackend, LockError, ResourceState, State, StateError
from modelform.state.fsutil import remove_dead_temps
from modelform.state.model import FORMAT_VERSION

from . import workers
from .conftest import BackendSpec


def version(backend: LocalBackend, n: int) -> State:
    state = backend.read() or State.new()
    state.set_resource(ResourceState("model.m", "model", "m", "core", {"n": n}))
    return backend.write(state)


def temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_the_first_write_makes_the_folder_and_a_private_file(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "p" / ".modelform" / "state.json")
    version(backend, 1)
    mode = stat.S_IMODE(backend.path.stat().st_mode)
    assert mode & 0o077 == 0
    assert sorted(p.name for p in backend.path.parent.iterdir()) == ["state.json"]
    assert backend.path.read_text() == (backend.read() or State.new()).dumps()


def test_the_backup_holds_the_previous_version(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "state.json")
    for n in (1, 2, 3):
        version(backend, n)
    backup = State.loads(backend.backup_path.read_bytes(), "backup")
    current = backend.read()
    assert current is not None and current.serial == 3 and backup.serial == 2
    assert backup.get("model.m").attributes == {"n": 2}  # type: ignore[union-attr]
    version(backend, 3)  # no change: neither file moves
    assert State.loads(backend.backup_path.read_bytes(), "backup").serial == 2


def test_an_unreadable_state_is_an_error_pointing_at_the_backup(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "state.json")
    version(backend, 1)
    version(backend, 2)
    backend.path.write_text('{"format_version": 1, "lineage": ')
    with pytest.raises(StateError) as caught:
        backend.read()
    msg = str(caught.value)
    assert msg.startswith(f"{backend.path}: state is not valid JSON")
    assert f"(the previous version is in {backend.backup_path})" in msg
    with pytest.raises(StateError):  # a write never overwrites what it cannot read
        backend.write(State.new())
    assert backend.path.read_text() == '{"format_version": 1, "lineage": '
    backend.path.write_text("")
    with pytest.raises(StateError, match="the state file is empty"):
        backend.read()
    backend.path.write_text('{"format_version": 99}')
    with pytest.raises(StateError) as caught:  # not broken, only newer: no backup hint
        backend.read()
    assert str(caught.value) == (
        f"{backend.path}: state format 99 is newer than this modelform understands "
        f"(format {FORMAT_VERSION}): upgrade modelform to use it"
    )


def test_a_state_path_that_is_a_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "state.json").mkdir()
    backend = LocalBackend(tmp_path / "state.json")
    with pytest.raises(StateError, match="cannot read the state: Is a directory"):
        backend.read()


def test_the_lock_file_holds_the_holder_and_goes_away(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "s" / "state.json")
    info = backend.lock("apply")
    data = json.loads(backend.lock_path.read_text())
    assert data == info.to_json()
    assert set(data) >= {"id", "operation", "who", "pid", "hostname", "created", "version"}
    assert data["path"] == str(backend.path)
    backend.unlock(info.id)
    assert not backend.lock_path.exists()
    assert temps(backend.path.parent) == []


def test_a_lock_file_that_is_not_ours_is_reported(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "state.json")
    backend.lock_path.write_text("garbage")
    with pytest.raises(LockError, match="the lock file is unreadable .* delete it"):
        backend.lock("apply")
    backend.lock_path.write_text('{"who": "x"}')
    with pytest.raises(LockError, match="is not a modelform lock"):
        backend.lock_info()


def test_without_hard_links_lock_and_backup_still_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some file systems (FAT, some network mounts) refuse hard links."""

    def no_links(src: object, dst: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    backend = LocalBackend(tmp_path / "state.json")
    version(backend, 1)
    version(backend, 2)
    assert State.loads(backend.backup_path.read_bytes(), "backup").serial == 1
    info = backend.lock("apply")
    with pytest.raises(LockError, match=info.id):
        LocalBackend(backend.path).lock("plan")
    backend.unlock(info.id)
    assert temps(tmp_path) == []


def test_temp_files_of_dead_writers_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "state.json")
    host = socket.gethostname()
    child = workers.CTX.Process(target=time.sleep, args=(0,))
    child.start()
    child.join()
    dead = tmp_path / f".state.json.{child.pid}.abcd1234.{host}.tmp"
    live = tmp_path / f".state.json.{os.getpid()}.abcd1234.{host}.tmp"
    elsewhere = tmp_path / f".state.json.{child.pid}.abcd1234.other-host.tmp"
    for p in (dead, live, elsewhere):
        p.write_text("partial")
    version(backend, 1)
    assert not dead.exists() and live.exists() and elsewhere.exists()
    assert remove_dead_temps(backend.path) == []


def test_kills_that_land_mid_write_leave_old_or_new_and_the_backup_one_before(
    tmp_path: Path,
) -> None:
    """Kill a writer of ~1 MB states until some kills land between temp file and rename."""
    spec = BackendSpec("local", {"path": str(tmp_path / "state.json")})
    backend = spec.make()
    assert isinstance(backend, LocalBackend)
    lineage = backend.write(State.new()).lineage
    rng = random.Random(11)
    mid_write = 0
    for _ in range(40):
        workers.kill_writer_mid_run(spec, lineage, 400, 2560, rng, 0.3)
        mid_write += bool(temps(tmp_path))
        state = backend.read()
        assert state is not None
        workers.assert_coherent(state)
        backup = State.loads(backend.backup_path.read_bytes(), "backup")
        assert backup.serial in (state.serial - 1, state.serial)
        if backup.resources:
            workers.assert_coherent(backup)
        if mid_write >= 3:
            break
    print(f"kills that landed mid-write: {mid_write}")
    assert mid_write >= 1  # the loop did exercise the crash window
    version(backend, 0)
    assert temps(tmp_path) == []  # what the killed writers left is cleaned up
