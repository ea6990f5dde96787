"""The reports (engine.reports) of real plans: a quickstart-like project of
three services applied by the engine on the local target (processes on
127.0.0.1), then one process killed and one hung (SIGSTOP) — a drift of a
deleted and a changed service beside one in sync — and a plan of an edited
project file over that world. Each format is checked as its consumer reads
it: the JUnit file against the Ant/Jenkins XSD (tests/schemas/junit), the
markdown table by a strict GFM table parser and by markdown-it-py, the
annotations by the workflow-command grammar with the line of each resource
counted in the file itself. No format shows a secret: the generated key of
an ``auth: key`` service, a sensitive variable flowing into its env."""

from __future__ import annotations

import contextlib
import html
import json
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelform.engine import sensitive
from modelform.engine.apply import apply_plan
from modelform.engine.diagnostics import DiagnosticError
from modelform.engine.fmt import format_text
from modelform.engine.loader import load
from modelform.engine.plan import Mode, Plan
from modelform.engine.planjson import plan_json
from modelform.engine.planner import Records, Run, make_plan
from modelform.engine.registry import Registry, catalog
from modelform.engine.reports import (
    Format,
    Locate,
    Meta,
    Subject,
    diagnostics_github,
    drift_entries,
    md_cell,
    plan_entries,
    render,
    resource_locator,
    unformatted,
)
from modelform.engine.sensitive import Redactor
from modelform.providers import local_process as proc
from tests.e2e.helpers import free_port
from tests.reportformats import (
    junit_root,
    line_of,
    md_check,
    md_tables,
    parse_annotations,
    parse_tables,
    rendered,
)

pytestmark = pytest.mark.slow

TOKEN = "tok-Sekret-4242"
#: What every cell, annotation and XML text must carry through intact: the
#: second run's entry script is a file of this name.
ODD = "src/a|b, c:d %e <f> & \\g `h` *i* [j](k).py"
#: The second run's project declares outputs: one plain, one from the secret.
OUTPUTS = "outputs:\n  url: ${services.gamma.url}\n  token: ${var.token}\n"
SCORE = "import json\n\ndef init():\n    pass\n\ndef run(raw):\n    return json.loads(raw)\n"


def project_text(ports: list[int], script: str = "src/score.py", note: str = "n") -> str:
    return f"""project: reports
variables:
  token: {{default: "{TOKEN}", sensitive: true}}
models:
  ridge: {{path: model.bin}}
environments:
  plain:
    env: {{OMP_NUM_THREADS: "1"}}
services:
  alpha:
    environment: plain
    entry_script: src/score.py
    port: {ports[0]}
  beta:
    environment: plain
    entry_script: src/score.py
    port: {ports[1]}
  gamma:
    models: [ridge]
    environment: plain
    entry_script: {json.dumps(script)}
    port: {ports[2]}
    auth: key
    env: {{API_TOKEN: "${{var.token}}", NOTE: {json.dumps(note)}}}
"""


@dataclass
class World:
    dir: Path
    drift: Plan
    drift_text: str  # the project file the drift was made with
    plan: Plan
    plan_text: str
    drift_redactor: Redactor
    plan_redactor: Redactor
    drift_locate: Locate
    plan_locate: Locate
    key: str  # gamma's generated key


