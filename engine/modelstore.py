"""The local model store: every registered version of every model.

Layout under the project's working folder::

    .modelform/models/<name>/<version>/<files...>
    .modelform/models/<name>/<version>.json      # digest, tags, description, created

A version is a whole number that grows by one each time the model's content
digest is new; a digest seen before keeps its version. Versions are never
rewritten, so a service pinned to ``ridge:2`` serves exactly those bytes.
Registration copies into a temporary folder and renames it into place, so
a crash leaves either no version or a whole one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    digest: str
    path: Path
    tags: dict[str, str]
    description: str
    created: float

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


def model_folder(work_dir: Path, attrs: dict[str, Any]) -> Path:
    """The folder of a model version, from the model's planned attributes
    (``path`` is relative to the project's working folder)."""
    return Path(work_dir) / str(attrs["path"])


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _meta_path(self, name: str, version: int) -> Path:
        return self.root / name / f"{version}.json"

    def versions(self, name: str) -> list[ModelVersion]:
        folder = self.root / name
        out = []
        if folder.is_dir():
            for meta in folder.glob("*.json"):
                if meta.stem.isdigit() and (folder / meta.stem).is_dir():
                    out.append(self._read(name, int(meta.stem)))
        return sorted(out, key=lambda v: v.version)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())

    def _read(self, name: str, version: int) -> ModelVersion:
        data: dict[str, Any] = json.loads(self._meta_path(name, version).read_text())
        return ModelVersion(
            name=name,
            version=version,
            digest=data["digest"],
            path=self.root / name / str(version),
            tags=data.get("tags", {}),
            description=data.get("description", ""),
            created=data.get("created", 0.0),
        )

    def get(self, name: str, version: int) -> ModelVersion | None:
        if self._meta_path(name, version).is_file() and (self.root / name / str(version)).is_dir():
            return self._read(name, version)
        return None

    def find(self, name: str, digest: str) -> ModelVersion | None:
        for v in self.versions(name):
            if v.digest == digest:
                return v
        return None

    def next_version(self, name: str, at_least: int = 1) -> int:
        existing = [v.version for v in self.versions(name)]
        return max([at_least - 1, *existing]) + 1

    def register(
        self,
        name: str,
        version: int,
        digest: str,
        source: Path,
        tags: dict[str, str],
        description: str,
    ) -> ModelVersion:
        """Copy ``source`` (file or folder) in as ``name:version``; idempotent."""
        found = self.get(name, version)
        if found is not None:
            if found.digest != digest:
                raise ValueError(f"model {name}:{version} already exists with another digest")
            return found
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=folder))
        try:
            if source.is_dir():
                shutil.copytree(source, tmp, dirs_exist_ok=True)
            else:
                shutil.copy2(source, tmp / source.name)
            final = folder / str(version)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        meta = {"digest": digest, "tags": tags, "description": description, "created": time.time()}
        tmp_meta = self._meta_path(name, version).with_suffix(".json.tmp")
        tmp_meta.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        os.replace(tmp_meta, self._meta_path(name, version))
        found = self.get(name, version)
        assert found is not None
        return found
