from __future__ import annotations

import pytest

from modelform.engine import graph
from modelform.engine.diagnostics import DiagnosticError, Pos
from modelform.engine.resources import Node


def node(addr: str, deps: set[str], line: int = 1) -> Node:
    t, n = addr.split(".")
    pos = Pos("f.yaml", line, 3)
    return Node(addr, t, n, "core", {}, pos, deps, {d: Pos("f.yaml", line, 9) for d in deps})


def test_edges_point_from_dependency_to_dependent() -> None:
    g = graph.build(
        {"model.m": node("model.m", set()), "service.s": node("service.s", {"model.m"})}
    )
    assert list(g.edges) == [("model.m", "service.s")]
    assert '"model.m" -> "service.s";' in graph.to_dot(g)


def test_cycle_is_a_diagnostic_at_the_reference() -> None:
    nodes = {
        "service.a": node("service.a", {"service.b"}, 4),
        "service.b": node("service.b", {"service.a"}, 8),
    }
    with pytest.raises(DiagnosticError) as e:
        graph.build(nodes)
    d = e.value.diagnostics[0]
    assert "dependency cycle" in d.message and d.pos is not None and d.pos.col == 9


def test_orphans_from_state_keep_their_order() -> None:
    g = graph.build({}, {"service.old": ["model.old"], "model.old": []})
    assert ("model.old", "service.old") in g.edges
