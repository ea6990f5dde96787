"""Small file helpers of the edge hub: atomic JSON documents and append-only JSON lines.

A JSON document (modules.json, twins.json, status.json) is written to a
temporary file in the same folder and renamed over the old one, so a
reader sees the old or the new document, never half of one. A journal
line is one ``os.write`` on an ``O_APPEND`` descriptor: it survives the
hub process dying right after (the kernel has it), not a power cut (no
fsync per message: that would cost more than the whole route).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson


def write_json(path: Path, document: Any, mode: int = 0o644) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def read_json(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


class JsonLines:
    """An append-only file of JSON lines (one ``write`` per line)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def append(self, record: Any) -> None:
        self.write(orjson.dumps(record) + b"\n")

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_lines(path: Path) -> Iterator[Any]:
    """The records of a JSON-lines file; a torn last line (a crash mid-write) is skipped."""
    with contextlib.suppress(FileNotFoundError), path.open("rb") as handle:
        for line in handle:
            if not line.endswith(b"\n"):
                return
            with contextlib.suppress(orjson.JSONDecodeError):
                yield orjson.loads(line)
