"""Provider plugins through the installed ``modelform`` command: throwaway
plugin distributions in a temp folder on ``PYTHONPATH`` (tests/plugin_dists.py),
found through the entry-point group as a pip-installed plugin is. Every
problem with one is a single line naming it, exit 1, never a traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

import modelform
from modelform.engine.provider import PROTOCOL_VERSION
from tests.e2e.helpers import Result
from tests.plugin_dists import make_plugin, provider_source

MODELFORM = Path(sys.executable).with_name("modelform")

PROJECT = """\
project: plugins
targets:
  t: {kind: boom}
services:
  s:
    target: t
    entry_script: score.py
"""


def run(cwd: Path, *args: str, plugins: Path | None = None) -> Result:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("PYTHONPATH", None)
    if plugins is not None:
        env["PYTHONPATH"] = str(plugins)
    p = subprocess.run(
        [str(MODELFORM), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    return Result(p.returncode, p.stdout, p.stderr)


def one_error_line(r: Result) -> str:
    assert r.code == 1, r.text
    assert "Traceback" not in r.text, r.text
    lines = r.err.splitlines()
    assert len(lines) == 1, r.err
    return lines[0]


def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "modelform.yaml").write_text(PROJECT)
    (root / "score.py").write_text("def init():\n    pass\n\n\ndef run(data):\n    return data\n")
    return root


def test_providers_lists_the_builtins_from_modelform(tmp_path: Path) -> None:
    r = run(tmp_path, "providers")
    assert r.code == 0, r.text
    head, *lines = r.out.splitlines()
    assert head.split() == ["KIND", "PACKAGE", "VERSION", "PROTOCOL", "DESCRIPTION"]
    rows = {line.split()[0]: line.split() for line in lines}
    for kind in ("core", "local", "container"):
        assert rows[kind][1:4] == ["modelform", modelform.__version__, str(PROTOCOL_VERSION)]

    r = run(tmp_path, "providers", "-json")
    assert r.code == 0, r.text
    [doc] = [json.loads(line) for line in r.out.splitlines()]
    by_kind = {row["kind"]: row for row in doc["data"]}
    assert by_kind["local"] == {
        "kind": "local",
        "provider": "modelform.providers.local:LocalProvider",
        "package": "modelform",
        "version": modelform.__version__,
        "protocol_version": PROTOCOL_VERSION,
        "description": by_kind["local"]["description"],
        "loads": True,
        "error": None,
    }
    assert by_kind["local"]["description"]


def test_a_plugin_is_listed_with_its_package(tmp_path: Path) -> None:
    make_plugin(tmp_path / "site", "mf-edge", "edge", provider_source("edge"), version="1.4.2")
    r = run(tmp_path, "providers", plugins=tmp_path / "site")
    assert r.code == 0, r.text
    [line] = [x for x in r.out.splitlines() if x.startswith("edge ")]
    assert line.split() == ["edge", "mf-edge", "1.4.2", "2", "A", "test", "plugin", "(edge)."]


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("import not_a_module_anywhere\n",
         "failed to import: ModuleNotFoundError: No module named 'not_a_module_anywhere'"),
        (provider_source("boom", body="def __init__(self):\n    raise OSError('no daemon')\n"),
         "failed to start: OSError: no daemon"),
        (provider_source("boom", body="protocol_version = 1\n"),
         "is written for provider protocol 1;"),
        ("from modelform.plugin import Provider\n\n"
         "class Plugin(Provider):\n    kind = 'boom'\n    protocol_version = 2\n\n"
         "    def plan(self, resource, prior, ctx):\n        return None\n\n"
         "    def apply(self, request, ctx):\n        return None\n",
         "does not implement delete()"),
    ],
    ids=["import-error", "constructor", "protocol-1", "missing-delete"],
)  # fmt: skip
def test_a_broken_plugin_is_one_line_in_providers_and_plan(
    tmp_path: Path, source: str, problem: str
) -> None:
    site = tmp_path / "site"
    module = make_plugin(site, "mf-boom", "boom", source, version="0.2.0")
    prefix = f"Error: provider plugin 'boom' (mf-boom 0.2.0, {module}:Plugin) {problem}"

    r = run(tmp_path, "providers", plugins=site)
    assert one_error_line(r).startswith(prefix)
    assert any(line.split()[:2] == ["core", "modelform"] for line in r.out.splitlines())
    assert any(line.split()[:2] == ["boom", "mf-boom"] for line in r.out.splitlines())

    r = run(project(tmp_path), "plan", plugins=site)
    assert one_error_line(r).startswith(prefix)


def test_two_packages_registering_one_kind_name_both(tmp_path: Path) -> None:
    site = tmp_path / "site"
    a = make_plugin(site, "mf-boom", "boom", provider_source("boom"), version="1.0.0")
    b = make_plugin(site, "mf-boom-fork", "boom", provider_source("boom"), version="2.0.0")
    want = (
        "Error: provider kind 'boom' is registered by more than one package: "
        f"mf-boom 1.0.0 ({a}:Plugin) and mf-boom-fork 2.0.0 ({b}:Plugin); uninstall all but one"
    )
    r = run(tmp_path, "providers", plugins=site)
    assert one_error_line(r) == want
    r = run(project(tmp_path), "plan", plugins=site)
    assert one_error_line(r) == want


def test_a_method_raising_is_one_line_naming_the_plugin(tmp_path: Path) -> None:
    site = tmp_path / "site"
    body = "def plan(self, resource, prior, ctx):\n    raise ValueError('bad\\nthing')\n"
    make_plugin(site, "mf-boom", "boom", provider_source("boom", body=body), version="0.9.1")
    r = run(project(tmp_path), "plan", plugins=site)
    assert one_error_line(r) == (
        "Error: provider boom (mf-boom 0.9.1) failed in plan(): ValueError: bad thing"
    )


# -- docs/plugins.md, as written ---------------------------------------------

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def guide_files() -> dict[str, str]:
    """The guide's code blocks that carry a file name (```python title="…"```)."""
    blocks = re.findall(r'```\w+ title="([^"]+)"\n(.*?)```', GUIDE.read_text(), re.S)
    return dict(blocks)


