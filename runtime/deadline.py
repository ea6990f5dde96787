"""A per-call time limit for ``run()`` without a thread hop.

``run()`` executes synchronously in the worker's main thread (the event
loop's thread). :meth:`Deadline.call` arms ``ITIMER_REAL`` before the
call and disarms it after; if the timer fires first, the ``SIGALRM``
handler raises :class:`RunTimeout` inside ``run()`` at the next Python
bytecode. Cost: two ``setitimer`` system calls per request.

Limits, by construction: code stuck inside one long C call (a huge
matrix product, a blocking read in an extension) is interrupted only
when it returns to Python; the master's watchdog kills such a worker
(see ``master``). ``RunTimeout`` derives from ``BaseException`` so that
a script's ``except Exception`` does not swallow it; if the script
swallows it anyway, the call still counts as timed out.

Must be created and used in the main thread (signals are delivered
there). Not re-entrant.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any


class RunTimeout(BaseException):
    """``run()`` did not finish within the deadline."""


class Deadline:
    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.expired = False
        self._armed = False
        if seconds is not None:
            if threading.current_thread() is not threading.main_thread():
                raise RuntimeError("Deadline needs the main thread (SIGALRM)")
            signal.signal(signal.SIGALRM, self._on_alarm)

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        if self._armed:
            self._armed = False
            self.expired = True
            raise RunTimeout()

    def call(self, func: Callable[..., Any], *args: Any) -> Any:
        """Return ``func(*args)`` or raise :class:`RunTimeout` past the deadline."""
        seconds = self.seconds
        if seconds is None:
            return func(*args)
        self.expired = False
        self._armed = True
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            result = func(*args)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self._armed = False
        if self.expired:  # the script caught RunTimeout and carried on
            raise RunTimeout()
        return result
