"""Smoke tests through the real kube-apiserver, controller-manager, scheduler and KWOK."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.helpers import wait_until

pytestmark = pytest.mark.k8s

# KWOK's chaos stage: a running pod with this label turns Failed (exit code 1).
FAIL_LABEL = "pod-container-running-failed.stage.kwok.x-k8s.io"


def _deployment(name: str, replicas: int) -> client.V1Deployment:
    labels = {"app": name}
    container = client.V1Container(
        name="model",
        image="127.0.0.1:15000/modelform/smoke:1",
        ports=[client.V1ContainerPort(container_port=8080)],
        resources=client.V1ResourceRequirements(requests={"cpu": "100m", "memory": "64Mi"}),
    )
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[container]),
            ),
        ),
    )


def _ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def test_kwok_node_is_ready(k8s_api: Any) -> None:
    nodes = client.CoreV1Api(k8s_api).list_node(label_selector="type=kwok").items
    assert [node.metadata.name for node in nodes] == ["kwok-node-0"]
    assert not nodes[0].spec.taints  # no taint: pods need no toleration


def test_deployment_goes_ready_then_unschedulable_pod_stays_pending(
    k8s_api: Any, k8s_namespace: str
) -> None:
    apps, core = client.AppsV1Api(k8s_api), client.CoreV1Api(k8s_api)
    name = f"smoke-{uuid.uuid4().hex[:6]}"
    apps.create_namespaced_deployment(k8s_namespace, _deployment(name, replicas=2))

    def ready_pods() -> list[client.V1Pod]:
        pods = core.list_namespaced_pod(k8s_namespace, label_selector=f"app={name}").items
        ready = [p for p in pods if _ready(p) and p.status.phase == "Running"]
        return ready if len(ready) == 2 else []

    pods = wait_until("2 Ready pods", ready_pods)
    assert {p.spec.node_name for p in pods} == {"kwok-node-0"}
    assert all(p.status.pod_ip for p in pods)
    wait_until(
        "deployment readyReplicas == 2",
        lambda: apps.read_namespaced_deployment(name, k8s_namespace).status.ready_replicas == 2,
    )

    # Ask for more CPU than the fake node has: the new pod cannot be scheduled.
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "model", "resources": {"requests": {"cpu": "64"}}}]}}}}  # fmt: skip
    apps.patch_namespaced_deployment(name, k8s_namespace, patch)

    def unschedulable() -> client.V1Pod | None:
        for pod in core.list_namespaced_pod(k8s_namespace, label_selector=f"app={name}").items:
            for cond in pod.status.conditions or []:
                if cond.type == "PodScheduled" and cond.reason == "Unschedulable":
                    return pod
        return None

    pending = wait_until("an Unschedulable pod", unschedulable)
    assert pending.status.phase == "Pending"
    assert pending.spec.node_name is None
    # The rollout is stuck, the old Ready pods keep serving.
    status = apps.read_namespaced_deployment(name, k8s_namespace).status
    assert status.ready_replicas >= 1
    assert status.updated_replicas >= 1
    apps.delete_namespaced_deployment(name, k8s_namespace)


def test_pod_with_unmatched_node_selector_is_pending(k8s_api: Any, k8s_namespace: str) -> None:
    core = client.CoreV1Api(k8s_api)
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name=f"nowhere-{uuid.uuid4().hex[:6]}"),
        spec=client.V1PodSpec(
            node_selector={"modelform.test/pool": "does-not-exist"},
            containers=[client.V1Container(name="c", image="busybox")],
        ),
    )
    name = core.create_namespaced_pod(k8s_namespace, pod).metadata.name

    def unschedulable() -> bool:
        conds = core.read_namespaced_pod(name, k8s_namespace).status.conditions or []
        return any(c.type == "PodScheduled" and c.reason == "Unschedulable" for c in conds)

    wait_until("PodScheduled=False/Unschedulable", unschedulable)
    assert core.read_namespaced_pod(name, k8s_namespace).status.phase == "Pending"
    core.delete_namespaced_pod(name, k8s_namespace, grace_period_seconds=0)


def test_pod_can_be_made_to_fail(k8s_api: Any, k8s_namespace: str) -> None:
    core = client.CoreV1Api(k8s_api)
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(
            name=f"crash-{uuid.uuid4().hex[:6]}", labels={FAIL_LABEL: "true"}
        ),
        spec=client.V1PodSpec(
            restart_policy="Never",
            containers=[client.V1Container(name="c", image="busybox")],
        ),
    )
    name = core.create_namespaced_pod(k8s_namespace, pod).metadata.name
    failed = wait_until(
        "phase Failed",
        lambda: (p := core.read_namespaced_pod(name, k8s_namespace)).status.phase == "Failed" and p,
    )
    state = failed.status.container_statuses[0].state.terminated
    assert state.exit_code == 1
    core.delete_namespaced_pod(name, k8s_namespace, grace_period_seconds=0)
