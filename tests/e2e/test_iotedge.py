"""The iotedge target end to end, through the real ``modelform`` command, on
the real Docker Engine and the local edge runtime (the edge hub process, the
modules as containers on azure-iot-device): examples/iotedge's sensor →
model → ``$upstream``, 1,000 messages with failures and a ``kill -9`` of the
model module, drift of a stopped module healed, a twin change without a
restart, a new model version changing one module, diagnostics at validate,
the packaged manifest, ``run_as: process``, and destroy leaving nothing.

Each test gives its device a loopback address of its own (``hub_address``),
so the hubs (all on port 8883, the SDK's) never meet each other or the
runtime tests' hub on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from modelform.providers import iotedge_manifest as im
from tests.e2e.helpers import REPO, Project, complete_lines, our_processes, wait_until

EXAMPLE = REPO / "examples" / "iotedge"
ROW = [0.0381, 0.0507, 0.0617, 0.0219, -0.0442, -0.0348, -0.0434, -0.0026, 0.0199, -0.0176]


def _example(dst: Path, address: str, env: dict[str, str], sensor: dict[str, str]) -> Project:
    shutil.copytree(EXAMPLE, dst, ignore=shutil.ignore_patterns(".modelform", "__pycache__"))
    subprocess.run([sys.executable, "train.py"], cwd=dst, check=True, capture_output=True)
    text = (dst / "modelform.yaml").read_text()
    text = text.replace("    device: line-7\n", f"    device: line-7\n    hub_address: {address}\n")
    given = ", ".join(f"{k}: {json.dumps(v)}" for k, v in sensor.items())
    text = text.replace('env: {COUNT: "20", INTERVAL: "0.1"}', f"env: {{{given}}}")
    (dst / "modelform.yaml").write_text(text)
    return Project(dst, env)


def _upstream(p: Project) -> list[dict[str, Any]]:
    path = p.root / ".modelform" / "iotedge" / "edge" / "hub" / "upstream.jsonl"
    return [json.loads(line) for line in complete_lines(path) if line.strip()]


def _module(client: Any, p: Project, name: str) -> Any:
    (c,) = client.containers.list(
        all=True,
        filters={"label": [f"modelform.project_dir={p.root.resolve()}",
                           f"modelform.edge_module={name}"]},
    )  # fmt: skip
    return c


def _steps(out: str, text: str) -> list[str]:
    """The deployment's progress lines of an apply that contain ``text``."""
    lines = out.splitlines()
    return [ln for ln in lines if ln.startswith("target.edge/deployment:") and text in ln]


def _process_mode(yaml: Path) -> None:
    text = yaml.read_text()
    yaml.write_text(text.replace("    kind: iotedge\n", "    kind: iotedge\n    run_as: process\n"))


def _docker_env(docker_info: dict[str, Any]) -> dict[str, str]:
    return {"DOCKER_HOST": str(docker_info["docker_host"])}


