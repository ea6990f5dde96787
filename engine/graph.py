"""The dependency graph, built by a short list of named steps.

Edges point from a dependency to its dependent (``model.ridge →
service.api``): apply walks them forward, destroy walks them backward.
Steps: config nodes, orphans from state, reference edges, then one cycle
check that turns a cycle into a diagnostic at the offending reference.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import networkx as nx

from modelform.engine.diagnostics import Diagnostic, DiagnosticError
from modelform.engine.resources import Node


def add_config_nodes(g: nx.DiGraph, nodes: Mapping[str, Node]) -> None:
    for addr, node in nodes.items():
        g.add_node(addr, node=node)


def add_state_orphans(g: nx.DiGraph, state_deps: Mapping[str, Iterable[str]]) -> None:
    """Resources in state but not in config: they will be deleted, after
    (destroy order) whatever in state depends on them."""
    for addr, deps in state_deps.items():
        if addr not in g:
            g.add_node(addr, node=None)
        for dep in deps:
            if dep in state_deps and dep not in g:
                g.add_node(dep, node=None)
            if g.nodes[addr].get("node") is None and dep in g:
                g.add_edge(dep, addr)


def add_reference_edges(g: nx.DiGraph, nodes: Mapping[str, Node]) -> None:
    for addr, node in nodes.items():
        for dep in node.depends_on:
            g.add_edge(dep, addr)


def check_cycles(g: nx.DiGraph, nodes: Mapping[str, Node]) -> None:
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        return
    path = " → ".join([u for u, _ in cycle] + [cycle[0][0]])
    u, v = cycle[0]
    node = nodes.get(v)
    pos = node.dep_pos.get(u, node.pos) if node else None
    raise DiagnosticError(
        Diagnostic(f"dependency cycle: {path}", pos, "break the cycle of references")
    )


def build(
    nodes: Mapping[str, Node], state_deps: Mapping[str, Iterable[str]] | None = None
) -> nx.DiGraph:
    g: nx.DiGraph = nx.DiGraph()
    add_config_nodes(g, nodes)
    add_state_orphans(g, state_deps or {})
    add_reference_edges(g, nodes)
    check_cycles(g, nodes)
    return g


def to_dot(g: nx.DiGraph) -> str:
    lines = ["digraph modelform {", "  rankdir=LR;", "  node [shape=box];"]
    for n in sorted(g.nodes):
        lines.append(f'  "{n}";')
    for u, v in sorted(g.edges):
        lines.append(f'  "{u}" -> "{v}";')
    lines.append("}")
    return "\n".join(lines) + "\n"
