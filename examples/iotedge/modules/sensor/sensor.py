"""A simulated sensor module: diabetes feature rows on its output ``rows``.

It runs as an IoT Edge module on the real ``azure-iot-device`` SDK
(``IoTHubModuleClient.create_from_edge_environment()``: the edge runtime
gives it ``EdgeHubConnectionString`` and ``EdgeModuleCACertificateFile``).
It sends ``COUNT`` messages (0: without end), one every ``INTERVAL``
seconds, each ``{"data": [[10 features]]}`` with the correlation id
``PREFIX-<n>`` (PREFIX default: ``row-<start time>``, since the edge hub
drops a correlation id it has already sent upstream); every ``BAD_EVERY``-th
row (0: none) is malformed on purpose, to see ``run()`` fail and the error
route carry it; then keeps running idle (a module that exits would be
started again by its restart policy, and send its rows again). SIGTERM
stops it.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import threading
import time

from azure.iot.device import IoTHubModuleClient, Message

ROWS = [
    [0.0381, 0.0507, 0.0617, 0.0219, -0.0442, -0.0348, -0.0434, -0.0026, 0.0199, -0.0176],
    [-0.0019, -0.0446, -0.0515, -0.0263, -0.0084, -0.0192, 0.0744, -0.0395, -0.0683, -0.0922],
    [0.0853, 0.0507, 0.0445, -0.0057, -0.0456, -0.0342, -0.0324, -0.0026, 0.0029, -0.0259],
    [-0.0891, -0.0446, -0.0116, -0.0367, 0.0122, 0.025, -0.036, 0.0343, 0.0227, -0.0094],
    [0.0054, -0.0446, -0.0364, 0.0219, 0.0039, 0.0156, 0.0081, -0.0026, -0.032, -0.0466],
    [-0.0927, -0.0446, -0.0407, -0.0194, -0.069, -0.0793, 0.0413, -0.0764, -0.0412, -0.0963],
    [-0.0455, 0.0507, -0.0472, -0.016, -0.0401, -0.0248, 0.0008, -0.0395, -0.0629, -0.0384],
    [0.0635, 0.0507, -0.0019, 0.0666, 0.0906, 0.1089, 0.0229, 0.0177, -0.0358, 0.0031],
]


def main() -> None:
    count = int(os.environ.get("COUNT", "20"))
    interval = float(os.environ.get("INTERVAL", "0.1"))
    prefix = os.environ.get("PREFIX") or f"row-{int(time.time())}"
    bad_every = int(os.environ.get("BAD_EVERY", "0"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    client = IoTHubModuleClient.create_from_edge_environment()
    client.connect()
    numbers = range(count) if count else itertools.count()
    sent = 0
    for n in numbers:
        if stop.is_set():
            break
        bad = bad_every and n % bad_every == bad_every - 1
        message = Message(
            json.dumps({"data": "not a row" if bad else [ROWS[n % len(ROWS)]]}),
            content_encoding="utf-8",
            content_type="application/json",
        )
        message.correlation_id = f"{prefix}-{n}"
        client.send_message_to_output(message, "rows")
        sent += 1
        if interval:
            stop.wait(interval)
    print(json.dumps({"event": "sent", "count": sent}), flush=True)
    stop.wait()
    client.shutdown()


if __name__ == "__main__":
    main()
