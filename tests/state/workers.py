"""Bodies of the worker processes the conformance suite starts (spawned, so importable).

Each builds its own backend from a :class:`BackendSpec`, as a second
modelform process would.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import time
from typing import Any

from modelform.state import ResourceState, State, StateError, locked

CTX = mp.get_context("spawn")


def counter_resource(n: int, worker: int) -> ResourceState:
    return ResourceState("model.counter", "model", "counter", "core", {"n": n, "by": worker})


def increment(spec: Any, worker: int, count: int, go: Any) -> None:
    """Once ``go`` is set, ``count`` times under the lock: read, add one to the counter, write."""
    backend = spec.make()
    go.wait(60)
    for i in range(count):
        with locked(backend, f"increment {worker}", timeout=120):
            state = backend.read()
            assert state is not None
            counter = state.get("model.counter")
            n = counter.attributes["n"] if counter else 0
            time.sleep(0.002)  # hold the lock a moment, as a real command does
            state.set_resource(counter_resource(n + 1, worker))
            state.set_resource(
                ResourceState(f"service.w{worker}", "service", f"w{worker}", "local", {"i": i})
            )
            backend.write(state)


def read_loop(spec: Any, stop: Any, results: Any) -> None:
    """Read until ``stop`` is set; report (reads, serials seen, errors)."""
    backend = spec.make()
    reads, errors, serials = 0, [], []
    while not stop.is_set():
        try:
            state = backend.read()
        except StateError as e:
            errors.append(str(e))
            continue
        reads += 1
        if state is not None:
            serials.append(state.serial)
    results.put((reads, serials, errors))


def hold_lock(spec: Any, ready: Any) -> None:
    """Take the lock, say so, and keep it until killed."""
    backend = spec.make()
    backend.lock("apply", timeout=0)
    ready.set()
    time.sleep(600)


def race_for_lock(spec: Any, go: Any, results: Any, done: Any) -> None:
    """Once ``go`` is set, try the lock once; report (pid, lock id or None, note);
    hold whatever was got until ``done``, so a winner stays alive."""
    backend = spec.make()
    go.wait(60)
    try:
        info = backend.lock("apply", timeout=0)
        results.put((os.getpid(), info.id, backend.lock_note))
    except StateError:
        results.put((os.getpid(), None, None))
    done.wait(60)


def big_state(lineage: str, serial: int, generation: int, count: int, blob: int) -> State:
    """A state whose every resource carries ``generation`` (the serial it will be written at)."""
    state = State.new(lineage)
    state.serial = serial
    for i in range(count):
        attrs = {"generation": generation, "i": i, "blob": f"{generation:08d}" * (blob // 8)}
        state.set_resource(
            ResourceState(f"service.s{i:04d}", "service", f"s{i:04d}", "local", attrs)
        )
    return state


def write_big_states(spec: Any, lineage: str, ready: Any, count: int, blob: int) -> None:
    """Write ever newer big states until killed; ``ready`` after the first write."""
    backend = spec.make()
    while True:
        stored = backend.read()
        serial = stored.serial if stored else 0
        backend.write(big_state(lineage, serial, serial + 1, count, blob))
        ready.set()


def kill_writer_mid_run(
    spec: Any, lineage: str, count: int, blob: int, rng: random.Random, max_delay: float
) -> None:
    """Start a child writing big states in a loop and SIGKILL it at a random
    moment once it has started: the crash the atomic write must survive."""
    ready = CTX.Event()
    child = CTX.Process(target=write_big_states, args=(spec, lineage, ready, count, blob))
    child.start()
    try:
        assert ready.wait(60)
        time.sleep(rng.uniform(0.0, max_delay))
    finally:
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join(30)


def assert_coherent(state: State) -> None:
    """Every resource was written in the same write: the one that gave this serial."""
    generations = {rs.attributes["generation"] for rs in state.resources.values()}
    assert generations == {state.serial}, (state.serial, sorted(generations)[:5])
