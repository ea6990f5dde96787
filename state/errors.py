"""The state layer's errors: every one is a user-facing, one-line message.

The CLI catches :class:`StateError` (and so every subclass) and prints
``str(error)`` on one line with exit code 1; nothing here should ever
reach the user as a traceback. Messages name the file or location they
are about, so the user knows where to look.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelform.state.lock import LockInfo


class StateError(Exception):
    """The state cannot be read, written or changed as asked.

    ``path`` is the file or location concerned, when there is one.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class NewerStateFormat(StateError):
    """The state was written in a newer format than this modelform reads: upgrade."""


class StateConflict(StateError):
    """A write refused: another lineage, or a serial older than the stored one.

    Both mean the caller's state is not a successor of the stored state:
    a different project's state, or someone wrote since it was read.
    """


class LockError(StateError):
    """The lock could not be taken or released.

    ``holder`` is the current lock (who, operation, since when, id) when
    one is held; ``stale`` is True when the holder runs on this host and
    its process is gone; ``waited`` is how long the lock call waited.
    """

    def __init__(
        self,
        message: str,
        path: str | None = None,
        holder: LockInfo | None = None,
        stale: bool = False,
        waited: float = 0.0,
    ) -> None:
        super().__init__(message, path)
        self.holder = holder
        self.stale = stale
        self.waited = waited


class AddressError(StateError):
    """A state operation named an address that is absent, taken or invalid."""


class BackendLoadError(StateError):
    """A state backend plugin is unknown, fails to import, or is not a Backend."""
