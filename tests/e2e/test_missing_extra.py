"""A target whose client library is an extra, used without that extra installed."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.e2e.exe import modelform
from tests.e2e.helpers import REPO

NO_DOCKER = 'raise ModuleNotFoundError("No module named \'docker\'", name="docker")\n'
LINE = "error: target kind container needs the Docker SDK: pip install 'modelform[container]'\n"


def test_a_container_target_without_the_docker_sdk_is_one_line(tmp_path: Path) -> None:
    """As modelform installed without ``[container]``: ``import docker`` fails."""
    fake = tmp_path / "site" / "docker"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(NO_DOCKER)
    project = tmp_path / "p"
    shutil.copytree(REPO / "examples" / "container", project)
    (project / "models").mkdir()
    (project / "models" / "ridge.pkl").write_bytes(b"not trained: never read by plan")
    site = str(tmp_path / "site")
    for cmd in (["plan"], ["apply", "-auto-approve"], ["drift", "-allow-missing-state"]):
        r = modelform(*cmd, cwd=project, PYTHONPATH=site)
        if cmd[0] == "drift":  # no state: nothing to ask the Docker Engine
            assert r.code == 0, r.text
            continue
        assert r.code == 1, (cmd, r.text)
        assert r.err == LINE, (cmd, r.err)
        assert "Traceback" not in r.text
    assert modelform("validate", cwd=project, PYTHONPATH=site).code == 0
