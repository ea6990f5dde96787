"""Smoke tests through the real Docker Engine and the registry-free base image."""

from __future__ import annotations

import shutil
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.docker


def _published_port(container: Any, port: str) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        container.reload()
        bindings = (container.attrs["NetworkSettings"]["Ports"] or {}).get(port)
        if bindings:
            assert bindings[0]["HostIp"] == "127.0.0.1"
            return int(bindings[0]["HostPort"])
        time.sleep(0.2)
    raise AssertionError(f"{port} never published; logs:\n{container.logs().decode()}")


def _get(url: str, container: Any, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                return resp.read().decode()
        except (urllib.error.URLError, ConnectionError):
            container.reload()
            if container.status == "exited" or time.monotonic() > deadline:
                raise AssertionError(
                    f"{url} unreachable; container {container.status}; logs:\n"
                    f"{container.logs().decode()}"
                ) from None
            time.sleep(0.2)


def test_base_image_has_python_pip_venv_and_cas(docker_client: Any, base_image: str) -> None:
    script = (
        "import sys, venv, ssl, pip, os; "
        "print(sys.version_info[:2], pip.__version__, "
        "os.path.exists(ssl.get_default_verify_paths().openssl_cafile))"
    )
    out = docker_client.containers.run(base_image, ["python", "-c", script], remove=True)
    assert out.decode().startswith("(3, 11) ")
    assert out.decode().strip().endswith("True")


def test_run_base_image_and_reach_published_port(docker_client: Any, base_image: str) -> None:
    container = docker_client.containers.run(
        base_image,
        ["python3", "-m", "http.server", "8000", "--bind", "0.0.0.0"],
        detach=True,
        ports={"8000/tcp": ("127.0.0.1", None)},
        name=f"mf-smoke-{uuid.uuid4().hex[:8]}",
    )
    try:
        port = _published_port(container, "8000/tcp")
        body = _get(f"http://127.0.0.1:{port}/", container)
        assert "Directory listing" in body
    finally:
        container.remove(force=True)


DOCKERFILE = """\
FROM {base}
COPY host-ca.crt /etc/modelform/host-ca.crt
ENV PIP_CERT=/etc/modelform/host-ca.crt \\
    SSL_CERT_FILE=/etc/modelform/host-ca.crt \\
    REQUESTS_CA_BUNDLE=/etc/modelform/host-ca.crt
RUN pip install --no-cache-dir --disable-pip-version-check "idna==3.7"
COPY serve.py /app/serve.py
CMD ["python3", "/app/serve.py"]
"""

SERVE = """\
import http.server, idna
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("idna " + idna.__version__ + " " + idna.encode("bücher.example").decode()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("0.0.0.0", 8080), H).serve_forever()
"""


@pytest.mark.slow
def test_build_with_pip_from_base_image_and_serve(
    docker_client: Any, base_image: str, host_ca_bundle: Path, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text(DOCKERFILE.format(base=base_image))
    (tmp_path / "serve.py").write_text(SERVE)
    shutil.copyfile(host_ca_bundle, tmp_path / "host-ca.crt")
    tag = f"modelform-smoke/pip:{uuid.uuid4().hex[:8]}"
    image, _ = docker_client.images.build(path=str(tmp_path), tag=tag, rm=True, forcerm=True)
    container = None
    try:
        container = docker_client.containers.run(
            tag, detach=True, ports={"8080/tcp": ("127.0.0.1", None)}
        )
        port = _published_port(container, "8080/tcp")
        assert _get(f"http://127.0.0.1:{port}/", container) == "idna 3.7 xn--bcher-kva.example"
    finally:
        if container is not None:
            container.remove(force=True)
        docker_client.images.remove(image.id, force=True)