def _run(root: Path) -> tuple[Run, Redactor]:
    registry = Registry()
    cat = catalog(registry)
    config = load(root / "modelform.yaml", catalog=cat)
    found = sensitive.from_config(config, cat)
    run = Run(config=config, registry=registry, work_dir=root / ".modelform", lineage="t")
    return run, Redactor(found.values, found.keys)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("reports")
    (root / "src").mkdir()
    (root / "src" / "score.py").write_text(SCORE)
    (root / ODD).write_text(SCORE + "# another\n")
    (root / "model.bin").write_bytes(b"weights")
    ports = [free_port() for _ in range(3)]
    first = project_text(ports)
    (root / "modelform.yaml").write_text(first)
    records: Records = {}

    def persist(recs: Records) -> None:
        records.clear()
        records.update(recs)

    stopped: list[int] = []
    try:
        run, _ = _run(root)
        result = apply_plan(run, make_plan(run, {}), persist)
        assert result.ok, (result.failed, result.logs)
        alpha, beta = (records[f"service.{n}"]["attributes"] for n in ("alpha", "beta"))
        os.kill(alpha["pid"], signal.SIGKILL)
        while proc.alive(alpha["pid"], alpha["started"]):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(alpha["pid"], 0)
        os.killpg(beta["pid"], signal.SIGSTOP)  # answers nothing: reads back Unhealthy
        stopped.append(beta["pid"])

        run, drift_redactor = _run(root)
        drift = make_plan(run, records, mode=Mode.REFRESH_ONLY)
        drift_redactor.add(sensitive.from_plan(drift))
        drift_locate = resource_locator(run.config)
        second = project_text(ports, ODD, note="m") + OUTPUTS
        (root / "modelform.yaml").write_text(second)
        run, plan_redactor = _run(root)
        plan = make_plan(run, records)
        plan_redactor.add(sensitive.from_plan(plan))
        key = records["service.gamma"]["attributes"]["key"]
        yield World(root, drift, first, plan, second, drift_redactor, plan_redactor,
                    drift_locate, resource_locator(run.config), key)  # fmt: skip
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGCONT)
        if records:
            run, _ = _run(root)
            apply_plan(run, make_plan(run, records, mode=Mode.DESTROY), persist)
        for f in proc.find(root.resolve()):
            proc.stop(f.pid, f.started)


def _report(w: World, fmt: Format, subject: Subject) -> str:
    if subject is Subject.DRIFT:
        plan, redactor, locate = w.drift, w.drift_redactor, w.drift_locate
    else:
        plan, redactor, locate = w.plan, w.plan_redactor, w.plan_locate
    return render(plan, fmt, subject, redactor, locate, Meta(root=w.dir, seconds=1.5))


# -- the engine made the world the tests expect ------------------------------------


def test_the_drift_and_the_plan_are_what_the_world_did(world: World) -> None:
    kinds = {d.address: d.kind for d in world.drift.drift}
    assert kinds == {"service.alpha": "deleted", "service.beta": "changed"}, kinds
    acts = {c.address: c.action.value for c in world.plan.actionable}
    assert set(acts) == {"service.alpha", "service.beta", "service.gamma"}, acts
    assert acts["service.alpha"] == "create"


# -- JUnit ---------------------------------------------------------------------------


def test_junit_of_a_drift_validates_and_fails_exactly_the_drifted(world: World) -> None:
    root = junit_root(_report(world, Format.JUNIT, Subject.DRIFT))
    suite = root.find("testsuite")
    assert suite is not None
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    # one test case per resource in state, each named by address, classed by type
    assert set(cases) == set(world.drift.prior), cases.keys()
    assert all(c.get("classname") == n.split(".")[0] for n, c in cases.items())
    failed = {n for n, c in cases.items() if c.find("failure") is not None}
    assert failed == {"service.alpha", "service.beta"}
    assert suite.get("tests") == str(len(cases)) and suite.get("failures") == "2"
    assert suite.get("errors") == "0" and suite.get("time") == "1.500"
    beta = cases["service.beta"].find("failure")
    assert beta is not None and beta.text is not None
    recorded = world.drift.prior["service.beta"]["attributes"]["status"]
    live = world.drift.refreshed["service.beta"]["attributes"]["status"]
    assert f"status: declared {json.dumps(recorded)}, live {json.dumps(live)}" in beta.text
    assert beta.get("message") == "service.beta has changed outside modelform"
    alpha = cases["service.alpha"].find("failure")
    assert alpha is not None and alpha.text is not None
    pid = world.drift.prior["service.alpha"]["attributes"]["pid"]
    assert f"pid: declared {pid}, live (none)" in alpha.text
    assert f"modelform.yaml:{line_of(world.drift_text, 'alpha')}" in alpha.text


