"""The Azure Blob API side of ``stores`` (azure-storage-blob; Azurite or a real account)."""

from __future__ import annotations

import logging
from typing import Any

from modelform.runtime.functions.settings import AzureStorage
from modelform.runtime.functions.stores import BlobData, BlobEntry, StoreError, unquote

# The SDK logs every request and response at INFO.
logging.getLogger("azure").setLevel(logging.WARNING)


class AzureBlobStore:
    kind = "azure"

    def __init__(self, storage: AzureStorage) -> None:
        try:
            from azure.core import MatchConditions
            from azure.core.exceptions import (
                AzureError,
                ResourceExistsError,
                ResourceModifiedError,
                ResourceNotFoundError,
            )
            from azure.storage.blob import BlobServiceClient, ContentSettings
        except ImportError:
            raise StoreError(
                "an Azure Storage connection needs azure-storage-blob: "
                "pip install azure-storage-blob"
            ) from None
        self.storage = storage
        self._service = BlobServiceClient.from_connection_string(
            storage.connection_string, retry_total=3, connection_timeout=5, read_timeout=30
        )
        self._unchanged = MatchConditions.IfNotModified
        self._content_settings = ContentSettings
        self._exists = ResourceExistsError
        self._modified = ResourceModifiedError
        self._missing = ResourceNotFoundError
        self._error = AzureError
        self._containers: dict[str, Any] = {}

    def _container(self, name: str) -> Any:
        client = self._containers.get(name)
        if client is None:
            client = self._service.get_container_client(name)
            self._containers[name] = client
        return client

    def _blob(self, container: str, name: str) -> Any:
        return self._container(container).get_blob_client(name)

    def _fail(self, what: str, error: Exception) -> StoreError:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        return StoreError(f"Azure Blob {what}: {message}")

    def uri(self, container: str, name: str) -> str:
        return f"{self.storage.blob_endpoint}/{container}/{name}"

    def ensure_container(self, container: str) -> None:
        try:
            self._container(container).create_container()
        except self._exists:
            pass
        except self._error as error:
            raise self._fail(f"create container {container}", error) from None

    def listing(self, container: str, prefix: str) -> list[BlobEntry]:
        try:
            return [
                BlobEntry(item.name, unquote(item.etag), int(item.size or 0), item.last_modified)
                for item in self._container(container).list_blobs(name_starts_with=prefix or None)
            ]
        except self._missing:
            return []
        except self._error as error:
            raise self._fail(f"list {container}/{prefix}", error) from None

    def read(self, container: str, name: str, etag: str | None = None) -> BlobData | None:
        kwargs: dict[str, Any] = {}
        if etag is not None:
            kwargs = {"etag": f'"{etag}"', "match_condition": self._unchanged}
        try:
            downloader = self._container(container).download_blob(name, **kwargs)
            data = downloader.readall()
        except (self._missing, self._modified):
            return None
        except self._error as error:
            raise self._fail(f"get {container}/{name}", error) from None
        properties = downloader.properties
        settings = properties.content_settings
        return BlobData(
            data=data,
            etag=unquote(properties.etag),
            content_type=settings.content_type if settings else None,
            last_modified=properties.last_modified,
            metadata=dict(properties.metadata or {}),
        )

    def write(self, container: str, name: str, data: bytes, content_type: str | None) -> str:
        kwargs: dict[str, Any] = {"overwrite": True}
        if content_type:
            kwargs["content_settings"] = self._content_settings(content_type=content_type)
        try:
            answer = self._blob(container, name).upload_blob(data, **kwargs)
        except self._missing:
            self.ensure_container(container)  # the output container may not exist yet
            answer = self._blob(container, name).upload_blob(data, **kwargs)
        except self._error as error:
            raise self._fail(f"put {container}/{name}", error) from None
        return unquote(answer["etag"])

    def create(self, container: str, name: str, data: bytes) -> str | None:
        try:
            answer = self._blob(container, name).upload_blob(
                data, overwrite=False, content_settings=self._json()
            )
        except (self._exists, self._modified):
            return None
        except self._error as error:
            raise self._fail(f"conditional put {container}/{name}", error) from None
        return unquote(answer["etag"])

    def replace(self, container: str, name: str, data: bytes, etag: str) -> str | None:
        try:
            answer = self._blob(container, name).upload_blob(
                data,
                overwrite=True,
                etag=f'"{etag}"',
                match_condition=self._unchanged,
                content_settings=self._json(),
            )
        except (self._modified, self._missing, self._exists):
            return None
        except self._error as error:
            raise self._fail(f"conditional put {container}/{name}", error) from None
        return unquote(answer["etag"])

    def delete(self, container: str, name: str) -> None:
        try:
            self._container(container).delete_blob(name)
        except self._missing:
            pass
        except self._error as error:
            raise self._fail(f"delete {container}/{name}", error) from None

    def _json(self) -> Any:
        return self._content_settings(content_type="application/json")
