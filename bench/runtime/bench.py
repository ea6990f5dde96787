#!/usr/bin/env python3
"""Scoring-runtime benchmark: modelform vs azureml-inference-server-http vs a bare ASGI app.

The same ``score.py`` (``apps/rowsum_score.py``, ``apps/ridge_score.py``)
is served by modelform and by azmlinfsrv (installed from PyPI into its
own venv under ``$MODELFORM_CACHE/bench``), with the same worker count;
``apps/bare_asgi.py`` on uvicorn does the same JSON work as the ceiling.
Each is loaded from a separate process on 127.0.0.1 by ``wrk`` (one
thread, a Lua script POSTing a fixed body) at each concurrency for a
bounded duration, after a short warm-up. Every server's answer is
checked against the expected result before it is measured.

The machine is shared and noisy, so all servers of a case run at once
(idle but for the one measured) and are measured in turn, round after
round; each figure is the median over the rounds, and each ratio is the
median of the per-round ratios (the two measured back to back). CPU per
request is the servers' own CPU time (master and workers) over the
requests they answered.

Usage: bench/runtime/run.sh [--workers 2] [--duration 4] [--rounds 5]
           [--concurrency 1,8,64] [--cases rowsum,ridge]
           [--servers modelform,azmlinfsrv,bare] [--out FILE]

Prints a table and the ratios, writes JSON (default
``$MODELFORM_CACHE/bench/runtime-<timestamp>.json``). Set-up needs
``wrk`` (Debian package) and scikit-learn in this Python; both are
installed when missing and this runs as root.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from report import aggregate, print_report, ratios

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
AZML_VERSION = "1.5.1"
BODY_ROWS = 10
SCRIPTS = {"rowsum": APPS / "rowsum_score.py", "ridge": APPS / "ridge_score.py"}
# One BLAS/OpenMP thread per worker for every server alike (2 workers on 2 cores).
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def cache_dir() -> Path:
    root = Path(os.environ.get("MODELFORM_CACHE", Path.home() / ".cache" / "modelform"))
    path = root / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- set-up -------------------------------------------------------------------
def ensure_tools() -> None:
    if shutil.which("wrk") is None:
        log("installing wrk (Debian package)")
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "wrk"], check=True, stdout=subprocess.DEVNULL
        )
    try:
        import sklearn  # noqa: F401
    except ImportError:
        log("installing scikit-learn into this Python")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "scikit-learn", "joblib"], check=True
        )


def ensure_azml_venv(cache: Path) -> Path:
    """A venv with azureml-inference-server-http and this Python's scikit-learn version."""
    import joblib
    import sklearn

    venv = cache / f"azmlinfsrv-{AZML_VERSION}"
    python = venv / "bin" / "python"
    wanted = (
        f"azureml-inference-server-http=={AZML_VERSION} "
        f"scikit-learn=={sklearn.__version__} joblib=={joblib.__version__}"
    )
    marker = venv / ".modelform-bench"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    log(f"creating {venv} ({wanted})")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *wanted.split()], check=True)
    marker.write_text(wanted)
    return python


def prepare_model(cache: Path) -> tuple[Path, list[list[float]]]:
    """Train Ridge on scikit-learn's diabetes data; return its folder and the request rows."""
    import joblib
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    x, y = load_diabetes(return_X_y=True)
    model_dir = cache / "model"
    model_dir.mkdir(exist_ok=True)
    joblib.dump(Ridge(alpha=1.0).fit(x, y), model_dir / "ridge.pkl")
    return model_dir, x[:BODY_ROWS].tolist()


def expected_answer(case: str, model_dir: Path, rows: list[list[float]]) -> list[float]:
    if case == "rowsum":
        return [sum(row) for row in rows]
    import joblib
    import numpy as np

    return joblib.load(model_dir / "ridge.pkl").predict(np.array(rows)).tolist()


# -- servers ------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_command(
    kind: str, case: str, port: int, workers: int, model_dir: Path, azml_python: Path | None
) -> list[str]:
    script = str(SCRIPTS[case])
    if kind.startswith("modelform"):
        argv = [
            sys.executable,
            "-m",
            "modelform.runtime",
            "--entry-script",
            script,
            "--model-dir",
            str(model_dir),
        ]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
        if kind == "modelform-nolog":
            argv.append("--no-access-log")
        if kind == "modelform-notimeout":
            argv += ["--timeout", "0"]
        return argv
    if kind == "azmlinfsrv":
        assert azml_python is not None
        argv = [str(azml_python), str(APPS / "azmlinfsrv_loopback.py"), "--entry_script", script]
        return argv + [
            "--model_dir",
            str(model_dir),
            "--port",
            str(port),
            "--worker_count",
            str(workers),
        ]
    if kind.startswith("bare"):
        loop = "asyncio" if kind == "bare-asyncio" else "uvloop"
        http = "h11" if kind == "bare-h11" else "httptools"
        argv = [sys.executable, "-m", "uvicorn", "bare_asgi:app", "--app-dir", str(APPS)]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
        return argv + ["--loop", loop, "--http", http, "--no-access-log", "--log-level", "warning"]
    raise SystemExit(f"error: unknown server kind {kind!r}")


