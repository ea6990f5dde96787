"""Running the installed ``modelform`` executable, as a user's shell does.

The executable beside this interpreter (``<venv>/bin/modelform``), never
``python -m``: what its console-script entry point does (exit codes, how a
usage error is shown) is part of what these tests check.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.e2e.helpers import Result

MODELFORM = Path(sys.executable).with_name("modelform")

SCORE = """
import json

def init():
    pass

def run(raw_data):
    return {"sum": sum(json.loads(raw_data)["data"])}
"""


def env(**extra: str) -> dict[str, str]:
    """The test's environment for a command: wide lines, no colour, plus ``extra``."""
    return {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **extra}


def modelform(*args: str, cwd: Path, timeout: float = 180, **extra_env: str) -> Result:
    p = subprocess.run(
        [str(MODELFORM), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=env(**extra_env),
    )
    return Result(p.returncode, p.stdout, p.stderr)


def write_project(root: Path, port: int, extra: str = "") -> Path:
    """A project of one local service (no model to train); its folder."""
    (root / "src").mkdir(parents=True)
    (root / "src" / "score.py").write_text(SCORE)
    (root / "modelform.yaml").write_text(
        "project: usage\n"
        "environments:\n"
        "  plain: {}\n"
        "services:\n"
        "  api:\n"
        "    environment: plain\n"
        "    entry_script: src/score.py\n"
        f"    port: {port}\n" + extra
    )
    return root
