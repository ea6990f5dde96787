"""The blob trigger: each blob version under the path pattern is processed once.

Discovery has two paths. On MinIO, ``s3listen.EventStream`` keeps MinIO's
bucket notification request open and hands each created blob under the
pattern's prefix to the workers as it is told (tens of milliseconds). The
stream is not complete (events while it is disconnected are lost; MinIO
holds the last events of a burst back), so the trigger also lists the
prefix whole, as it always did, when ``discovery.ListingSchedule`` says:
at start, whenever the stream (re)connects, shortly after the stream falls
quiet, and at an interval set by the listing's own cost (``cost / duty``:
2% of the time with the stream, 10% without; never below ``poll_seconds``,
never above five minutes). A prefix of a few hundred blobs is thus still
listed every poll, but the processed blobs kept under it no longer make an
idle host's CPU grow with their number. Azure Storage and AWS S3 have no
such stream: there the listing is the only path, at the same interval, so
a blob waits for up to that interval (the real host documents up to ten
minutes for its polled blob triggers). ``MODELFORM_BLOB_EVENTS=0`` turns
the stream off. Whatever found a blob, what this process already settled
(done or poisoned) is kept in memory, so a blob told twice or listed again
costs nothing. A new (blob, ETag) is claimed with a receipt (see
``receipts``): whichever process creates it processes the blob; the others
leave it alone, and look again once the owner's lease would have run out
(without waiting for a listing), taking over a claim whose owner is gone
("in flight at a stop: processing again").

At start the receipts are listed once; a listed blob that has one is
then read once (its state: done, poisoned, or a claim to watch) before it
is settled in memory. Work runs on ``parallelism`` threads (host.json
``extensions.blobs.maxDegreeOfParallelism``, default 8); the poll thread
(waking every 0.1 s) also renews the leases of claims in progress (every
third of a lease). On S3 the requests go through ``s3http``, a lean signed
client (a blob's four requests cost about a fifth of boto3's CPU).

A run that raises (or whose outputs cannot be written) is retried after a
short backoff, up to ``MAX_ATTEMPTS`` calls in all; the attempts are kept
in the receipt, so a retry after a takeover continues the count. Then the
blob is poisoned: the receipt says so, a poison record names blob and
error, and on Azure a message in the real host's shape goes to the
``webjobs-blobtrigger-poison`` queue. The other blobs are not held up.

At a stop, polling ends and queued blobs are left unclaimed; runs in
progress may finish within the grace time, and the claims of those that
do not are released (their lease ends at once, so the next host to look
takes them over without waiting).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from dataclasses import dataclass, replace
from traceback import format_exc
from typing import Any

from modelform.runtime import logs
from modelform.runtime.functions.bindings import BindingError, BlobFacts, blob_value
from modelform.runtime.functions.discovery import DUTY, POLLING_DUTY, ListingSchedule
from modelform.runtime.functions.invoke import Invoker, Outcome
from modelform.runtime.functions.loader import FunctionSpec
from modelform.runtime.functions.outputs import (
    Connections,
    OutputWriter,
    read_blob_inputs,
    trigger_param,
)
from modelform.runtime.functions.patterns import BlobPattern, PatternError, parse_trigger_path
from modelform.runtime.functions.queues import QueueService, encode_body
from modelform.runtime.functions.receipts import (
    DONE,
    POISONED,
    Owner,
    Receipt,
    Receipts,
    utc_now,
)
from modelform.runtime.functions.s3listen import EventStream
from modelform.runtime.functions.settings import SettingsError
from modelform.runtime.functions.stores import BlobEntry, StoreError
from modelform.runtime.functions.workers import Workers

MAX_ATTEMPTS = 5
BACKOFF_S = (0.1, 0.25, 0.5, 1.0)
POISON_QUEUE = "webjobs-blobtrigger-poison"
#: Set to 0 to leave MinIO's event stream alone and find blobs by listing only.
EVENTS_ENV = "MODELFORM_BLOB_EVENTS"
TICK_S = 0.1


@dataclass
class _Claim:
    """A receipt this process holds; its lock orders the renewals and the final update."""

    receipt: Receipt
    lock: threading.Lock
    lost: bool = False


class BlobTrigger:
    def __init__(
        self,
        spec: FunctionSpec,
        connections: Connections,
        writer: OutputWriter,
        invoker: Invoker,
        log: logs.JsonLog,
        *,
        host_id: str,
        owner: Owner,
        poll_seconds: float,
        lease_seconds: float,
        parallelism: int,
        queue_base64: bool = True,
        events: bool = True,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.pattern: BlobPattern = parse_trigger_path(str(spec.trigger.get("path", "")))
        self.connections = connections
        self.store = connections.blob_store(spec.trigger.get("connection"))
        self.receipts = Receipts(self.store, host_id, spec.name, self.pattern.container, owner)
        self.writer = writer
        self.invoker = invoker
        self.log = log
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self.parallelism = parallelism
        self.queue_base64 = queue_base64
        self._param = trigger_param(spec)
        self._poison_queue: QueueService | None = None
        if self.store.kind == "azure":
            self._poison_queue = connections.queue_service(spec.trigger.get("connection"))
        self._lock = threading.Lock()
        self._settled: set[tuple[str, str]] = set()
        self._known: set[tuple[str, str]] = set()  # had a receipt at start, not yet read
        self._inflight: dict[tuple[str, str], _Claim | None] = {}
        # claimed elsewhere or failed on storage: look again at (time, the blob)
        self._recheck: dict[tuple[str, str], tuple[float, BlobEntry]] = {}
        self.schedule = ListingSchedule(poll_seconds)
        self.found = {"event": 0, "listing": 0, "recheck": 0}
        self.stream: EventStream | None = None
        http = getattr(self.store, "http", None)
        if events and http is not None and os.environ.get(EVENTS_ENV, "1") != "0":
            self.stream = EventStream(
                http,
                self.pattern.container,
                self.pattern.prefix,
                lambda entry: self._offer(entry, "event"),
                self.schedule.ask,
                log,
                spec.name,
            )
            self.schedule.duty = DUTY
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"blob-{spec.name}", daemon=True)
        self._workers: Workers | None = None
        self._ready = False
        self.healthy = False
        self.error: str | None = None
        self._last_renewal = 0.0

    # ---- life cycle ----------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "blob",
            "storage": self.store.kind,
            "container": self.pattern.container,
            "prefix": self.pattern.prefix,
            "healthy": self.healthy,
            "error": self.error,
            "discovery": self.discovery(),
        }

    def discovery(self) -> dict[str, Any]:
        """How blobs are found: the event stream, the listings, what each found."""
        stream = self.stream
        state = "none"
        if stream is not None:
            state = {None: "connecting", True: "connected", False: "unsupported"}[stream.supported]
            if stream.supported and not stream.connected:
                state = "reconnecting"
        found: dict[str, Any] = {
            "event_stream": state,
            "events": stream.events if stream is not None else 0,
            "listings": self.schedule.listings,
            "listing_cost_s": round(self.schedule.cost, 4),
            "listing_interval_s": round(self.schedule.interval(), 3),
            "found": dict(self.found),
        }
        requests = getattr(self.store, "requests", None)
        if requests is not None:
            found["storage_requests"] = requests
        return found

    def start(self) -> None:
        self._workers = Workers(self.parallelism, f"blob-{self.name}")
        self._thread.start()

    def stop(self, grace_seconds: float) -> None:
        """Stop polling; let runs finish within ``grace_seconds``; release the rest."""
        self._stop.set()
        if self.stream is not None:
            self.stream.stop()
        self._thread.join(max(self.poll_seconds, 1.0) + 30)
        workers = self._workers
        if workers is not None and not workers.wait_idle(grace_seconds):
            self._release_all()
        if workers is not None:
            workers.close()

    # ---- the poll loop -------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._ready:
                    self.receipts.prepare()
                    known = self.receipts.existing()
                    with self._lock:
                        self._known = known
                    self._ready = True
                    if self.stream is not None:
                        self.stream.start()  # it asks for a listing once its request is out
                now = time.monotonic()
                last_event = 0.0
                if self.stream is not None:
                    last_event = self.stream.last_event
                    if self.stream.supported is False:  # AWS: listing is all there is
                        self.schedule.duty = POLLING_DUTY
                if self.schedule.due(now, last_event) is not None:
                    self._list()
                self._look_again_now()
                self._renew_leases()
                if not self.healthy:
                    self.healthy, self.error = True, None
                    self.log.info("listening", function=self.name, **self.describe())
            except StoreError as error:
                self._trouble(str(error))
            except Exception as error:  # noqa: BLE001 - keep polling; say what went wrong
                self._trouble(f"{type(error).__name__}: {error}")
            self._stop.wait(min(TICK_S, self.poll_seconds))

    def _trouble(self, message: str) -> None:
        if message != self.error:
            self.log.error("listener_error", function=self.name, error=message)
        self.healthy, self.error = False, message

    def _list(self) -> None:
        """List the prefix whole: every blob version not yet settled is offered."""
        started = time.monotonic()
        self.schedule.started(started)
        entries = self.store.listing(self.pattern.container, self.pattern.prefix)
        self.schedule.finished(time.monotonic() - started)
        present: set[tuple[str, str]] = set()
        for entry in entries:
            present.add((entry.name, entry.etag))
            self._offer(entry, "listing")
        with self._lock:
            # Versions no longer listed (deleted, overwritten) need no memory; should one
            # come back, its receipt is read once. (Versions told by the stream during the
            # listing may be missing from it: they stay in flight or are offered again.)
            self._settled &= present
            self._known &= present
            for gone in [key for key in self._recheck if key not in present]:
                del self._recheck[gone]

    def _offer(self, entry: BlobEntry, source: str) -> None:
        """Process ``entry`` unless it is settled, in flight or waiting to be looked at again."""
        captures = self.pattern.match(entry.name)
        if captures is None:
            return
        key = (entry.name, entry.etag)
        with self._lock:
            if key in self._settled or key in self._inflight or key in self._recheck:
                return
            self._inflight[key] = None
            self.found[source] += 1
        assert self._workers is not None
        self._workers.submit(self._process, entry, captures)

    def _look_again_now(self) -> None:
        """Offer again the blobs whose time to be looked at again has come."""
        now = time.monotonic()
        with self._lock:
            due = [entry for when, entry in self._recheck.values() if when <= now]
            for entry in due:
                del self._recheck[(entry.name, entry.etag)]
        for entry in due:
            self._offer(entry, "recheck")

    def _renew_leases(self) -> None:
        now = time.monotonic()
        if now - self._last_renewal < self.lease_seconds / 3:
            return
        self._last_renewal = now
        with self._lock:
            claims = [(key, claim) for key, claim in self._inflight.items() if claim is not None]
        for (name, etag), claim in claims:
            with claim.lock:
                if claim.lost or claim.receipt.state != "processing":
                    continue
                renewed = self.receipts.renew(name, etag, claim.receipt)
                if renewed is None:
                    self._lost(claim, name, etag)
                else:
                    claim.receipt = renewed

    def _lost(self, claim: _Claim, name: str, etag: str) -> None:
        claim.lost = True
        self.log.warning(
            "claim_lost",
            function=self.name,
            blob=name,
            etag=etag,
            message="another host took this blob over (this one was too slow to renew)",
        )

    # ---- one blob ------------------------------------------------------------------------

    def _process(self, entry: BlobEntry, captures: dict[str, str]) -> None:
        key = (entry.name, entry.etag)
        try:
            if self._stop.is_set():
                return  # not claimed: whoever runs next takes it
            claim = self._acquire(entry)
            if claim is None:
                return
            with self._lock:
                self._inflight[key] = claim
            self._attempts(entry, captures, claim)
        except Exception as error:  # noqa: BLE001 - storage trouble or a bug: log, look again
            fields: dict[str, Any] = {"error": str(error)}
            if not isinstance(error, StoreError | SettingsError):
                fields = {"error": f"{type(error).__name__}: {error}", "traceback": format_exc()}
            self.log.error("blob_error", function=self.name, blob=entry.name, **fields)
            with self._lock:
                self._recheck[key] = (time.monotonic() + min(self.lease_seconds, 5.0), entry)
        finally:
            with self._lock:
                self._inflight.pop(key, None)

    def _settle(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._settled.add(key)
            self._recheck.pop(key, None)

    def _acquire(self, entry: BlobEntry) -> _Claim | None:
        name, etag = key = (entry.name, entry.etag)
        with self._lock:
            known = key in self._known
            self._known.discard(key)
        if not known:
            receipt = self.receipts.claim(name, etag)
            if receipt is not None:
                return _Claim(receipt, threading.Lock())
        receipt = self.receipts.read(name, etag)
        if receipt is None:  # deleted meanwhile (a destroy that removes receipts)
            receipt = self.receipts.claim(name, etag)
            if receipt is None:
                self._look_again(entry, 1.0)
                return None
            return _Claim(receipt, threading.Lock())
        if receipt.state in (DONE, POISONED):
            self._settle(key)
            return None
        if receipt.owned_by(self.receipts.owner):
            return _Claim(receipt, threading.Lock())  # ours, left by an earlier storage error
        left = receipt.lease_left(self.lease_seconds)
        if left > 0:
            self._look_again(entry, left)
            return None
        taken = self.receipts.take_over(name, etag, receipt)
        if taken is None:
            self._look_again(entry, 1.0)
            return None
        self.log.warning(
            "in_flight_takeover",
            function=self.name,
            blob=name,
            etag=etag,
            previous_owner=receipt.owner,
            attempts=receipt.attempts,
            message="in flight at a stop: processing again",
        )
        return _Claim(taken, threading.Lock())

    def _look_again(self, entry: BlobEntry, seconds: float) -> None:
        jitter = random.uniform(0.0, min(1.0, self.poll_seconds))
        with self._lock:
            self._recheck[(entry.name, entry.etag)] = (
                time.monotonic() + max(seconds, 0.0) + jitter,
                entry,
            )

    def _attempts(self, entry: BlobEntry, captures: dict[str, str], claim: _Claim) -> None:
        name, etag = key = (entry.name, entry.etag)
        container = self.pattern.container
        while True:
            blob = self.store.read(container, name, etag=etag)
            if blob is None:
                self._finish(claim, name, etag, DONE, "the blob changed or was deleted first")
                self._settle(key)
                self.log.info("blob_gone", function=self.name, blob=name, etag=etag)
                return
            attempt = claim.receipt.attempts + 1
            uri = self.store.uri(container, name)
            facts = BlobFacts(
                container=container,
                name=name,
                uri=uri,
                etag=etag,
                length=len(blob.data),
                content_type=blob.content_type,
                last_modified=blob.last_modified.isoformat() if blob.last_modified else None,
                metadata=blob.metadata,
            )
            data: dict[str, Any] = {**captures, "BlobTrigger": f"{container}/{name}", "Uri": uri}
            outcome = self._invoke(blob.data, facts, data, attempt)
            self.invoker.record(self.spec, outcome, blob=name, etag=etag, attempt=attempt)
            if outcome.ok:
                self._finish(claim, name, etag, DONE, None, attempts=attempt)
                self._settle(key)
                return
            error = outcome.error or "failed"
            if attempt >= MAX_ATTEMPTS:
                self._poison(claim, entry, error, attempt)
                self._settle(key)
                return
            with claim.lock:
                if not claim.lost:
                    updated = self.receipts.update(
                        name,
                        etag,
                        claim.receipt,
                        replace(claim.receipt, attempts=attempt, error=error),
                    )
                    if updated is None:
                        self._lost(claim, name, etag)
                    else:
                        claim.receipt = updated
                lost = claim.lost
            if lost:
                return
            if self._stop.wait(BACKOFF_S[min(attempt - 1, len(BACKOFF_S) - 1)]):
                self._release(claim, name, etag)
                return

    def _invoke(self, body: bytes, facts: BlobFacts, data: dict[str, Any], attempt: int) -> Outcome:
        try:
            inputs = {self._param.name: blob_value(body, facts, self._param)}
            inputs.update(read_blob_inputs(self.spec, self.connections, data))
        except (BindingError, PatternError, StoreError, UnicodeDecodeError) as error:
            return Outcome(False, 0.0, error=f"{type(error).__name__}: {error}")
        outcome = self.invoker.call(
            self.spec, inputs, retry_count=attempt - 1, max_retries=MAX_ATTEMPTS - 1
        )
        return self.writer.finish(self.spec, outcome, data)

    def _finish(
        self,
        claim: _Claim,
        name: str,
        etag: str,
        state: str,
        error: str | None,
        attempts: int | None = None,
    ) -> None:
        with claim.lock:
            if claim.lost:
                return
            final = replace(
                claim.receipt,
                state=state,
                error=error,
                finished=utc_now(),
                attempts=claim.receipt.attempts if attempts is None else attempts,
            )
            updated = self.receipts.update(name, etag, claim.receipt, final)
            if updated is None:
                self._lost(claim, name, etag)
            else:
                claim.receipt = updated

    def _poison(self, claim: _Claim, entry: BlobEntry, error: str, attempts: int) -> None:
        name, etag = entry.name, entry.etag
        self._finish(claim, name, etag, POISONED, error, attempts=attempts)
        record = self.receipts.write_poison_record(name, etag, error, attempts)
        fields: dict[str, Any] = {"record": record}
        if self._poison_queue is not None:
            message = {
                "Type": "BlobTrigger",
                "FunctionId": f"Host.Functions.{self.name}",
                "BlobType": "BlockBlob",
                "ContainerName": self.pattern.container,
                "BlobName": name,
                "ETag": f'"{etag}"',
            }
            text = json.dumps(message, separators=(",", ":")).encode()
            self._poison_queue.send(POISON_QUEUE, encode_body(text, self.queue_base64))
            fields["queue"] = POISON_QUEUE
        self.invoker.poisoned(
            self.spec, blob=name, etag=etag, attempts=attempts, error=error, **fields
        )

    def _release(self, claim: _Claim, name: str, etag: str) -> None:
        with claim.lock:
            if claim.lost or claim.receipt.state != "processing":
                return
            try:
                released = self.receipts.release(name, etag, claim.receipt)
            except StoreError as error:
                self.log.error("release_failed", function=self.name, blob=name, error=str(error))
                return
            claim.lost = True  # ours no more
            if released is not None:
                claim.receipt = released
        self.log.warning("claim_released", function=self.name, blob=name, etag=etag)

    def _release_all(self) -> None:
        with self._lock:
            claims = [(key, claim) for key, claim in self._inflight.items() if claim is not None]
        for (name, etag), claim in claims:
            self._release(claim, name, etag)
