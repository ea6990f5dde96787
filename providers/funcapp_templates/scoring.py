# The scoring half of a generated function_app.py (modelform copies this file
# into it, below the generated header and above the generated functions). It
# must run on the real Azure Functions Python worker (3.10+) with nothing but
# the standard library and azure-functions: no modelform import, and no
# `from __future__ import annotations` (the worker reads the functions'
# annotations as types).
import asyncio
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import json
import logging
import os
import sys
import threading
import types
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func

APP_DIR = Path(__file__).resolve().parent
ENTRY_MODULE = "entry_module"
HEADERS_PARAM = "request_headers"
_log = logging.getLogger("function_app")


# -- what a @rawhttp run() receives, and Azure ML's modules when absent -------
class AMLRequest:
    """The request a ``@rawhttp`` ``run(request)`` receives.

    ``get_data()`` / ``data``: the input's bytes (the HTTP body, the blob's
    content, the message's body); ``get_data(as_text=True)``, ``get_json()``
    / ``json`` read them as text or JSON. ``method``, ``url``, ``path``,
    ``headers``, ``args`` describe an HTTP request (``"POST"`` and empty for
    the other triggers). ``blob_name``: the blob's name as the Functions host
    gives it, ``<container>/<path>`` (None unless a blob triggered the call);
    ``blob_uri`` its URL. ``message_id``: the queue or Service Bus message's
    id (None otherwise). ``trigger``: ``http``, ``blob``, ``queue`` or
    ``servicebus``.
    """

    def __init__(
        self,
        data: bytes,
        *,
        trigger: str = "http",
        method: str = "POST",
        url: str = "",
        headers: Mapping[str, str] | None = None,
        args: Mapping[str, str] | None = None,
        blob_name: str | None = None,
        blob_uri: str | None = None,
        message_id: str | None = None,
    ) -> None:
        self._data = bytes(data)
        self.trigger = trigger
        self.method = method
        self.url = url
        self.headers = dict(headers or {})
        self.args = dict(args or {})
        self.blob_name = blob_name
        self.blob_uri = blob_uri
        self.message_id = message_id

    @property
    def path(self) -> str:
        return urlsplit(self.url).path if self.url else ""

    @property
    def data(self) -> bytes:
        return self._data

    def get_data(self, as_text: bool = False) -> bytes | str:
        return self._data.decode("utf-8") if as_text else self._data

    @property
    def content_type(self) -> str | None:
        for name, value in self.headers.items():
            if name.lower() == "content-type":
                return value
        return None

    @property
    def mimetype(self) -> str:
        return (self.content_type or "").split(";", 1)[0].strip().lower()

    def get_json(self, force: bool = False, silent: bool = False) -> Any:
        try:
            return json.loads(self._data)
        except ValueError:
            if silent:
                return None
            raise

    @property
    def json(self) -> Any:
        return self.get_json(silent=True)


class AMLResponse:
    """What a raw-request ``run()`` may return: body, status and headers (as
    Azure ML's ``AMLResponse``)."""

    def __init__(
        self,
        message: Any,
        status_code: int,
        response_headers: Mapping[str, str] | None = None,
        json_str: bool = False,
        run_function_failed: bool = False,
    ) -> None:
        self.status_code = int(status_code)
        self.headers: dict[str, str] = {}
        if message is None:
            self._data, self.headers["Content-Type"] = b"{}", "application/json"
        elif json_str:
            self._data = json.dumps(message).encode("utf-8")
            self.headers["Content-Type"] = "application/json"
        else:
            self._data = message.encode("utf-8") if isinstance(message, str) else bytes(message)
            self.headers["Content-Type"] = "text/html; charset=utf-8"
        self.headers["x-ms-run-function-failed"] = str(bool(run_function_failed))
        self.headers.update({str(k): str(v) for k, v in (response_headers or {}).items()})

    def get_data(self, as_text: bool = False) -> bytes | str:
        return self._data.decode("utf-8") if as_text else self._data


def _shim_modules() -> dict[str, types.ModuleType]:
    request = types.ModuleType("azureml.contrib.services.aml_request")
    request.AMLRequest = AMLRequest  # type: ignore[attr-defined]
    request._rawHttpRequested = False  # type: ignore[attr-defined]

    def rawhttp(function: Any) -> Any:
        request._rawHttpRequested = True  # type: ignore[attr-defined]
        return function

    request.rawhttp = rawhttp  # type: ignore[attr-defined]
    response = types.ModuleType("azureml.contrib.services.aml_response")
    response.AMLResponse = AMLResponse  # type: ignore[attr-defined]
    return {
        "azureml.contrib.services.aml_request": request,
        "azureml.contrib.services.aml_response": response,
        "azureml_inference_server_http.api.aml_request": request,
        "azureml_inference_server_http.api.aml_response": response,
    }


_SHIMS = _shim_modules()
_SHIM_PACKAGES = {
    "azureml",
    "azureml.contrib",
    "azureml.contrib.services",
    "azureml_inference_server_http",
    "azureml_inference_server_http.api",
}


