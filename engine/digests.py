"""Content digests of files, folders and JSON values.

A digest is ``sha256:<hex>``. A folder's digest covers every file's
relative path, executable bit and content, in sorted order, so it does not
depend on timestamps or on the order the file system lists entries.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

_SKIP_DIRS = {"__pycache__", ".git", ".modelform", ".pytest_cache", ".venv"}


def digest_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_json(value: Any) -> str:
    return digest_bytes(json.dumps(value, sort_keys=True, separators=(",", ":")).encode())


def _file_into(h: Any, path: Path) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)


def digest_path(path: Path) -> str:
    """Digest of a file's content, or of a folder's tree."""
    h = hashlib.sha256()
    if path.is_file():
        _file_into(h, path)
        return "sha256:" + h.hexdigest()
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(files):
            if name.endswith(".pyc"):
                continue
            full = Path(root, name)
            rel = full.relative_to(path).as_posix()
            h.update(rel.encode() + b"\0")
            h.update(b"x" if os.access(full, os.X_OK) else b"-")
            _file_into(h, full)
            h.update(b"\0")
    return "sha256:" + h.hexdigest()


def short(digest: str, n: int = 12) -> str:
    return digest.split(":", 1)[-1][:n]
