"""pytest fixtures for the real parts started by scripts/testenv (Docker, Kubernetes, MinIO,
Azurite, registry).

Registered from tests/conftest.py with ``pytest_plugins = ["tests.realparts"]``.

Each session fixture reads ``$MODELFORM_CACHE/testenv/env.json`` (written by
``scripts/testenv up``) and probes its part. A part that does not answer is started
with ``scripts/testenv up PART --no-build`` (seconds when it was built before) and
stopped again when the session ends. Only if that fails is the test skipped, with
the reason and the command that starts it; with ``MODELFORM_TESTENV_STRICT=1`` (which
``.ci/run`` always sets, and ``scripts/test`` unless told otherwise), and by default
when ``CI=true``, it fails instead, so a broken part can never pass as skipped.

Tests using these fixtures are marked ``docker``, ``k8s``, ``s3``, ``azurite`` or
``registry`` automatically (and may say so themselves).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
TESTENV = REPO / "scripts" / "testenv"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

# Fixture name -> marker it implies (see pytest_collection_modifyitems).
_FIXTURE_MARKERS = {
    "docker_client": "docker",
    "base_image": "docker",
    "kubeconfig": "k8s",
    "k8s_api": "k8s",
    "k8s_namespace": "k8s",
    "real_node": "k8s",
    "s3_endpoint": "s3",
    "s3_bucket": "s3",
    "registry_address": "registry",
    "azurite": "azurite",
    "azurite_container": "azurite",
    "azurite_queue": "azurite",
}
_HOW_LONG = {
    "docker": "about 1 minute cold",
    "minio": "about 3 minutes cold",
    "azurite": "about 30 s cold: an npm install",
    "registry": "about 1.5 minutes cold",
    "k8s": "about 8-10 minutes cold",
    "kubelet": "about 2-5 minutes cold, after k8s",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        for fixture, marker in _FIXTURE_MARKERS.items():
            if fixture in names and item.get_closest_marker(marker) is None:
                item.add_marker(getattr(pytest.mark, marker))


def cache_dir() -> Path:
    base = os.environ.get("MODELFORM_CACHE") or str(Path.home() / ".cache" / "modelform")
    return Path(base) / "testenv"


def _strict() -> bool:
    """Fail rather than skip: MODELFORM_TESTENV_STRICT=1, or in CI (CI=true) unless it is 0."""
    value = os.environ.get("MODELFORM_TESTENV_STRICT")
    if value is None:
        value = "1" if os.environ.get("CI", "").lower() in ("1", "true", "yes") else ""
    return value not in ("", "0", "false", "no")


def _unavailable(reason: str) -> None:
    if _strict():
        pytest.fail(f"{reason} (MODELFORM_TESTENV_STRICT is set)", pytrace=False)
    pytest.skip(reason)


def _read_env() -> dict[str, Any]:
    try:
        return json.loads((cache_dir() / "env.json").read_text())["parts"]
    except (OSError, ValueError, KeyError):
        return {}


class _Starter:
    """Starts parts that are built but not running, and stops them at session end."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def ensure(self, part: str, probe: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        info = _read_env().get(part)
        if info is not None and _safe(probe, info):
            return info
        was_running = _testenv("status", part).returncode == 0
        proc = subprocess.run(
            [str(TESTENV), "up", part, "--no-build"],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        info = _read_env().get(part)
        if proc.returncode == 0 and info is not None and _safe(probe, info):
            if not was_running:  # only what this session started is stopped at its end
                self.started.append(part)
            return info
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-6:])
        _unavailable(
            f"real part '{part}' is not running and could not be started without building; "
            f"start it with `scripts/testenv up {part}` ({_HOW_LONG[part]}, seconds when "
            f"cached). testenv said:\n{tail}"
        )
        raise AssertionError("unreachable")

    def stop_all(self) -> None:
        for part in reversed(self.started):
            _testenv("down", part)


def _testenv(command: str, part: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TESTENV), command, part],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _safe(probe: Callable[[dict[str, Any]], bool], info: dict[str, Any]) -> bool:
    try:
        return bool(probe(info))
    except Exception:  # noqa: BLE001 - any failure of a probe means "not answering"
        return False


