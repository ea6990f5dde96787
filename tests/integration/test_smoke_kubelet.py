"""Smoke test of the real kubelet (testenv part ``kubelet``): a service's image, built by
modelform's image builder and pushed to the test registry, runs in a real pod on node
real-node-0 and scores through the API server's service proxy."""

from __future__ import annotations

import json
import ssl
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from modelform.providers import imagebuild as ib
from tests.e2e.helpers import wait_until
from tests.realparts import RealNode

pytestmark = [pytest.mark.k8s, pytest.mark.docker, pytest.mark.registry, pytest.mark.slow]

SCORE = """import json

def init():
    global factor
    factor = 2

def run(raw):
    data = json.loads(raw)["data"]
    return {"scores": [x * factor for x in data]}
"""


@pytest.fixture
def service_image(
    tmp_path: Path, docker_client: Any, base_image: str, registry_address: str
) -> Iterator[str]:
    """A scoring service's image, as modelform builds it, pushed to the test registry."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "score.py").write_text(SCORE)
    repo = f"{registry_address}/mftest-{uuid.uuid4().hex[:8]}/svc"
    spec = ib.ImageSpec(
        repository=repo, base_image=base_image, requirements=(), source_dir=src,
        entry_script=src / "score.py", code_digest="sha256:kubelet-smoke", python="3.11",
        ca_bundle=ib.host_ca_bundle(None),
    )  # fmt: skip
    built = ib.build(docker_client, spec)
    ib.push(docker_client, built.ref, None, lambda line: None)
    yield built.ref
    for img in docker_client.images.list(name=repo):
        for tag in img.tags:
            docker_client.images.remove(tag, force=True)


def _proxy(api: Any, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """A request through the API server (its client certificate, its CA)."""
    cfg = api.configuration
    context = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
    context.load_cert_chain(cfg.cert_file, cfg.key_file)
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{cfg.host}{path}", data=data, method="POST" if data else "GET"
    )
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30, context=context) as resp:
        text = resp.read().decode()
        return resp.status, json.loads(text) if text[:1] in "{[" else text


def test_real_node_is_tainted_so_only_pods_that_ask_land_there(
    k8s_api: Any, real_node: RealNode
) -> None:
    node = client.CoreV1Api(k8s_api).read_node(real_node.name)
    assert node.metadata.labels["type"] == "real"
    for key, value in real_node.node_selector.items():
        assert node.metadata.labels[key] == value
    assert [(t.key, t.effect) for t in node.spec.taints] == [
        (t["key"], t["effect"]) for t in real_node.tolerations
    ]
    assert node.status.node_info.container_runtime_version.startswith("containerd://")
    assert [a.address for a in node.status.addresses if a.type == "InternalIP"] == [
        real_node.node_ip
    ]


def test_service_image_scores_in_a_real_pod_through_the_service_proxy(
    k8s_api: Any, k8s_namespace: str, real_node: RealNode, service_image: str
) -> None:
    core = client.CoreV1Api(k8s_api)
    name = f"svc-{uuid.uuid4().hex[:6]}"
    labels = {"app": name}
    probe = client.V1Probe(
        http_get=client.V1HTTPGetAction(path="/ready", port=ib.CONTAINER_PORT),
        period_seconds=1,
        failure_threshold=120,
    )
    container = client.V1Container(
        name="model",
        image=service_image,
        ports=[client.V1ContainerPort(container_port=ib.CONTAINER_PORT, name="http")],
        readiness_probe=probe,
        resources=client.V1ResourceRequirements(requests={"cpu": "50m", "memory": "64Mi"}),
    )
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=real_node.pod_spec(containers=[container], termination_grace_period_seconds=2),
    )
    core.create_namespaced_pod(k8s_namespace, pod)
    core.create_namespaced_service(
        k8s_namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1ServiceSpec(
                selector=labels,
                ports=[client.V1ServicePort(name="http", port=80, target_port="http")],
            ),
        ),
    )

    def why() -> str:
        p = core.read_namespaced_pod(name, k8s_namespace)
        events = core.list_namespaced_event(
            k8s_namespace, field_selector=f"involvedObject.name={name}"
        ).items
        return f"phase {p.status.phase}; " + "; ".join(
            f"{e.reason}: {e.message}" for e in events[-5:]
        )

    def ready() -> client.V1Pod | None:
        p = core.read_namespaced_pod(name, k8s_namespace)
        conditions = p.status.conditions or []
        ok = any(c.type == "Ready" and c.status == "True" for c in conditions)
        return p if ok and p.status.phase == "Running" else None

    running = wait_until("pod Running and Ready", ready, 240, interval=0.5, why=why)
    assert running.spec.node_name == real_node.name
    assert running.status.pod_ip and running.status.pod_ip != real_node.node_ip

    base = f"/api/v1/namespaces/{k8s_namespace}/services/{name}:http/proxy"
    status, answer = wait_until(
        "a score through the service proxy",
        lambda: _try(lambda: _proxy(k8s_api, f"{base}/score", {"data": [1, 2.5, -3]})),
        60,
        interval=0.5,
        why=why,
    )
    assert status == 200
    assert answer == {"scores": [2, 5.0, -6]}

    # Logs come from the kubelet through the API server, as `kubectl logs` reads them.
    logs = core.read_namespaced_pod_log(name, k8s_namespace, container="model")
    assert logs.strip()
    assert (real_node.pod_logs / f"{k8s_namespace}_{name}_{running.metadata.uid}").is_dir()

    core.delete_namespaced_service(name, k8s_namespace)
    core.delete_namespaced_pod(name, k8s_namespace, grace_period_seconds=0)


def _try(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except (OSError, ValueError):  # the endpoints not published yet: 503 from the proxy
        return None
