"""What a service's image is made of, for every target that builds images
(container, kubernetes): its models' files, its code, its environment.

It imports no provider. :func:`image_spec` turns a resolved service into
the :class:`~modelform.providers.imagebuild.ImageSpec` the builder needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from modelform.engine.modelstore import StoreError
from modelform.plugin import Context, Diagnostic, DiagnosticError, Resource
from modelform.providers import imagebuild


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
    r: Resource,
    ctx: Context,
    *,
    registry: str | None,
    base_image: str,
    carry_ca: bool | str | None,
    register_models: bool = False,
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
        ca = imagebuild.host_ca_bundle(carry_ca)
    except ValueError as e:
        raise DiagnosticError(Diagnostic(str(e), r.pos)) from None
    try:
        requirements = imagebuild.requirements_of(env, ctx.project_dir)
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise DiagnosticError(Diagnostic(f"environment {env_name}: {e}", r.pos)) from None
    return imagebuild.ImageSpec(
        repository=repository(ctx.project, r.name, registry),
        base_image=env.get("base_image") or base_image,
        requirements=requirements,
        source_dir=source_dir.resolve(),
        entry_script=entry,
        code_digest=r.digests.get("code", ""),
        python=env.get("python"),
        models=tuple(models),
        ca_bundle=ca,
    )
