"""MinIO (S3) and the CNCF distribution registry, both built with `go install`."""

from __future__ import annotations

import os
import secrets

from tenv_common import http_ok, write_private
from tenv_gobuild import go_install, is_built
from tenv_server import Server


class MinioPart(Server):
    name = "minio"
    region = "us-east-1"

    @property
    def port(self) -> int:
        return int(self.versions["MINIO_PORT"])

    def ports(self) -> list[int]:
        return [self.port, int(self.versions["MINIO_CONSOLE_PORT"])]

    def built(self) -> bool:
        return is_built(self.layout, "minio", self.versions["MINIO_VERSION"])

    def build(self) -> None:
        go_install(
            self.layout,
            "github.com/minio/minio",
            self.versions["MINIO_VERSION"],
            "minio",
            self.layout.logs / "build-minio.log",
        )

    def credentials(self) -> tuple[str, str]:
        """Generated once, kept (mode 0600) in the cache."""
        path = self.layout.etc / "minio.credentials"
        if not path.exists():
            write_private(path, f"mf{secrets.token_hex(8)}\n{secrets.token_urlsafe(24)}\n")
        user, password = path.read_text().split()
        return user, password

    def prepare(self) -> None:
        self.fresh_data_dir()
        (self.layout.etc / "minio-certs").mkdir(exist_ok=True)

    def argv(self) -> list[str]:
        return [
            str(self.layout.bin / "minio"), "server", "--quiet",
            "--address", f"127.0.0.1:{self.port}",
            "--console-address", f"127.0.0.1:{self.versions['MINIO_CONSOLE_PORT']}",
            "--certs-dir", str(self.layout.etc / "minio-certs"),
            str(self.data_dir),
        ]  # fmt: skip

    def environment(self) -> dict[str, str]:
        user, password = self.credentials()
        return dict(
            os.environ,
            MINIO_ROOT_USER=user,
            MINIO_ROOT_PASSWORD=password,
            MINIO_REGION=self.region,
            MINIO_BROWSER="off",
            MINIO_UPDATE="off",
        )

    def healthy(self) -> bool:
        return http_ok(f"http://127.0.0.1:{self.port}/minio/health/ready")

    def env(self) -> dict[str, str]:
        user, password = self.credentials()
        return {
            "endpoint": f"http://127.0.0.1:{self.port}",
            "access_key": user,
            "secret_key": password,
            "region": self.region,
        }


REGISTRY_CONFIG = """\
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""


class RegistryPart(Server):
    name = "registry"

    @property
    def port(self) -> int:
        return int(self.versions["REGISTRY_PORT"])

    def ports(self) -> list[int]:
        return [self.port]

    def built(self) -> bool:
        return is_built(self.layout, "registry", self.versions["DISTRIBUTION_VERSION"])

    def build(self) -> None:
        go_install(
            self.layout,
            "github.com/distribution/distribution/v3/cmd/registry",
            self.versions["DISTRIBUTION_VERSION"],
            "registry",
            self.layout.logs / "build-registry.log",
        )

    def prepare(self) -> None:
        root = self.fresh_data_dir()
        config = REGISTRY_CONFIG.format(root=root, port=self.port)
        (self.layout.etc / "registry.yml").write_text(config)

    def argv(self) -> list[str]:
        return [str(self.layout.bin / "registry"), "serve", str(self.layout.etc / "registry.yml")]

    def environment(self) -> dict[str, str]:
        # No tracing exporter: nothing to send spans to.
        return dict(os.environ, OTEL_TRACES_EXPORTER="none", OTEL_SDK_DISABLED="true")

    def healthy(self) -> bool:
        return http_ok(f"http://127.0.0.1:{self.port}/v2/")

    def env(self) -> dict[str, str]:
        return {"address": f"127.0.0.1:{self.port}"}
