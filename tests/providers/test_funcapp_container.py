"""A function app's image and container without a Docker Engine: the host's
packages cover what runtime/functions imports, the image spec (its layers,
its command, its digest beside the container target's unchanged one), the
container's environment and the engine it needs."""

from __future__ import annotations

import ast
import dataclasses
import io
import re
import sys
import tarfile
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path

import pytest

from modelform.engine.digests import digest_json
from modelform.plugin import ProviderError
from modelform.providers import funcapp_container as fc
from modelform.providers import imagebuild as ib
from modelform.providers.funcapp_config import Options, Storage
from modelform.providers.funcapp_package import AppSpec, write_app
from modelform.runtime.functions.appdigest import app_digest

REPO = Path(__file__).resolve().parents[2]
FUNCTIONS = REPO / "runtime" / "functions"
SECRET = "AccountKey-never-in-an-image"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imports(folder: Path) -> set[str]:
    """Every module imported anywhere (also inside functions) under ``folder``."""
    out: set[str] = set()
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                out |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                out.add(node.module)
    return out


def _distribution(module: str) -> str:
    """The installed distribution whose files hold ``module``."""
    spec = find_spec(module)
    assert spec is not None and spec.origin, module
    origin = Path(spec.origin).resolve()
    for name in metadata.packages_distributions().get(module.split(".")[0], []):
        dist = metadata.distribution(name)
        if any(Path(str(dist.locate_file(f))).resolve() == origin for f in dist.files or []):
            return _canonical(name)
    raise AssertionError(f"no distribution holds {module}")


def _requires(name: str) -> set[str]:
    """Direct, unconditional-on-extras requirements of an installed distribution."""
    out = set()
    for req in metadata.requires(name) or []:
        if "extra ==" not in req:
            out.add(_canonical(re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0]))
    return out


def test_the_image_gets_every_package_the_functions_host_imports() -> None:
    third_party = {
        m for m in _imports(FUNCTIONS)
        if m.split(".")[0] not in sys.stdlib_module_names and not m.startswith("modelform")
    }  # fmt: skip
    # S3 goes through botocore (credentials) and http.client: boto3 installs botocore
    assert {"azure.functions", "botocore.session", "azure.storage.blob", "azure.servicebus"} <= (
        third_party
    )
    installed = {_canonical(r.split("==")[0].split(">")[0]) for r in fc.host_requirements()}
    installed |= {_canonical(n) for n in ib.RUNTIME_PACKAGES}
    assert installed >= {"azure-functions", "azure-storage-blob", "azure-storage-queue",
                         "azure-servicebus", "boto3"}  # fmt: skip
    brought = set().union(*(_requires(n) for n in installed))
    missing = {m: _distribution(m) for m in third_party}
    missing = {m: d for m, d in missing.items() if d not in installed | brought}
    assert not missing, f"imported by runtime/functions but not installed in the image: {missing}"
    assert all(re.fullmatch(r"[a-z0-9-]+==[0-9][\w.]*", r) for r in fc.host_requirements())


