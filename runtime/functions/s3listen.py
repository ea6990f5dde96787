"""MinIO's bucket notification stream, as the blob trigger's fast path for new blobs.

``GET /<bucket>?events=s3:ObjectCreated:*&prefix=…`` (MinIO's
ListenBucketNotification extension; AWS S3 has no such request) answers a
never-ending body of JSON lines, one ``{"Records": [...]}`` per event with
the object's key (URL-encoded) and ETag. ``EventStream`` keeps one such
request open on a thread of its own, hands each created object to
``on_blob`` and reconnects after a failure, calling ``on_connect`` each
time a request goes out (events while no request is open are lost, so the
caller lists then).

What the stream is not: complete or prompt. Events while disconnected are
lost, and the MinIO build here writes the stream through a buffer its
flush does not reach, so records arrive in 4 KB chunks (about three
events each) and the last events of a burst stay in the buffer until more
follow — a lone upload may never be told. The trigger therefore lists
the prefix shortly after the stream goes quiet and every so often (see
``discovery``); the stream only makes most blobs faster to find.

An endpoint without the extension (AWS S3 takes the request for a bucket
listing and answers XML; others answer 400, 405 or 501) ends the stream for
good: ``supported`` turns False and the trigger polls.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from urllib.parse import unquote_plus

from modelform.runtime import logs
from modelform.runtime.functions.s3http import S3Http
from modelform.runtime.functions.stores import BlobEntry, unquote

#: How long a stream may stay silent before it is opened again (MinIO's keep-alive
#: spaces may sit in its buffer, so silence alone does not mean a dead connection).
IDLE_REOPEN_S = 300.0
RETRY_S = (0.5, 1.0, 2.0, 5.0, 10.0)
#: Statuses that mean "this endpoint has no notification stream".
UNSUPPORTED = frozenset({400, 403, 404, 405, 501})


class EventStream:
    def __init__(
        self,
        client: S3Http,
        bucket: str,
        prefix: str,
        on_blob: Callable[[BlobEntry], None],
        on_connect: Callable[[], None],
        log: logs.JsonLog,
        function: str,
    ) -> None:
        self.http = client
        self.bucket = bucket
        self.prefix = prefix
        self.on_blob = on_blob
        self.on_connect = on_connect
        self.log = log
        self.function = function
        self.supported: bool | None = None  # None: not known yet
        self.connected = False
        self.events = 0  # created objects told
        self.connects = 0
        self.last_event = 0.0  # time.monotonic() of the last chunk with an event
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._connection: http.client.HTTPConnection | None = None
        self._thread = threading.Thread(target=self._run, name=f"listen-{function}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.disconnect()
        self._thread.join(5.0)

    def disconnect(self) -> None:
        """Close the open request (the thread opens a new one; the events between are lost)."""
        with self._lock:
            connection = self._connection
        if connection is not None and connection.sock is not None:
            try:
                connection.sock.shutdown(2)  # wakes the reading thread
            except OSError:
                pass

    # ---- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                told = self._listen()
                failures = 0 if told else failures + 1
            except TimeoutError:
                failures = 0  # silent for IDLE_REOPEN_S: open it again, quietly
            except (OSError, http.client.HTTPException, ValueError) as error:
                failures += 1
                if not self._stop.is_set():
                    self.log.warning(
                        "event_stream_lost",
                        function=self.function,
                        error=f"{type(error).__name__}: {error}",
                        message="listing the prefix instead until it is back",
                    )
            finally:
                self.connected = False
                with self._lock:
                    connection, self._connection = self._connection, None
                if connection is not None:
                    connection.close()
            if self.supported is False:
                return
            if failures:
                self._stop.wait(RETRY_S[min(failures - 1, len(RETRY_S) - 1)])

    def _listen(self) -> bool:
        """One request, read until it ends; True if it told of anything."""
        query = {"events": "s3:ObjectCreated:*", "prefix": self.prefix}
        host, target, headers = self.http.prepare("GET", self.bucket, query=query)
        connection = self.http.connect(host, timeout=IDLE_REOPEN_S)
        with self._lock:
            self._connection = connection
        if self._stop.is_set():
            return False
        connection.request("GET", target, headers=headers)
        self.connects += 1
        self.connected = True
        self.on_connect()
        # MinIO sends its headers with the first chunk of events, not before.
        answer = connection.getresponse()
        streaming = "event-stream" in (answer.getheader("Content-Type") or "")
        if answer.status != 200 or not streaming:
            # AWS S3 ignores the unknown ``events`` and answers a plain bucket listing
            answer.read()
            if answer.status in UNSUPPORTED or not streaming:
                self.supported = False
                self.log.info(
                    "no_event_stream",
                    function=self.function,
                    status=answer.status,
                    message="the endpoint has no bucket notification stream: listing only",
                )
            else:
                raise ValueError(f"the event stream answered {answer.status}")
            return False
        self.supported = True
        told = False
        while not self._stop.is_set():
            line = answer.readline()
            if not line:
                return told  # the server ended it
            line = line.strip()
            if not line or not line.startswith(b"{"):
                continue  # keep-alive spaces
            for entry in parse_records(line):
                told = True
                self.events += 1
                self.last_event = time.monotonic()
                self.on_blob(entry)
        return told


def parse_records(line: bytes) -> list[BlobEntry]:
    """The created objects of one ``{"Records": [...]}`` line."""
    try:
        document = json.loads(line)
    except ValueError:
        return []
    found = []
    for record in (document or {}).get("Records") or ():
        obj = ((record or {}).get("s3") or {}).get("object") or {}
        key, etag = obj.get("key"), obj.get("eTag")
        if (
            not key
            or not etag
            or not str(record.get("eventName", "")).startswith("s3:ObjectCreated:")
        ):
            continue
        found.append(BlobEntry(unquote_plus(str(key)), unquote(str(etag)), int(obj.get("size", 0))))
    return found
