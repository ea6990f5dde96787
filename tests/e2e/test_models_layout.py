"""AZUREML_MODEL_DIR as Azure ML lays it out: one model → that version's folder;
several → ``<name>/<version>/`` for each. And a model folder (not a file)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.helpers import Project, free_port, our_processes

SCORE = """
import json, os

def init():
    pass

def run(raw):
    root = os.environ["AZUREML_MODEL_DIR"]
    found = []
    for dirpath, _, files in os.walk(root, followlinks=True):
        for f in files:
            rel = os.path.relpath(os.path.join(dirpath, f), root)
            found.append([rel, open(os.path.join(dirpath, f)).read()])
    return sorted(found)
"""


def test_one_model_and_several_models(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / "src").mkdir(parents=True)
    (root / "src" / "score.py").write_text(SCORE)
    (root / "m").mkdir()
    (root / "m" / "ridge.pkl").write_text("ridge-bytes")
    (root / "m" / "forest").mkdir()
    (root / "m" / "forest" / "trees.bin").write_text("tree-bytes")
    (root / "m" / "forest" / "meta.json").write_text("{}")
    (root / "modelform.yaml").write_text(
        f"""project: layouts
models:
  ridge: {{path: m/ridge.pkl}}
  forest: {{path: m/forest}}
services:
  one:
    models: [ridge]
    entry_script: src/score.py
    port: {free_port()}
  both:
    models: [ridge, forest]
    entry_script: src/score.py
    port: {free_port()}
"""
    )
    p = Project(root)
    try:
        r = p.run("apply", "-auto-approve")
        assert r.code == 0, r.text
        r = p.run("invoke", "one", "--data", "{}")
        assert json.loads(r.out) == [["ridge.pkl", "ridge-bytes"]], r.text
        r = p.run("invoke", "both", "--data", "{}")
        assert json.loads(r.out) == [
            ["forest/1/meta.json", "{}"],
            ["forest/1/trees.bin", "tree-bytes"],
            ["ridge/1/ridge.pkl", "ridge-bytes"],
        ], r.text
        # A changed file inside the model folder is a new version of that model only.
        (root / "m" / "forest" / "trees.bin").write_text("more-trees")
        r = p.run("plan")
        assert "model forest: forest:1 → forest:2" in r.out, r.out
        assert "service.one" not in r.out.split("perform the following actions")[1]
        assert p.run("apply", "-auto-approve").code == 0
        r = p.run("invoke", "both", "--data", "{}")
        assert ["forest/2/trees.bin", "more-trees"] in json.loads(r.out), r.text
    finally:
        p.cleanup()
    assert our_processes(root) == set()


ENV_SCORE = """
import os

def init():
    pass

def run(raw):
    return {k: os.environ.get(k) for k in ("UPSTREAM", "MODEL_REF", "MODE")}
"""


def test_references_reach_the_process(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / "src").mkdir(parents=True)
    (root / "src" / "score.py").write_text(ENV_SCORE)
    (root / "ridge.pkl").write_text("x")
    a, b = free_port(), free_port()
    (root / "modelform.yaml").write_text(
        f"""project: refs
variables:
  mode: {{default: blue}}
models:
  ridge: {{path: ridge.pkl}}
services:
  front:
    entry_script: src/score.py
    port: {b}
    env:
      UPSTREAM: "${{services.back.url}}/score"
      MODEL_REF: "${{models.ridge.ref}}"
      MODE: "${{var.mode}}"
  back:
    models: [ridge]
    entry_script: src/score.py
    port: {a}
"""
    )
    p = Project(root)
    try:
        r = p.run("plan")
        # back's URL is known from its port, so front's plan already shows it.
        assert f'"UPSTREAM": "http://127.0.0.1:{a}/score"' in r.out, r.out
        r = p.run("apply", "-auto-approve", "-var", "mode=green")
        assert r.code == 0, r.text
        got = json.loads(p.run("invoke", "front", "--data", "{}").out)
        assert got == {
            "UPSTREAM": f"http://127.0.0.1:{a}/score",
            "MODEL_REF": "ridge:1",
            "MODE": "green",
        }
    finally:
        p.cleanup()
    assert our_processes(root) == set()
