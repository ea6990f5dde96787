"""The storage-queue trigger (Azure Storage queues), with the real host's delivery rules.

Messages are received in batches of ``batchSize`` (host.json
``extensions.queues``, default 16) and hidden for the lease while they are
processed (the poll thread extends it while a run lasts longer). A success
deletes the message and sends what the function put on its output
queue(s). A failure makes the message visible again after
``visibilityTimeout`` (default 0), and the queue's own dequeue count keeps
the tally: the failure at dequeue ``maxDequeueCount`` (default 5) moves it
to ``<queue>-poison`` (the body unchanged) and deletes it; a message
received with a count already past it (a host died on it each time) goes
there without a run. With ``newBatchThreshold`` as the real host, the next
batch is fetched when fewer than half a batch are still in progress. An
empty queue is polled again every ``poll_seconds``.

At a stop, receiving ends; runs in progress may finish within the grace
time and the messages of those that do not are made visible again.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from traceback import format_exc
from typing import Any

from modelform.runtime import logs
from modelform.runtime.functions.bindings import BindingError, QueueFacts, queue_value
from modelform.runtime.functions.invoke import Invoker, Outcome
from modelform.runtime.functions.loader import FunctionSpec
from modelform.runtime.functions.outputs import (
    Connections,
    OutputWriter,
    read_blob_inputs,
    trigger_param,
)
from modelform.runtime.functions.patterns import PatternError
from modelform.runtime.functions.queues import decode_body
from modelform.runtime.functions.settings import QueueOptions, SettingsError
from modelform.runtime.functions.stores import StoreError
from modelform.runtime.functions.workers import Workers


@dataclass
class _Held:
    """A message this process has hidden; the lock orders extensions and the final call."""

    message: Any
    pop_receipt: str
    visible_until: float
    lock: threading.Lock
    done: bool = False


class QueueTrigger:
    def __init__(
        self,
        spec: FunctionSpec,
        connections: Connections,
        writer: OutputWriter,
        invoker: Invoker,
        log: logs.JsonLog,
        *,
        poll_seconds: float,
        lease_seconds: float,
        options: QueueOptions,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.queue_name = str(spec.trigger.get("queueName", "")).lower()
        if not self.queue_name:
            raise SettingsError(f"function {spec.name}: queue trigger without queueName")
        self.poison_name = f"{self.queue_name}-poison"
        self.connections = connections
        self.service = connections.queue_service(spec.trigger.get("connection"))
        self.writer = writer
        self.invoker = invoker
        self.log = log
        self.poll_seconds = poll_seconds
        self.lease = max(1, int(round(lease_seconds)))
        self.options = options
        self._param = trigger_param(spec)
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"queue-{spec.name}", daemon=True)
        self._workers: Workers | None = None
        self.healthy = False
        self.error: str | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "queue",
            "queue": self.queue_name,
            "poison_queue": self.poison_name,
            "healthy": self.healthy,
            "error": self.error,
        }

    def start(self) -> None:
        self._workers = Workers(self.options.batch_size, f"queue-{self.name}")
        self._thread.start()

    def stop(self, grace_seconds: float) -> None:
        self._stop.set()
        self._thread.join(self.poll_seconds + 30)
        workers = self._workers
        if workers is not None and not workers.wait_idle(grace_seconds):
            with self._lock:
                held = list(self._held.values())
            for item in held:
                self._settle(item, visible_in=0, release=True)
        if workers is not None:
            workers.close()

    # ---- receiving -----------------------------------------------------------------------

    def _run(self) -> None:
        client: Any = None
        while not self._stop.is_set():
            try:
                if client is None:
                    client = self.service.client(self.queue_name)
                    self.service.client(self.poison_name)
                received = self._receive(client)
                self._extend(client)
                if not self.healthy:
                    self.healthy, self.error = True, None
                    self.log.info("listening", function=self.name, **self.describe())
            except StoreError as error:
                received = 0
                self._trouble(str(error))
            except self.service.error_types as error:
                received = 0
                self._trouble(f"Azure Queue {self.queue_name}: {_line(error)}")
            if received == 0:
                self._stop.wait(self.poll_seconds)
            elif client is not None:
                self._wait_for_room(client)

    def _trouble(self, message: str) -> None:
        if message != self.error:
            self.log.error("listener_error", function=self.name, error=message)
        self.healthy, self.error = False, message

    def _wait_for_room(self, client: Any) -> None:
        """The real host's newBatchThreshold: fetch more once half a batch is left (hiding
        the messages still running again meanwhile)."""
        assert self._workers is not None
        threshold = max(1, self.options.batch_size // 2)
        extended = time.monotonic()
        while self._workers.pending >= threshold and not self._stop.wait(0.01):
            if time.monotonic() - extended > 0.5:
                extended = time.monotonic()
                try:
                    self._extend(client)
                except self.service.error_types as error:
                    self._trouble(f"Azure Queue {self.queue_name}: {_line(error)}")

    def _receive(self, client: Any) -> int:
        assert self._workers is not None
        room = self.options.batch_size - self._workers.pending
        if room <= 0:
            return 0
        messages = list(
            client.receive_messages(
                messages_per_page=room, max_messages=room, visibility_timeout=self.lease
            )
        )
        now = time.monotonic()
        for message in messages:
            held = _Held(message, message.pop_receipt, now + self.lease, threading.Lock())
            with self._lock:
                self._held[message.id] = held
            self._workers.submit(self._process, held)
        return len(messages)

    def _extend(self, client: Any) -> None:
        """Hide again, for another lease, the messages whose runs are still going."""
        now = time.monotonic()
        with self._lock:
            due = [
                item for item in self._held.values() if item.visible_until - now < self.lease / 3
            ]
        for item in due:
            with item.lock:
                if item.done:
                    continue
                try:
                    updated = client.update_message(
                        item.message.id, item.pop_receipt, visibility_timeout=self.lease
                    )
                except self.service.error_types as error:
                    self.log.warning(
                        "lease_extend_failed",
                        function=self.name,
                        message_id=item.message.id,
                        error=_line(error),
                    )
                    continue
                item.pop_receipt = updated.pop_receipt
                item.visible_until = time.monotonic() + self.lease

    # ---- one message ---------------------------------------------------------------------

    def _process(self, item: _Held) -> None:
        message = item.message
        try:
            if self._stop.is_set():
                self._settle(item, visible_in=0, release=True)
                return
            max_count = self.options.max_dequeue_count
            if message.dequeue_count > max_count:
                self._poison(item, f"dequeued {message.dequeue_count} times", ran=False)
                return
            outcome = self._invoke(message)
            self.invoker.record(
                self.spec,
                outcome,
                message_id=message.id,
                dequeue_count=message.dequeue_count,
            )
            if outcome.ok:
                self._settle(item, delete=True)
            elif message.dequeue_count >= max_count:
                self._poison(item, outcome.error or "failed", ran=True)
            else:
                self._settle(item, visible_in=int(self.options.visibility_timeout))
        except (StoreError, SettingsError) as error:
            self.log.error(
                "message_error", function=self.name, message_id=message.id, error=str(error)
            )
        except self.service.error_types as error:
            self.log.error(
                "message_error", function=self.name, message_id=message.id, error=_line(error)
            )
        except Exception as error:  # noqa: BLE001 - a bug: log it; the message comes back
            self.log.error(
                "message_error",
                function=self.name,
                message_id=message.id,
                error=f"{type(error).__name__}: {error}",
                traceback=format_exc(),
            )
        finally:
            with self._lock:
                self._held.pop(message.id, None)

    def _invoke(self, message: Any) -> Outcome:
        text = message.content if isinstance(message.content, str) else ""
        body = decode_body(text, self.options.base64)
        facts = QueueFacts(
            id=message.id,
            dequeue_count=int(message.dequeue_count or 0),
            insertion_time=_iso(message.inserted_on),
            expiration_time=_iso(message.expires_on),
            next_visible_time=_iso(getattr(message, "next_visible_on", None)),
            pop_receipt=message.pop_receipt,
        )
        data = binding_data(body, facts)
        try:
            inputs = {self._param.name: queue_value(body, facts, self._param)}
            inputs.update(read_blob_inputs(self.spec, self.connections, data))
        except (BindingError, PatternError, StoreError, UnicodeDecodeError) as error:
            return Outcome(False, 0.0, error=f"{type(error).__name__}: {error}")
        outcome = self.invoker.call(self.spec, inputs)
        return self.writer.finish(self.spec, outcome, data)

    def _settle(
        self, item: _Held, *, delete: bool = False, visible_in: int = 0, release: bool = False
    ) -> None:
        client = self.service.client(self.queue_name)
        with item.lock:
            if item.done:
                return
            item.done = True
            try:
                if delete:
                    client.delete_message(item.message.id, item.pop_receipt)
                else:
                    client.update_message(
                        item.message.id, item.pop_receipt, visibility_timeout=visible_in
                    )
            except self.service.error_types as error:
                # The pop receipt is stale (the lease ran out and another receiver has it):
                # that receiver now decides the message's fate.
                self.log.warning(
                    "message_settle_failed",
                    function=self.name,
                    message_id=item.message.id,
                    error=_line(error),
                )
                return
        if release:
            self.log.warning("message_released", function=self.name, message_id=item.message.id)

    def _poison(self, item: _Held, error: str, *, ran: bool) -> None:
        message = item.message
        self.service.send(self.poison_name, message.content or "")
        self._settle(item, delete=True)
        self.invoker.poisoned(
            self.spec,
            message_id=message.id,
            dequeue_count=message.dequeue_count,
            queue=self.poison_name,
            error=error,
            ran=ran,
        )


def binding_data(body: bytes, facts: QueueFacts) -> dict[str, Any]:
    """Names an output path may use: QueueTrigger, Id, DequeueCount, … and JSON properties."""
    text = body.decode("utf-8", errors="replace")
    data: dict[str, Any] = {
        "QueueTrigger": text,
        "Id": facts.id,
        "DequeueCount": facts.dequeue_count,
        "InsertionTime": facts.insertion_time or "",
        "ExpirationTime": facts.expiration_time or "",
        "NextVisibleTime": facts.next_visible_time or "",
        "PopReceipt": facts.pop_receipt or "",
    }
    try:
        document = json.loads(text)
    except ValueError:
        return data
    if isinstance(document, dict):
        for key, value in document.items():
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                data.setdefault(str(key), value)
    return data


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return str(value.isoformat())
    except AttributeError:
        return str(value)


def _line(error: BaseException) -> str:
    text = str(error)
    return text.splitlines()[0] if text else type(error).__name__