class Server:
    def __init__(
        self, kind: str, case: str, argv: list[str], port: int, env: dict[str, str], logs: Path
    ):
        self.kind, self.case, self.port = kind, case, port
        logs.mkdir(parents=True, exist_ok=True)
        workdir = logs / f"{kind}-{case}-cwd"
        workdir.mkdir(exist_ok=True)
        self.log_path = logs / f"{kind}-{case}.log"
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=workdir,
                start_new_session=True,
            )

    def wait_correct(self, body: bytes, expected: list[float], timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(
                    f"error: {self.kind} exited ({self.proc.returncode}); see {self.log_path}"
                )
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.port}/score",
                data=body,
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    answer = json.loads(response.read())
                if len(answer) == len(expected) and all(
                    abs(a - b) <= 1e-6 * max(1.0, abs(b))
                    for a, b in zip(answer, expected, strict=True)
                ):
                    return
                last = f"wrong answer {answer!r}"
            except (OSError, ValueError) as error:
                last = str(error)
            time.sleep(0.2)
        raise SystemExit(
            f"error: {self.kind} never answered correctly ({last}); see {self.log_path}"
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)


# -- load ---------------------------------------------------------------------
def run_wrk(port: int, connections: int, duration: float, body_path: Path) -> dict[str, Any]:
    argv = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{duration:g}s", "--timeout", "10s"]
    argv += ["-s", str(HERE / "post.lua"), f"http://127.0.0.1:{port}/score"]
    env = {**os.environ, "BENCH_BODY": str(body_path)}
    done = subprocess.run(
        argv, capture_output=True, text=True, env=env, timeout=duration + 60, check=True
    )
    line = next(line for line in done.stdout.splitlines() if line.startswith("WRKJSON "))
    raw = json.loads(line.removeprefix("WRKJSON "))
    seconds = raw["duration_us"] / 1e6
    return {
        "rps": round(raw["requests"] / seconds, 1),
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "requests": raw["requests"],
        "errors": raw["non2xx"]
        + raw["connect_errors"]
        + raw["read_errors"]
        + raw["write_errors"]
        + raw["timeouts"],
        "wrk_command": " ".join(argv),
    }


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU time of the live processes in a process group (master and workers)."""
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_info(workers: int) -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy
    import orjson
    import sklearn
    import uvicorn

    commit = subprocess.run(
        ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "modelform_commit": commit or None,
        "numpy": numpy.__version__,
        "scikit_learn": sklearn.__version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "python": platform.python_version(),
        "uvicorn": uvicorn.__version__,
        "orjson": orjson.__version__,
        "azureml_inference_server_http": AZML_VERSION,
        "workers": workers,
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved repeats (median kept)")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of load before measuring"
    )
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--cases", default="rowsum,ridge")
    parser.add_argument(
        "--servers",
        default="modelform,azmlinfsrv,bare",
        help="also: modelform-nolog, modelform-notimeout, bare-h11, bare-asyncio",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.duration > 60 or args.workers > 8:
        parser.error("keep it bounded: --duration <= 60, --workers <= 8")
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    cases = args.cases.split(",")
    servers = args.servers.split(",")

    ensure_tools()
    cache = cache_dir()
    azml_python = ensure_azml_venv(cache) if "azmlinfsrv" in servers else None
    model_dir, rows = prepare_model(cache)
    body = json.dumps({"data": rows}).encode()
    body_path = cache / "body.json"
    body_path.write_bytes(body)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logs = cache / "logs" / stamp
    env = {**os.environ, **THREAD_ENV, "AZUREML_MODEL_DIR": str(model_dir)}
    env.pop("MODELFORM_AUTH_KEY", None)

    machine = machine_info(args.workers)  # at the start: the commit measured
    raw: list[dict[str, Any]] = []
    commands: dict[str, str] = {}
    for case in cases:
        expected = expected_answer(case, model_dir, rows)
        running: dict[str, Server] = {}
        try:
            for kind in servers:
                port = free_port()
                argv_ = server_command(kind, case, port, args.workers, model_dir, azml_python)
                commands[f"{kind}/{case}"] = " ".join(argv_)
                log(f"{case}: starting {kind} on port {port}")
                running[kind] = Server(kind, case, argv_, port, {**env, "BENCH_CASE": case}, logs)
            for server in running.values():
                server.wait_correct(body, expected)
                run_wrk(server.port, 8, args.warmup, body_path)
            # Interleave servers within each round so that the machine's noise hits all alike.
            for round_ in range(args.rounds):
                for conc in concurrencies:
                    order = servers[round_ % len(servers) :] + servers[: round_ % len(servers)]
                    for kind in order:
                        server = running[kind]
                        cpu_before = group_cpu_seconds(server.proc.pid)
                        measured = run_wrk(server.port, conc, args.duration, body_path)
                        cpu = group_cpu_seconds(server.proc.pid) - cpu_before
                        measured["cpu_us_per_req"] = round(
                            cpu / max(1, measured["requests"]) * 1e6, 1
                        )
                        log(
                            f"{case} round {round_ + 1} {kind} c={conc}: "
                            f"{measured['rps']:.0f} req/s "
                            f"p50 {measured['p50_ms']:.2f} ms p99 {measured['p99_ms']:.2f} ms "
                            f"cpu {measured['cpu_us_per_req']} us/req"
                        )
                        raw.append(
                            {
                                "case": case,
                                "server": kind,
                                "concurrency": conc,
                                "round": round_ + 1,
                                **measured,
                            }
                        )
        finally:
            for server in running.values():
                server.stop()

    results = aggregate(raw)
    ratio_rows = ratios(raw)
    print_report(results, ratio_rows)
    out = args.out or cache / f"runtime-{stamp}.json"
    report = {
        "machine": machine,
        "duration_s": args.duration,
        "body_bytes": len(body),
        "server_commands": commands,
        "results": results,
        "ratios": ratio_rows,
        "rounds": args.rounds,
        "raw": raw,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {out}; server logs in {logs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
