#!/usr/bin/env python3
"""An idle functions host's CPU, by how many processed blobs stay in the watched prefix.

For each ``--blobs`` count (MinIO, scripts/testenv's): a fresh bucket with
that many ``input/*.json`` blobs, a functions host (``python -m
modelform.runtime.functions``, a trivial blob-triggered app, ``--poll-seconds``
0.5) that processes them all, then ``--seconds`` of nothing: the host's CPU
(user + system from ``/proc/<pid>/stat``) over that time, in milliseconds a
second, and the listings it made (its status's ``discovery``, when the host
reports it). ``--code DIR`` runs the host from another checkout's layout (a
folder holding ``modelform/`` as the venv's editable install lays it out), so
two versions are measured in one run, taking turns.

Usage: python bench/functionapp/idle.py [--blobs 0,1000,3000] [--seconds 20]
           [--code before=/tmp/layout] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from client_cost import testenv  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
APP = """import json

import azure.functions as func

app = func.FunctionApp()


@app.blob_trigger(arg_name="inp", path="%IN_CONTAINER%/input/{blobname}.json",
                  connection="AzureWebJobsStorage")
@app.blob_output(arg_name="out", path="%IN_CONTAINER%/output/{blobname}_out.json",
                 connection="AzureWebJobsStorage")
def score(inp: func.InputStream, out: func.Out[str]) -> None:
    out.set(json.dumps(json.loads(inp.read())))
"""


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def status(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/host/status", timeout=10) as r:
        return dict(json.loads(r.read()))


def measure(count: int, seconds: float, code: str | None, endpoint: str) -> dict[str, Any]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint)
    bucket = f"fabench-idle-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    body = json.dumps({"data": [[0.1] * 10]}).encode()
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda i: s3.put_object(Bucket=bucket, Key=f"input/b{i:05d}.json", Body=body),
                range(count),
            )
        )
    work = Path(tempfile.mkdtemp(prefix="fabench-idle-"))
    app = work / "app"
    app.mkdir()
    (app / "function_app.py").write_text(APP)
    (app / "host.json").write_text('{"version": "2.0"}')
    env = {
        **os.environ,
        "AzureWebJobsStorage": f"S3Endpoint={endpoint};Region=us-east-1",
        "IN_CONTAINER": bucket,
    }
    if code:
        env["PYTHONPATH"] = code
    host_id = f"fabench-idle-{uuid.uuid4().hex[:8]}"
    log = (work / "host.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelform.runtime.functions", str(app), "--host", "127.0.0.1",
         "--port", "0", "--host-id", host_id, "--poll-seconds", "0.5"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        port = 0
        deadline = time.monotonic() + 60
        while not port:
            for line in (work / "host.log").read_text().splitlines():
                if '"port"' in line:
                    port = int(json.loads(line)["port"])
            if time.monotonic() > deadline:
                raise SystemExit(f"host did not start: {(work / 'host.log').read_text()[-2000:]}")
            time.sleep(0.2)
        deadline = time.monotonic() + 600
        while status(port)["counts"]["score"]["invocations"] < count:
            if time.monotonic() > deadline:
                raise SystemExit("not every blob was processed in 600 s")
            time.sleep(0.5)
        time.sleep(3.0)  # the last receipts written, a quiet listing made
        before, cpu0 = status(port), cpu_s(proc.pid)
        time.sleep(seconds)
        after, cpu1 = status(port), cpu_s(proc.pid)
        found = after["triggers"]["score"].get("discovery") or {}
        listings = found.get("listings", 0) - (
            (before["triggers"]["score"].get("discovery") or {}).get("listings", 0)
        )
        return {
            "blobs": count,
            "idle_cpu_ms_per_s": round((cpu1 - cpu0) / seconds * 1000, 1),
            "listings": listings if found else None,
            "listing_interval_s": found.get("listing_interval_s"),
            "listing_cost_s": found.get("listing_cost_s"),
        }
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=item["Key"])
        s3.delete_bucket(Bucket=bucket)
        hosts = "azure-webjobs-hosts"
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=hosts, Prefix=f"blobreceipts/{host_id}/"
        ):
            for item in page.get("Contents", []):
                s3.delete_object(Bucket=hosts, Key=item["Key"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blobs", default="0,1000,3000")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--code", action="append", default=[], help="NAME=LAYOUT_DIR")
    args = parser.parse_args()
    testenv()
    endpoint = os.environ.get("MF_BENCH_ENDPOINT") or "http://127.0.0.1:19000"
    codes: list[tuple[str, str | None]] = [("this checkout", None)]
    codes += [(c.split("=", 1)[0], c.split("=", 1)[1]) for c in args.code]
    print("| code | blobs kept | idle host CPU ms/s | listings | interval s | listing s | load |")
    print("|---|---|---|---|---|---|---|")
    for _ in range(args.rounds):
        for count in [int(b) for b in args.blobs.split(",") if b]:
            for name, code in codes:
                r = measure(count, args.seconds, code, endpoint)
                load = f"{os.getloadavg()[0]:.1f}"
                print(
                    f"| {name} | {count} | {r['idle_cpu_ms_per_s']} | {r['listings']} | "
                    f"{r['listing_interval_s']} | {r['listing_cost_s']} | {load} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
