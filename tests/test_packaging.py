"""Contributors' tools see the package: in the venv the scripts make, every
import name (``modelform.engine.planner``) is a file on a path the venv lists,
for tools that read files as files and never run Python's import hooks
(editors, type checkers, code browsers). pyproject maps the import names onto
the top-level folders (``"modelform.engine" = "engine"``), which only an
import hook could follow before; see docs/contributing.md."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIX = "run scripts/lint (or source scripts/lib/venv.sh; ensure_venv .venv '.[dev]')"


def path_roots() -> list[Path]:
    """The folders the venv's .pth files add to the path, read as text: the
    lines that are folders (``import`` lines are code only Python runs)."""
    roots = []
    for pth in sorted(Path(sysconfig.get_paths()["purelib"]).glob("*.pth")):
        for line in pth.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith(("#", "import ", "import\t")) and Path(line).is_dir():
                roots.append(Path(line))
    return roots


def resolve(relative: str) -> Path | None:
    """``modelform/engine/planner.py`` → the file it names, as a static tool finds it."""
    for root in path_roots():
        if (root / relative).is_file():
            return root / relative
    return None


def package_dirs() -> dict[str, Path]:
    """Import name → folder, from pyproject's package-dir."""
    setup = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {name: REPO / folder for name, folder in setup["package-dir"].items()}


@pytest.mark.parametrize(
    ("name", "file"),
    [
        ("modelform/engine/planner.py", "engine/planner.py"),
        ("modelform/providers/local.py", "providers/local.py"),
        ("modelform/plugin.py", "modelform/plugin.py"),
        ("modelform/state/__init__.py", "state/__init__.py"),
        ("modelform/engine/schema.json", "engine/schema.json"),
    ],
)
def test_an_import_name_is_a_file_on_the_venvs_path(name: str, file: str) -> None:
    found = resolve(name)
    assert found is not None, f"{name} is on no path the venv lists: {FIX}"
    assert found.resolve() == (REPO / file).resolve()


def test_every_module_of_every_package_resolves_to_its_file() -> None:
    """Nothing stale: a module added since the install is there too."""
    missing = []
    for name, folder in package_dirs().items():
        for f in sorted(folder.glob("*.py")):
            rel = name.replace(".", "/") + "/" + f.name
            found = resolve(rel)
            if found is None or found.resolve() != f.resolve():
                missing.append(rel)
    assert not missing, f"not on the venv's path as files: {missing}: {FIX}"


def test_subpackage_folders_are_linked_whole() -> None:
    """A module added to engine/, providers/, … is importable (and seen by the
    tools) at once, without reinstalling: the folder itself is linked."""
    for name, folder in package_dirs().items():
        if name == "modelform":
            continue
        init = resolve(name.replace(".", "/") + "/__init__.py")
        assert init is not None, FIX
        assert init.parent.resolve() == folder.resolve()
        assert init.parent.is_symlink(), f"{init.parent} is not a link to {folder}: {FIX}"


def test_the_package_is_typed() -> None:
    """py.typed: mypy checks the installed package (scripts/lint) and plugin
    authors' checkers read modelform.plugin's types."""
    assert resolve("modelform/py.typed") is not None, FIX


# -- a real static tool --------------------------------------------------------

PYRIGHT = "1.1.414"

PROBE = """\
from modelform.engine.planner import make_plan
from modelform.plugin import Proposal, Provider
from modelform.providers.local import LocalProvider
import modelform.state

reveal_type(make_plan)
reveal_type(LocalProvider().plan)
"""


def _pyright() -> Path:
    """pyright from the npm registry (pinned), kept in modelform's cache."""
    cache = Path(os.environ.get("MODELFORM_CACHE", Path.home() / ".cache" / "modelform"))
    home = cache / f"pyright-{PYRIGHT}"
    exe = home / "node_modules" / ".bin" / "pyright"
    if not exe.exists():
        npm = shutil.which("npm")
        if npm is None or shutil.which("node") is None:
            pytest.skip("needs node and npm to install pyright")
        home.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(home),
             f"pyright@{PYRIGHT}"],
            check=True, timeout=300,
        )  # fmt: skip
    return exe


@pytest.mark.slow
def test_pyright_resolves_every_import(tmp_path: Path) -> None:
    """pyright reads .pth files as text and never runs the import system.
    Run from the checkout's root, as an editor opened on it does: there the
    checkout's own modelform/ (the facade alone) is found first, and the rest
    must still resolve through the venv."""
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    venv_python = Path(sysconfig.get_paths()["scripts"]) / "python"
    p = subprocess.run(
        [str(_pyright()), "--outputjson", "--pythonpath", str(venv_python), str(probe)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    report = json.loads(p.stdout)
    diags = report["generalDiagnostics"]
    errors = [d["message"] for d in diags if d["severity"] == "error"]
    assert not errors, errors
    types = [d["message"] for d in diags if d["severity"] == "information"]
    assert "-> Plan" in types[0], types
    assert "-> Proposal" in types[1], types
