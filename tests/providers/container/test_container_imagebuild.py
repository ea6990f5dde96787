"""The image builder without a Docker Engine: layer order, content digests,
the build context, conda files and the CA bundle option."""

from __future__ import annotations

import dataclasses
import io
import tarfile
from pathlib import Path

import pytest

from modelform.providers import imagebuild as ib


@pytest.fixture
def spec(tmp_path: Path) -> ib.ImageSpec:
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "score.py").write_text("def init():\n    pass\ndef run(d):\n    return d\n")
    (src / "pkg" / "util.py").write_text("X = 1\n")
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "score.cpython-311.pyc").write_bytes(b"junk")
    model = tmp_path / "store" / "ridge" / "3"
    model.mkdir(parents=True)
    (model / "ridge.pkl").write_bytes(b"weights")
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    return ib.ImageSpec(
        repository="proj/svc",
        base_image="base:1",
        requirements=("numpy==2.0", "joblib"),
        source_dir=src,
        entry_script=src / "score.py",
        code_digest="sha256:code1",
        python="3.11",
        models=(ib.ModelFiles("ridge", 3, "sha256:m3", model),),
        ca_bundle=ca,
    )


def test_layers_keep_packages_apart_from_models_and_code(spec: ib.ImageSpec) -> None:
    lines = ib.dockerfile(spec).splitlines()

    def at(fragment: str) -> int:
        return next(i for i, line in enumerate(lines) if fragment in line)

    order = [
        at("FROM base:1"),
        at("COPY ca.crt"),
        at("COPY requirements.txt"),
        at("-r /opt/modelform/requirements.txt"),
        at("COPY runtime-requirements.txt"),
        at("-r /opt/modelform/runtime-requirements.txt"),
        at("COPY modelform/"),
        at("COPY models/"),
        at("COPY app/"),
        at("ENTRYPOINT"),
    ]
    assert order == sorted(order)
    pip = lines[at("-r /opt/modelform/requirements.txt")]
    assert "PIP_CERT=/etc/modelform/ca.crt" in pip and "REQUESTS_CA_BUNDLE=" in pip
    assert 'w="3.11"' in pip  # the base image's Python is checked in the same layer
    entry = lines[at("ENTRYPOINT")]
    assert '"--model-dir", "/var/azureml-app/azureml-models/ridge/3"' in entry
    assert '"--host", "0.0.0.0", "--port", "5001"' in entry


def test_without_ca_or_packages_no_such_steps(spec: ib.ImageSpec) -> None:
    text = ib.dockerfile(dataclasses.replace(spec, ca_bundle=None, requirements=(), python=None))
    assert "ca.crt" not in text and "PIP_CERT" not in text
    assert "RUN python3 -m venv /opt/venv\n" in text


def test_digests_follow_what_changed(spec: ib.ImageSpec) -> None:
    code = dataclasses.replace(spec, code_digest="sha256:code2")
    model = dataclasses.replace(spec, models=(dataclasses.replace(spec.models[0], version=4),))
    pkgs = dataclasses.replace(spec, requirements=("numpy==2.1", "joblib"))
    no_ca = dataclasses.replace(spec, ca_bundle=None)
    assert code.env_digest() == spec.env_digest() != code.digest() != spec.digest()
    assert model.env_digest() == spec.env_digest() and model.digest() != spec.digest()
    assert pkgs.env_digest() != spec.env_digest() and pkgs.digest() != spec.digest()
    assert no_ca.digest() == spec.digest()  # the CA serves the build, not the image
    assert spec.digest_tag().startswith("sha256-") and len(spec.digest_tag()) == 23
    assert spec.digest() == dataclasses.replace(spec).digest()


def test_context_is_stable_and_holds_runtime_without_engine(spec: ib.ImageSpec) -> None:
    first, second = io.BytesIO(), io.BytesIO()
    ib.write_context(spec, first)
    ib.write_context(spec, second)
    assert first.getvalue() == second.getvalue()  # no times or owners leak in
    first.seek(0)
    with tarfile.open(fileobj=first) as tar:
        members = {m.name: m for m in tar.getmembers()}
        names = set(members)
        assert {"Dockerfile", "ca.crt", "requirements.txt", "runtime-requirements.txt"} <= names
        assert "modelform/__init__.py" in names and "modelform/runtime/__main__.py" in names
        assert not any(n.startswith(("modelform/engine", "modelform/providers")) for n in names)
        assert "models/ridge/3/ridge.pkl" in names
        assert {"app/score.py", "app/pkg/util.py"} <= names
        assert not any("__pycache__" in n for n in names)
        assert {m.uid for m in members.values()} == {0}
        reqs = tar.extractfile("requirements.txt").read().decode()  # type: ignore[union-attr]
        assert reqs == "numpy==2.0\njoblib\n"
        runtime = tar.extractfile("runtime-requirements.txt").read().decode()  # type: ignore[union-attr]
        assert {line.split("=")[0].rstrip("<>") for line in runtime.split()} == {
            "uvicorn",
            "httptools",
            "orjson",
            "uvloop",
        }


def test_several_models_and_an_entry_script_outside_the_source(
    spec: ib.ImageSpec, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.onnx").write_bytes(b"onnx")
    entry = tmp_path / "elsewhere" / "main.py"
    entry.parent.mkdir()
    entry.write_text("def init(): pass\ndef run(d): return d\n")
    two = dataclasses.replace(
        spec, models=(*spec.models, ib.ModelFiles("enc", 1, "sha256:e1", other / "a.onnx")),
        entry_script=entry,
    )  # fmt: skip
    assert two.model_dir() == "/var/azureml-app/azureml-models"
    assert two.entry_in_image() == "/var/azureml-app/main.py"
    buf = io.BytesIO()
    ib.write_context(two, buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        names = set(tar.getnames())
    assert {"models/ridge/3/ridge.pkl", "models/enc/1/a.onnx", "app/main.py"} <= names


def test_conda_file_becomes_pip_requirements(tmp_path: Path) -> None:
    (tmp_path / "env.yml").write_text(
        "name: x\nchannels: [conda-forge]\ndependencies:\n"
        "  - python=3.11\n  - pip\n  - numpy=1.26\n  - conda-forge::scikit-learn>=1.4\n"
        "  - scipy 1.11\n  - pandas=2.1.4=py311h_0\n  - pip:\n    - joblib==1.3.2\n"
    )
    reqs = ib.requirements_of({"conda_file": "env.yml"}, tmp_path)
    assert reqs == (
        "numpy==1.26.*", "scikit-learn>=1.4", "scipy==1.11.*", "pandas==2.1.4.*", "joblib==1.3.2",
    )  # fmt: skip
    assert ib.requirements_of({"pip": ["a", "b==1"]}, tmp_path) == ("a", "b==1")
    assert ib.requirements_of({}, tmp_path) == ()


def test_carry_ca_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ib.host_ca_bundle(False) is None
    bundle = tmp_path / "corp-ca.pem"
    bundle.write_text("pem")
    assert ib.host_ca_bundle(str(bundle)) == bundle
    with pytest.raises(ValueError, match="no CA bundle file"):
        ib.host_ca_bundle(str(tmp_path / "missing.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    assert ib.host_ca_bundle(None) == bundle  # the host's bundle by default
