"""The connection to an API server, made from a kubeconfig by modelform itself.

Importing the kubernetes client package costs some 0.4 s in every command (it
loads every generated API and model module), more than a refresh's requests.
The kubeconfig shapes clusters hand out — a server with its CA (file or data,
or ``insecure-skip-tls-verify``), a client certificate and key (file or
data), a bearer token (inline or ``tokenFile``), or an ``exec`` credential
plugin (``client.authentication.k8s.io`` v1 and v1beta1: kubelogin for AKS,
the aws and gcloud helpers) — are read here and spoken to with urllib3.
Anything else (a legacy ``auth-provider``, basic auth, a ``proxy-url``) raises
:class:`Unsupported`, and the caller falls back to the kubernetes package.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import yaml

#: Keys of a kubeconfig user this module does not speak; the kubernetes package does.
_FOREIGN_USER_KEYS = ("auth-provider", "username", "password", "as", "as-groups")


class Unsupported(Exception):
    """A kubeconfig this module leaves to the kubernetes package."""


class ConfigError(Exception):
    """A kubeconfig that cannot be used; the message says why in one line."""


class Response:
    def __init__(self, status: int, data: bytes) -> None:
        self.status = status
        self.data = data


class Transport:
    """Requests to one API server with one user's credentials."""

    def __init__(
        self, host: str, context: ssl.SSLContext | None, token: Callable[[bool], str | None],
        server_name: str | None,
    ) -> None:  # fmt: skip
        import urllib3

        self.host = host.rstrip("/")
        self._token = token
        kw: dict[str, Any] = {"maxsize": 16, "retries": False}
        if context is not None:
            kw["ssl_context"] = context
            if server_name:
                kw["server_hostname"] = server_name
        if context is not None and context.verify_mode == ssl.CERT_NONE:
            kw["cert_reqs"] = "CERT_NONE"
            kw["assert_hostname"] = False
        self._pool = urllib3.PoolManager(**kw)

    def request(
        self, method: str, path: str, query: list[tuple[str, str]] | None,
        headers: dict[str, str], body: Any, timeout: tuple[float, float],
    ) -> Response:  # fmt: skip
        """One request; the status and bytes of the answer, whatever the status.
        urllib3's errors (unreachable, timed out) pass through."""
        import urllib3

        url = self.host + path + (("?" + urlencode(query)) if query else "")
        data: bytes | None = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        for retry in (False, True):
            hdrs = dict(headers)
            token = self._token(retry)
            if token:
                hdrs["Authorization"] = f"Bearer {token}"
            r = self._pool.request(
                method, url, body=data, headers=hdrs, preload_content=True, redirect=False,
                timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]),
            )  # fmt: skip
            if r.status != 401 or not token or retry:
                return Response(int(r.status), bytes(r.data))
        raise AssertionError("unreachable")  # pragma: no cover


# -- the kubeconfig -----------------------------------------------------------


_loaded: dict[tuple[str, str | None, int], Transport] = {}
_loaded_guard = threading.Lock()


def load(path: str, context: str | None) -> Transport:
    """A transport for ``context`` (default: the file's current one) of the
    kubeconfig at ``path``, one per process while the file is unchanged (its
    pool is thread-safe, and an exec plugin then runs once, not per thread).
    ConfigError for a file that cannot be used, Unsupported for one the
    kubernetes package must read."""
    try:
        key = (str(Path(path).resolve()), context, Path(path).stat().st_mtime_ns)
    except OSError as e:
        raise ConfigError(f"{e.strerror}") from None
    with _loaded_guard:
        found = _loaded.get(key)
        if found is None:
            found = _loaded[key] = _load(path, context)
        return found


def _load(path: str, context: str | None) -> Transport:
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(str(e).splitlines()[0]) from None
    if not isinstance(doc, dict):
        raise ConfigError("not a kubeconfig (no mapping at the top)")
    name = context or doc.get("current-context") or ""
    if not name:
        raise ConfigError("no context given and no current-context in the file")
    ctx = _named(doc, "contexts", name, "context")
    cluster = _named(doc, "clusters", str(ctx.get("cluster", "")), "cluster")
    user = _named(doc, "users", str(ctx.get("user", "")), "user") if ctx.get("user") else {}
    if any(k in user for k in _FOREIGN_USER_KEYS) or cluster.get("proxy-url"):
        raise Unsupported(name)
    server = str(cluster.get("server") or "")
    if not server.startswith(("https://", "http://")):
        raise ConfigError(f"context {name}: cluster has no https:// server")
    base = Path(path).resolve().parent
    files = _Files()
    sslctx: ssl.SSLContext | None = None
    if server.startswith("https://"):
        sslctx = ssl.create_default_context()
        if cluster.get("insecure-skip-tls-verify"):
            sslctx.check_hostname = False
            sslctx.verify_mode = ssl.CERT_NONE
        else:
            ca = files.pem(cluster, "certificate-authority", base)
            if ca:
                sslctx.load_verify_locations(cafile=ca)
        cert = files.pem(user, "client-certificate", base)
        key = files.pem(user, "client-key", base)
        if cert and key:
            sslctx.load_cert_chain(cert, key)
    token = _token_source(user, base, cluster, sslctx, files)
    return Transport(server, sslctx, token, cluster.get("tls-server-name"))


