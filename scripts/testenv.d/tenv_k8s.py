"""The Kubernetes part: build the control plane from the Go module proxy, start it, add a
KWOK fake node."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

from tenv_certs import Certs, api_request
from tenv_common import Layout, PartError, wait_until, write_private
from tenv_gobuild import go_install, is_built, module_info, staging_modules, wrapper_build
from tenv_k8s_servers import (
    KWOK_NODE,
    Etcd,
    K8sServer,
    KubeAPIServer,
    KubeControllerManager,
    KubeScheduler,
    Kwok,
)

K8S_BINARIES = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"]
ETCD_BINARIES = ["etcd", "etcdctl"]
# KWOK's own stage definitions (shipped in its module) that make fake pods and nodes live.
KWOK_STAGES = [
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
    "pod/chaos/pod-container-running-failed.yaml",
]
NODE_CAPACITY = {"cpu": "32", "memory": "256Gi", "pods": "110"}


def fake_node() -> dict:
    """The one KWOK node: no taint, so any pod without a nodeSelector lands on it."""
    labels = {
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/os": "linux",
        "kubernetes.io/hostname": KWOK_NODE,
        "kubernetes.io/role": "agent",
        "node-role.kubernetes.io/agent": "",
        "type": "kwok",
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": KWOK_NODE,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
            "labels": labels,
        },
        "spec": {},
        "status": {
            "allocatable": NODE_CAPACITY,
            "capacity": NODE_CAPACITY,
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "fake",
                "kubeProxyVersion": "fake",
                "bootID": "",
                "containerRuntimeVersion": "",
                "kernelVersion": "",
                "machineID": "",
                "osImage": "",
                "systemUUID": "",
            },
            "phase": "Running",
        },
    }


def build_kubernetes(
    layout: Layout, versions: dict[str, str], binaries: list[str], log: Path
) -> None:
    """Build k8s.io/kubernetes/cmd/<binary> for each binary through the wrapper module."""
    version = versions["KUBERNETES_VERSION"]
    staging = versions["KUBERNETES_STAGING_VERSION"]
    if all(is_built(layout, b, version) for b in binaries):
        return
    # k8s.io/kubernetes replaces its k8s.io/* staging modules with local folders, which
    # a dependent module cannot see: pin every one of them to the published version.
    upstream = Path(module_info(layout, "k8s.io/kubernetes", version)["GoMod"])
    modules = staging_modules(upstream.read_text())
    if not modules:
        raise PartError(f"no staging modules found in {upstream}")
    require = "".join(f"\t{m} {staging}\n" for m in modules)
    replace = "".join(f"\t{m} => {m} {staging}\n" for m in modules)
    go_mod = (
        "module modelform.local/testenv-kubernetes\n\n"
        f"go {versions['WRAPPER_GO_DIRECTIVE']}\n\n"
        f"godebug default=go{versions['WRAPPER_GO_DIRECTIVE'].rsplit('.', 1)[0]}\n\n"
        f"require (\n\tk8s.io/kubernetes {version}\n{require})\n\n"
        f"replace (\n{replace})\n"
    )
    major, minor = version.lstrip("v").split(".")[:2]
    ldflags = " ".join(
        ["-s", "-w"]
        + [
            f"-X {pkg}.{key}={value}"
            for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
            for key, value in (
                ("gitVersion", version),
                ("gitMajor", major),
                ("gitMinor", minor),
                ("gitTreeState", "clean"),
            )
        ]
    )
    targets = {b: f"k8s.io/kubernetes/cmd/{b}" for b in binaries}
    wrapper_build(layout, "kubernetes", go_mod, targets, version, ldflags, log)


def _started_as_now(server: K8sServer) -> bool:
    """Running with the flags this testenv would give it (else `up` restarts the plane)."""
    try:
        return json.loads(server.daemon.record.read_text()).get("argv") == server.argv()
    except (OSError, ValueError):
        return False


class K8sPart:
    name = "k8s"

    def __init__(self, layout: Layout, versions: dict[str, str]) -> None:
        self.layout = layout
        self.versions = versions
        self.certs = Certs(layout)
        self.etcd = Etcd(layout, versions, self.certs)
        self.apiserver = KubeAPIServer(layout, versions, self.certs)
        self.kwok = Kwok(layout, versions, self.certs)
        self.servers: list[K8sServer] = [
            self.etcd,
            self.apiserver,
            KubeControllerManager(layout, versions, self.certs),
            KubeScheduler(layout, versions, self.certs),
            self.kwok,
        ]

    @property
    def kubeconfig(self) -> Path:
        return self.layout.etc / "kubeconfig"

    def env(self) -> dict[str, str]:
        return {
            "kubeconfig": str(self.kubeconfig),
            "kubectl": str(self.layout.bin / "kubectl"),
            "server": self.apiserver.server,
            "node": KWOK_NODE,
        }

    # ---- build ---------------------------------------------------------------------------

    def built(self) -> bool:
        v = self.versions
        return (
            all(is_built(self.layout, b, v["KUBERNETES_VERSION"]) for b in K8S_BINARIES)
            and all(is_built(self.layout, b, v["ETCD_VERSION"]) for b in ETCD_BINARIES)
            and is_built(self.layout, "kwok", v["KWOK_VERSION"])
            and self.kwok.stages.exists()
        )

    def build(self) -> None:
        # One after the other: each Go build already uses both cores.
        self._build_etcd()
        self._build_kubernetes()
        self._build_kwok()

    def _build_etcd(self) -> None:
        version = self.versions["ETCD_VERSION"]
        go_mod = (
            "module modelform.local/testenv-etcd\n\n"
            f"go {self.versions['WRAPPER_GO_DIRECTIVE']}\n\n"
            "require (\n"
            f"\tgo.etcd.io/etcd/server/v3 {version}\n"
            f"\tgo.etcd.io/etcd/etcdctl/v3 {version}\n"
            ")\n"
        )
        targets = {"etcd": "go.etcd.io/etcd/server/v3", "etcdctl": "go.etcd.io/etcd/etcdctl/v3"}
        wrapper_build(
            self.layout,
            "etcd",
            go_mod,
            targets,
            version,
            "-s -w",
            self.layout.logs / "build-etcd.log",
        )

    def _build_kubernetes(self) -> None:
        build_kubernetes(
            self.layout, self.versions, K8S_BINARIES, self.layout.logs / "build-kubernetes.log"
        )

    def _build_kwok(self) -> None:
        version = self.versions["KWOK_VERSION"]
        log = self.layout.logs / "build-kwok.log"
        go_install(self.layout, "sigs.k8s.io/kwok/cmd/kwok", version, "kwok", log)
        root = Path(module_info(self.layout, "sigs.k8s.io/kwok", version)["Dir"])
        docs = [(root / "kustomize" / "stage" / rel).read_text().strip() for rel in KWOK_STAGES]
        self.kwok.stages.write_text("\n---\n".join(docs) + "\n")

    # ---- run -----------------------------------------------------------------------------

    def _running(self) -> bool:
        return all(
            s.daemon.pid() is not None and _started_as_now(s) and s._healthy() for s in self.servers
        )

    def _node_ready(self) -> bool:
        try:
            return self.kwok.node_ready()
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def up(self, build: bool) -> str:
        if self._running() and self._node_ready():
            return "control plane already running, node Ready"
        for server in reversed(self.servers):  # a half-running plane restarts whole
            server.down()
        if not self.built():
            if not build:
                raise PartError("the control plane is not built (run scripts/testenv up k8s)")
            self.build()
        self.certs.ensure()
        write_private(self.kubeconfig, self.certs.kubeconfig(self.apiserver.server))
        notes = [server.up(build=False) for server in self.servers]
        self._add_node()
        waited = wait_until(
            f"node {KWOK_NODE} Ready", self._node_ready, 60, daemon=self.kwok.daemon
        )
        notes.append(f"node {KWOK_NODE} Ready and untainted after {waited:.1f} s")
        return "; ".join(n.split(" (")[0] for n in notes[:-1]) + f"; {notes[-1]}"

    def _add_node(self) -> None:
        context = self.certs.client_context()
        try:
            api_request(self.apiserver.server, context, "/api/v1/nodes", "POST", fake_node())
        except urllib.error.HTTPError as exc:
            if exc.code != 409:  # 409: already there
                raise PartError(f"creating node {KWOK_NODE}: {exc} {exc.read()[:500]!r}") from exc

    def down(self) -> list[str]:
        notes: list[str] = []
        for server in reversed(self.servers):
            notes += server.down()
        return notes

    def status(self) -> tuple[bool, str]:
        states = [(s.name, *s.status()) for s in self.servers]
        ok = all(state[1] for state in states)
        text = "; ".join(f"{name}: {text}" for name, _, text in states)
        if ok:
            ready = self._node_ready()
            ok = ok and ready
            text += f"; node {KWOK_NODE} {'Ready' if ready else 'NOT Ready'}"
            text += f"; KUBECONFIG={self.kubeconfig}"
        return ok, text
