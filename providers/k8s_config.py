"""The kubernetes target's options, declared once with descriptions (they feed
validation and the generated docs), and the service options it honours."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelform.plugin import Diagnostic, DiagnosticError, shared_options
from modelform.providers import imagebuild
from modelform.providers.dockerengine import default_host

TARGET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "kubeconfig": {
            "type": "string",
            "description": "The kubeconfig file (default: $KUBECONFIG, else ~/.kube/config). "
            "Credentials stay in it: modelform records only its path.",
        },
        "context": {
            "type": "string",
            "description": "The kubeconfig context to use (default: its current context).",
        },
        "namespace": {
            "type": "string",
            "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
            "maxLength": 63,
            "default": "default",
            "description": "The namespace services are deployed to.",
        },
        "create_namespace": {
            "type": "boolean",
            "default": False,
            "description": "Create the namespace if it is missing (and remove it on destroy: only "
            "a namespace modelform created is ever removed).",
        },
        "registry": {
            "type": "string",
            "description": "Registry host[:port][/path] the cluster pulls images from; apply "
            "pushes each service's image there and the Deployment names it by digest.",
        },
        "image_pull_secret": {
            "type": "string",
            "description": "Name of a docker-registry Secret in the namespace that lets the "
            "cluster pull from the registry.",
        },
        "service_type": {
            "enum": ["ClusterIP", "NodePort", "LoadBalancer"],
            "default": "ClusterIP",
            "description": "The type of each service's Kubernetes Service.",
        },
        "rollout_timeout_seconds": {
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 300,
            "description": "Longest a rollout may take before the service is called Failed (also "
            "the Deployment's progressDeadlineSeconds).",
        },
        "node_selector": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Node labels the pods must be scheduled on (the pods' nodeSelector), "
            "e.g. {agentpool: gpu}.",
        },
        "tolerations": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "key": {"type": "string"},
                    "operator": {"enum": ["Exists", "Equal"]},
                    "value": {"type": "string"},
                    "effect": {"enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
                },
                "additionalProperties": False,
            },
            "description": "Taints the pods tolerate, as Kubernetes writes them "
            "([{key, operator, value, effect}]).",
        },
        "limits": {
            "type": "boolean",
            "default": False,
            "description": "Also set cpu/memory_gb as limits (default: requests only).",
        },
        "docker_host": {
            "type": "string",
            "description": "Docker Engine images are built on (default: $DOCKER_HOST, else the "
            "local socket).",
        },
        "base_image": {
            "type": "string",
            "description": "Base image for environments that name none "
            f"(default {imagebuild.DEFAULT_BASE_IMAGE}).",
        },
        "carry_ca": {
            "type": ["boolean", "string"],
            "description": "CA bundle carried into builds so pip trusts a TLS-intercepting "
            "proxy: true/absent = this host's bundle, a path = that file, false = none.",
        },
    },
    "required": ["registry"],
    "additionalProperties": False,
}

SERVICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        **shared_options(
            "port",
            "replicas",
            "cpu",
            "memory_gb",
            "resources",
            "autoscale",
            "auth",
            "timeout_seconds",
            "workers",
            port=80,
            replicas=1,
            auth="none",
            workers=1,
            timeout_seconds=60,
        ),  # fmt: skip
        "rollback_on_failure": {
            "type": "boolean",
            "default": False,
            "description": "When a rollout fails (unschedulable, crashing, image not pulled, "
            "deadline passed), restore the previous revision's pods so the service keeps serving; "
            "the service is still tainted and the failure reported.",
        },
    },
}

_COMMON = ("name", "kind", "description", "digest")


@dataclass(frozen=True)
class Options:
    kubeconfig: str | None
    context: str | None
    namespace: str
    create_namespace: bool
    registry: str | None
    image_pull_secret: str | None
    service_type: str
    rollout_timeout_seconds: float
    limits: bool
    node_selector: dict[str, str]
    tolerations: list[dict[str, str]]
    docker_host: str
    base_image: str
    carry_ca: bool | str | None


def options(target: dict[str, Any], pos: Any = None) -> Options:
    """The target's options (the loader has checked them against the schema)."""
    own = {k: v for k, v in target.items() if k not in _COMMON}
    unknown = sorted(set(own) - set(TARGET_SCHEMA["properties"]))
    if unknown:
        raise DiagnosticError(
            Diagnostic(f"target {target.get('name', '?')} (kubernetes): unknown {unknown[0]}", pos)
        )
    return Options(
        kubeconfig=own.get("kubeconfig"),
        context=own.get("context"),
        namespace=str(own.get("namespace") or "default"),
        create_namespace=bool(own.get("create_namespace", False)),
        registry=(own.get("registry") or "").rstrip("/") or None,
        image_pull_secret=own.get("image_pull_secret"),
        service_type=str(own.get("service_type") or "ClusterIP"),
        rollout_timeout_seconds=float(own.get("rollout_timeout_seconds") or 300),
        limits=bool(own.get("limits", False)),
        node_selector=dict(own.get("node_selector") or {}),
        tolerations=[dict(t) for t in own.get("tolerations") or []],
        docker_host=own.get("docker_host") or default_host(),
        base_image=own.get("base_image") or imagebuild.DEFAULT_BASE_IMAGE,
        carry_ca=own.get("carry_ca"),
    )
