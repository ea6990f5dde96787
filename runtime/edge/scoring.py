"""One edge message through the user's ``run()``, called as the HTTP runtime calls it.

:class:`Scorer` takes a received message (anything shaped like
``azure.iot.device.Message``: ``data``, ``input_name``, ``correlation_id``,
``message_id``, ``content_type``, ``content_encoding``,
``custom_properties``) and returns an :class:`Outcome`: the body to send,
its content type, and whether it is a result or an error. It imports
nothing of the SDK, so the module (``module``) decides how to send.

The input follows the script's mode, decided once by ``script.load_entry_script``:

* **text**: the body decoded as UTF-8;
* **raw** (``@rawhttp``): an :class:`EdgeRequest` — ``AMLRequest``'s API over
  the message (``get_data()`` is the body bytes, ``headers`` its properties,
  ``method`` POST, ``path`` ``/inputs/<input>``) plus ``input_name``,
  ``properties``, ``correlation_id``, ``message_id`` and ``message``;
* **object** (inference-schema): the body as a JSON object, one keyword per
  parameter.

``request_headers``, when ``run`` asks for it, is the message's custom
properties plus ``Content-Type`` / ``Content-Encoding`` when set.

What ``run`` returns is encoded as the HTTP runtime encodes it (JSON,
numpy included; ``None`` is ``{}``); a response object is sent as its body
and content type, and one with status >= 400 counts as an error. Errors —
a body the mode cannot take, ``run()`` raising, a timeout, a result that
is not JSON — become an error outcome whose body is
``{"message": ..., "error": <exception type>, "input": <input name>}``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from modelform.runtime import inputs, responses
from modelform.runtime.aml_request import AMLRequest, ClientError
from modelform.runtime.deadline import Deadline, RunTimeout
from modelform.runtime.script import EntryScript, InputMode

JSON_TYPE = "application/json"
#: Result types that are neither awaitables nor response objects (skips the checks).
_PLAIN = frozenset({list, dict, str, int, float, bool, tuple, type(None)})


class EdgeRequest(AMLRequest):
    """What a ``@rawhttp`` ``run()`` gets for an edge message."""

    def __init__(self, message: Any, body: bytes, headers: dict[str, str]) -> None:
        super().__init__(
            method="POST",
            path=f"/inputs/{message.input_name}",
            query_string=b"",
            headers=headers.items(),
            body=body,
            scheme="amqp",
        )
        self.input_name: str = message.input_name
        self.properties: dict[str, str] = dict(message.custom_properties or {})
        self.correlation_id: str | None = message.correlation_id
        self.message_id: str | None = message.message_id
        self.message = message

    def __repr__(self) -> str:
        return f"<EdgeRequest input={self.input_name!r} correlation_id={self.correlation_id!r}>"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    body: bytes
    content_type: str | None = JSON_TYPE
    #: For errors: the one-line reason (also in the body), and the traceback when run() raised.
    error: str = ""
    traceback: str = ""


class Scorer:
    """Calls ``run()`` for one message at a time, on the thread that made it (the main one).

    ``timeout`` (seconds, None for none) limits each call with the HTTP
    runtime's ``Deadline`` (a ``SIGALRM`` timer): create and use the scorer
    on the main thread.
    """

    def __init__(self, script: EntryScript, timeout: float | None) -> None:
        self.script = script
        self._call: Callable[[Any, dict[str, str] | None], Any] = script.make_call()
        self._mode = script.mode
        self._wants_headers = script.wants_headers
        self._timeout = timeout
        self._deadline = Deadline(timeout)
        self._loop: asyncio.AbstractEventLoop | None = None

    def score(self, message: Any) -> Outcome:
        input_name = message.input_name
        try:
            value, headers = self._input(message)
        except inputs.InputError as error:
            return failure(error.message, "InputError", input_name)
        try:
            output = self._deadline.call(self._call, value, headers)
            if type(output) not in _PLAIN and inspect.isawaitable(output):
                output = self._await(output)
        except (TimeoutError, RunTimeout):
            return failure(
                f"run() did not finish within {self._timeout:g} s", "Timeout", input_name
            )
        except ClientError as error:
            return failure(error.description, type(error).__name__, input_name)
        except (Exception, SystemExit) as error:
            detail = f"{type(error).__name__}: {error}"
            return failure(
                f"An unexpected error occurred in scoring script: {detail}",
                type(error).__name__,
                input_name,
                "".join(traceback.format_exception(error)),
            )
        if type(output) not in _PLAIN and responses.is_response_object(output):
            return from_response(output, input_name)
        try:
            return Outcome(True, responses.encode_output(output))
        except responses.UnserialisableOutput as error:
            return failure(str(error), "UnserialisableOutput", input_name)

    def _input(self, message: Any) -> tuple[Any, dict[str, str] | None]:
        data = message.data
        body = data if isinstance(data, bytes) else str(data or "").encode("utf-8")
        mode = self._mode
        headers = properties_headers(message) if self._wants_headers else None
        if mode is InputMode.TEXT:
            try:
                return body.decode("utf-8"), headers
            except UnicodeDecodeError as error:
                raise inputs.InputError(400, f"Input cannot be decoded as UTF-8: {error}") from None
        if mode is InputMode.RAW:
            request_headers = headers if headers is not None else properties_headers(message)
            return EdgeRequest(message, body, request_headers), headers
        try:
            document = inputs.parse_json(body)
        except ValueError as error:
            raise inputs.InputError(400, f"message body is not valid JSON: {error}") from None
        if not isinstance(document, dict):
            raise inputs.InputError(400, "message body should be a JSON object")
        return inputs.extract_parameters(self.script, document), headers

    def _await(self, awaitable: Any) -> Any:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(asyncio.wait_for(awaitable, self._timeout))

    def close(self) -> None:
        if self._loop is not None:
            self._loop.close()
            self._loop = None


def properties_headers(message: Any) -> dict[str, str]:
    headers = {str(k): str(v) for k, v in (message.custom_properties or {}).items()}
    if message.content_type:
        headers["Content-Type"] = message.content_type
    if message.content_encoding:
        headers["Content-Encoding"] = message.content_encoding
    return headers


def failure(message: str, kind: str, input_name: str | None, trace: str = "") -> Outcome:
    body = orjson.dumps({"message": message, "error": kind, "input": input_name})
    return Outcome(False, body, JSON_TYPE, message, trace)


def from_response(value: Any, input_name: str | None) -> Outcome:
    """A response object's body and content type; status >= 400 is an error."""
    status = int(value.status_code)
    body = value.get_data()
    if isinstance(body, str):
        body = body.encode("utf-8")
    content_type = value.headers.get("Content-Type") if hasattr(value.headers, "get") else None
    if status < 400:
        return Outcome(True, bytes(body), content_type)
    text = bytes(body).decode("utf-8", "replace")
    try:
        text = str(json.loads(text).get("message", text))
    except (ValueError, AttributeError):
        pass
    return failure(f"run() answered status {status}: {text[:1000]}", f"Status{status}", input_name)
