"""modelform's state: the versioned JSON record of what was made, its backends and lock.

The bottom layer: it imports nothing else of modelform. The names most
callers need are re-exported here; ``modelform.state.ops`` holds the
``modelform state …`` operations.
"""

from __future__ import annotations

from modelform.state.backend import (
    Backend,
    HistoryEntry,
    Stored,
    Write,
    locked,
    prepare_exact,
    prepare_write,
)
from modelform.state.backends import available_backends, backend_class, load_backend
from modelform.state.errors import (
    AddressError,
    BackendLoadError,
    LockError,
    NewerStateFormat,
    StateConflict,
    StateError,
)
from modelform.state.local import DEFAULT_PATH, LocalBackend
from modelform.state.lock import LockInfo
from modelform.state.model import FORMAT_VERSION, State, modelform_version
from modelform.state.resource import ResourceState, split_address

__all__ = [
    "DEFAULT_PATH",
    "FORMAT_VERSION",
    "HistoryEntry",
    "AddressError",
    "Backend",
    "BackendLoadError",
    "LocalBackend",
    "LockError",
    "LockInfo",
    "NewerStateFormat",
    "ResourceState",
    "State",
    "StateConflict",
    "StateError",
    "Stored",
    "Write",
    "available_backends",
    "backend_class",
    "load_backend",
    "locked",
    "modelform_version",
    "prepare_exact",
    "prepare_write",
    "split_address",
]
