"""The Docker Engine, for every target that builds or runs images (container,
kubernetes, functionapp, iotedge): where it is, one client per thread, its
errors in one line, and how a container is taken away.

It imports no provider; the container and kubernetes providers both use it.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from modelform.plugin import Diagnostic, DiagnosticError

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
MISSING_SDK = "target kind container needs the Docker SDK: pip install 'modelform[container]'"

_local = threading.local()


def default_host() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET


def client(host: str, kind: str = "container") -> Any:
    """A Docker client for ``host`` (one per thread), or a one-line error.

    The Docker SDK is the ``[container]`` extra: without it this is the first
    place that needs it, so a missing SDK is one line naming the extra (the
    other ``import docker…`` lines run only once a client exists).
    """
    try:
        import docker
    except ModuleNotFoundError as e:
        if e.name != "docker":
            raise
        raise DiagnosticError(
            Diagnostic(MISSING_SDK.replace("kind container", f"kind {kind}"))
        ) from None

    cache = _local.__dict__.setdefault("clients", {})
    if host not in cache:
        try:
            if host == os.environ.get("DOCKER_HOST"):  # with DOCKER_TLS_VERIFY, DOCKER_CERT_PATH
                c = docker.from_env(timeout=600)
            else:
                c = docker.DockerClient(base_url=host, timeout=600)
            c.ping()
        except Exception as e:  # noqa: BLE001 - any failure means "cannot reach it"
            raise DiagnosticError(
                Diagnostic(
                    f"cannot reach the Docker Engine at {host}: {short(e)}",
                    hint="start dockerd, or set the target's docker_host / DOCKER_HOST",
                )
            ) from None
        cache[host] = c
    return cache[host]


def errors() -> tuple[type[Exception], ...]:
    """What the Docker SDK raises when the engine refuses or goes away (nothing
    without the SDK: then :func:`client` has already said what to install)."""
    try:
        import docker.errors
        import requests
    except ModuleNotFoundError:
        return ()
    return (docker.errors.DockerException, requests.exceptions.RequestException)


def short(e: Exception) -> str:
    text = str(getattr(e, "explanation", None) or e)
    return text.splitlines()[0][:200] if text else type(e).__name__


def is_local(host: str) -> bool:
    """Whether ports the engine publishes on 127.0.0.1 are this machine's."""
    return host.startswith(("unix://", "npipe://")) or any(
        h in host for h in ("//127.0.0.1", "//localhost", "//[::1]")
    )


def remove(container: Any, grace: int = 10) -> None:
    """Stop (``grace`` seconds for a clean exit), then remove; 0 kills at once."""
    import docker.errors

    if grace > 0:
        try:
            container.stop(timeout=grace)
        except docker.errors.APIError:
            pass
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