def install_guide_plugin(site: Path) -> str:
    """The guide's mf-jobdir, installed as its pyproject says."""
    files = guide_files()
    meta = tomllib.loads(files["mf-jobdir/pyproject.toml"])["project"]
    [(kind, value)] = meta["entry-points"]["modelform.providers"].items()
    module, cls = value.split(":")
    make_plugin(site, meta["name"], kind, files[f"mf-jobdir/{module}.py"],
                version=meta["version"], module=module, cls=cls)  # fmt: skip
    return kind


def test_the_plugin_guide_works_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    assert install_guide_plugin(site) == "jobdir"
    files = guide_files()
    root = tmp_path / "project"
    (root / "models").mkdir(parents=True)
    (root / "models" / "ridge.pkl").write_bytes(b"weights")
    (root / "src").mkdir()
    (root / "src" / "score.py").write_text(
        "def init():\n    pass\n\n\ndef run(data):\n    return data\n"
    )
    (root / "modelform.yaml").write_text(files["project/modelform.yaml"])
    secret = "s3cr3t-key-4711"
    monkeypatch.setenv("MODELFORM_VAR_key", secret)
    texts = []

    def ok(*args: str, code: int = 0) -> Result:
        r = run(root, *args, plugins=site)
        assert r.code == code, (args, r.text)
        texts.append(r.text)
        return r

    r = ok("providers")
    assert any(
        line.split()[:4] == ["jobdir", "mf-jobdir", "0.1.0", "2"] for line in r.out.splitlines()
    )
    schema = json.loads(ok("schema").out)
    service = schema["$defs"]["service"]["properties"]
    assert service["api_key"]["sensitive"] is True and "schedule" in service
    ok("validate")
    ok("plan", "-detailed-exitcode", code=2)
    ok("apply", "-auto-approve")
    jobs = root / "jobs"
    assert json.loads((jobs / "index.json").read_text()) == {"churn": "0 2 * * *"}
    assert json.loads((jobs / "churn" / "key").read_text()) == {"key": secret}
    ok("plan", "-detailed-exitcode")
    (jobs / "churn" / "job.json").unlink()
    assert "service.churn/job has been deleted" in ok("drift", code=2).out
    ok("apply", "-auto-approve")
    assert (jobs / "churn" / "job.json").is_file()
    # A new root moves the job: replaced, the old folder gone.
    (root / "modelform.yaml").write_text(
        files["project/modelform.yaml"].replace("root: jobs", "root: jobs2")
    )
    assert "service.churn must be replaced" in ok("plan").out
    ok("apply", "-auto-approve")
    assert not (jobs / "churn").exists() and (root / "jobs2" / "churn" / "job.json").is_file()
    ok("state", "show", "service.churn/key")
    ok("destroy", "-auto-approve")
    assert list((root / "jobs2").iterdir()) == []
    assert secret not in "\n".join(texts)

    # The guide's unit test, run as written.
    monkeypatch.syspath_prepend(str(site))
    scope: dict[str, Any] = {}
    exec(compile(files["mf-jobdir/tests/test_plan.py"], "test_plan.py", "exec"), scope)
    scope["test_a_new_root_replaces_the_job"](tmp_path / "unit")
    sys.modules.pop("mf_jobdir", None)
