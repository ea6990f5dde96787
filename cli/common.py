"""What every command shares: options, the view, and error handling.

User errors (project file, state, lock, plugin) print one line each and
exit 1; Ctrl-C exits 130. Only a bug in modelform itself shows a
traceback, and then with a request to report it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import typer

from modelform.cli.workspace import Options, Workspace
from modelform.engine.diagnostics import DiagnosticError
from modelform.engine.exitcodes import Exit
from modelform.engine.provider import ProviderError
from modelform.engine.registry import PluginError
from modelform.engine.views import HumanView, JsonView, View, in_ci


class Globals:
    """Options given before the command (``modelform -f FILE plan``).

    ``-chdir DIR`` is not kept here: it changes the process's folder at once
    (cli.app), so every relative path — project file, state, var files, plan
    files — is from DIR, as with Terraform.
    """

    file: Path | None = None
    state: Path | None = None
    #: False with a command's ``-input=false``: :func:`confirm` never asks.
    input: bool = True


def make_view(json_out: bool, no_color: bool = False) -> View:
    return JsonView() if json_out else HumanView(no_color=no_color)


def workspace(
    view: View,
    var: list[str] | None = None,
    var_file: list[Path] | None = None,
    lock_timeout: float = 0.0,
    parallelism: int = 10,
    lock: bool = True,
) -> Workspace:
    base = Path.cwd()
    file = base / Globals.file if Globals.file else base
    opts = Options(
        file=file,
        state=Globals.state,
        var=list(var or []),
        var_file=list(var_file or []),
        lock_timeout=lock_timeout,
        parallelism=parallelism,
        lock=lock,
    )
    ws = Workspace(
        opts,
        log=lambda addr, line: view.event(addr, "log", line),
        note=lambda line: view.message(f"Warning: {line}"),
    )
    ws.redactor = view.redactor  # secrets the project declares are masked in its output
    return ws


def guarded(view: View, body: Callable[[], int | None]) -> None:
    """Run a command's body; user errors become one line and an exit code."""
    from modelform.state import StateError  # the state layer's user errors

    try:
        code = body()
    except DiagnosticError as e:
        view.diagnostics(e.diagnostics)
        code = Exit.ERROR
    except (PluginError, StateError) as e:
        view.error(_with_notes(str(e), e))
        code = Exit.ERROR
    except ProviderError as e:  # a provider that cannot even look (daemon down, …)
        view.error(_with_notes(str(e), e), e.log)
        code = Exit.ERROR
    except OSError as e:  # a file or folder modelform itself cannot use
        where = f"{e.filename}: " if e.filename else ""
        view.error(_with_notes(f"{where}{e.strerror or e}", e))
        code = Exit.ERROR
    except KeyboardInterrupt as e:
        view.error(_with_notes("interrupted", e))
        code = Exit.INTERRUPTED
    raise typer.Exit(int(code or 0))


def _with_notes(message: str, e: BaseException) -> str:
    """``message`` and the error's notes (a state lock left held, …), on one line."""
    return "; ".join([message, *getattr(e, "__notes__", ())])


def no_prompt_reason() -> str | None:
    """Why nothing may be asked (``-input=false``, CI set, no terminal), or None."""
    if not Globals.input:
        return "-input=false"
    if in_ci():
        return "CI is set"
    if not sys.stdin or not sys.stdin.isatty():
        return "no terminal"
    return None


def confirm(question: str) -> bool:
    """Ask on the terminal; False without asking when nothing may be asked."""
    if no_prompt_reason() is not None:
        return False
    answer = typer.prompt(
        f"{question}\n  Only 'yes' will be accepted to approve.\n\n  Enter a value"
    )
    return answer.strip() == "yes"
