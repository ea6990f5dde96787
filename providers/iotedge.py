"""The iotedge target: an IoT Edge device's deployment, its services as
modules on ``azure-iot-device``.

Each service on the target is one **module**: an image built by the
container target's builder (:mod:`modelform.providers.imagebuild`) whose
command is the scoring runtime in IoT Edge mode
(``python -m modelform.runtime.edge.module``: messages on the module's
inputs → ``run()`` → its output, failures to its error output), named by its
content digest tag, so the plan knows it before anything is built.

The **deployment** is the target's own resource, ``target.<name>/deployment``
(:attr:`target_part`), planned and applied after its services: it gathers
every module (the services' and the target's own ``modules:``, a sensor say)
and every route into one deployment manifest
(:mod:`modelform.providers.iotedge_manifest`), whose digest drives the plan
and whose differences are its reasons (``module diabetes: image … → …``).
Applying it is what the edge agent does on a device:

* with ``hub:``, the manifest goes to the IoT Hub (``applyConfigurationContent``,
  :mod:`modelform.providers.iotedge_hub`) and a refresh reads the
  ``$edgeAgent`` twin's reported module states;
* without, a **local edge runtime** (:mod:`modelform.providers.iotedge_local`):
  the local edge hub, a child ``hub`` (a process), and each module a child
  ``module.<name>`` (a container, or with ``run_as: process`` a process). A
  new manifest is given to the running hub (SIGHUP): routes and twin desired
  properties change without restarting anything; only a module whose image,
  environment or createOptions changed is made anew.

A service's ``status`` is its module's runtime state (running → Healthy;
backoff, or running but not yet connected to the hub → Transitioning;
stopped → Unhealthy; failed → Failed). The deployment, not the service,
keeps modules running, so ``status`` is an observed attribute
(:attr:`observed`): refreshed and shown, never drift. A stopped or removed
module is drift of the deployment's child, and apply starts it again.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from modelform.engine.digests import digest_json, digest_path
from modelform.plugin import (
    PROTOCOL_VERSION,
    UNKNOWN,
    Applied,
    ApplyRequest,
    Cancelled,
    Child,
    Context,
    Diagnostic,
    DiagnosticError,
    Pos,
    Proposal,
    Provider,
    ProviderError,
    Resource,
    ServiceStatus,
    is_known,
)
from modelform.providers import dockerengine, imagebuild, imagesource
from modelform.providers import iotedge_config as ic
from modelform.providers import iotedge_hub as ih
from modelform.providers import iotedge_local as il
from modelform.providers import iotedge_manifest as im
from modelform.providers import local_process as proc
from modelform.providers.iotedge_invoke import INVOKE_MODULE, invoke, local_manifest
from modelform.providers.local import model_dir as local_model_dir

#: What a module image runs beside the scoring runtime (pinned like the runtime's).
EDGE_PACKAGES = {"azure-iot-device": ">=2.14,<3"}
CHILD_HUB = "hub"
TYPE_HUB = "iotedge_hub"
TYPE_MODULE = "iotedge_module"
#: Runtime status → the service status it maps to (as the hub mode's reports).
SERVICE_STATUS = {
    il.RUNNING: ServiceStatus.HEALTHY.value,
    il.BACKOFF: ServiceStatus.TRANSITIONING.value,
    il.STOPPED: ServiceStatus.UNHEALTHY.value,
    il.FAILED: ServiceStatus.FAILED.value,
}

SERVICE_ATTRIBUTES = {
    "module": "The module's name on the device.",
    "device": "The IoT Edge device's id.",
    "mode": "local (the local edge runtime) or hub (an IoT Hub).",
    "run_as": "How the local runtime runs the module: container or process.",
    "image": "The module's image, REPO:sha256-<digest> (what the manifest names).",
    "image_digest": "Content digest of the image's inputs.",
    "models": "Model name → NAME:VERSION the module serves.",
    "inputs": "The module's input names.",
    "outputs": "Its output names (results go to the first).",
    "error_output": "Where failed run() calls go.",
    "env": "The module's environment in the manifest.",
    "create_options": "The module's Docker createOptions (Cmd names its inputs and outputs).",
    "restart_policy": "always, on-failure, on-unhealthy or never.",
    "desired_properties": "The module twin's desired properties.",
    "startup_order": "Its place in the startup order.",
    "entry_script": "run_as: process: the entry script run.",
    "app_root": "run_as: process: the folder added to sys.path.",
    "model_dir": "run_as: process: AZUREML_MODEL_DIR.",
    "status": "The module's runtime state as a service status (observed, never drift).",
}


def edge_requirements() -> tuple[str, ...]:
    return tuple(imagebuild.pinned(EDGE_PACKAGES))


def module_args(decl: ic.ModuleDecl) -> list[str]:
    """The runtime's arguments naming the module's inputs and outputs (``Cmd``)."""
    outputs = decl.outputs or ic.DEFAULT_OUTPUTS
    return [
        "--inputs", ",".join(decl.inputs or ic.DEFAULT_INPUTS), "--output", outputs[0],
        "--error-output", decl.error_output or ic.DEFAULT_ERROR_OUTPUT,
    ]  # fmt: skip


def _env_of(r: Resource) -> dict[str, Any]:
    env_name = r.config.get("environment")
    env_attrs = r.inputs.get(f"environment.{env_name}", {}) if env_name else {}
    env = {**(env_attrs.get("env") or {}), **(r.config.get("env") or {})}
    return {k: v if not is_known(v) else str(v) for k, v in env.items()}


def _missing_script(
    decl: ic.ModuleDecl, target: str, project_dir: Path, pos: Pos | None
) -> Diagnostic | None:
    """The diagnostic for a target module whose ``script:`` is not a file."""
    if not decl.script or (project_dir / decl.script).is_file():
        return None
    where = f"targets.{target}.modules.{decl.name}.script"
    return Diagnostic(f"{where}: {decl.script} does not exist", pos)


class IotEdgeProvider(Provider):
    kind = "iotedge"
    protocol_version = PROTOCOL_VERSION
    description = (
        "An IoT Edge device: services as modules on azure-iot-device, one deployment manifest "
        "with routes, applied to an IoT Hub or run by a local edge runtime."
    )
    target_part = "deployment"
    observed = frozenset({"status"})

    def target_schema(self) -> dict[str, Any]:
        return ic.TARGET_SCHEMA

    def service_schema(self) -> dict[str, Any]:
        return ic.SERVICE_SCHEMA

    def attributes(self, resource_type: str) -> dict[str, str] | None:
        return dict(SERVICE_ATTRIBUTES) if resource_type == "service" else None

    def identity(self, attributes: dict[str, Any]) -> str | None:
        if attributes.get("container_id"):
            return str(attributes["container_id"])
        if attributes.get("pid") is not None:
            return f"{attributes['pid']}:{attributes.get('started')}"
        if attributes.get("module") and attributes.get("device"):
            return f"{attributes['device']}/{attributes['module']}"
        return None

    # -- checks -----------------------------------------------------------------
    def validate(self, resource: Resource, ctx: Context) -> list[Diagnostic]:
        opts = ic.options(ctx.target, resource.pos)
        if resource.type == "target":
            out = ic.check_deployment(resource, list(resource.members.values()))
            for decl in ic.target_modules(resource):
                at = resource.option_pos("modules", decl.name, "script")
                missing = _missing_script(decl, resource.name, ctx.project_dir, at)
                out += [missing] if missing else []
            if opts.hub_mode:
                assert opts.hub_connection_string_env is not None
                try:
                    ih.hub_from_env(opts.hub_connection_string_env)
                except ih.HubError as e:
                    out.append(
                        Diagnostic(f"targets.{resource.name}.hub: {e}", resource.option_pos("hub"))
                    )
            if opts.hub_mode and not opts.registry:
                out.append(
                    Diagnostic(
                        f"targets.{resource.name}: with hub:, the device pulls its modules "
                        "from a registry: set registry: HOST[:PORT]",
                        resource.option_pos("hub"),
                    )
                )
            if not opts.hub_mode and opts.run_as == "container":
                if not dockerengine.is_local(opts.docker_host):
                    out.append(
                        Diagnostic(
                            f"targets.{resource.name}: the local edge runtime needs a Docker "
                            f"Engine on this machine (modules reach the hub on loopback), not "
                            f"{opts.docker_host}",
                            resource.option_pos("docker_host"),
                        )
                    )
            return out
        if resource.type != "service":
            return []
        out = ic.check_service(resource, ctx.target)
        if "test" in resource.config and ("test",) in resource.positions:
            out.append(
                Diagnostic(
                    f"{resource.address}: test: a module takes messages from the edge "
                    "hub's routes, not HTTP requests",
                    resource.option_pos("test"),
                    "modelform invoke SERVICE sends one message to the module's input",
                )
            )
        return out

    # -- images -----------------------------------------------------------------
    def _service_spec(
        self, r: Resource, ctx: Context, opts: ic.Options, register: bool = False
    ) -> imagebuild.ImageSpec:
        spec = imagesource.image_spec(
            r, ctx, registry=opts.registry, base_image=opts.base_image, carry_ca=opts.carry_ca,
            register_models=register,
        )  # fmt: skip
        command = [
            f"{imagebuild.VENV}/bin/python", "-m", "modelform.runtime.edge.module",
            "--entry-script", spec.entry_in_image(), "--app-root", imagebuild.APP_DIR,
        ]  # fmt: skip
        if spec.model_dir():
            command += ["--model-dir", str(spec.model_dir())]
        return replace(spec, command=tuple(command), extra_requirements=edge_requirements())

    def _script_spec(
        self, decl: ic.ModuleDecl, target: str, ctx: Context, opts: ic.Options
    ) -> imagebuild.ImageSpec:
        """The image of one of the target's ``script:`` modules: the script's
        folder on the base image with azure-iot-device."""
        missing = _missing_script(decl, target, ctx.project_dir, decl.pos)
        if missing:  # gone since validate
            raise DiagnosticError(missing)
        script = (ctx.project_dir / str(decl.script)).resolve()
        try:
            ca = imagebuild.host_ca_bundle(opts.carry_ca)
        except ValueError as e:
            raise DiagnosticError(Diagnostic(str(e), decl.pos)) from None
        folder = script.parent
        return imagebuild.ImageSpec(
            repository=imagesource.repository(ctx.project, f"{target}-{decl.name}", opts.registry),
            base_image=opts.base_image,
            requirements=(),
            source_dir=folder,
            entry_script=script,
            code_digest=digest_path(folder),
            ca_bundle=ca,
            command=(f"{imagebuild.VENV}/bin/python", f"{imagebuild.APP_DIR}/{script.name}"),
            extra_requirements=edge_requirements(),
        )

    def _build(self, spec: imagebuild.ImageSpec, ctx: Context, opts: ic.Options, push: bool) -> str:
        client = dockerengine.client(opts.docker_host, kind="iotedge")
        built = imagebuild.build(client, spec, ctx.log, sleep=ctx.sleep)
        if push:
            digest = None if built.built else imagebuild.already_pushed(built)
            if digest:
                ctx.log(f"{built.digest_ref} is in the registry already: no push")
            elif not imagebuild.push(client, built.digest_ref, None, ctx.log, sleep=ctx.sleep):
                raise ProviderError(f"the registry gave no digest for {built.digest_ref}")
        return built.digest_ref

    def _build_scripts(self, r: Resource, ctx: Context, opts: ic.Options, push: bool) -> None:
        """The images of the target's ``script:`` modules (``r`` is the deployment)."""
        for decl in ic.target_modules(r):
            if decl.script:
                self._build(self._script_spec(decl, r.name, ctx, opts), ctx, opts, push)

    # -- plan -------------------------------------------------------------------
    def plan(self, resource: Resource, prior: dict[str, Any] | None, ctx: Context) -> Proposal:
        try:
            if resource.type == "target":
                return self._plan_deployment(resource, prior, ctx)
            return self._plan_service(resource, prior, ctx)
        except im.ManifestError as e:
            raise DiagnosticError(Diagnostic(f"{resource.address}: {e}", resource.pos)) from None

    def _plan_service(self, r: Resource, prior: dict[str, Any] | None, ctx: Context) -> Proposal:
        opts = ic.options(ctx.target, r.pos)
        decl = ic.module_of(r)
        spec = self._service_spec(r, ctx, opts)
        create = dict(decl.create_options)
        create.setdefault("Cmd", module_args(decl))
        process = opts.run_as == "process" and not opts.hub_mode
        models = {n: r.inputs[f"model.{n}"]["ref"] for n in r.config.get("models", [])}
        planned: dict[str, Any] = {
            "module": decl.name,
            "device": opts.device,
            "mode": "hub" if opts.hub_mode else "local",
            "run_as": "container" if opts.hub_mode else opts.run_as,
            "image": f"{spec.repository}:{spec.digest_tag()}",
            "image_digest": spec.digest(),
            "models": models,
            "inputs": list(decl.inputs or ()),
            "outputs": list(decl.outputs or ()),
            "error_output": decl.error_output,
            "env": _env_of(r),
            "create_options": create,
            "restart_policy": decl.restart_policy,
            "desired_properties": decl.desired_properties,
            "startup_order": decl.startup_order,
            "entry_script": str(spec.entry_script) if process else None,
            "app_root": str(spec.source_dir) if process else None,
            "model_dir": None,
            "status": UNKNOWN,
        }
        if process and models:
            same = prior is not None and prior.get("image_digest") == planned["image_digest"]
            planned["model_dir"] = prior.get("model_dir") if same and prior else UNKNOWN
        reasons = {}
        if prior and prior.get("models") != models:
            reasons["image_digest"] = "models " + ", ".join(
                f"{prior.get('models', {}).get(n, '(none)')} → {v}" for n, v in models.items()
            )
        return Proposal(planned, reasons=reasons)

    def _modules(
        self, r: Resource, ctx: Context, opts: ic.Options
    ) -> tuple[list[im.Module], dict[str, dict[str, Any]]]:
        """Every module of the device for the manifest, and how each runs
        locally (name → {source, image, spec inputs})."""
        mods: list[im.Module] = []
        runs: dict[str, dict[str, Any]] = {}
        for addr, s in sorted(r.inputs.items()):
            if not addr.startswith("service.") or not s:
                continue
            m = im.Module(
                name=s["module"], image=s["image"], restart_policy=s["restart_policy"],
                create_options=s["create_options"], env=s["env"],
                desired_properties=s["desired_properties"], startup_order=s["startup_order"],
            )  # fmt: skip
            mods.append(m)
            runs[m.name] = {"service": addr, "image_digest": s.get("image_digest"),
                            "entry_script": s.get("entry_script"), "app_root": s.get("app_root"),
                            "model_dir": s.get("model_dir")}  # fmt: skip
        for decl in ic.target_modules(r):
            image = decl.image
            script_digest = None
            if decl.script:
                spec = self._script_spec(decl, r.name, ctx, opts)
                image, script_digest = f"{spec.repository}:{spec.digest_tag()}", spec.digest()
            mods.append(decl.module(image=image))
            runs[decl.name] = {"script": decl.script, "image_digest": script_digest}
        return mods, runs

    def _plan_deployment(self, r: Resource, prior: dict[str, Any] | None, ctx: Context) -> Proposal:
        opts = ic.options(ctx.target, r.pos)
        mods, runs = self._modules(r, ctx, opts)
        routes = ic.specs(opts, list(r.members.values()))
        try:
            manifest: Any = im.manifest(opts.runtime, mods, routes)
            digest: Any = im.manifest_digest(manifest)
        except im.ManifestError as e:
            if "not known yet" not in str(e):
                raise
            manifest = digest = UNKNOWN
        local = not opts.hub_mode
        where = il.device_dir(ctx.work_dir, r.name)
        planned: dict[str, Any] = {
            "device": opts.device,
            "mode": "local" if local else "hub",
            "run_as": opts.run_as if local else None,
            "manifest": manifest,
            "manifest_digest": digest,
            "modules": {m.name: m.image for m in mods},
            "routes": sorted(s.name for s in routes),
            "hub_address": opts.hub_address if local else None,
            "hub_port": il.HUB_PORT if local else None,
            "dir": str(where) if local else None,
            "upstream": str(il.hub_state_dir(ctx.work_dir, r.name) / "upstream.jsonl")
            if local
            else None,
        }
        reasons: dict[str, str] = {}
        if prior and is_known(manifest) and prior.get("manifest_digest") != digest:
            lines = im.diff(prior.get("manifest"), manifest) if prior.get("manifest") else []
            reasons["manifest"] = "; ".join(lines) or "the manifest changed"
        children: dict[str, Child] = {}
        if local and is_known(manifest):
            children = self._plan_children(r, ctx, opts, manifest, runs)
        notes = []
        if local:
            how = "containers" if opts.run_as == "container" else "processes"
            notes.append(
                f"local edge runtime: hub on {opts.hub_address}:{il.HUB_PORT}, modules as {how}"
            )
        return Proposal(
            planned,
            requires_replace={"device", "mode", "hub_address", "dir"},
            reasons=reasons,
            notes=notes,
            children=children,
        )

    def _plan_children(
        self, r: Resource, ctx: Context, opts: ic.Options, manifest: dict[str, Any],
        runs: dict[str, dict[str, Any]],
    ) -> dict[str, Child]:  # fmt: skip
        prior = ctx.children
        hub_prior = prior.get(CHILD_HUB) or {}
        hub: dict[str, Any] = {
            "address": opts.hub_address,
            "port": il.HUB_PORT,
            "state_dir": str(il.hub_state_dir(ctx.work_dir, r.name)),
            "state": "running",
        }
        keep_hub = hub_prior and all(hub_prior.get(k) == v for k, v in hub.items())
        for k in ("pid", "started"):
            hub[k] = hub_prior.get(k) if keep_hub and not ctx.replacing else UNKNOWN
        out = {CHILD_HUB: Child(TYPE_HUB, hub, requires_replace={"address", "state_dir"})}
        entries = manifest["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]
        for name, entry in entries.items():
            run = runs.get(name, {})
            # What makes the module's container or process: the manifest's entry (the twin
            # is apart: it changes without a restart) and how it runs (image_digest
            # covers the model folder).
            fixed = {k: v for k, v in run.items() if k != "model_dir"}
            spec = digest_json({"entry": entry, "run": fixed, "run_as": opts.run_as})
            want = "running" if entry.get("status", "running") == "running" else "stopped"
            attrs: dict[str, Any] = {
                "module": name,
                "image": entry["settings"]["image"],
                "run_as": opts.run_as,
                "spec": spec,
                "state": want,
            }
            old = prior.get(f"module.{name}") or {}
            same = old.get("spec") == spec and not ctx.replacing  # spec holds image and run_as
            for k in ("container_id", "pid", "started"):
                attrs[k] = old.get(k) if same else UNKNOWN
            out[f"module.{name}"] = Child(
                TYPE_MODULE, attrs, requires_replace={"spec", "image", "run_as"}
            )
        return out

    # -- refresh ----------------------------------------------------------------
    def read(self, prior: dict[str, Any], ctx: Context) -> dict[str, Any] | None:
        if ctx.type == "service":
            return {**prior, "status": self._service_status(prior, ctx)[0]}
        if ctx.type == TYPE_HUB:
            if not il.hub_alive(prior):
                return None
            doc = il.hub_status(Path(str(prior.get("state_dir"))))
            running = doc is not None and doc.get("pid") == prior.get("pid")
            return {**prior, "state": "running" if running else "starting"}
        if ctx.type == TYPE_MODULE:
            state = self._module_state(prior, ctx)
            if state is None:
                return None
            return {**prior, "state": state[0]}
        if prior.get("mode") == "hub":
            return self._read_hub(prior, ctx)
        return prior

    def _edge_agent(self, attrs: Mapping[str, Any], ctx: Context) -> ih.EdgeAgentReport:
        """What the device's edge agent reports through the hub (HubError)."""
        env = ic.options(ctx.target).hub_connection_string_env
        assert env is not None
        return ih.edge_agent_reported(ih.hub_from_env(env), str(attrs["device"]))

    def _read_hub(self, prior: dict[str, Any], ctx: Context) -> dict[str, Any] | None:
        try:
            report = self._edge_agent(prior, ctx)
        except ih.HubError as e:
            raise ProviderError(str(e)) from None
        deployed = {n: m.image for n, m in report.modules.items()}
        return {**prior, "modules": deployed} if report.applied else prior

    def _docker(self, ctx: Context) -> Any:
        opts = ic.options(ctx.target) if ctx.target else None
        host = opts.docker_host if opts else dockerengine.default_host()
        return dockerengine.client(host, kind="iotedge")

    def _module_state(
        self, attrs: Mapping[str, Any], ctx: Context
    ) -> tuple[str, int | None] | None:
        if attrs.get("container_id"):
            return il.container_state(self._docker(ctx), str(attrs["container_id"]))
        if attrs.get("pid") is not None:
            return il.process_state(attrs), None
        return None

    def _service_status(self, attrs: Mapping[str, Any], ctx: Context) -> tuple[str, str]:
        """(service status, what the module is doing) of a service's module."""
        name = str(ctx.target.get("name", ""))
        if attrs.get("mode") == "hub":
            try:
                report = self._edge_agent(attrs, ctx)
            except ih.HubError as e:
                return ServiceStatus.TRANSITIONING.value, f"the hub cannot say: {e}"
            m = report.modules.get(str(attrs["module"]))
            if m is None:
                return ServiceStatus.TRANSITIONING.value, "not reported by the edge agent yet"
            return m.service_status.value, m.runtime_status
        child = self._live_module(str(attrs.get("module")), str(attrs.get("run_as")), ctx)
        state = self._module_state(child, ctx) if child else None
        if state is None:
            return ServiceStatus.TRANSITIONING.value, "not running (the deployment starts it)"
        runtime, code = state
        if runtime != il.RUNNING:
            extra = f" (exit code {code})" if code is not None else ""
            return SERVICE_STATUS[runtime], f"module {runtime}{extra}"
        doc = il.hub_status(il.hub_state_dir(ctx.work_dir, name)) or {}
        mod = (doc.get("modules") or {}).get(str(attrs.get("module"))) or {}
        if not mod.get("connected"):
            return ServiceStatus.TRANSITIONING.value, "running, not connected to the edge hub"
        counts = f"{mod.get('received', 0)} sent by it, {mod.get('delivered', 0)} delivered to it"
        return ServiceStatus.HEALTHY.value, f"running, connected; {counts}"

    def _live_module(self, module: str, run_as: str, ctx: Context) -> dict[str, Any]:
        """Where a service's module runs, found as the deployment made it (a
        service does not see the deployment's records): its container by its
        name, or its process by the marker in its environment; {} if none."""
        target = str(ctx.target.get("name", ""))
        if run_as == "container":
            return {"container_id": il.container_name(ctx.project, target, module)}
        for found in proc.find(ctx.project_dir.resolve()):
            marker = found.attributes or {}
            if marker.get("role") == "edge-module" and marker.get("module") == module:
                if found.address == f"target.{target}/{self.target_part}":
                    return {"pid": found.pid, "started": found.started}
        return {}

    def _module_log(self, child: Mapping[str, Any], module: str, ctx: Context, tail: int) -> str:
        if child.get("container_id"):
            return il.container_logs(self._docker(ctx), str(child["container_id"]), tail)
        target = str(ctx.target.get("name", ""))
        return il.tail(ctx.work_dir / "logs" / f"edge-{target}-{module}.log", tail)

    def discover(self, ctx: Context) -> list[dict[str, Any]]:
        return []  # modules and the hub are the deployment's children; see delete()

    # -- apply ------------------------------------------------------------------
    def apply(self, request: ApplyRequest, ctx: Context) -> Applied:
        try:
            if request.resource.type == "target":
                return self._apply_deployment(request, ctx)
            return Applied(self._apply_service(request, ctx))
        except DiagnosticError as e:
            raise ProviderError(str(e)) from None
        except dockerengine.errors() as e:
            raise ProviderError(f"docker: {dockerengine.short(e)}") from None

    def _apply_service(self, req: ApplyRequest, ctx: Context) -> dict[str, Any]:
        r, attrs = req.resource, dict(req.planned)
        opts = ic.options(ctx.target, r.pos)
        if attrs["run_as"] == "container":
            spec = self._service_spec(r, ctx, opts, register=True)
            if spec.digest() != attrs["image_digest"]:
                raise ProviderError("the module's image inputs changed since the plan: plan again")
            ref = self._build(spec, ctx, opts, push=opts.hub_mode)
            if ref != attrs["image"]:
                raise ProviderError(f"built {ref}, planned {attrs['image']}: plan again")
        elif not is_known(attrs.get("model_dir")):
            models = {n: r.inputs[f"model.{n}"] for n in r.config.get("models", [])}
            attrs["model_dir"] = str(local_model_dir(ctx, r.name, models))
        attrs["status"] = self._service_status(attrs, ctx)[0]
        return attrs

    def _apply_deployment(self, req: ApplyRequest, ctx: Context) -> Applied:
        r, attrs = req.resource, dict(req.planned)
        opts = ic.options(ctx.target, r.pos)
        if req.prior and req.prior.get("mode") == "local" and attrs["mode"] != "local":
            self.delete(r.address, req.prior, ctx)
        if attrs["mode"] == "hub":
            assert opts.hub_connection_string_env is not None
            self._build_scripts(r, ctx, opts, push=True)
            try:
                hub = ih.hub_from_env(opts.hub_connection_string_env)
                ih.apply_configuration(hub, opts.device, attrs["manifest"])
            except ih.HubError as e:
                raise ProviderError(str(e)) from None
            ctx.log(f"deployment applied to device {opts.device} through {hub.host}")
            return Applied(attrs)
        runtime = _LocalRun(self, r, ctx, opts, attrs, req)
        return runtime.apply()

    def delete(self, address: str, prior: dict[str, Any], ctx: Context) -> None:
        if "manifest_digest" not in prior:
            return  # a service: its image stays (as the container target's); the module goes
            # with the deployment's next apply, or its destroy
        if prior.get("mode") != "local":
            return  # hub mode: the device keeps its last deployment (see the docs)
        children = dict(ctx.children)
        client = None
        for name, child in sorted(children.items()):
            if not name.startswith("module."):
                continue
            if child.get("container_id"):
                client = client or self._docker(ctx)
                il.remove_container(client, str(child["container_id"]))
                ctx.log(f"removed module {child.get('module')} (container)")
            elif child.get("pid") is not None:
                proc.stop(int(child["pid"]), child.get("started"), grace=10.0)
                ctx.log(f"stopped module {child.get('module')} (pid {child['pid']})")
        hub = children.get(CHILD_HUB)
        if hub:
            il.stop_hub(hub)
            ctx.log(f"stopped the local edge hub (pid {hub.get('pid')})")
        # Modules a killed apply started and never recorded: found by label.
        if prior.get("run_as") == "container":
            client = client or self._docker(ctx)
            for c in il.our_containers(client, ctx.project_dir):
                if c.labels.get(il.LABEL_ADDRESS) == address:
                    il.remove_container(client, c.id)
                    ctx.log(f"removed module container {c.name}")

    # -- day two ------------------------------------------------------------------
    def logs(self, address: str, attributes: dict[str, Any], ctx: Context, tail: int = 200) -> str:
        module = str(attributes.get("module"))
        child = self._live_module(module, str(attributes.get("run_as")), ctx)
        return self._module_log(child, module, ctx, tail)

    def status_detail(self, attributes: dict[str, Any], ctx: Context) -> str:
        return self._service_status(attributes, ctx)[1]

    def invoke(
        self, attributes: dict[str, Any], body: bytes, ctx: Context
    ) -> tuple[int, bytes] | None:
        return invoke(attributes, body, ctx)

    def package(self, resource: Resource, ctx: Context, push: bool) -> dict[str, Any]:
        opts = ic.options(ctx.target, resource.pos)
        if push and not opts.registry:
            raise DiagnosticError(
                Diagnostic(
                    f"--push: target {ctx.target.get('name')} names no registry", resource.pos
                )  # fmt: skip
            )
        if resource.type == "service":
            ref = self._build(self._service_spec(resource, ctx, opts, register=True), ctx, opts,
                              push)  # fmt: skip
            return {"image": ref, "pushed": push, "summary": f"module image {ref}"
                    + (", pushed" if push else "")}  # fmt: skip
        proposal = self._plan_deployment(resource, None, ctx)
        manifest = proposal.planned["manifest"]
        if not is_known(manifest):
            raise ProviderError("the manifest has values not known before apply")
        for member in resource.members.values():  # every module's image, the services' first
            self._build(self._service_spec(member, ctx, opts, register=True), ctx, opts, push)
        self._build_scripts(resource, ctx, opts, push)
        problems = im.validate(manifest)
        if problems:
            raise ProviderError(f"the manifest does not validate: {problems[0]}")
        out = ctx.work_dir / "packages" / resource.name / "deployment.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(im.manifest_text(manifest))
        digest = im.manifest_digest(manifest)
        mods = ", ".join(f"{n} {i}" for n, i in proposal.planned["modules"].items())
        summary = f"deployment manifest {out} ({digest[7:23]}); modules: {mods}"
        return {"manifest": str(out), "manifest_digest": digest, "pushed": push,
                "summary": summary}  # fmt: skip


class _LocalRun:
    """One apply of a device's local edge runtime: the manifest, the hub, the modules."""

    def __init__(
        self, provider: IotEdgeProvider, r: Resource, ctx: Context, opts: ic.Options,
        attrs: dict[str, Any], req: ApplyRequest,
    ) -> None:  # fmt: skip
        self.p, self.r, self.ctx, self.opts = provider, r, ctx, opts
        self.attrs, self.req = attrs, req
        self.target = r.name
        self.state_dir = il.hub_state_dir(ctx.work_dir, r.name)
        self.place = il.HubPlace(
            manifest=il.manifest_file(ctx.work_dir, r.name),
            state_dir=self.state_dir,
            address=opts.hub_address,
            device=opts.device,
            log=ctx.work_dir / "logs" / f"edge-{r.name}-hub.log",
        )
        self.children: dict[str, Child] = {}

    def apply(self) -> Applied:
        from modelform.runtime.edge import identities as ids

        manifest = self.attrs["manifest"]
        entries = manifest["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]
        names = sorted(entries)
        self.identities = ids.ensure(
            self.state_dir,
            [*names, INVOKE_MODULE],
            device=self.opts.device,
            gateway=self.opts.hub_address,
        )
        first_inputs = {
            str(s["module"]): str(s["inputs"][0])
            for a, s in self.r.inputs.items()
            if a.startswith("service.") and s and s.get("inputs")
        }
        hub_manifest = local_manifest(manifest, first_inputs)
        file_digest = il.write_manifest(self.place.manifest, im.manifest_text(hub_manifest))
        self._hub(file_digest)
        _, runs = self.p._modules(self.r, self.ctx, self.opts)
        for name, old in self.req.prior_children.items():
            if name.startswith("module.") and name not in self.req.planned_children:
                self._stop(old)
                self.ctx.log(f"module {old.get('module')}: removed (no longer in the manifest)")
        order = sorted(names, key=lambda n: (entries[n].get("startupOrder", 4294967295), n))
        for name in order:
            self._module(name, entries[name], runs.get(name, {}))
        self._wait_connected([n for n in order if entries[n].get("status") == "running"])
        return Applied(self.attrs, self.children)

    # the hub
    def _hub(self, file_digest: str) -> None:
        planned = self.req.planned_children[CHILD_HUB].attributes
        old = self.req.prior_children.get(CHILD_HUB) or {}
        same_place = all(old.get(k) == planned[k] for k in ("address", "state_dir"))
        attrs = dict(planned)
        if old and same_place and il.hub_alive(old):
            attrs["pid"], attrs["started"] = old["pid"], old["started"]
            doc = il.hub_status(self.state_dir) or {}
            if (doc.get("manifest") or {}).get("digest") != file_digest:
                il.reload_hub(int(old["pid"]), old.get("started"))
                self.ctx.log("local edge hub: new manifest loaded (routes and twins updated)")
        else:
            if old:
                il.stop_hub(old)
            try:
                pid, started = il.start_hub(self.place, self.ctx.project_dir, self.r.address)
            except ProviderError as e:
                raise ProviderError(
                    f"{e} (another edge device's hub? give this target its own hub_address, "
                    "e.g. 127.0.0.2)"
                ) from None
            attrs["pid"], attrs["started"] = pid, started
            self.ctx.log(f"local edge hub pid {pid} on {self.opts.hub_address}:{il.HUB_PORT}")
        try:
            il.wait_hub(self.place, int(attrs["pid"]), attrs["started"], file_digest,
                        self.opts.startup_timeout, self.ctx.sleep)  # fmt: skip
        except ProviderError as e:
            raise ProviderError(str(e), log=e.log, attributes=self.attrs,
                                children=self.children) from None  # fmt: skip
        self.children[CHILD_HUB] = Child(TYPE_HUB, attrs)

    # modules
    def _module(self, name: str, entry: dict[str, Any], run: dict[str, Any]) -> None:
        planned = dict(self.req.planned_children[f"module.{name}"].attributes)
        old = self.req.prior_children.get(f"module.{name}") or {}
        keep = bool(old) and old.get("spec") == planned["spec"]  # spec holds image and run_as
        want_running = planned["state"] == "running"
        if keep:
            state = self.p._module_state(old, self.ctx)
            running = state is not None and state[0] == il.RUNNING
            if running == want_running:
                for k in ("container_id", "pid", "started"):
                    planned[k] = old.get(k)
                self.children[f"module.{name}"] = Child(TYPE_MODULE, planned)
                return
        if old:
            self._stop(old)
        for k in ("container_id", "pid", "started"):
            planned[k] = None
        if want_running:
            if self.opts.run_as == "container":
                planned["container_id"] = self._run_container(name, entry, run)
                what = f"container {str(planned['container_id'])[:12]}"
            else:
                planned["pid"], planned["started"] = self._spawn(name, entry, run)
                what = f"pid {planned['pid']}"
            why = "restarted" if keep else ("replaced" if old else "started")
            self.ctx.log(f"module {name}: {why} ({what}, {planned['image']})")
        self.children[f"module.{name}"] = Child(TYPE_MODULE, planned)

    def _edge_env(self, name: str, ca_file: str) -> dict[str, str]:
        from modelform.runtime.edge import identities as ids

        return il.edge_env(
            name, self.opts.device, ids.connection_string(self.state_dir, name), ca_file,
            self.opts.hub_address, self.identities.hostname,
        )  # fmt: skip

    def _run_container(self, name: str, entry: dict[str, Any], run: dict[str, Any]) -> str:
        settings = entry["settings"]
        image = settings["image"]
        if run.get("script"):
            decl = next(d for d in ic.target_modules(self.r) if d.name == name)
            self.p._build(self.p._script_spec(decl, self.target, self.ctx, self.opts),
                          self.ctx, self.opts, push=False)  # fmt: skip
        create = im.join_create_options(settings)
        env = {k: str(v.get("value", "")) for k, v in (entry.get("env") or {}).items()}
        env.update(self._edge_env(name, il.CA_IN_CONTAINER))
        labels = {il.LABEL_PROJECT: str(self.ctx.project_dir.resolve()),
                  il.LABEL_ADDRESS: self.r.address, il.LABEL_MODULE: name}  # fmt: skip
        body = il.create_body(image, create, env, labels, entry.get("restartPolicy", "always"),
                              (self.state_dir / "ca.pem").resolve())  # fmt: skip
        client = self.p._docker(self.ctx)
        return il.run_container(
            client, il.container_name(self.ctx.project, self.target, name), body
        )

    def _spawn(self, name: str, entry: dict[str, Any], run: dict[str, Any]) -> tuple[int, int]:
        create = im.join_create_options(entry["settings"])
        args = [str(a) for a in create.get("Cmd") or []]
        if run.get("script"):
            script = (self.ctx.project_dir / str(run["script"])).resolve()
            argv, cwd = [sys.executable, str(script), *args], script.parent
        elif run.get("service"):
            argv = [sys.executable, "-m", "modelform.runtime.edge.module",
                    "--entry-script", str(run["entry_script"]),
                    "--app-root", str(run["app_root"])]  # fmt: skip
            if run.get("model_dir"):
                argv += ["--model-dir", str(run["model_dir"])]
            argv += args
            cwd = Path(str(run["app_root"]))
        else:
            raise ProviderError(
                f"module {name}: run_as: process runs script: modules and services; an image "
                "module needs run_as: container"
            )
        env = dict(os.environ)
        env.update({k: str(v.get("value", "")) for k, v in (entry.get("env") or {}).items()})
        env.update(self._edge_env(name, str((self.state_dir / "ca.pem").resolve())))
        env[proc.PROJECT_ENV] = str(self.ctx.project_dir.resolve())
        env[proc.ADDRESS_ENV] = self.r.address
        env[proc.ATTRS_ENV] = json.dumps({"role": "edge-module", "module": name})
        log = self.ctx.work_dir / "logs" / f"edge-{self.target}-{name}.log"
        return proc.spawn(argv, env, cwd, log)

    def _stop(self, old: Mapping[str, Any]) -> None:
        if old.get("container_id"):
            il.remove_container(self.p._docker(self.ctx), str(old["container_id"]))
        elif old.get("pid") is not None:
            proc.stop(int(old["pid"]), old.get("started"), grace=10.0)

    def _wait_connected(self, names: Sequence[str]) -> None:
        deadline = time.monotonic() + self.opts.startup_timeout
        waiting = set(names)
        while waiting:
            doc = il.hub_status(self.state_dir) or {}
            mods = doc.get("modules") or {}
            waiting = {n for n in waiting if not (mods.get(n) or {}).get("connected")}
            for n in sorted(waiting):
                child = self.children[f"module.{n}"].attributes
                state = self.p._module_state(child, self.ctx)
                if state is not None and state[0] in (il.FAILED, il.STOPPED):
                    log = self.p._module_log(child, n, self.ctx, 40)
                    code = f" (exit code {state[1]})" if state[1] is not None else ""
                    raise ProviderError(
                        f"module {n} {state[0]}{code} before it connected to the edge hub",
                        log=log, status=ServiceStatus.FAILED.value, attributes=self.attrs,
                        children=self.children,
                    )  # fmt: skip
            if not waiting:
                break
            if time.monotonic() > deadline:
                raise ProviderError(
                    f"modules not connected to the edge hub after "
                    f"{self.opts.startup_timeout:.0f} s: {', '.join(sorted(waiting))}",
                    log=il.tail(self.place.log), attributes=self.attrs, children=self.children,
                )  # fmt: skip
            try:
                self.ctx.sleep(0.2)
            except Cancelled as e:
                raise Cancelled("interrupted while modules connect", attributes=self.attrs,
                                children=self.children) from e  # fmt: skip
        if names:
            self.ctx.log(f"modules connected to the edge hub: {', '.join(names)}")
