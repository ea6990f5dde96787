"""Foundation v2's acceptance, through the installed ``modelform`` executable
and a provider plugin outside the source tree (tests/plugins/filebox) that
imports nothing of modelform but ``modelform.plugin``: its own service
options (one sensitive), child objects, a target-owned resource gathering
its services, and a check that taints what fails it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.helpers import Project
from tests.plugins.install import install

TOKEN = "tok-ABCDEFGH-1234"  # the sensitive variable's value
INLINE = "inline-secret-XYZ123"  # a sensitive option written in the file

PROJECT = f"""\
project: fb
variables:
  token: {{default: "{TOKEN}", sensitive: true}}
targets:
  box: {{kind: filebox, root: out}}
services:
  a:
    target: box
    entry_script: src/score.py
    greeting: hello
    api_token: ${{var.token}}
  b:
    target: box
    entry_script: src/score.py
    greeting: hi
    api_token: "{INLINE}"
"""


@pytest.fixture
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install("filebox", tmp_path_factory.mktemp("site"))


@pytest.fixture
def project(tmp_path: Path, plugin_path: Path) -> Project:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "score.py").write_text(
        "def init():\n    pass\n\ndef run(d):\n    return d\n"
    )
    (tmp_path / "modelform.yaml").write_text(PROJECT)
    return Project(tmp_path, env={"PYTHONPATH": str(plugin_path)})


def records(p: Project) -> dict[str, dict]:  # type: ignore[type-arg]
    return {r["address"]: r for r in p.state()["resources"]}


def test_a_wrong_option_is_reported_at_its_line_by_validate(project: Project) -> None:
    f = project.root / "modelform.yaml"
    f.write_text(PROJECT.replace("greeting: hi", "greting: hi"))
    r = project.run("validate")
    assert r.code == 1, r.text
    assert "Traceback" not in r.text
    lines = r.err.strip().splitlines()
    assert lines == [
        f'{f}:15:5: error: unknown key "greting" in services.b (did you mean "greeting"?)'
    ], r.err
    # A shared option the kind does not honour is an error too, not dropped.
    f.write_text(PROJECT.replace("greeting: hi", "greeting: hi\n    port: 9000"))
    r = project.run("validate")
    assert r.code == 1 and 'services.b.port: target kind filebox cannot honour "port"' in r.err
    assert ":16:5:" in r.err, r.err
    # A value of the wrong type, at the value.
    f.write_text(PROJECT.replace("greeting: hi", "greeting: hi\n    healthy: maybe"))
    r = project.run("validate")
    assert r.code == 1 and f"{f}:16:14: error: services.b.healthy" in r.err, r.err


def test_schema_lists_the_plugin_options(project: Project) -> None:
    r = project.run("schema")
    assert r.code == 0, r.text
    schema = json.loads(r.out)
    service = schema["$defs"]["service"]["properties"]
    assert "(kinds: filebox)" in service["greeting"]["description"]
    assert service["api_token"]["sensitive"] is True
    assert "filebox" in service["replicas"]["description"]  # a shared option it honours
    assert "root" in schema["$defs"]["target"]["properties"]


def test_the_sensitive_values_appear_in_no_output(project: Project) -> None:
    outputs = []
    for args in (
        ("plan",),
        ("plan", "-json"),
        ("apply", "-auto-approve"),
        ("apply", "-auto-approve", "-json"),
        ("status",),
        ("status", "-json"),
        ("state", "show", "service.a/secret"),
        ("plan", "-destroy"),
        ("destroy", "-auto-approve"),
    ):
        r = project.run(*args)
        assert r.code == 0, (args, r.text)
        outputs.append(r.text)
    text = "\n".join(outputs)
    assert TOKEN not in text and INLINE not in text
    assert "(sensitive value)" in text  # masked where it would have shown


def test_children_and_the_target_resource_are_recorded_and_drift(project: Project) -> None:
    r = project.run("apply", "-auto-approve")
    assert r.code == 0, r.text
    recs = records(project)
    assert recs["service.a/config"]["type"] == "configfile"
    assert recs["service.a/secret"]["type"] == "secretfile"
    assert recs["target.box/roster"]["attributes"]["services"] == {"a": "hello", "b": "hi"}
    roster = json.loads((project.root / "out" / "roster.json").read_text())
    assert roster == {"a": "hello", "b": "hi"}

    # A child deleted out of band is drift, and its parent is updated to remake it.
    (project.root / "out" / "a" / "config.json").unlink()
    f = project.root / "modelform.yaml"
    f.write_text(PROJECT.replace("greeting: hi", "greeting: howdy"))
    r = project.run("plan", "-detailed-exitcode")
    assert r.code == 2, r.text
    assert "service.a/config has been deleted" in r.out
    assert "service.a will be updated in place" in r.out
    assert "target.box/roster will be updated in place" in r.out
    r = project.run("apply", "-auto-approve")
    assert r.code == 0, r.text
    assert (project.root / "out" / "a" / "config.json").exists()
    assert json.loads((project.root / "out" / "roster.json").read_text())["b"] == "howdy"
    assert project.run("plan", "-detailed-exitcode").code == 0

    r = project.run("destroy", "-auto-approve")
    assert r.code == 0, r.text
    assert list((project.root / "out").iterdir()) == []
    assert project.state()["resources"] == []


def test_a_failing_check_taints_and_the_next_plan_replaces(project: Project) -> None:
    f = project.root / "modelform.yaml"
    f.write_text(PROJECT.replace("greeting: hi", "greeting: hi\n    healthy: false"))
    r = project.run("apply", "-auto-approve")
    assert r.code == 1, r.text
    assert "service.b: check failed: health.json says the service is down" in r.err
    assert "Traceback" not in r.text
    rec = records(project)["service.b"]
    assert rec["tainted"] is True and rec["status"] == "Unhealthy"
    assert records(project)["service.a"]["tainted"] is False

    f.write_text(PROJECT)
    r = project.run("plan", "-detailed-exitcode")
    assert r.code == 2, r.text
    assert "service.b must be replaced" in r.out
    assert "tainted: its check failed after the last apply" in r.out
    r = project.run("apply", "-auto-approve")
    assert r.code == 0, r.text
    assert records(project)["service.b"]["tainted"] is False
    assert project.run("plan", "-detailed-exitcode").code == 0