def _need_module(name: str, pip_name: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        _unavailable(f"Python package '{pip_name}' is missing: pip install {pip_name}")


@pytest.fixture(scope="session")
def testenv_parts() -> Iterator[_Starter]:
    starter = _Starter()
    yield starter
    starter.stop_all()


# ---- Docker -------------------------------------------------------------------------------


def _docker_probe(info: dict[str, Any]) -> bool:
    import docker

    client = docker.DockerClient(base_url=info["docker_host"], timeout=10)
    try:
        client.ping()
        client.images.get(info["base_image"])
        return True
    finally:
        client.close()


@pytest.fixture(scope="session")
def docker_info(testenv_parts: _Starter) -> dict[str, Any]:
    _need_module("docker", "docker")
    return testenv_parts.ensure("docker", _docker_probe)


@pytest.fixture(scope="session")
def docker_client(docker_info: dict[str, Any]) -> Iterator[Any]:
    """A docker.DockerClient talking to the real dockerd (DOCKER_HOST of env.sh)."""
    import docker

    client = docker.DockerClient(base_url=docker_info["docker_host"], timeout=300)
    yield client
    client.close()


@pytest.fixture(scope="session")
def base_image(docker_info: dict[str, Any]) -> str:
    """Tag of the registry-free base image with Python 3.11 and pip."""
    return str(docker_info["base_image"])


@pytest.fixture(scope="session")
def host_ca_bundle() -> Path:
    """The host's CA bundle; a docker build needs it for pip to reach the package index."""
    if not HOST_CA_BUNDLE.exists():
        _unavailable(f"no host CA bundle at {HOST_CA_BUNDLE}")
    return HOST_CA_BUNDLE


# ---- Kubernetes ----------------------------------------------------------------------------


def _k8s_probe(info: dict[str, Any]) -> bool:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=info["kubeconfig"])
    try:
        nodes = client.CoreV1Api(api).list_node(label_selector="type=kwok").items
        return any(
            not node.spec.taints
            and any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
            for node in nodes
        )
    finally:
        api.close()


@pytest.fixture(scope="session")
def k8s_info(testenv_parts: _Starter) -> dict[str, Any]:
    _need_module("kubernetes", "kubernetes")
    return testenv_parts.ensure("k8s", _k8s_probe)


@pytest.fixture(scope="session")
def kubeconfig(k8s_info: dict[str, Any]) -> Path:
    """Path of the kubeconfig for the real kube-apiserver (admin credentials)."""
    return Path(k8s_info["kubeconfig"])


@pytest.fixture(scope="session")
def k8s_api(kubeconfig: Path) -> Iterator[Any]:
    """A kubernetes.client.ApiClient for the test cluster (the global config is untouched)."""
    from kubernetes import config

    api = config.new_client_from_config(config_file=str(kubeconfig))
    yield api
    api.close()


@pytest.fixture(scope="session")
def k8s_namespace(k8s_api: Any) -> Iterator[str]:
    """A fresh namespace for this test session, with its default ServiceAccount; deleted after."""
    from kubernetes import client

    core = client.CoreV1Api(k8s_api)
    name = f"mf-test-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    deadline = time.monotonic() + 60
    while True:
        if any(
            sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items
        ):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"namespace {name} got no default ServiceAccount in 60 s")
        time.sleep(0.2)
    yield name
    core.delete_namespace(name)


@dataclass(frozen=True)
class RealNode:
    """The real kubelet's node (part ``kubelet``): pods run there only when they ask."""

    name: str
    node_selector: dict[str, str]
    tolerations: list[dict[str, str]]
    node_ip: str
    pod_logs: Path

    def pod_spec(self, **spec: Any) -> Any:
        """A kubernetes.client.V1PodSpec placed on this node (nodeSelector + toleration)."""
        from kubernetes import client

        return client.V1PodSpec(
            node_selector=dict(self.node_selector),
            tolerations=[client.V1Toleration(**t) for t in self.tolerations],
            **spec,
        )


def _real_node_probe(info: dict[str, Any]) -> bool:
    from kubernetes import client, config

    k8s = _read_env().get("k8s") or {}
    api = config.new_client_from_config(config_file=k8s["kubeconfig"])
    try:
        node = client.CoreV1Api(api).read_node(info["node"])
        conditions = node.status.conditions or []
        return any(c.type == "Ready" and c.status == "True" for c in conditions)
    finally:
        api.close()