@pytest.fixture
def app(tmp_path: Path) -> tuple[Path, AppSpec]:
    src = tmp_path / "src"
    src.mkdir()
    (src / "score.py").write_text("def init():\n    pass\ndef run(raw):\n    return raw\n")
    model = tmp_path / "ridge.pkl"
    model.write_bytes(b"weights-1")
    spec = AppSpec(
        service="diabetes",
        entry_script=src / "score.py",
        code_dir=src,
        trigger={"kind": "blob", "container": "requests", "input": "input/{n}.json",
                 "output": "output/{n}_out.json"},
        model_files=(("ridge.pkl", model),),
        auth="key",
        pip=("numpy", "joblib"),
        python="3.11",
        env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    app_dir = tmp_path / "app"
    write_app(spec, app_dir)
    return app_dir, spec


def options(**kw: object) -> Options:
    base: dict[str, object] = dict(
        storage=Storage("s3", endpoint="http://127.0.0.1:19000"), run_as="container",
        delete_receipts_on_destroy=False, poll_seconds=0.5, docker_host="unix:///var/run/x.sock",
        base_image="base:1", carry_ca=False,
    )  # fmt: skip
    base.update(kw)
    return Options(**base)  # type: ignore[arg-type]


def test_the_app_image_runs_the_host_with_its_packages_apart_from_the_app(
    app: tuple[Path, AppSpec],
) -> None:
    app_dir, spec = app
    image = fc.app_image_spec(app_dir, spec, options(), "diabetes/diabetes")
    assert image.code_digest == app_digest(app_dir)
    assert image.models == () and image.requirements == ("numpy", "joblib")
    assert image.source_dir == app_dir.resolve() and image.base_image == "base:1"
    lines = ib.dockerfile(image).splitlines()

    def at(fragment: str) -> int:
        return next(i for i, line in enumerate(lines) if fragment in line)

    order = [
        at("-r /opt/modelform/requirements.txt"),
        at("-r /opt/modelform/runtime-requirements.txt"),
        at("COPY extra-requirements.txt"),
        at("-r /opt/modelform/extra-requirements.txt"),
        at("COPY modelform/"),
        at("COPY app/"),
        at("ENTRYPOINT"),
    ]
    assert order == sorted(order)
    assert lines[-1] == (
        'ENTRYPOINT ["/opt/venv/bin/python", "-m", "modelform.runtime.functions", '
        '"/var/azureml-app"]'
    )
    buf = io.BytesIO()
    ib.write_context(image, buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        names = set(tar.getnames())
        extra = tar.extractfile("extra-requirements.txt").read().decode()  # type: ignore[union-attr]
    assert extra.splitlines() == list(fc.host_requirements())
    assert {"app/function_app.py", "app/host.json", "app/model/ridge.pkl", "app/score.py",
            "app/local.settings.json", "app/modelform_app.json"} <= names  # fmt: skip
    assert not any(n.startswith("models/") for n in names)  # the model is inside the app

    # The environment's base image wins; the CA option is the builder's.
    assert fc.app_image_spec(app_dir, spec, options(), "r", base_image="b:2").base_image == "b:2"
    with pytest.raises(ProviderError, match="carry_ca: no CA bundle file"):
        fc.app_image_spec(app_dir, spec, options(carry_ca="/nonexistent/ca.pem"), "r")


def test_new_fields_count_in_the_digest_only_when_set(app: tuple[Path, AppSpec]) -> None:
    app_dir, spec = app
    image = fc.app_image_spec(app_dir, spec, options(), "r")
    plain = dataclasses.replace(image, command=(), extra_requirements=())
    # A spec without them has the digest of the formula from before they existed.
    assert plain.digest() == digest_json({
        "layout": ib.LAYOUT, "env": plain.env_digest(), "runtime": ib.runtime_digest(),
        "models": [], "code": plain.code_digest, "entry": plain.entry_in_image(),
    })  # fmt: skip
    assert "extra-requirements" not in ib.dockerfile(plain)
    assert plain.entrypoint()[:3] == ["/opt/venv/bin/python", "-m", "modelform.runtime"]
    digests = {
        plain.digest(), image.digest(),
        dataclasses.replace(image, command=()).digest(),
        dataclasses.replace(image, extra_requirements=()).digest(),
        dataclasses.replace(image, extra_requirements=("boto3==1.0",)).digest(),
    }  # fmt: skip
    assert len(digests) == 5
    assert image.env_digest() == plain.env_digest()  # the environment's layer is shared

    # A new model version is a new app: a new image digest, the same package layers.
    (spec.model_files[0][1]).write_bytes(b"weights-2")
    write_app(spec, app_dir)
    again = fc.app_image_spec(app_dir, spec, options(), "r")
    assert again.digest() != image.digest()
    assert again.env_digest() == image.env_digest()
    assert again.extra_requirements == image.extra_requirements


def test_the_container_environment_holds_the_secrets_the_app_does_not(
    app: tuple[Path, AppSpec],
) -> None:
    app_dir, _ = app
    environ = {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "SECRET",
               "AWS_DEFAULT_REGION": "us-east-1", "HOME": "/root", "AWS_PROFILE": "p"}  # fmt: skip
    env = fc.app_env(options(), "the-key", environ)
    assert env == {
        "AzureWebJobsStorage": "S3Endpoint=http://127.0.0.1:19000;Region=us-east-1;PathStyle=true",
        "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "SECRET",
        "AWS_DEFAULT_REGION": "us-east-1", "MODELFORM_FUNCTION_KEY": "the-key",
    }  # fmt: skip
    conn = f"DefaultEndpointsProtocol=http;AccountName=a;AccountKey={SECRET};BlobEndpoint=x"
    azure = options(storage=Storage("azure", connection_string=conn))
    assert fc.app_env(azure, None, environ) == {"AzureWebJobsStorage": conn}
    assert SECRET not in (app_dir / "local.settings.json").read_text()


def test_s3_credentials_from_the_aws_files_are_resolved_for_the_container(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (*fc.AWS_ENV, "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    creds = tmp_path / "credentials"
    creds.write_text(
        "[default]\naws_access_key_id = AKFILE\naws_secret_access_key = SKFILE\n"
        "[other]\naws_access_key_id = AKOTHER\naws_secret_access_key = SKOTHER\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    env = fc.app_env(options(), None, {})
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("AKFILE", "SKFILE")
    monkeypatch.setenv("AWS_PROFILE", "other")
    assert fc.app_env(options(), None, {})["AWS_ACCESS_KEY_ID"] == "AKOTHER"
    monkeypatch.setenv("AWS_PROFILE", "missing")
    with pytest.raises(ProviderError, match="cannot read the AWS credentials") as err:
        fc.app_env(options(), None, {})
    assert "\n" not in str(err.value)


def test_the_engine_must_share_this_machines_loopback() -> None:
    fc.require_local("unix:///var/run/docker.sock")
    fc.require_local("tcp://127.0.0.1:2375")
    with pytest.raises(ProviderError, match="needs a Docker Engine on this machine"):
        fc.require_local("tcp://build-box:2376")
