"""The benchmark's sensor module: diabetes feature rows on azure-iot-device, one process.

Connects with ``IoTHubModuleClient.create_from_edge_environment()``
(``EdgeHubConnectionString``, ``EdgeModuleCACertificateFile``, as the edge
agent sets them) and sends, on output ``rows``, first ``$WARMUP`` messages
with correlation ids ``w-<i>``, then — once the file ``$GO`` exists (the
benchmark makes it when the warm-up is upstream) — ``$COUNT`` messages with
correlation ids ``b-<i>``. Body: ``{"data": [row]}``, the rows of ``$ROWS``
(a JSON list of 10-float lists) in turn. Each message carries the custom
property ``sent_ns``: ``time.time_ns()`` taken just before
``send_message_to_output``, which returns once the hub acknowledged it
(PUBACK; the SDK's public send is synchronous). ``$INTERVAL`` seconds
between sends paces them (0: as fast as the acknowledgements come back).

Writes ``$OUT`` (JSON): the wall-clock start and end of the measured sends
and each measured send call's duration in microseconds (send → PUBACK).
"""

from __future__ import annotations

import json
import os
import time

from azure.iot.device import IoTHubModuleClient, Message


def send(client: IoTHubModuleClient, prefix: str, i: int, row: list[float]) -> int:
    """One message; the send call's duration in microseconds."""
    message = Message(
        json.dumps({"data": [row]}), content_encoding="utf-8", content_type="application/json"
    )
    message.correlation_id = f"{prefix}-{i}"
    started = time.perf_counter_ns()
    message.custom_properties = {"sent_ns": str(time.time_ns())}
    client.send_message_to_output(message, "rows")
    return (time.perf_counter_ns() - started) // 1000


def main() -> None:
    with open(os.environ["ROWS"]) as handle:
        rows = json.load(handle)
    warmup = int(os.environ.get("WARMUP", "0"))
    count = int(os.environ["COUNT"])
    interval = float(os.environ.get("INTERVAL", "0"))
    go = os.environ["GO"]
    client = IoTHubModuleClient.create_from_edge_environment()
    client.connect()
    for i in range(warmup):
        send(client, "w", i, rows[i % len(rows)])
        if interval:
            time.sleep(interval)
    print(f"warm-up sent {warmup}", flush=True)
    while not os.path.exists(go):
        time.sleep(0.01)
    durations = []
    first = time.time()
    for i in range(count):
        durations.append(send(client, "b", i, rows[i % len(rows)]))
        if interval:
            time.sleep(interval)
    last = time.time()
    print(f"sent {count}", flush=True)
    with open(os.environ["OUT"], "w") as handle:
        json.dump({"first": first, "last": last, "send_us": durations}, handle)
    client.shutdown()


if __name__ == "__main__":
    main()
