"""The kubernetes target's side of the API server: a thin, counted REST client.

Every object is handled the same way, by its kind (:data:`KINDS`): server-side
apply (``PATCH`` with ``application/apply-patch+yaml``, field manager
``modelform``, conflicts forced — modelform owns the fields it sets), get,
list by label selector, delete. Calls are counted (:attr:`Kube.calls`) so the
benchmark and the tests can tell how many requests a refresh made.

The connection comes from a kubeconfig, resolved as kubectl does: the
target's ``kubeconfig``, else ``$KUBECONFIG``, else ``~/.kube/config``; the
target's ``context``, else the file's current one. One client per
(kubeconfig, context) and thread.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelform.plugin import Diagnostic, DiagnosticError, ProviderError

MISSING_SDK = (
    "target kind kubernetes needs the kubernetes client: pip install 'modelform[kubernetes]'"
)
FIELD_MANAGER = "modelform"
#: Seconds a single request may take (connect, read).
TIMEOUT = (5, 60)


@dataclass(frozen=True)
class Kind:
    api: str  # "/api/v1" or "/apis/apps/v1"
    plural: str
    namespaced: bool = True
    api_version: str = "v1"
    kind: str = ""


KINDS: dict[str, Kind] = {
    "Namespace": Kind("/api/v1", "namespaces", False, "v1", "Namespace"),
    "Deployment": Kind("/apis/apps/v1", "deployments", True, "apps/v1", "Deployment"),
    "ReplicaSet": Kind("/apis/apps/v1", "replicasets", True, "apps/v1", "ReplicaSet"),
    "Service": Kind("/api/v1", "services", True, "v1", "Service"),
    "Secret": Kind("/api/v1", "secrets", True, "v1", "Secret"),
    "Pod": Kind("/api/v1", "pods", True, "v1", "Pod"),
    "Event": Kind("/api/v1", "events", True, "v1", "Event"),
    "Node": Kind("/api/v1", "nodes", False, "v1", "Node"),
    "HorizontalPodAutoscaler": Kind(
        "/apis/autoscaling/v2",
        "horizontalpodautoscalers",
        True,
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
    ),  # fmt: skip
}


class NotFound(ProviderError):
    """The object (or its namespace) does not exist."""


def kubeconfig_path(option: str | None) -> str:
    """The kubeconfig to use, as kubectl resolves it (the first file of $KUBECONFIG)."""
    if option:
        return str(Path(option).expanduser())
    env = os.environ.get("KUBECONFIG", "")
    first = next((p for p in env.split(os.pathsep) if p), "")
    return first or str(Path.home() / ".kube" / "config")


class Kube:
    """One API server, as one kubeconfig context reaches it."""

    def __init__(self, kubeconfig: str | None, context: str | None) -> None:
        self.kubeconfig = kubeconfig_path(kubeconfig)
        self.context = context
        self.calls = 0
        self._lock = threading.Lock()
        self._client: Any = None

    def unreachable(self, e: BaseException) -> str:
        """One line for a server that does not answer: where, and the OS's words."""
        host = getattr(self._client, "host", "?")
        why = str(getattr(e, "reason", "") or e)
        found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", why)
        if found:
            why = found.group(1).strip().lower()
        elif "timed out" in why.lower():
            why = "timed out"
        return f"cannot reach the API server at {host} ({self.where()}): {why[:200]}"

    def where(self) -> str:
        return f"{self.kubeconfig}" + (f" (context {self.context})" if self.context else "")

    @property
    def client(self) -> Any:
        """The transport: modelform's own (k8s_transport) for the usual
        kubeconfigs, the kubernetes package's client for the rest."""
        if self._client is None:
            if not Path(self.kubeconfig).is_file():
                raise DiagnosticError(
                    Diagnostic(
                        f"kubeconfig {self.kubeconfig}: no such file",
                        hint="set the target's kubeconfig, or KUBECONFIG",
                    )
                )
            from modelform.providers import k8s_transport

            try:
                self._client = k8s_transport.load(self.kubeconfig, self.context)
            except k8s_transport.ConfigError as e:
                raise DiagnosticError(Diagnostic(f"kubeconfig {self.where()}: {e}")) from None
            except (k8s_transport.Unsupported, ssl.SSLError):
                self._client = _PackageTransport(self)
        return self._client

    # -- requests -------------------------------------------------------------

    def send(
        self, method: str, path: str, query: list[tuple[str, str]] | None = None,
        body: Any = None, headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:  # fmt: skip
        """One counted request: the answer's status and bytes, whatever the
        status; ProviderError when the server cannot be reached."""
        from urllib3.exceptions import HTTPError

        from modelform.providers.k8s_transport import ConfigError

        with self._lock:
            self.calls += 1
        client = self.client
        try:
            r = client.request(method, path, query, headers or {}, body, TIMEOUT)
        except HTTPError as e:
            raise ProviderError(self.unreachable(e)) from None
        except ConfigError as e:  # an exec plugin failing on a refresh
            raise ProviderError(f"kubeconfig {self.where()}: {e}") from None
        return int(r.status), bytes(r.data)

    def request(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        raw: bool = False,
    ) -> Any:
        """One call; the decoded JSON answer (text with ``raw``). NotFound for 404,
        ProviderError with the server's message for anything else."""
        headers = {"Accept": "application/json" if not raw else "*/*"}
        if body is not None:
            headers["Content-Type"] = content_type
        status, answer = self.send(method, path, query, body, headers)
        data = answer.decode("utf-8", errors="replace")
        if status >= 300:
            message = _message(data) or data.strip()[:200] or f"HTTP {status}"
            if status == 404:
                raise NotFound(message)
            raise ProviderError(f"{method} {path}: {message} (HTTP {status})")
        return data if raw else (json.loads(data) if data else {})

    def path(self, kind: str, namespace: str | None, name: str | None = None) -> str:
        k = KINDS[kind]
        out = k.api
        if k.namespaced and namespace:
            out += f"/namespaces/{namespace}"
        out += f"/{k.plural}"
        return out + (f"/{name}" if name else "")

    def apply(self, obj: dict[str, Any], manager: str = FIELD_MANAGER) -> dict[str, Any]:
        """Server-side apply of ``obj`` as field manager ``manager`` (conflicts
        forced: modelform owns what it sets); the live object."""
        meta = obj["metadata"]
        path = self.path(obj["kind"], meta.get("namespace"), meta["name"])
        query = [("fieldManager", manager), ("force", "true")]
        result: dict[str, Any] = self.request(
            "PATCH", path, query, obj, content_type="application/apply-patch+yaml"
        )
        return result

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A full update (PUT) of ``obj``, which carries the resourceVersion read."""
        meta = obj["metadata"]
        path = self.path(obj["kind"], meta.get("namespace"), meta["name"])
        result: dict[str, Any] = self.request("PUT", path, [("fieldManager", FIELD_MANAGER)], obj)
        return result

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self.request("GET", self.path(kind, namespace, name))
            return result
        except NotFound:
            return None

    def list(
        self, kind: str, namespace: str | None, selector: str = "", fields: str = ""
    ) -> list[dict[str, Any]]:
        query = [("labelSelector", selector)] if selector else []
        if fields:
            query.append(("fieldSelector", fields))
        try:
            data = self.request("GET", self.path(kind, namespace), query)
        except NotFound:  # the namespace is gone
            return []
        items: list[dict[str, Any]] = data.get("items", [])
        k = KINDS[kind]
        for item in items:  # a list's items name neither: as a GET would
            item.setdefault("apiVersion", k.api_version)
            item.setdefault("kind", k.kind)
        return items

    def delete(self, kind: str, namespace: str | None, name: str) -> bool:
        """Delete (foreground, so dependents go first); False if it was gone."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"}
        try:
            self.request("DELETE", self.path(kind, namespace, name), body=body)
            return True
        except NotFound:
            return False

    def logs(self, namespace: str, pod: str, tail: int) -> str:
        path = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
        try:
            text: str = self.request("GET", path, [("tailLines", str(tail))], raw=True)
            return text
        except ProviderError as e:
            return f"(no log: {e})\n"

    def proxy_post(
        self, namespace: str, service: str, port: str, path: str, body: Any,
        headers: dict[str, str],
    ) -> tuple[int, bytes]:  # fmt: skip
        """POST ``body`` (JSON) to the service through the API server's service
        proxy: the answer's status and bytes, whatever the status."""
        url = f"/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy/{path.lstrip('/')}"
        return self.send("POST", url, None, body, {"Content-Type": "application/json", **headers})


