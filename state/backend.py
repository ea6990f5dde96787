"""The state backend protocol, and what every backend shares.

A backend stores one state and one lock. Its contract (checked for every
backend by ``tests/state/conformance.py``):

* ``read()`` returns the stored state or None; it never takes the lock
  and never sees a half-written state.
* ``write(state)`` stores ``state`` as the successor of the stored one
  and returns what it stored: the serial grows by one when the content
  changed; identical content writes nothing and returns the stored state.
  A state of another lineage, or with a serial older than the stored
  one, is refused with :class:`StateConflict`. Callers continue from
  the returned state. ``write`` does not take the lock itself: callers
  hold it (:func:`locked`) around read-modify-write.
* ``lock(operation, timeout)`` takes the lock or, after polling up to
  ``timeout`` seconds, raises :class:`LockError` naming the holder. The
  lock of a holder that is provably gone (``LockInfo.is_stale``) is taken
  over at once, and ``lock_note`` says so.
  ``unlock(id)`` / ``force_unlock(id)`` release it only when ``id``
  names the current holder.

A backend implements ``read``, ``write`` (usually via :func:`prepare_write`),
``try_lock``, ``lock_info``, ``unlock`` and ``take_over``; the waiting, the
take-over of a gone holder's lock, the report of a holder that stays and
the context manager live here so every backend behaves alike.
"""

from __future__ import annotations

import random
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

from modelform.state.canonical import encode
from modelform.state.errors import LockError, StateConflict, StateError
from modelform.state.lock import LockInfo
from modelform.state.model import State, content_digest, modelform_version


@dataclass(frozen=True)
class HistoryEntry:
    """One kept version of the state (``modelform state history``)."""

    serial: int
    #: When it was written (UTC, ISO 8601) and by whom (``user@host``).
    written: str
    who: str
    #: How :meth:`Backend.read_version` finds it again.
    ref: str
    #: True for the version that is the state now.
    current: bool = False


class Backend(ABC):
    """Base class of every state backend (registered in ``modelform.backends``)."""

    #: Whether :meth:`lock` takes over the lock of a holder that is provably
    #: gone (the local file). A shared remote state reports it instead, with
    #: the force-unlock hint: host names do not tell machines apart there.
    takes_over_gone_holders: ClassVar[bool] = True

    #: First and longest pause between attempts while waiting for the lock.
    poll_initial: ClassVar[float] = 0.02
    poll_max: ClassVar[float] = 0.25
    #: Set by :meth:`lock`: one line to show the user about how the lock was
    #: got (a gone holder's lock taken over), else None.
    lock_note: str | None = None

    @abstractmethod
    def read(self) -> State | None:
        """The stored state, or None when there is none yet."""

    @abstractmethod
    def write(self, state: State) -> State:
        """Store ``state`` as the successor of the stored one; return what is stored."""

    @abstractmethod
    def try_lock(self, info: LockInfo) -> LockInfo | None:
        """Take the lock as ``info`` in one atomic step: None if taken, else the holder."""

    @abstractmethod
    def lock_info(self) -> LockInfo | None:
        """The current holder of the lock, or None when it is free."""

    @abstractmethod
    def unlock(self, lock_id: str) -> None:
        """Release the lock if ``lock_id`` names the current holder, else LockError."""

    def take_over(self, holder: LockInfo, info: LockInfo) -> bool:
        """Make ``info`` the lock in place of ``holder``, in one atomic step and only
        while ``holder`` still holds it: True if done.

        Called only for a holder that is provably gone; of several callers at
        once, one at most succeeds. This default takes nothing over (False),
        so a backend without such a step reports the gone holder with the
        force-unlock hint instead.
        """
        return False

    def describe(self) -> str:
        """Where this backend keeps the state, for messages."""
        return type(self).__name__

    def check(self) -> None:
        """Make sure the state's place can be used (``modelform init``); StateError if not.

        The default reads the state, which fails as clearly as anything would.
        """
        self.read()

    def push(self, state: State, force: bool = False) -> State:
        """Store ``state`` as it is, its serial included (``state push``, ``init
        -migrate-state``); see :func:`prepare_exact` for what is refused."""
        raise StateError(f"{self.describe()}: this backend cannot store a given state as it is")

    def history(self) -> list[HistoryEntry]:
        """The kept versions of the state, newest first."""
        raise StateError(f"{self.describe()}: this backend keeps no history")

    def read_version(self, ref: str) -> State:
        """The version ``ref`` names (a :class:`HistoryEntry` ref)."""
        raise StateError(f"{self.describe()}: this backend keeps no history")

    def force_unlock(self, lock_id: str) -> None:
        """Release a lock left by another process (``modelform force-unlock ID``).

        Like :meth:`unlock`, only when ``lock_id`` is the current holder's:
        the user must have read the id from the error, so a lock taken
        meanwhile by someone else is never broken.
        """
        self.unlock(lock_id)

    def lock(self, operation: str, timeout: float = 0.0) -> LockInfo:
        """Take the lock for ``operation``, waiting up to ``timeout`` seconds.

        A holder that is provably gone (:meth:`LockInfo.is_stale`) loses its
        lock at once (:meth:`take_over`; :attr:`lock_note` says so). Otherwise
        raises :class:`LockError` naming the holder once ``timeout`` has
        passed; a live holder's lock is never broken.
        """
        self.lock_note = None
        info = LockInfo.new(operation, path=self.describe(), version=modelform_version())
        start = time.monotonic()
        delay = self.poll_initial
        while True:
            holder = self.try_lock(info)
            if holder is None:
                return info
            if holder.is_stale():
                if self.take_over(holder, info):
                    self.lock_note = holder.takeover_note()
                    return info
                holder = self.lock_info() or holder  # another taker may have won
            left = start + max(timeout, 0.0) - time.monotonic()
            if left <= 0:
                waited = time.monotonic() - start
                raise lock_held_error(self.describe(), holder, waited if timeout > 0 else 0.0)
            time.sleep(min(delay * random.uniform(0.5, 1.0), left))
            delay = min(delay * 2, self.poll_max)


