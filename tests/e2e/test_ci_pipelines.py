"""examples/ci's pipelines, run as a CI runner would run them: each job in a
clone of its own, its shell steps in order with the variables GitHub Actions
(or GitLab CI) sets, against the real MinIO for the state and the local
target. What a runner provides is played by the test: `actions/checkout` is
a fresh copy of the example, the artifact actions copy the saved plan from
the plan job's folder to the apply job's, and the `pip install` steps are
skipped (modelform is installed in this environment already). The rest —
validate, fmt, plan with its markdown summary and saved plan, show, apply of
that plan in a second clone, the smoke test with `modelform output`, the
nightly drift with its JUnit report — runs exactly as written in the files.
docs/ci.md shows both files whole, and the test checks it does."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.helpers import REPO, free_port, modelform_command, our_processes
from tests.realparts import S3Endpoint

EXAMPLE = REPO / "examples" / "ci"
GITHUB = EXAMPLE / ".github" / "workflows" / "modelform.yml"
GITLAB = EXAMPLE / ".gitlab-ci.yml"
pytestmark = [pytest.mark.s3, pytest.mark.slow]
Done = subprocess.CompletedProcess[str]


def _bin_dir(tmp: Path) -> Path:
    """A folder with `modelform` (this checkout's) and `python` first on PATH."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    cmd = " ".join(f'"{c}"' for c in modelform_command())
    (bin_dir / "modelform").write_text(f'#!/bin/sh\nexec {cmd} "$@"\n')
    (bin_dir / "modelform").chmod(0o755)
    import sys

    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    return bin_dir


class Runner:
    """Jobs of one pipeline: each a clone of the example, steps run by bash."""

    def __init__(self, tmp: Path, env: dict[str, str], port: int, key: str, bucket: str) -> None:
        self.tmp, self.env, self.port, self.key, self.bucket = tmp, env, port, key, bucket
        self.bin = _bin_dir(tmp)

    def clone(self, job: str) -> Path:
        dst = self.tmp / job
        shutil.copytree(EXAMPLE, dst, ignore=shutil.ignore_patterns(".modelform", "models"))
        text = (dst / "modelform.yaml").read_text()
        text = text.replace("key: diabetes/state.json", f"key: {self.key}")
        text = text.replace("bucket: modelform-state", f"bucket: {self.bucket}")
        (dst / "modelform.yaml").write_text(text.replace("default: 8890", f"default: {self.port}"))
        return dst

    def step(
        self, cwd: Path, script: str, extra: dict[str, str]
    ) -> subprocess.CompletedProcess[str]:
        env = {**self.env, **extra, "PATH": f"{self.bin}:{os.environ['PATH']}", "CI": "true"}
        return subprocess.run(["bash", "-e", "-c", script], cwd=cwd, env=env, text=True,
                              capture_output=True, timeout=600)  # fmt: skip


def _github_steps(job: str) -> list[dict[str, Any]]:
    doc = yaml.safe_load(GITHUB.read_text())
    steps: list[dict[str, Any]] = doc["jobs"][job]["steps"]
    return steps


def _run_github_job(r: Runner, job: str, cwd: Path, extra: dict[str, str],
                    artifacts: Path) -> tuple[int, str]:  # fmt: skip
    """The job's steps in order; (exit status of the first failing step or 0, output)."""
    out = ""
    for step in _github_steps(job):
        uses = step.get("uses", "")
        if uses.startswith("actions/checkout"):
            continue  # the clone is the checkout
        if uses.startswith("actions/upload-artifact"):
            shutil.copy(cwd / step["with"]["path"], artifacts / step["with"]["name"])
            continue
        if uses.startswith("actions/download-artifact"):
            shutil.copy(artifacts / step["with"]["name"], cwd / step["with"]["name"])
            continue
        if uses:
            continue  # a reporting action (the JUnit publisher): the test reads the file
        if "pip install" in step["run"]:
            continue
        done = r.step(cwd, step["run"], extra)
        out += f"$ {step['run']}\n{done.stdout}{done.stderr}"
        if done.returncode != 0:
            return done.returncode, out
    return 0, out


def test_the_github_workflow_plan_apply_and_nightly_drift(
    tmp_path: Path, s3_endpoint: S3Endpoint, s3_bucket: str
) -> None:
    key = f"ci-{uuid.uuid4().hex[:8]}/state.json"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MODELFORM_"))},
        "AWS_ENDPOINT_URL_S3": s3_endpoint.url,
        "AWS_ACCESS_KEY_ID": s3_endpoint.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_endpoint.secret_key,
        "AWS_DEFAULT_REGION": s3_endpoint.region,
        "MODELFORM_VAR_api_key": "s3cr3t-api-key-from-ci",
    }
    r = Runner(tmp_path, env, free_port(), key, s3_bucket)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    plan_dir = r.clone("plan")
    summary = tmp_path / "summary.md"
    gh = {"GITHUB_STEP_SUMMARY": str(summary), "GITHUB_EVENT_NAME": "pull_request",
          "GITHUB_REF": "refs/pull/7/merge", "GITHUB_ACTIONS": "true"}  # fmt: skip
    code, out = _run_github_job(r, "plan", plan_dir, gh, artifacts)
    assert code == 0, out
    table = summary.read_text()
    assert "service.diabetes" in table and "|" in table, table
    assert (artifacts / "tfplan").exists()
    # apply: another clone (another runner), the saved plan from the artifact
    apply_dir = r.clone("apply")
    gh.update(GITHUB_EVENT_NAME="push", GITHUB_REF="refs/heads/main")
    try:
        code, out = _run_github_job(r, "apply", apply_dir, gh, artifacts)
        assert code == 0, out
        assert "Apply complete!" in out and "[" in out.split("Smoke test")[-1], out
        assert "s3cr3t-api-key-from-ci" not in out + table
        # out of band: the service's process dies; the nightly drift job goes red
        pids = our_processes(apply_dir)
        assert len(pids) == 1
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        drift_dir = r.clone("drift")
        gh.update(GITHUB_EVENT_NAME="schedule")
        code, out = _run_github_job(r, "drift", drift_dir, gh, artifacts)
        assert code == 2, out
        report = ET.parse(drift_dir / "drift.xml").getroot()
        failed = [c for c in report.iter("testcase") if c.find("failure") is not None]
        assert [c.get("name") for c in failed] == ["service.diabetes"], ET.tostring(report)
        assert "s3cr3t-api-key-from-ci" not in (drift_dir / "drift.xml").read_text() + out
    finally:
        subprocess.run(modelform_command() + ["destroy", "-auto-approve"], cwd=apply_dir,
                       env={**env, "PATH": f"{r.bin}:{os.environ['PATH']}"},
                       capture_output=True, timeout=300)  # fmt: skip
    assert our_processes(apply_dir) == set()


