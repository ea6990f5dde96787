"""Scripts written for the Azure ML inference server run unchanged (real HTTP)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import joblib
import pytest
from sklearn import datasets, linear_model

# The classic Azure ML example: model file under AZUREML_MODEL_DIR, json.loads(raw_data).
SKLEARN_SCRIPT = """
    import json
    import os

    import joblib
    import numpy as np


    def init():
        global model
        model_path = os.path.join(os.getenv("AZUREML_MODEL_DIR"), "sklearn_regression_model.pkl")
        model = joblib.load(model_path)


    def run(raw_data):
        data = np.array(json.loads(raw_data)["data"])
        result = model.predict(data)
        return result.tolist()
"""


@pytest.fixture(scope="module")
def ridge_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    x, y = datasets.load_diabetes(return_X_y=True)
    model = linear_model.Ridge(alpha=0.1).fit(x, y)
    folder = tmp_path_factory.mktemp("model")
    joblib.dump(model, folder / "sklearn_regression_model.pkl")
    return folder


def test_azure_ml_example_script_scores_with_model_dir(start_server, ridge_model_dir):
    server = start_server(SKLEARN_SCRIPT, model_dir=ridge_model_dir)
    x, _ = datasets.load_diabetes(return_X_y=True)
    rows = x[:3].tolist()

    started = time.perf_counter()
    response = server.post({"data": rows})
    wall_ms = (time.perf_counter() - started) * 1000

    assert response.status_code == 200, response.text
    expected = joblib.load(ridge_model_dir / "sklearn_regression_model.pkl").predict(x[:3])
    assert response.json() == pytest.approx(expected.tolist())
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-ms-run-function-failed"] == "False"
    # run()'s own time, measured inside the request: a number, not more than
    # the whole request took as the client saw it
    exec_ms = float(response.headers["x-ms-run-fn-exec-ms"])
    assert 0 < exec_ms <= wall_ms, (exec_ms, wall_ms)
    assert response.headers["x-request-id"] == response.headers["x-ms-request-id"]


def test_environment_and_return_values_follow_azure_ml(start_server, tmp_path):
    model_dir = tmp_path / "models" / "m1"
    model_dir.mkdir(parents=True)
    (model_dir / "weights.json").write_text(json.dumps({"scale": 3}))
    server = start_server(
        """
        import json, os
        import helper  # a module beside score.py

        def init():
            global scale
            with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "weights.json")) as f:
                scale = json.load(f)["scale"]

        def run(raw_data):
            request = json.loads(raw_data)
            kind = request["kind"]
            if kind == "env":
                return {
                    "entry": os.environ["AZUREML_ENTRY_SCRIPT"],
                    "model_dir": os.environ["AZUREML_MODEL_DIR"],
                    "scale": scale,
                    "helper": helper.NAME,
                }
            if kind == "text":
                return json.dumps({"double": "encoded"})
            if kind == "none":
                return None
            if kind == "raw":
                return raw_data
            raise ValueError(kind)
        """,
        model_dir=model_dir,
        files={"helper.py": "NAME = 'sibling'\n"},
    )

    env = server.post({"kind": "env"}).json()
    assert env == {
        "entry": str(server.script.resolve()),
        "model_dir": str(model_dir.resolve()),
        "scale": 3,
        "helper": "sibling",
    }
    # A str result is JSON-encoded as a string, as Azure ML does.
    assert server.post({"kind": "text"}).json() == '{"double": "encoded"}'
    # None becomes {}.
    assert server.post({"kind": "none"}).json() == {}
    # run() receives the body exactly as sent.
    body = '{"kind": "raw",   "x": [1, 2.5]}'
    answer = server.post(data=body, headers={"Content-Type": "application/json"})
    assert answer.json() == body


def test_numpy_results_request_headers_and_request_ids(start_server):
    server = start_server(
        """
        import json
        import numpy as np

        def init():
            pass

        def run(data, request_headers):
            rows = np.array(json.loads(data)["data"])
            trace = request_headers.get("X-Trace")
            return {"sums": rows.sum(axis=1), "max": rows.max(), "trace": trace}
        """
    )
    response = server.post(
        {"data": [[1.0, 2.0], [3.0, 4.5]]},
        headers={"X-Trace": "abc", "x-request-id": "my-id", "x-ms-client-request-id": "client-7"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"sums": [3.0, 7.5], "max": 4.5, "trace": "abc"}
    assert response.headers["x-request-id"] == "my-id"
    assert response.headers["x-ms-client-request-id"] == "client-7"
    assert response.headers["x-ms-request-id"] == "client-7"

    too_long = server.post({"data": [[1.0]]}, headers={"x-request-id": "x" * 101})
    assert too_long.status_code == 431


def test_get_score_passes_query_parameters_as_json_text(start_server):
    server = start_server(
        """
        def init():
            pass

        def run(raw_data):
            return raw_data
        """
    )
    response = server.get("/score?a=1&b=[1,2]&c=word&c=again")
    assert response.status_code == 200
    assert json.loads(response.json()) == {"a": 1, "b": [1, 2], "c": ["word", "again"]}
    assert server.session.options(server.url()).status_code == 200
    assert server.session.put(server.url(), data="x").status_code == 405


def test_liveness_readiness_and_unknown_routes(start_server):
    server = start_server("def init():\n    pass\n\ndef run(data):\n    return 1\n")
    assert server.get("/").text == "Healthy"
    assert server.get("/ready").status_code == 200
    missing = server.get("/nope")
    assert missing.status_code == 404
    assert "message" in missing.json()


def test_async_run_is_awaited(start_server):
    server = start_server(
        """
        import asyncio, json

        def init():
            pass

        async def run(raw_data):
            await asyncio.sleep(0.01)
            return {"got": json.loads(raw_data)}
        """
    )
    assert server.post({"x": 1}).json() == {"got": {"x": 1}}


def test_init_and_run_share_the_main_thread(start_server):
    # As in Azure ML: objects bound to a thread (sqlite3 connections, thread-locals)
    # made in init() work in run().
    server = start_server(
        """
        import sqlite3
        import threading

        def init():
            global db, init_thread
            init_thread = threading.get_ident()
            db = sqlite3.connect(":memory:")
            db.execute("create table t (x)")
            db.execute("insert into t values (41)")

        def run(raw_data):
            (value,) = db.execute("select x + 1 from t").fetchone()
            return {
                "value": value,
                "same_thread": threading.get_ident() == init_thread,
                "main": threading.current_thread() is threading.main_thread(),
            }
        """
    )
    assert server.post({}).json() == {"value": 42, "same_thread": True, "main": True}
