"""Connections by setting name, and writing a function's output bindings.

Supported beside the triggers: ``blob`` inputs and outputs, ``queue``
outputs (Azure Storage), ``serviceBus`` outputs and ``http`` (``$return``
of an HTTP function). Anything else is refused when the app loads, naming
the function and the binding, rather than silently doing nothing.

Outputs are written after the function returned, in binding order; a
failed write fails the invocation (the trigger retries it as it would a
raised exception).
"""

from __future__ import annotations

import mimetypes
import threading
import time
from collections.abc import Mapping
from typing import Any

from modelform.runtime.functions.bindings import (
    BindingError,
    BlobFacts,
    blob_bytes,
    blob_value,
    queue_messages,
)
from modelform.runtime.functions.invoke import Outcome
from modelform.runtime.functions.loader import AppLoadError, FunctionSpec, Param
from modelform.runtime.functions.patterns import (
    PatternError,
    check_template,
    fill_template,
    split_output_path,
)
from modelform.runtime.functions.queues import QueueService, encode_body
from modelform.runtime.functions.settings import (
    AzureStorage,
    HostOptions,
    SettingsError,
    Storage,
    servicebus_from_setting,
    storage_from_setting,
)
from modelform.runtime.functions.stores import BlobStore, StoreError, open_store

OUTPUT_TYPES = ("blob", "queue", "serviceBus", "http")
DEFAULT_STORAGE = "AzureWebJobsStorage"


class Connections:
    """Stores, queue services and service bus clients by setting name, opened once."""

    def __init__(self, settings: Mapping[str, str]) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._stores: dict[str, BlobStore] = {}
        self._queues: dict[str, QueueService] = {}
        self._buses: dict[str, Any] = {}

    def storage(self, name: str | None) -> Storage:
        return storage_from_setting(name or DEFAULT_STORAGE, self.settings)

    def blob_store(self, name: str | None) -> BlobStore:
        key = name or DEFAULT_STORAGE
        with self._lock:
            store = self._stores.get(key)
            if store is None:
                store = open_store(self.storage(key))
                self._stores[key] = store
            return store

    def queue_service(self, name: str | None) -> QueueService:
        key = name or DEFAULT_STORAGE
        with self._lock:
            service = self._queues.get(key)
            if service is None:
                storage = self.storage(key)
                if not isinstance(storage, AzureStorage):
                    raise SettingsError(
                        f"connection {key}: storage queues need an Azure Storage connection "
                        "string (an S3 location has no queues)"
                    )
                service = QueueService(storage)
                self._queues[key] = service
            return service

    def servicebus(self, name: str | None) -> Any:
        from modelform.runtime.functions.servicebus import BusConnection

        if not name:
            raise SettingsError("a service bus binding needs a connection setting")
        with self._lock:
            bus = self._buses.get(name)
            if bus is None:
                bus = BusConnection(servicebus_from_setting(name, self.settings))
                self._buses[name] = bus
            return bus

    def close(self) -> None:
        for bus in self._buses.values():
            bus.close()


def check_bindings(spec: FunctionSpec, connections: Connections, captures: set[str]) -> None:
    """Refuse, at load, bindings this host cannot serve and settings it cannot use."""
    for binding in spec.bindings:
        if binding is spec.trigger:
            continue
        kind = binding["type"]
        where = f"function {spec.name}, binding {binding['name']}"
        if binding["direction"] == "in":
            if kind != "blob":
                raise AppLoadError(f"{where}: input binding {kind} is not supported by this host")
        elif kind not in OUTPUT_TYPES:
            raise AppLoadError(f"{where}: output binding {kind} is not supported by this host")
        elif kind == "http" and spec.trigger_type != "httpTrigger":
            raise AppLoadError(f"{where}: an http output needs an http trigger")
        try:
            if kind == "blob":
                connections.storage(binding.get("connection"))
                split_output_path(binding.get("path", ""))
                if spec.trigger_type == "blobTrigger":
                    check_template(binding.get("path", ""), captures, where)
            elif kind == "queue":
                connections.queue_service(binding.get("connection"))
                if not binding.get("queueName"):
                    raise AppLoadError(f"{where}: queue output without queueName")
            elif kind == "serviceBus":
                connections.servicebus(binding.get("connection"))
        except (SettingsError, PatternError) as error:
            raise AppLoadError(f"{where}: {error}") from None


def read_blob_inputs(
    spec: FunctionSpec, connections: Connections, data: Mapping[str, Any]
) -> dict[str, Any]:
    """The values of ``blob`` input bindings (None when the blob does not exist)."""
    values: dict[str, Any] = {}
    for param in spec.params:
        binding = param.binding
        if param.is_out or binding is spec.trigger or binding["type"] != "blob":
            continue
        container, name = split_output_path(fill_template(binding["path"], data))
        store = connections.blob_store(binding.get("connection"))
        blob = store.read(container, name)
        if blob is None:
            values[param.name] = None
            continue
        facts = BlobFacts(container, name, store.uri(container, name), blob.etag, len(blob.data))
        values[param.name] = blob_value(blob.data, facts, param)
    return values


class OutputWriter:
    def __init__(self, connections: Connections, options: HostOptions) -> None:
        self.connections = connections
        self.options = options

    def finish(self, spec: FunctionSpec, outcome: Outcome, data: Mapping[str, Any]) -> Outcome:
        """``outcome`` of a run, its outputs written if it succeeded: a write
        that fails fails the run (so the trigger retries it); the writing's
        time counts in the run's."""
        if not outcome.ok:
            return outcome
        started = time.perf_counter()
        try:
            self.write(spec, outcome, data)
        except (BindingError, PatternError, StoreError, SettingsError) as error:
            outcome.ok = False
            outcome.error = f"writing outputs failed: {error}"
        outcome.seconds += time.perf_counter() - started
        return outcome

    def write(self, spec: FunctionSpec, outcome: Outcome, data: Mapping[str, Any]) -> None:
        """Write what the function set and returned (raises BindingError, StoreError...)."""
        for param in spec.outputs():
            out = outcome.outputs.get(param.name)
            if out is None or out.get() is None:
                continue
            self._write(spec, param.binding, out.get(), param.pytype, data)
        binding = spec.return_binding
        if binding is not None and binding["type"] != "http" and outcome.returned is not None:
            self._write(spec, binding, outcome.returned, None, data)

    def _write(
        self,
        spec: FunctionSpec,
        binding: dict[str, Any],
        value: Any,
        pytype: Any,
        data: Mapping[str, Any],
    ) -> None:
        kind = binding["type"]
        what = f"function {spec.name}, output {binding['name']}"
        if kind == "blob":
            container, name = split_output_path(fill_template(binding["path"], data))
            body = blob_bytes(value, pytype, what)
            content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
            self.connections.blob_store(binding.get("connection")).write(
                container, name, body, content_type
            )
        elif kind == "queue":
            service = self.connections.queue_service(binding.get("connection"))
            queue_name = fill_template(str(binding["queueName"]), data).lower()
            for message in queue_messages(value, pytype, what):
                service.send(queue_name, encode_body(message, self.options.queues.base64))
        elif kind == "serviceBus":
            bus = self.connections.servicebus(binding.get("connection"))
            bodies = queue_messages(value, pytype, what, "serviceBus")
            bus.send(binding.get("queueName"), binding.get("topicName"), bodies)
        else:
            raise BindingError(f"{what}: output binding {kind} is not supported")


def trigger_param(spec: FunctionSpec) -> Param:
    for param in spec.params:
        if param.binding is spec.trigger:
            return param
    raise AppLoadError(f"function {spec.name}: its trigger is not a parameter")
