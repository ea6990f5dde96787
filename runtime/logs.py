"""Structured, one-line-per-event logs on stdout.

Every line is one JSON object: ``ts`` (UTC, ISO 8601 with milliseconds),
``level``, ``event``, ``pid`` and the event's own fields. Lines are
written with ``os.write`` on file descriptor 1 so that lines from the
master and from every worker never interleave mid-line (each write is
smaller than ``PIPE_BUF``, or split at line ends).

Request lines are many; :meth:`JsonLog.request` buffers them and writes
the buffer once per event-loop turn (``flush_soon``), so a busy worker
makes one ``write`` for many requests instead of one each. Everything
else is written at once. Not for user ``print()`` output: that goes to
stdout as the script wrote it.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

#: Flush the request buffer once it holds this many bytes (below PIPE_BUF).
_FLUSH_AT = 3500


class JsonLog:
    """Writes JSON lines for one process (master or a worker)."""

    def __init__(self, fd: int = 1, **common: Any) -> None:
        self._fd = fd
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._scheduled = False
        self._schedule: Callable[[Callable[[], None]], Any] | None = None
        self._second = -1
        self._second_text = ""
        self._ms = -1
        self._ms_text = ""
        self._request_prefix = ""
        self.rebind(**common)

    def rebind(self, **common: Any) -> None:
        """Set the fields repeated on every line (after a fork: the new pid)."""
        self._common = {"pid": os.getpid(), **common}
        common_json = orjson.dumps(self._common)[1:-1].decode()
        self._request_prefix = f'","level":"info","event":"request",{common_json},"method":"'

    def use_loop(self, schedule: Callable[[Callable[[], None]], Any] | None) -> None:
        """Batch request lines: ``schedule(flush)`` must call ``flush`` soon (say within
        50 ms, from the event loop). None writes every line at once."""
        self._schedule = schedule

    def timestamp(self) -> str:
        now_ms = int(time.time() * 1000)
        if now_ms != self._ms:
            second = now_ms // 1000
            if second != self._second:
                self._second = second
                self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._ms = now_ms
            self._ms_text = f"{self._second_text}.{now_ms % 1000:03d}Z"
        return self._ms_text

    def _line(self, level: str, event: str, fields: dict[str, Any]) -> bytes:
        record = {"ts": self.timestamp(), "level": level, "event": event, **self._common, **fields}
        try:
            return orjson.dumps(record, default=str) + b"\n"
        except TypeError:
            return orjson.dumps({k: str(v) for k, v in record.items()}) + b"\n"

    def emit(self, level: str, event: str, **fields: Any) -> None:
        """Write one line now (safe from any thread; request lines may follow later)."""
        self._write(self._line(level, event, fields))

    def info(self, event: str, **fields: Any) -> None:
        self.emit("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self.emit("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self.emit("error", event, **fields)

    def request(self, method: str, path: str, status: int, seconds: float, request_id: str) -> None:
        """Log one answered request; buffered, written by the scheduled flush.

        The line is formatted directly (this runs once per request); the
        client-controlled strings are JSON-escaped.
        """
        line = (
            f'{{"ts":"{self.timestamp()}{self._request_prefix}{method}",'
            f'"path":{_json_str(path)},"status":{status},"ms":{seconds * 1000:.3f},'
            f'"request_id":{_json_str(request_id)}}}\n'
        ).encode()
        if self._schedule is None:
            self._write(line)
            return
        self._buffer.append(line)
        self._buffered += len(line)
        if self._buffered >= _FLUSH_AT:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            self._schedule(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not self._buffer:
            return
        data = b"".join(self._buffer)
        self._buffer.clear()
        self._buffered = 0
        self._write(data)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._fd, view)
            except InterruptedError:
                continue
            except OSError:
                return  # stdout closed: nothing useful left to do with a log line
            view = view[written:]


def _json_str(text: str) -> str:
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return '"' + text + '"'
    return orjson.dumps(text).decode()


class ForwardHandler(logging.Handler):
    """Routes stdlib ``logging`` records (uvicorn's, the user's) into a :class:`JsonLog`."""

    def __init__(self, log: JsonLog) -> None:
        super().__init__()
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        fields: dict[str, Any] = {"logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            fields["traceback"] = logging.Formatter().formatException(record.exc_info)
        self._log.emit(record.levelname.lower(), "log", **fields)


def print_traceback(text: str) -> None:
    """Also show a traceback as plain text on stderr, where people look for it."""
    try:
        sys.stderr.write(text if text.endswith("\n") else text + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
