"""Terraform's flags that several commands share: ``-input``, ``-lock``, ``-no-color``.

Scripts written for Terraform pass them (``apply -input=false -no-color``),
so modelform takes them wherever Terraform does. ``-input`` and ``-lock``
take ``true`` or ``false`` after ``=`` or a space; the bare ``-lock`` and
``-input`` (Go's shorthand for ``=true``, the default anyway) are not
accepted, because click has no flag with an optional value.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer


class Switch(StrEnum):
    """The value of ``-input=…`` / ``-lock=…``."""

    true = "true"
    false = "false"


Input = Annotated[
    Switch,
    typer.Option(
        "--input",
        "-input",
        case_sensitive=False,
        help="false: never ask (a change not approved with -auto-approve then fails).",
    ),
]
Lock = Annotated[
    Switch,
    typer.Option(
        "--lock",
        "-lock",
        case_sensitive=False,
        help="false: do not lock the state (another run may change it meanwhile).",
    ),
]
#: For commands that never lock (plan, drift): accepted, and there is nothing to switch off.
LockUnused = Annotated[
    Switch,
    typer.Option(
        "--lock", "-lock", case_sensitive=False, help="Accepted for Terraform; this never locks."
    ),
]
NoColor = Annotated[
    bool, typer.Option("--no-color", "-no-color", help="No colour or other styles in the output.")
]
