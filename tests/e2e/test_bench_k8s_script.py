"""``bench/k8s/run.py`` runs, in a tiny configuration, against the real cluster
(kube-apiserver with KWOK), the registry and the Docker Engine, so the benchmark
cannot rot. Its figures are not judged: only that every part ran and was checked
(the no-op plan and drift exit 0, every object was found by its GET, each apply
reached Ready), that the requests were counted by the API server and by the
contenders themselves, and that it leaves nothing behind (no namespace, the KWOK
node's pod capacity as it was)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.helpers import REPO


def bench_namespaces(core: client.CoreV1Api) -> set[str]:
    return {
        ns.metadata.name
        for ns in core.list_namespace().items
        if ns.metadata.name.startswith("mf-bench-k8s-")
    }


def pod_capacities(core: client.CoreV1Api) -> dict[str, str]:
    return {n.metadata.name: n.status.allocatable["pods"] for n in core.list_node().items}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_k8s_bench_runs_against_the_cluster(
    tmp_path: Path,
    k8s_info: dict[str, Any],
    k8s_api: Any,
    registry_address: str,
    docker_client: Any,
) -> None:
    core = client.CoreV1Api(k8s_api)
    out = tmp_path / "results.json"
    env = {
        **os.environ,
        "KUBECONFIG": str(k8s_info["kubeconfig"]),
        "MODELFORM_KUBECTL": str(k8s_info["kubectl"]),
        "MODELFORM_REGISTRY": registry_address,
    }
    env.pop("MODELFORM_STATE", None)
    namespaces, capacities = bench_namespaces(core), pod_capacities(core)
    r = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "k8s" / "run.py"),
            *("--services", "3", "--runs", "1", "--setup-parallelism", "3"),
            *("--apply-services", "2", "--apply-runs", "1"),
            *("--out", str(out)),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=580,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "| measure | runs | wall: median (p10–p90; CPU) | API requests (server) |" in r.stdout
    assert "| apply to Ready | runs |" in r.stdout
    assert "machine: " in r.stdout

    result = json.loads(out.read_text())
    ref = result["refresh"]
    assert ref["services"] == 3
    assert ref["objects"] == {
        "Namespace": 1,
        "Deployment": 3,
        "HorizontalPodAutoscaler": 3,
        "Secret": 3,
        "Service": 3,
    }
    for side in ("plan", "drift", "get_each"):
        assert ref[side]["runs"] == 1
        # The server counts every client, so at least what the contender sent.
        assert ref[side]["requests_min"] >= ref[side]["own_count"]["calls"] > 0
    assert ref["get_each"]["own_count"]["calls"] == 13  # one GET per object
    assert ref["get_each"]["requests_by"].get("GET deployments", 0) >= 3
    # modelform lists: one list per kind, whatever the number of services.
    assert ref["plan"]["own_count"]["by"].get("LIST deployments") == 1
    assert ref["plan"]["own_count"]["seconds"] > 0

    app = result["apply"]
    assert app["services"] == 2
    assert app["objects"]["Deployment"] == 2
    assert app["modelform"]["runs"] == app["kubectl"]["runs"] == 1
    assert app["modelform"]["requests_by"].get("APPLY deployments", 0) >= 2  # server-side apply
    assert app["timeline"]["services"] == 2
    assert app["timeline"]["start_to_image_found_s"]["median"] >= 0
    assert app["ratio_modelform_over_kubectl"] > 0

    assert bench_namespaces(core) == namespaces, "the bench left a namespace behind"
    assert pod_capacities(core) == capacities, "the bench left a node's pod capacity changed"
