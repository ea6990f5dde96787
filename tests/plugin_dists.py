"""Throwaway provider plugins, installed for real: a folder holding
``<name>-<version>.dist-info/`` (METADATA, entry_points.txt) and the plugin's
module is a distribution to :mod:`importlib.metadata` once the folder is on
``sys.path`` (in this process) or ``PYTHONPATH`` (in a ``modelform`` command).

No mock of importlib: the registry reads these through the same entry-point
machinery as a ``pip install``-ed plugin.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

#: A provider that works: plan, apply and delete, nothing else.
GOOD = """
from modelform.plugin import PROTOCOL_VERSION, Applied, Proposal, Provider


class {cls}(Provider):
    kind = "{kind}"
    protocol_version = PROTOCOL_VERSION
    description = "A test plugin ({kind})."

    def plan(self, resource, prior, ctx):
        return Proposal({{"port": resource.config.get("port")}})

    def apply(self, request, ctx):
        return Applied(dict(request.planned))

    def delete(self, address, prior, ctx):
        return None
"""


def provider_source(kind: str, cls: str = "Plugin", body: str = "") -> str:
    """A working provider class; ``body`` (indented as a class body) adds to
    or overrides its members."""
    src = GOOD.format(kind=kind, cls=cls)
    return src + textwrap.indent(textwrap.dedent(body), "    ") if body else src


def make_plugin(
    root: Path,
    dist: str,
    kind: str,
    source: str | None,
    *,
    version: str = "1.0.0",
    module: str | None = None,
    cls: str = "Plugin",
) -> str:
    """Install distribution ``dist`` (``version``) into folder ``root``: a module
    with ``source`` (None: metadata only) registering ``kind`` → ``module:cls``.
    Returns the module name."""
    module = module or dist.replace("-", "_")
    root.mkdir(parents=True, exist_ok=True)
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[modelform.providers]\n{kind} = {module}:{cls}\n")
    if source is not None:
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    return module
