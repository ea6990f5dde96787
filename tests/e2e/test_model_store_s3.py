"""A project whose model store is S3 (the real MinIO), through the CLI: apply
registers the model there (nothing in .modelform/models), ``models list/show``
read it, and a fresh clone elsewhere — state file copied, no model store
folder, an empty cache — plans no change and, when its service is made anew,
serves exactly the recorded version fetched from S3."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.e2e.helpers import Project, free_port, our_processes
from tests.realparts import S3Endpoint

SCORE = """
import os

def init():
    pass

def run(raw):
    root = os.environ["AZUREML_MODEL_DIR"]
    found = sorted((f, open(os.path.join(root, f)).read()) for f in os.listdir(root))
    return {"root": root, "files": found}
"""


def _project(root: Path, endpoint: S3Endpoint, bucket: str) -> None:
    (root / "src").mkdir(parents=True)
    (root / "src" / "score.py").write_text(SCORE)
    (root / "m").mkdir()
    (root / "m" / "ridge.pkl").write_text("ridge-bytes")
    (root / "modelform.yaml").write_text(
        f"""project: s3-models
model_store:
  kind: s3
  bucket: {bucket}
  prefix: team/models
  endpoint: {endpoint.url}
  region: {endpoint.region}
models:
  ridge: {{path: m/ridge.pkl, description: the ridge}}
services:
  api:
    models: [ridge]
    entry_script: src/score.py
    port: {free_port()}
"""
    )


def test_s3_store_and_a_fresh_clone(
    tmp_path: Path, s3_endpoint: S3Endpoint, s3_bucket: str
) -> None:
    creds = {
        "AWS_ACCESS_KEY_ID": s3_endpoint.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_endpoint.secret_key,
    }
    root = tmp_path / "p"
    _project(root, s3_endpoint, s3_bucket)
    p = Project(root, {**creds, "MODELFORM_CACHE": str(tmp_path / "cache1")})
    clone_root = tmp_path / "clone"
    clone = Project(clone_root, {**creds, "MODELFORM_CACHE": str(tmp_path / "cache2")})
    try:
        r = p.run("apply", "-auto-approve")
        assert r.code == 0, r.text
        assert not (root / ".modelform" / "models").exists()
        model = p.resources()["model.ridge"]["attributes"]
        assert (model["uri"], model["store"]) == ("s3:ridge/1", "s3")
        keys = [
            o["Key"] for o in s3_endpoint.client().list_objects_v2(Bucket=s3_bucket)["Contents"]
        ]
        assert "team/models/ridge/1.json" in keys
        assert any(k.startswith("team/models/_blobs/sha256/") for k in keys)
        r = p.run("invoke", "api", "--data", "{}")
        assert json.loads(r.out)["files"] == [["ridge.pkl", "ridge-bytes"]], r.text

        r = p.run("models", "list", "--json")
        assert r.code == 0, r.text
        (row,) = json.loads(r.out)["data"]
        assert (row["ref"], row["uri"]) == ("ridge:1", "s3:ridge/1")
        assert row["description"] == "the ridge"
        r = p.run("models", "show", "ridge:1")
        assert r.code == 0 and "uri: s3:ridge/1" in r.out, r.text

        # A fresh clone: the project's files and the state file, nothing else.
        shutil.copytree(root, clone_root, ignore=shutil.ignore_patterns(".modelform"))
        (clone_root / ".modelform").mkdir()
        shutil.copy2(p.state_file, clone.state_file)
        r = clone.run("plan", "-detailed-exitcode")
        assert r.code == 0, r.text
        assert "No changes" in r.out, r.out
        assert not (tmp_path / "cache2").exists()  # planning fetched nothing

        # Made anew there, the service gets exactly ridge:1, fetched from S3.
        r = clone.run("apply", "-auto-approve", "-replace", "service.api")
        assert r.code == 0, r.text
        served = json.loads(clone.run("invoke", "api", "--data", "{}").out)
        assert served["files"] == [["ridge.pkl", "ridge-bytes"]]
        assert Path(served["root"]).is_relative_to(tmp_path / "cache2" / "models")
        assert not (clone_root / ".modelform" / "models").exists()
        r = clone.run("plan", "-detailed-exitcode")
        assert r.code == 0, r.text
    finally:
        if clone_root.exists():
            clone.cleanup()
        p.cleanup()
    assert our_processes(root) == set() and our_processes(clone_root) == set()


def test_a_missing_bucket_is_one_line(tmp_path: Path, s3_endpoint: S3Endpoint) -> None:
    root = tmp_path / "p"
    _project(root, s3_endpoint, "no-such-bucket-here")
    p = Project(
        root,
        {
            "AWS_ACCESS_KEY_ID": s3_endpoint.access_key,
            "AWS_SECRET_ACCESS_KEY": s3_endpoint.secret_key,
        },
    )
    r = p.run("plan")
    assert r.code == 1, r.text
    lines = [line for line in r.err.splitlines() if line.strip()]
    assert len(lines) == 1, r.err
    assert "s3://no-such-bucket-here/team/models/ridge/" in lines[0]
    assert "bucket 'no-such-bucket-here' does not exist" in lines[0]
    r = p.run("models", "list")
    assert r.code == 1 and "s3://no-such-bucket-here/team/models/" in r.err, r.text
