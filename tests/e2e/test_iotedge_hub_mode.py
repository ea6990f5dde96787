"""Hub mode of the iotedge target through the real command (in-process, so
the hub's address can be given to its transport): apply builds and pushes the
module images to the real registry and posts the manifest to a STAND-IN for
IoT Hub's documented REST API (tests/providers/test_iotedge_hub.py's
``DocumentedHub``: the documented paths, api-version, SAS token, body schema
and answers), never to a live hub; status reads the ``$edgeAgent`` twin's
reported module states. What a live hub does beyond its documentation is
not tested here (docs/providers/iotedge.md says so)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from modelform.cli.app import app
from modelform.providers import iotedge_hub as ih
from tests.e2e.helpers import REPO, Project
from tests.providers.test_iotedge_hub import (
    CONNECTION_STRING,
    DEVICE,
    DocumentedHub,
    reported_module,
)

EXAMPLE = REPO / "examples" / "iotedge"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    from modelform.runtime.edge import certs

    folder: Path = tmp_path_factory.mktemp("hub-tls")
    certs.ensure(folder, ["127.0.0.1"])
    server = certs.server_context(folder)
    client = ssl.create_default_context(cafile=str(folder / "ca.pem"))
    return server, client


@pytest.fixture
def stand_in(
    tls: tuple[ssl.SSLContext, ssl.SSLContext], monkeypatch: pytest.MonkeyPatch
) -> Iterator[DocumentedHub]:
    hub = DocumentedHub(tls[0])
    base = f"https://127.0.0.1:{hub.port}"
    real = ih.Transport.__init__

    def to_stand_in(self: ih.Transport, base_url: str | None = None, context: Any = None,
                    timeout: float = 10) -> None:  # fmt: skip
        real(self, base_url or base, context or tls[1], timeout)

    monkeypatch.setattr(ih.Transport, "__init__", to_stand_in)
    try:
        yield hub
    finally:
        hub.stop()


def _run(args: list[str], env: dict[str, str]) -> Any:
    return CliRunner().invoke(app, args, env=env)


@pytest.mark.docker
@pytest.mark.registry
@pytest.mark.slow
def test_apply_posts_the_manifest_and_status_reads_the_edge_agent(
    tmp_path: Path, stand_in: DocumentedHub, registry_address: str, docker_info: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    root = tmp_path / "proj"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".modelform", "__pycache__"))
    subprocess.run([sys.executable, "train.py"], cwd=root, check=True, capture_output=True)
    yaml = root / "modelform.yaml"
    yaml.write_text(yaml.read_text().replace(
        "    device: line-7\n",
        f"    device: {DEVICE}\n    hub: {{connection_string_env: IOTHUB_CS}}\n"
        f"    registry: {registry_address}\n",
    ))  # fmt: skip
    monkeypatch.chdir(root)
    env = {"IOTHUB_CS": CONNECTION_STRING, "DOCKER_HOST": str(docker_info["docker_host"])}
    r = _run(["apply", "-auto-approve"], env)
    assert r.exit_code == 0, r.output
    assert f"deployment applied to device {DEVICE}" in r.output
    assert stand_in.problems == []
    (sent,) = stand_in.devices[DEVICE].applied
    deployment = Project(root).resources()["target.edge/deployment"]["attributes"]
    assert sent == deployment["manifest"]  # what the plan showed is what the hub got
    modules = sent["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]
    assert modules["diabetes"]["settings"]["image"].startswith(f"{registry_address}/")
    # the images the device will pull are in the registry
    for module in ("diabetes", "sensor"):
        ref = modules[module]["settings"]["image"]
        repo, tag = ref.split("/", 1)[1].rsplit(":", 1)
        import urllib.request

        req = urllib.request.Request(
            f"http://{registry_address}/v2/{repo}/manifests/{tag}", method="HEAD",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        )  # fmt: skip
        with urllib.request.urlopen(req, timeout=10) as answer:
            assert answer.status == 200
    # the edge agent reports: status maps its runtime states
    image = modules["diabetes"]["settings"]["image"]
    stand_in.devices[DEVICE].reported = {
        "$version": 5,
        "lastDesiredVersion": stand_in.devices[DEVICE].desired_version,
        "lastDesiredStatus": {"code": 200},
        "modules": {
            "diabetes": reported_module("backoff", image, exit_code=1),
            "sensor": reported_module("running", modules["sensor"]["settings"]["image"]),
        },
    }
    st = _run(["status"], env)
    assert st.exit_code == 0, st.output
    assert "Transitioning" in st.output and "backoff" in st.output, st.output
    again = _run(["plan", "-detailed-exitcode"], env)
    assert again.exit_code == 0, again.output
    # the hub's secret never shows
    assert CONNECTION_STRING.split("SharedAccessKey=")[1] not in r.output + st.output
