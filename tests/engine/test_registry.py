"""The provider registry against real entry points: throwaway plugin
distributions in a temp folder on ``sys.path`` (tests/plugin_dists.py), read
by importlib.metadata as any installed plugin is."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from importlib.metadata import EntryPoint, distributions
from pathlib import Path
from typing import Any

import pytest

import modelform
from modelform.engine.diagnostics import Diagnostic, DiagnosticError
from modelform.engine.provider import PROTOCOL_VERSION, Cancelled, Provider, ProviderError
from modelform.engine.registry import (
    GROUP,
    GuardedProvider,
    PluginError,
    Registry,
    _entry_points,
    implements,
)
from tests.plugin_dists import make_plugin, provider_source

_ids = itertools.count()


class Plugins:
    """Plugin distributions in one folder on sys.path, each module named anew
    (modules stay in sys.modules across tests)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: list[str] = []

    def add(self, dist: str, kind: str, source: str, **kw: Any) -> str:
        module = f"mf_test_plugin_{next(_ids)}"
        self.modules.append(module)
        make_plugin(self.root / kw.pop("folder", "site"), dist, kind, source, module=module, **kw)
        return module

    def entry_points(self) -> list[EntryPoint]:
        """The group's entry points of every distribution here, as installed."""
        folders = sorted(str(p) for p in self.root.iterdir())
        return [
            ep for d in distributions(path=folders) for ep in d.entry_points if ep.group == GROUP
        ]

    def registry(self) -> Registry:
        return Registry(entry_points=self.entry_points())


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Plugins]:
    p = Plugins(tmp_path)
    for folder in ("site", "site2"):
        (tmp_path / folder).mkdir()
        monkeypatch.syspath_prepend(str(tmp_path / folder))
    _entry_points.cache_clear()
    yield p
    _entry_points.cache_clear()
    for m in p.modules:
        sys.modules.pop(m, None)


def _error(registry: Registry, kind: str) -> str:
    with pytest.raises(PluginError) as e:
        registry.get(kind)
    message = str(e.value)
    assert "\n" not in message
    return message


# -- loading ----------------------------------------------------------------


def test_a_working_plugin_loads_guarded_with_its_attributes(plugins: Plugins) -> None:
    plugins.add("mf-good", "good", provider_source("good", body="read_is_cheap = True\n"))
    reg = plugins.registry()
    assert reg.kinds() == ["good"] and reg.known("good")
    p = reg.get("good")
    assert isinstance(p, GuardedProvider) and isinstance(p.wrapped, Provider)
    assert (p.kind, p.description, p.read_is_cheap, p.target_part) == (
        "good", "A test plugin (good).", True, None,
    )  # fmt: skip
    assert p.protocol_version == PROTOCOL_VERSION
    assert reg.get("good") is p  # one instance per kind
    assert implements(p, "plan") and not implements(p, "package")


def test_two_packages_registering_one_kind_name_both(plugins: Plugins) -> None:
    a = plugins.add("mf-edge", "edge", provider_source("edge"), version="1.2.0")
    b = plugins.add("mf-edge-fork", "edge", provider_source("edge"), version="0.3.0")
    reg = plugins.registry()
    assert reg.kinds() == ["edge"]
    message = _error(reg, "edge")
    assert "registered by more than one package" in message
    assert f"mf-edge 1.2.0 ({a}:Plugin)" in message
    assert f"mf-edge-fork 0.3.0 ({b}:Plugin)" in message
    rows = reg.listing()
    assert [(r.package, r.error) for r in rows] == [
        ("mf-edge", message), ("mf-edge-fork", message),
    ]  # fmt: skip


def test_a_second_installed_package_taking_a_builtin_kind_is_refused(plugins: Plugins) -> None:
    """Through the installed entry points (the cache read again), not given ones."""
    plugins.add("mf-local-clone", "local", provider_source("local"), version="9.9")
    message = _error(Registry(), "local")
    assert f"modelform {modelform.__version__} (modelform.providers.local:LocalProvider)" in message
    assert "mf-local-clone 9.9" in message