def test_junit_of_a_plan_fails_what_changes_and_names_each_attribute(world: World) -> None:
    text = _report(world, Format.JUNIT, Subject.PLAN)
    suite = junit_root(text).find("testsuite")
    assert suite is not None
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {c.address for c in world.plan.changes}
    failed = {n for n, c in cases.items() if c.find("failure") is not None}
    assert failed == {c.address for c in world.plan.actionable}
    gamma = cases["service.gamma"].find("failure")
    assert gamma is not None and gamma.text is not None
    assert (
        gamma.get("type")
        == world.plan.changes[
            [c.address for c in world.plan.changes].index("service.gamma")
        ].action.value
    )
    # the odd value arrives whole, XML-escaped and back; the secret beside it is masked
    assert f"entry_script: declared {json.dumps(ODD)}, live " in gamma.text
    assert "env: declared " in gamma.text
    assert '"API_TOKEN": "(sensitive value)"' in gamma.text


# -- markdown ------------------------------------------------------------------------


def test_markdown_of_a_drift_is_a_summary_and_a_table_of_the_drifted(world: World) -> None:
    text = _report(world, Format.MARKDOWN, Subject.DRIFT)
    assert (
        text.splitlines()[0]
        == "**modelform drift** (reports): 2 object(s) drifted, of 5 resource(s)."
    )
    rows = md_check(text)
    assert rows[0] == ["resource", "drift", "what"]
    assert {r[0]: r[1] for r in rows[1:]} == {"service.alpha": "deleted", "service.beta": "changed"}
    beta = next(r for r in rows if r[0] == "service.beta")
    recorded = world.drift.prior["service.beta"]["attributes"]["status"]
    live = world.drift.refreshed["service.beta"]["attributes"]["status"]
    assert f"status: {json.dumps(recorded)} → {json.dumps(live)}" in rendered(beta[2])


def test_markdown_of_a_plan_escapes_what_would_break_the_table(world: World) -> None:
    text = _report(world, Format.MARKDOWN, Subject.PLAN)
    rows, outputs = md_tables(text)
    assert outputs[0] == ["output", "action", "value"]
    assert {r[0]: r[1] for r in outputs[1:]} == {"url": "create", "token": "create"}
    url = next(r[2] for r in outputs if r[0] == "url")
    gamma = next(c for c in world.plan.changes if c.address == "service.gamma")
    assert gamma.after is not None
    assert rendered(url) == f"(none) → {json.dumps(gamma.after['url'])}", url
    assert rendered(next(r[2] for r in outputs if r[0] == "token")) == "(none) → (sensitive value)"
    assert "2 output(s) change" in text.splitlines()[0]
    assert rows[0] == ["resource", "action", "what"]
    assert [r[0] for r in rows[1:]] == [c.address for c in world.plan.actionable]
    gamma = rendered(next(r for r in rows if r[0] == "service.gamma")[2])
    # | , : % < > & \ ` * [ ] all arrive as written, inside the one cell
    assert f"entry_script: src/score.py → {ODD}" in gamma, gamma


def test_md_cell_line_breaks_and_pipes() -> None:
    cell = md_cell("one | two\nthree\r\nfour")
    assert "\n" not in cell and "\r" not in cell
    rows = parse_tables(f"| a |\n| --- |\n| {cell} |\n")
    assert rendered(rows[0][1][0]) == "one | two\nthree\nfour"


# -- GitHub annotations ----------------------------------------------------------------


def test_github_annotations_of_a_drift_are_errors_at_the_services_lines(world: World) -> None:
    found = parse_annotations(_report(world, Format.GITHUB, Subject.DRIFT))
    assert [a["title"] for a in found] == ["drift: service.alpha", "drift: service.beta"]
    for a in found:
        name = a["title"].split(".")[-1]
        assert a["level"] == "error" and a["file"] == "modelform.yaml"
        assert int(a["line"]) == line_of(world.drift_text, name)
        assert int(a["col"]) == 3  # the name's column, under services:
        assert a["message"].startswith(f"service.{name} has")


