"""plan and drift --format / --report, validate and fmt -check --format github,
through the installed ``modelform`` on a copy of examples/quickstart (the
local target: a real scoring process on 127.0.0.1). The service runs with
``auth: key`` and a sensitive variable in its env, is killed out of band, and
then every format of every report is read as CI reads it — and searched for
both secrets. A mistyped flag or a bad format exits 1, never 2, while the
same project has drift (so 2 is what a correct command gives)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelform.providers import local_process as proc
from tests.e2e.helpers import Project, Result, copy_quickstart, free_port, our_processes
from tests.reportformats import junit_root, line_of, md_check, parse_annotations

pytestmark = pytest.mark.slow

SECRET = "var-Secret-7731"
FORMATS = ("json", "junit", "markdown", "github")


@dataclass
class Drifted:
    p: Project
    key: str  # the service's generated key
    pid: int  # the process that was killed
    text: str  # the project file
    outputs: list[str]  # every output a test produced, for the secret check


@pytest.fixture(scope="module")
def drifted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drifted]:
    p = copy_quickstart(tmp_path_factory.mktemp("reports") / "q")
    p.env["MODELFORM_VAR_token"] = SECRET
    f = p.root / "modelform.yaml"
    text = f.read_text().replace("default: 8890", f"default: {free_port()}")
    text = text.replace("variables:\n", "variables:\n  token: {sensitive: true}\n")
    text = text.replace(
        "    port: ${var.port}\n",
        '    port: ${var.port}\n    auth: key\n    env: {API_TOKEN: "${var.token}"}\n',
    )
    f.write_text(text)
    try:
        r = p.run("apply", "-auto-approve")
        assert r.code == 0, r.text
        attrs = p.resources()["service.diabetes-dev"]["attributes"]
        os.kill(attrs["pid"], signal.SIGKILL)  # out of band
        deadline = time.monotonic() + 30
        while proc.alive(attrs["pid"], attrs["started"]):
            assert time.monotonic() < deadline, "the killed process outlived 30 s"
            time.sleep(0.05)
        yield Drifted(p, attrs["key"], attrs["pid"], text, [r.text])
    finally:
        p.cleanup()
        assert our_processes(p.root) == set()


def _run(d: Drifted, *args: str) -> Result:
    r = d.p.run(*args)
    d.outputs.append(r.text)
    return r


def test_drift_junit_report_names_the_killed_service(drifted: Drifted) -> None:
    r = _run(drifted, "drift", "--format", "junit", "--report", "drift.xml")
    assert r.code == 2, r.text
    assert "service.diabetes-dev has been deleted" in r.out  # the terminal: the human view
    xml = (drifted.p.root / "drift.xml").read_text()
    drifted.outputs.append(xml)
    suite = junit_root(xml).find("testsuite")
    assert suite is not None
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {"model.ridge", "environment.sklearn", "service.diabetes-dev"}
    failed = [n for n, c in cases.items() if c.find("failure") is not None]
    assert failed == ["service.diabetes-dev"]
    failure = cases["service.diabetes-dev"].find("failure")
    assert failure is not None and failure.text is not None
    assert cases["service.diabetes-dev"].get("classname") == "service"
    assert f"pid: declared {drifted.pid}, live (none)" in failure.text
    assert "key: declared (sensitive value), live (none)" in failure.text
    assert '"API_TOKEN": "(sensitive value)"' in failure.text


def test_each_format_on_stdout_alone_the_human_view_on_stderr(drifted: Drifted) -> None:
    for fmt in FORMATS:
        r = _run(drifted, "drift", "--format", fmt)
        assert r.code == 2, (fmt, r.text)
        if fmt != "json":
            assert "service.diabetes-dev has been deleted" in r.err, (fmt, r.err)
        if fmt == "junit":
            junit_root(r.out)
        elif fmt == "markdown":
            rows = md_check(r.out)
            assert rows[1][:2] == ["service.diabetes-dev", "deleted"], rows
        elif fmt == "github":
            (a,) = parse_annotations(r.out)
            assert a["level"] == "error" and a["file"] == "modelform.yaml"
            assert int(a["line"]) == line_of(drifted.text, "diabetes-dev")
    # --format json is -json: the same lines
    a, b = _run(drifted, "drift", "--format", "json"), _run(drifted, "drift", "-json")
    assert a.code == b.code == 2 and a.out == b.out and a.out.count("\n") == 2


def test_plan_markdown_report_and_github_annotations(drifted: Drifted) -> None:
    r = _run(drifted, "plan", "--format", "markdown", "--report", "plan.md",
             "-detailed-exitcode")  # fmt: skip
    assert r.code == 2, r.text
    assert "service.diabetes-dev will be created" in r.out  # human, on the terminal
    md = (drifted.p.root / "plan.md").read_text()
    drifted.outputs.append(md)
    rows = md_check(md)
    assert rows[0] == ["resource", "action", "what"]
    assert ["service.diabetes-dev", "create"] == rows[1][:2], rows
    # annotation paths from the checkout GitHub names, at the service's line
    checkout = drifted.p.root.parent
    above = Project(checkout, {**drifted.p.env, "GITHUB_WORKSPACE": str(checkout)})
    r = above.run("-chdir=q", "plan", "-format=github")
    drifted.outputs.append(r.text)
    assert r.code == 0, r.text
    found = parse_annotations(r.out)
    assert [a["file"] for a in found] == ["q/modelform.yaml"], found
    assert int(found[0]["line"]) == line_of(drifted.text, "diabetes-dev")
    assert found[0]["level"] == "notice"  # a create: what a pull request is for


def test_no_secret_in_any_format_or_place(drifted: Drifted) -> None:
    for command in ("plan", "drift"):
        for fmt in FORMATS:
            out = drifted.p.root / f"{command}.{fmt}"
            stdout = _run(drifted, command, "--format", fmt)
            to_file = _run(drifted, command, "--format", fmt, "--report", out.name)
            assert stdout.code in (0, 2) and to_file.code in (0, 2), to_file.text
            drifted.outputs.append(out.read_text())
    assert len(drifted.outputs) > 16
    for text in drifted.outputs:
        assert SECRET not in text and drifted.key not in text
    assert any("(sensitive value)" in t for t in drifted.outputs)


@pytest.mark.parametrize("command", ["plan", "drift", "validate", "fmt", "apply", "destroy"])
@pytest.mark.parametrize("typo", ["--formt", "-formt"])
def test_a_mistyped_flag_exits_1_never_2(drifted: Drifted, command: str, typo: str) -> None:
    r = _run(drifted, command, typo, "junit")
    assert r.code == 1, r.text
    assert r.out == "" and r.err.count("\n") == 1, r.text
    assert r.err.startswith(f"Error: no such option: {typo}"), r.err
    if command in ("plan", "drift", "validate", "fmt"):
        assert "did you mean" in r.err and "-format" in r.err, r.err
    assert "Traceback" not in r.text


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("plan", "--format", "junt"), "did you mean junit?"),
        (("drift", "-format=markdwn"), "did you mean markdown?"),
        (("drift", "-json", "--format", "junit"), "-json and --format junit"),
        (("validate", "--format", "junit"), "one of human, github"),
        (("fmt", "-check", "--format", "githb"), "did you mean github?"),
    ],
)
def test_a_bad_format_exits_1_with_one_line(drifted: Drifted, args: tuple[str, ...],
                                            says: str) -> None:  # fmt: skip
    assert _run(drifted, "drift").code == 2  # the world has drift: 2 was possible
    r = _run(drifted, *args)
    assert r.code == 1, r.text
    assert r.err.count("\n") == 1 and says in r.err and r.err.startswith("Error: "), r.err


def test_validate_and_fmt_check_annotate_the_line(tmp_path: Path) -> None:
    p = copy_quickstart(tmp_path / "q")
    f = p.root / "modelform.yaml"
    good = f.read_text()
    f.write_text(good.replace("port: ${var.port}", "port: ${var.prt}"))
    r = p.run("validate", "--format", "github")
    assert r.code == 1, r.text
    (a,) = parse_annotations(r.out)
    want = next(i + 1 for i, line in enumerate(good.splitlines()) if "${var.port}" in line)
    assert (a["level"], a["file"], int(a["line"])) == ("error", "modelform.yaml", want)
    assert 'undeclared variable "prt"' in a["message"] and a["title"] == "modelform validate"
    # fmt -check: the file as written is canonical; re-indented, it is not
    f.write_text(good)
    assert p.run("fmt", "-check", "--format", "github").code == 0
    lines = good.splitlines(keepends=True)
    at = line_of(good, "diabetes-dev")
    lines[at] = "  " + lines[at]  # "target: local" under the service, indented by 4
    lines[at + 1 :] = ["  " + x if x.startswith("    ") else x for x in lines[at + 1 :]]
    f.write_text("".join(lines))
    r = p.run("fmt", "-check", "--format", "github")
    assert r.code == 3, r.text
    found = parse_annotations(r.out)
    assert found and int(found[0]["line"]) == at + 1, found
    assert all(x["title"] == "modelform fmt" for x in found)
    assert "not in the canonical format" in found[0]["message"]
    assert p.run("validate").code == 0  # still a valid file: fmt alone complains
