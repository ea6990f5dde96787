"""The image builder against the real Docker Engine: found by digest instead
of rebuilt, versioned by name, cached package layers on a code change, a
failing step named with its log, and pushes to a real registry (also
through ``modelform package --push``, whose credentials never show)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelform.engine.provider import ProviderError
from modelform.providers import imagebuild as ib
from tests.e2e.helpers import modelform_command

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SCORE = "import json\ndef init():\n    pass\ndef run(raw):\n    return json.loads(raw)\n"


@pytest.fixture
def repo(docker_client: Any) -> Iterator[str]:
    name = f"mftest-{uuid.uuid4().hex[:8]}/svc"
    yield name
    for img in docker_client.images.list(name=name):
        for tag in img.tags:
            docker_client.images.remove(tag, force=True)


def tiny(tmp_path: Path, repo: str, base_image: str) -> ib.ImageSpec:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "score.py").write_text(SCORE)
    return ib.ImageSpec(
        repository=repo, base_image=base_image, requirements=(), source_dir=src,
        entry_script=src / "score.py", code_digest="sha256:c1", python="3.11",
        ca_bundle=ib.host_ca_bundle(None),
    )  # fmt: skip


def test_found_by_digest_versioned_by_name_and_cached_on_code_change(
    tmp_path: Path, docker_client: Any, base_image: str, repo: str
) -> None:
    spec = tiny(tmp_path, repo, base_image)
    lines: list[str] = []
    first = ib.build(docker_client, spec, lines.append)
    assert first.built and first.ref == f"{repo}:1"
    assert first.digest_ref == f"{repo}:{spec.digest_tag()}"
    img = docker_client.images.get(first.ref)
    assert img.labels[ib.LABEL_DIGEST] == spec.digest()
    assert set(img.tags) == {first.ref, first.digest_ref}

    again = ib.build(docker_client, spec, lines.append)
    assert not again.built and again.ref == first.ref and again.image_id == first.image_id

    (spec.source_dir / "score.py").write_text(SCORE + "# changed\n")
    changed = dataclasses.replace(spec, code_digest="sha256:c2")
    out: list[str] = []
    second = ib.build(docker_client, changed, out.append)
    assert second.built and second.ref == f"{repo}:2"
    cached = " | ".join(second.cached_steps)
    assert "python3 -m venv" in cached and "runtime-requirements.txt" in cached
    assert not any(line.startswith("Collecting") for line in out)
    assert ib.find(docker_client, spec).ref == f"{repo}:1"  # type: ignore[union-attr]


def test_a_failing_step_is_named_with_its_log(
    tmp_path: Path, docker_client: Any, base_image: str, repo: str
) -> None:
    spec = dataclasses.replace(tiny(tmp_path, repo, base_image), python="3.9")
    with pytest.raises(ProviderError) as err:
        ib.build(docker_client, spec)
    assert "image build failed at step" in str(err.value)
    assert "creating the venv and installing the environment's packages" in str(err.value)
    assert "exit code 1" in str(err.value)
    assert "the environment wants Python 3.9; the base image has Python 3.11" in err.value.log
    assert "\x1b[" not in err.value.log
    assert docker_client.images.list(name=repo) == []


def _tags(registry: str, repo: str) -> list[str]:
    with urllib.request.urlopen(f"http://{registry}/v2/{repo}/tags/list", timeout=10) as r:
        return list(json.load(r)["tags"])


def test_package_command_builds_and_pushes_without_deploying(
    tmp_path: Path, docker_client: Any, docker_info: dict[str, Any], registry_address: str
) -> None:
    project = f"mftest-{uuid.uuid4().hex[:8]}"
    root = tmp_path / "p"
    (root / "src").mkdir(parents=True)
    (root / "src" / "score.py").write_text(SCORE)
    (root / "modelform.yaml").write_text(
        f"project: {project}\n"
        'environments:\n  plain: {python: "3.11"}\n'
        "targets:\n  reg:\n    kind: container\n"
        f"    registry: {registry_address}\n    username_env: MF_TEST_USER\n"
        "    password_env: MF_TEST_PASSWORD\n"
        "services:\n  svc:\n    target: reg\n    environment: plain\n"
        "    entry_script: src/score.py\n    port: 18080\n"
    )
    secret = f"s3cret-{uuid.uuid4().hex}"
    env = {**os.environ, "DOCKER_HOST": docker_info["docker_host"], "MF_TEST_USER": "ci",
           "MF_TEST_PASSWORD": secret, "NO_COLOR": "1"}  # fmt: skip

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*modelform_command(), *args], cwd=root, env=env,
            capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    try:
        r = cli("package", "svc", "--push")
        assert r.returncode == 0, r.stdout + r.stderr
        assert secret not in r.stdout + r.stderr
        assert f"{registry_address}/{project}/svc:1" in r.stdout and "pushed" in r.stdout
        assert sorted(_tags(registry_address, f"{project}/svc"))[0] == "1"
        assert not (root / ".modelform" / "state.json").exists()  # nothing deployed
        r = cli("package", "svc", "-json")
        assert r.returncode == 0, r.stderr
        data = [json.loads(line) for line in r.stdout.splitlines() if '"data"' in line][-1]
        assert data["data"]["built"] is False  # unchanged: no build

        env.pop("MF_TEST_PASSWORD")
        r = cli("package", "svc", "--push")
        assert r.returncode == 1 and "$MF_TEST_PASSWORD is not set" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    finally:
        for img in docker_client.images.list(name=f"{registry_address}/{project}/svc"):
            for tag in img.tags:
                docker_client.images.remove(tag, force=True)
