#!/usr/bin/env python3
"""IoT Edge target benchmark: message latency through the local edge hub.

A sensor module (``sensor.py``: a process on azure-iot-device,
``IoTHubModuleClient.create_from_edge_environment()``) sends diabetes
feature rows on its output ``rows``; the hub's route
``sensorToModel`` delivers them to the model module's input ``rows``; the
model module is the runtime's module mode (``python -m
modelform.runtime.edge.module --entry-script score.py --model-dir …
--inputs rows --output predictions``) running the quickstart's Ridge
``score.py`` (``--scripts ridge``) or a score.py whose ``run()`` returns its
input (``trivial``, for scale); its results are routed to ``$upstream``
(``modelToUpstream``) and land in the hub's ``DIR/upstream.jsonl``. All of
them are processes on this machine, not containers: the modules as
containers would add Docker's overhead at their start only (the hub is
reached over loopback TCP either way).

Each run (``--runs`` times, the scripts taking turns): a fresh state folder
and hub, the model module (waits for its start-up report), the sensor; a
warm-up of ``--warmup`` messages (excluded), then ``--messages`` measured
ones, as fast as the sensor's synchronous send goes (or every
``--interval`` seconds).

Measured, per run:

- **latency** per message = the hub's ``time.time()`` when it builds the
  message's upstream record (``store.upstream``, the record's ``epoch``,
  just before its line is written) − the sensor's ``time.time_ns()`` just
  before ``send_message_to_output`` (the message's ``sent_ns`` property,
  carried through the model's result). Both are CLOCK_REALTIME of one
  machine: one clock. p50/p90/p99/max over the measured messages;
- **throughput**: measured messages ÷ (last upstream record − first send);
  and the sensor's own send rate;
- the sensor's **send call** (send → PUBACK from the hub) p50/p99;
- **none lost, none duplicated**: every ``b-<i>`` correlation id exactly once
  upstream, from the model's ``predictions`` output, nothing else; the hub's
  counts (duplicates 0, nothing held at the end); the Ridge predictions are
  checked against the model's own ``predict``;
- **CPU seconds** (user + system, ``/proc/PID/stat``) of the hub, the model
  module and the sensor during the measured messages (from the warm-up's
  end to the last one upstream), and **peak RSS** (``VmHWM``) of the hub and
  the model module at the end of the run;
- the 1-minute **load average**, sampled every second during the run.

``azure-iot-device`` connects to port 8883 only, so on 127.0.0.1 each run
holds ``/tmp/modelform-edgehub-8883.lock`` (the lock the tests in
tests/runtime/edge take), waiting for it; ``--host 127.0.0.N`` (N ≠ 1: the
hub's certificate and ``GatewayHostName`` then name that address) runs
beside the tests without the lock.

Usage::

    .venv/bin/python bench/iotedge/run.py             # 10,000 messages, 3 runs, ridge + trivial
    .venv/bin/python bench/iotedge/run.py --messages 1000 --runs 1 --scripts ridge
    .venv/bin/python bench/iotedge/run.py --interval 0.005     # paced: 200 msg/s at most

Prints a Markdown table and writes JSON (``--out``, default
bench/iotedge/results.json) with every run's figures.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
QUICKSTART = REPO / "examples" / "quickstart"
PORT = 8883
DEVICE = "line-7"
PORT_LOCK = Path("/tmp/modelform-edgehub-8883.lock")
TICK = os.sysconf("SC_CLK_TCK")
ROUTES = {
    "sensorToModel": "FROM /messages/modules/sensor/outputs/rows "
    'INTO BrokeredEndpoint("/modules/diabetes/inputs/rows")',
    "modelToUpstream": "FROM /messages/modules/diabetes/outputs/predictions INTO $upstream",
    "errorsToUpstream": "FROM /messages/modules/diabetes/outputs/errors INTO $upstream",
}
TRIVIAL = '''import json


def init():
    pass


def run(raw_data):
    """The request, returned as it came."""
    return json.loads(raw_data)
'''


# -- figures ---------------------------------------------------------------------------


def pct(xs: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``xs``, linear between the closest ranks."""
    s = sorted(xs)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summary(xs: list[float], digits: int = 2) -> dict[str, float]:
    return {
        "n": len(xs),
        "min": round(min(xs), digits),
        "p50": round(pct(xs, 0.50), digits),
        "p90": round(pct(xs, 0.90), digits),
        "p99": round(pct(xs, 0.99), digits),
        "max": round(max(xs), digits),
        "mean": round(statistics.fmean(xs), digits),
    }


