"""Smoke test through the real registry: push an image built here, pull it back."""

from __future__ import annotations

import json
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.registry, pytest.mark.docker]


def _stream_errors(lines: Any) -> list[str]:
    return [line["error"] for line in lines if isinstance(line, dict) and "error" in line]


def test_push_and_pull_back(
    docker_client: Any, base_image: str, registry_address: str, tmp_path: Path
) -> None:
    marker = uuid.uuid4().hex
    (tmp_path / "Dockerfile").write_text(f"FROM {base_image}\nRUN echo {marker} > /marker\n")
    repository = f"{registry_address}/modelform-smoke/marker"
    tag = marker[:12]
    image, _ = docker_client.images.build(path=str(tmp_path), tag=f"{repository}:{tag}", rm=True)
    try:
        errors = _stream_errors(
            docker_client.images.push(repository, tag=tag, stream=True, decode=True)
        )
        assert errors == []

        url = f"http://{registry_address}/v2/modelform-smoke/marker/tags/list"
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert tag in json.load(resp)["tags"]

        docker_client.images.remove(image.id, force=True)
        pulled = docker_client.images.pull(repository, tag=tag)
        assert pulled.id == image.id  # same config digest: the very image pushed
        out = docker_client.containers.run(f"{repository}:{tag}", ["cat", "/marker"], remove=True)
        assert out.decode().strip() == marker
    finally:
        try:
            docker_client.images.remove(f"{repository}:{tag}", force=True)
        except Exception:  # noqa: BLE001 - already gone if the test failed before pulling
            pass
