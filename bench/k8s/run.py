#!/usr/bin/env python3
"""Kubernetes target benchmark, on scripts/testenv's cluster (kube-apiserver
with a KWOK fake node: pods turn Ready in about a second, nothing runs).

1. Refresh of ``--services`` services (200) on one kubernetes target, each a
   Deployment, Service, Secret (``auth: key``) and HorizontalPodAutoscaler
   (``autoscale``), its own image repository: ``modelform plan
   -detailed-exitcode`` (must exit 0, "No changes.") and ``modelform drift``
   (must exit 0) beside the obvious alternative, one GET per object as a
   per-object provider (the Terraform kubernetes provider) reads what it
   manages (``get_each.py``: the objects modelform's state records, the
   namespace and four per service, through the same kubernetes Python client,
   10 at a time as Terraform's default parallelism). Each is a process of its
   own, timed (wall, CPU) and counted the same way, in turn, ``--runs`` times,
   with ``modelform plan -refresh=false`` (no request: the engine's part of a
   plan, so the refresh's part is the difference).
2. ``apply`` of ``--apply-services`` services (20) to Ready beside ``kubectl
   apply --server-side`` of the same manifests (what modelform applies:
   ``k8s_objects.manifests`` of the services' recorded attributes) followed by
   ``kubectl rollout status`` of each Deployment, in turn, ``--apply-runs``
   times, everything deleted between runs (untimed). The images are built and
   pushed before (a warm-up apply); modelform still finds each image by its
   content digest and pushes it (every layer already there), kubectl does
   not. One more modelform apply, its output lines timestamped as they come,
   shows where its time goes.

API requests are counted by the API server itself: ``apiserver_request_total``
from ``GET /metrics`` (the kubeconfig's client certificate) before and after
each process, the difference summed over the kinds these objects are of
(namespaces, deployments, replicasets, services, secrets,
horizontalpodautoscalers, pods, nodes; no subresources: the HPA and KWOK
controllers' status and scale traffic stays out; for the refresh, reads
only). The server counts every client, so another client busy with those
kinds at that moment adds to the count; modelform's own count (``Kube.calls``,
by a sitecustomize hook in one more, untimed plan and drift) and the GET
script's are given beside it, with the seconds their requests took.

The KWOK node takes 110 pods: its pod capacity (status) is raised by what the
bench adds and put back afterwards. The project is named ``mf-bench`` so its
images (``REGISTRY/mf-bench/svc-NNN``, one content) are built once and found
again by later runs; namespaces are ``mf-bench-k8s-*``, deleted at the end.
Results: printed as Markdown, written to bench/k8s/results.json (``--out``).

Usage: python bench/k8s/run.py [--services 200] [--runs 5] [--apply-services 20]
           [--apply-runs 5] [--setup-parallelism 20] [--parts refresh,apply]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("MODELFORM_CACHE", Path.home() / ".cache" / "modelform"))
MF = [sys.executable, "-m", "modelform.cli"]
PROJECT = "mf-bench"
NS_PREFIX = "mf-bench-k8s-"
#: The kinds the objects are of; requests to them (no subresource) are counted.
COUNTED = (
    "namespaces", "deployments", "replicasets", "services", "secrets",
    "horizontalpodautoscalers", "pods", "nodes",
)  # fmt: skip
KWOK_ANNOTATION = "kwok.x-k8s.io/node"


# -- the test cluster ------------------------------------------------------------------


def testenv_parts() -> dict[str, Any]:
    try:
        parts: dict[str, Any] = json.loads((CACHE / "testenv" / "env.json").read_text())["parts"]
        return parts
    except (OSError, ValueError, KeyError):
        return {}


@dataclass(frozen=True)
class Where:
    kubeconfig: str
    kubectl: str
    registry: str

    @staticmethod
    def find(args: argparse.Namespace) -> Where:
        """As given, else $KUBECONFIG, $MODELFORM_KUBECTL and $MODELFORM_REGISTRY,
        else scripts/testenv's env.json."""
        parts = testenv_parts()
        k8s, reg = parts.get("k8s", {}), parts.get("registry", {})
        kubeconfig = args.kubeconfig or os.environ.get("KUBECONFIG") or k8s.get("kubeconfig")
        kubectl = args.kubectl or os.environ.get("MODELFORM_KUBECTL") or k8s.get("kubectl")
        registry = args.registry or os.environ.get("MODELFORM_REGISTRY") or reg.get("address")
        if not (kubeconfig and kubectl and registry):
            raise SystemExit(
                "no cluster, kubectl or registry: `scripts/testenv up` (or --kubeconfig, "
                "--kubectl, --registry)"
            )
        return Where(str(kubeconfig), str(kubectl), str(registry))


