"""The container target's options and what a service's image is made of.

Target options are declared once, with descriptions (they feed validation
and the generated docs); :func:`options` checks a target against them and
gives one-line errors. :func:`image_spec` turns a resolved service into
the :class:`~modelform.providers.imagebuild.ImageSpec` the builder needs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import jsonschema

from modelform.plugin import Context, Diagnostic, DiagnosticError, Resource
from modelform.providers import imagebuild, imagesource
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


def image_spec(
    r: Resource, ctx: Context, opts: Options, *, register_models: bool = False
) -> imagebuild.ImageSpec:
    """The service's image (:func:`modelform.providers.imagesource.image_spec`)
    with this target's registry, base image and CA bundle."""
    return imagesource.image_spec(
        r, ctx, registry=opts.registry, base_image=opts.base_image, carry_ca=opts.carry_ca,
        register_models=register_models,
    )  # fmt: skip
