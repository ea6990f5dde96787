"""Every malformed project file through ``modelform validate`` and ``modelform
plan``: exit 1 with one line naming file:line:col, never a traceback (the cases
and their expectations: tests/engine/malformed/).

All 64 cases run through the CLI's commands in this process (typer's runner):
a fresh interpreter costs half a second of imports, a minute for all of them.
One case of each kind of place an error can be found (project file, command
line, variables file, environment, no place) also runs through the real
command, the installed ``modelform`` executable, so what a user sees (exit
code, stderr, no traceback) is checked on the entry point they run."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelform.cli.app import app
from tests.e2e.helpers import modelform_command
from tests.engine.test_loader import CASES, read_expected

#: One case per place an error can be, and the YAML failures a file can hold.
REAL_COMMAND_CASES = [
    "01-yaml-syntax-error",  # the project file's YAML
    "09-unknown-service-key",  # the schema
    "23-var-without-equals",  # -var on the command line
    "25-var-file-bad-yaml",  # a -var-file
    "52-not-utf8",  # bytes that are not text
    "54-env-var-not-a-bool",  # the environment (MODELFORM_VAR_...): no place
    "64-billion-laughs",  # aliases that would never finish expanding
]


def _args(exp: dict[str, list[str]], command: str) -> list[str]:
    args = [command]
    for v in exp.get("var", []):
        args += ["-var", v]
    for f in exp.get("var-file", []):
        args += ["-var-file", f]
    return args


def _check(exp: dict[str, list[str]], code: int, stderr: str) -> None:
    assert code == 1, stderr
    assert "Traceback" not in stderr, stderr
    first = stderr.splitlines()[0]
    assert exp["message"][0] in first, first
    if exp["at"][0] != "none":
        fname = exp.get("file", ["modelform.yaml"])[0]
        line, col = exp["at"][0].split(":")
        where = re.escape(fname) + rf":{line}:{col}: error: "
        assert re.search(where, first), first


@pytest.mark.parametrize("command", ["validate", "plan"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_file_exits_1_with_one_line(
    case: Path, command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = read_expected(case)
    monkeypatch.chdir(case)
    env = dict(e.split("=", 1) for e in exp.get("env", []))
    result = CliRunner().invoke(app, _args(exp, command), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    _check(exp, result.exit_code, result.stderr)


def test_the_real_command_cases_exist() -> None:
    assert len(set(REAL_COMMAND_CASES)) == 7
    assert set(REAL_COMMAND_CASES) <= {c.name for c in CASES}


@pytest.mark.parametrize("command", ["validate", "plan"])
@pytest.mark.parametrize("name", REAL_COMMAND_CASES)
def test_malformed_file_through_the_real_command(name: str, command: str) -> None:
    case = next(c for c in CASES if c.name == name)
    exp = read_expected(case)
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    env.update(e.split("=", 1) for e in exp.get("env", []))
    # A bound, not a wait: a file that made the command hang (as the YAML
    # "billion laughs" once did) fails here instead of holding up the suite.
    p = subprocess.run(
        [*modelform_command(), *_args(exp, command)], cwd=case, env=env,
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    _check(exp, p.returncode, p.stderr)
