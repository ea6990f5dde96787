"""Persisting state while an apply runs: a group commit in the background.

Every finished step hands the writer the whole set of records; the writer
thread writes the newest set it has whenever it is free. A slow step (a
process start, an image build) therefore gets a write of its own at once,
while thousands of instant steps are batched into as many writes as the
disk allows — instead of one full rewrite per resource, which is
quadratic. Records unchanged since the last write keep their
:class:`ResourceState` (and timestamps) without being converted again.

The first write that fails ends the writing: :meth:`StateWriter.failed`
turns True at once (the apply starts no new change), later sets are only
kept, and ``flush()`` raises :class:`WriteFailed` carrying the newest set
as a whole state (the caller saves it elsewhere: ``cli.errored``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from modelform.engine.planner import Records
from modelform.state import Backend, ResourceState, State, StateError, modelform_version
from modelform.state.resource import now_iso


class WriteFailed(StateError):
    """A state write failed during the apply; nothing was written after it.

    ``unsaved`` is the newest set of records as a whole state of the same
    lineage, its serial two past the last one known stored (the failed
    write may have stored the next one before failing), so ``state push``
    takes it as the successor of either; ``cause`` is the write's own error.
    """

    def __init__(self, cause: BaseException, unsaved: State) -> None:
        super().__init__(describe(cause))
        self.cause = cause
        self.unsaved = unsaved


def describe(e: BaseException) -> str:
    """One line for a write's error: the state layer's own message, else its type too."""
    return str(e) if isinstance(e, StateError) else f"{type(e).__name__}: {e}"


class StateWriter:
    def __init__(
        self,
        backend: Backend,
        lineage: str,
        prior: State | None,
        on_fail: Callable[[BaseException], None] = lambda e: None,
    ) -> None:
        """``on_fail`` is called (on the writer's thread) once, when a write fails."""
        self.backend = backend
        self.current = prior if prior is not None else State.new(lineage=lineage)
        self.on_fail = on_fail
        #: The outputs every write records: the prior ones until
        #: :meth:`set_outputs` gives those computed after the apply.
        self.outputs: dict[str, dict[str, object]] = dict(self.current.outputs)
        self._cache: dict[str, tuple[dict[str, object], ResourceState]] = {}
        if prior is not None:
            for addr, rs in prior.resources.items():
                self._cache[addr] = (rs.to_json(), rs)
        self._pending: Records | None = None
        #: The newest set submitted, written or not.
        self._newest: Records | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._cond = threading.Condition()
        self._busy = False
        self._thread = threading.Thread(target=self._loop, name="state-writer", daemon=True)
        self._thread.start()

    def submit(self, records: Records) -> None:
        with self._cond:
            self._newest = records
            if self._error is None:
                self._pending = records
                self._cond.notify_all()

    def set_outputs(self, outputs: dict[str, dict[str, object]]) -> None:
        """Record ``outputs`` from now on, writing the newest records again with them."""
        with self._cond:
            self.outputs = dict(outputs)
            if self._newest is not None and self._error is None:
                self._pending = self._newest
                self._cond.notify_all()

    def failed(self) -> bool:
        """True once a write has failed: the apply must start no new change."""
        return self._error is not None

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
                self.current = self.backend.write(self._state_of(records))
            except Exception as e:  # surfaced by flush(), with the state not saved
                with self._cond:
                    self._error, self._pending = e, None
                self._report(e)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _report(self, e: BaseException) -> None:
        try:
            self.on_fail(e)
        except Exception:  # a broken progress line must not stop the writer
            pass

    def _state_of(self, records: Records) -> State:
        """``records`` as a state of the current lineage and serial (the cache kept)."""
        now = now_iso()
        new = State(self.current.lineage, self.current.serial, {},
                    self.current.modelform_version, dict(self.outputs))  # fmt: skip
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
        return new

    def flush(self) -> State:
        """Wait for every submitted set to be written and return the stored state.

        After a failed write, raise :class:`WriteFailed` with the newest set
        as the state to save elsewhere.
        """
        with self._cond:
            while self._pending is not None or self._busy:
                self._cond.wait()
            self._closed = True
            self._cond.notify_all()
        self._thread.join()
        if self._error is None:
            return self.current
        unsaved = self._state_of(self._newest) if self._newest is not None else self.current
        # The failed write may have stored its version (serial + 1) all the same:
        # S3 stored the state and then failed to copy it to the history, or the
        # reply was lost. One past that is newer than whatever is stored now.
        unsaved.serial = self.current.serial + 2
        unsaved.modelform_version = modelform_version()
        raise WriteFailed(self._error, unsaved) from self._error
