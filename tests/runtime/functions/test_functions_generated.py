"""An app made by modelform's packager (the quickstart's diabetes model and score.py, blob
trigger) runs in the host on MinIO: a request blob gets its predictions under the output
name, and the same app answers over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from functions_harness import HostFactory
from storage_kit import S3Kit

from modelform.runtime.functions.appdigest import app_digest

pytestmark = [pytest.mark.slow, pytest.mark.s3, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[3]
QUICKSTART = REPO / "examples" / "quickstart"
ROW = [0.038, 0.05, 0.061, 0.021, -0.044, -0.034, -0.043, -0.002, 0.019, -0.017]


def test_a_packaged_app_scores_blobs_and_http(
    s3_endpoint: Any, s3_bucket: str, tmp_path: Path, hosts: HostFactory
) -> None:
    from modelform.providers.funcapp_package import AppSpec, write_app

    model = tmp_path / "ridge.pkl"
    subprocess.run(
        [sys.executable, str(QUICKSTART / "train.py"), "--out", str(model)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    score = QUICKSTART / "src" / "score.py"
    spec = AppSpec(
        service="diabetes-fn",
        entry_script=score,
        code_dir=score.parent,
        trigger={
            "kind": "blob",
            "bucket": s3_bucket,
            "input": "input/{blobname}.json",
            "output": "output/{blobname}_out.json",
        },
        model_files=(("ridge.pkl", model),),
        pip=("scikit-learn", "numpy", "joblib"),
        python="3.11",
        env={"OMP_NUM_THREADS": "1"},
        models=(("ridge", 1, "sha256:" + "0" * 64),),
    )
    app_dir = tmp_path / "app"
    digest = write_app(spec, app_dir)
    assert digest == app_digest(app_dir)

    import joblib
    import numpy as np

    expected = [float(x) for x in joblib.load(model).predict(np.array([ROW]))]
    kit = S3Kit(s3_endpoint, s3_bucket)
    host_id = f"t-{uuid.uuid4().hex[:10]}"
    host = hosts.start(app_dir, kit.env, "--host-id", host_id)
    try:
        status = host.status()
        assert status["app_digest"] == digest
        assert sorted(status["functions"]) == ["diabetes_fn", "diabetes_fn_http"]
        kit.put("input/patient-1.json", json.dumps({"data": [ROW]}).encode())
        deadline = time.monotonic() + 30
        while "output/patient-1_out.json" not in kit.listing("output/"):
            assert time.monotonic() < deadline, host.log()[-4000:]
            time.sleep(0.1)
        assert json.loads(kit.get("output/patient-1_out.json")) == pytest.approx(expected)
        answer = host.post("/api/score", json={"data": [ROW]})
        assert answer.status_code == 200, answer.text
        assert answer.json() == pytest.approx(expected)
        counts = host.status()["counts"]
        assert counts["diabetes_fn"] == {"invocations": 1, "failures": 0, "poisoned": 0}
        assert counts["diabetes_fn_http"]["invocations"] == 1
    finally:
        kit.cleanup(host_id, "diabetes_fn")
