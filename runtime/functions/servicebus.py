"""The service bus trigger and output, through azure-servicebus, behind the trigger interface.

NOT EXERCISED AGAINST A BROKER: no broker that speaks what
``azure-servicebus`` needs (its CBS ``$cbs`` handshake) runs where this
project is tested, and the official emulator is a container image that
cannot be pulled there. What is tested is the configuration (connection
setting, queue XOR topic/subscription) and the conversion of a received
message into ``func.ServiceBusMessage``; the receive/complete/abandon
loop below follows the SDK's documented use but has not met a broker.

Behaviour: a peek-lock receiver on the queue or the topic's subscription
(``AutoLockRenewer`` keeps locks while runs last); each received batch
(up to ``maxConcurrentCalls``, host.json ``extensions.serviceBus``) runs
on worker threads; the receiving thread then completes each message that
succeeded and abandons each that failed. Dead-lettering after the
queue's ``MaxDeliveryCount`` is the broker's, as with the real host.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from modelform.runtime import logs
from modelform.runtime.functions.bindings import BindingError, servicebus_value
from modelform.runtime.functions.invoke import Invoker, Outcome
from modelform.runtime.functions.loader import FunctionSpec
from modelform.runtime.functions.outputs import Connections, OutputWriter, trigger_param
from modelform.runtime.functions.settings import SettingsError
from modelform.runtime.functions.stores import StoreError
from modelform.runtime.functions.workers import Workers

logging.getLogger("azure").setLevel(logging.WARNING)
logging.getLogger("uamqp").setLevel(logging.WARNING)


def _sdk() -> Any:
    try:
        import azure.servicebus as servicebus
    except ImportError:
        raise SettingsError(
            "a service bus binding needs azure-servicebus: pip install azure-servicebus"
        ) from None
    return servicebus


class BusConnection:
    """One namespace's client (made on first use) and its senders."""

    def __init__(self, connection_string: str) -> None:
        self._connection_string = connection_string
        self._client: Any = None
        self._senders: dict[tuple[str | None, str | None], Any] = {}
        self._lock = threading.Lock()
        _sdk()

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = _sdk().ServiceBusClient.from_connection_string(
                    self._connection_string
                )
            return self._client

    def send(self, queue: str | None, topic: str | None, bodies: Sequence[bytes]) -> None:
        if bool(queue) == bool(topic):
            raise BindingError("a service bus output names a queue or a topic (one of them)")
        client = self.client()
        with self._lock:
            sender = self._senders.get((queue, topic))
            if sender is None:
                sender = client.get_queue_sender(queue) if queue else client.get_topic_sender(topic)
                self._senders[(queue, topic)] = sender
        servicebus = _sdk()
        try:
            sender.send_messages([servicebus.ServiceBusMessage(body) for body in bodies])
        except servicebus.exceptions.ServiceBusError as error:
            raise StoreError(f"service bus send to {queue or topic}: {error}") from None

    def receiver(self, queue: str | None, topic: str | None, subscription: str | None) -> Any:
        client = self.client()
        renewer = _sdk().AutoLockRenewer()
        if queue:
            return client.get_queue_receiver(queue, auto_lock_renewer=renewer)
        return client.get_subscription_receiver(topic, subscription, auto_lock_renewer=renewer)

    def close(self) -> None:
        with self._lock:
            for sender in self._senders.values():
                try:
                    sender.close()
                except Exception:  # noqa: BLE001 - closing at exit, nothing left to do
                    pass
            if self._client is not None:
                try:
                    self._client.close()
                except Exception:  # noqa: BLE001
                    pass


