"""The blob trigger on real storage, the same tests on MinIO (S3) and Azurite (Azure Blob).

Each blob version is processed once (receipts and the app's own run log checked), by
one host or two sharing the storage; a host killed with SIGKILL leaves only its
in-flight blobs to run twice, and the next host says which; a failing blob is tried
5 times, then poisoned, while the others go through.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from functions_harness import BLOB_APP, Host, HostFactory, run_counts, write_app
from storage_kit import AzureKit, S3Kit

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

Kit = S3Kit | AzureKit


@pytest.fixture(
    params=[
        pytest.param("s3", marks=pytest.mark.s3),
        pytest.param("azurite", marks=pytest.mark.azurite),
    ]
)
def kit(request: pytest.FixtureRequest) -> Iterator[Kit]:
    if request.param == "s3":
        made: Kit = S3Kit(
            request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket")
        )
    else:
        made = AzureKit(
            request.getfixturevalue("azurite"), request.getfixturevalue("azurite_container")
        )
    yield made


@pytest.fixture
def host_id(kit: Kit) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    yield name
    kit.cleanup(name, "score")


def _app(tmp_path: Path) -> tuple[Path, Path]:
    runlog = tmp_path / "runs.log"
    return write_app(tmp_path / "app", BLOB_APP), runlog


def _upload(kit: Kit, names: list[str], body: Any = None, threads: int = 16) -> None:
    def one(name: str) -> None:
        doc = body(name) if callable(body) else {"data": [len(name), 1]}
        kit.put(f"input/{name}.json", json.dumps(doc).encode())

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, names))


def _wait_outputs(kit: Kit, count: int, timeout: float, hosts: list[Host]) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        outputs = kit.listing("output/")
        if len(outputs) >= count:
            return outputs
        if time.monotonic() > deadline:
            logs = "\n".join(host.log()[-3000:] for host in hosts)
            raise AssertionError(f"{len(outputs)} of {count} outputs after {timeout}s\n{logs}")
        time.sleep(0.2)


def _total(hosts: list[Host], key: str) -> int:
    return sum(host.status()["counts"]["score"][key] for host in hosts)


def test_100_blobs_uploaded_at_once_each_run_once(
    kit: Kit, host_id: str, tmp_path: Path, hosts: HostFactory
) -> None:
    app_dir, runlog = _app(tmp_path)
    host = hosts.start(app_dir, {**kit.env, "RUNLOG": str(runlog)}, "--host-id", host_id)
    names = [f"req-{index:03d}" for index in range(100)]
    _upload(kit, names)
    outputs = _wait_outputs(kit, 100, 120, [host])
    assert sorted(outputs) == sorted(f"output/{name}_out.json" for name in names)
    produced = json.loads(kit.get("output/req-007_out.json"))
    assert produced == {
        "blob": f"{kit.container}/input/req-007.json",
        "length": len(json.dumps({"data": [7, 1]})),
        "sum": 8,
    }
    time.sleep(1.5)  # a few more polls: nothing may run again
    runs = run_counts(runlog)
    assert len(runs) == 100 and set(runs.values()) == {1}, runs.most_common(3)
    status = host.status()
    assert status["counts"]["score"] == {"invocations": 100, "failures": 0, "poisoned": 0}
    receipts = kit.receipts(host_id)
    assert len(receipts) == 100
    assert {receipt["state"] for receipt in receipts.values()} == {"done"}
    assert {receipt["attempts"] for receipt in receipts.values()} == {1}
    assert all(key.startswith(f"blobreceipts/{host_id}/score/") for key in receipts)


def test_two_hosts_on_one_storage_still_run_each_blob_once(
    kit: Kit, host_id: str, tmp_path: Path, hosts: HostFactory
) -> None:
    app_dir, runlog = _app(tmp_path)
    env = {**kit.env, "RUNLOG": str(runlog)}
    first = hosts.start(app_dir, env, "--host-id", host_id, "--poll-seconds", "0.3")
    second = hosts.start(app_dir, env, "--host-id", host_id, "--poll-seconds", "0.3")
    names = [f"pair-{index:03d}" for index in range(100)]
    _upload(kit, names, body=lambda name: {"data": [1], "sleep": 0.01})
    _wait_outputs(kit, 100, 120, [first, second])
    time.sleep(1.5)
    runs = run_counts(runlog)
    assert len(runs) == 100 and set(runs.values()) == {1}, runs.most_common(3)
    assert _total([first, second], "invocations") == 100
    assert _total([first, second], "failures") == 0


def test_a_host_killed_mid_burst_leaves_only_its_in_flight_blobs_to_run_twice(
    kit: Kit, host_id: str, tmp_path: Path, hosts: HostFactory
) -> None:
    app_dir, runlog = _app(tmp_path)
    env = {**kit.env, "RUNLOG": str(runlog)}
    args = ("--host-id", host_id, "--lease-seconds", "2")
    first = hosts.start(app_dir, env, *args)
    names = [f"kill-{index:03d}" for index in range(200)]
    _upload(kit, names, body=lambda name: {"data": [1], "sleep": 0.1})
    deadline = time.monotonic() + 60
    while len(kit.listing("output/")) < 50:
        assert time.monotonic() < deadline, first.log()[-3000:]
        time.sleep(0.05)
    first.kill9()
    done_at_kill = len(kit.listing("output/"))
    assert done_at_kill < 200, "the host finished before it was killed: nothing was tested"

    second = hosts.start(app_dir, env, *args)
    _wait_outputs(kit, 200, 120, [second])
    time.sleep(1.0)
    runs = run_counts(runlog)
    blob = {name: f"{kit.container}/input/{name}.json" for name in names}
    assert set(runs) == set(blob.values())
    twice = {name for name, count in runs.items() if count > 1}
    takeovers = second.events("in_flight_takeover")
    reported = {f"{kit.container}/{event['blob']}" for event in takeovers}
    assert twice <= reported, (twice, reported)
    assert max(runs.values()) <= 2
    assert 1 <= len(reported) <= 8  # at most one per worker thread was in flight
    assert all(event["message"] == "in flight at a stop: processing again" for event in takeovers)
    assert {event["previous_owner"] for event in takeovers} == {
        f"{first.proc.pid}@{socket.gethostname()}"
    }
    receipts = kit.receipts(host_id)
    assert len(receipts) == 200 and {r["state"] for r in receipts.values()} == {"done"}


def test_a_failing_blob_is_tried_5_times_then_poisoned_and_the_rest_go_through(
    kit: Kit, host_id: str, tmp_path: Path, hosts: HostFactory
) -> None:
    app_dir, runlog = _app(tmp_path)
    host = hosts.start(app_dir, {**kit.env, "RUNLOG": str(runlog)}, "--host-id", host_id)
    names = [f"ok-{index:02d}" for index in range(20)]
    kit.put("input/bad.json", json.dumps({"data": [1], "fail": True}).encode())
    _upload(kit, names)
    _wait_outputs(kit, 20, 60, [host])
    poisoned = host.wait_event("poisoned", timeout=30)
    assert len(poisoned) == 1
    event = poisoned[0]
    assert (event["blob"], event["attempts"]) == ("input/bad.json", 5)
    assert event["error"] == f"ValueError: cannot score {kit.container}/input/bad.json"
    assert "output/bad_out.json" not in kit.listing("output/")
    runs = run_counts(runlog)
    assert runs[f"{kit.container}/input/bad.json"] == 5
    assert all(runs[f"{kit.container}/input/{name}.json"] == 1 for name in names)
    status = host.status()
    assert status["counts"]["score"] == {"invocations": 25, "failures": 5, "poisoned": 1}
    records = kit.poison_records("score")
    assert len(records) == 1
    record = next(iter(records.values()))
    assert record["blob"] == "input/bad.json" and record["container"] == kit.container
    assert record["error"] == event["error"] and record["attempts"] == 5
    receipt = next(r for key, r in kit.receipts(host_id).items() if key.endswith("/input/bad.json"))
    assert (receipt["state"], receipt["attempts"]) == ("poisoned", 5)
    if kit.kind == "azure":
        messages = kit.poison_messages()
        assert len(messages) == 1
        message = messages[0]
        assert message["Type"] == "BlobTrigger" and message["FunctionId"] == "Host.Functions.score"
        assert (message["BlobName"], message["BlobType"]) == ("input/bad.json", "BlockBlob")
        assert message["ETag"].startswith('"') and message["ETag"].endswith('"')
    time.sleep(1.0)
    assert run_counts(runlog)[f"{kit.container}/input/bad.json"] == 5  # poisoned stays so


def test_a_stop_releases_the_claims_it_cannot_finish(
    kit: Kit, host_id: str, tmp_path: Path, hosts: HostFactory
) -> None:
    """SIGTERM: a run that outlasts the grace time has its claim released, so the next host
    takes the blob at once instead of waiting out a (here 60 s) lease."""
    app_dir, runlog = _app(tmp_path)
    env = {**kit.env, "RUNLOG": str(runlog)}
    args = ("--host-id", host_id, "--lease-seconds", "60", "--grace-seconds", "0.5")
    first = hosts.start(app_dir, env, *args)
    kit.put("input/slow.json", json.dumps({"data": [2], "sleep": 3}).encode())
    deadline = time.monotonic() + 30
    while not run_counts(runlog):
        assert time.monotonic() < deadline, first.log()
        time.sleep(0.05)
    stopped_at = time.monotonic()
    assert first.terminate(timeout=20) == 0
    assert time.monotonic() - stopped_at < 2.5  # the grace time, not the run's 3 s
    assert [e["blob"] for e in first.events("claim_released")] == ["input/slow.json"]
    second = hosts.start(app_dir, env, *args)
    takeover = second.wait_event("in_flight_takeover", timeout=10)[0]
    assert takeover["blob"] == "input/slow.json"
    _wait_outputs(kit, 1, 30, [second])
    assert run_counts(runlog)[f"{kit.container}/input/slow.json"] == 2


@pytest.mark.s3
def test_upload_to_output_latency_on_minio(
    s3_endpoint: Any, s3_bucket: str, tmp_path: Path, hosts: HostFactory
) -> None:
    """200 blobs uploaded at a steady 40/s: the issue's goal is p50 <= 1 s, p99 <= 3 s from
    upload to output (MinIO's own LastModified times, millisecond precision, one clock)."""
    kit = S3Kit(s3_endpoint, s3_bucket)
    host_id = f"t-{uuid.uuid4().hex[:10]}"
    app_dir, runlog = _app(tmp_path)
    host = hosts.start(app_dir, {**kit.env, "RUNLOG": str(runlog)}, "--host-id", host_id)
    try:
        names = [f"lat-{index:03d}" for index in range(200)]
        started = time.monotonic()
        for index, name in enumerate(names):
            kit.put(f"input/{name}.json", json.dumps({"data": [index]}).encode())
            time.sleep(max(0.0, started + (index + 1) / 40 - time.monotonic()))
        outputs = _wait_outputs(kit, 200, 120, [host])
        inputs = kit.listing("input/")
        latencies = sorted(
            (outputs[f"output/{name}_out.json"] - inputs[f"input/{name}.json"]).total_seconds()
            for name in names
        )
        p50, p99 = latencies[99], latencies[197]
        print(
            f"\nupload->output on MinIO, 200 blobs at 40/s: p50 {p50:.3f} s, p99 {p99:.3f} s, "
            f"max {latencies[-1]:.3f} s"
        )
        assert p50 <= 1.0 and p99 <= 3.0, (p50, p99)
        assert host.status()["counts"]["score"]["invocations"] == 200
    finally:
        kit.cleanup(host_id, "score")


def test_a_run_longer_than_the_lease_is_renewed_not_taken_over(
    kit: Kit, host_id: str, tmp_path: Path, hosts: HostFactory
) -> None:
    app_dir, runlog = _app(tmp_path)
    env = {**kit.env, "RUNLOG": str(runlog)}
    args = ("--host-id", host_id, "--lease-seconds", "2", "--poll-seconds", "0.2")
    first = hosts.start(app_dir, env, *args)
    second = hosts.start(app_dir, env, *args)
    kit.put("input/long.json", json.dumps({"data": [3], "sleep": 5}).encode())
    _wait_outputs(kit, 1, 30, [first, second])
    time.sleep(1.0)
    assert run_counts(runlog)[f"{kit.container}/input/long.json"] == 1
    assert first.events("in_flight_takeover") == second.events("in_flight_takeover") == []
    assert _total([first, second], "invocations") == 1
