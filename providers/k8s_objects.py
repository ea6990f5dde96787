"""The kubernetes target's objects: the manifests of a service, what of a live
object is ours, and what state a rollout is in.

A service is a Deployment, a Service, a Secret (``auth: key``) and a
HorizontalPodAutoscaler (``autoscale``), all named ``<project>-<service>``
and labelled with the project and lineage. Drift is judged on what
modelform sets, nothing else: :func:`project` takes, from a live object,
exactly the fields of the manifest modelform applied. Defaults the API server
fills in, other controllers' annotations and, when an HPA scales the
Deployment, ``spec.replicas`` (modelform does not set it then) are never
seen; a hand ``kubectl scale``/``set env``/``delete`` is.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from modelform.plugin import UNKNOWN, ServiceStatus
from modelform.providers.imagebuild import CONTAINER_PORT

MANAGED_BY = "app.kubernetes.io/managed-by"
NAME = "app.kubernetes.io/name"
INSTANCE = "app.kubernetes.io/instance"
PROJECT = "modelform.io/project"
LINEAGE = "modelform.io/lineage"
ADDRESS = "modelform.io/address"
AUTH_ENV = "MODELFORM_AUTH_KEY"
#: Pod-template annotation that changes when a service is replaced: new pods.
ROLLOUT = "modelform.io/rollout"
#: The Deployment's revision, as the deployment controller numbers it.
REVISION = "deployment.kubernetes.io/revision"
#: KWOK marks its fake nodes with this annotation: no container runs there.
FAKE_NODE = "kwok.x-k8s.io/node"
#: Child name → object kind, in the order they are applied.
CHILD_KINDS = {
    "secret": "Secret",
    "deployment": "Deployment",
    "service": "Service",
    "hpa": "HorizontalPodAutoscaler",
}


def object_name(project: str, service: str) -> str:
    """``<project>-<service>``, a DNS label (63 characters at most)."""
    name = re.sub(r"[^a-z0-9-]", "-", f"{project}-{service}".lower()).strip("-")
    if len(name) > 63:
        name = name[:54].rstrip("-") + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return name


def selector(project: str, name: str) -> dict[str, str]:
    return {INSTANCE: name, PROJECT: project}


def labels(project: str, service: str, name: str, lineage: str) -> dict[str, str]:
    return {
        MANAGED_BY: "modelform",
        NAME: service,
        INSTANCE: name,
        PROJECT: project,
        LINEAGE: lineage,
    }


def cpu_quantity(cores: float) -> str:
    """Cores as the API server writes them back: ``500m``, ``2``."""
    milli = int(round(cores * 1000))
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def memory_quantity(gb: float) -> str:
    """GiB as the API server writes them back: ``512Mi``, ``2Gi``."""
    mi = int(round(gb * 1024))
    return f"{mi // 1024}Gi" if mi % 1024 == 0 else f"{mi}Mi"


def key_digest(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def manifests(a: dict[str, Any], key: Any) -> dict[str, dict[str, Any]]:
    """The objects of a service whose planned attributes are ``a`` (child name →
    manifest). ``a["image"]`` must be known; ``key`` is the auth key itself."""
    name, ns, project = a["name"], a["namespace"], a["project"]
    meta = {"name": name, "namespace": ns, "labels": dict(a["labels"])}
    sel = selector(project, name)
    out: dict[str, dict[str, Any]] = {}
    env = [{"name": k, "value": str(v)} for k, v in sorted(a["env"].items())]
    if a["auth"] == "key":
        out["secret"] = {
            "apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque",
            "stringData": {"key": key if key is not None else ""},
        }  # fmt: skip
        env.append({"name": AUTH_ENV,
                    "valueFrom": {"secretKeyRef": {"name": name, "key": "key"}}})  # fmt: skip
    requests: dict[str, str] = {}
    if a.get("cpu"):
        requests["cpu"] = cpu_quantity(float(a["cpu"]))
    if a.get("memory_gb"):
        requests["memory"] = memory_quantity(float(a["memory_gb"]))
    resources: dict[str, Any] = {"requests": requests} if requests else {}
    if requests and a.get("limits"):
        resources["limits"] = dict(requests)
    args = ["--workers", str(a["workers"])]
    if a.get("timeout_seconds"):
        args += ["--timeout", str(a["timeout_seconds"])]
    container: dict[str, Any] = {
        "name": "model",
        "image": a["image"],
        "args": args,
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT}],
        "env": env,
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {
            "httpGet": {"path": "/", "port": "http"}, "periodSeconds": 10,
            "failureThreshold": 6,
        },
    }  # fmt: skip
    if resources:
        container["resources"] = resources
    pod: dict[str, Any] = {"containers": [container]}
    if a.get("node_selector"):
        pod["nodeSelector"] = dict(a["node_selector"])
    if a.get("tolerations"):
        pod["tolerations"] = [dict(t) for t in a["tolerations"]]
    if a.get("image_pull_secret"):
        pod["imagePullSecrets"] = [{"name": a["image_pull_secret"]}]
    spec: dict[str, Any] = {
        "selector": {"matchLabels": sel},
        "strategy": {"type": "RollingUpdate",
                     "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "progressDeadlineSeconds": int(a["rollout_timeout_seconds"]),
        "template": {"metadata": {"labels": dict(a["labels"])}, "spec": pod},
    }  # fmt: skip
    if not a.get("autoscale"):
        spec["replicas"] = int(a["replicas"])
    if a.get("rollout_token") is not None:
        spec["template"]["metadata"]["annotations"] = {ROLLOUT: a["rollout_token"]}
    out["deployment"] = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
                         "spec": spec}  # fmt: skip
    out["service"] = {
        "apiVersion": "v1", "kind": "Service", "metadata": meta,
        "spec": {"type": a["service_type"], "selector": sel,
                 "ports": [{"name": "http", "port": int(a["port"]), "targetPort": "http"}]},
    }  # fmt: skip
    if a.get("autoscale"):
        auto = a["autoscale"]
        out["hpa"] = {
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta,
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": int(auto["min"]), "maxReplicas": int(auto["max"]),
                "metrics": [{"type": "Resource", "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization",
                               "averageUtilization": int(auto.get("target_cpu") or 70)},
                }}],
            },
        }  # fmt: skip
    return out


def managed(manifest: dict[str, Any]) -> dict[str, Any]:
    """What of a manifest is recorded and compared, flat (:func:`flatten`): all
    but a Secret's data, recorded as its digest (the key stays out of state)."""
    if manifest.get("kind") == "Secret":
        rest = {k: v for k, v in manifest.items() if k != "stringData"}
        key = manifest["stringData"]["key"]
        digest = key_digest(key) if isinstance(key, str) else UNKNOWN
        return {**flatten(rest), "key_digest": digest}
    return flatten(manifest)


