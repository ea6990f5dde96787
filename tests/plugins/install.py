"""Install a test plugin from its folder (pyproject.toml + package) into a
folder that goes on PYTHONPATH, as pip would lay it out: the package and a
``<name>-<version>.dist-info`` with METADATA and entry_points.txt, so
``importlib.metadata`` finds its entry points. No build backend, no network:
the test suite runs where only the package registries are reachable and the
venv has no wheel builder."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

HERE = Path(__file__).parent


def install(name: str, into: Path) -> Path:
    src = HERE / name
    meta = tomllib.loads((src / "pyproject.toml").read_text())
    project = meta["project"]
    dist = project["name"].replace("-", "_")
    for package in meta["tool"]["setuptools"]["packages"]:
        shutil.copytree(src / package, into / package, dirs_exist_ok=True)
    info = into / f"{dist}-{project['version']}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
        f"Summary: {project.get('description', '')}\n"
    )
    lines = []
    for group, eps in project.get("entry-points", {}).items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return into