def test_the_same_package_seen_twice_is_one_registration(plugins: Plugins) -> None:
    """An editable install's metadata can be found twice (site-packages and an
    egg-info in the source folder): the same package and entry point is one."""
    module = plugins.add("mf-twice", "twice", provider_source("twice"))
    make_plugin(plugins.root / "site2", "mf-twice", "twice", None, module=module)
    reg = plugins.registry()
    assert len(plugins.entry_points()) == 2
    assert reg.get("twice").kind == "twice"


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("import not_a_module_anywhere\n",
         "failed to import: ModuleNotFoundError: No module named 'not_a_module_anywhere'"),
        ("raise RuntimeError('half\\nwritten')\n", "failed to import: RuntimeError: half written"),
        (provider_source("k", body="def __init__(self):\n    raise OSError('no daemon here')\n"),
         "failed to start: OSError: no daemon here"),
        ("class Plugin:\n    kind = 'k'\n", "is not a subclass of modelform.plugin.Provider"),
        ("Plugin = 42\n", "is not a subclass of modelform.plugin.Provider"),
        (provider_source("other"), "declares kind 'other', not 'k'"),
        (provider_source("k", body="protocol_version = 1\n"),
         f"is written for provider protocol 1; this modelform speaks protocol {PROTOCOL_VERSION} "
         "(install a version of the plugin made for it)"),
        ("from modelform.plugin import Provider\n\n"
         "class Plugin(Provider):\n    kind = 'k'\n    protocol_version = 2\n\n"
         "    def plan(self, resource, prior, ctx):\n        return None\n",
         "does not implement apply(), delete()"),
        ("from modelform.plugin import Provider\n\n"
         "class Plugin(Provider):\n    kind = 'k'\n",
         "declares no protocol_version; this modelform speaks protocol 2 (a plugin written "
         "before protocol versions: install a version of the plugin made for it)"),
    ],
    ids=["import-error", "import-raises", "constructor", "not-a-class", "not-a-type",
         "other-kind", "protocol-1", "missing-methods", "protocol-undeclared"],
)  # fmt: skip
def test_a_broken_plugin_is_one_line_naming_kind_package_and_problem(
    plugins: Plugins, source: str, problem: str
) -> None:
    module = plugins.add("mf-broken", "k", source, version="2.0.1")
    reg = plugins.registry()
    message = _error(reg, "k")
    assert message == f"provider plugin 'k' (mf-broken 2.0.1, {module}:Plugin) {problem}"
    # Asked again (the catalog, then the planner): the same line, no second import.
    assert _error(reg, "k") == message
    [row] = reg.listing()
    assert (row.kind, row.package, row.version, row.loads, row.error) == (
        "k", "mf-broken", "2.0.1", False, message,
    )  # fmt: skip


def test_an_unknown_kind_names_the_known_ones(plugins: Plugins) -> None:
    plugins.add("mf-good", "good", provider_source("good"))
    assert _error(plugins.registry(), "nope") == "no provider for kind 'nope' (known: good)"


# -- calls ------------------------------------------------------------------

RAISING = """
def plan(self, resource, prior, ctx):
    raise self.error

def delete(self, address, prior, ctx):
    raise self.error
"""


def _raising(plugins: Plugins) -> Any:
    plugins.add("mf-raise", "raise", provider_source("raise", body=RAISING), version="0.0.7")
    return plugins.registry().get("raise")


def test_an_unexpected_exception_in_a_method_names_the_plugin(plugins: Plugins) -> None:
    p = _raising(plugins)
    cause = ValueError("bad value\non two lines")
    p.wrapped.error = cause
    with pytest.raises(PluginError) as e:
        p.plan(None, None, None)
    assert str(e.value) == (
        "provider raise (mf-raise 0.0.7) failed in plan(): ValueError: bad value on two lines"
    )
    assert e.value.__cause__ is cause
    p.wrapped.error = KeyError("x")
    with pytest.raises(PluginError, match=r"failed in delete\(\): KeyError: 'x'$"):
        p.delete("service.a", {}, None)


@pytest.mark.parametrize(
    "error",
    [
        ProviderError("daemon down", log="..."),
        Cancelled("service.a: interrupted"),
        DiagnosticError(Diagnostic("port: must be an integer")),
        KeyboardInterrupt(),
        SystemExit(3),
    ],
    ids=lambda e: type(e).__name__,
)
def test_the_protocols_own_errors_and_interrupts_pass_unchanged(
    plugins: Plugins, error: BaseException
) -> None:
    p = _raising(plugins)
    p.wrapped.error = error
    with pytest.raises(type(error)) as e:
        p.plan(None, None, None)
    assert e.value is error


def test_given_providers_are_handed_out_as_they_are(plugins: Plugins) -> None:
    class Given(Provider):
        kind = "given"

    given = Given()
    reg = Registry(extra={"given": given}, entry_points=[])
    assert reg.get("given") is given
    assert not implements(given, "plan")
    [row] = reg.listing()
    assert row.kind == "given" and row.loads and row.package == ""


# -- listing ------------------------------------------------------------------


def test_listing_shows_the_builtins_from_modelform() -> None:
    rows = {r.kind: r for r in Registry().listing()}
    for kind in ("core", "local", "container"):
        row = rows[kind]
        assert (row.package, row.version) == ("modelform", modelform.__version__), row
        assert row.provider.startswith(f"modelform.providers.{kind}:"), row
        assert row.loads, row.error
        assert row.protocol_version == PROTOCOL_VERSION and row.description
