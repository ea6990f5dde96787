"""Holes a new user hit in the foundation, each through the installed
``modelform`` executable on the local target (real processes on 127.0.0.1)."""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import Project, free_port, our_processes

SCORE = """\
import json, os, pathlib, time

def init():
    gate = os.environ.get("GATE")
    while gate and not pathlib.Path(gate).exists():
        time.sleep(0.05)

def run(raw):
    return json.loads(raw)["data"]
"""

SECRET = "s3cret-Value-42"


def project(tmp_path: Path, services: str, head: str = "") -> Project:
    (tmp_path / "src").mkdir(parents=True, exist_ok=True)
    (tmp_path / "src" / "score.py").write_text(SCORE)
    (tmp_path / "model.bin").write_bytes(b"weights")
    (tmp_path / "modelform.yaml").write_text(
        f"project: holes\n{head}models:\n  m: {{path: model.bin}}\nservices:\n{services}"
    )
    return Project(tmp_path)


def service(name: str, port: int, extra: str = "") -> str:
    return f"  {name}:\n    models: [m]\n    entry_script: src/score.py\n    port: {port}\n{extra}"


@pytest.fixture
def cleanup() -> list[Project]:
    made: list[Project] = []
    yield made
    for p in made:
        p.cleanup()


def test_a_failed_test_request_taints_and_is_never_healthy(
    tmp_path: Path, cleanup: list[Project]
) -> None:
    test = "    test: {request: {data: [1]}, expect_status: 201}\n"
    p = project(tmp_path, service("api", free_port(), test))
    cleanup.append(p)
    r = p.run("apply", "-auto-approve")
    assert r.code == 1, r.text
    assert "test request: expected status 201, got 200" in r.err
    assert "Apply incomplete" in r.out
    rec = {x["address"]: x for x in p.state()["resources"]}["service.api"]
    assert rec["tainted"] is True and rec["status"] != "Healthy"
    r = p.run("status")
    assert "Unhealthy (tainted)" in r.out, r.out
    r = p.run("plan", "-detailed-exitcode")
    assert r.code == 2 and "service.api must be replaced" in r.out, r.text
    assert "tainted: its check failed" in r.out


