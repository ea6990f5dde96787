"""The container target: an image per service and a container running it.

Each service gets an image built by :mod:`modelform.providers.imagebuild`
(the package layer cached apart from models and code) and one container
publishing the runtime's port on 127.0.0.1, with cpu/memory limits,
environment, restart policy, a health check on ``/ready`` and labels
naming the project, service and state lineage.

Attribute changes and what they cause:

* environment, model, code, runtime (the image digest), port, env,
  workers, auth, timeout, network, Docker host → replace: the image is
  built first; then the old container stops and the new one starts (same
  port), or the new one starts and is ready before the old one goes
  (port changed). A new container that fails brings the old one back.
* cpu, memory_gb, restart policy → update in place (``docker update``);
  a stopped, paused or unhealthy container → update (started again).
* a container that is gone → the refresh drops it, the plan creates it
  (from the existing image: no build).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from modelform.engine.diagnostics import Diagnostic, DiagnosticError
from modelform.engine.digests import short
from modelform.engine.provider import (
    Action,
    Context,
    Proposal,
    Provider,
    ProviderError,
    Resource,
    ServiceStatus,
)
from modelform.engine.values import UNKNOWN, is_known
from modelform.providers import container_docker as dk
from modelform.providers import imagebuild
from modelform.providers.container_config import TARGET_SCHEMA, Options, image_spec, options

REPLACE_ON = {
    "image_digest", "env_digest", "models", "code_digest", "entry_script", "source_dir",
    "image_repository", "host", "port", "env", "workers", "auth", "timeout_seconds",
    "docker_host", "network",
}  # fmt: skip
IN_PLACE = ("cpu", "memory_gb", "restart_policy")


class ContainerProvider(Provider):
    kind = "container"
    description = "An image per service and a container running it on a Docker Engine."

    def target_schema(self) -> dict[str, Any]:
        return TARGET_SCHEMA

    # -- plan ---------------------------------------------------------------
    def desired(self, r: Resource, ctx: Context, opts: Options) -> dict[str, Any]:
        cfg = r.config
        if cfg.get("port") is None:
            raise DiagnosticError(
                Diagnostic(f"{r.address}: the container target needs a port", r.pos)
            )
        spec = image_spec(r, ctx, opts)
        env_name = cfg.get("environment")
        env_attrs = r.inputs.get(f"environment.{env_name}", {}) if env_name else {}
        env = {**(env_attrs.get("env") or {}), **(cfg.get("env") or {})}
        res = cfg.get("resources") or {}
        host = "127.0.0.1"
        return {
            "host": host,
            "port": cfg["port"],
            "url": f"http://{host}:{cfg['port']}",
            "image_repository": spec.repository,
            "image_digest": spec.digest(),
            "env_digest": spec.env_digest(),
            "models": {n: r.inputs[f"model.{n}"]["ref"] for n in cfg.get("models", [])},
            "entry_script": cfg["entry_script"],
            "source_dir": cfg.get("source_dir") or str(Path(cfg["entry_script"]).parent),
            "code_digest": r.digests.get("code", ""),
            "environment": env_name,
            "env": {k: v if not is_known(v) else str(v) for k, v in env.items()},
            "cpu": cfg.get("cpu", res.get("cpu")),
            "memory_gb": cfg.get("memory_gb", res.get("memory_gb")),
            "restart_policy": opts.restart_policy,
            "workers": int(cfg.get("workers") or 1),
            "auth": cfg.get("auth") or "none",
            "timeout_seconds": cfg.get("timeout_seconds"),
            "docker_host": opts.docker_host,
            "network": opts.network,
            "registry": opts.registry_ref(),
            "prune_images": opts.prune_images,
            "container_state": "running",
            "status": ServiceStatus.HEALTHY.value,
        }  # fmt: skip

    def plan(self, resource: Resource, prior: dict[str, Any] | None, ctx: Context) -> Proposal:
        opts = options(ctx.target, resource.pos)
        planned = self.desired(resource, ctx, opts)
        replacing = prior is None or _replacing(prior, planned)
        for k in ("container_id", "id", "container_name"):
            planned[k] = UNKNOWN if replacing or prior is None else prior.get(k)
        if prior and prior.get("image_digest") == planned["image_digest"] and prior.get("image"):
            planned["image"], planned["image_id"] = prior["image"], prior.get("image_id")
        else:
            spec = image_spec(resource, ctx, opts)
            try:
                found = imagebuild.find(dk.client(opts.docker_host), spec, look_only=True)
            except dk.errors() as e:
                raise DiagnosticError(Diagnostic(f"docker: {dk.short(e)}", resource.pos)) from None
            planned["image"] = found.ref if found and found.ref else UNKNOWN
            planned["image_id"] = found.image_id if found else UNKNOWN
        planned["key"] = None
        if planned["auth"] == "key":
            planned["key"] = prior.get("key") if prior and prior.get("key") else UNKNOWN
        return Proposal(
            planned,
            requires_replace=set(REPLACE_ON),
            reasons=_reasons(prior, planned),
            notes=_notes(prior, planned, replacing),
        )

    # -- refresh --------------------------------------------------------------
    def read(self, prior: dict[str, Any], ctx: Context) -> dict[str, Any] | None:
        host = str(prior.get("docker_host") or dk.default_host())
        try:
            c = dk.get(dk.client(host), prior.get("container_id"))
            return None if c is None else {**prior, **dk.observe(c, prior)}
        except dk.errors() as e:
            raise DiagnosticError(Diagnostic(f"docker at {host}: {dk.short(e)}")) from None

    def discover(self, ctx: Context) -> list[dict[str, Any]]:
        try:
            return self._discover(ctx)
        except dk.errors() as e:
            raise DiagnosticError(Diagnostic(f"docker: {dk.short(e)}")) from None

    def _discover(self, ctx: Context) -> list[dict[str, Any]]:
        out = []
        for host in dk.known_hosts(ctx.work_dir):
            for c in dk.labelled(dk.client(host), ctx.project_dir):
                attrs = dk.label_attributes(c)
                found = {**(attrs or {}), "docker_host": host}
                found.update(dk.observe(c, found))
                complete = attrs is not None and (found.get("auth") != "key" or found.get("key"))
                address = c.labels.get(dk.L_ADDRESS, "service.unknown")
                out.append({"address": address, "attributes": found, "complete": bool(complete)})
        return out

    # -- apply ----------------------------------------------------------------
    def apply(
        self, action: Action, resource: Resource, prior: dict[str, Any] | None, ctx: Context
    ) -> dict[str, Any]:
        try:
            return self._apply(action, resource, prior, ctx)
        except DiagnosticError as e:
            raise ProviderError(str(e)) from None
        except dk.errors() as e:
            raise ProviderError(f"docker: {dk.short(e)}") from None

    def _apply(
        self, action: Action, r: Resource, prior: dict[str, Any] | None, ctx: Context
    ) -> dict[str, Any]:
        opts = options(ctx.target, r.pos)
        planned = self.plan(r, prior, ctx).planned
        client = dk.client(opts.docker_host)
        old = None
        if prior:  # the old container lives where it was made
            old_host = str(prior.get("docker_host") or dk.default_host())
            old = dk.get(dk.client(old_host), prior.get("container_id"))
        if (
            action is Action.UPDATE
            and old is not None
            and prior is not None
            and not _replacing(prior, planned)
        ):
            return self._update(client, r, old, prior, planned, ctx, opts)
        built = self.build(r, ctx, opts)
        attrs = {k: v for k, v in planned.items() if k not in dk.COMPUTED}
        attrs.update(image=built.ref, image_id=built.image_id)
        key = planned.get("key") if is_known(planned.get("key")) else None
        if attrs["auth"] == "key" and not key:
            key = secrets.token_urlsafe(32)
        if old is not None and prior is not None and not _same_port(prior, planned):
            new = self._start(client, r, attrs, key, ctx, opts)  # ready before the old goes
            dk.remove(old)
            return new
        if old is not None:
            ctx.log(f"stopping the old container {old.name} (port {planned['port']} is reused)")
            old.stop(timeout=10)
        try:
            new = self._start(client, r, attrs, key, ctx, opts)
        except ProviderError as e:
            if old is None:
                raise
            ctx.log(f"the new container failed: starting the old one ({old.name}) again")
            old.start()
            raise ProviderError(f"{e} (the previous container runs again)", e.log) from None
        if old is not None:
            dk.remove(old)
        return new

    def build(self, r: Resource, ctx: Context, opts: Options) -> imagebuild.Built:
        """The service's image (built unless one with its digest exists), pushed
        when the target names a registry."""
        client = dk.client(opts.docker_host)
        spec = image_spec(r, ctx, opts)
        built = imagebuild.build(client, spec, ctx.log)
        if opts.registry:
            imagebuild.push(client, built.ref, opts.auth(), ctx.log)
        return built

    def _start(self, client: Any, r: Resource, attrs: dict[str, Any], key: str | None,
               ctx: Context, opts: Options) -> dict[str, Any]:  # fmt: skip
        dk.remember_host(ctx.work_dir, opts.docker_host)
        env = dict(attrs["env"])
        if key:
            env[dk.AUTH_ENV] = key
        command = ["--workers", str(attrs["workers"])]
        if attrs.get("timeout_seconds"):
            command += ["--timeout", str(attrs["timeout_seconds"])]
        labels = {
            dk.L_PROJECT: ctx.project,
            dk.L_PROJECT_DIR: str(ctx.project_dir.resolve()),
            dk.L_ADDRESS: r.address,
            dk.L_LINEAGE: ctx.lineage,
            dk.L_ATTRS: json.dumps(attrs, sort_keys=True),
        }
        name = f"{ctx.project}-{r.name}-{secrets.token_hex(3)}"
        container = dk.run(
            client, image=attrs["image"], name=name, labels=labels, env=env, host=attrs["host"],
            port=attrs["port"], command=command, cpu=attrs["cpu"], memory_gb=attrs["memory_gb"],
            network=attrs["network"],
        )  # fmt: skip
        ctx.log(f"started container {name}; waiting for {attrs['url']}/ready")
        local = dk.is_local(opts.docker_host)
        try:
            dk.wait_ready(container, attrs["url"], local, opts.startup_timeout)
        except ProviderError:
            dk.remove(container, grace=2)
            raise
        container.update(restart_policy={"Name": attrs["restart_policy"]})
        container.reload()
        return {**attrs, **dk.observe(container, attrs)}

    def _update(self, client: Any, r: Resource, c: Any, prior: dict[str, Any],
                planned: dict[str, Any], ctx: Context, opts: Options,
                ) -> dict[str, Any]:  # fmt: skip
        import docker.errors

        now = dk.observe(c, prior)
        want = {k: planned[k] for k in IN_PLACE}
        if any(now[k] != want[k] for k in IN_PLACE):
            ctx.log("docker update: " + ", ".join(f"{k}={want[k]}" for k in IN_PLACE))
            args = dk.limit_args(want["cpu"], want["memory_gb"])
            if want["cpu"] is None and now["cpu"] is not None:
                args.update(cpu_quota=-1)
            try:
                c.update(restart_policy={"Name": want["restart_policy"]}, **args)
            except docker.errors.APIError as e:
                raise ProviderError(f"docker update failed: {dk.short(e)}") from None
            c.reload()
            now = dk.observe(c, prior)
            if any(now[k] != want[k] for k in IN_PLACE):  # e.g. a memory limit removed
                ctx.log("docker cannot make this change in place: replacing the container")
                return self._apply(Action.REPLACE, r, prior, ctx)
        if now["container_state"] == "paused":
            ctx.log(f"container {c.name} is paused: unpausing it")
            c.unpause()
        elif now["container_state"] != "running":
            ctx.log(f"container {c.name} is {now['container_state']}: starting it")
            c.start()
        elif now["status"] == ServiceStatus.UNHEALTHY.value:
            ctx.log(f"container {c.name} is unhealthy: restarting it")
            c.restart(timeout=10)
        dk.wait_ready(c, planned["url"], dk.is_local(opts.docker_host), opts.startup_timeout)
        c.reload()
        attrs = {k: v for k, v in planned.items() if is_known(v)}
        return {**prior, **attrs, **dk.observe(c, prior)}

    def delete(self, address: str, prior: dict[str, Any], ctx: Context) -> None:
        try:
            client = dk.client(str(prior.get("docker_host") or dk.default_host()))
            c = dk.get(client, prior.get("container_id"))
            if c is not None:
                ctx.log(f"removing container {c.name}")
                dk.remove(c)
            if prior.get("prune_images") and prior.get("image_repository"):
                _prune(client, str(prior["image_repository"]), ctx)
        except DiagnosticError as e:
            raise ProviderError(str(e)) from None
        except dk.errors() as e:
            raise ProviderError(f"docker: {dk.short(e)}") from None

    def logs(self, address: str, attributes: dict[str, Any], ctx: Context, tail: int = 200) -> str:
        host = str(attributes.get("docker_host") or dk.default_host())
        try:
            c = dk.get(dk.client(host), attributes.get("container_id"))
        except dk.errors() as e:
            raise DiagnosticError(Diagnostic(f"docker at {host}: {dk.short(e)}")) from None
        if c is None:
            return f"{address}: its container {attributes.get('id', '?')} is gone"
        return dk.logs_tail(c, tail)

    # -- modelform package ----------------------------------------------------
    def package(self, resource: Resource, ctx: Context, push: bool) -> dict[str, Any]:
        """Build (and push) the service's image without deploying it."""
        opts = options(ctx.target, resource.pos)
        if push and not opts.registry:
            name = ctx.target.get("name", "?")
            raise DiagnosticError(
                Diagnostic(f"--push: target {name} names no registry", resource.pos)
            )
        client = dk.client(opts.docker_host)
        spec = image_spec(resource, ctx, opts)
        built = imagebuild.build(client, spec, ctx.log)
        if push:
            imagebuild.push(client, built.ref, opts.auth(), ctx.log)
            imagebuild.push(client, built.digest_ref, opts.auth(), ctx.log)
        return {
            "image": built.ref, "digest_tag": built.digest_ref, "image_id": built.image_id,
            "built": built.built, "pushed": push, "seconds": round(built.seconds, 1),
        }  # fmt: skip