def test_the_gitlab_pipeline_runs_the_same_commands() -> None:
    """GitLab's jobs hold the same modelform commands as the GitHub jobs."""
    gitlab = yaml.safe_load(GITLAB.read_text())
    github = yaml.safe_load(GITHUB.read_text())

    def commands(lines: list[str]) -> list[str]:
        out = []
        for line in lines:
            for part in re.findall(r"modelform [^|&;\n)]*", line):
                out.append(re.sub(r"\s*--format github", "", part).strip())
        return out

    for job in ("plan", "apply", "drift"):
        gl = commands(gitlab[job]["script"])
        gh = commands([s["run"] for s in github["jobs"][job]["steps"] if "run" in s])
        assert gl == gh, (job, gl, gh)
    assert gitlab["drift"]["artifacts"]["reports"]["junit"] == "drift.xml"


def test_docs_ci_shows_both_files_as_they_are() -> None:
    doc = (REPO / "docs" / "ci.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", doc, re.DOTALL)
    assert GITHUB.read_text() in blocks, "docs/ci.md lacks the GitHub workflow as it is"
    assert GITLAB.read_text() in blocks, "docs/ci.md lacks the GitLab pipeline as it is"


def test_drift_against_a_missing_remote_state_exits_1(
    tmp_path: Path, s3_endpoint: S3Endpoint, s3_bucket: str
) -> None:
    """A nightly job pointed at a key where no state is (a typo in the key, the
    wrong bucket) must fail, not report "no drift"; in every format."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MODELFORM_"))},
        "AWS_ENDPOINT_URL_S3": s3_endpoint.url,
        "AWS_ACCESS_KEY_ID": s3_endpoint.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_endpoint.secret_key,
        "AWS_DEFAULT_REGION": s3_endpoint.region,
    }
    r = Runner(tmp_path, env, free_port(), f"nothing-{uuid.uuid4().hex[:8]}/state.json", s3_bucket)
    d = r.clone("drift")
    for fmt in ("human", "junit", "json"):
        done = r.step(d, f"modelform drift --format {fmt} --report drift.out", {})
        assert done.returncode == 1, done.stdout + done.stderr
        assert f"no state at s3://{s3_bucket}/nothing-" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
