"""The functionapp target end to end, through the real ``modelform`` command,
against the real MinIO and Azurite: examples/functionapp's blob trigger and
HTTP function, no change on a second plan, a host killed in the middle of
200 blobs, the Azure connection string never shown, service-bus settings
checked at validate, and the packaged app."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import REPO, Project, free_port, our_processes, wait_until
from tests.realparts import S3Endpoint

EXAMPLE = REPO / "examples" / "functionapp"
ROW = [0.038, 0.05, 0.061, 0.021, -0.044, -0.034, -0.043, -0.002, 0.019, -0.017]


def _example(dst: Path, container: str, port: int, env: dict[str, str]) -> Project:
    shutil.copytree(EXAMPLE, dst, ignore=shutil.ignore_patterns(".modelform", "__pycache__"))
    subprocess.run([sys.executable, "train.py"], cwd=dst, check=True, capture_output=True)
    text = (dst / "modelform.yaml").read_text()
    text = text.replace("container: requests", f"container: {container}")
    (dst / "modelform.yaml").write_text(text.replace("port: 7071", f"port: {port}"))
    return Project(dst, env)


def _s3_env(s3: S3Endpoint) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key,
            "AWS_DEFAULT_REGION": s3.region}  # fmt: skip


def _output_count(s3: Any, bucket: str) -> int:
    return int(s3.list_objects_v2(Bucket=bucket, Prefix="output/").get("KeyCount", 0))


def _outputs(s3: Any, bucket: str) -> dict[str, bytes]:
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="output/"):
        for o in page.get("Contents", []):
            out[o["Key"]] = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
    return out


def _events(log: Path, event: str) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("event") == event:
            out.append(doc)
    return out


def _host_pid(p: Project) -> int:
    return int(p.resources()["service.diabetes"]["attributes"]["pid"])


@pytest.mark.s3
def test_the_example_scores_blobs_and_http_and_plans_no_change(
    tmp_path: Path, s3_endpoint: S3Endpoint, s3_bucket: str
) -> None:
    p = _example(tmp_path / "proj", s3_bucket, free_port(), _s3_env(s3_endpoint))
    try:
        r = p.run("apply", "-auto-approve", "-var", f"storage={s3_endpoint.url}")
        assert r.code == 0, r.text
        assert "functions host running: diabetes (blob), diabetes_http (http)" in r.out
        s3 = s3_endpoint.client()
        s3.put_object(Bucket=s3_bucket, Key="input/first.json",
                      Body=json.dumps({"data": [ROW, ROW]}).encode())  # fmt: skip
        got = wait_until("output/first_out.json", lambda: _outputs(s3, s3_bucket), 20)
        predictions = json.loads(got["output/first_out.json"])
        assert len(predictions) == 2 and predictions[0] == pytest.approx(predictions[1])
        # the same app answers over HTTP, with the same numbers
        inv = p.run("invoke", "diabetes", "--data", json.dumps({"data": [ROW]}))
        assert inv.code == 0, inv.text
        assert json.loads(inv.out) == pytest.approx(predictions[:1])
        again = p.run("plan", "-detailed-exitcode", "-var", f"storage={s3_endpoint.url}")
        assert again.code == 0, again.text
        status = p.run("status")
        assert "Healthy" in status.out and "invocations" in status.out, status.text
        # the plan names what a new model version changes
        (tmp_path / "proj" / "models" / "ridge.pkl").write_bytes(
            (tmp_path / "proj" / "models" / "ridge.pkl").read_bytes() + b"\n"
        )
        changed = p.run("plan", "-var", f"storage={s3_endpoint.url}")
        assert "model ridge: ridge:1 → ridge:2" in changed.out, changed.text
    finally:
        r = p.run("destroy", "-auto-approve", "-var", f"storage={s3_endpoint.url}")
    assert r.code == 0, r.text
    assert our_processes(p.root) == set()
    # the receipts stay (as on Azure): the same blob is not processed again by a new app
    kept = s3.list_objects_v2(
        Bucket="azure-webjobs-hosts", Prefix="blobreceipts/diabetes-diabetes/"
    )
    assert any(o["Key"].endswith("/input/first.json") for o in kept.get("Contents", []))


@pytest.mark.s3
def test_a_host_killed_in_the_middle_of_200_blobs_loses_none(
    tmp_path: Path, s3_endpoint: S3Endpoint, s3_bucket: str
) -> None:
    p = _example(tmp_path / "proj", s3_bucket, free_port(), _s3_env(s3_endpoint))
    var = ("-var", f"storage={s3_endpoint.url}")
    log = p.root / ".modelform" / "logs" / "diabetes.log"
    try:
        assert p.run("apply", "-auto-approve", *var).code == 0
        s3 = s3_endpoint.client()
        body = json.dumps({"data": [ROW]}).encode()
        names = [f"b{i:03d}" for i in range(200)]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda n: s3.put_object(Bucket=s3_bucket, Key=f"input/{n}.json",
                                                  Body=body), names))  # fmt: skip
        # a listing, not _outputs (which reads each one): the host finishes 200 blobs in
        # about two seconds, faster than the outputs can be read back one by one
        wait_until("some outputs", lambda: _output_count(s3, s3_bucket) >= 20, 60)
        os.kill(_host_pid(p), signal.SIGKILL)
        done_at_kill = _output_count(s3, s3_bucket)
        assert done_at_kill < 200, "the host finished before the kill: nothing was in the middle"
        drift = p.run("drift", *var)
        assert drift.code == 2, drift.text
        assert p.run("apply", "-auto-approve", *var).code == 0
        want = {f"output/{n}_out.json" for n in names}
        wait_until("200 outputs", lambda: set(_outputs(s3, s3_bucket)) >= want, 120)
        inputs = {f"input/{n}.json" for n in names}

        def ok_runs() -> Counter[str]:
            return Counter(
                e["blob"] for e in _events(log, "invocation")
                if e.get("result") == "ok" and "blob" in e
            )  # fmt: skip

        # A blob whose output the killed host wrote but whose run it never logged
        # (nor settled) is run again once its lease ends: wait for those runs too.
        wait_until("every blob's run logged", lambda: set(ok_runs()) >= inputs, 150)
        # every blob ran once, but those a takeover reported as in flight at the stop
        ran = ok_runs()
        again = {e["blob"] for e in _events(log, "in_flight_takeover")}
        assert set(ran) == inputs
        twice = {blob for blob, n in ran.items() if n > 1}
        assert twice <= again, (twice, again)
        assert all(n <= 2 for n in ran.values())
    finally:
        p.run("destroy", "-auto-approve", *var)
    assert our_processes(p.root) == set()


@pytest.mark.azurite
def test_on_azurite_and_the_connection_string_never_shows(
    tmp_path: Path, azurite: str, azurite_container: str
) -> None:
    from azure.storage.blob import BlobServiceClient

    account_key = dict(part.split("=", 1) for part in azurite.strip(";").split(";") if "=" in part)[
        "AccountKey"
    ]
    p = _example(tmp_path / "proj", azurite_container, free_port(), {"FA_CONN": azurite})
    text = (p.root / "modelform.yaml").read_text()
    text = text.replace('storage: {endpoint: "${var.storage}"}',
                        'storage: {connection_string: "${var.conn}"}')  # fmt: skip
    text = text.replace("variables:\n", "variables:\n  conn: {sensitive: true}\n")
    text = text.replace("    kind: functionapp\n", "    kind: functionapp\n"
                        "    delete_receipts_on_destroy: true\n")  # fmt: skip
    (p.root / "modelform.yaml").write_text(text)
    var = ("-var", f"conn={azurite}")
    outputs = []
    try:
        r = p.run("apply", "-auto-approve", *var)
        outputs.append(r.text)
        assert r.code == 0, r.text
        blobs = BlobServiceClient.from_connection_string(azurite)
        container = blobs.get_container_client(azurite_container)
        container.upload_blob("input/az.json", json.dumps({"data": [ROW]}).encode())

        def output() -> bytes | None:
            names = [b.name for b in container.list_blobs(name_starts_with="output/")]
            return container.download_blob(names[0]).readall() if names else None

        assert len(json.loads(wait_until("the Azure output", output, 20))) == 1
        for args in (("plan", "-detailed-exitcode", *var), ("status",), ("logs", "diabetes"),
                     ("show",), ("state", "pull")):  # fmt: skip
            got = p.run(*args)
            outputs.append(got.text)
            if args[0] == "plan":
                assert got.code == 0, got.text
    finally:
        r = p.run("destroy", "-auto-approve", *var)
        outputs.append(r.text)
    assert (
        "deleted 1 blob receipts under azure-webjobs-hosts/blobreceipts/diabetes-diabetes/" in r.out
    )
    receipts = blobs.get_container_client("azure-webjobs-hosts")
    assert not list(receipts.list_blobs(name_starts_with="blobreceipts/diabetes-diabetes/"))
    for text in outputs[:-2] + outputs[-1:]:  # state pull prints the state as it is
        assert account_key not in text
    app_files = (p.root / ".modelform").rglob("*")
    assert not any(account_key in f.read_text(errors="replace") for f in app_files if
                   f.is_file() and f.name != "state.json" and "state" not in f.name)  # fmt: skip


def _servicebus(root: Path, trigger: str) -> Project:
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".modelform", "__pycache__"))
    subprocess.run([sys.executable, "train.py"], cwd=root, check=True, capture_output=True)
    text = (root / "modelform.yaml").read_text()
    start = text.index("    trigger:\n")
    end = text.index("    test:\n")
    (root / "modelform.yaml").write_text(text[:start] + f"    trigger: {trigger}\n" + text[end:])
    return Project(root)


def test_a_service_bus_service_validates_and_plans_and_bad_settings_are_diagnostics(
    tmp_path: Path,
) -> None:
    ok = _servicebus(tmp_path / "ok", "{kind: servicebus, queue: scoring, "
                     "connection: ServiceBusConnection}")  # fmt: skip
    assert ok.run("validate").code == 0
    plan = ok.run("plan")
    assert plan.code == 0, plan.text
    assert "not exercised against a broker here" in plan.out
    both = _servicebus(tmp_path / "both", "{kind: servicebus, queue: q, topic: t, "
                       "subscription: s, connection: ServiceBusConnection}")  # fmt: skip
    r = both.run("validate")
    assert r.code == 1 and "modelform.yaml:" in r.err and "topic" in r.err, r.text
    assert "Traceback" not in r.text
    missing = _servicebus(tmp_path / "missing", "{kind: servicebus, queue: q}")
    r = missing.run("validate")
    assert r.code == 1 and "connection" in r.err and "modelform.yaml:" in r.err, r.text


def test_package_writes_the_same_app_twice(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".modelform", "__pycache__"))
    subprocess.run([sys.executable, "train.py"], cwd=root, check=True, capture_output=True)
    p = Project(root)
    first = p.run("package", "diabetes", "-json")
    assert first.code == 0, first.text
    a = json.loads(first.out)["data"]
    zipped = Path(a["zip"]).read_bytes()
    second = json.loads(p.run("package", "diabetes", "-json").out)["data"]
    assert second["app_digest"] == a["app_digest"]
    assert Path(second["zip"]).read_bytes() == zipped
    names = set(zipfile.ZipFile(second["zip"]).namelist())
    assert {"function_app.py", "host.json", "requirements.txt", "local.settings.json",
            "score.py", "model/ridge.pkl"} <= names  # fmt: skip


def test_an_unreachable_storage_or_a_taken_port_is_one_line(tmp_path: Path) -> None:
    import socket

    port = free_port()
    creds = {"AWS_ACCESS_KEY_ID": "someone", "AWS_SECRET_ACCESS_KEY": "whatever"}
    p = _example(tmp_path / "proj", "requests", port, creds)
    dead = ("-var", f"storage=http://127.0.0.1:{free_port()}")
    r = p.run("apply", "-auto-approve", *dead)
    assert r.code == 1, r.text
    (line,) = [x for x in r.err.splitlines() if x.startswith("Error: ")]
    assert line.startswith("Error: service.diabetes: the host's triggers do not listen: diabetes:")
    assert "Traceback" not in r.text
    assert our_processes(p.root) == set()
    # no S3 credentials at all: the host cannot start, and the one line says why
    bare = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run(p.cmd("apply", "-auto-approve", *dead), cwd=p.root, env=bare,
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    assert done.returncode == 1, done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("Error: ")]
    why = "the functions host exited before it was ready: function diabetes: S3: no AWS"
    assert why in line and "credentials found" in line, line
    assert our_processes(p.root) == set()
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the host's TIME_WAITs
        held.bind(("127.0.0.1", port))
        held.listen()
        r = p.run("apply", "-auto-approve", *dead)
    assert r.code == 1
    assert f"Error: service.diabetes: port {port} on 127.0.0.1 is in use by another" in r.err
    assert our_processes(p.root) == set()


@pytest.mark.s3
@pytest.mark.docker
@pytest.mark.slow
def test_run_as_container_scores_blobs_and_a_stopped_container_is_drift(
    tmp_path: Path, s3_endpoint: S3Endpoint, s3_bucket: str, docker_info: dict[str, Any],
    docker_client: Any,
) -> None:  # fmt: skip
    env = {**_s3_env(s3_endpoint), "DOCKER_HOST": str(docker_info["docker_host"])}
    p = _example(tmp_path / "proj", s3_bucket, free_port(), env)
    text = (p.root / "modelform.yaml").read_text()
    (p.root / "modelform.yaml").write_text(
        text.replace("    kind: functionapp\n", "    kind: functionapp\n    run_as: container\n")
    )
    var = ("-var", f"storage={s3_endpoint.url}")
    label = {"label": f"modelform.project_dir={p.root.resolve()}"}
    try:
        r = p.run("apply", "-auto-approve", *var, timeout=900)
        assert r.code == 0, r.text
        assert "functions host container" in r.out
        s3 = s3_endpoint.client()
        s3.put_object(
            Bucket=s3_bucket, Key="input/c.json", Body=json.dumps({"data": [ROW]}).encode()
        )
        got = wait_until("output/c_out.json", lambda: _outputs(s3, s3_bucket), 30)
        assert len(json.loads(got["output/c_out.json"])) == 1
        assert p.run("plan", "-detailed-exitcode", *var).code == 0
        (c,) = docker_client.containers.list(filters=label)
        c.stop(timeout=15)
        drift = p.run("drift", *var)
        assert drift.code == 2 and "service.diabetes has been deleted" in drift.out, drift.text
        r = p.run("apply", "-auto-approve", *var)
        assert r.code == 0, r.text
        assert "removing the exited host container" in r.out
        assert p.run("plan", "-detailed-exitcode", *var).code == 0
    finally:
        r = p.run("destroy", "-auto-approve", *var)
    assert r.code == 0, r.text
    assert docker_client.containers.list(all=True, filters=label) == []