def _same_port(prior: dict[str, Any], planned: dict[str, Any]) -> bool:
    """Whether the new container needs the old one's port (same host, same port)."""
    return (
        prior.get("port") == planned["port"] and prior.get("docker_host") == planned["docker_host"]
    )


def _replacing(prior: dict[str, Any], planned: dict[str, Any]) -> bool:
    return any(is_known(planned[k]) and prior.get(k) != planned[k] for k in REPLACE_ON)


def _reasons(prior: dict[str, Any] | None, planned: dict[str, Any]) -> dict[str, str]:
    if not prior:
        return {}
    out = {}
    if prior.get("env_digest") != planned["env_digest"]:
        out["env_digest"] = (
            f"environment {planned['environment']} changed ({short(str(prior.get('env_digest')))}"
            f" → {short(planned['env_digest'])}): packages reinstalled"
        )
    for n, ref in planned["models"].items():
        old = (prior.get("models") or {}).get(n)
        if old != ref:
            out["models"] = f"model {n}: {old or 'none'} → {ref}"
    if prior.get("code_digest") != planned["code_digest"]:
        out["code_digest"] = f"code in {planned['source_dir']} changed (packages layer cached)"
    if prior.get("image_digest") != planned["image_digest"]:
        out["image_digest"] = (
            f"image content sha256-{short(str(prior.get('image_digest')), 16)} → "
            f"sha256-{short(planned['image_digest'], 16)}: "
            + ("rebuild image" if planned["image"] is UNKNOWN else f"use {planned['image']}")
            + " + replace container"
            + ("" if out else " (the modelform runtime or the image layout changed)")
        )
    for k in IN_PLACE:
        if prior.get(k) != planned[k]:
            out[k] = f"{k}: {prior.get(k)} → {planned[k]} (in place, docker update)"
    if prior.get("container_state") not in (None, "running"):
        out["container_state"] = f"container is {prior['container_state']}: start it again"
    if prior.get("status") != planned["status"]:
        out["status"] = f"service is {prior.get('status')}: bring it back to Healthy"
    return out


def _notes(prior: dict[str, Any] | None, planned: dict[str, Any], replacing: bool) -> list[str]:
    repo = planned["image_repository"]
    if planned["image"] is UNKNOWN:
        notes = [f"builds image {repo} (sha256-{short(planned['image_digest'], 16)})"]
    else:
        notes = [f"image {planned['image']} exists: no build"]
    if prior is None or not replacing:
        return notes if replacing else []
    if not _same_port(prior, planned):
        notes.append(
            f"new container starts on port {planned['port']} and must be ready before the old "
            f"one (port {prior.get('port')}) is removed"
        )
    else:
        first = "image built first; then " if planned["image"] is UNKNOWN else ""
        notes.append(
            f"{first}the old container stops and the new one starts on port {planned['port']} "
            "(same port: a short gap); a failed start restores the old one"
        )
    return notes


def _prune(client: Any, repo: str, ctx: Context) -> None:
    import docker.errors

    for img in client.images.list(name=repo):
        for tag in img.tags:
            if tag.rpartition(":")[0] == repo:
                try:
                    client.images.remove(tag)
                    ctx.log(f"removed image {tag}")
                except docker.errors.APIError:
                    pass  # still used by another container
