"""Documented exit codes, as ``terraform plan -detailed-exitcode``."""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    #: Success; with --detailed-exitcode and ``drift``: no changes / no drift.
    OK = 0
    #: An error: bad project file, failed apply, lock held, provider failure; also
    #: a usage error (unknown flag, bad value), which click alone would exit 2 for.
    ERROR = 1
    #: With --detailed-exitcode: the plan has changes. ``drift``: drift found.
    CHANGES = 2
    #: Interrupted (Ctrl-C); in-flight steps finished and state was saved.
    INTERRUPTED = 130
