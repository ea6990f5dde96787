"""A sensor module for the edge hub tests, on the real azure-iot-device SDK.

Sends ``$COUNT`` messages (JSON ``{"row": [...]}``) on output ``$OUTPUT``
with correlation ids ``$PREFIX-<i>`` (i from ``$START``), a custom
property ``sent_ns`` (time.time_ns() when the send began, for latency)
and a few properties with characters that need encoding; every
``$FAIL_EVERY``-th asks the model to fail. ``send_message_to_output``
returns once the hub acknowledged. Prints ``sent <n>`` and exits.
"""

from __future__ import annotations

import json
import os
import time

from azure.iot.device import IoTHubModuleClient, Message


def main() -> None:
    count = int(os.environ.get("COUNT", "10"))
    start = int(os.environ.get("START", "0"))
    prefix = os.environ.get("PREFIX", "m")
    output = os.environ.get("OUTPUT", "rows")
    interval = float(os.environ.get("INTERVAL", "0"))
    fail_every = int(os.environ.get("FAIL_EVERY", "0"))
    client = IoTHubModuleClient.create_from_edge_environment()
    client.connect()
    for i in range(start, start + count):
        doc: dict = {"row": [i, 0.5, 0.25]}
        if fail_every and i % fail_every == 0:
            doc["fail"] = True
        message = Message(
            json.dumps(doc), content_encoding="utf-8", content_type="application/json"
        )
        message.correlation_id = f"{prefix}-{i}"
        message.custom_properties = {"sent_ns": str(time.time_ns()), "odd": "a&b=c%d e"}
        client.send_message_to_output(message, output)
        if interval:
            time.sleep(interval)
    print(f"sent {count}", flush=True)
    client.shutdown()


if __name__ == "__main__":
    main()
