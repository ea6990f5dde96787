"""A sensor module sending given message bodies, on the real azure-iot-device SDK.

``$BODIES`` names a JSON file holding a list of strings: each is sent as one
message (UTF-8, content type JSON) on output ``$OUTPUT`` (default ``rows``)
with correlation id ``$PREFIX-<i>`` and custom properties ``index`` (i),
``sent_ns`` (time.time_ns() when the send began, for latency) and ``odd``
(characters that need encoding). ``send_message_to_output`` returns once the
hub acknowledged; ``$INTERVAL`` (seconds) paces the sends. Prints ``sent <n>`` and
exits.
"""

from __future__ import annotations

import json
import os
import time

from azure.iot.device import IoTHubModuleClient, Message


def main() -> None:
    with open(os.environ["BODIES"]) as handle:
        bodies = json.load(handle)
    prefix = os.environ.get("PREFIX", "m")
    output = os.environ.get("OUTPUT", "rows")
    interval = float(os.environ.get("INTERVAL", "0"))
    client = IoTHubModuleClient.create_from_edge_environment()
    client.connect()
    for i, body in enumerate(bodies):
        message = Message(body, content_encoding="utf-8", content_type="application/json")
        message.correlation_id = f"{prefix}-{i}"
        message.custom_properties = {
            "index": str(i),
            "sent_ns": str(time.time_ns()),
            "odd": "a&b=c%d e",
        }
        client.send_message_to_output(message, output)
        if interval:
            time.sleep(interval)
    print(f"sent {len(bodies)}", flush=True)
    client.shutdown()


if __name__ == "__main__":
    main()
