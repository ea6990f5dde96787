"""A generic, parallel walk of a dependency graph.

At most ``parallelism`` steps run at once (a thread pool). A step starts
when every node it depends on has succeeded; a failure skips only its
descendants, and the rest of the graph completes. Once ``stop()`` is
called (Ctrl-C) no new step starts, steps in flight finish. ``halted``
does the same without the interrupt: once it returns True (the state can
no longer be saved) nothing new starts, and the steps in flight run to
their end undisturbed (``stopped`` stays False, so their waits go on).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import networkx as nx


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
        with ThreadPoolExecutor(self.parallelism) as pool:
            while ready or running:
                while ready and len(running) < self.parallelism and not self._held():
                    n = ready.pop(0)
                    running[pool.submit(self.step, n)] = n
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
