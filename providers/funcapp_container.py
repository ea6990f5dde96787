"""``run_as: container``: a function app's image, and the functions host
running it in a container on the Docker Engine.

The image is the container target's (:mod:`modelform.providers.imagebuild`)
with the app folder as its code: the environment's packages, then the
runtime's, then the functions host's own (azure-functions and the storage
clients, :func:`host_requirements`) each in a layer of its own, so a new
model or entry script (both inside the app folder) rebuilds only the last
layer. Its command is the host on the app folder; the address, port, host
id and poll interval are given when the container starts, so one image
serves any port.

Secrets (the ``AzureWebJobsStorage`` connection string, the function key,
AWS credentials) reach the container in its environment only: never in the
image (the app's ``local.settings.json`` holds "" for them), never in a
label, never in a log line of this module.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelform.plugin import ProviderError
from modelform.providers import imagebuild
from modelform.providers.dockerengine import is_local, short
from modelform.providers.funcapp_config import STORAGE_SETTING, Options
from modelform.providers.funcapp_package import FUNCTION_KEY_SETTING, AppSpec
from modelform.runtime.functions.appdigest import app_digest

#: What the functions host imports beside the scoring runtime's packages
#: (floors as in pyproject's functionapp extra; pinned to the versions this
#: machine runs when they are installed, as the runtime's packages are).
HOST_PACKAGES = {
    "azure-functions": ">=1.20,<2",
    "azure-storage-blob": ">=12.19",
    "azure-storage-queue": ">=12.9",
    "azure-servicebus": ">=7.11",
    "boto3": ">=1.34",
}
#: The AWS settings an S3 storage's host gets from the provider's environment.
AWS_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
)
#: Seconds a stop waits for the host to finish its runs (its own grace is 10 s).
STOP_SECONDS = 15


def host_requirements() -> tuple[str, ...]:
    """The functions host's pip requirements, pinned like the runtime's."""
    return tuple(imagebuild.pinned(HOST_PACKAGES))


def host_command() -> tuple[str, ...]:
    """The image's command: the host on the app folder (run adds the rest)."""
    return (f"{imagebuild.VENV}/bin/python", "-m", "modelform.runtime.functions",
            imagebuild.APP_DIR)  # fmt: skip


def app_image_spec(
    app_dir: Path,
    app: AppSpec,
    opts: Options,
    repository: str,
    *,
    base_image: str | None = None,
) -> imagebuild.ImageSpec:
    """The image of the app written at ``app_dir`` (its model files are in it).

    ``base_image`` (the service's environment's, if it names one) wins over
    the target's. A ``carry_ca`` naming no file is a one-line error."""
    app_dir = Path(app_dir).resolve()
    try:
        ca = imagebuild.host_ca_bundle(opts.carry_ca)
    except ValueError as e:
        raise ProviderError(str(e)) from None
    return imagebuild.ImageSpec(
        repository=repository,
        base_image=base_image or opts.base_image,
        requirements=tuple(app.pip),
        source_dir=app_dir,
        entry_script=app_dir / "function_app.py",
        code_digest=app_digest(app_dir),
        python=app.python,
        ca_bundle=ca,
        command=host_command(),
        extra_requirements=host_requirements(),
    )


