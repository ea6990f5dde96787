"""The project-file loader: every malformed case, then valid files.

Each folder under ``malformed/`` holds a ``modelform.yaml`` (and any files
it needs) and an ``expected.txt``::

    at: LINE:COL          (or "none" for an error with no place)
    message: SUBSTRING    of the first diagnostic's message
    file: NAME            optional: the file the position is in
                          (default modelform.yaml; "<command line>" for -var)
    var: NAME=VALUE       optional, repeatable: -var arguments
    var-file: NAME        optional, repeatable: -var-file arguments
    env: KEY=VALUE        optional, repeatable: environment variables
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modelform.engine.diagnostics import DiagnosticError, Pos
from modelform.engine.loader import load
from modelform.engine.references import Ref, resolve
from modelform.engine.values import UNKNOWN
from tests.engine.catalogs import OPEN, OpenCatalog

HERE = Path(__file__).parent
CASES = sorted(p for p in (HERE / "malformed").iterdir() if p.is_dir())
REPO = HERE.parent.parent


def read_expected(case: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (case / "expected.txt").read_text().splitlines():
        if line.strip():
            key, _, value = line.partition(":")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_every_case_is_there_and_complete() -> None:
    # Numbered 01..64 with none missing or doubled: deleting or renaming a case
    # (or a folder the glob no longer finds) fails here, not silently.
    assert [c.name[:3] for c in CASES] == [f"{i:02d}-" for i in range(1, 65)]
    assert sorted(p.name for p in (HERE / "malformed").iterdir()) == [c.name for c in CASES]
    for case in CASES:
        exp = read_expected(case)
        assert (case / "modelform.yaml").is_file(), case.name
        assert len(exp.get("at", [])) == 1 and len(exp.get("message", [])) == 1, case.name
        assert set(exp) <= {"at", "message", "file", "var", "var-file", "env"}, case.name


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed(case: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exp = read_expected(case)
    monkeypatch.chdir(case)  # -var-file names are relative to the working folder
    env = dict(e.split("=", 1) for e in exp.get("env", []))
    with pytest.raises(DiagnosticError) as info:
        load(case / "modelform.yaml", exp.get("var", []), exp.get("var-file", []), env)
    first = info.value.diagnostics[0]
    assert exp["message"][0] in first.message, str(first)
    where = exp["at"][0]
    if where == "none":
        assert first.pos is None, str(first)
        return
    fname = exp.get("file", ["modelform.yaml"])[0]
    # the project file is named as passed to load(), other files as given
    file = str(case / fname) if fname == "modelform.yaml" else fname
    line, col = (int(x) for x in where.split(":"))
    assert first.pos == Pos(file, line, col), str(first)


def test_missing_file_is_a_diagnostic(tmp_path: Path) -> None:
    with pytest.raises(DiagnosticError, match="no such file"):
        load(tmp_path / "modelform.yaml")


def test_folder_is_a_diagnostic(tmp_path: Path) -> None:
    with pytest.raises(DiagnosticError, match="is a folder"):
        load(tmp_path)


def test_unreadable_file_is_a_diagnostic(tmp_path: Path) -> None:
    # A link to itself cannot be read by anyone, root included (CI runs as
    # root, for whom a chmod 0 file would be readable and the test a skip).
    f = tmp_path / "modelform.yaml"
    f.symlink_to(f)
    with pytest.raises(DiagnosticError, match="cannot read it: Too many levels of symbolic links"):
        load(f)


def test_every_error_reported_at_once(tmp_path: Path) -> None:
    (tmp_path / "modelform.yaml").write_text(
        "project: demo\nservices:\n  api:\n    entry_script: s.py\n    port: 0\n    prot: 1\n"
    )
    with pytest.raises(DiagnosticError) as info:
        load(tmp_path / "modelform.yaml")
    lines = [(d.pos.line, d.pos.col) for d in info.value.diagnostics if d.pos]
    assert lines == [(5, 11), (6, 5)]


FULL = """\
project: diabetes
variables:
  replicas: {default: 2, description: pods in production}
  image_tag: {type: string, sensitive: true}
  extra_pip: {type: list, default: []}
models:
  ridge:
    path: models/ridge.pkl        # a file
    tags: {area: diabetes}
    description: Ridge regression
environments:
  sklearn:
    python: "3.11"
    pip: [scikit-learn==1.5.2, numpy]
    base_image: "python:3.11-${var.image_tag}"
    env: {OMP_NUM_THREADS: 1}
