"""Key authentication and the Prometheus endpoint (real HTTP)."""

from __future__ import annotations

import re

ENV_PEEK_SCRIPT = """
    import os

    def init():
        pass

    def run(data):
        return sorted(name for name in os.environ if name.startswith("MODELFORM_AUTH"))
"""


def test_key_auth(start_server):
    server = start_server(
        ENV_PEEK_SCRIPT,
        env={"MODELFORM_AUTH_KEY": "primary-secret", "MODELFORM_AUTH_KEY_SECONDARY": "second"},
    )

    missing = server.post({"x": 1})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "request_id" in missing.json()
    assert server.post({"x": 1}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert (
        server.post({"x": 1}, headers={"Authorization": "Basic primary-secret"}).status_code == 401
    )
    assert (
        server.post({"x": 1}, headers={"Authorization": "Bearer primary-secre"}).status_code == 401
    )

    good = server.post({"x": 1}, headers={"Authorization": "Bearer primary-secret"})
    assert good.status_code == 200
    # The script does not see the keys.
    assert good.json() == []
    assert server.post({"x": 1}, headers={"Authorization": "bearer second"}).status_code == 200
    # Behind a proxy that keeps Authorization for itself, the key has its own header;
    # Authorization, when there is one, is what counts.
    assert server.post({"x": 1}, headers={"X-Modelform-Key": "second"}).status_code == 200
    assert server.post({"x": 1}, headers={"X-Modelform-Key": "wrong"}).status_code == 401
    both = {"Authorization": "Bearer wrong", "X-Modelform-Key": "primary-secret"}
    assert server.post({"x": 1}, headers=both).status_code == 401
    # Probes stay open for orchestrators.
    assert server.get("/").status_code == 200
    assert server.get("/ready").status_code == 200
    # The key is not on the command line.
    cmdline = open(f"/proc/{server.proc.pid}/cmdline", "rb").read()
    assert b"primary-secret" not in cmdline


def _metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = (
        "^" + re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)$"
    )
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"{name} {labels} not in:\n{text}"
    return float(match.group(1))


def test_metrics_count_requests_of_every_worker(start_server):
    server = start_server(
        """
        import json

        def init():
            pass

        def run(raw_data):
            if json.loads(raw_data).get("fail"):
                raise RuntimeError("no")
            return 1
        """,
        workers=2,
    )
    for _ in range(20):  # new connections, spread over both workers
        assert requests_post(server.url(), {"a": 1}) == 200
    assert requests_post(server.url(), {"fail": True}) == 500

    text = server.get("/metrics").text
    assert "# TYPE modelform_requests_total counter" in text
    assert "# TYPE modelform_request_duration_seconds histogram" in text
    assert _metric(text, "modelform_requests_total", route="/score", status="200") == 20
    assert _metric(text, "modelform_requests_total", route="/score", status="500") == 1
    assert _metric(text, "modelform_request_duration_seconds_count", route="/score") == 21
    assert (
        _metric(text, "modelform_request_duration_seconds_bucket", route="/score", le="+Inf") == 21
    )
    assert _metric(text, "modelform_request_duration_seconds_sum", route="/score") > 0
    assert _metric(text, "modelform_workers") == 2
    assert _metric(text, "modelform_workers_ready") == 2
    # Both workers answered some of them (the counts are summed over workers).
    # (request lines are written in batches, a little later)
    requests_logged = server.wait_event("request", count=21)
    served_by = {event["pid"] for event in requests_logged if event["path"] == "/score"}
    assert len(served_by) == 2


def requests_post(url: str, payload: object) -> int:
    import requests

    with requests.Session() as session:
        return session.post(url, json=payload, timeout=30).status_code
