"""The kubernetes target: each service a Deployment, a Service, a Secret for its
key and an autoscaler, applied server-side and rolled out under watch.

Per service (objects named ``<project>-<service>``, see
:mod:`modelform.providers.k8s_objects`):

* the image is built like the container target's (packages layer cached
  apart from model and code), pushed to the target's registry and named in
  the Deployment by digest, so a new model version is a new image and a
  rolling update; replicas, cpu, memory, env → the same rolling update or an
  in-place scale. Nothing is ever deleted to be changed, except a move to
  another namespace;
* every object is applied with server-side apply as field manager
  ``modelform``; the objects are the service's children in state
  (``service.api/deployment``...), each holding what modelform set, so
  drift is a hand change to those fields only;
* apply waits for the rollout (progress lines) and maps it to a status:
  Healthy, Transitioning, Unschedulable (the scheduler's words), Failed (pull
  errors, crash loops, the deadline); a failed rollout taints the service
  and, with ``rollback_on_failure``, restores the previous revision first.

The namespace is the target's own resource (``target.<name>/namespace``),
made before its services and, only when modelform created it, removed after
them. A refresh lists each kind once per namespace by label; it never
fetches objects one by one.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from typing import Any

from modelform.plugin import (
    PROTOCOL_VERSION,
    UNKNOWN,
    Applied,
    ApplyRequest,
    Check,
    Child,
    Context,
    Diagnostic,
    DiagnosticError,
    Proposal,
    Provider,
    ProviderError,
    Resource,
    ServiceStatus,
    changed_keys,
    check_test_response,
    coming_up,
    is_known,
)
from modelform.providers import dockerengine, imagebuild, imagesource
from modelform.providers import k8s_objects as ko
from modelform.providers.k8s_api import Kube, kube
from modelform.providers.k8s_config import SERVICE_SCHEMA, TARGET_SCHEMA, Options, options

#: The field manager that holds ``spec.replicas`` for an autoscaler to take.
HANDOFF = "modelform-handoff"
#: Changes that make the objects anew (elsewhere), not a rolling update.
REPLACE_ON = {"namespace", "name", "kubeconfig", "context"}
#: Child name → recorded type.
CHILD_TYPES = {name: f"kubernetes_{name}" for name in ko.CHILD_KINDS}
#: Kinds a refresh lists, once per namespace.
LISTED = ("Deployment", "Service", "Secret", "HorizontalPodAutoscaler", "ReplicaSet", "Pod")

ATTRIBUTES = {
    "name": "The objects' name, <project>-<service>.",
    "namespace": "The namespace they are in.",
    "url": "http://NAME.NAMESPACE.svc.cluster.local:PORT, inside the cluster.",
    "port": "The Service's port.",
    "service_type": "ClusterIP, NodePort or LoadBalancer.",
    "image": "The image the pods run, REGISTRY/REPO@sha256:...",
    "image_digest": "Content digest of everything in the image.",
    "models": "Model name → NAME:VERSION it serves.",
    "replicas": "Replicas (null when an autoscaler sets them).",
    "autoscale": "min, max and target_cpu of the autoscaler, or null.",
    "status": "Healthy, Transitioning, Unschedulable or Failed.",
    "uid": "The Deployment's uid.",
    "key": "The generated key, with auth: key (sensitive).",
}


class KubernetesProvider(Provider):
    kind = "kubernetes"
    protocol_version = PROTOCOL_VERSION
    description = (
        "A Deployment, Service, Secret and autoscaler per service on a Kubernetes cluster."
    )
    target_part = "namespace"
    target_part_first = True

    def __init__(self) -> None:
        #: (kubeconfig, context, namespace) → kind → name → live object; made by
        #: the first read of a refresh, dropped by any change this provider makes.
        self._snapshots: dict[tuple[str, str | None, str], dict[str, dict[str, Any]]] = {}
        self._snap_lock = threading.Lock()

    def target_schema(self) -> dict[str, Any]:
        return TARGET_SCHEMA

    def service_schema(self) -> dict[str, Any]:
        return SERVICE_SCHEMA

    def attributes(self, resource_type: str) -> dict[str, str] | None:
        return dict(ATTRIBUTES) if resource_type == "service" else None

    def identity(self, attributes: dict[str, Any]) -> str | None:
        uid = attributes.get("uid")
        return str(uid) if uid else None

    def validate(self, resource: Resource, ctx: Context) -> list[Diagnostic]:
        if resource.type != "service":
            return []
        opts = options(ctx.target, resource.pos)
        if not opts.registry:
            return [
                Diagnostic(
                    f"{resource.address}: target {ctx.target.get('name')} (kubernetes) names no "
                    "registry; the cluster pulls each service's image from one",
                    resource.option_pos("target"),
                    "add registry: HOST:PORT to the target",
                )
            ]
        auto = resource.config.get("autoscale")
        out = []
        if isinstance(auto, dict) and is_known(auto) and int(auto["max"]) < int(auto["min"]):
            out.append(Diagnostic(f"{resource.address}: autoscale: max is below min",
                                  resource.option_pos("autoscale")))  # fmt: skip
        if auto and ("replicas",) in resource.positions:
            out.append(Diagnostic(
                f"{resource.address}: replicas and autoscale exclude each other (the autoscaler "
                "sets the replicas between its min and max)", resource.option_pos("replicas"),
            ))  # fmt: skip
        return out

    # -- plan -----------------------------------------------------------------

    def plan(self, resource: Resource, prior: dict[str, Any] | None, ctx: Context) -> Proposal:
        opts = options(ctx.target, resource.pos)
        if resource.type == "target":
            created = opts.create_namespace
            notes = []
            ours = prior and prior.get("created") and prior.get("namespace") == opts.namespace
            if created and not ours:
                live = kube(opts.kubeconfig, opts.context).get("Namespace", None, opts.namespace)
                labels = (live or {}).get("metadata", {}).get("labels") or {}
                if live is not None and labels.get(ko.PROJECT) != ctx.project:
                    created = False  # someone else's: used as it is, never removed
                    notes.append(f"namespace {opts.namespace} exists and is not modelform's: "
                                 "used as it is, never removed")  # fmt: skip
            planned = {
                "namespace": opts.namespace,
                "created": created,
                "kubeconfig": opts.kubeconfig,
                "context": opts.context,
            }
            return Proposal(planned, requires_replace={"namespace", "kubeconfig", "context"},
                            notes=notes)  # fmt: skip
        planned = self._desired(resource, ctx, opts)
        same_image = prior and prior.get("image_digest") == planned["image_digest"]
        planned["image"] = prior.get("image") if same_image and prior else UNKNOWN
        planned["key"] = None
        if planned["auth"] == "key":
            planned["key"] = prior.get("key") if prior and prior.get("key") else UNKNOWN
        moved = prior is not None and any(prior.get(k) != planned[k] for k in REPLACE_ON)
        keep_uid = prior is not None and bool(prior.get("uid")) and not ctx.replacing and not moved
        planned["uid"] = prior.get("uid") if keep_uid and prior else UNKNOWN
        # A replace (-replace, a tainted service) rolls new pods even when
        # nothing else changed: a new token in the pod template.
        token = prior.get("rollout_token") if prior else None
        planned["rollout_token"] = token if token and not ctx.replacing and not moved else UNKNOWN
        children = {
            n: Child(CHILD_TYPES[n], ko.managed(m))
            for n, m in ko.manifests(planned, planned["key"]).items()
        }
        # Rolling out or scaling is coming up, not broken — unless an object was changed by
        # hand: then apply makes it so and follows the rollout to its end.
        if coming_up(prior, planned):
            kids_same = set(children) == set(ctx.children) and not any(
                changed_keys(ctx.children[n], c.attributes) for n, c in children.items()
            )
            if kids_same:
                planned["status"] = ServiceStatus.TRANSITIONING.value
        return Proposal(
            planned,
            requires_replace=set(REPLACE_ON),
            reasons=_reasons(prior, planned),
            notes=_notes(prior, planned, resource),
            children=children,
            sensitive={"key"},
        )

    def _desired(self, r: Resource, ctx: Context, opts: Options) -> dict[str, Any]:
        cfg = r.config
        spec = self._spec(r, ctx, opts)
        env_name = cfg.get("environment")
        env_attrs = r.inputs.get(f"environment.{env_name}", {}) if env_name else {}
        env = {**(env_attrs.get("env") or {}), **(cfg.get("env") or {})}
        res = cfg.get("resources") or {}
        name = ko.object_name(ctx.project, r.name)
        port = cfg.get("port") or 80
        auto = cfg.get("autoscale")
        if isinstance(auto, dict):
            auto = {"min": auto["min"], "max": auto["max"],
                    "target_cpu": auto.get("target_cpu") or 70}  # fmt: skip
        return {
            "project": ctx.project,
            "name": name,
            "namespace": opts.namespace,
            "labels": ko.labels(ctx.project, r.name, name, ctx.lineage),
            "address": r.address,
            "port": port,
            "url": f"http://{name}.{opts.namespace}.svc.cluster.local:{port}",
            "service_type": opts.service_type,
            "image_repository": spec.repository,
            "image_digest": spec.digest(),
            "models": {n: r.inputs[f"model.{n}"]["ref"] for n in cfg.get("models", [])},
            "entry_script": cfg["entry_script"],
            "code_digest": r.digests.get("code", ""),
            "environment": env_name,
            "env": {k: v if not is_known(v) else str(v) for k, v in env.items()},
            "replicas": None if auto else int(cfg.get("replicas") or 1),
            "autoscale": auto or None,
            "cpu": cfg.get("cpu", res.get("cpu")),
            "memory_gb": cfg.get("memory_gb", res.get("memory_gb")),
            "limits": opts.limits,
            "node_selector": opts.node_selector or None,
            "tolerations": opts.tolerations or None,
            "workers": int(cfg.get("workers") or 1),
            "auth": cfg.get("auth") or "none",
            "timeout_seconds": cfg.get("timeout_seconds"),
            "image_pull_secret": opts.image_pull_secret,
            "rollout_timeout_seconds": opts.rollout_timeout_seconds,
            "rollback_on_failure": bool(cfg.get("rollback_on_failure", False)),
            "kubeconfig": opts.kubeconfig,
            "context": opts.context,
            "registry": opts.registry,
            "status": ServiceStatus.HEALTHY.value,
        }  # fmt: skip

    def _spec(self, r: Resource, ctx: Context, opts: Options, register: bool = False) -> Any:
        return imagesource.image_spec(
            r, ctx, registry=opts.registry, base_image=opts.base_image, carry_ca=opts.carry_ca,
            register_models=register,
        )  # fmt: skip

    # -- refresh ----------------------------------------------------------------

    def _kube(self, attrs: dict[str, Any], ctx: Context) -> Kube:
        opts = options(ctx.target) if ctx.target else None
        cfg = attrs.get("kubeconfig", opts.kubeconfig if opts else None)
        context = attrs.get("context", opts.context if opts else None)
        return kube(cfg, context)

    def _snapshot(self, k: Kube, namespace: str, project: str) -> dict[str, dict[str, Any]]:
        """Every object of the project in ``namespace``: one list call per kind."""
        key = (k.kubeconfig, k.context, namespace)
        with self._snap_lock:
            snap = self._snapshots.get(key)
            if snap is None:
                sel = f"{ko.MANAGED_BY}=modelform,{ko.PROJECT}={project}"
                snap = {}
                for kind in LISTED:
                    snap[kind] = {o["metadata"]["name"]: o for o in k.list(kind, namespace, sel)}
                # pods and ReplicaSets by service, matched once rather than per service
                for kind in ("Pod", "ReplicaSet"):
                    by: dict[str, list[dict[str, Any]]] = {}
                    for o in snap[kind].values():
                        instance = (o["metadata"].get("labels") or {}).get(ko.INSTANCE)
                        by.setdefault(str(instance), []).append(o)
                    snap[f"{kind} by service"] = by
                self._snapshots[key] = snap
            return snap

    def _changed(self) -> None:
        with self._snap_lock:
            self._snapshots.clear()

    def read(self, prior: dict[str, Any], ctx: Context) -> dict[str, Any] | None:
        k = self._kube(prior, ctx)
        if ctx.type == "target":
            if not prior.get("created"):
                return prior
            return prior if k.get("Namespace", None, str(prior["namespace"])) else None
        if ctx.type in CHILD_TYPES.values():
            kind, ns, name, project = _child_ref(prior)
            live = self._snapshot(k, ns, project).get(kind, {}).get(name)
            return None if live is None else ko.observed(prior, live)
        snap = self._snapshot(k, str(prior["namespace"]), str(prior["project"]))
        name = str(prior["name"])
        dep = snap["Deployment"].get(name)
        if dep is None and name not in snap["Service"] and name not in snap["Secret"]:
            return None
        if dep is None:  # deleted by hand: made again (a new uid) by the next apply
            return {**prior, "status": ServiceStatus.FAILED.value, "uid": None}
        pods = _current(
            dep, snap["ReplicaSet by service"].get(name, []), snap["Pod by service"].get(name, [])
        )
        status, _ = ko.rollout(dep, pods, strict=False)
        return {**prior, "status": status, "uid": dep["metadata"].get("uid")}

    def discover(self, ctx: Context) -> list[dict[str, Any]]:
        """Deployments of this project and lineage in the target's namespace."""
        if not ctx.target:
            return []
        opts = options(ctx.target)
        k = kube(opts.kubeconfig, opts.context)
        snap = self._snapshot(k, opts.namespace, ctx.project)
        out = []
        for dep in snap["Deployment"].values():
            meta = dep["metadata"]
            if (meta.get("labels") or {}).get(ko.LINEAGE) != ctx.lineage:
                continue
            address = (meta.get("annotations") or {}).get(ko.ADDRESS, "service.unknown")
            attrs = {"uid": meta.get("uid"), "name": meta["name"], "namespace": opts.namespace,
                     "project": ctx.project, "kubeconfig": opts.kubeconfig,
                     "context": opts.context}  # fmt: skip
            out.append({"address": address, "attributes": attrs, "complete": False})
        return out

    # -- apply ----------------------------------------------------------------

    def apply(self, request: ApplyRequest, ctx: Context) -> Applied:
        try:
            if request.resource.type == "target":
                made = self._namespace(request.planned, ctx)
                old = request.prior
                if old and old.get("created") and old.get("namespace") != made["namespace"]:
                    self.delete(request.resource.address, old, ctx)  # moved: the old one goes
                return Applied(made)
            return self._apply_service(request, ctx)
        except DiagnosticError as e:
            raise ProviderError(str(e)) from None
        except dockerengine.errors() as e:
            raise ProviderError(f"docker: {dockerengine.short(e)}") from None
        finally:
            self._changed()

    def _namespace(self, planned: dict[str, Any], ctx: Context) -> dict[str, Any]:
        k = self._kube(planned, ctx)
        ns = str(planned["namespace"])
        if planned["created"]:
            labels = {ko.MANAGED_BY: "modelform", ko.PROJECT: ctx.project,
                      ko.LINEAGE: ctx.lineage}  # fmt: skip
            existing = k.get("Namespace", None, ns)
            owner = ((existing or {}).get("metadata", {}).get("labels") or {}).get(ko.PROJECT)
            if existing is not None and owner != ctx.project:
                raise ProviderError(
                    f"namespace {ns} appeared meanwhile and is not modelform's: plan again"
                )
            k.apply({"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": ns, "labels": labels}})  # fmt: skip
            ctx.log(f"namespace {ns} {'created' if existing is None else 'is ours'}")
        elif k.get("Namespace", None, ns) is None:
            raise ProviderError(
                f"namespace {ns} does not exist ({k.where()}): create it, or set "
                "create_namespace: true on the target"
            )
        return dict(planned)

    def _apply_service(self, req: ApplyRequest, ctx: Context) -> Applied:
        r = req.resource
        opts = options(ctx.target, r.pos)
        attrs = dict(req.planned)
        k = self._kube(attrs, ctx)
        if not is_known(attrs["image"]):
            attrs["image"] = self._image(r, ctx, opts)
        key = attrs.get("key")
        if attrs["auth"] == "key" and not is_known(key):
            key = secrets.token_urlsafe(32)
            attrs["key"] = key
        if not is_known(attrs.get("rollout_token")):
            attrs["rollout_token"] = secrets.token_hex(4)
        objs = ko.manifests(attrs, key if isinstance(key, str) else None)
        live_dep = k.get("Deployment", attrs["namespace"], attrs["name"])
        before = _revision(live_dep)
        if attrs.get("autoscale") and live_dep is not None:
            # Hand the replica count over before modelform stops setting it, so
            # the API server keeps it instead of resetting it to 1.
            self._hand_over(k, attrs, int(live_dep["spec"].get("replicas") or 1))
        for name in ko.CHILD_KINDS:
            if name in objs:
                live = _apply_object(k, _annotated(objs[name], r.address), ctx)
                if name == "deployment":
                    attrs["uid"] = live["metadata"].get("uid")
        for name, old in req.prior_children.items():
            if name not in objs:
                kind, ns, oname, _ = _child_ref(old)
                k.delete(kind, ns, oname)
                ctx.log(f"removed {kind} {oname}")
        children = {n: Child(CHILD_TYPES[n], ko.managed(m)) for n, m in objs.items()}
        self._autoscaled(k, attrs, ctx)
        status, message = self._wait(k, attrs, ctx)
        attrs["status"] = status
        if status != ServiceStatus.HEALTHY.value:
            note = ""
            if attrs["rollback_on_failure"]:
                note = self._rollback(k, attrs, _annotated(objs["deployment"], r.address),
                                      before, ctx)  # fmt: skip
            raise ProviderError(
                f"{status}: {message}{note}",
                log=self._events(k, attrs),
                status=status,
                attributes=attrs,
                children=self._live_children(k, objs),
            )
        was = req.prior
        if was and any(was.get(key) != attrs.get(key) for key in REPLACE_ON):
            # Moved (another namespace, cluster or name): the old objects go now
            # that the new ones serve.
            ctx.log(f"removing the objects in namespace {was.get('namespace')}")
            self.delete(r.address, was, ctx)
        return Applied(attrs, children)

    def _hand_over(self, k: Kube, attrs: dict[str, Any], replicas: int) -> None:
        """Set ``spec.replicas`` as another field manager (``modelform-handoff``),
        which the autoscaler then takes over: modelform itself never sets it
        for an autoscaled service, so it never fights the autoscaler."""
        k.apply(
            {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": attrs["name"], "namespace": attrs["namespace"]},
             "spec": {"replicas": replicas}},
            manager=HANDOFF,
        )  # fmt: skip

    def _autoscaled(self, k: Kube, attrs: dict[str, Any], ctx: Context) -> None:
        """A new or newly autoscaled Deployment starts at the autoscaler's minimum,
        not at the API server's default of 1 until the autoscaler's first sync."""
        auto = attrs.get("autoscale")
        if not auto:
            return
        dep = k.get("Deployment", str(attrs["namespace"]), str(attrs["name"]))
        have = int((dep or {}).get("spec", {}).get("replicas") or 0)
        if dep is not None and have < int(auto["min"]):
            self._hand_over(k, attrs, int(auto["min"]))
            ctx.log(f"replicas {have} → {auto['min']} (the autoscaler's minimum)")

    def _image(self, r: Resource, ctx: Context, opts: Options) -> str:
        client = dockerengine.client(opts.docker_host, kind="kubernetes")
        spec = self._spec(r, ctx, opts, register=True)
        built = imagebuild.build(client, spec, ctx.log, sleep=ctx.sleep)
        digest = None if built.built else imagebuild.already_pushed(built)
        if digest:
            ctx.log(f"{built.ref} is in the registry already ({digest}): no push")
        else:
            digest = imagebuild.push(client, built.ref, None, ctx.log, sleep=ctx.sleep)
        if not digest:
            raise ProviderError(f"the registry gave no digest for {built.ref}")
        return f"{spec.repository}@{digest}"

    def _wait(self, k: Kube, attrs: dict[str, Any], ctx: Context) -> tuple[str, str]:
        """Follow the rollout until Healthy, a failure, or the timeout."""
        ns, name = str(attrs["namespace"]), str(attrs["name"])
        deadline = time.monotonic() + float(attrs["rollout_timeout_seconds"])
        said = ""
        tick = 0
        while True:
            tick += 1
            dep = k.get("Deployment", ns, name)
            if dep is None:
                return ServiceStatus.FAILED.value, f"deployment {name} vanished during the rollout"
            # The Deployment's status alone says when it is done (one GET); its
            # pods are read once a second, to tell a rollout stuck on them.
            status, message = ko.rollout(dep, [], strict=True)
            if status == ServiceStatus.TRANSITIONING.value and tick % 4 == 0:
                pods = _pods_of(k.list("Pod", ns, _selector(attrs)), attrs)
                pods = _current(dep, k.list("ReplicaSet", ns, _selector(attrs)), pods)
                status, message = ko.rollout(dep, pods, strict=True)
            line = ko.progress(dep)
            if line != said:
                ctx.log(f"rollout: {line}")
                said = line
            if status != ServiceStatus.TRANSITIONING.value:
                return status, message
            if time.monotonic() > deadline:
                timeout = float(attrs["rollout_timeout_seconds"])
                return ServiceStatus.FAILED.value, f"not rolled out after {timeout:.0f} s ({line})"
            ctx.sleep(0.25, elsewhere=True)

    def _rollback(
        self, k: Kube, attrs: dict[str, Any], dep: dict[str, Any], before: int | None,
        ctx: Context,
    ) -> str:  # fmt: skip
        """Put the previous revision's pod template back in the Deployment ``dep``
        modelform applies (all of it: server-side apply takes a whole intent);
        wait for it to serve."""
        ns, name = str(attrs["namespace"]), str(attrs["name"])
        sets = k.list("ReplicaSet", ns, _selector(attrs))
        current = _revision(k.get("Deployment", ns, name))
        older = [rs for rs in sets if (_revision(rs) or 0) < (current or 0)]
        if not older or before is None:
            return "; no previous revision to roll back to"
        prev = max(older, key=lambda rs: _revision(rs) or 0)
        template = json.loads(json.dumps(prev["spec"]["template"]))
        template.get("metadata", {}).get("labels", {}).pop("pod-template-hash", None)
        for key in ("creationTimestamp",):
            template.get("metadata", {}).pop(key, None)
        k.apply({**dep, "spec": {**dep["spec"], "template": template}})
        ctx.log(f"rollout failed: rolling back to revision {_revision(prev)}")
        status, message = self._wait(k, {**attrs, "rollout_timeout_seconds": 120}, ctx)
        if status == ServiceStatus.HEALTHY.value:
            ctx.log(f"rolled back to revision {_revision(prev)}: it serves again")
            return f"; rolled back to revision {_revision(prev)}, which serves again"
        return f"; the rollback to revision {_revision(prev)} failed too: {message}"

    def _live_children(self, k: Kube, objs: dict[str, dict[str, Any]]) -> dict[str, Child]:
        out = {}
        for n, m in objs.items():
            meta = m["metadata"]
            live = k.get(m["kind"], meta["namespace"], meta["name"])
            if live is not None:
                out[n] = Child(CHILD_TYPES[n], ko.observed(ko.managed(m), live))
        return out

    def _events(self, k: Kube, attrs: dict[str, Any]) -> str:
        """The namespace's recent warnings about the service's pods and objects."""
        ns = str(attrs["namespace"])
        events = k.list("Event", ns)
        name = str(attrs["name"])
        ours = re.compile(rf"{re.escape(name)}(-[0-9a-f]{{6,10}})?(-[0-9a-z]{{5}})?")
        lines = []
        for e in sorted(events, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime"))):
            obj = e.get("involvedObject") or {}
            if e.get("type") != "Warning" or not ours.fullmatch(str(obj.get("name", ""))):
                continue
            lines.append(f"{obj.get('kind')}/{obj.get('name')}: {e.get('reason')}: "
                         f"{e.get('message')}")  # fmt: skip
        for pod in _pods_of(k.list("Pod", ns, _selector(attrs)), attrs):
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
            if restarts or (pod.get("status") or {}).get("phase") == "Failed":
                pname = pod["metadata"]["name"]
                tail = k.logs(ns, pname, 40).rstrip("\n")
                lines += [f"--- log of {pname} ---", *tail.splitlines()]
        return "\n".join(lines[-80:])

    # -- check ----------------------------------------------------------------

    def check(self, request: ApplyRequest, applied: Applied, ctx: Context) -> Check:
        """The rollout said Healthy; the ``test:`` request goes through the API
        server's service proxy, unless no pod runs a real container (KWOK)."""
        if request.resource.type == "target":
            return Check(ok=True)
        attrs = applied.attributes
        test = request.resource.config.get("test")
        if not test:
            return Check(ok=True, status=ServiceStatus.HEALTHY.value)
        k = self._kube(attrs, ctx)
        ns = str(attrs["namespace"])
        pods = _pods_of(k.list("Pod", ns, _selector(attrs)), attrs)
        dep = k.get("Deployment", ns, str(attrs["name"])) or {}
        pods = _current(dep, k.list("ReplicaSet", ns, _selector(attrs)), pods) if dep else pods
        pods = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        fake = _fake_nodes(k, pods)
        if pods and len(fake) == len({p["spec"].get("nodeName") for p in pods}):
            ctx.log(
                f"test request not sent: the pods run on {', '.join(sorted(fake))}, a fake "
                "(KWOK) node where no container answers; the rollout status is the check"
            )
            return Check(ok=True, status=ServiceStatus.HEALTHY.value)
        ctx.log("running the service's test request through the API server's service proxy")
        # The API server's proxy keeps Authorization for itself: the key goes in
        # the runtime's other key header.
        headers = {"X-Modelform-Key": str(attrs["key"])} if attrs.get("key") else {}
        status, body = k.proxy_post(
            str(attrs["namespace"]), str(attrs["name"]), "http", "score",
            test.get("request"), headers,
        )  # fmt: skip
        try:
            check_test_response(test, status, body)
        except ProviderError as e:
            return Check(ok=False, status=ServiceStatus.UNHEALTHY.value, message=str(e), log=e.log)
        return Check(ok=True, status=ServiceStatus.HEALTHY.value)

    # -- delete, logs, package ----------------------------------------------------

    def delete(self, address: str, prior: dict[str, Any], ctx: Context) -> None:
        try:
            k = self._kube(prior, ctx)
            if "name" not in prior:  # the target's namespace
                if prior.get("created"):
                    ns = str(prior["namespace"])
                    if k.delete("Namespace", None, ns):
                        ctx.log(f"removing namespace {ns}")
                    self._gone(k, "Namespace", None, ns, ctx, 300)
                return
            ns, name = str(prior["namespace"]), str(prior["name"])
            for child in ("hpa", "service", "deployment", "secret"):
                kind = ko.CHILD_KINDS[child]
                if k.delete(kind, ns, name):
                    ctx.log(f"deleting {kind} {name}")
            for child in ("hpa", "service", "deployment", "secret"):
                self._gone(k, ko.CHILD_KINDS[child], ns, name, ctx, 120)
            deadline = time.monotonic() + 120
            while k.list("Pod", ns, _selector(prior)) and time.monotonic() < deadline:
                ctx.sleep(0.5, elsewhere=True)
        finally:
            self._changed()

    def _gone(
        self, k: Kube, kind: str, ns: str | None, name: str, ctx: Context, limit: float
    ) -> None:
        deadline = time.monotonic() + limit
        while k.get(kind, ns, name) is not None:
            if time.monotonic() > deadline:
                raise ProviderError(f"{kind} {name} is still there after {limit:.0f} s")
            ctx.sleep(0.3, elsewhere=True)

    def invoke(self, attributes: dict[str, Any], body: bytes, ctx: Context) -> tuple[int, bytes]:
        """``modelform invoke``: through the API server's service proxy."""
        k = self._kube(attributes, ctx)
        headers = {"X-Modelform-Key": str(attributes["key"])} if attributes.get("key") else {}
        return k.proxy_post(
            str(attributes["namespace"]), str(attributes["name"]), "http", "score",
            json.loads(body), headers,
        )  # fmt: skip

    def status_detail(self, attributes: dict[str, Any], ctx: Context) -> str:
        """``2/3 ready`` (ready / desired replicas) from the refresh's snapshot."""
        if "namespace" not in attributes or "project" not in attributes:
            return ""
        k = self._kube(attributes, ctx)
        snap = self._snapshot(k, str(attributes["namespace"]), str(attributes["project"]))
        dep = snap["Deployment"].get(str(attributes.get("name")))
        if dep is None:
            return ""
        want = int((dep.get("spec") or {}).get("replicas", 0) or 0)
        ready = int((dep.get("status") or {}).get("readyReplicas", 0) or 0)
        return f"{ready}/{want} ready"

    def logs(self, address: str, attributes: dict[str, Any], ctx: Context, tail: int = 200) -> str:
        k = self._kube(attributes, ctx)
        pods = k.list("Pod", str(attributes["namespace"]), _selector(attributes))
        if not pods:
            return f"{address}: no pods"
        out = []
        for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
            pname = pod["metadata"]["name"]
            text = k.logs(str(attributes["namespace"]), pname, tail)
            out += [f"[{pname}] {line}" for line in text.splitlines()] or [f"[{pname}] (no output)"]
        return "\n".join(out)

    def package(self, resource: Resource, ctx: Context, push: bool) -> dict[str, Any]:
        opts = options(ctx.target, resource.pos)
        client = dockerengine.client(opts.docker_host, kind="kubernetes")
        spec = self._spec(resource, ctx, opts)
        built = imagebuild.build(client, spec, ctx.log, sleep=ctx.sleep)
        digest = None
        if push:
            if not opts.registry:
                raise DiagnosticError(Diagnostic("--push: the target names no registry"))
            digest = imagebuild.push(client, built.ref, None, ctx.log, sleep=ctx.sleep)
        return {
            "image": built.ref, "digest_tag": built.digest_ref, "image_id": built.image_id,
            "built": built.built, "pushed": push, "registry_digest": digest,
            "seconds": round(built.seconds, 1),
        }  # fmt: skip


def _apply_object(k: Kube, obj: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Server-side apply; then, if a field modelform sets still differs (an
    element another field manager added to a list modelform owns, such as
    ``kubectl set env``), a full update that puts every such field back."""
    live = k.apply(obj)
    want = ko.managed(obj)
    if ko.observed(want, live) == want:
        return live
    ctx.log(f"{obj['kind']} {obj['metadata']['name']}: putting back fields changed by hand")
    for attempt in range(5):
        fixed = ko.overlay(live, obj)
        fixed["metadata"] = {k2: v for k2, v in fixed["metadata"].items() if k2 != "managedFields"}
        fixed.pop("status", None)
        try:
            return k.replace(fixed)
        except ProviderError as e:  # 409: a controller wrote meanwhile; read again
            if "HTTP 409" not in str(e) or attempt == 4:
                raise
        meta = obj["metadata"]
        live = k.get(obj["kind"], meta.get("namespace"), meta["name"]) or live
    return live


def _child_ref(rec: dict[str, Any]) -> tuple[str, str, str, str]:
    """(kind, namespace, name, project) of a recorded child (flat attributes)."""
    labels = rec.get("metadata.labels") or {}
    return (str(rec.get("kind")), str(rec.get("metadata.namespace")),
            str(rec.get("metadata.name")), str(labels.get(ko.PROJECT, "")))  # fmt: skip


def _selector(attrs: dict[str, Any]) -> str:
    sel = ko.selector(str(attrs["project"]), str(attrs["name"]))
    return ",".join(f"{k}={v}" for k, v in sel.items())


def _pods_of(pods: Any, attrs: dict[str, Any]) -> list[dict[str, Any]]:
    name = str(attrs["name"])
    return [p for p in pods if (p["metadata"].get("labels") or {}).get(ko.INSTANCE) == name]


def _current(dep: dict[str, Any], sets: Any, pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pods of the Deployment's current revision (its newest ReplicaSet):
    a pod of a revision being retired, still pending, is not the rollout's."""
    revision = _revision(dep)
    hashes = {
        (rs["metadata"].get("labels") or {}).get("pod-template-hash")
        for rs in sets
        if _revision(rs) == revision
        and any(o.get("uid") == dep["metadata"].get("uid")
                for o in rs["metadata"].get("ownerReferences") or [])
    } - {None}  # fmt: skip
    if not hashes:
        return pods
    return [
        p for p in pods if (p["metadata"].get("labels") or {}).get("pod-template-hash") in hashes
    ]


def _revision(obj: dict[str, Any] | None) -> int | None:
    if not obj:
        return None
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(ko.REVISION)
    return int(value) if value and str(value).isdigit() else None


def _annotated(obj: dict[str, Any], address: str) -> dict[str, Any]:
    """The object with the modelform address it belongs to, for discover."""
    meta = {**obj["metadata"], "annotations": {ko.ADDRESS: address}}
    return {**obj, "metadata": meta}


def _fake_nodes(k: Kube, pods: list[dict[str, Any]]) -> set[str]:
    out = set()
    for node in {str(p["spec"].get("nodeName") or "") for p in pods} - {""}:
        try:
            live = k.get("Node", None, node)
        except ProviderError:  # nodes are cluster-wide: a namespaced user may not read them
            continue
        if live and (live["metadata"].get("annotations") or {}).get(ko.FAKE_NODE) == "fake":
            out.add(node)
    return out


def _reasons(prior: dict[str, Any] | None, planned: dict[str, Any]) -> dict[str, str]:
    if prior is None:
        return {}
    out: dict[str, str] = {}
    if prior.get("models") != planned["models"]:
        changes = [f"model {n}: {prior.get('models', {}).get(n)} → {v}"
                   for n, v in planned["models"].items()
                   if prior.get("models", {}).get(n) != v]  # fmt: skip
        out["models"] = "; ".join(changes) + " (new image, rolling update)"
    elif prior.get("image_digest") != planned["image_digest"]:
        out["image_digest"] = "the image's content changed (new image, rolling update)"
    if prior.get("replicas") != planned["replicas"]:
        out["replicas"] = f"replicas {prior.get('replicas')} → {planned['replicas']} (in place)"
    return out


def _notes(prior: dict[str, Any] | None, planned: dict[str, Any], r: Resource) -> list[str]:
    notes = []
    if prior is not None and not is_known(planned["image"]):
        notes.append("rolling update: new pods start first; old ones go once the new are ready")
    if r.config.get("test"):
        notes.append(
            "test request: sent through the API server's service proxy after the rollout "
            "(not sent when the pods run on fake KWOK nodes)"
        )
    return notes
