"""What the container e2e tests share: the Docker host for the CLI, and the
containers that carry a project's labels."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import Project


@pytest.fixture
def docker_env(docker_info: dict[str, Any], base_image: str) -> Iterator[str]:
    """The CLI started by the test talks to the test environment's dockerd."""
    old = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = str(docker_info["docker_host"])
    yield str(docker_info["docker_host"])
    if old is None:
        os.environ.pop("DOCKER_HOST", None)
    else:
        os.environ["DOCKER_HOST"] = old


def labelled(client: Any, root: Path) -> list[Any]:
    """Every container (running or not) made for the project in ``root``."""
    return list(
        client.containers.list(
            all=True, filters={"label": f"modelform.project_dir={root.resolve()}"}
        )
    )


def state_container_ids(p: Project) -> set[str]:
    if not p.state_file.exists():
        return set()
    return {
        rec["attributes"]["container_id"]
        for addr, rec in p.resources().items()
        if addr.startswith("service.") and rec["attributes"].get("container_id")
    }


def remove_all(client: Any, root: Path) -> None:
    """Last-resort cleanup of containers a failed test left behind."""
    for c in labelled(client, root):
        c.remove(force=True)