def _named(doc: dict[str, Any], section: str, name: str, key: str) -> dict[str, Any]:
    for item in doc.get(section) or []:
        if isinstance(item, dict) and item.get("name") == name:
            value = item.get(key) or {}
            if not isinstance(value, dict):
                raise ConfigError(f"{section} entry {name!r} is not a mapping")
            return value
    raise ConfigError(f"no {key} named {name!r} in {section}")


class _Files:
    """PEM material given inline (``…-data``) goes to private files ssl can load."""

    _dir: str | None = None
    _guard = threading.Lock()

    def pem(self, section: dict[str, Any], key: str, base: Path) -> str | None:
        data = section.get(f"{key}-data")
        if data:
            return self.write(base64.b64decode(str(data)))
        value = section.get(key)
        if value:
            p = Path(os.path.expanduser(str(value)))
            return str(p if p.is_absolute() else base / p)
        return None

    def write(self, content: bytes) -> str:
        with _Files._guard:
            if _Files._dir is None:
                _Files._dir = tempfile.mkdtemp(prefix="modelform-kube-")
                atexit.register(shutil.rmtree, _Files._dir, True)
        fd, name = tempfile.mkstemp(dir=_Files._dir, suffix=".pem")
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        return name


def _token_source(
    user: dict[str, Any], base: Path, cluster: dict[str, Any], sslctx: ssl.SSLContext | None,
    files: _Files,
) -> Callable[[bool], str | None]:  # fmt: skip
    if user.get("token"):
        fixed = str(user["token"])
        return lambda refresh: fixed
    if user.get("tokenFile"):
        token_file = Path(os.path.expanduser(str(user["tokenFile"])))
        token_file = token_file if token_file.is_absolute() else base / token_file

        def from_file(refresh: bool) -> str | None:
            try:
                return token_file.read_text(encoding="utf-8").strip()
            except OSError as e:
                raise ConfigError(f"tokenFile {token_file}: {e.strerror}") from None

        return from_file
    if isinstance(user.get("exec"), dict):
        return _Exec(user["exec"], cluster, sslctx, files).token
    return lambda refresh: None


class _Exec:
    """An exec credential plugin: run when no credential is held, when the one
    held expired, or when the server refused it (401)."""

    def __init__(
        self, spec: dict[str, Any], cluster: dict[str, Any], sslctx: ssl.SSLContext | None,
        files: _Files,
    ) -> None:  # fmt: skip
        self.spec, self.cluster, self.sslctx, self.files = spec, cluster, sslctx, files
        self.value: str | None = None
        self.expires = 0.0
        self.lock = threading.Lock()

    def token(self, refresh: bool) -> str | None:
        with self.lock:
            if refresh or self.value is None or time.time() >= self.expires:
                self.run()
            return self.value

    def run(self) -> None:
        api = str(self.spec.get("apiVersion") or "client.authentication.k8s.io/v1")
        if not api.startswith("client.authentication.k8s.io/"):
            raise Unsupported(api)
        command = str(self.spec.get("command") or "")
        if not command:
            raise ConfigError("exec credential plugin without a command")
        env = dict(os.environ)
        for item in self.spec.get("env") or []:
            env[str(item.get("name"))] = str(item.get("value", ""))
        info: dict[str, Any] = {"apiVersion": api, "kind": "ExecCredential",
                                "spec": {"interactive": False}}  # fmt: skip
        if self.spec.get("provideClusterInfo"):
            info["spec"]["cluster"] = {
                "server": self.cluster.get("server"),
                "certificate-authority-data": self.cluster.get("certificate-authority-data"),
                "insecure-skip-tls-verify": bool(self.cluster.get("insecure-skip-tls-verify")),
            }
        env["KUBERNETES_EXEC_INFO"] = json.dumps(info)
        argv = [command, *[str(a) for a in self.spec.get("args") or []]]
        try:
            done = subprocess.run(
                argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
                check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as e:
            hint = self.spec.get("installHint")
            why = f"{command}: {getattr(e, 'strerror', None) or e}"
            raise ConfigError(
                f"exec credential plugin {why}" + (f" ({hint})" if hint else "")
            ) from None
        if done.returncode != 0:
            last = (done.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
            raise ConfigError(f"exec credential plugin {command} exited {done.returncode}: {last}")
        try:
            status = json.loads(done.stdout)["status"]
        except (ValueError, KeyError, TypeError):
            raise ConfigError(
                f"exec credential plugin {command}: no ExecCredential status"
            ) from None
        if status.get("clientCertificateData") and self.sslctx is not None:
            cert = self.files.write(str(status["clientCertificateData"]).encode())
            key = self.files.write(str(status.get("clientKeyData", "")).encode())
            self.sslctx.load_cert_chain(cert, key)
        self.value = status.get("token")
        stamp = status.get("expirationTimestamp")
        self.expires = _parse_time(stamp) - 10 if stamp else float("inf")


def _parse_time(stamp: str) -> float:
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