Series = tuple[str, str, str, str]  # verb, resource, subresource, scope
_SERIES = re.compile(r"^apiserver_request_total\{(.*)\} (\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class Cluster:
    """The bench's own client (not modelform's), for metrics and housekeeping."""

    def __init__(self, kubeconfig: str) -> None:
        from kubernetes import client, config

        self.api = config.new_client_from_config(config_file=kubeconfig)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)

    def metrics(self) -> Counter[Series]:
        """``apiserver_request_total`` by verb, resource, subresource and scope."""
        r = self.api.call_api(
            "/metrics", "GET", auth_settings=["BearerToken"], _preload_content=False,
            _return_http_data_only=True, _request_timeout=(5, 30),
        )  # fmt: skip
        out: Counter[Series] = Counter()
        for line in r.data.decode().splitlines():
            m = _SERIES.match(line)
            if m is None:
                continue
            labels = dict(_LABEL.findall(m.group(1)))
            key = (labels.get("verb", ""), labels.get("resource", ""),
                   labels.get("subresource", ""), labels.get("scope", ""))  # fmt: skip
            out[key] += int(float(m.group(2)))
        return out

    def make_namespace(self, name: str) -> None:
        """A namespace of the bench's own, with its default ServiceAccount (pods
        made before it exists are refused)."""
        from kubernetes import client

        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        wait_for(f"namespace {name}'s default ServiceAccount", 60, lambda: any(
            sa.metadata.name == "default"
            for sa in self.core.list_namespaced_service_account(name).items
        ))  # fmt: skip

    def drop_namespace(self, name: str, timeout: float = 180) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.core.delete_namespace(name)
        except ApiException as e:
            if e.status != 404:
                raise
        wait_for(f"namespace {name} gone", timeout, lambda: not self.namespaces(name))

    def namespaces(self, prefix: str) -> list[str]:
        return [
            ns.metadata.name
            for ns in self.core.list_namespace().items
            if ns.metadata.name.startswith(prefix)
        ]

    def settled(self, ns: str) -> bool:
        """No pod or ReplicaSet left in ``ns`` (a run's objects are all gone)."""
        return not (
            self.core.list_namespaced_pod(ns).items
            or self.apps.list_namespaced_replica_set(ns).items
        )

    def kwok_node(self) -> str:
        nodes = [
            n.metadata.name
            for n in self.core.list_node().items
            if (n.metadata.annotations or {}).get(KWOK_ANNOTATION) == "fake"
            and not any(t.effect in ("NoSchedule", "NoExecute") for t in n.spec.taints or [])
        ]
        if len(nodes) != 1:
            raise SystemExit(f"expected one untainted KWOK node, found {nodes}")
        return str(nodes[0])

    def pod_capacity(self, node: str) -> int:
        return int(self.core.read_node_status(node).status.allocatable["pods"])

    def set_pod_capacity(self, node: str, pods: int) -> None:
        body = {"status": {"capacity": {"pods": str(pods)}, "allocatable": {"pods": str(pods)}}}
        self.core.patch_node_status(node, body)


def wait_for(what: str, timeout: float, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not reached in {timeout:.0f} s")
        time.sleep(0.2)


def counted(delta: Counter[Series], verbs: tuple[str, ...] = ()) -> dict[str, int]:
    """Requests to the objects' kinds (no subresource), by verb and resource;
    only ``verbs``, if given."""
    out: Counter[str] = Counter()
    for (verb, resource, sub, _), n in delta.items():
        if n and resource in COUNTED and not sub and (not verbs or verb in verbs):
            out[f"{verb} {resource}"] += n
    return dict(sorted(out.items()))


@contextmanager
def raised_pod_capacity(cluster: Cluster, node: str, more: int) -> Iterator[None]:
    """The node takes ``more`` pods than it did (so the bench's pods take no
    room other users of the cluster have), put back afterwards unless someone
    changed it meanwhile."""
    before = cluster.pod_capacity(node)
    raised = before + more
    cluster.set_pod_capacity(node, raised)
    print(f"node {node}: pod capacity {before} → {raised} while the bench runs", file=sys.stderr)
    try:
        yield
    finally:
        if cluster.pod_capacity(node) == raised:
            cluster.set_pod_capacity(node, before)
            print(f"node {node}: pod capacity back to {before}", file=sys.stderr)


# -- processes -------------------------------------------------------------------------


@dataclass
class Ran:
    wall: float
    cpu: float
    code: int
    output: str


def run_once(cmd: list[str], cwd: Path, env: dict[str, str], out: Path) -> Ran:
    """One process, its stdout and stderr written to ``out``: wall and CPU time."""
    with open(out, "wb") as f:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)  # fmt: skip
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    text = out.read_text(errors="replace")
    return Ran(wall, usage.ru_utime + usage.ru_stime, p.returncode, text)


