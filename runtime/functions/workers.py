"""A fixed set of daemon threads working through a queue of tasks.

Not ``ThreadPoolExecutor``: its threads are joined when the interpreter
exits, so a user's function stuck in a call would keep a stopped host
alive. These threads are daemons; the host decides how long to wait for
them (``wait_idle``) and what to do with work still running (release the
claims), then exits.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any


class Workers:
    def __init__(self, count: int, name: str) -> None:
        self._tasks: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._busy = 0
        self._queued = 0
        self._lock = threading.Condition()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{index}", daemon=True)
            for index in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, task: Callable[..., Any], *args: Any) -> None:
        with self._lock:
            self._queued += 1
        self._tasks.put((task, args))

    @property
    def pending(self) -> int:
        """Tasks queued or running."""
        with self._lock:
            return self._queued + self._busy

    def _work(self) -> None:
        while True:
            item = self._tasks.get()
            if item is None:
                return
            task, args = item
            with self._lock:
                self._queued -= 1
                self._busy += 1
            try:
                task(*args)
            except BaseException:  # noqa: BLE001 - tasks handle their own errors; keep the thread
                pass
            finally:
                with self._lock:
                    self._busy -= 1
                    self._lock.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or running; False if ``timeout`` ran out first."""
        with self._lock:
            return self._lock.wait_for(lambda: self._queued + self._busy == 0, timeout)

    def close(self) -> None:
        """Let the threads end once the queue is drained (they are daemons either way)."""
        for _ in self._threads:
            self._tasks.put(None)
