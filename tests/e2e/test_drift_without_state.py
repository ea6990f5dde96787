"""``drift`` where there is no state: an error naming the path, unless no state is expected."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.exe import modelform, write_project
from tests.e2e.helpers import free_port


def test_drift_without_a_state_file_fails_naming_the_path(tmp_path: Path) -> None:
    """A wrong folder or --state path must not pass in CI as "No drift."."""
    project = write_project(tmp_path / "p", free_port())
    default = project / ".modelform" / "state.json"
    cases = [
        ([], default),
        (["--state", "elsewhere/state.json"], Path("elsewhere/state.json")),
    ]
    for before, path in cases:
        r = modelform(*before, "drift", cwd=project)
        assert r.code == 1, r.text
        assert r.err == (
            f"Error: no state at {path}, so nothing to compare with the real world; if no "
            "state is expected yet (nothing applied), pass -allow-missing-state\n"
        ), r.err
        assert "No drift" not in r.out

        for flag in ("-allow-missing-state", "--allow-missing-state"):
            r = modelform(*before, "drift", flag, cwd=project)
            assert (r.code, r.err) == (0, ""), r.text
            assert r.out == f"No state at {path}: nothing to drift.\n"
        r = modelform(*before, "drift", "-allow-missing-state", "-json", cwd=project)
        assert r.code == 0 and json.loads(r.out) == {
            "type": "data",
            "data": {"drift": False, "count": 0},
        }, r.out
    r = modelform("drift", "-json", cwd=project)
    assert r.code == 1 and json.loads(r.out)["type"] == "error", r.text


def test_drift_with_a_state_is_unchanged_by_the_flag(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", free_port())
    try:
        assert modelform("apply", "-auto-approve", cwd=project).code == 0
        for flags in ([], ["-allow-missing-state"]):
            r = modelform("drift", *flags, cwd=project)
            assert (r.code, r.out.strip()) == (0, "No drift."), r.text
    finally:
        assert modelform("destroy", "-auto-approve", cwd=project).code == 0
