"""The ``modelform`` command line."""

from __future__ import annotations


def main() -> None:
    """The ``modelform`` executable; exits with the command's code (a usage error: 1)."""
    import gc

    # A command builds large, long-lived data that holds no cycles (a project
    # of 10,000 services is millions of objects); with the default thresholds
    # the cycle collector walks it again and again: a third of a no-op plan's
    # time. Collect less often (mypy's thresholds), and never walk what the
    # imports made.
    gc.set_threshold(200_000, 30, 30)
    from modelform.cli.app import run

    gc.freeze()
    raise SystemExit(run())
