"""Several workers share the port; they are respawned, and stop without orphans."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import requests
from runtime_harness import group_alive, group_members

PID_SCRIPT = """
    import json, os, time

    def init():
        global booted
        booted = time.time()

    def run(raw_data):
        request = json.loads(raw_data)
        time.sleep(request.get("sleep", 0))
        return {"pid": os.getpid(), "booted": booted}
"""


def _fresh_post(server, payload, timeout=30):
    with requests.Session() as session:
        return session.post(server.url(), json=payload, timeout=timeout)


def _wait_gone(pgid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return True
        time.sleep(0.05)
    return False


def test_workers_share_the_port_and_each_runs_init(start_server):
    server = start_server(PID_SCRIPT, workers=3)
    workers = server.worker_pids()
    assert len(workers) == 3
    assert len(server.events("worker_ready")) == 3  # init() once per worker
    # New connections are spread over the workers (SO_REUSEPORT hashes them:
    # 40 connections all on one of 3 workers has odds of 3 / 3**40).
    seen = {_fresh_post(server, {}).json()["pid"] for _ in range(40)}
    assert len(seen) >= 2
    assert seen <= workers
    assert server.events("listening")[0]["reuse_port"] is True


def test_a_dead_worker_is_respawned(start_server):
    server = start_server(PID_SCRIPT, workers=2)
    victim = sorted(server.worker_pids())[0]
    os.kill(victim, signal.SIGKILL)

    died = server.wait_event("worker_died")[0]
    assert died["worker_pid"] == victim
    server.wait_event("worker_ready", count=3)  # the replacement ran init() too
    replacement = server.worker_pids() - {victim}
    assert len(replacement) == 2
    seen = {_fresh_post(server, {}).json()["pid"] for _ in range(30)}
    assert victim not in seen
    assert "modelform_worker_restarts_total 1" in server.get("/metrics").text
    assert server.proc.poll() is None


def test_sigterm_stops_everything_and_finishes_requests_in_flight(start_server):
    server = start_server(PID_SCRIPT, workers=2)
    pgid = server.proc.pid
    result: dict[str, object] = {}

    def slow() -> None:
        result["response"] = _fresh_post(server, {"sleep": 1.0})

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.3)  # the request is inside run()
    server.proc.send_signal(signal.SIGTERM)
    thread.join(30)
    assert server.proc.wait(30) == 0
    response = result["response"]
    assert isinstance(response, requests.Response) and response.status_code == 200
    assert _wait_gone(pgid), f"a worker outlived the master: {group_members(pgid)}"
    assert server.events("stopped")[0]["exit_code"] == 0


def test_workers_die_with_a_killed_master(start_server):
    server = start_server(PID_SCRIPT, workers=2)
    pgid = server.proc.pid
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    assert _wait_gone(pgid), f"workers survived their master: {group_members(pgid)}"


def test_second_server_on_a_used_port_fails_in_one_line(start_server):
    # Both with SO_REUSEPORT sockets: the second must still be refused the port.
    first = start_server(PID_SCRIPT, workers=2)
    second = start_server(PID_SCRIPT, "--port", str(first.port), workers=2, wait=None)
    assert second.proc.wait(30) == 1
    lines = [line for line in second.log().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and f"127.0.0.1:{first.port}" in lines[0]
    assert "Traceback" not in second.log()


def test_sigterm_during_a_long_init_stops_promptly(start_server):
    server = start_server(
        """
        import time

        def init():
            time.sleep(60)

        def run(data):
            return data
        """,
        workers=2,
        wait="listening",
    )
    server.wait_event("script_loaded", count=2)
    assert server.get("/ready").status_code == 503
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) == 0
    assert _wait_gone(server.proc.pid), f"left behind: {group_members(server.proc.pid)}"
    assert not server.events("init_failed")


@pytest.mark.slow
def test_a_worker_stuck_beyond_the_timers_reach_is_killed_and_replaced(start_server):
    # Blocking SIGALRM stands for C code that never returns to Python: the timer
    # cannot interrupt it, so the master's watchdog (2 x timeout + 5 s) must.
    server = start_server(
        """
        import json, os, signal, time

        def init():
            pass

        def run(raw_data):
            if json.loads(raw_data).get("stuck"):
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
                time.sleep(120)
            return os.getpid()
        """,
        "--timeout",
        "0.5",
    )
    first_pid = _fresh_post(server, {}).json()
    try:
        stuck = _fresh_post(server, {"stuck": True}, timeout=60)
        outcome = stuck.status_code
    except requests.ConnectionError:
        outcome = "dropped"
    assert outcome == "dropped"
    assert server.wait_event("worker_stuck")[0]["worker_pid"] == first_pid
    server.wait_event("worker_ready", count=2)
    assert _fresh_post(server, {}).json() != first_pid