def _named(value: Any) -> bool:
    return (
        isinstance(value, list) and bool(value)
        and all(isinstance(e, dict) and isinstance(e.get("name"), str) for e in value)
    )  # fmt: skip


def _leaf_dict(value: dict[str, Any]) -> bool:
    """Label-like maps (keys with dots or slashes) are compared as one value."""
    return any("." in k or "/" in k for k in value)


def flatten(obj: dict[str, Any]) -> dict[str, Any]:
    """``{"spec.replicas": 2, "spec.template.spec.containers[model].image": ...}``.

    Lists of named elements (containers, env, ports) are keyed by name, with
    ``path[*]`` listing the names in order (an element added by hand shows
    there); label maps and other lists are single values. So a drift or a
    change reads as the one field that moved.
    """
    out: dict[str, Any] = {}

    def walk(v: Any, path: str) -> None:
        if isinstance(v, dict) and v and not _leaf_dict(v):
            for k, x in v.items():
                walk(x, f"{path}.{k}" if path else k)
        elif _named(v):
            out[f"{path}[*]"] = [e["name"] for e in v]
            for e in v:
                walk({k: x for k, x in e.items() if k != "name"}, f"{path}[{e['name']}]")
        else:
            out[path] = v

    walk(obj, "")
    return out


_STEP = re.compile(r"([^.\[]+)((?:\[[^\]]*\])?)")


def lookup(live: Any, path: str, recorded: Any) -> Any:
    """The value at a :func:`flatten` ``path`` of a live object; of a label map,
    only the keys ``recorded`` has."""
    value = live
    for name, index in _STEP.findall(path):
        value = value.get(name) if isinstance(value, dict) else None
        if index == "[*]":
            return [e.get("name") for e in value] if isinstance(value, list) else value
        if index:
            wanted = index[1:-1]
            items = value if isinstance(value, list) else []
            value = next((e for e in items if isinstance(e, dict) and e.get("name") == wanted),
                         None)  # fmt: skip
    if isinstance(recorded, dict) and isinstance(value, dict):
        return {k: value.get(k) for k in recorded}
    return value


