"""The runtime's IoT Edge module mode against the real edge hub and azure-iot-device.

A sensor module sends diabetes rows; the hub routes them to
``python -m modelform.runtime.edge.module`` running the quickstart's
unchanged ``score.py`` and Ridge model; its results go to ``$upstream``.
Checked: every prediction equals the HTTP runtime's for the same row,
correlation ids and properties kept; rows ``run()`` fails on go to the
error output and the rest still arrive; a desired-property change in the
manifest reaches the script's ``on_twin`` without a restart (and a raw-
request script sees the message); SIGTERM stops cleanly with the counts
reported; a missing edge environment or a failing ``init()`` is one line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from edge_harness import ROUTES, EdgeRun, manifest, percentile, read_lines, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[3]
QUICKSTART = REPO / "examples" / "quickstart"
SCORE = QUICKSTART / "src" / "score.py"
MODULE_ARGS = ["--inputs", "rows", "--output", "predictions", "--error-output", "errors"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quickstart's model, trained by its own train.py."""
    out = tmp_path_factory.mktemp("model") / "ridge.pkl"
    subprocess.run(
        [sys.executable, str(QUICKSTART / "train.py"), "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out.parent


@pytest.fixture(scope="module")
def rows() -> list[list[float]]:
    from sklearn.datasets import load_diabetes

    features = load_diabetes().data
    return [[float(x) for x in row] for row in features]


def start_hub(edge: EdgeRun, desired: dict[str, Any] | None = None) -> None:
    edge.write_manifest(manifest(["diabetes", "sensor"], ROUTES, {"diabetes": desired or {}}))
    edge.start_hub()


def reported(edge: EdgeRun) -> dict[str, Any]:
    try:
        twins = json.loads((edge.state / "twins.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    section: dict[str, Any] = twins.get("diabetes", {}).get("reported", {}).get("modelform", {})
    return section


def start_model(
    edge: EdgeRun, script: Path, model_dir: Path | None, *args: str, **env: str
) -> subprocess.Popen[bytes]:
    """The module mode as the edge agent would start it; waits for its start-up report."""
    argv = [sys.executable, "-m", "modelform.runtime.edge.module", "--entry-script", str(script)]
    if model_dir is not None:
        argv += ["--model-dir", str(model_dir)]
    log = (edge.root / "diabetes.log").open("ab")
    process = subprocess.Popen(
        [*argv, *MODULE_ARGS, *args],
        env=edge.module_env("diabetes", **env),
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    log.close()
    edge.processes.append(process)

    def started() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"module exited {process.returncode}: {module_log(edge)}")
        return reported(edge).get("pid") == process.pid

    wait_for(started, 60, "the model module's start-up report")
    return process


def module_log(edge: EdgeRun) -> str:
    return (edge.root / "diabetes.log").read_text(errors="replace")


def events(edge: EdgeRun, name: str) -> list[dict[str, Any]]:
    found = []
    for line in module_log(edge).splitlines():
        if line.startswith("{") and f'"event":"{name}"' in line:
            found.append(json.loads(line))
    return found


def send(edge: EdgeRun, bodies: list[str], prefix: str) -> subprocess.Popen[bytes]:
    path = edge.root / f"bodies-{prefix}.json"
    path.write_text(json.dumps(bodies))
    return edge.start_module("body_sensor.py", "sensor", BODIES=str(path), PREFIX=prefix)


def stop_model(edge: EdgeRun, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    """SIGTERM: exit 0, a ``stopped`` line, the final counts reported; returns them."""
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0, module_log(edge)
    assert len(events(edge, "stopped")) == 1
    final = reported(edge)
    assert final["status"] == "stopped" and final["pid"] == process.pid
    return final


def test_predictions_match_the_http_runtime_and_keep_correlation(
    edge: EdgeRun, model_dir: Path, rows: list[list[float]], start_server: Any
) -> None:
    count = 1000
    bodies = [json.dumps({"data": [rows[i % len(rows)]]}) for i in range(count)]
    # What the HTTP runtime answers for each distinct row, with the same script and model.
    server = start_server(SCORE.read_text(), model_dir=model_dir)
    expected = [server.post({"data": [row]}).json() for row in rows]
    assert all(isinstance(x, list) and len(x) == 1 for x in expected)
    server.stop()

    start_hub(edge)
    model = start_model(edge, SCORE, model_dir)
    assert events(edge, "ready")[0]["sender"] == "PipelinedSender"
    assert send(edge, bodies, "m").wait(120) == 0
    wait_for(lambda: len(edge.upstream()) >= count, 60, f"{count} upstream")
    time.sleep(0.5)
    records = edge.upstream()
    assert Counter(r["correlation_id"] for r in records) == Counter(
        {f"m-{i}": 1 for i in range(count)}
    )
    for record in records:
        i = int(record["properties"]["index"])
        assert record["correlation_id"] == f"m-{i}"
        assert (record["module"], record["output"]) == ("diabetes", "predictions")
        assert record["properties"]["odd"] == "a&b=c%d e"
        assert record["content_type"] == "application/json"
        assert json.loads(record["body"]) == expected[i % len(rows)], i
    assert events(edge, "run_failed") == []

    latencies = [r["epoch"] * 1000 - int(r["properties"]["sent_ns"]) / 1e6 for r in records]
    print(
        f"\nedge module (quickstart Ridge), {count} messages sensor -> hub -> model -> upstream: "
        f"p50 {percentile(latencies, 0.5):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms, "
        f"max {max(latencies):.1f} ms"
    )
    final = stop_model(edge, model)
    assert (final["received"], final["processed"], final["sent"]) == (count, count, count)
    assert (final["failed"], final["ignored"], final["send_failed"]) == (0, 0, 0)
    assert "desired_version" not in final  # no on_twin: the twin is not read (null = absent)


def test_rows_run_fails_on_go_to_the_error_output_and_the_rest_arrive(
    edge: EdgeRun, model_dir: Path, rows: list[list[float]]
) -> None:
    count = 200
    bodies = []
    for i in range(count):
        row = rows[i]
        if i % 10 == 3:
            row = row[:9]  # nine features: Ridge.predict raises ValueError
        bodies.append(json.dumps({"data": [row]}))
    bodies[7] = "not json"  # json.loads in run() raises

    start_hub(edge)
    # The public synchronous send, from threads (the fallback when the SDK has no pipeline).
    model = start_model(edge, SCORE, model_dir, MODELFORM_EDGE_SYNC_SEND="1")
    assert events(edge, "ready")[0]["sender"] == "ThreadedSender"
    assert send(edge, bodies, "f").wait(120) == 0
    wait_for(lambda: len(edge.upstream()) >= count, 60, f"{count} upstream")
    time.sleep(0.5)
    records = edge.upstream()
    by_id = {r["correlation_id"]: r for r in records}
    assert len(records) == count and set(by_id) == {f"f-{i}" for i in range(count)}
    failing = {i for i in range(count) if i % 10 == 3} | {7}
    for i in range(count):
        record = by_id[f"f-{i}"]
        assert record["properties"]["index"] == str(i)
        body = json.loads(record["body"])
        if i in failing:
            assert (record["output"], record["route"]) == ("errors", "errorsToUpstream")
            assert body["input"] == "rows"
            expected_error = "JSONDecodeError" if i == 7 else "ValueError"
            assert body["error"] == expected_error
            assert body["message"].startswith(
                f"An unexpected error occurred in scoring script: {expected_error}: "
            )
        else:
            assert (record["output"], record["route"]) == ("predictions", "modelToUpstream")
            assert isinstance(body, list) and len(body) == 1 and isinstance(body[0], float)
    failures = events(edge, "run_failed")
    assert sorted(int(e["correlation_id"].split("-")[1]) for e in failures) == sorted(failing)
    assert all("Traceback" in e["traceback"] for e in failures)
    assert model.poll() is None  # still running
    final = stop_model(edge, model)
    assert (final["processed"], final["failed"], final["sent"]) == (count - 21, 21, count)


TWIN_SCRIPT = """
import json
import os

from azureml.contrib.services.aml_request import rawhttp

settings = {}


def init():
    settings["threshold"] = None


def on_twin(desired):
    settings["threshold"] = desired.get("threshold")
    settings["version"] = desired.get("$version")
    with open(os.environ["TWINLOG"], "a") as log:
        log.write(json.dumps({"pid": os.getpid(), "desired": desired}) + "\\n")


@rawhttp
def run(request):
    return {
        "threshold": settings["threshold"],
        "version": settings["version"],
        "input": request.input_name,
        "odd": request.properties.get("odd"),
        "content_type": request.headers.get("Content-Type"),
        "correlation_id": request.correlation_id,
        "size": len(request.get_data()),
        "method": request.method,
    }
"""


def test_desired_property_change_reaches_on_twin_without_a_restart(edge: EdgeRun) -> None:
    script = edge.root / "twin_score.py"
    script.write_text(textwrap.dedent(TWIN_SCRIPT))
    twin_log = edge.root / "twin.log"
    start_hub(edge, {"threshold": 0.5, "labels": {"low": "a"}})
    model = start_model(edge, script, None, TWINLOG=str(twin_log))
    first = [json.loads(line) for line in read_lines(twin_log)]
    assert first == [
        {
            "pid": model.pid,
            "desired": {"threshold": 0.5, "labels": {"low": "a"}, "$version": 1},
        }
    ]
    assert reported(edge)["desired_version"] == 1

    body = json.dumps({"data": [[1, 2]]})
    assert send(edge, [body] * 3, "a").wait(60) == 0
    wait_for(lambda: len(edge.upstream()) >= 3, 30, "3 upstream")
    for record in edge.upstream():
        assert json.loads(record["body"]) == {
            "threshold": 0.5,
            "version": 1,
            "input": "rows",
            "odd": "a&b=c%d e",
            "content_type": "application/json",
            "correlation_id": record["correlation_id"],
            "size": len(body),
            "method": "POST",
        }

    edge.write_manifest(
        manifest(
            ["diabetes", "sensor"],
            ROUTES,
            {"diabetes": {"threshold": 0.7, "labels": {"high": "b"}}},
        )
    )
    assert edge.hub is not None
    edge.hub.send_signal(signal.SIGHUP)
    calls = wait_for(
        lambda: len(lines := read_lines(twin_log)) >= 2 and [json.loads(x) for x in lines],
        30,
        "on_twin called again",
    )
    assert calls[1] == {
        "pid": model.pid,
        "desired": {"threshold": 0.7, "labels": {"high": "b"}, "$version": 2},
    }
    assert send(edge, [body] * 3, "b").wait(60) == 0
    wait_for(lambda: len(edge.upstream()) >= 6, 30, "6 upstream")
    after = [json.loads(r["body"]) for r in edge.upstream() if r["correlation_id"][0] == "b"]
    assert [(x["threshold"], x["version"]) for x in after] == [(0.7, 2)] * 3
    # The same process and connection throughout.
    assert model.poll() is None
    status = edge.module_status("diabetes")
    assert status["connected"] and status["connects"] == 1
    wait_for(lambda: reported(edge).get("desired_version") == 2, 30, "desired_version 2 reported")
    assert len(read_lines(twin_log)) == 2
    stop_model(edge, model)


def test_module_outlives_a_hub_restart(edge: EdgeRun) -> None:
    """The SDK reconnects with its old session and never subscribes again: the restarted hub
    gives the session its subscriptions back, and the twin changed meanwhile reaches on_twin."""
    script = edge.root / "twin_score.py"
    script.write_text(textwrap.dedent(TWIN_SCRIPT))
    twin_log = edge.root / "twin.log"
    start_hub(edge, {"threshold": 0.5})
    model = start_model(edge, script, None, TWINLOG=str(twin_log))
    assert edge.stop_hub() == 0
    edge.write_manifest(manifest(["diabetes", "sensor"], ROUTES, {"diabetes": {"threshold": 0.9}}))
    edge.start_hub()
    # The SDK tries again every 10 s (its connection_retry_interval).
    calls = wait_for(
        lambda: len(lines := read_lines(twin_log)) >= 2 and [json.loads(x) for x in lines],
        60,
        "on_twin after the reconnect",
    )
    assert calls[1] == {"pid": model.pid, "desired": {"threshold": 0.9, "$version": 2}}
    wait_for(lambda: edge.module_status("diabetes").get("ready"), 30, "the module subscribed")
    assert send(edge, [json.dumps({"data": []})] * 3, "r").wait(60) == 0
    wait_for(lambda: len(edge.upstream()) >= 3, 30, "3 upstream after the restart")
    assert [json.loads(r["body"])["threshold"] for r in edge.upstream()] == [0.9] * 3
    assert model.poll() is None
    final = stop_model(edge, model)
    assert (final["processed"], final["desired_version"]) == (3, 2)


def test_bad_environment_and_failing_init_are_one_line(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "modelform.runtime.edge.module", "--entry-script"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EdgeHub")}
    env.pop("EdgeModuleCACertificateFile", None)

    def run(script: Path, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*base, str(script), *MODULE_ARGS],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=60,
        )

    done = run(SCORE)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: EdgeHubConnectionString and EdgeModuleCACertificateFile not set "
        "(the IoT Edge agent sets them for a module)"
    )
    edge_env = {
        "EdgeHubConnectionString": "HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=a2V5;"
        "GatewayHostName=127.0.0.1",
        "EdgeModuleCACertificateFile": str(tmp_path / "nosuch.pem"),
    }
    done = run(SCORE, **edge_env)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: cannot read EdgeModuleCACertificateFile")
    assert "Traceback" not in done.stderr and "a2V5" not in done.stdout + done.stderr

    done = subprocess.run(
        [*base, str(tmp_path / "missing.py")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: entry script not found: {tmp_path / 'missing.py'}"

    # init() raising: exit 3, the traceback logged, before any connection is tried.
    from modelform.runtime.edge import certs

    certs.ensure(tmp_path, certs.names_for("127.0.0.1", []))
    broken = tmp_path / "broken.py"
    broken.write_text(
        "def init():\n    raise RuntimeError('no model')\n\ndef run(data):\n    pass\n"
    )
    done = run(broken, **{**edge_env, "EdgeModuleCACertificateFile": str(tmp_path / "ca.pem")})
    failed = [json.loads(x) for x in done.stdout.splitlines() if '"init_failed"' in x]
    assert done.returncode == 3, done.stdout + done.stderr
    assert failed and failed[0]["error"] == "RuntimeError: no model"
    assert not [x for x in done.stdout.splitlines() if '"connected"' in x]


def test_options_round_trip_through_the_command_line(tmp_path: Path) -> None:
    from modelform.runtime.edge.module import (
        ModuleOptions,
        OptionsError,
        build_parser,
        options_from_namespace,
    )

    options = ModuleOptions(
        entry_script=SCORE,
        model_dir=tmp_path,
        inputs=("rows", "more"),
        output="predictions",
        error_output="bad",
        timeout=None,
        report_interval=2.5,
    )
    parsed = options_from_namespace(build_parser().parse_args(options.to_argv()))
    assert parsed == options
    with pytest.raises(OptionsError, match="bad input name '\\$in'"):
        options_from_namespace(
            build_parser().parse_args(["--entry-script", str(SCORE), "--inputs", "$in"])
        )