def app_env(
    opts: Options, key: str | None, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The container's environment: the storage setting, the function key,
    and for S3 storage the AWS credentials of ``environ`` (default: this
    process's; when it has no keys, the ones botocore finds in the AWS
    config files or profile, resolved here since the container has none).
    Everything else the app needs is in its ``local.settings.json``."""
    environ = os.environ if environ is None else environ
    env: dict[str, str] = {}
    if opts.storage is not None:
        env[STORAGE_SETTING] = opts.storage.setting()
        if opts.storage.kind == "s3":
            env.update({k: environ[k] for k in AWS_ENV if environ.get(k)})
            if "AWS_ACCESS_KEY_ID" not in env:
                env.update(_aws_config_credentials())
    if key:
        env[FUNCTION_KEY_SETTING] = key
    return env


def _aws_config_credentials() -> dict[str, str]:
    """Credentials from the AWS config files / profile, frozen (none: {})."""
    try:
        import botocore.exceptions
        import botocore.session
    except ModuleNotFoundError:
        return {}
    try:
        creds = botocore.session.get_session().get_credentials()
        frozen = creds.get_frozen_credentials() if creds is not None else None
    except botocore.exceptions.BotoCoreError as e:
        raise ProviderError(f"cannot read the AWS credentials for the storage: {e}") from None
    if frozen is None:
        return {}
    out = {"AWS_ACCESS_KEY_ID": frozen.access_key, "AWS_SECRET_ACCESS_KEY": frozen.secret_key}
    if frozen.token:
        out["AWS_SESSION_TOKEN"] = frozen.token
    return out


def require_local(docker_host: str) -> None:
    """``run_as: container`` shares this machine's loopback (see :func:`run`):
    an engine elsewhere would put the host on another machine's."""
    if not is_local(docker_host):
        raise ProviderError(
            f"run_as: container needs a Docker Engine on this machine (docker_host "
            f"{docker_host} is not): the host shares this machine's 127.0.0.1"
        )


def run(
    client: Any,
    image_ref: str,
    name: str,
    port: int,
    env: dict[str, str],
    labels: dict[str, str],
    host_id: str,
    poll_seconds: float,
) -> str:
    """Start the functions host of image ``image_ref`` as container ``name``;
    its id. The caller waits for ``/admin/host/status`` as for a process.

    **Network: the machine's own (``--network host``)**, with the host on
    ``127.0.0.1:PORT``. The app's storage is usually on this machine's
    loopback (MinIO, Azurite: the target's ``storage`` says 127.0.0.1), and
    the ``AzureWebJobsStorage`` setting must mean the same in a container as
    in a process; in a bridge network 127.0.0.1 is the container itself, and
    reaching the machine instead (the bridge's gateway) would need the
    storage to listen beyond loopback. Serving on the shared loopback keeps
    the service's URL (``http://127.0.0.1:PORT``) and exposure exactly as
    ``run_as: process`` has them: nothing is published to the network, and
    no port mapping stands between the provider and the host. The price: no
    network isolation from this machine, and an engine on this machine only
    (:func:`require_local`).

    **No restart policy**: a host that crashes stays exited (kept, with its
    log), so the next refresh finds it not running and modelform reports the
    drift and starts it again at apply, as for a process; ``unless-stopped``
    would restart it behind modelform's back and hide a crash loop.

    **No Docker health check**: the provider asks the host's own
    ``/admin/host/status`` on 127.0.0.1, which also names the app it serves;
    a health check would run a second Python every interval for less.

    ``init``: docker's init is PID 1, so SIGTERM reaches the host even while
    the app is loading (Python as PID 1 would ignore it until its handler is
    set); :func:`stop` gives the host :data:`STOP_SECONDS` to finish its runs.
    """
    import docker.errors

    command = ["--host", "127.0.0.1", "--port", str(port), "--host-id", host_id,
               "--poll-seconds", str(poll_seconds)]  # fmt: skip
    try:
        container = client.containers.create(
            image=image_ref, command=command, name=name, labels=labels, environment=env,
            network_mode="host", restart_policy={"Name": "no"}, init=True, detach=True,
            stop_signal="SIGTERM",
        )  # fmt: skip
    except docker.errors.ImageNotFound:
        raise ProviderError(f"image {image_ref} is not on the Docker Engine") from None
    except docker.errors.APIError as e:
        why = short(e)
        if e.status_code == 409:
            why = f"a container named {name} already exists"
        raise ProviderError(f"docker refused to create the functions host: {why}") from None
    try:
        container.start()
    except docker.errors.APIError as e:
        container.remove(force=True)
        raise ProviderError(f"the functions host's container did not start: {short(e)}") from None
    return str(container.id)


def _get(client: Any, container_id: str) -> Any | None:
    import docker.errors

    try:
        return client.containers.get(container_id)
    except docker.errors.NotFound:
        return None
    except docker.errors.APIError as e:
        raise ProviderError(f"docker: {short(e)}") from None


def alive(client: Any, container_id: str) -> bool:
    """Whether the container exists and its host is running."""
    c = _get(client, container_id)
    state = (c.attrs.get("State") or {}) if c is not None else {}
    return bool(state.get("Running")) and not state.get("Restarting")


def exit_code(client: Any, container_id: str) -> int | None:
    """The host's exit code once its container has stopped (3: the app did
    not load; 1: the port was taken); None while it runs or when it is gone."""
    c = _get(client, container_id)
    state = (c.attrs.get("State") or {}) if c is not None else {}
    if c is None or state.get("Running") or state.get("Status") == "created":
        return None
    return int(state.get("ExitCode") or 0)


def stop(client: Any, container_id: str) -> None:
    """Stop the host (:data:`STOP_SECONDS` to finish its runs), then remove
    its container; one already gone is fine."""
    import docker.errors

    c = _get(client, container_id)
    if c is None:
        return
    try:
        c.stop(timeout=STOP_SECONDS)
    except docker.errors.NotFound:
        return
    except docker.errors.APIError:
        pass  # removed by force below
    try:
        c.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as e:
        raise ProviderError(f"docker could not remove container {c.name}: {short(e)}") from None


def logs(client: Any, container_id: str, tail: int = 200) -> str:
    """The last ``tail`` lines the host wrote (stdout and stderr); "" when
    the container is gone."""
    import docker.errors

    c = _get(client, container_id)
    if c is None:
        return ""
    try:
        raw = c.logs(tail=tail, stdout=True, stderr=True)
    except docker.errors.APIError:
        return ""
    return str(raw.decode(errors="replace")).rstrip("\n")
