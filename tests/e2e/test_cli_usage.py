"""The command line as a new user meets it: usage errors, ``--version``, ``-chdir``.

Every case runs the installed ``modelform`` executable.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.exe import modelform, write_project
from tests.e2e.helpers import REPO, free_port


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["plan", "-detailed-exitcode", "-no-colr"],
            "Error: no such option: -no-colr (did you mean -no-color?) — see modelform plan --help",
        ),
        (
            ["drift", "--jsn"],
            "Error: no such option: --jsn (did you mean --json?) — see modelform drift --help",
        ),
        (
            ["apply", "-parallelism", "many"],
            "Error: invalid value for '--parallelism' / '-parallelism':",
        ),
        (["plan", "-out"], "Error: option '-out' requires an argument — see modelform plan --help"),
        (["state", "rm"], "Error: missing argument"),
        (["plann"], "Error: no such command: plann (did you mean plan?) — see modelform --help"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_1_never_2(
    tmp_path: Path, args: list[str], line: str
) -> None:
    """2 means "changes present" / "drift found" to CI: a typo must not read as drift."""
    r = modelform(*args, cwd=tmp_path)
    assert r.code == 1, r.text
    assert r.out == ""
    assert r.err.count("\n") == 1 and r.err.startswith(line), r.err
    assert r.err.rstrip().endswith("--help"), r.err
    assert "Traceback" not in r.err


def test_no_command_shows_the_help_and_exits_1(tmp_path: Path) -> None:
    r = modelform(cwd=tmp_path)
    assert r.code == 1 and "Usage: modelform" in r.err and "plan" in r.err, r.text


def test_version_flag_and_command(tmp_path: Path) -> None:
    for args in (["--version"], ["-version"], ["version"]):
        r = modelform(*args, cwd=tmp_path)
        assert (r.code, r.out, r.err) == (0, "modelform 0.1.0\n", ""), (args, r.text)


def test_relative_chdir_from_the_repo_root_and_from_elsewhere(tmp_path: Path) -> None:
    """``-chdir`` switches folder first, as Terraform's: the project file, var
    files and the state are then found from there."""
    declared = "variables:\n  greeting: {default: hi}\n"
    project = write_project(tmp_path / "work" / "p", free_port(), extra=declared)
    (project / "vars.yaml").write_text("greeting: hello\n")
    from_root = os.path.relpath(project, REPO)
    for cwd, rel in ((REPO, from_root), (tmp_path, "work/p"), (tmp_path / "work", "p")):
        for spelling in ([f"-chdir={rel}"], ["-chdir", rel], [f"--chdir={rel}"]):
            r = modelform(*spelling, "validate", cwd=cwd)
            assert r.code == 0, (cwd, spelling, r.text)
            assert "The project file is valid (2 resources)." in r.out, r.out
    r = modelform("-chdir=work/p", "validate", "-var-file=vars.yaml", cwd=tmp_path)
    assert r.code == 0, r.text
    r = modelform("-chdir=work/p", "state", "list", cwd=tmp_path)
    assert (r.code, r.out.strip()) == (0, ""), r.text
    assert not (tmp_path / ".modelform").exists()


def test_a_chdir_to_a_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    r = modelform("-chdir=no/such", "validate", cwd=tmp_path)
    assert r.code == 1, r.text
    assert r.err.startswith("Error: invalid value for '-chdir': no/such:"), r.err
    assert r.err.count("\n") == 1
