"""Blob storage as the blob trigger needs it: one interface, two APIs (S3 and Azure Blob).

Every operation the trigger's guarantees rest on is a single request with
a condition the server checks: ``create`` is a write with ``If-None-Match:
*`` (None when the object exists), ``replace`` a write with ``If-Match:
<etag>`` (None when someone changed it), ``read(..., etag=)`` a read of
exactly that version. ETags are handled without their quotes. On S3 an
ETag is the MD5 of the content, so identical bytes uploaded again are the
same version; on Azure every write makes a new ETag.

Clients are thread-safe (boto3 clients and azure-storage-blob clients are
meant to be shared by threads); one store serves all of a host's workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from modelform.runtime.functions.settings import S3Storage, Storage


class StoreError(Exception):
    """A storage request failed (network, permissions); one line."""


@dataclass(frozen=True)
class BlobEntry:
    name: str
    etag: str
    size: int
    last_modified: datetime | None = None


@dataclass(frozen=True)
class BlobData:
    data: bytes
    etag: str
    content_type: str | None
    last_modified: datetime | None
    metadata: dict[str, str]


class BlobStore(Protocol):
    kind: str

    def uri(self, container: str, name: str) -> str: ...

    def ensure_container(self, container: str) -> None: ...

    def listing(self, container: str, prefix: str) -> list[BlobEntry]: ...

    def read(self, container: str, name: str, etag: str | None = None) -> BlobData | None:
        """The blob (that version when ``etag`` is given), or None if gone or changed."""
        ...

    def write(self, container: str, name: str, data: bytes, content_type: str | None) -> str: ...

    def create(self, container: str, name: str, data: bytes) -> str | None:
        """Write only if absent; the new ETag, or None when the name is taken."""
        ...

    def replace(self, container: str, name: str, data: bytes, etag: str) -> str | None:
        """Write only over version ``etag``; the new ETag, or None when it changed."""
        ...

    def delete(self, container: str, name: str) -> None: ...


def unquote(etag: str) -> str:
    return etag.strip().strip('"')


def open_store(storage: Storage) -> BlobStore:
    if isinstance(storage, S3Storage):
        return S3Store(storage)
    from modelform.runtime.functions.azurestore import AzureBlobStore

    return AzureBlobStore(storage)


class S3Store:
    """S3 (MinIO, AWS) through boto3; credentials from the process's AWS configuration."""

    kind = "s3"

    def __init__(self, storage: S3Storage, max_pool: int = 32) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise StoreError("an S3 connection needs boto3: pip install boto3") from None
        self.storage = storage
        self._client = boto3.session.Session().client(
            "s3",
            endpoint_url=storage.endpoint,
            region_name=storage.region,
            config=Config(
                s3={"addressing_style": "path" if storage.path_style else "auto"},
                retries={"max_attempts": 3, "mode": "standard"},
                max_pool_connections=max_pool,
                connect_timeout=5,
                read_timeout=30,
            ),
        )
        from botocore.exceptions import BotoCoreError, ClientError

        self._client_error = ClientError
        self._errors = (ClientError, BotoCoreError)

    def uri(self, container: str, name: str) -> str:
        return f"{self.storage.endpoint}/{container}/{name}"

    def _status(self, error: Any) -> int:
        try:
            return int(error.response["ResponseMetadata"]["HTTPStatusCode"])
        except (AttributeError, KeyError, TypeError, ValueError):
            return 0

    def _fail(self, what: str, error: Exception) -> StoreError:
        if isinstance(error, self._client_error):
            code = error.response.get("Error", {}).get("Code", "")
            message = error.response.get("Error", {}).get("Message", "")
            return StoreError(f"S3 {what}: {code or self._status(error)} {message}".strip())
        return StoreError(f"S3 {what}: {error}")

    def ensure_container(self, container: str) -> None:
        try:
            self._client.create_bucket(Bucket=container)
        except self._errors as error:
            if _code(error) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise self._fail(f"create bucket {container}", error) from None

    def listing(self, container: str, prefix: str) -> list[BlobEntry]:
        entries: list[BlobEntry] = []
        token: str | None = None
        try:
            while True:
                kwargs: dict[str, Any] = {"Bucket": container, "Prefix": prefix, "MaxKeys": 1000}
                if token:
                    kwargs["ContinuationToken"] = token
                page = self._client.list_objects_v2(**kwargs)
                for item in page.get("Contents", ()):
                    entries.append(
                        BlobEntry(
                            item["Key"],
                            unquote(item["ETag"]),
                            int(item["Size"]),
                            item.get("LastModified"),
                        )
                    )
                if not page.get("IsTruncated"):
                    return entries
                token = page.get("NextContinuationToken")
        except self._errors as error:
            if _code(error) == "NoSuchBucket":
                return []  # as the real host: a missing container has no blobs yet
            raise self._fail(f"list {container}/{prefix}", error) from None

    def read(self, container: str, name: str, etag: str | None = None) -> BlobData | None:
        kwargs: dict[str, Any] = {"Bucket": container, "Key": name}
        if etag is not None:
            kwargs["IfMatch"] = f'"{etag}"'
        try:
            answer = self._client.get_object(**kwargs)
            body = answer["Body"].read()
        except self._errors as error:
            if self._status(error) in (404, 412):
                return None
            raise self._fail(f"get {container}/{name}", error) from None
        return BlobData(
            data=body,
            etag=unquote(answer["ETag"]),
            content_type=answer.get("ContentType"),
            last_modified=answer.get("LastModified"),
            metadata=dict(answer.get("Metadata") or {}),
        )

    def write(self, container: str, name: str, data: bytes, content_type: str | None) -> str:
        kwargs: dict[str, Any] = {"Bucket": container, "Key": name, "Body": data}
        if content_type:
            kwargs["ContentType"] = content_type
        try:
            return unquote(self._client.put_object(**kwargs)["ETag"])
        except self._errors as error:
            if _code(error) != "NoSuchBucket":
                raise self._fail(f"put {container}/{name}", error) from None
        self.ensure_container(container)  # as the output binding does: made on first use
        try:
            return unquote(self._client.put_object(**kwargs)["ETag"])
        except self._errors as error:
            raise self._fail(f"put {container}/{name}", error) from None

    def create(self, container: str, name: str, data: bytes) -> str | None:
        return self._conditional_put(container, name, data, IfNoneMatch="*")

    def replace(self, container: str, name: str, data: bytes, etag: str) -> str | None:
        return self._conditional_put(container, name, data, IfMatch=f'"{etag}"')

    def _conditional_put(self, container: str, name: str, data: bytes, **condition: str) -> Any:
        try:
            answer = self._client.put_object(
                Bucket=container,
                Key=name,
                Body=data,
                ContentType="application/json",
                **condition,
            )
        except self._errors as error:
            if self._status(error) in (412, 409, 404):
                return None  # taken (create) / changed or gone (replace)
            raise self._fail(f"conditional put {container}/{name}", error) from None
        return unquote(answer["ETag"])

    def delete(self, container: str, name: str) -> None:
        try:
            self._client.delete_object(Bucket=container, Key=name)
        except self._errors as error:
            if self._status(error) != 404:
                raise self._fail(f"delete {container}/{name}", error) from None


def _code(error: Exception) -> str:
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))
