"""The functionapp target: each service becomes a genuine Azure Functions
Python v2 app (:mod:`modelform.providers.funcapp_package`), run here by
modelform's local functions host (:mod:`modelform.runtime.functions`) against
the target's storage — S3-compatible (MinIO) or Azure Storage (Azurite, an
account) — with the service's trigger (HTTP, blob, storage queue, service
bus) and an HTTP function beside it.

The host runs as a detached process on 127.0.0.1 and the service's port
(``run_as: process``, the default). What the plan compares is the app's
digest (every file of it: entry script, exact model version, trigger,
settings), the port and the trigger; the refresh asks the running host
which app it serves (``/admin/host/status``), so a host that was killed or
that serves another app is drift.

The storage's secret (an Azure connection string) reaches the host as the
``AzureWebJobsStorage`` app setting in its environment; it is never written
to the app folder, never printed. S3 credentials are the host's AWS
environment, as for modelform itself.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

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
    check_test_response,
    coming_up,
)
from modelform.providers import dockerengine, imagebuild, imagesource
from modelform.providers import funcapp_container as fc
from modelform.providers import funcapp_package as fp
from modelform.providers import local_process as proc
from modelform.providers.funcapp_config import (
    SERVICE_SCHEMA,
    STORAGE_SETTING,
    TARGET_SCHEMA,
    Options,
    check_trigger,
    normalize,
    options,
)
from modelform.providers.funcapp_trigger import function_name, http_function_name
from modelform.runtime.functions.settings import sanitize_host_id

#: Attributes only a running host has; not compared as desired state.
COMPUTED = ("pid", "started", "container_id", "image", "key")
#: Labels of a host's container (run_as: container): found again by them.
LABEL_PROJECT = "modelform.project_dir"
LABEL_ADDRESS = "modelform.address"
LABEL_ATTRS = "modelform.attributes"
REPLACE_ON = {"port"}
STARTUP_SECONDS = 120.0
#: How long the triggers may take to listen (a first listing of the storage).
LISTEN_SECONDS = 10.0

ATTRIBUTES = {
    "host": "127.0.0.1.",
    "port": "The port the functions host listens on.",
    "url": "http://127.0.0.1:PORT, the functions host.",
    "route": "The HTTP function's route: requests go to URL/api/ROUTE.",
    "trigger": "The service's trigger, with its defaults filled in.",
    "functions": "The app's functions: name → trigger kind.",
    "storage": "Where blobs and queues are (no secret).",
    "app_digest": "Digest of every file of the app (sha256:…).",
    "app_dir": "The folder the host runs the app from.",
    "models": "Model name → NAME:VERSION the app carries.",
    "auth": "none or key (the HTTP function's level: function with a key).",
    "run_as": "process or container.",
    "image_digest": "run_as: container: digest of the app's image's inputs (None for a process).",
    "image": "run_as: container: the image the host runs (REPO:N).",
    "container_id": "run_as: container: the host's container.",
    "host_id": "The id the host keeps its blob receipts under.",
    "status": "Healthy, Transitioning, Unhealthy or Failed.",
    "pid": "run_as: process: the host's process id.",
    "started": "The process's start time (clock ticks since boot).",
    "key": "The function key, with auth: key (sensitive).",
}


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def trigger_problems(doc: dict[str, Any]) -> list[str]:
    """``function: error`` for each trigger the host says is not listening."""
    out = []
    for name, t in sorted((doc.get("triggers") or {}).items()):
        if isinstance(t, dict) and t.get("healthy") is False:
            out.append(f"{name}: {t.get('error') or 'not listening'}")
    return out


def host_health(doc: dict[str, Any] | None) -> str:
    """The service's status from the host's status document (None: no answer)."""
    running = doc is not None and doc.get("state") == "Running" and not trigger_problems(doc)
    return ServiceStatus.HEALTHY.value if running else ServiceStatus.UNHEALTHY.value


def host_status(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The host's ``/admin/host/status`` document, or None if it does not answer."""
    try:
        with urllib.request.urlopen(url + "/admin/host/status", timeout=timeout) as r:
            doc = json.loads(r.read())
            return doc if isinstance(doc, dict) else None
    except (OSError, ValueError):
        return None


