"""One S3 client for everything modelform keeps in S3-compatible storage.

The state backend (:mod:`modelform.state.s3`) and the S3 model store use
this: how a client is made from the options of the project file, and how
the storage's failures become one-line :class:`StateError` messages.

Credentials are never options: boto3's usual chain finds them
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``,
``AWS_PROFILE`` and ``~/.aws/credentials``/``config``, instance roles).
Nothing here prints or stores them. boto3 is imported only when a client
is made (``pip install 'modelform[s3]'``), so projects without S3 never
pay for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from modelform.state.errors import StateError

#: Seconds to wait for a connection and for a reply; a storage that does
#: not answer fails the command in seconds, not minutes.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0


@dataclass(frozen=True)
class S3Location:
    """Where in S3-compatible storage, and how to reach it (no credentials)."""

    bucket: str
    endpoint: str | None = None
    region: str | None = None
    profile: str | None = None
    #: Path-style addressing (``endpoint/bucket/key``), which MinIO and most
    #: self-hosted servers need; virtual-host style on AWS itself.
    path_style: bool | None = None

    def url(self, key: str) -> str:
        """``s3://bucket/key`` (with the endpoint when it is not AWS), for messages."""
        where = f"s3://{self.bucket}/{key}"
        return f"{where} at {self.endpoint}" if self.endpoint else where

    def client(self) -> Any:
        """A boto3 S3 client for this location; StateError when boto3 is missing."""
        try:
            import boto3
            from botocore.config import Config
        except ImportError as e:
            raise StateError(
                "S3-compatible storage needs boto3: pip install 'modelform[s3]'"
            ) from e
        path_style = self.path_style if self.path_style is not None else bool(self.endpoint)
        config = Config(
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": "path" if path_style else "auto"},
            # MinIO and older S3-compatible servers reject the newer default checksums.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        region = self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        try:
            session = boto3.session.Session(profile_name=self.profile)
        except Exception as e:  # botocore's ProfileNotFound and friends
            raise StateError(f"S3 profile {self.profile!r}: {e}") from e
        return session.client(
            "s3", endpoint_url=self.endpoint, region_name=region or "us-east-1", config=config
        )


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of a botocore ClientError, else None."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        meta = response.get("ResponseMetadata") or {}
        status = meta.get("HTTPStatusCode")
        if isinstance(status, int):
            return status
    return None


def code_of(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str((response.get("Error") or {}).get("Code") or "")
    return ""


def storage_error(exc: BaseException, doing: str, where: S3Location, key: str) -> StateError:
    """One line for a failed request: what was being done, where, and why."""
    name = type(exc).__name__
    url = where.url(key)
    code = code_of(exc)
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        why = (
            "no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or AWS_PROFILE, ~/.aws/credentials)"
        )
    elif name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError"):
        why = f"cannot reach {where.endpoint or 'S3'} (is the storage running and reachable?)"
    elif name in ("ReadTimeoutError",):
        why = f"{where.endpoint or 'S3'} did not answer in {READ_TIMEOUT:.0f}s"
    elif code == "NoSuchBucket":
        why = f"bucket {where.bucket!r} does not exist (create it first)"
    elif code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
        why = f"access denied ({code}): check the credentials and the bucket's policy"
    elif code:
        message = str((getattr(exc, "response", {}).get("Error") or {}).get("Message") or "")
        why = f"{code}: {message}".rstrip(": ")
    else:
        why = f"{name}: {exc}".splitlines()[0]
    return StateError(f"{url}: cannot {doing}: {why}", url)