def lock_held_error(where: str, holder: LockInfo, waited: float) -> LockError:
    """The error for a lock that stayed held: who, what, since when, and what to do.

    ``waited`` is 0 for a lock call that was not asked to wait.
    """
    stale = holder.is_stale()
    message = f"the state ({where}) is locked by {holder.describe()}"
    if waited > 0:
        message += f"; gave up after waiting {waited:.1f}s"
    if hint := holder.hint():
        message += f"; {hint}"
    return LockError(message, where, holder=holder, stale=stale, waited=waited)


@dataclass(frozen=True)
class Stored:
    """What a write must know of the stored state (a backend may cache it)."""

    lineage: str
    serial: int
    modelform_version: str
    #: :func:`~modelform.state.model.content_digest` of the stored document.
    digest: str

    @classmethod
    def of(cls, state: State) -> Stored:
        return cls(state.lineage, state.serial, state.modelform_version, state.content_digest())


@dataclass(frozen=True)
class Write:
    """A prepared write: what will be stored, and the bytes to store (None: nothing changed)."""

    state: State
    text: bytes | None
    stored: Stored


def prepare_write(stored: Stored | None, state: State, where: str) -> Write:
    """Check ``state`` as the successor of ``stored`` and make the document to store.

    Raises :class:`StateConflict` for another lineage or an older serial.
    Identical content gives ``text=None`` and the stored serial; otherwise
    the serial is one past the larger of the two and the version is ours.
    The returned state is a fresh copy: later changes to ``state`` do not
    reach it, nor the other way round.
    """
    data = state.to_json()
    digest = content_digest(data)
    base = state.serial
    if stored is not None:
        if stored.lineage != state.lineage:
            raise StateConflict(
                f"refusing to write the state ({where}): it holds lineage {stored.lineage}, "
                f"the state being written has lineage {state.lineage} (another project's state?)",
                where,
            )
        if state.serial < stored.serial:
            raise StateConflict(
                f"refusing to write the state ({where}): serial {state.serial} is older than "
                f"the stored serial {stored.serial}; someone wrote it since it was read, "
                "run the command again",
                where,
            )
        if digest == stored.digest:
            data["serial"], data["modelform_version"] = stored.serial, stored.modelform_version
            return Write(State.from_canonical(data), None, stored)
        base = max(base, stored.serial)
    data["serial"], data["modelform_version"] = base + 1, modelform_version()
    text = encode(data)
    new = State.from_canonical(data)
    return Write(new, text, Stored(new.lineage, new.serial, new.modelform_version, digest))


def prepare_exact(stored: Stored | None, state: State, where: str, force: bool) -> Write:
    """Make the document storing ``state`` as it is: its lineage and serial kept.

    Refused (:class:`StateConflict`) unless ``force``: another lineage, a
    serial older than the stored one, or the stored serial with other
    content. Identical content writes nothing. With ``force`` the state is
    stored even so, its serial raised past the stored one when needed, so
    readers never see the serial go back.
    """
    data = state.to_json()
    digest = content_digest(data)
    if stored is not None and digest == stored.digest and state.serial == stored.serial:
        return Write(State.from_canonical(data), None, stored)
    if stored is not None and not force:
        if stored.lineage != state.lineage:
            raise StateConflict(
                f"refusing to store the state ({where}): it holds lineage {stored.lineage}, the "
                f"given state has lineage {state.lineage}; use -force to replace it",
                where,
            )
        if state.serial <= stored.serial:
            raise StateConflict(
                f"refusing to store the state ({where}): its serial {state.serial} is not newer "
                f"than the stored serial {stored.serial}; use -force to replace it",
                where,
            )
    if stored is not None and state.serial <= stored.serial:
        data["serial"] = stored.serial + 1
    new = State.from_canonical(data)
    return Write(new, encode(data), Stored(new.lineage, new.serial, new.modelform_version, digest))


@contextmanager
def locked(backend: Backend, operation: str, timeout: float = 0.0) -> Iterator[LockInfo]:
    """Hold the backend's lock for the ``with`` body; always release it.

    If the body fails and releasing fails too, the body's error is raised
    with a note about the lock, so the first cause is never hidden.
    """
    info = backend.lock(operation, timeout)
    try:
        yield info
    except BaseException as exc:
        try:
            backend.unlock(info.id)
        except StateError as e:
            exc.add_note(f"also, releasing the state lock failed: {e}")
        raise
    backend.unlock(info.id)
