"""``--format`` and ``--report``: where a report goes, and the view beside it.

``plan`` and ``drift`` take ``--format json|junit|markdown|github|human``
and ``--report FILE``. Without ``--report`` the format replaces the human
view on stdout (the command's other messages go to stderr, so stdout is the
report alone); with it, the report goes to FILE and the terminal gets the
human view. ``--format json`` is ``-json``. ``validate`` and ``fmt -check``
take ``--format github``: their diagnostics become annotations.

A value not among the formats is a usage error (one line, a did-you-mean,
exit 1 — cli.usage), raised here because click's own choice check offers no
suggestion.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from modelform.cli.usage import did_you_mean
from modelform.engine import reports
from modelform.engine.diagnostics import Diagnostic
from modelform.engine.plan import Plan
from modelform.engine.reports import Format, Meta, Subject
from modelform.engine.views import HumanView, JsonView, View

REPORT_FORMATS = [f.value for f in Format]
CHECK_FORMATS = [Format.HUMAN.value, Format.GITHUB.value]


def _checked(allowed: list[str]) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in allowed:
            raise typer.BadParameter(
                f"{value!r}{did_you_mean(value, allowed)}; one of {', '.join(allowed)}"
            )
        return value

    return check


ReportFormat = Annotated[
    str,
    typer.Option(
        "--format",
        "-format",
        callback=_checked(REPORT_FORMATS),
        help="json (same as -json), junit, markdown (a table for a pull request), "
        "github (annotations at the resources' lines) or human.",
    ),
]
CheckFormat = Annotated[
    str,
    typer.Option(
        "--format",
        "-format",
        callback=_checked(CHECK_FORMATS),
        help="github: each problem as a GitHub Actions annotation at its line.",
    ),
]
ReportFile = Annotated[
    Path | None,
    typer.Option(
        "--report",
        "-report",
        help="Write the --format report to this file; the terminal gets the human view.",
    ),
]


def resolve(fmt: str, json_out: bool) -> Format:
    """``-json`` is ``--format json``; with another format it is a usage error."""
    chosen = Format(fmt)
    if json_out and chosen not in (Format.HUMAN, Format.JSON):
        raise typer.BadParameter(
            f"-json and --format {chosen.value} ask for two formats: give one",
            param_hint="'--format'",
        )
    return Format.JSON if json_out else chosen


def annotation_root() -> Path:
    """Where annotation paths start: the checkout on GitHub, else here."""
    return Path(os.environ.get("GITHUB_WORKSPACE") or Path.cwd())


class GithubView(HumanView):
    """The human view on stderr, with errors and diagnostics as workflow
    commands on stdout, so GitHub annotates the file's lines."""

    def __init__(self, title: str, no_color: bool = False) -> None:
        super().__init__(out=sys.stderr, no_color=no_color)
        self.title = title
        self.stdout = sys.stdout

    def _annotate(self, text: str) -> None:
        self.stdout.write(self.redactor.text(text))
        self.stdout.flush()

    def diagnostics(self, diags: list[Diagnostic]) -> None:
        self._annotate(reports.diagnostics_github(diags, self.title, annotation_root()))

    def error(self, message: str, detail: str = "") -> None:
        self._annotate(reports.annotation("error", message, title=self.title) + "\n")
        if detail:
            self._write(detail + "\n", err=True)


@dataclass
class Report:
    """A report the command writes once it has its plan, and the view
    for everything else."""

    fmt: Format
    path: Path | None
    subject: Subject
    no_color: bool = False
    started: float = field(default_factory=time.monotonic)

    def view(self) -> View:
        """``-json``'s view for json on stdout; the human view on stderr when
        the report has stdout (so ``> FILE`` holds the report alone), with
        errors as annotations for github; else the human view as always."""
        if self.path is not None or self.fmt is Format.HUMAN:
            return HumanView(no_color=self.no_color)
        if self.fmt is Format.JSON:
            return JsonView()
        if self.fmt is Format.GITHUB:
            return GithubView(f"modelform {self.subject.value}", self.no_color)
        return HumanView(out=sys.stderr, no_color=self.no_color)

    def write(
        self,
        plan: Plan | None,
        view: View,
        locate: reports.Locate = reports.no_position,
        project_file: Path | None = None,
    ) -> None:
        """The report of ``plan`` to its file or stdout (nothing more for the
        human and json views: the view printed them). ``locate`` finds each
        resource's line in ``project_file``."""
        if self.fmt is Format.HUMAN or (self.fmt is Format.JSON and self.path is None):
            return
        meta = Meta(hostname=socket.gethostname() or "localhost",
                    seconds=time.monotonic() - self.started, root=annotation_root(),
                    file=str(project_file) if project_file else None)  # fmt: skip
        text = reports.render(plan, self.fmt, self.subject, view.redactor, locate, meta)
        text = view.redactor.text(text)
        if self.path is None:
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.path)
