"""The real kubelet beside KWOK: pods that ask for node real-node-0 really run.

A containerd of its own (Debian's, the one docker.io brings, started with its own
config, socket, root and state, CRI plugin on), CNI bridge + host-local from
Debian's containernetworking-plugins on a host-only bridge, and a kubelet built
like the control plane (same wrapper module, same version). The node is labelled
and tainted so that ordinary test pods keep going to the KWOK node.

Two things of this machine shape the set-up (docs/testenv.md, "The real node"):
no process here holds CAP_SYS_RESOURCE, so no oom_score_adj below 0 can be set
(containerd's restrict_oom_score_adj clamps the pod sandboxes' -998), and the
kubelet rewrites six kernel tunables when it starts (they are put back as soon
as the node is Ready, and again by `down`).
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
import urllib.error
from pathlib import Path

from tenv_certs import Certs, api_request
from tenv_common import (
    Daemon,
    Layout,
    PartError,
    http_ok,
    output,
    port_open,
    run,
    say,
    wait_until,
    write_private,
)
from tenv_docker import SBIN_PATH, apt_install
from tenv_gobuild import go_binary, go_env, is_built
from tenv_k8s import build_kubernetes

REAL_NODE = "real-node-0"
NODE_LABEL_KEY = "modelform.test/real-node"
# What a pod needs to run on the real node (and what keeps every other pod off it).
NODE_SELECTOR = {NODE_LABEL_KEY: "true"}
TOLERATIONS = [{"key": NODE_LABEL_KEY, "operator": "Exists", "effect": "NoSchedule"}]
TAINT = {"key": NODE_LABEL_KEY, "value": "true", "effect": "NoSchedule"}
NODE_LABELS = {NODE_LABEL_KEY: "true", "type": "real"}

BRIDGE = "mfkube0"
CNI_BIN = Path("/usr/lib/cni")
PAUSE_IMAGE = "modelform.local/pause:3.10"
PAUSE_RECIPE = "1"  # bumped when PAUSE_SOURCE changes
# The kubelet sets these when it starts (protectKernelDefaults=false); testenv puts back
# what the machine had.
KERNEL_TUNABLES = [
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
]

# The pod sandbox's process (registry.k8s.io/pause cannot be pulled here): sleeps until
# SIGINT/SIGTERM, reaps the zombies of the pod's shared PID namespace if there is one.
PAUSE_SOURCE = """package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	child := make(chan os.Signal, 1)
	signal.Notify(child, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			os.Exit(0)
		case <-child:
			for {
				var status syscall.WaitStatus
				if pid, _ := syscall.Wait4(-1, &status, syscall.WNOHANG, nil); pid <= 0 {
					break
				}
			}
		}
	}
}
"""


class KubeletPart:
    name = "kubelet"

    def __init__(self, layout: Layout, versions: dict[str, str]) -> None:
        self.layout = layout
        self.versions = versions
        self.certs = Certs(layout)
        self.containerd = Daemon("containerd", layout)
        self.kubelet = Daemon("kubelet", layout)
        self.setup_log = layout.logs / "kubelet-setup.log"
        network = ipaddress.ip_network(versions["KUBELET_POD_CIDR"])
        self.pod_cidr = str(network)
        self.node_ip = str(next(network.hosts()))  # the bridge's address
        self.prefix = network.prefixlen

    # ---- paths ---------------------------------------------------------------------------

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.versions['APISERVER_PORT']}"

    @property
    def socket(self) -> Path:
        return self.layout.run / "containerd" / "containerd.sock"

    @property
    def containerd_dir(self) -> Path:
        return self.layout.data / "containerd"

    @property
    def kubelet_dir(self) -> Path:
        return self.layout.data / "kubelet"

    @property
    def cni_dir(self) -> Path:
        return self.layout.data / "cni"

    @property
    def pod_logs(self) -> Path:
        return self.layout.logs / "pods"

    @property
    def pause_tarball(self) -> Path:
        return self.layout.images / f"pause-{PAUSE_RECIPE}.tar"

    @property
    def saved_tunables(self) -> Path:
        return self.layout.run / "kubelet-kernel-tunables.json"

    def env(self) -> dict:
        return {
            "node": REAL_NODE,
            "node_selector": NODE_SELECTOR,
            "tolerations": TOLERATIONS,
            "taint": TAINT,
            "labels": NODE_LABELS,
            "node_ip": self.node_ip,
            "pod_cidr": self.pod_cidr,
            "kubelet": f"{self.node_ip}:{self.versions['KUBELET_PORT']}",
            "containerd_socket": str(self.socket),
            "pod_logs": str(self.pod_logs),
            "logs": [str(self.kubelet.log), str(self.containerd.log)],
        }

    # ---- build ---------------------------------------------------------------------------

    def _missing_packages(self) -> list[str]:
        """Debian packages this part needs (containerd and runc come with docker.io)."""
        missing = [
            tool for tool in ("containerd", "runc") if not shutil.which(tool, path=SBIN_PATH)
        ]
        if not (CNI_BIN / "bridge").exists():
            missing.append("containernetworking-plugins")
        return missing

    def built(self) -> bool:
        return (
            not self._missing_packages()
            and is_built(self.layout, "kubelet", self.versions["KUBERNETES_VERSION"])
            and self.pause_tarball.exists()
        )

    def build(self) -> None:
        missing = self._missing_packages()
        if missing:
            say(f"  kubelet: apt-get install {' '.join(missing)}")
            apt_install(missing, self.layout.logs / "apt.log")
        build_kubernetes(
            self.layout, self.versions, ["kubelet"], self.layout.logs / "build-kubelet.log"
        )
        if not self.pause_tarball.exists():
            self._build_pause()

    def _build_pause(self) -> None:
        """A static pause binary in a one-layer image archive (docker save format)."""
        wrapper = self.layout.go / "wrappers" / "pause"
        wrapper.mkdir(parents=True, exist_ok=True)
        (wrapper / "go.mod").write_text(
            f"module modelform.local/testenv-pause\n\ngo {self.versions['WRAPPER_GO_DIRECTIVE']}\n"
        )
        (wrapper / "main.go").write_text(PAUSE_SOURCE)
        binary = wrapper / "pause"
        run(
            [go_binary(), "build", "-trimpath", "-ldflags", "-s -w", "-o", str(binary), "."],
            self.layout.logs / "build-pause.log",
            env=go_env(self.layout),
            cwd=wrapper,
            what="go build pause",
        )
        layer = io.BytesIO()
        with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            data = binary.read_bytes()
            info = tarfile.TarInfo("pause")
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
        layer_bytes = layer.getvalue()
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
            "rootfs": {
                "type": "layers",
                "diff_ids": ["sha256:" + hashlib.sha256(layer_bytes).hexdigest()],
            },
        }
        config_bytes = json.dumps(config, sort_keys=True).encode()
        config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
        manifest = [{"Config": config_name, "RepoTags": [PAUSE_IMAGE], "Layers": ["layer.tar"]}]
        partial = self.pause_tarball.with_suffix(".partial")
        with tarfile.open(partial, "w") as tar:
            for name, blob in (
                (config_name, config_bytes),
                ("layer.tar", layer_bytes),
                ("manifest.json", json.dumps(manifest).encode()),
            ):
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(blob), 0o644
                tar.addfile(info, io.BytesIO(blob))
        partial.rename(self.pause_tarball)
        binary.unlink()

    # ---- state ---------------------------------------------------------------------------

    def _ctr(self, *args: str) -> str:
        return output(
            ["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args],
            env=dict(os.environ, PATH=SBIN_PATH),
        )

    def _containerd_healthy(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            plugins = self._ctr("plugins", "ls")
        except PartError:
            return False
        return any(
            line.split()[:2] == ["io.containerd.grpc.v1", "cri"] and line.split()[-1] == "ok"
            for line in plugins.splitlines()
        )

    def _kubelet_healthy(self) -> bool:
        return http_ok(f"http://127.0.0.1:{self.versions['KUBELET_HEALTHZ_PORT']}/healthz")

    def _api_up(self) -> bool:
        return http_ok(f"{self.server}/readyz", context=self.certs.client_context())

    def _node(self) -> dict:
        return api_request(self.server, self.certs.client_context(), f"/api/v1/nodes/{REAL_NODE}")

    def _node_ready(self) -> bool:
        """Ready, and only our own taint left (the not-ready one is lifted)."""
        try:
            node = self._node()
        except (urllib.error.URLError, OSError, ValueError):
            return False
        conditions = node.get("status", {}).get("conditions") or []
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        return ready and node.get("spec", {}).get("taints") == [TAINT]

    def _running(self) -> bool:
        return (
            self.containerd.pid() is not None
            and self.kubelet.pid() is not None
            and self._containerd_healthy()
            and self._kubelet_healthy()
        )

    def status(self) -> tuple[bool, str]:
        parts = []
        for daemon in (self.containerd, self.kubelet):
            pid = daemon.pid()
            parts.append(f"{daemon.name}: " + (f"pid {pid}" if pid else "not running"))
        if not self._running():
            return False, "; ".join(parts)
        ready = self._node_ready()
        parts.append(
            f"node {REAL_NODE} {'Ready' if ready else 'NOT Ready'} "
            f"(kubelet {self.node_ip}:{self.versions['KUBELET_PORT']}, "
            f"healthz 127.0.0.1:{self.versions['KUBELET_HEALTHZ_PORT']}, pods {self.pod_cidr})"
        )
        return ready, "; ".join(parts)

    # ---- up ------------------------------------------------------------------------------

    def up(self, build: bool) -> str:
        if self._running() and self._node_ready():
            return f"containerd and kubelet already running, node {REAL_NODE} Ready"
        if not self._api_up():
            raise PartError("the k8s part is not running: start it first (scripts/testenv up k8s)")
        self._cleanup()  # a half-running node starts again from nothing
        if not self.built():
            if not build:
                raise PartError("the kubelet is not built (run scripts/testenv up kubelet)")
            self.build()
        for port in (self.versions["KUBELET_PORT"], self.versions["KUBELET_HEALTHZ_PORT"]):
            if port_open(int(port)):
                raise PartError(
                    f"kubelet: 127.0.0.1:{port} is taken by a process testenv did not start; "
                    f"stop it, or move it with TESTENV_KUBELET_PORT / TESTENV_KUBELET_HEALTHZ_PORT"
                )
        if len(str(self.socket)) > 100:
            raise PartError(f"containerd socket path too long for a unix socket: {self.socket}")
        self._prepare()
        started = time.monotonic()
        self.containerd.start(
            ["containerd", "--config", str(self.layout.etc / "containerd" / "config.toml")],
            env=dict(os.environ, PATH=SBIN_PATH),
            cwd=self.layout.root,
        )
        wait_until("containerd (CRI)", self._containerd_healthy, 30, daemon=self.containerd)
        self._ctr("images", "import", str(self.pause_tarball))
        self._save_tunables()
        self._delete_node()  # a node left by an earlier kubelet would look Ready at once
        self.kubelet.start(self._kubelet_argv(), env=dict(os.environ, PATH=SBIN_PATH))
        wait_until("kubelet /healthz", self._kubelet_healthy, 60, daemon=self.kubelet)
        waited = wait_until(f"node {REAL_NODE} Ready", self._node_ready, 90, daemon=self.kubelet)
        self._restore_tunables()
        return (
            f"containerd pid {self.containerd.pid()}, kubelet pid {self.kubelet.pid()}; "
            f"node {REAL_NODE} Ready after {time.monotonic() - started:.1f} s "
            f"(taint {TAINT['key']}={TAINT['value']}:{TAINT['effect']}, waited {waited:.1f} s)"
        )

    def _prepare(self) -> None:
        for path in (self.containerd_dir, self.kubelet_dir, self.cni_dir, self.pod_logs):
            _remove_tree(path)
            path.mkdir(parents=True)
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        etc = self.layout.etc
        registry = f"127.0.0.1:{self.versions['REGISTRY_PORT']}"
        hosts = etc / "containerd" / "certs.d" / registry / "hosts.toml"
        hosts.parent.mkdir(parents=True, exist_ok=True)
        hosts.write_text(
            f'server = "http://{registry}"\n\n'
            f'[host."http://{registry}"]\n  capabilities = ["pull", "resolve"]\n'
        )
        (etc / "containerd" / "config.toml").write_text(self._containerd_config())
        cni_conf = etc / "cni" / "net.d"
        cni_conf.mkdir(parents=True, exist_ok=True)
        for old in cni_conf.iterdir():
            old.unlink()
        (cni_conf / "10-modelform.conflist").write_text(self._cni_config())
        write_private(etc / "kubelet.yaml", self._kubelet_config())
        self._ensure_bridge()

    def _containerd_config(self) -> str:
        root = self.containerd_dir
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        return f"""version = 2
root = "{root / "root"}"
state = "{root / "state"}"

