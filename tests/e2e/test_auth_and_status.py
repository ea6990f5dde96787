"""auth: key reaches the runtime; status, logs and state show reflect the service."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.helpers import our_processes
from tests.e2e.test_failures import GOOD, project

pytestmark = pytest.mark.slow


def test_key_auth_status_logs_and_state_show(tmp_path: Path) -> None:
    p = project(tmp_path / "p", {"secure": (GOOD, "auth: key")})
    try:
        r = p.run("apply", "-auto-approve")
        assert r.code == 0, r.text
        attrs = p.resources()["service.secure"]["attributes"]
        key = attrs["key"]
        assert isinstance(key, str) and len(key) >= 32
        assert key not in r.out  # never printed

        # modelform invoke sends the key; a request without it is refused.
        r = p.run("invoke", "secure", "--data", '{"data": [1, 2, 3]}')
        assert r.code == 0 and json.loads(r.out) == {"sum": 6}, r.text
        req = urllib.request.Request(attrs["url"] + "/score", data=b'{"data": [1]}', method="POST")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 401

        r = p.run("status", "-json")
        rows = json.loads(r.out)["data"]
        assert rows[0]["address"] == "service.secure" and rows[0]["status"] == "Healthy"

        r = p.run("state", "show", "service.secure")
        assert r.code == 0 and key not in r.out and "(sensitive value)" in r.out

        r = p.run("logs", "secure")
        assert r.code == 0 and '"path":"/score"' in r.out.replace(" ", ""), r.out
    finally:
        p.run("destroy", "-auto-approve")
    assert our_processes(p.root) == set()
