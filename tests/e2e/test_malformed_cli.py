"""Every malformed project file through the real command: ``modelform validate``
and ``modelform plan`` exit 1 with one line naming file:line:col, never a
traceback (the cases and their expectations: tests/engine/malformed/)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelform.cli.app import app
from tests.engine.test_loader import CASES, read_expected


@pytest.mark.parametrize("command", ["validate", "plan"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_file_exits_1_with_one_line(
    case: Path, command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = read_expected(case)
    monkeypatch.chdir(case)
    args = [command]
    for v in exp.get("var", []):
        args += ["-var", v]
    for f in exp.get("var-file", []):
        args += ["-var-file", f]
    env = dict(e.split("=", 1) for e in exp.get("env", []))
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    first = result.stderr.splitlines()[0]
    assert "Traceback" not in result.stderr
    assert exp["message"][0] in first, first
    if exp["at"][0] != "none":
        fname = exp.get("file", ["modelform.yaml"])[0]
        line, col = exp["at"][0].split(":")
        where = re.escape(fname) + rf":{line}:{col}: error: "
        assert re.search(where, first), first