@pytest.mark.docker
@pytest.mark.slow
def test_the_example_end_to_end_drift_twin_and_a_new_model(
    tmp_path: Path, docker_info: dict[str, Any], docker_client: Any
) -> None:
    p = _example(tmp_path / "proj", "127.0.0.21", _docker_env(docker_info),
                 {"COUNT": "20", "INTERVAL": "0.05", "PREFIX": "e"})  # fmt: skip
    label = {"label": f"modelform.project_dir={p.root.resolve()}"}
    try:
        r = p.run("apply", "-auto-approve", timeout=900)
        assert r.code == 0, r.text
        assert "modules connected to the edge hub: diabetes, sensor" in r.out
        got = wait_until(
            "20 predictions upstream", lambda: len(_upstream(p)) >= 20 and _upstream(p), 60
        )
        assert sorted(g["correlation_id"] for g in got) == sorted(f"e-{n}" for n in range(20))
        assert {g["route"] for g in got} == {"modelToUpstream"}
        # invoke: one message through the hub to the module and back upstream
        inv = p.run("invoke", "diabetes", "--data", json.dumps({"data": [ROW]}))
        assert inv.code == 0, inv.text
        assert json.loads(inv.out) == pytest.approx(json.loads(got[0]["body"]))
        assert p.run("plan", "-detailed-exitcode").code == 0
        status = p.run("status")
        assert "Healthy" in status.out and "connected" in status.out, status.text
        # a twin change reaches the running module, without a restart
        before = _module(docker_client, p, "diabetes").id
        yaml = p.root / "modelform.yaml"
        yaml.write_text(yaml.read_text().replace("threshold: 150", "threshold: 175"))
        plan = p.run("plan")
        assert "module diabetes: desired properties changed (threshold)" in plan.out, plan.text
        r = p.run("apply", "-auto-approve")
        assert r.code == 0, r.text
        assert "new manifest loaded" in r.out
        assert _steps(r.out, "module diabetes:") == []  # not restarted
        wait_until("the new threshold in the module's log",
              lambda: "threshold=175" in p.run("logs", "diabetes").out, 30)  # fmt: skip
        assert _module(docker_client, p, "diabetes").id == before
        # docker stop of the model module: drift (exit 2), apply heals it
        _module(docker_client, p, "diabetes").stop(timeout=10)
        st = p.run("status")
        assert "Unhealthy" in st.out and "module stopped" in st.out, st.text
        drift = p.run("drift")
        assert drift.code == 2, drift.text
        assert "module.diabetes has changed" in drift.out, drift.text
        r = p.run("apply", "-auto-approve")
        assert r.code == 0, r.text
        assert "module diabetes: restarted" in r.out, r.text
        assert p.run("plan", "-detailed-exitcode").code == 0
        # a new model version: only the model module's image, with the reason
        subprocess.run([sys.executable, "train.py", "--alpha", "0.9"], cwd=p.root, check=True,
                       capture_output=True)  # fmt: skip
        plan = p.run("plan", "-detailed-exitcode")
        assert plan.code == 2, plan.text
        assert "module diabetes: image diabetes-edge/diabetes:sha256-" in plan.out, plan.text
        assert "module sensor:" not in plan.out, plan.text
        assert "ridge:1 → ridge:2" in plan.out, plan.text
        r = p.run("apply", "-auto-approve", timeout=900)
        assert r.code == 0, r.text
        assert _steps(r.out, "module diabetes: replaced") and not _steps(r.out, "module sensor:")
        assert p.run("plan", "-detailed-exitcode").code == 0
    finally:
        r = p.run("destroy", "-auto-approve")
    assert r.code == 0, r.text
    assert docker_client.containers.list(all=True, filters=label) == []
    assert our_processes(p.root) == set()


@pytest.mark.docker
@pytest.mark.slow
def test_a_thousand_messages_failures_and_a_killed_model_module(
    tmp_path: Path, docker_info: dict[str, Any], docker_client: Any
) -> None:
    sensor = {"COUNT": "1000", "INTERVAL": "0.004", "PREFIX": "k", "BAD_EVERY": "50"}
    p = _example(tmp_path / "proj", "127.0.0.22", _docker_env(docker_info), sensor)
    try:
        r = p.run("apply", "-auto-approve", timeout=900)
        assert r.code == 0, r.text
        wait_until("300 results upstream", lambda: len(_upstream(p)) >= 300, 120)
        pid = int(_module(docker_client, p, "diabetes").attrs["State"]["Pid"])
        os.kill(pid, signal.SIGKILL)  # the module's process: Docker restarts it (always)
        r = p.run("apply", "-auto-approve")
        assert r.code == 0, r.text
        got = wait_until(
            "1,000 results upstream", lambda: len(_upstream(p)) >= 1000 and _upstream(p), 240
        )
        time.sleep(2)  # nothing more may come: each message once
        got = _upstream(p)
        counts = Counter(g["correlation_id"] for g in got)
        assert len(got) == 1000 and set(counts) == {f"k-{n}" for n in range(1000)}
        assert max(counts.values()) == 1
        errors = [g for g in got if g["output"] == "errors"]
        assert sorted(g["correlation_id"] for g in errors) == sorted(
            f"k-{n}" for n in range(49, 1000, 50)
        )
        assert all("Expected 2D array" in json.loads(g["body"])["message"] for g in errors)
        ok = [g for g in got if g["output"] == "predictions"]
        assert len(ok) == 980 and all(len(json.loads(g["body"])) == 1 for g in ok)
    finally:
        r = p.run("destroy", "-auto-approve")
    assert r.code == 0, r.text


