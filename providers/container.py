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
  removing a memory limit, which Docker cannot do in place, → replace. A
  stopped, paused or unhealthy container → update (started again).
* a container that is gone → the refresh drops it, the plan creates it
  (from the existing image: no build).
* a container still in ``init()`` (Transitioning) → nothing, unless
  something else changed: it is coming up, not broken.

Apply carries out the planned change and plans nothing itself: every known
planned value is what the new or updated container has.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from modelform.engine.digests import short
from modelform.plugin import (
    PROTOCOL_VERSION,
    UNKNOWN,
    Action,
    Applied,
    ApplyRequest,
    Cancelled,
    Check,
    Context,
    Diagnostic,
    DiagnosticError,
    Proposal,
    Provider,
    ProviderError,
    Resource,
    ServiceStatus,
    coming_up,
    http_check,
    is_known,
    shared_options,
)
from modelform.providers import container_docker as dk
from modelform.providers import imagebuild
from modelform.providers.container_config import TARGET_SCHEMA, Options, image_spec, options

REPLACE_ON = {
    "image_digest", "env_digest", "models", "code_digest", "entry_script", "source_dir",
    "image_repository", "host", "port", "env", "workers", "auth", "timeout_seconds",
    "docker_host", "network",
}  # fmt: skip
IN_PLACE = ("cpu", "memory_gb", "restart_policy")
#: Limits ``docker update`` changes; when one changes, Docker may refuse in place.
LIMITS = ("cpu", "memory_gb")
#: What only a container that exists has: known after apply when one is made.
CONTAINER = ("container_id", "id", "container_name")

ATTRIBUTES = {
    "host": "127.0.0.1: where the port is published.",
    "port": "The port published on the Docker host.",
    "url": "http://127.0.0.1:PORT.",
    "image": "The image the container runs, REPOSITORY:VERSION.",
    "image_id": "That image's id (sha256:...).",
    "image_repository": "The repository the service's images are named in.",
    "image_digest": "Content digest of everything in the image.",
    "env_digest": "Digest of the environment's package layer.",
    "models": "Model name → NAME:VERSION it serves.",
    "entry_script": "The scoring script.",
    "source_dir": "The folder shipped with it.",
    "code_digest": "Digest of the source folder.",
    "environment": "Its environment's name.",
    "env": "Environment variables of the container.",
    "cpu": "CPU cores it may use (CFS quota), or null for no limit.",
    "memory_gb": "Memory limit in GiB, or null for none.",
    "restart_policy": "Docker's restart policy of the container.",
    "workers": "Worker processes.",
    "auth": "none or key.",
    "timeout_seconds": "Longest a scoring request may take.",
    "docker_host": "The Docker Engine the container runs on.",
    "network": "The Docker network it joins (null: the default bridge).",
    "registry": "The registry images are pushed to, with the names of its credential variables.",
    "prune_images": "Whether destroy removes the service's images too.",
    "container_state": "Docker's state of the container (running, exited, ...).",
    "status": "Healthy, Transitioning, Unhealthy or Failed.",
    "container_id": "The container's full id.",
    "id": "The container's short id (12 hex digits).",
    "container_name": "The container's name.",
    "key": "The generated key, with auth: key (sensitive).",
}


def _host(attrs: dict[str, Any] | None, ctx: Context) -> str:
    """The Docker Engine a recorded container lives on: the one it was made
    on, else its target's (the default engine when the target names none)."""
    recorded = (attrs or {}).get("docker_host")
    return str(recorded or ctx.target.get("docker_host") or dk.default_host())


def _known(planned: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in planned.items() if is_known(v)}


