"""The kubernetes target through the CLI, against the real kube-apiserver (KWOK
node: pods turn Ready, no container runs), the real registry and Docker.

Each test deploys examples/kubernetes into a namespace of its own, which
modelform creates and removes.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import Project, Result

pytestmark = [pytest.mark.k8s, pytest.mark.docker, pytest.mark.registry]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "kubernetes"
MANAGED = "app.kubernetes.io/managed-by=modelform"


class Cluster(Project):
    """examples/kubernetes, in a fresh namespace, with kubectl at hand."""

    def __init__(self, root: Path, kubeconfig: Path, namespace: str) -> None:
        env = {"KUBECONFIG": str(kubeconfig)}
        super().__init__(root, env)
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.kubectl_bin = str(kubeconfig.parent.parent / "bin" / "kubectl")

    def yaml(self, old: str, new: str) -> None:
        f = self.root / "modelform.yaml"
        text = f.read_text()
        assert old in text, old
        f.write_text(text.replace(old, new, 1))

    def kubectl(self, *args: str, check: bool = True) -> str:
        p = subprocess.run(
            [self.kubectl_bin, "--kubeconfig", str(self.kubeconfig), "-n", self.namespace, *args],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if check:
            assert p.returncode == 0, p.stderr
        return p.stdout

    def get(self, kind: str, name: str = "diabetes-diabetes") -> dict[str, Any]:
        return json.loads(self.kubectl("get", kind, name, "-o", "json"))  # type: ignore[no-any-return]

    def apply(self, *args: str) -> Result:
        r = self.run("apply", "-auto-approve", *args, timeout=900)
        assert "Traceback" not in r.text, r.text
        return r


@pytest.fixture
def cluster(
    tmp_path: Path, kubeconfig: Path, registry_address: str, base_image: str
) -> Iterator[Cluster]:
    root = tmp_path / "k8s"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".modelform", "models"))
    subprocess.run([sys.executable, "train.py"], cwd=root, check=True, capture_output=True)
    ns = f"mf-e2e-{uuid.uuid4().hex[:6]}"
    c = Cluster(root, kubeconfig, ns)
    c.yaml("namespace: ml", f"namespace: {ns}")
    c.yaml("default: 127.0.0.1:15000", f"default: {registry_address}")
    yield c
    c.run("destroy", "-auto-approve", timeout=600)
    c.kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait=false", check=False)


def test_the_example_rolls_out_with_the_declared_spec_and_plans_no_change(
    cluster: Cluster,
) -> None:
    r = cluster.apply()
    assert r.code == 0, r.text
    assert "rollout: 2/2 updated, 2/2 ready, 2/2 available" in r.out
    assert "test request not sent: the pods run on kwok-node-0, a fake (KWOK) node" in r.out
    dep = cluster.get("deployment")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert dep["spec"]["replicas"] == 2
    assert re.fullmatch(r"[\d.:]+/diabetes/diabetes@sha256:[0-9a-f]{64}", c["image"]), c["image"]
    assert c["resources"] == {"requests": {"cpu": "500m", "memory": "512Mi"}}
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert dep["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "modelform"
    assert dep["status"]["availableReplicas"] == 2
    assert cluster.get("service")["spec"]["type"] == "ClusterIP"
    again = cluster.run("plan", "-detailed-exitcode")
    assert again.code == 0, again.text
    status = cluster.run("status")
    assert re.search(r"service\.diabetes\s+kubernetes Healthy", status.out), status.text


def test_a_new_model_rolls_a_new_image_and_replicas_change_in_place(cluster: Cluster) -> None:
    assert cluster.apply().code == 0
    before = cluster.get("deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    subprocess.run([sys.executable, "train.py", "--alpha", "2"], cwd=cluster.root, check=True,
                   capture_output=True)  # fmt: skip
    plan = cluster.run("plan", "-detailed-exitcode")
    assert plan.code == 2, plan.text
    assert "model ridge: ridge:1 → ridge:2 (new image, rolling update)" in plan.out
    assert "service.diabetes will be updated in place" in plan.out
    r = cluster.apply()
    assert r.code == 0, r.text
    after = cluster.get("deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert after != before and "@sha256:" in after
    assert cluster.run("plan", "-detailed-exitcode").code == 0
    cluster.yaml("replicas: 2", "replicas: 3")
    plan = cluster.run("plan")
    assert "replicas 2 → 3 (in place)" in plan.out and "spec.replicas: 2 → 3" in plan.out
    assert "known after apply" not in plan.out  # no new image
    uid = cluster.get("deployment")["metadata"]["uid"]
    assert cluster.apply().code == 0
    dep = cluster.get("deployment")
    assert dep["spec"]["replicas"] == 3 and dep["metadata"]["uid"] == uid
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == after


def test_hand_changes_are_drift_and_apply_heals_them_but_autoscaling_is_not(
    cluster: Cluster,
) -> None:
    assert cluster.apply().code == 0
    cluster.kubectl("scale", "deployment/diabetes-diabetes", "--replicas=4")
    cluster.kubectl("set", "env", "deployment/diabetes-diabetes", "FOO=bar")
    d = cluster.run("drift")
    assert d.code == 2, d.text
    assert "spec.replicas = 2 → 4" in d.out
    names = '["OMP_NUM_THREADS", "MODELFORM_AUTH_KEY"'
    assert f'env[*] = {names}] → {names}, "FOO"]' in d.out, d.out
    assert cluster.apply().code == 0
    assert cluster.run("drift").code == 0
    dep = cluster.get("deployment")
    assert dep["spec"]["replicas"] == 2
    assert [e["name"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]] == [
        "OMP_NUM_THREADS", "MODELFORM_AUTH_KEY",
    ]  # fmt: skip
    cluster.kubectl("delete", "service", "diabetes-diabetes")
    d = cluster.run("drift")
    assert d.code == 2 and "service.diabetes/service has been deleted" in d.out, d.text
    assert cluster.apply().code == 0
    assert cluster.run("drift").code == 0
    # With an autoscaler the replica count is not modelform's: it moving is no drift.
    cluster.yaml("replicas: 2", "autoscale: {min: 2, max: 5, target_cpu: 60}")
    r = cluster.apply()
    assert r.code == 0, r.text
    hpa = cluster.get("hpa")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    cluster.kubectl("scale", "deployment/diabetes-diabetes", "--replicas=5")
    d = cluster.run("drift")
    assert d.code == 0, d.text
    assert cluster.run("plan", "-detailed-exitcode").code == 0


def test_an_unschedulable_rollout_is_tainted_and_rolled_back(cluster: Cluster) -> None:
    assert cluster.apply().code == 0
    serving = cluster.get("deployment")["spec"]["template"]["spec"]["containers"][0]
    cluster.yaml("cpu: 0.5", "cpu: 64\n    rollback_on_failure: true")
    r = cluster.apply()
    assert r.code == 1, r.text
    err = [line for line in r.err.splitlines() if line.startswith("Error:")]
    assert len(err) == 1, r.err
    assert "Unschedulable: pod diabetes-diabetes-" in err[0]
    assert "Insufficient cpu" in err[0]  # the scheduler's own words
    assert "rolled back to revision" in err[0] and "which serves again" in err[0], r.text
    dep = cluster.get("deployment")
    now = dep["spec"]["template"]["spec"]["containers"][0]
    assert now["resources"] == serving["resources"] and now["image"] == serving["image"]
    assert dep["status"].get("availableReplicas") == 2
    status = cluster.run("status")
    assert "Unschedulable (tainted)" in status.out, status.text
    plan = cluster.run("plan")
    assert "tainted" in plan.out and "Unschedulable" in plan.out, plan.text
    # Back to what fits: the next apply makes it whole and it plans clean.
    cluster.yaml("cpu: 64", "cpu: 0.5")
    assert cluster.apply().code == 0
    assert cluster.run("plan", "-detailed-exitcode").code == 0


def test_the_key_is_in_the_secret_and_never_printed(cluster: Cluster) -> None:
    outputs = [cluster.run("plan"), cluster.apply()]
    key = base64.b64decode(cluster.get("secret")["data"]["key"]).decode()
    assert len(key) >= 32
    outputs += [cluster.run(*c) for c in (("plan",), ("status",), ("logs", "diabetes"),
                                          ("state", "show", "service.diabetes"), ("drift",),
                                          ("status", "-json"), ("plan", "-json"))]  # fmt: skip
    for r in outputs:
        assert key not in r.text
    env = cluster.get("deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    ref = {"secretKeyRef": {"name": "diabetes-diabetes", "key": "key"}}
    assert {"name": "MODELFORM_AUTH_KEY", "valueFrom": ref} in env


def test_destroy_leaves_nothing_labelled_and_removes_only_a_namespace_it_made(
    cluster: Cluster,
) -> None:
    assert cluster.apply().code == 0
    assert cluster.kubectl("get", "all,secret,hpa", "-l", MANAGED, "-o", "name").strip()
    r = cluster.run("destroy", "-auto-approve", timeout=600)
    assert r.code == 0, r.text
    left = cluster.kubectl("get", "all,secret,hpa", "-l", MANAGED, "-o", "name", check=False)
    assert left.strip() == ""
    gone = subprocess.run(
        [cluster.kubectl_bin, "--kubeconfig", str(cluster.kubeconfig), "get", "namespace",
         cluster.namespace], capture_output=True, text=True,
    )  # fmt: skip
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    # A namespace modelform did not make stays.
    cluster.kubectl("create", "namespace", cluster.namespace)
    cluster.yaml("create_namespace: true", "create_namespace: false")
    assert cluster.apply().code == 0
    assert cluster.run("destroy", "-auto-approve", timeout=600).code == 0
    assert cluster.kubectl("get", "all,secret,hpa", "-l", MANAGED, "-o", "name").strip() == ""
    still = subprocess.run(
        [cluster.kubectl_bin, "--kubeconfig", str(cluster.kubeconfig), "get", "namespace",
         cluster.namespace], capture_output=True, text=True,
    )  # fmt: skip
    assert still.returncode == 0, still.stderr


def test_on_a_real_node_the_test_request_scores_through_the_service_proxy(
    cluster: Cluster, real_node: Any
) -> None:
    """The real kubelet's node runs the service's image in a real pod: the
    check's test request goes through the API server's service proxy and the
    runtime's answer is checked; the pod's log is the runtime's own."""
    placement = (
        f"    node_selector: {json.dumps(real_node.node_selector)}\n"
        f"    tolerations: {json.dumps(real_node.tolerations)}\n"
    )
    cluster.yaml("    registry: ${var.registry}\n", "    registry: ${var.registry}\n" + placement)
    cluster.yaml("replicas: 2", "replicas: 1")
    cluster.yaml("      request: {data", "      expect_status: 200\n      request: {data")
    r = cluster.apply()
    assert r.code == 0, r.text
    assert "running the service's test request through the API server's service proxy" in r.out
    assert "test request not sent" not in r.out
    pods = json.loads(cluster.kubectl("get", "pods", "-o", "json"))["items"]
    assert {p["spec"]["nodeName"] for p in pods} == {real_node.name}
    logs = cluster.run("logs", "diabetes")
    assert logs.code == 0 and "[diabetes-diabetes-" in logs.out, logs.text
    scored = cluster.run("invoke", "diabetes", "-d", "@request.json")
    assert scored.code == 0, scored.text
    predictions = json.loads(scored.out)
    assert isinstance(predictions, list) and len(predictions) == 2, scored.out
    # A wrong expectation fails the check: the answer really is the model's.
    cluster.yaml("      expect_status: 200\n", "      expect: [1, 2]\n")
    cluster.yaml("replicas: 1", "replicas: 1\n    env: {ROUND: '2'}")
    bad = cluster.apply()
    assert bad.code == 1 and "test request: output differs from expect" in bad.text, bad.text


