"""The ``modelform`` command: typer app and the commands' options.

Terraform's single-dash spellings (``-var``, ``-out``, ``-auto-approve``,
``-detailed-exitcode``) are accepted beside the double-dash ones.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from modelform import __version__
from modelform.cli import (
    init_cmd,
    output_cmd,
    package_cmd,
    providers_cmd,
    run_plan,
    service_cmds,
    state_cmds,
    usage,
)
from modelform.cli.common import Globals, guarded, make_view, workspace
from modelform.cli.flags import Input, Lock, LockUnused, NoColor, Switch
from modelform.cli.reporting import Report, ReportFile, ReportFormat, resolve
from modelform.engine.plan import Mode
from modelform.engine.reports import Subject

app = typer.Typer(
    name="modelform",
    help="Declarative deployment of machine-learning models: plan, apply, drift, destroy.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

Var = Annotated[list[str] | None, typer.Option("--var", "-var", help="Set a variable: NAME=VALUE.")]
VarFile = Annotated[
    list[Path] | None,
    typer.Option("--var-file", "-var-file", help="Variables from a YAML/JSON file."),
]
Json = Annotated[bool, typer.Option("--json", "-json", help="Machine-readable output.")]
LockTimeout = Annotated[
    float,
    typer.Option("--lock-timeout", "-lock-timeout", help="Seconds to wait for the state lock."),
]
Target = Annotated[
    list[str] | None,
    typer.Option("--target", "-target", help="Limit to this address (and what it needs)."),
]
Replace = Annotated[
    list[str] | None,
    typer.Option("--replace", "-replace", help="Force replacement of this address."),
]
Refresh = Annotated[
    Switch,
    typer.Option(
        "--refresh",
        "-refresh",
        case_sensitive=False,
        help="false: plan from state as recorded, without reading the real objects.",
    ),
]
NoRefresh = Annotated[
    bool, typer.Option("--no-refresh", "-no-refresh", help="Same as -refresh=false.")
]
Parallelism = Annotated[
    int,
    typer.Option(
        "--parallelism",
        "-parallelism",
        min=1,
        help="Steps working at once (a step waiting for a cluster's rollout gives its slot up).",
    ),
]
AutoApprove = Annotated[
    bool, typer.Option("--auto-approve", "-auto-approve", help="Skip the confirmation.")
]
# fmt: on


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"modelform {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    chdir: Annotated[
        Path | None, typer.Option("--chdir", "-chdir", help="Switch to this folder first.")
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Project file (default modelform.yaml).")
    ] = None,
    state: Annotated[
        Path | None, typer.Option("--state", help="State file (default .modelform/state.json).")
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-version",
            is_eager=True,
            callback=_print_version,
            help="Print modelform's version and exit.",
        ),
    ] = False,
) -> None:
    if chdir is not None:  # as Terraform: every relative path is then from there
        try:
            os.chdir(chdir)
        except OSError as e:
            raise typer.BadParameter(f"{chdir}: {e.strerror}", param_hint="'-chdir'") from e
    Globals.file, Globals.state = file, state


@app.command()
def version() -> None:
    """Print modelform's version."""
    typer.echo(f"modelform {__version__}")


@app.command()
def plan(
    var: Var = None,
    var_file: VarFile = None,
    json_out: Json = False,
    out: Annotated[
        Path | None, typer.Option("--out", "-out", help="Save the plan to apply it later.")
    ] = None,
    detailed_exitcode: Annotated[
        bool,
        typer.Option(
            "--detailed-exitcode",
            "-detailed-exitcode",
            help="Exit 0 no changes, 1 error, 2 changes.",
        ),
    ] = False,
    refresh_only: Annotated[
        bool,
        typer.Option(
            "--refresh-only", "-refresh-only", help="Only compare state with the real world."
        ),
    ] = False,
    destroy: Annotated[
        bool, typer.Option("--destroy", "-destroy", help="Plan to destroy everything.")
    ] = False,
    refresh: Refresh = Switch.true,
    no_refresh: NoRefresh = False,
    target: Target = None,
    replace: Replace = None,
    input_: Input = Switch.true,
    lock: LockUnused = Switch.true,
    no_color: NoColor = False,
    format_: ReportFormat = "human",
    report: ReportFile = None,
) -> None:
    """Show what apply would change (it never prompts, nor locks the state)."""
    rep = Report(resolve(format_, json_out), report, Subject.PLAN, no_color)
    view = rep.view()
    mode = Mode.DESTROY if destroy else Mode.REFRESH_ONLY if refresh_only else Mode.NORMAL
    guarded(
        view,
        lambda: run_plan.plan_cmd(
            workspace(view, var, var_file),
            view,
            mode=mode,
            refresh=refresh is Switch.true and not no_refresh,
            targets=target or [],
            replace=replace or [],
            out=out,
            detailed=detailed_exitcode,
            report=rep,
        ),
    )


