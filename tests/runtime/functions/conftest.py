"""Fixtures for the functions host tests: real host processes (see functions_harness)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from functions_harness import HostFactory


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[HostFactory]:
    factory = HostFactory(tmp_path)
    yield factory
    factory.stop_all()