class FunctionAppProvider(Provider):
    kind = "functionapp"
    protocol_version = PROTOCOL_VERSION
    description = (
        "An Azure Functions Python v2 app per service (HTTP, blob, queue, service-bus "
        "triggers), run here by modelform's functions host on S3 or Azure Storage."
    )

    def target_schema(self) -> dict[str, Any]:
        return TARGET_SCHEMA

    def service_schema(self) -> dict[str, Any]:
        return SERVICE_SCHEMA

    def attributes(self, resource_type: str) -> dict[str, str] | None:
        return dict(ATTRIBUTES) if resource_type == "service" else None

    def identity(self, attributes: dict[str, Any]) -> str | None:
        if attributes.get("container_id"):
            return str(attributes["container_id"])
        pid = attributes.get("pid")
        return None if pid is None else f"{pid}:{attributes.get('started')}"

    def validate(self, resource: Resource, ctx: Context) -> list[Diagnostic]:
        if resource.type != "service":
            return []
        opts = options(ctx.target, resource.pos)
        out = check_trigger(resource, opts.storage.kind if opts.storage else None)
        if opts.run_as == "container" and not dockerengine.is_local(opts.docker_host):
            out.append(
                Diagnostic(
                    f"{resource.address}: run_as: container needs a Docker Engine on this "
                    f"machine (the host shares its loopback), not {opts.docker_host}",
                    resource.option_pos("target"),
                )
            )
        return out

    # -- plan -------------------------------------------------------------------
    def _app(self, r: Resource, ctx: Context, register: bool = False) -> fp.AppSpec:
        return fp.spec_from_resource(r, ctx, register_models=register)

    def _image_spec(
        self, r: Resource, ctx: Context, opts: Options, app: fp.AppSpec, app_dir: Path
    ) -> imagebuild.ImageSpec:
        env_name = r.config.get("environment")
        env = r.inputs.get(f"environment.{env_name}", {}) if env_name else {}
        repo = imagesource.repository(ctx.project, r.name, None)
        return fc.app_image_spec(app_dir, app, opts, repo, base_image=env.get("base_image"))

    def _desired(self, r: Resource, ctx: Context, opts: Options) -> dict[str, Any]:
        cfg = r.config
        auth = str(cfg.get("auth") or "none")
        trigger = normalize(dict(cfg.get("trigger") or {"kind": "http"}), auth)
        image_digest = None
        with tempfile.TemporaryDirectory(prefix="modelform-app-") as tmp:
            app = self._app(r, ctx)
            digest = fp.write_app(app, Path(tmp) / "app")
            if opts.run_as == "container":
                image_digest = self._image_spec(r, ctx, opts, app, Path(tmp) / "app").digest()
        functions = {function_name(r.name): str(trigger["kind"])}
        if trigger["kind"] != "http":
            functions[http_function_name(r.name)] = "http"
        models = {n: r.inputs[f"model.{n}"]["ref"] for n in cfg.get("models", [])}
        port = int(cfg["port"])
        return {
            "host": "127.0.0.1",
            "port": port,
            "url": f"http://127.0.0.1:{port}",
            "route": str(trigger.get("route") or "score") if trigger["kind"] == "http"
            else "score",
            "trigger": trigger,
            "functions": functions,
            "storage": opts.storage.describe() if opts.storage else None,
            "app_digest": digest,
            "app_dir": str(ctx.work_dir / "functionapps" / r.name / digest.split(":")[-1][:16]),
            "models": models,
            "auth": auth,
            "run_as": opts.run_as,
            "image_digest": image_digest,
            "host_id": sanitize_host_id(f"{ctx.project}-{r.name}"),
            "status": ServiceStatus.HEALTHY.value,
        }  # fmt: skip

    def plan(self, resource: Resource, prior: dict[str, Any] | None, ctx: Context) -> Proposal:
        opts = options(ctx.target, resource.pos)
        planned = self._desired(resource, ctx, opts)
        changed = (
            prior is None or ctx.replacing or any(prior.get(k) != v for k, v in planned.items())
        )
        if coming_up(prior, planned):
            planned["status"] = ServiceStatus.TRANSITIONING.value
            changed = False
        for k in COMPUTED:
            planned[k] = UNKNOWN if changed or prior is None else prior.get(k)
        planned["key"] = None
        if planned["auth"] == "key":
            planned["key"] = prior.get("key") if prior and prior.get("key") else UNKNOWN
        return Proposal(
            planned,
            requires_replace=set(REPLACE_ON),
            reasons=_reasons(prior, planned),
            notes=_notes(prior, planned),
            sensitive={"key"},
        )

    # -- refresh ----------------------------------------------------------------
    def read(self, prior: dict[str, Any], ctx: Context) -> dict[str, Any] | None:
        if not _alive(prior, ctx):
            return None
        doc = host_status(str(prior["url"]))
        if doc is None:
            return {**prior, "status": host_health(doc)}
        return {**prior, "status": host_health(doc), "app_digest": doc.get("app_digest")}

    def discover(self, ctx: Context) -> list[dict[str, Any]]:
        out = []
        for f in proc.find(ctx.project_dir.resolve()):
            if not f.address.startswith("service."):
                continue
            attrs = dict(f.attributes or {})
            if attrs.get("run_as") is None:  # another kind's process (local)
                continue
            attrs.update(pid=f.pid, started=f.started)
            attrs["status"] = host_health(host_status(str(attrs.get("url", ""))))
            out.append({"address": f.address, "attributes": attrs, "complete": False})
        opts = options(ctx.target) if ctx.target else None
        if opts is None or opts.run_as != "container":
            return out
        client = dockerengine.client(opts.docker_host, kind="functionapp")
        label = f"{LABEL_PROJECT}={ctx.project_dir.resolve()}"
        for c in client.containers.list(all=True, filters={"label": label}):
            if c.status != "running":
                continue
            attrs = json.loads(c.labels.get(LABEL_ATTRS) or "{}")
            attrs.update(container_id=c.id, pid=None, started=None)
            attrs["status"] = host_health(host_status(str(attrs.get("url", ""))))
            address = c.labels.get(LABEL_ADDRESS, "")
            out.append({"address": address, "attributes": attrs, "complete": False})
        return out

    # -- apply ------------------------------------------------------------------
    def _start(self, r: Resource, planned: dict[str, Any], ctx: Context) -> dict[str, Any]:
        opts = options(ctx.target, r.pos)
        proc.port_free(planned["host"], int(planned["port"]))
        app_dir = Path(planned["app_dir"])
        app = self._app(r, ctx, register=True)
        digest = self._write(app, app_dir)
        if digest != planned["app_digest"]:  # the files changed since the plan
            raise ProviderError(
                f"the app's files changed since the plan ({planned['app_digest']} "
                f"→ {digest}): plan again"
            )
        key = planned.get("key")
        if planned["auth"] == "key" and not isinstance(key, str):
            key = secrets.token_urlsafe(32)
        attrs = {k: v for k, v in planned.items() if k not in COMPUTED}
        if opts.run_as == "container":
            made = self._run_container(r, planned, ctx, opts, app, app_dir, key, attrs)
            what = f"container {str(made['container_id'])[:12]} ({made['image']})"
        else:
            made = self._spawn(r, planned, ctx, opts, app_dir, key, attrs)
            what = f"pid {made['pid']}"
        ctx.log(f"functions host {what} serving {app_dir.name}; waiting for {planned['url']}")
        timeout = float(ctx.target.get("startup_timeout") or STARTUP_SECONDS)
        deadline = time.monotonic() + timeout
        listen_deadline = time.monotonic() + LISTEN_SECONDS

        def failed(message: str, status: str = ServiceStatus.FAILED.value) -> ProviderError:
            """Stop the host (its log kept for the error) and say why."""
            log = _host_log(made, ctx)
            _halt(made, ctx)
            return ProviderError(message, log=log, status=status)

        while True:
            if not _alive(made, ctx):
                why = proc.last_error(_host_log(made, ctx))
                suffix = f": {why}" if why else ""
                raise failed(f"the functions host exited before it was ready{suffix}")
            doc = host_status(planned["url"], timeout=1.0)
            if doc is not None and doc.get("state") == "Running":
                if doc.get("app_digest") != digest:
                    served = doc.get("app_digest")
                    raise failed(
                        f"the host on port {planned['port']} serves another app ({served})"
                    )
                problems = trigger_problems(doc)
                if not problems:
                    break
                if time.monotonic() > listen_deadline:  # a storage it cannot reach
                    why = f"the host's triggers do not listen: {'; '.join(problems)}"
                    raise failed(why, ServiceStatus.UNHEALTHY.value)
            else:
                listen_deadline = time.monotonic() + LISTEN_SECONDS
            if time.monotonic() > deadline:
                raise failed(f"not running after {timeout:.0f} s")
            try:
                ctx.sleep(0.1)
            except Cancelled as e:
                msg = "interrupted while waiting for the host"
                raise Cancelled(msg, attributes=made) from e
        names = ", ".join(f"{n} ({k})" for n, k in planned["functions"].items())
        ctx.log(f"functions host running: {names}")
        return {**made, "status": ServiceStatus.HEALTHY.value}

    def _spawn(
        self, r: Resource, planned: dict[str, Any], ctx: Context, opts: Options, app_dir: Path,
        key: str | None, attrs: dict[str, Any],
    ) -> dict[str, Any]:  # fmt: skip
        argv = [
            sys.executable, "-m", "modelform.runtime.functions", str(app_dir),
            "--host", planned["host"], "--port", str(planned["port"]),
            "--host-id", str(planned["host_id"]), "--poll-seconds", str(opts.poll_seconds),
        ]  # fmt: skip
        env = dict(os.environ)
        if opts.storage is not None:
            env[STORAGE_SETTING] = opts.storage.setting()
        env.pop(fp.FUNCTION_KEY_SETTING, None)
        if key:
            env[fp.FUNCTION_KEY_SETTING] = key
        env[proc.PROJECT_ENV] = str(ctx.project_dir.resolve())
        env[proc.ADDRESS_ENV] = r.address
        env[proc.ATTRS_ENV] = json.dumps(attrs)
        log = ctx.work_dir / "logs" / f"{r.name}.log"
        pid, started = proc.spawn(argv, env, app_dir, log)
        return {**attrs, "key": key, "pid": pid, "started": started, "container_id": None,
                "image": None, "status": ServiceStatus.TRANSITIONING.value}  # fmt: skip

    def _run_container(
        self, r: Resource, planned: dict[str, Any], ctx: Context, opts: Options,
        app: fp.AppSpec, app_dir: Path, key: str | None, attrs: dict[str, Any],
    ) -> dict[str, Any]:  # fmt: skip
        client = dockerengine.client(opts.docker_host, kind="functionapp")
        spec = self._image_spec(r, ctx, opts, app, app_dir)
        if spec.digest() != planned.get("image_digest"):
            raise ProviderError("the app's image inputs changed since the plan: plan again")
        built = imagebuild.build(client, spec, ctx.log, sleep=ctx.sleep)
        labels = {LABEL_PROJECT: str(ctx.project_dir.resolve()), LABEL_ADDRESS: r.address,
                  LABEL_ATTRS: json.dumps(attrs)}  # fmt: skip
        name = f"mf-{planned['host_id']}-{planned['port']}"
        _clear_exited(client, name, labels, ctx)
        cid = fc.run(client, built.ref, name, int(planned["port"]), fc.app_env(opts, key), labels,
                     str(planned["host_id"]), opts.poll_seconds)  # fmt: skip
        return {**attrs, "key": key, "pid": None, "started": None, "container_id": cid,
                "image": built.ref, "status": ServiceStatus.TRANSITIONING.value}  # fmt: skip

    def _write(self, app: fp.AppSpec, app_dir: Path) -> str:
        """``app`` written to ``app_dir`` (again, if it is there: the same
        inputs give the same bytes); its digest."""
        try:
            if app_dir.exists():
                shutil.rmtree(app_dir)
            app_dir.parent.mkdir(parents=True, exist_ok=True)
            return fp.write_app(app, app_dir)
        except fp.PackageError as e:
            raise ProviderError(str(e)) from None

    def apply(self, request: ApplyRequest, ctx: Context) -> Applied:
        resource, prior, planned = request.resource, request.prior, request.planned
        if prior and request.action is Action.REPLACE and prior.get("port") != planned["port"]:
            new = self._start(resource, planned, ctx)  # the new port serves first
            self.delete(resource.address, prior, ctx)
            return Applied(new)
        if prior:
            self._stop(prior, ctx)
        return Applied(self._start(resource, planned, ctx))

    def check(self, request: ApplyRequest, applied: Applied, ctx: Context) -> Check:
        attrs = applied.attributes
        test = request.resource.config.get("test")
        if not test:
            return Check(ok=True, status=ServiceStatus.HEALTHY.value)
        ctx.log(f"running the service's test request (POST /api/{attrs['route']})")
        try:
            status, body = _post(attrs, json.dumps(test.get("request")).encode())
            check_test_response(test, status, body)
        except ProviderError as e:
            return Check(ok=False, status=ServiceStatus.UNHEALTHY.value, message=str(e), log=e.log)
        return Check(ok=True, status=ServiceStatus.HEALTHY.value)

    def _stop(self, prior: dict[str, Any], ctx: Context) -> None:
        _halt(prior, ctx)

    def delete(self, address: str, prior: dict[str, Any], ctx: Context) -> None:
        self._stop(prior, ctx)
        app_dir = prior.get("app_dir")
        if isinstance(app_dir, str) and Path(app_dir).is_dir():
            shutil.rmtree(app_dir, ignore_errors=True)
        opts = options(ctx.target) if ctx.target else None
        if opts and opts.delete_receipts_on_destroy and opts.storage and prior.get("host_id"):
            self._delete_receipts(str(prior["host_id"]), opts, ctx)

    def _delete_receipts(self, host_id: str, opts: Options, ctx: Context) -> None:
        """The blob receipts the host kept under its id (delete_receipts_on_destroy):
        a new app would then process the same blobs again."""
        from modelform.runtime.functions.receipts import RECEIPTS_CONTAINER
        from modelform.runtime.functions.settings import SettingsError, storage_from_setting
        from modelform.runtime.functions.stores import StoreError, open_store

        assert opts.storage is not None
        prefix = f"blobreceipts/{host_id}/"
        try:
            store = open_store(
                storage_from_setting(STORAGE_SETTING, {STORAGE_SETTING: opts.storage.setting()})
            )
            entries = store.listing(RECEIPTS_CONTAINER, prefix)
            for e in entries:
                store.delete(RECEIPTS_CONTAINER, e.name)
        except (SettingsError, StoreError) as e:
            raise ProviderError(f"cannot delete the blob receipts under {prefix}: {e}") from None
        ctx.log(f"deleted {len(entries)} blob receipts under {RECEIPTS_CONTAINER}/{prefix}")

    # -- day two ------------------------------------------------------------------
    def logs(self, address: str, attributes: dict[str, Any], ctx: Context, tail: int = 200) -> str:
        return _host_log({**attributes, "address": address}, ctx, tail)

    def invoke(
        self, attributes: dict[str, Any], body: bytes, ctx: Context
    ) -> tuple[int, bytes] | None:
        return _post(attributes, body)

    def status_detail(self, attributes: dict[str, Any], ctx: Context) -> str:
        doc = host_status(str(attributes.get("url", "")))
        if doc is None:
            return ""
        counts = doc.get("counts") or {}
        total = {k: sum(int(c.get(k, 0) or 0) for c in counts.values()) for k in
                 ("invocations", "failures", "poisoned")}  # fmt: skip
        detail = (
            f"{total['invocations']} invocations, {total['failures']} failed, "
            f"{total['poisoned']} poisoned"
        )
        return "; ".join([detail, *trigger_problems(doc)])

    def package(self, resource: Resource, ctx: Context, push: bool) -> dict[str, Any]:
        if push:
            raise DiagnosticError(
                Diagnostic(
                    "--push: a function app is published to Azure with its zip "
                    "(az functionapp deployment source config-zip), not pushed by modelform",
                    resource.pos,
                )
            )
        out = ctx.work_dir / "packages" / resource.name
        app = self._app(resource, ctx)
        try:
            digest = self._write(app, out / "app")
        except ProviderError as e:  # no engine here to name the service
            raise ProviderError(f"{resource.address}: {e}") from None
        zipped = fp.package_zip(out / "app", out / f"{resource.name}.zip")
        short = digest.split(":")[-1][:16]
        result: dict[str, Any] = {
            "app_dir": str(out / "app"), "zip": str(zipped), "app_digest": digest,
            "summary": f"function app {out / 'app'} ({short}), zip {zipped}",
        }  # fmt: skip
        opts = options(ctx.target, resource.pos)
        if opts.run_as == "container":  # and its image, with the container target's builder
            client = dockerengine.client(opts.docker_host, kind="functionapp")
            spec = self._image_spec(resource, ctx, opts, app, out / "app")
            built = imagebuild.build(client, spec, ctx.log, sleep=ctx.sleep)
            result.update(image=built.ref, digest_tag=built.digest_ref, built=built.built)
            result["summary"] += f", image {built.ref}"
        return result


