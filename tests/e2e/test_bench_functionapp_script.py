"""``bench/functionapp/run.py`` runs, in a tiny configuration (20 blobs, one run of
each storage × score.py), against the real MinIO and Azurite, so the benchmark
cannot rot. Its figures are not judged: only that every combination ran through
``modelform apply``, saw every output once with the right content, measured the
host process and the latencies, and that it leaves nothing behind (no bucket or
container, no blob receipt, no functions host)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import REPO
from tests.realparts import S3Endpoint

PREFIX = "fabench-"
RECEIPTS = "azure-webjobs-hosts"


def left_on_minio(s3_endpoint: S3Endpoint) -> set[str]:
    s3 = s3_endpoint.client()
    names = {b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].startswith(PREFIX)}
    if RECEIPTS in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        listed = s3.list_objects_v2(Bucket=RECEIPTS, Prefix=f"blobreceipts/{PREFIX}")
        names |= {o["Key"] for o in listed.get("Contents", [])}
    return names


def left_on_azurite(azurite: str) -> set[str]:
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(azurite) as service:
        names = {c.name for c in service.list_containers(name_starts_with=PREFIX)}
        receipts = service.get_container_client(RECEIPTS)
        if receipts.exists():
            listed = receipts.list_blobs(name_starts_with=f"blobreceipts/{PREFIX}")
            names |= {b.name for b in listed}
    return names


def bench_hosts() -> set[int]:
    """Functions hosts serving an app of the bench's projects (their temp folder)."""
    out = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "modelform.runtime.functions" in argv and "modelform-bench-fa-" in argv:
            out.add(int(entry.name))
    return out


@pytest.mark.slow
@pytest.mark.s3
@pytest.mark.azurite
@pytest.mark.timeout(600)
def test_functionapp_bench_runs_against_minio_and_azurite(
    tmp_path: Path, s3_endpoint: S3Endpoint, azurite: str
) -> None:
    out = tmp_path / "results.json"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": s3_endpoint.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_endpoint.secret_key,
    }
    env.pop("MODELFORM_STATE", None)
    before_minio, before_azurite = left_on_minio(s3_endpoint), left_on_azurite(azurite)
    r = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "functionapp" / "run.py"),
            *("--blobs", "20", "--runs", "1", "--uploaders", "4", "--wait-quiet", "0"),
            *("--endpoint", s3_endpoint.url, "--region", s3_endpoint.region),
            *("--connection-string", azurite, "--timeout", "120"),
            *("--out", str(out)),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=580,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "| storage | score.py | runs × blobs | upload rate /s | throughput /s |" in r.stdout
    assert "goal on MinIO (trivial): " in r.stdout and "goal on MinIO (ridge): " in r.stdout
    assert "machine: " in r.stdout
    assert azurite.split("AccountKey=")[1].split(";")[0] not in r.stdout + r.stderr

    result: dict[str, Any] = json.loads(out.read_text())
    assert result["problems"] == {}
    combos = {(c["storage"], c["script"]) for c in result["combined"]}
    assert combos == {(s, k) for s in ("minio", "azurite") for k in ("trivial", "ridge")}
    assert len(result["runs"]) == 4
    for run in result["runs"]:
        assert run["outputs_seen"] == 20 and run["missing"] == []
        assert run["counts"] == {"invocations": 20, "failures": 0, "poisoned": 0}
        assert run["processed_twice"] == [] and run["wrong_outputs"] == []
        assert run["latency_s"]["n"] == 20 and run["latency_s"]["p50"] > 0
        assert len(run["latencies_ms"]) == 20 and None not in run["latencies_ms"]
        # the host's own log saw each blob too, before the client's listing did
        assert run["host_log_latency_s"]["n"] == 20
        assert run["host_log_latency_s"]["p50"] <= run["latency_s"]["p50"] + 0.01
        assert run["host"]["cpu_s"] > 0 and run["host"]["peak_rss_mb"] > 0
        assert run["host"]["host_id"].startswith(PREFIX)
        assert run["watch"]["listings"] > 0 and run["watch"]["window_s"]["n"] == 20
        assert run["upload"]["rate_per_s"] > 0 and run["throughput_per_s"] > 0
        assert run["apply_s"] > 0 and run["destroy_s"] > 0
    ridge = [c for c in result["combined"] if c["script"] == "ridge"]
    trivial = [c for c in result["combined"] if c["script"] == "trivial"]
    # the Ridge host imports scikit-learn and loads the model: more memory than the trivial one
    assert min(c["host_peak_rss_mb"]["max"] for c in ridge) > max(
        c["host_peak_rss_mb"]["max"] for c in trivial
    )

    assert left_on_minio(s3_endpoint) == before_minio, "the bench left a bucket or receipts"
    assert left_on_azurite(azurite) == before_azurite, "the bench left a container or receipts"
    assert bench_hosts() == set(), "the bench left a functions host running"