class ContainerProvider(Provider):
    kind = "container"
    protocol_version = PROTOCOL_VERSION
    description = "An image per service and a container running it on a Docker Engine."

    def target_schema(self) -> dict[str, Any]:
        return TARGET_SCHEMA

    def service_schema(self) -> dict[str, Any]:
        """One container per service: no replicas or autoscale."""
        shared = shared_options("port", "cpu", "memory_gb", "resources", "auth", "timeout_seconds",
                                "workers", auth="none", timeout_seconds=60, workers=1)  # fmt: skip
        return {"type": "object", "properties": shared, "required": ["port"]}

    def attributes(self, resource_type: str) -> dict[str, str] | None:
        return dict(ATTRIBUTES) if resource_type == "service" else None

    def identity(self, attributes: dict[str, Any]) -> str | None:
        cid = attributes.get("container_id")
        return None if not cid else str(cid)

    # -- plan ---------------------------------------------------------------
    def desired(self, r: Resource, ctx: Context, opts: Options) -> dict[str, Any]:
        cfg = r.config
        spec = image_spec(r, ctx, opts)
        env_name = cfg.get("environment")
        env_attrs = r.inputs.get(f"environment.{env_name}", {}) if env_name else {}
        env = {**(env_attrs.get("env") or {}), **(cfg.get("env") or {})}
        res = cfg.get("resources") or {}
        host = "127.0.0.1"
        port = cfg["port"]
        return {
            "host": host,
            "port": port,
            "url": f"http://{host}:{port}" if is_known(port) else UNKNOWN,
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
        if coming_up(prior, planned):
            planned["status"] = ServiceStatus.TRANSITIONING.value
        replace_on = set(REPLACE_ON)
        if prior and prior.get("memory_gb") is not None and planned["memory_gb"] is None:
            replace_on.add("memory_gb")  # docker update cannot remove a memory limit
        replacing = (
            prior is None
            or ctx.replacing
            or any(is_known(planned[k]) and prior.get(k) != planned[k] for k in replace_on)
        )
        # A new container, or limits Docker may refuse to change in place.
        anew = prior is None or replacing or any(prior.get(k) != planned[k] for k in LIMITS)
        for k in CONTAINER:
            planned[k] = UNKNOWN if anew or prior is None else prior.get(k)
        planned["image"], planned["image_id"] = self._planned_image(resource, ctx, opts, prior,
                                                                    planned)  # fmt: skip
        planned["key"] = None
        if planned["auth"] == "key":
            planned["key"] = prior.get("key") if prior and prior.get("key") else UNKNOWN
        return Proposal(
            planned,
            requires_replace=replace_on,
            reasons=_reasons(prior, planned),
            notes=_notes(prior, planned, replacing),
            sensitive={"key"},
        )

    def _planned_image(
        self, r: Resource, ctx: Context, opts: Options, prior: dict[str, Any] | None,
        planned: dict[str, Any],
    ) -> tuple[Any, Any]:  # fmt: skip
        """(image, image_id) the container will run: the one it runs now when
        the content is the same and the image is still there, else one built
        from the same content before, else known after the build."""
        try:
            client = dk.client(opts.docker_host)
            same = prior and prior.get("image_digest") == planned["image_digest"]
            if same and prior and prior.get("image") and prior.get("image_id"):
                if dk.image_id(client, str(prior["image"])) == prior["image_id"]:
                    return prior["image"], prior["image_id"]
            found = imagebuild.find(client, image_spec(r, ctx, opts), look_only=True)
        except dk.errors() as e:
            raise DiagnosticError(Diagnostic(f"docker: {dk.short(e)}", r.pos)) from None
        if found is None:
            return UNKNOWN, UNKNOWN
        return found.ref or UNKNOWN, found.image_id

    # -- refresh --------------------------------------------------------------
    def read(self, prior: dict[str, Any], ctx: Context) -> dict[str, Any] | None:
        host = _host(prior, ctx)
        try:
            c = dk.get(dk.client(host), prior.get("container_id"))
            return None if c is None else {**prior, **dk.observe(c, {**prior, "docker_host": host})}
        except dk.errors() as e:
            raise DiagnosticError(Diagnostic(f"docker at {host}: {dk.short(e)}")) from None

    def discover(self, ctx: Context) -> list[dict[str, Any]]:
        """Containers with the project's labels on this target's Docker Engine."""
        host = _host(None, ctx)
        try:
            out = []
            for c in dk.labelled(dk.client(host), ctx.project_dir):
                attrs = dk.label_attributes(c)
                found = {**(attrs or {}), "docker_host": host}
                found.update(dk.observe(c, found))
                complete = attrs is not None and (found.get("auth") != "key" or found.get("key"))
                address = c.labels.get(dk.L_ADDRESS, "service.unknown")
                out.append({"address": address, "attributes": found, "complete": bool(complete)})
            return out
        except dk.errors() as e:
            raise DiagnosticError(Diagnostic(f"docker at {host}: {dk.short(e)}")) from None

    # -- apply ----------------------------------------------------------------
    def apply(self, request: ApplyRequest, ctx: Context) -> Applied:
        try:
            return Applied(self._apply(request, ctx))
        except DiagnosticError as e:
            raise ProviderError(str(e)) from None
        except dk.errors() as e:
            raise ProviderError(f"docker: {dk.short(e)}") from None

    def _apply(self, req: ApplyRequest, ctx: Context) -> dict[str, Any]:
        r, prior, planned = req.resource, req.prior, req.planned
        opts = options(ctx.target, r.pos)
        old = None
        if prior:  # the old container lives where it was made
            old = dk.get(dk.client(_host(prior, ctx)), prior.get("container_id"))
        if req.action is Action.UPDATE and prior is not None:
            if old is None and is_known(planned.get("container_id")):
                raise ProviderError(
                    f"its container {prior.get('id')} is gone since the plan was "
                    "made; apply again to create it"
                )
            if old is not None:
                done = self._update(r, old, planned, ctx, opts)
                if done is not None:
                    return done
                ctx.log("docker cannot make this change in place: replacing the container")
        return self._replace(r, old, prior, planned, ctx, opts)

    def _replace(
        self, r: Resource, old: Any, prior: dict[str, Any] | None, planned: dict[str, Any],
        ctx: Context, opts: Options,
    ) -> dict[str, Any]:  # fmt: skip
        """A new container from the planned image (built first when needed);
        the old one, if any, goes once the new one is ready."""
        client = dk.client(opts.docker_host)
        attrs = {k: v for k, v in planned.items() if k not in dk.COMPUTED}
        attrs["image"], attrs["image_id"] = self._image(client, r, planned, ctx, opts)
        key = planned.get("key") if is_known(planned.get("key")) else None
        if attrs["auth"] == "key" and not key:
            key = secrets.token_urlsafe(32)
        if old is not None and prior is not None and not _same_port(prior, planned):
            try:  # the new container is ready before the old one goes
                new = self._start(client, r, attrs, key, ctx, opts)
            except Cancelled:
                dk.remove(old, grace=0)  # the new one is recorded in its place
                raise
            except ProviderError as e:  # the old one still runs, unchanged
                raise ProviderError(f"{e} (the previous container still runs)", e.log) from None
            dk.remove(old)
            return new
        if old is not None:
            ctx.log(f"stopping the old container {old.name} (port {planned['port']} is reused)")
            old.stop(timeout=10)
        try:
            new = self._start(client, r, attrs, key, ctx, opts)
        except Cancelled:
            if old is not None:
                dk.remove(old, grace=0)  # the new one is recorded in its place
            raise
        except ProviderError as e:
            if old is None:
                raise
            ctx.log(f"the new container failed: starting the old one ({old.name}) again")
            old.start()
            raise ProviderError(f"{e} (the previous container runs again)", e.log) from None
        if old is not None:
            dk.remove(old)
        return new

    def _image(self, client: Any, r: Resource, planned: dict[str, Any], ctx: Context,
               opts: Options) -> tuple[str, str]:  # fmt: skip
        """(name, id) of the planned image: found by its content digest, else
        built; pushed when the target names a registry."""
        spec = image_spec(r, ctx, opts, register_models=True)
        built = imagebuild.build(client, spec, ctx.log, sleep=ctx.sleep)
        ref = built.ref
        want = planned.get("image")
        if is_known(want) and want and want != ref and dk.image_id(client, want) == built.image_id:
            ref = str(want)  # the same image under the version name the plan showed
        if opts.registry:
            imagebuild.push(client, ref, opts.auth(), ctx.log, sleep=ctx.sleep)
        return ref, built.image_id

    def _start(self, client: Any, r: Resource, attrs: dict[str, Any], key: str | None,
               ctx: Context, opts: Options) -> dict[str, Any]:  # fmt: skip
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
            dk.wait_ready(container, attrs["url"], local, opts.startup_timeout, ctx.sleep)
        except Cancelled:
            made = _made(container, attrs)
            msg = f"interrupted while container {name} was starting"
            raise Cancelled(msg, attributes=made) from None
        except ProviderError:
            dk.remove(container, grace=2)
            raise
        container.update(restart_policy={"Name": attrs["restart_policy"]})
        container.reload()
        return {**attrs, **dk.observe(container, attrs)}

    def _update(self, r: Resource, c: Any, planned: dict[str, Any], ctx: Context,
                opts: Options) -> dict[str, Any] | None:  # fmt: skip
        """Limits and restart policy changed in place, the container started
        again if it is not running; None when Docker cannot make the change
        in place (the caller replaces the container)."""
        import docker.errors

        wanted = _known(planned)
        now = dk.observe(c, wanted)
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
            now = dk.observe(c, wanted)
            if any(now[k] != want[k] for k in IN_PLACE):
                return None
        if now["container_state"] == "paused":
            ctx.log(f"container {c.name} is paused: unpausing it")
            c.unpause()
        elif now["container_state"] != "running":
            ctx.log(f"container {c.name} is {now['container_state']}: starting it")
            c.start()
        elif now["status"] == ServiceStatus.UNHEALTHY.value:
            ctx.log(f"container {c.name} is unhealthy: restarting it")
            c.restart(timeout=10)
        local = dk.is_local(str(planned["docker_host"]))
        try:
            dk.wait_ready(c, planned["url"], local, opts.startup_timeout, ctx.sleep)
        except Cancelled:
            msg = f"interrupted while container {c.name} was starting"
            raise Cancelled(msg, attributes=_made(c, wanted)) from None
        c.reload()
        return {**wanted, **dk.observe(c, wanted)}

    # -- check ------------------------------------------------------------------
    def check(self, request: ApplyRequest, applied: Applied, ctx: Context) -> Check:
        """From this machine: ``/ready`` and the service's ``test:`` request.
        A remote Docker Engine publishes the port on its own 127.0.0.1, out of
        reach: there the container's health check is all there is to go by."""
        attrs = applied.attributes
        if dk.is_local(str(attrs.get("docker_host") or "")):
            got = http_check(request.resource, attrs, ctx)
        else:
            status = str(attrs.get("status"))
            got = Check(ok=status == ServiceStatus.HEALTHY.value, status=status)
            if not got.ok:
                got.message = f"Docker's health check: {status}"
            elif request.resource.config.get("test"):
                url, host = attrs.get("url"), attrs.get("docker_host")
                ctx.log(f"test request not sent: {url} is on {host}")
        if not got.ok and not got.log:
            got.log = _container_log(attrs, ctx)
        return got

    # -- delete and logs --------------------------------------------------------
    def delete(self, address: str, prior: dict[str, Any], ctx: Context) -> None:
        host = _host(prior, ctx)
        try:
            client = dk.client(host)
            c = dk.get(client, prior.get("container_id"))
            if c is not None:
                ctx.log(f"removing container {c.name}")
                dk.remove(c)
            if prior.get("prune_images") and prior.get("image_repository"):
                _prune(client, str(prior["image_repository"]), ctx)
        except DiagnosticError as e:
            raise ProviderError(str(e)) from None
        except dk.errors() as e:
            raise ProviderError(f"docker at {host}: {dk.short(e)}") from None

    def logs(self, address: str, attributes: dict[str, Any], ctx: Context, tail: int = 200) -> str:
        host = _host(attributes, ctx)
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
        built = imagebuild.build(client, spec, ctx.log, sleep=ctx.sleep)
        if push:
            imagebuild.push(client, built.ref, opts.auth(), ctx.log, sleep=ctx.sleep)
            imagebuild.push(client, built.digest_ref, opts.auth(), ctx.log, sleep=ctx.sleep)
        return {
            "image": built.ref, "digest_tag": built.digest_ref, "image_id": built.image_id,
            "built": built.built, "pushed": push, "seconds": round(built.seconds, 1),
        }  # fmt: skip


def _container_log(attrs: dict[str, Any], ctx: Context) -> str:
    """The container's state and last log lines, to show with a failed check."""
    try:
        c = dk.get(dk.client(_host(attrs, ctx)), attrs.get("container_id"))
        if c is None:
            return f"container {attrs.get('id')} is gone"
        st = c.attrs.get("State") or {}
        health = (st.get("Health") or {}).get("Status", "none")
        head = f"container {c.name}: {st.get('Status')}, Docker health check {health}"
        return head + "\n" + dk.logs_tail(c)
    except DiagnosticError:
        return ""
    except dk.errors():
        return ""


def _made(container: Any, attrs: dict[str, Any]) -> dict[str, Any]:
    """The attributes of a container that exists but was not seen ready
    (recorded tainted: the next plan replaces it)."""
    try:
        container.reload()
        return {**attrs, **dk.observe(container, attrs)}
    except dk.errors():
        cid = str(container.id)
        return {**attrs, "container_id": cid, "id": cid[:12], "container_name": container.name,
                "status": ServiceStatus.TRANSITIONING.value}  # fmt: skip


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
    if prior.get("memory_gb") is not None and planned["memory_gb"] is None:
        out["memory_gb"] = (
            f"memory_gb: {prior['memory_gb']} → none (Docker cannot remove a memory limit in "
            "place: new container)"
        )
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