class _ShimFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers for Azure ML's request/response modules only when no other
    finder does (it sits last on sys.meta_path): a real install wins."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname in _SHIM_PACKAGES:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        if fullname in _SHIMS:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return _SHIMS.get(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def _raw_requested() -> bool:
    """True once the script decorated something with ``@rawhttp`` (Azure ML's
    module, or the stand-in)."""
    return any(
        getattr(sys.modules.get(name), "_rawHttpRequested", False)
        for name in (*_SHIMS, "modelform.runtime.aml_request")
    )


def _schema_decorated(run: Callable[..., Any]) -> bool:
    util = sys.modules.get("inference_schema.schema_util")
    try:
        return bool(util and util.is_schema_decorated(run))
    except Exception:  # an inference-schema with another API: undecorated
        return False


# -- reading inputs, writing results ------------------------------------------
class InputError(Exception):
    """The input is not what run() takes (HTTP 400/415)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _plain(value: Any) -> Any:
    """numpy arrays and scalars (anything with tolist/item) as plain values."""
    for name in ("tolist", "item"):
        method = getattr(value, name, None)
        if callable(method):
            return method()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode(value: Any) -> bytes:
    """run()'s result as JSON, as the scoring runtime answers /score (None is {})."""
    if value is None:
        return b"{}"
    text = json.dumps(value, default=_plain, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8")


def _is_response(value: Any) -> bool:
    return all(hasattr(value, a) for a in ("status_code", "get_data", "headers"))


def _maybe_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _error(status: int, message: str, failed: bool = False) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps({"message": message}),
        status_code=status,
        headers={"x-ms-run-function-failed": str(failed)},
        mimetype="application/json",
    )


