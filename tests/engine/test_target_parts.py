"""A target-owned resource stands after the services on its target (it gathers
them) or, with ``target_part_first``, before them (they stand in it)."""

from __future__ import annotations

from pathlib import Path

from modelform.engine.loader import load
from modelform.engine.resources import desired_nodes
from tests.engine.catalogs import OPEN

PROJECT = """\
project: p
targets:
  edge: {kind: boxes}
services:
  a: {target: edge, entry_script: score.py}
  b: {target: edge, entry_script: score.py}
  c: {entry_script: score.py}
"""


def _config(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "score.py").write_text("def init(): pass\ndef run(d): return d\n")
    (tmp_path / "modelform.yaml").write_text(PROJECT)
    return load(tmp_path / "modelform.yaml", catalog=OPEN)


def test_a_gathering_part_depends_on_every_service_on_its_target(tmp_path: Path) -> None:
    nodes = desired_nodes(_config(tmp_path), target_parts={"boxes": "manifest"})
    part = nodes["target.edge/manifest"]
    assert part.depends_on == {"target.edge", "service.a", "service.b"}
    assert "target.edge/manifest" not in nodes["service.a"].depends_on


def test_a_part_first_is_what_every_service_on_its_target_depends_on(tmp_path: Path) -> None:
    nodes = desired_nodes(
        _config(tmp_path), target_parts={"boxes": "namespace"}, parts_first={"boxes"}
    )
    part = nodes["target.edge/namespace"]
    assert part.depends_on == {"target.edge"}
    for svc in ("service.a", "service.b"):
        assert "target.edge/namespace" in nodes[svc].depends_on
        assert nodes[svc].dep_pos["target.edge/namespace"].line in (5, 6)
    assert "target.edge/namespace" not in nodes["service.c"].depends_on
