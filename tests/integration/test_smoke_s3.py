"""Smoke tests through the real MinIO server."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from tests.realparts import S3Endpoint

pytestmark = pytest.mark.s3


def _status(exc: ClientError) -> int:
    return int(exc.response["ResponseMetadata"]["HTTPStatusCode"])


def test_put_get_list(s3_endpoint: S3Endpoint, s3_bucket: str) -> None:
    s3 = s3_endpoint.client()
    for key in ("state/a.json", "state/b.json", "other/c.json"):
        s3.put_object(Bucket=s3_bucket, Key=key, Body=key.encode())
    body = s3.get_object(Bucket=s3_bucket, Key="state/b.json")["Body"].read()
    assert body == b"state/b.json"
    listed = s3.list_objects_v2(Bucket=s3_bucket, Prefix="state/")
    assert [item["Key"] for item in listed["Contents"]] == ["state/a.json", "state/b.json"]
    with pytest.raises(ClientError) as missing:
        s3.get_object(Bucket=s3_bucket, Key="state/none.json")
    assert _status(missing.value) == 404


def test_conditional_writes_are_honoured(s3_endpoint: S3Endpoint, s3_bucket: str) -> None:
    s3 = s3_endpoint.client()
    first = s3.put_object(Bucket=s3_bucket, Key="lock", Body=b"one", IfNoneMatch="*")
    assert first["ResponseMetadata"]["HTTPStatusCode"] == 200

    # If-None-Match: * refuses to overwrite an existing object.
    with pytest.raises(ClientError) as exists:
        s3.put_object(Bucket=s3_bucket, Key="lock", Body=b"two", IfNoneMatch="*")
    assert _status(exists.value) == 412
    assert s3.get_object(Bucket=s3_bucket, Key="lock")["Body"].read() == b"one"

    # If-Match: only the writer holding the current ETag may replace it.
    second = s3.put_object(Bucket=s3_bucket, Key="lock", Body=b"three", IfMatch=first["ETag"])
    with pytest.raises(ClientError) as stale:
        s3.put_object(Bucket=s3_bucket, Key="lock", Body=b"four", IfMatch=first["ETag"])
    assert _status(stale.value) == 412
    current = s3.get_object(Bucket=s3_bucket, Key="lock")
    assert current["Body"].read() == b"three"
    assert current["ETag"] == second["ETag"]