def _clear_exited(client: Any, name: str, labels: dict[str, str], ctx: Context) -> None:
    """An exited host container of this service, kept for its log, gives its
    name up to the new one; anyone else's container is left alone."""
    import docker.errors

    try:
        old = client.containers.get(name)
    except docker.errors.NotFound:
        return
    ours = all(old.labels.get(k) == labels[k] for k in (LABEL_PROJECT, LABEL_ADDRESS))
    if ours and old.status != "running":
        ctx.log(f"removing the exited host container {name} ({old.status})")
        old.remove(force=True)


def _docker(attrs: dict[str, Any], ctx: Context) -> Any:
    opts = options(ctx.target) if ctx.target else None
    host = opts.docker_host if opts else dockerengine.default_host()
    return dockerengine.client(host, kind="functionapp")


def _alive(attrs: dict[str, Any], ctx: Context) -> bool:
    """Whether the host recorded in ``attrs`` still runs (process or container)."""
    if attrs.get("container_id"):
        return fc.alive(_docker(attrs, ctx), str(attrs["container_id"]))
    pid = attrs.get("pid")
    return isinstance(pid, int) and proc.alive(pid, attrs.get("started"))


def _halt(attrs: dict[str, Any], ctx: Context) -> None:
    """Stop the host (and remove its container); gone already is fine."""
    if attrs.get("container_id"):
        fc.stop(_docker(attrs, ctx), str(attrs["container_id"]))
        return
    pid = attrs.get("pid")
    if isinstance(pid, int):
        proc.stop(pid, attrs.get("started"), grace=15.0)


