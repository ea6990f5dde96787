"""The container target's options and what a service's image is made of.

Target options are declared once, with descriptions (they feed validation
and the generated docs); :func:`options` checks a target against them and
gives one-line errors. :func:`image_spec` turns a resolved service into
the :class:`~modelform.providers.imagebuild.ImageSpec` the builder needs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from modelform.engine.modelstore import StoreError
from modelform.plugin import Context, Diagnostic, DiagnosticError, Resource
from modelform.providers import imagebuild
from modelform.providers.container_docker import default_host

TARGET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "docker_host": {
            "type": "string",
            "description": "Docker Engine to use, such as unix:///var/run/docker.sock or "
            "tcp://10.0.0.5:2375 (default: $DOCKER_HOST, else the local socket).",
        },
        "base_image": {
            "type": "string",
            "description": "Base image with Python 3 and venv, for environments that name none "
            f"(default {imagebuild.DEFAULT_BASE_IMAGE}).",
        },
        "registry": {
            "type": "string",
            "description": "Registry host[:port][/path] images are named under and pushed to "
            "(by apply, and by `modelform package --push`). Without it images stay on the engine.",
        },
        "username_env": {
            "type": "string",
            "description": "Name of the environment variable holding the registry user "
            "(default MODELFORM_REGISTRY_USERNAME). Only the name is kept in state.",
        },
        "password_env": {
            "type": "string",
            "description": "Name of the environment variable holding the registry password or "
            "token (default MODELFORM_REGISTRY_PASSWORD). Never printed, never stored.",
        },
        "carry_ca": {
            "type": ["boolean", "string"],
            "description": "CA bundle carried into builds so pip trusts a TLS-intercepting "
            "proxy: true/absent = this host's bundle (when there is one), a path = that file, "
            "false = none.",
        },
        "prune_images": {
            "type": "boolean",
            "description": "Remove a service's images when the service is destroyed "
            "(default false: keep them, with their layer cache).",
        },
        "network": {
            "type": "string",
            "description": "Docker network to attach containers to (default: the bridge).",
        },
        "restart_policy": {
            "enum": ["no", "on-failure", "always", "unless-stopped"],
            "description": "Docker restart policy of the containers (default unless-stopped).",
        },
        "startup_timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "Seconds a new container may take to become ready (default 120).",
        },
    },
    "additionalProperties": False,
}
#: Keys every target has beside the kind's own options.
_COMMON = ("name", "kind", "description", "digest")
DEFAULT_USER_ENV = "MODELFORM_REGISTRY_USERNAME"
DEFAULT_PASSWORD_ENV = "MODELFORM_REGISTRY_PASSWORD"


@dataclass(frozen=True)
class Options:
    docker_host: str
    base_image: str
    registry: str | None
    username_env: str
    password_env: str
    carry_ca: bool | str | None
    prune_images: bool
    network: str | None
    restart_policy: str
    startup_timeout: float

    def registry_ref(self) -> dict[str, str] | None:
        """How state refers to the registry credentials: names, never values."""
        if not self.registry:
            return None
        return {"address": self.registry, "username_env": self.username_env,
                "password_env": self.password_env}  # fmt: skip

    def auth(self) -> dict[str, str] | None:
        """Registry credentials from the environment (None: Docker's own config)."""
        user, pw = os.environ.get(self.username_env), os.environ.get(self.password_env)
        if not user and not pw:
            return None
        if not (user and pw):
            missing = self.password_env if user else self.username_env
            raise DiagnosticError(Diagnostic(f"registry credentials: ${missing} is not set"))
        return {"username": user, "password": pw}


def options(target: dict[str, Any], pos: Any = None) -> Options:
    """The target's options, checked against :data:`TARGET_SCHEMA`."""
    own = {k: v for k, v in target.items() if k not in _COMMON}
    errors = sorted(
        jsonschema.Draft202012Validator(TARGET_SCHEMA).iter_errors(own), key=lambda e: e.path
    )
    if errors:
        e = errors[0]
        where = ".".join(str(p) for p in e.path) or "options"
        raise DiagnosticError(
            Diagnostic(
                f"target {target.get('name', '?')} (container): {where}: {e.message}",
                pos,
                "see docs/providers/container.md",
            )
        )
    return Options(
        docker_host=own.get("docker_host") or default_host(),
        base_image=own.get("base_image") or imagebuild.DEFAULT_BASE_IMAGE,
        registry=(own.get("registry") or "").rstrip("/") or None,
        username_env=own.get("username_env") or DEFAULT_USER_ENV,
        password_env=own.get("password_env") or DEFAULT_PASSWORD_ENV,
        carry_ca=own.get("carry_ca"),
        prune_images=bool(own.get("prune_images", False)),
        network=own.get("network"),
        restart_policy=own.get("restart_policy") or "unless-stopped",
        startup_timeout=float(own.get("startup_timeout") or 120),
    )


def repository(project: str, service: str, registry: str | None) -> str:
    return f"{registry}/{project}/{service}" if registry else f"{project}/{service}"


def model_files(ctx: Context, m: dict[str, Any], register: bool) -> Path:
    """The files of model version ``m`` (a model's attributes).

    ``register`` (apply): the model store's folder; a version this store
    lacks is registered again from the project's file when the file still
    has the recorded digest (:meth:`ModelStore.folder`), else a one-line
    error. Otherwise (plan, ``modelform package``) nothing is written: the
    store's folder when it holds the version on this machine (a remote
    store's cache may not have it yet), else the project's file, whose
    content is the same (the planned digest is that file's)."""
    if register:
        try:
            return Path(ctx.models.folder(m, ctx.project_dir))
        except StoreError as e:
            raise DiagnosticError(Diagnostic(str(e))) from None
    found = ctx.models.get(str(m["name"]), int(m["version"])) if ctx.models else None
    if found is not None and found.digest == m["digest"] and Path(found.path).exists():
        return Path(found.path)
    return ctx.project_dir / str(m["source"])


def image_spec(
    r: Resource, ctx: Context, opts: Options, *, register_models: bool = False
) -> imagebuild.ImageSpec:
    """What the service's image is made of. Only its digests are needed to
    plan; ``register_models`` when the files will be built into an image by
    apply (see :func:`model_files`)."""
    cfg = r.config
    env_name = cfg.get("environment")
    env = r.inputs.get(f"environment.{env_name}", {}) if env_name else {}
    models = []
    for name in cfg.get("models", []):
        m = r.inputs[f"model.{name}"]
        source = model_files(ctx, m, register_models)
        models.append(imagebuild.ModelFiles(name, int(m["version"]), str(m["digest"]), source))
    entry = (ctx.project_dir / cfg["entry_script"]).resolve()
    source_dir = ctx.project_dir / (cfg.get("source_dir") or Path(cfg["entry_script"]).parent)
    try:
        ca = imagebuild.host_ca_bundle(opts.carry_ca)
    except ValueError as e:
        raise DiagnosticError(Diagnostic(str(e), r.pos)) from None
    try:
        requirements = imagebuild.requirements_of(env, ctx.project_dir)
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise DiagnosticError(Diagnostic(f"environment {env_name}: {e}", r.pos)) from None
    return imagebuild.ImageSpec(
        repository=repository(ctx.project, r.name, opts.registry),
        base_image=env.get("base_image") or opts.base_image,
        requirements=requirements,
        source_dir=source_dir.resolve(),
        entry_script=entry,
        code_digest=r.digests.get("code", ""),
        python=env.get("python"),
        models=tuple(models),
        ca_bundle=ca,
    )
