"""The packaged function app, validated against the real azure-functions
library: each trigger kind's app imports (in a fresh interpreter where
modelform cannot be imported) and lists its functions and bindings; its
functions, called with the library's own binding types, score the
quickstart's diabetes model with the quickstart's score.py; host.json
matches the schema written from the documented reference; the digest and
the zip are the same bytes from run to run."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from modelform.plugin import Context, Resource
from modelform.providers import funcapp_package as fp
from modelform.providers.funcapp_package import AppSpec, PackageError
from modelform.providers.imagebuild import ModelFiles
from modelform.runtime.functions.appdigest import app_digest

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart"
SCORE = QUICKSTART / "src" / "score.py"
ROW = [0.038, 0.05, 0.061, 0.021, -0.044, -0.034, -0.043, -0.002, 0.019, -0.017]
REQUEST = {"data": [ROW, [0.0] * 10]}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quickstart's model, trained by its own train.py."""
    out = tmp_path_factory.mktemp("model") / "ridge.pkl"
    subprocess.run(
        [sys.executable, str(QUICKSTART / "train.py"), "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


@pytest.fixture(scope="module")
def predictions(model: Path) -> list[float]:
    import joblib
    import numpy as np

    return [float(x) for x in joblib.load(model).predict(np.array(REQUEST["data"]))]


def spec(model: Path, trigger: dict[str, Any], **kw: Any) -> AppSpec:
    args: dict[str, Any] = dict(
        service="diabetes-fn",
        entry_script=SCORE,
        code_dir=SCORE.parent,
        trigger=trigger,
        model_files=(("ridge.pkl", model),),
        pip=("scikit-learn", "numpy", "joblib"),
        python="3.11",
        env={"OMP_NUM_THREADS": "1"},
        models=(("ridge", 1, "sha256:" + "0" * 64),),
    )
    args.update(kw)
    return AppSpec(**args)


BLOB = {
    "kind": "blob",
    "bucket": "requests",
    "input": "input/{blobname}.json",
    "output": "output/{blobname}_out.json",
}

#: Run in a fresh interpreter inside the app folder: modelform cannot be
#: imported there (the app must not need it), then ``function_app`` is
#: imported as the worker does, and CODE's ``result`` is printed as JSON.
PRELUDE = """
import importlib.abc, json, os, sys
class NoModelform(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "modelform" or name.startswith("modelform."):
            raise ImportError("modelform imported by the app: " + name)
sys.meta_path.insert(0, NoModelform())
app_dir = sys.argv[1]
os.chdir(app_dir)
sys.path.insert(0, app_dir)
import azure.functions as func
from azure.functions.blob import InputStream
import function_app as fa

class Out(func.Out):
    def __init__(self):
        self.value = None
    def set(self, val):
        self.value = val
    def get(self):
        return self.value

def functions():
    return {f.get_function_name(): json.loads(f.get_function_json())["bindings"]
            for f in fa.app.get_functions()}

def http(name, method="POST", body=b"", params=None, headers=None):
    req = func.HttpRequest(method, "http://127.0.0.1/api/score", body=body,
                           params=params or {}, headers=headers or {})
    resp = getattr(fa, name)(req)
    return {"status": resp.status_code, "body": resp.get_body().decode(),
            "headers": dict(resp.headers), "mimetype": resp.mimetype}
"""


def in_app(app_dir: Path, code: str) -> Any:
    script = PRELUDE + textwrap.dedent(code) + "\nprint('RESULT=' + json.dumps(result))\n"
    done = subprocess.run(
        [sys.executable, "-c", script, str(app_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("RESULT=")]
    return json.loads(line.removeprefix("RESULT="))


def bindings(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(found, key=lambda b: b["name"])


HTTP_ANON = {
    "type": "httpTrigger",
    "direction": "IN",
    "name": "req",
    "route": "score",
    "methods": ["GET", "POST"],
    "authLevel": "ANONYMOUS",
}
RETURN = {"type": "http", "direction": "OUT", "name": "$return"}
STORAGE = "AzureWebJobsStorage"

KINDS: list[tuple[dict[str, Any], str, dict[str, list[dict[str, Any]]]]] = [
    ({"kind": "http"}, "none", {"diabetes_fn": [HTTP_ANON, RETURN]}),
    ({"kind": "http", "route": "predict/{version}"}, "key", {"diabetes_fn": [
        {**HTTP_ANON, "route": "predict/{version}", "authLevel": "FUNCTION"}, RETURN]}),
    (BLOB, "none", {
        "diabetes_fn": [
            {"type": "blobTrigger", "direction": "IN", "name": "blob", "connection": STORAGE,
             "path": "requests/input/{blobname}.json"},
            {"type": "blob", "direction": "OUT", "name": "output", "connection": STORAGE,
             "path": "requests/output/{blobname}_out.json"}],
        "diabetes_fn_http": [HTTP_ANON, RETURN]}),
    ({"kind": "blob", "container": "req", "input": "in/{name}", "connection": "Other"}, "key", {
        "diabetes_fn": [{"type": "blobTrigger", "direction": "IN", "name": "blob",
                         "connection": "Other", "path": "req/in/{name}"}],
        "diabetes_fn_http": [{**HTTP_ANON, "authLevel": "FUNCTION"}, RETURN]}),
    ({"kind": "queue", "queue": "requests", "output_queue": "responses"}, "none", {
        "diabetes_fn": [
            {"type": "queueTrigger", "direction": "IN", "name": "msg", "queueName": "requests",
             "connection": STORAGE},
            {"type": "queue", "direction": "OUT", "name": "output", "queueName": "responses",
             "connection": STORAGE}],
        "diabetes_fn_http": [HTTP_ANON, RETURN]}),
    ({"kind": "servicebus", "queue": "q", "output_queue": "r", "connection": "SB"}, "none", {
        "diabetes_fn": [
            {"type": "serviceBusTrigger", "direction": "IN", "name": "msg", "queueName": "q",
             "connection": "SB"},
            {"type": "serviceBus", "direction": "OUT", "name": "output", "queueName": "r",
             "connection": "SB"}],
        "diabetes_fn_http": [HTTP_ANON, RETURN]}),
    ({"kind": "servicebus", "topic": "t", "subscription": "s", "connection": "SB"}, "none", {
        "diabetes_fn": [
            {"type": "serviceBusTrigger", "direction": "IN", "name": "msg", "topicName": "t",
             "subscriptionName": "s", "connection": "SB"}],
        "diabetes_fn_http": [HTTP_ANON, RETURN]}),
]  # fmt: skip


@pytest.mark.parametrize(("trigger", "auth", "expected"), KINDS)
def test_the_app_lists_its_functions_and_bindings_through_azure_functions(
    tmp_path: Path, model: Path, trigger: dict[str, Any], auth: str,
    expected: dict[str, list[dict[str, Any]]],
) -> None:  # fmt: skip
    app = tmp_path / "app"
    fp.write_app(spec(model, trigger, auth=auth), app)
    found = in_app(app, "result = functions()")
    assert {k: bindings(v) for k, v in found.items()} == {
        k: bindings(v) for k, v in expected.items()
    }
    manifest = json.loads((app / fp.MANIFEST).read_text())
    assert [f["name"] for f in manifest["functions"]] == list(expected)


def test_the_app_folder_holds_exactly_the_documented_files(tmp_path: Path, model: Path) -> None:
    app = tmp_path / "app"
    digest = fp.write_app(spec(model, BLOB), app)
    files = sorted(p.relative_to(app).as_posix() for p in app.rglob("*") if p.is_file())
    assert files == [
        "function_app.py",
        "host.json",
        "local.settings.json",
        "model/ridge.pkl",
        "modelform_app.json",
        "requirements.txt",
        "score.py",
    ]
    assert digest == app_digest(app) and digest.startswith("sha256:")
    assert (app / "model" / "ridge.pkl").read_bytes() == model.read_bytes()
    assert (app / "score.py").read_bytes() == SCORE.read_bytes()
    assert (
        app / "requirements.txt"
    ).read_text() == "azure-functions\nscikit-learn\nnumpy\njoblib\n"
    settings = json.loads((app / "local.settings.json").read_text())
    assert settings == {
        "IsEncrypted": False,
        "Values": {
            "AzureWebJobsStorage": "",
            "FUNCTIONS_WORKER_RUNTIME": "python",
            "OMP_NUM_THREADS": "1",
        },
    }
    manifest = json.loads((app / fp.MANIFEST).read_text())
    assert manifest["service"] == "diabetes-fn" and manifest["entry_script"] == "score.py"
    assert manifest["models"] == [{"name": "ridge", "version": 1, "digest": "sha256:" + "0" * 64}]
    assert manifest["trigger"] == {
        "kind": "blob",
        "container": "requests",
        "connection": STORAGE,
        "input": "input/{blobname}.json",
        "output": "output/{blobname}_out.json",
    }
    text = (app / "function_app.py").read_text()
    assert "import modelform" not in text and "from modelform" not in text
    assert "\r" not in text and str(tmp_path) not in text and str(REPO) not in text


def test_host_json_matches_the_documented_schema(tmp_path: Path, model: Path) -> None:
    validator = jsonschema.Draft202012Validator(fp.host_schema())
    validator.check_schema(fp.host_schema())
    app = tmp_path / "app"
    fp.write_app(spec(model, BLOB, timeout_seconds=90.5), app)
    host = json.loads((app / "host.json").read_text())
    assert list(validator.iter_errors(host)) == []
    assert host["version"] == "2.0" and host["functionTimeout"] == "00:01:31"
    assert host["extensionBundle"] == {
        "id": "Microsoft.Azure.Functions.ExtensionBundle",
        "version": "[4.*, 5.0.0)",
    }


FULL_HOST = {
    "version": "2.0",
    "aggregator": {"batchSize": 500, "flushTimeout": "00:00:10"},
    "concurrency": {"dynamicConcurrencyEnabled": True, "snapshotPersistenceEnabled": False},
    "customHandler": {"description": {"defaultExecutablePath": "app", "arguments": ["-v"]},
                      "enableForwardingHttpRequest": True},
    "extensions": {"queues": {"maxDequeueCount": 5, "visibilityTimeout": "00:00:30"},
                   "blobs": {"maxDegreeOfParallelism": 4}, "http": {"routePrefix": "api"},
                   "someNewExtension": {"anything": [1, 2]}},
    "extensionBundle": {"id": "Microsoft.Azure.Functions.ExtensionBundle",
                        "version": "[4.0.0, 5.0.0)"},
    "functions": ["one", "two"],
    "functionTimeout": "1.00:00:00",
    "healthMonitor": {"enabled": True, "healthCheckInterval": "00:00:20",
                      "healthCheckThreshold": 3, "counterThreshold": 0.5},
    "logging": {"fileLoggingMode": "never", "logLevel": {"default": "Warning",
                                                          "Function.one": "Trace"},
                "console": {"isEnabled": True, "DisableColors": True},
                "applicationInsights": {"samplingSettings": {"isEnabled": False,
                                                             "excludedTypes": "Request;Trace"},
                                        "enableLiveMetrics": False}},
    "managedDependency": {"enabled": False},
    "singleton": {"lockPeriod": "00:00:20"},
    "telemetryMode": "OpenTelemetry",
    "watchDirectories": ["shared"],
    "watchFiles": ["settings.txt"],
}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "ok"),
    [
        ({}, True),
        ({"functionTimeout": "-1"}, True),
        ({"functionTimeout": "24:00:00"}, False),
        ({"version": "3.0"}, False),
        ({"extensionBundles": {}}, False),
        ({"extensionBundle": {"id": "Microsoft.Azure.Functions.ExtensionBundle"}}, False),
        ({"logging": {"logLevel": {"default": "Verbose"}}}, False),
        ({"logging": {"fileLoggingMode": "sometimes"}}, False),
        ({"aggregator": {"batchSize": 10, "flushTimout": "00:00:01"}}, False),
        ({"healthMonitor": {"healthCheckInterval": "10 seconds"}}, False),
    ],
)
def test_the_host_schema_takes_documented_keys_only(change: dict[str, Any], ok: bool) -> None:
    doc = {**FULL_HOST, **change}
    errors = list(jsonschema.Draft202012Validator(fp.host_schema()).iter_errors(doc))
    assert (errors == []) is ok, errors
    missing = {k: v for k, v in FULL_HOST.items() if k != "version"}
    assert list(jsonschema.Draft202012Validator(fp.host_schema()).iter_errors(missing))


def test_the_digest_is_stable_across_runs_and_folders_and_names_the_content(
    tmp_path: Path, model: Path
) -> None:
    s = spec(model, BLOB)
    first, second = fp.write_app(s, tmp_path / "a"), fp.write_app(s, tmp_path / "elsewhere" / "b")
    assert first == second == app_digest(tmp_path / "a")
    assert fp.write_app(s, tmp_path / "a") == first  # written again over itself
    (tmp_path / "a" / "__pycache__").mkdir()
    (tmp_path / "a" / "__pycache__" / "function_app.cpython-311.pyc").write_bytes(b"x")
    assert app_digest(tmp_path / "a") == first  # importing the app changes nothing
    other_model = tmp_path / "ridge2.pkl"
    other_model.write_bytes(model.read_bytes() + b"\0")
    changed = [
        replace(s, model_files=(("ridge.pkl", other_model),)),
        replace(s, trigger={**BLOB, "output": "done/{blobname}.json"}),
        replace(s, env={"OMP_NUM_THREADS": "2"}),
        replace(s, models=(("ridge", 2, "sha256:" + "1" * 64),)),
        replace(s, auth="key"),
    ]
    digests = {fp.write_app(c, tmp_path / f"c{i}") for i, c in enumerate(changed)}
    assert len(digests) == len(changed) and first not in digests


def test_the_zip_is_the_same_bytes_from_run_to_run(tmp_path: Path, model: Path) -> None:
    s = spec(model, BLOB)
    fp.write_app(s, tmp_path / "a")
    fp.write_app(s, tmp_path / "b")
    (tmp_path / "b" / "__pycache__").mkdir()
    (tmp_path / "b" / "__pycache__" / "x.pyc").write_bytes(b"bytecode")
    za = fp.package_zip(tmp_path / "a", tmp_path / "a.zip")
    zb = fp.package_zip(tmp_path / "b", tmp_path / "out" / "b.zip")
    assert za.read_bytes() == zb.read_bytes()
    with zipfile.ZipFile(za) as z:
        names = z.namelist()
        assert names == sorted(names) and "model/ridge.pkl" in names
        assert not any("__pycache__" in n for n in names)
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert {i.external_attr >> 16 for i in z.infolist()} == {0o100644}
        assert z.read("model/ridge.pkl") == model.read_bytes()
    assert not list(tmp_path.glob(".a.zip.*"))


SAMPLE = json.dumps(REQUEST)


def test_the_http_function_scores_like_the_runtime(
    tmp_path: Path, model: Path, predictions: list[float]
) -> None:
    app = tmp_path / "app"
    fp.write_app(spec(model, BLOB), app)
    found = in_app(
        app,
        f"""
        result = [http("diabetes_fn_http", body={SAMPLE!r}.encode()),
                  http("diabetes_fn_http", body=b"not json"),
                  http("diabetes_fn_http", method="GET", params={{"data": json.dumps([{ROW}])}}),
                  os.environ["AZUREML_MODEL_DIR"]]
    """,
    )
    ok, bad, get, model_dir = found
    assert ok["status"] == 200 and json.loads(ok["body"]) == pytest.approx(predictions)
    assert ok["mimetype"] == "application/json"
    assert ok["headers"]["x-ms-run-function-failed"] == "False"
    assert bad["status"] == 400 and "not valid JSON" in json.loads(bad["body"])["message"]
    assert get["status"] == 200 and json.loads(get["body"]) == pytest.approx(predictions[:1])
    assert Path(model_dir) == (app / "model").resolve()


def test_the_blob_function_writes_the_predictions_to_its_output(
    tmp_path: Path, model: Path, predictions: list[float]
) -> None:
    app = tmp_path / "app"
    fp.write_app(spec(model, BLOB), app)
    written = in_app(
        app,
        f"""
        out = Out()
        fa.diabetes_fn(blob=InputStream(data={SAMPLE!r}.encode(),
                                        name="requests/input/a.json"), output=out)
        result = out.get()
    """,
    )
    assert isinstance(written, str) and json.loads(written) == pytest.approx(predictions)


def test_queue_and_service_bus_functions_score_messages(
    tmp_path: Path, model: Path, predictions: list[float]
) -> None:
    fp.write_app(spec(model, {"kind": "queue", "queue": "q", "output_queue": "r"}), tmp_path / "q")
    sb = {
        "kind": "servicebus",
        "topic": "t",
        "subscription": "s",
        "connection": "SB",
        "output_queue": "r",
    }
    fp.write_app(spec(model, sb), tmp_path / "sb")
    queued = in_app(
        tmp_path / "q",
        f"""
        out = Out()
        fa.diabetes_fn(msg=func.QueueMessage(id="m1", body={SAMPLE!r}.encode()), output=out)
        result = out.get()
    """,
    )
    bus = in_app(
        tmp_path / "sb",
        f"""
        out = Out()
        fa.diabetes_fn(msg=func.ServiceBusMessage(body={SAMPLE!r}.encode()), output=out)
        result = out.get()
    """,
    )
    assert json.loads(queued) == pytest.approx(predictions)
    assert json.loads(bus) == pytest.approx(predictions)


RAW_SCRIPT = """\
import json
import os

from azureml.contrib.services.aml_request import AMLRequest, rawhttp
from azureml.contrib.services.aml_response import AMLResponse


def init():
    global weights
    weights = os.path.getsize(os.path.join(os.environ["AZUREML_MODEL_DIR"], "ridge.pkl"))


@rawhttp
def run(request):
    if request.method == "GET":
        return AMLResponse("made", 201, {"X-Made": "yes"})
    data = request.get_data()
    assert isinstance(data, bytes)
    return {"name": request.blob_name, "size": len(data), "head": list(data[:2]),
            "trigger": request.trigger, "message_id": request.message_id, "weights": weights}
"""


def test_a_raw_request_script_gets_the_bytes_and_the_blob_name(tmp_path: Path, model: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "score.py").write_text(RAW_SCRIPT)
    s = spec(model, BLOB, entry_script=src / "score.py", code_dir=src)
    fp.write_app(s, tmp_path / "app")
    blob, posted, made, queued = in_app(
        tmp_path / "app",
        """
        out = Out()
        fa.diabetes_fn(blob=InputStream(data=b"\\xff\\x00raw", name="requests/input/x.bin"),
                       output=out)
        blob = json.loads(out.get())
        result = [blob, http("diabetes_fn_http", body=b"abc"), http("diabetes_fn_http", "GET"),
                  fa.SCORER.queue(func.QueueMessage(id="m7", body=b"q"))]
    """,
    )
    weights = model.stat().st_size
    assert blob == {
        "name": "requests/input/x.bin",
        "size": 5,
        "head": [255, 0],
        "trigger": "blob",
        "message_id": None,
        "weights": weights,
    }
    assert posted["status"] == 200
    assert json.loads(posted["body"]) == {
        "name": None,
        "size": 3,
        "head": [97, 98],
        "trigger": "http",
        "message_id": None,
        "weights": weights,
    }
    assert made["status"] == 201 and made["body"] == "made" and made["headers"]["X-Made"] == "yes"
    assert made["mimetype"] == "text/html"
    assert json.loads(queued)["message_id"] == "m7"


SCHEMA_SCRIPT = """\
import numpy as np
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
from inference_schema.parameter_types.standard_py_parameter_type import (
    StandardPythonParameterType,
)
from inference_schema.schema_decorators import input_schema, output_schema


def init():
    pass


@input_schema("data", NumpyParameterType(np.array([[0.1, 0.2]])))
@input_schema("scale", StandardPythonParameterType(1.0))
@output_schema(StandardPythonParameterType([1.0]))
def run(data, scale=1.0):
    return (np.asarray(data).sum(axis=1) * scale).tolist()
"""


def test_an_input_schema_script_gets_keyword_arguments(tmp_path: Path, model: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "score.py").write_text(SCHEMA_SCRIPT)
    fp.write_app(spec(model, BLOB, entry_script=src / "score.py", code_dir=src), tmp_path / "app")
    posted, scaled, missing, blob = in_app(
        tmp_path / "app",
        """
        h = {"Content-Type": "application/json"}
        out = Out()
        fa.diabetes_fn(blob=InputStream(data=b'{"data": [[1, 2], [3, 4]], "scale": 10}',
                                        name="requests/input/s.json"), output=out)
        result = [http("diabetes_fn_http", body=b'{"data": [[1, 2], [3, 4]]}', headers=h),
                  http("diabetes_fn_http", body=b'{"data": [[1, 2]], "scale": 2}', headers=h),
                  http("diabetes_fn_http", body=b'{"scale": 2}', headers=h),
                  out.get()]
    """,
    )
    assert json.loads(posted["body"]) == [3.0, 7.0]
    assert json.loads(scaled["body"]) == [6.0]
    assert missing["status"] == 400 and "'data' parameter" in missing["body"]
    assert json.loads(blob) == [30.0, 70.0]


FAILING_SCRIPT = """\
def init():
    pass


def run(raw):
    if raw == "text":
        return "a plain result"
    raise ValueError("boom: " + raw)
"""


def test_errors_of_run_are_500_over_http_and_raise_for_blobs(tmp_path: Path, model: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "score.py").write_text(FAILING_SCRIPT)
    fp.write_app(spec(model, BLOB, entry_script=src / "score.py", code_dir=src), tmp_path / "app")
    failed, raised, text = in_app(
        tmp_path / "app",
        """
        out = Out()
        try:
            fa.diabetes_fn(blob=InputStream(data=b"x", name="requests/input/f.json"), output=out)
            raised = None
        except ValueError as e:
            raised = str(e)
        fa.diabetes_fn(blob=InputStream(data=b"text", name="requests/input/t.json"), output=out)
        result = [http("diabetes_fn_http", body=b"y"), raised, out.get()]
    """,
    )
    assert failed["status"] == 500 and failed["headers"]["x-ms-run-function-failed"] == "True"
    assert json.loads(failed["body"]) == {
        "message": "An unexpected error occurred in scoring script: ValueError: boom: y"
    }
    assert raised == "boom: x"
    assert text == "a plain result"  # a str result is written as is


def test_an_init_that_fails_is_reported_by_every_call(tmp_path: Path, model: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "score.py").write_text(
        "def init():\n    raise OSError('no model')\n\ndef run(raw):\n    return raw\n"
    )
    fp.write_app(
        spec(model, {"kind": "http"}, entry_script=src / "score.py", code_dir=src), tmp_path / "app"
    )
    first, second = in_app(
        tmp_path / "app",
        """
        result = [http("diabetes_fn", body=b"1"), http("diabetes_fn", body=b"2")]
    """,
    )
    assert first == second and first["status"] == 503
    assert "the entry script failed to load: no model" in first["body"]


# -- what write_app refuses, and the details ----------------------------------------------
def test_write_app_never_replaces_a_folder_that_holds_no_app(tmp_path: Path, model: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(PackageError, match="holds no function app"):
        fp.write_app(spec(model, BLOB), tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    (tmp_path / "empty").mkdir()
    fp.write_app(spec(model, BLOB), tmp_path / "empty")
    assert (tmp_path / "empty" / "function_app.py").is_file()


def test_code_that_would_replace_the_apps_own_files_is_refused(tmp_path: Path, model: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "score.py").write_text(SCORE.read_text())
    (src / "host.json").write_text("{}")
    with pytest.raises(PackageError, match="host.json in the service's code"):
        fp.write_app(spec(model, BLOB, entry_script=src / "score.py", code_dir=src), tmp_path / "a")
    assert not (tmp_path / "a").exists() and not list(tmp_path.glob(".a.*"))


def test_several_models_are_laid_out_as_azure_ml_does(tmp_path: Path, model: Path) -> None:
    folder = tmp_path / "enc"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.onnx").write_bytes(b"onnx")
    one = fp.model_layout([ModelFiles("ridge", 3, "sha256:x", model)])
    assert one == (("ridge.pkl", model),)
    two = fp.model_layout(
        [ModelFiles("ridge", 3, "sha256:x", model), ModelFiles("enc", 1, "sha256:y", folder)]
    )
    assert two == (("ridge/3/ridge.pkl", model), ("enc/1", folder))
    fp.write_app(spec(model, BLOB, model_files=two), tmp_path / "app")
    assert (tmp_path / "app/model/ridge/3/ridge.pkl").read_bytes() == model.read_bytes()
    assert (tmp_path / "app/model/enc/1/sub/a.onnx").read_bytes() == b"onnx"
    with pytest.raises(PackageError, match="relative, without .."):
        fp.write_app(spec(model, BLOB, model_files=(("../x", model),)), tmp_path / "bad")


def test_settings_hold_placeholders_for_connections_keys_and_secrets(
    tmp_path: Path, model: Path
) -> None:
    sb = {"kind": "servicebus", "queue": "q", "connection": "ServiceBusConnection"}
    s = spec(
        model,
        sb,
        auth="key",
        env={"TOKEN": "s3cr3t-value", "MODE": "fast"},
        secret_settings=frozenset({"TOKEN"}),
        pip=("azure_functions==1.26.0", "numpy"),
    )
    fp.write_app(s, tmp_path / "app")
    values = json.loads((tmp_path / "app/local.settings.json").read_text())["Values"]
    assert values == {
        "AzureWebJobsStorage": "",
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "MODELFORM_FUNCTION_KEY": "",
        "MODE": "fast",
        "ServiceBusConnection": "",
        "TOKEN": "",
    }
    for f in (tmp_path / "app").rglob("*"):
        assert not f.is_file() or b"s3cr3t-value" not in f.read_bytes(), f
    assert (tmp_path / "app/requirements.txt").read_text() == "azure_functions==1.26.0\nnumpy\n"
    with pytest.raises(PackageError, match="needs python"):
        fp.write_app(replace(s, env={"FUNCTIONS_WORKER_RUNTIME": "node"}), tmp_path / "node")


@pytest.mark.parametrize(
    ("service", "names"),
    [("7up", ["fn_7up", "fn_7up_http"]), ("app", ["app", "app_http"]),
     ("json", ["json", "json_http"])],
)  # fmt: skip
def test_any_service_name_makes_valid_functions(
    tmp_path: Path, model: Path, service: str, names: list[str], predictions: list[float]
) -> None:
    fp.write_app(spec(model, BLOB, service=service), tmp_path / "app")
    found = in_app(
        tmp_path / "app",
        f"""
        fns = {{f.get_function_name(): f.get_user_function() for f in fa.app.get_functions()}}
        req = func.HttpRequest("POST", "http://h/api/score", body={SAMPLE!r}.encode())
        result = [sorted(fns), json.loads(fns[{names[1]!r}](req).get_body())]
    """,
    )
    assert found == [names, pytest.approx(predictions)]


def test_spec_from_resource_takes_the_service_as_the_engine_resolves_it(
    tmp_path: Path, model: Path
) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "score.py").write_text(SCORE.read_text())
    (project / "src" / "helper.py").write_text("X = 1\n")
    (project / "models").mkdir()
    (project / "models" / "ridge.pkl").write_bytes(model.read_bytes())
    r = Resource(
        address="service.api",
        type="service",
        name="api",
        provider="functionapp",
        config={
            "entry_script": "src/score.py",
            "models": ["ridge"],
            "environment": "sk",
            "trigger": BLOB,
            "auth": "key",
            "env": {"B": "2"},
            "timeout_seconds": 30,
        },
        inputs={
            "model.ridge": {
                "name": "ridge",
                "version": 4,
                "digest": "sha256:abc",
                "source": "models/ridge.pkl",
            },
            "environment.sk": {
                "pip": ["scikit-learn", "joblib"],
                "python": "3.11",
                "env": {"A": "1", "B": "1"},
            },
        },
    )
    ctx = Context(project="p", project_dir=project, work_dir=project / ".modelform", lineage="l")
    s = fp.spec_from_resource(r, ctx)
    assert (s.service, s.auth, s.python, s.timeout_seconds) == ("api", "key", "3.11", 30)
    assert s.pip == ("scikit-learn", "joblib") and s.env == {"A": "1", "B": "2"}
    assert s.models == (("ridge", 4, "sha256:abc"),)
    assert s.model_files == (("ridge.pkl", project / "models" / "ridge.pkl"),)
    fp.write_app(s, tmp_path / "app")
    assert (tmp_path / "app" / "helper.py").read_text() == "X = 1\n"
    assert json.loads((tmp_path / "app/host.json").read_text())["functionTimeout"] == "00:00:30"


def test_state_files_in_the_code_folder_are_never_shipped(tmp_path: Path, model: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "score.py").write_text(SCORE.read_text())
    for name in (
        "modelform.state.json",
        "modelform.state.json.backup",
        "errored.modelform.json",
        "old.tfstate",
        "helper.py",
    ):
        (src / name).write_text("{}")
    fp.write_app(spec(model, BLOB, entry_script=src / "score.py", code_dir=src), tmp_path / "app")
    shipped = sorted(
        p.name
        for p in (tmp_path / "app").iterdir()
        if p.suffix in (".py", ".json", ".backup", ".tfstate")
    )
    assert shipped == [
        "function_app.py",
        "helper.py",
        "host.json",
        "local.settings.json",
        "modelform_app.json",
        "score.py",
    ]
