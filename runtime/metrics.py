"""Request counters and latency histograms shared by all workers.

The master maps one anonymous shared memory area before forking; each
worker owns one slot of unsigned 64-bit integers and is its only writer
(no locks). ``GET /metrics``, answered by whichever worker gets it, sums
every slot, so the figures cover the whole server. A respawned worker
takes over its predecessor's slot, so counters stay monotonic.

Slot layout: a small header (pid, ready flag, the monotonic time at which
the current ``run()`` started, restarts), then per route × status
counters, per route histogram buckets (not cumulative), per route sum of
microseconds.
"""

from __future__ import annotations

import bisect
import mmap
import os
import time

ROUTES = ("/score", "/", "/ready", "/swagger.json", "/metrics", "other")
ROUTE_INDEX = {route: index for index, route in enumerate(ROUTES)}
OTHER_ROUTE = ROUTE_INDEX["other"]

STATUSES = (200, 400, 401, 404, 405, 413, 415, 431, 500, 503, 504)
STATUS_INDEX = {status: index for index, status in enumerate(STATUSES)}
OTHER_STATUS = len(STATUSES)  # one more column for any other code

#: Upper bounds of the latency buckets, in seconds (+Inf is implicit).
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BUCKET_US = [round(bound * 1e6) for bound in BUCKETS]

_HEADER = 8  # pid, ready, busy_since_ns, restarts, 4 spare
_PID, _READY, _BUSY, _RESTARTS = 0, 1, 2, 3
_COUNTS = _HEADER
_NSTATUS = len(STATUSES) + 1
_HIST = _COUNTS + len(ROUTES) * _NSTATUS
_NBUCKET = len(BUCKETS) + 1
_SUMS = _HIST + len(ROUTES) * _NBUCKET
_SLOT = _SUMS + len(ROUTES)


class SharedMetrics:
    """The shared area; create it in the master before forking workers."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._map = mmap.mmap(-1, max(_SLOT * 8 * workers, mmap.PAGESIZE))
        self.cells = memoryview(self._map).cast("Q")

    def slot(self, index: int) -> WorkerSlot:
        return WorkerSlot(self.cells, index * _SLOT)

    # -- read by the master's supervisor ---------------------------------
    def busy_since_ns(self, index: int) -> int:
        return int(self.cells[index * _SLOT + _BUSY])

    def count_restart(self, index: int) -> None:
        self.cells[index * _SLOT + _RESTARTS] += 1

    def clear_worker(self, index: int) -> None:
        base = index * _SLOT
        self.cells[base + _READY] = 0
        self.cells[base + _BUSY] = 0
        self.cells[base + _PID] = 0

    def render(self) -> bytes:
        """The Prometheus text exposition of all slots summed."""
        cells = self.cells
        slots = [index * _SLOT for index in range(self.workers)]
        lines = [
            "# HELP modelform_requests_total HTTP requests answered, by route and status.",
            "# TYPE modelform_requests_total counter",
        ]
        for r, route in enumerate(ROUTES):
            for s in range(_NSTATUS):
                total = sum(cells[base + _COUNTS + r * _NSTATUS + s] for base in slots)
                if total:
                    code = str(STATUSES[s]) if s < len(STATUSES) else "other"
                    lines.append(
                        f'modelform_requests_total{{route="{route}",status="{code}"}} {total}'
                    )
        lines += [
            "# HELP modelform_request_duration_seconds Time from request to response, by route.",
            "# TYPE modelform_request_duration_seconds histogram",
        ]
        for r, route in enumerate(ROUTES):
            counts = [
                sum(cells[base + _HIST + r * _NBUCKET + b] for base in slots)
                for b in range(_NBUCKET)
            ]
            count = sum(counts)
            if not count:
                continue
            cumulative = 0
            for b, bound in enumerate((*BUCKETS, None)):
                cumulative += counts[b]
                le = "+Inf" if bound is None else repr(bound)
                lines.append(
                    f'modelform_request_duration_seconds_bucket{{route="{route}",le="{le}"}}'
                    f" {cumulative}"
                )
            seconds = sum(cells[base + _SUMS + r] for base in slots) / 1e6
            lines.append(f'modelform_request_duration_seconds_sum{{route="{route}"}} {seconds!r}')
            lines.append(f'modelform_request_duration_seconds_count{{route="{route}"}} {count}')
        ready = sum(1 for base in slots if cells[base + _READY])
        restarts = sum(cells[base + _RESTARTS] for base in slots)
        lines += [
            "# HELP modelform_workers Worker processes configured.",
            "# TYPE modelform_workers gauge",
            f"modelform_workers {self.workers}",
            "# HELP modelform_workers_ready Workers whose init() has succeeded.",
            "# TYPE modelform_workers_ready gauge",
            f"modelform_workers_ready {ready}",
            "# HELP modelform_worker_restarts_total Workers respawned after dying.",
            "# TYPE modelform_worker_restarts_total counter",
            f"modelform_worker_restarts_total {restarts}",
        ]
        return ("\n".join(lines) + "\n").encode()


class WorkerSlot:
    """One worker's part of the area; only that worker writes it."""

    __slots__ = ("_cells", "_base")

    def __init__(self, cells: memoryview, base: int) -> None:
        self._cells = cells
        self._base = base

    def started(self) -> None:
        self._cells[self._base + _PID] = os.getpid()
        self._cells[self._base + _READY] = 0
        self._cells[self._base + _BUSY] = 0

    def set_ready(self) -> None:
        self._cells[self._base + _READY] = 1

    def busy(self) -> None:
        self._cells[self._base + _BUSY] = time.monotonic_ns()

    def idle(self) -> None:
        self._cells[self._base + _BUSY] = 0

    def observe(self, route: int, status: int, seconds: float) -> None:
        cells = self._cells
        base = self._base
        cells[base + _COUNTS + route * _NSTATUS + STATUS_INDEX.get(status, OTHER_STATUS)] += 1
        micros = int(seconds * 1e6)
        cells[base + _HIST + route * _NBUCKET + bisect.bisect_left(_BUCKET_US, micros)] += 1
        cells[base + _SUMS + route] += micros