class _PackageTransport:
    """The kubernetes package's client behind the transport's interface, for
    kubeconfigs modelform does not read itself."""

    def __init__(self, kube: Kube) -> None:
        try:
            from kubernetes import config
        except ModuleNotFoundError as e:
            if e.name != "kubernetes":
                raise
            raise DiagnosticError(Diagnostic(MISSING_SDK)) from None
        try:
            self.api = config.new_client_from_config(
                config_file=kube.kubeconfig, context=kube.context
            )
        except Exception as e:  # noqa: BLE001 - a malformed file, an unknown context
            raise DiagnosticError(
                Diagnostic(f"kubeconfig {kube.where()}: {str(e).splitlines()[0]}")
            ) from None
        self.host = self.api.configuration.host

    def request(
        self, method: str, path: str, query: list[tuple[str, str]] | None,
        headers: dict[str, str], body: Any, timeout: tuple[float, float],
    ) -> Any:  # fmt: skip
        from urllib3.exceptions import HTTPError

        from modelform.providers.k8s_transport import Response

        try:
            r = self.api.call_api(
                path, method, query_params=query or [], header_params=headers, body=body,
                auth_settings=["BearerToken"], _preload_content=False,
                _return_http_data_only=True, _request_timeout=timeout,
            )  # fmt: skip
            return Response(int(r.status), bytes(r.data))
        except HTTPError:
            raise
        except Exception as e:  # noqa: BLE001 - an HTTP error status is an answer too
            status = getattr(e, "status", None)
            if status is None:
                raise ProviderError(f"API server: {e}") from None
            raw = getattr(e, "body", b"") or b""
            return Response(int(status), raw if isinstance(raw, bytes) else str(raw).encode())


def _message(body: str | bytes) -> str:
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return ""
    return str(data.get("message", "")) if isinstance(data, dict) else ""


_clients = threading.local()


def kube(kubeconfig: str | None, context: str | None) -> Kube:
    """The client for a target (one per kubeconfig, context and thread)."""
    cache: dict[tuple[str, str | None], Kube] = _clients.__dict__.setdefault("kubes", {})
    key = (kubeconfig_path(kubeconfig), context)
    if key not in cache:
        cache[key] = Kube(kubeconfig, context)
    return cache[key]