[grpc]
  address = "{self.socket}"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  netns_mounts_under_state_dir = true
  # No process on this machine may lower oom_score_adj (no CAP_SYS_RESOURCE): without
  # this, every pod sandbox (-998) fails in runc ("can't get final child's PID").
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_tls_streaming = false
  [{cri}.cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{self.layout.etc / "cni" / "net.d"}"
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{root / "runc"}"
  [{cri}.registry]
    config_path = "{self.layout.etc / "containerd" / "certs.d"}"
"""

    def _cni_config(self) -> str:
        config = {
            "cniVersion": "1.0.0",
            "name": "modelform-testenv",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": self.pod_cidr, "gateway": self.node_ip}]],
                        "dataDir": str(self.cni_dir),
                    },
                },
                {"type": "loopback"},
            ],
        }
        return json.dumps(config, indent=2) + "\n"

    def _kubelet_config(self) -> str:
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # The API server reaches the kubelet (logs, exec) at the node's InternalIP,
            # which must not be a loopback address: the host-only bridge's own address.
            "address": self.node_ip,
            "port": int(self.versions["KUBELET_PORT"]),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": int(self.versions["KUBELET_HEALTHZ_PORT"]),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(self.certs.path("ca.crt"))},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,  # this machine has cgroup v1 (1.35 would refuse)
            "failSwapOn": False,
            "makeIPTablesUtilChains": False,
            "protectKernelDefaults": False,
            "registerNode": True,
            "registerWithTaints": [TAINT],
            "podLogsDir": str(self.pod_logs),
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "2%",
                "imagefs.available": "2%",
            },
            "imageGCHighThresholdPercent": 99,
            "imageGCLowThresholdPercent": 98,
            "serializeImagePulls": False,
            "maxPods": 20,
        }
        return json.dumps(config, indent=2) + "\n"

    def _kubelet_argv(self) -> list[str]:
        labels = ",".join(f"{k}={v}" for k, v in NODE_LABELS.items())
        return [
            str(self.layout.bin / "kubelet"),
            f"--config={self.layout.etc / 'kubelet.yaml'}",
            f"--kubeconfig={self.layout.etc / 'kubeconfig'}",
            f"--root-dir={self.kubelet_dir}",
            f"--cert-dir={self.kubelet_dir / 'pki'}",
            f"--hostname-override={REAL_NODE}",
            f"--node-ip={self.node_ip}",
            f"--node-labels={labels}",
            "--v=1",
        ]

    def _ip(self, *args: str) -> None:
        run(["ip", *args], self.setup_log, env=dict(os.environ, PATH=SBIN_PATH), what="ip")

    def _ensure_bridge(self) -> None:
        """The CNI bridge made before the kubelet starts: its address is the node IP."""
        if not Path(f"/sys/class/net/{BRIDGE}").exists():
            self._ip("link", "add", "name", BRIDGE, "type", "bridge")
        addresses = output(["ip", "-4", "-o", "addr", "show", "dev", BRIDGE])
        if f" {self.node_ip}/" not in addresses:
            self._ip("addr", "add", f"{self.node_ip}/{self.prefix}", "dev", BRIDGE)
        self._ip("link", "set", BRIDGE, "up")

    def _save_tunables(self) -> None:
        if self.saved_tunables.exists():  # the machine's own values, saved before
            return
        values = {key: Path(f"/proc/sys/{key}").read_text().strip() for key in KERNEL_TUNABLES}
        self.saved_tunables.write_text(json.dumps(values))

    def _restore_tunables(self) -> list[str]:
        try:
            values = json.loads(self.saved_tunables.read_text())
        except (OSError, ValueError):
            return []
        changed = []
        for key, value in values.items():
            path = Path(f"/proc/sys/{key}")
            if path.read_text().strip() != value:
                path.write_text(value + "\n")
                changed.append(key.replace("/", "."))
        self.saved_tunables.unlink()
        return changed

    # ---- down ----------------------------------------------------------------------------

    def down(self) -> list[str]:
        return self._cleanup()

    def _cleanup(self) -> list[str]:
        """Stop the kubelet, the pods, containerd; leave no mount, bridge or cgroup behind."""
        notes = []
        if self.kubelet.stop(20):
            notes.append("kubelet stopped")
        if self.containerd.pid() is not None and self.socket.exists():
            killed = self._kill_tasks()
            if killed:
                notes.append(f"{killed} pod container(s) killed")
        if self.containerd.stop(20):
            notes.append("containerd stopped")
        shims = self._kill_leftovers()
        if shims:
            notes.append(f"{shims} leftover process(es) of its pods killed")
        for root in (self.kubelet_dir, self.containerd_dir):
            _unmount_under(root)
        if Path(f"/sys/class/net/{BRIDGE}").exists():
            self._ip("link", "del", BRIDGE)
            notes.append(f"bridge {BRIDGE} removed")
        _remove_cgroups("kubepods")
        restored = self._restore_tunables()
        if restored:
            notes.append(f"kernel tunables put back ({', '.join(restored)})")
        if notes and self._api_up() and self._delete_node():
            notes.append(f"node {REAL_NODE} deleted")
        return notes

    def _delete_node(self) -> bool:
        try:
            path = f"/api/v1/nodes/{REAL_NODE}"
            api_request(self.server, self.certs.client_context(), path, "DELETE")
        except (urllib.error.URLError, OSError, ValueError):
            return False  # 404 (no such node) among them
        return True

    def _kill_tasks(self) -> int:
        try:
            tasks = self._ctr("tasks", "ls", "-q").split()
            for task in tasks:
                self._ctr("tasks", "kill", "--all", "--signal", "SIGKILL", task)
        except PartError as exc:
            say(f"  kubelet: could not kill pod containers through containerd: {exc}")
            return 0
        return len(tasks)

    def _kill_leftovers(self) -> int:
        """containerd's shims (own process groups, so not stopped with containerd) and any
        process still in the kubelet's pod cgroups: all started through this part."""
        pids = set()
        marker = str(self.socket).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"containerd-shim" in cmdline and marker in cmdline:
                pids.add(int(entry.name))
        for pods in (Path("/sys/fs/cgroup/pids/kubepods"), Path("/sys/fs/cgroup/kubepods")):
            for procs in pods.rglob("cgroup.procs") if pods.is_dir() else []:
                pids.update(int(p) for p in procs.read_text().split())
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.1)
        return len(pids)


def _unmount_under(root: Path) -> None:
    """Unmount whatever is mounted at or under root (pod volumes, rootfs, netns, the
    kubelet's own bind mount of its folder), deepest first."""
    prefix = str(root)
    mounts = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            mounts.append(point)
    for point in sorted(set(mounts), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _remove_tree(path: Path) -> None:
    if path.exists():
        _unmount_under(path)
        shutil.rmtree(path)


def _remove_cgroups(name: str) -> None:
    """Remove the kubelet's (now empty) cgroup hierarchy in every v1 controller."""
    for controller in Path("/sys/fs/cgroup").iterdir():
        top = controller / name
        if not top.is_dir():
            continue
        for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            try:
                path.rmdir()
            except OSError:
                pass
        try:
            top.rmdir()
        except OSError as exc:
            say(f"  kubelet: cgroup {top} left: {exc}")
