"""Smoke tests through the real Azurite, with the official azure-storage-blob and
azure-storage-queue clients: the storage behaviour the local functions host relies on
(listing, ETags, conditional create for receipts, queue visibility and dequeue count)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient, QueueServiceClient

pytestmark = pytest.mark.azurite


def _container(connection: str, name: str) -> ContainerClient:
    return BlobServiceClient.from_connection_string(connection).get_container_client(name)


def test_upload_list_download(azurite: str, azurite_container: str) -> None:
    container = _container(azurite, azurite_container)
    etags = {}
    for name in ("input/b.json", "input/a.json", "other/c.json"):
        etags[name] = container.get_blob_client(name).upload_blob(name.encode())["etag"]
    listed = list(container.list_blobs(name_starts_with="input/"))
    assert [blob.name for blob in listed] == ["input/a.json", "input/b.json"]
    # Listing gives the ETag bare, the blob's own responses give it quoted ("0x…"),
    # as real Azure does: compare them with the quotes stripped.
    for blob in listed:
        assert etags[blob.name] == f'"{blob.etag}"'
        assert blob.size == len(blob.name)
    assert container.download_blob("input/b.json").readall() == b"input/b.json"
    with pytest.raises(ResourceNotFoundError):
        container.download_blob("input/none.json").readall()


def test_conditional_create_succeeds_once(azurite: str, azurite_container: str) -> None:
    container = _container(azurite, azurite_container)
    receipt = container.get_blob_client("receipts/0x1/input/a.json")
    first = receipt.upload_blob(b"one", overwrite=True, if_none_match="*")
    with pytest.raises(ResourceExistsError) as exists:
        receipt.upload_blob(b"two", overwrite=True, if_none_match="*")
    assert exists.value.status_code == 409 and exists.value.error_code == "BlobAlreadyExists"
    # overwrite=False sends the same If-None-Match: *.
    with pytest.raises(ResourceExistsError):
        receipt.upload_blob(b"three", overwrite=False)
    assert receipt.download_blob().readall() == b"one"

    # A replace changes the ETag; a writer holding the old one is refused (412).
    unchanged = {"etag": first["etag"], "match_condition": MatchConditions.IfNotModified}
    second = receipt.upload_blob(b"four", overwrite=True, **unchanged)
    assert second["etag"] != first["etag"]
    with pytest.raises(ResourceModifiedError) as stale:
        receipt.upload_blob(b"five", overwrite=True, **unchanged)
    assert stale.value.status_code == 412
    assert receipt.get_blob_properties().etag == second["etag"]


def test_concurrent_claims_have_one_winner(azurite: str, azurite_container: str) -> None:
    """Several hosts racing to claim a blob by conditional create: exactly one wins."""
    container = _container(azurite, azurite_container)

    def claim(name: str, host: int) -> bool:
        try:
            container.upload_blob(name, f"host-{host}".encode(), if_none_match="*")
            return True
        except ResourceExistsError:
            return False

    with ThreadPoolExecutor(max_workers=8) as pool:
        for round_ in range(5):
            name = f"claims/{round_}"
            won = list(pool.map(lambda host, name=name: claim(name, host), range(8)))
            assert won.count(True) == 1
            owner = won.index(True)
            assert container.download_blob(name).readall() == f"host-{owner}".encode()


def test_queue_visibility_timeout_and_dequeue_count(azurite: str, azurite_queue: str) -> None:
    queue = QueueClient.from_connection_string(azurite, azurite_queue)
    sent = queue.send_message('{"data": [1, 2]}')

    first = next(queue.receive_messages(visibility_timeout=1))
    assert (first.id, first.content, first.dequeue_count) == (sent.id, '{"data": [1, 2]}', 1)
    # Invisible while its timeout runs: nobody else gets it.
    assert list(queue.receive_messages(visibility_timeout=1)) == []
    time.sleep(1.5)
    # Not deleted in time: it comes back, its dequeue count one higher.
    again = next(queue.receive_messages(visibility_timeout=30))
    assert (again.id, again.dequeue_count) == (sent.id, 2)
    assert again.pop_receipt != first.pop_receipt
    # A failed try can hand it back at once (visibility 0); each receive counts.
    for expected in (3, 4, 5):
        queue.update_message(again, visibility_timeout=0)
        again = next(queue.receive_messages(visibility_timeout=30))
        assert (again.id, again.dequeue_count) == (sent.id, expected)
    queue.delete_message(again)
    assert queue.peek_messages() == []
    # The stale receipt of the first receive no longer names the message.
    with pytest.raises(ResourceNotFoundError):
        queue.delete_message(first)


def test_development_storage_shorthand_reaches_it(azurite: str) -> None:
    """`UseDevelopmentStorage=true` means Azurite's default ports, which testenv uses."""
    if "127.0.0.1:10000/" not in azurite:
        pytest.skip("azurite was moved off its default ports (TESTENV_AZURITE_*_PORT)")
    service = QueueServiceClient.from_connection_string("UseDevelopmentStorage=true")
    assert service.url.startswith("http://127.0.0.1:10001/devstoreaccount1")
    name = f"mf-shorthand-{int(time.time() * 1000)}"
    service.create_queue(name)
    try:
        listed = [queue.name for queue in service.list_queues(name_starts_with=name)]
        assert listed == [name]
    finally:
        service.delete_queue(name)
