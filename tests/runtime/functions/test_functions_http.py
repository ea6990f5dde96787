"""The host's HTTP side on a real process: routes, function keys, health, status, stop."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from functions_harness import HostFactory, write_app

from modelform.runtime.functions.appdigest import app_digest

pytestmark = pytest.mark.timeout(120)

KEY = "k3y-for-tests"

HTTP_APP = """
import json
import os

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.route(route="score", methods=["POST"])
def score(req: func.HttpRequest) -> func.HttpResponse:
    data = req.get_json()["data"]
    return func.HttpResponse(
        json.dumps({"sum": sum(data), "greeting": os.environ.get("GREETING")}),
        mimetype="application/json",
        headers={"x-scored": "yes"},
    )


@app.route(route="items/{id:int}/{rest?}", auth_level=func.AuthLevel.ANONYMOUS)
def items(req: func.HttpRequest, context: func.Context) -> str:
    return f"{req.route_params.get('id')}|{req.route_params.get('rest')}|{req.params.get('q')}"


@app.route(route="doc", auth_level=func.AuthLevel.ANONYMOUS)
async def doc(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"key_visible": "MODELFORM_FUNCTION_KEY" in os.environ}))


@app.route(route="boom", auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("boom")
"""


def test_routes_keys_health_and_status(tmp_path: Path, hosts: HostFactory) -> None:
    app_dir = write_app(tmp_path / "app", HTTP_APP, settings={"GREETING": "from-file"})
    host = hosts.start(app_dir, {"GREETING": "from-env"}, key=KEY)

    scored = host.post("/api/score", json={"data": [1, 2, 3]}, headers={"x-functions-key": KEY})
    assert scored.status_code == 200, scored.text
    assert scored.json() == {"sum": 6, "greeting": "from-env"}  # the environment wins
    assert scored.headers["x-scored"] == "yes"
    assert scored.headers["content-type"].startswith("application/json")
    assert host.post(f"/api/score?code={KEY}", json={"data": [1]}).json()["sum"] == 1
    assert host.post("/api/score", json={"data": [1]}).status_code == 401
    assert host.post("/api/score?code=wrong", json={"data": [1]}).status_code == 401
    assert (
        host.post("/api/score", json={"data": [1]}, headers={"x-functions-key": "no"}).status_code
        == 401
    )
    assert host.get("/api/score", headers={"x-functions-key": KEY}).status_code == 404  # POST only

    assert host.get("/api/items/12/more?q=z").text == "12|more|z"
    assert host.get("/API/items/7").text == "7|None|None"
    assert host.get("/api/items/x").status_code == 404
    assert host.get("/api/doc").json() == {"key_visible": False}  # user code never sees it
    failed = host.get("/api/boom")
    assert (failed.status_code, failed.text) == (500, "")

    assert (host.get("/").status_code, host.get("/").text) == (200, "Healthy")
    status = host.status()
    assert status["state"] == "Running"
    assert status["app_digest"] == app_digest(app_dir)
    assert sorted(status["functions"]) == ["boom", "doc", "items", "score"]
    assert status["counts"]["score"] == {"invocations": 2, "failures": 0, "poisoned": 0}
    assert status["counts"]["boom"] == {"invocations": 1, "failures": 1, "poisoned": 0}
    assert status["triggers"]["score"]["auth"] == "function"
    assert status["triggers"]["items"]["url"] == "/api/items/{id:int}/{rest?}"
    failure = next(event for event in host.events("invocation") if event["function"] == "boom")
    assert failure["result"] == "failed" and "RuntimeError: boom" in failure["error"]
    assert "Traceback" in failure["traceback"]

    assert host.terminate() == 0
    stopped = host.wait_event("stopped")
    assert stopped[0]["counts"]["score"]["invocations"] == 2


def test_without_a_key_function_routes_refuse_everyone(tmp_path: Path, hosts: HostFactory) -> None:
    app_dir = write_app(tmp_path / "app", HTTP_APP)
    host = hosts.start(app_dir, {})
    assert (
        host.post("/api/score", json={"data": [1]}, headers={"x-functions-key": ""}).status_code
        == 401
    )
    assert host.get("/api/items/1").status_code == 200
    warning = host.wait_event("no_function_key")[0]
    assert warning["functions"] == ["score"]


def test_an_app_that_cannot_load_is_one_line_and_exit_3(tmp_path: Path) -> None:
    app_dir = write_app(
        tmp_path / "app",
        """
        import azure.functions as func
        app = func.FunctionApp()

        @app.blob_trigger(arg_name="b", path="c/{name}", connection="MissingSetting")
        def f(b: func.InputStream) -> None:
            pass
        """,
    )
    done = subprocess.run(
        [sys.executable, "-m", "modelform.runtime.functions", str(app_dir), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        "error: function f: connection MissingSetting: the app setting MissingSetting is not set"
    ), done.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "modelform.runtime.functions", str(app_dir), "--poll-seconds", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --poll-seconds must be positive"


SERVICEBUS_APP = """
import azure.functions as func

app = func.FunctionApp()


@app.service_bus_topic_trigger(
    arg_name="msg", topic_name="orders", subscription_name="scoring", connection="SB"
)
@app.service_bus_queue_output(arg_name="reply", queue_name="replies", connection="SB")
def orders(msg: func.ServiceBusMessage, reply: func.Out[str]) -> None:
    reply.set(msg.get_body().decode())
"""


def test_a_service_bus_app_loads_and_says_its_broker_is_unreachable(
    tmp_path: Path, hosts: HostFactory
) -> None:
    """No broker here: the host validates the configuration, tries the namespace and reports
    the failure as unhealthy rather than pretending to listen (see servicebus.py)."""
    app_dir = write_app(tmp_path / "app", SERVICEBUS_APP)
    sb = "Endpoint=sb://127.0.0.1:9/;SharedAccessKeyName=k;SharedAccessKey=c2VjcmV0"
    host = hosts.start(app_dir, {"SB": sb}, healthy=False)
    listening = host.wait_event("listening", kind=None)[0]
    host.port = int(listening["port"])
    trigger = host.status()["triggers"]["orders"]
    assert trigger["exercised_against_broker"] is False
    assert (trigger["topic"], trigger["subscription"]) == ("orders", "scoring")
    error = host.wait_event("listener_error", timeout=90)[0]
    assert error["function"] == "orders" and "service bus orders" in error["error"]
    health = host.get("/")
    assert health.status_code == 503 and "orders: service bus orders" in health.text
    assert "c2VjcmV0" not in host.log()


def test_service_bus_settings_are_checked_before_anything_listens(tmp_path: Path) -> None:
    app_dir = write_app(tmp_path / "app", SERVICEBUS_APP)
    done = subprocess.run(
        [sys.executable, "-m", "modelform.runtime.functions", str(app_dir), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SB": "AccountName=x;AccountKey=y"},
    )
    assert done.returncode == 3
    assert done.stderr.strip().splitlines()[-1] == (
        "error: function orders, binding reply: connection SB: "
        "not a Service Bus connection string (Endpoint=sb://…)"
    )
