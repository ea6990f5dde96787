"""The parts testenv knows, in start order."""

from __future__ import annotations

from typing import Any

from tenv_azurite import AzuritePart
from tenv_common import Layout
from tenv_docker import DockerPart
from tenv_k8s import K8sPart
from tenv_kubelet import KubeletPart
from tenv_storage import MinioPart, RegistryPart

PART_NAMES = ["docker", "minio", "azurite", "registry", "k8s", "kubelet"]


def make_parts(layout: Layout, versions: dict[str, str]) -> dict[str, Any]:
    return {
        "docker": DockerPart(layout, versions),
        "minio": MinioPart(layout, versions),
        "azurite": AzuritePart(layout, versions),
        "registry": RegistryPart(layout, versions),
        "k8s": K8sPart(layout, versions),
        "kubelet": KubeletPart(layout, versions),
    }
