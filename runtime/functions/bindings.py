"""The values a function gets and gives, in the types the real Python worker uses.

Inputs are made by the ``azure-functions`` library's own converters
(``meta.get_binding_registry()``) from a ``Datum`` and the trigger
metadata the real host would send, so a user's function sees the same
``func.InputStream``, ``func.QueueMessage``, ``func.ServiceBusMessage`` and
``func.HttpRequest``; a parameter annotated ``str`` or ``bytes`` gets the
raw value, as the worker's generic binding gives it. Outputs go through
the same converters' ``encode``, so a value the worker would refuse (a dict
for a blob) fails here too, with the worker's wording.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from azure.functions import meta

from modelform.runtime.functions.loader import Param


class BindingError(Exception):
    """A value the binding cannot carry (the function's fault, like an exception)."""


class Out(func.Out):  # type: ignore[type-arg]
    """``func.Out[T]``: what the function sets, read by the host after it returns."""

    def __init__(self) -> None:
        self._value: Any = None
        self.was_set = False

    def set(self, val: Any) -> None:
        self._value = val
        self.was_set = True

    def get(self) -> Any:
        return self._value


class _TraceContext(func._abc.TraceContext):
    def __init__(self) -> None:
        self._parent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return self._parent

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(func._abc.RetryContext):
    def __init__(self, retry_count: int, max_retry_count: int) -> None:
        self._count = retry_count
        self._max = max_retry_count

    @property
    def retry_count(self) -> int:
        return self._count

    @property
    def max_retry_count(self) -> int:
        return self._max

    @property
    def exception(self) -> Any:
        return None


_THREAD_LOCAL = threading.local()


class Context(func.Context):
    """``context: func.Context`` as the worker fills it."""

    def __init__(
        self, function_name: str, directory: str, *, retry_count: int = 0, max_retries: int = 0
    ) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._directory = directory
        self._trace = _TraceContext()
        self._retry = _RetryContext(retry_count, max_retries)

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return _THREAD_LOCAL

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._directory

    @property
    def trace_context(self) -> Any:
        return self._trace

    @property
    def retry_context(self) -> Any:
        return self._retry


def _datum(value: Any) -> meta.Datum:
    """A trigger-metadata entry as the host sends it (strings, numbers, JSON)."""
    if isinstance(value, str):
        return meta.Datum(type="string", value=value)
    if isinstance(value, bool | int):
        return meta.Datum(type="int", value=int(value))
    return meta.Datum(type="json", value=json.dumps(value, default=str))


def _converter(binding_type: str) -> Any:
    converter = meta.get_binding_registry().get(binding_type)
    if converter is None:
        raise BindingError(f"no converter for binding type {binding_type}")
    return converter


def _raw(data: bytes, param: Param) -> bytes | str:
    if param.pytype is bytes:
        return data
    return data.decode("utf-8")


# ---- inputs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlobFacts:
    """What the host knows of a blob when it calls the function."""

    container: str
    name: str
    uri: str
    etag: str
    length: int
    content_type: str | None = None
    last_modified: str | None = None
    metadata: Mapping[str, str] | None = None

    def properties(self) -> dict[str, Any]:
        """``InputStream.blob_properties``, in the real host's key names (the cheap ones)."""
        props: dict[str, Any] = {
            "Length": self.length,
            "ContentLength": self.length,
            "ETag": f'"{self.etag}"',
            "BlobType": "BlockBlob",
        }
        if self.content_type:
            props["ContentType"] = self.content_type
        if self.last_modified:
            props["LastModified"] = self.last_modified
        return props


def blob_value(data: bytes, facts: BlobFacts, param: Param) -> Any:
    """A blob trigger's (or blob input's) argument."""
    if param.raw:
        return _raw(data, param)
    metadata = {
        "BlobTrigger": _datum(f"{facts.container}/{facts.name}"),
        "Uri": _datum(facts.uri),
        "Properties": _datum(facts.properties()),
        "Metadata": _datum(dict(facts.metadata or {})),
    }
    return _converter("blobTrigger").decode(
        meta.Datum(type="bytes", value=data), trigger_metadata=metadata
    )


@dataclass(frozen=True)
class QueueFacts:
    id: str
    dequeue_count: int
    insertion_time: str | None
    expiration_time: str | None
    next_visible_time: str | None
    pop_receipt: str | None


def queue_value(body: bytes, facts: QueueFacts, param: Param) -> Any:
    if param.raw:
        return _raw(body, param)
    metadata: dict[str, meta.Datum] = {
        "Id": _datum(facts.id),
        "DequeueCount": _datum(facts.dequeue_count),
    }
    for key, value in (
        ("InsertionTime", facts.insertion_time),
        ("ExpirationTime", facts.expiration_time),
        ("NextVisibleTime", facts.next_visible_time),
        ("PopReceipt", facts.pop_receipt),
    ):
        if value is not None:
            metadata[key] = _datum(value)
    return _converter("queueTrigger").decode(
        meta.Datum(type="bytes", value=body), trigger_metadata=metadata
    )


def servicebus_value(body: bytes, metadata: Mapping[str, Any], param: Param) -> Any:
    """``metadata``: the trigger metadata fields (see ``servicebus.message_metadata``)."""
    if param.raw:
        return _raw(body, param)
    data = {key: _datum(value) for key, value in metadata.items() if value is not None}
    data.setdefault("UserProperties", _datum({}))
    return _converter("serviceBusTrigger").decode(
        meta.Datum(type="bytes", value=body), trigger_metadata=data
    )


def http_value(
    method: str,
    url: str,
    headers: Mapping[str, str],
    params: Mapping[str, str],
    route_params: Mapping[str, str],
    body: bytes,
) -> Any:
    from azure.functions.http import HttpRequest

    return HttpRequest(
        method=method,
        url=url,
        headers=headers,
        params=params,
        route_params=route_params,
        body_type="bytes",
        body=body,
    )


# ---- outputs -------------------------------------------------------------------------------


def _encode(binding_type: str, value: Any, pytype: Any, what: str) -> meta.Datum:
    try:
        return _converter(binding_type).encode(value, expected_type=pytype)
    except NotImplementedError:
        raise BindingError(
            f"{what}: unable to encode outgoing TypedData: unsupported type "
            f'"{binding_type}" for Python type "{type(value).__name__}"'
        ) from None


def blob_bytes(value: Any, pytype: Any, what: str) -> bytes:
    """A value set on (or returned for) a blob output, as the bytes to write."""
    if isinstance(value, bytearray | memoryview):
        value = bytes(value)
    datum = _encode("blob", value, pytype, what)
    if datum.type == "string":
        return str(datum.value).encode("utf-8")
    return bytes(datum.value)


def queue_messages(value: Any, pytype: Any, what: str, binding_type: str = "queue") -> list[bytes]:
    """A value set on a queue (or ``serviceBus``) output, as the message bodies to send."""
    datum = _encode(binding_type, value, pytype, what)
    if datum.type == "string":
        return [str(datum.value).encode("utf-8")]
    if datum.type == "bytes":
        return [bytes(datum.value)]
    document = json.loads(datum.value)
    items = document if isinstance(document, list) else [document]
    return [
        item.encode("utf-8") if isinstance(item, str) else json.dumps(item).encode("utf-8")
        for item in items
    ]


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def http_answer(value: Any, pytype: Any, what: str) -> HttpAnswer:
    """What an HTTP function returned, as the response to send.

    ``func.HttpResponse`` and ``str`` as the worker encodes them; a dict or
    list (which the worker refuses) is answered as JSON, a convenience.
    """
    if isinstance(value, dict | list):
        body = json.dumps(value).encode("utf-8")
        return HttpAnswer(200, [("content-type", "application/json")], body)
    if value is None:
        return HttpAnswer(204, [], b"")
    datum = _encode("http", value, pytype, what)
    if datum.type == "string":
        return HttpAnswer(
            200, [("content-type", "text/plain; charset=utf-8")], str(datum.value).encode()
        )
    fields = datum.value
    headers = [(str(name), str(header.value)) for name, header in fields["headers"].items()]
    for cookie in fields.get("cookies") or []:
        for morsel in cookie.values():
            headers.append(("set-cookie", morsel.OutputString()))
    body = fields["body"].value if fields.get("body") is not None else b""
    return HttpAnswer(int(fields["status_code"].value), headers, bytes(body or b""))
