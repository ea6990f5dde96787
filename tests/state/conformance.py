"""The conformance suite every state backend must pass (as OpenTofu's statemgr.TestFull).

Each test takes ``backend_spec`` (see conftest.py), a fresh, empty state
location of one backend, and uses only the public protocol, so the same
tests hold the local file backend and any other to the same contract.
test_conformance.py collects them.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import threading
import time

import pytest

from modelform.state import (
    Backend,
    LockError,
    LockInfo,
    ResourceState,
    State,
    StateConflict,
    StateError,
    locked,
)

from . import workers
from .conftest import BackendSpec


def sample_state(lineage: str | None = None) -> State:
    state = State.new(lineage)
    state.set_resource(
        ResourceState(
            "model.ridge", "model", "ridge", "core", {"version": 3, "path": "models/ridge.pkl"},
            digests={"content": "sha256:ab12"},
        )
    )  # fmt: skip
    state.set_resource(
        ResourceState(
            "service.api", "service", "api", "local", {"url": "http://127.0.0.1:8890", "pid": 4242},
            digests={"model": "sha256:ab12"}, dependencies=["model.ridge"], status="Healthy",
        )
    )  # fmt: skip
    return state


def test_read_of_an_empty_backend_is_none(backend_spec: BackendSpec) -> None:
    assert backend_spec.make().read() is None


def test_write_then_read_round_trips(backend_spec: BackendSpec) -> None:
    backend = backend_spec.make()
    state = sample_state()
    stored = backend.write(state)
    assert stored.serial == 1 and stored.lineage == state.lineage
    again = backend_spec.make().read()  # a fresh instance, as another process would
    assert again is not None
    assert again.serial == 1 and again.lineage == state.lineage
    assert again.same_content(state)
    assert again.dumps() == stored.dumps()
    assert again.get("service.api") == stored.get("service.api")
    assert state.serial == 0  # the caller's state is not changed; write returns the new one


def test_serial_grows_only_when_content_changes(backend_spec: BackendSpec) -> None:
    backend = backend_spec.make()
    first = backend.write(sample_state())
    assert backend.write(first).serial == 1  # the same content: nothing written
    rebuilt = first.with_resources({a: r for a, r in first.resources.items()})
    assert backend.write(rebuilt).serial == 1  # rebuilt from the same records: same content
    changed = first.copy()
    changed.resources["service.api"].attributes["pid"] = 4343
    second = backend.write(changed)
    assert second.serial == 2
    assert backend.write(second).serial == 2
    second.remove("model.ridge")
    assert backend.write(second).serial == 3
    stored = backend.read()
    assert stored is not None and stored.serial == 3 and stored.addresses() == ["service.api"]


def test_another_lineage_is_refused(backend_spec: BackendSpec) -> None:
    backend = backend_spec.make()
    backend.write(sample_state())
    before = backend.read()
    assert before is not None
    with pytest.raises(StateConflict, match="lineage"):
        backend.write(sample_state(lineage="00000000-0000-4000-8000-000000000000"))
    after = backend.read()
    assert after is not None and after.dumps() == before.dumps()


def test_an_older_serial_is_refused(backend_spec: BackendSpec) -> None:
    backend = backend_spec.make()
    base = backend.write(sample_state())
    mine, theirs = base.copy(), base.copy()
    theirs.resources["service.api"].status = "Unhealthy"
    assert backend.write(theirs).serial == 2
    mine.resources["service.api"].attributes["pid"] = 1
    with pytest.raises(StateConflict, match="serial 1 is older than the stored serial 2"):
        backend.write(mine)
    stored = backend.read()
    assert stored is not None and stored.get("service.api").status == "Unhealthy"  # type: ignore[union-attr]


def test_a_value_json_cannot_hold_is_refused_and_nothing_is_written(
    backend_spec: BackendSpec,
) -> None:
    backend = backend_spec.make()
    stored = backend.write(sample_state())
    bad = stored.copy()
    bad.resources["service.api"].attributes["when"] = object()
    with pytest.raises(StateError, match="service.api: attributes.when"):
        backend.write(bad)
    bad.resources["service.api"].attributes["when"] = float("nan")
    with pytest.raises(StateError, match="cannot be stored in JSON"):
        backend.write(bad)
    again = backend.read()
    assert again is not None and again.dumps() == stored.dumps()


def test_lock_records_who_what_when(backend_spec: BackendSpec) -> None:
    backend = backend_spec.make()
    assert backend.lock_info() is None
    info = backend.lock("apply", timeout=0)
    seen = backend_spec.make().lock_info()
    assert seen is not None
    assert (seen.id, seen.operation, seen.pid, seen.who) == (
        info.id, "apply", os.getpid(), info.who,
    )  # fmt: skip
    assert "@" in seen.who and seen.hostname and seen.created.endswith("Z") and seen.version
    backend.unlock(info.id)
    assert backend.lock_info() is None


def test_a_second_lock_waits_then_names_the_holder(backend_spec: BackendSpec) -> None:
    holder = backend_spec.make().lock("apply", timeout=0)
    other = backend_spec.make()
    t0 = time.monotonic()
    with pytest.raises(LockError) as caught:
        other.lock("plan", timeout=0.6)
    waited = time.monotonic() - t0
    err = caught.value
    assert err.holder is not None and err.holder.id == holder.id
    assert not err.stale
    for part in (holder.who, f"pid {os.getpid()}", '"apply"', holder.id, holder.created):
        assert part in str(err)
    assert err.waited >= 0.6 and waited >= 0.6  # it waited the whole timeout (no upper bound)
    with pytest.raises(LockError, match=holder.id):
        other.lock("plan", timeout=0)
    assert other.lock_info() == holder or other.lock_info().id == holder.id  # type: ignore[union-attr]


def test_a_waiting_lock_gets_it_once_released(backend_spec: BackendSpec) -> None:
    first = backend_spec.make()
    info = first.lock("apply", timeout=0)
    timer = threading.Timer(0.3, first.unlock, args=(info.id,))
    timer.start()
    try:
        second = backend_spec.make().lock("destroy", timeout=60)
    finally:
        timer.join()
    current = first.lock_info()
    assert current is not None and current.id == second.id and current.operation == "destroy"


def test_unlock_with_a_wrong_id_is_refused(backend_spec: BackendSpec) -> None:
    backend = backend_spec.make()
    info = backend.lock("apply", timeout=0)
    with pytest.raises(LockError, match="not the current lock"):
        backend.unlock("not-" + info.id)
    assert backend.lock_info() is not None
    backend.unlock(info.id)
    with pytest.raises(LockError, match="not locked"):
        backend.unlock(info.id)


def test_force_unlock_needs_the_holders_id(backend_spec: BackendSpec) -> None:
    info = backend_spec.make().lock("apply", timeout=0)
    rescuer = backend_spec.make()
    with pytest.raises(LockError, match=info.id):  # the error shows the real holder's id
        rescuer.force_unlock("00000000-dead-4000-8000-000000000000")
    rescuer.force_unlock(info.id)
    assert rescuer.lock_info() is None
    taken = rescuer.lock("apply", timeout=0)
    with pytest.raises(LockError):
        backend_spec.make().unlock(info.id)  # the old holder cannot release the new lock
    assert rescuer.lock_info() == taken or rescuer.lock_info().id == taken.id  # type: ignore[union-attr]


def test_reads_do_not_take_the_lock(backend_spec: BackendSpec) -> None:
    backend = backend_spec.make()
    backend.write(sample_state())
    with locked(backend, "apply") as info:
        state = backend_spec.make().read()
        assert state is not None and state.serial == 1
        assert isinstance(info, LockInfo)


def test_locked_releases_when_the_body_fails(backend_spec: BackendSpec) -> None:
    backend = backend_spec.make()
    with pytest.raises(RuntimeError, match="boom"), locked(backend, "apply"):
        raise RuntimeError("boom")
    assert backend.lock_info() is None


def test_a_killed_holders_lock_is_taken_over(backend_spec: BackendSpec) -> None:
    """A lock dies with its holder's process, as Terraform's local lock: the
    next lock() takes it over at once and says whose it was. A backend that
    does not take over (a shared remote state) reports it as stale instead."""
    ready = workers.CTX.Event()
    child = workers.CTX.Process(target=workers.hold_lock, args=(backend_spec, ready))
    child.start()
    try:
        assert ready.wait(60)
    finally:
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join(30)
    backend = backend_spec.make()
    dead = backend.lock_info()
    assert dead is not None and dead.pid == child.pid and dead.started is not None
    assert dead.is_stale()
    if not backend.takes_over_gone_holders:
        _reported_as_stale_then_force_unlocked(backend_spec, dead)
        return
    info = backend.lock("apply", timeout=0)
    assert backend_spec.make().lock_info() == info
    assert backend.lock_note == (
        f"took over the state lock of {dead.who} (pid {child.pid}, apply since {dead.created}): "
        "its process is gone"
    )
    with pytest.raises(LockError, match="not the current lock"):
        backend.unlock(dead.id)  # the dead holder's id releases nothing any more
    backend.unlock(info.id)
    assert backend.lock_info() is None
    assert backend.lock("plan").id != info.id and backend.lock_note is None


def _reported_as_stale_then_force_unlocked(backend_spec: BackendSpec, dead: LockInfo) -> None:
    """The other half of the contract: a gone holder's lock is reported, with who
    held it, for how long and the id to force-unlock, and stays until then."""
    backend = backend_spec.make()
    for timeout in (0.0, 0.3):
        with pytest.raises(LockError) as caught:
            backend.lock("apply", timeout=timeout)
        err = caught.value
        assert err.stale and err.holder is not None and err.holder.id == dead.id
        assert dead.describe() in str(err)
        assert f"stale: holder pid {dead.pid} is gone, held for " in str(err)
        assert f"use `modelform force-unlock {dead.id}`" in str(err)
        assert backend.lock_note is None
    assert backend.lock_info() == dead
    backend.force_unlock(dead.id)
    assert backend.lock_info() is None
    info = backend.lock("apply", timeout=0)
    assert backend_spec.make().lock_info() == info
    backend.unlock(info.id)


def test_of_several_at_once_one_takes_a_dead_holders_lock_over(
    backend_spec: BackendSpec,
) -> None:
    backend = backend_spec.make()
    for _ in range(5):
        child = workers.CTX.Process(target=time.sleep, args=(0,))
        child.start()
        child.join()
        dead = _planted(backend, pid=child.pid)
        if not backend.takes_over_gone_holders:
            _reported_as_stale_then_force_unlocked(backend_spec, dead)
            continue
        go, done, results = workers.CTX.Event(), workers.CTX.Event(), workers.CTX.Queue()
        racers = [
            workers.CTX.Process(
                target=workers.race_for_lock, args=(backend_spec, go, results, done)
            )
            for _ in range(4)
        ]
        for r in racers:
            r.start()
        go.set()
        try:
            got = [results.get(timeout=60) for _ in racers]
        finally:
            done.set()
            for r in racers:
                r.join(30)
        winners = [(pid, lock_id, note) for pid, lock_id, note in got if lock_id]
        assert len(winners) == 1, got
        assert f"took over the state lock of {dead.who} (pid {child.pid}" in winners[0][2]
        holder = backend.lock_info()  # the winner's lock, left by its (now ended) process
        assert holder is not None and holder.id == winners[0][1]
        backend.force_unlock(holder.id)


def _planted(backend: Backend, **changes: object) -> LockInfo:
    """A lock held as ``LockInfo.new`` in this process would, with ``changes``."""
    holder = dataclasses.replace(LockInfo.new("apply", path=backend.describe()), **changes)
    assert backend.try_lock(holder) is None
    return holder


def test_a_reused_pids_lock_is_taken_over(backend_spec: BackendSpec) -> None:
    """The holder's pid runs, but a process started at another time: not the holder."""
    backend = backend_spec.make()
    started = LockInfo.new("x").started
    assert started is not None
    holder = _planted(backend, started=started - 1)
    if not backend.takes_over_gone_holders:
        _reported_as_stale_then_force_unlocked(backend_spec, holder)
        return
    taker = backend_spec.make()
    info = taker.lock("apply", timeout=0)
    assert backend.lock_info() == info
    assert taker.lock_note == (
        f"took over the state lock of {holder.who} (pid {os.getpid()}, apply since "
        f"{holder.created}): its process is gone (its pid now runs another process)"
    )


