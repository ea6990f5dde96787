"""Failures end an apply with the relevant lines, never a traceback, and skip
only what depends on the failed resource."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.helpers import Project, free_port, our_processes

pytestmark = pytest.mark.slow

GOOD = (
    "import json\ndef init():\n    pass\n"
    "def run(raw):\n    return {'sum': sum(json.loads(raw)['data'])}\n"
)
BAD_INIT = (
    "def init():\n    raise RuntimeError('model file is corrupt')\ndef run(raw):\n    return 1\n"
)


def project(root: Path, services: dict[str, tuple[str, str]]) -> Project:
    lines = ["project: failing", "services:"]
    for name, (script, extra) in services.items():
        (root / name).mkdir(parents=True)
        (root / name / "score.py").write_text(script)
        lines += [f"  {name}:", f"    entry_script: {name}/score.py", f"    port: {free_port()}"]
        lines += [f"    {line}" for line in extra.splitlines()]
    (root / "modelform.yaml").write_text("\n".join(lines) + "\n")
    return Project(root)


def test_failing_init_and_failing_test_request(tmp_path: Path) -> None:
    p = project(
        tmp_path / "p",
        {
            "good": (GOOD, "test: {request: {data: [1, 2]}, expect: {sum: 3}}"),
            "broken": (BAD_INIT, ""),
            "wrong": (GOOD, "test: {request: {data: [1, 2]}, expect: {sum: 4}}"),
        },
    )
    try:
        r = p.run("apply", "-auto-approve")
        assert r.code == 1, r.text
        assert "Traceback (most recent call last)" not in r.out
        # init() failing: the server's own log lines are shown, including the error.
        assert "service.broken: the scoring server exited before it was ready" in r.err
        assert "model file is corrupt" in r.err
        # The test block: the response is shown.
        assert "service.wrong: check failed: test request: output differs from expect" in r.err
        assert '"sum":3' in r.err.replace(" ", "")
        res = p.resources()
        assert "service.broken" not in res
        assert res["service.good"]["status"] == "Healthy"
        # The service whose test failed runs, but is tainted and not Healthy.
        assert res["service.wrong"]["tainted"] is True
        assert res["service.wrong"]["status"] == "Unhealthy"
        assert "Apply incomplete." in r.out
    finally:
        p.run("destroy", "-auto-approve")
    assert our_processes(p.root) == set()
