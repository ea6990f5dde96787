"""App settings, connection settings and host.json, read as the real host reads them.

App settings are ``local.settings.json``'s ``Values`` overridden by the
process environment (on Azure the environment is all there is). The host
puts the merged settings into ``os.environ`` before importing the app, so
user code sees them as on Azure.

A trigger's ``connection`` names an app setting whose value is one of

* an Azure Storage connection string (``DefaultEndpointsProtocol=…;
  AccountName=…;AccountKey=…;BlobEndpoint=…;QueueEndpoint=…``, or
  ``UseDevelopmentStorage=true`` for Azurite on 127.0.0.1), or
* an S3 location in the same ``Key=Value;`` shape:
  ``S3Endpoint=http://127.0.0.1:19000;Region=us-east-1`` (optional
  ``PathStyle=true``). S3 credentials come from the usual AWS environment
  variables / config files of the host process, never from the setting.

A Service Bus setting is the namespace's connection string
(``Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…``).
Identity-based connections (``<name>__serviceUri``) are not supported.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_FUNCTION_KEY = "MODELFORM_FUNCTION_KEY"
ENV_HOST_ID = "AzureFunctionsWebHost__hostid"

#: Azurite's well-known development account (public, documented by Microsoft).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class SettingsError(ValueError):
    """A setting the host cannot use; the message is one line for the user."""


@dataclass(frozen=True)
class AzureStorage:
    """An Azure Storage account (real or Azurite) reached by a connection string."""

    connection_string: str
    account: str
    blob_endpoint: str
    queue_endpoint: str


@dataclass(frozen=True)
class S3Storage:
    """An S3-compatible endpoint; credentials from the process's AWS configuration."""

    endpoint: str
    region: str
    path_style: bool


Storage = AzureStorage | S3Storage


