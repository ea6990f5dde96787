"""The nightly drift job, timed: modelform beside OpenTofu, in one run.

``python bench/ci/run.py [--services 200] [--runs 3]`` (needs MinIO:
``scripts/testenv up minio``; OpenTofu is built from the Go module proxy once,
cached as bench/engine/run.py does).

- **modelform**: a project of N local-target services (real scoring-runtime
  processes, a trivial ``score.py``) with its state in S3 on MinIO, applied
  once. Measured: ``modelform drift --format junit --report drift.xml`` as the
  nightly job runs it, from process start to exit (the report is written
  before exit), nothing drifted (exit 0).
- **OpenTofu**: N ``terraform_data`` resources, its state in the same MinIO
  (the s3 backend, path style), applied once. Measured: ``tofu plan
  -refresh-only -detailed-exitcode``, the nearest OpenTofu command. Its
  resources live in the state alone, so its refresh reads nothing outside,
  while modelform's reads N real processes: docs/benchmarks.md says what
  each one does.
- The two take turns, ``--runs`` times; each figure is the fastest run's wall
  time with its CPU time (user + system) and peak RSS, and the median.
- Everything is removed at the end (destroy, the bucket's objects).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ENV_SH = Path(os.environ.get("MODELFORM_CACHE", Path.home() / ".cache" / "modelform"))
ENV_SH = ENV_SH / "testenv" / "env.json"


def _engine_bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_engine", REPO / "bench/engine/run.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _minio() -> dict[str, str]:
    try:
        info = json.loads(ENV_SH.read_text())["parts"]["minio"]
    except (OSError, KeyError, ValueError):
        raise SystemExit("MinIO is not up: scripts/testenv up minio") from None
    return {k: str(v) for k, v in info.items()}


def _sh(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 1800) -> None:
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if p.returncode not in (0, 2):
        raise SystemExit(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stderr[-3000:]}")


def modelform_project(root: Path, n: int, bucket: str, key: str, base_port: int) -> None:
    (root / "src").mkdir(parents=True)
    (root / "src" / "score.py").write_text(
        "def init():\n    pass\n\ndef run(data):\n    return data\n"
    )
    lines = [
        "project: nightly",
        f"state: {{backend: s3, bucket: {bucket}, key: {key}, path_style: true}}",
        "services:",
    ]
    for i in range(n):
        lines += [f"  svc-{i:04d}:", "    entry_script: src/score.py",
                  f"    port: {base_port + i}"]  # fmt: skip
    (root / "modelform.yaml").write_text("\n".join(lines) + "\n")


def tofu_project(root: Path, n: int, bucket: str, key: str, endpoint: str) -> None:
    root.mkdir(parents=True)
    backend = (
        'terraform {\n  backend "s3" {\n'
        f'    bucket = "{bucket}"\n    key = "{key}"\n    region = "us-east-1"\n'
        f'    endpoints = {{ s3 = "{endpoint}" }}\n    use_path_style = true\n'
        "    skip_credentials_validation = true\n    skip_region_validation = true\n"
        "    skip_requesting_account_id = true\n    skip_metadata_api_check = true\n"
        "    skip_s3_checksum = true\n  }\n}\n"
    )
    blocks = [
        f'resource "terraform_data" "svc_{i:04d}" {{\n  input = {{ port = {10000 + i} }}\n}}\n'
        for i in range(n)
    ]
    (root / "main.tf").write_text(backend + "\n".join(blocks))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--base-port", type=int, default=21000)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "ci" / "results.json")
    args = ap.parse_args()
    eng = _engine_bench()
    minio = _minio()
    n = args.services
    env = {**os.environ, "CI": "true", "AWS_ENDPOINT_URL_S3": minio["endpoint"],
           "AWS_ACCESS_KEY_ID": minio["access_key"], "AWS_SECRET_ACCESS_KEY": minio["secret_key"],
           "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    import boto3

    s3 = boto3.client("s3", endpoint_url=minio["endpoint"], region_name="us-east-1",
                      aws_access_key_id=minio["access_key"],
                      aws_secret_access_key=minio["secret_key"])  # fmt: skip
    bucket = f"bench-ci-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    tofu = eng.build_tofu()
    mf = [str(Path(sys.executable).parent / "modelform")]
    work = Path(tempfile.mkdtemp(prefix="bench-ci-"))
    mine, theirs = work / "modelform", work / "tofu"
    rc = work / "tofurc"
    rc.touch()
    tenv = {
        **env,
        "TF_IN_AUTOMATION": "1",
        "CHECKPOINT_DISABLE": "1",
        "TF_CLI_CONFIG_FILE": str(rc),
    }
    try:
        modelform_project(mine, n, bucket, "nightly/state.json", args.base_port)
        t0 = time.perf_counter()
        _sh([*mf, "apply", "-auto-approve", "-parallelism", "10"], mine, env, timeout=3600)
        applied_s = time.perf_counter() - t0
        tofu_project(theirs, n, bucket, "tofu/terraform.tfstate", minio["endpoint"])
        _sh([str(tofu), "init", "-input=false"], theirs, tenv)
        _sh([str(tofu), "apply", "-auto-approve", "-input=false", "-parallelism=10"], theirs, tenv)
        cases = {
            "modelform drift": eng.Case(
                [*mf, "drift", "--format", "junit", "--report", "drift.xml"], mine, "No drift", env
            ),  # fmt: skip
            "tofu plan -refresh-only": eng.Case(
                [
                    str(tofu),
                    "plan",
                    "-refresh-only",
                    "-detailed-exitcode",
                    "-input=false",
                    "-no-color",
                ],
                theirs,
                "No changes",
                tenv,
            ),  # fmt: skip
        }
        for _ in range(args.runs):
            for case in cases.values():
                case.once()
                if case.cwd == mine and not (mine / "drift.xml").exists():
                    raise SystemExit("modelform drift wrote no report")
        load = os.getloadavg()
        results: dict[str, Any] = {
            "services": n, "runs": args.runs, "apply_seconds": round(applied_s, 1),
            "machine": {"nproc": os.cpu_count(), "kernel": platform.release(),
                        "python": platform.python_version(), "load_after": load},
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                     capture_output=True, text=True).stdout.strip(),
            "tools": {},
        }  # fmt: skip
        for name, case in cases.items():
            wall, cpu, rss = case.best()
            results["tools"][name] = {
                "best_wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "peak_rss_mb": round(rss),
                "median_wall_s": round(statistics.median(r[0] for r in case.runs), 2),
                "walls": [round(r[0], 2) for r in case.runs],
            }  # fmt: skip
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        print(json.dumps(results, indent=1))
    finally:
        subprocess.run([*mf, "destroy", "-auto-approve"], cwd=mine, env=env,
                       capture_output=True, timeout=1800)  # fmt: skip
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for o in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=o["Key"])
        s3.delete_bucket(Bucket=bucket)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
