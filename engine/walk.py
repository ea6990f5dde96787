"""A generic, parallel walk of a dependency graph.

At most ``parallelism`` steps work at once: each holds a slot while it runs.
A step that waits for work done elsewhere (a rollout on a cluster) gives its
slot up for the wait (:func:`waiting`) and takes one again after, so steps
that only wait do not keep others from starting; up to :data:`MAX_IN_FLIGHT`
steps may be in flight. A step starts
when every node it depends on has succeeded; a failure skips only its
descendants, and the rest of the graph completes. Once ``stop()`` is
called (Ctrl-C) no new step starts, steps in flight finish. ``halted``
does the same without the interrupt: once it returns True (the state can
no longer be saved) nothing new starts, and the steps in flight run to
their end undisturbed (``stopped`` stays False, so their waits go on).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

#: Steps in flight at most, those waiting without a slot included.
MAX_IN_FLIGHT = 64

_slot = threading.local()


@contextmanager
def waiting() -> Iterator[None]:
    """Give up the running step's slot for the block (a wait for work that
    runs elsewhere); take one again at its end. Outside a walk: nothing."""
    sem: threading.Semaphore | None = getattr(_slot, "sem", None)
    if sem is None or not getattr(_slot, "held", False):
        yield
        return
    _slot.held = False
    sem.release()
    try:
        yield
    finally:
        sem.acquire()
        _slot.held = True


@contextmanager
def _sigint_held() -> Iterator[None]:
    """SIGINT held back for the block (in this thread); one that came meanwhile
    raises KeyboardInterrupt when the block ends."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class _NotStarted(Exception):
    """The walk was stopped or halted while the step waited for a slot."""


@dataclass
class WalkResult:
    done: list[str] = field(default_factory=list)
    failed: dict[str, BaseException] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    #: Not started because the walk was stopped or halted.
    cancelled: list[str] = field(default_factory=list)


class Walker:
    def __init__(
        self,
        g: nx.DiGraph,
        step: Callable[[str], Any],
        parallelism: int = 10,
        halted: Callable[[], bool] = lambda: False,
    ) -> None:
        self.g = g
        self.step = step
        self.parallelism = max(1, parallelism)
        self.halted = halted
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _held(self) -> bool:
        """No new step may start: stopped (Ctrl-C) or halted."""
        return self.stopped or self.halted()

    def run(self) -> WalkResult:
        res = WalkResult()
        waiting = {n: self.g.in_degree(n) for n in self.g.nodes}
        ready = [n for n, d in waiting.items() if d == 0]
        blocked: set[str] = set()
        running: dict[Future[Any], str] = {}
        slots = threading.Semaphore(self.parallelism)
        in_flight = max(self.parallelism, min(MAX_IN_FLIGHT, self.g.number_of_nodes()))

        def run_step(n: str) -> Any:
            while not slots.acquire(timeout=0.2):
                if self._held():
                    raise _NotStarted
            if self._held():
                slots.release()
                raise _NotStarted
            _slot.sem, _slot.held = slots, True
            try:
                return self.step(n)
            finally:
                _slot.sem = None
                if _slot.held:
                    slots.release()

        with ThreadPoolExecutor(in_flight) as pool:
            while ready or running:
                try:
                    # Ctrl-C waits until every step started here is tracked
                    # (a thread's start can be interrupted half-way otherwise).
                    with _sigint_held():
                        while ready and len(running) < in_flight and not self._held():
                            n = ready.pop(0)
                            running[pool.submit(run_step, n)] = n
                except KeyboardInterrupt:
                    self.stop()
                if not running:
                    break
                try:
                    finished, _ = wait(list(running), timeout=0.2, return_when=FIRST_COMPLETED)
                except KeyboardInterrupt:
                    self.stop()
                    continue
                for fut in finished:
                    n = running.pop(fut)
                    err = fut.exception()
                    if isinstance(err, _NotStarted):
                        continue  # listed as cancelled below
                    if err is not None:
                        res.failed[n] = err
                        for d in nx.descendants(self.g, n):
                            blocked.add(d)
                        continue
                    res.done.append(n)
                    for succ in self.g.successors(n):
                        waiting[succ] -= 1
                        if waiting[succ] == 0 and succ not in blocked:
                            ready.append(succ)
        finished_nodes = set(res.done) | set(res.failed)
        for n in nx.topological_sort(self.g):
            if n in finished_nodes:
                continue
            if n in blocked:
                res.skipped.append(n)
            else:
                res.cancelled.append(n)
        return res
