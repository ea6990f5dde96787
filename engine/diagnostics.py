"""User-facing errors that point at a place in the project file.

A :class:`Diagnostic` is what the user sees instead of a traceback: one
line naming ``file:line:col``, what is wrong and, where we know it, what
to do. Engine code raises :class:`DiagnosticError`; only the CLI prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Pos:
    """A 1-based line and column in a file."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Diagnostic:
    message: str
    pos: Pos | None = None
    hint: str | None = None
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        where = f"{self.pos}: " if self.pos else ""
        tail = f" ({self.hint})" if self.hint else ""
        return f"{where}{self.severity.value}: {self.message}{tail}"

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"severity": self.severity.value, "message": self.message}
        if self.pos:
            out.update(file=self.pos.file, line=self.pos.line, col=self.pos.col)
        if self.hint:
            out["hint"] = self.hint
        return out


@dataclass
class DiagnosticError(Exception):
    """One or more user errors; the CLI prints each on one line and exits 1."""

    diagnostics: list[Diagnostic] = field(default_factory=list)

    def __init__(self, *diagnostics: Diagnostic) -> None:
        super().__init__("; ".join(str(d) for d in diagnostics))
        self.diagnostics = list(diagnostics)

    @classmethod
    def at(cls, message: str, pos: Pos | None = None, hint: str | None = None) -> DiagnosticError:
        return cls(Diagnostic(message, pos, hint))
