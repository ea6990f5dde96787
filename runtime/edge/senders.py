"""Sending a module's results: in order, without waiting for each acknowledgement.

The SDK's public ``send_message_to_output`` returns only once the hub has
acknowledged the message (PUBACK), so one sender manages one message per
round trip, and a model module that must also receive and score each
message falls behind a sensor that only sends (measured here: a backlog of
hundreds of milliseconds within 1,000 messages).

:class:`PipelinedSender` (the default) hands each message to the client's
MQTT pipeline — the call ``send_message_to_output`` itself makes, minus the
wait — and counts the acknowledgement in the completion callback. Messages
go out in the order they were scored; at most ``MAX_IN_FLIGHT`` wait for
their acknowledgement (the scoring thread waits past that). The pipeline
is the SDK's internal ``_mqtt_pipeline`` (azure-iot-device 2.x, pinned
below 3): when a client has none, or ``MODELFORM_EDGE_SYNC_SEND=1`` asks
for it, :class:`ThreadedSender` uses the public call from ``THREADS``
threads instead (results may then leave slightly out of order).

Both count ``sent`` and ``send_failed`` on the module's counts; a failed
send is logged (``send_failed``) and not retried: modelform's edge hub
holds the input until a result for it arrives and delivers it again after a
reconnect.

**No Nagle.** paho-mqtt 1.6 (under the SDK) leaves Nagle's algorithm on,
so a result written while the previous one is not yet acknowledged at the
TCP level waits for that ACK, which the hub's kernel delays by up to 40 ms
(delayed ACK): measured here, bursts of results 40-60 ms late every second
or so. :func:`no_delay` sets ``TCP_NODELAY`` on every socket the client
opens (paho's ``on_socket_open`` on the SDK's transport; the hub sets it on
its side).
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from modelform.runtime import logs

ENV_SYNC_SEND = "MODELFORM_EDGE_SYNC_SEND"
MAX_IN_FLIGHT = 256
THREADS = 4
_STOP = object()


class Counted(Protocol):
    sent: int
    send_failed: int


class Sender(Protocol):
    def send(self, message: Any, output: str) -> None: ...

    def close(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) for the messages still being sent."""


def make_sender(
    client: Any, counts: Counted, log: logs.JsonLog, stopping: Callable[[], bool]
) -> Sender:
    """``stopping()`` true: a send waiting for a free slot gives up (the hub sends again)."""
    pipeline = getattr(client, "_mqtt_pipeline", None)
    usable = callable(getattr(pipeline, "send_output_message", None))
    if usable and os.environ.get(ENV_SYNC_SEND, "") in ("", "0"):
        return PipelinedSender(pipeline, counts, log, stopping)
    return ThreadedSender(client, counts, log)


def no_delay(client: Any) -> bool:
    """``TCP_NODELAY`` on each socket ``client`` opens from now on; False when it cannot tell.

    Walks the SDK's pipeline (azure-iot-device 2.x internals, like the
    pipelined sender) to the MQTT transport's paho client."""
    stage = getattr(getattr(client, "_mqtt_pipeline", None), "_pipeline", None)
    while stage is not None:
        paho = getattr(getattr(stage, "transport", None), "_mqtt_client", None)
        if paho is not None and hasattr(paho, "on_socket_open"):
            paho.on_socket_open = _set_no_delay
            return True
        stage = getattr(stage, "next", None)
    return False


def _set_no_delay(_client: Any, _userdata: Any, sock: Any) -> None:
    """paho's ``on_socket_open``: on its network thread, before the CONNECT is written."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):  # not a TCP socket (websockets, a proxy): leave it
        pass


class PipelinedSender:
    def __init__(
        self, pipeline: Any, counts: Counted, log: logs.JsonLog, stopping: Callable[[], bool]
    ) -> None:
        self._send = pipeline.send_output_message
        self._counts = counts
        self._log = log
        self._stopping = stopping
        self._slots = threading.Semaphore(MAX_IN_FLIGHT)
        self._in_flight = 0
        self._lock = threading.Lock()

    def send(self, message: Any, output: str) -> None:
        message.output_name = output
        while not self._slots.acquire(timeout=0.5):  # MAX_IN_FLIGHT unacknowledged
            if self._stopping():
                with self._lock:
                    self._counts.send_failed += 1
                _log_failure(self._log, message, TimeoutError("no acknowledgement from the hub"))
                return
        with self._lock:
            self._in_flight += 1
        try:
            self._send(message, callback=lambda error=None: self._done(message, error))
        except Exception as error:  # noqa: BLE001 - the pipeline was shut down
            self._done(message, error)

    def _done(self, message: Any, error: BaseException | None) -> None:
        """On the SDK's pipeline thread, once the hub acknowledged (or the send failed)."""
        with self._lock:
            self._in_flight -= 1
            if error is None:
                self._counts.sent += 1
            else:
                self._counts.send_failed += 1
        if error is not None:
            _log_failure(self._log, message, error)
        self._slots.release()

    def close(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.01)


class ThreadedSender:
    def __init__(self, client: Any, counts: Counted, log: logs.JsonLog) -> None:
        self._client = client
        self._counts = counts
        self._log = log
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()  # the counts are written from several threads
        self._threads = [
            threading.Thread(target=self._loop, name=f"send-{i}", daemon=True)
            for i in range(THREADS)
        ]
        for thread in self._threads:
            thread.start()

    def send(self, message: Any, output: str) -> None:
        self._queue.put((message, output))

    def _loop(self) -> None:
        get = self._queue.get
        send = self._client.send_message_to_output
        counts = self._counts
        while True:
            item = get()
            if item is _STOP:
                return
            message, output = item
            try:
                send(message, output)
            except Exception as error:  # noqa: BLE001 - the hub sends the input again
                with self._lock:
                    counts.send_failed += 1
                _log_failure(self._log, message, error)
            else:
                with self._lock:
                    counts.sent += 1

    def close(self, timeout_s: float) -> None:
        for _ in self._threads:
            self._queue.put(_STOP)
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def _log_failure(log: logs.JsonLog, message: Any, error: BaseException) -> None:
    log.error(
        "send_failed",
        correlation_id=message.correlation_id,
        output=message.output_name,
        error=f"{type(error).__name__}: {error}",
    )
