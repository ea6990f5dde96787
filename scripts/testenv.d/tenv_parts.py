"""The parts testenv knows, in start order."""

from __future__ import annotations

from typing import Any

from tenv_common import Layout
from tenv_docker import DockerPart

PART_NAMES = ["docker"]


def make_parts(layout: Layout, versions: dict[str, str]) -> dict[str, Any]:
    return {"docker": DockerPart(layout, versions)}
