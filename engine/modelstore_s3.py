"""The S3 model store: model versions in S3-compatible storage (AWS S3,
MinIO, …), shared by every machine that deploys the project.

``model_store: {kind: s3, bucket: B, prefix: models/, endpoint: URL, region: R}``.
Layout under the prefix (default ``models/``)::

    <prefix>_blobs/sha256/<hex>       each file's bytes, stored once, named by their SHA-256
    <prefix><name>/<version>.json     a version's manifest (modelform.engine.modelmanifest)

**Content-addressed.** Registering a version uploads only the files whose
SHA-256 is not stored yet (one HEAD per distinct file), whichever model or
version they came with; an upload carries its SHA-256
(``x-amz-checksum-sha256``), so the storage refuses bytes other than those
hashed. Files above :data:`MULTIPART_THRESHOLD` go up in parts and are
hashed again afterwards. Model names are DNS labels, so ``_blobs`` is never
a model's folder.

**Written once.** A manifest is put with ``If-None-Match: *``: two
registrations of one version cannot silently differ. The same digest again
is a no-op; another digest is an error.

**Exactly the recorded version.** :meth:`S3Store.folder` fetches the
version's files into this machine's cache (:mod:`modelform.engine.modelcache`),
each checked against its SHA-256 and the whole against the model's digest;
a cached folder is reused without downloads. A version the store lacks is
registered again from the project's file when that still has the recorded
digest, as with the local store; so is a damaged file of it.

Deleting a model (``destroy``) removes its manifests; files stay, since
other versions and models may share them. Credentials come from the
environment (:mod:`modelform.state.s3client`); every failure is a one-line
:class:`StoreError` naming the ``s3://`` URL.
"""

from __future__ import annotations

import base64
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

from modelform.engine import modelcache
from modelform.engine.digests import FileDigest, digest_path, short
from modelform.engine.modelmanifest import Manifest
from modelform.engine.modelstore import ModelStore, ModelVersion, StoreError
from modelform.engine.s3objects import CHECKSUM, EXISTS, Objects
from modelform.state.s3client import S3Location

DEFAULT_PREFIX = "models/"
BLOBS = "_blobs/sha256/"
#: Files larger than this are uploaded in parts of MULTIPART_CHUNK bytes.
MULTIPART_THRESHOLD = 256 * 1024 * 1024
MULTIPART_CHUNK = 64 * 1024 * 1024
#: Requests made at once (distinct files to check and upload, manifests to read).
THREADS = 8
#: The options of ``model_store:`` this kind takes (``path`` is the local
#: kind's, filled in by the schema's default, and ignored).
OPTIONS = ("kind", "bucket", "prefix", "endpoint", "region", "profile", "path_style")

