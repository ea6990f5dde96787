"""Docker Engine (Debian's docker.io, dockerd in the background) and the base image."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tenv_common import Daemon, Layout, PartError, log_tail, run, say, wait_until

SOCKET = Path("/var/run/docker.sock")
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Bumped when the way the base image is made changes, so caches rebuild.
RECIPE = "3"


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=3)
        self.unix_path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(3)
        self.sock.connect(self.unix_path)


def ping(path: Path = SOCKET) -> bool:
    try:
        conn = _UnixHTTP(path)
        conn.request("GET", "/_ping")
        ok = conn.getresponse().read() == b"OK"
        conn.close()
        return ok
    except OSError:
        return False


def apt_install(packages: list[str], log: Path) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", PATH=SBIN_PATH)
    argv = ["apt-get", "install", "-y", *packages]
    try:
        run(argv, log, env=env, what="apt-get install")
    except PartError:
        run(["apt-get", "update"], log, env=env, what="apt-get update")
        run(argv, log, env=env, what="apt-get install")


class DockerPart:
    name = "docker"

    def __init__(self, layout: Layout, versions: dict[str, str]) -> None:
        self.layout = layout
        self.versions = versions
        self.dockerd = Daemon("dockerd", layout)
        self.image = versions["BASE_IMAGE"]
        packages = versions["BASE_IMAGE_PACKAGES"]
        key = f"{RECIPE}|{versions['DEBIAN_SUITE']}|{packages}".encode()
        self.recipe = hashlib.sha256(key).hexdigest()[:12]
        self.tarball = layout.images / f"base-{versions['DEBIAN_SUITE']}-{self.recipe}.tar"

    # ---- state ---------------------------------------------------------------------------

    def ours(self) -> bool:
        return self.dockerd.pid() is not None

    def status(self) -> tuple[bool, str]:
        if not ping():
            return False, "not running"
        who = f"dockerd pid {self.dockerd.pid()}" if self.ours() else "external dockerd"
        image = "base image ready" if self._image_current() else "base image missing"
        return self._image_current(), f"{who} on unix://{SOCKET}, {image} ({self.image})"

    def env(self) -> dict[str, str]:
        return {"docker_host": f"unix://{SOCKET}", "base_image": self.image}

    # ---- up ------------------------------------------------------------------------------

    def up(self, build: bool) -> str:
        notes = []
        if self.ours() and not ping():  # ours but not answering: start it again
            self.dockerd.stop(timeout=45)
        if not ping():
            self._install(build)
            self._start()
            notes.append(f"dockerd started (pid {self.dockerd.pid()})")
        else:
            notes.append("dockerd already running" + ("" if self.ours() else " (external)"))
        if not self._image_current():
            self._make_image(build)
            notes.append(f"{self.image} imported")
        else:
            notes.append(f"{self.image} present")
        return ", ".join(notes)

    def _install(self, build: bool) -> None:
        missing = [
            pkg
            for pkg, tool in (("docker.io", "dockerd"), ("debootstrap", "debootstrap"))
            if shutil.which(tool, path=SBIN_PATH) is None
        ]
        if not missing:
            return
        if not build:
            raise PartError(f"{', '.join(missing)} not installed (run scripts/testenv up)")
        say(f"  docker: apt-get install {' '.join(missing)}")
        apt_install(missing, self.layout.logs / "apt.log")

    def _start(self) -> None:
        if SOCKET.exists() and not ping():
            SOCKET.unlink()  # stale socket of a dead daemon
        argv = [
            "dockerd",
            "--host",
            f"unix://{SOCKET}",
            "--ip",
            "127.0.0.1",
            "--pidfile",
            str(self.layout.run / "dockerd.pidfile"),
        ]
        env = dict(os.environ, PATH=SBIN_PATH)
        env.pop("DOCKER_HOST", None)
        self.dockerd.start(argv, env=env)
        wait_until("dockerd socket", ping, 90, daemon=self.dockerd)

    def _image_labels(self) -> dict[str, str] | None:
        proc = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", self.image],
            capture_output=True,
            text=True,
            env=self._docker_env(),
            check=False,
        )
        if proc.returncode != 0:
            return None
        return json.loads(proc.stdout.strip() or "null") or {}

    def _image_current(self) -> bool:
        labels = self._image_labels()
        return labels is not None and labels.get("org.modelform.testenv.recipe") == self.recipe

    def _docker_env(self) -> dict[str, str]:
        return dict(os.environ, DOCKER_HOST=f"unix://{SOCKET}")

    def _make_image(self, build: bool) -> None:
        if not self.tarball.exists():
            if not build:
                raise PartError(f"base image tarball {self.tarball} not built")
            self._debootstrap()
        log = self.layout.logs / "base-image.log"
        changes = [
            f"ENV PATH={SBIN_PATH}",
            "ENV LANG=C.UTF-8",
            'CMD ["python3"]',
            f"LABEL org.modelform.testenv.recipe={self.recipe}",
        ]
        argv = ["docker", "import"]
        for change in changes:
            argv += ["--change", change]
        run(
            [*argv, str(self.tarball), self.image],
            log,
            env=self._docker_env(),
            what="docker import",
        )

    def _debootstrap(self) -> None:
        log = self.layout.logs / "base-image.log"
        root = self.layout.images / "rootfs.tmp"
        _remove_tree(root)
        say(f"  docker: debootstrap {self.versions['DEBIAN_SUITE']} base image (about a minute)")
        started = time.monotonic()
        env = dict(os.environ, PATH=SBIN_PATH, DEBIAN_FRONTEND="noninteractive")
        try:
            run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={self.versions['BASE_IMAGE_PACKAGES']}",
                    self.versions["DEBIAN_SUITE"],
                    str(root),
                    self.versions["DEBIAN_MIRROR"],
                ],
                log,
                env=env,
                what="debootstrap",
            )
            # Smaller image; pip installs into the image's own python like the
            # official python images do (no PEP 668 marker; venvs still work).
            for pattern in (
                "var/cache/apt/archives/*.deb",
                "var/lib/apt/lists/*",
                "usr/lib/python3*/EXTERNALLY-MANAGED",
                "var/log/*.log",
            ):
                for path in root.glob(pattern):
                    if path.is_file() or path.is_symlink():
                        path.unlink()
            partial = self.tarball.with_suffix(".partial")
            run(
                ["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."],
                log,
                what="tar of the base image",
            )
            partial.rename(self.tarball)
        finally:
            _remove_tree(root)
        say(f"  docker: base image tarball made in {time.monotonic() - started:.0f} s")

    # ---- down ----------------------------------------------------------------------------

    def down(self) -> list[str]:
        if not self.ours():
            self.dockerd.record.unlink(missing_ok=True)
            return ["dockerd not started by testenv; left alone"] if ping() else []
        # dockerd stops its containers and its own containerd on SIGTERM.
        self.dockerd.stop(timeout=45)
        if ping():
            raise PartError(f"dockerd still answers after stop; log:\n{log_tail(self.dockerd.log)}")
        return ["dockerd stopped"]


def _remove_tree(root: Path) -> None:
    if not root.exists():
        return
    # debootstrap mounts /proc and /sys inside its target; a failed run may leave them.
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(str(root) + "/")), reverse=True):
        subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
    shutil.rmtree(root, ignore_errors=True)
