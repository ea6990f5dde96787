"""Where models live: the model-store interface, and the local store.

A store keeps every registered version of every model, immutable once
written. State records a model version by URI (``local:ridge/2``), never by
a path on one machine, so a fresh clone holding the state but not the store
plans no change: the record names the version and its content digest, and
the files are the store's business.

The store is chosen in the project file (``model_store: {kind: local,
path: .modelform/models}``; the default). The local store is this machine's
folder: a version it lacks (a fresh clone, another machine) is not gone —
:meth:`ModelStore.folder` registers it again from the project's source
file when that file still has the recorded digest. The S3 store
(``kind: s3``, :mod:`modelform.engine.modelstore_s3`) keeps versions in a
bucket every machine reaches, content-addressed; see docs/models.md.

Layout of the local store::

    <path>/<name>/<version>/<files...>
    <path>/<name>/<version>.json      # digest, tags, description, created

A version is a whole number that grows by one each time the model's content
digest is new; a digest seen before keeps its version. Registration copies
into a temporary folder and renames it into place, so a crash leaves either
no version or a whole one.
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

from modelform.engine.digests import digest_path
from modelform.engine.provider import ProviderError

#: The store a project uses when it names none.
DEFAULT_STORE = {"kind": "local", "path": ".modelform/models"}


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


class StoreError(ProviderError):
    """A model version that cannot be had, or a store that cannot be reached;
    one line saying what to do. A :class:`ProviderError`, so a provider's
    step fails with this message (not as a plugin bug) and the CLI prints it."""


class ModelStore:
    """The interface every store implements (the local one below)."""

    #: URI scheme of this store's versions (``local``, ``s3``).
    scheme = ""

    def uri(self, name: str, version: int) -> str:
        return f"{self.scheme}:{name}/{version}"

    def versions(self, name: str) -> list[ModelVersion]:
        raise NotImplementedError

    def names(self) -> list[str]:
        raise NotImplementedError

    def get(self, name: str, version: int) -> ModelVersion | None:
        raise NotImplementedError

    def register(
        self, name: str, version: int, digest: str, source: Path, tags: dict[str, str],
        description: str,
    ) -> ModelVersion:  # fmt: skip
        raise NotImplementedError

    def delete(self, name: str) -> None:
        raise NotImplementedError

    def find(self, name: str, digest: str) -> ModelVersion | None:
        for v in self.versions(name):
            if v.digest == digest:
                return v
        return None

    def next_version(self, name: str, at_least: int = 1) -> int:
        existing = [v.version for v in self.versions(name)]
        return max([at_least - 1, *existing]) + 1

    def folder(self, attrs: dict[str, Any], project_dir: Path) -> Path:
        """A local folder holding the files of the model version ``attrs``
        (a model's attributes) describes. A version this store lacks is
        registered again from the project's source file when the file still
        has the recorded digest; otherwise :class:`StoreError`."""
        name, version, digest = str(attrs["name"]), int(attrs["version"]), str(attrs["digest"])
        found = self.get(name, version)
        if found is not None and found.digest == digest:
            return found.path
        source = project_dir / str(attrs.get("source", ""))
        if found is None and source.exists() and digest_path(source) == digest:
            meta = (dict(attrs.get("tags") or {}), str(attrs.get("description") or ""))
            return self.register(name, version, digest, source, *meta).path
        raise StoreError(
            f"model {name}:{version} is not in the model store ({self.uri(name, version)}) and "
            f"{attrs.get('source')} no longer has its content: run modelform apply to register "
            "the current file"
        )


class LocalStore(ModelStore):
    """This machine's folder of model versions."""

    scheme = "local"

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

    def delete(self, name: str) -> None:
        shutil.rmtree(self.root / name, ignore_errors=True)

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
                raise StoreError(f"model {name}:{version} already exists with another digest")
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


def open_store(spec: dict[str, Any] | None, project_dir: Path) -> ModelStore:
    """The store the project file names (``model_store:``); opening one
    reaches nothing yet (a remote store connects on first use)."""
    spec = {**DEFAULT_STORE, **(spec or {})}
    if spec["kind"] == "local":
        return LocalStore(project_dir / str(spec["path"]))
    if spec["kind"] == "s3":
        from modelform.engine.modelstore_s3 import S3Store

        return S3Store.from_spec(spec)
    raise StoreError(f"model store kind {spec['kind']!r} is not available (local, s3)")