# -- processes -------------------------------------------------------------------------


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (all its threads)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.02)


@contextlib.contextmanager
def port_lock(needed: bool, timeout_s: float = 1800.0) -> Iterator[float]:
    """Hold the tests' flock for port 8883 (when ``needed``); yields the seconds waited."""
    if not needed:
        yield 0.0
        return
    with PORT_LOCK.open("a") as handle:
        t0 = time.monotonic()
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - t0 > timeout_s:
                    raise SystemExit(f"{PORT_LOCK} held for {timeout_s:.0f} s") from None
                time.sleep(0.2)
        try:
            yield time.monotonic() - t0
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class LoadSampler:
    """The 1-minute load average every second, on a thread."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while True:
            self.samples.append(float(Path("/proc/loadavg").read_text().split()[0]))
            if self._stop.wait(1.0):
                return

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


class Processes:
    """Every process a run starts; stopped at the end (SIGTERM, then SIGKILL of its group)."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            process = subprocess.Popen(
                argv, env=env, stdout=out, stderr=out, start_new_session=True,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        """Last started first (the sensor, the model, then the hub its goodbye goes to)."""
        for process in reversed(self.started):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


# -- the run ---------------------------------------------------------------------------


def manifest() -> dict[str, Any]:
    modules = {
        name: {
            "version": "1.0",
            "type": "docker",
            "status": "running",
            "restartPolicy": "always",
            "settings": {"image": f"{name}:1", "createOptions": "{}"},
        }
        for name in ("diabetes", "sensor")
    }
    return {
        "modulesContent": {
            "$edgeAgent": {
                "properties.desired": {
                    "schemaVersion": "1.1",
                    "runtime": {"type": "docker", "settings": {}},
                    "systemModules": {},
                    "modules": modules,
                }
            },
            "$edgeHub": {
                "properties.desired": {
                    "schemaVersion": "1.1",
                    "routes": ROUTES,
                    "storeAndForwardConfiguration": {"timeToLiveSecs": 7200},
                }
            },
        }
    }


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def prepare(work: Path) -> dict[str, Any]:
    """The Ridge model (the quickstart's train.py), the rows, the two score.py files."""
    model_dir = work / "model"
    subprocess.run(
        [sys.executable, str(QUICKSTART / "train.py"), "--out", str(model_dir / "ridge.pkl")],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    from sklearn.datasets import load_diabetes

    rows = [[float(x) for x in row] for row in load_diabetes().data]
    (work / "rows.json").write_text(json.dumps(rows))
    trivial = work / "trivial" / "score.py"
    trivial.parent.mkdir()
    trivial.write_text(TRIVIAL)
    return {
        "model_dir": model_dir,
        "rows": rows,
        "scripts": {"ridge": QUICKSTART / "src" / "score.py", "trivial": trivial},
    }


def expected_bodies(script: str, rows: list[list[float]], model_dir: Path) -> list[Any]:
    """What ``run()`` answers for each of the 442 rows (the body of its result)."""
    if script == "trivial":
        return [{"data": [row]} for row in rows]
    import joblib
    import numpy as np

    model = joblib.load(model_dir / "ridge.pkl")
    return [[float(p)] for p in model.predict(np.array(rows))]


def profile(args: argparse.Namespace, out: Path) -> list[str]:
    """``-m cProfile -o OUT`` when ``--profile-hub`` asks (the hub is one asyncio thread)."""
    return ["-m", "cProfile", "-o", str(out)] if args.profile_hub else []


def same(got: Any, want: Any) -> bool:
    """Equal, floats to 1e-9 relative (one row's predict and a batch's differ in the last bits)."""
    if isinstance(want, float):
        return isinstance(got, float) and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(same, got, want))
    if isinstance(want, dict):
        return (
            isinstance(got, dict)
            and got.keys() == want.keys()
            and all(same(got[k], want[k]) for k in want)
        )
    return bool(got == want)


