"""A container whose scoring script is still in ``init()``, on a real Docker
Engine through the real CLI: a plan leaves it alone (it is coming up, not
broken) unless something else changed, and Ctrl-C while apply waits for it
stops at once, recording the container tainted so the next plan replaces it.

The script's ``init()`` holds until a gate file appears inside the container
(``docker exec touch``) — on every start after the first, or on the first
too with ``HOLD_INIT`` — so the tests wait on the service reporting
Transitioning, never on time.
"""

from __future__ import annotations

import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import Project, free_port
from tests.providers.container.helpers import (  # noqa: F401 - docker_env is a fixture
    docker_env,
    labelled,
    remove_all,
    state_container_ids,
)

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.usefixtures("docker_env")]

PROJECT = "initgate"
GATE = "/tmp/modelform-test-gate"
SCORE = f"""import json, os, time

STARTED = "/tmp/modelform-test-started"

def init():
    again = os.path.exists(STARTED)
    open(STARTED, "w").close()
    if again or os.environ.get("HOLD_INIT"):
        while not os.path.exists("{GATE}"):
            time.sleep(0.05)

def run(raw_data):
    return {{"sum": sum(json.loads(raw_data)["data"])}}
"""


def make(root: Path, port: int, *, cpu: float = 0.5, env: str = "") -> Project:
    (root / "src").mkdir(parents=True, exist_ok=True)
    (root / "src" / "score.py").write_text(SCORE)
    (root / "modelform.yaml").write_text(
        f"project: {PROJECT}\n"
        'environments:\n  plain: {python: "3.11"}\n'
        # Without the interrupt, apply would wait this long for the gate.
        "targets:\n  docker: {kind: container, startup_timeout: 600}\n"
        "services:\n  svc:\n    target: docker\n    environment: plain\n"
        f"    entry_script: src/score.py\n    port: {port}\n    cpu: {cpu}\n{env}"
    )
    return Project(root)


def ready_status(port: int) -> int | None:
    """What the runtime's /ready answers (None: nothing listening yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def until(what: str, done: Any, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def images(docker_client: Any) -> Iterator[None]:
    """The module's tests share one image; it goes when they are done."""
    yield
    for img in docker_client.images.list(name=f"{PROJECT}/svc"):
        docker_client.images.remove(img.id, force=True)


@pytest.mark.usefixtures("images")
def test_a_container_still_in_init_plans_no_change(tmp_path: Path, docker_client: Any) -> None:
    port = free_port()
    p = make(tmp_path / "p", port)
    try:
        r = p.run("apply", "-auto-approve", timeout=600)
        assert r.code == 0, r.text
        (c,) = labelled(docker_client, p.root)

        # Restarted, init() holds: the runtime answers /ready with 503.
        c.restart(timeout=5)
        until("/ready to answer 503", lambda: ready_status(port) == 503)
        r = p.run("status")
        assert r.code == 0 and "Transitioning" in r.out, r.text
        r = p.run("plan", "-detailed-exitcode")
        assert r.code == 0, r.text
        assert "No changes." in r.out, r.out

        # Anything else that changed is still planned while it comes up.
        make(p.root, port, cpu=1.0)
        r = p.run("plan", "-detailed-exitcode")
        assert r.code == 2 and "service.svc will be updated in place" in r.out, r.text
        make(p.root, port)

        # init() finishes: Healthy, still nothing to do, the same container.
        assert c.exec_run(["touch", GATE]).exit_code == 0
        until("/ready to answer 200", lambda: ready_status(port) == 200)
        r = p.run("plan", "-detailed-exitcode")
        assert r.code == 0, r.text
        assert state_container_ids(p) == {c.id}
    finally:
        r = p.run("destroy", "-auto-approve")
        left = labelled(docker_client, p.root)
        remove_all(docker_client, p.root)
    assert r.code == 0, r.text
    assert left == []


@pytest.mark.usefixtures("images")
def test_ctrl_c_while_a_container_starts_records_it_tainted(
    tmp_path: Path, docker_client: Any
) -> None:
    port = free_port()
    p = make(tmp_path / "p", port, env="    env: {HOLD_INIT: '1'}\n")
    try:
        cli = p.popen("apply", "-auto-approve")

        def in_init() -> bool:
            assert cli.poll() is None, cli.communicate()
            return ready_status(port) == 503

        until("the new container to be in init()", in_init, timeout=600)
        (c,) = labelled(docker_client, p.root)
        t0 = time.monotonic()
        cli.send_signal(signal.SIGINT)
        out, err = cli.communicate(timeout=120)
        stopped_in = time.monotonic() - t0
        assert cli.returncode == 130, out + err
        # It stops waiting at once, not after startup_timeout (600 s).
        assert stopped_in < 15, f"{stopped_in:.1f} s\n{out}{err}"
        assert "Traceback" not in out + err
        assert "interrupted while container" in err, err

        rec = p.resources()["service.svc"]
        assert rec["tainted"] is True, rec
        assert rec["attributes"]["container_id"] == c.id
        assert rec["attributes"]["status"] == "Transitioning"
        assert {x.id for x in labelled(docker_client, p.root)} == {c.id}  # none unknown

        r = p.run("plan")
        assert "service.svc must be replaced" in r.out and "tainted" in r.out, r.text
    finally:
        r = p.run("destroy", "-auto-approve")
        left = labelled(docker_client, p.root)
        remove_all(docker_client, p.root)
    assert r.code == 0, r.text
    assert left == []
