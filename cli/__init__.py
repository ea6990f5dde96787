"""The ``modelform`` command line."""

from __future__ import annotations


def main() -> None:
    from modelform.cli.app import run

    run()