def _host_log(attrs: dict[str, Any], ctx: Context, tail: int = 40) -> str:
    if attrs.get("container_id"):
        return fc.logs(_docker(attrs, ctx), str(attrs["container_id"]), tail)
    name = str(attrs.get("address") or ctx.address).split(".", 1)[-1]
    return _tail(ctx.work_dir / "logs" / f"{name}.log", tail)


def _post(attrs: dict[str, Any], body: bytes, timeout: float = 60.0) -> tuple[int, bytes]:
    """POST ``body`` to the app's HTTP function, with the function key if any."""
    headers = {"Content-Type": "application/json"}
    if attrs.get("key"):
        headers["x-functions-key"] = str(attrs["key"])
    url = f"{str(attrs['url']).rstrip('/')}/api/{attrs.get('route') or 'score'}"
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return int(r.status), bytes(r.read())
    except urllib.error.HTTPError as e:
        return int(e.code), bytes(e.read())
    except OSError as e:
        raise ProviderError(f"cannot reach {url}: {getattr(e, 'reason', e)}") from None


def _reasons(prior: dict[str, Any] | None, planned: dict[str, Any]) -> dict[str, str]:
    if not prior:
        return {}
    out: dict[str, str] = {}
    why = []
    for n, ref in planned["models"].items():
        old = (prior.get("models") or {}).get(n)
        if old != ref:
            why.append(f"model {n}: {old or 'none'} → {ref}")
    if prior.get("trigger") != planned["trigger"]:
        why.append("the trigger changed")
    if prior.get("app_digest") != planned["app_digest"]:
        changed = "the app's files changed (entry script, code, settings)"
        # one reason for the app and what follows from it (its folder, its models)
        for key in ("app_digest", "app_dir", "models", "trigger", "functions", "route"):
            if prior.get(key) != planned.get(key):
                out[key] = "; ".join(why) or changed
    if prior.get("status") != planned["status"]:
        out["status"] = f"the host is {prior.get('status')}: restart"
    return out


def _notes(prior: dict[str, Any] | None, planned: dict[str, Any]) -> list[str]:
    notes = []
    if planned["trigger"]["kind"] == "servicebus":
        notes.append(
            "service bus: configuration checked; the transport (azure-servicebus) is not "
            "exercised against a broker here"
        )
    if prior and prior.get("port") != planned["port"]:
        notes.append("the host on the new port starts before the old one stops")
    return notes