def test_a_namespace_move_leaves_nothing_behind_and_a_foreign_namespace_is_never_claimed(
    cluster: Cluster,
) -> None:
    assert cluster.apply().code == 0
    old = cluster.namespace
    new = f"{old}-b"
    cluster.kubectl("create", "namespace", new)  # someone else's, before modelform comes
    cluster.yaml(f"namespace: {old}", f"namespace: {new}")
    plan = cluster.run("plan")
    assert f"namespace {new} exists and is not modelform's: used as it is, never removed" in (
        plan.out
    ), plan.text
    r = cluster.apply()
    assert r.code == 0, r.text
    gone = subprocess.run(
        [cluster.kubectl_bin, "--kubeconfig", str(cluster.kubeconfig), "get", "namespace", old],
        capture_output=True, text=True,
    )  # fmt: skip
    assert gone.returncode != 0, "the namespace modelform made is removed when it moves"
    cluster.namespace = new
    assert cluster.get("deployment")["status"]["availableReplicas"] == 2
    assert cluster.run("plan", "-detailed-exitcode").code == 0
    assert cluster.run("destroy", "-auto-approve", timeout=600).code == 0
    assert cluster.kubectl("get", "all,secret,hpa", "-l", MANAGED, "-o", "name").strip() == ""
    assert cluster.kubectl("get", "namespace", new, "-o", "name").strip() == f"namespace/{new}"
    cluster.kubectl("delete", "namespace", new, "--wait=false")