@app.command()
def show(
    plan_file: Annotated[Path, typer.Argument(help="A plan saved with plan -out.")],
    json_out: Json = False,
    no_color: NoColor = False,
) -> None:
    """Show a saved plan, as plan showed it (-json: the plan document), for review
    before apply FILE; secrets masked. Reads no state and nothing else."""
    view = make_view(json_out, no_color)
    guarded(view, lambda: run_plan.show_cmd(view, plan_file))


@app.command()
def apply(
    plan_file: Annotated[Path | None, typer.Argument(help="A plan saved with plan -out.")] = None,
    var: Var = None,
    var_file: VarFile = None,
    json_out: Json = False,
    auto_approve: AutoApprove = False,
    lock_timeout: LockTimeout = 0.0,
    parallelism: Parallelism = 10,
    refresh_only: Annotated[
        bool,
        typer.Option(
            "--refresh-only", "-refresh-only", help="Only update state to match the real world."
        ),
    ] = False,
    refresh: Refresh = Switch.true,
    no_refresh: NoRefresh = False,
    target: Target = None,
    replace: Replace = None,
    input_: Input = Switch.true,
    lock: Lock = Switch.true,
    no_color: NoColor = False,
) -> None:
    """Make the deployment match the project file."""
    view = make_view(json_out, no_color)
    mode = Mode.REFRESH_ONLY if refresh_only else Mode.NORMAL
    Globals.input = input_ is Switch.true
    guarded(
        view,
        lambda: run_plan.apply_cmd(
            workspace(view, var, var_file, lock_timeout, parallelism, lock is Switch.true),
            view,
            plan_file=plan_file,
            mode=mode,
            auto_approve=auto_approve,
            refresh=refresh is Switch.true and not no_refresh,
            targets=target or [],
            replace=replace or [],
        ),
    )


@app.command()
def destroy(
    var: Var = None,
    var_file: VarFile = None,
    json_out: Json = False,
    auto_approve: AutoApprove = False,
    lock_timeout: LockTimeout = 0.0,
    parallelism: Parallelism = 10,
    target: Target = None,
    input_: Input = Switch.true,
    lock: Lock = Switch.true,
    no_color: NoColor = False,
) -> None:
    """Remove everything this project made."""
    view = make_view(json_out, no_color)
    Globals.input = input_ is Switch.true
    guarded(
        view,
        lambda: run_plan.apply_cmd(
            workspace(view, var, var_file, lock_timeout, parallelism, lock is Switch.true),
            view,
            plan_file=None,
            mode=Mode.DESTROY,
            auto_approve=auto_approve,
            refresh=True,
            targets=target or [],
            replace=[],
        ),
    )


@app.command()
def drift(
    var: Var = None,
    var_file: VarFile = None,
    json_out: Json = False,
    allow_missing_state: Annotated[
        bool,
        typer.Option(
            "--allow-missing-state",
            "-allow-missing-state",
            help="No state file is fine (exit 0): nothing applied yet.",
        ),
    ] = False,
    input_: Input = Switch.true,
    lock: LockUnused = Switch.true,
    no_color: NoColor = False,
    format_: ReportFormat = "human",
    report: ReportFile = None,
) -> None:
    """Compare state with the real world: exit 0 no drift, 2 drift, 1 error (also: no state).

    Never writes, never prompts, never locks.
    """
    rep = Report(resolve(format_, json_out), report, Subject.DRIFT, no_color)
    view = rep.view()
    guarded(
        view,
        lambda: run_plan.drift_cmd(
            workspace(view, var, var_file), view, allow_missing_state, report=rep
        ),
    )


service_cmds.register(app)
service_cmds.register_serve(app)
state_cmds.register(app)
init_cmd.register(app)
package_cmd.register(app)
providers_cmd.register(app)
output_cmd.register(app)


def run() -> int:
    """Run the app on the command line; usage errors are one line and exit 1."""
    return usage.run(app)
