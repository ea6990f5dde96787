"""Fixtures for the edge hub tests: a hub on 127.0.0.1:8883 and module processes (edge_harness)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from edge_harness import EdgeRun, port_lock


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[EdgeRun]:
    run = EdgeRun(tmp_path)
    with port_lock():
        try:
            yield run
        finally:
            run.stop_all()
