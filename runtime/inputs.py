"""Building ``run``'s argument from a request, per input mode.

Each builder returns the value for ``EntryScript.make_call`` or raises
:class:`InputError` with the status and message to answer (400 for a
body that is not what the mode needs, 415 for a schema-decorated script
sent something other than JSON). Messages follow Azure ML's wording.
"""

from __future__ import annotations

import inspect
import json
from typing import Any
from urllib.parse import parse_qsl

import orjson

from modelform.runtime.aml_request import AMLRequest
from modelform.runtime.script import EntryScript, InputMode


class InputError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def build_input(
    script: EntryScript, scope: dict[str, Any], body: bytes | None, content_type: bytes
) -> Any:
    """The value ``run`` receives; ``body`` is None for GET (query parameters)."""
    mode = script.mode
    if mode is InputMode.TEXT:
        if body is None:
            return json.dumps(query_parameters(scope))
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InputError(400, f"Input cannot be decoded as UTF-8: {error}") from None
    if mode is InputMode.RAW:
        return AMLRequest.from_asgi(scope, body if body is not None else b"")
    if body is None:
        return extract_parameters(script, query_parameters(scope))
    if not _is_json_type(content_type):
        raise InputError(415, "Expects Content-Type to be application/json")
    try:
        document = parse_json(body)
    except ValueError as error:
        if body:
            raise InputError(400, f"POST body could not be decoded as JSON: {error}") from None
        raise InputError(400, "POST body is empty. Expecting a JSON dictionary.") from None
    if not isinstance(document, dict):
        raise InputError(400, "POST body should be a JSON dictionary.")
    return extract_parameters(script, document)


def parse_json(body: bytes) -> Any:
    """orjson first; the standard parser for what orjson refuses (NaN, huge integers)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def is_json(body: bytes) -> bool:
    try:
        parse_json(body)
    except ValueError:
        return False
    return True


def extract_parameters(script: EntryScript, document: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for param in script.params:
        value = document.get(param.name, param.default)
        if value is inspect.Parameter.empty:
            raise InputError(400, f"A value is not provided for the {param.name!r} parameter.")
        values[param.name] = value
    return values


def query_parameters(scope: dict[str, Any]) -> dict[str, Any]:
    """Query parameters, each value parsed as JSON when it is JSON; repeated keys make lists."""
    query = scope.get("query_string", b"").decode("latin-1")
    parsed: dict[str, Any] = {}
    for key, raw in parse_qsl(query, keep_blank_values=True):
        value = _maybe_json(raw)
        if key in parsed:
            previous = parsed[key]
            parsed[key] = (
                [*previous, value]
                if isinstance(previous, _Repeated)
                else _Repeated([previous, value])
            )
        else:
            parsed[key] = value
    return {
        key: list(value) if isinstance(value, _Repeated) else value for key, value in parsed.items()
    }


def parse_qsl_bytes(query: bytes) -> list[tuple[str, str]]:
    return parse_qsl(query.decode("latin-1"), keep_blank_values=True)


def headers_dict(scope: dict[str, Any]) -> dict[str, str]:
    """Request headers as ``{Title-Case-Name: value}``, repeats joined by commas."""
    result: dict[str, str] = {}
    for name, value in scope["headers"]:
        key = name.decode("latin-1").title()
        text = value.decode("latin-1")
        result[key] = f"{result[key]}, {text}" if key in result else text
    return result


class _Repeated(list):  # type: ignore[type-arg]
    """Marks a list made from a repeated query key (not a JSON list value)."""


def _maybe_json(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _is_json_type(content_type: bytes) -> bool:
    mimetype = content_type.split(b";", 1)[0].strip().lower()
    return mimetype == b"application/json" or (
        mimetype.startswith(b"application/") and mimetype.endswith(b"+json")
    )
