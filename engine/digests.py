"""Content digests of files, folders and JSON values.

A digest is ``sha256:<hex>``. A folder's digest covers every file's
relative path, executable bit and content, in sorted order, so it does not
depend on timestamps or on the order the file system lists entries.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SKIP_DIRS = {"__pycache__", ".git", ".modelform", ".pytest_cache", ".venv"}


def digest_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_json(value: Any) -> str:
    return digest_bytes(json.dumps(value, sort_keys=True, separators=(",", ":")).encode())


@dataclass(frozen=True)
class FileDigest:
    """One file a digest covers: its path relative to the folder (for a
    single file, its name), the SHA-256 of its content, size, executable bit."""

    path: str
    sha256: str
    size: int
    executable: bool


def _file_into(h: Any, path: Path, each: Any = None) -> int:
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            if each is not None:
                each.update(chunk)
            size += len(chunk)
    return size


def _one_file(h: Any, full: Path, rel: str, x: bool, files: list[FileDigest] | None) -> None:
    if files is None:
        _file_into(h, full)
        return
    each = hashlib.sha256()
    size = _file_into(h, full, each)
    files.append(FileDigest(rel, each.hexdigest(), size, x))


def digest_path(path: Path, files: list[FileDigest] | None = None) -> str:
    """Digest of a file's content, or of a folder's tree. ``files``, when
    given, receives every file covered, in the order hashed, read once for
    both (the model store's per-file digests)."""
    h = hashlib.sha256()
    if path.is_file():
        x = files is not None and os.access(path, os.X_OK)
        _one_file(h, path, path.name, x, files)
        return "sha256:" + h.hexdigest()
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(names):
            if name.endswith(".pyc"):
                continue
            full = Path(root, name)
            rel = full.relative_to(path).as_posix()
            executable = os.access(full, os.X_OK)
            h.update(rel.encode() + b"\0")
            h.update(b"x" if executable else b"-")
            _one_file(h, full, rel, executable, files)
            h.update(b"\0")
    return "sha256:" + h.hexdigest()


def short(digest: str, n: int = 12) -> str:
    return digest.split(":", 1)[-1][:n]