def test_a_live_holders_lock_waits_and_is_refused(backend_spec: BackendSpec) -> None:
    """Same pid, same start time: the holder runs, its lock stands after -lock-timeout."""
    backend = backend_spec.make()
    holder = _planted(backend)
    assert holder.started is not None and not holder.is_stale()
    t0 = time.monotonic()
    with pytest.raises(LockError) as caught:
        backend_spec.make().lock("apply", timeout=0.5)
    assert time.monotonic() - t0 >= 0.5
    assert caught.value.holder == holder and not caught.value.stale
    assert "force-unlock" not in str(caught.value)
    assert backend.lock_info() == holder


def test_another_hosts_lock_is_refused_with_the_force_unlock_hint(
    backend_spec: BackendSpec,
) -> None:
    """Whether a process on another host runs cannot be told from here."""
    backend = backend_spec.make()
    holder = _planted(backend, hostname="elsewhere-7", who="bob@elsewhere-7", pid=2**22 + 1)
    with pytest.raises(LockError) as caught:
        backend_spec.make().lock("apply", timeout=0.1)
    assert caught.value.holder == holder and not caught.value.stale
    assert (
        "it is held from another host (elsewhere-7), so modelform cannot tell whether it still "
        f"runs; if not, use `modelform force-unlock {holder.id}`"
    ) in str(caught.value)
    assert backend.lock_info() == holder
    backend.force_unlock(holder.id)
    backend.unlock(backend.lock("apply").id)