@pytest.fixture(scope="session")
def real_node(k8s_info: dict[str, Any], testenv_parts: _Starter) -> RealNode:
    """The node of the real kubelet (containerd, CNI bridge): pods on it really run, pull
    their image from the test registry and get a pod IP the API server's proxy reaches."""
    info = testenv_parts.ensure("kubelet", _real_node_probe)
    return RealNode(
        name=str(info["node"]),
        node_selector=dict(info["node_selector"]),
        tolerations=[dict(t) for t in info["tolerations"]],
        node_ip=str(info["node_ip"]),
        pod_logs=Path(info["pod_logs"]),
    )


# ---- S3 (MinIO) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Endpoint:
    """Where MinIO listens and the credentials it was started with."""

    url: str
    access_key: str
    secret_key: str
    region: str

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )


def _s3_from(info: dict[str, Any]) -> S3Endpoint:
    return S3Endpoint(info["endpoint"], info["access_key"], info["secret_key"], info["region"])


def _s3_probe(info: dict[str, Any]) -> bool:
    _s3_from(info).client().list_buckets()
    return True


@pytest.fixture(scope="session")
def s3_endpoint(testenv_parts: _Starter) -> S3Endpoint:
    _need_module("boto3", "boto3")
    return _s3_from(testenv_parts.ensure("minio", _s3_probe))


@pytest.fixture
def s3_bucket(s3_endpoint: S3Endpoint) -> Iterator[str]:
    """A fresh, empty bucket; emptied and deleted after the test."""
    s3 = s3_endpoint.client()
    name = f"mf-test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    yield name
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
        for entry in page.get("Versions", []) + page.get("DeleteMarkers", []):
            s3.delete_object(Bucket=name, Key=entry["Key"], VersionId=entry["VersionId"])
    s3.delete_bucket(Bucket=name)


# ---- Azure Storage (Azurite) --------------------------------------------------------------


def _azurite_probe(info: dict[str, Any]) -> bool:
    from azure.storage.blob import BlobServiceClient

    # No retries: a part that is down must say so at once, not after azure-core's backoff.
    client = BlobServiceClient.from_connection_string(
        info["connection_string"], retry_total=0, connection_timeout=3
    )
    with client:
        next(iter(client.list_containers(results_per_page=1)), None)
    return True


@pytest.fixture(scope="session")
def azurite(testenv_parts: _Starter) -> str:
    """Connection string of the real Azurite: account devstoreaccount1 with its well-known
    key, explicit BlobEndpoint, QueueEndpoint and TableEndpoint on 127.0.0.1 (what
    ``AzureWebJobsStorage`` is set to). Use it with the clients' ``from_connection_string``."""
    _need_module("azure.storage.blob", "azure-storage-blob")
    _need_module("azure.storage.queue", "azure-storage-queue")
    return str(testenv_parts.ensure("azurite", _azurite_probe)["connection_string"])


@pytest.fixture
def azurite_container(azurite: str) -> Iterator[str]:
    """A fresh, empty blob container on Azurite; deleted (with its blobs) after the test."""
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(azurite) as service:
        name = f"mf-test-{uuid.uuid4().hex[:12]}"
        service.create_container(name)
        yield name
        service.delete_container(name)


@pytest.fixture
def azurite_queue(azurite: str) -> Iterator[str]:
    """A fresh, empty storage queue on Azurite; deleted after the test."""
    from azure.storage.queue import QueueServiceClient

    with QueueServiceClient.from_connection_string(azurite) as service:
        name = f"mf-test-{uuid.uuid4().hex[:12]}"
        service.create_queue(name)
        yield name
        service.delete_queue(name)


# ---- Registry ------------------------------------------------------------------------------


def _registry_probe(info: dict[str, Any]) -> bool:
    with urllib.request.urlopen(f"http://{info['address']}/v2/", timeout=3) as resp:
        return resp.status == 200


@pytest.fixture(scope="session")
def registry_address(testenv_parts: _Starter) -> str:
    """host:port of the real registry on 127.0.0.1 (plain HTTP, which Docker allows there)."""
    return str(testenv_parts.ensure("registry", _registry_probe)["address"])
