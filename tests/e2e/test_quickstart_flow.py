"""The foundation's acceptance path, through the real CLI and real processes:
apply → invoke → no-op plan → retrain → update → kill -9 → drift → heal → destroy."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.helpers import copy_quickstart, free_port, our_processes

pytestmark = pytest.mark.slow


def test_quickstart_lifecycle(tmp_path: Path) -> None:
    p = copy_quickstart(tmp_path / "quickstart")
    port = str(free_port())
    var = ("-var", f"port={port}")
    try:
        r = p.run("apply", "-auto-approve", *var)
        assert r.code == 0, r.text
        assert "Apply complete!" in r.out

        r = p.run("invoke", "diabetes-dev", "--data", "@request.json")
        assert r.code == 0, r.text
        predictions = json.loads(r.out)
        assert len(predictions) == 2 and all(isinstance(x, float) for x in predictions)

        r = p.run("plan", "-detailed-exitcode", *var)
        assert r.code == 0, r.text
        assert "No changes." in r.out

        # Retrain: new content → ridge:2, the service updated in place to serve it.
        subprocess.run([sys.executable, "train.py", "--alpha", "0.05"], cwd=p.root, check=True)
        r = p.run("plan", "-detailed-exitcode", *var)
        assert r.code == 2, r.text
        assert "service.diabetes-dev will be updated in place" in r.out
        assert "model ridge: ridge:1 → ridge:2" in r.out
        assert "0 to add" in r.out and "0 to destroy" in r.out

        r = p.run("apply", "-auto-approve", *var)
        assert r.code == 0, r.text
        svc = p.resources()["service.diabetes-dev"]["attributes"]
        assert svc["models"] == {"ridge": "ridge:2"}
        r2 = p.run("invoke", "diabetes-dev", "--data", "@request.json")
        assert r2.code == 0 and json.loads(r2.out) != predictions, r2.text

        # kill -9 of the service: drift exits 2, the next apply heals it.
        os.kill(svc["pid"], signal.SIGKILL)
        r = p.run("drift")
        assert r.code == 2, r.text
        assert "service.diabetes-dev has been deleted" in r.out
        serial = p.state()["serial"]
        assert p.run("drift").code == 2
        assert p.state()["serial"] == serial  # drift never writes state

        r = p.run("apply", "-auto-approve", *var)
        assert r.code == 0, r.text
        assert p.run("drift").code == 0
        assert p.run("invoke", "diabetes-dev", "--data", "@request.json").code == 0
    finally:
        r = p.run("destroy", "-auto-approve", *var)
    assert r.code == 0, r.text
    assert "Destroy complete! Resources: 3 destroyed." in r.out  # Terraform's words
    assert our_processes(p.root) == set()
    assert p.resources() == {}
