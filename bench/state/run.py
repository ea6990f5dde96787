#!/usr/bin/env python3
"""State backend benchmark: the local file beside S3 (MinIO), in one run.

1. Round trip through the Backend API (``load_backend``): lock, read, write a
   small change (one attribute of one resource), unlock, as every apply does
   around its changes; ``--rounds`` rounds per backend on a small state
   (``--trip-resources``), the backends taking turns. For S3, the requests a
   round sends, counted with a botocore event hook on the backend's client.
2. A no-op ``modelform plan -detailed-exitcode`` (it must exit 0) of
   ``--services`` services, the engine bench's generated project (target kind
   ``instant``: the plugin in bench/plugins on PYTHONPATH, never installed),
   applied once with its state on each backend; ``--runs`` plans each.
3. A state of ``--resources`` resources (a real apply of ``--resources`` - 1
   ``instant`` services and their target): its size, and the time to write it
   (one attribute changed each time, so every write stores the whole
   document) and to read it on each backend, ``--runs`` times.
4. The S3 client's start in a new process (import boto3, make the client),
   which every command on an S3 state pays once (part of 2).

Every figure is the median of its runs, with the 10th and 90th percentiles
and the median CPU time (of the plan's process; of this process for the rest:
MinIO's own work is not in it, it runs apart on the same machine).
MinIO: the endpoint and credentials of ``scripts/testenv`` (its env.json,
``parts.minio``) unless ``--endpoint`` and AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY say otherwise; a fresh bucket is made and deleted.
Results: printed as Markdown and written to bench/state/results.json (``--out``).

Usage: python bench/state/run.py [--services 1000] [--resources 2000]
           [--rounds 200] [--runs 20] [--trip-resources 10]
           [--endpoint http://127.0.0.1:19000] [--region us-east-1]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from modelform.state import Backend, State, load_backend, locked
from modelform.state.s3 import S3Backend

HERE = Path(__file__).resolve().parent
TESTENV = Path(os.environ.get("MODELFORM_CACHE", Path.home() / ".cache" / "modelform")) / "testenv"
BACKENDS = ("local", "s3")
T = TypeVar("T")


def _engine_bench() -> ModuleType:
    """bench/engine/run.py, for its generated project and its ``instant`` plugin."""
    spec = importlib.util.spec_from_file_location("engine_bench", HERE.parent / "engine" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


engine = _engine_bench()


# -- figures ---------------------------------------------------------------------------


def summary(xs: list[float]) -> dict[str, float]:
    """Median, 10th and 90th percentile (inclusive: within the runs' range)."""
    if len(xs) == 1:
        return {"median": xs[0], "p10": xs[0], "p90": xs[0]}
    q = statistics.quantiles(xs, n=10, method="inclusive")
    return {"median": statistics.median(xs), "p10": q[0], "p90": q[8]}


class Requests:
    """The HTTP requests an S3 client sends (each attempt, retries included), and
    the operations called, from botocore's event hooks."""

    def __init__(self, client: Any) -> None:
        self.sent = 0
        self.ops: Counter[str] = Counter()
        client.meta.events.register("before-send.s3", self._send)
        client.meta.events.register("before-call.s3", self._call)

    def _send(self, **_: Any) -> None:  # returning None: the request goes out
        self.sent += 1

    def _call(self, model: Any, **_: Any) -> None:
        self.ops[str(model.name)] += 1

    def take(self) -> tuple[int, dict[str, int]]:
        """The requests and operations since the last take."""
        out = self.sent, dict(sorted(self.ops.items()))
        self.sent, self.ops = 0, Counter()
        return out


class Side:
    """One backend's figures for one measure, per run: seconds (wall and this
    process's CPU), and the S3 requests."""

    def __init__(self, backend: Backend | None = None) -> None:
        self.seconds: list[float] = []
        self.cpu: list[float] = []
        self.requests: list[int] = []
        self.ops: list[tuple[tuple[str, int], ...]] = []
        # The client is made here, before any run is timed.
        self.counter = Requests(backend.client) if isinstance(backend, S3Backend) else None

    def timed(self, step: Callable[[], T]) -> T:
        if self.counter:
            self.counter.take()
        t0, c0 = time.perf_counter(), time.process_time()
        out = step()
        self.seconds.append(time.perf_counter() - t0)
        self.cpu.append(time.process_time() - c0)
        if self.counter:
            sent, ops = self.counter.take()
            self.requests.append(sent)
            self.ops.append(tuple(ops.items()))
        return out

    def pop_first(self) -> dict[str, Any]:
        """The first run's figures, taken out of this side's."""
        first = Side()
        first.seconds.append(self.seconds.pop(0))
        first.cpu.append(self.cpu.pop(0))
        if self.requests:
            first.requests.append(self.requests.pop(0))
            first.ops.append(self.ops.pop(0))
        return first.to_json()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: round(v, 5) for k, v in summary(self.seconds).items()}
        out["runs"] = len(self.seconds)
        if self.cpu:
            out["cpu_median"] = round(statistics.median(self.cpu), 5)
        if self.requests:
            out["requests_median"] = statistics.median(self.requests)
            out["requests_max"] = max(self.requests)
            # The most frequent mix of operations (all runs alike, usually).
            out["operations"] = dict(Counter(self.ops).most_common(1)[0][0])
        return out


