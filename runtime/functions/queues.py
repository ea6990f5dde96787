"""Azure Storage queues (azure-storage-queue): clients, and message text as the host encodes it.

With ``messageEncoding: base64`` (host.json ``extensions.queues``; the
default) the real host writes message bodies base64-encoded and expects
them so. Reading, this host also accepts plain text: a message that is
not strict base64 of UTF-8 text is taken as it is (so ``"hello"`` sent by
a tool that does not encode arrives as ``hello``; binary bodies must be
base64). With ``none`` bodies are plain text both ways.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from typing import Any

from modelform.runtime.functions.settings import AzureStorage
from modelform.runtime.functions.stores import StoreError

logging.getLogger("azure").setLevel(logging.WARNING)


def encode_body(body: bytes, use_base64: bool) -> str:
    if use_base64:
        return base64.b64encode(body).decode("ascii")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise StoreError(
            "a binary queue message needs messageEncoding base64 in host.json"
        ) from None


def decode_body(text: str, use_base64: bool) -> bytes:
    raw = text.encode("utf-8")
    if not use_base64 or not text or len(text) % 4:
        return raw
    try:
        decoded = base64.b64decode(text, validate=True)
        decoded.decode("utf-8")
    except (binascii.Error, ValueError):
        return raw
    return decoded


class QueueService:
    """Queue clients of one storage account, made (and the queues created) on first use."""

    def __init__(self, storage: AzureStorage) -> None:
        try:
            from azure.core.exceptions import AzureError, ResourceExistsError
            from azure.storage.queue import QueueServiceClient
        except ImportError:
            raise StoreError(
                "a queue needs azure-storage-queue: pip install azure-storage-queue"
            ) from None
        self.storage = storage
        self._service = QueueServiceClient.from_connection_string(
            storage.connection_string, retry_total=3, connection_timeout=5, read_timeout=30
        )
        self._exists = ResourceExistsError
        self.error_types: tuple[type[Exception], ...] = (AzureError,)
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def client(self, name: str, *, create: bool = True) -> Any:
        with self._lock:
            client = self._clients.get(name)
        if client is not None:
            return client
        client = self._service.get_queue_client(name)
        if create:
            try:
                client.create_queue()
            except self._exists:
                pass
            except self.error_types as error:
                raise StoreError(f"Azure Queue create {name}: {_line(error)}") from None
        with self._lock:
            self._clients[name] = client
        return client

    def send(self, name: str, text: str) -> None:
        try:
            self.client(name).send_message(text)
        except self.error_types as error:
            raise StoreError(f"Azure Queue send to {name}: {_line(error)}") from None


def _line(error: Exception) -> str:
    text = str(error)
    return text.splitlines()[0] if text else type(error).__name__
