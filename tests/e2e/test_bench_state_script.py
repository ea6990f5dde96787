"""``bench/state/run.py`` runs, in a tiny configuration, against the real MinIO, so
the benchmark cannot rot. Its figures are not judged: only that every part ran,
was checked (the no-op plan exits 0) and counted its S3 requests, and that it
leaves nothing behind (no bucket, no package installed into the venv)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tests.e2e.helpers import REPO
from tests.realparts import S3Endpoint


def installed() -> set[str]:
    return {str(d.metadata["Name"]) for d in metadata.distributions()}


def bench_buckets(s3_endpoint: S3Endpoint) -> set[str]:
    buckets = s3_endpoint.client().list_buckets()["Buckets"]
    return {b["Name"] for b in buckets if b["Name"].startswith("modelform-bench-")}


@pytest.mark.slow
def test_state_bench_runs_against_minio(tmp_path: Path, s3_endpoint: S3Endpoint) -> None:
    out = tmp_path / "results.json"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": s3_endpoint.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_endpoint.secret_key,
    }
    env.pop("MODELFORM_STATE", None)
    packages, buckets = installed(), bench_buckets(s3_endpoint)
    r = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "state" / "run.py"),
            *("--services", "5", "--resources", "20", "--trip-resources", "3"),
            *("--rounds", "2", "--runs", "2"),
            *("--endpoint", s3_endpoint.url, "--region", s3_endpoint.region),
            *("--out", str(out)),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "| measure | runs | local: median (p10–p90) | s3: median (p10–p90) |" in r.stdout
    assert "machine: " in r.stdout

    result = json.loads(out.read_text())
    assert result["options"]["services"] == 5
    for part in ("round_trip", "plan"):
        assert result[part]["local"]["runs"] == result[part]["s3"]["runs"] == 2
        assert result[part]["s3"]["requests_median"] > 0
    assert "GetObject" in result["plan"]["s3"]["operations"]
    assert "PutObject" in result["round_trip"]["s3"]["operations"]
    large = result["large_state"]
    assert large["local"]["bytes"] > 0
    assert large["s3"]["bytes"] > 0
    assert large["s3"]["write"]["runs"] == large["s3"]["read"]["runs"] == 2
    assert result["s3_client_start"]["runs"] == 2

    assert bench_buckets(s3_endpoint) == buckets, "the bench left its bucket behind"
    assert installed() == packages, "the bench installed a package into the venv"