_MANIFEST_KEY = re.compile(r"^([0-9]+)\.json$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _prefix(value: str) -> str:
    value = value.strip("/")
    return f"{value}/" if value else ""


class S3Store(ModelStore):
    """Model versions in a bucket: files by SHA-256, a manifest per version."""

    scheme = "s3"

    def __init__(self, location: S3Location, prefix: str = DEFAULT_PREFIX) -> None:
        self.objects = Objects(location)
        self.prefix = _prefix(prefix)
        #: Manifests are never changed once written: each is read once.
        self._manifests: dict[tuple[str, int], Manifest] = {}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> S3Store:
        unknown = sorted(set(spec) - {*OPTIONS, "path"})
        if unknown:
            raise StoreError(f"model_store: kind s3 takes no option {unknown[0]!r}")
        bucket = spec.get("bucket")
        if not isinstance(bucket, str) or not bucket:
            raise StoreError("model_store: kind s3 needs a bucket")
        location = S3Location(
            bucket=bucket,
            endpoint=spec.get("endpoint"),
            region=spec.get("region"),
            profile=spec.get("profile"),
            path_style=spec.get("path_style"),
        )
        return cls(location, str(spec.get("prefix", DEFAULT_PREFIX)))

    @property
    def client(self) -> Any:
        """The boto3 client (made on first use)."""
        return self.objects.client

    def url(self, key: str) -> str:
        return self.objects.url(key)

    def manifest_key(self, name: str, version: int) -> str:
        return f"{self.prefix}{name}/{version}.json"

    def blob_key(self, sha256: str) -> str:
        return f"{self.prefix}{BLOBS}{sha256}"

    # -- reading --------------------------------------------------------------
    def manifest(self, name: str, version: int, fresh: bool = False) -> Manifest | None:
        if not fresh and (name, version) in self._manifests:
            return self._manifests[(name, version)]
        key = self.manifest_key(name, version)
        raw = self.objects.get(key, f"read model {name}:{version}")
        if raw is None:
            return None
        m = Manifest.from_bytes(raw, self.url(key))
        if (m.name, m.version) != (name, version):
            raise StoreError(f"{self.url(key)}: the manifest is of {m.ref}, not {name}:{version}")
        self._manifests[(name, version)] = m
        return m

    def _version(self, m: Manifest) -> ModelVersion:
        return ModelVersion(
            name=m.name,
            version=m.version,
            digest=m.digest,
            path=modelcache.path_for(m.files),
            tags=dict(m.tags),
            description=m.description,
            created=m.created,
        )

    def get(self, name: str, version: int) -> ModelVersion | None:
        m = self.manifest(name, version)
        return None if m is None else self._version(m)

    def _numbers(self, name: str) -> list[int]:
        folder = f"{self.prefix}{name}/"
        keys, _ = self.objects.list(folder, f"list the versions of model {name}")
        found = (_MANIFEST_KEY.match(k[len(folder) :]) for k in keys)
        return sorted(int(m.group(1)) for m in found if m)

    def versions(self, name: str) -> list[ModelVersion]:
        numbers = self._numbers(name)
        if len([n for n in numbers if (name, n) not in self._manifests]) > 1:
            with ThreadPoolExecutor(THREADS) as pool:
                manifests = list(pool.map(lambda n: self.manifest(name, n), numbers))
        else:
            manifests = [self.manifest(name, n) for n in numbers]
        return [self._version(m) for m in manifests if m is not None]

    def names(self) -> list[str]:
        _, prefixes = self.objects.list(self.prefix, "list the models", "/")
        names = (p[len(self.prefix) :].rstrip("/") for p in prefixes)
        return sorted(n for n in names if _NAME.match(n))

    # -- writing --------------------------------------------------------------
    def register(
        self,
        name: str,
        version: int,
        digest: str,
        source: Path,
        tags: dict[str, str],
        description: str,
    ) -> ModelVersion:
        """Upload ``source`` (file or folder) as ``name:version``: only the files
        the store lacks, then the manifest; idempotent for the same digest."""
        found = self.manifest(name, version)
        if found is not None:
            return self._version(self._same(found, digest))
        if not source.exists():
            raise StoreError(f"model {name}:{version}: {source} does not exist")
        files: list[FileDigest] = []
        got = digest_path(source, files)
        if got != digest:
            raise StoreError(
                f"model {name}:{version}: {source} changed since it was planned (digest "
                f"{short(got)}, planned {short(digest)}): run modelform apply again"
            )
        m = self._register(name, version, digest, source, files, tags, description)
        return self._version(m)

    def _register(
        self, name: str, version: int, digest: str, source: Path, files: list[FileDigest],
        tags: dict[str, str], description: str,
    ) -> Manifest:  # fmt: skip
        layout = "file" if source.is_file() else "folder"
        self._upload_missing(files, source, layout)
        m = Manifest(name, version, digest, layout, tuple(files), tags, description, time.time())
        key = self.manifest_key(name, version)
        doing = f"register model {m.ref}"
        json_type = {"ContentType": "application/json"}
        if self.objects.put(key, m.to_bytes(), doing, *EXISTS, IfNoneMatch="*", **json_type):
            other = self.manifest(name, version, fresh=True)  # written by someone else
            if other is None:
                raise StoreError(f"{self.url(key)}: another registration of {m.ref} is under way")
            return self._same(other, digest)
        self._manifests[(name, version)] = m
        return m

    def _same(self, found: Manifest, digest: str) -> Manifest:
        if found.digest != digest:
            key = self.manifest_key(found.name, found.version)
            raise StoreError(
                f"model {found.ref} already exists in the store ({self.url(key)}) with another "
                f"digest ({short(found.digest)}, not {short(digest)})"
            )
        return found

    def _upload_missing(self, files: list[FileDigest], source: Path, layout: str) -> None:
        def one(f: FileDigest) -> None:
            if not self.objects.exists(self.blob_key(f.sha256), "look for a model file"):
                self.upload(f, _file_of(source, layout, f))

        distinct = {f.sha256: f for f in files}
        with ThreadPoolExecutor(THREADS) as pool:
            for done in [pool.submit(one, f) for f in distinct.values()]:
                done.result()

    def upload(self, f: FileDigest, full: Path, overwrite: bool = False) -> None:
        """Store ``full`` as the blob of ``f``: its SHA-256 checked by the storage,
        or, for a file sent in parts, by hashing the file again afterwards."""
        key, doing = self.blob_key(f.sha256), f"upload {full}"
        changed = StoreError(f"{full} changed while it was uploaded: run modelform apply again")
        if f.size > MULTIPART_THRESHOLD:
            self.objects.upload_file(
                key, str(full), doing,
                multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_CHUNK,
            )  # fmt: skip
            if digest_path(full) != f"sha256:{f.sha256}":
                self.objects.delete(key, "remove a changed upload")
                raise changed
            return
        checksum = base64.b64encode(bytes.fromhex(f.sha256)).decode()
        condition = {} if overwrite else {"IfNoneMatch": "*"}
        with open(full, "rb") as body:
            refused = self.objects.put(
                key, body, doing, *CHECKSUM, *EXISTS,
                ContentLength=f.size, ChecksumSHA256=checksum, **condition,
            )  # fmt: skip
        if refused in CHECKSUM:
            raise changed

    def delete(self, name: str) -> None:
        """Forget every version of ``name`` (its manifests; files stay, shared)."""
        for n in self._numbers(name):
            self.objects.delete(self.manifest_key(name, n), f"delete model {name}:{n}")
        for ref in [r for r in self._manifests if r[0] == name]:
            del self._manifests[ref]

    # -- files for a target -------------------------------------------------------
    def folder(self, attrs: dict[str, Any], project_dir: Path) -> Path:
        """The cached, verified files of exactly the version ``attrs`` records.
        A version the store lacks, or a damaged file of it, is registered
        again from the project's file when that still has the digest."""
        name, version, digest = str(attrs["name"]), int(attrs["version"]), str(attrs["digest"])
        ref, key = f"{name}:{version}", self.manifest_key(name, version)
        source = project_dir / str(attrs["source"]) if attrs.get("source") else None
        files: list[FileDigest] = []
        found = self.manifest(name, version)
        if found is None:
            if source is None or not source.exists() or digest_path(source, files) != digest:
                raise StoreError(
                    f"model {ref} is not in the model store ({self.url(key)}) and "
                    f"{attrs.get('source')} no longer has its content: run modelform apply "
                    "to register the current file"
                )
            tags, description = dict(attrs.get("tags") or {}), str(attrs.get("description") or "")
            m = self._register(name, version, digest, source, files, tags, description)
            local = modelcache.copy_from(source, m.layout)
            return modelcache.materialize(digest, m.layout, m.files, local, f"model {ref}")
        if found.digest != digest:
            raise StoreError(
                f"model {ref} in the store ({self.url(key)}) has digest {short(found.digest)}, "
                f"but the state records {short(digest)}: the store was changed outside modelform"
            )
        try:
            return modelcache.materialize(digest, found.layout, found.files, self.fetch_blob, ref)
        except modelcache.DamagedFile as e:
            blob = self.url(self.blob_key(e.file.sha256))
            if source is None or not source.exists() or digest_path(source, files) != digest:
                raise StoreError(
                    f"model {ref}: file {e.file.path} is damaged in the store ({blob}): {e.why}; "
                    f"to repair it, give {attrs.get('source')} this version's content again "
                    "and run the command again"
                ) from None
        for f in {f.sha256: f for f in files}.values():  # repair from the source
            self.upload(f, _file_of(source, found.layout, f), overwrite=True)
        return modelcache.materialize(digest, found.layout, found.files, self.fetch_blob, ref)

    def fetch_blob(self, f: FileDigest, out: BinaryIO) -> None:
        """Write the stored bytes of ``f`` to ``out`` (the caller checks them)."""
        key = self.blob_key(f.sha256)
        if not self.objects.stream(key, f"fetch model file {f.path}", out):
            raise modelcache.DamagedFile(self.url(key), f, "it is missing")


def _file_of(source: Path, layout: str, f: FileDigest) -> Path:
    return source if layout == "file" else source / modelcache.safe_relative(f.path)
