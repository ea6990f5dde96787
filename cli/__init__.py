"""The ``modelform`` command line."""

from __future__ import annotations


def main() -> None:
    """The ``modelform`` executable; exits with the command's code (a usage error: 1)."""
    from modelform.cli.app import run

    raise SystemExit(run())
