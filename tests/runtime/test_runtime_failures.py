"""Every failure answers its status, and the worker serves the next request (real HTTP)."""

from __future__ import annotations

import time

import requests

FLAKY_SCRIPT = """
    import json
    import time


    def init():
        pass


    def run(raw_data):
        request = json.loads(raw_data)
        action = request.get("action")
        if action == "raise":
            raise ValueError("the model refused: " + request.get("why", ""))
        if action == "sleep":
            time.sleep(request["seconds"])
        if action == "spin":
            while True:
                pass
        if action == "swallow":
            try:
                time.sleep(request["seconds"])
            except Exception:
                pass
            return "swallowed"
        if action == "unserialisable":
            return object()
        return {"ok": True}
"""


def test_run_raising_is_500_with_message_and_request_id(start_server):
    server = start_server(FLAKY_SCRIPT)

    failed = server.post({"action": "raise", "why": "bad feature"})

    assert failed.status_code == 500
    body = failed.json()
    assert "ValueError: the model refused: bad feature" in body["message"]
    assert body["request_id"] == failed.headers["x-request-id"]
    assert failed.headers["x-ms-run-function-failed"] == "True"
    assert server.post({"action": "ok"}).json() == {"ok": True}
    # The traceback is in the log, with the request id.
    logged = server.wait_event("run_failed")[0]
    assert logged["request_id"] == body["request_id"]
    assert "Traceback" in logged["traceback"] and "ValueError" in logged["traceback"]

    unserialisable = server.post({"action": "unserialisable"})
    assert unserialisable.status_code == 500
    assert "cannot be serialised as JSON" in unserialisable.json()["message"]
    assert server.post({"action": "ok"}).status_code == 200


def test_body_that_is_not_json_is_400(start_server):
    server = start_server(FLAKY_SCRIPT)
    bad = server.post(data=b"{'single': 'quotes'}", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400
    assert "not valid JSON" in bad.json()["message"]
    not_utf8 = server.post(data=b"\xff\xfe\x00", headers={"Content-Type": "application/json"})
    assert not_utf8.status_code == 400
    assert server.post({"action": "ok"}).status_code == 200


def test_body_over_the_limit_is_413(start_server):
    server = start_server(FLAKY_SCRIPT, "--max-body-bytes", "1000")

    assert server.post(data=b'{"action": "ok"}' + b" " * 900).status_code == 200
    too_big = server.post(data=b"x" * 1001)
    assert too_big.status_code == 413
    assert "1000 bytes" in too_big.json()["message"]

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(20):
            yield b"y" * 100

    chunked = server.post(data=chunks())
    assert chunked.status_code == 413
    # Same connection, next request is fine.
    assert server.post({"action": "ok"}).status_code == 200


def test_run_past_the_timeout_is_504_and_the_worker_recovers(start_server):
    server = start_server(FLAKY_SCRIPT, "--timeout", "0.5")

    slow = server.post({"action": "sleep", "seconds": 30}, timeout=25)  # cut off, not awaited
    assert slow.status_code == 504
    assert "timeout" in slow.json()["message"].lower()
    assert slow.headers["x-ms-run-function-failed"] == "True"
    assert server.post({"action": "ok"}).status_code == 200

    # Pure-Python busy loop and a script that swallows exceptions are cut off too.
    assert server.post({"action": "spin"}).status_code == 504
    assert server.post({"action": "swallow", "seconds": 30}).status_code == 504
    assert server.post({"action": "sleep", "seconds": 0.01}).json() == {"ok": True}
    assert len(server.events("run_timeout")) == 3


def test_init_failure_exits_non_zero_and_never_becomes_ready(start_server):
    server = start_server(
        """
        import time

        def init():
            time.sleep(1.0)
            raise RuntimeError("model file is corrupt")

        def run(data):
            return data
        """,
        wait="listening",
    )
    statuses = set()
    while server.proc.poll() is None:
        try:
            statuses.add(server.get("/ready", timeout=2).status_code)
            statuses.add(server.post({"x": 1}, timeout=2).status_code)
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    assert server.proc.wait(20) == 3
    assert 200 not in statuses
    assert 503 in statuses
    failure = server.events("init_failed")[0]
    assert "RuntimeError: model file is corrupt" in failure["error"]
    assert "Traceback" in failure["traceback"]
    assert server.events("worker_failed")[0]["exit"] == 3
    log = server.log()
    assert "Traceback (most recent call last)" in log  # plain text on stderr too
    assert not server.events("ready")


def test_scripts_that_cannot_be_served_exit_3(start_server):
    for text, fragment in [
        ("def init():\n    pass\n", "does not define a run() function"),
        ("def run(data):\n    return data\n", "does not define an init() function"),
        ("def init():\n    pass\ndef run():\n    return 1\n", "needs to accept an argument"),
        ("import no_such_module_here\n", "ModuleNotFoundError"),
    ]:
        server = start_server(text, wait=None)
        assert server.proc.wait(30) == 3, server.log()
        assert fragment in server.log()


def test_score_before_init_finishes_is_503(start_server):
    server = start_server(
        """
        import time

        def init():
            time.sleep(2.0)

        def run(data):
            return "scored"
        """,
        wait="listening",
    )
    early = server.post({"x": 1})
    assert early.status_code == 503
    assert early.headers["retry-after"] == "1"
    assert server.get("/ready").status_code == 503
    assert server.get("/").text == "Healthy"
    server.wait_event("ready")
    assert server.get("/ready").status_code == 200
    assert server.post({"x": 1}).json() == "scored"


def test_client_leaving_mid_body_does_not_call_run(start_server):
    import socket

    server = start_server(
        """
        calls = 0

        def init():
            pass

        def run(raw_data):
            global calls
            calls += 1
            return {"calls": calls, "size": len(raw_data)}
        """
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n" + b"[" * 5000
        )
        time.sleep(0.2)  # let the server read the first part
    answer = server.post({"x": 1})
    assert answer.json() == {"calls": 1, "size": len('{"x": 1}')}
