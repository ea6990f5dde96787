#!/usr/bin/env python3
"""CPU a blob's storage requests cost the host: boto3 against the lean S3 client.

On MinIO (scripts/testenv's, or --endpoint with AWS_* credentials), in one
process, one thread, the two clients taking turns (``--rounds``):

- **per blob**: the four requests the blob trigger makes for each blob —
  claim the receipt (PUT If-None-Match: *), GET the blob (If-Match), PUT
  the output, PUT the receipt done (If-Match) — ``--blobs`` times;
- **listing**: a ListObjectsV2 of a prefix holding ``--keys`` objects,
  every page parsed into (key, ETag, size).

CPU is ``time.thread_time()`` (this thread's user + system seconds); wall
time beside it. ``--profile`` prints cProfile's top functions of one
boto3 and one lean round of the per-blob requests.

Usage: python bench/functionapp/client_cost.py [--blobs 300] [--keys 1000,3000]
           [--rounds 3] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

CACHE = Path(os.environ.get("MODELFORM_CACHE", Path.home() / ".cache" / "modelform"))


def testenv() -> None:
    """AWS_* and the endpoint from scripts/testenv's env.json (its MinIO), unless set."""
    path = CACHE / "testenv" / "env.json"
    if not path.is_file():
        return
    minio = json.loads(path.read_text()).get("parts", {}).get("minio") or {}
    for name, key in (
        ("AWS_ACCESS_KEY_ID", "access_key"),
        ("AWS_SECRET_ACCESS_KEY", "secret_key"),
        ("AWS_DEFAULT_REGION", "region"),
        ("MF_BENCH_ENDPOINT", "endpoint"),
    ):
        if minio.get(key) and not os.environ.get(name):
            os.environ[name] = str(minio[key])


class Boto:
    """The requests as the trigger made them before: boto3, one shared client."""

    def __init__(self, endpoint: str, region: str) -> None:
        import boto3
        from botocore.config import Config

        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint,
            region_name=region,
            config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard"}),
        )

    def blob(self, bucket: str, name: str, data: bytes) -> None:
        c = self.client
        receipt = c.put_object(
            Bucket=bucket, Key=f"r/{name}", Body=b'{"state":"processing"}', IfNoneMatch="*"
        )
        body = c.get_object(Bucket=bucket, Key=f"in/{name}")["Body"].read()
        c.put_object(Bucket=bucket, Key=f"out/{name}", Body=body, ContentType="application/json")
        c.put_object(
            Bucket=bucket, Key=f"r/{name}", Body=b'{"state":"done"}', IfMatch=receipt["ETag"]
        )

    def listing(self, bucket: str, prefix: str) -> int:
        n = 0
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix
        ):
            n += len(page.get("Contents", ()))
        return n


class Lean:
    """The same requests through the host's S3Store (s3http)."""

    def __init__(self, endpoint: str, region: str) -> None:
        from modelform.runtime.functions.settings import S3Storage
        from modelform.runtime.functions.stores import S3Store

        self.store = S3Store(S3Storage(endpoint=endpoint, region=region, path_style=True))

    def blob(self, bucket: str, name: str, data: bytes) -> None:
        s = self.store
        etag = s.create(bucket, f"r/{name}", b'{"state":"processing"}')
        assert etag is not None
        blob = s.read(bucket, f"in/{name}")
        assert blob is not None
        s.write(bucket, f"out/{name}", blob.data, "application/json")
        assert s.replace(bucket, f"r/{name}", b'{"state":"done"}', etag) is not None

    def listing(self, bucket: str, prefix: str) -> int:
        return len(self.store.listing(bucket, prefix))


def timed(task: Callable[[], Any]) -> tuple[float, float]:
    cpu, wall = time.thread_time(), time.perf_counter()
    task()
    return time.thread_time() - cpu, time.perf_counter() - wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blobs", type=int, default=300)
    parser.add_argument("--keys", default="1000,3000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    testenv()
    endpoint = os.environ.get("MF_BENCH_ENDPOINT") or "http://127.0.0.1:19000"
    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    clients = {"boto3": Boto(endpoint, region), "lean": Lean(endpoint, region)}
    bucket = f"fabench-cost-{uuid.uuid4().hex[:8]}"
    lean = clients["lean"]
    assert isinstance(lean, Lean)
    lean.store.ensure_container(bucket)
    keys = [int(k) for k in args.keys.split(",") if k]
    data = json.dumps({"data": [[0.1] * 10], "id": 1}).encode()
    for i in range(args.blobs):
        lean.store.write(bucket, f"in/b{i}", data, "application/json")
    for k in keys:
        for i in range(k):
            lean.store.write(bucket, f"keys{k}/blob-{i:06d}.json", b"{}", "application/json")
    results: dict[str, dict[str, list[float]]] = {n: {} for n in clients}
    for _ in range(args.rounds):
        for name, client in clients.items():

            def blobs(client: Any = client) -> None:
                for i in range(args.blobs):
                    client.blob(bucket, f"b{i}", data)

            # receipts must be new for the conditional create: clear them between rounds
            for i in range(args.blobs):
                lean.store.delete(bucket, f"r/b{i}")
            cpu, wall = timed(blobs)
            results[name].setdefault("blob_cpu_ms", []).append(cpu / args.blobs * 1000)
            results[name].setdefault("blob_wall_ms", []).append(wall / args.blobs * 1000)
            for k in keys:
                cpu, wall = timed(lambda c=client, k=k: c.listing(bucket, f"keys{k}/"))
                results[name].setdefault(f"list{k}_cpu_ms", []).append(cpu * 1000)
                results[name].setdefault(f"list{k}_wall_ms", []).append(wall * 1000)
    print(f"MinIO {endpoint}, {args.blobs} blobs × 4 requests, {args.rounds} rounds (median)")
    print("| client | " + " | ".join(results["boto3"]) + " |")
    print("|---" * (1 + len(results["boto3"])) + "|")
    for name, figures in results.items():
        cells = " | ".join(f"{statistics.median(v):.2f}" for v in figures.values())
        print(f"| {name} | {cells} |")
    if args.profile:
        for name, client in clients.items():
            for i in range(args.blobs):
                lean.store.delete(bucket, f"r/b{i}")
            profile = cProfile.Profile()
            profile.enable()
            for i in range(args.blobs):
                client.blob(bucket, f"b{i}", data)
            profile.disable()
            print(f"\n## {name}: per-blob requests, top 15 by own time")
            pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(15)
    for entry in lean.store.listing(bucket, ""):
        lean.store.delete(bucket, entry.name)
    lean.store.http.request("DELETE", bucket)
    return 0


if __name__ == "__main__":
    sys.exit(main())
