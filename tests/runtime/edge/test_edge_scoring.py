"""How the module mode calls run() for one SDK message, per input mode (no hub needed).

The scripts are loaded with the runtime's own loader, as the module does;
the messages are the SDK's ``Message`` objects as its input handler gets them.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.iot.device import Message

from modelform.runtime import aml_request
from modelform.runtime.edge.scoring import EdgeRequest, Scorer
from modelform.runtime.script import InputMode, load_entry_script


@pytest.fixture(autouse=True)
def _one_script_per_process() -> Iterator[None]:
    # The module serves one script per process; @rawhttp's flag and inference-schema's
    # registry of decorated functions (by name) are process-wide: reset them between scripts.
    from inference_schema import schema_util

    registry = vars(schema_util)["__functions_schema__"]
    aml_request._rawHttpRequested = False
    registry.clear()
    yield
    aml_request._rawHttpRequested = False
    registry.clear()


def scorer(tmp_path: Path, text: str) -> Scorer:
    path = tmp_path / "score.py"
    path.write_text(textwrap.dedent(text))
    script = load_entry_script(path)
    script.init()
    return Scorer(script, timeout=None)


def message(body: bytes | str, **properties: str) -> Message:
    msg = Message(body, content_encoding="utf-8", content_type="application/json")
    msg.input_name = "rows"
    msg.correlation_id = "c-1"
    msg.message_id = "m-1"
    msg.custom_properties = properties
    return msg


def test_text_mode_gets_the_body_and_properties_as_headers(tmp_path: Path) -> None:
    s = scorer(
        tmp_path,
        """
        import numpy as np
        def init(): pass
        def run(raw_data, request_headers):
            return {"n": np.int64(len(raw_data)), "site": request_headers["site"],
                    "type": request_headers["Content-Type"]}
        """,
    )
    assert s.script.mode is InputMode.TEXT
    outcome = s.score(message(b'{"data": [[1]]}', site="a&b"))
    assert outcome.ok and outcome.content_type == "application/json"
    assert json.loads(outcome.body) == {"n": 15, "site": "a&b", "type": "application/json"}
    bad = s.score(message(b"\xff\xfe"))
    assert not bad.ok and json.loads(bad.body)["error"] == "InputError"
    assert "UTF-8" in json.loads(bad.body)["message"]


def test_raw_mode_gets_an_edge_request(tmp_path: Path) -> None:
    s = scorer(
        tmp_path,
        """
        from azureml.contrib.services.aml_request import rawhttp
        from azureml.contrib.services.aml_response import AMLResponse
        def init(): pass
        @rawhttp
        def run(request):
            if request.properties.get("fail"):
                return AMLResponse({"message": "refused"}, 422, json_str=True)
            return AMLResponse(request.get_data() + b"!", 200,
                               {"Content-Type": "text/plain"})
        """,
    )
    assert s.script.mode is InputMode.RAW
    outcome = s.score(message(b"abc"))
    assert outcome.ok and (outcome.body, outcome.content_type) == (b"abc!", "text/plain")
    refused = s.score(message(b"abc", fail="1"))
    assert not refused.ok
    assert json.loads(refused.body) == {
        "message": "run() answered status 422: refused",
        "error": "Status422",
        "input": "rows",
    }
    request = EdgeRequest(message(b"{}", k="v"), b"{}", {"k": "v"})
    assert (request.input_name, request.correlation_id, request.path) == (
        "rows",
        "c-1",
        "/inputs/rows",
    )
    assert request.get_json(force=True) == {} and request.headers.get("k") == "v"


def test_object_mode_takes_keywords_from_the_json_body(tmp_path: Path) -> None:
    s = scorer(
        tmp_path,
        """
        from inference_schema.schema_decorators import input_schema
        from inference_schema.parameter_types.standard_py_parameter_type import (
            StandardPythonParameterType,
        )
        def init(): pass
        @input_schema("data", StandardPythonParameterType([[1.0]]))
        async def run(data, scale=2):
            return [sum(row) * scale for row in data]
        """,
    )
    assert s.script.mode is InputMode.OBJECT
    assert json.loads(s.score(message(b'{"data": [[1, 2]]}')).body) == [6]
    missing = s.score(message(b'{"scale": 3}'))
    assert not missing.ok and "'data' parameter" in json.loads(missing.body)["message"]
    not_object = s.score(message(b"[1]"))
    assert not not_object.ok and "JSON object" in json.loads(not_object.body)["message"]
    s.close()


def test_run_raising_and_unencodable_results_are_errors(tmp_path: Path) -> None:
    s = scorer(
        tmp_path,
        """
        def init(): pass
        def run(raw_data):
            if raw_data == "boom":
                raise KeyError("x")
            return object() if raw_data == "obj" else None
        """,
    )
    boom = s.score(message("boom"))
    assert not boom.ok and "Traceback" in boom.traceback
    assert json.loads(boom.body) == {
        "message": "An unexpected error occurred in scoring script: KeyError: 'x'",
        "error": "KeyError",
        "input": "rows",
    }
    obj = s.score(message("obj"))
    assert not obj.ok and json.loads(obj.body)["error"] == "UnserialisableOutput"
    assert s.score(message("ok")).body == b"{}"  # None is {} as over HTTP
