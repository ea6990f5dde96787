"""The identity of a packaged function app: one digest over its files.

``app_digest(path)`` hashes every regular file under ``path`` in the
order of their relative POSIX paths (sorted as strings), each as its
path, a NUL, its size, a NUL and its bytes, so moving bytes from one
file to the next or renaming a file changes the digest. Folders, file
modes and times are not part of it; ``__pycache__`` folders and ``.pyc``
files are skipped (importing the app writes them). Symbolic links are
followed. The packager (providers) and the local host (``/admin/host/
status``) both call it, so the digest the plan shows is the one the host
serves.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_CHUNK = 1 << 20


def app_files(path: Path | str) -> list[str]:
    """The relative POSIX paths the digest covers, sorted."""
    root = Path(path)
    found: list[str] = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if name.endswith(".pyc"):
                continue
            full = Path(folder) / name
            if full.is_file():
                found.append(full.relative_to(root).as_posix())
    return sorted(found)


def app_digest(path: Path | str) -> str:
    """``"sha256:<hex>"`` over the sorted relative paths and contents of the files in ``path``."""
    root = Path(path)
    digest = hashlib.sha256()
    for relative in app_files(root):
        full = root / relative
        digest.update(relative.encode("utf-8") + b"\0" + str(full.stat().st_size).encode() + b"\0")
        with full.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()
