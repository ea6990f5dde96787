"""``run_as: container`` against the real Docker Engine and MinIO: the
quickstart's model packaged as a function app is built into an image (found
again by digest; a new model rebuilds only the app's layer), its container
scores a request blob into the output name and answers over HTTP on
127.0.0.1 only, keeps its secrets out of the image and its labels, stays
exited when its host crashes (for drift to see), and is gone after stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modelform.plugin import ProviderError
from modelform.providers import funcapp_container as fc
from modelform.providers import imagebuild as ib
from modelform.providers.funcapp_config import Options, Storage
from modelform.providers.funcapp_package import AppSpec, write_app

pytestmark = [pytest.mark.docker, pytest.mark.s3, pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "functionapp"
SCORE = EXAMPLE / "src" / "score.py"
ROW = [0.038, 0.05, 0.061, 0.021, -0.044, -0.034, -0.043, -0.002, 0.019, -0.017]
KEY = f"key-{uuid.uuid4().hex}"


def train(out: Path, alpha: float) -> Path:
    subprocess.run(
        [sys.executable, str(EXAMPLE / "train.py"), "--alpha", str(alpha), "--out", str(out)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return out


def predict(model: Path) -> list[float]:
    import joblib
    import numpy as np

    return [float(x) for x in joblib.load(model).predict(np.array([ROW]))]


@dataclass
class App:
    dir: Path
    spec: AppSpec
    digest: str
    model: Path


def write(tmp: Path, bucket: str, model: Path) -> App:
    """examples/functionapp's service as an app: its score.py, the model, a
    blob trigger, auth key."""
    spec = AppSpec(
        service="diabetes",
        entry_script=SCORE,
        code_dir=SCORE.parent,
        trigger={"kind": "blob", "bucket": bucket, "input": "input/{blobname}.json",
                 "output": "output/{blobname}_out.json"},
        model_files=(("ridge.pkl", model),),
        auth="key",
        pip=("scikit-learn", "numpy", "joblib"),
        python="3.11",
        env={"OMP_NUM_THREADS": "1"},
        models=(("ridge", 1, "sha256:" + "0" * 64),),
    )  # fmt: skip
    return App(tmp / "app", spec, write_app(spec, tmp / "app"), model)


@pytest.fixture(scope="module")
def bucket(s3_endpoint: Any) -> Iterator[str]:
    s3 = s3_endpoint.client()
    name = f"mf-fnc-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    yield name
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for entry in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=entry["Key"])
    s3.delete_bucket(Bucket=name)


@pytest.fixture(scope="module")
def opts(s3_endpoint: Any, docker_info: dict[str, Any], base_image: str,
         host_ca_bundle: Path) -> Options:  # fmt: skip
    return Options(
        storage=Storage("s3", endpoint=s3_endpoint.url, region=s3_endpoint.region),
        run_as="container", delete_receipts_on_destroy=False, poll_seconds=0.2,
        docker_host=str(docker_info["docker_host"]), base_image=base_image,
        carry_ca=str(host_ca_bundle),
    )  # fmt: skip


@pytest.fixture(scope="module")
def repo(docker_client: Any) -> Iterator[str]:
    name = f"mftest-{uuid.uuid4().hex[:8]}/diabetes-fn"
    yield name
    for img in docker_client.images.list(name=name):
        for tag in img.tags:
            docker_client.images.remove(tag, force=True)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, bucket: str) -> App:
    tmp = tmp_path_factory.mktemp("fnapp")
    return write(tmp, bucket, train(tmp / "ridge.pkl", 0.5))


@pytest.fixture(scope="module")
def built(docker_client: Any, app: App, opts: Options, repo: str) -> tuple[ib.Built, list[str]]:
    lines: list[str] = []
    spec = fc.app_image_spec(app.dir, app.spec, opts, repo)
    return ib.build(docker_client, spec, lines.append), lines


@pytest.fixture
def started(docker_client: Any) -> Iterator[list[str]]:
    """Ids of the containers a test started; removed afterwards whatever happened."""
    ids: list[str] = []
    yield ids
    for cid in ids:
        fc.stop(docker_client, cid)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/host/status", timeout=2) as r:
            doc: dict[str, Any] = json.loads(r.read())
            return doc
    except (OSError, ValueError):
        return None


def wait_running(client: Any, cid: str, port: int, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        doc = status(port)
        if doc is not None and doc.get("state") == "Running":
            return doc
        assert fc.alive(client, cid), fc.logs(client, cid, 40)
        assert time.monotonic() < deadline, fc.logs(client, cid, 40)
        time.sleep(0.2)


def post(port: int, body: dict[str, Any], key: str | None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json", **({"x-functions-key": key} if key else {})}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/score",
                                 data=json.dumps(body).encode(), headers=headers)  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return int(r.status), bytes(r.read())
    except urllib.error.HTTPError as e:
        return int(e.code), bytes(e.read())


def env_for(opts: Options, s3: Any) -> dict[str, str]:
    environ = {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}
    return fc.app_env(opts, KEY, environ)


def outside_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=False)
    addrs = [a for a in out.stdout.split() if "." in a and not a.startswith("127.")]
    return addrs[0] if addrs else None


def test_built_once_found_again_and_a_new_model_rebuilds_only_the_app(
    docker_client: Any, app: App, opts: Options, repo: str, built: tuple[ib.Built, list[str]],
    tmp_path: Path,
) -> None:  # fmt: skip
    first, lines = built
    assert first.built and first.ref == f"{repo}:1", "\n".join(lines[-30:])
    img = docker_client.images.get(first.ref)
    assert img.attrs["Config"]["Entrypoint"] == list(fc.host_command())
    print(f"\nfirst build {first.seconds:.1f} s, cached: {len(first.cached_steps)} steps")

    spec = fc.app_image_spec(app.dir, app.spec, opts, repo)
    t0 = time.monotonic()
    again = ib.build(docker_client, spec)
    print(f"same app again: found in {time.monotonic() - t0:.2f} s")
    assert not again.built and again.image_id == first.image_id and again.ref == first.ref

    retrained = write(tmp_path, app.spec.trigger["bucket"], train(tmp_path / "r.pkl", 2.0))
    assert retrained.digest != app.digest
    out: list[str] = []
    second = ib.build(docker_client, fc.app_image_spec(retrained.dir, retrained.spec, opts, repo),
                      out.append)  # fmt: skip
    print(f"new model: built in {second.seconds:.1f} s")
    assert second.built and second.ref == f"{repo}:2" and second.image_id != first.image_id
    for step in ("python3 -m venv", "-r /opt/modelform/runtime-requirements.txt",
                 "-r /opt/modelform/extra-requirements.txt"):  # fmt: skip
        assert any(step in s and " RUN " in s for s in second.cached_steps), (step, second)
    assert sum("pip install" in s for s in second.cached_steps) == 3, second.cached_steps
    assert not any(line.startswith(("Collecting", "Downloading")) for line in out), out
    assert not any("COPY app/" in s for s in second.cached_steps)


def test_the_container_scores_blobs_on_minio_and_http_on_loopback_only(
    docker_client: Any, app: App, opts: Options, built: tuple[ib.Built, list[str]],
    s3_endpoint: Any, bucket: str, started: list[str],
) -> None:  # fmt: skip
    image, _ = built
    port = free_port()
    host_id = f"t-{uuid.uuid4().hex[:10]}"
    env = env_for(opts, s3_endpoint)
    labels = {"modelform.address": "service.diabetes", "modelform.test": host_id}
    cid = fc.run(docker_client, image.ref, f"mf-fnc-{host_id}", port, env, labels, host_id, 0.2)
    started.append(cid)
    doc = wait_running(docker_client, cid, port)
    assert doc["app_digest"] == app.digest  # the digest the plan shows is the one served
    assert sorted(doc["functions"]) == ["diabetes", "diabetes_http"]

    s3 = s3_endpoint.client()
    t0 = time.monotonic()
    s3.put_object(Bucket=bucket, Key="input/patient-1.json",
                  Body=json.dumps({"data": [ROW]}).encode())  # fmt: skip
    while True:
        try:
            body = s3.get_object(Bucket=bucket, Key="output/patient-1_out.json")["Body"].read()
            break
        except s3.exceptions.NoSuchKey:
            assert time.monotonic() - t0 < 30, fc.logs(docker_client, cid, 40)
            time.sleep(0.1)
    print(f"\nupload -> output {time.monotonic() - t0:.2f} s")
    expected = predict(app.model)
    assert json.loads(body) == pytest.approx(expected)

    code, answer = post(port, {"data": [ROW]}, KEY)
    assert code == 200, answer
    assert json.loads(answer) == pytest.approx(expected)
    assert post(port, {"data": [ROW]}, None)[0] == 401
    counts = wait_running(docker_client, cid, port)["counts"]
    assert counts["diabetes"] == {"invocations": 1, "failures": 0, "poisoned": 0}

    # Served on this machine's loopback only.
    addr = outside_address()
    if addr is not None:
        with socket.socket() as s:
            s.settimeout(2)
            assert s.connect_ex((addr, port)) != 0, f"{addr}:{port} answers"

    # Secrets: in the container's environment, not in its labels, the image or the log.
    c = docker_client.containers.get(cid)
    assert c.attrs["HostConfig"]["NetworkMode"] == "host"
    assert c.attrs["HostConfig"]["RestartPolicy"]["Name"] == "no"
    assert f"{fc.FUNCTION_KEY_SETTING}={KEY}" in c.attrs["Config"]["Env"]
    secrets = [KEY, s3_endpoint.secret_key]
    labels_text = json.dumps(c.labels)
    image_text = json.dumps(docker_client.images.get(image.ref).attrs)
    history = json.dumps(docker_client.images.get(image.ref).history())
    log = fc.logs(docker_client, cid, 500)
    assert "listening" in log
    for secret in secrets:
        assert secret not in labels_text and secret not in image_text and secret not in history
        assert secret not in log
    settings = json.loads(
        c.exec_run(["cat", f"{ib.APP_DIR}/local.settings.json"]).output.decode()
    )["Values"]  # fmt: skip
    assert settings["AzureWebJobsStorage"] == "" and settings[fc.FUNCTION_KEY_SETTING] == ""

    t0 = time.monotonic()
    fc.stop(docker_client, cid)
    print(f"stop {time.monotonic() - t0:.2f} s")
    assert not fc.alive(docker_client, cid) and fc.exit_code(docker_client, cid) is None
    assert cid not in {x.id for x in docker_client.containers.list(all=True)}
    assert status(port) is None
    fc.stop(docker_client, cid)  # a second stop of a gone container is fine


def test_a_crashed_host_stays_down_for_drift_to_see(
    docker_client: Any, opts: Options, built: tuple[ib.Built, list[str]], s3_endpoint: Any,
    started: list[str],
) -> None:  # fmt: skip
    image, _ = built
    port = free_port()
    host_id = f"t-{uuid.uuid4().hex[:10]}"
    env = env_for(opts, s3_endpoint)
    cid = fc.run(docker_client, image.ref, f"mf-fnc-{host_id}", port, env, {}, host_id, 0.2)
    started.append(cid)
    wait_running(docker_client, cid, port)
    assert fc.alive(docker_client, cid) and fc.exit_code(docker_client, cid) is None

    # kill -9 the host (docker's init is PID 1 and its parent).
    init_pid = docker_client.containers.get(cid).attrs["State"]["Pid"]
    children = Path(f"/proc/{init_pid}/task/{init_pid}/children").read_text().split()
    assert len(children) == 1
    os.kill(int(children[0]), signal.SIGKILL)
    deadline = time.monotonic() + 20
    while fc.alive(docker_client, cid):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert fc.exit_code(docker_client, cid) == 128 + signal.SIGKILL
    time.sleep(1.0)  # a restart policy would have started it again by now
    c = docker_client.containers.get(cid)
    assert c.attrs["State"]["Status"] == "exited" and c.attrs["RestartCount"] == 0
    assert not fc.alive(docker_client, cid) and status(port) is None
    assert "listening" in fc.logs(docker_client, cid, 100)  # its log is kept for the user

    # The name is taken until stop removes it: one line, no traceback.
    with pytest.raises(ProviderError, match="already exists"):
        fc.run(docker_client, image.ref, c.name, port, env, {}, host_id, 0.2)
    fc.stop(docker_client, cid)
    assert fc.logs(docker_client, cid, 10) == "" and not fc.alive(docker_client, cid)


def test_an_app_that_cannot_load_exits_with_the_hosts_code(
    docker_client: Any, opts: Options, built: tuple[ib.Built, list[str]], started: list[str],
) -> None:  # fmt: skip
    image, _ = built
    port = free_port()
    # No AzureWebJobsStorage: the blob trigger's connection is missing, the app does not load.
    cid = fc.run(docker_client, image.ref, f"mf-fnc-{uuid.uuid4().hex[:10]}", port, {}, {},
                 "t-noload", 0.2)  # fmt: skip
    started.append(cid)
    deadline = time.monotonic() + 60
    while fc.exit_code(docker_client, cid) is None:
        assert time.monotonic() < deadline, fc.logs(docker_client, cid, 40)
        time.sleep(0.2)
    assert fc.exit_code(docker_client, cid) == 3
    assert "AzureWebJobsStorage" in fc.logs(docker_client, cid, 40)
