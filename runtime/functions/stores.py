"""Blob storage as the blob trigger needs it: one interface, two APIs (S3 and Azure Blob).

Every operation the trigger's guarantees rest on is a single request with
a condition the server checks: ``create`` is a write with ``If-None-Match:
*`` (None when the object exists), ``replace`` a write with ``If-Match:
<etag>`` (None when someone changed it), ``read(..., etag=)`` a read of
exactly that version. ETags are handled without their quotes. On S3 an
ETag is the MD5 of the content, so identical bytes uploaded again are the
same version; on Azure every write makes a new ETag.

Stores are thread-safe (the S3 client keeps one connection a thread,
azure-storage-blob clients are meant to be shared); one store serves all of
a host's workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
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
    """S3 (MinIO, AWS) through ``s3http``'s signed keep-alive requests.

    Credentials come from botocore's chain (environment, shared config and
    profile, SSO, container and instance metadata), as boto3 would find them.
    ``listen`` (MinIO's bucket notification stream) is in ``s3listen``.
    """

    kind = "s3"

    def __init__(self, storage: S3Storage) -> None:
        try:
            import botocore.session
        except ImportError:
            raise StoreError("an S3 connection needs boto3: pip install boto3") from None
        from modelform.runtime.functions.s3http import S3Http

        self.storage = storage
        credentials = botocore.session.get_session().get_credentials()
        if credentials is None:
            raise StoreError(
                "S3: no AWS credentials found (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE, or another source boto3 reads)"
            )
        self.http = S3Http(storage.endpoint, storage.region, storage.path_style, credentials)

    @property
    def requests(self) -> int:
        """Requests sent so far (retries included)."""
        return self.http.requests

    def uri(self, container: str, name: str) -> str:
        return f"{self.storage.endpoint}/{container}/{name}"

    def _send(self, what: str, method: str, container: str, name: str = "", **kwargs: Any) -> Any:
        from modelform.runtime.functions.s3http import S3HttpError

        try:
            return self.http.request(method, container, name, **kwargs)
        except S3HttpError as error:
            raise StoreError(f"S3 {what}: {error}") from None

    def _fail(self, what: str, answer: Any) -> StoreError:
        code = answer.error_code() or str(answer.status)
        return StoreError(f"S3 {what}: {code} {answer.error_message()}".strip())

    def ensure_container(self, container: str) -> None:
        body = b""
        if self.storage.region not in ("", "us-east-1"):
            body = (
                "<CreateBucketConfiguration><LocationConstraint>"
                f"{self.storage.region}</LocationConstraint></CreateBucketConfiguration>"
            ).encode()
        what = f"create bucket {container}"
        answer = self._send(what, "PUT", container, body=body)
        if answer.status == 200:
            return
        if answer.error_code() not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise self._fail(what, answer)

    def listing(self, container: str, prefix: str) -> list[BlobEntry]:
        from modelform.runtime.functions.s3http import parse_list_page

        entries: list[BlobEntry] = []
        query = {"list-type": "2", "prefix": prefix, "encoding-type": "url", "max-keys": "1000"}
        what = f"list {container}/{prefix}"
        while True:
            answer = self._send(what, "GET", container, query=query)
            if answer.status != 200:
                if answer.error_code() == "NoSuchBucket":
                    return []  # as the real host: a missing container has no blobs yet
                raise self._fail(what, answer)
            page = parse_list_page(answer.body)
            entries.extend(BlobEntry(o.key, o.etag, o.size) for o in page.objects)
            if not page.truncated or not page.token:
                return entries
            query = {**query, "continuation-token": page.token}

    def read(self, container: str, name: str, etag: str | None = None) -> BlobData | None:
        headers = {} if etag is None else {"If-Match": f'"{etag}"'}
        what = f"get {container}/{name}"
        answer = self._send(what, "GET", container, name, headers=headers)
        if answer.status in (404, 412):
            return None
        if answer.status != 200:
            raise self._fail(what, answer)
        head = answer.headers
        modified = None
        if "last-modified" in head:
            try:
                modified = parsedate_to_datetime(head["last-modified"])
            except (TypeError, ValueError):
                modified = None
        return BlobData(
            data=answer.body,
            etag=unquote(head.get("etag", "")),
            content_type=head.get("content-type"),
            last_modified=modified,
            metadata={k[11:]: v for k, v in head.items() if k.startswith("x-amz-meta-")},
        )

    def write(self, container: str, name: str, data: bytes, content_type: str | None) -> str:
        headers = {"Content-Type": content_type} if content_type else {}
        what = f"put {container}/{name}"
        answer = self._send(what, "PUT", container, name, headers=headers, body=data)
        if answer.status == 404 and answer.error_code() == "NoSuchBucket":
            self.ensure_container(container)  # as the output binding does: made on first use
            answer = self._send(what, "PUT", container, name, headers=headers, body=data)
        if answer.status != 200:
            raise self._fail(what, answer)
        return unquote(answer.headers.get("etag", ""))

    def create(self, container: str, name: str, data: bytes) -> str | None:
        return self._conditional_put(container, name, data, {"If-None-Match": "*"})

    def replace(self, container: str, name: str, data: bytes, etag: str) -> str | None:
        return self._conditional_put(container, name, data, {"If-Match": f'"{etag}"'})

    def _conditional_put(
        self, container: str, name: str, data: bytes, condition: dict[str, str]
    ) -> str | None:
        what = f"conditional put {container}/{name}"
        headers = {"Content-Type": "application/json", **condition}
        answer = self._send(what, "PUT", container, name, headers=headers, body=data)
        if answer.status in (412, 409, 404):
            return None  # taken (create) / changed or gone (replace)
        if answer.status != 200:
            raise self._fail(what, answer)
        return unquote(answer.headers.get("etag", ""))

    def delete(self, container: str, name: str) -> None:
        what = f"delete {container}/{name}"
        answer = self._send(what, "DELETE", container, name)
        if answer.status not in (200, 204, 404):
            raise self._fail(what, answer)
