"""The kubernetes target's objects: manifests, what drift compares, rollout states."""

from __future__ import annotations

from typing import Any

from modelform.plugin import UNKNOWN
from modelform.providers import k8s_objects as ko


def _attrs(**over: Any) -> dict[str, Any]:
    a = {
        "project": "fraud", "name": "fraud-api", "namespace": "ml", "service_type": "ClusterIP",
        "labels": ko.labels("fraud", "api", "fraud-api", "L1"), "port": 80,
        "image": "reg:5000/fraud/api@sha256:" + "a" * 64, "env": {"A": "1"}, "auth": "none",
        "cpu": 0.5, "memory_gb": 1.5, "limits": False, "workers": 2, "timeout_seconds": 30,
        "replicas": 3, "autoscale": None, "rollout_timeout_seconds": 300,
    }  # fmt: skip
    return {**a, **over}


def test_quantities_are_written_as_the_api_server_writes_them_back() -> None:
    assert [ko.cpu_quantity(c) for c in (0.5, 1, 2.0, 0.25, 1.5)] == ["500m", "1", "2", "250m",
                                                                     "1500m"]  # fmt: skip
    assert [ko.memory_quantity(g) for g in (0.5, 1, 1.5, 4)] == ["512Mi", "1Gi", "1536Mi", "4Gi"]


def test_names_are_dns_labels() -> None:
    assert ko.object_name("Fraud", "api_v2") == "fraud-api-v2"
    long = ko.object_name("p" * 40, "s" * 40)
    assert len(long) == 63 and long == ko.object_name("p" * 40, "s" * 40)


def test_a_service_is_a_deployment_and_a_service_and_with_key_a_secret() -> None:
    objs = ko.manifests(_attrs(), None)
    assert list(objs) == ["deployment", "service"]
    c = objs["deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"] == {"requests": {"cpu": "500m", "memory": "1536Mi"}}
    assert c["args"] == ["--workers", "2", "--timeout", "30"]
    assert objs["deployment"]["spec"]["replicas"] == 3
    keyed = ko.manifests(_attrs(auth="key", limits=True), "s3cret")
    assert keyed["secret"]["stringData"] == {"key": "s3cret"}
    ck = keyed["deployment"]["spec"]["template"]["spec"]["containers"][0]
    ref = {"secretKeyRef": {"name": "fraud-api", "key": "key"}}
    assert ck["env"][-1] == {"name": "MODELFORM_AUTH_KEY", "valueFrom": ref}
    assert ck["resources"]["limits"] == ck["resources"]["requests"]
    assert "s3cret" not in str(ko.managed(keyed["secret"]))  # only its digest is recorded


def test_with_an_autoscaler_the_deployment_leaves_replicas_to_it() -> None:
    objs = ko.manifests(_attrs(replicas=None, autoscale={"min": 2, "max": 6, "target_cpu": 50}),
                        None)  # fmt: skip
    assert "replicas" not in objs["deployment"]["spec"]
    hpa = objs["hpa"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 50


def test_drift_sees_only_what_modelform_sets() -> None:
    dep = ko.manifests(_attrs(), None)["deployment"]
    recorded = ko.managed(dep)
    assert recorded["spec.replicas"] == 3
    assert recorded["spec.template.spec.containers[*]"] == ["model"]
    assert recorded["spec.template.spec.containers[model].env[*]"] == ["A"]
    live = _live(dep)
    assert ko.observed(recorded, live) == recorded  # defaults and others' annotations: no drift
    live["spec"]["replicas"] = 5
    live["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "B", "value": "2"})
    seen = ko.observed(recorded, live)
    changed = {k for k in recorded if seen[k] != recorded[k]}
    assert changed == {"spec.replicas", "spec.template.spec.containers[model].env[*]"}


def test_overlay_puts_back_modelform_s_fields_and_keeps_the_rest() -> None:
    dep = ko.manifests(_attrs(), None)["deployment"]
    live = _live(dep)
    live["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "B", "value": "2"})
    fixed = ko.overlay(live, dep)
    assert fixed["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "A", "value": "1"}
    ]
    assert fixed["metadata"]["annotations"] == live["metadata"]["annotations"]
    assert fixed["status"] == live["status"]


def test_an_unknown_key_is_recorded_as_unknown() -> None:
    secret = ko.manifests(_attrs(auth="key"), UNKNOWN)["secret"]
    assert ko.managed(secret)["key_digest"] is UNKNOWN


def _dep(generation: int = 2, observed: int = 2, **status: Any) -> dict[str, Any]:
    return {"metadata": {"generation": generation}, "spec": {"replicas": 2},
            "status": {"observedGeneration": observed, **status}}  # fmt: skip


def _pod(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p-1"}, "status": status}


def test_rollout_states() -> None:
    healthy = _dep(updatedReplicas=2, availableReplicas=2, readyReplicas=2, replicas=2)
    assert ko.rollout(healthy, [], strict=True) == ("Healthy", "")
    stale = _dep(generation=3, observed=2, updatedReplicas=2, availableReplicas=2, replicas=2)
    assert ko.rollout(stale, [], strict=True)[0] == "Transitioning"
    one = _dep(updatedReplicas=2, availableReplicas=1, replicas=2)
    assert ko.rollout(one, [], strict=True)[0] == "Transitioning"
    assert ko.rollout(one, [], strict=False)[0] == "Healthy"  # an autoscaler adding pods
    why = "0/1 nodes are available: 1 Insufficient cpu."
    pending = _pod(conditions=[{"type": "PodScheduled", "status": "False", "message": why}])
    assert ko.rollout(one, [pending], strict=True) == (
        "Unschedulable",
        "pod p-1: 0/1 nodes are available: 1 Insufficient cpu.",
    )
    pull = _pod(containerStatuses=[{"state": {"waiting": {"reason": "ImagePullBackOff",
                                                          "message": "not found"}}}])  # fmt: skip
    assert ko.rollout(one, [pull], strict=True)[0] == "Failed"
    crash = _pod(phase="Failed", containerStatuses=[{"state": {"terminated": {"exitCode": 3}}}])
    assert ko.rollout(one, [crash], strict=True) == (
        "Failed",
        "pod p-1 failed: exit code 3 (terminated)",
    )
    late = _dep(conditions=[{"type": "Progressing", "reason": "ProgressDeadlineExceeded",
                             "message": "ReplicaSet has timed out progressing."}])  # fmt: skip
    assert ko.rollout(late, [], strict=True)[0] == "Failed"


def _live(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` as the API server returns it: defaults filled in, others' annotations."""
    import copy

    live = copy.deepcopy(obj)
    live["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "4"}
    live["metadata"]["uid"] = "u-1"
    live["spec"]["revisionHistoryLimit"] = 10
    c = live["spec"]["template"]["spec"]["containers"][0]
    c["terminationMessagePath"] = "/dev/termination-log"
    c["imagePullPolicy"] = "IfNotPresent"
    c["ports"][0]["protocol"] = "TCP"
    c["readinessProbe"]["timeoutSeconds"] = 1
    live["status"] = {"replicas": 3}
    return live
