"""``modelform providers``: the installed target kinds and where they come from.

Every kind registered in the ``modelform.providers`` entry-point group is
loaded (imported, checked, constructed) to learn whether it works; a broken
plugin is listed with its one-line error, and the command then exits 1, so
``modelform providers`` is also the check a plugin author or a CI job runs
after installing one. No project file is needed.
"""

from __future__ import annotations

from typing import Annotated

import typer

from modelform.cli.common import guarded, make_view
from modelform.engine.exitcodes import Exit
from modelform.engine.registry import ProviderInfo, Registry

Json = Annotated[bool, typer.Option("--json", "-json", help="Machine-readable output.")]


def table(rows: list[ProviderInfo]) -> str:
    """Kind, package and version, protocol, description; BROKEN for a plugin
    that does not load (its error is the command's error line)."""
    head = ("KIND", "PACKAGE", "VERSION", "PROTOCOL", "DESCRIPTION")
    cells = [
        (r.kind, r.package or "-", r.version or "-",
         str(r.protocol_version) if r.loads else "-",
         r.description if r.loads else "BROKEN")
        for r in rows
    ]  # fmt: skip
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(4)]
    lines: list[str] = []
    for c in [head, *cells]:
        lines.append(("  ".join(c[j].ljust(widths[j]) for j in range(4)) + "  " + c[4]).rstrip())
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command()
    def providers(json_out: Json = False) -> None:
        """List the installed target kinds, their packages and versions; exit 1 if one is broken."""
        view = make_view(json_out)

        def body() -> int:
            rows = Registry().listing()
            view.data([r.to_json() for r in rows], table(rows))
            broken = [r for r in rows if not r.loads]
            for r in {r.error: r for r in broken}.values():
                view.error(str(r.error))
            return Exit.ERROR if broken else Exit.OK

        guarded(view, body)
