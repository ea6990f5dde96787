#!/usr/bin/env python3
"""Function-app target benchmark: blob trigger latency and throughput, upload →
output visible, on MinIO and on Azurite, in one run.

For each combination of storage (``--storages``: minio, azurite) and entry
script (``--scripts``: ``trivial``, a score.py whose ``run()`` returns its
input; ``ridge``, examples/functionapp's score.py with the quickstart's Ridge
model), ``--runs`` times, the combinations taking turns:

1. A fresh bucket/container and a project of one ``kind: functionapp``
   service whose blob trigger turns ``input/{blobname}.json`` into
   ``output/{blobname}_out.json`` (with a ``test:`` request, as the example
   has, so ``init()`` has run), made real by ``modelform apply`` (timed): the
   local functions host as a process, its pid recorded in the state.
2. ``--blobs`` small JSON blobs (``{"data": [[10 floats]], "id": N}``)
   uploaded by ``--uploaders`` threads, each with its own client, as fast as
   they go (or ``--rate`` a second); the client's clock (``perf_counter``)
   taken when each upload call returns.
3. Meanwhile a watcher lists the output prefix every ``--watch-interval``
   seconds. Each listing starts after the longest prefix of expected output
   names (in sorted order) already seen (S3 ``StartAfter``; on Azurite the
   ``marker``, which Azurite compares with blob names), so it returns the
   outputs not yet known and a few after them instead of every output each
   time. An output's "seen" time is when the listing that first returned it
   came back: latency = seen − upload returned, on one clock. The output
   appeared within the window from the previous listing's start to that
   moment: its size (median, max) is the measure's resolution, reported.
   The host's log (one ``invocation`` line per call, written after the
   output) gives a second latency per blob on the wall clock, for
   comparison: it leaves out the watcher's resolution but is the host's own
   word, so the figures judged are the client's.
4. The host process's CPU seconds during the burst and its peak RSS
   (``VmHWM``) from ``/proc/<pid>`` of the pid the state records (its start
   time checked), the storage server's CPU seconds (testenv's pid file) and
   this process's. Then the host's counts (``/admin/host/status``: every
   blob invoked once, no failure, nothing poisoned), the log (no blob run
   twice) and every output's content are checked, and the project is
   destroyed (``delete_receipts_on_destroy``) and the bucket/container
   deleted.

Before each run the script waits while another benchmark runs on this
machine (``bench/*/run.py``, ``bench/runtime``...; at most ``--wait-quiet``
seconds, then it measures anyway and says so). Everything listens on
127.0.0.1; each run is bounded by ``--timeout``. Results: printed as
Markdown and written to bench/functionapp/results.json (``--out``), with the
per-blob latencies in milliseconds.

MinIO: the endpoint and credentials of ``scripts/testenv`` (its env.json)
unless ``--endpoint`` and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY say
otherwise; Azurite: ``--connection-string``, else
$MODELFORM_AZURITE_CONNECTION_STRING, else testenv's.

Usage: python bench/functionapp/run.py [--blobs 1000] [--runs 3] [--uploaders 16]
           [--storages minio,azurite] [--scripts trivial,ridge] [--rate 0]
           [--watch-interval 0.05] [--poll-seconds S] [--timeout 300]
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import platform
import queue
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE = Path(os.environ.get("MODELFORM_CACHE", Path.home() / ".cache" / "modelform"))
TESTENV = CACHE / "testenv"
MF = [sys.executable, "-m", "modelform.cli"]
EXAMPLE = REPO / "examples" / "functionapp"
#: Buckets, containers, projects (and so host ids) of this bench start so.
PREFIX = "fabench-"
RECEIPTS = "azure-webjobs-hosts"
SERVICE = "score"
ROW = [0.038, 0.05, 0.061, 0.021, -0.044, -0.034, -0.043, -0.002, 0.019, -0.017]
TRIVIAL = '''import json


def init():
    pass


def run(raw_data):
    """The request, returned as it came."""
    return json.loads(raw_data)
'''
#: Command lines of benchmarks that must not share the machine with this one.
BENCHES = re.compile(
    r"bench/(k8s|state|engine|functionapp)/run\.py|bench/runtime/(run\.sh|bench\.py)"
    r"|bench_rebuild\.py"
)
TICK = os.sysconf("SC_CLK_TCK")


# -- figures ---------------------------------------------------------------------------


def pct(xs: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``xs``, linear between the closest ranks."""
    s = sorted(xs)
    if len(s) == 1:
        return s[0]
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def latency_summary(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {}
    return {
        "n": len(xs),
        "min": round(min(xs), 4),
        "p50": round(pct(xs, 0.50), 4),
        "p90": round(pct(xs, 0.90), 4),
        "p99": round(pct(xs, 0.99), 4),
        "max": round(max(xs), 4),
        "mean": round(statistics.fmean(xs), 4),
    }


def spread(xs: list[float], digits: int = 2) -> dict[str, float]:
    """Median, min and max of per-run figures."""
    return {
        "median": round(statistics.median(xs), digits),
        "min": round(min(xs), digits),
        "max": round(max(xs), digits),
    }


# -- storage ---------------------------------------------------------------------------


def testenv_parts() -> dict[str, Any]:
    try:
        parts: dict[str, Any] = json.loads((TESTENV / "env.json").read_text())["parts"]
        return parts
    except (OSError, ValueError, KeyError):
        return {}


Put = Callable[[str, str, bytes], None]


class Storage:
    """One storage the host watches, with the bench's own clients (not modelform's)."""

    name = ""
    part = ""  # scripts/testenv's part, for the server's pid

    def target_storage(self) -> str:
        """The target's ``storage:`` option (YAML)."""
        raise NotImplementedError

    def variables(self) -> str:
        return ""

    def env(self) -> dict[str, str]:
        """Environment of the modelform commands (and so of the host)."""
        return {}

    def make(self, container: str) -> None:
        raise NotImplementedError

    def drop(self, container: str) -> None:
        """Delete ``container`` and everything in it (gone already: nothing to do)."""
        raise NotImplementedError

    def containers(self, prefix: str) -> list[str]:
        raise NotImplementedError

    def uploaders(self, n: int) -> list[Put]:
        """``n`` upload functions, each with a client of its own."""
        raise NotImplementedError

    def list_after(self, container: str, prefix: str, after: str) -> list[str]:
        """Names under ``prefix`` sorting after ``after``, in order (every page)."""
        raise NotImplementedError

    def read(self, container: str, name: str) -> bytes:
        raise NotImplementedError

    def names(self, container: str, prefix: str) -> list[str]:
        return self.list_after(container, prefix, "")

    def delete(self, container: str, names: list[str]) -> None:
        raise NotImplementedError

    def exists(self, container: str) -> bool:
        raise NotImplementedError


class MinIO(Storage):
    name, part = "minio", "minio"

    def __init__(self, endpoint: str, region: str) -> None:
        self.endpoint, self.region = endpoint, region
        self.admin = self._client(4)

    def _client(self, pool: int) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, max_pool_connections=pool,
                          retries={"max_attempts": 3, "mode": "standard"}),
        )  # fmt: skip

    def target_storage(self) -> str:
        return f'{{endpoint: "{self.endpoint}", region: {self.region}}}'

    def env(self) -> dict[str, str]:
        return {"AWS_DEFAULT_REGION": self.region}

    def make(self, container: str) -> None:
        self.admin.create_bucket(Bucket=container)

    def drop(self, container: str) -> None:
        from botocore.exceptions import ClientError

        try:
            pages = self.admin.get_paginator("list_object_versions").paginate(Bucket=container)
            for page in pages:
                for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                    self.admin.delete_object(Bucket=container, Key=v["Key"],
                                             VersionId=v["VersionId"])  # fmt: skip
            self.admin.delete_bucket(Bucket=container)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "NoSuchBucket":
                raise

    def containers(self, prefix: str) -> list[str]:
        buckets = self.admin.list_buckets().get("Buckets", [])
        return [str(b["Name"]) for b in buckets if str(b["Name"]).startswith(prefix)]

    def uploaders(self, n: int) -> list[Put]:
        out: list[Put] = []
        for _ in range(n):
            client = self._client(2)

            def put(container: str, name: str, body: bytes, client: Any = client) -> None:
                client.put_object(Bucket=container, Key=name, Body=body,
                                  ContentType="application/json")  # fmt: skip

            out.append(put)
        return out

    def list_after(self, container: str, prefix: str, after: str) -> list[str]:
        out: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": container, "Prefix": prefix}
        if after:
            kwargs["StartAfter"] = after
        while True:
            page = self.admin.list_objects_v2(**kwargs)
            out.extend(str(o["Key"]) for o in page.get("Contents", []))
            if not page.get("IsTruncated"):
                return out
            kwargs = {"Bucket": container, "Prefix": prefix,
                      "ContinuationToken": page["NextContinuationToken"]}  # fmt: skip

    def read(self, container: str, name: str) -> bytes:
        return bytes(self.admin.get_object(Bucket=container, Key=name)["Body"].read())

    def delete(self, container: str, names: list[str]) -> None:
        for name in names:
            self.admin.delete_object(Bucket=container, Key=name)

    def exists(self, container: str) -> bool:
        return container in self.containers(container)


