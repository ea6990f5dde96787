"""``modelform output [NAME] [-json] [-raw]``: the outputs recorded in state.

A later CI job (a smoke test, a DNS update, a downstream deploy) reads a
service's URL here instead of parsing logs. The state is read through the
configured backend (local or s3) without the lock, and never written.

Views, as Terraform's ``output``:

* human: every output as ``name = value``, or one output's value; a
  sensitive value shows as ``(sensitive value)``;
* ``-json``: Terraform's document, ``{name: {"value", "type", "sensitive"}}``,
  or one output's value as JSON;
* ``-raw NAME``: a string, number or bool as is, without quotes and without
  a trailing newline, for ``$(modelform output -raw url)``.

``-json`` and ``-raw`` show sensitive values in clear: asking for them by
name or as data is the explicit request (as Terraform). Those two write
their document straight to stdout: it is Terraform's shape, not the
``type``-tagged lines of the other commands' ``-json``. Errors are one
line on stderr, exit 1.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from modelform.cli.common import guarded, workspace
from modelform.cli.flags import NoColor
from modelform.engine import outputs
from modelform.engine.diagnostics import Diagnostic, DiagnosticError
from modelform.engine.exitcodes import Exit
from modelform.engine.schema import did_you_mean
from modelform.engine.views import HumanView


def _fail(message: str, hint: str | None = None) -> DiagnosticError:
    return DiagnosticError(Diagnostic(message, hint=hint))


def pick(recorded: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    """The recorded output ``name``, or the one-line error naming the closest."""
    if name in recorded:
        return recorded[name]
    if not recorded:
        raise _fail(
            f'no output "{name}": the state records no outputs',
            "declare it under outputs: in the project file, then apply",
        )
    close = did_you_mean(name, recorded)
    if close:
        raise _fail(f'unknown output "{name}" (did you mean "{close}"?)')
    raise _fail(f'unknown output "{name}"', f"outputs: {', '.join(sorted(recorded))}")


def raw_text(name: str, item: dict[str, Any]) -> str:
    """A value for ``-raw``: strings as they are, numbers and bools as JSON writes them."""
    value = item.get("value")
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    kind = "null" if value is None else f"a {outputs.value_type(value)}"
    raise _fail(
        f"output {name} is {kind}: -raw prints only a string, number or bool value",
        f"use modelform output -json {name}",
    )


def output_cmd(view: HumanView, name: str | None, json_out: bool, raw: bool) -> int:
    if raw and json_out:
        raise _fail("-raw and -json cannot be used together")
    if raw and name is None:
        raise _fail("-raw needs the name of one output: modelform output -raw NAME")
    ws = workspace(view)
    state = ws.read_state()
    if state is None:
        raise _fail(
            f"no state at {ws.backend.describe()}: nothing has been applied, so there are no "
            "outputs"
        )
    recorded = state.outputs
    if name is not None:
        item = pick(recorded, name)
        if raw:
            _stdout(raw_text(name, item))
        elif json_out:
            _stdout(json.dumps(item.get("value"), sort_keys=True) + "\n")
        else:
            view.message(outputs.shown(item.get("value"), bool(item.get("sensitive"))))
        return Exit.OK
    if json_out:
        doc = {n: {"sensitive": False, **o} for n, o in recorded.items()}
        _stdout(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    elif recorded:
        view.message(outputs.listing(recorded).rstrip("\n"))
    else:
        view.message(
            "No outputs found: the project file declares none under outputs:, or they have "
            "not been applied yet."
        )
    return Exit.OK


def _stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    @app.command()
    def output(
        name: Annotated[str | None, typer.Argument(help="One output; all when left out.")] = None,
        json_out: Annotated[
            bool,
            typer.Option("--json", "-json", help="Terraform's JSON; sensitive values in clear."),
        ] = False,
        raw: Annotated[
            bool,
            typer.Option(
                "--raw", "-raw", help="One string/number/bool as is, for shell use (in clear)."
            ),
        ] = False,
        no_color: NoColor = False,
    ) -> None:
        """Show the outputs recorded by the last apply (reads the state, never locks or writes)."""
        view = HumanView(no_color=no_color)
        guarded(view, lambda: output_cmd(view, name, json_out, raw))
