"""One small interface over the two real storages the blob-trigger tests run against.

``S3Kit`` (MinIO, boto3) and ``AzureKit`` (Azurite, azure-storage-blob) upload and read
blobs in the test's container, read the host's receipts and poison records in
``azure-webjobs-hosts``, and remove what a test left there (``cleanup``).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

RECEIPTS = "azure-webjobs-hosts"


class S3Kit:
    kind = "s3"

    def __init__(self, endpoint: Any, bucket: str) -> None:
        self.endpoint = endpoint
        self.container = bucket
        self.client = endpoint.client()
        self.env = {
            "AzureWebJobsStorage": f"S3Endpoint={endpoint.url};Region={endpoint.region}",
            "AWS_ACCESS_KEY_ID": endpoint.access_key,
            "AWS_SECRET_ACCESS_KEY": endpoint.secret_key,
            "IN_CONTAINER": bucket,
        }

    def put(self, name: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.container, Key=name, Body=data)

    def listing(self, prefix: str, container: str | None = None) -> dict[str, datetime]:
        found: dict[str, datetime] = {}
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=container or self.container, Prefix=prefix
        )
        for page in pages:
            for item in page.get("Contents", []):
                found[item["Key"]] = item["LastModified"]
        return found

    def get(self, name: str, container: str | None = None) -> bytes:
        answer = self.client.get_object(Bucket=container or self.container, Key=name)
        return bytes(answer["Body"].read())

    def delete(self, name: str, container: str | None = None) -> None:
        self.client.delete_object(Bucket=container or self.container, Key=name)

    def poison_messages(self) -> list[dict[str, Any]]:
        return []  # S3 has no queues: the poison record is all there is

    def receipts(self, host_id: str) -> dict[str, dict[str, Any]]:
        return {
            key: json.loads(self.get(key, RECEIPTS))
            for key in self.listing(f"blobreceipts/{host_id}/", RECEIPTS)
        }

    def poison_records(self, function: str) -> dict[str, dict[str, Any]]:
        return {
            key: json.loads(self.get(key, RECEIPTS))
            for key in self.listing(f"blobpoison/{function}/", RECEIPTS)
            if f"/{self.container}/" in key
        }

    def cleanup(self, host_id: str, function: str) -> None:
        for key in list(self.receipts(host_id)) + list(self.poison_records(function)):
            self.delete(key, RECEIPTS)


class AzureKit(S3Kit):
    kind = "azure"

    def __init__(self, connection_string: str, container: str) -> None:  # noqa: D107
        from azure.storage.blob import BlobServiceClient

        self.connection_string = connection_string
        self.container = container
        self.service = BlobServiceClient.from_connection_string(connection_string)
        self.env = {"AzureWebJobsStorage": connection_string, "IN_CONTAINER": container}

    def put(self, name: str, data: bytes) -> None:
        self.service.get_blob_client(self.container, name).upload_blob(data, overwrite=True)

    def listing(self, prefix: str, container: str | None = None) -> dict[str, datetime]:
        client = self.service.get_container_client(container or self.container)
        return {
            item.name: item.last_modified for item in client.list_blobs(name_starts_with=prefix)
        }

    def get(self, name: str, container: str | None = None) -> bytes:
        client = self.service.get_blob_client(container or self.container, name)
        return bytes(client.download_blob().readall())

    def delete(self, name: str, container: str | None = None) -> None:
        self.service.get_blob_client(container or self.container, name).delete_blob()

    def poison_messages(self) -> list[dict[str, Any]]:
        """This container's messages on webjobs-blobtrigger-poison (base64 JSON, as the host
        writes them), taken off the queue (other tests' messages reappear a second later)."""
        import base64

        from azure.storage.queue import QueueClient

        queue = QueueClient.from_connection_string(
            self.connection_string, "webjobs-blobtrigger-poison"
        )
        found = []
        for message in queue.receive_messages(messages_per_page=32, visibility_timeout=1):
            document = json.loads(base64.b64decode(message.content))
            if document.get("ContainerName") == self.container:
                found.append(document)
                queue.delete_message(message)
        return found
