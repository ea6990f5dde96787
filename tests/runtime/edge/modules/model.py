"""A model module for the edge hub tests, on the real azure-iot-device SDK.

Connects with ``create_from_edge_environment()`` (``EdgeHubConnectionString``
and ``EdgeModuleCACertificateFile``, as the edge agent sets them). Each
message on input ``$INPUT`` (JSON ``{"row": [numbers]}``) is "predicted"
(the sum) and sent to output ``$OUTPUT`` with the input's correlation id
and custom properties, plus ``model_ns`` (when the handler began);
``{"fail": true}`` goes to ``$ERROR_OUTPUT`` instead. Every call appends
``<correlation id> <pid>`` to ``$RUNLOG``; the twin read at the start and
every desired-properties patch go to ``$TWINLOG`` as JSON lines (one
``write`` on an ``O_APPEND`` file each); the pid is reported as a reported
property. ``$SLOW_MS`` makes each call take that much longer (a backlog
builds up in the SDK). Runs until SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

from azure.iot.device import IoTHubModuleClient, Message

INPUT = os.environ.get("INPUT", "rows")
OUTPUT = os.environ.get("OUTPUT", "predictions")
ERROR_OUTPUT = os.environ.get("ERROR_OUTPUT", "errors")
SLOW_S = float(os.environ.get("SLOW_MS", "0")) / 1000


def append(path: str | None, line: str) -> None:
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def main() -> None:
    client = IoTHubModuleClient.create_from_edge_environment()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def on_message(message: Message) -> None:
        if message.input_name != INPUT:
            return
        received_ns = time.time_ns()
        append(os.environ.get("RUNLOG"), f"{message.correlation_id} {os.getpid()}")
        time.sleep(SLOW_S)
        doc = json.loads(message.data)
        if doc.get("fail"):
            body, output = {"error": "asked to fail"}, ERROR_OUTPUT
        else:
            body, output = {"prediction": sum(doc["row"])}, OUTPUT
        result = Message(
            json.dumps(body), content_encoding="utf-8", content_type="application/json"
        )
        result.correlation_id = message.correlation_id
        result.custom_properties = {**message.custom_properties, "model_ns": str(received_ns)}
        client.send_message_to_output(result, output)

    def on_patch(patch: dict) -> None:
        append(os.environ.get("TWINLOG"), json.dumps({"pid": os.getpid(), "patch": patch}))

    client.on_message_received = on_message
    client.on_twin_desired_properties_patch_received = on_patch
    client.connect()
    append(os.environ.get("TWINLOG"), json.dumps({"pid": os.getpid(), "twin": client.get_twin()}))
    client.patch_twin_reported_properties({"pid": os.getpid()})
    stop.wait()
    client.shutdown()


if __name__ == "__main__":
    main()