def one_run(
    args: argparse.Namespace, work: Path, prepared: dict[str, Any], script: str, index: int
) -> dict[str, Any]:
    run_dir = work / f"run-{index}-{script}"
    state = run_dir / "state"
    run_dir.mkdir()
    manifest_path = run_dir / "manifest.json"
    manifest_path.write_text(json.dumps(manifest(), indent=2))
    processes = Processes()
    base_env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1"}  # fmt: skip
    with port_lock(args.host == "127.0.0.1") as waited, LoadSampler() as load:
        try:
            hub = processes.start(
                [sys.executable, *profile(args, run_dir / "hub.prof"), "-m",
                 "modelform.runtime.edge.hub", "--manifest",
                 str(manifest_path), "--state-dir", str(state), "--host", args.host,
                 "--port", str(PORT), "--device", DEVICE,
                 *(["--pace", str(args.pace)] if args.pace is not None else [])],
                run_dir / "hub.log", base_env,
            )  # fmt: skip

            def status() -> dict[str, Any]:
                if hub.poll() is not None:
                    log = (run_dir / "hub.log").read_text()[-2000:]
                    raise SystemExit(f"hub exited {hub.returncode}: {log}")
                return read_json(state / "status.json") or {}

            wait_for(lambda: status().get("pid") == hub.pid, 60, "the hub's status")
            from modelform.runtime.edge import connection_string

            def module_env(module: str) -> dict[str, str]:
                return {
                    **base_env,
                    "EdgeHubConnectionString": connection_string(state, module),
                    "EdgeModuleCACertificateFile": str(state / "ca.pem"),
                }

            model = processes.start(
                [sys.executable, "-m", "modelform.runtime.edge.module", "--entry-script",
                 str(prepared["scripts"][script]), "--model-dir", str(prepared["model_dir"]),
                 "--inputs", "rows", "--output", "predictions", "--error-output", "errors"],
                run_dir / "diabetes.log", module_env("diabetes"),
            )  # fmt: skip

            def model_started() -> bool:
                if model.poll() is not None:
                    log = (run_dir / "diabetes.log").read_text()[-2000:]
                    raise SystemExit(f"model module exited {model.returncode}: {log}")
                twins = read_json(state / "twins.json") or {}
                reported = twins.get("diabetes", {}).get("reported", {}).get("modelform", {})
                return bool(reported.get("pid") == model.pid)

            wait_for(model_started, 120, "the model module's start-up report")
            go = run_dir / "go"
            sensor = processes.start(
                [sys.executable, str(HERE / "sensor.py")],
                run_dir / "sensor.log",
                {**module_env("sensor"), "ROWS": str(work / "rows.json"),
                 "WARMUP": str(args.warmup), "COUNT": str(args.messages),
                 "INTERVAL": str(args.interval), "GO": str(go),
                 "OUT": str(run_dir / "sensor.json")},
            )  # fmt: skip

            def upstream_count() -> int:
                if sensor.poll() not in (None, 0):
                    log = (run_dir / "sensor.log").read_text()[-2000:]
                    raise SystemExit(f"sensor exited {sensor.returncode}: {log}")
                return int(status().get("counts", {}).get("upstream", 0))

            wait_for(lambda: upstream_count() >= args.warmup, 60 + args.warmup / 20, "warm-up")
            time.sleep(0.5)  # the warm-up's last acknowledgements and status writes settle
            cpu0 = {"hub": proc_cpu(hub.pid), "model": proc_cpu(model.pid),
                    "sensor": proc_cpu(sensor.pid)}  # fmt: skip
            load_from = len(load.samples)
            go.touch()
            total = args.warmup + args.messages
            wait_for(lambda: upstream_count() >= total, args.timeout, f"{total} upstream")
            cpu1 = {"hub": proc_cpu(hub.pid), "model": proc_cpu(model.pid)}
            with contextlib.suppress(OSError):  # the sensor is usually still shutting down
                cpu1["sensor"] = proc_cpu(sensor.pid)
            if sensor.wait(60) != 0:
                raise SystemExit(f"sensor exited {sensor.returncode}")
            time.sleep(1.0)  # nothing more arrives (a duplicate would), status written
            final = status()
            memory = {
                "hub_peak_rss_mb": round(proc_status(hub.pid, "VmHWM") / 1024, 1),
                "hub_rss_mb": round(proc_status(hub.pid, "VmRSS") / 1024, 1),
                "model_peak_rss_mb": round(proc_status(model.pid, "VmHWM") / 1024, 1),
                "model_rss_mb": round(proc_status(model.pid, "VmRSS") / 1024, 1),
            }
            text = (state / "upstream.jsonl").read_text()  # the hub is still running:
            records = [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]
        finally:
            processes.stop_all()
    sensor_out = json.loads((run_dir / "sensor.json").read_text())
    return analyse(
        args, prepared, script, records, final, sensor_out,
        cpu={k: round(cpu1[k] - cpu0[k], 2) for k in cpu1},
        memory=memory, load=load.samples[load_from:] or load.samples, lock_wait_s=waited,
    )  # fmt: skip


