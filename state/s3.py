"""The S3 backend: the state in S3-compatible storage (MinIO, AWS S3, ...).

Objects, for ``key: ml/state.json``:

* ``ml/state.json`` — the state. Every write is conditional on the
  version this backend read (``If-Match: <ETag>``; ``If-None-Match: *``
  when there was none), so of two writers that read the same version one
  wins and the other re-reads and is refused (:class:`StateConflict`):
  no update is ever lost, even by a writer that skipped the lock.
* ``ml/state.json.lock`` — present while someone holds the lock: JSON of
  :class:`~modelform.state.lock.LockInfo`, created with ``If-None-Match:
  *`` so exactly one of several takers gets it.
* ``ml/state.json.history/0000000042.json`` — the version with serial 42,
  kept for ``modelform state history`` when the bucket does not version
  its objects. With bucket versioning on, S3 keeps every version itself
  and nothing is copied.

A lock is never taken over automatically here, unlike the local file's:
a remote state is shared by machines that may well have the same host
name (CI runners in containers), so a dead pid on "this" host proves
nothing. A stale lock (its holder's pid gone, or held for long) is
reported with its holder and age; ``modelform force-unlock ID`` frees it.

Credentials come from the environment and the AWS config files, never
from the project file (:mod:`modelform.state.s3client`).
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from modelform.state.backend import Backend, HistoryEntry, Stored, prepare_exact, prepare_write
from modelform.state.canonical import encode
from modelform.state.errors import LockError, StateConflict, StateError
from modelform.state.lock import LockInfo, current_user
from modelform.state.model import State
from modelform.state.resource import now_iso
from modelform.state.s3client import S3Location, status_of, storage_error

#: Where the state is kept in the bucket unless ``key`` says otherwise.
DEFAULT_KEY = "modelform/state.json"


@dataclass(frozen=True)
class _Seen:
    """The stored version this backend read or wrote last: its ETag and summary."""

    etag: str | None  # None: there was no state object
    stored: Stored | None


class S3Backend(Backend):
    """A state object in a bucket, a lock object beside it, and its history."""

    takes_over_gone_holders: ClassVar[bool] = False
    #: Polling a remote lock costs a request each time: start slower than a file's.
    poll_initial: ClassVar[float] = 0.05
    poll_max: ClassVar[float] = 1.0

    def __init__(
        self,
        bucket: str,
        key: str = DEFAULT_KEY,
        endpoint: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        path_style: bool | None = None,
    ) -> None:
        if not bucket:
            raise StateError("the s3 state backend needs a bucket")
        if not key or key.endswith("/"):
            raise StateError(f"the s3 state backend needs an object key, not {key!r}")
        self.where = S3Location(bucket, endpoint, region, profile, path_style)
        self.bucket = bucket
        self.key = key
        self.lock_key = key + ".lock"
        self.history_prefix = key + ".history/"
        self._client: Any = None
        self._seen: _Seen | None = None
        self._versioned: bool | None = None

    def describe(self) -> str:
        return self.where.url(self.key)

    def __repr__(self) -> str:
        return f"S3Backend({self.describe()!r})"

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self.where.client()
        return self._client

    def _fail(self, exc: BaseException, doing: str, key: str | None = None) -> StateError:
        return storage_error(exc, doing, self.where, key or self.key)

    def check(self) -> None:
        """Reach the bucket once (``modelform init``): a clear error if it cannot be used."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as e:
            if status_of(e) == 404:
                raise StateError(
                    f"{self.describe()}: bucket {self.bucket!r} does not exist (create it first)",
                    self.describe(),
                ) from e
            raise self._fail(e, "reach the bucket") from e

    # -- state -----------------------------------------------------------

    def _get(self, key: str, doing: str, version: str | None = None) -> tuple[bytes, str] | None:
        """The object's bytes and ETag, or None when there is none."""
        extra = {"VersionId": version} if version else {}
        try:
            r = self.client.get_object(Bucket=self.bucket, Key=key, **extra)
            return r["Body"].read(), str(r["ETag"])
        except Exception as e:
            if status_of(e) == 404 and "Bucket" not in _code(e):
                return None
            raise self._fail(e, doing, key) from e

    def _fetch(self) -> tuple[State | None, _Seen]:
        got = self._get(self.key, "read the state")
        if got is None:
            return None, _Seen(None, None)
        data, etag = got
        state = State.loads(data, self.describe())
        return state, _Seen(etag, Stored.of(state))

    def read(self) -> State | None:
        state, self._seen = self._fetch()
        return state

    def write(self, state: State) -> State:
        return self._store(lambda stored: prepare_write(stored, state, self.describe()))

    def push(self, state: State, force: bool = False) -> State:
        return self._store(lambda stored: prepare_exact(stored, state, self.describe(), force))

    def _store(self, prepare: Any) -> State:
        """Write what ``prepare(stored)`` makes, conditional on the version it was made
        against; when someone else wrote in between, prepare again against theirs
        (which refuses an older serial) — a few rounds at most."""
        for _ in range(5):
            seen = self._seen if self._seen is not None else self._fetch()[1]
            prepared = prepare(seen.stored)
            if prepared.text is None:
                self._seen = seen
                return prepared.state  # type: ignore[no-any-return]
            # The kept copy first: once the state is stored nothing may fail, or
            # the caller would take a stored state for an unsaved one. A copy
            # whose state write then fails is overwritten by the next write of
            # that serial.
            self._keep_history(prepared.state, prepared.text)
            cond = {"IfMatch": seen.etag} if seen.etag else {"IfNoneMatch": "*"}
            try:
                r = self.client.put_object(
                    Bucket=self.bucket,
                    Key=self.key,
                    Body=prepared.text,
                    ContentType="application/json",
                    Metadata=_meta(prepared.state),
                    **cond,
                )
            except Exception as e:
                if status_of(e) in (409, 412):  # written meanwhile: look again
                    self._seen = None
                    continue
                self._seen = None
                raise self._fail(e, "write the state") from e
            self._seen = _Seen(str(r["ETag"]), prepared.stored)
            return prepared.state  # type: ignore[no-any-return]
        raise StateConflict(
            f"refusing to write the state ({self.describe()}): it keeps changing under this "
            "write; someone else is writing it (without the lock?)",
            self.describe(),
        )

    # -- history ---------------------------------------------------------

    def versioned(self) -> bool:
        """Whether the bucket keeps every version of the state object itself."""
        if self._versioned is None:
            try:
                status = self.client.get_bucket_versioning(Bucket=self.bucket).get("Status")
            except Exception as e:
                raise self._fail(e, "ask whether the bucket keeps versions") from e
            self._versioned = status == "Enabled"
        return self._versioned

    def _keep_history(self, state: State, text: bytes) -> None:
        if self.versioned():
            return
        key = f"{self.history_prefix}{state.serial:010d}.json"
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=text, ContentType="application/json",
                Metadata=_meta(state),
            )  # fmt: skip
        except Exception as e:
            raise self._fail(e, "keep the state's history", key) from e

    def history(self) -> list[HistoryEntry]:
        """Every kept version, newest first."""
        try:
            if self.versioned():
                return self._versions()
            return self._copies()
        except StateError:
            raise
        except Exception as e:
            raise self._fail(e, "list the state's history") from e

    def _versions(self) -> list[HistoryEntry]:
        out = []
        pages = self.client.get_paginator("list_object_versions")
        for page in pages.paginate(Bucket=self.bucket, Prefix=self.key):
            for v in page.get("Versions", []):
                if v["Key"] != self.key:
                    continue
                head = self.client.head_object(
                    Bucket=self.bucket, Key=self.key, VersionId=v["VersionId"]
                )
                meta = head.get("Metadata", {})
                out.append(_entry(meta, v["LastModified"], f"version {v['VersionId']}",
                                  bool(v.get("IsLatest"))))  # fmt: skip
        return sorted(out, key=lambda e: (e.serial, e.current), reverse=True)

    def _copies(self) -> list[HistoryEntry]:
        out = []
        pages = self.client.get_paginator("list_objects_v2")
        current = self._seen.stored.serial if self._seen and self._seen.stored else None
        if current is None:
            stored = self._fetch()[1].stored
            current = stored.serial if stored else None
        for page in pages.paginate(Bucket=self.bucket, Prefix=self.history_prefix):
            for obj in page.get("Contents", []):
                head = self.client.head_object(Bucket=self.bucket, Key=obj["Key"])
                meta = head.get("Metadata", {})
                entry = _entry(meta, obj["LastModified"], obj["Key"], False)
                if current is not None and entry.serial > current:
                    continue  # kept just before a state write that then failed
                out.append(replace(entry, current=entry.serial == current))
        return sorted(out, key=lambda e: e.serial, reverse=True)

    def read_version(self, ref: str) -> State:
        """The state as kept under ``ref`` (from :meth:`history`)."""
        if ref.startswith("version "):
            got = self._get(self.key, "read an old state", version=ref.split(" ", 1)[1])
        else:
            got = self._get(ref, "read an old state")
        if got is None:
            raise StateError(f"{self.describe()}: no kept version {ref}", self.describe())
        return State.loads(got[0], self.where.url(ref))

    # -- lock ------------------------------------------------------------

    def try_lock(self, info: LockInfo) -> LockInfo | None:
        body = encode(info.to_json())
        for _ in range(20):  # a holder may release between our two steps: try again
            try:
                self.client.put_object(
                    Bucket=self.bucket, Key=self.lock_key, Body=body,
                    ContentType="application/json", IfNoneMatch="*",
                )  # fmt: skip
                return None
            except Exception as e:
                if status_of(e) not in (409, 412):
                    raise LockError(
                        str(self._fail(e, "create the lock", self.lock_key)), self.describe()
                    ) from e
            holder = self.lock_info()
            if holder is not None:
                return holder
        raise LockError(f"{self.where.url(self.lock_key)}: the lock keeps appearing and vanishing")

    def _lock_object(self) -> tuple[LockInfo, str] | None:
        got = self._get(self.lock_key, "read the lock")
        if got is None:
            return None
        raw, etag = got
        source = self.where.url(self.lock_key)
        try:
            return LockInfo.from_json(json.loads(raw), source), etag
        except ValueError as e:
            raise LockError(
                f"{source}: the lock is unreadable ({e}); if no modelform is running, delete it",
                source,
            ) from None

    def lock_info(self) -> LockInfo | None:
        found = self._lock_object()
        return found[0] if found else None

    def unlock(self, lock_id: str) -> None:
        found = self._lock_object()
        where = self.where.url(self.lock_key)
        if found is None:
            raise LockError(
                f"{where}: the state is not locked (lock id {lock_id} was already released)",
                where,
            )
        holder, etag = found
        if holder.id != lock_id:
            raise LockError(
                f"{where}: lock id {lock_id} is not the current lock; it is held by "
                f"{holder.describe()}",
                where,
                holder=holder,
            )
        try:
            # If-Match: where the server honours it, a lock taken meanwhile survives.
            self.client.delete_object(Bucket=self.bucket, Key=self.lock_key, IfMatch=etag)
        except Exception as e:
            if status_of(e) == 412:
                raise LockError(f"{where}: the lock changed while releasing it", where) from e
            raise LockError(str(self._fail(e, "release the lock", self.lock_key)), where) from e


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    return str(((response or {}).get("Error") or {}).get("Code") or "")


def _meta(state: State) -> dict[str, str]:
    """Object metadata that lets ``state history`` list versions without reading them."""
    return {
        "modelform-serial": str(state.serial),
        "modelform-lineage": state.lineage,
        "modelform-who": f"{current_user()}@{socket.gethostname()}",
        "modelform-written": now_iso(),
    }


def _entry(meta: dict[str, str], modified: Any, ref: str, current: bool) -> HistoryEntry:
    serial = meta.get("modelform-serial", "")
    when = meta.get("modelform-written") or (
        modified.strftime("%Y-%m-%dT%H:%M:%SZ") if hasattr(modified, "strftime") else str(modified)
    )
    return HistoryEntry(
        serial=int(serial) if serial.isdigit() else -1,
        written=when,
        who=meta.get("modelform-who", "unknown"),
        ref=ref,
        current=current,
    )
