"""Commands about the project file and the running services:
validate, fmt, schema, graph, status, invoke, logs, models, serve."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from modelform.cli.common import guarded, make_view, workspace
from modelform.cli.flags import NoColor
from modelform.cli.reporting import CheckFormat, GithubView
from modelform.cli.workspace import record_context, to_records
from modelform.engine import graph as graphs
from modelform.engine.diagnostics import Diagnostic, DiagnosticError
from modelform.engine.exitcodes import Exit
from modelform.engine.modelstore import open_store
from modelform.engine.planner import resolve_node
from modelform.engine.resources import child_index
from modelform.engine.servicetest import post_score
from modelform.engine.views import View

Json = Annotated[bool, typer.Option("--json", "-json", help="Machine-readable output.")]
Var = Annotated[list[str] | None, typer.Option("--var", "-var", help="Set a variable: NAME=VALUE.")]
VarFile = Annotated[
    list[Path] | None, typer.Option("--var-file", "-var-file", help="Variables from a file.")
]

models_app = typer.Typer(help="The local model store.", no_args_is_help=True)


def _service_record(view: View, name: str) -> tuple[dict, object]:  # type: ignore[type-arg]
    ws = workspace(view)
    state = ws.read_state()
    addr = name if name.startswith("service.") else f"service.{name}"
    rec = to_records(state).get(addr)
    if rec is None:
        raise DiagnosticError(Diagnostic(f"{addr} is not in state", hint="run modelform apply"))
    return rec, ws


def _check_view(command: str, fmt: str, json_out: bool, no_color: bool = False) -> View:
    """The human (or -json) view; with --format github, problems as annotations."""
    if fmt != "github":
        return make_view(json_out, no_color)
    if json_out:
        raise typer.BadParameter("-json and --format github ask for two formats: give one",
                                 param_hint="'--format'")  # fmt: skip
    return GithubView(f"modelform {command}", no_color)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")

    @app.command()
    def validate(
        var: Var = None,
        var_file: VarFile = None,
        json_out: Json = False,
        no_color: NoColor = False,
        format_: CheckFormat = "human",
    ) -> None:
        """Check the project file: schema, references, files, cycles
        (--format github: each problem an annotation at its line)."""
        view = _check_view("validate", format_, json_out, no_color)

        def body() -> int:
            ws = workspace(view, var, var_file)
            run = ws.run(None)
            nodes = run.desired()
            graphs.build(nodes)
            problems: list[Diagnostic] = []
            for node in nodes.values():
                provider = ws.registry.get(node.provider)
                if node.type != "service" and not (node.type == "target" and "/" in node.address):
                    continue  # services and target-owned resources have provider checks
                # The provider's own checks (a trigger's settings, autoscale's
                # bounds), on the options as written: what refers to other
                # resources is not known yet, and the checks skip it.
                resource, ctx = resolve_node(node, {}, ws.config, run)
                try:
                    problems += provider.validate(resource, ctx)
                except DiagnosticError as e:
                    problems += e.diagnostics
            if problems:
                raise DiagnosticError(*problems)
            view.data({"valid": True, "resources": len(nodes)},
                      f"The project file is valid ({len(nodes)} resources).")  # fmt: skip
            return Exit.OK

        guarded(view, body)

    @app.command()
    def fmt(
        check: Annotated[
            bool, typer.Option("--check", "-check", help="Only report; exit 3 if it would change.")
        ] = False,
        format_: CheckFormat = "human",
    ) -> None:
        """Rewrite the project file in the canonical format (-check --format github:
        an annotation at each place that would change)."""
        from modelform.engine.fmt import format_text
        from modelform.engine.reports import unformatted

        view = _check_view("fmt", format_, False)

        def body() -> int:
            ws = workspace(view)
            text = ws.file.read_text()
            new = format_text(text, str(ws.file))
            if new == text:
                return Exit.OK
            if check:
                if isinstance(view, GithubView):
                    view.diagnostics(unformatted(str(ws.file), text, new))
                view.message(f"{ws.file} is not formatted")
                return 3
            ws.file.write_text(new)
            view.message(f"formatted {ws.file}")
            return Exit.OK

        guarded(view, body)

    @app.command()
    def schema() -> None:
        """Print the project file's JSON Schema (for editors)."""
        from modelform.engine.kinds import full_schema_text
        from modelform.engine.registry import Registry, catalog

        view = make_view(False)

        def body() -> int:
            typer.echo(full_schema_text(catalog(Registry())), nl=False)
            return Exit.OK

        guarded(view, body)

    @app.command()
    def graph(var: Var = None, var_file: VarFile = None) -> None:
        """Print the dependency graph in DOT."""
        view = make_view(False)

        def body() -> int:
            ws = workspace(view, var, var_file)
            typer.echo(graphs.to_dot(graphs.build(ws.run(None).desired())), nl=False)
            return Exit.OK

        guarded(view, body)

    @app.command()
    def status(json_out: Json = False) -> None:
        """Each service's target, URL and live state."""
        view = make_view(json_out)

        def body() -> int:
            ws = workspace(view)
            state = ws.read_state()
            run = ws.run(state)
            rows = []
            records = to_records(state)
            kids = child_index(records)
            for addr, rec in sorted(records.items()):
                if rec["type"] != "service":
                    continue
                ctx = record_context(run, rec, kids)
                provider = ws.registry.get(rec["provider"])
                live = provider.read(rec["attributes"], ctx)
                st = (live or {}).get("status") if live else "Gone"
                if live and rec.get("tainted"):
                    st = f"{rec['attributes'].get('status') or 'Unhealthy'} (tainted)"
                detail = provider.status_detail(live, ctx) if live else ""
                rows.append({"address": addr, "provider": rec["provider"],
                             "url": rec["attributes"].get("url"), "status": st,
                             "detail": detail,
                             "models": rec["attributes"].get("models", {})})  # fmt: skip
            human = (
                "\n".join(
                    f"{r['address']:<32} {r['provider']:<10} {r['status']:<14} "
                    + (f"{r['detail']}  " if r["detail"] else "")
                    + f"{r['url'] or ''}  {' '.join(r['models'].values())}"
                    for r in rows
                )
                or "No services in state."
            )
            view.data(rows, human)
            return Exit.OK

        guarded(view, body)

    @app.command()
    def invoke(
        service: str,
        data: Annotated[str, typer.Option("--data", "-d", help="JSON body, or @file.")],
    ) -> None:
        """Send a scoring request to a deployed service and print the answer."""
        view = make_view(False)

        def body() -> int:
            rec, ws = _service_record(view, service)
            payload = Path(data[1:]).read_text() if data.startswith("@") else data
            try:
                json.loads(payload)
            except ValueError as e:
                raise DiagnosticError(Diagnostic(f"--data is not JSON: {e}")) from e
            provider = ws.registry.get(rec["provider"])  # type: ignore[attr-defined]
            state = ws.read_state()  # type: ignore[attr-defined]
            ctx = record_context(ws.run(state), rec, child_index(to_records(state)))  # type: ignore[attr-defined,arg-type]
            answer = provider.invoke(rec["attributes"], payload.encode(), ctx)
            code, out = answer if answer is not None else post_score(rec["attributes"], payload)
            sys.stdout.write(out.decode(errors="replace").rstrip("\n") + "\n")
            if code >= 400:
                view.error(f"the service answered HTTP {code}")
                return Exit.ERROR
            return Exit.OK

        guarded(view, body)

    @app.command()
    def logs(service: str, tail: Annotated[int, typer.Option("--tail", "-n")] = 200) -> None:
        """Show a service's log."""
        view = make_view(False)

        def body() -> int:
            rec, ws = _service_record(view, service)
            provider = ws.registry.get(rec["provider"])  # type: ignore[attr-defined]
            state = ws.read_state()  # type: ignore[attr-defined]
            run = ws.run(state)  # type: ignore[attr-defined]
            ctx = record_context(run, rec, child_index(to_records(state)))  # type: ignore[arg-type]
            typer.echo(provider.logs(rec["address"], rec["attributes"], ctx, tail))
            return Exit.OK

        guarded(view, body)

    @models_app.command("list")
    def models_list(json_out: Json = False) -> None:
        """Every model version in the store."""
        view = make_view(json_out)

        def body() -> int:
            ws = workspace(view)
            store = open_store(ws.config.model_store, ws.config.dir)
            versions = [v for n in store.names() for v in store.versions(n)]
            rows = [
                {"ref": v.ref, "uri": store.uri(v.name, v.version), "digest": v.digest,
                 "tags": v.tags, "description": v.description}
                for v in versions
            ]  # fmt: skip
            human = "\n".join(f"{v.ref:<24} {v.digest[:19]}  {v.description}" for v in versions)
            view.data(rows, human or "No models registered.")
            return Exit.OK

        guarded(view, body)

    @models_app.command("show")
    def models_show(ref: str, json_out: Json = False) -> None:
        """One model version (NAME or NAME:VERSION)."""
        view = make_view(json_out)

        def body() -> int:
            ws = workspace(view)
            store = open_store(ws.config.model_store, ws.config.dir)
            name, _, ver = ref.partition(":")
            versions = store.versions(name)
            found = [v for v in versions if not ver or str(v.version) == ver]
            if not found:
                raise DiagnosticError(Diagnostic(f"no model {ref} in the store"))
            v = found[-1]
            row = {"ref": v.ref, "uri": store.uri(v.name, v.version), "digest": v.digest,
                   "path": str(v.path), "tags": v.tags, "description": v.description,
                   "created": v.created}  # fmt: skip
            view.data(row, "\n".join(f"{k}: {val}" for k, val in row.items()))
            return Exit.OK

        guarded(view, body)


def register_serve(app: typer.Typer) -> None:
    @app.command(
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        add_help_option=False,
    )
    def serve(ctx: typer.Context) -> None:
        """Serve a score.py: --entry-script F [--model-dir D] [--port N] [--workers N] ..."""
        from modelform.runtime import main as runtime_main

        raise typer.Exit(runtime_main(list(ctx.args), prog="modelform serve") or 0)
