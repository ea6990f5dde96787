"""Outputs through the real ``modelform`` command on the local target: apply
records them, ``output`` reads them (human masked, -json and -raw in clear),
plan shows their changes, destroy clears them; secrets never leak."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.helpers import Project, copy_quickstart, free_port, our_processes
from tests.e2e.test_remote_state import _s3_project, _stored
from tests.realparts import S3Endpoint

pytestmark = pytest.mark.slow

TOKEN = "tok-9f8e7d6c5b4a"
#: The service's env attribute: the environment's variables and its own.
ENV = {"OMP_NUM_THREADS": "1", "TOKEN": TOKEN}

OUTPUTS = """
outputs:
  url: ${services.diabetes-dev.url}
  port:
    value: ${services.diabetes-dev.port}
    description: the service's port
  key: ${services.diabetes-dev.key}
  env: ${services.diabetes-dev.env}
  marked:
    value: "p-${services.diabetes-dev.port}-marked"
    sensitive: true
"""


def quickstart_with_outputs(root: Path) -> Project:
    """The quickstart with a key, a sensitive variable in the service's env
    and outputs of each kind: plain, derived from a secret, marked."""
    p = copy_quickstart(root)
    f = p.root / "modelform.yaml"
    text = f.read_text()
    text = text.replace(
        "variables:\n", f'variables:\n  token: {{default: "{TOKEN}", sensitive: true}}\n'
    )
    text = text.replace(
        "    port: ${var.port}\n",
        '    port: ${var.port}\n    auth: key\n    env: {TOKEN: "${var.token}"}\n',
    )
    f.write_text(text + OUTPUTS)
    return p


def one_line_error(r: object) -> str:
    err = r.err  # type: ignore[attr-defined]
    assert r.code == 1 and r.out == "", r.text  # type: ignore[attr-defined]
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return str(err)


def test_outputs_lifecycle(tmp_path: Path) -> None:
    p = quickstart_with_outputs(tmp_path / "q")
    port = free_port()
    var = ("-var", f"port={port}")
    url = f"http://127.0.0.1:{port}"
    marked = f"p-{port}-marked"

    # No state yet: one line, exit 1.
    assert "no state at" in one_line_error(p.run("output"))
    assert "no state at" in one_line_error(p.run("output", "url", "-raw"))
    try:
        r = p.run("plan", *var)
        assert r.code == 0, r.text
        plan_out = r.out
        assert "Changes to Outputs:" in plan_out
        assert f'  + url = "{url}"' in plan_out and f"  + port = {port}" in plan_out
        assert "  + marked = (sensitive value)" in plan_out
        assert "  + env = (sensitive value)" in plan_out  # derived from var.token
        # the outputs come after the resources' summary, as Terraform's
        assert plan_out.index("Plan: 3 to add") < plan_out.index("Changes to Outputs:")
        r = p.run("plan", "-json", *var)
        assert r.code == 0, r.text
        doc = json.loads(r.out.splitlines()[0])["plan"]
        changes = {o["name"]: o for o in doc["output_changes"]}
        assert changes["url"] == {
            "name": "url", "action": "create", "sensitive": False, "before": None, "after": url,
        }  # fmt: skip
        assert changes["marked"]["after"] == "(sensitive value)"
        assert changes["key"]["sensitive"] and changes["env"]["sensitive"]
        plan_json_out = r.out

        r = p.run("apply", "-auto-approve", *var)
        assert r.code == 0, r.text
        apply_out = r.out
        assert "\nOutputs:\n\n" in apply_out and f'url = "{url}"' in apply_out
        assert "key = (sensitive value)" in apply_out
        assert "marked = (sensitive value)" in apply_out

        key = p.resources()["service.diabetes-dev"]["attributes"]["key"]
        recorded = p.state()["outputs"]
        assert recorded["url"] == {"value": url, "type": "string", "sensitive": False}
        assert recorded["port"] == {"value": port, "type": "number", "sensitive": False}
        assert recorded["key"] == {"value": key, "type": "string", "sensitive": True}
        assert recorded["env"] == {"value": ENV, "type": "map", "sensitive": True}
        assert recorded["marked"] == {"value": marked, "type": "string", "sensitive": True}

        # -raw: the URL for a shell, and it answers /ready.
        r = p.run("output", "url", "-raw")
        assert r.code == 0 and r.out == url, r.text
        with urllib.request.urlopen(r.out + "/ready", timeout=10) as answer:
            assert answer.status == 200

        # The human view masks; -json and -raw show what was asked for.
        r = p.run("output")
        assert r.code == 0, r.text
        human = r.out
        assert f'url = "{url}"\n' in human and f"port = {port}\n" in human
        assert "key = (sensitive value)\n" in human and "marked = (sensitive value)\n" in human
        r = p.run("output", "marked")
        assert r.code == 0 and r.out == "(sensitive value)\n", r.text
        human += r.out
        r = p.run("output", "url")
        assert r.code == 0 and r.out == f'"{url}"\n', r.text

        r = p.run("output", "-json")
        assert r.code == 0, r.text
        assert json.loads(r.out) == recorded
        r = p.run("output", "-json", "env")
        assert r.code == 0 and json.loads(r.out) == ENV, r.text
        r = p.run("output", "-raw", "key")
        assert r.code == 0 and r.out == key, r.text
        r = p.run("output", "-raw", "marked")
        assert r.code == 0 and r.out == marked, r.text
        r = p.run("output", "-raw", "port")
        assert r.code == 0 and r.out == str(port), r.text

        # A sensitive value appears nowhere else: plan, plan -json, apply, output.
        for secret in (key, TOKEN, marked):
            for where, text in [("plan", plan_out), ("plan -json", plan_json_out),
                                ("apply", apply_out), ("output", human)]:  # fmt: skip
                assert secret not in text, f"{secret} shown by {where}"
        r = p.run("apply", "-auto-approve", "-json", *var)
        assert r.code == 0, r.text
        assert all(s not in r.out for s in (key, TOKEN, marked)), r.out

        # Errors are one line, exit 1.
        err = one_line_error(p.run("output", "urll"))
        assert 'unknown output "urll" (did you mean "url"?)' in err
        assert "is a map" in one_line_error(p.run("output", "-raw", "env"))
        assert "-raw needs the name" in one_line_error(p.run("output", "-raw"))

        # A change of the referenced attribute shows in Changes to Outputs.
        new_port = free_port()
        r = p.run("plan", "-no-color", "-var", f"port={new_port}")
        assert r.code == 0, r.text
        new_url = f"http://127.0.0.1:{new_port}"
        assert "Changes to Outputs:" in r.out
        assert f'  ~ url = "{url}" → "{new_url}"' in r.out
        assert f"  ~ port = {port} → {new_port}" in r.out
        assert "  ~ marked = (sensitive value) → (sensitive value)" in r.out
        assert marked not in r.out and f"p-{new_port}-marked" not in r.out

        # An output-only change is a change: plan says so, apply records it.
        f = p.root / "modelform.yaml"
        f.write_text(f.read_text() + "  version: ${models.ridge.version}\n")
        r = p.run("plan", "-detailed-exitcode", *var)
        assert r.code == 2, r.text
        assert "  + version = 1" in r.out and "save these new output values" in r.out
        assert "Plan:" not in r.out
        r = p.run("apply", "-auto-approve", *var)
        assert r.code == 0 and "Resources: 0 added, 0 changed, 0 destroyed" in r.out, r.text
        r = p.run("output", "-raw", "version")
        assert r.code == 0 and r.out == "1", r.text
        r = p.run("plan", "-detailed-exitcode", *var)
        assert r.code == 0 and "No changes." in r.out, r.text
    finally:
        r = p.run("destroy", "-auto-approve", *var)
    assert r.code == 0, r.text
    assert "  - url = " in r.out  # the destroy's plan shows the outputs going
    assert our_processes(p.root) == set()
    assert "outputs" not in p.state()
    r = p.run("output")
    assert r.code == 0 and r.out.startswith("No outputs found"), r.text
    r = p.run("output", "-json")
    assert r.code == 0 and json.loads(r.out) == {}, r.text
    assert "the state records no outputs" in one_line_error(p.run("output", "url"))


@pytest.mark.s3
def test_a_later_job_reads_outputs_from_remote_state(
    tmp_path: Path, s3_endpoint: S3Endpoint, s3_bucket: str
) -> None:
    """Apply in one clone, read the URL in another that never applied: through
    the s3 backend, without writing the state."""
    deploy = _s3_project(tmp_path / "deploy", s3_endpoint, s3_bucket)
    later = _s3_project(tmp_path / "later", s3_endpoint, s3_bucket)
    for p in (deploy, later):
        f = p.root / "modelform.yaml"
        f.write_text(f.read_text() + "outputs:\n  url: ${services.diabetes-dev.url}\n")
    port = free_port()
    assert "no state at" in one_line_error(later.run("output", "-raw", "url"))
    try:
        r = deploy.run("apply", "-auto-approve", f"-var=port={port}")
        assert r.code == 0, r.text
        stored = _stored(s3_endpoint, s3_bucket)
        url = f"http://127.0.0.1:{port}"
        assert stored["outputs"]["url"]["value"] == url
        r = later.run("output", "-raw", "url")
        assert r.code == 0 and r.out == url, r.text
        with urllib.request.urlopen(r.out + "/ready", timeout=10) as answer:
            assert answer.status == 200
        r = later.run("output", "-json")
        assert r.code == 0 and json.loads(r.out)["url"]["value"] == url, r.text
        assert not (later.root / ".modelform" / "state.json").exists()
        after = _stored(s3_endpoint, s3_bucket)
        assert (after["serial"], after["lineage"]) == (stored["serial"], stored["lineage"])
    finally:
        deploy.run("destroy", "-auto-approve", f"-var=port={port}")
    assert "outputs" not in _stored(s3_endpoint, s3_bucket)
    assert our_processes(deploy.root) == set()