# -- S3 --------------------------------------------------------------------------------


def minio_defaults() -> dict[str, Any]:
    """scripts/testenv's MinIO (endpoint, region, credentials), or nothing."""
    try:
        return dict(json.loads((TESTENV / "env.json").read_text())["parts"]["minio"])
    except (OSError, ValueError, KeyError):
        return {}


def admin_client(endpoint: str, region: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint, region_name=region,
        config=Config(s3={"addressing_style": "path"}),
    )  # fmt: skip


def drop_bucket(s3: Any, bucket: str) -> None:
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            s3.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
    s3.delete_bucket(Bucket=bucket)


# -- 1. round trip ---------------------------------------------------------------------


def round_trip(backend: Backend, n: int) -> None:
    """Lock, read, change one attribute of the first resource, write, unlock."""
    with locked(backend, "bench"):
        state = backend.read()
        if state is None:
            raise SystemExit(f"{backend.describe()}: no state to read")
        before = state.serial
        address = state.addresses()[0]
        rs = state.resources[address].copy()
        rs.attributes["bench_round"] = n
        state.set_resource(rs)
        if backend.write(state).serial != before + 1:
            raise SystemExit(f"{backend.describe()}: round {n} did not write a new serial")


def small_state(large: State, n: int) -> State:
    """A state of ``n`` resources of ``large``: its target(s), then services."""
    addresses = sorted(large.addresses(), key=lambda a: not a.startswith("target."))[:n]
    return State.new(resources={a: large.resources[a] for a in addresses})


def bench_round_trip(
    backends: dict[str, Backend], seed: State, rounds: int
) -> dict[str, dict[str, Any]]:
    sides = {name: Side(b) for name, b in backends.items()}
    for b in backends.values():
        b.write(seed.copy())
    for i in range(rounds + 1):  # the backends take turns
        for name, b in backends.items():
            sides[name].timed(partial(round_trip, b, i))
    out = {}
    for name, side in sides.items():
        # The first round asks whether the bucket keeps versions, opens the
        # connection, ...: reported apart from the rounds measured.
        first = side.pop_first()
        out[name] = {**side.to_json(), "first_round": first}
    return out


# -- 2. no-op plan ---------------------------------------------------------------------


