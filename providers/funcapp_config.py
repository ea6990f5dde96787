"""The functionapp target's options, declared once with descriptions (they
feed validation and the generated docs), and the service options it honours.

The target says where the apps' storage is (``storage:``: an S3-compatible
endpoint, or an Azure Storage connection string), how the local functions
host runs (a process or a container) and how the container is built (the
builder options the kubernetes target declares, reused as they are). A
service adds its ``trigger:`` (:mod:`modelform.providers.funcapp_trigger`).

The storage's credentials never pass through here: S3 takes them from the
host process's AWS environment; an Azure connection string is marked
``sensitive`` (masked in every output) and never quoted in an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelform.plugin import Diagnostic, DiagnosticError, Pos, is_known, shared_options
from modelform.providers import imagebuild
from modelform.providers.dockerengine import default_host
from modelform.providers.funcapp_trigger import (
    STORAGE_SETTING,
    TRIGGER_SCHEMA,
    check_trigger,
    normalize,
)
from modelform.providers.k8s_config import TARGET_SCHEMA as _KUBERNETES_TARGET

__all__ = [
    "SERVICE_SCHEMA",
    "STORAGE_SETTING",
    "TARGET_SCHEMA",
    "Options",
    "Storage",
    "check_trigger",
    "normalize",
    "options",
]

#: The image builder's options, as the kubernetes target declares them.
BUILD_OPTIONS = ("docker_host", "base_image", "carry_ca")

STORAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Where blobs and queues are: {endpoint, region, path_style} for S3-compatible "
    "storage such as MinIO (credentials from the usual AWS environment variables or config of "
    "the host process), or {connection_string} for Azure Storage (Azurite's, or an account's). "
    "Exactly one of endpoint and connection_string. It becomes the AzureWebJobsStorage app "
    "setting.",
    "properties": {
        "endpoint": {
            "type": "string",
            "pattern": "^https?://[^/\\s]+/?$",
            "description": "S3: the endpoint URL, e.g. http://127.0.0.1:19000.",
        },
        "region": {
            "type": "string",
            "minLength": 1,
            "description": "S3: the region signed for (default us-east-1).",
        },
        "path_style": {
            "type": "boolean",
            "description": "S3: address buckets in the path (http://host/bucket/key) rather than "
            "the host name (default true: what MinIO and most S3-compatible servers want).",
        },
        "connection_string": {
            "type": "string",
            "minLength": 1,
            "sensitive": True,
            "description": "Azure Storage: a connection string (AccountName=...;AccountKey=...; "
            "BlobEndpoint=...;QueueEndpoint=..., or UseDevelopmentStorage=true). Sensitive: "
            "masked in every output; pass it through a sensitive variable.",
        },
    },
    "additionalProperties": False,
    "minProperties": 1,
    "not": {"required": ["endpoint", "connection_string"]},
    "dependentRequired": {"region": ["endpoint"], "path_style": ["endpoint"]},
}

TARGET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "storage": STORAGE_SCHEMA,
        "run_as": {
            "enum": ["process", "container"],
            "default": "process",
            "description": "How the local functions host runs each app: a process on this "
            "machine, or a container built from the app on the Docker Engine.",
        },
        "delete_receipts_on_destroy": {
            "type": "boolean",
            "default": False,
            "description": "On destroy, also delete the blob receipts the host kept in the "
            "storage (azure-webjobs-hosts/blobreceipts/...), so the same blobs would be processed "
            "again by a new app (default false: keep them, as Azure does).",
        },
        "poll_seconds": {
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 0.5,
            "description": "Seconds between two listings of a watched container or two polls of "
            "an empty queue by the local host.",
        },
        **{k: _KUBERNETES_TARGET["properties"][k] for k in BUILD_OPTIONS},
    },
    "additionalProperties": False,
}

SERVICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        **shared_options("port", "auth", "timeout_seconds", auth="none"),
        "trigger": TRIGGER_SCHEMA,
    },
    "required": ["port"],
}

#: Keys every target has beside the kind's own options.
_COMMON = ("name", "kind", "description", "digest")
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class Storage:
    """The target's storage. ``repr`` never shows the connection string.

    ``kind`` is ``s3`` or ``azure``. While planning, a value that comes from a
    reference not yet known is None (its kind is known all the same)."""

    kind: str
    endpoint: str | None = None
    region: str | None = None
    path_style: bool = True
    connection_string: str | None = field(default=None, repr=False)

    def setting(self) -> str:
        """The ``AzureWebJobsStorage`` app setting: the Azure connection string,
        or the S3 location as ``S3Endpoint=URL;Region=R;PathStyle=true``."""
        if self.kind == "azure":
            return self.connection_string or ""
        parts = [
            f"S3Endpoint={str(self.endpoint).rstrip('/')}",
            f"Region={self.region or DEFAULT_REGION}",
        ]
        if self.path_style:
            parts.append("PathStyle=true")
        return ";".join(parts)

    def describe(self) -> str:
        """One line for plans and logs, with no secret in it."""
        if self.kind == "s3":
            return f"S3 at {self.endpoint} ({self.region or DEFAULT_REGION})"
        return f"Azure Storage account {account_name(self.connection_string or '')}"


@dataclass(frozen=True)
class Options:
    storage: Storage | None
    run_as: str
    delete_receipts_on_destroy: bool
    poll_seconds: float
    docker_host: str
    base_image: str
    carry_ca: bool | str | None


def _pairs(connection_string: str) -> dict[str, str] | None:
    """``Key=Value;...`` as a dict (keys as written), or None when malformed."""
    out = {}
    for part in connection_string.split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            return None
        out[key.strip()] = value
    return out


def account_name(connection_string: str) -> str:
    """The account a connection string names (``devstoreaccount1`` for the
    development storage), for messages; never a key."""
    pairs = {k.lower(): v for k, v in (_pairs(connection_string) or {}).items()}
    if pairs.get("usedevelopmentstorage", "").lower() == "true":
        return "devstoreaccount1"
    return pairs.get("accountname") or "(unnamed)"


def connection_string_problem(connection_string: str) -> str | None:
    """What is wrong with an Azure Storage connection string, in words that
    quote none of it (None: nothing)."""
    pairs = _pairs(connection_string)
    if pairs is None:
        return "is not Key=Value pairs separated by ;"
    keys = {k.lower(): v for k, v in pairs.items()}
    if keys.get("usedevelopmentstorage", "").lower() == "true":
        return None
    if "sharedaccesssignature" in keys:
        if not any(k.endswith("endpoint") for k in keys):
            return "with SharedAccessSignature needs BlobEndpoint/QueueEndpoint"
        return None
    missing = [k for k in ("AccountName", "AccountKey") if k.lower() not in keys]
    if missing:
        return f"has no {missing[0]}"
    if "blobendpoint" not in keys and "defaultendpointsprotocol" not in keys:
        return "names neither BlobEndpoint nor DefaultEndpointsProtocol"
    return None


def _fail(target: dict[str, Any], message: str, pos: Pos | None) -> DiagnosticError:
    name = target.get("name", "?")
    return DiagnosticError(
        Diagnostic(
            f"target {name} (functionapp): {message}", pos, "see docs/providers/functionapp.md"
        )
    )


def storage_of(target: dict[str, Any], pos: Pos | None = None) -> Storage | None:
    """The target's storage, checked (the loader has checked the schema;
    this says what the schema cannot, without quoting a secret)."""
    raw = target.get("storage")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _fail(target, "storage: expected {endpoint: URL} or {connection_string: ...}", pos)
    if ("endpoint" in raw) == ("connection_string" in raw):
        raise _fail(
            target, "storage: set exactly one of endpoint (S3) and connection_string (Azure)", pos
        )
    conn = raw.get("connection_string")
    if "connection_string" in raw:
        if not is_known(conn):
            return Storage("azure")
        if not isinstance(conn, str):
            raise _fail(target, "storage.connection_string: expected a string", pos)
        problem = connection_string_problem(conn)
        if problem:
            raise _fail(target, f"storage.connection_string {problem}", pos)
        return Storage("azure", connection_string=conn)
    endpoint, region = raw.get("endpoint"), raw.get("region")
    return Storage(
        "s3",
        endpoint=str(endpoint).rstrip("/") if is_known(endpoint) else None,
        region=str(region) if is_known(region) and region is not None else None,
        path_style=bool(raw.get("path_style", True)) if is_known(raw.get("path_style")) else True,
    )


def options(target: dict[str, Any], pos: Pos | None = None) -> Options:
    """The target's options (the loader has checked them against the schema)."""
    own = {k: v for k, v in target.items() if k not in _COMMON}
    unknown = sorted(set(own) - set(TARGET_SCHEMA["properties"]))
    if unknown:
        raise _fail(target, f"unknown option {unknown[0]}", pos)
    return Options(
        storage=storage_of(target, pos),
        run_as=str(own.get("run_as") or "process"),
        delete_receipts_on_destroy=bool(own.get("delete_receipts_on_destroy", False)),
        poll_seconds=float(own.get("poll_seconds") or 0.5),
        docker_host=own.get("docker_host") or default_host(),
        base_image=own.get("base_image") or imagebuild.DEFAULT_BASE_IMAGE,
        carry_ca=own.get("carry_ca"),
    )
