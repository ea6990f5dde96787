"""The S3 model store against the real MinIO of scripts/testenv (no mocks).

Requests are counted with a botocore event hook on the store's own client,
so "uploaded once" is what the storage was asked, not what the code meant.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from modelform.engine import modelstore_s3
from modelform.engine.digests import digest_path
from modelform.engine.modelstore import StoreError, open_store
from modelform.engine.modelstore_s3 import S3Store
from modelform.state.s3client import S3Location
from tests.realparts import S3Endpoint


class Requests:
    """Every request the store's client sends: (method, key)."""

    def __init__(self, store: S3Store) -> None:
        self.bucket = store.objects.bucket
        self.seen: list[tuple[str, str]] = []
        store.client.meta.events.register("before-send.s3.*", self._send)

    def _send(self, request: Any, **_: Any) -> None:
        path = urllib.parse.unquote(urllib.parse.urlsplit(request.url).path)
        self.seen.append((request.method, path.removeprefix(f"/{self.bucket}/")))

    def clear(self) -> None:
        self.seen.clear()

    def blob_uploads(self) -> list[str]:
        return [k for m, k in self.seen if m in ("PUT", "POST") and "/_blobs/" in k]

    def blob_downloads(self) -> list[str]:
        return [k for m, k in self.seen if m == "GET" and "/_blobs/" in k]