def load_app_settings(app_dir: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """``local.settings.json``'s ``Values`` overridden by ``environ`` (all of it)."""
    values: dict[str, str] = {}
    path = app_dir / "local.settings.json"
    if path.is_file():
        try:
            document = json.loads(path.read_text(encoding="utf-8-sig"))
        except (OSError, ValueError) as error:
            raise SettingsError(f"{path}: not valid JSON: {error}") from None
        raw = document.get("Values") if isinstance(document, dict) else None
        if raw is not None and not isinstance(raw, dict):
            raise SettingsError(f"{path}: Values must be an object")
        for name, value in (raw or {}).items():
            values[str(name)] = "" if value is None else str(value)
    values.update(environ)
    return values


def load_host_json(app_dir: Path) -> dict[str, Any]:
    path = app_dir / "host.json"
    if not path.is_file():
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as error:
        raise SettingsError(f"{path}: not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise SettingsError(f"{path}: must be a JSON object")
    return document


def parse_pairs(value: str) -> dict[str, str]:
    """``Key=Value;Key2=Value2`` → a dict with case-insensitive (lowered) keys."""
    pairs: dict[str, str] = {}
    for part in value.split(";"):
        part = part.strip()
        if not part:
            continue
        key, sep, rest = part.partition("=")
        if not sep:
            raise SettingsError(f"not a Key=Value pair: {part[:40]!r}")
        pairs[key.strip().lower()] = rest.strip()
    return pairs


def storage_from_setting(name: str, settings: Mapping[str, str]) -> Storage:
    """The storage a ``connection`` setting names (see the module doc)."""
    value = settings.get(name, "")
    if not value.strip():
        if settings.get(f"{name}__serviceUri") or settings.get(f"{name}__blobServiceUri"):
            raise SettingsError(
                f"connection {name}: identity-based connections are not supported here; "
                "set a connection string"
            )
        raise SettingsError(f"connection {name}: the app setting {name} is not set")
    try:
        pairs = parse_pairs(value)
    except SettingsError as error:
        raise SettingsError(f"connection {name}: {error}") from None
    if "s3endpoint" in pairs:
        endpoint = pairs["s3endpoint"]
        if not re.match(r"^https?://", endpoint):
            raise SettingsError(f"connection {name}: S3Endpoint must be an http(s) URL")
        return S3Storage(
            endpoint=endpoint.rstrip("/"),
            region=pairs.get("region") or "us-east-1",
            path_style=pairs.get("pathstyle", "true").lower() not in ("false", "0", "no"),
        )
    if pairs.get("usedevelopmentstorage", "").lower() == "true":
        proxy = pairs.get("developmentstorageproxyuri", "http://127.0.0.1").rstrip("/")
        blob = f"{proxy}:10000/{DEV_ACCOUNT}"
        queue = f"{proxy}:10001/{DEV_ACCOUNT}"
        connection = (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"BlobEndpoint={blob};QueueEndpoint={queue};"
        )
        return AzureStorage(connection, DEV_ACCOUNT, blob, queue)
    account = pairs.get("accountname", "")
    if not account and "blobendpoint" not in pairs:
        raise SettingsError(
            f"connection {name}: neither an Azure Storage connection string "
            "(AccountName=…;AccountKey=…) nor an S3 location (S3Endpoint=…)"
        )
    protocol = pairs.get("defaultendpointsprotocol", "https")
    suffix = pairs.get("endpointsuffix", "core.windows.net")
    blob = pairs.get("blobendpoint") or f"{protocol}://{account}.blob.{suffix}"
    queue = pairs.get("queueendpoint") or f"{protocol}://{account}.queue.{suffix}"
    return AzureStorage(value, account, blob.rstrip("/"), queue.rstrip("/"))


def servicebus_from_setting(name: str, settings: Mapping[str, str]) -> str:
    """The Service Bus connection string an app setting holds."""
    value = settings.get(name, "").strip()
    if not value:
        if settings.get(f"{name}__fullyQualifiedNamespace"):
            raise SettingsError(
                f"connection {name}: identity-based connections are not supported here; "
                "set a connection string"
            )
        raise SettingsError(f"connection {name}: the app setting {name} is not set")
    try:
        pairs = parse_pairs(value)
    except SettingsError as error:
        raise SettingsError(f"connection {name}: {error}") from None
    if not pairs.get("endpoint", "").startswith("sb://"):
        raise SettingsError(
            f"connection {name}: not a Service Bus connection string (Endpoint=sb://…)"
        )
    return value


def default_host_id(app_dir: Path, settings: Mapping[str, str]) -> str:
    """The host id receipts are kept under: the setting, else the app folder's name.

    As on Azure (where it comes from the site name) it is lower case, letters,
    digits and dashes, at most 32 characters, so several processes running
    the same app folder share their receipts.
    """
    explicit = settings.get(ENV_HOST_ID, "").strip()
    raw = explicit or app_dir.resolve().name or "modelform"
    return sanitize_host_id(raw)


def sanitize_host_id(raw: str) -> str:
    cleaned = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")[:32].strip("-")
    return cleaned or "modelform"


@dataclass(frozen=True)
class QueueOptions:
    """``host.json`` ``extensions.queues`` (the settings this host honours)."""

    batch_size: int = 16
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0
    base64: bool = True


@dataclass(frozen=True)
class HostOptions:
    """What ``host.json`` says that this host uses."""

    route_prefix: str = "api"
    queues: QueueOptions = QueueOptions()
    blob_parallelism: int = 8
    servicebus_max_concurrent: int = 16


def host_options(document: Mapping[str, Any]) -> HostOptions:
    extensions = document.get("extensions") or {}
    if not isinstance(extensions, dict):
        raise SettingsError("host.json: extensions must be an object")
    http = extensions.get("http") or {}
    prefix = http.get("routePrefix", "api") if isinstance(http, dict) else "api"
    queues = extensions.get("queues") or {}
    blobs = extensions.get("blobs") or {}
    servicebus = extensions.get("serviceBus") or {}
    encoding = str(queues.get("messageEncoding", "base64")).lower()
    if encoding not in ("base64", "none"):
        raise SettingsError("host.json: extensions.queues.messageEncoding must be base64 or none")
    return HostOptions(
        route_prefix=str(prefix or "").strip("/"),
        queues=QueueOptions(
            batch_size=_bounded_int(queues, "batchSize", 16, 1, 32),
            max_dequeue_count=_bounded_int(queues, "maxDequeueCount", 5, 1, 1000),
            visibility_timeout=_timespan(queues.get("visibilityTimeout"), "visibilityTimeout"),
            base64=encoding == "base64",
        ),
        blob_parallelism=_bounded_int(blobs, "maxDegreeOfParallelism", 8, 1, 64),
        servicebus_max_concurrent=_bounded_int(servicebus, "maxConcurrentCalls", 16, 1, 256),
    )


def _bounded_int(section: Any, key: str, default: int, low: int, high: int) -> int:
    if not isinstance(section, dict) or key not in section:
        return default
    value = section[key]
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise SettingsError(f"host.json: {key} must be a whole number from {low} to {high}")
    return value


def _timespan(value: Any, key: str) -> float:
    """A .NET TimeSpan ``hh:mm:ss[.fff]`` (as host.json writes them) in seconds."""
    if value is None:
        return 0.0
    match = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)", str(value).strip())
    if not match:
        raise SettingsError(f"host.json: {key} must be a time span such as 00:00:30")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def export_settings(settings: Mapping[str, str]) -> None:
    """Put the app settings into this process's environment (the user's code reads them)."""
    for name, value in settings.items():
        if os.environ.get(name) != value:
            os.environ[name] = value