targets:
  laptop: {kind: local}
  prod: {kind: kubernetes, context: prod, namespace: ml}
services:
  dev:
    target: laptop
    models: [ridge]
    environment: sklearn
    entry_script: src/score.py
    port: 8890
    cpu: 0.5
    test: {request: {data: [[0.1, 0.2]]}}
  prod:
    target: prod
    models: [ridge]
    environment: sklearn
    entry_script: src/score.py
    replicas: ${var.replicas}
    resources: {cpu: 1, memory_gb: 1}
    autoscale: {min: 1, max: 10}
    auth: key
    env:
      DEV_URL: "${services.dev.url}"
      LITERAL: "$${not.a.ref}"
  edge:
    entry_script: src/score.py
    port: 8891
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "ridge.pkl").write_bytes(b"weights")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "score.py").write_text("def init():\n    pass\n")
    (tmp_path / "modelform.yaml").write_text(FULL)
    return tmp_path / "modelform.yaml"


def test_full_file_loads(project: Path) -> None:
    cfg = load(project, ["image_tag=slim"], environ={}, catalog=OPEN)
    assert cfg.project == "diabetes"
    assert cfg.file == project
    assert set(cfg.models) == {"ridge"}
    assert cfg.environments["sklearn"]["base_image"] == "python:3.11-slim"
    assert cfg.environments["sklearn"]["env"] == {"OMP_NUM_THREADS": 1}
    assert cfg.targets["prod"] == {"kind": "kubernetes", "context": "prod", "namespace": "ml"}
    assert "local" not in cfg.targets  # the implicit target is not a declared one
    prod = cfg.services["prod"]
    assert prod["replicas"] == 2 and isinstance(prod["replicas"], int)
    assert prod["autoscale"] == {"min": 1, "max": 10, "target_cpu": 70}
    assert prod["env"]["DEV_URL"] == "${services.dev.url}"
    # cpu given at the service is moved into resources, keeping its position
    assert cfg.services["dev"]["resources"] == {"cpu": 0.5}
    assert "cpu" not in cfg.services["dev"]
    assert cfg.pos(("services", "dev", "resources", "cpu")) == Pos(str(project), 27, 10)
    # defaults from the schema are filled in
    edge = cfg.services["edge"]
    assert edge["target"] == "local"
    assert edge["models"] == [] and edge["auth"] == "none" and edge["replicas"] == 1
    assert cfg.services["dev"]["test"]["expect_status"] == 200
    assert cfg.variables["image_tag"].sensitive and cfg.variables["image_tag"].required
    assert cfg.variables["replicas"].type == "number"
    assert cfg.var_values == {"replicas": 2, "image_tag": "slim", "extra_pip": []}


def test_full_file_positions(project: Path) -> None:
    cfg = load(project, ["image_tag=slim"], environ={}, catalog=OPEN)
    f = str(project)
    assert cfg.pos(()) == Pos(f, 1, 1)
    assert cfg.pos(("project",)) == Pos(f, 1, 10)
    # a block value is placed at its key; a scalar or flow value at the value
    assert cfg.pos(("models",)) == Pos(f, 6, 1)
    assert cfg.pos(("models", "ridge")) == Pos(f, 7, 3)
    assert cfg.pos(("models", "ridge", "path")) == Pos(f, 8, 11)
    assert cfg.pos(("models", "ridge", "tags", "area")) == Pos(f, 9, 18)
    assert cfg.pos(("environments", "sklearn", "pip", 1)) == Pos(f, 14, 32)
    assert cfg.pos(("services", "prod", "replicas")) == Pos(f, 34, 15)
    assert cfg.pos(("services", "prod", "env", "DEV_URL")) == Pos(f, 39, 16)
    # a value with no position of its own (a default) falls back to its parent
    assert cfg.pos(("services", "edge", "replicas")) == Pos(f, 41, 3)
    assert cfg.pos(("services", "edge", "nothing", "deeper")) == Pos(f, 41, 3)