def analyse(
    args: argparse.Namespace,
    prepared: dict[str, Any],
    script: str,
    records: list[dict[str, Any]],
    final: dict[str, Any],
    sensor_out: dict[str, Any],
    *,
    cpu: dict[str, float],
    memory: dict[str, float],
    load: list[float],
    lock_wait_s: float,
) -> dict[str, Any]:
    """Figures of one run, and what is wrong with it (lost, duplicated, wrong, held)."""
    n = args.messages
    measured = [r for r in records if str(r.get("correlation_id", "")).startswith("b-")]
    counts = Counter(r["correlation_id"] for r in measured)
    expected_ids = {f"b-{i}" for i in range(n)}
    lost = sorted(expected_ids - set(counts), key=lambda c: int(c[2:]))
    duplicated = sorted(c for c, k in counts.items() if k > 1)
    warm = sum(1 for r in records if str(r.get("correlation_id", "")).startswith("w-"))
    stray = len(records) - len(measured) - warm
    rows = prepared["rows"]
    bodies = expected_bodies(script, rows, prepared["model_dir"])
    wrong = 0
    latencies = []
    for r in measured:
        i = int(r["correlation_id"][2:])
        if r.get("output") != "predictions" or not same(
            json.loads(r["body"]), bodies[i % len(rows)]
        ):
            wrong += 1
        latencies.append(r["epoch"] * 1000 - int(r["properties"]["sent_ns"]) / 1e6)
    last_upstream = max(r["epoch"] for r in measured)
    span = last_upstream - sensor_out["first"]
    problems = []
    if lost:
        problems.append(f"{len(lost)} lost (first {lost[:5]})")
    if duplicated:
        problems.append(f"{len(duplicated)} duplicated (first {duplicated[:5]})")
    if wrong:
        problems.append(f"{wrong} wrong results")
    if stray or warm != args.warmup:
        problems.append(f"{stray} stray records, {warm} of {args.warmup} warm-up upstream")
    hub_counts = final.get("counts", {})
    if hub_counts.get("duplicates") or final.get("held"):
        problems.append(f"hub: {hub_counts.get('duplicates')} duplicates, {final.get('held')} held")
    return {
        "script": script,
        "run": args.run_number,
        "messages": n,
        "warmup": args.warmup,
        "interval_s": args.interval,
        "hub_pace": args.pace,
        "problems": problems,
        "lost": len(lost),
        "duplicated": len(duplicated),
        "latency_ms": summary(latencies),
        "throughput_msg_s": round(n / span, 1),
        "sensor_send_rate_msg_s": round(n / (sensor_out["last"] - sensor_out["first"]), 1),
        "sensor_send_call_ms": summary([us / 1000 for us in sensor_out["send_us"]]),
        "cpu_s": cpu,
        "cpu_ms_per_message": {k: round(v * 1000 / n, 3) for k, v in cpu.items()},
        **memory,
        "hub_counts": hub_counts,
        "load_1min": {"min": min(load), "max": max(load)},
        "lock_wait_s": round(lock_wait_s, 1),
    }