def plan_once(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """One no-op plan: wall and CPU seconds. It must exit 0 and say so."""
    out = cwd.parent / f"{cwd.name}.out"
    with open(out, "wb") as f:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(p.pid, 0)
        elapsed = time.perf_counter() - t0
    assert p.stderr is not None
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    text = out.read_text(errors="replace")
    if code != 0 or "No changes." not in text:
        raise SystemExit(
            f"{' '.join(cmd)} in {cwd} exited {code} (a no-op plan exits 0): {text[-1500:]}{err}"
        )
    return elapsed, usage.ru_utime + usage.ru_stime


#: A sitecustomize for one plan that is not timed: the S3 requests it sends, by
#: operation, written at exit to $MODELFORM_BENCH_REQUESTS.
COUNT_REQUESTS = """
import atexit, json, os
from modelform.state import s3client

_made = s3client.S3Location.client
_sent = {"requests": 0, "operations": {}}


def _send(**_):
    _sent["requests"] += 1


def _call(model, **_):
    _sent["operations"][model.name] = _sent["operations"].get(model.name, 0) + 1


def _client(self):
    client = _made(self)
    client.meta.events.register("before-send.s3", _send)
    client.meta.events.register("before-call.s3", _call)
    return client


s3client.S3Location.client = _client
atexit.register(lambda: open(os.environ["MODELFORM_BENCH_REQUESTS"], "w").write(json.dumps(_sent)))
"""


def plan_requests(cmd: list[str], cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    """The S3 requests of one more plan (not timed), counted in its process."""
    hook = cwd.parent / "count-requests"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(COUNT_REQUESTS)
    found = cwd.parent / "plan-requests.json"
    path = os.pathsep.join([str(hook), env.get("PYTHONPATH", "")])
    plan_once(cmd, cwd, {**env, "PYTHONPATH": path, "MODELFORM_BENCH_REQUESTS": str(found)})
    sent = json.loads(found.read_text())
    n = int(sent["requests"])
    return {"requests_median": n, "requests_max": n, "operations": sent["operations"]}


def bench_plan(
    work: Path, n: int, runs: int, env: dict[str, str], s3: dict[str, str]
) -> dict[str, dict[str, Any]]:
    mf = [sys.executable, "-m", "modelform.cli"]
    dirs = {}
    for name in BACKENDS:
        d = work / f"plan-{name}-{n}"
        engine.modelform_project(d, n)
        if name == "s3":
            with open(d / "modelform.yaml", "a") as f:
                f.write("state:\n  backend: s3\n")
                f.writelines(f"  {k}: {v}\n" for k, v in s3.items())
        engine.sh([*mf, "apply", "-auto-approve"], d, env)
        dirs[name] = d
    if (dirs["s3"] / ".modelform" / "state.json").exists():
        raise SystemExit("the s3 project wrote a local state file: its state: section was ignored")
    plan = [*mf, "plan", "-detailed-exitcode"]
    sides = {name: Side() for name in BACKENDS}
    for _ in range(runs):
        for name, d in dirs.items():
            wall, cpu = plan_once(plan, d, env)
            sides[name].seconds.append(wall)
            sides[name].cpu.append(cpu)
    out = {name: side.to_json() for name, side in sides.items()}
    out["s3"].update(plan_requests(plan, dirs["s3"], env))
    return out


# -- 3. a large state ------------------------------------------------------------------


def applied_state(work: Path, resources: int, env: dict[str, str]) -> State:
    """The state of a real apply: ``resources`` - 1 services and their target."""
    d = work / f"applied-{resources}"
    engine.modelform_project(d, resources - 1)
    engine.sh([sys.executable, "-m", "modelform.cli", "apply", "-auto-approve"], d, env)
    state = load_backend("local", path=d / ".modelform" / "state.json").read()
    if state is None or len(state.resources) != resources:
        raise SystemExit(f"the apply in {d} did not record {resources} resources")
    return state


def bench_large(backends: dict[str, Backend], state: State, runs: int) -> dict[str, dict[str, Any]]:
    writes = {name: Side(b) for name, b in backends.items()}
    reads = {name: Side(b) for name, b in backends.items()}
    current = {name: b.write(state.copy()) for name, b in backends.items()}
    address = state.addresses()[0]
    for i in range(runs):
        for name, b in backends.items():
            new = current[name].copy()
            rs = new.resources[address].copy()
            rs.attributes["bench_run"] = i
            new.set_resource(rs)
            current[name] = writes[name].timed(partial(b.write, new))
            got = reads[name].timed(b.read)
            if got is None or got.serial != current[name].serial:
                raise SystemExit(f"{b.describe()}: read back another serial than written")
    out: dict[str, dict[str, Any]] = {}
    for name, b in backends.items():
        out[name] = {"write": writes[name].to_json(), "read": reads[name].to_json()}
        if isinstance(b, S3Backend):
            head = b.client.head_object(Bucket=b.bucket, Key=b.key)
            out[name]["bytes"] = int(head["ContentLength"])
        else:
            out[name]["bytes"] = os.path.getsize(b.describe())
    return out


# -- 4. the S3 client's start ----------------------------------------------------------

CLIENT_START = """
import time
t0 = time.perf_counter()
from modelform.state.s3client import S3Location
S3Location({bucket!r}, {endpoint!r}, {region!r}).client()
print(time.perf_counter() - t0)
"""


def bench_client_start(runs: int, bucket: str, endpoint: str, region: str) -> dict[str, Any]:
    code = CLIENT_START.format(bucket=bucket, endpoint=endpoint, region=region)
    side = Side()
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        side.seconds.append(float(out.stdout))
    return side.to_json()


# -- report ----------------------------------------------------------------------------


def cell(fig: dict[str, Any], unit: str) -> str:
    scale, digits = (1000.0, 1) if unit == "ms" else (1.0, 2)
    m, lo, hi = (f"{fig[k] * scale:.{digits}f}" for k in ("median", "p10", "p90"))
    cpu = f"; CPU {fig['cpu_median'] * scale:.{digits}f}" if "cpu_median" in fig else ""
    return f"{m} {unit} ({lo}–{hi}{cpu})"


def requests_cell(fig: dict[str, Any]) -> str:
    if "requests_median" not in fig:
        return "—"
    ops = ", ".join(f"{op} {n}" for op, n in fig["operations"].items())
    n = fig["requests_median"]
    more = f", up to {fig['requests_max']}" if fig["requests_max"] != n else ""
    return f"{n:g}{more} ({ops})"


def table(result: dict[str, Any]) -> str:
    head = ["measure", "runs", "local: median (p10–p90)", "s3: median (p10–p90)",
            "s3 ÷ local", "S3 requests each"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(label: str, local: dict[str, Any] | None, s3: dict[str, Any], unit: str) -> None:
        cells = [label, str(s3["runs"]), cell(local, unit) if local else "—", cell(s3, unit)]
        cells.append(f"{s3['median'] / local['median']:.1f}×" if local else "—")
        cells.append(requests_cell(s3))
        lines.append("| " + " | ".join(cells) + " |")

    trip, plan, large = result["round_trip"], result["plan"], result["large_state"]
    n, k = result["options"]["services"], result["options"]["trip_resources"]
    r = result["options"]["resources"]
    size = large["s3"]["bytes"]
    row(f"lock + read + write + unlock, state of {k} resources", trip["local"], trip["s3"], "ms")
    row(f"no-op `plan -detailed-exitcode`, {n:,} services", plan["local"], plan["s3"], "s")
    row(f"write the state of {r:,} resources ({size:,} bytes)",
        large["local"]["write"], large["s3"]["write"], "ms")  # fmt: skip
    row(f"read the state of {r:,} resources", large["local"]["read"], large["s3"]["read"], "ms")
    row("S3 client start in a new process (import boto3, make the client)",
        None, result["s3_client_start"], "ms")  # fmt: skip
    return "\n".join(lines)


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {mem:.0f} GiB, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--services", type=int, default=1000, help="services in the no-op plan")
    ap.add_argument("--resources", type=int, default=2000, help="resources in the large state")
    ap.add_argument("--rounds", type=int, default=200, help="lock/read/write/unlock rounds")
    ap.add_argument("--runs", type=int, default=20, help="plans, and large-state writes/reads")
    ap.add_argument("--trip-resources", type=int, default=10, help="resources in the round trip")
    minio = minio_defaults()
    ap.add_argument("--endpoint", default=minio.get("endpoint"), help="default: testenv's MinIO")
    ap.add_argument("--region", default=minio.get("region") or "us-east-1")
    ap.add_argument("--out", type=Path, default=HERE / "results.json", help="the JSON results")
    args = ap.parse_args()
    if not args.endpoint:
        ap.error("no --endpoint, and no MinIO in scripts/testenv's env.json (scripts/testenv up)")
    if args.resources < 2 or not 1 <= args.trip_resources <= args.resources:
        ap.error("--resources must be 2 or more and --trip-resources between 1 and --resources")
    # Credentials from the environment, as a user gives them; else testenv's.
    if not os.environ.get("AWS_ACCESS_KEY_ID") and minio.get("access_key"):
        os.environ["AWS_ACCESS_KEY_ID"] = minio["access_key"]
        os.environ["AWS_SECRET_ACCESS_KEY"] = minio["secret_key"]
    os.environ.pop("MODELFORM_STATE", None)  # it would put every state in one local file
    started = time.strftime("%Y-%m-%d %H:%M")
    load_before = os.getloadavg()
    admin = admin_client(args.endpoint, args.region)
    bucket = f"modelform-bench-{uuid.uuid4().hex[:8]}"
    admin.create_bucket(Bucket=bucket)
    try:
        with tempfile.TemporaryDirectory(prefix="modelform-bench-state-") as tmp:
            work = Path(tmp)
            env = engine.instant_env(sys.executable, work / "plugin")

            def open_backends(part: str) -> dict[str, Backend]:
                return {
                    "local": load_backend("local", path=work / part / "state.json"),
                    "s3": load_backend("s3", bucket=bucket, key=f"{part}/state.json",
                                       endpoint=args.endpoint, region=args.region),
                }  # fmt: skip

            print(f"applying {args.resources - 1:,} services for the large state", file=sys.stderr)
            large_state = applied_state(work, args.resources, env)
            seed = small_state(large_state, args.trip_resources)
            print(f"round trips: {args.rounds} per backend", file=sys.stderr)
            trip = bench_round_trip(open_backends("trip"), seed, args.rounds)
            print(f"no-op plans of {args.services:,} services", file=sys.stderr)
            s3_options = {"bucket": bucket, "key": f"plan-{args.services}/state.json",
                          "endpoint": args.endpoint, "region": args.region}  # fmt: skip
            plan = bench_plan(work, args.services, args.runs, env, s3_options)
            print(f"state of {args.resources:,} resources", file=sys.stderr)
            large = bench_large(open_backends("large"), large_state, args.runs)
            client_start = bench_client_start(args.runs, bucket, args.endpoint, args.region)
    finally:
        drop_bucket(admin, bucket)
    minio_version = TESTENV / "bin" / "minio.version"
    result = {
        "date": started,
        "machine": machine(),
        "load_average": [round(x, 1) for x in (*load_before, *os.getloadavg())],
        "command": " ".join(["python", "bench/state/run.py", *sys.argv[1:]]),
        "modelform": engine.commit_of(sys.executable),
        "s3": {
            "endpoint": args.endpoint,
            "minio": minio_version.read_text().strip() if minio_version.exists() else None,
            "bucket_versioning": False,
        },
        "options": {
            "services": args.services,
            "resources": args.resources,
            "rounds": args.rounds,
            "runs": args.runs,
            "trip_resources": args.trip_resources,
        },
        "round_trip": trip,
        "plan": plan,
        "large_state": large,
        "s3_client_start": client_start,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"machine: {result['machine']}; modelform {result['modelform']}; "
          f"S3: MinIO {result['s3']['minio'] or '?'} at {args.endpoint} (this machine); "
          f"load average before/after {result['load_average']}")  # fmt: skip
    print(table(result))


if __name__ == "__main__":
    main()