def entity(trigger: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(queue, topic, subscription) of a serviceBusTrigger binding, checked."""
    queue = trigger.get("queueName") or None
    topic = trigger.get("topicName") or None
    subscription = trigger.get("subscriptionName") or None
    if bool(queue) == bool(topic):
        raise SettingsError("a service bus trigger names a queue or a topic (one of them)")
    if topic and not subscription:
        raise SettingsError(f"service bus topic {topic}: a subscription is required")
    if queue and subscription:
        raise SettingsError(f"service bus queue {queue}: a subscription belongs to a topic")
    return queue, topic, subscription


def message_body(message: Any) -> bytes:
    """The body of a received message as bytes (data sections joined; a value as text)."""
    body = message.body
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    try:
        parts = list(body)
    except TypeError:
        return str(body).encode("utf-8")
    if all(isinstance(part, bytes | bytearray) for part in parts):
        return b"".join(bytes(part) for part in parts)
    return str(body).encode("utf-8")


def message_metadata(message: Any) -> dict[str, Any]:
    """The trigger metadata the real host sends for a received message."""

    def text(value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, bytes):
            return value.decode("utf-8", errors="replace")
        return str(value)

    def when(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    def span(value: timedelta | None) -> str | None:
        if value is None:
            return None
        seconds = int(value.total_seconds())
        return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"

    properties = {
        text(key) or "": (value.decode("utf-8", "replace") if isinstance(value, bytes) else value)
        for key, value in (message.application_properties or {}).items()
    }
    return {
        "ContentType": text(message.content_type),
        "CorrelationId": text(message.correlation_id),
        "DeadLetterErrorDescription": text(message.dead_letter_error_description),
        "DeadLetterReason": text(message.dead_letter_reason),
        "DeadLetterSource": text(message.dead_letter_source),
        "DeliveryCount": message.delivery_count,
        "EnqueuedSequenceNumber": message.enqueued_sequence_number,
        "EnqueuedTimeUtc": when(message.enqueued_time_utc),
        "ExpiresAtUtc": when(message.expires_at_utc),
        "Label": text(message.subject),
        "Subject": text(message.subject),
        "LockedUntil": when(_safe(lambda: message.locked_until_utc)),
        "LockToken": text(_safe(lambda: message.lock_token)),
        "MessageId": text(message.message_id),
        "PartitionKey": text(message.partition_key),
        "ReplyTo": text(message.reply_to),
        "ReplyToSessionId": text(message.reply_to_session_id),
        "ScheduledEnqueueTimeUtc": when(message.scheduled_enqueue_time_utc),
        "SequenceNumber": message.sequence_number,
        "SessionId": text(message.session_id),
        "TimeToLive": span(message.time_to_live),
        "To": text(message.to),
        "UserProperties": properties,
        "ApplicationProperties": properties,
    }


def _safe(read: Any) -> Any:
    try:
        return read()
    except Exception:  # noqa: BLE001 - a property that needs a receiver; absent without one
        return None


class ServiceBusTrigger:
    """Not exercised against a broker (see the module doc)."""

    def __init__(
        self,
        spec: FunctionSpec,
        connections: Connections,
        writer: OutputWriter,
        invoker: Invoker,
        log: logs.JsonLog,
        *,
        poll_seconds: float,
        max_concurrent: int,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.queue, self.topic, self.subscription = entity(spec.trigger)
        self.bus: BusConnection = connections.servicebus(spec.trigger.get("connection"))
        self.writer = writer
        self.invoker = invoker
        self.log = log
        self.poll_seconds = poll_seconds
        self.max_concurrent = max_concurrent
        self._param = trigger_param(spec)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sb-{spec.name}", daemon=True)
        self._workers: Workers | None = None
        self.healthy = False
        self.error: str | None = None

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "kind": "servicebus",
            "exercised_against_broker": False,
            "healthy": self.healthy,
            "error": self.error,
        }
        if self.queue:
            info["queue"] = self.queue
        else:
            info.update(topic=self.topic, subscription=self.subscription)
        return info

    def start(self) -> None:
        self._workers = Workers(self.max_concurrent, f"sb-{self.name}")
        self._thread.start()

    def stop(self, grace_seconds: float) -> None:
        self._stop.set()
        self._thread.join(self.poll_seconds + grace_seconds + 5)
        if self._workers is not None:
            self._workers.close()

    def _run(self) -> None:
        servicebus = _sdk()
        receiver: Any = None
        while not self._stop.is_set():
            try:
                if receiver is None:
                    receiver = self.bus.receiver(self.queue, self.topic, self.subscription)
                    receiver.__enter__()
                messages = receiver.receive_messages(
                    max_message_count=self.max_concurrent, max_wait_time=self.poll_seconds
                )
                if not self.healthy:
                    self.healthy, self.error = True, None
                    self.log.info("listening", function=self.name, **self.describe())
                self._handle(receiver, messages)
            except servicebus.exceptions.ServiceBusError as error:
                message = f"service bus {self.queue or self.topic}: {error}"
                if message != self.error:
                    self.log.error("listener_error", function=self.name, error=message)
                self.healthy, self.error = False, message
                _close(receiver)
                receiver = None
                self._stop.wait(max(self.poll_seconds, 1.0))
        _close(receiver)

    def _handle(self, receiver: Any, messages: list[Any]) -> None:
        results: dict[int, bool] = {}
        assert self._workers is not None
        for index, message in enumerate(messages):
            self._workers.submit(self._process, message, index, results)
        self._workers.wait_idle(3600.0)
        for index, message in enumerate(messages):
            if results.get(index):
                receiver.complete_message(message)
            else:
                receiver.abandon_message(message)

    def _process(self, message: Any, index: int, results: dict[int, bool]) -> None:
        outcome = self.invoke(message)
        self.invoker.record(
            self.spec,
            outcome,
            message_id=str(message.message_id),
            delivery_count=message.delivery_count,
        )
        results[index] = outcome.ok

    def invoke(self, message: Any) -> Outcome:
        body = message_body(message)
        try:
            value = servicebus_value(body, message_metadata(message), self._param)
        except (BindingError, UnicodeDecodeError, ValueError) as error:
            return Outcome(False, 0.0, error=f"{type(error).__name__}: {error}")
        outcome = self.invoker.call(self.spec, {self._param.name: value})
        return self.writer.finish(self.spec, outcome, {"MessageId": str(message.message_id)})


def _close(receiver: Any) -> None:
    if receiver is not None:
        try:
            receiver.__exit__(None, None, None)
        except Exception:  # noqa: BLE001 - a broken receiver is replaced anyway
            pass
    return None
