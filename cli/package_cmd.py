"""``modelform package SERVICE [--push]``: build a service's image, deploy nothing.
``modelform package target.NAME``: what a target kind builds for the whole
target (an IoT Edge device: every module image and the deployment manifest).

The service is resolved exactly as plan would resolve it (without reading
the real world and without touching state or taking the lock), then its
target's provider builds the image. Only providers that build images
(those with a ``package`` method: container, kubernetes) can do this.
Registry credentials come from the target's ``username_env`` /
``password_env`` variables, or Docker's own configuration; they are never
printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from modelform.cli.common import guarded, make_view, workspace
from modelform.cli.workspace import to_records
from modelform.engine.diagnostics import Diagnostic, DiagnosticError
from modelform.engine.exitcodes import Exit
from modelform.engine.planner import make_plan, resolve_node
from modelform.engine.provider import ProviderError
from modelform.engine.registry import implements

Json = Annotated[bool, typer.Option("--json", "-json", help="Machine-readable output.")]
Push = Annotated[bool, typer.Option("--push", "-push", help="Push to the target's registry.")]
Var = Annotated[
    Optional[list[str]],  # noqa: UP045 - typer reads the annotation at run time
    typer.Option("--var", "-var", help="Set a variable: NAME=VALUE."),
]
VarFile = Annotated[
    Optional[list[Path]],  # noqa: UP045
    typer.Option("--var-file", "-var-file", help="Variables from a file."),
]


def register(app: typer.Typer) -> None:
    @app.command()
    def package(
        service: str, push: Push = False, var: Var = None, var_file: VarFile = None,
        json_out: Json = False,
    ) -> None:  # fmt: skip
        """Build a service's artefact without deploying it: its image (--push: pushed
        too), or its function app folder and zip; for target.NAME (an IoT Edge
        device), every module image and the deployment manifest."""
        view = make_view(json_out)

        def body() -> int:
            ws = workspace(view, var, var_file)
            state = ws.read_state()
            run = ws.run(state)
            addr = service if service.startswith("service.") else f"service.{service}"
            if service.startswith("target."):
                addr = _target_part(ws, service)
            elif addr.split(".", 1)[1] not in ws.config.services:
                raise DiagnosticError(Diagnostic(f"{addr} is not in the project file"))
            plan = make_plan(
                run, to_records(state), do_refresh=False, targets=[addr],
                serial=state.serial if state else 0,
            )  # fmt: skip
            known: dict[str, dict[str, Any]] = {
                c.address: c.after for c in plan.changes if c.after is not None
            }
            resource, ctx = resolve_node(run.nodes[addr], known, ws.config, run)
            provider = ws.registry.get(resource.provider)
            if not implements(provider, "package"):
                raise DiagnosticError(
                    Diagnostic(
                        f"{addr}: target kind {resource.provider!r} does not build artefacts",
                        resource.pos,
                        "package works for image targets such as kind: container",
                    )
                )
            try:
                out = provider.package(resource, ctx, push)
            except ProviderError as e:
                view.error(str(e), e.log)
                return Exit.ERROR
            if "summary" in out:  # another artefact (a function app): its own line
                view.data(out, str(out["summary"]))
                return Exit.OK
            what = "built" if out["built"] else "already built"
            human = f"{out['image']} ({out['digest_tag'].rsplit(':', 1)[1]}): {what}"
            if out["pushed"]:
                human += ", pushed"
            view.data(out, human)
            return Exit.OK

        guarded(view, body)


def _target_part(ws: Any, name: str) -> str:
    """``target.NAME`` → the address of the resource its kind owns for it
    (``target.edge/deployment``): what ``package`` builds for a whole target."""
    tname = name.split(".", 1)[1]
    body = ws.config.targets.get(tname)
    if body is None:
        raise DiagnosticError(Diagnostic(f"{name} is not in the project file"))
    kind = str(body.get("kind", "local"))
    part = ws.registry.get(kind).target_part
    if not part:
        raise DiagnosticError(
            Diagnostic(
                f"{name}: target kind {kind!r} has nothing to package of its own",
                ws.config.pos(("targets", tname)),
                "package one of its services: modelform package SERVICE",
            )
        )
    return f"target.{tname}/{part}"
