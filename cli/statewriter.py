"""Persisting state while an apply runs: a group commit in the background.

Every finished step hands the writer the whole set of records; the writer
thread writes the newest set it has whenever it is free. A slow step (a
process start, an image build) therefore gets a write of its own at once,
while thousands of instant steps are batched into as many writes as the
disk allows — instead of one full rewrite per resource, which is
quadratic. Records unchanged since the last write keep their
:class:`ResourceState` (and timestamps) without being converted again.
``flush()`` writes the final set and re-raises a write error.
"""

from __future__ import annotations

import threading

from modelform.engine.planner import Records
from modelform.state import Backend, ResourceState, State
from modelform.state.resource import now_iso


class StateWriter:
    def __init__(self, backend: Backend, lineage: str, prior: State | None) -> None:
        self.backend = backend
        self.current = prior if prior is not None else State.new(lineage=lineage)
        self._cache: dict[str, tuple[dict[str, object], ResourceState]] = {}
        if prior is not None:
            for addr, rs in prior.resources.items():
                self._cache[addr] = (rs.to_json(), rs)
        self._pending: Records | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._cond = threading.Condition()
        self._busy = False
        self._thread = threading.Thread(target=self._loop, name="state-writer", daemon=True)
        self._thread.start()

    def submit(self, records: Records) -> None:
        with self._cond:
            self._pending = records
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._pending is None:
                    return
                records, self._pending = self._pending, None
                self._busy = True
            try:
                self._write(records)
            except BaseException as e:  # surfaced by flush()
                self._error = e
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _write(self, records: Records) -> None:
        now = now_iso()
        new = State(self.current.lineage, self.current.serial, {}, self.current.modelform_version)
        for addr, rec in records.items():
            cached = self._cache.get(addr)
            if cached is not None and (cached[0] is rec or cached[0] == rec):
                new.resources[addr] = cached[1]
                continue
            rs = ResourceState.from_json(rec).stamped(self.current.resources.get(addr), now)
            new.resources[addr] = rs
            self._cache[addr] = (rec, rs)
        for gone in set(self._cache) - set(records):
            del self._cache[gone]
        self.current = self.backend.write(new)

    def flush(self) -> State:
        """Wait for every submitted set to be written; re-raise a write error."""
        with self._cond:
            while self._pending is not None or self._busy:
                self._cond.wait()
            self._closed = True
            self._cond.notify_all()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.current
