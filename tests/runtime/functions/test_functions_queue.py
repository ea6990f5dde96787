"""The storage-queue trigger on real Azurite: request in, response out; poison after 5."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
from functions_harness import HostFactory, write_app

pytestmark = [pytest.mark.slow, pytest.mark.azurite, pytest.mark.timeout(180)]

QUEUE_APP = """
import json
import time

import azure.functions as func

app = func.FunctionApp()


@app.queue_trigger(arg_name="msg", queue_name="%IN_QUEUE%", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="reply", queue_name="%IN_QUEUE%-out", connection="AzureWebJobsStorage")
def answer(msg: func.QueueMessage, reply: func.Out[str]) -> None:
    doc = msg.get_json()
    time.sleep(doc.get("sleep", 0))
    if doc.get("fail"):
        raise RuntimeError(f"cannot answer {msg.id} (dequeue {msg.dequeue_count})")
    reply.set(json.dumps({"sum": sum(doc["data"]), "id": msg.id, "dequeue": msg.dequeue_count}))
"""


def _queue(connection: str, name: str) -> Any:
    from azure.storage.queue import QueueClient

    client = QueueClient.from_connection_string(connection, name)
    try:
        client.create_queue()
    except Exception:  # noqa: BLE001 - it exists
        pass
    return client


def _drain(client: Any, count: int, timeout: float) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        for message in client.receive_messages(messages_per_page=32):
            got.append(base64.b64decode(message.content))
            client.delete_message(message)
        time.sleep(0.1)
    return got


def test_requests_in_responses_out_and_poison_after_5(
    azurite: str, azurite_queue: str, tmp_path: Path, hosts: HostFactory
) -> None:
    app_dir = write_app(tmp_path / "app", QUEUE_APP)
    env = {"AzureWebJobsStorage": azurite, "IN_QUEUE": azurite_queue}
    host = hosts.start(app_dir, env, "--poll-seconds", "0.2")
    requests = _queue(azurite, azurite_queue)
    replies = _queue(azurite, f"{azurite_queue}-out")
    poison = _queue(azurite, f"{azurite_queue}-poison")
    try:
        encoded = base64.b64encode(json.dumps({"data": [1, 2, 3]}).encode()).decode()
        first = requests.send_message(encoded)  # as the real host's clients send: base64
        second = requests.send_message(json.dumps({"data": [10]}))  # plain text is accepted
        bad = requests.send_message(json.dumps({"fail": True}))
        answers = sorted(
            (json.loads(body) for body in _drain(replies, 2, 30)), key=lambda doc: doc["sum"]
        )
        assert answers == [
            {"sum": 6, "id": first.id, "dequeue": 1},
            {"sum": 10, "id": second.id, "dequeue": 1},
        ]
        event = host.wait_event("poisoned", timeout=60)[0]
        assert (event["message_id"], event["dequeue_count"]) == (bad.id, 5)
        assert event["queue"] == f"{azurite_queue}-poison"
        assert event["error"] == f"RuntimeError: cannot answer {bad.id} (dequeue 5)"
        moved = list(poison.receive_messages())
        assert [m.content for m in moved] == [json.dumps({"fail": True})]  # body unchanged
        failures = [e for e in host.events("invocation") if e["result"] == "failed"]
        assert [e["dequeue_count"] for e in failures] == [1, 2, 3, 4, 5]
        assert host.status()["counts"]["answer"] == {
            "invocations": 7,
            "failures": 5,
            "poisoned": 1,
        }
        assert list(requests.peek_messages()) == []
        assert host.status()["triggers"]["answer"]["poison_queue"] == f"{azurite_queue}-poison"
    finally:
        replies.delete_queue()
        poison.delete_queue()


def test_a_message_dequeued_too_often_goes_to_poison_without_a_run(
    azurite: str, azurite_queue: str, tmp_path: Path, hosts: HostFactory
) -> None:
    """A message whose count is past maxDequeueCount (hosts died on it) is not run again."""
    app_dir = write_app(
        tmp_path / "app",
        QUEUE_APP,
        host_json={"version": "2.0", "extensions": {"queues": {"maxDequeueCount": 2}}},
    )
    requests = _queue(azurite, azurite_queue)
    poison = _queue(azurite, f"{azurite_queue}-poison")
    replies = _queue(azurite, f"{azurite_queue}-out")
    try:
        sent = requests.send_message(json.dumps({"data": [1]}))
        for _ in range(2):  # two receivers that "died" before finishing
            taken = list(requests.receive_messages(visibility_timeout=1))
            assert [m.id for m in taken] == [sent.id]
            time.sleep(1.2)
        host = hosts.start(
            app_dir,
            {"AzureWebJobsStorage": azurite, "IN_QUEUE": azurite_queue},
            "--poll-seconds",
            "0.2",
        )
        event = host.wait_event("poisoned", timeout=30)[0]
        assert (event["message_id"], event["dequeue_count"], event["ran"]) == (sent.id, 3, False)
        assert host.events("invocation") == []
        assert [m.content for m in poison.receive_messages()] == [json.dumps({"data": [1]})]
    finally:
        poison.delete_queue()
        replies.delete_queue()


def test_a_run_longer_than_the_lease_keeps_its_message_hidden(
    azurite: str, azurite_queue: str, tmp_path: Path, hosts: HostFactory
) -> None:
    app_dir = write_app(tmp_path / "app", QUEUE_APP)
    env = {"AzureWebJobsStorage": azurite, "IN_QUEUE": azurite_queue}
    host = hosts.start(app_dir, env, "--poll-seconds", "0.2", "--lease-seconds", "2")
    requests = _queue(azurite, azurite_queue)
    replies = _queue(azurite, f"{azurite_queue}-out")
    try:
        requests.send_message(json.dumps({"data": [4], "sleep": 4}))
        answers = _drain(replies, 1, 30)
        assert [json.loads(body)["sum"] for body in answers] == [4]
        time.sleep(2.5)  # had the message come back, a second run would have started
        assert host.status()["counts"]["answer"]["invocations"] == 1
        assert _drain(replies, 1, 0.5) == []
    finally:
        replies.delete_queue()
        _queue(azurite, f"{azurite_queue}-poison").delete_queue()
