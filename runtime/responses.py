"""Turning what ``run()`` returns, and every error, into an HTTP answer.

A :class:`Reply` is status, extra headers and body bytes; the ASGI app
adds the request-id headers and sends it.

* A response object (our ``AMLResponse``, Azure ML's, or any Flask /
  Werkzeug response: anything with ``status_code``, ``headers`` and
  ``get_data()``) is sent as-is; at status >= 500 it is marked
  ``x-ms-run-function-failed: True``, as Azure ML does.
* Anything else is JSON-encoded with status 200 (``None`` becomes ``{}``,
  as in Azure ML; a ``str`` becomes a JSON string). orjson does the work
  and also takes numpy arrays and scalars; values it cannot encode go
  through the standard ``json`` module, and a value neither can encode
  is a 500 naming its type.
* Errors are ``{"message": ...}`` (Azure ML's shape) plus ``request_id``.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import orjson

JSON = b"application/json"
TEXT = b"text/plain; charset=utf-8"
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class Reply(NamedTuple):
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    #: True when run() failed (x-ms-run-function-failed).
    failed: bool = False


class UnserialisableOutput(Exception):
    """run() returned a value that cannot be written as JSON."""


def encode_output(value: Any) -> bytes:
    if value is None:
        return b"{}"
    try:
        return orjson.dumps(value, option=_JSON_OPTIONS)
    except TypeError:
        pass
    try:
        return json.dumps(value).encode("utf-8")
    except (TypeError, ValueError) as error:
        raise UnserialisableOutput(
            f"run() returned a value that cannot be serialised as JSON: {error}"
        ) from None


def is_response_object(value: Any) -> bool:
    return (
        hasattr(value, "status_code") and hasattr(value, "get_data") and hasattr(value, "headers")
    )


def from_response_object(value: Any) -> Reply:
    status = int(value.status_code)
    body = value.get_data()
    if isinstance(body, str):
        body = body.encode("utf-8")
    headers: list[tuple[bytes, bytes]] = []
    failed_header = False
    items = value.headers.items() if hasattr(value.headers, "items") else value.headers
    for name, header_value in items:
        lower = str(name).lower()
        if lower in ("content-length", "transfer-encoding", "connection"):
            continue  # the server frames the body itself
        if lower == "x-ms-run-function-failed":
            failed_header = True
            if status >= 500:
                header_value = "True"
        headers.append((str(name).encode("latin-1"), str(header_value).encode("latin-1")))
    if status >= 500 and not failed_header:
        headers.append((b"x-ms-run-function-failed", b"True"))
    return Reply(status, headers, bytes(body), failed=status >= 500)


def error(status: int, message: str, request_id: str = "", *, failed: bool = False) -> Reply:
    payload: dict[str, Any] = {"message": message}
    if request_id:
        payload["request_id"] = request_id
    headers = [
        (b"content-type", JSON),
        (b"x-ms-run-function-failed", b"True" if failed else b"False"),
    ]
    return Reply(status, headers, orjson.dumps(payload), failed=failed)
