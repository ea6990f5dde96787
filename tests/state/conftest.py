"""Fixtures of the state tests: one :class:`BackendSpec` per backend for the conformance suite.

A spec is a backend's registered name and options. It is picklable, so
worker processes (``workers.py``) build their own backend from it through
the real entry-point lookup. Each test gets a fresh, empty state location.

To run the suite against another backend, add a factory to FACTORIES
(``request`` gives access to fixtures such as a MinIO server) and, if it
needs a real part, a mark in MARKS, e.g. ``"s3": pytest.mark.s3``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from modelform.state import Backend, load_backend


@dataclass(frozen=True)
class BackendSpec:
    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def make(self) -> Backend:
        return load_backend(self.name, **self.options)


def _local(request: pytest.FixtureRequest, tmp_path: Path) -> BackendSpec:
    return BackendSpec("local", {"path": str(tmp_path / "project" / ".modelform" / "state.json")})


def _s3(request: pytest.FixtureRequest, tmp_path: Path) -> BackendSpec:
    """A fresh bucket on the real MinIO; credentials in the environment, as users give them
    (worker processes inherit it)."""
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", endpoint.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", endpoint.secret_key)
    options = {"bucket": bucket, "key": "team/ml/state.json", "endpoint": endpoint.url,
               "region": endpoint.region}  # fmt: skip
    return BackendSpec("s3", options)


FACTORIES: dict[str, Callable[[pytest.FixtureRequest, Path], BackendSpec]] = {
    "local": _local,
    "s3": _s3,
}
MARKS: dict[str, pytest.MarkDecorator] = {"s3": pytest.mark.s3}


@pytest.fixture(
    params=[pytest.param(n, marks=[MARKS[n]] if n in MARKS else []) for n in sorted(FACTORIES)]
)
def backend_spec(request: pytest.FixtureRequest, tmp_path: Path) -> BackendSpec:
    return FACTORIES[request.param](request, tmp_path)
