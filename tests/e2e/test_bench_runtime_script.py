"""``bench/runtime/run.sh`` runs in the project's virtualenv, not the first ``python3`` on PATH."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.e2e.helpers import REPO

SYSTEM_PYTHON = "#!/bin/sh\necho 'the python3 first on PATH ran' >&2\nexit 97\n"


def test_run_sh_uses_the_project_venv_from_any_folder(tmp_path: Path) -> None:
    """A fresh clone's PATH has a system python3 without uvicorn or scikit-learn:
    the script must neither run it nor pip-install into it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(SYSTEM_PYTHON)
    (bin_dir / "python3").chmod(0o755)
    r = subprocess.run(
        [str(REPO / "bench" / "runtime" / "run.sh"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "MODELFORM_VENV": sys.prefix},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("usage: bench.py"), r.stdout
    assert "first on PATH ran" not in r.stderr