def test_variable_precedence(project: Path, tmp_path: Path) -> None:
    first = tmp_path / "a.yaml"
    first.write_text("replicas: 3\nimage_tag: from-file\n")
    second = tmp_path / "b.json"
    second.write_text('{"replicas": 4}')

    def replicas(args: list[str], files: list[Path], env: dict[str, str]) -> object:
        return load(project, ["image_tag=x", *args], files, env, catalog=OPEN).services["prod"][
            "replicas"
        ]

    assert replicas([], [], {}) == 2
    assert replicas([], [first], {}) == 3
    assert replicas([], [first, second], {}) == 4
    assert replicas([], [second, first], {}) == 3
    assert replicas([], [first], {"MODELFORM_VAR_replicas": "5"}) == 5
    assert replicas(["replicas=6"], [first], {"MODELFORM_VAR_replicas": "5"}) == 6
    assert replicas(["replicas=6", "replicas=7"], [], {}) == 7
    cfg = load(project, [], [first], {"MODELFORM_VAR_image_tag": "env"}, catalog=OPEN)
    assert cfg.environments["sklearn"]["base_image"] == "python:3.11-env"


def test_variable_coercion(tmp_path: Path) -> None:
    (tmp_path / "modelform.yaml").write_text(
        "project: p\n"
        "variables:\n"
        "  n: {type: number}\n"
        "  f: {type: number}\n"
        "  b: {type: bool}\n"
        "  l: {type: list}\n"
        "  m: {type: map}\n"
        "  s: {type: string}\n"
        "  plain: {}\n"
        "targets:\n"
        "  t:\n"
        "    kind: x\n"
        "    n: ${var.n}\n"
        "    f: ${var.f}\n"
        "    b: ${var.b}\n"
        "    l: ${var.l}\n"
        "    m: ${var.m}\n"
        "    s: ${var.s}\n"
        "    text: n=${var.n} b=${var.b} l=${var.l}\n"
        "    plain: ${var.plain}\n"
    )
    args = ["n=3", "f=2.5", "b=TRUE", 'l=["a", 1]', 'm={"k": "v"}', "s=42", "plain=007"]
    cfg = load(tmp_path / "modelform.yaml", args, environ={}, catalog=OPEN)
    t = cfg.targets["t"]
    assert t["n"] == 3 and isinstance(t["n"], int)
    assert t["f"] == 2.5
    assert t["b"] is True
    assert t["l"] == ["a", 1]
    assert t["m"] == {"k": "v"}
    assert t["s"] == "42"
    assert t["plain"] == "007"
    assert t["text"] == 'n=3 b=true l=["a",1]'


def test_variable_value_is_never_read_as_a_reference(tmp_path: Path) -> None:
    (tmp_path / "modelform.yaml").write_text(
        "project: p\nvariables:\n  v: {}\n"
        "targets:\n  t: {kind: x, a: '${var.v}', b: 'x ${var.v}'}\n"
    )
    cfg = load(tmp_path / "modelform.yaml", ["v=${services.api.url}"], environ={}, catalog=OPEN)
    t = cfg.targets["t"]

    def no_lookup(ref: object) -> object:
        raise AssertionError(f"looked up {ref}")

    assert resolve(t, no_lookup) == {
        "kind": "x",
        "a": "${services.api.url}",
        "b": "x ${services.api.url}",
    }


def test_references_survive_loading_and_resolve(project: Path) -> None:
    cfg = load(project, ["image_tag=slim"], environ={}, catalog=OPEN)
    env = cfg.services["prod"]["env"]
    seen: list[Ref] = []

    def lookup(ref: Ref) -> object:
        seen.append(ref)
        return "http://127.0.0.1:8890"

    assert resolve(env, lookup) == {"DEV_URL": "http://127.0.0.1:8890", "LITERAL": "${not.a.ref}"}
    assert [r.address for r in seen] == ["service.dev"]
    assert resolve(env, lambda r: UNKNOWN)["DEV_URL"] is UNKNOWN


def test_null_sections_are_empty(tmp_path: Path) -> None:
    (tmp_path / "modelform.yaml").write_text("project: p\nvariables:\nmodels:\nservices:\n")
    cfg = load(tmp_path / "modelform.yaml")
    assert cfg.models == {} and cfg.services == {} and cfg.variables == {}


def test_merge_keys_and_anchors(tmp_path: Path) -> None:
    (tmp_path / "s.py").write_text("")
    (tmp_path / "modelform.yaml").write_text(
        "project: p\n"
        "services:\n"
        "  a: &base\n"
        "    entry_script: s.py\n"
        "    workers: 2\n"
        "    port: 9000\n"
        "  b:\n"
        "    <<: *base\n"
        "    port: 9001\n"
    )
    cfg = load(tmp_path / "modelform.yaml")
    assert cfg.services["b"]["workers"] == 2 and cfg.services["b"]["port"] == 9001
    f = str(tmp_path / "modelform.yaml")
    assert cfg.pos(("services", "b", "port")) == Pos(f, 9, 11)
    assert cfg.pos(("services", "b", "workers")) == Pos(f, 5, 14)


