"""modelform state list|show|rm|mv through the CLI: records change, the
real objects do not (as terraform state rm|mv)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.helpers import our_processes
from tests.e2e.test_crash_and_locks import make_project


def test_state_mv_and_rm_change_only_the_record(tmp_path: Path) -> None:
    p = make_project(tmp_path / "p", services=2)
    p.release()  # init() returns at once: these tests are not about steps in flight
    try:
        assert p.run("apply", "-auto-approve").code == 0
        r = p.run("state", "list", "service")
        assert r.out.split() == ["service.svc-00", "service.svc-01"], r.text
        pid = p.resources()["service.svc-01"]["attributes"]["pid"]

        r = p.run("state", "mv", "service.svc-01", "service.moved")
        assert r.code == 0 and "Moved service.svc-01 to service.moved" in r.out, r.text
        assert "service.moved" in p.resources() and "service.svc-01" not in p.resources()
        shown = json.loads(p.run("state", "show", "service.moved", "-json").out)["data"]
        assert shown["attributes"]["pid"] == pid

        r = p.run("state", "rm", "service.moved")
        assert r.code == 0 and "Removed service.moved" in r.out, r.text
        assert set(p.resources()) == {"environment.plain", "service.svc-00"}
        assert pid in our_processes(p.root)  # forgetting is not destroying

        r = p.run("state", "rm", "service.nope")
        assert r.code == 1 and "Traceback" not in r.text
    finally:
        p.cleanup()
    assert our_processes(p.root) == set()
