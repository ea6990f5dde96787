"""modelform's own kubeconfig reading and transport, against the real kube-apiserver:
the credential shapes it speaks (certificate data and files, token, tokenFile, an
exec plugin), who the server says we are, and its one-line errors."""

from __future__ import annotations

import base64
import json
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelform.plugin import DiagnosticError, ProviderError
from modelform.providers import k8s_api, k8s_transport

pytestmark = pytest.mark.k8s

WHOAMI = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
REVIEW = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}


def _config(kubeconfig: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(kubeconfig.read_text())
    return doc


def _whoami(kube: k8s_api.Kube) -> str:
    answer = kube.request("POST", WHOAMI, body=REVIEW)
    return str(answer["status"]["userInfo"]["username"])


def _write(path: Path, doc: dict[str, Any]) -> str:
    path.write_text(json.dumps(doc))
    return str(path)


def _with_user(doc: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))
    doc["users"][0]["user"] = user
    return doc


@pytest.fixture(scope="module")
def sa_token(kubeconfig: Path, k8s_namespace: str) -> str:
    """A token the API server issues for the namespace's default ServiceAccount."""
    kube = k8s_api.Kube(str(kubeconfig), None)
    path = f"/api/v1/namespaces/{k8s_namespace}/serviceaccounts/default/token"
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": 600}}  # fmt: skip
    return str(kube.request("POST", path, body=body)["status"]["token"])


def test_certificate_data_reaches_the_server_as_the_admin(kubeconfig: Path) -> None:
    kube = k8s_api.Kube(str(kubeconfig), None)
    assert isinstance(kube.client, k8s_transport.Transport)  # not the kubernetes package
    assert _whoami(kube) == "modelform-admin"
    assert kube.calls == 1


def test_certificate_files_relative_to_the_kubeconfig(kubeconfig: Path, tmp_path: Path) -> None:
    doc = _config(kubeconfig)
    cluster, user = doc["clusters"][0]["cluster"], doc["users"][0]["user"]
    (tmp_path / "pki").mkdir()
    for key in ("certificate-authority",):
        (tmp_path / "pki" / "ca.crt").write_bytes(base64.b64decode(cluster.pop(f"{key}-data")))
        cluster[key] = "pki/ca.crt"
    (tmp_path / "pki" / "me.crt").write_bytes(base64.b64decode(user["client-certificate-data"]))
    (tmp_path / "pki" / "me.key").write_bytes(base64.b64decode(user["client-key-data"]))
    doc = _with_user(doc, {"client-certificate": "pki/me.crt", "client-key": "pki/me.key"})
    path = _write(tmp_path / "config", doc)
    assert _whoami(k8s_api.Kube(path, None)) == "modelform-admin"


def test_a_token_and_a_token_file(
    kubeconfig: Path, tmp_path: Path, sa_token: str, k8s_namespace: str
) -> None:
    who = f"system:serviceaccount:{k8s_namespace}:default"
    doc = _with_user(_config(kubeconfig), {"token": sa_token})
    assert _whoami(k8s_api.Kube(_write(tmp_path / "a", doc), None)) == who
    (tmp_path / "token").write_text(sa_token + "\n")
    doc = _with_user(_config(kubeconfig), {"tokenFile": str(tmp_path / "token")})
    assert _whoami(k8s_api.Kube(_write(tmp_path / "b", doc), None)) == who


def _plugin(tmp_path: Path, status: dict[str, Any], exit_code: int = 0) -> Path:
    """An exec credential plugin that records each run and prints ``status``."""
    script = tmp_path / "plugin.py"
    script.write_text(
        "import json, os, sys\n"
        f"open({str(tmp_path / 'runs')!r}, 'a').write(os.environ['KUBERNETES_EXEC_INFO'] + '\\n')\n"
        f"print(json.dumps({{'apiVersion': 'client.authentication.k8s.io/v1', "
        f"'kind': 'ExecCredential', 'status': {status!r}}}))\n"
        f"sys.stderr.write('plugin says no\\n')\nsys.exit({exit_code})\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_an_exec_plugin_runs_once_and_its_token_is_used(
    kubeconfig: Path, tmp_path: Path, sa_token: str, k8s_namespace: str
) -> None:
    script = _plugin(tmp_path, {"token": sa_token, "expirationTimestamp": "2099-01-01T00:00:00Z"})
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
                     "args": [str(script)], "interactiveMode": "Never"}}  # fmt: skip
    kube = k8s_api.Kube(_write(tmp_path / "config", _with_user(_config(kubeconfig), user)), None)
    assert _whoami(kube) == f"system:serviceaccount:{k8s_namespace}:default"
    assert _whoami(kube) == f"system:serviceaccount:{k8s_namespace}:default"
    other_thread = k8s_api.Kube(kube.kubeconfig, None)  # one Kube per thread: one transport
    assert _whoami(other_thread) == f"system:serviceaccount:{k8s_namespace}:default"
    runs = (tmp_path / "runs").read_text().splitlines()
    assert len(runs) == 1  # the credential is held until it expires, by the process
    assert json.loads(runs[0])["spec"]["interactive"] is False


