"""Fixtures for the runtime tests: real server processes (see runtime_harness)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from runtime_harness import ServerFactory


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[ServerFactory]:
    factory = ServerFactory(tmp_path)
    yield factory.start
    factory.stop_all()