def observed(recorded: dict[str, Any], live: dict[str, Any]) -> dict[str, Any]:
    """A child's attributes now: the live values of the recorded paths."""
    out = {p: lookup(live, p, v) for p, v in recorded.items() if p != "key_digest"}
    if "key_digest" in recorded:
        data = (live.get("data") or {}).get("key", "")
        try:
            key = base64.b64decode(data).decode()
        except (ValueError, UnicodeDecodeError):
            key = ""
        out["key_digest"] = key_digest(key)
    return out


def overlay(live: Any, desired: Any) -> Any:
    """``live`` with every field ``desired`` sets put back (lists whole): what a
    full update must send to undo hand changes server-side apply cannot (an
    env var another field manager added to a list modelform owns)."""
    if isinstance(live, dict) and isinstance(desired, dict):
        out = dict(live)
        for k, v in desired.items():
            out[k] = overlay(live.get(k), v)
        return out
    return desired


# -- rollout ------------------------------------------------------------------


def rollout(dep: dict[str, Any], pods: list[dict[str, Any]], strict: bool) -> tuple[str, str]:
    """(status, message) of a Deployment and its pods: Unschedulable or Failed
    (with the scheduler's or the container's words); Healthy when every
    replica runs the current template and — ``strict``, while a rollout is
    followed — all of them are available, or — a refresh — at least one is
    (an autoscaler adding replicas is not a change of health); else
    Transitioning."""
    spec, st = dep.get("spec") or {}, dep.get("status") or {}
    want = int(spec.get("replicas", 1) or 0)
    current = int(st.get("observedGeneration", 0) or 0) >= int(
        (dep.get("metadata") or {}).get("generation", 0) or 0
    )
    if not current:  # the controller has not seen the latest spec: nothing to judge yet
        return ServiceStatus.TRANSITIONING.value, progress(dep)
    for c in st.get("conditions") or []:
        if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
            return ServiceStatus.FAILED.value, f"progress deadline exceeded: {c.get('message')}"
    for pod in pods:
        pst = pod.get("status") or {}
        for c in pst.get("conditions") or []:
            if c.get("type") == "PodScheduled" and c.get("status") == "False":
                why = c.get("message") or c.get("reason") or "not scheduled"
                return ServiceStatus.UNSCHEDULABLE.value, f"pod {_pod(pod)}: {why}"
        if pst.get("phase") == "Failed":
            return ServiceStatus.FAILED.value, f"pod {_pod(pod)} failed: {_container_why(pst)}"
        for cs in pst.get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in (
                "ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff", "InvalidImageName",
                "CreateContainerConfigError", "CreateContainerError",
            ):  # fmt: skip
                msg = waiting.get("message") or ""
                return ServiceStatus.FAILED.value, f"pod {_pod(pod)}: {waiting['reason']} {msg}"
    updated = int(st.get("updatedReplicas", 0) or 0)
    available = int(st.get("availableReplicas", 0) or 0)
    total = int(st.get("replicas", 0) or 0)
    enough = available >= want if strict else available >= min(want, 1)
    if updated >= want and enough and total == updated:
        return ServiceStatus.HEALTHY.value, ""
    return ServiceStatus.TRANSITIONING.value, progress(dep)


def progress(dep: dict[str, Any]) -> str:
    spec, st = dep.get("spec") or {}, dep.get("status") or {}
    want = int(spec.get("replicas", 1) or 0)
    return (
        f"{int(st.get('updatedReplicas', 0) or 0)}/{want} updated, "
        f"{int(st.get('readyReplicas', 0) or 0)}/{want} ready, "
        f"{int(st.get('availableReplicas', 0) or 0)}/{want} available"
    )


def _pod(pod: dict[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("name", "?"))


def _container_why(pst: dict[str, Any]) -> str:
    for cs in pst.get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated") or {}
        if term:
            return f"exit code {term.get('exitCode')} ({term.get('reason') or 'terminated'})"
    return str(pst.get("reason") or pst.get("message") or "Failed")