def must(ran: Ran, cmd: list[str], codes: tuple[int, ...] = (0,), expect: str = "") -> Ran:
    if ran.code not in codes or expect not in ran.output:
        raise SystemExit(
            f"{' '.join(cmd)} exited {ran.code} (expected {codes}"
            + (f" and {expect!r}" if expect else "")
            + f"):\n{ran.output[-3000:]}"
        )
    return ran


@dataclass
class Side:
    """One contender's runs: wall and CPU seconds, API requests by the server."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    by: list[dict[str, int]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, wall: float, cpu: float, req: dict[str, int]) -> None:
        self.wall.append(wall)
        self.cpu.append(cpu)
        self.requests.append(sum(req.values()))
        self.by.append(req)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"runs": len(self.wall)}
        out.update(summary(self.wall))
        out["cpu_median"] = statistics.median(self.cpu)
        out["wall_runs"] = [round(x, 3) for x in self.wall]
        out["requests_median"] = statistics.median(self.requests)
        out["requests_min"], out["requests_max"] = min(self.requests), max(self.requests)
        # The run whose count is the smallest: the least disturbed by other clients.
        out["requests_by"] = self.by[self.requests.index(min(self.requests))]
        out.update(self.extra)
        return out


def summary(xs: list[float]) -> dict[str, float]:
    """Median, 10th and 90th percentile (inclusive: within the runs' range)."""
    if len(xs) == 1:
        return {"median": xs[0], "p10": xs[0], "p90": xs[0]}
    q = statistics.quantiles(xs, n=10, method="inclusive")
    return {"median": statistics.median(xs), "p10": q[0], "p90": q[8]}


class Meter:
    """Times a step and counts the API requests made meanwhile (only ``verbs``,
    if given: a refresh only reads, so others' writes are left out)."""

    def __init__(self, cluster: Cluster, verbs: tuple[str, ...] = ()) -> None:
        self.cluster, self.verbs = cluster, verbs

    def measure(self, side: Side, step: Callable[[], tuple[float, float]]) -> None:
        before = self.cluster.metrics()
        wall, cpu = step()
        side.add(wall, cpu, counted(self.cluster.metrics() - before, self.verbs))


# -- the project -----------------------------------------------------------------------

SCORE = """import json


def init():
    pass


def run(raw_data):
    return json.loads(raw_data)
"""


def write_project(root: Path, n: int, namespace: str, create: bool, registry: str) -> None:
    """``n`` services sharing one model, environment and score.py, each with its
    own image repository (one content: built once, found again by later runs)."""
    (root / "src").mkdir(parents=True)
    (root / "models").mkdir()
    (root / "src" / "score.py").write_text(SCORE)
    (root / "models" / "model.bin").write_bytes(b"modelform k8s bench model\n" * 64)
    lines = [
        f"project: {PROJECT}",
        "models:",
        "  m: {path: models/model.bin}",
        "environments:",
        '  plain: {python: "3.11"}',
        "targets:",
        "  cluster:",
        "    kind: kubernetes",
        f"    namespace: {namespace}",
        f"    create_namespace: {'true' if create else 'false'}",
        f"    registry: {registry}",
        "services:",
    ]
    for i in range(n):
        lines += [
            f"  svc-{i:03d}:",
            "    target: cluster",
            "    models: [m]",
            "    environment: plain",
            "    entry_script: src/score.py",
            "    auth: key",
            "    cpu: 0.01",
            "    memory_gb: 0.0625",
            "    autoscale: {min: 1, max: 2}",
        ]
    (root / "modelform.yaml").write_text("\n".join(lines) + "\n")


def state_resources(root: Path) -> dict[str, Any]:
    from modelform.state import load_backend

    state = load_backend("local", path=root / ".modelform" / "state.json").read()
    if state is None:
        raise SystemExit(f"{root}: no state")
    return dict(state.resources)


def recorded_objects(root: Path) -> list[dict[str, str]]:
    """The objects the state records: the namespace (target part) and each
    service's children, as a per-object provider's state would list them."""
    out = []
    for address, rs in sorted(state_resources(root).items()):
        a = rs.attributes
        if rs.type == "target" and "/" in address and a.get("namespace"):
            out.append({"kind": "Namespace", "namespace": "", "name": str(a["namespace"])})
        elif rs.type.startswith("kubernetes_"):
            out.append({"kind": str(a["kind"]), "namespace": str(a["metadata.namespace"]),
                        "name": str(a["metadata.name"])})  # fmt: skip
    return out


def applied_manifests(root: Path) -> list[dict[str, Any]]:
    """The objects modelform applies for each service, from its recorded
    attributes, exactly as the provider builds them (with the address
    annotation it adds), in the order it applies them."""
    from modelform.providers import k8s_objects as ko
    from modelform.providers.kubernetes import _annotated

    items = []
    for address, rs in sorted(state_resources(root).items()):
        if rs.type != "service":
            continue
        objs = ko.manifests(rs.attributes, rs.attributes.get("key"))
        items += [_annotated(objs[name], address) for name in ko.CHILD_KINDS if name in objs]
    return items


#: A sitecustomize for one plan or drift that is not timed: modelform's own
#: count of its API requests (Kube.calls of every client, and by verb and
#: resource) and the seconds they took (the refresh sends them one after
#: another), written at exit to $MODELFORM_BENCH_CALLS.
COUNT_CALLS = """
import atexit, json, os, time
from modelform.providers import k8s_api

_kubes = []
_by = {}
_init = k8s_api.Kube.__init__
_request = k8s_api.Kube.request


def _made(self, *a, **kw):
    _init(self, *a, **kw)
    _kubes.append(self)


def _resource(method, path):
    parts = path.strip("/").split("/")
    parts = parts[2:] if parts[0] == "api" else parts[3:]
    if len(parts) > 2 and parts[0] == "namespaces":
        parts = parts[2:]
    verb = "LIST" if method == "GET" and len(parts) == 1 else method
    return verb + " " + parts[0]


def _counted(self, method, path, *a, **kw):
    key = _resource(method, path)
    _by[key] = _by.get(key, 0) + 1
    return _request(self, method, path, *a, **kw)


_seconds = {"requests": 0.0, "client": 0.0}
_client = k8s_api.Kube.client.fget


def _timed_client(self):
    t0 = time.perf_counter()
    try:
        return _client(self)
    finally:
        _seconds["client"] += time.perf_counter() - t0


def _timed(self, *a, **kw):
    t0 = time.perf_counter()
    try:
        return _counted(self, *a, **kw)
    finally:
        _seconds["requests"] += time.perf_counter() - t0


k8s_api.Kube.__init__ = _made
k8s_api.Kube.request = _timed
k8s_api.Kube.client = property(_timed_client)


def _write():
    out = {"calls": sum(k.calls for k in _kubes), "by": dict(sorted(_by.items())),
           # the requests' own time: the client's making (and the import of the
           # kubernetes package, on the first request) left out
           "seconds": _seconds["requests"] - _seconds["client"]}
    with open(os.environ["MODELFORM_BENCH_CALLS"], "w") as f:
        json.dump(out, f)


atexit.register(_write)
"""


def own_count(cmd: list[str], cwd: Path, env: dict[str, str], work: Path) -> dict[str, Any]:
    hook = work / "count-calls"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(COUNT_CALLS)
    found = work / "calls.json"
    path = os.pathsep.join(p for p in (str(hook), env.get("PYTHONPATH", "")) if p)
    ran = run_once(cmd, cwd, {**env, "PYTHONPATH": path, "MODELFORM_BENCH_CALLS": str(found)},
                   work / "counted.out")  # fmt: skip
    must(ran, cmd)
    calls: dict[str, Any] = json.loads(found.read_text())
    return calls


# -- 1. refresh: plan and drift beside one GET per object -------------------------------


def bench_refresh(
    where: Where, cluster: Cluster, env: dict[str, str], work: Path, args: argparse.Namespace,
    namespace: str,
) -> dict[str, Any]:  # fmt: skip
    n = args.services
    root = work / f"refresh-{n}"
    write_project(root, n, namespace, True, where.registry)
    par = ["-parallelism", str(args.setup_parallelism)]
    print(f"applying {n} services into namespace {namespace} ({' '.join(par)})", file=sys.stderr)
    apply = [*MF, "apply", "-auto-approve", *par]
    setup = must(run_once(apply, root, env, work / "setup.out"), apply)
    built = len(re.findall(r"\] built \S+", setup.output))
    found = len(re.findall(r"\] image \S+ \(\S+\) exists: no build", setup.output))
    plan = [*MF, "plan", "-detailed-exitcode"]
    engine_only = [*MF, "plan", "-detailed-exitcode", "-refresh=false"]
    drift = [*MF, "drift"]
    objects = recorded_objects(root)
    listing = work / "objects.json"
    listing.write_text(json.dumps(objects))
    get_each = [sys.executable, str(HERE / "get_each.py"), str(listing), "--kubeconfig",
                where.kubeconfig, "--parallelism", str(args.get_parallelism)]  # fmt: skip
    # Untimed: the cluster has settled (a plan right after the apply is a no-op).
    must(run_once(plan, root, env, work / "plan.out"), plan, (0,), "No changes.")
    # plan -refresh=false sends no request: the engine's own part of a plan.
    sides = {"plan": Side(), "drift": Side(), "get_each": Side(), "plan_no_refresh": Side()}
    meter = Meter(cluster, ("GET", "LIST"))
    gets: list[dict[str, Any]] = []

    def step(name: str) -> tuple[float, float]:
        if name == "plan":
            ran = must(run_once(plan, root, env, work / "plan.out"), plan, (0,), "No changes.")
        elif name == "plan_no_refresh":
            out = work / "plan-no-refresh.out"
            ran = must(run_once(engine_only, root, env, out), engine_only, (0,), "No changes.")
        elif name == "drift":
            ran = must(run_once(drift, root, env, work / "drift.out"), drift, (0,), "No drift.")
        else:
            ran = must(run_once(get_each, root, env, work / "get.out"), get_each)
            gets.append(json.loads(ran.output.strip().splitlines()[-1]))
        return ran.wall, ran.cpu

    print(f"refresh: {args.runs} runs of plan, drift, one GET per object and plan "
          "-refresh=false", file=sys.stderr)  # fmt: skip
    for _ in range(args.runs):  # in turn, so a busy spell hits each alike
        for name, side in sides.items():
            meter.measure(side, partial(step, name))
    sides["plan"].extra["own_count"] = own_count(plan, root, env, work)
    sides["drift"].extra["own_count"] = own_count(drift, root, env, work)
    sides["get_each"].extra.update(
        own_count={
            "calls": gets[-1]["gets"],
            "by": gets[-1]["kinds"],
            "seconds": gets[-1]["seconds"],
        },  # fmt: skip
        gets_seconds=summary([g["seconds"] for g in gets]),
        parallelism=args.get_parallelism,
    )
    print(f"destroying the {n} services", file=sys.stderr)
    destroy = [*MF, "destroy", "-auto-approve", *par]
    gone = must(run_once(destroy, root, env, work / "destroy.out"), destroy)
    kinds = Counter(o["kind"] for o in objects)
    return {
        "services": n,
        "objects": dict(kinds),
        "setup": {"apply_s": round(setup.wall, 1), "images_built": built, "images_found": found,
                  "parallelism": args.setup_parallelism, "destroy_s": round(gone.wall, 1)},
        **{name: side.to_json() for name, side in sides.items()},
    }  # fmt: skip


# -- 2. apply to Ready beside kubectl ---------------------------------------------------


class Kubectl:
    def __init__(self, where: Where, work: Path, namespace: str) -> None:
        self.base = [where.kubectl, "--kubeconfig", where.kubeconfig,
                     "--cache-dir", str(work / "kubectl-cache")]  # fmt: skip
        self.work, self.namespace = work, namespace
        self.manifests = work / "manifests.json"
        self.deployments: list[str] = []

    def write(self, items: list[dict[str, Any]]) -> None:
        self.manifests.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        self.deployments = [i["metadata"]["name"] for i in items if i["kind"] == "Deployment"]

    def apply(self, env: dict[str, str]) -> tuple[float, float]:
        """``kubectl apply --server-side``, then ``kubectl rollout status`` of each
        Deployment, one after another as a script would: wall and CPU (summed)."""
        cmds = [[*self.base, "apply", "--server-side", "-f", str(self.manifests)]]
        cmds += [[*self.base, "-n", self.namespace, "rollout", "status", f"deployment/{d}",
                  "--timeout=300s"] for d in self.deployments]  # fmt: skip
        cpu, t0 = 0.0, time.perf_counter()
        for cmd in cmds:
            cpu += must(run_once(cmd, self.work, env, self.work / "kubectl.out"), cmd).cpu
        return time.perf_counter() - t0, cpu

    def delete(self, env: dict[str, str]) -> None:
        cmd = [*self.base, "delete", "--wait=true", "--ignore-not-found", "-f", str(self.manifests)]
        must(run_once(cmd, self.work, env, self.work / "kubectl-delete.out"), cmd)


def timeline(root: Path, env: dict[str, str], cmd: list[str]) -> dict[str, Any]:
    """One more apply, its output lines timestamped as they come: when the plan
    is done, each service's push and rollout, the end."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=root, env={**env, "PYTHONUNBUFFERED": "1"},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, text=True)  # fmt: skip
    assert p.stdout is not None
    lines = [(time.perf_counter() - t0, line.rstrip("\n")) for line in p.stdout]
    code = p.wait()
    end = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {code}: {lines[-20:]}")
    svc = re.compile(r"^(service\.\S+): (?:\[\d+s\] )?(.*)$")
    marks: dict[str, dict[str, float]] = {}
    first_service = end
    for t, line in lines:
        m = svc.match(line)
        if m is None:
            continue
        first_service = min(first_service, t)
        what = m.group(2)
        mark = marks.setdefault(m.group(1), {})
        for key, prefix in (("start", "Creating..."), ("find", "image "), ("push", "pushing "),
                            ("pushed", "pushed "), ("rollout", "rollout: "),
                            ("complete", "complete after")):  # fmt: skip
            if what.startswith(prefix):
                mark.setdefault(key, t)
                if key in ("rollout", "complete"):
                    mark[f"{key}_last"] = t
        if "is in the registry already" in what:  # no push: the registry has it
            mark.setdefault("push", t)
            mark.setdefault("pushed", t)

    def spans(a: str, b: str) -> dict[str, float]:
        xs = [m[b] - m[a] for m in marks.values() if a in m and b in m]
        return {k: round(v, 2) for k, v in summary(xs).items()} if xs else {}

    done = [m for m in marks.values() if "complete" in m]
    pushed = [m["pushed"] for m in marks.values() if "pushed" in m]
    return {
        "wall_s": round(end, 2),
        "first_service_line_s": round(first_service, 2),
        "last_push_done_s": round(max(pushed), 2) if pushed else None,
        "last_service_complete_s": round(max(m["complete"] for m in done), 2) if done else None,
        "start_to_image_found_s": spans("start", "find"),
        "push_s": spans("push", "pushed"),
        "pushed_to_complete_s": spans("pushed", "complete"),
        "services": len(done),
    }


def bench_apply(
    where: Where, cluster: Cluster, env: dict[str, str], work: Path, args: argparse.Namespace,
    namespace: str,
) -> dict[str, Any]:  # fmt: skip
    n = args.apply_services
    root = work / f"apply-{n}"
    write_project(root, n, namespace, False, where.registry)
    cluster.make_namespace(namespace)
    par = ["-parallelism", str(args.apply_parallelism)] if args.apply_parallelism else []
    apply = [*MF, "apply", "-auto-approve", *par]
    destroy = [*MF, "destroy", "-auto-approve"]
    kubectl = Kubectl(where, work, namespace)

    def modelform_apply() -> tuple[float, float]:
        ran = must(run_once(apply, root, env, work / "apply.out"), apply, (0,), "Apply complete!")
        return ran.wall, ran.cpu

    def settle() -> None:
        wait_for(f"namespace {namespace} empty", 180, lambda: cluster.settled(namespace))

    def modelform_destroy() -> None:
        must(run_once(destroy, root, env, work / "destroy.out"), destroy)
        settle()

    def kubectl_delete() -> None:
        kubectl.delete(env)
        settle()

    print(f"apply: warm-up of {n} services (builds and pushes their images if needed)",
          file=sys.stderr)  # fmt: skip
    warm = must(run_once(apply, root, env, work / "warm.out"), apply, (0,), "Apply complete!")
    kubectl.write(applied_manifests(root))
    modelform_destroy()
    kubectl.apply(env)  # warms kubectl's discovery cache
    kubectl_delete()
    sides = {"modelform": Side(), "kubectl": Side()}
    steps: dict[str, tuple[Callable[[], tuple[float, float]], Callable[[], None]]] = {
        "modelform": (modelform_apply, modelform_destroy),
        "kubectl": (lambda: kubectl.apply(env), kubectl_delete),
    }
    meter = Meter(cluster)
    print(f"apply: {args.apply_runs} runs each, deleted between runs", file=sys.stderr)
    for _ in range(args.apply_runs):
        for name, (run, undo) in steps.items():
            meter.measure(sides[name], run)
            undo()
    line = timeline(root, env, apply)
    modelform_destroy()
    out: dict[str, Any] = {
        "services": n,
        "parallelism": args.apply_parallelism or "default",
        "warm_up_s": round(warm.wall, 1),
        "objects": dict(Counter(i["kind"] for i in json.loads(
            kubectl.manifests.read_text())["items"])),
        **{name: side.to_json() for name, side in sides.items()},
        "timeline": line,
    }  # fmt: skip
    out["ratio_modelform_over_kubectl"] = out["modelform"]["median"] / out["kubectl"]["median"]
    return out


# -- report ----------------------------------------------------------------------------


def cell(fig: dict[str, Any]) -> str:
    return (f"{fig['median']:.2f} s ({fig['p10']:.2f}–{fig['p90']:.2f}; "
            f"CPU {fig['cpu_median']:.2f})")  # fmt: skip


def requests_cell(fig: dict[str, Any]) -> str:
    n, lo, hi = fig["requests_median"], fig["requests_min"], fig["requests_max"]
    rng = f" ({lo:g}–{hi:g})" if lo != hi else ""
    by = ", ".join(f"{k} {v}" for k, v in fig["requests_by"].items())
    return f"{n:g}{rng}: {by}"


def tables(result: dict[str, Any]) -> str:
    out = []
    ref = result.get("refresh")
    if ref:
        n, objs = ref["services"], sum(ref["objects"].values())
        head = ["measure", "runs", "wall: median (p10–p90; CPU)", "API requests (server)",
                "own count (their time)", "GET-each ÷ this: requests, wall"]  # fmt: skip
        out += [f"Refresh of {n} services ({objs} objects: "
                + ", ".join(f"{v} {k}" for k, v in ref["objects"].items()) + ")", "",
                "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]  # fmt: skip
        alt = ref["get_each"]
        labels = {"plan": "`modelform plan -detailed-exitcode`", "drift": "`modelform drift`",
                  "get_each": f"one GET per object ({alt['parallelism']} at a time)",
                  "plan_no_refresh": "`modelform plan -refresh=false` (no request: the "
                                     "engine's part of a plan)"}  # fmt: skip
        for key, label in labels.items():
            fig = ref[key]
            ratio = "—" if key in ("get_each", "plan_no_refresh") else (
                f"{alt['requests_median'] / max(fig['requests_median'], 1):.1f}×, "
                f"{alt['median'] / fig['median']:.2f}×")  # fmt: skip
            own = fig.get("own_count")
            counts = f"{own['calls']} ({own['seconds']:.2f} s)" if own else "—"
            reqs = requests_cell(fig) if fig["requests_by"] else f"{fig['requests_median']:g}"
            cells = [label, str(fig["runs"]), cell(fig), reqs, counts, ratio]
            out.append("| " + " | ".join(cells) + " |")
        s = ref["setup"]
        out += ["", f"setup: apply of {n} services {s['apply_s']} s (-parallelism "
                f"{s['parallelism']}; images built {s['images_built']}, found "
                f"{s['images_found']}); destroy {s['destroy_s']} s; the GETs in the "
                f"process: {alt['gets_seconds']['median']:.2f} s (median)", ""]  # fmt: skip
    app = result.get("apply")
    if app:
        head = ["apply to Ready", "runs", "wall: median (p10–p90; CPU)", "API requests (server)"]
        out += [f"Apply of {app['services']} services to Ready (KWOK), objects: "
                + ", ".join(f"{v} {k}" for k, v in app["objects"].items()), "",
                "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]  # fmt: skip
        par = "" if app["parallelism"] == "default" else f" -parallelism {app['parallelism']}"
        labels = {"modelform": f"`modelform apply -auto-approve{par}`",
                  "kubectl": "`kubectl apply --server-side` + `rollout status` each"}  # fmt: skip
        for key, label in labels.items():
            fig = app[key]
            out.append(f"| {label} | {fig['runs']} | {cell(fig)} | {requests_cell(fig)} |")
        tl = app["timeline"]
        out += ["", f"modelform ÷ kubectl: {app['ratio_modelform_over_kubectl']:.2f}×", "",
                f"timeline of one more modelform apply: first service line at "
                f"{tl['first_service_line_s']} s, last push done {tl['last_push_done_s']} s, "
                f"last service complete {tl['last_service_complete_s']} s, exit {tl['wall_s']} s;"
                f" per service (median, p90): start → image found "
                f"{tl['start_to_image_found_s'].get('median')}, "
                f"{tl['start_to_image_found_s'].get('p90')} s; push "
                f"{tl['push_s'].get('median')}, {tl['push_s'].get('p90')} s; pushed → Ready "
                f"{tl['pushed_to_complete_s'].get('median')}, "
                f"{tl['pushed_to_complete_s'].get('p90')} s"]  # fmt: skip
    return "\n".join(out)


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {mem:.0f} GiB, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def commit() -> str:
    """The commit of the modelform this Python imports (a clean worktree, or
    this checkout), and whether its working tree has changes."""
    import modelform.engine

    # resolve(): a strict editable install reaches the files through a link tree
    git = ["git", "-C", str(Path(modelform.engine.__file__).resolve().parents[1])]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    return head.stdout.strip() + (" + uncommitted changes" if dirty else "")


def versions(where: Where) -> dict[str, str]:
    out = subprocess.run([where.kubectl, "--kubeconfig", where.kubeconfig, "version", "-o", "json"],
                         capture_output=True, text=True)  # fmt: skip
    try:
        v = json.loads(out.stdout)
        return {"kubectl": v["clientVersion"]["gitVersion"],
                "server": v["serverVersion"]["gitVersion"]}  # fmt: skip
    except (ValueError, KeyError):
        return {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--services", type=int, default=200, help="services refreshed")
    ap.add_argument("--runs", type=int, default=5, help="plans, drifts and GET-each runs")
    ap.add_argument("--apply-services", type=int, default=20)
    ap.add_argument("--apply-runs", type=int, default=5)
    ap.add_argument("--setup-parallelism", type=int, default=20,
                    help="-parallelism of the setup apply and destroy of --services")  # fmt: skip
    ap.add_argument("--get-parallelism", type=int, default=10, help="GET-each: GETs at once")
    ap.add_argument("--apply-parallelism", type=int,
                    help="-parallelism of the timed applies (default: modelform's)")  # fmt: skip
    ap.add_argument("--parts", default="refresh,apply", help="refresh, apply or both")
    ap.add_argument("--kubeconfig")
    ap.add_argument("--kubectl")
    ap.add_argument("--registry")
    ap.add_argument("--out", type=Path, default=HERE / "results.json")
    args = ap.parse_args()
    parts = {p for p in args.parts.split(",") if p}
    if not parts or parts - {"refresh", "apply"}:
        ap.error("--parts: refresh, apply or refresh,apply")
    where = Where.find(args)
    env = {**os.environ, "KUBECONFIG": where.kubeconfig, "MODELFORM_KUBECTL": where.kubectl}
    env.pop("MODELFORM_STATE", None)  # it would put every state in one file
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up on a plain kill too
    cluster = Cluster(where.kubeconfig)
    tag = uuid.uuid4().hex[:6]
    namespaces = {"refresh": f"{NS_PREFIX}{tag}", "apply": f"{NS_PREFIX}{tag}-apply"}
    started = time.strftime("%Y-%m-%d %H:%M")
    load_before = os.getloadavg()
    result: dict[str, Any] = {}
    node = cluster.kwok_node()
    more = max(args.services if "refresh" in parts else 0,
               args.apply_services if "apply" in parts else 0)  # fmt: skip
    try:
        with raised_pod_capacity(cluster, node, more), \
                tempfile.TemporaryDirectory(prefix="modelform-bench-k8s-") as tmp:  # fmt: skip
            work = Path(tmp)
            if "apply" in parts:  # first, on a quiet cluster
                result["apply"] = bench_apply(where, cluster, env, work, args, namespaces["apply"])
            if "refresh" in parts:
                result["refresh"] = bench_refresh(
                    where, cluster, env, work, args, namespaces["refresh"]
                )
    finally:
        for ns in cluster.namespaces(f"{NS_PREFIX}{tag}"):
            cluster.drop_namespace(ns)
    report = {
        "date": started,
        "machine": machine(),
        "load_average": [round(x, 1) for x in (*load_before, *os.getloadavg())],
        "command": " ".join(["python", "bench/k8s/run.py", *sys.argv[1:]]),
        "modelform": commit(),
        "kubernetes": versions(where),
        "node": node,
        **result,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"machine: {report['machine']}; modelform {report['modelform']}; "
          f"Kubernetes {report['kubernetes'].get('server', '?')} (KWOK node {node}); "
          f"load average before/after {report['load_average']}")  # fmt: skip
    print(tables(report))


if __name__ == "__main__":
    main()
