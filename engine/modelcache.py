"""This machine's cache of model versions fetched from a remote model store.

A target gets a model version's files as a local folder. For a remote store
(:mod:`modelform.engine.modelstore_s3`) that folder lives outside the
project, in ``$MODELFORM_CACHE/models/<key>/`` (default
``~/.cache/modelform/models/``), where ``key`` is the SHA-256 of the
version's file list (each file's path, SHA-256, size and executable bit).
The key covers the names, not only the content: a file model's digest is its
bytes alone, and two models with the same bytes under different file names
must not share a folder (a scoring script opens the file by name).

A folder appears whole and verified, or not at all: the files are written
into a temporary folder beside it, each checked against its recorded SHA-256
and size, the whole checked against the model's digest, made read-only, and
only then renamed into place. A folder already there is reused without any
download when every recorded file is present with its size and executable
bit (a cheap check; the content was verified when it was written, and the
files are read-only). A temporary folder left by a killed process of this
host is removed by the next fetch.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from modelform.engine.digests import FileDigest, digest_json, digest_path, short
from modelform.engine.modelstore import StoreError

#: Files fetched at once for a folder model.
FETCH_THREADS = 8

#: Writes one file's bytes (from a store, or a local copy) to the open file.
Fetch = Callable[[FileDigest, BinaryIO], None]


def cache_root() -> Path:
    """``$MODELFORM_CACHE/models`` (default ``~/.cache/modelform/models``)."""
    base = os.environ.get("MODELFORM_CACHE") or str(Path.home() / ".cache" / "modelform")
    return Path(base) / "models"


def layout_key(files: Sequence[FileDigest]) -> str:
    rows = [[f.path, f.sha256, f.size, f.executable] for f in files]
    return digest_json(rows).split(":", 1)[1]


def path_for(files: Sequence[FileDigest]) -> Path:
    """Where the version with these files is (or will be) cached."""
    return cache_root() / layout_key(files)


def safe_relative(rel: str) -> PurePosixPath:
    """A recorded file path as a relative path inside the folder; anything
    that could leave it (absolute, ``..``, empty) is refused."""
    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or any(part in ("", ".", "..") for part in rel.split("/")):
        raise StoreError(f"model file path {rel!r} is not a plain relative path")
    return p


def complete(folder: Path, files: Sequence[FileDigest]) -> bool:
    """Every recorded file is in ``folder`` with its size and executable bit."""
    if not folder.is_dir():
        return False
    for f in files:
        full = folder / safe_relative(f.path)
        try:
            st = full.stat()
        except OSError:
            return False
        if not full.is_file() or st.st_size != f.size or os.access(full, os.X_OK) != f.executable:
            return False
    return True


class _Hashing:
    """A binary file that hashes and counts what is written to it."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.h = hashlib.sha256()
        self.size = 0

    def write(self, data: Any) -> int:
        self.h.update(data)
        self.size += len(data)
        return self.out.write(data)


class DamagedFile(StoreError):
    """A file whose bytes are not the recorded ones (or that is missing)."""

    def __init__(self, where: str, file: FileDigest, why: str) -> None:
        super().__init__(f"{where}: file {file.path}: {why}")
        self.file = file
        self.why = why


def _write_one(tmp: Path, f: FileDigest, fetch: Fetch, where: str) -> None:
    dest = tmp / safe_relative(f.path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as out:
        hashing = _Hashing(out)
        fetch(f, hashing)  # type: ignore[arg-type]
    got = hashing.h.hexdigest()
    if got != f.sha256 or hashing.size != f.size:
        why = (
            f"its content has sha256 {short(got)}… ({hashing.size} bytes), not the "
            f"recorded {short(f.sha256)}… ({f.size} bytes)"
        )
        raise DamagedFile(where, f, why)
    os.chmod(dest, 0o555 if f.executable else 0o444)


def materialize(
    digest: str, layout: str, files: Sequence[FileDigest], fetch: Fetch, where: str
) -> Path:
    """The cached folder of a version: reused when complete, else written
    by ``fetch`` and verified (each file, then ``digest`` — a file model's
    digest is its one file's SHA-256, a folder's is :func:`digest_path`)."""
    final = path_for(files)
    if complete(final, files):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(final.parent)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(), dir=final.parent))
    try:
        if len(files) > 1:
            with ThreadPoolExecutor(min(FETCH_THREADS, len(files))) as pool:
                for done in [pool.submit(_write_one, tmp, f, fetch, where) for f in files]:
                    done.result()
        else:
            for f in files:
                _write_one(tmp, f, fetch, where)
        got = f"sha256:{files[0].sha256}" if layout == "file" and files else digest_path(tmp)
        if got != digest:
            raise StoreError(
                f"{where}: the files do not make the recorded model (digest {short(got)}, "
                f"the version records {short(digest)}); register the version again from its source"
            )
        _put_in_place(tmp, final, files)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _put_in_place(tmp: Path, final: Path, files: Sequence[FileDigest]) -> None:
    try:
        os.rename(tmp, final)
        return
    except OSError:
        if complete(final, files):  # another process put it there meanwhile
            return
    # An incomplete folder (files removed by hand): set it aside, then rename.
    old = Path(tempfile.mkdtemp(prefix=_tmp_prefix(), dir=final.parent))
    os.replace(final, old / "old")
    os.rename(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _tmp_prefix() -> str:
    return f".tmp-{socket.gethostname()}-{os.getpid()}-"


def _remove_leftovers(root: Path) -> None:
    """Temporary folders of processes of this host that no longer run."""
    mine = f".tmp-{socket.gethostname()}-"
    for entry in root.glob(f"{mine}*"):
        pid = entry.name[len(mine) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def copy_from(source: Path, layout: str) -> Fetch:
    """A :data:`Fetch` reading the files from a local source (a fresh registration)."""

    def fetch(f: FileDigest, out: BinaryIO) -> None:
        full = source if layout == "file" else source / safe_relative(f.path)
        with open(full, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)

    return fetch
