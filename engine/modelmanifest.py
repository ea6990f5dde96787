"""A model version's manifest: what a remote model store records per version.

One JSON object per version (``<prefix><name>/<version>.json`` in the S3
store): the model's digest (:func:`modelform.engine.digests.digest_path` of
its file or folder), whether it was a single file or a folder, every file
with its SHA-256, size and executable bit (the files' bytes are stored
apart, once each, by SHA-256), and the version's tags, description and
creation time. A manifest is written once and never changed.

Reading is strict: a manifest that is not this shape, or of a newer format,
is a :class:`StoreError` naming where it was read, never half-used.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from modelform.engine.digests import FileDigest
from modelform.engine.modelstore import StoreError

FORMAT = 1
_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Manifest:
    name: str
    version: int
    digest: str
    #: ``file`` (the version's folder holds the one file, by its name) or ``folder``.
    layout: str
    files: tuple[FileDigest, ...]
    tags: dict[str, str]
    description: str
    created: float

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def to_bytes(self) -> bytes:
        data = {
            "format": FORMAT,
            "name": self.name,
            "version": self.version,
            "digest": self.digest,
            "layout": self.layout,
            "files": [
                {"path": f.path, "sha256": f.sha256, "size": f.size, "executable": f.executable}
                for f in self.files
            ],
            "tags": self.tags,
            "description": self.description,
            "created": self.created,
        }
        return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()

    @classmethod
    def from_bytes(cls, raw: bytes, where: str) -> Manifest:
        """Parse and check a stored manifest; StoreError naming ``where``."""
        try:
            data = json.loads(raw)
            fmt = data["format"]
            if not isinstance(fmt, int) or fmt > FORMAT:
                raise StoreError(
                    f"{where}: model version manifest format {fmt} is newer than this "
                    f"modelform reads ({FORMAT}): upgrade modelform"
                )
            files = tuple(_file(f) for f in data["files"])
            m = cls(
                name=_typed(data["name"], str),
                version=_typed(data["version"], int),
                digest=_typed(data["digest"], str),
                layout=_typed(data["layout"], str),
                files=files,
                tags={str(k): str(v) for k, v in _typed(data["tags"], dict).items()},
                description=_typed(data["description"], str),
                created=float(_typed(data["created"], (int, float))),
            )
        except StoreError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise StoreError(f"{where}: not a valid model version manifest ({e})") from None
        if m.layout not in ("file", "folder") or (m.layout == "file" and len(files) != 1):
            raise StoreError(f"{where}: not a valid model version manifest (layout {m.layout!r})")
        return m


def _typed(value: Any, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"unexpected {type(value).__name__} value {value!r}")
    return value


def _file(row: dict[str, Any]) -> FileDigest:
    sha = _typed(row["sha256"], str)
    if not _HEX.match(sha):
        raise ValueError(f"sha256 {sha!r} is not 64 hex digits")
    executable = row["executable"]
    if not isinstance(executable, bool):
        raise TypeError(f"executable {executable!r} is not true or false")
    return FileDigest(_typed(row["path"], str), sha, _typed(row["size"], int), executable)
