"""inference-schema declarations become /swagger.json and keyword arguments (real HTTP)."""

from __future__ import annotations

import importlib.util
import json

import pytest
from inference_schema.schema_util import get_input_schema, get_output_schema

# inference-schema (and numpy) are in the dev extra, as a user of decorated
# scripts installs them: missing is a broken install, an error, never a skip.


SCHEMA_SCRIPT = """
    import numpy as np
    from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
    from inference_schema.parameter_types.standard_py_parameter_type import (
        StandardPythonParameterType,
    )
    from inference_schema.schema_decorators import input_schema, output_schema

    input_sample = np.array([[10, 9, 8, 7, 6, 5, 4, 3, 2, 1]], dtype=np.float64)
    output_sample = np.array([3726.995])


    def init():
        pass


    @input_schema("data", NumpyParameterType(input_sample))
    @input_schema("scale", StandardPythonParameterType(1.0))
    @output_schema(NumpyParameterType(output_sample))
    def run(data, scale=1.0):
        assert isinstance(data, np.ndarray), type(data)
        return data.sum(axis=1) * scale
"""


def test_schema_decorated_script_serves_swagger(start_server):
    server = start_server(SCHEMA_SCRIPT)
    assert server.events("script_loaded")[0]["mode"] == "object"
    run = _load_run(server.script)

    v2 = server.get("/swagger.json")
    assert v2.status_code == 200
    document = v2.json()
    assert document["swagger"] == "2.0"
    service_input = document["definitions"]["ServiceInput"]
    assert set(service_input["properties"]) == {"data", "scale"}
    assert service_input == _json_round_trip(get_input_schema(run))
    assert document["definitions"]["ServiceOutput"] == _json_round_trip(get_output_schema(run))
    assert document["definitions"]["ServiceOutput"]["type"] == "array"
    assert "/score" in document["paths"]

    v3 = server.get("/swagger.json", params={"version": "3"}).json()
    assert v3["openapi"] == "3.0.1"
    assert v3["components"]["schemas"]["ServiceInput"] == service_input
    assert server.get("/swagger.json", params={"version": "3.1"}).json()["openapi"] == "3.1.0"

    unknown = server.get("/swagger.json", params={"version": "9"})
    assert unknown.status_code == 404
    assert "not valid" in unknown.json()["message"]


def _load_run(path):
    spec = importlib.util.spec_from_file_location("swagger_test_score", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.run


def _json_round_trip(value):
    return json.loads(json.dumps(value))


def test_schema_decorated_script_gets_keyword_arguments(start_server):
    server = start_server(SCHEMA_SCRIPT)

    scored = server.post({"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]], "scale": 2})
    assert scored.status_code == 200, scored.text
    assert scored.json() == [110.0]
    # A default fills a missing optional key.
    assert server.post({"data": [[1] * 10]}).json() == [10.0]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "fragment"),
    [
        (b"{broken", "application/json", 400, "could not be decoded as JSON"),
        (b"", "application/json", 400, "POST body is empty"),
        (b"[1, 2]", "application/json", 400, "should be a JSON dictionary"),
        (b'{"scale": 2}', "application/json", 400, "'data'"),
        (b'{"data": [[1]]}', "text/plain", 415, "application/json"),
    ],
)
def test_schema_input_errors(start_server, body, content_type, status, fragment):
    server = start_server(SCHEMA_SCRIPT)
    response = server.post(data=body, headers={"Content-Type": content_type})
    assert response.status_code == status
    assert fragment in response.json()["message"]
    assert response.json()["request_id"] == response.headers["x-request-id"]
    # ...and the next good request is served.
    assert server.post({"data": [[1] * 10]}).status_code == 200


def test_undecorated_script_gets_open_schema_and_user_file_wins(start_server):
    plain = start_server("def init():\n    pass\n\ndef run(data):\n    return data\n")
    document = plain.get("/swagger.json").json()
    assert document["definitions"]["ServiceInput"] == {"type": "object", "example": {}}

    user_doc = {"swagger": "2.0", "info": {"title": "mine", "version": "7"}, "paths": {}}
    custom = start_server(
        "def init():\n    pass\n\ndef run(data):\n    return data\n",
        files={"swagger.json": json.dumps(user_doc)},
    )
    assert custom.get("/swagger.json").json() == user_doc
    assert custom.get("/swagger.json", params={"version": "3"}).json()["openapi"] == "3.0.1"