def test_bad_routes_are_diagnostics_at_validate(tmp_path: Path) -> None:
    p = _example(tmp_path / "proj", "127.0.0.23", {}, {"COUNT": "1"})
    yaml = p.root / "modelform.yaml"
    good = yaml.read_text()
    lines = good.splitlines()
    at = next(i for i, line in enumerate(lines) if "sensorToModel:" in line) + 1
    yaml.write_text(good.replace('inputs/rows")', 'inputs/rowz")', 1))
    r = p.run("validate")
    assert r.code == 1, r.text
    assert f"modelform.yaml:{at}:" in r.err and "rowz" in r.err and "Traceback" not in r.text
    yaml.write_text(good.replace("/modules/diabetes/inputs", "/modules/diabetis/inputs", 1))
    r = p.run("validate")
    assert r.code == 1 and f"modelform.yaml:{at}:" in r.err and "diabetis" in r.err, r.text
    assert "did you mean" in r.err, r.text
    yaml.write_text(good.replace("INTO $upstream", "INTO $upstreem", 1))
    r = p.run("validate")
    assert r.code == 1 and "modelform.yaml:" in r.err, r.text
    yaml.write_text(good)
    assert p.run("validate").code == 0


@pytest.mark.docker
@pytest.mark.slow
def test_package_writes_a_manifest_that_validates_and_splits_long_create_options(
    tmp_path: Path, docker_info: dict[str, Any]
) -> None:
    p = _example(tmp_path / "proj", "127.0.0.24", _docker_env(docker_info), {"COUNT": "1"})
    yaml = p.root / "modelform.yaml"
    long_env = [f"LABEL_{i}=" + "x" * 40 for i in range(20)]
    create = json.dumps({"Env": long_env, "HostConfig": {"Memory": 536870912}})
    old = "      desired_properties: {threshold: 150}"
    yaml.write_text(yaml.read_text().replace(old, f"{old}\n      create_options: {create}"))
    r = p.run("package", "target.edge", timeout=900)
    assert r.code == 0, r.text
    out = p.root / ".modelform" / "packages" / "edge" / "deployment.json"
    first = out.read_bytes()
    manifest = json.loads(first)
    assert im.validate(manifest) == []
    settings = manifest["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"][
        "diabetes"
    ]["settings"]
    assert "createOptions01" in settings and "createOptions02" in settings
    assert all(len(v) <= 512 for k, v in settings.items() if k.startswith("createOptions"))
    joined = im.join_create_options(settings)
    assert joined["Env"] == long_env and joined["HostConfig"]["Memory"] == 536870912
    assert joined["Cmd"][:2] == ["--inputs", "rows"]
    assert p.run("package", "target.edge", timeout=900).code == 0
    assert out.read_bytes() == first  # deterministic


@pytest.mark.slow
def test_run_as_process_and_destroy_leaves_no_process(tmp_path: Path) -> None:
    p = _example(tmp_path / "proj", "127.0.0.25", {},
                 {"COUNT": "10", "INTERVAL": "0.02", "PREFIX": "p"})  # fmt: skip
    yaml = p.root / "modelform.yaml"
    _process_mode(yaml)
    try:
        r = p.run("apply", "-auto-approve", timeout=300)
        assert r.code == 0, r.text
        got = wait_until("10 predictions", lambda: len(_upstream(p)) >= 10 and _upstream(p), 60)
        assert sorted(g["correlation_id"] for g in got) == sorted(f"p-{n}" for n in range(10))
        assert len(our_processes(p.root)) == 3  # the hub and two modules
        assert p.run("plan", "-detailed-exitcode").code == 0
    finally:
        r = p.run("destroy", "-auto-approve")
    assert r.code == 0, r.text
    assert our_processes(p.root) == set()


def test_a_taken_hub_address_is_one_line(tmp_path: Path) -> None:
    import socket

    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.26", 8883))
    s.listen()
    p = _example(tmp_path / "proj", "127.0.0.26", {}, {"COUNT": "1"})
    yaml = p.root / "modelform.yaml"
    _process_mode(yaml)
    try:
        r = p.run("apply", "-auto-approve", timeout=300)
    finally:
        s.close()
        p.run("destroy", "-auto-approve")
    assert r.code == 1, r.text
    assert (
        "port 8883 on 127.0.0.26 is in use" in r.err
        and "hub_address" in r.err
        and "Traceback" not in r.text
    )