def test_a_sensitive_variable_flowing_into_env_is_masked_everywhere(
    tmp_path: Path, cleanup: list[Project]
) -> None:
    head = f'variables:\n  token: {{default: "{SECRET}", sensitive: true}}\n'
    env = '    env: {API_TOKEN: "${var.token}", LABEL: "t-${var.token}-x"}\n'
    p = project(tmp_path, service("api", free_port(), env), head)
    cleanup.append(p)
    texts = []
    for args in (("plan",), ("plan", "-json"), ("apply", "-auto-approve"), ("status",),
                 ("status", "-json"), ("state", "show", "service.api"), ("drift",)):  # fmt: skip
        r = p.run(*args)
        assert r.code == 0, (args, r.text)
        texts.append(r.text)
    assert all(SECRET not in t for t in texts)
    assert "(sensitive value)" in texts[0] and "(sensitive value)" in texts[1]
    # The value reaches the process all the same.
    state = p.state_file.read_text()
    assert SECRET in state and oct(p.state_file.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(
    ("yaml_extra", "where", "message"),
    [
        ("    replicas: 5\n", "9:5", 'target kind local cannot honour "replicas"'),
        ("    autoscale: {min: 1, max: 3}\n", "9:5", 'cannot honour "autoscale"'),
        ("    env: {U: \"${models.m.no_such_attribute}\"}\n", "9:15",
         "models.m has no attribute 'no_such_attribute'"),
    ],
)  # fmt: skip
def test_validate_reports_what_the_target_cannot_honour(
    tmp_path: Path, yaml_extra: str, where: str, message: str
) -> None:
    p = project(tmp_path, service("api", 9000, yaml_extra))
    r = p.run("validate")
    assert r.code == 1, r.text
    assert "Traceback" not in r.text
    first = r.err.strip().splitlines()[0]
    assert first.startswith(f"{p.root / 'modelform.yaml'}:{where}: error: "), first
    assert message in first


def test_a_missing_attribute_names_the_ones_that_exist(tmp_path: Path) -> None:
    p = project(tmp_path, service("api", 9000, '    env: {U: "${models.m.verison}"}\n'))
    r = p.run("validate")
    assert r.code == 1
    assert 'did you mean "version"?' in r.err and "its attributes: " in r.err
    assert "uri" in r.err  # the model store's URI is one of them


def test_a_local_service_without_a_port_is_a_diagnostic(tmp_path: Path) -> None:
    p = project(tmp_path, "  api:\n    entry_script: src/score.py\n")
    for cmd in ("validate", "plan"):
        r = p.run(cmd)
        assert r.code == 1, r.text
        assert "KeyError" not in r.text and "Traceback" not in r.text
        assert r.err.strip() == (
            f"{p.root / 'modelform.yaml'}:5:3: error: services.api: missing required key "
            '"port" (target kind local needs it)'
        )


def test_an_unknown_target_kind_points_at_its_line_and_hides_core(tmp_path: Path) -> None:
    head = "targets:\n  prod: {kind: kubernets}\n"
    p = project(tmp_path, service("api", 9000, "    target: prod\n"), head)
    r = p.run("validate")
    assert r.code == 1
    line = r.err.strip()
    assert line.startswith(f"{p.root / 'modelform.yaml'}:3:16: error: targets.prod.kind: ")
    assert 'unknown target kind "kubernets"' in line and "core" not in line
    assert "installed kinds: container" in line and "local" in line


def test_a_fresh_clone_with_the_state_but_not_the_store_plans_no_change(
    tmp_path: Path, cleanup: list[Project]
) -> None:
    first = project(tmp_path / "a", service("api", free_port()))
    cleanup.append(first)
    assert first.run("apply", "-auto-approve").code == 0
    # The clone: the project and its state file, not the local model store.
    clone = tmp_path / "clone"
    shutil.copytree(first.root, clone, ignore=shutil.ignore_patterns(".modelform"))
    (clone / ".modelform").mkdir()
    shutil.copy(first.state_file, clone / ".modelform" / "state.json")
    p = Project(clone)
    r = p.run("plan", "-detailed-exitcode")
    assert r.code == 0, r.text
    assert "No changes." in r.out
    record = {x["address"]: x for x in p.state()["resources"]}["model.m"]
    assert record["attributes"]["uri"] == "local:m/1"
    assert not (clone / ".modelform" / "models").exists()


def test_ctrl_c_during_a_readiness_wait_stops_at_once_and_records_what_exists(
    tmp_path: Path, cleanup: list[Project]
) -> None:
    gate = tmp_path / "gate"  # init() waits for it: the service never becomes ready
    p = project(tmp_path / "p", service("api", free_port(), f'    env: {{GATE: "{gate}"}}\n'))
    cleanup.append(p)
    proc = p.popen("apply", "-auto-approve")
    assert proc.stdout is not None
    for line in proc.stdout:
        if "waiting for" in line and "/ready" in line:
            break
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    waited = time.monotonic() - t0
    assert proc.returncode == 130, out + err
    assert waited < 20, f"Ctrl-C took {waited:.1f} s (the readiness wait is 120 s)"
    assert "interrupted" in (out + err)
    rec = {x["address"]: x for x in p.state()["resources"]}["service.api"]
    assert rec["tainted"] is True
    assert our_processes(p.root) == {rec["attributes"]["pid"]}
    gate.write_text("go")
    r = p.run("plan", "-detailed-exitcode")
    assert r.code == 2 and "service.api must be replaced" in r.out, r.text
    assert "tainted" in r.out
    assert json.loads(p.run("state", "list", "-json").out)  # the state still parses


def test_a_port_another_process_listens_on_is_refused_not_shared(tmp_path: Path) -> None:
    """The runtime binds with SO_REUSEPORT: without a check, a second server
    would share the port and another process could answer its readiness probe."""
    import socket

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        p = project(tmp_path, service("api", port))
        r = p.run("apply", "-auto-approve")
        assert r.code == 1, r.text
        assert f"service.api: port {port} on 127.0.0.1 is in use by another process" in r.err
        assert our_processes(p.root) == set()
        assert "service.api" not in {x["address"] for x in p.state()["resources"]}
