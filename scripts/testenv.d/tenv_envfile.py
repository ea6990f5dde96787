"""The env files (env.json for fixtures, env.sh for shells) describing the running parts."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from tenv_common import Layout, write_private


def env_paths(layout: Layout) -> tuple[Path, Path]:
    return layout.root / "env.json", layout.root / "env.sh"


def write_env(layout: Layout, parts: dict[str, dict[str, Any]]) -> tuple[Path, Path]:
    """Write env.json ({"cache": ..., "parts": {name: {...}}}) and env.sh (exports)."""
    json_path, sh_path = env_paths(layout)
    document = {"cache": str(layout.root), "parts": parts}
    write_private(json_path, json.dumps(document, indent=2, sort_keys=True) + "\n")

    exports: dict[str, str] = {}
    docker = parts.get("docker")
    if docker:
        exports["DOCKER_HOST"] = docker["docker_host"]
        exports["MODELFORM_BASE_IMAGE"] = docker["base_image"]
    k8s = parts.get("k8s")
    if k8s:
        exports["KUBECONFIG"] = k8s["kubeconfig"]
        exports["MODELFORM_KUBECTL"] = k8s["kubectl"]
    s3 = parts.get("minio")
    if s3:
        exports["MODELFORM_S3_ENDPOINT"] = s3["endpoint"]
        exports["MODELFORM_S3_ACCESS_KEY"] = s3["access_key"]
        exports["MODELFORM_S3_SECRET_KEY"] = s3["secret_key"]
        exports["MODELFORM_S3_REGION"] = s3["region"]
        # The standard names, so boto3 and the aws tools find MinIO by themselves.
        exports["AWS_ENDPOINT_URL_S3"] = s3["endpoint"]
        exports["AWS_ACCESS_KEY_ID"] = s3["access_key"]
        exports["AWS_SECRET_ACCESS_KEY"] = s3["secret_key"]
        exports["AWS_DEFAULT_REGION"] = s3["region"]
    azurite = parts.get("azurite")
    if azurite:
        exports["MODELFORM_AZURITE_CONNECTION_STRING"] = azurite["connection_string"]
        # The standard name, read by the az CLI and the Azure SDK samples.
        exports["AZURE_STORAGE_CONNECTION_STRING"] = azurite["connection_string"]
    registry = parts.get("registry")
    if registry:
        exports["MODELFORM_REGISTRY"] = registry["address"]
    lines = ["# Written by scripts/testenv up: `. this-file` to talk to the test parts."]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in exports.items()]
    write_private(sh_path, "\n".join(lines) + "\n")
    return json_path, sh_path