def test_an_exec_plugin_can_hand_a_client_certificate(kubeconfig: Path, tmp_path: Path) -> None:
    doc = _config(kubeconfig)
    admin = doc["users"][0]["user"]
    status = {
        "clientCertificateData": base64.b64decode(admin["client-certificate-data"]).decode(),
        "clientKeyData": base64.b64decode(admin["client-key-data"]).decode(),
    }
    script = _plugin(tmp_path, status)
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1",
                     "command": sys.executable, "args": [str(script)]}}  # fmt: skip
    kube = k8s_api.Kube(_write(tmp_path / "config", _with_user(doc, user)), None)
    assert _whoami(kube) == "modelform-admin"


def test_a_failing_exec_plugin_is_one_line(kubeconfig: Path, tmp_path: Path) -> None:
    script = _plugin(tmp_path, {}, exit_code=3)
    user = {"exec": {"command": sys.executable, "args": [str(script)]}}
    kube = k8s_api.Kube(_write(tmp_path / "config", _with_user(_config(kubeconfig), user)), None)
    with pytest.raises(ProviderError) as e:
        kube.get("Namespace", None, "default")
    assert str(e.value).endswith("exited 3: plugin says no")
    missing = {"exec": {"command": str(tmp_path / "nowhere"), "installHint": "install it"}}
    kube = k8s_api.Kube(_write(tmp_path / "c2", _with_user(_config(kubeconfig), missing)), None)
    with pytest.raises(ProviderError, match=r"nowhere: No such file or directory \(install it\)$"):
        kube.get("Namespace", None, "default")


def test_a_legacy_auth_provider_goes_to_the_kubernetes_package(
    kubeconfig: Path, tmp_path: Path
) -> None:
    doc = _config(kubeconfig)
    doc["users"][0]["user"]["as"] = "modelform-admin"  # impersonation: the package's
    kube = k8s_api.Kube(_write(tmp_path / "config", doc), None)
    assert not isinstance(kube.client, k8s_transport.Transport)
    assert kube.get("Namespace", None, "default") is not None


def test_bad_kubeconfigs_are_one_line_diagnostics(kubeconfig: Path, tmp_path: Path) -> None:
    doc = _config(kubeconfig)
    with pytest.raises(DiagnosticError, match="no context named 'elsewhere' in contexts"):
        _ = k8s_api.Kube(str(kubeconfig), "elsewhere").client
    (tmp_path / "junk").write_text("- a list\n")
    with pytest.raises(DiagnosticError, match="not a kubeconfig"):
        _ = k8s_api.Kube(str(tmp_path / "junk"), None).client
    doc["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    kube = k8s_api.Kube(_write(tmp_path / "closed", doc), None)
    with pytest.raises(
        ProviderError, match=r"^cannot reach the API server at https://127\.0\.0\.1:1 "
    ):
        kube.get("Namespace", None, "default")


def test_a_wrong_ca_is_refused(kubeconfig: Path, tmp_path: Path) -> None:
    doc = _config(kubeconfig)
    user = doc["users"][0]["user"]
    # the client certificate is not a CA of the server's certificate
    doc["clusters"][0]["cluster"]["certificate-authority-data"] = user["client-certificate-data"]
    kube = k8s_api.Kube(_write(tmp_path / "config", doc), None)
    with pytest.raises(
        ProviderError, match="cannot reach the API server .*certificate verify failed"
    ):
        kube.get("Namespace", None, "default")
