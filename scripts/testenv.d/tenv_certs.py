"""Certificates, service-account keys and the kubeconfig of the test control plane (openssl)."""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import urllib.request
from pathlib import Path
from typing import Any

from tenv_common import Layout, run

DAYS = "3650"
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"  # first address of SERVICE_CIDR: the `kubernetes` Service

APISERVER_SANS = ",".join([
    "IP:127.0.0.1",
    f"IP:{SERVICE_IP}",
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
])  # fmt: skip


class Certs:
    """Made once and kept under $CACHE/testenv/certs (a restart keeps the same identity)."""

    def __init__(self, layout: Layout) -> None:
        self.dir = layout.certs
        self.log = layout.logs / "certs.log"

    def path(self, name: str) -> Path:
        return self.dir / name

    def ensure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        if not self.path("ca.crt").exists():
            self._ca("ca", "modelform-testenv-ca")
        if not self.path("front-proxy-ca.crt").exists():
            self._ca("front-proxy-ca", "modelform-testenv-front-proxy-ca")
        if not self.path("apiserver.crt").exists():
            self._leaf("apiserver", "ca", "/CN=kube-apiserver", "serverAuth", APISERVER_SANS)
        if not self.path("admin.crt").exists():
            self._leaf("admin", "ca", "/O=system:masters/CN=modelform-admin", "clientAuth")
        if not self.path("front-proxy-client.crt").exists():
            self._leaf(
                "front-proxy-client", "front-proxy-ca", "/CN=front-proxy-client", "clientAuth"
            )
        if not self.path("sa.pub").exists():
            self._openssl(
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                str(self.path("sa.key")),
            )
            self._openssl(
                "pkey", "-in", str(self.path("sa.key")), "-pubout", "-out", str(self.path("sa.pub"))
            )

    def _openssl(self, *args: str) -> None:
        run(["openssl", *args], self.log, what=f"openssl {args[0]}")

    def _ca(self, name: str, cn: str) -> None:
        self._openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", DAYS,
            "-keyout", str(self.path(f"{name}.key")), "-out", str(self.path(f"{name}.crt")),
            "-subj", f"/CN={cn}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        )  # fmt: skip

    def _leaf(self, name: str, ca: str, subject: str, usage: str, sans: str = "") -> None:
        ext = self.path(f"{name}.ext")
        lines = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            f"extendedKeyUsage={usage}",
        ]
        if sans:
            lines.append(f"subjectAltName={sans}")
        ext.write_text("\n".join(lines) + "\n")
        csr = self.path(f"{name}.csr")
        self._openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            subject,
            "-keyout",
            str(self.path(f"{name}.key")),
            "-out",
            str(csr),
        )
        self._openssl(
            "x509", "-req", "-in", str(csr), "-days", DAYS,
            "-CA", str(self.path(f"{ca}.crt")), "-CAkey", str(self.path(f"{ca}.key")),
            "-set_serial", str(secrets.randbits(63)),
            "-extfile", str(ext), "-out", str(self.path(f"{name}.crt")),
        )  # fmt: skip
        csr.unlink()
        ext.unlink()

    # -- clients ----------------------------------------------------------------------------

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.path("ca.crt")))
        context.load_cert_chain(str(self.path("admin.crt")), str(self.path("admin.key")))
        return context

    def kubeconfig(self, server: str) -> str:
        def b64(name: str) -> str:
            return base64.b64encode(self.path(name).read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "modelform-testenv", "cluster": {
                "server": server, "certificate-authority-data": b64("ca.crt")}}],
            "users": [{"name": "modelform-admin", "user": {
                "client-certificate-data": b64("admin.crt"),
                "client-key-data": b64("admin.key")}}],
            "contexts": [{"name": "modelform-testenv", "context": {
                "cluster": "modelform-testenv", "user": "modelform-admin",
                "namespace": "default"}}],
            "current-context": "modelform-testenv",
        }  # fmt: skip
        return json.dumps(config, indent=2) + "\n"  # JSON is valid YAML: kubectl reads it


def api_request(
    server: str,
    context: ssl.SSLContext,
    path: str,
    method: str = "GET",
    body: dict[str, Any] | None = None,
    timeout: float = 5.0,
) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{server}{path}", data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
        text = resp.read().decode()
    return json.loads(text) if text.startswith("{") else text