# -- the entry script ----------------------------------------------------------
class Scorer:
    """The entry script, loaded once (in the background from import on, so
    the app indexes at once), its ``init()`` called once, its ``run()``
    called the way the Azure ML inference server calls it: the input as text
    by default; the request object (:class:`AMLRequest`) with ``@rawhttp``;
    keyword arguments from a JSON object with inference-schema's
    ``@input_schema``."""

    def __init__(self, entry_script: Path, model_dir: Path) -> None:
        self.entry_script, self.model_dir = entry_script, model_dir
        self._lock = threading.Lock()
        self._done = False
        self._error: BaseException | None = None
        self.run: Callable[..., Any] = lambda *a, **k: None
        self.mode = "text"
        self.params: list[inspect.Parameter] = []
        self.wants_headers = False

    def start(self) -> None:
        threading.Thread(target=self._load, name="load-entry-script", daemon=True).start()

    def loaded(self) -> "Scorer":
        """The scorer once init() has run; its error if loading failed."""
        self._load()
        if self._error is not None:
            raise RuntimeError(f"the entry script failed to load: {self._error}")
        return self

    def _load(self) -> None:
        with self._lock:
            if self._done:
                return
            try:
                self._import()
            except BaseException as error:  # reported on every call
                _log.exception("loading %s failed", self.entry_script.name)
                self._error = error
            finally:
                self._done = True

    def _import(self) -> None:
        os.environ.setdefault("AZUREML_MODEL_DIR", str(self.model_dir))
        if not any(isinstance(f, _ShimFinder) for f in sys.meta_path):
            sys.meta_path.append(_ShimFinder())
        folder = str(self.entry_script.parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        spec = importlib.util.spec_from_file_location(ENTRY_MODULE, self.entry_script)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {self.entry_script}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[ENTRY_MODULE] = module
        spec.loader.exec_module(module)
        init, run = getattr(module, "init", None), getattr(module, "run", None)
        driver = getattr(module, "driver_module", None)
        if isinstance(driver, types.ModuleType) and callable(getattr(driver, "run", None)):
            run = driver.run
        if not callable(init) or not callable(run):
            raise TypeError(f"{self.entry_script.name} must define init() and run()")
        params = list(inspect.signature(run).parameters.values())
        self.wants_headers = any(p.name == HEADERS_PARAM for p in params)
        self.params = [p for p in params if p.name != HEADERS_PARAM]
        if not self.params:
            raise TypeError("run() needs to accept an argument for the input data")
        raw, schema = _raw_requested(), _schema_decorated(run)
        if raw and schema:
            raise TypeError("run() cannot be decorated with both @rawhttp and @input_schema")
        self.mode = "raw" if raw else "object" if schema else "text"
        self.run = run
        _await(init())

    def value(
        self,
        body: bytes | None,
        query: Mapping[str, Any] | None,
        request: AMLRequest,
        json_required: bool = False,
    ) -> Any:
        """run()'s input: ``body`` (None for an HTTP GET, which gives ``query``)."""
        if self.mode == "raw":
            return request
        if self.mode == "text":
            if body is None:
                return json.dumps(dict(query or {}))
            try:
                return body.decode("utf-8")
            except UnicodeDecodeError as error:
                raise InputError(400, f"Input cannot be decoded as UTF-8: {error}") from None
        if body is None:
            document: Any = dict(query or {})
        else:
            if (
                json_required
                and request.mimetype != "application/json"
                and not (
                    request.mimetype.startswith("application/")
                    and request.mimetype.endswith("+json")
                )
            ):
                raise InputError(415, "Expects Content-Type to be application/json")
            try:
                document = json.loads(body)
            except ValueError as error:
                raise InputError(400, f"POST body could not be decoded as JSON: {error}") from None
        if not isinstance(document, dict):
            raise InputError(400, "POST body should be a JSON dictionary.")
        kwargs = {}
        for p in self.params:
            found = document.get(p.name, p.default)
            if found is inspect.Parameter.empty:
                raise InputError(400, f"A value is not provided for the {p.name!r} parameter.")
            kwargs[p.name] = found
        return kwargs

    def call(self, value: Any, headers: Mapping[str, str]) -> Any:
        extra = {HEADERS_PARAM: dict(headers)} if self.wants_headers else {}
        if self.mode == "object":
            return _await(self.run(**value, **extra))
        p = self.params[0]
        if p.kind in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL):
            return _await(self.run(value, **extra))
        return _await(self.run(**{p.name: value}, **extra))

    # -- one method per trigger ------------------------------------------------
    def http(self, req: func.HttpRequest) -> func.HttpResponse:
        """Answer like the scoring runtime's /score: run()'s result as JSON;
        400/415 for an input run() cannot take; 500 naming run()'s error."""
        method = req.method.upper()
        if method not in ("GET", "POST"):
            return _error(405, "Method not allowed: use GET or POST")
        try:
            self.loaded()
        except RuntimeError as error:
            return _error(503, str(error))
        body = req.get_body() if method == "POST" else None
        headers = {k: v for k, v in req.headers.items()}
        query = {k: _maybe_json(v) for k, v in req.params.items()}
        request = AMLRequest(
            body or b"", method=method, url=req.url, headers=headers, args=dict(req.params)
        )
        try:
            output = self.call(self.value(body, query, request, json_required=True), headers)
        except InputError as error:
            return _error(error.status, error.message)
        except Exception as error:
            if isinstance(error, json.JSONDecodeError) and body is not None:
                try:
                    json.loads(body)
                except ValueError:
                    return _error(400, f"request body is not valid JSON: {error}")
            _log.exception("run() failed")
            message = f"An unexpected error occurred in scoring script: {type(error).__name__}: "
            return _error(500, message + str(error), failed=True)
        if _is_response(output):
            data = output.get_data()
            headers = {str(k): str(v) for k, v in _items(output.headers)}
            ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
            mimetype, _, params = ctype.partition(";")
            charset = params.partition("charset=")[2].strip() or "utf-8"
            return func.HttpResponse(
                data.encode("utf-8") if isinstance(data, str) else bytes(data),
                status_code=int(output.status_code),
                headers=headers,
                mimetype=mimetype.strip() or "text/plain",
                charset=charset,
            )
        try:
            data = encode(output)
        except (TypeError, ValueError) as error:
            message = f"run() returned a value that cannot be serialised as JSON: {error}"
            return _error(500, message, failed=True)
        return func.HttpResponse(
            data,
            status_code=200,
            mimetype="application/json",
            headers={"x-ms-run-function-failed": "False"},
        )

    def blob(self, blob: func.InputStream) -> str:
        """Score a blob: its content is run()'s input; the result as text."""
        data = blob.read()
        request = AMLRequest(data, trigger="blob", blob_name=blob.name, blob_uri=blob.uri)
        return self._message(data, request)

    def queue(self, msg: func.QueueMessage) -> str:
        body = msg.get_body()
        return self._message(body, AMLRequest(body, trigger="queue", message_id=msg.id))

    def servicebus(self, msg: func.ServiceBusMessage) -> str:
        body = msg.get_body()
        request = AMLRequest(body, trigger="servicebus", message_id=msg.message_id)
        return self._message(body, request)

    def _message(self, body: bytes, request: AMLRequest) -> str:
        """run()'s result for a blob or message, as written out: a str as is,
        anything else as JSON. Raises when run() fails (the host retries)."""
        self.loaded()
        try:
            output = self.call(self.value(body, None, request), {})
        except InputError as error:
            raise ValueError(error.message) from None
        if _is_response(output):
            data = output.get_data()
            text = data if isinstance(data, str) else bytes(data).decode("utf-8")
            if int(output.status_code) >= 400:
                raise RuntimeError(f"run() answered {output.status_code}: {text}")
            return text
        if isinstance(output, str):
            return output
        if isinstance(output, bytes | bytearray):
            return bytes(output).decode("utf-8")
        return encode(output).decode("utf-8")


def _items(headers: Any) -> Iterable[tuple[Any, Any]]:
    items = headers.items() if hasattr(headers, "items") else headers
    return list(items)


def _await(value: Any) -> Any:
    """The value of an awaitable (an async init() or run())."""
    if not inspect.isawaitable(value):
        return value

    async def wait() -> Any:
        return await value

    return asyncio.run(wait())