# -- report ----------------------------------------------------------------------------


def table(results: list[dict[str, Any]]) -> str:
    head = (
        "| script | run | msg/s | p50 ms | p90 ms | p99 ms | max ms | lost | dup | "
        "hub CPU s | model CPU s | hub peak MB | model peak MB | load |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in results:
        lat = r["latency_ms"]
        lines.append(
            f"| {r['script']} | {r['run']} | {r['throughput_msg_s']:.0f} | {lat['p50']:.1f} | "
            f"{lat['p90']:.1f} | {lat['p99']:.1f} | {lat['max']:.1f} | {r['lost']} | "
            f"{r['duplicated']} | {r['cpu_s']['hub']:.2f} | {r['cpu_s']['model']:.2f} | "
            f"{r['hub_peak_rss_mb']:.1f} | {r['model_peak_rss_mb']:.1f} | "
            f"{r['load_1min']['min']:.2f}–{r['load_1min']['max']:.2f} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "runtime/edge", "bench/iotedge"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    return {
        "commit": commit,
        "edge_paths_dirty": bool(dirty),
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scripts", default="ridge,trivial", help="ridge,trivial")
    parser.add_argument("--interval", type=float, default=0.0, help="seconds between sends")
    parser.add_argument("--host", default="127.0.0.1", help="hub address (port is 8883)")
    parser.add_argument("--timeout", type=float, default=600.0, help="per run, seconds")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    parser.add_argument("--pace", type=int, default=None, help="the hub's --pace (default its)")
    parser.add_argument("--profile-hub", action="store_true", help="cProfile the hub (--keep)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = parser.parse_args()
    scripts = [s.strip() for s in args.scripts.split(",") if s.strip()]
    if not scripts or any(s not in ("ridge", "trivial") for s in scripts):
        parser.error("--scripts takes ridge and/or trivial")
    if args.messages < 1 or args.warmup < 0 or args.runs < 1:
        parser.error("--messages and --runs must be positive, --warmup 0 or more")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the processes, then exit
    work = Path(tempfile.mkdtemp(prefix="mf-bench-iotedge-"))
    about = machine()
    results = []
    try:
        prepared = prepare(work)
        for index in range(args.runs):
            for script in scripts:
                args.run_number = index + 1
                result = one_run(args, work, prepared, script, index)
                results.append(result)
                lat = result["latency_ms"]
                print(
                    f"{script} run {index + 1}: {result['throughput_msg_s']:.0f} msg/s, "
                    f"p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms, "
                    f"hub {result['hub_peak_rss_mb']} MB, "
                    f"{'; '.join(result['problems']) or 'none lost or duplicated'}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        if args.keep:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    ordered = sorted(results, key=lambda r: scripts.index(r["script"]))
    print(table(ordered))
    args.out.write_text(json.dumps({"machine": about, "runs": ordered}, indent=1) + "\n")
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 1 if any(r["problems"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