def test_an_old_lock_without_start_time_is_taken_over_only_when_its_pid_is_dead(
    backend_spec: BackendSpec,
) -> None:
    backend = backend_spec.make()
    alive = _planted(backend, started=None)
    with pytest.raises(LockError):
        backend_spec.make().lock("apply", timeout=0)
    backend.unlock(alive.id)
    child = workers.CTX.Process(target=time.sleep, args=(0,))
    child.start()
    child.join()
    dead = _planted(backend, started=None, pid=child.pid)
    if not backend.takes_over_gone_holders:
        _reported_as_stale_then_force_unlocked(backend_spec, dead)
        return
    info = backend_spec.make().lock("apply", timeout=0)
    assert backend.lock_info() == info


def test_writers_in_several_processes_under_the_lock(backend_spec: BackendSpec) -> None:
    backend = backend_spec.make()
    seed = backend.write(State.new())
    procs, count = 4, 25
    stop, go, results = workers.CTX.Event(), workers.CTX.Event(), workers.CTX.Queue()
    reader = workers.CTX.Process(target=workers.read_loop, args=(backend_spec, stop, results))
    reader.start()
    writers = [
        workers.CTX.Process(target=workers.increment, args=(backend_spec, w, count, go))
        for w in range(procs)
    ]
    for p in writers:
        p.start()
    go.set()  # all start together, so they contend for the lock
    try:
        for p in writers:
            p.join(240)
            assert p.exitcode == 0, f"writer {p.pid} exited {p.exitcode}"
    finally:
        stop.set()
        for p in writers:
            if p.is_alive():
                p.kill()
        reads, serials, errors = results.get(timeout=60)
        reader.join(30)
    assert errors == [] and reads > 0
    assert serials == sorted(serials)  # readers never see the serial go back
    final = backend.read()
    assert final is not None and final.lineage == seed.lineage
    assert final.get("model.counter").attributes["n"] == procs * count  # type: ignore[union-attr]
    assert final.serial == seed.serial + procs * count
    for w in range(procs):
        assert final.get(f"service.w{w}").attributes["i"] == count - 1  # type: ignore[union-attr]
    assert backend.lock_info() is None


