"""The few S3 requests the S3 model store makes, each failure one line.

:class:`Objects` wraps one bucket of a :class:`~modelform.state.s3client.S3Location`:
get, head, put, delete and list, where "not there" and the failures a caller
expects (a precondition that did not hold, a checksum the storage refused)
are answers, and anything else — unreachable endpoint, missing bucket, no
credentials, access denied — is a :class:`StoreError` naming the ``s3://``
URL (:func:`~modelform.state.s3client.storage_error`). The client is made on
first use, so opening a store reaches nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, BinaryIO

from modelform.engine.modelstore import StoreError
from modelform.state.errors import StateError
from modelform.state.s3client import S3Location, code_of, storage_error

#: Error codes meaning the key is not there (HEAD has no body, so only "404").
NOT_FOUND = ("NoSuchKey", "404", "NotFound")
#: A conditional put whose condition did not hold: the key exists.
EXISTS = ("PreconditionFailed", "ConditionalRequestConflict")
#: The storage computed another checksum than the one sent.
CHECKSUM = ("XAmzContentChecksumMismatch", "BadDigest", "InvalidDigest")


def _errors() -> tuple[type[BaseException], ...]:
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError, Boto3Error)


class Objects:
    """One bucket's objects, through one boto3 client."""

    def __init__(self, location: S3Location) -> None:
        self.location = location
        self.bucket = location.bucket
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                try:
                    self._client = self.location.client()
                except StateError as e:
                    raise StoreError(str(e)) from None
            return self._client

    def url(self, key: str) -> str:
        return self.location.url(key)

    def call(self, doing: str, key: str, fn: Callable[[Any], Any], *ok: str) -> Any:
        """``fn(client)``. A failure whose error code is in ``ok`` returns that
        code (a str: no request here returns one); any other failure is a
        StoreError: "s3://bucket/key at ENDPOINT: cannot DOING: why"."""
        client = self.client
        try:
            return fn(client)
        except _errors() as e:
            if code_of(e) in ok:
                return code_of(e)
            raise StoreError(str(storage_error(e, doing, self.location, key))) from None

    def get(self, key: str, doing: str) -> bytes | None:
        """The object's bytes, or None when there is no such key."""
        got = self.call(doing, key, lambda c: c.get_object(Bucket=self.bucket, Key=key), *NOT_FOUND)
        if isinstance(got, str):
            return None
        data: bytes = self.call(doing, key, lambda _: got["Body"].read())
        return data

    def stream(self, key: str, doing: str, out: BinaryIO) -> bool:
        """Copy the object into ``out``; False when there is no such key."""
        got = self.call(doing, key, lambda c: c.get_object(Bucket=self.bucket, Key=key), *NOT_FOUND)
        if isinstance(got, str):
            return False

        def copy(_: Any) -> None:
            for chunk in got["Body"].iter_chunks(1 << 20):
                out.write(chunk)

        self.call(doing, key, copy)
        return True

    def exists(self, key: str, doing: str) -> bool:
        got = self.call(
            doing, key, lambda c: c.head_object(Bucket=self.bucket, Key=key), *NOT_FOUND
        )
        return not isinstance(got, str)

    def put(self, key: str, body: Any, doing: str, *ok: str, **args: Any) -> str | None:
        """Store ``body``; the error code when it is one of ``ok``, else None."""
        got = self.call(
            doing, key, lambda c: c.put_object(Bucket=self.bucket, Key=key, Body=body, **args), *ok
        )
        return got if isinstance(got, str) else None

    def upload_file(self, key: str, path: str, doing: str, **transfer: Any) -> None:
        """Upload a large file in parts (boto3's managed transfer)."""
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(**transfer)
        extra = {"ChecksumAlgorithm": "SHA256"}  # each part checked by the storage
        self.call(
            doing,
            key,
            lambda c: c.upload_file(path, self.bucket, key, ExtraArgs=extra, Config=config),
        )

    def delete(self, key: str, doing: str) -> None:
        self.call(doing, key, lambda c: c.delete_object(Bucket=self.bucket, Key=key))

    def list(self, prefix: str, doing: str, delimiter: str = "") -> tuple[list[str], list[str]]:
        """Keys and (with a delimiter) common prefixes under ``prefix``, every page."""
        keys: list[str] = []
        prefixes: list[str] = []
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            args["Delimiter"] = delimiter
        while True:
            page = self.call(doing, prefix, lambda c: c.list_objects_v2(**args))
            keys += [o["Key"] for o in page.get("Contents", [])]
            prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
            if not page.get("IsTruncated"):
                return keys, prefixes
            args["ContinuationToken"] = page["NextContinuationToken"]
