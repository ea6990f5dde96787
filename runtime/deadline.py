"""A per-call time limit for ``run()`` without a thread hop, and nearly without syscalls.

``run()`` executes synchronously in the worker's main thread (the event
loop's thread). A ``SIGALRM`` handler raises :class:`RunTimeout` inside
``run()`` at the next Python bytecode once the call has lasted
``seconds``.

The timer (``ITIMER_REAL``) is armed lazily: starting a call only
records its start time, and arms the timer when none is pending. When
the timer fires, the handler raises if the current call is over its
limit, re-arms for the rest of the current call's time if one is
running, or stays disarmed if the worker is idle. Under steady traffic
that is one signal per ``seconds`` instead of two ``setitimer`` system
calls per request; the limit is still exact for every call.

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
from time import monotonic
from types import FrameType
from typing import Any

#: Re-arming for less than this (seconds) would be pointless; fire now.
_MIN_REARM = 0.0005


class RunTimeout(BaseException):
    """``run()`` did not finish within the deadline."""


class Deadline:
    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.expired = False
        self._started = 0.0  # monotonic start of the call in progress; 0.0 when idle
        self._pending = False  # a timer is armed
        if seconds is not None:
            if threading.current_thread() is not threading.main_thread():
                raise RuntimeError("Deadline needs the main thread (SIGALRM)")
            signal.signal(signal.SIGALRM, self._on_alarm)

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        self._pending = False
        started = self._started
        if not started or self.seconds is None:
            return  # idle: stay disarmed until the next call
        left = started + self.seconds - monotonic()
        if left > _MIN_REARM:
            self._pending = True
            signal.setitimer(signal.ITIMER_REAL, left)
            return
        self._started = 0.0
        self.expired = True
        raise RunTimeout()

    def call(self, func: Callable[..., Any], *args: Any) -> Any:
        """Return ``func(*args)`` or raise :class:`RunTimeout` past the deadline."""
        seconds = self.seconds
        if seconds is None:
            return func(*args)
        self.expired = False
        self._started = monotonic()
        if not self._pending:
            self._pending = True
            signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            result = func(*args)
        finally:
            self._started = 0.0
        if self.expired:  # the script caught RunTimeout and carried on
            raise RunTimeout()
        return result