class Azurite(Storage):
    name, part = "azurite", "azurite"

    def __init__(self, connection_string: str) -> None:
        from azure.storage.blob import BlobServiceClient

        self.connection_string = connection_string
        self.service = BlobServiceClient.from_connection_string(connection_string)

    def target_storage(self) -> str:
        return '{connection_string: "${var.conn}"}'

    def variables(self) -> str:
        return "variables:\n  conn: {sensitive: true}\n"

    def env(self) -> dict[str, str]:
        # a variable from the environment: the connection string is never on a command line
        return {"MODELFORM_VAR_conn": self.connection_string}

    def make(self, container: str) -> None:
        self.service.create_container(container)

    def drop(self, container: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self.service.delete_container(container)
        except ResourceNotFoundError:
            pass

    def containers(self, prefix: str) -> list[str]:
        return [str(c.name) for c in self.service.list_containers(name_starts_with=prefix)]

    def uploaders(self, n: int) -> list[Put]:
        from azure.storage.blob import BlobServiceClient

        out: list[Put] = []
        for _ in range(n):
            client = BlobServiceClient.from_connection_string(self.connection_string)

            def put(container: str, name: str, body: bytes, client: Any = client) -> None:
                client.get_container_client(container).upload_blob(name, body, overwrite=True)

            out.append(put)
        return out

    def list_after(self, container: str, prefix: str, after: str) -> list[str]:
        # Azurite's marker is a blob name (it lists names > marker); on Azure it is opaque.
        blobs = self.service.get_container_client(container).list_blobs(
            name_starts_with=prefix, results_per_page=5000
        )
        out: list[str] = []
        for page in blobs.by_page(continuation_token=after or None):
            out.extend(str(b.name) for b in page)
        return out

    def read(self, container: str, name: str) -> bytes:
        blob = self.service.get_container_client(container).download_blob(name)
        return bytes(blob.readall())

    def delete(self, container: str, names: list[str]) -> None:
        client = self.service.get_container_client(container)
        for name in names:
            client.delete_blob(name)

    def exists(self, container: str) -> bool:
        return bool(self.service.get_container_client(container).exists())


# -- processes -------------------------------------------------------------------------


def proc_cpu(pid: int, started: int | None = None) -> float | None:
    """User + system CPU seconds of ``pid`` (its threads included), or None if it is
    gone or another process has its pid (start time in clock ticks since boot)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    if started is not None and int(fields[19]) != int(started):
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_memory(pid: int) -> dict[str, float]:
    """Resident set now and at its peak (``VmRSS``, ``VmHWM``), MB; threads."""
    out: dict[str, float] = {}
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out["rss_mb" if key == "VmRSS" else "peak_rss_mb"] = round(
                int(value.split()[0]) / 1024, 1
            )
        elif key == "Threads":
            out["threads"] = int(value)
    return out


def server_pid(part: str) -> tuple[int, int] | None:
    """The pid and start time testenv recorded for ``part``, if that process runs."""
    try:
        doc = json.loads((TESTENV / "run" / f"{part}.json").read_text())
        pid, start = int(doc["pid"]), int(doc["start"])
    except (OSError, ValueError, KeyError):
        return None
    return (pid, start) if proc_cpu(pid, start) is not None else None


def ancestors() -> set[int]:
    out, pid = set(), os.getpid()
    while pid > 1:
        out.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat[stat.rindex(")") + 2 :].split()[1])
    return out


def others_running() -> list[str]:
    """Command lines of other benchmarks running on this machine (as ``pgrep -f``)."""
    mine, out = ancestors(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        line = " ".join(a.decode(errors="replace") for a in argv if a)
        if BENCHES.search(line):
            out.append(f"{entry.name}: {line[:160]}")
    return out


def wait_quiet(max_wait: float) -> dict[str, Any]:
    """Wait (at most ``max_wait`` s) until no other benchmark runs; what was seen."""
    t0 = time.monotonic()
    seen = others_running()
    first = list(seen)
    while seen and time.monotonic() - t0 < max_wait:
        if time.monotonic() - t0 < 1:
            print(f"waiting for another benchmark to end: {seen[0]}", file=sys.stderr)
        time.sleep(5)
        seen = others_running()
    return {
        "waited_s": round(time.monotonic() - t0, 1),
        "others_at_start": first,
        "others_still_running": seen,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mf(args: list[str], cwd: Path, env: dict[str, str], timeout: float) -> float:
    """A modelform command that must succeed; its wall seconds."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run([*MF, *args], cwd=cwd, env=env, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip
    except subprocess.TimeoutExpired as e:
        raise SystemExit(f"modelform {' '.join(args)} in {cwd}: not done in {timeout:.0f} s") from e
    if p.returncode != 0:
        raise SystemExit(f"modelform {' '.join(args)} in {cwd} exited {p.returncode}:\n"
                         f"{p.stdout[-2000:]}{p.stderr[-2000:]}")  # fmt: skip
    return time.perf_counter() - t0


def host_status(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/admin/host/status", timeout=10) as r:
        doc: dict[str, Any] = json.loads(r.read())
        return doc


# -- the project -----------------------------------------------------------------------


def ridge_model(work: Path) -> Path:
    """The quickstart's Ridge model, trained by examples/functionapp/train.py."""
    model = work / "ridge.pkl"
    subprocess.run([sys.executable, str(EXAMPLE / "train.py"), "--out", str(model)],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    return model


def write_project(
    d: Path,
    *,
    project: str,
    script: str,
    storage: Storage,
    container: str,
    port: int,
    poll_seconds: float | None,
    model: Path,
) -> None:
    (d / "src").mkdir(parents=True)
    models = environment = ""
    if script == "ridge":
        shutil.copy(EXAMPLE / "src" / "score.py", d / "src" / "score.py")
        (d / "models").mkdir()
        shutil.copy(model, d / "models" / "ridge.pkl")
        models = "models:\n  ridge: {path: models/ridge.pkl}\n"
        environment = (
            'environments:\n  sklearn:\n    python: "3.11"\n'
            '    pip: [scikit-learn, numpy, joblib]\n    env: {OMP_NUM_THREADS: "1"}\n'
        )
    else:
        (d / "src" / "score.py").write_text(TRIVIAL)
    poll = f"    poll_seconds: {poll_seconds}\n" if poll_seconds is not None else ""
    service_models = "    models: [ridge]\n    environment: sklearn\n" if script == "ridge" else ""
    test = json.dumps({"data": [ROW]})
    (d / "modelform.yaml").write_text(
        f"project: {project}\n{storage.variables()}{models}{environment}"
        "targets:\n  functions:\n    kind: functionapp\n"
        f"    storage: {storage.target_storage()}\n"
        f"    delete_receipts_on_destroy: true\n{poll}"
        f"services:\n  {SERVICE}:\n    target: functions\n{service_models}"
        f"    entry_script: src/score.py\n    port: {port}\n"
        f"    trigger:\n      kind: blob\n      container: {container}\n"
        '      input: "input/{blobname}.json"\n      output: "output/{blobname}_out.json"\n'
        f"    test:\n      request: {test}\n"
    )


def host_of(d: Path) -> dict[str, Any]:
    """The service's recorded attributes (pid, started, url) from the local state."""
    state = json.loads((d / ".modelform" / "state.json").read_text())
    res = state["resources"]
    resources = {r["address"]: r for r in res} if isinstance(res, list) else res
    attrs: dict[str, Any] = resources[f"service.{SERVICE}"]["attributes"]
    return attrs


# -- watching the outputs --------------------------------------------------------------


class Watcher(threading.Thread):
    """Lists the output prefix every ``interval`` s after the longest prefix of
    expected names already seen; records when each expected name is first seen
    (the end of the listing that returned it) and the window it appeared in
    (from the previous listing's start)."""

    def __init__(self, storage: Storage, container: str, expected: list[str], interval: float):
        super().__init__(name="watcher", daemon=True)
        self.storage, self.container, self.interval = storage, container, interval
        self.expected = sorted(expected)
        self.wanted = set(expected)
        self.seen: dict[str, float] = {}
        self.window: dict[str, float] = {}
        self.listings: list[float] = []
        self.listed = 0
        self.errors: list[str] = []
        self.stop_event = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        cursor = 0  # expected[:cursor] all seen
        previous: float | None = None
        while not self.stop_event.is_set():
            after = self.expected[cursor - 1] if cursor else ""
            start = time.perf_counter()
            try:
                names = self.storage.list_after(self.container, "output/", after)
            except Exception as e:  # noqa: BLE001 - reported with the run
                self.errors.append(f"{type(e).__name__}: {e}")
                names = []
            end = time.perf_counter()
            self.listings.append(end - start)
            self.listed += len(names)
            for name in names:
                if name in self.wanted and name not in self.seen:
                    self.seen[name] = end
                    self.window[name] = end - (previous if previous is not None else start)
            previous = start
            while cursor < len(self.expected) and self.expected[cursor] in self.seen:
                cursor += 1
            if cursor == len(self.expected):
                self.done.set()
                return
            self.stop_event.wait(max(0.0, self.interval - (time.perf_counter() - start)))


# -- the host's log --------------------------------------------------------------------


def parse_ts(text: str) -> float:
    """``2026-12-03T02:47:18.142Z`` → seconds since the epoch."""
    whole, _, ms = text.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + int(ms or 0) / 1000


def log_events(log: Path, event: str) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("event") == event:
            out.append(doc)
    return out


# -- one run ---------------------------------------------------------------------------


@dataclass
class Options:
    blobs: int
    uploaders: int
    rate: float
    watch_interval: float
    poll_seconds: float | None
    timeout: float
    wait_quiet: float


@dataclass
class Ctx:
    work: Path
    tag: str
    model: Path
    env: dict[str, str]
    made: list[tuple[Storage, str]] = field(default_factory=list)
    counter: int = 0


def body(i: int) -> bytes:
    return json.dumps({"data": [ROW], "id": i}).encode()


def upload_all(
    uploaders: list[Put], container: str, names: list[str], opts: Options
) -> tuple[dict[str, float], dict[str, float], dict[str, float], float]:
    """Upload every blob, each uploader one at a time; when each call began and
    returned (perf_counter) and returned (wall clock); the first call's start."""
    clients: queue.SimpleQueue[Put] = queue.SimpleQueue()
    for put in uploaders:
        clients.put(put)
    began: dict[str, float] = {}
    done: dict[str, float] = {}
    done_wall: dict[str, float] = {}
    t0 = time.perf_counter()

    def one(i: int) -> None:
        if opts.rate > 0:
            delay = t0 + i / opts.rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        put = clients.get()
        try:
            name = names[i]
            began[name] = time.perf_counter()
            put(container, f"input/{name}.json", body(i))
            done[name] = time.perf_counter()
            done_wall[name] = time.time()
        finally:
            clients.put(put)

    with ThreadPoolExecutor(len(uploaders), thread_name_prefix="upload") as pool:
        list(pool.map(one, range(len(names))))
    return began, done, done_wall, t0


def check_outputs(
    storage: Storage, container: str, names: list[str], script: str, expected: Any
) -> list[str]:
    """Every output's content: the request itself (trivial), or the prediction the
    HTTP function gave for the same row (ridge). The names that are wrong."""

    def wrong(item: tuple[int, str]) -> str | None:
        i, name = item
        got = json.loads(storage.read(container, f"output/{name}_out.json"))
        if script == "trivial":
            ok = got == json.loads(body(i))
        else:
            ok = isinstance(got, list) and len(got) == 1 and abs(got[0] - expected[0]) < 1e-9
        return None if ok else f"{name}: {str(got)[:80]}"

    with ThreadPoolExecutor(8) as pool:
        return [w for w in pool.map(wrong, enumerate(names)) if w]


def http_prediction(url: str) -> Any:
    req = urllib.request.Request(
        url + "/api/score", data=json.dumps({"data": [ROW]}).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def one_run(ctx: Ctx, storage: Storage, script: str, number: int, opts: Options) -> dict[str, Any]:
    ctx.counter += 1
    name = f"{PREFIX}{ctx.tag}-{ctx.counter}"  # project, bucket/container, host id's start
    d = ctx.work / name
    env = {**ctx.env, **storage.env()}
    quiet = wait_quiet(opts.wait_quiet)
    load_before = os.getloadavg()
    storage.make(name)
    ctx.made.append((storage, name))
    write_project(d, project=name, script=script, storage=storage, container=name,
                  port=free_port(), poll_seconds=opts.poll_seconds, model=ctx.model)  # fmt: skip
    out: dict[str, Any] = {"storage": storage.name, "script": script, "run": number,
                           "container": name, "quiet": quiet}  # fmt: skip
    applied = False
    try:
        out["apply_s"] = round(mf(["apply", "-auto-approve"], d, env, 300), 3)
        applied = True
        host = host_of(d)
        pid, started, url = int(host["pid"]), int(host["started"]), str(host["url"])
        names = [f"b{i:05d}" for i in range(opts.blobs)]
        expected = [f"output/{n}_out.json" for n in names]
        server = server_pid(storage.part)
        watcher = Watcher(storage, name, expected, opts.watch_interval)
        uploaders = storage.uploaders(opts.uploaders)  # the clients made before the clock starts

        cpu0, server0 = proc_cpu(pid, started), server and proc_cpu(*server)
        mem0 = proc_memory(pid)
        self0 = resource.getrusage(resource.RUSAGE_SELF)
        watcher.start()
        began, done, done_wall, t0 = upload_all(uploaders, name, names, opts)
        uploaded = time.perf_counter()
        watcher.done.wait(max(0.0, opts.timeout - (uploaded - t0)))
        watcher.stop_event.set()
        watcher.join(30)
        cpu1, server1 = proc_cpu(pid, started), server and proc_cpu(*server)
        mem1 = proc_memory(pid)
        self1 = resource.getrusage(resource.RUSAGE_SELF)
        if cpu0 is None or cpu1 is None:
            raise SystemExit(f"{name}: the functions host (pid {pid}) is gone")

        seen = {n: watcher.seen[f"output/{n}_out.json"] for n in names
                if f"output/{n}_out.json" in watcher.seen}  # fmt: skip
        latencies = [seen[n] - done[n] for n in names if n in seen]
        last_seen = max(seen.values()) if seen else uploaded
        log = d / ".modelform" / "logs" / f"{SERVICE}.log"
        calls = [e for e in log_events(log, "invocation") if e.get("function") == SERVICE]
        ok_calls = Counter(str(e["blob"]) for e in calls if e.get("result") == "ok")
        first_ok: dict[str, float] = {}
        for e in calls:
            if e.get("result") == "ok":
                blob = str(e["blob"])[len("input/") : -len(".json")]
                first_ok.setdefault(blob, parse_ts(str(e["ts"])))
        host_latencies = [first_ok[n] - done_wall[n] for n in names if n in first_ok]
        status = host_status(url)["counts"].get(SERVICE, {})
        out.update({
            "blobs": opts.blobs,
            "outputs_seen": len(seen),
            "missing": [n for n in names if n not in seen][:20],
            "latency_s": latency_summary(latencies),
            "latencies_ms": [round((seen[n] - done[n]) * 1000) if n in seen else None
                             for n in names],
            "host_log_latency_s": latency_summary(host_latencies),
            "upload": {
                "seconds": round(uploaded - t0, 3),
                "rate_per_s": round(opts.blobs / (max(done.values()) - t0), 1),
                "put_ms": latency_summary([(done[n] - began[n]) * 1000 for n in names]),
            },
            "throughput_per_s": round(len(seen) / (last_seen - t0), 1) if seen else 0.0,
            "first_upload_to_last_output_s": round(last_seen - t0, 3),
            "last_upload_to_last_output_s": round(last_seen - max(done.values()), 3),
            "watch": {
                "interval_s": opts.watch_interval,
                "listings": len(watcher.listings),
                "listing_ms": latency_summary([x * 1000 for x in watcher.listings]),
                "names_listed": watcher.listed,
                "window_s": latency_summary(list(watcher.window.values())),
                "errors": watcher.errors[:5],
            },
            "host": {
                "pid": pid,
                "host_id": host.get("host_id"),
                "cpu_s": round(cpu1 - cpu0, 2),
                "cpu_ms_per_blob": round((cpu1 - cpu0) * 1000 / opts.blobs, 2),
                "rss_mb_before": mem0.get("rss_mb"),
                "rss_mb_after": mem1.get("rss_mb"),
                "peak_rss_mb": mem1.get("peak_rss_mb"),
                "threads": mem1.get("threads"),
                "invocation_ms": latency_summary([float(e.get("ms", 0)) for e in calls]),
            },
            "storage_server_cpu_s": (round(server1 - server0, 2)
                                     if server0 is not None and server1 is not None
                                     else None),  # fmt: skip
            "client_cpu_s": round(self1.ru_utime + self1.ru_stime
                                  - self0.ru_utime - self0.ru_stime, 2),  # fmt: skip
            "counts": status,
            "processed_twice": sorted(b for b, k in ok_calls.items() if k > 1)[:20],
            "load_average": [round(x, 1) for x in (*load_before, *os.getloadavg())],
        })  # fmt: skip
        if len(seen) == opts.blobs:
            want = http_prediction(url) if script == "ridge" else None
            out["wrong_outputs"] = check_outputs(storage, name, names, script, want)[:20]
    finally:
        if applied or (d / ".modelform" / "state.json").exists():
            out["destroy_s"] = round(mf(["destroy", "-auto-approve"], d, env, 300), 3)
        storage.drop(name)
        ctx.made.remove((storage, name))
    return out


def problems(r: dict[str, Any]) -> list[str]:
    """What went wrong in a run (an empty list: every blob once, right, counted)."""
    out = []
    n = r["blobs"]
    if r["outputs_seen"] != n:
        out.append(f"{n - r['outputs_seen']} outputs not seen within the timeout")
    counts = r.get("counts", {})
    if counts.get("invocations") != n or counts.get("failures") or counts.get("poisoned"):
        out.append(f"host counts {counts}, expected {n} invocations and no failure")
    if r.get("processed_twice"):
        out.append(f"processed twice: {r['processed_twice']}")
    if r.get("wrong_outputs"):
        out.append(f"wrong outputs: {r['wrong_outputs']}")
    if r["watch"]["errors"]:
        out.append(f"listing errors: {r['watch']['errors']}")
    return out


# -- report ----------------------------------------------------------------------------


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One combination's runs: latencies pooled over every blob, the rest per run."""
    pooled = [ms / 1000 for r in runs for ms in r["latencies_ms"] if ms is not None]
    return {
        "storage": runs[0]["storage"],
        "script": runs[0]["script"],
        "runs": len(runs),
        "blobs": sum(r["blobs"] for r in runs),
        "latency_s": latency_summary(pooled),
        "p99_per_run_s": [r["latency_s"].get("p99") for r in runs],
        "host_log_p50_s": spread([r["host_log_latency_s"].get("p50", 0.0) for r in runs]),
        "host_log_p99_s": spread([r["host_log_latency_s"].get("p99", 0.0) for r in runs]),
        "upload_rate_per_s": spread([r["upload"]["rate_per_s"] for r in runs], 1),
        "throughput_per_s": spread([r["throughput_per_s"] for r in runs], 1),
        "host_cpu_s": spread([r["host"]["cpu_s"] for r in runs]),
        "host_peak_rss_mb": spread([r["host"]["peak_rss_mb"] or 0.0 for r in runs], 1),
        "storage_server_cpu_s": spread(
            [r["storage_server_cpu_s"] for r in runs if r["storage_server_cpu_s"] is not None]
            or [0.0]
        ),
        "client_cpu_s": spread([r["client_cpu_s"] for r in runs]),
        "window_s_max": max(r["watch"]["window_s"].get("max", 0.0) for r in runs),
        "window_s_median": statistics.median(r["watch"]["window_s"].get("p50", 0.0) for r in runs),
        "apply_s": spread([r["apply_s"] for r in runs]),
    }


def cell(fig: dict[str, float], digits: int = 1) -> str:
    m, lo, hi = fig["median"], fig["min"], fig["max"]
    if lo == hi:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ({lo:.{digits}f}–{hi:.{digits}f})"


def tables(result: dict[str, Any]) -> str:
    head = ["storage", "score.py", "runs × blobs", "upload rate /s", "throughput /s",
            "p50 s", "p90 s", "p99 s", "max s", "host CPU s", "host peak RSS MB",
            "storage CPU s"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in result["combined"]:
        lat = c["latency_s"]
        per = c["blobs"] // c["runs"]
        lines.append("| " + " | ".join([
            c["storage"], c["script"], f"{c['runs']} × {per:,}",
            cell(c["upload_rate_per_s"], 0), cell(c["throughput_per_s"], 0),
            *(f"{lat[k]:.2f}" for k in ("p50", "p90", "p99", "max")),
            cell(c["host_cpu_s"]), cell(c["host_peak_rss_mb"], 0),
            cell(c["storage_server_cpu_s"]),
        ]) + " |")  # fmt: skip
    head2 = ["storage", "score.py", "run", "upload /s", "throughput /s", "p50 s", "p90 s",
             "p99 s", "max s", "host log p50 / p99 s", "host CPU ms/blob", "apply s",
             "load avg"]  # fmt: skip
    lines += ["", "| " + " | ".join(head2) + " |", "|" + "---|" * len(head2)]
    for r in result["runs"]:
        lat, hl = r["latency_s"], r["host_log_latency_s"]
        lines.append("| " + " | ".join([
            r["storage"], r["script"], str(r["run"]), f"{r['upload']['rate_per_s']:.0f}",
            f"{r['throughput_per_s']:.0f}",
            *(f"{lat.get(k, float('nan')):.2f}" for k in ("p50", "p90", "p99", "max")),
            f"{hl.get('p50', float('nan')):.2f} / {hl.get('p99', float('nan')):.2f}",
            f"{r['host']['cpu_ms_per_blob']:.1f}", f"{r['apply_s']:.1f}",
            "–".join(f"{x:.1f}" for x in (r["load_average"][0], r["load_average"][3])),
        ]) + " |")  # fmt: skip
    lines += ["", verdict(result)]
    return "\n".join(lines)


def verdict(result: dict[str, Any]) -> str:
    """The issue's goal on MinIO: p50 ≤ 1 s and p99 ≤ 3 s upload → output."""
    out = []
    for c in result["combined"]:
        if c["storage"] != "minio":
            continue
        lat = c["latency_s"]
        met = lat["p50"] <= 1.0 and lat["p99"] <= 3.0
        worst = max(x for x in c["p99_per_run_s"] if x is not None)
        out.append(
            f"goal on MinIO ({c['script']}): p50 {lat['p50']:.2f} s ≤ 1 s and p99 "
            f"{lat['p99']:.2f} s ≤ 3 s over {c['blobs']:,} blobs: {'met' if met else 'NOT met'}"
            f" (worst run's p99 {worst:.2f} s)"
        )
    w = result["combined"]
    if w:
        out.append(
            "latency = the client's clock from the upload call's return to the end of the "
            f"first listing showing the output; listing every {result['options']['watch_interval']}"
            f" s, so each output appeared within a window of median "
            f"{statistics.median(c['window_s_median'] for c in w):.3f} s "
            f"(at most {max(c['window_s_max'] for c in w):.3f} s) before it was seen"
        )
    return "\n".join(out)


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {mem:.0f} GiB, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def commit() -> str:
    """The commit of the modelform this Python imports, and whether its tree has changes."""
    import modelform.engine

    git = ["git", "-C", str(Path(modelform.engine.__file__).resolve().parents[1])]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    return head.stdout.strip() + (" + uncommitted changes" if dirty else "")


def versions(storages: list[Storage]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for s in storages:
        if s.name == "minio":
            f = TESTENV / "bin" / "minio.version"
            out["minio"] = f.read_text().strip() if f.exists() else None
        else:
            out["azurite"] = str(testenv_parts().get("azurite", {}).get("version") or "") or None
    return out


def dumps(doc: Any) -> str:
    """JSON with two-space indents, lists of numbers on one line."""
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    return re.sub(
        r"\[\n\s+((?:-?[\d.]+|null),?(?:\n\s+(?:-?[\d.]+|null),?)*)\n\s*\]",
        lambda m: "[" + " ".join(m.group(1).split()) + "]",
        text,
    )


# -- receipts left behind --------------------------------------------------------------


def receipts_left(storage: Storage, tag: str) -> list[str]:
    """Receipts (and poison records) of this bench's host ids and containers."""
    if not storage.exists(RECEIPTS):
        return []
    names = storage.names(RECEIPTS, f"blobreceipts/{PREFIX}{tag}-")
    names += [n for n in storage.names(RECEIPTS, "blobpoison/") if f"/{PREFIX}{tag}-" in n]
    return names


@contextmanager
def cleanup(ctx: Ctx, storages: list[Storage]) -> Iterator[None]:
    """At the end, however it ends: this bench's containers, receipts, and the receipts
    container if the bench made it and left it empty."""
    had = {s.name: s.exists(RECEIPTS) for s in storages}
    try:
        yield
    finally:
        for s in storages:
            for c in s.containers(f"{PREFIX}{ctx.tag}-"):
                s.drop(c)
            left = receipts_left(s, ctx.tag)
            if left:
                s.delete(RECEIPTS, left)
            if not had[s.name] and s.exists(RECEIPTS) and not s.names(RECEIPTS, ""):
                s.drop(RECEIPTS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--blobs", type=int, default=1000, help="blobs uploaded per run")
    ap.add_argument("--runs", type=int, default=3, help="runs of each storage × script")
    ap.add_argument("--uploaders", type=int, default=16, help="upload threads (one client each)")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="uploads a second (0: as fast as the uploaders go)")  # fmt: skip
    ap.add_argument("--storages", default="minio,azurite")
    ap.add_argument("--scripts", default="trivial,ridge")
    ap.add_argument("--watch-interval", type=float, default=0.05,
                    help="seconds between two listings of the outputs")  # fmt: skip
    ap.add_argument("--poll-seconds", type=float,
                    help="the target's poll_seconds (default: the target's default)")  # fmt: skip
    ap.add_argument("--timeout", type=float, default=300.0,
                    help="longest a run may take, first upload to last output (s)")  # fmt: skip
    ap.add_argument("--wait-quiet", type=float, default=1800.0,
                    help="longest wait for other benchmarks to end before a run")  # fmt: skip
    minio = testenv_parts().get("minio", {})
    ap.add_argument("--endpoint", default=minio.get("endpoint"), help="default: testenv's MinIO")
    ap.add_argument("--region", default=minio.get("region") or "us-east-1")
    azurite = os.environ.get("MODELFORM_AZURITE_CONNECTION_STRING") or testenv_parts().get(
        "azurite", {}
    ).get("connection_string")
    ap.add_argument("--connection-string", default=azurite,
                    help="default: $MODELFORM_AZURITE_CONNECTION_STRING or testenv")  # fmt: skip
    ap.add_argument("--out", type=Path, default=HERE / "results.json")
    args = ap.parse_args()
    storage_names = [s for s in args.storages.split(",") if s]
    scripts = [s for s in args.scripts.split(",") if s]
    if not storage_names or set(storage_names) - {"minio", "azurite"}:
        ap.error("--storages: minio, azurite or both")
    if not scripts or set(scripts) - {"trivial", "ridge"}:
        ap.error("--scripts: trivial, ridge or both")
    if args.blobs < 1 or args.runs < 1 or args.uploaders < 1 or args.watch_interval <= 0:
        ap.error("--blobs, --runs, --uploaders and --watch-interval must be positive")
    if "minio" in storage_names and not args.endpoint:
        ap.error("no --endpoint, and no MinIO in scripts/testenv's env.json (scripts/testenv up)")
    if "azurite" in storage_names and not args.connection_string:
        ap.error("no --connection-string and no Azurite (scripts/testenv up azurite)")
    if not os.environ.get("AWS_ACCESS_KEY_ID") and minio.get("access_key"):
        os.environ["AWS_ACCESS_KEY_ID"] = minio["access_key"]
        os.environ["AWS_SECRET_ACCESS_KEY"] = minio["secret_key"]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up on a plain kill too
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("MODELFORM_STATE", None)  # it would put every state in one file
    opts = Options(args.blobs, args.uploaders, args.rate, args.watch_interval,
                   args.poll_seconds, args.timeout, args.wait_quiet)  # fmt: skip
    storages: list[Storage] = []
    for s in storage_names:
        storages.append(MinIO(args.endpoint, args.region) if s == "minio"
                        else Azurite(args.connection_string))  # fmt: skip
    started = time.strftime("%Y-%m-%d %H:%M")
    load_before = os.getloadavg()
    runs: list[dict[str, Any]] = []
    tag = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory(prefix="modelform-bench-fa-") as tmp:
        ctx = Ctx(Path(tmp), tag, Path(), env)
        with cleanup(ctx, storages):
            if "ridge" in scripts:
                ctx.model = ridge_model(ctx.work)
            for number in range(1, args.runs + 1):
                for storage in storages:
                    for script in scripts:
                        print(f"run {number}: {storage.name}, {script}, {args.blobs} blobs",
                              file=sys.stderr)  # fmt: skip
                        runs.append(one_run(ctx, storage, script, number, opts))
    combined = []
    for storage in storages:
        for script in scripts:
            mine = [r for r in runs if r["storage"] == storage.name and r["script"] == script]
            combined.append(combine(mine))
    result: dict[str, Any] = {
        "date": started,
        "machine": machine(),
        "load_average": [round(x, 1) for x in (*load_before, *os.getloadavg())],
        "command": " ".join(["python", "bench/functionapp/run.py", *sys.argv[1:]]),
        "modelform": commit(),
        "storage_versions": versions(storages),
        "options": {
            "blobs": args.blobs,
            "runs": args.runs,
            "uploaders": args.uploaders,
            "rate": args.rate,
            "watch_interval": args.watch_interval,
            "poll_seconds": args.poll_seconds,
            "timeout": args.timeout,
        },
        "combined": combined,
        "runs": runs,
    }
    bad = {f"{r['storage']}/{r['script']}/{r['run']}": p for r in runs if (p := problems(r))}
    result["problems"] = bad
    args.out.write_text(dumps(result) + "\n")
    print(f"machine: {result['machine']}; modelform {result['modelform']}; "
          f"{', '.join(f'{k} {v}' for k, v in result['storage_versions'].items())} "
          f"(this machine); load average before/after {result['load_average']}")  # fmt: skip
    print(tables(result))
    if bad:
        raise SystemExit(f"runs with problems: {json.dumps(bad)}")


if __name__ == "__main__":
    main()