def test_github_annotations_of_a_plan_at_each_resources_line(world: World) -> None:
    found = parse_annotations(_report(world, Format.GITHUB, Subject.PLAN))
    by = {a["title"].removeprefix("plan: "): a for a in found}
    assert set(by) == {c.address for c in world.plan.actionable}
    for addr, a in by.items():
        assert a["file"] == "modelform.yaml"
        assert int(a["line"]) == line_of(world.plan_text, addr.split(".")[-1])
    assert by["service.alpha"]["level"] == "notice"  # a create
    gamma = by["service.gamma"]
    assert f"entry_script: src/score.py → {ODD}" in gamma["message"]  # % , : came back whole
    assert gamma["message"].count("\n") >= 1


def test_validate_and_fmt_diagnostics_as_annotations(tmp_path: Path) -> None:
    text = project_text([9001, 9002, 9003]).replace("${var.token}", "${var.tokn}")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "score.py").write_text(SCORE)
    (tmp_path / "model.bin").write_bytes(b"w")
    f = tmp_path / "ci, main:v2.yaml"  # ',' and ':' must be escaped in the file property
    f.write_text(text)
    with pytest.raises(DiagnosticError) as e:
        load(f, catalog=catalog(Registry()))
    found = parse_annotations(
        diagnostics_github(e.value.diagnostics, "modelform validate", tmp_path)
    )
    assert len(found) == 1 and found[0]["file"] == "ci, main:v2.yaml"
    assert found[0]["title"] == "modelform validate"
    assert int(found[0]["line"]) == next(
        i + 1 for i, line in enumerate(text.splitlines()) if "${var.tokn}" in line
    )
    assert 'undeclared variable "tokn"' in found[0]["message"]
    # fmt -check: each stretch that formatting changes, at its first line
    text = format_text(text, str(f))
    lines = text.splitlines(keepends=True)
    beta = line_of(text, "beta")
    for n in range(beta, beta + 3):  # beta's three options indented by 4, not 2
        lines[n] = "  " + lines[n]
    messy = "".join(lines)
    diags = unformatted(str(f), messy, format_text(messy, str(f)))
    assert [(d.pos.line if d.pos else 0) for d in diags] == [beta + 1], (diags, messy)
    assert diags[0].message == f"lines {beta + 1}-{beta + 3} not in the canonical format"
    assert all("not in the canonical format" in d.message for d in diags)


# -- JSON, and secrets in every format ---------------------------------------------------


def test_json_is_the_json_views_document(world: World) -> None:
    lines = _report(world, Format.JSON, Subject.PLAN).splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert doc["type"] == "plan"
    assert doc["plan"] == world.plan_redactor.value(json.loads(json.dumps(plan_json(world.plan))))
    drift = [json.loads(x) for x in _report(world, Format.JSON, Subject.DRIFT).splitlines()]
    assert [d["type"] for d in drift] == ["drift", "data"]
    assert drift[1]["data"] == {"drift": True, "count": 2}


@pytest.mark.parametrize("fmt", [Format.JSON, Format.JUNIT, Format.MARKDOWN, Format.GITHUB])
@pytest.mark.parametrize("subject", [Subject.PLAN, Subject.DRIFT])
def test_no_secret_in_any_format(world: World, fmt: Format, subject: Subject) -> None:
    text = _report(world, fmt, subject)
    assert TOKEN not in text and world.key not in text
    assert TOKEN not in html.unescape(text) and world.key not in html.unescape(text)


def test_entries_mask_the_key_and_the_variable(world: World) -> None:
    entries = plan_entries(world.plan, world.plan_redactor) + drift_entries(
        world.plan, world.plan_redactor
    )
    values = [v for e in entries for a in e.attrs for v in (a.declared, a.live)]
    assert values and not any(TOKEN in v or world.key in v for v in values)