def test_a_writer_killed_mid_write_leaves_the_old_or_the_new_state(
    backend_spec: BackendSpec,
) -> None:
    backend = backend_spec.make()
    lineage = backend.write(State.new()).lineage
    rng = random.Random(7)
    last = 1
    for _ in range(10):
        workers.kill_writer_mid_run(backend_spec, lineage, 300, 2048, rng, 0.4)
        state = backend.read()  # never missing, never unparsable
        assert state is not None and state.lineage == lineage
        workers.assert_coherent(state)
        assert state.serial >= last
        last = state.serial
    assert last > 10  # each child wrote at least once


def test_push_stores_a_state_as_it_is(backend_spec: BackendSpec) -> None:
    """``state push`` / ``init -migrate-state``: lineage and serial kept, not bumped."""
    backend = backend_spec.make()
    state = sample_state()
    state.serial = 41
    stored = backend.push(state)
    assert (stored.lineage, stored.serial) == (state.lineage, 41)
    again = backend_spec.make().read()
    assert again is not None and again.serial == 41 and again.same_content(state)
    assert backend.push(again).serial == 41  # the same state again: nothing written


def test_push_refuses_an_older_serial_or_another_lineage_unless_forced(
    backend_spec: BackendSpec,
) -> None:
    backend = backend_spec.make()
    state = sample_state()
    state.serial = 7
    backend.push(state)
    older = state.copy()
    older.serial = 6
    older.remove("service.api")
    with pytest.raises(StateConflict, match="serial 6 is not newer than the stored serial 7"):
        backend.push(older)
    same = older.copy()
    same.serial = 7
    with pytest.raises(StateConflict, match="serial 7 is not newer"):
        backend.push(same)
    stranger = sample_state()
    stranger.serial = 50
    with pytest.raises(StateConflict, match=f"lineage {state.lineage}"):
        backend.push(stranger)
    current = backend_spec.make().read()
    assert current is not None and current.serial == 7 and current.same_content(state)
    forced = backend.push(older, force=True)
    assert forced.serial == 8 and forced.get("service.api") is None  # never goes back
    newer = forced.copy()
    newer.serial = 12
    assert backend.push(newer).serial == 12


def test_history_names_the_current_version_first(backend_spec: BackendSpec) -> None:
    backend = backend_spec.make()
    state = backend.write(sample_state())
    state.remove("service.api")
    state = backend.write(state)
    entries = backend_spec.make().history()
    assert entries[0].current and entries[0].serial == state.serial == 2
    assert [e.serial for e in entries] == sorted((e.serial for e in entries), reverse=True)
    assert 1 in [e.serial for e in entries]  # the version before the last write is kept
    old = backend.read_version(next(e.ref for e in entries if e.serial == 1))
    assert old.get("service.api") is not None and old.lineage == state.lineage
