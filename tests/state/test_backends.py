"""Finding backends through the ``modelform.backends`` entry points, and failing early.

The broken plugins are real installed distributions (a ``.dist-info``
folder on ``sys.path``), found by the same importlib.metadata lookup.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from modelform.state import (
    BackendLoadError,
    LocalBackend,
    available_backends,
    backend_class,
    load_backend,
)

PLUGIN = """
from modelform.state import LocalBackend
from modelform.state.backend import Backend


class NotABackend:
    pass


class Half(Backend):
    def read(self):
        return None


class Grumpy(LocalBackend):
    def __init__(self, path: str) -> None:
        raise RuntimeError("no bucket named " + path)
"""

ENTRY_POINTS = """[modelform.backends]
broken = mf_missing_module:Thing
notabackend = mf_test_plugin:NotABackend
half = mf_test_plugin:Half
grumpy = mf_test_plugin:Grumpy
local = mf_test_plugin:Grumpy
"""


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mf_test_plugin.py").write_text(PLUGIN)
    info = tmp_path / "mf_test_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mf-test-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path))


def test_the_built_in_local_backend_is_registered(tmp_path: Path) -> None:
    assert "local" in available_backends()
    assert backend_class("local") is LocalBackend
    backend = load_backend("local", path=tmp_path / "state.json")
    assert isinstance(backend, LocalBackend) and backend.path == tmp_path / "state.json"


def test_an_unknown_backend_names_the_installed_ones() -> None:
    with pytest.raises(BackendLoadError, match=r"unknown state backend 's4' \(installed: .*local"):
        load_backend("s4")


def test_options_a_backend_does_not_take_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BackendLoadError, match="'local' does not take these options: .*bucket"):
        load_backend("local", path=tmp_path, bucket="b")


@pytest.mark.usefixtures("plugins")
@pytest.mark.parametrize(
    "name,fragment",
    [
        ("broken", "'broken' (mf_missing_module:Thing) failed to import: ModuleNotFoundError"),
        ("notabackend", "(mf_test_plugin:NotABackend) is not a subclass of modelform.state."),
        ("half", "(mf_test_plugin:Half) does not implement: lock_info, try_lock, unlock, write"),
        ("grumpy", "'grumpy' could not start: RuntimeError: no bucket named x"),
        ("local", "'local' is registered more than once: "),
    ],
)
def test_a_broken_plugin_fails_early_naming_itself_and_the_problem(
    name: str, fragment: str
) -> None:
    with pytest.raises(BackendLoadError) as caught:
        load_backend(name, path="x")
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)
