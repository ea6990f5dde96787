"""The control-plane daemons: etcd, kube-apiserver, controller-manager, scheduler, KWOK."""

from __future__ import annotations

import ssl
from pathlib import Path

from tenv_certs import SERVICE_CIDR, Certs, api_request
from tenv_common import Layout, http_ok
from tenv_server import Server

KWOK_NODE = "kwok-node-0"


def insecure_loopback() -> ssl.SSLContext:
    """For /healthz of components that serve a self-signed certificate on 127.0.0.1."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class K8sServer(Server):
    """A control-plane daemon: built with the control plane, shares its certificates."""

    binary = ""

    def __init__(self, layout: Layout, versions: dict[str, str], certs: Certs) -> None:
        super().__init__(layout, versions)
        self.certs = certs

    @property
    def kubeconfig(self) -> Path:
        return self.layout.etc / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.versions['APISERVER_PORT']}"

    def cert(self, name: str) -> str:
        return str(self.certs.path(name))

    def built(self) -> bool:
        return (self.layout.bin / self.binary).exists()

    def build(self) -> None:  # the K8sPart builds every binary before starting anything
        raise AssertionError("built by K8sPart")

    def kube_client_flags(self) -> list[str]:
        config = str(self.kubeconfig)
        return [
            f"--kubeconfig={config}",
            f"--authentication-kubeconfig={config}",
            f"--authorization-kubeconfig={config}",
        ]


class Etcd(K8sServer):
    name = "etcd"
    binary = "etcd"

    def ports(self) -> list[int]:
        return [int(self.versions["ETCD_CLIENT_PORT"]), int(self.versions["ETCD_PEER_PORT"])]

    def prepare(self) -> None:
        self.fresh_data_dir()  # a fresh cluster on every start

    def argv(self) -> list[str]:
        client = f"http://127.0.0.1:{self.versions['ETCD_CLIENT_PORT']}"
        peer = f"http://127.0.0.1:{self.versions['ETCD_PEER_PORT']}"
        return [
            str(self.layout.bin / "etcd"),
            "--name=testenv",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=testenv={peer}",
            "--unsafe-no-fsync=true",  # throwaway test data: durability not wanted
            "--log-level=warn",
        ]

    def healthy(self) -> bool:
        return http_ok(f"http://127.0.0.1:{self.versions['ETCD_CLIENT_PORT']}/health")


class KubeAPIServer(K8sServer):
    name = "kube-apiserver"
    binary = "kube-apiserver"
    start_timeout = 120.0

    def ports(self) -> list[int]:
        return [int(self.versions["APISERVER_PORT"])]

    def argv(self) -> list[str]:
        return [
            str(self.layout.bin / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.versions['ETCD_CLIENT_PORT']}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.versions['APISERVER_PORT']}",
            f"--cert-dir={self.layout.etc / 'apiserver'}",
            f"--tls-cert-file={self.cert('apiserver.crt')}",
            f"--tls-private-key-file={self.cert('apiserver.key')}",
            f"--client-ca-file={self.cert('ca.crt')}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={self.cert('sa.pub')}",
            f"--service-account-signing-key-file={self.cert('sa.key')}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            "--profiling=false",
            f"--requestheader-client-ca-file={self.cert('front-proxy-ca.crt')}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-username-headers=X-Remote-User",
            f"--proxy-client-cert-file={self.cert('front-proxy-client.crt')}",
            f"--proxy-client-key-file={self.cert('front-proxy-client.key')}",
            # Logs and exec of pods on the real kubelet (part `kubelet`): the node's
            # InternalIP (its hostname does not resolve), with a client certificate.
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--kubelet-client-certificate={self.cert('admin.crt')}",
            f"--kubelet-client-key={self.cert('admin.key')}",
        ]

    def healthy(self) -> bool:
        return http_ok(f"{self.server}/readyz", context=self.certs.client_context())


class KubeControllerManager(K8sServer):
    name = "kube-controller-manager"
    binary = "kube-controller-manager"

    def ports(self) -> list[int]:
        return [int(self.versions["CONTROLLER_MANAGER_PORT"])]

    def argv(self) -> list[str]:
        return [
            str(self.layout.bin / "kube-controller-manager"),
            *self.kube_client_flags(),
            "--bind-address=127.0.0.1",
            f"--secure-port={self.versions['CONTROLLER_MANAGER_PORT']}",
            f"--cert-dir={self.layout.etc / 'controller-manager'}",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={self.cert('sa.key')}",
            f"--root-ca-file={self.cert('ca.crt')}",
            f"--cluster-signing-cert-file={self.cert('ca.crt')}",
            f"--cluster-signing-key-file={self.cert('ca.key')}",
            "--cluster-name=modelform-testenv",
            "--profiling=false",
        ]

    def healthy(self) -> bool:
        port = self.versions["CONTROLLER_MANAGER_PORT"]
        return http_ok(f"https://127.0.0.1:{port}/healthz", context=insecure_loopback())


class KubeScheduler(K8sServer):
    name = "kube-scheduler"
    binary = "kube-scheduler"

    def ports(self) -> list[int]:
        return [int(self.versions["SCHEDULER_PORT"])]

    def argv(self) -> list[str]:
        return [
            str(self.layout.bin / "kube-scheduler"),
            *self.kube_client_flags(),
            "--bind-address=127.0.0.1",
            f"--secure-port={self.versions['SCHEDULER_PORT']}",
            f"--cert-dir={self.layout.etc / 'scheduler'}",
            "--leader-elect=false",
            "--profiling=false",
        ]

    def healthy(self) -> bool:
        port = self.versions["SCHEDULER_PORT"]
        return http_ok(f"https://127.0.0.1:{port}/healthz", context=insecure_loopback())


class Kwok(K8sServer):
    """Fakes the kubelet of the nodes annotated kwok.x-k8s.io/node=fake."""

    name = "kwok"
    binary = "kwok"

    @property
    def stages(self) -> Path:
        return self.layout.etc / "kwok-stages.yaml"

    def ports(self) -> list[int]:
        return [int(self.versions["KWOK_PORT"])]

    def argv(self) -> list[str]:
        return [
            str(self.layout.bin / "kwok"),
            f"--kubeconfig={self.kubeconfig}",
            f"--config={self.stages}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--disregard-status-with-annotation-selector=kwok.x-k8s.io/status=custom",
            f"--server-address=127.0.0.1:{self.versions['KWOK_PORT']}",
            "--node-lease-duration-seconds=40",
        ]

    def healthy(self) -> bool:
        return http_ok(f"http://127.0.0.1:{self.versions['KWOK_PORT']}/healthz")

    def node_ready(self) -> bool:
        """Ready, and the controller-manager has lifted its not-ready taint (so pods land)."""
        node = api_request(self.server, self.certs.client_context(), f"/api/v1/nodes/{KWOK_NODE}")
        conditions = node.get("status", {}).get("conditions") or []
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        return ready and not node.get("spec", {}).get("taints")