def test_same_port_on_this_machine_and_in_a_cluster_is_fine(tmp_path: Path) -> None:
    (tmp_path / "s.py").write_text("")
    (tmp_path / "modelform.yaml").write_text(
        "project: p\n"
        "targets:\n  prod: {kind: kubernetes}\n"
        "services:\n"
        "  a: {entry_script: s.py, port: 9000}\n"
        "  b: {entry_script: s.py, port: 9000, target: prod}\n"
    )
    assert set(load(tmp_path / "modelform.yaml", catalog=OPEN).services) == {"a", "b"}


def test_same_port_on_two_local_targets_clashes_on_this_machine(tmp_path: Path) -> None:
    (tmp_path / "s.py").write_text("")
    (tmp_path / "modelform.yaml").write_text(
        "project: p\n"
        "targets:\n  other: {kind: container}\n"
        "services:\n"
        "  a: {entry_script: s.py, port: 9000}\n"
        "  b: {entry_script: s.py, port: 9000, target: other}\n"
    )
    with pytest.raises(DiagnosticError) as e:
        load(tmp_path / "modelform.yaml")
    assert 'port 9000 is already used by service "a" on this machine' in str(e.value)


def test_schema_docs_are_up_to_date() -> None:
    from modelform.engine.schema import render_markdown

    committed = (REPO / "docs" / "project-file.md").read_text(encoding="utf-8")
    assert committed.startswith(render_markdown()), "run scripts/gen-docs"
    for kind in ("local", "container"):  # a section per built-in kind
        assert f"## Kind `{kind}`" in committed
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen-docs"), "--check"], capture_output=True
    )
    assert done.returncode == 0, done.stderr


def test_schema_has_descriptions_everywhere() -> None:
    from modelform.engine.schema import load_schema

    missing = []

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            for key, prop in node.get("properties", {}).items():
                if "description" not in prop:
                    missing.append(f"{path}.{key}")
            for key, value in node.items():
                walk(value, f"{path}/{key}")

    walk(load_schema(), "#")
    assert missing == []


def test_a_key_inside_a_target_option_is_named_where_it_is(tmp_path: Path) -> None:
    """An unknown key inside a target's option (a toleration) is reported inside
    it, at its own line, not as an unknown option of the target."""
    (tmp_path / "s.py").write_text("")
    (tmp_path / "modelform.yaml").write_text(
        "project: p\n"
        "targets:\n"
        "  prod:\n"
        "    kind: kubernetes\n"
        "    registry: r:5000\n"
        "    tolerations:\n"
        "      - key: gpu\n"
        "        efect: NoSchedule\n"
        "services:\n"
        "  a: {entry_script: s.py, port: 9000, target: prod}\n"
    )
    with pytest.raises(DiagnosticError) as e:
        load(tmp_path / "modelform.yaml")
    text = str(e.value)
    assert 'unknown key "efect" in targets.prod.tolerations[0] (did you mean "effect"?)' in text
    assert "modelform.yaml:8:9" in text
    assert "unknown option" not in text


def test_a_sensitive_option_nested_in_a_target_option_is_masked(tmp_path: Path) -> None:
    from modelform.engine.kinds import KindInfo
    from modelform.engine.sensitive import MASK, from_config

    class Vault(OpenCatalog):
        def info(self, kind: str) -> KindInfo:
            info = super().info(kind)
            if kind != "vault":
                return info
            storage = {"type": "object", "properties": {
                "endpoint": {"type": "string"},
                "connection_string": {"type": "string", "sensitive": True}}}  # fmt: skip
            info.target_schema = {"type": "object", "properties": {"storage": storage}}
            return info

    (tmp_path / "s.py").write_text("")
    (tmp_path / "modelform.yaml").write_text(
        "project: p\n"
        "targets:\n"
        "  v: {kind: vault, storage: {endpoint: e, connection_string: AccountKey=s3cr3t}}\n"
        "services:\n  a: {entry_script: s.py, port: 9000, target: v}\n"
    )
    cfg = load(tmp_path / "modelform.yaml", catalog=Vault())
    redactor = from_config(cfg, Vault())
    assert redactor.text("conn: AccountKey=s3cr3t") == f"conn: {MASK}"
    masked = redactor.value(cfg.targets["v"])
    assert masked["storage"] == {"endpoint": "e", "connection_string": MASK}
