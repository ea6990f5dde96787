"""Blob receipts: who processes which blob version, kept in the storage itself.

As the real host does, a blob trigger writes one receipt per function and
blob ETag in the ``azure-webjobs-hosts`` container (a bucket on S3)::

    blobreceipts/<hostId>/<function>/<etag>/<container>/<blob name>

A receipt is claimed by a conditional create (``If-None-Match: *``), so of
several host processes exactly one gets it; every later change is a
conditional replace on the receipt's own ETag, so a claim taken over by
another process is noticed instead of overwritten. Its JSON::

    {"state": "processing" | "done" | "poisoned",
     "owner": "<pid>@<hostname>", "owner_started": "<process start, UTC>",
     "started": "<claimed, UTC>", "renewed": "<last lease renewal, UTC>",
     "attempts": n, "error": "<last error>" | null, "finished": "<UTC>" | null}

A ``processing`` receipt whose lease (``renewed`` + lease seconds, renewed
by its owner while it works) has run out belongs to a process that is
gone; another process takes it over and processes the blob again. Leases
compare clocks of different machines: keep them in sync (NTP), and the
lease well above the skew. A blob that failed for good also gets a poison
record, ``blobpoison/<function>/<etag>/<container>/<blob>.json``, naming
the blob and the error.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from modelform.runtime.functions.stores import BlobStore

RECEIPTS_CONTAINER = "azure-webjobs-hosts"
PROCESSING = "processing"
DONE = "done"
POISONED = "poisoned"
_EPOCH = "1970-01-01T00:00:00.000Z"


def utc_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def parse_utc(text: str) -> float:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except (TypeError, ValueError):
        return 0.0


@dataclass(frozen=True)
class Owner:
    """This process, as receipts name it: pid@hostname and when it started."""

    name: str
    started: str

    @classmethod
    def this_process(cls) -> Owner:
        return cls(f"{os.getpid()}@{socket.gethostname()}", utc_now())


@dataclass(frozen=True)
class Receipt:
    state: str
    owner: str
    owner_started: str
    started: str
    renewed: str
    attempts: int = 0
    error: str | None = None
    finished: str | None = None
    etag: str = ""  # the receipt object's own ETag (not stored in it)

    def body(self) -> bytes:
        fields = asdict(self)
        fields.pop("etag")
        return json.dumps(fields, sort_keys=True).encode("utf-8")

    @classmethod
    def parse(cls, data: bytes, etag: str) -> Receipt:
        try:
            fields: dict[str, Any] = json.loads(data)
            return cls(
                state=str(fields["state"]),
                owner=str(fields.get("owner", "")),
                owner_started=str(fields.get("owner_started", "")),
                started=str(fields.get("started", _EPOCH)),
                renewed=str(fields.get("renewed") or fields.get("started") or _EPOCH),
                attempts=int(fields.get("attempts", 0)),
                error=fields.get("error"),
                finished=fields.get("finished"),
                etag=etag,
            )
        except (ValueError, KeyError, TypeError):
            # Not ours or damaged: an expired claim, so that a live host processes the blob.
            return cls(PROCESSING, "unreadable receipt", "", _EPOCH, _EPOCH, etag=etag)

    def owned_by(self, owner: Owner) -> bool:
        return self.owner == owner.name and self.owner_started == owner.started

    def lease_left(self, lease_seconds: float, now: float | None = None) -> float:
        """Seconds until this claim's lease runs out (<= 0: expired)."""
        now = time.time() if now is None else now
        return parse_utc(self.renewed) + lease_seconds - now


class Receipts:
    """The receipts of one blob-triggered function over one store."""

    def __init__(
        self, store: BlobStore, host_id: str, function: str, container: str, owner: Owner
    ) -> None:
        self.store = store
        self.host_id = host_id
        self.function = function
        self.container = container
        self.owner = owner
        self.prefix = f"blobreceipts/{host_id}/{function}/"

    def key(self, blob: str, etag: str) -> str:
        return f"{self.prefix}{etag}/{self.container}/{blob}"

    def poison_key(self, blob: str, etag: str) -> str:
        return f"blobpoison/{self.function}/{etag}/{self.container}/{blob}.json"

    def prepare(self) -> None:
        self.store.ensure_container(RECEIPTS_CONTAINER)

    def existing(self) -> set[tuple[str, str]]:
        """(blob name, etag) of every receipt of this function: one listing."""
        found: set[tuple[str, str]] = set()
        marker = f"/{self.container}/"
        for entry in self.store.listing(RECEIPTS_CONTAINER, self.prefix):
            rest = entry.name[len(self.prefix) :]
            etag, sep, tail = rest.partition(marker)
            if sep and etag and "/" not in etag:
                found.add((tail, etag))
        return found

    def claim(self, blob: str, etag: str) -> Receipt | None:
        """A new receipt owned by this process, or None when another exists."""
        now = utc_now()
        receipt = Receipt(PROCESSING, self.owner.name, self.owner.started, now, now)
        new_etag = self.store.create(RECEIPTS_CONTAINER, self.key(blob, etag), receipt.body())
        return None if new_etag is None else replace(receipt, etag=new_etag)

    def read(self, blob: str, etag: str) -> Receipt | None:
        data = self.store.read(RECEIPTS_CONTAINER, self.key(blob, etag))
        return None if data is None else Receipt.parse(data.data, data.etag)

    def take_over(self, blob: str, etag: str, old: Receipt) -> Receipt | None:
        """Claim a receipt whose owner's lease ran out (None: another process was first)."""
        now = utc_now()
        new = replace(
            old,
            state=PROCESSING,
            owner=self.owner.name,
            owner_started=self.owner.started,
            started=now,
            renewed=now,
        )
        return self.update(blob, etag, old, new)

    def update(self, blob: str, etag: str, old: Receipt, new: Receipt) -> Receipt | None:
        """Write ``new`` over ``old`` if the receipt is still ``old`` (its ETag)."""
        new_etag = self.store.replace(
            RECEIPTS_CONTAINER, self.key(blob, etag), new.body(), old.etag
        )
        return None if new_etag is None else replace(new, etag=new_etag)

    def renew(self, blob: str, etag: str, old: Receipt) -> Receipt | None:
        return self.update(blob, etag, old, replace(old, renewed=utc_now()))

    def release(self, blob: str, etag: str, old: Receipt) -> Receipt | None:
        """Give a claim up at a stop: its lease is over at once, its attempts are kept."""
        return self.update(blob, etag, old, replace(old, renewed=_EPOCH))

    def write_poison_record(self, blob: str, etag: str, error: str, attempts: int) -> str:
        key = self.poison_key(blob, etag)
        record = {
            "function": self.function,
            "host_id": self.host_id,
            "container": self.container,
            "blob": blob,
            "etag": etag,
            "attempts": attempts,
            "error": error,
            "poisoned": utc_now(),
            "owner": self.owner.name,
        }
        self.store.write(
            RECEIPTS_CONTAINER, key, json.dumps(record, indent=1).encode(), "application/json"
        )
        return key
