"""Raw-request scripts (``@rawhttp``, ``AMLRequest``, ``AMLResponse``) over real HTTP.

The ``azureml`` package is not installed here: the imports below resolve
to the runtime's stand-in modules.
"""

from __future__ import annotations

import importlib.machinery
import os

import pytest

# Azure ML's documented raw-request example, plus a few more branches.
RAW_SCRIPT = """
    import json

    from azureml.contrib.services.aml_request import AMLRequest, rawhttp
    from azureml.contrib.services.aml_response import AMLResponse


    def init():
        print("This is init()")


    @rawhttp
    def run(request):
        print("This is run()")
        if request.method == "GET":
            respBody = str.encode(request.full_path)
            return AMLResponse(respBody, 200)
        elif request.method == "POST":
            route = request.args.get("route", "echo")
            if route == "echo":
                reqBody = request.get_data(False)
                resp = AMLResponse(reqBody, 200)
                resp.headers["Access-Control-Allow-Origin"] = "http://www.example.com"
                return resp
            if route == "json":
                payload = request.get_json()
                return {"sum": sum(payload["data"]), "ctype": request.content_type}
            if route == "upload":
                image = request.files["image"]
                size = len(image.read())
                return {"name": image.filename, "size": size, "label": request.form["label"]}
            if route == "teapot":
                headers = {"X-Tea": "green, black"}
                return AMLResponse({"short": "stout"}, 418, headers, json_str=True)
            if route == "fail":
                return AMLResponse("model exploded", 503)
        return AMLResponse("bad request", 500)
"""


def test_azureml_modules_are_not_installed_in_this_python():
    # Guards the meaning of this file: the shims, not the real package, are under test.
    assert importlib.machinery.PathFinder.find_spec("azureml") is None


def test_raw_request_script_get_and_echo(start_server):
    server = start_server(RAW_SCRIPT)

    got = server.get("/score?x=1&y=two")
    assert got.status_code == 200
    assert got.content == b"/score?x=1&y=two"
    assert got.headers["x-ms-run-function-failed"] == "False"

    body = os.urandom(2048)
    echoed = server.post(data=body, headers={"Content-Type": "application/octet-stream"})
    assert echoed.status_code == 200
    assert echoed.content == body
    assert echoed.headers["Access-Control-Allow-Origin"] == "http://www.example.com"
    assert echoed.headers["content-type"].startswith("text/html")


def test_raw_request_json_files_and_status_codes(start_server):
    server = start_server(RAW_SCRIPT)

    as_json = server.post({"data": [1, 2, 3.5]}, params={"route": "json"})
    assert as_json.json() == {"sum": 6.5, "ctype": "application/json"}

    upload = server.post(
        params={"route": "upload"},
        files={"image": ("cat.png", b"\x89PNG\r\n" + bytes(range(256)) * 4, "image/png")},
        data={"label": "cat"},
    )
    assert upload.json() == {"name": "cat.png", "size": 6 + 1024, "label": "cat"}

    teapot = server.post(data=b"", params={"route": "teapot"})
    assert teapot.status_code == 418
    assert teapot.json() == {"short": "stout"}
    # A comma in a header value makes two headers (requests joins them back).
    assert teapot.headers["X-Tea"] == "green, black"

    failed = server.post(data=b"", params={"route": "fail"})
    assert failed.status_code == 503
    assert failed.text == "model exploded"
    assert failed.headers["x-ms-run-function-failed"] == "True"

    bad = server.session.delete(server.url(), timeout=10)
    assert bad.status_code == 405


def test_get_json_on_a_bad_body_is_a_client_error(start_server):
    server = start_server(RAW_SCRIPT)
    broken = server.post(
        data=b"{not json", params={"route": "json"}, headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 400
    assert "Failed to decode JSON" in broken.json()["message"]
    wrong_type = server.post(
        data=b"{}", params={"route": "json"}, headers={"Content-Type": "text/plain"}
    )
    assert wrong_type.status_code == 415
    # The worker goes on serving.
    assert server.post({"data": [1]}, params={"route": "json"}).status_code == 200


def test_raw_request_through_the_inference_server_module_name(start_server):
    server = start_server(
        """
        from azureml_inference_server_http.api.aml_request import rawhttp
        from azureml_inference_server_http.api.aml_response import AMLResponse

        def init():
            pass

        @rawhttp
        def run(request):
            return AMLResponse(None, 202)
        """
    )
    response = server.post(data=b"anything")
    assert response.status_code == 202
    assert response.json() == {}


@pytest.mark.parametrize("decorated", [True, False])
def test_mode_is_logged(start_server, decorated):
    decorator = "@rawhttp" if decorated else ""
    server = start_server(
        f"""
        from azureml.contrib.services.aml_request import rawhttp

        def init():
            pass

        {decorator}
        def run(request):
            return type(request).__name__
        """
    )
    expected = "AMLRequest" if decorated else "str"
    assert server.post(data=b"x").json() == expected
    assert server.events("script_loaded")[0]["mode"] == ("raw" if decorated else "text")