@pytest.fixture
def s3_env(s3_endpoint: S3Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials as a user gives them (the environment), and a cache of this test's own."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_endpoint.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_endpoint.secret_key)
    monkeypatch.setenv("MODELFORM_CACHE", str(tmp_path / "cache"))


def make_store(endpoint: S3Endpoint, bucket: str) -> S3Store:
    """A store as the project file names it (another one per "machine")."""
    spec = {"kind": "s3", "bucket": bucket, "endpoint": endpoint.url, "region": endpoint.region}
    store = open_store(spec, Path("/nonexistent"))
    assert isinstance(store, S3Store)
    return store


@pytest.fixture
def store(s3_env: None, s3_endpoint: S3Endpoint, s3_bucket: str) -> S3Store:
    return make_store(s3_endpoint, s3_bucket)


def write(path: Path, data: bytes | str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)
    return path


def register(store: S3Store, name: str, version: int, source: Path, **meta: Any) -> Any:
    tags, description = meta.get("tags", {}), meta.get("description", "")
    return store.register(name, version, digest_path(source), source, tags, description)


def attrs(v: Any, source: str = "") -> dict[str, Any]:
    """A model's attributes as state records them."""
    return {"name": v.name, "version": v.version, "digest": v.digest, "source": source}


def test_register_get_versions_names(
    store: S3Store, s3_endpoint: S3Endpoint, tmp_path: Path
) -> None:
    ridge = write(tmp_path / "p" / "ridge.pkl", "ridge-1")
    v1 = register(store, "ridge", 1, ridge, tags={"area": "diabetes"}, description="first")
    write(ridge, "ridge-2")
    v2 = register(store, "ridge", 2, ridge)
    forest = tmp_path / "p" / "forest"
    write(forest / "trees.bin", "trees")
    write(forest / "bin" / "run.sh", "#!/bin/sh\n", 0o755)
    f1 = register(store, "forest", 1, forest)

    assert store.uri("ridge", 2) == "s3:ridge/2"
    assert store.names() == ["forest", "ridge"]  # the blobs' folder is no model
    assert [v.ref for v in store.versions("ridge")] == ["ridge:1", "ridge:2"]
    assert store.next_version("ridge") == 3 and store.next_version("none") == 1
    again = make_store(s3_endpoint, store.objects.bucket)  # another machine: nothing cached
    got = again.get("ridge", 1)
    assert got is not None and got.digest == v1.digest
    assert (got.tags, got.description) == ({"area": "diabetes"}, "first")
    assert again.get("ridge", 3) is None
    found = again.find("ridge", v2.digest)
    assert found is not None and found.version == 2
    assert again.find("forest", f1.digest) is not None

    raw = s3_endpoint.client().get_object(Bucket=store.objects.bucket, Key="models/forest/1.json")
    manifest = json.loads(raw["Body"].read())
    assert manifest["digest"] == f1.digest and manifest["layout"] == "folder"
    assert [(f["path"], f["size"], f["executable"]) for f in manifest["files"]] == [
        ("trees.bin", 5, False),
        ("bin/run.sh", 10, True),
    ]

    store.delete("ridge")
    assert (
        store.names() == ["forest"]
        and make_store(s3_endpoint, store.objects.bucket).get("ridge", 1) is None
    )


def test_each_file_is_uploaded_once(
    store: S3Store, s3_endpoint: S3Endpoint, tmp_path: Path
) -> None:
    folder = tmp_path / "p" / "enc"
    write(folder / "a.bin", "same bytes")
    write(folder / "copy" / "a.bin", "same bytes")  # identical content: one blob
    write(folder / "b.bin", "other bytes")
    seen = Requests(store)
    register(store, "enc", 1, folder)
    assert len(seen.blob_uploads()) == 2, seen.seen

    # The same version again, from another machine: the manifest says it is there.
    other = make_store(s3_endpoint, store.objects.bucket)
    seen2 = Requests(other)
    register(other, "enc", 1, folder)
    assert seen2.seen == [("GET", "models/enc/1.json")]

    # Another model whose file has bytes already stored: HEAD, no upload.
    single = write(tmp_path / "p" / "b-copy.bin", "other bytes")
    seen2.clear()
    register(other, "dec", 1, single)
    assert seen2.blob_uploads() == [], seen2.seen
    assert sorted(m for m, _ in seen2.seen) == ["GET", "HEAD", "PUT"]  # manifest, blob, manifest

    # A new version of the folder uploads only the file that changed.
    write(folder / "b.bin", "changed")
    seen.clear()
    register(store, "enc", 2, folder)
    assert len(seen.blob_uploads()) == 1, seen.seen


def test_a_version_is_written_once(store: S3Store, s3_endpoint: S3Endpoint, tmp_path: Path) -> None:
    f = write(tmp_path / "m.pkl", "one")
    first = register(store, "m", 1, f)
    write(f, "two")
    with pytest.raises(StoreError, match=r"model m:1 already exists .* with another digest"):
        register(make_store(s3_endpoint, store.objects.bucket), "m", 1, f)
    # Two machines registering m:1 at once: the conditional put decides.
    # (Both saw no manifest; the loser's put is refused with If-None-Match.)
    racer = make_store(s3_endpoint, store.objects.bucket)
    files: list[Any] = []
    digest = digest_path(f, files)
    with pytest.raises(StoreError, match="another digest"):
        racer._register("m", 1, digest, f, files, {}, "")
    write(f, "one")
    files = []
    digest = digest_path(f, files)
    same = racer._register("m", 1, digest, f, files, {}, "late")
    assert same.created == store.manifest("m", 1).created  # type: ignore[union-attr]
    assert same.description == first.description == ""
    # The planned digest must be the file's: a file changed since the plan is refused.
    write(f, "three")
    with pytest.raises(StoreError, match="changed since it was planned"):
        store.register("m", 2, digest, f, {}, "")


def test_folder_fetches_exactly_its_version(
    store: S3Store, s3_endpoint: S3Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ridge = write(tmp_path / "p" / "ridge.pkl", "ridge-1")
    v1 = register(store, "ridge", 1, ridge)
    write(ridge, "ridge-2")
    v2 = register(store, "ridge", 2, ridge)
    forest = tmp_path / "p" / "forest"
    write(forest / "trees.bin", "trees")
    write(forest / "bin" / "run.sh", "#!/bin/sh\n", 0o755)
    f1 = register(store, "forest", 1, forest)

    # Another machine: a fresh clone (no source files) and an empty cache.
    monkeypatch.setenv("MODELFORM_CACHE", str(tmp_path / "cache2"))
    clone = tmp_path / "clone"
    clone.mkdir()
    other = make_store(s3_endpoint, store.objects.bucket)
    seen = Requests(other)
    one = other.folder(attrs(v1, "ridge.pkl"), clone)
    two = other.folder(attrs(v2, "ridge.pkl"), clone)
    assert {p.name: p.read_text() for p in one.iterdir()} == {"ridge.pkl": "ridge-1"}
    assert {p.name: p.read_text() for p in two.iterdir()} == {"ridge.pkl": "ridge-2"}
    assert one.is_relative_to(tmp_path / "cache2" / "models")
    assert not os.access(one / "ridge.pkl", os.W_OK) or os.geteuid() == 0
    assert len(seen.blob_downloads()) == 2
    trees = other.folder(attrs(f1, "forest"), clone)
    assert digest_path(trees) == f1.digest  # names, content and the executable bit
    assert os.access(trees / "bin" / "run.sh", os.X_OK)
    assert not [p for p in trees.parent.iterdir() if p.name.startswith(".tmp-")]

    # Cached and complete: used again without a download, even by a new store.
    seen.clear()
    assert other.folder(attrs(v1, "ridge.pkl"), clone) == one
    again = make_store(s3_endpoint, store.objects.bucket)
    seen_again = Requests(again)
    assert again.folder(attrs(v1, "ridge.pkl"), clone) == one
    assert seen.seen == [] and seen_again.blob_downloads() == []

    # The same bytes under another file name are another folder.
    renamed = write(tmp_path / "p" / "other.pkl", "ridge-1")
    o1 = register(store, "other", 1, renamed)
    assert o1.digest == v1.digest
    assert [p.name for p in other.folder(attrs(o1), clone).iterdir()] == ["other.pkl"]

    # The state records another digest than the store holds: refused.
    wrong = {**attrs(v1), "digest": v2.digest}
    with pytest.raises(StoreError, match=r"has digest .* but the state records"):
        other.folder(wrong, clone)


def test_a_version_the_store_lacks_is_registered_from_the_file(
    store: S3Store, tmp_path: Path
) -> None:
    project = tmp_path / "p"
    model = write(project / "m" / "ridge.pkl", "ridge-bytes")
    digest = digest_path(model)
    state = {"name": "ridge", "version": 3, "digest": digest, "source": "m/ridge.pkl"}
    got = store.folder(state, project)
    assert (got / "ridge.pkl").read_text() == "ridge-bytes"
    assert [v.ref for v in store.versions("ridge")] == ["ridge:3"]
    write(model, "changed")
    gone = {**state, "version": 4}
    with pytest.raises(StoreError, match=r"s3:ridge/4|no longer has its content"):
        store.folder(gone, project)


def test_a_damaged_file_is_refused_then_repaired_from_the_source(
    store: S3Store, s3_endpoint: S3Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "p"
    model = write(project / "ridge.pkl", "ridge-bytes")
    v = register(store, "ridge", 1, model)
    blob = f"models/_blobs/sha256/{v.digest.split(':')[1]}"
    raw = s3_endpoint.client()
    raw.put_object(Bucket=store.objects.bucket, Key=blob, Body=b"ridge-bytez")  # same size
    clone = tmp_path / "clone"
    clone.mkdir()
    with pytest.raises(StoreError) as e:
        store.folder(attrs(v, "ridge.pkl"), clone)
    msg = str(e.value)
    assert "\n" not in msg
    assert "model ridge:1: file ridge.pkl is damaged in the store" in msg
    assert f"s3://{store.objects.bucket}/{blob}" in msg and "not the recorded" in msg
    cache = tmp_path / "cache" / "models"
    assert [p for p in cache.iterdir()] == []  # nothing half-made in the cache

    raw.delete_object(Bucket=store.objects.bucket, Key=blob)
    with pytest.raises(StoreError, match="ridge.pkl is damaged in the store .*it is missing"):
        store.folder(attrs(v, "ridge.pkl"), clone)

    # Where the model's file still has the content, the blob is put back.
    got = store.folder(attrs(v, "ridge.pkl"), project)
    assert (got / "ridge.pkl").read_text() == "ridge-bytes"
    body = raw.get_object(Bucket=store.objects.bucket, Key=blob)["Body"].read()
    assert body == b"ridge-bytes"


def test_a_damaged_manifest_is_refused(store: S3Store, s3_endpoint: S3Endpoint) -> None:
    s3_endpoint.client().put_object(
        Bucket=store.objects.bucket, Key="models/ridge/1.json", Body=b'{"format": 1}'
    )
    with pytest.raises(StoreError, match=r"models/ridge/1.json.*not a valid model version"):
        store.get("ridge", 1)


def test_large_files_go_up_in_parts(
    store: S3Store, s3_endpoint: S3Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(modelstore_s3, "MULTIPART_THRESHOLD", 1024 * 1024)
    monkeypatch.setattr(modelstore_s3, "MULTIPART_CHUNK", 5 * 1024 * 1024)
    big = write(tmp_path / "p" / "big.bin", os.urandom(6 * 1024 * 1024 + 17))
    seen = Requests(store)
    v = register(store, "big", 1, big)
    assert any(m == "POST" for m, _ in seen.seen), seen.seen  # a multipart upload
    monkeypatch.setenv("MODELFORM_CACHE", str(tmp_path / "cache2"))
    got = make_store(s3_endpoint, store.objects.bucket).folder(attrs(v), tmp_path / "nowhere")
    assert (got / "big.bin").read_bytes() == big.read_bytes()


def _one_line_error(store: S3Store) -> str:
    with pytest.raises(StoreError) as e:
        store.names()
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def test_errors_name_the_store(
    s3_env: None, s3_endpoint: S3Endpoint, s3_bucket: str, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:  # fmt: skip
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    down = S3Store(S3Location("b", endpoint=f"http://127.0.0.1:{port}"))
    msg = _one_line_error(down)
    assert msg.startswith(f"s3://b/models/ at http://127.0.0.1:{port}: cannot list the models")
    assert "cannot reach" in msg

    missing = make_store(s3_endpoint, s3_bucket + "-none")
    assert f"bucket '{s3_bucket}-none' does not exist" in _one_line_error(missing)

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    msg = _one_line_error(make_store(s3_endpoint, s3_bucket))
    assert msg.startswith(f"s3://{s3_bucket}/models/") and "no S3 credentials found" in msg
